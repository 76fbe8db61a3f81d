//! Karpathy-split JSON of COCO / Flickr30K retrieval (`dataset_coco.json`,
//! `dataset_flickr30k.json`): `{"images": [{"filename", "filepath"?, "split", "sentences":
//! [{"raw", ...}], ...}]}`.
//!
//! The directory holds one `dataset_*.json`; image `i` is `DIR/{filepath}/{filename}` (COCO), or
//! `DIR/images/{filename}`, or `DIR/{filename}` (Flickr30K has no `filepath`), the first that
//! exists. Split `train` also takes the `restval` images (the usual 113k COCO training set).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use vlbeit_core::config::PreprocessConfig;

use super::{json_entries, read_image};
use crate::finetune::data::{ImageSet, RetrievalData, TaskDataError};

#[derive(Deserialize)]
struct Image {
    filename: String,
    #[serde(default)]
    filepath: Option<String>,
    split: String,
    sentences: Vec<Sentence>,
}

#[derive(Deserialize)]
struct Sentence {
    raw: String,
}

/// The `dataset_*.json` of `dir` (the first by name).
pub fn annotation_file(dir: &Path) -> Result<PathBuf, TaskDataError> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(TaskDataError::io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("dataset_") && n.ends_with(".json"))
        })
        .collect();
    found.sort();
    found.into_iter().next().ok_or_else(|| {
        TaskDataError::invalid(
            dir,
            "no Karpathy-split file dataset_*.json in the directory",
        )
    })
}

pub fn read(
    dir: &Path,
    split: &str,
    preprocess: &PreprocessConfig,
) -> Result<RetrievalData, TaskDataError> {
    let path = annotation_file(dir)?;
    let entries: Vec<Image> = json_entries(&path, "images", "filename")?;
    let (mut images, mut texts, mut text_image) = (Vec::new(), Vec::new(), Vec::new());
    for (n, image) in entries.iter().enumerate() {
        let wanted = image.split == split || (split == "train" && image.split == "restval");
        if !wanted {
            continue;
        }
        let entry = format!("images[{n}] ({})", image.filename);
        if image.sentences.is_empty() {
            return Err(TaskDataError::entry(&path, entry, "has no sentences"));
        }
        let candidates: Vec<PathBuf> = match &image.filepath {
            Some(fp) => vec![dir.join(fp).join(&image.filename)],
            None => vec![
                dir.join("images").join(&image.filename),
                dir.join(&image.filename),
            ],
        };
        let file = candidates
            .iter()
            .find(|p| p.is_file())
            .unwrap_or(&candidates[0]);
        images.push((image.filename.clone(), read_image(&path, &entry, file)?));
        for s in &image.sentences {
            texts.push(s.raw.trim().to_string());
            text_image.push(images.len() - 1);
        }
    }
    if images.is_empty() {
        return Err(TaskDataError::invalid(
            &path,
            format!("no image of split `{split}`"),
        ));
    }
    Ok(RetrievalData {
        images: ImageSet::from_encoded(&path, &images, preprocess)?,
        texts,
        text_image,
    })
}
