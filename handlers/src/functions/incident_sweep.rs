//! `incident-sweep` (timer, `%SOCWIRE_SWEEP_SCHEDULE%`, every 10 minutes by default): the
//! safety net when an incident-created event was missed. Lists the workspace's incidents
//! created or modified since its checkpoint (Sentinel list with a time `$filter`, every
//! `nextLink` followed) and queues a triage request for each open incident not yet triaged.
//!
//! Outputs first, state after: a run lists from the checkpoint *committed* by the run before
//! the previous one, and stores its own start as the next *candidate*; the candidate becomes
//! the committed checkpoint only when the next run starts. Every window is therefore listed by
//! two runs, so a run whose queued requests were lost (the host failed after it answered) is
//! covered by the next; duplicates are harmless (stable request ids, the triage ledger).

use super::{triaged_key, FunctionError, TriageRequest};
use crate::context::Context;
use crate::protocol::{InvocationRequest, InvocationResponse, TimerTrigger};
use crate::sentinel::IncidentId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use socwire_common::text::for_log;

/// Function name.
pub const NAME: &str = "incident-sweep";
/// The trigger binding, as `function-defs/` declares it.
pub const TRIGGER: super::Trigger = super::Trigger {
    binding: "timer",
    kind: "timerTrigger",
};
const OUTPUT: &str = "triage";
/// The state key of the checkpoint.
pub const CHECKPOINT_KEY: &str = "incident-sweep/checkpoint.json";
/// Listed from a little before the checkpoint: clocks and indexing lag differ.
const OVERLAP: chrono::Duration = chrono::Duration::minutes(5);

/// The sweep's checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    /// Listed from here (minus a small overlap).
    pub committed: Option<DateTime<Utc>>,
    /// Becomes `committed` when the next run starts.
    pub candidate: Option<DateTime<Utc>>,
}

/// Handles one timer tick.
pub async fn run(
    ctx: &Context,
    req: InvocationRequest,
) -> Result<InvocationResponse, FunctionError> {
    let _timer = TimerTrigger::from_request(&req, TRIGGER.binding)?;
    let mut response = InvocationResponse::default();
    let Some(workspace) = ctx.settings.sentinel.workspace.as_ref() else {
        response.log("no Sentinel workspace configured (SOCWIRE_SENTINEL_*): nothing to sweep");
        return Ok(response);
    };
    let started = Utc::now();
    let state: Checkpoint = match ctx.state.load(CHECKPOINT_KEY).await? {
        Some(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
        None => Checkpoint::default(),
    };
    let first_run =
        started - chrono::Duration::milliseconds(ctx.settings.sentinel.sweep_lookback_ms);
    let since = state.committed.unwrap_or(first_run) - OVERLAP;
    let max = ctx.settings.sentinel.sweep_max;
    let incidents = ctx
        .incidents
        .list_modified_since(workspace, since, max)
        .await?;
    let mut queued = Vec::new();
    let (mut closed, mut done, mut bad) = (0, 0, 0);
    let mut newest: Option<DateTime<Utc>> = None;
    for incident in &incidents {
        if let Some(t) = incident
            .properties
            .other
            .get("lastModifiedTimeUtc")
            .and_then(Value::as_str)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        {
            newest = newest.max(Some(t.with_timezone(&Utc)));
        }
        let id = match IncidentId::parse(&incident.id) {
            Ok(id) => id,
            Err(e) => {
                bad += 1;
                response.log(format!(
                    "skipped an incident with id {}: {e}",
                    for_log(&incident.id, 120)
                ));
                continue;
            }
        };
        if incident.properties.status.eq_ignore_ascii_case("Closed") {
            closed += 1;
            continue;
        }
        if ctx.ledger.get(&triaged_key(&id)).await?.is_some() {
            done += 1;
            continue;
        }
        let request = TriageRequest::new(id, NAME);
        queued.push(
            serde_json::to_value(&request).map_err(|e| FunctionError::Failed(e.to_string()))?,
        );
    }
    // A full page may have left incidents behind: the next candidate is the newest listed.
    let candidate = if incidents.len() >= max {
        newest.unwrap_or(started)
    } else {
        started
    };
    let next = Checkpoint {
        committed: state.candidate.or(state.committed).or(Some(first_run)),
        candidate: Some(candidate),
    };
    response.log(format!(
        "swept {} incident(s) modified since {}: {} queued, {done} already triaged, {closed} closed, {bad} bad",
        incidents.len(),
        since.to_rfc3339(),
        queued.len()
    ));
    if !queued.is_empty() {
        response.messages(OUTPUT, queued);
    }
    let bytes = serde_json::to_vec(&next).map_err(|e| FunctionError::Failed(e.to_string()))?;
    ctx.state.save(CHECKPOINT_KEY, &bytes).await?;
    Ok(response)
}
