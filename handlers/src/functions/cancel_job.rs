//! `cancel-job` (Service Bus trigger, Subject `CancelJob`): asks the workspace to stop a job.
//! Cancelling is idempotent at the service, so no ledger entry is needed; an unknown job is set
//! aside with the reason, a finished one is left alone with a log line. The job's own
//! `RunStatusChanged` (Canceled) event then produces `socwire.FineTuneFailed`.

use super::refuse;
use super::FunctionError;
use crate::context::Context;
use crate::ml::commands::{expect_subject, CancelJob};
use crate::protocol::{InvocationRequest, InvocationResponse, ServiceBusTrigger};

/// Function name.
pub const NAME: &str = "cancel-job";
/// The trigger binding, as `function-defs/` declares it.
pub const TRIGGER: super::Trigger = super::Trigger {
    binding: "command",
    kind: "serviceBusTrigger",
};

/// Handles one CancelJob.
pub async fn run(
    ctx: &Context,
    req: InvocationRequest,
) -> Result<InvocationResponse, FunctionError> {
    let t = ServiceBusTrigger::from_request(&req, TRIGGER.binding)?;
    expect_subject("CancelJob", t.metadata.subject.as_deref()).map_err(refuse)?;
    let cmd = CancelJob::parse(&t.body).map_err(refuse)?;
    let Some(job) = ctx.ml.get_job(&cmd.job_id).await? else {
        return Err(refuse(format!(
            "CancelJob: job {} does not exist in this workspace",
            cmd.job_id
        )));
    };
    let mut response = InvocationResponse::default();
    if job.is_terminal() {
        response.log(format!(
            "job {} already {}; nothing to cancel",
            job.id, job.status
        ));
        return Ok(response);
    }
    ctx.ml.cancel_job(&job.id).await?;
    response.log(format!(
        "job {} cancel requested: {}",
        job.id,
        socwire_common::text::for_log(cmd.reason.as_deref().unwrap_or("no reason given"), 200)
    ));
    Ok(response)
}
