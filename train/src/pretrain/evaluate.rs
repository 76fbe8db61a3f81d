//! Held-out evaluation of pretraining: masked-token accuracy of every task against the
//! majority-class baseline, and a probe of what the image contributes — colour and shape words
//! of captions masked and recovered with the image (fusion) and without it (text only).

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;
use tch::Device;
use vlbeit_core::config::PreprocessConfig;
use vlbeit_core::rng::Rng;
use vlbeit_core::scenes::{COLOUR_NAMES, SHAPE_NAMES};
use vlbeit_core::text::TextTokenizer;

use super::objectives::{self, TaskOutput, ids, masked_prediction, pixels};
use super::run::PretrainError;
use crate::data::{DataSources, Loader, LoaderConfig, PairBatch};
use crate::masking::{BlockMaskConfig, IGNORE_INDEX, TextMasking};
use crate::model::VlBeit;
use crate::visual_tokenizer::VisualTokenizer;

/// Masked-token accuracy over held-out data, with the accuracy of always predicting the most
/// frequent target of the same positions.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Accuracy {
    pub correct: i64,
    pub total: i64,
    pub accuracy: f64,
    pub majority_baseline: f64,
    #[serde(skip)]
    histogram: BTreeMap<i64, i64>,
}

impl Accuracy {
    fn add(&mut self, out: &TaskOutput) {
        self.correct += out.correct;
        self.total += out.total;
        let targets: Vec<i64> = Vec::try_from(out.targets.to(Device::Cpu)).unwrap_or_default();
        for t in targets {
            *self.histogram.entry(t).or_default() += 1;
        }
        let top = self.histogram.values().copied().max().unwrap_or(0);
        self.accuracy = ratio(self.correct, self.total);
        self.majority_baseline = ratio(top, self.total);
    }
}

fn ratio(a: i64, b: i64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Colour or shape words of held-out captions, all masked, recovered with and without the image.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WordProbe {
    pub with_image: Accuracy,
    pub text_only: Accuracy,
}

/// One held-out evaluation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EvalReport {
    pub mlm: Accuracy,
    pub mim: Accuracy,
    pub mvlm_text: Accuracy,
    pub mvlm_image: Accuracy,
    pub colour_words: WordProbe,
    pub shape_words: WordProbe,
    pub batches: usize,
}

impl EvalReport {
    /// One line: accuracy (majority baseline) per task and the word probes.
    pub fn summary(&self) -> String {
        let a = |x: &Accuracy| {
            format!(
                "{:.1}% (base {:.1}%)",
                100.0 * x.accuracy,
                100.0 * x.majority_baseline
            )
        };
        format!(
            "mlm {} | mim {} | mvlm-text {} | mvlm-image {} | colour words: image {:.1}% vs text-only {:.1}% | shape words: image {:.1}% vs text-only {:.1}%",
            a(&self.mlm),
            a(&self.mim),
            a(&self.mvlm_text),
            a(&self.mvlm_image),
            100.0 * self.colour_words.with_image.accuracy,
            100.0 * self.colour_words.text_only.accuracy,
            100.0 * self.shape_words.with_image.accuracy,
            100.0 * self.shape_words.text_only.accuracy,
        )
    }
}

/// Ids of the tokenizer pieces that are a whole colour word, and a whole shape word (or its
/// plural).
fn word_ids(tokenizer: &TextTokenizer) -> (HashSet<i64>, HashSet<i64>) {
    let mut colours = HashSet::new();
    let mut shapes = HashSet::new();
    for id in tokenizer.regular_ids() {
        let Some(piece) = tokenizer.id_to_token(id) else {
            continue;
        };
        let word = piece.trim_start_matches('\u{2581}');
        if COLOUR_NAMES.contains(&word) {
            colours.insert(id);
        }
        if SHAPE_NAMES
            .iter()
            .any(|s| *s == word || format!("{s}s") == word)
        {
            shapes.insert(id);
        }
    }
    (colours, shapes)
}

/// Masks every token of `words` in the pair texts; scores with the image (fusion) and without
/// it (text mode), through the same MLM head.
fn probe(
    model: &VlBeit,
    pairs: &PairBatch,
    words: &HashSet<i64>,
    mask_id: i64,
    device: Device,
    result: &mut WordProbe,
) {
    let (b, l) = (pairs.text.batch, pairs.text.seq_len);
    let mut masked = pairs.text.input_ids.clone();
    let mut labels = vec![IGNORE_INDEX; masked.len()];
    for (i, id) in pairs.text.input_ids.iter().enumerate() {
        if pairs.text.attention_mask[i] != 0 && words.contains(id) {
            labels[i] = *id;
            masked[i] = mask_id;
        }
    }
    if labels.iter().all(|&x| x == IGNORE_INDEX) {
        return;
    }
    let input = ids(&masked, b, l, device);
    let attention = ids(&pairs.text.attention_mask, b, l, device);
    let labels = ids(&labels, b, l, device);
    let fused = model.forward_fusion(
        &input,
        &attention,
        &pixels(&pairs.images, device),
        None,
        false,
    );
    let text_part = fused.narrow(1, 0, l as i64);
    result
        .with_image
        .add(&masked_prediction(&text_part, &labels, |s| {
            model.heads().mlm(s)
        }));
    let text_only = model.forward_text(&input, &attention, false);
    result
        .text_only
        .add(&masked_prediction(&text_only, &labels, |s| {
            model.heads().mlm(s)
        }));
}

/// Evaluates on up to `batches` held-out batches with fixed masks (the same positions at every
/// evaluation of a run, so curves are comparable).
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    model: &VlBeit,
    visual: &VisualTokenizer,
    held_out: &DataSources,
    tokenizer: &TextTokenizer,
    preprocess: &PreprocessConfig,
    batches: usize,
    batch_size: usize,
    device: Device,
) -> Result<EvalReport, PretrainError> {
    let config = model.config();
    let loader = Loader::new(
        held_out,
        tokenizer.clone(),
        preprocess.clone(),
        LoaderConfig::eval(config, batch_size).with_prefetch(0),
    )?;
    let mlm_masking = TextMasking::mlm(config.vocab_size);
    let mvlm_masking = TextMasking::mvlm(config.vocab_size);
    let blocks = BlockMaskConfig::for_grid(config.grid(), config.grid(), 0.4);
    let (colour_ids, shape_ids) = word_ids(tokenizer);
    let mask_id = tokenizer.special_ids().mask;
    let mut report = EvalReport::default();
    let mut rng = Rng::new(0xE7A1);
    tch::no_grad(|| -> Result<(), PretrainError> {
        for batch in loader.take(batches) {
            let batch = batch?;
            let t = &batch.texts;
            report.mlm.add(&objectives::mlm(
                model,
                t,
                &mlm_masking,
                &mut rng,
                device,
                false,
            ));
            report.mim.add(&objectives::mim(
                model,
                visual,
                &batch.images,
                &blocks,
                &mut rng,
                device,
                false,
            )?);
            let (text, image) = objectives::mvlm(
                model,
                visual,
                &batch.pairs,
                &mvlm_masking,
                &blocks,
                &mut rng,
                device,
                false,
            )?;
            report.mvlm_text.add(&text);
            report.mvlm_image.add(&image);
            probe(
                model,
                &batch.pairs,
                &colour_ids,
                mask_id,
                device,
                &mut report.colour_words,
            );
            probe(
                model,
                &batch.pairs,
                &shape_ids,
                mask_id,
                device,
                &mut report.shape_words,
            );
            report.batches += 1;
        }
        Ok(())
    })?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Tensor;

    #[test]
    fn accuracy_tracks_the_majority_baseline() {
        let mut acc = Accuracy::default();
        acc.add(&TaskOutput {
            loss: Tensor::from(0.0f32),
            correct: 2,
            total: 4,
            targets: Tensor::from_slice(&[7i64, 7, 7, 3]),
        });
        assert!((acc.accuracy - 0.5).abs() < 1e-12);
        assert!((acc.majority_baseline - 0.75).abs() < 1e-12);
    }
}
