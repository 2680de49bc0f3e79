//! `socwire sentinel import|export`: incidents in and out of the local Sentinel store, one JSON
//! object per line: `{"incident": …, "entities": […], "alerts": […]}` as the REST API returns
//! them (export adds `comments` and the recorded `triage` decision). Import also fills the
//! local workspace tables the typed questions read (`SecurityAlert` rows from the alerts, and
//! any rows under an optional `logs` key: `{"table": "SigninLogs", "TimeGenerated": …, …}`).

use clap::Subcommand;
use serde_json::{json, Map, Value};
use socwire::local::{lower_text, time_generated_ms};
use socwire::local::{LogRow, SqliteIncidentStore, SqliteLedger, SqliteWorkspace};
use socwire::ports::{IncidentStore, Ledger};
use socwire::sentinel::{Entity, Incident, IncidentId, Links, Subject};
use socwire_common::text::for_log;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// Longest line accepted by import.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// `socwire sentinel` actions.
#[derive(Subcommand, Debug)]
pub enum SentinelAction {
    /// Load incidents (JSONL) into the local Sentinel; existing ones are updated.
    Import {
        /// The JSONL file ("-": standard input).
        file: PathBuf,
    },
    /// Write every local incident with its entities, alerts, comments and triage decision.
    Export {
        /// Write here instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

/// What an import did.
#[derive(Debug, Default, PartialEq)]
pub struct ImportSummary {
    /// Incidents loaded (new or updated).
    pub loaded: usize,
    /// `(line number, reason)` of every refused line.
    pub refused: Vec<(usize, String)>,
}

/// Runs an action against the local state in `data_dir`.
pub async fn run(data_dir: &Path, action: SentinelAction) -> anyhow::Result<()> {
    let store = SqliteIncidentStore::open(&data_dir.join("sentinel.sqlite3"))?;
    match action {
        SentinelAction::Import { file } => {
            let workspace = SqliteWorkspace::open(&data_dir.join("workspace.sqlite3"))?;
            let reader: Box<dyn BufRead> = if file == Path::new("-") {
                Box::new(std::io::BufReader::new(std::io::stdin()))
            } else {
                Box::new(std::io::BufReader::new(
                    std::fs::File::open(&file)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?,
                ))
            };
            let summary = import(&store, &workspace, reader)?;
            for (line, reason) in &summary.refused {
                eprintln!("line {line}: refused: {}", for_log(reason, 300));
            }
            println!(
                "imported {} incident(s); {} line(s) refused",
                summary.loaded,
                summary.refused.len()
            );
            // A refused line is an error for whoever runs the import (the others are in).
            if !summary.refused.is_empty() {
                anyhow::bail!(
                    "{} line(s) refused (the other {} incident(s) were imported)",
                    summary.refused.len(),
                    summary.loaded
                );
            }
        }
        SentinelAction::Export { output } => {
            let ledger = SqliteLedger::open(&data_dir.join("ledger.sqlite3"))?;
            let mut out: Box<dyn Write> = match &output {
                Some(p) => Box::new(std::io::BufWriter::new(std::fs::File::create(p)?)),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let n = export(&store, &ledger, &mut out).await?;
            out.flush()?;
            if let Some(p) = output {
                println!("exported {n} incident(s) to {}", p.display());
            }
        }
    }
    Ok(())
}

/// One import line, validated: the incident, its entities, alerts and workspace rows.
type Line = (Incident, Vec<Entity>, Vec<Value>, Vec<Value>);

/// One import line, validated.
fn parse_line(text: &str) -> Result<Line, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v.as_object().ok_or("not a JSON object")?;
    let incident: Incident =
        serde_json::from_value(obj.get("incident").cloned().ok_or("no \"incident\"")?)
            .map_err(|e| format!("incident: {e}"))?;
    IncidentId::parse(&incident.id).map_err(|e| format!("incident id: {e}"))?;
    let list = |key: &str| -> Result<Vec<Value>, String> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => Ok(items.clone()),
            Some(_) => Err(format!("\"{key}\" is not an array")),
        }
    };
    let entities = list("entities")?
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            serde_json::from_value::<Entity>(e).map_err(|err| format!("entities[{i}]: {err}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((incident, entities, list("alerts")?, list("logs")?))
}

/// A `ThreatIntelIndicators` row of a `logs` entry as the local TI table keeps it: the
/// indicator kind its `ObservableKey` names, the canonical value, and the row.
pub fn ti_row(entry: &Map<String, Value>) -> Option<(String, String, Map<String, Value>)> {
    if entry.get("table").and_then(Value::as_str) != Some("ThreatIntelIndicators") {
        return None;
    }
    let key = entry.get("ObservableKey").and_then(Value::as_str)?;
    let value = entry.get("ObservableValue").and_then(Value::as_str)?;
    let kind = match key {
        "ipv4-addr:value" | "ipv6-addr:value" => "ip",
        "domain-name:value" => "domain",
        "url:value" => "url",
        "email-addr:value" => "email",
        k if k.starts_with("file:hashes") => "filehash",
        _ => return None,
    };
    let indicator = socwire::ioc::normalise(kind, value).ok()?;
    let mut body = entry.clone();
    body.remove("table");
    Some((indicator.kind, indicator.value, body))
}

/// `SecurityAlert` rows for an incident's alerts, one per host the incident names.
fn alert_rows(entities: &[Entity], alerts: &[Value]) -> Vec<LogRow> {
    let links = Links::new(entities);
    let hosts: Vec<String> = entities
        .iter()
        .flat_map(|e| e.observe(&links).subjects)
        .filter_map(|s| match s {
            Subject::Host(h) => Some(h.fqdn.unwrap_or(h.name)),
            _ => None,
        })
        .collect();
    let mut rows = Vec::new();
    for a in alerts {
        let p = a.get("properties").cloned().unwrap_or(Value::Null);
        let time = p.get("startTimeUtc").or_else(|| p.get("timeGenerated"));
        let body = json!({
            "TimeGenerated": time.cloned().unwrap_or(Value::Null),
            "AlertName": p.get("alertDisplayName").cloned().unwrap_or(Value::Null),
            "AlertSeverity": p.get("severity").cloned().unwrap_or(Value::Null),
            "ProviderName": p.get("productName").cloned().unwrap_or(Value::Null),
            "SystemAlertId": p.get("systemAlertId").cloned().unwrap_or(Value::Null),
        });
        let Value::Object(body) = body else { continue };
        let mut hosts_of: Vec<String> = hosts.clone();
        if let Some(h) = lower_text(p.get("compromisedEntity")) {
            hosts_of.push(h);
        }
        for host in hosts_of {
            rows.push(LogRow {
                table: "SecurityAlert".into(),
                host: Some(host),
                time_ms: time_generated_ms(time),
                body: body.clone(),
                ..Default::default()
            });
        }
    }
    rows
}

/// Imports JSONL from `reader`; a bad line is refused with its number and reason and the rest
/// still load.
pub fn import(
    store: &SqliteIncidentStore,
    workspace: &SqliteWorkspace,
    reader: impl BufRead,
) -> anyhow::Result<ImportSummary> {
    let mut summary = ImportSummary::default();
    let mut reader = reader;
    let reader = &mut reader;
    let mut line_no = 0;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = std::io::Read::take(&mut *reader, MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if buf.len() > MAX_LINE_BYTES && !buf.ends_with(b"\n") {
            summary
                .refused
                .push((line_no, format!("line is over {MAX_LINE_BYTES} bytes")));
            // Skip the rest of the line.
            let mut rest = Vec::new();
            reader.read_until(b'\n', &mut rest)?;
            continue;
        }
        let Ok(text) = std::str::from_utf8(&buf) else {
            summary.refused.push((line_no, "not UTF-8".into()));
            continue;
        };
        if text.trim().is_empty() {
            continue;
        }
        match parse_line(text) {
            Err(reason) => summary.refused.push((line_no, reason)),
            Ok((incident, entities, alerts, logs)) => {
                store
                    .import(&incident, &entities, &alerts)
                    .map_err(|e| anyhow::anyhow!("line {line_no}: {e}"))?;
                let mut rows = alert_rows(&entities, &alerts);
                for entry in logs.iter().filter_map(Value::as_object) {
                    match ti_row(entry) {
                        Some((kind, value, body)) => workspace
                            .add_indicator(&kind, &value, &body)
                            .map_err(|e| anyhow::anyhow!("line {line_no}: {e}"))?,
                        None => rows.extend(LogRow::from_log_entry(entry)),
                    }
                }
                workspace
                    .add_rows(&rows)
                    .map_err(|e| anyhow::anyhow!("line {line_no}: {e}"))?;
                summary.loaded += 1;
            }
        }
    }
    Ok(summary)
}

/// Writes every incident as one JSON line; returns how many.
pub async fn export(
    store: &SqliteIncidentStore,
    ledger: &SqliteLedger,
    out: &mut dyn Write,
) -> anyhow::Result<usize> {
    let incidents = store.list()?;
    for incident in &incidents {
        let id = IncidentId::parse(&incident.id)?;
        let comments: Vec<Value> = store
            .comments(&id)?
            .into_iter()
            .map(|c| json!({"id": c.comment_id, "message": c.message}))
            .collect();
        let decision = socwire::functions::triage_incident::recorded_decision(ledger, &id).await?;
        let outcome = ledger.get(&socwire::functions::triaged_key(&id)).await?;
        let triage = decision.map(|d| {
            json!({
                "verdict": d.verdict.map(|v| v.msticpy()),
                "significant": d.significant,
                "action": d.action(),
                "reasons": d.reasons,
                "findings": d.findings,
                "reportUrl": d.report_url,
                "decidedAt": d.decided_at,
                "outcome": outcome,
            })
        });
        let line = json!({
            "incident": incident,
            "entities": store.entities(&id).await?,
            "alerts": store.alerts(&id).await?,
            "comments": comments,
            "triage": triage,
        });
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")?;
    }
    Ok(incidents.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "/subscriptions/0000/resourceGroups/soc/providers/Microsoft.OperationalInsights/workspaces/ws/providers/Microsoft.SecurityInsights/Incidents/73e01a99-5cd7-4139-a149-9f2736ff2ab5";

    #[tokio::test]
    async fn import_updates_instead_of_duplicating_and_refuses_bad_lines_with_their_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteIncidentStore::open(&dir.path().join("s.sqlite3")).unwrap();
        let ws = SqliteWorkspace::open(&dir.path().join("w.sqlite3")).unwrap();
        let at = chrono::Utc::now().to_rfc3339();
        let line = |title: &str| {
            json!({"incident": {"id": ID, "name": "73e01a99-5cd7-4139-a149-9f2736ff2ab5", "etag": "\"x\"",
                "properties": {"title": title, "severity": "Low", "status": "New", "incidentNumber": 3}},
                "entities": [{"kind": "Host", "properties": {"hostName": "FIN-WS-042"}}],
                "alerts": [{"kind": "SecurityAlert", "properties": {"alertDisplayName": "Beacon", "severity": "High", "startTimeUtc": at}}]})
            .to_string()
        };
        let input = [
            line("first"),
            "{not json".to_string(),
            json!({"incident": {"id": ID.replace("73e01a99-5cd7-4139-a149-9f2736ff2ab5", ".."), "name": "x", "properties": {"title": "t", "severity": "Low", "status": "New"}}}).to_string(),
            json!({"incident": {"id": ID, "name": "x", "properties": {"title": "t", "severity": "Urgent", "status": "New"}}}).to_string(),
            json!({"incident": {"id": ID, "name": "x", "properties": {"title": "t", "severity": "Low", "status": "New"}}, "entities": {"kind": "Ip"}}).to_string(),
            String::new(),
            line("second"),
        ]
        .join("\n");
        let summary = import(&store, &ws, input.as_bytes()).unwrap();
        assert_eq!(summary.loaded, 2);
        let lines: Vec<usize> = summary.refused.iter().map(|r| r.0).collect();
        assert_eq!(lines, [2, 3, 4, 5], "{:?}", summary.refused);
        assert!(
            summary.refused[1].1.contains("incident id"),
            "{:?}",
            summary.refused
        );
        assert!(
            summary.refused[2].1.contains("Urgent"),
            "{:?}",
            summary.refused
        );
        let all = store.list().unwrap();
        assert_eq!(all.len(), 1, "updated, not duplicated");
        assert_eq!(all[0].properties.title, "second");
        let answer = socwire::ports::WorkspaceQueries::ask(
            &ws,
            &socwire::ports::Question::RecentAlertsForHost {
                host: socwire::sentinel::HostRef {
                    name: "fin-ws-042".into(),
                    fqdn: None,
                },
                days: 7,
            },
        )
        .await
        .unwrap();
        assert_eq!(
            answer.rows.len(),
            1,
            "the alert row is stored once: {answer:?}"
        );
        assert_eq!(answer.rows[0]["AlertName"], "Beacon");

        let ledger = SqliteLedger::open(&dir.path().join("l.sqlite3")).unwrap();
        let id = IncidentId::parse(ID).unwrap();
        store.put_comment(&id, "c-1", "<p>hi</p>").await.unwrap();
        let mut out = Vec::new();
        assert_eq!(export(&store, &ledger, &mut out).await.unwrap(), 1);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v["comments"][0],
            json!({"id": "c-1", "message": "<p>hi</p>"})
        );
        assert_eq!(v["entities"][0]["kind"], "Host");
        assert_eq!(v["alerts"][0]["properties"]["alertDisplayName"], "Beacon");
        // What export writes, import reads back.
        let again = import(&store, &ws, out.as_slice()).unwrap();
        assert_eq!((again.loaded, again.refused.len()), (1, 0));
    }
}
