//! Image classification (seed §3.3, BEiT's linear-probe-style head): mean of the image patch
//! states, LayerNorm, Linear; cross-entropy; top-1 / top-5.

use std::collections::BTreeMap;

use tch::{Reduction, Tensor};

use super::StepLoss;
use super::context::{TaskModel, chunks, rows_f32};
use super::data::ClassifyData;
use super::metrics::top_k_accuracy;

pub fn logits(tm: &TaskModel<'_>, data: &ClassifyData, idx: &[usize], train: bool) -> Tensor {
    let head = tm.heads.classify.as_ref().expect("a classification head");
    let states = tm
        .model
        .forward_image(&data.images.batch(idx, tm.device), None, train);
    head.forward(&states)
}

fn labels(data: &ClassifyData, idx: &[usize]) -> Tensor {
    let l: Vec<i64> = idx.iter().map(|&i| data.labels[i] as i64).collect();
    Tensor::from_slice(&l)
}

pub fn loss(tm: &TaskModel<'_>, data: &ClassifyData, idx: &[usize]) -> StepLoss {
    let logits = logits(tm, data, idx, true);
    let target = labels(data, idx).to(tm.device);
    let loss = logits.cross_entropy_loss::<Tensor>(&target, None, Reduction::Mean, -100, 0.0);
    let labels: Vec<usize> = idx.iter().map(|&i| data.labels[i]).collect();
    let metrics = BTreeMap::from([
        ("ce".to_string(), loss.double_value(&[])),
        (
            "top1".to_string(),
            top_k_accuracy(&rows_f32(&logits.detach()), &labels, 1),
        ),
    ]);
    StepLoss { loss, metrics }
}

/// Top-1 and top-5 accuracy (percent). `class_map[i]` is the head's index of the data's class
/// `i` (the data and the checkpoint may list classes in another order).
pub fn evaluate(
    tm: &TaskModel<'_>,
    data: &ClassifyData,
    class_map: &[usize],
    batch_size: usize,
) -> BTreeMap<String, f64> {
    let mut rows = Vec::with_capacity(data.labels.len());
    tch::no_grad(|| {
        for idx in chunks(data.labels.len(), batch_size) {
            rows.extend(rows_f32(&logits(tm, data, &idx, false)));
        }
    });
    let labels: Vec<usize> = data.labels.iter().map(|&l| class_map[l]).collect();
    BTreeMap::from([
        ("top1".to_string(), top_k_accuracy(&rows, &labels, 1)),
        ("top5".to_string(), top_k_accuracy(&rows, &labels, 5)),
        ("images".to_string(), labels.len() as f64),
    ])
}
