//! ADE20K-style segmentation folders (`ADEChallengeData2016`): `DIR/images/{split}/NAME.jpg`
//! (or png) and `DIR/annotations/{split}/NAME.png`, one label per pixel: 0 = "other"
//! (ignored), `k ≥ 1` = class `k − 1` (mmseg's `reduce_zero_label`). Class names come from
//! `DIR/classes.txt` (one per line, class 0 first) when present, else `class_{k}`; the number of
//! classes is that file's line count, or the largest label seen.

use std::path::Path;

use tch::Tensor;
use vlbeit_core::config::PreprocessConfig;
use vlbeit_core::preprocess::Preprocessor;

use super::{list_images, read_image};
use crate::finetune::data::{
    IGNORE_LABEL, ImageSet, SegmentData, TaskDataError, decode_mask, mask_to_model,
};

pub fn read(
    dir: &Path,
    split: &str,
    preprocess: &PreprocessConfig,
) -> Result<SegmentData, TaskDataError> {
    let image_dir = dir.join("images").join(split);
    let annotation_dir = dir.join("annotations").join(split);
    let files = list_images(&image_dir)?;
    if files.is_empty() {
        return Err(TaskDataError::invalid(&image_dir, "no images"));
    }
    let classes_path = dir.join("classes.txt");
    let mut classes: Option<Vec<String>> = if classes_path.is_file() {
        let text =
            std::fs::read_to_string(&classes_path).map_err(TaskDataError::io(&classes_path))?;
        Some(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    } else {
        None
    };
    let pre = Preprocessor::new(preprocess.clone())
        .map_err(|e| TaskDataError::invalid(dir, e.to_string()))?;
    let side = preprocess.image_size as usize;
    let (mut images, mut labels) = (Vec::new(), Vec::with_capacity(files.len() * side * side));
    let mut max_label = 0u8;
    for file in &files {
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = file.display().to_string();
        images.push((name.clone(), read_image(&image_dir, &name, file)?));
        let annotation = annotation_dir.join(format!("{stem}.png"));
        let bytes = read_image(&annotation_dir, &name, &annotation)?;
        let (mask, w, h) = decode_mask(&pre, &bytes)
            .map_err(|reason| TaskDataError::entry(&annotation, &name, reason))?;
        max_label = max_label.max(*mask.iter().max().unwrap_or(&0));
        labels.extend(mask_to_model(&mask, w, h, preprocess).into_iter().map(|v| {
            if v == 0 {
                IGNORE_LABEL
            } else {
                i64::from(v) - 1
            }
        }));
    }
    let classes = match classes.take() {
        Some(c) => {
            if usize::from(max_label) > c.len() {
                return Err(TaskDataError::invalid(
                    &classes_path,
                    format!(
                        "lists {} classes but an annotation holds label {max_label} (class {})",
                        c.len(),
                        max_label - 1
                    ),
                ));
            }
            c
        }
        None => (0..usize::from(max_label).max(1))
            .map(|k| format!("class_{k}"))
            .collect(),
    };
    let n = files.len() as i64;
    Ok(SegmentData {
        images: ImageSet::from_encoded(&image_dir, &images, preprocess)?,
        masks: Tensor::from_slice(&labels).reshape([n, side as i64, side as i64]),
        classes,
    })
}
