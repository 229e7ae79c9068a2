//! Compiles every phrase and pattern of a policy set into one scan: an aho-corasick automaton for
//! plain phrases, and two regex sets for phrases with gaps and for operators' patterns. However
//! many rules there are, a message is read once by each.

use std::collections::{HashMap, HashSet};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::{Regex, RegexSet, RegexSetBuilder};

use super::normalize::{NormalizedText, Normalizer, TokenKind};

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
    gapped: Vec<(String, PhraseId)>,
    patterns: Vec<(String, PhraseId)>,
    next_id: PhraseId,
    /// Every word of every phrase, squeezed.
    words: HashSet<String>,
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
        let parts: Vec<PhrasePart> = text
            .split_whitespace()
            .map(|part| match part {
                "*" => PhrasePart::Gap { most: 1 },
                "**" => PhrasePart::Gap { most: 3 },
                "<number>" => PhrasePart::Number,
                "<year>" => PhrasePart::Year,
                other => {
                    let normalized = normalizer.normalize(other);
                    PhrasePart::Words(
                        normalized
                            .tokens
                            .iter()
                            .enumerate()
                            .filter(|(_, token)| token.kind != TokenKind::SentenceEnd)
                            .map(|(index, _)| normalized.squeezed_of(index).to_owned())
                            .collect(),
                    )
                }
            })
            .collect();
        let words: usize = parts
            .iter()
            .map(|part| match part {
                PhrasePart::Words(words) => words.len(),
                _ => 1,
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
                    // Any word, number or comma, but never across a sentence end.
                    PhrasePart::Gap { most } => {
                        regex.push_str(&format!("(?:[^ .][^ ]* |[0-9][^ ]* ){{0,{most}}}"));
                    }
                    PhrasePart::Number => regex.push_str(r"[0-9]+(?:\.[0-9]+)? "),
                    PhrasePart::Year => regex.push_str(r"(?:19|20)[0-9]{2} "),
                }
            }
            self.gapped.push((regex, id));
        }
        Ok(id)
    }

    /// Adds an operator's regular expression, run on the plain normalised text.
    ///
    /// # Errors
    /// An invalid regular expression.
    pub fn pattern(&mut self, pattern: &str) -> Result<PhraseId, PhraseError> {
        let pattern = ascii_word_boundaries(pattern);
        Regex::new(&pattern).map_err(|error| PhraseError::BadPattern {
            pattern: pattern.clone(),
            reason: error.to_string(),
        })?;
        let id = self.next_id;
        self.next_id += 1;
        self.patterns.push((pattern, id));
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
            .map(|(regex, phrase)| PhraseExpression {
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

    /// # Errors
    /// The automaton or a regex set could not be built (size limits).
    pub fn build(self) -> Result<PhraseSet, PhraseError> {
        let automaton = AhoCorasickBuilder::new()
            .match_kind(MatchKind::Standard)
            .build(&self.literals)
            .map_err(|error| PhraseError::Automaton(error.to_string()))?;
        let compile = |list: &[(String, PhraseId)]| -> Result<CompiledRegexes, PhraseError> {
            // A large lazy-DFA cache: with hundreds of patterns a small one thrashes and the
            // search falls back to the much slower NFA.
            let sets = list
                .chunks(SET_SIZE)
                .map(|chunk| {
                    RegexSetBuilder::new(chunk.iter().map(|(source, _)| source.as_str()))
                        .size_limit(64 * 1024 * 1024)
                        .dfa_size_limit(64 * 1024 * 1024)
                        .build()
                        .map_err(|error| PhraseError::BadPattern {
                            pattern: "(set)".into(),
                            reason: error.to_string(),
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let each = list
                .iter()
                .map(|(source, id)| {
                    Regex::new(source)
                        .map(|regex| (regex, *id))
                        .map_err(|error| PhraseError::BadPattern {
                            pattern: source.clone(),
                            reason: error.to_string(),
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(CompiledRegexes { sets, each })
        };
        Ok(PhraseSet {
            automaton,
            literal_owners: self.literal_owners,
            gapped: compile(&self.gapped)?,
            patterns: compile(&self.patterns)?,
            phrase_count: self.next_id,
        })
    }
}

/// `\b` and `\B` as ASCII word boundaries. A Unicode word boundary cannot be decided by the lazy
/// DFA once the text holds a non-ASCII character (an emoji, `°`), so the whole set fell back to a
/// search about fifteen times slower for such a message. The normalised text is ASCII wherever a
/// pattern's words are (accents stripped, look-alikes folded), so the ASCII boundary reads the same.
fn ascii_word_boundaries(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars();
    while let Some(ch) = chars.next() {
        if ch != '\\' {
            out.push(ch);
            continue;
        }
        match chars.next() {
            Some('b') => out.push_str("(?-u:\\b)"),
            Some('B') => out.push_str("(?-u:\\B)"),
            Some(escaped) => {
                out.push('\\');
                out.push(escaped);
            }
            None => out.push('\\'),
        }
    }
    out
}

struct CompiledRegexes {
    /// The expressions in sets of at most `SET_SIZE`, each set covering the next `SET_SIZE`
    /// entries of `each`.
    sets: Vec<RegexSet>,
    each: Vec<(Regex, PhraseId)>,
}

/// Expressions per regex set. One set of thousands made every state of its lazy DFA a set of
/// thousands of NFA states: the cache filled within a few messages and each new message was
/// determinised again, about 5 ms per message. Smaller sets keep their states small.
const SET_SIZE: usize = 128;

impl CompiledRegexes {
    fn scan(&self, text: &NormalizedText, squeezed: bool, hits: &mut Vec<Hit>) {
        let haystack = if squeezed {
            &text.squeezed
        } else {
            &text.plain
        };
        let matched = self.sets.iter().enumerate().flat_map(|(chunk, set)| {
            set.matches(haystack)
                .into_iter()
                .map(move |index| chunk * SET_SIZE + index)
        });
        for index in matched {
            let Some((regex, phrase)) = self.each.get(index) else {
                continue;
            };
            for found in regex.find_iter(haystack) {
                // Gapped phrases carry their padding spaces; strip them before mapping to tokens.
                let (start, end) = if squeezed {
                    (found.start() + 1, found.end().saturating_sub(1))
                } else {
                    (found.start(), found.end())
                };
                if let Some((first, last)) = text.token_range(start, end, squeezed) {
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

/// The compiled scan.
pub struct PhraseSet {
    automaton: AhoCorasick,
    literal_owners: Vec<Vec<PhraseId>>,
    gapped: CompiledRegexes,
    patterns: CompiledRegexes,
    phrase_count: usize,
}

impl PhraseSet {
    pub fn phrase_count(&self) -> usize {
        self.phrase_count
    }

    /// Every phrase and pattern occurrence in the text, overlapping ones included.
    pub fn scan(&self, text: &NormalizedText) -> Vec<Hit> {
        let mut hits = Vec::new();
        for found in self.automaton.find_overlapping_iter(&text.squeezed) {
            let Some((first, last)) = text.token_range(found.start() + 1, found.end() - 1, true)
            else {
                continue;
            };
            for &phrase in &self.literal_owners[found.pattern().as_usize()] {
                hits.push(Hit {
                    phrase,
                    first,
                    last,
                });
            }
        }
        self.gapped.scan(text, true, &mut hits);
        self.patterns.scan(text, false, &mut hits);
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
        let words: Vec<String> = (0..SET_SIZE * 2 + 5)
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
        assert_eq!(
            ascii_word_boundaries(r"\bchest\B"),
            r"(?-u:\b)chest(?-u:\B)"
        );
        assert_eq!(ascii_word_boundaries(r"a\\b\d"), r"a\\b\d");
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
    fn numbers_stand_in_for_any_number() {
        assert_eq!(
            found(&["took <number> pills"], "I took 30 pills"),
            vec![(0, 1, 3)]
        );
    }
}
