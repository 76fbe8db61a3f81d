//! `vlbeit`: the command-line front of the runtime.

mod cli;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "vlbeit", version, about = "Run exported VL-BEiT bundles")]
struct Cli {
    /// ONNX Runtime library to load (default: ORT_DYLIB_PATH, the venv's wheel, the system loader).
    #[arg(long, global = true)]
    ort_library: Option<PathBuf>,
    /// Machine-readable output (JSON on stdout).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

/// How a bundle is loaded.
#[derive(Args, Clone)]
pub struct ModelArgs {
    /// The bundle directory (written by vlbeit-export).
    #[arg(long, short)]
    bundle: PathBuf,
    /// Execution provider: cpu, cuda[:N], tensorrt[:N].
    #[arg(long, default_value = "cpu")]
    provider: String,
    /// Fall back to CPU when the GPU provider cannot be registered (default for GPU: fail).
    #[arg(long)]
    no_strict: bool,
    /// CPU intra-op threads per session (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// TensorRT: build fp16 engines.
    #[arg(long)]
    trt_fp16: bool,
    /// TensorRT: engine and timing cache directory.
    #[arg(long)]
    trt_cache: Option<PathBuf>,
    /// Largest batch sent to a graph.
    #[arg(long, default_value_t = 32)]
    max_batch: usize,
}

#[derive(Subcommand)]
enum Command {
    /// Which ONNX Runtime is loaded, from where, its execution providers, and the GPU stack.
    Doctor,
    /// What a bundle holds: model, graphs and their signatures, heads, parity report.
    Info {
        /// The bundle directory.
        bundle: PathBuf,
    },
    /// Replay the bundle's golden/ from its raw images and texts on the chosen provider and
    /// compare with the trainer's outputs (exit status 1 when out of tolerance).
    Verify(ModelArgs),
    /// Print embeddings of images or texts.
    Embed {
        #[command(flatten)]
        model: ModelArgs,
        /// Image files.
        #[arg(long = "image")]
        images: Vec<PathBuf>,
        /// Texts.
        #[arg(long = "text")]
        texts: Vec<String>,
    },
    /// Build an index file from a folder of images, WebDataset shards, or a text file.
    Index {
        #[command(flatten)]
        model: ModelArgs,
        /// A folder of images (.png, .jpg, .jpeg, .webp) or a WebDataset shard (.tar); repeatable.
        #[arg(long = "images")]
        images: Vec<PathBuf>,
        /// A file of texts, one per line (an index for image → text search).
        #[arg(long)]
        texts: Option<PathBuf>,
        /// The index file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Search an index with a text (→ images) or an image (→ texts), with fusion rerank.
    Search {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        index: PathBuf,
        #[arg(long)]
        text: Option<String>,
        #[arg(long)]
        image: Option<PathBuf>,
        #[arg(long, default_value_t = 5)]
        top_k: usize,
        /// Rerank the best K of the dual encoder with the fusion encoder (0: off).
        #[arg(long, default_value_t = 0)]
        rerank: usize,
    },
    /// Answer a question about an image (VQA head).
    Answer {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        image: PathBuf,
        #[arg(long)]
        question: String,
        #[arg(long, default_value_t = 5)]
        top_k: usize,
    },
    /// Classify an image (classification head).
    Classify {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        image: PathBuf,
        #[arg(long, default_value_t = 5)]
        top_k: usize,
    },
    /// Throughput of images, texts and rerank pairs at several batch sizes (a benchmark, not a
    /// test: ratios against a reference matrix product measured in the same run).
    Bench {
        #[command(flatten)]
        model: ModelArgs,
        /// Batch sizes.
        #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
        batches: Vec<usize>,
        /// Seconds to spend per measurement (after one warm-up call).
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let ctx = cli::Ctx {
        ort_library: cli.ort_library,
        json: cli.json,
    };
    let result = match cli.command {
        Command::Doctor => cli::inspect::doctor(&ctx),
        Command::Info { bundle } => cli::inspect::info(&ctx, &bundle),
        Command::Verify(model) => cli::inspect::verify(&ctx, &model),
        Command::Embed {
            model,
            images,
            texts,
        } => cli::serve::embed(&ctx, &model, &images, &texts),
        Command::Index {
            model,
            images,
            texts,
            out,
        } => cli::serve::index(&ctx, &model, &images, texts.as_deref(), &out),
        Command::Search {
            model,
            index,
            text,
            image,
            top_k,
            rerank,
        } => cli::serve::search(&ctx, &model, &index, text, image, top_k, rerank),
        Command::Answer {
            model,
            image,
            question,
            top_k,
        } => cli::serve::answer(&ctx, &model, &image, &question, top_k),
        Command::Classify {
            model,
            image,
            top_k,
        } => cli::serve::classify(&ctx, &model, &image, top_k),
        Command::Bench {
            model,
            batches,
            seconds,
        } => cli::bench::run(&ctx, &model, &batches, seconds),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
