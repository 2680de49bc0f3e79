//! Code, function definitions and infrastructure agree: every setting the handler reads is in
//! local.settings.example.json and in the Bicep app settings; every queue, hub, topic and
//! subscription a function.json names exists in the Bicep; every binding connection resolves to
//! settings the Bicep sets; every Azure adapter's calls are covered by a role assignment; every
//! role is documented. Each failure names the exact mismatch.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn json(path: &str) -> Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Settings the code reads that have no place in Azure, and why.
const LOCAL_ONLY: &[(&str, &str)] = &[
    (
        "SOCWIRE_DATA_DIR",
        "state of the local adapters; Azure uses Blob Storage",
    ),
    (
        "SOCWIRE_REPORTS_BASE_URL",
        "links to local report files; Azure links blobs",
    ),
    (
        "SOCWIRE_TI_FILE",
        "a local offline TI list file; the package ships none",
    ),
    (
        "SOCWIRE_FUNCTION_KEY",
        "the local host's function key; Azure has host keys",
    ),
];
/// Set by the local host for the handler it starts; never an app setting.
const HOST_INTERNAL: &[&str] = &["SOCWIRE_EXIT_ON_STDIN_EOF"];

/// `SOCWIRE_*` string literals in the code, with the file that reads each.
fn code_settings() -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for name in literals(&text, "SOCWIRE_")
                    .into_iter()
                    .chain(literals(&text, "AZURE_CLIENT_ID"))
                {
                    let shown = path.strip_prefix(repo()).unwrap_or(&path);
                    out.entry(name)
                        .or_insert_with(|| shown.display().to_string());
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&repo().join("handlers/src"), &mut out);
    walk(&repo().join("host/src"), &mut out);
    out
}

/// Whole string literals `"PREFIX…"` made of setting-name characters.
fn literals(text: &str, prefix: &str) -> Vec<String> {
    let needle = format!("\"{prefix}");
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(&needle) {
        let tail = &rest[at + 1..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        // A bare prefix (`"SOCWIRE_"`, a `starts_with` test) names no setting.
        if tail[end..].starts_with('"') && end > 0 && !tail[..end].ends_with('_') {
            found.push(tail[..end].to_string());
        }
        rest = &rest[at + 1..];
    }
    found
}

/// The Bicep files, parsed just enough: app setting names with their value expressions, the
/// name lists, role assignments.
struct Bicep {
    text: String,
    settings: BTreeMap<String, String>,
}

impl Bicep {
    /// True when the Bicep declares an Event Grid system topic named `<prefix>-{name}` (the
    /// local host stands in for it with a topic of that name, e.g. Azure ML's run events).
    fn is_system_topic(&self, name: &str) -> bool {
        self.text.contains("Microsoft.EventGrid/systemTopics")
            && self.text.contains(&format!("'${{prefix}}-{name}'"))
    }

    fn load() -> Self {
        let text = read("infra/main.bicep");
        let mut settings = BTreeMap::new();
        for list in ["var socwireSettings = [", "var premiumSettings = ["] {
            for line in block(&text, list).lines() {
                let line = line.trim();
                if let Some(rest) = line.strip_prefix("{ name: '") {
                    let (name, rest) = rest.split_once('\'').unwrap();
                    let value = rest
                        .trim_start_matches(',')
                        .trim()
                        .trim_start_matches("value:")
                        .trim_end_matches('}')
                        .trim();
                    settings.insert(name.to_string(), value.to_string());
                }
            }
        }
        assert!(
            !settings.is_empty(),
            "no app settings found in infra/main.bicep"
        );
        Self { text, settings }
    }

    /// `var <name> = [ 'a' 'b' ]` as a list.
    fn list(&self, var: &str) -> Vec<String> {
        block(&self.text, &format!("var {var} = ["))
            .lines()
            .map(|l| l.trim().trim_matches('\'').to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Is `name` an app setting, or the prefix of identity-based ones (`name__…`)?
    fn has_setting(&self, name: &str) -> bool {
        self.settings.contains_key(name)
            || self
                .settings
                .keys()
                .any(|k| k.starts_with(&format!("{name}__")))
    }
}

/// The lines after `opener` up to the first line that is only `]` or `}`.
fn block<'a>(text: &'a str, opener: &str) -> &'a str {
    let start = text
        .find(opener)
        .unwrap_or_else(|| panic!("infra/main.bicep has no {opener:?}"))
        + opener.len();
    let body = &text[start..];
    let end = [body.find("\n]"), body.find("\n}")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(body.len());
    &body[..end]
}

fn example_settings() -> BTreeSet<String> {
    json("local.settings.example.json")["Values"]
        .as_object()
        .expect("local.settings.example.json has Values")
        .keys()
        .cloned()
        .collect()
}

fn example_has(example: &BTreeSet<String>, name: &str) -> bool {
    example.contains(name) || example.iter().any(|k| k.starts_with(&format!("{name}__")))
}

/// Every function definition: (name, parsed function.json).
fn functions() -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = std::fs::read_dir(repo().join("function-defs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("function.json").is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let v = json(&format!("function-defs/{name}/function.json"));
            (name, v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!out.is_empty());
    out
}

fn bindings(def: &Value) -> Vec<&Value> {
    def["bindings"].as_array().unwrap().iter().collect()
}

fn s<'a>(b: &'a Value, key: &str) -> Option<&'a str> {
    b.get(key).and_then(Value::as_str)
}

fn fail_if(problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "{} mismatch(es):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

/// Without an ML workspace the Bicep disables exactly the functions whose code uses it.
#[test]
fn the_bicep_switches_off_every_ml_function_and_only_those_without_a_workspace() {
    let bicep = Bicep::load();
    let listed: BTreeSet<String> = bicep.list("mlFunctions").into_iter().collect();
    let uses_ml: BTreeSet<String> = functions()
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| {
            let module = name.replace('-', "_");
            let dir = repo().join("handlers/src/functions");
            let source = std::fs::read_to_string(dir.join(format!("{module}.rs")))
                .or_else(|_| std::fs::read_to_string(dir.join(&module).join("mod.rs")))
                .unwrap_or_else(|e| panic!("source of {name}: {e}"));
            source.contains("crate::ml") || source.contains("ctx.ml")
        })
        .collect();
    assert!(!uses_ml.is_empty());
    assert_eq!(listed, uses_ml);
    assert!(bicep
        .text
        .contains("{ name: 'AzureWebJobs.${f}.Disabled', value: hasMl ? 'false' : 'true' }"));
    assert_eq!(
        bicep.text.matches("mlSwitchSettings)").count(),
        2,
        "both hosting plans carry the switches"
    );
}

#[test]
fn every_setting_the_code_reads_is_in_the_example_and_the_bicep() {
    let code = code_settings();
    let example = example_settings();
    let bicep = Bicep::load();
    let mut problems = Vec::new();
    for (name, file) in &code {
        if HOST_INTERNAL.contains(&name.as_str()) {
            continue;
        }
        if !example_has(&example, name) {
            problems.push(format!(
                "{name} (read in {file}) is missing from local.settings.example.json"
            ));
        }
        let local_only = LOCAL_ONLY.iter().any(|(n, _)| n == name);
        if !local_only && !bicep.has_setting(name) {
            problems.push(format!(
                "{name} (read in {file}) is missing from the app settings in infra/main.bicep"
            ));
        }
    }
    for (name, why) in LOCAL_ONLY {
        if !code.contains_key(*name) {
            problems.push(format!(
                "{name} is listed as local-only ({why}) but no code reads it: drop it from LOCAL_ONLY"
            ));
        }
    }
    fail_if(problems);
}

/// A connection setting resolves when the Bicep sets it, or sets identity-based children for it
/// together with the user-assigned identity (`__credential`, `__clientId`); the example must
/// name it too.
fn check_connection(
    function: &str,
    connection: &str,
    bicep: &Bicep,
    example: &BTreeSet<String>,
    problems: &mut Vec<String>,
) {
    if !bicep.has_setting(connection) {
        problems.push(format!(
            "{function}: connection {connection} has no app setting in infra/main.bicep ({connection} or {connection}__…)"
        ));
    } else if !bicep.settings.contains_key(connection) {
        for child in ["credential", "clientId"] {
            let name = format!("{connection}__{child}");
            if !bicep.settings.contains_key(&name) {
                problems.push(format!("{function}: identity-based connection {connection} lacks {name} in infra/main.bicep"));
            }
        }
    }
    if !example_has(example, connection) {
        problems.push(format!(
            "{function}: connection {connection} is missing from local.settings.example.json"
        ));
    }
}

#[test]
fn every_broker_entity_and_connection_a_function_names_exists_in_the_bicep() {
    let bicep = Bicep::load();
    let example = example_settings();
    let queues = bicep.list("queueNames");
    let hubs = bicep.list("eventHubNames");
    let sb_topics = bicep.list("serviceBusTopicNames");
    let eg_topics = bicep.list("eventGridTopicNames");
    let sb_subs = json("infra/servicebus-subscriptions.json");
    let eg_subs = json("infra/eventgrid-subscriptions.json");
    let stage2 = read("infra/subscriptions.bicep");
    let mut problems = Vec::new();
    for (f, def) in functions() {
        for b in bindings(&def) {
            let kind = s(b, "type").unwrap_or("");
            let connection = s(b, "connection");
            match kind {
                "queueTrigger" | "queue" => {
                    let q = s(b, "queueName").unwrap_or("");
                    if !queues.iter().any(|x| x == q) {
                        problems.push(format!(
                            "{f}: queue {q:?} is not in queueNames in infra/main.bicep"
                        ));
                    }
                    check_connection(
                        &f,
                        connection.unwrap_or("AzureWebJobsStorage"),
                        &bicep,
                        &example,
                        &mut problems,
                    );
                }
                "eventHubTrigger" | "eventHub" => {
                    let h = s(b, "eventHubName").unwrap_or("");
                    if !hubs.iter().any(|x| x == h) {
                        problems.push(format!(
                            "{f}: event hub {h:?} is not in eventHubNames in infra/main.bicep"
                        ));
                    }
                    let group = s(b, "consumerGroup").unwrap_or("$Default");
                    if kind == "eventHubTrigger"
                        && group != "$Default"
                        && !bicep.text.contains(&format!("name: '{group}'"))
                    {
                        problems.push(format!(
                            "{f}: consumer group {group:?} is not declared in infra/main.bicep"
                        ));
                    }
                    check_connection(
                        &f,
                        connection.unwrap_or("<none>"),
                        &bicep,
                        &example,
                        &mut problems,
                    );
                }
                "serviceBusTrigger" | "serviceBus" => {
                    match (s(b, "topicName"), s(b, "queueName")) {
                        (Some(t), _) => {
                            if !sb_topics.iter().any(|x| x == t) {
                                problems.push(format!("{f}: Service Bus topic {t:?} is not in serviceBusTopicNames in infra/main.bicep"));
                            }
                            if kind == "serviceBusTrigger" {
                                let sub = s(b, "subscriptionName").unwrap_or("");
                                let listed = sb_subs.as_array().unwrap().iter().any(|e| {
                                    e["topic"] == t
                                        && e["subscription"] == sub
                                        && e["function"] == f.as_str()
                                });
                                if !listed {
                                    problems.push(format!("{f}: subscription {t}/{sub:?} for {f} is not in infra/servicebus-subscriptions.json"));
                                }
                            }
                        }
                        (None, q) => problems.push(format!(
                            "{f}: Service Bus queue {q:?}: infra/main.bicep declares topics only"
                        )),
                    }
                    check_connection(
                        &f,
                        connection.unwrap_or("<none>"),
                        &bicep,
                        &example,
                        &mut problems,
                    );
                }
                "eventGrid" => {
                    let Some(c) = connection else {
                        problems.push(format!(
                            "{f}: Event Grid output without \"connection\" (identity-based)"
                        ));
                        continue;
                    };
                    check_connection(&f, c, &bicep, &example, &mut problems);
                    let endpoint = format!("{c}__topicEndpointUri");
                    match bicep.settings.get(&endpoint) {
                        Some(value) => {
                            let index = value
                                .split("topics[")
                                .nth(1)
                                .and_then(|r| r.split(']').next())
                                .and_then(|i| i.parse::<usize>().ok());
                            let topic = index.and_then(|i| eg_topics.get(i));
                            match topic {
                                Some(topic) => {
                                    // The local host routes by the endpoint's first DNS label.
                                    let local = json("local.settings.example.json")["Values"][&endpoint]
                                        .as_str()
                                        .unwrap_or("")
                                        .to_string();
                                    if !local.starts_with(&format!("https://{topic}.")) {
                                        problems.push(format!("{f}: {endpoint} in local.settings.example.json ({local:?}) does not name topic {topic:?}, which infra/main.bicep sets"));
                                    }
                                }
                                None => problems.push(format!(
                                    "{f}: {endpoint} in infra/main.bicep ({value}) is not one of eventGridTopicNames"
                                )),
                            }
                        }
                        None => problems.push(format!(
                            "{f}: {endpoint} is not an app setting in infra/main.bicep"
                        )),
                    }
                }
                "eventGridTrigger" => {
                    let in_json = eg_subs
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter(|e| e["function"] == f.as_str())
                        .collect::<Vec<_>>();
                    for e in &in_json {
                        let t = e["topic"].as_str().unwrap_or("");
                        if !eg_topics.iter().any(|x| x == t) && !bicep.is_system_topic(t) {
                            problems.push(format!("{f}: infra/eventgrid-subscriptions.json subscribes it to {t:?}, not in eventGridTopicNames"));
                        }
                    }
                    if in_json.is_empty() && !stage2.contains(&format!("/functions/{f}'")) {
                        problems.push(format!("{f}: Event Grid trigger with no subscription in infra/eventgrid-subscriptions.json or infra/subscriptions.bicep"));
                    }
                }
                "timerTrigger" => {
                    let schedule = s(b, "schedule").unwrap_or("");
                    if let Some(name) = schedule.strip_prefix('%').and_then(|r| r.strip_suffix('%'))
                    {
                        if !bicep.has_setting(name) {
                            problems.push(format!("{f}: schedule setting {name} is not an app setting in infra/main.bicep"));
                        }
                        if !example.contains(name) {
                            problems.push(format!("{f}: schedule setting {name} is missing from local.settings.example.json"));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    fail_if(problems);
}

#[test]
fn subscription_files_agree_with_the_bicep_that_loads_them() {
    let bicep = Bicep::load();
    let stage2 = read("infra/subscriptions.bicep");
    let mut problems = Vec::new();
    for (file, loader) in [
        ("servicebus-subscriptions.json", &bicep.text),
        ("eventgrid-subscriptions.json", &stage2),
    ] {
        if !loader.contains(&format!("loadJsonContent('{file}')")) {
            problems.push(format!("infra/{file} is not loaded by the Bicep"));
        }
    }
    let sb_topics = bicep.list("serviceBusTopicNames");
    let defs: BTreeMap<String, Value> = functions().into_iter().collect();
    let mut seen = BTreeSet::new();
    for e in json("infra/servicebus-subscriptions.json")
        .as_array()
        .unwrap()
    {
        let topic = e["topic"].as_str().unwrap_or("");
        let sub = e["subscription"].as_str().unwrap_or("");
        let function = e["function"].as_str().unwrap_or("");
        if !sb_topics.iter().any(|t| t == topic) {
            problems.push(format!(
                "servicebus-subscriptions.json: topic {topic:?} is not in serviceBusTopicNames"
            ));
        }
        if !seen.insert((topic.to_string(), sub.to_string())) {
            problems.push(format!(
                "servicebus-subscriptions.json: {topic}/{sub} appears twice"
            ));
        }
        let subjects = e["subjects"].as_array().map(Vec::len).unwrap_or(0);
        if subjects == 0 && !e["sqlFilter"].is_string() {
            problems.push(format!(
                "servicebus-subscriptions.json: {topic}/{sub} filters on no subject and has no sqlFilter"
            ));
        }
        let max = e["maxDeliveryCount"].as_u64().unwrap_or(0);
        if !(1..=2000).contains(&max) {
            problems.push(format!(
                "servicebus-subscriptions.json: {topic}/{sub} maxDeliveryCount {max} is outside 1..=2000"
            ));
        }
        // A function of this branch must be the one triggered by this subscription.
        if let Some(def) = defs.get(function) {
            let ok = bindings(def).iter().any(|b| {
                s(b, "type") == Some("serviceBusTrigger")
                    && s(b, "topicName") == Some(topic)
                    && s(b, "subscriptionName") == Some(sub)
            });
            if !ok {
                problems.push(format!("servicebus-subscriptions.json: {function}/function.json has no serviceBusTrigger on {topic}/{sub}"));
            }
        }
    }
    let eg_topics = bicep.list("eventGridTopicNames");
    for e in json("infra/eventgrid-subscriptions.json")
        .as_array()
        .unwrap()
    {
        let topic = e["topic"].as_str().unwrap_or("");
        if !eg_topics.iter().any(|t| t == topic) && !bicep.is_system_topic(topic) {
            problems.push(format!(
                "eventgrid-subscriptions.json: topic {topic:?} is neither in eventGridTopicNames nor a system topic"
            ));
        }
    }
    fail_if(problems);
}

/// Marks of an Azure call in the handler's source, each with the role (a key of `roles` in
/// infra/main.bicep) and the resource it must be assigned on. Keyed by the call, not the file,
/// so adapters added on other branches are checked by what they call; a file that gets Entra ID
/// tokens but matches no mark fails the test, naming the file.
const CALL_ROLES: &[(&str, &str, &str)] = &[
    // (mark in the source, role key, Bicep scope)
    (
        "Microsoft.SecurityInsights",
        "sentinelResponder",
        "workspace",
    ),
    (
        "https://storage.azure.com/.default",
        "storageBlobDataOwner",
        "storage",
    ),
    ("x-ms-blob-type", "storageBlobDataOwner", "storage"),
    (
        "azure_storage_queue",
        "storageQueueDataContributor",
        "storage",
    ),
    (
        "https://monitor.azure.com/.default",
        "monitoringMetricsPublisher",
        "dcr",
    ),
    ("api.loganalytics", "logAnalyticsReader", "workspace"),
    ("servicebus.azure.net", "serviceBusDataSender", "sbTopics"),
    (
        "Microsoft.MachineLearningServices",
        "azureMlDataScientist",
        "mlWorkspace",
    ),
    (
        "Microsoft.MachineLearningServices",
        "azureMlComputeOperator",
        "mlWorkspace",
    ),
    ("eventgrid.azure.net", "eventGridDataSender", "topics[1]"),
    (
        "https://eventhubs.azure.net/.default",
        "eventHubsDataSender",
        "hubs[indexOf(eventHubNames, 'training-telemetry')]",
    ),
    (
        "\"userAssignedIdentities\"",
        "managedIdentityOperator",
        "mlJobIdentity",
    ),
    ("vault.azure.net", "keyVaultSecretsUser", "vault"),
];

/// Source that gets Entra ID tokens or calls Azure Storage with them.
const TOKEN_USE: &[&str] = &[
    "bearer(",
    "get_token(",
    "TokenCredential",
    "azure_storage_queue",
];

/// Role keys and the names Azure (and docs/deploying.md) give them.
const ROLE_NAMES: &[(&str, &str)] = &[
    ("storageBlobDataOwner", "Storage Blob Data Owner"),
    (
        "storageBlobDataContributor",
        "Storage Blob Data Contributor",
    ),
    (
        "storageQueueDataContributor",
        "Storage Queue Data Contributor",
    ),
    (
        "storageQueueDataMessageSender",
        "Storage Queue Data Message Sender",
    ),
    (
        "storageTableDataContributor",
        "Storage Table Data Contributor",
    ),
    ("sentinelResponder", "Microsoft Sentinel Responder"),
    ("logAnalyticsReader", "Log Analytics Reader"),
    ("monitoringMetricsPublisher", "Monitoring Metrics Publisher"),
    ("eventGridDataSender", "EventGrid Data Sender"),
    ("eventHubsDataReceiver", "Azure Event Hubs Data Receiver"),
    ("serviceBusDataReceiver", "Azure Service Bus Data Receiver"),
    ("serviceBusDataSender", "Azure Service Bus Data Sender"),
    ("keyVaultSecretsUser", "Key Vault Secrets User"),
    ("azureMlDataScientist", "AzureML Data Scientist"),
    ("azureMlComputeOperator", "AzureML Compute Operator"),
    ("eventHubsDataSender", "Azure Event Hubs Data Sender"),
    ("managedIdentityOperator", "Managed Identity Operator"),
];

/// Role assignment resources in the Bicep: (scope expression, role key, comment above it).
fn role_assignments(text: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if !line.contains("'Microsoft.Authorization/roleAssignments@") {
            continue;
        }
        let comment = lines[..i]
            .iter()
            .rev()
            .take_while(|l| l.trim().starts_with("//"))
            .map(|l| l.trim().trim_start_matches("//").trim())
            .collect::<Vec<_>>()
            .join(" ");
        let body: String = lines[i..]
            .iter()
            .take_while(|l| !l.starts_with('}'))
            .copied()
            .collect::<Vec<_>>()
            .join("\n");
        let scope = body
            .split("scope: ")
            .nth(1)
            .and_then(|r| r.lines().next())
            .unwrap_or("")
            .trim()
            .to_string();
        let role = body
            .split("roleDefinitions', roles.")
            .nth(1)
            .and_then(|r| r.split(')').next())
            .unwrap_or("")
            .to_string();
        out.push((scope, role, comment));
    }
    out
}

#[test]
fn every_adapter_call_is_covered_by_a_commented_role_assignment() {
    let bicep = Bicep::load();
    let assignments = role_assignments(&bicep.text);
    let mut problems = Vec::new();
    for (scope, role, comment) in &assignments {
        if comment.is_empty() {
            problems.push(format!("infra/main.bicep: the {role} assignment on {scope} has no comment saying which call needs it"));
        }
    }
    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    sources(&repo().join("handlers/src"), &mut files);
    files.sort();
    let mut marks_seen = 0;
    for path in files {
        let shown = path
            .strip_prefix(repo())
            .unwrap_or(&path)
            .display()
            .to_string();
        let source = std::fs::read_to_string(&path).unwrap();
        let marks: Vec<_> = CALL_ROLES
            .iter()
            .filter(|(m, ..)| source.contains(m))
            .collect();
        marks_seen += marks.len();
        let uses_tokens = TOKEN_USE.iter().any(|t| source.contains(t));
        // azure/mod.rs, azure/rest.rs and azure/ml_identity.rs are the shared token and retry
        // plumbing: the calls are made (and marked) by the adapters that use them.
        if uses_tokens
            && marks.is_empty()
            && !shown.ends_with("azure/mod.rs")
            && !shown.ends_with("azure/rest.rs")
            && !shown.ends_with("azure/ml_identity.rs")
        {
            problems.push(format!("{shown} gets Entra ID tokens but makes no call CALL_ROLES knows (tests/deploy_consistency.rs): add the call's mark and its role in infra/main.bicep"));
        }
        for (mark, role, scope) in marks {
            let covered = assignments
                .iter()
                .any(|(s, r, _)| r == role && s.starts_with(scope));
            if !covered {
                problems.push(format!("{shown} calls {mark:?}, which needs role {role} on {scope}: no such assignment in infra/main.bicep"));
            }
        }
    }
    assert!(
        marks_seen >= 5,
        "the adapters' calls were not found: is CALL_ROLES stale?"
    );
    fail_if(problems);
}

#[test]
fn every_role_in_the_bicep_is_defined_named_and_documented() {
    let bicep = Bicep::load();
    let docs = read("docs/deploying.md");
    let defined: BTreeSet<String> = block(&bicep.text, "var roles = {")
        .lines()
        .filter_map(|l| l.trim().split_once(':').map(|(k, _)| k.trim().to_string()))
        .filter(|k| !k.is_empty() && !k.starts_with("//"))
        .collect();
    let mut problems = Vec::new();
    for (scope, role, _) in role_assignments(&bicep.text) {
        if !defined.contains(&role) {
            problems.push(format!(
                "infra/main.bicep assigns roles.{role} on {scope}, which var roles does not define"
            ));
        }
    }
    for role in &defined {
        match ROLE_NAMES.iter().find(|(k, _)| k == role) {
            None => problems.push(format!(
                "roles.{role} has no display name in ROLE_NAMES (tests/deploy_consistency.rs)"
            )),
            Some((_, name)) if !docs.contains(name) => problems.push(format!(
                "docs/deploying.md does not explain role {name:?} (roles.{role})"
            )),
            Some(_) => {}
        }
    }
    // The playbook's roles too.
    let playbook = read("infra/sentinel/playbook.json");
    for name in [
        "EventGrid Data Sender",
        "Storage Queue Data Message Sender",
        "Microsoft Sentinel Automation Contributor",
    ] {
        if !docs.contains(name) {
            problems.push(format!(
                "docs/deploying.md does not explain the playbook's role {name:?}"
            ));
        }
    }
    if !playbook.contains("d5a91429-5739-47e2-a06b-3470a27159e7") {
        problems.push("infra/sentinel/playbook.json does not grant EventGrid Data Sender on the incidents topic".into());
    }
    fail_if(problems);
}

#[test]
fn the_playbook_is_triggered_on_incident_creation_and_publishes_with_its_identity() {
    let t = json("infra/sentinel/playbook.json");
    let resources = t["resources"].as_array().unwrap();
    let of_type =
        |ty: &str| -> Vec<&Value> { resources.iter().filter(|r| r["type"] == ty).collect() };
    let workflow = of_type("Microsoft.Logic/workflows");
    assert_eq!(workflow.len(), 1, "one Logic App");
    let workflow = workflow[0];
    assert_eq!(workflow["identity"]["type"], "SystemAssigned");
    let def = &workflow["properties"]["definition"];
    let trigger = &def["triggers"]["Microsoft_Sentinel_incident"];
    assert_eq!(trigger["type"], "ApiConnectionWebhook");
    assert_eq!(trigger["inputs"]["path"], "/incident-creation");
    let connection =
        &workflow["properties"]["parameters"]["$connections"]["value"]["azuresentinel"];
    assert_eq!(
        connection["connectionProperties"]["authentication"]["type"],
        "ManagedServiceIdentity"
    );
    let text = def.to_string();
    assert!(
        text.contains("https://eventgrid.azure.net"),
        "publishes to Event Grid with a token"
    );
    assert!(
        text.contains("https://storage.azure.com"),
        "or queues with a token"
    );
    assert!(
        !text.to_ascii_lowercase().contains("aeg-sas-key"),
        "no topic key"
    );
    let connections = of_type("Microsoft.Web/connections");
    assert_eq!(
        connections[0]["properties"]["parameterValueType"],
        "Alternative"
    );
    let rule = of_type("Microsoft.SecurityInsights/automationRules");
    assert_eq!(rule.len(), 1, "one automation rule");
    let logic = &rule[0]["properties"]["triggeringLogic"];
    assert_eq!(logic["triggersOn"], "Incidents");
    assert_eq!(logic["triggersWhen"], "Created");
    assert_eq!(
        rule[0]["properties"]["actions"][0]["actionType"],
        "RunPlaybook"
    );
}

/// Brackets, braces, parentheses and strings (with `${…}` interpolation, which may hold nested
/// strings) balance in a Bicep text; the first problem with its line. No Bicep compiler runs
/// here, so this is the syntax check the templates get.
fn bicep_balance(text: &str) -> Result<(), String> {
    let chars: Vec<char> = text.chars().collect();
    let mut stack: Vec<(char, usize)> = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '\n' {
            line += 1;
        }
        let in_string = matches!(stack.last(), Some(('\'', _)));
        if in_string {
            match c {
                '\\' => i += 1,
                '\'' => {
                    stack.pop();
                }
                '$' if next == Some('{') => {
                    stack.push(('$', line));
                    i += 1;
                }
                '\n' => return Err(format!("line {}: string not closed", line - 1)),
                _ => {}
            }
        } else {
            match c {
                '/' if next == Some('/') => {
                    while i < chars.len() && chars[i] != '\n' {
                        i += 1;
                    }
                    continue;
                }
                '\'' => stack.push(('\'', line)),
                '{' | '[' | '(' => stack.push((c, line)),
                '}' | ']' | ')' => {
                    let open = match c {
                        '}' => "{$",
                        ']' => "[",
                        _ => "(",
                    };
                    match stack.pop() {
                        Some((o, _)) if open.contains(o) => {}
                        Some((o, at)) => {
                            return Err(format!(
                                "line {line}: {c:?} closes {o:?} opened on line {at}"
                            ))
                        }
                        None => return Err(format!("line {line}: {c:?} closes nothing")),
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    match stack.pop() {
        None => Ok(()),
        Some((o, at)) => Err(format!("{o:?} opened on line {at} is never closed")),
    }
}

#[test]
fn bicep_files_balance_and_name_each_resource_once() {
    let mut problems = Vec::new();
    for file in ["infra/main.bicep", "infra/subscriptions.bicep"] {
        let text = read(file);
        if let Err(e) = bicep_balance(&text) {
            problems.push(format!("{file}: {e}"));
        }
        let mut names = BTreeSet::new();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            if matches!(words.next(), Some("resource" | "param" | "var" | "output")) {
                if let Some(name) = words.next() {
                    if !names.insert(name.to_string()) {
                        problems.push(format!("{file}: {name} is declared twice"));
                    }
                }
            }
        }
    }
    for (bad, why) in [
        ("var a = { b: [ 'c' }\n", "closes"),
        ("var a = 'x${f('y')\n", "never closed"),
        ("var a = 'x\n'\n", "not closed"),
        ("var a = [\n", "never closed"),
    ] {
        let e = bicep_balance(bad).unwrap_err();
        assert!(e.contains(why), "{bad:?}: {e}");
    }
    assert!(bicep_balance("var a = 'x${join(map(l, s => '\\'${s}\\''), \', \')}' // {\n").is_ok());
    fail_if(problems);
}

/// `{ name: 'X', type: 'Y' }` entries of a Bicep column list, in order.
fn columns(list: &str) -> Vec<(String, String)> {
    list.lines()
        .filter_map(|l| {
            let name = l.split("name: '").nth(1)?.split('\'').next()?;
            let kind = l.split("type: '").nth(1)?.split('\'').next()?;
            Some((name.to_string(), kind.to_string()))
        })
        .collect()
}

/// The alert engine's rows carry exactly the columns `AlertSubgraphs_CL` and the DCR's
/// `Custom-AlertSubgraphs` stream declare, each of the declared type: Logs Ingestion drops a
/// column the stream does not declare, and a row the table cannot hold.
#[test]
fn subgraph_rows_carry_exactly_the_columns_the_table_and_the_stream_declare() {
    use alertgraph::{EvidenceItem, Subgraph, SubgraphEdge, SubgraphNode};
    let bicep = read("infra/main.bicep");
    let table = columns(block(&bicep, "resource subgraphTable"));
    let stream_block = &bicep[bicep
        .find("'Custom-AlertSubgraphs': {")
        .expect("the stream")..];
    let stream = columns(&stream_block[..stream_block.find(']').expect("its columns")]);
    assert_eq!(
        table, stream,
        "the table and the stream declare the same columns"
    );
    // A row with every optional column present.
    let row = Subgraph {
        subgraph_id: "0123456789abcdef0123456789abcdef".into(),
        rank: 1,
        score: 7.5,
        first_seen: 1_795_132_800_000,
        last_seen: 1_795_132_900_000,
        node_count: 3,
        edge_count: 2,
        alert_count: 3,
        longest_path: 2,
        crosses_it_ot: true,
        path: vec!["10.0.0.1".into(), "10.0.0.2".into(), "10.20.0.9".into()],
        nodes: vec![SubgraphNode {
            ip: "10.0.0.1".into(),
            host: Some("ws-1".into()),
            domain: "IT",
        }],
        edges: vec![SubgraphEdge {
            src: "10.0.0.1".into(),
            dst: "10.0.0.2".into(),
            first_seen: "2026-11-21T00:00:00.000Z".into(),
            alerts: 2,
            protocols: vec!["SMB".into()],
            tactics: vec![],
        }],
        alert_ids: vec!["a1".into(), "a2".into(), "a3".into()],
        reasons: vec!["a reason".into()],
        evidence: vec![EvidenceItem {
            alert_id: "a3".into(),
            time: "2026-11-21T00:01:00.000Z".into(),
            name: "Unauthorized PLC write".into(),
            stage: "impact",
            host: "10.20.0.9".into(),
            peer: Some("10.0.0.2".into()),
        }],
        shape: "0123456789abcdef".into(),
    };
    let written = row.to_row("2026-12-07T00:00:00.000Z");
    let written = written.as_object().expect("a row is an object");
    let names: BTreeSet<&str> = written.keys().map(String::as_str).collect();
    let declared: BTreeSet<&str> = table.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, declared, "row columns against infra/main.bicep");
    for (name, kind) in &table {
        let v = &written[name.as_str()];
        let fits = match kind.as_str() {
            "string" | "datetime" => v.is_string(),
            "int" => v.is_i64() || v.is_u64(),
            "real" => v.is_number(),
            "boolean" => v.is_boolean(),
            "dynamic" => v.is_array() || v.is_object(),
            other => panic!("{name}: type {other} not checked"),
        };
        assert!(fits, "{name} is declared {kind} but written as {v}");
    }
}
