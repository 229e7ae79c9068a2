//! The patient socket: the whole exchange, bad input, heartbeats, shutdown, resume.

use serde_json::json;

use crate::helpers::{Client, reply_text, spawn_app, test_settings};

#[tokio::test]
async fn a_patient_gets_an_ack_then_a_streamed_reply() {
    // Arrange
    let app = spawn_app(test_settings()).await;
    let (mut client, _) = app.patient_in_session("p1").await;

    // Act
    let frames = client.say("m1", "I have a sore throat").await;

    // Assert
    assert_eq!(frames[0]["type"], "ack");
    assert_eq!(frames[0]["client_id"], "m1");
    assert_eq!(frames[0]["seq"], 1);
    let deltas = frames
        .iter()
        .filter(|frame| frame["type"] == "delta")
        .count();
    assert!(deltas > 3, "the reply streams in pieces: {frames:?}");
    assert!(reply_text(&frames).starts_with("[Demo model]"));
    assert_eq!(
        frames.last().map(|frame| frame["type"].clone()),
        Some(json!("done"))
    );
}

#[tokio::test]
async fn a_socket_without_a_token_is_refused() {
    let app = spawn_app(test_settings()).await;
    let refused = Client::connect(app.port, "/v1/chat", None).await;
    let Err(tokio_tungstenite::tungstenite::Error::Http(response)) = refused else {
        panic!("expected an HTTP refusal");
    };
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn bad_frames_get_error_codes_and_the_socket_stays_usable() {
    let app = spawn_app(test_settings()).await;
    let (mut client, _) = app.patient_in_session("p1").await;
    let cases = [
        ("{not json".to_owned(), "malformed"),
        (json!({"type": "shout"}).to_string(), "unknown_type"),
        (
            json!({"type": "message", "client_id": "", "text": "hi"}).to_string(),
            "invalid_frame",
        ),
        (
            json!({"type": "message", "client_id": "m1", "text": "   "}).to_string(),
            "invalid_frame",
        ),
        (
            json!({"type": "message", "client_id": "m1", "text": "a".repeat(9_000)}).to_string(),
            "too_large",
        ),
        ("x".repeat(20_000), "too_large"),
    ];
    for (raw, code) in cases {
        client.send_raw(&raw).await;
        let error = client.expect("error").await;
        assert_eq!(
            error["code"],
            code,
            "for frame {}",
            &raw[..raw.len().min(40)]
        );
        assert_eq!(error["retryable"], false);
    }
    client.send_binary(vec![1, 2, 3]).await;
    assert_eq!(client.expect("error").await["code"], "binary_not_supported");
    client.send(json!({"type": "ping"})).await;
    assert_eq!(client.next().await["type"], "pong");
    let frames = client.say("m2", "still here").await;
    assert_eq!(frames[0]["type"], "ack");
}

#[tokio::test]
async fn a_message_before_hello_is_refused_with_no_session() {
    let app = spawn_app(test_settings()).await;
    let mut client = app.patient("p1").await;
    client
        .send(json!({"type": "message", "client_id": "m1", "text": "hello"}))
        .await;
    assert_eq!(client.expect("error").await["code"], "no_session");
}

#[tokio::test]
async fn a_client_that_floods_invalid_frames_is_closed_with_policy_violation() {
    let mut settings = test_settings();
    settings.limits.max_errors = 3;
    let app = spawn_app(settings).await;
    let mut client = app.patient("p1").await;
    for _ in 0..10 {
        client.send_raw("{").await;
    }
    assert_eq!(client.close_code().await, Some(1008));
}

#[tokio::test]
async fn a_silent_client_is_closed_after_the_heartbeat_timeout() {
    let mut settings = test_settings();
    settings.server.heartbeat_interval_ms = 100;
    settings.server.client_timeout_ms = 400;
    let app = spawn_app(settings).await;
    let client = app.patient("p1").await;
    // Not reading means not answering pings: the server hears nothing.
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    let mut client = client;
    assert_eq!(client.close_code().await, Some(4000));
}

#[tokio::test]
async fn shutdown_closes_sockets_with_going_away() {
    let app = spawn_app(test_settings()).await;
    let (mut client, _) = app.patient_in_session("p1").await;
    app.shutdown.cancel();
    assert_eq!(client.close_code().await, Some(1001));
    let stopped = tokio::time::timeout(std::time::Duration::from_secs(10), app.server).await;
    assert!(stopped.is_ok(), "the server stops within the grace period");
}

#[tokio::test]
async fn resume_replays_every_event_after_last_seq_exactly_once() {
    let app = spawn_app(test_settings()).await;
    let (mut client, session) = app.patient_in_session("p1").await;
    client.say("m1", "I have a cold").await;
    client.say("m2", "and a runny nose").await;
    client.close().await;

    let mut again = app.patient("p1").await;
    again
        .send(json!({"type": "resume", "session_id": session, "last_seq": 1}))
        .await;
    let welcome = again.expect("welcome").await;
    assert_eq!(welcome["last_seq"], 4);
    let mut seqs = Vec::new();
    for _ in 0..3 {
        let event = again.expect("event").await;
        seqs.push(event["seq"].as_u64().unwrap_or_default());
    }
    assert_eq!(seqs, vec![2, 3, 4]);
    again.send(json!({"type": "ping"})).await;
    assert_eq!(
        again.next().await["type"],
        "pong",
        "nothing is replayed twice"
    );
}

#[tokio::test]
async fn a_retried_message_is_acked_with_the_same_seq_and_stored_once() {
    let app = spawn_app(test_settings()).await;
    let (mut client, _) = app.patient_in_session("p1").await;
    let first = client.say("m1", "I have a cold").await;
    client
        .send(json!({"type": "message", "client_id": "m1", "text": "I have a cold"}))
        .await;
    let retry = client.expect("ack").await;
    assert_eq!(first[0]["seq"], retry["seq"]);
    client.send(json!({"type": "ping"})).await;
    assert_eq!(
        client.next().await["type"],
        "pong",
        "a retry is not answered twice"
    );
}

#[tokio::test]
async fn a_red_flag_sent_again_after_a_lost_ack_gets_its_guidance_again() {
    let app = spawn_app(test_settings()).await;
    let (mut first, session) = app.patient_in_session("p1").await;
    let text = "crushing pain in my chest and my left arm is numb";
    let frames = first.say("m1", text).await;
    let alert = frames
        .iter()
        .find(|frame| frame["type"] == "alert")
        .cloned()
        .expect("an alert");
    let last_seq = frames.last().map(|done| done["seq"].clone());
    first.close().await;

    // A phone that lost the socket before the ack reached it sends the message again, on a new
    // socket: it never saw the guidance.
    let mut again = app.patient("p1").await;
    again
        .send(json!({"type": "resume", "session_id": session, "last_seq": last_seq}))
        .await;
    again.expect("welcome").await;
    again
        .send(json!({"type": "message", "client_id": "m1", "text": text}))
        .await;
    assert_eq!(again.expect("ack").await["seq"], frames[0]["seq"]);
    again.send(json!({"type": "ping"})).await;
    let mut resent = None;
    loop {
        let frame = again.next().await;
        match frame["type"].as_str() {
            Some("pong") => break,
            Some("alert") => resent = Some(frame),
            _ => {}
        }
    }
    let resent = resent.expect("the guidance again, before anything else");
    assert_eq!(
        resent["seq"], alert["seq"],
        "the alert the log has, not a new one"
    );
    assert_eq!(resent["guidance"], alert["guidance"]);
}

#[tokio::test]
async fn another_patient_cannot_resume_a_session() {
    let app = spawn_app(test_settings()).await;
    let (_, session) = app.patient_in_session("p1").await;
    let mut intruder = app.patient("p2").await;
    intruder
        .send(json!({"type": "resume", "session_id": session, "last_seq": 0}))
        .await;
    assert_eq!(intruder.expect("error").await["code"], "session_not_found");
}

#[tokio::test]
async fn an_emergency_gets_guidance_before_any_model_text() {
    let app = spawn_app(test_settings()).await;
    let (mut client, _) = app.patient_in_session("p1").await;
    let frames = client
        .say("m1", "crushing pain in my chest and my left arm is numb")
        .await;
    assert_eq!(frames[0]["type"], "ack");
    assert_eq!(frames[1]["type"], "alert", "{frames:?}");
    assert_eq!(frames[1]["severity"], "emergency");
    assert!(
        frames[1]["guidance"]
            .as_str()
            .unwrap_or_default()
            .contains("999")
    );
    assert!(
        frames[1]["rule"]
            .as_str()
            .unwrap_or_default()
            .starts_with("cardiac.")
    );
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn_app(test_settings()).await;
    let health = reqwest::get(app.url("/healthz")).await.expect("healthz");
    assert_eq!(health.status(), 200);
    let ready = reqwest::get(app.url("/readyz")).await.expect("readyz");
    assert_eq!(ready.status(), 200);
}
