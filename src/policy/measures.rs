//! Numbers in a message that rules can set bounds on: a temperature, a baby's age, a blood glucose
//! reading, a number of tablets. Units are converted (°F → °C, mg/dL → mmol/L, weeks → months).

use std::collections::HashSet;

use serde::Serialize;

use super::file::MeasuresFile;
use super::normalize::{NormalizedText, TokenKind};
use super::number_words;

/// The measures a rule may name in `[rule.measures]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    TemperatureC,
    AgeMonths,
    GlucoseMmol,
    TabletCount,
    OxygenSaturation,
    SystolicPressure,
    RespiratoryRate,
    HeartRate,
}

impl Measure {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "temperature_c" => Some(Self::TemperatureC),
            "age_months" => Some(Self::AgeMonths),
            "glucose_mmol" => Some(Self::GlucoseMmol),
            "tablet_count" => Some(Self::TabletCount),
            "oxygen_saturation" => Some(Self::OxygenSaturation),
            "systolic_pressure" => Some(Self::SystolicPressure),
            "respiratory_rate" => Some(Self::RespiratoryRate),
            "heart_rate" => Some(Self::HeartRate),
            _ => None,
        }
    }

    pub const ALL: [Measure; 8] = [
        Self::TemperatureC,
        Self::AgeMonths,
        Self::GlucoseMmol,
        Self::TabletCount,
        Self::OxygenSaturation,
        Self::SystolicPressure,
        Self::RespiratoryRate,
        Self::HeartRate,
    ];
}

/// The measures found in one message (the most telling value of each).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Measures {
    pub temperature_c: Option<f64>,
    pub age_months: Option<f64>,
    pub glucose_mmol: Option<f64>,
    pub tablet_count: Option<f64>,
    /// Percent, the lowest reading given.
    pub oxygen_saturation: Option<f64>,
    /// mmHg, the lowest reading given.
    pub systolic_pressure: Option<f64>,
    /// Breaths a minute, the highest reading given.
    pub respiratory_rate: Option<f64>,
    /// Beats a minute, the reading furthest from a resting 75: a message that gives a pulse of
    /// 32 or of 190 is about that reading.
    pub heart_rate: Option<f64>,
}

impl Measures {
    pub fn get(&self, measure: Measure) -> Option<f64> {
        match measure {
            Measure::TemperatureC => self.temperature_c,
            Measure::AgeMonths => self.age_months,
            Measure::GlucoseMmol => self.glucose_mmol,
            Measure::TabletCount => self.tablet_count,
            Measure::OxygenSaturation => self.oxygen_saturation,
            Measure::SystolicPressure => self.systolic_pressure,
            Measure::RespiratoryRate => self.respiratory_rate,
            Measure::HeartRate => self.heart_rate,
        }
    }
}

/// The words measures are read by, from `measures.toml` (each list is described there): a
/// number is a temperature, an age or a reading by the words around it. The words are as
/// messages are read (normalised).
#[derive(Debug, Clone, Default)]
pub struct MeasureWords {
    pub child_words: WordSet,
    pub age_units: WordSet,
    /// Units of a child's age, written without a final `s` ("week" for "weeks").
    pub age_unit_days: WordSet,
    pub age_unit_weeks: WordSet,
    pub age_unit_months: WordSet,
    pub age_unit_years: WordSet,
    /// Words that may stand between a child and the age that follows it: "baby ko 1 buwan",
    /// "bayi saya umur 2 minggu".
    pub age_links: WordSet,
    /// Age units that stand before their number, as Swahili puts them: "mtoto wa miezi 2".
    pub units_before_number: WordSet,
    /// Words that may stand between the child and such a unit ("wa", "ana", "wangu").
    pub unit_links: WordSet,
    /// Words that may stand between an age and the child after it ("का" in "2 महीने का बच्चा").
    pub links_before_child: WordSet,
    /// Words straight after an age's unit that make it a time since or ago ("2 weeks ago",
    /// "2 din se"): a child before it is then no age.
    pub time_since_words: WordSet,
    /// Words up to three after a unit-first number that make it a time ago ("wiki 2
    /// zilizopita").
    pub ago_after_number: WordSet,
    /// Words before a number that make it a length of time ("for 3 days"): a child after its
    /// unit is then no age.
    pub duration_words: WordSet,
    pub temperature_words: WordSet,
    pub thermometers: WordSet,
    pub degree_words: WordSet,
    pub glucose_words: WordSet,
    pub glucose_devices: WordSet,
    pub glucose_links: WordSet,
    pub pregnancy_words: WordSet,
    pub tablet_words: WordSet,
    pub saturation_words: WordSet,
    pub pressure_words: WordSet,
    pub pressure_links: WordSet,
    pub breathing_rate_words: WordSet,
    pub breath_units: WordSet,
    pub not_temperature_names: WordSet,
    pub not_temperature_units: WordSet,
    pub heart_rate_words: WordSet,
    pub heart_units: WordSet,
    pub vital_links: WordSet,
}

impl MeasureWords {
    /// The lists of `file`, each word as `read` reads it (`read` is given the list's name, for
    /// its error).
    ///
    /// # Errors
    /// The first error `read` returns.
    pub fn from_file<E>(
        file: MeasuresFile,
        read: impl Fn(&str, &str) -> Result<String, E>,
    ) -> Result<Self, E> {
        let set = |name: &str, list: Vec<String>| -> Result<WordSet, E> {
            list.iter().map(|word| read(name, word)).collect()
        };
        // A message's unit is looked up without its final "s" ("weeks" as "week"), so each unit
        // is kept the same way: "dienos" and "setmanes" are found as written.
        let units = |name: &str, list: Vec<String>| -> Result<WordSet, E> {
            list.iter()
                .map(|word| read(name, word).map(|unit| unit.trim_end_matches('s').to_owned()))
                .collect()
        };
        Ok(Self {
            child_words: set("child_words", file.child_words)?,
            age_units: set("age_units", file.age_units)?,
            age_unit_days: units("age_unit_days", file.age_unit_days)?,
            age_unit_weeks: units("age_unit_weeks", file.age_unit_weeks)?,
            age_unit_months: units("age_unit_months", file.age_unit_months)?,
            age_unit_years: units("age_unit_years", file.age_unit_years)?,
            age_links: set("age_links", file.age_links)?,
            units_before_number: units("units_before_number", file.units_before_number)?,
            unit_links: set("unit_links", file.unit_links)?,
            links_before_child: set("links_before_child", file.links_before_child)?,
            time_since_words: set("time_since_words", file.time_since_words)?,
            ago_after_number: set("ago_after_number", file.ago_after_number)?,
            duration_words: set("duration_words", file.duration_words)?,
            temperature_words: set("temperature_words", file.temperature_words)?,
            thermometers: set("thermometers", file.thermometers)?,
            degree_words: set("degree_words", file.degree_words)?,
            glucose_words: set("glucose_words", file.glucose_words)?,
            glucose_devices: set("glucose_devices", file.glucose_devices)?,
            glucose_links: set("glucose_links", file.glucose_links)?,
            pregnancy_words: set("pregnancy_words", file.pregnancy_words)?,
            tablet_words: set("tablet_words", file.tablet_words)?,
            saturation_words: set("saturation_words", file.saturation_words)?,
            pressure_words: set("pressure_words", file.pressure_words)?,
            pressure_links: set("pressure_links", file.pressure_links)?,
            breathing_rate_words: set("breathing_rate_words", file.breathing_rate_words)?,
            breath_units: set("breath_units", file.breath_units)?,
            not_temperature_names: set("not_temperature_names", file.not_temperature_names)?,
            not_temperature_units: set("not_temperature_units", file.not_temperature_units)?,
            heart_rate_words: set("heart_rate_words", file.heart_rate_words)?,
            heart_units: set("heart_units", file.heart_units)?,
            vital_links: set("vital_links", file.vital_links)?,
        })
    }
}

impl MeasureWords {
    /// How many months one `unit` of a child's age is, for a unit without its final `s`.
    fn age_unit_months(&self, unit: &str) -> Option<f64> {
        if self.age_unit_days.has(unit) {
            Some(1.0 / 30.4)
        } else if self.age_unit_weeks.has(unit) {
            Some(12.0 / 52.0)
        } else if self.age_unit_months.has(unit) {
            Some(1.0)
        } else if self.age_unit_years.has(unit) {
            Some(12.0)
        } else {
            None
        }
    }
}

/// One list of `measures.toml`, looked up for the words around every number.
#[derive(Debug, Clone, Default)]
pub struct WordSet(HashSet<String, foldhash::fast::RandomState>);

impl WordSet {
    pub fn has(&self, word: &str) -> bool {
        self.0.contains(word)
    }
}

impl FromIterator<String> for WordSet {
    fn from_iter<I: IntoIterator<Item = String>>(words: I) -> Self {
        Self(words.into_iter().collect())
    }
}

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

/// The age a number gives when its unit stands before it, as in Swahili: "mtoto wa miezi 2",
/// "mwanangu ana wiki 5 tu". The child must come first, with at most three of the file's
/// `unit_links` between it and the unit, so "ana homa wiki 2" (a fever for two weeks) is no age.
/// A time ago ("wiki 2 zilizopita") is no age either.
fn unit_before_number<'a>(
    word: impl Fn(usize) -> &'a str,
    words: &MeasureWords,
    index: usize,
    end: usize,
) -> Option<f64> {
    let unit = word(index.checked_sub(1)?).trim_end_matches('s');
    // A time ago: Swahili "wiki 2 zilizopita", Hausa "wata 2 da suka wuce", Yoruba "osu 2 seyin".
    if !words.units_before_number.has(unit)
        || (end..end + 3).any(|at| words.ago_after_number.has(word(at)))
    {
        return None;
    }
    let factor = words.age_unit_months(unit)?;
    let mut back = index.checked_sub(2)?;
    for _ in 0..=3 {
        let before = word(back);
        if words.child_words.has(before) {
            return Some(factor);
        }
        if !words.unit_links.has(before) {
            return None;
        }
        back = back.checked_sub(1)?;
    }
    None
}

/// A glucose reading and how it was given.
#[derive(Clone, Copy)]
struct GlucoseReading {
    mmol: f64,
    /// Right after a glucose word or with its unit, not merely near one.
    direct: bool,
}

impl GlucoseReading {
    /// A direct reading tells more than one merely near a glucose word; between two alike, the
    /// one furthest from normal (about 6 mmol/L).
    fn tells_more_than(&self, other: &Self) -> bool {
        (self.direct, (self.mmol - 6.0).abs()) > (other.direct, (other.mmol - 6.0).abs())
    }
}

/// Reads the measures of a message.
pub fn extract(text: &NormalizedText, words: &MeasureWords) -> Measures {
    let tokens = &text.tokens;
    let word = |index: usize| text.plain_of(index);
    let mut measures = Measures::default();
    let mut glucose: Option<GlucoseReading> = None;
    // Words of a number already read ("thirty eight": "eight" is not read again).
    let mut read_until = 0;
    for (index, token) in tokens.iter().enumerate() {
        if index < read_until {
            continue;
        }
        // `end`: the first token after the number; `numeric`: plainly a number, not an article.
        let (value, end, numeric) = match token.kind {
            TokenKind::Number => match word(index).parse::<f64>() {
                Ok(value) => (value, index + 1, true),
                Err(_) => continue,
            },
            TokenKind::Word => match number_words::read(word, index) {
                Some(spelt) => (spelt.value, spelt.end, spelt.compound),
                None => match number_word(word(index)) {
                    Some(value) => (value, index + 1, false),
                    None => continue,
                },
            },
            _ => continue,
        };
        read_until = end;
        // "38 °C": the degree sign is a token of its own; read past it.
        let degree = word(end) == "°";
        let skip = usize::from(degree);
        let next = word(end + skip);
        let after_next = word(end + 1 + skip);
        // A glucose word, or a meter or sensor that shows a reading straight after it ("meter
        // says 1.9"); a peak flow meter reads litres a minute, not glucose.
        let names_glucose = |at: usize| {
            words.glucose_words.has(word(at))
                || (words.glucose_devices.has(word(at)) && word(at.wrapping_sub(1)) != "flow")
        };
        let near =
            |list: &WordSet| (index.saturating_sub(5)..index).any(|before| list.has(word(before)));
        // "39.4 on the ear thermometer", "38,2 en rectal": the instrument or the way the
        // temperature was taken, named a few words after the reading.
        let named_after =
            |list: &WordSet| (end + skip..end + skip + 4).any(|after| list.has(word(after)));

        // Temperature: a unit after the number, or a temperature word shortly before it.
        if numeric {
            let unit = match next {
                "c" | "celsius" | "centigrade" | "grados" => Some(false),
                "f" | "fahrenheit" => Some(true),
                _ if words.degree_words.has(next) => match after_next {
                    "f" | "fahrenheit" => Some(true),
                    _ => Some(value > 50.0),
                },
                _ if degree
                    || near(&words.temperature_words)
                    || named_after(&words.thermometers)
                    || words.temperature_words.has(next)
                    || (matches!(next, "de" | "di" | "van")
                        && words.temperature_words.has(after_next)) =>
                {
                    Some(value > 50.0)
                }
                // "he's 39.8", "bebelușul are 38,3": a reading with one decimal in the fever
                // range and no unit or other name is a temperature in a health message.
                _ if numeric
                    && word(index).contains('.')
                    && (37.5..=42.5).contains(&value)
                    && !words.not_temperature_units.has(next)
                    && !(1..=2).any(|back| {
                        words
                            .not_temperature_names
                            .has(word(index.wrapping_sub(back)))
                    }) =>
                {
                    Some(false)
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

        // The age's own block: its `next` may stand past a classifier.
        {
            // Age: "6 week old", "3 months old", "10 day old baby", "2 meses". Chinese counts months
            // and weeks with a classifier between the number and the unit: "3个月", "两个星期".
            let unit_at = end + skip + usize::from(matches!(next, "个" | "個"));
            let (next, after_next) = (word(unit_at), word(unit_at + 1));
            let months_per_unit = words.age_unit_months(next.trim_end_matches('s'));
            // "is 7 weeks", "tiene 7 semanas", "a 7 semaines", "ist 7 Wochen": an age said with a
            // verb, unless what follows makes it a pregnancy's length.
            // Romanian "are" (has) says an age only with a Romanian unit ("bebelușul are 7
            // săptămâni"); English "we are 7 weeks" is a pregnancy.
            let verb_before = word(index.wrapping_sub(1));
            let said_with_a_verb = (matches!(
                verb_before,
                "is" | "tiene" | "tem" | "a" | "ist" | "ma" | "heeft" | "esta" | "est"
            ) || (verb_before == "ha"
            // Italian "ha 7 settimane"; Portuguese "há uma semana" is "a week ago".
            && matches!(next, "settimane" | "settimana" | "mesi" | "mese" | "giorni" | "giorno" | "anni" | "anno"))
                || (verb_before == "are"
                    && matches!(
                        next,
                        "saptamani" | "saptamana" | "luni" | "luna" | "zile" | "zi" | "ani"
                    )))
                && !words.pregnancy_words.has(after_next)
                && !(after_next == "de" && words.pregnancy_words.has(word(end + 2 + skip)));
            // An age after the child it belongs to: "bebé de 6 semanas", "hijo de 2 años",
            // "zoontje van 5 maanden", "Sohn von 5 Monaten", "figlio di 5 mesi", "a baby of 5 months".
            let child_before = |back: usize| words.child_words.has(word(index.wrapping_sub(back)));
            // "bebelușul meu de 2 luni", "my son (6 weeks)", and the learner's "my baby have 6
            // weeks" (an age said with "have", as in French, Spanish or Romanian).
            let possessive = matches!(
                word(index.wrapping_sub(2)),
                "my" | "our"
                    | "meu"
                    | "mea"
                    | "mi"
                    | "mon"
                    | "ma"
                    | "mein"
                    | "meine"
                    | "mio"
                    | "mia"
                    | "mijn"
                    | "moj"
                    | "moja"
            );
            let after_the_child = (matches!(
            word(index.wrapping_sub(1)),
            "de" | "van" | "von" | "di" | "of"
        ) && (child_before(2) || (possessive && child_before(3))))
            || (matches!(word(index.wrapping_sub(1)), "(" | "have" | "has") && child_before(2))
            // Terse notes put the age straight after the child: "bebe 2 mois, 38,2",
            // "baby 6 wks temp 38"; "had my baby 10 days ago" dates the birth, and a fever in
            // that message is the mother's. Up to two linking words may stand between them, a
            // possessive or a word for "aged": "baby ko 1 buwan", "bayi saya umur 2 minggu".
            || ((child_before(1)
                || (words.age_links.has(word(index.wrapping_sub(1)))
                    && (child_before(2)
                        || (words.age_links.has(word(index.wrapping_sub(2)))
                            && child_before(3)))))
                // "baby 2 weeks ago", "beta ko 2 din se": a time since, not an age.
                && !words.time_since_words.has(after_next));
            // "fever for 3 days baby is tired": a length of time, and the child is only next to it.
            let lasted = words.duration_words.has(word(index.wrapping_sub(1)));
            // The child after its age, as languages that put the possessive first say it: "3
            // महिन्यांचे बाळ", "3 నెలల పాప", "2 महीने का बच्चा", "两个月的宝宝", with at most two
            // links between. Only where the age opens its clause or follows a possessive or a word
            // for "aged": in "发烧3天宝宝很难受" the three days are the fever's.
            let opens_clause = index == 0
                || !word(index - 1).chars().any(char::is_alphanumeric)
                || words.age_links.has(word(index - 1));
            let link = |at: usize| words.links_before_child.has(word(at));
            let child = |at: usize| words.child_words.has(word(at));
            let child_after = opens_clause
                && !lasted
                && (child(unit_at + 1)
                    || (link(unit_at + 1)
                        && (child(unit_at + 2) || (link(unit_at + 2) && child(unit_at + 3)))));
            // "6 semanas de vida", "3 jours de vie" say an age; "3 días de fiebre", "2 semanas de
            // tos" say how long an illness has lasted, and "7 semanas de embarazo" a pregnancy.
            let of_life = |word: &str| {
                matches!(
                    word,
                    "vida"
                        | "nacido"
                        | "nacida"
                        | "nascido"
                        | "nascida"
                        | "vie"
                        | "naissance"
                        | "vita"
                        | "viata"
                        | "nacimiento"
                        | "nascimento"
                        | "edad"
                        | "idade"
                        | "varsta"
                )
            };
            let is_age = matches!(after_next, "old" | "de" | "alt" | "oud")
                && (after_next != "de" || of_life(word(end + 2 + skip)))
                || (matches!(
                    after_next,
                    "baby" | "infant" | "son" | "daughter" | "boy" | "girl" | "bebe"
                ) && !lasted)
            || words.age_units.has(next)
            || said_with_a_verb
            || after_the_child
            || child_after
            // "she is born 3 weeks ago", "born about 10 days ago": the age since the birth.
            || (after_next == "ago"
                && (word(index.wrapping_sub(1)) == "born"
                    || (word(index.wrapping_sub(2)) == "born"
                        && matches!(
                            word(index.wrapping_sub(1)),
                            "about" | "around" | "just" | "only" | "like"
                        ))))
            || matches!(word(index.wrapping_sub(1)), "aged" | "age" | "edad");
            let factor = match (months_per_unit, is_age) {
                (Some(factor), true) => Some(factor),
                _ => unit_before_number(word, words, index, end + skip),
            };
            if let Some(factor) = factor {
                let months = value * factor;
                measures.age_months =
                    Some(measures.age_months.map_or(months, |seen| seen.min(months)));
            }
        }

        // Blood glucose, near a glucose word; mg/dL when so labelled or implausible as mmol/L.
        let glucose_after =
            words.glucose_words.has(next) || (next == "de" && words.glucose_words.has(after_next));
        // A number straight after a glucose word ("bg 2.4", "sugar is 2.4") or with its unit is
        // the reading; a number merely near one ("ate glucose tabs, rechecking in 15") counts
        // only when no such reading was given.
        let direct = matches!(next, "mmol" | "mg")
            || (next == "g" && after_next == "l")
            || names_glucose(index.wrapping_sub(1))
            || (words.glucose_links.has(word(index.wrapping_sub(1)))
                && names_glucose(index.wrapping_sub(2)))
            || glucose_after;
        // "type 2 diabetes", "diabetes tipo 1", "cukrzyca typu 2": the kind of diabetes, not a
        // reading, however near a glucose word it stands.
        let diabetes_type = matches!(
            word(index.wrapping_sub(1)),
            "type" | "typ" | "typu" | "tipo" | "tipe"
        );
        // A number with a unit of its own is no reading, however near a glucose word: "a hypo
        // at 3am", "took 4 units", "sugar fine for 2 days", and a length of time in any language
        // the age units know ("sugar cha, 2 din dekhi ulti"), but not a one- or two-letter unit,
        // which is as often a word ("glucosa en 3,6 y estoy temblando").
        let other_unit = matches!(
            next,
            "am" | "pm"
                | "units"
                | "unit"
                | "u"
                | "hours"
                | "hour"
                | "hrs"
                | "hr"
                | "minutes"
                | "mins"
                | "min"
                | "days"
                | "day"
                | "weeks"
                | "times"
                | "x"
                | "oclock"
                | "year"
                | "years"
        ) || (next.chars().count() > 2
            && words.age_unit_months(next.trim_end_matches('s')).is_some());
        if numeric && !diabetes_type && !other_unit && (direct || near(&words.glucose_words)) {
            // mg/dL when so labelled or impossible as mmol/L: home meters read up to 33.3
            // mmol/L and show "HI" above it, so "ζάχαρο 38" is 38 mg/dL. g/L (French) is a
            // tenth of that.
            let mmol = if next == "g" && after_next == "l" {
                value * 100.0 / 18.0
            } else if next == "mg" || value > 33.3 {
                value / 18.0
            } else {
                value
            };
            if (0.5..=60.0).contains(&mmol) {
                let reading = GlucoseReading { mmol, direct };
                glucose = Some(match glucose {
                    Some(seen) if seen.tells_more_than(&reading) => seen,
                    _ => reading,
                });
            }
        }

        // Tablets: "30 paracetamol", "twenty pills", "16 x 500mg tablets".
        // "16 of my co-codamol", "20 of her sertraline".
        let counted = words.tablet_words.has(next)
            || (next == "of"
                && matches!(
                    after_next,
                    "my" | "his" | "her" | "their" | "the" | "our" | "your"
                )
                && (2..=4).any(|ahead| words.tablet_words.has(word(end + ahead))))
            || (matches!(next, "x" | "of" | "de" | "di") && words.tablet_words.has(after_next))
            || ((1..=3).any(|ahead| words.tablet_words.has(word(end + ahead)))
                && tokens
                    .get(end)
                    .is_some_and(|following| following.kind == TokenKind::Number));
        if counted && value >= 1.0 {
            measures.tablet_count =
                Some(measures.tablet_count.map_or(value, |seen| seen.max(value)));
        }
    }
    measures.glucose_mmol = glucose.map(|reading| reading.mmol);
    for index in 0..tokens.len() {
        match word(index) {
            // "born last Thursday", "born yesterday": a baby of days; "I was born on a
            // Tuesday" is the writer's birthday.
            "born"
                if measures.age_months.is_none()
                    && matches!(
                        word(index + 1),
                        "last" | "yesterday" | "today" | "this" | "on"
                    )
                    && word(index.wrapping_sub(2)) != "i" =>
            {
                measures.age_months = Some(0.25);
            }
            "newborn" | "neonate" | "recien" if measures.age_months.is_none() => {
                measures.age_months = Some(0.5);
            }
            // "a load of propranolol", "a handful of her pills", "todas las pastillas": a
            // quantity with no number, at least a packet's worth.
            "load" | "loads" | "handful" | "bunch" | "lots" | "mouthful" | "fistful" | "heap"
            | "pile" | "todas" | "todos" | "toutes" | "tutte"
                if matches!(word(index + 1), "of" | "las" | "los" | "les" | "le" | "de")
                    && (index + 2..=index + 5).any(|ahead| words.tablet_words.has(word(ahead)))
                    && measures.tablet_count.is_none() =>
            {
                measures.tablet_count = Some(16.0);
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
    read_vital_signs(text, words, &mut measures);
    measures
}

/// Oxygen saturation, blood pressure and breathing rate, as carers, care homes and people with a
/// home monitor report them: a number shortly after the sign's name ("sats 86% on air", "bp
/// 82/50", "resp rate 28") or with its unit ("30 breaths a minute"). Each keeps the reading
/// furthest from normal.
fn read_vital_signs(text: &NormalizedText, words: &MeasureWords, measures: &mut Measures) {
    let word = |index: usize| text.plain_of(index);
    let is_number = |index: usize| {
        text.tokens
            .get(index)
            .is_some_and(|token| token.kind == TokenKind::Number)
    };
    // The sign's name just before the number, perhaps across a few linking words ("sats are
    // only 88", "blood pressure was 85/50").
    let named_before = |index: usize, names: &WordSet| {
        let mut at = index;
        for _ in 0..6 {
            let Some(before) = at.checked_sub(1) else {
                return false;
            };
            let before_word = word(before);
            // "spo2 86", "o2 sat 88": the 2 belongs to the name.
            if names.has(before_word)
                || (before_word == "2" && matches!(word(before.wrapping_sub(1)), "spo" | "o"))
            {
                return true;
            }
            // Across an earlier reading too: "sats dropped from 97 to 89".
            if !(words.vital_links.has(before_word) || is_number(before)) {
                return false;
            }
            at = before;
        }
        false
    };
    for index in 0..text.tokens.len() {
        if !is_number(index) {
            continue;
        }
        let Ok(value) = word(index).parse::<f64>() else {
            continue;
        };
        let next = word(index + 1);
        let percent = matches!(next, "%" | "percent" | "pc" | "procent" | "por" | "pour");
        if (50.0..=100.0).contains(&value)
            && (named_before(index, &words.saturation_words)
                || (percent
                    && (index.saturating_sub(6)..index).any(|before| {
                        words.saturation_words.has(word(before)) && word(before) != "o"
                    })))
        {
            measures.oxygen_saturation = Some(
                measures
                    .oxygen_saturation
                    .map_or(value, |seen| seen.min(value)),
            );
        }
        // A pressure is a pair: the diastolic straight after the systolic (the slash between
        // them is dropped) or after "over".
        let diastolic_at = if is_number(index + 1) {
            Some(index + 1)
        } else if words.pressure_links.has(next) && is_number(index + 2) {
            Some(index + 2)
        } else {
            None
        };
        if let Some(diastolic_at) = diastolic_at
            && named_before(index, &words.pressure_words)
            && let Ok(diastolic) = word(diastolic_at).parse::<f64>()
        {
            // Spanish, Italian and Portuguese speak of centimetres of mercury: "tensión 8/5".
            let systolic = if value <= 25.0 && diastolic <= 16.0 {
                value * 10.0
            } else {
                value
            };
            if (40.0..=300.0).contains(&systolic) && diastolic < systolic {
                measures.systolic_pressure = Some(
                    measures
                        .systolic_pressure
                        .map_or(systolic, |seen| seen.min(systolic)),
                );
            }
        }
        let breaths = (named_before(index, &words.breathing_rate_words) && !percent)
            || words.breath_units.has(next);
        let beats = (named_before(index, &words.heart_rate_words) && !percent && !breaths)
            || words.heart_units.has(next);
        if beats && (25.0..=250.0).contains(&value) {
            measures.heart_rate = Some(measures.heart_rate.map_or(value, |seen| {
                if (value - 75.0).abs() > (seen - 75.0).abs() {
                    value
                } else {
                    seen
                }
            }));
        }
        if breaths && (5.0..=90.0).contains(&value) {
            measures.respiratory_rate = Some(
                measures
                    .respiratory_rate
                    .map_or(value, |seen| seen.max(value)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::LazyLock;

    use super::*;
    use crate::policy::file::MeasuresFile;
    use crate::policy::normalize::Normalizer;

    /// The shipped `measures.toml`, each word read as the default normaliser reads it.
    static SHIPPED: LazyLock<MeasureWords> = LazyLock::new(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/measures.toml");
        let raw = std::fs::read_to_string(path).expect("policies/measures.toml is readable");
        let file: MeasuresFile = toml::from_str(&raw).expect("policies/measures.toml parses");
        let normalizer = Normalizer::default();
        MeasureWords::from_file(file, |_, word| {
            Ok::<_, ()>(normalizer.normalize(word).plain)
        })
        .expect("every word reads")
    });

    fn measures(text: &str) -> Measures {
        extract(&Normalizer::default().normalize(text), &SHIPPED)
    }

    /// The age a message gives, in whole weeks.
    fn weeks(text: &str) -> Option<f64> {
        measures(text)
            .age_months
            .map(|months| (months * 52.0 / 12.0).round())
    }

    #[test]
    fn a_hypo_gives_its_reading_but_not_its_time() {
        assert_eq!(
            measures("had a hypo this morning, 2.6, treated it").glucose_mmol,
            Some(2.6)
        );
        assert_eq!(measures("had a hypo at 3am, fine now").glucose_mmol, None);
        assert_eq!(measures("sugar high so took 4 units").glucose_mmol, None);
        assert_eq!(
            measures("bhai lai sugar cha, 2 din dekhi ulti").glucose_mmol,
            None,
            "two days"
        );
        assert_eq!(measures("gula darah 3 hari tak stabil").glucose_mmol, None);
        assert_eq!(
            measures("tengo la glucosa en 3,6 y estoy temblando").glucose_mmol,
            Some(3.6)
        );
    }

    #[test]
    fn vital_signs_are_read_after_their_names() {
        let care_home = measures("resident resp rate 28, sats 86% on air, temp 39.1, BP 82/50");
        assert_eq!(care_home.respiratory_rate, Some(28.0));
        assert_eq!(care_home.oxygen_saturation, Some(86.0));
        assert_eq!(care_home.systolic_pressure, Some(82.0));
        assert_eq!(care_home.temperature_c, Some(39.1));
        assert_eq!(measures("spo2 88").oxygen_saturation, Some(88.0));
        assert_eq!(measures("o2 sat is only 90").oxygen_saturation, Some(90.0));
        assert_eq!(measures("saturação 88%").oxygen_saturation, Some(88.0));
        assert_eq!(
            measures("sats dropped from 97 to 89").oxygen_saturation,
            Some(89.0)
        );
        assert_eq!(
            measures("blood pressure 85 over 50").systolic_pressure,
            Some(85.0)
        );
        assert_eq!(measures("la tensión 8/5").systolic_pressure, Some(80.0));
        assert_eq!(
            measures("breathing 40 times a minute").respiratory_rate,
            Some(40.0)
        );
        assert_eq!(measures("30 breaths a minute").respiratory_rate, Some(30.0));
        // Numbers that are not readings of these signs.
        assert_eq!(measures("on 2 litres of oxygen").oxygen_saturation, None);
        assert_eq!(measures("90% sure it is nothing").oxygen_saturation, None);
        assert_eq!(measures("breathing is 50% better").respiratory_rate, None);
    }

    #[test]
    fn a_reading_no_meter_shows_in_mmol_is_in_mg() {
        let mmol = |text: &str| {
            measures(text)
                .glucose_mmol
                .map(|value| (value * 10.0).round() / 10.0)
        };
        assert_eq!(mmol("sugar is 38 and he is confused"), Some(2.1));
        assert_eq!(mmol("sugar is 28 and vomiting"), Some(28.0));
        assert_eq!(mmol("sugar 33.3, HI before"), Some(33.3));
    }

    #[test]
    fn a_birth_some_time_ago_gives_an_age() {
        assert_eq!(weeks("my baby is born 3 weeks ago, temp 38.2"), Some(3.0));
        assert_eq!(weeks("she was born about 10 weeks ago"), Some(10.0));
        assert_eq!(weeks("had a cough 3 weeks ago"), None);
    }

    #[test]
    fn how_long_an_illness_has_lasted_is_no_age() {
        assert_eq!(measures("tengo tos con 3 dias de fiebre").age_months, None);
        assert_eq!(measures("llevo 2 semanas de tos").age_months, None);
        assert_eq!(measures("3 jours de fièvre").age_months, None);
        assert_eq!(measures("7 semanas de embarazo").age_months, None);
        assert!(measures("6 semanas de vida, fiebre").age_months.is_some());
        assert!(measures("2 meses de edad y fiebre").age_months.is_some());
        assert!(
            measures("bebé de 6 semanas con fiebre")
                .age_months
                .is_some()
        );
    }

    #[test]
    fn an_age_may_follow_its_child_across_a_possessive_or_a_word_for_aged() {
        assert_eq!(weeks("bayi saya umur 3 minggu, demam"), Some(3.0));
        assert_eq!(weeks("bayi saya 3 minggu"), Some(3.0));
        // A linking word alone, with no child before it, gives no age.
        assert_eq!(weeks("saya umur 3 minggu"), None);
        // Nor does a word that is not a link.
        assert_eq!(weeks("baby due in 2 weeks"), None);
        // A length of time: "for two days" after the number.
        assert_eq!(measures("बच्चे को 2 दिन से बुखार है").age_months, None);
        assert_eq!(measures("beta ko 2 din se bukhar hai").age_months, None);
    }

    #[test]
    fn an_age_is_read_in_brackets_after_a_possessive_or_with_have() {
        assert_eq!(weeks("grandson (5 weeks) is 38.4"), Some(5.0));
        assert_eq!(
            measures("bebelușul meu de 2 luni are 38,3").age_months,
            Some(2.0)
        );
        assert_eq!(weeks("my baby have 6 weeks"), Some(6.0));
        assert_eq!(
            measures("my husband (44) has had a cold for 6 weeks").age_months,
            None
        );
    }

    #[test]
    fn a_portuguese_time_ago_is_no_age_and_a_turkish_sugar_is_a_reading() {
        assert_eq!(
            measures("voltei de Moçambique há uma semana").age_months,
            None
        );
        assert!(measures("mio figlio ha 7 settimane").age_months.is_some());
        assert_eq!(measures("açlık şekerim 5,6 çıktı").glucose_mmol, Some(5.6));
    }

    #[test]
    fn a_baby_born_last_week_is_days_old() {
        assert_eq!(
            measures("born last Thursday, feels hot").age_months,
            Some(0.25)
        );
        assert_eq!(measures("I was born on a Tuesday").age_months, None);
        assert_eq!(measures("ma fille de 4 mois a 39,3").age_months, Some(4.0));
    }

    #[test]
    fn a_quantity_without_a_number_counts_as_a_packet() {
        assert_eq!(
            measures("took a load of propranolol").tablet_count,
            Some(16.0)
        );
        assert_eq!(
            measures("swallowed a handful of her pills").tablet_count,
            Some(16.0)
        );
        assert_eq!(
            measures("me tomé todas las pastillas").tablet_count,
            Some(16.0)
        );
        assert_eq!(measures("took loads of photos").tablet_count, None);
    }

    #[test]
    fn tablets_are_counted_when_they_are_someone_s_medicine() {
        assert_eq!(
            measures("took 16 of my co-codamol").tablet_count,
            Some(16.0)
        );
        assert_eq!(
            measures("took 20 of her sertraline").tablet_count,
            Some(20.0)
        );
        assert_eq!(measures("3 of my friends came round").tablet_count, None);
    }

    #[test]
    fn a_bare_decimal_in_the_fever_range_is_a_temperature() {
        assert_eq!(measures("he's 39.8 and floppy").temperature_c, Some(39.8));
        assert_eq!(measures("bebelușul are 38,3").temperature_c, Some(38.3));
        assert_eq!(measures("38.5 weeks pregnant").temperature_c, None);
        assert_eq!(measures("my bmi is 39.5").temperature_c, None);
        assert_eq!(measures("she weighs 40.2 kg").temperature_c, None);
        assert_eq!(
            measures("he's 39 and fit").temperature_c,
            None,
            "an age has no decimal"
        );
    }

    #[test]
    fn a_heart_rate_is_read_after_its_name_or_before_its_unit() {
        assert_eq!(measures("heart rate 32 on my watch").heart_rate, Some(32.0));
        assert_eq!(measures("heart going like 180").heart_rate, Some(180.0));
        assert_eq!(measures("pulse was 40, now 72").heart_rate, Some(40.0));
        assert_eq!(measures("resting at 150 bpm").heart_rate, Some(150.0));
        assert_eq!(measures("tętno 38").heart_rate, Some(38.0));
        assert_eq!(
            measures("for 1 hr 30 mins").heart_rate,
            None,
            "hr is an hour"
        );
        assert_eq!(measures("heart is 60% blocked").heart_rate, None);
        assert_eq!(measures("heart attack at 45").heart_rate, None);
        assert_eq!(measures("resp rate 30").heart_rate, None);
        assert_eq!(measures("pain in my chest 8/10").systolic_pressure, None);
        assert_eq!(measures("bp 120/80").systolic_pressure, Some(120.0));
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
        assert_eq!(measures("mijn zoontje van 5 maanden").age_months, Some(5.0));
        assert_eq!(
            measures("bebeğim 2 aylık, ateşi 38.3").age_months,
            Some(2.0)
        );
        assert_eq!(
            measures("bebeğim 2 aylık, ateşi 38.3").temperature_c,
            Some(38.3)
        );
        assert_eq!(measures("oğlum 3 yaşında").age_months, Some(36.0));
        assert_eq!(
            measures("my 14yo took some of my tablets").age_months,
            Some(168.0)
        );
        assert_eq!(
            measures("am luat 30 de nurofen acum o ora").tablet_count,
            Some(30.0)
        );
        assert_eq!(measures("we are 7 weeks and so tired").age_months, None);
        assert_eq!(
            measures("39.4 on the ear thermometer").temperature_c,
            Some(39.4)
        );
        assert_eq!(
            measures("spent 39 pounds on shopping and then went looking for the thermometer")
                .temperature_c,
            None
        );
        assert_eq!(
            measures("ateşimi ölçtüm 38,5 çıktı").temperature_c,
            Some(38.5)
        );
        assert_eq!(
            measures("bebelușul de 2 luni are febră").age_months,
            Some(2.0)
        );
        assert_eq!(measures("a period of 5 months").age_months, None);
    }

    #[test]
    fn glucose_is_read_in_mmol_per_litre() {
        assert_eq!(measures("my sugar is 2.4").glucose_mmol, Some(2.4));
        assert_eq!(measures("marca 2,9 de glucosa").glucose_mmol, Some(2.9));
        assert_eq!(measures("blood glucose 450 mg/dl").glucose_mmol, Some(25.0));
        assert_eq!(measures("his meter says 1.9").glucose_mmol, Some(1.9));
        assert_eq!(measures("libre sensor showing 2.6").glucose_mmol, Some(2.6));
        assert_eq!(measures("peak flow meter says 250").glucose_mmol, None);
    }

    #[test]
    fn the_other_languages_name_temperatures_ages_and_readings_too() {
        assert_eq!(measures("Fieber 39,2").temperature_c, Some(39.2));
        assert_eq!(measures("38 Grad seit gestern").temperature_c, Some(38.0));
        assert_eq!(measures("gorączka 38,6").temperature_c, Some(38.6));
        assert_eq!(measures("il a 39 de fièvre").temperature_c, Some(39.0));
        let weeks = |text: &str| measures(text).age_months.map(|months| months * 52.0 / 12.0);
        assert!(weeks("mein Baby ist 7 Wochen alt").is_some_and(|w| (w - 7.0).abs() < 0.01));
        assert!(weeks("mi bebé tiene 7 semanas").is_some_and(|w| (w - 7.0).abs() < 0.01));
        assert!(weeks("mi bebé tiene 6 semanitas").is_some_and(|w| (w - 6.0).abs() < 0.01));
        assert!(weeks("o meu bebé de 2 mesinhos").is_some_and(|w| (w - 8.7).abs() < 0.1));
        assert!(weeks("il a 6 semaines").is_some_and(|w| (w - 6.0).abs() < 0.01));
        assert!(weeks("ons kindje is 5 weken oud").is_some_and(|w| (w - 5.0).abs() < 0.01));
        assert_eq!(measures("she is 7 weeks pregnant").age_months, None);
        assert_eq!(measures("tiene 7 semanas de embarazo").age_months, None);
        assert_eq!(measures("bloedsuiker 26").glucose_mmol, Some(26.0));
        assert_eq!(measures("glycémie à 0,45 g/l").glucose_mmol, Some(2.5));
    }

    #[test]
    fn numbers_written_in_words_are_measures_too() {
        let baby =
            measures("baby is seven weeks old and the thermometer said thirty eight point three");
        assert_eq!(baby.temperature_c, Some(38.3));
        assert!(baby.age_months.is_some_and(|months| months < 2.0));
        let spanish =
            measures("mi bebe tiene dos meses y el termometro marca treinta y ocho con cuatro");
        assert_eq!(spanish.temperature_c, Some(38.4));
        assert_eq!(spanish.age_months, Some(2.0));
        assert_eq!(
            measures("fever of thirty nine and a half").temperature_c,
            Some(39.5)
        );
        assert_eq!(measures("took thirty two pills").tablet_count, Some(32.0));
        assert_eq!(measures("a fever, one of those days").temperature_c, None);
    }

    #[test]
    fn a_unit_before_its_number_gives_an_age_after_a_child() {
        assert!(weeks("mwanangu ana wiki 5 tu, homa 38.4").is_some_and(|w| (w - 5.0).abs() < 0.01));
        assert_eq!(measures("mtoto wa miezi 2 ana homa").age_months, Some(2.0));
        assert_eq!(
            measures("mtoto ana homa wiki 2").age_months,
            None,
            "a fever for two weeks"
        );
        assert_eq!(
            measures("mtoto wangu wiki 2 zilizopita").age_months,
            None,
            "two weeks ago"
        );
    }

    #[test]
    fn chinese_and_hindi_ages_are_read_in_numerals_and_words() {
        assert_eq!(measures("宝宝3个月大发烧39度").age_months, Some(3.0));
        assert_eq!(measures("宝宝五个月，发烧39度").age_months, Some(5.0));
        assert_eq!(measures("我女儿两个月大，发烧38.5").age_months, Some(2.0));
        assert_eq!(measures("儿子十二个月").age_months, Some(12.0));
        assert_eq!(
            measures("宝宝3个月前打了疫苗").age_months,
            None,
            "three months ago"
        );
        assert_eq!(measures("我发烧三天了").age_months, None, "no child");
        assert_eq!(measures("बच्चा दो महीने का है").age_months, Some(2.0));
        assert_eq!(measures("मेरा बेटा सवा महीने का है").age_months, Some(1.25));
        assert_eq!(measures("mera beta do mahine ka hai").age_months, Some(2.0));
        assert_eq!(measures("what do babies need").age_months, None);
    }

    #[test]
    fn an_age_may_come_before_its_child() {
        assert_eq!(measures("मेरा 2 महीने का बच्चा है").age_months, Some(2.0));
        assert_eq!(
            measures("2 mahine ki bachi ko bukhar").age_months,
            Some(2.0)
        );
        assert_eq!(measures("2个月的宝宝发烧38.5度").age_months, Some(2.0));
        assert_eq!(measures("两个月大的宝宝发烧").age_months, Some(2.0));
        assert_eq!(
            measures("发烧3天的宝宝").age_months,
            None,
            "a baby feverish for three days"
        );
        assert_eq!(
            measures("fever for 3 days baby is tired").age_months,
            None,
            "a length of time next to a child"
        );
        assert!(weeks("3 week old baby, temp 38.2").is_some_and(|w| (w - 3.0).abs() < 0.01));
    }

    #[test]
    fn the_type_of_diabetes_is_no_glucose_reading() {
        for text in [
            "how often should I check my blood sugar with type 2 diabetes",
            "Hoe vaak moet ik mijn bloedsuiker meten met diabetes type 2?",
            "glucemia y diabetes tipo 1, que dieta",
        ] {
            assert_eq!(measures(text).glucose_mmol, None, "{text}");
        }
        assert_eq!(
            measures("type 1, sugar is 2.4 and I feel shaky").glucose_mmol,
            Some(2.4)
        );
    }

    #[test]
    fn a_glucose_reading_beats_a_number_that_is_merely_near_a_glucose_word() {
        assert_eq!(
            measures("bg 2.4 ate glucose tabs, rechecking in 15").glucose_mmol,
            Some(2.4)
        );
        assert_eq!(
            measures("sugar is 2.4, was 15 last night").glucose_mmol,
            Some(2.4)
        );
    }

    #[test]
    fn tablets_are_counted() {
        assert_eq!(measures("I took 30 paracetamol").tablet_count, Some(30.0));
        assert_eq!(measures("swallowed twenty pills").tablet_count, Some(20.0));
        assert_eq!(measures("took the whole packet").tablet_count, Some(16.0));
        assert_eq!(
            measures("am luat 15 pastile de paracetamol").tablet_count,
            Some(15.0)
        );
        assert_eq!(measures("20 tane hap içtim").tablet_count, Some(20.0));
    }
}
