//! A minimal ONNX writer: hand-declared protobuf messages (`proto`), a typed graph builder
//! (`builder`, `ops`) and the model file writer with external data (`write`).

mod builder;
mod ops;
pub mod proto;
mod write;

pub use ops::MS_DOMAIN;

pub use builder::{
    Dim, ElemType, GraphBuilder, Value, attr_float, attr_int, attr_ints, f16_bits_to_f32,
    f32_to_f16_bits,
};
pub use write::{
    EXTERNAL_ALIGNMENT, IR_VERSION, OPSET, PROTOBUF_LIMIT, WriteOptions, WrittenModel, write_model,
};
