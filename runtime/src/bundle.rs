//! Reading and verifying a bundle (DESIGN.md §5) from a directory or from memory.
//!
//! A bundle is accepted only when its manifest parses and validates, every file the manifest
//! lists is present with the listed sha256, and (when the graphs are opened) every graph's
//! inputs and outputs match the manifest's signature. Errors name the file and the mismatch.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::Digest;
use vlbeit_core::manifest::{MANIFEST, Manifest};

use crate::error::{Error, Result};
use crate::graph::GraphSource;

/// The bytes of a bundle's files by relative path (`manifest.json`, `image_encoder.onnx`,
/// `tokenizer.json`, `golden/inputs.json`, …), for loading a bundle that is not on disk
/// (embedded in an application, fetched from a store).
pub type BundleFiles = BTreeMap<String, Arc<[u8]>>;

/// A verified bundle: the manifest and where its files are.
#[derive(Debug, Clone)]
pub struct Bundle {
    origin: PathBuf,
    manifest: Manifest,
    manifest_sha256: String,
    files: Storage,
}

#[derive(Debug, Clone)]
enum Storage {
    Dir,
    Memory(BundleFiles),
}

/// How much of a bundle is checked when it is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashCheck {
    /// Every file the manifest lists (default).
    All,
    /// Only the manifest's own consistency; for trusted read-only media where hashing gigabytes
    /// at every start is too slow. Signatures are still checked when the graphs are opened.
    Skip,
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&sha2::Sha256::digest(bytes))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_file(path: &Path) -> Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(Error::io(path))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(Error::io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

impl Bundle {
    /// Opens the bundle directory `dir`, checking every file's hash.
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_with(dir, HashCheck::All)
    }

    /// Opens `dir` with the given hash policy.
    pub fn open_with(dir: &Path, check: HashCheck) -> Result<Self> {
        let manifest_path = dir.join(MANIFEST);
        let bytes = std::fs::read(&manifest_path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound && !dir.is_dir() {
                Error::BundleFile {
                    bundle: dir.to_owned(),
                    file: String::new(),
                    problem: "the bundle directory does not exist".into(),
                }
            } else {
                Error::Io {
                    path: manifest_path.clone(),
                    source,
                }
            }
        })?;
        let manifest = Manifest::from_json(&bytes).map_err(|source| Error::Manifest {
            bundle: dir.to_owned(),
            source,
        })?;
        let bundle = Self {
            origin: dir.to_owned(),
            manifest,
            manifest_sha256: sha256_hex(&bytes),
            files: Storage::Dir,
        };
        for (file, want) in &bundle.manifest.files {
            let path = dir.join(file);
            if !path.is_file() {
                return Err(bundle.file_error(file, "listed in the manifest but missing"));
            }
            if check == HashCheck::All {
                let got = sha256_file(&path)?;
                if &got != want {
                    return Err(bundle.hash_error(file, want, &got));
                }
            }
        }
        bundle.check_graph_hashes()?;
        Ok(bundle)
    }

    /// A bundle whose files are in memory; every file's hash is checked.
    pub fn from_memory(files: BundleFiles) -> Result<Self> {
        let origin = PathBuf::from("<memory>");
        let bytes = files.get(MANIFEST).ok_or_else(|| Error::BundleFile {
            bundle: origin.clone(),
            file: MANIFEST.into(),
            problem: "missing".into(),
        })?;
        let manifest = Manifest::from_json(bytes).map_err(|source| Error::Manifest {
            bundle: origin.clone(),
            source,
        })?;
        let manifest_sha256 = sha256_hex(bytes);
        let bundle = Self {
            origin,
            manifest,
            manifest_sha256,
            files: Storage::Memory(files),
        };
        let Storage::Memory(files) = &bundle.files else {
            unreachable!()
        };
        for (file, want) in &bundle.manifest.files {
            let Some(bytes) = files.get(file) else {
                return Err(bundle.file_error(file, "listed in the manifest but missing"));
            };
            let got = sha256_hex(bytes);
            if &got != want {
                return Err(bundle.hash_error(file, want, &got));
            }
        }
        bundle.check_graph_hashes()?;
        Ok(bundle)
    }

    /// Reads every file of the bundle directory `dir` into memory (then [`Bundle::from_memory`]).
    pub fn read_dir_into_memory(dir: &Path) -> Result<BundleFiles> {
        fn walk(root: &Path, dir: &Path, out: &mut BundleFiles) -> Result<()> {
            for entry in std::fs::read_dir(dir).map_err(Error::io(dir))? {
                let path = entry.map_err(Error::io(dir))?.path();
                if path.is_dir() {
                    walk(root, &path, out)?;
                } else {
                    let rel = path.strip_prefix(root).unwrap_or(&path);
                    let rel: Vec<String> = rel
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect();
                    let bytes = std::fs::read(&path).map_err(Error::io(&path))?;
                    out.insert(rel.join("/"), bytes.into());
                }
            }
            Ok(())
        }
        let mut out = BundleFiles::new();
        walk(dir, dir, &mut out)?;
        Ok(out)
    }

    fn check_graph_hashes(&self) -> Result<()> {
        for (file, entry) in &self.manifest.graphs {
            let listed = self.manifest.files.get(file);
            if entry.sha256.as_ref() != listed {
                return Err(self.file_error(
                    file,
                    "its graph entry and the file list give different hashes",
                ));
            }
            if let Some(data) = &entry.data_file
                && !self.manifest.files.contains_key(data)
            {
                return Err(self.file_error(data, "external data of a graph, but not listed"));
            }
        }
        Ok(())
    }

    fn file_error(&self, file: &str, problem: &str) -> Error {
        Error::BundleFile {
            bundle: self.origin.clone(),
            file: file.to_owned(),
            problem: problem.to_owned(),
        }
    }

    fn hash_error(&self, file: &str, want: &str, got: &str) -> Error {
        Error::BundleFile {
            bundle: self.origin.clone(),
            file: file.to_owned(),
            problem: format!(
                "sha256 is {got}, the manifest says {want} (the file was changed after export; \
                 re-export the bundle)"
            ),
        }
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// sha256 of `manifest.json`, which holds every file's hash: the bundle's identity (index
    /// files and TensorRT engine caches are tied to it).
    pub fn sha256(&self) -> &str {
        &self.manifest_sha256
    }

    /// The directory, or `<memory>`.
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// The bytes of a file of the bundle.
    pub fn read(&self, file: &str) -> Result<Arc<[u8]>> {
        match &self.files {
            Storage::Dir => {
                let path = self.origin.join(file);
                Ok(std::fs::read(&path).map_err(Error::io(path))?.into())
            }
            Storage::Memory(files) => files
                .get(file)
                .cloned()
                .ok_or_else(|| self.file_error(file, "missing")),
        }
    }

    /// Whether the bundle has this file (listed or not).
    pub fn has(&self, file: &str) -> bool {
        match &self.files {
            Storage::Dir => self.origin.join(file).is_file(),
            Storage::Memory(files) => files.contains_key(file),
        }
    }

    pub(crate) fn graph_source(&self, file: &str) -> Result<GraphSource> {
        let entry = self
            .manifest
            .graphs
            .get(file)
            .ok_or_else(|| self.file_error(file, "not a graph of the manifest"))?;
        match &self.files {
            Storage::Dir => Ok(GraphSource::File(self.origin.join(file))),
            Storage::Memory(_) => Ok(GraphSource::Memory {
                model: self.read(file)?,
                data: match &entry.data_file {
                    Some(data) => Some((data.clone(), self.read(data)?)),
                    None => None,
                },
            }),
        }
    }
}
