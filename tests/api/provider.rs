//! The OpenAI-compatible provider through the real server: streaming, the output guard, and
//! every fault the patient must be protected from.

use serde_json::Value;

use crate::helpers::{FakeModel, Script, reply_text, spawn_app};

fn reply(text: &str) -> Script {
    chunked(text, 5, 2)
}

/// A scripted reply streamed `chunk` characters at a time, `delay_ms` apart.
fn chunked(text: &str, chunk: usize, delay_ms: u64) -> Script {
    Script::Reply {
        text: text.into(),
        chunk,
        delay_ms,
    }
}

async fn exchange(script: Script, message: &str) -> (Vec<Value>, FakeModel) {
    let model = FakeModel::start(vec![("scripted", script)]).await;
    let app = spawn_app(model.settings("scripted")).await;
    let (mut client, _) = app.patient_in_session("p1").await;
    let frames = client.say("m1", message).await;
    (frames, model)
}

fn fallback_of(frames: &[Value]) -> &Value {
    let last = frames.last().expect("frames");
    assert_eq!(last["type"], "replaced", "{frames:?}");
    assert_eq!(last["rule"], "fallback");
    assert!(
        last["text"].as_str().unwrap_or_default().contains("999"),
        "the fallback says how to get help"
    );
    last
}

#[tokio::test]
async fn a_provider_reply_streams_through_to_the_patient() {
    let text = "Rest, drink plenty of fluids and see a pharmacist if it lasts.";
    let (frames, model) = exchange(reply(text), "I have a cold").await;
    assert_eq!(reply_text(&frames), text);
    assert_eq!(
        frames.last().map(|frame| frame["type"].clone()),
        Some("done".into())
    );
    let requests = model.requests.lock().expect("requests").clone();
    let messages = requests[0]["messages"]
        .as_array()
        .expect("messages")
        .clone();
    assert_eq!(messages[0]["role"], "system");
    assert_eq!(
        messages.last().map(|message| message["content"].clone()),
        Some("I have a cold".into())
    );
}

#[tokio::test]
async fn a_flagged_conversation_tells_the_model_what_was_found() {
    let (_, model) = exchange(
        reply("Please call 999 now."),
        "I think I am having a stroke, my face is drooping",
    )
    .await;
    let requests = model.requests.lock().expect("requests").clone();
    let system = requests[0]["messages"][0]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(system.contains("flagged emergency"), "{system}");
}

#[tokio::test]
async fn http_500_is_retried_then_the_patient_gets_the_fallback() {
    let (frames, model) = exchange(Script::Status(500), "I have a cold").await;
    fallback_of(&frames);
    // Retried before any text was shown (by the client's backoff and our own attempt), a bounded
    // number of times.
    let requests = model.request_count();
    assert!(
        (2..=6).contains(&requests),
        "retried a bounded number of times: {requests}"
    );
    assert!(
        !frames.iter().any(|frame| frame["type"] == "error"),
        "no raw provider error reaches the patient"
    );
}

#[tokio::test]
async fn http_429_gets_the_fallback() {
    let (frames, _) = exchange(Script::Status(429), "I have a cold").await;
    fallback_of(&frames);
}

#[tokio::test]
async fn a_stall_before_the_first_token_gets_the_fallback() {
    let (frames, _) = exchange(Script::StallFirst(3_000), "I have a cold").await;
    fallback_of(&frames);
}

#[tokio::test]
async fn a_stall_mid_stream_keeps_what_was_shown_and_ends_with_the_fallback() {
    let script = Script::StallAfter {
        text: "Rest and drink plenty of fluids today. ".repeat(3),
        stall_ms: 3_000,
    };
    let (frames, _) = exchange(script, "I have a cold").await;
    assert!(reply_text(&frames).starts_with("Rest and drink"));
    fallback_of(&frames);
}

#[tokio::test]
async fn a_dropped_connection_mid_stream_ends_with_the_fallback() {
    let (frames, _) = exchange(
        Script::DropAfter("Rest and drink plenty of fluids today.".into()),
        "I have a cold",
    )
    .await;
    fallback_of(&frames);
}

#[tokio::test]
async fn a_malformed_chunk_ends_with_the_fallback() {
    let (frames, _) = exchange(Script::Malformed, "I have a cold").await;
    fallback_of(&frames);
}

#[tokio::test]
async fn a_forbidden_phrase_split_across_chunks_never_reaches_the_patient() {
    // Self-harm method details are refused in any conversation.
    let text = "I understand. The lethal dose of paracetamol would be a lot of tablets.";
    let script = chunked(text, 3, 1);
    let (frames, _) = exchange(script, "I have a headache").await;
    let shown = reply_text(&frames).to_lowercase();
    assert!(!shown.contains("lethal"), "{shown}");
    let last = frames.last().expect("frames");
    assert_eq!(last["type"], "replaced", "{frames:?}");
    assert_ne!(last["rule"], "fallback");
}

#[tokio::test]
async fn the_first_words_go_out_with_the_providers_first_chunk() {
    // No output phrase begins with "Thank", so nothing is held back for the words after it.
    let text = "Thank you for telling me. Rest and drink plenty of fluids.";
    let script = chunked(text, 6, 5);
    let (frames, _) = exchange(script, "I have a cold").await;
    let deltas: Vec<&str> = frames
        .iter()
        .filter(|frame| frame["type"] == "delta")
        .filter_map(|frame| frame["text"].as_str())
        .collect();
    assert_eq!(deltas.first(), Some(&"Thank "), "{deltas:?}");
    assert_eq!(deltas.concat(), text);
}

#[tokio::test]
async fn the_start_of_a_reassurance_is_held_until_it_is_whole_then_replaced() {
    // In an emergency conversation "probably nothing" must never be shown, not even its first
    // word; the words before it go out as they come.
    let text = "I hear you. It is probably nothing serious, so rest.";
    let script = chunked(text, 4, 2);
    let (frames, _) = exchange(script, "I have crushing chest pain going down my left arm").await;
    let shown = reply_text(&frames);
    assert_eq!(shown, "I hear you. It is ", "{frames:?}");
    let last = frames.last().expect("frames");
    assert_eq!(last["type"], "replaced", "{frames:?}");
    assert_eq!(last["rule"], "output.no_reassurance_when_flagged");
}

#[tokio::test]
async fn the_model_gets_only_the_latest_lines_of_a_long_conversation() {
    let model = FakeModel::start(vec![("scripted", reply("Noted, thank you."))]).await;
    let mut settings = model.settings("scripted");
    settings.llm.history_events = 3;
    let app = spawn_app(settings).await;
    let (mut client, _) = app.patient_in_session("p1").await;
    for turn in 1..=4 {
        client
            .say(&format!("m{turn}"), &format!("question number {turn}"))
            .await;
    }
    let requests = model.requests.lock().expect("requests").clone();
    let last = requests.last().expect("a request");
    let lines: Vec<(String, String)> = last["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|message| {
            (
                message["role"].as_str().unwrap_or_default().to_owned(),
                message["content"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    // The system prompt, then the three latest lines, oldest first.
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[0].0, "system");
    let expected = [
        ("user", "question number 3"),
        ("assistant", "Noted, thank you."),
        ("user", "question number 4"),
    ]
    .map(|(role, content)| (role.to_owned(), content.to_owned()));
    assert_eq!(lines[1..], expected);
}

/// The (role, content) lines of one request the fake provider received.
fn request_lines(request: &Value) -> Vec<(String, String)> {
    request["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|message| {
            (
                message["role"].as_str().unwrap_or_default().to_owned(),
                message["content"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_message_sent_while_a_reply_streams_is_answered_knowing_that_reply() {
    // The history is read together with the message; the second turn waits for the first, so
    // the first reply is stored after that read and must still reach the second request (in the
    // log's order: it was stored after the second message).
    let first_reply = "Noted. Rest, drink water, and tell me if it gets worse.";
    let script = chunked(first_reply, 4, 15);
    let model = FakeModel::start(vec![("scripted", script)]).await;
    let app = spawn_app(model.settings("scripted")).await;
    let (mut client, _) = app.patient_in_session("p1").await;
    client
        .send(serde_json::json!({"type": "message", "client_id": "m1", "text": "I have a cold"}))
        .await;
    client.expect("delta").await;
    client
        .send(
            serde_json::json!({"type": "message", "client_id": "m2", "text": "and a sore throat"}),
        )
        .await;
    client.expect("done").await;
    client.expect("done").await;

    let requests = model.requests.lock().expect("requests").clone();
    assert_eq!(requests.len(), 2);
    let lines = request_lines(&requests[1]);
    let tail: Vec<(&str, &str)> = lines
        .iter()
        .skip(1)
        .map(|(role, content)| (role.as_str(), content.as_str()))
        .collect();
    assert_eq!(
        tail,
        [
            ("user", "I have a cold"),
            ("user", "and a sore throat"),
            ("assistant", first_reply),
        ],
        "{lines:?}"
    );
}

#[tokio::test]
async fn the_request_carries_the_model_and_the_configured_options_only() {
    let model = FakeModel::start(vec![("scripted", reply("Noted."))]).await;
    let mut settings = model.settings("scripted");
    settings.llm.temperature = Some(0.25);
    settings.llm.max_tokens = Some(300);
    let app = spawn_app(settings).await;
    let (mut client, _) = app.patient_in_session("p1").await;
    client.say("m1", "I have a cold").await;

    let model_without = FakeModel::start(vec![("scripted", reply("Noted."))]).await;
    let app_without = spawn_app(model_without.settings("scripted")).await;
    let (mut client, _) = app_without.patient_in_session("p1").await;
    client.say("m1", "I have a cold").await;

    let with = model.requests.lock().expect("requests")[0].clone();
    assert_eq!(with["model"], "scripted");
    assert_eq!(with["stream"], true);
    assert_eq!(with["temperature"], 0.25);
    assert_eq!(with["max_tokens"], 300);
    let without = model_without.requests.lock().expect("requests")[0].clone();
    assert_eq!(without["stream"], true);
    assert!(without.get("temperature").is_none(), "{without}");
    assert!(without.get("max_tokens").is_none(), "{without}");
}

#[tokio::test]
async fn the_model_is_told_the_guidance_a_red_flag_gave() {
    let model = FakeModel::start(vec![("scripted", reply("I understand."))]).await;
    let app = spawn_app(model.settings("scripted")).await;
    let (mut client, _) = app.patient_in_session("p1").await;
    let frames = client
        .say("m1", "I have crushing chest pain going down my left arm")
        .await;
    let alert = frames
        .iter()
        .find(|frame| frame["type"] == "alert")
        .expect("an alert");
    let guidance = alert["guidance"].as_str().expect("guidance");
    let requests = model.requests.lock().expect("requests").clone();
    let lines = request_lines(requests.last().expect("a request"));
    assert_eq!(
        lines[1..],
        [
            (
                "user".to_owned(),
                "I have crushing chest pain going down my left arm".to_owned()
            ),
            ("assistant".to_owned(), guidance.to_owned()),
        ],
        "{lines:?}"
    );
    assert!(lines[0].1.contains("emergency"), "{}", lines[0].1);
}

#[tokio::test]
async fn identifiers_never_reach_an_external_provider_but_the_patient_sees_them() {
    let script = chunked("Thanks. I will note [PHONE_1] for the nurse.", 4, 1);
    let model = FakeModel::start(vec![("scripted", script)]).await;
    let app = spawn_app(model.settings("scripted")).await;
    let (mut client, session) = app.patient_in_session("p1").await;
    client
        .say(
            "m1",
            "I have a cough. My name is Sarah Jones and my number is 07700 900123",
        )
        .await;
    let frames = client
        .say(
            "m2",
            "My email is sarah.jones@example.com, NHS number 943 476 5919",
        )
        .await;

    // The provider saw placeholders only, consistent across the conversation.
    let requests = model.requests.lock().expect("requests").clone();
    let sent = serde_json::to_string(&requests).expect("json");
    for identifier in [
        "Sarah",
        "07700",
        "900123",
        "sarah.jones",
        "943 476 5919",
        "9434765919",
    ] {
        assert!(
            !sent.contains(identifier),
            "{identifier} reached the provider: {sent}"
        );
    }
    assert!(sent.contains("[PHONE_1]"), "{sent}");
    let last: Vec<Value> = requests.last().expect("request")["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let first_user = last
        .iter()
        .find(|message| message["role"] == "user")
        .expect("user line");
    assert!(
        first_user["content"]
            .as_str()
            .unwrap_or_default()
            .contains("[PHONE_1]"),
        "same placeholder in the later request"
    );

    // The patient's view shows the original values.
    assert_eq!(
        reply_text(&frames),
        "Thanks. I will note 07700 900123 for the nurse."
    );

    // The operator's dry run shows exactly what would be sent.
    let preview = reqwest::Client::new()
        .get(app.url(&format!("/v1/admin/sessions/{session}/model-request")))
        .bearer_auth(app.token("op", carebridge::auth::Role::Operator))
        .send()
        .await
        .expect("preview");
    let preview = preview.text().await.expect("body");
    assert!(
        preview.contains("[EMAIL_1]") && !preview.contains("sarah.jones"),
        "{preview}"
    );
}

/// A long reply for the disconnect tests: about 80 words, 5 characters every `delay_ms`.
fn long_reply(delay_ms: u64) -> Script {
    chunked(
        &"A sore throat usually gets better by itself within a week. ".repeat(8),
        5,
        delay_ms,
    )
}

/// Disconnects right after the first streamed words, then resumes on a new socket after `wait`
/// and returns the stored reply event.
async fn disconnect_mid_reply(detached_reply_ms: u64, delay_ms: u64, wait_ms: u64) -> Value {
    let model = FakeModel::start(vec![("slow", long_reply(delay_ms))]).await;
    let mut settings = model.settings("slow");
    settings.llm.reply_timeout_ms = 20_000;
    settings.llm.detached_reply_ms = detached_reply_ms;
    let app = spawn_app(settings).await;
    let (mut client, session) = app.patient_in_session("p1").await;
    client
        .send(serde_json::json!({"type": "message", "client_id": "m1", "text": "sore throat"}))
        .await;
    client.expect("delta").await;
    client.close().await;
    tokio::time::sleep(std::time::Duration::from_millis(wait_ms)).await;

    let mut again = app.patient("p1").await;
    again
        .send(serde_json::json!({"type": "resume", "session_id": session, "last_seq": 0}))
        .await;
    again.expect("welcome").await;
    loop {
        let event = again.expect("event").await;
        if event["event"]["kind"] == "assistant_message" {
            return event;
        }
    }
}

#[tokio::test]
async fn a_reply_cut_off_by_a_short_disconnect_is_finished_and_delivered_on_resume() {
    // 480 characters at 5 every 10 ms: about 1 s, well inside the 5 s the reply may go on.
    let event = disconnect_mid_reply(5_000, 10, 2_500).await;
    assert_eq!(event["event"]["replaced_by"], Value::Null, "{event}");
    assert_eq!(
        event["event"]["text"].as_str().map(str::trim),
        Some(
            "A sore throat usually gets better by itself within a week. "
                .repeat(8)
                .trim()
        )
    );
}

#[tokio::test]
async fn an_abandoned_reply_is_cancelled_upstream_and_stored_as_interrupted() {
    // About 10 s of reply; the patient is gone and the reply may only go on for 200 ms more.
    let event = disconnect_mid_reply(200, 100, 2_000).await;
    assert_eq!(event["event"]["replaced_by"], "interrupted", "{event}");
    let text = event["event"]["text"].as_str().unwrap_or_default();
    assert!(
        !text.is_empty() && text.len() < 200,
        "what was shown before the cancel, and no more: {text:?}"
    );
}
