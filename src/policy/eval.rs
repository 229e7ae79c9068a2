//! `policy eval`: a labelled file (`level<TAB>text`) against a policy set, as a confusion matrix,
//! recall per level and false alarms on routine messages.

use std::fmt::Write;

use super::{PolicySet, Severity};

const LEVELS: [Severity; 3] = [Severity::Emergency, Severity::Urgent, Severity::Routine];

#[derive(Debug, thiserror::Error)]
#[error("line {line}: expected `emergency|urgent|routine<TAB>text`, found {found:?}")]
pub struct LabelError {
    pub line: usize,
    pub found: String,
}

#[derive(Debug, Default)]
pub struct EvalReport {
    /// `matrix[expected][got]`, indexed emergency, urgent, routine.
    pub matrix: [[usize; 3]; 3],
    pub errors: Vec<(Severity, Severity, Vec<String>, String)>,
}

fn index(level: Severity) -> usize {
    match level {
        Severity::Emergency => 0,
        Severity::Urgent => 1,
        Severity::Routine => 2,
    }
}

/// # Errors
/// A line that is not `level<TAB>text`.
pub fn evaluate(set: &PolicySet, labelled: &str) -> Result<EvalReport, LabelError> {
    let mut report = EvalReport::default();
    for (number, line) in labelled.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = line.split_once('\t').and_then(|(label, text)| {
            let level = match label.trim() {
                "emergency" => Severity::Emergency,
                "urgent" => Severity::Urgent,
                "routine" => Severity::Routine,
                _ => return None,
            };
            Some((level, text))
        });
        let Some((expected, text)) = parsed else {
            return Err(LabelError {
                line: number + 1,
                found: line.chars().take(60).collect(),
            });
        };
        let decision = set.evaluate(text);
        report.matrix[index(expected)][index(decision.level)] += 1;
        if decision.level != expected {
            let rules = decision.rule_ids().into_iter().map(str::to_owned).collect();
            report
                .errors
                .push((expected, decision.level, rules, text.to_owned()));
        }
    }
    Ok(report)
}

impl EvalReport {
    fn row_total(&self, expected: usize) -> usize {
        self.matrix[expected].iter().sum()
    }

    /// Recall of a level: messages of that level decided at that level or above.
    pub fn recall_at_least(&self, level: Severity) -> f64 {
        let row = index(level);
        let hit: usize = (0..=row).map(|got| self.matrix[row][got]).sum();
        ratio(hit, self.row_total(row))
    }

    /// Exact recall of a level.
    pub fn recall(&self, level: Severity) -> f64 {
        let row = index(level);
        ratio(self.matrix[row][row], self.row_total(row))
    }

    /// Routine messages flagged urgent or emergency.
    pub fn false_alarm_rate(&self) -> f64 {
        let routine = index(Severity::Routine);
        ratio(
            self.matrix[routine][0] + self.matrix[routine][1],
            self.row_total(routine),
        )
    }

    pub fn render(&self, show_errors: bool) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "expected \\ decided   emergency   urgent  routine   total"
        );
        for level in LEVELS {
            let row = index(level);
            let _ = writeln!(
                out,
                "{:<20}{:>9}{:>9}{:>9}{:>8}",
                level.as_str(),
                self.matrix[row][0],
                self.matrix[row][1],
                self.matrix[row][2],
                self.row_total(row)
            );
        }
        let _ = writeln!(out);
        for level in [Severity::Emergency, Severity::Urgent] {
            let _ = writeln!(
                out,
                "{:<10} recall {:.1}% exact, {:.1}% at this level or higher",
                level.as_str(),
                100.0 * self.recall(level),
                100.0 * self.recall_at_least(level)
            );
        }
        let emergency = index(Severity::Emergency);
        let _ = writeln!(
            out,
            "emergencies missed (decided routine): {}",
            self.matrix[emergency][index(Severity::Routine)]
        );
        let _ = writeln!(
            out,
            "routine messages flagged: {:.1}%",
            100.0 * self.false_alarm_rate()
        );
        if show_errors {
            let _ = writeln!(out);
            for (expected, got, rules, text) in &self.errors {
                let _ = writeln!(
                    out,
                    "{} -> {} {:?}\t{}",
                    expected.as_str(),
                    got.as_str(),
                    rules,
                    text
                );
            }
        }
        out
    }
}

fn ratio(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}
