//! `/metrics` scraped after real traffic: every family operators alert on is exported.

use carebridge::auth::Role;
use serde_json::json;

use crate::helpers::{Client, spawn_app, test_settings};

#[tokio::test]
async fn the_metrics_cover_decisions_alerts_escalations_the_model_and_limits() {
    let mut settings = test_settings();
    settings.escalation.tick_ms = 50;
    settings.rate_limits.user_message_burst = 3;
    let app = spawn_app(settings).await;
    let (mut patient, session) = app.patient_in_session("p1").await;
    patient
        .say("m1", "crushing chest pain spreading to my left arm")
        .await;
    let mut nurse = Client::connect(app.port, "/v1/nurse", Some(&app.token("n1", Role::Nurse)))
        .await
        .expect("nurse connects");
    nurse
        .send(json!({"type": "claim", "session_id": session}))
        .await;
    nurse.expect("done").await;
    // Over the burst: a rate-limit hit.
    for index in 2..6 {
        patient
            .send(json!({"type": "message", "client_id": format!("m{index}"), "text": "ok"}))
            .await;
    }
    patient.expect("error").await;
    let reload = reqwest::Client::new()
        .post(app.url("/v1/admin/policies/reload"))
        .bearer_auth(app.token("op", Role::Operator))
        .send()
        .await
        .expect("reload");
    assert!(reload.status().is_success());
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;

    let text = app.metrics().await;
    for family in [
        "carebridge_messages_total",
        "carebridge_decisions_total{level=\"emergency\"}",
        "carebridge_rule_fired_total{rule=\"cardiac.",
        "carebridge_alerts_total{severity=\"emergency\"}",
        "carebridge_escalations_total{severity=\"emergency\"}",
        "carebridge_escalations_open{",
        "carebridge_time_to_claim_seconds",
        "carebridge_guard_chunk_seconds",
        "carebridge_model_first_token_seconds",
        "carebridge_open_sockets{role=\"patient\"}",
        "carebridge_open_sockets{role=\"nurse\"}",
        "carebridge_rate_limited_total{what=\"message\"}",
        "carebridge_policy_reloads_total{outcome=\"ok\"}",
        "carebridge_audit_entries_total",
    ] {
        assert!(text.contains(family), "{family} missing from:\n{text}");
    }
}
