//! Train → export → runtime parity: a seeded random-weight model in tch (the trainer's
//! forward), saved as a checkpoint, exported by vlbeit-export and run in ONNX Runtime, must give
//! the same embeddings, states, pooled outputs and ITM logits (fp32: max |Δ| ≤ 1e-4,
//! cosine ≥ 0.99999; fp16 graphs: cosine ≥ 0.999 against the same fp32 forward), for several
//! batch sizes, text lengths and padded rows.

use std::path::Path;

use ort::session::Session;
use ort::value::Tensor as OrtTensor;
use tch::{Device, Kind, Tensor, nn};
use vlbeit_core::config::{ModelConfig, PreprocessConfig, Variant};
use vlbeit_core::text::{
    Padding, SPECIAL_TOKENS, SpecialToken, TokenizerSettings, UnicodeNormalization,
};
use vlbeit_export::{
    AttentionForm, ExportOptions, FUSION_ENCODER, IMAGE_ENCODER, Precision, TEXT_ENCODER, Tolerance,
};
use vlbeit_train::checkpoint::{
    CHECKPOINT_FORMAT_VERSION, CheckpointConfig, HeadsConfig, TrainingSummary, write_json,
};
use vlbeit_train::finetune::{TaskHeadSpec, TaskHeads};
use vlbeit_train::model::{VlBeit, save_weights};

const MAX_ABS: f64 = 1e-4;
const MIN_COSINE: f64 = 0.99999;
const MIN_COSINE_F16: f64 = 0.999;

/// The fp32 gate of this test (the exporter's, restated so a loosened gate shows here).
const FP32: Tolerance = Tolerance {
    max_abs: Some(MAX_ABS),
    min_cosine: MIN_COSINE,
};
/// The fp16 gate: cosine only, max |Δ| reported.
const FP16: Tolerance = Tolerance {
    max_abs: None,
    min_cosine: MIN_COSINE_F16,
};

/// Worst figures per output over all cases: (max |Δ|, min cosine).
type Worst = std::collections::BTreeMap<&'static str, (f64, f64)>;

/// Small, but with two layers below `vl_ffn_start` (split routing) and one above (VL expert).
fn config(variant: Variant) -> ModelConfig {
    ModelConfig {
        variant,
        hidden: 64,
        layers: 3,
        heads: 4,
        image_size: 32,
        patch_size: 8,
        vocab_size: 100,
        max_text_len: 16,
        max_pair_text_len: 16,
        vl_ffn_start: 2,
        visual_vocab: 32,
        embed_dim: 48,
        ..ModelConfig::tiny()
    }
}

/// A model whose every weight (biases, gammas, LayerNorm scales included) is moved off its
/// initial value, so that a bias or a gamma the graph forgot would show.
fn trained_like_model(config: &ModelConfig, dir: &Path) -> (nn::VarStore, VlBeit) {
    let (vs, model, _) = trained_like_model_with_heads(config, dir, &TaskHeadSpec::default());
    (vs, model)
}

/// [`trained_like_model`] with the fine-tuning heads of `spec` (the trainer's own modules,
/// named by the team contract) and their label lists in config.json.
fn trained_like_model_with_heads(
    config: &ModelConfig,
    dir: &Path,
    spec: &TaskHeadSpec,
) -> (nn::VarStore, VlBeit, TaskHeads) {
    tch::manual_seed(7);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = VlBeit::new(&vs.root(), config);
    let task_heads = TaskHeads::new(&(vs.root() / "heads"), config, spec);
    tch::no_grad(|| {
        for (_, mut var) in vs.variables() {
            let noise = var.randn_like() * 0.1;
            let _ = var.f_add_(&noise).unwrap();
        }
    });
    std::fs::create_dir_all(dir).unwrap();
    save_weights(&vs, &dir.join("model.safetensors")).unwrap();
    // The trainer's own config.json (every section), which the exporter must read.
    let checkpoint_config = CheckpointConfig {
        format_version: CHECKPOINT_FORMAT_VERSION,
        model: config.clone(),
        preprocess: PreprocessConfig::for_image_size(config.image_size as u32),
        tokenizer: TokenizerSettings {
            max_len: config.max_text_len,
            padding: Padding::Longest,
            special_tokens: (0..)
                .zip(SPECIAL_TOKENS)
                .map(|(id, token)| SpecialToken {
                    token: token.to_owned(),
                    id,
                })
                .collect(),
            lowercase: true,
            unicode_normalization: UnicodeNormalization::Nfkc,
        },
        pair_max_len: config.max_pair_text_len,
        heads: HeadsConfig {
            answers: spec
                .vqa
                .map(|n| (0..n).map(|i| format!("answer {i}")).collect()),
            classes: spec
                .classify
                .map(|n| (0..n).map(|i| format!("class {i}")).collect()),
            ..HeadsConfig::default()
        },
        training: TrainingSummary::default(),
    };
    write_json(&dir.join("config.json"), &checkpoint_config).unwrap();
    CheckpointConfig::load(dir).expect("the trainer reads its config back");
    (vs, model, task_heads)
}

struct Graphs {
    image: Session,
    text: Session,
    fusion: Session,
}

fn sessions(dir: &Path) -> Graphs {
    let runtime = vlbeit::Runtime::new(vlbeit::RuntimeOptions::default()).unwrap();
    let open = |file: &str| {
        Session::builder(runtime.environment())
            .unwrap()
            .with_intra_threads(1)
            .unwrap()
            .commit_from_file(dir.join(file))
            .unwrap()
    };
    Graphs {
        image: open(IMAGE_ENCODER),
        text: open(TEXT_ENCODER),
        fusion: open(FUSION_ENCODER),
    }
}

fn ort_f32(t: &Tensor) -> OrtTensor<f32> {
    let shape = t.size();
    let data: Vec<f32> = Vec::try_from(t.flatten(0, -1)).unwrap();
    OrtTensor::from_array((shape, data)).unwrap()
}

fn ort_i64(t: &Tensor) -> OrtTensor<i64> {
    let shape = t.size();
    let data: Vec<i64> = Vec::try_from(t.flatten(0, -1)).unwrap();
    OrtTensor::from_array((shape, data)).unwrap()
}

/// Compares an ONNX Runtime output with the tch tensor under `gate`; returns (max |Δ|, cosine).
fn compare(
    label: &str,
    ort: (&ort::value::Shape, &[f32]),
    expected: &Tensor,
    gate: &Tolerance,
) -> (f64, f64) {
    let (shape, got) = ort;
    let shape: Vec<i64> = shape.iter().copied().collect();
    assert_eq!(shape, expected.size(), "{label}: shape");
    let want: Vec<f32> = Vec::try_from(expected.flatten(0, -1)).unwrap();
    let (max_abs, cosine) = vlbeit_export::max_abs_and_cosine(got, &want);
    println!("{label:<40} max|Δ| = {max_abs:.3e}  cosine = {cosine:.9}");
    assert!(!max_abs.is_nan(), "{label}: NaN in the output");
    if let Some(limit) = gate.max_abs {
        assert!(max_abs <= limit, "{label}: max |Δ| {max_abs:e} > {limit:e}");
    }
    assert!(
        cosine >= gate.min_cosine,
        "{label}: cosine {cosine} < {}",
        gate.min_cosine
    );
    (max_abs, cosine)
}

/// Token ids and a mask whose rows have the given real lengths (the rest is [PAD] = 0).
fn texts(config: &ModelConfig, lengths: &[i64], seq: i64) -> (Tensor, Tensor) {
    let b = lengths.len() as i64;
    let ids = Tensor::randint_low(
        5,
        config.vocab_size as i64,
        [b, seq],
        (Kind::Int64, Device::Cpu),
    );
    let positions = Tensor::arange(seq, (Kind::Int64, Device::Cpu)).unsqueeze(0);
    let lens = Tensor::from_slice(lengths).unsqueeze(1);
    let mask = positions.lt_tensor(&lens).to_kind(Kind::Int64);
    (&ids * &mask, mask)
}

fn pixels(config: &ModelConfig, batch: i64) -> Tensor {
    let s = config.image_size as i64;
    Tensor::randn([batch, 3, s, s], (Kind::Float, Device::Cpu))
}

/// Runs every case through tch and ONNX Runtime and compares every output under `gate`;
/// returns the worst figures per output.
fn check_parity(
    config: &ModelConfig,
    model: &VlBeit,
    graphs: &mut Graphs,
    tag: &str,
    gate: &Tolerance,
) -> Worst {
    let mut worst = Worst::new();
    let mut record = |output: &'static str, (max_abs, cosine): (f64, f64)| {
        let entry = worst.entry(output).or_insert((0.0, 1.0));
        entry.0 = entry.0.max(max_abs);
        entry.1 = entry.1.min(cosine);
    };
    // (real lengths per row, padded sequence length)
    let cases: [(&[i64], i64); 5] = [
        (&[5], 5),
        (&[16], 16),
        (&[7, 4, 1], 7),
        (&[3, 9, 9], 12),
        (&[2, 2, 2], 2),
    ];
    for (lengths, seq) in cases {
        let b = lengths.len() as i64;
        let (ids, mask) = texts(config, lengths, seq);
        let px = pixels(config, b);
        let case = format!("{tag} b={b} seq={seq} lens={lengths:?}");

        let states = model.forward_image(&px, None, false);
        let embeds = model.heads().image_embeds(&states);
        let out = graphs
            .image
            .run(ort::inputs!["pixel_values" => ort_f32(&px)])
            .unwrap();
        record(
            "image_embeds",
            compare(
                &format!("{case} image_embeds"),
                out["image_embeds"].try_extract_tensor::<f32>().unwrap(),
                &embeds,
                gate,
            ),
        );
        record(
            "image_states",
            compare(
                &format!("{case} image_states"),
                out["image_states"].try_extract_tensor::<f32>().unwrap(),
                &states,
                gate,
            ),
        );
        drop(out);

        let text = model
            .heads()
            .text_embeds(&model.forward_text(&ids, &mask, false));
        let out = graphs
            .text
            .run(ort::inputs!["input_ids" => ort_i64(&ids), "attention_mask" => ort_i64(&mask)])
            .unwrap();
        record(
            "text_embeds",
            compare(
                &format!("{case} text_embeds"),
                out["text_embeds"].try_extract_tensor::<f32>().unwrap(),
                &text,
                gate,
            ),
        );
        drop(out);

        let fused = model.forward_fusion(&ids, &mask, &px, None, false);
        let pooled = model.heads().pooled(&fused);
        let itm = model.heads().itm(&pooled);
        let out = graphs
            .fusion
            .run(ort::inputs![
                "input_ids" => ort_i64(&ids),
                "attention_mask" => ort_i64(&mask),
                "pixel_values" => ort_f32(&px),
            ])
            .unwrap();
        record(
            "pooled",
            compare(
                &format!("{case} pooled"),
                out["pooled"].try_extract_tensor::<f32>().unwrap(),
                &pooled,
                gate,
            ),
        );
        record(
            "itm_logits",
            compare(
                &format!("{case} itm_logits"),
                out["itm_logits"].try_extract_tensor::<f32>().unwrap(),
                &itm,
                gate,
            ),
        );
    }
    for (output, (max_abs, cosine)) in &worst {
        println!("{tag} worst {output:<14} max|Δ| = {max_abs:.3e}  cosine = {cosine:.9}");
    }
    worst
}

#[test]
fn exported_mome_graphs_match_the_trained_forward() {
    tch::set_num_threads(1);
    let root = tempfile::tempdir().unwrap();
    let config = config(Variant::Mome);
    let (_vs, model) = trained_like_model(&config, &root.path().join("ckpt"));
    let bundle = root.path().join("bundle");
    vlbeit_export::export_graphs(&root.path().join("ckpt"), &bundle).unwrap();
    let mut graphs = sessions(&bundle);
    tch::no_grad(|| check_parity(&config, &model, &mut graphs, "mome", &FP32));

    // The same weights through external data give the same graphs' results.
    let external = root.path().join("bundle-external");
    let options = ExportOptions::default().with_external_data_above(4096);
    let report =
        vlbeit_export::export_graphs_with(&root.path().join("ckpt"), &external, &options).unwrap();
    assert!(report.graphs.iter().all(|g| g.data_path.is_some()));
    let mut graphs = sessions(&external);
    tch::no_grad(|| check_parity(&config, &model, &mut graphs, "mome external-data", &FP32));
}

#[test]
fn exported_standard_graphs_match_the_trained_forward() {
    tch::set_num_threads(1);
    let root = tempfile::tempdir().unwrap();
    let config = config(Variant::Standard);
    let (_vs, model) = trained_like_model(&config, &root.path().join("ckpt"));
    let bundle = root.path().join("bundle");
    vlbeit_export::export_graphs(&root.path().join("ckpt"), &bundle).unwrap();
    let mut graphs = sessions(&bundle);
    tch::no_grad(|| check_parity(&config, &model, &mut graphs, "standard", &FP32));
}

/// fp16 graphs of both variants against the fp32 tch forward: cosine ≥ 0.999 for every output
/// of every case, and about half the fp32 file size.
#[test]
fn exported_fp16_graphs_match_the_trained_forward() {
    tch::set_num_threads(1);
    for variant in [Variant::Mome, Variant::Standard] {
        let root = tempfile::tempdir().unwrap();
        let config = config(variant);
        let ckpt = root.path().join("ckpt");
        let (_vs, model) = trained_like_model(&config, &ckpt);
        let fp32 = vlbeit_export::export_graphs(&ckpt, &root.path().join("fp32")).unwrap();
        let bundle = root.path().join("fp16");
        let options = ExportOptions::default().with_precision(Precision::F16);
        let fp16 = vlbeit_export::export_graphs_with(&ckpt, &bundle, &options).unwrap();
        for (a, b) in fp32.graphs.iter().zip(&fp16.graphs) {
            let ratio = b.bytes as f64 / a.bytes as f64;
            println!(
                "{variant:?} {:<20} fp32 {:>9} bytes  fp16 {:>9} bytes  ratio {ratio:.3}",
                a.path.file_name().unwrap().to_string_lossy(),
                a.bytes,
                b.bytes
            );
            assert!((0.45..0.6).contains(&ratio), "size ratio {ratio}");
        }
        let mut graphs = sessions(&bundle);
        let tag = format!("{variant:?} fp16");
        tch::no_grad(|| check_parity(&config, &model, &mut graphs, &tag, &FP16));
    }
}

/// The `ort` attention form (one com.microsoft.Attention node per block) under the same gates:
/// fp32 for both variants, fp16 for MoME.
#[test]
fn exported_ort_attention_graphs_match_the_trained_forward() {
    tch::set_num_threads(1);
    for variant in [Variant::Mome, Variant::Standard] {
        let root = tempfile::tempdir().unwrap();
        let config = config(variant);
        let ckpt = root.path().join("ckpt");
        let (_vs, model) = trained_like_model(&config, &ckpt);
        let fp32 = ExportOptions::default().with_attention(AttentionForm::OrtFused);
        let bundle = root.path().join("ort-fp32");
        vlbeit_export::export_graphs_with(&ckpt, &bundle, &fp32).unwrap();
        let mut graphs = sessions(&bundle);
        let tag = format!("{variant:?} ort-attention");
        tch::no_grad(|| check_parity(&config, &model, &mut graphs, &tag, &FP32));
        if variant == Variant::Mome {
            let fp16 = fp32.clone().with_precision(Precision::F16);
            let bundle = root.path().join("ort-fp16");
            vlbeit_export::export_graphs_with(&ckpt, &bundle, &fp16).unwrap();
            let mut graphs = sessions(&bundle);
            let tag = format!("{variant:?} ort-attention fp16");
            tch::no_grad(|| check_parity(&config, &model, &mut graphs, &tag, &FP16));
        }
    }
}

/// `class_logits` (image encoder) and `vqa_logits` (fusion encoder) against the trainer's own
/// `heads.classify` / `heads.vqa` modules on the same random (moved-off-init) weights, for both
/// attention forms in fp32 and the standard form in fp16.
#[test]
fn exported_task_heads_match_the_trained_heads() {
    tch::set_num_threads(1);
    let root = tempfile::tempdir().unwrap();
    let config = config(Variant::Mome);
    let ckpt = root.path().join("ckpt");
    let spec = TaskHeadSpec {
        vqa: Some(7),
        classify: Some(5),
        ..TaskHeadSpec::default()
    };
    let (_vs, model, heads) = trained_like_model_with_heads(&config, &ckpt, &spec);
    let (vqa, classify) = (heads.vqa.unwrap(), heads.classify.unwrap());
    let cases = [
        (AttentionForm::Standard, Precision::F32, &FP32),
        (AttentionForm::OrtFused, Precision::F32, &FP32),
        (AttentionForm::Standard, Precision::F16, &FP16),
    ];
    for (form, precision, gate) in cases {
        let options = ExportOptions::default()
            .with_attention(form)
            .with_precision(precision);
        let bundle = root.path().join(format!("{form}-{precision}"));
        let report = vlbeit_export::export_graphs_with(&ckpt, &bundle, &options).unwrap();
        assert!(report.skipped_tensors.is_empty());
        let mut graphs = sessions(&bundle);
        let tag = format!("heads {form} {precision}");
        let mut worst = Worst::new();
        tch::no_grad(|| {
            for (lengths, seq) in [(&[5i64][..], 5), (&[7, 4, 1][..], 7), (&[3, 9, 9][..], 12)] {
                let b = lengths.len() as i64;
                let (ids, mask) = texts(&config, lengths, seq);
                let px = pixels(&config, b);
                let case = format!("{tag} b={b} seq={seq}");
                let states = model.forward_image(&px, None, false);
                let out = graphs
                    .image
                    .run(ort::inputs!["pixel_values" => ort_f32(&px)])
                    .unwrap();
                let figures = compare(
                    &format!("{case} class_logits"),
                    out["class_logits"].try_extract_tensor::<f32>().unwrap(),
                    &classify.forward(&states),
                    gate,
                );
                let entry = worst.entry("class_logits").or_insert((0.0, 1.0));
                *entry = (entry.0.max(figures.0), entry.1.min(figures.1));
                drop(out);
                let fused = model.forward_fusion(&ids, &mask, &px, None, false);
                let pooled = model.heads().pooled(&fused);
                let out = graphs
                    .fusion
                    .run(ort::inputs![
                        "input_ids" => ort_i64(&ids),
                        "attention_mask" => ort_i64(&mask),
                        "pixel_values" => ort_f32(&px),
                    ])
                    .unwrap();
                let figures = compare(
                    &format!("{case} vqa_logits"),
                    out["vqa_logits"].try_extract_tensor::<f32>().unwrap(),
                    &vqa.forward(&pooled),
                    gate,
                );
                let entry = worst.entry("vqa_logits").or_insert((0.0, 1.0));
                *entry = (entry.0.max(figures.0), entry.1.min(figures.1));
            }
        });
        for (output, (max_abs, cosine)) in &worst {
            println!("{tag} worst {output:<14} max|Δ| = {max_abs:.3e}  cosine = {cosine:.9}");
        }
    }
}

/// `vlbeit-train init` writes what pretraining writes: its checkpoint exports to a bundle whose
/// parity gate (golden/ replayed from the raw PNGs and texts) passes.
#[test]
fn an_initialized_checkpoint_exports_to_a_verified_bundle() {
    use vlbeit_core::scenes::{SceneConfig, SceneGenerator};
    use vlbeit_core::text::{TextTokenizer, TrainOptions};
    let root = tempfile::tempdir().unwrap();
    let generator = SceneGenerator::new(SceneConfig::default()).unwrap();
    let texts: Vec<String> = (0..300).map(|i| generator.corpus_sentence(i)).collect();
    let tokenizer = root.path().join("tokenizer.json");
    TextTokenizer::train(&texts, &TrainOptions::default().with_vocab_size(300))
        .unwrap()
        .save(&tokenizer)
        .unwrap();
    let args = vlbeit_train::cli::init::InitArgs {
        config: "tiny".into(),
        tokenizer,
        out: root.path().join("ckpt"),
        seed: 1,
        force: false,
    };
    vlbeit_train::cli::init::init(&args).unwrap();
    let options = vlbeit_export::BundleOptions {
        verify: true,
        ..vlbeit_export::BundleOptions::default()
    };
    let report =
        vlbeit_export::export_bundle(&args.out, &root.path().join("bundle"), &options).unwrap();
    let parity = report.parity.expect("the gate ran");
    assert!(parity.passed, "{parity:?}");
}
