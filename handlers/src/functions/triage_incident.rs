//! `triage-incident` (Storage Queue trigger on `triage-requests`): reads the incident and its
//! entities, checks every indicator against threat intelligence and, only when the findings
//! matter, raises or lowers the severity and adds one comment linking a triage report. Exactly
//! once per incident: the comment id is derived from the incident, and the ledger records the
//! outcome, so a redelivered request changes nothing.

use super::{stable_id, triaged_key, FunctionError, TriageRequest};
use crate::context::Context;
use crate::ports::{TiFinding, TiSeverity};
use crate::protocol::{InvocationRequest, InvocationResponse, QueueTrigger};
use crate::sentinel::{Incident, IncidentId, Indicator, Severity};
use serde_json::json;
use std::collections::BTreeSet;

/// Function name.
pub const NAME: &str = "triage-incident";
const TRIGGER: &str = "request";
const EVENTS_OUT: &str = "events";
/// Most indicators looked up per incident; the rest are named in the report as not checked.
pub const MAX_INDICATORS: usize = 200;
/// Comment length bound (Sentinel's limit is about 30,000 characters).
pub const MAX_COMMENT_CHARS: usize = 30_000;
const MAX_FINDINGS_IN_COMMENT: usize = 10;

/// What triage decided for an incident.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// The strongest verdict among the findings (Benign when every indicator is allow-listed).
    pub verdict: Option<TiSeverity>,
    /// The severity to set, when it should change.
    pub new_severity: Option<Severity>,
    /// Whether the findings matter enough to comment.
    pub significant: bool,
}

/// Decides from the findings. High → severity High; Warning → at least Medium; every indicator
/// allow-listed → lowered to Low. Anything else leaves the incident alone. Closed incidents are
/// never touched.
pub fn assess(incident: &Incident, indicators: &[Indicator], findings: &[TiFinding]) -> Assessment {
    let current = incident.properties.severity;
    let worst = findings
        .iter()
        .map(|f| f.severity)
        .filter(|s| *s != TiSeverity::Benign)
        .max();
    let all_benign = !indicators.is_empty()
        && indicators.iter().all(|i| {
            findings
                .iter()
                .any(|f| &f.indicator == i && f.severity == TiSeverity::Benign)
        });
    let verdict = worst.or(all_benign.then_some(TiSeverity::Benign));
    if incident.properties.status.eq_ignore_ascii_case("Closed") {
        return Assessment {
            verdict,
            new_severity: None,
            significant: false,
        };
    }
    let target = match verdict {
        Some(TiSeverity::High) => Some(Severity::High),
        Some(TiSeverity::Warning) => Some(current.max(Severity::Medium)),
        Some(TiSeverity::Benign) if current > Severity::Low => Some(Severity::Low),
        _ => None,
    };
    let significant = matches!(verdict, Some(TiSeverity::High | TiSeverity::Warning))
        || (verdict == Some(TiSeverity::Benign) && target.is_some());
    Assessment {
        verdict,
        new_severity: target.filter(|t| *t != current),
        significant,
    }
}

/// Handles one triage request.
pub async fn run(
    ctx: &Context,
    req: InvocationRequest,
) -> Result<InvocationResponse, FunctionError> {
    let trigger = QueueTrigger::from_request(&req, TRIGGER)?;
    let request = TriageRequest::parse(&trigger.message)?;
    let id = &request.incident_id;
    let key = triaged_key(id);
    let mut response = InvocationResponse::default();
    if let Some(detail) = ctx.ledger.get(&key).await? {
        response.log(format!("incident {} already triaged: {detail}", id.name()));
        return Ok(response);
    }
    let incident = ctx.incidents.get(id).await?;
    let entities = ctx.incidents.entities(id).await?;
    let all: BTreeSet<Indicator> = entities.iter().flat_map(|e| e.indicators()).collect();
    let skipped = all.len().saturating_sub(MAX_INDICATORS);
    let indicators: Vec<Indicator> = all.into_iter().take(MAX_INDICATORS).collect();
    let mut findings = Vec::new();
    for indicator in &indicators {
        findings.extend(ctx.threat_intel.lookup(indicator).await?);
    }
    let assessment = assess(&incident, &indicators, &findings);
    if !assessment.significant {
        let detail = format!(
            "no action: {} indicators, verdict {:?}",
            indicators.len(),
            assessment.verdict
        );
        ctx.ledger.record(&key, &detail).await?;
        response.log(format!("incident {}: {detail}", id.name()));
        return Ok(response);
    }

    let report = render_report(&incident, &indicators, skipped, &findings, &assessment);
    let report_url = ctx
        .reports
        .put_html(
            &format!("triage/{}.html", stable_id("triage-report", &id.key())),
            &report,
        )
        .await?;
    if let Some(severity) = assessment.new_severity {
        ctx.incidents.set_severity(id, severity).await?;
    }
    let comment = render_comment(&incident, &findings, &assessment, &report_url);
    ctx.incidents
        .put_comment(id, &stable_id("triage-comment", &id.key()), &comment)
        .await?;
    let detail = match assessment.new_severity {
        Some(to) => format!(
            "severity {} -> {to}, commented",
            incident.properties.severity
        ),
        None => "commented".to_string(),
    };
    ctx.ledger.record(&key, &detail).await?;
    response.log(format!("incident {}: {detail}", id.name()));
    response.messages(
        EVENTS_OUT,
        vec![json!({
            "id": stable_id("incident-triaged", &id.key()),
            "subject": id.arm_id(),
            "eventType": "socwire.IncidentTriaged",
            "eventTime": chrono::Utc::now().to_rfc3339(),
            "dataVersion": "1.0",
            "data": {
                "incidentId": id.arm_id(),
                "previousSeverity": incident.properties.severity,
                "newSeverity": assessment.new_severity,
                "verdict": assessment.verdict,
                "reportUrl": report_url,
            }
        })],
    );
    Ok(response)
}

/// Escapes text for HTML element content and quoted attributes.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn notable(findings: &[TiFinding]) -> Vec<&TiFinding> {
    let mut notable: Vec<&TiFinding> = findings
        .iter()
        .filter(|f| f.severity >= TiSeverity::Warning)
        .collect();
    notable.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.indicator.cmp(&b.indicator))
    });
    notable
}

fn render_comment(
    incident: &Incident,
    findings: &[TiFinding],
    a: &Assessment,
    report_url: &str,
) -> String {
    let notable = notable(findings);
    let mut text = String::from("<p><b>socwire triage</b>: ");
    match a.verdict {
        Some(TiSeverity::Benign) => text.push_str("every indicator is on an allow-list."),
        _ => text.push_str(&format!(
            "{} indicator finding(s) rated Warning or High:",
            notable.len()
        )),
    }
    text.push_str("</p><ul>");
    for f in notable.iter().take(MAX_FINDINGS_IN_COMMENT) {
        text.push_str(&format!(
            "<li>{} {} — {:?} ({}: {})</li>",
            html_escape(&f.indicator.kind),
            html_escape(&f.indicator.value),
            f.severity,
            html_escape(&f.provider),
            html_escape(&f.details)
        ));
    }
    if notable.len() > MAX_FINDINGS_IN_COMMENT {
        text.push_str(&format!(
            "<li>and {} more in the report</li>",
            notable.len() - MAX_FINDINGS_IN_COMMENT
        ));
    }
    text.push_str("</ul>");
    if let Some(to) = a.new_severity {
        text.push_str(&format!(
            "<p>Severity changed {} → {to}.</p>",
            incident.properties.severity
        ));
    }
    let link = format!(
        "<p><a href='{}'>View triage report</a></p>",
        html_escape(report_url)
    );
    let budget = MAX_COMMENT_CHARS.saturating_sub(link.chars().count());
    if text.chars().count() > budget {
        text = text.chars().take(budget).collect();
    }
    text.push_str(&link);
    text
}

fn render_report(
    incident: &Incident,
    indicators: &[Indicator],
    skipped: usize,
    findings: &[TiFinding],
    a: &Assessment,
) -> String {
    let p = &incident.properties;
    let mut rows = String::new();
    for i in indicators {
        let found: Vec<&TiFinding> = findings.iter().filter(|f| &f.indicator == i).collect();
        if found.is_empty() {
            rows.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>-</td><td>not known</td><td></td></tr>",
                html_escape(&i.kind),
                html_escape(&i.value)
            ));
        }
        for f in found {
            rows.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:?}</td><td>{}</td></tr>",
                html_escape(&i.kind),
                html_escape(&i.value),
                html_escape(&f.provider),
                f.severity,
                html_escape(&f.details)
            ));
        }
    }
    let change = match a.new_severity {
        Some(to) => format!("{} → {to}", p.severity),
        None => format!("unchanged ({})", p.severity),
    };
    format!(
        "<!doctype html><html><head><meta charset='utf-8'><title>Triage: {title}</title></head><body>\
         <h1>Triage report</h1><p>Incident {number}: <b>{title}</b></p><p>Status {status}; severity {change}; verdict {verdict:?}.</p>\
         <table border='1'><tr><th>Kind</th><th>Indicator</th><th>Provider</th><th>Verdict</th><th>Details</th></tr>{rows}</table>\
         <p>{skipped} further indicator(s) not checked (limit {MAX_INDICATORS}).</p></body></html>",
        title = html_escape(&p.title),
        number = p.incident_number.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
        status = html_escape(&p.status),
        verdict = a.verdict,
    )
}

/// The incident a queue message names, for logs and the local host's summary.
pub fn incident_of(message: &str) -> Option<IncidentId> {
    TriageRequest::parse(message).ok().map(|r| r.incident_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sentinel::IncidentProperties;

    fn incident(severity: Severity, status: &str) -> Incident {
        Incident {
            id: "x".into(),
            name: "x".into(),
            etag: None,
            properties: IncidentProperties {
                title: "t".into(),
                severity,
                status: status.into(),
                description: None,
                incident_number: None,
                other: Default::default(),
            },
        }
    }

    fn finding(value: &str, severity: TiSeverity) -> (Indicator, TiFinding) {
        let indicator = Indicator {
            kind: "ipv4".into(),
            value: value.into(),
        };
        let finding = TiFinding {
            indicator: indicator.clone(),
            provider: "p".into(),
            severity,
            details: String::new(),
        };
        (indicator, finding)
    }

    #[test]
    fn high_finding_raises_to_high() {
        let (i, f) = finding("203.0.113.66", TiSeverity::High);
        let a = assess(&incident(Severity::Low, "New"), &[i], &[f]);
        assert_eq!(a.new_severity, Some(Severity::High));
        assert!(a.significant);
    }

    #[test]
    fn warning_never_lowers() {
        let (i, f) = finding("198.51.100.23", TiSeverity::Warning);
        let a = assess(&incident(Severity::High, "Active"), &[i], &[f]);
        assert_eq!(a.new_severity, None);
        assert!(a.significant);
    }

    #[test]
    fn all_benign_lowers_but_one_unknown_does_not() {
        let (i, f) = finding("192.0.2.10", TiSeverity::Benign);
        let a = assess(
            &incident(Severity::High, "New"),
            std::slice::from_ref(&i),
            std::slice::from_ref(&f),
        );
        assert_eq!(a.new_severity, Some(Severity::Low));
        let unknown = Indicator {
            kind: "ipv4".into(),
            value: "192.0.2.99".into(),
        };
        let b = assess(&incident(Severity::High, "New"), &[i, unknown], &[f]);
        assert_eq!((b.new_severity, b.significant), (None, false));
    }

    #[test]
    fn closed_incidents_are_left_alone() {
        let (i, f) = finding("203.0.113.66", TiSeverity::High);
        let a = assess(&incident(Severity::Low, "Closed"), &[i], &[f]);
        assert!(!a.significant && a.new_severity.is_none());
    }

    #[test]
    fn comment_escapes_attacker_text() {
        let (_, mut f) = finding("203.0.113.66", TiSeverity::High);
        f.details = "<script>alert(1)</script>".into();
        let a = Assessment {
            verdict: Some(TiSeverity::High),
            new_severity: None,
            significant: true,
        };
        let c = render_comment(
            &incident(Severity::High, "New"),
            &[f],
            &a,
            "http://r/x'onload='y",
        );
        assert!(!c.contains("<script>"));
        assert!(c.contains("&lt;script&gt;"));
        assert!(c.contains("x&#39;onload=&#39;y"));
    }
}
