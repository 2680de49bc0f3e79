//! Suricata EVE JSON (`event_type: alert`) onto the alert contract:
//!
//! | EVE | contract |
//! |---|---|
//! | `timestamp` (`+0000` offsets accepted) | TimeGenerated |
//! | — (EVE has no alert id) | AlertId: `eve-` + SHA-256 of the event (a redelivery keeps its id) |
//! | `alert.signature` | AlertName |
//! | `alert.signature_id` | SignatureId |
//! | `alert.category` | Category |
//! | `alert.severity` 1 / 2 / 3 / other | Severity High / Medium / Low / Informational |
//! | `src_ip`, `dest_ip`, `src_port`, `dest_port` | SrcIp, DstIp, SrcPort, DstPort |
//! | `app_proto` (else `proto`) | Protocol |
//! | `flow_id` | FlowId |
//! | `direction` `to_server` / `to_client` (Suricata 7) | Direction request / response |
//! | `alert.metadata.mitre_tactic_name[0]`, `mitre_technique_id` | Tactic, Techniques |
//! | `host` (the sensor name, when the pipeline adds it) | Sensor (`suricata` otherwise) |
//! | OT application protocol or port | Domain OT (IT otherwise) |
//! | `http.hostname`, `http.url`, `http.http_user_agent`, `http.status`, `dns.rrname`, `tls.sni`, `alert.action` | Extra (cut to 256 characters) |

use super::{clipped, content_id, is_ot_port, is_ot_protocol, put, rfc3339, text_at};
use serde_json::{json, Map, Value};

pub(super) fn to_contract(e: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    match e.get("event_type").and_then(Value::as_str) {
        Some("alert") => {}
        Some(other) => {
            return Err(format!(
                "event_type {:?} is not an alert",
                clipped(other).chars().take(32).collect::<String>()
            ))
        }
        None => return Err("event_type is required".into()),
    }
    let alert = e
        .get("alert")
        .and_then(Value::as_object)
        .ok_or("an alert event needs an alert object")?;
    let mut out = Map::new();
    put(
        &mut out,
        "TimeGenerated",
        text_at(e, &["timestamp"]).map(|t| rfc3339(&t)),
    );
    out.insert("AlertId".into(), content_id("eve", e).into());
    put(&mut out, "AlertName", text_at(alert, &["signature"]));
    put(&mut out, "SignatureId", text_at(alert, &["signature_id"]));
    put(&mut out, "Category", text_at(alert, &["category"]));
    let severity = match alert.get("severity").and_then(Value::as_u64) {
        Some(1) => "High",
        Some(2) => "Medium",
        Some(3) => "Low",
        _ => "Informational",
    };
    out.insert("Severity".into(), severity.into());
    put(&mut out, "SrcIp", text_at(e, &["src_ip"]));
    put(&mut out, "DstIp", text_at(e, &["dest_ip"]));
    put(&mut out, "SrcPort", e.get("src_port").cloned());
    put(&mut out, "DstPort", e.get("dest_port").cloned());
    let app = text_at(e, &["app_proto"]).filter(|p| p != "failed");
    let protocol = app.clone().or_else(|| text_at(e, &["proto"]));
    let port = |k: &str| e.get(k).and_then(Value::as_u64).unwrap_or(0);
    let ot = protocol.as_deref().is_some_and(is_ot_protocol)
        || is_ot_port(port("dest_port"))
        || is_ot_port(port("src_port"));
    out.insert("Domain".into(), if ot { "OT" } else { "IT" }.into());
    put(&mut out, "Protocol", protocol);
    put(&mut out, "FlowId", text_at(e, &["flow_id"]));
    match e.get("direction").and_then(Value::as_str) {
        Some("to_server") => put(&mut out, "Direction", Some("request")),
        Some("to_client") => put(&mut out, "Direction", Some("response")),
        _ => {}
    }
    let metadata = alert.get("metadata");
    let first = |key: &str| -> Option<String> {
        metadata?
            .get(key)?
            .as_array()?
            .first()?
            .as_str()
            .map(|s| s.replace('_', ""))
    };
    put(&mut out, "Tactic", first("mitre_tactic_name"));
    if let Some(ids) = metadata
        .and_then(|m| m.get("mitre_technique_id"))
        .and_then(Value::as_array)
    {
        let ids: Vec<Value> = ids
            .iter()
            .filter(|v| v.is_string())
            .take(crate::alert::MAX_TECHNIQUES)
            .cloned()
            .collect();
        if !ids.is_empty() {
            out.insert("Techniques".into(), Value::Array(ids));
        }
    }
    out.insert(
        "Sensor".into(),
        text_at(e, &["host"])
            .map_or_else(
                || "suricata".to_string(),
                |h| clipped(&format!("suricata {h}")),
            )
            .into(),
    );
    let mut extra = Map::new();
    for (key, path) in [
        ("HttpHost", &["http", "hostname"][..]),
        ("Url", &["http", "url"]),
        ("UserAgent", &["http", "http_user_agent"]),
        ("HttpStatus", &["http", "status"]),
        ("DnsName", &["dns", "rrname"]),
        ("TlsSni", &["tls", "sni"]),
    ] {
        put(&mut extra, key, text_at(e, path).map(|t| clipped(&t)));
    }
    put(&mut extra, "Action", text_at(alert, &["action"]));
    put(&mut extra, "AppProto", app);
    if !extra.is_empty() {
        out.insert("Extra".into(), json!(extra));
    }
    Ok(out)
}
