//! Graph signatures (inputs and outputs with element type and shape) as the bundle manifest
//! records them, read from the graph a builder produced.

use serde::{Deserialize, Serialize};
pub use vlbeit_core::manifest::{DimSpec, TensorSpec};

use crate::onnx::proto::{GraphProto, ValueInfoProto, tensor_shape_proto::dimension, type_proto};

/// The inputs and outputs of one graph file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphSignature {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

impl GraphSignature {
    pub(crate) fn of(graph: &GraphProto) -> Self {
        Self {
            inputs: graph.input.iter().map(spec).collect(),
            outputs: graph.output.iter().map(spec).collect(),
        }
    }
}

fn spec(info: &ValueInfoProto) -> TensorSpec {
    let tensor = info.r#type.as_ref().and_then(|t| {
        t.value
            .as_ref()
            .map(|type_proto::Value::TensorType(tensor)| tensor)
    });
    let dtype = match tensor.map(|t| t.elem_type) {
        Some(1) => "float32",
        Some(7) => "int64",
        Some(9) => "bool",
        Some(10) => "float16",
        _ => "undefined",
    };
    let shape = tensor
        .and_then(|t| t.shape.as_ref())
        .map(|s| {
            s.dim
                .iter()
                .map(|d| match &d.value {
                    Some(dimension::Value::DimValue(v)) => DimSpec::Fixed(*v),
                    Some(dimension::Value::DimParam(p)) => DimSpec::Symbolic(p.clone()),
                    None => DimSpec::Symbolic(String::new()),
                })
                .collect()
        })
        .unwrap_or_default();
    TensorSpec {
        name: info.name.clone(),
        dtype: dtype.to_owned(),
        shape,
    }
}
