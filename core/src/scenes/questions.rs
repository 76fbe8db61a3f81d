//! VQA questions with VQAv2-style soft scores: ten simulated annotators, a few of whom answer
//! with a synonym or a near miss; an answer's score is `min(1, count / 3)`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::language::{Withhold, refer};
use super::layout::{SceneObject, relation_holds};
use super::vocab::{
    ANSWER_SYNONYMS, COLOUR_NAMES, Colour, Relation, SHAPE_NAMES, Shape, Size, article,
};
use crate::rng::Rng;

/// Simulated annotators per question, as in VQAv2.
pub const ANNOTATORS: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuestionType {
    Colour,
    Shape,
    Count,
    Existence,
    Relation,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Question {
    #[serde(rename = "type")]
    pub kind: QuestionType,
    pub question: String,
    /// The correct answer, in canonical form (a member of the answer vocabulary).
    pub answer: String,
    /// The ten annotators' answers (canonical, synonyms and a few mistakes).
    pub answers: Vec<String>,
    /// Soft target per distinct answer: `min(1, count / 3)`.
    pub scores: BTreeMap<String, f32>,
}

/// Up to one question of each type (fewer when a type has no unambiguous question, e.g. no
/// relation in a one-object scene). `combos` are the colour–shape combinations the split may
/// mention.
pub(crate) fn questions(
    objects: &[SceneObject],
    combos: &[(Colour, Shape)],
    image_size: u32,
    rng: &mut Rng,
) -> Vec<Question> {
    let mut out = Vec::new();
    let asked = [
        attribute_question(objects, Withhold::Colour, rng),
        attribute_question(objects, Withhold::Shape, rng),
        Some(count_question(objects, combos, rng)),
        Some(existence_question(objects, combos, rng)),
        relation_question(objects, image_size, rng),
    ];
    for (kind, (question, answer)) in asked.into_iter().flatten() {
        let answers = annotate(&answer, kind, rng);
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for a in &answers {
            *counts.entry(a.clone()).or_default() += 1;
        }
        let scores = counts
            .into_iter()
            .map(|(a, n)| (a, (n as f32 / 3.0).min(1.0)))
            .collect();
        out.push(Question {
            kind,
            question,
            answer,
            answers,
            scores,
        });
    }
    out
}

type Asked = (QuestionType, (String, String));

fn attribute_question(objects: &[SceneObject], withhold: Withhold, rng: &mut Rng) -> Option<Asked> {
    let mut order: Vec<usize> = (0..objects.len()).collect();
    rng.shuffle(&mut order);
    let (target, reference) = order
        .into_iter()
        .find_map(|i| refer(objects, i, withhold).map(|r| (i, r)))?;
    let o = &objects[target];
    let form = rng.bernoulli(0.5);
    Some(if withhold == Withhold::Colour {
        let q = if form {
            format!("what colour is {reference}?")
        } else {
            format!("what is the colour of {reference}?")
        };
        (QuestionType::Colour, (q, o.colour.name().to_owned()))
    } else {
        let q = if form {
            format!("what shape is {reference}?")
        } else {
            format!("what is the shape of {reference}?")
        };
        (QuestionType::Shape, (q, o.shape.name().to_owned()))
    })
}

fn count_question(objects: &[SceneObject], combos: &[(Colour, Shape)], rng: &mut Rng) -> Asked {
    // Ask mostly about things present, sometimes about anything the split may mention.
    let (colour, shape) = if rng.bernoulli(0.75) {
        let o = &objects[rng.index(objects.len())];
        (o.colour, o.shape)
    } else {
        *rng.choose(combos).expect("combos is not empty")
    };
    let size = if rng.bernoulli(0.5) {
        Size::Small
    } else {
        Size::Large
    };
    let (target, n) = match rng.index(5) {
        0 => ("objects".to_owned(), objects.len()),
        1 => (
            format!("{} objects", colour.name()),
            objects.iter().filter(|o| o.colour == colour).count(),
        ),
        2 => (
            shape.plural().to_owned(),
            objects.iter().filter(|o| o.shape == shape).count(),
        ),
        3 => (
            format!("{} {}", colour.name(), shape.plural()),
            objects
                .iter()
                .filter(|o| o.colour == colour && o.shape == shape)
                .count(),
        ),
        _ => (
            format!("{} objects", size.name()),
            objects.iter().filter(|o| o.size == size).count(),
        ),
    };
    let q = if rng.bernoulli(0.5) {
        format!("how many {target} are there?")
    } else {
        format!("how many {target} are in the image?")
    };
    (QuestionType::Count, (q, n.to_string()))
}

fn existence_question(objects: &[SceneObject], combos: &[(Colour, Shape)], rng: &mut Rng) -> Asked {
    let yes = rng.bernoulli(0.5);
    let present = |c: Colour, s: Shape| objects.iter().any(|o| o.colour == c && o.shape == s);
    let (colour, shape) = if yes {
        let o = &objects[rng.index(objects.len())];
        (o.colour, o.shape)
    } else {
        let absent: Vec<_> = combos.iter().filter(|&&(c, s)| !present(c, s)).collect();
        **rng
            .choose(&absent)
            .expect("a scene has at most 4 of 8+ combinations")
    };
    let (q, answer) = if rng.bernoulli(0.7) {
        let words = format!("{} {}", colour.name(), shape.name());
        (
            format!("is there {} {words}?", article(&words)),
            present(colour, shape),
        )
    } else {
        let words = shape.name();
        (
            format!("is there {} {words}?", article(words)),
            objects.iter().any(|o| o.shape == shape),
        )
    };
    let answer = if answer { "yes" } else { "no" };
    (QuestionType::Existence, (q, answer.to_owned()))
}

fn relation_question(objects: &[SceneObject], image_size: u32, rng: &mut Rng) -> Option<Asked> {
    let mut pairs = Vec::new();
    for a in 0..objects.len() {
        for b in 0..objects.len() {
            if a == b {
                continue;
            }
            if let (Some(ra), Some(rb)) = (
                refer(objects, a, Withhold::Nothing),
                refer(objects, b, Withhold::Nothing),
            ) {
                for relation in [Relation::LeftOf, Relation::Above] {
                    if let Some(holds) =
                        relation_holds(&objects[a], &objects[b], relation, image_size)
                    {
                        pairs.push((ra.clone(), rb.clone(), relation, holds));
                    }
                }
            }
        }
    }
    let (ra, rb, relation, holds) = rng.choose(&pairs)?.clone();
    let (q, answer) = if rng.bernoulli(0.5) {
        // yes/no, asking the true relation or its opposite equally often
        let asked = if rng.bernoulli(0.5) {
            relation
        } else {
            relation.opposite()
        };
        let truth = holds == (asked == relation);
        (
            format!("is {ra} {} {rb}?", asked.phrase()),
            if truth { "yes" } else { "no" },
        )
    } else if relation == Relation::LeftOf {
        (
            format!("is {ra} to the left or to the right of {rb}?"),
            if holds { "left" } else { "right" },
        )
    } else {
        (
            format!("is {ra} above or below {rb}?"),
            if holds { "above" } else { "below" },
        )
    };
    Some((QuestionType::Relation, (q, answer.to_owned())))
}

/// Ten answers: 0–3 of them noisy (a synonym when there is one, otherwise a near miss), so
/// the canonical answer always scores 1.
fn annotate(answer: &str, kind: QuestionType, rng: &mut Rng) -> Vec<String> {
    let noisy = [0usize, 0, 0, 1, 1, 2, 3][rng.index(7)];
    let mut answers = vec![answer.to_owned(); ANNOTATORS];
    for slot in answers.iter_mut().take(noisy) {
        let synonym = ANSWER_SYNONYMS
            .iter()
            .find(|&&(a, _)| a == answer)
            .map(|&(_, s)| s);
        *slot = match synonym {
            Some(s) if rng.bernoulli(0.6) => s.to_owned(),
            _ => near_miss(answer, kind, rng),
        };
    }
    rng.shuffle(&mut answers);
    answers
}

fn near_miss(answer: &str, kind: QuestionType, rng: &mut Rng) -> String {
    let other = |names: &[&str], rng: &mut Rng| {
        let others: Vec<&&str> = names.iter().filter(|&&n| n != answer).collect();
        (**rng.choose(&others).expect("more than one name")).to_owned()
    };
    match kind {
        QuestionType::Colour => other(&COLOUR_NAMES, rng),
        QuestionType::Shape => other(&SHAPE_NAMES, rng),
        QuestionType::Count => {
            let n: i64 = answer.parse().expect("count answers are numbers");
            let miss = if n == 0 || rng.bernoulli(0.5) {
                n + 1
            } else {
                n - 1
            };
            miss.to_string()
        }
        QuestionType::Existence | QuestionType::Relation => match answer {
            "yes" => "no",
            "no" => "yes",
            "left" => "right",
            "right" => "left",
            "above" => "below",
            _ => "above",
        }
        .to_owned(),
    }
}
