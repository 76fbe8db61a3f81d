//! The tokenizer facts a bundle manifest records, so a reader of `manifest.json` (or a C++
//! application that tokenizes on its own) knows how text becomes `input_ids`.

use serde::{Deserialize, Serialize};

use super::{SPECIAL_TOKENS, TextError, TextTokenizer};

/// How a batch is padded with `[PAD]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    /// Every row as long as the longest row of the batch (fewest tokens; dynamic shapes).
    #[default]
    Longest,
    /// Every row exactly `max_len` long (static shapes: training, TensorRT profiles).
    MaxLen,
}

/// The Unicode normal form the tokenizer's normalizer applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnicodeNormalization {
    None,
    Nfc,
    Nfd,
    Nfkc,
    Nfkd,
}

/// One special token and its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecialToken {
    pub token: String,
    pub id: i64,
}

/// Tokenizer settings written into the bundle manifest. The `tokenizer.json` stays the
/// authority; these describe it and [`TextTokenizer::check_settings`] verifies they agree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerSettings {
    /// Longest encoding, `[T_CLS]` and `[T_SEP]` included.
    pub max_len: usize,
    pub padding: Padding,
    /// `[PAD]`, `[UNK]`, `[T_CLS]`, `[T_SEP]`, `[MASK]` with ids 0..5.
    pub special_tokens: Vec<SpecialToken>,
    pub lowercase: bool,
    pub unicode_normalization: UnicodeNormalization,
}

impl TokenizerSettings {
    /// Fails if `max_len` cannot hold `[T_CLS]`, one token and `[T_SEP]`.
    pub fn validate(&self) -> Result<(), TextError> {
        check_max_len(self.max_len)
    }
}

pub(crate) fn check_max_len(max_len: usize) -> Result<(), TextError> {
    if max_len < 3 {
        Err(TextError::MaxLenTooSmall { max_len })
    } else {
        Ok(())
    }
}

impl TextTokenizer {
    /// The settings of this tokenizer with the given encoding length and padding policy;
    /// the normalization flags are read from the tokenizer's own normalizer.
    pub fn settings(&self, max_len: usize, padding: Padding) -> TokenizerSettings {
        let normalizer = self
            .inner
            .get_normalizer()
            .and_then(|n| serde_json::to_value(n).ok())
            .unwrap_or_default();
        let mut types = Vec::new();
        collect_types(&normalizer, &mut types);
        let unicode_normalization = types
            .iter()
            .find_map(|t| match t.as_str() {
                "NFC" => Some(UnicodeNormalization::Nfc),
                "NFD" => Some(UnicodeNormalization::Nfd),
                "NFKC" => Some(UnicodeNormalization::Nfkc),
                "NFKD" => Some(UnicodeNormalization::Nfkd),
                _ => None,
            })
            .unwrap_or(UnicodeNormalization::None);
        TokenizerSettings {
            max_len,
            padding,
            special_tokens: (0..)
                .zip(SPECIAL_TOKENS)
                .map(|(id, token)| SpecialToken {
                    token: token.to_owned(),
                    id,
                })
                .collect(),
            lowercase: types.iter().any(|t| t == "Lowercase"),
            unicode_normalization,
        }
    }

    /// Fails unless `settings` (e.g. from a manifest) describe this tokenizer, naming the first
    /// field that differs.
    pub fn check_settings(&self, settings: &TokenizerSettings) -> Result<(), TextError> {
        settings.validate()?;
        let own = self.settings(settings.max_len, settings.padding);
        let mismatch = |field, expected: String, found: String| TextError::SettingsMismatch {
            field,
            expected,
            found,
        };
        if settings.special_tokens != own.special_tokens {
            return Err(mismatch(
                "special_tokens",
                format!("{:?}", own.special_tokens),
                format!("{:?}", settings.special_tokens),
            ));
        }
        if settings.lowercase != own.lowercase {
            return Err(mismatch(
                "lowercase",
                own.lowercase.to_string(),
                settings.lowercase.to_string(),
            ));
        }
        if settings.unicode_normalization != own.unicode_normalization {
            return Err(mismatch(
                "unicode_normalization",
                format!("{:?}", own.unicode_normalization),
                format!("{:?}", settings.unicode_normalization),
            ));
        }
        Ok(())
    }
}

/// The `"type"` of every normalizer in a (possibly nested) normalizer JSON, in order.
fn collect_types(value: &serde_json::Value, types: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(t) = map.get("type").and_then(|t| t.as_str()) {
                types.push(t.to_owned());
            }
            map.values().for_each(|v| collect_types(v, types));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_types(v, types)),
        _ => {}
    }
}
