//! Retrieval (seed §3.2): the dual encoder ranks the whole index by embedding similarity, then
//! the fusion encoder reranks the best `rerank_k` candidates by image–text matching probability.
//! The dual encoder is cheap (one query embedding, one matrix product); the fusion encoder is
//! accurate but costs one forward pass per candidate pair, hence only for the top.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::index::{FlatIndex, IndexEntry, Modality};
use crate::model::{ImageSource, Model};

/// A retrieval query.
#[derive(Debug, Clone, Copy)]
pub enum Query<'a> {
    /// Text → image retrieval (the index holds images).
    Text(&'a str),
    /// Image → text retrieval (the index holds texts).
    Image(ImageSource<'a>),
}

/// One retrieved entry.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Hit {
    /// Position in the index.
    pub entry: usize,
    pub id: String,
    pub metadata: Option<String>,
    /// Cosine similarity of the dual encoder.
    pub similarity: f32,
    /// ITM probability of the fusion encoder, for reranked hits.
    pub match_score: Option<f32>,
    /// 0-based rank in the dual encoder's order (before reranking).
    pub dual_rank: usize,
}

/// Loads the bytes of an image entry for reranking.
pub type ImageLoader<'a> = dyn Fn(&IndexEntry) -> Result<Vec<u8>> + Sync + 'a;

impl Model {
    /// The `top_k` best entries of `index` for `query`: dual-encoder similarity, then the first
    /// `rerank_k` of them (`0`: none) reordered by the fusion encoder's matching probability.
    /// Reranked hits come first, then the rest in dual-encoder order.
    ///
    /// Image entries are read for reranking from their `source` path (relative to the index
    /// file's directory); see [`Model::retrieve_with`] for images kept elsewhere.
    pub fn retrieve(
        &self,
        index: &FlatIndex,
        query: Query<'_>,
        top_k: usize,
        rerank_k: usize,
    ) -> Result<Vec<Hit>> {
        let base = index.base_dir().map(PathBuf::from);
        let load = move |entry: &IndexEntry| -> Result<Vec<u8>> {
            let source = entry.source.as_deref().ok_or_else(|| {
                Error::Request(format!(
                    "index entry {:?} has no image source to rerank with",
                    entry.id
                ))
            })?;
            let mut path = PathBuf::from(source);
            if path.is_relative()
                && let Some(base) = &base
            {
                path = base.join(path);
            }
            std::fs::read(&path).map_err(Error::io(path))
        };
        self.retrieve_with(index, query, top_k, rerank_k, &load)
    }

    /// [`Model::retrieve`] with the caller's loader for image entries.
    pub fn retrieve_with(
        &self,
        index: &FlatIndex,
        query: Query<'_>,
        top_k: usize,
        rerank_k: usize,
        load_image: &ImageLoader<'_>,
    ) -> Result<Vec<Hit>> {
        index.check_model(self)?;
        if top_k == 0 {
            return Err(Error::Request("top_k must be at least 1".into()));
        }
        let (want, embedding) = match query {
            Query::Text(text) => (Modality::Image, self.embed_texts(&[text])?),
            Query::Image(image) => (Modality::Text, self.embed_images(&[image])?),
        };
        if index.modality() != want {
            return Err(Error::Request(format!(
                "a {} query searches an index of {want}s, but this index holds {}s",
                match query {
                    Query::Text(_) => "text",
                    Query::Image(_) => "image",
                },
                index.modality()
            )));
        }
        let neighbors = index
            .search(&embedding, top_k.max(rerank_k))?
            .pop()
            .unwrap_or_default();
        let mut hits: Vec<Hit> = neighbors
            .iter()
            .enumerate()
            .map(|(rank, n)| {
                let entry = &index.entries()[n.entry];
                Hit {
                    entry: n.entry,
                    id: entry.id.clone(),
                    metadata: entry.metadata.clone(),
                    similarity: n.score,
                    match_score: None,
                    dual_rank: rank,
                }
            })
            .collect();
        let rerank = rerank_k.min(hits.len());
        if rerank > 0 {
            let scores = match query {
                Query::Text(text) => {
                    let images = hits[..rerank]
                        .iter()
                        .map(|h| load_image(&index.entries()[h.entry]))
                        .collect::<Result<Vec<_>>>()?;
                    let pairs: Vec<(ImageSource<'_>, &str)> = images
                        .iter()
                        .map(|bytes| (ImageSource::Encoded(bytes), text))
                        .collect();
                    self.match_scores(&pairs)?
                }
                Query::Image(image) => {
                    let texts = hits[..rerank]
                        .iter()
                        .map(|h| {
                            let entry = &index.entries()[h.entry];
                            entry.source.clone().ok_or_else(|| {
                                Error::Request(format!(
                                    "index entry {:?} has no text to rerank with",
                                    entry.id
                                ))
                            })
                        })
                        .collect::<Result<Vec<_>>>()?;
                    let pairs: Vec<(ImageSource<'_>, &str)> =
                        texts.iter().map(|t| (image, t.as_str())).collect();
                    self.match_scores(&pairs)?
                }
            };
            for (hit, score) in hits.iter_mut().zip(scores) {
                hit.match_score = Some(score);
            }
            hits[..rerank].sort_by(|a, b| {
                let (sa, sb) = (a.match_score.unwrap_or(0.0), b.match_score.unwrap_or(0.0));
                sb.total_cmp(&sa).then(a.dual_rank.cmp(&b.dual_rank))
            });
        }
        hits.truncate(top_k);
        Ok(hits)
    }
}
