//! Identifier redaction: names, phone numbers, addresses and health and social numbers are
//! replaced by placeholders (`[PHONE_1]`) before a message leaves for the language model, and put
//! back in the reply the patient sees. The model never holds the patient's identifiers.
//!
//! * `config`: `policies/redaction.toml`, the kinds and countries' formats to detect.
//! * `detectors`: one regular expression per format, run only when a `RegexSet` pass over the
//!   message says it can match, and the checks that make a match an identifier.
//! * `checksum`: check digits and number ranges (NHS modulus 11, SSN ranges, MBI positions).
//! * `placeholders`: the per-conversation map from identifiers to placeholders, and `restore`.
//!
//! What is deliberately not redacted: numbers that are readings or doses (`500 mg`, `140/90`,
//! `38.5C`), symptom dates and times, ages, and names given without the patient's cue ("Dr Smith
//! said" stays as written in this version: a name is only taken after "my name is", "this is",
//! "call me", "me llamo" and the like).

mod checksum;
mod config;
mod detectors;
mod placeholders;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

pub use config::{ExtraCues, Locale, RedactionConfig};
pub use placeholders::Placeholders;

use detectors::Detectors;

/// A kind of identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Name,
    Phone,
    Email,
    Postcode,
    Address,
    DateOfBirth,
    NhsNumber,
    Ssn,
    Medicare,
    Mrn,
    Url,
    Ip,
}

impl Kind {
    pub const ALL: [Kind; 12] = [
        Kind::Name,
        Kind::Phone,
        Kind::Email,
        Kind::Postcode,
        Kind::Address,
        Kind::DateOfBirth,
        Kind::NhsNumber,
        Kind::Ssn,
        Kind::Medicare,
        Kind::Mrn,
        Kind::Url,
        Kind::Ip,
    ];

    /// The name used in `redaction.toml` and in serialised placeholders.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::Phone => "phone",
            Self::Email => "email",
            Self::Postcode => "postcode",
            Self::Address => "address",
            Self::DateOfBirth => "date_of_birth",
            Self::NhsNumber => "nhs_number",
            Self::Ssn => "ssn",
            Self::Medicare => "medicare",
            Self::Mrn => "mrn",
            Self::Url => "url",
            Self::Ip => "ip",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// The word inside the placeholder: `PHONE` in `[PHONE_1]`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Name => "NAME",
            Self::Phone => "PHONE",
            Self::Email => "EMAIL",
            Self::Postcode => "POSTCODE",
            Self::Address => "ADDRESS",
            Self::DateOfBirth => "DATE_OF_BIRTH",
            Self::NhsNumber => "NHS_NUMBER",
            Self::Ssn => "SSN",
            Self::Medicare => "MEDICARE",
            Self::Mrn => "MRN",
            Self::Url => "URL",
            Self::Ip => "IP",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RedactionConfigError {
    #[error("{path}: cannot read redaction config")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: invalid redaction config: {reason}")]
    Parse {
        path: PathBuf,
        /// 1-based; 0 when the parser did not say where.
        line: usize,
        reason: String,
    },
    #[error("{path}: {key}: unknown value `{value}` (expected one of {expected})")]
    Unknown {
        path: PathBuf,
        key: &'static str,
        value: String,
        expected: String,
    },
    #[error(
        "{path}: kinds: `{kind}` needs locale {needs} in `locales`; add the locale or remove the kind"
    )]
    MissingLocale {
        path: PathBuf,
        kind: Kind,
        needs: String,
    },
    #[error("{path}: {key} ({value}) {problem}")]
    Invalid {
        path: PathBuf,
        key: String,
        value: String,
        problem: String,
    },
    #[error("{path}: {key}: cannot compile the detector ({reason}); shorten or simplify the cues")]
    Compile {
        path: PathBuf,
        key: String,
        reason: String,
    },
}

/// An identifier found in a message: its kind and byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detection {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

/// A message with its identifiers replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redacted {
    pub text: String,
    /// The kinds replaced, each once, in `Kind` order: for logs and metrics, never the values.
    pub kinds: Vec<Kind>,
}

/// Finds identifiers and replaces them with a conversation's placeholders. Built once from the
/// configuration and shared: redaction takes `&self`.
pub struct Redactor {
    kinds: Vec<Kind>,
    detectors: Detectors,
    /// What was found in texts redacted lately. Every model request carries the conversation's
    /// recent lines again, and each was scanned for the request before: a line is scanned once,
    /// and each later request only writes its placeholders in.
    remembered: Mutex<Remembered>,
}

/// Detections of recent texts, keyed by the text. Bounded: emptied when full, so it never holds
/// more than [`Remembered::MOST_TEXTS`] texts of at most [`Remembered::LONGEST_TEXT`] bytes.
#[derive(Default)]
struct Remembered {
    found: HashMap<Box<str>, Arc<[Detection]>>,
}

impl Remembered {
    const MOST_TEXTS: usize = 4096;
    const LONGEST_TEXT: usize = 8 * 1024;
}

impl fmt::Debug for Redactor {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Redactor")
            .field("kinds", &self.kinds)
            .finish_non_exhaustive()
    }
}

impl Redactor {
    /// Reads `path` (normally `policies/redaction.toml`) and builds the detectors.
    ///
    /// # Errors
    /// See [`RedactionConfig::load`] and [`Redactor::new`].
    pub fn load(path: &Path) -> Result<Self, RedactionConfigError> {
        Self::new(&RedactionConfig::load(path)?)
    }

    /// Builds the detectors for a checked configuration.
    ///
    /// # Errors
    /// `Compile` when the regular expressions built from the cues exceed the regex size limits.
    pub fn new(config: &RedactionConfig) -> Result<Self, RedactionConfigError> {
        let mut kinds = config.kinds.clone();
        kinds.sort_unstable();
        Ok(Self {
            kinds,
            detectors: Detectors::build(config)?,
            remembered: Mutex::default(),
        })
    }

    /// The kinds this redactor detects, in `Kind` order.
    pub fn kinds(&self) -> &[Kind] {
        &self.kinds
    }

    /// The identifiers in `text`, in order and never overlapping. Never panics.
    pub fn detect(&self, text: &str) -> Vec<Detection> {
        self.detectors.find(text)
    }

    /// [`Redactor::detect`], answered from memory for a text seen lately.
    fn detect_remembered(&self, text: &str) -> Arc<[Detection]> {
        if text.len() > Remembered::LONGEST_TEXT {
            return self.detect(text).into();
        }
        let lock = || {
            self.remembered
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some(found) = lock().found.get(text) {
            return Arc::clone(found);
        }
        // Scanned outside the lock: two threads may scan the same text, and both get the same.
        let found: Arc<[Detection]> = self.detect(text).into();
        let mut remembered = lock();
        if remembered.found.len() >= Remembered::MOST_TEXTS {
            remembered.found.clear();
        }
        remembered.found.insert(text.into(), Arc::clone(&found));
        found
    }

    /// Replaces each identifier in `text` with its placeholder, adding new identifiers to
    /// `placeholders` so the same value gets the same placeholder later in the conversation.
    pub fn redact(&self, text: &str, placeholders: &mut Placeholders) -> Redacted {
        let detections = self.detect_remembered(text);
        if detections.is_empty() {
            return Redacted {
                text: text.to_owned(),
                kinds: Vec::new(),
            };
        }
        let mut out = String::with_capacity(text.len() + 16 * detections.len());
        let mut kinds = Vec::with_capacity(detections.len());
        let mut key = String::new();
        let mut copied = 0;
        for detection in detections.iter() {
            out.push_str(&text[copied..detection.start]);
            placeholders.write(
                detection.kind,
                &text[detection.start..detection.end],
                &mut key,
                &mut out,
            );
            copied = detection.end;
            kinds.push(detection.kind);
        }
        out.push_str(&text[copied..]);
        kinds.sort_unstable();
        kinds.dedup();
        Redacted { text: out, kinds }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use proptest::prelude::*;

    use super::*;

    static REDACTOR: LazyLock<Redactor> = LazyLock::new(|| {
        let config = RedactionConfig {
            locales: Locale::ALL.to_vec(),
            ..RedactionConfig::default()
        };
        Redactor::new(&config).expect("default config builds")
    });

    #[test]
    fn a_text_redacted_again_is_answered_from_memory_with_this_conversation_s_placeholders() {
        let redactor = Redactor::new(&RedactionConfig::default()).expect("default config builds");
        let line = "call me on 07700 900123 please";
        let mut first = Placeholders::new();
        let once = redactor.redact(line, &mut first);
        assert!(
            redactor
                .remembered
                .lock()
                .expect("not poisoned")
                .found
                .contains_key(line),
            "the scan is kept"
        );
        let mut again = Placeholders::new();
        redactor.redact("ring 07700 900456 instead", &mut again);
        let twice = redactor.redact(line, &mut again);
        assert_eq!(once.text, "call me on [PHONE_1] please");
        assert_eq!(
            twice.text, "call me on [PHONE_2] please",
            "the remembered scan, numbered by the conversation it is used in"
        );
        assert_eq!(twice.kinds, once.kinds);
    }

    #[test]
    fn what_is_remembered_stays_bounded() {
        let redactor = Redactor::new(&RedactionConfig::default()).expect("default config builds");
        let mut placeholders = Placeholders::new();
        for index in 0..=Remembered::MOST_TEXTS {
            redactor.redact(&format!("message number {index}"), &mut placeholders);
        }
        let long = "a".repeat(Remembered::LONGEST_TEXT + 1);
        redactor.redact(&long, &mut placeholders);
        let remembered = redactor.remembered.lock().expect("not poisoned");
        assert!(remembered.found.len() <= Remembered::MOST_TEXTS);
        assert!(
            !remembered.found.contains_key(long.as_str()),
            "too long to keep"
        );
    }

    #[test]
    fn identifiers_become_placeholders_and_come_back_in_the_reply() {
        let mut placeholders = Placeholders::new();
        let message = "My name is Sarah Jones, call 07700 900123 or sarah@example.org. \
                       NHS 943 476 5919, born on 3 March 1980. I took 500 mg at 10:30.";
        let redacted = REDACTOR.redact(message, &mut placeholders);
        assert_eq!(
            redacted.text,
            "My name is [NAME_1], call [PHONE_1] or [EMAIL_1]. \
             NHS [NHS_NUMBER_1], born on [DATE_OF_BIRTH_1]. I took 500 mg at 10:30."
        );
        assert_eq!(
            redacted.kinds,
            vec![
                Kind::Name,
                Kind::Phone,
                Kind::Email,
                Kind::DateOfBirth,
                Kind::NhsNumber
            ]
        );
        let reply = "Thank you [NAME_1]. A nurse will ring [PHONE_1] today.";
        assert_eq!(
            placeholders.restore(reply),
            "Thank you Sarah Jones. A nurse will ring 07700 900123 today."
        );
        assert_eq!(placeholders.restore(&redacted.text), message);
    }

    #[test]
    fn the_same_identifier_keeps_its_placeholder_across_messages() {
        let mut placeholders = Placeholders::new();
        let first = REDACTOR.redact("call 07700 900123 or 020 7946 0018", &mut placeholders);
        assert_eq!(first.text, "call [PHONE_1] or [PHONE_2]");
        let json = serde_json::to_string(&placeholders).expect("serialises");
        let mut placeholders: Placeholders = serde_json::from_str(&json).expect("deserialises");
        let second = REDACTOR.redact("sorry, it's +44 7700 900123", &mut placeholders);
        assert_eq!(second.text, "sorry, it's [PHONE_1]");
        assert_eq!(placeholders.restore("[PHONE_1]"), "07700 900123");
    }

    #[test]
    fn text_without_identifiers_is_returned_unchanged() {
        let mut placeholders = Placeholders::new();
        let redacted = REDACTOR.redact("chest pain since 12/03/2025, BP 140/90", &mut placeholders);
        assert_eq!(redacted.text, "chest pain since 12/03/2025, BP 140/90");
        assert!(redacted.kinds.is_empty() && placeholders.is_empty());
    }

    #[test]
    fn only_the_configured_kinds_are_redacted() {
        let config = RedactionConfig {
            kinds: vec![Kind::Email],
            ..RedactionConfig::default()
        };
        let redactor = Redactor::new(&config).expect("builds");
        let mut placeholders = Placeholders::new();
        let redacted = redactor.redact("a@b.org 07700 900123", &mut placeholders);
        assert_eq!(redacted.text, "[EMAIL_1] 07700 900123");
        assert_eq!(redactor.kinds(), &[Kind::Email]);
    }

    #[test]
    fn extra_cues_from_the_file_are_used() {
        let raw = "kinds = [\"name\", \"mrn\"]\nlocales = [\"uk\"]\n\
                   [name]\nextra_cues = [\"known as\"]\n[mrn]\nextra_cues = [\"clinic ref\"]\n";
        let config = RedactionConfig::parse(Path::new("redaction.toml"), raw).expect("valid");
        let redactor = Redactor::new(&config).expect("builds");
        let mut placeholders = Placeholders::new();
        let redacted = redactor.redact("known as Sam, clinic ref AB12345", &mut placeholders);
        assert_eq!(redacted.text, "known as [NAME_1], clinic ref [MRN_1]");
    }

    #[test]
    fn a_missing_file_names_the_file() {
        let error = Redactor::load(Path::new("/nonexistent/redaction.toml")).expect_err("missing");
        assert_eq!(
            error.to_string(),
            "/nonexistent/redaction.toml: cannot read redaction config"
        );
    }

    /// A message of about 1 KB, clinical text with a few identifiers.
    fn kilobyte_message() -> String {
        let mut message = String::new();
        while message.len() < 1000 {
            message.push_str(
                "I have had chest pain since 12/03/2025, BP 140/90, temp 38.5C, took 2 x 20mg \
                 at 10:30. My name is Sarah Jones, call 07700 900123. ",
            );
        }
        message
    }

    // Speed is measured by a benchmark, never by a timed unit test; this checks the same
    // kilobyte message for correctness.
    #[test]
    fn a_kilobyte_message_round_trips_through_redaction() {
        let message = kilobyte_message();
        let mut placeholders = Placeholders::new();
        let redacted = REDACTOR.redact(&message, &mut placeholders);
        assert!(!redacted.kinds.is_empty());
        assert_eq!(placeholders.restore(&redacted.text), message);
    }

    const WORDS: &[&str] = &[
        "i", "have", "chest", "pain", "since", "took", "tablets", "and", "the", "today", "my",
        "is", "at", "mg", "500", "12", "140/90", "38.5C", "10:30", "please", "help", ",", ".",
        "\n", "números", "niño", "🙂",
    ];

    /// Identifiers with one spelling each, so restoring gives back exactly what was typed.
    const IDENTIFIERS: &[&str] = &[
        "07700 900123",
        "(415) 555-2671",
        "+34 612 345 678",
        "sarah@example.org",
        "https://example.org/a?b=1",
        "192.168.1.20",
        "943 476 5919",
        "123-45-6789",
        "1EG4-TE5-MK73",
        "my name is Sarah Jones",
        "postcode SW1A 1AA",
        "12 Baker Street",
        "DOB 12/03/1980",
        "MRN 12345678",
    ];

    fn piece() -> impl Strategy<Value = &'static str> {
        prop_oneof![
            3 => proptest::sample::select(WORDS),
            1 => proptest::sample::select(IDENTIFIERS),
        ]
    }

    proptest! {
        #[test]
        fn redaction_never_panics_on_any_string(text in any::<String>()) {
            let mut placeholders = Placeholders::new();
            let redacted = REDACTOR.redact(&text, &mut placeholders);
            placeholders.restore(&redacted.text);
        }

        #[test]
        fn redaction_never_panics_on_identifier_like_text(
            text in "[0-9A-Za-z +()./:@_#'’ñé\\-\n]{0,160}"
        ) {
            let mut placeholders = Placeholders::new();
            REDACTOR.redact(&text, &mut placeholders);
        }

        #[test]
        fn restoring_a_redacted_message_gives_it_back(
            pieces in proptest::collection::vec(piece(), 0..40)
        ) {
            let text = pieces.join(" ");
            let mut placeholders = Placeholders::new();
            let redacted = REDACTOR.redact(&text, &mut placeholders);
            prop_assert_eq!(placeholders.restore(&redacted.text), text);
            for identifier in ["07700 900123", "sarah@example.org", "943 476 5919", "1EG4-TE5-MK73"] {
                prop_assert!(!redacted.text.contains(identifier), "{} left in {:?}", identifier, redacted.text);
            }
        }
    }
}
