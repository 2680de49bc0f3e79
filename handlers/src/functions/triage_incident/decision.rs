//! What triage decides: the rule, the findings, the incident as first read, and the
//! recorded [`Decision`]; [`assess`] turns findings into a verdict and target changes.

use crate::ports::{Ledger, PortError, PortResult, TiFinding, TiSeverity};
use crate::sentinel::{Incident, IncidentId, Indicator, Severity};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How findings become a severity change (`SOCWIRE_TRIAGE_RULE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TriageRule {
    /// The Sentinel notebooks' automated triage (AutomatedNotebooks-IncidentTriage and its
    /// manager): threat intelligence rating an IP address or a URL high or warning sets
    /// severity High and status New; nothing else changes the incident (domain checks and
    /// workspace findings are reported, not acted on). `seed` is accepted as a name for it.
    #[default]
    Notebook,
    /// Every finding counts: high → High; warning → at least Medium (never lowers, status
    /// kept); every indicator allow-listed → Low.
    Graded,
}

impl std::str::FromStr for TriageRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "notebook" | "seed" => Ok(TriageRule::Notebook),
            "graded" => Ok(TriageRule::Graded),
            other => Err(format!("triage rule {other:?}: use notebook or graded")),
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
    /// Where an indicator found only in free text came from (`from text: incident
    /// description`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

impl Finding {
    pub(super) fn from_ti(f: &TiFinding) -> Self {
        Self {
            about: format!("{} {}", f.indicator.kind, f.indicator.value),
            source: f.provider.clone(),
            severity: f.severity,
            reason: f.details.clone(),
            query: None,
            origin: None,
        }
    }
}

/// True for the indicators the notebook's rule acts on: IP addresses and URLs.
fn notebook_kind(kind: &str) -> bool {
    matches!(kind, "ipv4" | "ipv6" | "url")
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
    pub(super) fn of(incident: &Incident) -> Self {
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

/// The decision recorded for `incident`, if triage has recorded one (an unreadable record is
/// an error, never "not triaged").
pub async fn recorded_decision(
    ledger: &dyn Ledger,
    incident: &IncidentId,
) -> PortResult<Option<Decision>> {
    match ledger.get(&decision_key(incident)).await? {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| PortError::Permanent(format!("recorded decision is unreadable: {e}"))),
    }
}

/// What [`assess`] decides: the verdict, whether it matters, the new severity and status (only
/// where they change), and the reasons.
pub type Assessment = (
    Option<TiSeverity>,
    bool,
    Option<Severity>,
    Option<String>,
    Vec<String>,
);

/// Decides from the findings under `rule`. Closed incidents are never touched.
///
/// [`TriageRule::Notebook`] is the Sentinel incident-triage notebook's rule: its verdict is
/// the strongest threat-intelligence level on the incident's IP addresses and URLs, and high
/// or warning sets severity High and status New; nothing else acts. [`TriageRule::Graded`]
/// weighs every finding.
pub fn assess(
    rule: TriageRule,
    incident: &Incident,
    indicators: &[Indicator],
    ti: &[TiFinding],
    findings: &[Finding],
) -> Assessment {
    match rule {
        TriageRule::Notebook => assess_notebook(incident, ti, findings),
        TriageRule::Graded => assess_graded(incident, indicators, ti, findings),
    }
}

/// The notebook's rule: the strongest threat-intelligence level on IP addresses and URLs.
fn assess_notebook(incident: &Incident, ti: &[TiFinding], findings: &[Finding]) -> Assessment {
    let p = &incident.properties;
    let mut reasons = Vec::new();
    let count = |s: TiSeverity| findings.iter().filter(|f| f.severity == s).count();
    let acted_on: Vec<&TiFinding> = ti
        .iter()
        .filter(|f| notebook_kind(&f.indicator.kind) && f.severity != TiSeverity::Benign)
        .collect();
    let verdict = acted_on.iter().map(|f| f.severity).max();
    if p.status.eq_ignore_ascii_case("Closed") {
        reasons.push("the incident is closed: left alone".into());
        return (verdict, false, None, None, reasons);
    }
    let significant = verdict >= Some(TiSeverity::Warning);
    if significant {
        let n = |s: TiSeverity| acted_on.iter().filter(|f| f.severity == s).count();
        reasons.push(format!(
            "threat intelligence rates IP addresses or URLs: {} high and {} warning (rule: notebook)",
            n(TiSeverity::High),
            n(TiSeverity::Warning)
        ));
    } else {
        reasons.push(
            "no threat intelligence rates an IP address or URL high or warning (rule: notebook)"
                .into(),
        );
        let other = count(TiSeverity::High) + count(TiSeverity::Warning);
        if other > 0 {
            reasons.push(format!(
                "{other} other finding(s) rated warning or high (domains, hashes, workspace) are recorded, not acted on"
            ));
        }
    }
    let severity = significant
        .then_some(Severity::High)
        .filter(|t| *t != p.severity);
    let status = significant
        .then(|| "New".to_string())
        .filter(|s| !s.eq_ignore_ascii_case(&p.status));
    (verdict, significant, severity, status, reasons)
}

/// The graded rule: every finding weighs; all indicators allow-listed lowers severity.
fn assess_graded(
    incident: &Incident,
    indicators: &[Indicator],
    ti: &[TiFinding],
    findings: &[Finding],
) -> Assessment {
    let p = &incident.properties;
    let mut reasons = Vec::new();
    let count = |s: TiSeverity| findings.iter().filter(|f| f.severity == s).count();
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
    if p.status.eq_ignore_ascii_case("Closed") {
        reasons.push("the incident is closed: left alone".into());
        return (verdict, false, None, None, reasons);
    }
    let severity = match verdict {
        Some(TiSeverity::High) => Some(Severity::High),
        Some(TiSeverity::Warning) => Some(p.severity.max(Severity::Medium)),
        Some(TiSeverity::Benign) if p.severity > Severity::Low => Some(Severity::Low),
        _ => None,
    };
    match verdict {
        Some(TiSeverity::High | TiSeverity::Warning) => reasons.push(format!(
            "{} high and {} warning finding(s) (rule: graded)",
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
    let significant = matches!(verdict, Some(TiSeverity::High | TiSeverity::Warning))
        || (verdict == Some(TiSeverity::Benign) && severity.is_some());
    if verdict == Some(TiSeverity::Benign) && !significant {
        reasons.push(format!("already {}: left alone", p.severity));
    }
    (verdict, significant, severity, None, reasons)
}

/// The verdict as MSTICPy names it, or `none`.
pub(super) fn verdict_name(v: Option<TiSeverity>) -> &'static str {
    v.map(|v| v.msticpy()).unwrap_or("none")
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

    fn of_kind(kind: &str, value: &str, severity: TiSeverity) -> (Indicator, TiFinding) {
        let (mut i, mut f) = finding(value, severity);
        i.kind = kind.into();
        f.indicator.kind = kind.into();
        (i, f)
    }

    #[test]
    fn notebook_rule_acts_only_on_ti_for_ip_addresses_and_urls() {
        // Threat intelligence warning on an IP → High/New, as the notebook's manager does.
        let (i, f) = finding("198.51.100.23", TiSeverity::Warning);
        let (verdict, sig, sev, status, reasons) = run_assess(
            TriageRule::Notebook,
            &incident(Severity::Low, "Active"),
            &[i],
            &[f],
        );
        assert_eq!(verdict, Some(TiSeverity::Warning));
        assert!(sig);
        assert_eq!(
            (sev, status.as_deref()),
            (Some(Severity::High), Some("New"))
        );
        assert!(reasons[0].contains("1 warning"), "{reasons:?}");
        let (i, f) = of_kind("url", "http://phish.example.net/login", TiSeverity::High);
        let a = run_assess(
            TriageRule::Notebook,
            &incident(Severity::Medium, "New"),
            &[i],
            &[f],
        );
        assert_eq!((a.1, a.2), (true, Some(Severity::High)));

        // A domain rated high, and a CloudFront host name's entropy: reported, not acted on.
        let (d, df) = of_kind("domain", "c2.evil.example", TiSeverity::High);
        let mut findings: Vec<Finding> = vec![Finding::from_ti(&df)];
        findings.extend(super::super::evidence::domain_checks(
            "d2x9wz7p4hq1k8.cloudfront.net",
        ));
        assert!(
            findings
                .iter()
                .any(|f| f.source == "domain-entropy" && f.severity == TiSeverity::Warning),
            "{findings:?}"
        );
        let (verdict, sig, sev, status, reasons) = assess(
            TriageRule::Notebook,
            &incident(Severity::Medium, "New"),
            &[d],
            &[df],
            &findings,
        );
        assert_eq!((verdict, sig, sev, status), (None, false, None, None));
        assert!(reasons[1].contains("not acted on"), "{reasons:?}");
        // Under the graded rule the same findings raise it.
        let (d, df) = of_kind("domain", "c2.evil.example", TiSeverity::High);
        let g = assess(
            TriageRule::Graded,
            &incident(Severity::Medium, "New"),
            &[d],
            &[df],
            &findings,
        );
        assert_eq!((g.1, g.2), (true, Some(Severity::High)));
    }

    #[test]
    fn notebook_rule_never_lowers_an_allow_listed_incident() {
        let (i, f) = finding("192.0.2.10", TiSeverity::Benign);
        let a = run_assess(
            TriageRule::Notebook,
            &incident(Severity::High, "New"),
            &[i],
            &[f],
        );
        assert_eq!((a.1, a.2, a.3), (false, None, None));
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
            TriageRule::Graded,
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
            TriageRule::Graded,
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
            TriageRule::Notebook,
            &incident(Severity::Low, "Closed"),
            &[i],
            &[f],
        );
        assert!(!a.1 && a.2.is_none());
    }
}
