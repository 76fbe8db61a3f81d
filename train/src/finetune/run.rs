//! The fine-tuning loop: init checkpoint → model + task head → AdamW (warmup + cosine,
//! optional layer-wise decay) → evaluation → checkpoint directory with golden head outputs.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use tch::nn;
use vlbeit_core::config::PreprocessConfig;
use vlbeit_core::preprocess::Preprocessor;
use vlbeit_core::rng::Rng;
use vlbeit_core::text::{Padding, TextError, TextTokenizer};

use super::context::TaskModel;
use super::data::TaskDataError;
use super::heads::{TaskHeadSpec, TaskHeads, default_segment_layers, is_task_head};
use super::load::{evaluate_task, load_task_data};
use super::{FinetuneConfig, StepLoss, Task, TaskData, classify, nlvr2, retrieval, segment, vqa};
use crate::checkpoint::{
    CHECKPOINT_FORMAT_VERSION, CheckpointConfig, CheckpointError, HeadsConfig, SegmentHeadConfig,
    TrainingSummary, write_dir_atomically, write_json,
};
use crate::golden::{GoldenInputs, GoldenSet, write_golden_with_heads};
use crate::model::{VlBeit, WeightsError, load_weights_except, save_weights};
use crate::optim::{AdamW, Schedule, layer_decay_scale};

#[derive(Debug, thiserror::Error)]
pub enum FinetuneError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Data(#[from] TaskDataError),
    #[error("text tokenizer: {0}")]
    Text(#[from] TextError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("step {step}: the {what} is not finite ({value}); stopped without saving")]
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

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct FinetuneOutcome {
    pub checkpoint: PathBuf,
    pub steps: u64,
    /// Training metrics of the last step.
    pub last_metrics: BTreeMap<String, f64>,
    /// Metrics on the evaluation split (empty with `skip_eval`).
    pub eval: BTreeMap<String, f64>,
    /// Training loss of every step.
    pub losses: Vec<f64>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FinetuneError + '_ {
    move |source| FinetuneError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The init checkpoint's preprocessing at another image side (the resize margin scales along).
fn preprocess_at(init: &PreprocessConfig, image_size: usize) -> PreprocessConfig {
    let old = init.image_size as usize;
    PreprocessConfig {
        image_size: image_size as u32,
        resize: (init.resize as usize * image_size / old.max(1)).max(image_size) as u32,
        ..init.clone()
    }
}

/// Draws epochs of a shuffled `0..n`, `batch` distinct units at a time.
struct EpochSampler {
    n: usize,
    seed: u64,
    epoch: u64,
    order: Vec<usize>,
    pos: usize,
}

impl EpochSampler {
    fn new(n: usize, seed: u64) -> Self {
        let mut s = Self {
            n,
            seed,
            epoch: 0,
            order: Vec::new(),
            pos: 0,
        };
        s.shuffle();
        s
    }

    fn shuffle(&mut self) {
        self.order = (0..self.n).collect();
        Rng::derive_path(self.seed, &[0x6570_6f63, self.epoch]).shuffle(&mut self.order);
        self.pos = 0;
    }

    fn next(&mut self, batch: usize) -> Vec<usize> {
        let batch = batch.min(self.n);
        let mut out = Vec::with_capacity(batch);
        while out.len() < batch {
            if self.pos == self.order.len() {
                self.epoch += 1;
                self.shuffle();
            }
            let unit = self.order[self.pos];
            self.pos += 1;
            if !out.contains(&unit) {
                out.push(unit);
            }
        }
        out
    }
}

/// Runs fine-tuning as `config` says and writes `config.out/checkpoint`.
pub fn finetune(config: &FinetuneConfig) -> Result<FinetuneOutcome, FinetuneError> {
    if config.steps == 0 || config.batch_size == 0 {
        return Err(FinetuneError::Config(
            "steps and batch size must be at least 1".into(),
        ));
    }
    if config.task == Task::Retrieval && config.batch_size < 2 {
        return Err(FinetuneError::Config(
            "retrieval needs a batch of at least 2 (in-batch negatives)".into(),
        ));
    }
    let device = config.device;
    let init = CheckpointConfig::load(&config.init)?;
    let mut model_config = init.model.clone();
    if let Some(size) = config.image_size {
        model_config.image_size = size;
    }
    if let Some(rate) = config.drop_path {
        model_config.drop_path = rate;
    }
    model_config
        .validate()
        .map_err(|e| FinetuneError::Config(format!("model config: {e}")))?;
    let preprocess = preprocess_at(&init.preprocess, model_config.image_size);
    let tokenizer = TextTokenizer::load(&config.init.join("tokenizer.json"))?;

    let train = load_task_data(
        config.task,
        config.format,
        &config.data,
        &config.train_split,
        &preprocess,
    )?;
    if train.units() == 0 {
        return Err(FinetuneError::Config(format!(
            "{}: split `{}` has no {} examples",
            config.data.display(),
            config.train_split,
            config.task
        )));
    }
    let mut heads_config = HeadsConfig::default();
    let mut spec = TaskHeadSpec::default();
    match &train {
        TaskData::Vqa(d) => {
            spec.vqa = Some(d.answers.len());
            heads_config.answers = Some(d.answers.clone());
        }
        TaskData::Nlvr2(_) => spec.nlvr2 = true,
        TaskData::Classify(d) => {
            spec.classify = Some(d.classes.len());
            heads_config.classes = Some(d.classes.clone());
        }
        TaskData::Segment(d) => {
            let layers = config
                .segment_layers
                .clone()
                .unwrap_or_else(|| default_segment_layers(model_config.layers));
            if layers.is_empty() || layers.iter().any(|&l| l >= model_config.layers) {
                return Err(FinetuneError::Config(format!(
                    "segmentation layers {layers:?} must be non-empty and below {}",
                    model_config.layers
                )));
            }
            spec.segment = Some((d.classes.len(), layers.clone()));
            heads_config.segment = Some(SegmentHeadConfig {
                classes: d.classes.clone(),
                layers,
            });
        }
        TaskData::Retrieval(_) => {}
    }

    tch::manual_seed((Rng::derive_path(config.seed, &[0x6674]).next_u64() >> 1) as i64);
    let mut vs = nn::VarStore::new(device);
    let model = VlBeit::new(&vs.root(), &model_config);
    if config.init_weights {
        load_weights_except(
            &mut vs,
            &config.init.join("model.safetensors"),
            &model_config,
            &is_task_head,
        )?;
    }
    let heads = TaskHeads::new(&(vs.root() / "heads"), &model_config, &spec);
    let mut optimizer = AdamW::new(&vs, config.adamw);
    if let Some(decay) = config.layer_decay {
        let layers = model_config.layers;
        optimizer.set_lr_scales(|name| layer_decay_scale(name, layers, decay));
    }
    let tm = TaskModel {
        model: &model,
        heads: &heads,
        tokenizer: &tokenizer,
        device,
    };
    let vqa_targets = match &train {
        TaskData::Vqa(d) => d.indexed_targets(&d.answers),
        _ => Vec::new(),
    };

    std::fs::create_dir_all(&config.out).map_err(io(&config.out))?;
    let metrics_path = config.out.join("metrics.jsonl");
    let mut metrics_file = std::fs::File::create(&metrics_path).map_err(io(&metrics_path))?;
    let schedule = Schedule {
        peak: config.peak_lr,
        min_lr: config.min_lr,
        warmup: config.warmup_steps.min(config.steps),
        total: config.steps,
    };
    let mut sampler = EpochSampler::new(train.units(), config.seed);
    let mut last_metrics = BTreeMap::new();
    let mut losses = Vec::with_capacity(config.steps as usize);
    let every = (config.steps / 10).max(1);
    for step in 0..config.steps {
        let lr = schedule.lr(step);
        optimizer.zero_grad();
        let mut rng = Rng::derive_path(config.seed, &[step, 0x7374]);
        let units = sampler.next(config.batch_size);
        let StepLoss { loss, mut metrics } = match &train {
            TaskData::Retrieval(d) => {
                let texts: Vec<usize> = units
                    .iter()
                    .map(|&i| {
                        let own: Vec<usize> = (0..d.texts.len())
                            .filter(|&t| d.text_image[t] == i)
                            .collect();
                        *rng.choose(&own).unwrap_or(&0)
                    })
                    .collect();
                if units.iter().any(|&i| !d.text_image.contains(&i)) {
                    return Err(FinetuneError::Config(format!(
                        "retrieval: an image of {} has no text",
                        config.data.display()
                    )));
                }
                let out = retrieval::loss(&tm, d, &units, &texts, &mut rng)?;
                StepLoss {
                    metrics: BTreeMap::from([
                        ("itc".to_string(), out.itc),
                        ("itm".to_string(), out.itm),
                        ("itm_acc".to_string(), 100.0 * out.itm_acc),
                        (
                            "temperature".to_string(),
                            1.0 / model.heads().logit_scale().exp().double_value(&[]),
                        ),
                    ]),
                    loss: out.loss,
                }
            }
            TaskData::Vqa(d) => vqa::loss(&tm, d, &vqa_targets, &units)?,
            TaskData::Nlvr2(d) => nlvr2::loss(&tm, d, &units)?,
            TaskData::Classify(d) => classify::loss(&tm, d, &units),
            TaskData::Segment(d) => segment::loss(&tm, d, &units),
        };
        let value = loss.double_value(&[]);
        if !value.is_finite() {
            return Err(FinetuneError::NonFinite {
                step: step + 1,
                what: "loss",
                value,
            });
        }
        loss.backward();
        let grad_norm = optimizer.clip_grad_norm(config.clip_grad);
        if !grad_norm.is_finite() {
            return Err(FinetuneError::NonFinite {
                step: step + 1,
                what: "gradient norm",
                value: grad_norm,
            });
        }
        optimizer.step(lr);
        metrics.insert("loss".into(), value);
        metrics.insert("lr".into(), lr);
        metrics.insert("grad_norm".into(), grad_norm);
        let line = serde_json::json!({ "step": step + 1, "train": metrics });
        writeln!(metrics_file, "{line}").map_err(io(&metrics_path))?;
        if config.progress && ((step + 1) % every == 0 || step == 0) {
            eprintln!(
                "finetune {} step {}/{}: loss {value:.4}",
                config.task,
                step + 1,
                config.steps
            );
        }
        losses.push(value);
        last_metrics = metrics;
    }

    let eval = if config.skip_eval {
        BTreeMap::new()
    } else {
        let data = load_task_data(
            config.task,
            config.format,
            &config.data,
            &config.eval_split,
            &preprocess,
        )?;
        let metrics = evaluate_task(
            &tm,
            &data,
            heads_config.answers.as_deref(),
            heads_config.classes.as_deref(),
            config.rerank_k,
            config.eval_batch_size,
        )?;
        let line = serde_json::json!({ "step": config.steps, "eval": metrics, "split": config.eval_split });
        writeln!(metrics_file, "{line}").map_err(io(&metrics_path))?;
        write_json(&config.out.join("eval.json"), &metrics)?;
        metrics
    };

    let mut summary_metrics = last_metrics.clone();
    for (k, v) in &eval {
        summary_metrics.insert(format!("eval_{k}"), *v);
    }
    let checkpoint = config.out.join("checkpoint");
    let checkpoint_config = CheckpointConfig {
        format_version: CHECKPOINT_FORMAT_VERSION,
        model: model_config.clone(),
        preprocess: preprocess.clone(),
        tokenizer: tokenizer.settings(model_config.max_text_len, Padding::Longest),
        pair_max_len: model_config.max_pair_text_len,
        heads: heads_config,
        training: TrainingSummary {
            stage: format!("finetune:{}", config.task),
            step: config.steps,
            total_steps: config.steps,
            seed: config.seed,
            tasks: vec![config.task.name().to_string()],
            metrics: summary_metrics,
            visual_tokenizer_sha256: init.training.visual_tokenizer_sha256.clone(),
        },
    };
    save_finetuned(
        &checkpoint,
        &config.init,
        &checkpoint_config,
        &vs,
        &model,
        &heads,
        &tokenizer,
    )?;
    Ok(FinetuneOutcome {
        checkpoint,
        steps: config.steps,
        last_metrics,
        eval,
        losses,
    })
}

/// Writes a fine-tuned checkpoint: config.json, model.safetensors (encoder, pretraining and
/// task heads), tokenizer.json, and golden/ replayed from the init checkpoint's golden inputs.
pub(crate) fn save_finetuned(
    dir: &Path,
    init: &Path,
    config: &CheckpointConfig,
    vs: &nn::VarStore,
    model: &VlBeit,
    heads: &TaskHeads,
    tokenizer: &TextTokenizer,
) -> Result<(), FinetuneError> {
    let golden_dir = init.join("golden");
    let inputs_path = golden_dir.join("inputs.json");
    let inputs: GoldenInputs =
        serde_json::from_slice(&std::fs::read(&inputs_path).map_err(io(&inputs_path))?)
            .map_err(|e| FinetuneError::Config(format!("{}: {e}", inputs_path.display())))?;
    let mut images = Vec::with_capacity(inputs.images.len());
    for name in &inputs.images {
        let path = golden_dir.join(name);
        images.push((name.clone(), std::fs::read(&path).map_err(io(&path))?));
    }
    let preprocessor = Preprocessor::new(config.preprocess.clone())
        .map_err(|e| FinetuneError::Config(e.to_string()))?;
    write_dir_atomically::<FinetuneError>(dir, |tmp| {
        write_json(&tmp.join("config.json"), config)?;
        save_weights(vs, &tmp.join("model.safetensors"))?;
        tokenizer.save(&tmp.join("tokenizer.json"))?;
        write_golden_with_heads(
            &tmp.join("golden"),
            model,
            Some(heads),
            vs.device(),
            &GoldenSet {
                images: images.clone(),
                texts: inputs.texts.clone(),
                pairs: inputs.pairs.clone(),
                tokenizer,
                preprocessor: &preprocessor,
            },
        )?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_sampler_gives_distinct_units_and_covers_each_epoch() {
        let mut s = EpochSampler::new(10, 4);
        let mut seen = Vec::new();
        for _ in 0..5 {
            let batch = s.next(4);
            let mut sorted = batch.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), 4, "{batch:?}");
            seen.extend(batch);
        }
        // the first 8 draws are the first epoch's first 8 units: no repeats
        let mut first: Vec<usize> = seen[..8].to_vec();
        first.sort_unstable();
        first.dedup();
        assert_eq!(first.len(), 8);
        // a batch larger than the data set is the whole set
        assert_eq!(EpochSampler::new(3, 0).next(8).len(), 3);
        // seeded: the same seed draws the same batches
        assert_eq!(EpochSampler::new(10, 4).next(4), seen[..4].to_vec());
    }

    #[test]
    fn resolution_change_scales_the_resize_margin() {
        let init = PreprocessConfig {
            resize: 72,
            ..PreprocessConfig::for_image_size(64)
        };
        let p = preprocess_at(&init, 96);
        assert_eq!((p.image_size, p.resize), (96, 108));
        assert_eq!(p.mean, init.mean);
    }
}
