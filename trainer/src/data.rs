//! Synthetic CT-like volumes with a lesion-like blob as the positive class.
//!
//! Everything here is plain `f32` arithmetic driven by one seeded [`Rng`], so a seed gives
//! the same volumes on every machine.

use serde::{Deserialize, Serialize};

/// How much work a training run does: volume edge, sample counts and pre-training epochs.
///
/// [`crate::pretrain_base_model`] stores the configuration inside the base model file, and
/// [`crate::fine_tune`] reads it back from there, so a small base model (as the tests write)
/// gives a small fine-tuning run without the caller knowing about sizes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataConfig {
    /// Edge of the cubic volume in voxels (volumes are `1 × edge × edge × edge`); a multiple of 4.
    pub edge: usize,
    /// Pre-training-domain volumes the base model is trained on.
    pub pretrain_samples: usize,
    /// Epochs over those volumes when pre-training.
    pub pretrain_epochs: u32,
    /// Fine-tuning-domain volumes the job trains on.
    pub fine_tune_samples: usize,
    /// Held-out fine-tuning-domain volumes that average precision is measured on.
    pub eval_samples: usize,
    /// Output channels of the first and the second 3D convolution of a new base model.
    pub channels: [usize; 2],
}

impl Default for DataConfig {
    /// The size the local Azure ML stand-in runs: 8³ volumes, a fine-tune of seconds on two
    /// cores. (16³ works too, `edge: 16`, at about eight times the cost; its domain parameters
    /// are not tuned and its figures not measured.)
    fn default() -> Self {
        Self {
            edge: 8,
            pretrain_samples: 768,
            pretrain_epochs: 6,
            fine_tune_samples: 256,
            eval_samples: 512,
            channels: [4, 8],
        }
    }
}

impl DataConfig {
    /// A configuration small enough for unit tests in debug builds (8³ volumes).
    pub fn tiny() -> Self {
        Self {
            edge: 8,
            pretrain_samples: 384,
            pretrain_epochs: 6,
            fine_tune_samples: 256,
            eval_samples: 512,
            channels: [4, 8],
        }
    }

    /// Why this configuration cannot be trained, if it cannot.
    pub(crate) fn problem(&self) -> Option<String> {
        if self.edge < 4 || !self.edge.is_multiple_of(4) || self.edge > 64 {
            return Some(format!(
                "edge {} must be a multiple of 4 in 4..=64",
                self.edge
            ));
        }
        if self.pretrain_samples < 2 || self.fine_tune_samples < 2 || self.eval_samples < 2 {
            return Some("every sample count must be at least 2".into());
        }
        if self.channels.contains(&0) {
            return Some("channel counts must be positive".into());
        }
        None
    }

    /// Voxels in one volume.
    pub fn voxels(&self) -> usize {
        self.edge * self.edge * self.edge
    }
}

/// Which acquisition the volumes look like: the base model's data or the customer's scanner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    /// The public pre-training data set the "NGC" base model was trained on.
    PreTraining,
    /// The hospital's own scanner and contrast phase: lower contrast, brighter, finer tissue
    /// texture, brighter vessels, larger lesions, half of them hypodense.
    FineTuning,
}

/// Acquisition parameters of a domain. The raw tissue (texture + vessels + lesion + `noise`)
/// is matched to the reference histogram, then mapped by `gain * matched + offset` (each
/// jittered per volume) and read-out noise is added.
struct Acquisition {
    gain: f32,
    offset: f32,
    noise: f32,
    texture_amplitude: f32,
    /// Width of the tissue-texture bumps as a fraction of the edge.
    texture_width: f32,
    texture_bumps: usize,
    vessel_amplitude: f32,
    lesion_amplitude: f32,
    /// Lesion radius range in voxels at edge 16 (scaled with the edge).
    lesion_radius: (f32, f32),
    /// Share of lesions darker than the tissue around them (another contrast phase).
    hypodense: f64,
}

impl Domain {
    fn acquisition(self) -> Acquisition {
        match self {
            Domain::PreTraining => Acquisition {
                gain: 1.0,
                offset: 0.0,
                noise: 0.2,
                texture_amplitude: 0.3,
                texture_width: 0.30,
                texture_bumps: 4,
                vessel_amplitude: 0.4,
                lesion_amplitude: 1.2,
                lesion_radius: (1.0, 1.5),
                hypodense: 0.0,
            },
            Domain::FineTuning => Acquisition {
                gain: 0.7,
                offset: 0.5,
                noise: 0.15,
                texture_amplitude: 0.25,
                texture_width: 0.25,
                texture_bumps: 8,
                vessel_amplitude: 0.6,
                lesion_amplitude: 1.0,
                lesion_radius: (1.6, 2.4),
                hypodense: 0.5,
            },
        }
    }
}

/// A labelled set of volumes, `inputs` laid out as `[n, 1, edge, edge, edge]`.
pub(crate) struct Volumes {
    pub inputs: Vec<f32>,
    pub labels: Vec<f32>,
    pub edge: usize,
}

impl Volumes {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
}

/// Generates `n` volumes of `domain`, alternating negative and positive labels.
///
/// Each volume is drawn as raw tissue (texture, vessels, a lesion in positives, noise), then
/// its intensities are matched to one fixed histogram ([`match_histogram`]): every volume,
/// positive or negative, holds the same multiset of values before the scanner's gain, offset
/// and read-out noise are applied. Any statistic of the intensities alone (mean, spread,
/// extremes, quantiles) is therefore distributed alike in both classes; only where the values
/// sit (the lesion's compact shape against vessels and texture) tells the classes apart.
pub(crate) fn generate(domain: Domain, edge: usize, n: usize, rng: &mut Rng) -> Volumes {
    let acq = domain.acquisition();
    let voxels = edge * edge * edge;
    let reference = reference_histogram(voxels);
    let mut inputs = Vec::with_capacity(n * voxels);
    let mut labels = Vec::with_capacity(n);
    let mut raw = vec![0f32; voxels];
    let mut matched = vec![0f32; voxels];
    let mut order: Vec<usize> = (0..voxels).collect();
    for i in 0..n {
        let positive = i % 2 == 1;
        raw.iter_mut().for_each(|v| *v = 0.0);
        tissue(&mut raw, edge, &acq, rng);
        if positive {
            lesion(&mut raw, edge, &acq, rng);
        }
        for v in raw.iter_mut() {
            *v += acq.noise * rng.normal() as f32;
        }
        match_histogram(&raw, &reference, &mut order, &mut matched);
        // Scanner calibration varies from volume to volume, whatever the label.
        let gain = acq.gain * (SCANNER_JITTER * rng.normal()).exp() as f32;
        let offset = acq.offset + (SCANNER_JITTER * rng.normal()) as f32;
        for v in &matched {
            inputs.push(gain * v + offset + READ_OUT_NOISE * rng.normal() as f32);
        }
        labels.push(if positive { 1.0 } else { 0.0 });
    }
    Volumes {
        inputs,
        labels,
        edge,
    }
}

/// Spread (log-gain and offset) of the per-volume scanner calibration.
const SCANNER_JITTER: f64 = 0.1;
/// Noise added after histogram matching (the detector's read-out), in matched units.
const READ_OUT_NOISE: f32 = 0.05;

/// The intensity histogram every volume is matched to: the quantiles of a logistic
/// distribution with unit variance at `(k + 1/2) / voxels`, ascending.
fn reference_histogram(voxels: usize) -> Vec<f32> {
    let scale = 3f64.sqrt() / std::f64::consts::PI;
    (0..voxels)
        .map(|k| {
            let p = (k as f64 + 0.5) / voxels as f64;
            (scale * (p / (1.0 - p)).ln()) as f32
        })
        .collect()
}

/// Replaces each value of `raw` by the reference value of its rank (ties by position), so the
/// result holds exactly the values of `reference` in the spatial order of `raw`.
fn match_histogram(raw: &[f32], reference: &[f32], order: &mut [usize], out: &mut [f32]) {
    for (i, o) in order.iter_mut().enumerate() {
        *o = i;
    }
    order.sort_by(|&a, &b| raw[a].total_cmp(&raw[b]).then(a.cmp(&b)));
    for (rank, &i) in order.iter().enumerate() {
        out[i] = reference[rank];
    }
}

fn index(edge: usize, z: usize, y: usize, x: usize) -> usize {
    (z * edge + y) * edge + x
}

/// Smooth tissue texture (sum of broad Gaussian bumps of either sign) and one or two vessels:
/// bright tubes along a random axis, present in both classes so that brightness alone does
/// not give the lesion away.
fn tissue(raw: &mut [f32], edge: usize, acq: &Acquisition, rng: &mut Rng) {
    let e = edge as f32;
    for _ in 0..acq.texture_bumps {
        let c = [rng.range(0.0, e), rng.range(0.0, e), rng.range(0.0, e)];
        // Never narrower than a large lesion: texture is background, not a lesion look-alike.
        let sigma = (acq.texture_width * e).max(2.5) * rng.range(0.8, 1.25);
        let amp = acq.texture_amplitude * rng.range(-1.0, 1.0);
        add_gaussian(raw, edge, c, [sigma; 3], amp);
    }
    let vessels = 1 + (rng.uniform() < 0.5) as usize;
    for _ in 0..vessels {
        let axis = (rng.uniform() * 3.0) as usize % 3;
        let mut c = [
            rng.range(1.0, e - 1.0),
            rng.range(1.0, e - 1.0),
            rng.range(1.0, e - 1.0),
        ];
        let mut sigma = [rng.range(0.5, 0.7); 3];
        // A tube: very wide along its axis.
        sigma[axis] = 1.0e4;
        c[axis] = e / 2.0;
        let amp = acq.vessel_amplitude * rng.range(0.7, 1.3);
        add_gaussian(raw, edge, c, sigma, amp);
    }
}

/// A compact, roughly spherical bright blob away from the border.
fn lesion(raw: &mut [f32], edge: usize, acq: &Acquisition, rng: &mut Rng) {
    let e = edge as f32;
    let margin = (e / 5.0).max(1.5);
    let c = [
        rng.range(margin, e - margin),
        rng.range(margin, e - margin),
        rng.range(margin, e - margin),
    ];
    let radius = rng.range(acq.lesion_radius.0, acq.lesion_radius.1) * (e / 16.0).max(0.75);
    let sigma = [
        radius * rng.range(0.85, 1.15),
        radius * rng.range(0.85, 1.15),
        radius * rng.range(0.85, 1.15),
    ];
    let amp = acq.lesion_amplitude * rng.range(0.7, 1.3);
    let sign = if rng.uniform() < acq.hypodense {
        -1.0
    } else {
        1.0
    };
    add_gaussian(raw, edge, c, sigma, sign * amp);
}

fn add_gaussian(raw: &mut [f32], edge: usize, c: [f32; 3], sigma: [f32; 3], amp: f32) {
    for z in 0..edge {
        let dz = (z as f32 - c[0]) / sigma[0];
        for y in 0..edge {
            let dy = (y as f32 - c[1]) / sigma[1];
            for x in 0..edge {
                let dx = (x as f32 - c[2]) / sigma[2];
                raw[index(edge, z, y, x)] += amp * (-0.5 * (dz * dz + dy * dy + dx * dx)).exp();
            }
        }
    }
}

/// SplitMix64: tiny, seedable and identical on every platform (no dependency on `rand`'s
/// algorithm choices between versions).
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator for one purpose (`stream`) of one seed; streams are independent.
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut rng = Rng(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        rng.next_u64();
        rng
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.uniform() as f32
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_volumes_and_balanced_labels() {
        let a = generate(Domain::FineTuning, 8, 10, &mut Rng::new(3, 1));
        let b = generate(Domain::FineTuning, 8, 10, &mut Rng::new(3, 1));
        let c = generate(Domain::FineTuning, 8, 10, &mut Rng::new(4, 1));
        assert_eq!(a.inputs, b.inputs);
        assert_ne!(a.inputs, c.inputs);
        assert_eq!(a.inputs.len(), 10 * 512);
        assert_eq!(a.labels.iter().sum::<f32>(), 5.0);
    }

    #[test]
    fn fine_tuning_domain_is_shifted() {
        let mean = |v: &Volumes| v.inputs.iter().sum::<f32>() / v.inputs.len() as f32;
        let pre = generate(Domain::PreTraining, 8, 40, &mut Rng::new(1, 1));
        let fine = generate(Domain::FineTuning, 8, 40, &mut Rng::new(1, 1));
        assert!(mean(&fine) - mean(&pre) > 0.3, "intensity offset");
    }

    #[test]
    fn every_volume_holds_the_reference_values_before_the_scanner() {
        let reference = reference_histogram(27);
        let raw: Vec<f32> = (0..27).map(|i| ((i * 7) % 27) as f32).collect();
        let mut order = vec![0; 27];
        let mut out = vec![0.0; 27];
        match_histogram(&raw, &reference, &mut order, &mut out);
        // Same values, in the spatial order of the raw volume.
        let mut sorted = out.clone();
        sorted.sort_by(f32::total_cmp);
        assert_eq!(sorted, reference);
        assert_eq!(out[0], reference[0]);
        assert_eq!(out[4], reference[1], "raw[4] = 1 is the second smallest");
        let mean = reference.iter().sum::<f32>() / 27.0;
        assert!(mean.abs() < 1e-6);
    }

    /// At scale, no intensity statistic tells the classes apart: each scorer's AP is chance
    /// (0.5 ± 0.015 over 8000 volumes). Slow in a debug build (about a minute), hence ignored:
    /// `cargo test -p socwire-trainer --lib -- --ignored --nocapture statistics_are_chance_at_scale`.
    #[test]
    #[ignore]
    fn statistics_are_chance_at_scale() {
        for domain in [Domain::PreTraining, Domain::FineTuning] {
            let v = generate(domain, 8, 8000, &mut Rng::new(99, 12));
            let set = crate::baselines::EvalSet {
                inputs: v.inputs,
                voxels: 512,
                labels: v.labels,
            };
            for b in crate::baselines::baselines(&set) {
                println!("{domain:?} {:<45} AP {:.3}", b.scorer, b.average_precision);
                assert!((b.average_precision - 0.5).abs() < 0.025, "{b:?}");
            }
        }
    }
}
