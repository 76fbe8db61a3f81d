//! Masking for the three pretraining tasks (DESIGN.md §4.2): text masking for MLM (15%) and the
//! text side of MVLM (50%), and BEiT's block-wise image masking for MIM and MVLM (40%).
//!
//! Pure functions of their inputs and a [`Rng`]: the same generator state gives the same masks
//! on every machine, and a checkpoint that stores [`Rng::state`] resumes the same stream.
//!
//! ```
//! use vlbeit_core::rng::Rng;
//! use vlbeit_train::masking::{BlockMaskConfig, TextMasking};
//! let mut rng = Rng::new(0);
//! let ids = [2, 17, 18, 19, 3, 0];
//! let attention = [1, 1, 1, 1, 1, 0];
//! let masked = TextMasking::mlm(100).mask(&ids, &attention, 6, &mut rng);
//! assert!(masked.labels.iter().any(|&l| l != -100));
//! let patches = BlockMaskConfig::for_grid(8, 8, 0.4).mask(&mut rng);
//! assert_eq!(patches.len(), 64);
//! ```

use vlbeit_core::rng::Rng;
use vlbeit_core::text::{SPECIAL_TOKENS, SpecialIds};

/// Label of a position that has no target (PyTorch's `cross_entropy` default `ignore_index`).
pub const IGNORE_INDEX: i64 = -100;

/// BERT's masking recipe: choose `ratio` of the real tokens; of those, `mask_prob` become
/// `[MASK]`, `random_prob` a random regular token, the rest stay unchanged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextMasking {
    pub ratio: f64,
    pub mask_prob: f64,
    pub random_prob: f64,
    /// Size of the vocabulary; random replacements are drawn from `5..vocab_size`.
    pub vocab_size: usize,
}

/// Masked ids and their targets, row-major `[batch, seq_len]` like the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskedText {
    pub input_ids: Vec<i64>,
    /// The original id where a token was chosen, [`IGNORE_INDEX`] elsewhere.
    pub labels: Vec<i64>,
    pub batch: usize,
    pub seq_len: usize,
}

impl TextMasking {
    /// MLM on text-only data: 15% (BERT, seed §2.2).
    pub fn mlm(vocab_size: usize) -> Self {
        Self::with_ratio(0.15, vocab_size)
    }

    /// The text half of MVLM: 50%, because the image makes the text easier to recover
    /// (VL-BEiT §2.2).
    pub fn mvlm(vocab_size: usize) -> Self {
        Self::with_ratio(0.5, vocab_size)
    }

    pub fn with_ratio(ratio: f64, vocab_size: usize) -> Self {
        Self {
            ratio,
            mask_prob: 0.8,
            random_prob: 0.1,
            vocab_size,
        }
    }

    /// Masks a batch of `input_ids` / `attention_mask` (`[batch, seq_len]`, e.g. a
    /// `vlbeit_core::text::TextBatch`). Only real, non-special tokens are candidates.
    ///
    /// Each row masks `ratio · n` of its `n` candidates, rounded stochastically so the expected
    /// count is exact, and at least one, so every non-empty row contributes to the loss (which
    /// raises the ratio above `ratio` only for rows shorter than `1 / ratio`).
    pub fn mask(
        &self,
        input_ids: &[i64],
        attention_mask: &[i64],
        seq_len: usize,
        rng: &mut Rng,
    ) -> MaskedText {
        assert_eq!(input_ids.len(), attention_mask.len(), "ids and mask differ");
        assert!(
            seq_len > 0 && input_ids.len().is_multiple_of(seq_len),
            "length {} is not a multiple of seq_len {seq_len}",
            input_ids.len()
        );
        let special = SpecialIds::FIXED;
        let first_regular = SPECIAL_TOKENS.len() as i64;
        let mut out = input_ids.to_vec();
        let mut labels = vec![IGNORE_INDEX; input_ids.len()];
        let mut candidates = Vec::with_capacity(seq_len);
        for row in 0..input_ids.len() / seq_len {
            let span = row * seq_len..(row + 1) * seq_len;
            candidates.clear();
            candidates.extend(
                span.filter(|&i| attention_mask[i] != 0 && !special.is_special(input_ids[i])),
            );
            if candidates.is_empty() {
                continue;
            }
            let expected = self.ratio * candidates.len() as f64;
            let mut count =
                expected.floor() as usize + usize::from(rng.bernoulli(expected.fract()));
            count = count.clamp(1, candidates.len());
            // A partial Fisher–Yates draws `count` distinct positions uniformly.
            for k in 0..count {
                let j = k + rng.index(candidates.len() - k);
                candidates.swap(k, j);
                let at = candidates[k];
                labels[at] = input_ids[at];
                let u = rng.next_f64();
                if u < self.mask_prob {
                    out[at] = special.mask;
                } else if u < self.mask_prob + self.random_prob
                    && self.vocab_size as i64 > first_regular
                {
                    out[at] = rng.range_inclusive(first_regular, self.vocab_size as i64 - 1);
                }
            }
        }
        MaskedText {
            input_ids: out,
            labels,
            batch: input_ids.len() / seq_len,
            seq_len,
        }
    }
}

/// BEiT's block-wise masking generator (BEiT §2.5, Algorithm 1): rectangles of random area and
/// log-uniform aspect ratio are added until about `num_masking_patches` patches are masked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockMaskConfig {
    /// Grid rows (patches per column).
    pub height: usize,
    /// Grid columns (patches per row).
    pub width: usize,
    /// The target; the generator never exceeds it.
    pub num_masking_patches: usize,
    /// Smallest block area drawn.
    pub min_num_patches: usize,
    /// Largest block area drawn (also bounded by the remaining budget).
    pub max_num_patches: usize,
    pub min_aspect: f64,
    pub max_aspect: f64,
}

/// One rectangle the generator placed (rows `top..top + height`, columns `left..left + width`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaskBlock {
    pub top: usize,
    pub left: usize,
    pub height: usize,
    pub width: usize,
}

/// Tries per block before the generator gives up on adding more (BEiT).
const BLOCK_TRIES: usize = 10;

impl BlockMaskConfig {
    /// DESIGN.md §4.2: target `round(ratio · N)`, minimum block 16 patches scaled down for tiny
    /// grids (`min(16, N / 10)`, at least 1), aspect ratio in [0.3, 1/0.3].
    pub fn for_grid(height: usize, width: usize, ratio: f64) -> Self {
        let patches = height * width;
        let target = (ratio * patches as f64).round() as usize;
        Self {
            height,
            width,
            num_masking_patches: target,
            min_num_patches: (patches / 10).clamp(1, 16),
            max_num_patches: target,
            min_aspect: 0.3,
            max_aspect: 1.0 / 0.3,
        }
    }

    /// Patches in the grid (N).
    pub fn num_patches(&self) -> usize {
        self.height * self.width
    }

    /// One mask: `N` booleans in row-major patch order (`true` = masked).
    pub fn mask(&self, rng: &mut Rng) -> Vec<bool> {
        self.mask_with_blocks(rng).0
    }

    /// Masks for a batch: `[batch, N]` row-major, each row drawn in turn from `rng`.
    pub fn mask_batch(&self, batch: usize, rng: &mut Rng) -> Vec<bool> {
        (0..batch).flat_map(|_| self.mask(rng)).collect()
    }

    /// A mask and the blocks that produced it, in placement order.
    pub fn mask_with_blocks(&self, rng: &mut Rng) -> (Vec<bool>, Vec<MaskBlock>) {
        let mut mask = vec![false; self.num_patches()];
        let mut blocks = Vec::new();
        let mut count = 0;
        while count < self.num_masking_patches {
            let budget = (self.num_masking_patches - count).min(self.max_num_patches);
            match self.add_block(&mut mask, budget, rng) {
                Some((block, added)) => {
                    blocks.push(block);
                    count += added;
                }
                // No try made progress: the budget is too small for any block that fits.
                None => break,
            }
        }
        (mask, blocks)
    }

    /// Places one block that adds between 1 and `budget` new patches, or `None` after
    /// [`BLOCK_TRIES`] failures. Overlapping an earlier block is allowed; only new patches
    /// count, so blocks merge into larger irregular regions as in BEiT.
    fn add_block(
        &self,
        mask: &mut [bool],
        budget: usize,
        rng: &mut Rng,
    ) -> Option<(MaskBlock, usize)> {
        let (log_lo, log_hi) = (self.min_aspect.ln(), self.max_aspect.ln());
        for _ in 0..BLOCK_TRIES {
            // When the budget is below the minimum, the area is drawn between them (BEiT
            // does the same: `uniform(a, b)` with b < a), so the last block fills the gap.
            let area = rng.uniform(self.min_num_patches as f64, budget as f64);
            let aspect = rng.uniform(log_lo, log_hi).exp();
            let height = (area * aspect).sqrt().round() as usize;
            let width = (area / aspect).sqrt().round() as usize;
            // Strictly smaller than the grid, as BEiT: a block never spans a whole side.
            if height == 0 || width == 0 || height >= self.height || width >= self.width {
                continue;
            }
            let top = rng.index(self.height - height + 1);
            let left = rng.index(self.width - width + 1);
            let cells = || {
                (top..top + height)
                    .flat_map(move |r| (left..left + width).map(move |c| r * self.width + c))
            };
            let new = cells().filter(|&i| !mask[i]).count();
            if new == 0 || new > budget {
                continue;
            }
            for i in cells() {
                mask[i] = true;
            }
            let block = MaskBlock {
                top,
                left,
                height,
                width,
            };
            return Some((block, new));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VOCAB: usize = 300;

    /// Rows of `[T_CLS] regular… [T_SEP] [PAD]…` with some `[UNK]`s, lengths 12..=30.
    fn text_batch(rng: &mut Rng, rows: usize, seq_len: usize) -> (Vec<i64>, Vec<i64>) {
        let (mut ids, mut attention) = (Vec::new(), Vec::new());
        for _ in 0..rows {
            let real = rng.range_inclusive(12, seq_len as i64) as usize;
            for i in 0..seq_len {
                let id = match i {
                    0 => 2,
                    i if i + 1 == real => 3,
                    i if i >= real => 0,
                    i if i % 7 == 3 => 1,
                    _ => rng.range_inclusive(5, VOCAB as i64 - 1),
                };
                ids.push(id);
                attention.push(i64::from(i < real));
            }
        }
        (ids, attention)
    }

    /// (masked fraction of candidates, [MASK] share, random share, kept share) over many rows.
    fn text_statistics(masking: TextMasking) -> (f64, f64, f64, f64) {
        let mut rng = Rng::new(11);
        let (mut candidates, mut chosen, mut as_mask, mut changed, mut kept) = (0, 0, 0, 0, 0);
        for _ in 0..200 {
            let (ids, attention) = text_batch(&mut rng, 16, 30);
            let out = masking.mask(&ids, &attention, 30, &mut rng);
            for i in 0..ids.len() {
                let candidate = attention[i] == 1 && !SpecialIds::FIXED.is_special(ids[i]);
                candidates += usize::from(candidate);
                if out.labels[i] == IGNORE_INDEX {
                    assert_eq!(out.input_ids[i], ids[i], "unmasked position changed");
                    continue;
                }
                assert!(candidate, "special or padding id {} was masked", ids[i]);
                assert_eq!(out.labels[i], ids[i]);
                chosen += 1;
                match out.input_ids[i] {
                    4 => as_mask += 1,
                    id if id == ids[i] => kept += 1,
                    id => {
                        assert!((5..VOCAB as i64).contains(&id), "random id {id}");
                        changed += 1
                    }
                }
            }
        }
        let share = |n: usize| n as f64 / chosen as f64;
        (
            chosen as f64 / candidates as f64,
            share(as_mask),
            share(changed),
            share(kept),
        )
    }

    #[test]
    fn mlm_masks_fifteen_percent_split_80_10_10() {
        let (ratio, mask, random, kept) = text_statistics(TextMasking::mlm(VOCAB));
        eprintln!("MLM: ratio {ratio:.4}, [MASK] {mask:.4}, random {random:.4}, kept {kept:.4}");
        assert!((ratio - 0.15).abs() < 0.01, "ratio {ratio}");
        assert!((mask - 0.8).abs() < 0.02, "[MASK] {mask}");
        // A random draw may hit the original id (1 in 295), which then counts as kept.
        assert!((random - 0.1).abs() < 0.015, "random {random}");
        assert!((kept - 0.1).abs() < 0.015, "kept {kept}");
    }

    #[test]
    fn mvlm_masks_half_the_text_tokens() {
        let (ratio, mask, random, kept) = text_statistics(TextMasking::mvlm(VOCAB));
        eprintln!("MVLM: ratio {ratio:.4}, [MASK] {mask:.4}, random {random:.4}, kept {kept:.4}");
        assert!((ratio - 0.5).abs() < 0.01, "ratio {ratio}");
        assert!((mask - 0.8).abs() < 0.02, "[MASK] {mask}");
    }

    #[test]
    fn every_non_empty_row_gets_a_target_and_empty_rows_none() {
        let ids = [2, 9, 3, 0, 2, 3, 0, 0, 0, 0, 0, 0];
        let attention = [1, 1, 1, 0, 1, 1, 0, 0, 0, 0, 0, 0];
        for seed in 0..50 {
            let out = TextMasking::mlm(VOCAB).mask(&ids, &attention, 4, &mut Rng::new(seed));
            assert_eq!(
                out.labels,
                [
                    -100, 9, -100, -100, -100, -100, -100, -100, -100, -100, -100, -100
                ]
            );
            assert_eq!((out.batch, out.seq_len), (3, 4));
        }
    }

    fn neighbours_masked(config: &BlockMaskConfig, mask: &[bool], i: usize) -> bool {
        let (r, c) = (i / config.width, i % config.width);
        (r > 0 && mask[i - config.width])
            || (r + 1 < config.height && mask[i + config.width])
            || (c > 0 && mask[i - 1])
            || (c + 1 < config.width && mask[i + 1])
    }

    /// (mean masked ratio, share of masked patches with a masked 4-neighbour).
    fn block_statistics(config: &BlockMaskConfig, draws: usize) -> (f64, f64) {
        let mut rng = Rng::new(3);
        let (mut masked, mut connected) = (0, 0);
        for _ in 0..draws {
            let (mask, blocks) = config.mask_with_blocks(&mut rng);
            let count = mask.iter().filter(|&&m| m).count();
            assert!(count <= config.num_masking_patches);
            for block in blocks {
                assert!(block.height < config.height && block.width < config.width);
                // h = round(sqrt(a·r)), w = round(sqrt(a/r)) bound r within rounding slack.
                let (h, w) = (block.height as f64, block.width as f64);
                assert!((h - 0.5) / (w + 0.5) <= config.max_aspect, "{block:?}");
                assert!((h + 0.5) / (w - 0.5) >= config.min_aspect, "{block:?}");
            }
            masked += count;
            connected += (0..mask.len())
                .filter(|&i| mask[i] && neighbours_masked(config, &mask, i))
                .count();
        }
        (
            masked as f64 / (draws * config.num_patches()) as f64,
            connected as f64 / masked as f64,
        )
    }

    #[test]
    fn block_masks_cover_forty_percent_in_contiguous_blocks() {
        for (side, draws) in [(14, 2000), (8, 4000)] {
            let config = BlockMaskConfig::for_grid(side, side, 0.4);
            let (ratio, connected) = block_statistics(&config, draws);
            eprintln!("{side}x{side}: mean masked ratio {ratio:.4}, connected {connected:.4}");
            assert!((ratio - 0.4).abs() < 0.02, "{side}x{side}: ratio {ratio}");
            assert!(connected > 0.95, "{side}x{side}: connected {connected}");
        }
    }

    #[test]
    fn block_masks_are_deterministic_per_seed() {
        let config = BlockMaskConfig::for_grid(8, 8, 0.4);
        let a = config.mask_batch(16, &mut Rng::new(5));
        assert_eq!(a.len(), 16 * 64);
        assert_eq!(a, config.mask_batch(16, &mut Rng::new(5)));
        assert_ne!(a, config.mask_batch(16, &mut Rng::new(6)));
        assert_ne!(a[..64], a[64..128], "rows of a batch differ");
    }

    #[test]
    fn tiny_grids_still_mask_something() {
        let config = BlockMaskConfig::for_grid(2, 2, 0.4);
        assert_eq!((config.num_masking_patches, config.min_num_patches), (2, 1));
        let mask = config.mask(&mut Rng::new(0));
        assert!(mask.iter().any(|&m| m));
    }
}
