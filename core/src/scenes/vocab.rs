//! The closed world of the scenes: shapes, colours, sizes, relations, the held-out
//! colour–shape combinations and the VQA answer vocabulary.

use serde::{Deserialize, Serialize};

/// An object's shape. Its index + 1 is its segmentation class (0 is background) and its index
/// is its classification label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    Circle,
    Square,
    Triangle,
    Diamond,
    Star,
}

impl Shape {
    pub const ALL: [Shape; 5] = [
        Shape::Circle,
        Shape::Square,
        Shape::Triangle,
        Shape::Diamond,
        Shape::Star,
    ];

    pub fn name(self) -> &'static str {
        SHAPE_NAMES[self.index()]
    }

    pub fn plural(self) -> &'static str {
        ["circles", "squares", "triangles", "diamonds", "stars"][self.index()]
    }

    /// The classification label (index into [`CLASS_NAMES`]).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The segmentation class (index into [`SEGMENTATION_CLASSES`]); 0 is background.
    pub fn mask_class(self) -> u8 {
        self as u8 + 1
    }
}

/// Shape names in label order.
pub const SHAPE_NAMES: [&str; 5] = ["circle", "square", "triangle", "diamond", "star"];

/// Classification classes: the shape of the largest object.
pub const CLASS_NAMES: [&str; 5] = SHAPE_NAMES;

/// Segmentation classes: mask value `v` means `SEGMENTATION_CLASSES[v]`.
pub const SEGMENTATION_CLASSES: [&str; 6] = [
    "background",
    "circle",
    "square",
    "triangle",
    "diamond",
    "star",
];

/// A named colour with saturated, well separated RGB values (they must stay apart at 64 px
/// after antialiasing and on any of the grey backgrounds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Colour {
    Red,
    Green,
    Blue,
    Yellow,
    Purple,
    Orange,
    Cyan,
    Brown,
}

impl Colour {
    pub const ALL: [Colour; 8] = [
        Colour::Red,
        Colour::Green,
        Colour::Blue,
        Colour::Yellow,
        Colour::Purple,
        Colour::Orange,
        Colour::Cyan,
        Colour::Brown,
    ];

    pub fn name(self) -> &'static str {
        COLOUR_NAMES[self as usize]
    }

    pub fn rgb(self) -> [u8; 3] {
        [
            [220, 40, 40],
            [40, 170, 60],
            [40, 80, 225],
            [245, 215, 40],
            [145, 60, 195],
            [250, 140, 30],
            [40, 205, 215],
            [125, 75, 35],
        ][self as usize]
    }
}

/// Colour names in enum order.
pub const COLOUR_NAMES: [&str; 8] = [
    "red", "green", "blue", "yellow", "purple", "orange", "cyan", "brown",
];

/// Size category. The precise size is continuous; see the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    Small,
    Large,
}

impl Size {
    pub fn name(self) -> &'static str {
        match self {
            Size::Small => "small",
            Size::Large => "large",
        }
    }
}

/// Spatial relations between two objects (by centres; see `Relation::holds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    LeftOf,
    RightOf,
    Above,
    Below,
}

impl Relation {
    pub const ALL: [Relation; 4] = [
        Relation::LeftOf,
        Relation::RightOf,
        Relation::Above,
        Relation::Below,
    ];

    /// The words used in captions and questions.
    pub fn phrase(self) -> &'static str {
        match self {
            Relation::LeftOf => "to the left of",
            Relation::RightOf => "to the right of",
            Relation::Above => "above",
            Relation::Below => "below",
        }
    }

    pub fn opposite(self) -> Relation {
        match self {
            Relation::LeftOf => Relation::RightOf,
            Relation::RightOf => Relation::LeftOf,
            Relation::Above => Relation::Below,
            Relation::Below => Relation::Above,
        }
    }
}

/// Relation names as written in `dataset.json`.
pub const RELATION_NAMES: [&str; 4] = ["left of", "right of", "above", "below"];

/// The held-out colour–shape combinations of the compositional split: one per colour, each
/// shape held out with one or two colours (colour `i` with shape `(i + 2) mod 5`), i.e. 8 of
/// the 40 combinations. Every colour and every shape still occurs in training, in other
/// combinations. Train/val/test scenes, captions, questions and the text corpus never
/// contain them; every object of a compositional scene is one of them.
pub const HELD_OUT_COMBOS: [(Colour, Shape); 8] = [
    (Colour::Red, Shape::Triangle),
    (Colour::Green, Shape::Diamond),
    (Colour::Blue, Shape::Star),
    (Colour::Yellow, Shape::Circle),
    (Colour::Purple, Shape::Square),
    (Colour::Orange, Shape::Triangle),
    (Colour::Cyan, Shape::Diamond),
    (Colour::Brown, Shape::Star),
];

/// Whether a colour–shape combination belongs to the compositional split.
pub fn is_held_out(colour: Colour, shape: Shape) -> bool {
    HELD_OUT_COMBOS.contains(&(colour, shape))
}

/// All combinations that are not held out (32), in colour-major order.
pub fn seen_combos() -> Vec<(Colour, Shape)> {
    Colour::ALL
        .iter()
        .flat_map(|&c| Shape::ALL.iter().map(move |&s| (c, s)))
        .filter(|&(c, s)| !is_held_out(c, s))
        .collect()
}

/// Answer words that simulated annotators use besides the canonical ones (VQAv2 answers are
/// free text; a few synonyms make the soft scores non-trivial).
pub const ANSWER_SYNONYMS: [(&str, &str); 10] = [
    ("purple", "violet"),
    ("cyan", "turquoise"),
    ("diamond", "rhombus"),
    ("square", "box"),
    ("yes", "yeah"),
    ("0", "none"),
    ("1", "one"),
    ("2", "two"),
    ("3", "three"),
    ("4", "four"),
];

/// Number words used in text ("two circles"); index = number.
pub const NUMBER_WORDS: [&str; 6] = ["zero", "one", "two", "three", "four", "five"];

/// The VQA answer vocabulary, sorted and without duplicates: colours, shapes, counts 0–5,
/// yes/no, left/right/above/below and the annotators' synonyms. The VQA head's output `i`
/// scores `answer_vocabulary()[i]`.
pub fn answer_vocabulary() -> Vec<&'static str> {
    let mut answers: Vec<&'static str> = Vec::new();
    answers.extend(COLOUR_NAMES);
    answers.extend(SHAPE_NAMES);
    answers.extend(["0", "1", "2", "3", "4", "5"]);
    answers.extend(["yes", "no", "left", "right", "above", "below"]);
    answers.extend(ANSWER_SYNONYMS.iter().map(|&(_, s)| s));
    answers.sort_unstable();
    answers.dedup();
    answers
}

/// The indefinite article for a word ("an orange circle").
pub(crate) fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_out_combos_cover_every_colour_and_shape_and_leave_them_seen() {
        assert_eq!(seen_combos().len(), 32);
        for c in Colour::ALL {
            assert!(HELD_OUT_COMBOS.iter().any(|&(hc, _)| hc == c));
            assert!(seen_combos().iter().any(|&(sc, _)| sc == c));
        }
        for s in Shape::ALL {
            assert!(HELD_OUT_COMBOS.iter().any(|&(_, hs)| hs == s));
            assert!(seen_combos().iter().any(|&(_, ss)| ss == s));
        }
    }

    #[test]
    fn answer_vocabulary_is_sorted_and_contains_synonyms() {
        let v = answer_vocabulary();
        assert!(v.windows(2).all(|w| w[0] < w[1]));
        for (a, b) in ANSWER_SYNONYMS {
            assert!(v.contains(&a) && v.contains(&b));
        }
    }
}
