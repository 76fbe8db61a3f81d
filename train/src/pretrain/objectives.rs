//! The one masked-prediction objective of VL-BEiT applied to its three kinds of data (seed §2.2):
//! MLM on texts, MIM on images (visual tokens as targets), MVLM on image–text pairs in one fused
//! pass. Heads run only on the masked positions: the rest carry no loss.

use tch::{Device, Kind, Reduction, Tensor};
use vlbeit_core::rng::Rng;
use vlbeit_core::text::TextBatch;

use crate::data::{ImageBatch, PairBatch};
use crate::masking::{BlockMaskConfig, IGNORE_INDEX, MaskedText, TextMasking};
use crate::model::VlBeit;
use crate::visual_tokenizer::{VisualTokenizer, VisualTokenizerError};

/// Loss and masked-token accuracy of one task on one batch.
pub struct TaskOutput {
    pub loss: Tensor,
    pub correct: i64,
    pub total: i64,
    /// The labels of the scored positions, `[total]` (for majority-class baselines).
    pub targets: Tensor,
}

impl TaskOutput {
    pub fn accuracy(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.correct as f64 / self.total as f64
        }
    }
}

/// Cross-entropy over the positions whose label is not [`IGNORE_INDEX`]: `states [.., D]` are
/// gathered there first, so the (vocabulary-sized) head runs on masked tokens only.
pub fn masked_prediction(
    states: &Tensor,
    labels: &Tensor,
    head: impl Fn(&Tensor) -> Tensor,
) -> TaskOutput {
    let width = *states.size().last().expect("states have a width");
    let flat_labels = labels.reshape([-1]);
    let positions = flat_labels.ne(IGNORE_INDEX).nonzero().squeeze_dim(1);
    let targets = flat_labels.index_select(0, &positions);
    let selected = states.reshape([-1, width]).index_select(0, &positions);
    let logits = head(&selected).to_kind(Kind::Float);
    let loss = logits.cross_entropy_loss::<Tensor>(&targets, None, Reduction::Mean, -100, 0.0);
    let correct = logits
        .argmax(-1, false)
        .eq_tensor(&targets)
        .sum(Kind::Int64)
        .int64_value(&[]);
    TaskOutput {
        loss,
        correct,
        total: targets.size()[0],
        targets,
    }
}

pub(crate) fn pixels(batch: &ImageBatch, device: Device) -> Tensor {
    let shape: Vec<i64> = batch.shape.iter().map(|&d| d as i64).collect();
    Tensor::from_slice(&batch.pixels).reshape(&shape).to(device)
}

pub(crate) fn ids(values: &[i64], batch: usize, len: usize, device: Device) -> Tensor {
    Tensor::from_slice(values)
        .reshape([batch as i64, len as i64])
        .to(device)
}

/// Block-wise masks for a batch, `[B, N]` bool.
pub(crate) fn image_mask(
    generator: &BlockMaskConfig,
    batch: usize,
    rng: &mut Rng,
    device: Device,
) -> Tensor {
    let mask: Vec<bool> = generator.mask_batch(batch, rng);
    let n = generator.num_patches() as i64;
    Tensor::from_slice(&mask)
        .reshape([batch as i64, n])
        .to(device)
}

/// Visual-token targets where `mask` is set, [`IGNORE_INDEX`] elsewhere.
pub(crate) fn mim_labels(
    tokenizer: &VisualTokenizer,
    pixels: &Tensor,
    mask: &Tensor,
) -> Result<Tensor, VisualTokenizerError> {
    let ids = tokenizer.tokenize(pixels)?.to(pixels.device());
    Ok(ids.where_scalarother(mask, IGNORE_INDEX))
}

/// MLM: text-only data, 15% of tokens masked (80/10/10).
pub fn mlm(
    model: &VlBeit,
    text: &TextBatch,
    masking: &TextMasking,
    rng: &mut Rng,
    device: Device,
    train: bool,
) -> TaskOutput {
    let (batch, len) = (text.batch, text.seq_len);
    let MaskedText {
        input_ids: masked,
        labels,
        ..
    } = masking.mask(&text.input_ids, &text.attention_mask, len, rng);
    let states = model.forward_text(
        &ids(&masked, batch, len, device),
        &ids(&text.attention_mask, batch, len, device),
        train,
    );
    let labels = ids(&labels, batch, len, device);
    masked_prediction(&states, &labels, |s| model.heads().mlm(s))
}

/// MIM: images only, block-wise 40% of patches replaced by the mask token, visual tokens of
/// the frozen tokenizer as targets.
pub fn mim(
    model: &VlBeit,
    tokenizer: &VisualTokenizer,
    images: &ImageBatch,
    generator: &BlockMaskConfig,
    rng: &mut Rng,
    device: Device,
    train: bool,
) -> Result<TaskOutput, VisualTokenizerError> {
    let batch = images.shape[0];
    let pixels = pixels(images, device);
    let mask = image_mask(generator, batch, rng, device);
    let labels = mim_labels(tokenizer, &pixels, &mask)?;
    let states = model.forward_image(&pixels, Some(&mask), train);
    let patches = states.narrow(1, 1, states.size()[1] - 1);
    Ok(masked_prediction(&patches, &labels, |s| {
        model.heads().mim(s)
    }))
}

/// MVLM: 50% of the text tokens and 40% (block-wise) of the patches of a pair masked, one fused
/// pass, both recovered: `(text, image)`.
#[allow(clippy::too_many_arguments)]
pub fn mvlm(
    model: &VlBeit,
    tokenizer: &VisualTokenizer,
    pairs: &PairBatch,
    masking: &TextMasking,
    generator: &BlockMaskConfig,
    rng: &mut Rng,
    device: Device,
    train: bool,
) -> Result<(TaskOutput, TaskOutput), VisualTokenizerError> {
    let (batch, len) = (pairs.text.batch, pairs.text.seq_len);
    let MaskedText {
        input_ids: masked,
        labels: text_labels,
        ..
    } = masking.mask(&pairs.text.input_ids, &pairs.text.attention_mask, len, rng);
    let pixels = pixels(&pairs.images, device);
    let mask = image_mask(generator, batch, rng, device);
    let image_labels = mim_labels(tokenizer, &pixels, &mask)?;
    let fused = model.forward_fusion(
        &ids(&masked, batch, len, device),
        &ids(&pairs.text.attention_mask, batch, len, device),
        &pixels,
        Some(&mask),
        train,
    );
    let text_states = fused.narrow(1, 0, len as i64);
    let patch_states = fused.narrow(1, len as i64 + 1, fused.size()[1] - len as i64 - 1);
    let text = masked_prediction(&text_states, &ids(&text_labels, batch, len, device), |s| {
        model.heads().mlm(s)
    });
    let image = masked_prediction(&patch_states, &image_labels, |s| model.heads().mim(s));
    Ok((text, image))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_prediction_scores_only_labelled_positions() {
        // Head = identity over 3 classes; two labelled positions out of four.
        let states = Tensor::from_slice(&[
            5.0f32, 0.0, 0.0, // predicts 0
            0.0, 5.0, 0.0, // predicts 1
            0.0, 0.0, 5.0, // predicts 2 (ignored)
            5.0, 0.0, 0.0, // predicts 0 (ignored)
        ])
        .reshape([1, 4, 3]);
        let labels = Tensor::from_slice(&[0i64, 2, IGNORE_INDEX, IGNORE_INDEX]).reshape([1, 4]);
        let out = masked_prediction(&states, &labels, |s| s.shallow_clone());
        assert_eq!((out.correct, out.total), (1, 2));
        let manual = states
            .reshape([4, 3])
            .narrow(0, 0, 2)
            .cross_entropy_for_logits(&Tensor::from_slice(&[0i64, 2]));
        assert!((out.loss.double_value(&[]) - manual.double_value(&[])).abs() < 1e-6);
    }
}
