//! Exact (flat) inner-product index of embeddings, tied to the bundle that made them.
//!
//! Embeddings are L2-normalized, so inner product = cosine similarity. Search is one matrix
//! product (ndarray) per batch of queries and a partial sort per query; ties are broken by
//! insertion order, so results are deterministic.
//!
//! File layout (little-endian):
//! ```text
//! b"VLBEITIX"  u32 format version (1)  u64 header length  header JSON  f32 vectors [count, dim]
//! ```
//! The header holds the bundle's sha256, the modality, `dim`, `count` and the entries. Files are
//! written to a temporary sibling, synced and renamed: a crash never leaves a torn index.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use ndarray::{ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{Embeddings, Model};

const MAGIC: &[u8; 8] = b"VLBEITIX";
/// Layout version of index files.
pub const INDEX_FORMAT_VERSION: u32 = 1;

/// What the indexed vectors embed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Modality {
    Image,
    Text,
}

impl std::fmt::Display for Modality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Image => "image",
            Self::Text => "text",
        })
    }
}

/// One indexed item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The caller's identifier (a file name, a database key).
    pub id: String,
    /// What the fusion encoder needs to rerank this item: for images, the image file's path
    /// (relative paths are resolved against the index file's directory); for texts, the text.
    pub source: Option<String>,
    /// Free-form caller data (JSON, a caption, …), returned with hits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
}

/// A search result: entry position and inner product with the query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbor {
    pub entry: usize,
    pub score: f32,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    bundle_sha256: String,
    modality: Modality,
    dim: usize,
    count: usize,
    entries: Vec<IndexEntry>,
}

/// An exact inner-product index.
#[derive(Debug, Clone, PartialEq)]
pub struct FlatIndex {
    bundle_sha256: String,
    modality: Modality,
    dim: usize,
    entries: Vec<IndexEntry>,
    vectors: Vec<f32>,
    /// Directory relative image paths are resolved against (the index file's, once loaded).
    base_dir: Option<PathBuf>,
}

impl FlatIndex {
    /// An empty index for embeddings of `model`.
    pub fn new(model: &Model, modality: Modality) -> Self {
        Self::with_identity(model.bundle().sha256(), modality, model.embed_dim())
    }

    /// An empty index for vectors of `dim` made by the bundle with manifest hash `bundle_sha256`.
    pub fn with_identity(bundle_sha256: &str, modality: Modality, dim: usize) -> Self {
        Self {
            bundle_sha256: bundle_sha256.to_owned(),
            modality,
            dim,
            entries: Vec::new(),
            vectors: Vec::new(),
            base_dir: None,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn modality(&self) -> Modality {
        self.modality
    }

    pub fn bundle_sha256(&self) -> &str {
        &self.bundle_sha256
    }

    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    /// The stored vector of entry `i`.
    pub fn vector(&self, i: usize) -> &[f32] {
        &self.vectors[i * self.dim..(i + 1) * self.dim]
    }

    /// Where relative image sources are resolved (the loaded file's directory).
    pub fn base_dir(&self) -> Option<&Path> {
        self.base_dir.as_deref()
    }

    pub fn set_base_dir(&mut self, dir: impl Into<PathBuf>) {
        self.base_dir = Some(dir.into());
    }

    /// Adds one entry per embedding row.
    pub fn add(&mut self, entries: Vec<IndexEntry>, embeddings: &Embeddings) -> Result<()> {
        if embeddings.dim != self.dim {
            return Err(Error::Request(format!(
                "embeddings have dim {}, the index holds dim {}",
                embeddings.dim, self.dim
            )));
        }
        if entries.len() != embeddings.len() {
            return Err(Error::Request(format!(
                "{} entries for {} embeddings",
                entries.len(),
                embeddings.len()
            )));
        }
        if let Some((i, _)) = embeddings
            .data
            .iter()
            .enumerate()
            .find(|(_, v)| !v.is_finite())
        {
            return Err(Error::Request(format!(
                "embedding {} has a non-finite value",
                i / self.dim
            )));
        }
        self.entries.extend(entries);
        self.vectors.extend_from_slice(&embeddings.data);
        Ok(())
    }

    /// Fails unless `model` is the bundle that built this index and embeds what it searches.
    pub fn check_model(&self, model: &Model) -> Result<()> {
        if model.bundle().sha256() != self.bundle_sha256 {
            return Err(Error::Index {
                path: self.base_dir.clone().unwrap_or_default(),
                problem: format!(
                    "built with bundle {} but the model is bundle {} ({}); rebuild the index \
                     with this bundle (embeddings of different bundles are not comparable)",
                    short(&self.bundle_sha256),
                    short(model.bundle().sha256()),
                    model.bundle().origin().display()
                ),
            });
        }
        Ok(())
    }

    /// The `k` nearest entries of each query row (inner product, descending).
    pub fn search(&self, queries: &Embeddings, k: usize) -> Result<Vec<Vec<Neighbor>>> {
        if queries.dim != self.dim {
            return Err(Error::Request(format!(
                "queries have dim {}, the index holds dim {}",
                queries.dim, self.dim
            )));
        }
        if k == 0 {
            return Err(Error::Request("top_k must be at least 1".into()));
        }
        let n = self.len();
        if n == 0 {
            return Ok(vec![Vec::new(); queries.len()]);
        }
        let base = ArrayView2::from_shape((n, self.dim), &self.vectors).expect("sized on add");
        let q = ArrayView2::from_shape((queries.len(), self.dim), &queries.data)
            .map_err(|e| Error::Request(format!("queries: {e}")))?;
        // Bounded blocks of queries keep the score matrix small for large batches.
        let mut results = Vec::with_capacity(queries.len());
        for block in q.axis_chunks_iter(Axis(0), 256) {
            let scores = block.dot(&base.t());
            for row in scores.rows() {
                results.push(top_k(row.as_slice().expect("dot output is contiguous"), k));
            }
        }
        Ok(results)
    }

    /// Writes the index to `path` atomically (temp sibling, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let header = Header {
            bundle_sha256: self.bundle_sha256.clone(),
            modality: self.modality,
            dim: self.dim,
            count: self.len(),
            entries: self.entries.clone(),
        };
        let json = serde_json::to_vec(&header).expect("a header serializes");
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let name = path
            .file_name()
            .ok_or_else(|| Error::Index {
                path: path.to_owned(),
                problem: "the path has no file name".into(),
            })?
            .to_string_lossy()
            .into_owned();
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut file = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
            file.write_all(MAGIC)?;
            file.write_all(&INDEX_FORMAT_VERSION.to_le_bytes())?;
            file.write_all(&(json.len() as u64).to_le_bytes())?;
            file.write_all(&json)?;
            for v in &self.vectors {
                file.write_all(&v.to_le_bytes())?;
            }
            let file = file.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)?;
            if let Ok(d) = std::fs::File::open(&dir) {
                let _ = d.sync_all();
            }
            Ok(())
        };
        write().map_err(|source| {
            let _ = std::fs::remove_file(&tmp);
            Error::Io {
                path: path.to_owned(),
                source,
            }
        })
    }

    /// Reads an index file; relative image sources resolve against its directory.
    pub fn load(path: &Path) -> Result<Self> {
        let bad = |problem: String| Error::Index {
            path: path.to_owned(),
            problem,
        };
        let mut file = std::fs::File::open(path).map_err(Error::io(path))?;
        let mut fixed = [0u8; 20];
        file.read_exact(&mut fixed)
            .map_err(|_| bad("too short to be an index file".into()))?;
        if &fixed[..8] != MAGIC {
            return Err(bad("not a vlbeit index file (bad magic)".into()));
        }
        let version = u32::from_le_bytes(fixed[8..12].try_into().expect("4 bytes"));
        if version != INDEX_FORMAT_VERSION {
            return Err(bad(format!(
                "format version {version}; this runtime reads {INDEX_FORMAT_VERSION}"
            )));
        }
        let header_len = u64::from_le_bytes(fixed[12..20].try_into().expect("8 bytes"));
        let file_len = file.metadata().map_err(Error::io(path))?.len();
        if header_len > file_len.saturating_sub(20) {
            return Err(bad(format!(
                "header length {header_len} exceeds the file ({file_len} bytes)"
            )));
        }
        let mut json = vec![0u8; header_len as usize];
        file.read_exact(&mut json)
            .map_err(|e| bad(format!("reading the header: {e}")))?;
        let header: Header =
            serde_json::from_slice(&json).map_err(|e| bad(format!("header: {e}")))?;
        if header.entries.len() != header.count {
            return Err(bad(format!(
                "header lists {} entries but count = {}",
                header.entries.len(),
                header.count
            )));
        }
        let want = (header.count as u64)
            .checked_mul(header.dim as u64)
            .and_then(|n| n.checked_mul(4))
            .ok_or_else(|| bad("count × dim overflows".into()))?;
        let have = file_len - 20 - header_len;
        if have != want {
            return Err(bad(format!(
                "vector data is {have} bytes, {} × {} f32 need {want} (truncated or corrupt)",
                header.count, header.dim
            )));
        }
        let mut bytes = vec![0u8; want as usize];
        file.read_exact(&mut bytes)
            .map_err(|e| bad(format!("reading vectors: {e}")))?;
        let vectors = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Ok(Self {
            bundle_sha256: header.bundle_sha256,
            modality: header.modality,
            dim: header.dim,
            entries: header.entries,
            vectors,
            base_dir: Some(
                path.parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .map(Path::to_owned)
                    .unwrap_or_else(|| PathBuf::from(".")),
            ),
        })
    }
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// Indices of the `k` largest scores, descending; ties by lower index first.
pub(crate) fn top_k(scores: &[f32], k: usize) -> Vec<Neighbor> {
    let better = |a: &usize, b: &usize| scores[*b].total_cmp(&scores[*a]).then(a.cmp(b));
    let mut order: Vec<usize> = (0..scores.len()).collect();
    let k = k.min(order.len());
    if k == 0 {
        return Vec::new();
    }
    if k < order.len() {
        order.select_nth_unstable_by(k - 1, better);
        order.truncate(k);
    }
    order.sort_unstable_by(better);
    order
        .into_iter()
        .map(|entry| Neighbor {
            entry,
            score: scores[entry],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use vlbeit_core::rng::Rng;

    fn random_unit(rng: &mut Rng, n: usize, dim: usize) -> Embeddings {
        let mut data = Vec::with_capacity(n * dim);
        for _ in 0..n {
            let v: Vec<f32> = (0..dim).map(|_| rng.next_f32() * 2.0 - 1.0).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            data.extend(v.iter().map(|x| x / norm));
        }
        Embeddings { dim, data }
    }

    fn entries(n: usize) -> Vec<IndexEntry> {
        (0..n)
            .map(|i| IndexEntry {
                id: format!("item-{i}"),
                source: Some(format!("img/{i}.png")),
                metadata: (i % 2 == 0).then(|| format!("{{\"i\":{i}}}")),
            })
            .collect()
    }

    fn brute_force(index: &FlatIndex, query: &[f32], k: usize) -> Vec<usize> {
        let mut scored: Vec<(f64, usize)> = (0..index.len())
            .map(|i| {
                let dot: f64 = index
                    .vector(i)
                    .iter()
                    .zip(query)
                    .map(|(&a, &b)| f64::from(a) * f64::from(b))
                    .sum();
                (dot, i)
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.into_iter().take(k).map(|(_, i)| i).collect()
    }

    #[test]
    fn search_matches_brute_force_for_batched_queries() {
        let mut rng = Rng::new(7);
        let mut index = FlatIndex::with_identity("abc", Modality::Image, 16);
        index
            .add(entries(300), &random_unit(&mut rng, 300, 16))
            .unwrap();
        let queries = random_unit(&mut rng, 40, 16);
        let got = index.search(&queries, 10).unwrap();
        assert_eq!(got.len(), 40);
        for (q, hits) in got.iter().enumerate() {
            let ids: Vec<usize> = hits.iter().map(|h| h.entry).collect();
            assert_eq!(ids, brute_force(&index, queries.row(q), 10), "query {q}");
            assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
        }
    }

    #[test]
    fn k_larger_than_the_index_returns_everything_sorted() {
        let mut rng = Rng::new(1);
        let mut index = FlatIndex::with_identity("abc", Modality::Text, 8);
        index.add(entries(5), &random_unit(&mut rng, 5, 8)).unwrap();
        let q = random_unit(&mut rng, 1, 8);
        let hits = &index.search(&q, 50).unwrap()[0];
        assert_eq!(hits.len(), 5);
        assert_eq!(
            hits.iter().map(|h| h.entry).collect::<Vec<_>>(),
            brute_force(&index, q.row(0), 5)
        );
    }

    #[test]
    fn ties_are_broken_by_insertion_order() {
        let mut index = FlatIndex::with_identity("abc", Modality::Text, 2);
        let same = Embeddings {
            dim: 2,
            data: [1.0, 0.0].repeat(6),
        };
        index.add(entries(6), &same).unwrap();
        let hits = &index
            .search(
                &Embeddings {
                    dim: 2,
                    data: vec![1.0, 0.0],
                },
                3,
            )
            .unwrap()[0];
        assert_eq!(
            hits.iter().map(|h| h.entry).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
    }

    #[test]
    fn save_and_load_round_trip_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("images.vlbidx");
        let mut rng = Rng::new(3);
        let mut index = FlatIndex::with_identity("f00d", Modality::Image, 12);
        index
            .add(entries(17), &random_unit(&mut rng, 17, 12))
            .unwrap();
        index.save(&path).unwrap();
        let loaded = FlatIndex::load(&path).unwrap();
        assert_eq!(loaded.entries(), index.entries());
        assert_eq!(loaded.vectors, index.vectors);
        assert_eq!(loaded.bundle_sha256(), "f00d");
        assert_eq!(loaded.base_dir(), Some(dir.path()));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "no temp file left: {leftovers:?}");
    }

    #[test]
    fn truncated_or_foreign_files_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.vlbidx");
        let mut rng = Rng::new(3);
        let mut index = FlatIndex::with_identity("f00d", Modality::Image, 4);
        index.add(entries(3), &random_unit(&mut rng, 3, 4)).unwrap();
        index.save(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
        let e = FlatIndex::load(&path).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        std::fs::write(&path, b"PNG\x00 not an index at all").unwrap();
        let e = FlatIndex::load(&path).unwrap_err().to_string();
        assert!(e.contains("bad magic"), "{e}");
    }

    #[test]
    fn mismatched_dims_and_counts_are_errors() {
        let mut index = FlatIndex::with_identity("x", Modality::Image, 4);
        let e = Embeddings {
            dim: 3,
            data: vec![0.0; 3],
        };
        assert!(index.add(entries(1), &e).is_err());
        let e = Embeddings {
            dim: 4,
            data: vec![0.5; 8],
        };
        assert!(index.add(entries(1), &e).is_err());
        let nan = Embeddings {
            dim: 4,
            data: vec![f32::NAN; 4],
        };
        assert!(index.add(entries(1), &nan).is_err());
    }
}
