//! Numbers in a message that rules can set bounds on: a temperature, a baby's age, a blood glucose
//! reading, a number of tablets. Units are converted (°F → °C, mg/dL → mmol/L, weeks → months).

use serde::Serialize;

use super::normalize::{NormalizedText, TokenKind};

/// The measures a rule may name in `[rule.measures]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    TemperatureC,
    AgeMonths,
    GlucoseMmol,
    TabletCount,
}

impl Measure {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "temperature_c" => Some(Self::TemperatureC),
            "age_months" => Some(Self::AgeMonths),
            "glucose_mmol" => Some(Self::GlucoseMmol),
            "tablet_count" => Some(Self::TabletCount),
            _ => None,
        }
    }

    pub const ALL: [Measure; 4] = [
        Self::TemperatureC,
        Self::AgeMonths,
        Self::GlucoseMmol,
        Self::TabletCount,
    ];
}

/// The measures found in one message (the most telling value of each).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Measures {
    pub temperature_c: Option<f64>,
    pub age_months: Option<f64>,
    pub glucose_mmol: Option<f64>,
    pub tablet_count: Option<f64>,
}

impl Measures {
    pub fn get(&self, measure: Measure) -> Option<f64> {
        match measure {
            Measure::TemperatureC => self.temperature_c,
            Measure::AgeMonths => self.age_months,
            Measure::GlucoseMmol => self.glucose_mmol,
            Measure::TabletCount => self.tablet_count,
        }
    }
}

const TEMPERATURE_WORDS: [&str; 9] = [
    "temperature",
    "temp",
    "fever",
    "febre",
    "fiebre",
    "temperatura",
    "thermometer",
    "reading",
    "hot",
];
const GLUCOSE_WORDS: [&str; 9] = [
    "sugar", "sugars", "glucose", "bm", "bg", "glucosa", "azucar", "reading", "level",
];
const TABLET_WORDS: [&str; 16] = [
    "tablets",
    "tablet",
    "pills",
    "pill",
    "capsules",
    "caps",
    "paracetamol",
    "paracetamols",
    "ibuprofen",
    "pastillas",
    "pastilla",
    "comprimidos",
    "tabs",
    "co",
    "codamol",
    "sleeping",
];

fn number_word(word: &str) -> Option<f64> {
    let value = match word {
        "one" | "uno" | "una" | "a" | "an" => 1.0,
        "two" | "dos" | "couple" => 2.0,
        "three" | "tres" => 3.0,
        "four" | "cuatro" => 4.0,
        "five" | "cinco" => 5.0,
        "six" | "seis" => 6.0,
        "seven" | "siete" => 7.0,
        "eight" | "ocho" => 8.0,
        "nine" | "nueve" => 9.0,
        "ten" | "diez" => 10.0,
        "eleven" | "once" => 11.0,
        "twelve" | "doce" | "dozen" => 12.0,
        "fifteen" | "quince" => 15.0,
        "twenty" | "veinte" => 20.0,
        "thirty" | "treinta" => 30.0,
        "forty" | "cuarenta" => 40.0,
        "fifty" | "cincuenta" => 50.0,
        "hundred" | "cien" => 100.0,
        _ => return None,
    };
    Some(value)
}

/// Reads the measures of a message.
pub fn extract(text: &NormalizedText) -> Measures {
    let tokens = &text.tokens;
    let word = |index: usize| text.plain_of(index);
    let mut measures = Measures::default();
    for (index, token) in tokens.iter().enumerate() {
        let value = match token.kind {
            TokenKind::Number => word(index).parse::<f64>().ok(),
            TokenKind::Word => number_word(word(index)),
            _ => None,
        };
        let Some(value) = value else { continue };
        let numeric = token.kind == TokenKind::Number;
        // "38 °C": the degree sign is a token of its own; read past it.
        let degree = word(index + 1) == "°";
        let skip = usize::from(degree);
        let next = word(index + 1 + skip);
        let after_next = word(index + 2 + skip);
        let near = |words: &[&str]| {
            (index.saturating_sub(5)..index).any(|before| words.contains(&word(before)))
        };

        // Temperature: a unit after the number, or a temperature word shortly before it.
        if numeric {
            let unit = match next {
                "c" | "celsius" | "centigrade" | "grados" => Some(false),
                "f" | "fahrenheit" => Some(true),
                "degrees" | "deg" | "°" => match after_next {
                    "f" | "fahrenheit" => Some(true),
                    _ => Some(value > 50.0),
                },
                _ if degree
                    || near(&TEMPERATURE_WORDS)
                    || TEMPERATURE_WORDS.contains(&next)
                    || (next == "de" && TEMPERATURE_WORDS.contains(&after_next)) =>
                {
                    Some(value > 50.0)
                }
                _ => None,
            };
            if let Some(fahrenheit) = unit {
                let celsius = if fahrenheit {
                    (value - 32.0) * 5.0 / 9.0
                } else {
                    value
                };
                if (30.0..=45.0).contains(&celsius) {
                    measures.temperature_c = Some(
                        measures
                            .temperature_c
                            .map_or(celsius, |seen| seen.max(celsius)),
                    );
                }
            }
        }

        // Age: "6 week old", "3 months old", "10 day old baby", "2 meses".
        let months_per_unit = match next.trim_end_matches('s') {
            "day" | "dia" => Some(1.0 / 30.4),
            "wk" | "week" | "semana" => Some(12.0 / 52.0),
            "month" | "mo" | "mese" | "me" | "m" => Some(1.0),
            "year" | "yr" | "ano" | "y" => Some(12.0),
            _ => None,
        };
        let is_age = matches!(
            after_next,
            "old" | "baby" | "infant" | "son" | "daughter" | "boy" | "girl" | "de" | "bebe"
        ) || (next == "yo" || next == "mo")
            // Spanish puts the age after the noun: "bebé de 6 semanas", "hijo de 2 años".
            || (word(index.wrapping_sub(1)) == "de"
                && matches!(
                    word(index.wrapping_sub(2)),
                    "bebe" | "nino" | "nina" | "hijo" | "hija" | "baby" | "nene" | "nena" | "recien"
                ))
            || matches!(word(index.wrapping_sub(1)), "aged" | "age" | "edad");
        if let (Some(factor), true) = (months_per_unit, is_age) {
            let months = value * factor;
            measures.age_months = Some(measures.age_months.map_or(months, |seen| seen.min(months)));
        }

        // Blood glucose, near a glucose word; mg/dL when so labelled or implausible as mmol/L.
        let glucose_after =
            GLUCOSE_WORDS.contains(&next) || (next == "de" && GLUCOSE_WORDS.contains(&after_next));
        if numeric && (near(&GLUCOSE_WORDS) || glucose_after || matches!(next, "mmol" | "mg")) {
            let mmol = if next == "mg" || value > 40.0 {
                value / 18.0
            } else {
                value
            };
            if (0.5..=60.0).contains(&mmol) {
                measures.glucose_mmol = Some(match measures.glucose_mmol {
                    // The reading furthest from normal (about 6 mmol/L) is the telling one.
                    Some(seen) if (seen - 6.0).abs() > (mmol - 6.0).abs() => seen,
                    _ => mmol,
                });
            }
        }

        // Tablets: "30 paracetamol", "twenty pills", "16 x 500mg tablets".
        let counted = TABLET_WORDS.contains(&next)
            || (matches!(next, "x" | "of") && TABLET_WORDS.contains(&after_next))
            || ((2..=4).any(|ahead| TABLET_WORDS.contains(&word(index + ahead)))
                && tokens
                    .get(index + 1)
                    .is_some_and(|following| following.kind == TokenKind::Number));
        if counted && value >= 1.0 {
            measures.tablet_count =
                Some(measures.tablet_count.map_or(value, |seen| seen.max(value)));
        }
    }
    for index in 0..tokens.len() {
        match word(index) {
            "newborn" | "neonate" | "recien" if measures.age_months.is_none() => {
                measures.age_months = Some(0.5);
            }
            // "the whole packet", "a full bottle": at least a packet of 16.
            "packet" | "pack" | "box" | "bottle" | "tub" | "caja" | "bote" | "blister"
                if matches!(
                    word(index.wrapping_sub(1)),
                    "whole" | "full" | "entire" | "toda" | "entera"
                ) && measures.tablet_count.is_none() =>
            {
                measures.tablet_count = Some(16.0);
            }
            _ => {}
        }
    }
    measures
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::normalize::Normalizer;

    fn measures(text: &str) -> Measures {
        extract(&Normalizer::default().normalize(text))
    }

    #[test]
    fn temperatures_are_read_in_celsius_and_fahrenheit() {
        assert_eq!(measures("temp is 38.2").temperature_c, Some(38.2));
        assert_eq!(measures("38,5°C").temperature_c, Some(38.5));
        let fahrenheit = measures("fever of 101 F").temperature_c.expect("read");
        assert!((fahrenheit - 38.33).abs() < 0.01);
        assert_eq!(measures("I took 2 tablets").temperature_c, None);
    }

    #[test]
    fn ages_are_read_in_months() {
        let spanish = measures("mi bebé de 6 semanas tiene fiebre de 38,5");
        assert!(spanish.age_months.is_some_and(|months| months < 2.0));
        assert_eq!(spanish.temperature_c, Some(38.5));
        let weeks = measures("my 6 week old baby").age_months.expect("read");
        assert!((weeks - 1.38).abs() < 0.01);
        assert_eq!(measures("my newborn is hot").age_months, Some(0.5));
        assert_eq!(measures("2 year old son").age_months, Some(24.0));
    }

    #[test]
    fn glucose_is_read_in_mmol_per_litre() {
        assert_eq!(measures("my sugar is 2.4").glucose_mmol, Some(2.4));
        assert_eq!(measures("marca 2,9 de glucosa").glucose_mmol, Some(2.9));
        assert_eq!(measures("blood glucose 450 mg/dl").glucose_mmol, Some(25.0));
    }

    #[test]
    fn tablets_are_counted() {
        assert_eq!(measures("I took 30 paracetamol").tablet_count, Some(30.0));
        assert_eq!(measures("swallowed twenty pills").tablet_count, Some(20.0));
        assert_eq!(measures("took the whole packet").tablet_count, Some(16.0));
    }
}
