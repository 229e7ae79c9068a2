//! Audit entries and their hash chain.
//!
//! Each entry carries the SHA-256 of the one before it (`prev`) and its own hash over every other
//! field, so changing, removing, inserting or reordering an entry breaks the chain at that point.
//! Removing entries from the end is only visible against a recorded tip, which the Redis backend
//! keeps beside the log.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `prev` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The policies decided on a patient message (routine decisions included).
    PolicyDecision,
    /// The output guard replaced, redacted or appended to a model reply.
    OutputGuard,
    /// Identifiers were replaced before text left for an external provider (kinds only).
    Redaction,
    EscalationRaised,
    EscalationRealerted,
    EscalationClaimed,
    NurseTookOver,
    /// The conversation went back to the queue: released by its nurse, or the nurse vanished.
    EscalationReleased,
    EscalationClosed,
    PolicyReload,
    PolicyReloadRejected,
    /// An operator looked at or changed something through the admin API.
    AdminAction,
}

/// Who acted: a token's subject and role, or the server itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorRole {
    Patient,
    Nurse,
    Operator,
    System,
}

impl From<crate::auth::Role> for ActorRole {
    fn from(role: crate::auth::Role) -> Self {
        match role {
            crate::auth::Role::Patient => Self::Patient,
            crate::auth::Role::Nurse => Self::Nurse,
            crate::auth::Role::Operator => Self::Operator,
        }
    }
}

/// One line of the trail. `detail` never holds message text, identifiers or token contents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub at_ms: u64,
    pub action: Action,
    pub actor: String,
    pub role: ActorRole,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    pub detail: serde_json::Value,
    pub prev: String,
    pub hash: String,
}

/// The fields the hash covers, in a fixed order.
#[derive(Serialize)]
struct Sealed<'a> {
    seq: u64,
    at_ms: u64,
    action: Action,
    actor: &'a str,
    role: ActorRole,
    session: Option<&'a str>,
    detail: &'a serde_json::Value,
    prev: &'a str,
}

impl AuditEntry {
    /// The hash this entry should carry.
    pub fn compute_hash(&self) -> String {
        let sealed = Sealed {
            seq: self.seq,
            at_ms: self.at_ms,
            action: self.action,
            actor: &self.actor,
            role: self.role,
            session: self.session.as_deref(),
            detail: &self.detail,
            prev: &self.prev,
        };
        // Serialising a struct of plain fields and a JSON value cannot fail.
        let bytes = serde_json::to_vec(&sealed).unwrap_or_default();
        hex::encode(Sha256::digest(&bytes))
    }

    /// Sets `hash` from the other fields.
    pub fn seal(mut self) -> Self {
        self.hash = self.compute_hash();
        self
    }
}

/// The last entry of a log: where the next one chains on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tip {
    pub seq: u64,
    pub hash: String,
}

impl Tip {
    pub fn genesis() -> Self {
        Self {
            seq: 0,
            hash: GENESIS.to_owned(),
        }
    }
}

/// Where and how a chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error("entry {seq} was changed after it was written: its hash does not match its contents")]
    Altered { seq: u64 },
    #[error(
        "entry {found} follows entry {after}, expected {expected}: entries were removed, inserted or reordered"
    )]
    OutOfSequence {
        after: u64,
        expected: u64,
        found: u64,
    },
    #[error(
        "entry {seq} does not chain on the entry before it (its `prev` differs): an entry before it was removed, replaced or reordered"
    )]
    Unchained { seq: u64 },
    #[error(
        "the log ends at entry {last} but its recorded tip is entry {tip}: entries were removed from the end"
    )]
    Truncated { last: u64, tip: u64 },
    #[error("entry {seq} is the recorded tip but its hash differs from the tip's")]
    TipMismatch { seq: u64 },
}

/// Checks entries in order. Feed every entry from the first (or from a known tip with `from`).
#[derive(Debug, Clone)]
pub struct Verifier {
    last: Tip,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::from(Tip::genesis())
    }
}

impl From<Tip> for Verifier {
    fn from(last: Tip) -> Self {
        Self { last }
    }
}

impl Verifier {
    /// Checks the next entry.
    ///
    /// # Errors
    /// The first break found.
    pub fn push(&mut self, entry: &AuditEntry) -> Result<(), ChainBreak> {
        let expected = self.last.seq + 1;
        if entry.seq != expected {
            return Err(ChainBreak::OutOfSequence {
                after: self.last.seq,
                expected,
                found: entry.seq,
            });
        }
        if entry.compute_hash() != entry.hash {
            return Err(ChainBreak::Altered { seq: entry.seq });
        }
        if entry.prev != self.last.hash {
            return Err(ChainBreak::Unchained { seq: entry.seq });
        }
        self.last = Tip {
            seq: entry.seq,
            hash: entry.hash.clone(),
        };
        Ok(())
    }

    /// How many entries were checked.
    pub fn count(&self) -> u64 {
        self.last.seq
    }

    /// Ends the check, comparing with the tip the store recorded, if it keeps one.
    ///
    /// # Errors
    /// Entries missing from the end, or a last entry that is not the recorded one.
    pub fn finish(self, recorded: Option<&Tip>) -> Result<Tip, ChainBreak> {
        if let Some(tip) = recorded {
            if tip.seq > self.last.seq {
                return Err(ChainBreak::Truncated {
                    last: self.last.seq,
                    tip: tip.seq,
                });
            }
            if tip.seq == self.last.seq && tip.hash != self.last.hash {
                return Err(ChainBreak::TipMismatch { seq: tip.seq });
            }
        }
        Ok(self.last)
    }
}

/// Chains `entries` (whose `seq`, `prev` and `hash` are ignored) onto `tip`.
pub fn chain_onto(tip: &Tip, entries: &mut [AuditEntry]) -> Tip {
    let mut last = tip.clone();
    for entry in entries.iter_mut() {
        entry.seq = last.seq + 1;
        entry.prev = last.hash.clone();
        entry.hash = entry.compute_hash();
        last = Tip {
            seq: entry.seq,
            hash: entry.hash.clone(),
        };
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(count: u64) -> Vec<AuditEntry> {
        let mut all: Vec<AuditEntry> = (0..count)
            .map(|index| AuditEntry {
                seq: 0,
                at_ms: 1_700_000_000_000 + index,
                action: Action::PolicyDecision,
                actor: format!("patient-{index}"),
                role: ActorRole::Patient,
                session: Some(format!("s{index}")),
                detail: serde_json::json!({"level": "emergency", "rules": ["cardiac.mi"]}),
                prev: String::new(),
                hash: String::new(),
            })
            .collect();
        chain_onto(&Tip::genesis(), &mut all);
        all
    }

    fn verify(entries: &[AuditEntry], tip: Option<&Tip>) -> Result<Tip, ChainBreak> {
        let mut verifier = Verifier::default();
        for entry in entries {
            verifier.push(entry)?;
        }
        verifier.finish(tip)
    }

    #[test]
    fn an_intact_chain_verifies() {
        let all = entries(5);
        let tip = verify(&all, None).expect("intact");
        assert_eq!(tip.seq, 5);
        assert_eq!(verify(&all, Some(&tip)), Ok(tip.clone()));
    }

    #[test]
    fn a_changed_entry_is_found() {
        let mut all = entries(5);
        all[2].detail = serde_json::json!({"level": "routine"});
        assert_eq!(verify(&all, None), Err(ChainBreak::Altered { seq: 3 }));
    }

    #[test]
    fn a_changed_entry_with_a_recomputed_hash_breaks_the_next_link() {
        let mut all = entries(5);
        all[2].actor = "someone-else".into();
        all[2] = all[2].clone().seal();
        assert_eq!(verify(&all, None), Err(ChainBreak::Unchained { seq: 4 }));
    }

    #[test]
    fn a_removed_entry_is_found() {
        let mut all = entries(5);
        all.remove(1);
        assert_eq!(
            verify(&all, None),
            Err(ChainBreak::OutOfSequence {
                after: 1,
                expected: 2,
                found: 3
            })
        );
    }

    #[test]
    fn a_removed_and_renumbered_entry_is_found() {
        let mut all = entries(5);
        all.remove(1);
        for (index, entry) in all.iter_mut().enumerate() {
            entry.seq = index as u64 + 1;
            *entry = entry.clone().seal();
        }
        assert_eq!(verify(&all, None), Err(ChainBreak::Unchained { seq: 2 }));
    }

    #[test]
    fn reordered_entries_are_found() {
        let mut all = entries(5);
        all.swap(1, 2);
        assert!(matches!(
            verify(&all, None),
            Err(ChainBreak::OutOfSequence { .. })
        ));
    }

    #[test]
    fn entries_removed_from_the_end_are_found_against_the_tip() {
        let all = entries(5);
        let tip = verify(&all, None).expect("intact");
        assert_eq!(
            verify(&all[..3], Some(&tip)),
            Err(ChainBreak::Truncated { last: 3, tip: 5 })
        );
    }

    #[test]
    fn an_entry_survives_a_round_trip_through_json() {
        let all = entries(3);
        let lines: Vec<String> = all
            .iter()
            .map(|entry| serde_json::to_string(entry).expect("serialise"))
            .collect();
        let parsed: Vec<AuditEntry> = lines
            .iter()
            .map(|line| serde_json::from_str(line).expect("parse"))
            .collect();
        assert!(verify(&parsed, None).is_ok());
    }
}
