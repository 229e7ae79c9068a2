//! Misspelt policy words: a word of a patient's message that no policy knows and that is one slip
//! of the keyboard away from exactly one word of the policies' English triggers is read as that
//! word
//! (`bleesing` → `bleeding`, `cheats pain` → `chest pain`), so that a typo does not hide a red
//! flag.
//!
//! Only whole patient messages are read this way (never a streamed model reply), only words of
//! plain Latin letters, and only slips inside a word: the first and the last letters stay, since
//! real words and their inflections differ there (`slices`/`sliced`, French `ronfle`/`gonfle`);
//! the last two letters may be swapped (`bleedign`).
//! A word the policies know, or one of the ordinary words listed in `spelling.toml`, is never
//! read as another; nor is a word with two candidates. The policies' words are looked up through
//! their variants with one inner letter left out (a symmetric-delete index), so a message word
//! costs a handful of hash lookups whatever the size of the policy set.

use std::collections::{HashMap, HashSet};

use serde::Deserialize;

type Fast = foldhash::fast::RandomState;

/// `spelling.toml` in a policy directory. Without the file, words are read as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpellingFile {
    /// Whether misspelt policy words are read as the words they misspell.
    #[serde(default)]
    pub enabled: bool,
    /// The shortest word read this way, and the shortest policy word it may be read as: short
    /// words are one slip away from too many others.
    #[serde(default = "default_min_length")]
    pub min_length: usize,
    /// How many phrases must use a policy word before a misspelling is read as it.
    #[serde(default = "default_min_uses")]
    pub min_uses: u32,
    /// Ordinary words, never read as a misspelling of a policy word (`calming` is not `calling`).
    #[serde(default)]
    pub known: Vec<String>,
}

impl Default for SpellingFile {
    fn default() -> Self {
        Self {
            enabled: false,
            min_length: default_min_length(),
            min_uses: default_min_uses(),
            known: Vec::new(),
        }
    }
}

impl SpellingFile {
    /// The file with misspellings read, at the default lengths and with no ordinary words.
    #[cfg(test)]
    pub(crate) fn turned_on() -> Self {
        Self {
            enabled: true,
            ..Self::default()
        }
    }
}

fn default_min_length() -> usize {
    6
}

fn default_min_uses() -> u32 {
    2
}

/// The policy words a misspelling may be read as, and the words that are never read as one.
#[derive(Debug, Clone, Default)]
pub struct Spelling {
    min_length: usize,
    /// Each policy word as the phrases spell it (squeezed, as phrases see it) and as written.
    targets: Vec<(Box<str>, Box<str>)>,
    /// Each target, and each target with one letter other than the first left out, to the
    /// targets it comes from.
    variants: HashMap<Box<str>, Vec<u32>, Fast>,
    known: HashSet<Box<str>, Fast>,
}

impl Spelling {
    /// `words`: each policy word squeezed, how many phrases use it, and its written form.
    /// `known`: ordinary words, squeezed.
    pub fn new<'a>(
        file: &SpellingFile,
        words: impl IntoIterator<Item = (&'a str, u32, &'a str)>,
        known: impl IntoIterator<Item = String>,
    ) -> Self {
        if !file.enabled {
            return Self::default();
        }
        let mut spelling = Self {
            min_length: file.min_length.max(3),
            ..Self::default()
        };
        for (squeezed, uses, written) in words {
            if uses < file.min_uses || !spelling.eligible(squeezed) {
                continue;
            }
            let Ok(index) = u32::try_from(spelling.targets.len()) else {
                break;
            };
            spelling.targets.push((squeezed.into(), written.into()));
            for variant in std::iter::once(squeezed.to_owned()).chain(deletions(squeezed)) {
                let sources = spelling.variants.entry(variant.into()).or_default();
                if sources.last() != Some(&index) {
                    sources.push(index);
                }
            }
        }
        spelling.known = known.into_iter().map(String::into_boxed_str).collect();
        spelling
    }

    /// Whether any word can be read as another.
    pub fn is_active(&self) -> bool {
        !self.targets.is_empty()
    }

    /// The shortest word read as a misspelling (squeezing only shortens a word, so a shorter one
    /// never needs to be squeezed and looked up).
    pub fn min_length(&self) -> usize {
        self.min_length
    }

    fn eligible(&self, word: &str) -> bool {
        word.len() >= self.min_length && word.bytes().all(|byte| byte.is_ascii_lowercase())
    }

    /// The policy word `word` (squeezed, not known to the policies) misspells, as written in
    /// the policies, when there is exactly one.
    pub fn correct(&self, word: &str) -> Option<&str> {
        if !self.is_active() || !self.eligible(word) || self.known.contains(word) {
            return None;
        }
        let mut found: Option<u32> = None;
        let lookups = std::iter::once(word.to_owned()).chain(deletions(word));
        for variant in lookups {
            for &index in self.variants.get(variant.as_str()).into_iter().flatten() {
                let Some((target, _)) = self.targets.get(index as usize) else {
                    continue;
                };
                if found == Some(index) || !one_inner_slip(word, target) {
                    continue;
                }
                if found.is_some() {
                    // Two policy words are as near: the slip could be either.
                    return None;
                }
                found = Some(index);
            }
        }
        found
            .and_then(|index| self.targets.get(index as usize))
            .map(|(_, written)| &**written)
    }
}

/// `word` with one letter left out, for each letter but the first. (The last letter is left out
/// too, for its swap with the one before it: `bleedign` and `bleeding` both lose a `g`.)
fn deletions(word: &str) -> impl Iterator<Item = String> + '_ {
    (1..word.len()).filter_map(move |at| {
        let (before, after) = (word.get(..at)?, word.get(at + 1..)?);
        Some(format!("{before}{after}"))
    })
}

/// Whether `typed` is `target` with one slip in it: a letter left out, added or mistyped, none of
/// them the first or the last letter, or two neighbours swapped, not the first. Both are ASCII.
fn one_inner_slip(typed: &str, target: &str) -> bool {
    let (typed, target) = (typed.as_bytes(), target.as_bytes());
    if typed == target || typed.first() != target.first() || typed.len().abs_diff(target.len()) > 1
    {
        return false;
    }
    let at = typed
        .iter()
        .zip(target)
        .take_while(|(left, right)| left == right)
        .count();
    let (typed_rest, target_rest) = (&typed[at..], &target[at..]);
    match typed.len().cmp(&target.len()) {
        std::cmp::Ordering::Equal => {
            let mistyped = at + 1 < typed.len() && typed_rest.get(1..) == target_rest.get(1..);
            let swapped = typed_rest.len() >= 2
                && typed_rest.first() == target_rest.get(1)
                && typed_rest.get(1) == target_rest.first()
                && typed_rest.get(2..) == target_rest.get(2..);
            mistyped || swapped
        }
        // A letter left out, not the last.
        std::cmp::Ordering::Less => {
            at + 1 < target.len() && target_rest.get(1..) == Some(typed_rest)
        }
        // A letter added before the last.
        std::cmp::Ordering::Greater => {
            at + 1 < typed.len() && typed_rest.get(1..) == Some(target_rest)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spelling(words: &[&str], known: &[&str]) -> Spelling {
        let file = SpellingFile::turned_on();
        Spelling::new(
            &file,
            words.iter().map(|word| (*word, 2, *word)),
            known.iter().map(|word| (*word).to_owned()),
        )
    }

    #[test]
    fn a_slip_inside_a_word_reads_as_the_policy_word() {
        let spelling = spelling(&["bleding", "unconscious", "seizure"], &[]);
        assert_eq!(spelling.correct("blesing"), Some("bleding"), "mistyped");
        assert_eq!(spelling.correct("bleding"), None, "the word itself");
        assert_eq!(
            spelling.correct("unconcious"),
            Some("unconscious"),
            "left out"
        );
        assert_eq!(
            spelling.correct("unconsciuos"),
            Some("unconscious"),
            "swapped"
        );
        assert_eq!(spelling.correct("seiezure"), Some("seizure"), "added");
    }

    #[test]
    fn first_and_last_letters_short_words_and_known_words_stay() {
        let spelling = spelling(&["gonfle", "sliced", "calling", "stroke"], &["calming"]);
        assert_eq!(spelling.correct("ronfle"), None, "first letter");
        assert_eq!(spelling.correct("slices"), None, "last letter");
        assert_eq!(spelling.correct("calming"), None, "an ordinary word");
        assert_eq!(spelling.correct("stoke"), None, "too short");
        assert_eq!(spelling.correct("strоke"), None, "not plain Latin letters");
    }

    #[test]
    fn two_candidates_are_none() {
        let spelling = spelling(&["painful", "paintul"], &[]);
        assert_eq!(spelling.correct("paimful"), Some("painful"));
        assert_eq!(spelling.correct("paintfl"), Some("paintul"));
        let both = self::spelling(&["bleding", "breding"], &[]);
        assert_eq!(both.correct("bseding"), None, "either word");
    }

    #[test]
    fn a_word_used_once_or_a_file_turned_off_reads_nothing() {
        let file = SpellingFile::turned_on();
        let once = Spelling::new(&file, [("bleding", 1, "bleeding")], Vec::new());
        assert_eq!(once.correct("blesing"), None);
        let off = Spelling::new(
            &SpellingFile::default(),
            [("bleding", 2, "bleeding")],
            Vec::new(),
        );
        assert!(!off.is_active());
        let twice = Spelling::new(&file, [("bleding", 2, "bleeding")], Vec::new());
        assert_eq!(twice.correct("blesing"), Some("bleeding"), "as written");
    }

    #[test]
    fn the_slip_check_is_exact() {
        assert!(one_inner_slip("chets", "chest"), "the last two swapped");
        assert!(
            !one_inner_slip("chesr", "chest"),
            "the last letter mistyped"
        );
        assert!(!one_inner_slip("hcest", "chest"), "first letter swapped");
        assert!(one_inner_slip("chesst", "chest"), "a letter added");
        assert!(one_inner_slip("chst", "chest"), "a letter left out");
        assert!(!one_inner_slip("cxxst", "chest"), "two letters");
        assert!(!one_inner_slip("chest", "chest"), "no slip");
        assert!(!one_inner_slip("ches", "chest"), "the last letter");
        assert!(
            !one_inner_slip("chesta", "chest"),
            "a letter added at the end"
        );
    }
}
