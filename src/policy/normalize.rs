//! Normalisation: the one view of text that rules, context cues and measures all read.
//!
//! Patients type in every script, spelling and style, and some try to slip past the rules. Both
//! messages and policy phrases go through this same code, so a phrase written once matches the
//! variants it folds: NFKC, case, invisible characters, look-alike letters, accents, digits used as
//! letters, apostrophes, the lexicon's spellings and abbreviations, and repeated letters.

use std::collections::HashMap;

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// What a token is; context scopes end at sentence breaks, measures read numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Word,
    Number,
    Emoji,
    /// Punctuation that does not end a sentence (commas, colons, brackets…).
    Punct,
    /// `.`, `!`, `?`, `;` and line breaks.
    SentenceEnd,
}

/// One token of normalised text, with where it came from in the original.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub kind: TokenKind,
    /// Lower case, folded, accents stripped: what patterns see.
    pub plain: String,
    /// `plain` with runs of a repeated letter collapsed (what phrases see), kept only when it
    /// differs: most words have no doubled letter, and a second string per word was a large
    /// part of the scan's cost.
    squeezed: Option<String>,
    /// Byte range in the original text.
    pub start: usize,
    pub end: usize,
    /// One letter as written, or letters spelt out and already joined: a letter that follows
    /// joins it into one word (`c u t`). A streaming reader must treat such a word as unfinished
    /// while the text ends in a letter.
    pub spelt: bool,
}

impl Token {
    /// `plain` with runs of a repeated letter collapsed: what phrases see.
    pub fn squeezed(&self) -> &str {
        self.squeezed.as_deref().unwrap_or(&self.plain)
    }
}

/// A message after normalisation.
#[derive(Debug, Clone, Default)]
pub struct NormalizedText {
    pub tokens: Vec<Token>,
    /// Tokens' `plain` forms joined by single spaces.
    pub plain: String,
    /// Tokens' `squeezed` forms joined the same way.
    pub squeezed: String,
    plain_ends: Vec<usize>,
    squeezed_ends: Vec<usize>,
    plain_starts: Vec<usize>,
    squeezed_starts: Vec<usize>,
}

impl NormalizedText {
    /// The tokens covered by a byte range of `plain` (or `squeezed` when `squeezed` is true).
    pub fn token_range(&self, start: usize, end: usize, squeezed: bool) -> Option<(usize, usize)> {
        let (starts, ends) = if squeezed {
            (&self.squeezed_starts, &self.squeezed_ends)
        } else {
            (&self.plain_starts, &self.plain_ends)
        };
        if starts.is_empty() || end <= start {
            return None;
        }
        // The first token that ends after `start`, and the last one that starts before `end`.
        let first = ends.partition_point(|&offset| offset <= start);
        let last = starts
            .partition_point(|&offset| offset < end)
            .checked_sub(1)?;
        (first <= last && last < self.tokens.len()).then_some((first, last))
    }

    /// Where token `index` lies in `plain`.
    pub fn plain_span(&self, index: usize) -> Option<(usize, usize)> {
        Some((*self.plain_starts.get(index)?, *self.plain_ends.get(index)?))
    }

    /// Where token `index` lies in `squeezed` (without the padding spaces around it).
    pub fn squeezed_span(&self, index: usize) -> Option<(usize, usize)> {
        Some((
            *self.squeezed_starts.get(index)?,
            *self.squeezed_ends.get(index)?,
        ))
    }

    /// The original text of tokens `first..=last`.
    pub fn original_span(&self, first: usize, last: usize) -> (usize, usize) {
        match (self.tokens.get(first), self.tokens.get(last)) {
            (Some(a), Some(b)) => (a.start, b.end),
            _ => (0, 0),
        }
    }
}

/// Word replacements from `lexicon.toml`: spellings, abbreviations, contractions.
#[derive(Debug, Clone, Default)]
pub struct Lexicon {
    // Looked up once per word of every message: a fast hasher matters, and the keys are the
    // operators' own lexicon, not attacker-chosen.
    words: HashMap<String, Vec<String>, foldhash::fast::RandomState>,
    /// The same keys in order, to ask whether an unfinished word could still become one.
    sorted_keys: Vec<String>,
}

impl Lexicon {
    /// Builds a lexicon; keys and values are normalised without a lexicon first.
    pub fn new(entries: impl IntoIterator<Item = (String, String)>) -> Self {
        let bare = Normalizer::new(Lexicon::default());
        let mut words = HashMap::default();
        for (from, to) in entries {
            let key: String = bare
                .normalize(&from)
                .tokens
                .iter()
                .map(|token| token.plain.clone())
                .collect::<Vec<_>>()
                .concat();
            let replacement: Vec<String> = bare
                .normalize(&to)
                .tokens
                .into_iter()
                .map(|token| token.plain)
                .collect();
            if !key.is_empty() && !replacement.is_empty() {
                words.insert(key, replacement);
            }
        }
        let mut sorted_keys: Vec<String> = words.keys().cloned().collect();
        sorted_keys.sort_unstable();
        Self { words, sorted_keys }
    }

    /// The replacements of every key that begins with `start` (a word still being written may
    /// become any of them), or `None` when there are more than `most`.
    pub fn expansions_starting_with(&self, start: &str, most: usize) -> Option<Vec<&[String]>> {
        let from = self.sorted_keys.partition_point(|key| key.as_str() < start);
        let keys = self.sorted_keys[from..]
            .iter()
            .take_while(|key| key.starts_with(start));
        let mut expansions = Vec::new();
        for key in keys {
            if expansions.len() == most {
                return None;
            }
            expansions.extend(self.lookup(key));
        }
        Some(expansions)
    }

    fn lookup(&self, word: &str) -> Option<&[String]> {
        self.words.get(word).map(Vec::as_slice)
    }
}

/// Turns text into tokens. Cheap to share: it holds only the lexicon.
#[derive(Debug, Clone, Default)]
pub struct Normalizer {
    lexicon: Lexicon,
}

/// A character after folding, still tied to the original character it came from.
#[derive(Clone, Copy)]
struct Folded {
    ch: char,
    start: usize,
    end: usize,
}

impl Normalizer {
    pub fn new(lexicon: Lexicon) -> Self {
        Self { lexicon }
    }

    pub fn lexicon(&self) -> &Lexicon {
        &self.lexicon
    }

    /// Normalises `text`. Never fails and never panics, whatever the input.
    pub fn normalize(&self, text: &str) -> NormalizedText {
        let folded = fold_chars(text);
        let raw_tokens = join_spaced_letters(text, tokenize(&folded));
        let mut tokens = Vec::with_capacity(raw_tokens.len());
        for token in raw_tokens {
            if token.kind == TokenKind::Word
                && let Some(replacement) = self.lexicon.lookup(&token.plain)
            {
                for word in replacement {
                    let mut expanded =
                        make_token(TokenKind::Word, word.clone(), token.start, token.end);
                    expanded.spelt = token.spelt;
                    tokens.push(expanded);
                }
                continue;
            }
            tokens.push(token);
        }
        join(tokens)
    }
}

/// `c u t`, `b l e e d i n g`: three or more single letters in a row are one word spelt out to
/// slip past a filter. Wider gaps between the letters (`c h e s t  p a i n`) separate words: two
/// letters or more between such gaps are a word of their own, a lone letter stays one.
fn join_spaced_letters(text: &str, tokens: Vec<Token>) -> Vec<Token> {
    fn joined(group: &[Token]) -> Option<Token> {
        let (first, last) = (group.first()?, group.last()?);
        let plain: String = group.iter().map(|token| token.plain.as_str()).collect();
        let mut word = make_token(TokenKind::Word, plain, first.start, last.end);
        word.spelt = true;
        Some(word)
    }
    fn flush(text: &str, run: &mut Vec<Token>, out: &mut Vec<Token>) {
        if run.len() < 3 {
            out.append(run);
            return;
        }
        let mut group_start = 0;
        for index in 1..=run.len() {
            let ends_group = index == run.len() || wide_gap(text, &run[index - 1], &run[index]);
            if !ends_group {
                continue;
            }
            let group = &run[group_start..index];
            // A lone letter between wide gaps (`i`, `a`) is a word as written; a whole run
            // without wide gaps is joined however short its groups would be.
            let whole_run = group_start == 0 && index == run.len();
            if group.len() >= 2 || whole_run {
                out.extend(joined(group));
            } else {
                out.extend_from_slice(group);
            }
            group_start = index;
        }
        run.clear();
    }
    let mut out = Vec::with_capacity(tokens.len());
    let mut run = Vec::new();
    for token in tokens {
        if token.spelt {
            run.push(token);
        } else {
            flush(text, &mut run, &mut out);
            out.push(token);
        }
    }
    flush(text, &mut run, &mut out);
    out
}

/// Two or more blank characters between two spelt-out letters: a space between words, as
/// opposed to the single space between the letters of one word.
fn wide_gap(text: &str, before: &Token, after: &Token) -> bool {
    text.get(before.end..after.start).is_some_and(|between| {
        between
            .chars()
            .filter(|ch| ch.is_whitespace())
            .take(2)
            .count()
            >= 2
    })
}

fn make_token(kind: TokenKind, plain: String, start: usize, end: usize) -> Token {
    let squeezed = if kind == TokenKind::Word {
        squeezed_if_different(&plain)
    } else {
        None
    };
    let spelt = kind == TokenKind::Word && {
        let mut chars = plain.chars();
        chars.next().is_some() && chars.next().is_none()
    };
    Token {
        kind,
        plain,
        squeezed,
        start,
        end,
        spelt,
    }
}

fn join(tokens: Vec<Token>) -> NormalizedText {
    let mut plain = String::with_capacity(tokens.len() * 6 + 2);
    let mut squeezed = String::with_capacity(tokens.len() * 6 + 2);
    let mut plain_starts = Vec::with_capacity(tokens.len());
    let mut squeezed_starts = Vec::with_capacity(tokens.len());
    let mut plain_ends = Vec::with_capacity(tokens.len());
    let mut squeezed_ends = Vec::with_capacity(tokens.len());
    // Patterns see the plain text without padding, so `^` and `$` mean the message's ends;
    // phrases see the squeezed text padded with spaces, so every word has a space on each side.
    squeezed.push(' ');
    for (index, token) in tokens.iter().enumerate() {
        if index > 0 {
            plain.push(' ');
        }
        plain_starts.push(plain.len());
        plain.push_str(&token.plain);
        plain_ends.push(plain.len());
        squeezed_starts.push(squeezed.len());
        squeezed.push_str(token.squeezed());
        squeezed_ends.push(squeezed.len());
        squeezed.push(' ');
    }
    NormalizedText {
        tokens,
        plain,
        squeezed,
        plain_ends,
        squeezed_ends,
        plain_starts,
        squeezed_starts,
    }
}

/// Collapses runs of one repeated letter: `paaain` and `bleding` both read as `pain`, `bleding`.
pub fn squeeze(word: &str) -> String {
    squeezed_if_different(word).unwrap_or_else(|| word.to_owned())
}

/// The squeezed form of `word`, or `None` when it has no doubled letter (the usual case).
fn squeezed_if_different(word: &str) -> Option<String> {
    if word.is_ascii()
        && !word
            .as_bytes()
            .windows(2)
            .any(|pair| pair[0] == pair[1] && pair[0].is_ascii_alphabetic())
    {
        return None;
    }
    let mut chars = word.chars();
    let doubled = chars.next().is_some_and(|first| {
        chars
            .try_fold(first, |previous, ch| {
                if ch == previous && ch.is_alphabetic() {
                    None
                } else {
                    Some(ch)
                }
            })
            .is_none()
    });
    if !doubled {
        return None;
    }
    let mut out = String::with_capacity(word.len());
    let mut previous = None;
    for ch in word.chars() {
        if Some(ch) == previous && ch.is_alphabetic() {
            continue;
        }
        previous = Some(ch);
        out.push(ch);
    }
    Some(out)
}

/// A letter written three times or more in a row is a word stretched for emphasis (`chesssst`,
/// `heeeelp`): no English word has such a run, and patterns, unlike phrases, do not read the
/// squeezed form, so the run becomes one letter. Doubled letters are left alone (`bleeding`).
fn unstretched(word: String) -> String {
    let mut stretched = false;
    let mut previous = None;
    let mut run = 0;
    for ch in word.chars() {
        run = if Some(ch) == previous { run + 1 } else { 1 };
        previous = Some(ch);
        if run >= 3 && ch.is_alphabetic() {
            stretched = true;
            break;
        }
    }
    if !stretched {
        return word;
    }
    let mut out = String::with_capacity(word.len());
    let mut chars = word.chars().peekable();
    while let Some(ch) = chars.next() {
        let mut count = 1;
        while chars.next_if_eq(&ch).is_some() {
            count += 1;
        }
        let keep = if count >= 3 && ch.is_alphabetic() {
            1
        } else {
            count
        };
        out.extend(std::iter::repeat_n(ch, keep));
    }
    out
}

/// Invisible characters that only serve to split a word for a human eye's benefit.
fn is_invisible(ch: char) -> bool {
    matches!(
        ch,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{E0000}'..='\u{E007F}'
            | '\u{1F3FB}'..='\u{1F3FF}'
    )
}

/// Latin letters that Cyrillic, Greek and other scripts imitate (after lower-casing).
fn fold_confusable(ch: char) -> char {
    match ch {
        'а' | 'α' | 'ɑ' => 'a',
        'в' | 'β' | 'ь' => 'b',
        'с' | 'ϲ' => 'c',
        'ԁ' => 'd',
        'е' | 'ε' | 'ё' | 'є' => 'e',
        'һ' | 'н' => 'h',
        'і' | 'ι' | 'ї' | 'ı' => 'i',
        'ј' => 'j',
        'к' | 'κ' => 'k',
        'ӏ' => 'l',
        'м' => 'm',
        'п' | 'η' => 'n',
        'о' | 'ο' | 'σ' | 'ө' => 'o',
        'р' | 'ρ' => 'p',
        'ԛ' => 'q',
        'г' => 'r',
        'ѕ' => 's',
        'т' | 'τ' => 't',
        'υ' | 'ц' => 'u',
        'ν' | 'ѵ' => 'v',
        'ԝ' | 'ω' | 'ш' => 'w',
        'х' | 'χ' => 'x',
        'у' | 'γ' | 'ү' => 'y',
        'ʐ' => 'z',
        // Letters with a stroke, which NFD does not take apart like an accent: Polish `ł` is
        // often typed as `l`, Danish `ø` as `o`.
        'ł' => 'l',
        'ø' => 'o',
        'đ' => 'd',
        'ħ' => 'h',
        other => other,
    }
}

/// NFKC, lower case, invisible characters out, look-alikes folded, accents stripped.
fn fold_chars(text: &str) -> Vec<Folded> {
    let mut out = Vec::with_capacity(text.len());
    for (start, original) in text.char_indices() {
        let end = start + original.len_utf8();
        // Most text is ASCII, where NFKC, NFD and the look-alike table change nothing and no
        // character is invisible: only the case changes. The full path costs an order of
        // magnitude more per character.
        if original.is_ascii() {
            let ch = if original == '\r' {
                '\n'
            } else {
                original.to_ascii_lowercase()
            };
            out.push(Folded { ch, start, end });
            continue;
        }
        if is_invisible(original) {
            continue;
        }
        for compat_char in std::iter::once(original).nfkc() {
            for lower in compat_char.to_lowercase() {
                let latin = fold_confusable(lower);
                for base in std::iter::once(latin).nfd() {
                    if is_combining_mark(base) || is_invisible(base) {
                        continue;
                    }
                    // Fold look-alikes again once the accent is off: `ѐ` and `ί` decompose to
                    // Cyrillic `е` and Greek `ι`, which would otherwise slip past the table
                    // (`kίll` read as `kιll`, not `kill`) and make normalising not idempotent.
                    out.push(Folded {
                        ch: fold_confusable(base),
                        start,
                        end,
                    });
                }
            }
        }
    }
    out
}

/// Digits and symbols people use for letters, read only inside a word that starts with a letter.
fn leet_letter(ch: char) -> Option<char> {
    match ch {
        '0' => Some('o'),
        '1' | '!' | '|' => Some('i'),
        '3' => Some('e'),
        '4' | '@' => Some('a'),
        '5' | '$' => Some('s'),
        '7' => Some('t'),
        '€' => Some('e'),
        _ => None,
    }
}

/// Where the run of leet characters starting at `index` ends, when a letter follows it (`bl00d`).
fn leet_run_end_with_letter(chars: &[Folded], index: usize) -> Option<usize> {
    let end = chars[index..]
        .iter()
        .position(|folded| leet_letter(folded.ch).is_none())
        .map(|offset| index + offset)?;
    is_word_char(chars[end].ch).then_some(end)
}

fn is_word_char(ch: char) -> bool {
    ch.is_alphabetic()
}

fn is_emoji(ch: char) -> bool {
    let code = ch as u32;
    (0x1F000..=0x1FAFF).contains(&code)
        || (0x2600..=0x27BF).contains(&code)
        || (0x2190..=0x21FF).contains(&code)
        || (0x2B00..=0x2BFF).contains(&code)
}

fn tokenize(chars: &[Folded]) -> Vec<Token> {
    // About one token per five characters of ordinary text.
    let mut tokens = Vec::with_capacity(chars.len() / 4 + 1);
    let mut index = 0;
    while index < chars.len() {
        let current = chars[index];
        let ch = current.ch;
        if is_word_char(ch) {
            index = read_word(chars, index, &mut tokens);
        } else if ch.is_ascii_digit() || ch.is_numeric() {
            index = read_number(chars, index, &mut tokens);
        } else if is_emoji(ch) {
            tokens.push(make_token(
                TokenKind::Emoji,
                ch.to_string(),
                current.start,
                current.end,
            ));
            index += 1;
        } else if ch.is_whitespace() && ch != '\n' {
            index += 1;
        } else {
            index = read_punct(chars, index, &mut tokens);
        }
    }
    tokens
}

fn read_word(chars: &[Folded], start_index: usize, tokens: &mut Vec<Token>) -> usize {
    let mut word = String::with_capacity(16);
    let start = chars[start_index].start;
    let mut end = chars[start_index].end;
    let mut index = start_index;
    // The end of the current run of leet characters when a letter follows it.
    let mut leet_run_end = 0;
    while index < chars.len() {
        let ch = chars[index].ch;
        // Letters are nearly every character: take them before looking around.
        if is_word_char(ch) {
            word.push(ch);
            end = chars[index].end;
            index += 1;
            continue;
        }
        let next_is_letter = chars
            .get(index + 1)
            .is_some_and(|next| is_word_char(next.ch));
        let previous_is_letter = word.chars().last().is_some_and(char::is_alphabetic);
        if ch == '\'' || ch == '’' || ch == '`' {
            // Apostrophes inside a word are dropped (`can't` → `cant`); a trailing one ends it.
            if !next_is_letter {
                break;
            }
        } else if let Some(letter) = leet_letter(ch) {
            // `k1ll`, `su!c!de`, `bl00d`: digits or symbols between letters, or one or two digits
            // closing a word of letters (`n0`, `d13`; not `x3`, a count).
            // Counted no further than one past the two that may close a word: a long run of
            // digits inside a word is met once per character, and counting it whole each time
            // made a message of digits between two letters quadratic.
            let closing_digits = chars[index..]
                .iter()
                .take(3)
                .take_while(|folded| folded.ch.is_ascii_digit())
                .count();
            let closes_word = previous_is_letter
                && word != "x"
                && (1..=2).contains(&closing_digits)
                && chars[index..index + closing_digits]
                    .iter()
                    .all(|folded| leet_letter(folded.ch).is_some())
                && chars
                    .get(index + closing_digits)
                    .is_none_or(|next| !next.ch.is_alphanumeric());
            // Each run is looked ahead once: a long run must not be rescanned per character.
            if leet_run_end <= index {
                leet_run_end = leet_run_end_with_letter(chars, index).unwrap_or(index);
            }
            if !(index < leet_run_end || (closes_word && ch.is_ascii_digit())) {
                break;
            }
            word.push(letter);
        } else {
            break;
        }
        end = chars[index].end;
        index += 1;
    }
    if !word.is_empty() {
        tokens.push(make_token(TokenKind::Word, unstretched(word), start, end));
    }
    index.max(start_index + 1)
}

fn read_number(chars: &[Folded], start_index: usize, tokens: &mut Vec<Token>) -> usize {
    let mut number = String::new();
    let start = chars[start_index].start;
    let mut end = chars[start_index].end;
    let mut index = start_index;
    let mut seen_separator = false;
    while index < chars.len() {
        let ch = chars[index].ch;
        if let Some(digit) = ch.to_digit(10) {
            number.push(char::from_digit(digit, 10).unwrap_or('0'));
        } else if (ch == '.' || ch == ',')
            && !seen_separator
            && chars
                .get(index + 1)
                .is_some_and(|next| next.ch.is_ascii_digit())
        {
            // `38,5` is a decimal in most of Europe; read it as `38.5`.
            seen_separator = true;
            number.push('.');
        } else {
            break;
        }
        end = chars[index].end;
        index += 1;
    }
    if number.is_empty() {
        return start_index + 1;
    }
    tokens.push(make_token(TokenKind::Number, number, start, end));
    index
}

fn read_punct(chars: &[Folded], index: usize, tokens: &mut Vec<Token>) -> usize {
    let current = chars[index];
    let ch = current.ch;
    // A hyphen or slash between words joins nothing and ends nothing: `self-harm` = `self harm`.
    if matches!(ch, '-' | '_' | '/' | '~')
        && tokens
            .last()
            .is_some_and(|token| token.end == current.start)
        && chars
            .get(index + 1)
            .is_some_and(|next| next.ch.is_alphanumeric())
    {
        return index + 1;
    }
    let ends_sentence = matches!(ch, '.' | '!' | '?' | ';' | '\n' | '。' | '¡' | '¿' | '…');
    if ends_sentence {
        // A run of `?!...` is one break.
        if tokens
            .last()
            .is_some_and(|token| token.kind == TokenKind::SentenceEnd)
        {
            if let Some(last) = tokens.last_mut() {
                last.end = current.end;
            }
            return index + 1;
        }
        tokens.push(make_token(
            TokenKind::SentenceEnd,
            ".".into(),
            current.start,
            current.end,
        ));
    } else if !ch.is_control() {
        let shown = if ch.is_ascii_punctuation() || ch == '°' {
            ch.to_string()
        } else {
            ",".to_owned()
        };
        tokens.push(make_token(
            TokenKind::Punct,
            shown,
            current.start,
            current.end,
        ));
    }
    index + 1
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::LazyLock;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn spelt_out_and_leet_words_are_read_as_words() {
        let normalizer = Normalizer::default();
        let plain = |text: &str| normalizer.normalize(text).plain;
        assert_eq!(plain("c u t myself"), "cut myself");
        assert_eq!(plain("b l e e d i n g"), "bleeding");
        assert_eq!(plain("vomiting bl00d"), "vomiting blood");
        assert_eq!(plain("k!ll mys€lf"), "kill myself");
        assert_eq!(plain("a b"), "a b", "two letters stay apart");
        assert_eq!(
            plain("c h e s t  p a i n  c r u s h i n g"),
            "chest pain crushing"
        );
        assert_eq!(
            plain("t a k e n  a  l o t"),
            "taken a lot",
            "a lone letter stays a word"
        );
        assert_eq!(plain("b l a c k   t a r r y"), "black tarry");
        assert_eq!(
            plain("heeeelp my chesssst is numbbb"),
            "help my chest is numb"
        );
        assert_eq!(plain("bleeding 1000mg zzz"), "bleeding 1000 mg z");
        assert_eq!(plain("covid19 jab"), "covid 19 jab");
        assert_eq!(plain("n0 ch3st p41n"), "no chest pain");
        assert_eq!(plain("w4nt 2 d13"), "want 2 die");
        assert_eq!(
            plain("took it x3, b12 and 500mg"),
            "took it x 3 , b 12 and 500 mg"
        );
        assert!(
            !plain("it costs €20").contains('e'),
            "a price is not a letter"
        );
        let digits = format!("a{}b", "1".repeat(8_000));
        assert_eq!(plain(&digits), "aib", "a long run of digits is read once");
        let long_run = format!("a{}b", "!".repeat(8_000));
        assert_eq!(
            plain(&long_run),
            "aib",
            "a long run is read once, as letters (then one stretched letter)"
        );
    }
    use crate::policy::file::LexiconFile;

    fn words(text: &str) -> String {
        let normalizer = Normalizer::new(Lexicon::new([
            ("can't".to_owned(), "can not".to_owned()),
            ("cp".to_owned(), "chest pain".to_owned()),
        ]));
        normalizer.normalize(text).squeezed.trim().to_owned()
    }

    #[test]
    fn invisible_characters_and_look_alikes_do_not_hide_words() {
        assert_eq!(words("che\u{200B}st pa\u{00AD}in"), "chest pain");
        assert_eq!(words("сhеst раin"), "chest pain");
        assert_eq!(words("ＣＨＥＳＴ ＰＡＩＮ"), "chest pain");
    }

    #[test]
    fn accents_case_and_repeats_fold() {
        assert_eq!(words("Me DUELE el CORAZÓN"), "me duele el corazon");
        assert_eq!(words("połknął"), words("polknal"));
        assert_eq!(words("paaaaain"), "pain");
        assert_eq!(words("bleeding"), words("bleding"));
    }

    #[test]
    fn leet_digits_inside_words_become_letters_but_numbers_stay() {
        assert_eq!(words("k1ll mys3lf"), "kil myself");
        assert_eq!(words("su!c!de"), "suicide");
        assert_eq!(words("38.5c 5mg"), "38.5 c 5 mg");
        assert_eq!(words("38,5"), "38.5");
    }

    #[test]
    fn lexicon_expands_contractions_and_abbreviations() {
        assert_eq!(words("I can't breathe"), "i can not breathe");
        assert_eq!(words("bad cp"), "bad chest pain");
    }

    #[test]
    fn sentences_end_at_stops_and_line_breaks() {
        assert_eq!(words("no. chest pain!!\nhelp"), "no . chest pain . help");
        assert_eq!(words("self-harm"), "self harm");
    }

    #[test]
    fn spans_point_back_into_the_original() {
        let normalizer = Normalizer::default();
        let text = "My сhest hurts";
        let normalized = normalizer.normalize(text);
        let (start, end) = normalized.original_span(1, 1);
        assert_eq!(&text[start..end], "сhest");
        let at = normalized.squeezed.find("chest").expect("found");
        assert_eq!(normalized.token_range(at, at + 5, true), Some((1, 1)));
    }

    #[test]
    fn emoji_are_kept_as_tokens() {
        assert_eq!(words("help 🔪💊"), "help 🔪 💊");
    }

    #[test]
    fn accented_look_alikes_fold_like_plain_ones() {
        // Found by the idempotence property: the accent came off after the look-alike table.
        assert_eq!(words("ѐ"), "e");
        assert_eq!(words("ἀ"), "a");
        assert_eq!(
            words("i want to kίll myself"),
            words("i want to kill myself")
        );
        assert_eq!(words("crushing chѐst pάin"), "crushing chest pain");
    }

    /// The shipped lexicon, as the policy set builds it.
    static SHIPPED: LazyLock<Normalizer> = LazyLock::new(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/lexicon.toml");
        let raw = std::fs::read_to_string(path).expect("policies/lexicon.toml is readable");
        let file: LexiconFile = toml::from_str(&raw).expect("policies/lexicon.toml parses");
        Normalizer::new(Lexicon::new(file.words))
    });

    /// Everything a normalised text promises about itself and the text it came from.
    fn check_invariants(text: &str, normalized: &NormalizedText) -> Result<(), TestCaseError> {
        let mut previous: Option<&Token> = None;
        for (index, token) in normalized.tokens.iter().enumerate() {
            prop_assert!(
                token.start < token.end && token.end <= text.len(),
                "{:?}",
                token
            );
            prop_assert!(text.is_char_boundary(token.start) && text.is_char_boundary(token.end));
            prop_assert!(
                !token.plain.is_empty() && !token.squeezed().is_empty(),
                "{:?}",
                token
            );
            prop_assert_eq!(
                normalized.original_span(index, index),
                (token.start, token.end)
            );
            if let Some(previous) = previous {
                prop_assert!(
                    previous.start <= token.start,
                    "{:?} then {:?}",
                    previous,
                    token
                );
            }
            previous = Some(token);
        }
        let plain: Vec<&str> = normalized
            .tokens
            .iter()
            .map(|token| token.plain.as_str())
            .collect();
        prop_assert_eq!(&normalized.plain, &plain.join(" "));
        let squeezed: String = normalized
            .tokens
            .iter()
            .map(|token| format!("{} ", token.squeezed()))
            .collect();
        prop_assert_eq!(&normalized.squeezed, &format!(" {squeezed}"));
        // Each token's own range of `plain` and of `squeezed` leads back to that token alone.
        let (mut plain_at, mut squeezed_at) = (0, 1);
        for (index, token) in normalized.tokens.iter().enumerate() {
            let plain_end = plain_at + token.plain.len();
            prop_assert_eq!(
                normalized.token_range(plain_at, plain_end, false),
                Some((index, index))
            );
            let squeezed_end = squeezed_at + token.squeezed().len();
            prop_assert_eq!(
                normalized.token_range(squeezed_at, squeezed_end, true),
                Some((index, index))
            );
            plain_at = plain_end + 1;
            squeezed_at = squeezed_end + 1;
        }
        Ok(())
    }

    /// Normalising the normal form changes nothing: phrases are written in plain words and the
    /// lexicon maps to the words rules are written in, so a normal form must read as itself.
    fn check_idempotent(normalizer: &Normalizer, text: &str) -> Result<(), TestCaseError> {
        let once = normalizer.normalize(text);
        let twice = normalizer.normalize(&once.plain);
        prop_assert_eq!(&twice.plain, &once.plain, "text {:?}", text);
        prop_assert_eq!(&twice.squeezed, &once.squeezed, "text {:?}", text);
        Ok(())
    }

    /// Characters chosen to stress folding: look-alikes (with and without accents), combining
    /// marks, invisible and bidirectional controls, right-to-left scripts, emoji with modifiers,
    /// compatibility forms, digits and the symbols read as letters, and anything else.
    fn tricky_char() -> impl Strategy<Value = char> {
        const LOOK_ALIKES: &[char] = &[
            'а', 'е', 'о', 'р', 'с', 'у', 'х', 'і', 'ј', 'ѕ', 'ԁ', 'ԛ', 'ԝ', 'ӏ', 'һ', 'ё', 'ї',
            'ѐ', 'ѝ', 'й', 'α', 'ο', 'ρ', 'ν', 'ι', 'ε', 'κ', 'τ', 'υ', 'ω', 'ά', 'έ', 'ή', 'ί',
            'ό', 'ύ', 'ώ', 'ΐ', 'ΰ', 'Ά', 'Ό', 'ı', 'İ', 'ſ', 'ẞ', 'ß', '\u{212A}', '\u{2126}',
            'ɑ', 'ʐ',
        ];
        const COMPAT: &[char] = &[
            '½', '²', '①', '⑴', 'Ⅻ', 'ﬁ', 'ﬀ', '㏂', '…', '。', '¡', '¿', '°', '№', '™', 'Ａ',
            'ｚ', '０', '９', '１', '．', '，', 'ª', 'ᴬ', '٣', '۵', '७', '\u{00A0}', '\u{3000}',
        ];
        const INVISIBLE: &[char] = &[
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{200E}',
            '\u{200F}',
            '\u{202A}',
            '\u{202B}',
            '\u{202C}',
            '\u{202D}',
            '\u{202E}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{00AD}',
            '\u{FEFF}',
            '\u{FE0F}',
            '\u{034F}',
            '\u{061C}',
            '\u{E0041}',
        ];
        const PUNCTUATION: &[char] = &[
            '.', ',', '!', '?', ';', ':', '-', '_', '/', '~', '\'', '’', '`', '@', '$', '|', '(',
            ')', '\n', '\r', '\t', ' ', ' ', ' ', '«', '»', '—',
        ];
        prop_oneof![
            6 => proptest::char::range('a', 'z'),
            2 => proptest::char::range('A', 'Z'),
            2 => proptest::char::range('0', '9'),
            3 => proptest::sample::select(PUNCTUATION),
            3 => proptest::sample::select(LOOK_ALIKES),
            2 => proptest::sample::select(COMPAT),
            2 => proptest::sample::select(INVISIBLE),
            2 => proptest::char::range('\u{0300}', '\u{036F}'),
            1 => proptest::char::range('\u{05D0}', '\u{05EA}'),
            1 => proptest::char::range('\u{0600}', '\u{06FF}'),
            1 => proptest::char::range('\u{0900}', '\u{097F}'),
            1 => proptest::char::range('\u{AC00}', '\u{AC40}'),
            2 => proptest::char::range('\u{1F300}', '\u{1F6FF}'),
            1 => proptest::char::range('\u{1F3FB}', '\u{1F3FF}'),
            1 => proptest::char::range('\u{2190}', '\u{27BF}'),
            1 => proptest::char::range('\u{1F100}', '\u{1F1FF}'),
            2 => any::<char>(),
        ]
    }

    /// Any characters, controls and format characters included (`any::<String>()` draws only
    /// from `\PC`).
    fn any_text() -> impl Strategy<Value = String> {
        proptest::collection::vec(any::<char>(), 0..80).prop_map(String::from_iter)
    }

    fn tricky_text() -> impl Strategy<Value = String> {
        proptest::collection::vec(tricky_char(), 0..80).prop_map(String::from_iter)
    }

    proptest! {
        #[test]
        fn normalising_any_string_keeps_its_promises(text in any_text()) {
            check_invariants(&text, &Normalizer::default().normalize(&text))?;
            check_invariants(&text, &SHIPPED.normalize(&text))?;
        }

        #[test]
        fn normalising_tricky_text_keeps_its_promises(text in tricky_text()) {
            check_invariants(&text, &Normalizer::default().normalize(&text))?;
            check_invariants(&text, &SHIPPED.normalize(&text))?;
        }

        #[test]
        fn the_normal_form_of_any_string_is_its_own_normal_form(text in any_text()) {
            check_idempotent(&Normalizer::default(), &text)?;
            check_idempotent(&SHIPPED, &text)?;
        }

        #[test]
        fn the_normal_form_of_tricky_text_is_its_own_normal_form(text in tricky_text()) {
            check_idempotent(&Normalizer::default(), &text)?;
            check_idempotent(&SHIPPED, &text)?;
        }
    }
}
