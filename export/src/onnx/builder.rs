//! A small typed builder for ONNX graphs: named values, initializers stored as little-endian
//! `raw_data`, graph inputs/outputs with fixed or dynamic (`dim_param`) axes, and fresh names for
//! every intermediate value. The operator helpers live in `ops.rs`.

use std::collections::HashSet;

use super::proto::{
    AttributeProto, AttributeType, DataType, GraphProto, NodeProto, TensorProto, TensorShapeProto,
    TypeProto, ValueInfoProto, tensor_shape_proto, type_proto,
};

/// A tensor of the graph under construction, by name. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Value(pub(crate) String);

impl Value {
    /// Its name in the graph.
    pub fn name(&self) -> &str {
        &self.0
    }
}

/// Element type of a graph input, output or initializer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElemType {
    F32,
    /// IEEE 754 half precision (ONNX `FLOAT16`).
    F16,
    /// ONNX Runtime's attention `mask_index`.
    I32,
    I64,
    Bool,
}

impl ElemType {
    fn data_type(self) -> DataType {
        match self {
            Self::F32 => DataType::Float,
            Self::F16 => DataType::Float16,
            Self::I32 => DataType::Int32,
            Self::I64 => DataType::Int64,
            Self::Bool => DataType::Bool,
        }
    }
}

/// One axis of a graph input or output: a fixed size, or a named dynamic axis (`batch`, `seq`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    Fixed(i64),
    Dynamic(String),
}

impl Dim {
    /// A named dynamic axis.
    pub fn dynamic(name: &str) -> Self {
        Self::Dynamic(name.to_owned())
    }
}

impl From<i64> for Dim {
    fn from(size: i64) -> Self {
        Self::Fixed(size)
    }
}

/// Builds one `GraphProto`. Nodes are appended in call order, which is topological because a
/// helper can only consume values that already exist.
#[derive(Debug)]
pub struct GraphBuilder {
    name: String,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    names: HashSet<String>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    next_id: usize,
}

impl GraphBuilder {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            nodes: Vec::new(),
            initializers: Vec::new(),
            names: HashSet::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            next_id: 0,
        }
    }

    /// A name not used yet in this graph, `{hint}_{n}`.
    pub fn fresh_name(&mut self, hint: &str) -> String {
        loop {
            let name = format!("{hint}_{}", self.next_id);
            self.next_id += 1;
            if self.names.insert(name.clone()) {
                return name;
            }
        }
    }

    fn claim(&mut self, name: &str) {
        assert!(
            self.names.insert(name.to_owned()),
            "value name `{name}` is used twice in graph `{}`",
            self.name
        );
    }

    /// Declares a graph input.
    pub fn input(&mut self, name: &str, elem: ElemType, dims: &[Dim]) -> Value {
        self.claim(name);
        self.inputs.push(value_info(name, elem, dims));
        Value(name.to_owned())
    }

    /// Declares `value` as the graph output `name` (through an Identity, which ONNX Runtime
    /// removes, so that outputs keep their documented names whatever node made them).
    pub fn output(&mut self, value: &Value, name: &str, elem: ElemType, dims: &[Dim]) {
        self.claim(name);
        self.nodes.push(NodeProto {
            input: vec![value.0.clone()],
            output: vec![name.to_owned()],
            name: format!("{name}_identity"),
            op_type: "Identity".into(),
            ..Default::default()
        });
        self.outputs.push(value_info(name, elem, dims));
    }

    /// Has an initializer of this name already been added?
    pub fn has_initializer(&self, name: &str) -> bool {
        self.initializers.iter().any(|t| t.name == name)
    }

    /// An f32 initializer named `name` (checkpoint weights keep their safetensors name).
    pub fn initializer_f32(&mut self, name: &str, dims: &[i64], data: &[f32]) -> Value {
        assert_eq!(
            dims.iter().product::<i64>() as usize,
            data.len(),
            "initializer `{name}`: {dims:?} does not hold {} values",
            data.len()
        );
        let raw = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.push_initializer(name, DataType::Float, dims, raw)
    }

    /// An fp16 initializer named `name`, converted from f32 with round-to-nearest-even
    /// (values beyond the fp16 range become ±inf, as a PyTorch `.half()` does).
    pub fn initializer_f16(&mut self, name: &str, dims: &[i64], data: &[f32]) -> Value {
        assert_eq!(
            dims.iter().product::<i64>() as usize,
            data.len(),
            "initializer `{name}`: {dims:?} does not hold {} values",
            data.len()
        );
        let raw = data
            .iter()
            .flat_map(|&x| f32_to_f16_bits(x).to_le_bytes())
            .collect();
        self.push_initializer(name, DataType::Float16, dims, raw)
    }

    /// A fresh-named fp16 constant (`dims` may be empty: a scalar).
    pub fn const_f16(&mut self, dims: &[i64], data: &[f32]) -> Value {
        let name = self.fresh_name("const");
        self.names.remove(&name);
        self.initializer_f16(&name, dims, data)
    }

    /// An i64 initializer named `name`.
    pub fn initializer_i64(&mut self, name: &str, dims: &[i64], data: &[i64]) -> Value {
        assert_eq!(dims.iter().product::<i64>() as usize, data.len());
        let raw = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.push_initializer(name, DataType::Int64, dims, raw)
    }

    /// A fresh-named i32 constant (`dims` may be empty: a scalar).
    pub fn const_i32(&mut self, dims: &[i64], data: &[i32]) -> Value {
        assert_eq!(dims.iter().product::<i64>() as usize, data.len());
        let name = self.fresh_name("const");
        self.names.remove(&name);
        let raw = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.push_initializer(&name, DataType::Int32, dims, raw)
    }

    /// A fresh-named f32 constant (`dims` may be empty: a scalar).
    pub fn const_f32(&mut self, dims: &[i64], data: &[f32]) -> Value {
        let name = self.fresh_name("const");
        self.names.remove(&name);
        self.initializer_f32(&name, dims, data)
    }

    /// A fresh-named 1-D i64 constant (shapes, axes, indices).
    pub fn const_i64(&mut self, data: &[i64]) -> Value {
        let name = self.fresh_name("const");
        self.names.remove(&name);
        self.initializer_i64(&name, &[data.len() as i64], data)
    }

    /// A fresh-named i64 scalar (a Gather index that drops its axis).
    pub fn scalar_i64(&mut self, value: i64) -> Value {
        let name = self.fresh_name("const");
        self.names.remove(&name);
        self.initializer_i64(&name, &[], &[value])
    }

    fn push_initializer(&mut self, name: &str, dt: DataType, dims: &[i64], raw: Vec<u8>) -> Value {
        self.claim(name);
        self.initializers.push(TensorProto {
            dims: dims.to_vec(),
            data_type: dt as i32,
            name: name.to_owned(),
            raw_data: Some(raw),
            ..Default::default()
        });
        Value(name.to_owned())
    }

    /// Appends `op_type(inputs) -> outputs` and returns the fresh output values.
    pub fn node_multi(
        &mut self,
        op_type: &str,
        inputs: &[&Value],
        attributes: Vec<AttributeProto>,
        outputs: usize,
    ) -> Vec<Value> {
        self.node_in_domain("", op_type, inputs, attributes, outputs)
    }

    /// [`GraphBuilder::node_multi`] for an operator of `domain` (`""` = `ai.onnx`); the model
    /// writer imports every domain its nodes use.
    pub fn node_in_domain(
        &mut self,
        domain: &str,
        op_type: &str,
        inputs: &[&Value],
        attributes: Vec<AttributeProto>,
        outputs: usize,
    ) -> Vec<Value> {
        let hint = op_type.to_lowercase();
        let outs: Vec<String> = (0..outputs).map(|_| self.fresh_name(&hint)).collect();
        let name = self.fresh_name(&format!("{op_type}_node"));
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|v| v.0.clone()).collect(),
            output: outs.clone(),
            name,
            op_type: op_type.to_owned(),
            domain: domain.to_owned(),
            attribute: attributes,
            ..Default::default()
        });
        outs.into_iter().map(Value).collect()
    }

    /// Appends a one-output node.
    pub fn node(
        &mut self,
        op_type: &str,
        inputs: &[&Value],
        attributes: Vec<AttributeProto>,
    ) -> Value {
        self.node_multi(op_type, inputs, attributes, 1)
            .pop()
            .expect("one output")
    }

    /// The finished graph.
    pub fn finish(self) -> GraphProto {
        GraphProto {
            node: self.nodes,
            name: self.name,
            initializer: self.initializers,
            input: self.inputs,
            output: self.outputs,
            ..Default::default()
        }
    }
}

/// The IEEE 754 binary16 bits nearest to `x` (round to nearest, ties to even); overflow gives
/// ±inf, NaN stays NaN (quiet), values below the smallest subnormal round to ±0.
pub fn f32_to_f16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let man = bits & 0x007f_ffff;
    if exp == 0xff {
        // inf or NaN (keep NaN a NaN with the quiet bit set)
        return sign
            | 0x7c00
            | if man != 0 {
                0x0200 | (man >> 13) as u16
            } else {
                0
            };
    }
    // Unbiased exponent, re-biased for half (bias 15).
    let half_exp = exp - 127 + 15;
    if half_exp >= 0x1f {
        return sign | 0x7c00;
    }
    if half_exp <= 0 {
        // Subnormal half (or zero): shift the full significand (implicit 1) into place.
        if half_exp < -10 {
            return sign;
        }
        let full = man | 0x0080_0000;
        let shift = (14 - half_exp) as u32; // 13 + (1 - half_exp)
        let mut half_man = full >> shift;
        let rest = full & ((1u32 << shift) - 1);
        let halfway = 1u32 << (shift - 1);
        if rest > halfway || (rest == halfway && half_man & 1 == 1) {
            half_man += 1;
        }
        return sign | half_man as u16;
    }
    let mut out = ((half_exp as u32) << 10) | (man >> 13);
    let rest = man & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && out & 1 == 1) {
        // A carry into the exponent is correct (it may round up to inf).
        out += 1;
    }
    sign | out as u16
}

/// The f32 value of the binary16 bits `h` (exact).
pub fn f16_bits_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x03ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: value = man * 2^-24.
            let v = man as f32 * f32::from_bits(0x3380_0000); // 2^-24
            return if sign != 0 { -v } else { v };
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, _) => sign | 0x7fc0_0000 | (man << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

fn value_info(name: &str, elem: ElemType, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                Dim::Fixed(n) => tensor_shape_proto::dimension::Value::DimValue(*n),
                Dim::Dynamic(p) => tensor_shape_proto::dimension::Value::DimParam(p.clone()),
            }),
            denotation: String::new(),
        })
        .collect();
    ValueInfoProto {
        name: name.to_owned(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem.data_type() as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            denotation: String::new(),
        }),
        doc_string: String::new(),
    }
}

/// An `INT` attribute.
pub fn attr_int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        r#type: Some(AttributeType::Int as i32),
        i: Some(value),
        ..Default::default()
    }
}

/// An `INTS` attribute.
pub fn attr_ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        r#type: Some(AttributeType::Ints as i32),
        ints: values.to_vec(),
        ..Default::default()
    }
}

/// A `FLOAT` attribute.
pub fn attr_float(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        r#type: Some(AttributeType::Float as i32),
        f: Some(value),
        ..Default::default()
    }
}

/// Data type code of `elem`, for the `to` attribute of Cast.
pub fn data_type_code(elem: ElemType) -> i64 {
    elem.data_type() as i64
}
