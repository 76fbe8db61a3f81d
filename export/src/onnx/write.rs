//! Serializes a graph as an ONNX model file (IR version 8, opset 17), atomically, with external
//! data when the model would not fit in one protobuf message.

use std::io::Write;
use std::path::{Path, PathBuf};

use prost::Message;

use super::proto::{
    DataLocation, GraphProto, ModelProto, OperatorSetIdProto, StringStringEntryProto, TensorProto,
};

/// ONNX IR version 8 (ONNX 1.10+), the oldest that ONNX Runtime 1.31 and opset 17 agree on.
pub const IR_VERSION: i64 = 8;
/// Opset 17: the first with LayerNormalization, which ONNX Runtime runs as one kernel.
pub const OPSET: i64 = 17;
/// Protobuf refuses messages of 2 GiB or more; stay clear of it.
pub const PROTOBUF_LIMIT: usize = (1 << 31) - (1 << 20);
/// External tensors start at multiples of 64 KiB, so a reader can map them page-aligned.
pub const EXTERNAL_ALIGNMENT: u64 = 64 * 1024;
/// Smaller initializers stay inline even in an external-data model (shapes, axes, scalars).
const EXTERNAL_MIN_BYTES: usize = 1024;

/// How a model is written.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Above this encoded size, initializers of 1 KiB or more move to `<file>.data`.
    pub external_data_above: usize,
    pub producer_version: String,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            external_data_above: PROTOBUF_LIMIT,
            producer_version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

impl WriteOptions {
    pub fn with_external_data_above(mut self, bytes: usize) -> Self {
        self.external_data_above = bytes;
        self
    }
}

/// What [`write_model`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenModel {
    pub path: PathBuf,
    /// The external data file, when one was needed.
    pub data_path: Option<PathBuf>,
    /// Size of the `.onnx` file.
    pub bytes: u64,
}

/// Wraps `graph` in a `ModelProto` and writes it to `path` (temp file + rename; the `.data`
/// file, if any, is renamed into place first so the graph never points at a missing file).
pub fn write_model(
    mut graph: GraphProto,
    path: &Path,
    options: &WriteOptions,
) -> std::io::Result<WrittenModel> {
    let data_path = if graph.encoded_len() > options.external_data_above {
        let file_name = path
            .file_name()
            .map(|n| format!("{}.data", n.to_string_lossy()))
            .unwrap_or_else(|| "model.onnx.data".into());
        let data_path = path.with_file_name(&file_name);
        let bytes = move_to_external(&mut graph.initializer, &file_name);
        write_atomically(&data_path, &bytes)?;
        Some(data_path)
    } else {
        None
    };
    // ai.onnx at OPSET, and version 1 of every other domain a node uses (com.microsoft).
    let mut opset_import = vec![OperatorSetIdProto {
        domain: String::new(),
        version: OPSET,
    }];
    for node in &graph.node {
        if !opset_import.iter().any(|o| o.domain == node.domain) {
            opset_import.push(OperatorSetIdProto {
                domain: node.domain.clone(),
                version: 1,
            });
        }
    }
    let model = ModelProto {
        ir_version: IR_VERSION,
        opset_import,
        producer_name: "vlbeit-export".into(),
        producer_version: options.producer_version.clone(),
        graph: Some(graph),
        ..Default::default()
    };
    let bytes = model.encode_to_vec();
    write_atomically(path, &bytes)?;
    Ok(WrittenModel {
        path: path.to_owned(),
        data_path,
        bytes: bytes.len() as u64,
    })
}

/// Moves the raw data of every large initializer into one buffer (64 KiB-aligned offsets) and
/// leaves `external_data` entries (`location`, `offset`, `length`) in its place, as the ONNX
/// external-data specification describes.
fn move_to_external(initializers: &mut [TensorProto], location: &str) -> Vec<u8> {
    let mut data = Vec::new();
    for tensor in initializers.iter_mut() {
        let Some(raw) = tensor
            .raw_data
            .take_if(|raw| raw.len() >= EXTERNAL_MIN_BYTES)
        else {
            continue;
        };
        let offset = (data.len() as u64).div_ceil(EXTERNAL_ALIGNMENT) * EXTERNAL_ALIGNMENT;
        data.resize(offset as usize, 0);
        data.extend_from_slice(&raw);
        let entry = |key: &str, value: String| StringStringEntryProto {
            key: key.to_owned(),
            value,
        };
        tensor.external_data = vec![
            entry("location", location.to_owned()),
            entry("offset", offset.to_string()),
            entry("length", raw.len().to_string()),
        ];
        tensor.data_location = Some(DataLocation::External as i32);
    }
    data
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::{Dim, ElemType, GraphBuilder, attr_int};

    fn graph_with(weights: &[(&str, usize)]) -> GraphProto {
        let mut g = GraphBuilder::new("g");
        let x = g.input("x", ElemType::F32, &[Dim::dynamic("batch")]);
        let mut y = x;
        for (name, len) in weights {
            let w = g.initializer_f32(name, &[*len as i64], &vec![1.0; *len]);
            y = g.add(&y, &w);
        }
        g.output(&y, "y", ElemType::F32, &[Dim::dynamic("batch")]);
        g.finish()
    }

    #[test]
    fn an_attribute_of_value_zero_keeps_its_presence() {
        // proto2 presence: the checker wants exactly one value field set, even for axis = 0.
        let bytes = prost::Message::encode_to_vec(&attr_int("axis", 0));
        let decoded: crate::onnx::proto::AttributeProto = Message::decode(&bytes[..]).unwrap();
        assert_eq!(decoded.i, Some(0));
        assert_eq!(decoded.f, None);
    }

    #[test]
    fn external_data_is_aligned_and_small_tensors_stay_inline() {
        let mut graph = graph_with(&[("a", 300), ("small", 4), ("b", 20_000)]);
        let data = move_to_external(&mut graph.initializer, "m.onnx.data");
        let entry = |t: &TensorProto, key: &str| -> u64 {
            t.external_data
                .iter()
                .find(|e| e.key == key)
                .unwrap()
                .value
                .parse()
                .unwrap()
        };
        let [a, small, b] = &graph.initializer[..] else {
            panic!("three initializers")
        };
        assert_eq!((entry(a, "offset"), entry(a, "length")), (0, 1200));
        assert_eq!(
            (entry(b, "offset"), entry(b, "length")),
            (EXTERNAL_ALIGNMENT, 80_000)
        );
        assert!(small.external_data.is_empty() && small.raw_data.is_some());
        assert_eq!(b.data_location, Some(DataLocation::External as i32));
        assert_eq!(data.len() as u64, EXTERNAL_ALIGNMENT + 80_000);
        assert_eq!(&data[..4], &1f32.to_le_bytes());
    }

    #[test]
    fn write_model_declares_ir_8_and_opset_17() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.onnx");
        let written =
            write_model(graph_with(&[("a", 8)]), &path, &WriteOptions::default()).unwrap();
        assert!(written.data_path.is_none());
        let model = ModelProto::decode(&std::fs::read(&path).unwrap()[..]).unwrap();
        assert_eq!(model.ir_version, 8);
        assert_eq!(model.opset_import[0].version, 17);
        assert_eq!(model.graph.unwrap().output[0].name, "y");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
