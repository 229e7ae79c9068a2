//! Numbers written out in words, in the eight languages the policies speak: "thirty eight point
//! three", "treinta y ocho con cuatro", "achtunddreißig Komma fünf", "seven weeks". Words are read
//! as the normaliser leaves them: lower case, accents stripped, hyphens and `ß` spelt out.

/// A number read from one or more words.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpeltNumber {
    pub value: f64,
    /// The index of the first word after the number.
    pub end: usize,
    /// More than one word ("thirty eight") or a decimal part: unmistakably a number, where a lone
    /// "one" or "a" may be an article.
    pub compound: bool,
}

/// Words between the tens and the units ("treinta y ocho", "trinta e oito", "vingt et un").
const AND: &[&str] = &["y", "e", "et"];

/// "and a half" after a number: "trentotto e mezzo", "treinta y ocho y medio", "i pol".
const HALF: &[&str] = &[
    "half", "medio", "media", "demi", "meio", "meia", "mezzo", "halb", "pol",
];

/// Words that introduce the decimal part.
const POINT: &[&str] = &[
    "point",
    "punto",
    "coma",
    "con",
    "virgule",
    "virgula",
    "komma",
    "virgola",
    "przecinek",
];

fn units(word: &str) -> Option<u32> {
    Some(match word {
        "zero" | "cero" | "null" | "nul" => 0,
        "one" | "uno" | "una" | "un" | "une" | "um" | "uma" | "eins" | "ein" | "eine" | "een"
        | "jeden" | "jedna" | "jedno" => 1,
        "two" | "dos" | "deux" | "dois" | "duas" | "zwei" | "due" | "twee" | "dwa" | "dwie" => 2,
        "three" | "tres" | "trois" | "drei" | "tre" | "drie" | "trzy" => 3,
        "four" | "cuatro" | "quatre" | "quatro" | "vier" | "quattro" | "cztery" => 4,
        "five" | "cinco" | "cinq" | "funf" | "fuenf" | "cinque" | "vijf" | "piec" => 5,
        "six" | "seis" | "sechs" | "sei" | "zes" | "szesc" => 6,
        "seven" | "siete" | "sept" | "sete" | "sieben" | "sette" | "zeven" | "siedem" => 7,
        "eight" | "ocho" | "huit" | "oito" | "acht" | "otto" | "osiem" => 8,
        "nine" | "nueve" | "neuf" | "nove" | "neun" | "negen" | "dziewiec" => 9,
        _ => return None,
    })
}

fn teens(word: &str) -> Option<u32> {
    Some(match word {
        "ten" | "diez" | "dix" | "dez" | "zehn" | "dieci" | "tien" | "dziesiec" => 10,
        "eleven" | "once" | "onze" | "elf" | "undici" | "jedenascie" => 11,
        "twelve" | "doce" | "douze" | "doze" | "zwolf" | "dodici" | "twaalf" | "dwanascie" => 12,
        "thirteen" | "trece" | "treize" | "treze" | "dreizehn" | "tredici" | "dertien"
        | "trzynascie" => 13,
        "fourteen" | "catorce" | "quatorze" | "catorze" | "vierzehn" | "quattordici"
        | "veertien" | "czternascie" => 14,
        "fifteen" | "quince" | "quinze" | "funfzehn" | "quindici" | "vijftien" | "pietnascie" => 15,
        "sixteen" | "dieciseis" | "seize" | "dezesseis" | "dezasseis" | "sechzehn" | "sedici"
        | "zestien" | "szesnascie" => 16,
        "seventeen" | "diecisiete" | "dezessete" | "dezassete" | "siebzehn" | "diciassette"
        | "zeventien" | "siedemnascie" => 17,
        "eighteen" | "dieciocho" | "dezoito" | "achtzehn" | "diciotto" | "achttien"
        | "osiemnascie" => 18,
        "nineteen" | "diecinueve" | "dezenove" | "dezanove" | "neunzehn" | "diciannove"
        | "negentien" | "dziewietnascie" => 19,
        _ => return None,
    })
}

fn tens(word: &str) -> Option<u32> {
    Some(match word {
        "twenty" | "veinte" | "vingt" | "vinte" | "zwanzig" | "venti" | "twintig"
        | "dwadziescia" => 20,
        "thirty" | "treinta" | "trente" | "trinta" | "dreissig" | "trenta" | "dertig"
        | "trzydziesci" => 30,
        "forty" | "cuarenta" | "quarante" | "quarenta" | "vierzig" | "quaranta" | "veertig"
        | "czterdziesci" => 40,
        "fifty" | "cincuenta" | "cinquante" | "cinquenta" | "funfzig" | "cinquanta" | "vijftig"
        | "piecdziesiat" => 50,
        "sixty" | "sesenta" | "soixante" | "sessenta" | "sechzig" | "sessanta" | "zestig"
        | "szescdziesiat" => 60,
        // Not Polish "sto" (Italian "I am") nor "cent" (money).
        "hundred" | "cien" | "cem" | "hundert" | "cento" | "honderd" => 100,
        _ => return None,
    })
}

/// One word that is a whole number by itself: units, teens, tens, and the compounds written as
/// one word ("achtunddreissig", "achtendertig", "trentotto", "veintiocho").
fn whole_word(word: &str) -> Option<u32> {
    if let Some(value) = units(word).or_else(|| teens(word)).or_else(|| tens(word)) {
        return Some(value);
    }
    // Most words are no number, and this runs on every word: only a word ending like German or
    // Dutch tens ("-zig", "-ssig", "-tig") is split at "und"/"en", and only one starting like
    // Italian or Spanish tens is tried against their stems.
    // German "<units>und<tens>", Dutch "<units>en<tens>" (also "<units>ën<tens>", accents gone).
    if word.ends_with("zig") || word.ends_with("ssig") || word.ends_with("tig") {
        for joint in ["und", "en"] {
            if let Some((unit, ten)) = word.split_once(joint)
                && let (Some(unit), Some(ten)) = (units(unit), tens(ten))
                && ten < 100
            {
                return Some(ten + unit);
            }
        }
    }
    if !matches!(
        word.as_bytes().first(),
        Some(b'v' | b't' | b'q' | b'c' | b's')
    ) {
        return None;
    }
    // Italian "trentotto", "ventuno" (the tens lose their last vowel before one), Spanish
    // "veintiocho", Portuguese/Italian "vinte"/"venti" + units.
    for stem in [
        "veinti",
        "venti",
        "vent",
        "trenta",
        "trent",
        "quaranta",
        "quarant",
        "cinquanta",
        "cinquant",
        "sessanta",
        "sessant",
    ] {
        if let Some(unit) = word.strip_prefix(stem).and_then(units) {
            let ten = match stem.chars().next() {
                Some('v') => 20,
                Some('t') => 30,
                Some('q') => 40,
                Some('c') => 50,
                _ => 60,
            };
            return Some(ten + unit);
        }
    }
    None
}

/// A Chinese or Japanese numeral character: a digit, or the multiplier of ten or a hundred.
enum HanNumeral {
    Digit(u32),
    Times(u32),
}

fn han_numeral(word: &str) -> Option<HanNumeral> {
    Some(match word {
        "零" | "〇" => HanNumeral::Digit(0),
        "一" => HanNumeral::Digit(1),
        // 两 is the 2 that counts things: "两个月" (two months).
        "二" | "两" | "兩" => HanNumeral::Digit(2),
        "三" => HanNumeral::Digit(3),
        "四" => HanNumeral::Digit(4),
        "五" => HanNumeral::Digit(5),
        "六" => HanNumeral::Digit(6),
        "七" => HanNumeral::Digit(7),
        "八" => HanNumeral::Digit(8),
        "九" => HanNumeral::Digit(9),
        "十" => HanNumeral::Times(10),
        "百" => HanNumeral::Times(100),
        _ => return None,
    })
}

/// A number in Chinese or Japanese numerals, one ideograph a word as the normaliser leaves them:
/// "五" 5, "十二" 12, "二十" 20, "三十八" 38. A digit before 十 multiplies it, one after adds to it.
fn read_han<'a>(word: impl Fn(usize) -> &'a str, index: usize) -> Option<SpeltNumber> {
    let mut total = 0;
    let mut digit = None;
    let mut end = index;
    while let Some(numeral) = han_numeral(word(end)) {
        match numeral {
            HanNumeral::Digit(value) => {
                // Two digits in a row ("一二") are a list, not a number: stop at the first.
                if digit.is_some() {
                    break;
                }
                digit = Some(value);
            }
            HanNumeral::Times(times) => total += digit.take().unwrap_or(1) * times,
        }
        end += 1;
    }
    if end == index {
        return None;
    }
    Some(SpeltNumber {
        value: f64::from(total + digit.unwrap_or(0)),
        end,
        compound: end > index + 1,
    })
}

/// Hindi, Urdu and Bengali numbers in their own scripts, as the normaliser leaves them (Urdu
/// letters folded to their Arabic forms, Bengali nuktas dropped): unmistakably numbers.
fn indic_number(word: &str) -> Option<f64> {
    Some(match word {
        "एक" | "ايك" | "এক" => 1.0,
        "दो" | "دو" | "দুই" => 2.0,
        "तीन" | "تين" | "তিন" => 3.0,
        "चार" | "چار" | "চার" => 4.0,
        "पांच" | "پانچ" | "পাংচ" => 5.0,
        // Not Urdu "چھ", which folds to Persian "what".
        "छह" | "छः" | "छे" | "ছয" => 6.0,
        "सात" | "سات" | "সাত" => 7.0,
        "आठ" | "اٹه" | "আট" => 8.0,
        // Not Bengali "নয়", which is also "is not".
        "नौ" | "نو" => 9.0,
        "दस" | "دس" | "দশ" => 10.0,
        // "one and a quarter", "one and a half", "two and a half": how an infant's age is said.
        "सवा" | "سوا" => 1.25,
        "डेढ" | "ڈيڑه" | "দেড" => 1.5,
        "ढाई" | "ڈهايي" | "আডাই" => 2.5,
        _ => return None,
    })
}

/// Romanised Hindi numbers ("do mahine", "dedh hafta"). "do", "das", "teen" and "char" are words
/// of English and German too, so these count only before a romanised Hindi unit of time.
fn romanised_hindi_number(word: &str, next: &str) -> Option<f64> {
    if !matches!(
        next,
        "din"
            | "dino"
            | "mahina"
            | "mahine"
            | "mahinay"
            | "mahino"
            | "hafta"
            | "hafte"
            | "haftay"
            | "hafton"
            | "saal"
            | "sal"
            | "baras"
    ) {
        return None;
    }
    Some(match word {
        "ek" => 1.0,
        "do" => 2.0,
        "teen" | "tin" => 3.0,
        "char" | "chaar" => 4.0,
        "paanch" | "panch" => 5.0,
        "chhe" | "chhah" | "cheh" => 6.0,
        "saat" | "sat" => 7.0,
        "aath" | "ath" => 8.0,
        "nau" => 9.0,
        "das" => 10.0,
        "sava" | "sawa" => 1.25,
        "dedh" | "derh" => 1.5,
        "dhai" | "adhai" => 2.5,
        _ => return None,
    })
}

/// Reads a number written in words starting at word `index`; `word(i)` gives word `i` (empty
/// past the end).
pub fn read<'a>(word: impl Fn(usize) -> &'a str + Copy, index: usize) -> Option<SpeltNumber> {
    let first = word(index);
    if let Some(han) = read_han(word, index) {
        return Some(han);
    }
    if let Some(value) =
        indic_number(first).or_else(|| romanised_hindi_number(first, word(index + 1)))
    {
        return Some(SpeltNumber {
            value,
            end: index + 1,
            compound: false,
        });
    }
    let mut value = whole_word(first)?;
    let mut end = index + 1;
    // "thirty eight", "treinta y ocho", "trente huit", "vingt et un".
    if (20..100).contains(&value) && value % 10 == 0 {
        let link = usize::from(AND.contains(&word(end)));
        if let Some(unit) = units(word(end + link)).filter(|&unit| unit > 0) {
            value += unit;
            end += link + 1;
        }
    }
    let mut spelt = SpeltNumber {
        value: f64::from(value),
        end,
        compound: end > index + 1,
    };
    // "point three", "con cuatro", "komma fünf": one decimal digit.
    if POINT.contains(&word(end))
        && let Some(tenths) = units(word(end + 1))
    {
        spelt.value += f64::from(tenths) / 10.0;
        spelt.end = end + 2;
        spelt.compound = true;
    } else if matches!(word(end), "and" | "i" | "y" | "e" | "et" | "und" | "en") {
        // "and a half", "e mezzo", "i pol".
        let article = usize::from(matches!(word(end + 1), "a" | "un" | "une"));
        if HALF.contains(&word(end + 1 + article)) {
            spelt.value += 0.5;
            spelt.end = end + 2 + article;
            spelt.compound = true;
        }
    }
    Some(spelt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_text(text: &str) -> Option<(f64, usize, bool)> {
        let words: Vec<&str> = text.split(' ').collect();
        read(|index| words.get(index).copied().unwrap_or(""), 0)
            .map(|spelt| (spelt.value, spelt.end, spelt.compound))
    }

    #[test]
    fn numbers_in_words_are_read_in_each_language() {
        assert_eq!(read_text("thirty eight point three"), Some((38.3, 4, true)));
        assert_eq!(
            read_text("treinta y ocho con cuatro"),
            Some((38.4, 5, true))
        );
        assert_eq!(read_text("trente huit virgule cinq"), Some((38.5, 4, true)));
        assert_eq!(read_text("trinta e nove"), Some((39.0, 3, true)));
        assert_eq!(
            read_text("achtunddreissig komma funf"),
            Some((38.5, 3, true))
        );
        assert_eq!(read_text("trentotto e mezzo"), Some((38.5, 3, true)));
        assert_eq!(read_text("thirty eight and a half"), Some((38.5, 5, true)));
        assert_eq!(read_text("achtendertig"), Some((38.0, 1, false)));
        assert_eq!(read_text("trzydziesci osiem i pol"), Some((38.5, 4, true)));
        assert_eq!(read_text("veintiocho"), Some((28.0, 1, false)));
        assert_eq!(read_text("seven weeks"), Some((7.0, 1, false)));
    }

    #[test]
    fn chinese_and_hindi_numbers_are_read() {
        assert_eq!(read_text("五 个 月"), Some((5.0, 1, false)));
        assert_eq!(read_text("十 二 个 月"), Some((12.0, 2, true)));
        assert_eq!(read_text("二 十 天"), Some((20.0, 2, true)));
        assert_eq!(read_text("三 十 八 度"), Some((38.0, 3, true)));
        assert_eq!(read_text("十 天"), Some((10.0, 1, false)));
        assert_eq!(
            read_text("一 二"),
            Some((1.0, 1, false)),
            "a list, not a number"
        );
        assert_eq!(read_text("दो महीने"), Some((2.0, 1, false)));
        assert_eq!(read_text("सवा महीने"), Some((1.25, 1, false)));
        assert_eq!(read_text("ڈيڑه مهينے"), Some((1.5, 1, false)));
        assert_eq!(read_text("do mahine"), Some((2.0, 1, false)));
        assert_eq!(read_text("do you"), None, "English `do`");
        assert_eq!(read_text("das baby"), None, "German `das`");
    }

    #[test]
    fn words_that_are_no_number_are_not_read() {
        assert_eq!(read_text("tender"), None);
        assert_eq!(read_text("entire"), None);
        assert_eq!(read_text("under"), None, "`und` with no number around it");
        assert_eq!(read_text("often"), None, "`en` with no number around it");
        assert_eq!(
            read_text("twenty and"),
            Some((20.0, 1, false)),
            "a link needs a unit after it"
        );
    }
}
