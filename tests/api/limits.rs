//! Abuse limits through real sockets: message rates with a wait to retry, the emergency
//! exception, a flooding socket closed, sockets per user, connection rates and browser origins.

use std::time::Duration;

use carebridge::auth::Role;
use carebridge::limits::RateSettings;
use serde_json::{Value, json};

use crate::helpers::{Client, TestApp, spawn_app, test_settings};

async fn app_with(rates: RateSettings) -> TestApp {
    let mut settings = test_settings();
    settings.rate_limits = rates;
    spawn_app(settings).await
}

fn tight() -> RateSettings {
    RateSettings {
        user_messages_per_minute: 60,
        user_message_burst: 2,
        address_messages_per_minute: 0,
        address_connections_per_minute: 0,
        user_connections_per_minute: 0,
        ..RateSettings::default()
    }
}

async fn send(client: &mut Client, id: &str, text: &str) {
    client
        .send(json!({"type": "message", "client_id": id, "text": text}))
        .await;
}

/// The first `ack` or `error` after sending.
async fn verdict(client: &mut Client) -> Value {
    loop {
        let frame = client.next().await;
        if frame["type"] == "ack" || frame["type"] == "error" {
            return frame;
        }
    }
}

#[tokio::test]
async fn a_message_over_the_rate_is_refused_with_a_wait_and_taken_when_retried() {
    let app = app_with(tight()).await;
    let (mut patient, _) = app.patient_in_session("p1").await;
    for id in ["m1", "m2"] {
        send(&mut patient, id, "what helps a mild sore throat").await;
        assert_eq!(verdict(&mut patient).await["type"], "ack");
    }
    send(&mut patient, "m3", "and is honey ok for it").await;
    let refused = verdict(&mut patient).await;
    assert_eq!(refused["code"], "rate_limited", "{refused}");
    assert_eq!(refused["retryable"], true);
    let wait = refused["retry_after_ms"].as_u64().expect("a wait");
    assert!(wait > 0 && wait <= 1_000, "one message a second: {wait}");

    tokio::time::sleep(Duration::from_millis(wait + 50)).await;
    send(&mut patient, "m3", "and is honey ok for it").await;
    let taken = verdict(&mut patient).await;
    assert_eq!(taken["type"], "ack", "{taken}");
}

#[tokio::test]
async fn an_emergency_over_the_rate_is_still_taken_and_alerted() {
    let app = app_with(tight()).await;
    let (mut patient, _) = app.patient_in_session("p1").await;
    for id in ["m1", "m2"] {
        send(&mut patient, id, "hello").await;
        assert_eq!(verdict(&mut patient).await["type"], "ack");
    }
    send(
        &mut patient,
        "m3",
        "crushing chest pain spreading to my left arm",
    )
    .await;
    assert_eq!(verdict(&mut patient).await["type"], "ack");
    let alert = patient.expect("alert").await;
    assert_eq!(alert["severity"], "emergency");
}

#[tokio::test]
async fn a_socket_that_keeps_flooding_is_closed() {
    let mut rates = tight();
    rates.user_message_burst = 1;
    let mut settings = test_settings();
    settings.rate_limits = rates;
    settings.limits.max_errors = 3;
    let app = spawn_app(settings).await;
    let (mut patient, _) = app.patient_in_session("p1").await;
    for index in 0..10 {
        send(&mut patient, &format!("m{index}"), "spam").await;
    }
    assert_eq!(patient.close_code().await, Some(1008));
}

async fn connect_status(app: &TestApp, subject: &str, headers: &[(&'static str, &str)]) -> u16 {
    match Client::connect_with(
        app.port,
        "/v1/chat",
        Some(&app.token(subject, Role::Patient)),
        headers,
    )
    .await
    {
        Ok(client) => {
            client.close().await;
            101
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("unexpected: {other}"),
    }
}

#[tokio::test]
async fn a_user_may_hold_only_so_many_sockets() {
    let app = app_with(RateSettings {
        max_sockets_per_user: 2,
        ..tight()
    })
    .await;
    let first = app.patient("p1").await;
    let _second = app.patient("p1").await;
    assert_eq!(connect_status(&app, "p1", &[]).await, 429);
    assert_eq!(connect_status(&app, "p2", &[]).await, 101, "per user");
    first.close().await;
    // The server frees the place when it sees the close.
    let mut status = 0;
    for _ in 0..50 {
        status = connect_status(&app, "p1", &[]).await;
        if status == 101 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 101);
}

#[tokio::test]
async fn connections_from_one_address_are_rate_limited_with_retry_after() {
    let app = app_with(RateSettings {
        address_connections_per_minute: 60,
        connection_burst: 3,
        ..tight()
    })
    .await;
    for index in 0..3 {
        assert_eq!(connect_status(&app, &format!("p{index}"), &[]).await, 101);
    }
    let response = reqwest::Client::new()
        .get(app.url("/v1/chat"))
        .bearer_auth(app.token("p9", Role::Patient))
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status().as_u16(), 429);
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .expect("a Retry-After header");
    assert!((1..=2).contains(&retry_after), "{retry_after}");
}

#[tokio::test]
async fn browser_pages_from_other_origins_may_not_connect() {
    let app = app_with(tight()).await;
    let own = format!("http://127.0.0.1:{}", app.port);
    assert_eq!(connect_status(&app, "p1", &[("Origin", &own)]).await, 101);
    assert_eq!(
        connect_status(&app, "p1", &[("Origin", "https://evil.example")]).await,
        403
    );
    assert_eq!(connect_status(&app, "p1", &[]).await, 101, "not a browser");

    let mut settings = test_settings();
    settings.server.allowed_origins = vec!["https://app.example.org".into()];
    let listed = spawn_app(settings).await;
    assert_eq!(
        connect_status(&listed, "p1", &[("Origin", "https://app.example.org")]).await,
        101
    );
    assert_eq!(
        connect_status(&listed, "p1", &[("Origin", &own)]).await,
        403,
        "with a list, only the list"
    );
}
