//! Where sessions live. `MemoryStore` is the embedded default; `RedisStore` serves production,
//! where any replica may hold any session's sockets.
//!
//! The store holds no business rules: it appends, reads and notifies.

use futures_util::future::BoxFuture;
use tokio::sync::broadcast;

use crate::escalation::{Escalation, EscalationState};
use crate::session::{Mode, SessionEvent, SessionId, StoredEvent};

mod memory;
mod redis_connection;
mod redis_store;
pub mod retry;

pub use redis_connection::RedisConnection;

pub use memory::MemoryStore;
pub use redis_store::RedisStore;

/// Result of appending a patient message, with what answering it needs, read in the same step
/// (on Redis, the same round trip) so the model request does not wait for more reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Appended {
    pub seq: u64,
    /// The client id had been stored before: this is a retry, nothing new was written.
    pub duplicate: bool,
    /// The session's mode right after the write.
    pub mode: Mode,
    /// The session's last events, oldest first, ending with this message: as many as were asked
    /// for, and none for a duplicate.
    pub recent: Vec<SessionEvent>,
}

/// What the store knows of a session besides its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionMeta {
    /// The subject of the token that opened the session; only it may resume the session.
    pub owner: String,
    pub mode: Mode,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the session store is unavailable ({0}); the message was not stored, retry shortly")]
    Unavailable(String),
    #[error("session {0} does not exist")]
    NoSuchSession(SessionId),
    #[error("stored data for session {session} is corrupt: {detail}")]
    Corrupt { session: SessionId, detail: String },
}

/// Notifications of new events for one session: each carries the newest sequence number, and the
/// receiver reads the log from the last number it delivered, so a missed notice loses nothing.
pub type EventNotices = broadcast::Receiver<u64>;

/// Storage for sessions. Every method that writes returns only after the write is durable to the
/// degree the backend promises: an ack to the patient is sent only after `Ok`.
pub trait SessionStore: Send + Sync + 'static {
    /// Creates a session owned by `owner`.
    fn create_session<'a>(
        &'a self,
        session: &'a SessionId,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// The session's owner and mode, or `None` when it does not exist.
    fn session_meta<'a>(
        &'a self,
        session: &'a SessionId,
    ) -> BoxFuture<'a, Result<Option<SessionMeta>, StoreError>>;

    /// Appends a patient message; idempotent on `client_id` within the session. Also returns the
    /// session's mode and its last `recent` events, read atomically with the write.
    fn append_patient_message<'a>(
        &'a self,
        session: &'a SessionId,
        client_id: &'a str,
        text: &'a str,
        recent: usize,
    ) -> BoxFuture<'a, Result<Appended, StoreError>>;

    /// Appends any other event and returns its sequence number.
    fn append_event<'a>(
        &'a self,
        session: &'a SessionId,
        event: &'a SessionEvent,
    ) -> BoxFuture<'a, Result<u64, StoreError>>;

    /// Every event with a sequence number above `after`, in order.
    fn events_after<'a>(
        &'a self,
        session: &'a SessionId,
        after: u64,
    ) -> BoxFuture<'a, Result<Vec<StoredEvent>, StoreError>>;

    /// The last `count` events of the session, oldest first: a bounded read for the model's
    /// request, however long the conversation.
    fn latest_events<'a>(
        &'a self,
        session: &'a SessionId,
        count: usize,
    ) -> BoxFuture<'a, Result<Vec<SessionEvent>, StoreError>>;

    /// Records a mode change in the session's meta (the log gets a `ModeChanged` event too).
    fn set_mode<'a>(
        &'a self,
        session: &'a SessionId,
        mode: Mode,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Live notices of new events in the session, from any replica.
    fn subscribe<'a>(
        &'a self,
        session: &'a SessionId,
    ) -> BoxFuture<'a, Result<EventNotices, StoreError>>;

    /// Whether the store answers now (for `/readyz`).
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// The session's open escalation, if any.
    fn get_escalation<'a>(
        &'a self,
        session: &'a SessionId,
    ) -> BoxFuture<'a, Result<Option<Escalation>, StoreError>>;

    /// Writes an escalation if its stored version is still `expected` (`None`: only if there is
    /// none). The stored copy gets version `expected + 1`. A `Closed` escalation is removed and its
    /// outcome counted for its rule. Returns whether the write happened; every write notifies
    /// queue subscribers on all replicas.
    fn put_escalation<'a>(
        &'a self,
        escalation: &'a Escalation,
        expected: Option<u64>,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Every open escalation (waiting or claimed), in no particular order.
    fn list_escalations(&self) -> BoxFuture<'_, Result<Vec<Escalation>, StoreError>>;

    /// A notice whenever the queue changes, on any replica.
    fn queue_notices(&self) -> broadcast::Receiver<()>;

    /// Nurses' outcomes per rule: `(rule, outcome, count)`.
    fn rule_outcomes(&self) -> BoxFuture<'_, Result<Vec<RuleOutcome>, StoreError>>;
}

/// How many flags of `rule` nurses closed with `outcome`: `(rule, outcome, count)`.
pub type RuleOutcome = (String, String, u64);

/// The version an escalation gets when written over `expected`.
pub(crate) fn next_version(expected: Option<u64>) -> u64 {
    expected.map_or(1, |version| version + 1)
}

/// The outcome field an escalation's close adds to, `rule|outcome`.
pub(crate) fn outcome_field(escalation: &Escalation) -> Option<String> {
    match (escalation.state, escalation.outcome) {
        (EscalationState::Closed, Some(outcome)) => {
            Some(format!("{}|{}", escalation.rule, outcome.as_str()))
        }
        _ => None,
    }
}

/// The suite every `SessionStore` must pass; the memory store runs it in unit tests and the Redis
/// store in the integration tests, against a real `redis-server`.
#[doc(hidden)]
pub mod conformance {
    #![allow(clippy::expect_used)]
    use super::*;

    pub async fn appends_are_ordered_and_idempotent(store: &dyn SessionStore) {
        let session = SessionId::random();
        store
            .create_session(&session, "patient-1")
            .await
            .expect("create");
        let first = store
            .append_patient_message(&session, "c1", "hello", 4)
            .await
            .expect("append");
        let retry = store
            .append_patient_message(&session, "c1", "hello", 4)
            .await
            .expect("append");
        let hello = SessionEvent::PatientMessage {
            client_id: "c1".into(),
            text: "hello".into(),
        };
        assert_eq!(
            first,
            Appended {
                seq: 1,
                duplicate: false,
                mode: Mode::Ai,
                recent: vec![hello.clone()],
            }
        );
        assert_eq!(
            retry,
            Appended {
                seq: 1,
                duplicate: true,
                mode: Mode::Ai,
                recent: Vec::new(),
            }
        );
        let event = SessionEvent::ModeChanged {
            mode: Mode::Nurse,
            note: None,
        };
        assert_eq!(
            store.append_event(&session, &event).await.expect("event"),
            2
        );
        let events = store.events_after(&session, 0).await.expect("read");
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(
            store.events_after(&session, 1).await.expect("read").len(),
            1
        );
        store.set_mode(&session, Mode::Nurse).await.expect("mode");
        let again = store
            .append_patient_message(&session, "c2", "and again", 2)
            .await
            .expect("append");
        assert_eq!(again.mode, Mode::Nurse);
        assert_eq!(again.recent.len(), 2);
        assert_eq!(again.recent[0], event);
        assert!(
            store
                .append_patient_message(&session, "c3", "once more", 0)
                .await
                .expect("append")
                .recent
                .is_empty()
        );
        let latest = store.latest_events(&session, 3).await.expect("latest");
        assert_eq!(latest.len(), 3);
        assert_eq!(latest[0], event);
        assert!(
            matches!(&latest[1], SessionEvent::PatientMessage { text, .. } if text == "and again")
        );
        assert_eq!(
            store.latest_events(&session, 10).await.expect("all").len(),
            4
        );
        assert!(
            store
                .latest_events(&session, 0)
                .await
                .expect("none")
                .is_empty()
        );
        let meta = store
            .session_meta(&session)
            .await
            .expect("meta")
            .expect("exists");
        assert_eq!(meta.owner, "patient-1");
    }

    pub async fn subscribers_hear_new_events(store: &dyn SessionStore) {
        let session = SessionId::random();
        store.create_session(&session, "p").await.expect("create");
        let mut notices = store.subscribe(&session).await.expect("subscribe");
        store
            .append_patient_message(&session, "c1", "hi", 1)
            .await
            .expect("append");
        let seq = tokio::time::timeout(std::time::Duration::from_secs(5), notices.recv())
            .await
            .expect("notice in time")
            .expect("notice");
        if seq == u64::MAX {
            // The store's listener (re)connected around the append and asks every subscriber
            // to read the log again: the message must be there.
            let events = store.events_after(&session, 0).await.expect("read");
            assert_eq!(events.last().map(|event| event.seq), Some(1));
        } else {
            assert_eq!(seq, 1);
        }
    }

    pub async fn missing_sessions_are_reported(store: &dyn SessionStore) {
        let session = SessionId::random();
        assert!(store.session_meta(&session).await.expect("meta").is_none());
        assert!(matches!(
            store.append_patient_message(&session, "c", "t", 1).await,
            Err(StoreError::NoSuchSession(_))
        ));
    }
}
