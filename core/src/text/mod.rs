//! The text tokenizer: a SentencePiece-style Unigram model in a Hugging Face `tokenizer.json`.
//!
//! Training (`vlbeit-train`) and serving (`vlbeit`) load the same file through this module, so the
//! ids the model sees are defined here and nowhere else. The file carries the whole pipeline —
//! NFKC, lowercasing and whitespace folding (normalizer), Metaspace (pre-tokenizer and decoder),
//! the Unigram model and the `[T_CLS] $A [T_SEP]` template — so a tokenizer cannot be paired
//! with the wrong normalization.
//!
//! Ids are `i64` throughout because that is the dtype of `input_ids` in both tch and ONNX.
//!
//! ```no_run
//! use vlbeit_core::text::{Padding, TextTokenizer, TrainOptions};
//! # fn main() -> Result<(), vlbeit_core::text::TextError> {
//! let captions = ["a red circle above a blue square", "a green star"];
//! let tokenizer = TextTokenizer::train(captions, &TrainOptions::default().with_vocab_size(300))?;
//! tokenizer.save("tokenizer.json".as_ref())?;
//! let batch = tokenizer.encode_batch(&captions, 32, Padding::Longest)?;
//! assert_eq!(batch.input_ids.len(), batch.batch * batch.seq_len);
//! # Ok(()) }
//! ```

mod encode;
mod error;
mod settings;
mod train;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

pub use encode::TextBatch;
pub use error::TextError;
pub use settings::{Padding, SpecialToken, TokenizerSettings, UnicodeNormalization};
pub use train::TrainOptions;

/// Fixed special tokens, with ids 0..5 in this order in every tokenizer the project trains.
pub const SPECIAL_TOKENS: [&str; 5] = ["[PAD]", "[UNK]", "[T_CLS]", "[T_SEP]", "[MASK]"];

/// The ids of the special tokens. They are fixed (ids 0..5, in the order of [`SPECIAL_TOKENS`]);
/// every loaded tokenizer is checked against them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialIds {
    pub pad: i64,
    pub unk: i64,
    pub cls: i64,
    pub sep: i64,
    pub mask: i64,
}

impl SpecialIds {
    /// The ids every project tokenizer has.
    pub const FIXED: SpecialIds = SpecialIds {
        pad: 0,
        unk: 1,
        cls: 2,
        sep: 3,
        mask: 4,
    };

    /// Whether `id` is one of the special tokens (MLM/MVLM never mask or predict those).
    /// `[UNK]` counts as special: it carries no word to recover.
    pub fn is_special(&self, id: i64) -> bool {
        [self.pad, self.unk, self.cls, self.sep, self.mask].contains(&id)
    }
}

/// The project's text tokenizer: a validated `tokenizer.json` plus the project's encoding rules.
///
/// Cheap to share (`&self` everywhere); clone it for another thread if needed.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    vocab_size: usize,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("vocab_size", &self.vocab_size)
            .finish_non_exhaustive()
    }
}

impl TextTokenizer {
    /// Reads and validates a `tokenizer.json`.
    pub fn load(path: &Path) -> Result<Self, TextError> {
        let bytes = std::fs::read(path).map_err(|source| TextError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_json_bytes(&bytes, path.to_owned())
    }

    /// Parses and validates the contents of a `tokenizer.json` (errors name the file `<bytes>`).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TextError> {
        Self::from_json_bytes(bytes, PathBuf::from("<bytes>"))
    }

    fn from_json_bytes(bytes: &[u8], file: PathBuf) -> Result<Self, TextError> {
        // Parse twice: first as plain JSON to tell "not JSON" from "not a tokenizer".
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| TextError::NotJson {
                file: file.clone(),
                line: e.line(),
                column: e.column(),
                message: e.to_string(),
            })?;
        let inner = Tokenizer::from_bytes(bytes).map_err(|e| TextError::NotATokenizer {
            file: file.clone(),
            message: e.to_string(),
        })?;
        check_unigram_unk(&value, &file)?;
        Self::from_tokenizer(inner, file)
    }

    /// Validates the special tokens and ids, and fixes the encoding rules that must not come
    /// from the file: no truncation or padding inside the library (we do both, explicitly), and
    /// special-token strings in user text are plain text (a caption cannot inject `[T_SEP]`).
    pub(crate) fn from_tokenizer(mut inner: Tokenizer, file: PathBuf) -> Result<Self, TextError> {
        inner
            .with_truncation(None)
            .map_err(TextError::tokenizers("clearing truncation"))?;
        inner.with_padding(None);
        inner.set_encode_special_tokens(true);

        for (expected_id, token) in (0i64..).zip(SPECIAL_TOKENS) {
            match inner.token_to_id(token) {
                None => {
                    return Err(TextError::MissingSpecialToken {
                        file,
                        token,
                        expected_id,
                    });
                }
                Some(found) if i64::from(found) != expected_id => {
                    return Err(TextError::SpecialTokenId {
                        file,
                        token,
                        expected_id,
                        found_id: i64::from(found),
                    });
                }
                Some(_) => {}
            }
        }

        // The embedding table has `vocab_size` rows: every id must index it.
        let vocab_size = inner.get_vocab_size(true);
        if let Some(max_id) = inner.get_vocab(true).values().max()
            && *max_id as usize >= vocab_size
        {
            return Err(TextError::NotATokenizer {
                file,
                message: format!(
                    "token ids must be 0..{vocab_size} without gaps, but id {max_id} exists"
                ),
            });
        }
        Ok(Self { inner, vocab_size })
    }

    /// Writes `tokenizer.json` atomically: a temporary file in the same directory, fsync, rename.
    /// The output is byte-identical for identical tokenizers.
    pub fn save(&self, path: &Path) -> Result<(), TextError> {
        crate::fs::write_atomically(path, self.to_json()?.as_bytes())
            .map_err(|(path, source)| TextError::Io { path, source })
    }

    /// The `tokenizer.json` contents (pretty-printed, deterministic).
    pub fn to_json(&self) -> Result<String, TextError> {
        self.inner
            .to_string(true)
            .map_err(TextError::tokenizers("serializing tokenizer.json"))
    }

    /// Number of ids, special tokens included (= `ModelConfig::vocab_size`).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Fails unless the vocabulary has exactly `expected` entries (the model config's
    /// `vocab_size`): an embedding table of another size would silently misread ids.
    pub fn check_vocab_size(&self, expected: usize) -> Result<(), TextError> {
        if self.vocab_size == expected {
            Ok(())
        } else {
            Err(TextError::VocabSizeMismatch {
                expected,
                found: self.vocab_size,
            })
        }
    }

    /// The special ids (always [`SpecialIds::FIXED`]; loading enforces it).
    pub fn special_ids(&self) -> SpecialIds {
        SpecialIds::FIXED
    }

    /// Ids of ordinary tokens: what MLM's "random token" replacement draws from.
    pub fn regular_ids(&self) -> std::ops::Range<i64> {
        SPECIAL_TOKENS.len() as i64..self.vocab_size as i64
    }

    /// The id of a vocabulary entry (`"▁red"`, `"[MASK]"`), if present.
    pub fn token_to_id(&self, token: &str) -> Option<i64> {
        self.inner.token_to_id(token).map(i64::from)
    }

    /// The vocabulary entry of an id, if present.
    pub fn id_to_token(&self, id: i64) -> Option<String> {
        u32::try_from(id)
            .ok()
            .and_then(|id| self.inner.id_to_token(id))
    }

    /// The text after the tokenizer's normalizer (NFKC, lowercase, whitespace folded and trimmed):
    /// what `decode(encode(text))` gives back when every piece is in the vocabulary.
    pub fn normalize(&self, text: &str) -> Result<String, TextError> {
        use tokenizers::{NormalizedString, Normalizer};
        let mut normalized = NormalizedString::from(text);
        if let Some(normalizer) = self.inner.get_normalizer() {
            normalizer
                .normalize(&mut normalized)
                .map_err(TextError::tokenizers("normalizing text"))?;
        }
        Ok(normalized.get().to_owned())
    }
}

/// A Unigram model's unknown token must be `[UNK]` (id 1): an unknown character then maps to
/// the id the model was trained to expect.
fn check_unigram_unk(value: &serde_json::Value, file: &Path) -> Result<(), TextError> {
    let model = &value["model"];
    if model["type"] != "Unigram" {
        return Ok(());
    }
    let unk_id = model["unk_id"].as_u64();
    if unk_id == Some(1) {
        return Ok(());
    }
    let found = unk_id
        .and_then(|id| model["vocab"][id as usize][0].as_str())
        .unwrap_or("none")
        .to_owned();
    Err(TextError::UnknownToken {
        file: file.to_owned(),
        found,
    })
}
