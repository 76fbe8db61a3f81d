//! The seed's evaluation metrics as plain functions over scores, so that each is checked on
//! hand-made cases: recall@k (retrieval), VQA score, top-k accuracy, mean IoU.

use serde::{Deserialize, Serialize};

/// Rank (0-based) of the best-ranked relevant candidate in `order` (candidates sorted best
/// first); `order.len()` when none is relevant.
pub fn first_relevant_rank(order: &[usize], relevant: impl Fn(usize) -> bool) -> usize {
    order
        .iter()
        .position(|&c| relevant(c))
        .unwrap_or(order.len())
}

/// Candidate indices sorted by descending score; ties keep the lower index first.
pub fn argsort_desc(scores: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order
}

/// Recall@1/5/10 in percent of one retrieval direction, from each query's first relevant rank.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Recall {
    pub r1: f64,
    pub r5: f64,
    pub r10: f64,
}

impl Recall {
    pub fn from_ranks(ranks: &[usize]) -> Self {
        let at = |k: usize| {
            if ranks.is_empty() {
                0.0
            } else {
                100.0 * ranks.iter().filter(|&&r| r < k).count() as f64 / ranks.len() as f64
            }
        };
        Self {
            r1: at(1),
            r5: at(5),
            r10: at(10),
        }
    }
}

/// Image–text retrieval: text retrieval (image query → texts) and image retrieval (text query
/// → images). `sim[i][t]` is the score of image `i` with text `t`; `text_image[t]` is the
/// image text `t` describes.
pub fn retrieval_ranks(sim: &[Vec<f32>], text_image: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let images = sim.len();
    let tr = (0..images)
        .map(|i| first_relevant_rank(&argsort_desc(&sim[i]), |t| text_image[t] == i))
        .collect();
    let ir = (0..text_image.len())
        .map(|t| {
            let column: Vec<f32> = (0..images).map(|i| sim[i][t]).collect();
            first_relevant_rank(&argsort_desc(&column), |i| i == text_image[t])
        })
        .collect();
    (tr, ir)
}

/// `order` with its first `k` candidates re-sorted by `rerank_score` (descending, stable); the
/// rest keeps its order. This is how the fusion encoder's ITM score reranks the dual encoder's
/// top k (seed §3.2).
pub fn rerank_top_k(order: &[usize], k: usize, rerank_score: impl Fn(usize) -> f32) -> Vec<usize> {
    let k = k.min(order.len());
    let mut head: Vec<(usize, f32)> = order[..k].iter().map(|&c| (c, rerank_score(c))).collect();
    head.sort_by(|a, b| b.1.total_cmp(&a.1));
    head.into_iter()
        .map(|(c, _)| c)
        .chain(order[k..].iter().copied())
        .collect()
}

/// VQA score of predicted answers (percent): each prediction earns its soft target score
/// (`targets[q]` = `(answer index, score)` pairs; an answer not listed earns 0).
pub fn vqa_score(predicted: &[usize], targets: &[Vec<(usize, f32)>]) -> f64 {
    if predicted.is_empty() {
        return 0.0;
    }
    let sum: f64 = predicted
        .iter()
        .zip(targets)
        .map(|(&p, t)| {
            t.iter()
                .find(|(a, _)| *a == p)
                .map_or(0.0, |(_, s)| f64::from(*s))
        })
        .sum();
    100.0 * sum / predicted.len() as f64
}

/// Top-k accuracy (percent): the label is among the `k` highest logits of its row.
pub fn top_k_accuracy(logits: &[Vec<f32>], labels: &[usize], k: usize) -> f64 {
    if labels.is_empty() {
        return 0.0;
    }
    let hits = logits
        .iter()
        .zip(labels)
        .filter(|(row, label)| argsort_desc(row).iter().take(k).any(|c| c == *label))
        .count();
    100.0 * hits as f64 / labels.len() as f64
}

/// Per-class intersection and union pixel counts, accumulated over a data set.
#[derive(Debug, Clone, PartialEq)]
pub struct IouCounts {
    pub intersection: Vec<u64>,
    pub union: Vec<u64>,
    pub correct: u64,
    pub pixels: u64,
}

impl IouCounts {
    pub fn new(classes: usize) -> Self {
        Self {
            intersection: vec![0; classes],
            union: vec![0; classes],
            correct: 0,
            pixels: 0,
        }
    }

    /// Adds predicted and true labels of the same pixels. Labels outside `0..classes` in the
    /// ground truth are ignored (ADE20K's "other" label 255 after the shift).
    pub fn add(&mut self, predicted: &[i64], truth: &[i64]) {
        let classes = self.union.len() as i64;
        for (&p, &t) in predicted.iter().zip(truth) {
            if !(0..classes).contains(&t) {
                continue;
            }
            self.pixels += 1;
            if p == t {
                self.correct += 1;
                self.intersection[t as usize] += 1;
                self.union[t as usize] += 1;
            } else {
                self.union[t as usize] += 1;
                if (0..classes).contains(&p) {
                    self.union[p as usize] += 1;
                }
            }
        }
    }

    /// Mean IoU (percent) over the classes that occur in the prediction or the truth.
    pub fn mean_iou(&self) -> f64 {
        let ious: Vec<f64> = self
            .intersection
            .iter()
            .zip(&self.union)
            .filter(|(_, u)| **u > 0)
            .map(|(i, u)| *i as f64 / *u as f64)
            .collect();
        if ious.is_empty() {
            0.0
        } else {
            100.0 * ious.iter().sum::<f64>() / ious.len() as f64
        }
    }

    /// Pixel accuracy (percent).
    pub fn pixel_accuracy(&self) -> f64 {
        if self.pixels == 0 {
            0.0
        } else {
            100.0 * self.correct as f64 / self.pixels as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retrieval_recall_on_a_hand_made_similarity_matrix() {
        // 3 images, 4 texts: texts 0,1 → image 0, text 2 → image 1, text 3 → image 2.
        let sim = vec![
            vec![0.1, 0.9, 0.0, 0.2], // image 0: best is text 1 (relevant) → rank 0
            vec![0.8, 0.1, 0.3, 0.7], // image 1: order 0,3,2 → rank 2
            vec![0.5, 0.4, 0.6, 0.1], // image 2: order 2,0,1,3 → rank 3
        ];
        let (tr, ir) = retrieval_ranks(&sim, &[0, 0, 1, 2]);
        assert_eq!(tr, vec![0, 2, 3]);
        // text 0: column (0.1, 0.8, 0.5) → image 1, 2, 0 → rank 2; text 1: image 0 first;
        // text 2: (0.0, 0.3, 0.6) → 2, 1 → rank 1; text 3: (0.2, 0.7, 0.1) → 1, 0, 2 → rank 2
        assert_eq!(ir, vec![2, 0, 1, 2]);
        let r = Recall::from_ranks(&tr);
        assert!((r.r1 - 100.0 / 3.0).abs() < 1e-9);
        assert_eq!(r.r5, 100.0);
        assert_eq!(Recall::from_ranks(&ir).r1, 25.0);
    }

    #[test]
    fn rerank_reorders_only_the_top_k() {
        let order = vec![4, 2, 0, 1, 3];
        let score = |c: usize| [0.0, 9.0, 5.0, 9.0, 1.0][c];
        assert_eq!(rerank_top_k(&order, 3, score), vec![2, 4, 0, 1, 3]);
        assert_eq!(rerank_top_k(&order, 10, score), vec![1, 3, 2, 4, 0]);
    }

    #[test]
    fn vqa_score_credits_soft_targets() {
        let targets = vec![vec![(0, 1.0), (2, 0.3333)], vec![(1, 0.6667)], vec![]];
        let s = vqa_score(&[2, 1, 0], &targets);
        assert!((s - 100.0 * (0.3333 + 0.6667) / 3.0).abs() < 1e-3, "{s}");
        let s = vqa_score(&[0, 1], &targets[..2]);
        assert!((s - 100.0 * (1.0 + 0.6667) / 2.0).abs() < 1e-3, "{s}");
    }

    #[test]
    fn top_k_counts_labels_among_the_best_logits() {
        let logits = vec![vec![0.1, 0.5, 0.2], vec![0.9, 0.0, 0.1]];
        assert_eq!(top_k_accuracy(&logits, &[1, 2], 1), 50.0);
        assert_eq!(top_k_accuracy(&logits, &[1, 2], 2), 100.0);
        assert_eq!(top_k_accuracy(&logits, &[0, 1], 2), 0.0);
    }

    #[test]
    fn mean_iou_on_a_hand_made_mask() {
        let mut c = IouCounts::new(3);
        // truth 0 0 1 1 ; pred 0 1 1 1 ; class 2 absent everywhere; 255 ignored
        c.add(&[0, 1, 1, 1, 2], &[0, 0, 1, 1, 255]);
        // class 0: I=1, U=2; class 1: I=2, U=3 → mIoU = (0.5 + 0.6667) / 2
        assert!((c.mean_iou() - 100.0 * (0.5 + 2.0 / 3.0) / 2.0).abs() < 1e-9);
        assert_eq!(c.pixel_accuracy(), 75.0);
    }
}
