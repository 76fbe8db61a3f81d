//! `vlbeit embed`, `index`, `search`, `answer`, `classify`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::json;
use vlbeit::core::shards::ShardReader;
use vlbeit::{FlatIndex, ImageSource, IndexEntry, Modality, Query};

use super::Ctx;
use crate::ModelArgs;

const IMAGE_EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "webp"];

pub fn embed(
    ctx: &Ctx,
    args: &ModelArgs,
    images: &[PathBuf],
    texts: &[String],
) -> anyhow::Result<ExitCode> {
    if images.is_empty() && texts.is_empty() {
        bail!("nothing to embed: pass --image FILE and/or --text TEXT");
    }
    let model = ctx.model(args)?;
    let mut rows = Vec::new();
    if !images.is_empty() {
        let sources: Vec<ImageSource<'_>> = images.iter().map(|p| ImageSource::Path(p)).collect();
        let e = model.embed_images(&sources)?;
        for (path, v) in images.iter().zip(e.rows()) {
            rows.push((format!("image {}", path.display()), v.to_vec()));
        }
    }
    if !texts.is_empty() {
        let e = model.embed_texts(texts)?;
        for (text, v) in texts.iter().zip(e.rows()) {
            rows.push((format!("text {text:?}"), v.to_vec()));
        }
    }
    if ctx.json {
        let list: Vec<_> = rows
            .iter()
            .map(|(what, v)| json!({"input": what, "embedding": v}))
            .collect();
        ctx.print_json(&json!(list))?;
    } else {
        for (what, v) in &rows {
            let head: Vec<String> = v.iter().take(6).map(|x| format!("{x:+.4}")).collect();
            println!("{what}: dim {} [{} …]", v.len(), head.join(" "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Image files of a folder, sorted by name.
fn folder_images(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// One item to index: its id, its image bytes or path, and metadata.
struct Item {
    id: String,
    file: PathBuf,
    metadata: Option<String>,
}

/// Extracts the images of a shard into `images_dir` (for reranking and reports) and returns
/// them with the first caption of each sample as metadata.
fn shard_items(shard: &Path, images_dir: &Path) -> anyhow::Result<Vec<Item>> {
    std::fs::create_dir_all(images_dir)
        .with_context(|| format!("creating {}", images_dir.display()))?;
    let mut items = Vec::new();
    for sample in ShardReader::open(shard)? {
        let sample = sample?;
        let Some((ext, bytes)) = sample
            .files
            .iter()
            .find(|(ext, _)| IMAGE_EXTENSIONS.contains(&ext.as_str()))
        else {
            continue;
        };
        let file = images_dir.join(format!("{}.{ext}", sample.key));
        std::fs::write(&file, bytes).with_context(|| format!("writing {}", file.display()))?;
        let caption = sample
            .files
            .get("json")
            .and_then(|j| serde_json::from_slice::<serde_json::Value>(j).ok())
            .and_then(|j| j["captions"][0].as_str().map(str::to_owned))
            .or_else(|| {
                sample
                    .files
                    .get("txt")
                    .map(|t| String::from_utf8_lossy(t).into_owned())
            });
        items.push(Item {
            id: sample.key.clone(),
            file,
            metadata: caption,
        });
    }
    Ok(items)
}

pub fn index(
    ctx: &Ctx,
    args: &ModelArgs,
    images: &[PathBuf],
    texts: Option<&Path>,
    out: &Path,
) -> anyhow::Result<ExitCode> {
    if images.is_empty() == texts.is_none() {
        bail!("pass either --images (folders or shards) or --texts FILE");
    }
    let model = ctx.model(args)?;
    let out_dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let started = std::time::Instant::now();
    let index = if let Some(texts) = texts {
        let lines: Vec<String> = std::fs::read_to_string(texts)
            .with_context(|| format!("reading {}", texts.display()))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        let mut index = FlatIndex::new(&model, Modality::Text);
        let bar = progress(lines.len() as u64, ctx.json);
        for chunk in lines.chunks(256) {
            let e = model.embed_texts(chunk)?;
            let entries = chunk
                .iter()
                .map(|t| IndexEntry {
                    id: t.clone(),
                    source: Some(t.clone()),
                    metadata: None,
                })
                .collect();
            index.add(entries, &e)?;
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        index
    } else {
        let stem = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let images_dir = out_dir.join(format!("{stem}.images"));
        let mut items = Vec::new();
        for source in images {
            if source.is_dir() {
                items.extend(folder_images(source)?.into_iter().map(|file| {
                    Item {
                        id: file
                            .file_name()
                            .unwrap_or_default()
                            .to_string_lossy()
                            .into_owned(),
                        file,
                        metadata: None,
                    }
                }));
            } else if source.extension().is_some_and(|e| e == "tar") {
                items.extend(shard_items(source, &images_dir)?);
            } else {
                bail!(
                    "{}: neither a folder nor a .tar WebDataset shard",
                    source.display()
                );
            }
        }
        if items.is_empty() {
            bail!("no images found in {images:?}");
        }
        let mut index = FlatIndex::new(&model, Modality::Image);
        let bar = progress(items.len() as u64, ctx.json);
        for chunk in items.chunks(256) {
            let sources: Vec<ImageSource<'_>> =
                chunk.iter().map(|i| ImageSource::Path(&i.file)).collect();
            let e = model.embed_images(&sources)?;
            let entries = chunk
                .iter()
                .map(|i| IndexEntry {
                    id: i.id.clone(),
                    source: Some(relative_to(&i.file, out_dir)),
                    metadata: i.metadata.clone(),
                })
                .collect();
            index.add(entries, &e)?;
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        index
    };
    index.save(out)?;
    let seconds = started.elapsed().as_secs_f64();
    if ctx.json {
        ctx.print_json(&json!({
            "index": out, "entries": index.len(), "modality": index.modality().to_string(),
            "seconds": seconds,
        }))?;
    } else {
        println!(
            "indexed {} {}s into {} in {seconds:.1} s",
            index.len(),
            index.modality(),
            out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn progress(len: u64, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta}")
            .expect("a valid template"),
    );
    bar
}

/// `file` relative to `dir` when it lies inside it, else absolute.
fn relative_to(file: &Path, dir: &Path) -> String {
    let abs = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_owned());
    let (file, dir) = (abs(file), abs(dir));
    file.strip_prefix(&dir)
        .map(Path::to_owned)
        .unwrap_or(file)
        .to_string_lossy()
        .into_owned()
}

pub fn search(
    ctx: &Ctx,
    args: &ModelArgs,
    index_path: &Path,
    text: Option<String>,
    image: Option<PathBuf>,
    top_k: usize,
    rerank: usize,
) -> anyhow::Result<ExitCode> {
    let model = ctx.model(args)?;
    let index = FlatIndex::load(index_path)?;
    let query = match (&text, &image) {
        (Some(t), None) => Query::Text(t),
        (None, Some(p)) => Query::Image(ImageSource::Path(p)),
        _ => bail!("pass exactly one of --text or --image"),
    };
    let hits = model.retrieve(&index, query, top_k, rerank)?;
    if ctx.json {
        ctx.print_json(
            &json!({"query": text.or(image.map(|p| p.display().to_string())), "hits": hits}),
        )?;
    } else {
        for (rank, h) in hits.iter().enumerate() {
            let matched = h
                .match_score
                .map(|m| format!("  match {m:.3}"))
                .unwrap_or_default();
            println!(
                "{:>2}. {:<28} similarity {:.3}{matched}  (dual rank {}){}",
                rank + 1,
                h.id,
                h.similarity,
                h.dual_rank + 1,
                h.metadata
                    .as_ref()
                    .map(|m| format!("  {m}"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn answer(
    ctx: &Ctx,
    args: &ModelArgs,
    image: &Path,
    question: &str,
    top_k: usize,
) -> anyhow::Result<ExitCode> {
    let model = ctx.model(args)?;
    let answers = model.answer(ImageSource::Path(image), question, top_k)?;
    print_scored(ctx, &answers)
}

pub fn classify(
    ctx: &Ctx,
    args: &ModelArgs,
    image: &Path,
    top_k: usize,
) -> anyhow::Result<ExitCode> {
    let model = ctx.model(args)?;
    let classes = model.classify(ImageSource::Path(image), top_k)?;
    print_scored(ctx, &classes)
}

fn print_scored(ctx: &Ctx, scored: &[vlbeit::Scored]) -> anyhow::Result<ExitCode> {
    if ctx.json {
        ctx.print_json(&json!(scored))?;
    } else {
        for s in scored {
            println!("{:.3}  {}", s.score, s.label);
        }
    }
    Ok(ExitCode::SUCCESS)
}
