//! NLVR2 (seed §3.2, VLMo's "pair" method): the statement is fused with each of the two images,
//! the two pooled vectors are concatenated and `heads.nlvr2` classifies true / false.

use std::collections::BTreeMap;

use tch::{Kind, Reduction, Tensor};
use vlbeit_core::text::TextError;

use super::StepLoss;
use super::context::{TaskModel, chunks, vec_i64};
use super::data::Nlvr2Data;

/// `[B, 2]` logits (index 1 = true) of items `idx`.
pub fn logits(
    tm: &TaskModel<'_>,
    data: &Nlvr2Data,
    idx: &[usize],
    train: bool,
) -> Result<Tensor, TextError> {
    let head = tm.heads.nlvr2.as_ref().expect("an NLVR2 head");
    let texts: Vec<&str> = idx.iter().map(|&k| data.statements[k].as_str()).collect();
    let left: Vec<usize> = idx.iter().map(|&k| data.left[k]).collect();
    let right: Vec<usize> = idx.iter().map(|&k| data.right[k]).collect();
    let pooled_left = tm.pooled(&texts, &data.images.batch(&left, tm.device), train)?;
    let pooled_right = tm.pooled(&texts, &data.images.batch(&right, tm.device), train)?;
    Ok(head.forward(&Tensor::cat(&[pooled_left, pooled_right], 1)))
}

fn labels(data: &Nlvr2Data, idx: &[usize]) -> Tensor {
    let l: Vec<i64> = idx.iter().map(|&k| i64::from(data.labels[k])).collect();
    Tensor::from_slice(&l)
}

pub fn loss(tm: &TaskModel<'_>, data: &Nlvr2Data, idx: &[usize]) -> Result<StepLoss, TextError> {
    let logits = logits(tm, data, idx, true)?;
    let target = labels(data, idx).to(tm.device);
    let loss = logits.cross_entropy_loss::<Tensor>(&target, None, Reduction::Mean, -100, 0.0);
    let acc = logits
        .argmax(-1, false)
        .eq_tensor(&target)
        .to_kind(Kind::Float)
        .mean(Kind::Float)
        .double_value(&[]);
    let metrics = BTreeMap::from([
        ("ce".to_string(), loss.double_value(&[])),
        ("accuracy".to_string(), 100.0 * acc),
    ]);
    Ok(StepLoss { loss, metrics })
}

/// Accuracy (percent).
pub fn evaluate(
    tm: &TaskModel<'_>,
    data: &Nlvr2Data,
    batch_size: usize,
) -> Result<BTreeMap<String, f64>, TextError> {
    let mut correct = 0usize;
    tch::no_grad(|| -> Result<(), TextError> {
        for idx in chunks(data.statements.len(), batch_size) {
            let predicted = vec_i64(&logits(tm, data, &idx, false)?.argmax(-1, false));
            correct += predicted
                .iter()
                .zip(&idx)
                .filter(|(p, k)| **p == i64::from(data.labels[**k]))
                .count();
        }
        Ok(())
    })?;
    Ok(BTreeMap::from([
        (
            "accuracy".to_string(),
            100.0 * correct as f64 / data.statements.len().max(1) as f64,
        ),
        ("items".to_string(), data.statements.len() as f64),
    ]))
}
