//! The pretraining loop: data → masks → MLM + MIM + MVLM → AdamW, with metrics, held-out
//! evaluation and atomic checkpoints.

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use tch::{Kind, Tensor, nn};
use vlbeit_core::config::PreprocessConfig;
use vlbeit_core::preprocess::Preprocessor;
use vlbeit_core::rng::Rng;
use vlbeit_core::scenes::{DatasetManifest, SceneAnnotation};
use vlbeit_core::shards::ShardReader;
use vlbeit_core::text::{Padding, TextError, TextTokenizer};

use super::objectives::{self, TaskOutput};
use super::{EvalReport, PretrainConfig, evaluate};
use crate::checkpoint::{
    CHECKPOINT_FORMAT_VERSION, CheckpointConfig, CheckpointError, HeadsConfig, TrainingSummary,
    read_safetensors, write_dir_atomically, write_json, write_safetensors,
};
use crate::data::{DataError, DataSources, Loader, LoaderConfig, LoaderState};
use crate::golden::{GoldenSet, write_golden};
use crate::masking::{BlockMaskConfig, TextMasking};
use crate::model::{VlBeit, WeightsError, load_weights, save_weights};
use crate::optim::{AdamW, Schedule};
use crate::visual_tokenizer::{VisualTokenizer, VisualTokenizerError};

/// Why a run stopped early. Each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum PretrainError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("visual tokenizer: {0}")]
    VisualTokenizer(#[from] VisualTokenizerError),
    #[error("text tokenizer: {0}")]
    Text(#[from] TextError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error(
        "step {step}: the {what} is not finite ({value}); stopped without saving, the last checkpoint is intact"
    )]
    NonFinite {
        step: u64,
        what: &'static str,
        value: f64,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a finished (or paused) run reports.
#[derive(Debug, Clone)]
pub struct PretrainOutcome {
    /// Steps completed in total (including those before a resume).
    pub step: u64,
    /// Steps run by this call.
    pub steps_run: u64,
    pub resumed_from: Option<u64>,
    pub last_metrics: BTreeMap<String, f64>,
    pub eval: Option<EvalReport>,
    pub checkpoint: PathBuf,
    pub samples_per_second: f64,
}

const STATE_FILE: &str = "state.safetensors";

/// libtorch's generator (drop path) is re-seeded from `(seed, step)` at every step, so a resumed
/// run draws the same randomness as an uninterrupted one.
fn torch_seed(seed: u64, step: u64) -> i64 {
    (Rng::derive_path(seed, &[step, 0x7074_6368]).next_u64() >> 1) as i64
}

fn sha256_file(path: &Path) -> Result<String, PretrainError> {
    use sha2::Digest;
    let bytes = std::fs::read(path).map_err(|source| PretrainError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Runs (or resumes) pretraining as `config` says.
pub fn pretrain(config: &PretrainConfig) -> Result<PretrainOutcome, PretrainError> {
    let model_config = &config.model;
    model_config
        .validate()
        .map_err(|e| PretrainError::Config(format!("model config: {e}")))?;
    if config.batch_size == 0 || config.grad_accum == 0 || config.steps == 0 {
        return Err(PretrainError::Config(
            "steps, batch size and gradient accumulation must be at least 1".into(),
        ));
    }
    let device = config.device;
    let tokenizer = TextTokenizer::load(&config.tokenizer)?;
    if tokenizer.vocab_size() != model_config.vocab_size {
        return Err(PretrainError::Config(format!(
            "the tokenizer {} has {} pieces but the model config says vocab_size = {}",
            config.tokenizer.display(),
            tokenizer.vocab_size(),
            model_config.vocab_size
        )));
    }
    let visual = VisualTokenizer::load_for_model(&config.visual_tokenizer, model_config, device)?;
    let visual_sha =
        sha256_file(&config.visual_tokenizer.join("visual_tokenizer.safetensors")).ok();
    let sources = DataSources::scenes(&config.data)?;
    let held_out = DataSources::scenes_held_out(&config.data)?;
    let preprocess = PreprocessConfig::for_image_size(model_config.image_size as u32);

    // The initialization is part of the run: the same seed builds the same model.
    tch::manual_seed(torch_seed(config.seed, u64::MAX));
    let mut vs = nn::VarStore::new(device);
    let model = VlBeit::new(&vs.root(), model_config);
    let mut optimizer = AdamW::new(&vs, config.adamw);
    let checkpoint_dir = config.out.join("checkpoint");
    let loader_config = LoaderConfig::train(model_config, config.batch_size).with_seed(config.seed);

    let (start, loader) = if checkpoint_dir.join(STATE_FILE).exists() {
        let (step, state) = restore(config, &checkpoint_dir, &mut vs, &mut optimizer)?;
        let loader = Loader::resume(
            &sources,
            tokenizer.clone(),
            preprocess.clone(),
            loader_config,
            state,
        )?;
        (step, loader)
    } else {
        let loader = Loader::new(
            &sources,
            tokenizer.clone(),
            preprocess.clone(),
            loader_config,
        )?;
        (0, loader)
    };
    let resumed_from = (start > 0).then_some(start);
    let end = config.stop_after.unwrap_or(config.steps).min(config.steps);

    std::fs::create_dir_all(&config.out).map_err(|source| PretrainError::Io {
        path: config.out.clone(),
        source,
    })?;
    let metrics_path = config.out.join("metrics.jsonl");
    let mut metrics_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&metrics_path)
        .map_err(|source| PretrainError::Io {
            path: metrics_path.clone(),
            source,
        })?;

    let mut trainer = Trainer {
        config,
        model: &model,
        visual: &visual,
        loader,
        text_mlm: TextMasking::mlm(model_config.vocab_size),
        text_mvlm: TextMasking::mvlm(model_config.vocab_size),
        blocks: BlockMaskConfig::for_grid(model_config.grid(), model_config.grid(), 0.4),
    };
    let schedule = Schedule {
        peak: config.peak_lr,
        min_lr: config.min_lr,
        warmup: config.warmup_steps.min(config.steps),
        total: config.steps,
    };
    let progress = Progress::new(config.progress, start, end);
    let mut last_metrics = BTreeMap::new();
    let mut last_eval = None;
    let started = Instant::now();
    let samples_per_step = 3 * config.batch_size * config.grad_accum;

    for step in start..end {
        let step_start = Instant::now();
        tch::manual_seed(torch_seed(config.seed, step));
        let lr = schedule.lr(step);
        optimizer.zero_grad();
        let mut sums = StepSums::default();
        for micro in 0..config.grad_accum {
            let mut rng = Rng::derive_path(config.seed, &[step, micro as u64]);
            let loss = trainer.micro_step(&mut rng, &mut sums)?;
            (loss / config.grad_accum as f64).backward();
        }
        let loss = sums.total_loss / config.grad_accum as f64;
        if !loss.is_finite() {
            return Err(PretrainError::NonFinite {
                step: step + 1,
                what: "loss",
                value: loss,
            });
        }
        let grad_norm = optimizer.clip_grad_norm(config.clip_grad);
        if !grad_norm.is_finite() {
            return Err(PretrainError::NonFinite {
                step: step + 1,
                what: "gradient norm",
                value: grad_norm,
            });
        }
        optimizer.step(lr);

        let done = step + 1;
        let mut metrics = sums.metrics(config.grad_accum);
        metrics.insert("lr".into(), lr);
        metrics.insert("grad_norm".into(), grad_norm);
        metrics.insert(
            "samples_per_s".into(),
            samples_per_step as f64 / step_start.elapsed().as_secs_f64().max(1e-9),
        );
        let line = serde_json::json!({ "step": done, "train": metrics });
        writeln!(metrics_file, "{line}").map_err(|source| PretrainError::Io {
            path: metrics_path.clone(),
            source,
        })?;
        progress.update(done, &metrics);
        last_metrics = metrics;

        let is_last = done == end;
        if (config.eval_every > 0 && done % config.eval_every == 0) || is_last {
            let report = evaluate(
                &model,
                &visual,
                &held_out,
                &tokenizer,
                &preprocess,
                config.eval_batches,
                config.batch_size,
                device,
            )?;
            let line = serde_json::json!({ "step": done, "eval": report });
            writeln!(metrics_file, "{line}").map_err(|source| PretrainError::Io {
                path: metrics_path.clone(),
                source,
            })?;
            progress.note(&format!("step {done}: held-out {}", report.summary()));
            last_eval = Some(report);
        }
        if (config.checkpoint_every > 0 && done % config.checkpoint_every == 0) || is_last {
            let summary = TrainingSummary {
                stage: "pretrain".into(),
                step: done,
                total_steps: config.steps,
                seed: config.seed,
                tasks: config.tasks.names(),
                metrics: last_metrics.clone(),
                visual_tokenizer_sha256: visual_sha.clone(),
            };
            save_checkpoint(
                &checkpoint_dir,
                &vs,
                &model,
                &optimizer,
                &trainer.loader.state(),
                &tokenizer,
                &preprocess,
                summary,
                &config.data,
            )?;
        }
    }
    progress.finish();
    let steps_run = end.saturating_sub(start);
    Ok(PretrainOutcome {
        step: end.max(start),
        steps_run,
        resumed_from,
        last_metrics,
        eval: last_eval,
        checkpoint: checkpoint_dir,
        samples_per_second: (steps_run as usize * samples_per_step) as f64
            / started.elapsed().as_secs_f64().max(1e-9),
    })
}

struct Trainer<'a> {
    config: &'a PretrainConfig,
    model: &'a VlBeit,
    visual: &'a VisualTokenizer,
    loader: Loader,
    text_mlm: TextMasking,
    text_mvlm: TextMasking,
    blocks: BlockMaskConfig,
}

#[derive(Default)]
struct StepSums {
    total_loss: f64,
    tasks: BTreeMap<&'static str, (f64, i64, i64)>,
}

impl StepSums {
    fn add(&mut self, name: &'static str, out: &TaskOutput) -> f64 {
        let loss = out.loss.double_value(&[]);
        let entry = self.tasks.entry(name).or_default();
        entry.0 += loss;
        entry.1 += out.correct;
        entry.2 += out.total;
        loss
    }

    fn metrics(&self, micro_batches: usize) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        m.insert("loss".into(), self.total_loss / micro_batches as f64);
        for (name, (loss, correct, total)) in &self.tasks {
            m.insert(format!("{name}_loss"), loss / micro_batches as f64);
            m.insert(
                format!("{name}_acc"),
                if *total == 0 {
                    0.0
                } else {
                    *correct as f64 / *total as f64
                },
            );
        }
        m
    }
}

impl Trainer<'_> {
    /// Forward passes of one micro-batch; returns the summed loss to back-propagate.
    fn micro_step(&mut self, rng: &mut Rng, sums: &mut StepSums) -> Result<Tensor, PretrainError> {
        let batch = self
            .loader
            .next()
            .ok_or_else(|| PretrainError::Config("the training data ran out".into()))??;
        let device = self.config.device;
        let tasks = self.config.tasks;
        let mut total = Tensor::zeros([], (Kind::Float, device));
        if tasks.mlm {
            let t = &batch.texts;
            let out = objectives::mlm(self.model, t, &self.text_mlm, rng, device, true);
            sums.total_loss += sums.add("mlm", &out);
            total += out.loss;
        }
        if tasks.mim {
            let out = objectives::mim(
                self.model,
                self.visual,
                &batch.images,
                &self.blocks,
                rng,
                device,
                true,
            )?;
            sums.total_loss += sums.add("mim", &out);
            total += out.loss;
        }
        if tasks.mvlm {
            let (text, image) = objectives::mvlm(
                self.model,
                self.visual,
                &batch.pairs,
                &self.text_mvlm,
                &self.blocks,
                rng,
                device,
                true,
            )?;
            sums.total_loss += sums.add("mvlm_text", &text) + sums.add("mvlm_image", &image);
            total += text.loss + image.loss;
        }
        Ok(total)
    }
}

fn restore(
    config: &PretrainConfig,
    dir: &Path,
    vs: &mut nn::VarStore,
    optimizer: &mut AdamW,
) -> Result<(u64, LoaderState), PretrainError> {
    let saved = CheckpointConfig::load(dir)?;
    if saved.model != config.model {
        return Err(PretrainError::Config(format!(
            "{} was trained with another model config; use another --out or the same config",
            dir.display()
        )));
    }
    load_weights(vs, &dir.join("model.safetensors"), &config.model)?;
    let (tensors, metadata) = read_safetensors(&dir.join(STATE_FILE))?;
    let invalid = |reason: String| CheckpointError::Invalid {
        path: dir.join(STATE_FILE),
        reason,
    };
    let step: u64 = metadata
        .get("step")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("metadata lacks `step`".into()))?;
    let seed: u64 = metadata
        .get("seed")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("metadata lacks `seed`".into()))?;
    if seed != config.seed {
        return Err(PretrainError::Config(format!(
            "{} was trained with seed {seed}, this run asks for {}",
            dir.display(),
            config.seed
        )));
    }
    let loader = metadata
        .get("loader")
        .ok_or_else(|| invalid("metadata lacks `loader`".into()))?;
    let loader = LoaderState::from_json(loader)?;
    let tensors = tensors
        .into_iter()
        .map(|(k, v)| (k, v.to(config.device)))
        .collect();
    optimizer
        .load_state(step as i64, &tensors)
        .map_err(invalid)?;
    Ok((step, loader))
}

#[allow(clippy::too_many_arguments)]
fn save_checkpoint(
    dir: &Path,
    vs: &nn::VarStore,
    model: &VlBeit,
    optimizer: &AdamW,
    loader: &LoaderState,
    tokenizer: &TextTokenizer,
    preprocess: &PreprocessConfig,
    training: TrainingSummary,
    data: &Path,
) -> Result<(), PretrainError> {
    let golden_inputs = golden_inputs_from_scenes(data)?;
    write_dir_atomically::<PretrainError>(dir, |tmp| {
        let config = CheckpointConfig {
            format_version: CHECKPOINT_FORMAT_VERSION,
            model: model.config().clone(),
            preprocess: preprocess.clone(),
            tokenizer: tokenizer.settings(model.config().max_text_len, Padding::Longest),
            pair_max_len: model.config().max_pair_text_len,
            heads: HeadsConfig::default(),
            training: training.clone(),
        };
        write_json(&tmp.join("config.json"), &config)?;
        save_weights(vs, &tmp.join("model.safetensors"))?;
        tokenizer.save(&tmp.join("tokenizer.json"))?;
        let (step, tensors) = optimizer.state();
        let metadata = HashMap::from([
            ("step".to_string(), step.to_string()),
            ("seed".to_string(), training.seed.to_string()),
            ("loader".to_string(), loader.to_json()),
        ]);
        write_safetensors(&tmp.join(STATE_FILE), &tensors, metadata)?;
        let preprocessor = Preprocessor::new(preprocess.clone())
            .map_err(|e| PretrainError::Config(e.to_string()))?;
        write_golden(
            &tmp.join("golden"),
            model,
            vs.device(),
            &GoldenSet {
                images: golden_inputs.0.clone(),
                texts: golden_inputs.1.clone(),
                pairs: golden_inputs.2.clone(),
                tokenizer,
                preprocessor: &preprocessor,
            },
        )?;
        Ok(())
    })
}

type GoldenInputs = (Vec<(String, Vec<u8>)>, Vec<String>, Vec<(usize, usize)>);

/// Three validation scenes (their PNG files), a caption and a question of each, the matching
/// pairs and one mismatched pair.
fn golden_inputs_from_scenes(data: &Path) -> Result<GoldenInputs, PretrainError> {
    let manifest = DatasetManifest::load(data).map_err(|e| PretrainError::Config(e.to_string()))?;
    let split = manifest
        .splits
        .get("val")
        .or_else(|| manifest.splits.get("train"))
        .ok_or_else(|| PretrainError::Config(format!("{} has no val split", data.display())))?;
    let shard = data.join(&split.shards[0]);
    let mut images = Vec::new();
    let mut texts = Vec::new();
    let mut captions = Vec::new();
    for sample in ShardReader::open(&shard).map_err(DataError::from)?.take(3) {
        let sample = sample.map_err(DataError::from)?;
        let annotation: SceneAnnotation = serde_json::from_slice(&sample.files["json"])
            .map_err(|e| PretrainError::Config(format!("{}: {e}", shard.display())))?;
        images.push((
            format!("image_{}.png", images.len()),
            sample.files["png"].clone(),
        ));
        captions.push(texts.len());
        texts.push(annotation.captions[0].clone());
        if let Some(q) = annotation.questions.first() {
            texts.push(q.question.clone());
        }
    }
    let mut pairs: Vec<(usize, usize)> = captions.iter().copied().enumerate().collect();
    if captions.len() > 1 {
        pairs.push((0, captions[1]));
    }
    Ok((images, texts, pairs))
}

/// A progress bar on a terminal; otherwise a log line every ~5% of the run.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    enabled: bool,
    every: u64,
}

impl Progress {
    fn new(enabled: bool, start: u64, end: u64) -> Self {
        let terminal = enabled && std::io::stderr().is_terminal();
        let bar = terminal.then(|| {
            let bar = indicatif::ProgressBar::new(end);
            bar.set_position(start);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} {msg}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        Self {
            bar,
            enabled,
            every: ((end - start) / 20).max(1),
        }
    }

    fn update(&self, step: u64, m: &BTreeMap<String, f64>) {
        let get = |k: &str| m.get(k).copied().unwrap_or(f64::NAN);
        let mut msg = format!("loss {:.3}", get("loss"));
        for task in ["mlm", "mim", "mvlm_text", "mvlm_image"] {
            if m.contains_key(&format!("{task}_loss")) {
                msg.push_str(&format!(
                    " | {task} {:.3} ({:.0}%)",
                    get(&format!("{task}_loss")),
                    100.0 * get(&format!("{task}_acc"))
                ));
            }
        }
        msg.push_str(&format!(" | {:.0} samples/s", get("samples_per_s")));
        if let Some(bar) = &self.bar {
            bar.set_position(step);
            bar.set_message(msg);
        } else if self.enabled && step.is_multiple_of(self.every) {
            eprintln!("step {step}: {msg}");
        }
    }

    fn note(&self, text: &str) {
        if let Some(bar) = &self.bar {
            bar.println(text);
        } else if self.enabled {
            eprintln!("{text}");
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}
