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

use super::{
    clipped, content_id, is_ot_port, is_ot_protocol, put, put_extra, put_techniques, put_timestamp,
    sensor, text_at,
};
use serde_json::{Map, Value};

pub(super) fn to_contract(e: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    check_event_type(e)?;
    let alert = e
        .get("alert")
        .and_then(Value::as_object)
        .ok_or("an alert event needs an alert object")?;
    let mut out = Map::new();
    put_timestamp(&mut out, e);
    out.insert("AlertId".into(), content_id("eve", e).into());
    read_signature(&mut out, alert);
    let app = read_flow(&mut out, e);
    read_mitre(&mut out, alert.get("metadata"));
    out.insert(
        "Sensor".into(),
        sensor("suricata", text_at(e, &["host"])).into(),
    );
    put_extra(&mut out, extra(e, alert, app));
    Ok(out)
}

/// Refuses an event that is not an alert.
fn check_event_type(e: &Map<String, Value>) -> Result<(), String> {
    match e.get("event_type").and_then(Value::as_str) {
        Some("alert") => Ok(()),
        Some(other) => Err(format!(
            "event_type {:?} is not an alert",
            clipped(other).chars().take(32).collect::<String>()
        )),
        None => Err("event_type is required".into()),
    }
}

/// Reads the signature: name, id, category, and severity (1 is high).
fn read_signature(out: &mut Map<String, Value>, alert: &Map<String, Value>) {
    put(out, "AlertName", text_at(alert, &["signature"]));
    put(out, "SignatureId", text_at(alert, &["signature_id"]));
    put(out, "Category", text_at(alert, &["category"]));
    let severity = match alert.get("severity").and_then(Value::as_u64) {
        Some(1) => "High",
        Some(2) => "Medium",
        Some(3) => "Low",
        _ => "Informational",
    };
    out.insert("Severity".into(), severity.into());
}

/// Reads the flow: addresses, ports, protocol (and from it and the ports, IT or OT), flow id and
/// direction. Returns the application protocol Suricata recognised.
fn read_flow(out: &mut Map<String, Value>, e: &Map<String, Value>) -> Option<String> {
    put(out, "SrcIp", text_at(e, &["src_ip"]));
    put(out, "DstIp", text_at(e, &["dest_ip"]));
    put(out, "SrcPort", e.get("src_port").cloned());
    put(out, "DstPort", e.get("dest_port").cloned());
    let app = text_at(e, &["app_proto"]).filter(|p| p != "failed");
    let protocol = app.clone().or_else(|| text_at(e, &["proto"]));
    let port = |k: &str| e.get(k).and_then(Value::as_u64).unwrap_or(0);
    let ot = protocol.as_deref().is_some_and(is_ot_protocol)
        || is_ot_port(port("dest_port"))
        || is_ot_port(port("src_port"));
    out.insert("Domain".into(), if ot { "OT" } else { "IT" }.into());
    put(out, "Protocol", protocol);
    put(out, "FlowId", text_at(e, &["flow_id"]));
    match e.get("direction").and_then(Value::as_str) {
        Some("to_server") => put(out, "Direction", Some("request")),
        Some("to_client") => put(out, "Direction", Some("response")),
        _ => {}
    }
    app
}

/// Reads the rule's MITRE metadata: the first tactic and the technique ids.
fn read_mitre(out: &mut Map<String, Value>, metadata: Option<&Value>) {
    let first = |key: &str| -> Option<String> {
        metadata?
            .get(key)?
            .as_array()?
            .first()?
            .as_str()
            .map(|s| s.replace('_', ""))
    };
    put(out, "Tactic", first("mitre_tactic_name"));
    put_techniques(
        out,
        metadata
            .and_then(|m| m.get("mitre_technique_id"))
            .and_then(Value::as_array),
    );
}

/// The HTTP, DNS and TLS details, the action taken and the application protocol.
fn extra(
    e: &Map<String, Value>,
    alert: &Map<String, Value>,
    app: Option<String>,
) -> Map<String, Value> {
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
    extra
}
