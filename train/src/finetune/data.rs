//! Fine-tuning data in memory: the images of a split preprocessed once into one tensor, and
//! per task the texts, labels and targets that refer to them by index. The synthetic scenes
//! data set is read here; the public formats (Karpathy JSON, VQAv2, NLVR2 JSON lines, class
//! folders, ADE20K folders) are read by [`super::formats`] into the same structures.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor};
use vlbeit_core::config::PreprocessConfig;
use vlbeit_core::preprocess::Preprocessor;
use vlbeit_core::scenes::{DatasetManifest, SceneAnnotation, Split};
use vlbeit_core::shards::ShardReader;

/// Bad fine-tuning data: always names the file and, where there is one, the entry.
#[derive(Debug, thiserror::Error)]
pub enum TaskDataError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {entry}: {reason}", path.display())]
    Entry {
        path: PathBuf,
        entry: String,
        reason: String,
    },
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

impl TaskDataError {
    pub(crate) fn entry(path: &Path, entry: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Entry {
            path: path.to_owned(),
            entry: entry.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid(path: &Path, reason: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Images preprocessed to the model's `pixel_values`, kept on the CPU: `[N, 3, H, W]`.
#[derive(Debug)]
pub struct ImageSet {
    /// A name per image (file path or scene key), for errors and reports.
    pub names: Vec<String>,
    pub pixels: Tensor,
}

impl ImageSet {
    /// Decodes and preprocesses every `(name, encoded bytes)`; the first unreadable image stops
    /// with an error naming it and `source` (the file that referenced it).
    pub fn from_encoded(
        source: &Path,
        images: &[(String, Vec<u8>)],
        preprocess: &PreprocessConfig,
    ) -> Result<Self, TaskDataError> {
        let pre = Preprocessor::new(preprocess.clone())
            .map_err(|e| TaskDataError::invalid(source, e.to_string()))?;
        let per_image = pre.pixel_values_len();
        let mut data = Vec::with_capacity(images.len() * per_image);
        for (name, bytes) in images {
            let pixels = pre
                .encoded(bytes)
                .map_err(|e| TaskDataError::entry(source, name.clone(), e.to_string()))?;
            data.extend_from_slice(&pixels);
        }
        let side = i64::from(preprocess.image_size);
        let pixels = Tensor::from_slice(&data).reshape([images.len() as i64, 3, side, side]);
        Ok(Self {
            names: images.iter().map(|(n, _)| n.clone()).collect(),
            pixels,
        })
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Rows `index` on `device`.
    pub fn batch(&self, index: &[usize], device: Device) -> Tensor {
        let index: Vec<i64> = index.iter().map(|&i| i as i64).collect();
        self.pixels
            .index_select(0, &Tensor::from_slice(&index))
            .to(device)
    }
}

/// Image–text retrieval data: `texts[t]` describes `images[text_image[t]]`.
#[derive(Debug)]
pub struct RetrievalData {
    pub images: ImageSet,
    pub texts: Vec<String>,
    pub text_image: Vec<usize>,
}

impl RetrievalData {
    /// For each of `images`, the set of its texts.
    pub fn captions_of(&self, images: &[usize]) -> Vec<HashSet<&str>> {
        let slot: HashMap<usize, usize> = images.iter().enumerate().map(|(k, &i)| (i, k)).collect();
        let mut out = vec![HashSet::new(); images.len()];
        for (t, image) in self.text_image.iter().enumerate() {
            if let Some(&k) = slot.get(image) {
                out[k].insert(self.texts[t].as_str());
            }
        }
        out
    }
}

/// VQA data: `questions[q]` about `images[question_image[q]]`, with soft targets
/// (answer, score) (answers as strings, mapped to the head's answer list at use).
#[derive(Debug)]
pub struct VqaData {
    pub images: ImageSet,
    pub questions: Vec<String>,
    pub question_image: Vec<usize>,
    pub targets: Vec<Vec<(String, f32)>>,
    /// Candidate answer vocabulary of this data (a fine-tuning run's head answers).
    pub answers: Vec<String>,
}

impl VqaData {
    /// `targets` as (index into `answers`, score); answers outside the list are dropped.
    pub fn indexed_targets(&self, answers: &[String]) -> Vec<Vec<(usize, f32)>> {
        let index: HashMap<&str, usize> = answers
            .iter()
            .enumerate()
            .map(|(i, a)| (a.as_str(), i))
            .collect();
        self.targets
            .iter()
            .map(|t| {
                t.iter()
                    .filter_map(|(a, s)| index.get(a.as_str()).map(|&i| (i, *s)))
                    .collect()
            })
            .collect()
    }
}

/// NLVR2 data: `statements[k]` is true or false of the pair (`left[k]`, `right[k]`).
#[derive(Debug)]
pub struct Nlvr2Data {
    pub images: ImageSet,
    pub statements: Vec<String>,
    pub left: Vec<usize>,
    pub right: Vec<usize>,
    pub labels: Vec<bool>,
}

/// Classification data: `labels[i]` indexes `classes`.
#[derive(Debug)]
pub struct ClassifyData {
    pub images: ImageSet,
    pub labels: Vec<usize>,
    pub classes: Vec<String>,
}

/// Segmentation data: per-pixel labels `[N, H, W]` i64 at the model resolution (255 =
/// ignored), indexing `classes`.
#[derive(Debug)]
pub struct SegmentData {
    pub images: ImageSet,
    pub masks: Tensor,
    pub classes: Vec<String>,
}

/// Label value that segmentation losses and metrics ignore.
pub const IGNORE_LABEL: i64 = 255;

/// A mask (one byte per pixel, `width × height`) through the geometry of `preprocess` (short
/// side to `resize`, centre crop `image_size`), by nearest neighbour: the labels line up with
/// the preprocessed image pixel for pixel.
pub fn mask_to_model(
    mask: &[u8],
    width: usize,
    height: usize,
    preprocess: &PreprocessConfig,
) -> Vec<u8> {
    let resize = preprocess.resize as usize;
    let crop = preprocess.image_size as usize;
    let (rw, rh) = if width <= height {
        (resize, resize * height / width)
    } else {
        (resize * width / height, resize)
    };
    let offset = |full: usize| ((full - crop) as f64 / 2.0).round_ties_even() as usize;
    let (ox, oy) = (offset(rw), offset(rh));
    let mut out = Vec::with_capacity(crop * crop);
    for y in 0..crop {
        let sy = (((y + oy) as f64 + 0.5) * height as f64 / rh as f64) as usize;
        for x in 0..crop {
            let sx = (((x + ox) as f64 + 0.5) * width as f64 / rw as f64) as usize;
            out.push(mask[sy.min(height - 1) * width + sx.min(width - 1)]);
        }
    }
    out
}

/// One split of the synthetic scenes data set, undecoded.
pub struct ScenesSplit {
    pub dir: PathBuf,
    pub split: Split,
    pub manifest: DatasetManifest,
    /// `(key, png bytes)` in shard order.
    pub images: Vec<(String, Vec<u8>)>,
    pub annotations: Vec<SceneAnnotation>,
    pub masks: Vec<Vec<u8>>,
}

impl ScenesSplit {
    /// Reads every sample of `split` from the shards of the scenes data set in `dir`.
    pub fn read(dir: &Path, split: Split) -> Result<Self, TaskDataError> {
        let manifest_path = dir.join("dataset.json");
        let manifest = DatasetManifest::load(dir)
            .map_err(|e| TaskDataError::invalid(&manifest_path, e.to_string()))?;
        let entry = manifest.splits.get(split.name()).ok_or_else(|| {
            TaskDataError::invalid(&manifest_path, format!("no split `{}`", split.name()))
        })?;
        if entry.shards.is_empty() {
            return Err(TaskDataError::invalid(
                &manifest_path,
                format!("split `{}` has no scenes", split.name()),
            ));
        }
        let (mut images, mut annotations, mut masks) = (Vec::new(), Vec::new(), Vec::new());
        for shard in &entry.shards {
            let path = dir.join(shard);
            let reader = ShardReader::open(&path)
                .map_err(|e| TaskDataError::invalid(&path, e.to_string()))?;
            for sample in reader {
                let sample = sample.map_err(|e| TaskDataError::invalid(&path, e.to_string()))?;
                let file = |ext: &str| {
                    sample.files.get(ext).cloned().ok_or_else(|| {
                        TaskDataError::entry(&path, sample.key.clone(), format!("no `{ext}` entry"))
                    })
                };
                let annotation: SceneAnnotation = serde_json::from_slice(&file("json")?)
                    .map_err(|e| TaskDataError::entry(&path, sample.key.clone(), e.to_string()))?;
                images.push((sample.key.clone(), file("png")?));
                masks.push(file("mask.png")?);
                annotations.push(annotation);
            }
        }
        Ok(Self {
            dir: dir.to_owned(),
            split,
            manifest,
            images,
            annotations,
            masks,
        })
    }

    fn image_set(&self, preprocess: &PreprocessConfig) -> Result<ImageSet, TaskDataError> {
        let source = self.dir.join(format!("scenes-{}-*.tar", self.split.name()));
        ImageSet::from_encoded(&source, &self.images, preprocess)
    }

    /// Every caption of every scene.
    pub fn retrieval(&self, preprocess: &PreprocessConfig) -> Result<RetrievalData, TaskDataError> {
        let (mut texts, mut text_image) = (Vec::new(), Vec::new());
        for (i, a) in self.annotations.iter().enumerate() {
            for c in &a.captions {
                texts.push(c.clone());
                text_image.push(i);
            }
        }
        Ok(RetrievalData {
            images: self.image_set(preprocess)?,
            texts,
            text_image,
        })
    }

    /// Every question of every scene, soft-scored by its ten simulated annotators.
    pub fn vqa(&self, preprocess: &PreprocessConfig) -> Result<VqaData, TaskDataError> {
        let mut data = VqaData {
            images: self.image_set(preprocess)?,
            questions: Vec::new(),
            question_image: Vec::new(),
            targets: Vec::new(),
            answers: self.manifest.answer_vocabulary.clone(),
        };
        for (i, a) in self.annotations.iter().enumerate() {
            for q in &a.questions {
                data.questions.push(q.question.clone());
                data.question_image.push(i);
                data.targets
                    .push(q.scores.iter().map(|(a, s)| (a.clone(), *s)).collect());
            }
        }
        Ok(data)
    }

    /// The split's NLVR2 items (`nlvr2-{split}.jsonl`), whose scenes are in this split.
    pub fn nlvr2(&self, preprocess: &PreprocessConfig) -> Result<Nlvr2Data, TaskDataError> {
        let entry = &self.manifest.splits[self.split.name()];
        let path = self.dir.join(&entry.nlvr2_file);
        let keys: BTreeMap<&str, usize> = self
            .images
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.as_str(), i))
            .collect();
        let items = super::formats::nlvr2::read_jsonl(&path)?;
        let mut data = Nlvr2Data {
            images: self.image_set(preprocess)?,
            statements: Vec::new(),
            left: Vec::new(),
            right: Vec::new(),
            labels: Vec::new(),
        };
        for item in items {
            let find = |key: &str| {
                keys.get(key).copied().ok_or_else(|| {
                    TaskDataError::entry(&path, item.id.clone(), format!("unknown scene `{key}`"))
                })
            };
            data.left.push(find(&item.left)?);
            data.right.push(find(&item.right)?);
            data.statements.push(item.statement);
            data.labels.push(item.label);
        }
        Ok(data)
    }

    /// Labels: the shape of the largest object.
    pub fn classify(&self, preprocess: &PreprocessConfig) -> Result<ClassifyData, TaskDataError> {
        Ok(ClassifyData {
            images: self.image_set(preprocess)?,
            labels: self.annotations.iter().map(|a| a.label).collect(),
            classes: self.manifest.class_names.clone(),
        })
    }

    /// Per-pixel shape classes (0 = background) at the model resolution.
    pub fn segment(&self, preprocess: &PreprocessConfig) -> Result<SegmentData, TaskDataError> {
        let images = self.image_set(preprocess)?;
        let pre = Preprocessor::new(preprocess.clone())
            .map_err(|e| TaskDataError::invalid(&self.dir, e.to_string()))?;
        let side = preprocess.image_size as usize;
        let mut labels = Vec::with_capacity(self.masks.len() * side * side);
        for ((key, _), png) in self.images.iter().zip(&self.masks) {
            let (mask, w, h) = decode_mask(&pre, png)
                .map_err(|reason| TaskDataError::entry(&self.dir, key.clone(), reason))?;
            labels.extend(
                mask_to_model(&mask, w, h, preprocess)
                    .into_iter()
                    .map(i64::from),
            );
        }
        let n = self.masks.len() as i64;
        Ok(SegmentData {
            images,
            masks: Tensor::from_slice(&labels)
                .reshape([n, side as i64, side as i64])
                .to_kind(Kind::Int64),
            classes: self.manifest.segmentation_classes.clone(),
        })
    }
}

/// Decodes a label PNG (one value per pixel; colour files use the red channel).
pub(crate) fn decode_mask(
    pre: &Preprocessor,
    bytes: &[u8],
) -> Result<(Vec<u8>, usize, usize), String> {
    let image = pre.decode(bytes).map_err(|e| e.to_string())?;
    let (w, h) = (image.width() as usize, image.height() as usize);
    // ImageF32 is planar RGB with exact u8 values; a grayscale file has R = G = B.
    let mask = image.data()[..w * h].iter().map(|&v| v as u8).collect();
    Ok((mask, w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_follows_the_resize_and_centre_crop() {
        // 4 x 2 mask, columns 0..3; resize short side 2 → 4 x 2 (no change), crop 2 → columns 1, 2
        let mask = [0u8, 1, 2, 3, 0, 1, 2, 3];
        let pre = PreprocessConfig {
            resize: 2,
            ..PreprocessConfig::for_image_size(2)
        };
        assert_eq!(mask_to_model(&mask, 4, 2, &pre), vec![1, 2, 1, 2]);
        // upsampling 2x2 → 4x4 repeats each label in a 2x2 block
        let pre = PreprocessConfig::for_image_size(4);
        let up = mask_to_model(&[1, 2, 3, 4], 2, 2, &pre);
        assert_eq!(up, vec![1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4]);
    }
}
