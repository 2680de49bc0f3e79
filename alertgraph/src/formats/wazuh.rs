//! Wazuh alerts JSON (`alerts.json`) onto the alert contract:
//!
//! | Wazuh | contract |
//! |---|---|
//! | `timestamp` (`+0000` offsets accepted) | TimeGenerated |
//! | `id` (else SHA-256 of the alert) | AlertId `wazuh-{id}` |
//! | `rule.description` | AlertName |
//! | `rule.id` | SignatureId |
//! | `rule.groups` (joined) | Category |
//! | `rule.level` 0–3 / 4–6 / 7–11 / 12–15 | Severity Informational / Low / Medium / High (Wazuh's rule classification: 12 and above are high-importance events) |
//! | `rule.mitre.tactic[0]`, `rule.mitre.id` | Tactic, Techniques |
//! | `agent.ip`, `agent.name` | the host the alert is about: DstIp/DstHost when a peer is known, else SrcIp/SrcHost (host-only) |
//! | `data.srcip`, `data.srcport`, `data.dstport` | SrcIp (the peer), SrcPort, DstPort |
//! | `data.srcuser` (else `data.dstuser`, `data.win.eventdata.targetUserName`) | Account |
//! | `data.win.eventdata.targetDomainName` | AccountDomain |
//! | `data.win.eventdata.targetLogonId` (else `subjectLogonId`) | LogonId |
//! | `data.win.eventdata.image` (else `data.audit.exe`) | ProcessImage |
//! | `data.win.eventdata.commandLine` (else `data.audit.command`) | CommandLineHash (SHA-256; the line is not kept) |
//! | `manager.name` | Sensor `wazuh {manager}` |
//! | `location`, `full_log`, `data.url` | Extra (cut to 256 characters) |

use super::{
    clipped, command_line_hash, content_id, printable, put, put_extra, put_techniques,
    put_timestamp, sensor, text_at,
};
use serde_json::{Map, Value};

pub(super) fn to_contract(w: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    let rule = w
        .get("rule")
        .and_then(Value::as_object)
        .ok_or("a Wazuh alert needs a rule object")?;
    let mut out = Map::new();
    put_timestamp(&mut out, w);
    let id = text_at(w, &["id"]).map_or_else(|| content_id("wazuh", w), |id| format!("wazuh-{id}"));
    out.insert("AlertId".into(), id.into());
    read_rule(&mut out, rule);
    read_hosts(&mut out, w)?;
    read_identity(&mut out, w);
    out.insert(
        "Sensor".into(),
        sensor("wazuh", text_at(w, &["manager", "name"])).into(),
    );
    put_extra(&mut out, extra(w));
    Ok(out)
}

/// Reads the rule: name, id, groups, severity by level, and its MITRE tactic and techniques.
fn read_rule(out: &mut Map<String, Value>, rule: &Map<String, Value>) {
    put(out, "AlertName", text_at(rule, &["description"]));
    put(out, "SignatureId", text_at(rule, &["id"]));
    if let Some(groups) = rule.get("groups").and_then(Value::as_array) {
        let joined: Vec<&str> = groups.iter().filter_map(Value::as_str).collect();
        if !joined.is_empty() {
            out.insert("Category".into(), clipped(&joined.join(",")).into());
        }
    }
    out.insert("Severity".into(), severity(rule).into());
    out.insert("Domain".into(), "IT".into());
    if let Some(mitre) = rule.get("mitre").and_then(Value::as_object) {
        let tactic = mitre
            .get("tactic")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().find_map(Value::as_str));
        if let Some(t) = tactic {
            out.insert("Tactic".into(), t.replace(' ', "").into());
        }
        put_techniques(out, mitre.get("id").and_then(Value::as_array));
    }
}

/// The severity of the rule's level (a number, or its text).
fn severity(rule: &Map<String, Value>) -> &'static str {
    match rule.get("level").and_then(|l| {
        l.as_u64()
            .or_else(|| l.as_str().and_then(|s| s.parse().ok()))
    }) {
        Some(0..=3) | None => "Informational",
        Some(4..=6) => "Low",
        Some(7..=11) => "Medium",
        Some(_) => "High",
    }
}

/// Reads the host the alert is about (the agent) and its peer (`data.srcip`) with their ports;
/// refuses an alert that names neither.
fn read_hosts(out: &mut Map<String, Value>, w: &Map<String, Value>) -> Result<(), String> {
    let agent_ip = text_at(w, &["agent", "ip"]).filter(|ip| ip.parse::<std::net::IpAddr>().is_ok());
    let agent_name = text_at(w, &["agent", "name"]);
    let peer = text_at(w, &["data", "srcip"])
        .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok() && Some(ip) != agent_ip.as_ref());
    if agent_ip.is_none() && agent_name.is_none() && peer.is_none() {
        return Err("neither agent.ip, agent.name nor data.srcip names a host".into());
    }
    match peer {
        Some(peer) if agent_ip.is_some() || agent_name.is_some() => {
            let named_only = agent_ip.is_none();
            out.insert("SrcIp".into(), peer.into());
            put(out, "DstIp", agent_ip);
            put(out, "DstHost", agent_name.map(|n| clipped(&n)));
            put(
                out,
                "SrcPort",
                text_at(w, &["data", "srcport"]).and_then(|p| p.parse::<u16>().ok()),
            );
            put(
                out,
                "DstPort",
                text_at(w, &["data", "dstport"]).and_then(|p| p.parse::<u16>().ok()),
            );
            if named_only {
                // The agent is known by name only: the peer is the alert's one address.
                out.remove("DstIp");
            }
        }
        _ => {
            put(out, "SrcIp", agent_ip);
            put(out, "SrcHost", agent_name.map(|n| clipped(&n)));
        }
    }
    Ok(())
}

/// Reads who and what ran: account and its domain, logon session, process image and the hash
/// of its command line (Windows event data, else Linux audit).
fn read_identity(out: &mut Map<String, Value>, w: &Map<String, Value>) {
    let win = |k: &str| text_at(w, &["data", "win", "eventdata", k]);
    put(
        out,
        "Account",
        text_at(w, &["data", "srcuser"])
            .or_else(|| text_at(w, &["data", "dstuser"]))
            .or_else(|| win("targetUserName"))
            .map(|a| clipped(&a)),
    );
    put(
        out,
        "AccountDomain",
        win("targetDomainName").map(|d| clipped(&d)),
    );
    put(
        out,
        "LogonId",
        win("targetLogonId").or_else(|| win("subjectLogonId")),
    );
    put(
        out,
        "ProcessImage",
        win("image")
            .or_else(|| text_at(w, &["data", "audit", "exe"]))
            .map(|p| clipped(&p)),
    );
    put(
        out,
        "CommandLineHash",
        win("commandLine")
            .or_else(|| text_at(w, &["data", "audit", "command"]))
            .map(|c| command_line_hash(&c)),
    );
}

/// The location, log line (control characters as spaces) and URL, cut to the field limit.
fn extra(w: &Map<String, Value>) -> Map<String, Value> {
    let mut extra = Map::new();
    put(
        &mut extra,
        "Location",
        text_at(w, &["location"]).map(|t| clipped(&t)),
    );
    put(
        &mut extra,
        "Log",
        text_at(w, &["full_log"]).map(|t| clipped(&printable(&t))),
    );
    put(
        &mut extra,
        "Url",
        text_at(w, &["data", "url"]).map(|t| clipped(&t)),
    );
    extra
}
