//! What `faults` checks in each session's log (read back by `resume` from 0) against what the
//! patient went through: every acked message stored exactly once at its acked `seq`, every message
//! acked, every session's first red flag covered by an escalation, and how each reply ended.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::retrying::{LiveReply, MessageOutcome};

/// Counts over every session.
#[derive(Debug, Default)]
pub struct Tally {
    pub sent: u64,
    pub acked: u64,
    pub attempts: u64,
    /// Messages sent more than once before their ack.
    pub retried: u64,
    pub retry_reasons: BTreeMap<String, u64>,
    /// Messages never acked within their time (a failure).
    pub never_acked: u64,
    /// Of those, refused with a code the protocol says not to retry.
    pub refused: u64,
    /// Never acked, yet in the log (a try was stored but no ack reached the patient).
    pub stored_without_ack: u64,
    /// Acked, but not in the log at the acked `seq` (a failure).
    pub acked_missing: u64,
    /// Stored more than once under one `client_id` (a failure).
    pub duplicated: u64,
    /// Acked twice with different `seq`s (a failure).
    pub ack_seq_changed: u64,

    /// How replies ended in the log, for acked messages.
    pub log_completed: u64,
    pub log_fallback: u64,
    pub log_interrupted: u64,
    pub log_guard_replaced: u64,
    /// No reply stored; for messages the server had already stored from an earlier try, there is
    /// none by design (it answers each message once), and they are counted apart.
    pub log_no_reply: u64,
    pub log_no_reply_already_stored: u64,

    /// How replies ended on the patient's socket.
    pub live_done: u64,
    /// `done` with `seq` 0: shown to the patient, but the store refused it.
    pub live_done_unstored: u64,
    pub live_fallback: u64,
    pub live_guard_replaced: u64,
    pub live_cut: u64,
    pub live_timed_out: u64,
    pub live_already_stored: u64,

    pub red_sent: u64,
    pub red_acked: u64,
    pub alerts_live: u64,
    pub alerts_logged: u64,
    /// Sessions with at least one acked red flag.
    pub red_sessions: u64,
    /// Of those, whose escalation a nurse socket saw live.
    pub escalations_seen: u64,
    /// Whose escalation was only found in the queue read at the end.
    pub escalations_only_queued: u64,
    /// Whose first acked red flag opened no escalation (a failure).
    pub escalations_missing: u64,

    /// One case per failure kind: session, client id, seqs.
    pub examples: BTreeMap<String, String>,
}

impl Tally {
    /// Failures that make the run FAIL.
    pub fn failures(&self) -> u64 {
        self.never_acked
            + self.acked_missing
            + self.duplicated
            + self.ack_seq_changed
            + self.escalations_missing
    }

    fn example(&mut self, kind: &str, detail: String) {
        self.examples.entry(kind.to_owned()).or_insert(detail);
    }

    pub fn to_json(&self) -> Value {
        json!({
            "sent": self.sent, "acked": self.acked, "attempts": self.attempts,
            "retried": self.retried, "retry_reasons": self.retry_reasons,
            "never_acked": self.never_acked, "refused": self.refused,
            "stored_without_ack": self.stored_without_ack,
            "acked_missing": self.acked_missing, "duplicated": self.duplicated,
            "ack_seq_changed": self.ack_seq_changed,
            "replies_in_log": {
                "completed": self.log_completed, "fallback": self.log_fallback,
                "interrupted": self.log_interrupted, "guard_replaced": self.log_guard_replaced,
                "none": self.log_no_reply, "none_already_stored": self.log_no_reply_already_stored,
            },
            "replies_live": {
                "done": self.live_done, "done_not_stored": self.live_done_unstored,
                "fallback": self.live_fallback, "guard_replaced": self.live_guard_replaced,
                "cut": self.live_cut, "timed_out": self.live_timed_out,
                "already_stored": self.live_already_stored,
            },
            "red_flags": {
                "sent": self.red_sent, "acked": self.red_acked,
                "alerts_live": self.alerts_live, "alerts_in_log": self.alerts_logged,
                "sessions": self.red_sessions, "escalations_seen_by_nurse": self.escalations_seen,
                "escalations_only_in_final_queue": self.escalations_only_queued,
                "escalations_missing": self.escalations_missing,
            },
            "examples": self.examples,
        })
    }
}

/// Escalations of one session, each by its `created_at_ms`.
pub struct SessionEscalations<'a> {
    pub seen_by_nurse: &'a [u64],
    pub in_final_queue: &'a [u64],
}

fn kind(event: &Value) -> &str {
    event["kind"].as_str().unwrap_or_default()
}

/// The reply to the message stored at `message_seq`: by its id when the patient saw one, else the
/// first reply stored after it and before the next patient message.
fn reply_in_log<'a>(
    log: &'a BTreeMap<u64, Value>,
    message_seq: u64,
    message_id: Option<&str>,
) -> Option<&'a Value> {
    if let Some(id) = message_id {
        return log
            .values()
            .find(|event| kind(event) == "assistant_message" && event["message_id"] == id);
    }
    let next_message = next_patient_message(log, message_seq);
    log.range(message_seq + 1..next_message)
        .map(|(_, event)| event)
        .find(|event| kind(event) == "assistant_message")
}

fn next_patient_message(log: &BTreeMap<u64, Value>, after: u64) -> u64 {
    log.range(after + 1..)
        .find(|(_, event)| kind(event) == "patient_message")
        .map_or(u64::MAX, |(seq, _)| *seq)
}

/// Checks one session and adds it to `tally`.
pub fn check_session(
    session: &str,
    outcomes: &[MessageOutcome],
    log: &BTreeMap<u64, Value>,
    escalations: &SessionEscalations<'_>,
    tally: &mut Tally,
) {
    let mut stored: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (seq, event) in log {
        if kind(event) == "patient_message"
            && let Some(client_id) = event["client_id"].as_str()
        {
            stored.entry(client_id).or_default().push(*seq);
        }
    }
    for outcome in outcomes {
        tally.sent += 1;
        tally.attempts += u64::from(outcome.attempts);
        if outcome.attempts > 1 {
            tally.retried += 1;
        }
        for (reason, count) in &outcome.retries {
            *tally.retry_reasons.entry(reason.clone()).or_insert(0) += u64::from(*count);
        }
        if outcome.red {
            tally.red_sent += 1;
        }
        let copies = stored
            .get(outcome.client_id.as_str())
            .map_or(&[][..], Vec::as_slice);
        if copies.len() > 1 {
            tally.duplicated += 1;
            tally.example(
                "stored more than once",
                format!("session {session}, {}: seqs {copies:?}", outcome.client_id),
            );
        }
        let Some(&acked_seq) = outcome.ack_seqs.first() else {
            tally.never_acked += 1;
            if outcome.refused.is_some() {
                tally.refused += 1;
            }
            if !copies.is_empty() {
                tally.stored_without_ack += 1;
            }
            tally.example(
                "never acked",
                format!(
                    "session {session}, {}: {} tries, {:?}{}",
                    outcome.client_id,
                    outcome.attempts,
                    outcome.retries,
                    outcome
                        .refused
                        .as_deref()
                        .map(|refusal| format!(", refused {refusal}"))
                        .unwrap_or_default()
                ),
            );
            continue;
        };
        tally.acked += 1;
        if outcome.ack_seqs.len() > 1 {
            tally.ack_seq_changed += 1;
            tally.example(
                "acked with different seqs",
                format!(
                    "session {session}, {}: {:?}",
                    outcome.client_id, outcome.ack_seqs
                ),
            );
        }
        let at_acked_seq = log.get(&acked_seq).is_some_and(|event| {
            kind(event) == "patient_message" && event["client_id"] == outcome.client_id.as_str()
        });
        if !at_acked_seq {
            tally.acked_missing += 1;
            tally.example(
                "acked but not in the log",
                format!(
                    "session {session}, {}: acked at seq {acked_seq}, stored at {copies:?}",
                    outcome.client_id
                ),
            );
        }
        count_reply(outcome, log, acked_seq, tally);
        if outcome.red {
            tally.red_acked += 1;
            if outcome.alerted {
                tally.alerts_live += 1;
            }
            let next_message = next_patient_message(log, acked_seq);
            if log
                .range(acked_seq + 1..next_message)
                .any(|(_, event)| kind(event) == "alert")
            {
                tally.alerts_logged += 1;
            }
        }
    }
    check_escalation(session, outcomes, escalations, tally);
}

fn count_reply(
    outcome: &MessageOutcome,
    log: &BTreeMap<u64, Value>,
    acked_seq: u64,
    tally: &mut Tally,
) {
    match &outcome.reply {
        LiveReply::Done { seq: 0 } => tally.live_done_unstored += 1,
        LiveReply::Done { .. } => tally.live_done += 1,
        LiveReply::Replaced { rule, .. } if rule == "fallback" => tally.live_fallback += 1,
        LiveReply::Replaced { .. } => tally.live_guard_replaced += 1,
        LiveReply::Cut => tally.live_cut += 1,
        LiveReply::TimedOut | LiveReply::NotAwaited => tally.live_timed_out += 1,
        LiveReply::AlreadyStored => tally.live_already_stored += 1,
    }
    match reply_in_log(log, acked_seq, outcome.message_id.as_deref()) {
        Some(reply) => match reply["replaced_by"].as_str() {
            None => tally.log_completed += 1,
            Some("fallback") => tally.log_fallback += 1,
            Some("interrupted") => tally.log_interrupted += 1,
            Some(_) => tally.log_guard_replaced += 1,
        },
        None if outcome.reply == LiveReply::AlreadyStored => {
            tally.log_no_reply_already_stored += 1;
        }
        None => tally.log_no_reply += 1,
    }
}

/// A nurse watches without acting, so a session's first red flag opens its escalation and later
/// ones join it. The first acked red flag is covered when an escalation of its session was opened
/// before the session's next red flag was sent (a later one opening it would hide a lost raise).
fn check_escalation(
    session: &str,
    outcomes: &[MessageOutcome],
    escalations: &SessionEscalations<'_>,
    tally: &mut Tally,
) {
    let Some(first) = outcomes
        .iter()
        .position(|outcome| outcome.red && !outcome.ack_seqs.is_empty())
    else {
        return;
    };
    tally.red_sessions += 1;
    let opened_by = outcomes[first + 1..]
        .iter()
        .find(|outcome| outcome.red)
        .map_or(u64::MAX, |next| next.first_sent_unix_ms);
    let in_time = |created: &u64| *created < opened_by;
    if escalations.seen_by_nurse.iter().any(in_time) {
        tally.escalations_seen += 1;
    } else if escalations.in_final_queue.iter().any(in_time) {
        tally.escalations_only_queued += 1;
    } else {
        tally.escalations_missing += 1;
        let all: Vec<u64> = escalations
            .seen_by_nurse
            .iter()
            .chain(escalations.in_final_queue)
            .copied()
            .collect();
        tally.example(
            "red flag without an escalation",
            format!(
                "session {session}, {} first sent at {} ms (unix), escalations created at {all:?}",
                outcomes[first].client_id, outcomes[first].first_sent_unix_ms
            ),
        );
    }
}
