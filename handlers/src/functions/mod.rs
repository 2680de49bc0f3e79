//! One module per function. Each reads its typed trigger, decides, calls ports and returns
//! outputs; none of them knows about HTTP servers, brokers or SQL.

pub mod alert_stream;
pub mod cancel_job;
pub mod export_model;
pub mod incident_created;
pub mod incident_sweep;
pub mod ml_run_status;
pub mod ml_unrouted;
pub mod playbook_webhook;
pub mod provision_gpu_cluster;
pub mod reject;
pub mod run_fine_tune;
pub mod training_telemetry;
pub mod triage_incident;

use crate::context::Context;
pub use crate::ids::stable_id;
use crate::ports::PortError;
use crate::protocol::{InvocationRequest, InvocationResponse, ProtocolError};
use serde::{Deserialize, Serialize};

/// Every function this handler serves, by the name the host POSTs to.
pub const FUNCTION_NAMES: &[&str] = &[
    alert_stream::NAME,
    cancel_job::NAME,
    export_model::NAME,
    incident_created::NAME,
    incident_sweep::NAME,
    ml_run_status::NAME,
    ml_unrouted::NAME,
    playbook_webhook::NAME,
    provision_gpu_cluster::NAME,
    run_fine_tune::NAME,
    training_telemetry::NAME,
    triage_incident::NAME,
];

/// Why an invocation failed. The real host reads only success or failure from the status
/// (any non-2xx is a failure and is retried under the trigger's rules); the code and body are
/// for people reading logs.
#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    /// The input can never succeed. [`dispatch`] acknowledges it and sets it aside through the
    /// `rejects` output binding ([`reject`]); only input that is not even an invocation
    /// envelope reaches the host as a failure (400).
    #[error("bad input: {0}")]
    BadInput(String),
    /// Worth retrying: 503.
    #[error("retry later: {0}")]
    Retry(String),
    /// Anything else: 500.
    #[error("failed: {0}")]
    Failed(String),
    /// The host POSTed to a name this handler does not serve: 404.
    #[error("unknown function {0:?}; this handler serves: {names}", names = FUNCTION_NAMES.join(", "))]
    UnknownFunction(String),
}

impl FunctionError {
    /// The HTTP status the handler answers with.
    pub fn status(&self) -> u16 {
        match self {
            FunctionError::BadInput(_) => 400,
            FunctionError::UnknownFunction(_) => 404,
            FunctionError::Retry(_) => 503,
            FunctionError::Failed(_) => 500,
        }
    }
}

/// A permanent refusal: the input can never succeed (it is set aside with `reason`).
pub fn refuse(reason: impl Into<String>) -> FunctionError {
    FunctionError::BadInput(reason.into())
}

impl From<ProtocolError> for FunctionError {
    fn from(e: ProtocolError) -> Self {
        FunctionError::BadInput(e.to_string())
    }
}

impl From<PortError> for FunctionError {
    fn from(e: PortError) -> Self {
        if e.is_transient() {
            FunctionError::Retry(e.to_string())
        } else {
            FunctionError::Failed(e.to_string())
        }
    }
}

/// The trigger binding of each function that sets bad input aside (every non-HTTP function:
/// an HTTP caller is answered 400 with the reason instead).
fn trigger_binding(name: &str) -> Option<&'static str> {
    match name {
        alert_stream::NAME => Some("events"),
        incident_created::NAME => Some("event"),
        incident_sweep::NAME => Some("timer"),
        triage_incident::NAME => Some("request"),
        provision_gpu_cluster::NAME
        | run_fine_tune::NAME
        | export_model::NAME
        | cancel_job::NAME
        | ml_unrouted::NAME => Some("command"),
        ml_run_status::NAME => Some("event"),
        training_telemetry::NAME => Some("events"),
        _ => None,
    }
}

/// Runs the function named `name`. An input the function refuses as [`FunctionError::BadInput`]
/// is acknowledged and set aside with its reason (see [`reject`]); every other failure is
/// returned, so the host retries it.
pub async fn dispatch(
    name: &str,
    ctx: &Context,
    req: InvocationRequest,
) -> Result<InvocationResponse, FunctionError> {
    let Some(binding) = trigger_binding(name) else {
        return run(name, ctx, req).await;
    };
    let kept = req.clone();
    match run(name, ctx, req).await {
        Err(FunctionError::BadInput(reason)) => {
            Ok(reject::RejectRecord::new(name, binding, &reason, &kept).into_response())
        }
        other => other,
    }
}

async fn run(
    name: &str,
    ctx: &Context,
    req: InvocationRequest,
) -> Result<InvocationResponse, FunctionError> {
    match name {
        alert_stream::NAME => alert_stream::run(ctx, req).await,
        incident_created::NAME => incident_created::run(ctx, req).await,
        incident_sweep::NAME => incident_sweep::run(ctx, req).await,
        playbook_webhook::NAME => playbook_webhook::run(ctx, req).await,
        triage_incident::NAME => triage_incident::run(ctx, req).await,
        provision_gpu_cluster::NAME => provision_gpu_cluster::run(ctx, req).await,
        run_fine_tune::NAME => run_fine_tune::run(ctx, req).await,
        ml_run_status::NAME => ml_run_status::run(ctx, req).await,
        training_telemetry::NAME => training_telemetry::run(ctx, req).await,
        export_model::NAME => export_model::run(ctx, req).await,
        cancel_job::NAME => cancel_job::run(ctx, req).await,
        ml_unrouted::NAME => ml_unrouted::run(ctx, req).await,
        other => Err(FunctionError::UnknownFunction(
            other.chars().take(64).collect(),
        )),
    }
}

/// The message on the `triage-requests` queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TriageRequest {
    /// The incident's ARM id.
    pub incident_id: crate::sentinel::IncidentId,
    /// Stable per incident, so copies of the same request are recognisable.
    pub request_id: String,
    /// Which function produced it.
    pub source: String,
}

impl TriageRequest {
    /// A request for `incident_id` from `source`.
    pub fn new(incident_id: crate::sentinel::IncidentId, source: &str) -> Self {
        let request_id = stable_id("triage-request", &incident_id.key());
        Self {
            incident_id,
            request_id,
            source: source.to_string(),
        }
    }

    /// Parses a queue message: our JSON shape, or a bare incident ARM id as a Logic App
    /// "Put a message on a queue" action writes it.
    pub fn parse(message: &str) -> Result<Self, FunctionError> {
        Self::parse_with(message, None)
    }

    /// As [`TriageRequest::parse`], also accepting a bare incident GUID when the Sentinel
    /// workspace is configured.
    pub fn parse_with(
        message: &str,
        workspace: Option<&crate::sentinel::WorkspaceRef>,
    ) -> Result<Self, FunctionError> {
        let text = message.trim();
        if text.starts_with('{') {
            return serde_json::from_str(text)
                .map_err(|e| FunctionError::BadInput(format!("triage request is not valid: {e}")));
        }
        let id = crate::sentinel::IncidentId::parse_or_guid(text, workspace)
            .map_err(|e| FunctionError::BadInput(format!("triage request: {e}")))?;
        Ok(Self::new(id, "plain-text"))
    }
}

/// The ledger key that marks an incident as triaged.
pub fn triaged_key(incident: &crate::sentinel::IncidentId) -> String {
    format!("triage:v1:{}", incident.key())
}
