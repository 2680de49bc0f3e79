//! `incident-created` (Event Grid trigger): a Sentinel playbook publishes the incident trigger
//! body to a custom topic (subject = incident ARM id, `data` = the trigger body of the Logic Apps Sentinel incident trigger);
//! this puts one triage request for the incident on the `triage-requests` queue.

use super::{triaged_key, FunctionError, TriageRequest};
use crate::context::Context;
use crate::protocol::{EventGridTrigger, GridEvent, InvocationRequest, InvocationResponse};
use crate::sentinel::IncidentId;
use serde_json::Value;

/// Function name (folder under `function-defs/`).
pub const NAME: &str = "incident-created";
/// The trigger binding, as `function-defs/` declares it.
pub const TRIGGER: super::Trigger = super::Trigger {
    binding: "event",
    kind: "eventGridTrigger",
};
const OUTPUT: &str = "triage";

/// Handles one event.
pub async fn run(
    ctx: &Context,
    req: InvocationRequest,
) -> Result<InvocationResponse, FunctionError> {
    let trigger = EventGridTrigger::from_request(&req, TRIGGER.binding)?;
    let incident = incident_of(&trigger.event)?;
    let mut response = InvocationResponse::default();
    if let Some(detail) = ctx.ledger.get(&triaged_key(&incident)).await? {
        response.log(format!(
            "incident {} already triaged ({detail}); no request queued",
            incident.name()
        ));
        return Ok(response);
    }
    let request = TriageRequest::new(incident, NAME);
    response.log(format!(
        "triage requested for incident {} (event {:?})",
        request.incident_id.name(),
        trigger.event.id()
    ));
    let message =
        serde_json::to_value(&request).map_err(|e| FunctionError::Failed(e.to_string()))?;
    response.messages(OUTPUT, vec![message]);
    Ok(response)
}

/// The incident an event is about: `data.object.id` of the Sentinel trigger body, else the
/// subject. When both are present they must name the same incident.
pub fn incident_of(event: &GridEvent) -> Result<IncidentId, FunctionError> {
    let data = event.data();
    if let Some(kind) = data.get("objectSchemaType").and_then(Value::as_str) {
        if !kind.eq_ignore_ascii_case("Incident") {
            return Err(FunctionError::BadInput(format!(
                "event {:?} carries a {:?}, not an Incident",
                event.id(),
                truncate(kind)
            )));
        }
    }
    let from_data = data
        .pointer("/object/id")
        .and_then(Value::as_str)
        .map(|id| {
            IncidentId::parse(id)
                .map_err(|e| FunctionError::BadInput(format!("data.object.id: {e}")))
        })
        .transpose()?;
    let from_subject = event
        .subject()
        .filter(|s| s.to_ascii_lowercase().contains("/incidents/"))
        .map(|s| IncidentId::parse(s).map_err(|e| FunctionError::BadInput(format!("subject: {e}"))))
        .transpose()?;
    match (from_data, from_subject) {
        (Some(a), Some(b)) if a.key() != b.key() => Err(FunctionError::BadInput(format!(
            "subject names incident {:?} but data.object.id names {:?}",
            b.name(),
            a.name()
        ))),
        (Some(id), _) | (None, Some(id)) => Ok(id),
        (None, None) => Err(FunctionError::BadInput(format!(
            "event {:?} names no incident: expected data.object.id or an incident ARM id as subject",
            truncate(event.id())
        ))),
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(80).collect()
}
