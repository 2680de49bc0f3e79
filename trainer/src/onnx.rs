//! `model.safetensors` → `model.onnx` (IR 8, opset 13) with the `onnx-protobuf` messages.
//!
//! The graph uses ONNX's native 3D `Conv`, `MaxPool` and `GlobalMaxPool`, not the
//! trainer's im2col construction, so an independent runtime agreeing with
//! [`crate::Model::predict`] checks both.

use std::path::Path;

use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::tensor_shape_proto::{dimension, Dimension};
use onnx_protobuf::{
    type_proto, AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

use crate::weights::{read_model, PARAMETERS};
use crate::TrainerError;

/// Names and shape of the exported graph's interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnnxInfo {
    /// The float32 input, `[batch, 1, e, e, e]`.
    pub input_name: String,
    /// Its shape; `-1` marks the dynamic batch dimension (named `batch` in the file).
    pub input_shape: Vec<i64>,
    /// The float32 output `[batch, 1]`: probability of the positive class, in `[0, 1]`.
    pub output_name: String,
}

const INPUT: &str = "volume";
const OUTPUT: &str = "probability";
const OPSET: i64 = 13;
const IR_VERSION: i64 = 8;

/// Reads the interface of any ONNX model (a container job's `model.onnx`): its first graph
/// input that is not an initializer, and its first output. A dimension without a fixed size
/// is `-1`. A file that is not an ONNX model, or a graph without an input or an output, is a
/// [`TrainerError::BadModel`].
pub fn describe_onnx(path: &Path) -> Result<OnnxInfo, TrainerError> {
    let bad = |reason: String| TrainerError::BadModel {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    let model =
        ModelProto::parse_from_bytes(&bytes).map_err(|e| bad(format!("not an ONNX model: {e}")))?;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| bad("not an ONNX model: no graph".into()))?;
    let initialised: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let input = graph
        .input
        .iter()
        .find(|i| !initialised.contains(i.name.as_str()))
        .ok_or_else(|| bad("the graph has no input".into()))?;
    let output = graph
        .output
        .first()
        .ok_or_else(|| bad("the graph has no output".into()))?;
    let shape = match &input.type_.as_ref().and_then(|t| t.value.clone()) {
        Some(type_proto::Value::TensorType(t)) => t
            .shape
            .as_ref()
            .map(|s| {
                s.dim
                    .iter()
                    .map(|d| match d.value {
                        Some(dimension::Value::DimValue(v)) => v,
                        _ => -1,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    Ok(OnnxInfo {
        input_name: input.name.clone(),
        input_shape: shape,
        output_name: output.name.clone(),
    })
}

/// Converts a model written by the trainer (`model.safetensors`) to ONNX at `out`.
pub fn export_onnx(model: &Path, out: &Path) -> Result<OnnxInfo, TrainerError> {
    let (config, params) = read_model(model)?;
    let edge = config.edge as i64;

    let mut graph = GraphProto {
        name: "socwire_lesion_cnn3d".into(),
        ..Default::default()
    };
    for (name, (shape, values)) in PARAMETERS.iter().zip(&params) {
        graph.initializer.push(float_tensor(name, shape, values));
    }
    let conv = |x: &str, w: &str, b: &str, y: &str| {
        node(
            "Conv",
            &[x, w, b],
            y,
            vec![
                ints("kernel_shape", &[3, 3, 3]),
                ints("pads", &[1, 1, 1, 1, 1, 1]),
                ints("strides", &[1, 1, 1]),
            ],
        )
    };
    let pool = |x: &str, y: &str| {
        node(
            "MaxPool",
            &[x],
            y,
            vec![
                ints("kernel_shape", &[2, 2, 2]),
                ints("strides", &[2, 2, 2]),
            ],
        )
    };
    graph.node = vec![
        conv(INPUT, "conv1.weight", "conv1.bias", "conv1"),
        node("Relu", &["conv1"], "relu1", vec![]),
        pool("relu1", "pool1"),
        conv("pool1", "conv2.weight", "conv2.bias", "conv2"),
        node("Relu", &["conv2"], "relu2", vec![]),
        pool("relu2", "pool2"),
        node("GlobalMaxPool", &["pool2"], "pooled", vec![]),
        node("Flatten", &["pooled"], "features", vec![int("axis", 1)]),
        node(
            "Gemm",
            &["features", "head.weight", "head.bias"],
            "logit",
            vec![int("transB", 1)],
        ),
        node("Sigmoid", &["logit"], OUTPUT, vec![]),
    ];
    let batch = || Dimension {
        value: Some(dimension::Value::DimParam("batch".into())),
        ..Default::default()
    };
    let fixed = |n: i64| Dimension {
        value: Some(dimension::Value::DimValue(n)),
        ..Default::default()
    };
    graph.input.push(value_info(
        INPUT,
        vec![batch(), fixed(1), fixed(edge), fixed(edge), fixed(edge)],
    ));
    graph
        .output
        .push(value_info(OUTPUT, vec![batch(), fixed(1)]));

    let onnx = ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
            ..Default::default()
        }],
        producer_name: "socwire-trainer".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: "Lesion classifier for 3D CT-like volumes; output is P(lesion).".into(),
        metadata_props: vec![StringStringEntryProto {
            key: "socwire.dataConfig".into(),
            value: serde_json::to_string(&config).expect("DataConfig serialises"),
            ..Default::default()
        }],
        graph: Some(graph).into(),
        ..Default::default()
    };
    let bytes = onnx.write_to_bytes().map_err(|e| TrainerError::Io {
        context: "encoding the ONNX model".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    std::fs::write(out, bytes).map_err(|source| TrainerError::Io {
        context: format!("writing {}", out.display()),
        source,
    })?;
    Ok(OnnxInfo {
        input_name: INPUT.into(),
        input_shape: vec![-1, 1, edge, edge, edge],
        output_name: OUTPUT.into(),
    })
}

fn float_tensor(name: &str, shape: &[usize], values: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: shape.iter().map(|&d| d as i64).collect(),
        data_type: DataType::FLOAT as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: output.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute,
        ..Default::default()
    }
}

fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: AttributeType::INTS.into(),
        ints: values.to_vec(),
        ..Default::default()
    }
}

fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: AttributeType::INT.into(),
        i: value,
        ..Default::default()
    }
}

fn value_info(name: &str, dims: Vec<Dimension>) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        type_: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::FLOAT as i32,
                shape: Some(TensorShapeProto {
                    dim: dims,
                    ..Default::default()
                })
                .into(),
                ..Default::default()
            })),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    }
}
