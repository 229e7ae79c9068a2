//! The patient messages the load sends, and a check against the shipped policies that each one is
//! what the load assumes: red flags escalate, routine messages do not (alone or after any other
//! message), and the fake provider's reply passes the output guard whatever the session's flag.

use anyhow::{Context, bail};
use carebridge::guard::{Guard, GuardAction, run_chunked};
use carebridge::policy::{PolicySet, Severity};
use carebridge::prompts::{Prompts, Region};

use crate::server::repo;

pub const RED_FLAGS: [&str; 4] = [
    "crushing chest pain spreading to my left arm",
    "my face is drooping on one side and my speech is slurred",
    "my lips and tongue are swelling and I can't breathe after eating peanuts",
    "I collapsed and I can't feel my legs",
];

pub const ROUTINE: [&str; 6] = [
    "what helps a mild sore throat",
    "how much water should I drink a day",
    "is it normal to feel tired after a cold",
    "what can I do about a blocked nose at night",
    "how long does a cough usually last",
    "any tips for sleeping better",
];

/// One message of the plan.
#[derive(Debug, Clone, Copy)]
pub struct Planned {
    pub text: &'static str,
    pub red: bool,
}

/// SplitMix64: a deterministic mix without a random-number crate, so a seed repeats a run.
fn mix(mut value: u64) -> u64 {
    value = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
    value = (value ^ (value >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    value ^ (value >> 31)
}

/// Message `index` of patient `patient`: a red flag with probability `red_ratio`.
pub fn planned(seed: u64, patient: usize, index: usize, red_ratio: f64) -> Planned {
    let draw = mix(seed ^ mix(patient as u64) ^ mix(index as u64).rotate_left(17));
    let unit = (draw >> 11) as f64 / (1u64 << 53) as f64;
    let pick = (draw % 1_000) as usize;
    if unit < red_ratio {
        Planned {
            text: RED_FLAGS[pick % RED_FLAGS.len()],
            red: true,
        }
    } else {
        Planned {
            text: ROUTINE[pick % ROUTINE.len()],
            red: false,
        }
    }
}

/// What the check learned, for the report.
pub struct Checked {
    /// The longest output phrase in words: about the most the guard ever holds back.
    pub guard_window_words: usize,
    /// The provider chunk (0 is the first) after which the guard first releases text: until
    /// then the patient sees nothing, whatever Carebridge's own speed.
    pub first_release_chunk: Option<usize>,
    /// Provider chunks between consecutive releases of the guard: a chunk that ends inside a
    /// word releases nothing, so the patient's gap is a whole number of provider gaps.
    pub release_gaps: Vec<usize>,
    /// Time of each `Guard::push` for this reply and chunking, run here before the load (the
    /// same code the server runs, on an idle core), under each session flag.
    pub guard_push: crate::stats::Samples,
    /// The same with the CPU caches flushed between chunks (32 MiB touched), as when a server
    /// thread handles other work between two chunks of one reply.
    pub guard_push_cold: crate::stats::Samples,
    pub policy_version: String,
}

/// Checks the messages and the reply against the shipped policies.
///
/// # Errors
/// A message that does not behave as the load assumes (the report would be misleading).
pub fn check(reply: &str, chunk_chars: usize) -> anyhow::Result<Checked> {
    let root = repo();
    let prompts = Prompts::load(&root.join("prompts"), Region::Uk).context("loading prompts")?;
    let policies = PolicySet::load(&root.join("policies"), &prompts)
        .context("loading the shipped policies")?;
    for text in RED_FLAGS {
        if !policies.evaluate(text).escalates() {
            bail!("red-flag text {text:?} does not escalate under the shipped policies");
        }
    }
    for text in ROUTINE {
        if policies.evaluate(text).lead().is_some() {
            bail!("routine text {text:?} is flagged by the shipped policies");
        }
        // Rules with a conversation window combine findings across messages.
        for earlier in RED_FLAGS.iter().chain(ROUTINE.iter()) {
            let decision = policies.evaluate_in_conversation(text, &[earlier]);
            if decision.escalates() {
                bail!("routine text {text:?} escalates after {earlier:?}");
            }
        }
    }
    for flag in [Severity::Routine, Severity::Urgent, Severity::Emergency] {
        let guarded = run_chunked(policies.output_rules(), flag, reply, chunk_chars);
        if matches!(guarded.action, GuardAction::Replace | GuardAction::Redact) {
            bail!(
                "the fake reply is changed by output rules {:?} under a {} flag",
                guarded.rules,
                flag.as_str()
            );
        }
    }
    let chars: Vec<char> = reply.chars().collect();
    let chunks: Vec<String> = chars
        .chunks(chunk_chars.max(1))
        .map(|piece| piece.iter().collect())
        .collect();
    let mut guard = Guard::new(policies.output_rules(), Severity::Routine);
    let mut releases: Vec<usize> = chunks
        .iter()
        .enumerate()
        .filter(|(_, chunk)| !guard.push(chunk).release.is_empty())
        .map(|(index, _)| index)
        .collect();
    // The rest goes out when the stream ends, right after the last chunk.
    let last = chunks.len().saturating_sub(1);
    if !guard.finish().release.is_empty() && releases.last() != Some(&last) {
        releases.push(last);
    }
    let release_gaps = releases.windows(2).map(|pair| pair[1] - pair[0]).collect();
    let mut guard_push = crate::stats::Samples::default();
    for _ in 0..20 {
        for flag in [Severity::Routine, Severity::Urgent, Severity::Emergency] {
            let mut guard = Guard::new(policies.output_rules(), flag);
            for chunk in &chunks {
                let started = std::time::Instant::now();
                let step = guard.push(chunk);
                guard_push.push(started.elapsed());
                std::hint::black_box(step);
            }
        }
    }
    let mut guard_push_cold = crate::stats::Samples::default();
    let mut scratch = vec![0u8; 32 * 1024 * 1024];
    for round in 0..3u8 {
        for flag in [Severity::Routine, Severity::Urgent, Severity::Emergency] {
            let mut guard = Guard::new(policies.output_rules(), flag);
            for chunk in &chunks {
                // One write per cache line evicts the guard's tables from every cache level.
                for byte in scratch.iter_mut().step_by(64) {
                    *byte = byte.wrapping_add(round);
                }
                std::hint::black_box(&scratch);
                let started = std::time::Instant::now();
                let step = guard.push(chunk);
                guard_push_cold.push(started.elapsed());
                std::hint::black_box(step);
            }
        }
    }
    Ok(Checked {
        guard_push_cold,
        first_release_chunk: releases.first().copied(),
        release_gaps,
        guard_push,
        guard_window_words: policies.output_rules().window_words(),
        policy_version: policies.version().to_owned(),
    })
}
