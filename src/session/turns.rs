//! The line between a socket and its turn worker: the turns handed over, and what the worker
//! knows of the session between two turns.
//!
//! Carebridge's own part of the time to first token is its work before the model request leaves
//! plus every hand-over between tasks on the way, and on a busy thread a hand-over waits behind
//! other sockets' ready tasks (`carebridge_turn_wait_seconds`). So when the worker is idle, the
//! socket's own task sends the model request as it hands the turn over (see `tail`), and the
//! worker receives a request already on its way.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::mpsc;

use super::conversation::{History, PendingTurn, Services, send_early};
use super::tail::KnownTail;
use super::{SessionEvent, SessionId};

/// The socket's end: hands turns to the worker.
pub struct TurnLine {
    sender: mpsc::Sender<PendingTurn>,
    between: Arc<Mutex<Between>>,
}

/// The worker's end: takes turns, and says what it learnt from each.
pub struct TurnQueue {
    queue: mpsc::Receiver<PendingTurn>,
    between: Arc<Mutex<Between>>,
}

/// What the two ends share.
#[derive(Debug)]
struct Between {
    /// What the worker knew of the session when it finished its last turn. Read by the socket
    /// only while no turn is in hand, so it is never read while the worker is changing it.
    known: Option<KnownTail>,
    /// Turns handed over and not yet finished (queued or being answered).
    in_hand: usize,
}

/// A line for at most `capacity` queued turns; the worker starts knowing `known`.
pub fn line(capacity: usize, known: Option<KnownTail>) -> (TurnLine, TurnQueue) {
    let (sender, queue) = mpsc::channel(capacity.max(1));
    let between = Arc::new(Mutex::new(Between { known, in_hand: 0 }));
    (
        TurnLine {
            sender,
            between: Arc::clone(&between),
        },
        TurnQueue { queue, between },
    )
}

fn lock(between: &Mutex<Between>) -> MutexGuard<'_, Between> {
    between.lock().unwrap_or_else(PoisonError::into_inner)
}

impl TurnLine {
    /// Hands `turn` over while its message is still being stored. When the worker is idle and
    /// knows the session's latest events, the model request is sent first, from this task (see
    /// the module's comment). Gives the turn back when the worker has no room (or is gone).
    pub async fn hand_over(
        &self,
        mut turn: PendingTurn,
        services: &Arc<Services>,
        session: &SessionId,
    ) -> Result<(), PendingTurn> {
        let Ok(room) = self.sender.try_reserve() else {
            return Err(turn);
        };
        let predicted = self.claim(&turn.written);
        // A place among the replica's model streams, now or never: when none is free the worker
        // waits for one as usual, once the message is stored.
        if let Some(history) = predicted
            && let Ok(permit) = Arc::clone(&services.model_streams).try_acquire_owned()
        {
            let early = send_early(
                services,
                session,
                turn.flag_note.as_deref(),
                turn.ready,
                history,
                permit,
            )
            .await;
            turn.early = Some(Box::new(early));
        }
        room.send(turn);
        Ok(())
    }

    /// Counts a turn in hand. When none was, the worker is idle and what it knows is current:
    /// returns the history the store will return once `written` is stored, if nothing else is
    /// written first.
    fn claim(&self, written: &[SessionEvent]) -> Option<History> {
        let mut between = lock(&self.between);
        let idle = between.in_hand == 0;
        between.in_hand += 1;
        if idle {
            between.known.as_ref()?.predict(written)
        } else {
            None
        }
    }

    /// Hands over a turn whose message is stored already. Gives it back when the worker has no
    /// room (or is gone).
    pub fn offer(&self, turn: PendingTurn) -> Result<(), PendingTurn> {
        let mut between = lock(&self.between);
        match self.sender.try_send(turn) {
            Ok(()) => {
                between.in_hand += 1;
                Ok(())
            }
            Err(
                mpsc::error::TrySendError::Full(turn) | mpsc::error::TrySendError::Closed(turn),
            ) => Err(turn),
        }
    }
}

impl TurnQueue {
    /// The next turn, and what the worker knows as it starts on it; `None` once the socket has
    /// gone. Every turn taken must be `finished`.
    pub async fn next(&mut self) -> Option<(PendingTurn, Option<KnownTail>)> {
        let turn = self.queue.recv().await?;
        let known = lock(&self.between).known.take();
        Some((turn, known))
    }

    /// The worker is done with a turn and knows `known`.
    pub fn finished(&self, known: Option<KnownTail>) {
        let mut between = lock(&self.between);
        between.known = known;
        between.in_hand = between.in_hand.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Mode;

    fn patient(text: &str) -> SessionEvent {
        SessionEvent::PatientMessage {
            client_id: format!("c-{text}"),
            text: text.into(),
        }
    }

    fn known(up_to: u64) -> KnownTail {
        KnownTail::new(vec![patient("earlier")], up_to, Mode::Ai, 8)
    }

    /// What `hand_over` does, without the request: claims, then queues a turn.
    fn hand(line: &TurnLine, text: &str) -> Option<u64> {
        let predicted = line.claim(&[patient(text)]);
        line.sender
            .try_send(PendingTurn::for_test(vec![patient(text)]))
            .expect("room in the queue");
        predicted.map(|history| history.up_to)
    }

    #[tokio::test]
    async fn only_an_idle_worker_s_knowledge_predicts_a_request() {
        let (line, mut queue) = line(4, Some(known(3)));
        assert_eq!(hand(&line, "first"), Some(4), "idle, knowing the session");
        assert_eq!(hand(&line, "second"), None, "the first turn is in hand");

        let (_, taken) = queue.next().await.expect("the first turn");
        assert_eq!(taken, Some(known(3)));
        assert_eq!(lock(&line.between).known, None, "taken while the turn runs");
        queue.finished(Some(known(6)));
        assert_eq!(
            lock(&line.between).in_hand,
            1,
            "the second turn is still queued"
        );

        let (_, taken) = queue.next().await.expect("the second turn");
        assert_eq!(taken, Some(known(6)), "what the first turn taught it");
        queue.finished(Some(known(8)));
        assert_eq!(hand(&line, "third"), Some(9), "idle again");
    }

    #[tokio::test]
    async fn a_worker_that_lost_track_predicts_nothing() {
        let (line, mut queue) = line(4, Some(known(3)));
        line.offer(PendingTurn::for_test(vec![patient("stored")]))
            .expect("room in the queue");
        assert_eq!(hand(&line, "now"), None, "a turn was offered and is queued");
        for _ in 0..2 {
            let _ = queue.next().await.expect("a turn");
            queue.finished(None);
        }
        assert_eq!(hand(&line, "later"), None, "idle, but knowing nothing");
    }

    #[tokio::test]
    async fn a_full_queue_gives_the_turn_back_without_counting_it() {
        let (line, _queue) = line(1, None);
        line.offer(PendingTurn::for_test(vec![patient("one")]))
            .expect("room for one");
        assert!(
            line.offer(PendingTurn::for_test(vec![patient("two")]))
                .is_err(),
            "no room for a second"
        );
        assert_eq!(lock(&line.between).in_hand, 1);
    }
}
