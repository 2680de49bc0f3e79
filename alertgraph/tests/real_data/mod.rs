//! The public, labelled alert sets in `../shared/data` (CPTC-2017 Suricata alerts; AIT-ADS
//! scenarios), read as a user would feed them, and the measures issue #20 states: alerts an
//! analyst reads, row by row from the top, before the first compromise or post-exploitation
//! evidence; rows that claim a path through an attacker's address. Shared by the tests and
//! `cargo bench -p alertgraph -- --real`. Only the four AIT scenarios named here are read: the
//! others are held out for an independent check.
#![allow(dead_code)]

use alertgraph::formats::{one_alert, Format};
use alertgraph::{Alert, Subgraph};
use flate2::read::GzDecoder;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::PathBuf;

/// The AIT scenarios read here (the other four are held out).
pub const AIT_SCENARIOS: [&str; 4] = ["russellmitchell", "santos", "shaw", "wardbeck"];

/// AIT labels of compromise or post-exploitation steps (the authors' `event_label`); the
/// others are reconnaissance and attack attempts (`service_scan`, `dns_scan`, `dirb`, `wpscan`,
/// `online_cracking`) or `-`, not part of the attack.
pub const AIT_POST_EXPLOITATION: [&str; 5] = [
    "webshell_cmd",
    "attacker_change_user",
    "escalated_sudo_command",
    "crack_passwords",
    "dnsteal",
];

/// A labelled stream.
pub struct Dataset {
    pub name: String,
    /// Alerts in time order.
    pub alerts: Vec<Alert>,
    /// AlertIds of compromise or post-exploitation evidence.
    pub evidence: HashSet<String>,
    /// Attacker addresses.
    pub attackers: HashSet<String>,
    /// Lines the reader refused, with reasons (there should be none).
    pub refused: Vec<String>,
}

/// The folder holding the data sets: `SOCWIRE_REAL_DATA`, else `../shared/data` beside the
/// repository.
pub fn data_dir() -> PathBuf {
    std::env::var_os("SOCWIRE_REAL_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"))
}

fn gunzip(path: &PathBuf) -> String {
    let file = std::fs::File::open(path)
        .unwrap_or_else(|e| panic!("{}: {e} (set SOCWIRE_REAL_DATA)", path.display()));
    let mut text = String::new();
    GzDecoder::new(file)
        .read_to_string(&mut text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text
}

/// CPTC-2017 compromise evidence, by the signatures themselves (the data set's README): the
/// `ATTACK_RESPONSE` and `TROJAN` rule families and Suricata's "Successful … Privilege Gain"
/// classification types.
pub fn cptc_is_evidence(signature: &str, category: &str) -> bool {
    signature.contains("ATTACK_RESPONSE")
        || signature.contains("TROJAN")
        || (category.starts_with("Successful") && category.contains("Privilege Gain"))
}

/// One team's Suricata alerts (Splunk export of EVE lines), each team's `10.0.x.y` renamed
/// `10.<team>.x.y` so that teams can be merged; attackers are `10.<team>.254.0/24` (SAGE's rule).
pub fn cptc_team(team: u32) -> Dataset {
    let path = data_dir().join(format!("cptc-2017/NationalTeam{team}.json.gz"));
    let text = gunzip(&path);
    let export: Value = serde_json::from_str(text.trim_start_matches('\u{feff}'))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut d = Dataset {
        name: format!("CPTC team {team}"),
        alerts: Vec::new(),
        evidence: HashSet::new(),
        attackers: HashSet::new(),
        refused: Vec::new(),
    };
    let rename = |ip: &str| match ip.strip_prefix("10.0.") {
        Some(rest) => format!("10.{team}.{rest}"),
        None => ip.to_string(),
    };
    for item in export.as_array().map_or(&[][..], Vec::as_slice) {
        let Some(raw) = item.pointer("/result/_raw").and_then(Value::as_str) else {
            d.refused.push("no result._raw".into());
            continue;
        };
        let mut eve: Value = match serde_json::from_str(raw) {
            Ok(v) => v,
            Err(e) => {
                d.refused.push(format!("not JSON: {e}"));
                continue;
            }
        };
        for key in ["src_ip", "dest_ip"] {
            if let Some(ip) = eve.get(key).and_then(Value::as_str).map(rename) {
                if ip.starts_with(&format!("10.{team}.254.")) {
                    d.attackers.insert(ip.clone());
                }
                eve[key] = ip.into();
            }
        }
        let signature = eve
            .pointer("/alert/signature")
            .and_then(Value::as_str)
            .unwrap_or("");
        let category = eve
            .pointer("/alert/category")
            .and_then(Value::as_str)
            .unwrap_or("");
        let evidence = cptc_is_evidence(signature, category);
        match one_alert(&eve, Format::Suricata, None) {
            Ok(a) => {
                if evidence {
                    d.evidence.insert(a.alert_id.clone());
                }
                d.alerts.push(a);
            }
            Err(r) => d.refused.push(r.reason),
        }
    }
    d.alerts.sort_by(|a, b| {
        a.time_generated
            .cmp(&b.time_generated)
            .then_with(|| a.alert_id.cmp(&b.alert_id))
    });
    d
}

/// All ten teams merged into one stream.
pub fn cptc_all() -> Dataset {
    let mut all = Dataset {
        name: "CPTC all teams".into(),
        alerts: Vec::new(),
        evidence: HashSet::new(),
        attackers: HashSet::new(),
        refused: Vec::new(),
    };
    for team in 1..=10 {
        let d = cptc_team(team);
        all.alerts.extend(d.alerts);
        all.evidence.extend(d.evidence);
        all.attackers.extend(d.attackers);
        all.refused.extend(d.refused);
    }
    all.alerts.sort_by(|a, b| {
        a.time_generated
            .cmp(&b.time_generated)
            .then_with(|| a.alert_id.cmp(&b.alert_id))
    });
    all
}

/// One AIT-ADS scenario (CSV: time, name, ip, host, short, time_label, event_label). The CSV
/// names no peer: every alert is host-only, on the host whose detector fired. The CSV has no
/// severity: every alert is Medium. Each detector's prefix ("Wazuh", "Suricata", "AMiner") is
/// the sensor.
pub fn ait(scenario: &str) -> Dataset {
    assert!(
        AIT_SCENARIOS.contains(&scenario),
        "{scenario} is held out: only {AIT_SCENARIOS:?} are read"
    );
    let path = data_dir().join(format!("ait-ads/{scenario}_alerts.csv.gz"));
    let text = gunzip(&path);
    let mut d = Dataset {
        name: format!("AIT {scenario}"),
        alerts: Vec::new(),
        evidence: HashSet::new(),
        attackers: HashSet::new(),
        refused: Vec::new(),
    };
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).expect("column");
    let (time, name, ip, host, label) = (
        column("time"),
        column("name"),
        column("ip"),
        column("host"),
        column("event_label"),
    );
    for (n, line) in lines.enumerate() {
        let cells = split_csv(line);
        let cell = |i: usize| cells.get(i).map(String::as_str).unwrap_or("");
        let seconds: f64 = cell(time).parse().unwrap_or(f64::NAN);
        let detector = cell(name);
        let contract = serde_json::json!({
            "TimeGenerated": alertgraph::alert::format_time((seconds * 1000.0) as i64),
            "AlertId": format!("{scenario}-{}", n + 1),
            "AlertName": detector,
            "Severity": "Medium",
            "Domain": "IT",
            "SrcIp": cell(ip),
            "SrcHost": cell(host),
            "Sensor": detector.split(':').next().unwrap_or(""),
        });
        match Alert::from_json(&contract, None) {
            Ok(a) => {
                if AIT_POST_EXPLOITATION.contains(&cell(label)) {
                    d.evidence.insert(a.alert_id.clone());
                }
                d.alerts.push(a);
            }
            Err(r) => d.refused.push(format!("line {}: {}", n + 2, r.reason)),
        }
    }
    d.alerts.sort_by(|a, b| {
        a.time_generated
            .cmp(&b.time_generated)
            .then_with(|| a.alert_id.cmp(&b.alert_id))
    });
    d
}

/// Fields of one CSV line (double quotes group, `""` is a quote).
fn split_csv(line: &str) -> Vec<String> {
    let mut cells = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cells.last_mut().expect("cell").push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => cells.push(String::new()),
            (c, _) => cells.last_mut().expect("cell").push(c),
        }
    }
    cells
}

/// Alerts read, top row first and each row whole, up to and including the first row that holds
/// an evidence alert; None when no row does. Rows must list every AlertId
/// (`Config::list_all_alert_ids`).
pub fn alerts_read_to_evidence(
    ranked: &[Subgraph],
    evidence: &HashSet<String>,
) -> Option<(usize, usize)> {
    let mut read = 0;
    for (i, row) in ranked.iter().enumerate() {
        assert!(
            row.alert_ids.len() == row.alert_count as usize,
            "rows must list every AlertId for this measure"
        );
        read += row.alert_count as usize;
        if row.alert_ids.iter().any(|id| evidence.contains(&**id)) {
            return Some((read, i + 1));
        }
    }
    None
}

/// The same measure for a summary that groups alerts by rule and orders the groups by `key`.
fn summary_read(
    alerts: &[Alert],
    evidence: &HashSet<String>,
    key: impl Fn(&Group) -> (i64, i64),
) -> Option<usize> {
    let mut groups: HashMap<&str, Group> = HashMap::new();
    for a in alerts {
        let g = groups.entry(&a.alert_name).or_default();
        g.count += 1;
        g.severity = g.severity.max(a.severity.weight() as i64);
        g.evidence |= evidence.contains(&a.alert_id);
    }
    let mut ordered: Vec<(&str, Group)> = groups.into_iter().collect();
    ordered.sort_by(|a, b| key(&a.1).cmp(&key(&b.1)).then_with(|| a.0.cmp(b.0)));
    let mut read = 0;
    for (_, g) in ordered {
        read += g.count;
        if g.evidence {
            return Some(read);
        }
    }
    None
}

#[derive(Default, Clone, Copy)]
pub struct Group {
    count: usize,
    severity: i64,
    evidence: bool,
}

/// A SIEM's summary: one line per rule, highest severity first, then the most frequent.
pub fn siem_baseline(alerts: &[Alert], evidence: &HashSet<String>) -> Option<usize> {
    summary_read(alerts, evidence, |g| (-g.severity, -(g.count as i64)))
}

/// One statistic: one line per rule, the rarest first.
pub fn rarest_rule_baseline(alerts: &[Alert], evidence: &HashSet<String>) -> Option<usize> {
    summary_read(alerts, evidence, |g| (g.count as i64, 0))
}

/// Rows whose claimed path runs through an attacker's address (as an intermediate hop).
pub fn rows_with_path_through(ranked: &[Subgraph], attackers: &HashSet<String>) -> usize {
    ranked
        .iter()
        .filter(|r| {
            r.path.len() > 2
                && r.path[1..r.path.len() - 1]
                    .iter()
                    .any(|n| attackers.contains(&**n))
        })
        .count()
}
