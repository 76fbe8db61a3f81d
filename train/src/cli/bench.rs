//! `vlbeit-train bench`: training throughput (samples/s) of full MLM + MIM + MVLM steps on
//! random inputs, for the presets, with a same-run reference: libtorch's dense matmul rate, so
//! the figure reads as a share of what this machine's GEMM can do (model FLOP utilization).

use std::time::Instant;

use tch::{Device, Kind, Tensor, nn};
use vlbeit_core::config::ModelConfig;

use crate::masking::IGNORE_INDEX;
use crate::model::{VlBeit, parameter_count};
use crate::optim::{AdamW, AdamWConfig};
use crate::pretrain::objectives::masked_prediction;

/// Arguments of `vlbeit-train bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Presets to measure.
    #[arg(long, value_delimiter = ',', default_value = "tiny,base")]
    pub configs: Vec<String>,
    /// Images = texts = pairs per step, per preset (`tiny=32,base=4` style, or one number).
    #[arg(long, default_value = "tiny=32,base=2")]
    pub batch: String,
    /// Measured steps (after 2 warm-up steps).
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
}

fn batch_for(spec: &str, preset: &str) -> usize {
    if let Ok(n) = spec.parse() {
        return n;
    }
    spec.split(',')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == preset)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(8)
}

/// Dense matmul rate of libtorch on this machine now, in FLOP/s.
fn gemm_reference() -> f64 {
    let n = 768i64;
    let a = Tensor::randn([n, n], (Kind::Float, Device::Cpu));
    let b = Tensor::randn([n, n], (Kind::Float, Device::Cpu));
    let _ = a.matmul(&b);
    let reps = 20;
    let start = Instant::now();
    for _ in 0..reps {
        let _ = a.matmul(&b);
    }
    2.0 * (n * n * n) as f64 * reps as f64 / start.elapsed().as_secs_f64()
}

/// Training FLOPs per step: 6 × (weights each token passes through) × tokens, the usual
/// estimate (attention score products neglected; small at these lengths).
fn step_flops(c: &ModelConfig, batch: usize, text_len: usize) -> f64 {
    let d = c.hidden as f64;
    let per_layer = 4.0 * d * d + 2.0 * d * c.mlp_hidden() as f64;
    let tokens =
        batch as f64 * (text_len + (1 + c.num_patches()) + text_len + 1 + c.num_patches()) as f64;
    6.0 * per_layer * c.layers as f64 * tokens
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let reference = gemm_reference();
    println!(
        "reference: libtorch f32 matmul 768x768 at {:.1} GFLOP/s on {} threads",
        reference / 1e9,
        tch::get_num_threads()
    );
    println!("| config | params | batch/task | samples/s | step s | est. MFU vs matmul |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for preset in &args.configs {
        let mut config = ModelConfig::preset(preset)?;
        config.drop_path = 0.1;
        let batch = batch_for(&args.batch, preset);
        let text_len = config.max_pair_text_len;
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = VlBeit::new(&vs.root(), &config);
        let mut opt = AdamW::new(&vs, AdamWConfig::default());
        let (b, l, n) = (batch as i64, text_len as i64, config.num_patches() as i64);
        let v = config.vocab_size as i64;
        let ids = Tensor::randint_low(5, v, [b, l], (Kind::Int64, Device::Cpu));
        let attention = Tensor::ones([b, l], (Kind::Int64, Device::Cpu));
        let s = config.image_size as i64;
        let pixels = Tensor::randn([b, 3, s, s], (Kind::Float, Device::Cpu));
        let text_labels = ids.where_scalarother(
            &Tensor::rand([b, l], (Kind::Float, Device::Cpu)).lt(0.5),
            IGNORE_INDEX,
        );
        let image_mask = Tensor::rand([b, n], (Kind::Float, Device::Cpu)).lt(0.4);
        let image_labels = Tensor::randint(
            config.visual_vocab as i64,
            [b, n],
            (Kind::Int64, Device::Cpu),
        )
        .where_scalarother(&image_mask, IGNORE_INDEX);
        let mut step = || {
            opt.zero_grad();
            let text = model.forward_text(&ids, &attention, true);
            let mlm = masked_prediction(&text, &text_labels, |x| model.heads().mlm(x));
            let image = model.forward_image(&pixels, Some(&image_mask), true);
            let mim = masked_prediction(&image.narrow(1, 1, n), &image_labels, |x| {
                model.heads().mim(x)
            });
            let fused = model.forward_fusion(&ids, &attention, &pixels, Some(&image_mask), true);
            let t = masked_prediction(&fused.narrow(1, 0, l), &text_labels, |x| {
                model.heads().mlm(x)
            });
            let i = masked_prediction(&fused.narrow(1, l + 1, n), &image_labels, |x| {
                model.heads().mim(x)
            });
            (mlm.loss + mim.loss + t.loss + i.loss).backward();
            opt.clip_grad_norm(3.0);
            opt.step(1e-4);
        };
        step();
        step();
        let start = Instant::now();
        for _ in 0..args.steps {
            step();
        }
        let per_step = start.elapsed().as_secs_f64() / args.steps as f64;
        let samples = 3.0 * batch as f64 / per_step;
        let mfu = step_flops(&config, batch, text_len) / per_step / reference;
        println!(
            "| {preset} | {:.1}M | {batch} | {samples:.1} | {per_step:.3} | {:.0}% |",
            parameter_count(&vs) as f64 / 1e6,
            100.0 * mfu
        );
    }
    Ok(())
}
