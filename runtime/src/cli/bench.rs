//! `vlbeit bench`: throughput of the three graphs at several batch sizes, and end-to-end time from
//! encoded JPEG bytes to an embedding. A benchmark, not a test: the machines are shared, so the
//! figures come with a reference (a 512×512 f32 matrix product, ndarray) measured in the same
//! run, and their ratio to it is what compares across runs.

use std::process::ExitCode;
use std::time::Instant;

use serde_json::json;
use vlbeit::ImageSource;
use vlbeit::core::scenes::{SceneConfig, SceneGenerator, Split};

use super::Ctx;
use crate::ModelArgs;

/// Calls `f` once to warm up, then for at least `seconds`; returns calls per second.
fn rate(seconds: f64, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    f()?;
    let start = Instant::now();
    let mut calls = 0u64;
    while calls == 0 || start.elapsed().as_secs_f64() < seconds {
        f()?;
        calls += 1;
    }
    Ok(calls as f64 / start.elapsed().as_secs_f64())
}

/// GFLOP/s of a 512×512×512 f32 matrix product.
fn reference_gflops(seconds: f64) -> anyhow::Result<f64> {
    let n = 512;
    let a = ndarray::Array2::<f32>::from_shape_fn((n, n), |(i, j)| ((i * 7 + j) % 13) as f32);
    let b = a.t().to_owned();
    let per_second = rate(seconds, || {
        std::hint::black_box(a.dot(&b));
        Ok(())
    })?;
    Ok(per_second * 2.0 * (n as f64).powi(3) / 1e9)
}

fn jpeg(pixels: &[u8], side: u32) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90).encode(
        pixels,
        side,
        side,
        image::ExtendedColorType::Rgb8,
    )?;
    Ok(out)
}

pub fn run(
    ctx: &Ctx,
    args: &ModelArgs,
    batches: &[usize],
    seconds: f64,
) -> anyhow::Result<ExitCode> {
    let model = ctx.model(args)?;
    let side = model.manifest().preprocess.image_size.max(64);
    let generator = SceneGenerator::new(SceneConfig {
        image_size: side,
        seed: 0,
    })?;
    let largest = batches.iter().copied().max().unwrap_or(1);
    let scenes: Vec<_> = (0..largest as u64)
        .map(|i| generator.generate(Split::Val, i))
        .collect();
    let jpegs = scenes
        .iter()
        .map(|s| jpeg(&s.pixels, side))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let captions: Vec<String> = scenes.iter().map(|s| s.captions[0].clone()).collect();

    let gflops_before = reference_gflops(seconds.min(1.0))?;
    let mut rows = Vec::new();
    for &batch in batches {
        let images: Vec<ImageSource<'_>> = jpegs[..batch]
            .iter()
            .map(|b| ImageSource::Encoded(b))
            .collect();
        let texts = &captions[..batch];
        let pairs: Vec<(ImageSource<'_>, &str)> = images
            .iter()
            .zip(texts)
            .map(|(i, t)| (*i, t.as_str()))
            .collect();
        let images_per_s = rate(seconds, || {
            model.embed_images(&images)?;
            Ok(())
        })? * batch as f64;
        let texts_per_s = rate(seconds, || {
            model.embed_texts(texts)?;
            Ok(())
        })? * batch as f64;
        let pairs_per_s = rate(seconds, || {
            model.match_scores(&pairs)?;
            Ok(())
        })? * batch as f64;
        rows.push((batch, images_per_s, texts_per_s, pairs_per_s));
    }
    // One JPEG → one embedding, decode and preprocessing included.
    let single = [ImageSource::Encoded(&jpegs[0])];
    let e2e_ms = 1000.0
        / rate(seconds, || {
            model.embed_images(&single)?;
            Ok(())
        })?;
    let decode_ms = 1000.0
        / rate(seconds, || {
            model.preprocessor().encoded(&jpegs[0])?;
            Ok(())
        })?;
    let gflops_after = reference_gflops(seconds.min(1.0))?;
    let gflops = (gflops_before + gflops_after) / 2.0;
    let c = &model.manifest().model;
    if ctx.json {
        ctx.print_json(&json!({
            "bundle": args.bundle,
            "provider": args.provider,
            "model": {"hidden": c.hidden, "layers": c.layers, "image_size": c.image_size,
                      "precision": model.manifest().precision},
            "reference_gflops": gflops,
            "rows": rows.iter().map(|(b, i, t, p)| json!({
                "batch": b, "images_per_s": i, "texts_per_s": t, "rerank_pairs_per_s": p,
                "images_per_s_per_gflops": i / gflops,
            })).collect::<Vec<_>>(),
            "jpeg_to_embedding_ms": e2e_ms,
            "jpeg_decode_preprocess_ms": decode_ms,
        }))?;
    } else {
        println!(
            "{} on {}: hidden {}, {} layers, image {}, {}; reference matmul {gflops:.1} GFLOP/s \
             (before {gflops_before:.1}, after {gflops_after:.1})",
            args.bundle.display(),
            args.provider,
            c.hidden,
            c.layers,
            c.image_size,
            model.manifest().precision
        );
        println!("| batch | images/s | texts/s | rerank pairs/s | images/s per GFLOP/s |");
        println!("| ---: | ---: | ---: | ---: | ---: |");
        for (b, i, t, p) in &rows {
            println!("| {b} | {i:.1} | {t:.1} | {p:.1} | {:.3} |", i / gflops);
        }
        println!(
            "JPEG → embedding (batch 1, end to end): {e2e_ms:.2} ms, of which decode + preprocess {decode_ms:.2} ms"
        );
    }
    Ok(ExitCode::SUCCESS)
}
