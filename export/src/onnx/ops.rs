//! One helper per ONNX operator the exporter uses (opset 17 signatures: Slice, Unsqueeze,
//! Squeeze, ReduceSum and Pad take their axes/pads as inputs; ReduceMean still as an attribute),
//! and ONNX Runtime's `com.microsoft.Attention`.

/// ONNX Runtime's contrib operator domain.
pub const MS_DOMAIN: &str = "com.microsoft";

use super::builder::{
    ElemType, GraphBuilder, Value, attr_float, attr_int, attr_ints, data_type_code,
};

impl GraphBuilder {
    pub fn matmul(&mut self, a: &Value, b: &Value) -> Value {
        self.node("MatMul", &[a, b], vec![])
    }

    /// `alpha * A' B' + beta * C` on 2-D `A`; `trans_b` reads `B` as `[N, K]` (PyTorch's
    /// `[out, in]` weights without a transposed copy).
    pub fn gemm(&mut self, a: &Value, b: &Value, c: Option<&Value>, trans_b: bool) -> Value {
        let mut inputs = vec![a, b];
        inputs.extend(c);
        self.node(
            "Gemm",
            &inputs,
            vec![attr_int("transB", i64::from(trans_b))],
        )
    }

    pub fn add(&mut self, a: &Value, b: &Value) -> Value {
        self.node("Add", &[a, b], vec![])
    }

    pub fn sub(&mut self, a: &Value, b: &Value) -> Value {
        self.node("Sub", &[a, b], vec![])
    }

    pub fn mul(&mut self, a: &Value, b: &Value) -> Value {
        self.node("Mul", &[a, b], vec![])
    }

    pub fn div(&mut self, a: &Value, b: &Value) -> Value {
        self.node("Div", &[a, b], vec![])
    }

    pub fn pow(&mut self, a: &Value, b: &Value) -> Value {
        self.node("Pow", &[a, b], vec![])
    }

    pub fn sqrt(&mut self, x: &Value) -> Value {
        self.node("Sqrt", &[x], vec![])
    }

    pub fn erf(&mut self, x: &Value) -> Value {
        self.node("Erf", &[x], vec![])
    }

    pub fn tanh(&mut self, x: &Value) -> Value {
        self.node("Tanh", &[x], vec![])
    }

    pub fn max(&mut self, a: &Value, b: &Value) -> Value {
        self.node("Max", &[a, b], vec![])
    }

    pub fn identity(&mut self, x: &Value) -> Value {
        self.node("Identity", &[x], vec![])
    }

    /// 2-D convolution without padding or dilation.
    pub fn conv(
        &mut self,
        x: &Value,
        w: &Value,
        b: &Value,
        kernel: [i64; 2],
        stride: [i64; 2],
    ) -> Value {
        self.node(
            "Conv",
            &[x, w, b],
            vec![
                attr_ints("kernel_shape", &kernel),
                attr_ints("strides", &stride),
            ],
        )
    }

    /// `shape` may hold 0 (copy that input axis) and one -1 (inferred).
    pub fn reshape(&mut self, x: &Value, shape: &[i64]) -> Value {
        let shape = self.const_i64(shape);
        self.node("Reshape", &[x, &shape], vec![])
    }

    pub fn transpose(&mut self, x: &Value, perm: &[i64]) -> Value {
        self.node("Transpose", &[x], vec![attr_ints("perm", perm)])
    }

    pub fn concat(&mut self, xs: &[&Value], axis: i64) -> Value {
        self.node("Concat", xs, vec![attr_int("axis", axis)])
    }

    /// `x[starts:ends]` along `axes`; bounds are graph values, so they may be dynamic.
    pub fn slice(&mut self, x: &Value, starts: &Value, ends: &Value, axes: &[i64]) -> Value {
        let axes = self.const_i64(axes);
        self.node("Slice", &[x, starts, ends, &axes], vec![])
    }

    /// `x[start:end]` along `axis` with constant bounds.
    pub fn slice_const(&mut self, x: &Value, start: i64, end: i64, axis: i64) -> Value {
        let starts = self.const_i64(&[start]);
        let ends = self.const_i64(&[end]);
        self.slice(x, &starts, &ends, &[axis])
    }

    /// `take` along `axis`; a scalar index drops the axis (as tch's `select`).
    pub fn gather(&mut self, x: &Value, indices: &Value, axis: i64) -> Value {
        self.node("Gather", &[x, indices], vec![attr_int("axis", axis)])
    }

    pub fn unsqueeze(&mut self, x: &Value, axes: &[i64]) -> Value {
        let axes = self.const_i64(axes);
        self.node("Unsqueeze", &[x, &axes], vec![])
    }

    pub fn squeeze(&mut self, x: &Value, axes: &[i64]) -> Value {
        let axes = self.const_i64(axes);
        self.node("Squeeze", &[x, &axes], vec![])
    }

    pub fn softmax(&mut self, x: &Value, axis: i64) -> Value {
        self.node("Softmax", &[x], vec![attr_int("axis", axis)])
    }

    /// LayerNormalization (opset 17) over the last axis, computed in the input type (f32).
    pub fn layer_norm(&mut self, x: &Value, scale: &Value, bias: &Value, epsilon: f32) -> Value {
        self.node(
            "LayerNormalization",
            &[x, scale, bias],
            vec![attr_int("axis", -1), attr_float("epsilon", epsilon)],
        )
    }

    pub fn reduce_mean(&mut self, x: &Value, axes: &[i64], keepdims: bool) -> Value {
        self.node(
            "ReduceMean",
            &[x],
            vec![
                attr_ints("axes", axes),
                attr_int("keepdims", i64::from(keepdims)),
            ],
        )
    }

    pub fn reduce_sum(&mut self, x: &Value, axes: &[i64], keepdims: bool) -> Value {
        let axes = self.const_i64(axes);
        self.node(
            "ReduceSum",
            &[x, &axes],
            vec![attr_int("keepdims", i64::from(keepdims))],
        )
    }

    pub fn cast(&mut self, x: &Value, to: ElemType) -> Value {
        self.node("Cast", &[x], vec![attr_int("to", data_type_code(to))])
    }

    /// The shape of `x` as a 1-D i64 tensor.
    pub fn shape(&mut self, x: &Value) -> Value {
        self.node("Shape", &[x], vec![])
    }

    /// `shape(x)[axis]` as a 1-element i64 tensor (ready for Slice bounds or Concat).
    pub fn dim(&mut self, x: &Value, axis: i64) -> Value {
        let shape = self.shape(x);
        self.slice_const(&shape, axis, axis + 1, 0)
    }

    pub fn where_(&mut self, cond: &Value, a: &Value, b: &Value) -> Value {
        self.node("Where", &[cond, a, b], vec![])
    }

    pub fn equal(&mut self, a: &Value, b: &Value) -> Value {
        self.node("Equal", &[a, b], vec![])
    }

    pub fn expand(&mut self, x: &Value, shape: &Value) -> Value {
        self.node("Expand", &[x, shape], vec![])
    }

    /// ONNX Runtime's fused multi-head self-attention (`com.microsoft.Attention`, version 1):
    /// `x [B, S, D]` times the packed `[D, 3D]` q/k/v weight plus `bias [3D]`, softmax of the
    /// scaled logits with keys where the int32 `mask_index [B, S]` is 0 left out, heads merged
    /// back to `[B, S, D]` (before the output projection).
    pub fn ms_attention(
        &mut self,
        x: &Value,
        qkv_weight: &Value,
        qkv_bias: &Value,
        mask_index: Option<&Value>,
        num_heads: i64,
        scale: f32,
    ) -> Value {
        let mut inputs = vec![x, qkv_weight, qkv_bias];
        inputs.extend(mask_index);
        let attributes = vec![attr_int("num_heads", num_heads), attr_float("scale", scale)];
        self.node_in_domain(MS_DOMAIN, "Attention", &inputs, attributes, 1)
            .pop()
            .expect("one output")
    }

    /// Constant padding; `pads` is `[begin_0, .., begin_n, end_0, .., end_n]`.
    pub fn pad(&mut self, x: &Value, pads: &[i64], value: &Value) -> Value {
        let pads = self.const_i64(pads);
        self.node("Pad", &[x, &pads, value], vec![attr_string_mode()])
    }
}

fn attr_string_mode() -> super::proto::AttributeProto {
    super::proto::AttributeProto {
        name: "mode".into(),
        r#type: Some(super::proto::AttributeType::String as i32),
        s: Some(b"constant".to_vec()),
        ..Default::default()
    }
}
