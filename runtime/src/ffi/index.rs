//! Indexes from C: create, add, save, load, search with fusion rerank, free.

use std::ffi::{CString, c_char};
use std::path::Path;
use std::sync::RwLock;

use super::model::{image_source, model_handle, vlbeit_image, vlbeit_model};
use super::{
    FfiError, FfiResult, HandleKind, arg_slice, arg_str, free_handle, guard, handle, opt_str, out,
    out_buffer, register, vlbeit_status,
};
use crate::index::{FlatIndex, IndexEntry, Modality};
use crate::model::Embeddings;
use crate::retrieval::Query;

/// What an index holds.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum vlbeit_modality {
    /// Image embeddings, searched by text queries.
    VLBEIT_MODALITY_IMAGE = 0,
    /// Text embeddings, searched by image queries.
    VLBEIT_MODALITY_TEXT = 1,
}

/// One entry to add. Only read during the call (the index copies the strings).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct vlbeit_index_entry {
    /// The caller's identifier (a file name, a database key); NUL-terminated UTF-8, required.
    pub id: *const c_char,
    /// What the fusion encoder needs to rerank this entry: for images, the image file's path
    /// (a relative path is resolved against the directory of the index file once the index is
    /// saved and loaded, and against the working directory before); for texts, the text. NULL:
    /// the entry cannot be reranked.
    pub source: *const c_char,
    /// Free-form caller data returned with hits; NULL for none.
    pub metadata: *const c_char,
}

/// One search result.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct vlbeit_hit {
    /// Position of the entry in the index (insertion order).
    pub entry: usize,
    /// The entry's id; owned by the index, valid until `vlbeit_index_free`.
    pub id: *const c_char,
    /// The entry's metadata or NULL; owned by the index, valid until `vlbeit_index_free`.
    pub metadata: *const c_char,
    /// Cosine similarity of the dual encoder.
    pub similarity: f32,
    /// ITM probability of the fusion encoder when `reranked`, else 0.
    pub match_score: f32,
    /// Whether the fusion encoder reranked this hit (the first `rerank_k` hits).
    pub reranked: bool,
    /// 0-based rank in the dual encoder's order, before reranking.
    pub dual_rank: usize,
}

struct IndexState {
    index: FlatIndex,
    ids: Vec<CString>,
    metadata: Vec<Option<CString>>,
}

impl IndexState {
    fn new(index: FlatIndex) -> Self {
        let mut state = Self {
            index,
            ids: Vec::new(),
            metadata: Vec::new(),
        };
        state.sync_strings();
        state
    }

    /// Extends the C string tables to the index's entries. Existing strings keep their heap
    /// buffers, so pointers handed out earlier stay valid.
    fn sync_strings(&mut self) {
        for entry in &self.index.entries()[self.ids.len()..] {
            self.ids.push(super::c_string(&entry.id));
            self.metadata
                .push(entry.metadata.as_deref().map(super::c_string));
        }
    }
}

/// An index of embeddings tied to the bundle that made them (opaque). Safe to share between
/// threads: searches run concurrently, `vlbeit_index_add` waits for them.
pub struct vlbeit_index {
    state: RwLock<IndexState>,
}

impl vlbeit_index {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, IndexState> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }
}

unsafe fn index_handle<'a>(ptr: *const vlbeit_index) -> FfiResult<&'a vlbeit_index> {
    // SAFETY: forwarded to the registry check.
    unsafe { handle(ptr, HandleKind::Index, "index") }
}

fn new_handle(index: FlatIndex, slot: &mut *mut vlbeit_index) {
    *slot = register(
        vlbeit_index {
            state: RwLock::new(IndexState::new(index)),
        },
        HandleKind::Index,
    );
}

/// Creates an empty index for embeddings of `model` holding `modality` (a `vlbeit_modality`).
/// Ownership: `*out_index` is a new handle the caller owns (`vlbeit_index_free`); NULL on
/// failure. The index does not keep the model. Errors: `VLBEIT_ERROR_INVALID_ARGUMENT`,
/// `VLBEIT_ERROR_INVALID_HANDLE`. Thread safety: safe from any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vlbeit_index_create(
    model: *const vlbeit_model,
    modality: i32,
    out_index: *mut *mut vlbeit_index,
) -> vlbeit_status {
    guard("vlbeit_index_create", || {
        // SAFETY: documented contract of each pointer.
        let slot = unsafe { out(out_index, "out_index") }?;
        *slot = std::ptr::null_mut();
        let model = unsafe { model_handle(model) }?;
        let modality = match modality {
            0 => Modality::Image,
            1 => Modality::Text,
            other => {
                return Err(FfiError::invalid(format!(
                    "modality is {other}; expected VLBEIT_MODALITY_IMAGE (0) or \
                     VLBEIT_MODALITY_TEXT (1)"
                )));
            }
        };
        new_handle(FlatIndex::new(&model.model, modality), slot);
        Ok(())
    })
}

/// Adds `count` entries with their embeddings (`count × dim` floats, row-major, as
/// `vlbeit_embed_images` / `vlbeit_embed_texts` wrote them; `embeddings_len` floats in all).
/// Nothing is added on error. Errors: `VLBEIT_ERROR_INVALID_ARGUMENT` (NULL id, length not
/// `count × dim`), `VLBEIT_ERROR_INVALID_HANDLE`, `VLBEIT_ERROR_INVALID_INPUT`.
/// Thread safety: safe from any thread; waits for running searches of this index.
/// Ownership: entries, strings and embeddings are copied; the caller keeps its memory.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vlbeit_index_add(
    index: *mut vlbeit_index,
    entries: *const vlbeit_index_entry,
    count: usize,
    embeddings: *const f32,
    embeddings_len: usize,
) -> vlbeit_status {
    guard("vlbeit_index_add", || {
        // SAFETY: documented contract of each pointer.
        let index = unsafe { index_handle(index) }?;
        let entries = unsafe { arg_slice(entries, count, "entries") }?;
        let data = unsafe { arg_slice(embeddings, embeddings_len, "embeddings") }?;
        let mut state = index.state.write().unwrap_or_else(|p| p.into_inner());
        let dim = state.index.dim();
        if embeddings_len != count * dim {
            return Err(FfiError::invalid(format!(
                "embeddings_len is {embeddings_len}, expected count × dim = {count} × {dim}"
            )));
        }
        let entries = entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                // SAFETY: documented contract of each string.
                Ok(IndexEntry {
                    id: unsafe { arg_str(e.id, &format!("entries[{i}].id")) }?.to_owned(),
                    source: unsafe { opt_str(e.source, &format!("entries[{i}].source")) }?
                        .map(str::to_owned),
                    metadata: unsafe { opt_str(e.metadata, &format!("entries[{i}].metadata")) }?
                        .map(str::to_owned),
                })
            })
            .collect::<FfiResult<Vec<_>>>()?;
        let embeddings = Embeddings {
            dim,
            data: data.to_vec(),
        };
        state.index.add(entries, &embeddings)?;
        state.sync_strings();
        Ok(())
    })
}

/// `*out_count` = number of entries; `*out_dim` (optional, may be NULL) = embedding length.
/// Errors: `VLBEIT_ERROR_INVALID_ARGUMENT`, `VLBEIT_ERROR_INVALID_HANDLE`.
/// Thread safety: safe from any thread.
/// Ownership: the arguments are only read during the call; nothing returned needs freeing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vlbeit_index_size(
    index: *const vlbeit_index,
    out_count: *mut usize,
    out_dim: *mut usize,
) -> vlbeit_status {
    guard("vlbeit_index_size", || {
        // SAFETY: documented contract of each pointer.
        let index = unsafe { index_handle(index) }?;
        let count = unsafe { out(out_count, "out_count") }?;
        let state = index.read();
        *count = state.index.len();
        // SAFETY: a non-NULL out_dim is writable.
        if let Some(dim) = unsafe { out_dim.as_mut() } {
            *dim = state.index.dim();
        }
        Ok(())
    })
}

/// Writes the index to `path` (a temporary sibling, synced, then renamed: a crash never
/// leaves a torn file). Errors: `VLBEIT_ERROR_INVALID_ARGUMENT`, `VLBEIT_ERROR_INVALID_HANDLE`,
/// `VLBEIT_ERROR_IO`. Thread safety: safe from any thread.
/// Ownership: the arguments are only read during the call; nothing returned needs freeing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vlbeit_index_save(
    index: *const vlbeit_index,
    path: *const c_char,
) -> vlbeit_status {
    guard("vlbeit_index_save", || {
        // SAFETY: documented contract of each pointer.
        let index = unsafe { index_handle(index) }?;
        let path = unsafe { arg_str(path, "path") }?;
        index.read().index.save(Path::new(path))?;
        Ok(())
    })
}

/// Reads an index file written by `vlbeit_index_save` (or the `vlbeit index` CLI). Relative
/// image sources of its entries resolve against the file's directory.
/// Ownership: `*out_index` is a new handle the caller owns (`vlbeit_index_free`); NULL on
/// failure. Errors: `VLBEIT_ERROR_INVALID_ARGUMENT`, `VLBEIT_ERROR_IO`, `VLBEIT_ERROR_INDEX`
/// (not an index file, truncated, unknown version). Thread safety: safe from any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vlbeit_index_load(
    path: *const c_char,
    out_index: *mut *mut vlbeit_index,
) -> vlbeit_status {
    guard("vlbeit_index_load", || {
        // SAFETY: documented contract of each pointer.
        let slot = unsafe { out(out_index, "out_index") }?;
        *slot = std::ptr::null_mut();
        let path = unsafe { arg_str(path, "path") }?;
        new_handle(FlatIndex::load(Path::new(path))?, slot);
        Ok(())
    })
}

/// Frees the index `*index` and sets `*index` to NULL; `index == NULL` or `*index == NULL` is
/// a no-op, and a pointer that is not a live index is reported as
/// `VLBEIT_ERROR_INVALID_HANDLE` and not touched. Hit ids and metadata from this index become
/// invalid. Thread safety: no other thread may use the index during or after this call.
/// Ownership: releases the handle the caller owned.
/// Errors: `VLBEIT_ERROR_INVALID_HANDLE` (not a live index).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vlbeit_index_free(index: *mut *mut vlbeit_index) -> vlbeit_status {
    guard("vlbeit_index_free", || unsafe {
        // SAFETY: forwarded to the registry check.
        free_handle(index, HandleKind::Index, "index")
    })
}

/// Retrieval: exactly one of `text` (for an image index) or `image` (for a text index) is the
/// query. The dual encoder ranks the whole index; the first `rerank_k` candidates (0: none)
/// are reordered by the fusion encoder's matching probability (reranked hits first, then the
/// rest in dual order). Writes `min(top_k, entries)` hits into `out_hits` (`capacity`);
/// `out_count` (optional) receives that number; `out_hits == NULL` with `capacity == 0` is a
/// size query. Image entries are read for reranking from their `source` paths.
/// Ownership: hit strings are owned by the index (valid until `vlbeit_index_free`).
/// Errors: `VLBEIT_ERROR_INVALID_ARGUMENT` (both or neither query), `VLBEIT_ERROR_INVALID_HANDLE`,
/// `VLBEIT_ERROR_BUFFER_TOO_SMALL`, `VLBEIT_ERROR_INDEX` (an index of another bundle),
/// `VLBEIT_ERROR_INVALID_INPUT` (`top_k == 0`, wrong modality, an entry without a source to
/// rerank), `VLBEIT_ERROR_IO` (an entry's image file), `VLBEIT_ERROR_RUNTIME`.
/// Thread safety: safe from any thread on a shared model and index.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn vlbeit_index_search(
    model: *const vlbeit_model,
    index: *const vlbeit_index,
    text: *const c_char,
    image: *const vlbeit_image,
    top_k: usize,
    rerank_k: usize,
    out_hits: *mut vlbeit_hit,
    capacity: usize,
    out_count: *mut usize,
) -> vlbeit_status {
    guard("vlbeit_index_search", || {
        // SAFETY: documented contract of each pointer.
        let model = unsafe { model_handle(model) }?;
        let index = unsafe { index_handle(index) }?;
        let state = index.read();
        let needed = top_k.min(state.index.len());
        let Some(buf) = unsafe { out_buffer(out_hits, capacity, out_count, needed, "out_hits") }?
        else {
            return Ok(());
        };
        let query = match (text.is_null(), image.is_null()) {
            (false, true) => Query::Text(unsafe { arg_str(text, "text") }?),
            // SAFETY: checked non-NULL.
            (true, false) => Query::Image(unsafe { image_source(&*image, "image") }?),
            _ => {
                return Err(FfiError::invalid(
                    "exactly one of text and image must be non-NULL",
                ));
            }
        };
        let hits = model.model.retrieve(&state.index, query, top_k, rerank_k)?;
        // SAFETY: a non-NULL out_count is writable.
        if let Some(count) = unsafe { out_count.as_mut() } {
            *count = hits.len();
        }
        for (slot, hit) in buf.iter_mut().zip(&hits) {
            *slot = vlbeit_hit {
                entry: hit.entry,
                id: state.ids[hit.entry].as_ptr(),
                metadata: state.metadata[hit.entry]
                    .as_ref()
                    .map_or(std::ptr::null(), |m| m.as_ptr()),
                similarity: hit.similarity,
                match_score: hit.match_score.unwrap_or(0.0),
                reranked: hit.match_score.is_some(),
                dual_rank: hit.dual_rank,
            };
        }
        Ok(())
    })
}
