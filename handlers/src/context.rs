//! The ports every function uses, chosen once at start from [`Settings`].

use crate::local::{
    FileReportStore, OfflineThreatIntel, SqliteIncidentStore, SqliteLedger, SqliteTables,
};
use crate::ports::{
    AssetFetcher, CommandBus, IncidentStore, Ledger, LogsIngestion, MlWorkspace, ReportStore,
    StateStore, ThreatIntel, WorkspaceQueries,
};
use crate::settings::Settings;
use std::sync::Arc;

/// Shared state handed to every invocation.
#[derive(Clone)]
pub struct Context {
    /// Sentinel incidents.
    pub incidents: Arc<dyn IncidentStore>,
    /// Threat intelligence.
    pub threat_intel: Arc<dyn ThreatIntel>,
    /// Idempotency ledger.
    pub ledger: Arc<dyn Ledger>,
    /// Triage report storage.
    pub reports: Arc<dyn ReportStore>,
    /// The Log Analytics workspace, asked typed questions.
    pub workspace: Arc<dyn WorkspaceQueries>,
    /// Kept state (the alert engine's window).
    pub state: Arc<dyn StateStore>,
    /// Log Analytics custom tables.
    pub logs: Arc<dyn LogsIngestion>,
    /// The alert engine, its window and what was already written, in memory between batches.
    pub alert_engine:
        Arc<tokio::sync::Mutex<Option<crate::functions::alert_stream::state::EngineState>>>,
    /// The Azure ML workspace (or its local stand-in).
    pub ml: Arc<dyn MlWorkspace>,
    /// Commands the ML functions send themselves (Subject, MessageId, schedule).
    pub commands: Arc<dyn CommandBus>,
    /// NGC asset downloads.
    pub assets: Arc<dyn AssetFetcher>,
    /// Settings the functions read.
    pub settings: Arc<Settings>,
    /// Which adapter serves each port, for the start-up log.
    pub adapters: Adapters,
}

impl Context {
    /// Builds the ports: Azure adapters where their settings are present, local ones otherwise.
    /// With `require_azure`, a missing Azure setting is an error.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        if settings.require_azure {
            check_azure_settings(settings)?;
        }
        let mut adapters = Vec::new();
        let a = &mut adapters;
        let threat_intel = threat_intel(settings, a)?;
        let incidents = incidents(settings, a)?;
        let workspace = workspace(settings, a)?;
        let (ledger, reports) = ledger_and_reports(settings, a)?;
        let state = state(settings, a)?;
        let logs = logs(settings, a)?;
        let ml = ml(settings, a)?;
        let commands = commands(settings, a)?;
        let assets = assets(settings, a);
        Ok(Self {
            ml,
            commands,
            assets,
            state,
            logs,
            alert_engine: Arc::default(),
            settings: Arc::new(settings.clone()),
            incidents,
            workspace,
            threat_intel,
            ledger,
            reports,
            adapters,
        })
    }
}

/// Which adapter serves each port, for the start-up log.
pub type Adapters = Vec<(&'static str, String)>;

/// With `require_azure`: every Azure setting present, resolved and well formed.
fn check_azure_settings(settings: &Settings) -> anyhow::Result<()> {
    let missing = settings.missing_azure_settings();
    if !missing.is_empty() {
        anyhow::bail!(
            "SOCWIRE_REQUIRE_AZURE=true but these settings are missing: {}",
            missing.join(", ")
        );
    }
    let unresolved = crate::settings::unresolved_key_vault_references(std::env::vars());
    if !unresolved.is_empty() {
        anyhow::bail!(
                "SOCWIRE_REQUIRE_AZURE=true but these Key Vault references did not resolve (check the secret exists and the app identity has Key Vault Secrets User): {}",
                unresolved.join(", ")
            );
    }
    let wrong = settings.wrong_azure_settings();
    if !wrong.is_empty() {
        anyhow::bail!(
            "SOCWIRE_REQUIRE_AZURE=true but these settings are wrong: {}",
            wrong.join("; ")
        );
    }
    Ok(())
}

/// The offline list, and the internet providers in front of it when keys are set.
fn threat_intel(
    settings: &Settings,
    adapters: &mut Adapters,
) -> anyhow::Result<Arc<dyn ThreatIntel>> {
    let ti_text = match &settings.ti.file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("SOCWIRE_TI_FILE {}: {e}", path.display()))?,
        None => crate::local::threat_intel_builtin().to_string(),
    };
    let ti = OfflineThreatIntel::from_feed(&ti_text)?;
    adapters.push((
        "threat-intel",
        format!("offline list ({} indicators)", ti.len()),
    ));
    let offline: Arc<dyn ThreatIntel> = Arc::new(ti);
    Ok(if settings.ti.providers.is_empty() {
        offline
    } else {
        let timeout = std::time::Duration::from_millis(settings.ti.timeout_ms as u64);
        let mut providers: Vec<(Arc<dyn crate::providers::Provider>, crate::providers::Quota)> =
            Vec::new();
        for (name, key, url, quota) in &settings.ti.providers {
            let provider: Arc<dyn crate::providers::Provider> = match *name {
                "virustotal" => Arc::new(crate::providers::VirusTotal::new(url, key, timeout)?),
                "abuseipdb" => Arc::new(crate::providers::AbuseIpDb::new(url, key, timeout)?),
                "greynoise" => Arc::new(crate::providers::GreyNoise::new(url, key, timeout)?),
                _ => Arc::new(crate::providers::Otx::new(url, key, timeout)?),
            };
            providers.push((provider, *quota));
        }
        let chain = crate::providers::ProviderChain::new(
            offline,
            providers,
            timeout,
            crate::providers::CacheLimits {
                ttl: std::time::Duration::from_millis(settings.ti.cache_ttl_ms.max(0) as u64),
                failure_ttl: std::time::Duration::from_millis(
                    settings.ti.failure_ttl_ms.max(0) as u64
                ),
                entries: settings.ti.cache_entries,
            },
        );
        adapters.push((
            "threat-intel",
            format!("providers: {}", chain.names().join(", ")),
        ));
        Arc::new(chain)
    })
}

/// Sentinel incidents: the REST API, or the local SQLite store.
fn incidents(
    settings: &Settings,
    adapters: &mut Adapters,
) -> anyhow::Result<Arc<dyn IncidentStore>> {
    Ok(match &settings.sentinel.endpoint {
        Some(endpoint) => {
            adapters.push(("sentinel", format!("Azure REST {endpoint}")));
            Arc::new(crate::azure::SentinelRest::new(
                endpoint,
                crate::azure::default_credential()?,
            )?)
        }
        None => {
            let path = settings.data_dir.join("sentinel.sqlite3");
            adapters.push(("sentinel", format!("local SQLite {}", path.display())));
            Arc::new(SqliteIncidentStore::open(&path)?)
        }
    })
}

/// Workspace questions: the Log Analytics query API, or the local SQLite workspace.
fn workspace(
    settings: &Settings,
    adapters: &mut Adapters,
) -> anyhow::Result<Arc<dyn WorkspaceQueries>> {
    Ok(match &settings.sentinel.la_workspace_id {
        Some(ws) => {
            adapters.push((
                "workspace",
                format!(
                    "Log Analytics query API {} workspace {ws}",
                    settings.sentinel.la_endpoint
                ),
            ));
            Arc::new(crate::azure::LogAnalyticsQuery::new(
                &settings.sentinel.la_endpoint,
                ws,
                crate::azure::default_credential()?,
            )?)
        }
        None => {
            let path = settings.data_dir.join("workspace.sqlite3");
            adapters.push(("workspace", format!("local SQLite {}", path.display())));
            Arc::new(crate::local::SqliteWorkspace::open(&path)?)
        }
    })
}

/// The ledger and the report store: Blob containers, or local SQLite and files.
fn ledger_and_reports(
    settings: &Settings,
    adapters: &mut Adapters,
) -> anyhow::Result<(Arc<dyn Ledger>, Arc<dyn ReportStore>)> {
    Ok(match &settings.storage.account {
        Some(connection) => {
            let account = crate::azure::StorageAccount::parse(connection)?;
            adapters.push((
                "ledger",
                format!("Azure Blob container {}", settings.storage.ledger_container),
            ));
            adapters.push((
                "reports",
                format!(
                    "Azure Blob container {}",
                    settings.storage.reports_container
                ),
            ));
            (
                Arc::new(crate::azure::BlobLedger::new(
                    &account,
                    &settings.storage.ledger_container,
                )?),
                Arc::new(crate::azure::BlobReportStore::with_link_lifetime(
                    &account,
                    &settings.storage.reports_container,
                    chrono::Duration::milliseconds(settings.storage.report_link_ms),
                    crate::azure::AdapterOptions::default(),
                )?),
            )
        }
        None => {
            let path = settings.data_dir.join("ledger.sqlite3");
            adapters.push(("ledger", format!("local SQLite {}", path.display())));
            let dir = settings.data_dir.join("reports");
            adapters.push(("reports", format!("local files {}", dir.display())));
            (
                Arc::new(SqliteLedger::open(&path)?),
                Arc::new(FileReportStore::new(
                    dir,
                    settings.storage.reports_base_url.clone(),
                )),
            )
        }
    })
}

/// The local tables (state, custom log tables).
fn local_tables(settings: &Settings) -> anyhow::Result<Arc<SqliteTables>> {
    Ok(Arc::new(SqliteTables::open(
        &settings.data_dir.join("tables.sqlite3"),
    )?))
}

/// Kept state: a Blob container, or the local tables.
fn state(settings: &Settings, adapters: &mut Adapters) -> anyhow::Result<Arc<dyn StateStore>> {
    Ok(match &settings.storage.account {
        Some(connection) => {
            adapters.push((
                "state",
                format!("Azure Blob container {}", settings.storage.state_container),
            ));
            let account = crate::azure::StorageAccount::parse(connection)?;
            Arc::new(crate::azure::BlobStateStore::new(
                &account,
                &settings.storage.state_container,
            )?)
        }
        None => {
            adapters.push((
                "state",
                format!(
                    "local SQLite {}",
                    settings.data_dir.join("tables.sqlite3").display()
                ),
            ));
            local_tables(settings)?
        }
    })
}

/// Custom log tables: the Logs Ingestion API, or the local tables.
fn logs(settings: &Settings, adapters: &mut Adapters) -> anyhow::Result<Arc<dyn LogsIngestion>> {
    Ok(
        match (&settings.alerts.logs_endpoint, &settings.alerts.logs_dcr_id) {
            (Some(endpoint), Some(dcr)) => {
                adapters.push(("logs", format!("Logs Ingestion API {endpoint} DCR {dcr}")));
                Arc::new(crate::azure::LogsIngestionRest::new(
                    endpoint,
                    dcr,
                    crate::azure::default_credential()?,
                )?)
            }
            _ => {
                adapters.push((
                    "logs",
                    format!(
                        "local SQLite {}",
                        settings.data_dir.join("tables.sqlite3").display()
                    ),
                ));
                local_tables(settings)?
            }
        },
    )
}

/// The ML workspace: Azure ML REST, refused in Azure without one, or the local back end.
fn ml(settings: &Settings, adapters: &mut Adapters) -> anyhow::Result<Arc<dyn MlWorkspace>> {
    Ok(match (&settings.ml.endpoint, &settings.ml.workspace) {
        (Some(endpoint), Some(workspace)) => {
            adapters.push(("ml", format!("Azure ML REST {workspace}")));
            Arc::new(
                crate::azure::AzureMlRest::new(
                    endpoint,
                    workspace,
                    &settings.ml.location,
                    settings.ml.datastore_url.as_deref(),
                    crate::azure::default_credential()?,
                )?
                .with_cluster_identity(settings.ml.cluster_identity.clone())
                .with_tracking_uri(settings.ml.tracking_uri.as_deref())?,
            )
        }
        // Azure without an ML workspace (the Bicep's hasMl false): the GPU functions are
        // disabled there, and the local back end must never open files under the app
        // root, which is read-only when the app runs from its package.
        _ if settings.require_azure => {
            adapters.push(("ml", NotConfigured::ML.to_string()));
            Arc::new(NotConfigured::ML)
        }
        _ => {
            adapters.push((
                "ml",
                format!(
                    "local compute back end {}",
                    settings.data_dir.join("ml").display()
                ),
            ));
            Arc::new(crate::local::LocalWorkspace::open(
                &settings.data_dir,
                crate::local::LocalMlOptions {
                    provision_ms: settings.ml.local_provision_ms,
                    max_nodes_quota: settings.ml.local_max_nodes,
                    runner: settings
                        .ml
                        .runner
                        .clone()
                        .or_else(|| std::env::current_exe().ok()),
                },
            )?)
        }
    })
}

/// The ML command topic: Service Bus REST, refused in Azure without one, or the local broker.
fn commands(settings: &Settings, adapters: &mut Adapters) -> anyhow::Result<Arc<dyn CommandBus>> {
    Ok(match &settings.ml.servicebus_namespace {
        Some(ns) => {
            adapters.push((
                "commands",
                format!("Service Bus REST {ns}/{}", settings.ml.commands_topic),
            ));
            Arc::new(crate::azure::ServiceBusRest::new(
                ns,
                &settings.ml.commands_topic,
                crate::azure::default_credential()?,
                crate::azure::AdapterOptions::json_api(),
            )?)
        }
        None if settings.require_azure => {
            adapters.push(("commands", NotConfigured::COMMANDS.to_string()));
            Arc::new(NotConfigured::COMMANDS)
        }
        None => {
            adapters.push((
                "commands",
                format!("local broker topic {}", settings.ml.commands_topic),
            ));
            Arc::new(crate::local::LocalCommandBus::open(
                &settings.data_dir,
                &settings.ml.commands_topic,
            )?)
        }
    })
}

/// Asset downloads from the allow-listed hosts and local folders.
fn assets(settings: &Settings, adapters: &mut Adapters) -> Arc<dyn AssetFetcher> {
    adapters.push((
        "assets",
        format!(
            "allow-listed hosts {}",
            settings.ml.ngc_allowed_hosts.join(", ")
        ),
    ));
    Arc::new(crate::azure::AllowListedFetcher::new(
        settings.ml.ngc_allowed_hosts.clone(),
        settings.ml.local_asset_dirs.clone(),
    ))
}

/// The port of an optional Azure service that this deployment does not have (Azure mode only):
/// every call fails permanently, naming the setting, and nothing local is opened in its place.
#[derive(Debug, Clone, Copy)]
struct NotConfigured {
    what: &'static str,
    setting: &'static str,
}

impl NotConfigured {
    const ML: Self = Self {
        what: "Azure ML workspace",
        setting: "SOCWIRE_ML_WORKSPACE",
    };
    const COMMANDS: Self = Self {
        what: "Service Bus namespace",
        setting: "SOCWIRE_SERVICEBUS_NAMESPACE",
    };

    fn refuse<T>(&self) -> crate::ports::PortResult<T> {
        Err(crate::ports::PortError::Permanent(self.to_string()))
    }
}

impl std::fmt::Display for NotConfigured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no {} in this deployment ({} is empty; its functions should be disabled)",
            self.what, self.setting
        )
    }
}

#[async_trait::async_trait]
impl MlWorkspace for NotConfigured {
    async fn get_cluster(
        &self,
        _: &str,
    ) -> crate::ports::PortResult<Option<crate::ports::ClusterInfo>> {
        self.refuse()
    }
    async fn create_cluster(
        &self,
        _: &crate::ports::ClusterSpec,
    ) -> crate::ports::PortResult<crate::ports::Provisioning> {
        self.refuse()
    }
    async fn operation_status(
        &self,
        _: &str,
    ) -> crate::ports::PortResult<crate::ports::OperationStatus> {
        self.refuse()
    }
    async fn upload_folder(
        &self,
        _: &std::path::Path,
        _: &str,
    ) -> crate::ports::PortResult<String> {
        self.refuse()
    }
    async fn register_environment(&self, _: &str, _: &str) -> crate::ports::PortResult<String> {
        self.refuse()
    }
    async fn submit_job(
        &self,
        _: &crate::ports::JobSubmission,
    ) -> crate::ports::PortResult<crate::ports::JobInfo> {
        self.refuse()
    }
    async fn get_job(&self, _: &str) -> crate::ports::PortResult<Option<crate::ports::JobInfo>> {
        self.refuse()
    }
    async fn cancel_job(&self, _: &str) -> crate::ports::PortResult<()> {
        self.refuse()
    }
    async fn scale_back(&self, _: &str) -> crate::ports::PortResult<()> {
        self.refuse()
    }
    async fn download_job_output(
        &self,
        _: &str,
        _: &std::path::Path,
        _: u64,
    ) -> crate::ports::PortResult<()> {
        self.refuse()
    }
    async fn metric_history(
        &self,
        _: &str,
        _: &str,
    ) -> crate::ports::PortResult<Vec<crate::ports::MetricPoint>> {
        self.refuse()
    }
    async fn register_model(
        &self,
        _: &crate::ports::ModelRegistration,
    ) -> crate::ports::PortResult<String> {
        self.refuse()
    }
}

#[async_trait::async_trait]
impl CommandBus for NotConfigured {
    async fn send(&self, _: &crate::ports::OutgoingCommand) -> crate::ports::PortResult<()> {
        self.refuse()
    }
}
