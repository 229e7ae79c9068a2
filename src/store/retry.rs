//! Writes that must not be given up at the first failure: an escalation for a red flag, a reply
//! the patient has already seen. The store may be restarting (a Redis failover takes seconds), so
//! such a write is tried again, with growing pauses, for as long as its `Persistence` allows.

use std::future::Future;
use std::time::Duration;

/// How long, and how often, a write is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Persistence {
    /// The pause after the first failure; each pause after it is twice the one before.
    pub first_pause: Duration,
    /// The longest pause between two tries.
    pub longest_pause: Duration,
    /// No try starts later than this after the first one.
    pub give_up_after: Duration,
}

impl Persistence {
    /// An escalation is worth waiting a long time for: the store is tried until it is back, for
    /// up to a quarter of an hour, while the patient already has the guidance.
    pub const ESCALATION: Self = Self {
        first_pause: Duration::from_millis(250),
        longest_pause: Duration::from_secs(5),
        give_up_after: Duration::from_secs(15 * 60),
    };

    /// A reply the patient saw: its `done` waits for the store, so only as long as a restarting
    /// store usually takes.
    pub const REPLY: Self = Self {
        first_pause: Duration::from_millis(100),
        longest_pause: Duration::from_secs(2),
        give_up_after: Duration::from_secs(30),
    };
}

/// The outcome of a persistent write.
#[derive(Debug, PartialEq, Eq)]
pub enum Persisted<T, E> {
    /// Stored at the first try.
    AtOnce(T),
    /// Stored after `failures` failed tries.
    AfterRetries { value: T, failures: u32 },
    /// Every try failed; the last error.
    GaveUp { error: E, failures: u32 },
}

impl<T, E> Persisted<T, E> {
    pub fn value(self) -> Result<T, E> {
        match self {
            Self::AtOnce(value) | Self::AfterRetries { value, .. } => Ok(value),
            Self::GaveUp { error, .. } => Err(error),
        }
    }
}

/// Runs `write` until it succeeds or `persistence` gives up.
pub async fn until_stored<T, E, F, Fut>(persistence: Persistence, mut write: F) -> Persisted<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let started = tokio::time::Instant::now();
    let mut pause = persistence.first_pause;
    let mut failures = 0;
    loop {
        match write().await {
            Ok(value) if failures == 0 => return Persisted::AtOnce(value),
            Ok(value) => return Persisted::AfterRetries { value, failures },
            Err(error) => {
                failures += 1;
                if started.elapsed() + pause > persistence.give_up_after {
                    return Persisted::GaveUp { error, failures };
                }
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(persistence.longest_pause);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// Milliseconds, so the tests take no time; they count tries and never time anything.
    const QUICK: Persistence = Persistence {
        first_pause: Duration::from_millis(1),
        longest_pause: Duration::from_millis(4),
        give_up_after: Duration::from_millis(40),
    };

    #[tokio::test]
    async fn a_write_that_fails_while_the_store_restarts_is_stored_once_it_is_back() {
        let tries = AtomicU32::new(0);
        let outcome = until_stored(QUICK, || async {
            if tries.fetch_add(1, Ordering::SeqCst) < 5 {
                Err("unavailable")
            } else {
                Ok(42)
            }
        })
        .await;
        assert_eq!(
            outcome,
            Persisted::AfterRetries {
                value: 42,
                failures: 5
            }
        );
    }

    #[tokio::test]
    async fn a_write_that_keeps_failing_is_given_up_with_its_last_error() {
        let tries = AtomicU32::new(0);
        let outcome: Persisted<(), String> = until_stored(QUICK, || async {
            let attempt = tries.fetch_add(1, Ordering::SeqCst);
            Err(format!("unavailable at try {attempt}"))
        })
        .await;
        let failures = tries.load(Ordering::SeqCst);
        assert!(failures >= 3, "tried again before giving up: {failures}");
        assert_eq!(
            outcome,
            Persisted::GaveUp {
                error: format!("unavailable at try {}", failures - 1),
                failures
            }
        );
    }

    #[tokio::test]
    async fn a_write_stored_at_once_is_not_tried_again() {
        let tries = AtomicU32::new(0);
        let outcome: Persisted<u8, &str> = until_stored(QUICK, || async {
            tries.fetch_add(1, Ordering::SeqCst);
            Ok(7)
        })
        .await;
        assert_eq!(outcome, Persisted::AtOnce(7));
        assert_eq!(tries.load(Ordering::SeqCst), 1);
    }
}
