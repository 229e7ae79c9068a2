//! `GET /v1/nurse`: the nurse console's WebSocket. A snapshot of the queue on connect and on every
//! change (from any replica), the transcripts of conversations the nurse follows with live events,
//! and the actions: claim, take over, reply, hand back, release, close.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::{AppState, upgrade};
use crate::auth::{Claims, Role};
use crate::escalation::{EscalationError, now_ms};
use crate::protocol::close_code;
use crate::protocol::nurse::{NurseFrame, NurseServerFrame, QueueItem};
use crate::session::SessionId;

/// Frames above this end the connection.
const HARD_FRAME_CAP: usize = 256 * 1024;

pub async fn nurse(
    request: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    upgrade(
        &request,
        body,
        state,
        Role::Nurse,
        HARD_FRAME_CAP,
        |state, claims, _address, session, inbound| async move {
            NurseSocket::new(state, claims).run(session, inbound).await;
        },
    )
}

struct NurseSocket {
    state: Arc<AppState>,
    claims: Claims,
    /// Conversations this console follows, with the last sequence number sent.
    following: HashMap<SessionId, (u64, tokio::task::JoinHandle<()>)>,
    live_sender: mpsc::Sender<SessionId>,
    live: mpsc::Receiver<SessionId>,
}

impl Drop for NurseSocket {
    fn drop(&mut self) {
        for (_, (_, task)) in self.following.drain() {
            task.abort();
        }
    }
}

impl NurseSocket {
    fn new(state: Arc<AppState>, claims: Claims) -> Self {
        let (live_sender, live) = mpsc::channel(64);
        Self {
            state,
            claims,
            following: HashMap::new(),
            live_sender,
            live,
        }
    }

    async fn run(
        mut self,
        mut session: actix_ws::Session,
        mut inbound: actix_ws::AggregatedMessageStream,
    ) {
        let settings = Arc::clone(&self.state.services.settings);
        let mut heartbeat =
            tokio::time::interval(Duration::from_millis(settings.server.heartbeat_interval_ms));
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let client_timeout = Duration::from_millis(settings.server.client_timeout_ms);
        let mut last_seen = Instant::now();
        let mut queue_notices = self.state.services.store.queue_notices();
        let expired = tokio::time::sleep(Duration::from_secs(
            self.claims.exp.saturating_sub(crate::auth::now_unix()),
        ));
        tokio::pin!(expired);
        let shutdown = self.state.shutdown.clone();
        if self.send_queue(&mut session).await.is_err() {
            return;
        }
        let close = loop {
            tokio::select! {
                _ = shutdown.cancelled() => break (CloseCode::Away, "server restarting; reconnect"),
                _ = &mut expired => break (CloseCode::Other(close_code::TOKEN_EXPIRED), "token expired"),
                _ = heartbeat.tick() => {
                    if last_seen.elapsed() > client_timeout {
                        break (CloseCode::Other(close_code::TIMED_OUT), "heartbeat timeout");
                    }
                    // Keeps this nurse's claims alive; a nurse who is gone loses them after the grace.
                    let _ = self.state.services.escalations.touch(&self.claims.sub).await;
                    if session.ping(b"").await.is_err() {
                        return;
                    }
                }
                notice = queue_notices.recv() => {
                    if matches!(notice, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                        queue_notices = self.state.services.store.queue_notices();
                    }
                    // Many changes at once become one snapshot.
                    while queue_notices.try_recv().is_ok() {}
                    if self.send_queue(&mut session).await.is_err() {
                        return;
                    }
                }
                Some(followed) = self.live.recv() => {
                    if self.send_new_events(&followed, &mut session).await.is_err() {
                        return;
                    }
                }
                message = inbound.next() => {
                    let Some(message) = message else { return };
                    last_seen = Instant::now();
                    match message {
                        Ok(AggregatedMessage::Text(text)) => {
                            if self.on_text(&text, &mut session).await.is_err() {
                                return;
                            }
                        }
                        Ok(AggregatedMessage::Ping(bytes)) => {
                            if session.pong(&bytes).await.is_err() {
                                return;
                            }
                        }
                        Ok(AggregatedMessage::Close(_)) => break (CloseCode::Normal, "bye"),
                        Ok(AggregatedMessage::Binary(_)) => {
                            let frame = error_frame("binary_not_supported", "send JSON text frames", None);
                            if send(&mut session, &frame).await.is_err() {
                                return;
                            }
                        }
                        Ok(AggregatedMessage::Pong(_)) => {}
                        Err(_) => break (CloseCode::Protocol, "protocol error"),
                    }
                }
            }
        };
        let _ = session
            .close(Some(CloseReason {
                code: close.0,
                description: Some(close.1.to_owned()),
            }))
            .await;
    }

    async fn send_queue(&self, session: &mut actix_ws::Session) -> Result<(), actix_ws::Closed> {
        let now = now_ms();
        let frame = match self.state.services.escalations.queue().await {
            Ok(queue) => NurseServerFrame::Queue {
                items: queue
                    .into_iter()
                    .map(|escalation| QueueItem {
                        waiting_ms: now.saturating_sub(escalation.created_at_ms),
                        escalation,
                    })
                    .collect(),
            },
            Err(error) => error_frame("unavailable", &error.to_string(), None),
        };
        send(session, &frame).await
    }

    async fn on_text(
        &mut self,
        text: &str,
        session: &mut actix_ws::Session,
    ) -> Result<(), actix_ws::Closed> {
        let frame: NurseFrame = match serde_json::from_str(text) {
            Ok(frame) => frame,
            Err(error) => {
                return send(
                    session,
                    &error_frame("invalid_frame", &error.to_string(), None),
                )
                .await;
            }
        };
        let escalations = Arc::clone(&self.state.services.escalations);
        let nurse = self.claims.sub.clone();
        let max_bytes = self.state.services.settings.limits.max_message_bytes;
        let (action, session_id, outcome) = match frame {
            NurseFrame::Ping {} => return send(session, &NurseServerFrame::Pong).await,
            NurseFrame::Queue {} => return self.send_queue(session).await,
            NurseFrame::Transcript { session_id } => return self.follow(session_id, session).await,
            NurseFrame::Claim { session_id } => {
                let outcome = escalations.claim(&session_id, &nurse).await.map(|_| ());
                if outcome.is_ok() {
                    tracing::info!(nurse = %nurse, session = %session_id, "escalation claimed");
                    self.follow(session_id.clone(), session).await?;
                }
                ("claim", session_id, outcome)
            }
            NurseFrame::TakeOver { session_id } => {
                let outcome = escalations.take_over(&session_id, &nurse).await.map(|_| ());
                ("take_over", session_id, outcome)
            }
            NurseFrame::Reply { session_id, text } => {
                if text.trim().is_empty() || text.len() > max_bytes {
                    let message = format!("reply must be 1 to {max_bytes} bytes");
                    return send(
                        session,
                        &error_frame("invalid_frame", &message, Some(session_id)),
                    )
                    .await;
                }
                let outcome = escalations
                    .reply(&session_id, &nurse, &text)
                    .await
                    .map(|_| ());
                ("reply", session_id, outcome)
            }
            NurseFrame::HandBack {
                session_id,
                outcome,
                note,
            } => {
                let result = escalations
                    .finish(&session_id, &nurse, outcome, note, false)
                    .await
                    .map(|_| ());
                ("hand_back", session_id, result)
            }
            NurseFrame::Release { session_id } => {
                let outcome = escalations.release(&session_id, &nurse).await.map(|_| ());
                ("release", session_id, outcome)
            }
            NurseFrame::Close {
                session_id,
                outcome,
                note,
            } => {
                let result = escalations
                    .finish(&session_id, &nurse, outcome, note, true)
                    .await
                    .map(|_| ());
                ("close", session_id, result)
            }
        };
        let frame = match outcome {
            Ok(()) => NurseServerFrame::Done {
                action: action.to_owned(),
                session_id,
            },
            Err(error) => escalation_error(&error, session_id),
        };
        send(session, &frame).await
    }

    /// Sends the whole transcript and follows the conversation's live events.
    async fn follow(
        &mut self,
        session_id: SessionId,
        session: &mut actix_ws::Session,
    ) -> Result<(), actix_ws::Closed> {
        let store = Arc::clone(&self.state.services.store);
        match store.session_meta(&session_id).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                return send(
                    session,
                    &error_frame("not_found", "no such session", Some(session_id)),
                )
                .await;
            }
            Err(error) => {
                return send(
                    session,
                    &error_frame("unavailable", &error.to_string(), Some(session_id)),
                )
                .await;
            }
        }
        let notices = match store.subscribe(&session_id).await {
            Ok(notices) => notices,
            Err(error) => {
                return send(
                    session,
                    &error_frame("unavailable", &error.to_string(), Some(session_id)),
                )
                .await;
            }
        };
        let events = match store.events_after(&session_id, 0).await {
            Ok(events) => events,
            Err(error) => {
                return send(
                    session,
                    &error_frame("unavailable", &error.to_string(), Some(session_id)),
                )
                .await;
            }
        };
        let last = events.last().map_or(0, |event| event.seq);
        if !self.following.contains_key(&session_id) {
            let sender = self.live_sender.clone();
            let followed = session_id.clone();
            let task = tokio::spawn(async move {
                let mut notices = notices;
                loop {
                    match notices.recv().await {
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            if sender.send(followed.clone()).await.is_err() {
                                return;
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    }
                }
            });
            self.following.insert(session_id.clone(), (last, task));
        } else if let Some((delivered, _)) = self.following.get_mut(&session_id) {
            *delivered = last;
        }
        send(
            session,
            &NurseServerFrame::Transcript { session_id, events },
        )
        .await
    }

    async fn send_new_events(
        &mut self,
        session_id: &SessionId,
        session: &mut actix_ws::Session,
    ) -> Result<(), actix_ws::Closed> {
        let Some((delivered, _)) = self.following.get(session_id) else {
            return Ok(());
        };
        let Ok(events) = self
            .state
            .services
            .store
            .events_after(session_id, *delivered)
            .await
        else {
            // The log keeps them; the next notice delivers them.
            return Ok(());
        };
        for event in events {
            if let Some((delivered, _)) = self.following.get_mut(session_id) {
                *delivered = (*delivered).max(event.seq);
            }
            send(
                session,
                &NurseServerFrame::SessionEvent {
                    session_id: session_id.clone(),
                    event,
                },
            )
            .await?;
        }
        Ok(())
    }
}

fn error_frame(code: &str, message: &str, session_id: Option<SessionId>) -> NurseServerFrame {
    NurseServerFrame::Error {
        code: code.to_owned(),
        message: message.to_owned(),
        session_id,
    }
}

fn escalation_error(error: &EscalationError, session_id: SessionId) -> NurseServerFrame {
    error_frame(error.code(), &error.to_string(), Some(session_id))
}

async fn send(
    session: &mut actix_ws::Session,
    frame: &NurseServerFrame,
) -> Result<(), actix_ws::Closed> {
    session.text(frame.to_json()).await
}
