//! One ONNX graph of a bundle behind a pool of ONNX Runtime sessions.
//!
//! `ort::Session::run` takes `&mut self`, so concurrent callers each need a session of their
//! own. A [`Graph`] creates its first session at load (which validates the file and its
//! signature) and more on demand, up to `pool_size`; a caller beyond that waits for a free one.
//! Sessions of one graph share ONNX Runtime's prepacked weights.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, PrepackedWeights, SessionBuilder};
use ort::value::{DynValue, TensorElementType, ValueType};
use vlbeit_core::manifest::{DimSpec, GraphEntry, TensorSpec};

use crate::environment::Runtime;
use crate::error::{Error, Result};
use crate::provider::{
    CPU_PROVIDER, CUDA_PROVIDER, EngineCacheKey, ExecutionProvider, GpuStack, ProviderReport,
    ShapeProfile, TENSORRT_PROVIDER,
};

/// Where a graph's bytes come from.
#[derive(Debug, Clone)]
pub(crate) enum GraphSource {
    File(PathBuf),
    /// The `.onnx` bytes and, for large models, the external-data file's name and bytes.
    Memory {
        model: Arc<[u8]>,
        data: Option<(String, Arc<[u8]>)>,
    },
}

/// How the sessions of a graph are built.
#[derive(Debug, Clone)]
pub(crate) struct SessionConfig {
    pub(crate) provider: ExecutionProvider,
    pub(crate) strict: bool,
    pub(crate) pool_size: usize,
    /// For TensorRT engine-cache keys and profiles.
    pub(crate) bundle_sha256: String,
    pub(crate) precision: String,
    pub(crate) image_size: usize,
    pub(crate) profile: ShapeProfile,
}

/// A graph output copied out of ONNX Runtime: shape and f32 values.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OutputTensor {
    pub(crate) shape: Vec<usize>,
    pub(crate) data: Vec<f32>,
}

pub(crate) type Outputs = HashMap<String, OutputTensor>;

struct Pool {
    idle: Vec<Session>,
    created: usize,
}

/// A graph file and its sessions.
pub(crate) struct Graph {
    name: String,
    source: GraphSource,
    runtime: Runtime,
    config: SessionConfig,
    prepacked: PrepackedWeights,
    report: ProviderReport,
    pool: Mutex<Pool>,
    returned: Condvar,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("name", &self.name)
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

impl Graph {
    /// Creates the first session and checks its inputs and outputs against `expected` (the
    /// manifest's signature), when given.
    pub(crate) fn load(
        runtime: &Runtime,
        name: &str,
        source: GraphSource,
        config: SessionConfig,
        expected: Option<(&Path, &GraphEntry)>,
    ) -> Result<Self> {
        if config.pool_size == 0 {
            return Err(Error::Request("pool_size must be at least 1".into()));
        }
        config.profile.check()?;
        let prepacked = PrepackedWeights::new();
        let (session, report) = build_session(runtime, name, &source, &config, &prepacked)?;
        if let Some((bundle, entry)) = expected {
            check_signature(bundle, name, &session, entry)?;
        }
        Ok(Self {
            name: name.to_owned(),
            source,
            runtime: runtime.clone(),
            config,
            prepacked,
            report,
            pool: Mutex::new(Pool {
                idle: vec![session],
                created: 1,
            }),
            returned: Condvar::new(),
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn report(&self) -> &ProviderReport {
        &self.report
    }

    /// Runs the graph on `inputs` and copies every f32 output out.
    pub(crate) fn run(&self, inputs: Vec<(&'static str, DynValue)>) -> Result<Outputs> {
        let mut session = self.checkout()?;
        let result = run_session(&self.name, &mut session, inputs);
        self.checkin(session);
        result
    }

    fn checkout(&self) -> Result<Session> {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(session) = pool.idle.pop() {
                return Ok(session);
            }
            if pool.created < self.config.pool_size {
                pool.created += 1;
                drop(pool);
                let built = build_session(
                    &self.runtime,
                    &self.name,
                    &self.source,
                    &self.config,
                    &self.prepacked,
                );
                return match built {
                    Ok((session, _)) => Ok(session),
                    Err(e) => {
                        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
                        pool.created -= 1;
                        self.returned.notify_one();
                        Err(e)
                    }
                };
            }
            pool = self.returned.wait(pool).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn checkin(&self, session: Session) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        pool.idle.push(session);
        self.returned.notify_one();
    }
}

fn run_session(
    graph: &str,
    session: &mut Session,
    inputs: Vec<(&'static str, DynValue)>,
) -> Result<Outputs> {
    let outputs = session.run(inputs).map_err(Error::ort(graph))?;
    let mut copied = HashMap::new();
    for (name, value) in outputs.iter() {
        let (shape, data) = value.try_extract_tensor::<f32>().map_err(|e| Error::Ort {
            graph: graph.to_owned(),
            reason: format!("output {name}: {e}"),
        })?;
        copied.insert(
            name.to_owned(),
            OutputTensor {
                shape: shape.iter().map(|&d| d as usize).collect(),
                data: data.to_vec(),
            },
        );
    }
    Ok(copied)
}

fn new_builder(runtime: &Runtime, graph: &str, threads: usize) -> Result<SessionBuilder> {
    let mut builder = Session::builder(runtime.environment())
        .map_err(Error::ort(graph))?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(Error::ort(graph))?;
    if threads > 0 {
        builder = builder
            .with_intra_threads(threads)
            .map_err(Error::ort(graph))?;
    }
    Ok(builder)
}

/// Builds a session on the configured provider; in strict mode a provider that cannot be
/// registered is an error, otherwise the session falls back to CPU and the report says why.
pub(crate) fn build_session(
    runtime: &Runtime,
    graph: &str,
    source: &GraphSource,
    config: &SessionConfig,
    prepacked: &PrepackedWeights,
) -> Result<(Session, ProviderReport)> {
    let threads = match config.provider {
        ExecutionProvider::Cpu { threads } => threads,
        _ => 0,
    };
    let mut report = ProviderReport {
        graph: graph.to_owned(),
        requested: config.provider.kind().to_owned(),
        registered: vec![CPU_PROVIDER.to_owned()],
        fallback_reason: None,
        engine_cache: None,
    };
    let mut builder = new_builder(runtime, graph, threads)?;
    if config.provider.is_gpu() {
        match gpu_providers(runtime, graph, config) {
            Ok((providers, names, cache)) => match builder.with_execution_providers(providers) {
                Ok(b) => {
                    builder = b;
                    report.registered = names;
                    report.registered.push(CPU_PROVIDER.to_owned());
                    report.engine_cache = cache;
                }
                Err(e) => {
                    let reason = e.to_string();
                    if config.strict {
                        return Err(unavailable(config, graph, reason));
                    }
                    builder = new_builder(runtime, graph, threads)?;
                    report.fallback_reason = Some(reason);
                }
            },
            Err(reason) if config.strict => return Err(unavailable(config, graph, reason)),
            Err(reason) => report.fallback_reason = Some(reason),
        }
    }
    let mut builder = builder
        .with_prepacked_weights(prepacked)
        .map_err(Error::ort(graph))?;
    let session = match source {
        GraphSource::File(path) => builder.commit_from_file(path),
        GraphSource::Memory { model, data } => {
            if let Some((file, bytes)) = data {
                builder = builder
                    .with_external_initializer_file_in_memory(file, bytes.clone())
                    .map_err(Error::ort(graph))?;
            }
            builder.commit_from_memory(model)
        }
    }
    .map_err(|e| {
        let reason = e.to_string();
        if config.provider.is_gpu() && config.strict {
            unavailable(
                config,
                graph,
                format!("creating the session failed: {reason}"),
            )
        } else {
            Error::Ort {
                graph: graph.to_owned(),
                reason,
            }
        }
    })?;
    Ok((session, report))
}

fn unavailable(config: &SessionConfig, graph: &str, reason: String) -> Error {
    Error::ProviderUnavailable {
        provider: config.provider.kind().to_owned(),
        graph: graph.to_owned(),
        reason,
    }
}

type GpuProviders = (
    Vec<ort::ep::ExecutionProviderDispatch>,
    Vec<String>,
    Option<PathBuf>,
);

/// The provider list of a GPU request (TensorRT, then CUDA for what TensorRT leaves), each set
/// to fail loudly, after checking that the loaded ONNX Runtime has them at all.
fn gpu_providers(
    runtime: &Runtime,
    graph: &str,
    config: &SessionConfig,
) -> std::result::Result<GpuProviders, String> {
    let available = runtime.available_providers().map_err(|e| e.to_string())?;
    let need = |name: &str| {
        if available.iter().any(|p| p == name) {
            Ok(())
        } else {
            Err(format!(
                "the loaded ONNX Runtime {} ({}) has no {name} (it has: {}); \
                 install onnxruntime-gpu {} or point ORT_DYLIB_PATH at a GPU build",
                runtime.library().version,
                runtime.library().path.display(),
                available.join(", "),
                runtime.library().version,
            ))
        }
    };
    match &config.provider {
        ExecutionProvider::Cpu { .. } => Ok((Vec::new(), Vec::new(), None)),
        ExecutionProvider::Cuda { device } => {
            need(CUDA_PROVIDER)?;
            let cuda = ort::ep::CUDA::default()
                .with_device_id(*device)
                .build()
                .error_on_failure();
            Ok((vec![cuda], vec![CUDA_PROVIDER.to_owned()], None))
        }
        ExecutionProvider::TensorRt(options) => {
            need(TENSORRT_PROVIDER)?;
            need(CUDA_PROVIDER)?;
            let profile = options.profiles.unwrap_or(config.profile);
            profile.check().map_err(|e| e.to_string())?;
            let (min, opt, max) = profile.shape_strings(graph, config.image_size);
            let mut trt = ort::ep::TensorRT::default()
                .with_device_id(options.device)
                .with_fp16(options.fp16)
                .with_layer_norm_fp32_fallback(options.fp16)
                .with_profile_min_shapes(&min)
                .with_profile_opt_shapes(&opt)
                .with_profile_max_shapes(&max);
            let mut cache = None;
            if let Some(root) = &options.engine_cache_dir {
                let stack = GpuStack::cached();
                let gpu = stack
                    .gpus
                    .get(options.device.max(0) as usize)
                    .cloned()
                    .ok_or_else(|| match &stack.cuda_driver {
                        Err(e) => e.clone(),
                        Ok(_) => format!("no GPU with ordinal {}", options.device),
                    })?;
                let tensorrt = stack.tensorrt.clone()?;
                let key = EngineCacheKey {
                    bundle_sha256: config.bundle_sha256.clone(),
                    graph: graph.to_owned(),
                    gpu_name: gpu.clone(),
                    tensorrt_version: tensorrt.clone(),
                    onnxruntime_version: runtime.library().version.clone(),
                    precision: format!(
                        "{}/{}",
                        if options.fp16 { "fp16" } else { "fp32" },
                        config.precision
                    ),
                    profile: format!("{min};{opt};{max}"),
                };
                let dir = key.dir(root);
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                trt = trt
                    .with_engine_cache(true)
                    .with_engine_cache_path(dir.display());
                if options.timing_cache {
                    // Kernel timings depend on the GPU and TensorRT only: shared by all engines.
                    let timing = root.join(sanitize(&format!("timing-{gpu}-{tensorrt}")));
                    std::fs::create_dir_all(&timing)
                        .map_err(|e| format!("cannot create {}: {e}", timing.display()))?;
                    trt = trt
                        .with_timing_cache(true)
                        .with_timing_cache_path(timing.display());
                }
                cache = Some(dir);
            }
            let cuda = ort::ep::CUDA::default()
                .with_device_id(options.device)
                .build()
                .error_on_failure();
            Ok((
                vec![trt.build().error_on_failure(), cuda],
                vec![TENSORRT_PROVIDER.to_owned(), CUDA_PROVIDER.to_owned()],
                cache,
            ))
        }
    }
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn dtype_name(ty: TensorElementType) -> &'static str {
    match ty {
        TensorElementType::Float32 => "float32",
        TensorElementType::Float16 => "float16",
        TensorElementType::Int64 => "int64",
        TensorElementType::Bool => "bool",
        _ => "other",
    }
}

/// Compares the session's inputs and outputs (names, element types, ranks, fixed sizes) with the
/// manifest's signature.
fn check_signature(
    bundle: &Path,
    graph: &str,
    session: &Session,
    entry: &GraphEntry,
) -> Result<()> {
    let fail = |problem: String| Error::Signature {
        bundle: bundle.to_owned(),
        graph: graph.to_owned(),
        problem,
    };
    for (kind, actual, expected) in [
        ("input", session.inputs(), &entry.inputs),
        ("output", session.outputs(), &entry.outputs),
    ] {
        let names: Vec<&str> = actual.iter().map(|o| o.name()).collect();
        let want: Vec<&str> = expected.iter().map(|s| s.name.as_str()).collect();
        if names != want {
            return Err(fail(format!(
                "{kind}s are {names:?}, the manifest says {want:?}"
            )));
        }
        for (outlet, spec) in actual.iter().zip(expected.iter()) {
            check_tensor(kind, outlet.dtype(), spec).map_err(fail)?;
        }
    }
    Ok(())
}

fn check_tensor(
    kind: &str,
    actual: &ValueType,
    spec: &TensorSpec,
) -> std::result::Result<(), String> {
    let ValueType::Tensor { ty, shape, .. } = actual else {
        return Err(format!("{kind} {} is not a tensor", spec.name));
    };
    if dtype_name(*ty) != spec.dtype {
        return Err(format!(
            "{kind} {} is {}, the manifest says {}",
            spec.name,
            dtype_name(*ty),
            spec.dtype
        ));
    }
    if shape.len() != spec.shape.len() {
        return Err(format!(
            "{kind} {} has rank {}, the manifest says {}",
            spec.name,
            shape.len(),
            spec.shape.len()
        ));
    }
    for (axis, (&dim, want)) in shape.iter().zip(&spec.shape).enumerate() {
        if let DimSpec::Fixed(want) = want
            && dim != *want
        {
            return Err(format!(
                "{kind} {} axis {axis} is {dim}, the manifest says {want}",
                spec.name
            ));
        }
    }
    Ok(())
}
