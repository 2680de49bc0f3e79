//! What triage reads about an incident: its entities and alerts, threat intelligence on
//! every indicator, checks on domains, and the workspace's answers about the hosts,
//! accounts, addresses and domains it names, all as [`Finding`]s.

use super::{Finding, MAX_ENTITIES, MAX_INDICATORS, MAX_SUBJECTS};
use crate::context::Context;
use crate::functions::FunctionError;
use crate::ports::{PortError, Question, TiFinding, TiSeverity};
use crate::sentinel::{Entity, IncidentId, Indicator, Subject};
use futures::StreamExt;
use serde_json::Value;
use socwire_common::text::for_log;
use std::collections::BTreeSet;

/// Shannon entropy range of ordinary domain names (Sentinel notebooks, SENTINEL.md §5).
pub const DOMAIN_ENTROPY_RANGE: (f64, f64) = (2.72120, 4.30891);
const MAX_FINDINGS_KEPT: usize = 400;

/// Shannon entropy of `text` in bits per character.
pub fn entropy(text: &str) -> f64 {
    let mut counts = std::collections::HashMap::new();
    for c in text.chars() {
        *counts.entry(c).or_insert(0usize) += 1;
    }
    let n = text.chars().count() as f64;
    counts
        .values()
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// Checks on a domain that need no provider: entropy outside the range of ordinary names.
/// High entropy on a long name (DGA-like) is a warning; anything else is information.
pub fn domain_checks(domain: &str) -> Vec<Finding> {
    let e = entropy(domain);
    let (lo, hi) = DOMAIN_ENTROPY_RANGE;
    if (lo..=hi).contains(&e) {
        return Vec::new();
    }
    let severity = if e > hi && domain.len() >= 12 {
        TiSeverity::Warning
    } else {
        TiSeverity::Information
    };
    vec![Finding {
        about: format!("domain {domain}"),
        source: "domain-entropy".into(),
        severity,
        reason: format!("entropy {e:.2} bits/char is outside the typical {lo:.2}–{hi:.2}"),
        query: None,
    }]
}

/// Reads one number from a row.
fn num(row: &serde_json::Map<String, Value>, column: &str) -> i64 {
    match row.get(column) {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(n.as_f64().unwrap_or(0.0) as i64),
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

/// The findings a workspace answer supports.
fn interpret(question: &Question, answer: &crate::ports::Answer) -> Vec<Finding> {
    let cite = Some(answer.query.clone());
    let finding = |about: String, severity, reason: String| Finding {
        about,
        source: format!("workspace:{}", question.name()),
        severity,
        reason,
        query: cite.clone(),
    };
    let rows = &answer.rows;
    match question {
        Question::RecentAlertsForHost { host, days } if !rows.is_empty() => {
            let high = rows
                .iter()
                .filter(|r| r.get("AlertSeverity").and_then(Value::as_str) == Some("High"))
                .count();
            vec![finding(
                format!("host {host}"),
                TiSeverity::Information,
                format!(
                    "{}{} alert(s) in {days} days, {high} of them High",
                    rows.len(),
                    if answer.truncated { "+" } else { "" }
                ),
            )]
        }
        Question::SigninsForAccount { account, days } => {
            let Some(row) = rows.first() else { return Vec::new() };
            let (total, failures) = (num(row, "Total"), num(row, "Failures"));
            if total == 0 {
                return Vec::new();
            }
            let severity = if failures >= 10 && failures * 2 >= total {
                TiSeverity::Warning
            } else {
                TiSeverity::Information
            };
            vec![finding(
                format!("account {account}"),
                severity,
                format!("{total} sign-in(s), {failures} failed, in {days} days"),
            )]
        }
        Question::FirstSeenIp { ip: v, days } | Question::FirstSeenDomain { domain: v, days } => {
            let Some(row) = rows.first() else { return Vec::new() };
            let kind = if matches!(question, Question::FirstSeenIp { .. }) { "ip" } else { "domain" };
            let first = row.get("FirstSeen").and_then(Value::as_str).and_then(|t| {
                chrono::DateTime::parse_from_rfc3339(t).ok()
            });
            let reason = match first {
                None => format!("not seen in the workspace in {days} days"),
                Some(t) if chrono::Utc::now() - t.with_timezone(&chrono::Utc) < chrono::Duration::hours(24) => {
                    format!("newly seen: first seen {} ({} sighting(s))", t.to_rfc3339(), num(row, "Count"))
                }
                Some(t) => format!("first seen {} ({} sighting(s))", t.to_rfc3339(), num(row, "Count")),
            };
            vec![finding(format!("{kind} {v}"), TiSeverity::Information, reason)]
        }
        Question::ProcessesOnHost { host, days } if !rows.is_empty() => {
            let names: Vec<String> = rows
                .iter()
                .take(5)
                .filter_map(|r| r.get("FileName").and_then(Value::as_str))
                .map(|s| s.chars().take(60).collect())
                .collect();
            vec![finding(
                format!("host {host}"),
                TiSeverity::Information,
                format!("{} distinct process(es) in {days} days; most frequent: {}", rows.len(), names.join(", ")),
            )]
        }
        Question::ThreatIndicator { indicator } => rows
            .iter()
            .map(|r| {
                let action = r.get("Action").and_then(Value::as_str).unwrap_or("").to_ascii_lowercase();
                let confidence = num(r, "ConfidenceScore");
                let severity = if action == "alert" || action == "block" || confidence >= 80 {
                    TiSeverity::High
                } else {
                    TiSeverity::Warning
                };
                let description = r.get("Description").and_then(Value::as_str).unwrap_or("");
                Finding {
                    about: format!("{} {}", indicator.kind, indicator.value),
                    source: "sentinel-ti".into(),
                    severity,
                    reason: format!(
                        "ThreatIntelligenceIndicator: action {action:?}, confidence {confidence}: {}",
                        description.chars().take(200).collect::<String>()
                    ),
                    query: cite.clone(),
                }
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The questions to ask about what the entities name.
fn questions(subjects: &[Subject], indicators: &[Indicator]) -> Vec<Question> {
    let mut out = Vec::new();
    for s in subjects {
        match s {
            Subject::Host(h) => {
                out.push(Question::RecentAlertsForHost {
                    host: h.clone(),
                    days: 7,
                });
                out.push(Question::ProcessesOnHost {
                    host: h.clone(),
                    days: 2,
                });
            }
            Subject::Account(a) => out.push(Question::SigninsForAccount {
                account: a.clone(),
                days: 2,
            }),
            Subject::Ip(ip) => out.push(Question::FirstSeenIp {
                ip: ip.clone(),
                days: 30,
            }),
            Subject::Domain(d) => out.push(Question::FirstSeenDomain {
                domain: d.clone(),
                days: 30,
            }),
        }
    }
    for i in indicators {
        out.push(Question::ThreatIndicator {
            indicator: i.clone(),
        });
    }
    out
}

/// Everything assessment read, kept for the report.
pub(super) struct Gathered {
    pub(super) entities: Vec<Entity>,
    pub(super) entities_total: usize,
    pub(super) indicators: Vec<Indicator>,
    pub(super) skipped_indicators: usize,
    pub(super) ti: Vec<TiFinding>,
    pub(super) findings: Vec<Finding>,
    pub(super) alerts: Vec<Value>,
    pub(super) notes: Vec<String>,
}

/// Reads the incident's entities and alerts and gathers every finding, within the bounds.
pub(super) async fn gather(ctx: &Context, id: &IncidentId) -> Result<Gathered, FunctionError> {
    let mut entities = ctx.incidents.entities(id).await?;
    let entities_total = entities.len();
    let mut notes = Vec::new();
    if entities_total > MAX_ENTITIES {
        entities.truncate(MAX_ENTITIES);
        notes.push(format!(
            "{entities_total} entities: only the first {MAX_ENTITIES} were assessed"
        ));
    }
    let alerts = match ctx.incidents.alerts(id).await {
        Ok(a) => a.into_iter().take(200).collect(),
        Err(e) if !e.is_transient() => {
            notes.push(format!("alerts not read: {}", for_log(&e.to_string(), 200)));
            Vec::new()
        }
        Err(e) => return Err(e.into()),
    };
    let mut indicators = BTreeSet::new();
    let mut subjects = BTreeSet::new();
    for e in &entities {
        let o = e.observe();
        indicators.extend(o.indicators);
        subjects.extend(o.subjects);
    }
    let skipped_indicators = indicators.len().saturating_sub(MAX_INDICATORS);
    if skipped_indicators > 0 {
        notes.push(format!(
            "{skipped_indicators} indicator(s) over the limit of {MAX_INDICATORS} not checked"
        ));
    }
    let indicators: Vec<Indicator> = indicators.into_iter().take(MAX_INDICATORS).collect();
    if subjects.len() > MAX_SUBJECTS {
        notes.push(format!(
            "{} workspace subject(s) over the limit of {MAX_SUBJECTS} not asked about",
            subjects.len() - MAX_SUBJECTS
        ));
    }
    let subjects: Vec<Subject> = subjects.into_iter().take(MAX_SUBJECTS).collect();

    let concurrency = ctx.settings.ti_concurrency.max(1);
    let ti_results: Vec<Result<Vec<TiFinding>, PortError>> =
        futures::stream::iter(indicators.iter().cloned())
            .map(|i| {
                let ti = ctx.threat_intel.clone();
                async move { ti.lookup(&i).await }
            })
            .buffered(concurrency)
            .collect()
            .await;
    let mut ti = Vec::new();
    for r in ti_results {
        ti.extend(r?);
    }
    let mut findings: Vec<Finding> = ti.iter().map(Finding::from_ti).collect();
    for i in indicators.iter().filter(|i| i.kind == "domain") {
        findings.extend(domain_checks(&i.value));
    }
    let qs = questions(&subjects, &indicators);
    let answers: Vec<(Question, Result<crate::ports::Answer, PortError>)> =
        futures::stream::iter(qs)
            .map(|q| {
                let ws = ctx.workspace.clone();
                async move {
                    let a = ws.ask(&q).await;
                    (q, a)
                }
            })
            .buffered(concurrency)
            .collect()
            .await;
    for (q, a) in answers {
        match a {
            Ok(answer) => findings.extend(interpret(&q, &answer)),
            Err(e) if e.is_transient() => return Err(e.into()),
            Err(e) => notes.push(format!(
                "{} not answered: {}",
                q.name(),
                for_log(&e.to_string(), 200)
            )),
        }
    }
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.about.cmp(&b.about)));
    if findings.len() > MAX_FINDINGS_KEPT {
        notes.push(format!(
            "{} findings: the {MAX_FINDINGS_KEPT} strongest are kept",
            findings.len()
        ));
        findings.truncate(MAX_FINDINGS_KEPT);
    }
    Ok(Gathered {
        entities,
        entities_total,
        indicators,
        skipped_indicators,
        ti,
        findings,
        alerts,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_entropy_flags_dga_like_names_only() {
        assert!(domain_checks("mail.contoso.com").is_empty());
        let dga = domain_checks("x7k2q9zv4mw8jd3b.example");
        assert_eq!(dga[0].severity, TiSeverity::Warning, "{dga:?}");
        assert_eq!(
            domain_checks("aaaa.aa")[0].severity,
            TiSeverity::Information
        );
    }
}
