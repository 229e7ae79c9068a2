//! The output guard: applies output rules to a model reply as it streams.
//!
//! The guard holds back only text that could still be the beginning of a forbidden phrase under
//! the session's flag (asked of the policy's phrase automata, see `hold`), and releases
//! everything else at once. So a phrase split across any chunk boundary is still whole when it is
//! checked, and a reply that begins with words no phrase begins with reaches the patient as fast
//! as the provider sends it.

mod hold;

use serde::Serialize;

use crate::policy::Severity;
use crate::policy::file::OutputAction;
use crate::policy::output::OutputRules;
use crate::policy::prefixes::{PhrasePrefixes, PrefixCaches};

/// Released text the rules see again, in words beyond the longest phrase: the normaliser needs
/// the word before a held one, and a match that reaches back into released text must be seen.
const TAIL_EXTRA_WORDS: usize = 2;
/// Released words the rules usually see again before the pending text.
const CONTEXT_WORDS: usize = 2;
/// The most released text kept as context, whatever the words.
const TAIL_MAX_BYTES: usize = 512;

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
    prefixes: &'a PhrasePrefixes,
    /// The automata's working memory, borrowed from their pools for one check at a time.
    caches: PrefixCaches,
    /// The append rules' automata, and their working memory (borrowed like `caches`).
    append_automata: &'a PhrasePrefixes,
    append_caches: PrefixCaches,
    /// Set once text went out while a phrase could still have begun in it (a reply too long
    /// to hold): from then on every chunk is scanned in full, with the released tail.
    forced: bool,
    flag: Severity,
    /// Text received but not yet released.
    pending: String,
    /// The end of the released text, as context for the rules.
    released_tail: String,
    /// Whether `released_tail` still holds everything released so far.
    tail_is_whole: bool,
    /// How many bytes at the end of `released_tail` went out before they settled (the start
    /// of a word no phrase could begin with): matches through them are judged when they settle.
    released_unsettled: usize,
    /// Rules whose `append` text goes at the end.
    appends: Vec<usize>,
    /// Ids of every rule that acted, in order.
    acted: Vec<String>,
    action: GuardAction,
    stopped: bool,
}

impl<'a> Guard<'a> {
    pub fn new(rules: &'a OutputRules, flag: Severity) -> Self {
        let prefixes = rules.prefixes(flag);
        let append_automata = rules.appends(flag);
        Self {
            rules,
            prefixes,
            caches: PrefixCaches::default(),
            append_automata,
            append_caches: PrefixCaches::default(),
            forced: false,
            flag,
            pending: String::new(),
            released_tail: String::new(),
            tail_is_whole: true,
            released_unsettled: 0,
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

    /// The released text the rules see again and the pending text as one string, and where the
    /// pending text starts.
    ///
    /// Usually that is the last few released words: context for the normaliser and for a
    /// pattern's `\b`, and any word that went out before it settled. The whole kept tail is seen
    /// while an append rule has yet to match (its phrases hold nothing back, so one may have begun
    /// in released text) and once the hold-back was overrun. Released text that does not reach the
    /// start of the reply begins with a marker, so `^` never matches in the middle of a reply.
    fn combined(&self) -> (String, usize) {
        let tail = self.released_tail.as_str();
        let from = if self.forced || self.appends_outstanding() {
            0
        } else {
            context_start(tail, tail.len().saturating_sub(self.released_unsettled))
        };
        let marker = if self.tail_is_whole && from == 0 {
            ""
        } else {
            "_ "
        };
        let mut combined =
            String::with_capacity(marker.len() + tail.len() - from + self.pending.len());
        combined.push_str(marker);
        combined.push_str(&tail[from..]);
        let offset = combined.len();
        combined.push_str(&self.pending);
        (combined, offset)
    }

    /// Whether an append rule that applies under the session's flag has not matched yet.
    fn appends_outstanding(&self) -> bool {
        self.appends.len() < self.rules.append_rule_count(self.flag)
    }

    /// Checks with the automata's working memory borrowed from their pools for this call only.
    ///
    /// A guard used to keep its caches for the whole reply. With more replies streaming at once
    /// than the pool keeps, every finished reply dropped its warmed cache and every new one
    /// determinised the same states again: under a hundred concurrent replies that was a quarter
    /// of the server's CPU. A check never waits, so the caches in use at once are at most the
    /// threads checking, and each reply walks states that earlier replies built.
    fn check(&mut self, at_end: bool) -> GuardStep {
        self.caches = self.prefixes.caches();
        self.append_caches = self.append_automata.caches();
        let step = self.check_with_caches(at_end, REDACTION_RESCANS);
        self.return_caches();
        step
    }

    fn return_caches(&mut self) {
        self.prefixes.give_back(std::mem::take(&mut self.caches));
        self.append_automata
            .give_back(std::mem::take(&mut self.append_caches));
    }

    /// One check of the held text. After a redaction it is read again (`rescans` more times at
    /// most): the notice stands where the span was, and what follows reads differently beside
    /// it. In "As your doctor, I  I I am a d o c t o r" the first redaction takes "As your
    /// doctor, I", and the letters left ("I I am a d o c t o r") now spell "I am a doctor"; a
    /// reply cut into chunks sees them that way, so the reply read whole must too.
    fn check_with_caches(&mut self, at_end: bool, rescans: usize) -> GuardStep {
        let (combined, offset) = self.combined();
        let normalized = self.rules.normalize(&combined);
        let frontier = self.frontier(&normalized, &combined, offset);
        // Text released before it settled (a word still being written) is judged now, with
        // what has arrived since.
        let judged_upto = offset.saturating_sub(self.released_unsettled);
        let first_touched = normalized
            .tokens
            .partition_point(|token| token.end <= judged_upto);
        // The automata's walks tell for certain when no match begins in the pending text, which
        // is nearly every chunk; the full scan runs only when one may.
        let scan = at_end || self.forced || self.may_match(&normalized, first_touched);
        let hits = if scan {
            self.rules.find(&normalized, self.flag)
        } else {
            Vec::new()
        };
        // A match that ends in unsettled text waits until it settles (it is held back until
        // then): `tomorrow` may still be `tomorrowland`.
        let settled_upto = if at_end {
            combined.len()
        } else {
            frontier.unsettled_start
        };
        let mut redactions: Vec<(usize, usize, String)> = Vec::new();
        for hit in hits {
            let Some(rule) = self.rules.rules().get(hit.rule) else {
                continue;
            };
            let (start, end) = normalized.original_span(hit.first, hit.last);
            // A match wholly in released text was judged when it was released. One that reaches
            // back into it (the hold-back should make that impossible) still acts on the rest.
            if end <= judged_upto || end > settled_upto {
                continue;
            }
            let (start, end) = (start.saturating_sub(offset), end.saturating_sub(offset));
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
        let redacted = !redactions.is_empty();
        for (start, end, text) in redactions.iter().rev() {
            if self.pending.is_char_boundary(*start) && self.pending.is_char_boundary(*end) {
                self.pending.replace_range(*start..*end, text);
            }
        }
        if redacted && rescans > 0 {
            return self.check_with_caches(at_end, rescans - 1);
        }
        let (cut, unsettled_start) = if at_end {
            (self.pending.len(), combined.len())
        } else if redacted {
            // Redactions moved offsets: the held text is found again in the changed text.
            let (combined, offset) = self.combined();
            let normalized = self.rules.normalize(&combined);
            let frontier = self.frontier(&normalized, &combined, offset);
            let unsettled_start = frontier.unsettled_start;
            (
                self.safe_cut(&normalized, &combined, offset, frontier),
                unsettled_start,
            )
        } else {
            let unsettled_start = frontier.unsettled_start;
            (
                self.safe_cut(&normalized, &combined, offset, frontier),
                unsettled_start,
            )
        };
        let release: String = self.pending.drain(..cut).collect();
        // Unsettled text that went out, from the frontier (which may lie in released text) to
        // the cut.
        self.released_unsettled = if at_end {
            0
        } else {
            (offset + cut).saturating_sub(unsettled_start)
        };
        self.remember_released(&release);
        self.released_unsettled = self.released_unsettled.min(self.released_tail.len());
        GuardStep {
            release,
            replaced: None,
        }
    }

    /// Keeps the last few words of released text (at most [`TAIL_MAX_BYTES`]), cut at a word
    /// start.
    fn remember_released(&mut self, release: &str) {
        if release.is_empty() {
            return;
        }
        self.released_tail.push_str(release);
        let keep_words = self.rules.window_words() + TAIL_EXTRA_WORDS;
        let mut words = 0;
        let mut cut = 0;
        let mut after = None::<char>;
        for (index, ch) in self.released_tail.char_indices().rev() {
            if ch.is_whitespace() && after.is_some_and(|next| !next.is_whitespace()) {
                words += 1;
                if words == keep_words {
                    cut = index + ch.len_utf8();
                    break;
                }
            }
            after = Some(ch);
        }
        // Cut at the start of a run of single letters, so that the run is read whole.
        let mut cut = start_of_letter_run(&self.released_tail, cut);
        if self.released_tail.len() - cut > TAIL_MAX_BYTES {
            let mut floor = self.released_tail.len() - TAIL_MAX_BYTES;
            while !self.released_tail.is_char_boundary(floor) {
                floor += 1;
            }
            cut = self.released_tail[floor..]
                .find(char::is_whitespace)
                .map_or(self.released_tail.len(), |at| floor + at + 1);
        }
        if cut > 0 {
            self.released_tail
                .drain(..cut.min(self.released_tail.len()));
            self.tail_is_whole = false;
        }
    }
}

/// How many times a check reads the held text again after redacting in it.
const REDACTION_RESCANS: usize = 2;

/// Where the context before byte `settled` of released text starts: [`CONTEXT_WORDS`] word
/// starts back (or the start of the text), and further back over a run of single letters.
fn context_start(tail: &str, settled: usize) -> usize {
    let mut words = 0;
    let mut after_is_word = false;
    for (index, ch) in tail[..settled.min(tail.len())].char_indices().rev() {
        if ch.is_whitespace() {
            if after_is_word {
                words += 1;
                if words == CONTEXT_WORDS {
                    return start_of_letter_run(tail, index + ch.len_utf8());
                }
            }
            after_is_word = false;
        } else {
            after_is_word = true;
        }
    }
    0
}

/// `cut` (a word start in `tail`), moved back to where the run of single letters it stands in
/// starts.
///
/// The normaliser reads three single letters in a row as one word spelt out, and how it joins
/// them depends on the whole run: "a b I am" is "abi am", while "I am" alone is "i am". Context
/// cut inside a run would read the letters after the cut differently from the reply read whole.
fn start_of_letter_run(tail: &str, cut: usize) -> usize {
    fn single_letter(word: &str) -> bool {
        let mut letters = word.chars().filter(|ch| ch.is_alphanumeric());
        letters.next().is_some() && letters.next().is_none()
    }
    let Some(first_word) = tail
        .get(cut..)
        .and_then(|rest| rest.split_whitespace().next())
    else {
        return cut;
    };
    if !single_letter(first_word) {
        return cut;
    }
    let mut start = cut;
    let before = tail.get(..cut).unwrap_or_default();
    let mut end = before.len();
    for (index, ch) in before.char_indices().rev() {
        if !ch.is_whitespace() {
            continue;
        }
        let word = &before[index + ch.len_utf8()..end];
        end = index;
        if word.is_empty() {
            continue;
        }
        if !single_letter(word) {
            return start;
        }
        start = index + ch.len_utf8();
    }
    let word = &before[..end];
    if word.is_empty() || single_letter(word) {
        0
    } else {
        start
    }
}

impl Drop for Guard<'_> {
    /// Caches still held here were taken by a check that did not return (a panic).
    fn drop(&mut self) {
        self.return_caches();
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
    let chars: Vec<char> = reply.chars().collect();
    let pieces = chars
        .chunks(chunk_chars.max(1))
        .map(|piece| piece.iter().collect::<String>());
    stream(rules, flag, pieces).into_reply()
}

/// Streams `pieces` of a reply through a guard, as the server does: what went out before the
/// reply ended or a rule stopped it, and that rule's replacement.
pub fn stream<S: AsRef<str>>(
    rules: &OutputRules,
    flag: Severity,
    pieces: impl IntoIterator<Item = S>,
) -> Streamed {
    let mut guard = Guard::new(rules, flag);
    let mut released = String::new();
    let mut replaced = None;
    for piece in pieces {
        let step = guard.push(piece.as_ref());
        released.push_str(&step.release);
        if step.replaced.is_some() {
            replaced = step.replaced;
            break;
        }
    }
    if replaced.is_none() {
        let step = guard.finish();
        released.push_str(&step.release);
        replaced = step.replaced;
    }
    Streamed {
        action: guard.action(),
        rules: guard.rules_acted().to_vec(),
        released,
        replaced,
    }
}

/// A reply as it streamed through the guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Streamed {
    pub action: GuardAction,
    pub rules: Vec<String>,
    /// Text that went to the patient, appended notes included, before any replacement.
    pub released: String,
    pub replaced: Option<Replacement>,
}

impl Streamed {
    /// What the patient saw in the end: the released text, then the replacement, if any.
    pub fn into_reply(self) -> GuardedReply {
        let mut text = self.released;
        if let Some(replacement) = &self.replaced {
            if !text.is_empty() && !text.ends_with(char::is_whitespace) {
                text.push(' ');
            }
            text.push_str(&replacement.text);
        }
        GuardedReply {
            action: self.action,
            rules: self.rules,
            text,
        }
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

    /// Pieces of replies: ordinary text, forbidden phrases and disguised forms of them.
    const FRAGMENTS: [&str; 22] = [
        "Thank you for telling me. ",
        "It is probably nothing serious",
        "it's probably just a cold. ",
        "I'm a doctor",
        "I am a d o c t o r, ",
        "1 am a n0rse and ",
        "You DEFINITELY have cancer. ",
        "the lethal dose of paracetamol",
        "you should double your insulin ",
        "Rest, drink fluids, and ",
        "call 999 now. ",
        "u can wait until tomorrow",
        "probably fine",
        " I ",
        "a b ",
        "\n",
        "you should take 2 tablets of tramadol ",
        "As your doctor, I ",
        "It is definitely a migraine. ",
        "no es nada grave, ",
        "prοbably nοthing to wοrry about ",
        "wont ",
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
        stream(shipped().output_rules(), Severity::Emergency, pieces).released
    }

    #[test]
    fn replies_streaming_at_once_share_the_automata_working_memory() {
        let rules = shipped().output_rules();
        let flag = Severity::Urgent;
        let built = || rules.prefixes(flag).caches_built() + rules.appends(flag).caches_built();
        let before = built();
        let mut guards: Vec<Guard> = (0..60).map(|_| Guard::new(rules, flag)).collect();
        for chunk in [
            "Thank you for ",
            "telling me. It is ",
            "probably a cold, ",
            "rest well.",
        ] {
            for guard in &mut guards {
                guard.push(chunk);
            }
        }
        for guard in &mut guards {
            guard.finish();
        }
        // A cache per reply would build about 120 here; other tests running beside this one
        // may build a few of their own.
        let grown = built() - before;
        assert!(grown <= 8, "{grown} caches built for 60 replies");
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

    /// Pushes each piece and returns what each push released.
    fn releases(flag: Severity, pieces: &[&str]) -> Vec<String> {
        let mut guard = Guard::new(shipped().output_rules(), flag);
        pieces
            .iter()
            .map(|piece| {
                let step = guard.push(piece);
                assert!(step.replaced.is_none(), "{piece:?} was replaced");
                step.release
            })
            .collect()
    }

    /// Output rules from a TOML snippet of `[[output_rule]]` tables.
    fn rules_from(toml: &str) -> OutputRules {
        #[derive(serde::Deserialize)]
        struct Snippet {
            output_rule: Vec<crate::policy::file::OutputRuleSpec>,
        }
        let snippet: Snippet = toml::from_str(toml).expect("snippet");
        let files = vec![(std::path::PathBuf::from("test.toml"), snippet.output_rule)];
        OutputRules::compile(&crate::policy::normalize::Normalizer::default(), files)
            .expect("rules")
    }

    #[test]
    fn an_append_phrase_released_word_by_word_is_still_noticed() {
        let rules = rules_from(
            r#"
            [[output_rule]]
            id = "note.ibuprofen"
            action = "append"
            triggers = ["take ibuprofen with food"]
            text = "Ibuprofen is not for everyone: check with a pharmacist."
            "#,
        );
        let pieces = [
            "You",
            " can",
            " take",
            " ibuprofen",
            " with",
            " food",
            " if",
            " needed",
        ];
        let mut guard = Guard::new(&rules, Severity::Routine);
        let mut seen = String::new();
        for piece in pieces {
            seen.push_str(&guard.push(piece).release);
        }
        // Nothing is held back for an append rule.
        assert_eq!(seen, "You can take ibuprofen with food if needed");
        seen.push_str(&guard.finish().release);
        assert_eq!(guard.rules_acted(), ["note.ibuprofen"]);
        assert!(seen.ends_with("check with a pharmacist."), "{seen:?}");
    }

    #[test]
    fn a_pattern_is_held_from_inside_a_word() {
        let rules = rules_from(
            r#"
            [[output_rule]]
            id = "no.cancer"
            action = "replace"
            patterns = ['cancer\b']
            text = "I can't say that."
            "#,
        );
        let released = {
            let mut guard = Guard::new(&rules, Severity::Routine);
            ["It", " looks", " like", " skincan", "cer", ".", " Rest"]
                .map(|piece| guard.push(piece))
                .map(|step| (step.release, step.replaced.map(|replaced| replaced.rule)))
        };
        assert_eq!(released[3].0, " ", "`skincan` could still end in `cancer`");
        // Replaced once the word is finished (`cancerous` would not match).
        assert_eq!(released[6].1.as_deref(), Some("no.cancer"), "{released:?}");
        assert!(released.iter().all(|(text, _)| !text.contains("skin")));
    }

    /// The fuzzer's first finding (`fuzz/`, target `guard`): NUL characters vanish in
    /// normalisation, so `I S\0\0\0n` ends in the spelt-out run `i s n`, read as one word. The
    /// guard took the run for closed once the unfinished word had two characters, and redacted
    /// "as your doctor, i" in some chunkings and not in others.
    #[test]
    fn letters_with_invisible_characters_between_them_still_count_as_spelt_out() {
        let rules = shipped().output_rules();
        let reply = "As your doctor, I S\0\0\0n suggest you rest.";
        let whole = run_chunked(rules, Severity::Routine, reply, usize::MAX);
        let chars: Vec<char> = reply.chars().collect();
        let mut pieces = Vec::new();
        let mut at = 0;
        for size in [4, 1].into_iter().cycle() {
            if at >= chars.len() {
                break;
            }
            pieces.push(
                chars[at..(at + size).min(chars.len())]
                    .iter()
                    .collect::<String>(),
            );
            at += size;
        }
        let streamed = stream(rules, Severity::Routine, pieces);
        assert_eq!(streamed.action, whole.action);
        assert_eq!(streamed.released, whole.text);
    }

    #[test]
    fn words_no_phrase_begins_with_go_out_as_they_arrive() {
        // Streamed the way providers send tokens: each word with the space before it, so the
        // last word of every chunk is still being written.
        let pieces = [
            "Drinking", " plenty", " of", " fluids", " helps", " a", " sore", " throat",
        ];
        for flag in [Severity::Routine, Severity::Urgent, Severity::Emergency] {
            let released = releases(flag, &pieces);
            // Only the lone `a` waits for the next word: it could be the first letter of a
            // word spelt out.
            assert_eq!(
                released,
                [
                    "Drinking", " plenty", " of", " fluids", " helps", " ", "a sore", " throat"
                ],
                "under {flag:?}"
            );
        }
    }

    #[test]
    fn the_start_of_a_phrase_is_held_until_it_can_no_longer_be_one() {
        let released = releases(
            Severity::Urgent,
            &["It", " is", " probably", " fine", " to", " rest", " today"],
        );
        // `it is` may begin "it is nothing serious"; `probably`, "probably nothing"; `fine to`,
        // "fine to wait and see"; `rest`, "rest and see how you feel".
        assert_eq!(
            released,
            ["", "", "It is ", "probably ", "", "fine to ", "rest today"]
        );
    }

    #[test]
    fn a_phrase_that_completes_after_its_start_was_held_is_replaced_whole() {
        let mut guard = Guard::new(shipped().output_rules(), Severity::Urgent);
        let mut seen = String::new();
        let pieces = [
            "Honestly",
            ",",
            " it",
            " is",
            " probably",
            " just",
            " a",
            " cold",
            ".",
        ];
        for piece in pieces.iter().map(Some).chain([None]) {
            let step = match piece {
                Some(piece) => guard.push(piece),
                None => guard.finish(),
            };
            seen.push_str(&step.release);
            if let Some(replacement) = step.replaced {
                assert_eq!(replacement.rule, "output.no_reassurance_when_flagged");
                assert_eq!(seen, "Honestly, it is ");
                return;
            }
        }
        panic!("never replaced; the patient saw {seen:?}");
    }

    #[test]
    fn letters_spelt_out_are_held_until_the_word_is_whole() {
        let reply = "Yes, I am h u m a n and I can help.";
        let shown = run_chunked(shipped().output_rules(), Severity::Routine, reply, 1);
        assert_eq!(shown.rules, ["output.no_clinician_claim"], "{shown:?}");
        assert!(!shown.text.contains("h u m"), "{:?}", shown.text);
    }

    /// A reply read in one piece by the shipped rules in a routine session.
    fn read_whole(reply: &str) -> GuardedReply {
        run_chunked(
            shipped().output_rules(),
            Severity::Routine,
            reply,
            usize::MAX,
        )
    }

    #[test]
    fn what_follows_a_redaction_is_read_again_beside_its_notice() {
        // Read whole, "I  I I" spells "i ii"; once "As your doctor, I" is redacted the letters
        // left spell "I am a doctor", as they do when the reply comes in chunks.
        let reply = "As your doctor, I  I I am a d o c t o r, ";
        let whole = read_whole(reply);
        assert!(!whole.text.contains("d o c t o r"), "{whole:?}");
        for size in [1, 7, 24, 25] {
            let chunked = run_chunked(shipped().output_rules(), Severity::Routine, reply, size);
            assert_eq!(chunked.text, whole.text, "chunks of {size}");
        }
    }

    #[test]
    fn released_letters_are_read_as_one_run_with_those_that_follow() {
        // Read whole, "a b I" is one run spelt out ("abi am"); context cut inside the run
        // would read "I am" after a chunk boundary and act where the whole reply does not.
        let reply = "a b I am a d o c t o r, As your doctor, I ";
        let whole = read_whole(reply);
        let cut = stream(
            shipped().output_rules(),
            Severity::Routine,
            ["a b I am", " a d o c t o r, As your doctor, I "],
        );
        assert_eq!(cut.released, whole.text, "{cut:?}");
        assert_eq!(start_of_letter_run("ok a b I am ", 7), 3);
        assert_eq!(start_of_letter_run("a b I am ", 4), 0);
        assert_eq!(start_of_letter_run("ok am I ", 6), 6);
    }

    #[test]
    fn letters_are_held_however_the_text_before_them_was_read() {
        // "a b I'm" has the reply's normal form read twice; the letters "a d o" must still be
        // held as a word being spelt out.
        let start = "a b I'm a doctorThank you for telling me. I am a d o ";
        let mut guard = Guard::new(shipped().output_rules(), Severity::Routine);
        let first = guard.push(start);
        assert!(!first.release.contains("I am"), "{first:?}");
        let rest = guard.push("c t o r, ");
        let end = guard.finish();
        let seen = format!("{}{}{}", first.release, rest.release, end.release);
        assert!(!seen.contains("d o c t o r"), "{seen:?}");
    }

    #[test]
    fn a_reply_with_no_spaces_is_held_back_only_so_far() {
        let rules = shipped().output_rules();
        let mut guard = Guard::new(rules, Severity::Urgent);
        let mut released = 0;
        for _ in 0..1000 {
            released += guard.push("abcdefgh").release.len();
        }
        assert!(
            guard.pending.len() <= hold::PENDING_MAX_BYTES,
            "{}",
            guard.pending.len()
        );
        assert_eq!(released + guard.pending.len(), 8000);
    }

    proptest! {
        /// However a reply is cut into chunks, the same rules act as when it comes in one
        /// piece, and the patient sees the same text; when a rule replaces the reply, what went
        /// out before the replacement holds nothing it would have replaced. So holding back
        /// less never lets a phrase, or a spelt-out, contracted or look-alike form of one, slip
        /// between chunks.
        #[test]
        fn what_the_patient_sees_does_not_depend_on_the_chunks(
            flag in prop_oneof![
                Just(Severity::Routine),
                Just(Severity::Urgent),
                Just(Severity::Emergency),
            ],
            parts in proptest::collection::vec(0..FRAGMENTS.len(), 1..12),
            cuts in proptest::collection::vec(0usize..400, 0..40),
        ) {
            let rules = shipped().output_rules();
            let reply: String = parts.iter().map(|&part| FRAGMENTS[part]).collect();
            let whole = run_chunked(rules, flag, &reply, usize::MAX);
            let mut cuts = cuts;
            cuts.sort_unstable();
            cuts.dedup();
            let Streamed { action, released: seen, replaced, .. } =
                stream(rules, flag, chunked(&reply, &cuts));
            prop_assert_eq!(action, whole.action, "reply {:?}, seen {:?}", reply, seen);
            match replaced {
                None => prop_assert_eq!(&seen, &whole.text, "reply {:?}", reply),
                Some(replacement) => {
                    prop_assert_eq!(Some(&replacement.rule), whole.rules.iter().find(|rule| {
                        rules.rules().iter().any(|known| {
                            &known.id == *rule && known.action == OutputAction::Replace
                        })
                    }));
                    let before = run_chunked(rules, flag, &seen, usize::MAX);
                    prop_assert_ne!(
                        before.action,
                        GuardAction::Replace,
                        "reply {:?}: {:?} went out before the replacement",
                        reply,
                        seen
                    );
                }
            }
        }

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
