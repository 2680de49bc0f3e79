//! The app as the Functions host sees it: `host.json`, `function-defs/*/function.json`, the
//! `Values` of `local.settings.json`, and the Event Grid subscriptions in
//! `infra/eventgrid-subscriptions.json` (the same file the Bicep templates load).

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration problem, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ConfigError {
    /// The file at fault.
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

fn err(path: &Path, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Everything `socwire up` needs to know about the app.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// The app root (where host.json is).
    pub root: PathBuf,
    /// Parsed host.json.
    pub host: HostOptions,
    /// One entry per function folder.
    pub functions: Vec<FunctionDef>,
    /// App settings (local.settings.json `Values`), passed to the handler as environment.
    pub settings: BTreeMap<String, String>,
    /// Event Grid topic subscriptions.
    pub eventgrid_subscriptions: Vec<EventGridSubscription>,
    /// Service Bus topic subscriptions' filters and delivery counts
    /// (`infra/servicebus-subscriptions.json`).
    pub servicebus_subscriptions: Vec<ServiceBusSubscription>,
}

/// A Service Bus topic subscription as `infra/servicebus-subscriptions.json` declares it (the
/// same file the Bicep templates load).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceBusSubscription {
    /// Topic name.
    pub topic: String,
    /// Subscription name.
    pub subscription: String,
    /// Takes only messages whose Subject is one of these; absent = every message.
    #[serde(default)]
    pub subjects: Option<Vec<String>>,
    /// Deliveries before dead-lettering (overrides host.json's).
    #[serde(default)]
    pub max_delivery_count: Option<u32>,
    /// The SQL filter Bicep applies in Azure when `subjects` cannot say it (the local broker
    /// filters on `subjects` only).
    #[serde(default)]
    pub sql_filter: Option<String>,
}

/// The parts of host.json the local host honours.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// `customHandler.description.defaultExecutablePath`.
    pub executable: String,
    /// `customHandler.description.arguments`, `%VAR%` expanded at spawn time.
    pub arguments: Vec<String>,
    /// `extensions.queues`.
    pub queues: QueueOptions,
    /// `extensions.serviceBus`.
    pub service_bus: ServiceBusOptions,
    /// `extensions.eventHubs`.
    pub event_hubs: EventHubOptions,
    /// `functionTimeout`.
    pub function_timeout: Duration,
    /// Root-level `retry` policy, if any.
    pub retry: Option<RetryPolicy>,
}

/// Storage queue trigger options.
#[derive(Debug, Clone)]
pub struct QueueOptions {
    /// Messages fetched per poll (default 16, max 32).
    pub batch_size: usize,
    /// Deliveries before a message goes to `<queue>-poison` (default 5).
    pub max_dequeue_count: u32,
    /// Delay before a failed message is visible again (default 0).
    pub visibility_timeout: Duration,
    /// Longest wait between polls of an empty queue.
    pub max_polling_interval: Duration,
    /// `base64` (default) or `none`.
    pub message_encoding: MessageEncoding,
}

/// How queue message text is encoded on the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageEncoding {
    /// Base64 (the Functions default).
    Base64,
    /// Plain text (what a Logic App's "Put a message on a queue" writes).
    None,
}

/// Service Bus trigger options.
#[derive(Debug, Clone)]
pub struct ServiceBusOptions {
    /// Invocations in flight per function.
    pub max_concurrent_calls: usize,
    /// Deliveries before dead-lettering (an entity property in Azure; here one value).
    pub max_delivery_count: u32,
    /// How long the host keeps renewing a message's lock while its invocation runs
    /// (`maxAutoLockRenewalDuration`, default 5 minutes).
    pub max_auto_lock_renewal: Duration,
}

/// Event Hubs trigger options.
#[derive(Debug, Clone)]
pub struct EventHubOptions {
    /// Largest batch handed to a `cardinality: many` function (default 100).
    pub max_event_batch_size: usize,
    /// Partitions per hub the local host creates (not a host.json setting; 4).
    pub partitions: u32,
}

/// A trigger binding's `dataType`, which decides the .NET type the host binds the trigger to
/// and so what a custom handler receives (`GeneralScriptBindingProvider.GetRequestedType`, then
/// `ScriptInvocationContextExtensions.GetHttpScriptInvocationContextValue` in the Functions host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    /// No `dataType`: bound as `object`, so the host reads each body as JSON and the invocation
    /// fails before the handler is called when a body is not JSON.
    Unspecified,
    /// `string`: each body as text.
    String,
    /// `binary`: each body as bytes, which reach a custom handler base64-encoded.
    Binary,
}

impl DataType {
    fn parse(v: Option<&Value>, path: &Path) -> Result<Self, ConfigError> {
        match v
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None => Ok(DataType::Unspecified),
            Some("string") => Ok(DataType::String),
            Some("binary") => Ok(DataType::Binary),
            Some(other) => Err(err(
                path,
                format!("dataType {other:?} is not string or binary"),
            )),
        }
    }
}

/// A retry policy (`fixedDelay` or `exponentialBackoff`).
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt; `None` = until it succeeds (`-1`).
    pub max_retry_count: Option<u32>,
    /// Delay strategy.
    pub strategy: RetryStrategy,
}

/// How long to wait between retries.
#[derive(Debug, Clone, PartialEq)]
pub enum RetryStrategy {
    /// The same delay every time.
    Fixed(Duration),
    /// Doubling from `min` up to `max`.
    Exponential {
        /// First delay.
        min: Duration,
        /// Cap.
        max: Duration,
    },
}

impl RetryPolicy {
    /// Delay before retry number `retry` (0-based).
    pub fn delay(&self, retry: u32) -> Duration {
        match &self.strategy {
            RetryStrategy::Fixed(d) => *d,
            RetryStrategy::Exponential { min, max } => {
                let factor = 2u32.saturating_pow(retry.min(20));
                min.saturating_mul(factor).min(*max)
            }
        }
    }
}

/// One function: its trigger and output bindings.
#[derive(Debug, Clone)]
pub struct FunctionDef {
    /// Folder name = function name = the path the handler is POSTed on.
    pub name: String,
    /// The trigger binding.
    pub trigger: Trigger,
    /// Output bindings.
    pub outputs: Vec<OutputBinding>,
    /// Function-level retry policy (overrides host.json's).
    pub retry: Option<RetryPolicy>,
}

/// A trigger binding.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// `queueTrigger`.
    Queue {
        /// Binding name.
        name: String,
        /// Queue name.
        queue: String,
    },
    /// `serviceBusTrigger`.
    ServiceBus {
        /// Binding name.
        name: String,
        /// `queueName`, or `topicName/subscriptions/subscriptionName`.
        entity: String,
        /// Topic name when the trigger is on a subscription.
        topic: Option<String>,
        /// `isSessionsEnabled`.
        sessions: bool,
    },
    /// `eventHubTrigger`.
    EventHub {
        /// Binding name.
        name: String,
        /// Hub name.
        hub: String,
        /// Consumer group (default `$Default`).
        consumer_group: String,
        /// `cardinality: many`.
        many: bool,
        /// `dataType`: how the host hands each event body to the handler.
        data_type: DataType,
    },
    /// `eventGridTrigger`.
    EventGrid {
        /// Binding name.
        name: String,
    },
    /// `timerTrigger`.
    Timer {
        /// Binding name.
        name: String,
        /// Six-field NCRONTAB expression.
        schedule: String,
        /// Run once when the host starts.
        run_on_startup: bool,
    },
    /// `httpTrigger`.
    Http {
        /// Binding name.
        name: String,
        /// Allowed methods, upper case (empty = all).
        methods: Vec<String>,
        /// Route template under `/api/` (default: the function name).
        route: String,
        /// `anonymous`, `function` or `admin`.
        auth_level: String,
    },
}

impl Trigger {
    /// The binding name under which the handler finds the trigger in `Data`.
    pub fn binding_name(&self) -> &str {
        match self {
            Trigger::Queue { name, .. }
            | Trigger::ServiceBus { name, .. }
            | Trigger::EventHub { name, .. }
            | Trigger::EventGrid { name }
            | Trigger::Timer { name, .. }
            | Trigger::Http { name, .. } => name,
        }
    }
}

/// An output binding.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputBinding {
    /// Binding name (`$return` for the return value).
    pub name: String,
    /// Where it goes.
    pub target: OutputTarget,
    /// `dataType: binary`: outputs are base64 the host always decodes.
    pub binary: bool,
}

/// The broker (or store) an output binding names.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputTarget {
    /// `queue`.
    Queue(String),
    /// `serviceBus` (queue or topic name).
    ServiceBus(String),
    /// `eventHub`.
    EventHub(String),
    /// `eventGrid` (topic name, resolved from the endpoint setting).
    EventGrid(String),
    /// `blob` (path template).
    Blob(String),
    /// `http` response.
    Http,
}

/// An Event Grid subscription: deliver `topic`'s events to `function`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventGridSubscription {
    /// Topic name.
    pub topic: String,
    /// Subscribed function.
    pub function: String,
    /// Max delivery attempts (1–30, default 30).
    #[serde(default = "default_attempts")]
    pub max_delivery_attempts: u32,
    /// Event time-to-live in minutes (default 1440).
    #[serde(default = "default_ttl")]
    pub event_time_to_live_minutes: u32,
}

fn default_attempts() -> u32 {
    30
}
fn default_ttl() -> u32 {
    1440
}

fn read_json(path: &Path) -> Result<Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| err(path, e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| err(path, format!("not valid JSON: {e}")))
}

/// Parses a `hh:mm:ss` (optionally `d.hh:mm:ss`) TimeSpan as host.json writes durations.
pub fn parse_timespan(text: &str) -> Option<Duration> {
    let (days, rest) = match text.split_once('.') {
        Some((d, r)) if !d.contains(':') => (d.parse::<u64>().ok()?, r),
        _ => (0, text),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    if parts.len() != 3 {
        return None;
    }
    let h: u64 = parts[0].parse().ok()?;
    let m: u64 = parts[1].parse().ok()?;
    let s: f64 = parts[2].parse().ok()?;
    if m >= 60 || !(0.0..60.0).contains(&s) {
        return None;
    }
    Some(Duration::from_secs(days * 86_400 + h * 3600 + m * 60) + Duration::from_secs_f64(s))
}

fn duration_at(
    v: &Value,
    pointer: &str,
    default: Duration,
    path: &Path,
) -> Result<Duration, ConfigError> {
    match v.pointer(pointer) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::String(s)) => {
            parse_timespan(s).ok_or_else(|| err(path, format!("{pointer}: {s:?} is not hh:mm:ss")))
        }
        Some(other) => Err(err(
            path,
            format!("{pointer}: expected \"hh:mm:ss\", got {other}"),
        )),
    }
}

fn u64_at(v: &Value, pointer: &str, default: u64, path: &Path) -> Result<u64, ConfigError> {
    match v.pointer(pointer) {
        None | Some(Value::Null) => Ok(default),
        Some(x) => x.as_u64().ok_or_else(|| {
            err(
                path,
                format!("{pointer}: expected a non-negative integer, got {x}"),
            )
        }),
    }
}

fn parse_retry(v: Option<&Value>, path: &Path) -> Result<Option<RetryPolicy>, ConfigError> {
    let Some(v) = v else { return Ok(None) };
    let strategy = v.get("strategy").and_then(Value::as_str).unwrap_or("");
    let max = v
        .get("maxRetryCount")
        .and_then(Value::as_i64)
        .ok_or_else(|| {
            err(
                path,
                "retry.maxRetryCount is required (-1 = until it succeeds)",
            )
        })?;
    let max_retry_count = if max < 0 { None } else { Some(max as u32) };
    let strategy = match strategy {
        "fixedDelay" => RetryStrategy::Fixed(duration_at(
            v,
            "/delayInterval",
            Duration::from_secs(5),
            path,
        )?),
        "exponentialBackoff" => RetryStrategy::Exponential {
            min: duration_at(v, "/minimumInterval", Duration::from_secs(4), path)?,
            max: duration_at(v, "/maximumInterval", Duration::from_secs(900), path)?,
        },
        other => {
            return Err(err(
                path,
                format!("retry.strategy {other:?}: use fixedDelay or exponentialBackoff"),
            ))
        }
    };
    Ok(Some(RetryPolicy {
        max_retry_count,
        strategy,
    }))
}

impl HostOptions {
    /// Parses host.json.
    pub fn parse(v: &Value, path: &Path) -> Result<Self, ConfigError> {
        let handler = v
            .pointer("/customHandler/description")
            .ok_or_else(|| err(path, "customHandler.description is missing"))?;
        let executable = handler
            .get("defaultExecutablePath")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                err(
                    path,
                    "customHandler.description.defaultExecutablePath is missing",
                )
            })?
            .to_string();
        let arguments = handler
            .get("arguments")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        let message_encoding = match v
            .pointer("/extensions/queues/messageEncoding")
            .and_then(Value::as_str)
        {
            None | Some("base64") => MessageEncoding::Base64,
            Some("none") => MessageEncoding::None,
            Some(other) => {
                return Err(err(
                    path,
                    format!("extensions.queues.messageEncoding {other:?}: use base64 or none"),
                ))
            }
        };
        Ok(Self {
            executable,
            arguments,
            queues: QueueOptions {
                batch_size: u64_at(v, "/extensions/queues/batchSize", 16, path)?.clamp(1, 32)
                    as usize,
                max_dequeue_count: u64_at(v, "/extensions/queues/maxDequeueCount", 5, path)?.max(1)
                    as u32,
                visibility_timeout: duration_at(
                    v,
                    "/extensions/queues/visibilityTimeout",
                    Duration::ZERO,
                    path,
                )?,
                max_polling_interval: duration_at(
                    v,
                    "/extensions/queues/maxPollingInterval",
                    Duration::from_secs(2),
                    path,
                )?,
                message_encoding,
            },
            service_bus: ServiceBusOptions {
                max_concurrent_calls: u64_at(
                    v,
                    "/extensions/serviceBus/maxConcurrentCalls",
                    16,
                    path,
                )?
                .max(1) as usize,
                max_delivery_count: u64_at(v, "/extensions/serviceBus/maxDeliveryCount", 10, path)?
                    .max(1) as u32,
                max_auto_lock_renewal: duration_at(
                    v,
                    "/extensions/serviceBus/maxAutoLockRenewalDuration",
                    Duration::from_secs(300),
                    path,
                )?,
            },
            event_hubs: EventHubOptions {
                max_event_batch_size: u64_at(
                    v,
                    "/extensions/eventHubs/maxEventBatchSize",
                    100,
                    path,
                )?
                .max(1) as usize,
                partitions: 4,
            },
            function_timeout: duration_at(v, "/functionTimeout", Duration::from_secs(300), path)?,
            retry: parse_retry(v.get("retry"), path)?,
        })
    }
}

fn str_field(b: &Value, key: &str, path: &Path) -> Result<String, ConfigError> {
    b.get(key)
        .and_then(Value::as_str)
        .map(String::from)
        .ok_or_else(|| {
            err(
                path,
                format!(
                    "binding {:?} needs {key:?}",
                    b.get("name").and_then(Value::as_str).unwrap_or("?")
                ),
            )
        })
}

/// Topic name behind an Event Grid output binding: the first label of the endpoint URI held in
/// the `topicEndpointUri` setting (`https://{topic}.{region}-1.eventgrid.azure.net/api/events`),
/// or the setting's name when it has no value.
fn eventgrid_topic(setting: &str, settings: &BTreeMap<String, String>) -> String {
    settings
        .get(setting)
        .and_then(|uri| {
            let host = uri.split("://").nth(1)?.split(['/', ':']).next()?;
            host.split('.').next().map(String::from)
        })
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| setting.to_string())
}

/// Topic name behind an Event Grid output binding, in either of the extension's forms:
/// `connection` (identity-based: the endpoint is in the `<connection>__topicEndpointUri` setting,
/// or in `<connection>` itself) or `topicEndpointUri` (a setting holding the endpoint, used with
/// `topicKeySetting`).
fn eventgrid_output_topic(
    b: &Value,
    bname: &str,
    path: &Path,
    settings: &BTreeMap<String, String>,
) -> Result<String, ConfigError> {
    match (
        b.get("connection").and_then(Value::as_str),
        b.get("topicEndpointUri").and_then(Value::as_str),
    ) {
        (Some(_), Some(_)) => Err(err(
            path,
            format!("binding {bname:?}: set connection or topicEndpointUri, not both"),
        )),
        (Some(connection), None) => {
            let endpoint_setting = format!("{connection}__topicEndpointUri");
            let setting = if settings.contains_key(&endpoint_setting) {
                endpoint_setting
            } else {
                connection.to_string()
            };
            Ok(eventgrid_topic(&setting, settings))
        }
        (None, Some(uri_setting)) => Ok(eventgrid_topic(uri_setting, settings)),
        (None, None) => Err(err(
            path,
            format!("binding {bname:?} needs \"connection\" or \"topicEndpointUri\""),
        )),
    }
}

impl FunctionDef {
    /// Parses one `function.json`.
    pub fn parse(
        name: &str,
        v: &Value,
        path: &Path,
        settings: &BTreeMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let bindings = v
            .get("bindings")
            .and_then(Value::as_array)
            .ok_or_else(|| err(path, "bindings array is missing"))?;
        let mut trigger = None;
        let mut outputs = Vec::new();
        for b in bindings {
            let kind = b.get("type").and_then(Value::as_str).unwrap_or("");
            let bname = str_field(b, "name", path)?;
            let direction = b.get("direction").and_then(Value::as_str).unwrap_or("");
            if kind.ends_with("Trigger") {
                if trigger.is_some() {
                    return Err(err(path, "more than one trigger binding"));
                }
                trigger = Some(match kind {
                    "queueTrigger" => Trigger::Queue {
                        name: bname,
                        queue: str_field(b, "queueName", path)?,
                    },
                    "serviceBusTrigger" => {
                        let (entity, topic) = match b.get("queueName").and_then(Value::as_str) {
                            Some(q) => (q.to_string(), None),
                            None => {
                                let topic = str_field(b, "topicName", path)?;
                                let sub = str_field(b, "subscriptionName", path)?;
                                (format!("{topic}/subscriptions/{sub}"), Some(topic))
                            }
                        };
                        Trigger::ServiceBus {
                            name: bname,
                            entity,
                            topic,
                            sessions: b
                                .get("isSessionsEnabled")
                                .and_then(Value::as_bool)
                                .unwrap_or(false),
                        }
                    }
                    "eventHubTrigger" => Trigger::EventHub {
                        name: bname,
                        hub: str_field(b, "eventHubName", path)?,
                        consumer_group: b
                            .get("consumerGroup")
                            .and_then(Value::as_str)
                            .unwrap_or("$Default")
                            .to_string(),
                        many: b
                            .get("cardinality")
                            .and_then(Value::as_str)
                            .is_some_and(|c| c.eq_ignore_ascii_case("many")),
                        data_type: DataType::parse(b.get("dataType"), path)?,
                    },
                    "eventGridTrigger" => Trigger::EventGrid { name: bname },
                    "timerTrigger" => Trigger::Timer {
                        name: bname,
                        schedule: str_field(b, "schedule", path)?,
                        run_on_startup: b
                            .get("runOnStartup")
                            .and_then(Value::as_bool)
                            .unwrap_or(false),
                    },
                    "httpTrigger" => Trigger::Http {
                        name: bname,
                        methods: b
                            .get("methods")
                            .and_then(Value::as_array)
                            .map(|m| {
                                m.iter()
                                    .filter_map(Value::as_str)
                                    .map(str::to_ascii_uppercase)
                                    .collect()
                            })
                            .unwrap_or_default(),
                        route: b
                            .get("route")
                            .and_then(Value::as_str)
                            .unwrap_or(name)
                            .to_string(),
                        auth_level: b
                            .get("authLevel")
                            .and_then(Value::as_str)
                            .unwrap_or("function")
                            .to_ascii_lowercase(),
                    },
                    other => {
                        return Err(err(
                            path,
                            format!("trigger type {other:?} is not supported by the local host"),
                        ))
                    }
                });
            } else if direction == "out" {
                let target = match kind {
                    "queue" => OutputTarget::Queue(str_field(b, "queueName", path)?),
                    "serviceBus" => OutputTarget::ServiceBus(
                        b.get("queueName")
                            .or_else(|| b.get("topicName"))
                            .and_then(Value::as_str)
                            .map(String::from)
                            .ok_or_else(|| {
                                err(
                                    path,
                                    format!("binding {bname:?} needs queueName or topicName"),
                                )
                            })?,
                    ),
                    "eventHub" => OutputTarget::EventHub(str_field(b, "eventHubName", path)?),
                    "eventGrid" => {
                        OutputTarget::EventGrid(eventgrid_output_topic(b, &bname, path, settings)?)
                    }
                    "blob" => OutputTarget::Blob(str_field(b, "path", path)?),
                    "http" => OutputTarget::Http,
                    other => {
                        return Err(err(
                            path,
                            format!("output type {other:?} is not supported by the local host"),
                        ))
                    }
                };
                outputs.push(OutputBinding {
                    name: bname,
                    target,
                    binary: b.get("dataType").and_then(Value::as_str) == Some("binary"),
                });
            }
        }
        Ok(Self {
            name: name.to_string(),
            trigger: trigger.ok_or_else(|| err(path, "no trigger binding"))?,
            outputs,
            retry: parse_retry(v.get("retry"), path)?,
        })
    }
}

impl AppConfig {
    /// Loads the app rooted at `root`: host.json, `function-defs/*/function.json` (or
    /// `*/function.json` beside host.json, the deployed layout), local.settings.json (or
    /// local.settings.example.json) and infra/eventgrid-subscriptions.json.
    pub fn load(root: &Path) -> Result<Self, ConfigError> {
        let host_path = root.join("host.json");
        let host = HostOptions::parse(&read_json(&host_path)?, &host_path)?;
        let settings = load_settings(root)?;
        let defs_dir = if root.join("function-defs").is_dir() {
            root.join("function-defs")
        } else {
            root.to_path_buf()
        };
        let mut functions = Vec::new();
        let entries = std::fs::read_dir(&defs_dir).map_err(|e| err(&defs_dir, e.to_string()))?;
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.join("function.json").is_file())
            .collect();
        dirs.sort();
        for dir in dirs {
            let name = dir
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            let path = dir.join("function.json");
            functions.push(FunctionDef::parse(
                &name,
                &read_json(&path)?,
                &path,
                &settings,
            )?);
        }
        if functions.is_empty() {
            return Err(err(&defs_dir, "no */function.json found"));
        }
        let subs_path = root.join("infra").join("eventgrid-subscriptions.json");
        let eventgrid_subscriptions: Vec<EventGridSubscription> = if subs_path.is_file() {
            serde_json::from_value(read_json(&subs_path)?)
                .map_err(|e| err(&subs_path, e.to_string()))?
        } else {
            Vec::new()
        };
        for s in &eventgrid_subscriptions {
            let known = functions
                .iter()
                .any(|f| f.name == s.function && matches!(f.trigger, Trigger::EventGrid { .. }));
            if !known {
                return Err(err(&subs_path, format!("subscription to {:?} names {:?}, which is not an eventGridTrigger function", s.topic, s.function)));
            }
            if !(1..=30).contains(&s.max_delivery_attempts) {
                return Err(err(
                    &subs_path,
                    format!(
                        "maxDeliveryAttempts {} is outside 1..=30",
                        s.max_delivery_attempts
                    ),
                ));
            }
        }
        let sb_path = root.join("infra").join("servicebus-subscriptions.json");
        let servicebus_subscriptions: Vec<ServiceBusSubscription> = if sb_path.is_file() {
            serde_json::from_value(read_json(&sb_path)?)
                .map_err(|e| err(&sb_path, e.to_string()))?
        } else {
            Vec::new()
        };
        for s in &servicebus_subscriptions {
            if s.max_delivery_count == Some(0) {
                return Err(err(
                    &sb_path,
                    format!(
                        "{}/{}: maxDeliveryCount must be at least 1",
                        s.topic, s.subscription
                    ),
                ));
            }
        }
        Ok(Self {
            root: root.to_path_buf(),
            host,
            functions,
            settings,
            eventgrid_subscriptions,
            servicebus_subscriptions,
        })
    }

    /// The declared filter and delivery count of `topic/subscriptions/sub`, if any.
    pub fn servicebus_subscription(
        &self,
        topic: &str,
        sub: &str,
    ) -> Option<&ServiceBusSubscription> {
        self.servicebus_subscriptions
            .iter()
            .find(|s| s.topic == topic && s.subscription == sub)
    }

    /// The function named `name`.
    pub fn function(&self, name: &str) -> Option<&FunctionDef> {
        self.functions.iter().find(|f| f.name == name)
    }
}

fn load_settings(root: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    let path = [
        root.join("local.settings.json"),
        root.join("local.settings.example.json"),
    ]
    .into_iter()
    .find(|p| p.is_file());
    let Some(path) = path else {
        return Ok(BTreeMap::new());
    };
    let v = read_json(&path)?;
    let values = v
        .get("Values")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    Ok(values
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                v.as_str()
                    .map(String::from)
                    .unwrap_or_else(|| v.to_string()),
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timespans_parse() {
        assert_eq!(parse_timespan("00:00:30"), Some(Duration::from_secs(30)));
        assert_eq!(
            parse_timespan("1.00:00:00"),
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(parse_timespan("00:61:00"), None);
        assert_eq!(parse_timespan("30s"), None);
    }

    #[test]
    fn exponential_retry_doubles_and_caps() {
        let p = RetryPolicy {
            max_retry_count: Some(3),
            strategy: RetryStrategy::Exponential {
                min: Duration::from_secs(1),
                max: Duration::from_secs(5),
            },
        };
        assert_eq!(p.delay(0), Duration::from_secs(1));
        assert_eq!(p.delay(2), Duration::from_secs(4));
        assert_eq!(p.delay(3), Duration::from_secs(5));
    }

    #[test]
    fn bad_host_json_names_the_problem() {
        let e = HostOptions::parse(&json!({"version": "2.0"}), Path::new("host.json")).unwrap_err();
        assert!(e.to_string().contains("customHandler"));
        let e = HostOptions::parse(
            &json!({"customHandler": {"description": {"defaultExecutablePath": "x"}}, "extensions": {"queues": {"messageEncoding": "utf8"}}}),
            Path::new("host.json"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("messageEncoding"));
    }

    #[test]
    fn eventgrid_output_topic_comes_from_the_endpoint_setting() {
        let mut settings = BTreeMap::new();
        settings.insert(
            "EVENTS_URI".to_string(),
            "https://socwire-events.westeurope-1.eventgrid.azure.net/api/events".to_string(),
        );
        assert_eq!(eventgrid_topic("EVENTS_URI", &settings), "socwire-events");
        assert_eq!(eventgrid_topic("OTHER", &settings), "OTHER");
    }

    #[test]
    fn eventgrid_output_accepts_the_identity_based_connection_form() {
        let mut settings = BTreeMap::new();
        settings.insert(
            "EVENTS__topicEndpointUri".to_string(),
            "https://socwire-events.westeurope-1.eventgrid.azure.net/api/events".to_string(),
        );
        let def = |binding: Value| {
            FunctionDef::parse(
                "f",
                &json!({"bindings": [
                    {"type": "queueTrigger", "direction": "in", "name": "q", "queueName": "in"},
                    binding
                ]}),
                Path::new("f/function.json"),
                &settings,
            )
        };
        let f = def(
            json!({"type": "eventGrid", "direction": "out", "name": "o", "connection": "EVENTS"}),
        )
        .unwrap();
        assert_eq!(
            f.outputs[0].target,
            OutputTarget::EventGrid("socwire-events".into())
        );
        let e = def(json!({"type": "eventGrid", "direction": "out", "name": "o", "connection": "EVENTS", "topicEndpointUri": "X"})).unwrap_err();
        assert!(e.to_string().contains("not both"), "{e}");
        let e = def(json!({"type": "eventGrid", "direction": "out", "name": "o"})).unwrap_err();
        assert!(e.to_string().contains("connection"), "{e}");
    }
}
