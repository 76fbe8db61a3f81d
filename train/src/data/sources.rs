//! Where pretraining data comes from: WebDataset shards of pairs, images from shards or a
//! folder, sentences from text files; the synthetic scenes data set as the default.

use std::path::{Path, PathBuf};

use vlbeit_core::scenes::{DatasetManifest, Split};

use super::DataError;

/// Extensions of image files and shard entries the loader decodes, in order of preference.
pub(crate) const IMAGE_EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "webp"];

/// Images for MIM.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageSource {
    /// WebDataset shards; each sample's first `png`/`jpg`/`jpeg`/`webp` entry is the image.
    Shards(Vec<PathBuf>),
    /// Image files (png, jpg, webp) directly inside a folder, in name order.
    Folder(PathBuf),
}

/// Which lines of the text files a loader uses. The held-out slice is the *last*
/// `floor(fraction · lines)` non-empty lines of the files concatenated in order (at least one
/// line always stays for training), so train and held-out never share a line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TextSlice {
    All,
    Train { held_out: f64 },
    HeldOut { held_out: f64 },
}

/// Share of the scenes corpus held out for evaluating MLM.
pub const SCENES_HELD_OUT_TEXT: f64 = 0.05;

/// The three kinds of pretraining data.
#[derive(Debug, Clone, PartialEq)]
pub struct DataSources {
    pub images: ImageSource,
    /// WebDataset shards of pairs: an image entry plus `json` with a `captions` array (one is
    /// drawn per use) or a `txt` caption.
    pub pairs: Vec<PathBuf>,
    /// UTF-8 text files, one sentence per line; empty lines are skipped.
    pub texts: Vec<PathBuf>,
    pub text_slice: TextSlice,
}

impl DataSources {
    /// The synthetic scenes data set written by `vlbeit-train scenes`: images and pairs from
    /// the train split's shards, texts from `corpus.txt` without its held-out slice.
    pub fn scenes(dir: impl AsRef<Path>) -> Result<Self, DataError> {
        Self::scenes_split(
            dir.as_ref(),
            Split::Train,
            TextSlice::Train {
                held_out: SCENES_HELD_OUT_TEXT,
            },
        )
    }

    /// Held-out scenes data for evaluation: the val split's images and pairs, and the last 5%
    /// of `corpus.txt` ([`TextSlice::HeldOut`]).
    pub fn scenes_held_out(dir: impl AsRef<Path>) -> Result<Self, DataError> {
        Self::scenes_split(
            dir.as_ref(),
            Split::Val,
            TextSlice::HeldOut {
                held_out: SCENES_HELD_OUT_TEXT,
            },
        )
    }

    fn scenes_split(dir: &Path, split: Split, text_slice: TextSlice) -> Result<Self, DataError> {
        check_exists("scenes data set", dir)?;
        let manifest = DatasetManifest::load(dir)?;
        let shards: Vec<PathBuf> = manifest
            .splits
            .get(split.name())
            .map(|entry| entry.shards.iter().map(|s| dir.join(s)).collect())
            .unwrap_or_default();
        if shards.is_empty() {
            return Err(DataError::Empty {
                what: "scenes (the split has no shards)",
                paths: vec![dir.join("dataset.json")],
            });
        }
        let sources = Self {
            images: ImageSource::Shards(shards.clone()),
            pairs: shards,
            texts: vec![dir.join(&manifest.corpus_file)],
            text_slice,
        };
        sources.check()?;
        Ok(sources)
    }

    /// Fails on the first path that does not exist, naming it, so a typo stops a run before
    /// any model is built.
    pub fn check(&self) -> Result<(), DataError> {
        match &self.images {
            ImageSource::Shards(shards) => {
                non_empty("image shards", shards)?;
                shards
                    .iter()
                    .try_for_each(|p| check_exists("image shard", p))?;
            }
            ImageSource::Folder(dir) => check_exists("image folder", dir)?,
        }
        non_empty("pair shards", &self.pairs)?;
        self.pairs
            .iter()
            .try_for_each(|p| check_exists("pair shard", p))?;
        non_empty("text files", &self.texts)?;
        self.texts
            .iter()
            .try_for_each(|p| check_exists("text file", p))
    }
}

fn non_empty(what: &'static str, paths: &[PathBuf]) -> Result<(), DataError> {
    if paths.is_empty() {
        return Err(DataError::Empty {
            what,
            paths: Vec::new(),
        });
    }
    Ok(())
}

fn check_exists(what: &'static str, path: &Path) -> Result<(), DataError> {
    if path.exists() {
        Ok(())
    } else {
        Err(DataError::Missing {
            what,
            path: path.to_path_buf(),
        })
    }
}

/// The image files directly inside `dir`, sorted by name.
pub(crate) fn list_images(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let io = |source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let is_image = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
        if is_image && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(DataError::Empty {
            what: "image files (png, jpg, webp)",
            paths: vec![dir.to_path_buf()],
        });
    }
    Ok(files)
}

/// The non-empty lines (trimmed) of `files` in order, restricted to `slice`.
pub(crate) fn load_lines(files: &[PathBuf], slice: TextSlice) -> Result<Vec<String>, DataError> {
    let mut lines = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
            path: path.clone(),
            source,
        })?;
        lines.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned),
        );
    }
    let held = |fraction: f64| {
        let n = (fraction.clamp(0.0, 1.0) * lines.len() as f64).floor() as usize;
        n.min(lines.len().saturating_sub(1))
    };
    match slice {
        TextSlice::All => {}
        TextSlice::Train { held_out } => {
            let keep = lines.len() - held(held_out);
            lines.truncate(keep);
        }
        TextSlice::HeldOut { held_out } => {
            let start = lines.len() - held(held_out);
            lines.drain(..start);
        }
    }
    if lines.is_empty() {
        return Err(DataError::Empty {
            what: match slice {
                TextSlice::HeldOut { .. } => "held-out text lines (the slice is empty)",
                _ => "text lines",
            },
            paths: files.to_vec(),
        });
    }
    Ok(lines)
}
