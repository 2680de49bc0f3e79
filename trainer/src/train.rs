//! Pre-training and fine-tuning on candle (the `train` feature): the base model, the job's
//! training loop with progress, cancellation and divergence checks, and evaluation.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

use crate::data::{self, DataConfig, Domain, Rng, Volumes};
use crate::model::{self, Model};
use crate::{average_precision, HyperParameters, JobResult, JobSpec, Progress, TrainerError};

/// The environment variable that picks the device: `cpu`, or `cuda` (the default of a build
/// with the `cuda` feature). The GPU check sets `cpu` to train the same job on both.
pub const DEVICE_VARIABLE: &str = "SOCWIRE_TRAINER_DEVICE";

/// The device training runs on: CUDA device 0 in a build with the `cuda` feature, the CPU
/// otherwise or when [`DEVICE_VARIABLE`] says `cpu`.
///
/// There is no silent CPU fallback: a `cuda` build that finds no usable GPU fails here with
/// candle's reason (candle 0.9's `cuda_if_available` is `new_cuda` whenever the feature is
/// on, and cudarc links the CUDA driver library, so such a binary does not even start on a
/// machine without it). Asking for `cuda` from a build without the feature is an error too.
pub fn device() -> Result<Device, TrainerError> {
    let wanted = std::env::var(DEVICE_VARIABLE).unwrap_or_default();
    match wanted.as_str() {
        "cpu" => Ok(Device::Cpu),
        "" | "cuda" => {
            #[cfg(feature = "cuda")]
            {
                Device::new_cuda(0).map_err(|e| TrainerError::Device(format!("CUDA device 0: {e}")))
            }
            #[cfg(not(feature = "cuda"))]
            {
                if wanted == "cuda" {
                    Err(TrainerError::Device(format!(
                        "{DEVICE_VARIABLE}=cuda, but this build has no CUDA backend (build with --features cuda)"
                    )))
                } else {
                    Ok(Device::Cpu)
                }
            }
        }
        other => Err(TrainerError::Device(format!(
            "{DEVICE_VARIABLE}={other:?}: use cpu or cuda"
        ))),
    }
}

/// What [`device`] trains on, in words (a job's log says it, so a GPU job is seen to be on the
/// GPU, and a job that cannot reach one says why).
pub fn device_name() -> String {
    match device() {
        Ok(Device::Cpu) => "the CPU".into(),
        Ok(Device::Cuda(_)) => "CUDA GPU 0".into(),
        Ok(other) => format!("{other:?}"),
        Err(e) => format!("no device ({e})"),
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
    fn cosine_schedule_starts_at_peak_and_ends_at_five_percent() {
        assert!((cosine_lr(1.0, 0, 10) - 1.0).abs() < 1e-12);
        assert!((cosine_lr(1.0, 10, 10) - 0.05).abs() < 1e-12);
    }
}
