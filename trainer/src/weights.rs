//! The trainer's model file (`model.safetensors`) read without candle: its data configuration
//! and its parameters, checked. ONNX export needs only this, so a build without the `train`
//! feature can still export.

use std::path::Path;

use crate::data::DataConfig;
use crate::TrainerError;

/// The model's tensors, in the order of the network.
pub(crate) const PARAMETERS: [&str; 6] = [
    "conv1.weight",
    "conv1.bias",
    "conv2.weight",
    "conv2.bias",
    "head.weight",
    "head.bias",
];

/// The safetensors metadata entry that marks a model this trainer wrote.
pub(crate) const METADATA_KEY: &str = "socwire.model";
/// The format written under [`METADATA_KEY`].
pub(crate) const FORMAT: &str = "socwire-trainer/cnn3d-v1";

/// What [`METADATA_KEY`] holds.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ModelMetadata {
    pub(crate) format: String,
    pub(crate) data_config: DataConfig,
}

/// One parameter: its shape and its values, flattened.
pub(crate) type Parameter = (Vec<usize>, Vec<f32>);

/// The shapes of [`PARAMETERS`] for convolutions of `c1` and `c2` channels.
pub(crate) fn shapes(c1: usize, c2: usize) -> [Vec<usize>; 6] {
    [
        vec![c1, 1, 3, 3, 3],
        vec![c1],
        vec![c2, c1, 3, 3, 3],
        vec![c2],
        vec![1, c2],
        vec![1],
    ]
}

/// Reads a model file: its data configuration and its parameters in [`PARAMETERS`] order,
/// refusing a file this trainer did not write or whose tensors have the wrong type or shape.
pub(crate) fn read_model(path: &Path) -> Result<(DataConfig, Vec<Parameter>), TrainerError> {
    let bad = |reason: String| TrainerError::BadModel {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let meta = meta.metadata().clone().unwrap_or_default();
    let json = meta.get(METADATA_KEY).ok_or_else(|| {
        bad(format!(
            "metadata {METADATA_KEY} missing: not a model written by this trainer"
        ))
    })?;
    let meta: ModelMetadata =
        serde_json::from_str(json).map_err(|e| bad(format!("metadata {METADATA_KEY}: {e}")))?;
    if meta.format != FORMAT {
        return Err(bad(format!(
            "format {} is not {FORMAT}: not a model written by this trainer",
            meta.format
        )));
    }
    let config = meta.data_config;
    if let Some(problem) = config.problem() {
        return Err(bad(format!("metadata {METADATA_KEY}: {problem}")));
    }
    let tensors = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(format!("unreadable tensors: {e}")))?;
    let mut params = Vec::with_capacity(PARAMETERS.len());
    for name in PARAMETERS {
        params.push(f32_tensor(&tensors, name).map_err(bad)?);
    }
    let c1 = params[0].0.first().copied().unwrap_or(0);
    let c2 = params[2].0.first().copied().unwrap_or(0);
    for ((name, (got, _)), want) in PARAMETERS.iter().zip(&params).zip(shapes(c1, c2)) {
        if *got != want || want.contains(&0) {
            return Err(bad(format!(
                "tensor {name} has shape {got:?}, expected {want:?}"
            )));
        }
    }
    Ok((config, params))
}

/// Tensor `name` of a safetensors file as its shape and f32 values (little-endian), or why not.
pub(crate) fn f32_tensor(
    tensors: &safetensors::SafeTensors<'_>,
    name: &str,
) -> Result<(Vec<usize>, Vec<f32>), String> {
    let t = tensors
        .tensor(name)
        .map_err(|_| format!("tensor {name} missing"))?;
    if t.dtype() != safetensors::Dtype::F32 {
        return Err(format!("tensor {name} is {:?}, expected f32", t.dtype()));
    }
    let values = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok((t.shape().to_vec(), values))
}
