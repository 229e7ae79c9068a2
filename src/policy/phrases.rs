//! Compiles every phrase and pattern of a policy set into one scan: an aho-corasick automaton for
//! plain phrases and the words of phrases with gaps, and one for the literals operators' patterns
//! begin with. A message runs only the gapped phrases whose words are all in it and the patterns
//! one of whose beginnings is.

use std::collections::{HashMap, HashSet};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex_syntax::hir::literal::{ExtractKind, Extractor};

use super::normalize::{NormalizedText, Normalizer, TokenKind, spell_out_contracted_s};

/// Index of a phrase or pattern added to a [`PhraseSetBuilder`].
pub type PhraseId = usize;

/// A phrase or pattern found in a message, as a range of token indices (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub phrase: PhraseId,
    pub first: usize,
    pub last: usize,
}

/// Which form of normalised text an expression is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Haystack {
    /// Phrases: squeezed words, padded with a space on each side.
    Squeezed,
    /// Operators' patterns: plain words joined by single spaces.
    Plain,
}

/// A phrase or pattern as one regular expression.
#[derive(Debug, Clone)]
pub struct PhraseExpression {
    pub phrase: PhraseId,
    pub haystack: Haystack,
    pub regex: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PhraseError {
    #[error("phrase `{0}` has no words after normalisation")]
    Empty(String),
    #[error("pattern `{pattern}` is not a valid regular expression: {reason}")]
    BadPattern { pattern: String, reason: String },
    #[error("could not build the phrase automaton: {0}")]
    Automaton(String),
}

#[derive(Default)]
pub struct PhraseSetBuilder {
    literal_index: HashMap<String, usize>,
    literals: Vec<String>,
    literal_owners: Vec<Vec<PhraseId>>,
    /// Each phrase with gaps as the regular expression it stands for (what [`Self::expressions`]
    /// reports), and as the steps the scan walks over the message's tokens.
    gapped: Vec<(String, PhraseId)>,
    gapped_steps: Vec<Box<[Step]>>,
    /// The words each entry of `gapped` must contain, in order of `gapped`.
    gapped_words: Vec<Vec<String>>,
    /// Each pattern as written for the automaton, compiled once here and kept for the scan.
    patterns: Vec<(String, regex::bytes::Regex, PhraseId)>,
    next_id: PhraseId,
    /// Every word of every phrase, squeezed.
    words: HashSet<String>,
    /// Each word (squeezed) of the phrases added while `counting`: how many phrases use it, and
    /// how the first of them writes it.
    uses: HashMap<String, (u32, String)>,
    counting: bool,
    /// The written words of each phrase with gaps and of each pattern.
    fixed: HashMap<PhraseId, FixedWords>,
}

/// The words a phrase with gaps, or a pattern, spells out itself: a word of the message inside a
/// match that is not one of them stood in a gap ("lips are not going blue" for `lips ** going
/// blue`), so a negation there is the patient's, not the phrase's.
#[derive(Debug, Clone, Default)]
pub struct FixedWords {
    /// Sorted, without duplicates.
    words: Vec<String>,
    /// Compared with the plain text (patterns) rather than the squeezed one (phrases).
    plain: bool,
}

impl FixedWords {
    fn of_pattern(source: &str) -> Self {
        // Escapes (`\b`, `\S`, `\w`) are syntax, not words; what is left of letters is.
        let mut cleaned = String::with_capacity(source.len());
        let mut chars = source.chars();
        while let Some(ch) = chars.next() {
            if ch == '\\' {
                chars.next();
                cleaned.push(' ');
            } else {
                cleaned.push(ch);
            }
        }
        let mut words: Vec<String> = cleaned
            .split(|ch: char| !ch.is_ascii_alphanumeric())
            .filter(|word| !word.is_empty())
            .map(str::to_owned)
            .collect();
        words.sort_unstable();
        words.dedup();
        Self { words, plain: true }
    }

    /// Whether token `index` of `text` is one of the phrase's own words.
    pub fn holds(&self, text: &NormalizedText, index: usize) -> bool {
        let word = if self.plain {
            text.plain_of(index)
        } else {
            text.squeezed_of(index)
        };
        self.words
            .binary_search_by(|fixed| fixed.as_str().cmp(word))
            .is_ok()
    }
}

/// What one word of a phrase means.
enum PhrasePart {
    Words(Vec<String>),
    /// `*`: one word; `**`: up to three.
    Gap {
        most: usize,
    },
    Number,
    Year,
}

impl PhraseSetBuilder {
    /// Adds a phrase, normalised like messages are.
    ///
    /// # Errors
    /// A phrase with no words left after normalisation.
    pub fn phrase(&mut self, normalizer: &Normalizer, text: &str) -> Result<PhraseId, PhraseError> {
        let spelt_out = if normalizer.reads_whole_text() {
            spell_out_contracted_s(text)
        } else {
            text.to_owned()
        };
        let parts: Vec<PhrasePart> = spelt_out
            .split_whitespace()
            .map(|part| match part {
                "*" => PhrasePart::Gap { most: 1 },
                "**" => PhrasePart::Gap { most: 3 },
                "<number>" => PhrasePart::Number,
                "<year>" => PhrasePart::Year,
                other => {
                    let normalized = normalizer.normalize(other);
                    let words: Vec<(String, String)> = normalized
                        .tokens
                        .iter()
                        .enumerate()
                        .filter(|(_, token)| token.kind != TokenKind::SentenceEnd)
                        .map(|(index, _)| {
                            (
                                normalized.squeezed_of(index).to_owned(),
                                normalized.plain_of(index).to_owned(),
                            )
                        })
                        .collect();
                    PhrasePart::Words(
                        words
                            .into_iter()
                            .map(|(squeezed, plain)| {
                                if self.counting {
                                    let used =
                                        self.uses.entry(squeezed.clone()).or_insert((0, plain));
                                    used.0 += 1;
                                }
                                squeezed
                            })
                            .collect(),
                    )
                }
            })
            .collect();
        // A gap is no word: a phrase of gaps alone would match anywhere.
        let words: usize = parts
            .iter()
            .map(|part| match part {
                PhrasePart::Words(words) => words.len(),
                PhrasePart::Gap { .. } => 0,
                PhrasePart::Number | PhrasePart::Year => 1,
            })
            .sum();
        if words == 0 {
            return Err(PhraseError::Empty(text.to_owned()));
        }
        for part in &parts {
            if let PhrasePart::Words(words) = part {
                self.words.extend(words.iter().cloned());
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        if parts
            .iter()
            .all(|part| matches!(part, PhrasePart::Words(_)))
        {
            let joined: Vec<&str> = parts
                .iter()
                .flat_map(|part| match part {
                    PhrasePart::Words(words) => words.iter().map(String::as_str).collect(),
                    _ => Vec::new(),
                })
                .collect();
            let literal = format!(" {} ", joined.join(" "));
            let slot = match self.literal_index.get(&literal) {
                Some(&slot) => slot,
                None => {
                    self.literals.push(literal.clone());
                    self.literal_owners.push(Vec::new());
                    self.literal_index.insert(literal, self.literals.len() - 1);
                    self.literals.len() - 1
                }
            };
            self.literal_owners[slot].push(id);
        } else {
            let mut regex = String::from(" ");
            for part in &parts {
                match part {
                    PhrasePart::Words(words) => {
                        for word in words {
                            regex.push_str(&regex::escape(word));
                            regex.push(' ');
                        }
                    }
                    // Any word, number or comma, but never across a sentence end. Bytes, not
                    // characters: a gap starts after a space and ends at one, so it never splits
                    // a character.
                    PhrasePart::Gap { most } => {
                        regex.push_str(&format!("(?-u:(?:[^ .][^ ]* |[0-9][^ ]* ){{0,{most}}})"));
                    }
                    PhrasePart::Number => regex.push_str(r"[0-9]+(?:\.[0-9]+)? "),
                    PhrasePart::Year => regex.push_str(r"(?:19|20)[0-9]{2} "),
                }
            }
            let mut words: Vec<String> = parts
                .iter()
                .flat_map(|part| match part {
                    PhrasePart::Words(words) => words.clone(),
                    _ => Vec::new(),
                })
                .collect();
            words.sort_unstable();
            words.dedup();
            self.fixed.insert(
                id,
                FixedWords {
                    words: words.clone(),
                    plain: false,
                },
            );
            let steps = parts
                .iter()
                .flat_map(|part| match part {
                    PhrasePart::Words(words) => words
                        .iter()
                        .map(|word| Step::Word(word.as_str().into()))
                        .collect(),
                    PhrasePart::Gap { most } => vec![Step::Gap(*most)],
                    PhrasePart::Number => vec![Step::Number],
                    PhrasePart::Year => vec![Step::Year],
                })
                .collect();
            self.gapped.push((regex, id));
            self.gapped_steps.push(steps);
            self.gapped_words.push(words);
        }
        Ok(id)
    }

    /// Adds an operator's regular expression, run on the plain normalised text.
    ///
    /// # Errors
    /// An invalid regular expression.
    pub fn pattern(&mut self, pattern: &str) -> Result<PhraseId, PhraseError> {
        let pattern = byte_level_escapes(pattern);
        let compiled = compile_bytes(&pattern)?;
        let id = self.next_id;
        self.next_id += 1;
        self.fixed.insert(id, FixedWords::of_pattern(&pattern));
        self.patterns.push((pattern, compiled, id));
        Ok(id)
    }

    /// Every phrase and pattern added so far, as a regular expression over the text it is matched
    /// against: what an automaton needs to tell whether a text could still grow into a match.
    pub fn expressions(&self) -> Vec<PhraseExpression> {
        let literals =
            self.literals
                .iter()
                .zip(&self.literal_owners)
                .flat_map(|(literal, owners)| {
                    owners.iter().map(|&phrase| PhraseExpression {
                        phrase,
                        haystack: Haystack::Squeezed,
                        regex: regex::escape(literal),
                    })
                });
        let gapped = self.gapped.iter().map(|(regex, phrase)| PhraseExpression {
            phrase: *phrase,
            haystack: Haystack::Squeezed,
            regex: regex.clone(),
        });
        let patterns = self
            .patterns
            .iter()
            .map(|(regex, _, phrase)| PhraseExpression {
                phrase: *phrase,
                haystack: Haystack::Plain,
                regex: regex.clone(),
            });
        literals.chain(gapped).chain(patterns).collect()
    }

    /// Every word the phrases added so far are written in, squeezed.
    pub fn words(&self) -> impl Iterator<Item = &str> {
        self.words.iter().map(String::as_str)
    }

    /// Whether the words of the phrases added from now on are counted in [`Self::word_uses`].
    pub fn count_uses(&mut self, counting: bool) {
        self.counting = counting;
    }

    /// Every word of the phrases added while counting (squeezed), with the number of uses (a
    /// word written twice in one phrase counts twice) and its first written form.
    pub fn word_uses(&self) -> impl Iterator<Item = (&str, u32, &str)> {
        self.uses
            .iter()
            .map(|(word, (uses, written))| (word.as_str(), *uses, written.as_str()))
    }

    /// # Errors
    /// The automaton or a regex set could not be built (size limits).
    pub fn build(self) -> Result<PhraseSet, PhraseError> {
        let ids = self.gapped.iter().map(|(_, id)| *id);
        let (gapped, gapped_words) =
            GappedPhrases::build(ids.zip(self.gapped_steps).collect(), &self.gapped_words);
        // One automaton finds both the plain phrases and the gapped phrases' words: entries
        // `0..literals` are the phrases, the rest the words no phrase already spells alone.
        let mut entries = self.literals;
        let mut literal_words = vec![None; entries.len()];
        for (word, padded) in gapped_words.into_iter().enumerate() {
            match self.literal_index.get(&padded) {
                Some(&slot) => literal_words[slot] = Some(word),
                None => {
                    entries.push(padded);
                    literal_words.push(Some(word));
                }
            }
        }
        let automaton = AhoCorasickBuilder::new()
            .match_kind(MatchKind::Standard)
            .build(&entries)
            .map_err(|error| PhraseError::Automaton(error.to_string()))?;
        let patterns = Patterns::build(self.patterns)?;
        Ok(PhraseSet {
            automaton,
            literal_owners: self.literal_owners,
            literal_words,
            gapped,
            patterns,
            phrase_count: self.next_id,
            fixed: self.fixed,
        })
    }
}

/// An operator's pattern as it is compiled: its class escapes outside brackets read bytes.
///
/// - `\b` and `\B` are ASCII word boundaries. A Unicode word boundary cannot be decided by the
///   lazy DFA once the text holds a non-ASCII character (an emoji, `°`), so the whole set fell
///   back to a search about fifteen times slower for such a message. The normalised text is
///   ASCII wherever a pattern's words are (accents stripped, look-alikes folded), so the ASCII
///   boundary reads the same.
/// - `\w` is an ASCII word byte or any byte of a non-ASCII character, `\S` and `\s` the ASCII
///   spaces' complement and the spaces. The normaliser leaves only ASCII spaces, and a pattern
///   runs them over whole words, so they match what the Unicode classes match; but the Unicode
///   classes compile to hundreds of UTF-8 states each, and with 680 patterns that was about 55 MB
///   of every loaded set (twice that while a reload compiles the next one beside it).
///
/// Inside brackets (`[\w']`) an escape is left as written: a bracket of bytes cannot hold a
/// character.
///
/// A pattern that holds a letter of a script the normaliser keeps (Cyrillic, Greek, Arabic,
/// Devanagari, Han, Hangul…) keeps Unicode `\b` and `\B`: the ASCII edge never falls between
/// `сахар` and a space, so `\bсахар\b` would silently never match. Such a pattern runs only on
/// messages that hold its literals, so the slower search a Unicode edge needs is rare.
fn byte_level_escapes(pattern: &str) -> String {
    let unicode_edges = pattern.chars().any(is_kept_script);
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars().peekable();
    let mut bracket_depth = 0usize;
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => {
                let Some(escaped) = chars.next() else {
                    out.push('\\');
                    break;
                };
                let bytes = match escaped {
                    'b' if unicode_edges => Some(r"\b"),
                    'B' if unicode_edges => Some(r"\B"),
                    'b' => Some(r"(?-u:\b)"),
                    'B' => Some(r"(?-u:\B)"),
                    'w' => Some(r"(?-u:[0-9A-Za-z_\x80-\xFF])"),
                    'W' => Some(r"(?-u:[^0-9A-Za-z_\x80-\xFF])"),
                    'S' => Some(r"(?-u:\S)"),
                    's' => Some(r"(?-u:\s)"),
                    _ => None,
                };
                match bytes {
                    Some(bytes) if bracket_depth == 0 => out.push_str(bytes),
                    _ => {
                        out.push('\\');
                        out.push(escaped);
                    }
                }
            }
            '[' => {
                bracket_depth += 1;
                out.push('[');
                // `[^]...]` and `[]...]` begin with a literal `]`.
                if bracket_depth == 1 {
                    if chars.peek() == Some(&'^') {
                        out.push('^');
                        chars.next();
                    }
                    if chars.peek() == Some(&']') {
                        out.push(']');
                        chars.next();
                    }
                }
            }
            ']' if bracket_depth > 0 => {
                bracket_depth -= 1;
                out.push(']');
            }
            _ => out.push(ch),
        }
    }
    out
}

/// A letter the normaliser leaves as it is: everything from Greek on. Latin letters with marks
/// (`é`, `ł`) are folded to ASCII before a pattern runs.
fn is_kept_script(ch: char) -> bool {
    ch >= '\u{0370}' && ch.is_alphabetic()
}

/// Operators' patterns, run only on messages that hold a literal every match of theirs begins
/// with and one every match ends with.
///
/// They were regex sets run over every message. Patterns with bounded runs of any word make a
/// set's lazy DFA meet new states in nearly every new message, so a message the server had not
/// seen cost about 0.9 million instructions, nine tenths of it building DFA states. The literals
/// a pattern's matches must begin with (`i took`, `we swallowed`, ...) are read from its syntax;
/// one automaton pass over the message finds which patterns can match at all. Beginnings alone
/// let through every pattern that begins with a common word (`i`, `he`, `hat`) or with any
/// word at all, and each pattern run is a search whose tables a busy server has pushed out of
/// the CPU's caches by the next message (several microseconds each): so the literals every
/// match ends with (`pills`, `missing`, ...) are read and looked for in the same pass too. A
/// pattern is run when each side it has literals for was found; one with neither is run on
/// every message.
struct Patterns {
    /// Every pattern's possible beginnings and endings.
    literals: AhoCorasick,
    /// For each entry of `literals`, the patterns it begins or ends (as [`Side`] bits).
    stands_for: Vec<Vec<(usize, u8)>>,
    /// For each pattern, the sides (bits) that must be found before it is run.
    needs: Vec<u8>,
    /// Patterns whose matches could begin and end with anything.
    always: Vec<usize>,
    each: Vec<(regex::bytes::Regex, PhraseId)>,
}

/// The side of a match a literal stands at, as a bit of [`Patterns::needs`].
#[derive(Debug, Clone, Copy)]
enum Side {
    Beginning = 1,
    End = 2,
}

impl Patterns {
    fn build(list: Vec<(String, regex::bytes::Regex, PhraseId)>) -> Result<Self, PhraseError> {
        let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut literals: Vec<Vec<u8>> = Vec::new();
        let mut stands_for: Vec<Vec<(usize, u8)>> = Vec::new();
        let mut needs = Vec::with_capacity(list.len());
        let mut always = Vec::new();
        let mut each = Vec::with_capacity(list.len());
        for (pattern, (source, compiled, id)) in list.into_iter().enumerate() {
            each.push((compiled, id));
            let mut needed = 0;
            for side in [Side::Beginning, Side::End] {
                let Some(found) = match_literals(&source, side) else {
                    continue;
                };
                needed |= side as u8;
                for literal in found {
                    let slot = *index.entry(literal.clone()).or_insert_with(|| {
                        literals.push(literal);
                        stands_for.push(Vec::new());
                        literals.len() - 1
                    });
                    match stands_for[slot]
                        .iter_mut()
                        .find(|(owner, _)| *owner == pattern)
                    {
                        Some((_, sides)) => *sides |= side as u8,
                        None => stands_for[slot].push((pattern, side as u8)),
                    }
                }
            }
            if needed == 0 {
                always.push(pattern);
            }
            needs.push(needed);
        }
        let literals = AhoCorasickBuilder::new()
            .match_kind(MatchKind::Standard)
            .build(&literals)
            .map_err(|error| PhraseError::Automaton(error.to_string()))?;
        Ok(Self {
            literals,
            stands_for,
            needs,
            always,
            each,
        })
    }

    /// The patterns that can match `plain`, in the order they were added.
    fn candidates(&self, plain: &str) -> Vec<usize> {
        let mut found: Vec<(usize, u8)> = Vec::new();
        for literal in self.literals.find_overlapping_iter(plain) {
            if let Some(owners) = self.stands_for.get(literal.pattern().as_usize()) {
                found.extend_from_slice(owners);
            }
        }
        found.sort_unstable_by_key(|&(pattern, _)| pattern);
        let mut candidates = self.always.clone();
        for group in found.chunk_by(|a, b| a.0 == b.0) {
            let pattern = group[0].0;
            let sides = group.iter().fold(0, |sides, &(_, side)| sides | side);
            if self
                .needs
                .get(pattern)
                .is_some_and(|&needed| sides & needed == needed)
            {
                candidates.push(pattern);
            }
        }
        candidates.sort_unstable();
        candidates
    }

    fn scan(&self, text: &NormalizedText, hits: &mut Vec<Hit>) {
        for index in self.candidates(&text.plain) {
            let Some((regex, phrase)) = self.each.get(index) else {
                continue;
            };
            for found in regex.find_iter(text.plain.as_bytes()) {
                if let Some((first, last)) = text.token_range(found.start(), found.end(), false) {
                    hits.push(Hit {
                        phrase: *phrase,
                        first,
                        last,
                    });
                }
            }
        }
    }
}

/// An operator's pattern, matched on the bytes of the plain text (see [`byte_level_escapes`]).
fn compile_bytes(source: &str) -> Result<regex::bytes::Regex, PhraseError> {
    regex::bytes::Regex::new(source).map_err(|error| PhraseError::BadPattern {
        pattern: source.to_owned(),
        reason: error.to_string(),
    })
}

/// Literals one of which every match of `pattern` begins (or ends) with, or `None` when a match
/// could begin (or end) with anything (or the literals are too many to be worth it, or the
/// pattern can match the empty string there).
fn match_literals(pattern: &str, side: Side) -> Option<Vec<Vec<u8>>> {
    let hir = regex_syntax::ParserBuilder::new()
        .utf8(false)
        .build()
        .parse(pattern)
        .ok()?;
    let kind = match side {
        Side::Beginning => ExtractKind::Prefix,
        Side::End => ExtractKind::Suffix,
    };
    let seq = Extractor::new().kind(kind).extract(&hir);
    let literals = seq.literals()?;
    if literals.is_empty() || literals.iter().any(|literal| literal.as_bytes().is_empty()) {
        return None;
    }
    // A literal that holds a shorter one at the same side is found wherever it is: the shorter
    // one is enough.
    let mut kept: Vec<Vec<u8>> = Vec::new();
    let mut by_length: Vec<&[u8]> = literals.iter().map(|literal| literal.as_bytes()).collect();
    by_length.sort_by_key(|literal| literal.len());
    for literal in by_length {
        let covered = kept.iter().any(|shorter| match side {
            Side::Beginning => literal.starts_with(shorter),
            Side::End => literal.ends_with(shorter),
        });
        if !covered {
            kept.push(literal.to_vec());
        }
    }
    Some(kept)
}

/// Phrases with gaps, numbers or years, run only on messages that hold every word they name.
///
/// They used to be regex sets of 128, all of them run over every message: with 3,254 such
/// phrases that was 26 sets, most of the scan's time, and each set's lazy DFA is a table
/// that a busy server has pushed out of the CPU's caches by the next message. A gapped phrase
/// matches only where each of its words stands whole in the squeezed text (` word `), so one
/// pass of an automaton over those words tells which phrases can match at all, and only those
/// few are run. A phrase whose words are all gaps and numbers is run on every message.
///
/// A candidate is then walked over the message's tokens ([`match_steps`]) rather than run as a
/// compiled regular expression: with about 10,000 such phrases in over thirty languages, one
/// compiled expression each took about 130 MB of a loaded set (twice that while a reload
/// compiles the next set) and 0.6 s of its loading. The walk finds what the
/// expression finds, as a property test checks against the expressions themselves.
struct GappedPhrases {
    /// For each word of a gapped phrase (numbered as the set's automaton reports them), the phrases it was chosen to key: the phrase's word that the fewest
    /// phrases share, so that a common word does not wake hundreds of phrases.
    keyed_by: Vec<Vec<usize>>,
    /// For each phrase, its words other than the key.
    also_needs: Vec<Vec<usize>>,
    /// Phrases with no word of their own.
    always: Vec<usize>,
    each: Vec<(PhraseId, Box<[Step]>)>,
}

/// One step of a phrase with gaps, matched against one token or, for a gap, a few.
#[derive(Debug, Clone)]
enum Step {
    /// This word (squeezed), whole.
    Word(Box<str>),
    /// Up to this many tokens, none of them a sentence end.
    Gap(usize),
    /// A number, decimals allowed.
    Number,
    /// A year from 1900 to 2099.
    Year,
}

impl Step {
    fn is_number(token: &str) -> bool {
        let (whole, decimals) = token.split_once('.').unwrap_or((token, "1"));
        !whole.is_empty()
            && !decimals.is_empty()
            && whole
                .bytes()
                .chain(decimals.bytes())
                .all(|byte| byte.is_ascii_digit())
    }

    fn is_year(token: &str) -> bool {
        token.len() == 4
            && (token.starts_with("19") || token.starts_with("20"))
            && token.bytes().all(|byte| byte.is_ascii_digit())
    }

    /// Any token a gap may stand over: anything but a sentence end.
    fn may_skip(token: &str) -> bool {
        !token.is_empty() && !token.starts_with('.')
    }
}

/// Where a match of `steps` beginning at token `at` ends (the token after its last), preferring
/// the longest gaps from the first on: the match the phrase's regular expression finds there.
fn match_steps(steps: &[Step], tokens: &[&str], at: usize) -> Option<usize> {
    let Some((step, rest)) = steps.split_first() else {
        return Some(at);
    };
    match step {
        Step::Word(word) => (*tokens.get(at)? == &**word)
            .then(|| match_steps(rest, tokens, at + 1))
            .flatten(),
        Step::Number => Step::is_number(tokens.get(at)?)
            .then(|| match_steps(rest, tokens, at + 1))
            .flatten(),
        Step::Year => Step::is_year(tokens.get(at)?)
            .then(|| match_steps(rest, tokens, at + 1))
            .flatten(),
        Step::Gap(most) => {
            let room = tokens
                .iter()
                .skip(at)
                .take(*most)
                .take_while(|token| Step::may_skip(token))
                .count();
            (0..=room)
                .rev()
                .find_map(|skipped| match_steps(rest, tokens, at + skipped))
        }
    }
}

impl GappedPhrases {
    /// Also returns every word of every gapped phrase, padded with spaces as it stands in the
    /// squeezed text, for the set's one automaton to find.
    fn build(each: Vec<(PhraseId, Box<[Step]>)>, words_of: &[Vec<String>]) -> (Self, Vec<String>) {
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut padded: Vec<String> = Vec::new();
        let ids: Vec<Vec<usize>> = words_of
            .iter()
            .map(|words| {
                words
                    .iter()
                    .map(|word| {
                        *index.entry(word.as_str()).or_insert_with(|| {
                            padded.push(format!(" {word} "));
                            padded.len() - 1
                        })
                    })
                    .collect()
            })
            .collect();
        let mut shared_by = vec![0usize; padded.len()];
        for &word in ids.iter().flatten() {
            shared_by[word] += 1;
        }
        let mut keyed_by = vec![Vec::new(); padded.len()];
        let mut also_needs = Vec::with_capacity(ids.len());
        let mut always = Vec::new();
        for (phrase, words) in ids.iter().enumerate() {
            match words.iter().min_by_key(|&&word| shared_by[word]) {
                Some(&key) => {
                    keyed_by[key].push(phrase);
                    also_needs.push(words.iter().copied().filter(|&w| w != key).collect());
                }
                None => {
                    always.push(phrase);
                    also_needs.push(Vec::new());
                }
            }
        }
        let gapped = Self {
            keyed_by,
            also_needs,
            always,
            each,
        };
        (gapped, padded)
    }

    /// The phrases whose words are all among `found` (word indices, sorted, each once), in the
    /// order they were added.
    fn candidates(&self, found: &[usize]) -> Vec<usize> {
        let has = |word: &usize| found.binary_search(word).is_ok();
        let mut candidates = self.always.clone();
        for &word in found {
            for &phrase in self.keyed_by.get(word).into_iter().flatten() {
                if self
                    .also_needs
                    .get(phrase)
                    .is_some_and(|needs| needs.iter().all(has))
                {
                    candidates.push(phrase);
                }
            }
        }
        candidates.sort_unstable();
        candidates
    }

    /// Finds the candidates as their regular expressions would in the squeezed text: at the
    /// leftmost token each can begin at, then again after the match. The expression's trailing
    /// space is the next token's leading one, so a match never begins at the token right after
    /// the previous match.
    fn scan(&self, text: &NormalizedText, found: &[usize], hits: &mut Vec<Hit>) {
        let candidates = self.candidates(found);
        if candidates.is_empty() {
            return;
        }
        let tokens: Vec<&str> = (0..text.tokens.len())
            .map(|index| text.squeezed_of(index))
            .collect();
        for index in candidates {
            let Some((phrase, steps)) = self.each.get(index) else {
                continue;
            };
            let mut from = 0;
            while let Some((first, end)) = (from..tokens.len())
                .find_map(|start| match_steps(steps, &tokens, start).map(|end| (start, end)))
            {
                // Every phrase holds a word or a number, so a match covers a token at least.
                if end > first {
                    hits.push(Hit {
                        phrase: *phrase,
                        first,
                        last: end - 1,
                    });
                }
                from = end.max(first) + 1;
            }
        }
    }
}

/// The compiled scan.
pub struct PhraseSet {
    /// Plain phrases, then gapped phrases' words (see [`PhraseSetBuilder::build`]).
    automaton: AhoCorasick,
    literal_owners: Vec<Vec<PhraseId>>,
    /// For each entry of the automaton, the gapped phrases' word it is, if any.
    literal_words: Vec<Option<usize>>,
    gapped: GappedPhrases,
    patterns: Patterns,
    phrase_count: usize,
    fixed: HashMap<PhraseId, FixedWords>,
}

impl PhraseSet {
    pub fn phrase_count(&self) -> usize {
        self.phrase_count
    }

    /// The words a phrase with gaps or a pattern spells out; `None` for a phrase without gaps,
    /// whose every word is its own.
    pub fn fixed_words(&self, phrase: PhraseId) -> Option<&FixedWords> {
        self.fixed.get(&phrase)
    }

    /// Every phrase and pattern occurrence in the text, overlapping ones included.
    pub fn scan(&self, text: &NormalizedText) -> Vec<Hit> {
        let mut hits = Vec::new();
        // A message holds a few dozen words at most: a short sorted list, not a flag per word of
        // every gapped phrase (thousands, zeroed and touched in every scan).
        let mut words_found = Vec::new();
        for found in self.automaton.find_overlapping_iter(&text.squeezed) {
            let entry = found.pattern().as_usize();
            if let Some(&Some(word)) = self.literal_words.get(entry) {
                words_found.push(word);
            }
            let Some(owners) = self.literal_owners.get(entry) else {
                continue;
            };
            let Some((first, last)) = text.token_range(found.start() + 1, found.end() - 1, true)
            else {
                continue;
            };
            for &phrase in owners {
                hits.push(Hit {
                    phrase,
                    first,
                    last,
                });
            }
        }
        words_found.sort_unstable();
        words_found.dedup();
        self.gapped.scan(text, &words_found, &mut hits);
        self.patterns.scan(text, &mut hits);
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(phrases: &[&str], text: &str) -> Vec<(PhraseId, usize, usize)> {
        let normalizer = Normalizer::default();
        let mut builder = PhraseSetBuilder::default();
        for phrase in phrases {
            builder.phrase(&normalizer, phrase).expect("phrase");
        }
        let set = builder.build().expect("build");
        let mut hits: Vec<_> = set
            .scan(&normalizer.normalize(text))
            .into_iter()
            .map(|hit| (hit.phrase, hit.first, hit.last))
            .collect();
        hits.sort_unstable();
        hits
    }

    #[test]
    fn gapped_phrases_past_the_first_regex_set_are_found_as_themselves() {
        let words: Vec<String> = (0..261)
            .map(|number| {
                format!(
                    "word{} * pain",
                    "x".repeat(number % 7 + 1) + &number.to_string()
                )
            })
            .collect();
        let last = words.last().cloned().unwrap_or_default();
        let phrases: Vec<&str> = words.iter().map(String::as_str).collect();
        let text = format!("{} bad pain", last.trim_end_matches(" * pain"));
        // "wordxxxx260" reads as a word and a number: the phrase spans four tokens.
        assert_eq!(found(&phrases, &text), [(phrases.len() - 1, 0, 3)]);
    }

    #[test]
    fn pattern_word_boundaries_are_ascii_and_escapes_survive() {
        assert_eq!(byte_level_escapes(r"\bchest\B"), r"(?-u:\b)chest(?-u:\B)");
        assert_eq!(byte_level_escapes(r"a\\b\d"), r"a\\b\d");
        let normalizer = Normalizer::default();
        let mut builder = PhraseSetBuilder::default();
        builder
            .pattern(r"\bchest (?:\S+ ){0,2}pain\b")
            .expect("pattern");
        let set = builder.build().expect("build");
        let text = normalizer.normalize("😷 38.5°C and chest really pain 😷");
        assert_eq!(
            set.scan(&text).len(),
            1,
            "found beside non-ASCII characters"
        );
    }

    #[test]
    fn a_word_in_another_script_has_word_edges() {
        assert_eq!(byte_level_escapes(r"\bсахар\b"), r"\bсахар\b");
        assert_eq!(byte_level_escapes(r"\bcukr\b"), r"(?-u:\b)cukr(?-u:\b)");
        let normalizer = Normalizer::default();
        let mut builder = PhraseSetBuilder::default();
        builder
            .pattern(r"\b(?:сахар|血 糖|sugar)\b(?: \S+){0,2} 2\.\d\b")
            .expect("pattern");
        let set = builder.build().expect("build");
        for text in [
            "у меня сахар 2.1",
            "血糖 2.4 了",
            "my sugar is 2.2",
            "Сахар: 2.3!",
        ] {
            assert_eq!(set.scan(&normalizer.normalize(text)).len(), 1, "{text}");
        }
        // An edge is still an edge: a longer word does not match.
        let text = normalizer.normalize("сахарный 2.1");
        assert!(set.scan(&text).is_empty());
    }

    #[test]
    fn byte_level_escapes_match_what_the_unicode_classes_match_in_normalised_text() {
        // Brackets keep their escapes; an escaped bracket is no bracket.
        assert_eq!(
            byte_level_escapes(r"[\w']+ \w"),
            r"[\w']+ (?-u:[0-9A-Za-z_\x80-\xFF])"
        );
        assert_eq!(byte_level_escapes(r"\[\S"), r"\[(?-u:\S)");
        assert_eq!(byte_level_escapes(r"[^]\s] \s"), r"[^]\s] (?-u:\s)");
        let normalizer = Normalizer::default();
        let patterns = [
            r"\bchest (?:\S+ ){0,3}pain\b",
            r"\b(?:\w+ ){0,2}blue\b",
            r"\bno (?:\w+\W+){0,2}fever",
            r"\w+ \w+$",
            r"^\S+\s\S+",
        ];
        let texts = [
            "Chest, épaule et bras: pain 😢 très forte",
            "chest дуже pain",
            "lips 嘴唇 blue and the baby's face blue",
            "no значит fever, no fever at all",
            "temp 38°C and a sore throat",
        ];
        for pattern in patterns {
            // What was compiled before: Unicode classes, ASCII word boundaries.
            let ascii_boundaries = pattern.replace(r"\b", r"(?-u:\b)");
            let unicode = regex::Regex::new(&ascii_boundaries).expect("unicode pattern");
            let bytes = regex::bytes::Regex::new(&byte_level_escapes(pattern)).expect("bytes");
            for text in texts {
                let normalized = normalizer.normalize(text);
                let expected: Vec<(usize, usize)> = unicode
                    .find_iter(&normalized.plain)
                    .map(|found| (found.start(), found.end()))
                    .collect();
                let actual: Vec<(usize, usize)> = bytes
                    .find_iter(normalized.plain.as_bytes())
                    .map(|found| (found.start(), found.end()))
                    .collect();
                assert_eq!(actual, expected, "{pattern} on {:?}", normalized.plain);
            }
        }
    }

    #[test]
    fn phrases_match_whole_words_only() {
        assert_eq!(found(&["pain"], "painful paint pain"), vec![(0, 2, 2)]);
    }

    #[test]
    fn overlapping_phrases_are_all_found() {
        assert_eq!(
            found(&["chest pain", "pain"], "bad chest pain"),
            vec![(0, 1, 2), (1, 2, 2)]
        );
    }

    #[test]
    fn gaps_span_a_few_words_but_not_sentences() {
        assert_eq!(
            found(&["pain ** chest"], "pain in my chest"),
            vec![(0, 0, 3)]
        );
        assert_eq!(found(&["pain ** chest"], "pain. chest"), vec![]);
        assert_eq!(
            found(&["pain ** chest"], "pain one two three four chest"),
            vec![]
        );
    }

    #[test]
    fn a_phrase_of_only_numbers_and_gaps_is_run_on_every_message() {
        assert_eq!(found(&["<number> *"], "about 40 of them"), vec![(0, 1, 2)]);
    }

    #[test]
    fn a_gapped_phrase_needs_every_one_of_its_words() {
        let phrases = ["pain ** chest", "pain * arm", "arm ** numb"];
        assert_eq!(found(&phrases, "pain in my arm"), vec![]);
        assert_eq!(found(&phrases, "pain in arm"), vec![(1, 0, 2)]);
        assert_eq!(
            found(&phrases, "arm is numb and pain in chest"),
            vec![(0, 4, 6), (2, 0, 2)]
        );
    }

    proptest::proptest! {
        /// Running only the gapped phrases whose words are all in the message, by walking their
        /// steps over its tokens, finds exactly what their regular expressions find when every
        /// one of them is run.
        #[test]
        fn choosing_gapped_phrases_by_their_words_never_loses_a_match(
            phrases in proptest::collection::vec(
                proptest::collection::vec(0usize..10, 1..5), 1..12),
            text in proptest::collection::vec(0usize..11, 0..14),
        ) {
            const PARTS: [&str; 10] =
                ["pain", "chest", "arm", "*", "**", "<number>", "my", "in", ".", "<year>"];
            const WORDS: [&str; 11] =
                ["pain", "chest", "arm", "my", "in", "12", ".", "bad", "pain,", "2019", "38.5"];
            let phrases: Vec<String> = phrases
                .iter()
                .map(|parts| parts.iter().map(|&part| PARTS[part]).collect::<Vec<_>>().join(" "))
                .collect();
            let text: Vec<&str> = text.iter().map(|&word| WORDS[word]).collect();
            let text = text.join(" ");
            let normalizer = Normalizer::default();
            let mut builder = PhraseSetBuilder::default();
            // Phrases without gaps go to the other automaton; only gapped ones are compared.
            let mut gapped = Vec::new();
            for phrase in &phrases {
                if let Ok(id) = builder.phrase(&normalizer, phrase)
                    && (phrase.contains('*') || phrase.contains('<'))
                {
                    gapped.push(id);
                }
            }
            let mut expected = Vec::new();
            let normalized = normalizer.normalize(&text);
            for expression in builder.expressions() {
                if !gapped.contains(&expression.phrase) {
                    continue;
                }
                let regex = regex::bytes::Regex::new(&expression.regex).expect("regex");
                for found in regex.find_iter(normalized.squeezed.as_bytes()) {
                    let range = normalized.token_range(
                        found.start() + 1,
                        found.end().saturating_sub(1),
                        true,
                    );
                    if let Some((first, last)) = range {
                        expected.push((expression.phrase, first, last));
                    }
                }
            }
            let set = builder.build().expect("build");
            let mut actual: Vec<_> = set
                .scan(&normalized)
                .into_iter()
                .filter(|hit| gapped.contains(&hit.phrase))
                .map(|hit| (hit.phrase, hit.first, hit.last))
                .collect();
            expected.sort_unstable();
            expected.dedup();
            actual.sort_unstable();
            actual.dedup();
            proptest::prop_assert_eq!(actual, expected, "phrases {:?}, text {:?}", phrases, text);
        }
    }

    #[test]
    fn a_pattern_runs_only_where_one_of_its_beginnings_and_one_of_its_endings_are() {
        let pattern = r"(?-u:\b)(?:i|we) (?:took|swallowed) (?:\S+ ){0,3}(?:pills|tablets)";
        assert_eq!(
            match_literals(pattern, Side::Beginning),
            Some(vec![
                b"i took ".to_vec(),
                b"we took ".to_vec(),
                b"i swallowed ".to_vec(),
                b"we swallowed ".to_vec(),
            ])
        );
        assert_eq!(
            match_literals(pattern, Side::End),
            Some(vec![b" pills".to_vec(), b" tablets".to_vec()])
        );
        // Could begin with any word, or end with one: that side says nothing.
        assert_eq!(match_literals(r"\w+ pills", Side::Beginning), None);
        assert_eq!(match_literals(r"took \w+", Side::End), None);
        assert_eq!(match_literals(r"(?:pain)?", Side::Beginning), None);

        let mut builder = PhraseSetBuilder::default();
        builder.pattern(pattern).expect("pattern");
        builder.pattern(r"\w+ (?:is|are) missing").expect("pattern");
        let set = builder.build().expect("build");
        let normalizer = Normalizer::default();
        let candidates = |text: &str| set.patterns.candidates(&normalizer.normalize(text).plain);
        assert_eq!(candidates("i took my pills"), [0]);
        assert_eq!(
            candidates("i took a walk"),
            Vec::<usize>::new(),
            "no ending found"
        );
        assert_eq!(candidates("my pills are missing"), [1]);
        assert_eq!(candidates("tablets missing"), Vec::<usize>::new());
    }

    proptest::proptest! {
        /// Running only the patterns one of whose beginnings and one of whose endings are in
        /// the message finds exactly what running every pattern finds.
        #[test]
        fn choosing_patterns_by_their_beginnings_and_endings_never_loses_a_match(
            patterns in proptest::collection::vec(
                proptest::collection::vec(0usize..12, 1..5), 1..10),
            text in proptest::collection::vec(0usize..8, 0..14),
        ) {
            const PARTS: [&str; 12] = [
                r"\bpain", "chest ", "(?:my|the) ", r"(?:\S+ ){0,2}", "arm", r"\w+ ", "(?:bad )?",
                "(?i:PAIN)", "[a-c]", ".*", "^", r"\b",
            ];
            const WORDS: [&str; 8] = ["pain", "chest", "arm", "my", "the", "bad", "cab", "12"];
            let patterns: Vec<String> = patterns
                .iter()
                .map(|parts| parts.iter().map(|&part| PARTS[part]).collect())
                .collect();
            let text: Vec<&str> = text.iter().map(|&word| WORDS[word]).collect();
            let normalized = Normalizer::default().normalize(&text.join(" "));
            let mut builder = PhraseSetBuilder::default();
            let mut expected = Vec::new();
            for pattern in &patterns {
                let Ok(id) = builder.pattern(pattern) else {
                    continue;
                };
                let regex = regex::bytes::Regex::new(&byte_level_escapes(pattern)).expect("regex");
                for found in regex.find_iter(normalized.plain.as_bytes()) {
                    if let Some((first, last)) =
                        normalized.token_range(found.start(), found.end(), false)
                    {
                        expected.push((id, first, last));
                    }
                }
            }
            let set = builder.build().expect("build");
            let mut actual: Vec<_> = set
                .scan(&normalized)
                .into_iter()
                .map(|hit| (hit.phrase, hit.first, hit.last))
                .collect();
            expected.sort_unstable();
            actual.sort_unstable();
            proptest::prop_assert_eq!(actual, expected, "patterns {:?}, text {:?}", patterns, text);
        }
    }

    #[test]
    fn numbers_stand_in_for_any_number() {
        assert_eq!(
            found(&["took <number> pills"], "I took 30 pills"),
            vec![(0, 1, 3)]
        );
    }
}
