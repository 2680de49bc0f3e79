//! `socwire ml fine-tune`: the command an Azure ML job runs (`run-fine-tune` submits it; the
//! job image holds this binary, built with the trainer). It fine-tunes a base model, writes
//! `model.safetensors`, `eval.safetensors` and `result.json` (AP before and after, which
//! `export-model` reads) to `--out`, prints one telemetry event per
//! trainer step or evaluation (the job's log) and the result last, and — given
//! `--telemetry-eventhub` — sends the same events to the `training-telemetry` Event Hub, where
//! `training-telemetry` stores them and cancels a diverging job. The local compute back end's
//! runner sends the same events to the local hub.

use crate::azure::{AdapterOptions, EventHubsRest};
use serde_json::{json, Value};
use socwire_trainer::{HyperParameters, JobResult, JobSpec, Progress};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Events per Event Hubs request at most.
const BATCH_EVENTS: usize = 100;
/// How long the first event of a batch waits for more before the batch is sent.
const LINGER: Duration = Duration::from_secs(1);
/// How long sending may go on after training ended.
const DRAIN: Duration = Duration::from_secs(120);

/// The telemetry event for one trainer report, as `training-telemetry` reads it:
/// `{jobId, kind: "step"|"eval", step, loss, learningRate | averagePrecision}`; a loss that
/// is not a finite number is sent as `"NaN"` (JSON has no NaN).
pub fn telemetry_event(job_id: &str, p: &Progress) -> Value {
    let number = |x: f64| {
        if x.is_finite() {
            json!(x)
        } else {
            json!("NaN")
        }
    };
    match *p {
        Progress::Step {
            step,
            epoch,
            loss,
            learning_rate,
        } => json!({ "jobId": job_id, "kind": "step", "step": step, "epoch": epoch,
                     "loss": number(loss), "learningRate": learning_rate }),
        Progress::Eval {
            step,
            loss,
            average_precision,
        } => json!({ "jobId": job_id, "kind": "eval", "step": step, "loss": number(loss),
                     "averagePrecision": average_precision }),
    }
}

/// The shell command line an Azure ML Command job runs to fine-tune `base` (a path inside the
/// `assets` input). Values from the command are single-quoted, so an odd file name cannot
/// reach the shell; `${{inputs.assets}}` and `${{outputs.model}}` are Azure ML's own
/// placeholders, replaced before the shell sees the line.
pub fn command_line(
    job_id: &str,
    base: &str,
    hyper: &HyperParameters,
    seed: u64,
    telemetry_hub: Option<&str>,
) -> String {
    let mut line = format!(
        "socwire ml fine-tune --job-id {} --base-model ${{{{inputs.assets}}}}/{} --epochs {} \
         --learning-rate {} --batch-size {} --seed {seed} --out ${{{{outputs.model}}}}",
        shell_quote(job_id),
        shell_quote(base),
        hyper.epochs,
        hyper.learning_rate,
        hyper.batch_size,
    );
    if let Some(hub) = telemetry_hub {
        line.push_str(" --telemetry-eventhub ");
        line.push_str(&shell_quote(hub));
    }
    line
}

/// `s` as one POSIX shell word.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Writes `result.json` (AP before and after, steps, wall time) beside the model: what
/// `export-model` reads, from Azure ML jobs and local ones alike.
pub fn write_result(
    dir: &std::path::Path,
    r: &JobResult,
    wall_seconds: f64,
) -> std::io::Result<()> {
    let summary = json!({
        "averagePrecisionBefore": r.average_precision_before,
        "averagePrecisionAfter": r.average_precision_after,
        "steps": r.steps,
        "wallSeconds": wall_seconds,
    });
    std::fs::write(
        dir.join("result.json"),
        serde_json::to_vec_pretty(&summary).unwrap_or_default(),
    )
}

/// Runs the fine-tune of `spec` as job `job_id`, printing its events and sending them to
/// `hub` when given. Telemetry that cannot be sent is counted and reported on stderr; it
/// never fails the job (the model is what the job is for).
pub async fn run(
    job_id: String,
    spec: JobSpec,
    hub: Option<EventHubsRest>,
) -> anyhow::Result<JobResult> {
    eprintln!(
        "socwire ml fine-tune: job {job_id} trains on {}",
        socwire_trainer::device_name()
    );
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let sender = hub.map(|hub| tokio::spawn(send_events(hub, job_id.clone(), rx)));
    let began = std::time::Instant::now();
    let out = spec.work_dir.clone();
    let trainer = tokio::task::spawn_blocking(move || {
        socwire_trainer::fine_tune(&spec, &AtomicBool::new(false), &mut |p| {
            let event = telemetry_event(&job_id, &p).to_string();
            println!("{event}");
            let _ = tx.send(event);
        })
    });
    let result = trainer.await?;
    if let Some(sender) = sender {
        match tokio::time::timeout(DRAIN, sender).await {
            Ok(Ok(sent)) => eprintln!("{sent}"),
            Ok(Err(e)) => eprintln!("telemetry: the sender stopped: {e}"),
            Err(_) => eprintln!(
                "telemetry: still sending {} s after training ended; the rest is not sent",
                DRAIN.as_secs()
            ),
        }
    }
    let result = result?;
    write_result(&out, &result, began.elapsed().as_secs_f64())?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(result)
}

/// What happened to a job's telemetry.
#[derive(Debug, Default)]
struct Sent {
    events: usize,
    batches: usize,
    lost: usize,
    last_error: Option<String>,
}

impl std::fmt::Display for Sent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "telemetry: {} event(s) sent in {} batch(es)",
            self.events, self.batches
        )?;
        if self.lost > 0 {
            write!(
                f,
                "; {} not sent ({})",
                self.lost,
                self.last_error.as_deref().unwrap_or("")
            )?;
        }
        Ok(())
    }
}

/// Sends events in batches (up to [`BATCH_EVENTS`], or whatever came within [`LINGER`] of the
/// first) until the trainer is done.
async fn send_events(
    hub: EventHubsRest,
    job_id: String,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<String>,
) -> Sent {
    let mut sent = Sent::default();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let until = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH_EVENTS {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(event)) => batch.push(event),
                Ok(None) | Err(_) => break,
            }
        }
        match hub.send_batch(&job_id, &batch).await {
            Ok(()) => {
                sent.events += batch.len();
                sent.batches += 1;
            }
            Err(e) => {
                tracing::warn!(error = %e, events = batch.len(), "telemetry not sent");
                sent.lost += batch.len();
                sent.last_error = Some(e.to_string());
            }
        }
    }
    sent
}

/// The retry bounds of telemetry sends: a few quick retries, then the batch is given up (a
/// job does not wait minutes on its metrics).
pub fn telemetry_options() -> AdapterOptions {
    AdapterOptions {
        timeout: Duration::from_secs(20),
        max_retries: 4,
        base_delay: Duration::from_millis(500),
        max_delay: Duration::from_secs(10),
        max_body: 64 * 1024,
        ..AdapterOptions::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_quotes_what_came_from_the_command() {
        let h = HyperParameters {
            epochs: 3,
            learning_rate: 0.01,
            batch_size: 8,
        };
        let line = command_line(
            "socwire-ft-1",
            "model/it's $(rm -rf ~).safetensors",
            &h,
            7,
            Some("https://ns.servicebus.windows.net/training-telemetry"),
        );
        assert_eq!(
            line,
            "socwire ml fine-tune --job-id 'socwire-ft-1' --base-model \
             ${{inputs.assets}}/'model/it'\\''s $(rm -rf ~).safetensors' --epochs 3 \
             --learning-rate 0.01 --batch-size 8 --seed 7 --out ${{outputs.model}} \
             --telemetry-eventhub 'https://ns.servicebus.windows.net/training-telemetry'"
        );
        assert!(!command_line("j", "b", &h, 1, None).contains("telemetry"));
    }

    #[test]
    fn a_loss_that_is_not_a_number_is_sent_as_nan_text() {
        let e = telemetry_event(
            "j",
            &Progress::Step {
                step: 4,
                epoch: 0,
                loss: f64::NAN,
                learning_rate: 0.1,
            },
        );
        assert_eq!(e["loss"], "NaN");
        let (job, point) = crate::ml::telemetry::parse_event(&e.to_string()).unwrap();
        assert_eq!((job.as_str(), point.step, point.loss), ("j", 4, None));
    }
}
