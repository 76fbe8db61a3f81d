//! Assembles one step: draws items from the three streams in a fixed order, decodes and
//! augments images (skipping unreadable ones), tokenizes texts and captions.

use vlbeit_core::preprocess::{ImageF32, Preprocessor};
use vlbeit_core::rng::Rng;
use vlbeit_core::shards::Sample;
use vlbeit_core::text::TextTokenizer;

use super::loader::LoaderState;
use super::sources::IMAGE_EXTENSIONS;
use super::stream::{Item, Stream};
use super::{BadImage, DataError, ImageBatch, ImageCounts, LoaderConfig, PairBatch, PretrainBatch};

pub(crate) struct Producer {
    pub images: Stream,
    pub texts: Stream,
    pub pairs: Stream,
    pub tokenizer: TextTokenizer,
    pub preprocessor: Preprocessor,
    pub step: u64,
    pub counts: ImageCounts,
    pub units: [usize; 3],
    pub config: LoaderConfig,
    /// The latest skipped image, named in the error when too many were skipped.
    pub last_bad: Option<String>,
}

impl Producer {
    pub fn state(&self) -> LoaderState {
        LoaderState {
            seed: self.config.seed,
            step: self.step,
            images: self.images.state(),
            texts: self.texts.state(),
            pairs: self.pairs.state(),
            image_counts: self.counts,
            units: self.units,
        }
    }

    /// The next step, or `None` when a single pass is over.
    pub fn next_step(&mut self) -> Result<Option<PretrainBatch>, DataError> {
        let n = self.config.batch_size;
        let side = self.preprocessor.config().image_size as usize;
        let mut image_pixels = Vec::with_capacity(n * 3 * side * side);
        let mut images = 0;
        while images < n {
            let Some(pixels) = self.next_image()? else {
                break;
            };
            image_pixels.extend_from_slice(&pixels);
            images += 1;
        }
        let mut texts = Vec::with_capacity(n);
        while texts.len() < n {
            match self.texts.next(!self.config.single_pass)? {
                Some((Item::Line(line), _)) => texts.push(line),
                Some(_) => unreachable!("the text stream holds lines"),
                None => break,
            }
        }
        let (mut pair_pixels, mut captions) = (Vec::with_capacity(image_pixels.len()), Vec::new());
        while captions.len() < n {
            let Some((pixels, caption)) = self.next_pair()? else {
                break;
            };
            pair_pixels.extend_from_slice(&pixels);
            captions.push(caption);
        }
        // Only a single pass can run short; it keeps equal counts and then ends.
        let count = images.min(texts.len()).min(captions.len());
        if count == 0 {
            return Ok(None);
        }
        let per_image = 3 * side * side;
        image_pixels.truncate(count * per_image);
        pair_pixels.truncate(count * per_image);
        texts.truncate(count);
        captions.truncate(count);
        let padding = self.config.padding;
        let batch = PretrainBatch {
            step: self.step,
            images: ImageBatch {
                pixels: image_pixels,
                shape: [count, 3, side, side],
            },
            texts: self
                .tokenizer
                .encode_batch(&texts, self.config.max_text_len, padding)?,
            pairs: PairBatch {
                images: ImageBatch {
                    pixels: pair_pixels,
                    shape: [count, 3, side, side],
                },
                text: self.tokenizer.encode_batch(
                    &captions,
                    self.config.max_pair_text_len,
                    padding,
                )?,
                captions,
            },
        };
        self.step += 1;
        Ok(Some(batch))
    }

    fn next_image(&mut self) -> Result<Option<Vec<f32>>, DataError> {
        loop {
            let Some((item, mut rng)) = self.images.next(!self.config.single_pass)? else {
                return Ok(None);
            };
            let (source, bytes) = match item {
                Item::Sample { shard, sample } => (
                    format!("{} (sample `{}`)", shard.display(), sample.key),
                    image_entry(&sample),
                ),
                Item::File(path) => (
                    path.display().to_string(),
                    std::fs::read(&path).map_err(|e| e.to_string()),
                ),
                Item::Line(_) => unreachable!("the image stream holds images"),
            };
            let result = bytes.and_then(|bytes| {
                let image = self.decode(&bytes)?;
                match &self.config.augment {
                    Some(augment) => augment.image(&image, self.preprocessor.config(), &mut rng),
                    None => self.preprocessor.image(&image),
                }
                .map_err(|e| e.to_string())
            });
            if let Some(pixels) = self.count(source, result)? {
                return Ok(Some(pixels));
            }
        }
    }

    fn next_pair(&mut self) -> Result<Option<(Vec<f32>, String)>, DataError> {
        loop {
            let Some((item, mut rng)) = self.pairs.next(!self.config.single_pass)? else {
                return Ok(None);
            };
            let Item::Sample { shard, sample } = item else {
                unreachable!("the pair stream holds shard samples")
            };
            let source = format!("{} (sample `{}`)", shard.display(), sample.key);
            let result = caption(&sample, &mut rng).and_then(|caption| {
                let image = self.decode(&image_entry(&sample)?)?;
                match &self.config.augment {
                    Some(augment) => {
                        augment.pair(&image, &caption, self.preprocessor.config(), &mut rng)
                    }
                    None => self.preprocessor.image(&image).map(|p| (p, caption)),
                }
                .map_err(|e| e.to_string())
            });
            if let Some(pair) = self.count(source, result)? {
                return Ok(Some(pair));
            }
        }
    }

    fn decode(&self, bytes: &[u8]) -> Result<ImageF32, String> {
        self.preprocessor.decode(bytes).map_err(|e| e.to_string())
    }

    /// Counts an image attempt; a failure is reported and skipped, and too many failures end
    /// the run. Checked after every image, so the verdict does not depend on batch size.
    fn count<T>(
        &mut self,
        source: String,
        result: Result<T, String>,
    ) -> Result<Option<T>, DataError> {
        self.counts.seen += 1;
        let value = match result {
            Ok(value) => Some(value),
            Err(reason) => {
                self.counts.bad += 1;
                let bad = BadImage { source, reason };
                (self.config.on_bad_image)(&bad);
                self.last_bad = Some(format!("{}: {}", bad.source, bad.reason));
                None
            }
        };
        let ImageCounts { seen, bad } = self.counts;
        if seen >= self.config.min_images_before_bad_check
            && bad as f64 > self.config.max_bad_fraction * seen as f64
        {
            return Err(DataError::TooManyBadImages {
                bad,
                seen,
                max_fraction: self.config.max_bad_fraction,
                last: self.last_bad.clone().unwrap_or_default(),
            });
        }
        Ok(value)
    }
}

/// The sample's image bytes: its first entry with an image extension.
fn image_entry(sample: &Sample) -> Result<Vec<u8>, String> {
    IMAGE_EXTENSIONS
        .iter()
        .find_map(|ext| sample.files.get(*ext))
        .cloned()
        .ok_or_else(|| "the sample has no png, jpg or webp entry".to_owned())
}

/// One caption, drawn from `json`'s `captions` (the scenes format) or the `txt` entry.
fn caption(sample: &Sample, rng: &mut Rng) -> Result<String, String> {
    if let Some(json) = sample.files.get("json") {
        let value: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| format!("bad json entry: {e}"))?;
        let captions: Vec<&str> = value["captions"]
            .as_array()
            .map(|list| list.iter().filter_map(|c| c.as_str()).collect())
            .unwrap_or_default();
        let captions: Vec<&str> = captions
            .into_iter()
            .filter(|c| !c.trim().is_empty())
            .collect();
        if let Some(caption) = rng.choose(&captions) {
            return Ok((*caption).to_owned());
        }
    }
    if let Some(text) = sample.files.get("txt") {
        let text = String::from_utf8_lossy(text).trim().to_owned();
        if !text.is_empty() {
            return Ok(text);
        }
    }
    Err("the sample has no caption (json `captions` or txt entry)".to_owned())
}
