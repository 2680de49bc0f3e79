//! Fine-tuning figures over seeds: wall time, average precision before → after, and the best
//! intensity-statistic baseline on the same exported evaluation set (every statistic in either
//! sign and the cross-validated logistic regression; the full table for the first seed), with
//! the default data configuration and hyper-parameters.
//!
//! `cargo bench -p socwire-trainer` (release). Environment:
//! `TRAINER_BENCH_SEEDS` (default 5), `TRAINER_BENCH_TINY=1` for the test-size configuration,
//! `TRAINER_BENCH_EPOCHS` / `TRAINER_BENCH_LR` to override the defaults, `TRAINER_BENCH_VERBOSE=1`
//! to print every evaluation.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use socwire_trainer::baselines::{baselines, read_eval_set};
use socwire_trainer::{fine_tune, pretrain_base_model_with, DataConfig, HyperParameters, JobSpec};

fn main() {
    let seeds: u64 = std::env::var("TRAINER_BENCH_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .max(1);
    let config = if std::env::var("TRAINER_BENCH_TINY").is_ok_and(|v| v == "1") {
        DataConfig::tiny()
    } else {
        DataConfig::default()
    };
    let mut hyper = HyperParameters::default();
    if let Some(epochs) = std::env::var("TRAINER_BENCH_EPOCHS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        hyper.epochs = epochs;
    }
    if let Some(lr) = std::env::var("TRAINER_BENCH_LR")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        hyper.learning_rate = lr;
    }
    let dir = std::env::temp_dir().join(format!("socwire-trainer-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench directory");
    println!("data {config:?}");
    println!("hyper {hyper:?}");
    println!(
        "{:>4} {:>12} {:>12} {:>6} {:>9} {:>8} {:>13}  best baseline",
        "seed", "pretrain_s", "finetune_s", "steps", "ap_before", "ap_after", "ap_baseline"
    );
    let (mut pre, mut fine, mut before, mut after, mut baseline) =
        (vec![], vec![], vec![], vec![], vec![]);
    for seed in 1..=seeds {
        let base = dir.join(format!("base-{seed}.safetensors"));
        let t = Instant::now();
        pretrain_base_model_with(seed, &config, &base).expect("pre-training");
        let pretrain_s = t.elapsed().as_secs_f64();
        let spec = JobSpec {
            seed: seed + 1000,
            base_model: base,
            hyper: hyper.clone(),
            work_dir: dir.join(format!("job-{seed}")),
        };
        let t = Instant::now();
        let verbose = std::env::var("TRAINER_BENCH_VERBOSE").is_ok_and(|v| v == "1");
        let result = fine_tune(&spec, &AtomicBool::new(false), &mut |p| {
            if verbose && matches!(p, socwire_trainer::Progress::Eval { .. }) {
                println!("     {p:?}");
            }
        })
        .expect("fine-tuning");
        let fine_s = t.elapsed().as_secs_f64();
        let table = baselines(&read_eval_set(&result.eval_path).expect("eval set"));
        if seed == 1 {
            for b in &table {
                println!("     {:<45} AP {:.3}", b.scorer, b.average_precision);
            }
        }
        let best = table
            .iter()
            .max_by(|a, b| a.average_precision.total_cmp(&b.average_precision))
            .expect("baselines");
        println!(
            "{seed:>4} {pretrain_s:>12.2} {fine_s:>12.2} {:>6} {:>9.3} {:>8.3} {:>13.3}  {}",
            result.steps,
            result.average_precision_before,
            result.average_precision_after,
            best.average_precision,
            best.scorer
        );
        baseline.push(best.average_precision);
        pre.push(pretrain_s);
        fine.push(fine_s);
        before.push(result.average_precision_before);
        after.push(result.average_precision_after);
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("over {seeds} seeds (mean ± sample std, [min, max]):");
    for (name, values) in [
        ("pretrain wall s", &pre),
        ("fine-tune wall s", &fine),
        ("AP before", &before),
        ("AP after", &after),
        ("best baseline AP", &baseline),
    ] {
        let (mean, std, min, max) = summary(values);
        println!("  {name:<17} {mean:.3} ± {std:.3}  [{min:.3}, {max:.3}]");
    }
}

fn summary(values: &[f64]) -> (f64, f64, f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (mean, var.sqrt(), min, max)
}
