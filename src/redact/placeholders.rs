//! One conversation's placeholders: each identifier, normalised so that `07700 900123` and
//! `+44 7700 900123` are one number, gets `[PHONE_1]` the first time it is seen and the same
//! placeholder every time after. `restore` puts the patient's own spelling back into the model's
//! reply. The map is serialisable so the session can keep it between messages and replicas.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::Kind;

/// The longest placeholder `restore` looks for: `[DATE_OF_BIRTH_4294967295]` is 26 bytes.
const LONGEST_PLACEHOLDER: usize = 32;

/// Identifiers seen in a conversation and their placeholders.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placeholders {
    /// In the order they were first seen. A conversation holds a handful, so a scan beats a map
    /// and the serialised form stays a plain list.
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    kind: Kind,
    /// 1-based and counted per kind: `[PHONE_2]` is the second phone number.
    number: u32,
    /// The value normalised: what makes two spellings the same identifier.
    key: String,
    /// The spelling first seen, which `restore` puts back.
    original: String,
}

impl Entry {
    fn write_placeholder(&self, out: &mut String) {
        // Writing to a String cannot fail.
        let _ = write!(out, "[{}_{}]", self.kind.label(), self.number);
    }
}

impl Placeholders {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The placeholder for `original`, assigning the next one of its kind the first time.
    pub fn placeholder_for(&mut self, kind: Kind, original: &str) -> String {
        let mut out = String::with_capacity(16);
        self.write(kind, original, &mut String::new(), &mut out);
        out
    }

    /// Appends the placeholder for `original` to `out`; `key` is scratch space, reused across
    /// the identifiers of a message so a value seen before costs no allocation.
    pub(super) fn write(&mut self, kind: Kind, original: &str, key: &mut String, out: &mut String) {
        key.clear();
        normalise(kind, original, key);
        if let Some(entry) = self
            .entries
            .iter()
            .find(|entry| entry.kind == kind && entry.key == *key)
        {
            entry.write_placeholder(out);
            return;
        }
        let number = self
            .entries
            .iter()
            .filter(|entry| entry.kind == kind)
            .count()
            .saturating_add(1);
        let entry = Entry {
            kind,
            number: u32::try_from(number).unwrap_or(u32::MAX),
            key: key.clone(),
            original: original.to_owned(),
        };
        entry.write_placeholder(out);
        self.entries.push(entry);
    }

    /// The original value behind a placeholder such as `[PHONE_1]` (the label in any case).
    pub fn original(&self, placeholder: &str) -> Option<&str> {
        self.placeholder_at(placeholder)
            .filter(|&(length, _)| length == placeholder.len())
            .map(|(_, original)| original)
    }

    /// `text` with every known placeholder replaced by the patient's original value; unknown
    /// ones (a number the model made up) are left as written.
    pub fn restore(&self, text: &str) -> String {
        if self.entries.is_empty() || !text.contains('[') {
            return text.to_owned();
        }
        let mut out = String::with_capacity(text.len() + 16);
        let mut rest = text;
        while let Some(open) = rest.find('[') {
            out.push_str(&rest[..open]);
            let from_bracket = &rest[open..];
            match self.placeholder_at(from_bracket) {
                Some((length, original)) => {
                    out.push_str(original);
                    rest = &from_bracket[length..];
                }
                None => {
                    out.push('[');
                    rest = &from_bracket[1..];
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// How many bytes at the end of a streamed chunk could be the start of a placeholder
    /// (`… call [PHO`): hold them back until the next chunk so `restore` sees the whole of it.
    pub fn unfinished_placeholder_len(text: &str) -> usize {
        let Some(open) = text.rfind('[') else {
            return 0;
        };
        let tail = &text[open + 1..];
        let could_be_one = tail.len() < LONGEST_PLACEHOLDER
            && tail
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_');
        if could_be_one { text.len() - open } else { 0 }
    }

    /// The placeholder at the start of `text` (which starts with `[`): its length and original.
    fn placeholder_at(&self, text: &str) -> Option<(usize, &str)> {
        if !text.starts_with('[') {
            return None;
        }
        let close = text
            .bytes()
            .take(LONGEST_PLACEHOLDER)
            .position(|byte| byte == b']')?;
        let (label, number) = text[1..close].rsplit_once('_')?;
        if number.is_empty() || !number.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        let number: u32 = number.parse().ok()?;
        self.entries
            .iter()
            .find(|entry| entry.number == number && entry.kind.label().eq_ignore_ascii_case(label))
            .map(|entry| (close + 1, entry.original.as_str()))
    }
}

/// Writes the form under which two spellings of one identifier compare equal.
fn normalise(kind: Kind, original: &str, key: &mut String) {
    match kind {
        Kind::Phone => phone_key(original, key),
        Kind::Email | Kind::Ip => key.extend(original.chars().flat_map(char::to_lowercase)),
        // Paths and queries are case-sensitive; only the scheme and host are not, and a
        // conversation rarely holds one URL in two spellings.
        Kind::Url => key.push_str(original),
        // Words in lower case, one space apart: `12 Baker St.` is `12 baker st`.
        Kind::Name | Kind::Address | Kind::DateOfBirth => {
            for word in original
                .split(|ch: char| !ch.is_alphanumeric())
                .filter(|word| !word.is_empty())
            {
                if !key.is_empty() {
                    key.push(' ');
                }
                key.extend(word.chars().flat_map(char::to_lowercase));
            }
        }
        Kind::Postcode | Kind::NhsNumber | Kind::Ssn | Kind::Medicare | Kind::Mrn => key.extend(
            original
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .map(|ch| ch.to_ascii_uppercase()),
        ),
    }
}

/// Digits with the country code: `07700 900123`, `+44 (0)7700 900123` and `0044 7700 900123`
/// are all `447700900123`; `(415) 555-2671` and `+1 415 555 2671` are `14155552671`.
fn phone_key(original: &str, key: &mut String) {
    let trimmed = original.trim_start();
    let (before, after) = match trimmed.find("(0)") {
        Some(at) => (&trimmed[..at], &trimmed[at + 3..]),
        None => (trimmed, ""),
    };
    let mut digits = before
        .chars()
        .chain(after.chars())
        .filter(char::is_ascii_digit);
    let count = before
        .bytes()
        .chain(after.bytes())
        .filter(u8::is_ascii_digit)
        .count();
    if trimmed.starts_with('+') {
        // Already international.
    } else if trimmed.starts_with("00") {
        // The international prefix.
        digits.nth(1);
    } else if trimmed.trim_start_matches('(').starts_with('0') {
        // Only UK national numbers start with a trunk 0 among the formats we read.
        digits.next();
        key.push_str("44");
    } else if count == 10 {
        key.push('1');
    }
    key.extend(digits);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_value_keeps_its_placeholder_and_kinds_count_separately() {
        let mut placeholders = Placeholders::new();
        assert_eq!(
            placeholders.placeholder_for(Kind::Phone, "07700 900123"),
            "[PHONE_1]"
        );
        assert_eq!(
            placeholders.placeholder_for(Kind::Email, "a@b.org"),
            "[EMAIL_1]"
        );
        assert_eq!(
            placeholders.placeholder_for(Kind::Phone, "020 7946 0018"),
            "[PHONE_2]"
        );
        assert_eq!(
            placeholders.placeholder_for(Kind::Phone, "07700900123"),
            "[PHONE_1]"
        );
        assert_eq!(
            placeholders.placeholder_for(Kind::Phone, "+44 7700 900123"),
            "[PHONE_1]"
        );
        assert_eq!(
            placeholders.placeholder_for(Kind::Email, "A@B.org"),
            "[EMAIL_1]"
        );
        assert_eq!(placeholders.len(), 3);
    }

    fn key(kind: Kind, original: &str) -> String {
        let mut key = String::new();
        normalise(kind, original, &mut key);
        key
    }

    #[test]
    fn phone_numbers_normalise_to_digits_with_the_country_code() {
        assert_eq!(key(Kind::Phone, "+44 (0)20 7946 0018"), "442079460018");
        assert_eq!(key(Kind::Phone, "0044 20 7946 0018"), "442079460018");
        assert_eq!(key(Kind::Phone, "(020) 7946 0018"), "442079460018");
        assert_eq!(key(Kind::Phone, "07700 900123"), "447700900123");
        assert_eq!(key(Kind::Phone, "(415) 555-2671"), "14155552671");
        assert_eq!(key(Kind::Phone, "+1 415.555.2671"), "14155552671");
        assert_eq!(key(Kind::Phone, "1-415-555-2671"), "14155552671");
    }

    #[test]
    fn other_kinds_normalise_case_spaces_and_punctuation() {
        assert_eq!(key(Kind::Name, "Sarah  JONES"), "sarah jones");
        assert_eq!(key(Kind::Address, "12 Baker St."), "12 baker st");
        assert_eq!(key(Kind::Postcode, "sw1a 1aa"), "SW1A1AA");
        assert_eq!(key(Kind::NhsNumber, "943 476 5919"), "9434765919");
        assert_eq!(key(Kind::Email, "Sarah@Example.ORG"), "sarah@example.org");
        assert_eq!(key(Kind::Url, "https://x.org/A"), "https://x.org/A");
    }

    #[test]
    fn restore_puts_the_first_spelling_back_and_leaves_unknown_placeholders() {
        let mut placeholders = Placeholders::new();
        placeholders.placeholder_for(Kind::Phone, "07700 900123");
        placeholders.placeholder_for(Kind::Name, "Sarah Jones");
        let reply = "Thanks [NAME_1], we will call [PHONE_1] or [phone_1], not [PHONE_2] [x] [";
        assert_eq!(
            placeholders.restore(reply),
            "Thanks Sarah Jones, we will call 07700 900123 or 07700 900123, not [PHONE_2] [x] ["
        );
        assert_eq!(placeholders.original("[NAME_1]"), Some("Sarah Jones"));
        assert_eq!(placeholders.original("[NAME_1] "), None);
        assert_eq!(placeholders.original("[NAME_+1]"), None);
    }

    #[test]
    fn restore_keeps_text_without_placeholders_and_multibyte_text_intact() {
        let mut placeholders = Placeholders::new();
        placeholders.placeholder_for(Kind::Email, "josé@ejemplo.es");
        assert_eq!(
            placeholders.restore("¿[EMAIL_1]? ñ [é"),
            "¿josé@ejemplo.es? ñ [é"
        );
        assert_eq!(Placeholders::new().restore("[EMAIL_1]"), "[EMAIL_1]");
    }

    #[test]
    fn a_placeholder_split_across_chunks_is_held_back() {
        assert_eq!(Placeholders::unfinished_placeholder_len("call [PHO"), 4);
        assert_eq!(Placeholders::unfinished_placeholder_len("call ["), 1);
        assert_eq!(
            Placeholders::unfinished_placeholder_len("call [PHONE_1]"),
            0
        );
        assert_eq!(Placeholders::unfinished_placeholder_len("a [note] b"), 0);
        assert_eq!(Placeholders::unfinished_placeholder_len("no bracket"), 0);
    }

    #[test]
    fn placeholders_survive_serialisation() {
        let mut placeholders = Placeholders::new();
        placeholders.placeholder_for(Kind::NhsNumber, "943 476 5919");
        placeholders.placeholder_for(Kind::DateOfBirth, "3 March 1980");
        let json = serde_json::to_string(&placeholders).expect("serialises");
        let back: Placeholders = serde_json::from_str(&json).expect("deserialises");
        assert_eq!(back, placeholders);
        assert!(json.contains("\"nhs_number\""), "{json}");
        assert_eq!(back.restore("[DATE_OF_BIRTH_1]"), "3 March 1980");
    }
}
