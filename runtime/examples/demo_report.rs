//! The end of the demo (`scripts/demo.sh`): serves exported bundles with the `vlbeit` crate on a
//! split of the synthetic scenes and writes an HTML report.
//!
//! - indexes every image of the split (dual encoder) and saves the index;
//! - measures retrieval on the split — text → image and image → text, R@1 / R@5, dual encoder
//!   alone and with fusion-encoder rerank of the top `--rerank` (seed §3.2);
//! - runs a few text queries (top images with similarity and match probability) and, with a VQA
//!   bundle, a few questions (top answers against the annotated answer);
//! - writes `report.html` (images linked from `images/`) and prints a short summary.
//!
//! ```text
//! cargo run --release --example demo_report -- --bundle data/bundle-retrieval \
//!     --vqa-bundle data/bundle-vqa --scenes data/scenes --split test --out data/report
//! ```

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;
use vlbeit::core::scenes::{DatasetManifest, SceneAnnotation};
use vlbeit::core::shards::ShardReader;
use vlbeit::{
    FlatIndex, ImageSource, IndexEntry, Modality, Model, ModelOptions, Query, Runtime,
    RuntimeOptions,
};

#[derive(Parser)]
struct Args {
    /// Bundle for retrieval (fine-tuned on retrieval, or pretrained).
    #[arg(long)]
    bundle: PathBuf,
    /// Bundle with a VQA head, for the questions.
    #[arg(long)]
    vqa_bundle: Option<PathBuf>,
    /// The synthetic scenes directory (`vlbeit-train scenes`).
    #[arg(long)]
    scenes: PathBuf,
    #[arg(long, default_value = "test")]
    split: String,
    /// Report directory (report.html, images/, the index).
    #[arg(long)]
    out: PathBuf,
    /// Candidates reranked by the fusion encoder.
    #[arg(long, default_value_t = 8)]
    rerank: usize,
    /// Most images of the split to use.
    #[arg(long, default_value_t = 400)]
    limit: usize,
}

struct Scene {
    annotation: SceneAnnotation,
    file: PathBuf,
}

fn load_split(
    scenes: &Path,
    split: &str,
    images: &Path,
    limit: usize,
) -> anyhow::Result<Vec<Scene>> {
    let manifest = DatasetManifest::load(scenes)?;
    let entry = manifest
        .splits
        .get(split)
        .with_context(|| format!("{} has no split {split}", scenes.display()))?;
    std::fs::create_dir_all(images)?;
    let mut out = Vec::new();
    'shards: for shard in &entry.shards {
        for sample in ShardReader::open(scenes.join(shard))? {
            let sample = sample?;
            let annotation: SceneAnnotation =
                serde_json::from_slice(sample.files.get("json").context("a scene without json")?)?;
            let file = images.join(format!("{}.png", sample.key));
            std::fs::write(
                &file,
                sample.files.get("png").context("a scene without png")?,
            )?;
            out.push(Scene { annotation, file });
            if out.len() >= limit {
                break 'shards;
            }
        }
    }
    Ok(out)
}

/// Recall@1 and @5 of a ranking function over queries with sets of correct entries.
#[derive(Default, Clone, Copy)]
struct Recall {
    at1: usize,
    at5: usize,
    n: usize,
}

impl Recall {
    fn add(&mut self, ranked: &[usize], correct: &BTreeSet<usize>) {
        self.n += 1;
        if ranked.first().is_some_and(|e| correct.contains(e)) {
            self.at1 += 1;
        }
        if ranked.iter().take(5).any(|e| correct.contains(e)) {
            self.at5 += 1;
        }
    }

    fn pct(&self, hits: usize) -> f64 {
        100.0 * hits as f64 / self.n.max(1) as f64
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = Runtime::new(RuntimeOptions::default())?;
    let options = ModelOptions::default();
    let model = Model::load(&runtime, &args.bundle, options.clone())
        .with_context(|| format!("loading {}", args.bundle.display()))?;
    let images_dir = args.out.join("images");
    let scenes = load_split(&args.scenes, &args.split, &images_dir, args.limit)?;
    anyhow::ensure!(!scenes.is_empty(), "the {} split is empty", args.split);
    eprintln!("[report] indexing {} {} images", scenes.len(), args.split);

    let started = std::time::Instant::now();
    let sources: Vec<ImageSource<'_>> = scenes.iter().map(|s| ImageSource::Path(&s.file)).collect();
    let embeddings = model.embed_images(&sources)?;
    let mut index = FlatIndex::new(&model, Modality::Image);
    let entries = scenes
        .iter()
        .map(|s| IndexEntry {
            id: s.annotation.key.clone(),
            source: Some(format!("images/{}.png", s.annotation.key)),
            metadata: s.annotation.captions.first().cloned(),
        })
        .collect();
    index.add(entries, &embeddings)?;
    let index_path = args.out.join(format!("{}.vlbidx", args.split));
    index.save(&index_path)?;
    let index = FlatIndex::load(&index_path)?;
    let index_seconds = started.elapsed().as_secs_f64();

    // Captions repeat across synthetic scenes: an image is a correct answer to a caption when
    // the caption is one of its own.
    let captions: Vec<String> = scenes
        .iter()
        .map(|s| s.annotation.captions[0].clone())
        .collect();
    let correct_images = |caption: &str| -> BTreeSet<usize> {
        scenes
            .iter()
            .enumerate()
            .filter(|(_, s)| s.annotation.captions.iter().any(|c| c == caption))
            .map(|(i, _)| i)
            .collect()
    };
    eprintln!(
        "[report] text → image retrieval, {} queries",
        captions.len()
    );
    let (mut ir_dual, mut ir_rerank) = (Recall::default(), Recall::default());
    for caption in &captions {
        let correct = correct_images(caption);
        let dual = model.retrieve(&index, Query::Text(caption), 5, 0)?;
        ir_dual.add(&dual.iter().map(|h| h.entry).collect::<Vec<_>>(), &correct);
        let reranked = model.retrieve(&index, Query::Text(caption), 5, args.rerank)?;
        ir_rerank.add(
            &reranked.iter().map(|h| h.entry).collect::<Vec<_>>(),
            &correct,
        );
    }

    eprintln!("[report] image → text retrieval");
    let distinct: Vec<String> = captions
        .iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut text_index = FlatIndex::new(&model, Modality::Text);
    text_index.add(
        distinct
            .iter()
            .map(|c| IndexEntry {
                id: c.clone(),
                source: Some(c.clone()),
                metadata: None,
            })
            .collect(),
        &model.embed_texts(&distinct)?,
    )?;
    let (mut tr_dual, mut tr_rerank) = (Recall::default(), Recall::default());
    for scene in &scenes {
        let correct: BTreeSet<usize> = distinct
            .iter()
            .enumerate()
            .filter(|(_, c)| scene.annotation.captions.contains(c))
            .map(|(i, _)| i)
            .collect();
        let query = Query::Image(ImageSource::Path(&scene.file));
        let dual = model.retrieve(&text_index, query, 5, 0)?;
        tr_dual.add(&dual.iter().map(|h| h.entry).collect::<Vec<_>>(), &correct);
        let reranked = model.retrieve(&text_index, query, 5, args.rerank)?;
        tr_rerank.add(
            &reranked.iter().map(|h| h.entry).collect::<Vec<_>>(),
            &correct,
        );
    }

    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><meta charset=utf-8><title>vlbeit demo</title>\
         <style>body{{font-family:sans-serif;max-width:70em;margin:2em auto}}\
         img{{image-rendering:pixelated;width:96px;height:96px;border:1px solid #ccc}}\
         td,th{{padding:.2em .6em;text-align:left}} .hit{{display:inline-block;margin:.3em;\
         text-align:center;font-size:.8em;width:110px;vertical-align:top}} .ok{{color:#070}}</style>\
         <h1>vlbeit demo: {split} split</h1><p>bundle <code>{bundle}</code>, {n} images, \
         index built in {index_seconds:.1} s, rerank of the top {k} by the fusion encoder.</p>\
         <h2>Retrieval</h2><table><tr><th></th><th>R@1</th><th>R@5</th></tr>",
        split = args.split,
        bundle = args.bundle.display(),
        n = scenes.len(),
        k = args.rerank,
    );
    for (name, r) in [
        ("text → image, dual encoder", ir_dual),
        ("text → image, + fusion rerank", ir_rerank),
        ("image → text, dual encoder", tr_dual),
        ("image → text, + fusion rerank", tr_rerank),
    ] {
        let _ = write!(
            html,
            "<tr><td>{name}</td><td>{:.1}%</td><td>{:.1}%</td></tr>",
            r.pct(r.at1),
            r.pct(r.at5)
        );
    }
    html.push_str("</table><h2>Searches</h2>");
    let shown: Vec<&String> = captions
        .iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .take(4)
        .collect();
    // For the CLI step of the demo: the queries shown, and (image, question) pairs.
    let queries: String = shown.iter().map(|c| format!("{c}\n")).collect();
    std::fs::write(args.out.join("queries.txt"), queries)?;
    let questions: String = scenes
        .iter()
        .filter_map(|s| {
            s.annotation
                .questions
                .first()
                .map(|q| format!("{}\t{}\n", s.file.display(), q.question))
        })
        .take(4)
        .collect();
    std::fs::write(args.out.join("questions.tsv"), questions)?;
    for caption in shown {
        let hits = model.retrieve(&index, Query::Text(caption), 5, args.rerank)?;
        let _ = write!(html, "<h3>“{}”</h3>", escape(caption));
        let correct = correct_images(caption);
        for hit in hits {
            let _ = write!(
                html,
                "<div class=hit><img src=\"images/{id}.png\"><br><span class={cls}>{caption}</span>\
                 <br>sim {sim:.3} · match {m:.3}</div>",
                id = hit.id,
                cls = if correct.contains(&hit.entry) {
                    "ok"
                } else {
                    ""
                },
                caption = escape(hit.metadata.as_deref().unwrap_or("")),
                sim = hit.similarity,
                m = hit.match_score.unwrap_or(f32::NAN),
            );
        }
    }

    let mut vqa_summary = None;
    if let Some(vqa_path) = &args.vqa_bundle {
        let vqa = Model::load(&runtime, vqa_path, options)
            .with_context(|| format!("loading {}", vqa_path.display()))?;
        let _ = write!(
            html,
            "<h2>Questions</h2><p>bundle <code>{}</code></p><table>\
             <tr><th></th><th>question</th><th>annotated</th><th>top answers</th></tr>",
            vqa_path.display()
        );
        let (mut right, mut total) = (0usize, 0usize);
        for (i, scene) in scenes.iter().enumerate() {
            for q in &scene.annotation.questions {
                let answers = vqa.answer(ImageSource::Path(&scene.file), &q.question, 3)?;
                total += 1;
                if answers.first().is_some_and(|a| a.label == q.answer) {
                    right += 1;
                }
                if i < 6 {
                    let list: Vec<String> = answers
                        .iter()
                        .map(|a| format!("{} ({:.2})", escape(&a.label), a.score))
                        .collect();
                    let _ = write!(
                        html,
                        "<tr><td><img src=\"images/{}.png\"></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        scene.annotation.key,
                        escape(&q.question),
                        escape(&q.answer),
                        list.join(", ")
                    );
                }
            }
        }
        html.push_str("</table>");
        let accuracy = 100.0 * right as f64 / total.max(1) as f64;
        let _ = write!(
            html,
            "<p>top-1 answer = annotated answer on {right} of {total} questions ({accuracy:.1}%).</p>"
        );
        vqa_summary = Some((right, total, accuracy));
    }
    let report = args.out.join("report.html");
    std::fs::write(&report, html)?;

    println!(
        "retrieval on the {} split ({} images):",
        args.split,
        scenes.len()
    );
    for (name, r) in [
        ("text → image, dual encoder   ", ir_dual),
        ("text → image, + fusion rerank", ir_rerank),
        ("image → text, dual encoder   ", tr_dual),
        ("image → text, + fusion rerank", tr_rerank),
    ] {
        println!(
            "  {name}  R@1 {:5.1}%  R@5 {:5.1}%",
            r.pct(r.at1),
            r.pct(r.at5)
        );
    }
    if let Some((right, total, accuracy)) = vqa_summary {
        println!("VQA: top-1 = annotated answer on {right}/{total} questions ({accuracy:.1}%)");
    }
    println!("report: {}", report.display());
    Ok(())
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
