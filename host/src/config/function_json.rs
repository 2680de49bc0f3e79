//! `function.json`: one function's trigger and output bindings.

use super::json::{err, ConfigError};
use super::retry::{parse_retry, RetryPolicy};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

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

    /// The trigger a `*Trigger` binding declares; `function` names the function (an HTTP
    /// trigger's default route).
    fn parse(
        b: &Value,
        kind: &str,
        bname: String,
        function: &str,
        path: &Path,
    ) -> Result<Self, ConfigError> {
        Ok(match kind {
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
                    sessions: flag(b, "isSessionsEnabled"),
                }
            }
            "eventHubTrigger" => Trigger::EventHub {
                name: bname,
                hub: str_field(b, "eventHubName", path)?,
                consumer_group: text_or(b, "consumerGroup", "$Default"),
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
                run_on_startup: flag(b, "runOnStartup"),
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
                route: text_or(b, "route", function),
                auth_level: text_or(b, "authLevel", "function").to_ascii_lowercase(),
            },
            other => {
                return Err(err(
                    path,
                    format!("trigger type {other:?} is not supported by the local host"),
                ))
            }
        })
    }
}

/// An output binding.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputBinding {
    /// Binding name (`$return` for the return value).
    pub name: String,
    /// Where it goes.
    pub target: OutputTarget,
    /// `dataType: binary`: the host passes the handler's value to the binding unchanged (no
    /// base64 decoding; [`crate::envelope::output_messages`]).
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

/// A binding's boolean `key`, false when absent.
fn flag(b: &Value, key: &str) -> bool {
    b.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// A binding's text `key`, or `default` when absent.
fn text_or(b: &Value, key: &str, default: &str) -> String {
    b.get(key)
        .and_then(Value::as_str)
        .unwrap_or(default)
        .to_string()
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
        // The extension's Validate (azure-sdk-for-net, EventGridAsyncCollectorFactory): a
        // topicKeySetting must name a setting, and the endpoint must be an absolute URI; without
        // a key setting it publishes with a token credential, which is allowed.
        (None, Some(uri_setting)) => {
            let setting = uri_setting.trim_matches('%');
            if b.get("topicKeySetting")
                .and_then(Value::as_str)
                .is_some_and(|k| k.trim().is_empty())
            {
                return Err(err(
                    path,
                    format!("binding {bname:?}: topicKeySetting must be the name of an app setting holding the topic key"),
                ));
            }
            let absolute = settings
                .get(setting)
                .and_then(|v| url::Url::parse(v.trim()).ok())
                .is_some_and(|u| u.has_host());
            if !absolute {
                return Err(err(
                    path,
                    format!("binding {bname:?}: topicEndpointUri names the app setting {setting:?}, which does not hold an absolute URI (the extension refuses the function)"),
                ));
            }
            Ok(eventgrid_topic(setting, settings))
        }
        (None, None) => Err(err(
            path,
            format!("binding {bname:?} needs \"connection\" or \"topicEndpointUri\""),
        )),
    }
}

impl OutputTarget {
    /// Where an `out` binding of this `type` writes.
    fn parse(
        b: &Value,
        kind: &str,
        bname: &str,
        path: &Path,
        settings: &BTreeMap<String, String>,
    ) -> Result<Self, ConfigError> {
        Ok(match kind {
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
                OutputTarget::EventGrid(eventgrid_output_topic(b, bname, path, settings)?)
            }
            "blob" => OutputTarget::Blob(str_field(b, "path", path)?),
            "http" => OutputTarget::Http,
            other => {
                return Err(err(
                    path,
                    format!("output type {other:?} is not supported by the local host"),
                ))
            }
        })
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
                trigger = Some(Trigger::parse(b, kind, bname, name, path)?);
            } else if direction == "out" {
                let target = OutputTarget::parse(b, kind, &bname, path, settings)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
