//! Escalation to nurses through real sockets: the queue, the claim race, take over, reply, hand
//! back, re-alert, a nurse who disconnects, and a claim on another replica.

use std::time::Duration;

use carebridge::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{Client, TestApp, TestRedis, settings_with_redis, spawn_app, test_settings};

async fn nurse(app: &TestApp, name: &str) -> Client {
    Client::connect(app.port, "/v1/nurse", Some(&app.token(name, Role::Nurse)))
        .await
        .expect("nurse connects")
}

/// Reads queue snapshots until one satisfies `check`.
async fn queue_until(client: &mut Client, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    loop {
        let frame = client.expect("queue").await;
        let items = frame["items"].as_array().cloned().unwrap_or_default();
        if check(&items) {
            return items;
        }
    }
}

async fn flagged_patient(app: &TestApp, subject: &str, text: &str) -> (Client, String) {
    let (mut patient, session) = app.patient_in_session(subject).await;
    patient.say("m1", text).await;
    (patient, session)
}

#[tokio::test]
async fn an_emergency_reaches_the_top_of_a_connected_nurses_queue() {
    let app = spawn_app(test_settings()).await;
    let mut nurse = nurse(&app, "n1").await;
    queue_until(&mut nurse, |items| items.is_empty()).await;
    let (_urgent, _) = flagged_patient(&app, "p1", "I want to talk to a real person please").await;
    let (_emergency, session) =
        flagged_patient(&app, "p2", "my husband collapsed and is not breathing").await;
    let items = queue_until(&mut nurse, |items| items.len() == 2).await;
    assert_eq!(items[0]["session"], session.as_str(), "{items:?}");
    assert_eq!(items[0]["severity"], "emergency");
    assert_eq!(items[0]["state"], "waiting");
    assert!(
        items[0]["rule"]
            .as_str()
            .unwrap_or_default()
            .starts_with("collapse.")
    );
}

#[tokio::test]
async fn of_many_concurrent_claims_exactly_one_wins() {
    let app = spawn_app(test_settings()).await;
    let (_patient, session) =
        flagged_patient(&app, "p1", "crushing chest pain going down my left arm").await;
    let mut nurses = Vec::new();
    for index in 0..6 {
        let mut client = nurse(&app, &format!("n{index}")).await;
        client.expect("queue").await;
        nurses.push(client);
    }
    for client in &mut nurses {
        client
            .send(json!({"type": "claim", "session_id": session}))
            .await;
    }
    let mut wins = 0;
    let mut refusals = 0;
    for client in &mut nurses {
        loop {
            let frame = client.next().await;
            match frame["type"].as_str() {
                Some("done") if frame["action"] == "claim" => {
                    wins += 1;
                    break;
                }
                Some("error") => {
                    assert_eq!(frame["code"], "already_claimed");
                    assert!(
                        frame["message"]
                            .as_str()
                            .unwrap_or_default()
                            .contains("claimed by n")
                    );
                    refusals += 1;
                    break;
                }
                _ => continue,
            }
        }
    }
    assert_eq!((wins, refusals), (1, 5));
}

#[tokio::test]
async fn a_nurse_takes_over_replies_and_hands_back() {
    let app = spawn_app(test_settings()).await;
    let (mut patient, session) = flagged_patient(
        &app,
        "p1",
        "I can't breathe properly and my lips are going blue",
    )
    .await;
    let mut nurse = nurse(&app, "n1").await;
    nurse
        .send(json!({"type": "claim", "session_id": session}))
        .await;
    let transcript = nurse.expect("transcript").await;
    let events = transcript["events"].as_array().cloned().unwrap_or_default();
    let alert = events
        .iter()
        .find(|event| event["event"]["kind"] == "alert")
        .expect("the flag is in the transcript");
    assert!(
        alert["event"]["span"].as_str().unwrap_or_default().len() > 3,
        "the nurse sees what matched"
    );

    nurse.send(json!({"type": "reply", "session_id": session, "text": "This is nurse Sam. Call 999 now."})).await;
    assert_eq!(patient.expect("nurse_joined").await["type"], "nurse_joined");
    let message = patient.expect("nurse_message").await;
    assert_eq!(message["text"], "This is nurse Sam. Call 999 now.");

    // While the nurse holds the conversation, patient messages go to the nurse, not the model.
    patient
        .send(json!({"type": "message", "client_id": "m2", "text": "ok calling now"}))
        .await;
    patient.expect("ack").await;
    loop {
        let frame = nurse.expect("session_event").await;
        if frame["event"]["event"]["kind"] == "patient_message" {
            assert_eq!(frame["event"]["event"]["text"], "ok calling now");
            break;
        }
    }
    patient.send(json!({"type": "ping"})).await;
    assert_eq!(
        patient.next().await["type"],
        "pong",
        "the model stayed silent"
    );

    nurse.send(json!({"type": "hand_back", "session_id": session, "outcome": "emergency_confirmed", "note": "Ambulance on its way."})).await;
    let handed = patient.expect("handed_back").await;
    assert_eq!(handed["note"], "Ambulance on its way.");
    let frames = patient.say("m3", "thank you").await;
    assert!(
        frames.iter().any(|frame| frame["type"] == "delta"),
        "the model answers again"
    );

    let outcomes = reqwest::Client::new()
        .get(app.url("/v1/admin/rules/outcomes"))
        .bearer_auth(app.token("op", Role::Operator))
        .send()
        .await
        .expect("outcomes");
    let report: Value = serde_json::from_str(&outcomes.text().await.expect("body")).expect("json");
    assert_eq!(report[0]["confirmed"], 1, "{report}");
}

#[tokio::test]
async fn another_nurses_actions_on_a_claimed_conversation_are_refused() {
    let app = spawn_app(test_settings()).await;
    let (_patient, session) =
        flagged_patient(&app, "p1", "crushing chest pain going down my left arm").await;
    let mut first = nurse(&app, "n1").await;
    first
        .send(json!({"type": "claim", "session_id": session}))
        .await;
    first.expect("done").await;
    let mut second = nurse(&app, "n2").await;
    second
        .send(json!({"type": "reply", "session_id": session, "text": "hello"}))
        .await;
    assert_eq!(second.expect("error").await["code"], "not_yours");
    let patient_socket =
        Client::connect(app.port, "/v1/nurse", Some(&app.token("p1", Role::Patient))).await;
    assert!(
        patient_socket.is_err(),
        "patients cannot open the nurse socket"
    );
}

#[tokio::test]
async fn an_unclaimed_emergency_is_re_alerted_and_moves_up() {
    let mut settings = test_settings();
    settings.escalation.realert_emergency_ms = 200;
    settings.escalation.tick_ms = 50;
    let app = spawn_app(settings).await;
    let (_patient, _) = flagged_patient(&app, "p1", "my baby is floppy and won't wake up").await;
    let mut nurse = nurse(&app, "n1").await;
    let items = queue_until(&mut nurse, |items| {
        items
            .first()
            .is_some_and(|item| item["realerts"].as_u64() >= Some(1))
    })
    .await;
    assert_eq!(items[0]["state"], "waiting");
}

#[tokio::test]
async fn a_nurse_who_disconnects_loses_the_claim_after_the_grace_period() {
    let mut settings = test_settings();
    settings.escalation.nurse_grace_ms = 300;
    settings.escalation.tick_ms = 50;
    let app = spawn_app(settings).await;
    let (mut patient, session) =
        flagged_patient(&app, "p1", "crushing chest pain going down my left arm").await;
    let mut first = nurse(&app, "n1").await;
    first
        .send(json!({"type": "claim", "session_id": session}))
        .await;
    first.expect("done").await;
    first
        .send(json!({"type": "take_over", "session_id": session}))
        .await;
    first.expect("done").await;
    patient.expect("nurse_joined").await;
    first.close().await;

    let mut second = nurse(&app, "n2").await;
    queue_until(&mut second, |items| {
        items.first().is_some_and(|item| item["state"] == "waiting")
    })
    .await;
    let handed = patient.expect("handed_back").await;
    assert!(
        handed["note"]
            .as_str()
            .unwrap_or_default()
            .contains("another nurse")
    );
    second
        .send(json!({"type": "claim", "session_id": session}))
        .await;
    assert_eq!(second.expect("done").await["action"], "claim");
}

#[tokio::test]
async fn an_escalation_raised_on_one_replica_is_claimed_on_another() {
    let redis = TestRedis::start();
    let replica_a = spawn_app(settings_with_redis(&redis)).await;
    let replica_b = spawn_app(settings_with_redis(&redis)).await;
    let mut nurse_b = nurse(&replica_b, "n1").await;
    let (mut patient, session) =
        flagged_patient(&replica_a, "p1", "I took 40 paracetamol an hour ago").await;
    let items = queue_until(&mut nurse_b, |items| !items.is_empty()).await;
    assert_eq!(items[0]["session"], session.as_str());
    nurse_b
        .send(json!({"type": "claim", "session_id": session}))
        .await;
    nurse_b.expect("done").await;
    nurse_b.send(json!({"type": "reply", "session_id": session, "text": "Nurse here from another replica."})).await;
    let message = tokio::time::timeout(Duration::from_secs(10), patient.expect("nurse_message"))
        .await
        .expect("in time");
    assert_eq!(message["text"], "Nurse here from another replica.");
}
