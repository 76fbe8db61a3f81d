//! Models from C: load, free, size queries, embeddings, matching, answers, classes.

use std::ffi::{CString, c_char};
use std::path::Path;

use super::vlbeit_status::*;
use super::{
    FfiError, FfiResult, HandleKind, arg, arg_slice, arg_str, free_handle, guard, handle, out,
    out_buffer, register, vlbeit_status,
};
use crate::bundle::HashCheck;
use crate::model::{ImageSource, Model, ModelOptions, Scored};
use crate::provider::{ExecutionProvider, TensorRtOptions};
use vlbeit_core::preprocess::Rgb8Image;

/// Where a model's graphs run.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum vlbeit_provider {
    VLBEIT_PROVIDER_CPU = 0,
    /// NVIDIA CUDA on GPU `device`.
    VLBEIT_PROVIDER_CUDA = 1,
    /// NVIDIA TensorRT on GPU `device` (then CUDA, then CPU for what TensorRT does not take).
    VLBEIT_PROVIDER_TENSORRT = 2,
}

/// Parameters of `vlbeit_model_load`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct vlbeit_model_params {
    /// `sizeof(vlbeit_model_params)`; set by `vlbeit_model_default_params()`.
    pub struct_size: u32,
    /// A `vlbeit_provider` (default `VLBEIT_PROVIDER_CPU`).
    pub provider: i32,
    /// GPU ordinal for CUDA and TensorRT (default 0).
    pub device: i32,
    /// CPU provider: intra-op threads per session (default 0: one per core).
    pub threads: u32,
    /// -1 (default): strict for GPU providers (a provider that cannot be registered fails the
    /// load with `VLBEIT_ERROR_PROVIDER_UNAVAILABLE`); 0: fall back to CPU; 1: strict.
    pub strict: i32,
    /// Sessions per graph = how many calls may run one graph at once (default 1). Set it to the
    /// number of threads that share the model.
    pub pool_size: u32,
    /// Largest batch sent to a graph; longer requests are split (default 32).
    pub max_batch: u32,
    /// Nonzero (default): check every bundle file's sha256 at load. 0: only for trusted
    /// read-only media (graph signatures are still checked).
    pub verify_hashes: i32,
    /// TensorRT: nonzero builds fp16 engines (default 0).
    pub tensorrt_fp16: i32,
    /// TensorRT: directory for cached engines (keyed by bundle, GPU, versions, precision,
    /// profile); NULL (default) builds engines at every load.
    pub tensorrt_engine_cache_dir: *const c_char,
}

/// What a `vlbeit_image` holds.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum vlbeit_image_kind {
    /// `path`: a JPEG, PNG or WebP file.
    VLBEIT_IMAGE_PATH = 0,
    /// `data`, `size`: encoded JPEG, PNG or WebP bytes.
    VLBEIT_IMAGE_ENCODED = 1,
    /// `data`, `size`, `width`, `height`, `stride`: raw RGB8 pixels, row-major HWC, each row
    /// `stride >= 3 * width` bytes apart (`size >= stride * (height - 1) + 3 * width`).
    VLBEIT_IMAGE_RGB8 = 2,
}

/// One image of a request. Only read during the call: the library keeps no pointer to it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct vlbeit_image {
    /// A `vlbeit_image_kind`.
    pub kind: i32,
    /// `VLBEIT_IMAGE_PATH`: NUL-terminated UTF-8 path.
    pub path: *const c_char,
    /// `VLBEIT_IMAGE_ENCODED`, `VLBEIT_IMAGE_RGB8`: the bytes.
    pub data: *const u8,
    /// Length of `data` in bytes.
    pub size: usize,
    /// `VLBEIT_IMAGE_RGB8`: pixels per row.
    pub width: u32,
    /// `VLBEIT_IMAGE_RGB8`: rows.
    pub height: u32,
    /// `VLBEIT_IMAGE_RGB8`: bytes from one row to the next (0 means `3 * width`).
    pub stride: usize,
}

/// A label with its probability (answers, classes).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct vlbeit_scored {
    /// Position in the head's label list (`vlbeit_model_label`).
    pub index: usize,
    /// VQA: sigmoid of the answer's logit; classification: softmax probability.
    pub score: f32,
    /// The label, NUL-terminated; owned by the model, valid until `vlbeit_model_free`.
    pub label: *const c_char,
}

/// Which head's labels `vlbeit_model_label` and `vlbeit_model_label_count` read.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum vlbeit_head {
    /// VQA answers (`vlbeit_answer`).
    VLBEIT_HEAD_VQA = 0,
    /// Classes (`vlbeit_classify`).
    VLBEIT_HEAD_CLASSIFY = 1,
}

/// A loaded bundle (opaque). Immutable after load and safe to share between threads; up to
/// `pool_size` calls run each graph at once, more wait for a free session.
pub struct vlbeit_model {
    pub(crate) model: Model,
    answers: Vec<CString>,
    classes: Vec<CString>,
}

impl vlbeit_model {
    fn labels(&self, head: i32) -> FfiResult<&[CString]> {
        match head {
            0 => Ok(&self.answers),
            1 => Ok(&self.classes),
            other => Err(FfiError::invalid(format!(
                "head is {other}; expected VLBEIT_HEAD_VQA (0) or VLBEIT_HEAD_CLASSIFY (1)"
            ))),
        }
    }

    /// `Scored` results as C structs whose labels point into this model's tables.
    fn scored(&self, results: &[Scored], head: i32, out: &mut [vlbeit_scored]) {
        let labels = self.labels(head).unwrap_or(&[]);
        for (slot, result) in out.iter_mut().zip(results) {
            *slot = vlbeit_scored {
                index: result.index,
                score: result.score,
                label: labels
                    .get(result.index)
                    .map_or(std::ptr::null(), |l| l.as_ptr()),
            };
        }
    }
}

pub(crate) unsafe fn model_handle<'a>(ptr: *const vlbeit_model) -> FfiResult<&'a vlbeit_model> {
    // SAFETY: forwarded to the registry check.
    unsafe { handle(ptr, HandleKind::Model, "model") }
}

/// An image of a request as the runtime's `ImageSource` (borrowing the caller's memory).
pub(crate) unsafe fn image_source<'a>(
    image: &'a vlbeit_image,
    what: &str,
) -> FfiResult<ImageSource<'a>> {
    match image.kind {
        0 => {
            // SAFETY: a non-NULL path is NUL-terminated (documented contract).
            let path = unsafe { arg_str(image.path, &format!("{what}.path")) }?;
            Ok(ImageSource::Path(Path::new(path)))
        }
        1 | 2 => {
            if image.size == 0 {
                return Err(FfiError::new(
                    VLBEIT_ERROR_INVALID_INPUT,
                    format!("{what}.size is 0: the image has no bytes"),
                ));
            }
            // SAFETY: `data` holds `size` bytes (documented contract).
            let data = unsafe { arg_slice(image.data, image.size, &format!("{what}.data")) }?;
            if image.kind == 1 {
                return Ok(ImageSource::Encoded(data));
            }
            let stride = if image.stride == 0 {
                image.width as usize * 3
            } else {
                image.stride
            };
            let rgb = Rgb8Image::new(data, image.width, image.height, stride)
                .map_err(|e| FfiError::new(VLBEIT_ERROR_INVALID_INPUT, format!("{what}: {e}")))?;
            Ok(ImageSource::Rgb8(rgb))
        }
        other => Err(FfiError::invalid(format!(
            "{what}.kind is {other}; expected VLBEIT_IMAGE_PATH (0), VLBEIT_IMAGE_ENCODED (1) \
             or VLBEIT_IMAGE_RGB8 (2)"
        ))),
    }
}

unsafe fn image_sources<'a>(images: &'a [vlbeit_image]) -> FfiResult<Vec<ImageSource<'a>>> {
    images
        .iter()
        .enumerate()
        // SAFETY: forwarded contract of each image.
        .map(|(i, image)| unsafe { image_source(image, &format!("images[{i}]")) })
        .collect()
}

unsafe fn texts<'a>(texts: *const *const c_char, count: usize) -> FfiResult<Vec<&'a str>> {
    // SAFETY: `texts` holds `count` pointers (documented contract).
    let pointers = unsafe { arg_slice(texts, count, "texts") }?;
    pointers
        .iter()
        .enumerate()
        // SAFETY: each non-NULL text is NUL-terminated (documented contract).
        .map(|(i, &p)| unsafe { arg_str(p, &format!("texts[{i}]")) })
        .collect()
}

fn options_from(params: &vlbeit_model_params) -> FfiResult<ModelOptions> {
    let threads = params.threads as usize;
    // SAFETY: a non-NULL string is NUL-terminated (documented contract).
    let cache = unsafe {
        super::opt_str(
            params.tensorrt_engine_cache_dir,
            "params->tensorrt_engine_cache_dir",
        )
    }?;
    let provider = match params.provider {
        0 => ExecutionProvider::Cpu { threads },
        1 => ExecutionProvider::Cuda {
            device: params.device,
        },
        2 => ExecutionProvider::TensorRt(TensorRtOptions {
            device: params.device,
            fp16: params.tensorrt_fp16 != 0,
            engine_cache_dir: cache.map(Into::into),
            timing_cache: cache.is_some(),
            profiles: None,
        }),
        other => {
            return Err(FfiError::invalid(format!(
                "params->provider is {other}; expected VLBEIT_PROVIDER_CPU (0), \
                 VLBEIT_PROVIDER_CUDA (1) or VLBEIT_PROVIDER_TENSORRT (2)"
            )));
        }
    };
    let strict = match params.strict {
        -1 => None,
        0 => Some(false),
        1 => Some(true),
        other => {
            return Err(FfiError::invalid(format!(
                "params->strict is {other}; expected -1 (default), 0 or 1"
            )));
        }
    };
    if params.pool_size == 0 || params.max_batch == 0 {
        return Err(FfiError::invalid(format!(
            "params->pool_size ({}) and params->max_batch ({}) must be at least 1",
            params.pool_size, params.max_batch
        )));
    }
    Ok(ModelOptions {
        provider,
        strict,
        pool_size: params.pool_size as usize,
        max_batch: params.max_batch as usize,
        hash_check: if params.verify_hashes != 0 {
            HashCheck::All
        } else {
            HashCheck::Skip
        },
    })
}

/// Default `vlbeit_model_params`: CPU with one thread per core, strict for GPUs, one session
/// per graph, batches of 32, hashes checked. Thread safety: safe from any thread.
/// Ownership: returned by value (its pointers are NULL). Errors: none (cannot fail).
#[unsafe(no_mangle)]
pub extern "C" fn vlbeit_model_default_params() -> vlbeit_model_params {
    vlbeit_model_params {
        struct_size: std::mem::size_of::<vlbeit_model_params>() as u32,
        provider: vlbeit_provider::VLBEIT_PROVIDER_CPU as i32,
        device: 0,
        threads: 0,
        strict: -1,
        pool_size: 1,
        max_batch: 32,
        verify_hashes: 1,
        tensorrt_fp16: 0,
        tensorrt_engine_cache_dir: std::ptr::null(),
    }
}

/// Opens and verifies the bundle directory `bundle_dir` (manifest, file hashes, graph
/// signatures, tokenizer) and creates its sessions. `params` NULL means the defaults.
///
/// Ownership: on success `*out_model` is a new handle the caller owns; free it with
/// `vlbeit_model_free`. On failure `*out_model` is set to NULL.
/// Errors: `VLBEIT_ERROR_NOT_INITIALIZED`, `VLBEIT_ERROR_INVALID_ARGUMENT`, `VLBEIT_ERROR_BUNDLE`
/// (a missing directory, a missing or altered file, a bad manifest, signature or tokenizer),
/// `VLBEIT_ERROR_IO` (an unreadable file), `VLBEIT_ERROR_PROVIDER_UNAVAILABLE`,
/// `VLBEIT_ERROR_RUNTIME`. Thread safety: safe from any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vlbeit_model_load(
    bundle_dir: *const c_char,
    params: *const vlbeit_model_params,
    out_model: *mut *mut vlbeit_model,
) -> vlbeit_status {
    guard("vlbeit_model_load", || {
        // SAFETY: documented contract of each pointer.
        let slot = unsafe { out(out_model, "out_model") }?;
        *slot = std::ptr::null_mut();
        let dir = unsafe { arg_str(bundle_dir, "bundle_dir") }?;
        let defaults = vlbeit_model_default_params();
        let params = if params.is_null() {
            &defaults
        } else {
            unsafe { super::params(params, "params") }?
        };
        let options = options_from(params)?;
        let runtime = super::global::runtime()?;
        let model = Model::load(&runtime, Path::new(dir), options)?;
        for report in model.provider_reports() {
            if let Some(reason) = &report.fallback_reason {
                super::global::log(
                    super::vlbeit_log_level::VLBEIT_LOG_WARN,
                    &format!(
                        "{dir}: {}: {} fell back to CPU: {reason}",
                        report.graph, report.requested
                    ),
                );
            }
        }
        super::global::log(
            super::vlbeit_log_level::VLBEIT_LOG_INFO,
            &format!(
                "loaded bundle {dir} (sha256 {}, providers {})",
                model.bundle().sha256(),
                model.provider_reports()[0].registered.join(",")
            ),
        );
        let heads = &model.manifest().heads;
        let table = |labels: &Option<Vec<String>>| {
            labels
                .iter()
                .flatten()
                .map(|l| super::c_string(l))
                .collect()
        };
        let handle = vlbeit_model {
            answers: table(&heads.answers),
            classes: table(&heads.classes),
            model,
        };
        *slot = register(handle, HandleKind::Model);
        Ok(())
    })
}

/// Frees the model `*model` and sets `*model` to NULL. `model == NULL` or `*model == NULL` is
/// a no-op, so calling it twice on the same variable is harmless; a pointer that is not a live
/// model (e.g. a stale copy of a freed handle) is reported as `VLBEIT_ERROR_INVALID_HANDLE`
/// and not touched. Label pointers from this model become invalid.
/// Thread safety: no other thread may use the model during or after this call.
/// Ownership: releases the handle the caller owned.
/// Errors: `VLBEIT_ERROR_INVALID_HANDLE` (not a live model).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vlbeit_model_free(model: *mut *mut vlbeit_model) -> vlbeit_status {
    guard("vlbeit_model_free", || unsafe {
        // SAFETY: forwarded to the registry check.
        free_handle(model, HandleKind::Model, "model")
    })
}

/// `*out_dim` = length of the model's image and text embeddings (floats per input).
/// Errors: `VLBEIT_ERROR_INVALID_ARGUMENT`, `VLBEIT_ERROR_INVALID_HANDLE`.
/// Thread safety: safe from any thread.
/// Ownership: the arguments are only read during the call; nothing returned needs freeing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vlbeit_model_embed_dim(
    model: *const vlbeit_model,
    out_dim: *mut usize,
) -> vlbeit_status {
    guard("vlbeit_model_embed_dim", || {
        // SAFETY: documented contract of each pointer.
        let model = unsafe { model_handle(model) }?;
        *unsafe { out(out_dim, "out_dim") }? = model.model.embed_dim();
        Ok(())
    })
}

/// `*out_count` = number of labels of a `vlbeit_head` (answers or classes); 0 when the bundle
/// has no such head. Errors: `VLBEIT_ERROR_INVALID_ARGUMENT`, `VLBEIT_ERROR_INVALID_HANDLE`.
/// Thread safety: safe from any thread.
/// Ownership: the arguments are only read during the call; nothing returned needs freeing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vlbeit_model_label_count(
    model: *const vlbeit_model,
    head: i32,
    out_count: *mut usize,
) -> vlbeit_status {
    guard("vlbeit_model_label_count", || {
        // SAFETY: documented contract of each pointer.
        let model = unsafe { model_handle(model) }?;
        *unsafe { out(out_count, "out_count") }? = model.labels(head)?.len();
        Ok(())
    })
}

/// `*out_label` = label `index` of a `vlbeit_head`. Ownership: the string is owned by the
/// model, valid until `vlbeit_model_free`. Errors: `VLBEIT_ERROR_INVALID_ARGUMENT` (also for
/// an index past the end), `VLBEIT_ERROR_INVALID_HANDLE`. Thread safety: safe from any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vlbeit_model_label(
    model: *const vlbeit_model,
    head: i32,
    index: usize,
    out_label: *mut *const c_char,
) -> vlbeit_status {
    guard("vlbeit_model_label", || {
        // SAFETY: documented contract of each pointer.
        let model = unsafe { model_handle(model) }?;
        let slot = unsafe { out(out_label, "out_label") }?;
        let labels = model.labels(head)?;
        let label = labels.get(index).ok_or_else(|| {
            FfiError::invalid(format!(
                "index {index} is past the head's {} labels",
                labels.len()
            ))
        })?;
        *slot = label.as_ptr();
        Ok(())
    })
}

/// The bundle's manifest sha256 (64 hex digits): what indexes are tied to.
/// String convention: writes the NUL-terminated text into `out` (`capacity` bytes);
/// `out_len` (optional) receives the bytes needed, NUL included; `out == NULL` with
/// `capacity == 0` queries the length. Errors: `VLBEIT_ERROR_INVALID_HANDLE`,
/// `VLBEIT_ERROR_BUFFER_TOO_SMALL`. Thread safety: safe from any thread.
/// Ownership: `out_text` is the caller's buffer; the library keeps no pointer to it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vlbeit_model_bundle_sha256(
    model: *const vlbeit_model,
    out_text: *mut c_char,
    capacity: usize,
    out_len: *mut usize,
) -> vlbeit_status {
    guard("vlbeit_model_bundle_sha256", || {
        // SAFETY: documented contract of each pointer.
        let model = unsafe { model_handle(model) }?;
        unsafe { super::out_string(model.model.bundle().sha256(), out_text, capacity, out_len) }
    })
}

/// L2-normalized image embeddings, `count × dim` floats row-major into `out` (`capacity`
/// floats); `out_count` (optional) receives `count * dim`. `out == NULL` with `capacity == 0`
/// is a size query (no work). A bad image fails the whole request; the message names its
/// position. Ownership: inputs are only read during the call; `out` is the caller's.
/// Errors: `VLBEIT_ERROR_INVALID_ARGUMENT`, `VLBEIT_ERROR_INVALID_HANDLE`,
/// `VLBEIT_ERROR_BUFFER_TOO_SMALL`, `VLBEIT_ERROR_INVALID_INPUT` (corrupt image),
/// `VLBEIT_ERROR_IO` (unreadable file), `VLBEIT_ERROR_RUNTIME`.
/// Thread safety: safe from any thread on a shared model.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vlbeit_embed_images(
    model: *const vlbeit_model,
    images: *const vlbeit_image,
    count: usize,
    out_embeddings: *mut f32,
    capacity: usize,
    out_count: *mut usize,
) -> vlbeit_status {
    guard("vlbeit_embed_images", || {
        // SAFETY: documented contract of each pointer.
        let model = unsafe { model_handle(model) }?;
        let needed = count * model.model.embed_dim();
        let Some(buf) = unsafe {
            out_buffer(
                out_embeddings,
                capacity,
                out_count,
                needed,
                "out_embeddings",
            )
        }?
        else {
            return Ok(());
        };
        let images = unsafe { arg_slice(images, count, "images") }?;
        let sources = unsafe { image_sources(images) }?;
        let embeddings = model.model.embed_images(&sources)?;
        buf.copy_from_slice(&embeddings.data);
        Ok(())
    })
}

/// L2-normalized text embeddings of `count` NUL-terminated UTF-8 `texts`, as
/// `vlbeit_embed_images` (same buffer convention). Texts longer than the text encoder's
/// maximum are truncated; an empty text is `VLBEIT_ERROR_INVALID_INPUT` naming its position.
/// Errors: as `vlbeit_embed_images`. Thread safety: safe from any thread on a shared model.
/// Ownership: texts are only read during the call; `out_embeddings` is the caller's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vlbeit_embed_texts(
    model: *const vlbeit_model,
    texts: *const *const c_char,
    count: usize,
    out_embeddings: *mut f32,
    capacity: usize,
    out_count: *mut usize,
) -> vlbeit_status {
    guard("vlbeit_embed_texts", || {
        // SAFETY: documented contract of each pointer.
        let model = unsafe { model_handle(model) }?;
        let needed = count * model.model.embed_dim();
        let Some(buf) = unsafe {
            out_buffer(
                out_embeddings,
                capacity,
                out_count,
                needed,
                "out_embeddings",
            )
        }?
        else {
            return Ok(());
        };
        let texts = unsafe { self::texts(texts, count) }?;
        let embeddings = model.model.embed_texts(&texts)?;
        buf.copy_from_slice(&embeddings.data);
        Ok(())
    })
}

/// `*out_score` = image–text matching probability (ITM head) of `image` and `text`, in [0, 1].
/// Errors: `VLBEIT_ERROR_INVALID_ARGUMENT`, `VLBEIT_ERROR_INVALID_HANDLE`,
/// `VLBEIT_ERROR_INVALID_INPUT`, `VLBEIT_ERROR_IO`, `VLBEIT_ERROR_RUNTIME`.
/// Thread safety: safe from any thread on a shared model.
/// Ownership: the arguments are only read during the call; nothing returned needs freeing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vlbeit_match_score(
    model: *const vlbeit_model,
    image: *const vlbeit_image,
    text: *const c_char,
    out_score: *mut f32,
) -> vlbeit_status {
    guard("vlbeit_match_score", || {
        // SAFETY: documented contract of each pointer.
        let model = unsafe { model_handle(model) }?;
        let image = unsafe { image_source(arg(image, "image")?, "image") }?;
        let text = unsafe { arg_str(text, "text") }?;
        let slot = unsafe { out(out_score, "out_score") }?;
        *slot = model.model.match_score(image, text)?;
        Ok(())
    })
}

/// The `top_k` most likely answers to `question` about `image` (VQA head), best first, into
/// `out_answers` (`capacity` entries); `out_count` (optional) receives
/// `min(top_k, number of answers)`; `out == NULL` with `capacity == 0` is a size query.
/// Ownership: labels are owned by the model (valid until `vlbeit_model_free`).
/// Errors: `VLBEIT_ERROR_MISSING_HEAD` (a bundle without a VQA head: fine-tune with
/// `vlbeit-train finetune --task vqa`), `VLBEIT_ERROR_INVALID_INPUT` (`top_k == 0`, bad image
/// or question), `VLBEIT_ERROR_BUFFER_TOO_SMALL`, and as `vlbeit_match_score`.
/// Thread safety: safe from any thread on a shared model.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vlbeit_answer(
    model: *const vlbeit_model,
    image: *const vlbeit_image,
    question: *const c_char,
    top_k: usize,
    out_answers: *mut vlbeit_scored,
    capacity: usize,
    out_count: *mut usize,
) -> vlbeit_status {
    guard("vlbeit_answer", || {
        // SAFETY: documented contract of each pointer.
        let model = unsafe { model_handle(model) }?;
        let image = unsafe { image_source(arg(image, "image")?, "image") }?;
        let question = unsafe { arg_str(question, "question") }?;
        if model.answers.is_empty() {
            // The runtime's own error (names the head and how to get one).
            model.model.answer(image, question, top_k.max(1))?;
        }
        let needed = top_k.min(model.answers.len());
        let Some(buf) =
            unsafe { out_buffer(out_answers, capacity, out_count, needed, "out_answers") }?
        else {
            return Ok(());
        };
        let answers = model.model.answer(image, question, top_k)?;
        model.scored(&answers, 0, buf);
        Ok(())
    })
}

/// The `top_k` most likely classes of `image` (classification head), as `vlbeit_answer`.
/// Errors: `VLBEIT_ERROR_MISSING_HEAD` (no classification head), and as `vlbeit_answer`.
/// Thread safety: safe from any thread on a shared model.
/// Ownership: labels are owned by the model (valid until `vlbeit_model_free`); `out_classes` is the caller's.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vlbeit_classify(
    model: *const vlbeit_model,
    image: *const vlbeit_image,
    top_k: usize,
    out_classes: *mut vlbeit_scored,
    capacity: usize,
    out_count: *mut usize,
) -> vlbeit_status {
    guard("vlbeit_classify", || {
        // SAFETY: documented contract of each pointer.
        let model = unsafe { model_handle(model) }?;
        let image = unsafe { image_source(arg(image, "image")?, "image") }?;
        if model.classes.is_empty() {
            model.model.classify(image, top_k.max(1))?;
        }
        let needed = top_k.min(model.classes.len());
        let Some(buf) =
            unsafe { out_buffer(out_classes, capacity, out_count, needed, "out_classes") }?
        else {
            return Ok(());
        };
        let classes = model.model.classify(image, top_k)?;
        model.scored(&classes, 1, buf);
        Ok(())
    })
}
