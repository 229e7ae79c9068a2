//! Latency samples and their summaries (p50/p95/p99/max), for the table and the JSON report.

use std::time::Duration;

use serde_json::{Value, json};

/// Samples of one measure, in microseconds.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    micros: Vec<u64>,
}

impl Samples {
    pub fn push(&mut self, elapsed: Duration) {
        self.micros
            .push(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn extend(&mut self, other: Samples) {
        self.micros.extend(other.micros);
    }

    pub fn summary(&self) -> Summary {
        let mut sorted = self.micros.clone();
        sorted.sort_unstable();
        // Nearest-rank percentile: the smallest sample with at least p% of samples at or below it.
        let rank = |percent: f64| -> Option<u64> {
            if sorted.is_empty() {
                return None;
            }
            let position = ((percent / 100.0) * sorted.len() as f64).ceil() as usize;
            sorted.get(position.clamp(1, sorted.len()) - 1).copied()
        };
        Summary {
            count: sorted.len(),
            p50: rank(50.0),
            p95: rank(95.0),
            p99: rank(99.0),
            max: sorted.last().copied(),
        }
    }
}

/// Percentiles in microseconds; `None` when there were no samples.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub count: usize,
    pub p50: Option<u64>,
    pub p95: Option<u64>,
    pub p99: Option<u64>,
    pub max: Option<u64>,
}

impl Summary {
    pub fn to_json(self) -> Value {
        json!({
            "count": self.count,
            "p50_us": self.p50,
            "p95_us": self.p95,
            "p99_us": self.p99,
            "max_us": self.max,
        })
    }
}

/// Microseconds as milliseconds with enough digits to see sub-millisecond differences.
pub fn millis(micros: Option<u64>) -> String {
    match micros {
        Some(value) => format!("{:.2} ms", value as f64 / 1000.0),
        None => "-".into(),
    }
}

/// A signed difference in milliseconds.
pub fn signed_millis(micros: Option<i64>) -> String {
    match micros {
        Some(value) => format!("{:+.2} ms", value as f64 / 1000.0),
        None => "-".into(),
    }
}

/// One table row per measure.
pub struct Table {
    rows: Vec<(String, Summary)>,
}

impl Table {
    pub fn new() -> Self {
        Self { rows: Vec::new() }
    }

    pub fn row(&mut self, name: &str, samples: &Samples) {
        self.rows.push((name.to_owned(), samples.summary()));
    }

    pub fn render(&self) -> String {
        let width = self
            .rows
            .iter()
            .map(|(name, _)| name.len())
            .max()
            .unwrap_or(10)
            .max(10);
        let mut out = format!(
            "{:<width$}  {:>7}  {:>10}  {:>10}  {:>10}  {:>10}\n",
            "measure", "count", "p50", "p95", "p99", "max"
        );
        for (name, summary) in &self.rows {
            out.push_str(&format!(
                "{:<width$}  {:>7}  {:>10}  {:>10}  {:>10}  {:>10}\n",
                name,
                summary.count,
                millis(summary.p50),
                millis(summary.p95),
                millis(summary.p99),
                millis(summary.max),
            ));
        }
        out
    }

    pub fn to_json(&self) -> Value {
        Value::Object(
            self.rows
                .iter()
                .map(|(name, summary)| (name.clone(), summary.to_json()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut samples = Samples::default();
        for value in 1..=100 {
            samples.push(Duration::from_micros(value));
        }
        let summary = samples.summary();
        assert_eq!(summary.p50, Some(50));
        assert_eq!(summary.p99, Some(99));
        assert_eq!(summary.max, Some(100));
        assert_eq!(Samples::default().summary().p50, None);
    }
}
