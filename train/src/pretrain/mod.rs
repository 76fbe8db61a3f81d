//! One-stage VL-BEiT pretraining (seed §2.2, §3.1): every step draws equal numbers of images,
//! texts and pairs; loss = MLM(text) + MIM(image) + MVLM(pair); AdamW with parameter groups,
//! warmup then cosine, drop path, gradient clipping and accumulation.
//!
//! Exact resume on CPU: every random choice of step `s` derives from `(seed, s)` — the
//! masking generator, and libtorch's generator (drop path) which is re-seeded at each step —
//! and the checkpoint holds the weights, the AdamW moments and the loader position.

mod evaluate;
pub mod objectives;
mod run;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tch::Device;
use vlbeit_core::config::ModelConfig;

use crate::optim::AdamWConfig;

pub use evaluate::{EvalReport, WordProbe, evaluate};
pub use run::{PretrainError, PretrainOutcome, pretrain};

/// The pretraining tasks; `--pretrain-tasks` switches them off for the seed's Table 4 ablation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tasks {
    pub mlm: bool,
    pub mim: bool,
    pub mvlm: bool,
}

impl Tasks {
    pub const ALL: Tasks = Tasks {
        mlm: true,
        mim: true,
        mvlm: true,
    };

    /// Parses `mlm,mim,mvlm` (any non-empty subset).
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut tasks = Tasks {
            mlm: false,
            mim: false,
            mvlm: false,
        };
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match name {
                "mlm" => tasks.mlm = true,
                "mim" => tasks.mim = true,
                "mvlm" => tasks.mvlm = true,
                other => {
                    return Err(format!(
                        "unknown pretraining task `{other}` (mlm, mim, mvlm)"
                    ));
                }
            }
        }
        if tasks.names().is_empty() {
            return Err("no pretraining task selected".into());
        }
        Ok(tasks)
    }

    pub fn names(&self) -> Vec<String> {
        [("mlm", self.mlm), ("mim", self.mim), ("mvlm", self.mvlm)]
            .into_iter()
            .filter(|(_, on)| *on)
            .map(|(n, _)| n.to_string())
            .collect()
    }
}

/// Everything a pretraining run needs. Paths are checked before any model is built.
#[derive(Debug, Clone)]
pub struct PretrainConfig {
    pub model: ModelConfig,
    /// A scenes data set directory (`vlbeit-train scenes`).
    pub data: PathBuf,
    /// `tokenizer.json`; its vocabulary must equal `model.vocab_size`.
    pub tokenizer: PathBuf,
    /// A visual tokenizer directory (`vlbeit-train visual-tokenizer`).
    pub visual_tokenizer: PathBuf,
    /// Run directory: `checkpoint/`, `metrics.jsonl`. An existing checkpoint there is resumed.
    pub out: PathBuf,
    pub steps: u64,
    /// Items per task per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    pub peak_lr: f64,
    pub min_lr: f64,
    pub warmup_steps: u64,
    pub adamw: AdamWConfig,
    pub clip_grad: f64,
    pub seed: u64,
    pub tasks: Tasks,
    /// Held-out evaluation every this many steps (and at the end); 0 = only at the end.
    pub eval_every: u64,
    /// Held-out batches per evaluation.
    pub eval_batches: usize,
    /// Checkpoint every this many steps (and at the end); 0 = only at the end.
    pub checkpoint_every: u64,
    /// Stop after this step even if `steps` is larger (a resumable pause; the schedule still
    /// spans `steps`).
    pub stop_after: Option<u64>,
    pub device: Device,
    /// Show a progress bar (when stderr is a terminal) and log lines.
    pub progress: bool,
}

impl PretrainConfig {
    /// Defaults for a run on `model` (the tiny demo values where the seed's do not fit a CPU).
    pub fn new(
        model: ModelConfig,
        data: PathBuf,
        tokenizer: PathBuf,
        visual_tokenizer: PathBuf,
        out: PathBuf,
    ) -> Self {
        Self {
            model,
            data,
            tokenizer,
            visual_tokenizer,
            out,
            steps: 1000,
            batch_size: 32,
            grad_accum: 1,
            peak_lr: 1e-3,
            min_lr: 1e-5,
            warmup_steps: 100,
            adamw: AdamWConfig::default(),
            clip_grad: 3.0,
            seed: 0,
            tasks: Tasks::ALL,
            eval_every: 0,
            eval_batches: 8,
            checkpoint_every: 0,
            stop_after: None,
            device: Device::Cpu,
            progress: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_parse_subsets_and_refuse_unknown_names() {
        assert_eq!(Tasks::parse("mlm,mim,mvlm").unwrap(), Tasks::ALL);
        let t = Tasks::parse("mvlm, mim").unwrap();
        assert_eq!(t.names(), vec!["mim", "mvlm"]);
        assert!(Tasks::parse("mlm,itc").unwrap_err().contains("itc"));
        assert!(Tasks::parse("").is_err());
    }
}
