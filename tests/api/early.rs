//! The model request that leaves while the patient's message is still being stored (Redis, where
//! the write is a network round trip): it carries exactly the conversation the store then holds,
//! it is sent again when something else was written first, and nothing of its reply reaches the
//! patient before the `ack` and the alert, or at all when the message was not stored.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{
    FakeModel, ProcessApp, Script, TestApp, TestRedis, reply_text, settings_with_redis, spawn_app,
};

const REPLY: &str = "Noted, thank you.";

/// A throwaway Redis, a fake provider answering with `script`, and the server using both.
async fn app_on_redis(script: Script) -> (TestRedis, FakeModel, TestApp) {
    let redis = TestRedis::start();
    let model = FakeModel::start(vec![("scripted", script)]).await;
    let mut settings = model.settings("scripted");
    settings.store = settings_with_redis(&redis).store;
    let app = spawn_app(settings).await;
    (redis, model, app)
}

/// At once, in one chunk: the provider's first token can come before the store's answer.
fn instant(text: &str) -> Script {
    Script::Reply {
        text: text.into(),
        chunk: 64,
        delay_ms: 0,
    }
}

fn request_lines(request: &Value) -> Vec<(String, String)> {
    request["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .skip(1)
        .map(|message| {
            (
                message["role"].as_str().unwrap_or_default().to_owned(),
                message["content"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn lines(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(role, content)| ((*role).to_owned(), (*content).to_owned()))
        .collect()
}

/// The value of one `carebridge_early_requests_total` series in `metrics`, 0 when absent.
fn early_requests(metrics: &str, outcome: &str) -> u64 {
    let series = format!("carebridge_early_requests_total{{outcome=\"{outcome}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn an_early_request_carries_the_whole_conversation_and_is_sent_once() {
    let (_redis, model, app) = app_on_redis(instant(REPLY)).await;
    let (mut client, _) = app.patient_in_session("p1").await;
    for (id, text) in [
        ("m1", "I have a cold"),
        ("m2", "and a cough"),
        ("m3", "since Monday"),
    ] {
        let frames = client.say(id, text).await;
        assert_eq!(reply_text(&frames), REPLY, "{frames:?}");
    }

    let requests = model.requests.lock().expect("requests").clone();
    assert_eq!(
        requests.len(),
        3,
        "nothing else was written: no request is sent twice"
    );
    assert_eq!(
        request_lines(&requests[2]),
        lines(&[
            ("user", "I have a cold"),
            ("assistant", REPLY),
            ("user", "and a cough"),
            ("assistant", REPLY),
            ("user", "since Monday"),
        ])
    );
}

#[tokio::test]
async fn an_early_request_is_sent_again_when_another_device_wrote_first() {
    // Each reply says how many conversation lines its request carried, so the reply the phone
    // gets shows which request it came from: the early one knew 3 lines, the one sent again 5.
    let (_redis, model, app) = app_on_redis(Script::CountTurns).await;
    let (mut phone, session) = app.patient_in_session("p1").await;
    assert_eq!(
        reply_text(&phone.say("a1", "I have a cold").await),
        "turns: 1"
    );

    // The same patient on a second device: its message and reply are written by another socket,
    // which the phone's worker does not know of when its next message comes.
    let mut laptop = app.patient("p1").await;
    laptop
        .send(json!({"type": "resume", "session_id": session, "last_seq": 0}))
        .await;
    laptop.expect("welcome").await;
    assert_eq!(
        reply_text(&laptop.say("b1", "and a headache").await),
        "turns: 3"
    );

    let frames = phone.say("a2", "since Monday").await;
    assert!(
        frames.iter().any(|frame| frame["type"] == "event"
            && frame["event"]["kind"] == "patient_message"
            && frame["event"]["text"] == "and a headache"),
        "the other device's message reached the phone live: {frames:?}"
    );
    assert_eq!(
        reply_text(&frames),
        "turns: 5",
        "one reply, from the request that knew what the other device wrote: {frames:?}"
    );
    let expected = lines(&[
        ("user", "I have a cold"),
        ("assistant", "turns: 1"),
        ("user", "and a headache"),
        ("assistant", "turns: 3"),
        ("user", "since Monday"),
    ]);
    let requests = model.requests.lock().expect("requests").clone();
    assert!(
        requests
            .iter()
            .any(|request| request_lines(request) == expected),
        "the reply is written knowing what the other device wrote: {requests:?}"
    );
}

#[tokio::test]
async fn a_red_flag_s_reply_comes_from_a_request_that_carries_the_alert_and_the_note() {
    // The early request leaves before the store has confirmed the message; for a red flag it
    // must already carry the alert's guidance and the note that the message was flagged, or be
    // sent again with them: "turns: 4" (cold, reply, red flag, guidance), never "turns: 3".
    let (_redis, model, app) = app_on_redis(Script::CountTurns).await;
    let (mut client, _) = app.patient_in_session("p1").await;
    assert_eq!(
        reply_text(&client.say("a1", "I have a cold").await),
        "turns: 1"
    );
    let frames = client
        .say("a2", "crushing pain in my chest and my left arm is numb")
        .await;
    assert!(
        frames.iter().any(|frame| frame["type"] == "alert"),
        "{frames:?}"
    );
    // The guard appends its emergency reminder after the model's words.
    assert!(reply_text(&frames).starts_with("turns: 4"), "{frames:?}");

    let requests = model.requests.lock().expect("requests").clone();
    assert!(
        requests.len() <= 3,
        "at most one early request dropped: {requests:?}"
    );
    let answered = requests
        .iter()
        .find(|request| request_lines(request).len() == 4)
        .expect("a request with the alert's guidance");
    let system = answered["messages"][0]["content"]
        .as_str()
        .unwrap_or_default();
    assert!(system.contains("flagged emergency"), "{system}");
}

#[tokio::test]
async fn a_replica_counts_early_requests_kept_and_sent_again() {
    // A process of its own: the metrics recorder is global, and in-process servers of tests
    // running side by side would count into the same series.
    let redis = TestRedis::start();
    let replica = ProcessApp::start(&redis);
    let mut phone = replica.patient("p1").await;
    phone.send(json!({"type": "hello"})).await;
    let session = phone.expect("welcome").await["session_id"].clone();
    phone.say("a1", "I have a cold").await;
    let mut laptop = replica.patient("p1").await;
    laptop
        .send(json!({"type": "resume", "session_id": session, "last_seq": 0}))
        .await;
    laptop.expect("welcome").await;
    laptop.say("b1", "and a headache").await;
    // The phone's worker has not seen the laptop's turn: sent again. Then it knows: kept.
    phone.say("a2", "since Monday").await;
    phone.say("a3", "no fever though").await;

    let metrics = replica.metrics().await;
    assert!(
        early_requests(&metrics, "kept") >= 2,
        "with Redis the request leaves while the message is being stored:\n{metrics}"
    );
    assert_eq!(early_requests(&metrics, "sent_again"), 1, "{metrics}");
}

#[tokio::test]
async fn the_reply_never_overtakes_the_ack_or_the_alert() {
    let (_redis, _model, app) = app_on_redis(instant(REPLY)).await;
    let (mut client, _) = app.patient_in_session("p1").await;
    for round in 0..5 {
        let frames = client.say(&format!("r{round}"), "I have a cold").await;
        let kinds: Vec<&str> = frames
            .iter()
            .map(|frame| frame["type"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(kinds.first(), Some(&"ack"), "{kinds:?}");

        let frames = client
            .say(
                &format!("e{round}"),
                "crushing pain in my chest and my left arm is numb",
            )
            .await;
        let kinds: Vec<&str> = frames
            .iter()
            .map(|frame| frame["type"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(kinds.get(..2), Some(&["ack", "alert"][..]), "{kinds:?}");
    }
}

#[tokio::test]
async fn a_message_the_store_refuses_gets_no_reply() {
    let (mut redis, _model, app) = app_on_redis(instant(REPLY)).await;
    let (mut client, _) = app.patient_in_session("p1").await;
    client.say("m1", "I have a cold").await;

    redis.kill();
    client
        .send(json!({"type": "message", "client_id": "m2", "text": "and a cough"}))
        .await;
    let error = loop {
        let frame = client.next().await;
        assert_not_answered(&frame);
        if frame["type"] == "error" {
            break frame;
        }
    };
    assert_eq!(error["code"], "unavailable", "{error}");
    // The request may have left before the store failed; its reply must not follow.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(700);
    while let Ok(frame) = tokio::time::timeout_at(deadline, client.next()).await {
        assert_not_answered(&frame);
    }
}

fn assert_not_answered(frame: &Value) {
    let kind = frame["type"].as_str().unwrap_or_default();
    assert!(
        !matches!(kind, "delta" | "done" | "replaced" | "ack"),
        "an unstored message was answered: {frame}"
    );
}
