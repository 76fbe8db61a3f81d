//! Reproducible, atomic shard writing.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{Sample, ShardError};

/// Writes one shard. Samples are written in call order; `finish` renames the temp file into
/// place, and dropping an unfinished writer removes it.
pub struct ShardWriter {
    path: PathBuf,
    temp: PathBuf,
    builder: Option<tar::Builder<BufWriter<File>>>,
    samples: u64,
}

impl ShardWriter {
    pub fn create(path: impl AsRef<Path>) -> Result<Self, ShardError> {
        let path = path.as_ref().to_path_buf();
        let name = path
            .file_name()
            .map_or_else(Default::default, |n| n.to_string_lossy().into_owned());
        let temp = path.with_file_name(format!(".{name}.partial-{}", std::process::id()));
        let file = File::create(&temp).map_err(|source| ShardError::Io {
            path: temp.clone(),
            source,
        })?;
        Ok(Self {
            path,
            temp,
            builder: Some(tar::Builder::new(BufWriter::new(file))),
            samples: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Samples written so far.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    pub fn write(&mut self, sample: &Sample) -> Result<(), ShardError> {
        let bad = |reason: &str| ShardError::BadSample {
            path: self.path.clone(),
            key: sample.key.clone(),
            reason: reason.to_owned(),
        };
        let base = sample.key.rsplit('/').next().unwrap_or_default();
        if base.is_empty() || base.contains('.') {
            return Err(bad("a key needs a non-empty basename without dots"));
        }
        if sample.files.is_empty() {
            return Err(bad("a sample needs at least one file"));
        }
        let builder = self.builder.as_mut().expect("builder present until finish");
        for (ext, data) in &sample.files {
            if ext.is_empty() || ext.contains('/') {
                return Err(bad(&format!("bad extension `{ext}`")));
            }
            let mut header = tar::Header::new_ustar();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(0);
            header.set_uid(0);
            header.set_gid(0);
            header.set_entry_type(tar::EntryType::Regular);
            let name = format!("{}.{ext}", sample.key);
            builder
                .append_data(&mut header, &name, data.as_slice())
                .map_err(|source| ShardError::Io {
                    path: self.temp.clone(),
                    source,
                })?;
        }
        self.samples += 1;
        Ok(())
    }

    /// Writes the end-of-archive marker, syncs, and renames the shard into place.
    pub fn finish(mut self) -> Result<PathBuf, ShardError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ShardError::Io { path, source }
        };
        let builder = self.builder.take().expect("builder present until finish");
        let mut file = builder.into_inner().map_err(io_err(&self.temp))?;
        file.flush().map_err(io_err(&self.temp))?;
        let file = file.into_inner().map_err(|e| ShardError::Io {
            path: self.temp.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(io_err(&self.temp))?;
        std::fs::rename(&self.temp, &self.path).map_err(io_err(&self.path))?;
        Ok(self.path.clone())
    }
}

impl Drop for ShardWriter {
    fn drop(&mut self) {
        if let Some(builder) = self.builder.take() {
            drop(builder);
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Writes `{prefix}-{NNNNN}.tar` shards of at most `per_shard` samples each in `dir`.
pub struct ShardSetWriter {
    dir: PathBuf,
    prefix: String,
    per_shard: u64,
    current: Option<ShardWriter>,
    written: Vec<PathBuf>,
}

impl ShardSetWriter {
    /// `per_shard` is clamped to at least 1.
    pub fn new(dir: impl AsRef<Path>, prefix: impl Into<String>, per_shard: u64) -> Self {
        Self {
            dir: dir.as_ref().to_path_buf(),
            prefix: prefix.into(),
            per_shard: per_shard.max(1),
            current: None,
            written: Vec::new(),
        }
    }

    pub fn write(&mut self, sample: &Sample) -> Result<(), ShardError> {
        if self
            .current
            .as_ref()
            .is_some_and(|w| w.samples() >= self.per_shard)
        {
            let full = self.current.take().expect("checked above");
            self.written.push(full.finish()?);
        }
        if self.current.is_none() {
            let name = format!("{}-{:05}.tar", self.prefix, self.written.len());
            self.current = Some(ShardWriter::create(self.dir.join(name))?);
        }
        self.current.as_mut().expect("set above").write(sample)
    }

    /// Finishes the last shard; returns every shard's path in order.
    pub fn finish(mut self) -> Result<Vec<PathBuf>, ShardError> {
        if let Some(last) = self.current.take() {
            self.written.push(last.finish()?);
        }
        Ok(self.written)
    }
}
