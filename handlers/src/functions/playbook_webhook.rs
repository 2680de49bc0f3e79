//! `playbook-webhook` (HTTP trigger, function key): a Logic App playbook's HTTP action posts the
//! incident (its ARM id, or the whole incident trigger body) and gets 202 when a triage request
//! is queued.

use super::{triaged_key, FunctionError, TriageRequest};
use crate::context::Context;
use crate::protocol::{HttpResponseData, HttpTrigger, InvocationRequest, InvocationResponse};
use crate::sentinel::IncidentId;
use serde_json::{json, Value};

/// Function name.
pub const NAME: &str = "playbook-webhook";
/// The trigger binding, as `function-defs/` declares it.
pub const TRIGGER: super::Trigger = super::Trigger {
    binding: "req",
    kind: "httpTrigger",
};
const HTTP_OUT: &str = "res";
const OUTPUT: &str = "triage";
/// Largest body accepted, bytes; an incident trigger body with alerts and entities fits well.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Handles one request. Bad requests get a 400 answer (the caller sees why); the invocation
/// itself succeeds so the host does not retry a request that can never work.
pub async fn run(
    ctx: &Context,
    req: InvocationRequest,
) -> Result<InvocationResponse, FunctionError> {
    let trigger = HttpTrigger::from_request(&req, TRIGGER.binding)?;
    let mut response = InvocationResponse::default();
    let incident = match incident_of(trigger.request.body.as_deref()) {
        Ok(id) => id,
        Err(reason) => {
            response.log(format!("rejected webhook call: {reason}"));
            response.http(
                HTTP_OUT,
                HttpResponseData::json(400, json!({ "error": reason })),
            );
            return Ok(response);
        }
    };
    if let Some(detail) = ctx.ledger.get(&triaged_key(&incident)).await? {
        response.http(
            HTTP_OUT,
            HttpResponseData::json(200, json!({ "status": "already-triaged", "incidentId": incident.arm_id(), "detail": detail })),
        );
        return Ok(response);
    }
    let request = TriageRequest::new(incident, NAME);
    response.http(
        HTTP_OUT,
        HttpResponseData::json(
            202,
            json!({ "status": "queued", "incidentId": request.incident_id.arm_id(), "requestId": request.request_id }),
        ),
    );
    response.log(format!(
        "triage requested for incident {} by webhook",
        request.incident_id.name()
    ));
    let message =
        serde_json::to_value(&request).map_err(|e| FunctionError::Failed(e.to_string()))?;
    response.messages(OUTPUT, vec![message]);
    Ok(response)
}

/// Accepts `{"incidentArmId": "…"}`, `{"incidentId": "…"}`, the Sentinel incident trigger body
/// (`object.id`), or the bare ARM id as text.
fn incident_of(body: Option<&str>) -> Result<IncidentId, String> {
    let body = body
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .ok_or("empty body: post the incident ARM id")?;
    if body.len() > MAX_BODY_BYTES {
        return Err(format!(
            "body is {} bytes, over the {MAX_BODY_BYTES}-byte limit",
            body.len()
        ));
    }
    if !body.starts_with('{') {
        return IncidentId::parse(body.trim_matches('"')).map_err(|e| e.to_string());
    }
    let value: Value =
        serde_json::from_str(body).map_err(|e| format!("body is not valid JSON: {e}"))?;
    let id = ["/incidentArmId", "/incidentId", "/object/id"]
        .iter()
        .find_map(|p| value.pointer(p).and_then(Value::as_str))
        .ok_or("body names no incident: send incidentArmId, or the incident trigger body")?;
    IncidentId::parse(id).map_err(|e| e.to_string())
}
