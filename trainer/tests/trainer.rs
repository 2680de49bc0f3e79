//! End-to-end checks of the trainer on the test-size configuration ([`DataConfig::tiny`]):
//! real pre-training and fine-tuning runs, small enough for debug builds.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use socwire_trainer::baselines::{baselines, read_eval_set};
use socwire_trainer::{
    export_onnx, fine_tune, load_eval_set, pretrain_base_model_with, DataConfig, HyperParameters,
    JobResult, JobSpec, Model, Progress, TrainerError,
};

const BASE_SEED: u64 = 7;
const JOB_SEED: u64 = 8;

/// A directory of this test process, removed by nobody (the OS temp dir is cleaned anyway);
/// unique per process so parallel runs do not collide.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join(format!("socwire-trainer-test-{}", std::process::id()))
        .join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The tiny base model, pre-trained once per test process.
fn base_model() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let path = scratch("base").join("base.safetensors");
        pretrain_base_model_with(BASE_SEED, &DataConfig::tiny(), &path).unwrap();
        path
    })
}

fn spec(work: &str, hyper: HyperParameters) -> JobSpec {
    JobSpec {
        seed: JOB_SEED,
        base_model: base_model().to_path_buf(),
        hyper,
        work_dir: scratch(work),
    }
}

/// One default fine-tuning run shared by the tests that only read its outputs.
fn reference_run() -> &'static (JobResult, Vec<Progress>) {
    static RUN: OnceLock<(JobResult, Vec<Progress>)> = OnceLock::new();
    RUN.get_or_init(|| {
        let mut events = Vec::new();
        let result = fine_tune(
            &spec("reference", HyperParameters::default()),
            &AtomicBool::new(false),
            &mut |p| events.push(p),
        )
        .unwrap();
        (result, events)
    })
}

#[test]
fn fine_tuning_raises_average_precision_clearly() {
    let (result, events) = reference_run();
    println!(
        "AP {:.3} -> {:.3} in {} steps",
        result.average_precision_before, result.average_precision_after, result.steps
    );
    assert!(
        result.average_precision_after >= result.average_precision_before + 0.1,
        "AP {:.3} -> {:.3}",
        result.average_precision_before,
        result.average_precision_after
    );
    assert!(result.average_precision_after > 0.85);
    assert!(result.average_precision_before < 0.85);

    // Telemetry: an Eval before training, a Step per step, an Eval per epoch.
    let steps: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Progress::Step { step, .. } => Some(*step),
            _ => None,
        })
        .collect();
    assert_eq!(steps, (1..=result.steps).collect::<Vec<_>>());
    let evals: Vec<(u64, f64)> = events
        .iter()
        .filter_map(|e| match e {
            Progress::Eval {
                step,
                average_precision,
                ..
            } => Some((*step, *average_precision)),
            _ => None,
        })
        .collect();
    assert_eq!(evals.len(), 1 + HyperParameters::default().epochs as usize);
    assert_eq!(evals[0], (0, result.average_precision_before));
    assert_eq!(evals.last().unwrap().0, result.steps);
    assert!((evals.last().unwrap().1 - result.average_precision_after).abs() < 1e-9);
    let Some(Progress::Step {
        learning_rate: first_lr,
        ..
    }) = events.iter().find(|e| matches!(e, Progress::Step { .. }))
    else {
        unreachable!()
    };
    assert_eq!(*first_lr, HyperParameters::default().learning_rate);
}

/// The task needs learning: on the exported evaluation set, no scorer that sees only a
/// volume's intensity statistics (each statistic in either sign, and a cross-validated
/// logistic regression on all of them) gets above AP 0.60, while fine-tuning lifts the CNN
/// by at least 0.10 to at least 0.85.
#[test]
fn intensity_statistics_alone_do_not_find_the_lesions() {
    let (result, _) = reference_run();
    let set = read_eval_set(&result.eval_path).unwrap();
    assert_eq!(set.labels.len(), DataConfig::tiny().eval_samples);
    let table = baselines(&set);
    assert_eq!(
        table.len(),
        15,
        "7 statistics in either sign and the regression"
    );
    for b in &table {
        println!("{:<45} AP {:.3}", b.scorer, b.average_precision);
    }
    let best = table
        .iter()
        .max_by(|a, b| a.average_precision.total_cmp(&b.average_precision))
        .unwrap();
    assert!(
        best.average_precision <= 0.60,
        "{} reaches AP {:.3}: the labels leak into the intensity statistics",
        best.scorer,
        best.average_precision
    );
    let (before, after) = (
        result.average_precision_before,
        result.average_precision_after,
    );
    println!("CNN before {before:.3}, after {after:.3}");
    assert!(
        after >= 0.85 && after - before >= 0.10,
        "AP {before:.3} -> {after:.3}"
    );
    assert!(after - best.average_precision >= 0.25);
}

#[test]
fn same_seed_gives_the_same_model_bit_for_bit() {
    let (reference, reference_events) = reference_run();
    let mut events = Vec::new();
    let again = fine_tune(
        &spec("again", HyperParameters::default()),
        &AtomicBool::new(false),
        &mut |p| events.push(p),
    )
    .unwrap();
    assert_eq!(&events, reference_events);
    assert!(
        std::fs::read(&again.model_path).unwrap() == std::fs::read(&reference.model_path).unwrap()
    );

    let other_base = scratch("other-base").join("base.safetensors");
    pretrain_base_model_with(BASE_SEED, &DataConfig::tiny(), &other_base).unwrap();
    assert!(std::fs::read(&other_base).unwrap() == std::fs::read(base_model()).unwrap());
}

#[test]
fn cancel_stops_between_steps_and_writes_nothing() {
    let cancel = AtomicBool::new(false);
    let mut steps_seen = 0;
    let spec = spec("cancelled", HyperParameters::default());
    let err = fine_tune(&spec, &cancel, &mut |p| {
        if let Progress::Step { step, .. } = p {
            steps_seen = step;
            if step == 3 {
                cancel.store(true, Ordering::Relaxed);
            }
        }
    })
    .unwrap_err();
    assert!(matches!(err, TrainerError::Cancelled), "{err}");
    assert_eq!(steps_seen, 3, "no step after the flag was set");
    assert!(!spec.work_dir.join("model.safetensors").exists());
}

#[test]
fn absurd_learning_rate_diverges_clearly() {
    let hyper = HyperParameters {
        learning_rate: 1e30,
        ..Default::default()
    };
    let err = fine_tune(
        &spec("diverged", hyper),
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap_err();
    match &err {
        TrainerError::Diverged { step, loss } => {
            assert!(*step <= 3, "diverged late, at step {step}");
            assert!(!loss.is_finite());
        }
        other => panic!("expected Diverged, got {other}"),
    }
    assert!(err.to_string().contains("diverged"), "{err}");
}

#[test]
fn bad_base_model_files_are_named_in_the_error() {
    let dir = scratch("bad");
    let garbage = dir.join("garbage.safetensors");
    std::fs::write(&garbage, b"this is not a model").unwrap();
    let missing = dir.join("missing.safetensors");
    // A valid safetensors file, but not one of ours.
    let foreign = dir.join("foreign.safetensors");
    let t =
        candle_core::Tensor::zeros(3, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
    candle_core::safetensors::save(&std::collections::HashMap::from([("w", t)]), &foreign).unwrap();

    for (path, needle) in [
        (&garbage, "not a safetensors file"),
        (&missing, "cannot read"),
        (&foreign, "not a model written by this trainer"),
    ] {
        let mut job = spec("bad-job", HyperParameters::default());
        job.base_model = path.clone();
        let err = fine_tune(&job, &AtomicBool::new(false), &mut |_| {}).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, TrainerError::BadModel { .. }), "{text}");
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains(needle), "{text}");
    }
}

#[test]
fn eval_set_holds_inputs_and_labels() {
    let (result, _) = reference_run();
    let (inputs, labels) = load_eval_set(&result.eval_path, &candle_core::Device::Cpu).unwrap();
    let config = DataConfig::tiny();
    let e = config.edge;
    assert_eq!(inputs.dims(), &[config.eval_samples, 1, e, e, e]);
    assert_eq!(inputs.dtype(), candle_core::DType::F32);
    assert_eq!(labels.len(), config.eval_samples);
    assert_eq!(labels.iter().sum::<f32>() as usize, config.eval_samples / 2);
    assert!(labels.iter().all(|&l| l == 0.0 || l == 1.0));
}

#[test]
fn onnx_export_matches_the_trainer_under_tract() {
    use tract_onnx::prelude::*;

    let (result, _) = reference_run();
    let onnx_path = scratch("onnx").join("model.onnx");
    let info = export_onnx(&result.model_path, &onnx_path).unwrap();
    let e = DataConfig::tiny().edge as i64;
    assert_eq!(info.input_shape, vec![-1, 1, e, e, e]);
    // Read back from the file, as export-model reads a container job's model.onnx.
    assert_eq!(socwire_trainer::describe_onnx(&onnx_path).unwrap(), info);
    let junk = scratch("onnx").join("junk.onnx");
    std::fs::write(&junk, b"\x08\x07 not a model at all").unwrap();
    assert!(matches!(
        socwire_trainer::describe_onnx(&junk),
        Err(TrainerError::BadModel { .. })
    ));

    let device = candle_core::Device::Cpu;
    let (inputs, _) = load_eval_set(&result.eval_path, &device).unwrap();
    let expected = Model::load(&result.model_path, &device)
        .unwrap()
        .predict(&inputs, 64)
        .unwrap();

    let runnable = tract_onnx::onnx()
        .model_for_path(&onnx_path)
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let dims = inputs.dims().to_vec();
    let flat = inputs.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    // The batch dimension is dynamic: run the whole set, then a batch of 3.
    for n in [dims[0], 3] {
        let voxels: usize = dims[1..].iter().product();
        let batch = tract_ndarray::Array::from_shape_vec(
            (n, dims[1], dims[2], dims[3], dims[4]),
            flat[..n * voxels].to_vec(),
        )
        .unwrap();
        let outputs = runnable.run(tvec!(Tensor::from(batch).into())).unwrap();
        let got = outputs[0].to_array_view::<f32>().unwrap();
        assert_eq!(got.shape(), &[n, 1]);
        let mut worst = 0f32;
        for (g, want) in got.iter().zip(&expected[..n]) {
            assert!((0.0..=1.0).contains(g));
            worst = worst.max((g - want).abs());
        }
        assert!(worst < 1e-4, "largest difference {worst} at batch {n}");
    }
}
