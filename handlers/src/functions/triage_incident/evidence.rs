//! What triage reads about an incident: its entities and alerts, threat intelligence on
//! every indicator, checks on domains, and the workspace's answers about the hosts,
//! accounts, addresses and domains it names, all as [`Finding`]s.

use super::{Finding, MAX_ENTITIES, MAX_INDICATORS, MAX_SUBJECTS};
use crate::context::Context;
use crate::functions::FunctionError;
use crate::ioc;
use crate::ports::{PortError, Question, TiAnswer, TiFinding, TiSeverity, TiSkip, TiTable};
use crate::sentinel::{Entity, Incident, IncidentId, Indicator, Links, Relation, Subject};
use futures::StreamExt;
use serde_json::Value;
use socwire_common::text::for_log;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Shannon entropy range of ordinary domain names (the bounds the Sentinel incident-triage
/// notebook highlights outside of).
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
        origin: None,
    }]
}

/// Reads one number from a row.
fn num(row: &Row, column: &str) -> i64 {
    match row.get(column) {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(n.as_f64().unwrap_or(0.0) as i64),
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

/// True when a row of a threat-intelligence table is active and unexpired: `IsActive`/`Active`
/// true (a bool or its text) and `ValidUntil`/`ExpirationDateTime` absent or in the future.
/// The queries filter the same way; rows are checked again because a local or hand-fed
/// workspace may not.
fn ti_row_current(row: &serde_json::Map<String, Value>) -> bool {
    let active = match row.get("IsActive").or_else(|| row.get("Active")) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        Some(Value::Number(n)) => n.as_i64() == Some(1),
        _ => false,
    };
    let unexpired = match row
        .get("ValidUntil")
        .or_else(|| row.get("ExpirationDateTime"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        None => true,
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map(|t| t.with_timezone(&chrono::Utc) > chrono::Utc::now())
            .unwrap_or(false),
    };
    active && unexpired
}

/// Sentinel TI rows about `indicator` as threat-intelligence findings: confidence ≥ 80 is
/// high, anything else warning (the legacy table's `Action` alert/block is high too);
/// inactive or expired rows are left out.
fn sentinel_ti(
    indicator: &Indicator,
    table: TiTable,
    rows: &[serde_json::Map<String, Value>],
) -> Vec<TiFinding> {
    rows.iter()
        .filter(|r| ti_row_current(r))
        .map(|r| {
            let action = r
                .get("Action")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_ascii_lowercase();
            let confidence = num(
                r,
                if r.contains_key("Confidence") {
                    "Confidence"
                } else {
                    "ConfidenceScore"
                },
            );
            let severity = if confidence >= 80 || action == "alert" || action == "block" {
                TiSeverity::High
            } else {
                TiSeverity::Warning
            };
            let description = r.get("Description").and_then(Value::as_str).unwrap_or("");
            let table_name = match table {
                TiTable::ThreatIntelIndicators => "ThreatIntelIndicators",
                TiTable::ThreatIntelligenceIndicator => "ThreatIntelligenceIndicator",
            };
            let action = if action.is_empty() {
                String::new()
            } else {
                format!(", action {action}")
            };
            TiFinding {
                indicator: indicator.clone(),
                provider: "sentinel-ti".into(),
                severity,
                details: format!(
                    "{table_name}: confidence {confidence}{action}: {}",
                    description.chars().take(200).collect::<String>()
                ),
            }
        })
        .collect()
}

/// A workspace row, as the query answers it.
type Row = serde_json::Map<String, Value>;

/// The findings a workspace answer supports.
fn interpret(question: &Question, answer: &crate::ports::Answer) -> Vec<Finding> {
    let rows = &answer.rows;
    let found = match question {
        Question::RecentAlertsForHost { host, days } if !rows.is_empty() => Some((
            format!("host {}", host.label()),
            TiSeverity::Information,
            recent_alerts(rows, answer.truncated, *days),
        )),
        Question::SigninsForAccount { account, days } => rows
            .first()
            .and_then(|row| signins(row, *days))
            .map(|(severity, reason)| (format!("account {}", account.label()), severity, reason)),
        Question::FirstSeenIp { ip: v, days } | Question::FirstSeenDomain { domain: v, days } => {
            let kind = if matches!(question, Question::FirstSeenIp { .. }) {
                "ip"
            } else {
                "domain"
            };
            rows.first().map(|row| {
                (
                    format!("{kind} {v}"),
                    TiSeverity::Information,
                    first_seen(row, *days),
                )
            })
        }
        Question::ProcessesOnHost { host, days } if !rows.is_empty() => Some((
            format!("host {}", host.label()),
            TiSeverity::Information,
            processes(rows, *days),
        )),
        _ => None,
    };
    let partial = if answer.warnings.is_empty() {
        ""
    } else {
        " (partial answer: some tables did not answer)"
    };
    found
        .map(|(about, severity, reason)| Finding {
            about,
            source: format!("workspace:{}", question.name()),
            severity,
            reason: format!("{reason}{partial}"),
            query: Some(answer.query.clone()),
            origin: None,
        })
        .into_iter()
        .collect()
}

/// How many alerts the host raised, and how many of them were High.
fn recent_alerts(rows: &[Row], truncated: bool, days: u32) -> String {
    let high = rows
        .iter()
        .filter(|r| r.get("AlertSeverity").and_then(Value::as_str) == Some("High"))
        .count();
    format!(
        "{}{} alert(s) in {days} days, {high} of them High",
        rows.len(),
        if truncated { "+" } else { "" }
    )
}

/// Sign-ins and failures; a warning when at least 10 failed and they are half or more.
/// Nothing when the account never signed in.
fn signins(row: &Row, days: u32) -> Option<(TiSeverity, String)> {
    let (total, failures) = (num(row, "Total"), num(row, "Failures"));
    if total == 0 {
        return None;
    }
    let severity = if failures >= 10 && failures * 2 >= total {
        TiSeverity::Warning
    } else {
        TiSeverity::Information
    };
    Some((
        severity,
        format!("{total} sign-in(s), {failures} failed, in {days} days"),
    ))
}

/// When the workspace first saw an address or domain; "newly seen" within a day.
fn first_seen(row: &Row, days: u32) -> String {
    let first = row
        .get("FirstSeen")
        .and_then(Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    match first {
        None => format!("not seen in the workspace in {days} days"),
        Some(t)
            if chrono::Utc::now() - t.with_timezone(&chrono::Utc) < chrono::Duration::hours(24) =>
        {
            format!(
                "newly seen: first seen {} ({} sighting(s))",
                t.to_rfc3339(),
                num(row, "Count")
            )
        }
        Some(t) => format!(
            "first seen {} ({} sighting(s))",
            t.to_rfc3339(),
            num(row, "Count")
        ),
    }
}

/// The distinct processes seen on a host, which tables told, and the most frequent ones.
fn processes(rows: &[Row], days: u32) -> String {
    let names: Vec<String> = rows
        .iter()
        .take(5)
        .filter_map(|r| r.get("FileName").and_then(Value::as_str))
        .map(|s| s.chars().take(60).collect())
        .collect();
    let mut sources: Vec<&str> = rows
        .iter()
        .filter_map(|r| r.get("Source").and_then(Value::as_str))
        .collect();
    sources.sort_unstable();
    sources.dedup();
    format!(
        "{} distinct process(es) in {days} days ({}); most frequent: {}",
        rows.len(),
        if sources.is_empty() {
            "DeviceProcessEvents".to_string()
        } else {
            sources.join(", ")
        },
        names.join(", ")
    )
}

/// The workspace questions about what the entities name.
fn questions(subjects: &[Subject]) -> Vec<Question> {
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
    out
}

/// Everything assessment read, kept for the report.
pub(super) struct Gathered {
    pub(super) entities: Vec<Entity>,
    pub(super) entities_total: usize,
    pub(super) indicators: Vec<Indicator>,
    /// Where each indicator found only in free text came from.
    pub(super) from_text: HashMap<Indicator, String>,
    pub(super) skipped_indicators: usize,
    pub(super) ti: Vec<TiFinding>,
    /// Indicators not sent to internet providers, and why.
    pub(super) withheld: Vec<(Indicator, String)>,
    /// Providers not asked, by reason, with how many look-ups that was.
    pub(super) skipped: Vec<(TiSkip, usize)>,
    pub(super) relations: Vec<Relation>,
    pub(super) findings: Vec<Finding>,
    pub(super) alerts: Vec<Value>,
    pub(super) notes: Vec<String>,
}

/// Most indicators taken from free text per incident (after the entities' own).
pub const MAX_TEXT_INDICATORS: usize = 50;
/// Bytes of free text scanned per incident, all sources together.
pub const MAX_TEXT_BYTES: usize = 256 * 1024;
/// Most notes about values not read (refused addresses, accounts without identifiers).
const MAX_REFUSED_NOTES: usize = 20;

/// Free text of the incident and its alerts: `(where, text)`.
fn incident_texts(incident: &Incident, alerts: &[Value]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(d) = incident
        .properties
        .description
        .as_deref()
        .filter(|d| !d.trim().is_empty())
    {
        out.push(("incident description".to_string(), d.to_string()));
    }
    for a in alerts {
        if let Some(d) = a
            .pointer("/properties/description")
            .and_then(Value::as_str)
            .filter(|d| !d.trim().is_empty())
        {
            let name = a
                .pointer("/properties/alertDisplayName")
                .and_then(Value::as_str)
                .unwrap_or("(alert)");
            out.push((
                format!("description of alert {}", for_log(name, 80)),
                d.to_string(),
            ));
        }
    }
    out
}

/// Reads the incident's entities and alerts and gathers every finding, within the bounds:
/// indicators from the entities and then from text, threat intelligence on each, the
/// workspace's questions, and the findings strongest first.
pub(super) async fn gather(
    ctx: &Context,
    id: &IncidentId,
    incident: &Incident,
) -> Result<Gathered, FunctionError> {
    let mut notes = Vec::new();
    let (entities, entities_total, alerts) = read_incident(ctx, id, &mut notes).await?;
    let links = Links::new(&entities);
    let (relations, link_issues) = links.relations();
    notes.extend(link_issues);

    // Indicators in order: the entities' own first, then those found only in text.
    let mut found = Indicators::default();
    let mut texts = incident_texts(incident, &alerts);
    let mut subjects = BTreeSet::new();
    let mut refused = Vec::new();
    for e in &entities {
        let o = e.observe(&links);
        for i in o.indicators {
            found.add(i);
        }
        subjects.extend(o.subjects);
        refused.extend(o.refused);
        texts.extend(o.texts);
    }
    if refused.len() > MAX_REFUSED_NOTES {
        let more = refused.len() - MAX_REFUSED_NOTES;
        refused.truncate(MAX_REFUSED_NOTES);
        refused.push(format!("and {more} more value(s) not read"));
    }
    notes.extend(refused.into_iter().map(|r| format!("not read: {r}")));
    found.add_from_texts(&texts, &mut notes);
    let Indicators {
        mut list,
        mut from_text,
        ..
    } = found;
    let skipped_indicators = list.len().saturating_sub(MAX_INDICATORS);
    if skipped_indicators > 0 {
        notes.push(format!(
            "{skipped_indicators} indicator(s) over the limit of {MAX_INDICATORS} not checked"
        ));
        for dropped in list.drain(MAX_INDICATORS..) {
            from_text.remove(&dropped);
        }
    }
    if subjects.len() > MAX_SUBJECTS {
        notes.push(format!(
            "{} workspace subject(s) over the limit of {MAX_SUBJECTS} not asked about",
            subjects.len() - MAX_SUBJECTS
        ));
    }
    let subjects: Vec<Subject> = subjects.into_iter().take(MAX_SUBJECTS).collect();

    let (mut ti, withheld, skipped) = look_up(ctx, &list, &mut notes).await?;
    let workspace_findings = ask_workspace(ctx, &subjects, &list, &mut ti, &mut notes).await?;
    let findings = findings(&ti, workspace_findings, &from_text, &list, &mut notes);
    Ok(Gathered {
        entities,
        entities_total,
        indicators: list,
        from_text,
        skipped_indicators,
        ti,
        withheld,
        skipped,
        relations,
        findings,
        alerts,
        notes,
    })
}

/// The incident's entities (at most [`MAX_ENTITIES`]), how many it has, and its alerts (at
/// most 200; a permanent failure to read them is a note, not a failure of triage).
async fn read_incident(
    ctx: &Context,
    id: &IncidentId,
    notes: &mut Vec<String>,
) -> Result<(Vec<Entity>, usize, Vec<Value>), FunctionError> {
    let mut entities = ctx.incidents.entities(id).await?;
    let entities_total = entities.len();
    if entities_total > MAX_ENTITIES {
        entities.truncate(MAX_ENTITIES);
        notes.push(format!(
            "{entities_total} entities: only the first {MAX_ENTITIES} were assessed"
        ));
    }
    let alerts: Vec<Value> = match ctx.incidents.alerts(id).await {
        Ok(a) => a.into_iter().take(200).collect(),
        Err(e) if !e.is_transient() => {
            notes.push(format!("alerts not read: {}", for_log(&e.to_string(), 200)));
            Vec::new()
        }
        Err(e) => return Err(e.into()),
    };
    Ok((entities, entities_total, alerts))
}

/// Indicators in the order found, each once, and where those found only in text came from.
#[derive(Default)]
struct Indicators {
    list: Vec<Indicator>,
    seen: HashSet<Indicator>,
    from_text: HashMap<Indicator, String>,
}

impl Indicators {
    fn add(&mut self, i: Indicator) {
        if self.seen.insert(i.clone()) {
            self.list.push(i);
        }
    }

    /// Indicators in free text (descriptions, command lines, URLs), within the text budget and
    /// [`MAX_TEXT_INDICATORS`]; what was cut short is noted.
    fn add_from_texts(&mut self, texts: &[(String, String)], notes: &mut Vec<String>) {
        let mut budget = MAX_TEXT_BYTES;
        let mut text_more = 0;
        let mut unread_sources = 0;
        for (source, text) in texts {
            if budget == 0 {
                unread_sources += 1;
                continue;
            }
            let limits = ioc::ExtractLimits {
                max_bytes: ioc::ExtractLimits::default().max_bytes.min(budget),
                ..Default::default()
            };
            budget -= text.len().min(limits.max_bytes);
            let found = ioc::extract(text, &limits);
            if found.cut_bytes {
                notes.push(format!(
                    "{source}: only the first {} KiB read for indicators",
                    limits.max_bytes / 1024
                ));
            }
            if found.cut_candidates {
                notes.push(format!(
                    "{source}: the scan for indicators stopped after {} pieces of text",
                    limits.max_candidates
                ));
            }
            for why in found.refused {
                notes.push(format!("{source}: {why}"));
            }
            text_more += found.more;
            for i in found.iocs {
                if self.seen.contains(&i) {
                    continue;
                }
                if self.from_text.len() >= MAX_TEXT_INDICATORS {
                    text_more += 1;
                    continue;
                }
                self.seen.insert(i.clone());
                self.from_text.insert(i.clone(), source.clone());
                self.list.push(i);
            }
        }
        if unread_sources > 0 {
            notes.push(format!(
                "{unread_sources} text(s) not scanned for indicators: the {} KiB budget was used",
                MAX_TEXT_BYTES / 1024
            ));
        }
        if text_more > 0 {
            notes.push(format!("{text_more} more indicator(s) in free text not looked up (limit {MAX_TEXT_INDICATORS})"));
        }
    }
}

/// Threat intelligence on every indicator (`SOCWIRE_TI_CONCURRENCY` at a time): the findings,
/// the indicators withheld from internet providers and why, and the look-ups not sent.
#[allow(clippy::type_complexity)]
async fn look_up(
    ctx: &Context,
    indicators: &[Indicator],
    notes: &mut Vec<String>,
) -> Result<
    (
        Vec<TiFinding>,
        Vec<(Indicator, String)>,
        Vec<(TiSkip, usize)>,
    ),
    FunctionError,
> {
    let concurrency = ctx.settings.ti.concurrency.max(1);
    let results: Vec<Result<TiAnswer, PortError>> =
        futures::stream::iter(indicators.iter().cloned())
            .map(|i| {
                let ti = ctx.threat_intel.clone();
                async move { ti.lookup(&i).await }
            })
            .buffered(concurrency)
            .collect()
            .await;
    let mut ti = Vec::new();
    let mut withheld = Vec::new();
    let mut skipped: BTreeMap<TiSkip, usize> = BTreeMap::new();
    for (i, r) in indicators.iter().zip(results) {
        let answer = r?;
        ti.extend(answer.findings);
        if let Some(why) = answer.withheld {
            withheld.push((i.clone(), why));
        }
        for s in answer.skipped {
            *skipped.entry(s).or_default() += 1;
        }
    }
    for (s, n) in &skipped {
        notes.push(format!(
            "{}: {n} look-up(s) not sent: {}",
            s.provider, s.why
        ));
    }
    Ok((ti, withheld, skipped.into_iter().collect()))
}

/// The workspace's questions about the subjects, and Sentinel's own threat intelligence on the
/// indicators (added to `ti`); a question that fails permanently is a note.
async fn ask_workspace(
    ctx: &Context,
    subjects: &[Subject],
    indicators: &[Indicator],
    ti: &mut Vec<TiFinding>,
    notes: &mut Vec<String>,
) -> Result<Vec<Finding>, FunctionError> {
    let table = ctx.settings.ti.table;
    let mut qs: Vec<Question> = questions(subjects);
    qs.extend(indicators.iter().map(|i| Question::ThreatIndicator {
        indicator: i.clone(),
        table,
    }));
    let answers: Vec<(Question, Result<crate::ports::Answer, PortError>)> =
        futures::stream::iter(qs)
            .map(|q| {
                let ws = ctx.workspace.clone();
                async move {
                    let a = ws.ask(&q).await;
                    (q, a)
                }
            })
            .buffered(ctx.settings.ti.concurrency.max(1))
            .collect()
            .await;
    let mut workspace_findings = Vec::new();
    for (q, a) in answers {
        match a {
            Ok(answer) => {
                for w in &answer.warnings {
                    notes.push(format!("{}: {}", q.name(), for_log(w, 300)));
                }
                match &q {
                    Question::ThreatIndicator { indicator, table } => {
                        let found = sentinel_ti(indicator, *table, &answer.rows);
                        workspace_findings.extend(found.iter().map(|f| {
                            let mut finding = Finding::from_ti(f);
                            finding.query = Some(answer.query.clone());
                            finding
                        }));
                        ti.extend(found);
                    }
                    _ => workspace_findings.extend(interpret(&q, &answer)),
                }
            }
            Err(e) if e.is_transient() => return Err(e.into()),
            Err(e) => notes.push(format!(
                "{} not answered: {}",
                q.name(),
                for_log(&e.to_string(), 200)
            )),
        }
    }
    Ok(workspace_findings)
}

/// Every finding, strongest first (at most [`MAX_FINDINGS_KEPT`]): the providers', the
/// workspace's and the domain checks, each found only in text marked with where.
fn findings(
    ti: &[TiFinding],
    workspace_findings: Vec<Finding>,
    from_text: &HashMap<Indicator, String>,
    indicators: &[Indicator],
    notes: &mut Vec<String>,
) -> Vec<Finding> {
    let mut findings: Vec<Finding> = ti
        .iter()
        .filter(|f| f.provider != "sentinel-ti")
        .map(Finding::from_ti)
        .collect();
    findings.extend(workspace_findings);
    if !from_text.is_empty() {
        let sources: HashMap<String, &String> = from_text
            .iter()
            .map(|(i, source)| (format!("{} {}", i.kind, i.value), source))
            .collect();
        for f in &mut findings {
            if let Some(source) = sources.get(&f.about) {
                f.origin = Some(format!("from text: {source}"));
            }
        }
    }
    for i in indicators.iter().filter(|i| i.kind == "domain") {
        findings.extend(domain_checks(&i.value));
    }
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.about.cmp(&b.about)));
    if findings.len() > MAX_FINDINGS_KEPT {
        notes.push(format!(
            "{} findings: the {MAX_FINDINGS_KEPT} strongest are kept",
            findings.len()
        ));
        findings.truncate(MAX_FINDINGS_KEPT);
    }
    findings
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

    #[test]
    fn sentinel_ti_rows_honour_activity_expiry_and_confidence() {
        let row = |v: Value| v.as_object().unwrap().clone();
        let future = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
        let past = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339();
        let i = Indicator {
            kind: "ipv4".into(),
            value: "8.8.8.8".into(),
        };
        let rows = vec![
            row(
                serde_json::json!({"Id": "a", "IsActive": true, "ValidUntil": future, "Confidence": 90, "Description": "C2"}),
            ),
            row(
                serde_json::json!({"Id": "b", "IsActive": true, "ValidUntil": null, "Confidence": 40}),
            ),
            row(serde_json::json!({"Id": "c", "IsActive": false, "Confidence": 100})),
            row(
                serde_json::json!({"Id": "d", "IsActive": "true", "ValidUntil": past, "Confidence": 100}),
            ),
        ];
        let found = sentinel_ti(&i, TiTable::ThreatIntelIndicators, &rows);
        let levels: Vec<TiSeverity> = found.iter().map(|f| f.severity).collect();
        assert_eq!(levels, [TiSeverity::High, TiSeverity::Warning], "{found:?}");
        assert!(
            found[0]
                .details
                .starts_with("ThreatIntelIndicators: confidence 90"),
            "{found:?}"
        );
    }
}
