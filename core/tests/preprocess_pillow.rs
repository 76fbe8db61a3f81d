//! Parity with Pillow on real photographs. The references (`fixtures/preprocess/`) come from
//! `scripts/make_preprocess_fixtures.py`: Pillow's decode, Pillow's float resize, and
//! torchvision's Resize + CenterCrop + Normalize formulas on top of it. Run with
//! `--nocapture` to see the measured differences.

use std::path::PathBuf;

use fast_image_resize::images::{TypedImage, TypedImageRef};
use fast_image_resize::pixels::{F32, F32x3};
use fast_image_resize::{CpuExtensions, FilterType, ResizeAlg, ResizeOptions, Resizer};
use serde_json::Value;
use vlbeit_core::preprocess::{ImageF32, Preprocessor, Rgb8Image};
use vlbeit_core::{Interpolation, PreprocessConfig};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/preprocess")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn reference() -> Value {
    serde_json::from_slice(&fixture("reference.json")).unwrap()
}

fn floats(name: &str) -> Vec<f32> {
    fixture(name)
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn u32_of(v: &Value) -> u32 {
    v.as_u64().unwrap() as u32
}

/// Pillow's decode of a fixture, as our float image.
fn pillow_decoded(file: &str) -> ImageF32 {
    let entry = reference()["decode"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["file"] == file)
        .cloned()
        .unwrap();
    let rgb = fixture(&format!("{file}.rgb8"));
    let image = Rgb8Image::packed(&rgb, u32_of(&entry["width"]), u32_of(&entry["height"])).unwrap();
    ImageF32::from_rgb8(&image)
}

fn interpolation(v: &Value) -> Interpolation {
    match v.as_str().unwrap() {
        "bicubic" => Interpolation::Bicubic,
        "bilinear" => Interpolation::Bilinear,
        other => panic!("unknown interpolation {other}"),
    }
}

struct Diff {
    max: f32,
    differing: usize,
    total: usize,
}

fn diff(ours: &[f32], theirs: &[f32]) -> Diff {
    assert_eq!(ours.len(), theirs.len());
    let mut d = Diff {
        max: 0.0,
        differing: 0,
        total: ours.len(),
    };
    for (a, b) in ours.iter().zip(theirs) {
        if a.to_bits() != b.to_bits() {
            d.differing += 1;
            d.max = d.max.max((a - b).abs());
        }
    }
    d
}

/// The source of a resize case: Pillow's decode, cropped as the case says.
fn resize_source(case: &Value) -> ImageF32 {
    let image = pillow_decoded(case["source"].as_str().unwrap());
    match case["crop"].as_array() {
        Some(b) => image
            .crop(u32_of(&b[0]), u32_of(&b[1]), u32_of(&b[2]), u32_of(&b[3]))
            .unwrap(),
        None => image,
    }
}

#[test]
fn float_resize_is_bit_identical_to_pillow() {
    for case in reference()["resize"].as_array().unwrap() {
        let source = resize_source(case);
        let (w, h) = (u32_of(&case["width"]), u32_of(&case["height"]));
        let ours = source
            .resize(w, h, interpolation(&case["interpolation"]))
            .unwrap();
        let d = diff(ours.data(), &floats(case["output"].as_str().unwrap()));
        println!(
            "resize {} {}x{} -> {w}x{h} {}: max |d| = {:e}, {} of {} values differ",
            case["source"],
            source.width(),
            source.height(),
            case["interpolation"],
            d.max,
            d.differing,
            d.total
        );
        assert_eq!(d.differing, 0, "{case}");
    }
}

/// Which `fast_image_resize` setup reproduces Pillow: F32 planes and F32x3 pixels, on every
/// CPU path. The portable path (the one we pin) must be exact; the SIMD paths, which sum in
/// another order, are reported and may differ by an ulp at most.
#[test]
fn portable_float_path_is_bit_identical_to_pillow_in_both_layouts() {
    let mut paths = vec![CpuExtensions::None];
    for simd in [CpuExtensions::Sse4_1, CpuExtensions::Avx2] {
        if simd.is_supported() {
            paths.push(simd);
        }
    }
    for case in reference()["resize"].as_array().unwrap() {
        let source = resize_source(case);
        let (sw, sh) = (source.width(), source.height());
        let (w, h) = (u32_of(&case["width"]), u32_of(&case["height"]));
        let filter = match interpolation(&case["interpolation"]) {
            Interpolation::Bicubic => FilterType::CatmullRom,
            Interpolation::Bilinear => FilterType::Bilinear,
        };
        let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(filter));
        let pillow = floats(case["output"].as_str().unwrap());
        for &cpu in &paths {
            let mut resizer = Resizer::new();
            // SAFETY: only paths reported as supported are used.
            unsafe { resizer.set_cpu_extensions(cpu) };

            let mut planar = Vec::new();
            for c in 0..3 {
                let src: Vec<F32> = source.plane(c).iter().map(|&v| F32::new(v)).collect();
                let mut dst = TypedImage::<F32>::new(w, h);
                let src = TypedImageRef::new(sw, sh, &src).unwrap();
                resizer.resize_typed(&src, &mut dst, &options).unwrap();
                planar.extend(dst.pixels().iter().map(|p| p.0));
            }
            let per_plane = diff(&planar, &pillow);

            let n = (sw * sh) as usize;
            let src: Vec<F32x3> = (0..n)
                .map(|i| F32x3::new([source.plane(0)[i], source.plane(1)[i], source.plane(2)[i]]))
                .collect();
            let mut dst = TypedImage::<F32x3>::new(w, h);
            let src = TypedImageRef::new(sw, sh, &src).unwrap();
            resizer.resize_typed(&src, &mut dst, &options).unwrap();
            let m = (w * h) as usize;
            let interleaved: Vec<f32> = (0..3)
                .flat_map(|c| dst.pixels().iter().map(move |p| p.0[c]))
                .collect();
            let interleaved = diff(&interleaved, &pillow);
            assert_eq!(interleaved.total, 3 * m);

            println!(
                "{cpu:?} {} {}: F32 planes max |d| {:e} ({} differ), F32x3 max |d| {:e} ({} differ) of {}",
                case["output"],
                case["interpolation"],
                per_plane.max,
                per_plane.differing,
                interleaved.max,
                interleaved.differing,
                per_plane.total
            );
            if cpu == CpuExtensions::None {
                assert_eq!(per_plane.differing + interleaved.differing, 0, "{case}");
            } else {
                // SIMD paths sum in another order: last-ulp differences at most.
                assert!(per_plane.max <= 1e-4 && interleaved.max <= 1e-4, "{case}");
            }
        }
    }
}

fn config_of(case: &Value) -> PreprocessConfig {
    let c = &case["config"];
    let triple = |v: &Value| -> [f32; 3] {
        let a = v.as_array().unwrap();
        [0, 1, 2].map(|i| a[i].as_f64().unwrap() as f32)
    };
    PreprocessConfig {
        image_size: u32_of(&c["image_size"]),
        resize: u32_of(&c["resize"]),
        interpolation: interpolation(&c["interpolation"]),
        mean: triple(&c["mean"]),
        std: triple(&c["std"]),
        ..PreprocessConfig::default()
    }
}

#[test]
fn pipeline_matches_torchvision_on_pillow_bit_for_bit() {
    for case in reference()["pipeline"].as_array().unwrap() {
        let pre = Preprocessor::new(config_of(case)).unwrap();
        let source = pillow_decoded(case["source"].as_str().unwrap());
        let ours = pre.image(&source).unwrap();
        let d = diff(&ours, &floats(case["output"].as_str().unwrap()));
        println!(
            "pipeline {} ({}x{}) on Pillow's RGB8: max |d| = {:e}, {} of {} differ",
            case["output"],
            source.width(),
            source.height(),
            d.max,
            d.differing,
            d.total
        );
        assert_eq!(d.differing, 0, "{case}");
    }
}

/// From the encoded file: exact for lossless formats; for JPEG the decoders differ, so the
/// difference is measured and bounded instead.
#[test]
fn pipeline_from_encoded_files() {
    for case in reference()["pipeline"].as_array().unwrap() {
        let pre = Preprocessor::new(config_of(case)).unwrap();
        let file = case["source"].as_str().unwrap();
        let ours = pre.encoded(&fixture(file)).unwrap();
        let d = diff(&ours, &floats(case["output"].as_str().unwrap()));
        println!(
            "pipeline {} from {file}: max |d| = {:e}, {} of {} differ",
            case["output"], d.max, d.differing, d.total
        );
        if file.ends_with(".png") {
            assert_eq!(d.differing, 0, "{case}");
        } else {
            // A few 8-bit levels of decoder difference, scaled by 1 / (255 * std).
            assert!(d.max < 0.1, "{case}: {}", d.max);
        }
    }
}

#[test]
fn decode_matches_pillow() {
    let pre = Preprocessor::new(PreprocessConfig::default()).unwrap();
    for entry in reference()["decode"].as_array().unwrap() {
        let file = entry["file"].as_str().unwrap();
        let ours = pre.decode(&fixture(file)).unwrap();
        let theirs = pillow_decoded(file);
        assert_eq!(
            (ours.width(), ours.height()),
            (theirs.width(), theirs.height()),
            "{file}"
        );
        let d = diff(ours.data(), theirs.data());
        let mean = ours
            .data()
            .iter()
            .zip(theirs.data())
            .map(|(a, b)| (a - b).abs())
            .sum::<f32>()
            / d.total as f32;
        println!(
            "decode {file}: max |d| = {} levels, mean |d| = {mean:.4}, {} of {} samples differ",
            d.max, d.differing, d.total
        );
        if entry["exact"].as_bool().unwrap() {
            assert_eq!(d.differing, 0, "{file}");
        } else {
            assert!(
                d.max <= 16.0 && mean < 1.0,
                "{file}: max {} mean {mean}",
                d.max
            );
        }
    }
}
