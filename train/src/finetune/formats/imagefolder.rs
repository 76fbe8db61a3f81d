//! ImageNet-style class folders: `DIR/{split}/{class}/*.{png,jpg,jpeg,webp}`; the classes are
//! the sub-folder names in sorted order (torchvision's `ImageFolder`). A class folder without an
//! image is an error (a typo or an interrupted copy would otherwise shift every label).

use std::path::Path;

use vlbeit_core::config::PreprocessConfig;

use super::{list_images, read_image};
use crate::finetune::data::{ClassifyData, ImageSet, TaskDataError};

pub fn read(
    dir: &Path,
    split: &str,
    preprocess: &PreprocessConfig,
) -> Result<ClassifyData, TaskDataError> {
    let root = dir.join(split);
    let mut classes: Vec<String> = std::fs::read_dir(&root)
        .map_err(TaskDataError::io(&root))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    classes.sort();
    if classes.is_empty() {
        return Err(TaskDataError::invalid(&root, "no class folders"));
    }
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    for (label, class) in classes.iter().enumerate() {
        let folder = root.join(class);
        let files = list_images(&folder)?;
        if files.is_empty() {
            return Err(TaskDataError::invalid(
                &folder,
                "class folder holds no image (png, jpg, jpeg, webp)",
            ));
        }
        for file in files {
            let name = file.display().to_string();
            images.push((name.clone(), read_image(&folder, &name, &file)?));
            labels.push(label);
        }
    }
    Ok(ClassifyData {
        images: ImageSet::from_encoded(&root, &images, preprocess)?,
        labels,
        classes,
    })
}
