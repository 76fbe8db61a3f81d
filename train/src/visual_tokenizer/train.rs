//! Training a tokenizer on scene images: AdamW with warmup and cosine decay, random horizontal
//! flips, and codebook health (usage over a window, perplexity) in the progress line and the
//! JSON-lines metrics.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor, nn, nn::OptimizerConfig};
use vlbeit_core::preprocess::{ImageF32, ImageInput, Preprocessor};
use vlbeit_core::rng::Rng;
use vlbeit_core::scenes::DatasetManifest;
use vlbeit_core::shards::ShardReader;

use super::VisualTokenizer;

/// How to train. `Default` is the tiny CPU recipe (about two minutes on 2 cores).
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub steps: usize,
    pub batch_size: usize,
    /// Peak learning rate, reached after `warmup_steps`, then cosine decay to 0.
    pub lr: f64,
    pub warmup_steps: usize,
    /// AdamW weight decay (BEiT v2's tokenizer recipe uses 1e-4).
    pub weight_decay: f64,
    /// Gradient-norm clip (BEiT v2: 3.0).
    pub clip_grad_norm: f64,
    pub seed: u64,
    /// Steps per metrics window: usage and perplexity are measured over it.
    pub log_every: usize,
    /// Where to append one JSON object per window.
    pub metrics_path: Option<PathBuf>,
    /// Print a progress line per window on stderr.
    pub progress: bool,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            steps: 1000,
            batch_size: 32,
            lr: 1e-3,
            warmup_steps: 50,
            weight_decay: 1e-4,
            clip_grad_norm: 3.0,
            seed: 0,
            log_every: 50,
            metrics_path: None,
            progress: true,
        }
    }
}

/// How a tokenizer was trained; saved in `visual_tokenizer.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingSummary {
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub seed: u64,
    /// Training images available.
    pub images: usize,
    pub seconds: f64,
    /// Mean loss over the first window.
    pub initial_loss: f64,
    /// Mean loss over the last window.
    pub final_loss: f64,
    pub final_reconstruction: f64,
    /// Share of codes chosen at least once in the last window.
    pub codebook_usage: f64,
    /// `exp(entropy)` of the code frequencies in the last window (K for a uniform use).
    pub perplexity: f64,
}

/// The encoded images (`KEY.png`) of a scenes data set's train split, in shard order.
pub fn load_scene_images(dir: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let manifest = DatasetManifest::load(dir)
        .with_context(|| format!("{} is not a scenes data set", dir.display()))?;
    let train = manifest
        .splits
        .get("train")
        .with_context(|| format!("{} has no train split", dir.display()))?;
    let mut images = Vec::new();
    for shard in &train.shards {
        let path = dir.join(shard);
        for sample in ShardReader::open(&path)? {
            let mut sample = sample?;
            let Some(png) = sample.files.remove("png") else {
                bail!("{}: sample {} has no .png", path.display(), sample.key);
            };
            images.push(png);
        }
    }
    if images.is_empty() {
        bail!("{}: the train split holds no images", dir.display());
    }
    Ok(images)
}

/// Code counts and losses of the current metrics window.
struct Window {
    counts: Tensor,
    loss: f64,
    reconstruction: f64,
    steps: usize,
}

impl Window {
    fn new(codebook_size: i64) -> Self {
        Self {
            counts: Tensor::zeros([codebook_size], (Kind::Int64, tch::Device::Cpu)),
            loss: 0.0,
            reconstruction: 0.0,
            steps: 0,
        }
    }

    /// (share of codes used, perplexity of the code distribution).
    fn usage(&self) -> (f64, f64) {
        let counts = self.counts.to_kind(Kind::Double);
        let used = counts.gt(0.0).to_kind(Kind::Double).mean(Kind::Double);
        let p = &counts / counts.sum(Kind::Double).clamp_min(1.0);
        let entropy = -(&p * p.clamp_min(1e-30).log()).sum(Kind::Double);
        (used.double_value(&[]), entropy.exp().double_value(&[]))
    }
}

/// Trains `tokenizer` on `images` (encoded PNG/JPEG bytes) and records the summary in it.
pub fn train(
    tokenizer: &mut VisualTokenizer,
    images: &[Vec<u8>],
    preprocessor: &Preprocessor,
    options: &TrainOptions,
) -> anyhow::Result<TrainingSummary> {
    let config = tokenizer.config().clone();
    if preprocessor.config().image_size as usize != config.image_size {
        bail!(
            "preprocessing crops {} px but the tokenizer takes {} px images",
            preprocessor.config().image_size,
            config.image_size
        );
    }
    if images.is_empty() || options.steps == 0 || options.batch_size == 0 {
        bail!("training needs images, steps > 0 and batch_size > 0");
    }
    tch::manual_seed(options.seed as i64);
    let mut rng = Rng::derive(options.seed, 0x76716b64);
    let teacher = config.teacher.build(config.patch_size);
    let mut optimizer = nn::AdamW {
        wd: options.weight_decay,
        ..Default::default()
    }
    .build(tokenizer.var_store(), options.lr)?;
    let mut metrics = match &options.metrics_path {
        Some(path) => Some(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        ),
        None => None,
    };
    let log_every = options.log_every.clamp(1, options.steps);
    let k = config.codebook_size as i64;
    let mut window = Window::new(k);
    let mut initial_loss = None;
    let mut last = (0.0, 0.0, 0.0, 0.0);
    let mut order: Vec<usize> = (0..images.len()).collect();
    let mut cursor = order.len();
    let start = Instant::now();
    for step in 1..=options.steps {
        let mut batch = Vec::with_capacity(options.batch_size);
        while batch.len() < options.batch_size {
            if cursor == order.len() {
                rng.shuffle(&mut order);
                cursor = 0;
            }
            let mut image = preprocessor
                .decode(&images[order[cursor]])
                .with_context(|| format!("training image #{}", order[cursor]))?;
            if rng.bernoulli(0.5) {
                image.flip_horizontal();
            }
            batch.push(image);
            cursor += 1;
        }
        let pixels = pixel_tensor(preprocessor, &batch)?.to_device(tokenizer.device());
        let targets = teacher.targets(&pixels);
        optimizer.set_lr(learning_rate(options, step));
        let out = tokenizer.step(&pixels, &targets);
        optimizer.zero_grad();
        out.loss.backward();
        optimizer.clip_grad_norm(options.clip_grad_norm);
        optimizer.step();

        let _ = window.counts.g_add_(
            &out.ids
                .view([-1])
                .to_device(tch::Device::Cpu)
                .bincount(None::<Tensor>, k),
        );
        window.loss += out.loss.double_value(&[]);
        window.reconstruction += out.reconstruction.double_value(&[]);
        window.steps += 1;
        if step % log_every == 0 || step == options.steps {
            let (usage, perplexity) = window.usage();
            let n = window.steps as f64;
            let (loss, reconstruction) = (window.loss / n, window.reconstruction / n);
            let seconds = start.elapsed().as_secs_f64();
            initial_loss.get_or_insert(loss);
            last = (loss, reconstruction, usage, perplexity);
            if options.progress {
                eprintln!(
                    "step {step}/{}  loss {loss:.4} (reconstruction {reconstruction:.4})  codebook usage {:.1}%  perplexity {perplexity:.1}  lr {:.2e}  {seconds:.1} s",
                    options.steps,
                    usage * 100.0,
                    learning_rate(options, step),
                );
            }
            if let Some(file) = metrics.as_mut() {
                let line = serde_json::json!({
                    "step": step, "loss": loss, "reconstruction": reconstruction,
                    "codebook_usage": usage, "perplexity": perplexity,
                    "lr": learning_rate(options, step), "seconds": seconds,
                });
                writeln!(file, "{line}").context("writing the metrics")?;
            }
            window = Window::new(k);
        }
    }
    let summary = TrainingSummary {
        steps: options.steps,
        batch_size: options.batch_size,
        lr: options.lr,
        seed: options.seed,
        images: images.len(),
        seconds: start.elapsed().as_secs_f64(),
        initial_loss: initial_loss.unwrap_or(last.0),
        final_loss: last.0,
        final_reconstruction: last.1,
        codebook_usage: last.2,
        perplexity: last.3,
    };
    tokenizer.set_training_summary(summary.clone());
    Ok(summary)
}

/// Linear warmup, then cosine decay to 0 at the last step.
fn learning_rate(options: &TrainOptions, step: usize) -> f64 {
    let warmup = options.warmup_steps.min(options.steps / 2);
    if step <= warmup {
        return options.lr * step as f64 / warmup.max(1) as f64;
    }
    let progress = (step - warmup) as f64 / (options.steps - warmup).max(1) as f64;
    options.lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

fn pixel_tensor(preprocessor: &Preprocessor, images: &[ImageF32]) -> anyhow::Result<Tensor> {
    let inputs: Vec<ImageInput<'_>> = images.iter().map(ImageInput::Image).collect();
    let batch = preprocessor.batch(&inputs)?;
    let shape: Vec<i64> = batch.shape.iter().map(|&d| d as i64).collect();
    Ok(Tensor::from_slice(&batch.data).view(shape.as_slice()))
}

#[cfg(test)]
mod tests {
    use vlbeit_core::PreprocessConfig;
    use vlbeit_core::scenes::{DatasetSpec, SplitCounts, write_dataset};

    use super::*;
    use crate::visual_tokenizer::{VisualTokenizerConfig, VitConfig};

    #[test]
    fn a_short_run_lowers_the_loss_and_uses_many_codes() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("scenes");
        let counts = |train| SplitCounts {
            train,
            val: 1,
            test: 1,
            compositional: 1,
        };
        let spec = DatasetSpec {
            image_size: 32,
            seed: 3,
            scenes: counts(48),
            nlvr2: counts(1),
            corpus_sentences: 1,
            shard_size: 20,
        };
        write_dataset(&data, &spec).unwrap();
        let images = load_scene_images(&data).unwrap();
        assert_eq!(images.len(), 48);
        let small = VitConfig {
            width: 32,
            depth: 1,
            heads: 2,
            mlp_ratio: 2,
        };
        let config = VisualTokenizerConfig {
            image_size: 32,
            patch_size: 8,
            codebook_size: 64,
            encoder: small.clone(),
            decoder: small,
            dead_code_steps: 10,
            ..VisualTokenizerConfig::for_model(&vlbeit_core::ModelConfig::tiny())
        };
        let mut tokenizer = VisualTokenizer::new(config, tch::Device::Cpu).unwrap();
        let pre = Preprocessor::new(PreprocessConfig::for_image_size(32)).unwrap();
        let metrics = dir.path().join("metrics.jsonl");
        let options = TrainOptions {
            steps: 60,
            batch_size: 16,
            lr: 3e-3,
            warmup_steps: 5,
            log_every: 10,
            metrics_path: Some(metrics.clone()),
            progress: false,
            ..TrainOptions::default()
        };
        let summary = train(&mut tokenizer, &images, &pre, &options).unwrap();
        assert!(
            summary.final_loss < summary.initial_loss * 0.9,
            "loss {} -> {}",
            summary.initial_loss,
            summary.final_loss
        );
        let codes_used = summary.codebook_usage * 64.0;
        assert!(codes_used > 8.0, "only {codes_used} codes in use");
        assert!(
            summary.perplexity > 4.0,
            "perplexity {}",
            summary.perplexity
        );
        let lines = std::fs::read_to_string(&metrics).unwrap();
        assert_eq!(lines.lines().count(), 6);
        assert_eq!(tokenizer.training_summary(), Some(&summary));
    }
}
