//! NLVR2-style items: two scenes of a split, a statement about the pair, true or false. The
//! label is fixed first (alternating within each pair of items) and a statement with that
//! truth value is searched for, so labels are balanced by construction.

use serde::{Deserialize, Serialize};

use super::layout::{SceneObject, relation_holds};
use super::vocab::{Colour, NUMBER_WORDS, Relation, Shape, article};
use crate::rng::Rng;

/// One NLVR2 item. `left` and `right` are keys of scenes of the same split (the images are in
/// that split's shards).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nlvr2Item {
    pub id: String,
    pub split: String,
    pub left: String,
    pub right: String,
    pub left_index: u64,
    pub right_index: u64,
    pub statement: String,
    pub label: bool,
}

/// Statements tried per scene pair before another pair is drawn.
const STATEMENT_TRIES: usize = 48;

/// Searches for a statement about (`left`, `right`) whose truth is `want`; `None` if none of
/// the tries has that truth value.
pub(crate) fn statement_with_label(
    left: &[SceneObject],
    right: &[SceneObject],
    combos: &[(Colour, Shape)],
    image_size: u32,
    want: bool,
    rng: &mut Rng,
) -> Option<String> {
    (0..STATEMENT_TRIES).find_map(|_| {
        let (text, truth) = statement(left, right, combos, image_size, rng);
        (truth == Some(want)).then_some(text)
    })
}

fn has(objects: &[SceneObject], colour: Option<Colour>, shape: Option<Shape>) -> usize {
    objects
        .iter()
        .filter(|o| colour.is_none_or(|c| o.colour == c) && shape.is_none_or(|s| o.shape == s))
        .count()
}

fn a(words: &str) -> String {
    format!("{} {words}", article(words))
}

/// A random statement and its truth value (`None` when the pair makes it ambiguous).
fn statement(
    left: &[SceneObject],
    right: &[SceneObject],
    combos: &[(Colour, Shape)],
    image_size: u32,
    rng: &mut Rng,
) -> (String, Option<bool>) {
    let &(colour, shape) = rng.choose(combos).expect("combos is not empty");
    let (side, objects) = if rng.bernoulli(0.5) {
        ("left", left)
    } else {
        ("right", right)
    };
    match rng.index(8) {
        0 => {
            let words = format!("{} {}", colour.name(), shape.name());
            (
                format!("the {side} image contains {}", a(&words)),
                Some(has(objects, Some(colour), Some(shape)) > 0),
            )
        }
        1 => {
            let n = rng.range_inclusive(1, 3) as usize;
            let noun = if n == 1 { shape.name() } else { shape.plural() };
            (
                format!(
                    "the {side} image contains exactly {} {noun}",
                    NUMBER_WORDS[n]
                ),
                Some(has(objects, None, Some(shape)) == n),
            )
        }
        2 => (
            format!("both images contain {}", a(shape.name())),
            Some(has(left, None, Some(shape)) > 0 && has(right, None, Some(shape)) > 0),
        ),
        3 => (
            format!("exactly one image contains {} object", a(colour.name())),
            Some((has(left, Some(colour), None) > 0) != (has(right, Some(colour), None) > 0)),
        ),
        4 => {
            if rng.bernoulli(0.5) {
                (
                    "the left image contains more objects than the right image".to_owned(),
                    Some(left.len() > right.len()),
                )
            } else {
                (
                    "the left image contains fewer objects than the right image".to_owned(),
                    Some(left.len() < right.len()),
                )
            }
        }
        5 => {
            let total = left.len() + right.len();
            let n = (total as i64 + rng.range_inclusive(-1, 1)).max(2) as usize;
            let words = [
                "", "", "two", "three", "four", "five", "six", "seven", "eight", "nine",
            ];
            (
                format!(
                    "there are exactly {} objects in the two images together",
                    words[n]
                ),
                Some(total == n),
            )
        }
        6 => (
            format!("neither image contains {}", a(shape.name())),
            Some(has(left, None, Some(shape)) == 0 && has(right, None, Some(shape)) == 0),
        ),
        _ => {
            let other = Shape::ALL[rng.index(Shape::ALL.len())];
            let relation = Relation::ALL[rng.index(Relation::ALL.len())];
            // True if some pair clearly stands in the relation; false only if no pair even
            // ambiguously does.
            let mut truth = Some(false);
            for (i, x) in objects.iter().enumerate() {
                for (j, y) in objects.iter().enumerate() {
                    if i == j || x.shape != shape || y.shape != other {
                        continue;
                    }
                    match relation_holds(x, y, relation, image_size) {
                        Some(true) => truth = Some(true),
                        None if truth == Some(false) => truth = None,
                        _ => {}
                    }
                }
            }
            (
                format!(
                    "in the {side} image there is {} {} {}",
                    a(shape.name()),
                    relation.phrase(),
                    a(other.name())
                ),
                truth,
            )
        }
    }
}
