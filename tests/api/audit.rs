//! The audit trail through the real server: what it records, that it keeps no message text, that
//! `carebridge audit verify` accepts an intact Redis trail and finds a removed entry, and that the
//! plain logs never carry a message's text or a token.

use std::process::{Command, Stdio};
use std::time::Duration;

use carebridge::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{
    Client, ProcessApp, TestApp, TestRedis, settings_with_redis, spawn_app, test_settings,
};

const EMERGENCY: &str = "crushing chest pain going down my left arm, zebra 7341";

async fn operator_get(app: &TestApp, path: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .get(app.url(path))
        .bearer_auth(app.token("op-1", Role::Operator))
        .send()
        .await
        .expect("admin route answers");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// A flagged conversation claimed by a nurse: decisions and escalation steps to audit.
async fn flag_and_claim(app: &TestApp) -> String {
    let (mut patient, session) = app.patient_in_session("patient-7").await;
    patient.say("m1", EMERGENCY).await;
    let mut nurse = Client::connect(app.port, "/v1/nurse", Some(&app.token("n1", Role::Nurse)))
        .await
        .expect("nurse connects");
    nurse
        .send(json!({"type": "claim", "session_id": session}))
        .await;
    nurse.expect("done").await;
    session
}

#[tokio::test]
async fn the_trail_records_who_did_what_and_never_the_message_text() {
    let app = spawn_app(test_settings()).await;
    let session = flag_and_claim(&app).await;

    let (status, body) = operator_get(&app, "/v1/admin/audit").await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("zebra"), "no message text in the trail");
    let entries: Vec<Value> = body
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON entry per line"))
        .collect();
    let find = |action: &str| {
        entries
            .iter()
            .find(|entry| entry["action"] == action && entry["session"] == session.as_str())
            .unwrap_or_else(|| panic!("no {action} for the session in {entries:#?}"))
    };
    let decision = find("policy_decision");
    assert_eq!(decision["actor"], "patient-7");
    assert_eq!(decision["role"], "patient");
    assert_eq!(decision["detail"]["level"], "emergency");
    assert!(
        decision["detail"]["fired"][0]["rule"]
            .as_str()
            .unwrap_or_default()
            .starts_with("cardiac."),
        "{decision}"
    );
    assert!(decision["detail"]["policy_version"].as_str().is_some());
    assert_eq!(find("escalation_raised")["detail"]["severity"], "emergency");
    let claimed = find("escalation_claimed");
    assert_eq!(
        (&claimed["actor"], &claimed["role"]),
        (&json!("n1"), &json!("nurse"))
    );
    assert!(
        entries.iter().any(|entry| entry["action"] == "admin_action"
            && entry["actor"] == "op-1"
            && entry["detail"]["action"] == "audit_export"),
        "the export itself is recorded"
    );
    for pair in entries.windows(2) {
        assert_eq!(pair[1]["prev"], pair[0]["hash"], "one unbroken chain");
    }

    let (status, report) = operator_get(&app, "/v1/admin/audit/verify").await;
    assert_eq!(status, 200);
    let report: Value = serde_json::from_str(&report).expect("json");
    assert_eq!(report["broken"], Value::Null, "{report}");
    assert!(report["entries"].as_u64().unwrap_or_default() >= 4);
}

#[tokio::test]
async fn only_operators_read_the_trail() {
    let app = spawn_app(test_settings()).await;
    for role in [Role::Patient, Role::Nurse] {
        let response = reqwest::Client::new()
            .get(app.url("/v1/admin/audit"))
            .bearer_auth(app.token("someone", role))
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status().as_u16(), 403, "{role:?}");
    }
    let anonymous = reqwest::get(app.url("/v1/admin/audit/verify"))
        .await
        .expect("answers");
    assert_eq!(anonymous.status().as_u16(), 401);
}

fn audit_cli(redis: &TestRedis, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_carebridge"))
        .arg("audit")
        .args(args)
        .env("CAREBRIDGE_STORE__BACKEND", "redis")
        .env("CAREBRIDGE_STORE__REDIS_URL", redis.url())
        .output()
        .expect("the carebridge binary runs")
}

#[tokio::test]
async fn the_cli_verifies_a_redis_trail_and_finds_a_removed_entry() {
    let redis = TestRedis::start();
    let app = spawn_app(settings_with_redis(&redis)).await;
    flag_and_claim(&app).await;
    // Verifying through the API first also waits for the writer to store every entry.
    let (status, _) = operator_get(&app, "/v1/admin/audit/verify").await;
    assert_eq!(status, 200);

    let verified = audit_cli(&redis, &["verify"]);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    let report: Value = serde_json::from_slice(&verified.stdout).expect("json report");
    let count = report["entries"].as_u64().unwrap_or_default();
    assert!(count >= 4, "{report}");

    let dir = tempfile::tempdir().expect("temp dir");
    let export = dir.path().join("trail.jsonl");
    let exported = audit_cli(&redis, &["export", "--out", &export.to_string_lossy()]);
    assert!(exported.status.success());
    let text = std::fs::read_to_string(&export).expect("export written");
    assert_eq!(text.lines().count() as u64, count);
    assert!(
        audit_cli(&redis, &["verify", "--file", &export.to_string_lossy()])
            .status
            .success()
    );

    // An entry removed from the middle of the stream breaks the chain.
    let client = redis::Client::open(redis.url()).expect("url");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let removed: i64 = redis::cmd("XDEL")
        .arg("cb:{audit}:log")
        .arg("2-1")
        .query_async(&mut connection)
        .await
        .expect("xdel");
    assert_eq!(removed, 1);
    let broken = audit_cli(&redis, &["verify"]);
    assert!(!broken.status.success());
    let stderr = String::from_utf8_lossy(&broken.stderr);
    assert!(stderr.contains("removed"), "{stderr}");

    // A reordered export is refused too.
    let mut lines: Vec<&str> = text.lines().collect();
    lines.swap(1, 2);
    std::fs::write(&export, lines.join("\n")).expect("rewrite");
    assert!(
        !audit_cli(&redis, &["verify", "--file", &export.to_string_lossy()])
            .status
            .success()
    );
}

#[tokio::test]
async fn info_logs_never_carry_message_text_or_tokens() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut server = ProcessApp::start_with(None, "info", || {
        Stdio::from(log.try_clone().expect("the log file again"))
    });
    let token = server.token("patient-log", Role::Patient);
    let mut patient = Client::connect(server.port, "/v1/chat", Some(&token))
        .await
        .expect("connects");
    patient.send(json!({"type": "hello"})).await;
    patient.expect("welcome").await;
    patient.say("m1", EMERGENCY).await;
    patient
        .say("m2", "my email is zebra.person@example.com")
        .await;
    // An invalid frame is logged as an error event; its content must not be.
    patient
        .send_raw("{\"type\": \"message\", \"zebra\": 7341")
        .await;
    patient.expect("error").await;
    patient.close().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill();

    let logs = std::fs::read_to_string(&log_path).expect("logs");
    assert!(
        logs.contains("message flagged"),
        "the logs were captured: {logs}"
    );
    assert!(!logs.contains("zebra"), "message text in the logs: {logs}");
    assert!(!logs.contains("7341"), "message text in the logs: {logs}");
    let signature = token.rsplit('.').next().unwrap_or_default();
    assert!(!logs.contains(signature), "a token in the logs");
    assert!(!logs.contains(&token[..20]), "a token in the logs");
}
