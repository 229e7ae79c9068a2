//! The policy matcher on any UTF-8 text, with the shipped policy set. Input split at NUL bytes:
//! the last part is the message, the parts before it the patient's earlier messages.
//!
//! Invariants: no panic; every fired rule's span is a non-empty range of the message on char
//! boundaries and `matched` is that text; the level is the most severe fired rule's; fired rules
//! are most severe first, each rule at most once; evaluating twice gives the same decision; and
//! `explain` reports the same decision with the normaliser's view of the message.
#![no_main]

mod shipped;

use carebridge::policy::{Decision, Severity};
use libfuzzer_sys::fuzz_target;

fn check(message: &str, decision: &Decision) {
    for fired in &decision.fired {
        let (start, end) = fired.span;
        assert!(start < end && end <= message.len(), "{fired:?}");
        assert!(
            message.is_char_boundary(start) && message.is_char_boundary(end),
            "{fired:?}"
        );
        assert_eq!(fired.matched, message[start..end], "{fired:?}");
    }
    let most_severe = decision
        .fired
        .iter()
        .map(|fired| fired.severity)
        .max()
        .unwrap_or(Severity::Routine);
    assert_eq!(decision.level, most_severe, "{decision:?}");
    assert!(
        decision
            .fired
            .windows(2)
            .all(|pair| pair[0].severity >= pair[1].severity),
        "{decision:?}"
    );
    let mut rules = decision.rule_ids();
    rules.sort_unstable();
    let fired = rules.len();
    rules.dedup();
    assert_eq!(rules.len(), fired, "a rule fired twice: {decision:?}");
    for set_aside in &decision.set_aside {
        assert!(message.contains(&set_aside.matched), "{set_aside:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let set = shipped::policy_set();
    let mut parts: Vec<&str> = text.split('\0').collect();
    let message = parts.pop().unwrap_or_default();
    let earlier = parts;

    let decision = set.evaluate(message);
    check(message, &decision);
    assert_eq!(
        set.evaluate(message),
        decision,
        "a second evaluation differs"
    );

    let in_conversation = if earlier.is_empty() {
        decision
    } else {
        let in_conversation = set.evaluate_in_conversation(message, &earlier);
        check(message, &in_conversation);
        in_conversation
    };
    let explanation = set.explain(message, &earlier);
    assert_eq!(explanation.decision, in_conversation);
    assert_eq!(
        explanation.normalized,
        set.normalizer().normalize(message).plain.trim()
    );
    for found in &explanation.matches {
        assert!(message.contains(&found.matched), "{found:?}");
    }
});
