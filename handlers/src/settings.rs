//! Settings, read once from the environment at start (the Functions host passes app settings
//! as environment variables; `socwire up` does the same from `local.settings.json`).

use std::path::PathBuf;

/// Every setting the handler reads.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Port to listen on (`FUNCTIONS_CUSTOMHANDLER_PORT`, set by the host).
    pub port: u16,
    /// Directory for local adapters' state (`SOCWIRE_DATA_DIR`, default `.socwire`).
    pub data_dir: PathBuf,
    /// Base URL under which local reports are served (`SOCWIRE_REPORTS_BASE_URL`).
    pub reports_base_url: String,
    /// A threat-intelligence list to use instead of the built-in one (`SOCWIRE_TI_FILE`).
    pub ti_file: Option<PathBuf>,
    /// Sentinel ARM endpoint (`SOCWIRE_SENTINEL_ENDPOINT`); set = use the Azure adapter.
    pub sentinel_endpoint: Option<String>,
    /// Storage account for the ledger and reports (`SOCWIRE_STORAGE`: an account URL for
    /// managed identity, or a connection string such as `UseDevelopmentStorage=true`); set = use
    /// the Azure Blob adapters. `AzureWebJobsStorage` is the host's, and is not read here.
    pub storage: Option<String>,
    /// Blob container for the idempotency ledger (`SOCWIRE_LEDGER_CONTAINER`).
    pub ledger_container: String,
    /// Blob container for triage reports (`SOCWIRE_REPORTS_CONTAINER`).
    pub reports_container: String,
    /// Refuse to start on local adapters (`SOCWIRE_REQUIRE_AZURE=true`).
    pub require_azure: bool,
    /// Largest request body accepted, bytes (`SOCWIRE_MAX_BODY_BYTES`, default 4 MiB).
    pub max_body_bytes: usize,
    /// Logs Ingestion endpoint (`SOCWIRE_LOGS_ENDPOINT`); with `SOCWIRE_LOGS_DCR_ID`, subgraph
    /// rows go to Log Analytics, otherwise to the local tables.
    pub logs_endpoint: Option<String>,
    /// Data collection rule immutable id (`SOCWIRE_LOGS_DCR_ID`).
    pub logs_dcr_id: Option<String>,
    /// Blob container for the alert engine's window (`SOCWIRE_STATE_CONTAINER`).
    pub state_container: String,
    /// Alert engine window (`SOCWIRE_ALERT_WINDOW`, e.g. 24h).
    pub alert_window_ms: i64,
    /// Subgraphs scoring at least this publish `socwire.AlertSubgraphPrioritized`
    /// (`SOCWIRE_ALERT_EVENT_SCORE`, default 20).
    pub alert_event_score: f64,
    /// Changed subgraphs among the top N are written as rows after each batch
    /// (`SOCWIRE_ALERT_ROWS_TOP`, default 50).
    pub alert_rows_top: usize,
    /// Azure ML: ARM endpoint (`SOCWIRE_ML_ENDPOINT`); with `SOCWIRE_ML_WORKSPACE`, the Azure
    /// ML adapter is used, otherwise the local compute back end.
    pub ml_endpoint: Option<String>,
    /// The workspace's ARM id (`SOCWIRE_ML_WORKSPACE`).
    pub ml_workspace: Option<String>,
    /// Region of new clusters (`SOCWIRE_ML_LOCATION`).
    pub ml_location: String,
    /// Blob container URL of the workspace datastore (`SOCWIRE_ML_DATASTORE_URL`).
    pub ml_datastore_url: Option<String>,
    /// Service Bus namespace for commands the functions send themselves
    /// (`SOCWIRE_SERVICEBUS_NAMESPACE`); unset = the local broker.
    pub servicebus_namespace: Option<String>,
    /// The commands topic (`SOCWIRE_ML_COMMANDS_TOPIC`, default `ml-commands`).
    pub ml_commands_topic: String,
    /// Hosts assets may come from (`SOCWIRE_NGC_ALLOWED_HOSTS`, comma-separated).
    pub ngc_allowed_hosts: Vec<String>,
    /// Local folders `file://` assets may come from (`SOCWIRE_ML_LOCAL_ASSET_DIRS`).
    pub ml_local_asset_dirs: Vec<PathBuf>,
    /// Largest asset download (`SOCWIRE_ML_MAX_ASSET_BYTES`).
    pub ml_max_asset_bytes: u64,
    /// Largest unpacked asset (`SOCWIRE_ML_MAX_UNPACKED_BYTES`).
    pub ml_max_unpacked_bytes: u64,
    /// Container image of the fine-tune environment (`SOCWIRE_ML_IMAGE`).
    pub ml_image: String,
    /// Seconds between follow-up checks when the service gives no Retry-After
    /// (`SOCWIRE_ML_POLL_SECS`).
    pub ml_poll_secs: u64,
    /// Evaluations of rising loss that count as divergence (`SOCWIRE_ML_DIVERGENCE_EVALS`).
    pub ml_divergence_evals: usize,
    /// Local back end: how long a cluster stays Creating (`SOCWIRE_ML_LOCAL_PROVISION_MS`).
    pub ml_local_provision_ms: i64,
    /// Local back end: node quota (`SOCWIRE_ML_LOCAL_MAX_NODES`).
    pub ml_local_max_nodes: u32,
    /// Local back end: the executable that runs jobs (`SOCWIRE_ML_RUNNER`, default this one).
    pub ml_runner: Option<PathBuf>,
}

impl Settings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, String> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let port = match get("FUNCTIONS_CUSTOMHANDLER_PORT")
            .or_else(|| get("FUNCTIONS_HTTPWORKER_PORT"))
        {
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| format!("FUNCTIONS_CUSTOMHANDLER_PORT={v:?} is not a port number"))?,
            None => 8080,
        };
        let require_azure = match get("SOCWIRE_REQUIRE_AZURE").as_deref().map(str::trim) {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(other) => {
                return Err(format!(
                    "SOCWIRE_REQUIRE_AZURE={other:?}: use true or false"
                ))
            }
        };
        let max_body_bytes = match get("SOCWIRE_MAX_BODY_BYTES") {
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| format!("SOCWIRE_MAX_BODY_BYTES={v:?} is not a number"))?,
            None => 4 * 1024 * 1024,
        };
        let number = |name: &str, default: f64| -> Result<f64, String> {
            match get(name) {
                Some(v) => v
                    .trim()
                    .parse()
                    .map_err(|_| format!("{name}={v:?} is not a number")),
                None => Ok(default),
            }
        };
        let alert_window_ms = match get("SOCWIRE_ALERT_WINDOW") {
            Some(v) => crate::alerts_cli::parse_duration_ms(&v)
                .map_err(|e| format!("SOCWIRE_ALERT_WINDOW: {e}"))?,
            None => 24 * 3_600_000,
        };
        let data_dir = PathBuf::from(get("SOCWIRE_DATA_DIR").unwrap_or_else(|| ".socwire".into()));
        let list = |name: &str| -> Option<Vec<String>> {
            get(name).map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
        };
        Ok(Self {
            ml_endpoint: get("SOCWIRE_ML_ENDPOINT"),
            ml_workspace: get("SOCWIRE_ML_WORKSPACE"),
            ml_location: get("SOCWIRE_ML_LOCATION").unwrap_or_else(|| "westeurope".into()),
            ml_datastore_url: get("SOCWIRE_ML_DATASTORE_URL"),
            servicebus_namespace: get("SOCWIRE_SERVICEBUS_NAMESPACE"),
            ml_commands_topic: get("SOCWIRE_ML_COMMANDS_TOPIC")
                .unwrap_or_else(|| "ml-commands".into()),
            ngc_allowed_hosts: list("SOCWIRE_NGC_ALLOWED_HOSTS").unwrap_or_else(|| {
                [
                    "api.ngc.nvidia.com",
                    "files.ngc.nvidia.com",
                    "xfiles.ngc.nvidia.com",
                ]
                .map(String::from)
                .to_vec()
            }),
            ml_local_asset_dirs: list("SOCWIRE_ML_LOCAL_ASSET_DIRS")
                .map(|v| v.into_iter().map(PathBuf::from).collect())
                .unwrap_or_else(|| vec![data_dir.join("ml").join("local-assets")]),
            ml_max_asset_bytes: number("SOCWIRE_ML_MAX_ASSET_BYTES", 4.0 * (1u64 << 30) as f64)?
                as u64,
            ml_max_unpacked_bytes: number(
                "SOCWIRE_ML_MAX_UNPACKED_BYTES",
                16.0 * (1u64 << 30) as f64,
            )? as u64,
            ml_image: get("SOCWIRE_ML_IMAGE")
                .unwrap_or_else(|| "nvcr.io/nvidia/pytorch:24.08-py3".into()),
            ml_poll_secs: number("SOCWIRE_ML_POLL_SECS", 30.0)?.max(1.0) as u64,
            ml_divergence_evals: number("SOCWIRE_ML_DIVERGENCE_EVALS", 3.0)?.max(2.0) as usize,
            ml_local_provision_ms: number("SOCWIRE_ML_LOCAL_PROVISION_MS", 3000.0)? as i64,
            ml_local_max_nodes: number("SOCWIRE_ML_LOCAL_MAX_NODES", 8.0)? as u32,
            ml_runner: get("SOCWIRE_ML_RUNNER").map(PathBuf::from),
            logs_endpoint: get("SOCWIRE_LOGS_ENDPOINT"),
            logs_dcr_id: get("SOCWIRE_LOGS_DCR_ID"),
            state_container: get("SOCWIRE_STATE_CONTAINER")
                .unwrap_or_else(|| "socwire-state".into()),
            alert_window_ms,
            alert_event_score: number("SOCWIRE_ALERT_EVENT_SCORE", 20.0)?,
            alert_rows_top: number("SOCWIRE_ALERT_ROWS_TOP", 50.0)? as usize,
            port,
            data_dir,
            reports_base_url: get("SOCWIRE_REPORTS_BASE_URL")
                .unwrap_or_else(|| "http://127.0.0.1:7071/reports".into()),
            ti_file: get("SOCWIRE_TI_FILE").map(PathBuf::from),
            sentinel_endpoint: get("SOCWIRE_SENTINEL_ENDPOINT"),
            storage: get("SOCWIRE_STORAGE"),
            ledger_container: get("SOCWIRE_LEDGER_CONTAINER")
                .unwrap_or_else(|| "socwire-ledger".into()),
            reports_container: get("SOCWIRE_REPORTS_CONTAINER")
                .unwrap_or_else(|| "socwire-reports".into()),
            require_azure,
            max_body_bytes,
        })
    }

    /// The settings an Azure deployment must have, that are missing here.
    pub fn missing_azure_settings(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if self.sentinel_endpoint.is_none() {
            missing.push("SOCWIRE_SENTINEL_ENDPOINT");
        }
        if self.storage.is_none() {
            missing.push("SOCWIRE_STORAGE");
        }
        if self.logs_endpoint.is_none() || self.logs_dcr_id.is_none() {
            missing.push("SOCWIRE_LOGS_ENDPOINT and SOCWIRE_LOGS_DCR_ID");
        }
        if self.ml_endpoint.is_none() || self.ml_workspace.is_none() {
            missing.push("SOCWIRE_ML_ENDPOINT and SOCWIRE_ML_WORKSPACE");
        }
        if self.servicebus_namespace.is_none() {
            missing.push("SOCWIRE_SERVICEBUS_NAMESPACE");
        }
        missing
    }
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
        assert_eq!(s.missing_azure_settings().len(), 5);
        assert_eq!(s.ngc_allowed_hosts[0], "api.ngc.nvidia.com");
        assert_eq!(
            s.ml_local_asset_dirs,
            vec![PathBuf::from(".socwire/ml/local-assets")]
        );
        assert_eq!(s.alert_window_ms, 24 * 3_600_000);
    }

    #[test]
    fn bad_values_are_clear_errors() {
        assert!(from(&[("FUNCTIONS_CUSTOMHANDLER_PORT", "http")])
            .unwrap_err()
            .contains("port"));
        assert!(from(&[("SOCWIRE_REQUIRE_AZURE", "yes")])
            .unwrap_err()
            .contains("true or false"));
    }

    #[test]
    fn only_socwire_storage_selects_azure_storage() {
        let s = from(&[("AzureWebJobsStorage", "UseDevelopmentStorage=true")]).unwrap();
        assert_eq!(s.storage, None);
        let s = from(&[("SOCWIRE_STORAGE", "UseDevelopmentStorage=true")]).unwrap();
        assert_eq!(s.storage.as_deref(), Some("UseDevelopmentStorage=true"));
    }
}
