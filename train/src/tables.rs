//! The seed's Tables 1–5 at small scale on the synthetic scenes: every pretraining variant
//! (full MLM + MIM + MVLM, the task ablations, image-only BEiT, the standard Transformer, and no
//! pretraining) is pretrained and fine-tuned with the same step budget for each seed, evaluated
//! on the val and the held-out compositional split, and summarized as mean ± std over seeds in
//! `results.md` with plots (PNG, in `results/`): the pretraining and fine-tuning loss curves and
//! the ablation bars.
//!
//! Every finished run is kept under `out/` and reused, so an interrupted run continues.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tch::Device;
use vlbeit_core::config::{ModelConfig, Variant};

use crate::finetune::{
    DataFormat, FinetuneConfig, FinetunedModel, Task, evaluate_task, finetune, load_task_data,
};
use crate::plot::{Bar, BarGroup, Series, bar_chart, line_chart, save_png};
use crate::pretrain::{PretrainConfig, Tasks, pretrain};

/// What to run.
#[derive(Debug, Clone)]
pub struct TablesConfig {
    pub model: ModelConfig,
    pub data: PathBuf,
    pub tokenizer: PathBuf,
    pub visual_tokenizer: PathBuf,
    pub out: PathBuf,
    pub seeds: Vec<u64>,
    pub pretrain_steps: u64,
    pub pretrain_batch: usize,
    pub finetune_steps: u64,
    pub finetune_batch: usize,
    /// Units (images / questions / items) evaluated per split; `None` = all.
    pub eval_limit: Option<usize>,
    pub rerank_k: usize,
    /// The command line that produced the run, quoted in results.md.
    pub command: String,
    pub device: Device,
    pub progress: bool,
}

/// One pretraining variant: a row of some table.
struct PretrainVariant {
    name: &'static str,
    label: &'static str,
    /// `None`: no pretraining (random initialization).
    tasks: Option<Tasks>,
    variant: Variant,
    finetune: &'static [Task],
}

const ALL_TASKS: &[Task] = &[
    Task::Retrieval,
    Task::Vqa,
    Task::Nlvr2,
    Task::Classify,
    Task::Segment,
];
const VL_TASKS: &[Task] = &[Task::Retrieval, Task::Vqa, Task::Nlvr2];
const VISION_TASKS: &[Task] = &[Task::Classify, Task::Segment];

const VARIANTS: [PretrainVariant; 6] = [
    PretrainVariant {
        name: "full",
        label: "VL-BEiT (MLM + MIM + MVLM, MoME)",
        tasks: Some(Tasks::ALL),
        variant: Variant::Mome,
        finetune: ALL_TASKS,
    },
    PretrainVariant {
        name: "mvlm",
        label: "MVLM",
        tasks: Some(Tasks {
            mlm: false,
            mim: false,
            mvlm: true,
        }),
        variant: Variant::Mome,
        finetune: VL_TASKS,
    },
    PretrainVariant {
        name: "mvlm_mim",
        label: "MVLM + MIM",
        tasks: Some(Tasks {
            mlm: false,
            mim: true,
            mvlm: true,
        }),
        variant: Variant::Mome,
        finetune: VL_TASKS,
    },
    PretrainVariant {
        name: "standard",
        label: "standard Transformer (MLM + MIM + MVLM)",
        tasks: Some(Tasks::ALL),
        variant: Variant::Standard,
        finetune: &[Task::Retrieval, Task::Vqa, Task::Nlvr2, Task::Classify],
    },
    PretrainVariant {
        name: "beit",
        label: "BEiT (MIM on images only)",
        tasks: Some(Tasks {
            mlm: false,
            mim: true,
            mvlm: false,
        }),
        variant: Variant::Mome,
        finetune: VISION_TASKS,
    },
    PretrainVariant {
        name: "scratch",
        label: "no pretraining",
        tasks: None,
        variant: Variant::Mome,
        finetune: VISION_TASKS,
    },
];

const SPLITS: [&str; 2] = ["val", "compositional"];

/// `results[variant][task][split][metric]` = one value per seed.
pub type Results = BTreeMap<String, BTreeMap<String, BTreeMap<String, BTreeMap<String, Vec<f64>>>>>;

#[derive(Serialize, Deserialize)]
struct EvalFile {
    metrics: BTreeMap<String, f64>,
}

/// Runs (or continues) every run and writes `out/results.md` and `out/results.json`.
pub fn run_tables(config: &TablesConfig) -> anyhow::Result<Results> {
    let started = Instant::now();
    anyhow::ensure!(!config.seeds.is_empty(), "no seeds");
    std::fs::create_dir_all(&config.out)?;
    let mut results: Results = BTreeMap::new();
    for &seed in &config.seeds {
        let full_checkpoint = config.out.join(format!("pretrain-full-s{seed}/checkpoint"));
        for v in &VARIANTS {
            let init = match v.tasks {
                Some(tasks) => {
                    let run = config.out.join(format!("pretrain-{}-s{seed}", v.name));
                    let mut model = config.model.clone();
                    model.variant = v.variant;
                    let mut p = PretrainConfig::new(
                        model,
                        config.data.clone(),
                        config.tokenizer.clone(),
                        config.visual_tokenizer.clone(),
                        run.clone(),
                    );
                    p.steps = config.pretrain_steps;
                    p.batch_size = config.pretrain_batch;
                    p.warmup_steps = (config.pretrain_steps / 10).max(1);
                    p.seed = seed;
                    p.tasks = tasks;
                    p.eval_batches = 1;
                    p.device = config.device;
                    p.progress = config.progress;
                    note(config, &format!("pretrain {} (seed {seed})", v.name));
                    pretrain(&p).with_context(|| format!("pretraining {}", v.name))?;
                    run.join("checkpoint")
                }
                None => full_checkpoint.clone(),
            };
            for &task in v.finetune {
                let run = config
                    .out
                    .join(format!("finetune-{}-{}-s{seed}", v.name, task.name()));
                for (split, metrics) in finetune_and_evaluate(config, &init, v, task, seed, &run)? {
                    let slot = results
                        .entry(v.name.to_string())
                        .or_default()
                        .entry(task.name().to_string())
                        .or_default()
                        .entry(split)
                        .or_default();
                    for (k, value) in metrics {
                        slot.entry(k).or_default().push(value);
                    }
                }
            }
        }
    }
    std::fs::write(
        config.out.join("results.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    write_plots(config, &results)?;
    let markdown = render(config, &results, started.elapsed().as_secs_f64());
    std::fs::write(config.out.join("results.md"), markdown)?;
    Ok(results)
}

fn note(config: &TablesConfig, text: &str) {
    if config.progress {
        eprintln!("tables: {text}");
    }
}

/// Fine-tunes (unless `run/eval-<split>.json` exist already) and evaluates every split.
fn finetune_and_evaluate(
    config: &TablesConfig,
    init: &Path,
    v: &PretrainVariant,
    task: Task,
    seed: u64,
    run: &Path,
) -> anyhow::Result<Vec<(String, BTreeMap<String, f64>)>> {
    let cached: Option<Vec<(String, BTreeMap<String, f64>)>> = SPLITS
        .iter()
        .map(|split| {
            let path = run.join(format!("eval-{split}.json"));
            let text = std::fs::read_to_string(path).ok()?;
            let file: EvalFile = serde_json::from_str(&text).ok()?;
            Some((split.to_string(), file.metrics))
        })
        .collect();
    if let Some(cached) = cached {
        return Ok(cached);
    }
    note(
        config,
        &format!("fine-tune {} on {task} (seed {seed})", v.name),
    );
    let mut f = FinetuneConfig::new(task, init.to_owned(), config.data.clone(), run.to_owned());
    f.format = DataFormat::Scenes;
    f.steps = config.finetune_steps;
    f.batch_size = config.finetune_batch;
    f.warmup_steps = (config.finetune_steps / 10).max(1);
    f.seed = seed;
    f.init_weights = v.tasks.is_some();
    f.skip_eval = true;
    f.rerank_k = config.rerank_k;
    f.device = config.device;
    f.progress = false;
    let outcome = finetune(&f).with_context(|| format!("fine-tuning {} on {task}", v.name))?;
    let loaded = FinetunedModel::load(&outcome.checkpoint, config.device)?;
    let mut out = Vec::new();
    for split in SPLITS {
        let mut data = load_task_data(
            task,
            DataFormat::Scenes,
            &config.data,
            split,
            &loaded.config.preprocess,
        )?;
        if let Some(n) = config.eval_limit {
            data.truncate(n);
        }
        let metrics = evaluate_task(
            &loaded.task_model(),
            &data,
            loaded.config.heads.answers.as_deref(),
            loaded.config.heads.classes.as_deref(),
            config.rerank_k,
            64,
        )?;
        std::fs::write(
            run.join(format!("eval-{split}.json")),
            serde_json::to_string_pretty(&EvalFile {
                metrics: metrics.clone(),
            })?,
        )?;
        out.push((split.to_string(), metrics));
    }
    Ok(out)
}

/// Mean and sample standard deviation.
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

fn get<'a>(r: &'a Results, variant: &str, task: &str, split: &str, metric: &str) -> &'a [f64] {
    r.get(variant)
        .and_then(|t| t.get(task))
        .and_then(|s| s.get(split))
        .and_then(|m| m.get(metric))
        .map_or(&[], Vec::as_slice)
}

fn cell(r: &Results, variant: &str, task: &str, split: &str, metric: &str) -> String {
    let v = get(r, variant, task, split, metric);
    if v.is_empty() {
        return "–".into();
    }
    let (m, s) = mean_std(v);
    format!("{m:.1} ± {s:.1}")
}

fn mean(r: &Results, variant: &str, task: &str, split: &str, metric: &str) -> f64 {
    mean_std(get(r, variant, task, split, metric)).0
}

fn label(name: &str) -> &'static str {
    VARIANTS
        .iter()
        .find(|v| v.name == name)
        .map_or("?", |v| v.label)
}

/// `metric` columns (task, split, metric, header) for `rows` (variant names).
fn table(out: &mut String, r: &Results, rows: &[&str], columns: &[(&str, &str, &str, &str)]) {
    let _ = write!(out, "| pretraining |");
    for (_, _, _, header) in columns {
        let _ = write!(out, " {header} |");
    }
    let _ = write!(out, "\n| --- |");
    for _ in columns {
        let _ = write!(out, " --- |");
    }
    out.push('\n');
    for &row in rows {
        let _ = write!(out, "| {} |", label(row));
        for (task, split, metric, _) in columns {
            let _ = write!(out, " {} |", cell(r, row, task, split, metric));
        }
        out.push('\n');
    }
    out.push('\n');
}

/// "holds" / "differs" for an expected ordering `better > worse` of one metric.
fn ordering(r: &Results, better: &str, worse: &str, task: &str, metric: &str) -> String {
    let (a, b) = (
        mean(r, better, task, "val", metric),
        mean(r, worse, task, "val", metric),
    );
    let verdict = if a > b {
        "holds"
    } else if a == b {
        "ties"
    } else {
        "differs"
    };
    format!(
        "{} > {} on {task} {metric}: {verdict} ({a:.1} vs {b:.1})",
        label(better),
        label(worse)
    )
}

fn render(config: &TablesConfig, r: &Results, seconds: f64) -> String {
    let mut o = String::new();
    let seeds: Vec<String> = config.seeds.iter().map(u64::to_string).collect();
    let _ = writeln!(o, "# Results: the seed's Tables 1–5 at small scale\n");
    let _ = writeln!(
        o,
        "Synthetic scenes, model `{}` ({} layers, hidden {}, {} px), seeds {} (mean ± sample std), \
         {} pretraining steps of batch {} and {} fine-tuning steps of batch {} for every row; \
         metrics in percent on `val` and on the held-out `compositional` split (colour–shape \
         combinations never seen in training){}. Produced in {:.0} s by:\n",
        if config.model.hidden == 128 {
            "tiny"
        } else {
            "custom"
        },
        config.model.layers,
        config.model.hidden,
        config.model.image_size,
        seeds.join(", "),
        config.pretrain_steps,
        config.pretrain_batch,
        config.finetune_steps,
        config.finetune_batch,
        config
            .eval_limit
            .map_or(String::new(), |n| format!(", at most {n} units per split")),
        seconds
    );
    let _ = writeln!(o, "```sh\n{}\n```\n", config.command);

    let _ = writeln!(o, "## Table 1: VQA and NLVR2\n");
    table(
        &mut o,
        r,
        &["full"],
        &[
            ("vqa", "val", "vqa_score", "VQA score (val)"),
            ("vqa", "compositional", "vqa_score", "VQA score (comp.)"),
            ("nlvr2", "val", "accuracy", "NLVR2 acc. (val)"),
            ("nlvr2", "compositional", "accuracy", "NLVR2 acc. (comp.)"),
        ],
    );

    let _ = writeln!(
        o,
        "## Table 2: image–text retrieval, dual encoder vs + fusion rerank of the top {}\n",
        config.rerank_k
    );
    let _ = writeln!(
        o,
        "| | TR R@1 | TR R@5 | IR R@1 | IR R@5 | TR R@1 (comp.) | IR R@1 (comp.) |"
    );
    let _ = writeln!(o, "| --- | --- | --- | --- | --- | --- | --- |");
    for (name, p) in [("dual encoder", ""), ("+ fusion rerank", "rerank_")] {
        let c = |split: &str, m: &str| cell(r, "full", "retrieval", split, &format!("{p}{m}"));
        let _ = writeln!(
            o,
            "| {name} | {} | {} | {} | {} | {} | {} |",
            c("val", "tr_r1"),
            c("val", "tr_r5"),
            c("val", "ir_r1"),
            c("val", "ir_r5"),
            c("compositional", "tr_r1"),
            c("compositional", "ir_r1")
        );
    }
    o.push('\n');

    let _ = writeln!(o, "## Table 3: classification and segmentation\n");
    table(
        &mut o,
        r,
        &["full", "beit", "scratch"],
        &[
            ("classify", "val", "top1", "top-1 (val)"),
            ("classify", "compositional", "top1", "top-1 (comp.)"),
            ("segment", "val", "miou", "mIoU (val)"),
            ("segment", "compositional", "miou", "mIoU (comp.)"),
        ],
    );

    let vl_columns = [
        ("vqa", "val", "vqa_score", "VQA score"),
        ("nlvr2", "val", "accuracy", "NLVR2 acc."),
        ("retrieval", "val", "tr_r1", "TR R@1"),
        ("retrieval", "val", "ir_r1", "IR R@1"),
        ("vqa", "compositional", "vqa_score", "VQA (comp.)"),
    ];
    let _ = writeln!(o, "## Table 4: pretraining tasks\n");
    table(&mut o, r, &["mvlm", "mvlm_mim", "full"], &vl_columns);
    let _ = writeln!(o, "## Table 5: MoME vs standard Transformer\n");
    let mut t5 = vl_columns.to_vec();
    t5.push(("classify", "val", "top1", "top-1"));
    table(&mut o, r, &["full", "standard"], &t5);

    let _ = writeln!(o, "## Plots\n");
    let _ = writeln!(o, "![pretraining loss](results/pretrain_loss.png)\n");
    if config.out.join("results/finetune_loss.png").exists() {
        let _ = writeln!(o, "![fine-tuning loss](results/finetune_loss.png)\n");
    }
    let _ = writeln!(o, "![ablation](results/ablation.png)\n");

    let _ = writeln!(o, "## The seed's orderings, checked\n");
    for line in [
        format!(
            "fusion rerank ≥ dual encoder on TR R@1: {} ({:.1} vs {:.1})",
            if mean(r, "full", "retrieval", "val", "rerank_tr_r1")
                >= mean(r, "full", "retrieval", "val", "tr_r1")
            {
                "holds"
            } else {
                "differs"
            },
            mean(r, "full", "retrieval", "val", "rerank_tr_r1"),
            mean(r, "full", "retrieval", "val", "tr_r1")
        ),
        ordering(r, "full", "beit", "classify", "top1"),
        ordering(r, "beit", "scratch", "classify", "top1"),
        ordering(r, "full", "scratch", "segment", "miou"),
        ordering(r, "mvlm_mim", "mvlm", "vqa", "vqa_score"),
        ordering(r, "full", "mvlm_mim", "vqa", "vqa_score"),
        ordering(r, "full", "mvlm", "nlvr2", "accuracy"),
        ordering(r, "full", "standard", "vqa", "vqa_score"),
        ordering(r, "full", "standard", "nlvr2", "accuracy"),
    ] {
        let _ = writeln!(o, "- {line}");
    }
    o
}

/// `(step, training loss)` of every training line of a run's `metrics.jsonl`; `None` when the
/// file is missing.
fn loss_curve(path: &Path) -> Option<Vec<(f64, f64)>> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| Some((v["step"].as_f64()?, v["train"]["loss"].as_f64()?)))
            .collect(),
    )
}

/// The ablation bars: per Table 4/5 variant, the vision-language metrics (val) as mean ± std.
const ABLATION_VARIANTS: [&str; 4] = ["mvlm", "mvlm_mim", "full", "standard"];
const ABLATION_METRICS: [(&str, &str, &str); 4] = [
    ("VQA score (val)", "vqa", "vqa_score"),
    ("NLVR2 accuracy (val)", "nlvr2", "accuracy"),
    ("TR R@1 (val)", "retrieval", "tr_r1"),
    ("IR R@1 (val)", "retrieval", "ir_r1"),
];

/// PNG plots in `out/results/`: the pretraining loss curves of every pretrained variant and the
/// fine-tuning loss curves of the full model's tasks (first seed), and the Table 4/5 ablation
/// bars over seeds.
fn write_plots(config: &TablesConfig, results: &Results) -> anyhow::Result<()> {
    let seed = config.seeds[0];
    let plots = config.out.join("results");
    std::fs::create_dir_all(&plots).with_context(|| format!("creating {}", plots.display()))?;

    let series: Vec<Series<'_>> = VARIANTS
        .iter()
        .filter(|v| v.tasks.is_some())
        .filter_map(|v| {
            let path = config
                .out
                .join(format!("pretrain-{}-s{seed}/metrics.jsonl", v.name));
            Some(Series {
                name: v.label,
                points: loss_curve(&path)?,
            })
        })
        .collect();
    save_png(
        &line_chart(
            &format!("pretraining loss (sum of the variant's tasks), seed {seed}"),
            "step",
            "loss",
            &series,
        ),
        &plots.join("pretrain_loss.png"),
    )?;

    let full = VARIANTS.iter().find(|v| v.name == "full").expect("full");
    let series: Vec<Series<'_>> = full
        .finetune
        .iter()
        .filter_map(|task| {
            let path = config.out.join(format!(
                "finetune-{}-{}-s{seed}/metrics.jsonl",
                full.name,
                task.name()
            ));
            Some(Series {
                name: task.name(),
                points: loss_curve(&path)?,
            })
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    let finetune_png = plots.join("finetune_loss.png");
    if series.is_empty() {
        let _ = std::fs::remove_file(&finetune_png);
    } else {
        save_png(
            &line_chart(
                &format!("fine-tuning loss of {}, seed {seed}", full.label),
                "step",
                "loss",
                &series,
            ),
            &finetune_png,
        )?;
    }

    let groups: Vec<BarGroup<'_>> = ABLATION_VARIANTS
        .iter()
        .map(|&v| BarGroup {
            label: label(v),
            bars: ABLATION_METRICS
                .iter()
                .map(|&(name, task, metric)| {
                    let (mean, std) = mean_std(get(results, v, task, "val", metric));
                    Bar {
                        series: name,
                        mean,
                        std,
                    }
                })
                .collect(),
        })
        .collect();
    save_png(
        &bar_chart(
            &format!(
                "pretraining ablation: mean +/- std over {} seed(s)",
                config.seeds.len()
            ),
            "percent",
            &groups,
        ),
        &plots.join("ablation.png"),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_std() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0]);
        assert_eq!(m, 2.0);
        assert!((s - 1.0).abs() < 1e-12);
        assert_eq!(mean_std(&[4.0]), (4.0, 0.0));
    }

    #[test]
    fn plots_are_written_as_png_and_linked() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().to_owned();
        let config = TablesConfig {
            model: ModelConfig::tiny(),
            data: out.join("data"),
            tokenizer: out.join("tokenizer.json"),
            visual_tokenizer: out.join("visual_tokenizer"),
            out: out.clone(),
            seeds: vec![0, 1],
            pretrain_steps: 3,
            pretrain_batch: 2,
            finetune_steps: 3,
            finetune_batch: 2,
            eval_limit: None,
            rerank_k: 4,
            command: "vlbeit-train tables".into(),
            device: Device::Cpu,
            progress: false,
        };
        let metrics = |run: &str, losses: &[f64]| {
            let dir = out.join(run);
            std::fs::create_dir_all(&dir).unwrap();
            let mut text = String::new();
            for (i, loss) in losses.iter().enumerate() {
                let line = serde_json::json!({ "step": i + 1, "train": { "loss": loss } });
                text.push_str(&format!("{line}\n"));
            }
            text.push_str("{\"step\": 3, \"eval\": {\"accuracy\": 50.0}}\n");
            std::fs::write(dir.join("metrics.jsonl"), text).unwrap();
        };
        metrics("pretrain-full-s0", &[9.0, 7.0, 6.0]);
        metrics("pretrain-mvlm-s0", &[5.0, 4.0, 3.5]);
        metrics("finetune-full-vqa-s0", &[3.0, 2.0, 1.5]);
        metrics("finetune-full-retrieval-s0", &[4.0, 3.0, 2.5]);
        let mut results: Results = BTreeMap::new();
        for (v, score) in [("mvlm", 40.0), ("full", 50.0)] {
            let slot = results
                .entry(v.into())
                .or_default()
                .entry("vqa".into())
                .or_default()
                .entry("val".into())
                .or_default();
            slot.insert("vqa_score".into(), vec![score, score + 2.0]);
        }
        write_plots(&config, &results).unwrap();
        for name in ["pretrain_loss", "finetune_loss", "ablation"] {
            let img = image::open(out.join(format!("results/{name}.png"))).unwrap();
            assert_eq!(
                (img.width(), img.height()),
                (crate::plot::WIDTH, crate::plot::HEIGHT)
            );
        }
        let md = render(&config, &results, 1.0);
        for name in ["pretrain_loss", "finetune_loss", "ablation"] {
            assert!(md.contains(&format!("(results/{name}.png)")), "{name}");
        }
        assert!(!md.contains(".svg"));
    }
}
