//! The normaliser on any UTF-8 text, bare and with the shipped lexicon: no panic, every token's
//! span is a non-empty range of the original on char boundaries, `plain` and `squeezed` are the
//! tokens joined, offsets lead back to their token, and the normal form is its own normal form.
#![no_main]

mod shipped;

use carebridge::policy::normalize::{NormalizedText, Normalizer};
use libfuzzer_sys::fuzz_target;

fn check(text: &str, normalized: &NormalizedText) {
    let mut previous_start = 0;
    for (index, token) in normalized.tokens.iter().enumerate() {
        assert!(
            token.start < token.end && token.end <= text.len(),
            "{token:?}"
        );
        assert!(text.is_char_boundary(token.start) && text.is_char_boundary(token.end));
        assert!(
            previous_start <= token.start,
            "tokens out of order at {token:?}"
        );
        assert!(
            !token.plain.is_empty() && !token.squeezed().is_empty(),
            "{token:?}"
        );
        assert_eq!(
            normalized.original_span(index, index),
            (token.start, token.end)
        );
        previous_start = token.start;
    }
    let plain: Vec<&str> = normalized
        .tokens
        .iter()
        .map(|token| token.plain.as_str())
        .collect();
    assert_eq!(normalized.plain, plain.join(" "));
    let squeezed: String = normalized
        .tokens
        .iter()
        .map(|token| format!("{} ", token.squeezed()))
        .collect();
    assert_eq!(normalized.squeezed, format!(" {squeezed}"));
    let (mut plain_at, mut squeezed_at) = (0, 1);
    for (index, token) in normalized.tokens.iter().enumerate() {
        let plain_end = plain_at + token.plain.len();
        assert_eq!(
            normalized.token_range(plain_at, plain_end, false),
            Some((index, index))
        );
        let squeezed_end = squeezed_at + token.squeezed().len();
        assert_eq!(
            normalized.token_range(squeezed_at, squeezed_end, true),
            Some((index, index))
        );
        plain_at = plain_end + 1;
        squeezed_at = squeezed_end + 1;
    }
}

fn check_with(normalizer: &Normalizer, text: &str) {
    let once = normalizer.normalize(text);
    check(text, &once);
    let twice = normalizer.normalize(&once.plain);
    check(&once.plain, &twice);
    assert_eq!(twice.plain, once.plain, "not idempotent on {text:?}");
    assert_eq!(twice.squeezed, once.squeezed, "not idempotent on {text:?}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check_with(&Normalizer::default(), text);
    check_with(shipped::policy_set().normalizer(), text);
});
