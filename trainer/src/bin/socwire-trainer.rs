//! `socwire-trainer fine-tune …`: the command an Azure ML job runs (see `run-fine-tune`'s job
//! submission). Fine-tunes a base model with the given hyper-parameters, writes
//! `model.safetensors` and `eval.safetensors` to `--out`, prints one JSON line per
//! [`Progress`] on stdout (the job's log) and the [`socwire_trainer::JobResult`] last; any
//! failure is one line on stderr and a non-zero exit.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use clap::{Parser, Subcommand};
use socwire_trainer::{fine_tune, HyperParameters, JobSpec, Progress};

#[derive(Parser)]
#[command(
    name = "socwire-trainer",
    about = "socwire's trainer, as an Azure ML job runs it"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fine-tune a base model (a safetensors file this trainer wrote).
    FineTune {
        /// The base model file.
        #[arg(long)]
        base_model: PathBuf,
        /// Passes over the fine-tuning set.
        #[arg(long, default_value_t = HyperParameters::default().epochs)]
        epochs: u32,
        /// Peak learning rate.
        #[arg(long, default_value_t = HyperParameters::default().learning_rate)]
        learning_rate: f64,
        /// Volumes per step.
        #[arg(long, default_value_t = HyperParameters::default().batch_size)]
        batch_size: usize,
        /// Seeds the data, the evaluation set and the batch order.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Folder for model.safetensors and eval.safetensors.
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let Command::FineTune {
        base_model,
        epochs,
        learning_rate,
        batch_size,
        seed,
        out,
    } = Cli::parse().command;
    let spec = JobSpec {
        seed,
        base_model,
        hyper: HyperParameters {
            epochs,
            learning_rate,
            batch_size,
        },
        work_dir: out,
    };
    let mut print = |p: Progress| {
        if let Ok(line) = serde_json::to_string(&p) {
            println!("{line}");
        }
    };
    match fine_tune(&spec, &AtomicBool::new(false), &mut print) {
        Ok(result) => {
            println!("{}", serde_json::to_string(&result).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("socwire-trainer: {e}");
            ExitCode::FAILURE
        }
    }
}
