//! The policy file format as written by operators (see `docs/policies.md`). These types are the
//! wire form only; `compile` turns them into the matcher.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Severity;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    pub meta: Meta,
    /// Named phrase lists that rules anywhere in the set use as `@id`.
    #[serde(default)]
    pub concept: Vec<ConceptSpec>,
    #[serde(default)]
    pub rule: Vec<RuleSpec>,
    #[serde(default)]
    pub output_rule: Vec<OutputRuleSpec>,
    #[serde(default)]
    pub test: Vec<TestSpec>,
    #[serde(default)]
    pub output_test: Vec<OutputTestSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    pub id: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub sources: Vec<String>,
}

/// A named list of phrases: written once, used by every rule that names it as `@id` in its
/// `triggers`, `requires` or `unless`, so a wording added to it reaches all of them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConceptSpec {
    pub id: String,
    #[serde(default)]
    pub summary: String,
    pub phrases: Phrases,
}

/// Phrases either as a plain list (English) or by language.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum Phrases {
    English(Vec<String>),
    ByLanguage(BTreeMap<String, Vec<String>>),
}

impl Default for Phrases {
    fn default() -> Self {
        Self::English(Vec::new())
    }
}

impl Phrases {
    /// `(language, phrase)` pairs.
    pub fn iter(&self) -> Box<dyn Iterator<Item = (&str, &str)> + '_> {
        match self {
            Self::English(list) => Box::new(list.iter().map(|phrase| ("en", phrase.as_str()))),
            Self::ByLanguage(map) => Box::new(map.iter().flat_map(|(language, list)| {
                list.iter()
                    .map(move |phrase| (language.as_str(), phrase.as_str()))
            })),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    #[default]
    Message,
    Conversation,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ContextMode {
    #[default]
    Default,
    IgnoreNegation,
    IgnoreHistory,
}

#[derive(Debug, Deserialize, Clone, Copy, Default)]
#[serde(deny_unknown_fields)]
pub struct Bounds {
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Apply the bounds only when the message gives a reading; without one the rule still fires
    /// on its words ("newborn, feels hot"), with one it must be in bounds ("temp 37.2").
    #[serde(default)]
    pub when_read: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub id: String,
    pub severity: Severity,
    #[serde(default)]
    pub summary: String,
    pub guidance: String,
    #[serde(default)]
    pub advice: BTreeMap<String, String>,
    #[serde(default)]
    pub triggers: Phrases,
    /// Regular expressions, as a plain list (English) or by language like `triggers`.
    #[serde(default)]
    pub patterns: Phrases,
    #[serde(default)]
    pub requires: Vec<Vec<String>>,
    #[serde(default)]
    pub unless: Vec<String>,
    #[serde(default)]
    pub window: Window,
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub context: ContextMode,
    /// Send routine rules (a request for a person) to the nurse queue too.
    pub escalate: Option<bool>,
    #[serde(default)]
    pub measures: BTreeMap<String, Bounds>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OutputAction {
    Replace,
    Redact,
    Append,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputRuleSpec {
    pub id: String,
    #[serde(default)]
    pub when_flag: Vec<Severity>,
    pub action: OutputAction,
    #[serde(default)]
    pub triggers: Phrases,
    #[serde(default)]
    pub patterns: Vec<String>,
    pub text: String,
    #[serde(default)]
    pub summary: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestSpec {
    pub text: String,
    pub expect: Severity,
    pub rule: Option<String>,
    /// Earlier patient messages, for rules with `window = "conversation"`.
    #[serde(default)]
    pub before: Vec<String>,
    #[serde(default)]
    pub note: String,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ExpectedAction {
    Pass,
    Replace,
    Redact,
    Append,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputTestSpec {
    pub text: String,
    #[serde(default = "routine")]
    pub flag: Severity,
    pub expect: ExpectedAction,
    pub rule: Option<String>,
    #[serde(default)]
    pub note: String,
}

fn routine() -> Severity {
    Severity::Routine
}

/// `lexicon.toml`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LexiconFile {
    #[serde(default)]
    pub words: BTreeMap<String, String>,
}

/// `safety_net.toml`: the statistical safety net's settings, its weights file and the two rules
/// it raises a decision with (see `policy::safety_net`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafetyNetFile {
    /// The weights file, beside this one.
    pub weights: String,
    pub urgent_at: f32,
    pub emergency_at: f32,
    pub bias_urgent: f32,
    pub bias_emergency: f32,
    /// Two rules without triggers: one urgent, one emergency. They give the raised decision its
    /// id, summary and guidance.
    pub rule: Vec<RuleSpec>,
}

/// `measures.toml`: the words measures are read by (each list is described in the shipped file).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MeasuresFile {
    pub child_words: Vec<String>,
    pub age_units: Vec<String>,
    pub age_unit_days: Vec<String>,
    pub age_unit_weeks: Vec<String>,
    pub age_unit_months: Vec<String>,
    pub age_unit_years: Vec<String>,
    pub age_links: Vec<String>,
    pub units_before_number: Vec<String>,
    pub unit_links: Vec<String>,
    pub links_before_child: Vec<String>,
    pub time_since_words: Vec<String>,
    pub ago_after_number: Vec<String>,
    pub duration_words: Vec<String>,
    pub temperature_words: Vec<String>,
    pub thermometers: Vec<String>,
    pub degree_words: Vec<String>,
    pub glucose_words: Vec<String>,
    pub glucose_devices: Vec<String>,
    pub glucose_links: Vec<String>,
    pub pregnancy_words: Vec<String>,
    pub tablet_words: Vec<String>,
    pub saturation_words: Vec<String>,
    pub pressure_words: Vec<String>,
    pub pressure_links: Vec<String>,
    pub breathing_rate_words: Vec<String>,
    pub breath_units: Vec<String>,
    pub not_temperature_names: Vec<String>,
    pub not_temperature_units: Vec<String>,
    pub heart_rate_words: Vec<String>,
    pub heart_units: Vec<String>,
    pub vital_links: Vec<String>,
}

/// One kind of context cue: phrases before the finding, after it, and look-alikes that are not
/// cues at all.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CueSpec {
    #[serde(default)]
    pub before: Vec<String>,
    #[serde(default)]
    pub after: Vec<String>,
    /// After the finding with no word between, reaching that word only (Turkish "ateşim yok").
    #[serde(default)]
    pub after_next_word: Vec<String>,
    #[serde(default)]
    pub pseudo: Vec<String>,
    /// Cues of one language only, by language code: they apply to findings of that language's
    /// triggers, and to requirements' phrases (which have no language) in a message with a
    /// trigger of that language; never to another language's findings.
    /// For a word that is a cue in one language and an ordinary word in another: Spanish "ni"
    /// (nor) is Swahili and Yoruba "ni" (is), before "38 weeks" or "fever".
    #[serde(default)]
    pub in_language: BTreeMap<String, LanguageCues>,
}

/// A cue kind's phrases for one language (see `CueSpec::in_language`). No look-alikes here: a
/// look-alike cancels a cue wherever it stands, whichever language the finding is in.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LanguageCues {
    #[serde(default)]
    pub before: Vec<String>,
    #[serde(default)]
    pub after: Vec<String>,
    #[serde(default)]
    pub after_next_word: Vec<String>,
}

/// `context.toml`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ContextFile {
    /// How many words a scope reaches at most.
    #[serde(default = "default_scope")]
    pub scope_words: usize,
    /// How far, in tokens, an `unless` phrase reaches from a rule's trigger; none: the whole
    /// message.
    #[serde(default)]
    pub unless_reach: Option<usize>,
    #[serde(default)]
    pub negation: CueSpec,
    #[serde(default)]
    pub historical: CueSpec,
    #[serde(default)]
    pub hypothetical: CueSpec,
    #[serde(default)]
    pub experiencer: CueSpec,
    /// Cues that mean the other person's finding is their (family) history.
    #[serde(default)]
    pub family_history: Vec<String>,
    /// Cues that make a finding current despite a historical cue ("again", "right now").
    #[serde(default)]
    pub acute: Vec<String>,
    /// Cues that an earlier episode told before them is back ("now the same pain is back").
    #[serde(default)]
    pub recurrence: Vec<String>,
    #[serde(default)]
    pub terminators: Vec<String>,
    /// Terminators of negation scopes only ("no fever, I have chest pain").
    #[serde(default)]
    pub negation_terminators: Vec<String>,
    #[serde(default)]
    pub figurative: Vec<String>,
    /// Answers of one to three words that say no to a checklist question ("chest pain? no",
    /// "not at all").
    #[serde(default)]
    pub answers_no: Vec<String>,
    /// Negation words that name an exception rather than deny it: "without my glasses" is the
    /// exception itself, not a denial of it.
    #[serde(default)]
    pub exception_words: Vec<String>,
    /// Phrases that take back what came before them as a joke or an excuse ("haha no, I'm
    /// serious", "he has always stammered but this is different"): an exception (`unless`)
    /// written before one is no exception.
    #[serde(default)]
    pub retractions: Vec<String>,
    /// Words that turn to what matters ("but", "pero", "aber"): an exception (`unless`) before one
    /// does not reach a finding after it. "The headache has gone now but his face is drooping"
    /// keeps the face; "his face drooped for ten minutes but it's gone now" keeps its exception.
    #[serde(default)]
    pub contrasts: Vec<String>,
    /// Words that give a clause after a comma a subject of its own ("…, he collapsed"): a
    /// question or a condition stops there.
    #[serde(default)]
    pub clause_subjects: Vec<String>,
}

fn default_scope() -> usize {
    8
}
