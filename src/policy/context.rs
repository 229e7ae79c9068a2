//! The context engine, in the manner of NegEx and ConText: cue phrases open scopes (negated,
//! historical, hypothetical, someone else) that end at a terminator, a sentence end or a number
//! of words, and a finding inside a scope takes its property.
//!
//! The cues are data (`context.toml`); they are scanned in the same pass as the rules' phrases.

use serde::Serialize;

use super::normalize::{NormalizedText, TokenKind, is_thai};
use super::phrases::Hit;

/// What a context cue does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CueKind {
    Negation(Direction),
    Historical(Direction),
    Hypothetical(Direction),
    Experiencer(Direction),
    FamilyHistory,
    Acute,
    /// Says that an earlier episode is happening again ("now the same pain is back"). Unlike an
    /// acute cue it reaches back across clauses and sentences to the history it follows.
    Recurrence,
    Terminator,
    /// Ends negation scopes only.
    NegationTerminator,
    Figurative,
}

/// Which way a cue's scope runs from the cue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The scope runs forwards from the cue ("no … chest pain").
    Forward,
    /// The scope runs backwards from the cue ("chest pain … ruled out").
    Backward,
    /// The scope is the word just before the cue, in languages that deny after the noun
    /// (Turkish "ateşim yok", "I have no fever"). One word only: "nefes alamıyorum ateşim yok"
    /// denies the fever and leaves the breathing a finding.
    Preceding,
    /// Not a cue: a look-alike that cancels any cue it covers ("no doubt", "not only").
    Pseudo,
}

/// A cue found in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CueHit {
    pub kind: CueKind,
    pub first: usize,
    pub last: usize,
    /// The language the cue is written for, as an index into the policy set's cue languages
    /// (`MessageContext::with_cue_languages`); `None`: every language.
    pub language: Option<usize>,
}

impl CueHit {
    pub fn from_hit(kind: CueKind, hit: &Hit, language: Option<usize>) -> Self {
        Self {
            kind,
            first: hit.first,
            last: hit.last,
            language,
        }
    }
}

/// Whether two language codes name the same language: "ar-Latn" (Arabic typed in Latin
/// letters) is Arabic.
fn same_language(a: &str, b: &str) -> bool {
    let primary = |code: &str| code.split('-').next().unwrap_or_default().to_owned();
    primary(a).eq_ignore_ascii_case(&primary(b))
}

/// When a finding is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Temporality {
    #[default]
    Recent,
    Historical,
    Hypothetical,
}

/// Who a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Experiencer {
    #[default]
    Patient,
    Other,
}

/// The context of one finding, with the cues that decided it (token ranges).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Assessment {
    pub negated: Option<(usize, usize)>,
    pub historical: Option<(usize, usize)>,
    pub hypothetical: Option<(usize, usize)>,
    pub other_experiencer: Option<(usize, usize)>,
    pub family_history: Option<(usize, usize)>,
    pub acute: Option<(usize, usize)>,
    pub figurative: Option<(usize, usize)>,
}

impl Assessment {
    pub fn temporality(&self) -> Temporality {
        if self.hypothetical.is_some() {
            Temporality::Hypothetical
        } else if self.historical.is_some() && self.acute.is_none() {
            Temporality::Historical
        } else {
            Temporality::Recent
        }
    }

    pub fn experiencer(&self) -> Experiencer {
        if self.other_experiencer.is_some() || self.family_history.is_some() {
            Experiencer::Other
        } else {
            Experiencer::Patient
        }
    }
}

/// Cues of one message, prepared once and asked about each finding.
pub struct MessageContext<'a> {
    text: &'a NormalizedText,
    cues: Vec<CueHit>,
    /// For each cue, the sentences of its first and last token: no cue reaches past its
    /// sentence, so a finding in another sentence skips it at once.
    cue_sentences: Vec<(usize, usize)>,
    /// For each token, the index of its sentence.
    sentence: Vec<usize>,
    /// For each token, the index of its clause (sentences split at commas too).
    clause: Vec<usize>,
    /// For each token, whether a terminator cue covers it.
    terminator: Vec<bool>,
    /// For each token, whether a negation-only terminator covers it.
    negation_terminator: Vec<bool>,
    scope_words: usize,
    /// Questions answered "no" ("chest pain? no."): the question's sentence and the answer.
    denied_questions: Vec<(usize, (usize, usize))>,
    /// Words that give a clause after a comma a subject of its own (`clause_subjects`).
    clause_subjects: &'a [String],
    /// The languages cues are written for (`CueHit::language` indexes this).
    cue_languages: &'a [String],
}

impl<'a> MessageContext<'a> {
    pub fn new(text: &'a NormalizedText, mut cues: Vec<CueHit>, scope_words: usize) -> Self {
        let count = text.tokens.len();
        let mut sentence = Vec::with_capacity(count);
        let mut clause = Vec::with_capacity(count);
        let (mut sentence_index, mut clause_index) = (0, 0);
        for token in &text.tokens {
            match token.kind {
                TokenKind::SentenceEnd => {
                    sentence_index += 1;
                    clause_index += 1;
                }
                TokenKind::Punct => clause_index += 1,
                _ => {}
            }
            sentence.push(sentence_index);
            clause.push(clause_index);
        }
        // A pseudo cue cancels every cue of its kind that it covers.
        let pseudo: Vec<CueHit> = cues
            .iter()
            .copied()
            .filter(|cue| direction(cue.kind) == Some(Direction::Pseudo))
            .collect();
        cues.retain(|cue| {
            direction(cue.kind) != Some(Direction::Pseudo)
                && !pseudo.iter().any(|blocker| {
                    same_family(blocker.kind, cue.kind)
                        && blocker.first <= cue.first
                        && cue.last <= blocker.last
                })
        });
        // A denial with nothing after it but punctuation is an interjection ("No, it hurts");
        // a colon after it opens the list it denies ("none of the following: ..."). The same
        // holds for a past marker that closes its clause (Hindi "... hua tha, ..."), while a
        // question goes on across a comma: "what are the signs, that he swallowed a battery".
        cues.retain(|cue| {
            direction(cue.kind) != Some(Direction::Forward)
                || matches!(cue.kind, CueKind::Hypothetical(_))
                || text
                    .tokens
                    .get(cue.last + 1)
                    .is_some_and(|next| matches!(next.kind, TokenKind::Word | TokenKind::Number))
                || text.plain_of(cue.last + 1) == ":"
        });
        let mark = |kind: CueKind| {
            let mut flags = vec![false; count];
            for cue in cues.iter().filter(|cue| cue.kind == kind) {
                for flag in flags.iter_mut().take(cue.last + 1).skip(cue.first) {
                    *flag = true;
                }
            }
            flags
        };
        let terminator = mark(CueKind::Terminator);
        let negation_terminator = mark(CueKind::NegationTerminator);
        let sentence_of = |token: usize| sentence.get(token).copied().unwrap_or(usize::MAX);
        let cue_sentences = cues
            .iter()
            .map(|cue| (sentence_of(cue.first), sentence_of(cue.last)))
            .collect();
        Self {
            text,
            cues,
            cue_sentences,
            sentence,
            clause,
            terminator,
            negation_terminator,
            scope_words,
            denied_questions: Vec::new(),
            clause_subjects: &[],
            cue_languages: &[],
        }
    }

    /// Words that, opening a clause after a comma, give it a subject of its own: a question or
    /// a condition stops there (normalised, one word each).
    pub fn with_clause_subjects(mut self, subjects: &'a [String]) -> Self {
        self.clause_subjects = subjects;
        self
    }

    pub fn with_cue_languages(mut self, languages: &'a [String]) -> Self {
        self.cue_languages = languages;
        self
    }

    /// Whether `cue` speaks to a finding in one of `languages`. A cue written for one language
    /// reaches only findings that may be in that language.
    fn speaks_to(&self, cue: &CueHit, languages: &[&str]) -> bool {
        match cue.language {
            None => true,
            Some(index) => self.cue_languages.get(index).is_some_and(|written_for| {
                languages
                    .iter()
                    .any(|language| same_language(written_for, language))
            }),
        }
    }

    /// Reads the answers in a message that asks and answers its own questions, as people fill
    /// in a checklist: "chest pain? no. breathless? not at all. just tired". A sentence of at
    /// most three words that says no, straight after a question, denies what the question named.
    /// `message` is the text the tokens were read from (their byte ranges point into it).
    /// `no_answers` are the answers that say no, normalised, their words joined by one space.
    pub fn with_answers(mut self, message: &str, no_answers: &[String]) -> Self {
        let tokens = &self.text.tokens;
        for (index, token) in tokens.iter().enumerate() {
            let asks = token.kind == TokenKind::SentenceEnd
                && message
                    .get(token.start..token.end)
                    .is_some_and(|mark| mark.contains('?'));
            let Some(question) = index
                .checked_sub(1)
                .and_then(|before| self.sentence.get(before))
            else {
                continue;
            };
            if !asks {
                continue;
            }
            // The answer: its words, then the end of the message or of its sentence.
            let words = tokens
                .get(index + 1..)
                .unwrap_or_default()
                .iter()
                .take_while(|next| next.kind == TokenKind::Word)
                .count();
            let after = tokens.get(index + 1 + words);
            let answer_ends = after.is_none_or(|next| next.kind != TokenKind::Number);
            // The whole answer says no: "no", "not at all", "para nada". "No bleeding" denies
            // bleeding, not the question.
            let says_no = (1..=3).contains(&words) && {
                let answer = (index + 1..=index + words)
                    .map(|word| self.text.plain_of(word))
                    .collect::<Vec<_>>()
                    .join(" ");
                no_answers.contains(&answer)
            };
            // Only a checklist question, a few words naming a symptom ("any chest pain?"):
            // "took 30 paracetamol, should I go to A&E? no" denies nothing.
            let question_words = (0..index)
                .rev()
                .take_while(|&before| self.sentence.get(before) == Some(question))
                .filter(|&before| {
                    tokens
                        .get(before)
                        .is_some_and(|t| t.kind == TokenKind::Word)
                })
                .count();
            if says_no && answer_ends && question_words <= 4 {
                self.denied_questions
                    .push((*question, (index + 1, index + words)));
            }
        }
        self
    }

    /// The context of a finding at tokens `first..=last`.
    pub fn assess(&self, first: usize, last: usize) -> Assessment {
        self.assess_in(first, last, &[])
    }

    /// As `assess`, for a finding that may be in `languages`: the language of the trigger phrase
    /// that found it, or, for a phrase of no language (a requirement's), those of the message's
    /// triggers. Cues written for another language do not reach it.
    pub fn assess_in(&self, first: usize, last: usize, languages: &[&str]) -> Assessment {
        let mut assessment = Assessment::default();
        let mut own_recurrence = None;
        let mut time_in_clause = false;
        let (Some(&first_sentence), Some(&last_sentence)) =
            (self.sentence.get(first), self.sentence.get(last))
        else {
            return assessment;
        };
        for (cue, &(cue_first, cue_last)) in self.cues.iter().zip(&self.cue_sentences) {
            // Every cue's reach ends at its sentence's end (scopes, family history, acute
            // clauses) or needs an overlap with the finding (figurative speech).
            if cue_last < first_sentence
                || cue_first > last_sentence
                || !self.speaks_to(cue, languages)
            {
                continue;
            }
            // A cue inside the finding's own words never applies to it ("can't breathe").
            if cue.first <= last && first <= cue.last {
                // except that a finding which says the episode is back is not history itself.
                if cue.kind == CueKind::Recurrence {
                    own_recurrence = Some((cue.first, cue.last));
                }
                // A figure of speech discards the triggers it overlaps ("collapsed" in
                // "collapsed in fits of laughter"), except a phrase written with the whole figure
                // inside it and more besides: "back is killing me" is back pain.
                let holds_the_figure = first <= cue.first
                    && cue.last <= last
                    && (first < cue.first || cue.last < last);
                if cue.kind == CueKind::Figurative && !holds_the_figure {
                    assessment.figurative = Some((cue.first, cue.last));
                }
                continue;
            }
            let slot = match cue.kind {
                CueKind::Negation(_) => &mut assessment.negated,
                CueKind::Historical(_) => &mut assessment.historical,
                CueKind::Hypothetical(_) => &mut assessment.hypothetical,
                CueKind::Experiencer(_) => &mut assessment.other_experiencer,
                CueKind::FamilyHistory => {
                    if self.same_sentence(cue.first, first) {
                        assessment.family_history = Some((cue.first, cue.last));
                    }
                    continue;
                }
                CueKind::Acute => {
                    // "right now" is also a terminator, which `same_clause` stops at; for a
                    // question's reach only the comma clause matters.
                    time_in_clause |= self.clause.get(cue.first) == self.clause.get(first);
                    if self.same_clause(cue.first, first) {
                        assessment.acute = Some((cue.first, cue.last));
                    }
                    continue;
                }
                CueKind::Figurative
                | CueKind::Terminator
                | CueKind::NegationTerminator
                | CueKind::Recurrence => continue,
            };
            if slot.is_none() && self.in_scope(cue, first, last) {
                *slot = Some((cue.first, cue.last));
            }
        }
        // "He had intussusception when he was 1 and is doing the exact same thing now": the
        // earlier episode, whether told as history or as someone's family history, is back.
        if (assessment.historical.is_some() || assessment.family_history.is_some())
            && assessment.acute.is_none()
            && let Some(recurrence) = own_recurrence.or_else(|| self.recurrence_after(last))
        {
            assessment.acute = Some(recurrence);
            assessment.family_history = None;
        }
        // "How do you tell if it's a stroke, his face is drooping right now": the question
        // asks in general, and the clause after it says the finding is happening. A time cue in
        // the question's own clause ("what if I get chest pain again") leaves it a question.
        if let Some((cue_first, _)) = assessment.hypothetical
            && time_in_clause
            && self.clause.get(cue_first) != self.clause.get(first)
        {
            assessment.hypothetical = None;
        }
        if assessment.negated.is_none() {
            assessment.negated = self
                .denied_questions
                .iter()
                .find(|(question, _)| *question == first_sentence && *question == last_sentence)
                .map(|&(_, answer)| answer);
        }
        assessment
    }

    /// A recurrence cue after a past finding, itself current and not denied: "had a clot on my
    /// lung in 2019 and now I've got the same pain" makes the clot current, while "what if it is
    /// the same thing again" and "my dad had the same thing years ago" do not. Only cues later in
    /// the message count: the history has to be told before it can be said to be back.
    fn recurrence_after(&self, last: usize) -> Option<(usize, usize)> {
        self.cues
            .iter()
            .filter(|cue| cue.kind == CueKind::Recurrence && cue.first > last)
            .find(|cue| {
                let own = self.assess(cue.first, cue.last);
                own.negated.is_none() && own.temporality() == Temporality::Recent
            })
            .map(|cue| (cue.first, cue.last))
    }

    /// A negation standing in a gap of the finding's own phrase, before one of its written words:
    /// "lips are not going blue" for `lips ** going blue`. `fixed` says which tokens are the
    /// phrase's written words; a cue that is one of them belongs to the phrase ("can't stop
    /// thinking about killing myself") and [`MessageContext::assess`] already set it aside.
    pub fn negation_in_gap(
        &self,
        first: usize,
        last: usize,
        languages: &[&str],
        fixed: impl Fn(usize) -> bool,
    ) -> Option<(usize, usize)> {
        self.cues
            .iter()
            .filter(|cue| cue.kind == CueKind::Negation(Direction::Forward))
            .filter(|cue| self.speaks_to(cue, languages))
            .filter(|cue| first < cue.first && cue.last < last)
            .find(|cue| {
                (cue.first..=cue.last).all(|token| !fixed(token))
                    && (cue.last + 1..=last).any(&fixed)
                    && !self
                        .negation_terminator
                        .get(cue.last + 1..=last)
                        .is_some_and(|between| between.iter().any(|&flag| flag))
            })
            .map(|cue| (cue.first, cue.last))
    }

    fn same_sentence(&self, a: usize, b: usize) -> bool {
        self.sentence.get(a) == self.sentence.get(b)
    }

    /// Same comma-delimited clause, with no terminator between: "years ago but doing well now"
    /// keeps "now" away from what came before "but".
    fn same_clause(&self, a: usize, b: usize) -> bool {
        let (low, high) = (a.min(b), a.max(b));
        self.clause.get(a) == self.clause.get(b)
            && !self
                .terminator
                .get(low..=high)
                .is_some_and(|between| between.iter().any(|&flag| flag))
    }

    /// A comma followed by a subject of its own between `from` and `to`: a question or a
    /// condition does not reach past it. In "can you check if he is breathing ok, he collapsed and
    /// is not responding" the collapse is told, not asked about. Walked only within a cue's scope.
    fn new_subject_between(&self, from: usize, to: usize) -> bool {
        (from + 1..to).any(|index| {
            self.text.plain_of(index) == ","
                && self
                    .clause_subjects
                    .iter()
                    .any(|subject| subject == self.text.plain_of(index + 1))
        })
    }

    /// A denial listed both ways ("nie mam": "nie mam gorączki" and "gorączki nie mam") that
    /// opens a clause denies what follows it, not the clause before the comma: in "mam krew w
    /// moczu od wczoraj, nie mam gorączki" the blood stays a finding.
    fn opens_a_denial(&self, cue: &CueHit) -> bool {
        cue.first > 0
            && self.text.plain_of(cue.first - 1) == ","
            && self.cues.iter().any(|other| {
                other.kind == CueKind::Negation(Direction::Forward)
                    && (other.first, other.last) == (cue.first, cue.last)
            })
    }

    fn in_scope(&self, cue: &CueHit, first: usize, last: usize) -> bool {
        let negation = matches!(cue.kind, CueKind::Negation(_));
        match direction(cue.kind) {
            Some(Direction::Forward) if cue.last < first => {
                // A colon after the cue opens a list that it covers to the sentence's end: "not
                // experiencing any of these: dizziness, nausea, sweating, crushing chest pain".
                let scope_words = if self.text.plain_of(cue.last + 1) == ":" {
                    usize::MAX
                } else {
                    self.scope_words
                };
                self.reaches(cue.last + 1, first, negation, scope_words, |index| {
                    index + 1
                }) && !(matches!(cue.kind, CueKind::Hypothetical(_))
                    && self.new_subject_between(cue.last, first))
            }
            Some(Direction::Backward) if last < cue.first && !self.opens_a_denial(cue) => self
                .reaches(cue.first - 1, last, negation, self.scope_words, |index| {
                    index.wrapping_sub(1)
                }),
            Some(Direction::Preceding) if last < cue.first => {
                self.reaches(cue.first - 1, last, negation, 0, |index| {
                    index.wrapping_sub(1)
                })
            }
            _ => false,
        }
    }

    /// Walks from `from` towards `target`, stopping at sentence ends, terminators and once more
    /// than `scope_words` words lie between.
    fn reaches(
        &self,
        from: usize,
        target: usize,
        negation: bool,
        scope_words: usize,
        step: impl Fn(usize) -> usize,
    ) -> bool {
        let mut index = from;
        let mut words = 0;
        let mut thai_letters = 0;
        loop {
            let Some(token) = self.text.tokens.get(index) else {
                return false;
            };
            if token.kind == TokenKind::SentenceEnd
                || self.terminator[index]
                || (negation && self.negation_terminator[index])
            {
                return false;
            }
            if index == target {
                return true;
            }
            if token.kind == TokenKind::Word {
                // A Thai letter is a token of its own and a Thai word is about four of them: a
                // scope of eight words reaches about thirty-two Thai letters.
                let thai = self.text.plain_of(index).starts_with(is_thai);
                thai_letters += usize::from(thai);
                if !thai || thai_letters % THAI_LETTERS_PER_WORD == 1 {
                    words += 1;
                }
                if words > scope_words {
                    return false;
                }
            }
            index = step(index);
        }
    }
}

/// About how many letters a Thai word has: Thai is read a letter at a time (see the normaliser).
const THAI_LETTERS_PER_WORD: usize = 4;

fn direction(kind: CueKind) -> Option<Direction> {
    match kind {
        CueKind::Negation(direction)
        | CueKind::Historical(direction)
        | CueKind::Hypothetical(direction)
        | CueKind::Experiencer(direction) => Some(direction),
        _ => None,
    }
}

fn same_family(a: CueKind, b: CueKind) -> bool {
    std::mem::discriminant(&a) == std::mem::discriminant(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::normalize::Normalizer;

    fn context_of(text: &str, cues: &[(CueKind, &str)], finding: &str) -> Assessment {
        let normalizer = Normalizer::default();
        let normalized = normalizer.normalize(text);
        let find = |phrase: &str| {
            let needle = format!(" {} ", normalizer.normalize(phrase).squeezed.trim());
            let at = normalized.squeezed.find(&needle)?;
            normalized.token_range(at + 1, at + needle.len() - 1, true)
        };
        let hits = cues
            .iter()
            .filter_map(|(kind, phrase)| {
                let (first, last) = find(phrase)?;
                Some(CueHit {
                    kind: *kind,
                    first,
                    last,
                    language: None,
                })
            })
            .collect();
        let no_answers = ["no", "nope", "nein", "not at all", "para nada"].map(String::from);
        let subjects = ["he", "she", "i"].map(String::from);
        let context = MessageContext::new(&normalized, hits, 8)
            .with_answers(text, &no_answers)
            .with_clause_subjects(&subjects);
        let (first, last) = find(finding).expect("finding present");
        context.assess(first, last)
    }

    const NO: (CueKind, &str) = (CueKind::Negation(Direction::Forward), "no");
    const BUT: (CueKind, &str) = (CueKind::Terminator, "but");

    #[test]
    fn a_cue_written_for_one_language_reaches_only_its_findings() {
        let normalized = Normalizer::default().normalize("mimba ni wiki 38 na damu nyingi");
        // Spanish "ni" (nor), written for Spanish, in a Swahili message ("the pregnancy is 38
        // weeks and a lot of blood").
        let ni = CueHit {
            kind: CueKind::Negation(Direction::Forward),
            first: 1,
            last: 1,
            language: Some(0),
        };
        let languages = ["es".to_owned()];
        let context = MessageContext::new(&normalized, vec![ni], 8).with_cue_languages(&languages);
        assert!(context.assess_in(5, 6, &["sw"]).negated.is_none());
        assert!(context.assess_in(5, 6, &["es"]).negated.is_some());
        assert!(
            context.assess_in(5, 6, &["es-419"]).negated.is_some(),
            "a regional code is the same language"
        );
        assert!(
            context.assess_in(5, 6, &["sw", "es"]).negated.is_some(),
            "a phrase of no language in a message with Spanish triggers"
        );
        // A phrase of no language in a message with no trigger of the cue's language: "mi ni
        // oyun", "I am pregnant", is no denial of the pregnancy.
        assert!(context.assess_in(5, 6, &[]).negated.is_none());
    }

    #[test]
    fn a_denial_after_the_noun_reaches_only_the_word_before_it() {
        let yok = (CueKind::Negation(Direction::Preceding), "yok");
        let text = "nefes alamıyorum ateşim yok";
        // The finding is looked up in the normal form, where "ı" and "ş" are folded.
        assert!(context_of(text, &[yok], "atesim").negated.is_some());
        assert!(context_of(text, &[yok], "alamiyorum").negated.is_none());
    }

    #[test]
    fn a_denial_listed_both_ways_that_opens_a_clause_denies_only_what_follows() {
        let before = (CueKind::Negation(Direction::Forward), "nie mam");
        let after = (CueKind::Negation(Direction::Backward), "nie mam");
        let text = "mam krew w moczu od wczoraj, nie mam goraczki";
        assert!(context_of(text, &[before, after], "krew").negated.is_none());
        assert!(
            context_of(text, &[before, after], "goraczki")
                .negated
                .is_some()
        );
        let behind = "krwi w moczu nie mam";
        assert!(
            context_of(behind, &[before, after], "krwi")
                .negated
                .is_some()
        );
        let ruled_out = (CueKind::Negation(Direction::Backward), "ruled out");
        let english = "chest pain, ruled out";
        assert!(
            context_of(english, &[ruled_out], "chest pain")
                .negated
                .is_some(),
            "a denial listed only after the noun still looks back"
        );
    }

    #[test]
    fn a_scope_reaches_as_many_thai_words_as_words_of_other_languages() {
        let last_year = (CueKind::Historical(Direction::Forward), "เมื่อปีที่แล้ว");
        // "Last year mum's sugar dropped until she passed out": fifteen letters, four words.
        let text = "เมื่อปีที่แล้วแม่น้ำตาลต่ำจนหมดสติ";
        assert!(context_of(text, &[last_year], "หมดสติ").historical.is_some());
        let far = "เมื่อปีที่แล้วแม่น้ำตาลต่ำจนต้องไปโรงพยาบาลหลายวันและตอนนี้หมดสติ";
        assert!(context_of(far, &[last_year], "หมดสติ").historical.is_none());
    }

    #[test]
    fn negation_reaches_forward_until_a_terminator() {
        let negated = context_of("no fever, cough or rash", &[NO], "rash");
        assert!(negated.negated.is_some());
        let kept = context_of("no fever but a rash", &[NO, BUT], "rash");
        assert!(kept.negated.is_none());
    }

    #[test]
    fn a_question_answered_no_denies_what_it_asked() {
        let answered = |text: &str, finding: &str| context_of(text, &[], finding).negated.is_some();
        assert!(answered(
            "chest pain? no. breathless? no. just tired",
            "chest pain"
        ));
        assert!(answered(
            "chest pain? no. breathless? no. just tired",
            "breathless"
        ));
        assert!(answered("any chest pain? Nope", "chest pain"));
        assert!(answered(
            "chest pain? not at all, just a cough",
            "chest pain"
        ));
        assert!(answered(
            "dolor en el pecho? para nada",
            "dolor en el pecho"
        ));
        // Four words are an answer of their own, not a checklist's no.
        assert!(!answered("chest pain? not at all sure", "chest pain"));
        assert!(!answered("chest pain? yes, crushing", "chest pain"));
        assert!(!answered(
            "is this chest pain? no idea what to do, it is crushing",
            "chest pain"
        ));
        assert!(!answered("chest pain. no. it is real", "chest pain"));
        assert!(!answered(
            "took two apixaban instead of one, do i need to do anything? no bleeding",
            "took two apixaban"
        ));
        assert!(!answered(
            "took 30 paracetamol, should i go to hospital? no.",
            "took 30 paracetamol"
        ));
    }

    #[test]
    fn a_colon_after_a_negation_opens_a_list_it_covers() {
        let cue = (
            CueKind::Negation(Direction::Forward),
            "not experiencing any of these",
        );
        let text = "not experiencing any of these: dizziness, nausea, sweating, jaw pain, a bad headache, feeling faint, crushing chest pain";
        assert!(
            context_of(text, &[cue], "crushing chest pain")
                .negated
                .is_some()
        );
        let without = "not experiencing any of these dizziness nausea sweating jaw pain a bad headache feeling faint crushing chest pain";
        assert!(
            context_of(without, &[cue], "crushing chest pain")
                .negated
                .is_none()
        );
    }

    #[test]
    fn negation_stops_at_the_sentence_end() {
        let kept = context_of("no. rash now", &[NO], "rash");
        assert!(kept.negated.is_none());
    }

    #[test]
    fn an_interjection_is_not_a_negation() {
        let kept = context_of("no , the rash is spreading", &[NO], "rash");
        assert!(kept.negated.is_none());
    }

    #[test]
    fn a_question_goes_on_across_a_comma() {
        let signs = (
            CueKind::Hypothetical(Direction::Forward),
            "what are the signs",
        );
        let asked = context_of(
            "what are the signs , that he swallowed a battery",
            &[signs],
            "swallowed a battery",
        );
        assert_eq!(asked.temporality(), Temporality::Hypothetical);
    }

    #[test]
    fn a_question_stops_at_a_comma_that_opens_a_told_clause() {
        let check = (CueKind::Hypothetical(Direction::Forward), "if he");
        let told = context_of(
            "can you check if he is ok , he collapsed and is not responding",
            &[check],
            "not responding",
        );
        assert_eq!(told.temporality(), Temporality::Recent);
        let asked = context_of(
            "what do i do if he is not responding , breathing slowly",
            &[check],
            "breathing slowly",
        );
        assert_eq!(asked.temporality(), Temporality::Hypothetical);
    }

    #[test]
    fn backward_cues_look_back() {
        let cue = (CueKind::Negation(Direction::Backward), "ruled out");
        let negated = context_of("stroke was ruled out", &[cue], "stroke");
        assert!(negated.negated.is_some());
    }

    #[test]
    fn pseudo_cues_cancel_the_cue_they_cover() {
        let pseudo = (CueKind::Negation(Direction::Pseudo), "not sure");
        let not = (CueKind::Negation(Direction::Forward), "not");
        let kept = context_of(
            "not sure if this is chest pain",
            &[pseudo, not],
            "chest pain",
        );
        assert!(kept.negated.is_none());
    }

    #[test]
    fn an_acute_cue_in_the_same_clause_overrides_history() {
        let used_to = (CueKind::Historical(Direction::Forward), "used to");
        let again = (CueKind::Acute, "again");
        let now = context_of(
            "i used to cut and i am cuting again",
            &[used_to, again],
            "cuting",
        );
        assert_eq!(now.temporality(), Temporality::Recent);
        let then = context_of("i used to cut", &[used_to, again], "cut");
        assert_eq!(then.temporality(), Temporality::Historical);
    }

    #[test]
    fn a_time_cue_in_a_later_clause_makes_a_question_current() {
        let tell_if = (
            CueKind::Hypothetical(Direction::Forward),
            "how do you tell if",
        );
        let right_now = (CueKind::Acute, "right now");
        let again = (CueKind::Acute, "again");
        // As in the shipped cues, "right now" also ends a clause.
        let ends = (CueKind::Terminator, "right now");
        let cues = [tell_if, right_now, again, ends];
        let assess = |text: &str, finding: &str| context_of(text, &cues, finding).temporality();
        let drooping_now = "how do you tell if its a stroke , his face is drooping right now";
        assert_eq!(
            assess(drooping_now, "face is drooping"),
            Temporality::Recent
        );
        assert_eq!(
            assess(drooping_now, "stroke"),
            Temporality::Hypothetical,
            "the question's own finding stays a question"
        );
        assert_eq!(
            assess(
                "how do you tell if the chest pain is back again",
                "chest pain"
            ),
            Temporality::Hypothetical
        );
        assert_eq!(
            assess(
                "how do you tell if its a stroke , his face is drooping",
                "face is drooping"
            ),
            Temporality::Hypothetical
        );
    }

    #[test]
    fn a_recurrence_later_in_the_message_makes_the_history_current() {
        let ago = (CueKind::Historical(Direction::Backward), "years ago");
        let same = (CueKind::Recurrence, "the same pain");
        let suppose = (CueKind::Hypothetical(Direction::Forward), "what if");
        let never = (CueKind::Negation(Direction::Forward), "not");
        let cues = [ago, same, suppose, never];
        let assess = |text: &str| context_of(text, &cues, "clot").temporality();
        assert_eq!(
            assess("had a clot 2 years ago. now i have the same pain"),
            Temporality::Recent
        );
        assert_eq!(
            assess("i have the same pain as my mum. had a clot 2 years ago"),
            Temporality::Historical,
            "a recurrence told before the history is not about it"
        );
        assert_eq!(
            assess("had a clot 2 years ago. what if i get the same pain"),
            Temporality::Historical
        );
        assert_eq!(
            assess("had a clot 2 years ago. not the same pain at all"),
            Temporality::Historical
        );
        assert_eq!(assess("had a clot 2 years ago"), Temporality::Historical);
    }

    #[test]
    fn a_figure_discards_what_it_overlaps_but_not_a_phrase_that_holds_it_whole() {
        // Cues and findings are written squeezed, as the phrase set matches them.
        let figure = (CueKind::Figurative, "is kiling me");
        let idiom = context_of("this essay is killing me", &[figure], "kiling me");
        assert!(idiom.figurative.is_some(), "the trigger is all figure");
        let partly = context_of("my back is killing me", &[figure], "my back is");
        assert!(
            partly.figurative.is_some(),
            "overlapping the figure's start"
        );
        let pain = context_of("my back is killing me", &[figure], "back is kiling me");
        assert!(
            pain.figurative.is_none(),
            "the phrase names the back the figure is about"
        );
        let laughing = (CueKind::Figurative, "morire dala vergogna");
        let shame = context_of("voglio morire dalla vergogna", &[laughing], "voglio morire");
        assert!(
            shame.figurative.is_some(),
            "a trigger reaching into the figure from before it"
        );
    }
}
