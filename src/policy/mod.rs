//! Red-flag policies: files operators write (`docs/policies.md`), compiled into one scan, with a
//! context engine that tells "I have chest pain" from "no chest pain" and "my dad had chest pain
//! in 2010". A decision names its rule, the matched span, the context and the guidance.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub mod context;
pub mod eval;
pub mod file;
pub mod measures;
pub mod normalize;
mod number_words;
pub mod output;
pub mod phrases;
pub mod prefixes;
pub mod reload;
pub mod safety_net;
pub mod spelling;
pub mod testing;

use context::{Assessment, CueHit, CueKind, Direction, MessageContext};
use file::{
    Bounds, ContextFile, ContextMode, LexiconFile, MeasuresFile, PolicyFile, RuleSpec,
    SafetyNetFile, Window,
};
use measures::{Measure, MeasureWords, Measures};
use normalize::{Lexicon, NormalizedText, Normalizer, TokenKind};
use phrases::{Hit, PhraseError, PhraseSet, PhraseSetBuilder};

use crate::prompts::{PromptError, Prompts};

/// For small maps keyed by rule numbers (not input): a fast hasher.
type FastHash = foldhash::fast::RandomState;

/// How serious a finding is. Ordered: `Routine < Urgent < Emergency`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    #[default]
    Routine,
    Urgent,
    Emergency,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Routine => "routine",
            Self::Urgent => "urgent",
            Self::Emergency => "emergency",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyLoadError {
    #[error("{path}: cannot read policy file")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid policy file: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("{path}: concept `{concept}`: {reason}")]
    Concept {
        path: PathBuf,
        concept: String,
        reason: String,
    },
    #[error("{path}: rule `{rule}`: {reason}")]
    Rule {
        path: PathBuf,
        rule: String,
        reason: String,
    },
    #[error("{path}: {source}")]
    Phrase {
        path: PathBuf,
        #[source]
        source: PhraseError,
    },
    #[error("rule id `{0}` is defined twice; rule ids must be unique across the policy set")]
    DuplicateRule(String),
    #[error("guidance: {0}")]
    Guidance(#[from] PromptError),
    #[error("policy directory {0} has no policy files")]
    Empty(PathBuf),
    #[error("{failed} policy tests failed; the set was not loaded")]
    TestsFailed {
        failed: usize,
        report: Box<testing::TestReport>,
    },
    #[error("could not compile the phrase automaton: {0}")]
    Compile(PhraseError),
}

/// What a phrase found in a message means for the rules.
#[derive(Debug, Clone)]
enum Role {
    Trigger {
        rule: usize,
        language: String,
    },
    Require {
        rule: usize,
        group: usize,
    },
    Unless {
        rule: usize,
    },
    /// `language`: an index into `PolicySet::cue_languages` for a cue written for one language.
    Cue {
        kind: CueKind,
        language: Option<usize>,
    },
    /// Takes back the exceptions before it (`retractions` of the context file).
    Retraction,
    /// Keeps the exceptions before it from the findings after it (`contrasts`).
    Contrast,
}

/// A compiled input rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub severity: Severity,
    pub summary: String,
    pub escalate: bool,
    pub priority: i32,
    pub file: String,
    window: Window,
    context: ContextMode,
    require_groups: usize,
    measures: Vec<(Measure, Bounds)>,
    /// Rendered guidance by language.
    guidance: BTreeMap<String, String>,
}

impl Rule {
    fn guidance_for(&self, language: &str) -> String {
        self.guidance
            .get(language)
            .or_else(|| self.guidance.get("en"))
            .or_else(|| self.guidance.values().next())
            .cloned()
            .unwrap_or_default()
    }
}

/// A rule that fired.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FiredRule {
    pub rule: String,
    pub severity: Severity,
    pub escalate: bool,
    pub summary: String,
    /// Byte range of the matched words in the original message.
    pub span: (usize, usize),
    pub matched: String,
    pub language: String,
    pub guidance: String,
    /// Context cues that were present but did not suppress (e.g. "other person, acute").
    pub context: Vec<String>,
}

/// A trigger that matched but was set aside, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SetAside {
    pub rule: String,
    pub matched: String,
    pub reason: String,
}

/// The outcome of checking one patient message.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Decision {
    pub level: Severity,
    /// Fired rules, most severe first.
    pub fired: Vec<FiredRule>,
    pub set_aside: Vec<SetAside>,
    pub measures: Measures,
    /// What the statistical safety net made of the message, when the set has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net: Option<safety_net::NetScore>,
}

impl Decision {
    pub fn rule_ids(&self) -> Vec<&str> {
        self.fired.iter().map(|fired| fired.rule.as_str()).collect()
    }

    /// The rule whose guidance the patient is shown first.
    pub fn lead(&self) -> Option<&FiredRule> {
        self.fired.first()
    }

    pub fn escalates(&self) -> bool {
        self.fired.iter().any(|fired| fired.escalate)
    }
}

/// What the context engine says about one finding, for `policy context` and explanations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContextVerdict {
    pub negated: bool,
    pub temporality: context::Temporality,
    pub experiencer: context::Experiencer,
}

/// A policy set ready to use: immutable, shared behind an `Arc`, swapped whole on reload.
pub struct PolicySet {
    normalizer: Normalizer,
    phrases: PhraseSet,
    roles: Vec<Role>,
    rules: Vec<Rule>,
    scope_words: usize,
    /// How far an `unless` phrase reaches from a trigger (`context.toml`), in tokens.
    unless_reach: Option<usize>,
    /// `answers_no` of the context file, normalised (words joined by one space).
    answers_no: Vec<String>,
    /// `exception_words` of the context file, normalised.
    exception_words: Vec<String>,
    /// `clause_subjects` of the context file, normalised.
    clause_subjects: Vec<String>,
    /// The languages of cues written for one language (`Role::Cue`).
    cue_languages: Vec<String>,
    /// The lists of `measures.toml`, normalised.
    measure_words: MeasureWords,
    output: output::OutputRules,
    net: Option<NetRules>,
    tests: Vec<testing::FileTests>,
    version: String,
    loaded_at: SystemTime,
    source: PathBuf,
}

/// A rule's guidance in each of `languages`. The English template takes English advice, and a
/// language without a template of its own gets the English template and advice. A language
/// with its own template but no advice of its own gets that template without advice, followed
/// by the whole English guidance when the rule has English advice: the call to act comes first
/// in the patient's language, and the first-aid advice is not lost, nor put as an English
/// sentence inside a translated one.
fn render_guidance(
    spec: &RuleSpec,
    languages: &[&str],
    prompts: &Prompts,
) -> Result<BTreeMap<String, String>, PolicyLoadError> {
    let english_advice = spec
        .advice
        .get("en")
        .map(String::as_str)
        .filter(|advice| !advice.trim().is_empty());
    let mut guidance = BTreeMap::new();
    for &language in languages {
        let own_template = prompts.has_guidance(&spec.guidance, language);
        let text = match (spec.advice.get(language), english_advice) {
            (Some(advice), _) => prompts.guidance(&spec.guidance, language, advice)?,
            (None, Some(english)) if own_template && language != "en" => format!(
                "{}\n\n{}",
                prompts.guidance(&spec.guidance, language, "")?,
                prompts.guidance(&spec.guidance, "en", english)?
            ),
            (None, english) => {
                prompts.guidance(&spec.guidance, language, english.unwrap_or_default())?
            }
        };
        guidance.insert(language.to_owned(), text);
    }
    Ok(guidance)
}

/// The `unless` phrases of the safety net's rules: (the rule's index, its phrases).
type NetExceptions = Vec<(usize, Vec<String>)>;

/// Reads `safety_net.toml` and its weights, and adds the net's two rules to `rules`. Returns the
/// net with each rule's `unless` phrases, which the caller adds to the phrase set.
fn load_safety_net(
    dir: &Path,
    prompts: &Prompts,
    hasher: &mut Sha256,
    rules: &mut Vec<Rule>,
) -> Result<Option<(NetRules, NetExceptions, PathBuf)>, PolicyLoadError> {
    let path = dir.join("safety_net.toml");
    if !path.exists() {
        return Ok(None);
    }
    let raw = std::fs::read_to_string(&path).map_err(|source| PolicyLoadError::Read {
        path: path.clone(),
        source,
    })?;
    hasher.update(raw.as_bytes());
    let file: SafetyNetFile = toml::from_str(&raw).map_err(|error| PolicyLoadError::Parse {
        path: path.clone(),
        reason: error.to_string(),
    })?;
    let weights_path = dir.join(&file.weights);
    let weights =
        std::fs::read_to_string(&weights_path).map_err(|source| PolicyLoadError::Read {
            path: weights_path.clone(),
            source,
        })?;
    hasher.update(weights.as_bytes());
    let net = safety_net::SafetyNet::parse(
        &weights,
        (file.bias_urgent, file.bias_emergency),
        file.urgent_at,
        file.emergency_at,
    )
    .map_err(|error| PolicyLoadError::Parse {
        path: weights_path.clone(),
        reason: error.to_string(),
    })?;
    let mut urgent = None;
    let mut emergency = None;
    let mut exceptions = Vec::new();
    for spec in &file.rule {
        if rules.iter().any(|rule| rule.id == spec.id) {
            return Err(PolicyLoadError::DuplicateRule(spec.id.clone()));
        }
        let refused = |reason: &str| PolicyLoadError::Rule {
            path: path.clone(),
            rule: spec.id.clone(),
            reason: reason.to_owned(),
        };
        if !(spec.triggers.is_empty() && spec.patterns.is_empty() && spec.requires.is_empty()) {
            return Err(refused(
                "the safety net's rules have no phrases: the net decides when they fire",
            ));
        }
        let slot = match spec.severity {
            Severity::Urgent => &mut urgent,
            Severity::Emergency => &mut emergency,
            Severity::Routine => {
                return Err(refused("the safety net only raises: urgent or emergency"));
            }
        };
        if slot.is_some() {
            return Err(refused("the safety net has one rule per level"));
        }
        let mut languages: Vec<&str> = spec.advice.keys().map(String::as_str).collect();
        languages.push("en");
        languages.sort_unstable();
        languages.dedup();
        *slot = Some(rules.len());
        exceptions.push((rules.len(), spec.unless.clone()));
        rules.push(Rule {
            id: spec.id.clone(),
            severity: spec.severity,
            summary: spec.summary.clone(),
            escalate: spec.escalate.unwrap_or(true),
            priority: spec.priority,
            file: "safety_net".to_owned(),
            window: Window::default(),
            context: ContextMode::default(),
            require_groups: 0,
            measures: Vec::new(),
            guidance: render_guidance(spec, &languages, prompts)?,
        });
    }
    let (Some(urgent), Some(emergency)) = (urgent, emergency) else {
        return Err(PolicyLoadError::Parse {
            path,
            reason: "needs one urgent and one emergency `[[rule]]`".to_owned(),
        });
    };
    Ok(Some((
        NetRules {
            net,
            urgent,
            emergency,
        },
        exceptions,
        path,
    )))
}

/// The safety net and the rules (indices into `rules`) it raises a decision with.
struct NetRules {
    net: safety_net::SafetyNet,
    urgent: usize,
    emergency: usize,
}

/// A message's scan, kept so that later messages can use its findings.
struct Scan {
    normalized: NormalizedText,
    hits: Vec<(Hit, Assessment)>,
    /// Where the last retraction starts: exceptions before it are taken back.
    last_retraction: Option<usize>,
    /// The contrasts' token spans: no exception reaches across one to a finding after it.
    contrasts: Vec<(usize, usize)>,
}

/// What an earlier message contributes to rules with `window = "conversation"`: the requirement
/// groups it met, under the policy set that checked it. Kept with the message so that later
/// messages need not scan it again; a set with another version ignores it.
#[derive(Debug, Clone, Default)]
pub struct EarlierFindings {
    version: String,
    met: Vec<(usize, usize)>,
}

impl EarlierFindings {
    /// Whether these findings were made by `set` (rule numbers mean nothing to another set).
    pub fn is_for(&self, set: &PolicySet) -> bool {
        self.version == set.version
    }
}

impl PolicySet {
    /// Loads and compiles every policy file in `dir`, rendering guidance from `prompts`.
    /// It does not run the files' tests: [`PolicySet::load_tested`] does.
    ///
    /// # Errors
    /// Any unreadable or invalid file, unknown measure, duplicate rule id or missing guidance.
    pub fn load(dir: &Path, prompts: &Prompts) -> Result<Self, PolicyLoadError> {
        let mut hasher = Sha256::new();
        let lexicon_path = dir.join("lexicon.toml");
        let lexicon: LexiconFile = read_optional(&lexicon_path, &mut hasher)?;
        let normalizer = Normalizer::new(Lexicon::new(lexicon.words)).reading_whole_text(true);
        let context_path = dir.join("context.toml");
        let context: ContextFile = read_optional(&context_path, &mut hasher)?;
        let measures_path = dir.join("measures.toml");
        let has_measure_words = measures_path.exists();
        let measures_file: MeasuresFile = read_optional(&measures_path, &mut hasher)?;
        let spelling_file: spelling::SpellingFile =
            read_optional(&dir.join("spelling.toml"), &mut hasher)?;

        let mut builder = PhraseSetBuilder::default();
        let mut roles: Vec<Role> = Vec::new();
        let add_phrase = |builder: &mut PhraseSetBuilder,
                          roles: &mut Vec<Role>,
                          path: &Path,
                          text: &str,
                          role: Role|
         -> Result<(), PolicyLoadError> {
            // A misspelling is read only as a word of an English trigger: other languages
            // inflect inside the word (Turkish `geçiriyordum`, "I was having", is one letter from
            // `geçiriyorum`, "I am having"), and a cue word such as Tagalog `walang`, "none", is
            // one letter from `walong`, "eight".
            builder.count_uses(matches!(&role, Role::Trigger { language, .. } if language == "en"));
            let id =
                builder
                    .phrase(&normalizer, text)
                    .map_err(|source| PolicyLoadError::Phrase {
                        path: path.to_owned(),
                        source,
                    })?;
            set_role(roles, id, role);
            Ok(())
        };

        let (lists, cue_languages) = cue_lists(&context);
        for (spec, kind, language) in lists {
            for phrase in spec {
                add_phrase(
                    &mut builder,
                    &mut roles,
                    &context_path,
                    phrase,
                    Role::Cue { kind, language },
                )?;
            }
        }

        for phrase in &context.retractions {
            add_phrase(
                &mut builder,
                &mut roles,
                &context_path,
                phrase,
                Role::Retraction,
            )?;
        }
        for phrase in &context.contrasts {
            add_phrase(
                &mut builder,
                &mut roles,
                &context_path,
                phrase,
                Role::Contrast,
            )?;
        }

        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|source| PolicyLoadError::Read {
                path: dir.to_owned(),
                source,
            })?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| {
                path.extension()
                    .is_some_and(|extension| extension == "toml")
                    && !matches!(
                        path.file_name().and_then(|name| name.to_str()),
                        Some(
                            "lexicon.toml"
                                | "context.toml"
                                | "measures.toml"
                                | "redaction.toml"
                                | "safety_net.toml"
                                | "spelling.toml"
                        )
                    )
            })
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(PolicyLoadError::Empty(dir.to_owned()));
        }

        let mut files: Vec<(PathBuf, PolicyFile)> = Vec::with_capacity(paths.len());
        for path in paths {
            let raw = std::fs::read_to_string(&path).map_err(|source| PolicyLoadError::Read {
                path: path.clone(),
                source,
            })?;
            hasher.update(
                path.file_name()
                    .map(|name| name.as_encoded_bytes())
                    .unwrap_or_default(),
            );
            hasher.update(raw.as_bytes());
            let file: PolicyFile =
                toml::from_str(&raw).map_err(|error| PolicyLoadError::Parse {
                    path: path.clone(),
                    reason: error.to_string(),
                })?;
            files.push((path, file));
        }
        let concepts = Concepts::gather(&files)?;

        let mut rules: Vec<Rule> = Vec::new();
        let mut seen_ids: HashMap<String, ()> = HashMap::new();
        let mut output_specs = Vec::new();
        let mut tests = Vec::new();
        for (path, file) in &files {
            for spec in &file.rule {
                if seen_ids.insert(spec.id.clone(), ()).is_some() {
                    return Err(PolicyLoadError::DuplicateRule(spec.id.clone()));
                }
                let rule_error = |reason: String| PolicyLoadError::Rule {
                    path: path.clone(),
                    rule: spec.id.clone(),
                    reason,
                };
                if spec.triggers.is_empty() && spec.patterns.is_empty() {
                    return Err(rule_error("has no triggers and no patterns".into()));
                }
                let index = rules.len();
                let triggers = concepts.expand(spec.triggers.iter()).map_err(&rule_error)?;
                for &(language, phrase) in &triggers {
                    let role = Role::Trigger {
                        rule: index,
                        language: language.to_owned(),
                    };
                    add_phrase(&mut builder, &mut roles, path, phrase, role)?;
                }
                for (language, pattern) in spec.patterns.iter() {
                    let id =
                        builder
                            .pattern(pattern)
                            .map_err(|source| PolicyLoadError::Phrase {
                                path: path.clone(),
                                source,
                            })?;
                    set_role(
                        &mut roles,
                        id,
                        Role::Trigger {
                            rule: index,
                            language: language.to_owned(),
                        },
                    );
                }
                for (group, phrases) in spec.requires.iter().enumerate() {
                    if phrases.is_empty() {
                        return Err(rule_error(format!("requires group {group} is empty")));
                    }
                    let phrases = concepts
                        .expand(phrases.iter().map(|phrase| ("en", phrase.as_str())))
                        .map_err(&rule_error)?;
                    for (_, phrase) in phrases {
                        let role = Role::Require { rule: index, group };
                        add_phrase(&mut builder, &mut roles, path, phrase, role)?;
                    }
                }
                let unless = concepts
                    .expand(spec.unless.iter().map(|phrase| ("en", phrase.as_str())))
                    .map_err(&rule_error)?;
                for (_, phrase) in unless {
                    add_phrase(
                        &mut builder,
                        &mut roles,
                        path,
                        phrase,
                        Role::Unless { rule: index },
                    )?;
                }
                let mut measures = Vec::new();
                for (name, bounds) in &spec.measures {
                    let measure = Measure::parse(name).ok_or_else(|| {
                        rule_error(format!(
                            "unknown measure `{name}` (known: temperature_c, age_months, glucose_mmol, tablet_count, oxygen_saturation, systolic_pressure, respiratory_rate, heart_rate)"
                        ))
                    })?;
                    if !has_measure_words {
                        return Err(rule_error(format!(
                            "names the measure `{name}`, but the set has no measures.toml to say which words give it"
                        )));
                    }
                    measures.push((measure, *bounds));
                }
                let mut languages: Vec<&str> = triggers
                    .iter()
                    .map(|&(language, _)| language)
                    .chain(spec.patterns.iter().map(|(language, _)| language))
                    .collect();
                languages.push("en");
                languages.sort_unstable();
                languages.dedup();
                let guidance = render_guidance(spec, &languages, prompts)?;
                rules.push(Rule {
                    id: spec.id.clone(),
                    severity: spec.severity,
                    summary: spec.summary.clone(),
                    escalate: spec.escalate.unwrap_or(spec.severity != Severity::Routine),
                    priority: spec.priority,
                    file: file.meta.id.clone(),
                    window: spec.window,
                    context: spec.context,
                    require_groups: spec.requires.len(),
                    measures,
                    guidance,
                });
            }
        }
        let net = match load_safety_net(dir, prompts, &mut hasher, &mut rules)? {
            Some((net, exceptions, path)) => {
                for (index, unless) in exceptions {
                    let phrases = concepts
                        .expand(unless.iter().map(|phrase| ("en", phrase.as_str())))
                        .map_err(|reason| PolicyLoadError::Rule {
                            path: path.clone(),
                            rule: rules
                                .get(index)
                                .map(|rule| rule.id.clone())
                                .unwrap_or_default(),
                            reason,
                        })?;
                    for (_, phrase) in phrases {
                        let role = Role::Unless { rule: index };
                        add_phrase(&mut builder, &mut roles, &path, phrase, role)?;
                    }
                }
                Some(net)
            }
            None => None,
        };
        for (path, file) in files {
            output_specs.push((path.clone(), file.output_rule));
            tests.push(testing::FileTests {
                path,
                inputs: file.test,
                outputs: file.output_test,
            });
        }
        // Messages are read knowing the policies' words, for words spelt with digits in front.
        let normalizer = normalizer.with_vocabulary(builder.words());
        // Misspellings are read in patient messages only: the lists read below (measure words,
        // answers, exception words) are read as written.
        let spelling = spelling::Spelling::new(
            &spelling_file,
            builder.word_uses(),
            spelling_file
                .known
                .iter()
                .map(|word| normalize::squeeze(&word.to_lowercase())),
        );
        let phrases = builder.build().map_err(PolicyLoadError::Compile)?;
        let output = output::OutputRules::compile(
            &normalizer.clone().reading_whole_text(false),
            output_specs,
        )?;
        let answers_no = short_answers(&normalizer, &context_path, &context.answers_no)?;
        let exception_words = single_words(
            &normalizer,
            &context_path,
            "exception_words",
            &context.exception_words,
        )?;
        let clause_subjects = single_words(
            &normalizer,
            &context_path,
            "clause_subjects",
            &context.clause_subjects,
        )?;
        let measure_words = MeasureWords::from_file(measures_file, |list, word| {
            let normalized = normalizer.normalize(word);
            let refused = |why: &str| PolicyLoadError::Parse {
                path: measures_path.clone(),
                reason: format!("`{list}`: `{word}` {why}"),
            };
            match normalized.tokens.as_slice() {
                [token] if token.kind == TokenKind::Word => Ok(normalized.plain_of(0).to_owned()),
                // A sign is read as itself or not at all: `£` reads as a comma, which would
                // stand for every comma.
                [_] if normalized.plain_of(0) == word => Ok(word.to_owned()),
                [_] => Err(refused(&format!(
                    "reads as `{}`, another sign",
                    normalized.plain_of(0)
                ))),
                _ => Err(refused("is not one word; each list holds single words")),
            }
        })?;
        Ok(Self {
            normalizer: normalizer.with_spelling(spelling),
            phrases,
            roles,
            rules,
            scope_words: context.scope_words,
            unless_reach: context.unless_reach,
            answers_no,
            exception_words,
            clause_subjects,
            cue_languages,
            measure_words,
            output,
            net,
            tests,
            version: hex::encode(&hasher.finalize()[..6]),
            loaded_at: SystemTime::now(),
            source: dir.to_owned(),
        })
    }

    /// Loads a set and runs its tests: a set whose tests fail is refused.
    ///
    /// # Errors
    /// As [`PolicySet::load`], and [`PolicyLoadError::TestsFailed`].
    pub fn load_tested(dir: &Path, prompts: &Prompts) -> Result<Self, PolicyLoadError> {
        let set = Self::load(dir, prompts)?;
        let report = testing::run(&set);
        if report.is_success() {
            Ok(set)
        } else {
            Err(PolicyLoadError::TestsFailed {
                failed: report.failures.len() + report.untested_rules.len(),
                report: Box::new(report),
            })
        }
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn loaded_at(&self) -> SystemTime {
        self.loaded_at
    }

    pub fn source(&self) -> &Path {
        &self.source
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn output_rules(&self) -> &output::OutputRules {
        &self.output
    }

    pub fn normalizer(&self) -> &Normalizer {
        &self.normalizer
    }

    pub(crate) fn tests(&self) -> &[testing::FileTests] {
        &self.tests
    }

    /// Checks one message on its own.
    pub fn evaluate(&self, message: &str) -> Decision {
        self.evaluate_in_conversation(message, &[])
    }

    /// Checks a message with the patient's recent earlier messages (oldest first), for rules that
    /// combine findings across messages.
    pub fn evaluate_in_conversation(&self, message: &str, earlier: &[&str]) -> Decision {
        let earlier: Vec<EarlierFindings> = earlier
            .iter()
            .map(|text| self.findings_for_later(text))
            .collect();
        self.evaluate_after(message, &earlier).0
    }

    /// The same as [`Self::evaluate_in_conversation`], with each earlier message's findings
    /// kept from when it was checked (see [`Self::findings_for_later`]), so a message is scanned
    /// once however many later messages look back at it. Returns this message's own findings
    /// for the messages after it.
    pub fn evaluate_after<'a>(
        &self,
        message: &str,
        earlier: impl IntoIterator<Item = &'a EarlierFindings>,
    ) -> (Decision, EarlierFindings) {
        let scan = self.scan(message);
        let findings = self.findings(&scan);
        let met: Vec<(usize, usize)> = earlier
            .into_iter()
            .filter(|findings| findings.is_for(self))
            .flat_map(|findings| findings.met.iter().copied())
            .collect();
        (self.decide(message, &scan, &met), findings)
    }

    /// What a message contributes to the rules that look across the conversation, for the
    /// messages after it.
    pub fn findings_for_later(&self, message: &str) -> EarlierFindings {
        self.findings(&self.scan(message))
    }

    fn findings(&self, scan: &Scan) -> EarlierFindings {
        let met = scan
            .hits
            .iter()
            .filter_map(|(hit, assessment)| match self.roles.get(hit.phrase) {
                Some(Role::Require { rule, group }) => {
                    let spec = self.rules.get(*rule)?;
                    (spec.window == Window::Conversation
                        && suppression(assessment, spec.context).is_none())
                    .then_some((*rule, *group))
                }
                _ => None,
            })
            .collect();
        EarlierFindings {
            version: self.version.clone(),
            met,
        }
    }

    fn scan(&self, message: &str) -> Scan {
        let normalized = self.normalizer.normalize(message);
        let hits = self.phrases.scan(&normalized);
        let mut cues: Vec<CueHit> = hits
            .iter()
            .filter_map(|hit| match self.roles.get(hit.phrase) {
                Some(Role::Cue { kind, language }) => Some(CueHit::from_hit(*kind, hit, *language)),
                _ => None,
            })
            .collect();
        // A negation inside a finding's own words is the finding ("hasn't peed in 14 hours",
        // "can't get himself up"): it denies nothing after it ("hasn't peed in 14 hours, bladder
        // bulging, screaming in pain").
        // A word that fell in a gap of the phrase ("lips aren't going blue") is no word of it.
        let negations = cues
            .iter()
            .any(|cue| matches!(cue.kind, CueKind::Negation(_)));
        let findings: Vec<&Hit> = if negations {
            hits.iter()
                .filter(|hit| matches!(self.roles.get(hit.phrase), Some(Role::Trigger { .. })))
                .collect()
        } else {
            Vec::new()
        };
        cues.retain(|cue| {
            !matches!(cue.kind, CueKind::Negation(_))
                || !findings.iter().any(|hit| {
                    hit.first <= cue.first
                        && cue.last <= hit.last
                        && hit.last - hit.first > cue.last - cue.first
                        && self.phrases.fixed_words(hit.phrase).is_none_or(|fixed| {
                            (cue.first..=cue.last).all(|token| fixed.holds(&normalized, token))
                        })
                })
        });
        // A phrase of no language (a requirement's) may be in any language the message's
        // triggers are in.
        let mut message_languages: Vec<&str> = hits
            .iter()
            .filter_map(|hit| match self.roles.get(hit.phrase) {
                Some(Role::Trigger { language, .. }) => Some(language.as_str()),
                _ => None,
            })
            .collect();
        message_languages.sort_unstable();
        message_languages.dedup();
        let context = MessageContext::new(&normalized, cues, self.scope_words)
            .with_answers(message, &self.answers_no)
            .with_clause_subjects(&self.clause_subjects)
            .with_cue_languages(&self.cue_languages);
        let mut last_retraction = None;
        let mut contrasts = Vec::new();
        let hits = hits
            .into_iter()
            .filter(|hit| match self.roles.get(hit.phrase) {
                Some(Role::Retraction) => {
                    last_retraction = last_retraction.max(Some(hit.first));
                    false
                }
                Some(Role::Contrast) => {
                    contrasts.push((hit.first, hit.last));
                    false
                }
                Some(Role::Cue { .. }) | None => false,
                _ => true,
            })
            .map(|hit| {
                let own;
                let languages = match self.roles.get(hit.phrase) {
                    Some(Role::Trigger { language, .. }) => {
                        own = [language.as_str()];
                        &own[..]
                    }
                    _ => &message_languages[..],
                };
                let mut assessment = context.assess_in(hit.first, hit.last, languages);
                if assessment.negated.is_none()
                    && let Some(fixed) = self.phrases.fixed_words(hit.phrase)
                {
                    assessment.negated =
                        context.negation_in_gap(hit.first, hit.last, languages, |token| {
                            fixed.holds(&normalized, token)
                        });
                }
                (hit, assessment)
            })
            .collect();
        Scan {
            normalized,
            hits,
            last_retraction,
            contrasts,
        }
    }

    /// Whether an exception at `exception` (token span) reaches a trigger at `trigger`: within
    /// `unless_reach` tokens of it, or anywhere when no reach is set. "Chest pain when I cough"
    /// keeps its exception; a question about the flu jab clinic forty words before a drooping
    /// face does not explain the face.
    fn within_reach(&self, exception: (usize, usize), trigger: (usize, usize)) -> bool {
        let Some(reach) = self.unless_reach else {
            return true;
        };
        let gap = if exception.1 < trigger.0 {
            trigger.0 - exception.1
        } else {
            exception.0.saturating_sub(trigger.1)
        };
        gap <= reach
    }

    /// `earlier_met`: requirement groups (rule, group) that earlier messages met.
    fn decide(&self, message: &str, scan: &Scan, earlier_met: &[(usize, usize)]) -> Decision {
        let measures = measures::extract(&scan.normalized, &self.measure_words);
        let mut decision = Decision {
            measures: measures.clone(),
            ..Decision::default()
        };
        // The exceptions (`unless`) found for each rule. A denied exception is no exception:
        // "Eisentabletten nehme ich keine", "not taking any iron" leave black stools a red flag.
        // Only a denial next to the exception counts: in "can't see out of my left eye without my
        // glasses" the "not" belongs to the finding, and "without my glasses" names the exception
        // rather than denying it.
        // Nor is one the patient took back: "haha no I'm serious, I'm going to kill him" leaves
        // the threat a red flag.
        let mut exceptions: HashMap<usize, Vec<(usize, usize)>, FastHash> = HashMap::default();
        for (hit, assessment) in &scan.hits {
            if let Some(Role::Unless { rule }) = self.roles.get(hit.phrase)
                && scan
                    .last_retraction
                    .is_none_or(|retraction| hit.last >= retraction)
                && !assessment.negated.is_some_and(|(first, last)| {
                    (first > hit.last || last + 4 >= hit.first)
                        && !self
                            .exception_words
                            .iter()
                            .any(|word| word == scan.normalized.plain_of(first))
                })
            {
                exceptions
                    .entry(*rule)
                    .or_default()
                    .push((hit.first, hit.last));
            }
        }
        // An exception does not reach across a contrast to a finding after it.
        let excepted_at = |rule: usize, hit: &Hit| {
            exceptions.get(&rule).is_some_and(|spans| {
                spans.iter().any(|&span| {
                    self.within_reach(span, (hit.first, hit.last))
                        && !scan
                            .contrasts
                            .iter()
                            .any(|&(first, last)| span.1 < first && last < hit.first)
                })
            })
        };
        // Each rule's first trigger that no exception reaches, else its first trigger (with
        // `true`: set aside below).
        let mut best_trigger: HashMap<usize, (TriggerHit, bool), FastHash> = HashMap::default();
        let mut met: HashMap<(usize, usize), bool, FastHash> = HashMap::default();

        for (hit, assessment) in &scan.hits {
            match self.roles.get(hit.phrase) {
                Some(Role::Trigger { rule, language }) => {
                    let Some(spec) = self.rules.get(*rule) else {
                        continue;
                    };
                    if let Some(reason) = suppression(assessment, spec.context) {
                        decision.set_aside.push(SetAside {
                            rule: spec.id.clone(),
                            matched: span_text(message, &scan.normalized, hit),
                            reason: reason.to_owned(),
                        });
                        continue;
                    }
                    let excepted = excepted_at(*rule, hit);
                    let candidate = ((hit, assessment, language.as_str()), excepted);
                    best_trigger
                        .entry(*rule)
                        .and_modify(|kept| {
                            if kept.1 && !excepted {
                                *kept = candidate;
                            }
                        })
                        .or_insert(candidate);
                }
                Some(Role::Require { rule, group }) => {
                    let context = self
                        .rules
                        .get(*rule)
                        .map(|spec| spec.context)
                        .unwrap_or_default();
                    if suppression(assessment, context).is_none() {
                        met.insert((*rule, *group), true);
                    }
                }
                Some(
                    Role::Unless { .. } | Role::Cue { .. } | Role::Retraction | Role::Contrast,
                )
                | None => {}
            }
        }
        for &pair in earlier_met {
            met.insert(pair, true);
        }

        let mut triggered: Vec<(&usize, &(TriggerHit, bool))> = best_trigger.iter().collect();
        triggered.sort_by_key(|(rule, _)| **rule);
        // Whether an `unless` phrase set a triggered rule aside (the safety net yields to it).
        let mut excepted = false;
        for (&rule_index, &((hit, assessment, language), in_reach)) in triggered {
            let rule = &self.rules[rule_index];
            let matched = span_text(message, &scan.normalized, hit);
            let unmet_group =
                (0..rule.require_groups).find(|group| !met.contains_key(&(rule_index, *group)));
            let failed_measure = rule.measures.iter().find(|(measure, bounds)| {
                match measures.get(*measure) {
                    // `when_read`: a bound on a reading if one was given ("is 37.2 a fever?"),
                    // not a reading the rule needs.
                    None => !bounds.when_read,
                    Some(value) => {
                        bounds.min.is_some_and(|min| value < min)
                            || bounds.max.is_some_and(|max| value > max)
                    }
                }
            });
            // A rule whose requirements are not met is no finding, so an exception beside it
            // excuses nothing: it must not hold the safety net back ("my 8 year old has a temp of
            // 39.5" is no pregnancy, whatever the pregnancy rule's exceptions say).
            let reason = if let Some(group) = unmet_group {
                Some(format!("requires group {group} not met"))
            } else if let Some((measure, _)) = failed_measure {
                Some(format!("measure {measure:?} missing or out of bounds"))
            } else if in_reach {
                excepted = true;
                Some("an `unless` phrase is present".to_owned())
            } else {
                None
            };
            if let Some(reason) = reason {
                decision.set_aside.push(SetAside {
                    rule: rule.id.clone(),
                    matched,
                    reason,
                });
                continue;
            }
            let (start, end) = scan.normalized.original_span(hit.first, hit.last);
            decision.fired.push(FiredRule {
                rule: rule.id.clone(),
                severity: rule.severity,
                escalate: rule.escalate,
                summary: rule.summary.clone(),
                span: (start, end),
                matched,
                language: language.to_owned(),
                guidance: rule.guidance_for(language),
                context: describe(assessment),
            });
        }
        if let Some(net) = &self.net {
            let net_excepted = |rule: usize| exceptions.contains_key(&rule);
            self.apply_net(net, message, scan, excepted, net_excepted, &mut decision);
        }
        // Most severe first; then the rule's priority; then what the patient said first.
        let priority = |id: &str| {
            self.rules
                .iter()
                .find(|rule| rule.id == id)
                .map_or(0, |rule| rule.priority)
        };
        decision.fired.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then_with(|| priority(&b.rule).cmp(&priority(&a.rule)))
                .then_with(|| a.span.0.cmp(&b.span.0))
        });
        decision.level = decision
            .fired
            .first()
            .map_or(Severity::Routine, |fired| fired.severity);
        decision
    }

    /// Raises a decision the rules left below what the safety net reads, never lowers one. An
    /// exception an operator wrote (`unless`) outranks the statistics: when one set a rule
    /// aside, the net does not raise ("I bit my tongue and now it's swollen"); nor does a level
    /// of the net whose own `unless` phrase is in the message (`has_exception`: "our cat
    /// collapsed, where is the nearest emergency vet").
    fn apply_net(
        &self,
        net: &NetRules,
        message: &str,
        scan: &Scan,
        excepted: bool,
        has_exception: impl Fn(usize) -> bool,
        decision: &mut Decision,
    ) {
        let score = net.net.score(&scan.normalized);
        let level = decision
            .fired
            .iter()
            .map(|fired| fired.severity)
            .max()
            .unwrap_or_default();
        let reaches = [
            (
                net.emergency,
                level < Severity::Emergency && score.emergency >= net.net.emergency_at,
            ),
            (
                net.urgent,
                level < Severity::Urgent && score.urgent >= net.net.urgent_at,
            ),
        ];
        let mut raise = None;
        for (index, reached) in reaches {
            if !reached || excepted {
                continue;
            }
            if has_exception(index) {
                if let Some(rule) = self.rules.get(index) {
                    decision.set_aside.push(SetAside {
                        rule: rule.id.clone(),
                        matched: score.evidence.join(", "),
                        reason: "an `unless` phrase is present".to_owned(),
                    });
                }
                continue;
            }
            raise = Some(index);
            break;
        }
        if let Some(rule) = raise.and_then(|index| self.rules.get(index)) {
            let language = self.language_of(scan);
            decision.fired.push(FiredRule {
                rule: rule.id.clone(),
                severity: rule.severity,
                escalate: rule.escalate,
                summary: rule.summary.clone(),
                span: (0, message.len()),
                matched: score.evidence.join(", "),
                guidance: rule.guidance_for(language),
                language: language.to_owned(),
                context: Vec::new(),
            });
        }
        decision.net = Some(score);
    }

    /// The language most of the message's trigger phrases are listed under, English if none:
    /// the guidance of a rule without phrases of its own is given in it.
    fn language_of<'s>(&'s self, scan: &Scan) -> &'s str {
        let mut counts: Vec<(&str, usize)> = Vec::new();
        for (hit, _) in &scan.hits {
            if let Some(Role::Trigger { language, .. }) = self.roles.get(hit.phrase) {
                match counts.iter_mut().find(|(seen, _)| seen == language) {
                    Some((_, count)) => *count += 1,
                    None => counts.push((language.as_str(), 1)),
                }
            }
        }
        counts
            .iter()
            .max_by_key(|(_, count)| *count)
            .map_or("en", |(language, _)| language)
    }

    /// The context engine's view of `concept` in `sentence` (for `policy context`).
    pub fn context_of(&self, concept: &str, sentence: &str) -> ContextVerdict {
        let normalized = self.normalizer.normalize(sentence);
        let hits = self.phrases.scan(&normalized);
        let cues: Vec<CueHit> = hits
            .iter()
            .filter_map(|hit| match self.roles.get(hit.phrase) {
                Some(Role::Cue { kind, language }) => Some(CueHit::from_hit(*kind, hit, *language)),
                _ => None,
            })
            .collect();
        let context = MessageContext::new(&normalized, cues, self.scope_words)
            .with_answers(sentence, &self.answers_no)
            .with_clause_subjects(&self.clause_subjects)
            .with_cue_languages(&self.cue_languages);
        let (first, last) = locate(&self.normalizer, &normalized, concept).unwrap_or((0, 0));
        let assessment = context.assess(first, last);
        ContextVerdict {
            negated: assessment.negated.is_some(),
            temporality: assessment.temporality(),
            experiencer: assessment.experiencer(),
        }
    }

    /// A step-by-step account of a decision, for `policy explain` and the dry-run endpoint.
    pub fn explain(&self, message: &str, earlier: &[&str]) -> Explanation {
        let scan = self.scan(message);
        let matches = scan
            .hits
            .iter()
            .filter_map(|(hit, assessment)| {
                let (role, rule) = match self.roles.get(hit.phrase)? {
                    Role::Trigger { rule, .. } => ("trigger", *rule),
                    Role::Require { rule, .. } => ("requires", *rule),
                    Role::Unless { rule } => ("unless", *rule),
                    Role::Cue { .. } | Role::Retraction | Role::Contrast => return None,
                };
                Some(ExplainedMatch {
                    rule: self.rules.get(rule)?.id.clone(),
                    role,
                    matched: span_text(message, &scan.normalized, hit),
                    context: describe(assessment),
                })
            })
            .collect();
        Explanation {
            normalized: scan.normalized.plain.trim().to_owned(),
            matches,
            decision: self.evaluate_in_conversation(message, earlier),
            policy_version: self.version.clone(),
        }
    }
}

/// Everything `policy explain` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub normalized: String,
    pub matches: Vec<ExplainedMatch>,
    pub decision: Decision,
    pub policy_version: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExplainedMatch {
    pub rule: String,
    pub role: &'static str,
    pub matched: String,
    pub context: Vec<String>,
}

/// Why a match does not count, or `None` when it does.
fn suppression(assessment: &Assessment, mode: ContextMode) -> Option<&'static str> {
    if assessment.figurative.is_some() {
        return Some("figurative speech");
    }
    if assessment.negated.is_some() && mode != ContextMode::IgnoreNegation {
        return Some("negated");
    }
    if assessment.hypothetical.is_some() {
        return Some("hypothetical or educational");
    }
    if assessment.temporality() == context::Temporality::Historical
        && mode != ContextMode::IgnoreHistory
    {
        return Some("historical");
    }
    if assessment.family_history.is_some() && mode != ContextMode::IgnoreHistory {
        return Some("someone else's history");
    }
    None
}

fn describe(assessment: &Assessment) -> Vec<String> {
    let mut notes = Vec::new();
    let mut note = |present: bool, text: &str| {
        if present {
            notes.push(text.to_owned());
        }
    };
    note(assessment.negated.is_some(), "negated");
    note(assessment.historical.is_some(), "historical cue");
    note(assessment.acute.is_some(), "acute cue");
    note(assessment.hypothetical.is_some(), "hypothetical");
    note(assessment.other_experiencer.is_some(), "other person");
    note(assessment.family_history.is_some(), "family history");
    note(assessment.figurative.is_some(), "figurative");
    notes
}

fn span_text(message: &str, normalized: &NormalizedText, hit: &Hit) -> String {
    let (start, end) = normalized.original_span(hit.first, hit.last);
    message.get(start..end).unwrap_or_default().to_owned()
}

fn set_role(roles: &mut Vec<Role>, id: usize, role: Role) {
    if roles.len() <= id {
        roles.resize(
            id + 1,
            Role::Cue {
                kind: CueKind::Terminator,
                language: None,
            },
        );
    }
    roles[id] = role;
}

/// Finds a concept's tokens in a sentence: the whole phrase if present, else its first word.
fn locate(
    normalizer: &Normalizer,
    sentence: &NormalizedText,
    concept: &str,
) -> Option<(usize, usize)> {
    let concept = normalizer.normalize(concept);
    let words: Vec<&str> = (0..concept.tokens.len())
        .map(|index| concept.squeezed_of(index))
        .collect();
    let first_word = *words.first()?;
    let tokens = &sentence.tokens;
    let whole = (0..tokens.len()).find(|&start| {
        words.iter().enumerate().all(|(offset, word)| {
            start + offset < tokens.len() && sentence.squeezed_of(start + offset) == *word
        })
    });
    if let Some(start) = whole {
        return Some((start, start + words.len() - 1));
    }
    let start = (0..tokens.len()).position(|index| sentence.squeezed_of(index) == first_word)?;
    Some((start, start))
}

/// The set's concepts by id, each with the file that defines it.
struct Concepts<'a> {
    by_id: HashMap<&'a str, &'a file::Phrases>,
}

impl<'a> Concepts<'a> {
    fn gather(files: &'a [(PathBuf, PolicyFile)]) -> Result<Self, PolicyLoadError> {
        let mut by_id = HashMap::new();
        for (path, file) in files {
            for concept in &file.concept {
                let error = |reason: &str| PolicyLoadError::Concept {
                    path: path.clone(),
                    concept: concept.id.clone(),
                    reason: reason.to_owned(),
                };
                if concept.phrases.is_empty() {
                    return Err(error("has no phrases"));
                }
                if concept
                    .phrases
                    .iter()
                    .any(|(_, phrase)| phrase.trim_start().starts_with('@'))
                {
                    return Err(error("names another concept; concepts hold phrases only"));
                }
                if by_id
                    .insert(concept.id.as_str(), &concept.phrases)
                    .is_some()
                {
                    return Err(error(
                        "is defined twice; concept ids must be unique across the policy set",
                    ));
                }
            }
        }
        Ok(Self { by_id })
    }

    /// `(language, phrase)` pairs with every `@id` replaced by that concept's own pairs.
    fn expand<'p>(
        &self,
        phrases: impl Iterator<Item = (&'p str, &'p str)>,
    ) -> Result<Vec<(&'p str, &'p str)>, String>
    where
        'a: 'p,
    {
        let mut out = Vec::new();
        for (language, phrase) in phrases {
            match phrase.trim().strip_prefix('@') {
                Some(id) => {
                    let concept = self
                        .by_id
                        .get(id)
                        .ok_or_else(|| format!("names concept `@{id}`, which no file defines"))?;
                    out.extend(concept.iter());
                }
                None => out.push((language, phrase)),
            }
        }
        Ok(out)
    }
}

/// The words of a one-word list in the context file, read as messages are read ("não" and
/// "nao" are one word).
fn single_words(
    normalizer: &Normalizer,
    path: &Path,
    list: &str,
    words: &[String],
) -> Result<Vec<String>, PolicyLoadError> {
    short_entries(normalizer, path, list, words, 1)
}

/// `answers_no`, normalised: one to three words each.
fn short_answers(
    normalizer: &Normalizer,
    path: &Path,
    answers: &[String],
) -> Result<Vec<String>, PolicyLoadError> {
    short_entries(normalizer, path, "answers_no", answers, 3)
}

/// A context list's entries as messages are read, each of one to `most` words, joined by one
/// space.
fn short_entries(
    normalizer: &Normalizer,
    path: &Path,
    list: &str,
    entries: &[String],
    most: usize,
) -> Result<Vec<String>, PolicyLoadError> {
    entries
        .iter()
        .map(|entry| {
            let normalized = normalizer.normalize(entry);
            let words = normalized.tokens.len();
            if !(1..=most).contains(&words)
                || normalized.tokens.iter().any(|t| t.kind != TokenKind::Word)
            {
                let reason = if most == 1 {
                    format!("`{list}` holds one-word entries; `{entry}` is not one word")
                } else {
                    format!("`{list}` holds entries of one to {most} words; `{entry}` is not one")
                };
                return Err(PolicyLoadError::Parse {
                    path: path.to_owned(),
                    reason,
                });
            }
            Ok((0..words)
                .map(|word| normalized.plain_of(word))
                .collect::<Vec<_>>()
                .join(" "))
        })
        .collect()
}

/// A trigger that context left standing: the hit, its context, and the language of its phrase.
type TriggerHit<'a> = (&'a Hit, &'a Assessment, &'a str);

/// A list of cue phrases, their kind, and the language they are written for (an index into
/// `PolicySet::cue_languages`; `None`: every language).
type CueList<'a> = (&'a Vec<String>, CueKind, Option<usize>);

/// Every cue list, with the languages of those written for one.
fn cue_lists(context: &ContextFile) -> (Vec<CueList<'_>>, Vec<String>) {
    let mut lists: Vec<CueList<'_>> = Vec::new();
    let mut languages: Vec<String> = Vec::new();
    for (spec, make) in [
        (
            &context.negation,
            CueKind::Negation as fn(Direction) -> CueKind,
        ),
        (&context.historical, CueKind::Historical),
        (&context.hypothetical, CueKind::Hypothetical),
        (&context.experiencer, CueKind::Experiencer),
    ] {
        lists.push((&spec.before, make(Direction::Forward), None));
        lists.push((&spec.after, make(Direction::Backward), None));
        lists.push((&spec.after_next_word, make(Direction::Preceding), None));
        lists.push((&spec.pseudo, make(Direction::Pseudo), None));
        for (language, cues) in &spec.in_language {
            let index = match languages.iter().position(|known| known == language) {
                Some(index) => index,
                None => {
                    languages.push(language.clone());
                    languages.len() - 1
                }
            };
            lists.push((&cues.before, make(Direction::Forward), Some(index)));
            lists.push((&cues.after, make(Direction::Backward), Some(index)));
            lists.push((
                &cues.after_next_word,
                make(Direction::Preceding),
                Some(index),
            ));
        }
    }
    lists.push((&context.family_history, CueKind::FamilyHistory, None));
    lists.push((&context.acute, CueKind::Acute, None));
    lists.push((&context.recurrence, CueKind::Recurrence, None));
    lists.push((&context.terminators, CueKind::Terminator, None));
    lists.push((
        &context.negation_terminators,
        CueKind::NegationTerminator,
        None,
    ));
    lists.push((&context.figurative, CueKind::Figurative, None));
    (lists, languages)
}

fn read_optional<T: for<'de> Deserialize<'de> + Default>(
    path: &Path,
    hasher: &mut Sha256,
) -> Result<T, PolicyLoadError> {
    match std::fs::read_to_string(path) {
        Ok(raw) => {
            hasher.update(raw.as_bytes());
            toml::from_str(&raw).map_err(|error| PolicyLoadError::Parse {
                path: path.to_owned(),
                reason: error.to_string(),
            })
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(source) => Err(PolicyLoadError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::prompts::{Prompts, Region};

    fn shipped() -> PolicySet {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let prompts = Prompts::load(&root.join("prompts"), Region::Uk).expect("prompts");
        PolicySet::load(&root.join("policies"), &prompts).expect("policies")
    }

    /// A policy set of one topic file (and the shipped prompts), or the error loading it gives.
    fn load_one(topic: &str) -> Result<PolicySet, PolicyLoadError> {
        load_files(&[("topic.toml", topic)])
    }

    /// A policy set of the given files (and the shipped prompts), or the error loading it gives.
    fn load_files(files: &[(&str, &str)]) -> Result<PolicySet, PolicyLoadError> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let prompts = Prompts::load(&root.join("prompts"), Region::Uk).expect("prompts");
        let dir = tempfile::tempdir().expect("temporary directory");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write a policy file");
        }
        PolicySet::load(dir.path(), &prompts)
    }

    const CONCEPTS: &str = r#"
[meta]
id = "topic"

[[concept]]
id = "chest"
phrases.en = ["chest pain", "tight band round my chest"]
phrases.fr = ["douleur thoracique"]

[[concept]]
id = "spreading"
phrases = ["into my jaw", "down my arm"]

[[rule]]
id = "topic.chest"
severity = "emergency"
guidance = "emergency"
triggers = ["@chest"]
requires = [["@spreading", "sweating"]]
unless = ["@never"]
"#;

    #[test]
    fn a_concept_named_by_a_rule_stands_for_all_its_phrases_in_their_languages() {
        let error = load_one(CONCEPTS)
            .err()
            .expect("`@never` is defined nowhere");
        assert!(error.to_string().contains("`@never`"), "{error}");

        let set = load_one(&CONCEPTS.replace(r#"unless = ["@never"]"#, ""))
            .expect("a set whose concepts are all defined");
        let band = set.evaluate("a tight band round my chest going into my jaw");
        assert_eq!(band.rule_ids(), ["topic.chest"]);
        assert_eq!(
            set.evaluate("chest pain, no sweat").level,
            Severity::Routine,
            "the requirement still applies"
        );
        let french = set.evaluate("douleur thoracique, je suis en sueur, sweating");
        assert_eq!(
            french.fired.first().map(|fired| fired.language.as_str()),
            Some("fr")
        );
    }

    #[test]
    fn concepts_hold_phrases_only_and_are_defined_once() {
        let nested = CONCEPTS.replace(r#""down my arm""#, r#""@chest""#);
        assert!(
            load_one(&nested).is_err_and(|error| error.to_string().contains("another concept"))
        );
        let twice = CONCEPTS.replace(r#"id = "spreading""#, r#"id = "chest""#);
        assert!(load_one(&twice).is_err_and(|error| error.to_string().contains("defined twice")));
    }

    fn set_with_topic(topic: &str) -> (tempfile::TempDir, PolicySet) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let prompts = Prompts::load(&root.join("prompts"), Region::Uk).expect("prompts");
        let dir = tempfile::tempdir().expect("temporary directory");
        for shared in ["context.toml", "lexicon.toml", "measures.toml"] {
            std::fs::copy(root.join("policies").join(shared), dir.path().join(shared))
                .expect("copy the shipped cues and lexicon");
        }
        std::fs::write(dir.path().join("topic.toml"), topic).expect("write the topic file");
        let set = PolicySet::load(dir.path(), &prompts).expect("a set with the topic");
        (dir, set)
    }

    /// Chest pain, black stools excepted by iron tablets, urine retention, a bulging bladder.
    const EXCEPTIONS_TOPIC: &str = r#"
[meta]
id = "topic"

[[rule]]
id = "topic.chest"
severity = "emergency"
guidance = "emergency"
triggers = ["chest pain"]

[[rule]]
id = "topic.black"
severity = "urgent"
guidance = "urgent"
triggers = ["black poo"]
unless = ["iron tablets"]

[[rule]]
id = "topic.retention"
severity = "urgent"
guidance = "urgent"
triggers = ["has not peed"]

[[rule]]
id = "topic.bladder"
severity = "emergency"
guidance = "emergency"
triggers = ["bladder bulging"]
"#;

    #[test]
    fn an_exception_reaches_only_the_triggers_near_it() {
        let (_dir, set) = set_with_topic(EXCEPTIONS_TOPIC);
        let level = |text: &str| set.evaluate(text).level;
        assert_eq!(level("black poo, I take iron tablets"), Severity::Routine);
        assert_eq!(
            level("I take iron tablets. Black poo since yesterday"),
            Severity::Routine
        );
        let far = format!(
            "Can I get my iron tablets on repeat? {}. Also black poo since yesterday",
            "We went to the shops on Saturday and then to see my sister ".repeat(4)
        );
        assert_eq!(
            level(&far),
            Severity::Urgent,
            "the exception is out of reach"
        );
        let twice = format!("black poo, on iron tablets. {far}");
        assert_eq!(
            level(&twice),
            Severity::Urgent,
            "one trigger out of the exception's reach is enough"
        );
    }

    #[test]
    fn a_denied_exception_does_not_block_and_a_denial_inside_a_finding_denies_nothing_after_it() {
        let (_dir, set) = set_with_topic(EXCEPTIONS_TOPIC);
        let level = |text: &str| set.evaluate(text).level;
        assert_eq!(level("black poo, I take iron tablets"), Severity::Routine);
        assert_eq!(
            level("black poo, I'm not on iron tablets"),
            Severity::Urgent
        );
        assert_eq!(level("black poo, no iron tablets"), Severity::Urgent);
        assert_eq!(
            level("black poo, I can't swallow without iron tablets"),
            Severity::Routine,
            "a denial far from the exception is not about it"
        );
        assert_eq!(
            level("hasn't peed in 14 hours, bladder bulging"),
            Severity::Emergency,
            "the finding's own `not` denies nothing after it"
        );
        assert_eq!(level("no bladder bulging"), Severity::Routine);
    }

    /// A set of `topic` with a context file of its own, or the error loading it gives.
    fn load_with_context(context: &str) -> Result<PolicySet, PolicyLoadError> {
        load_files(&[("context.toml", context), ("topic.toml", EXCEPTIONS_TOPIC)])
    }

    #[test]
    fn an_exception_taken_back_before_the_finding_is_no_exception() {
        let set = load_with_context("retractions = [\"I'm serious\"]\n")
            .expect("a set with a retraction");
        let level = |text: &str| set.evaluate(text).level;
        assert_eq!(level("iron tablets, black poo"), Severity::Routine);
        assert_eq!(
            level("iron tablets, no I'm serious, black poo"),
            Severity::Urgent,
            "taken back"
        );
        assert_eq!(
            level("I'm serious, black poo and I'm on iron tablets"),
            Severity::Routine,
            "an exception after the retraction still stands"
        );
        let without = load_with_context("").expect("a set without retractions");
        assert_eq!(
            without
                .evaluate("iron tablets, no I'm serious, black poo")
                .level,
            Severity::Routine
        );
    }

    #[test]
    fn an_exception_does_not_reach_past_a_contrast_to_a_finding_after_it() {
        let set = load_with_context("contrasts = [\"but\"]\n").expect("a set with a contrast");
        let level = |text: &str| set.evaluate(text).level;
        assert_eq!(
            level("I take iron tablets but black poo since yesterday"),
            Severity::Urgent,
            "the finding after the contrast"
        );
        assert_eq!(
            level("black poo since yesterday but I take iron tablets"),
            Severity::Routine,
            "an exception after the contrast reaches back"
        );
        assert_eq!(level("I take iron tablets, black poo"), Severity::Routine);
    }

    #[test]
    fn the_answers_and_exception_words_are_the_context_file_s_own() {
        let set = load_with_context(
            r#"
answers_no = ["nah", "NÃO"]
exception_words = ["without"]
[negation]
before = ["no", "without"]
"#,
        )
        .expect("a set with its own answers");
        let level = |text: &str| set.evaluate(text).level;
        assert_eq!(level("chest pain? nah."), Severity::Routine);
        assert_eq!(
            level("chest pain? nao"),
            Severity::Routine,
            "read as messages are"
        );
        assert_eq!(
            level("chest pain? nope."),
            Severity::Emergency,
            "not in this file"
        );
        assert_eq!(level("black poo without iron tablets"), Severity::Routine);

        let set = load_with_context("[negation]\nbefore = [\"no\", \"without\"]\n")
            .expect("a set without exception words");
        assert_eq!(
            set.evaluate("black poo without iron tablets").level,
            Severity::Urgent,
            "with no exception words `without` denies the exception"
        );

        let set = load_with_context("answers_no = [\"not at all\"]\n").expect("a short answer");
        assert_eq!(
            set.evaluate("chest pain? not at all.").level,
            Severity::Routine
        );
        let refused = load_with_context("answers_no = [\"no not at all\"]\n").err();
        assert!(
            refused.is_some_and(|error| error.to_string().contains("`no not at all` is not one")),
            "an answer is at most three words"
        );
        let refused = load_with_context("exception_words = [\"no way\"]\n").err();
        assert!(
            refused.is_some_and(|error| error.to_string().contains("`no way` is not one word")),
            "a list of single words refuses a phrase"
        );
    }

    #[test]
    fn a_question_stops_only_at_the_context_file_s_clause_subjects() {
        let context = "[hypothetical]\nbefore = [\"if he\"]\n";
        let text = "can you check if he is ok, she has chest pain now";
        let without = load_with_context(context).expect("a set without clause subjects");
        assert_eq!(
            without.evaluate(text).level,
            Severity::Routine,
            "the question reaches past the comma"
        );
        let with = load_with_context(&format!("clause_subjects = [\"SHE\"]\n{context}"))
            .expect("a set with clause subjects");
        assert_eq!(with.evaluate(text).level, Severity::Emergency);
        assert_eq!(
            with.evaluate("can you check if he is ok, then chest pain")
                .level,
            Severity::Routine,
            "a clause without a subject of its own stays in the question"
        );
        let refused = load_with_context("clause_subjects = [\"she is\"]\n").err();
        assert!(
            refused.is_some_and(|error| error.to_string().contains("`she is` is not one word")),
            "a subject is one word"
        );
    }

    #[test]
    fn a_cue_written_for_one_language_denies_only_that_language_s_findings() {
        const FEVER: &str = r#"
[meta]
id = "topic"

[[rule]]
id = "topic.fever"
severity = "urgent"
guidance = "urgent"
triggers.es = ["fiebre alta"]
triggers.sw = ["homa kali"]
"#;
        let context = "[negation.in_language.es]\nbefore = [\"ni\"]\n";
        let set = load_files(&[("context.toml", context), ("topic.toml", FEVER)])
            .expect("a set with a cue of one language");
        let level = |text: &str| set.evaluate(text).level;
        assert_eq!(level("no tose ni fiebre alta"), Severity::Routine);
        // Swahili "ni" is "is": "the child is (with) a high fever".
        assert_eq!(level("mtoto ni homa kali"), Severity::Urgent);

        let refused = load_files(&[
            (
                "context.toml",
                "[negation.in_language.es]\npseudo = [\"ni hablar\"]\n",
            ),
            ("topic.toml", FEVER),
        ])
        .err();
        assert!(
            refused.is_some_and(|error| error.to_string().contains("pseudo")),
            "look-alikes cancel cues in every language, so they are not written for one"
        );
    }

    #[test]
    fn the_words_that_give_a_measure_are_the_measures_file_s_own() {
        const HOT: &str = r#"
[meta]
id = "topic"

[[rule]]
id = "topic.hot"
severity = "urgent"
summary = "A temperature"
guidance = "urgent"
triggers = ["hot"]

[rule.measures]
temperature_c = { min = 38.0 }

[[test]]
text = "feeling hot, temperature 38.5"
expect = "urgent"
rule = "topic.hot"
"#;
        let with_words =
            |measures: &str| load_files(&[("measures.toml", measures), ("topic.toml", HOT)]);
        let set = with_words("temperature_words = [\"Températur\", \"calor\"]\n")
            .expect("a set with its own temperature words");
        let level = |text: &str| set.evaluate(text).level;
        assert_eq!(
            level("feeling hot, calor 39"),
            Severity::Urgent,
            "a word of the file"
        );
        assert_eq!(
            level("feeling hot, temperatur 39"),
            Severity::Urgent,
            "read as messages are"
        );
        assert_eq!(
            level("feeling hot, fever 39"),
            Severity::Routine,
            "not a word of this file"
        );

        let refused = |measures: &str| with_words(measures).err().map(|error| error.to_string());
        assert!(
            refused("heart_units = [\"beats a minute\"]\n")
                .is_some_and(|error| error.contains("`beats a minute` is not one word"))
        );
        assert!(
            refused("not_temperature_names = [\"£\"]\n")
                .is_some_and(|error| error.contains("reads as `,`")),
            "a sign read as a comma would stand for every comma"
        );
        assert!(
            refused("temperature = [\"calor\"]\n").is_some(),
            "an unknown list"
        );
        let without = load_files(&[("topic.toml", HOT)])
            .err()
            .map(|error| error.to_string());
        assert!(
            without.is_some_and(|error| error.contains("no measures.toml")),
            "a rule that names a measure needs the words that give it"
        );
    }

    #[test]
    fn a_negation_in_a_gap_of_the_phrase_negates_it_but_the_phrase_own_words_do_not() {
        let topic = r#"
[meta]
id = "topic"

[[rule]]
id = "topic.blue"
severity = "emergency"
guidance = "emergency"
triggers = ["lips ** going blue", "can not ** breathe"]
patterns = ['\blips (?:\S+ ){0,3}turning grey\b']
"#;
        let (_dir, set) = set_with_topic(topic);
        let level = |text: &str| set.evaluate(text).level;
        assert_eq!(level("his lips are going blue"), Severity::Emergency);
        assert_eq!(
            level("his lips are not going blue"),
            Severity::Routine,
            "phrase gap"
        );
        assert_eq!(level("his lips are turning grey"), Severity::Emergency);
        assert_eq!(
            level("his lips are not turning grey"),
            Severity::Routine,
            "pattern gap"
        );
        assert_eq!(
            level("I can't really breathe"),
            Severity::Emergency,
            "the phrase's own `not` is no negation of it"
        );
    }

    #[test]
    fn a_language_without_its_own_advice_gets_its_template_then_the_english_advice() {
        let set = load_one(
            r#"
[meta]
id = "topic"

[[rule]]
id = "topic.anaphylaxis"
severity = "emergency"
guidance = "emergency"
advice.en = "Use the adrenaline auto-injector now"
advice.fr = "Utilisez le stylo d'adrénaline maintenant"
triggers.en = ["throat is closing"]
triggers.fr = ["gorge se ferme"]
triggers.de = ["hals schwillt zu"]
triggers.xx = ["kehlo zuu"]
"#,
        )
        .expect("a set with advice in two languages");
        let guidance = |text: &str| {
            let decision = set.evaluate(text);
            let fired = decision.fired.first().expect("the rule fires");
            (fired.language.clone(), fired.guidance.clone())
        };
        let (language, french) = guidance("ma gorge se ferme");
        assert_eq!(language, "fr");
        assert!(french.starts_with("Ceci peut") && french.contains("stylo d'adrénaline"));
        assert!(!french.contains("auto-injector"), "{french}");

        let (language, german) = guidance("mein hals schwillt zu");
        assert_eq!(language, "de");
        let (own, english) = german.split_once("\n\n").expect("two paragraphs");
        assert!(
            own.starts_with("Dies kann") && !own.contains("auto-injector"),
            "{own}"
        );
        assert!(english.starts_with("This may be") && english.contains("auto-injector"));

        let (language, unknown) = guidance("kehlo zuu");
        assert_eq!(language, "xx");
        assert!(unknown.starts_with("This may be") && unknown.contains("auto-injector"));
        assert!(!unknown.contains("\n\n"), "{unknown}");
    }

    #[test]
    fn every_language_the_shipped_rules_read_gets_guidance_in_that_language() {
        let set = shipped();
        let mut languages = std::collections::BTreeSet::new();
        for rule in set.rules.iter() {
            let english = rule.guidance_for("en");
            for (language, text) in &rule.guidance {
                languages.insert(language.as_str());
                if language != "en" {
                    assert_ne!(text, &english, "{} has no {language} guidance", rule.id);
                }
            }
        }
        assert!(languages.len() >= 44, "{languages:?}");
    }

    #[test]
    fn a_pattern_written_under_a_language_reports_that_language() {
        let set = load_one(
            r#"
[meta]
id = "topic"

[[rule]]
id = "topic.stroke"
severity = "emergency"
guidance = "emergency"
patterns.de = ['\bgesicht\b(?: \S+){0,3} (?:hangt|schief)\b']
"#,
        )
        .expect("a set with a German pattern");
        let decision = set.evaluate("sein Gesicht ist plötzlich ganz schief");
        assert_eq!(
            decision.fired.first().map(|fired| fired.language.as_str()),
            Some("de"),
            "{decision:?}"
        );
    }

    #[test]
    fn kept_findings_of_earlier_messages_count_only_for_the_set_that_made_them() {
        let set = shipped();
        let fever = "I've had a high temperature since yesterday";
        let neck = "and now my neck is really stiff";
        // On its own the stiff neck is no emergency (the safety net may still read it as urgent).
        let alone = set.evaluate(neck);
        assert!(alone.level < Severity::Emergency);
        assert!(
            !alone
                .rule_ids()
                .iter()
                .any(|id| id.starts_with("meningitis."))
        );
        let together = set.evaluate_in_conversation(neck, &[fever]);
        assert_eq!(together.level, Severity::Emergency, "{together:?}");

        let kept = set.findings_for_later(fever);
        let (after, _) = set.evaluate_after(neck, [&kept]);
        assert_eq!(after.rule_ids(), together.rule_ids());

        // Rule numbers from another set (a reload) mean nothing here.
        let stale = EarlierFindings {
            version: "another set".into(),
            met: kept.met.clone(),
        };
        let (ignored, _) = set.evaluate_after(neck, [&stale]);
        assert!(ignored.level < Severity::Emergency);
        assert!(
            !ignored
                .rule_ids()
                .iter()
                .any(|id| id.starts_with("meningitis."))
        );

        // A message's own findings are returned for the messages after it.
        let (_, own) = set.evaluate_after(fever, []);
        assert!(own.is_for(&set));
        assert_eq!(own.met, kept.met);
    }

    const NET_TOPIC: &str = r#"
[meta]
id = "topic"

[[rule]]
id = "topic.tongue"
severity = "emergency"
guidance = "emergency"
triggers = ["tongue swollen"]
unless = ["bit my tongue"]

[[rule]]
id = "topic.mild"
severity = "urgent"
guidance = "urgent"
triggers = ["earache"]
"#;

    const NET: &str = r#"
weights = "weights.tsv"
urgent_at = 0.5
emergency_at = 0.5
bias_urgent = -2.0
bias_emergency = -3.0

[[rule]]
id = "net.emergency"
severity = "emergency"
guidance = "emergency"
advice.en = "Call 999 if someone could be in danger."

[[rule]]
id = "net.urgent"
severity = "urgent"
guidance = "urgent"
"#;

    const WEIGHTS: &str = "grey\t1.5\t2.0\nsweaty\t1.0\t2.0\ngunk\t2.5\t0.0\ntongue\t3.0\t4.0\n";

    #[test]
    fn the_safety_net_raises_what_the_rules_left_low_and_never_lowers() {
        let set = load_files(&[
            ("topic.toml", NET_TOPIC),
            ("safety_net.toml", NET),
            ("weights.tsv", WEIGHTS),
        ])
        .expect("a set with a safety net");
        let decide = |text: &str| set.evaluate(text);

        let grey = decide("he has gone grey and sweaty");
        assert_eq!(grey.level, Severity::Emergency);
        assert_eq!(grey.rule_ids(), ["net.emergency"]);
        let lead = grey.lead().expect("the net's rule fired");
        assert_eq!(lead.matched, "grey, sweaty");
        assert!(lead.guidance.contains("Call 999"));
        assert!(grey.net.as_ref().is_some_and(|net| net.emergency > 0.5));

        // Urgent only: a rule already at that level is kept, not doubled.
        assert_eq!(decide("gunk everywhere").rule_ids(), ["net.urgent"]);
        assert_eq!(decide("earache and gunk").rule_ids(), ["topic.mild"]);
        // Never lowered, and quiet on words it does not know.
        assert_eq!(decide("my tongue swollen").level, Severity::Emergency);
        assert_eq!(decide("can I book a smear test").level, Severity::Routine);
        // An operator's exception outranks the statistics.
        let excepted = decide("I bit my tongue swollen");
        assert_eq!(excepted.level, Severity::Routine);
        assert!(excepted.net.is_some_and(|net| net.emergency > 0.5));
    }

    #[test]
    fn a_level_of_the_net_stands_back_for_its_own_exceptions() {
        let net = NET
            .replace(
                "advice.en = \"Call 999 if someone could be in danger.\"",
                "unless = [\"the vet\"]",
            )
            .replace(
                "id = \"net.urgent\"",
                "id = \"net.urgent\"\nunless = [\"@topic.animal\"]",
            );
        let topic = format!(
            "{NET_TOPIC}\n[[concept]]\nid = \"topic.animal\"\nphrases.en = [\"the vet\"]\n"
        );
        let set = load_files(&[
            ("topic.toml", topic.as_str()),
            ("safety_net.toml", net.as_str()),
            ("weights.tsv", WEIGHTS),
        ])
        .expect("a net with exceptions");
        let decide = |text: &str| set.evaluate(text);
        assert_eq!(
            decide("he has gone grey and sweaty").rule_ids(),
            ["net.emergency"]
        );
        // Both levels stand back, and the explanation says why.
        let vet = decide("he has gone grey and sweaty, is the vet open");
        assert_eq!(vet.level, Severity::Routine);
        assert!(
            vet.set_aside
                .iter()
                .any(|aside| aside.rule == "net.emergency" && aside.reason.contains("unless"))
        );
        // Rules keep their own phrases.
        assert_eq!(
            decide("tongue swollen, the vet is here").level,
            Severity::Emergency
        );
    }

    #[test]
    fn a_malformed_safety_net_is_refused() {
        let refused = |net: &str, weights: &str| {
            load_files(&[
                ("topic.toml", NET_TOPIC),
                ("safety_net.toml", net),
                ("weights.tsv", weights),
            ])
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default()
        };
        assert!(refused(NET, "grey\t1.0\n").contains("weights.tsv"));
        assert!(refused(&NET.replace("0.5", "2.5"), WEIGHTS).contains("between 0 and 1"));
        let with_triggers = NET.replace(
            "id = \"net.urgent\"",
            "id = \"net.urgent\"\ntriggers = [\"pain\"]",
        );
        assert!(refused(&with_triggers, WEIGHTS).contains("no phrases"));
        let one_level = NET.replace("severity = \"urgent\"", "severity = \"emergency\"");
        assert!(refused(&one_level, WEIGHTS).contains("one rule per level"));
    }
}
