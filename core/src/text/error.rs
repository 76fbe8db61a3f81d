//! What can go wrong with the text tokenizer, with the facts needed to fix it.

use std::path::PathBuf;

/// Errors of loading, training, saving and using the text tokenizer.
///
/// `file` is the tokenizer's path, or `<bytes>` / `<trained>` when it did not come from a file.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error("cannot access {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("tokenizer {} is not JSON (line {line}, column {column}): {message}", file.display())]
    NotJson {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("tokenizer {} is JSON but not a tokenizer.json: {message}", file.display())]
    NotATokenizer { file: PathBuf, message: String },
    #[error("tokenizer {} lacks the special token {token} (expected id {expected_id})", file.display())]
    MissingSpecialToken {
        file: PathBuf,
        token: &'static str,
        expected_id: i64,
    },
    #[error(
        "tokenizer {} has the special token {token} with id {found_id}, expected id {expected_id}",
        file.display()
    )]
    SpecialTokenId {
        file: PathBuf,
        token: &'static str,
        expected_id: i64,
        found_id: i64,
    },
    #[error("tokenizer {} uses {found:?} as its unknown token, expected [UNK]", file.display())]
    UnknownToken { file: PathBuf, found: String },
    #[error("tokenizer vocabulary has {found} entries but {expected} were expected (model config)")]
    VocabSizeMismatch { expected: usize, found: usize },
    #[error("tokenizer settings say {field} = {found}, but tokenizer.json has {expected}")]
    SettingsMismatch {
        field: &'static str,
        expected: String,
        found: String,
    },
    #[error("text {index} of the batch is empty (after normalization)")]
    EmptyText { index: usize },
    #[error("cannot encode an empty batch of texts")]
    EmptyBatch,
    #[error("max_len must be at least 3 ([T_CLS], one token, [T_SEP]), got {max_len}")]
    MaxLenTooSmall { max_len: usize },
    #[error("token id {id} is outside the vocabulary (0..{vocab_size})")]
    InvalidId { id: i64, vocab_size: usize },
    #[error("the training corpus has no non-empty line")]
    EmptyCorpus,
    #[error(
        "vocab_size {vocab_size} is too small: the corpus needs at least {required} \
         (5 special tokens + one per distinct character)"
    )]
    VocabTooSmall { vocab_size: usize, required: usize },
    #[error("tokenizer training failed: {message}")]
    Training { message: String },
    #[error("tokenizers library error while {context}: {source}")]
    Tokenizers {
        context: &'static str,
        #[source]
        source: tokenizers::Error,
    },
}

impl TextError {
    pub(crate) fn tokenizers(context: &'static str) -> impl FnOnce(tokenizers::Error) -> Self {
        move |source| TextError::Tokenizers { context, source }
    }
}
