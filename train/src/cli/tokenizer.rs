//! `vlbeit-train tokenizer`: trains the Unigram text tokenizer (vlbeit-core) on text files or on
//! a scenes data set (its text corpus plus the training split's captions and questions).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use vlbeit_core::scenes::{DatasetManifest, SceneAnnotation};
use vlbeit_core::shards::ShardReader;
use vlbeit_core::text::{TextTokenizer, TrainOptions};

/// Arguments of `vlbeit-train tokenizer`.
#[derive(Debug, clap::Args)]
pub struct TokenizerArgs {
    /// Text files (one sentence per line) or scenes data-set directories.
    #[arg(long = "corpus", required = true, num_args = 1..)]
    pub corpus: Vec<PathBuf>,
    /// Largest vocabulary, special tokens included (a small corpus may yield fewer pieces).
    #[arg(long, default_value_t = 2000)]
    pub vocab_size: usize,
    /// Where to write tokenizer.json.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: &TokenizerArgs) -> anyhow::Result<()> {
    let mut texts = Vec::new();
    for source in &args.corpus {
        collect_texts(source, &mut texts)?;
    }
    if texts.is_empty() {
        bail!("the corpus {:?} holds no text", args.corpus);
    }
    let options = TrainOptions {
        vocab_size: args.vocab_size,
        ..TrainOptions::default()
    };
    let tokenizer = TextTokenizer::train(&texts, &options).context("training the tokenizer")?;
    tokenizer
        .save(&args.out)
        .with_context(|| format!("saving {}", args.out.display()))?;
    println!(
        "trained a Unigram tokenizer on {} texts: {} pieces (asked for at most {}) -> {}",
        texts.len(),
        tokenizer.vocab_size(),
        args.vocab_size,
        args.out.display()
    );
    Ok(())
}

/// Appends the texts of `source`: every line of a text file, or a scenes data set's corpus,
/// captions and questions (training split only, so evaluation text never shapes the vocabulary).
pub fn collect_texts(source: &Path, texts: &mut Vec<String>) -> anyhow::Result<()> {
    if source.is_dir() {
        let manifest = DatasetManifest::load(source)
            .with_context(|| format!("{} is not a scenes data set", source.display()))?;
        read_lines(&source.join(&manifest.corpus_file), texts)?;
        let train = manifest
            .splits
            .get("train")
            .with_context(|| format!("{} has no train split", source.display()))?;
        for shard in &train.shards {
            let path = source.join(shard);
            for sample in ShardReader::open(&path)? {
                let sample = sample?;
                let Some(json) = sample.files.get("json") else {
                    bail!("{}: sample {} has no .json", path.display(), sample.key);
                };
                let annotation: SceneAnnotation = serde_json::from_slice(json)
                    .with_context(|| format!("{}: sample {}", path.display(), sample.key))?;
                texts.extend(annotation.captions);
                texts.extend(annotation.questions.into_iter().map(|q| q.question));
            }
        }
        Ok(())
    } else {
        read_lines(source, texts)
    }
}

fn read_lines(path: &Path, texts: &mut Vec<String>) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    texts.extend(
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned),
    );
    Ok(())
}
