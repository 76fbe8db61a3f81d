//! Image–text retrieval (seed §3.2, VLMo): image–text contrastive learning with the learnable
//! temperature of `heads.itc.logit_scale`, plus image–text matching on hard negatives drawn
//! from the contrastive similarities. Evaluation: the dual encoder ranks every text for every
//! image and back (R@1/5/10), then the fusion encoder's ITM score reranks the top k.

use std::collections::BTreeMap;

use tch::{Kind, Reduction, Tensor};
use vlbeit_core::rng::Rng;
use vlbeit_core::text::TextError;

use super::context::{TaskModel, chunks, rows_f32};
use super::data::RetrievalData;
use super::metrics::{Recall, argsort_desc, first_relevant_rank, rerank_top_k, retrieval_ranks};

/// CLIP's cap on the logit scale (temperature ≥ 0.01).
const MAX_LOGIT_SCALE: f64 = 100.0;

/// For each row, a column drawn with probability ∝ exp(`sim[row][col]`) among the columns
/// that `allowed(row, col)` admits (the positive and any other caption of the same image are
/// never allowed). `None` for a row without an allowed column.
pub fn sample_hard_negatives(
    sim: &[Vec<f32>],
    allowed: impl Fn(usize, usize) -> bool,
    rng: &mut Rng,
) -> Vec<Option<usize>> {
    sim.iter()
        .enumerate()
        .map(|(r, row)| {
            let max = row
                .iter()
                .enumerate()
                .filter(|(c, _)| allowed(r, *c))
                .map(|(_, &s)| s)
                .fold(f32::NEG_INFINITY, f32::max);
            if max == f32::NEG_INFINITY {
                return None;
            }
            let weights: Vec<f64> = row
                .iter()
                .enumerate()
                .map(|(c, &s)| {
                    if allowed(r, c) {
                        f64::from(s - max).exp()
                    } else {
                        0.0
                    }
                })
                .collect();
            let total: f64 = weights.iter().sum();
            let mut u = rng.next_f64() * total;
            let mut last_allowed = None;
            for (c, w) in weights.iter().enumerate() {
                if *w > 0.0 {
                    last_allowed = Some(c);
                    if u < *w {
                        return Some(c);
                    }
                    u -= w;
                }
            }
            last_allowed
        })
        .collect()
}

/// `[i][t]`: whether text `texts[t]` is a caption of image `images[i]` — its own, or word for
/// word one of the image's own captions though written for another image ("two circles on a
/// grey background" describes many scenes; COCO has duplicate captions too). Such a pair is no
/// negative: labelled "no match", it would teach ITM to disbelieve a true caption.
pub fn positives(data: &RetrievalData, images: &[usize], texts: &[usize]) -> Vec<Vec<bool>> {
    let own = data.captions_of(images);
    images
        .iter()
        .zip(&own)
        .map(|(&image, own)| {
            texts
                .iter()
                .map(|&t| data.text_image[t] == image || own.contains(data.texts[t].as_str()))
                .collect()
        })
        .collect()
}

/// Loss terms of one retrieval step.
pub struct RetrievalLoss {
    pub loss: Tensor,
    pub itc: f64,
    pub itm: f64,
    pub itm_acc: f64,
}

/// ITC + ITM on a batch of images (`images`, distinct) each with one of its texts (`texts`).
pub fn loss(
    tm: &TaskModel<'_>,
    data: &RetrievalData,
    images: &[usize],
    texts: &[usize],
    rng: &mut Rng,
) -> Result<RetrievalLoss, TextError> {
    let device = tm.device;
    let heads = tm.model.heads();
    let pixels = data.images.batch(images, device);
    let captions: Vec<&str> = texts.iter().map(|&t| data.texts[t].as_str()).collect();
    let image_states = tm.model.forward_image(&pixels, None, true);
    let image_embeds = heads.image_embeds(&image_states);
    let (ids, mask) = tm.encode_texts(&captions)?;
    let text_embeds = heads.text_embeds(&tm.model.forward_text(&ids, &mask, true));
    let scale = heads.logit_scale().exp().clamp_max(MAX_LOGIT_SCALE);
    let logits = image_embeds.matmul(&text_embeds.transpose(0, 1)) * &scale;
    let b = images.len() as i64;
    let target = Tensor::arange(b, (Kind::Int64, device));
    let ce = |l: &Tensor| l.cross_entropy_loss::<Tensor>(&target, None, Reduction::Mean, -100, 0.0);
    let itc = (ce(&logits) + ce(&logits.transpose(0, 1))) / 2.0;

    // Hard negatives: texts of other images for each image, images of other texts for each text.
    let sim = rows_f32(&logits.detach());
    let positive = positives(data, images, texts);
    let same = |i: usize, t: usize| positive[i][t];
    let neg_text = sample_hard_negatives(&sim, |i, t| !same(i, t), rng);
    let sim_t: Vec<Vec<f32>> = (0..images.len())
        .map(|t| (0..images.len()).map(|i| sim[i][t]).collect())
        .collect();
    let neg_image = sample_hard_negatives(&sim_t, |t, i| !same(i, t), rng);
    let mut pair_texts: Vec<&str> = captions.clone();
    let mut pair_images: Vec<usize> = images.to_vec();
    let mut labels = vec![1i64; images.len()];
    for (i, n) in neg_text.iter().enumerate() {
        if let Some(t) = n {
            pair_texts.push(captions[*t]);
            pair_images.push(images[i]);
            labels.push(0);
        }
    }
    for (t, n) in neg_image.iter().enumerate() {
        if let Some(i) = n {
            pair_texts.push(captions[t]);
            pair_images.push(images[*i]);
            labels.push(0);
        }
    }
    let pooled = tm.pooled(&pair_texts, &data.images.batch(&pair_images, device), true)?;
    let itm_logits = heads.itm(&pooled);
    let labels = Tensor::from_slice(&labels).to(device);
    let itm = itm_logits.cross_entropy_loss::<Tensor>(&labels, None, Reduction::Mean, -100, 0.0);
    let itm_acc = itm_logits
        .argmax(-1, false)
        .eq_tensor(&labels)
        .to_kind(Kind::Float)
        .mean(Kind::Float)
        .double_value(&[]);
    Ok(RetrievalLoss {
        itc: itc.double_value(&[]),
        itm: itm.double_value(&[]),
        itm_acc,
        loss: itc + itm,
    })
}

/// Dual-encoder similarities `[images][texts]` (eval mode).
pub fn similarities(
    tm: &TaskModel<'_>,
    data: &RetrievalData,
    batch_size: usize,
) -> Result<Vec<Vec<f32>>, TextError> {
    tch::no_grad(|| {
        let heads = tm.model.heads();
        let mut image_embeds = Vec::new();
        for idx in chunks(data.images.len(), batch_size) {
            let states = tm
                .model
                .forward_image(&data.images.batch(&idx, tm.device), None, false);
            image_embeds.push(heads.image_embeds(&states));
        }
        let mut text_embeds = Vec::new();
        for idx in chunks(data.texts.len(), batch_size) {
            let texts: Vec<&str> = idx.iter().map(|&t| data.texts[t].as_str()).collect();
            let (ids, mask) = tm.encode_texts(&texts)?;
            text_embeds.push(heads.text_embeds(&tm.model.forward_text(&ids, &mask, false)));
        }
        let sim =
            Tensor::cat(&image_embeds, 0).matmul(&Tensor::cat(&text_embeds, 0).transpose(0, 1));
        Ok(rows_f32(&sim))
    })
}

/// ITM match scores (logit of "match" minus "no match") of `(image, text)` pairs.
pub fn itm_scores(
    tm: &TaskModel<'_>,
    data: &RetrievalData,
    pairs: &[(usize, usize)],
    batch_size: usize,
) -> Result<Vec<f32>, TextError> {
    tch::no_grad(|| {
        let mut out = Vec::with_capacity(pairs.len());
        for idx in chunks(pairs.len(), batch_size) {
            let images: Vec<usize> = idx.iter().map(|&p| pairs[p].0).collect();
            let texts: Vec<&str> = idx
                .iter()
                .map(|&p| data.texts[pairs[p].1].as_str())
                .collect();
            let pooled = tm.pooled(&texts, &data.images.batch(&images, tm.device), false)?;
            let logits = tm.model.heads().itm(&pooled);
            for row in rows_f32(&logits) {
                out.push(row[1] - row[0]);
            }
        }
        Ok(out)
    })
}

/// TR/IR R@1/5/10 of the dual encoder (`tr_r1`, …, `ir_r10`) and after reranking the top
/// `rerank_k` with the fusion encoder (`rerank_tr_r1`, …), in percent.
pub fn evaluate(
    tm: &TaskModel<'_>,
    data: &RetrievalData,
    rerank_k: usize,
    batch_size: usize,
) -> Result<BTreeMap<String, f64>, TextError> {
    let sim = similarities(tm, data, batch_size)?;
    let (tr, ir) = retrieval_ranks(&sim, &data.text_image);
    let mut metrics = BTreeMap::new();
    put_recall(&mut metrics, "tr", Recall::from_ranks(&tr));
    put_recall(&mut metrics, "ir", Recall::from_ranks(&ir));
    if rerank_k == 0 {
        return Ok(metrics);
    }
    let images = data.images.len();
    let texts = data.texts.len();
    let tr_orders: Vec<Vec<usize>> = sim.iter().map(|row| argsort_desc(row)).collect();
    let ir_orders: Vec<Vec<usize>> = (0..texts)
        .map(|t| argsort_desc(&(0..images).map(|i| sim[i][t]).collect::<Vec<_>>()))
        .collect();
    let mut pairs: BTreeMap<(usize, usize), f32> = BTreeMap::new();
    for (i, order) in tr_orders.iter().enumerate() {
        for &t in order.iter().take(rerank_k) {
            pairs.insert((i, t), 0.0);
        }
    }
    for (t, order) in ir_orders.iter().enumerate() {
        for &i in order.iter().take(rerank_k) {
            pairs.insert((i, t), 0.0);
        }
    }
    let keys: Vec<(usize, usize)> = pairs.keys().copied().collect();
    for (key, score) in keys.iter().zip(itm_scores(tm, data, &keys, batch_size)?) {
        pairs.insert(*key, score);
    }
    let tr_rerank: Vec<usize> = tr_orders
        .iter()
        .enumerate()
        .map(|(i, order)| {
            let order = rerank_top_k(order, rerank_k, |t| pairs[&(i, t)]);
            first_relevant_rank(&order, |t| data.text_image[t] == i)
        })
        .collect();
    let ir_rerank: Vec<usize> = ir_orders
        .iter()
        .enumerate()
        .map(|(t, order)| {
            let order = rerank_top_k(order, rerank_k, |i| pairs[&(i, t)]);
            first_relevant_rank(&order, |i| i == data.text_image[t])
        })
        .collect();
    put_recall(&mut metrics, "rerank_tr", Recall::from_ranks(&tr_rerank));
    put_recall(&mut metrics, "rerank_ir", Recall::from_ranks(&ir_rerank));
    Ok(metrics)
}

fn put_recall(metrics: &mut BTreeMap<String, f64>, prefix: &str, r: Recall) {
    metrics.insert(format!("{prefix}_r1"), r.r1);
    metrics.insert(format!("{prefix}_r5"), r.r5);
    metrics.insert(format!("{prefix}_r10"), r.r10);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_identical_to_an_own_caption_is_no_negative() {
        let texts = [
            "two circles",
            "a red star",
            "two circles",
            "a blue square",
            "a red star",
        ];
        let data = RetrievalData {
            images: super::super::data::ImageSet {
                names: vec!["a".into(), "b".into(), "c".into()],
                pixels: Tensor::zeros([3, 3, 2, 2], (Kind::Float, tch::Device::Cpu)),
            },
            texts: texts.iter().map(|t| t.to_string()).collect(),
            text_image: vec![0, 0, 1, 1, 2],
        };
        // batch: images 0, 1, 2 with texts 0 ("two circles" of 0), 2 ("two circles" of 1), 4
        let p = positives(&data, &[0, 1, 2], &[0, 2, 4]);
        assert_eq!(
            p,
            vec![
                vec![true, true, true], // image 0 has "two circles" and "a red star"
                vec![true, true, false],
                vec![false, false, true],
            ]
        );
    }

    #[test]
    fn hard_negative_sampler_never_picks_the_positive() {
        let mut rng = Rng::new(3);
        // The positive (diagonal) has by far the highest similarity: a sampler that ignored
        // the mask would pick it almost always.
        let n = 6;
        let sim: Vec<Vec<f32>> = (0..n)
            .map(|r| {
                (0..n)
                    .map(|c| if r == c { 50.0 } else { c as f32 * 0.5 })
                    .collect()
            })
            .collect();
        let mut counts = vec![vec![0usize; n]; n];
        for _ in 0..400 {
            for (r, pick) in sample_hard_negatives(&sim, |r, c| r != c, &mut rng)
                .into_iter()
                .enumerate()
            {
                let c = pick.expect("every row has negatives");
                assert_ne!(c, r, "picked the positive");
                counts[r][c] += 1;
            }
        }
        // harder negatives (higher similarity) are drawn more often
        assert!(counts[0][5] > counts[0][1], "{:?}", counts[0]);
        // a row whose every column is forbidden has no negative
        assert_eq!(
            sample_hard_negatives(&sim[..1], |_, _| false, &mut rng),
            vec![None]
        );
    }
}
