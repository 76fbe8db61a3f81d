//! `model.safetensors`: saving, strict loading (with position-grid interpolation for a new
//! resolution) and the parameter count.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use tch::{Kind, TchError, Tensor, nn};
use vlbeit_core::config::ModelConfig;

/// Name of the image position table, the one tensor whose shape may legitimately differ
/// between a checkpoint and the model (another resolution).
const IMAGE_POS: &str = "embed.image_pos";

/// A tensor whose shape differs between the model and the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeMismatch {
    pub name: String,
    pub expected: Vec<i64>,
    pub found: Vec<i64>,
}

/// Weights that cannot be saved or loaded, with what a user needs to fix it.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("cannot read weights {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: TchError,
    },
    #[error("cannot write weights {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: TchError,
    },
    #[error("weights file {} must end in .safetensors", path.display())]
    NotSafetensors { path: PathBuf },
    #[error("weights {} do not match the model: {}", path.display(), MismatchList { missing, unexpected, wrong_shape })]
    Mismatch {
        path: PathBuf,
        /// In the model, not in the file.
        missing: Vec<String>,
        /// In the file, not in the model.
        unexpected: Vec<String>,
        wrong_shape: Vec<ShapeMismatch>,
    },
}

struct MismatchList<'a> {
    missing: &'a [String],
    unexpected: &'a [String],
    wrong_shape: &'a [ShapeMismatch],
}

impl fmt::Display for MismatchList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            parts.push(format!("missing tensors: {}", self.missing.join(", ")));
        }
        if !self.unexpected.is_empty() {
            parts.push(format!(
                "unexpected tensors: {}",
                self.unexpected.join(", ")
            ));
        }
        for m in self.wrong_shape {
            parts.push(format!(
                "tensor {} has shape {:?}, expected {:?}",
                m.name, m.found, m.expected
            ));
        }
        f.write_str(&parts.join("; "))
    }
}

/// Writes every variable of `vs` to `path` (a `*.safetensors` file, names of DESIGN.md §4.5).
pub fn save_weights(vs: &nn::VarStore, path: &Path) -> Result<(), WeightsError> {
    if path.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        return Err(WeightsError::NotSafetensors {
            path: path.to_owned(),
        });
    }
    vs.save(path).map_err(|source| WeightsError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Loads `path` (a `model.safetensors`) into `vs`, strictly: every variable of `vs` must be in
/// the file with its shape, and the file must hold nothing else. The one exception is
/// `embed.image_pos` of another square grid (a checkpoint trained at another resolution),
/// which is resampled to `config.grid()` with [`interpolate_image_pos`]. On error nothing
/// has been copied and the error lists every missing, unexpected and wrong-shaped tensor.
pub fn load_weights(
    vs: &mut nn::VarStore,
    path: &Path,
    config: &ModelConfig,
) -> Result<(), WeightsError> {
    load_weights_except(vs, path, config, &|_| false)
}

/// [`load_weights`], except that tensors of the file for which `ignore(name)` holds and that the
/// model lacks are left out (fine-tuning from a checkpoint that carries another task's head).
pub fn load_weights_except(
    vs: &mut nn::VarStore,
    path: &Path,
    config: &ModelConfig,
    ignore: &dyn Fn(&str) -> bool,
) -> Result<(), WeightsError> {
    let read = |source| WeightsError::Read {
        path: path.to_owned(),
        source,
    };
    let mut file: BTreeMap<String, Tensor> = Tensor::read_safetensors(path)
        .map_err(read)?
        .into_iter()
        .collect();
    let model: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    file.retain(|name, _| model.contains_key(name) || !ignore(name));

    let missing: Vec<String> = model
        .keys()
        .filter(|name| !file.contains_key(*name))
        .cloned()
        .collect();
    let unexpected: Vec<String> = file
        .keys()
        .filter(|name| !model.contains_key(*name))
        .cloned()
        .collect();
    if let (Some(pos), Some(var)) = (file.get(IMAGE_POS), model.get(IMAGE_POS))
        && pos.size() != var.size()
        && let Some(resampled) = resample_pos_if_grid(pos, &var.size(), config.grid())
    {
        file.insert(IMAGE_POS.to_owned(), resampled);
    }
    let wrong_shape: Vec<ShapeMismatch> = model
        .iter()
        .filter_map(|(name, var)| {
            let src = file.get(name)?;
            (src.size() != var.size()).then(|| ShapeMismatch {
                name: name.clone(),
                expected: var.size(),
                found: src.size(),
            })
        })
        .collect();
    if !(missing.is_empty() && unexpected.is_empty() && wrong_shape.is_empty()) {
        return Err(WeightsError::Mismatch {
            path: path.to_owned(),
            missing,
            unexpected,
            wrong_shape,
        });
    }

    tch::no_grad(|| {
        for (name, var) in &model {
            let mut var = var.shallow_clone();
            var.f_copy_(&file[name])
                .map_err(|e| read(e.path_context(name)))?;
        }
        Ok(())
    })
}

/// `pos` resampled to `grid` if it is a `[1, 1 + g², D]` table of the model's width; `None`
/// when it is not a position table at all (then the shape mismatch is reported).
fn resample_pos_if_grid(pos: &Tensor, expected: &[i64], grid: usize) -> Option<Tensor> {
    let &[1, len, width] = pos.size().as_slice() else {
        return None;
    };
    let old_grid = (len - 1).max(0).isqrt();
    let square = len >= 2 && old_grid * old_grid == len - 1;
    (square && width == expected[2]).then(|| interpolate_image_pos(pos, grid))
}

/// Resamples image position embeddings `[1, 1 + g², D]` to `[1, 1 + new_grid², D]`: the
/// [I_CLS] row is kept, the g×g grid is resized bicubically with `align_corners = false`
/// (as BEiT and timm do when fine-tuning at a higher resolution). Same grid: a copy.
///
/// Panics if `pos` is not `[1, 1 + g², D]` for an integer g.
pub fn interpolate_image_pos(pos: &Tensor, new_grid: usize) -> Tensor {
    let (one, len, width) = pos.size3().expect("image_pos is [1, 1 + N, D]");
    let grid = (len - 1).max(0).isqrt();
    assert!(
        one == 1 && len >= 2 && grid * grid == len - 1,
        "image_pos must be [1, 1 + g*g, D], got {:?}",
        pos.size()
    );
    let new_grid = new_grid as i64;
    if new_grid == grid {
        return pos.copy();
    }
    let cls = pos.narrow(1, 0, 1);
    let patches = pos
        .narrow(1, 1, len - 1)
        .to_kind(Kind::Float)
        .reshape([1, grid, grid, width])
        .permute([0, 3, 1, 2])
        .upsample_bicubic2d([new_grid, new_grid], false, None, None)
        .permute([0, 2, 3, 1])
        .reshape([1, new_grid * new_grid, width])
        .to_kind(pos.kind());
    Tensor::cat(&[cls, patches], 1)
}

/// Number of scalars in `vs` (every variable, trainable or not).
pub fn parameter_count(vs: &nn::VarStore) -> usize {
    vs.variables().values().map(Tensor::numel).sum()
}
