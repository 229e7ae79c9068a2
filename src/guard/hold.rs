//! What the guard holds back: text that could still be the beginning of a `replace` or `redact`
//! phrase, and text that has not settled (a word still being written, letters that may be a word
//! spelt out). Everything else goes to the patient at once.

use std::borrow::Cow;

use crate::policy::normalize::{NormalizedText, squeeze};
use crate::policy::output::OutputRules;

use super::Guard;

/// The most text the guard holds back. A reply can only exceed it with a run of text no
/// normaliser would settle (one enormous word, thousands of spelt-out letters); past it the
/// oldest text goes out, and a phrase that then completes is still caught as it reaches back
/// into released text, so it never reaches the patient whole.
pub(super) const PENDING_MAX_BYTES: usize = 2048;
/// The most lexicon words a word still being written is tried as before it is simply held.
const MOST_EXPANSIONS: usize = 32;
/// How many words back a run of single letters is followed (they may still be one word spelt
/// out, `d o c t o r`), in multiples of the longest phrase.
const SPELT_RUN_WINDOWS: usize = 4;

impl<'a> Guard<'a> {
    /// How much of the pending text may go out now. `normalized` is `combined` normalised, and
    /// the pending text starts at byte `offset` of it.
    ///
    /// Text is unsettled while more of the reply could still change how it reads: the word
    /// still being written, and a run of single letters that may be a word spelt out. Settled
    /// words are held back from the first one where some phrase (or operator's pattern) could
    /// still begin and match, given what follows so far; the rest goes out. A word still being
    /// written goes out too when it is plain ASCII letters and no phrase could begin with any
    /// word it may still become.
    pub(super) fn safe_cut(
        &mut self,
        normalized: &NormalizedText,
        combined: &str,
        offset: usize,
        frontier: Frontier,
    ) -> usize {
        let pending = &combined[offset..];
        let tokens = &normalized.tokens;
        let Frontier {
            first_pending,
            open_start,
            settled_end,
            unsettled_start,
        } = frontier;
        let open_word = &combined[open_start..];
        let readings = (unsettled_start == open_start
            && settled_end < tokens.len()
            && open_word.bytes().all(|byte| byte.is_ascii_alphabetic()))
        .then(|| self.readings(open_word))
        .flatten();
        let mut hold_from = (first_pending..settled_end)
            .find(|&index| {
                self.could_begin_a_phrase(normalized, index, settled_end, readings.as_deref())
            })
            .and_then(|index| tokens.get(index))
            .map(|token| token.start);
        if hold_from.is_none()
            && let Some(readings) = &readings
            && self.open_word_could_begin_a_phrase(normalized, settled_end, readings)
        {
            hold_from = Some(open_start);
        }
        let cut = match hold_from {
            Some(start) => start.saturating_sub(offset),
            None if readings.is_some() => pending.len(),
            None => unsettled_start.saturating_sub(offset),
        };
        // A guard never holds more than a bounded amount, whatever the reply.
        let mut floor = pending.len().saturating_sub(PENDING_MAX_BYTES);
        while !pending.is_char_boundary(floor) {
            floor += 1;
        }
        if floor > cut {
            self.forced = true;
        }
        cut.max(floor).min(pending.len())
    }

    /// Whether a replace or redact rule's phrase or pattern may begin at token `first_pending`
    /// or later, or an append rule's anywhere, and end within what has arrived. "No" is
    /// certain.
    pub(super) fn may_match(&mut self, normalized: &NormalizedText, first_pending: usize) -> bool {
        let outstanding_appends = self.appends_outstanding();
        // Append rules hold nothing back, so one of their phrases may have begun in released
        // text: their walks start from the first word of the tail.
        let automata = [
            Some((self.prefixes, &mut self.caches, first_pending)),
            outstanding_appends.then_some((self.append_automata, &mut self.append_caches, 0)),
        ];
        let squeezed = normalized.squeezed.as_bytes();
        let plain = normalized.plain.as_str();
        let bytes = plain.as_bytes();
        for (automaton, caches, first_pending) in automata.into_iter().flatten() {
            let plain_from = normalized
                .plain_span(first_pending)
                .map_or(bytes.len(), |(start, _)| start.saturating_sub(1));
            let phrase = (first_pending..normalized.tokens.len()).any(|index| {
                normalized
                    .squeezed_span(index)
                    .and_then(|(start, _)| squeezed.get(start.saturating_sub(1)..))
                    .is_some_and(|text| automaton.phrase_found(caches, text))
            });
            if phrase {
                return true;
            }
            if automaton.has_patterns()
                && (plain_from..bytes.len())
                    .filter(|&at| plain.is_char_boundary(at))
                    .any(|at| {
                        let look_behind = at.checked_sub(1).and_then(|before| bytes.get(before));
                        automaton.pattern_found(caches, &bytes[at..], look_behind.copied())
                    })
            {
                return true;
            }
        }
        false
    }

    /// Where settled text ends in `combined` (normalised as `normalized`; the pending text
    /// starts at `offset`).
    pub(super) fn frontier(
        &self,
        normalized: &NormalizedText,
        combined: &str,
        offset: usize,
    ) -> Frontier {
        let tokens = &normalized.tokens;
        // The open word may have begun in released text, when its start went out early.
        let open_start = combined
            .char_indices()
            .rev()
            .find(|(_, ch)| ch.is_whitespace())
            .map_or(0, |(at, ch)| at + ch.len_utf8());
        let first_pending = tokens.partition_point(|token| token.start < offset);
        let longest_run = self.rules.window_words() * SPELT_RUN_WINDOWS;
        let mut frontier = Frontier {
            first_pending,
            open_start,
            settled_end: tokens.len(),
            unsettled_start: open_start,
        };
        // A run of single letters can only grow while the text ends in one (a word of two letters
        // closes it, whatever else is glued to the letters).
        let run_may_grow = tokens.last().is_some_and(|token| token.spelt);
        for (index, token) in tokens.iter().enumerate().rev() {
            // The open word is bounded by the most the guard holds; a run of letters is followed
            // only so far back.
            let open = token.end > open_start;
            let spelt = run_may_grow
                && index >= first_pending
                && tokens.len() - index <= longest_run
                && token.spelt;
            if !(open || spelt) {
                break;
            }
            frontier.settled_end = index;
            frontier.unsettled_start = frontier.unsettled_start.min(token.start);
        }
        frontier
    }

    /// What a word still being written (plain ASCII letters) may turn out to read as: a word
    /// that begins with these letters, or the expansion of any lexicon word that does (`wo`
    /// may become `wont`, read as `will not`). `None` when there are too many to try.
    fn readings(&self, typed: &str) -> Option<Vec<Reading<'a>>> {
        let typed = typed.to_ascii_lowercase();
        let rules: &'a OutputRules = self.rules;
        let expansions = rules
            .normalizer()
            .lexicon()
            .expansions_starting_with(&typed, MOST_EXPANSIONS)?;
        let mut readings = Vec::with_capacity(expansions.len() + 1);
        // Runs with every chunk that ends inside a word: the lexicon keeps its replacements
        // joined and squeezed, so nothing is built here but the typed word's own reading.
        for expansion in expansions {
            readings.push(Reading {
                squeezed: Cow::Borrowed(&expansion.squeezed),
                plain: Cow::Borrowed(&expansion.plain),
                whole: true,
            });
        }
        readings.push(Reading {
            squeezed: Cow::Owned(squeeze(&typed)),
            plain: Cow::Owned(typed),
            whole: false,
        });
        Some(readings)
    }

    /// Whether a phrase or pattern could begin at settled token `index` and match through the
    /// settled tokens up to `settled_end` (exclusive) and beyond: through any reading of the
    /// word still being written, or else through whatever word comes next.
    fn could_begin_a_phrase(
        &mut self,
        normalized: &NormalizedText,
        index: usize,
        settled_end: usize,
        readings: Option<&[Reading]>,
    ) -> bool {
        let squeezed = normalized.squeezed.as_bytes();
        let Some((start, _)) = normalized.squeezed_span(index) else {
            return false;
        };
        // Squeezed text pads every word with a space on each side, so a walk starts at the space
        // before the word and a finished word keeps the space after it.
        let phrase = match readings {
            None => settled_end
                .checked_sub(1)
                .and_then(|last| normalized.squeezed_span(last))
                .and_then(|(_, end)| squeezed.get(start.saturating_sub(1)..=end))
                .is_some_and(|text| {
                    self.prefixes
                        .phrase_could_continue(&mut self.caches, &[text], false)
                }),
            Some(readings) => normalized
                .squeezed_span(settled_end)
                .and_then(|(open, _)| squeezed.get(start.saturating_sub(1)..open))
                .is_some_and(|text| {
                    readings.iter().any(|reading| {
                        self.prefixes.phrase_could_continue(
                            &mut self.caches,
                            &[text, reading.squeezed.as_bytes()],
                            reading.whole,
                        )
                    })
                }),
        };
        if phrase || !self.prefixes.has_patterns() {
            return phrase;
        }
        let plain = normalized.plain.as_str();
        let bytes = plain.as_bytes();
        let (Some((start, word_end)), Some(text_end)) = (
            normalized.plain_span(index),
            match readings {
                None => settled_end
                    .checked_sub(1)
                    .and_then(|last| normalized.plain_span(last))
                    .map(|(_, end)| end),
                Some(_) => normalized.plain_span(settled_end).map(|(open, _)| open),
            },
        ) else {
            return false;
        };
        // An operator's pattern may begin anywhere in a word, or at the space before it.
        (start.saturating_sub(1)..word_end)
            .filter(|&at| plain.is_char_boundary(at))
            .any(|at| {
                let look_behind = at
                    .checked_sub(1)
                    .and_then(|before| bytes.get(before))
                    .copied();
                let Some(text) = bytes.get(at..text_end) else {
                    return false;
                };
                match readings {
                    None => self.prefixes.pattern_could_continue(
                        &mut self.caches,
                        &[text],
                        look_behind,
                        true,
                    ),
                    Some(readings) => readings.iter().any(|reading| {
                        self.prefixes.pattern_could_continue(
                            &mut self.caches,
                            &[text, reading.plain.as_bytes()],
                            look_behind,
                            reading.whole,
                        )
                    }),
                }
            })
    }

    /// Whether a phrase or pattern could begin with the word still being written (its first
    /// normalised token is `open`), read in any of its `readings`.
    fn open_word_could_begin_a_phrase(
        &mut self,
        normalized: &NormalizedText,
        open: usize,
        readings: &[Reading],
    ) -> bool {
        if readings.iter().any(|reading| {
            self.prefixes.phrase_could_continue(
                &mut self.caches,
                &[b" ", reading.squeezed.as_bytes()],
                reading.whole,
            )
        }) {
            return true;
        }
        if !self.prefixes.has_patterns() {
            return false;
        }
        let bytes = normalized.plain.as_bytes();
        // The byte before the word in plain text is a space when there is a word before it.
        let space_before = normalized
            .plain_span(open)
            .and_then(|(start, _)| start.checked_sub(1))
            .map(|space| {
                (
                    space,
                    space.checked_sub(1).and_then(|at| bytes.get(at)).copied(),
                )
            });
        readings.iter().any(|reading| {
            let word = reading.plain.as_bytes();
            let from_space = space_before.is_some_and(|(_, look_behind)| {
                self.prefixes.pattern_could_continue(
                    &mut self.caches,
                    &[b" ", word],
                    look_behind,
                    reading.whole,
                )
            });
            from_space
                || (0..word.len()).any(|at| {
                    let look_behind = match at.checked_sub(1) {
                        Some(before) => word.get(before).copied(),
                        None => space_before.map(|_| b' '),
                    };
                    self.prefixes.pattern_could_continue(
                        &mut self.caches,
                        &[&word[at..]],
                        look_behind,
                        reading.whole,
                    )
                })
        })
    }
}

/// Where settled text ends: tokens from `settled_end` on (original text from `unsettled_start`
/// on) may still read differently once more of the reply arrives.
pub(super) struct Frontier {
    /// The first token of the pending text.
    pub(super) first_pending: usize,
    /// Where the word still being written starts (the end of the text when there is none).
    pub(super) open_start: usize,
    pub(super) settled_end: usize,
    pub(super) unsettled_start: usize,
}

/// One reading of the word still being written.
struct Reading<'a> {
    /// In the squeezed form phrases are matched against (words joined by single spaces).
    squeezed: Cow<'a, str>,
    /// In the plain form patterns are matched against.
    plain: Cow<'a, str>,
    /// A whole word (a lexicon expansion), rather than the start of one.
    whole: bool,
}
