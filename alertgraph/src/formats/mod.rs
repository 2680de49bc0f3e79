//! Alerts as sensors write them: Suricata EVE JSON, Microsoft Sentinel `SecurityAlert` rows (as a
//! Log Analytics query returns them, or wrapped as `{"records": [...]}` by Sentinel's data export
//! to Event Hubs), Wazuh alerts JSON, and the `ALERTS.md` contract itself. Each format maps onto
//! the contract (field by field, documented in `ALERTS.md` and in each module), then goes through
//! the contract's one validator, so every alert is bounded and checked the same way whatever its
//! source. Detection is per object: one input may mix formats.

mod sentinel;
mod suricata;
mod wazuh;

use crate::alert::{AlertView, Rejected, MAX_FIELD_CHARS};
use crate::Alert;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Largest alert object read (an Event Hubs event is at most 1 MiB).
pub const MAX_ALERT_BYTES: usize = 1024 * 1024;

/// Most rows read from one `records` wrapper or query response.
pub const MAX_RECORDS: usize = 1_000_000;

/// An input format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Detected per object.
    #[default]
    Auto,
    /// The `ALERTS.md` contract.
    Alerts,
    /// Suricata EVE JSON, `event_type: alert`.
    Suricata,
    /// Microsoft Sentinel `SecurityAlert` rows.
    Sentinel,
    /// Wazuh alerts JSON.
    Wazuh,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Format::Auto),
            "alerts" => Ok(Format::Alerts),
            "suricata" | "eve" => Ok(Format::Suricata),
            "sentinel" => Ok(Format::Sentinel),
            "wazuh" => Ok(Format::Wazuh),
            _ => Err(format!(
                "{s:?}: the format is auto, alerts, suricata, sentinel or wazuh"
            )),
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Auto => "auto",
            Format::Alerts => "ALERTS.md",
            Format::Suricata => "Suricata EVE",
            Format::Sentinel => "Sentinel SecurityAlert",
            Format::Wazuh => "Wazuh",
        })
    }
}

/// Which format an object is in, by the fields only that format has.
pub fn detect(object: &Map<String, Value>) -> Option<Format> {
    if object.contains_key("event_type") {
        Some(Format::Suricata)
    } else if object.get("rule").is_some_and(Value::is_object)
        && ["agent", "manager", "decoder", "full_log"]
            .iter()
            .any(|k| object.contains_key(*k))
    {
        Some(Format::Wazuh)
    } else if object.contains_key("SystemAlertId")
        || object.contains_key("AlertSeverity")
        || object.get("Type").and_then(Value::as_str) == Some("SecurityAlert")
    {
        Some(Format::Sentinel)
    } else if object.contains_key("AlertId") {
        Some(Format::Alerts)
    } else {
        None
    }
}

/// One alert read, or why not; `record` numbers the object within a wrapper or array (from 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Item<T> {
    /// Position within a `records` wrapper, query response or array (0 for a lone object).
    pub record: usize,
    /// The alert, or why it was refused.
    pub result: Result<T, Rejected>,
}

fn rejected(reason: impl Into<String>) -> Rejected {
    Rejected {
        alert_id: None,
        reason: reason.into(),
    }
}

/// The alerts of one JSON value in `format`: an alert object, an array of them, a `records`
/// wrapper or a Log Analytics query response. Every element is read on its own, so one bad
/// alert does not take its neighbours down.
pub fn alerts_of_value(value: &Value, format: Format, now_ms: Option<i64>) -> Vec<Item<Alert>> {
    match value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| Item {
                record: i + 1,
                result: one_alert(v, format, now_ms),
            })
            .collect(),
        Value::Object(m) if m.get("records").is_some_and(Value::is_array) => {
            let records = m["records"].as_array().map_or(&[][..], Vec::as_slice);
            records
                .iter()
                .take(MAX_RECORDS)
                .enumerate()
                .map(|(i, v)| Item {
                    record: i + 1,
                    result: one_alert(v, format, now_ms),
                })
                .chain(too_many(records.len()))
                .collect()
        }
        Value::Object(m) if m.get("tables").is_some_and(Value::is_array) => {
            query_rows(&m["tables"])
                .into_iter()
                .enumerate()
                .map(|(i, row)| Item {
                    record: i + 1,
                    result: row.and_then(|v| one_alert(&v, format, now_ms)),
                })
                .collect()
        }
        one => vec![Item {
            record: 0,
            result: one_alert(one, format, now_ms),
        }],
    }
}

fn too_many(n: usize) -> Option<Item<Alert>> {
    (n > MAX_RECORDS).then(|| Item {
        record: MAX_RECORDS + 1,
        result: Err(rejected(format!(
            "{} rows beyond the first {MAX_RECORDS} of one wrapper were not read",
            n - MAX_RECORDS
        ))),
    })
}

/// The rows of a Log Analytics query response (`tables[].columns/rows`) as objects.
fn query_rows(tables: &Value) -> Vec<Result<Value, Rejected>> {
    let mut out = Vec::new();
    for table in tables.as_array().map_or(&[][..], Vec::as_slice) {
        let columns: Vec<&str> = table
            .get("columns")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .map(|c| c.get("name").and_then(Value::as_str).unwrap_or(""))
            .collect();
        for row in table
            .get("rows")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice)
        {
            if out.len() >= MAX_RECORDS {
                out.push(Err(rejected(format!(
                    "rows beyond the first {MAX_RECORDS} of one query response were not read"
                ))));
                return out;
            }
            out.push(match row.as_array() {
                Some(cells) if cells.len() == columns.len() => Ok(Value::Object(
                    columns
                        .iter()
                        .zip(cells)
                        .map(|(c, v)| (c.to_string(), v.clone()))
                        .collect(),
                )),
                _ => Err(rejected("a query row does not have one value per column")),
            });
        }
    }
    out
}

/// One object in `format` (detected when Auto) as a validated alert.
pub fn one_alert(value: &Value, format: Format, now_ms: Option<i64>) -> Result<Alert, Rejected> {
    let Some(object) = value.as_object() else {
        return Err(rejected("an alert must be a JSON object"));
    };
    let format = match format {
        Format::Auto => detect(object).ok_or_else(|| {
            rejected("not an alert in a known format (ALERTS.md, Suricata EVE, Sentinel SecurityAlert, Wazuh)")
        })?,
        f => f,
    };
    let contract = match format {
        Format::Alerts | Format::Auto => return Alert::from_json(value, now_ms),
        Format::Suricata => suricata::to_contract(object),
        Format::Sentinel => sentinel::to_contract(object),
        Format::Wazuh => wazuh::to_contract(object),
    };
    let prefix = |r: Rejected| Rejected {
        reason: format!("{format} alert: {}", r.reason),
        ..r
    };
    let contract = contract.map_err(rejected).map_err(prefix)?;
    Alert::from_json(&Value::Object(contract), now_ms).map_err(prefix)
}

/// A line of JSON text held as the alerts it yields, borrowing from the line where it can.
pub type LineItems<'a> = Vec<Item<AlertView<'a>>>;

#[derive(Deserialize)]
struct Wrapper<'a> {
    #[serde(borrow, default)]
    records: Option<Vec<&'a RawValue>>,
    #[serde(borrow, default)]
    tables: Option<&'a RawValue>,
}

/// The alerts of one line of text in `format` (JSON lines input). An `ALERTS.md` line is read
/// without building a JSON tree; a `records` wrapper of any size is read record by record (each
/// at most [`MAX_ALERT_BYTES`]); any other line holding more than [`MAX_ALERT_BYTES`] is refused.
pub fn alerts_of_line(line: &str, format: Format, now_ms: Option<i64>) -> LineItems<'_> {
    let lone = |result| vec![Item { record: 0, result }];
    let fast = matches!(format, Format::Alerts)
        || (format == Format::Auto
            && line.len() <= MAX_ALERT_BYTES
            && line.contains("\"AlertId\""));
    if fast {
        match AlertView::parse(line, now_ms) {
            Ok(a) => return lone(Ok(a)),
            Err(r) if format == Format::Alerts => return lone(Err(r)),
            // Another format that happens to carry an AlertId key: read it generically.
            Err(_) => {}
        }
    }
    if line.len() > MAX_ALERT_BYTES {
        return match serde_json::from_str::<Wrapper<'_>>(line) {
            Ok(Wrapper {
                records: Some(records),
                ..
            }) => read_records(&records, format, now_ms),
            Ok(Wrapper {
                tables: Some(tables),
                ..
            }) => match serde_json::from_str::<Value>(tables.get()) {
                Ok(t) => owned(alerts_of_value(
                    &Value::Object(Map::from_iter([("tables".to_string(), t)])),
                    format,
                    now_ms,
                )),
                Err(e) => lone(Err(rejected(format!("not JSON: {e}")))),
            },
            Ok(_) => lone(Err(rejected(format!(
                "a line of {} bytes holding one alert (the limit is {} bytes, unless it is a records wrapper)",
                line.len(),
                MAX_ALERT_BYTES
            )))),
            Err(e) => lone(Err(rejected(format!("not JSON: {e}")))),
        };
    }
    match serde_json::from_str::<Value>(line) {
        Ok(v) => owned(alerts_of_value(&v, format, now_ms)),
        Err(e) => lone(Err(rejected(format!("not JSON: {e}")))),
    }
}

fn read_records(records: &[&RawValue], format: Format, now_ms: Option<i64>) -> LineItems<'static> {
    let mut out = Vec::with_capacity(records.len().min(MAX_RECORDS) + 1);
    for (i, raw) in records.iter().take(MAX_RECORDS).enumerate() {
        let result = if raw.get().len() > MAX_ALERT_BYTES {
            Err(rejected(format!(
                "record of {} bytes (the limit is {MAX_ALERT_BYTES})",
                raw.get().len()
            )))
        } else {
            serde_json::from_str::<Value>(raw.get())
                .map_err(|e| rejected(format!("not JSON: {e}")))
                .and_then(|v| one_alert(&v, format, now_ms))
        };
        out.push(Item {
            record: i + 1,
            result: result.map(view_of),
        });
    }
    if let Some(extra) = too_many(records.len()) {
        out.push(Item {
            record: extra.record,
            result: extra.result.map(view_of),
        });
    }
    out
}

fn owned(items: Vec<Item<Alert>>) -> LineItems<'static> {
    items
        .into_iter()
        .map(|i| Item {
            record: i.record,
            result: i.result.map(view_of),
        })
        .collect()
}

fn view_of(a: Alert) -> AlertView<'static> {
    AlertView::from(a)
}

impl From<Alert> for AlertView<'static> {
    /// An owned alert as a view that owns its text.
    fn from(a: Alert) -> Self {
        use std::borrow::Cow;
        let own = |t: Option<String>| t.map(Cow::Owned);
        AlertView {
            time_generated: a.time_generated,
            alert_id: Cow::Owned(a.alert_id),
            alert_name: Cow::Owned(a.alert_name),
            severity: a.severity,
            domain: a.domain,
            src_ip: Cow::Owned(a.src_ip),
            dst_ip: own(a.dst_ip),
            src_host: own(a.src_host),
            dst_host: own(a.dst_host),
            dst_port: a.dst_port,
            protocol: own(a.protocol),
            tactic: own(a.tactic),
            ext: (!a.ext.is_empty()).then(|| Box::new(a.ext)),
        }
    }
}

// Helpers the format modules share.

/// The text at a JSON pointer (`/a/b`), when it is a non-empty string or a number.
pub(crate) fn text_at(object: &Map<String, Value>, path: &[&str]) -> Option<String> {
    let mut v = object.get(path[0])?;
    for key in &path[1..] {
        v = v.get(*key)?;
    }
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `text` cut to the contract's field limit (with an ellipsis), for fields carried as context
/// (URLs, log lines): those may be long, and losing their tail loses no alert.
pub(crate) fn clipped(text: &str) -> String {
    if text.chars().count() <= MAX_FIELD_CHARS {
        return text.to_string();
    }
    let mut out: String = text.chars().take(MAX_FIELD_CHARS - 1).collect();
    out.push('…');
    out
}

/// Text with control characters replaced by spaces (log lines carry tabs and newlines).
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A timestamp with a `+0000`-style offset rewritten as RFC 3339's `+00:00`.
pub(crate) fn rfc3339(text: &str) -> String {
    let b = text.as_bytes();
    let n = b.len();
    if n > 5 && (b[n - 5] == b'+' || b[n - 5] == b'-') && b[n - 4..].iter().all(u8::is_ascii_digit)
    {
        format!("{}:{}", &text[..n - 2], &text[n - 2..])
    } else {
        text.to_string()
    }
}

/// A stable id for an alert its sensor gave none: `prefix` and the first 128 bits of SHA-256 of
/// the object's JSON text, so a redelivered alert gets the same id and is recognised.
pub(crate) fn content_id(prefix: &str, object: &Map<String, Value>) -> String {
    let text = serde_json::to_string(object).unwrap_or_default();
    let digest = Sha256::digest(text.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}-{hex}")
}

/// SHA-256 of a command line, first 128 bits in hex.
pub(crate) fn command_line_hash(text: &str) -> String {
    Sha256::digest(text.as_bytes())[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Protocols of industrial networks.
pub(crate) fn is_ot_protocol(p: &str) -> bool {
    [
        "modbus", "dnp3", "s7", "s7comm", "opc-ua", "opcua", "iec104", "iec-104", "enip", "cip",
        "bacnet", "profinet", "goose", "mms",
    ]
    .iter()
    .any(|o| o.eq_ignore_ascii_case(p))
}

/// Well-known ports of industrial protocols (Modbus 502, DNP3 20000, EtherNet/IP 44818 and 2222,
/// S7 102, OPC UA 4840, BACnet 47808, IEC 60870-5-104 2404).
pub(crate) fn is_ot_port(port: u64) -> bool {
    [502, 20000, 44818, 2222, 102, 4840, 47808, 2404].contains(&port)
}

/// Sets `key` to `value` in `out` when there is one.
pub(crate) fn put(out: &mut Map<String, Value>, key: &str, value: Option<impl Into<Value>>) {
    if let Some(v) = value {
        out.insert(key.to_string(), v.into());
    }
}

/// Sets TimeGenerated from the object's `timestamp` (`+0000`-style offsets accepted).
pub(crate) fn put_timestamp(out: &mut Map<String, Value>, object: &Map<String, Value>) {
    put(
        out,
        "TimeGenerated",
        text_at(object, &["timestamp"]).map(|t| rfc3339(&t)),
    );
}

/// Sets Techniques to the text ids of `ids` (at most [`crate::alert::MAX_TECHNIQUES`]), if any.
pub(crate) fn put_techniques(out: &mut Map<String, Value>, ids: Option<&Vec<Value>>) {
    let ids: Vec<Value> = ids
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter(|v| v.is_string())
        .take(crate::alert::MAX_TECHNIQUES)
        .cloned()
        .collect();
    if !ids.is_empty() {
        out.insert("Techniques".into(), Value::Array(ids));
    }
}

/// The Sensor of a `product` alert: `{product} {name}` (cut to the field limit) when the record
/// names its sensor, else `product`.
pub(crate) fn sensor(product: &str, name: Option<String>) -> String {
    name.map_or_else(
        || product.to_string(),
        |n| clipped(&format!("{product} {n}")),
    )
}

/// Sets Extra to `extra` when it holds anything.
pub(crate) fn put_extra(out: &mut Map<String, Value>, extra: Map<String, Value>) {
    if !extra.is_empty() {
        out.insert("Extra".into(), Value::Object(extra));
    }
}

#[cfg(test)]
mod tests;
