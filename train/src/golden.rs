//! `golden/` of a checkpoint: a few raw inputs (image files, texts) and this model's outputs for
//! them in every mode, computed through vlbeit-core's preprocessing and tokenizer — what the
//! exporter's parity gate and `vlbeit verify` replay from the raw inputs.
//!
//! Layout:
//! ```text
//! golden/inputs.json          {"images": ["image_0.png", …], "texts": […], "pairs": [[image, text], …],
//!                              "text_max_len": L, "pair_max_len": Lp}
//! golden/image_*.png          the raw image files
//! golden/outputs.safetensors  image_embeds [I,E], image_states [I,1+N,D], text_embeds [T,E],
//!                             fusion_pooled [P,D], itm_logits [P,2]; with task heads also
//!                             vqa_logits [P,A] (VQA head) and class_logits [I,C] (classify head)
//! ```
//!
//! Only the heads the exported graphs compute are recorded (NLVR2 and segmentation are not
//! exported, so they have no golden tensor: the parity gate treats a golden tensor without a
//! graph output as an error).

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};
use vlbeit_core::preprocess::{ImageInput, Preprocessor};
use vlbeit_core::text::{Padding, TextTokenizer};

use crate::checkpoint::{CheckpointError, write_json, write_safetensors};
use crate::finetune::TaskHeads;
use crate::model::VlBeit;

/// `golden/inputs.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldenInputs {
    /// Image files in `golden/`, in output row order.
    pub images: Vec<String>,
    /// Texts, in output row order (text encoder).
    pub texts: Vec<String>,
    /// `(image index, text index)` per fusion output row.
    pub pairs: Vec<(usize, usize)>,
    /// Tokenizer length for the text encoder (`[T_CLS]`, `[T_SEP]` included).
    pub text_max_len: usize,
    /// Tokenizer length for the fusion encoder's text.
    pub pair_max_len: usize,
}

/// Raw inputs to record.
pub struct GoldenSet<'a> {
    /// `(file name, encoded bytes)`.
    pub images: Vec<(String, Vec<u8>)>,
    pub texts: Vec<String>,
    pub pairs: Vec<(usize, usize)>,
    pub tokenizer: &'a TextTokenizer,
    pub preprocessor: &'a Preprocessor,
}

/// Computes the outputs (eval mode, fp32) and writes `dir` (created).
pub fn write_golden(
    dir: &Path,
    model: &VlBeit,
    device: Device,
    set: &GoldenSet<'_>,
) -> Result<(), CheckpointError> {
    write_golden_with_heads(dir, model, None, device, set)
}

/// [`write_golden`] plus the outputs of the task heads the exporter puts in the graphs:
/// `vqa_logits` for the pairs and `class_logits` for the images.
pub fn write_golden_with_heads(
    dir: &Path,
    model: &VlBeit,
    task_heads: Option<&TaskHeads>,
    device: Device,
    set: &GoldenSet<'_>,
) -> Result<(), CheckpointError> {
    let invalid = |reason: String| CheckpointError::Invalid {
        path: dir.to_owned(),
        reason,
    };
    std::fs::create_dir_all(dir).map_err(|source| CheckpointError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let config = model.config();
    let inputs: Vec<ImageInput<'_>> = set
        .images
        .iter()
        .map(|(_, bytes)| ImageInput::Encoded(bytes))
        .collect();
    let pixels = set
        .preprocessor
        .batch(&inputs)
        .map_err(|e| invalid(e.to_string()))?;
    let shape: Vec<i64> = pixels.shape.iter().map(|&d| d as i64).collect();
    let pixels = Tensor::from_slice(&pixels.data).reshape(&shape).to(device);

    let text = set
        .tokenizer
        .encode_batch(&set.texts, config.max_text_len, Padding::Longest)
        .map_err(|e| invalid(e.to_string()))?;
    let text_ids = Tensor::from_slice(&text.input_ids)
        .reshape([text.batch as i64, text.seq_len as i64])
        .to(device);
    let text_mask = Tensor::from_slice(&text.attention_mask)
        .reshape([text.batch as i64, text.seq_len as i64])
        .to(device);

    let pair_texts: Vec<&str> = set
        .pairs
        .iter()
        .map(|&(_, t)| set.texts[t].as_str())
        .collect();
    let pair = set
        .tokenizer
        .encode_batch(&pair_texts, config.max_pair_text_len, Padding::Longest)
        .map_err(|e| invalid(e.to_string()))?;
    let pair_ids = Tensor::from_slice(&pair.input_ids)
        .reshape([pair.batch as i64, pair.seq_len as i64])
        .to(device);
    let pair_mask = Tensor::from_slice(&pair.attention_mask)
        .reshape([pair.batch as i64, pair.seq_len as i64])
        .to(device);
    let pair_image_index =
        Tensor::from_slice(&set.pairs.iter().map(|&(i, _)| i as i64).collect::<Vec<_>>())
            .to(device);
    let pair_pixels = pixels.index_select(0, &pair_image_index);

    let outputs = tch::no_grad(|| {
        let heads = model.heads();
        let image_states = model.forward_image(&pixels, None, false);
        let image_embeds = heads.image_embeds(&image_states);
        let text_states = model.forward_text(&text_ids, &text_mask, false);
        let text_embeds = heads.text_embeds(&text_states);
        let fused = model.forward_fusion(&pair_ids, &pair_mask, &pair_pixels, None, false);
        let pooled = heads.pooled(&fused);
        let itm = heads.itm(&pooled);
        let mut outputs = Vec::new();
        if let Some(head) = task_heads.and_then(|h| h.vqa.as_ref()) {
            outputs.push(("vqa_logits".to_string(), head.forward(&pooled)));
        }
        if let Some(head) = task_heads.and_then(|h| h.classify.as_ref()) {
            outputs.push(("class_logits".to_string(), head.forward(&image_states)));
        }
        outputs.extend([
            ("image_embeds".to_string(), image_embeds),
            ("image_states".to_string(), image_states),
            ("text_embeds".to_string(), text_embeds),
            ("fusion_pooled".to_string(), pooled),
            ("itm_logits".to_string(), itm),
        ]);
        outputs
            .into_iter()
            .map(|(k, v)| (k, v.to_kind(Kind::Float).to(Device::Cpu)))
            .collect::<Vec<_>>()
    });

    for (name, bytes) in &set.images {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|source| CheckpointError::Io { path, source })?;
    }
    write_json(
        &dir.join("inputs.json"),
        &GoldenInputs {
            images: set.images.iter().map(|(n, _)| n.clone()).collect(),
            texts: set.texts.clone(),
            pairs: set.pairs.clone(),
            text_max_len: config.max_text_len,
            pair_max_len: config.max_pair_text_len,
        },
    )?;
    write_safetensors(
        &dir.join("outputs.safetensors"),
        &outputs,
        HashMap::from([("producer".to_string(), "vlbeit-train".to_string())]),
    )
}
