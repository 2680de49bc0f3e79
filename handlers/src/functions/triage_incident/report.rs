//! What people read: the incident comment (bounded, linking the report) and the HTML
//! report. Every text from the incident, providers or the workspace is escaped.

use super::decision::verdict_name;
use super::evidence::Gathered;
use super::{Decision, Finding, ReadStamp, MAX_COMMENT_CHARS, MAX_INDICATORS};
use crate::ports::{TiFinding, TiSeverity};
use crate::sentinel::{EntityKind, Incident};
use serde_json::Value;
use socwire_common::text::escape_html;
use std::collections::BTreeSet;

const MAX_FINDINGS_IN_COMMENT: usize = 10;

fn notable(findings: &[Finding]) -> Vec<&Finding> {
    findings
        .iter()
        .filter(|f| f.severity >= TiSeverity::Warning)
        .collect()
}

/// The incident comment: the notable findings, what was applied or kept, the report link.
pub(super) fn render_comment(d: &Decision, kept: Option<&ReadStamp>) -> String {
    let notable = notable(&d.findings);
    let mut text = String::from("<p><b>socwire triage</b>: ");
    match d.verdict {
        Some(TiSeverity::Benign) => text.push_str("every indicator is on an allow-list."),
        _ => text.push_str(&format!(
            "{} finding(s) rated warning or high:",
            notable.len()
        )),
    }
    text.push_str("</p><ul>");
    for f in notable.iter().take(MAX_FINDINGS_IN_COMMENT) {
        let about = match &f.origin {
            Some(o) => format!("{} ({o})", f.about),
            None => f.about.clone(),
        };
        text.push_str(&format!(
            "<li>{} — {} ({}: {})</li>",
            escape_html(&about),
            f.severity.msticpy(),
            escape_html(&f.source),
            escape_html(&f.reason)
        ));
    }
    if notable.len() > MAX_FINDINGS_IN_COMMENT {
        text.push_str(&format!(
            "<li>and {} more in the report</li>",
            notable.len() - MAX_FINDINGS_IN_COMMENT
        ));
    }
    text.push_str("</ul>");
    match kept {
        Some(k) => text.push_str(&format!(
            "<p>Proposed {}; not applied: the incident was changed since triage read it (now severity {}, status {}), and that change was kept.</p>",
            escape_html(&d.action()),
            k.severity,
            escape_html(&k.status)
        )),
        None if d.target_severity.is_some() || d.target_status.is_some() => {
            text.push_str(&format!("<p>Applied: {}.</p>", escape_html(&d.action())))
        }
        None => {}
    }
    let link = match &d.report_url {
        Some(url) => format!(
            "<p><a href='{}'>View triage report</a></p>",
            escape_html(url)
        ),
        None => String::new(),
    };
    let budget = MAX_COMMENT_CHARS.saturating_sub(link.chars().count());
    if text.chars().count() > budget {
        text = text.chars().take(budget).collect();
    }
    text.push_str(&link);
    text
}

/// One sentence per process entity: what it ran from (with the file's hashes), where, as
/// whom, started by what — from the links the incident's entities carry.
pub(super) fn process_sentences(g: &Gathered) -> Vec<String> {
    let linked = |from: usize, link: &str| -> Vec<usize> {
        g.relations
            .iter()
            .filter(|r| r.from == from && r.link == link)
            .map(|r| r.to)
            .collect()
    };
    let label = |i: usize| g.entities[i].label();
    let mut out = Vec::new();
    for (p, ent) in g.entities.iter().enumerate() {
        if ent.entity_kind() != EntityKind::Process {
            continue;
        }
        let mut s = format!("process {}", label(p));
        for image in linked(p, "image file") {
            let file = &g.entities[image];
            let path = match (
                file.properties.get("directory").and_then(Value::as_str),
                file.properties.get("fileName").and_then(Value::as_str),
            ) {
                (Some(dir), Some(name)) => format!("{}\\{name}", dir.trim_end_matches('\\')),
                _ => label(image),
            };
            s.push_str(&format!(" ran from {path}"));
            let hashes: Vec<String> = linked(image, "file hash")
                .into_iter()
                .filter_map(|h| {
                    let h = &g.entities[h];
                    let value = h.properties.get("hashValue").and_then(Value::as_str)?;
                    let algorithm = h
                        .properties
                        .get("algorithm")
                        .and_then(Value::as_str)
                        .unwrap_or("hash");
                    Some(format!("{algorithm} {value}"))
                })
                .collect();
            if !hashes.is_empty() {
                s.push_str(&format!(" ({})", hashes.join(", ")));
            }
        }
        for host in linked(p, "host") {
            s.push_str(&format!(" on host {}", label(host)));
        }
        for account in linked(p, "account") {
            s.push_str(&format!(" as {}", label(account)));
        }
        for parent in linked(p, "parent process") {
            s.push_str(&format!(", started by {}", label(parent)));
        }
        if s != format!("process {}", label(p)) {
            out.push(s.chars().take(600).collect());
        }
    }
    out
}

fn alert_time(a: &Value) -> String {
    a.pointer("/properties/startTimeUtc")
        .or_else(|| a.pointer("/properties/timeGenerated"))
        .or_else(|| a.get("TimeGenerated"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// The standalone HTML report: findings, threat intelligence by provider, entities and the
/// alerts' timeline.
pub(super) fn render_report(incident: &Incident, g: &Gathered, d: &Decision) -> String {
    let mut html = String::with_capacity(16 * 1024);
    write_head(&mut html, incident, d);
    write_findings(&mut html, d);
    write_threat_intelligence(&mut html, g);
    write_not_asked(&mut html, g);
    let unknown = write_entities(&mut html, g);
    write_relations(&mut html, g);
    if !unknown.is_empty() {
        let list: Vec<String> = unknown.iter().map(|k| escape_html(k)).collect();
        html.push_str(&format!(
            "<p>Entity kinds this version does not read (listed, not assessed): {}</p>",
            list.join(", ")
        ));
    }
    write_timeline(&mut html, g);
    html.push_str(&format!(
        "</table><p><small>Decision {} at {}; incident {}</small></p></body></html>",
        escape_html(&d.event_id),
        escape_html(&d.decided_at),
        escape_html(&d.incident_id)
    ));
    html
}

/// The page head, the incident, the verdict and its reasons.
fn write_head(html: &mut String, incident: &Incident, d: &Decision) {
    let e = escape_html;
    let p = &incident.properties;
    html.push_str(&format!(
        "<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' content='width=device-width'>\
         <meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'\">\
         <title>Triage: {title}</title><style>body{{font:14px system-ui,sans-serif;margin:2em;max-width:80em}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top;text-align:left}}\
         .high{{background:#fdd}}.warning{{background:#ffe8c0}}.benign{{background:#dfd}}pre{{white-space:pre-wrap;margin:0}}</style></head><body>\
         <h1>Triage report</h1><p>Incident {number}: <b>{title}</b></p>\
         <p>Status {status}; severity {severity}. Verdict <b>{verdict}</b>; action: {action}.</p><ul>",
        title = e(&p.title),
        number = p.incident_number.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
        status = e(&p.status),
        severity = p.severity,
        verdict = verdict_name(d.verdict),
        action = e(&d.action()),
    ));
    for r in &d.reasons {
        html.push_str(&format!("<li>{}</li>", e(r)));
    }
}

/// Findings: level, what about, which source, why, and the query behind it.
fn write_findings(html: &mut String, d: &Decision) {
    let e = escape_html;
    html.push_str("</ul><h2>Findings</h2><table><tr><th>Level</th><th>About</th><th>Source</th><th>Reason</th><th>Query</th></tr>");
    for f in &d.findings {
        let about = match &f.origin {
            Some(o) => format!("{} <small>({})</small>", e(&f.about), e(o)),
            None => e(&f.about),
        };
        html.push_str(&format!(
            "<tr class='{lvl}'><td>{lvl}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            about,
            e(&f.source),
            e(&f.reason),
            f.query
                .as_ref()
                .map(|q| format!(
                    "<details><summary>KQL</summary><pre>{}</pre></details>",
                    e(q)
                ))
                .unwrap_or_default(),
            lvl = f.severity.msticpy(),
        ));
    }
}

/// Each indicator with what each provider said of it.
fn write_threat_intelligence(html: &mut String, g: &Gathered) {
    let e = escape_html;
    html.push_str("</table><h2>Threat intelligence by provider</h2><table><tr><th>Indicator</th><th>Provider</th><th>Level</th><th>Details</th></tr>");
    for i in &g.indicators {
        let found: Vec<&TiFinding> = g.ti.iter().filter(|f| &f.indicator == i).collect();
        let shown = match g.from_text.get(i) {
            Some(source) => format!(
                "{} {} <small>(from text: {})</small>",
                e(&i.kind),
                e(&i.value),
                e(source)
            ),
            None => format!("{} {}", e(&i.kind), e(&i.value)),
        };
        if found.is_empty() {
            html.push_str(&format!(
                "<tr><td>{shown}</td><td>-</td><td>not known</td><td></td></tr>"
            ));
        }
        for f in found {
            html.push_str(&format!(
                "<tr class='{lvl}'><td>{shown}</td><td>{}</td><td>{lvl}</td><td>{}</td></tr>",
                e(&f.provider),
                e(&f.details),
                lvl = f.severity.msticpy()
            ));
        }
    }
    html.push_str("</table>");
}

/// What was kept from internet providers, providers not asked, indicators over the limit.
fn write_not_asked(html: &mut String, g: &Gathered) {
    let e = escape_html;
    if !g.withheld.is_empty() {
        html.push_str("<h2>Not sent to internet providers</h2><p>Offline lists and the workspace saw these; the internet providers did not.</p><ul>");
        for (i, why) in &g.withheld {
            html.push_str(&format!(
                "<li>{} {}: {}</li>",
                e(&i.kind),
                e(&i.value),
                e(why)
            ));
        }
        html.push_str("</ul>");
    }
    if !g.skipped.is_empty() {
        html.push_str("<h2>Providers not asked</h2><ul>");
        for (s, n) in &g.skipped {
            html.push_str(&format!(
                "<li>{}: {n} look-up(s) not sent: {}</li>",
                e(&s.provider),
                e(&s.why)
            ));
        }
        html.push_str("</ul>");
    }
    if g.skipped_indicators > 0 {
        html.push_str(&format!(
            "<p>{} further indicator(s) not checked (limit {MAX_INDICATORS}).</p>",
            g.skipped_indicators
        ));
    }
}

/// The entities with their indicators; gives the entity kinds this version does not read.
fn write_entities(html: &mut String, g: &Gathered) -> BTreeSet<String> {
    let e = escape_html;
    html.push_str(&format!(
        "<h2>Entities ({} of {})</h2><table><tr><th>Kind</th><th>Name</th><th>Indicators</th></tr>",
        g.entities.len(),
        g.entities_total
    ));
    let mut unknown = BTreeSet::new();
    for ent in g.entities.iter().take(1000) {
        if let EntityKind::Other(k) = ent.entity_kind() {
            unknown.insert(k);
        }
        let inds: Vec<String> = ent
            .indicators()
            .iter()
            .map(|i| format!("{} {}", i.kind, i.value))
            .collect();
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            e(&ent.kind.chars().take(64).collect::<String>()),
            e(&ent.label()),
            e(&inds.join(", "))
        ));
    }
    html.push_str("</table>");
    unknown
}

/// How the entities relate: process sentences, then the relations.
fn write_relations(html: &mut String, g: &Gathered) {
    let e = escape_html;
    let sentences = process_sentences(g);
    if !g.relations.is_empty() {
        html.push_str("<h2>How the entities relate</h2><ul>");
        for sentence in &sentences {
            html.push_str(&format!("<li>{}</li>", e(sentence)));
        }
        for r in g.relations.iter().take(200) {
            html.push_str(&format!(
                "<li>{} {} → {}: {} {}</li>",
                e(&g.entities[r.from].kind.chars().take(32).collect::<String>()),
                e(&g.entities[r.from].label()),
                e(&r.link),
                e(&g.entities[r.to].kind.chars().take(32).collect::<String>()),
                e(&g.entities[r.to].label())
            ));
        }
        html.push_str("</ul>");
    }
}

/// The incident's alerts in time order.
fn write_timeline(html: &mut String, g: &Gathered) {
    let e = escape_html;
    let mut timeline: Vec<(String, String, String)> = g
        .alerts
        .iter()
        .map(|a| {
            (
                alert_time(a),
                a.pointer("/properties/alertDisplayName")
                    .and_then(Value::as_str)
                    .unwrap_or("(alert)")
                    .to_string(),
                a.pointer("/properties/severity")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    timeline.sort();
    html.push_str("<h2>Timeline of the incident's alerts</h2><table><tr><th>Time</th><th>Alert</th><th>Severity</th></tr>");
    for (t, name, sev) in &timeline {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            e(t),
            e(name),
            e(sev)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::TiSeverity;
    use crate::sentinel::Severity;

    #[test]
    fn comment_escapes_attacker_text_and_notes_a_kept_analyst_change() {
        let mut d = Decision {
            schema: String::new(),
            incident_id: String::new(),
            incident_number: None,
            read: ReadStamp {
                severity: Severity::Low,
                status: "New".into(),
                last_modified: None,
            },
            verdict: Some(TiSeverity::High),
            significant: true,
            target_severity: Some(Severity::High),
            target_status: None,
            reasons: vec![],
            findings: vec![Finding {
                about: "domain <b>x</b>".into(),
                source: "p".into(),
                severity: TiSeverity::High,
                reason: "<script>alert(1)</script>".into(),
                query: None,
                origin: None,
            }],
            comment_id: String::new(),
            report_name: String::new(),
            report_url: Some("http://r/x'onload='y".into()),
            event_id: String::new(),
            decided_at: String::new(),
        };
        let kept = ReadStamp {
            severity: Severity::Medium,
            status: "<i>Active</i>".into(),
            last_modified: None,
        };
        let c = render_comment(&d, Some(&kept));
        assert!(
            !c.contains("<script>") && !c.contains("<b>x") && !c.contains("<i>"),
            "{c}"
        );
        assert!(c.contains("&lt;script&gt;"));
        assert!(c.contains("x&#39;onload=&#39;y"));
        assert!(c.contains("change was kept"), "{c}");
        d.report_url = None;
        assert!(!render_comment(&d, None).contains("href"));
    }
}
