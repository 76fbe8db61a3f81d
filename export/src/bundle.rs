//! The bundle directory (DESIGN.md §5): the three graphs, `tokenizer.json` and `golden/` copied
//! from the checkpoint, and `manifest.json`. Assembled in a temp dir next to the output and
//! renamed into place at the end, after the parity gate passed: a failed export leaves nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;
use sha2::Digest;
use vlbeit_core::config::PreprocessConfig;
use vlbeit_core::manifest::{GraphEntry, HeadLabels, Manifest, SourceCheckpoint};
use vlbeit_core::text::TokenizerSettings;

use crate::verify::{ParityReport, check_parity};
use crate::{ExportError, ExportOptions, ExportReport, export_graphs_with};

pub use vlbeit_core::manifest::{BUNDLE_FORMAT_VERSION, MANIFEST};

/// How [`export_bundle`] writes.
#[derive(Debug, Clone, Default)]
pub struct BundleOptions {
    /// Replace an existing non-empty output directory.
    pub force: bool,
    /// Run the parity gate on `golden/`; a bundle out of tolerance is refused.
    pub verify: bool,
    /// ONNX Runtime library for the gate (default: `vlbeit::Runtime`'s search order).
    pub ort_library: Option<PathBuf>,
    pub export: ExportOptions,
}

/// What [`export_bundle`] wrote.
#[derive(Debug, Clone)]
pub struct BundleReport {
    pub out_dir: PathBuf,
    /// The graphs, with paths inside `out_dir`.
    pub export: ExportReport,
    pub export_time: Duration,
    pub parity: Option<ParityReport>,
    /// The `manifest.json` written.
    pub manifest: Manifest,
}

/// The sections of the checkpoint's `config.json` the manifest repeats.
#[derive(Debug, Deserialize)]
struct ConfigSections {
    preprocess: PreprocessConfig,
    tokenizer: TokenizerSettings,
    pair_max_len: usize,
    #[serde(default)]
    heads: HeadLabels,
}

/// Removes the temp dir unless the bundle was moved into place.
pub(crate) struct TempDir(pub(crate) Option<PathBuf>);

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

/// Renames the finished `tmp` directory to `target`. A directory already at `target` is moved
/// aside first and removed only after the rename, so `target` always holds a complete tree (the
/// old one until the rename, then the new one).
pub(crate) fn replace_dir(tmp: &Path, target: &Path) -> Result<(), ExportError> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let old = target.with_file_name(format!(".{name}.old-{}", std::process::id()));
    let replaced = target.exists();
    if replaced {
        std::fs::rename(target, &old).map_err(io(target))?;
    }
    if let Err(e) = std::fs::rename(tmp, target) {
        if replaced {
            let _ = std::fs::rename(&old, target);
        }
        return Err(io(target)(e));
    }
    if replaced {
        let _ = std::fs::remove_dir_all(&old);
    }
    Ok(())
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Exports the checkpoint in `checkpoint_dir` as a bundle at `out_dir` (DESIGN.md §5).
pub fn export_bundle(
    checkpoint_dir: &Path,
    out_dir: &Path,
    options: &BundleOptions,
) -> Result<BundleReport, ExportError> {
    let config_path = checkpoint_dir.join("config.json");
    let config_text = std::fs::read_to_string(&config_path).map_err(io(&config_path))?;
    let sections: ConfigSections =
        serde_json::from_str(&config_text).map_err(|e| ExportError::Checkpoint {
            path: config_path.clone(),
            reason: e.to_string(),
        })?;
    let tokenizer = checkpoint_dir.join("tokenizer.json");
    if !tokenizer.is_file() {
        return Err(missing(&tokenizer));
    }
    let golden = checkpoint_dir.join("golden");
    if options.verify && !golden.is_dir() {
        return Err(missing(&golden));
    }
    if !options.force && is_non_empty_dir(out_dir) {
        return Err(ExportError::OutputExists {
            path: out_dir.to_owned(),
        });
    }
    let parent = match out_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = out_dir
        .file_name()
        .ok_or_else(|| ExportError::Checkpoint {
            path: out_dir.to_owned(),
            reason: "the output path has no directory name".into(),
        })?
        .to_string_lossy()
        .into_owned();
    std::fs::create_dir_all(&parent).map_err(io(&parent))?;
    let tmp_path = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp_path.exists() {
        std::fs::remove_dir_all(&tmp_path).map_err(io(&tmp_path))?;
    }
    std::fs::create_dir(&tmp_path).map_err(io(&tmp_path))?;
    let mut tmp = TempDir(Some(tmp_path.clone()));

    let started = Instant::now();
    let mut export = export_graphs_with(checkpoint_dir, &tmp_path, &options.export)?;
    let export_time = started.elapsed();
    std::fs::copy(&tokenizer, tmp_path.join("tokenizer.json")).map_err(io(&tokenizer))?;
    if golden.is_dir() {
        copy_dir(&golden, &tmp_path.join("golden"))?;
    }

    let parity = if options.verify {
        let runtime = vlbeit::Runtime::new(vlbeit::RuntimeOptions {
            ort_library: options.ort_library.clone(),
        })
        .map_err(|e| ExportError::Verify {
            path: tmp_path.clone(),
            reason: format!("loading ONNX Runtime: {e}"),
        })?;
        let report = check_parity(
            &tmp_path,
            &sections.preprocess,
            &runtime,
            options.export.precision,
        )?;
        if !report.passed {
            return Err(ExportError::ParityFailed {
                checkpoint: checkpoint_dir.to_owned(),
                failures: report.failures(),
                report: Box::new(report),
            });
        }
        Some(report)
    } else {
        None
    };

    let manifest = manifest(
        checkpoint_dir,
        &tmp_path,
        &sections,
        &export,
        parity.as_ref(),
        &options.export,
    )?;
    let manifest_path = tmp_path.join(MANIFEST);
    std::fs::write(&manifest_path, manifest.to_json()).map_err(io(&manifest_path))?;

    replace_dir(&tmp_path, out_dir)?;
    tmp.0 = None;
    for graph in &mut export.graphs {
        graph.path = out_dir.join(graph.path.file_name().unwrap_or_default());
        if let Some(data) = &mut graph.data_path {
            *data = out_dir.join(data.file_name().unwrap_or_default());
        }
    }
    Ok(BundleReport {
        out_dir: out_dir.to_owned(),
        export,
        export_time,
        parity,
        manifest,
    })
}

fn missing(path: &Path) -> ExportError {
    ExportError::Io {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "missing from the checkpoint"),
    }
}

pub(crate) fn is_non_empty_dir(path: &Path) -> bool {
    match std::fs::read_dir(path) {
        Ok(mut entries) => entries.next().is_some(),
        // A file (or anything unreadable) at the path is not replaced silently.
        Err(_) => path.exists(),
    }
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), ExportError> {
    std::fs::create_dir_all(to).map_err(io(to))?;
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        if src.is_dir() {
            copy_dir(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst).map_err(io(&src))?;
        }
    }
    Ok(())
}

/// Lowercase hex sha256 of the file at `path`.
pub(crate) fn sha256_file(path: &Path) -> Result<String, ExportError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    Ok(sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// sha256 of every file under `dir` by its `/`-separated relative path, `manifest.json` aside.
fn file_hashes(dir: &Path) -> Result<BTreeMap<String, String>, ExportError> {
    fn walk(
        root: &Path,
        dir: &Path,
        out: &mut BTreeMap<String, String>,
    ) -> Result<(), ExportError> {
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let path = entry.map_err(io(dir))?.path();
            if path.is_dir() {
                walk(root, &path, out)?;
                continue;
            }
            let rel = path.strip_prefix(root).unwrap_or(&path);
            let rel: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let rel = rel.join("/");
            if rel != MANIFEST {
                out.insert(rel, sha256_file(&path)?);
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out)?;
    Ok(out)
}

fn manifest(
    checkpoint_dir: &Path,
    bundle: &Path,
    sections: &ConfigSections,
    export: &ExportReport,
    parity: Option<&ParityReport>,
    export_options: &crate::ExportOptions,
) -> Result<Manifest, ExportError> {
    let precision = export_options.precision;
    let files = file_hashes(bundle)?;
    let mut graphs = BTreeMap::new();
    for (graph, signature) in export.graphs.iter().zip(&export.signatures) {
        let file = graph
            .path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let data_file = graph
            .data_path
            .as_ref()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned());
        let entry = GraphEntry {
            sha256: files.get(&file).cloned(),
            bytes: graph.bytes,
            data_file,
            inputs: signature.inputs.clone(),
            outputs: signature.outputs.clone(),
        };
        graphs.insert(file, entry);
    }
    let manifest = Manifest {
        format_version: BUNDLE_FORMAT_VERSION,
        model: export.config.clone(),
        preprocess: sections.preprocess.clone(),
        tokenizer: sections.tokenizer.clone(),
        pair_max_len: sections.pair_max_len,
        heads: sections.heads.clone(),
        precision: precision.as_str().to_owned(),
        attention: export_options.attention.as_str().to_owned(),
        graphs,
        source_checkpoint: SourceCheckpoint {
            model_sha256: sha256_file(&checkpoint_dir.join("model.safetensors"))?,
        },
        parity: parity.cloned(),
        files,
    };
    // What the runtime will refuse, the exporter does not write.
    Manifest::from_json(manifest.to_json().as_bytes()).map_err(|e| ExportError::Checkpoint {
        path: checkpoint_dir.join("config.json"),
        reason: format!("the manifest would be invalid: {e}"),
    })?;
    Ok(manifest)
}
