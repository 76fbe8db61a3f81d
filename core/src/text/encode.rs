//! Text → ids (`[T_CLS] … [T_SEP]`, truncated and padded) and ids → text.

use super::settings::check_max_len;
use super::{Padding, SpecialIds, TextError, TextTokenizer};

/// A batch of encoded texts, row-major `[batch, seq_len]`, ready for a tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextBatch {
    /// Token ids; padding positions hold `[PAD]` (0).
    pub input_ids: Vec<i64>,
    /// 1 for real tokens (specials included), 0 for padding.
    pub attention_mask: Vec<i64>,
    pub batch: usize,
    pub seq_len: usize,
}

impl TextBatch {
    /// The ids of row `index`, padding included (`None` past the last row).
    pub fn row(&self, index: usize) -> Option<&[i64]> {
        self.input_ids
            .get(index * self.seq_len..(index + 1) * self.seq_len)
            .filter(|_| index < self.batch)
    }
}

impl TextTokenizer {
    /// Encodes one text as `[T_CLS] pieces… [T_SEP]`, at most `max_len` ids (specials included),
    /// without padding. Longer texts lose their last pieces; `[T_SEP]` always ends the encoding.
    ///
    /// Fails on an empty or whitespace-only text (`EmptyText { index: 0 }`).
    pub fn encode(&self, text: &str, max_len: usize) -> Result<Vec<i64>, TextError> {
        check_max_len(max_len)?;
        self.encode_at(text, max_len, 0)
    }

    fn encode_at(&self, text: &str, max_len: usize, index: usize) -> Result<Vec<i64>, TextError> {
        if text.trim().is_empty() {
            return Err(TextError::EmptyText { index });
        }
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(TextError::tokenizers("encoding text"))?;
        let pieces = encoding.get_ids();
        // Text made only of characters the normalizer removes has no piece left.
        if pieces.is_empty() {
            return Err(TextError::EmptyText { index });
        }
        let SpecialIds { cls, sep, .. } = SpecialIds::FIXED;
        let kept = pieces.len().min(max_len - 2);
        let mut ids = Vec::with_capacity(kept + 2);
        ids.push(cls);
        ids.extend(pieces[..kept].iter().map(|&id| i64::from(id)));
        ids.push(sep);
        Ok(ids)
    }

    /// Encodes a batch; rows are padded with `[PAD]` to the longest row or to `max_len`.
    ///
    /// Fails on an empty batch, or on an empty text with its position in the batch.
    ///
    /// ```no_run
    /// # use vlbeit_core::text::{Padding, TextTokenizer};
    /// # let tokenizer = TextTokenizer::load("tokenizer.json".as_ref()).unwrap();
    /// let batch = tokenizer.encode_batch(&["a red circle", "a star"], 32, Padding::Longest).unwrap();
    /// assert_eq!(batch.row(0).unwrap()[0], tokenizer.special_ids().cls);
    /// ```
    pub fn encode_batch<S: AsRef<str>>(
        &self,
        texts: &[S],
        max_len: usize,
        padding: Padding,
    ) -> Result<TextBatch, TextError> {
        check_max_len(max_len)?;
        if texts.is_empty() {
            return Err(TextError::EmptyBatch);
        }
        let rows = texts
            .iter()
            .enumerate()
            .map(|(index, text)| self.encode_at(text.as_ref(), max_len, index))
            .collect::<Result<Vec<_>, _>>()?;
        let seq_len = match padding {
            Padding::Longest => rows.iter().map(Vec::len).max().unwrap_or(0),
            Padding::MaxLen => max_len,
        };
        let mut input_ids = Vec::with_capacity(rows.len() * seq_len);
        let mut attention_mask = Vec::with_capacity(rows.len() * seq_len);
        for row in &rows {
            let pad = seq_len - row.len();
            input_ids.extend_from_slice(row);
            input_ids.extend(std::iter::repeat_n(SpecialIds::FIXED.pad, pad));
            attention_mask.extend(std::iter::repeat_n(1, row.len()));
            attention_mask.extend(std::iter::repeat_n(0, pad));
        }
        Ok(TextBatch {
            input_ids,
            attention_mask,
            batch: rows.len(),
            seq_len,
        })
    }

    /// Ids back to text, skipping special tokens (padding, `[T_CLS]`, `[MASK]`, …).
    /// The result is the normalized text (lowercase, NFKC, single spaces).
    pub fn decode(&self, ids: &[i64]) -> Result<String, TextError> {
        let special = self.special_ids();
        let mut pieces = Vec::with_capacity(ids.len());
        for &id in ids {
            let valid = u32::try_from(id)
                .ok()
                .filter(|&id| (id as usize) < self.vocab_size);
            let Some(id32) = valid else {
                return Err(TextError::InvalidId {
                    id,
                    vocab_size: self.vocab_size,
                });
            };
            if !special.is_special(id) {
                pieces.push(id32);
            }
        }
        self.inner
            .decode(&pieces, true)
            .map_err(TextError::tokenizers("decoding ids"))
    }
}
