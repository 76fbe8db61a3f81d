//! Streaming shard reading: one tar block at a time, one sample in memory.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use super::{BLOCK, Sample, ShardError, split_name};

/// Streams the samples of one shard.
pub struct ShardReader<R: Read> {
    path: PathBuf,
    reader: R,
    pending: Option<Sample>,
    done: bool,
}

impl ShardReader<BufReader<File>> {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ShardError> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|source| ShardError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(Self::new(BufReader::new(file), path))
    }
}

impl<R: Read> ShardReader<R> {
    /// Reads a shard from any reader; `path` names it in errors.
    pub fn new(reader: R, path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            reader,
            pending: None,
            done: false,
        }
    }

    fn corrupt(&self, entry: Option<&str>, reason: impl Into<String>) -> ShardError {
        ShardError::Corrupt {
            path: self.path.clone(),
            entry: entry.map(str::to_owned),
            reason: reason.into(),
        }
    }

    /// Reads exactly `buf.len()` bytes; `Ok(false)` if the reader ends first.
    fn fill(&mut self, buf: &mut [u8]) -> Result<bool, ShardError> {
        let mut read = 0;
        while read < buf.len() {
            match self.reader.read(&mut buf[read..]) {
                Ok(0) => return Ok(false),
                Ok(n) => read += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(ShardError::Io {
                        path: self.path.clone(),
                        source,
                    });
                }
            }
        }
        Ok(true)
    }

    /// The next regular file entry: name and contents; `None` at the end-of-archive marker.
    fn next_file(&mut self) -> Result<Option<(String, Vec<u8>)>, ShardError> {
        let mut long_name: Option<String> = None;
        loop {
            let mut block = [0u8; BLOCK];
            if !self.fill(&mut block)? {
                return Err(ShardError::Truncated {
                    path: self.path.clone(),
                    entry: None,
                });
            }
            if block.iter().all(|&b| b == 0) {
                return Ok(None);
            }
            let header = tar::Header::from_byte_slice(&block);
            let stored = header
                .cksum()
                .map_err(|e| self.corrupt(None, e.to_string()))?;
            let actual: u32 = block[..148]
                .iter()
                .chain(&block[156..])
                .map(|&b| u32::from(b))
                .sum::<u32>()
                + 8 * 32;
            if stored != actual {
                return Err(self.corrupt(None, "header checksum mismatch"));
            }
            let name = match long_name.take() {
                Some(name) => name,
                None => String::from_utf8_lossy(&header.path_bytes()).into_owned(),
            };
            let size = header
                .entry_size()
                .map_err(|e| self.corrupt(Some(&name), e.to_string()))?;
            let mut data = Vec::new();
            let got = (&mut self.reader)
                .take(size)
                .read_to_end(&mut data)
                .map_err(|source| ShardError::Io {
                    path: self.path.clone(),
                    source,
                })?;
            let padding = (BLOCK - (size as usize) % BLOCK) % BLOCK;
            if got as u64 != size || !self.fill(&mut [0u8; BLOCK][..padding])? {
                return Err(ShardError::Truncated {
                    path: self.path.clone(),
                    entry: Some(name),
                });
            }
            let kind = header.entry_type();
            if kind.is_gnu_longname() {
                let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
                long_name = Some(String::from_utf8_lossy(&data[..end]).into_owned());
            } else if kind.is_pax_local_extensions() {
                long_name = pax_path(&data);
            } else if kind.is_file() || kind == tar::EntryType::Continuous {
                return Ok(Some((name, data)));
            }
            // Directories, links and global headers carry no sample data.
        }
    }
}

fn pax_path(data: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(data).ok()?;
    text.lines().find_map(|line| {
        let (_, record) = line.split_once(' ')?;
        record.strip_prefix("path=").map(str::to_owned)
    })
}

impl<R: Read> Iterator for ShardReader<R> {
    type Item = Result<Sample, ShardError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let mut current = self.pending.take();
        loop {
            let (name, data) = match self.next_file() {
                Ok(Some(file)) => file,
                Ok(None) => {
                    self.done = true;
                    return current.map(Ok);
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            let Some((key, ext)) = split_name(&name) else {
                self.done = true;
                return Some(Err(ShardError::BadName {
                    path: self.path.clone(),
                    entry: name,
                }));
            };
            match current.as_mut() {
                Some(sample) if sample.key == key => {
                    if sample.files.insert(ext.to_owned(), data).is_some() {
                        self.done = true;
                        return Some(Err(ShardError::DuplicateFile {
                            path: self.path.clone(),
                            key: key.to_owned(),
                            ext: ext.to_owned(),
                        }));
                    }
                }
                _ => {
                    let mut next = Sample::new(key);
                    next.files.insert(ext.to_owned(), data);
                    match current.replace(next) {
                        Some(finished) => {
                            self.pending = current;
                            return Some(Ok(finished));
                        }
                        None => continue,
                    }
                }
            }
        }
    }
}
