//! The scenes' language: object phrases, referring expressions and caption templates. The
//! same templates write the text-only corpus, so MLM sees the language of the captions.

use super::layout::{Background, SceneObject, Texture, relation_holds};
use super::vocab::{NUMBER_WORDS, Relation, Shape, article};
use crate::rng::Rng;

/// "small red circle" (`with_size`) or "red circle".
pub(crate) fn describe(object: &SceneObject, with_size: bool) -> String {
    if with_size {
        format!(
            "{} {} {}",
            object.size.name(),
            object.colour.name(),
            object.shape.name()
        )
    } else {
        format!("{} {}", object.colour.name(), object.shape.name())
    }
}

/// "a small red circle", "an orange star".
pub(crate) fn indefinite(object: &SceneObject, with_size: bool) -> String {
    let words = describe(object, with_size);
    format!("{} {words}", article(&words))
}

/// The attribute a question asks about; a referring expression must not give it away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Withhold {
    Nothing,
    Colour,
    Shape,
}

/// The shortest description ("the circle", "the red object", "the large red circle") that
/// picks out `objects[target]` alone, without naming the withheld attribute; `None` if no
/// description does.
pub(crate) fn refer(objects: &[SceneObject], target: usize, withhold: Withhold) -> Option<String> {
    let t = &objects[target];
    // (use size, use colour, use shape)
    let options = [
        (false, false, true),
        (false, true, false),
        (false, true, true),
        (true, false, true),
        (true, true, false),
        (true, true, true),
        (true, false, false),
    ];
    options.iter().find_map(|&(size, colour, shape)| {
        if (colour && withhold == Withhold::Colour) || (shape && withhold == Withhold::Shape) {
            return None;
        }
        let matches = objects
            .iter()
            .filter(|o| {
                (!size || o.size == t.size)
                    && (!colour || o.colour == t.colour)
                    && (!shape || o.shape == t.shape)
            })
            .count();
        (matches == 1).then(|| {
            let mut words = vec!["the"];
            if size {
                words.push(t.size.name());
            }
            if colour {
                words.push(t.colour.name());
            }
            words.push(if shape { t.shape.name() } else { "object" });
            words.join(" ")
        })
    })
}

/// "a red circle, a blue square and a star" style list.
fn join_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn texture_word(background: &Background) -> &'static str {
    match background.texture {
        Texture::Plain => "plain",
        Texture::Noise => "noisy",
        Texture::Stripes => "striped",
        Texture::Checker => "checkered",
    }
}

/// "two circles and a star".
pub(crate) fn count_phrase(objects: &[SceneObject]) -> String {
    let parts: Vec<String> = Shape::ALL
        .iter()
        .filter_map(|&shape| {
            let n = objects.iter().filter(|o| o.shape == shape).count();
            match n {
                0 => None,
                1 => Some(format!("{} {}", article(shape.name()), shape.name())),
                _ => Some(format!("{} {}", NUMBER_WORDS[n], shape.plural())),
            }
        })
        .collect();
    join_list(&parts)
}

/// A listing caption: every object, left to right or in list order.
fn listing(objects: &[SceneObject], background: &Background, rng: &mut Rng) -> String {
    let mut order: Vec<&SceneObject> = objects.iter().collect();
    if rng.bernoulli(0.5) {
        order.sort_by(|a, b| a.x.total_cmp(&b.x));
    }
    // Two objects of one colour and shape are told apart by size when sizes differ.
    let twins = objects.iter().enumerate().any(|(i, a)| {
        objects[i + 1..]
            .iter()
            .any(|b| (a.colour, a.shape) == (b.colour, b.shape))
    });
    let with_size = rng.bernoulli(0.6) || twins;
    let items: Vec<String> = order.iter().map(|o| indefinite(o, with_size)).collect();
    let list = join_list(&items);
    match rng.index(4) {
        0 => list,
        1 => format!("there is {list}"),
        2 => format!("an image of {list}"),
        _ => format!("{list} on a {} background", texture_word(background)),
    }
}

/// A relational caption about one clearly related pair, or `None` for a single object.
fn relational(objects: &[SceneObject], image_size: u32, rng: &mut Rng) -> Option<String> {
    let mut facts = Vec::new();
    for (i, a) in objects.iter().enumerate() {
        for (j, b) in objects.iter().enumerate() {
            for relation in Relation::ALL {
                if i != j && relation_holds(a, b, relation, image_size) == Some(true) {
                    facts.push((a, b, relation));
                }
            }
        }
    }
    let &(a, b, relation) = rng.choose(&facts)?;
    let (sa, sb) = (rng.bernoulli(0.7), rng.bernoulli(0.7));
    let (na, nb) = (indefinite(a, sa), indefinite(b, sb));
    let phrase = relation.phrase();
    Some(match rng.index(3) {
        0 => format!("{na} {phrase} {nb}"),
        1 => format!("{na} is {phrase} {nb}"),
        _ => format!("there is {na} {phrase} {nb}"),
    })
}

/// "a red circle at the top left of the image".
fn placed(objects: &[SceneObject], image_size: u32, rng: &mut Rng) -> String {
    let o = &objects[rng.index(objects.len())];
    let third = |v: f32| (v / image_size as f32 * 3.0).floor().clamp(0.0, 2.0) as usize;
    let vertical = ["top", "middle", "bottom"][third(o.y)];
    let horizontal = ["left", "centre", "right"][third(o.x)];
    let place = match (vertical, horizontal) {
        ("middle", "centre") => "in the centre".to_owned(),
        ("middle", h) => format!("on the {h}"),
        (v, "centre") => format!("at the {v}"),
        (v, h) => format!("at the {v} {h}"),
    };
    format!("{} {place} of the image", indefinite(o, rng.bernoulli(0.5)))
}

fn counting(objects: &[SceneObject], background: &Background, rng: &mut Rng) -> String {
    let groups = count_phrase(objects);
    let n = objects.len();
    let noun = if n == 1 { "object" } else { "objects" };
    match rng.index(3) {
        0 => format!("{groups} on a {} background", texture_word(background)),
        1 => format!("{} {noun}: {groups}", NUMBER_WORDS[n]),
        _ => format!("{groups} on a grey background"),
    }
}

/// Three captions for a scene: a listing, a relation (or the place of a lone object) and a
/// count. Captions name only objects that are in the scene.
pub(crate) fn captions(
    objects: &[SceneObject],
    background: &Background,
    image_size: u32,
    rng: &mut Rng,
) -> Vec<String> {
    let second =
        relational(objects, image_size, rng).unwrap_or_else(|| placed(objects, image_size, rng));
    vec![
        listing(objects, background, rng),
        second,
        counting(objects, background, rng),
    ]
}

/// One caption of a random template, for the text-only corpus.
pub(crate) fn any_caption(
    objects: &[SceneObject],
    background: &Background,
    image_size: u32,
    rng: &mut Rng,
) -> String {
    match rng.index(4) {
        0 => listing(objects, background, rng),
        1 => {
            relational(objects, image_size, rng).unwrap_or_else(|| placed(objects, image_size, rng))
        }
        2 => placed(objects, image_size, rng),
        _ => counting(objects, background, rng),
    }
}
