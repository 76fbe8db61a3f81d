//! Rasterisation: background texture, antialiased shapes (4×4 supersampling) and the
//! per-pixel segmentation mask.

use super::layout::{Background, SceneObject, Texture};
use super::vocab::Shape;
use crate::rng::Rng;

/// Subsamples per pixel side: 16 samples per pixel keep edges smooth at 64 px.
const SUPERSAMPLE: usize = 4;
/// Amplitude of the background texture in 8-bit levels ("lightly textured").
const TEXTURE_AMPLITUDE: f32 = 7.0;

/// The rendered RGB8 image (row-major, `size * size * 3`) and the mask (`size * size`,
/// 0 = background, otherwise [`Shape::mask_class`] of the object covering the pixel centre).
pub(crate) fn render(
    objects: &[SceneObject],
    background: &Background,
    size: u32,
    rng: &mut Rng,
) -> (Vec<u8>, Vec<u8>) {
    let n = size as usize;
    let mut canvas = background_canvas(background, n, rng);
    let mut mask = vec![0u8; n * n];
    for object in objects {
        draw(object, &mut canvas, &mut mask, n);
    }
    let mut pixels = vec![0u8; canvas.len()];
    for (p, &v) in pixels.iter_mut().zip(&canvas) {
        // `as u8` saturates; values stay within 0..=255 anyway
        *p = v.round() as u8;
    }
    (pixels, mask)
}

fn background_canvas(background: &Background, n: usize, rng: &mut Rng) -> Vec<f32> {
    let base = background.rgb.map(f32::from);
    let mut canvas = vec![0.0f32; n * n * 3];
    let period = (n as f32 / rng.uniform(5.0, 10.0) as f32).max(2.0);
    let diagonal = rng.index(3);
    let cell = (n / rng.range_inclusive(6, 10) as usize).max(1);
    // One period of the stripe profile, indexed by x, y or x + y.
    let stripe: Vec<f32> = (0..2 * n)
        .map(|t| {
            let t = if diagonal == 2 {
                t as f32 * std::f32::consts::FRAC_1_SQRT_2
            } else {
                t as f32
            };
            (t / period * std::f32::consts::TAU).sin() * TEXTURE_AMPLITUDE
        })
        .collect();
    for y in 0..n {
        for x in 0..n {
            let offset = match background.texture {
                Texture::Plain => 0.0,
                Texture::Noise => rng.uniform(-1.0, 1.0) as f32 * TEXTURE_AMPLITUDE,
                Texture::Stripes => stripe[[x, y, x + y][diagonal]],
                Texture::Checker => {
                    if (x / cell + y / cell).is_multiple_of(2) {
                        TEXTURE_AMPLITUDE
                    } else {
                        -TEXTURE_AMPLITUDE
                    }
                }
            };
            let at = (y * n + x) * 3;
            canvas[at] = base[0] + offset;
            canvas[at + 1] = base[1] + offset;
            canvas[at + 2] = base[2] + offset;
        }
    }
    canvas
}

/// An object's outline: a circle or a polygon, with an inside test and the distance to the
/// boundary (pixels farther than half a diagonal from it need no supersampling).
enum Outline {
    Circle { x: f32, y: f32, r: f32 },
    Polygon(Vec<[f32; 2]>),
}

impl Outline {
    fn of(object: &SceneObject) -> Self {
        match object.polygon() {
            None => Outline::Circle {
                x: object.x,
                y: object.y,
                r: object.extent,
            },
            Some(points) => Outline::Polygon(points),
        }
    }

    fn inside(&self, px: f32, py: f32) -> bool {
        match self {
            Outline::Circle { x, y, r } => {
                let (dx, dy) = (px - x, py - y);
                dx * dx + dy * dy <= r * r
            }
            Outline::Polygon(points) => inside_polygon(points, px, py),
        }
    }

    fn boundary_distance(&self, px: f32, py: f32) -> f32 {
        match self {
            Outline::Circle { x, y, r } => {
                let (dx, dy) = (px - x, py - y);
                (dx * dx + dy * dy).sqrt() - r
            }
            Outline::Polygon(points) => {
                let mut best = f32::MAX;
                let mut j = points.len() - 1;
                for i in 0..points.len() {
                    best = best.min(segment_distance2(points[j], points[i], px, py));
                    j = i;
                }
                best.sqrt()
            }
        }
        .abs()
    }
}

fn segment_distance2(a: [f32; 2], b: [f32; 2], px: f32, py: f32) -> f32 {
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    let t = (((px - a[0]) * dx + (py - a[1]) * dy) / (dx * dx + dy * dy)).clamp(0.0, 1.0);
    let (ex, ey) = (a[0] + t * dx - px, a[1] + t * dy - py);
    ex * ex + ey * ey
}

/// Half a pixel diagonal plus slack: beyond it every subsample of the pixel lies on the same
/// side of the outline as the pixel centre, so skipping supersampling changes no bit.
const EDGE_BAND: f32 = 0.75;

fn draw(object: &SceneObject, canvas: &mut [f32], mask: &mut [u8], n: usize) {
    let outline = Outline::of(object);
    let colour = object.colour.rgb().map(f32::from);
    let x0 = (object.bbox[0].floor().max(0.0)) as usize;
    let y0 = (object.bbox[1].floor().max(0.0)) as usize;
    let x1 = (object.bbox[2].ceil() as usize).min(n);
    let y1 = (object.bbox[3].ceil() as usize).min(n);
    let step = 1.0 / SUPERSAMPLE as f32;
    for y in y0..y1 {
        for x in x0..x1 {
            let (cx, cy) = (x as f32 + 0.5, y as f32 + 0.5);
            let centre_inside = outline.inside(cx, cy);
            let hits = if outline.boundary_distance(cx, cy) > EDGE_BAND {
                if centre_inside {
                    SUPERSAMPLE * SUPERSAMPLE
                } else {
                    0
                }
            } else {
                let mut hits = 0usize;
                for sy in 0..SUPERSAMPLE {
                    let py = y as f32 + (sy as f32 + 0.5) * step;
                    for sx in 0..SUPERSAMPLE {
                        let px = x as f32 + (sx as f32 + 0.5) * step;
                        hits += usize::from(outline.inside(px, py));
                    }
                }
                hits
            };
            if hits == 0 {
                continue;
            }
            let coverage = hits as f32 / (SUPERSAMPLE * SUPERSAMPLE) as f32;
            let pixel = &mut canvas[(y * n + x) * 3..(y * n + x) * 3 + 3];
            for k in 0..3 {
                pixel[k] += (colour[k] - pixel[k]) * coverage;
            }
            if centre_inside {
                mask[y * n + x] = object.shape.mask_class();
            }
        }
    }
}

/// Even–odd rule; the star is not convex.
fn inside_polygon(points: &[[f32; 2]], px: f32, py: f32) -> bool {
    let mut inside = false;
    let mut j = points.len() - 1;
    for i in 0..points.len() {
        let ([xi, yi], [xj, yj]) = (points[i], points[j]);
        if (yi > py) != (yj > py) && px < (xj - xi) * (py - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// Encodes RGB8 (`channels = 3`) or grayscale (`channels = 1`) pixels as PNG. Fixed
/// compression and filter settings: same pixels, same bytes.
pub(crate) fn encode_png(pixels: &[u8], size: u32, channels: u8) -> Vec<u8> {
    use image::ImageEncoder;
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    let colour = if channels == 1 {
        image::ExtendedColorType::L8
    } else {
        image::ExtendedColorType::Rgb8
    };
    let mut bytes = Vec::new();
    PngEncoder::new_with_quality(&mut bytes, CompressionType::Fast, FilterType::Adaptive)
        .write_image(pixels, size, size, colour)
        .expect("in-memory PNG encoding of a well-sized buffer cannot fail");
    bytes
}

/// The shape whose segmentation class is `class`; `None` for background (0) or out of range.
pub fn shape_of_mask_class(class: u8) -> Option<Shape> {
    Shape::ALL.get(usize::from(class).checked_sub(1)?).copied()
}

#[cfg(test)]
mod preview {
    use super::super::{SceneConfig, SceneGenerator, Split};
    use super::*;

    fn generator(seed: u64) -> SceneGenerator {
        SceneGenerator::new(SceneConfig {
            image_size: 64,
            seed,
        })
        .unwrap()
    }

    /// `VLBEIT_SCENES_PREVIEW=dir cargo test -p vlbeit-core preview -- --ignored` writes a few
    /// scenes for eyeballing.
    #[test]
    #[ignore]
    fn preview() {
        let dir =
            std::env::var("VLBEIT_SCENES_PREVIEW").unwrap_or_else(|_| "/tmp/scenes-preview".into());
        std::fs::create_dir_all(&dir).unwrap();
        // a 4×-enlarged contact sheet of twelve 64 px scenes (3 rows × 4)
        let g = generator(0);
        let (cols, zoom, n) = (4usize, 4usize, 64usize);
        let side = n * zoom;
        let mut sheet = vec![0u8; 3 * side * cols * 3 * side];
        for i in 0..12 {
            let split = if i >= 8 {
                Split::Compositional
            } else {
                Split::Train
            };
            let s = g.generate(split, i as u64);
            let (ox, oy) = ((i % cols) * side, (i / cols) * side);
            for y in 0..side {
                for x in 0..side {
                    let src = ((y / zoom) * n + x / zoom) * 3;
                    let dst = ((oy + y) * side * cols + ox + x) * 3;
                    sheet[dst..dst + 3].copy_from_slice(&s.pixels[src..src + 3]);
                }
            }
        }
        let png = {
            use image::ImageEncoder;
            let mut out = Vec::new();
            image::codecs::png::PngEncoder::new(&mut out)
                .write_image(
                    &sheet,
                    (side * cols) as u32,
                    (3 * side) as u32,
                    image::ExtendedColorType::Rgb8,
                )
                .unwrap();
            out
        };
        std::fs::write(format!("{dir}/sheet-64.png"), png).unwrap();
        let labels: String = (0..64)
            .map(|i| {
                if g.nlvr2_item(Split::Train, i, 100).label {
                    '1'
                } else {
                    '0'
                }
            })
            .collect();
        println!("labels: {labels}");
        for i in 0..8 {
            println!("corpus: {}", g.corpus_sentence(i));
            println!("nlvr2: {:?}", g.nlvr2_item(Split::Train, i, 100));
        }
        for size in [64u32, 224] {
            let g = SceneGenerator::new(SceneConfig {
                image_size: size,
                seed: 0,
            })
            .unwrap();
            for i in 0..6 {
                let s = g.generate(Split::Train, i);
                std::fs::write(format!("{dir}/scene-{size}-{i}.png"), &s.png).unwrap();
                let scaled: Vec<u8> = s.mask.iter().map(|m| m * 40).collect();
                std::fs::write(
                    format!("{dir}/mask-{size}-{i}.png"),
                    encode_png(&scaled, size, 1),
                )
                .unwrap();
                println!(
                    "{size}/{i}: {}",
                    serde_json::to_string_pretty(&s.annotation).unwrap()
                );
            }
        }
    }
}
