//! The output guard: applies output rules to a model reply as it streams.
//!
//! The guard holds back only the last few words of the reply (as many as the longest output phrase
//! spans, plus the word still being written), so a phrase split across any chunk boundary is still
//! whole when it is checked, and everything before it goes to the patient at once.

use serde::Serialize;

use crate::policy::Severity;
use crate::policy::file::OutputAction;
use crate::policy::output::OutputRules;

/// How much released text the rules see again as context.
const TAIL_BYTES: usize = 240;

/// What the patient should get after a chunk (or at the end of the reply).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GuardStep {
    /// Text that is safe to send now.
    pub release: String,
    /// Set when a `replace` rule fired: stop the upstream stream and send this instead.
    pub replaced: Option<Replacement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replacement {
    pub rule: String,
    pub text: String,
}

/// The overall action taken on a reply, for `guard check` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardAction {
    Pass,
    Replace,
    Redact,
    Append,
}

/// Guards one reply. Create one per reply.
pub struct Guard<'a> {
    rules: &'a OutputRules,
    flag: Severity,
    /// Text received but not yet released.
    pending: String,
    /// The end of the released text, as context for the rules.
    released_tail: String,
    /// Whether `released_tail` still holds everything released so far.
    tail_is_whole: bool,
    /// Rules whose `append` text goes at the end.
    appends: Vec<usize>,
    /// Ids of every rule that acted, in order.
    acted: Vec<String>,
    action: GuardAction,
    stopped: bool,
}

impl<'a> Guard<'a> {
    pub fn new(rules: &'a OutputRules, flag: Severity) -> Self {
        Self {
            rules,
            flag,
            pending: String::new(),
            released_tail: String::new(),
            tail_is_whole: true,
            appends: Vec::new(),
            acted: Vec::new(),
            action: GuardAction::Pass,
            stopped: false,
        }
    }

    /// Takes the next chunk of the reply.
    pub fn push(&mut self, chunk: &str) -> GuardStep {
        if self.stopped {
            return GuardStep::default();
        }
        self.pending.push_str(chunk);
        self.check(false)
    }

    /// The reply ended: checks and releases what was held back, then any appended notes.
    pub fn finish(&mut self) -> GuardStep {
        if self.stopped {
            return GuardStep::default();
        }
        let mut step = self.check(true);
        if step.replaced.is_none() {
            for &rule in &self.appends {
                if let Some(rule) = self.rules.rules().get(rule) {
                    step.release.push_str("\n\n");
                    step.release.push_str(&rule.text);
                }
            }
        }
        self.stopped = true;
        step
    }

    /// The session's flag the rules were judged against.
    pub fn flag(&self) -> Severity {
        self.flag
    }

    pub fn action(&self) -> GuardAction {
        self.action
    }

    pub fn rules_acted(&self) -> &[String] {
        &self.acted
    }

    fn note(&mut self, rule: &str, action: GuardAction) {
        if !self.acted.iter().any(|seen| seen == rule) {
            self.acted.push(rule.to_owned());
        }
        // Replace outranks redact, which outranks append.
        let rank = |action: GuardAction| match action {
            GuardAction::Pass => 0,
            GuardAction::Append => 1,
            GuardAction::Redact => 2,
            GuardAction::Replace => 3,
        };
        if rank(action) > rank(self.action) {
            self.action = action;
        }
    }

    fn check(&mut self, at_end: bool) -> GuardStep {
        // Rules see a little of what was already released, so a pattern that needs the words
        // before a phrase (or the start of a sentence) judges it as the patient reads it. A tail
        // that does not reach the start of the reply begins with a marker, so `^` never matches
        // in the middle of a reply.
        let prefix = if self.tail_is_whole {
            self.released_tail.clone()
        } else {
            format!("_ {}", self.released_tail)
        };
        let combined = format!("{prefix}{}", self.pending);
        let normalized = self.rules.normalize(&combined);
        let hits = self.rules.find(&normalized, self.flag);
        let mut redactions: Vec<(usize, usize, String)> = Vec::new();
        for hit in hits {
            let Some(rule) = self.rules.rules().get(hit.rule) else {
                continue;
            };
            // A match that starts in released text was judged when it was released.
            let (start, end) = normalized.original_span(hit.first, hit.last);
            if start < prefix.len() {
                continue;
            }
            let (start, end) = (start - prefix.len(), end - prefix.len());
            match rule.action {
                OutputAction::Replace => {
                    let (id, text) = (rule.id.clone(), rule.text.clone());
                    self.note(&id, GuardAction::Replace);
                    self.stopped = true;
                    self.pending.clear();
                    return GuardStep {
                        release: String::new(),
                        replaced: Some(Replacement { rule: id, text }),
                    };
                }
                OutputAction::Redact => {
                    if redactions
                        .last()
                        .is_none_or(|(_, last_end, _)| *last_end <= start)
                    {
                        redactions.push((start, end, rule.text.clone()));
                    }
                    let id = rule.id.clone();
                    self.note(&id, GuardAction::Redact);
                }
                OutputAction::Append => {
                    if !self.appends.contains(&hit.rule) {
                        self.appends.push(hit.rule);
                    }
                    let id = rule.id.clone();
                    self.note(&id, GuardAction::Append);
                }
            }
        }
        // Apply redactions back to front so earlier offsets stay valid.
        for (start, end, text) in redactions.iter().rev() {
            if self.pending.is_char_boundary(*start) && self.pending.is_char_boundary(*end) {
                self.pending.replace_range(*start..*end, text);
            }
        }
        let cut = if at_end {
            self.pending.len()
        } else {
            self.safe_cut()
        };
        let release: String = self.pending.drain(..cut).collect();
        self.remember_released(&release);
        GuardStep {
            release,
            replaced: None,
        }
    }

    /// Keeps the last few hundred bytes of released text, cut at a word start.
    fn remember_released(&mut self, release: &str) {
        self.released_tail.push_str(release);
        if self.released_tail.len() > TAIL_BYTES {
            let mut cut = self.released_tail.len() - TAIL_BYTES;
            while !self.released_tail.is_char_boundary(cut) {
                cut += 1;
            }
            let word_start = self.released_tail[cut..]
                .find(char::is_whitespace)
                .map_or(self.released_tail.len(), |offset| cut + offset + 1);
            self.released_tail
                .drain(..word_start.min(self.released_tail.len()));
            self.tail_is_whole = false;
        }
    }

    /// How much of `pending` may go out: all but the last `window_words` tokens and the word
    /// still being written.
    fn safe_cut(&self) -> usize {
        // Redactions moved offsets, so word starts are found again in the (small) pending text.
        let normalized = self.rules.normalize(&self.pending);
        let words: Vec<usize> = normalized.tokens.iter().map(|token| token.start).collect();
        let ends_open = self
            .pending
            .chars()
            .last()
            .is_some_and(char::is_alphanumeric);
        let hold = self.rules.window_words() + usize::from(ends_open);
        if words.len() <= hold {
            return 0;
        }
        words[words.len() - hold]
    }
}

/// Runs a whole reply through the guard in chunks of `chunk_chars` characters, as the server
/// does, and returns what the patient would have seen.
pub fn run_chunked(
    rules: &OutputRules,
    flag: Severity,
    reply: &str,
    chunk_chars: usize,
) -> GuardedReply {
    let mut guard = Guard::new(rules, flag);
    let mut seen = String::new();
    let mut replaced = None;
    let chars: Vec<char> = reply.chars().collect();
    for piece in chars.chunks(chunk_chars.max(1)) {
        let chunk: String = piece.iter().collect();
        let step = guard.push(&chunk);
        seen.push_str(&step.release);
        if let Some(replacement) = step.replaced {
            replaced = Some(replacement);
            break;
        }
    }
    if replaced.is_none() {
        let step = guard.finish();
        seen.push_str(&step.release);
        replaced = step.replaced;
    }
    if let Some(replacement) = &replaced {
        if !seen.is_empty() && !seen.ends_with(char::is_whitespace) {
            seen.push(' ');
        }
        seen.push_str(&replacement.text);
    }
    GuardedReply {
        action: guard.action(),
        rules: guard.rules_acted().to_vec(),
        text: seen,
    }
}

/// The outcome of guarding a whole reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuardedReply {
    pub action: GuardAction,
    pub rules: Vec<String>,
    pub text: String,
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::OnceLock;

    use proptest::prelude::*;

    use super::*;
    use crate::policy::PolicySet;
    use crate::prompts::{Prompts, Region};

    fn shipped() -> &'static PolicySet {
        static SET: OnceLock<PolicySet> = OnceLock::new();
        SET.get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let prompts = Prompts::load(&root.join("prompts"), Region::Uk).expect("prompts");
            PolicySet::load(&root.join("policies"), &prompts).expect("policies")
        })
    }

    /// Phrases the shipped output rules forbid, in any conversation or a flagged one.
    const FORBIDDEN: [&str; 5] = [
        "the lethal dose of paracetamol",
        "you definitely have cancer",
        "it is probably nothing",
        "you should double your insulin",
        "the most painless way",
    ];

    /// Splits `text` at the given (sorted, deduplicated) character positions.
    fn chunked(text: &str, cuts: &[usize]) -> Vec<String> {
        let chars: Vec<char> = text.chars().collect();
        let mut pieces = Vec::new();
        let mut start = 0;
        for &cut in cuts.iter().filter(|&&cut| cut > 0 && cut < chars.len()) {
            if cut > start {
                pieces.push(chars[start..cut].iter().collect());
                start = cut;
            }
        }
        pieces.push(chars[start..].iter().collect());
        pieces
    }

    fn shown(pieces: &[String]) -> String {
        let rules = shipped().output_rules();
        let mut guard = Guard::new(rules, Severity::Emergency);
        let mut seen = String::new();
        for piece in pieces {
            let step = guard.push(piece);
            seen.push_str(&step.release);
            if step.replaced.is_some() {
                return seen;
            }
        }
        seen.push_str(&guard.finish().release);
        seen
    }

    #[test]
    fn a_forbidden_phrase_split_at_every_position_never_gets_through() {
        for phrase in FORBIDDEN {
            let reply = format!("Thanks for explaining. {phrase}, and rest well.");
            let length = reply.chars().count();
            for cut in 1..length {
                let seen = shown(&chunked(&reply, &[cut]));
                assert!(
                    !seen.to_lowercase().contains(phrase),
                    "{phrase:?} leaked when cut at {cut}: {seen:?}"
                );
            }
        }
    }

    #[test]
    fn text_before_a_hold_back_window_is_released_at_once() {
        let rules = shipped().output_rules();
        let mut guard = Guard::new(rules, Severity::Routine);
        let step = guard.push(&"Drink plenty of water and rest today. ".repeat(20));
        assert!(
            step.release.len() > 300,
            "only the window is held back: {:?}",
            step.release.len()
        );
    }

    proptest! {
        #[test]
        fn no_chunking_lets_a_forbidden_phrase_through(
            which in 0..FORBIDDEN.len(),
            prefix in "[A-Za-z ,.]{0,60}",
            suffix in "[A-Za-z ,.]{0,60}",
            cuts in proptest::collection::vec(0usize..200, 0..30),
        ) {
            let phrase = FORBIDDEN[which];
            let reply = format!("{prefix} {phrase} {suffix}");
            let mut cuts = cuts;
            cuts.sort_unstable();
            cuts.dedup();
            let seen = shown(&chunked(&reply, &cuts));
            prop_assert!(!seen.to_lowercase().contains(phrase), "{:?} leaked: {:?}", phrase, seen);
        }
    }
}
