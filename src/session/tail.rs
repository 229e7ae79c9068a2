//! What a socket's turn worker knows of its session's latest events.
//!
//! A model request is mostly waiting: the provider takes tens or hundreds of milliseconds to its
//! first token, while storing the patient's message takes one store round trip. So the request
//! may leave while the message is still being stored, built from the latest events as the worker
//! knows them plus the message (and its alert). Nothing of the reply reaches the patient before
//! the store has confirmed the message and the `ack` is queued; and the store's own account
//! decides whether the early request stands: the sequence numbers must show that nothing else
//! was written in between. When they do not, the early request is dropped (which cancels it
//! upstream) and a new one is built from what the store returned.

use std::collections::VecDeque;

use super::conversation::History;
use super::{Mode, SessionEvent, StoredEvent};

/// The session's latest events up to a sequence number, as far as this worker knows them.
#[derive(Debug, Clone, PartialEq)]
pub struct KnownTail {
    events: VecDeque<SessionEvent>,
    /// The sequence number of the last event in `events` (0 for an empty log).
    up_to: u64,
    mode: Mode,
    /// How many events a request may draw on (the store returns as many with a message).
    keep: usize,
}

impl KnownTail {
    /// `events` are the session's last events, oldest first, the last one at `up_to`.
    pub fn new(events: Vec<SessionEvent>, up_to: u64, mode: Mode, keep: usize) -> Self {
        let mut tail = Self {
            events: events.into(),
            up_to,
            mode,
            keep,
        };
        tail.trim();
        tail
    }

    /// The history the store will return once `written` (the patient's message, then its alert)
    /// is stored, provided nothing else is written first. None while a nurse holds the
    /// conversation (or it is closed): the model stays silent then, so no request should leave.
    pub fn predict(&self, written: &[SessionEvent]) -> Option<History> {
        if !self.mode.model_answers() || written.is_empty() {
            return None;
        }
        let skip = (self.events.len() + written.len()).saturating_sub(self.keep);
        let events = self
            .events
            .iter()
            .chain(written)
            .skip(skip)
            .cloned()
            .collect();
        Some(History {
            events,
            up_to: self.up_to + written.len() as u64,
        })
    }

    /// The store's account after a message was written: what it returned replaces what this
    /// worker knew. `None` (it returned no usable history) leaves nothing known.
    pub fn confirmed(known: &mut Option<Self>, history: Option<&History>, mode: Mode, keep: usize) {
        *known =
            history.map(|history| Self::new(history.events.clone(), history.up_to, mode, keep));
    }

    /// This worker stored a reply. It extends what is known only if it directly follows it;
    /// otherwise something else was written in between and nothing is known until the store
    /// says again. A reply that was not stored (sequence number 0) leaves nothing known.
    pub fn reply_stored(known: &mut Option<Self>, reply: StoredEvent) {
        let follows = known
            .as_ref()
            .is_some_and(|tail| reply.seq != 0 && reply.seq == tail.up_to + 1);
        match known {
            Some(tail) if follows => {
                tail.events.push_back(reply.event);
                tail.up_to = reply.seq;
                tail.trim();
            }
            _ => *known = None,
        }
    }

    fn trim(&mut self) {
        while self.events.len() > self.keep {
            self.events.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patient(text: &str) -> SessionEvent {
        SessionEvent::PatientMessage {
            client_id: format!("c-{text}"),
            text: text.into(),
        }
    }

    fn reply(text: &str) -> SessionEvent {
        SessionEvent::AssistantMessage {
            message_id: format!("m-{text}"),
            text: text.into(),
            replaced_by: None,
        }
    }

    #[test]
    fn prediction_appends_what_is_being_written_and_keeps_the_window() {
        let tail = KnownTail::new(vec![patient("a"), reply("b"), patient("c")], 3, Mode::Ai, 4);
        let predicted = tail
            .predict(&[patient("d"), reply("alert")])
            .expect("the model answers");
        assert_eq!(predicted.up_to, 5);
        assert_eq!(
            predicted.events,
            vec![reply("b"), patient("c"), patient("d"), reply("alert")]
        );
    }

    #[test]
    fn nothing_is_predicted_while_a_nurse_holds_the_conversation() {
        for mode in [Mode::Nurse, Mode::Closed] {
            let tail = KnownTail::new(vec![patient("a")], 1, mode, 4);
            assert_eq!(tail.predict(&[patient("b")]), None, "{mode:?}");
        }
        // Until a nurse claims it, the model still answers.
        let waiting = KnownTail::new(vec![patient("a")], 1, Mode::WaitingForNurse, 4);
        assert!(waiting.predict(&[patient("b")]).is_some());
    }

    #[test]
    fn a_reply_extends_the_tail_only_when_it_directly_follows() {
        let mut known = Some(KnownTail::new(vec![patient("a")], 1, Mode::Ai, 4));
        KnownTail::reply_stored(
            &mut known,
            StoredEvent {
                seq: 2,
                event: reply("b"),
            },
        );
        let predicted = known
            .as_ref()
            .and_then(|tail| tail.predict(&[patient("c")]))
            .expect("known");
        assert_eq!(predicted.up_to, 3);
        assert_eq!(
            predicted.events,
            vec![patient("a"), reply("b"), patient("c")]
        );

        // A nurse's message at 3 came first: the reply at 4 does not follow what is known.
        KnownTail::reply_stored(
            &mut known,
            StoredEvent {
                seq: 4,
                event: reply("d"),
            },
        );
        assert_eq!(known, None);
    }

    #[test]
    fn a_reply_the_store_refused_leaves_nothing_known() {
        let mut known = Some(KnownTail::new(vec![patient("a")], 1, Mode::Ai, 4));
        KnownTail::reply_stored(
            &mut known,
            StoredEvent {
                seq: 0,
                event: reply("b"),
            },
        );
        assert_eq!(known, None);
    }

    #[test]
    fn the_store_account_replaces_what_was_known() {
        let mut known = Some(KnownTail::new(vec![patient("a")], 1, Mode::Ai, 4));
        let history = History {
            events: vec![patient("a"), reply("nurse"), patient("c")],
            up_to: 3,
        };
        KnownTail::confirmed(&mut known, Some(&history), Mode::Nurse, 4);
        assert_eq!(
            known,
            Some(KnownTail::new(history.events.clone(), 3, Mode::Nurse, 4))
        );
        KnownTail::confirmed(&mut known, None, Mode::Ai, 4);
        assert_eq!(known, None);
    }
}
