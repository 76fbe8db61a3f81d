//! Training a Unigram tokenizer (SentencePiece's algorithm, as implemented by `tokenizers`),
//! reproducibly: the same corpus and options give a byte-identical `tokenizer.json`, on any
//! machine.
//!
//! `tokenizers`' own `Tokenizer::train` is not reproducible, for three reasons this module works
//! around:
//! 1. it counts words in an `AHashMap` whose seed is random per map, and the EM loop visits the
//!    words in that order; we count in a `BTreeMap` and call `UnigramTrainer::do_train` with
//!    the words sorted;
//! 2. the E-step and pruning sum floating-point partial results per chunk of
//!    `len / rayon::current_num_threads()` words and reduce them in a work-stealing order, so
//!    the scores depend on the core count and the scheduling; we train inside a one-thread
//!    rayon pool (one chunk, one fixed summation order);
//! 3. the final vocabulary iterates the required characters from an `AHashSet`: characters
//!    with equal scores come out in random order, and characters the EM pruned get the scores
//!    `min_score + k·1e-4` in that random order; we sort the pieces by (score, piece) and
//!    hand the penalty scores out in character order (see [`canonical_vocab`]).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};

use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::unigram::{Unigram, UnigramTrainer};
use tokenizers::normalizers::{Lowercase, NFKC, Replace, Sequence, Strip};
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{
    AddedToken, NormalizedString, Normalizer, NormalizerWrapper, OffsetReferential, OffsetType,
    PreTokenizedString, PreTokenizer, Tokenizer,
};

use super::{SPECIAL_TOKENS, TextError, TextTokenizer};

/// What `UnigramTrainer::finalize` adds per pruned character (`min_score_penalty_delta`).
const PRUNED_CHAR_PENALTY: f64 = 0.0001;

/// Options of [`TextTokenizer::train`].
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOptions {
    /// Upper bound of the vocabulary, special tokens included. A small corpus may yield fewer
    /// pieces; [`TextTokenizer::vocab_size`] tells the result.
    pub vocab_size: usize,
    /// Longest piece, in characters (SentencePiece's `max_sentencepiece_length`).
    pub max_piece_length: usize,
}

impl Default for TrainOptions {
    /// The tiny preset's vocabulary (DESIGN.md §4.1), SentencePiece's piece length.
    fn default() -> Self {
        Self {
            vocab_size: 2000,
            max_piece_length: 16,
        }
    }
}

impl TrainOptions {
    pub fn with_vocab_size(mut self, vocab_size: usize) -> Self {
        self.vocab_size = vocab_size;
        self
    }

    pub fn with_max_piece_length(mut self, max_piece_length: usize) -> Self {
        self.max_piece_length = max_piece_length;
        self
    }
}

/// The normalizer, pre-tokenizer and decoder every project tokenizer uses.
struct Pipeline {
    normalizer: NormalizerWrapper,
    metaspace: Metaspace,
}

impl Pipeline {
    fn new() -> Result<Self, TextError> {
        // SentencePiece's defaults (nmt_nfkc + remove_extra_whitespaces), plus lowercasing:
        // NFKC first so full-width letters and spaces become ASCII before the other steps.
        let whitespace = Replace::new(
            tokenizers::normalizers::replace::ReplacePattern::Regex(r"\s+".into()),
            " ",
        )
        .map_err(TextError::tokenizers("building the whitespace normalizer"))?;
        let normalizer = Sequence::new(vec![
            NFKC.into(),
            Lowercase.into(),
            whitespace.into(),
            Strip::new(true, true).into(),
        ]);
        Ok(Self {
            normalizer: normalizer.into(),
            metaspace: Metaspace::new('▁', PrependScheme::Always, true),
        })
    }

    /// The words of `text` as the Unigram model sees them (`"▁red"`, `"▁circle"`).
    fn words(&self, text: &str) -> Result<Vec<String>, TextError> {
        let mut normalized = NormalizedString::from(text);
        self.normalizer
            .normalize(&mut normalized)
            .map_err(TextError::tokenizers("normalizing the corpus"))?;
        let mut pretokenized = PreTokenizedString::from(normalized);
        self.metaspace
            .pre_tokenize(&mut pretokenized)
            .map_err(TextError::tokenizers("pre-tokenizing the corpus"))?;
        Ok(pretokenized
            .get_splits(OffsetReferential::Original, OffsetType::None)
            .into_iter()
            .map(|(word, _, _)| word.to_owned())
            .collect())
    }

    fn into_tokenizer(self, model: Unigram) -> Result<Tokenizer, TextError> {
        let template = TemplateProcessing::builder()
            .try_single("[T_CLS] $A [T_SEP]")
            .and_then(|b| b.try_pair("[T_CLS] $A [T_SEP] $B:1 [T_SEP]:1"))
            .map_err(|message| TextError::Training { message })?
            .special_tokens(vec![("[T_CLS]", 2), ("[T_SEP]", 3)])
            .build()
            .map_err(|e| TextError::Training {
                message: e.to_string(),
            })?;
        let mut tokenizer = Tokenizer::new(model);
        tokenizer
            .with_normalizer(Some(self.normalizer))
            .map_err(TextError::tokenizers("setting the normalizer"))?;
        tokenizer
            .with_pre_tokenizer(Some(self.metaspace.clone()))
            .with_post_processor(Some(template))
            .with_decoder(Some(DecoderWrapper::Metaspace(self.metaspace)));
        tokenizer
            .add_special_tokens(special_added_tokens())
            .map_err(TextError::tokenizers("adding the special tokens"))?;
        Ok(tokenizer)
    }
}

fn special_added_tokens() -> Vec<AddedToken> {
    SPECIAL_TOKENS
        .iter()
        .map(|token| AddedToken::from(*token, true))
        .collect()
}

/// Word counts in a deterministic order.
#[derive(Default)]
struct WordCounts(BTreeMap<String, u32>);

impl WordCounts {
    fn add_text(&mut self, pipeline: &Pipeline, text: &str) -> Result<(), TextError> {
        if text.trim().is_empty() {
            return Ok(());
        }
        for word in pipeline.words(text)? {
            let count = self.0.entry(word).or_insert(0);
            *count = count.saturating_add(1);
        }
        Ok(())
    }
}

impl TextTokenizer {
    /// Trains a tokenizer on an in-memory corpus (one sentence per item; empty items skipped).
    pub fn train<I, S>(texts: I, options: &TrainOptions) -> Result<Self, TextError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let pipeline = Pipeline::new()?;
        let mut counts = WordCounts::default();
        for text in texts {
            counts.add_text(&pipeline, text.as_ref())?;
        }
        train_on_counts(pipeline, counts, options)
    }

    /// Trains a tokenizer on UTF-8 text files, one sentence per line (empty lines skipped).
    pub fn train_from_files<P: AsRef<Path>>(
        files: &[P],
        options: &TrainOptions,
    ) -> Result<Self, TextError> {
        let pipeline = Pipeline::new()?;
        let mut counts = WordCounts::default();
        for path in files {
            let path = path.as_ref();
            let io_error = |source| TextError::Io {
                path: path.to_owned(),
                source,
            };
            let file = std::fs::File::open(path).map_err(io_error)?;
            for line in std::io::BufReader::new(file).lines() {
                counts.add_text(&pipeline, &line.map_err(io_error)?)?;
            }
        }
        train_on_counts(pipeline, counts, options)
    }
}

fn train_on_counts(
    pipeline: Pipeline,
    counts: WordCounts,
    options: &TrainOptions,
) -> Result<TextTokenizer, TextError> {
    if counts.0.is_empty() {
        return Err(TextError::EmptyCorpus);
    }
    let distinct_chars: BTreeSet<char> = counts.0.keys().flat_map(|w| w.chars()).collect();
    // Checked here because the trainer's own check forgets the special tokens and then
    // silently returns a vocabulary larger than asked.
    let required = distinct_chars.len() + SPECIAL_TOKENS.len();
    if options.vocab_size < required {
        return Err(TextError::VocabTooSmall {
            vocab_size: options.vocab_size,
            required,
        });
    }
    let vocab_size = u32::try_from(options.vocab_size).map_err(|_| TextError::Training {
        message: format!("vocab_size {} does not fit in u32", options.vocab_size),
    })?;
    let trainer = UnigramTrainer::builder()
        .show_progress(false)
        .vocab_size(vocab_size)
        .max_piece_length(options.max_piece_length.max(1))
        .special_tokens(special_added_tokens())
        .unk_token(Some(SPECIAL_TOKENS[1].to_owned()))
        .build()
        .map_err(|e| TextError::Training {
            message: e.to_string(),
        })?;
    let words = seed_visible_words(counts);

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| TextError::Training {
            message: format!("cannot start the training thread: {e}"),
        })?;
    // The trainer panics on some inputs (NaN likelihoods); a library must return an error.
    let trained = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.install(|| {
            let mut model = Unigram::default();
            trainer.do_train(words, &mut model).map(|_| model)
        })
    }))
    .map_err(|panic| TextError::Training {
        message: panic_message(panic.as_ref()),
    })?
    .map_err(TextError::tokenizers("training the Unigram model"))?;

    let vocab = canonical_vocab(&trained)?;
    let model = Unigram::from(vocab, Some(1), false)
        .map_err(TextError::tokenizers("building the Unigram model"))?;
    let tokenizer = pipeline.into_tokenizer(model)?;
    TextTokenizer::from_tokenizer(tokenizer, PathBuf::from("<trained>"))
}

/// The trainer seeds its pieces with the substrings that are internal nodes of a suffix tree
/// over the *distinct* words, each followed by `\0`: a substring only qualifies if it is followed
/// by two different characters somewhere. A whole word is always followed by `\0`, so it never
/// qualifies unless it is the prefix of a longer word ("▁red" needs "▁reds"): on a corpus with
/// few distinct words (synthetic captions) the vocabulary stays near the alphabet. SentencePiece
/// builds the tree over sentences, where a repeated word is followed by different next words.
///
/// We restore that by adding, for every word seen at least twice, the entry `word + "▁"` with
/// count 0. In the tree "▁red" is then followed by both `\0` and `▁`, so it becomes a seed;
/// EM ignores the entry (every E-step, M-step and pruning statistic is weighted by the count),
/// and nothing it adds survives the first M-step, since no real word has a `▁` inside.
fn seed_visible_words(counts: WordCounts) -> Vec<(String, u32)> {
    let repeated: Vec<(String, u32)> = counts
        .0
        .iter()
        .filter(|(_, count)| **count >= 2)
        .map(|(word, _)| (format!("{word}▁"), 0))
        .collect();
    counts.0.into_iter().chain(repeated).collect()
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    format!("the Unigram trainer panicked: {text}")
}

/// The trained vocabulary in a canonical order: special tokens first (ids 0..5), then pieces by
/// decreasing score, ties by piece.
///
/// Characters the EM pruned are re-added by the trainer with scores `floor + k·1e-4`
/// (`floor` = the lowest EM score) in hash order. Every such score is recognisable (it is
/// `floor + k·1e-4` computed the same way), so the single characters holding them form the
/// same set in every run; we give those scores back in character order. A character whose EM
/// score happens to equal one of them joins the set: the set is still the same every run.
fn canonical_vocab(trained: &Unigram) -> Result<Vec<(String, f64)>, TextError> {
    let all: Vec<(String, f64)> = trained.iter().cloned().collect();
    let n_special = SPECIAL_TOKENS.len();
    let specials_first = all.len() > n_special
        && all
            .iter()
            .zip(SPECIAL_TOKENS)
            .all(|((piece, _), token)| piece == token);
    if !specials_first {
        return Err(TextError::Training {
            message: "the trainer did not put the special tokens first".into(),
        });
    }
    let (specials, pieces) = all.split_at(n_special);
    let mut pieces = pieces.to_vec();

    let is_char = |piece: &str| piece.chars().count() == 1;
    let floor = pieces
        .iter()
        .map(|(_, score)| *score)
        .fold(f64::INFINITY, f64::min);
    let n_chars = pieces.iter().filter(|(piece, _)| is_char(piece)).count();
    let mut penalty_scores = HashSet::with_capacity(n_chars);
    let mut penalty = 0.0;
    for _ in 0..n_chars {
        penalty_scores.insert((floor + penalty).to_bits());
        penalty += PRUNED_CHAR_PENALTY;
    }
    let group: Vec<usize> = (0..pieces.len())
        .filter(|&i| is_char(&pieces[i].0) && penalty_scores.contains(&pieces[i].1.to_bits()))
        .collect();
    let mut chars: Vec<String> = group.iter().map(|&i| pieces[i].0.clone()).collect();
    chars.sort();
    let mut scores: Vec<f64> = group.iter().map(|&i| pieces[i].1).collect();
    scores.sort_by(|a, b| b.total_cmp(a));
    for ((&i, piece), score) in group.iter().zip(chars).zip(scores) {
        pieces[i] = (piece, score);
    }

    pieces.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(specials.iter().cloned().chain(pieces).collect())
}
