//! Output rules: what the model must not say to a patient, compiled for the streaming guard.

use std::path::PathBuf;

use super::file::{OutputAction, OutputRuleSpec};
use super::normalize::{NormalizedText, Normalizer};
use super::phrases::{PhraseSet, PhraseSetBuilder};
use super::prefixes::PhrasePrefixes;
use super::{PolicyLoadError, Severity};

/// How many words a regular-expression output pattern is assumed to span at most, for the guard's
/// hold-back window.
const PATTERN_WORDS: usize = 8;

#[derive(Debug, Clone)]
pub struct OutputRule {
    pub id: String,
    pub when_flag: Vec<Severity>,
    pub action: OutputAction,
    pub text: String,
}

impl OutputRule {
    /// Whether the rule applies in a session carrying `flag`.
    pub fn applies(&self, flag: Severity) -> bool {
        self.when_flag.is_empty() || self.when_flag.contains(&flag)
    }
}

/// A violation found in a piece of reply text, as a token range of that text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputHit {
    pub rule: usize,
    pub first: usize,
    pub last: usize,
}

pub struct OutputRules {
    normalizer: Normalizer,
    phrases: PhraseSet,
    owners: Vec<usize>,
    rules: Vec<OutputRule>,
    /// The most words any rule's phrase can span: the most the guard ever holds back.
    window_words: usize,
    /// What could still grow into a phrase of a replace or redact rule, for each session flag
    /// (indexed by [`flag_slot`]).
    prefixes: [PhrasePrefixes; 3],
    /// The same for append rules.
    appends: [PhrasePrefixes; 3],
    /// How many append rules apply under each flag.
    append_rules: [usize; 3],
}

impl OutputRules {
    /// # Errors
    /// An invalid phrase or pattern, or a duplicate rule id.
    pub fn compile(
        normalizer: &Normalizer,
        files: Vec<(PathBuf, Vec<OutputRuleSpec>)>,
    ) -> Result<Self, PolicyLoadError> {
        let mut builder = PhraseSetBuilder::default();
        let mut owners = Vec::new();
        let mut rules: Vec<OutputRule> = Vec::new();
        let mut window_words = 1;
        for (path, specs) in files {
            for spec in specs {
                if rules.iter().any(|rule| rule.id == spec.id) {
                    return Err(PolicyLoadError::DuplicateRule(spec.id));
                }
                let index = rules.len();
                let phrase_error = |source| PolicyLoadError::Phrase {
                    path: path.clone(),
                    source,
                };
                for (_, phrase) in spec.triggers.iter() {
                    let id = builder.phrase(normalizer, phrase).map_err(phrase_error)?;
                    assign(&mut owners, id, index);
                    let words: usize = phrase
                        .split_whitespace()
                        .map(|part| match part {
                            "**" => 3,
                            _ => normalizer.normalize(part).tokens.len().max(1),
                        })
                        .sum();
                    window_words = window_words.max(words);
                }
                for pattern in &spec.patterns {
                    let id = builder.pattern(pattern).map_err(phrase_error)?;
                    assign(&mut owners, id, index);
                    window_words = window_words.max(PATTERN_WORDS);
                }
                if spec.triggers.is_empty() && spec.patterns.is_empty() {
                    return Err(PolicyLoadError::Rule {
                        path: path.clone(),
                        rule: spec.id,
                        reason: "has no triggers and no patterns".into(),
                    });
                }
                rules.push(OutputRule {
                    id: spec.id,
                    when_flag: spec.when_flag,
                    action: spec.action,
                    text: spec.text,
                });
            }
        }
        let expressions = builder.expressions();
        let automata = |flag: Severity, appending: bool| {
            let applying = expressions.iter().filter(|expression| {
                owners
                    .get(expression.phrase)
                    .and_then(|&rule| rules.get(rule))
                    .is_some_and(|rule| {
                        rule.applies(flag) && (rule.action == OutputAction::Append) == appending
                    })
            });
            let (automata, problems) = PhrasePrefixes::build(applying);
            for problem in problems {
                tracing::warn!(
                    flag = flag.as_str(),
                    %problem,
                    "output phrases too large for an automaton: the guard holds back and scans more"
                );
            }
            automata
        };
        let flags = [Severity::Routine, Severity::Urgent, Severity::Emergency];
        // An appended note changes nothing that streams, so only replace and redact rules hold
        // text back; append rules have automata of their own, to notice when one matched.
        let prefixes = flags.map(|flag| automata(flag, false));
        let appends = flags.map(|flag| automata(flag, true));
        let append_rules = flags.map(|flag| {
            rules
                .iter()
                .filter(|rule| rule.applies(flag) && rule.action == OutputAction::Append)
                .count()
        });
        Ok(Self {
            normalizer: normalizer.clone(),
            phrases: builder.build().map_err(PolicyLoadError::Compile)?,
            owners,
            rules,
            window_words,
            prefixes,
            appends,
            append_rules,
        })
    }

    pub fn rules(&self) -> &[OutputRule] {
        &self.rules
    }

    pub fn window_words(&self) -> usize {
        self.window_words
    }

    /// What could still grow into a phrase of a replace or redact rule that applies under
    /// `flag`.
    pub fn prefixes(&self, flag: Severity) -> &PhrasePrefixes {
        &self.prefixes[flag_slot(flag)]
    }

    /// The automata of the append rules that apply under `flag`.
    pub fn appends(&self, flag: Severity) -> &PhrasePrefixes {
        &self.appends[flag_slot(flag)]
    }

    /// How many append rules apply under `flag`.
    pub fn append_rule_count(&self, flag: Severity) -> usize {
        self.append_rules[flag_slot(flag)]
    }

    pub fn normalizer(&self) -> &Normalizer {
        &self.normalizer
    }

    pub fn normalize(&self, text: &str) -> NormalizedText {
        self.normalizer.normalize(text)
    }

    /// Violations in `text` that apply under `flag`, earliest first.
    pub fn find(&self, text: &NormalizedText, flag: Severity) -> Vec<OutputHit> {
        let mut hits: Vec<OutputHit> = self
            .phrases
            .scan(text)
            .into_iter()
            .filter_map(|hit| {
                let rule = *self.owners.get(hit.phrase)?;
                self.rules.get(rule)?.applies(flag).then_some(OutputHit {
                    rule,
                    first: hit.first,
                    last: hit.last,
                })
            })
            .collect();
        hits.sort_by_key(|hit| (hit.first, hit.last));
        hits
    }
}

fn flag_slot(flag: Severity) -> usize {
    match flag {
        Severity::Routine => 0,
        Severity::Urgent => 1,
        Severity::Emergency => 2,
    }
}

fn assign(owners: &mut Vec<usize>, id: usize, rule: usize) {
    if owners.len() <= id {
        owners.resize(id + 1, usize::MAX);
    }
    owners[id] = rule;
}
