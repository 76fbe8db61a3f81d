//! Checkpoint directories (DESIGN.md §5): `config.json`, `model.safetensors`, `tokenizer.json`,
//! `state.safetensors` and `golden/`, written atomically — a new checkpoint is assembled in a
//! temporary sibling directory, synced, and renamed into place, so a crash or a refused step
//! leaves the last good checkpoint intact.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};
use vlbeit_core::config::{ModelConfig, PreprocessConfig};
use vlbeit_core::text::TokenizerSettings;

/// Version of the checkpoint layout; readers refuse others.
pub const CHECKPOINT_FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error(
        "{}: checkpoint format version {found} is not supported (this build reads {CHECKPOINT_FORMAT_VERSION})",
        path.display()
    )]
    Version { path: PathBuf, found: u32 },
    #[error("{}: {source}", path.display())]
    Torch {
        path: PathBuf,
        #[source]
        source: tch::TchError,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Task heads a checkpoint carries, with their label vocabularies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadsConfig {
    /// VQA answer list (index = logit), when a VQA head was fine-tuned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers: Option<Vec<String>>,
    /// Class names (index = logit), when a classification head was fine-tuned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<String>>,
    /// The segmentation head, when one was fine-tuned (not exported to ONNX; the exporter
    /// ignores this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<SegmentHeadConfig>,
}

/// `heads.segment` of `config.json`: the segmentation decoder of a `finetune:segment` checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentHeadConfig {
    /// Class names (index = logit channel).
    pub classes: Vec<String>,
    /// 0-based blocks whose outputs the decoder reads.
    pub layers: Vec<usize>,
}

/// What produced the weights.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingSummary {
    /// `pretrain` or `finetune:<task>`.
    pub stage: String,
    pub step: u64,
    pub total_steps: u64,
    pub seed: u64,
    /// Pretraining tasks that were on (`mlm`, `mim`, `mvlm`).
    pub tasks: Vec<String>,
    /// Last logged value of each metric.
    pub metrics: BTreeMap<String, f64>,
    /// sha256 of the visual tokenizer's weights that made the MIM targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visual_tokenizer_sha256: Option<String>,
}

/// `config.json` of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    pub format_version: u32,
    pub model: ModelConfig,
    pub preprocess: PreprocessConfig,
    /// How texts are tokenized for the text encoder (`max_len` = the model's `max_text_len`).
    pub tokenizer: TokenizerSettings,
    /// Text length of image–text pairs (the fusion encoder).
    pub pair_max_len: usize,
    pub heads: HeadsConfig,
    pub training: TrainingSummary,
}

impl CheckpointConfig {
    /// Reads and validates `dir/config.json`.
    pub fn load(dir: &Path) -> Result<Self, CheckpointError> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| CheckpointError::Invalid {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        let found = value
            .get("format_version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| CheckpointError::Invalid {
                path: path.clone(),
                reason: "missing field `format_version`".into(),
            })?;
        if found != u64::from(CHECKPOINT_FORMAT_VERSION) {
            return Err(CheckpointError::Version {
                path,
                found: found as u32,
            });
        }
        let config: Self = serde_json::from_value(value).map_err(|e| CheckpointError::Invalid {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let invalid = |reason: String| CheckpointError::Invalid {
            path: path.clone(),
            reason,
        };
        config
            .model
            .validate()
            .map_err(|e| invalid(e.to_string()))?;
        config
            .preprocess
            .validate()
            .map_err(|e| invalid(e.to_string()))?;
        if config.preprocess.image_size as usize != config.model.image_size {
            return Err(invalid(format!(
                "preprocess.image_size ({}) differs from model.image_size ({})",
                config.preprocess.image_size, config.model.image_size
            )));
        }
        Ok(config)
    }
}

/// Writes a directory atomically: `fill` populates a fresh temporary sibling of `dir`, whose
/// files are then synced and which replaces `dir` by rename. On error nothing at `dir` changes.
pub fn write_dir_atomically<E>(
    dir: &Path,
    fill: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E>
where
    E: From<CheckpointError>,
{
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| E::from(io(parent)(e)))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "checkpoint".into());
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| E::from(io(&tmp)(e)))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| E::from(io(&tmp)(e)))?;
    let result = fill(&tmp).and_then(|()| sync_tree(&tmp).map_err(E::from));
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    // Swap: keep the old directory until the new one is in place.
    let old = parent.join(format!(".{name}.old-{}", std::process::id()));
    let had_old = dir.exists();
    if had_old {
        std::fs::rename(dir, &old).map_err(|e| E::from(io(dir)(e)))?;
    }
    if let Err(e) = std::fs::rename(&tmp, dir) {
        if had_old {
            let _ = std::fs::rename(&old, dir);
        }
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(E::from(io(dir)(e)));
    }
    if had_old {
        let _ = std::fs::remove_dir_all(&old);
    }
    if let Ok(d) = std::fs::File::open(parent) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn sync_tree(dir: &Path) -> Result<(), CheckpointError> {
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            std::fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(io(&path))?;
        }
    }
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io(dir))
}

/// Writes `value` as pretty JSON.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), CheckpointError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| CheckpointError::Invalid {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    std::fs::write(path, text + "\n").map_err(io(path))
}

/// Writes f32/i64 tensors and string metadata as safetensors (without libtorch's writer, which
/// cannot store metadata).
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: HashMap<String, String>,
) -> Result<(), CheckpointError> {
    let mut buffers = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = t.to_device(tch::Device::Cpu).contiguous();
        let (dtype, bytes) = match t.kind() {
            Kind::Int64 => {
                let v: Vec<i64> =
                    Vec::try_from(t.flatten(0, -1)).map_err(|source| CheckpointError::Torch {
                        path: path.to_owned(),
                        source,
                    })?;
                (
                    safetensors::Dtype::I64,
                    v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>(),
                )
            }
            _ => {
                let v: Vec<f32> =
                    Vec::try_from(t.to_kind(Kind::Float).flatten(0, -1)).map_err(|source| {
                        CheckpointError::Torch {
                            path: path.to_owned(),
                            source,
                        }
                    })?;
                (
                    safetensors::Dtype::F32,
                    v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>(),
                )
            }
        };
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        buffers.push((name.clone(), dtype, shape, bytes));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = buffers
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes)
                .map(|view| (name.clone(), view))
                .map_err(|e| CheckpointError::Invalid {
                    path: path.to_owned(),
                    reason: e.to_string(),
                })
        })
        .collect::<Result<_, _>>()?;
    safetensors::serialize_to_file(views, Some(metadata), path).map_err(|e| {
        CheckpointError::Invalid {
            path: path.to_owned(),
            reason: e.to_string(),
        }
    })
}

/// Named tensors and string metadata of a safetensors file.
pub type SafetensorsContents = (BTreeMap<String, Tensor>, HashMap<String, String>);

/// Reads a safetensors file written by [`write_safetensors`]: tensors (on the CPU) and metadata.
pub fn read_safetensors(path: &Path) -> Result<SafetensorsContents, CheckpointError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let invalid = |reason: String| CheckpointError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let (_, header) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| invalid(e.to_string()))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| invalid(e.to_string()))?;
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let data = view.data();
        let tensor = match view.dtype() {
            safetensors::Dtype::F32 => {
                let v: Vec<f32> = data
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                Tensor::from_slice(&v).reshape(&shape)
            }
            safetensors::Dtype::I64 => {
                let v: Vec<i64> = data
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                    .collect();
                Tensor::from_slice(&v).reshape(&shape)
            }
            other => {
                return Err(invalid(format!(
                    "tensor `{name}` has dtype {other:?}; expected F32 or I64"
                )));
            }
        };
        tensors.insert(name, tensor);
    }
    Ok((tensors, metadata))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_only_on_success() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("ckpt");
        write_dir_atomically::<CheckpointError>(&dir, |tmp| {
            std::fs::write(tmp.join("a.txt"), "one").map_err(io(tmp))
        })
        .unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("a.txt")).unwrap(), "one");

        let failed = write_dir_atomically::<CheckpointError>(&dir, |tmp| {
            std::fs::write(tmp.join("a.txt"), "two").map_err(io(tmp))?;
            Err(CheckpointError::Invalid {
                path: tmp.to_owned(),
                reason: "refused".into(),
            })
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read_to_string(dir.join("a.txt")).unwrap(), "one");
        let leftovers: Vec<_> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    }

    #[test]
    fn safetensors_round_trip_with_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.safetensors");
        let a = Tensor::from_slice(&[1.0f32, 2.5, -3.0]).view([3, 1]);
        let b = Tensor::from_slice(&[7i64, -9]);
        let meta = HashMap::from([("step".to_string(), "12".to_string())]);
        write_safetensors(
            &path,
            &[("a".into(), a.copy()), ("b".into(), b.copy())],
            meta,
        )
        .unwrap();
        let (tensors, meta) = read_safetensors(&path).unwrap();
        assert_eq!(meta["step"], "12");
        assert!(tensors["a"].equal(&a));
        assert!(tensors["b"].equal(&b));
    }
}
