//! Escalation to nurses: a queue ordered by severity then age, shared by every replica through the
//! store; claim (atomic: one nurse wins), take over, reply, hand back, release, close; re-alert
//! when nobody claims in time; return a conversation to the queue when its nurse disappears.
//!
//! Every change is a compare-and-set on the escalation's version, so two replicas (or two nurses)
//! acting at once cannot both win. Nothing leaves the queue except by a nurse's explicit close.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::audit::{Action, Actor, ActorRole, Auditor};
use crate::policy::Severity;
use crate::session::{Mode, SessionEvent, SessionId};
use crate::store::retry::{Persisted, Persistence, until_stored};
use crate::store::{SessionStore, StoreError};

/// Where an escalation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EscalationState {
    Waiting,
    Claimed,
    Closed,
}

impl EscalationState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Claimed => "claimed",
            Self::Closed => "closed",
        }
    }
}

/// One flagged conversation waiting for, or held by, a nurse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalation {
    pub session: SessionId,
    pub severity: Severity,
    pub rule: String,
    /// Why it was flagged, for the nurse: the rule's summary and the matched words.
    pub reason: String,
    pub span: String,
    pub created_at_ms: u64,
    pub state: EscalationState,
    pub nurse: Option<String>,
    pub claimed_at_ms: Option<u64>,
    /// Times it was re-alerted because nobody claimed it; each raises its place in the queue.
    pub realerts: u32,
    pub last_alert_ms: u64,
    /// When the holding nurse's socket was last seen.
    pub holder_seen_ms: u64,
    /// Set when closed.
    pub outcome: Option<Outcome>,
    /// Compare-and-set version; the store increments it on every write.
    pub version: u64,
}

impl Escalation {
    /// Queue order: most severe first, then most re-alerted, then oldest.
    pub fn queue_key(&self) -> (std::cmp::Reverse<Severity>, std::cmp::Reverse<u32>, u64) {
        (
            std::cmp::Reverse(self.severity),
            std::cmp::Reverse(self.realerts),
            self.created_at_ms,
        )
    }

    /// A score for a Redis sorted set with the same order as [`Escalation::queue_key`].
    pub fn score(&self) -> f64 {
        let severity = match self.severity {
            Severity::Emergency => 0.0,
            Severity::Urgent => 1.0,
            Severity::Routine => 2.0,
        };
        // Milliseconds since 2020 fit in 1e12 for decades; re-alerts move ahead by whole days.
        let age = self.created_at_ms.saturating_sub(1_577_836_800_000) as f64;
        severity * 1e13 - f64::from(self.realerts) * 8.64e7 + age
    }
}

/// What the nurse concluded, which gives each rule's precision over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    EmergencyConfirmed,
    Urgent,
    NotUrgent,
    Other,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EmergencyConfirmed => "emergency_confirmed",
            Self::Urgent => "urgent",
            Self::NotUrgent => "not_urgent",
            Self::Other => "other",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EscalationError {
    #[error("no open escalation for session {0}")]
    NotFound(SessionId),
    #[error("already claimed by {by}")]
    AlreadyClaimed { by: String },
    #[error("this conversation is not claimed by you; claim it first")]
    NotYours,
    #[error("the escalation kept changing under us; try again")]
    Contended,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl EscalationError {
    /// A stable code for the nurse protocol.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "not_found",
            Self::AlreadyClaimed { .. } => "already_claimed",
            Self::NotYours => "not_yours",
            Self::Contended => "contended",
            Self::Store(_) => "unavailable",
        }
    }
}

/// Timings of the queue.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EscalationSettings {
    /// Re-alert an unclaimed emergency after this long.
    pub realert_emergency_ms: u64,
    pub realert_urgent_ms: u64,
    pub realert_routine_ms: u64,
    /// A nurse whose socket is gone this long loses the conversations they held (back to the
    /// queue).
    pub nurse_grace_ms: u64,
    /// How often each replica checks the queue.
    pub tick_ms: u64,
}

impl Default for EscalationSettings {
    fn default() -> Self {
        Self {
            realert_emergency_ms: 60_000,
            realert_urgent_ms: 300_000,
            realert_routine_ms: 900_000,
            nurse_grace_ms: 30_000,
            tick_ms: 1_000,
        }
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

const CAS_ATTEMPTS: usize = 8;

/// The queue's rules, over any store.
pub struct Escalations {
    store: Arc<dyn SessionStore>,
    settings: EscalationSettings,
    audit: Arc<Auditor>,
}

/// What a flag asks of the queue.
pub struct Flag<'a> {
    pub severity: Severity,
    pub rule: &'a str,
    pub reason: &'a str,
    pub span: &'a str,
}

/// A flag owned, so that it can wait for a store that is coming back.
#[derive(Debug, Clone)]
pub struct PendingFlag {
    pub severity: Severity,
    pub rule: String,
    pub reason: String,
    pub span: String,
}

impl PendingFlag {
    fn flag(&self) -> Flag<'_> {
        Flag {
            severity: self.severity,
            rule: &self.rule,
            reason: &self.reason,
            span: &self.span,
        }
    }
}

impl Escalations {
    pub fn new(
        store: Arc<dyn SessionStore>,
        settings: EscalationSettings,
        audit: Arc<Auditor>,
    ) -> Self {
        Self {
            store,
            settings,
            audit,
        }
    }

    /// Records a step of an escalation in the audit trail.
    async fn audit(&self, action: Action, actor: &Actor, escalation: &Escalation) {
        self.audit
            .record(
                action,
                actor,
                Some(escalation.session.as_str()),
                serde_json::json!({
                    "severity": escalation.severity.as_str(),
                    "rule": escalation.rule,
                    "state": escalation.state,
                    "realerts": escalation.realerts,
                    "outcome": escalation.outcome,
                }),
            )
            .await;
    }

    pub fn settings(&self) -> &EscalationSettings {
        &self.settings
    }

    /// Opens an escalation for a session that has none; `None` when it has one already.
    async fn open(
        &self,
        session: &SessionId,
        flag: &Flag<'_>,
    ) -> Result<Option<Escalation>, EscalationError> {
        let now = now_ms();
        let escalation = Escalation {
            session: session.clone(),
            severity: flag.severity,
            rule: flag.rule.to_owned(),
            reason: flag.reason.to_owned(),
            span: flag.span.to_owned(),
            created_at_ms: now,
            state: EscalationState::Waiting,
            nurse: None,
            claimed_at_ms: None,
            realerts: 0,
            last_alert_ms: now,
            holder_seen_ms: 0,
            outcome: None,
            version: 0,
        };
        if !self.store.put_escalation(&escalation, None).await? {
            return Ok(None);
        }
        metrics::counter!("carebridge_escalations_total", "severity" => flag.severity.as_str())
            .increment(1);
        let _ = self.store.set_mode(session, Mode::WaitingForNurse).await;
        self.audit(Action::EscalationRaised, &Actor::system(), &escalation)
            .await;
        Ok(Some(escalation))
    }

    /// Puts a flagged session in the queue, or raises the severity of its open escalation.
    ///
    /// # Errors
    /// The store is unavailable, or the record kept changing.
    pub async fn raise(
        &self,
        session: &SessionId,
        flag: Flag<'_>,
    ) -> Result<Escalation, EscalationError> {
        // Most red flags open a new escalation: try that before reading, which saves a round
        // trip to the store on the patient's path. An existing record makes the write fail
        // without changing anything.
        if let Some(opened) = self.open(session, &flag).await? {
            return Ok(opened);
        }
        for _ in 0..CAS_ATTEMPTS {
            match self.store.get_escalation(session).await? {
                None => {
                    if let Some(opened) = self.open(session, &flag).await? {
                        return Ok(opened);
                    }
                }
                Some(current) if flag.severity > current.severity => {
                    let mut raised = current.clone();
                    raised.severity = flag.severity;
                    raised.rule = flag.rule.to_owned();
                    raised.reason = flag.reason.to_owned();
                    raised.span = flag.span.to_owned();
                    if self
                        .store
                        .put_escalation(&raised, Some(current.version))
                        .await?
                    {
                        self.audit(Action::EscalationRaised, &Actor::system(), &raised)
                            .await;
                        return Ok(raised);
                    }
                }
                Some(current) => return Ok(current),
            }
        }
        Err(EscalationError::Contended)
    }

    /// Raises `flag`; when the store fails, keeps trying in the background
    /// (`Persistence::ESCALATION`), so that a red flag's escalation survives a store restart while
    /// the patient already has the guidance. Returns whether it was stored at once.
    pub async fn raise_or_keep_trying(
        self: &Arc<Self>,
        session: &SessionId,
        flag: PendingFlag,
    ) -> bool {
        let Err(error) = self.raise(session, flag.flag()).await else {
            return true;
        };
        metrics::counter!("carebridge_escalation_failures_total").increment(1);
        tracing::error!(session = %session, error = %error, "escalation not stored; trying again until the store is back");
        let escalations = Arc::clone(self);
        let session = session.clone();
        tokio::spawn(async move {
            let outcome = until_stored(Persistence::ESCALATION, || {
                escalations.raise(&session, flag.flag())
            })
            .await;
            match outcome {
                Persisted::AtOnce(_) | Persisted::AfterRetries { .. } => {
                    metrics::counter!("carebridge_escalation_retries_total", "outcome" => "stored")
                        .increment(1);
                    tracing::warn!(session = %session, rule = %flag.rule, "escalation stored after the store came back");
                }
                Persisted::GaveUp { error, failures } => {
                    metrics::counter!("carebridge_escalation_retries_total", "outcome" => "gave_up")
                        .increment(1);
                    tracing::error!(session = %session, rule = %flag.rule, error = %error, failures, "escalation given up: the store did not come back");
                }
            }
        });
        false
    }

    /// Every open escalation, in queue order (waiting first).
    ///
    /// # Errors
    /// The store is unavailable.
    pub async fn queue(&self) -> Result<Vec<Escalation>, EscalationError> {
        let mut all = self.store.list_escalations().await?;
        all.sort_by_key(|escalation| {
            (
                escalation.state != EscalationState::Waiting,
                escalation.queue_key(),
            )
        });
        Ok(all)
    }

    /// Applies `change` to the session's escalation with compare-and-set, retrying on contention.
    async fn update(
        &self,
        session: &SessionId,
        change: impl Fn(&Escalation) -> Result<Option<Escalation>, EscalationError>,
    ) -> Result<Escalation, EscalationError> {
        for _ in 0..CAS_ATTEMPTS {
            let current = self
                .store
                .get_escalation(session)
                .await?
                .ok_or_else(|| EscalationError::NotFound(session.clone()))?;
            let Some(next) = change(&current)? else {
                return Ok(current);
            };
            if self
                .store
                .put_escalation(&next, Some(current.version))
                .await?
            {
                return Ok(next);
            }
        }
        Err(EscalationError::Contended)
    }

    /// Claims a waiting escalation. Exactly one of many concurrent claims wins.
    ///
    /// # Errors
    /// `AlreadyClaimed` naming the winner, `NotFound`, or a store failure.
    pub async fn claim(
        &self,
        session: &SessionId,
        nurse: &str,
    ) -> Result<Escalation, EscalationError> {
        let claimed = self
            .update(session, |current| match (&current.state, &current.nurse) {
                (EscalationState::Claimed, Some(holder)) if holder == nurse => Ok(None),
                (EscalationState::Claimed, Some(holder)) => {
                    Err(EscalationError::AlreadyClaimed { by: holder.clone() })
                }
                _ => {
                    let now = now_ms();
                    let mut next = current.clone();
                    next.state = EscalationState::Claimed;
                    next.nurse = Some(nurse.to_owned());
                    next.claimed_at_ms = Some(now);
                    next.holder_seen_ms = now;
                    Ok(Some(next))
                }
            })
            .await?;
        if let Some(claimed_at) = claimed.claimed_at_ms {
            let waited = claimed_at.saturating_sub(claimed.created_at_ms) as f64 / 1000.0;
            metrics::histogram!("carebridge_time_to_claim_seconds", "severity" => claimed.severity.as_str()).record(waited);
        }
        self.audit(
            Action::EscalationClaimed,
            &Actor::new(nurse, ActorRole::Nurse),
            &claimed,
        )
        .await;
        Ok(claimed)
    }

    fn held_by<'a>(
        current: &'a Escalation,
        nurse: &str,
    ) -> Result<&'a Escalation, EscalationError> {
        match (&current.state, &current.nurse) {
            (EscalationState::Claimed, Some(holder)) if holder == nurse => Ok(current),
            _ => Err(EscalationError::NotYours),
        }
    }

    /// The model stops and the nurse talks to the patient.
    ///
    /// # Errors
    /// Not claimed by this nurse, or a store failure.
    pub async fn take_over(
        &self,
        session: &SessionId,
        nurse: &str,
    ) -> Result<u64, EscalationError> {
        let current = self
            .store
            .get_escalation(session)
            .await?
            .ok_or_else(|| EscalationError::NotFound(session.clone()))?;
        Self::held_by(&current, nurse)?;
        if let Some(meta) = self.store.session_meta(session).await?
            && meta.mode == Mode::Nurse
        {
            return Ok(0);
        }
        self.store.set_mode(session, Mode::Nurse).await?;
        let event = SessionEvent::ModeChanged {
            mode: Mode::Nurse,
            note: Some(nurse.to_owned()),
        };
        let seq = self.store.append_event(session, &event).await?;
        self.audit(
            Action::NurseTookOver,
            &Actor::new(nurse, ActorRole::Nurse),
            &current,
        )
        .await;
        Ok(seq)
    }

    /// A nurse's message to the patient (taking over first if needed).
    ///
    /// # Errors
    /// Not claimed by this nurse, or a store failure.
    pub async fn reply(
        &self,
        session: &SessionId,
        nurse: &str,
        text: &str,
    ) -> Result<u64, EscalationError> {
        self.take_over(session, nurse).await?;
        let event = SessionEvent::NurseMessage {
            nurse: nurse.to_owned(),
            text: text.to_owned(),
        };
        Ok(self.store.append_event(session, &event).await?)
    }

    /// Back to the queue at its original place.
    ///
    /// # Errors
    /// Not claimed by this nurse, or a store failure.
    pub async fn release(
        &self,
        session: &SessionId,
        nurse: &str,
    ) -> Result<Escalation, EscalationError> {
        let released = self
            .update(session, |current| {
                Self::held_by(current, nurse)?;
                Ok(Some(waiting_again(current)))
            })
            .await?;
        self.leave_nurse_mode(
            session,
            Mode::WaitingForNurse,
            Some("released to the queue".into()),
        )
        .await?;
        self.audit(
            Action::EscalationReleased,
            &Actor::new(nurse, ActorRole::Nurse),
            &released,
        )
        .await;
        Ok(released)
    }

    /// Ends the escalation with the nurse's outcome; the conversation goes back to the model with
    /// `note`, or is closed.
    ///
    /// # Errors
    /// Not claimed by this nurse, or a store failure.
    pub async fn finish(
        &self,
        session: &SessionId,
        nurse: &str,
        outcome: Outcome,
        note: Option<String>,
        close_conversation: bool,
    ) -> Result<Escalation, EscalationError> {
        let closed = self
            .update(session, |current| {
                Self::held_by(current, nurse)?;
                let mut next = current.clone();
                next.state = EscalationState::Closed;
                next.outcome = Some(outcome);
                Ok(Some(next))
            })
            .await?;
        metrics::counter!("carebridge_escalation_outcomes_total", "rule" => closed.rule.clone(), "outcome" => outcome.as_str()).increment(1);
        let mode = if close_conversation {
            Mode::Closed
        } else {
            Mode::Ai
        };
        self.leave_nurse_mode(session, mode, note).await?;
        self.audit(
            Action::EscalationClosed,
            &Actor::new(nurse, ActorRole::Nurse),
            &closed,
        )
        .await;
        Ok(closed)
    }

    async fn leave_nurse_mode(
        &self,
        session: &SessionId,
        mode: Mode,
        note: Option<String>,
    ) -> Result<(), EscalationError> {
        self.store.set_mode(session, mode).await?;
        self.store
            .append_event(session, &SessionEvent::ModeChanged { mode, note })
            .await?;
        Ok(())
    }

    /// Marks the nurse's claims as alive (called on each heartbeat of their socket).
    ///
    /// # Errors
    /// A store failure.
    pub async fn touch(&self, nurse: &str) -> Result<(), EscalationError> {
        let now = now_ms();
        for escalation in self.store.list_escalations().await? {
            if escalation.state == EscalationState::Claimed
                && escalation.nurse.as_deref() == Some(nurse)
            {
                let _ = self
                    .update(&escalation.session, |current| {
                        if current.nurse.as_deref() != Some(nurse) {
                            return Ok(None);
                        }
                        let mut next = current.clone();
                        next.holder_seen_ms = now;
                        Ok(Some(next))
                    })
                    .await;
            }
        }
        Ok(())
    }

    /// Re-alerts unclaimed escalations that waited too long and returns to the queue the ones
    /// whose nurse disappeared. Every replica runs it; compare-and-set makes each action happen
    /// once.
    ///
    /// # Errors
    /// A store failure.
    pub async fn tick(&self) -> Result<Vec<Escalation>, EscalationError> {
        let now = now_ms();
        let mut realerted = Vec::new();
        let open = self.store.list_escalations().await?;
        record_open(&open);
        for escalation in open {
            match escalation.state {
                EscalationState::Waiting => {
                    let limit = self.realert_after(escalation.severity);
                    if now.saturating_sub(escalation.last_alert_ms) < limit {
                        continue;
                    }
                    let mut next = escalation.clone();
                    next.realerts += 1;
                    next.last_alert_ms = now;
                    if self
                        .store
                        .put_escalation(&next, Some(escalation.version))
                        .await?
                    {
                        metrics::counter!("carebridge_escalation_realerts_total", "severity" => next.severity.as_str()).increment(1);
                        tracing::warn!(session = %next.session, severity = next.severity.as_str(), realerts = next.realerts, "escalation not claimed in time; re-alerting");
                        self.audit(Action::EscalationRealerted, &Actor::system(), &next)
                            .await;
                        realerted.push(next);
                    }
                }
                EscalationState::Claimed => {
                    if now.saturating_sub(escalation.holder_seen_ms) < self.settings.nurse_grace_ms
                    {
                        continue;
                    }
                    let next = waiting_again(&escalation);
                    if self
                        .store
                        .put_escalation(&next, Some(escalation.version))
                        .await?
                    {
                        tracing::warn!(session = %next.session, "nurse gone; conversation returned to the queue");
                        metrics::counter!("carebridge_escalation_abandoned_total").increment(1);
                        self.leave_nurse_mode(
                            &next.session,
                            Mode::WaitingForNurse,
                            Some("your nurse was disconnected; finding another nurse".into()),
                        )
                        .await?;
                        self.audit(Action::EscalationReleased, &Actor::system(), &next)
                            .await;
                    }
                }
                EscalationState::Closed => {}
            }
        }
        Ok(realerted)
    }

    fn realert_after(&self, severity: Severity) -> u64 {
        match severity {
            Severity::Emergency => self.settings.realert_emergency_ms,
            Severity::Urgent => self.settings.realert_urgent_ms,
            Severity::Routine => self.settings.realert_routine_ms,
        }
    }

    /// Runs [`Escalations::tick`] until `stop` is cancelled.
    pub async fn run(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let mut ticker =
            tokio::time::interval(Duration::from_millis(self.settings.tick_ms.max(10)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticker.tick() => {
                    if let Err(error) = self.tick().await {
                        tracing::warn!(error = %error, "escalation check failed; will retry");
                    }
                }
            }
        }
    }
}

/// Open escalations by state and severity, as every replica sees them (the queue is shared).
fn record_open(open: &[Escalation]) {
    for state in [EscalationState::Waiting, EscalationState::Claimed] {
        for severity in [Severity::Emergency, Severity::Urgent, Severity::Routine] {
            let count = open
                .iter()
                .filter(|escalation| escalation.state == state && escalation.severity == severity)
                .count();
            metrics::gauge!(
                "carebridge_escalations_open",
                "state" => state.as_str(),
                "severity" => severity.as_str()
            )
            .set(count as f64);
        }
    }
}

fn waiting_again(current: &Escalation) -> Escalation {
    let mut next = current.clone();
    next.state = EscalationState::Waiting;
    next.nurse = None;
    next.claimed_at_ms = None;
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn flag(severity: Severity) -> Flag<'static> {
        Flag {
            severity,
            rule: "cardiac.chest_pain",
            reason: "chest pain",
            span: "chest pain",
        }
    }

    async fn queue_with(sessions: &[(Severity, u64)]) -> (Escalations, Vec<SessionId>) {
        let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
        let escalations = Escalations::new(
            Arc::clone(&store),
            EscalationSettings::default(),
            crate::audit::Auditor::start(Arc::new(crate::audit::MemoryAudit::default()), 64),
        );
        let mut ids = Vec::new();
        for (severity, pause) in sessions {
            let session = SessionId::random();
            store.create_session(&session, "p").await.expect("create");
            escalations
                .raise(&session, flag(*severity))
                .await
                .expect("raise");
            tokio::time::sleep(Duration::from_millis(*pause)).await;
            ids.push(session);
        }
        (escalations, ids)
    }

    #[tokio::test]
    async fn the_queue_is_ordered_by_severity_then_age() {
        let (escalations, ids) = queue_with(&[
            (Severity::Urgent, 2),
            (Severity::Emergency, 2),
            (Severity::Emergency, 2),
        ])
        .await;
        let order: Vec<SessionId> = escalations
            .queue()
            .await
            .expect("queue")
            .into_iter()
            .map(|e| e.session)
            .collect();
        assert_eq!(order, vec![ids[1].clone(), ids[2].clone(), ids[0].clone()]);
    }

    #[tokio::test]
    async fn a_second_claim_is_told_who_won() {
        let (escalations, ids) = queue_with(&[(Severity::Emergency, 0)]).await;
        escalations
            .claim(&ids[0], "nurse-a")
            .await
            .expect("first claim wins");
        let second = escalations.claim(&ids[0], "nurse-b").await;
        assert!(matches!(second, Err(EscalationError::AlreadyClaimed { by }) if by == "nurse-a"));
    }

    #[tokio::test]
    async fn raising_again_only_ever_raises_the_severity() {
        let (escalations, ids) = queue_with(&[(Severity::Urgent, 0)]).await;
        let raised = escalations
            .raise(&ids[0], flag(Severity::Emergency))
            .await
            .expect("raise");
        assert_eq!(raised.severity, Severity::Emergency);
        let kept = escalations
            .raise(&ids[0], flag(Severity::Urgent))
            .await
            .expect("raise");
        assert_eq!(kept.severity, Severity::Emergency);
        assert_eq!(escalations.queue().await.expect("queue").len(), 1);
    }

    #[tokio::test]
    async fn released_escalations_go_back_to_their_place() {
        let (escalations, ids) =
            queue_with(&[(Severity::Emergency, 2), (Severity::Emergency, 0)]).await;
        escalations.claim(&ids[0], "nurse-a").await.expect("claim");
        escalations
            .release(&ids[0], "nurse-a")
            .await
            .expect("release");
        let first = escalations.queue().await.expect("queue").remove(0);
        assert_eq!(first.session, ids[0]);
        assert_eq!(first.state, EscalationState::Waiting);
    }

    #[test]
    fn scores_sort_like_the_queue_key() {
        let base = Escalation {
            session: SessionId::random(),
            severity: Severity::Urgent,
            rule: String::new(),
            reason: String::new(),
            span: String::new(),
            created_at_ms: 1_700_000_000_000,
            state: EscalationState::Waiting,
            nurse: None,
            claimed_at_ms: None,
            realerts: 0,
            last_alert_ms: 0,
            holder_seen_ms: 0,
            outcome: None,
            version: 0,
        };
        let older_emergency = Escalation {
            severity: Severity::Emergency,
            created_at_ms: base.created_at_ms + 10,
            ..base.clone()
        };
        let realerted = Escalation {
            realerts: 1,
            created_at_ms: base.created_at_ms + 1_000,
            ..base.clone()
        };
        assert!(older_emergency.score() < base.score());
        assert!(realerted.score() < base.score());
    }
}
