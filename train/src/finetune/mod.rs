//! Fine-tuning and evaluation of VL-BEiT on the downstream tasks of the seed (§3.2, §3.3):
//! image–text retrieval, VQA, NLVR2, image classification and semantic segmentation.
//!
//! A run starts from a pretrained (or fine-tuned) checkpoint, adds the task's head under
//! `heads.*` (names in [`heads`], the contract of docs/design.md), trains on the task's data
//! with AdamW (optionally with BEiT's layer-wise learning-rate decay, and at a larger
//! resolution: the image position table is interpolated), evaluates on the held-out split and
//! writes a checkpoint directory of the same format as pretraining's, whose golden outputs
//! include the exported heads.
//!
//! ```no_run
//! use vlbeit_train::finetune::{FinetuneConfig, Task, finetune};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = FinetuneConfig::new(
//!     Task::Vqa,
//!     "data/pretrain/checkpoint".into(),
//!     "data/scenes".into(),
//!     "data/finetune/vqa".into(),
//! );
//! config.steps = 300;
//! let outcome = finetune(&config)?;
//! println!("VQA score {:.1}", outcome.eval["vqa_score"]);
//! # Ok(()) }
//! ```

pub mod classify;
pub mod context;
pub mod data;
pub mod formats;
pub mod heads;
mod load;
pub mod metrics;
pub mod nlvr2;
pub mod retrieval;
mod run;
pub mod segment;
pub mod vqa;

use std::collections::BTreeMap;
use std::path::PathBuf;

use tch::{Device, Tensor};

use crate::optim::AdamWConfig;

pub use context::TaskModel;
pub use data::{
    ClassifyData, ImageSet, Nlvr2Data, RetrievalData, SegmentData, TaskDataError, VqaData,
};
pub use formats::DataFormat;
pub use heads::{TaskHeadSpec, TaskHeads, default_segment_layers, is_task_head};
pub use load::{FinetunedModel, evaluate_task, load_task_data};
pub use run::{FinetuneError, FinetuneOutcome, finetune};

/// A downstream task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Task {
    Retrieval,
    Vqa,
    Nlvr2,
    Classify,
    Segment,
}

impl Task {
    pub const ALL: [Task; 5] = [
        Task::Retrieval,
        Task::Vqa,
        Task::Nlvr2,
        Task::Classify,
        Task::Segment,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Task::Retrieval => "retrieval",
            Task::Vqa => "vqa",
            Task::Nlvr2 => "nlvr2",
            Task::Classify => "classify",
            Task::Segment => "segment",
        }
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Task {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Task::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| format!("unknown task `{s}` (retrieval, vqa, nlvr2, classify, segment)"))
    }
}

/// The loss of one training step and the metrics logged with it.
pub struct StepLoss {
    pub loss: Tensor,
    pub metrics: BTreeMap<String, f64>,
}

/// The task data of one split.
#[derive(Debug)]
pub enum TaskData {
    Retrieval(RetrievalData),
    Vqa(VqaData),
    Nlvr2(Nlvr2Data),
    Classify(ClassifyData),
    Segment(SegmentData),
}

impl TaskData {
    /// Keeps the first `n` units (images for retrieval, segmentation and classification,
    /// questions for VQA, items for NLVR2) — a smaller evaluation set.
    pub fn truncate(&mut self, n: usize) {
        fn images(set: &mut ImageSet, n: usize) {
            let n = n.min(set.len());
            set.names.truncate(n);
            set.pixels = set.pixels.narrow(0, 0, n as i64);
        }
        match self {
            TaskData::Retrieval(d) => {
                images(&mut d.images, n);
                let keep: Vec<usize> = (0..d.texts.len())
                    .filter(|&t| d.text_image[t] < n)
                    .collect();
                d.texts = keep.iter().map(|&t| d.texts[t].clone()).collect();
                d.text_image = keep.iter().map(|&t| d.text_image[t]).collect();
            }
            TaskData::Vqa(d) => {
                d.questions.truncate(n);
                d.question_image.truncate(n);
                d.targets.truncate(n);
            }
            TaskData::Nlvr2(d) => {
                d.statements.truncate(n);
                d.left.truncate(n);
                d.right.truncate(n);
                d.labels.truncate(n);
            }
            TaskData::Classify(d) => {
                images(&mut d.images, n);
                d.labels.truncate(n);
            }
            TaskData::Segment(d) => {
                let m = n.min(d.images.len()) as i64;
                images(&mut d.images, n);
                d.masks = d.masks.narrow(0, 0, m);
            }
        }
    }

    /// Items one epoch draws: images for retrieval (with one of their texts), else examples.
    pub fn units(&self) -> usize {
        match self {
            TaskData::Retrieval(d) => d.images.len(),
            TaskData::Vqa(d) => d.questions.len(),
            TaskData::Nlvr2(d) => d.statements.len(),
            TaskData::Classify(d) => d.labels.len(),
            TaskData::Segment(d) => d.images.len(),
        }
    }
}

/// Everything a fine-tuning run needs.
#[derive(Debug, Clone)]
pub struct FinetuneConfig {
    pub task: Task,
    /// Checkpoint directory to start from (pretraining's `checkpoint/`, or a fine-tuned one;
    /// task heads in it are not loaded).
    pub init: PathBuf,
    /// Data directory, read as `format` says.
    pub data: PathBuf,
    pub format: DataFormat,
    pub train_split: String,
    pub eval_split: String,
    /// Run directory: `checkpoint/`, `metrics.jsonl`, `eval.json`.
    pub out: PathBuf,
    pub steps: u64,
    pub batch_size: usize,
    pub peak_lr: f64,
    pub min_lr: f64,
    pub warmup_steps: u64,
    pub adamw: AdamWConfig,
    pub clip_grad: f64,
    pub seed: u64,
    /// BEiT's layer-wise learning-rate decay (e.g. 0.65); `None` = every layer at the full rate.
    pub layer_decay: Option<f64>,
    /// Fine-tune at this image side (pixels) instead of the checkpoint's; the position table
    /// is interpolated bicubically.
    pub image_size: Option<usize>,
    /// Stochastic depth for fine-tuning; `None` keeps the checkpoint's.
    pub drop_path: Option<f64>,
    /// Blocks read by the segmentation decoder; `None` = [`default_segment_layers`].
    pub segment_layers: Option<Vec<usize>>,
    /// Retrieval: texts (images) per query reranked by the fusion encoder at evaluation.
    pub rerank_k: usize,
    pub eval_batch_size: usize,
    /// Load the init checkpoint's weights (`false`: a no-pretraining baseline that takes only
    /// the config, tokenizer and golden inputs from `init`).
    pub init_weights: bool,
    /// Skip the evaluation at the end (e.g. when the caller evaluates other splits itself).
    pub skip_eval: bool,
    pub device: Device,
    pub progress: bool,
}

impl FinetuneConfig {
    /// Defaults for the tiny model on the synthetic scenes.
    pub fn new(task: Task, init: PathBuf, data: PathBuf, out: PathBuf) -> Self {
        Self {
            task,
            init,
            data,
            format: DataFormat::Scenes,
            train_split: "train".into(),
            eval_split: "val".into(),
            out,
            steps: 300,
            batch_size: 32,
            peak_lr: 5e-4,
            min_lr: 1e-6,
            warmup_steps: 30,
            adamw: AdamWConfig {
                weight_decay: 0.01,
                ..AdamWConfig::default()
            },
            clip_grad: 3.0,
            seed: 0,
            layer_decay: None,
            image_size: None,
            drop_path: None,
            segment_layers: None,
            rerank_k: 8,
            eval_batch_size: 64,
            init_weights: true,
            skip_eval: false,
            device: Device::Cpu,
            progress: true,
        }
    }
}
