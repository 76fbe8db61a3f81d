//! Reads a trained checkpoint (DESIGN.md §5): `config.json` (the model config) and
//! `model.safetensors` (weights named as §4.5), strictly checked against the config.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use vlbeit_core::config::{ModelConfig, Variant};

use crate::ExportError;

/// The checkpoint layout this exporter reads (`CHECKPOINT_FORMAT_VERSION` of the trainer).
const CHECKPOINT_FORMAT_VERSION: u32 = 1;

/// Task heads of fine-tuning that no exported graph holds (NLVR2 needs two fused pairs per
/// example, segmentation a decoder over several layers): their weights are skipped and reported.
const SKIPPED_HEAD_PREFIXES: [&str; 2] = ["heads.nlvr2.", "heads.segment."];

/// `heads.vqa.*`: pooled → fc1 (D→2D) → LayerNorm → GELU → fc2 (2D→answers).
pub(crate) const VQA_HEAD: &str = "heads.vqa";
/// `heads.classify.*`: mean of the patch states → LayerNorm → fc (D→classes).
pub(crate) const CLASSIFY_HEAD: &str = "heads.classify";

/// The part of the trainer's `config.json` the exporter needs.
#[derive(Debug, Deserialize)]
struct ConfigFile {
    format_version: u32,
    model: ModelConfig,
    #[serde(default)]
    heads: HeadLabels,
}

/// `config.json` `heads`: the label vocabularies of the fine-tuned task heads (other fields, if
/// a trainer adds some, are not the exporter's business).
#[derive(Debug, Clone, Default, Deserialize)]
struct HeadLabels {
    answers: Option<Vec<String>>,
    classes: Option<Vec<String>>,
}

/// One f32 weight: its shape and values in row-major order.
#[derive(Debug, Clone)]
pub(crate) struct Weight {
    pub(crate) shape: Vec<i64>,
    pub(crate) data: Vec<f32>,
}

/// A checkpoint ready to export.
#[derive(Debug)]
pub(crate) struct Checkpoint {
    pub(crate) config: ModelConfig,
    pub(crate) weights: BTreeMap<String, Weight>,
    /// Task-head tensors present but not exported.
    pub(crate) skipped: Vec<String>,
    /// Number of VQA answers, when the checkpoint has a VQA head.
    pub(crate) vqa_answers: Option<usize>,
    /// Number of classes, when the checkpoint has a classification head.
    pub(crate) classes: Option<usize>,
}

impl Checkpoint {
    pub(crate) fn load(dir: &Path) -> Result<Self, ExportError> {
        let config_path = dir.join("config.json");
        let (config, labels) = read_config(&config_path)?;
        let path = dir.join("model.safetensors");
        let bytes = std::fs::read(&path).map_err(|source| ExportError::Io {
            path: path.clone(),
            source,
        })?;
        let file =
            safetensors::SafeTensors::deserialize(&bytes).map_err(|e| ExportError::Checkpoint {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        let names: Vec<String> = file.names().into_iter().map(str::to_owned).collect();
        let vqa_answers = head_size(
            &names,
            VQA_HEAD,
            labels.answers.as_deref(),
            "answers",
            &path,
            &config_path,
        )?;
        let classes = head_size(
            &names,
            CLASSIFY_HEAD,
            labels.classes.as_deref(),
            "classes",
            &path,
            &config_path,
        )?;
        let mut expected = expected_shapes(&config);
        expected.extend(expected_task_head_shapes(&config, vqa_answers, classes));
        let mut weights = BTreeMap::new();
        let mut skipped = Vec::new();
        let mut unexpected = Vec::new();
        let mut wrong_shape = Vec::new();
        for (name, view) in file.tensors() {
            if SKIPPED_HEAD_PREFIXES.iter().any(|p| name.starts_with(p)) {
                skipped.push(name);
                continue;
            }
            let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            let Some(want) = expected.get(&name) else {
                unexpected.push(name);
                continue;
            };
            if *want != shape {
                wrong_shape.push(format!(
                    "{name} has shape {shape:?}, expected {want:?}{}",
                    label_count_note(&name)
                ));
                continue;
            }
            if view.dtype() != safetensors::Dtype::F32 {
                return Err(ExportError::Checkpoint {
                    path,
                    reason: format!(
                        "tensor {name} is {:?}; the exporter reads F32",
                        view.dtype()
                    ),
                });
            }
            let data = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            weights.insert(name, Weight { shape, data });
        }
        let missing: Vec<String> = expected
            .keys()
            .filter(|name| {
                !weights.contains_key(*name)
                    && !wrong_shape
                        .iter()
                        .any(|w| w.starts_with(&format!("{name} ")))
            })
            .cloned()
            .collect();
        if !(missing.is_empty() && unexpected.is_empty() && wrong_shape.is_empty()) {
            unexpected.sort();
            return Err(ExportError::Mismatch {
                path,
                missing,
                unexpected,
                wrong_shape,
            });
        }
        skipped.sort();
        Ok(Self {
            config,
            weights,
            skipped,
            vqa_answers,
            classes,
        })
    }
}

/// The label count of task head `head` (`heads.vqa` / `heads.classify`), or `None` when the
/// checkpoint has neither its tensors nor its labels. A head must come with its labels in
/// `config.json` `heads.<labels>` and labels with the head; the rows of its output layer are
/// checked against the label count with the other shapes.
fn head_size(
    names: &[String],
    head: &str,
    labels: Option<&[String]>,
    labels_field: &str,
    weights_path: &Path,
    config_path: &Path,
) -> Result<Option<usize>, ExportError> {
    let prefix = format!("{head}.");
    // The smallest name, so that the message does not depend on the file's order.
    let first = names.iter().filter(|n| n.starts_with(&prefix)).min();
    match (first, labels) {
        (None, None) => Ok(None),
        (None, Some(labels)) => Err(ExportError::Checkpoint {
            path: config_path.to_owned(),
            reason: format!(
                "heads.{labels_field} lists {} labels but {} has no {head}.* tensors",
                labels.len(),
                weights_path.display()
            ),
        }),
        (Some(first), None) => Err(ExportError::Checkpoint {
            path: config_path.to_owned(),
            reason: format!(
                "{} has task-head tensor {first} but heads.{labels_field} is missing: the {head} \
                 head's outputs need their labels",
                weights_path.display()
            ),
        }),
        (Some(_), Some(labels)) => Ok(Some(labels.len())),
    }
}

/// Where the first dimension of a head's output layer comes from, for its shape error.
fn label_count_note(name: &str) -> &'static str {
    if name.starts_with(&format!("{VQA_HEAD}.fc2.")) {
        " (answers = the length of config.json heads.answers)"
    } else if name.starts_with(&format!("{CLASSIFY_HEAD}.fc.")) {
        " (classes = the length of config.json heads.classes)"
    } else {
        ""
    }
}

fn read_config(path: &Path) -> Result<(ModelConfig, HeadLabels), ExportError> {
    let invalid = |reason: String| ExportError::Checkpoint {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|source| ExportError::Io {
        path: path.to_owned(),
        source,
    })?;
    let file: ConfigFile = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    if file.format_version != CHECKPOINT_FORMAT_VERSION {
        return Err(invalid(format!(
            "checkpoint format version {} is not supported (this exporter reads {CHECKPOINT_FORMAT_VERSION})",
            file.format_version
        )));
    }
    file.model.validate().map_err(|e| invalid(e.to_string()))?;
    for (field, labels) in [
        ("answers", &file.heads.answers),
        ("classes", &file.heads.classes),
    ] {
        if labels.as_ref().is_some_and(|l| l.is_empty()) {
            return Err(invalid(format!("heads.{field} is empty")));
        }
    }
    Ok((file.model, file.heads))
}

/// Every tensor the trained model of `c` holds (DESIGN.md §4.5), with its shape: what the
/// exporter requires of `model.safetensors` (task heads aside).
pub fn expected_shapes(c: &ModelConfig) -> BTreeMap<String, Vec<i64>> {
    let d = c.hidden as i64;
    let p = c.patch_size as i64;
    let f = c.mlp_hidden() as i64;
    let v = c.vocab_size as i64;
    let e = c.embed_dim as i64;
    let mut w = BTreeMap::new();
    let mut put = |name: &str, shape: &[i64]| {
        w.insert(name.to_owned(), shape.to_vec());
    };
    put("embed.patch.weight", &[d, c.channels as i64, p, p]);
    put("embed.patch.bias", &[d]);
    put("embed.image_cls", &[1, 1, d]);
    put("embed.image_pos", &[1, 1 + c.num_patches() as i64, d]);
    put("embed.mask_token", &[1, 1, d]);
    put("embed.word.weight", &[v, d]);
    put("embed.text_pos", &[1, c.max_text_len as i64, d]);
    put("embed.modality.weight", &[3, d]);
    for i in 0..c.layers {
        let b = format!("blocks.{i}");
        for (name, shape) in [
            ("norm1.weight", vec![d]),
            ("norm1.bias", vec![d]),
            ("attn.qkv.weight", vec![3 * d, d]),
            ("attn.q_bias", vec![d]),
            ("attn.v_bias", vec![d]),
            ("attn.proj.weight", vec![d, d]),
            ("attn.proj.bias", vec![d]),
            ("gamma_1", vec![d]),
            ("gamma_2", vec![d]),
        ] {
            put(&format!("{b}.{name}"), &shape);
        }
        for expert in experts(c, i) {
            for (name, shape) in [
                ("norm.weight", vec![d]),
                ("norm.bias", vec![d]),
                ("fc1.weight", vec![f, d]),
                ("fc1.bias", vec![f]),
                ("fc2.weight", vec![d, f]),
                ("fc2.bias", vec![d]),
            ] {
                put(&format!("{b}.ffn.{expert}.{name}"), &shape);
            }
        }
    }
    put("norm.weight", &[d]);
    put("norm.bias", &[d]);
    put("heads.mlm.dense.weight", &[d, d]);
    put("heads.mlm.dense.bias", &[d]);
    put("heads.mlm.norm.weight", &[d]);
    put("heads.mlm.norm.bias", &[d]);
    put("heads.mlm.decoder.weight", &[v, d]);
    put("heads.mlm.decoder.bias", &[v]);
    put("heads.mim.weight", &[c.visual_vocab as i64, d]);
    put("heads.mim.bias", &[c.visual_vocab as i64]);
    put("heads.itc.image_proj.weight", &[e, d]);
    put("heads.itc.text_proj.weight", &[e, d]);
    put("heads.itc.logit_scale", &[]);
    put("heads.pooler.dense.weight", &[d, d]);
    put("heads.pooler.dense.bias", &[d]);
    put("heads.itm.weight", &[2, d]);
    put("heads.itm.bias", &[2]);
    w
}

/// The tensors of the task heads the exporter writes (team contract; Linear weights
/// `[out, in]`): `heads.vqa.*` when `vqa_answers` is given (A answers), `heads.classify.*` when
/// `classes` is given (C classes).
///
/// ```text
/// heads.vqa.fc1.{weight [2D, D], bias [2D]}  heads.vqa.norm.{weight, bias} [2D]
/// heads.vqa.fc2.{weight [A, 2D], bias [A]}
/// heads.classify.norm.{weight, bias} [D]     heads.classify.fc.{weight [C, D], bias [C]}
/// ```
pub fn expected_task_head_shapes(
    c: &ModelConfig,
    vqa_answers: Option<usize>,
    classes: Option<usize>,
) -> BTreeMap<String, Vec<i64>> {
    let d = c.hidden as i64;
    let mut w = BTreeMap::new();
    if let Some(a) = vqa_answers {
        let a = a as i64;
        for (name, shape) in [
            ("fc1.weight", vec![2 * d, d]),
            ("fc1.bias", vec![2 * d]),
            ("norm.weight", vec![2 * d]),
            ("norm.bias", vec![2 * d]),
            ("fc2.weight", vec![a, 2 * d]),
            ("fc2.bias", vec![a]),
        ] {
            w.insert(format!("{VQA_HEAD}.{name}"), shape);
        }
    }
    if let Some(classes) = classes {
        let classes = classes as i64;
        for (name, shape) in [
            ("norm.weight", vec![d]),
            ("norm.bias", vec![d]),
            ("fc.weight", vec![classes, d]),
            ("fc.bias", vec![classes]),
        ] {
            w.insert(format!("{CLASSIFY_HEAD}.{name}"), shape);
        }
    }
    w
}

/// The FFN experts of block `layer`, as `blocks.{i}.ffn.<expert>` names them.
pub(crate) fn experts(c: &ModelConfig, layer: usize) -> Vec<&'static str> {
    match c.variant {
        Variant::Mome if c.has_vl_expert(layer) => vec!["text", "image", "vl"],
        Variant::Mome => vec!["text", "image"],
        Variant::Standard => vec!["shared"],
    }
}
