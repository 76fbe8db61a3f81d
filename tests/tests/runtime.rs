//! The runtime on a real bundle: a tiny pretrained checkpoint exported with the parity gate, then
//! served by `vlbeit::Model` from raw inputs (PNG files, bytes, RGB8 buffers, strings) and checked
//! against the trainer's golden outputs; concurrency, bad input, tampered bundles, indexes of
//! other bundles, strict GPU requests on this CPU-only machine, retrieval with rerank, the CLI.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use vlbeit::core::scenes::{SceneConfig, SceneGenerator, Split};
use vlbeit::{
    Error, ExecutionProvider, FlatIndex, ImageSource, IndexEntry, Modality, Model, ModelOptions,
    Query, Rgb8Image, Runtime, RuntimeOptions, TensorRtOptions,
};
use vlbeit_export::max_abs_and_cosine;

struct Fixture {
    root: PathBuf,
    bundle: PathBuf,
}

/// Built once per run in `target/<profile>/runtime-test` (emptied first): a static is never
/// dropped, so a temp dir would be left behind at every run.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        tch::set_num_threads(1);
        let exe = std::env::current_exe().unwrap();
        let root = exe.parent().unwrap().parent().unwrap().join("runtime-test");
        if root.exists() {
            std::fs::remove_dir_all(&root).unwrap();
        }
        std::fs::create_dir_all(&root).unwrap();
        let (_, bundle) = vlbeit_tests::verified_bundle(&root);
        Fixture { root, bundle }
    })
}

fn runtime() -> Runtime {
    Runtime::new(RuntimeOptions::default()).unwrap()
}

fn model(options: ModelOptions) -> Model {
    Model::load(&runtime(), &fixture().bundle, options).unwrap()
}

fn cpu1() -> ModelOptions {
    ModelOptions::default().with_provider(ExecutionProvider::Cpu { threads: 1 })
}

/// `golden/` of a bundle: the raw inputs the trainer recorded and its outputs for them.
struct Golden {
    /// Image files, in output row order.
    files: Vec<PathBuf>,
    texts: Vec<String>,
    /// `(image, text)` indices per fusion output row.
    pairs: Vec<(usize, usize)>,
    outputs: Vec<u8>,
}

impl Golden {
    fn read(bundle: &Path) -> Self {
        let dir = bundle.join("golden");
        let inputs: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("inputs.json")).unwrap()).unwrap();
        let strings = |key: &str| -> Vec<String> {
            inputs[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        };
        Self {
            files: strings("images").iter().map(|f| dir.join(f)).collect(),
            texts: strings("texts"),
            pairs: inputs["pairs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p[0].as_u64().unwrap() as usize,
                        p[1].as_u64().unwrap() as usize,
                    )
                })
                .collect(),
            outputs: std::fs::read(dir.join("outputs.safetensors")).unwrap(),
        }
    }

    /// The golden pairs as requests: (image file, text).
    fn pair_requests(&self) -> Vec<(ImageSource<'_>, &str)> {
        self.pairs
            .iter()
            .map(|&(i, t)| {
                (
                    ImageSource::Path(self.files[i].as_path()),
                    self.texts[t].as_str(),
                )
            })
            .collect()
    }

    /// A golden tensor as f32 values.
    fn tensor(&self, name: &str) -> Vec<f32> {
        let file = safetensors::SafeTensors::deserialize(&self.outputs).unwrap();
        file.tensor(name)
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let (max_abs, cosine) = max_abs_and_cosine(got, want);
    println!("{what}: max |Δ| {max_abs:.3e}, cosine {cosine:.9}");
    assert!(
        max_abs <= 1e-4 && cosine >= 0.99999,
        "{what}: {max_abs} {cosine}"
    );
}

/// Val scenes of the fixture's size (32 px), as PNG files in `dir`.
fn scene_files(dir: &Path, n: u64) -> Vec<(PathBuf, String, Vec<u8>)> {
    std::fs::create_dir_all(dir).unwrap();
    let generator = SceneGenerator::new(SceneConfig {
        image_size: 32,
        seed: 11,
    })
    .unwrap();
    (0..n)
        .map(|i| {
            let scene = generator.generate(Split::Test, i);
            let path = dir.join(format!("{}.png", scene.key));
            std::fs::write(&path, &scene.png).unwrap();
            (path, scene.captions[0].clone(), scene.pixels.clone())
        })
        .collect()
}

#[test]
fn verify_replays_the_golden_set_within_fp32_tolerance() {
    let model = model(cpu1());
    let report = vlbeit::verify::verify(&model).unwrap();
    assert!(report.passed, "{:?}", report.failures());
    assert_eq!(report.provider, "cpu");
    assert_eq!(report.outputs.len(), 5);
    for o in &report.outputs {
        println!("{}: {:.3e} {:.9}", o.output, o.max_abs, o.cosine);
    }
}

#[test]
fn embeddings_and_match_scores_from_raw_inputs_match_the_trainer() {
    let model = model(cpu1());
    let golden = Golden::read(&fixture().bundle);
    let files = &golden.files;
    let sources: Vec<ImageSource<'_>> = files.iter().map(|p| ImageSource::Path(p)).collect();
    let images = model.embed_images(&sources).unwrap();
    assert_close(
        "image_embeds from PNG files",
        &images.data,
        &golden.tensor("image_embeds"),
    );

    // Same images as bytes, split into batches of 2 (pipelined preprocessing).
    let bytes: Vec<Vec<u8>> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let batched = Model::load(&runtime(), &fixture().bundle, cpu1().with_max_batch(2)).unwrap();
    let encoded: Vec<ImageSource<'_>> = bytes.iter().map(|b| ImageSource::Encoded(b)).collect();
    let again = batched.embed_images(&encoded).unwrap();
    assert_close("image_embeds in batches of 2", &again.data, &images.data);

    let text = model.embed_texts(&golden.texts).unwrap();
    assert_close(
        "text_embeds from strings",
        &text.data,
        &golden.tensor("text_embeds"),
    );

    let pairs = golden.pair_requests();
    let scores = model.match_scores(&pairs).unwrap();
    let logits = golden.tensor("itm_logits");
    let want: Vec<f32> = logits
        .chunks_exact(2)
        .map(|l| {
            let (a, b) = (f64::from(l[0]), f64::from(l[1]));
            (1.0 / (1.0 + (a - b).exp())) as f32
        })
        .collect();
    assert_close("ITM probabilities", &scores, &want);
    assert!(scores.iter().all(|p| (0.0..=1.0).contains(p)));
}

#[test]
fn rgb8_buffers_with_padded_rows_embed_like_their_png() {
    let model = model(cpu1());
    let dir = fixture().root.join("rgb8");
    let scenes = scene_files(&dir, 3);
    let (w, h) = (32u32, 32u32);
    let stride = w as usize * 3 + 7;
    let padded: Vec<Vec<u8>> = scenes
        .iter()
        .map(|(_, _, pixels)| {
            let mut out = vec![0xAB; stride * h as usize];
            for y in 0..h as usize {
                out[y * stride..y * stride + w as usize * 3]
                    .copy_from_slice(&pixels[y * w as usize * 3..(y + 1) * w as usize * 3]);
            }
            out
        })
        .collect();
    let rgb: Vec<ImageSource<'_>> = padded
        .iter()
        .map(|b| ImageSource::Rgb8(Rgb8Image::new(b, w, h, stride).unwrap()))
        .collect();
    let png: Vec<ImageSource<'_>> = scenes
        .iter()
        .map(|(p, _, _)| ImageSource::Path(p))
        .collect();
    assert_eq!(
        model.embed_images(&rgb).unwrap(),
        model.embed_images(&png).unwrap(),
        "PNG is lossless: identical pixels give identical embeddings"
    );
}

#[test]
fn eight_threads_on_one_model_get_the_serial_results() {
    let model = Arc::new(model(cpu1().with_pool_size(4).with_max_batch(3)));
    let dir = fixture().root.join("concurrency");
    let scenes = scene_files(&dir, 8);
    let work = |m: &Model, t: usize| {
        let (path, caption, _) = &scenes[t];
        let sources = [
            ImageSource::Path(path),
            ImageSource::Path(&scenes[(t + 1) % 8].0),
        ];
        let images = m.embed_images(&sources).unwrap();
        let texts = m.embed_texts(&[caption.as_str(), "a shape"]).unwrap();
        let score = m.match_score(ImageSource::Path(path), caption).unwrap();
        (images, texts, score)
    };
    let serial: Vec<_> = (0..8).map(|t| work(&model, t)).collect();
    // Scoped threads so the closures can borrow the scenes.
    let parallel: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let model = &model;
                let work = &work;
                scope.spawn(move || (0..3).map(|_| work(model, t)).collect::<Vec<_>>())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (t, runs) in parallel.iter().enumerate() {
        for run in runs {
            assert_eq!(run, &serial[t], "thread {t} differs from the serial result");
        }
    }
}

#[test]
fn a_corrupt_image_in_a_batch_is_named_by_its_request_position() {
    let model = model(cpu1().with_max_batch(2));
    let dir = fixture().root.join("corrupt");
    let scenes = scene_files(&dir, 4);
    let mut bytes: Vec<Vec<u8>> = scenes
        .iter()
        .map(|(p, _, _)| std::fs::read(p).unwrap())
        .collect();
    let half = bytes[3].len() / 2;
    bytes[3].truncate(half);
    let sources: Vec<ImageSource<'_>> = bytes.iter().map(|b| ImageSource::Encoded(b)).collect();
    let err = model.embed_images(&sources).unwrap_err();
    assert!(matches!(err, Error::Image { index: 3, .. }), "{err}");
    assert!(err.to_string().contains("image 3"), "{err}");

    let missing = dir.join("absent.png");
    let sources = [ImageSource::Path(&scenes[0].0), ImageSource::Path(&missing)];
    let err = model.embed_images(&sources).unwrap_err();
    assert!(matches!(err, Error::ImageFile { index: 1, .. }), "{err}");
    assert!(err.to_string().contains("absent.png"), "{err}");

    let not_image = b"this is plain text, not an image".to_vec();
    let err = model
        .match_score(ImageSource::Encoded(&not_image), "a red circle")
        .unwrap_err();
    assert!(matches!(err, Error::Image { index: 0, .. }), "{err}");
}

#[test]
fn empty_texts_are_errors_and_long_texts_are_truncated() {
    let model = model(cpu1().with_max_batch(2));
    let err = model
        .embed_texts(&["a red circle", "a blue star", "   "])
        .unwrap_err();
    assert!(matches!(err, Error::Text { index: 2, .. }), "{err}");
    assert!(err.to_string().contains("text 2"), "{err}");

    // Past max_len tokens, more words change nothing: the encoding is cut there.
    let long = "a red circle next to a blue square ".repeat(20);
    let longer = format!("{long} and then many more green triangles");
    let e = model
        .embed_texts(&[long.as_str(), longer.as_str()])
        .unwrap();
    assert_eq!(e.row(0), e.row(1));
}

#[test]
fn a_model_loaded_from_memory_equals_one_loaded_from_disk() {
    let from_disk = model(cpu1());
    let files = vlbeit::Bundle::read_dir_into_memory(&fixture().bundle).unwrap();
    let from_memory = Model::load_from_memory(&runtime(), files, cpu1()).unwrap();
    assert_eq!(from_disk.bundle().sha256(), from_memory.bundle().sha256());
    let texts = ["a red circle", "two green squares"];
    assert_eq!(
        from_disk.embed_texts(&texts).unwrap(),
        from_memory.embed_texts(&texts).unwrap()
    );
    let report = vlbeit::verify::verify(&from_memory).unwrap();
    assert!(report.passed);
}

fn tampered(name: &str, edit: impl FnOnce(&Path)) -> Error {
    let dir = fixture().root.join(format!("tampered-{name}"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    vlbeit_tests::copy_dir(&fixture().bundle, &dir);
    edit(&dir);
    Model::load(&runtime(), &dir, cpu1()).unwrap_err()
}

fn edit_manifest(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut manifest);
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
}

#[test]
fn tampered_bundles_are_refused_naming_the_file_and_the_mismatch() {
    let err = tampered("changed-graph", |dir| {
        let path = dir.join("text_encoder.onnx");
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        std::fs::write(&path, bytes).unwrap();
    });
    let text = err.to_string();
    assert!(matches!(err, Error::BundleFile { .. }), "{text}");
    assert!(
        text.contains("text_encoder.onnx") && text.contains("sha256"),
        "{text}"
    );

    let err = tampered("missing-graph", |dir| {
        std::fs::remove_file(dir.join("fusion_encoder.onnx")).unwrap()
    });
    assert!(err.to_string().contains("fusion_encoder.onnx"), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");

    let err = tampered("renamed-input", |dir| {
        edit_manifest(dir, |m| {
            m["graphs"]["text_encoder.onnx"]["inputs"][0]["name"] = "token_ids".into()
        })
    });
    let text = err.to_string();
    assert!(matches!(err, Error::Signature { .. }), "{text}");
    assert!(
        text.contains("token_ids") && text.contains("input_ids"),
        "{text}"
    );

    let err = tampered("wrong-dtype", |dir| {
        edit_manifest(dir, |m| {
            m["graphs"]["image_encoder.onnx"]["outputs"][0]["dtype"] = "float16".into()
        })
    });
    assert!(err.to_string().contains("image_embeds"), "{err}");

    let err = tampered("format-version", |dir| {
        edit_manifest(dir, |m| m["format_version"] = 2.into())
    });
    assert!(err.to_string().contains("format_version 2"), "{err}");

    let err = tampered("unknown-field", |dir| {
        edit_manifest(dir, |m| m["surprise"] = true.into())
    });
    assert!(err.to_string().contains("surprise"), "{err}");

    let err = Model::load(&runtime(), &fixture().root.join("no-such-bundle"), cpu1()).unwrap_err();
    assert!(err.to_string().contains("no-such-bundle"), "{err}");
}

#[test]
fn strict_gpu_requests_on_a_cpu_only_onnx_runtime_fail_with_the_reason() {
    let runtime = runtime();
    let providers = runtime.available_providers().unwrap();
    assert!(
        !providers.iter().any(|p| p == "CUDAExecutionProvider"),
        "this test expects the CPU wheel; found {providers:?}"
    );
    for provider in [
        ExecutionProvider::Cuda { device: 0 },
        ExecutionProvider::TensorRt(TensorRtOptions {
            fp16: true,
            engine_cache_dir: Some(fixture().root.join("trt-cache")),
            ..Default::default()
        }),
    ] {
        let kind = provider.kind();
        let options = ModelOptions::default().with_provider(provider);
        let err = Model::load(&runtime, &fixture().bundle, options.clone()).unwrap_err();
        let text = err.to_string();
        println!("{text}");
        assert!(matches!(err, Error::ProviderUnavailable { .. }), "{text}");
        assert!(text.contains(kind) && text.contains("strict"), "{text}");
        assert!(
            text.contains("CPUExecutionProvider"),
            "names what is available: {text}"
        );

        // Not strict: it loads on CPU and says why.
        let model = Model::load(&runtime, &fixture().bundle, options.with_strict(false)).unwrap();
        for report in model.provider_reports() {
            assert_eq!(report.registered, vec!["CPUExecutionProvider".to_owned()]);
            assert!(report.fallback_reason.is_some(), "{report:?}");
        }
        assert!(vlbeit::verify::verify(&model).unwrap().passed);
    }
}

#[test]
fn retrieval_reranks_the_dual_encoders_top_k_by_match_probability() {
    let model = model(cpu1());
    let dir = fixture().root.join("gallery");
    let scenes = scene_files(&dir, 12);
    let mut index = FlatIndex::new(&model, Modality::Image);
    let sources: Vec<ImageSource<'_>> = scenes
        .iter()
        .map(|(p, _, _)| ImageSource::Path(p))
        .collect();
    let entries = scenes
        .iter()
        .map(|(p, caption, _)| IndexEntry {
            id: p.file_name().unwrap().to_string_lossy().into_owned(),
            source: Some(p.file_name().unwrap().to_string_lossy().into_owned()),
            metadata: Some(caption.clone()),
        })
        .collect();
    index
        .add(entries, &model.embed_images(&sources).unwrap())
        .unwrap();
    let path = dir.join("gallery.vlbidx");
    index.save(&path).unwrap();
    let index = FlatIndex::load(&path).unwrap();

    let query = scenes[0].1.as_str();
    let dual = model.retrieve(&index, Query::Text(query), 8, 0).unwrap();
    assert!(dual.iter().all(|h| h.match_score.is_none()));
    assert!(dual.windows(2).all(|w| w[0].similarity >= w[1].similarity));
    let reranked = model.retrieve(&index, Query::Text(query), 8, 5).unwrap();
    assert_eq!(reranked.len(), 8);
    // The first 5 are the dual encoder's top 5, reordered by ITM probability (which is the
    // fusion encoder's score for exactly that pair); the rest keep the dual order.
    let mut top5: Vec<&str> = dual[..5].iter().map(|h| h.id.as_str()).collect();
    let mut re5: Vec<&str> = reranked[..5].iter().map(|h| h.id.as_str()).collect();
    top5.sort();
    re5.sort();
    assert_eq!(top5, re5);
    assert!(
        reranked[..5]
            .windows(2)
            .all(|w| w[0].match_score >= w[1].match_score)
    );
    assert_eq!(
        reranked[5..].iter().map(|h| &h.id).collect::<Vec<_>>(),
        dual[5..].iter().map(|h| &h.id).collect::<Vec<_>>()
    );
    for hit in &reranked[..5] {
        let (path, _, _) = scenes
            .iter()
            .find(|(p, _, _)| p.ends_with(&hit.id))
            .unwrap();
        let direct = model.match_score(ImageSource::Path(path), query).unwrap();
        assert!((direct - hit.match_score.unwrap()).abs() < 1e-6);
    }

    // Image → text over an index of captions.
    let mut texts = FlatIndex::new(&model, Modality::Text);
    let captions: Vec<&str> = scenes.iter().map(|(_, c, _)| c.as_str()).collect();
    let entries = captions
        .iter()
        .map(|c| IndexEntry {
            id: c.to_string(),
            source: Some(c.to_string()),
            metadata: None,
        })
        .collect();
    texts
        .add(entries, &model.embed_texts(&captions).unwrap())
        .unwrap();
    let hits = model
        .retrieve(&texts, Query::Image(ImageSource::Path(&scenes[3].0)), 4, 4)
        .unwrap();
    assert_eq!(hits.len(), 4);
    assert!(hits.iter().all(|h| h.match_score.is_some()));

    // A query of the wrong modality for the index is refused.
    let err = model
        .retrieve(&texts, Query::Text("a red circle"), 3, 0)
        .unwrap_err();
    assert!(err.to_string().contains("holds texts"), "{err}");
}

#[test]
fn an_index_built_by_another_bundle_is_refused() {
    let model = model(cpu1());
    let mut index = FlatIndex::with_identity(&"0".repeat(64), Modality::Image, model.embed_dim());
    let e = model.embed_texts(&["a red circle"]).unwrap();
    index
        .add(
            vec![IndexEntry {
                id: "x".into(),
                source: None,
                metadata: None,
            }],
            &e,
        )
        .unwrap();
    let err = model
        .retrieve(&index, Query::Text("a red circle"), 1, 0)
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Index { .. }), "{text}");
    assert!(
        text.contains("000000000000") && text.contains("rebuild"),
        "{text}"
    );
}

#[test]
fn tasks_without_their_head_say_how_to_get_one() {
    let model = model(cpu1());
    let dir = fixture().root.join("heads");
    let scenes = scene_files(&dir, 1);
    let err = model
        .answer(
            ImageSource::Path(&scenes[0].0),
            "what colour is the circle?",
            3,
        )
        .unwrap_err();
    assert!(err.to_string().contains("--task vqa"), "{err}");
    let err = model
        .classify(ImageSource::Path(&scenes[0].0), 3)
        .unwrap_err();
    assert!(err.to_string().contains("--task classify"), "{err}");
}

/// The `vlbeit` binary next to this test binary (cargo builds the workspace's binaries for
/// `cargo test`).
fn vlbeit_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("vlbeit")
}

#[test]
fn the_cli_verifies_indexes_and_searches_a_bundle() {
    let bundle = &fixture().bundle;
    let run = |args: &[&str]| {
        let out = std::process::Command::new(vlbeit_bin())
            .args(args)
            .output()
            .expect("the vlbeit binary is built by cargo test");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let b = bundle.to_str().unwrap();
    let (code, stdout, stderr) = run(&["verify", "--bundle", b, "--json"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["report"]["passed"], true);

    let dir = fixture().root.join("cli");
    scene_files(&dir.join("images"), 6);
    let index = dir.join("images.vlbidx");
    let images = dir.join("images");
    let (code, stdout, stderr) = run(&[
        "index",
        "--bundle",
        b,
        "--images",
        images.to_str().unwrap(),
        "--out",
        index.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["entries"], 6);
    let (code, stdout, stderr) = run(&[
        "search",
        "--bundle",
        b,
        "--index",
        index.to_str().unwrap(),
        "--text",
        "a red circle",
        "--top-k",
        "3",
        "--rerank",
        "3",
        "--json",
    ]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let hits: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(hits["hits"].as_array().unwrap().len(), 3);
    assert!(hits["hits"][0]["match_score"].is_number());

    // A bad provider and a missing bundle fail with a message, not a panic.
    let (code, _, stderr) = run(&["verify", "--bundle", b, "--provider", "cuda"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("CUDAExecutionProvider"), "{stderr}");
    let (code, _, stderr) = run(&["info", "/nonexistent/bundle"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("/nonexistent/bundle"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Fine-tunes the fixture's checkpoint for a few steps on `task` and exports it with the gate.
fn finetuned_bundle(task: vlbeit_train::finetune::Task, name: &str) -> PathBuf {
    use vlbeit_train::finetune::{FinetuneConfig, finetune};
    let root = &fixture().root;
    let mut c = FinetuneConfig::new(
        task,
        root.join("run/checkpoint"),
        root.join("scenes"),
        root.join(format!("finetune-{name}")),
    );
    c.steps = 3;
    c.batch_size = 4;
    c.warmup_steps = 1;
    c.eval_batch_size = 16;
    c.rerank_k = 3;
    c.progress = false;
    let outcome = finetune(&c).unwrap();
    let bundle = root.join(format!("bundle-{name}"));
    let options = vlbeit_export::BundleOptions {
        verify: true,
        ..Default::default()
    };
    vlbeit_export::export_bundle(&outcome.checkpoint, &bundle, &options).unwrap();
    bundle
}

#[test]
fn fine_tuned_vqa_and_classification_heads_answer_from_raw_inputs() {
    let runtime = runtime();
    let bundle = finetuned_bundle(vlbeit_train::finetune::Task::Vqa, "vqa");
    let model = Model::load(&runtime, &bundle, cpu1()).unwrap();
    let report = vlbeit::verify::verify(&model).unwrap();
    assert!(report.passed, "{:?}", report.failures());
    assert!(report.outputs.iter().any(|o| o.output == "vqa_logits"));

    // answer() on the golden pairs, all answers ranked, equals sigmoid(golden vqa_logits).
    let answers = model.manifest().heads.answers.clone().unwrap();
    let golden = Golden::read(&bundle);
    let ranked = model
        .answer_batch(&golden.pair_requests(), answers.len())
        .unwrap();
    let logits = golden.tensor("vqa_logits");
    for (row, ranked) in logits.chunks_exact(answers.len()).zip(&ranked) {
        assert_eq!(ranked.len(), answers.len());
        assert!(ranked.windows(2).all(|w| w[0].score >= w[1].score));
        for s in ranked {
            let want = 1.0 / (1.0 + (-f64::from(row[s.index])).exp());
            assert!(
                (f64::from(s.score) - want).abs() < 1e-5,
                "{}: {} vs {want}",
                s.label,
                s.score
            );
            assert_eq!(s.label, answers[s.index]);
        }
    }
    let top3 = model
        .answer(
            ImageSource::Path(&golden.files[0]),
            "what colour is the circle?",
            3,
        )
        .unwrap();
    assert_eq!(top3.len(), 3);

    let bundle = finetuned_bundle(vlbeit_train::finetune::Task::Classify, "classify");
    let model = Model::load(&runtime, &bundle, cpu1()).unwrap();
    assert!(vlbeit::verify::verify(&model).unwrap().passed);
    let classes = model.manifest().heads.classes.clone().unwrap();
    let all = model
        .classify(ImageSource::Path(&golden.files[0]), classes.len())
        .unwrap();
    let total: f32 = all.iter().map(|s| s.score).sum();
    assert!((total - 1.0).abs() < 1e-4, "softmax sums to {total}");
    assert!(all.iter().all(|s| classes[s.index] == s.label));
}
