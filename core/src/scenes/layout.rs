//! Where the objects go: sizes, positions and the geometry the renderer, the captions and
//! the questions all read.

use serde::{Deserialize, Serialize};

use super::vocab::{Colour, Relation, Shape, Size};
use crate::rng::Rng;

/// One object of a scene. Lengths are in pixels of the rendered image; `y` grows downwards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SceneObject {
    pub shape: Shape,
    pub colour: Colour,
    pub size: Size,
    /// Centre (the centroid of the shape).
    pub x: f32,
    pub y: f32,
    /// Equivalent radius: every shape is scaled so its area is `π · scale²`, which makes
    /// "small", "large" and "largest" mean the same thing for a star and for a circle.
    pub scale: f32,
    /// Circumradius around the centre; objects' circumcircles never intersect.
    pub extent: f32,
    /// Tight bounding box `[x_min, y_min, x_max, y_max]` of the shape, in pixels.
    pub bbox: [f32; 4],
}

impl SceneObject {
    /// The object's area in square pixels.
    pub fn area(&self) -> f32 {
        std::f32::consts::PI * self.scale * self.scale
    }

    /// Outline as a polygon (`None` for a circle), vertices in pixels.
    pub(crate) fn polygon(&self) -> Option<Vec<[f32; 2]>> {
        polygon(
            self.shape,
            self.x,
            self.y,
            self.scale * extent_factor(self.shape),
        )
    }
}

/// Circumradius / equivalent radius for each shape (area-normalised shapes).
pub(crate) fn extent_factor(shape: Shape) -> f32 {
    match shape {
        Shape::Circle => 1.0,
        // half side sqrt(pi)/2, circumradius sqrt(2) times that
        Shape::Square | Shape::Diamond => 1.253_314,
        // equilateral triangle: area = 3 sqrt(3)/4 R^2
        Shape::Triangle => 1.555_243,
        // five-pointed star with inner radius R/2: area = 5 R r sin(36°)
        Shape::Star => 1.462_143,
    }
}

fn polygon(shape: Shape, cx: f32, cy: f32, r: f32) -> Option<Vec<[f32; 2]>> {
    let at = |angle_deg: f32, radius: f32| {
        let a = angle_deg.to_radians();
        [cx + radius * a.cos(), cy + radius * a.sin()]
    };
    Some(match shape {
        Shape::Circle => return None,
        Shape::Square => [45.0f32, 135.0, 225.0, 315.0]
            .iter()
            .map(|&a| at(a, r))
            .collect(),
        Shape::Diamond => [0.0f32, 90.0, 180.0, 270.0]
            .iter()
            .map(|&a| at(a, r))
            .collect(),
        // point up (y grows downwards, so -90°)
        Shape::Triangle => [-90.0f32, 30.0, 150.0].iter().map(|&a| at(a, r)).collect(),
        Shape::Star => (0..10)
            .map(|k| {
                at(
                    -90.0 + 36.0 * k as f32,
                    if k % 2 == 0 { r } else { r * 0.5 },
                )
            })
            .collect(),
    })
}

/// Plain or lightly textured background.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Texture {
    Plain,
    Noise,
    Stripes,
    Checker,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Background {
    pub texture: Texture,
    /// Base colour: a near-neutral grey, far from every object colour.
    pub rgb: [u8; 3],
}

impl Background {
    pub(crate) fn sample(rng: &mut Rng) -> Self {
        let texture = [
            Texture::Plain,
            Texture::Plain,
            Texture::Noise,
            Texture::Stripes,
            Texture::Checker,
        ][rng.index(5)];
        let level = rng.range_inclusive(105, 165) as i32;
        let mut rgb = [0u8; 3];
        for c in &mut rgb {
            *c = (level + rng.range_inclusive(-8, 8) as i32) as u8;
        }
        Self { texture, rgb }
    }
}

/// Relation thresholds are this fraction of the image size: closer centres make a relation
/// ambiguous, and ambiguous relations are never stated or asked.
const RELATION_MARGIN: f32 = 0.1;

/// Whether `a` stands in `relation` to `b`: `Some(true)` if clearly, `Some(false)` if clearly
/// not, `None` when the centres are too close on that axis to say.
pub fn relation_holds(
    a: &SceneObject,
    b: &SceneObject,
    relation: Relation,
    image_size: u32,
) -> Option<bool> {
    let margin = RELATION_MARGIN * image_size as f32;
    let d = match relation {
        Relation::LeftOf => b.x - a.x,
        Relation::RightOf => a.x - b.x,
        Relation::Above => b.y - a.y,
        Relation::Below => a.y - b.y,
    };
    if d >= margin {
        Some(true)
    } else if d <= -margin {
        Some(false)
    } else {
        None
    }
}

/// Size ranges as fractions of the image size. The designated largest object is at least
/// `LARGEST_RATIO` times the equivalent radius of any other, so the class label is visible.
const SMALL: (f32, f32) = (0.08, 0.10);
const LARGE: (f32, f32) = (0.115, 0.15);
const LARGEST_SMALL: (f32, f32) = (0.097, 0.11);
const LARGEST_LARGE: (f32, f32) = (0.14, 0.16);
const LARGEST_RATIO: f32 = 1.12;
const PLACEMENT_TRIES: usize = 60;

/// Samples 1–4 objects with colour–shape combinations drawn from `combos`, placed so that
/// their circumcircles do not intersect and lie inside the image. Exactly one object is the
/// largest by at least `LARGEST_RATIO` in equivalent radius.
pub(crate) fn sample_objects(
    rng: &mut Rng,
    image_size: u32,
    combos: &[(Colour, Shape)],
) -> Vec<SceneObject> {
    let s = image_size as f32;
    let count = rng.range_inclusive(1, 4) as usize;
    let sizes: Vec<Size> = (0..count)
        .map(|_| {
            if rng.bernoulli(0.5) {
                Size::Large
            } else {
                Size::Small
            }
        })
        .collect();
    let any_large = sizes.contains(&Size::Large);
    // Object 0 is the designated largest; the rest follow in random order.
    let mut rest: Vec<Size> = sizes;
    let first = rest.iter().position(|&z| z == Size::Large).unwrap_or(0);
    let largest_size = rest.remove(first);
    rng.shuffle(&mut rest);
    let (lo, hi) = if any_large {
        LARGEST_LARGE
    } else {
        LARGEST_SMALL
    };
    let largest_scale = rng.uniform(lo as f64, hi as f64) as f32;
    let cap = largest_scale / LARGEST_RATIO;

    let mut objects: Vec<SceneObject> = Vec::with_capacity(count);
    let mut plan = vec![(largest_size, largest_scale)];
    for size in rest {
        let (lo, hi) = if size == Size::Large { LARGE } else { SMALL };
        plan.push((size, rng.uniform(lo as f64, hi.min(cap) as f64) as f32));
    }
    for (i, (size, scale)) in plan.into_iter().enumerate() {
        let &(colour, shape) = rng.choose(combos).expect("combos is not empty");
        let mut attempt = (size, scale);
        let mut placed = try_place(rng, s, shape, attempt.1, &objects);
        if placed.is_none() && attempt.0 == Size::Large && i > 0 {
            attempt = (
                Size::Small,
                rng.uniform(SMALL.0 as f64, SMALL.1 as f64) as f32,
            );
            placed = try_place(rng, s, shape, attempt.1, &objects);
        }
        if let Some((x, y)) = placed {
            let scale_px = attempt.1 * s;
            objects.push(make_object(shape, colour, attempt.0, x, y, scale_px));
        }
    }
    // Placed largest-first for packing; listed in random order so that position in the list
    // says nothing about size.
    rng.shuffle(&mut objects);
    objects
}

fn try_place(
    rng: &mut Rng,
    s: f32,
    shape: Shape,
    scale: f32,
    placed: &[SceneObject],
) -> Option<(f32, f32)> {
    let extent = scale * s * extent_factor(shape);
    let pad = 0.02 * s;
    let (lo, hi) = (extent + pad, s - extent - pad);
    if lo >= hi {
        return None;
    }
    (0..PLACEMENT_TRIES).find_map(|_| {
        let x = rng.uniform(lo as f64, hi as f64) as f32;
        let y = rng.uniform(lo as f64, hi as f64) as f32;
        let clear = placed.iter().all(|o| {
            let d2 = (o.x - x).powi(2) + (o.y - y).powi(2);
            let min = o.extent + extent + pad;
            d2 >= min * min
        });
        clear.then_some((x, y))
    })
}

pub(crate) fn make_object(
    shape: Shape,
    colour: Colour,
    size: Size,
    x: f32,
    y: f32,
    scale: f32,
) -> SceneObject {
    let extent = scale * extent_factor(shape);
    let bbox = match polygon(shape, x, y, extent) {
        None => [x - extent, y - extent, x + extent, y + extent],
        Some(points) => points
            .iter()
            .fold([f32::MAX, f32::MAX, f32::MIN, f32::MIN], |b, p| {
                [
                    b[0].min(p[0]),
                    b[1].min(p[1]),
                    b[2].max(p[0]),
                    b[3].max(p[1]),
                ]
            }),
    };
    SceneObject {
        shape,
        colour,
        size,
        x,
        y,
        scale,
        extent,
        bbox,
    }
}
