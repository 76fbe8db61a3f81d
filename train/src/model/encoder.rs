//! The VL-BEiT encoder: embeddings → MoME blocks → final LayerNorm, in three modes (image, text,
//! fusion) over the same weights, plus the pretraining and retrieval heads.

use tch::{Kind, Tensor, nn, nn::Module};
use vlbeit_core::config::ModelConfig;

use super::embed::Embeddings;
use super::heads::Heads;
use super::init;
use super::mome::{Block, Route};

/// The VL-BEiT model: one shared Transformer that encodes images, texts and image–text pairs.
///
/// Weights are created in the given [`nn::Path`] under the names of DESIGN.md §4.5
/// (`embed.*`, `blocks.{i}.*`, `norm.*`, `heads.*`), initialized as BEiT.
///
/// ```no_run
/// use tch::{nn, Device, Kind, Tensor};
/// use vlbeit_core::config::ModelConfig;
/// use vlbeit_train::model::VlBeit;
///
/// let vs = nn::VarStore::new(Device::Cpu);
/// let model = VlBeit::new(&vs.root(), &ModelConfig::tiny());
/// let pixels = Tensor::zeros([2, 3, 64, 64], (Kind::Float, Device::Cpu));
/// let states = model.forward_image(&pixels, None, false); // [2, 1 + 64, 128]
/// let embeds = model.heads().image_embeds(&states); // [2, 128], unit norm
/// ```
#[derive(Debug)]
pub struct VlBeit {
    config: ModelConfig,
    embed: Embeddings,
    blocks: Vec<Block>,
    norm: nn::LayerNorm,
    heads: Heads,
}

impl VlBeit {
    /// Creates every weight of `config` under `vs`, with BEiT's initialization.
    pub fn new(vs: &nn::Path, config: &ModelConfig) -> Self {
        let blocks = (0..config.layers)
            .map(|i| Block::new(&(vs / "blocks" / i), config, i))
            .collect();
        Self {
            config: config.clone(),
            embed: Embeddings::new(&(vs / "embed"), config),
            blocks,
            norm: init::layer_norm(vs / "norm", config.hidden, config.layer_norm_eps),
            heads: Heads::new(&(vs / "heads"), config),
        }
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn heads(&self) -> &Heads {
        &self.heads
    }

    /// Image mode. `pixels [B, 3, H, W]` f32, normalized; `image_mask [B, N]` bool (true =
    /// masked, replaced by the mask token). Returns `[B, 1 + N, D]`, [I_CLS] first.
    pub fn forward_image(
        &self,
        pixels: &Tensor,
        image_mask: Option<&Tensor>,
        train: bool,
    ) -> Tensor {
        let last = self
            .forward_image_layers(pixels, image_mask, train)
            .pop()
            .expect("the encoder has at least one block");
        self.norm.forward(&last)
    }

    /// Image mode, returning the output of every block (`config.layers` tensors of
    /// `[B, 1 + N, D]`, before the final LayerNorm), for heads that read several depths
    /// (segmentation). The last one, normalized, is [`forward_image`](Self::forward_image).
    pub fn forward_image_layers(
        &self,
        pixels: &Tensor,
        image_mask: Option<&Tensor>,
        train: bool,
    ) -> Vec<Tensor> {
        let mut x = self.embed.image(pixels, image_mask);
        let mut layers = Vec::with_capacity(self.blocks.len());
        for block in &self.blocks {
            x = block.forward(&x, None, Route::Image, train);
            layers.push(x.shallow_clone());
        }
        layers
    }

    /// Text mode. `input_ids [B, L]` i64, `attention_mask [B, L]` i64 (1 = token, 0 = [PAD]),
    /// `L <= max_text_len`. Returns `[B, L, D]`, [T_CLS] first.
    pub fn forward_text(&self, input_ids: &Tensor, attention_mask: &Tensor, train: bool) -> Tensor {
        let x = self.embed.text(input_ids);
        let pad = attention_mask.eq(0);
        self.run_blocks(x, Some(&pad), Route::Text, train)
    }

    /// Fusion mode: one pass over `concat(text, image)`, text first. Padded text keys are
    /// masked; image keys never are. Returns `[B, L + 1 + N, D]`: text states, then [I_CLS],
    /// then patches.
    pub fn forward_fusion(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        pixels: &Tensor,
        image_mask: Option<&Tensor>,
        train: bool,
    ) -> Tensor {
        let text = self.embed.text(input_ids);
        let image = self.embed.image(pixels, image_mask);
        let (b, text_len) = input_ids.size2().expect("input_ids is [B, L]");
        let image_len = image.size()[1];
        let pad = Tensor::cat(
            &[
                attention_mask.eq(0),
                Tensor::zeros([b, image_len], (Kind::Bool, image.device())),
            ],
            1,
        );
        let x = Tensor::cat(&[text, image], 1);
        self.run_blocks(x, Some(&pad), Route::Fusion { text_len }, train)
    }

    fn run_blocks(&self, mut x: Tensor, pad: Option<&Tensor>, route: Route, train: bool) -> Tensor {
        for block in &self.blocks {
            x = block.forward(&x, pad, route, train);
        }
        self.norm.forward(&x)
    }
}
