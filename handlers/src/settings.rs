//! Settings, read once from the environment at start (the Functions host passes app settings
//! as environment variables; `socwire up` does the same from `local.settings.json`).

use crate::functions::triage_incident::TriageRule;
use serde_json::Value;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

/// The default body limit: a full Event Hubs batch of the largest events fits (see
/// [`Settings::apply_host_json`]).
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024 * 1024;
/// Event Hubs' largest event body (Standard and Premium tiers).
const MAX_EVENT_BYTES: usize = 1024 * 1024;
/// Worst-case growth of an event body on the way to the handler: control characters become
/// `\\u00XX` in the array of strings, and the array is JSON-encoded again into one string.
const WORST_CASE_ENCODING: usize = 7;

/// Every setting the handler reads, in one section per part of the system.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Port to listen on (`FUNCTIONS_CUSTOMHANDLER_PORT`, set by the host).
    pub port: u16,
    /// Directory for local adapters' state (`SOCWIRE_DATA_DIR`, default `.socwire`).
    pub data_dir: PathBuf,
    /// Refuse to start on local adapters (`SOCWIRE_REQUIRE_AZURE=true`).
    pub require_azure: bool,
    /// Largest request body accepted, bytes (`SOCWIRE_MAX_BODY_BYTES`, default
    /// [`DEFAULT_MAX_BODY_BYTES`]); at start it is checked against host.json's Event Hubs batch.
    pub max_body_bytes: usize,
    /// An invocation still running after this is cancelled and answered 503
    /// (`SOCWIRE_INVOCATION_TIMEOUT` in seconds; default host.json's `functionTimeout` less
    /// 10 s, so the handler stops before the host gives up on it and redelivers).
    pub invocation_timeout: Duration,
    /// Whether `SOCWIRE_INVOCATION_TIMEOUT` was set (then host.json does not change it).
    invocation_timeout_set: bool,
    /// The ledger, reports and kept state.
    pub storage: StorageSettings,
    /// Sentinel, its workspace and triage.
    pub sentinel: SentinelSettings,
    /// Threat intelligence.
    pub ti: TiSettings,
    /// Log Analytics custom tables and the alert engine.
    pub alerts: AlertSettings,
    /// The GPU model lifecycle.
    pub ml: MlSettings,
}

/// Where the ledger, triage reports and kept state live.
#[derive(Debug, Clone)]
pub struct StorageSettings {
    /// Storage account for the ledger, reports and state (`SOCWIRE_STORAGE`: an account URL
    /// for managed identity, or a connection string such as `UseDevelopmentStorage=true`); set
    /// = use the Azure Blob adapters. `AzureWebJobsStorage` is the host's, and is not read here.
    pub account: Option<String>,
    /// Blob container for the idempotency ledger (`SOCWIRE_LEDGER_CONTAINER`).
    pub ledger_container: String,
    /// Blob container for triage reports (`SOCWIRE_REPORTS_CONTAINER`).
    pub reports_container: String,
    /// Blob container for the alert engine's window (`SOCWIRE_STATE_CONTAINER`).
    pub state_container: String,
    /// How long a report link (user delegation SAS) stays valid (`SOCWIRE_REPORT_LINK_TTL`,
    /// default 72h, at most 7 days).
    pub report_link_ms: i64,
    /// Base URL under which local reports are served (`SOCWIRE_REPORTS_BASE_URL`).
    pub reports_base_url: String,
}

/// Sentinel, the Log Analytics workspace triage asks, and how triage decides.
#[derive(Debug, Clone)]
pub struct SentinelSettings {
    /// Sentinel ARM endpoint (`SOCWIRE_SENTINEL_ENDPOINT`); set = use the Azure adapter.
    pub endpoint: Option<String>,
    /// The Sentinel workspace (`SOCWIRE_SENTINEL_SUBSCRIPTION_ID`,
    /// `SOCWIRE_SENTINEL_RESOURCE_GROUP`, `SOCWIRE_SENTINEL_WORKSPACE`): lets a triage request
    /// name an incident by GUID, and is what `incident-sweep` lists.
    pub workspace: Option<crate::sentinel::WorkspaceRef>,
    /// Log Analytics workspace (customer) id for typed queries (`SOCWIRE_LA_WORKSPACE_ID`); set
    /// = use the Log Analytics query API, otherwise the local workspace tables.
    pub la_workspace_id: Option<String>,
    /// Log Analytics query endpoint (`SOCWIRE_LA_ENDPOINT`, default `https://api.loganalytics.io`).
    pub la_endpoint: String,
    /// How findings become a severity change (`SOCWIRE_TRIAGE_RULE`: `notebook`, the default,
    /// or `graded`).
    pub triage_rule: TriageRule,
    /// How far back the first sweep looks (`SOCWIRE_SWEEP_LOOKBACK`, default 24h).
    pub sweep_lookback_ms: i64,
    /// Most incidents one sweep queues (`SOCWIRE_SWEEP_MAX`, default 1000).
    pub sweep_max: usize,
}

/// Threat intelligence: the offline list, the internet providers and their limits.
#[derive(Debug, Clone)]
pub struct TiSettings {
    /// A threat-intelligence list to use instead of the built-in one (`SOCWIRE_TI_FILE`).
    pub file: Option<PathBuf>,
    /// Providers enabled by their API keys: `(name, key, base URL, quota)` from
    /// `SOCWIRE_TI_{VIRUSTOTAL,ABUSEIPDB,GREYNOISE,OTX}_KEY` (an app setting or a Key Vault
    /// reference the host resolves), optional `…_URL` overrides and `…_RATE` quotas
    /// (`4/min,500/day`); `SOCWIRE_TI_VIRUSTOTAL_TIER=public` gives VirusTotal its public
    /// API's limits unless `…_RATE` says otherwise.
    pub providers: Vec<(
        &'static str,
        crate::providers::Secret,
        String,
        crate::providers::Quota,
    )>,
    /// How long a failed provider look-up is not repeated (`SOCWIRE_TI_FAILURE_TTL`, default
    /// 1m).
    pub failure_ttl_ms: i64,
    /// Sentinel's threat-intelligence table (`SOCWIRE_TI_TABLE`, default
    /// `ThreatIntelIndicators`; the retired `ThreatIntelligenceIndicator` only on request).
    pub table: crate::ports::TiTable,
    /// Time one provider look-up may take (`SOCWIRE_TI_TIMEOUT`, default 10s).
    pub timeout_ms: i64,
    /// How long a provider's answer is reused (`SOCWIRE_TI_CACHE_TTL`, default 1h).
    pub cache_ttl_ms: i64,
    /// Most provider answers cached (`SOCWIRE_TI_CACHE_ENTRIES`, default 10000).
    pub cache_entries: usize,
    /// Look-ups and workspace questions in flight per incident (`SOCWIRE_TI_CONCURRENCY`,
    /// default 8).
    pub concurrency: usize,
}

/// The alert engine and the Log Analytics tables its rows go to.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    /// Logs Ingestion endpoint (`SOCWIRE_LOGS_ENDPOINT`); with `SOCWIRE_LOGS_DCR_ID`, subgraph
    /// rows go to Log Analytics, otherwise to the local tables.
    pub logs_endpoint: Option<String>,
    /// Data collection rule immutable id (`SOCWIRE_LOGS_DCR_ID`).
    pub logs_dcr_id: Option<String>,
    /// Alert engine window (`SOCWIRE_ALERT_WINDOW`, e.g. 24h).
    pub window_ms: i64,
    /// Bytes the alert engine may hold across every partition this instance holds, history
    /// included (`SOCWIRE_ALERT_MEMORY_MB`, default 1024: half a Flex Consumption instance).
    pub memory_bytes: usize,
    /// Subgraphs scoring at least this publish `socwire.AlertSubgraphPrioritized`
    /// (`SOCWIRE_ALERT_EVENT_SCORE`, default 20).
    pub event_score: f64,
}

/// The GPU model lifecycle: Azure ML or the local back end, commands, assets.
#[derive(Debug, Clone)]
pub struct MlSettings {
    /// Azure ML: ARM endpoint (`SOCWIRE_ML_ENDPOINT`); with `SOCWIRE_ML_WORKSPACE`, the Azure
    /// ML adapter is used, otherwise the local compute back end.
    pub endpoint: Option<String>,
    /// The workspace's ARM id (`SOCWIRE_ML_WORKSPACE`).
    pub workspace: Option<String>,
    /// Region of new clusters (`SOCWIRE_ML_LOCATION`).
    pub location: String,
    /// Blob container URL of the workspace datastore (`SOCWIRE_ML_DATASTORE_URL`).
    pub datastore_url: Option<String>,
    /// Service Bus namespace for commands the functions send themselves
    /// (`SOCWIRE_SERVICEBUS_NAMESPACE`); unset = the local broker.
    pub servicebus_namespace: Option<String>,
    /// The commands topic (`SOCWIRE_ML_COMMANDS_TOPIC`, default `ml-commands`).
    pub commands_topic: String,
    /// Hosts assets may come from (`SOCWIRE_NGC_ALLOWED_HOSTS`, comma-separated).
    pub ngc_allowed_hosts: Vec<String>,
    /// Local folders `file://` assets may come from (`SOCWIRE_ML_LOCAL_ASSET_DIRS`).
    pub local_asset_dirs: Vec<PathBuf>,
    /// Largest asset download (`SOCWIRE_ML_MAX_ASSET_BYTES`).
    pub max_asset_bytes: u64,
    /// Largest unpacked asset (`SOCWIRE_ML_MAX_UNPACKED_BYTES`).
    pub max_unpacked_bytes: u64,
    /// Container image of the fine-tune environment, holding this binary built with the
    /// trainer (`SOCWIRE_ML_IMAGE`; required with an Azure ML workspace).
    pub image: Option<String>,
    /// Event Hub the fine-tune jobs send telemetry to, as
    /// `https://{namespace}.servicebus.windows.net/{hub}` (`SOCWIRE_ML_TELEMETRY_EVENTHUB`);
    /// unset = Azure ML jobs send none.
    pub telemetry_eventhub: Option<String>,
    /// Resource id of the user-assigned identity new clusters get, which jobs use to send
    /// telemetry (`SOCWIRE_ML_CLUSTER_IDENTITY`).
    pub cluster_identity: Option<String>,
    /// The workspace's MLflow tracking URI (`SOCWIRE_ML_TRACKING_URI`, `azureml://<region>.
    /// api.azureml.ms/mlflow/v1.0/…`); unset = derived from the location and workspace id.
    /// Container jobs' metrics and failed jobs' errors are read from its host.
    pub tracking_uri: Option<String>,
    /// Seconds between follow-up checks when the service gives no Retry-After
    /// (`SOCWIRE_ML_POLL_SECS`).
    pub poll_secs: u64,
    /// Evaluations of rising loss that count as divergence (`SOCWIRE_ML_DIVERGENCE_EVALS`).
    pub divergence_evals: usize,
    /// Local back end: how long a cluster stays Creating (`SOCWIRE_ML_LOCAL_PROVISION_MS`).
    pub local_provision_ms: i64,
    /// Local back end: node quota (`SOCWIRE_ML_LOCAL_MAX_NODES`).
    pub local_max_nodes: u32,
    /// Local back end: the executable that runs jobs (`SOCWIRE_ML_RUNNER`, default this one).
    pub runner: Option<PathBuf>,
}

/// The providers `Settings` knows: name, key setting, URL setting, default base URL, quota
/// setting.
pub const TI_PROVIDERS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "virustotal",
        "SOCWIRE_TI_VIRUSTOTAL_KEY",
        "SOCWIRE_TI_VIRUSTOTAL_URL",
        "https://www.virustotal.com",
        "SOCWIRE_TI_VIRUSTOTAL_RATE",
    ),
    (
        "abuseipdb",
        "SOCWIRE_TI_ABUSEIPDB_KEY",
        "SOCWIRE_TI_ABUSEIPDB_URL",
        "https://api.abuseipdb.com",
        "SOCWIRE_TI_ABUSEIPDB_RATE",
    ),
    (
        "greynoise",
        "SOCWIRE_TI_GREYNOISE_KEY",
        "SOCWIRE_TI_GREYNOISE_URL",
        "https://api.greynoise.io",
        "SOCWIRE_TI_GREYNOISE_RATE",
    ),
    (
        "otx",
        "SOCWIRE_TI_OTX_KEY",
        "SOCWIRE_TI_OTX_URL",
        "https://otx.alienvault.com",
        "SOCWIRE_TI_OTX_RATE",
    ),
];

impl Settings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, String> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let env = Env(&lookup);
        let port = match env
            .get("FUNCTIONS_CUSTOMHANDLER_PORT")
            .or_else(|| env.get("FUNCTIONS_HTTPWORKER_PORT"))
        {
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| format!("FUNCTIONS_CUSTOMHANDLER_PORT={v:?} is not a port number"))?,
            None => 8080,
        };
        let require_azure = match env.get("SOCWIRE_REQUIRE_AZURE").as_deref().map(str::trim) {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(other) => {
                return Err(format!(
                    "SOCWIRE_REQUIRE_AZURE={other:?}: use true or false"
                ))
            }
        };
        let max_body_bytes = match env.get("SOCWIRE_MAX_BODY_BYTES") {
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| format!("SOCWIRE_MAX_BODY_BYTES={v:?} is not a number"))?,
            None => DEFAULT_MAX_BODY_BYTES,
        };
        let invocation_timeout = match env.get("SOCWIRE_INVOCATION_TIMEOUT") {
            Some(v) => Some(Duration::from_secs(v.trim().parse().map_err(|_| {
                format!("SOCWIRE_INVOCATION_TIMEOUT={v:?} is not a number of seconds")
            })?)),
            None => None,
        };
        let data_dir = PathBuf::from(env.text("SOCWIRE_DATA_DIR", ".socwire"));
        Ok(Self {
            storage: StorageSettings::read(&env)?,
            sentinel: SentinelSettings::read(&env)?,
            ti: TiSettings::read(&env)?,
            alerts: AlertSettings::read(&env)?,
            ml: MlSettings::read(&env, &data_dir)?,
            port,
            data_dir,
            require_azure,
            max_body_bytes,
            invocation_timeout_set: invocation_timeout.is_some(),
            invocation_timeout: invocation_timeout.unwrap_or(Duration::from_secs(290)),
        })
    }

    /// Adjusts to the app's host.json: the invocation deadline follows `functionTimeout`
    /// (unless set explicitly), and the body limit must hold a full Event Hubs batch of the
    /// largest events (`maxEventBatchSize` × 1 MiB × worst-case encoding) — otherwise the
    /// handler would answer 413 to a batch that can never shrink, and the partition would stop.
    pub fn apply_host_json(&mut self, host_json: &Value) -> Result<(), String> {
        if !self.invocation_timeout_set {
            if let Some(t) = host_json
                .get("functionTimeout")
                .and_then(Value::as_str)
                .and_then(parse_timespan)
            {
                self.invocation_timeout = t
                    .saturating_sub(Duration::from_secs(10))
                    .max(Duration::from_secs(1));
            }
        }
        let batch = host_json
            .pointer("/extensions/eventHubs/maxEventBatchSize")
            .and_then(Value::as_u64)
            .unwrap_or(100) as usize;
        let needed = batch * (MAX_EVENT_BYTES * WORST_CASE_ENCODING + 4096) + MAX_EVENT_BYTES;
        if self.max_body_bytes < needed {
            return Err(format!(
                "SOCWIRE_MAX_BODY_BYTES={} cannot hold a full Event Hubs batch: host.json maxEventBatchSize {batch} needs at least {needed} bytes; raise the limit or lower maxEventBatchSize",
                self.max_body_bytes
            ));
        }
        Ok(())
    }

    /// The settings an Azure deployment must have, that are missing here.
    pub fn missing_azure_settings(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if self.sentinel.endpoint.is_none() {
            missing.push("SOCWIRE_SENTINEL_ENDPOINT");
        }
        if self.storage.account.is_none() {
            missing.push("SOCWIRE_STORAGE");
        }
        if self.alerts.logs_endpoint.is_none() || self.alerts.logs_dcr_id.is_none() {
            missing.push("SOCWIRE_LOGS_ENDPOINT and SOCWIRE_LOGS_DCR_ID");
        }
        // The GPU lifecycle is optional in Azure (the Bicep's hasMl): without
        // SOCWIRE_ML_WORKSPACE its functions must be disabled, not the whole handler refused.
        if self.ml.workspace.is_some() && self.ml.servicebus_namespace.is_none() {
            missing.push("SOCWIRE_SERVICEBUS_NAMESPACE");
        }
        if self.ml.workspace.is_some() && self.ml.image.is_none() {
            missing.push("SOCWIRE_ML_IMAGE");
        }
        missing
    }

    /// Azure settings that are present but cannot work in Azure, each naming the setting and
    /// why: checked at start with `SOCWIRE_REQUIRE_AZURE=true`, so a wrong value stops the
    /// handler before the first message rather than failing every invocation.
    pub fn wrong_azure_settings(&self) -> Vec<String> {
        let mut wrong = Vec::new();
        let https = |name: &str, value: &Option<String>, wrong: &mut Vec<String>| {
            if let Some(v) = value {
                let ok = url::Url::parse(v.trim())
                    .map(|u| u.scheme() == "https" && u.host_str().is_some())
                    .unwrap_or(false);
                if !ok {
                    wrong.push(format!("{name}={v:?} is not an https:// URL"));
                }
            }
        };
        https(
            "SOCWIRE_SENTINEL_ENDPOINT",
            &self.sentinel.endpoint,
            &mut wrong,
        );
        https(
            "SOCWIRE_LOGS_ENDPOINT",
            &self.alerts.logs_endpoint,
            &mut wrong,
        );
        https(
            "SOCWIRE_ML_TELEMETRY_EVENTHUB",
            &self.ml.telemetry_eventhub,
            &mut wrong,
        );
        if let Some(storage) = &self.storage.account {
            let lower = storage.to_ascii_lowercase();
            if lower.contains("usedevelopmentstorage") || lower.contains("127.0.0.1") {
                wrong.push(format!(
                    "SOCWIRE_STORAGE={storage:?} points at the local storage emulator"
                ));
            } else if lower.starts_with("http://") {
                wrong.push(format!("SOCWIRE_STORAGE={storage:?} is not https"));
            }
        }
        if let Some(dcr) = &self.alerts.logs_dcr_id {
            if !dcr.trim().starts_with("dcr-") {
                wrong.push(format!(
                    "SOCWIRE_LOGS_DCR_ID={dcr:?} is not a DCR immutable id (dcr-…)"
                ));
            }
        }
        wrong
    }
}

/// The settings as the process sees them, read by name: a blank value is no value, and every
/// parser's error names its setting.
struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    /// The setting's value, when set and not blank.
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    /// The setting's value, or `default`.
    fn text(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or_else(|| default.to_string())
    }

    /// A count or size: a whole number within `range`.
    fn count(&self, name: &str, default: u64, range: RangeInclusive<u64>) -> Result<u64, String> {
        parse_count(name, self.get(name), default, range)
    }

    /// A duration such as `90s`, `15m`, `24h` or `2d`, in milliseconds.
    fn duration_ms(&self, name: &str, default: i64) -> Result<i64, String> {
        match self.get(name) {
            Some(v) => parse_duration_ms(&v).map_err(|e| format!("{name}: {e}")),
            None => Ok(default),
        }
    }

    /// A value with its own parser (`FromStr`), its errors prefixed with the setting's name.
    fn parsed<T: std::str::FromStr<Err = String> + Default>(
        &self,
        name: &str,
    ) -> Result<T, String> {
        match self.get(name) {
            Some(v) => v.parse().map_err(|e| format!("{name}: {e}")),
            None => Ok(T::default()),
        }
    }

    /// A comma-separated list (blank entries dropped).
    fn list(&self, name: &str) -> Option<Vec<String>> {
        self.get(name).map(|v| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
    }
}

impl StorageSettings {
    fn read(env: &Env) -> Result<Self, String> {
        let report_link_ms = env.duration_ms("SOCWIRE_REPORT_LINK_TTL", 72 * 3_600_000)?;
        if !(300_000..=7 * 24 * 3_600_000).contains(&report_link_ms) {
            return Err("SOCWIRE_REPORT_LINK_TTL must be between 5m and 7d (a user delegation key's longest life)".into());
        }
        Ok(Self {
            account: env.get("SOCWIRE_STORAGE"),
            ledger_container: env.text("SOCWIRE_LEDGER_CONTAINER", "socwire-ledger"),
            reports_container: env.text("SOCWIRE_REPORTS_CONTAINER", "socwire-reports"),
            state_container: env.text("SOCWIRE_STATE_CONTAINER", "socwire-state"),
            report_link_ms,
            reports_base_url: env.text("SOCWIRE_REPORTS_BASE_URL", "http://127.0.0.1:7071/reports"),
        })
    }
}

impl SentinelSettings {
    fn read(env: &Env) -> Result<Self, String> {
        let workspace = match (
            env.get("SOCWIRE_SENTINEL_SUBSCRIPTION_ID"),
            env.get("SOCWIRE_SENTINEL_RESOURCE_GROUP"),
            env.get("SOCWIRE_SENTINEL_WORKSPACE"),
        ) {
            (Some(subscription), Some(resource_group), Some(workspace)) => {
                let ws = crate::sentinel::WorkspaceRef {
                    subscription: subscription.trim().into(),
                    resource_group: resource_group.trim().into(),
                    workspace: workspace.trim().into(),
                };
                ws.incident("00000000-0000-0000-0000-000000000000")
                    .map_err(|e| format!("SOCWIRE_SENTINEL_* workspace settings: {e}"))?;
                Some(ws)
            }
            (None, None, None) => None,
            _ => return Err("set all three of SOCWIRE_SENTINEL_SUBSCRIPTION_ID, SOCWIRE_SENTINEL_RESOURCE_GROUP and SOCWIRE_SENTINEL_WORKSPACE, or none".into()),
        };
        Ok(Self {
            endpoint: env.get("SOCWIRE_SENTINEL_ENDPOINT"),
            workspace,
            la_workspace_id: env.get("SOCWIRE_LA_WORKSPACE_ID"),
            la_endpoint: env.text("SOCWIRE_LA_ENDPOINT", "https://api.loganalytics.io"),
            triage_rule: env.parsed("SOCWIRE_TRIAGE_RULE")?,
            sweep_lookback_ms: env.duration_ms("SOCWIRE_SWEEP_LOOKBACK", 24 * 3_600_000)?,
            sweep_max: env.count("SOCWIRE_SWEEP_MAX", 1000, 1..=1_000_000)? as usize,
        })
    }
}

impl TiSettings {
    fn read(env: &Env) -> Result<Self, String> {
        Ok(Self {
            file: env.get("SOCWIRE_TI_FILE").map(PathBuf::from),
            providers: Self::providers(env)?,
            failure_ttl_ms: env.duration_ms("SOCWIRE_TI_FAILURE_TTL", 60_000)?.max(0),
            table: env.parsed("SOCWIRE_TI_TABLE")?,
            timeout_ms: env.duration_ms("SOCWIRE_TI_TIMEOUT", 10_000)?.max(100),
            cache_ttl_ms: env.duration_ms("SOCWIRE_TI_CACHE_TTL", 3_600_000)?,
            cache_entries: env.count("SOCWIRE_TI_CACHE_ENTRIES", 10_000, 1..=10_000_000)? as usize,
            concurrency: env.count("SOCWIRE_TI_CONCURRENCY", 8, 1..=64)? as usize,
        })
    }

    /// The providers whose keys are set, with their base URLs and quotas.
    #[allow(clippy::type_complexity)]
    fn providers(
        env: &Env,
    ) -> Result<
        Vec<(
            &'static str,
            crate::providers::Secret,
            String,
            crate::providers::Quota,
        )>,
        String,
    > {
        let virustotal_public = match env
            .get("SOCWIRE_TI_VIRUSTOTAL_TIER")
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("premium") => false,
            Some("public") => true,
            Some(other) => {
                return Err(format!(
                    "SOCWIRE_TI_VIRUSTOTAL_TIER={other:?}: use public or premium"
                ))
            }
        };
        let mut providers = Vec::new();
        for (name, key_setting, url_setting, default_url, rate_setting) in TI_PROVIDERS {
            let Some(key) = env.get(key_setting) else {
                continue;
            };
            if key.trim_start().starts_with("@Microsoft.KeyVault(") {
                return Err(format!("{key_setting} is a Key Vault reference the host did not resolve (check the app's identity and the vault's access)"));
            }
            let quota = match env.get(rate_setting) {
                Some(v) => v.parse().map_err(|e| format!("{rate_setting}: {e}"))?,
                None if *name == "virustotal" && virustotal_public => {
                    crate::providers::Quota::VIRUSTOTAL_PUBLIC
                }
                None => crate::providers::Quota::default(),
            };
            providers.push((
                *name,
                crate::providers::Secret(key.trim().to_string()),
                env.text(url_setting, default_url),
                quota,
            ));
        }
        Ok(providers)
    }
}

impl AlertSettings {
    fn read(env: &Env) -> Result<Self, String> {
        let event_score = match env.get("SOCWIRE_ALERT_EVENT_SCORE") {
            Some(v) => v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite())
                .ok_or_else(|| format!("SOCWIRE_ALERT_EVENT_SCORE={v:?} is not a number"))?,
            None => 20.0,
        };
        Ok(Self {
            logs_endpoint: env.get("SOCWIRE_LOGS_ENDPOINT"),
            logs_dcr_id: env.get("SOCWIRE_LOGS_DCR_ID"),
            window_ms: env.duration_ms("SOCWIRE_ALERT_WINDOW", 24 * 3_600_000)?,
            memory_bytes: env.count("SOCWIRE_ALERT_MEMORY_MB", 1024, 64..=1_048_576)? as usize
                * 1024
                * 1024,
            event_score,
        })
    }
}

impl MlSettings {
    fn read(env: &Env, data_dir: &std::path::Path) -> Result<Self, String> {
        const GIB: u64 = 1 << 30;
        Ok(Self {
            endpoint: env.get("SOCWIRE_ML_ENDPOINT"),
            workspace: env.get("SOCWIRE_ML_WORKSPACE"),
            location: env.text("SOCWIRE_ML_LOCATION", "westeurope"),
            datastore_url: env.get("SOCWIRE_ML_DATASTORE_URL"),
            servicebus_namespace: env.get("SOCWIRE_SERVICEBUS_NAMESPACE"),
            commands_topic: env.text("SOCWIRE_ML_COMMANDS_TOPIC", "ml-commands"),
            ngc_allowed_hosts: env.list("SOCWIRE_NGC_ALLOWED_HOSTS").unwrap_or_else(|| {
                [
                    "api.ngc.nvidia.com",
                    "files.ngc.nvidia.com",
                    "xfiles.ngc.nvidia.com",
                ]
                .map(String::from)
                .to_vec()
            }),
            local_asset_dirs: env
                .list("SOCWIRE_ML_LOCAL_ASSET_DIRS")
                .map(|v| v.into_iter().map(PathBuf::from).collect())
                .unwrap_or_else(|| vec![data_dir.join("ml").join("local-assets")]),
            max_asset_bytes: env.count("SOCWIRE_ML_MAX_ASSET_BYTES", 4 * GIB, 1..=1024 * GIB)?,
            max_unpacked_bytes: env.count(
                "SOCWIRE_ML_MAX_UNPACKED_BYTES",
                16 * GIB,
                1..=4096 * GIB,
            )?,
            image: env.get("SOCWIRE_ML_IMAGE"),
            telemetry_eventhub: env.get("SOCWIRE_ML_TELEMETRY_EVENTHUB"),
            cluster_identity: env.get("SOCWIRE_ML_CLUSTER_IDENTITY"),
            tracking_uri: env.get("SOCWIRE_ML_TRACKING_URI"),
            poll_secs: env.count("SOCWIRE_ML_POLL_SECS", 30, 1..=3600)?,
            divergence_evals: env.count("SOCWIRE_ML_DIVERGENCE_EVALS", 3, 2..=1000)? as usize,
            local_provision_ms: env.count("SOCWIRE_ML_LOCAL_PROVISION_MS", 3000, 0..=3_600_000)?
                as i64,
            local_max_nodes: env.count("SOCWIRE_ML_LOCAL_MAX_NODES", 8, 0..=10_000)? as u32,
            runner: env.get("SOCWIRE_ML_RUNNER").map(PathBuf::from),
        })
    }
}

/// App settings still holding a Key Vault reference (`@Microsoft.KeyVault(...)`): the platform
/// leaves the reference text in place when it cannot resolve it (no access, no such secret), and
/// a provider key that is the reference text would fail every lookup. Names only, never values.
pub fn unresolved_key_vault_references(
    vars: impl IntoIterator<Item = (String, String)>,
) -> Vec<String> {
    let mut names: Vec<String> = vars
        .into_iter()
        .filter(|(name, value)| {
            name.starts_with("SOCWIRE_") && value.trim_start().starts_with("@Microsoft.KeyVault(")
        })
        .map(|(name, _)| name)
        .collect();
    names.sort();
    names
}

/// A .NET TimeSpan as host.json writes it: `hh:mm:ss` or `d.hh:mm:ss`.
fn parse_timespan(text: &str) -> Option<Duration> {
    let (days, rest) = match text.split_once('.') {
        Some((d, rest)) if !d.contains(':') => (d.parse::<u64>().ok()?, rest),
        _ => (0, text),
    };
    let parts: Vec<u64> = rest
        .split(':')
        .map(|p| p.split('.').next().unwrap_or(p).parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = parts[..] else { return None };
    Some(Duration::from_secs(((days * 24 + h) * 60 + m) * 60 + s))
}

/// A count or size setting: a whole number within `range` (`default` when unset), or an error
/// naming the setting. A negative or fractional value is never rounded or clamped.
fn parse_count(
    name: &str,
    value: Option<String>,
    default: u64,
    range: RangeInclusive<u64>,
) -> Result<u64, String> {
    let Some(v) = value else {
        return Ok(default);
    };
    v.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            format!(
                "{name}={v:?} must be a whole number from {} to {}",
                range.start(),
                range.end()
            )
        })
}

/// Parses `90s`, `15m`, `24h`, `2d` into milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: i64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 90m, 24h or 2d"))?;
    let ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{text:?}: use a unit s, m, h or d")),
    };
    if n <= 0 {
        return Err("the window must be positive".into());
    }
    Ok(n * ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(pairs: &[(&str, &str)]) -> Result<Settings, String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_local() {
        let s = from(&[]).unwrap();
        assert_eq!(s.port, 8080);
        assert_eq!(s.missing_azure_settings().len(), 3);
        assert_eq!(s.ml.ngc_allowed_hosts[0], "api.ngc.nvidia.com");
        assert_eq!(
            s.ml.local_asset_dirs,
            vec![PathBuf::from(".socwire/ml/local-assets")]
        );
        assert_eq!(s.alerts.window_ms, 24 * 3_600_000);
    }

    #[test]
    fn bad_values_are_clear_errors() {
        assert!(from(&[("FUNCTIONS_CUSTOMHANDLER_PORT", "http")])
            .unwrap_err()
            .contains("port"));
        assert!(from(&[("SOCWIRE_REQUIRE_AZURE", "yes")])
            .unwrap_err()
            .contains("true or false"));
        // Counts are never rounded or clamped into something else.
        for (name, value) in [
            ("SOCWIRE_TI_CONCURRENCY", "-3"),
            ("SOCWIRE_TI_CONCURRENCY", "65"),
            ("SOCWIRE_SWEEP_MAX", "2.5"),
            ("SOCWIRE_ML_MAX_ASSET_BYTES", "-1"),
            ("SOCWIRE_ML_DIVERGENCE_EVALS", "1"),
            ("SOCWIRE_ALERT_MEMORY_MB", "100.5"),
        ] {
            let e = from(&[(name, value)]).unwrap_err();
            assert!(
                e.starts_with(&format!("{name}=\"{value}\" must be a whole number")),
                "{e}"
            );
        }
        let s = from(&[
            ("SOCWIRE_TI_CONCURRENCY", " 64 "),
            ("SOCWIRE_ALERT_MEMORY_MB", "64"),
        ])
        .unwrap();
        assert_eq!((s.ti.concurrency, s.alerts.memory_bytes), (64, 64 << 20));
    }

    #[test]
    fn host_json_sets_the_deadline_and_checks_the_body_limit() {
        let host: Value = serde_json::from_str(include_str!("../../host.json")).unwrap();
        let mut s = from(&[]).unwrap();
        s.apply_host_json(&host).unwrap();
        assert_eq!(
            s.invocation_timeout,
            Duration::from_secs(290),
            "00:05:00 less 10 s"
        );
        let mut small = from(&[("SOCWIRE_MAX_BODY_BYTES", "4194304")]).unwrap();
        let e = small.apply_host_json(&host).unwrap_err();
        assert!(e.contains("maxEventBatchSize 32"), "{e}");
        let mut fixed = from(&[("SOCWIRE_INVOCATION_TIMEOUT", "42")]).unwrap();
        fixed.apply_host_json(&host).unwrap();
        assert_eq!(fixed.invocation_timeout, Duration::from_secs(42));
        assert_eq!(
            parse_timespan("1.00:00:30"),
            Some(Duration::from_secs(86_430))
        );
        assert_eq!(parse_timespan("nonsense"), None);
    }

    #[test]
    fn wrong_azure_values_are_named() {
        let s = from(&[
            ("SOCWIRE_SENTINEL_ENDPOINT", "management.azure.com"),
            ("SOCWIRE_STORAGE", "UseDevelopmentStorage=true"),
            ("SOCWIRE_LOGS_ENDPOINT", "http://dce.example"),
            ("SOCWIRE_LOGS_DCR_ID", "my-rule"),
            (
                "SOCWIRE_ML_TELEMETRY_EVENTHUB",
                "http://ns.servicebus.windows.net/training-telemetry",
            ),
        ])
        .unwrap();
        let wrong = s.wrong_azure_settings().join("\n");
        for name in [
            "SOCWIRE_SENTINEL_ENDPOINT",
            "SOCWIRE_STORAGE",
            "SOCWIRE_LOGS_ENDPOINT",
            "SOCWIRE_LOGS_DCR_ID",
            "SOCWIRE_ML_TELEMETRY_EVENTHUB",
        ] {
            assert!(wrong.contains(name), "{name} not named in {wrong}");
        }
        let azure = [
            ("SOCWIRE_SENTINEL_ENDPOINT", "https://management.azure.com/"),
            ("SOCWIRE_STORAGE", "https://acct.blob.core.windows.net"),
            (
                "SOCWIRE_LOGS_ENDPOINT",
                "https://dce-1.westeurope-1.ingest.monitor.azure.com",
            ),
            (
                "SOCWIRE_LOGS_DCR_ID",
                "dcr-00000000000000000000000000000000",
            ),
            ("SOCWIRE_ML_ENDPOINT", "https://management.azure.com"),
            ("SOCWIRE_ML_WORKSPACE", "/subscriptions/s/resourceGroups/r/providers/Microsoft.MachineLearningServices/workspaces/w"),
            ("SOCWIRE_SERVICEBUS_NAMESPACE", "sb-1.servicebus.windows.net"),
            (
                "SOCWIRE_ML_TELEMETRY_EVENTHUB",
                "https://ns.servicebus.windows.net/training-telemetry",
            ),
        ];
        // With an Azure ML workspace, the job image is required.
        let s = from(&azure).unwrap();
        assert_eq!(s.missing_azure_settings(), ["SOCWIRE_ML_IMAGE"]);
        let mut complete = azure.to_vec();
        complete.push(("SOCWIRE_ML_IMAGE", "reg.azurecr.io/socwire-job:0.1.0"));
        let s = from(&complete).unwrap();
        assert!(s.wrong_azure_settings().is_empty());
        assert!(s.missing_azure_settings().is_empty());
    }

    #[test]
    fn unresolved_key_vault_references_are_named_without_their_values() {
        let vars = [
            (
                "SOCWIRE_TI_OTX_KEY",
                "@Microsoft.KeyVault(SecretUri=https://v.vault.azure.net/secrets/ti-otx-key/)",
            ),
            ("SOCWIRE_TI_GREYNOISE_KEY", "resolved-value"),
            ("OTHER", "@Microsoft.KeyVault(VaultName=v;SecretName=s)"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        assert_eq!(
            unresolved_key_vault_references(vars),
            vec!["SOCWIRE_TI_OTX_KEY".to_string()]
        );
    }

    #[test]
    fn provider_keys_enable_providers_and_are_never_printed() {
        let s = from(&[
            ("SOCWIRE_TI_OTX_KEY", "otx-secret-123"),
            ("SOCWIRE_TI_GREYNOISE_KEY", "gn-secret"),
            ("SOCWIRE_TI_GREYNOISE_URL", "http://127.0.0.1:9/"),
        ])
        .unwrap();
        let names: Vec<&str> = s.ti.providers.iter().map(|p| p.0).collect();
        assert_eq!(names, ["greynoise", "otx"]);
        assert_eq!(s.ti.providers[0].2, "http://127.0.0.1:9/");
        assert_eq!(s.ti.providers[0].3, crate::providers::Quota::default());
        let vt = from(&[
            ("SOCWIRE_TI_VIRUSTOTAL_KEY", "vt"),
            ("SOCWIRE_TI_VIRUSTOTAL_TIER", "public"),
        ])
        .unwrap();
        assert_eq!(
            vt.ti.providers[0].3,
            crate::providers::Quota::VIRUSTOTAL_PUBLIC
        );
        let vt = from(&[
            ("SOCWIRE_TI_VIRUSTOTAL_KEY", "vt"),
            ("SOCWIRE_TI_VIRUSTOTAL_TIER", "public"),
            ("SOCWIRE_TI_VIRUSTOTAL_RATE", "30/min"),
        ])
        .unwrap();
        assert_eq!(vt.ti.providers[0].3.per_minute, Some(30));
        assert!(from(&[("SOCWIRE_TI_OTX_KEY", "k"), ("SOCWIRE_TI_OTX_RATE", "fast")]).is_err());
        assert!(from(&[("SOCWIRE_TI_TABLE", "Nope")]).is_err());
        assert_eq!(
            from(&[("SOCWIRE_TRIAGE_RULE", "seed")])
                .unwrap()
                .sentinel
                .triage_rule,
            TriageRule::Notebook
        );
        let printed = format!("{s:?}");
        assert!(
            !printed.contains("otx-secret-123") && !printed.contains("gn-secret"),
            "{printed}"
        );
        let unresolved = from(&[(
            "SOCWIRE_TI_VIRUSTOTAL_KEY",
            "@Microsoft.KeyVault(SecretUri=https://v.vault.azure.net/secrets/vt/)",
        )]);
        assert!(unresolved.unwrap_err().contains("Key Vault reference"));
    }

    #[test]
    fn only_socwire_storage_selects_azure_storage() {
        let s = from(&[("AzureWebJobsStorage", "UseDevelopmentStorage=true")]).unwrap();
        assert_eq!(s.storage.account, None);
        let s = from(&[("SOCWIRE_STORAGE", "UseDevelopmentStorage=true")]).unwrap();
        assert_eq!(
            s.storage.account.as_deref(),
            Some("UseDevelopmentStorage=true")
        );
    }
}
