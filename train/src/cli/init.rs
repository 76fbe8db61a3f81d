//! `vlbeit-train init`: a randomly initialized checkpoint (the model's seeded BEiT
//! initialization, no training step) in the layout pretraining writes — `config.json`,
//! `model.safetensors`, `tokenizer.json` and `golden/` — so that sizes this machine does not
//! pretrain (base) can be exported, verified and measured.
//!
//! The vocabulary follows the tokenizer, as in `pretrain`: a preset's `vocab_size` (64 000 for
//! base) is replaced by the tokenizer's, because a checkpoint ships the tokenizer it was made
//! with and word-embedding rows no token id reaches would only inflate the graphs. A config
//! file must already agree with the tokenizer. For base-size figures with the base vocabulary,
//! pass a tokenizer of 64 000 pieces.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tch::{Device, nn};
use vlbeit_core::config::{ModelConfig, PreprocessConfig};
use vlbeit_core::preprocess::Preprocessor;
use vlbeit_core::scenes::{SceneConfig, SceneGenerator, Split};
use vlbeit_core::text::{Padding, TextTokenizer};

use crate::checkpoint::{
    CHECKPOINT_FORMAT_VERSION, CheckpointConfig, HeadsConfig, TrainingSummary,
    write_dir_atomically, write_json,
};
use crate::golden::{GoldenSet, write_golden};
use crate::model::{VlBeit, save_weights};

/// Arguments of `vlbeit-train init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Model: a preset (`tiny`, `base`; vocab_size is taken from the tokenizer) or a config.json
    /// (its vocab_size must equal the tokenizer's).
    #[arg(long, default_value = "tiny")]
    pub config: String,
    /// The text tokenizer (`vlbeit-train tokenizer`), copied into the checkpoint.
    #[arg(long, default_value = "data/tokenizer.json")]
    pub tokenizer: PathBuf,
    /// Checkpoint directory to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Seed of the weights (and of the golden scenes).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Replace an existing non-empty directory.
    #[arg(long)]
    pub force: bool,
}

/// What [`init`] wrote.
#[derive(Debug, Clone)]
pub struct InitOutcome {
    pub config: ModelConfig,
    pub parameters: i64,
    /// The preset's vocabulary size when the tokenizer's replaced it.
    pub preset_vocab_size: Option<usize>,
}

pub fn run(args: &InitArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let outcome = init(args)?;
    if let Some(preset) = outcome.preset_vocab_size {
        println!(
            "note: vocab_size {} from {} (the `{}` preset has {preset})",
            outcome.config.vocab_size,
            args.tokenizer.display(),
            args.config
        );
    }
    println!(
        "initialized {} parameters (seed {}) in {:.1} s -> {}",
        outcome.parameters,
        args.seed,
        started.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(())
}

/// Writes the checkpoint of `args` (atomically: nothing at `args.out` changes on error).
pub fn init(args: &InitArgs) -> anyhow::Result<InitOutcome> {
    let tokenizer = TextTokenizer::load(&args.tokenizer)
        .with_context(|| format!("loading {}", args.tokenizer.display()))?;
    let (config, preset_vocab_size) = model_config(&args.config, &tokenizer, &args.tokenizer)?;
    if !args.force && std::fs::read_dir(&args.out).is_ok_and(|mut d| d.next().is_some()) {
        bail!(
            "{}: exists and is not empty (pass --force to replace it)",
            args.out.display()
        );
    }
    tch::manual_seed(args.seed as i64);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = VlBeit::new(&vs.root(), &config);
    let parameters = vs.variables().values().map(|t| t.numel() as i64).sum();
    let preprocess = PreprocessConfig::for_image_size(config.image_size as u32);
    let preprocessor = Preprocessor::new(preprocess.clone()).map_err(anyhow::Error::msg)?;
    let golden = golden_scenes(&config, args.seed)?;
    write_dir_atomically::<anyhow::Error>(&args.out, |tmp| {
        let checkpoint = CheckpointConfig {
            format_version: CHECKPOINT_FORMAT_VERSION,
            model: config.clone(),
            preprocess: preprocess.clone(),
            tokenizer: tokenizer.settings(config.max_text_len, Padding::Longest),
            pair_max_len: config.max_pair_text_len,
            heads: HeadsConfig::default(),
            training: TrainingSummary {
                stage: "init".into(),
                seed: args.seed,
                ..TrainingSummary::default()
            },
        };
        write_json(&tmp.join("config.json"), &checkpoint)?;
        save_weights(&vs, &tmp.join("model.safetensors"))?;
        tokenizer.save(&tmp.join("tokenizer.json"))?;
        let set = GoldenSet {
            images: golden.images.clone(),
            texts: golden.texts.clone(),
            pairs: golden.pairs.clone(),
            tokenizer: &tokenizer,
            preprocessor: &preprocessor,
        };
        write_golden(&tmp.join("golden"), &model, Device::Cpu, &set)?;
        Ok(())
    })
    .with_context(|| format!("writing {}", args.out.display()))?;
    Ok(InitOutcome {
        config,
        parameters,
        preset_vocab_size,
    })
}

/// The preset or config file `spec` with the tokenizer's vocabulary (see the module docs);
/// also returns the preset's own vocab_size when it was replaced.
fn model_config(
    spec: &str,
    tokenizer: &TextTokenizer,
    tokenizer_path: &Path,
) -> anyhow::Result<(ModelConfig, Option<usize>)> {
    let vocab = tokenizer.vocab_size();
    if let Ok(mut config) = ModelConfig::preset(spec) {
        let preset = config.vocab_size;
        config.vocab_size = vocab;
        config.validate().map_err(anyhow::Error::msg)?;
        return Ok((config, (preset != vocab).then_some(preset)));
    }
    let config = ModelConfig::load(Path::new(spec))
        .with_context(|| format!("`{spec}` is neither a preset (tiny, base) nor a config file"))?;
    if config.vocab_size != vocab {
        bail!(
            "{spec}: vocab_size is {} but {} has {vocab} pieces; the checkpoint's embeddings \
             must match its tokenizer (use a preset, whose vocab_size follows the tokenizer, or \
             fix the config)",
            config.vocab_size,
            tokenizer_path.display()
        );
    }
    Ok((config, None))
}

/// Golden inputs: three validation scenes at the model's image size (PNG), a caption and a
/// question of each, every image with its caption and one mismatched pair — what pretraining
/// records, generated here instead of read from a data set.
struct GoldenScenes {
    images: Vec<(String, Vec<u8>)>,
    texts: Vec<String>,
    pairs: Vec<(usize, usize)>,
}

fn golden_scenes(config: &ModelConfig, seed: u64) -> anyhow::Result<GoldenScenes> {
    let generator = SceneGenerator::new(SceneConfig {
        image_size: config.image_size as u32,
        seed,
    })?;
    let (mut images, mut texts, mut captions) = (Vec::new(), Vec::new(), Vec::new());
    for index in 0..3 {
        let scene = generator.generate(Split::Val, index);
        images.push((format!("image_{index}.png"), scene.png.clone()));
        captions.push(texts.len());
        texts.push(scene.captions[0].clone());
        if let Some(q) = scene.questions.first() {
            texts.push(q.question.clone());
        }
    }
    let mut pairs: Vec<(usize, usize)> = captions.iter().copied().enumerate().collect();
    pairs.push((0, captions[1]));
    Ok(GoldenScenes {
        images,
        texts,
        pairs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::read_safetensors;
    use vlbeit_core::text::TrainOptions;

    fn tokenizer(dir: &Path) -> PathBuf {
        let generator = SceneGenerator::new(SceneConfig::default()).unwrap();
        let texts: Vec<String> = (0..300).map(|i| generator.corpus_sentence(i)).collect();
        let options = TrainOptions::default().with_vocab_size(300);
        let path = dir.join("tokenizer.json");
        TextTokenizer::train(&texts, &options)
            .unwrap()
            .save(&path)
            .unwrap();
        path
    }

    #[test]
    fn init_writes_a_checkpoint_the_trainer_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let args = InitArgs {
            config: "tiny".into(),
            tokenizer: tokenizer(dir.path()),
            out: dir.path().join("ckpt"),
            seed: 3,
            force: false,
        };
        let outcome = init(&args).unwrap();
        let vocab = TextTokenizer::load(&args.tokenizer).unwrap().vocab_size();
        assert_eq!(outcome.config.vocab_size, vocab);
        assert_eq!(
            outcome.preset_vocab_size,
            Some(ModelConfig::tiny().vocab_size)
        );
        let config = CheckpointConfig::load(&args.out).unwrap();
        assert_eq!(config.model, outcome.config);
        assert_eq!(config.training.stage, "init");
        // The weights load strictly into a fresh model of the config.
        let mut vs = nn::VarStore::new(Device::Cpu);
        let _model = VlBeit::new(&vs.root(), &config.model);
        crate::model::load_weights(&mut vs, &args.out.join("model.safetensors"), &config.model)
            .unwrap();
        let (golden, _) = read_safetensors(&args.out.join("golden/outputs.safetensors")).unwrap();
        assert_eq!(golden["image_states"].size()[0], 3);
        assert_eq!(golden["itm_logits"].size(), [4, 2]);
        assert!(args.out.join("golden/image_2.png").exists());

        // An existing checkpoint is kept without --force. (Same seed, same weights is tested in
        // train/tests/init_cli.rs, one process per run: libtorch's generator is process-wide and
        // the other unit tests of this binary draw from it in parallel.)
        let err = init(&args).unwrap_err().to_string();
        assert!(err.contains("--force"), "{err}");
    }

    #[test]
    fn a_config_file_must_match_the_tokenizer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.json");
        std::fs::write(&path, serde_json::to_string(&ModelConfig::tiny()).unwrap()).unwrap();
        let args = InitArgs {
            config: path.display().to_string(),
            tokenizer: tokenizer(dir.path()),
            out: dir.path().join("ckpt"),
            seed: 0,
            force: false,
        };
        let err = format!("{:#}", init(&args).unwrap_err());
        assert!(
            err.contains("vocab_size is 2000") && err.contains("pieces"),
            "{err}"
        );
        assert!(!args.out.exists());
    }
}
