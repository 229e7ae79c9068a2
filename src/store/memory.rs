//! The embedded store: everything in this process, gone when it stops.

use std::collections::HashMap;
use std::sync::Mutex;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::sync::broadcast;

use super::{
    Appended, EventNotices, RuleOutcome, SessionMeta, SessionStore, StoreError, next_version,
    outcome_field,
};
use crate::escalation::{Escalation, EscalationState};
use crate::session::{Mode, SessionEvent, SessionId, StoredEvent};

/// How many unread notices a slow subscriber may fall behind before it reloads from the log.
const NOTICE_CAPACITY: usize = 64;

pub struct MemoryStore {
    // A std Mutex: every critical section is a few map operations and never awaits.
    sessions: Mutex<HashMap<SessionId, MemorySession>>,
    escalations: Mutex<HashMap<SessionId, Escalation>>,
    outcomes: Mutex<HashMap<String, u64>>,
    queue_notices: broadcast::Sender<()>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            sessions: Mutex::default(),
            escalations: Mutex::default(),
            outcomes: Mutex::default(),
            queue_notices: broadcast::channel(NOTICE_CAPACITY).0,
        }
    }
}

struct MemorySession {
    meta: SessionMeta,
    events: Vec<StoredEvent>,
    client_ids: HashMap<String, u64>,
    notices: broadcast::Sender<u64>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn with_session<T>(
        &self,
        session: &SessionId,
        action: impl FnOnce(&mut MemorySession) -> T,
    ) -> Result<T, StoreError> {
        let mut sessions = self
            .sessions
            .lock()
            .map_err(|_| StoreError::Unavailable("memory store lock poisoned".into()))?;
        let entry = sessions
            .get_mut(session)
            .ok_or_else(|| StoreError::NoSuchSession(session.clone()))?;
        Ok(action(entry))
    }
}

impl MemorySession {
    fn latest(&self, count: usize) -> Vec<SessionEvent> {
        let start = self.events.len().saturating_sub(count);
        self.events[start..]
            .iter()
            .map(|stored| stored.event.clone())
            .collect()
    }

    fn push(&mut self, event: SessionEvent) -> u64 {
        let seq = self.events.len() as u64 + 1;
        self.events.push(StoredEvent { seq, event });
        // Nobody listening is fine: the log is the truth.
        let _ = self.notices.send(seq);
        seq
    }
}

impl SessionStore for MemoryStore {
    fn create_session<'a>(
        &'a self,
        session: &'a SessionId,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let result = self
            .sessions
            .lock()
            .map_err(|_| StoreError::Unavailable("memory store lock poisoned".into()))
            .map(|mut sessions| {
                sessions
                    .entry(session.clone())
                    .or_insert_with(|| MemorySession {
                        meta: SessionMeta {
                            owner: owner.to_owned(),
                            mode: Mode::Ai,
                        },
                        events: Vec::new(),
                        client_ids: HashMap::new(),
                        notices: broadcast::channel(NOTICE_CAPACITY).0,
                    });
            });
        async move { result }.boxed()
    }

    fn session_meta<'a>(
        &'a self,
        session: &'a SessionId,
    ) -> BoxFuture<'a, Result<Option<SessionMeta>, StoreError>> {
        let result = match self.with_session(session, |entry| entry.meta.clone()) {
            Ok(meta) => Ok(Some(meta)),
            Err(StoreError::NoSuchSession(_)) => Ok(None),
            Err(error) => Err(error),
        };
        async move { result }.boxed()
    }

    fn append_patient_message<'a>(
        &'a self,
        session: &'a SessionId,
        client_id: &'a str,
        text: &'a str,
        recent: usize,
    ) -> BoxFuture<'a, Result<Appended, StoreError>> {
        let result = self.with_session(session, |entry| {
            if let Some(&seq) = entry.client_ids.get(client_id) {
                return Appended {
                    seq,
                    duplicate: true,
                    mode: entry.meta.mode,
                    recent: Vec::new(),
                };
            }
            let seq = entry.push(SessionEvent::PatientMessage {
                client_id: client_id.to_owned(),
                text: text.to_owned(),
            });
            entry.client_ids.insert(client_id.to_owned(), seq);
            Appended {
                seq,
                duplicate: false,
                mode: entry.meta.mode,
                recent: entry.latest(recent),
            }
        });
        async move { result }.boxed()
    }

    fn append_event<'a>(
        &'a self,
        session: &'a SessionId,
        event: &'a SessionEvent,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        let result = self.with_session(session, |entry| entry.push(event.clone()));
        async move { result }.boxed()
    }

    fn events_after<'a>(
        &'a self,
        session: &'a SessionId,
        after: u64,
    ) -> BoxFuture<'a, Result<Vec<StoredEvent>, StoreError>> {
        let result = self.with_session(session, |entry| {
            let start = usize::try_from(after)
                .unwrap_or(usize::MAX)
                .min(entry.events.len());
            entry.events[start..].to_vec()
        });
        async move { result }.boxed()
    }

    fn latest_events<'a>(
        &'a self,
        session: &'a SessionId,
        count: usize,
    ) -> BoxFuture<'a, Result<Vec<SessionEvent>, StoreError>> {
        let result = self.with_session(session, |entry| entry.latest(count));
        async move { result }.boxed()
    }

    fn set_mode<'a>(
        &'a self,
        session: &'a SessionId,
        mode: Mode,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let result = self.with_session(session, |entry| entry.meta.mode = mode);
        async move { result }.boxed()
    }

    fn subscribe<'a>(
        &'a self,
        session: &'a SessionId,
    ) -> BoxFuture<'a, Result<EventNotices, StoreError>> {
        let result = self.with_session(session, |entry| entry.notices.subscribe());
        async move { result }.boxed()
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        async { Ok(()) }.boxed()
    }

    fn get_escalation<'a>(
        &'a self,
        session: &'a SessionId,
    ) -> BoxFuture<'a, Result<Option<Escalation>, StoreError>> {
        let result = self
            .escalations
            .lock()
            .map(|map| map.get(session).cloned())
            .map_err(|_| StoreError::Unavailable("escalation lock poisoned".into()));
        async move { result }.boxed()
    }

    fn put_escalation<'a>(
        &'a self,
        escalation: &'a Escalation,
        expected: Option<u64>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let result = self
            .escalations
            .lock()
            .map_err(|_| StoreError::Unavailable("escalation lock poisoned".into()))
            .map(|mut map| {
                let current = map.get(&escalation.session).map(|stored| stored.version);
                if current != expected {
                    return false;
                }
                if escalation.state == EscalationState::Closed {
                    map.remove(&escalation.session);
                    if let (Some(field), Ok(mut outcomes)) =
                        (outcome_field(escalation), self.outcomes.lock())
                    {
                        *outcomes.entry(field).or_insert(0) += 1;
                    }
                } else {
                    let mut stored = escalation.clone();
                    stored.version = next_version(expected);
                    map.insert(escalation.session.clone(), stored);
                }
                let _ = self.queue_notices.send(());
                true
            });
        async move { result }.boxed()
    }

    fn list_escalations(&self) -> BoxFuture<'_, Result<Vec<Escalation>, StoreError>> {
        let result = self
            .escalations
            .lock()
            .map(|map| map.values().cloned().collect())
            .map_err(|_| StoreError::Unavailable("escalation lock poisoned".into()));
        async move { result }.boxed()
    }

    fn queue_notices(&self) -> broadcast::Receiver<()> {
        self.queue_notices.subscribe()
    }

    fn rule_outcomes(&self) -> BoxFuture<'_, Result<Vec<RuleOutcome>, StoreError>> {
        let result = self
            .outcomes
            .lock()
            .map(|map| {
                map.iter()
                    .filter_map(|(field, count)| {
                        let (rule, outcome) = field.split_once('|')?;
                        Some((rule.to_owned(), outcome.to_owned(), *count))
                    })
                    .collect()
            })
            .map_err(|_| StoreError::Unavailable("outcome lock poisoned".into()));
        async move { result }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance;

    #[tokio::test]
    async fn memory_store_passes_the_conformance_suite() {
        let store = MemoryStore::new();
        conformance::appends_are_ordered_and_idempotent(&store).await;
        conformance::subscribers_hear_new_events(&store).await;
        conformance::missing_sessions_are_reported(&store).await;
    }
}
