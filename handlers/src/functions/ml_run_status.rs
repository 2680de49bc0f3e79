//! `ml-run-status` (Event Grid trigger on Azure ML's `Microsoft.MachineLearningServices.
//! RunStatusChanged`): Completed → an `ExportModel` command (stable MessageId = commandId);
//! Failed/Canceled → `socwire.FineTuneFailed` with the job's own error (run history in Azure,
//! the trainer's error locally) and, for a pipeline, its cluster scaled back. Events for runs
//! this workspace does not know, or did not start, are ignored with a log line.

use super::refuse;
use super::FunctionError;
use crate::context::Context;
use crate::ml::commands::{ExportModel, SCHEMA_VERSION};
use crate::ml::{event, scale_back_pipeline, send_command};
use crate::ports::JobInfo;
use crate::protocol::{EventGridTrigger, InvocationRequest, InvocationResponse};
use serde_json::{json, Value};

/// Function name.
pub const NAME: &str = "ml-run-status";
/// The trigger binding, as `function-defs/` declares it.
pub const TRIGGER: super::Trigger = super::Trigger {
    binding: "event",
    kind: "eventGridTrigger",
};
const EVENTS_OUT: &str = "events";

/// `runStatus` spelled as Azure ML's job API spells it (events have used lower case).
fn canonical(status: &str) -> String {
    let mut c = status.chars();
    match c.next() {
        Some(f) => {
            f.to_ascii_uppercase().to_string()
                + &c.as_str()
                    .to_ascii_lowercase()
                    .replace("requested", "Requested")
                    .replace("responding", "Responding")
                    .replace("started", "Started")
        }
        None => String::new(),
    }
}

/// Handles one event.
pub async fn run(
    ctx: &Context,
    req: InvocationRequest,
) -> Result<InvocationResponse, FunctionError> {
    let t = EventGridTrigger::from_request(&req, TRIGGER.binding)?;
    let mut response = InvocationResponse::default();
    let status = match t.event.event_type() {
        "Microsoft.MachineLearningServices.RunStatusChanged" => {
            let s = t
                .event
                .data()
                .get("runStatus")
                .and_then(Value::as_str)
                .unwrap_or_default();
            canonical(s)
        }
        "Microsoft.MachineLearningServices.RunCompleted" => "Completed".to_string(),
        other => {
            response.log(format!(
                "event type {} ignored",
                socwire_common::text::for_log(other, 80)
            ));
            return Ok(response);
        }
    };
    let run_id = t
        .event
        .data()
        .get("runId")
        .and_then(Value::as_str)
        .ok_or_else(|| refuse("RunStatusChanged event has no data.runId"))?;
    let Some(job) = ctx.ml.get_job(run_id).await? else {
        response.log(format!(
            "event for unknown run {} ignored",
            socwire_common::text::for_log(run_id, 80)
        ));
        return Ok(response);
    };
    let Some(command_id) = job.tags.get("commandId").cloned() else {
        response.log(format!("run {run_id} was not started by socwire; ignored"));
        return Ok(response);
    };
    let key = format!("ml:run:v1:{}:{status}", job.id);
    if let Some(done) = ctx.ledger.get(&key).await? {
        response.log(format!("run {} {status} already handled: {done}", job.id));
        return Ok(response);
    }
    match status.as_str() {
        "Completed" => export_on_completion(ctx, &job, &command_id, &mut response).await?,
        "Failed" | "Canceled" => {
            report_failure(ctx, &job, &command_id, &status, &mut response).await
        }
        other => {
            response.log(format!("run {} is {other}", job.id));
            return Ok(response);
        }
    }
    ctx.ledger.record(&key, &status).await?;
    Ok(response)
}

/// A completed run: send `ExportModel` for it unless its `autoExport` tag is off.
async fn export_on_completion(
    ctx: &Context,
    job: &JobInfo,
    command_id: &str,
    response: &mut InvocationResponse,
) -> Result<(), FunctionError> {
    if job.tags.get("autoExport").is_some_and(|v| v == "false") {
        response.log(format!("run {} completed; autoExport is off", job.id));
        return Ok(());
    }
    let export = ExportModel {
        command_id: format!("{command_id}:export"),
        schema_version: SCHEMA_VERSION,
        job_id: job.id.clone(),
        model_name: job.tags.get("model").cloned(),
    };
    send_command(
        ctx.commands.as_ref(),
        "ExportModel",
        export.command_id.clone(),
        serde_json::to_value(&export).unwrap_or_default(),
        None,
    )
    .await?;
    response.log(format!(
        "run {} completed; sent ExportModel {}",
        job.id, export.command_id
    ));
    Ok(())
}

/// A failed or cancelled run: `socwire.FineTuneFailed` with the reason, and the pipeline's
/// cluster scaled back.
async fn report_failure(
    ctx: &Context,
    job: &JobInfo,
    command_id: &str,
    status: &str,
    response: &mut InvocationResponse,
) {
    let reason = job
        .error
        .clone()
        .unwrap_or_else(|| format!("the job ended {status}"));
    response.messages(
        EVENTS_OUT,
        vec![event(
            "socwire.FineTuneFailed",
            &format!("ml/jobs/{}", job.id),
            &job.id,
            json!({ "jobId": job.id, "commandId": command_id, "status": status, "reason": reason }),
        )],
    );
    response.log(format!(
        "run {} {status}: {}",
        job.id,
        socwire_common::text::for_log(&reason, 200)
    ));
    if let Some(line) = scale_back_pipeline(
        ctx.ml.as_ref(),
        job.tags.get("parentCommandId").map(String::as_str),
        &job.cluster,
    )
    .await
    {
        response.log(line);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn statuses_are_canonical() {
        assert_eq!(super::canonical("failed"), "Failed");
        assert_eq!(super::canonical("Completed"), "Completed");
        assert_eq!(super::canonical("CANCELED"), "Canceled");
        assert_eq!(super::canonical("cancelrequested"), "CancelRequested");
    }
}
