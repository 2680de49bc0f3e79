//! The whole app: host.json, every function.json, the settings (`local.settings.json`) and
//! the subscriptions `infra/` declares.

use super::function_json::{FunctionDef, Trigger};
use super::host_json::HostOptions;
use super::json::{err, read_json, ConfigError};
use super::settings::{apply_local_settings, process_environment};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Everything `socwire up` needs to know about the app.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// The app root (where host.json is).
    pub root: PathBuf,
    /// Parsed host.json.
    pub host: HostOptions,
    /// One entry per function folder.
    pub functions: Vec<FunctionDef>,
    /// App settings as the host sees them: the environment, then each local.settings.json
    /// `Values` entry the environment does not already define (Core Tools' rule,
    /// [`super::settings`]); passed to the handler as its environment.
    pub settings: BTreeMap<String, String>,
    /// The lines Core Tools prints for local settings it skipped ("Skipping 'X' from local
    /// settings as it's already defined in current environment variables.").
    pub setting_warnings: Vec<String>,
    /// Event Grid topic subscriptions.
    pub eventgrid_subscriptions: Vec<EventGridSubscription>,
    /// Service Bus topic subscriptions' filters and delivery counts
    /// (`infra/servicebus-subscriptions.json`).
    pub servicebus_subscriptions: Vec<ServiceBusSubscription>,
    /// Event Hubs retention per hub (`infra/eventhubs.json`, the file main.bicep reads for
    /// `messageRetentionInDays`); a hub not listed keeps events [`DEFAULT_EVENT_HUB_RETENTION`].
    pub event_hub_retention: BTreeMap<String, std::time::Duration>,
}

/// Event Hubs' default retention on the Standard tier: 1 day.
pub const DEFAULT_EVENT_HUB_RETENTION: std::time::Duration = std::time::Duration::from_secs(86_400);

/// One hub's settings in `infra/eventhubs.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventHubSettings {
    /// `messageRetentionInDays` (1-7 on Standard).
    retention_days: u32,
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
    /// The SQL filter Bicep applies when `subjects` cannot say it; the local broker evaluates
    /// it too ([`crate::brokers::SqlFilter`]).
    #[serde(default)]
    pub sql_filter: Option<String>,
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

impl AppConfig {
    /// Loads the app rooted at `root`: host.json, `function-defs/*/function.json` (or
    /// `*/function.json` beside host.json, the deployed layout), local.settings.json (or
    /// local.settings.example.json) and infra/eventgrid-subscriptions.json, with the process
    /// environment taking precedence over the local settings.
    pub fn load(root: &Path) -> Result<Self, ConfigError> {
        Self::load_with_env(root, process_environment())
    }

    /// [`AppConfig::load`] with `env` standing for the process environment.
    pub fn load_with_env(
        root: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let host_path = root.join("host.json");
        let host = HostOptions::parse(&read_json(&host_path)?, &host_path)?;
        let effective = apply_local_settings(&load_settings(root)?, env);
        let settings = effective.values;
        let functions = load_functions(root, &settings)?;
        let eventgrid_subscriptions = load_eventgrid_subscriptions(root, &functions)?;
        let servicebus_subscriptions = load_servicebus_subscriptions(root)?;
        let event_hub_retention = load_event_hub_retention(root)?;
        Ok(Self {
            root: root.to_path_buf(),
            event_hub_retention,
            host,
            functions,
            settings,
            setting_warnings: effective.warnings,
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

    /// How long the local Event Hubs broker keeps `hub`'s events.
    pub fn event_hub_retention(&self, hub: &str) -> std::time::Duration {
        self.event_hub_retention
            .get(hub)
            .copied()
            .unwrap_or(DEFAULT_EVENT_HUB_RETENTION)
    }

    /// The function named `name`.
    pub fn function(&self, name: &str) -> Option<&FunctionDef> {
        self.functions.iter().find(|f| f.name == name)
    }

    /// Whether the app settings switch `function` off, as the host reads them
    /// (azure-webjobs-sdk, `FunctionIndexer.IsDisabled` with `IsSettingEnabled`):
    /// `AzureWebJobs.<name>.Disabled` or, where names cannot hold dots,
    /// `AzureWebJobs_<name>_Disabled`, set to `1` or `true` in any case. Setting names are
    /// compared without regard to case, as .NET configuration keys are.
    pub fn is_disabled(&self, function: &str) -> bool {
        let names = [
            format!("AzureWebJobs.{function}.Disabled"),
            format!("AzureWebJobs_{function}_Disabled"),
        ];
        self.settings.iter().any(|(k, v)| {
            names.iter().any(|n| n.eq_ignore_ascii_case(k))
                && (v.eq_ignore_ascii_case("true") || v == "1")
        })
    }
}

/// Every `function-defs/*/function.json` (or `*/function.json` at the root), by name.
fn load_functions(
    root: &Path,
    settings: &BTreeMap<String, String>,
) -> Result<Vec<FunctionDef>, ConfigError> {
    let defs_dir = if root.join("function-defs").is_dir() {
        root.join("function-defs")
    } else {
        root.to_path_buf()
    };
    let entries = std::fs::read_dir(&defs_dir).map_err(|e| err(&defs_dir, e.to_string()))?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("function.json").is_file())
        .collect();
    dirs.sort();
    let mut functions = Vec::new();
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
            settings,
        )?);
    }
    if functions.is_empty() {
        return Err(err(&defs_dir, "no */function.json found"));
    }
    Ok(functions)
}

/// An `infra/` file read as `T`, or `T::default()` when there is none.
fn read_infra<T: serde::de::DeserializeOwned + Default>(path: &Path) -> Result<T, ConfigError> {
    if !path.is_file() {
        return Ok(T::default());
    }
    serde_json::from_value(read_json(path)?).map_err(|e| err(path, e.to_string()))
}

/// `infra/eventgrid-subscriptions.json`: each names an Event Grid function of this app and
/// asks for 1 to 30 delivery attempts.
fn load_eventgrid_subscriptions(
    root: &Path,
    functions: &[FunctionDef],
) -> Result<Vec<EventGridSubscription>, ConfigError> {
    let subs_path = root.join("infra").join("eventgrid-subscriptions.json");
    let subscriptions: Vec<EventGridSubscription> = read_infra(&subs_path)?;
    for s in &subscriptions {
        let known = functions
            .iter()
            .any(|f| f.name == s.function && matches!(f.trigger, Trigger::EventGrid { .. }));
        if !known {
            return Err(err(
                &subs_path,
                format!(
                    "subscription to {:?} names {:?}, which is not an eventGridTrigger function",
                    s.topic, s.function
                ),
            ));
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
    Ok(subscriptions)
}

/// `infra/servicebus-subscriptions.json`: a max delivery count, where given, is at least 1.
fn load_servicebus_subscriptions(root: &Path) -> Result<Vec<ServiceBusSubscription>, ConfigError> {
    let sb_path = root.join("infra").join("servicebus-subscriptions.json");
    let subscriptions: Vec<ServiceBusSubscription> = read_infra(&sb_path)?;
    for s in &subscriptions {
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
    Ok(subscriptions)
}

/// `infra/eventhubs.json`: each hub's retention, 1 to 90 days.
fn load_event_hub_retention(
    root: &Path,
) -> Result<BTreeMap<String, std::time::Duration>, ConfigError> {
    let eh_path = root.join("infra").join("eventhubs.json");
    let hubs: BTreeMap<String, EventHubSettings> = read_infra(&eh_path)?;
    let mut out = BTreeMap::new();
    for (hub, h) in hubs {
        if !(1..=90).contains(&h.retention_days) {
            return Err(err(
                &eh_path,
                format!(
                    "{hub}: retentionDays {} is outside 1..=90",
                    h.retention_days
                ),
            ));
        }
        out.insert(
            hub,
            std::time::Duration::from_secs(u64::from(h.retention_days) * 86_400),
        );
    }
    Ok(out)
}

/// The `Values` of local.settings.json (or the example file); `None` for a JSON null.
fn load_settings(root: &Path) -> Result<BTreeMap<String, Option<String>>, ConfigError> {
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
            let v = match v {
                Value::Null => None,
                Value::String(s) => Some(s),
                other => Some(other.to_string()),
            };
            (k, v)
        })
        .collect())
}
