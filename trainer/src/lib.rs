//! The local trainer behind socwire's GPU model lifecycle (issue #10): what the Azure ML
//! stand-in runs instead of NVIDIA Clara's COVID-19 CT classifier, for real, on CPU.
//!
//! # Data
//! No labelled CT data set ships in a package registry, so [`data`] generates small CT-like
//! volumes (`1 × e × e × e`, `e = 8` by default, any multiple of 4): smooth tissue texture (broad Gaussian bumps
//! of either sign), one or two bright vessels (tubes along a random axis, in both classes so
//! brightness alone gives nothing away) and Gaussian noise. A positive volume also holds a
//! lesion: a compact, roughly spherical bright blob of 1-2 voxels radius. Labels alternate,
//! so every set is balanced.
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

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use serde::{Deserialize, Serialize};

pub mod data;
mod model;
mod onnx;

pub use candle_core;
pub use data::{DataConfig, Domain};
pub use model::{load_eval_set, Model};
pub use onnx::{export_onnx, OnnxInfo};

use data::{Rng, Volumes};

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
        step: u64,
        epoch: u32,
        loss: f64,
        #[serde(alias = "learningRate")]
        learning_rate: f64,
    },
    /// On the held-out set: once before training (`step` 0) and after every epoch.
    Eval {
        step: u64,
        loss: f64,
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
    BadModel { path: PathBuf, reason: String },
    /// An `eval.safetensors` lacks `inputs` or `labels`, or cannot be read.
    #[error("bad evaluation set {path}: {reason}")]
    BadEvalSet { path: PathBuf, reason: String },
    /// The job's hyper-parameters are out of range.
    #[error("invalid hyper-parameters: {0}")]
    InvalidHyperParameters(String),
    /// The loss became NaN or infinite: the run diverged (learning rate too high?).
    #[error("training diverged at step {step}: loss is {loss}; lower the learning rate")]
    Diverged { step: u64, loss: f64 },
    /// The caller's cancel flag was set; nothing was written.
    #[error("fine-tuning cancelled")]
    Cancelled,
    /// Reading or writing a file failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A tensor operation failed (a bug or an unusable device, not bad input).
    #[error("tensor computation failed: {0}")]
    Tensor(#[from] candle_core::Error),
}

/// The device training runs on: the first CUDA device with the `cuda` feature (falling back to
/// CPU when none is present), the CPU otherwise.
pub fn device() -> Result<Device, TrainerError> {
    #[cfg(feature = "cuda")]
    {
        Ok(Device::cuda_if_available(0)?)
    }
    #[cfg(not(feature = "cuda"))]
    {
        Ok(Device::Cpu)
    }
}

// Independent random streams of one seed.
const STREAM_PRETRAIN_DATA: u64 = 1;
const STREAM_INIT: u64 = 2;
const STREAM_PRETRAIN_ORDER: u64 = 3;
const STREAM_FINE_TUNE_DATA: u64 = 11;
const STREAM_EVAL_DATA: u64 = 12;
const STREAM_FINE_TUNE_ORDER: u64 = 13;

/// Hyper-parameters of pre-training (epochs come from the [`DataConfig`]).
fn pretrain_hyper(config: &DataConfig) -> HyperParameters {
    HyperParameters {
        epochs: config.pretrain_epochs,
        learning_rate: 1e-2,
        batch_size: 32,
    }
}

/// Writes the base model (the "NGC model" asset) to `out`: a CNN trained on
/// pre-training-domain volumes with the default [`DataConfig`].
pub fn pretrain_base_model(seed: u64, out: &Path) -> Result<(), TrainerError> {
    pretrain_base_model_with(seed, &DataConfig::default(), out)
}

/// [`pretrain_base_model`] with an explicit data configuration, which is stored in the file
/// and governs every fine-tuning job started from it (tests use [`DataConfig::tiny`]).
pub fn pretrain_base_model_with(
    seed: u64,
    config: &DataConfig,
    out: &Path,
) -> Result<(), TrainerError> {
    if let Some(problem) = config.problem() {
        return Err(TrainerError::InvalidHyperParameters(format!(
            "data configuration: {problem}"
        )));
    }
    let device = device()?;
    let data = data::generate(
        Domain::PreTraining,
        config.edge,
        config.pretrain_samples,
        &mut Rng::new(seed, STREAM_PRETRAIN_DATA),
    );
    let model = Model::init(config, &mut Rng::new(seed, STREAM_INIT), &device)?;
    let never = AtomicBool::new(false);
    let mut run = Run {
        model: &model,
        hyper: &pretrain_hyper(config),
        device: &device,
        cancel: &never,
        progress: &mut |_| {},
    };
    run.train(&data, None, &mut Rng::new(seed, STREAM_PRETRAIN_ORDER))?;
    create_parent(out)?;
    model.save(out)
}

/// Fine-tunes the base model on fine-tuning-domain volumes and measures AP on a held-out
/// set of the same domain before and after.
///
/// Reports [`Progress`] through `progress`, checks `cancel` before every step
/// ([`TrainerError::Cancelled`]) and stops with [`TrainerError::Diverged`] on a NaN or
/// infinite loss. Writes `model.safetensors` and `eval.safetensors` to `spec.work_dir` only
/// when training completed.
pub fn fine_tune(
    spec: &JobSpec,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(Progress),
) -> Result<JobResult, TrainerError> {
    if let Some(problem) = spec.hyper.problem() {
        return Err(TrainerError::InvalidHyperParameters(problem));
    }
    let device = device()?;
    let model = Model::load(&spec.base_model, &device)?;
    let config = model.config.clone();
    let train = data::generate(
        Domain::FineTuning,
        config.edge,
        config.fine_tune_samples,
        &mut Rng::new(spec.seed, STREAM_FINE_TUNE_DATA),
    );
    let eval = data::generate(
        Domain::FineTuning,
        config.edge,
        config.eval_samples,
        &mut Rng::new(spec.seed, STREAM_EVAL_DATA),
    );
    let eval_inputs = volumes_tensor(&eval, &device)?;
    let mut run = Run {
        model: &model,
        hyper: &spec.hyper,
        device: &device,
        cancel,
        progress,
    };
    let (_, before) = run.evaluate(&eval_inputs, &eval.labels, 0)?;
    let steps = run.train(
        &train,
        Some((&eval_inputs, &eval.labels)),
        &mut Rng::new(spec.seed, STREAM_FINE_TUNE_ORDER),
    )?;
    let probabilities = model.predict(&eval_inputs, EVAL_BATCH)?;
    let after = average_precision(&probabilities, &eval.labels);

    std::fs::create_dir_all(&spec.work_dir).map_err(|source| TrainerError::Io {
        context: format!("creating {}", spec.work_dir.display()),
        source,
    })?;
    let model_path = spec.work_dir.join("model.safetensors");
    let eval_path = spec.work_dir.join("eval.safetensors");
    model.save(&model_path)?;
    let labels = Tensor::from_vec(eval.labels.clone(), eval.len(), &device)?;
    model::write_safetensors(
        &eval_path,
        vec![("inputs", eval_inputs), ("labels", labels)],
        Default::default(),
    )?;
    Ok(JobResult {
        average_precision_before: before,
        average_precision_after: after,
        model_path,
        eval_path,
        steps,
    })
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

const EVAL_BATCH: usize = 128;

fn volumes_tensor(v: &Volumes, device: &Device) -> Result<Tensor, TrainerError> {
    Ok(Tensor::from_vec(
        v.inputs.clone(),
        (v.len(), 1, v.edge, v.edge, v.edge),
        device,
    )?)
}

fn create_parent(path: &Path) -> Result<(), TrainerError> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|source| TrainerError::Io {
                context: format!("creating {}", dir.display()),
                source,
            })
        }
        _ => Ok(()),
    }
}

/// One training run of a model: the loop shared by pre-training and fine-tuning.
struct Run<'a> {
    model: &'a Model,
    hyper: &'a HyperParameters,
    device: &'a Device,
    cancel: &'a AtomicBool,
    progress: &'a mut dyn FnMut(Progress),
}

impl Run<'_> {
    /// Trains for `hyper.epochs`, evaluating on `eval` after each epoch when given.
    /// Returns the number of steps.
    fn train(
        &mut self,
        data: &Volumes,
        eval: Option<(&Tensor, &[f32])>,
        order_rng: &mut Rng,
    ) -> Result<u64, TrainerError> {
        let hyper = self.hyper;
        let batches_per_epoch = data.len().div_ceil(hyper.batch_size) as u64;
        let total = batches_per_epoch * u64::from(hyper.epochs);
        let params = ParamsAdamW {
            lr: hyper.learning_rate,
            weight_decay: 1e-4,
            ..Default::default()
        };
        let mut optimizer = AdamW::new(self.model.vars.clone(), params)?;
        let voxels = data.edge * data.edge * data.edge;
        let mut order: Vec<usize> = (0..data.len()).collect();
        let mut step = 0u64;
        for epoch in 1..=hyper.epochs {
            order_rng.shuffle(&mut order);
            for chunk in order.chunks(hyper.batch_size) {
                if self.cancel.load(Ordering::Relaxed) {
                    return Err(TrainerError::Cancelled);
                }
                let lr = cosine_lr(hyper.learning_rate, step, total);
                optimizer.set_learning_rate(lr);
                let mut inputs = Vec::with_capacity(chunk.len() * voxels);
                let mut labels = Vec::with_capacity(chunk.len());
                for &i in chunk {
                    inputs.extend_from_slice(&data.inputs[i * voxels..(i + 1) * voxels]);
                    labels.push(data.labels[i]);
                }
                let x = Tensor::from_vec(
                    inputs,
                    (chunk.len(), 1, data.edge, data.edge, data.edge),
                    self.device,
                )?;
                let y = Tensor::from_vec(labels, chunk.len(), self.device)?;
                let loss = model::bce_with_logits(&self.model.logits(&x)?, &y)?;
                step += 1;
                let value = f64::from(loss.to_scalar::<f32>()?);
                if !value.is_finite() {
                    return Err(TrainerError::Diverged { step, loss: value });
                }
                optimizer.backward_step(&loss)?;
                (self.progress)(Progress::Step {
                    step,
                    epoch,
                    loss: value,
                    learning_rate: lr,
                });
            }
            if let Some((inputs, labels)) = eval {
                self.evaluate(inputs, labels, step)?;
            }
        }
        Ok(step)
    }

    /// Loss and AP on a held-out set, reported as [`Progress::Eval`]; a non-finite loss is
    /// divergence.
    fn evaluate(
        &mut self,
        inputs: &Tensor,
        labels: &[f32],
        step: u64,
    ) -> Result<(f64, f64), TrainerError> {
        let n = inputs.dim(0)?;
        let mut scores = Vec::with_capacity(n);
        let mut loss_sum = 0.0;
        let mut start = 0;
        while start < n {
            let len = EVAL_BATCH.min(n - start);
            let logits = self.model.logits(&inputs.narrow(0, start, len)?)?;
            let y = Tensor::from_slice(&labels[start..start + len], len, self.device)?;
            loss_sum +=
                f64::from(model::bce_with_logits(&logits, &y)?.to_scalar::<f32>()?) * len as f64;
            scores.extend(logits.to_vec1::<f32>()?);
            start += len;
        }
        let loss = loss_sum / n as f64;
        if !loss.is_finite() {
            return Err(TrainerError::Diverged { step, loss });
        }
        let ap = average_precision(&scores, labels);
        (self.progress)(Progress::Eval {
            step,
            loss,
            average_precision: ap,
        });
        Ok((loss, ap))
    }
}

/// Cosine decay from `peak` to 5 % of it over `total` steps.
fn cosine_lr(peak: f64, step: u64, total: u64) -> f64 {
    let t = step as f64 / total.max(1) as f64;
    peak * (0.05 + 0.95 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))
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
    fn cosine_schedule_starts_at_peak_and_ends_at_five_percent() {
        assert!((cosine_lr(1.0, 0, 10) - 1.0).abs() < 1e-12);
        assert!((cosine_lr(1.0, 10, 10) - 0.05).abs() < 1e-12);
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
