//! libvlbeit from C and C++: the header compiles as C11 and C++17 with -Wall -Wextra -Werror;
//! the examples (examples/Makefile, through the vlbeit.pc that scripts/pkgconfig.sh writes) are
//! built against both libvlbeit.so and libvlbeit.a and run on a bundle exported from a tiny
//! checkpoint, their printed numbers checked against the Rust API; the error paths from C
//! (tests/c/abi_check.c); and the examples under valgrind with zero leaks and errors
//! attributable to libvlbeit (tests/c/valgrind.supp holds ONNX Runtime's one-time allocations).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use vlbeit::core::scenes::{SceneConfig, SceneGenerator, Split};
use vlbeit::{
    ExecutionProvider, FlatIndex, ImageSource, IndexEntry, Modality, Model, ModelOptions, Query,
    Runtime, RuntimeOptions,
};

const LINKS: [&str; 2] = ["shared", "static"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Where cargo put libvlbeit.so and libvlbeit.a for this test: building the `vlbeit`
/// dependency of this crate builds all its crate types into `target/<profile>/deps`, with the
/// features of this very build (no second cargo run, no rebuild of dependencies).
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().to_owned()
}

struct Fixture {
    root: PathBuf,
    bundle: PathBuf,
    images: PathBuf,
    /// (path, caption, tight RGB8 pixels) of each scene image.
    scenes: Vec<(PathBuf, String, Vec<u8>)>,
}

fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"))
}

fn must(command: &mut Command) -> String {
    let output = run(command);
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Writes the pkg-config files for the libraries cargo built, then builds the examples and the
/// ABI checker with examples/Makefile for both links.
fn build_programs(root: &Path) {
    let started = std::time::Instant::now();
    let lib = lib_dir();
    for file in ["libvlbeit.so", "libvlbeit.a"] {
        assert!(
            lib.join(file).is_file(),
            "{} was not built",
            lib.join(file).display()
        );
    }
    let pkgconfig = must(
        Command::new("bash")
            .arg(repo_root().join("scripts/pkgconfig.sh"))
            .arg(&lib),
    );
    for link in LINKS {
        let out = root.join(link);
        let make = |extra: &[&str]| {
            let mut command = Command::new("make");
            command
                .arg("-C")
                .arg(repo_root().join("examples"))
                .arg(format!("LINK={link}"))
                .arg(format!("OUT={}", out.display()))
                .args(extra)
                .env("PKG_CONFIG_PATH", pkgconfig.trim());
            must(&mut command);
        };
        make(&[]);
        let checker = repo_root().join("tests/c/abi_check.c");
        make(&[
            &format!("{}/abi_check", out.display()),
            &format!("SRC={}", checker.display()),
        ]);
    }
    println!(
        "built libvlbeit and the C programs in {:.1?}",
        started.elapsed()
    );
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        tch::set_num_threads(1);
        // A fixed directory, emptied at every run: the fixture lives in a static that is never
        // dropped, and the statically linked debug programs take ~170 MB each, so a temporary
        // directory per run would pile up.
        let root = lib_dir().parent().unwrap().join("c-abi-test");
        if root.exists() {
            std::fs::remove_dir_all(&root).unwrap();
        }
        std::fs::create_dir_all(&root).unwrap();
        let (_, bundle) = vlbeit_tests::verified_bundle(&root);
        let images = root.join("images");
        std::fs::create_dir_all(&images).unwrap();
        let generator = SceneGenerator::new(SceneConfig {
            image_size: 32,
            seed: 17,
        })
        .unwrap();
        let scenes = (0..4)
            .map(|i| {
                let scene = generator.generate(Split::Test, i);
                let path = images.join(format!("{}.png", scene.key));
                std::fs::write(&path, &scene.png).unwrap();
                (path, scene.captions[0].clone(), scene.pixels.clone())
            })
            .collect();
        build_programs(&root);
        Fixture {
            root,
            bundle,
            images,
            scenes,
        }
    })
}

fn program(link: &str, name: &str) -> PathBuf {
    fixture().root.join(link).join(name)
}

/// A command that runs a C program as a user would: without the LD_LIBRARY_PATH cargo sets for
/// tests (it takes precedence over the rpath and names target/debug, where an older
/// libvlbeit.so may lie), so the program finds libvlbeit.so through the rpath of vlbeit.pc.
fn c_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new(program);
    command.env_remove("LD_LIBRARY_PATH");
    command
}

fn model() -> Model {
    let runtime = Runtime::new(RuntimeOptions::default()).unwrap();
    let options = ModelOptions::default().with_provider(ExecutionProvider::Cpu { threads: 1 });
    Model::load(&runtime, &fixture().bundle, options).unwrap()
}

/// The floats after `label` on the line starting with it.
fn floats(stdout: &str, label: &str) -> Vec<f32> {
    let line = stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(label))
        .unwrap_or_else(|| panic!("no line {label:?} in:\n{stdout}"));
    line.split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect()
}

/// `key=value` on a line.
fn field(line: &str, key: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        .to_owned()
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        // Printed with 6 decimals.
        assert!((g - w).abs() <= 2e-6, "{what}[{i}]: C {g} vs Rust {w}");
    }
}

#[test]
fn header_and_wrapper_compile_as_c11_and_cpp17_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let include = repo_root().join("include");
    let cpp = repo_root().join("bindings/cpp");
    let c_file = dir.path().join("header.c");
    std::fs::write(
        &c_file,
        "#include \"vlbeit.h\"\nint main(void) { return 0; }\n",
    )
    .unwrap();
    let cpp_file = dir.path().join("header.cpp");
    std::fs::write(
        &cpp_file,
        "#include \"vlbeit.h\"\n#include \"vlbeit.hpp\"\nint main() { return 0; }\n",
    )
    .unwrap();
    let flags = ["-Wall", "-Wextra", "-Werror", "-pedantic", "-fsyntax-only"];
    must(
        Command::new("cc")
            .arg("-std=c11")
            .args(flags)
            .arg("-I")
            .arg(&include)
            .arg(&c_file),
    );
    must(
        Command::new("c++")
            .arg("-std=c++17")
            .args(flags)
            .arg("-I")
            .arg(&include)
            .arg("-I")
            .arg(&cpp)
            .arg(&cpp_file),
    );
}

#[test]
fn c_error_paths_are_reported_without_crashing() {
    let f = fixture();
    let (png, _, pixels) = &f.scenes[0];
    let raw = f.root.join("scene0.rgb");
    std::fs::write(&raw, pixels).unwrap();
    let want = model()
        .embed_images(&[ImageSource::Path(png)])
        .unwrap()
        .data;
    for link in LINKS {
        let stdout = must(
            c_command(program(link, "abi_check"))
                .arg(&f.bundle)
                .arg(png)
                .arg(&raw)
                .args(["32", "32"]),
        );
        println!("{link}:\n{stdout}");
        assert!(stdout.contains("checks ") && stdout.trim_end().ends_with("passed"));
        assert!(stdout.contains("ok answer without a VQA head: VLBEIT_ERROR_MISSING_HEAD"));
        assert_close(
            &format!("{link}: png embedding"),
            &floats(&stdout, "png"),
            &want,
        );
    }
}

fn rust_hits(query: &str, top_k: usize, rerank_k: usize) -> Vec<vlbeit::Hit> {
    let model = model();
    let mut paths: Vec<PathBuf> = fixture().scenes.iter().map(|s| s.0.clone()).collect();
    paths.sort();
    let sources: Vec<ImageSource> = paths.iter().map(|p| ImageSource::Path(p)).collect();
    let mut index = FlatIndex::new(&model, Modality::Image);
    let entries = paths
        .iter()
        .map(|p| IndexEntry {
            id: p.file_name().unwrap().to_string_lossy().into_owned(),
            source: Some(p.canonicalize().unwrap().display().to_string()),
            metadata: None,
        })
        .collect();
    index
        .add(entries, &model.embed_images(&sources).unwrap())
        .unwrap();
    model
        .retrieve(&index, Query::Text(query), top_k, rerank_k)
        .unwrap()
}

#[test]
fn retrieve_example_prints_what_the_rust_api_retrieves() {
    let f = fixture();
    let query = f.scenes[2].1.clone();
    let want = rust_hits(&query, 3, 2);
    for link in LINKS {
        let index_file = f.root.join(format!("{link}.vlbidx"));
        let stdout = must(
            c_command(program(link, "retrieve"))
                .arg(&f.bundle)
                .arg(&f.images)
                .arg(&query)
                .args(["3", "2"])
                .arg(&index_file),
        );
        println!("{link}:\n{stdout}");
        assert!(stdout.contains("indexed 4 images (dim 16)"), "{stdout}");
        assert!(index_file.is_file(), "the example saved its index");
        let hits: Vec<&str> = stdout.lines().filter(|l| l.starts_with("hit ")).collect();
        assert_eq!(hits.len(), want.len(), "{stdout}");
        for (line, hit) in hits.iter().zip(&want) {
            assert_eq!(line.split_whitespace().nth(2).unwrap(), hit.id, "{line}");
            let similarity: f32 = field(line, "similarity").parse().unwrap();
            assert!(
                (similarity - hit.similarity).abs() <= 2e-6,
                "{line} vs {hit:?}"
            );
            let reranked = field(line, "reranked") == "1";
            assert_eq!(reranked, hit.match_score.is_some(), "{line}");
            if let Some(score) = hit.match_score {
                let got: f32 = field(line, "match").parse().unwrap();
                assert!((got - score).abs() <= 2e-6, "{line} vs {hit:?}");
            }
            assert_eq!(
                field(line, "dual_rank"),
                hit.dual_rank.to_string(),
                "{line}"
            );
        }
    }
}

#[test]
fn answer_example_fails_clearly_on_a_bundle_without_a_vqa_head() {
    let f = fixture();
    for link in LINKS {
        let output = run(c_command(program(link, "answer"))
            .arg(&f.bundle)
            .arg(&f.scenes[0].0)
            .arg("what colour is the circle?"));
        let stderr = String::from_utf8_lossy(&output.stderr);
        println!("{link}: {stderr}");
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("VLBEIT_ERROR_MISSING_HEAD"), "{stderr}");
        assert!(stderr.contains("no vqa head"), "{stderr}");
        assert!(
            stderr.contains("vlbeit-train finetune --task vqa"),
            "{stderr}"
        );
        assert!(output.stdout.is_empty(), "nothing printed on stdout");
    }
}

/// The fixture's checkpoint fine-tuned for VQA for a few steps, exported with the parity gate.
fn vqa_bundle() -> PathBuf {
    use vlbeit_train::finetune::{FinetuneConfig, Task, finetune};
    let root = &fixture().root;
    let mut c = FinetuneConfig::new(
        Task::Vqa,
        root.join("run/checkpoint"),
        root.join("scenes"),
        root.join("finetune-vqa"),
    );
    c.steps = 3;
    c.batch_size = 4;
    c.warmup_steps = 1;
    c.eval_batch_size = 16;
    c.skip_eval = true;
    c.progress = false;
    let outcome = finetune(&c).unwrap();
    let bundle = root.join("bundle-vqa");
    let options = vlbeit_export::BundleOptions {
        verify: true,
        ..Default::default()
    };
    vlbeit_export::export_bundle(&outcome.checkpoint, &bundle, &options).unwrap();
    bundle
}

#[test]
fn answer_example_prints_the_rust_api_answers_for_a_vqa_bundle() {
    let f = fixture();
    let bundle = vqa_bundle();
    let (png, _, _) = &f.scenes[0];
    let question = "what colour is the circle?";
    let runtime = Runtime::new(RuntimeOptions::default()).unwrap();
    let options = ModelOptions::default().with_provider(ExecutionProvider::Cpu { threads: 1 });
    let model = Model::load(&runtime, &bundle, options).unwrap();
    let want = model.answer(ImageSource::Path(png), question, 3).unwrap();
    assert_eq!(want.len(), 3);
    for link in LINKS {
        let stdout = must(
            c_command(program(link, "answer"))
                .arg(&bundle)
                .arg(png)
                .arg(question)
                .arg("3"),
        );
        println!("{link}:\n{stdout}");
        let answers: Vec<&str> = stdout
            .lines()
            .filter(|l| l.starts_with("answer "))
            .collect();
        assert_eq!(answers.len(), want.len(), "{stdout}");
        for (line, answer) in answers.iter().zip(&want) {
            let (head, score) = line.rsplit_once(" score=").unwrap();
            let label = head.splitn(3, ' ').nth(2).unwrap();
            assert_eq!(label, answer.label, "{line}");
            let score: f32 = score.parse().unwrap();
            assert!((score - answer.score).abs() <= 2e-6, "{line} vs {answer:?}");
        }
    }
}

#[test]
fn threads_example_agrees_across_workers_and_with_the_rust_api() {
    let f = fixture();
    let text = "two blue squares";
    let paths: Vec<&PathBuf> = f.scenes.iter().map(|s| &s.0).collect();
    let model = model();
    let sources: Vec<ImageSource> = paths.iter().map(|p| ImageSource::Path(p)).collect();
    let images = model.embed_images(&sources).unwrap();
    let texts = model.embed_texts(&[text]).unwrap();
    for link in LINKS {
        let stdout = must(
            c_command(program(link, "threads"))
                .arg(&f.bundle)
                .arg("4")
                .arg(text)
                .args(&paths),
        );
        println!("{link}:\n{stdout}");
        assert!(
            stdout.starts_with("threads 4 images 4 dim 16 max_diff 0"),
            "{stdout}"
        );
        for i in 0..paths.len() {
            let line = stdout
                .lines()
                .find(|l| l.starts_with(&format!("image {i} ")))
                .unwrap();
            let got: Vec<f32> = line
                .split_whitespace()
                .skip(2)
                .map(|v| v.parse().unwrap())
                .collect();
            assert_close(&format!("{link}: image {i}"), &got, images.row(i));
        }
        assert_close(
            &format!("{link}: text"),
            &floats(&stdout, "text"),
            texts.row(0),
        );
    }
}

#[test]
fn cpp_example_prints_what_the_rust_api_computes() {
    let f = fixture();
    let (png, caption, _) = &f.scenes[1];
    let texts = [caption.as_str(), "a small green triangle"];
    let model = model();
    let image = model.embed_images(&[ImageSource::Path(png)]).unwrap();
    let text = model.embed_texts(&texts).unwrap();
    for link in LINKS {
        let stdout = must(
            c_command(program(link, "match"))
                .arg(&f.bundle)
                .arg(png)
                .args(texts),
        );
        println!("{link}:\n{stdout}");
        for (i, t) in texts.iter().enumerate() {
            let line = stdout
                .lines()
                .find(|l| l.starts_with(&format!("text {i} ")))
                .unwrap();
            let cosine: f32 = field(line, "cosine").parse().unwrap();
            let want: f32 = image
                .row(0)
                .iter()
                .zip(text.row(i))
                .map(|(a, b)| a * b)
                .sum();
            assert!((cosine - want).abs() <= 1e-5, "{line}: cosine {want}");
            let score: f32 = field(line, "match").parse().unwrap();
            let want = model.match_score(ImageSource::Path(png), t).unwrap();
            assert!((score - want).abs() <= 2e-6, "{line}: match {want}");
        }
        assert_eq!(
            stdout.lines().filter(|l| l.starts_with("caption ")).count(),
            2,
            "{stdout}"
        );
        assert!(
            stdout.contains("classify: VLBEIT_ERROR_MISSING_HEAD"),
            "the wrapper throws vlbeit::Error with the status: {stdout}"
        );
    }
}

/// `definitely lost`, `indirectly lost` and the error count of a valgrind log.
fn valgrind_summary(log: &str) -> (u64, u64, u64) {
    valgrind_numbers(
        log,
        ["definitely lost: ", "indirectly lost: ", "ERROR SUMMARY: "],
    )
}

fn valgrind_numbers(log: &str, prefixes: [&str; 3]) -> (u64, u64, u64) {
    let number = |prefix: &str| -> u64 {
        log.lines()
            .find_map(|l| l.split_once(prefix).map(|(_, rest)| rest))
            .and_then(|rest| rest.split_whitespace().next())
            .map(|n| n.replace(',', "").parse().unwrap())
            .unwrap_or(0)
    };
    (
        number(prefixes[0]),
        number(prefixes[1]),
        number(prefixes[2]),
    )
}

#[test]
fn examples_run_clean_under_valgrind() {
    if Command::new("valgrind").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("VLBEIT_SKIP_VALGRIND").is_some(),
            "valgrind is not installed (apt-get install valgrind), or set VLBEIT_SKIP_VALGRIND=1"
        );
        return;
    }
    let f = fixture();
    let (png, _, pixels) = &f.scenes[0];
    let raw = f.root.join("valgrind.rgb");
    std::fs::write(&raw, pixels).unwrap();
    let suppressions = repo_root().join("tests/c/valgrind.supp");
    let runs: Vec<(&str, Vec<std::ffi::OsString>)> = vec![
        (
            "abi_check",
            vec![
                f.bundle.clone().into(),
                png.clone().into(),
                raw.clone().into(),
                "32".into(),
                "32".into(),
            ],
        ),
        (
            "retrieve",
            vec![
                f.bundle.clone().into(),
                f.images.clone().into(),
                "a red circle".into(),
                "2".into(),
                "1".into(),
            ],
        ),
        (
            "threads",
            vec![
                f.bundle.clone().into(),
                "2".into(),
                "a red circle".into(),
                png.clone().into(),
            ],
        ),
        (
            "match",
            vec![
                f.bundle.clone().into(),
                png.clone().into(),
                "a red circle".into(),
            ],
        ),
    ];
    for (name, args) in runs {
        let started = std::time::Instant::now();
        let log = f.root.join(format!("valgrind-{name}.log"));
        let output = run(c_command("valgrind")
            .arg("--leak-check=full")
            .arg("--error-exitcode=1")
            .arg("--errors-for-leak-kinds=definite,indirect")
            .arg(format!("--suppressions={}", suppressions.display()))
            .arg(format!("--log-file={}", log.display()))
            .arg(program("shared", name))
            .args(&args));
        let text = std::fs::read_to_string(&log).unwrap();
        let (definite, indirect, errors) = valgrind_summary(&text);
        let (possibly, reachable, suppressed) = valgrind_numbers(
            &text,
            ["possibly lost: ", "still reachable: ", "(suppressed: "],
        );
        println!(
            "valgrind {name}: definitely lost {definite} B, indirectly lost {indirect} B, \
             possibly lost {possibly} B, still reachable {reachable} B, {errors} errors \
             ({suppressed} suppressed) in {:.1?}",
            started.elapsed()
        );
        assert!(
            output.status.success() && definite == 0 && indirect == 0 && errors == 0,
            "valgrind {name} ({}):\n{}\n{text}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
