//! host.json and every function.json are what the Azure Functions host (v4, extension bundle
//! 4.x) accepts for a custom handler, and local.settings.example.json loads under `func start`
//! with Azurite exactly the functions Azurite can serve.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn functions() -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = std::fs::read_dir(repo().join("function-defs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, json(&p.join("function.json")))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// `hh:mm:ss` (optionally `d.hh:mm:ss`) as the host parses TimeSpans, in seconds.
fn timespan(text: &str) -> Option<u64> {
    let (days, rest) = match text.split_once('.') {
        Some((d, r)) if !d.contains(':') => (d.parse::<u64>().ok()?, r),
        _ => (0, text),
    };
    let p: Vec<u64> = rest
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    (p.len() == 3 && p[1] < 60 && p[2] < 60).then(|| days * 86_400 + p[0] * 3600 + p[1] * 60 + p[2])
}

/// Binding types of the extension bundle this app uses, with the directions each allows.
const BINDING_TYPES: &[(&str, &str)] = &[
    ("queueTrigger", "in"),
    ("queue", "out"),
    ("blobTrigger", "in"),
    ("blob", "in out inout"),
    ("serviceBusTrigger", "in"),
    ("serviceBus", "out"),
    ("eventHubTrigger", "in"),
    ("eventHub", "out"),
    ("eventGridTrigger", "in"),
    ("eventGrid", "out"),
    ("timerTrigger", "in"),
    ("httpTrigger", "in"),
    ("http", "out"),
];

/// Trigger kinds whose function-level `retry` the host honours (extension bundle 4.x).
const RETRY_TRIGGERS: &[&str] = &["timerTrigger", "eventHubTrigger"];

/// Broker-backed triggers Azurite serves under `func start`; Event Grid and HTTP need no broker.
const AZURITE_TRIGGERS: &[&str] = &[
    "queueTrigger",
    "blobTrigger",
    "timerTrigger",
    "httpTrigger",
    "eventGridTrigger",
];

fn problems_of_host_json(host: &Value) -> Vec<String> {
    let mut p = Vec::new();
    if host["version"] != "2.0" {
        p.push("host.json: version must be \"2.0\"".into());
    }
    let d = &host["customHandler"]["description"];
    if d["defaultExecutablePath"] != "socwire" {
        p.push("host.json: customHandler.description.defaultExecutablePath must be the binary the package ships (socwire)".into());
    }
    if d["arguments"] != serde_json::json!(["serve"]) {
        p.push("host.json: customHandler.description.arguments must be [\"serve\"]".into());
    }
    if host["customHandler"]["enableForwardingHttpRequest"] != false {
        p.push("host.json: enableForwardingHttpRequest must be false (the handler speaks the invocation protocol for every trigger)".into());
    }
    let bundle = &host["extensionBundle"];
    if bundle["id"] != "Microsoft.Azure.Functions.ExtensionBundle" {
        p.push(
            "host.json: extensionBundle.id must be Microsoft.Azure.Functions.ExtensionBundle"
                .into(),
        );
    }
    match bundle["version"].as_str() {
        // Bundle 4.x carries the extension versions with identity-based connections and the
        // Event Grid `connection` property.
        Some(v) if v.starts_with("[4.") && v.ends_with(')') && v.contains(", 5.0.0") => {}
        other => p.push(format!(
            "host.json: extensionBundle.version {other:?} must be the range [4.*, 5.0.0)"
        )),
    }
    match host["functionTimeout"].as_str().and_then(timespan) {
        Some(s) if (1..=30 * 60).contains(&s) => {}
        _ => p.push("host.json: functionTimeout must be hh:mm:ss, at most 00:30:00 (Flex Consumption's default limit)".into()),
    }
    match host
        .pointer("/extensions/queues/messageEncoding")
        .and_then(Value::as_str)
    {
        None | Some("base64") | Some("none") => {}
        Some(other) => p.push(format!(
            "host.json: extensions.queues.messageEncoding {other:?}: base64 or none"
        )),
    }
    p
}

fn problems_of_function(name: &str, def: &Value) -> Vec<String> {
    let mut p = Vec::new();
    let valid_name = name.len() <= 127
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid_name {
        p.push(format!("{name}: not a valid function name"));
    }
    let Some(bindings) = def["bindings"].as_array() else {
        return vec![format!("{name}/function.json: no bindings array")];
    };
    let mut names = BTreeSet::new();
    let mut triggers = Vec::new();
    for b in bindings {
        let kind = b["type"].as_str().unwrap_or("");
        let direction = b["direction"].as_str().unwrap_or("");
        let bname = b["name"].as_str().unwrap_or("");
        let at = format!("{name}/function.json binding {bname:?}");
        match BINDING_TYPES.iter().find(|(t, _)| *t == kind) {
            None => p.push(format!(
                "{at}: type {kind:?} is not a binding the extension bundle has"
            )),
            Some((_, dirs)) if !dirs.split(' ').any(|d| d == direction) => p.push(format!(
                "{at}: direction {direction:?} is not allowed for {kind} ({dirs})"
            )),
            _ => {}
        }
        let ident = bname == "$return"
            || (bname.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && bname.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        if !ident {
            p.push(format!("{at}: binding names are identifiers"));
        }
        if !names.insert(bname.to_ascii_lowercase()) {
            p.push(format!("{at}: duplicate binding name"));
        }
        if kind.ends_with("Trigger") {
            triggers.push(kind);
        }
        let need = |key: &str, p: &mut Vec<String>| {
            if b[key].as_str().is_none_or(str::is_empty) {
                p.push(format!("{at}: {kind} needs {key:?}"));
            }
        };
        match kind {
            "queueTrigger" | "queue" => need("queueName", &mut p),
            "eventHubTrigger" | "eventHub" => {
                need("eventHubName", &mut p);
                need("connection", &mut p);
            }
            "serviceBusTrigger" => {
                if b["queueName"].is_null() {
                    need("topicName", &mut p);
                    need("subscriptionName", &mut p);
                }
                need("connection", &mut p);
            }
            "serviceBus" => {
                if b["queueName"].is_null() {
                    need("topicName", &mut p);
                }
                need("connection", &mut p);
            }
            "timerTrigger" => need("schedule", &mut p),
            "eventGrid" => {
                // The extension fails the function at load when topicKeySetting names no
                // setting; identity-based `connection` needs <connection>__topicEndpointUri.
                if !b["topicKeySetting"].is_null() {
                    p.push(format!("{at}: topicKeySetting (a topic key) — use \"connection\" with a managed identity"));
                }
                need("connection", &mut p);
                if !b["topicEndpointUri"].is_null() {
                    p.push(format!(
                        "{at}: set connection or topicEndpointUri, not both"
                    ));
                }
            }
            _ => {}
        }
        if let Some(dt) = b.get("dataType") {
            if !matches!(dt.as_str(), Some("string" | "binary" | "stream")) {
                p.push(format!(
                    "{at}: dataType {dt} must be string, binary or stream"
                ));
            }
        }
        if let Some(c) = b.get("cardinality") {
            if kind != "eventHubTrigger" && kind != "serviceBusTrigger" {
                p.push(format!(
                    "{at}: cardinality applies to Event Hubs and Service Bus triggers only"
                ));
            } else if !matches!(c.as_str(), Some("one" | "many")) {
                p.push(format!("{at}: cardinality {c} must be one or many"));
            }
        }
        if let Some(c) = b.get("connection").and_then(Value::as_str) {
            if c.contains('=') || c.contains("://") {
                p.push(format!(
                    "{at}: connection must name a setting, not hold a connection string"
                ));
            }
        }
    }
    if triggers.len() != 1 {
        p.push(format!(
            "{name}/function.json: {} trigger bindings (exactly one)",
            triggers.len()
        ));
    }
    let trigger = triggers.first().copied().unwrap_or("");
    match def.get("retry").filter(|r| !r.is_null()) {
        Some(r) => {
            if !RETRY_TRIGGERS.contains(&trigger) {
                p.push(format!("{name}/function.json: the host ignores a retry policy on {trigger}; use the broker's delivery count"));
            }
            match r["strategy"].as_str() {
                Some("fixedDelay") => {
                    if r["delayInterval"].as_str().and_then(timespan).is_none() {
                        p.push(format!("{name}/function.json: fixedDelay needs delayInterval hh:mm:ss"));
                    }
                }
                Some("exponentialBackoff") => {
                    let min = r["minimumInterval"].as_str().and_then(timespan);
                    let max = r["maximumInterval"].as_str().and_then(timespan);
                    if !matches!((min, max), (Some(a), Some(b)) if a <= b) {
                        p.push(format!("{name}/function.json: exponentialBackoff needs minimumInterval ≤ maximumInterval (hh:mm:ss)"));
                    }
                }
                other => p.push(format!("{name}/function.json: retry strategy {other:?}")),
            }
            match r["maxRetryCount"].as_i64() {
                Some(n) if n >= 0 => {}
                other => p.push(format!("{name}/function.json: retry.maxRetryCount {other:?} must be ≥ 0: an endless retry holds an Event Hubs partition forever")),
            }
        }
        None if trigger == "eventHubTrigger" => p.push(format!(
            "{name}/function.json: an Event Hubs function needs a finite retry policy (the checkpoint moves on after a failed batch without one)"
        )),
        None => {}
    }
    // Project rule: every non-HTTP function sets inputs that can never succeed aside.
    if trigger != "httpTrigger" && !trigger.is_empty() {
        let rejects = bindings.iter().any(|b| {
            b["type"] == "queue"
                && b["direction"] == "out"
                && b["name"] == "rejects"
                && b["queueName"] == "socwire-rejects"
        });
        if !rejects {
            p.push(format!(
                "{name}/function.json: no queue output \"rejects\" → socwire-rejects"
            ));
        }
    }
    p
}

#[test]
fn host_json_is_a_custom_handler_on_extension_bundle_4() {
    let problems = problems_of_host_json(&json(&repo().join("host.json")));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_function_json_is_valid_for_the_functions_host() {
    let mut problems = Vec::new();
    for (name, def) in functions() {
        problems.extend(problems_of_function(&name, &def));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checks_catch_what_the_real_host_rejects() {
    let base = serde_json::json!({"bindings": [
        {"type": "eventHubTrigger", "direction": "in", "name": "events", "eventHubName": "alerts", "connection": "EH", "cardinality": "many"},
        {"type": "queue", "direction": "out", "name": "rejects", "queueName": "socwire-rejects"}
    ], "retry": {"strategy": "fixedDelay", "maxRetryCount": 3, "delayInterval": "00:00:05"}});
    assert!(problems_of_function("f", &base).is_empty());
    let spoil = |pointer: &str, value: Value| {
        let mut v = base.clone();
        *v.pointer_mut(pointer).unwrap() = value;
        problems_of_function("f", &v).join("\n")
    };
    assert!(spoil("/retry/maxRetryCount", (-1).into()).contains("maxRetryCount"));
    assert!(spoil("/retry", Value::Null).contains("finite retry"));
    assert!(spoil("/bindings/0/direction", "out".into()).contains("direction"));
    assert!(spoil("/bindings/0/cardinality", "all".into()).contains("cardinality"));
    assert!(spoil("/bindings/1/type", "eventGrid".into()).contains("connection"));
    assert!(spoil("/bindings/1/name", "events".into()).contains("duplicate"));
    let mut key = base.clone();
    key["bindings"][1] = serde_json::json!({"type": "eventGrid", "direction": "out", "name": "o", "topicEndpointUri": "U", "topicKeySetting": "K"});
    assert!(problems_of_function("f", &key)
        .join("\n")
        .contains("topicKeySetting"));
    let host = json(&repo().join("host.json"));
    let mut bad = host.clone();
    bad["extensionBundle"]["version"] = "[3.*, 4.0.0)".into();
    assert!(problems_of_host_json(&bad)
        .join("\n")
        .contains("extensionBundle.version"));
}

/// The README's `func start --functions …` loads exactly the functions Azurite or the host can
/// serve, and the example settings disable none (`socwire up` reads the same file and honours
/// `AzureWebJobs.<name>.Disabled`, so a disable meant for `func start` would stop them there too).
#[test]
fn func_start_loads_exactly_the_functions_azurite_can_serve() {
    let values = json(&repo().join("local.settings.example.json"))["Values"].clone();
    assert_eq!(values["FUNCTIONS_WORKER_RUNTIME"], "custom");
    assert_eq!(values["AzureWebJobsStorage"], "UseDevelopmentStorage=true");
    let disabled: Vec<&String> = values
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.ends_with(".Disabled"))
        .collect();
    assert!(
        disabled.is_empty(),
        "local.settings.example.json disables {disabled:?}"
    );
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let line = readme
        .lines()
        .find(|l| l.starts_with("func start --functions "))
        .expect("README runs `func start --functions …`");
    let listed: std::collections::BTreeSet<&str> = line
        .trim_start_matches("func start --functions ")
        .split_whitespace()
        .collect();
    let mut problems = Vec::new();
    for (name, def) in functions() {
        let trigger = def["bindings"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|b| b["type"].as_str())
            .find(|t| t.ends_with("Trigger"))
            .unwrap_or("");
        // Service Bus and Event Hubs outputs need their broker too.
        let broker_outputs = def["bindings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| matches!(b["type"].as_str(), Some("serviceBus" | "eventHub")));
        let served = AZURITE_TRIGGERS.contains(&trigger) && !broker_outputs;
        let loaded = listed.contains(name.as_str());
        if served && !loaded {
            problems.push(format!("{name} ({trigger}) runs on Azurite but the README's func start --functions leaves it out"));
        }
        if !served && loaded {
            problems.push(format!("{name} ({trigger}) needs a broker Azurite does not have (trigger or output) but the README's func start --functions loads it"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_local_host_routes_identity_based_event_grid_outputs_to_the_named_topic() {
    // A copy without any developer's local.settings.json: the example's settings decide.
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path();
    std::fs::copy(repo().join("host.json"), app.join("host.json")).unwrap();
    std::fs::copy(
        repo().join("local.settings.example.json"),
        app.join("local.settings.example.json"),
    )
    .unwrap();
    for (name, def) in functions() {
        let folder = app.join("function-defs").join(&name);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("function.json"), def.to_string()).unwrap();
    }
    let cfg = socwire_host::config::AppConfig::load(app).expect("the app loads");
    let mut routed = 0;
    for f in &cfg.functions {
        for o in &f.outputs {
            if let socwire_host::config::OutputTarget::EventGrid(topic) = &o.target {
                assert_eq!(
                    topic, "socwire-events",
                    "{}: output {} goes to {topic:?}, not the topic named by SOCWIRE_EVENTS_TOPIC__topicEndpointUri",
                    f.name, o.name
                );
                routed += 1;
            }
        }
    }
    assert!(
        routed >= 2,
        "triage-incident and alert-stream publish to Event Grid"
    );
}
