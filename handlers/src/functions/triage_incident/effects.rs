//! The decision's effects in Sentinel (severity and status through the etag of a fresh read,
//! unless an analyst changed the incident since it was first read; then the comment) and the
//! `socwire.IncidentTriaged` event.

use super::decision::verdict_name;
use super::report::render_comment;
use super::{Decision, ReadStamp};
use crate::context::Context;
use crate::functions::FunctionError;
use crate::ports::PortError;
use crate::sentinel::IncidentId;
use serde_json::{json, Value};
use socwire_common::text::for_log;

/// Attempts at the severity update when the incident keeps changing under us.
const UPDATE_TRIES: usize = 4;

/// Completes the decision's effects; returns the outcome in words.
pub(super) async fn apply(
    ctx: &Context,
    id: &IncidentId,
    d: &Decision,
) -> Result<String, FunctionError> {
    if !d.significant {
        return Ok(format!(
            "verdict {}: no action ({})",
            verdict_name(d.verdict),
            d.reasons.join("; ")
        ));
    }
    let mut kept: Option<ReadStamp> = None;
    if d.target_severity.is_some() || d.target_status.is_some() {
        let mut tries = 0;
        loop {
            tries += 1;
            let mut current = ctx.incidents.get(id).await?;
            let now = ReadStamp::of(&current);
            let done = d.target_severity.is_none_or(|s| s == now.severity)
                && d.target_status
                    .as_ref()
                    .is_none_or(|s| s.eq_ignore_ascii_case(&now.status));
            if done {
                break;
            }
            let unchanged = now == d.read;
            if !unchanged {
                kept = Some(now);
                break;
            }
            if let Some(s) = d.target_severity {
                current.properties.severity = s;
            }
            if let Some(s) = &d.target_status {
                current.properties.status = s.clone();
            }
            match ctx.incidents.update(id, &current).await {
                Ok(()) => break,
                Err(PortError::Conflict(_)) if tries < UPDATE_TRIES => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
    let comment = render_comment(d, kept.as_ref());
    ctx.incidents
        .put_comment(id, &d.comment_id, &comment)
        .await?;
    Ok(match kept {
        Some(k) => format!(
            "verdict {}: commented; analyst's change kept (severity {}, status {})",
            verdict_name(d.verdict),
            k.severity,
            for_log(&k.status, 20)
        ),
        None => format!(
            "verdict {}: {}, commented",
            verdict_name(d.verdict),
            d.action()
        ),
    })
}

/// The `socwire.IncidentTriaged` event of a decision, with its outcome.
pub(super) fn event(id: &IncidentId, d: &Decision, outcome: &str) -> Value {
    json!({
        "id": d.event_id,
        "subject": id.arm_id(),
        "eventType": "socwire.IncidentTriaged",
        "eventTime": d.decided_at,
        "dataVersion": "2.0",
        "data": {
            "incidentId": id.arm_id(),
            "previousSeverity": d.read.severity,
            "newSeverity": d.target_severity,
            "newStatus": d.target_status,
            "verdict": verdict_name(d.verdict),
            "significant": d.significant,
            "reasons": d.reasons,
            "findings": d.findings.len(),
            "outcome": outcome,
            "commentId": d.significant.then_some(&d.comment_id),
            "reportUrl": d.report_url,
        }
    })
}
