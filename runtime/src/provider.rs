//! Execution providers (CPU, CUDA, TensorRT through ONNX Runtime's TensorRT execution provider),
//! strict mode, TensorRT optimization profiles and engine-cache keying.
//!
//! Strict mode (the default whenever a GPU provider is asked for) turns "the provider could not
//! be registered" into an error that says why, instead of ONNX Runtime's silent fall back to CPU
//! (a deployment that believes it runs on the GPU and runs 50× slower is worse than one that
//! fails at start-up).

use std::path::{Path, PathBuf};

use sha2::Digest;

use crate::error::{Error, Result};

/// ONNX Runtime's names of the providers, as `GetAvailableProviders` lists them.
pub const CPU_PROVIDER: &str = "CPUExecutionProvider";
pub const CUDA_PROVIDER: &str = "CUDAExecutionProvider";
pub const TENSORRT_PROVIDER: &str = "TensorrtExecutionProvider";

/// Where the graphs run.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecutionProvider {
    /// ONNX Runtime's CPU provider; `threads` = intra-op threads per session (0: one per core).
    Cpu { threads: usize },
    /// NVIDIA CUDA on GPU `device` (nodes CUDA lacks run on CPU).
    Cuda { device: i32 },
    /// NVIDIA TensorRT on GPU `device`, with CUDA then CPU for what TensorRT does not take.
    TensorRt(TensorRtOptions),
}

impl Default for ExecutionProvider {
    fn default() -> Self {
        Self::Cpu { threads: 0 }
    }
}

impl ExecutionProvider {
    /// Short name for reports and tolerances: `cpu`, `cuda`, `tensorrt`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Cpu { .. } => "cpu",
            Self::Cuda { .. } => "cuda",
            Self::TensorRt(_) => "tensorrt",
        }
    }

    /// Whether this is a GPU provider (strict by default).
    pub fn is_gpu(&self) -> bool {
        !matches!(self, Self::Cpu { .. })
    }

    /// Parses `cpu`, `cuda`, `cuda:1`, `tensorrt`, `tensorrt:0` (CLI, C ABI).
    pub fn parse(text: &str) -> Result<Self> {
        let (name, device) = match text.split_once(':') {
            Some((name, device)) => {
                let device = device.parse::<i32>().map_err(|_| {
                    Error::ProviderOptions(format!("{text:?}: device {device:?} is not a number"))
                })?;
                (name, device)
            }
            None => (text, 0),
        };
        match name {
            "cpu" => Ok(Self::Cpu { threads: 0 }),
            "cuda" => Ok(Self::Cuda { device }),
            "tensorrt" | "trt" => Ok(Self::TensorRt(TensorRtOptions {
                device,
                ..TensorRtOptions::default()
            })),
            other => Err(Error::ProviderOptions(format!(
                "unknown execution provider {other:?} (expected cpu, cuda[:N] or tensorrt[:N])"
            ))),
        }
    }
}

/// One dynamic axis of a TensorRT optimization profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DimRange {
    pub min: usize,
    pub opt: usize,
    pub max: usize,
}

impl DimRange {
    fn check(&self, what: &str) -> Result<()> {
        if self.min == 0 || self.min > self.opt || self.opt > self.max {
            return Err(Error::ProviderOptions(format!(
                "TensorRT profile {what}: need 1 <= min <= opt <= max, got min {} opt {} max {}",
                self.min, self.opt, self.max
            )));
        }
        Ok(())
    }
}

/// TensorRT optimization profile: the range of batch sizes and text lengths the engines are built
/// for. A request outside the profile makes TensorRT rebuild or fail, so the defaults come from
/// the model options (`max_batch`) and the bundle (`max_text_len`, `pair_max_len`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShapeProfile {
    pub batch: DimRange,
    /// Text length of the text encoder.
    pub text_len: DimRange,
    /// Text length of the fusion encoder.
    pub pair_len: DimRange,
}

impl ShapeProfile {
    /// Batch 1..=`max_batch` (optimized for `max_batch`), text 1..=max (optimized for max).
    pub fn derived(max_batch: usize, max_text_len: usize, pair_max_len: usize) -> Self {
        let range = |max: usize| DimRange {
            min: 1,
            opt: max.max(1),
            max: max.max(1),
        };
        Self {
            batch: range(max_batch),
            text_len: range(max_text_len),
            pair_len: range(pair_max_len),
        }
    }

    pub(crate) fn check(&self) -> Result<()> {
        self.batch.check("batch")?;
        self.text_len.check("text_len")?;
        self.pair_len.check("pair_len")
    }

    /// `(min, opt, max)` shape strings of TensorRT's `trt_profile_*_shapes` options for a graph
    /// with these inputs (`pixel_values`, `input_ids`, `attention_mask`).
    pub fn shape_strings(&self, graph: &str, image_size: usize) -> (String, String, String) {
        let seq = if graph.starts_with("fusion") {
            self.pair_len
        } else {
            self.text_len
        };
        let one = |batch: usize, seq_len: usize| {
            let mut parts = Vec::new();
            if !graph.starts_with("text") {
                parts.push(format!("pixel_values:{batch}x3x{image_size}x{image_size}"));
            }
            if !graph.starts_with("image") {
                parts.push(format!("input_ids:{batch}x{seq_len}"));
                parts.push(format!("attention_mask:{batch}x{seq_len}"));
            }
            parts.join(",")
        };
        (
            one(self.batch.min, seq.min),
            one(self.batch.opt, seq.opt),
            one(self.batch.max, seq.max),
        )
    }
}

/// Options of the TensorRT provider.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TensorRtOptions {
    pub device: i32,
    /// Build fp16 engines (LayerNorm kept in fp32: `trt_layer_norm_fp32_fallback`).
    pub fp16: bool,
    /// Directory for serialized engines; each engine goes to a subdirectory named by its
    /// [`EngineCacheKey`], so a changed bundle, GPU, TensorRT, ONNX Runtime, precision or profile
    /// never reuses a stale engine. `None`: engines are built at every start.
    pub engine_cache_dir: Option<PathBuf>,
    /// Keep TensorRT's timing cache (kernel timings per GPU and TensorRT version) in
    /// `engine_cache_dir`, which makes rebuilding engines much faster.
    pub timing_cache: bool,
    /// `None`: [`ShapeProfile::derived`] from the model options and the bundle.
    pub profiles: Option<ShapeProfile>,
}

/// What an engine depends on; engines are cached under the hash of all of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineCacheKey {
    /// sha256 of the bundle's manifest (which holds every file's hash).
    pub bundle_sha256: String,
    pub graph: String,
    pub gpu_name: String,
    pub tensorrt_version: String,
    pub onnxruntime_version: String,
    /// `fp32`, `fp16` (engine precision) on a bundle of `fp32` / `fp16` graphs.
    pub precision: String,
    /// `min;opt;max` shape strings.
    pub profile: String,
}

impl EngineCacheKey {
    /// The subdirectory name: the graph's stem and 20 hex digits of the key's sha256.
    pub fn dir_name(&self) -> String {
        let text = [
            "vlbeit-trt-engine-v1",
            &self.bundle_sha256,
            &self.graph,
            &self.gpu_name,
            &self.tensorrt_version,
            &self.onnxruntime_version,
            &self.precision,
            &self.profile,
        ]
        .join("\n");
        let digest = sha2::Sha256::digest(text.as_bytes());
        let hex: String = digest.iter().take(10).map(|b| format!("{b:02x}")).collect();
        let stem = self.graph.trim_end_matches(".onnx");
        format!("{stem}-{hex}")
    }

    /// `root/<dir_name>`.
    pub fn dir(&self, root: &Path) -> PathBuf {
        root.join(self.dir_name())
    }
}

/// What the GPU stack of this machine offers, probed without ONNX Runtime (for the engine cache
/// key and `vlbeit doctor`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GpuStack {
    /// CUDA driver library and version, or why not found.
    pub cuda_driver: std::result::Result<String, String>,
    /// Name of each visible GPU.
    pub gpus: Vec<String>,
    /// TensorRT library and version (`getInferLibVersion`), or why not found.
    pub tensorrt: std::result::Result<String, String>,
}

impl GpuStack {
    /// [`GpuStack::probe`] once per process: the driver, GPUs and TensorRT do not change while
    /// it runs, and every TensorRT session (a pool creates several) needs them for its cache key.
    pub fn cached() -> &'static Self {
        static STACK: std::sync::OnceLock<GpuStack> = std::sync::OnceLock::new();
        STACK.get_or_init(Self::probe)
    }

    /// Probes `libcuda.so.1` and `libnvinfer.so.{10,8}` through the system loader.
    pub fn probe() -> Self {
        let (cuda_driver, gpus) = match probe_cuda() {
            Ok((version, gpus)) => (Ok(version), gpus),
            Err(e) => (Err(e), Vec::new()),
        };
        Self {
            cuda_driver,
            gpus,
            tensorrt: probe_tensorrt(),
        }
    }
}

fn probe_cuda() -> std::result::Result<(String, Vec<String>), String> {
    type Init = unsafe extern "C" fn(u32) -> i32;
    type DriverVersion = unsafe extern "C" fn(*mut i32) -> i32;
    type DeviceCount = unsafe extern "C" fn(*mut i32) -> i32;
    type DeviceGet = unsafe extern "C" fn(*mut i32, i32) -> i32;
    type DeviceName = unsafe extern "C" fn(*mut std::ffi::c_char, i32, i32) -> i32;
    // SAFETY: loading the CUDA driver runs no user-visible initializers; failure is an Err.
    let lib = unsafe { libloading::Library::new("libcuda.so.1") }.map_err(|e| {
        format!("libcuda.so.1 not loadable ({e}); no NVIDIA driver on this machine")
    })?;
    macro_rules! symbol {
        ($name:literal, $ty:ty) => {
            // SAFETY: the CUDA driver API's C signatures (cuda.h), stable since CUDA 2; the
            // library outlives every call below.
            *unsafe { lib.get::<$ty>(concat!($name, "\0").as_bytes()) }
                .map_err(|e| format!("libcuda.so.1 lacks {}: {e}", $name))?
        };
    }
    let init = symbol!("cuInit", Init);
    let driver_version = symbol!("cuDriverGetVersion", DriverVersion);
    let count = symbol!("cuDeviceGetCount", DeviceCount);
    let get = symbol!("cuDeviceGet", DeviceGet);
    let name = symbol!("cuDeviceGetName", DeviceName);
    // SAFETY: the out-pointers are valid for writes; buffers are sized as passed.
    unsafe {
        let status = init(0);
        if status != 0 {
            return Err(format!("cuInit failed with CUDA error {status}"));
        }
        let mut version = 0;
        driver_version(&mut version);
        let mut n = 0;
        count(&mut n);
        let mut gpus = Vec::new();
        for ordinal in 0..n {
            let mut device = 0;
            if get(&mut device, ordinal) != 0 {
                continue;
            }
            let mut buf = [0 as std::ffi::c_char; 256];
            if name(buf.as_mut_ptr(), buf.len() as i32, device) == 0 {
                gpus.push(
                    std::ffi::CStr::from_ptr(buf.as_ptr())
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
        Ok((
            format!("CUDA driver {}.{}", version / 1000, (version % 1000) / 10),
            gpus,
        ))
    }
}

fn probe_tensorrt() -> std::result::Result<String, String> {
    type Version = unsafe extern "C" fn() -> i32;
    let mut tried = Vec::new();
    for name in ["libnvinfer.so.10", "libnvinfer.so.8", "libnvinfer.so"] {
        // SAFETY: as for libcuda; a missing library is an Err.
        match unsafe { libloading::Library::new(name) } {
            Ok(lib) => {
                // SAFETY: `int32_t getInferLibVersion()` is TensorRT's exported C entry point.
                let version = unsafe { lib.get::<Version>(b"getInferLibVersion\0") }
                    .map(|f| unsafe { f() })
                    .map_err(|e| format!("{name} lacks getInferLibVersion: {e}"))?;
                // TensorRT 10 encodes MAJOR*10000 + MINOR*100 + PATCH; 8.x used *1000 + *100.
                let text = if version >= 10000 {
                    format!(
                        "{}.{}.{}",
                        version / 10000,
                        (version / 100) % 100,
                        version % 100
                    )
                } else {
                    format!(
                        "{}.{}.{}",
                        version / 1000,
                        (version / 100) % 10,
                        version % 100
                    )
                };
                return Ok(format!("TensorRT {text} ({name})"));
            }
            Err(_) => tried.push(name),
        }
    }
    Err(format!(
        "no TensorRT library found (tried {})",
        tried.join(", ")
    ))
}

/// What a graph was given to run on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProviderReport {
    pub graph: String,
    /// Requested provider (`cpu`, `cuda`, `tensorrt`).
    pub requested: String,
    /// Providers registered on the session, in priority order (ONNX Runtime assigns each node
    /// to the first that supports it; CPU is always last).
    pub registered: Vec<String>,
    /// Why the requested provider was not registered (non-strict mode only).
    pub fallback_reason: Option<String>,
    /// TensorRT engine cache directory, when one is used.
    pub engine_cache: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> EngineCacheKey {
        EngineCacheKey {
            bundle_sha256: "ab".repeat(32),
            graph: "fusion_encoder.onnx".into(),
            gpu_name: "NVIDIA Orin".into(),
            tensorrt_version: "10.3.0".into(),
            onnxruntime_version: "1.31.1".into(),
            precision: "fp16/fp32".into(),
            profile: "a;b;c".into(),
        }
    }

    #[test]
    fn every_field_of_the_engine_cache_key_changes_the_directory() {
        let base = key().dir_name();
        assert!(base.starts_with("fusion_encoder-"), "{base}");
        assert_eq!(base, key().dir_name(), "the key is deterministic");
        let edits: [fn(&mut EngineCacheKey); 7] = [
            |k| k.bundle_sha256 = "cd".repeat(32),
            |k| k.graph = "text_encoder.onnx".into(),
            |k| k.gpu_name = "NVIDIA H200".into(),
            |k| k.tensorrt_version = "10.4.0".into(),
            |k| k.onnxruntime_version = "1.32.0".into(),
            |k| k.precision = "fp32/fp32".into(),
            |k| k.profile = "a;b;d".into(),
        ];
        let mut seen = std::collections::BTreeSet::from([base]);
        for edit in edits {
            let mut k = key();
            edit(&mut k);
            assert!(seen.insert(k.dir_name()), "an edit reused a directory");
        }
    }

    #[test]
    fn derived_profiles_cover_batch_and_both_text_lengths() {
        let p = ShapeProfile::derived(8, 32, 24);
        p.check().unwrap();
        let (min, opt, max) = p.shape_strings("fusion_encoder.onnx", 64);
        assert_eq!(
            min,
            "pixel_values:1x3x64x64,input_ids:1x1,attention_mask:1x1"
        );
        assert_eq!(
            opt,
            "pixel_values:8x3x64x64,input_ids:8x24,attention_mask:8x24"
        );
        assert_eq!(opt, max);
        let (_, _, max) = p.shape_strings("text_encoder.onnx", 64);
        assert_eq!(max, "input_ids:8x32,attention_mask:8x32");
        let (min, _, _) = p.shape_strings("image_encoder.onnx", 64);
        assert_eq!(min, "pixel_values:1x3x64x64");
    }

    #[test]
    fn a_profile_with_min_above_max_is_refused() {
        let mut p = ShapeProfile::derived(8, 32, 24);
        p.batch = DimRange {
            min: 4,
            opt: 2,
            max: 8,
        };
        let e = p.check().unwrap_err().to_string();
        assert!(e.contains("batch") && e.contains("min 4"), "{e}");
    }

    #[test]
    fn provider_names_parse_with_devices() {
        assert_eq!(
            ExecutionProvider::parse("cpu").unwrap(),
            ExecutionProvider::Cpu { threads: 0 }
        );
        assert_eq!(
            ExecutionProvider::parse("cuda:1").unwrap(),
            ExecutionProvider::Cuda { device: 1 }
        );
        match ExecutionProvider::parse("tensorrt:2").unwrap() {
            ExecutionProvider::TensorRt(o) => assert_eq!(o.device, 2),
            other => panic!("{other:?}"),
        }
        let e = ExecutionProvider::parse("vulkan").unwrap_err().to_string();
        assert!(e.contains("vulkan"), "{e}");
        assert!(ExecutionProvider::parse("cuda:x").is_err());
    }
}
