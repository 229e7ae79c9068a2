//! `GET /v1/chat`: the patient's WebSocket.
//!
//! One task reads frames and runs the conversation; a writer task drains a bounded channel of
//! outgoing frames; a turn worker produces model replies one at a time. The read loop never waits
//! on the model, so pings, acks and alerts flow while a reply streams.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{AppState, upgrade};
use crate::auth::{Claims, Role};
use crate::protocol::{
    ClientFrame, ErrorCode, FrameError, PROTOCOL_VERSION, PatientText, ServerFrame, close_code,
    parse_client_frame,
};
use crate::session::conversation::{Conversation, FrameSender, Services, run_turn};
use crate::session::tail::KnownTail;
use crate::session::turns::{self, TurnLine};
use crate::session::{Mode, SessionEvent, SessionId};
use crate::store::EventNotices;

/// Frames above this are a protocol error that ends the connection; frames between our limit and
/// this get a polite `too_large` error and the connection stays usable.
const HARD_FRAME_CAP: usize = 1024 * 1024;
/// Outgoing frames buffered per socket.
const OUTBOX_FRAMES: usize = 32;
/// Replies waiting behind the one streaming now.
const QUEUED_TURNS: usize = 4;
/// The WebSocket sub-protocol a browser client offers beside its `bearer.<token>` entry.
pub const SUBPROTOCOL: &str = "carebridge.v1";

pub async fn chat(
    request: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    upgrade(
        &request,
        body,
        state,
        Role::Patient,
        HARD_FRAME_CAP,
        |state, claims, address, session, inbound| async move {
            PatientSocket::new(state, claims, address)
                .run(session, inbound)
                .await;
        },
    )
}

/// Why a socket ended, and the close frame it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    ClientClosed,
    Gone,
    TimedOut,
    Abusive,
    GoingAway,
    TokenExpired,
}

impl Ending {
    fn close_reason(self) -> Option<CloseReason> {
        let (code, description) = match self {
            Self::ClientClosed | Self::Gone => (CloseCode::Normal, "bye"),
            Self::TimedOut => (CloseCode::Other(close_code::TIMED_OUT), "heartbeat timeout"),
            Self::Abusive => (CloseCode::Policy, "too many invalid or rate-limited frames"),
            Self::GoingAway => (CloseCode::Away, "server restarting; reconnect and resume"),
            Self::TokenExpired => (
                CloseCode::Other(close_code::TOKEN_EXPIRED),
                "token expired; authenticate again and resume",
            ),
        };
        Some(CloseReason {
            code,
            description: Some(description.to_owned()),
        })
    }
}

struct PatientSocket {
    state: Arc<AppState>,
    claims: Claims,
    conversation: Option<Conversation>,
    notices: Option<EventNotices>,
    turns: Option<TurnLine>,
    /// Cancels the reply in progress (nurse takeover, shutdown grace over).
    turn_cancel: CancellationToken,
    turn_worker: Option<tokio::task::JoinHandle<()>>,
    /// Invalid frames and rate-limit hits within the current window.
    errors: u32,
    error_window_started: Instant,
    address: std::net::IpAddr,
}

impl PatientSocket {
    fn new(state: Arc<AppState>, claims: Claims, address: std::net::IpAddr) -> Self {
        Self {
            state,
            claims,
            address,
            conversation: None,
            notices: None,
            turns: None,
            turn_cancel: CancellationToken::new(),
            turn_worker: None,
            errors: 0,
            error_window_started: Instant::now(),
        }
    }

    fn services(&self) -> &Arc<Services> {
        &self.state.services
    }

    async fn run(
        mut self,
        session: actix_ws::Session,
        mut inbound: actix_ws::AggregatedMessageStream,
    ) {
        let settings = Arc::clone(&self.services().settings);
        let (frames, outgoing) = mpsc::channel::<ServerFrame>(OUTBOX_FRAMES);
        let writer = tokio::spawn(write_frames(session.clone(), outgoing));
        let mut control = session;
        let mut heartbeat =
            tokio::time::interval(Duration::from_millis(settings.server.heartbeat_interval_ms));
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let client_timeout = Duration::from_millis(settings.server.client_timeout_ms);
        let mut last_seen = Instant::now();
        let token_expiry =
            Duration::from_secs(self.claims.exp.saturating_sub(crate::auth::now_unix()));
        let expired = tokio::time::sleep(token_expiry);
        tokio::pin!(expired);
        let shutdown = self.state.shutdown.clone();

        let ending = loop {
            tokio::select! {
                _ = shutdown.cancelled() => break Ending::GoingAway,
                _ = &mut expired => break Ending::TokenExpired,
                _ = heartbeat.tick() => {
                    if last_seen.elapsed() > client_timeout {
                        break Ending::TimedOut;
                    }
                    if control.ping(b"").await.is_err() {
                        break Ending::Gone;
                    }
                }
                notice = next_notice(&mut self.notices) => {
                    if let Some(latest) = notice
                        && self.forward_live_events(latest, &frames).await.is_err()
                    {
                        break Ending::Gone;
                    }
                }
                message = inbound.next() => {
                    let Some(message) = message else { break Ending::Gone };
                    last_seen = Instant::now();
                    let outcome = match message {
                        Ok(AggregatedMessage::Text(text)) => self.on_text(&text, &frames).await,
                        Ok(AggregatedMessage::Binary(_)) => self.refuse(FrameError::Binary, &frames).await,
                        Ok(AggregatedMessage::Ping(bytes)) => {
                            if control.pong(&bytes).await.is_err() { Err(Ending::Gone) } else { Ok(()) }
                        }
                        Ok(AggregatedMessage::Pong(_)) => Ok(()),
                        Ok(AggregatedMessage::Close(_)) => Err(Ending::ClientClosed),
                        Err(error) => {
                            tracing::debug!(error = %error, "websocket protocol error");
                            Err(Ending::Abusive)
                        }
                    };
                    if let Err(ending) = outcome {
                        break ending;
                    }
                }
            }
        };

        self.finish(ending, frames, writer, control, &settings)
            .await;
    }

    /// Ends the socket: lets a streaming reply finish (within the grace on shutdown), flushes the
    /// outgoing frames, then sends the close frame.
    async fn finish(
        mut self,
        ending: Ending,
        frames: FrameSender,
        writer: tokio::task::JoinHandle<()>,
        control: actix_ws::Session,
        settings: &crate::config::Settings,
    ) {
        drop(self.turns.take());
        if let Some(worker) = self.turn_worker.take() {
            let grace = Duration::from_millis(settings.server.shutdown_grace_ms);
            match ending {
                // The patient is gone: a phone that lost its signal usually comes back within
                // seconds, so the reply may finish detached (and is stored for resume) for a
                // short while; after that the upstream request is cancelled and what was
                // written so far is stored, marked interrupted.
                Ending::Gone | Ending::ClientClosed | Ending::TimedOut => {
                    let cancel = self.turn_cancel.clone();
                    let detached = Duration::from_millis(settings.llm.detached_reply_ms);
                    tokio::spawn(async move {
                        if tokio::time::timeout(detached, worker).await.is_err() {
                            cancel.cancel();
                        }
                    });
                }
                _ => {
                    if tokio::time::timeout(grace, worker).await.is_err() {
                        self.turn_cancel.cancel();
                    }
                }
            }
        }
        drop(frames);
        let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
        let _ = control.close(ending.close_reason()).await;
    }

    async fn on_text(&mut self, text: &str, frames: &FrameSender) -> Result<(), Ending> {
        let limits = &self.services().settings.limits;
        let frame = match parse_client_frame(text, limits.max_frame_bytes) {
            Ok(frame) => frame,
            Err(error) => return self.refuse(error, frames).await,
        };
        let max_message_bytes = limits.max_message_bytes;
        match frame {
            ClientFrame::Ping {} => send(frames, ServerFrame::Pong).await,
            ClientFrame::Hello { session_id } => self.hello(session_id, frames).await,
            ClientFrame::Resume {
                session_id,
                last_seq,
            } => self.resume(session_id, last_seq, frames).await,
            ClientFrame::Message { client_id, text } => {
                let text = match PatientText::parse(text, max_message_bytes) {
                    Ok(text) => text,
                    Err(error) => return self.refuse(error, frames).await,
                };
                if self.conversation.is_none() {
                    return send(
                        frames,
                        ServerFrame::error(
                            ErrorCode::NoSession,
                            "send hello or resume before messages",
                        ),
                    )
                    .await;
                }
                if let Err(refusal) = self
                    .state
                    .limits
                    .admit_message(&self.claims.sub, self.address)
                    && !self.emergency_override(&text)
                {
                    return self.rate_limited(&refusal, frames).await;
                }
                let Some(conversation) = self.conversation.as_mut() else {
                    return Ok(());
                };
                conversation
                    .on_message(client_id, text, frames, self.turns.as_ref())
                    .await
                    .map_err(|_| Ending::Gone)
            }
        }
    }

    /// Counts an invalid frame; too many in the window end the connection.
    async fn refuse(&mut self, error: FrameError, frames: &FrameSender) -> Result<(), Ending> {
        metrics::counter!("carebridge_invalid_frames_total", "code" => format!("{:?}", error.code())).increment(1);
        send(frames, ServerFrame::error(error.code(), error.to_string())).await?;
        self.strike()
    }

    /// A message over the rate: not stored, not acknowledged (the client retries after
    /// `retry_after_ms`), and a strike toward closing a socket that keeps flooding.
    async fn rate_limited(
        &mut self,
        refusal: &crate::limits::Refusal,
        frames: &FrameSender,
    ) -> Result<(), Ending> {
        metrics::counter!("carebridge_rate_limited_total", "what" => "message").increment(1);
        send(
            frames,
            ServerFrame::Error {
                code: ErrorCode::RateLimited,
                message: format!("{refusal}; your message was not saved, send it again then"),
                retryable: true,
                retry_after_ms: refusal.retry_after_ms(),
            },
        )
        .await?;
        self.strike()
    }

    /// An emergency is taken even over the rate (within its own small budget): a patient in
    /// distress typing fast must not be told to wait.
    fn emergency_override(&self, text: &PatientText) -> bool {
        let emergency = self
            .services()
            .policies
            .current()
            .evaluate(text.as_str())
            .level
            == crate::policy::Severity::Emergency;
        let allowed = emergency && self.state.limits.admit_emergency_override(&self.claims.sub);
        if allowed {
            metrics::counter!("carebridge_rate_limit_emergency_overrides_total").increment(1);
        }
        allowed
    }

    /// Invalid frames and rate-limit hits count together; too many in the window end the
    /// connection with a policy-violation close.
    fn strike(&mut self) -> Result<(), Ending> {
        let settings = Arc::clone(&self.services().settings);
        let limits = &settings.limits;
        if self.error_window_started.elapsed() > Duration::from_millis(limits.error_window_ms) {
            self.errors = 0;
            self.error_window_started = Instant::now();
        }
        self.errors += 1;
        if self.errors > limits.max_errors {
            Err(Ending::Abusive)
        } else {
            Ok(())
        }
    }

    async fn hello(
        &mut self,
        session_id: Option<SessionId>,
        frames: &FrameSender,
    ) -> Result<(), Ending> {
        if let Some(session_id) = session_id {
            return self.attach(session_id, None, frames).await;
        }
        let session = SessionId::random();
        if let Err(error) = self
            .services()
            .store
            .create_session(&session, &self.claims.sub)
            .await
        {
            return send(
                frames,
                ServerFrame::error(ErrorCode::Unavailable, error.to_string()),
            )
            .await;
        }
        self.attach(session, None, frames).await
    }

    async fn resume(
        &mut self,
        session: SessionId,
        last_seq: u64,
        frames: &FrameSender,
    ) -> Result<(), Ending> {
        self.attach(session, Some(last_seq), frames).await
    }

    /// Joins a session the caller owns, replays what it missed, and starts live delivery.
    async fn attach(
        &mut self,
        session: SessionId,
        replay_after: Option<u64>,
        frames: &FrameSender,
    ) -> Result<(), Ending> {
        let store = Arc::clone(&self.services().store);
        let meta = match store.session_meta(&session).await {
            Ok(Some(meta)) => meta,
            Ok(None) => {
                return send(
                    frames,
                    ServerFrame::error(ErrorCode::SessionNotFound, "no such session"),
                )
                .await;
            }
            Err(error) => {
                return send(
                    frames,
                    ServerFrame::error(ErrorCode::Unavailable, error.to_string()),
                )
                .await;
            }
        };
        if meta.owner != self.claims.sub {
            // Same answer as a missing session: do not reveal which ids exist.
            return send(
                frames,
                ServerFrame::error(ErrorCode::SessionNotFound, "no such session"),
            )
            .await;
        }
        // Subscribe before reading the log, so nothing falls between the two.
        let notices = match store.subscribe(&session).await {
            Ok(notices) => notices,
            Err(error) => {
                return send(
                    frames,
                    ServerFrame::error(ErrorCode::Unavailable, error.to_string()),
                )
                .await;
            }
        };
        let mut conversation = match Conversation::open(
            Arc::clone(self.services()),
            session.clone(),
            crate::audit::Actor::from(&self.claims),
            meta.mode,
        )
        .await
        {
            Ok(conversation) => conversation,
            Err(error) => {
                return send(
                    frames,
                    ServerFrame::error(ErrorCode::Unavailable, error.to_string()),
                )
                .await;
            }
        };
        let last_seq = conversation.logged_up_to();
        send(
            frames,
            ServerFrame::Welcome {
                session_id: session.clone(),
                protocol: PROTOCOL_VERSION,
                last_seq,
            },
        )
        .await?;
        match replay_after {
            Some(after) => conversation
                .replay(after, frames)
                .await
                .map_err(|_| Ending::Gone)?,
            None => conversation.delivered = last_seq,
        }
        let known = conversation.take_tail();
        self.conversation = Some(conversation);
        self.notices = Some(notices);
        self.start_turn_worker(session, frames.clone(), known);
        Ok(())
    }

    /// Starts the worker that writes this socket's replies, one at a time, knowing the session's
    /// latest events as `known` says (`None`: it learns them from the first message's write).
    fn start_turn_worker(
        &mut self,
        session: SessionId,
        frames: FrameSender,
        known: Option<KnownTail>,
    ) {
        self.turn_cancel.cancel();
        self.turn_cancel = CancellationToken::new();
        let (turns, mut queue) = turns::line(QUEUED_TURNS, known);
        let services = Arc::clone(self.services());
        let cancel = self.turn_cancel.clone();
        let worker = tokio::spawn(async move {
            let mut latest_reply = 0;
            let mut ended = std::time::Instant::now();
            while let Some((mut turn, mut known)) = queue.next().await {
                turn.after_earlier_reply(latest_reply, ended);
                let stored = run_turn(
                    Arc::clone(&services),
                    session.clone(),
                    turn,
                    frames.clone(),
                    cancel.clone(),
                    &mut known,
                )
                .await;
                if let Some(reply) = stored {
                    latest_reply = latest_reply.max(reply.seq);
                    KnownTail::reply_stored(&mut known, reply);
                }
                queue.finished(known);
                ended = std::time::Instant::now();
            }
        });
        self.turns = Some(turns);
        self.turn_worker = Some(worker);
    }

    /// Sends events written elsewhere (a nurse, another replica) that this socket has not sent.
    async fn forward_live_events(
        &mut self,
        latest: u64,
        frames: &FrameSender,
    ) -> Result<(), Ending> {
        let Some(conversation) = self.conversation.as_mut() else {
            return Ok(());
        };
        if latest <= conversation.delivered || conversation.skip_own_up_to(latest) {
            return Ok(());
        }
        let store = Arc::clone(&self.state.services.store);
        let events = match store
            .events_after(&conversation.session, conversation.delivered)
            .await
        {
            Ok(events) => events,
            // The log keeps them; the next notice or a resume delivers them.
            Err(_) => return Ok(()),
        };
        let session = conversation.session.clone();
        let mut frames_out = Vec::new();
        let mut nurse_joined = false;
        for stored in events {
            let seq = stored.seq;
            // Patient messages, alerts and replies of this socket were sent as ack/alert/done;
            // the same kinds written by another device or replica arrive as `event` frames.
            let own = conversation.sent_already(&stored);
            conversation.delivered_up_to(seq);
            if own {
                continue;
            }
            let frame = match stored.event {
                SessionEvent::NurseMessage { text, .. } => ServerFrame::NurseMessage { seq, text },
                SessionEvent::ModeChanged {
                    mode: Mode::Nurse, ..
                } => {
                    nurse_joined = true;
                    ServerFrame::NurseJoined { seq }
                }
                SessionEvent::ModeChanged {
                    mode: Mode::Closed,
                    note,
                } => ServerFrame::Closed { seq, note },
                SessionEvent::ModeChanged { note, .. } => ServerFrame::HandedBack { seq, note },
                event => ServerFrame::Event { seq, event },
            };
            frames_out.push(frame);
        }
        if nurse_joined {
            // The nurse took over: the model's reply stops at once (the upstream request is
            // dropped), and replies start afresh once the conversation is handed back.
            self.start_turn_worker(session, frames.clone(), None);
        }
        for frame in frames_out {
            send(frames, frame).await?;
        }
        Ok(())
    }
}

/// The next live notice, or never when the socket has no session yet.
async fn next_notice(notices: &mut Option<EventNotices>) -> Option<u64> {
    match notices {
        Some(receiver) => match receiver.recv().await {
            Ok(seq) => Some(seq),
            // Fell behind: the log has everything, so read from where we are.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => Some(u64::MAX),
            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                *notices = None;
                None
            }
        },
        None => std::future::pending().await,
    }
}

async fn send(frames: &FrameSender, frame: ServerFrame) -> Result<(), Ending> {
    frames.send(frame).await.map_err(|_| Ending::Gone)
}

async fn write_frames(mut session: actix_ws::Session, mut outgoing: mpsc::Receiver<ServerFrame>) {
    while let Some(frame) = outgoing.recv().await {
        if session.text(frame.to_json()).await.is_err() {
            break;
        }
    }
}
