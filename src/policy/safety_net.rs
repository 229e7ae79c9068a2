//! The statistical safety net: a linear model over the words and word pairs of a message's
//! normal form, trained on the labelled development sets and the policy tests
//! (`scripts/train_safety_net.py`), that raises a message the rules decided too low.
//!
//! Rules are written from wordings, and wordings carry over to other people's messages only a
//! little: on the held-out sets the rules alone decided a tenth to a third of emergencies below
//! emergency (docs/evaluation.md, seventeenth session). The net reads every
//! word of a message, so it catches many of those, at the price of flagging more routine
//! messages. It only ever raises a decision, never lowers one, and every raise names the words
//! that weighed most, so an operator can see why (`policy explain`).
//!
//! The model is two logistic regressions over the same features: one for "urgent or higher",
//! one for "emergency". A feature is a word of the normal form, or two words next to each other
//! (`chest pain`); punctuation is not a word. Weights are looked up by a 64-bit hash of the words,
//! computed without building the pair's text.

use std::collections::HashMap;

use serde::Serialize;

use super::FastHash;
use super::normalize::NormalizedText;

/// How many of the heaviest features a raise names.
const EVIDENCE: usize = 4;

/// The model and the probabilities at which it raises a decision.
#[derive(Debug, Clone)]
pub struct SafetyNet {
    features: HashMap<u64, Feature, FastHash>,
    bias: (f32, f32),
    pub urgent_at: f32,
    pub emergency_at: f32,
}

/// One feature's weights, and its words for explanations.
#[derive(Debug, Clone)]
struct Feature {
    urgent: f32,
    emergency: f32,
    words: String,
}

/// What the net made of one message.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct NetScore {
    /// Probability that the message is urgent or an emergency.
    pub urgent: f32,
    /// Probability that the message is an emergency.
    pub emergency: f32,
    /// The features that pushed hardest towards the level the net reaches, heaviest first;
    /// empty when it reaches neither threshold.
    pub evidence: Vec<String>,
}

/// Why a weights file was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WeightsError {
    #[error(
        "line {line}: expected `words<TAB>urgent weight<TAB>emergency weight`, found {found:?}"
    )]
    Shape { line: usize, found: String },
    #[error("line {line}: `{value}` is not a number")]
    Number { line: usize, value: String },
    #[error("line {line}: a feature is one word or two words, found {words:?}")]
    Words { line: usize, words: String },
    #[error("`{name}` must be a probability between 0 and 1, found {value}")]
    Threshold { name: &'static str, value: f32 },
}

impl SafetyNet {
    /// Builds the net from its weights file (`words<TAB>w_urgent<TAB>w_emergency` per line,
    /// `#` comments allowed), its biases and its thresholds.
    pub fn parse(
        weights: &str,
        bias: (f32, f32),
        urgent_at: f32,
        emergency_at: f32,
    ) -> Result<Self, WeightsError> {
        for (name, value) in [("urgent_at", urgent_at), ("emergency_at", emergency_at)] {
            if !(value > 0.0 && value < 1.0) {
                return Err(WeightsError::Threshold { name, value });
            }
        }
        let mut net = Self {
            features: HashMap::default(),
            bias,
            urgent_at,
            emergency_at,
        };
        for (index, line) in weights.lines().enumerate() {
            let line_number = index + 1;
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split('\t').collect();
            let [words, urgent, emergency] = fields.as_slice() else {
                return Err(WeightsError::Shape {
                    line: line_number,
                    found: line.to_owned(),
                });
            };
            let number = |value: &str| {
                value
                    .trim()
                    .parse::<f32>()
                    .map_err(|_| WeightsError::Number {
                        line: line_number,
                        value: value.to_owned(),
                    })
            };
            let key = match words.split(' ').collect::<Vec<_>>().as_slice() {
                [one] if !one.is_empty() => word_key(one),
                [first, second] if !first.is_empty() && !second.is_empty() => {
                    pair_key(word_key(first), word_key(second))
                }
                _ => {
                    return Err(WeightsError::Words {
                        line: line_number,
                        words: (*words).to_owned(),
                    });
                }
            };
            let feature = Feature {
                urgent: number(urgent)?,
                emergency: number(emergency)?,
                words: (*words).to_owned(),
            };
            net.features.insert(key, feature);
        }
        Ok(net)
    }

    /// Scores a message's normal form. Evidence is gathered only when a threshold is reached
    /// (this runs for every message): ranked by the emergency weights when the emergency
    /// probability reaches its threshold, by the urgent weights otherwise.
    pub fn score(&self, normalized: &NormalizedText) -> NetScore {
        let words: Vec<u64> = (0..normalized.tokens.len())
            .map(|index| normalized.plain_of(index))
            .filter(|word| word.chars().any(char::is_alphanumeric))
            .map(word_key)
            .collect();
        // Features are present or absent, as in training: a repeated word counts once.
        let mut seen: Vec<u64> = Vec::with_capacity(words.len() * 2);
        seen.extend_from_slice(&words);
        seen.extend(words.windows(2).map(|pair| pair_key(pair[0], pair[1])));
        seen.sort_unstable();
        seen.dedup();
        let present: Vec<&Feature> = seen
            .iter()
            .filter_map(|key| self.features.get(key))
            .collect();
        let (urgent_sum, emergency_sum) = present
            .iter()
            .fold(self.bias, |(urgent, emergency), feature| {
                (urgent + feature.urgent, emergency + feature.emergency)
            });
        let urgent = sigmoid(urgent_sum);
        let emergency = sigmoid(emergency_sum);
        let towards_emergency = emergency >= self.emergency_at;
        let mut evidence = Vec::new();
        if towards_emergency || urgent >= self.urgent_at {
            let weight = |feature: &Feature| {
                if towards_emergency {
                    feature.emergency
                } else {
                    feature.urgent
                }
            };
            let mut weighed: Vec<&Feature> = present
                .into_iter()
                .filter(|feature| weight(feature) > 0.0)
                .collect();
            // Ties go by the words, so that the same message always names the same evidence.
            weighed.sort_by(|a, b| {
                weight(b)
                    .total_cmp(&weight(a))
                    .then_with(|| a.words.cmp(&b.words))
            });
            evidence = weighed
                .iter()
                .take(EVIDENCE)
                .map(|feature| feature.words.clone())
                .collect();
        }
        NetScore {
            urgent,
            emergency,
            evidence,
        }
    }
}

fn sigmoid(value: f32) -> f32 {
    1.0 / (1.0 + (-value).exp())
}

/// FNV-1a over the word's bytes: stable across runs and machines, unlike the map's own hasher.
fn word_key(word: &str) -> u64 {
    word.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn pair_key(first: u64, second: u64) -> u64 {
    first.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17) ^ second
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::normalize::Normalizer;

    fn net(weights: &str) -> SafetyNet {
        SafetyNet::parse(weights, (-2.0, -3.0), 0.7, 0.8).expect("weights parse")
    }

    fn score(net: &SafetyNet, text: &str) -> NetScore {
        net.score(&Normalizer::default().normalize(text))
    }

    #[test]
    fn words_and_pairs_add_their_weights() {
        let net = net("# a comment\nchest pain\t3.0\t2.0\ncrushing\t1.0\t2.5\npain\t0.5\t0.0\n");
        let plain = score(&net, "my knee hurts");
        assert!((plain.urgent - sigmoid(-2.0)).abs() < 1e-6);
        assert!(
            plain.evidence.is_empty(),
            "no evidence below both thresholds"
        );
        let chest = score(&net, "Crushing CHEST pain, chest pain!");
        // chest pain (once, though said twice) + crushing + pain
        assert!((chest.urgent - sigmoid(-2.0 + 3.0 + 1.0 + 0.5)).abs() < 1e-6);
        assert!((chest.emergency - sigmoid(-3.0 + 2.0 + 2.5)).abs() < 1e-6);
        assert_eq!(chest.evidence, ["crushing", "chest pain"]);
        // Punctuation is no word: the pair still forms across a comma.
        let across = score(&net, "chest, pain");
        assert!((across.urgent - chest_pain_only(&net)).abs() < 1e-6);
    }

    fn chest_pain_only(net: &SafetyNet) -> f32 {
        score(net, "chest pain").urgent
    }

    #[test]
    fn a_pair_is_not_its_words_in_the_other_order() {
        let net = net("chest pain\t3.0\t3.0\n");
        assert!(score(&net, "pain chest").urgent < 0.2);
        assert!(score(&net, "chest pain").urgent > 0.7);
    }

    #[test]
    fn malformed_weights_are_refused_with_the_line() {
        let shape = SafetyNet::parse("chest pain\t1.0\n", (0.0, 0.0), 0.5, 0.5);
        assert!(matches!(shape, Err(WeightsError::Shape { line: 1, .. })));
        let number = SafetyNet::parse("ok\t1\t2\nbad\tx\t1\n", (0.0, 0.0), 0.5, 0.5);
        assert!(matches!(number, Err(WeightsError::Number { line: 2, .. })));
        let words = SafetyNet::parse("one two three\t1\t1\n", (0.0, 0.0), 0.5, 0.5);
        assert!(matches!(words, Err(WeightsError::Words { line: 1, .. })));
        let threshold = SafetyNet::parse("", (0.0, 0.0), 1.5, 0.5);
        assert!(matches!(
            threshold,
            Err(WeightsError::Threshold {
                name: "urgent_at",
                ..
            })
        ));
    }

    #[test]
    fn keys_are_stable() {
        // The weights file names words; their keys must not depend on the run.
        assert_eq!(word_key("chest"), word_key("chest"));
        assert_ne!(
            pair_key(word_key("a"), word_key("b")),
            pair_key(word_key("b"), word_key("a"))
        );
        assert_eq!(word_key(""), 0xcbf2_9ce4_8422_2325);
    }
}
