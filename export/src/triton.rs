//! A Triton Inference Server model repository from a bundle: the three graphs as
//! `onnxruntime_onnx` models, each with its `config.pbtxt` (signatures from the bundle's
//! manifest, dynamic batching, instance group, TensorRT accelerator on GPU), plus an ensemble
//! (`<prefix>_retrieval`) that runs one request of `pixel_values`, `input_ids` and
//! `attention_mask` through all three encoders.
//!
//! Written in a temp dir next to the repository and renamed into place at the end: a failed
//! write leaves nothing, and a replaced repository is swapped whole.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::bundle::{TempDir, io, is_non_empty_dir, replace_dir, sha256_file};
use crate::{
    DimSpec, ExportError, FUSION_ENCODER, IMAGE_ENCODER, MANIFEST, TEXT_ENCODER, TensorSpec,
};

/// Where Triton runs each model's instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InstanceKind {
    #[default]
    Gpu,
    Cpu,
}

/// TensorRT precision of the ONNX Runtime TensorRT execution provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrtPrecision {
    #[default]
    Fp16,
    Fp32,
}

/// The ONNX Runtime TensorRT accelerator (`optimization.execution_accelerators`), written for
/// GPU instance groups only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorRtOptions {
    pub precision: TrtPrecision,
    /// `trt_engine_cache_path`, on the Triton server's file system; engines are cached there.
    pub engine_cache_path: String,
    /// `max_workspace_size_bytes`.
    pub max_workspace_size_bytes: u64,
}

impl Default for TensorRtOptions {
    fn default() -> Self {
        Self {
            precision: TrtPrecision::Fp16,
            engine_cache_path: "/tmp/vlbeit-trt-cache".into(),
            max_workspace_size_bytes: 1 << 30,
        }
    }
}

/// How [`write_triton_repository`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TritonOptions {
    /// Model names are `<prefix>_image_encoder`, `<prefix>_text_encoder`,
    /// `<prefix>_fusion_encoder` and `<prefix>_retrieval` (letters, digits, `_`, `-`).
    pub model_prefix: String,
    /// Model version directory (≥ 1).
    pub version: u32,
    /// Triton's `max_batch_size`; Triton then prepends the batch axis, so `dims` leave it out.
    /// 0 disables batching (the batch axis is written as `-1` and no dynamic batching).
    pub max_batch_size: u32,
    /// Write `dynamic_batching` (needs `max_batch_size` ≥ 1).
    pub dynamic_batching: bool,
    /// `preferred_batch_size`, strictly increasing, each in 1..=max_batch_size; `None`: half
    /// and all of `max_batch_size`.
    pub preferred_batch_sizes: Option<Vec<u32>>,
    pub max_queue_delay_microseconds: u64,
    /// Instances per model (≥ 1).
    pub instance_count: u32,
    pub instance_kind: InstanceKind,
    /// `None`: plain CUDA execution provider. Ignored for CPU instance groups.
    pub tensorrt: Option<TensorRtOptions>,
    /// Write the `<prefix>_retrieval` ensemble.
    pub ensemble: bool,
    /// Outputs of the ensemble (each an output of exactly one graph).
    pub ensemble_outputs: Vec<String>,
    /// Replace an existing non-empty repository directory.
    pub force: bool,
}

impl Default for TritonOptions {
    fn default() -> Self {
        Self {
            model_prefix: "vlbeit".into(),
            version: 1,
            max_batch_size: 32,
            dynamic_batching: true,
            preferred_batch_sizes: None,
            max_queue_delay_microseconds: 100,
            instance_count: 1,
            instance_kind: InstanceKind::Gpu,
            tensorrt: Some(TensorRtOptions::default()),
            ensemble: true,
            ensemble_outputs: vec![
                "image_embeds".into(),
                "text_embeds".into(),
                "itm_logits".into(),
            ],
            force: false,
        }
    }
}

/// One model written into the repository.
#[derive(Debug, Clone)]
pub struct TritonModel {
    pub name: String,
    /// `<repo>/<name>/config.pbtxt`.
    pub config_path: PathBuf,
    /// `model.onnx` and its external-data file, if any (none for the ensemble).
    pub files: Vec<PathBuf>,
}

/// What [`write_triton_repository`] wrote.
#[derive(Debug, Clone)]
pub struct TritonReport {
    pub repo_dir: PathBuf,
    /// Image, text and fusion encoder, then the ensemble if written.
    pub models: Vec<TritonModel>,
}

/// The part of `manifest.json` read here.
#[derive(Debug, Deserialize)]
struct Manifest {
    graphs: std::collections::BTreeMap<String, ManifestGraph>,
}

#[derive(Debug, Deserialize)]
struct ManifestGraph {
    sha256: Option<String>,
    data_file: Option<String>,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
}

/// A graph as a Triton model.
struct Graph {
    model: String,
    file: &'static str,
    entry: ManifestGraph,
}

fn invalid(path: &Path, reason: impl Into<String>) -> ExportError {
    ExportError::Triton {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

impl TritonOptions {
    /// The `preferred_batch_size` list written.
    pub fn preferred_sizes(&self) -> Vec<u32> {
        match &self.preferred_batch_sizes {
            Some(sizes) => sizes.clone(),
            None => {
                let mut sizes = vec![self.max_batch_size / 2, self.max_batch_size];
                sizes.retain(|&s| s > 0);
                sizes.dedup();
                sizes
            }
        }
    }

    /// Checks the options; `repo_dir` names the repository in the error.
    pub fn validate(&self, repo_dir: &Path) -> Result<(), ExportError> {
        let bad = |reason: String| Err(invalid(repo_dir, reason));
        if self.model_prefix.is_empty()
            || !self
                .model_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return bad(format!(
                "model prefix {:?} must be non-empty letters, digits, '_' or '-'",
                self.model_prefix
            ));
        }
        if self.version == 0 {
            return bad("model version must be >= 1".into());
        }
        if self.instance_count == 0 {
            return bad("instance count must be >= 1".into());
        }
        if self.dynamic_batching {
            if self.max_batch_size == 0 {
                return bad("dynamic batching needs max_batch_size >= 1".into());
            }
            let sizes = self.preferred_sizes();
            if let Some(&s) = sizes.iter().find(|&&s| s == 0 || s > self.max_batch_size) {
                return bad(format!(
                    "preferred batch size {s} is outside 1..={}",
                    self.max_batch_size
                ));
            }
            if sizes.windows(2).any(|w| w[0] >= w[1]) {
                return bad(format!(
                    "preferred batch sizes {sizes:?} must be strictly increasing"
                ));
            }
        }
        if let (InstanceKind::Gpu, Some(trt)) = (self.instance_kind, &self.tensorrt) {
            if trt.engine_cache_path.is_empty()
                || trt.engine_cache_path.chars().any(char::is_control)
            {
                return bad(format!(
                    "TensorRT engine cache path {:?} must be non-empty, without control characters",
                    trt.engine_cache_path
                ));
            }
            if trt.max_workspace_size_bytes == 0 {
                return bad("TensorRT max workspace size must be >= 1 byte".into());
            }
        }
        if self.ensemble && self.ensemble_outputs.is_empty() {
            return bad("the ensemble needs at least one output".into());
        }
        Ok(())
    }
}

/// Writes a Triton model repository at `repo_dir` from the bundle at `bundle_dir`.
pub fn write_triton_repository(
    bundle_dir: &Path,
    repo_dir: &Path,
    options: &TritonOptions,
) -> Result<TritonReport, ExportError> {
    options.validate(repo_dir)?;
    let manifest_path = bundle_dir.join(MANIFEST);
    let text = std::fs::read_to_string(&manifest_path).map_err(io(&manifest_path))?;
    let mut manifest: Manifest = serde_json::from_str(&text)
        .map_err(|e| invalid(&manifest_path, format!("not a bundle manifest: {e}")))?;
    let mut graphs = Vec::new();
    for (file, suffix) in [
        (IMAGE_ENCODER, "image_encoder"),
        (TEXT_ENCODER, "text_encoder"),
        (FUSION_ENCODER, "fusion_encoder"),
    ] {
        let entry = manifest
            .graphs
            .remove(file)
            .ok_or_else(|| invalid(&manifest_path, format!("no graph {file} in the manifest")))?;
        check_signature(&manifest_path, file, &entry, options)?;
        graphs.push(Graph {
            model: format!("{}_{suffix}", options.model_prefix),
            file,
            entry,
        });
    }
    let ensemble = if options.ensemble {
        Some(Ensemble::plan(&manifest_path, &graphs, options)?)
    } else {
        None
    };

    if !options.force && is_non_empty_dir(repo_dir) {
        return Err(ExportError::OutputExists {
            path: repo_dir.to_owned(),
        });
    }
    let name = repo_dir
        .file_name()
        .ok_or_else(|| invalid(repo_dir, "the repository path has no directory name"))?
        .to_string_lossy()
        .into_owned();
    let parent = match repo_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io(&parent))?;
    let tmp_path = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp_path.exists() {
        std::fs::remove_dir_all(&tmp_path).map_err(io(&tmp_path))?;
    }
    std::fs::create_dir(&tmp_path).map_err(io(&tmp_path))?;
    let mut tmp = TempDir(Some(tmp_path.clone()));

    let version = options.version.to_string();
    let mut models = Vec::new();
    for graph in &graphs {
        let dir = tmp_path.join(&graph.model);
        let version_dir = dir.join(&version);
        std::fs::create_dir_all(&version_dir).map_err(io(&version_dir))?;
        let src = bundle_dir.join(graph.file);
        let dst = version_dir.join("model.onnx");
        std::fs::copy(&src, &dst).map_err(io(&src))?;
        if let Some(want) = &graph.entry.sha256 {
            let got = sha256_file(&dst)?;
            if &got != want {
                return Err(invalid(
                    &src,
                    format!("sha256 {got} differs from the manifest's {want}"),
                ));
            }
        }
        let mut files = vec![
            repo_dir
                .join(&graph.model)
                .join(&version)
                .join("model.onnx"),
        ];
        if let Some(data) = &graph.entry.data_file {
            // The graph names its external data by this relative location: keep the name.
            if data.is_empty() || data.contains(['/', '\\']) || data == "model.onnx" {
                return Err(invalid(
                    &manifest_path,
                    format!(
                        "external data file {data:?} of {} is not a plain file name",
                        graph.file
                    ),
                ));
            }
            let src = bundle_dir.join(data);
            std::fs::copy(&src, version_dir.join(data)).map_err(io(&src))?;
            files.push(repo_dir.join(&graph.model).join(&version).join(data));
        }
        let config = dir.join("config.pbtxt");
        std::fs::write(&config, model_config(graph, options)).map_err(io(&config))?;
        models.push(TritonModel {
            name: graph.model.clone(),
            config_path: repo_dir.join(&graph.model).join("config.pbtxt"),
            files,
        });
    }
    if let Some(ensemble) = &ensemble {
        let dir = tmp_path.join(&ensemble.name);
        // Triton wants a version directory for an ensemble too (empty).
        let version_dir = dir.join(&version);
        std::fs::create_dir_all(&version_dir).map_err(io(&version_dir))?;
        let config = dir.join("config.pbtxt");
        std::fs::write(&config, ensemble.config(options)).map_err(io(&config))?;
        models.push(TritonModel {
            name: ensemble.name.clone(),
            config_path: repo_dir.join(&ensemble.name).join("config.pbtxt"),
            files: Vec::new(),
        });
    }

    replace_dir(&tmp_path, repo_dir)?;
    tmp.0 = None;
    Ok(TritonReport {
        repo_dir: repo_dir.to_owned(),
        models,
    })
}

/// Every tensor must be `float32`/`int64` with a leading `batch` axis when Triton batches.
fn check_signature(
    manifest: &Path,
    file: &str,
    entry: &ManifestGraph,
    options: &TritonOptions,
) -> Result<(), ExportError> {
    for tensor in entry.inputs.iter().chain(&entry.outputs) {
        if data_type(&tensor.dtype).is_none() {
            return Err(invalid(
                manifest,
                format!(
                    "{file}: tensor {} has dtype {:?}, not float32 or int64",
                    tensor.name, tensor.dtype
                ),
            ));
        }
        if tensor.name.is_empty() || tensor.name.chars().any(char::is_control) {
            return Err(invalid(
                manifest,
                format!("{file}: tensor name {:?} is not usable", tensor.name),
            ));
        }
        if options.max_batch_size > 0
            && tensor.shape.first() != Some(&DimSpec::Symbolic("batch".into()))
        {
            return Err(invalid(
                manifest,
                format!(
                    "{file}: tensor {} has no leading batch axis ({:?}); use max_batch_size 0",
                    tensor.name, tensor.shape
                ),
            ));
        }
    }
    Ok(())
}

fn data_type(dtype: &str) -> Option<&'static str> {
    match dtype {
        "float32" => Some("TYPE_FP32"),
        "int64" => Some("TYPE_INT64"),
        "float16" => Some("TYPE_FP16"),
        "bool" => Some("TYPE_BOOL"),
        _ => None,
    }
}

/// `dims` of a tensor: the batch axis left out when Triton batches, dynamic axes `-1`.
fn dims(tensor: &TensorSpec, options: &TritonOptions) -> Vec<i64> {
    let skip = usize::from(options.max_batch_size > 0);
    tensor
        .shape
        .iter()
        .skip(skip)
        .map(|d| match d {
            DimSpec::Fixed(v) => *v,
            DimSpec::Symbolic(_) => -1,
        })
        .collect()
}

/// A protobuf text-format string literal.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

fn tensors(out: &mut String, field: &str, list: &[TensorSpec], options: &TritonOptions) {
    let _ = writeln!(out, "{field} [");
    for (i, t) in list.iter().enumerate() {
        let dims: Vec<String> = dims(t, options).iter().map(i64::to_string).collect();
        let _ = writeln!(out, "  {{");
        let _ = writeln!(out, "    name: {}", quote(&t.name));
        let _ = writeln!(
            out,
            "    data_type: {}",
            data_type(&t.dtype).expect("checked")
        );
        let _ = writeln!(out, "    dims: [ {} ]", dims.join(", "));
        let sep = if i + 1 < list.len() { "," } else { "" };
        let _ = writeln!(out, "  }}{sep}");
    }
    let _ = writeln!(out, "]");
}

fn model_config(graph: &Graph, options: &TritonOptions) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Written by vlbeit-export from {}.", graph.file);
    let _ = writeln!(out, "name: {}", quote(&graph.model));
    let _ = writeln!(out, "platform: \"onnxruntime_onnx\"");
    let _ = writeln!(out, "max_batch_size: {}", options.max_batch_size);
    tensors(&mut out, "input", &graph.entry.inputs, options);
    tensors(&mut out, "output", &graph.entry.outputs, options);
    if options.dynamic_batching {
        let sizes: Vec<String> = options
            .preferred_sizes()
            .iter()
            .map(u32::to_string)
            .collect();
        let _ = writeln!(out, "dynamic_batching {{");
        let _ = writeln!(out, "  preferred_batch_size: [ {} ]", sizes.join(", "));
        let _ = writeln!(
            out,
            "  max_queue_delay_microseconds: {}",
            options.max_queue_delay_microseconds
        );
        let _ = writeln!(out, "}}");
    }
    let kind = match options.instance_kind {
        InstanceKind::Gpu => "KIND_GPU",
        InstanceKind::Cpu => "KIND_CPU",
    };
    let _ = writeln!(
        out,
        "instance_group [ {{ count: {} kind: {kind} }} ]",
        options.instance_count
    );
    if let (InstanceKind::Gpu, Some(trt)) = (options.instance_kind, &options.tensorrt) {
        let precision = match trt.precision {
            TrtPrecision::Fp16 => "FP16",
            TrtPrecision::Fp32 => "FP32",
        };
        let params = [
            ("precision_mode", precision.to_owned()),
            (
                "max_workspace_size_bytes",
                trt.max_workspace_size_bytes.to_string(),
            ),
            ("trt_engine_cache_enable", "true".to_owned()),
            ("trt_engine_cache_path", trt.engine_cache_path.clone()),
        ];
        let _ = writeln!(out, "optimization {{");
        let _ = writeln!(out, "  execution_accelerators {{");
        let _ = writeln!(out, "    gpu_execution_accelerator : [ {{");
        let _ = writeln!(out, "      name : \"tensorrt\"");
        for (key, value) in params {
            let _ = writeln!(
                out,
                "      parameters {{ key: {} value: {} }}",
                quote(key),
                quote(&value)
            );
        }
        let _ = writeln!(out, "    }} ]");
        let _ = writeln!(out, "  }}");
        let _ = writeln!(out, "}}");
    }
    out
}

/// The ensemble: each graph input fed from the ensemble input of the same name (or from the
/// output of an earlier step of that name), the chosen outputs mapped out under their names.
struct Ensemble {
    name: String,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    /// Model, input map, output map.
    steps: Vec<(String, TensorMap, TensorMap)>,
}

/// Model tensor → ensemble tensor.
type TensorMap = Vec<(String, String)>;

impl Ensemble {
    fn plan(
        manifest: &Path,
        graphs: &[Graph],
        options: &TritonOptions,
    ) -> Result<Self, ExportError> {
        let mut outputs = Vec::new();
        for want in &options.ensemble_outputs {
            let found: Vec<(&Graph, &TensorSpec)> = graphs
                .iter()
                .flat_map(|g| g.entry.outputs.iter().map(move |t| (g, t)))
                .filter(|(_, t)| &t.name == want)
                .collect();
            match found.as_slice() {
                [(graph, tensor)] => outputs.push((graph.model.clone(), (*tensor).clone())),
                [] => {
                    return Err(invalid(
                        manifest,
                        format!("ensemble output {want:?} is no output of the three graphs"),
                    ));
                }
                _ => {
                    return Err(invalid(
                        manifest,
                        format!("ensemble output {want:?} is an output of more than one graph"),
                    ));
                }
            }
        }
        if let Some(dup) = options
            .ensemble_outputs
            .iter()
            .enumerate()
            .find(|(i, o)| options.ensemble_outputs[..*i].contains(o))
        {
            return Err(invalid(
                manifest,
                format!("ensemble output {:?} is listed twice", dup.1),
            ));
        }
        let mut inputs: Vec<TensorSpec> = Vec::new();
        let mut steps = Vec::new();
        for graph in graphs {
            let output_map: Vec<(String, String)> = outputs
                .iter()
                .filter(|(model, _)| model == &graph.model)
                .map(|(_, t)| (t.name.clone(), t.name.clone()))
                .collect();
            if output_map.is_empty() {
                // A step nobody reads from is left out.
                continue;
            }
            let mut input_map = Vec::new();
            for tensor in &graph.entry.inputs {
                match inputs.iter().find(|t| t.name == tensor.name) {
                    Some(known) if known.dtype != tensor.dtype || known.shape != tensor.shape => {
                        return Err(invalid(
                            manifest,
                            format!(
                                "input {} of {} ({} {:?}) differs from the same input of another graph ({} {:?})",
                                tensor.name,
                                graph.file,
                                tensor.dtype,
                                tensor.shape,
                                known.dtype,
                                known.shape
                            ),
                        ));
                    }
                    Some(_) => {}
                    None => inputs.push(tensor.clone()),
                }
                input_map.push((tensor.name.clone(), tensor.name.clone()));
            }
            steps.push((graph.model.clone(), input_map, output_map));
        }
        if let Some(clash) = inputs
            .iter()
            .find(|i| outputs.iter().any(|(_, o)| o.name == i.name))
        {
            return Err(invalid(
                manifest,
                format!("{} is both an ensemble input and output", clash.name),
            ));
        }
        Ok(Self {
            name: format!("{}_retrieval", options.model_prefix),
            inputs,
            outputs: outputs.into_iter().map(|(_, t)| t).collect(),
            steps,
        })
    }

    fn config(&self, options: &TritonOptions) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# Written by vlbeit-export: one request through the image, text and fusion encoders."
        );
        let _ = writeln!(out, "name: {}", quote(&self.name));
        let _ = writeln!(out, "platform: \"ensemble\"");
        let _ = writeln!(out, "max_batch_size: {}", options.max_batch_size);
        tensors(&mut out, "input", &self.inputs, options);
        tensors(&mut out, "output", &self.outputs, options);
        let _ = writeln!(out, "ensemble_scheduling {{");
        let _ = writeln!(out, "  step [");
        for (i, (model, input_map, output_map)) in self.steps.iter().enumerate() {
            let _ = writeln!(out, "    {{");
            let _ = writeln!(out, "      model_name: {}", quote(model));
            let _ = writeln!(out, "      model_version: {}", options.version);
            for (key, value) in input_map {
                let _ = writeln!(
                    out,
                    "      input_map {{ key: {} value: {} }}",
                    quote(key),
                    quote(value)
                );
            }
            for (key, value) in output_map {
                let _ = writeln!(
                    out,
                    "      output_map {{ key: {} value: {} }}",
                    quote(key),
                    quote(value)
                );
            }
            let sep = if i + 1 < self.steps.len() { "," } else { "" };
            let _ = writeln!(out, "    }}{sep}");
        }
        let _ = writeln!(out, "  ]");
        let _ = writeln!(out, "}}");
        out
    }
}
