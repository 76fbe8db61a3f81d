//! Readers of the data formats users fine-tune on, into the in-memory task data of
//! [`super::data`]. Each names the file and the entry of any problem: a missing key, an unknown
//! image id, an empty answer list, a referenced image that is missing, an empty class folder.

pub mod ade20k;
pub mod imagefolder;
pub mod karpathy;
pub mod nlvr2;
pub mod vqav2;

use std::path::{Path, PathBuf};

use super::data::TaskDataError;

/// How a data directory is laid out (docs/finetuning.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataFormat {
    /// The synthetic scenes data set (`vlbeit-train scenes`): every task from one directory.
    Scenes,
    /// COCO / Flickr30K Karpathy-split JSON (retrieval).
    Karpathy,
    /// VQAv2 questions + annotations JSON (VQA).
    Vqav2,
    /// NLVR2 JSON lines (NLVR2).
    Nlvr2,
    /// ImageNet-style class folders (classification).
    ImageFolder,
    /// ADE20K-style image / annotation folders (segmentation).
    Ade20k,
}

impl DataFormat {
    pub const NAMES: &'static str = "scenes, karpathy, vqav2, nlvr2, imagefolder, ade20k";

    pub fn name(self) -> &'static str {
        match self {
            DataFormat::Scenes => "scenes",
            DataFormat::Karpathy => "karpathy",
            DataFormat::Vqav2 => "vqav2",
            DataFormat::Nlvr2 => "nlvr2",
            DataFormat::ImageFolder => "imagefolder",
            DataFormat::Ade20k => "ade20k",
        }
    }
}

impl std::str::FromStr for DataFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "scenes" => DataFormat::Scenes,
            "karpathy" => DataFormat::Karpathy,
            "vqav2" => DataFormat::Vqav2,
            "nlvr2" => DataFormat::Nlvr2,
            "imagefolder" => DataFormat::ImageFolder,
            "ade20k" => DataFormat::Ade20k,
            other => {
                return Err(format!(
                    "unknown data format `{other}` ({})",
                    DataFormat::NAMES
                ));
            }
        })
    }
}

/// Reads an image file that `source` (an annotation file) references at `entry`.
pub(crate) fn read_image(
    source: &Path,
    entry: &str,
    file: &Path,
) -> Result<Vec<u8>, TaskDataError> {
    std::fs::read(file).map_err(|e| {
        TaskDataError::entry(
            source,
            entry,
            format!("cannot read image {}: {e}", file.display()),
        )
    })
}

/// Image files (png, jpg, jpeg, webp) directly in `dir`, sorted by name.
pub(crate) fn list_images(dir: &Path) -> Result<Vec<PathBuf>, TaskDataError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(TaskDataError::io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                    matches!(
                        e.to_ascii_lowercase().as_str(),
                        "png" | "jpg" | "jpeg" | "webp"
                    )
                })
        })
        .collect();
    files.sort();
    Ok(files)
}

/// `array` of the JSON object in `path`, each element parsed as `T`; an element that does not
/// parse is an error naming its position and id.
pub(crate) fn json_entries<T: serde::de::DeserializeOwned>(
    path: &Path,
    array: &str,
    id_key: &str,
) -> Result<Vec<T>, TaskDataError> {
    let bytes = std::fs::read(path).map_err(TaskDataError::io(path))?;
    let mut value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| TaskDataError::invalid(path, format!("not JSON: {e}")))?;
    let items = match value.get_mut(array).map(serde_json::Value::take) {
        Some(serde_json::Value::Array(items)) => items,
        _ => {
            return Err(TaskDataError::invalid(
                path,
                format!("missing array `{array}`"),
            ));
        }
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let id = item
                .get(id_key)
                .map_or_else(|| "?".to_string(), |v| v.to_string());
            serde_json::from_value(item).map_err(|e| {
                TaskDataError::entry(path, format!("{array}[{i}] ({id_key} {id})"), e.to_string())
            })
        })
        .collect()
}
