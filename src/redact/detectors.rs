//! The detectors: one regular expression per identifier format, and the checks that make a match
//! an identifier (check digits, number ranges, a cue before it, what it is glued to).
//!
//! A message is read once by a `RegexSet` of every enabled detector; only the detectors it
//! reports are run again to find where they match. Most messages have no identifier, and a dose
//! such as `500 mg` matches no pattern at all, so most messages cost that single pass.
//!
//! Cues are phrases, not patterns: each is matched case-insensitively, with flexible spaces, an
//! optional apostrophe and accents optional on vowels ("telefono" also finds "teléfono").

use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

use super::checksum;
use super::config::{Locale, RedactionConfig};
use super::{Detection, Kind, RedactionConfigError};

/// How far back (bytes) a cue before a value is looked for.
const CUE_LOOKBACK: usize = 48;

/// How far after a street address (bytes, same line) a postcode or ZIP code is looked for.
const POSTCODE_AFTER_ADDRESS: usize = 64;

/// Regex size limit per detector; the largest (names, with Unicode letter classes) needs ~1 MB.
const SIZE_LIMIT: usize = 16 * (1 << 20);

const NAME_CUES: &[&str] = &[
    "my name is",
    "my name's",
    "name is",
    "name:",
    "i am called",
    "i'm called",
    "they call me",
    "call me",
    "this is",
    "me llamo",
    "me llaman",
    "mi nombre es",
    "nombre:",
];

/// Cues that often precede something other than a name ("I'm tired", "I'm Type 2"): the name
/// must then be at least two capitalised words ("I'm Sarah Jones").
const WEAK_NAME_CUES: &[&str] = &["i'm", "i am", "soy"];

/// Capitalised words that follow name cues without being names ("this is Urgent", "call me
/// Tomorrow", "I'm British Asian"). Compared in lower case.
const NOT_NAMES: &[&str] = &[
    "a",
    "about",
    "again",
    "allergic",
    "american",
    "an",
    "and",
    "asthmatic",
    "awful",
    "back",
    "bad",
    "because",
    "british",
    "but",
    "catholic",
    "christian",
    "dad",
    "diabetic",
    "doctor",
    "english",
    "epileptic",
    "fine",
    "for",
    "from",
    "getting",
    "going",
    "good",
    "hello",
    "here",
    "hey",
    "hi",
    "hindu",
    "his",
    "her",
    "how",
    "important",
    "irish",
    "it",
    "jewish",
    "just",
    "later",
    "me",
    "mexican",
    "mom",
    "monday",
    "mum",
    "muslim",
    "my",
    "no",
    "normal",
    "not",
    "now",
    "nurse",
    "ok",
    "okay",
    "our",
    "please",
    "pregnant",
    "really",
    "saturday",
    "scottish",
    "serious",
    "so",
    "sorry",
    "spanish",
    "sunday",
    "terrible",
    "thank",
    "thanks",
    "the",
    "their",
    "there",
    "thursday",
    "today",
    "tomorrow",
    "tonight",
    "tuesday",
    "type",
    "urgent",
    "very",
    "wednesday",
    "welsh",
    "what",
    "when",
    "where",
    "why",
    "worse",
    "worst",
    "yes",
    "yesterday",
    "your",
    "friday",
];

const PHONE_CUES: &[&str] = &[
    "phone",
    "mobile",
    "cell",
    "cellphone",
    "tel",
    "telephone",
    "landline",
    "number",
    "call",
    "ring",
    "text",
    "whatsapp",
    "contact",
    "reach",
    "teléfono",
    "móvil",
    "celular",
    "número",
    "llámame",
    "llamar",
];

const NHS_CUES: &[&str] = &["nhs", "nhs number", "nhs no"];

const POSTCODE_CUES: &[&str] = &[
    "postcode",
    "post code",
    "postal code",
    "zip",
    "zip code",
    "zipcode",
    "código postal",
];

const ADDRESS_CUES: &[&str] = &[
    "live",
    "lives",
    "living",
    "address",
    "addr",
    "home is",
    "vivo",
    "vive",
    "dirección",
    "domicilio",
];

const DATE_OF_BIRTH_CUES: &[&str] = &[
    "date of birth",
    "birth date",
    "birthdate",
    "dob",
    "d.o.b",
    "born",
    "birthday",
    "fecha de nacimiento",
    "f. nac",
    "nací",
    "nacido",
    "nacida",
    "nacimiento",
];

const MRN_CUES: &[&str] = &[
    "mrn",
    "medical record number",
    "medical record no",
    "medical record",
    "record number",
    "record no",
    "hospital number",
    "hospital no",
    "hospital id",
    "patient number",
    "patient id",
    "unit number",
    "case number",
    "nhc",
    "historia clínica",
    "número de historia",
    "número de expediente",
    "expediente",
];

const SSN_CUES: &[&str] = &[
    "ssn",
    "social security number",
    "social security no",
    "social security",
    "seguro social",
    "número de seguro social",
];

/// Words allowed between a cue and its value: "my MRN is", "born on the", "nacido el".
const FILLER: &str = r"[ \t]*[:#=.,\-]*[ \t]*(?:(?:(?:is|was|on|the|es|era|el|of|de|del|number|no)(?-u:\b)|n[º°])\.?[ \t]*[:#]?[ \t]*){0,3}";

/// Words allowed between a cue and the start of a value found by its own pattern.
const LOOKBACK_FILLER: &str =
    r"(?:[ \t:#=.,\-]+|(?-u:\b)(?:is|me|on|at|my|to|in|the|a|es|al|el|mi|en|la)(?-u:\b))*$";

const MONTHS: &str = "enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|setiembre|\
    octubre|noviembre|diciembre|january|february|march|april|may|june|july|august|september|\
    october|november|december|jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec";

const EMAIL: &str = r"(?-u:\b)[A-Za-z0-9._%+\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,24}(?-u:\b)";

const URL: &str = r#"(?i)(?-u:\b)(?:https?://|www\.)[^\s<>"'`\[\]{}|\\^]+"#;

const IPV4: &str = r"(?-u:\b)(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?-u:\b)";

/// Three or more groups; `fe80::1` and `::1` are rare in a patient's message and look like times.
const IPV6: &str = r"(?i)(?-u:\b)(?:[0-9a-f]{1,4}:{1,2}){2,7}[0-9a-f]{1,4}(?-u:\b)";

/// `+` or `00`, then +1 (NANP), +44 (UK, optional `(0)`) or any other country code.
const PHONE_INTERNATIONAL: &str = r"(?:\+|(?-u:\b)00)(?:1[ .\-]?(?:\([2-9][0-9]{2}\)|[2-9][0-9]{2})[ .\-]?[2-9][0-9]{2}[ .\-]?[0-9]{4}|44[ .\-]?(?:\(0\)[ .\-]?)?\(?[1-9][0-9]{1,4}\)?(?:[ .\-]?[0-9]{3,4}){2}|[2-9][0-9]{0,2}[ .\-]?\(?[0-9]{1,5}\)?(?:[ .\-]?[0-9]{2,5}){1,4})(?-u:\b)";

/// `07700 900123`, `020 7946 0018`, `(0161) 496 0000`, `0800-123-4567`.
const PHONE_UK: &str = r"(?:\(0[0-9]{2,4}\)|(?-u:\b)0[0-9]{2,4})(?:[ \-]?[0-9]{3,4}){2}(?-u:\b)";

/// `(415) 555-2671`, `415.555.2671`, `1-800-555-0199`, `4155552671`.
const PHONE_US: &str = r"(?:(?-u:\b)1[ .\-]?)?(?:\([2-9][0-9]{2}\)|(?-u:\b)[2-9][0-9]{2})[ .\-]?[2-9][0-9]{2}[ .\-]?[0-9]{4}(?-u:\b)";

const UK_POSTCODE: &str = r"[A-Z]{1,2}[0-9][A-Z0-9]?[ \t]?[0-9][A-Z]{2}";
const US_ZIP: &str = r"[0-9]{5}(?:-[0-9]{4})?";

/// Bare or spaced 3-3-4 as the NHS prints it; `415-555-2671` is left to the phone detector.
const NHS_NUMBER: &str = r"(?-u:\b)(?:[0-9]{3} [0-9]{3} [0-9]{4}|[0-9]{10})(?-u:\b)";

const SSN: &str = r"(?-u:\b)[0-9]{3}-[0-9]{2}-[0-9]{4}(?-u:\b)";

const MBI: &str = r"(?i)(?-u:\b)[1-9][AC-HJKMNP-RT-Y][AC-HJKMNP-RT-Y0-9][0-9]-?[AC-HJKMNP-RT-Y][AC-HJKMNP-RT-Y0-9][0-9]-?[AC-HJKMNP-RT-Y]{2}[0-9]{2}(?-u:\b)";

const AUSTRALIAN_MEDICARE: &str = r"(?-u:\b)[2-6][0-9]{3}[ \-]?[0-9]{5}[ \-]?[0-9](?-u:\b)";

const STREET_SUFFIXES: &str = "road|rd|street|st|avenue|ave|lane|ln|drive|dr|close|way|court|ct|\
    place|pl|crescent|cres|terrace|gardens|grove|boulevard|blvd|square|sq|parkway|pkwy|highway|\
    hwy|circle|cir|row|mews|walk|hill|green|rise|vale|view|park";

const SPANISH_STREET_TYPES: &str = "calle|avenida|avda|av|paseo|plaza|pza|camino|carretera|ctra|\
    ronda|travesía|travesia|glorieta";

/// Words before a Spanish street's name that are not part of it ("Calle de la Paz").
const SPANISH_PARTICLES: &[&str] = &["de", "del", "la", "las", "los", "el"];

/// Compass points after an American street suffix.
const DIRECTIONS: &[&str] = &["NE", "NW", "SE", "SW", "N", "S", "E", "W"];

const PHONE_PRIORITY: u8 = 60;

/// A phone number with a phone cue before it ("call me on 415 555 2671") outranks the NHS check
/// digit, which one US number in eleven passes by chance.
const CUED_PHONE_PRIORITY: u8 = 72;

/// Which format a detector reads; several can find one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    Email,
    Url,
    Ipv4,
    Ipv6,
    PhoneInternational,
    PhoneUk,
    PhoneUs,
    PostcodeCued,
    AddressEnglish,
    AddressSpanish,
    Name,
    NameWeak,
    DateOfBirth,
    NhsNumber,
    Ssn,
    SsnCued,
    MedicareUs,
    MedicareAu,
    Mrn,
}

impl Rule {
    fn kind(self) -> Kind {
        match self {
            Self::Email => Kind::Email,
            Self::Url => Kind::Url,
            Self::Ipv4 | Self::Ipv6 => Kind::Ip,
            Self::PhoneInternational | Self::PhoneUk | Self::PhoneUs => Kind::Phone,
            Self::PostcodeCued => Kind::Postcode,
            Self::AddressEnglish | Self::AddressSpanish => Kind::Address,
            Self::Name | Self::NameWeak => Kind::Name,
            Self::DateOfBirth => Kind::DateOfBirth,
            Self::NhsNumber => Kind::NhsNumber,
            Self::Ssn | Self::SsnCued => Kind::Ssn,
            Self::MedicareUs | Self::MedicareAu => Kind::Medicare,
            Self::Mrn => Kind::Mrn,
        }
    }

    /// Which of two overlapping findings of the same length is kept (the longer always is: a URL
    /// holds an IP address, `+1 415 555 2671` holds ten digits that may pass the NHS check): the
    /// one a cue or a check digit vouches for.
    fn priority(self) -> u8 {
        match self.kind() {
            Kind::Url => 100,
            Kind::Email => 90,
            Kind::DateOfBirth | Kind::Mrn => 80,
            Kind::Address => 76,
            Kind::Name => 75,
            Kind::NhsNumber | Kind::Ssn | Kind::Medicare => 70,
            Kind::Phone => PHONE_PRIORITY,
            Kind::Postcode => 50,
            Kind::Ip => 40,
        }
    }

    /// The configuration key to blame when this detector does not compile.
    fn key(self) -> String {
        let kind = self.kind().as_str();
        match self {
            Self::Name
            | Self::NameWeak
            | Self::PostcodeCued
            | Self::DateOfBirth
            | Self::Mrn
            | Self::AddressEnglish
            | Self::AddressSpanish => format!("{kind}.extra_cues"),
            _ => format!("kinds ({kind})"),
        }
    }
}

/// A detector's pattern before compiling.
struct Pattern {
    rule: Rule,
    /// `(?i)` or nothing, applied to every part.
    flags: &'static str,
    /// The whole pattern of a format without a cue; the cue and filler of a cue-driven one.
    lead: String,
    /// What follows the cue, for cue-driven formats.
    value: Option<String>,
}

impl Pattern {
    fn plain(rule: Rule, pattern: impl Into<String>) -> Self {
        Self {
            rule,
            flags: "",
            lead: pattern.into(),
            value: None,
        }
    }

    fn cued(rule: Rule, flags: &'static str, lead: String, value: String) -> Self {
        Self {
            rule,
            flags,
            lead,
            value: Some(value),
        }
    }

    fn whole(&self) -> String {
        match &self.value {
            Some(value) => format!("{}{}(?P<value>{value})", self.flags, self.lead),
            None => format!("{}{}", self.flags, self.lead),
        }
    }
}

struct Detector {
    rule: Rule,
    regex: Regex,
    /// For cue-driven formats, the cue alone (anchored at the start) and the value alone
    /// (anchored at both ends). The DFA finds the whole match and these two split it where the
    /// value starts: capture groups would need the backtracker, which the Unicode classes of
    /// names make the most expensive step of a redaction.
    split: Option<(Regex, Regex)>,
    /// Whether the regex has a `street` group, read through captures (Spanish addresses, rare).
    captures: bool,
}

/// A finding before overlaps are resolved.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    kind: Kind,
    priority: u8,
    start: usize,
    end: usize,
}

/// Every enabled detector, compiled.
pub(super) struct Detectors {
    /// One pattern per detector, same order as `detectors`.
    set: RegexSet,
    detectors: Vec<Detector>,
    /// A phone cue ending where a bare ten-digit number starts ("call me on 4155552671").
    phone_cue: Regex,
    /// An NHS cue ending where a number starts: it is not a phone number, even if the check
    /// digit fails (a mistyped NHS number must not become `[PHONE_1]`).
    nhs_cue: Regex,
    /// An address cue that lets a street name in lower case count ("I live at 12 baker street").
    address_cue: Regex,
    /// A postcode or ZIP code shortly after a street address, on the same line.
    postcode_after_address: Option<Regex>,
    /// Addresses are also read when only postcodes are redacted, to find postcodes after them.
    emit_addresses: bool,
    mrn_min_digits: usize,
}

impl Detectors {
    pub(super) fn build(config: &RedactionConfig) -> Result<Self, RedactionConfigError> {
        let uk = config.reads(Locale::Uk);
        let us = config.reads(Locale::Us);
        let au = config.reads(Locale::Au);
        let extra = &config.extra_cues;
        let mut wanted: Vec<Pattern> = Vec::new();

        if config.has(Kind::Email) {
            wanted.push(Pattern::plain(Rule::Email, EMAIL));
        }
        if config.has(Kind::Url) {
            wanted.push(Pattern::plain(Rule::Url, URL));
        }
        if config.has(Kind::Ip) {
            wanted.push(Pattern::plain(Rule::Ipv4, IPV4));
            wanted.push(Pattern::plain(Rule::Ipv6, IPV6));
        }
        if config.has(Kind::Phone) {
            wanted.push(Pattern::plain(
                Rule::PhoneInternational,
                PHONE_INTERNATIONAL,
            ));
            if uk {
                wanted.push(Pattern::plain(Rule::PhoneUk, PHONE_UK));
            }
            if us {
                wanted.push(Pattern::plain(Rule::PhoneUs, PHONE_US));
            }
        }
        let postcode_values: Vec<&str> = [(uk, UK_POSTCODE), (us, US_ZIP)]
            .into_iter()
            .filter_map(|(on, pattern)| on.then_some(pattern))
            .collect();
        if config.has(Kind::Postcode) && !postcode_values.is_empty() {
            wanted.push(Pattern::cued(
                Rule::PostcodeCued,
                "(?i)",
                format!(
                    "{}{FILLER}",
                    cue_alternation(POSTCODE_CUES, &extra.postcode)
                ),
                format!(r"(?:{})(?-u:\b)", postcode_values.join("|")),
            ));
        }
        if config.has(Kind::Address) || config.has(Kind::Postcode) {
            wanted.push(Pattern::plain(
                Rule::AddressEnglish,
                format!(
                    r"(?-u:\b)[0-9]{{1,5}}[A-Za-z]?,?[ \t]+(?:[A-Za-z][A-Za-z'’.\-]*[ \t]+){{1,4}}(?i:{STREET_SUFFIXES})(?-u:\b)(?:\.?[ \t]+(?:NE|NW|SE|SW|N|S|E|W)(?-u:\b))?"
                ),
            ));
            wanted.push(Pattern::plain(
                Rule::AddressSpanish,
                format!(
                    r"(?i:(?-u:\b)(?:c/[ \t]*|(?:{SPANISH_STREET_TYPES})\.?[ \t]+))(?P<street>\p{{L}}[\p{{L}}'’.\-]*(?:[ \t]+\p{{L}}[\p{{L}}'’.\-]*){{0,4}}),?[ \t]*(?i:n[º°o]\.?[ \t]*|#[ \t]*)?[0-9]{{1,4}}(?-u:\b)"
                ),
            ));
        }
        if config.has(Kind::Name) {
            let word = r"\p{Lu}\p{L}*(?:['’\-]\p{L}{2,})*";
            let more = config.name_max_words.saturating_sub(1);
            wanted.push(Pattern::cued(
                Rule::Name,
                "",
                format!(
                    r"(?i:{})(?:[ \t]*[:,\-][ \t]*|[ \t]+)",
                    cue_alternation(NAME_CUES, &extra.name)
                ),
                format!(r"{word}(?:[ \t]+{word}){{0,{more}}}"),
            ));
            if more >= 1 {
                wanted.push(Pattern::cued(
                    Rule::NameWeak,
                    "",
                    format!(r"(?i:{})[ \t]+", cue_alternation(WEAK_NAME_CUES, &[])),
                    format!(r"{word}(?:[ \t]+{word}){{1,{more}}}"),
                ));
            }
        }
        if config.has(Kind::DateOfBirth) {
            wanted.push(Pattern::cued(
                Rule::DateOfBirth,
                "(?i)",
                format!(
                    "{}{FILLER}",
                    cue_alternation(DATE_OF_BIRTH_CUES, &extra.date_of_birth)
                ),
                format!(
                    r"[0-9]{{4}}-[0-9]{{1,2}}-[0-9]{{1,2}}|[0-9]{{1,2}}[/.\-][0-9]{{1,2}}[/.\-](?:[0-9]{{4}}|[0-9]{{2}})|[0-9]{{1,2}}(?:st|nd|rd|th|º)?(?:[ \t]+(?:of|de))?[ \t\-]+(?:{MONTHS})\.?(?:,?[ \t\-]+(?:de[ \t]+|del[ \t]+)?[0-9]{{4}}|-[0-9]{{2}})?|(?:{MONTHS})\.?[ \t]+[0-9]{{1,2}}(?:st|nd|rd|th)?(?:,?[ \t]+[0-9]{{4}})?"
                ),
            ));
        }
        if config.has(Kind::NhsNumber) && uk {
            wanted.push(Pattern::plain(Rule::NhsNumber, NHS_NUMBER));
        }
        if config.has(Kind::Ssn) && us {
            wanted.push(Pattern::plain(Rule::Ssn, SSN));
            wanted.push(Pattern::cued(
                Rule::SsnCued,
                "(?i)",
                format!("{}{FILLER}", cue_alternation(SSN_CUES, &[])),
                r"[0-9]{3}[ \-]?[0-9]{2}[ \-]?[0-9]{4}(?-u:\b)".to_owned(),
            ));
        }
        if config.has(Kind::Medicare) && us {
            wanted.push(Pattern::plain(Rule::MedicareUs, MBI));
        }
        if config.has(Kind::Medicare) && au {
            wanted.push(Pattern::plain(Rule::MedicareAu, AUSTRALIAN_MEDICARE));
        }
        if config.has(Kind::Mrn) {
            wanted.push(Pattern::cued(
                Rule::Mrn,
                "(?i)",
                format!("{}{FILLER}", cue_alternation(MRN_CUES, &extra.mrn)),
                r"[A-Z0-9](?:[A-Z0-9/\-]*[A-Z0-9])?".to_owned(),
            ));
        }

        let compile = |key: &str, pattern: &str| {
            RegexBuilder::new(pattern)
                .size_limit(SIZE_LIMIT)
                .build()
                .map_err(|error| RedactionConfigError::Compile {
                    path: config.source.clone(),
                    key: key.to_owned(),
                    reason: error.to_string(),
                })
        };
        let wholes: Vec<String> = wanted.iter().map(Pattern::whole).collect();
        let set = RegexSetBuilder::new(&wholes)
            .size_limit(SIZE_LIMIT * 2)
            .build()
            .map_err(|error| RedactionConfigError::Compile {
                path: config.source.clone(),
                key: "kinds".into(),
                reason: error.to_string(),
            })?;
        let detectors = wanted
            .iter()
            .zip(&wholes)
            .map(|(pattern, whole)| {
                let key = pattern.rule.key();
                let split = match &pattern.value {
                    Some(value) => Some((
                        compile(&key, &format!(r"{}\A(?:{})", pattern.flags, pattern.lead))?,
                        compile(&key, &format!(r"{}\A(?:{value})\z", pattern.flags))?,
                    )),
                    None => None,
                };
                Ok(Detector {
                    rule: pattern.rule,
                    regex: compile(&key, whole)?,
                    split,
                    captures: whole.contains("(?P<street>"),
                })
            })
            .collect::<Result<Vec<_>, RedactionConfigError>>()?;
        let lookback = |key: &str, cues: &[&str], extra: &[String]| {
            compile(
                key,
                &format!("(?i){}{LOOKBACK_FILLER}", cue_alternation(cues, extra)),
            )
        };
        let postcode_after_address = if config.has(Kind::Postcode) {
            // Written in capitals in an address; without a cue, lower case is too likely a word.
            let values: Vec<&str> = [(uk, UK_POSTCODE), (us, US_ZIP)]
                .into_iter()
                .filter_map(|(on, pattern)| on.then_some(pattern))
                .collect();
            Some(compile(
                "postcode",
                &format!(r"(?-u:\b)(?:{})(?-u:\b)", values.join("|")),
            )?)
        } else {
            None
        };
        Ok(Self {
            set,
            detectors,
            phone_cue: lookback("phone.extra_cues", PHONE_CUES, &extra.phone)?,
            nhs_cue: lookback("nhs_number", NHS_CUES, &[])?,
            address_cue: lookback("address.extra_cues", ADDRESS_CUES, &extra.address)?,
            postcode_after_address,
            emit_addresses: config.has(Kind::Address),
            mrn_min_digits: config.mrn_min_digits,
        })
    }

    /// The identifiers in `text`, in order and never overlapping.
    pub(super) fn find(&self, text: &str) -> Vec<Detection> {
        let matched = self.set.matches(text);
        if !matched.matched_any() {
            return Vec::new();
        }
        let mut candidates = Vec::new();
        for index in matched.iter() {
            let Some(detector) = self.detectors.get(index) else {
                continue;
            };
            if let Some((lead, value)) = &detector.split {
                for found in detector.regex.find_iter(text) {
                    let whole = found.as_str();
                    let value_start = lead
                        .find(whole)
                        .map(|lead| lead.end())
                        .filter(|&at| value.is_match(&whole[at..]));
                    let span = match value_start {
                        Some(at) => Some((found.start() + at, found.end())),
                        // The lead took a word the value needed ("MRN IS-1234"): let the
                        // capture engine split this one.
                        None => detector
                            .regex
                            .captures_at(text, found.start())
                            .and_then(|captures| captures.name("value"))
                            .map(|value| (value.start(), value.end())),
                    };
                    if let Some((start, end)) = span {
                        self.check(detector.rule, text, start, end, None, &mut candidates);
                    }
                }
            } else if detector.captures {
                for captures in detector.regex.captures_iter(text) {
                    let Some(found) = captures.get(0) else {
                        continue;
                    };
                    let street = captures.name("street").map(|street| street.as_str());
                    self.check(
                        detector.rule,
                        text,
                        found.start(),
                        found.end(),
                        street,
                        &mut candidates,
                    );
                }
            } else {
                for found in detector.regex.find_iter(text) {
                    let (start, end) = (found.start(), found.end());
                    self.check(detector.rule, text, start, end, None, &mut candidates);
                }
            }
        }
        resolve(candidates)
    }

    /// Turns one match into a candidate if it passes its rule's checks.
    fn check(
        &self,
        rule: Rule,
        text: &str,
        start: usize,
        end: usize,
        street: Option<&str>,
        out: &mut Vec<Candidate>,
    ) {
        let value = &text[start..end];
        let alone = || stands_alone(text, start, end);
        let span = match rule {
            Rule::Email => Some(end),
            Rule::Url => {
                let trimmed = trim_url(value);
                (trimmed.len() > "www.".len()).then_some(start + trimmed.len())
            }
            Rule::Ipv4 => (alone() && checksum::ipv4_is_valid(value)).then_some(end),
            Rule::Ipv6 => (alone() && checksum::ipv6_is_valid(value)).then_some(end),
            Rule::PhoneInternational => {
                (alone() && checksum::international_phone_is_valid(value)).then_some(end)
            }
            Rule::PhoneUk | Rule::PhoneUs => {
                let digits = checksum::digits(value);
                let digits = digits.as_slice();
                let valid = match rule {
                    Rule::PhoneUk => checksum::uk_national_is_valid(digits),
                    _ => match digits {
                        [1, rest @ ..] if rest.len() == 10 => checksum::nanp_is_valid(rest),
                        all => checksum::nanp_is_valid(all),
                    },
                };
                // Only ten digits can be an NHS number (cued, or mistyped so the check fails),
                // and ten bare digits are as likely a reference number as a phone number, so they
                // need a phone cue. Eleven bare digits starting 0 (`07700900123`) are a phone.
                let ten = digits.len() == 10;
                if !valid || !alone() || (ten && after_cue(&self.nhs_cue, text, start)) {
                    return;
                }
                let bare = value.bytes().all(|byte| byte.is_ascii_digit());
                let cued = ten && after_cue(&self.phone_cue, text, start);
                if bare && ten && !cued {
                    return;
                }
                out.push(Candidate {
                    kind: Kind::Phone,
                    priority: if cued {
                        CUED_PHONE_PRIORITY
                    } else {
                        PHONE_PRIORITY
                    },
                    start,
                    end,
                });
                None
            }
            Rule::PostcodeCued => alone().then_some(end),
            Rule::AddressEnglish | Rule::AddressSpanish => {
                self.check_address(rule, text, start, end, street, out);
                None
            }
            Rule::Name => name_end(text, start, end, 1),
            Rule::NameWeak => name_end(text, start, end, 2),
            Rule::DateOfBirth => (!glued_after(text, end) && plausible_date(value)).then_some(end),
            Rule::NhsNumber => (alone() && checksum::nhs_number_is_valid(value)).then_some(end),
            Rule::Ssn | Rule::SsnCued => (alone() && checksum::ssn_is_valid(value)).then_some(end),
            Rule::MedicareUs => (alone() && checksum::mbi_is_valid(value)).then_some(end),
            Rule::MedicareAu => {
                (alone() && checksum::australian_medicare_is_valid(value)).then_some(end)
            }
            Rule::Mrn => {
                let digits = value.bytes().filter(u8::is_ascii_digit).count();
                ((4..=24).contains(&value.len()) && digits >= self.mrn_min_digits).then_some(end)
            }
        };
        if let Some(end) = span {
            out.push(Candidate {
                kind: rule.kind(),
                priority: rule.priority(),
                start,
                end,
            });
        }
    }

    /// A street address needs its name capitalised ("12 Baker Street"), or a cue before it ("I
    /// live at 12 baker street"): "took 2 tablets on the way" has a number, words and a suffix.
    fn check_address(
        &self,
        rule: Rule,
        text: &str,
        start: usize,
        end: usize,
        street: Option<&str>,
        out: &mut Vec<Candidate>,
    ) {
        let capitalised = |word: &str| word.chars().next().is_some_and(char::is_uppercase);
        let named = match rule {
            Rule::AddressSpanish => street
                .unwrap_or_default()
                .split_whitespace()
                .find(|word| !is_one_of(word, SPANISH_PARTICLES))
                .is_some_and(capitalised),
            // Number, street words, suffix, perhaps a direction: `1600 Pennsylvania Avenue NW`.
            _ => {
                let words = || text[start..end].split_whitespace();
                let last = words().next_back().unwrap_or_default();
                let count = words().count();
                let after_street = if count > 3 && DIRECTIONS.contains(&last) {
                    2
                } else {
                    1
                };
                words()
                    .skip(1)
                    .take(count.saturating_sub(1 + after_street))
                    .all(capitalised)
            }
        };
        if !stands_alone(text, start, end) || !(named || after_cue(&self.address_cue, text, start))
        {
            return;
        }
        if self.emit_addresses {
            out.push(Candidate {
                kind: Kind::Address,
                priority: rule.priority(),
                start,
                end,
            });
        }
        let Some(postcode) = &self.postcode_after_address else {
            return;
        };
        let line_end = text[end..]
            .find('\n')
            .map_or(text.len(), |offset| end + offset);
        let limit = text.floor_char_boundary(line_end.min(end + POSTCODE_AFTER_ADDRESS));
        let code = postcode
            .find_iter(&text[end..limit])
            .map(|code| (end + code.start(), end + code.end()))
            .find(|&(code_start, code_end)| stands_alone(text, code_start, code_end));
        if let Some((code_start, code_end)) = code {
            out.push(Candidate {
                kind: Kind::Postcode,
                priority: Rule::PostcodeCued.priority(),
                start: code_start,
                end: code_end,
            });
        }
    }
}

/// Keeps the best of overlapping candidates (see [`Rule::priority`]) and sorts by position.
fn resolve(mut candidates: Vec<Candidate>) -> Vec<Detection> {
    candidates.sort_by(|a, b| {
        (b.end - b.start)
            .cmp(&(a.end - a.start))
            .then(b.priority.cmp(&a.priority))
            .then(a.start.cmp(&b.start))
    });
    let mut kept: Vec<Detection> = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        if candidate.start >= candidate.end {
            continue;
        }
        let overlaps = kept
            .iter()
            .any(|other| candidate.start < other.end && other.start < candidate.end);
        if !overlaps {
            kept.push(Detection {
                kind: candidate.kind,
                start: candidate.start,
                end: candidate.end,
            });
        }
    }
    kept.sort_by_key(|detection| detection.start);
    kept
}

/// A cue phrase as a pattern: case-insensitive (the caller adds `(?i)`), any run of spaces,
/// apostrophes optional, vowels with or without an accent, whole words at ASCII ends.
fn cue_pattern(phrase: &str) -> String {
    let phrase = phrase.trim().to_lowercase();
    let mut out = String::with_capacity(phrase.len() * 3);
    if phrase.starts_with(|ch: char| ch.is_ascii_alphanumeric()) {
        out.push_str(r"(?-u:\b)");
    }
    let mut in_space = false;
    for ch in phrase.chars() {
        if ch.is_whitespace() {
            if !in_space {
                out.push_str(r"[ \t]+");
            }
            in_space = true;
            continue;
        }
        in_space = false;
        match ch {
            '\'' | '’' => out.push_str("['’]?"),
            'a' | 'á' => out.push_str("[aá]"),
            'e' | 'é' => out.push_str("[eé]"),
            'i' | 'í' => out.push_str("[ií]"),
            'o' | 'ó' => out.push_str("[oó]"),
            'u' | 'ú' | 'ü' => out.push_str("[uúü]"),
            other => out.push_str(&regex::escape(other.encode_utf8(&mut [0; 4]))),
        }
    }
    if phrase.ends_with(|ch: char| ch.is_ascii_alphanumeric()) {
        out.push_str(r"(?-u:\b)");
    }
    out
}

/// Built-in and operators' cues as one alternation, longest first so that at one position the
/// longest cue is taken.
fn cue_alternation(built_in: &[&str], extra: &[String]) -> String {
    let mut phrases: Vec<&str> = built_in
        .iter()
        .copied()
        .chain(extra.iter().map(String::as_str))
        .map(str::trim)
        .filter(|phrase| !phrase.is_empty())
        .collect();
    phrases.sort_by_key(|phrase| std::cmp::Reverse(phrase.len()));
    phrases.dedup();
    let patterns: Vec<String> = phrases.into_iter().map(cue_pattern).collect();
    format!("(?:{})", patterns.join("|"))
}

/// Whether a cue (a `…$` pattern) ends just before `start`.
fn after_cue(cue: &Regex, text: &str, start: usize) -> bool {
    let from = text.floor_char_boundary(start.saturating_sub(CUE_LOOKBACK));
    cue.is_match(&text[from..start])
}

/// Whether the character after `end` continues the value (a letter, a digit, or a separator
/// followed by a digit, as in `12.03.2025` or `1/2/3`).
fn glued_after(text: &str, end: usize) -> bool {
    let mut after = text[end..].chars();
    match (after.next(), after.next()) {
        (Some(ch), _) if ch.is_alphanumeric() || matches!(ch, '/' | '@' | '_' | '\\') => true,
        (Some('.' | '-' | ':' | '+' | ','), Some(next)) => next.is_ascii_digit(),
        _ => false,
    }
}

/// Whether `start..end` stands on its own rather than being part of a longer token: a number
/// inside `12.03.2025`, `ref-07700900123` or `id4155552671` is not an identifier of its own.
fn stands_alone(text: &str, start: usize, end: usize) -> bool {
    let mut before = text[..start].chars().rev();
    let glued_before = match (before.next(), before.next()) {
        (Some(ch), _) if ch.is_alphanumeric() || matches!(ch, '/' | '@' | '_' | '\\') => true,
        (Some('-'), Some(previous)) => previous.is_alphanumeric(),
        (Some('.' | ':' | '+' | ','), Some(previous)) => previous.is_ascii_digit(),
        _ => false,
    };
    !glued_before && !glued_after(text, end)
}

/// A URL without the punctuation that ends the sentence around it.
fn trim_url(url: &str) -> &str {
    let mut trimmed = url.trim_end_matches(['.', ',', ';', ':', '!', '?', '\'', '"']);
    // A closing bracket belongs to the URL only if it opened one: `(see https://x.org/a)`.
    while trimmed.ends_with(')') && trimmed.matches('(').count() < trimmed.matches(')').count() {
        trimmed = trimmed[..trimmed.len() - 1].trim_end_matches(['.', ',', ';', ':', '!', '?']);
    }
    trimmed
}

/// Where a name after a cue ends: capitalised words with a lower-case letter (not `NHS`), up to
/// the first that is a common word rather than a name. `None` if fewer than `least` remain.
fn name_end(text: &str, start: usize, end: usize, least: usize) -> Option<usize> {
    let mut words = 0;
    let mut name_end = None;
    let mut offset = start;
    for word in text[start..end].split([' ', '\t']) {
        let word_end = offset + word.len();
        offset = word_end + 1;
        if word.is_empty() {
            continue;
        }
        if !word.chars().any(char::is_lowercase) || is_one_of(word, NOT_NAMES) {
            break;
        }
        words += 1;
        name_end = Some(word_end);
    }
    if words >= least { name_end } else { None }
}

/// Whether `word` is one of `list` (lower-case ASCII words), in any case.
fn is_one_of(word: &str, list: &[&str]) -> bool {
    list.iter().any(|entry| entry.eq_ignore_ascii_case(word))
}

/// A date whose day and month could be a day and a month: 1–31, and of two numbers, one 1–12.
/// The year (four digits, or the last of three numbers) is not checked.
fn plausible_date(date: &str) -> bool {
    let numbers: Vec<&str> = date
        .split(|ch: char| !ch.is_ascii_digit())
        .filter(|part| !part.is_empty())
        .collect();
    let named_month = date.chars().any(char::is_alphabetic);
    let day_and_month: Vec<u32> = numbers
        .iter()
        .filter(|part| part.len() <= 2)
        .take(if named_month { 1 } else { 2 })
        .filter_map(|part| part.parse().ok())
        .collect();
    day_and_month.iter().all(|number| (1..=31).contains(number))
        && day_and_month
            .iter()
            .any(|number| *number <= 12 || named_month)
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use super::super::Redactor;
    use super::*;

    fn redactor(locales: &[Locale]) -> Redactor {
        let config = RedactionConfig {
            locales: locales.to_vec(),
            ..RedactionConfig::default()
        };
        Redactor::new(&config).expect("builds")
    }

    /// Every kind, with UK, US and Australian formats: built once, as a server does.
    static EVERY_LOCALE: LazyLock<Redactor> = LazyLock::new(|| redactor(&Locale::ALL));

    /// `(kind, text)` of every identifier found with every locale on.
    fn found(text: &str) -> Vec<(Kind, String)> {
        spans(&EVERY_LOCALE, text)
    }

    fn found_with(locales: &[Locale], text: &str) -> Vec<(Kind, String)> {
        spans(&redactor(locales), text)
    }

    fn spans(redactor: &Redactor, text: &str) -> Vec<(Kind, String)> {
        redactor
            .detect(text)
            .into_iter()
            .map(|detection| {
                (
                    detection.kind,
                    text[detection.start..detection.end].to_owned(),
                )
            })
            .collect()
    }

    fn one(kind: Kind, value: &str) -> Vec<(Kind, String)> {
        vec![(kind, value.to_owned())]
    }

    // ---- names

    #[test]
    fn names_after_a_cue_are_found() {
        assert_eq!(
            found("Hi, my name is Sarah Jones and I feel sick"),
            one(Kind::Name, "Sarah Jones")
        );
        assert_eq!(found("MY NAME IS Sarah"), one(Kind::Name, "Sarah"));
        assert_eq!(found("this is Sarah's mum"), one(Kind::Name, "Sarah"));
        assert_eq!(found("you can call me Bob."), one(Kind::Name, "Bob"));
        assert_eq!(
            found("I am called Mary-Jane O'Neil"),
            one(Kind::Name, "Mary-Jane O'Neil")
        );
        assert_eq!(found("Name: Ahmed Khan"), one(Kind::Name, "Ahmed Khan"));
        assert_eq!(
            found("hola, me llamo María José García"),
            one(Kind::Name, "María José García")
        );
        assert_eq!(found("mi nombre es Íñigo"), one(Kind::Name, "Íñigo"));
        assert_eq!(found("I'm Sarah Jones, 45"), one(Kind::Name, "Sarah Jones"));
        assert_eq!(found("I am Tom Hardy"), one(Kind::Name, "Tom Hardy"));
    }

    #[test]
    fn names_stop_at_the_configured_number_of_words_and_at_common_words() {
        assert_eq!(
            found("my name is Anna Maria Lopez Garcia"),
            one(Kind::Name, "Anna Maria Lopez")
        );
        assert_eq!(
            found("this is Sarah Today I feel"),
            one(Kind::Name, "Sarah")
        );
    }

    #[test]
    fn capitalised_words_after_weak_or_no_cues_are_not_names() {
        assert_eq!(found("Dr Smith said it was a virus"), vec![]);
        assert_eq!(found("I saw Dr Patel and Nurse Jones today"), vec![]);
        assert_eq!(found("I'm 45 and I'm Diabetic"), vec![]);
        assert_eq!(found("I'm Type 2"), vec![]);
        assert_eq!(found("I'm British Asian"), vec![]);
        assert_eq!(found("this is Very painful"), vec![]);
        assert_eq!(found("this is NOT normal"), vec![]);
        assert_eq!(found("please call me Back"), vec![]);
        assert_eq!(found("my name is not important"), vec![]);
    }

    // ---- phones

    #[test]
    fn uk_phone_numbers_in_common_layouts() {
        for phone in [
            "07700 900123",
            "07700 900 123",
            "07700-900-123",
            "07700900123",
            "020 7946 0018",
            "(020) 7946 0018",
            "0161 496 0000",
            "01632 960123",
            "0800 123 4567",
        ] {
            assert_eq!(
                found(&format!("ring me on {phone}.")),
                one(Kind::Phone, phone),
                "{phone}"
            );
            assert_eq!(
                found(&format!("{phone} is mine")),
                one(Kind::Phone, phone),
                "{phone}"
            );
        }
    }

    #[test]
    fn us_phone_numbers_in_common_layouts() {
        for phone in [
            "(212) 555-0143",
            "212-555-0143",
            "212.555.0143",
            "212 555 0143",
            "2125550143",
            "1-800-555-0199",
            "1 (212) 555-0143",
        ] {
            assert_eq!(
                found(&format!("phone {phone} thanks")),
                one(Kind::Phone, phone),
                "{phone}"
            );
            if phone.contains(['(', '-', '.', ' ']) {
                assert_eq!(
                    found(&format!("it's {phone} thanks")),
                    one(Kind::Phone, phone)
                );
            }
        }
        // 415 555 2671 passes the NHS check digit: a phone cue says which it is.
        for phone in ["(415) 555-2671", "415-555-2671", "415.555.2671"] {
            assert_eq!(
                found(&format!("it's {phone} thanks")),
                one(Kind::Phone, phone),
                "{phone}"
            );
        }
    }

    #[test]
    fn international_phone_numbers() {
        for phone in [
            "+44 7700 900123",
            "+447700900123",
            "+44 (0)20 7946 0018",
            "0044 20 7946 0018",
            "+1 415 555 2671",
            "+1 (415) 555-2671",
            "+34 612 345 678",
            "+61 4 1234 5678",
            "+49 30 123456",
        ] {
            assert_eq!(
                found(&format!("at {phone}, thanks")),
                one(Kind::Phone, phone),
                "{phone}"
            );
        }
    }

    #[test]
    fn ten_bare_digits_are_a_phone_number_only_after_a_phone_cue() {
        assert_eq!(
            found("my number is 2125550143"),
            one(Kind::Phone, "2125550143")
        );
        assert_eq!(
            found("call me on 2125550143"),
            one(Kind::Phone, "2125550143")
        );
        assert_eq!(
            found("mi teléfono es 2125550143"),
            one(Kind::Phone, "2125550143")
        );
        assert_eq!(found("reference 2125550143 on the letter"), vec![]);
    }

    #[test]
    fn ten_digits_passing_the_nhs_check_are_an_nhs_number_unless_a_phone_cue_says_otherwise() {
        assert_eq!(
            found("ref 415 555 2671"),
            one(Kind::NhsNumber, "415 555 2671")
        );
        assert_eq!(
            found("call me on 415 555 2671"),
            one(Kind::Phone, "415 555 2671")
        );
        assert_eq!(
            found("call me on 4155552671"),
            one(Kind::Phone, "4155552671")
        );
        assert_eq!(
            found_with(&[Locale::Us], "ref 415 555 2671"),
            one(Kind::Phone, "415 555 2671")
        );
    }

    #[test]
    fn phone_like_numbers_that_are_too_short_or_glued_are_not_phones() {
        assert_eq!(found("call 555-2671"), vec![]);
        assert_eq!(found("call 0770 0900"), vec![]);
        assert_eq!(found("+44 7700 9001"), vec![]);
        assert_eq!(found("+34 612"), vec![]);
        assert_eq!(found("order id4155552671 and ref-07700900123"), vec![]);
        assert_eq!(found("the 2025.07700.900123 build"), vec![]);
    }

    // ---- email, url, ip

    #[test]
    fn emails_are_found_whole() {
        assert_eq!(
            found("write to sarah.jones+nhs@example.co.uk."),
            one(Kind::Email, "sarah.jones+nhs@example.co.uk")
        );
        assert_eq!(
            found("(J_Doe@mail.example.com)"),
            one(Kind::Email, "J_Doe@mail.example.com")
        );
        assert_eq!(found("an @ sign and a@b"), vec![]);
    }

    #[test]
    fn urls_lose_trailing_punctuation_and_contain_what_they_hold() {
        assert_eq!(
            found("see https://example.org/p?id=7."),
            one(Kind::Url, "https://example.org/p?id=7")
        );
        assert_eq!(
            found("(www.example.org/me)"),
            one(Kind::Url, "www.example.org/me")
        );
        assert_eq!(
            found("http://10.0.0.7:8080/x"),
            one(Kind::Url, "http://10.0.0.7:8080/x")
        );
        assert_eq!(
            found("https://en.wikipedia.org/wiki/Foo_(bar)"),
            one(Kind::Url, "https://en.wikipedia.org/wiki/Foo_(bar)")
        );
    }

    #[test]
    fn ip_addresses_v4_and_v6() {
        assert_eq!(
            found("my ip is 192.168.1.20."),
            one(Kind::Ip, "192.168.1.20")
        );
        assert_eq!(
            found("from 2001:db8::8a2e:370:7334 today"),
            one(Kind::Ip, "2001:db8::8a2e:370:7334")
        );
        assert_eq!(found("version 1.2.3.4.5 and 300.1.1.1"), vec![]);
        assert_eq!(found("at 10:30:45 I woke"), vec![]);
    }

    // ---- postcodes and addresses

    #[test]
    fn postcodes_and_zip_codes_need_a_cue_or_an_address() {
        assert_eq!(
            found("my postcode is SW1A 1AA"),
            one(Kind::Postcode, "SW1A 1AA")
        );
        assert_eq!(found("postcode: m1 1ae"), one(Kind::Postcode, "m1 1ae"));
        assert_eq!(
            found("zip code 62704-1234"),
            one(Kind::Postcode, "62704-1234")
        );
        assert_eq!(found("código postal 28013"), one(Kind::Postcode, "28013"));
        assert_eq!(found("I walked 10000 steps, about 12000"), vec![]);
        assert_eq!(found("ward SW1A 1AA"), vec![]);
    }

    #[test]
    fn postcodes_after_a_street_address_on_the_same_line() {
        assert_eq!(
            found("I live at 10 Downing Street, London SW1A 2AA"),
            vec![
                (Kind::Address, "10 Downing Street".into()),
                (Kind::Postcode, "SW1A 2AA".into())
            ]
        );
        assert_eq!(
            found("123 Main St, Springfield, IL 62704"),
            vec![
                (Kind::Address, "123 Main St".into()),
                (Kind::Postcode, "62704".into())
            ]
        );
        assert_eq!(
            found("10 Downing Street\nSW1A 2AA"),
            one(Kind::Address, "10 Downing Street")
        );
    }

    #[test]
    fn street_addresses_in_english_and_spanish() {
        assert_eq!(
            found("I'm at 221B Baker Street now"),
            one(Kind::Address, "221B Baker Street")
        );
        assert_eq!(
            found("1600 Pennsylvania Avenue NW"),
            one(Kind::Address, "1600 Pennsylvania Avenue NW")
        );
        assert_eq!(found("42 Acacia Ave."), one(Kind::Address, "42 Acacia Ave"));
        assert_eq!(
            found("flat 3, 7 St. John's Road"),
            one(Kind::Address, "7 St. John's Road")
        );
        assert_eq!(
            found("I live at 12 baker street"),
            one(Kind::Address, "12 baker street")
        );
        assert_eq!(
            found("vivo en Calle Mayor 5"),
            one(Kind::Address, "Calle Mayor 5")
        );
        assert_eq!(
            found("en la calle de Alcalá, nº 45"),
            one(Kind::Address, "calle de Alcalá, nº 45")
        );
        assert_eq!(
            found("C/ Gran Vía 12"),
            one(Kind::Address, "C/ Gran Vía 12")
        );
    }

    #[test]
    fn numbers_and_words_that_only_look_like_an_address_are_left() {
        assert_eq!(found("took 2 tablets on the way"), vec![]);
        assert_eq!(found("I walk 3 dogs in the park"), vec![]);
        assert_eq!(found("en la calle hace frío 5 días"), vec![]);
        assert_eq!(found("38.5 Baker Street"), vec![]);
    }

    // ---- dates of birth

    #[test]
    fn dates_of_birth_after_a_cue() {
        assert_eq!(
            found("DOB 12/03/1980"),
            one(Kind::DateOfBirth, "12/03/1980")
        );
        assert_eq!(found("DOB: 03/25/80"), one(Kind::DateOfBirth, "03/25/80"));
        assert_eq!(
            found("d.o.b.: 1980-03-12"),
            one(Kind::DateOfBirth, "1980-03-12")
        );
        assert_eq!(
            found("date of birth is 3rd of March, 1980"),
            one(Kind::DateOfBirth, "3rd of March, 1980")
        );
        assert_eq!(
            found("I was born on March 3, 1980"),
            one(Kind::DateOfBirth, "March 3, 1980")
        );
        assert_eq!(found("born 3-Mar-80"), one(Kind::DateOfBirth, "3-Mar-80"));
        assert_eq!(
            found("born 3-Mar-1980"),
            one(Kind::DateOfBirth, "3-Mar-1980")
        );
        assert_eq!(
            found("fecha de nacimiento: 3 de marzo de 1980"),
            one(Kind::DateOfBirth, "3 de marzo de 1980")
        );
        assert_eq!(
            found("nací el 12.03.1980"),
            one(Kind::DateOfBirth, "12.03.1980")
        );
    }

    #[test]
    fn dates_without_a_birth_cue_or_impossible_ones_are_left() {
        assert_eq!(found("sick since 12/03/2025"), vec![]);
        assert_eq!(found("it started on 3 March"), vec![]);
        assert_eq!(found("born on 45/13/1980"), vec![]);
        assert_eq!(found("born on 3 Marathons ago"), vec![]);
    }

    // ---- health and social numbers

    #[test]
    fn nhs_numbers_with_a_valid_check_digit() {
        for nhs in ["943 476 5919", "9434765919", "6907366258", "690 736 6258"] {
            assert_eq!(
                found_with(&[Locale::Uk], &format!("NHS no {nhs}")),
                one(Kind::NhsNumber, nhs)
            );
        }
        // With US formats on too, the check digit beats the look of a phone number.
        assert_eq!(
            found("it is 943 476 5919"),
            one(Kind::NhsNumber, "943 476 5919")
        );
    }

    #[test]
    fn ten_digits_failing_the_nhs_check_are_left() {
        assert_eq!(found("my NHS number is 8303883685"), vec![]);
        assert_eq!(found("my NHS number is 830 388 3685"), vec![]);
        assert_eq!(
            found_with(&[Locale::Uk], "order 943 476 5918 arrived"),
            vec![]
        );
    }

    #[test]
    fn ssns_in_issued_ranges() {
        assert_eq!(found("ssn 123-45-6789"), one(Kind::Ssn, "123-45-6789"));
        assert_eq!(found("it's 078-05-1121"), one(Kind::Ssn, "078-05-1121"));
        assert_eq!(
            found("social security number: 123 45 6789"),
            one(Kind::Ssn, "123 45 6789")
        );
        assert_eq!(found("SSN is 123456789"), one(Kind::Ssn, "123456789"));
        for invalid in [
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "123-00-4567",
            "123-45-0000",
        ] {
            assert_eq!(found(&format!("ssn {invalid}")), vec![], "{invalid}");
        }
        assert_eq!(found("lot 123456789"), vec![]);
    }

    #[test]
    fn medicare_numbers_us_and_australian() {
        assert_eq!(
            found("MBI 1EG4-TE5-MK73"),
            one(Kind::Medicare, "1EG4-TE5-MK73")
        );
        assert_eq!(
            found("card 1EG4TE5MK73."),
            one(Kind::Medicare, "1EG4TE5MK73")
        );
        assert_eq!(found("card 1SG4TE5MK73"), vec![]);
        assert_eq!(
            found("medicare 2123 45670 1"),
            one(Kind::Medicare, "2123 45670 1")
        );
        assert_eq!(found("medicare 2123 45671 1"), vec![]);
        assert_eq!(found_with(&[Locale::Uk], "MBI 1EG4-TE5-MK73"), vec![]);
    }

    #[test]
    fn hospital_record_numbers_after_a_cue() {
        assert_eq!(found("my MRN is 12345678"), one(Kind::Mrn, "12345678"));
        assert_eq!(
            found("hospital number: RX1234567."),
            one(Kind::Mrn, "RX1234567")
        );
        assert_eq!(
            found("medical record no. A-00123-45"),
            one(Kind::Mrn, "A-00123-45")
        );
        assert_eq!(
            found("número de historia 0045123"),
            one(Kind::Mrn, "0045123")
        );
        assert_eq!(found("my record number is unknown"), vec![]);
        // The cue's filler could take `IS`; the capture engine then splits the match.
        assert_eq!(found("MRN IS-1234"), one(Kind::Mrn, "IS-1234"));
        assert_eq!(found("patient 12345678 was seen"), vec![]);
    }

    // ---- clinical text that must be left alone

    fn nothing_found_in(texts: &[&str]) {
        for text in texts {
            assert_eq!(found(text), vec![], "{text}");
        }
    }

    #[test]
    fn dosages_are_not_identifiers() {
        nothing_found_in(&[
            "I took 500 mg of paracetamol",
            "2 x 20mg tablets",
            "insulin 10 units, metformin 1000mg twice a day",
        ]);
    }

    #[test]
    fn blood_pressure_readings_are_not_identifiers() {
        nothing_found_in(&[
            "blood pressure 140/90 this morning",
            "BP was 135/85, pulse 72",
        ]);
    }

    #[test]
    fn temperatures_are_not_identifiers() {
        nothing_found_in(&[
            "temperature 38.5C",
            "temp 101.2 F",
            "38,5 °C since last night",
        ]);
    }

    #[test]
    fn dates_of_symptoms_are_not_identifiers() {
        nothing_found_in(&[
            "sick since 12/03/2025",
            "it started on 3 March",
            "between 2019 and 2023",
            "on 2025-03-12 it got worse",
        ]);
    }

    #[test]
    fn times_are_not_identifiers() {
        nothing_found_in(&["the pain began at 10:30", "insulin at 08:00 and 22:00:00"]);
    }

    #[test]
    fn counts_and_measurements_are_not_identifiers() {
        nothing_found_in(&[
            "I took 12 tablets",
            "I've had 3 episodes in 24 hours",
            "glucose 7.8 mmol/L, HbA1c 48",
            "weight 82.5 kg, 10000 steps",
        ]);
    }

    #[test]
    fn ages_are_not_identifiers() {
        nothing_found_in(&[
            "I'm 45",
            "I'm 45 years old and 180 cm",
            "I am 7 months pregnant",
        ]);
    }

    #[test]
    fn a_doctors_name_without_the_patients_cue_is_not_redacted() {
        // Names are only taken after the patient's own cue in this version.
        nothing_found_in(&["Dr Smith said it was fine", "Mr Patel at the pharmacy"]);
    }

    #[test]
    fn cue_phrases_fold_case_spaces_apostrophes_and_accents() {
        let cue = Regex::new(&format!("(?i){}$", cue_pattern("I'm  called"))).expect("compiles");
        assert!(cue.is_match("Im called"));
        assert!(cue.is_match("I’M CALLED"));
        let cue = Regex::new(&format!("(?i){}$", cue_pattern("telefono"))).expect("compiles");
        assert!(cue.is_match("Teléfono"));
        assert!(!cue.is_match("microtelefono"));
    }
}
