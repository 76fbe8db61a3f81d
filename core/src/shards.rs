//! WebDataset shards: tar files whose consecutive entries `KEY.EXT` form one sample.
//!
//! The writer makes reproducible bytes (ustar headers, mtime 0, uid/gid 0, mode 0644, files of
//! a sample in extension order) and writes atomically (a temp file renamed into place). The
//! reader streams: it holds one sample in memory, never the shard, and reports a truncated or
//! corrupt shard as an error naming the file and the entry.
//!
//! ```
//! use vlbeit_core::shards::{Sample, ShardReader, ShardWriter};
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("demo-00000.tar");
//! let mut writer = ShardWriter::create(&path).unwrap();
//! let mut sample = Sample::new("a0");
//! sample.files.insert("txt".into(), b"hello".to_vec());
//! writer.write(&sample).unwrap();
//! writer.finish().unwrap();
//! let back: Vec<Sample> = ShardReader::open(&path).unwrap().collect::<Result<_, _>>().unwrap();
//! assert_eq!(back, vec![sample]);
//! ```

mod read;
mod write;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

pub use read::ShardReader;
pub use write::{ShardSetWriter, ShardWriter};

/// Tar block size.
const BLOCK: usize = 512;

/// One WebDataset sample: a key and its files by extension (`"png"`, `"json"`, `"mask.png"`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sample {
    pub key: String,
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Sample {
    pub fn new(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            files: BTreeMap::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: truncated shard {}", at_entry(.entry))]
    Truncated {
        path: PathBuf,
        entry: Option<String>,
    },
    #[error("{path}: corrupt shard {}: {reason}", at_entry(.entry))]
    Corrupt {
        path: PathBuf,
        entry: Option<String>,
        reason: String,
    },
    #[error("{path}: entry `{entry}` is not a WebDataset name KEY.EXT")]
    BadName { path: PathBuf, entry: String },
    #[error("{path}: key `{key}` has two `.{ext}` files in a row")]
    DuplicateFile {
        path: PathBuf,
        key: String,
        ext: String,
    },
    #[error("{path}: cannot write sample `{key}`: {reason}")]
    BadSample {
        path: PathBuf,
        key: String,
        reason: String,
    },
}

fn at_entry(entry: &Option<String>) -> String {
    match entry {
        Some(name) => format!("at entry `{name}`"),
        None => "between entries (no end-of-archive marker)".to_owned(),
    }
}

/// Splits a tar entry name into WebDataset key and extension: the key is the directory plus
/// the basename up to its first dot, the extension everything after that dot.
pub fn split_name(name: &str) -> Option<(&str, &str)> {
    let base_start = name.rfind('/').map_or(0, |i| i + 1);
    let dot = base_start + name[base_start..].find('.')?;
    let (key, ext) = (&name[..dot], &name[dot + 1..]);
    (dot > base_start && !ext.is_empty()).then_some((key, ext))
}
