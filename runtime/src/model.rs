//! [`Model`]: a loaded bundle with its three graphs, tokenizer and preprocessing, and the tasks
//! built on them (embed, match, answer, classify; retrieval is in `retrieval.rs`).

use std::path::Path;
use std::sync::mpsc;

use ort::value::{DynValue, Tensor};
use vlbeit_core::manifest::{FUSION_ENCODER, IMAGE_ENCODER, Manifest, TEXT_ENCODER};
use vlbeit_core::preprocess::{Preprocessor, Rgb8Image};
use vlbeit_core::text::{Padding, TextError, TextTokenizer};

use crate::bundle::{Bundle, BundleFiles, HashCheck};
use crate::environment::Runtime;
use crate::error::{Error, Result};
use crate::graph::{Graph, OutputTensor, Outputs, SessionConfig};
use crate::provider::{ExecutionProvider, ProviderReport, ShapeProfile};

/// How a bundle is loaded and served.
#[derive(Debug, Clone)]
pub struct ModelOptions {
    pub provider: ExecutionProvider,
    /// `None` (default): strict for GPU providers — a provider that cannot be registered fails
    /// the load instead of falling back to CPU.
    pub strict: Option<bool>,
    /// Sessions per graph, i.e. how many calls run a graph at once (default 1). Each session
    /// holds its own activations; weights are prepacked once per graph.
    pub pool_size: usize,
    /// Largest batch sent to a graph; longer requests are split (default 32).
    pub max_batch: usize,
    pub hash_check: HashCheck,
}

impl Default for ModelOptions {
    fn default() -> Self {
        Self {
            provider: ExecutionProvider::default(),
            strict: None,
            pool_size: 1,
            max_batch: 32,
            hash_check: HashCheck::All,
        }
    }
}

impl ModelOptions {
    pub fn with_provider(mut self, provider: ExecutionProvider) -> Self {
        self.provider = provider;
        self
    }

    pub fn with_strict(mut self, strict: bool) -> Self {
        self.strict = Some(strict);
        self
    }

    pub fn with_pool_size(mut self, pool_size: usize) -> Self {
        self.pool_size = pool_size;
        self
    }

    pub fn with_max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch;
        self
    }

    pub fn with_hash_check(mut self, check: HashCheck) -> Self {
        self.hash_check = check;
        self
    }

    fn strict(&self) -> bool {
        self.strict.unwrap_or(self.provider.is_gpu())
    }
}

/// One image of a request.
#[derive(Debug, Clone, Copy)]
pub enum ImageSource<'a> {
    /// A JPEG, PNG or WebP file.
    Path(&'a Path),
    /// Encoded JPEG, PNG or WebP bytes.
    Encoded(&'a [u8]),
    /// Raw RGB8 pixels (rows may be padded: see [`Rgb8Image::new`]).
    Rgb8(Rgb8Image<'a>),
}

/// Row-major `[n, dim]` vectors, one per input, in input order.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub dim: usize,
    pub data: Vec<f32>,
}

impl Embeddings {
    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Vector `i` (panics past the end, as slice indexing does).
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    pub fn rows(&self) -> impl Iterator<Item = &[f32]> {
        self.data.chunks_exact(self.dim.max(1))
    }
}

/// A label with its probability (answers, classes).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Scored {
    /// Index in the head's label list.
    pub index: usize,
    pub label: String,
    /// VQA: sigmoid of the logit (the head is trained with BCE on soft scores); classification:
    /// softmax probability.
    pub score: f32,
}

/// A loaded bundle, ready to serve. `Send + Sync`: share it (`Arc<Model>`) across threads; each
/// graph runs up to `pool_size` requests at once.
///
/// ```no_run
/// use vlbeit::{ImageSource, Model, ModelOptions, Runtime, RuntimeOptions};
/// let runtime = Runtime::new(RuntimeOptions::default())?;
/// let model = Model::load(&runtime, "data/bundle".as_ref(), ModelOptions::default())?;
/// let texts = model.embed_texts(&["a red circle", "two blue squares"])?;
/// let images = model.embed_images(&[ImageSource::Path("scene.png".as_ref())])?;
/// let p = model.match_score(ImageSource::Path("scene.png".as_ref()), "a red circle")?;
/// println!("dim {}, ITM probability {p:.3}", texts.dim);
/// # Ok::<(), vlbeit::Error>(())
/// ```
#[derive(Debug)]
pub struct Model {
    runtime: Runtime,
    bundle: Bundle,
    tokenizer: TextTokenizer,
    preprocessor: Preprocessor,
    image: Graph,
    text: Graph,
    fusion: Graph,
    options: ModelOptions,
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Model>();
};

impl Model {
    /// Opens and verifies the bundle directory `dir` (hashes, signatures, tokenizer) and creates
    /// the graphs' first sessions on the configured provider.
    pub fn load(runtime: &Runtime, dir: &Path, options: ModelOptions) -> Result<Self> {
        let bundle = Bundle::open_with(dir, options.hash_check)?;
        Self::from_bundle(runtime, bundle, options)
    }

    /// [`Model::load`] from files in memory (see [`Bundle::read_dir_into_memory`]).
    pub fn load_from_memory(
        runtime: &Runtime,
        files: BundleFiles,
        options: ModelOptions,
    ) -> Result<Self> {
        Self::from_bundle(runtime, Bundle::from_memory(files)?, options)
    }

    /// A model over an opened bundle.
    pub fn from_bundle(runtime: &Runtime, bundle: Bundle, options: ModelOptions) -> Result<Self> {
        if options.max_batch == 0 {
            return Err(Error::Request("max_batch must be at least 1".into()));
        }
        let manifest = bundle.manifest();
        let tokenizer_bytes = bundle.read("tokenizer.json")?;
        let tokenizer_error = |source| Error::Tokenizer {
            bundle: bundle.origin().to_owned(),
            source,
        };
        let tokenizer = TextTokenizer::from_bytes(&tokenizer_bytes).map_err(tokenizer_error)?;
        tokenizer
            .check_settings(&manifest.tokenizer)
            .map_err(tokenizer_error)?;
        tokenizer
            .check_vocab_size(manifest.model.vocab_size)
            .map_err(tokenizer_error)?;
        let preprocessor =
            Preprocessor::new(manifest.preprocess.clone()).map_err(|e| Error::Manifest {
                bundle: bundle.origin().to_owned(),
                source: vlbeit_core::manifest::ManifestError::Invalid {
                    field: "preprocess".into(),
                    reason: e.to_string(),
                },
            })?;
        let config = SessionConfig {
            provider: options.provider.clone(),
            strict: options.strict(),
            pool_size: options.pool_size,
            bundle_sha256: bundle.sha256().to_owned(),
            precision: manifest.precision.clone(),
            image_size: manifest.preprocess.image_size as usize,
            profile: ShapeProfile::derived(
                options.max_batch,
                manifest.tokenizer.max_len,
                manifest.pair_max_len,
            ),
        };
        let load = |file: &str| {
            Graph::load(
                runtime,
                file,
                bundle.graph_source(file)?,
                config.clone(),
                Some((bundle.origin(), &manifest.graphs[file])),
            )
        };
        let image = load(IMAGE_ENCODER)?;
        let text = load(TEXT_ENCODER)?;
        let fusion = load(FUSION_ENCODER)?;
        let model = Self {
            runtime: runtime.clone(),
            tokenizer,
            preprocessor,
            image,
            text,
            fusion,
            options,
            bundle,
        };
        model.check_heads()?;
        Ok(model)
    }

    /// Head outputs and label lists must agree: a `vqa_logits` output needs `heads.answers` of
    /// its width, `class_logits` needs `heads.classes`.
    fn check_heads(&self) -> Result<()> {
        let manifest = self.manifest();
        for (graph, output, labels, what) in [
            (
                FUSION_ENCODER,
                "vqa_logits",
                &manifest.heads.answers,
                "heads.answers",
            ),
            (
                IMAGE_ENCODER,
                "class_logits",
                &manifest.heads.classes,
                "heads.classes",
            ),
        ] {
            let spec = manifest.graphs[graph].output(output);
            let width = spec.and_then(|s| match s.shape.last() {
                Some(vlbeit_core::manifest::DimSpec::Fixed(n)) => Some(*n as usize),
                _ => None,
            });
            let problem = match (spec, labels) {
                (None, None) => None,
                (Some(_), None) => Some(format!("{output} exists but the manifest has no {what}")),
                (None, Some(_)) => Some(format!("{what} is set but the graph has no {output}")),
                (Some(_), Some(labels)) if width != Some(labels.len()) => Some(format!(
                    "{output} has width {width:?} but {what} lists {} labels",
                    labels.len()
                )),
                _ => None,
            };
            if let Some(problem) = problem {
                return Err(Error::Signature {
                    bundle: self.bundle.origin().to_owned(),
                    graph: graph.to_owned(),
                    problem,
                });
            }
        }
        Ok(())
    }

    pub fn manifest(&self) -> &Manifest {
        self.bundle.manifest()
    }

    /// The ONNX Runtime this model runs on.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    pub fn options(&self) -> &ModelOptions {
        &self.options
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    pub fn preprocessor(&self) -> &Preprocessor {
        &self.preprocessor
    }

    /// Length of image and text embeddings.
    pub fn embed_dim(&self) -> usize {
        self.manifest().model.embed_dim
    }

    /// Which providers each graph was given (image, text, fusion).
    pub fn provider_reports(&self) -> [&ProviderReport; 3] {
        [
            self.image.report(),
            self.text.report(),
            self.fusion.report(),
        ]
    }

    pub(crate) fn graphs(&self) -> [&Graph; 3] {
        [&self.image, &self.text, &self.fusion]
    }

    /// L2-normalized image embeddings (the dual encoder's image side), one row per image.
    ///
    /// A corrupt or unreadable image fails the request with its position; nothing is dropped.
    /// Requests longer than `max_batch` are split, and the next batch is preprocessed while the
    /// current one runs.
    pub fn embed_images(&self, images: &[ImageSource<'_>]) -> Result<Embeddings> {
        let dim = self.embed_dim();
        let mut data = Vec::with_capacity(images.len() * dim);
        self.for_image_batches(images, |_, outputs| {
            data.extend_from_slice(&take(&self.image, outputs, "image_embeds")?.data);
            Ok(())
        })?;
        Ok(Embeddings { dim, data })
    }

    /// L2-normalized text embeddings (the dual encoder's text side). Texts longer than the
    /// text encoder's `max_len` tokens (`[T_CLS]`, `[T_SEP]` included) are truncated; an empty
    /// text is an error naming its position.
    pub fn embed_texts<S: AsRef<str>>(&self, texts: &[S]) -> Result<Embeddings> {
        let dim = self.embed_dim();
        let max_len = self.manifest().tokenizer.max_len;
        let mut data = Vec::with_capacity(texts.len() * dim);
        for (start, chunk) in chunks(texts, self.options.max_batch) {
            let batch = self.encode_texts(chunk, start, max_len)?;
            let outputs = self.text.run(vec![
                ("input_ids", i64_tensor(&batch.0, batch.1, batch.2)?),
                ("attention_mask", i64_tensor(&batch.3, batch.1, batch.2)?),
            ])?;
            data.extend_from_slice(&take(&self.text, outputs, "text_embeds")?.data);
        }
        Ok(Embeddings { dim, data })
    }

    /// Image–text matching probability (ITM head, softmax index 1) of each pair.
    pub fn match_scores<S: AsRef<str> + Sync>(
        &self,
        pairs: &[(ImageSource<'_>, S)],
    ) -> Result<Vec<f32>> {
        let mut scores = Vec::with_capacity(pairs.len());
        self.fuse(pairs, |outputs| {
            let logits = take(&self.fusion, outputs, "itm_logits")?;
            scores.extend(logits.data.chunks_exact(2).map(|l| softmax(l)[1]));
            Ok(())
        })?;
        Ok(scores)
    }

    /// [`Model::match_scores`] of one pair.
    pub fn match_score(&self, image: ImageSource<'_>, text: &str) -> Result<f32> {
        Ok(self.match_scores(&[(image, text)])?[0])
    }

    /// The `top_k` most likely answers to `question` about `image` (VQA head).
    pub fn answer(
        &self,
        image: ImageSource<'_>,
        question: &str,
        top_k: usize,
    ) -> Result<Vec<Scored>> {
        Ok(self
            .answer_batch(&[(image, question)], top_k)?
            .pop()
            .unwrap_or_default())
    }

    /// [`Model::answer`] for several (image, question) pairs.
    pub fn answer_batch<S: AsRef<str> + Sync>(
        &self,
        pairs: &[(ImageSource<'_>, S)],
        top_k: usize,
    ) -> Result<Vec<Vec<Scored>>> {
        let answers = self
            .manifest()
            .heads
            .answers
            .as_ref()
            .ok_or(Error::MissingHead {
                head: "vqa",
                hint: "fine-tune with `vlbeit-train finetune --task vqa` and export again".into(),
            })?;
        check_top_k(top_k)?;
        let mut result = Vec::with_capacity(pairs.len());
        self.fuse(pairs, |outputs| {
            let logits = take(&self.fusion, outputs, "vqa_logits")?;
            for row in logits.data.chunks_exact(answers.len()) {
                let probs: Vec<f32> = row.iter().map(|&x| sigmoid(x)).collect();
                result.push(top(&probs, answers, top_k));
            }
            Ok(())
        })?;
        Ok(result)
    }

    /// The `top_k` most likely classes of `image` (classification head).
    pub fn classify(&self, image: ImageSource<'_>, top_k: usize) -> Result<Vec<Scored>> {
        Ok(self
            .classify_batch(&[image], top_k)?
            .pop()
            .unwrap_or_default())
    }

    /// [`Model::classify`] for several images.
    pub fn classify_batch(
        &self,
        images: &[ImageSource<'_>],
        top_k: usize,
    ) -> Result<Vec<Vec<Scored>>> {
        let classes = self
            .manifest()
            .heads
            .classes
            .as_ref()
            .ok_or(Error::MissingHead {
                head: "classify",
                hint: "fine-tune with `vlbeit-train finetune --task classify` and export again"
                    .into(),
            })?;
        check_top_k(top_k)?;
        let mut result = Vec::with_capacity(images.len());
        self.for_image_batches(images, |_, outputs| {
            let logits = take(&self.image, outputs, "class_logits")?;
            for row in logits.data.chunks_exact(classes.len()) {
                result.push(top(&softmax(row), classes, top_k));
            }
            Ok(())
        })?;
        Ok(result)
    }

    /// Runs the image encoder over `images` in batches of `max_batch`, preprocessing batch
    /// `n + 1` on a second thread while batch `n` runs.
    fn for_image_batches(
        &self,
        images: &[ImageSource<'_>],
        mut consume: impl FnMut(usize, Outputs) -> Result<()>,
    ) -> Result<()> {
        self.pipelined(
            images,
            |start, chunk| self.pixels(chunk, start),
            |start, (pixels, n)| {
                let outputs = self
                    .image
                    .run(vec![("pixel_values", self.pixel_tensor(pixels, n)?)])?;
                consume(start, outputs)
            },
        )
    }

    /// Runs the fusion encoder over (image, text) pairs in batches.
    fn fuse<S: AsRef<str> + Sync>(
        &self,
        pairs: &[(ImageSource<'_>, S)],
        mut consume: impl FnMut(Outputs) -> Result<()>,
    ) -> Result<()> {
        let max_len = self.manifest().pair_max_len;
        self.pipelined(
            pairs,
            |start, chunk| {
                let images: Vec<ImageSource<'_>> = chunk.iter().map(|(i, _)| *i).collect();
                let texts: Vec<&str> = chunk.iter().map(|(_, t)| t.as_ref()).collect();
                Ok((
                    self.pixels(&images, start)?,
                    self.encode_texts(&texts, start, max_len)?,
                ))
            },
            |_, ((pixels, n), (ids, b, seq, mask))| {
                let outputs = self.fusion.run(vec![
                    ("input_ids", i64_tensor(&ids, b, seq)?),
                    ("attention_mask", i64_tensor(&mask, b, seq)?),
                    ("pixel_values", self.pixel_tensor(pixels, n)?),
                ])?;
                consume(outputs)
            },
        )
    }

    /// Splits `items` into batches; `prepare` runs one batch ahead of `run` on a scoped thread
    /// when there is more than one batch. The first error (in request order) is returned.
    fn pipelined<T: Sync, P: Send>(
        &self,
        items: &[T],
        prepare: impl Fn(usize, &[T]) -> Result<P> + Sync,
        mut run: impl FnMut(usize, P) -> Result<()>,
    ) -> Result<()> {
        if items.is_empty() {
            return Err(Error::Request("the request has no inputs".into()));
        }
        let batches: Vec<(usize, &[T])> = chunks(items, self.options.max_batch).collect();
        if batches.len() == 1 {
            return run(0, prepare(0, items)?);
        }
        std::thread::scope(|scope| {
            // Capacity 1: at most one prepared batch waits, bounding memory.
            let (tx, rx) = mpsc::sync_channel::<(usize, Result<P>)>(1);
            let prepare = &prepare;
            let batches = &batches;
            scope.spawn(move || {
                for &(start, chunk) in batches {
                    let prepared = prepare(start, chunk);
                    let failed = prepared.is_err();
                    if tx.send((start, prepared)).is_err() || failed {
                        break;
                    }
                }
            });
            for (start, prepared) in rx {
                run(start, prepared?)?;
            }
            Ok(())
        })
    }

    /// Preprocessed pixels of `images` (request positions from `start`).
    fn pixels(&self, images: &[ImageSource<'_>], start: usize) -> Result<(Vec<f32>, usize)> {
        let per_image = self.preprocessor.pixel_values_len();
        let mut data = Vec::with_capacity(images.len() * per_image);
        for (offset, image) in images.iter().enumerate() {
            let index = start + offset;
            let image_error = |source| Error::Image { index, source };
            let values = match image {
                ImageSource::Path(path) => {
                    let bytes = std::fs::read(path).map_err(|source| Error::ImageFile {
                        index,
                        path: path.to_path_buf(),
                        source,
                    })?;
                    self.preprocessor
                        .encoded(&bytes)
                        .map_err(|e| image_error(e.with_input(path.display().to_string())))?
                }
                ImageSource::Encoded(bytes) => {
                    self.preprocessor.encoded(bytes).map_err(image_error)?
                }
                ImageSource::Rgb8(rgb) => self.preprocessor.rgb8(rgb).map_err(image_error)?,
            };
            data.extend_from_slice(&values);
        }
        Ok((data, images.len()))
    }

    fn pixel_tensor(&self, pixels: Vec<f32>, n: usize) -> Result<DynValue> {
        let side = self.manifest().preprocess.image_size as usize;
        Tensor::from_array(([n, 3, side, side], pixels))
            .map(|t| t.into_dyn())
            .map_err(|e| Error::Request(format!("pixel_values tensor: {e}")))
    }

    /// `(input_ids, batch, seq_len, attention_mask)`, padded to the longest text of the batch.
    pub(crate) fn encode_texts<S: AsRef<str>>(
        &self,
        texts: &[S],
        start: usize,
        max_len: usize,
    ) -> Result<(Vec<i64>, usize, usize, Vec<i64>)> {
        let batch = self
            .tokenizer
            .encode_batch(texts, max_len, Padding::Longest)
            .map_err(|source| match source {
                TextError::EmptyText { index } => Error::Text {
                    index: start + index,
                    source: TextError::EmptyText {
                        index: start + index,
                    },
                },
                other => Error::Text {
                    index: start,
                    source: other,
                },
            })?;
        Ok((
            batch.input_ids,
            batch.batch,
            batch.seq_len,
            batch.attention_mask,
        ))
    }
}

pub(crate) fn chunks<T>(items: &[T], size: usize) -> impl Iterator<Item = (usize, &[T])> {
    items
        .chunks(size.max(1))
        .enumerate()
        .map(move |(i, chunk)| (i * size.max(1), chunk))
}

pub(crate) fn i64_tensor(data: &[i64], batch: usize, seq: usize) -> Result<DynValue> {
    Tensor::from_array(([batch, seq], data.to_vec()))
        .map(|t| t.into_dyn())
        .map_err(|e| Error::Request(format!("input_ids tensor: {e}")))
}

pub(crate) fn take(graph: &Graph, mut outputs: Outputs, name: &str) -> Result<OutputTensor> {
    outputs.remove(name).ok_or_else(|| Error::Ort {
        graph: graph.name().to_owned(),
        reason: format!("the graph produced no output {name}"),
    })
}

fn check_top_k(top_k: usize) -> Result<()> {
    if top_k == 0 {
        return Err(Error::Request("top_k must be at least 1".into()));
    }
    Ok(())
}

pub(crate) fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f64> = logits.iter().map(|&x| f64::from(x - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|&e| (e / sum) as f32).collect()
}

fn sigmoid(x: f32) -> f32 {
    (1.0 / (1.0 + f64::from(-x).exp())) as f32
}

/// The `k` highest scores, descending; ties keep label order (the index's selection).
fn top(scores: &[f32], labels: &[String], k: usize) -> Vec<Scored> {
    crate::index::top_k(scores, k)
        .into_iter()
        .map(|n| Scored {
            index: n.entry,
            label: labels[n.entry].clone(),
            score: n.score,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_report_their_request_offsets() {
        let items: Vec<u32> = (0..7).collect();
        let got: Vec<(usize, usize)> = chunks(&items, 3).map(|(s, c)| (s, c.len())).collect();
        assert_eq!(got, vec![(0, 3), (3, 3), (6, 1)]);
    }

    #[test]
    fn top_sorts_descending_and_breaks_ties_by_label_order() {
        let labels: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        let got = top(&[0.1, 0.7, 0.7, 0.2], &labels, 3);
        let order: Vec<&str> = got.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(order, vec!["b", "c", "d"]);
    }

    #[test]
    fn softmax_is_stable_for_large_logits() {
        // exp(1000) overflows f32 and f64; subtracting the maximum first keeps it finite.
        let p = softmax(&[1000.0, 1001.0]);
        let want = 1.0 / (1.0 + (-1f64).exp());
        assert!((f64::from(p[1]) - want).abs() < 1e-6, "{p:?}");
        assert!((f64::from(p[0]) - (1.0 - want)).abs() < 1e-6, "{p:?}");
    }
}
