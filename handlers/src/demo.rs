//! `socwire up --demo`: seeds the local Sentinel with a few incidents (some carrying known-bad
//! indicators) and builds the incident-created events a Sentinel playbook would publish.

use crate::local::SqliteIncidentStore;
use crate::ports::PortResult;
use crate::sentinel::{Entity, Incident, IncidentId, IncidentProperties, Severity};
use serde_json::{json, Map, Value};

/// The Event Grid topic the playbook publishes to (see infra/eventgrid-subscriptions.json).
pub const INCIDENT_TOPIC: &str = "sentinel-incidents";

const WORKSPACE: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/socwire-demo/providers/Microsoft.OperationalInsights/workspaces/socwire-demo/providers/Microsoft.SecurityInsights/incidents";

struct DemoIncident {
    title: &'static str,
    severity: Severity,
    description: &'static str,
    /// Entity kind and its properties.
    entities: &'static [(&'static str, &'static [(&'static str, &'static str)])],
}

const INCIDENTS: &[DemoIncident] = &[
    DemoIncident {
        title: "Beaconing to a known C2 server from FIN-WS-042",
        severity: Severity::Medium,
        description: "",
        entities: &[
            ("DnsResolution", &[("domainName", "c2.evil.example")]),
            ("Ip", &[("address", "203.0.113.66")]),
            ("Ip", &[("address", "10.20.1.42")]),
            (
                "Host",
                &[("hostName", "FIN-WS-042"), ("dnsDomain", "corp.example")],
            ),
        ],
    },
    DemoIncident {
        title: "Multiple failed sign-ins followed by success",
        severity: Severity::Low,
        description: "",
        entities: &[
            ("Ip", &[("address", "198.51.100.23")]),
            (
                "Account",
                &[("accountName", "j.doe"), ("upnSuffix", "corp.example")],
            ),
        ],
    },
    DemoIncident {
        title: "Port scan against DMZ",
        severity: Severity::High,
        description: "",
        entities: &[
            ("Ip", &[("address", "192.0.2.10")]),
            ("Ip", &[("address", "192.0.2.11")]),
        ],
    },
    DemoIncident {
        title: "Suspicious PowerShell on HR-LT-007",
        severity: Severity::Medium,
        description:
            "PowerShell with an encoded command; the analytics rule saw no network indicator.",
        entities: &[
            ("Host", &[("hostName", "HR-LT-007")]),
            ("Ip", &[("address", "10.20.7.7")]),
        ],
    },
    DemoIncident {
        title: "User clicked phishing link <img src=x onerror=alert(1)>",
        severity: Severity::Low,
        description: "The user reported a mail linking hxxp://phish[.]example[.]net/login.",
        entities: &[(
            "FileHash",
            &[("hashValue", "44D88612FEA8A8F36DE82E1278ABB02F")],
        )],
    },
];

/// Fills the local workspace with the rows the demo incidents' questions find: alerts on the
/// beaconing host, a burst of failed sign-ins for the phished account, processes on the
/// PowerShell host, and sightings of the scanners.
pub fn seed_workspace(ws: &crate::local::SqliteWorkspace) -> PortResult<()> {
    use crate::local::LogRow;
    let now = chrono::Utc::now();
    let at = |mins: i64| now - chrono::Duration::minutes(mins);
    let row = |table: &str, mins: i64, body: Value| {
        let body = match body {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        let entry: Map<String, Value> = body
            .into_iter()
            .chain([
                ("table".to_string(), json!(table)),
                ("TimeGenerated".to_string(), json!(at(mins).to_rfc3339())),
            ])
            .collect();
        LogRow::from_log_entry(&entry).unwrap_or_else(|| LogRow {
            table: table.into(),
            ..Default::default()
        })
    };
    let mut rows = vec![
        row(
            "SecurityAlert",
            90,
            json!({"CompromisedEntity": "FIN-WS-042", "AlertName": "Connection to rare domain", "AlertSeverity": "Medium", "ProviderName": "MDE", "SystemAlertId": "a-1"}),
        ),
        row(
            "SecurityAlert",
            30,
            json!({"CompromisedEntity": "FIN-WS-042", "AlertName": "Beaconing pattern", "AlertSeverity": "High", "ProviderName": "MDE", "SystemAlertId": "a-2"}),
        ),
        row(
            "DeviceProcessEvents",
            40,
            json!({"DeviceName": "HR-LT-007", "FileName": "powershell.exe", "ProcessCommandLine": "powershell -nop -w hidden -enc SQBFAFgA"}),
        ),
        row(
            "DeviceProcessEvents",
            41,
            json!({"DeviceName": "HR-LT-007", "FileName": "outlook.exe", "ProcessCommandLine": "outlook.exe"}),
        ),
        row(
            "CommonSecurityLog",
            60 * 24 * 20,
            json!({"SourceIP": "192.0.2.10", "DeviceName": "dmz-fw"}),
        ),
    ];
    for i in 0..14 {
        rows.push(row("SigninLogs", 60 + i, json!({"UserPrincipalName": "j.doe@corp.example", "IPAddress": "198.51.100.23", "ResultType": if i == 0 { "0" } else { "50126" }})));
    }
    ws.add_rows(&rows)
}

/// The ARM id of the demo incident `n` (1-based).
pub fn incident_id(n: usize) -> IncidentId {
    let id = format!(
        "{WORKSPACE}/{}",
        crate::functions::stable_id("demo-incident", &n.to_string())
    );
    IncidentId::parse(&id).expect("demo ids are well-formed")
}

/// Seeds `count` incidents (cycling through the demo set) and returns the Event Grid events
/// announcing them, in the Sentinel incident trigger body shape (the Logic Apps Sentinel incident
/// trigger's body).
pub fn seed(store: &SqliteIncidentStore, count: usize) -> PortResult<Vec<Value>> {
    let mut events = Vec::new();
    for n in 1..=count {
        let template = &INCIDENTS[(n - 1) % INCIDENTS.len()];
        let id = incident_id(n);
        let incident = Incident {
            id: id.arm_id().to_string(),
            name: id.name().to_string(),
            etag: None,
            properties: IncidentProperties {
                title: template.title.to_string(),
                severity: template.severity,
                status: "New".to_string(),
                description: (!template.description.is_empty())
                    .then(|| template.description.to_string()),
                incident_number: Some(n as i64),
                other: Map::new(),
            },
        };
        let entities: Vec<Entity> = template
            .entities
            .iter()
            .map(|(kind, fields)| {
                let mut properties: Map<String, Value> = fields
                    .iter()
                    .map(|(f, v)| (f.to_string(), json!(v)))
                    .collect();
                properties.insert("friendlyName".into(), json!(fields[0].1));
                Entity::new(kind, Value::Object(properties))
            })
            .collect();
        store.seed(&incident, &entities)?;
        events.push(json!({
            "id": crate::functions::stable_id("demo-event", &n.to_string()),
            "subject": id.arm_id(),
            "eventType": "Sentinel.IncidentCreated",
            "eventTime": chrono::Utc::now().to_rfc3339(),
            "dataVersion": "1.0",
            "data": {
                "eventUniqueId": crate::functions::stable_id("demo-unique", &n.to_string()),
                "objectSchemaType": "Incident",
                "objectEventType": "Create",
                "workspaceInfo": { "SubscriptionId": "00000000-0000-0000-0000-000000000000", "ResourceGroupName": "socwire-demo", "WorkspaceName": "socwire-demo" },
                "object": {
                    "id": id.arm_id(),
                    "name": id.name(),
                    "type": "Microsoft.SecurityInsights/Incidents",
                    "properties": { "title": template.title, "severity": template.severity, "status": "New", "incidentNumber": n }
                }
            }
        }));
    }
    Ok(events)
}

/// The hub the alert stream reads (function-defs/alert-stream).
pub const ALERT_HUB: &str = "alerts";

/// Alerts in the demo's generated day.
pub const DEMO_DAY_ALERTS: usize = 20_000;

/// Attack chains injected into that day.
pub const DEMO_CHAINS: usize = 5;

/// Alerts per Event Hubs event (a JSON array, as a sensor batches them).
const ALERTS_PER_EVENT: usize = 250;

/// What [`stream_alert_day`] sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertDay {
    /// Alerts in the day with the attack chains.
    pub day_alerts: usize,
    /// Alerts in the quiet stretch after it.
    pub tail_alerts: usize,
    /// Events sent to the hub.
    pub events: usize,
    /// Chains injected.
    pub chains: usize,
}

/// Sends a generated IT/OT day to the `alerts` hub: alertgraph's family B site (three plants,
/// their OT cells, a busy background) with [`DEMO_CHAINS`] attack chains, followed by a
/// stretch of background only as long as the engine's window (`window_ms`) plus an hour. The
/// engine writes a story when its newest alert leaves the window, so without the quiet stretch
/// the day's stories would still be open when the demo ends. Everything goes with one partition
/// key, as one site's sensor sends it (the engine keeps one window per partition). The alerts
/// end about two hours before `now_ms`.
pub fn stream_alert_day(
    brokers: &socwire_host::brokers::Brokers,
    window_ms: i64,
    now_ms: i64,
) -> anyhow::Result<AlertDay> {
    use alertgraph::generate::{generate, Family, GenConfig};
    const HOUR: i64 = 3_600_000;
    let tail_ms = window_ms.clamp(HOUR, 48 * HOUR) + HOUR;
    // Generated times run a little past their span (a burst near the end): two hours of room.
    let end = now_ms - now_ms % 60_000 - 2 * HOUR;
    let day_start = end - tail_ms - 24 * HOUR;
    let day = generate(GenConfig {
        alerts: DEMO_DAY_ALERTS,
        chains: DEMO_CHAINS,
        seed: 24,
        start_ms: day_start,
        span_ms: 24 * HOUR,
        family: Family::B,
    });
    let tail_alerts = (DEMO_DAY_ALERTS as i64 * tail_ms / (24 * HOUR)) as usize;
    let tail = generate(GenConfig {
        alerts: tail_alerts,
        chains: 0,
        seed: 25,
        start_ms: day_start + 24 * HOUR,
        span_ms: tail_ms,
        family: Family::B,
    });
    let mut events = 0;
    let props = Value::Object(Map::new());
    for alerts in [&day.alerts, &tail.alerts] {
        let bodies: Vec<Vec<u8>> = alerts
            .chunks(ALERTS_PER_EVENT)
            .map(serde_json::to_vec)
            .collect::<Result<_, _>>()?;
        for chunk in bodies.chunks(64) {
            let batch: Vec<(Option<&str>, &[u8], &Value)> = chunk
                .iter()
                .map(|b| (Some("demo-site"), b.as_slice(), &props))
                .collect();
            events += brokers.hub(ALERT_HUB).send_many(&batch)?.len();
        }
    }
    Ok(AlertDay {
        day_alerts: day.alerts.len(),
        tail_alerts: tail.alerts.len(),
        events,
        chains: DEMO_CHAINS,
    })
}

/// The asset map of the demo's site (alertgraph's family B network), so the console draws
/// its hosts in zones and Purdue levels: enterprise workstations, servers, domain controllers
/// and file servers at level 4, the jump hosts at 3.5 (the IT/OT DMZ), each plant's
/// engineering workstation and historian at level 3, HMIs at level 2, PLCs at level 1.
pub fn asset_zones() -> Value {
    let mut zones = vec![
        json!({"cidr": "172.16.0.0/16", "zone": "IT", "level": "L4", "name": "workstations"}),
        json!({"cidr": "172.17.0.0/16", "zone": "IT", "level": "L4", "name": "servers"}),
        json!({"cidr": "172.19.0.0/24", "zone": "IT", "level": "L4", "name": "domain controllers"}),
        json!({"cidr": "172.19.1.0/24", "zone": "IT", "level": "L4", "name": "file servers"}),
        json!({"cidr": "172.18.1.0/24", "zone": "IT", "level": "L4", "name": "scanners"}),
        json!({"cidr": "172.18.0.0/24", "zone": "IT", "level": "L3.5", "name": "jump hosts (DMZ)"}),
        json!({"cidr": "2001:db8::/32", "zone": "IT", "level": "L5", "name": "internet"}),
    ];
    for p in 0..3 {
        let cell = 10 + p;
        zones.extend([
            json!({"cidr": format!("172.16.{p}.250"), "zone": "OT", "level": "L3", "name": "engineering workstations"}),
            json!({"cidr": format!("192.168.{cell}.20"), "zone": "OT", "level": "L3", "name": "historians"}),
            json!({"cidr": format!("192.168.{cell}.10/31"), "zone": "OT", "level": "L2", "name": "HMIs"}),
            json!({"cidr": format!("192.168.{cell}.96/27"), "zone": "OT", "level": "L1", "name": "PLCs"}),
        ]);
    }
    Value::Array(zones)
}

#[cfg(test)]
mod alert_day_tests {
    use super::*;

    #[test]
    fn the_asset_map_places_the_demo_site() {
        let zones: alertgraph::svg::Zones = serde_json::from_value(asset_zones()).unwrap();
        let level = |ip: &str| zones.place(ip).and_then(|z| z.level.clone());
        assert_eq!(level("172.16.1.42").as_deref(), Some("L4"));
        assert_eq!(level("172.16.1.250").as_deref(), Some("L3"));
        assert_eq!(level("192.168.11.10").as_deref(), Some("L2"));
        assert_eq!(level("192.168.11.11").as_deref(), Some("L2"));
        assert_eq!(level("192.168.12.105").as_deref(), Some("L1"));
        assert_eq!(level("192.168.12.20").as_deref(), Some("L3"));
        assert_eq!(level("172.18.0.2").as_deref(), Some("L3.5"));
    }

    #[test]
    fn the_day_and_its_quiet_stretch_reach_the_hub_in_one_partition() {
        let dir = tempfile::tempdir().unwrap();
        let b = socwire_host::brokers::Brokers::open(
            dir.path(),
            std::sync::Arc::new(socwire_host::brokers::SystemClock),
        )
        .unwrap();
        b.hub(ALERT_HUB).ensure(4).unwrap();
        let now = 1_800_000_000_000;
        let day = stream_alert_day(&b, 3_600_000, now).unwrap();
        assert_eq!(day.day_alerts, DEMO_DAY_ALERTS);
        // A one-hour window: two hours of background after the day.
        assert_eq!(day.tail_alerts, DEMO_DAY_ALERTS / 12);
        let events = (day.day_alerts).div_ceil(ALERTS_PER_EVENT)
            + day.tail_alerts.div_ceil(ALERTS_PER_EVENT);
        assert_eq!(day.events, events);
        let used: Vec<_> = b
            .partitions()
            .unwrap()
            .into_iter()
            .filter(|p| p.events > 0)
            .collect();
        assert_eq!(used.len(), 1);
        assert_eq!(used[0].events as usize, events);
        // The newest alert lies in the past, so the engine accepts every one.
        let last = b
            .hub(ALERT_HUB)
            .read("t", used[0].partition, Some(used[0].last_sequence - 1), 1)
            .unwrap();
        let alerts: Vec<alertgraph::Alert> = serde_json::from_slice(&last[0].body).unwrap();
        let newest = alerts.iter().map(|a| a.time_generated).max().unwrap();
        assert!(
            newest < now - 3_600_000 && newest > now - 5 * 3_600_000,
            "{newest}"
        );
    }
}
