//! What a model must beat: scorers that look only at a volume's intensity statistics, never at
//! where the intensities sit. Each of [`STATISTICS`] is tried as a score in either sign, and a
//! logistic regression on all of them is cross-validated on the same set. On the generated
//! data every one of them stays near chance (the volumes' histograms are matched, see
//! [`crate::data`]), so a model that scores well has learnt shape and texture.
//!
//! Needs no candle: [`read_eval_set`] reads an exported `eval.safetensors` with the
//! `safetensors` crate, so a handler built without the trainer can re-score an export.

use std::path::Path;

use crate::{average_precision, TrainerError};

/// The per-volume intensity statistics, in the order [`statistics`] returns them.
pub const STATISTICS: [&str; 7] = ["mean", "std", "min", "max", "range", "q01", "q99"];

/// Folds of the logistic regression's cross-validation.
const FOLDS: usize = 5;

/// One scorer's average precision on a labelled set.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Baseline {
    /// `+mean`, `-q99`, …, or `logistic regression (7 statistics, 5-fold)`.
    pub scorer: String,
    /// Its average precision.
    pub average_precision: f64,
}

/// An evaluation set as [`crate::fine_tune`] exports it (`eval.safetensors`).
#[derive(Clone, Debug)]
pub struct EvalSet {
    /// Volumes, `voxels` values each, one after another.
    pub inputs: Vec<f32>,
    /// Voxels per volume.
    pub voxels: usize,
    /// 0 or 1 per volume.
    pub labels: Vec<f32>,
}

/// Reads `eval.safetensors` (tensors `inputs` f32 `[n, …]` and `labels` f32 `[n]`).
pub fn read_eval_set(path: &Path) -> Result<EvalSet, TrainerError> {
    let bad = |reason: String| TrainerError::BadEvalSet {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    let tensors = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(format!("not a readable safetensors file: {e}")))?;
    let floats = |name: &str| crate::weights::f32_tensor(&tensors, name).map_err(bad);
    let (shape, inputs) = floats("inputs")?;
    let (_, labels) = floats("labels")?;
    let n = shape.first().copied().unwrap_or(0);
    if n == 0 || n != labels.len() || inputs.len() % n != 0 {
        return Err(bad(format!(
            "inputs {shape:?} and {} labels do not match",
            labels.len()
        )));
    }
    Ok(EvalSet {
        voxels: inputs.len() / n,
        inputs,
        labels,
    })
}

/// [`STATISTICS`] of one volume. Quantiles interpolate linearly between order statistics.
pub fn statistics(volume: &[f32]) -> [f64; 7] {
    let mut sorted: Vec<f64> = volume.iter().map(|&v| f64::from(v)).collect();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len().max(1) as f64;
    let mean = sorted.iter().sum::<f64>() / n;
    let std = (sorted.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    let quantile = |p: f64| {
        let at = p * (sorted.len().saturating_sub(1)) as f64;
        let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
        sorted[lo] + (sorted[hi] - sorted[lo]) * (at - lo as f64)
    };
    let (min, max) = (sorted[0], sorted[sorted.len() - 1]);
    [
        mean,
        std,
        min,
        max,
        max - min,
        quantile(0.01),
        quantile(0.99),
    ]
}

/// Every one-statistic scorer in either sign, then the cross-validated logistic regression.
pub fn baselines(set: &EvalSet) -> Vec<Baseline> {
    let features: Vec<[f64; 7]> = set
        .inputs
        .chunks_exact(set.voxels)
        .map(statistics)
        .collect();
    let mut out = Vec::with_capacity(2 * STATISTICS.len() + 1);
    for (k, name) in STATISTICS.iter().enumerate() {
        for (sign, prefix) in [(1.0, '+'), (-1.0, '-')] {
            let scores: Vec<f32> = features.iter().map(|f| (sign * f[k]) as f32).collect();
            out.push(Baseline {
                scorer: format!("{prefix}{name}"),
                average_precision: average_precision(&scores, &set.labels),
            });
        }
    }
    let scores = cross_validated_logistic(&features, &set.labels);
    out.push(Baseline {
        scorer: format!(
            "logistic regression ({} statistics, {FOLDS}-fold)",
            STATISTICS.len()
        ),
        average_precision: average_precision(&scores, &set.labels),
    });
    out
}

/// Scores each volume with a logistic regression fitted on the other folds (volume `i` is in
/// fold `i % FOLDS`), so no volume is scored by a model that saw its label.
fn cross_validated_logistic(features: &[[f64; 7]], labels: &[f32]) -> Vec<f32> {
    let mut scores = vec![0f32; features.len()];
    for fold in 0..FOLDS {
        let train: Vec<usize> = (0..features.len()).filter(|i| i % FOLDS != fold).collect();
        let model = Logistic::fit(features, labels, &train);
        for (i, f) in features
            .iter()
            .enumerate()
            .filter(|(i, _)| i % FOLDS == fold)
        {
            scores[i] = model.logit(f) as f32;
        }
    }
    scores
}

/// L2-regularised logistic regression on standardised features, fitted by full-batch
/// gradient descent (the problem is small and convex; a fixed number of steps is plenty).
struct Logistic {
    mean: [f64; 7],
    scale: [f64; 7],
    weights: [f64; 7],
    bias: f64,
}

impl Logistic {
    const STEPS: usize = 2000;
    const RATE: f64 = 0.5;
    const L2: f64 = 1e-3;

    fn fit(features: &[[f64; 7]], labels: &[f32], rows: &[usize]) -> Self {
        let n = rows.len().max(1) as f64;
        let mut mean = [0.0; 7];
        let mut scale = [0.0; 7];
        for k in 0..7 {
            mean[k] = rows.iter().map(|&i| features[i][k]).sum::<f64>() / n;
            let var = rows
                .iter()
                .map(|&i| (features[i][k] - mean[k]).powi(2))
                .sum::<f64>()
                / n;
            scale[k] = if var > 1e-24 { var.sqrt() } else { 1.0 };
        }
        let mut model = Self {
            mean,
            scale,
            weights: [0.0; 7],
            bias: 0.0,
        };
        for _ in 0..Self::STEPS {
            let mut grad = [0.0; 7];
            let mut grad_bias = 0.0;
            for &i in rows {
                let z = model.standardise(&features[i]);
                let p = 1.0 / (1.0 + (-model.logit(&features[i])).exp());
                let err = p - f64::from(labels[i]);
                for (g, zk) in grad.iter_mut().zip(z) {
                    *g += err * zk;
                }
                grad_bias += err;
            }
            for (w, g) in model.weights.iter_mut().zip(grad) {
                *w -= Self::RATE * (g / n + Self::L2 * *w);
            }
            model.bias -= Self::RATE * grad_bias / n;
        }
        model
    }

    fn standardise(&self, f: &[f64; 7]) -> [f64; 7] {
        std::array::from_fn(|k| (f[k] - self.mean[k]) / self.scale[k])
    }

    fn logit(&self, f: &[f64; 7]) -> f64 {
        let z = self.standardise(f);
        self.bias + (0..7).map(|k| self.weights[k] * z[k]).sum::<f64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_of_a_known_volume() {
        let v: Vec<f32> = (0..101).map(|i| i as f32).collect();
        let s = statistics(&v);
        assert_eq!(s[0], 50.0);
        assert!((s[1] - (850.0f64).sqrt()).abs() < 1e-9);
        assert_eq!((s[2], s[3], s[4]), (0.0, 100.0, 100.0));
        assert!((s[5] - 1.0).abs() < 1e-9 && (s[6] - 99.0).abs() < 1e-9);
    }

    /// The baselines are not blind: when a statistic does carry the label, they find it.
    #[test]
    fn a_statistic_that_carries_the_label_is_found() {
        let voxels = 27;
        let mut inputs = Vec::new();
        let mut labels = Vec::new();
        let mut rng = crate::data::Rng::new(5, 1);
        for i in 0..200 {
            let positive = i % 2 == 1;
            let spread = if positive { 1.5 } else { 1.0 };
            for _ in 0..voxels {
                inputs.push((spread * rng.normal()) as f32);
            }
            labels.push(if positive { 1.0 } else { 0.0 });
        }
        let table = baselines(&EvalSet {
            inputs,
            voxels,
            labels,
        });
        let ap = |name: &str| {
            table
                .iter()
                .find(|b| b.scorer == name)
                .unwrap()
                .average_precision
        };
        assert!(ap("+std") > 0.9, "{table:?}");
        assert!(ap("-std") < 0.4, "{table:?}");
        assert!(table.last().unwrap().average_precision > 0.9, "{table:?}");
    }
}
