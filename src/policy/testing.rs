//! The test cases each policy file carries, and the runner behind `carebridge policy test` and
//! hot reload: a set whose tests fail is never served.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

use super::file::{ExpectedAction, OutputTestSpec, TestSpec};
use super::{PolicySet, Severity};
use crate::guard::{self, GuardAction};

/// The tests of one file, kept with the compiled set.
#[derive(Debug)]
pub struct FileTests {
    pub path: PathBuf,
    pub inputs: Vec<TestSpec>,
    pub outputs: Vec<OutputTestSpec>,
}

/// One failed case.
#[derive(Debug, Clone)]
pub struct TestFailure {
    pub path: PathBuf,
    pub text: String,
    pub expected: String,
    pub got: String,
    pub explanation: String,
}

#[derive(Debug, Clone, Default)]
pub struct TestReport {
    pub passed: usize,
    pub failures: Vec<TestFailure>,
    /// Rules that no positive test names: a rule without a test is not done.
    pub untested_rules: Vec<String>,
}

impl TestReport {
    pub fn is_success(&self) -> bool {
        self.failures.is_empty() && self.untested_rules.is_empty()
    }
}

impl fmt::Display for TestReport {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for failure in &self.failures {
            writeln!(
                formatter,
                "FAIL {}: {:?}\n  expected {}, got {}\n  {}",
                failure.path.display(),
                failure.text,
                failure.expected,
                failure.got,
                failure.explanation
            )?;
        }
        for rule in &self.untested_rules {
            writeln!(formatter, "FAIL rule `{rule}` has no test case naming it")?;
        }
        write!(
            formatter,
            "{} passed, {} failed",
            self.passed,
            self.failures.len() + self.untested_rules.len()
        )
    }
}

/// Runs every test case of every file in the set.
pub fn run(set: &PolicySet) -> TestReport {
    let mut report = TestReport::default();
    let mut named: BTreeSet<&str> = BTreeSet::new();
    for file in set.tests() {
        for case in &file.inputs {
            let earlier: Vec<&str> = case.before.iter().map(String::as_str).collect();
            let decision = set.evaluate_in_conversation(&case.text, &earlier);
            let fired = decision.rule_ids();
            let rule_ok = match &case.rule {
                Some(rule) => fired.contains(&rule.as_str()),
                None => case.expect != Severity::Routine || fired.is_empty(),
            };
            if let Some(rule) = &case.rule {
                named.insert(rule.as_str());
            }
            if decision.level == case.expect && rule_ok {
                report.passed += 1;
            } else {
                let explanation = set.explain(&case.text, &earlier);
                report.failures.push(TestFailure {
                    path: file.path.clone(),
                    text: case.text.clone(),
                    expected: format!(
                        "{}{}",
                        case.expect.as_str(),
                        case.rule
                            .as_ref()
                            .map(|rule| format!(" by {rule}"))
                            .unwrap_or_default()
                    ),
                    got: format!("{} by {:?}", decision.level.as_str(), fired),
                    explanation: format!(
                        "normalised: {:?}; matches: {}; set aside: {}",
                        explanation.normalized,
                        serde_json::to_string(&explanation.matches).unwrap_or_default(),
                        serde_json::to_string(&decision.set_aside).unwrap_or_default()
                    ),
                });
            }
        }
        for case in &file.outputs {
            let guarded = guard::run_chunked(set.output_rules(), case.flag, &case.text, 7);
            let expected = match case.expect {
                ExpectedAction::Pass => GuardAction::Pass,
                ExpectedAction::Replace => GuardAction::Replace,
                ExpectedAction::Redact => GuardAction::Redact,
                ExpectedAction::Append => GuardAction::Append,
            };
            if let Some(rule) = &case.rule {
                named.insert(rule.as_str());
            }
            let rule_ok = case
                .rule
                .as_ref()
                .is_none_or(|rule| guarded.rules.iter().any(|acted| acted == rule));
            if guarded.action == expected && rule_ok {
                report.passed += 1;
            } else {
                report.failures.push(TestFailure {
                    path: file.path.clone(),
                    text: case.text.clone(),
                    expected: format!("{expected:?} (flag {})", case.flag.as_str()),
                    got: format!("{:?} by {:?}", guarded.action, guarded.rules),
                    explanation: format!("patient would see: {:?}", guarded.text),
                });
            }
        }
    }
    for rule in set.rules() {
        if !named.contains(rule.id.as_str()) {
            report.untested_rules.push(rule.id.clone());
        }
    }
    for rule in set.output_rules().rules() {
        if !named.contains(rule.id.as_str()) {
            report.untested_rules.push(rule.id.clone());
        }
    }
    report
}
