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

use super::{stable_id, triaged_key, FunctionError, TriageRequest};
use crate::context::Context;
use crate::ports::{PortError, Question, TiFinding, TiSeverity};
use crate::protocol::{InvocationRequest, InvocationResponse, QueueTrigger};
use crate::sentinel::{Entity, EntityKind, Incident, IncidentId, Indicator, Severity, Subject};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use socwire_common::text::{escape_html, for_log};
use std::collections::BTreeSet;

/// Function name.
pub const NAME: &str = "triage-incident";
const TRIGGER: &str = "request";
const EVENTS_OUT: &str = "events";
/// Most entities read per incident; the rest are counted in the verdict's reasons.
pub const MAX_ENTITIES: usize = 500;
/// Most indicators looked up per incident; the rest are named in the report as not checked.
pub const MAX_INDICATORS: usize = 200;
/// Most workspace subjects (hosts, accounts, addresses, domains) asked about per incident.
pub const MAX_SUBJECTS: usize = 20;
/// Comment length bound (Sentinel's limit is about 30,000 characters).
pub const MAX_COMMENT_CHARS: usize = 30_000;
const MAX_FINDINGS_IN_COMMENT: usize = 10;
const MAX_FINDINGS_KEPT: usize = 400;
/// Attempts at the severity update when the incident keeps changing under us.
const UPDATE_TRIES: usize = 4;
/// Shannon entropy range of ordinary domain names (Sentinel notebooks, SENTINEL.md §5).
pub const DOMAIN_ENTROPY_RANGE: (f64, f64) = (2.72120, 4.30891);

/// How findings become a severity change (`SOCWIRE_TRIAGE_RULE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TriageRule {
    /// The Sentinel notebooks' automated triage: any High or Warning finding sets severity
    /// High and status New; every indicator allow-listed lowers to Low.
    #[default]
    Seed,
    /// High → High; Warning → at least Medium (never lowers, status kept); allow-listed → Low.
    Graded,
}

impl std::str::FromStr for TriageRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "seed" => Ok(TriageRule::Seed),
            "graded" => Ok(TriageRule::Graded),
            other => Err(format!("triage rule {other:?}: use seed or graded")),
        }
    }
}

/// One reasoned finding, with where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// What it is about (`ipv4 203.0.113.7`, `host fin-ws-042`).
    pub about: String,
    /// The provider or workspace question that produced it.
    pub source: String,
    /// Its level.
    pub severity: TiSeverity,
    /// Why, in words.
    pub reason: String,
    /// The query that produced it, when a query did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

impl Finding {
    fn from_ti(f: &TiFinding) -> Self {
        Self {
            about: format!("{} {}", f.indicator.kind, f.indicator.value),
            source: f.provider.clone(),
            severity: f.severity,
            reason: f.details.clone(),
            query: None,
        }
    }
}

/// The incident as first read: what an analyst's change is detected against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadStamp {
    /// Severity read.
    pub severity: Severity,
    /// Status read.
    pub status: String,
    /// `lastModifiedTimeUtc` read.
    #[serde(default)]
    pub last_modified: Option<String>,
}

impl ReadStamp {
    fn of(incident: &Incident) -> Self {
        Self {
            severity: incident.properties.severity,
            status: incident.properties.status.clone(),
            last_modified: incident
                .properties
                .other
                .get("lastModifiedTimeUtc")
                .and_then(Value::as_str)
                .map(str::to_string),
        }
    }
}

/// What triage decided, recorded before its first effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// `socwire.triage-decision.v1`.
    pub schema: String,
    /// The incident.
    pub incident_id: String,
    /// Incident number, for people.
    #[serde(default)]
    pub incident_number: Option<i64>,
    /// The incident as first read.
    pub read: ReadStamp,
    /// The strongest level among the findings; Benign when every indicator is allow-listed.
    pub verdict: Option<TiSeverity>,
    /// Whether the findings matter enough to change and comment.
    pub significant: bool,
    /// Severity to set, when it should change.
    pub target_severity: Option<Severity>,
    /// Status to set, when it should change.
    pub target_status: Option<String>,
    /// Why, in words (includes bounds that were hit).
    pub reasons: Vec<String>,
    /// The findings (bounded).
    pub findings: Vec<Finding>,
    /// Comment id (derived from the incident).
    pub comment_id: String,
    /// Report blob name (derived from the incident).
    pub report_name: String,
    /// Link to the report, when one was written.
    pub report_url: Option<String>,
    /// Event id (derived from the incident).
    pub event_id: String,
    /// When the decision was taken (RFC 3339); also the event's time.
    pub decided_at: String,
}

impl Decision {
    /// Action in words: what triage does (or did) to the incident.
    pub fn action(&self) -> String {
        if !self.significant {
            return "no action".into();
        }
        match (self.target_severity, &self.target_status) {
            (Some(to), Some(st)) => {
                format!("severity {} -> {to}, status -> {st}", self.read.severity)
            }
            (Some(to), None) => format!("severity {} -> {to}", self.read.severity),
            (None, Some(st)) => format!("status -> {st}"),
            (None, None) => "comment only".into(),
        }
    }
}

/// The ledger key of an incident's decision.
pub fn decision_key(incident: &IncidentId) -> String {
    format!("triage:decision:v1:{}", incident.key())
}

/// Decides from the findings under `rule`. Closed incidents are never touched.
pub fn assess(
    rule: TriageRule,
    incident: &Incident,
    indicators: &[Indicator],
    ti: &[TiFinding],
    findings: &[Finding],
) -> (
    Option<TiSeverity>,
    bool,
    Option<Severity>,
    Option<String>,
    Vec<String>,
) {
    let p = &incident.properties;
    let worst = findings
        .iter()
        .map(|f| f.severity)
        .filter(|s| *s != TiSeverity::Benign)
        .max();
    let all_benign = !indicators.is_empty()
        && indicators.iter().all(|i| {
            ti.iter()
                .any(|f| &f.indicator == i && f.severity == TiSeverity::Benign)
        });
    let verdict = match worst {
        Some(w) if w >= TiSeverity::Warning => Some(w),
        _ if all_benign => Some(TiSeverity::Benign),
        other => other,
    };
    let mut reasons = Vec::new();
    if p.status.eq_ignore_ascii_case("Closed") {
        reasons.push("the incident is closed: left alone".into());
        return (verdict, false, None, None, reasons);
    }
    let (severity, status) = match (verdict, rule) {
        (Some(TiSeverity::High | TiSeverity::Warning), TriageRule::Seed) => {
            (Some(Severity::High), Some("New".to_string()))
        }
        (Some(TiSeverity::High), TriageRule::Graded) => (Some(Severity::High), None),
        (Some(TiSeverity::Warning), TriageRule::Graded) => {
            (Some(p.severity.max(Severity::Medium)), None)
        }
        (Some(TiSeverity::Benign), _) if p.severity > Severity::Low => (Some(Severity::Low), None),
        _ => (None, None),
    };
    let count = |s: TiSeverity| findings.iter().filter(|f| f.severity == s).count();
    match verdict {
        Some(TiSeverity::High | TiSeverity::Warning) => reasons.push(format!(
            "{} high and {} warning finding(s) (rule: {rule:?})",
            count(TiSeverity::High),
            count(TiSeverity::Warning)
        )),
        Some(TiSeverity::Benign) => reasons.push(format!(
            "every one of {} indicator(s) is allow-listed",
            indicators.len()
        )),
        _ if indicators.is_empty() => {
            reasons.push("no indicator to look up; nothing rated warning or high".into())
        }
        _ => reasons.push(format!(
            "nothing rated warning or high among {} indicator(s) and {} finding(s)",
            indicators.len(),
            findings.len()
        )),
    }
    let severity = severity.filter(|t| *t != p.severity);
    let status = status.filter(|s| !s.eq_ignore_ascii_case(&p.status));
    let significant = matches!(verdict, Some(TiSeverity::High | TiSeverity::Warning))
        || (verdict == Some(TiSeverity::Benign) && severity.is_some());
    if verdict == Some(TiSeverity::Benign) && !significant {
        reasons.push(format!("already {}: left alone", p.severity));
    }
    (verdict, significant, severity, status, reasons)
}

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
struct Gathered {
    entities: Vec<Entity>,
    entities_total: usize,
    indicators: Vec<Indicator>,
    skipped_indicators: usize,
    ti: Vec<TiFinding>,
    findings: Vec<Finding>,
    alerts: Vec<Value>,
    notes: Vec<String>,
}

async fn gather(ctx: &Context, id: &IncidentId) -> Result<Gathered, FunctionError> {
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

/// Handles one triage request.
pub async fn run(
    ctx: &Context,
    req: InvocationRequest,
) -> Result<InvocationResponse, FunctionError> {
    let trigger = QueueTrigger::from_request(&req, TRIGGER)?;
    let request = TriageRequest::parse_with(&trigger.message, ctx.settings.workspace.as_ref())?;
    let id = &request.incident_id;
    let key = triaged_key(id);
    let mut response = InvocationResponse::default();
    let recorded = load_decision(ctx, id).await?;
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

async fn load_decision(ctx: &Context, id: &IncidentId) -> Result<Option<Decision>, FunctionError> {
    match ctx.ledger.get(&decision_key(id)).await? {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| FunctionError::Failed(format!("recorded decision is unreadable: {e}"))),
    }
}

/// Reads, assesses, writes the report and records the decision (or adopts the one another
/// delivery recorded first).
async fn decide(ctx: &Context, id: &IncidentId) -> Result<Decision, FunctionError> {
    let incident = ctx.incidents.get(id).await?;
    let g = gather(ctx, id).await?;
    let (verdict, significant, target_severity, target_status, mut reasons) = assess(
        ctx.settings.triage_rule,
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
        load_decision(ctx, id)
            .await?
            .ok_or_else(|| FunctionError::Retry("decision recorded but not readable yet".into()))
    }
}

/// Completes the decision's effects; returns the outcome in words.
async fn apply(ctx: &Context, id: &IncidentId, d: &Decision) -> Result<String, FunctionError> {
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

fn verdict_name(v: Option<TiSeverity>) -> &'static str {
    v.map(|v| v.msticpy()).unwrap_or("none")
}

fn event(id: &IncidentId, d: &Decision, outcome: &str) -> Value {
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

fn notable(findings: &[Finding]) -> Vec<&Finding> {
    findings
        .iter()
        .filter(|f| f.severity >= TiSeverity::Warning)
        .collect()
}

fn render_comment(d: &Decision, kept: Option<&ReadStamp>) -> String {
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
        text.push_str(&format!(
            "<li>{} — {} ({}: {})</li>",
            escape_html(&f.about),
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

fn alert_time(a: &Value) -> String {
    a.pointer("/properties/startTimeUtc")
        .or_else(|| a.pointer("/properties/timeGenerated"))
        .or_else(|| a.get("TimeGenerated"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn render_report(incident: &Incident, g: &Gathered, d: &Decision) -> String {
    let p = &incident.properties;
    let e = escape_html;
    let mut html = String::with_capacity(16 * 1024);
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
    html.push_str("</ul><h2>Findings</h2><table><tr><th>Level</th><th>About</th><th>Source</th><th>Reason</th><th>Query</th></tr>");
    for f in &d.findings {
        html.push_str(&format!(
            "<tr class='{lvl}'><td>{lvl}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            e(&f.about),
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
    html.push_str("</table><h2>Threat intelligence by provider</h2><table><tr><th>Indicator</th><th>Provider</th><th>Level</th><th>Details</th></tr>");
    for i in &g.indicators {
        let found: Vec<&TiFinding> = g.ti.iter().filter(|f| &f.indicator == i).collect();
        if found.is_empty() {
            html.push_str(&format!(
                "<tr><td>{} {}</td><td>-</td><td>not known</td><td></td></tr>",
                e(&i.kind),
                e(&i.value)
            ));
        }
        for f in found {
            html.push_str(&format!(
                "<tr class='{lvl}'><td>{} {}</td><td>{}</td><td>{lvl}</td><td>{}</td></tr>",
                e(&i.kind),
                e(&i.value),
                e(&f.provider),
                e(&f.details),
                lvl = f.severity.msticpy()
            ));
        }
    }
    html.push_str("</table>");
    if g.skipped_indicators > 0 {
        html.push_str(&format!(
            "<p>{} further indicator(s) not checked (limit {MAX_INDICATORS}).</p>",
            g.skipped_indicators
        ));
    }
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
    if !unknown.is_empty() {
        let list: Vec<String> = unknown.iter().map(|k| e(k)).collect();
        html.push_str(&format!(
            "<p>Entity kinds this version does not read (listed, not assessed): {}</p>",
            list.join(", ")
        ));
    }
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
    html.push_str(&format!(
        "</table><p><small>Decision {} at {}; incident {}</small></p></body></html>",
        e(&d.event_id),
        e(&d.decided_at),
        e(&d.incident_id)
    ));
    html
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

    fn run_assess(
        rule: TriageRule,
        inc: &Incident,
        i: &[Indicator],
        f: &[TiFinding],
    ) -> (
        Option<TiSeverity>,
        bool,
        Option<Severity>,
        Option<String>,
        Vec<String>,
    ) {
        let findings: Vec<Finding> = f.iter().map(Finding::from_ti).collect();
        assess(rule, inc, i, f, &findings)
    }

    #[test]
    fn seed_rule_raises_any_warning_to_high_and_new() {
        let (i, f) = finding("198.51.100.23", TiSeverity::Warning);
        let (_, sig, sev, status, reasons) = run_assess(
            TriageRule::Seed,
            &incident(Severity::Low, "Active"),
            &[i],
            &[f],
        );
        assert!(sig);
        assert_eq!(
            (sev, status.as_deref()),
            (Some(Severity::High), Some("New"))
        );
        assert!(reasons[0].contains("1 warning"), "{reasons:?}");
    }

    #[test]
    fn graded_rule_warning_never_lowers() {
        let (i, f) = finding("198.51.100.23", TiSeverity::Warning);
        let (_, sig, sev, status, _) = run_assess(
            TriageRule::Graded,
            &incident(Severity::High, "Active"),
            &[i],
            &[f],
        );
        assert_eq!((sig, sev, status), (true, None, None));
    }

    #[test]
    fn all_benign_lowers_but_one_unknown_does_not() {
        let (i, f) = finding("192.0.2.10", TiSeverity::Benign);
        let a = run_assess(
            TriageRule::Seed,
            &incident(Severity::High, "New"),
            std::slice::from_ref(&i),
            std::slice::from_ref(&f),
        );
        assert_eq!(a.2, Some(Severity::Low));
        let unknown = Indicator {
            kind: "ipv4".into(),
            value: "192.0.2.99".into(),
        };
        let b = run_assess(
            TriageRule::Seed,
            &incident(Severity::High, "New"),
            &[i, unknown],
            &[f],
        );
        assert_eq!((b.2, b.1), (None, false));
        assert!(b.4[0].contains("nothing rated"), "{:?}", b.4);
    }

    #[test]
    fn closed_incidents_are_left_alone() {
        let (i, f) = finding("203.0.113.66", TiSeverity::High);
        let a = run_assess(
            TriageRule::Seed,
            &incident(Severity::Low, "Closed"),
            &[i],
            &[f],
        );
        assert!(!a.1 && a.2.is_none());
    }

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
