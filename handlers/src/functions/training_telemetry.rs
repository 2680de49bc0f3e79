//! `training-telemetry` (Event Hubs trigger on `training-telemetry`, cardinality many, finite
//! retry policy): stores per-step metrics (loss, average precision, learning rate) per job and
//! watches for divergence — a non-finite loss, or evaluation loss rising over
//! `SOCWIRE_ML_DIVERGENCE_EVALS` evaluations in a row — which sends one `CancelJob`. Bad
//! events are set aside one by one; telemetry for unknown jobs is ignored with a log line;
//! repeated events (same job, kind and step) are dropped.

use super::reject::{RejectRecord, REJECTS_OUT};
use super::FunctionError;
use crate::context::Context;
use crate::ml::telemetry::{fold, metrics_key, parse_event, JobMetrics, Point};
use crate::protocol::{EventHubBatchTrigger, InvocationRequest, InvocationResponse};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Function name.
pub const NAME: &str = "training-telemetry";
/// The trigger binding, as `function-defs/` declares it.
pub const TRIGGER: super::Trigger = super::Trigger {
    binding: "events",
    kind: "eventHubTrigger",
};

/// Handles one batch.
pub async fn run(
    ctx: &Context,
    req: InvocationRequest,
) -> Result<InvocationResponse, FunctionError> {
    let t = EventHubBatchTrigger::from_request(&req, TRIGGER.binding)?;
    let seqs = t.metadata.sequence_number_array.0.clone();
    let mut rejects = Vec::new();
    let mut by_job: BTreeMap<String, Vec<Point>> = BTreeMap::new();
    for (i, body) in t.events.iter().enumerate() {
        match parse_event(body) {
            Ok((job, p)) => by_job.entry(job).or_default().push(p),
            Err(reason) => {
                let mut meta = serde_json::Map::new();
                if let Some(seq) = seqs.get(i) {
                    meta.insert("SequenceNumber".into(), json!(seq));
                }
                if let Some(pc) = req.metadata.get("PartitionContext") {
                    meta.insert("PartitionContext".into(), pc.clone());
                }
                let item = serde_json::from_str::<Value>(body)
                    .unwrap_or_else(|_| Value::String(body.clone()));
                rejects.push(
                    serde_json::to_value(RejectRecord::for_item(
                        NAME,
                        TRIGGER.binding,
                        &reason,
                        item,
                        meta,
                    ))
                    .unwrap_or_default(),
                );
            }
        }
    }
    let mut response = InvocationResponse::default();
    let (mut stored, mut ignored) = (0, 0);
    for (job_id, points) in by_job {
        let Some(job) = ctx.ml.get_job(&job_id).await? else {
            ignored += points.len();
            response.log(format!(
                "{} telemetry event(s) for unknown job {} ignored",
                points.len(),
                socwire_common::text::for_log(&job_id, 80)
            ));
            continue;
        };
        let key = metrics_key(&job_id);
        let mut m: JobMetrics = match ctx.state.load(&key).await? {
            Some(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
            None => JobMetrics::default(),
        };
        stored += fold(&mut m, points, ctx.settings.ml.divergence_evals);
        if let (Some(reason), false) = (&m.diverged, m.cancel_sent) {
            if !job.is_terminal() {
                crate::ml::cancel_diverged(ctx.commands.as_ref(), &job_id, reason).await?;
                response.log(format!("job {job_id} diverged ({reason}); sent CancelJob"));
            }
            m.cancel_sent = true;
        }
        ctx.state
            .save(&key, &serde_json::to_vec(&m).unwrap_or_default())
            .await?;
    }
    response.log(format!(
        "{} event(s): {stored} stored, {ignored} for unknown jobs, {} set aside",
        t.events.len(),
        rejects.len()
    ));
    if !rejects.is_empty() {
        response.messages(REJECTS_OUT, rejects);
    }
    Ok(response)
}
