//! Semantic segmentation (seed §3.3): `heads.segment` over the patch states of several blocks
//! to per-pixel class logits; per-pixel cross-entropy ignoring label 255; mean IoU.

use std::collections::BTreeMap;

use tch::{Reduction, Tensor};

use super::StepLoss;
use super::context::{TaskModel, chunks, vec_i64};
use super::data::{IGNORE_LABEL, SegmentData};
use super::metrics::IouCounts;

/// `[B, C, H, W]` logits of images `idx`.
pub fn logits(tm: &TaskModel<'_>, data: &SegmentData, idx: &[usize], train: bool) -> Tensor {
    let head = tm.heads.segment.as_ref().expect("a segmentation head");
    let pixels = data.images.batch(idx, tm.device);
    let size = pixels.size();
    let layers = tm.model.forward_image_layers(&pixels, None, train);
    head.forward(&layers, size[2], size[3])
}

fn masks(data: &SegmentData, idx: &[usize]) -> Tensor {
    let index: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
    data.masks.index_select(0, &Tensor::from_slice(&index))
}

pub fn loss(tm: &TaskModel<'_>, data: &SegmentData, idx: &[usize]) -> StepLoss {
    let logits = logits(tm, data, idx, true);
    let target = masks(data, idx).to(tm.device);
    let loss =
        logits.cross_entropy_loss::<Tensor>(&target, None, Reduction::Mean, IGNORE_LABEL, 0.0);
    let classes = logits.size()[1] as usize;
    let mut counts = IouCounts::new(classes);
    counts.add(
        &vec_i64(&logits.detach().argmax(1, false)),
        &vec_i64(&target),
    );
    let metrics = BTreeMap::from([
        ("ce".to_string(), loss.double_value(&[])),
        ("miou".to_string(), counts.mean_iou()),
    ]);
    StepLoss { loss, metrics }
}

/// Mean IoU and pixel accuracy (percent).
pub fn evaluate(
    tm: &TaskModel<'_>,
    data: &SegmentData,
    batch_size: usize,
) -> BTreeMap<String, f64> {
    let classes = tm
        .heads
        .segment
        .as_ref()
        .map(|_| data.classes.len())
        .unwrap_or(0);
    let mut counts = IouCounts::new(classes);
    tch::no_grad(|| {
        for idx in chunks(data.images.len(), batch_size) {
            let predicted = logits(tm, data, &idx, false).argmax(1, false);
            counts.add(&vec_i64(&predicted), &vec_i64(&masks(data, &idx)));
        }
    });
    BTreeMap::from([
        ("miou".to_string(), counts.mean_iou()),
        ("pixel_acc".to_string(), counts.pixel_accuracy()),
        ("images".to_string(), data.images.len() as f64),
    ])
}
