//! `vlbeit-train report`: turns a run's `metrics.jsonl` into loss curves (PNG) and a Markdown
//! table of the held-out evaluations, so the docs are reproduced by a command.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::Value;

use crate::plot::{Series, line_chart, save_png};

/// Arguments of `vlbeit-train report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// A run's metrics file (`<run>/metrics.jsonl`).
    #[arg(long)]
    pub metrics: PathBuf,
    /// Where to write the loss-curve PNG (`--svg`, the old name, is accepted; a path not ending
    /// in `.png` gets that extension).
    #[arg(long, alias = "svg")]
    pub png: PathBuf,
    /// Average the training curves over this many steps.
    #[arg(long, default_value_t = 25)]
    pub smooth: usize,
}

const TASKS: [&str; 4] = ["mlm", "mim", "mvlm_text", "mvlm_image"];

pub fn run(args: &ReportArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.metrics)
        .with_context(|| format!("reading {}", args.metrics.display()))?;
    let mut train: Vec<(f64, Value)> = Vec::new();
    let mut evals: Vec<(f64, Value)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let v: Value = serde_json::from_str(line)
            .with_context(|| format!("{} line {}", args.metrics.display(), n + 1))?;
        let step = v["step"].as_f64().unwrap_or(f64::NAN);
        if let Some(t) = v.get("train") {
            train.push((step, t.clone()));
        }
        if let Some(e) = v.get("eval") {
            evals.push((step, e.clone()));
        }
    }
    let window = args.smooth.max(1);
    let series: Vec<Series<'_>> = TASKS
        .iter()
        .filter(|task| {
            train
                .iter()
                .any(|(_, t)| t.get(format!("{task}_loss")).is_some())
        })
        .map(|task| {
            let key = format!("{task}_loss");
            let points = train
                .chunks(window)
                .map(|chunk| {
                    let step = chunk.last().map(|(s, _)| *s).unwrap_or(0.0);
                    let values: Vec<f64> =
                        chunk.iter().filter_map(|(_, t)| t[&key].as_f64()).collect();
                    (
                        step,
                        values.iter().sum::<f64>() / values.len().max(1) as f64,
                    )
                })
                .collect();
            Series { name: task, points }
        })
        .collect();
    let chart = line_chart(
        "VL-BEiT tiny pretraining: training loss per task",
        "step",
        &format!("cross-entropy (mean of {window} steps)"),
        &series,
    );
    let png = if args.png.extension().is_some_and(|e| e == "png") {
        args.png.clone()
    } else {
        let png = args.png.with_extension("png");
        eprintln!("report: writing the loss curves to {}", png.display());
        png
    };
    save_png(&chart, &png)?;

    println!(
        "| step | MLM | MIM | MVLM text | MVLM image | colour words: image / text only | shape words: image / text only |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let pct = |v: &Value| 100.0 * v.as_f64().unwrap_or(f64::NAN);
    for (step, e) in &evals {
        let acc = |k: &str| {
            format!(
                "{:.1}% (base {:.1}%)",
                pct(&e[k]["accuracy"]),
                pct(&e[k]["majority_baseline"])
            )
        };
        let probe = |k: &str| {
            format!(
                "{:.1}% / {:.1}% (n={})",
                pct(&e[k]["with_image"]["accuracy"]),
                pct(&e[k]["text_only"]["accuracy"]),
                e[k]["with_image"]["total"]
            )
        };
        println!(
            "| {step} | {} | {} | {} | {} | {} | {} |",
            acc("mlm"),
            acc("mim"),
            acc("mvlm_text"),
            acc("mvlm_image"),
            probe("colour_words"),
            probe("shape_words")
        );
    }
    Ok(())
}
