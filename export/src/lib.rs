//! vlbeit-export: writes VL-BEiT checkpoints as ONNX graphs, in pure Rust (no libtorch, no
//! Python). The ONNX writer and graph builders are added by the exporter work; this crate is
//! in the workspace now so that the dependency direction (core ← export, runtime ← export) is
//! fixed from the start.

pub use vlbeit_core as core;
