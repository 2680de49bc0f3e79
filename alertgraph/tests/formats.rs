//! Alerts as sensors write them, read through `alertgraph::formats`: real samples (fixtures in
//! `tests/fixtures/formats`, sources and licences in its SOURCES.md), hostile input, and a
//! stream in every format through the engine with nothing lost.

use alertgraph::alert::Direction;
use alertgraph::batch::{rank_alerts, read_input};
use alertgraph::formats::{alerts_of_line, alerts_of_value, detect, Format, MAX_ALERT_BYTES};
use alertgraph::generate::{generate, GenConfig};
use alertgraph::{Alert, AlertView, Config, Engine, Severity};
use serde_json::{json, Value};
use std::collections::HashMap;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/formats/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

fn one(line: &str) -> Result<Alert, String> {
    let items = alerts_of_line(line, Format::Auto, None);
    assert_eq!(items.len(), 1, "{line}");
    items
        .into_iter()
        .next()
        .expect("one item")
        .result
        .map(AlertView::into_owned)
        .map_err(|r| r.reason)
}

#[test]
fn real_suricata_eve_alerts_map_field_by_field() {
    let text = fixture("suricata-eve.jsonl");
    let lines: Vec<&str> = text.lines().collect();
    // Line 1: "ET SCAN Nessus User Agent" with its HTTP transaction.
    let a = one(lines[0]).expect("an alert");
    assert_eq!(a.alert_name, "ET SCAN Nessus User Agent");
    assert_eq!(a.ext.signature_id.as_deref(), Some("2002664"));
    assert_eq!(
        a.ext.category.as_deref(),
        Some("Attempted Information Leak")
    );
    assert_eq!(a.severity, Severity::Medium);
    assert_eq!(
        (
            a.src_ip.as_str(),
            a.dst_ip.as_deref(),
            a.ext.src_port,
            a.dst_port
        ),
        ("54.235.163.229", Some("192.168.0.2"), Some(55199), Some(80))
    );
    assert_eq!(a.protocol.as_deref(), Some("http"));
    assert_eq!(a.ext.flow_id.as_deref(), Some("1829127292340180"));
    // "-0600" is read as an offset: 02:14:59 at -06:00 is 08:14:59 UTC.
    assert_eq!(
        alertgraph::alert::format_time(a.time_generated),
        "2015-03-17T08:14:59.130Z"
    );
    let extra: HashMap<&str, &str> = a
        .ext
        .extra
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(extra.get("Url"), Some(&"/status.php3"));
    assert_eq!(
        extra.get("UserAgent"),
        Some(&"Mozilla/4.75 [en] (X11, U; Nessus)")
    );
    assert!(a.alert_id.starts_with("eve-"));
    // The same event read again gets the same id (a redelivery is recognised).
    assert_eq!(one(lines[0]).expect("again").alert_id, a.alert_id);
    // Line 3: the attack response from port 80 (no direction field: the engine infers it).
    let r = one(lines[2]).expect("an alert");
    assert_eq!(r.alert_name, "GPL ATTACK_RESPONSE id check returned root");
    assert_eq!((r.ext.src_port, r.ext.direction), (Some(80), None));
    // Line 6: Suricata 7 says the direction.
    let s7 = one(lines[5]).expect("a Suricata 7 alert");
    assert_eq!(s7.ext.direction, Some(Direction::Request));
    // Lines 7 and 8: an http and a flow event are not alerts.
    for line in &lines[6..8] {
        let reason = one(line).expect_err("not an alert");
        assert!(reason.contains("is not an alert"), "{reason}");
    }
    assert_eq!(lines.len(), 8);
}

#[test]
fn real_sentinel_security_alert_rows_resolve_their_entities() {
    let text = fixture("sentinel-securityalert.jsonl");
    let lines: Vec<&str> = text.lines().collect();
    let mining = one(lines[0]).expect("an alert");
    assert_eq!(mining.alert_id, "fac479ec-3566-dce6-0ae3-a90c4af39175");
    assert_eq!(mining.severity, Severity::High);
    assert_eq!(mining.src_host.as_deref(), Some("Sample-VM"));
    assert_eq!(mining.tactic.as_deref(), Some("Execution"));
    assert_eq!(mining.ext.account.as_deref(), Some("Sample-account"));
    assert_eq!(mining.ext.sensor.as_deref(), Some("Azure Security Center"));
    // "2023-03-22 07:27:09.489644+00:00": StartTime, with a space for the T.
    assert_eq!(
        alertgraph::alert::format_time(mining.time_generated),
        "2023-03-22T07:27:09.489Z"
    );
    // Row 2 writes its process's image file inline, with an $id of its own.
    let powershell = one(lines[1]).expect("an alert");
    assert_eq!(powershell.ext.process_image.as_deref(), Some("cmd.exe"));
    assert_eq!(powershell.ext.account.as_deref(), Some("defenderadm"));
    assert_eq!(
        powershell.ext.account_domain.as_deref(),
        Some("alert-windows")
    );
    assert!(powershell.ext.command_line_hash.is_some());
    // Row 3: a scheduled rule's alert that names no host and no address is set aside, saying so.
    let reason = one(lines[2]).expect_err("no entity");
    assert!(reason.contains("names a host"), "{reason}");
}

#[test]
fn a_real_log_analytics_query_response_is_read_row_by_row() {
    let text = fixture("loganalytics-query-response.json");
    let value: Value = serde_json::from_str(&text).expect("JSON");
    let items = alerts_of_value(&value, Format::Auto, None);
    assert_eq!(items.len(), 3);
    assert_eq!(
        items.iter().map(|i| i.record).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    for i in &items {
        match &i.result {
            Ok(a) => assert!(!a.alert_id.is_empty()),
            Err(r) => assert!(r.reason.contains("names a host"), "{}", r.reason),
        }
    }
    // As a pretty-printed file it is one document, not JSON lines.
    let read = read_input(&text, Format::Auto);
    assert_eq!(read.alerts.len() + read.rejects.len(), 3);
}

/// Wazuh's alerts.json fields (documented in Wazuh's "Alerts" and rule classification pages;
/// no permissively licensed real sample was found, so the object is written from those field
/// names — see tests/fixtures/formats/SOURCES.md).
fn wazuh(id: &str, level: u64, description: &str, srcip: Option<&str>) -> Value {
    let mut w = json!({
        "timestamp": "2026-11-20T10:00:00.123+0000",
        "id": id,
        "rule": {"id": "5402", "level": level, "description": description,
                 "groups": ["syslog", "sudo"], "mitre": {"id": ["T1548.003"], "tactic": ["Privilege Escalation"]}},
        "agent": {"id": "003", "name": "web-01", "ip": "10.1.2.3"},
        "manager": {"name": "wazuh-manager"},
        "data": {"srcuser": "www-data", "dstuser": "root", "command": "/bin/bash"},
        "full_log": "Nov 20 10:00:00 web-01 sudo: www-data : TTY=pts/0 ; COMMAND=/bin/bash\u{7}",
        "location": "/var/log/auth.log"
    });
    if let Some(ip) = srcip {
        w["data"]["srcip"] = ip.into();
    }
    w
}

#[test]
fn wazuh_alerts_map_to_the_agent_host_and_its_peer() {
    let sudo = one(&wazuh("1705.1", 3, "Successful sudo to ROOT executed.", None).to_string())
        .expect("an alert");
    assert_eq!(sudo.alert_id, "wazuh-1705.1");
    assert_eq!(
        (sudo.src_ip.as_str(), sudo.dst_ip.as_deref()),
        ("10.1.2.3", None)
    );
    assert_eq!(sudo.src_host.as_deref(), Some("web-01"));
    assert_eq!(sudo.severity, Severity::Informational);
    assert_eq!(sudo.tactic.as_deref(), Some("PrivilegeEscalation"));
    assert_eq!(sudo.ext.account.as_deref(), Some("www-data"));
    assert_eq!(sudo.ext.category.as_deref(), Some("syslog,sudo"));
    // The log line's control character is not carried into the row.
    assert!(sudo
        .ext
        .extra
        .iter()
        .all(|(_, v)| !v.chars().any(char::is_control)));
    let brute = one(&wazuh("1705.2", 10, "sshd: brute force", Some("203.0.113.9")).to_string())
        .expect("an alert");
    assert_eq!(
        (
            brute.src_ip.as_str(),
            brute.dst_ip.as_deref(),
            brute.dst_host.as_deref()
        ),
        ("203.0.113.9", Some("10.1.2.3"), Some("web-01"))
    );
    assert_eq!(brute.severity, Severity::Medium);
    assert_eq!(
        detect(wazuh("x", 1, "y", None).as_object().unwrap()),
        Some(Format::Wazuh)
    );
}

#[test]
fn hostile_and_odd_input_is_set_aside_with_a_reason() {
    let good_eve = fixture("suricata-eve.jsonl")
        .lines()
        .next()
        .unwrap()
        .to_string();
    let row = fixture("sentinel-securityalert.jsonl")
        .lines()
        .next()
        .unwrap()
        .to_string();
    // Entities that is not valid JSON: the CompromisedEntity still names the host.
    let mut broken: Value = serde_json::from_str(&row).unwrap();
    broken["Entities"] = "[{\"$id\":\"2\",".into();
    let a = one(&broken.to_string()).expect("CompromisedEntity names the host");
    assert_eq!(a.src_host.as_deref(), Some("Sample-VM"));
    assert!(a.ext.extra.iter().any(|(k, _)| k == "EntitiesError"));
    // … and without it, the row is set aside with both reasons.
    broken["CompromisedEntity"] = "".into();
    let reason = one(&broken.to_string()).expect_err("no host");
    assert!(reason.contains("Entities is not valid JSON"), "{reason}");
    // A reference to an entity that is not there, and a cycle, are ignored.
    let mut cyclic: Value = serde_json::from_str(&row).unwrap();
    cyclic["Entities"] = json!([
        {"$id": "1", "Type": "process", "ImageFile": {"$ref": "9"}, "ParentProcess": {"$ref": "2"}},
        {"$id": "2", "Type": "process", "ParentProcess": {"$ref": "1"}},
        {"$id": "3", "Type": "host", "HostName": "h1"}
    ])
    .to_string()
    .into();
    cyclic["CompromisedEntity"] = "".into();
    let a = one(&cyclic.to_string()).expect("an alert");
    assert_eq!(
        (a.src_host.as_deref(), a.ext.process_image.as_deref()),
        (Some("h1"), None)
    );
    // A 10 MB line holding one alert.
    let mut huge: Value = serde_json::from_str(&good_eve).unwrap();
    huge["payload"] = "A".repeat(10 << 20).into();
    let reason = one(&huge.to_string()).expect_err("too big");
    assert!(reason.contains("the limit is"), "{reason}");
    // Fields at their limits: 256 characters pass, 257 do not.
    let mut at_limit: Value = serde_json::from_str(&good_eve).unwrap();
    at_limit["alert"]["signature"] = "s".repeat(256).into();
    assert!(one(&at_limit.to_string()).is_ok());
    at_limit["alert"]["signature"] = "s".repeat(257).into();
    assert!(one(&at_limit.to_string())
        .unwrap_err()
        .contains("longer than"));
    // Not JSON, an unknown shape, a wrong type.
    assert!(one("{\"event_type\": \"alert\", ")
        .unwrap_err()
        .contains("not JSON"));
    assert!(one("{\"hello\": 1}").unwrap_err().contains("known format"));
    assert!(one("[1]").unwrap_err().contains("JSON object"));
    let mut wrong: Value = serde_json::from_str(&good_eve).unwrap();
    wrong["src_ip"] = "not-an-address".into();
    assert!(one(&wrong.to_string())
        .unwrap_err()
        .starts_with("Suricata EVE alert:"));
}

#[test]
fn a_records_wrapper_of_100000_rows_is_read_record_by_record() {
    let row: Value = serde_json::from_str(
        fixture("sentinel-securityalert.jsonl")
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let records: Vec<Value> = (0..100_000)
        .map(|i| {
            let mut r = row.clone();
            r["SystemAlertId"] = format!("alert-{i}").into();
            if i % 10_000 == 7 {
                r["AlertSeverity"] = "Catastrophic".into();
            }
            r
        })
        .collect();
    let line = json!({ "records": records }).to_string();
    assert!(line.len() > MAX_ALERT_BYTES);
    let items = alerts_of_line(&line, Format::Auto, None);
    assert_eq!(items.len(), 100_000);
    let refused: Vec<usize> = items
        .iter()
        .filter(|i| i.result.is_err())
        .map(|i| i.record)
        .collect();
    assert_eq!(refused, (0..10).map(|k| k * 10_000 + 8).collect::<Vec<_>>());
}

/// A generated alert in `format`'s shape (host-only alerts only where the format has them).
fn in_format(a: &Alert, format: Format) -> Option<Value> {
    let time = alertgraph::alert::format_time(a.time_generated);
    match format {
        Format::Suricata => Some(json!({
            "timestamp": time, "event_type": "alert", "src_ip": a.src_ip,
            "dest_ip": a.dst_ip.clone()?, "dest_port": a.dst_port, "proto": "TCP",
            "app_proto": a.protocol, "flow_id": a.time_generated,
            "alert": {"signature": a.alert_name, "signature_id": a.alert_name.len(), "severity": 2,
                      "category": "Misc activity", "uid": a.alert_id}
        })),
        Format::Wazuh => Some(json!({
            "timestamp": time, "id": a.alert_id,
            "rule": {"id": "100", "level": 7, "description": a.alert_name, "groups": ["test"]},
            "agent": {"name": "agent", "ip": a.dst_ip.clone().unwrap_or_else(|| a.src_ip.clone())},
            "data": if a.dst_ip.is_some() { json!({"srcip": a.src_ip}) } else { json!({}) }
        })),
        Format::Sentinel => {
            let mut entities = vec![json!({"$id": "1", "Type": "ip", "Address": a.src_ip})];
            if let Some(d) = &a.dst_ip {
                entities.push(json!({"$id": "2", "Type": "ip", "Address": d}));
            }
            Some(json!({
                "TimeGenerated": time, "SystemAlertId": a.alert_id, "AlertName": a.alert_name,
                "AlertSeverity": "Medium", "ProductName": "Test", "Entities": Value::Array(entities).to_string()
            }))
        }
        Format::Alerts | Format::Auto => serde_json::to_value(a).ok(),
    }
}

#[test]
fn a_mixed_stream_in_every_format_loses_nothing() {
    let g = generate(GenConfig {
        alerts: 4000,
        chains: 4,
        seed: 5,
        ..GenConfig::default()
    });
    let formats = [
        Format::Alerts,
        Format::Suricata,
        Format::Wazuh,
        Format::Sentinel,
    ];
    let mut lines = Vec::new();
    let mut bad_lines = Vec::new();
    let mut sentinel_batch = Vec::new();
    for (i, a) in g.alerts.iter().enumerate() {
        if i % 500 == 250 {
            lines.push("{\"this is\": \"not an alert\"}".to_string());
            bad_lines.push(lines.len());
        }
        let format = formats[i % 4];
        let Some(v) = in_format(a, format).or_else(|| in_format(a, Format::Alerts)) else {
            continue;
        };
        if format == Format::Sentinel && i % 8 == 3 {
            // Every other Sentinel row goes out in data-export wrappers of 25.
            sentinel_batch.push(v);
            if sentinel_batch.len() == 25 {
                lines.push(json!({ "records": std::mem::take(&mut sentinel_batch) }).to_string());
            }
            continue;
        }
        lines.push(v.to_string());
    }
    if !sentinel_batch.is_empty() {
        lines.push(json!({ "records": sentinel_batch }).to_string());
    }
    let text = lines.join("\n");
    let mut read = read_input(&text, Format::Auto);
    assert_eq!(
        read.rejects.iter().map(|r| r.line).collect::<Vec<_>>(),
        bad_lines,
        "{:?}",
        read.rejects.first()
    );
    // Suricata alerts get content ids; everything else keeps its own.
    assert_eq!(read.alerts.len(), g.alerts.len());
    read.alerts.sort_by_key(|a| a.time_generated);
    let mut engine = Engine::new(Config {
        list_all_alert_ids: true,
        ..Config::default()
    });
    let ranked = rank_alerts(&mut engine, &read.alerts);
    assert!(ranked.refused.is_empty(), "{:?}", ranked.refused.first());
    assert_eq!(ranked.accepted, g.alerts.len());
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for row in &ranked.rows {
        for id in &row.alert_ids {
            *seen.entry(id).or_default() += 1;
        }
    }
    assert_eq!(
        seen.len(),
        ranked.accepted,
        "every accepted alert is in a row"
    );
    assert!(seen.values().all(|&n| n == 1), "and in one row only");
}

/// What the readers make of every fixture record and of variants that take each branch of
/// their mapping (peers, entities, levels, refusals), one line per record: the alert, or why
/// not. Pinned to the output captured before the readers were cut into steps
/// (`tests/pinned/formats-read.jsonl`), so a refactor that changes a byte fails here.
#[test]
fn the_fixtures_read_as_pinned() {
    let parse = |text: &str| -> Value { serde_json::from_str(text).expect("JSON") };
    let mut inputs: Vec<(Value, Format)> = Vec::new();
    for name in ["suricata-eve.jsonl", "sentinel-securityalert.jsonl"] {
        inputs.extend(fixture(name).lines().map(|l| (parse(l), Format::Auto)));
    }
    inputs.push((
        parse(&fixture("loganalytics-query-response.json")),
        Format::Auto,
    ));

    let eve = parse(fixture("suricata-eve.jsonl").lines().next().unwrap());
    let mut v = eve.clone();
    v["alert"]["metadata"] = json!({"mitre_tactic_name": ["Lateral_Movement"],
        "mitre_technique_id": ["T1021", 7, "T1021.002"]});
    v["host"] = "sensor-1".into();
    v["direction"] = "to_client".into();
    inputs.push((v, Format::Auto));
    let mut v = eve.clone();
    v["app_proto"] = "failed".into();
    v["dest_port"] = 502.into();
    v["alert"]["severity"] = 4.into();
    inputs.push((v, Format::Auto));
    let mut v = eve.clone();
    v.as_object_mut().unwrap().remove("alert");
    inputs.push((v, Format::Auto));
    let mut v = eve;
    v.as_object_mut().unwrap().remove("event_type");
    inputs.push((v, Format::Suricata));

    let row = parse(
        fixture("sentinel-securityalert.jsonl")
            .lines()
            .next()
            .unwrap(),
    );
    let mut v = row.clone();
    v["Entities"] = "[{\"$id\":\"2\",".into();
    inputs.push((v.clone(), Format::Auto));
    v["CompromisedEntity"] = "".into();
    inputs.push((v, Format::Auto));
    for entities in [
        json!([{"$id": "1", "Type": "ip", "Address": "10.0.0.1"}]),
        json!([{"$id": "1", "Type": "ip", "Address": "10.0.0.1"},
               {"$id": "2", "Type": "ip", "Address": "not an address"},
               {"$id": "3", "Type": "ip", "Address": "10.0.0.2"},
               {"$id": "4", "Type": "url", "Url": "http://x.example/a"},
               {"$id": "5", "Type": "account", "Name": "bob", "UPNSuffix": "corp.example"}]),
        json!([{"$id": "1", "Type": "host", "NetBiosName": "PLC-GW"},
               {"$id": "2", "Type": "ip", "Address": "192.168.10.100"},
               {"$id": "3", "Type": "process", "CommandLine": "cmd /c whoami",
                "ImageFile": {"$id": "4", "Type": "file", "Name": "cmd.exe"}}]),
    ] {
        let mut v = row.clone();
        v["Entities"] = entities.to_string().into();
        v["CompromisedEntity"] = "".into();
        v["ProductName"] = "Microsoft Defender for IoT".into();
        v["Techniques"] = "[\"T1059\"]".into();
        inputs.push((v, Format::Auto));
    }
    let mut v = row.clone();
    v["Techniques"] = json!(["T1496"]);
    v["Tactics"] = " , Impact, Execution".into();
    v.as_object_mut().unwrap().remove("StartTime");
    inputs.push((v, Format::Auto));
    let mut v = row.clone();
    v["Techniques"] = "T1496 (text)".into();
    v.as_object_mut().unwrap().remove("ProductName");
    inputs.push((v, Format::Auto));
    let mut v = row;
    v["Type"] = "SecurityIncident".into();
    inputs.push((v, Format::Auto));

    let sudo = wazuh("1705.1", 3, "Successful sudo to ROOT executed.", None);
    let brute = wazuh("1705.2", 10, "sshd: brute force", Some("203.0.113.9"));
    inputs.push((sudo.clone(), Format::Auto));
    let mut v = brute.clone();
    v["data"]["srcport"] = "51000".into();
    v["data"]["dstport"] = 22.into();
    inputs.push((v.clone(), Format::Auto));
    v["agent"].as_object_mut().unwrap().remove("ip");
    inputs.push((v, Format::Auto));
    let mut v = brute.clone();
    v["data"]["srcip"] = "10.1.2.3".into();
    v["rule"]["level"] = "13".into();
    v["data"]["url"] = "/login?user=admin".into();
    v.as_object_mut().unwrap().remove("id");
    v.as_object_mut().unwrap().remove("manager");
    inputs.push((v, Format::Auto));
    let mut v = sudo.clone();
    v["data"] = json!({"win": {"eventdata": {"targetUserName": "alice",
        "targetDomainName": "CORP", "subjectLogonId": "0x3e7",
        "image": "C:\\Windows\\System32\\cmd.exe", "commandLine": "cmd /c whoami"}}});
    v["rule"]["level"] = 5.into();
    v["rule"].as_object_mut().unwrap().remove("mitre");
    inputs.push((v, Format::Auto));
    let mut v = sudo.clone();
    v["data"] = json!({"audit": {"exe": "/usr/bin/curl", "command": "curl http://x"}});
    v["rule"]["groups"] = json!([]);
    inputs.push((v, Format::Auto));
    let mut v = sudo.clone();
    v.as_object_mut().unwrap().remove("agent");
    inputs.push((v, Format::Auto));
    let mut v = sudo;
    v["rule"] = "not an object".into();
    inputs.push((v, Format::Wazuh));

    let got: String = inputs
        .iter()
        .flat_map(|(v, format)| alerts_of_value(v, *format, None))
        .map(|item| {
            let line = match item.result {
                Ok(a) => json!({ "Alert": a }),
                Err(r) => json!({ "Rejected": r.reason }),
            };
            format!("{line}\n")
        })
        .collect();
    let pinned = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/pinned/formats-read.jsonl"
    ))
    .expect("pinned output");
    assert_eq!(got, pinned);
}
