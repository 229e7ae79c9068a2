//! Check digits and number-range rules: what makes a run of digits an identifier rather than a
//! reading, a count or a typo. Every function takes the text as typed (spaces, dashes, brackets)
//! and reads only its ASCII digits and letters.

use std::net::{Ipv4Addr, Ipv6Addr};

/// The most digits kept: more than any identifier has, so a longer run fails every check.
const MOST_DIGITS: usize = 24;

/// The ASCII digits of a value, kept on the stack: checks run on every candidate number.
#[derive(Clone, Copy)]
pub struct Digits {
    digits: [u8; MOST_DIGITS],
    len: usize,
}

impl Digits {
    pub fn as_slice(&self) -> &[u8] {
        &self.digits[..self.len]
    }
}

/// The ASCII digits of `text` as numbers, everything else skipped (at most 24).
pub fn digits(text: &str) -> Digits {
    let mut out = Digits {
        digits: [0; MOST_DIGITS],
        len: 0,
    };
    for byte in text.bytes().filter(u8::is_ascii_digit) {
        if out.len == MOST_DIGITS {
            break;
        }
        out.digits[out.len] = byte - b'0';
        out.len += 1;
    }
    out
}

/// An NHS number (England, Wales, Isle of Man): ten digits whose last is the modulus-11 check
/// digit of the first nine, weighted 10 down to 2. A remainder that gives a check digit of 10 is
/// never issued, so such numbers are invalid.
pub fn nhs_number_is_valid(text: &str) -> bool {
    let digits = digits(text);
    let digits = digits.as_slice();
    if digits.len() != 10 {
        return false;
    }
    let sum: u32 = digits[..9]
        .iter()
        .zip((2..=10u32).rev())
        .map(|(&digit, weight)| u32::from(digit) * weight)
        .sum();
    let check = match 11 - sum % 11 {
        11 => 0,
        10 => return false,
        check => check,
    };
    check == u32::from(digits[9])
}

/// A US Social Security number `AAA-GG-SSSS` in a range the SSA issues: area not 000, 666 or
/// 900–999, group not 00, serial not 0000.
pub fn ssn_is_valid(text: &str) -> bool {
    let digits = digits(text);
    let digits = digits.as_slice();
    if digits.len() != 9 {
        return false;
    }
    let number = |range: std::ops::Range<usize>| {
        digits[range]
            .iter()
            .fold(0u32, |total, &digit| total * 10 + u32::from(digit))
    };
    let (area, group, serial) = (number(0..3), number(3..5), number(5..9));
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// Letters a Medicare Beneficiary Identifier may use: A–Z without S, L, O, I, B and Z, which are
/// left out because they read like digits.
fn is_mbi_letter(byte: u8) -> bool {
    byte.is_ascii_uppercase() && !matches!(byte, b'S' | b'L' | b'O' | b'I' | b'B' | b'Z')
}

/// A US Medicare Beneficiary Identifier (CMS, 2018 on): eleven characters, dashes allowed after
/// the 4th and 7th. Position 1 is a digit 1–9; 2, 5, 8 and 9 are letters; 4, 7, 10 and 11 are
/// digits; 3 and 6 are a letter or a digit.
pub fn mbi_is_valid(text: &str) -> bool {
    let characters: Vec<u8> = text
        .bytes()
        .filter(|&byte| byte != b'-')
        .map(|byte| byte.to_ascii_uppercase())
        .collect();
    if characters.len() != 11 {
        return false;
    }
    characters
        .iter()
        .enumerate()
        .all(|(index, &byte)| match index {
            0 => (b'1'..=b'9').contains(&byte),
            1 | 4 | 7 | 8 => is_mbi_letter(byte),
            2 | 5 => is_mbi_letter(byte) || byte.is_ascii_digit(),
            _ => byte.is_ascii_digit(),
        })
}

/// An Australian Medicare card number: ten digits, the first 2–6, the ninth the check digit
/// (the first eight weighted 1, 3, 7, 9, 1, 3, 7, 9, modulo 10), the tenth the issue number.
pub fn australian_medicare_is_valid(text: &str) -> bool {
    let digits = digits(text);
    let digits = digits.as_slice();
    if digits.len() != 10 || !(2..=6).contains(&digits[0]) {
        return false;
    }
    let sum: u32 = digits[..8]
        .iter()
        .zip([1u32, 3, 7, 9, 1, 3, 7, 9])
        .map(|(&digit, weight)| u32::from(digit) * weight)
        .sum();
    sum % 10 == u32::from(digits[8])
}

/// A North American (NANP) number of ten digits: area code and exchange both start 2–9, and the
/// area code is not a service code such as 911.
pub fn nanp_is_valid(digits: &[u8]) -> bool {
    digits.len() == 10 && digits[0] >= 2 && !(digits[1] == 1 && digits[2] == 1) && digits[3] >= 2
}

/// A UK number written nationally: a leading 0, then 9 or 10 digits whose first is not 0 (a
/// second 0 would be the international prefix `00`).
pub fn uk_national_is_valid(digits: &[u8]) -> bool {
    (10..=11).contains(&digits.len()) && digits[0] == 0 && digits[1] != 0
}

/// A number written with `+` or `00`: +1 must be a NANP number, +44 a UK number (an optional
/// `(0)` is ignored), and any other country code 8 to 15 digits in all (E.164's limit).
pub fn international_phone_is_valid(text: &str) -> bool {
    let trunk = text.find("(0)");
    let digits = match trunk {
        Some(at) => digits(&[&text[..at], &text[at + 3..]].concat()),
        None => digits(text),
    };
    // `00` is the international prefix, not part of the number.
    let skip = if text.trim_start().starts_with('+') {
        0
    } else {
        2
    };
    match digits.as_slice().get(skip..).unwrap_or_default() {
        [1, rest @ ..] => nanp_is_valid(rest),
        [4, 4, rest @ ..] => (9..=10).contains(&rest.len()) && rest[0] != 0,
        [0, ..] => false,
        all => (8..=15).contains(&all.len()),
    }
}

/// An IPv4 address in dotted decimal, each part 0–255 without leading zeros.
pub fn ipv4_is_valid(text: &str) -> bool {
    text.parse::<Ipv4Addr>().is_ok()
}

/// An IPv6 address with at least two groups written out: `::1` and `::` identify no one.
pub fn ipv6_is_valid(text: &str) -> bool {
    let groups = text.split(':').filter(|group| !group.is_empty()).count();
    groups >= 2 && text.parse::<Ipv6Addr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nhs_numbers_pass_only_with_the_right_check_digit() {
        assert!(nhs_number_is_valid("943 476 5919"));
        assert!(nhs_number_is_valid("6907366258"));
        assert!(nhs_number_is_valid("883-607-5983"));
        assert!(!nhs_number_is_valid("943 476 5918"));
        assert!(!nhs_number_is_valid("8303883685"));
        assert!(!nhs_number_is_valid("943476591"));
    }

    #[test]
    fn nhs_numbers_whose_check_digit_would_be_ten_are_invalid() {
        // 000000300: the 3 has weight 4, 12 % 11 = 1 and 11 - 1 = 10, a check digit never issued.
        for check in 0..=9 {
            assert!(!nhs_number_is_valid(&format!("000000300{check}")));
        }
    }

    #[test]
    fn ssns_outside_the_issued_ranges_are_invalid() {
        assert!(ssn_is_valid("123-45-6789"));
        assert!(ssn_is_valid("899-01-0001"));
        assert!(!ssn_is_valid("000-12-3456"));
        assert!(!ssn_is_valid("666-12-3456"));
        assert!(!ssn_is_valid("912-12-3456"));
        assert!(!ssn_is_valid("123-00-3456"));
        assert!(!ssn_is_valid("123-45-0000"));
    }

    #[test]
    fn mbis_follow_the_position_rules() {
        assert!(mbi_is_valid("1EG4-TE5-MK73"));
        assert!(mbi_is_valid("1eg4te5mk73"));
        assert!(mbi_is_valid("9A99A99AA99"));
        assert!(!mbi_is_valid("0EG4TE5MK73"), "position 1 is 1-9");
        assert!(!mbi_is_valid("1SG4TE5MK73"), "S is never used");
        assert!(!mbi_is_valid("1EG4TE5MK7"), "too short");
        assert!(!mbi_is_valid("1EGATE5MK73"), "position 4 is a digit");
    }

    #[test]
    fn australian_medicare_numbers_have_a_check_digit() {
        assert!(australian_medicare_is_valid("2123 45670 1"));
        assert!(!australian_medicare_is_valid("2123 45671 1"));
        assert!(!australian_medicare_is_valid("7123 45670 1"));
    }

    #[test]
    fn phone_rules_by_country() {
        assert!(international_phone_is_valid("+44 7700 900123"));
        assert!(international_phone_is_valid("+44 (0)20 7946 0018"));
        assert!(international_phone_is_valid("0044 20 7946 0018"));
        assert!(international_phone_is_valid("+1 (415) 555-2671"));
        assert!(international_phone_is_valid("+34 612 345 678"));
        assert!(
            !international_phone_is_valid("+1 415 155 2671"),
            "exchange starts 1"
        );
        assert!(!international_phone_is_valid("+44 7700 9001"), "too short");
        assert!(!international_phone_is_valid("+34 612"), "too short");
        assert!(nanp_is_valid(digits("415 555 2671").as_slice()));
        assert!(!nanp_is_valid(digits("911 555 2671").as_slice()));
        assert!(uk_national_is_valid(digits("07700 900123").as_slice()));
        assert!(!uk_national_is_valid(digits("00447700900").as_slice()));
    }

    #[test]
    fn ip_addresses_parse_strictly() {
        assert!(ipv4_is_valid("192.168.1.20"));
        assert!(!ipv4_is_valid("192.168.1.256"));
        assert!(ipv6_is_valid("2001:db8::8a2e:370:7334"));
        assert!(ipv6_is_valid("fe80::1"));
        assert!(!ipv6_is_valid("::1"));
        assert!(!ipv6_is_valid("10:30:45"));
    }
}
