//! `policies/redaction.toml`: which identifier kinds are redacted, for which countries' formats,
//! and the few per-kind settings. The file format is documented at the top of the shipped file;
//! `RedactionFile` is its wire form, `RedactionConfig` the checked result.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Kind, RedactionConfigError};

/// A country whose national formats are read (phones, postcodes, health and social numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Locale {
    /// UK phones (`07700 900123`), postcodes, NHS numbers.
    Uk,
    /// US phones (`(415) 555-2671`), ZIP codes, SSNs, Medicare MBIs.
    Us,
    /// Australian Medicare card numbers.
    Au,
}

impl Locale {
    pub const ALL: [Locale; 3] = [Locale::Uk, Locale::Us, Locale::Au];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Uk => "uk",
            Self::Us => "us",
            Self::Au => "au",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|locale| locale.as_str() == name)
    }
}

/// Where the built-in defaults say they come from in error messages.
const BUILT_IN: &str = "(built-in redaction defaults)";

/// The most words a name after a cue may have; longer runs of capitals are rarely one name.
const MOST_NAME_WORDS: usize = 5;

/// The checked configuration a [`super::Redactor`] is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedactionConfig {
    /// The file it was read from, named in every error.
    pub source: PathBuf,
    /// Kinds to detect, in file order, without repeats.
    pub kinds: Vec<Kind>,
    pub locales: Vec<Locale>,
    /// Capitalised words after a name cue taken as the name (1–5). Cues with a weak meaning
    /// ("I'm", "I am") need two words, so with 1 they are off.
    pub name_max_words: usize,
    /// Fewest digits a hospital record number must have after its cue.
    pub mrn_min_digits: usize,
    /// Cues added to the built-in English and Spanish ones, by kind.
    pub extra_cues: ExtraCues,
}

/// Operators' cues, added to the built-in ones (matched case-insensitively, spaces flexible).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtraCues {
    pub name: Vec<String>,
    pub phone: Vec<String>,
    pub postcode: Vec<String>,
    pub address: Vec<String>,
    pub date_of_birth: Vec<String>,
    pub mrn: Vec<String>,
}

impl Default for RedactionConfig {
    /// Every kind, UK and US formats: the same as the shipped `policies/redaction.toml`.
    fn default() -> Self {
        Self {
            source: PathBuf::from(BUILT_IN),
            kinds: Kind::ALL.to_vec(),
            locales: vec![Locale::Uk, Locale::Us],
            name_max_words: 3,
            mrn_min_digits: 4,
            extra_cues: ExtraCues::default(),
        }
    }
}

impl RedactionConfig {
    /// Reads and checks a redaction file.
    ///
    /// # Errors
    /// The file cannot be read, is not valid TOML of this format, or fails [`Self::parse`]'s
    /// checks; every message names the file and the key.
    pub fn load(path: &Path) -> Result<Self, RedactionConfigError> {
        let raw = std::fs::read_to_string(path).map_err(|source| RedactionConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &raw)
    }

    /// Parses and checks the text of a redaction file; `path` is only used in messages.
    ///
    /// # Errors
    /// Invalid TOML or an unknown key (`Parse`), an unknown kind or locale (`Unknown`), a kind
    /// listed twice or a setting out of range (`Invalid`), a kind whose country is not among the
    /// locales (`MissingLocale`).
    pub fn parse(path: &Path, raw: &str) -> Result<Self, RedactionConfigError> {
        let file: RedactionFile = toml::from_str(raw).map_err(|error| {
            let line = error
                .span()
                .map(|span| raw[..span.start.min(raw.len())].lines().count().max(1))
                .unwrap_or(0);
            RedactionConfigError::Parse {
                path: path.to_owned(),
                line,
                reason: error.message().to_owned(),
            }
        })?;
        file.check(path)
    }

    pub fn has(&self, kind: Kind) -> bool {
        self.kinds.contains(&kind)
    }

    pub fn reads(&self, locale: Locale) -> bool {
        self.locales.contains(&locale)
    }
}

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedactionFile {
    kinds: Vec<String>,
    locales: Vec<String>,
    #[serde(default)]
    name: NameSection,
    #[serde(default)]
    phone: CueSection,
    #[serde(default)]
    postcode: CueSection,
    #[serde(default)]
    address: CueSection,
    #[serde(default)]
    date_of_birth: CueSection,
    #[serde(default)]
    mrn: MrnSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NameSection {
    #[serde(default = "default_name_max_words")]
    max_words: usize,
    #[serde(default)]
    extra_cues: Vec<String>,
}

impl Default for NameSection {
    fn default() -> Self {
        Self {
            max_words: default_name_max_words(),
            extra_cues: Vec::new(),
        }
    }
}

fn default_name_max_words() -> usize {
    RedactionConfig::default().name_max_words
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CueSection {
    #[serde(default)]
    extra_cues: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MrnSection {
    #[serde(default = "default_mrn_min_digits")]
    min_digits: usize,
    #[serde(default)]
    extra_cues: Vec<String>,
}

impl Default for MrnSection {
    fn default() -> Self {
        Self {
            min_digits: default_mrn_min_digits(),
            extra_cues: Vec::new(),
        }
    }
}

fn default_mrn_min_digits() -> usize {
    RedactionConfig::default().mrn_min_digits
}

impl RedactionFile {
    fn check(self, path: &Path) -> Result<RedactionConfig, RedactionConfigError> {
        let invalid = |key: &str, value: String, problem: &str| RedactionConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            value,
            problem: problem.to_owned(),
        };
        let mut kinds = Vec::with_capacity(self.kinds.len());
        for name in &self.kinds {
            let kind = Kind::from_name(name).ok_or_else(|| RedactionConfigError::Unknown {
                path: path.to_owned(),
                key: "kinds",
                value: name.clone(),
                expected: Kind::ALL.map(Kind::as_str).join(", "),
            })?;
            if kinds.contains(&kind) {
                return Err(invalid("kinds", name.clone(), "is listed twice"));
            }
            kinds.push(kind);
        }
        let mut locales = Vec::with_capacity(self.locales.len());
        for name in &self.locales {
            let locale = Locale::from_name(name).ok_or_else(|| RedactionConfigError::Unknown {
                path: path.to_owned(),
                key: "locales",
                value: name.clone(),
                expected: Locale::ALL.map(Locale::as_str).join(", "),
            })?;
            if locales.contains(&locale) {
                return Err(invalid("locales", name.clone(), "is listed twice"));
            }
            locales.push(locale);
        }
        // A kind that only exists in some countries would silently detect nothing otherwise.
        for &kind in &kinds {
            let needs = match kind {
                Kind::NhsNumber => &[Locale::Uk][..],
                Kind::Ssn => &[Locale::Us][..],
                Kind::Medicare => &[Locale::Us, Locale::Au][..],
                Kind::Postcode => &[Locale::Uk, Locale::Us][..],
                _ => &[][..],
            };
            if !needs.is_empty() && !needs.iter().any(|locale| locales.contains(locale)) {
                return Err(RedactionConfigError::MissingLocale {
                    path: path.to_owned(),
                    kind,
                    needs: needs
                        .iter()
                        .map(|locale| format!("`{}`", locale.as_str()))
                        .collect::<Vec<_>>()
                        .join(" or "),
                });
            }
        }
        if !(1..=MOST_NAME_WORDS).contains(&self.name.max_words) {
            return Err(invalid(
                "name.max_words",
                self.name.max_words.to_string(),
                &format!("must be between 1 and {MOST_NAME_WORDS}"),
            ));
        }
        if !(1..=20).contains(&self.mrn.min_digits) {
            return Err(invalid(
                "mrn.min_digits",
                self.mrn.min_digits.to_string(),
                "must be between 1 and 20",
            ));
        }
        let extra_cues = ExtraCues {
            name: self.name.extra_cues,
            phone: self.phone.extra_cues,
            postcode: self.postcode.extra_cues,
            address: self.address.extra_cues,
            date_of_birth: self.date_of_birth.extra_cues,
            mrn: self.mrn.extra_cues,
        };
        for (key, cues) in [
            ("name.extra_cues", &extra_cues.name),
            ("phone.extra_cues", &extra_cues.phone),
            ("postcode.extra_cues", &extra_cues.postcode),
            ("address.extra_cues", &extra_cues.address),
            ("date_of_birth.extra_cues", &extra_cues.date_of_birth),
            ("mrn.extra_cues", &extra_cues.mrn),
        ] {
            for cue in cues {
                if cue.trim().is_empty() || cue.len() > 60 {
                    return Err(invalid(
                        key,
                        format!("{cue:?}"),
                        "must be a phrase of 1 to 60 characters",
                    ));
                }
            }
        }
        Ok(RedactionConfig {
            source: path.to_owned(),
            kinds,
            locales,
            name_max_words: self.name.max_words,
            mrn_min_digits: self.mrn.min_digits,
            extra_cues,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<RedactionConfig, RedactionConfigError> {
        RedactionConfig::parse(Path::new("policies/redaction.toml"), raw)
    }

    #[test]
    fn the_shipped_file_loads_and_matches_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/redaction.toml");
        let config = RedactionConfig::load(&path).expect("shipped file loads");
        let defaults = RedactionConfig::default();
        assert_eq!(config.kinds, defaults.kinds);
        assert_eq!(config.locales, defaults.locales);
        assert_eq!(config.name_max_words, defaults.name_max_words);
        assert_eq!(config.mrn_min_digits, defaults.mrn_min_digits);
    }

    #[test]
    fn settings_sections_are_optional() {
        let config = parse("kinds = [\"phone\", \"ssn\"]\nlocales = [\"us\"]\n").expect("valid");
        assert_eq!(config.kinds, vec![Kind::Phone, Kind::Ssn]);
        assert_eq!(config.name_max_words, 3);
    }

    #[test]
    fn an_unknown_kind_names_the_file_the_key_and_the_choices() {
        let error = parse("kinds = [\"phone\", \"passport\"]\nlocales = [\"uk\"]\n")
            .expect_err("unknown kind");
        let message = error.to_string();
        assert!(
            message.starts_with("policies/redaction.toml: kinds: unknown"),
            "{message}"
        );
        assert!(
            message.contains("`passport`") && message.contains("nhs_number"),
            "{message}"
        );
    }

    #[test]
    fn an_unknown_key_names_the_file_and_its_line() {
        let error = parse("kinds = []\nlocales = []\n\n[name]\nmax_word = 2\n").expect_err("typo");
        let message = error.to_string();
        // The parser points at the `[name]` table that holds the unknown key.
        assert!(
            message.starts_with("policies/redaction.toml:4:"),
            "{message}"
        );
        assert!(message.contains("unknown field `max_word`"), "{message}");
    }

    #[test]
    fn a_kind_without_its_country_is_refused() {
        let error = parse("kinds = [\"nhs_number\"]\nlocales = [\"us\"]\n").expect_err("no uk");
        assert_eq!(
            error.to_string(),
            "policies/redaction.toml: kinds: `nhs_number` needs locale `uk` in `locales`; \
             add the locale or remove the kind"
        );
    }

    #[test]
    fn out_of_range_settings_quote_the_key_and_value() {
        let error = parse("kinds = []\nlocales = []\n[name]\nmax_words = 9\n").expect_err("range");
        assert_eq!(
            error.to_string(),
            "policies/redaction.toml: name.max_words (9) must be between 1 and 5"
        );
        let error = parse("kinds = []\nlocales = []\n[mrn]\nextra_cues = [\" \"]\n")
            .expect_err("empty cue");
        assert!(error.to_string().contains("mrn.extra_cues"), "{error}");
        let error = parse("kinds = [\"ip\", \"ip\"]\nlocales = []\n").expect_err("twice");
        assert!(
            error.to_string().contains("kinds (ip) is listed twice"),
            "{error}"
        );
    }
}
