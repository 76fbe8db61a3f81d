//! What every task's loss and evaluation reads: the encoder, the task heads, the tokenizer and
//! the device, with the small conversions between texts, tensors and `Vec`s they share.

use tch::{Device, Kind, Tensor};
use vlbeit_core::text::{Padding, TextError, TextTokenizer};

use super::heads::TaskHeads;
use crate::model::VlBeit;

/// A model with its task heads, ready to run on `device`.
pub struct TaskModel<'a> {
    pub model: &'a VlBeit,
    pub heads: &'a TaskHeads,
    pub tokenizer: &'a TextTokenizer,
    pub device: Device,
}

impl TaskModel<'_> {
    /// `texts` tokenized to `max_len`, padded to the longest (as the runtime does):
    /// `(input_ids, attention_mask)`, both `[B, L]` i64 on the device.
    pub fn encode<S: AsRef<str>>(
        &self,
        texts: &[S],
        max_len: usize,
    ) -> Result<(Tensor, Tensor), TextError> {
        let batch = self
            .tokenizer
            .encode_batch(texts, max_len, Padding::Longest)?;
        let shape = [batch.batch as i64, batch.seq_len as i64];
        Ok((
            Tensor::from_slice(&batch.input_ids)
                .reshape(shape)
                .to(self.device),
            Tensor::from_slice(&batch.attention_mask)
                .reshape(shape)
                .to(self.device),
        ))
    }

    /// Texts for the text encoder (`max_text_len`).
    pub fn encode_texts<S: AsRef<str>>(&self, texts: &[S]) -> Result<(Tensor, Tensor), TextError> {
        self.encode(texts, self.model.config().max_text_len)
    }

    /// Texts of image–text pairs (`max_pair_text_len`).
    pub fn encode_pair_texts<S: AsRef<str>>(
        &self,
        texts: &[S],
    ) -> Result<(Tensor, Tensor), TextError> {
        self.encode(texts, self.model.config().max_pair_text_len)
    }

    /// Fusion encoder → pooled `[B, D]`.
    pub fn pooled<S: AsRef<str>>(
        &self,
        texts: &[S],
        pixels: &Tensor,
        train: bool,
    ) -> Result<Tensor, TextError> {
        let (ids, mask) = self.encode_pair_texts(texts)?;
        let fused = self.model.forward_fusion(&ids, &mask, pixels, None, train);
        Ok(self.model.heads().pooled(&fused))
    }
}

/// A `[R, C]` tensor as rows of f32.
pub fn rows_f32(t: &Tensor) -> Vec<Vec<f32>> {
    let t = t.to_kind(Kind::Float).to(Device::Cpu).contiguous();
    let (r, c) = t.size2().expect("a 2-D tensor");
    let flat: Vec<f32> = Vec::try_from(t.flatten(0, -1)).expect("f32 values");
    (0..r as usize)
        .map(|i| flat[i * c as usize..(i + 1) * c as usize].to_vec())
        .collect()
}

/// A 1-D i64 tensor as a `Vec`.
pub fn vec_i64(t: &Tensor) -> Vec<i64> {
    Vec::try_from(t.to_kind(Kind::Int64).to(Device::Cpu).flatten(0, -1)).expect("i64 values")
}

/// `0..n` in chunks of `size`.
pub fn chunks(n: usize, size: usize) -> impl Iterator<Item = Vec<usize>> {
    let size = size.max(1);
    (0..n.div_ceil(size)).map(move |c| (c * size..((c + 1) * size).min(n)).collect())
}
