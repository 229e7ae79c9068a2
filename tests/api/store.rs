//! Sessions in Redis: the store's conformance suite, a Redis restart during a stream of
//! messages, two replicas sharing one Redis, and a replica that dies mid-conversation.

use std::time::Duration;

use carebridge::session::{SessionEvent, SessionId};
use carebridge::store::{RedisStore, SessionStore, StoreError, conformance};
use serde_json::json;

use crate::helpers::{
    Client, Incoming, ProcessApp, TestApp, TestRedis, TestRedisCluster, reply_text,
    settings_with_redis, spawn_app, test_settings,
};

/// The nurse queue as a nurse reads it; `None` while the server cannot answer (the store is down).
async fn nurse_queue(app: &TestApp) -> Option<serde_json::Value> {
    let response = reqwest::Client::new()
        .get(app.url("/v1/nurse/queue"))
        .bearer_auth(app.token("n1", carebridge::auth::Role::Nurse))
        .send()
        .await
        .ok()
        .filter(|response| response.status() == 200)?;
    Some(response.json().await.expect("the queue is JSON"))
}

#[tokio::test]
async fn the_redis_store_passes_the_conformance_suite() {
    let redis = TestRedis::start();
    let store = RedisStore::connect(&redis.url(), false, 3600)
        .await
        .expect("connects");
    conformance::appends_are_ordered_and_idempotent(&store).await;
    conformance::subscribers_hear_new_events(&store).await;
    conformance::missing_sessions_are_reported(&store).await;
}

#[tokio::test]
async fn every_acknowledged_message_survives_a_redis_kill_and_restart() {
    let mut redis = TestRedis::start();
    let app = spawn_app(settings_with_redis(&redis)).await;
    let (mut client, session) = app.patient_in_session("p1").await;

    let mut acked = Vec::new();
    let mut refused = 0;
    for index in 0..60 {
        if index == 20 {
            redis.kill();
        }
        if index == 40 {
            redis.restart();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let client_id = format!("m{index}");
        client
            .send(
                json!({"type": "message", "client_id": client_id, "text": format!("note {index}")}),
            )
            .await;
        // Each message ends with an ack (and later a reply) or a retryable error.
        loop {
            let frame = client.next().await;
            match frame["type"].as_str() {
                Some("ack") => {
                    acked.push(client_id.clone());
                    break;
                }
                // Replies queue behind each other; a full queue is reported but the message was acked.
                Some("error") if frame["code"] == "rate_limited" => continue,
                Some("error") => {
                    assert_eq!(frame["code"], "unavailable");
                    assert_eq!(frame["retryable"], true);
                    refused += 1;
                    break;
                }
                _ => continue,
            }
        }
    }
    assert!(
        refused > 0,
        "messages sent while Redis was down were refused"
    );
    assert!(
        acked.len() >= 40,
        "messages before the kill and after the restart were acked"
    );

    let store = RedisStore::connect(&redis.url(), false, 3600)
        .await
        .expect("connects");
    let session = SessionId::parse(&session).expect("session id");
    let stored: Vec<String> = store
        .events_after(&session, 0)
        .await
        .expect("log")
        .into_iter()
        .filter_map(|event| match event.event {
            SessionEvent::PatientMessage { client_id, .. } => Some(client_id),
            _ => None,
        })
        .collect();
    for client_id in &acked {
        assert!(
            stored.contains(client_id),
            "acknowledged {client_id} is in the log"
        );
    }
}

#[tokio::test]
async fn a_red_flag_the_store_cannot_take_still_gets_its_guidance_and_its_escalation() {
    let mut redis = TestRedis::start();
    let app = spawn_app(settings_with_redis(&redis)).await;
    let (mut client, session) = app.patient_in_session("p1").await;
    redis.kill();

    let red_flag = json!({"type": "message", "client_id": "m1", "text": "crushing chest pain spreading to my left arm"});
    client.send(red_flag.clone()).await;
    let alert = client.expect("alert").await;
    assert_eq!(alert["severity"], "emergency", "{alert}");
    assert_eq!(alert["seq"], 0, "not stored: {alert}");
    assert!(
        alert["guidance"]
            .as_str()
            .is_some_and(|text| text.contains("999")),
        "{alert}"
    );
    let refused = client.expect("error").await;
    assert_eq!(refused["code"], "unavailable", "{refused}");
    assert_eq!(refused["retryable"], true, "{refused}");

    // The patient may never send it again: the escalation reaches the queue once Redis is back.
    redis.restart();
    let queued = |queue: &serde_json::Value| {
        queue.as_array().map_or(0, |items| {
            items
                .iter()
                .filter(|item| item["session"] == session.as_str())
                .count()
        })
    };
    let mut queue = serde_json::Value::Null;
    for _ in 0..100 {
        if let Some(now) = nurse_queue(&app).await {
            queue = now;
            if queued(&queue) > 0 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        queued(&queue),
        1,
        "escalated once the store was back: {queue}"
    );

    // Sent again, the message is stored and acknowledged, its alert comes with its `seq`, and the
    // open escalation stays the only one.
    client.send(red_flag).await;
    let ack = client.expect("ack").await;
    let alert = client.expect("alert").await;
    assert!(alert["seq"].as_u64() > ack["seq"].as_u64(), "{ack} {alert}");
    let queue = nurse_queue(&app).await.expect("the nurse queue");
    assert_eq!(queued(&queue), 1, "{queue}");
}

#[tokio::test]
async fn readiness_follows_redis() {
    let mut redis = TestRedis::start();
    let app = spawn_app(settings_with_redis(&redis)).await;
    assert_eq!(
        reqwest::get(app.url("/readyz"))
            .await
            .expect("readyz")
            .status(),
        200
    );
    redis.kill();
    assert_eq!(
        reqwest::get(app.url("/readyz"))
            .await
            .expect("readyz")
            .status(),
        503
    );
    redis.restart();
    let mut ready = false;
    for _ in 0..50 {
        if reqwest::get(app.url("/readyz"))
            .await
            .expect("readyz")
            .status()
            == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "ready again once Redis is back, without a restart");
}

#[tokio::test]
async fn a_patient_resumes_on_another_replica_after_one_is_killed() {
    let redis = TestRedis::start();
    let mut replica_a = ProcessApp::start(&redis);
    let replica_b = spawn_app(settings_with_redis(&redis)).await;
    let mut patient = replica_a.patient("p1").await;
    patient.send(json!({"type": "hello"})).await;
    let session = patient.expect("welcome").await["session_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    patient.say("m1", "I have a cold").await;
    let second = patient.say("m2", "and a cough").await;
    let last_seen = second
        .iter()
        .filter_map(|frame| frame["seq"].as_u64())
        .max()
        .unwrap_or(0);
    assert_eq!(last_seen, 4);

    // SIGKILL: the replica gets no chance to say goodbye.
    replica_a.kill();
    assert_eq!(
        patient.close_code().await,
        None,
        "the connection just drops"
    );

    let mut again = replica_b.patient("p1").await;
    again
        .send(json!({"type": "resume", "session_id": session, "last_seq": 0}))
        .await;
    let welcome = again.expect("welcome").await;
    assert_eq!(welcome["last_seq"].as_u64(), Some(last_seen));
    let mut kinds = Vec::new();
    for _ in 0..last_seen {
        match again.next_message().await {
            Incoming::Frame(frame) => kinds.push(
                frame["event"]["kind"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            ),
            Incoming::Closed(_) => panic!("closed"),
        }
    }
    assert_eq!(
        kinds,
        vec![
            "patient_message",
            "assistant_message",
            "patient_message",
            "assistant_message"
        ]
    );
    let frames = again.say("m3", "thanks").await;
    assert_eq!(frames[0]["seq"].as_u64(), Some(last_seen + 1));
}

/// Reads frames until an `event` frame carrying `kind` arrives; fails on a frame in `forbidden`.
async fn event_of_kind(client: &mut Client, kind: &str, forbidden: &[&str]) -> serde_json::Value {
    loop {
        let frame = client.next().await;
        let frame_type = frame["type"].as_str().unwrap_or_default().to_owned();
        assert!(
            !forbidden.contains(&frame_type.as_str()),
            "unexpected {frame_type}: {frame}"
        );
        if frame_type == "event" && frame["event"]["kind"] == kind {
            return frame;
        }
    }
}

/// A patient on two devices, each on its own replica: what one device sends (and the reply it
/// gets) reaches the other live, as `event` frames, and the sender sees no duplicate.
#[tokio::test]
async fn a_second_device_on_another_replica_sees_the_conversation_live() {
    let redis = TestRedis::start();
    let first = spawn_app(settings_with_redis(&redis)).await;
    let second = spawn_app(settings_with_redis(&redis)).await;
    let (mut phone, session) = first.patient_in_session("p1").await;
    let mut laptop = second.patient("p1").await;
    laptop
        .send(json!({"type": "hello", "session_id": session}))
        .await;
    laptop.expect("welcome").await;

    let frames = phone.say("m1", "what helps a mild sore throat").await;
    let acked = frames
        .iter()
        .find(|frame| frame["type"] == "ack")
        .expect("ack")["seq"]
        .as_u64()
        .expect("seq");
    let message = event_of_kind(&mut laptop, "patient_message", &[]).await;
    assert_eq!(message["seq"].as_u64(), Some(acked));
    assert_eq!(message["event"]["text"], "what helps a mild sore throat");
    let reply = event_of_kind(&mut laptop, "assistant_message", &[]).await;
    assert_eq!(
        reply["event"]["text"].as_str(),
        Some(reply_text(&frames).as_str())
    );

    // The laptop writes too; the phone sees it once, and never its own messages again.
    laptop
        .send(json!({"type": "message", "client_id": "m2", "text": "and is honey ok"}))
        .await;
    let from_laptop = event_of_kind(&mut phone, "patient_message", &["ack"]).await;
    assert_eq!(from_laptop["event"]["text"], "and is honey ok");
    let mut seen = vec![from_laptop["seq"].as_u64().expect("seq")];
    seen.push(
        event_of_kind(&mut phone, "assistant_message", &[]).await["seq"]
            .as_u64()
            .expect("seq"),
    );
    phone.send(json!({"type": "ping"})).await;
    loop {
        let frame = phone.next().await;
        if frame["type"] == "pong" {
            break;
        }
        if let Some(seq) = frame["seq"].as_u64() {
            assert!(!seen.contains(&seq), "delivered twice: {frame}");
        }
    }
}

/// The same store code on a three-node Redis Cluster: the conformance suite, then a whole
/// conversation through the server with an escalation and the audit trail (keys of many slots).
#[tokio::test]
async fn the_store_runs_on_a_redis_cluster() {
    let cluster = TestRedisCluster::start();
    let store = RedisStore::connect(&cluster.urls(), true, 3600)
        .await
        .expect("connects to the cluster");
    conformance::appends_are_ordered_and_idempotent(&store).await;
    conformance::subscribers_hear_new_events(&store).await;
    conformance::missing_sessions_are_reported(&store).await;

    let mut settings = test_settings();
    settings.store.backend = carebridge::config::StoreBackend::Redis;
    settings.store.redis_url = cluster.urls();
    settings.store.redis_cluster = true;
    let app = spawn_app(settings).await;
    let mut sessions = Vec::new();
    // Several sessions: their keys fall in different slots, on different nodes.
    for index in 0..4 {
        let (mut patient, session) = app.patient_in_session(&format!("p{index}")).await;
        let frames = patient
            .say("m1", "crushing chest pain spreading to my left arm")
            .await;
        assert!(frames.iter().any(|frame| frame["type"] == "alert"));
        sessions.push(session);
    }
    let queue = nurse_queue(&app).await.expect("the nurse queue");
    let queued: Vec<&str> = queue
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item["session"].as_str())
                .collect()
        })
        .unwrap_or_default();
    for session in &sessions {
        assert!(
            queued.contains(&session.as_str()),
            "{session} not in {queue}"
        );
    }
    let verified: serde_json::Value = reqwest::Client::new()
        .get(app.url("/v1/admin/audit/verify"))
        .bearer_auth(app.token("op", carebridge::auth::Role::Operator))
        .send()
        .await
        .expect("verify")
        .text()
        .await
        .map(|body| serde_json::from_str(&body).expect("json"))
        .expect("body");
    assert_eq!(verified["broken"], serde_json::Value::Null, "{verified}");
    assert!(
        verified["entries"].as_u64().unwrap_or_default() >= 8,
        "{verified}"
    );
}

#[tokio::test]
async fn a_thread_that_first_needs_redis_while_it_is_down_is_served_once_it_is_back() {
    // Each server thread opens its own connection on first use. A thread whose first command
    // comes during an outage gets a clear error, then answers through the shared connection once
    // Redis is back, without waiting for its own to be retried.
    let mut redis = TestRedis::start();
    let store = std::sync::Arc::new(
        RedisStore::connect(&redis.url(), false, 3600)
            .await
            .expect("connects"),
    );
    let session = SessionId::random();
    store.create_session(&session, "p1").await.expect("create");

    let on_thread = std::sync::Arc::clone(&store);
    let other_thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            redis.kill();
            let refused = on_thread
                .append_patient_message(&session, "m1", "hello", 4)
                .await;
            assert!(
                matches!(refused, Err(StoreError::Unavailable(_))),
                "{refused:?}"
            );
            redis.restart();
            for _ in 0..100 {
                if let Ok(appended) = on_thread
                    .append_patient_message(&session, "m1", "hello", 4)
                    .await
                {
                    return appended;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("no answer on this thread after Redis came back");
        })
    });
    // The shared connection is driven by this runtime: keep it running while the thread works.
    let appended = tokio::task::spawn_blocking(move || other_thread.join())
        .await
        .expect("joined")
        .expect("the thread did not panic");
    assert_eq!(appended.seq, 1);
    assert!(!appended.duplicate);
}
