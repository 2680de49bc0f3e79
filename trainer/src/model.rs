//! The small 3D CNN: two 3×3×3 convolutions (each + ReLU + 2×2×2 max-pool), global average
//! pooling and one linear unit giving the logit of "lesion present".
//!
//! candle has no 3D convolution, so [`conv3d`] gathers the 27 shifted copies of the
//! zero-padded input and contracts them with the kernel in one batched matmul
//! (im2col). The ONNX export uses the native ONNX `Conv` instead, which makes the ONNX
//! comparison test an independent check of this construction.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor, Var, D};

use crate::data::{DataConfig, Rng};
use crate::weights::{read_model, shapes, ModelMetadata, FORMAT, METADATA_KEY, PARAMETERS};
use crate::TrainerError;

/// Names of the parameter tensors in `model.safetensors`, in a fixed order.
/// A trained (or training) model with the data configuration it belongs to.
pub struct Model {
    pub(crate) vars: Vec<Var>,
    pub(crate) config: DataConfig,
}

impl Model {
    /// A freshly initialised model (He-normal weights, zero biases) from `rng`.
    pub(crate) fn init(
        config: &DataConfig,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Self, TrainerError> {
        let [c1, c2] = config.channels;
        let mut vars = Vec::with_capacity(6);
        for shape in shapes(c1, c2) {
            let n: usize = shape.iter().product();
            let values: Vec<f32> = if shape.len() == 1 {
                vec![0.0; n]
            } else {
                let fan_in: usize = shape[1..].iter().product();
                let std = (2.0 / fan_in as f64).sqrt();
                (0..n).map(|_| (rng.normal() * std) as f32).collect()
            };
            vars.push(Var::from_tensor(&Tensor::from_vec(values, shape, device)?)?);
        }
        Ok(Self {
            vars,
            config: config.clone(),
        })
    }

    /// Reads a model written by [`Model::save`]; any other file is a clear
    /// [`TrainerError::BadModel`].
    pub fn load(path: &Path, device: &Device) -> Result<Self, TrainerError> {
        let (config, params) = read_model(path)?;
        let vars = params
            .into_iter()
            .map(|(shape, values)| Var::from_tensor(&Tensor::from_vec(values, shape, device)?))
            .collect::<Result<_, _>>()?;
        Ok(Self { vars, config })
    }

    /// Writes the parameters and the data configuration to a safetensors file.
    pub(crate) fn save(&self, path: &Path) -> Result<(), TrainerError> {
        let tensors: Vec<(&str, Tensor)> = PARAMETERS
            .iter()
            .zip(&self.vars)
            .map(|(name, var)| (*name, var.as_tensor().clone()))
            .collect();
        let meta = ModelMetadata {
            format: FORMAT.into(),
            data_config: self.config.clone(),
        };
        let meta = HashMap::from([(
            METADATA_KEY.to_string(),
            serde_json::to_string(&meta).expect("metadata serialises"),
        )]);
        write_safetensors(path, tensors, meta)
    }

    /// The data configuration this model was made with.
    pub fn config(&self) -> &DataConfig {
        &self.config
    }

    /// Logits `[n]` for volumes `[n, 1, e, e, e]`.
    pub(crate) fn logits(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let v = &self.vars;
        let h = max_pool3d(&conv3d(x, v[0].as_tensor(), v[1].as_tensor())?.relu()?)?;
        let h = max_pool3d(&conv3d(&h, v[2].as_tensor(), v[3].as_tensor())?.relu()?)?;
        let pooled = h.flatten_from(2)?.max(D::Minus1)?; // [n, c2]
        let logit = pooled
            .matmul(&v[4].as_tensor().t()?)?
            .broadcast_add(v[5].as_tensor())?; // [n, 1]
        logit.flatten_all()
    }

    /// Probability of the positive class for each volume of `inputs` (`[n, 1, e, e, e]`),
    /// computed in batches of `batch`.
    pub fn predict(&self, inputs: &Tensor, batch: usize) -> Result<Vec<f32>, TrainerError> {
        let n = inputs.dim(0)?;
        let mut out = Vec::with_capacity(n);
        let mut start = 0;
        while start < n {
            let len = batch.max(1).min(n - start);
            let p = candle_nn::ops::sigmoid(&self.logits(&inputs.narrow(0, start, len)?)?)?;
            out.extend(p.to_vec1::<f32>()?);
            start += len;
        }
        Ok(out)
    }
}

/// 3×3×3 convolution, stride 1, zero padding 1, as im2col + one batched matmul.
/// `x`: `[n, c, d, h, w]`, `weight`: `[o, c, 3, 3, 3]`, `bias`: `[o]` → `[n, o, d, h, w]`.
pub(crate) fn conv3d(x: &Tensor, weight: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
    let (n, c, d, h, w) = x.dims5()?;
    let o = weight.dim(0)?;
    let padded = x
        .pad_with_zeros(2, 1, 1)?
        .pad_with_zeros(3, 1, 1)?
        .pad_with_zeros(4, 1, 1)?;
    let mut shifted = Vec::with_capacity(27);
    for dz in 0..3 {
        for dy in 0..3 {
            for dx in 0..3 {
                shifted.push(
                    padded
                        .narrow(2, dz, d)?
                        .narrow(3, dy, h)?
                        .narrow(4, dx, w)?,
                );
            }
        }
    }
    // [n, c, 27, d, h, w]: the (c, dz, dy, dx) order of the kernel's flattened layout.
    let columns = Tensor::stack(&shifted, 2)?.reshape((n, c * 27, d * h * w))?;
    let y = weight.reshape((o, c * 27))?.broadcast_matmul(&columns)?;
    y.reshape((n, o, d, h, w))?
        .broadcast_add(&bias.reshape((1, o, 1, 1, 1))?)
}

/// 2×2×2 max-pool with stride 2 (`[n, c, d, h, w]` → `[n, c, d/2, h/2, w/2]`).
pub(crate) fn max_pool3d(x: &Tensor) -> candle_core::Result<Tensor> {
    let (n, c, d, h, w) = x.dims5()?;
    x.reshape(vec![n, c, d / 2, 2, h / 2, 2, w / 2, 2])?
        .max(7)?
        .max(5)?
        .max(3)
}

/// Numerically stable mean binary cross-entropy on logits:
/// `max(x, 0) - x·y + ln(1 + e^{-|x|})`.
pub(crate) fn bce_with_logits(logits: &Tensor, labels: &Tensor) -> candle_core::Result<Tensor> {
    let softplus = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    (logits.relu()? - (logits * labels)?)?
        .add(&softplus)?
        .mean_all()
}

/// Writes named tensors plus string metadata to a safetensors file.
pub(crate) fn write_safetensors(
    path: &Path,
    tensors: Vec<(&str, Tensor)>,
    meta: HashMap<String, String>,
) -> Result<(), TrainerError> {
    let owned: Vec<(String, Tensor)> = tensors
        .into_iter()
        .map(|(name, t)| (name.to_string(), t))
        .collect();
    safetensors::serialize_to_file(owned, Some(meta), path).map_err(|e| match e {
        safetensors::SafeTensorError::IoError(source) => TrainerError::Io {
            context: format!("writing {}", path.display()),
            source,
        },
        other => TrainerError::Io {
            context: format!("writing {}", path.display()),
            source: std::io::Error::other(other.to_string()),
        },
    })
}

/// Reads `eval.safetensors` as written by [`crate::fine_tune`]: the volumes `inputs`
/// (`[n, 1, e, e, e]`) and their `labels` (`[n]`, 0 or 1).
pub fn load_eval_set(path: &Path, device: &Device) -> Result<(Tensor, Vec<f32>), TrainerError> {
    let bad = |reason: String| TrainerError::BadEvalSet {
        path: PathBuf::from(path),
        reason,
    };
    let mut tensors = candle_core::safetensors::load(path, device)
        .map_err(|e| bad(format!("not a readable safetensors file: {e}")))?;
    let inputs = tensors
        .remove("inputs")
        .ok_or_else(|| bad("tensor inputs missing".into()))?;
    let labels = tensors
        .remove("labels")
        .ok_or_else(|| bad("tensor labels missing".into()))?;
    Ok((inputs, labels.to_vec1::<f32>()?))
}
