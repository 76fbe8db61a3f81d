//! Writes the data set to disk: per split WebDataset shards and NLVR2 items, the text corpus,
//! and `dataset.json` describing the vocabulary, the held-out combinations and the counts.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::vocab::{
    CLASS_NAMES, Colour, HELD_OUT_COMBOS, RELATION_NAMES, SEGMENTATION_CLASSES, SHAPE_NAMES,
    answer_vocabulary,
};
use super::{SceneConfig, SceneError, SceneGenerator, Split};
use crate::shards::{ShardError, ShardSetWriter};

/// A count per split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitCounts {
    pub train: u64,
    pub val: u64,
    pub test: u64,
    pub compositional: u64,
}

impl SplitCounts {
    pub fn get(&self, split: Split) -> u64 {
        match split {
            Split::Train => self.train,
            Split::Val => self.val,
            Split::Test => self.test,
            Split::Compositional => self.compositional,
        }
    }
}

/// What to write. `Default` is the demo data set: 64 px, 1 000 training scenes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetSpec {
    pub image_size: u32,
    pub seed: u64,
    pub scenes: SplitCounts,
    /// NLVR2 items per split (each about two of that split's scenes).
    pub nlvr2: SplitCounts,
    pub corpus_sentences: u64,
    /// Samples per shard.
    pub shard_size: u64,
}

impl Default for DatasetSpec {
    fn default() -> Self {
        let scenes = SplitCounts {
            train: 1000,
            val: 100,
            test: 100,
            compositional: 100,
        };
        Self {
            image_size: 64,
            seed: 0,
            scenes,
            nlvr2: scenes,
            corpus_sentences: 5000,
            shard_size: 500,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error(transparent)]
    Scene(#[from] SceneError),
    #[error(transparent)]
    Shard(#[from] ShardError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: exists and is neither empty nor a scenes data set; refusing to replace it")]
    NotEmpty(PathBuf),
    #[error("invalid data set spec: {0}")]
    InvalidSpec(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColourEntry {
    pub name: String,
    pub rgb: [u8; 3],
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitEntry {
    pub scenes: u64,
    /// Shard file names, in order.
    pub shards: Vec<String>,
    pub nlvr2_items: u64,
    pub nlvr2_file: String,
    /// Scenes per class label (index into `class_names`).
    pub label_counts: Vec<u64>,
}

/// The contents of `dataset.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetManifest {
    pub format_version: u32,
    pub spec: DatasetSpec,
    pub colours: Vec<ColourEntry>,
    pub shapes: Vec<String>,
    pub sizes: Vec<String>,
    pub relations: Vec<String>,
    pub class_names: Vec<String>,
    pub segmentation_classes: Vec<String>,
    pub answer_vocabulary: Vec<String>,
    /// `[colour, shape]` pairs that only the compositional split contains.
    pub held_out_combos: Vec<[String; 2]>,
    pub splits: BTreeMap<String, SplitEntry>,
    pub corpus_file: String,
    pub corpus_sentences: u64,
}

impl DatasetManifest {
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, DatasetError> {
        let path = dir.as_ref().join("dataset.json");
        let bytes = std::fs::read(&path).map_err(io_error(&path))?;
        serde_json::from_slice(&bytes).map_err(|e| DatasetError::Io {
            path,
            source: e.into(),
        })
    }
}

pub const DATASET_FORMAT_VERSION: u32 = 1;

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> DatasetError + '_ {
    move |source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), DatasetError> {
    let mut file = std::fs::File::create(path).map_err(io_error(path))?;
    file.write_all(bytes).map_err(io_error(path))?;
    file.sync_all().map_err(io_error(path))
}

/// Writes the data set described by `spec` into `out_dir`: per split
/// `scenes-{split}-{NNNNN}.tar` and `nlvr2-{split}.jsonl`, plus `corpus.txt` and
/// `dataset.json`. Everything is written into a sibling temp directory first and renamed
/// into place, so `out_dir` never holds a partial data set. An existing `out_dir` is replaced
/// only if it is empty or holds a previous data set (`dataset.json`).
pub fn write_dataset(
    out_dir: impl AsRef<Path>,
    spec: &DatasetSpec,
) -> Result<DatasetManifest, DatasetError> {
    let out_dir = out_dir.as_ref();
    if spec.shard_size == 0 {
        return Err(DatasetError::InvalidSpec(
            "shard_size must be at least 1".into(),
        ));
    }
    let generator = SceneGenerator::new(SceneConfig {
        image_size: spec.image_size,
        seed: spec.seed,
    })?;
    let name = out_dir
        .file_name()
        .ok_or_else(|| {
            DatasetError::InvalidSpec(format!("{} has no directory name", out_dir.display()))
        })?
        .to_string_lossy()
        .into_owned();
    let parent = match out_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if out_dir.exists() && !replaceable(out_dir)? {
        return Err(DatasetError::NotEmpty(out_dir.to_path_buf()));
    }
    let temp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    if temp.exists() {
        std::fs::remove_dir_all(&temp).map_err(io_error(&temp))?;
    }
    std::fs::create_dir_all(&temp).map_err(io_error(&temp))?;
    let manifest = match write_contents(&temp, spec, &generator) {
        Ok(manifest) => manifest,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&temp);
            return Err(e);
        }
    };
    if out_dir.exists() {
        let old = parent.join(format!(".{name}.old-{}", std::process::id()));
        std::fs::rename(out_dir, &old).map_err(io_error(out_dir))?;
        std::fs::rename(&temp, out_dir).map_err(io_error(out_dir))?;
        std::fs::remove_dir_all(&old).map_err(io_error(&old))?;
    } else {
        std::fs::rename(&temp, out_dir).map_err(io_error(out_dir))?;
    }
    Ok(manifest)
}

fn replaceable(dir: &Path) -> Result<bool, DatasetError> {
    if !dir.is_dir() {
        return Ok(false);
    }
    if dir.join("dataset.json").is_file() {
        return Ok(true);
    }
    let mut entries = std::fs::read_dir(dir).map_err(io_error(dir))?;
    Ok(entries.next().is_none())
}

fn write_contents(
    dir: &Path,
    spec: &DatasetSpec,
    generator: &SceneGenerator,
) -> Result<DatasetManifest, DatasetError> {
    let mut splits = BTreeMap::new();
    for split in Split::ALL {
        let scenes = spec.scenes.get(split);
        let mut label_counts = vec![0u64; CLASS_NAMES.len()];
        let mut shards =
            ShardSetWriter::new(dir, format!("scenes-{}", split.name()), spec.shard_size);
        for index in 0..scenes {
            let scene = generator.generate(split, index);
            label_counts[scene.label] += 1;
            shards.write(&scene.to_sample())?;
        }
        let shard_names = shards
            .finish()?
            .iter()
            .map(|p| {
                p.file_name()
                    .expect("shard paths end in a name")
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();

        let nlvr2_items = if scenes == 0 {
            0
        } else {
            spec.nlvr2.get(split)
        };
        let mut jsonl = Vec::new();
        for index in 0..nlvr2_items {
            let item = generator.nlvr2_item(split, index, scenes);
            serde_json::to_writer(&mut jsonl, &item).expect("NLVR2 items serialise");
            jsonl.push(b'\n');
        }
        let nlvr2_file = format!("nlvr2-{}.jsonl", split.name());
        write_synced(&dir.join(&nlvr2_file), &jsonl)?;
        splits.insert(
            split.name().to_owned(),
            SplitEntry {
                scenes,
                shards: shard_names,
                nlvr2_items,
                nlvr2_file,
                label_counts,
            },
        );
    }

    let mut corpus = String::new();
    for index in 0..spec.corpus_sentences {
        corpus.push_str(&generator.corpus_sentence(index));
        corpus.push('\n');
    }
    let corpus_file = "corpus.txt".to_owned();
    write_synced(&dir.join(&corpus_file), corpus.as_bytes())?;

    let strings = |names: &[&str]| names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let manifest = DatasetManifest {
        format_version: DATASET_FORMAT_VERSION,
        spec: spec.clone(),
        colours: Colour::ALL
            .iter()
            .map(|c| ColourEntry {
                name: c.name().to_owned(),
                rgb: c.rgb(),
            })
            .collect(),
        shapes: strings(&SHAPE_NAMES),
        sizes: strings(&["small", "large"]),
        relations: strings(&RELATION_NAMES),
        class_names: strings(&CLASS_NAMES),
        segmentation_classes: strings(&SEGMENTATION_CLASSES),
        answer_vocabulary: strings(&answer_vocabulary()),
        held_out_combos: HELD_OUT_COMBOS
            .iter()
            .map(|(c, s)| [c.name().to_owned(), s.name().to_owned()])
            .collect(),
        splits,
        corpus_file,
        corpus_sentences: spec.corpus_sentences,
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("the manifest serialises");
    write_synced(&dir.join("dataset.json"), &json)?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::super::scene_key;
    use super::*;
    use crate::shards::ShardReader;

    #[test]
    fn dataset_writer_is_deterministic_and_complete() {
        let root = tempfile::tempdir().unwrap();
        let spec = DatasetSpec {
            scenes: SplitCounts {
                train: 7,
                val: 3,
                test: 2,
                compositional: 4,
            },
            nlvr2: SplitCounts {
                train: 6,
                val: 2,
                test: 2,
                compositional: 3,
            },
            corpus_sentences: 20,
            shard_size: 3,
            ..DatasetSpec::default()
        };
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        let manifest = write_dataset(&a, &spec).unwrap();
        write_dataset(&b, &spec).unwrap();
        assert_eq!(
            manifest.splits["train"].shards,
            [
                "scenes-train-00000.tar",
                "scenes-train-00001.tar",
                "scenes-train-00002.tar"
            ]
        );
        let mut names: Vec<_> = std::fs::read_dir(&a)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names.len(), (3 + 1 + 1 + 2) + 4 + 2); // shards, NLVR2 files, corpus and dataset.json
        for name in &names {
            assert_eq!(
                std::fs::read(a.join(name)).unwrap(),
                std::fs::read(b.join(name)).unwrap(),
                "{name:?}"
            );
        }
        let keys: Vec<String> = manifest.splits["train"]
            .shards
            .iter()
            .flat_map(|s| {
                ShardReader::open(a.join(s))
                    .unwrap()
                    .map(|x| x.unwrap().key)
            })
            .collect();
        assert_eq!(
            keys,
            (0..7)
                .map(|i| scene_key(Split::Train, i))
                .collect::<Vec<_>>()
        );
        let corpus = std::fs::read_to_string(a.join("corpus.txt")).unwrap();
        assert_eq!(corpus.lines().count(), 20);
        let nlvr2 = std::fs::read_to_string(a.join("nlvr2-compositional.jsonl")).unwrap();
        assert_eq!(nlvr2.lines().count(), 3);
        assert_eq!(DatasetManifest::load(&a).unwrap(), manifest);
        assert_eq!(manifest.held_out_combos.len(), HELD_OUT_COMBOS.len());

        // rewriting replaces a previous data set; a foreign non-empty directory is refused
        write_dataset(&a, &spec).unwrap();
        let foreign = root.path().join("foreign");
        std::fs::create_dir(&foreign).unwrap();
        std::fs::write(foreign.join("keep.txt"), b"mine").unwrap();
        assert!(matches!(
            write_dataset(&foreign, &spec),
            Err(DatasetError::NotEmpty(_))
        ));
        assert!(foreign.join("keep.txt").exists());
        let leftovers: Vec<_> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
