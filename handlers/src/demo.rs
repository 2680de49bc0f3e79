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
        crate::sentinel_cli::log_row(&entry).unwrap_or_else(|| LogRow {
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
