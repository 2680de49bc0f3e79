//! **PLACEHOLDER — replaced at merge by the real `socwire-trainer` crate.**
//!
//! This crate exists only so the `ml-lifecycle` branch builds and its tests run before the
//! trainer branch is merged. It implements the agreed API with a deliberately tiny but real
//! computation: logistic regression over 16 generated features, trained with mini-batch SGD,
//! a domain shift between "pre-training" and "fine-tuning" data, average precision on a held
//! out set, safetensors files and a hand-encoded ONNX graph (MatMul → Add → Sigmoid). Its AP
//! figures say nothing about the real trainer.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Features per example in the placeholder data.
const FEATURES: usize = 16;

/// Fine-tuning settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HyperParameters {
    /// Passes over the fine-tuning data.
    pub epochs: u32,
    /// SGD step size.
    pub learning_rate: f64,
    /// Examples per step.
    pub batch_size: usize,
}

impl Default for HyperParameters {
    fn default() -> Self {
        Self {
            epochs: 5,
            learning_rate: 0.1,
            batch_size: 32,
        }
    }
}

/// One fine-tuning job.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// Seed of the generated data.
    pub seed: u64,
    /// The pre-trained model (safetensors).
    pub base_model: PathBuf,
    /// Settings.
    pub hyper: HyperParameters,
    /// Where model.safetensors and eval.safetensors are written.
    pub work_dir: PathBuf,
}

/// A progress report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Progress {
    /// After each optimisation step.
    #[serde(rename_all = "camelCase")]
    Step {
        step: u64,
        epoch: u32,
        loss: f64,
        learning_rate: f64,
    },
    /// After each evaluation on the held-out set.
    #[serde(rename_all = "camelCase")]
    Eval {
        step: u64,
        loss: f64,
        average_precision: f64,
    },
}

/// What a finished job produced.
#[derive(Debug, Clone)]
pub struct JobResult {
    /// AP of the base model on the held-out set.
    pub average_precision_before: f64,
    /// AP of the fine-tuned model on the same set.
    pub average_precision_after: f64,
    /// model.safetensors.
    pub model_path: PathBuf,
    /// eval.safetensors (tensors `inputs` and `labels`).
    pub eval_path: PathBuf,
    /// Optimisation steps taken.
    pub steps: u64,
}

/// The exported graph's interface.
#[derive(Debug, Clone, PartialEq)]
pub struct OnnxInfo {
    /// Input tensor name.
    pub input_name: String,
    /// Input shape (-1 = dynamic batch).
    pub input_shape: Vec<i64>,
    /// Output tensor name.
    pub output_name: String,
}

/// Why training or export failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainerError {
    /// The cancel flag was set.
    #[error("cancelled")]
    Cancelled,
    /// The loss stopped being finite.
    #[error("training diverged at step {step}: loss {loss}")]
    Diverged { step: u64, loss: f64 },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// A model file is not what it should be.
    #[error("bad model file {path}: {reason}")]
    BadModel { path: String, reason: String },
    /// Settings that cannot work.
    #[error("invalid hyper-parameters: {0}")]
    InvalidHyper(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainerError + '_ {
    move |source| TrainerError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// splitmix64: a small deterministic generator.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform().max(1e-12), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

struct Data {
    x: Vec<f32>,
    y: Vec<f32>,
}

/// Labelled examples; `shift` moves the true decision rule (the domain shift).
fn generate(seed: u64, n: usize, shift: f64) -> Data {
    let mut truth = Rng(0x5eed);
    let w: Vec<f64> = (0..FEATURES)
        .map(|i| truth.normal() + if i % 3 == 0 { shift } else { -shift * 0.5 })
        .collect();
    let mut rng = Rng(seed);
    let mut x = Vec::with_capacity(n * FEATURES);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let row: Vec<f64> = (0..FEATURES).map(|_| rng.normal()).collect();
        let logit: f64 = row.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>() + rng.normal();
        x.extend(row.iter().map(|v| *v as f32));
        y.push(if logit > 0.0 { 1.0 } else { 0.0 });
    }
    Data { x, y }
}

#[derive(Clone)]
struct Model {
    w: Vec<f64>,
    b: f64,
}

impl Model {
    fn score(&self, row: &[f32]) -> f64 {
        let z: f64 = row
            .iter()
            .zip(&self.w)
            .map(|(a, b)| *a as f64 * b)
            .sum::<f64>()
            + self.b;
        1.0 / (1.0 + (-z).exp())
    }
    fn loss(&self, d: &Data) -> f64 {
        let n = d.y.len().max(1);
        d.y.iter()
            .enumerate()
            .map(|(i, y)| {
                let p = self.score(&d.x[i * FEATURES..(i + 1) * FEATURES]);
                -(*y as f64 * p.max(1e-12).ln() + (1.0 - *y as f64) * (1.0 - p).max(1e-12).ln())
            })
            .sum::<f64>()
            / n as f64
    }
    fn save(&self, path: &Path) -> Result<(), TrainerError> {
        let w: Vec<f32> = self.w.iter().map(|v| *v as f32).collect();
        let b = [self.b as f32];
        write_tensors(
            path,
            &[("weight", vec![FEATURES], &w), ("bias", vec![1], &b)],
        )
    }
    fn load(path: &Path) -> Result<Self, TrainerError> {
        let bytes = std::fs::read(path).map_err(io(path))?;
        let bad = |reason: String| TrainerError::BadModel {
            path: path.display().to_string(),
            reason,
        };
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
        let read = |name: &str, len: usize| -> Result<Vec<f64>, TrainerError> {
            let t = st.tensor(name).map_err(|e| bad(e.to_string()))?;
            let v: Vec<f64> = t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                .collect();
            if v.len() != len {
                return Err(bad(format!(
                    "{name} has {} values, expected {len}",
                    v.len()
                )));
            }
            Ok(v)
        };
        Ok(Self {
            w: read("weight", FEATURES)?,
            b: read("bias", 1)?[0],
        })
    }
}

fn write_tensors(path: &Path, tensors: &[(&str, Vec<usize>, &[f32])]) -> Result<(), TrainerError> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|f| f.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b)
                .map(|v| (name.to_string(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TrainerError::BadModel {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    let meta = HashMap::from([(
        "producer".to_string(),
        "socwire-trainer placeholder".to_string(),
    )]);
    let out = safetensors::serialize(views, Some(meta)).map_err(|e| TrainerError::BadModel {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    std::fs::write(path, out).map_err(io(path))
}

/// Average precision of `scores` against 0/1 `labels`.
pub fn average_precision(scores: &[f64], labels: &[f32]) -> f64 {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]));
    let positives = labels.iter().filter(|l| **l > 0.5).count();
    if positives == 0 {
        return 0.0;
    }
    let (mut hits, mut sum) = (0usize, 0.0);
    for (rank, i) in order.iter().enumerate() {
        if labels[*i] > 0.5 {
            hits += 1;
            sum += hits as f64 / (rank + 1) as f64;
        }
    }
    sum / positives as f64
}

fn ap(model: &Model, d: &Data) -> f64 {
    let scores: Vec<f64> = d.x.chunks_exact(FEATURES).map(|r| model.score(r)).collect();
    average_precision(&scores, &d.y)
}

fn sgd(
    model: &mut Model,
    d: &Data,
    hyper: &HyperParameters,
    mut on_step: impl FnMut(u64, u32, f64, &Model) -> Result<(), TrainerError>,
) -> Result<u64, TrainerError> {
    let n = d.y.len();
    let mut step = 0u64;
    for epoch in 0..hyper.epochs {
        for start in (0..n).step_by(hyper.batch_size) {
            let end = (start + hyper.batch_size).min(n);
            let mut gw = vec![0.0; FEATURES];
            let mut gb = 0.0;
            let mut loss = 0.0;
            for i in start..end {
                let row = &d.x[i * FEATURES..(i + 1) * FEATURES];
                let p = model.score(row);
                let err = p - d.y[i] as f64;
                loss -= d.y[i] as f64 * p.ln() + (1.0 - d.y[i] as f64) * (1.0 - p).ln();
                for (g, x) in gw.iter_mut().zip(row) {
                    *g += err * *x as f64;
                }
                gb += err;
            }
            let m = (end - start) as f64;
            for (w, g) in model.w.iter_mut().zip(&gw) {
                *w -= hyper.learning_rate * g / m;
            }
            model.b -= hyper.learning_rate * gb / m;
            step += 1;
            on_step(step, epoch, loss / m, model)?;
        }
    }
    Ok(step)
}

/// Trains the base model on "pre-training" data and writes it (safetensors) to `out`.
pub fn pretrain_base_model(seed: u64, out: &Path) -> Result<(), TrainerError> {
    let data = generate(seed, 2000, 0.0);
    let mut model = Model {
        w: vec![0.0; FEATURES],
        b: 0.0,
    };
    let hyper = HyperParameters {
        epochs: 5,
        learning_rate: 0.5,
        batch_size: 64,
    };
    sgd(&mut model, &data, &hyper, |_, _, _, _| Ok(()))?;
    model.save(out)
}

/// Fine-tunes the base model on shifted data, reporting progress and honouring `cancel`.
pub fn fine_tune(
    spec: &JobSpec,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(Progress),
) -> Result<JobResult, TrainerError> {
    let h = &spec.hyper;
    if h.epochs == 0 || h.batch_size == 0 || h.learning_rate.is_nan() || h.learning_rate <= 0.0 {
        return Err(TrainerError::InvalidHyper(
            "epochs, batchSize and learningRate must be positive".into(),
        ));
    }
    let mut model = Model::load(&spec.base_model)?;
    let train = generate(spec.seed, 1200, 1.2);
    let eval = generate(spec.seed ^ 0xE7A1, 400, 1.2);
    let before = ap(&model, &eval);
    let per_epoch = train.y.len().div_ceil(h.batch_size) as u64;
    let steps = sgd(&mut model, &train, h, |step, epoch, loss, model| {
        if cancel.load(Ordering::SeqCst) {
            return Err(TrainerError::Cancelled);
        }
        if !loss.is_finite() {
            return Err(TrainerError::Diverged { step, loss });
        }
        progress(Progress::Step {
            step,
            epoch,
            loss,
            learning_rate: h.learning_rate,
        });
        if step % per_epoch == 0 {
            progress(Progress::Eval {
                step,
                loss: model.loss(&eval),
                average_precision: ap(model, &eval),
            });
        }
        Ok(())
    })?;
    let after = ap(&model, &eval);
    std::fs::create_dir_all(&spec.work_dir).map_err(io(&spec.work_dir))?;
    let model_path = spec.work_dir.join("model.safetensors");
    let eval_path = spec.work_dir.join("eval.safetensors");
    model.save(&model_path)?;
    write_tensors(
        &eval_path,
        &[
            ("inputs", vec![eval.y.len(), FEATURES], &eval.x),
            ("labels", vec![eval.y.len()], &eval.y),
        ],
    )?;
    Ok(JobResult {
        average_precision_before: before,
        average_precision_after: after,
        model_path,
        eval_path,
        steps,
    })
}

// --- ONNX, encoded by hand (protobuf wire format) ---

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}
fn field_varint(out: &mut Vec<u8>, field: u32, v: u64) {
    varint(out, u64::from(field) << 3);
    varint(out, v);
}
fn field_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    varint(out, (u64::from(field) << 3) | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}
fn tensor(name: &str, dims: &[i64], values: &[f32]) -> Vec<u8> {
    let mut t = Vec::new();
    for d in dims {
        field_varint(&mut t, 1, *d as u64);
    }
    field_varint(&mut t, 2, 1); // FLOAT
    field_bytes(&mut t, 8, name.as_bytes());
    let raw: Vec<u8> = values.iter().flat_map(|f| f.to_le_bytes()).collect();
    field_bytes(&mut t, 9, &raw);
    t
}
fn value_info(name: &str, dims: &[Option<i64>]) -> Vec<u8> {
    let mut shape = Vec::new();
    for d in dims {
        let mut dim = Vec::new();
        match d {
            Some(v) => field_varint(&mut dim, 1, *v as u64),
            None => field_bytes(&mut dim, 2, b"batch"),
        }
        field_bytes(&mut shape, 1, &dim);
    }
    let mut tensor_type = Vec::new();
    field_varint(&mut tensor_type, 1, 1);
    field_bytes(&mut tensor_type, 2, &shape);
    let mut type_proto = Vec::new();
    field_bytes(&mut type_proto, 1, &tensor_type);
    let mut vi = Vec::new();
    field_bytes(&mut vi, 1, name.as_bytes());
    field_bytes(&mut vi, 2, &type_proto);
    vi
}
fn node(op: &str, inputs: &[&str], output: &str) -> Vec<u8> {
    let mut n = Vec::new();
    for i in inputs {
        field_bytes(&mut n, 1, i.as_bytes());
    }
    field_bytes(&mut n, 2, output.as_bytes());
    field_bytes(&mut n, 3, format!("{op}_0").as_bytes());
    field_bytes(&mut n, 4, op.as_bytes());
    n
}

/// Writes the model as an ONNX graph: `probability = Sigmoid(inputs · W + b)`.
pub fn export_onnx(model: &Path, out: &Path) -> Result<OnnxInfo, TrainerError> {
    let m = Model::load(model)?;
    let w: Vec<f32> = m.w.iter().map(|v| *v as f32).collect();
    let mut graph = Vec::new();
    field_bytes(&mut graph, 1, &node("MatMul", &["inputs", "W"], "z0"));
    field_bytes(&mut graph, 1, &node("Add", &["z0", "B"], "z1"));
    field_bytes(&mut graph, 1, &node("Sigmoid", &["z1"], "probability"));
    field_bytes(&mut graph, 2, b"socwire-placeholder");
    field_bytes(&mut graph, 5, &tensor("W", &[FEATURES as i64, 1], &w));
    field_bytes(&mut graph, 5, &tensor("B", &[1], &[m.b as f32]));
    field_bytes(
        &mut graph,
        11,
        &value_info("inputs", &[None, Some(FEATURES as i64)]),
    );
    field_bytes(&mut graph, 12, &value_info("probability", &[None, Some(1)]));
    let mut opset = Vec::new();
    field_bytes(&mut opset, 1, b"");
    field_varint(&mut opset, 2, 13);
    let mut proto = Vec::new();
    field_varint(&mut proto, 1, 8); // ir_version
    field_bytes(&mut proto, 2, b"socwire-trainer-placeholder");
    field_bytes(&mut proto, 7, &graph);
    field_bytes(&mut proto, 8, &opset);
    std::fs::write(out, proto).map_err(io(out))?;
    Ok(OnnxInfo {
        input_name: "inputs".into(),
        input_shape: vec![-1, FEATURES as i64],
        output_name: "probability".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fine_tuning_improves_ap_and_cancel_stops_it() {
        let dir = std::env::temp_dir().join(format!("trainer-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let base = dir.join("base.safetensors");
        pretrain_base_model(1, &base).unwrap();
        let spec = JobSpec {
            seed: 7,
            base_model: base.clone(),
            hyper: HyperParameters::default(),
            work_dir: dir.join("out"),
        };
        let mut evals = 0;
        let r = fine_tune(&spec, &AtomicBool::new(false), &mut |p| {
            evals += matches!(p, Progress::Eval { .. }) as u32
        })
        .unwrap();
        assert!(
            r.average_precision_after > r.average_precision_before,
            "{r:?}"
        );
        assert_eq!(evals, spec.hyper.epochs);
        let info = export_onnx(&r.model_path, &dir.join("model.onnx")).unwrap();
        assert_eq!(info.input_shape, vec![-1, 16]);
        let cancelled = fine_tune(&spec, &AtomicBool::new(true), &mut |_| {});
        assert!(matches!(cancelled, Err(TrainerError::Cancelled)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
