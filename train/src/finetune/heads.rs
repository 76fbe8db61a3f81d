//! Task heads of fine-tuning (DESIGN.md §4.4), created under `heads.*` next to the pretraining
//! heads. Names, shapes and the order of operations are the contract the exporter's graphs
//! mirror (docs/design.md §4.5, "task heads").

use tch::{Tensor, nn, nn::Module};
use vlbeit_core::config::ModelConfig;

use crate::model::init;

/// `heads.{vqa,nlvr2}`: Linear → LayerNorm → GELU (erf) → Linear, as VLMo's classifiers.
#[derive(Debug)]
pub struct MlpClassifier {
    fc1: nn::Linear,
    norm: nn::LayerNorm,
    fc2: nn::Linear,
}

impl MlpClassifier {
    fn new(vs: &nn::Path, in_dim: usize, hidden: usize, out: usize, eps: f64) -> Self {
        Self {
            fc1: init::linear(vs / "fc1", in_dim, hidden, true),
            norm: init::layer_norm(vs / "norm", hidden, eps),
            fc2: init::linear(vs / "fc2", hidden, out, true),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let h = self.norm.forward(&self.fc1.forward(x)).gelu("none");
        self.fc2.forward(&h)
    }
}

/// `heads.classify`: mean of the patch states ([I_CLS] excluded), LayerNorm, Linear D→C.
#[derive(Debug)]
pub struct ClassifyHead {
    norm: nn::LayerNorm,
    fc: nn::Linear,
}

impl ClassifyHead {
    /// `image_states [B, 1 + N, D]` (after the final LayerNorm) → `[B, C]`.
    pub fn forward(&self, image_states: &Tensor) -> Tensor {
        let n = image_states.size()[1];
        let mean = image_states
            .narrow(1, 1, n - 1)
            .mean_dim([1i64].as_slice(), false, None);
        self.fc.forward(&self.norm.forward(&mean))
    }
}

/// `heads.segment`: a light decoder over the patch states of several blocks. Each chosen
/// block's patch states go through `layers.{j}.norm` (LayerNorm D) and `layers.{j}.proj`
/// (Linear D→D); the projections are summed, passed through GELU and `fc` (Linear D→C) per
/// patch, and the `[B, C, g, g]` logits are upsampled bilinearly (align_corners = false) to the
/// image. A SETR-style "naive" decoder: cheap, and it reads several depths as the issue asks.
#[derive(Debug)]
pub struct SegmentHead {
    /// 0-based block indices whose outputs are read.
    pub layers: Vec<usize>,
    norms: Vec<nn::LayerNorm>,
    projs: Vec<nn::Linear>,
    fc: nn::Linear,
    grid: i64,
}

impl SegmentHead {
    /// `block_outputs`: every block's output `[B, 1 + N, D]` (`VlBeit::forward_image_layers`).
    /// Returns per-pixel logits `[B, C, H, W]`.
    pub fn forward(&self, block_outputs: &[Tensor], height: i64, width: i64) -> Tensor {
        let mut sum: Option<Tensor> = None;
        for ((&layer, norm), proj) in self.layers.iter().zip(&self.norms).zip(&self.projs) {
            let states = &block_outputs[layer];
            let n = states.size()[1];
            let h = proj.forward(&norm.forward(&states.narrow(1, 1, n - 1)));
            sum = Some(match sum {
                Some(s) => s + h,
                None => h,
            });
        }
        let logits = self.fc.forward(
            &sum.expect("the decoder reads at least one block")
                .gelu("none"),
        );
        let (b, _, c) = logits.size3().expect("patch logits are [B, N, C]");
        logits
            .transpose(1, 2)
            .reshape([b, c, self.grid, self.grid])
            .upsample_bilinear2d([height, width], false, None, None)
    }
}

/// The blocks the segmentation decoder reads by default: the ends of the four quarters of the
/// encoder (BEiT's 4/6/8/12 of 12 for segmentation, rounded), deduplicated for shallow models.
pub fn default_segment_layers(layers: usize) -> Vec<usize> {
    let mut out: Vec<usize> = [1, 2, 3, 4]
        .iter()
        .map(|q| (q * layers).div_ceil(4).max(1) - 1)
        .collect();
    out.dedup();
    out
}

/// Which task heads to create, with their output sizes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskHeadSpec {
    /// Number of VQA answers.
    pub vqa: Option<usize>,
    pub nlvr2: bool,
    /// Number of classes.
    pub classify: Option<usize>,
    /// Number of segmentation classes and the blocks read.
    pub segment: Option<(usize, Vec<usize>)>,
}

/// The task heads of a fine-tuned model (any subset).
#[derive(Debug, Default)]
pub struct TaskHeads {
    pub vqa: Option<MlpClassifier>,
    pub nlvr2: Option<MlpClassifier>,
    pub classify: Option<ClassifyHead>,
    pub segment: Option<SegmentHead>,
}

impl TaskHeads {
    /// Creates the heads of `spec` under `heads` (pass `vs.root() / "heads"`).
    pub fn new(heads: &nn::Path, config: &ModelConfig, spec: &TaskHeadSpec) -> Self {
        let d = config.hidden;
        let eps = config.layer_norm_eps;
        Self {
            vqa: spec
                .vqa
                .map(|answers| MlpClassifier::new(&(heads / "vqa"), d, 2 * d, answers, eps)),
            nlvr2: spec
                .nlvr2
                .then(|| MlpClassifier::new(&(heads / "nlvr2"), 2 * d, 2 * d, 2, eps)),
            classify: spec.classify.map(|classes| {
                let p = heads / "classify";
                ClassifyHead {
                    norm: init::layer_norm(&p / "norm", d, eps),
                    fc: init::linear(&p / "fc", d, classes, true),
                }
            }),
            segment: spec.segment.as_ref().map(|(classes, layers)| {
                let p = heads / "segment";
                let norms = (0..layers.len())
                    .map(|j| init::layer_norm(&p / "layers" / j / "norm", d, eps))
                    .collect();
                let projs = (0..layers.len())
                    .map(|j| init::linear(&p / "layers" / j / "proj", d, d, true))
                    .collect();
                SegmentHead {
                    layers: layers.clone(),
                    norms,
                    projs,
                    fc: init::linear(&p / "fc", d, *classes, true),
                    grid: config.grid() as i64,
                }
            }),
        }
    }
}

/// Prefixes of the task-head tensors in `model.safetensors`.
pub const TASK_HEAD_PREFIXES: [&str; 4] = [
    "heads.vqa.",
    "heads.nlvr2.",
    "heads.classify.",
    "heads.segment.",
];

/// Whether `name` is a task-head tensor (not part of the pretrained encoder).
pub fn is_task_head(name: &str) -> bool {
    TASK_HEAD_PREFIXES.iter().any(|p| name.starts_with(p))
}
