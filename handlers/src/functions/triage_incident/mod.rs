//! `triage-incident` (Storage Queue trigger on `triage-requests`): reads the incident, its
//! entities and alerts, checks every indicator against threat intelligence, asks the workspace
//! typed questions about the hosts, accounts, addresses and domains it names, and decides.
//!
//! Order of effects (docs/decisions/0008-triage-in-depth.md):
//! 1. assess the incident as first read, write the report (a blob under a name derived from
//!    the incident: rewriting it is harmless and nobody sees it until the comment links it);
//! 2. record the [`Decision`] in the ledger (`triage:decision:v1:{incident}`, first writer
//!    wins) — before any effect in Sentinel;
//! 3. complete the effects from the recorded decision: severity/status through the etag of a
//!    fresh read, only when the incident is still as first read (an analyst's newer severity
//!    or status is kept, and the comment says so), then the comment under its derived id;
//! 4. record the outcome (`triage:v1:{incident}`) and emit `socwire.IncidentTriaged` with a
//!    derived id and the decision's time.
//!
//! A redelivery after a partial failure finds the decision and completes what is missing; it
//! never re-assesses an incident it has already changed.
//!
//! `evidence` gathers the findings (entities with their links resolved, indicators found in
//! free text, threat intelligence screened and within quota, the workspace's answers),
//! `decision` assesses them (by default with the Sentinel triage notebook's rule), `report`
//! renders the report and the comment, and `effects` applies the decision in Sentinel.

mod decision;
mod effects;
mod evidence;
mod report;

pub use decision::{
    assess, decision_key, recorded_decision, Decision, Finding, ReadStamp, TriageRule,
};
pub use evidence::{
    domain_checks, entropy, DOMAIN_ENTROPY_RANGE, MAX_TEXT_BYTES, MAX_TEXT_INDICATORS,
};

use super::{stable_id, triaged_key, FunctionError, TriageRequest};
use crate::context::Context;
use crate::protocol::{InvocationRequest, InvocationResponse, QueueTrigger};
use crate::sentinel::IncidentId;
use effects::{apply, event};
use evidence::gather;
use report::render_report;
use socwire_common::text::for_log;

/// Function name.
pub const NAME: &str = "triage-incident";
/// The trigger binding, as `function-defs/` declares it.
pub const TRIGGER: super::Trigger = super::Trigger {
    binding: "request",
    kind: "queueTrigger",
};
const EVENTS_OUT: &str = "events";
/// Most entities read per incident; the rest are counted in the verdict's reasons.
pub const MAX_ENTITIES: usize = 500;
/// Most indicators looked up per incident; the rest are named in the report as not checked.
pub const MAX_INDICATORS: usize = 200;
/// Most workspace subjects (hosts, accounts, addresses, domains) asked about per incident.
pub const MAX_SUBJECTS: usize = 20;
/// Comment length bound (Sentinel's limit is about 30,000 characters).
pub const MAX_COMMENT_CHARS: usize = 30_000;

/// Handles one triage request.
pub async fn run(
    ctx: &Context,
    req: InvocationRequest,
) -> Result<InvocationResponse, FunctionError> {
    let trigger = QueueTrigger::from_request(&req, TRIGGER.binding)?;
    let request =
        TriageRequest::parse_with(&trigger.message, ctx.settings.sentinel.workspace.as_ref())?;
    let id = &request.incident_id;
    let key = triaged_key(id);
    let mut response = InvocationResponse::default();
    let recorded = recorded_decision(ctx.ledger.as_ref(), id).await?;
    if let Some(detail) = ctx.ledger.get(&key).await? {
        response.log(format!(
            "incident {} already triaged: {}",
            id.name(),
            for_log(&detail, 200)
        ));
        // Re-emit the event (same id): a host that failed to send it the first time gets another try.
        if let Some(decision) = recorded {
            response.messages(EVENTS_OUT, vec![event(id, &decision, &detail)]);
        }
        return Ok(response);
    }
    let decision = match recorded {
        Some(d) => {
            response.log(format!(
                "incident {}: completing the recorded decision",
                id.name()
            ));
            d
        }
        None => decide(ctx, id).await?,
    };
    let outcome = apply(ctx, id, &decision).await?;
    ctx.ledger.record(&key, &outcome).await?;
    response.log(format!(
        "incident {}: {}",
        id.name(),
        for_log(&outcome, 300)
    ));
    response.messages(EVENTS_OUT, vec![event(id, &decision, &outcome)]);
    Ok(response)
}

/// Reads, assesses, writes the report and records the decision (or adopts the one another
/// delivery recorded first).
async fn decide(ctx: &Context, id: &IncidentId) -> Result<Decision, FunctionError> {
    let incident = ctx.incidents.get(id).await?;
    let g = gather(ctx, id, &incident).await?;
    let (verdict, significant, target_severity, target_status, mut reasons) = assess(
        ctx.settings.sentinel.triage_rule,
        &incident,
        &g.indicators,
        &g.ti,
        &g.findings,
    );
    reasons.extend(g.notes.iter().cloned());
    let mut decision = Decision {
        schema: "socwire.triage-decision.v1".into(),
        incident_id: id.arm_id().to_string(),
        incident_number: incident.properties.incident_number,
        read: ReadStamp::of(&incident),
        verdict,
        significant,
        target_severity,
        target_status,
        reasons,
        findings: g.findings.clone(),
        comment_id: stable_id("triage-comment", &id.key()),
        report_name: format!("triage/{}.html", stable_id("triage-report", &id.key())),
        report_url: None,
        event_id: stable_id("incident-triaged", &id.key()),
        decided_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    };
    if significant {
        let html = render_report(&incident, &g, &decision);
        decision.report_url = Some(ctx.reports.put_html(&decision.report_name, &html).await?);
    }
    let text =
        serde_json::to_string(&decision).map_err(|e| FunctionError::Failed(e.to_string()))?;
    if ctx.ledger.record(&decision_key(id), &text).await? {
        Ok(decision)
    } else {
        recorded_decision(ctx.ledger.as_ref(), id)
            .await?
            .ok_or_else(|| FunctionError::Retry("decision recorded but not readable yet".into()))
    }
}

/// The incident a queue message names, for logs and the local host's summary.
pub fn incident_of(message: &str) -> Option<IncidentId> {
    TriageRequest::parse(message).ok().map(|r| r.incident_id)
}
