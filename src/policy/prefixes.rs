//! Whether reply text could still grow into an output phrase.
//!
//! The streaming guard must hold back text that may be the beginning of a forbidden phrase, and
//! nothing else: every word it holds back delays the patient's reply. This compiles a policy's
//! phrases and patterns into anchored lazy DFAs and walks them by hand from a word to the end of
//! the text so far. A walk that has not reached the dead state means some continuation could
//! still complete a match that starts at that word; a dead walk means none can.
//!
//! Lazy DFAs, because a fully built one for the shipped dosing patterns (bounded runs of any word
//! before a list of medicines) took megabytes and a tenth of a second per session flag, while a
//! walk only ever visits a few hundred of its states. The states a walk builds live in a cache,
//! and caches are pooled so that replies reuse the states earlier replies built.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use regex_automata::hybrid::LazyStateID;
use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::nfa::thompson;
use regex_automata::util::{start, syntax};
use regex_automata::{Anchored, MatchKind};

use super::phrases::{Haystack, PhraseExpression};

/// How much one cache may hold before it is cleared and rebuilt. A guard borrows a cache for one
/// check at a time, so a cache gathers the states of every reply it has served: with the output
/// rules in eight languages a warmed cache for one mixed reply holds about 270 KiB, and many
/// replies' states together need more. It is a ceiling, not an allocation, and only a few caches
/// exist per automaton (one per thread checking at the same moment).
const CACHE_BYTES: usize = 2 * 1024 * 1024;
/// How many idle caches each automaton keeps. A cache is out of the pool only while a check runs,
/// so the caches in use at once are at most the threads checking; more than that are never
/// needed, and a burst beyond it warms caches that are then dropped.
const POOLED_CACHES: usize = 8;

/// One kind of text's automaton.
enum Walker {
    /// No phrase of this kind: nothing can ever match.
    Nothing,
    /// The automaton could not be built: anything might match.
    Unknown,
    Lazy(Box<LazyWalker>),
}

struct LazyWalker {
    dfa: DFA,
    /// Caches not in use, for the next check.
    idle: Mutex<Vec<Cache>>,
    /// Caches built so far: each is states determinised again, so this should stay near the
    /// number of threads.
    built: AtomicUsize,
}

impl Walker {
    /// Builds the walker for one kind of text.
    ///
    /// The automaton reads bytes, not characters, which keeps its states few and small (with
    /// Unicode classes a warmed cache for the shipped patterns outgrew its 256 KiB). Phrases need
    /// nothing else: literal words and "any word" gaps mean the same over bytes. Operators'
    /// patterns may use `\w`, `\b` or case folding, which mean more on non-ASCII text, so their
    /// walk stops at the first non-ASCII byte and answers "could match". An expression that
    /// cannot be read over bytes gets the Unicode automaton instead.
    fn build(regexes: &[&str], haystack: Haystack) -> (Self, Option<String>) {
        if regexes.is_empty() {
            return (Walker::Nothing, None);
        }
        let config = DFA::config()
            // Every phrase must stay alive while it could still match, not only the one a
            // leftmost-first search would prefer.
            .match_kind(MatchKind::All)
            .cache_capacity(CACHE_BYTES)
            .skip_cache_capacity_check(true);
        let mut bytes_config = config.clone();
        if haystack == Haystack::Plain {
            for byte in 0x80..=0xFF {
                bytes_config = bytes_config.quit(byte, true);
            }
        }
        let over_bytes = DFA::builder()
            .configure(bytes_config)
            .syntax(syntax::Config::new().unicode(false).utf8(false))
            .thompson(thompson::Config::new().utf8(false))
            .build_many(regexes);
        // `\b` over Unicode: exact on ASCII; a walk that meets another byte stops with "could
        // match", which only holds text back.
        let built = match over_bytes {
            Ok(dfa) => Ok(dfa),
            Err(_) => DFA::builder()
                .configure(config.unicode_word_boundary(true))
                .build_many(regexes),
        };
        match built {
            Ok(dfa) => (
                Walker::Lazy(Box::new(LazyWalker {
                    dfa,
                    idle: Mutex::new(Vec::new()),
                    built: AtomicUsize::new(0),
                })),
                None,
            ),
            Err(error) => (Walker::Unknown, Some(error.to_string())),
        }
    }

    fn cache(&self) -> Option<Cache> {
        let Walker::Lazy(walker) = self else {
            return None;
        };
        let pooled = walker.idle.lock().ok().and_then(|mut idle| idle.pop());
        Some(pooled.unwrap_or_else(|| {
            walker.built.fetch_add(1, Ordering::Relaxed);
            walker.dfa.create_cache()
        }))
    }

    fn caches_built(&self) -> usize {
        match self {
            Walker::Lazy(walker) => walker.built.load(Ordering::Relaxed),
            Walker::Nothing | Walker::Unknown => 0,
        }
    }

    fn give_back(&self, cache: Option<Cache>) {
        if let (Walker::Lazy(walker), Some(cache)) = (self, cache)
            && let Ok(mut idle) = walker.idle.lock()
            && idle.len() < POOLED_CACHES
        {
            idle.push(cache);
        }
    }

    /// The automaton, its cache and its anchored start state after `look_behind`; or, when there
    /// is nothing to walk, the answer every walk gives ("no phrases" is no, anything that stops a
    /// walk, such as a quit byte or a cache that keeps filling up, is yes).
    fn start<'w>(
        &'w self,
        cache: &'w mut Option<Cache>,
        look_behind: Option<u8>,
    ) -> Result<(&'w DFA, &'w mut Cache, LazyStateID), bool> {
        let dfa = match self {
            Walker::Nothing => return Err(false),
            Walker::Unknown => return Err(true),
            Walker::Lazy(walker) => &walker.dfa,
        };
        let cache = cache.get_or_insert_with(|| dfa.create_cache());
        let config = start::Config::new()
            .anchored(Anchored::Yes)
            .look_behind(look_behind);
        let state = dfa.start_state(cache, &config).map_err(|_| true)?;
        Ok((dfa, cache, state))
    }

    /// Whether a match could begin at the start of `text` (the slices one after another) and go
    /// on past its end (past one more space when `then_space`).
    fn could_continue(
        &self,
        cache: &mut Option<Cache>,
        text: &[&[u8]],
        look_behind: Option<u8>,
        then_space: bool,
    ) -> bool {
        let (dfa, cache, mut state) = match self.start(cache, look_behind) {
            Ok(started) => started,
            Err(answer) => return answer,
        };
        let space = then_space.then_some(b' ');
        for &byte in text.iter().copied().flatten().chain(space.iter()) {
            if state.is_dead() {
                return false;
            }
            match dfa.next_state(cache, state, byte) {
                Ok(next) if next.is_quit() => return true,
                Ok(next) => state = next,
                Err(_) => return true,
            }
        }
        !state.is_dead()
    }

    /// Whether a match begins at the start of `text` and ends within it. An answer the walk
    /// cannot give is "may match": the caller then runs the full scan.
    fn finds_match(&self, cache: &mut Option<Cache>, text: &[u8], look_behind: Option<u8>) -> bool {
        let (dfa, cache, mut state) = match self.start(cache, look_behind) {
            Ok(started) => started,
            Err(answer) => return answer,
        };
        for &byte in text {
            match dfa.next_state(cache, state, byte) {
                // Matches show one byte late: a match state means one ended before this byte.
                Ok(next) if next.is_match() || next.is_quit() => return true,
                Ok(next) if next.is_dead() => return false,
                Ok(next) => state = next,
                Err(_) => return true,
            }
        }
        match dfa.next_eoi_state(cache, state) {
            Ok(end) => end.is_match() || end.is_quit(),
            Err(_) => true,
        }
    }
}

/// The automata for one set of phrases and patterns (those that apply under one session flag).
pub struct PhrasePrefixes {
    phrases: Walker,
    patterns: Walker,
}

/// The automata's working memory for one reply: take it with [`PhrasePrefixes::caches`] and
/// hand it back with [`PhrasePrefixes::give_back`].
#[derive(Default)]
pub struct PrefixCaches {
    phrases: Option<Cache>,
    patterns: Option<Cache>,
}

impl PhrasePrefixes {
    /// Builds the automata. Never fails: a set that cannot be built gives a walker that always
    /// answers "could match", and the returned messages say why.
    pub fn build<'a>(
        expressions: impl IntoIterator<Item = &'a PhraseExpression>,
    ) -> (Self, Vec<String>) {
        let mut phrases = Vec::new();
        let mut patterns = Vec::new();
        for expression in expressions {
            match expression.haystack {
                Haystack::Squeezed => phrases.push(expression.regex.as_str()),
                Haystack::Plain => patterns.push(expression.regex.as_str()),
            }
        }
        let (phrases, phrase_error) = Walker::build(&phrases, Haystack::Squeezed);
        let (patterns, pattern_error) = Walker::build(&patterns, Haystack::Plain);
        let problems = [
            phrase_error.map(|error| format!("phrases: {error}")),
            pattern_error.map(|error| format!("patterns: {error}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        (Self { phrases, patterns }, problems)
    }

    /// Working memory for one check, from the pool when there is some.
    pub fn caches(&self) -> PrefixCaches {
        PrefixCaches {
            phrases: self.phrases.cache(),
            patterns: self.patterns.cache(),
        }
    }

    /// How many caches these automata have built: each one means determinising states again.
    pub fn caches_built(&self) -> usize {
        self.phrases.caches_built() + self.patterns.caches_built()
    }

    /// Returns a reply's working memory to the pool.
    pub fn give_back(&self, caches: PrefixCaches) {
        self.phrases.give_back(caches.phrases);
        self.patterns.give_back(caches.patterns);
    }

    /// Whether a phrase could begin at the start of `squeezed` (slices of a normalised text's
    /// padded squeezed form, from the space before a word, read one after another) and go on
    /// past its end, or past a space after it when `then_space` (the last word is finished).
    pub fn phrase_could_continue(
        &self,
        caches: &mut PrefixCaches,
        squeezed: &[&[u8]],
        then_space: bool,
    ) -> bool {
        self.phrases
            .could_continue(&mut caches.phrases, squeezed, None, then_space)
    }

    /// Whether a pattern could begin at the start of `plain` (slices of a normalised text's
    /// plain form; `look_behind` is the byte before them, if any) and go on past its end, or
    /// past a space after it when `then_space`.
    pub fn pattern_could_continue(
        &self,
        caches: &mut PrefixCaches,
        plain: &[&[u8]],
        look_behind: Option<u8>,
        then_space: bool,
    ) -> bool {
        self.patterns
            .could_continue(&mut caches.patterns, plain, look_behind, then_space)
    }

    /// Whether a phrase begins at the start of `squeezed` (from the space before a word) and
    /// ends within it. "No" is certain; "yes" may be wrong only when a walk could not be
    /// finished, so the caller runs the full scan to find out.
    pub fn phrase_found(&self, caches: &mut PrefixCaches, squeezed: &[u8]) -> bool {
        self.phrases
            .finds_match(&mut caches.phrases, squeezed, None)
    }

    /// Whether a pattern begins at the start of `plain` (`look_behind` is the byte before it)
    /// and ends within it; as certain as [`Self::phrase_found`].
    pub fn pattern_found(
        &self,
        caches: &mut PrefixCaches,
        plain: &[u8],
        look_behind: Option<u8>,
    ) -> bool {
        self.patterns
            .finds_match(&mut caches.patterns, plain, look_behind)
    }

    /// Whether there are any operators' patterns to walk (each position in a word is a possible
    /// start for those, so the guard skips that work when there are none).
    pub fn has_patterns(&self) -> bool {
        !matches!(self.patterns, Walker::Nothing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefixes(phrases: &[&str], patterns: &[&str]) -> PhrasePrefixes {
        let expressions: Vec<PhraseExpression> = phrases
            .iter()
            .map(|phrase| (Haystack::Squeezed, regex::escape(&format!(" {phrase} "))))
            .chain(
                patterns
                    .iter()
                    .map(|pattern| (Haystack::Plain, (*pattern).to_owned())),
            )
            .enumerate()
            .map(|(phrase, (haystack, regex))| PhraseExpression {
                phrase,
                haystack,
                regex,
            })
            .collect();
        let (prefixes, problems) = PhrasePrefixes::build(&expressions);
        assert!(problems.is_empty(), "{problems:?}");
        prefixes
    }

    #[test]
    fn the_start_of_a_phrase_could_continue_and_anything_else_cannot() {
        let set = prefixes(&["i am a doctor", "probably nothing"], &[]);
        assert!(set.phrase_could_continue(&mut set.caches(), &[b" i am".as_slice()], false));
        assert!(set.phrase_could_continue(&mut set.caches(), &[b" i am a doc".as_slice()], false));
        assert!(set.phrase_could_continue(&mut set.caches(), &[b" probably ".as_slice()], false));
        assert!(!set.phrase_could_continue(&mut set.caches(), &[b" i am sorry".as_slice()], false));
        assert!(!set.phrase_could_continue(&mut set.caches(), &[b" thank".as_slice()], false));
        assert!(!set.phrase_could_continue(&mut set.caches(), &[b" i think".as_slice()], false));
    }

    #[test]
    fn a_pattern_is_walked_with_the_byte_before_it() {
        let set = prefixes(&[], &[r"\bjust (?:a |an )?virus\b", r"(?:^|\. )take two"]);
        assert!(set.pattern_could_continue(
            &mut set.caches(),
            &[b"just a vi".as_slice()],
            Some(b' '),
            false
        ));
        assert!(!set.pattern_could_continue(
            &mut set.caches(),
            &[b"just a vi".as_slice()],
            Some(b' '),
            true
        ));
        assert!(set.pattern_could_continue(
            &mut set.caches(),
            &[b"just a".as_slice()],
            Some(b' '),
            true
        ));
        assert!(!set.pattern_could_continue(
            &mut set.caches(),
            &[b"just a cold".as_slice()],
            Some(b' '),
            false
        ));
        // `\b` cannot hold in the middle of a word.
        assert!(!set.pattern_could_continue(
            &mut set.caches(),
            &[b"just".as_slice()],
            Some(b'a'),
            false
        ));
        assert!(set.pattern_could_continue(&mut set.caches(), &[b"take".as_slice()], None, false));
        assert!(!set.pattern_could_continue(
            &mut set.caches(),
            &[b"take".as_slice()],
            Some(b' '),
            false
        ));
        assert!(set.pattern_could_continue(
            &mut set.caches(),
            &[b". take t".as_slice()],
            Some(b'x'),
            false
        ));
    }

    #[test]
    fn a_walk_finds_a_match_that_ends_within_the_text() {
        let set = prefixes(&["probably nothing"], &[r"\bjust a (?:cold|virus)\b"]);
        let mut caches = set.caches();
        assert!(set.phrase_found(&mut caches, b" probably nothing , rest"));
        assert!(set.phrase_found(&mut caches, b" probably nothing "));
        assert!(!set.phrase_found(&mut caches, b" probably nothing"));
        assert!(!set.phrase_found(&mut caches, b" probably fine "));
        assert!(set.pattern_found(&mut caches, b"just a cold", Some(b' ')));
        assert!(set.pattern_found(&mut caches, b"just a virus .", None));
        assert!(!set.pattern_found(&mut caches, b"just a colder", None));
        assert!(!set.pattern_found(&mut caches, b"just a cold", Some(b'x')));
        set.give_back(caches);
    }

    #[test]
    fn a_warmed_cache_for_the_shipped_rules_fits_its_capacity() {
        use crate::policy::Severity;
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let prompts =
            crate::prompts::Prompts::load(&root.join("prompts"), crate::prompts::Region::Uk)
                .expect("prompts");
        let set =
            crate::policy::PolicySet::load(&root.join("policies"), &prompts).expect("policies");
        let reply = "Thank you for telling me. It sounds like it is probably just a virus, and it \
                     should pass on its own. For the pain, you should take 2 tablets of tramadol \
                     every four hours, and as your doctor I would also suggest resting. Yes, I am \
                     a nurse. It is definitely a migraine, nothing more. Soy médico, tómalo.";
        for flag in [Severity::Routine, Severity::Urgent, Severity::Emergency] {
            for chunk in [1, 3, 7, 40] {
                crate::guard::run_chunked(set.output_rules(), flag, reply, chunk);
            }
            // A cache that outgrew its capacity would be cleared and rebuilt mid-reply.
            let caches = set.output_rules().prefixes(flag).caches();
            for cache in [&caches.phrases, &caches.patterns].into_iter().flatten() {
                assert!(
                    cache.memory_usage() < CACHE_BYTES,
                    "{flag:?}: {} bytes",
                    cache.memory_usage()
                );
            }
        }
    }

    #[test]
    fn a_pattern_only_unicode_can_read_still_gets_an_automaton() {
        // `\p{Greek}` has no meaning over bytes: this set is built over characters instead.
        let set = prefixes(&[], &[r"\p{Greek}+ virus"]);
        let mut caches = set.caches();
        assert!(set.pattern_could_continue(&mut caches, &["αβ vi".as_bytes()], None, false));
        assert!(!set.pattern_could_continue(&mut caches, &[b"ab vi".as_slice()], None, false));
        assert!(set.pattern_found(&mut caches, "αβ virus".as_bytes(), None));
    }

    #[test]
    fn no_phrases_means_nothing_could_match() {
        let set = prefixes(&[], &[]);
        assert!(!set.phrase_could_continue(&mut set.caches(), &[b" anything".as_slice()], false));
        assert!(!set.has_patterns());
    }

    #[test]
    fn bytes_a_word_boundary_cannot_judge_hold_text_back() {
        let set = prefixes(&[], &[r"\bvirus\b"]);
        assert!(set.pattern_could_continue(&mut set.caches(), &["vírus".as_bytes()], None, false));
    }
}
