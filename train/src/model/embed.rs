//! Input representations (DESIGN.md §4.2): image patches with [I_CLS], text tokens, and the
//! modality embedding that tells the shared Transformer which kind of token it reads.

use tch::{Kind, Tensor, nn};
use vlbeit_core::config::ModelConfig;

use super::init;

/// Row of `embed.modality.weight` added to every text token.
const TEXT_MODALITY: i64 = 0;
/// Row of `embed.modality.weight` added to every image token ([I_CLS] included).
const IMAGE_MODALITY: i64 = 1;

/// `embed.*`: patch projection, learnable tokens and position tables.
#[derive(Debug)]
pub(crate) struct Embeddings {
    /// Conv2d(3, D, P, stride P), weight `[D, 3, P, P]`.
    patch_weight: Tensor,
    patch_bias: Tensor,
    patch_size: i64,
    /// [I_CLS], `[1, 1, D]`.
    image_cls: Tensor,
    /// Replaces masked patch embeddings (MIM, MVLM), `[1, 1, D]`.
    mask_token: Tensor,
    /// `[1, 1 + N, D]`, row 0 for [I_CLS].
    image_pos: Tensor,
    /// `[V, D]`.
    word: Tensor,
    /// `[1, max_text_len, D]`.
    text_pos: Tensor,
    /// `[3, D]`: row 0 text, row 1 image, row 2 reserved.
    modality: Tensor,
}

impl Embeddings {
    pub(crate) fn new(vs: &nn::Path, config: &ModelConfig) -> Self {
        let d = config.hidden as i64;
        let p = config.patch_size as i64;
        let c = config.channels as i64;
        let patch = vs / "patch";
        let word = vs / "word";
        let modality = vs / "modality";
        Self {
            patch_weight: init::token(&patch, "weight", &[d, c, p, p]),
            patch_bias: patch.zeros("bias", &[d]),
            patch_size: p,
            image_cls: init::token(vs, "image_cls", &[1, 1, d]),
            mask_token: init::token(vs, "mask_token", &[1, 1, d]),
            image_pos: init::token(vs, "image_pos", &[1, 1 + config.num_patches() as i64, d]),
            word: init::token(&word, "weight", &[config.vocab_size as i64, d]),
            text_pos: init::token(vs, "text_pos", &[1, config.max_text_len as i64, d]),
            modality: init::token(&modality, "weight", &[3, d]),
        }
    }

    /// `pixels [B, 3, H, W]` → `[B, 1 + N, D]`. `image_mask [B, N]` (true = masked) swaps the
    /// patch embedding for the mask token before positions are added, so that a masked patch
    /// still knows where it is but not what it shows.
    pub(crate) fn image(&self, pixels: &Tensor, image_mask: Option<&Tensor>) -> Tensor {
        let patches = pixels
            .conv2d(
                &self.patch_weight,
                Some(&self.patch_bias),
                [self.patch_size, self.patch_size],
                [0, 0],
                [1, 1],
                1,
            )
            .flatten(2, 3) // [B, D, N], row-major over the patch grid
            .transpose(1, 2); // [B, N, D]
        let (b, n, d) = patches.size3().expect("patch embeddings are [B, N, D]");
        let expected_n = self.image_pos.size()[1] - 1;
        assert_eq!(
            n,
            expected_n,
            "image of {:?} gives {n} patches, the position table holds {expected_n} (wrong resolution?)",
            pixels.size()
        );
        let patches = match image_mask {
            Some(mask) => {
                assert_eq!(
                    mask.size(),
                    [b, n],
                    "image_mask must be [B, N] = [{b}, {n}]"
                );
                let mask = mask.to_kind(Kind::Bool).unsqueeze(-1);
                let mask_token = self
                    .mask_token
                    .to_kind(patches.kind())
                    .expand([b, n, d], false);
                mask_token.where_self(&mask, &patches)
            }
            None => patches,
        };
        let cls = self
            .image_cls
            .to_kind(patches.kind())
            .expand([b, 1, d], false);
        Tensor::cat(&[cls, patches], 1) + &self.image_pos + self.modality.get(IMAGE_MODALITY)
    }

    /// `input_ids [B, L]` → `[B, L, D]`, with `L <= max_text_len`.
    pub(crate) fn text(&self, input_ids: &Tensor) -> Tensor {
        let len = input_ids.size()[1];
        let max_len = self.text_pos.size()[1];
        assert!(
            len <= max_len,
            "text of {len} tokens is longer than the position table ({max_len}, max_text_len)"
        );
        Tensor::embedding(&self.word, input_ids, -1, false, false)
            + self.text_pos.narrow(1, 0, len)
            + self.modality.get(TEXT_MODALITY)
    }
}
