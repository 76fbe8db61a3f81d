//! VQA (seed §3.2): the fusion encoder's pooled [T_CLS] through `heads.vqa`, binary
//! cross-entropy on the soft scores of every answer (VLMo scales the mean by the number of
//! answers, i.e. sums over answers and averages over questions); VQA score of the argmax.

use std::collections::BTreeMap;

use tch::{Reduction, Tensor};
use vlbeit_core::text::TextError;

use super::StepLoss;
use super::context::{TaskModel, chunks, rows_f32};
use super::data::VqaData;
use super::metrics::{argsort_desc, vqa_score};

/// `[B, A]` logits of questions `idx`.
pub fn logits(
    tm: &TaskModel<'_>,
    data: &VqaData,
    idx: &[usize],
    train: bool,
) -> Result<Tensor, TextError> {
    let head = tm.heads.vqa.as_ref().expect("a VQA head");
    let images: Vec<usize> = idx.iter().map(|&q| data.question_image[q]).collect();
    let texts: Vec<&str> = idx.iter().map(|&q| data.questions[q].as_str()).collect();
    let pooled = tm.pooled(&texts, &data.images.batch(&images, tm.device), train)?;
    Ok(head.forward(&pooled))
}

/// Dense soft targets `[B, A]`.
fn target_matrix(targets: &[Vec<(usize, f32)>], idx: &[usize], answers: usize) -> Tensor {
    let mut dense = vec![0.0f32; idx.len() * answers];
    for (row, &q) in idx.iter().enumerate() {
        for &(a, s) in &targets[q] {
            dense[row * answers + a] = s;
        }
    }
    Tensor::from_slice(&dense).reshape([idx.len() as i64, answers as i64])
}

pub fn loss(
    tm: &TaskModel<'_>,
    data: &VqaData,
    targets: &[Vec<(usize, f32)>],
    idx: &[usize],
) -> Result<StepLoss, TextError> {
    let logits = logits(tm, data, idx, true)?;
    let answers = logits.size()[1];
    let target = target_matrix(targets, idx, answers as usize).to(tm.device);
    let loss =
        logits.binary_cross_entropy_with_logits::<Tensor>(&target, None, None, Reduction::Mean)
            * answers as f64;
    let predicted: Vec<usize> = rows_f32(&logits.detach())
        .iter()
        .map(|r| argsort_desc(r)[0])
        .collect();
    let picked: Vec<Vec<(usize, f32)>> = idx.iter().map(|&q| targets[q].clone()).collect();
    let metrics = BTreeMap::from([
        ("bce".to_string(), loss.double_value(&[])),
        ("vqa_score".to_string(), vqa_score(&predicted, &picked)),
    ]);
    Ok(StepLoss { loss, metrics })
}

/// `vqa_score` (percent) with the head's `answers`; questions whose answers are all outside
/// the list score 0 (as VQAv2 counts them).
pub fn evaluate(
    tm: &TaskModel<'_>,
    data: &VqaData,
    answers: &[String],
    batch_size: usize,
) -> Result<BTreeMap<String, f64>, TextError> {
    let targets = data.indexed_targets(answers);
    let mut predicted = Vec::with_capacity(data.questions.len());
    tch::no_grad(|| -> Result<(), TextError> {
        for idx in chunks(data.questions.len(), batch_size) {
            for row in rows_f32(&logits(tm, data, &idx, false)?) {
                predicted.push(argsort_desc(&row)[0]);
            }
        }
        Ok(())
    })?;
    let answerable = targets.iter().filter(|t| !t.is_empty()).count();
    Ok(BTreeMap::from([
        ("vqa_score".to_string(), vqa_score(&predicted, &targets)),
        ("questions".to_string(), data.questions.len() as f64),
        (
            "answerable_pct".to_string(),
            100.0 * answerable as f64 / data.questions.len().max(1) as f64,
        ),
        (
            "accuracy".to_string(),
            // exact match with the best-scored answer
            100.0
                * predicted
                    .iter()
                    .zip(&targets)
                    .filter(|(p, t)| {
                        t.iter()
                            .max_by(|a, b| a.1.total_cmp(&b.1))
                            .is_some_and(|(a, _)| a == *p)
                    })
                    .count() as f64
                / predicted.len().max(1) as f64,
        ),
    ]))
}
