//! `socwire ml`: the local compute back end's status, and its job runner.

use super::DataDir;
use clap::{Args, Subcommand};
use socwire_trainer::{HyperParameters, JobSpec};
use std::path::PathBuf;

/// `socwire ml` options.
#[derive(Args, Debug)]
pub struct MlArgs {
    #[allow(missing_docs)] // clap would show a doc comment here as help
    #[command(flatten)]
    pub data: DataDir,
    #[allow(missing_docs)] // clap would show a doc comment here as help
    #[command(subcommand)]
    pub action: MlAction,
}

/// `socwire ml` actions.
#[derive(Subcommand, Debug)]
pub enum MlAction {
    /// Clusters, jobs (with metrics so far) and models of the local compute back end.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run one job of the local compute back end (the workspace starts this; not for people).
    RunJob {
        /// Job id.
        #[arg(long)]
        job: String,
    },
    /// Fine-tune a base model: the command an Azure ML job runs (`run-fine-tune` submits it).
    /// Prints one telemetry event per step and evaluation, then the result, as JSON lines.
    FineTune {
        /// The job's name (the `jobId` of its telemetry).
        #[arg(long)]
        job_id: String,
        /// The base model (a safetensors file this trainer wrote).
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
        /// Also send the telemetry to this Event Hub
        /// (`https://{namespace}.servicebus.windows.net/{hub}`), as the job's managed identity.
        #[arg(long)]
        telemetry_eventhub: Option<String>,
    },
    /// Write the demo's pre-trained base model (a tar.gz in an allow-listed folder) and print a
    /// ProvisionGpuCluster command with the pipeline option that uses it.
    DemoCommand {
        /// The command's commandId.
        #[arg(long, default_value = "demo-1")]
        command_id: String,
    },
}

/// Runs a `socwire ml` action.
pub async fn run(args: MlArgs) -> anyhow::Result<()> {
    match args.action {
        MlAction::Status { json } => {
            let status = socwire::ml::runner::status(&args.data.data_dir).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                for c in status["clusters"].as_array().into_iter().flatten() {
                    println!(
                        "cluster {:<20} {:<20} {:<10} nodes {}",
                        c["name"].as_str().unwrap_or(""),
                        c["vmSize"].as_str().unwrap_or(""),
                        c["state"].as_str().unwrap_or(""),
                        c["nodes"]
                    );
                }
                for j in status["jobs"].as_array().into_iter().flatten() {
                    println!(
                        "job     {:<32} {:<10} step {} loss {} AP {}",
                        j["id"].as_str().unwrap_or(""),
                        j["status"].as_str().unwrap_or(""),
                        j["metrics"]["step"],
                        j["metrics"]["loss"],
                        j["metrics"]["averagePrecision"]
                    );
                }
                for m in status["models"].as_array().into_iter().flatten() {
                    println!(
                        "model   {} v{} {}",
                        m["name"].as_str().unwrap_or(""),
                        m["version"].as_str().unwrap_or(""),
                        m["folder"].as_str().unwrap_or("")
                    );
                }
            }
        }
        MlAction::RunJob { job } => {
            let status = tokio::task::spawn_blocking(move || {
                socwire::ml::runner::run_job(&args.data.data_dir, &job)
            })
            .await??;
            println!("job ended {status}");
        }
        MlAction::FineTune {
            job_id,
            base_model,
            epochs,
            learning_rate,
            batch_size,
            seed,
            out,
            telemetry_eventhub,
        } => {
            let hub = match telemetry_eventhub {
                Some(url) => {
                    let options = socwire::ml::job::telemetry_options();
                    let credential = socwire::azure::job_credential(&options)?;
                    Some(socwire::azure::EventHubsRest::new(
                        &url, credential, options,
                    )?)
                }
                None => None,
            };
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
            socwire::ml::job::run(job_id, spec, hub).await?;
        }
        MlAction::DemoCommand { command_id } => {
            let (archive, sha) = socwire::ml::runner::write_demo_base_model(&args.data.data_dir)?;
            println!(
                "{}",
                socwire::ml::runner::demo_command(&command_id, &archive, &sha)
            );
        }
    }
    Ok(())
}
