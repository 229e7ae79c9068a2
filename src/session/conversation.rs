//! A patient's conversation: store the message, acknowledge it, check it against the policies,
//! alert at once when it is a red flag, then stream the model's reply through the guard.
//!
//! This module speaks in `ServerFrame`s sent to a bounded channel; it never touches a socket.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::tail::KnownTail;
use super::turns::TurnLine;
use super::{Mode, SessionEvent, SessionId, StoredEvent};
use crate::config::Settings;
use crate::guard::Guard;
use crate::llm::{ChatModel, ChatRequest, ChatTurn, LlmError, Role, TokenStream};
use crate::policy::reload::PolicyHandle;
use crate::policy::{EarlierFindings, Severity};
use crate::prompts::Prompts;
use crate::protocol::{ClientId, ErrorCode, PatientText, ServerFrame};
use crate::redact::Placeholders;
use crate::store::retry::{Persisted, Persistence, until_stored};
use crate::store::{SessionStore, StoreError};

/// Everything a conversation needs, shared by all sockets of a replica.
pub struct Services {
    pub settings: Arc<Settings>,
    pub store: Arc<dyn SessionStore>,
    pub escalations: Arc<crate::escalation::Escalations>,
    pub model: Arc<dyn ChatModel>,
    pub policies: Arc<PolicyHandle>,
    pub prompts: Arc<Prompts>,
    /// Replaces identifiers before text leaves for an external provider; `None` for a trusted
    /// provider or the built-in demo model.
    pub redactor: Option<Arc<crate::redact::Redactor>>,
    pub audit: Arc<crate::audit::Auditor>,
    /// Model replies streaming at once on this replica.
    pub model_streams: Arc<tokio::sync::Semaphore>,
}

/// Frames for one socket. Bounded: a slow phone slows its own conversation, not our memory.
pub type FrameSender = mpsc::Sender<ServerFrame>;

/// The state one socket keeps about its session.
pub struct Conversation {
    services: Arc<Services>,
    pub session: SessionId,
    /// The most severe flag raised in this session: output rules depend on it.
    flag: Severity,
    /// Recent patient texts, for rules that combine findings across messages, each with what it
    /// found (so it is scanned once, not again for every later message; again after a reload).
    recent: VecDeque<(String, EarlierFindings)>,
    /// The log has been delivered to this socket up to here (live notices read from it).
    pub delivered: u64,
    /// Events this socket already sent in its own way (`ack`, `alert`) that live delivery must
    /// skip. Not simply `delivered = seq`: another device or replica may have appended an event
    /// just before, and it must still reach this socket.
    own_seqs: std::collections::BTreeSet<u64>,
    /// Replies this socket streams itself (as `delta`/`done`), by message id.
    own_replies: OwnReplies,
    /// The patient, as the audit trail names them.
    patient: crate::audit::Actor,
    logged_up_to: u64,
    tail: Option<KnownTail>,
}

/// A reply to produce for a patient's message. It reaches the turn worker before the store has
/// confirmed the message, so that the model request can leave while the message is being
/// written (see `tail`); `stored` brings the store's answer.
#[derive(Debug)]
pub struct PendingTurn {
    pub flag: Severity,
    pub flag_note: Option<String>,
    /// Chosen before the reply starts, so that live delivery knows the stored reply is this
    /// socket's own even if its notice arrives before the reply task finishes.
    pub message_id: String,
    /// The message and its alert, as they are being written.
    pub written: Vec<SessionEvent>,
    /// The store's answer. Dropped unanswered when the message was not stored, was a retry of
    /// one already stored, or the socket went away: the turn is then abandoned.
    pub stored: oneshot::Receiver<Stored>,
    /// The latest reply stored before this turn started: a history without it is stale.
    waited_behind: u64,
    /// When the turn could start: the message reached the conversation, or the reply before it
    /// ended. The time to the model request is measured from here.
    pub ready: Instant,
    /// The model request, when the socket sent it as it handed the turn over.
    pub early: Option<Box<EarlyRequest>>,
}

#[cfg(test)]
impl PendingTurn {
    /// A routine turn for `written` whose store answer never comes.
    pub(crate) fn for_test(written: Vec<SessionEvent>) -> Self {
        let (_, stored) = oneshot::channel();
        Self {
            flag: Severity::Routine,
            flag_note: None,
            message_id: "m-test".into(),
            written,
            stored,
            waited_behind: 0,
            ready: Instant::now(),
            early: None,
        }
    }
}

/// The outcome of opening a model stream within the first-token limit.
type Opened = Result<Result<TokenStream, LlmError>, tokio::time::error::Elapsed>;

/// A model request sent before the patient's message was stored, built from what the turn
/// worker knew of the session plus the message (and its alert). It stands only if the store's
/// answer shows nothing else was written in between.
pub struct EarlyRequest {
    /// The request's place among the replica's model streams.
    permit: tokio::sync::OwnedSemaphorePermit,
    request: ChatRequest,
    placeholders: Placeholders,
    /// The sequence number the store's answer must end at for the request to stand.
    up_to: u64,
    opening: futures_util::future::BoxFuture<'static, Opened>,
}

impl std::fmt::Debug for EarlyRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EarlyRequest")
            .field("up_to", &self.up_to)
            .finish_non_exhaustive()
    }
}

/// Builds and sends the model request for a turn (which became ready at `ready`) from
/// `predicted`, the history the store will return if nothing else is written first.
pub(super) async fn send_early(
    services: &Arc<Services>,
    session: &SessionId,
    flag_note: Option<&str>,
    ready: Instant,
    predicted: History,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> EarlyRequest {
    use futures_util::FutureExt;
    let up_to = predicted.up_to;
    let (request, placeholders) =
        prepare_request(services, session, flag_note, Some(predicted)).await;
    metrics::histogram!("carebridge_turn_start_seconds").record(ready.elapsed().as_secs_f64());
    let limit = Duration::from_millis(services.settings.llm.first_token_timeout_ms);
    let model = Arc::clone(&services.model);
    let sent = request.clone();
    let mut opening = async move { tokio::time::timeout(limit, model.stream(sent)).await }.boxed();
    // Polled once here, so the request is on its way to the provider before this task goes on
    // to store the message, rather than once the worker's turn comes round on a busy thread.
    let first =
        std::future::poll_fn(|context| std::task::Poll::Ready(opening.as_mut().poll(context)))
            .await;
    if let std::task::Poll::Ready(opened) = first {
        opening = futures_util::future::ready(opened).boxed();
    }
    EarlyRequest {
        permit,
        request,
        placeholders,
        up_to,
        opening,
    }
}

/// The store's account of a patient's message, once it is stored and the patient has its `ack`
/// (and alert).
#[derive(Debug)]
pub struct Stored {
    /// The session's mode right after the write: it says whether the model answers.
    pub mode: Mode,
    /// The conversation's latest events right after this message and its alert, read with the
    /// write; `None` when something else was written between the two.
    pub history: Option<History>,
}

/// The latest events of a session, and the sequence number they run up to.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    pub events: Vec<SessionEvent>,
    pub up_to: u64,
}

impl PendingTurn {
    /// Called as the turn starts, with the sequence number of the latest reply stored and the
    /// moment the reply before this turn ended. A turn that waited behind an earlier reply
    /// does not use a history read with its message that misses that reply (the request then
    /// reads it afresh), and its time to the model request counts from the reply's end.
    pub fn after_earlier_reply(&mut self, stored: u64, ended: Instant) {
        self.ready = self.ready.max(ended);
        self.waited_behind = stored;
    }

    /// The history read with the message, unless it misses a reply stored since.
    fn current(&self, history: Option<History>) -> Option<History> {
        history.filter(|history| history.up_to >= self.waited_behind)
    }
}

/// Message ids of replies a socket streams itself.
pub type OwnReplies = Arc<std::sync::Mutex<std::collections::HashSet<String>>>;

impl Conversation {
    /// Opens a conversation on an existing session, loading what the policies need to remember.
    ///
    /// # Errors
    /// The store is unavailable.
    pub async fn open(
        services: Arc<Services>,
        session: SessionId,
        patient: crate::audit::Actor,
        mode: Mode,
    ) -> Result<Self, StoreError> {
        let events = services.store.events_after(&session, 0).await?;
        let logged_up_to = events.last().map_or(0, |stored| stored.seq);
        let keep = services.settings.llm.events_to_read();
        let tail = KnownTail::new(
            events[events.len().saturating_sub(keep)..]
                .iter()
                .map(|stored| stored.event.clone())
                .collect(),
            logged_up_to,
            mode,
            keep,
        );
        let window = services.settings.policies.window_messages;
        let mut recent = VecDeque::with_capacity(window + 1);
        let mut flag = Severity::Routine;
        for stored in &events {
            match &stored.event {
                SessionEvent::PatientMessage { text, .. } => {
                    recent.push_back((text.clone(), EarlierFindings::default()));
                    if recent.len() > window {
                        recent.pop_front();
                    }
                }
                SessionEvent::Alert { severity, .. } => flag = flag.max(*severity),
                _ => {}
            }
        }
        Ok(Self {
            services,
            session,
            flag,
            recent,
            delivered: 0,
            own_seqs: std::collections::BTreeSet::new(),
            own_replies: OwnReplies::default(),
            patient,
            logged_up_to,
            tail: Some(tail),
        })
    }

    pub fn flag(&self) -> Severity {
        self.flag
    }

    /// The sequence number of the last event in the log when the conversation was opened.
    pub fn logged_up_to(&self) -> u64 {
        self.logged_up_to
    }

    /// The session's latest events as read when the conversation was opened, for the first turn
    /// worker (once: a later worker starts knowing nothing).
    pub fn take_tail(&mut self) -> Option<KnownTail> {
        self.tail.take()
    }

    /// Whether this socket already sent `stored` in its own way (and forgets it: each is
    /// checked once).
    pub fn sent_already(&mut self, stored: &StoredEvent) -> bool {
        if self.own_seqs.remove(&stored.seq) {
            return true;
        }
        if let SessionEvent::AssistantMessage { message_id, .. } = &stored.event
            && let Ok(mut own) = self.own_replies.lock()
        {
            return own.remove(message_id);
        }
        false
    }

    /// Marks the log delivered up to `latest` without reading it when every event after what was
    /// delivered is one this socket sent itself (its messages' `ack`s and alerts): on Redis, a
    /// read saved for each notice of the socket's own writes. False when some other event may be
    /// among them, which must then be read.
    pub fn skip_own_up_to(&mut self, latest: u64) -> bool {
        let unread = latest.saturating_sub(self.delivered);
        let all_own = unread <= self.own_seqs.len() as u64
            && (self.delivered + 1..=latest).all(|seq| self.own_seqs.contains(&seq));
        if all_own {
            self.delivered_up_to(latest);
        }
        all_own
    }

    /// Marks the log delivered up to `seq`, forgetting own events at or before it.
    pub fn delivered_up_to(&mut self, seq: u64) {
        self.delivered = self.delivered.max(seq);
        let delivered = self.delivered;
        self.own_seqs.retain(|&own| own > delivered);
    }

    /// Handles one patient message: checks it against the policies, hands its reply to the turn
    /// worker (which may send the model request while the message is being stored), stores it,
    /// acknowledges it, alerts and escalates when it is a red flag, then tells the worker how the
    /// write went.
    ///
    /// # Errors
    /// Only a closed frame channel (the socket is gone).
    pub async fn on_message(
        &mut self,
        client_id: ClientId,
        text: PatientText,
        frames: &FrameSender,
        turns: Option<&TurnLine>,
    ) -> Result<(), Gone> {
        let ready = Instant::now();
        let policies = self.services.policies.current();
        for (earlier, findings) in &mut self.recent {
            if !findings.is_for(&policies) {
                *findings = policies.findings_for_later(earlier);
            }
        }
        let (decision, findings) = policies.evaluate_after(
            text.as_str(),
            self.recent.iter().map(|(_, findings)| findings),
        );
        metrics::histogram!("carebridge_policy_evaluation_seconds")
            .record(ready.elapsed().as_secs_f64());
        let alert = decision.lead().map(|lead| SessionEvent::Alert {
            severity: lead.severity,
            rule: lead.rule.clone(),
            guidance: lead.guidance.clone(),
            span: lead.matched.clone(),
            escalate: decision.escalates(),
        });
        let flag = decision
            .lead()
            .map_or(self.flag, |lead| self.flag.max(lead.severity));
        let flag_note = decision
            .lead()
            .filter(|lead| lead.severity >= Severity::Urgent)
            .map(|lead| {
                format!(
                    "the patient's message was flagged {} ({}).",
                    lead.severity.as_str(),
                    lead.summary
                )
            });
        let message_id = uuid::Uuid::new_v4().simple().to_string();
        let (answer, stored) = oneshot::channel();
        let mut turn = Some(PendingTurn {
            flag,
            flag_note,
            message_id: message_id.clone(),
            written: std::iter::once(SessionEvent::PatientMessage {
                client_id: client_id.as_str().to_owned(),
                text: text.as_str().to_owned(),
            })
            .chain(alert.clone())
            .collect(),
            stored,
            waited_behind: 0,
            ready,
            early: None,
        });
        self.own_reply(&message_id, true);
        // The worker gets the turn now when it has room for it; otherwise once the message is
        // stored, if it has room then.
        if let Some(line) = turns
            && let Some(pending) = turn.take()
        {
            match line.hand_over(pending, &self.services, &self.session).await {
                // Let the provider's connection (or the worker) send the request before this
                // task writes the message: a store that answers at once (memory) would otherwise
                // finish the write, the ack and the audit record before the provider's wait has
                // even begun.
                Ok(()) => tokio::task::yield_now().await,
                Err(pending) => turn = Some(pending),
            }
        }

        let store = &self.services.store;
        // Ack only after the store confirmed the write: an ack promises the message survives.
        let recent = self.services.settings.llm.events_to_read();
        let appended = match store
            .append_patient_message(&self.session, client_id.as_str(), text.as_str(), recent)
            .await
        {
            Ok(appended) => appended,
            Err(error) => {
                // Dropping `answer` abandons the turn (and cancels a request already sent).
                self.own_reply(&message_id, false);
                tracing::warn!(session = %self.session, error = %error, "patient message not stored");
                metrics::counter!("carebridge_store_errors_total").increment(1);
                // A red flag's guidance does not wait for the store: the patient may never send
                // the message again, so they are told what to do now (an alert at `seq` 0, not
                // stored), and its escalation is kept trying until the store is back. The message
                // itself is refused as usual; once it is stored, the alert comes again with its
                // `seq` and the open escalation stays as it is.
                if let Some(lead) = decision.lead() {
                    send(frames, alert_frame(0, lead)).await?;
                    metrics::counter!("carebridge_alerts_total", "severity" => lead.severity.as_str())
                        .increment(1);
                    if decision.escalates() {
                        self.services
                            .escalations
                            .raise_or_keep_trying(&self.session, pending_flag(lead))
                            .await;
                    }
                }
                return send(
                    frames,
                    ServerFrame::error(ErrorCode::Unavailable, error.to_string()),
                )
                .await;
            }
        };
        send(
            frames,
            ServerFrame::Ack {
                client_id,
                seq: appended.seq,
            },
        )
        .await?;
        self.own_seqs.insert(appended.seq);
        if appended.duplicate {
            self.own_reply(&message_id, false);
            if let (Some(lead), Some(event)) = (decision.lead(), alert) {
                self.red_flag_again(lead, event, decision.escalates(), appended.seq, frames)
                    .await?;
            }
            return Ok(());
        }
        metrics::counter!("carebridge_messages_total").increment(1);
        self.recent.push_back((text.into_inner(), findings));
        if self.recent.len() > self.services.settings.policies.window_messages {
            self.recent.pop_front();
        }
        self.flag = flag;
        metrics::counter!("carebridge_decisions_total", "level" => decision.level.as_str())
            .increment(1);
        let audited = decision_record(&decision, policies.version(), appended.seq);
        let mut history = Some(History {
            events: appended.recent,
            up_to: appended.seq,
        });

        if let (Some(lead), Some(event)) = (decision.lead(), alert) {
            for fired in &decision.fired {
                metrics::counter!("carebridge_rule_fired_total", "rule" => fired.rule.clone(), "severity" => fired.severity.as_str()).increment(1);
            }
            tracing::info!(
                session = %self.session,
                rule = %lead.rule,
                severity = lead.severity.as_str(),
                policy_version = policies.version(),
                "message flagged"
            );
            // The escalation is stored before the patient is told a nurse is being found; if the
            // store fails, the guidance still goes out (the patient comes first) and the failure
            // is loud in logs and metrics. Escalation and alert are written side by side: neither
            // needs the other, and the patient waits for both.
            let escalate = async {
                if decision.escalates() {
                    self.services
                        .escalations
                        .raise_or_keep_trying(&self.session, pending_flag(lead))
                        .await;
                }
            };
            let (stored, ()) = tokio::join!(store.append_event(&self.session, &event), escalate);
            // The guidance goes out even if the store cannot record it: the patient comes first.
            let seq = match stored {
                Ok(seq) => {
                    // Anything written between the message and its alert is missing from the
                    // history read with the message: the request then reads it afresh.
                    history = history
                        .take()
                        .filter(|history| history.up_to + 1 == seq)
                        .map(|mut history| {
                            history.events.push(event);
                            history.up_to = seq;
                            history
                        });
                    seq
                }
                Err(error) => {
                    history = None;
                    tracing::error!(session = %self.session, error = %error, "alert not stored");
                    0
                }
            };
            self.own_seqs.insert(seq);
            send(frames, alert_frame(seq, lead)).await?;
            metrics::counter!("carebridge_alerts_total", "severity" => lead.severity.as_str())
                .increment(1);
        }

        // The patient has the ack and any alert: from here the reply may reach them. While a
        // nurse holds the conversation the model is silent; the nurse reads the message.
        let answering = appended.mode.model_answers();
        if !answering {
            self.own_reply(&message_id, false);
        }
        let stored = Stored {
            mode: appended.mode,
            history,
        };
        match turn {
            // Handed over already: it may be waiting for exactly this.
            None => {
                let _ = answer.send(stored);
            }
            Some(turn) if answering => {
                let _ = answer.send(stored);
                if turns.is_none_or(|line| line.offer(turn).is_err()) {
                    self.own_reply(&message_id, false);
                    send(
                        frames,
                        ServerFrame::Error {
                            code: ErrorCode::RateLimited,
                            message: "replies are still being written; your message is saved, wait for them before sending more".into(),
                            retryable: true,
                            retry_after_ms: Some(2_000),
                        },
                    )
                    .await?;
                }
            }
            Some(_) => {}
        }

        // Recorded after the patient has the guidance: the trail must not delay it.
        self.services
            .audit
            .record(
                crate::audit::Action::PolicyDecision,
                &self.patient,
                Some(self.session.as_str()),
                audited,
            )
            .await;
        Ok(())
    }

    /// A red flag sent again: its first copy was stored, but its `ack` was lost (the socket or
    /// the replica went away before it was sent), so the patient may never have seen the
    /// guidance, and the escalation may never have been written. The escalation is raised again
    /// (an open one stays as it is) and the alert is sent again, with the sequence number the log
    /// has for it, or written now if the log has none.
    async fn red_flag_again(
        &mut self,
        lead: &crate::policy::FiredRule,
        alert: SessionEvent,
        escalates: bool,
        message_seq: u64,
        frames: &FrameSender,
    ) -> Result<(), Gone> {
        let store = &self.services.store;
        if escalates {
            self.services
                .escalations
                .raise_or_keep_trying(&self.session, pending_flag(lead))
                .await;
        }
        let logged = store
            .events_after(&self.session, message_seq)
            .await
            .ok()
            .and_then(|events| {
                events.into_iter().find_map(|stored| match stored.event {
                    SessionEvent::Alert { rule, .. } if rule == lead.rule => Some(stored.seq),
                    _ => None,
                })
            });
        let seq = match logged {
            Some(seq) => seq,
            None => store
                .append_event(&self.session, &alert)
                .await
                .unwrap_or_else(|error| {
                    tracing::error!(session = %self.session, error = %error, "alert not stored");
                    0
                }),
        };
        self.own_seqs.insert(seq);
        metrics::counter!("carebridge_alerts_resent_total").increment(1);
        send(frames, alert_frame(seq, lead)).await
    }

    /// Marks a reply id as this socket's own (it streams that reply itself), or forgets it when
    /// no such reply will be stored.
    fn own_reply(&self, message_id: &str, own: bool) {
        if let Ok(mut replies) = self.own_replies.lock() {
            if own {
                replies.insert(message_id.to_owned());
            } else {
                replies.remove(message_id);
            }
        }
    }

    /// Replays the log after `last_seq`.
    ///
    /// # Errors
    /// The store is unavailable (reported to the client), or the socket is gone.
    pub async fn replay(&mut self, last_seq: u64, frames: &FrameSender) -> Result<(), Gone> {
        match self
            .services
            .store
            .events_after(&self.session, last_seq)
            .await
        {
            Ok(events) => {
                for StoredEvent { seq, event } in events {
                    send(frames, ServerFrame::Event { seq, event }).await?;
                    self.delivered = self.delivered.max(seq);
                }
                Ok(())
            }
            Err(error) => {
                send(
                    frames,
                    ServerFrame::error(ErrorCode::Unavailable, error.to_string()),
                )
                .await
            }
        }
    }
}

/// What the escalation queue needs of a fired rule.
fn pending_flag(lead: &crate::policy::FiredRule) -> crate::escalation::PendingFlag {
    crate::escalation::PendingFlag {
        severity: lead.severity,
        rule: lead.rule.clone(),
        reason: lead.summary.clone(),
        span: lead.matched.clone(),
    }
}

/// A decision as the audit trail keeps it: rules, severities, context and spans' positions, never
/// the message text.
fn decision_record(
    decision: &crate::policy::Decision,
    policy_version: &str,
    seq: u64,
) -> serde_json::Value {
    let fired: Vec<serde_json::Value> = decision
        .fired
        .iter()
        .map(|fired| {
            serde_json::json!({
                "rule": fired.rule,
                "severity": fired.severity.as_str(),
                "escalate": fired.escalate,
                "span": [fired.span.0, fired.span.1],
                "context": fired.context,
            })
        })
        .collect();
    let set_aside: Vec<serde_json::Value> = decision
        .set_aside
        .iter()
        .map(|aside| serde_json::json!({"rule": aside.rule, "reason": aside.reason}))
        .collect();
    serde_json::json!({
        "message_seq": seq,
        "level": decision.level.as_str(),
        "policy_version": policy_version,
        "fired": fired,
        "set_aside": set_aside,
    })
}

/// The socket's frame channel closed: the client is gone.
#[derive(Debug, thiserror::Error)]
#[error("the client is gone")]
pub struct Gone;

/// The frame that gives the patient a red flag's guidance, stored at `seq`.
fn alert_frame(seq: u64, lead: &crate::policy::FiredRule) -> ServerFrame {
    ServerFrame::Alert {
        seq,
        severity: lead.severity,
        rule: lead.rule.clone(),
        guidance: lead.guidance.clone(),
    }
}

async fn send(frames: &FrameSender, frame: ServerFrame) -> Result<(), Gone> {
    frames.send(frame).await.map_err(|_| Gone)
}

/// Frames of a reply. When the patient's socket goes away mid-reply, the reply carries on
/// detached: it is finished and stored, so that a resuming client receives its final text.
struct Outbox {
    frames: FrameSender,
    detached: bool,
    restorer: Restorer,
}

impl Outbox {
    /// Sends released reply text with the patient's identifiers put back, and records what the
    /// patient saw.
    async fn delta(&mut self, message_id: &str, released: &str, shown: &mut String) {
        let text = self.restorer.push(released);
        if text.is_empty() {
            return;
        }
        shown.push_str(&text);
        self.send(ServerFrame::Delta {
            message_id: message_id.to_owned(),
            text,
        })
        .await;
    }

    /// Sends whatever the restorer still holds (the reply ended).
    async fn flush(&mut self, message_id: &str, shown: &mut String) {
        let text = self.restorer.finish();
        if !text.is_empty() {
            shown.push_str(&text);
            self.send(ServerFrame::Delta {
                message_id: message_id.to_owned(),
                text,
            })
            .await;
        }
    }

    async fn send(&mut self, frame: ServerFrame) {
        if !self.detached && self.frames.send(frame).await.is_err() {
            self.detached = true;
        }
    }
}

/// Produces one model reply: builds the request, streams it through the guard, stores the text
/// the patient saw, and returns it with its sequence number. Runs as its own task; `cancel`
/// stops it (a nurse took over, or the shutdown grace ran out).
///
/// `known` is what this socket's worker knows of the session's latest events. A turn handed over
/// while the worker was idle may bring its request already sent (`PendingTurn::early`, built
/// from `known` and the message); it is kept only if the store's answer shows nothing else was
/// written in between. Nothing reaches the patient before that answer, which comes after the
/// `ack` and any alert.
pub async fn run_turn(
    services: Arc<Services>,
    session: SessionId,
    mut turn: PendingTurn,
    frames: FrameSender,
    cancel: CancellationToken,
    known: &mut Option<KnownTail>,
) -> Option<StoredEvent> {
    let llm = &services.settings.llm;
    let keep = llm.events_to_read();
    let started = Instant::now();
    // The wait before this worker ran at all. On a busy thread it was most of the tail of the
    // time to the model request, which is why a request is sent early from the socket's task.
    metrics::histogram!("carebridge_turn_wait_seconds").record(turn.ready.elapsed().as_secs_f64());
    let deadline = tokio::time::Instant::now() + Duration::from_millis(llm.reply_timeout_ms);

    let (stream_permit, early) = match turn.early.take().map(|early| *early) {
        Some(EarlyRequest {
            permit,
            request,
            placeholders,
            up_to,
            opening,
        }) => (Some(permit), Some((request, placeholders, up_to, opening))),
        // A place among the replica's streaming replies; waiting for one counts against the
        // first-token limit, and the patient gets the fallback text when none frees up.
        None => {
            let permit = tokio::select! {
                _ = cancel.cancelled() => return None,
                permit = tokio::time::timeout(
                    Duration::from_millis(llm.first_token_timeout_ms),
                    Arc::clone(&services.model_streams).acquire_owned(),
                ) => permit.ok().and_then(Result::ok),
            };
            (permit, None)
        }
    };

    let mut opened_early = None;
    let mut request_sent = false;
    let (request, placeholders) = if let Some((request, placeholders, up_to, mut opening)) = early {
        request_sent = true;
        // The request goes on while the store answers, but the answer is acted on as soon as it
        // comes: an early request that must be dropped is not waited for.
        let mut opened = None;
        let stored = loop {
            tokio::select! {
                _ = cancel.cancelled() => return None,
                done = &mut opening, if opened.is_none() => opened = Some(done),
                stored = &mut turn.stored => break stored,
            }
        };
        // Not stored: dropping the early request cancels it upstream.
        let Ok(stored) = stored else {
            *known = None;
            return None;
        };
        let history = settle(&turn, stored, known, keep)?;
        if history
            .as_ref()
            .is_some_and(|history| history.up_to == up_to)
        {
            metrics::counter!("carebridge_early_requests_total", "outcome" => "kept").increment(1);
            opened_early = Some(match opened {
                Some(done) => done,
                None => tokio::select! {
                    _ = cancel.cancelled() => return None,
                    done = &mut opening => done,
                },
            });
            (request, placeholders)
        } else {
            metrics::counter!("carebridge_early_requests_total", "outcome" => "sent_again")
                .increment(1);
            prepare_request(&services, &session, turn.flag_note.as_deref(), history).await
        }
    } else {
        let stored = tokio::select! {
            _ = cancel.cancelled() => return None,
            stored = &mut turn.stored => match stored {
                Ok(stored) => stored,
                Err(_) => {
                    *known = None;
                    return None;
                }
            },
        };
        let history = settle(&turn, stored, known, keep)?;
        prepare_request(&services, &session, turn.flag_note.as_deref(), history).await
    };

    let mut outbox = Outbox {
        frames,
        detached: false,
        restorer: Restorer {
            placeholders,
            carry: String::new(),
        },
    };
    let frames = &mut outbox;
    let policies = services.policies.current();
    let rules = policies.output_rules();
    let message_id = turn.message_id.clone();
    let mut guard = Guard::new(rules, turn.flag);
    let mut shown = String::new();

    let mut attempt = 0;
    let outcome: Result<(), LlmError> = 'attempts: loop {
        if stream_permit.is_none() {
            break 'attempts Err(LlmError::Busy {
                waited_ms: llm.first_token_timeout_ms,
            });
        }
        attempt += 1;
        if !request_sent {
            // Everything Carebridge does between the patient's message and the model request:
            // the policies, the store write, the alert and escalation, the request itself.
            metrics::histogram!("carebridge_turn_start_seconds")
                .record(turn.ready.elapsed().as_secs_f64());
            request_sent = true;
        }
        let opened = match opened_early.take() {
            Some(opened) => opened,
            None => tokio::select! {
                _ = cancel.cancelled() => return None,
                opened = tokio::time::timeout(
                    Duration::from_millis(llm.first_token_timeout_ms),
                    services.model.stream(request.clone()),
                ) => opened,
            },
        };
        let stream = match opened {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                if error.is_retryable() && attempt < llm.max_attempts {
                    continue 'attempts;
                }
                break 'attempts Err(error);
            }
            Err(_) => {
                let error = LlmError::FirstTokenTimeout {
                    limit_ms: llm.first_token_timeout_ms,
                };
                if attempt < llm.max_attempts {
                    continue 'attempts;
                }
                break 'attempts Err(error);
            }
        };
        match pump(
            &services,
            stream,
            &mut guard,
            &mut shown,
            &message_id,
            frames,
            &cancel,
            deadline,
            started,
        )
        .await
        {
            Pumped::Finished => break 'attempts Ok(()),
            Pumped::Cancelled => {
                // A nurse took over mid-reply: keep what the patient already saw, so the
                // transcript and a resumed client show it too.
                if shown.is_empty() {
                    return None;
                }
                let reply =
                    store_reply(&services, &session, &message_id, shown, Some("interrupted")).await;
                let seq = reply.seq;
                frames.send(ServerFrame::Done { message_id, seq }).await;
                return Some(reply);
            }
            Pumped::Replaced(replacement) => {
                audit_guard(&services, &session, &guard, &message_id).await;
                return Some(
                    replace_reply(&services, &session, message_id, &shown, replacement, frames)
                        .await,
                );
            }
            Pumped::Failed(error) => {
                // Retry only while the patient has seen nothing of this reply.
                if shown.is_empty() && error.is_retryable() && attempt < llm.max_attempts {
                    continue 'attempts;
                }
                break 'attempts Err(error);
            }
        }
    };

    match outcome {
        Ok(()) => {
            let step = guard.finish();
            audit_guard(&services, &session, &guard, &message_id).await;
            if let Some(replacement) = step.replaced {
                return Some(
                    replace_reply(&services, &session, message_id, &shown, replacement, frames)
                        .await,
                );
            }
            frames.delta(&message_id, &step.release, &mut shown).await;
            frames.flush(&message_id, &mut shown).await;
            let reply = store_reply(&services, &session, &message_id, shown, None).await;
            let seq = reply.seq;
            frames.send(ServerFrame::Done { message_id, seq }).await;
            Some(reply)
        }
        Err(error) => {
            metrics::counter!("carebridge_provider_errors_total", "kind" => error.kind())
                .increment(1);
            tracing::warn!(session = %session, error = %error, "model reply failed; sending the fallback text");
            let fallback = services
                .prompts
                .render("fallback.en.j2", &BTreeMap::new())
                .unwrap_or_else(|_| "I'm sorry, I can't answer right now. If this is an emergency, call your local emergency number now.".into());
            let replacement = crate::guard::Replacement {
                rule: "fallback".into(),
                text: fallback,
            };
            Some(replace_reply(&services, &session, message_id, &shown, replacement, frames).await)
        }
    }
}

/// The store's answer as the turn's worker takes it: what it learns of the session, and the
/// history to answer from (`None` inside: read it afresh). `None` when the model stays silent.
fn settle(
    turn: &PendingTurn,
    stored: Stored,
    known: &mut Option<KnownTail>,
    keep: usize,
) -> Option<Option<History>> {
    let history = turn.current(stored.history);
    KnownTail::confirmed(known, history.as_ref(), stored.mode, keep);
    stored.mode.model_answers().then_some(history)
}

/// Builds the model request and records which identifiers it had replaced.
async fn prepare_request(
    services: &Services,
    session: &SessionId,
    flag_note: Option<&str>,
    history: Option<History>,
) -> (ChatRequest, Placeholders) {
    let started = Instant::now();
    let (request, placeholders, redacted) =
        build_request(services, session, flag_note, history).await;
    metrics::histogram!("carebridge_request_build_seconds").record(started.elapsed().as_secs_f64());
    if !redacted.is_empty() {
        // Which kinds and how many, never the values.
        services
            .audit
            .record(
                crate::audit::Action::Redaction,
                &crate::audit::Actor::system(),
                Some(session.as_str()),
                serde_json::json!({ "kinds": redacted }),
            )
            .await;
    }
    (request, placeholders)
}

fn join_shown(shown: &str, tail: &str) -> String {
    if shown.is_empty() {
        tail.to_owned()
    } else if shown.ends_with(char::is_whitespace) {
        format!("{shown}{tail}")
    } else {
        format!("{shown} {tail}")
    }
}

/// Stores a reply the guard stopped (what the patient saw, then the safe text) and tells the
/// patient. Returns the stored reply (sequence number 0 when the store failed: the patient still
/// gets the safe text).
async fn replace_reply(
    services: &Services,
    session: &SessionId,
    message_id: String,
    shown: &str,
    replacement: crate::guard::Replacement,
    frames: &mut Outbox,
) -> StoredEvent {
    let reply = store_reply(
        services,
        session,
        &message_id,
        join_shown(shown, &replacement.text),
        Some(&replacement.rule),
    )
    .await;
    frames
        .send(ServerFrame::Replaced {
            message_id,
            seq: reply.seq,
            text: replacement.text,
            rule: replacement.rule,
        })
        .await;
    reply
}

/// Stores the text of a reply as the patient saw it. Returns it with its sequence number, 0 when
/// the store failed: the patient already has the text, and the failure is logged and counted.
async fn store_reply(
    services: &Services,
    session: &SessionId,
    message_id: &str,
    text: String,
    replaced_by: Option<&str>,
) -> StoredEvent {
    let event = SessionEvent::AssistantMessage {
        message_id: message_id.to_owned(),
        text,
        replaced_by: replaced_by.map(str::to_owned),
    };
    // The patient has seen this text: it is tried again while the store restarts, so that a
    // resumed client, another device and the nurse's transcript see it too.
    let outcome = until_stored(Persistence::REPLY, || {
        services.store.append_event(session, &event)
    })
    .await;
    let seq = match outcome {
        Persisted::AtOnce(seq) => seq,
        Persisted::AfterRetries { value, failures } => {
            metrics::counter!("carebridge_reply_store_retries_total", "outcome" => "stored")
                .increment(1);
            tracing::warn!(session = %session, failures, "reply stored after the store came back");
            value
        }
        Persisted::GaveUp { error, failures } => {
            metrics::counter!("carebridge_store_errors_total").increment(1);
            metrics::counter!("carebridge_reply_store_retries_total", "outcome" => "gave_up")
                .increment(1);
            tracing::error!(session = %session, error = %error, failures, "reply not stored");
            0
        }
    };
    StoredEvent { seq, event }
}

/// Records what the output guard did to a reply, when it did anything.
async fn audit_guard(
    services: &Services,
    session: &SessionId,
    guard: &Guard<'_>,
    message_id: &str,
) {
    if guard.action() == crate::guard::GuardAction::Pass {
        return;
    }
    services
        .audit
        .record(
            crate::audit::Action::OutputGuard,
            &crate::audit::Actor::system(),
            Some(session.as_str()),
            serde_json::json!({
                "message_id": message_id,
                "action": guard.action(),
                "rules": guard.rules_acted(),
                "flag": guard.flag().as_str(),
                "policy_version": services.policies.current().version(),
            }),
        )
        .await;
}

enum Pumped {
    Finished,
    Cancelled,
    Replaced(crate::guard::Replacement),
    Failed(LlmError),
}

/// Pull, judge, then send: a slow phone slows the model read, not our memory.
#[allow(clippy::too_many_arguments)]
async fn pump(
    services: &Services,
    mut stream: TokenStream,
    guard: &mut Guard<'_>,
    shown: &mut String,
    message_id: &str,
    frames: &mut Outbox,
    cancel: &CancellationToken,
    deadline: tokio::time::Instant,
    started: Instant,
) -> Pumped {
    let llm = &services.settings.llm;
    let mut first = shown.is_empty();
    loop {
        let gap = if first {
            llm.first_token_timeout_ms
        } else {
            llm.chunk_gap_timeout_ms
        };
        let next = tokio::select! {
            _ = cancel.cancelled() => return Pumped::Cancelled,
            _ = tokio::time::sleep_until(deadline) => {
                return Pumped::Failed(LlmError::ReplyTimeout { limit_ms: llm.reply_timeout_ms });
            }
            next = tokio::time::timeout(Duration::from_millis(gap), stream.next()) => next,
        };
        let chunk = match next {
            Err(_) if first => {
                return Pumped::Failed(LlmError::FirstTokenTimeout { limit_ms: gap });
            }
            Err(_) => return Pumped::Failed(LlmError::ChunkGapTimeout { limit_ms: gap }),
            Ok(None) => return Pumped::Finished,
            Ok(Some(Err(error))) => return Pumped::Failed(error),
            Ok(Some(Ok(chunk))) => chunk,
        };
        let arrived = Instant::now();
        if first {
            metrics::histogram!("carebridge_model_first_token_seconds")
                .record(started.elapsed().as_secs_f64());
            first = false;
        }
        let guard_started = Instant::now();
        let step = guard.push(&chunk);
        metrics::histogram!("carebridge_guard_chunk_seconds")
            .record(guard_started.elapsed().as_secs_f64());
        if let Some(replacement) = step.replaced {
            // Dropping the stream cancels the upstream request.
            drop(stream);
            return Pumped::Replaced(replacement);
        }
        let first_release = shown.is_empty() && !step.release.is_empty();
        frames.delta(message_id, &step.release, shown).await;
        if first_release {
            // From the provider's chunk to the patient's socket writer: the guard, the
            // placeholders put back, the frame queued.
            metrics::histogram!("carebridge_first_delta_seconds")
                .record(arrived.elapsed().as_secs_f64());
        }
    }
}

/// Exactly what the next model request for this session would carry (for the operator's dry run).
pub async fn preview_request(services: &Services, session: &SessionId) -> ChatRequest {
    build_request(services, session, None, None).await.0
}

/// How many identifiers of each kind a request had replaced.
type RedactedKinds = BTreeMap<&'static str, usize>;

/// The system prompt and the recent conversation, within the configured budget.
async fn build_request(
    services: &Services,
    session: &SessionId,
    flag_note: Option<&str>,
    history: Option<History>,
) -> (ChatRequest, Placeholders, RedactedKinds) {
    let llm = &services.settings.llm;
    let mut values = BTreeMap::new();
    if let Some(note) = flag_note {
        values.insert("flag_note".to_owned(), note.to_owned());
    }
    values.entry("flag_note".to_owned()).or_default();
    let system = services
        .prompts
        .render("system.j2", &values)
        .unwrap_or_else(|error| {
            tracing::error!(error = %error, "system prompt did not render");
            "You are a careful health information assistant. You are not a clinician.".into()
        });
    // A bounded read, however long the conversation: the request never carries more than
    // `history_events` lines, and twice as many events leaves room for mode changes.
    let events = match history {
        Some(history) => history.events,
        None => services
            .store
            .latest_events(session, llm.events_to_read())
            .await
            .unwrap_or_default(),
    };
    let mut turns: Vec<ChatTurn> = Vec::new();
    let mut budget = llm.history_chars;
    for event in events.iter().rev() {
        let (role, content) = match event {
            SessionEvent::PatientMessage { text, .. } => (Role::User, text.clone()),
            SessionEvent::AssistantMessage { text, .. } => (Role::Assistant, text.clone()),
            SessionEvent::NurseMessage { text, .. } => {
                (Role::Assistant, format!("(A nurse wrote:) {text}"))
            }
            SessionEvent::Alert { guidance, .. } => (Role::Assistant, guidance.clone()),
            SessionEvent::ModeChanged { .. } => continue,
        };
        if content.len() > budget || turns.len() >= llm.history_events {
            break;
        }
        budget -= content.len();
        turns.push(ChatTurn { role, content });
    }
    turns.push(ChatTurn {
        role: Role::System,
        content: system,
    });
    turns.reverse();
    // Placeholders are numbered from the oldest line on, so the same identifier gets the same
    // placeholder in every request of the conversation.
    let mut placeholders = Placeholders::new();
    let mut kinds = RedactedKinds::new();
    if let Some(redactor) = &services.redactor {
        for turn in turns.iter_mut().filter(|turn| turn.role != Role::System) {
            let redacted = redactor.redact(&turn.content, &mut placeholders);
            for kind in &redacted.kinds {
                *kinds.entry(kind.as_str()).or_default() += 1;
            }
            turn.content = redacted.text;
        }
        if !kinds.is_empty() {
            // Which kinds, never the values.
            tracing::info!(session = %session, kinds = ?kinds, "identifiers replaced before the provider");
            metrics::counter!("carebridge_redactions_total").increment(kinds.len() as u64);
        }
    }
    (ChatRequest { turns }, placeholders, kinds)
}

/// Puts the patient's identifiers back into released reply text, holding back the end of a chunk
/// that may be the start of a placeholder split across chunks.
struct Restorer {
    placeholders: Placeholders,
    carry: String,
}

impl Restorer {
    fn push(&mut self, text: &str) -> String {
        if self.placeholders.is_empty() {
            return text.to_owned();
        }
        self.carry.push_str(text);
        let hold = Placeholders::unfinished_placeholder_len(&self.carry);
        let cut = self.carry.len() - hold.min(self.carry.len());
        let ready: String = self.carry.drain(..cut).collect();
        self.placeholders.restore(&ready)
    }

    fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.carry);
        self.placeholders.restore(&rest)
    }
}
