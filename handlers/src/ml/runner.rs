//! The local compute back end's job process (`socwire ml run-job`), `socwire ml status`, and
//! the demo's base-model asset. A job runs in its own process, never inside an invocation: it
//! runs the trainer, streams per-step telemetry to the local Event Hub `training-telemetry`,
//! and publishes `Microsoft.MachineLearningServices.RunStatusChanged` events (the shape Azure
//! ML publishes) to the local Event Grid topic `azureml-events`, so the same functions follow
//! the same path as in Azure.
//!
//! A `trainer: "container"` job runs its command as a local process instead (no container
//! engine here: the image is recorded, not pulled), with the placeholders filled with local
//! paths, `MLFLOW_TRACKING_URI` pointing at an MLflow file store in the job's folder, and the
//! same contract as in Azure: exit status 0, then `eval.json` or MLflow metrics that
//! `export-model` reads.

use super::container::{ContainerCommand, Values};
use super::{AZUREML_EVENTS_TOPIC, TELEMETRY_HUB};
use crate::local::{LocalMlOptions, LocalWorkspace};
use crate::ports::StateStore;
use serde_json::{json, Value};
use socwire_host::brokers::{Brokers, SystemClock};
use socwire_trainer::{HyperParameters, JobSpec, Progress, TrainerError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The local workspace's ARM-like id, used as the event topic.
pub const LOCAL_WORKSPACE_ID: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/socwire-local/providers/Microsoft.MachineLearningServices/workspaces/local";

fn workspace(data_dir: &Path) -> anyhow::Result<LocalWorkspace> {
    Ok(LocalWorkspace::open(
        data_dir,
        LocalMlOptions {
            provision_ms: 0,
            max_nodes_quota: u32::MAX,
            runner: None,
        },
    )?)
}

/// A RunStatusChanged event as Azure ML publishes it (Event Grid schema).
pub fn run_status_event(job_id: &str, experiment: &str, tags: &Value, status: &str) -> Value {
    let experiment_id = crate::ids::stable_id("experiment", experiment);
    json!({
        "topic": LOCAL_WORKSPACE_ID,
        "subject": format!("experiments/{experiment_id}/runs/{job_id}"),
        "eventType": "Microsoft.MachineLearningServices.RunStatusChanged",
        "eventTime": chrono::Utc::now().to_rfc3339(),
        "id": crate::ids::stable_id("run-status", &format!("{job_id}/{status}")),
        "data": {
            "experimentId": experiment_id,
            "experimentName": experiment,
            "runId": job_id,
            "runType": "azureml.CommandJob",
            "runTags": tags,
            "runProperties": {},
            "runStatus": status,
        },
        "dataVersion": "",
        "metadataVersion": "1",
    })
}

/// Runs one job to its end; returns its final status.
pub fn run_job(data_dir: &Path, job_id: &str) -> anyhow::Result<String> {
    let ws = workspace(data_dir)?;
    let brokers = Brokers::open(data_dir, Arc::new(SystemClock))?;
    let spec = ws
        .job_spec(job_id)?
        .ok_or_else(|| anyhow::anyhow!("no job {job_id}"))?;
    let tags = serde_json::to_value(&spec.tags)?;
    let publish = |status: &str| -> anyhow::Result<()> {
        brokers
            .topic(AZUREML_EVENTS_TOPIC)
            .publish(vec![run_status_event(
                job_id,
                &spec.experiment,
                &tags,
                status,
            )])?;
        Ok(())
    };
    ws.set_job_status(job_id, "Preparing", None)?;
    publish("Preparing")?;
    let inputs = spec.inputs.get("assets").cloned().unwrap_or_default();
    let rel = inputs
        .strip_prefix("azureml://datastores/workspaceblobstore/paths/")
        .unwrap_or(&inputs);
    let work_dir = ws.job_dir(job_id).join("outputs").join("model");
    // A cancel asked for before the job started is honoured before any step.
    let watch = CancelWatch::start(data_dir, job_id, ws.cancel_requested(job_id)?);
    ws.set_job_status(job_id, "Running", None)?;
    publish("Running")?;
    let outcome = if spec.tags.get("trainer").is_some_and(|t| t == "container") {
        let assets = ws.datastore().join(rel);
        let outcome = run_container(&ws, job_id, &spec, &assets, &work_dir, &watch.cancel);
        watch.stop();
        outcome
    } else {
        let (hyper, seed) = training_tags(&spec);
        let job = JobSpec {
            seed,
            base_model: ws
                .datastore()
                .join(rel)
                .join(spec.tags.get("baseModel").map(String::as_str).unwrap_or("")),
            hyper,
            work_dir,
        };
        let outcome = train_locally(&brokers, job_id, &job, &watch.cancel);
        watch.stop();
        outcome?
    };
    let status = match outcome {
        Ok(()) => {
            ws.set_job_status(job_id, "Completed", None)?;
            "Completed"
        }
        Err(None) => {
            ws.set_job_status(job_id, "Canceled", Some("cancelled on request (CancelJob)"))?;
            "Canceled"
        }
        Err(Some(reason)) => {
            ws.set_job_status(job_id, "Failed", Some(&reason))?;
            "Failed"
        }
    };
    publish(status)?;
    Ok(status.to_string())
}

/// Watches the workspace for a `CancelJob` while a job runs (every 100 ms) and raises
/// `cancel` when one comes.
struct CancelWatch {
    cancel: Arc<AtomicBool>,
    finished: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl CancelWatch {
    /// Starts watching; `already` is whether a cancel was asked for before the job started.
    fn start(data_dir: &Path, job_id: &str, already: bool) -> Self {
        let cancel = Arc::new(AtomicBool::new(already));
        let finished = Arc::new(AtomicBool::new(false));
        let thread = {
            let (cancel, finished, data_dir, id) = (
                cancel.clone(),
                finished.clone(),
                data_dir.to_path_buf(),
                job_id.to_string(),
            );
            std::thread::spawn(move || {
                let Ok(ws) = workspace(&data_dir) else { return };
                while !finished.load(Ordering::SeqCst) {
                    if ws.cancel_requested(&id).unwrap_or(false) {
                        cancel.store(true, Ordering::SeqCst);
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            })
        };
        Self {
            cancel,
            finished,
            thread,
        }
    }

    /// The job has ended: stop watching.
    fn stop(self) {
        self.finished.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
    }
}

/// Runs socwire's own trainer, sending its per-step telemetry to the telemetry hub in batches
/// of 25. `Ok(Ok(()))` completed (result written), `Ok(Err(None))` cancelled,
/// `Ok(Err(Some(reason)))` failed; `Err` when the last telemetry or the result could not be
/// written.
fn train_locally(
    brokers: &Brokers,
    job_id: &str,
    job: &JobSpec,
    cancel: &AtomicBool,
) -> anyhow::Result<Result<(), Option<String>>> {
    let began = std::time::Instant::now();
    let mut pending: Vec<Vec<u8>> = Vec::new();
    let mut send_error = None;
    let flush = |pending: &mut Vec<Vec<u8>>| -> anyhow::Result<()> {
        let props = json!({});
        let events: Vec<(Option<&str>, &[u8], &Value)> = pending
            .iter()
            .map(|b| (Some(job_id), b.as_slice(), &props))
            .collect();
        if !events.is_empty() {
            brokers.hub(TELEMETRY_HUB).send_many(&events)?;
        }
        pending.clear();
        Ok(())
    };
    let result = socwire_trainer::fine_tune(job, cancel, &mut |p: Progress| {
        let body = super::job::telemetry_event(job_id, &p);
        pending.push(body.to_string().into_bytes());
        if pending.len() >= 25 {
            if let Err(e) = flush(&mut pending) {
                send_error.get_or_insert(e);
            }
        }
    });
    flush(&mut pending)?;
    if let Some(e) = send_error {
        tracing::warn!(error = %e, "some telemetry was not sent");
    }
    Ok(match result {
        Ok(r) => {
            super::job::write_result(&job.work_dir, &r, began.elapsed().as_secs_f64())?;
            println!(
                "job {job_id}: AP {:.3} -> {:.3} in {} steps, {:.2} s",
                r.average_precision_before,
                r.average_precision_after,
                r.steps,
                began.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Err(TrainerError::Cancelled) => Err(None),
        Err(e) => Err(Some(e.to_string())),
    })
}

/// Runs a container job's command as a local process in the job's folder until it exits or
/// is cancelled. `Err(None)`: cancelled; `Err(Some(reason))`: failed.
fn run_container(
    ws: &LocalWorkspace,
    job_id: &str,
    spec: &crate::ports::JobSubmission,
    assets: &Path,
    outputs: &Path,
    cancel: &AtomicBool,
) -> Result<(), Option<String>> {
    let template = spec
        .tags
        .get("containerCommand")
        .ok_or_else(|| Some("the job has no containerCommand tag".to_string()))?;
    let command = ContainerCommand::parse(template).map_err(Some)?;
    let (hyper, seed) = training_tags(spec);
    std::fs::create_dir_all(outputs).map_err(|e| Some(format!("{}: {e}", outputs.display())))?;
    let argv = command.argv(&Values {
        assets: assets.display().to_string(),
        outputs: outputs.display().to_string(),
        base_model: spec.tags.get("baseModel").map(String::as_str),
        hyper: &hyper,
        seed,
    });
    let dir = ws.job_dir(job_id);
    let store = crate::local::mlflow_store(&dir);
    if let Err(e) = std::fs::create_dir_all(&store) {
        return Err(Some(format!("MLflow store {}: {e}", store.display())));
    }
    if cancel.load(Ordering::SeqCst) {
        return Err(None);
    }
    let mut child = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .current_dir(&dir)
        .env("MLFLOW_TRACKING_URI", format!("file://{}", store.display()))
        .env("MLFLOW_EXPERIMENT_NAME", &spec.experiment)
        .stdin(std::process::Stdio::null())
        .spawn()
        .map_err(|e| {
            Some(format!(
                "the command's program {:?} cannot be started: {e}",
                argv[0]
            ))
        })?;
    eprintln!("job {job_id}: running {argv:?}");
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                return Err(Some(format!(
                    "the command exited with {status} (its output is in the job's log)"
                )))
            }
            Ok(None) => {}
            Err(e) => return Err(Some(format!("waiting for the command: {e}"))),
        }
        if cancel.load(Ordering::SeqCst) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(None);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// What `socwire ml status --json` prints: clusters, jobs (with metrics so far) and models.
pub async fn status(data_dir: &Path) -> anyhow::Result<Value> {
    let ws = workspace(data_dir)?;
    let tables = crate::local::SqliteTables::open(&data_dir.join("tables.sqlite3"))?;
    let mut jobs = Vec::new();
    for j in ws.jobs()? {
        let m: super::telemetry::JobMetrics =
            match tables.load(&super::telemetry::metrics_key(&j.id)).await? {
                Some(b) => serde_json::from_slice(&b).unwrap_or_default(),
                None => Default::default(),
            };
        let last = |kind: &str| m.points.iter().rev().find(|p| p.kind == kind);
        jobs.push(json!({
            "id": j.id,
            "commandId": j.tags.get("commandId"),
            "status": j.status,
            "cluster": j.cluster,
            "error": j.error,
            "metrics": {
                "points": m.points.len(),
                "step": last("step").map(|p| p.step),
                "loss": last("step").and_then(|p| p.loss),
                "learningRate": last("step").and_then(|p| p.learning_rate),
                "evalLoss": last("eval").and_then(|p| p.loss),
                "averagePrecision": last("eval").and_then(|p| p.average_precision),
                "diverged": m.diverged,
            }
        }));
    }
    Ok(json!({
        "clusters": ws.clusters()?,
        "jobs": jobs,
        "models": ws.models()?,
    }))
}

/// Writes the demo's pre-trained base model as a tar.gz under `<data-dir>/ml/local-assets/`
/// (an allow-listed `file://` folder); returns the archive and its sha-256.
pub fn write_demo_base_model(data_dir: &Path) -> anyhow::Result<(PathBuf, String)> {
    let dir = std::path::absolute(data_dir.join("ml").join("local-assets"))?;
    std::fs::create_dir_all(&dir)?;
    let archive = dir.join("clara-ct-base.tar.gz");
    if !archive.is_file() {
        let model = dir.join("base.safetensors.tmp");
        socwire_trainer::pretrain_base_model(1, &model)?;
        let tmp = dir.join("clara-ct-base.tar.gz.tmp");
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
            std::fs::File::create(&tmp)?,
            flate2::Compression::default(),
        ));
        b.append_path_with_name(&model, "model/base.safetensors")?;
        b.into_inner()?.finish()?;
        std::fs::rename(&tmp, &archive)?;
        std::fs::remove_file(&model)?;
    }
    let sha = super::staging::sha256_file(&archive)?;
    Ok((archive, sha))
}

/// The demo's ProvisionGpuCluster command, with the pipeline option.
pub fn demo_command(command_id: &str, archive: &Path, sha256: &str) -> Value {
    json!({
        "commandId": command_id,
        "schemaVersion": 1,
        "clusterName": "gpu-a100",
        "vmSize": "Standard_NC24ads_A100_v4",
        "minNodes": 0,
        "maxNodes": 2,
        "priority": "LowPriority",
        "pipeline": {
            "model": "clara-covid-ct",
            "assets": [{ "url": url::Url::from_file_path(archive).map(|u| u.to_string()).unwrap_or_default(), "sha256": sha256 }],
            "hyperParameters": HyperParameters::default()
        }
    })
}

/// The hyper-parameters and seed a job's tags carry (run-fine-tune writes them; defaults when
/// a tag is missing or unreadable).
fn training_tags(spec: &crate::ports::JobSubmission) -> (HyperParameters, u64) {
    let hyper = spec
        .tags
        .get("hyperParameters")
        .and_then(|h| serde_json::from_str(h).ok())
        .unwrap_or_default();
    let seed = spec
        .tags
        .get("seed")
        .and_then(|s| s.parse().ok())
        .unwrap_or(42);
    (hyper, seed)
}
