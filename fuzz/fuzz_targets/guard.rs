//! The output guard on any UTF-8 reply, with the shipped output rules. The first byte picks the
//! session's flag and the chunk sizes; the rest is the reply.
//!
//! Invariants: no panic; under any chunking the same rules act as when the reply comes in one
//! piece; without a replacement the patient sees the same text; with one, what went out before
//! it holds nothing a rule would replace; and the guard never holds more than it may.
#![no_main]

mod shipped;

use carebridge::guard::{GuardAction, run_chunked, stream};
use carebridge::policy::Severity;
use carebridge::policy::file::OutputAction;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let Ok(reply) = std::str::from_utf8(rest) else {
        return;
    };
    let flag = match control % 3 {
        0 => Severity::Routine,
        1 => Severity::Urgent,
        _ => Severity::Emergency,
    };
    // Chunk sizes from 1 to 16 characters, varying along the reply.
    let sizes = [1 + usize::from(control >> 4), 1 + usize::from((control >> 2) & 3)];
    let rules = shipped::policy_set().output_rules();
    let whole = run_chunked(rules, flag, reply, usize::MAX);

    let chars: Vec<char> = reply.chars().collect();
    let mut pieces = Vec::new();
    let mut at = 0;
    for size in sizes.into_iter().cycle() {
        if at >= chars.len() {
            break;
        }
        pieces.push(chars[at..(at + size).min(chars.len())].iter().collect::<String>());
        at += size;
    }
    let streamed = stream(rules, flag, pieces);
    let seen = streamed.released;
    assert_eq!(streamed.action, whole.action, "{reply:?}: {seen:?}");
    match streamed.replaced {
        None => assert_eq!(seen, whole.text, "{reply:?}"),
        Some(replacement) => {
            let first_replacing = whole.rules.iter().find(|rule| {
                rules
                    .rules()
                    .iter()
                    .any(|known| &known.id == *rule && known.action == OutputAction::Replace)
            });
            assert_eq!(Some(&replacement.rule), first_replacing, "{reply:?}");
            let before = run_chunked(rules, flag, &seen, usize::MAX);
            assert_ne!(before.action, GuardAction::Replace, "{reply:?}: {seen:?} went out");
        }
    }
});
