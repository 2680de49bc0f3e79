//! The GPU model lifecycle: command schemas, asset staging, the Azure ML job command, the
//! local job runner, telemetry records and the helpers the ML functions share (events,
//! follow-ups, ids). It depends on the ports and the trainer, never on [`crate::functions`]:
//! the ML functions use this module, not the other way round.

pub mod commands;
pub mod container;
pub mod job;
pub mod runner;
pub mod staging;
pub mod telemetry;

use crate::ids::stable_id;
use crate::ports::{CommandBus, MlWorkspace, OutgoingCommand, PortResult};
use serde_json::{json, Value};

/// Event Grid topic the local back end publishes Azure ML's run events to (Azure ML publishes
/// them from the workspace; infra/eventgrid-subscriptions.json subscribes `ml-run-status`).
pub const AZUREML_EVENTS_TOPIC: &str = "azureml-events";
/// Event Hub of per-step training metrics.
pub const TELEMETRY_HUB: &str = "training-telemetry";

/// Now, unix ms.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A `socwire.*` Event Grid event whose id is stable for `key`, so a repeat is recognisable.
pub fn event(event_type: &str, subject: &str, key: &str, data: Value) -> Value {
    json!({
        "id": stable_id(event_type, key),
        "subject": subject,
        "eventType": event_type,
        "eventTime": chrono::Utc::now().to_rfc3339(),
        "dataVersion": "1.0",
        "data": data,
    })
}

/// The Azure ML job name for a `RunFineTune` command id.
pub fn job_id_for(command_id: &str) -> String {
    let id = stable_id("ml-job", command_id).replace('-', "");
    format!("socwire-ft-{}", &id[..16])
}

/// The model version an export of `job_id` registers (stable, so a repeat overwrites).
pub fn model_version_for(job_id: &str) -> String {
    stable_id("model-version", job_id).replace('-', "")[..10].to_string()
}

/// Sends a command on `ml-commands` now or at `not_before_ms`.
pub async fn send_command(
    bus: &dyn CommandBus,
    subject: &str,
    message_id: String,
    body: Value,
    not_before_ms: Option<i64>,
) -> PortResult<()> {
    bus.send(&OutgoingCommand {
        subject: subject.into(),
        message_id,
        body,
        not_before_ms,
    })
    .await
}

/// Sends the `CancelJob` for a job whose training diverged (`reason`). Its command id is
/// derived from the job's, so a repeat is the same message and the bus drops it.
pub async fn cancel_diverged(bus: &dyn CommandBus, job_id: &str, reason: &str) -> PortResult<()> {
    let cancel = commands::CancelJob {
        command_id: format!("{job_id}:diverged"),
        schema_version: commands::SCHEMA_VERSION,
        job_id: job_id.to_string(),
        reason: Some(format!("training diverged: {reason}")),
    };
    send_command(
        bus,
        "CancelJob",
        cancel.command_id.clone(),
        serde_json::to_value(&cancel).unwrap_or_default(),
        None,
    )
    .await
}

/// After a pipeline's fine-tune was refused or failed, sets the cluster the pipeline provisioned
/// back to 0 minimum nodes, so no GPU node stays up for it. Only pipeline runs (those with a
/// parent `ProvisionGpuCluster`) touch the cluster; a failure to scale back is logged, never
/// hides the refusal it follows. Returns a log line.
pub async fn scale_back_pipeline(
    ml: &dyn MlWorkspace,
    parent_command: Option<&str>,
    cluster: &str,
) -> Option<String> {
    parent_command?;
    Some(match ml.scale_back(cluster).await {
        Ok(()) => format!("cluster {cluster} scaled back to 0 minimum nodes"),
        Err(e) => format!("cluster {cluster} could not be scaled back: {e}"),
    })
}
