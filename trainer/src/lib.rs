//! The local trainer behind socwire's GPU model lifecycle (issue #10): what the Azure ML
//! stand-in runs instead of NVIDIA Clara's COVID-19 CT classifier, for real, on CPU.
//!
//! # Data
//! No labelled CT data set ships in a package registry, so [`data`] generates small CT-like
//! volumes (`1 × e × e × e`, `e = 8` by default, any multiple of 4): smooth tissue texture (broad Gaussian bumps
//! of either sign), one or two bright vessels (tubes along a random axis, in both classes)
//! and Gaussian noise. A positive volume also holds a lesion: a compact, roughly spherical
//! blob of 1-2 voxels radius. Labels alternate, so every set is balanced.
//!
//! Each volume's intensities are then matched to one fixed histogram, so positives and
//! negatives hold the same values and differ only in where those values sit; a per-volume
//! gain, offset and read-out noise (independent of the label) follow. No statistic of the
//! intensities alone (mean, spread, extremes, quantiles) finds the lesions: [`baselines`]
//! measures exactly that on an exported evaluation set.
//!
//! # Domain shift
//! The base model ("the NGC model", [`pretrain_base_model`]) is trained on
//! [`Domain::PreTraining`] volumes: small, bright lesions, faint vessels. The job
//! ([`fine_tune`]) trains and is evaluated on [`Domain::FineTuning`] volumes, which look like
//! another scanner and contrast phase: intensities mapped by gain 0.7 and offset +0.5 (lower
//! contrast, brighter), a different noise level, finer and more tissue texture, brighter
//! vessels, larger lesions, and half of the lesions hypodense (darker than the tissue, as in
//! another contrast phase). The base model finds the bright lesions and misses the dark ones,
//! so its average precision (AP) on the held-out fine-tuning-domain set starts around 0.7;
//! fine-tuning learns the dark ones too (see the crate's bench for figures over seeds).
//!
//! # Model
//! A small 3D CNN ([`Model`]): conv 3×3×3 → ReLU → max-pool 2 → conv 3×3×3 → ReLU →
//! max-pool 2 → global max-pool → linear → logit; the probability is its sigmoid. candle
//! has no 3D convolution, so it is built from the 27 shifted copies of the padded input and
//! one batched matmul. Training minimises binary cross-entropy with AdamW and a cosine
//! learning-rate schedule.
//!
//! # Determinism
//! All randomness (data, initial weights, batch order) comes from seeded SplitMix64 streams,
//! and candle's CPU kernels do not reorder reductions between runs, so one seed gives the same
//! model bit for bit on one machine.
//!
//! # Outputs
//! `model.safetensors` (parameters plus the [`DataConfig`] in the metadata),
//! `eval.safetensors` (`inputs` f32 `[n, 1, e, e, e]`, `labels` f32 `[n]`) and, through
//! [`export_onnx`], `model.onnx` whose output is the sigmoid probability.
#![warn(missing_docs)]
// No function over 100 lines of code outside tests (decision 0017).
#![cfg_attr(not(test), warn(clippy::too_many_lines))]
// Without `train` the volume generator and the hyper-parameter checks have no caller.
#![cfg_attr(not(feature = "train"), allow(dead_code))]

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub mod baselines;
pub mod data;
#[cfg(feature = "train")]
mod model;
mod onnx;
#[cfg(feature = "train")]
mod train;
#[cfg(not(feature = "train"))]
#[path = "no_train.rs"]
mod train;
mod weights;

#[cfg(feature = "train")]
pub use candle_core;
pub use data::{DataConfig, Domain};
#[cfg(feature = "train")]
pub use model::{load_eval_set, Model};
pub use onnx::{describe_onnx, export_onnx, OnnxInfo};
#[cfg(feature = "train")]
pub use train::{device, DEVICE_VARIABLE};
pub use train::{device_name, fine_tune, pretrain_base_model, pretrain_base_model_with};

/// Hyper-parameters of a fine-tuning job, as they travel in the `RunFineTune` command; a
/// field left out takes its default.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct HyperParameters {
    /// Passes over the fine-tuning set.
    pub epochs: u32,
    /// Peak AdamW learning rate; a cosine schedule decays it to 5 % over the run. An absurd
    /// value (say `1e30`) makes the run diverge reproducibly within two steps.
    pub learning_rate: f64,
    /// Volumes per optimisation step.
    pub batch_size: usize,
}

impl Default for HyperParameters {
    /// Values that raise AP clearly on the default data in a few seconds on two CPU cores.
    fn default() -> Self {
        Self {
            epochs: 12,
            learning_rate: 1e-2,
            batch_size: 32,
        }
    }
}

impl HyperParameters {
    fn problem(&self) -> Option<String> {
        if self.epochs == 0 || self.epochs > 10_000 {
            return Some(format!("epochs {} must be in 1..=10000", self.epochs));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Some(format!(
                "learning rate {} must be positive and finite",
                self.learning_rate
            ));
        }
        if self.batch_size == 0 || self.batch_size > 4096 {
            return Some(format!(
                "batch size {} must be in 1..=4096",
                self.batch_size
            ));
        }
        None
    }
}

/// One fine-tuning job.
#[derive(Clone, Debug)]
pub struct JobSpec {
    /// Seeds the fine-tuning data, the held-out evaluation set and the batch order.
    pub seed: u64,
    /// The base model, a safetensors file written by [`pretrain_base_model`].
    pub base_model: PathBuf,
    /// How to train.
    pub hyper: HyperParameters,
    /// Where `model.safetensors` and `eval.safetensors` go (created if missing).
    pub work_dir: PathBuf,
}

/// Training telemetry, reported through the callback of [`fine_tune`] as it happens.
///
/// Serialised as agreed in issue #10: `{"kind": "step" | "eval", ...}`; the enum-level
/// `rename_all` renames the variants only, so the fields keep their Rust names
/// (`learning_rate`, `average_precision`). The camelCase spellings are accepted when reading.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Progress {
    /// After each optimisation step (`step` counts from 1).
    Step {
        /// Steps run so far.
        step: u64,
        /// The epoch it belongs to (from 1).
        epoch: u32,
        /// Training loss of the step's batch.
        loss: f64,
        /// The learning rate the step used.
        #[serde(alias = "learningRate")]
        learning_rate: f64,
    },
    /// On the held-out set: once before training (`step` 0) and after every epoch.
    Eval {
        /// Steps run before it.
        step: u64,
        /// Loss on the held-out set.
        loss: f64,
        /// Average precision on the held-out set.
        #[serde(alias = "averagePrecision")]
        average_precision: f64,
    },
}

/// What a finished fine-tuning job produced.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JobResult {
    /// AP of the base model on the held-out fine-tuning-domain set.
    pub average_precision_before: f64,
    /// AP of the fine-tuned model on the same set.
    pub average_precision_after: f64,
    /// `work_dir/model.safetensors`.
    pub model_path: PathBuf,
    /// `work_dir/eval.safetensors` with tensors `inputs` and `labels`.
    pub eval_path: PathBuf,
    /// Optimisation steps run.
    pub steps: u64,
}

/// Why a trainer call failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainerError {
    /// The model file (base model for [`fine_tune`], model for [`export_onnx`]) is missing,
    /// not safetensors, or not a model this trainer wrote.
    #[error("bad model file {path}: {reason}")]
    BadModel {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An `eval.safetensors` lacks `inputs` or `labels`, or cannot be read.
    #[error("bad evaluation set {path}: {reason}")]
    BadEvalSet {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The job's hyper-parameters are out of range.
    #[error("invalid hyper-parameters: {0}")]
    InvalidHyperParameters(String),
    /// The loss became NaN or infinite: the run diverged (learning rate too high?).
    #[error("training diverged at step {step}: loss is {loss}; lower the learning rate")]
    Diverged {
        /// The step whose loss was not finite.
        step: u64,
        /// That loss.
        loss: f64,
    },
    /// The device asked for cannot be used (no GPU in a `cuda` build, or `cuda` asked of a
    /// build without it). Never answered by training on the CPU instead.
    #[error("no usable training device: {0}")]
    Device(String),
    /// The caller's cancel flag was set; nothing was written.
    #[error("fine-tuning cancelled")]
    Cancelled,
    /// Reading or writing a file failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being read or written.
        context: String,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// This build has no trainer (the `train` feature is off): it reads and exports models but
    /// cannot train them.
    #[error("this build cannot train: it was built without the trainer (socwire's `local-trainer` feature)")]
    NotBuilt,
    /// A tensor operation failed (a bug or an unusable device, not bad input).
    #[cfg(feature = "train")]
    #[error("tensor computation failed: {0}")]
    Tensor(#[from] candle_core::Error),
}

/// Average precision of `scores` against binary `labels` (1 = positive): the mean, over the
/// positives, of the precision among all volumes scored at least as high (ties broken by
/// index). 0 when there is no positive.
pub fn average_precision(scores: &[f32], labels: &[f32]) -> f64 {
    let mut order: Vec<usize> = (0..scores.len().min(labels.len())).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let positives = order.iter().filter(|&&i| labels[i] > 0.5).count();
    if positives == 0 {
        return 0.0;
    }
    let mut hits = 0usize;
    let mut sum = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        if labels[i] > 0.5 {
            hits += 1;
            sum += hits as f64 / (rank + 1) as f64;
        }
    }
    sum / positives as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn average_precision_of_known_rankings() {
        assert_eq!(
            average_precision(&[0.9, 0.8, 0.1, 0.2], &[1.0, 1.0, 0.0, 0.0]),
            1.0
        );
        // Positives at ranks 2 and 3: (1/2 + 2/3) / 2.
        let ap = average_precision(&[0.9, 0.8, 0.7, 0.1], &[0.0, 1.0, 1.0, 0.0]);
        assert!((ap - (0.5 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
        assert_eq!(average_precision(&[0.3], &[0.0]), 0.0);
    }

    #[test]
    fn hyper_parameters_round_trip_in_camel_case() {
        let json = serde_json::to_value(HyperParameters::default()).unwrap();
        assert_eq!(json["learningRate"], 1e-2);
        assert_eq!(json["batchSize"], 32);
        let p = serde_json::to_value(Progress::Eval {
            step: 3,
            loss: 0.5,
            average_precision: 0.9,
        })
        .unwrap();
        assert_eq!(p["kind"], "eval");
        assert_eq!(p["average_precision"], 0.9);
        let camel: Progress = serde_json::from_str(
            r#"{"kind":"step","step":1,"epoch":1,"loss":0.7,"learningRate":0.002}"#,
        )
        .unwrap();
        assert!(matches!(camel, Progress::Step { learning_rate, .. } if learning_rate == 0.002));
    }

    #[test]
    fn invalid_hyper_parameters_are_refused() {
        let bad = HyperParameters {
            batch_size: 0,
            ..Default::default()
        };
        assert!(bad.problem().is_some());
        assert!(HyperParameters::default().problem().is_none());
    }
}
