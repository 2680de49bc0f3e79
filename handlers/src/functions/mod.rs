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
    /// An outside system failed; the port's error is kept as the cause. 503 when a retry may
    /// succeed ([`PortError::is_transient`]), else 500.
    #[error("{}", if .0.is_transient() { "retry later" } else { "failed" })]
    Port(#[from] PortError),
}

impl FunctionError {
    /// The HTTP status the handler answers with.
    pub fn status(&self) -> u16 {
        match self {
            FunctionError::BadInput(_) => 400,
            FunctionError::UnknownFunction(_) => 404,
            FunctionError::Retry(_) => 503,
            FunctionError::Failed(_) => 500,
            FunctionError::Port(e) if e.is_transient() => 503,
            FunctionError::Port(_) => 500,
        }
    }

    /// The error and its causes, outermost first, joined by ": " (for logs and the response
    /// body; `Display` alone says only the outermost). A cause its error already quotes (a
    /// store failure prints the store's error) is not repeated.
    pub fn report(&self) -> String {
        let mut out = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            let text = c.to_string();
            if !out.ends_with(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
            cause = c.source();
        }
        out
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

/// A function's trigger binding as its `function.json` declares it (direction `in`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trigger {
    /// The binding's `name`: the key of the trigger's data in an invocation.
    pub binding: &'static str,
    /// The binding's `type` (`queueTrigger`, `serviceBusTrigger`, …).
    pub kind: &'static str,
}

/// The trigger of the function named `name`, as each function module declares it.
pub fn trigger(name: &str) -> Option<Trigger> {
    Some(match name {
        alert_stream::NAME => alert_stream::TRIGGER,
        cancel_job::NAME => cancel_job::TRIGGER,
        export_model::NAME => export_model::TRIGGER,
        incident_created::NAME => incident_created::TRIGGER,
        incident_sweep::NAME => incident_sweep::TRIGGER,
        ml_run_status::NAME => ml_run_status::TRIGGER,
        ml_unrouted::NAME => ml_unrouted::TRIGGER,
        playbook_webhook::NAME => playbook_webhook::TRIGGER,
        provision_gpu_cluster::NAME => provision_gpu_cluster::TRIGGER,
        run_fine_tune::NAME => run_fine_tune::TRIGGER,
        training_telemetry::NAME => training_telemetry::TRIGGER,
        triage_incident::NAME => triage_incident::TRIGGER,
        _ => return None,
    })
}

/// Runs the function named `name`. An input the function refuses as [`FunctionError::BadInput`]
/// is acknowledged and set aside with its reason (see [`reject`]); every other failure is
/// returned, so the host retries it.
pub async fn dispatch(
    name: &str,
    ctx: &Context,
    req: InvocationRequest,
) -> Result<InvocationResponse, FunctionError> {
    // An HTTP caller is answered 400 with the reason instead of having its input set aside.
    let Some(Trigger { binding, .. }) = trigger(name).filter(|t| t.kind != "httpTrigger") else {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn through_question_mark(e: PortError) -> Result<(), FunctionError> {
        Err(e)?
    }

    /// Every function's trigger against its `function-defs/<name>/function.json`, and every
    /// folder there served by a function.
    #[test]
    fn each_trigger_is_the_one_function_defs_declares() {
        let defs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../function-defs");
        let mut folders: Vec<String> = std::fs::read_dir(&defs)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        folders.sort();
        let mut names: Vec<&str> = FUNCTION_NAMES.to_vec();
        names.sort();
        assert_eq!(folders, names);
        for name in FUNCTION_NAMES {
            let text = std::fs::read_to_string(defs.join(name).join("function.json")).unwrap();
            let json: serde_json::Value = serde_json::from_str(&text).unwrap();
            let declared: Vec<_> = json["bindings"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|b| b["type"].as_str().unwrap().ends_with("Trigger"))
                .collect();
            assert_eq!(declared.len(), 1, "{name}: one trigger");
            let t = trigger(name).unwrap();
            assert_eq!(declared[0]["name"], t.binding, "{name}");
            assert_eq!(declared[0]["type"], t.kind, "{name}");
            assert_eq!(declared[0]["direction"], "in", "{name}");
        }
        assert!(trigger("no-such-function").is_none());
    }

    #[test]
    fn a_port_failure_keeps_its_cause_and_its_retry_meaning() {
        let e = through_question_mark(PortError::Transient("HTTP 429 from Sentinel".into()))
            .unwrap_err();
        assert_eq!(e.status(), 503);
        let cause = std::error::Error::source(&e).expect("the port error is the source");
        assert_eq!(
            cause.to_string(),
            "transient failure: HTTP 429 from Sentinel"
        );
        assert_eq!(
            e.report(),
            "retry later: transient failure: HTTP 429 from Sentinel"
        );
        let e = through_question_mark(PortError::Permanent("403 Forbidden".into())).unwrap_err();
        assert_eq!(
            (e.status(), e.report().as_str()),
            (500, "failed: 403 Forbidden")
        );
        let e = through_question_mark(PortError::Conflict("etag".into())).unwrap_err();
        assert_eq!(
            e.status(),
            503,
            "a lost optimistic-concurrency race is retried"
        );
    }

    #[test]
    fn a_store_failure_keeps_the_store_error_as_its_source() {
        // A real SQLite failure: a table that does not exist.
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let failure = conn.execute("DELETE FROM missing", []).unwrap_err();
        let text = failure.to_string();
        let e = through_question_mark(PortError::sqlite(failure)).unwrap_err();
        assert_eq!(
            e.status(),
            500,
            "not busy or locked: retrying will not help"
        );
        let port = std::error::Error::source(&e).unwrap();
        let store = port.source().expect("the SQLite error is kept");
        assert!(store.downcast_ref::<rusqlite::Error>().is_some());
        // The chain goes on into SQLite's own code; the message itself is said once.
        let report = e.report();
        assert!(
            report.starts_with(&format!("failed: sqlite: {text}")),
            "{report}"
        );
        assert_eq!(report.matches(text.as_str()).count(), 1, "{report}");

        // A busy database may pass on a retry; a file error too.
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        assert!(PortError::sqlite(busy).is_transient());
        let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
        let e = PortError::file("job 7's log", missing);
        assert!(e.is_transient());
        assert!(e.to_string().starts_with("job 7's log: "));
        assert_eq!(e.permanent_reason(), None);
    }
}
