//! `vlbeit-train scenes`: writes the synthetic scenes data set (vlbeit-core) to a directory.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use vlbeit_core::scenes::{
    DatasetSpec, SceneConfig, SceneGenerator, SplitCounts, TaskFormat, write_dataset,
    write_task_format,
};

/// Arguments of `vlbeit-train scenes`.
#[derive(Debug, clap::Args)]
pub struct ScenesArgs {
    /// Output directory (replaced if it holds an earlier data set; any other content is refused).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Image side in pixels (64 for the tiny model, up to 224).
    #[arg(long, default_value_t = 64)]
    pub image_size: u32,
    /// Scenes in the training split.
    #[arg(long, default_value_t = 4000)]
    pub train: u64,
    /// Scenes in each of the val, test and compositional splits.
    #[arg(long, default_value_t = 500)]
    pub eval: u64,
    /// Text-only corpus sentences (MLM).
    #[arg(long, default_value_t = 20_000)]
    pub corpus: u64,
    /// Samples per shard.
    #[arg(long, default_value_t = 1000)]
    pub shard_size: u64,
    /// Also write the same scenes in public formats, to `OUT/formats/<format>/`: comma-separated
    /// karpathy, vqav2, nlvr2, imagefolder, ade20k (docs/finetuning.md).
    #[arg(long, value_delimiter = ',')]
    pub formats: Vec<TaskFormat>,
}

pub fn run(args: &ScenesArgs) -> anyhow::Result<()> {
    let counts = SplitCounts {
        train: args.train,
        val: args.eval,
        test: args.eval,
        compositional: args.eval,
    };
    let spec = DatasetSpec {
        image_size: args.image_size,
        seed: args.seed,
        scenes: counts,
        nlvr2: counts,
        corpus_sentences: args.corpus,
        shard_size: args.shard_size,
    };
    let start = Instant::now();
    let manifest = write_dataset(&args.out, &spec)
        .with_context(|| format!("writing the scenes data set to {}", args.out.display()))?;
    let elapsed = start.elapsed().as_secs_f64();
    let total: u64 = manifest.splits.values().map(|s| s.scenes).sum();
    println!(
        "wrote {} scenes ({}) and {} corpus sentences to {} in {:.1} s ({:.0} scenes/s)",
        total,
        manifest
            .splits
            .iter()
            .map(|(name, s)| format!("{name} {}", s.scenes))
            .collect::<Vec<_>>()
            .join(", "),
        manifest.corpus_sentences,
        args.out.display(),
        elapsed,
        total as f64 / elapsed.max(1e-9),
    );
    let generator = SceneGenerator::new(SceneConfig {
        image_size: args.image_size,
        seed: args.seed,
    })?;
    for format in &args.formats {
        let dir = args.out.join("formats").join(format.name());
        write_task_format(&dir, *format, &generator, &counts).with_context(|| {
            format!("writing the {} format to {}", format.name(), dir.display())
        })?;
        println!("wrote the scenes as {} -> {}", format.name(), dir.display());
    }
    Ok(())
}
