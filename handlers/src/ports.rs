//! Narrow interfaces to every outside system. Functions depend only on these traits; each has a
//! local adapter (SQLite, files) in `crate::local` and an Azure adapter in `crate::azure`.

use crate::sentinel::{AccountRef, Entity, HostRef, Incident, IncidentId, Indicator};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// A failure talking to an outside system.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The thing asked for does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// An optimistic-concurrency check failed (Sentinel etag, blob condition).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Worth retrying later (timeouts, 429, 5xx, a locked database).
    #[error("transient failure: {0}")]
    Transient(String),
    /// Retrying will not help (bad request, forbidden, bad configuration).
    #[error("{0}")]
    Permanent(String),
    /// A local store (a SQLite database, a file of the data folder) failed: `what` says what
    /// was being done, the store's own error is the `source()`.
    #[error("{what}: {source}")]
    Store {
        /// What was being done (`sqlite`, `job 7's log`, `model folder …`).
        what: String,
        /// Whether a retry may succeed (a busy database, a file error).
        transient: bool,
        /// The store's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl PortError {
    /// True when a later retry may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            PortError::Transient(_)
                | PortError::Conflict(_)
                | PortError::Store {
                    transient: true,
                    ..
                }
        )
    }

    /// A SQLite failure: worth retrying when the database is busy or locked, not otherwise.
    pub fn sqlite(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        let transient = matches!(
            e.sqlite_error_code(),
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
        );
        PortError::Store {
            what: "sqlite".into(),
            transient,
            source: Box::new(e),
        }
    }

    /// A file of the data folder could not be read or written while doing `what` (worth
    /// retrying: a full disk or a missing folder may be fixed).
    pub fn file(what: impl Into<String>, e: std::io::Error) -> Self {
        PortError::Store {
            what: what.into(),
            transient: true,
            source: Box::new(e),
        }
    }

    /// The reason to give when retrying cannot help, `None` when it may (or the thing is
    /// missing): what a function sets the input aside with.
    pub fn permanent_reason(&self) -> Option<String> {
        match self {
            PortError::Permanent(reason) => Some(reason.clone()),
            PortError::Store {
                transient: false, ..
            } => Some(self.to_string()),
            _ => None,
        }
    }
}

/// Result type of port calls.
pub type PortResult<T> = Result<T, PortError>;

/// Sentinel incidents (Microsoft.SecurityInsights REST in Azure).
#[async_trait]
pub trait IncidentStore: Send + Sync {
    /// `Incidents_Get`.
    async fn get(&self, id: &IncidentId) -> PortResult<Incident>;
    /// `Incidents_ListEntities`.
    async fn entities(&self, id: &IncidentId) -> PortResult<Vec<Entity>>;
    /// `Incidents_ListAlerts`: the incident's alerts as Sentinel returns them.
    async fn alerts(&self, id: &IncidentId) -> PortResult<Vec<serde_json::Value>>;
    /// `Incidents_CreateOrUpdate` of an incident read with [`IncidentStore::get`]: the etag it
    /// carries is sent back, and a newer version on the server is [`PortError::Conflict`]
    /// (never retried here: the caller re-reads and decides again).
    async fn update(&self, id: &IncidentId, incident: &Incident) -> PortResult<()>;
    /// `IncidentComments_CreateOrUpdate` with a caller-chosen comment id: putting the same id
    /// twice leaves one comment, which is what makes redelivery harmless.
    async fn put_comment(&self, id: &IncidentId, comment_id: &str, message: &str)
        -> PortResult<()>;
    /// `Incidents_List` filtered to incidents created or modified at or after `since`, every
    /// page followed (at most `max` incidents).
    async fn list_modified_since(
        &self,
        workspace: &crate::sentinel::WorkspaceRef,
        since: chrono::DateTime<chrono::Utc>,
        max: usize,
    ) -> PortResult<Vec<Incident>>;
}

/// Threat-intelligence verdict, as MSTICPy grades it (there is no "low").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TiSeverity {
    /// Known good (an allow-list entry).
    Benign,
    /// Seen, nothing notable.
    Information,
    /// Suspicious.
    Warning,
    /// Known bad.
    High,
}

impl TiSeverity {
    /// MSTICPy's name for the level (`information`, `warning`, `high`; `benign` is ours: an
    /// allow-list entry).
    pub fn msticpy(&self) -> &'static str {
        match self {
            TiSeverity::Benign => "benign",
            TiSeverity::Information => "information",
            TiSeverity::Warning => "warning",
            TiSeverity::High => "high",
        }
    }
}

/// One provider's verdict on one indicator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TiFinding {
    /// The indicator looked up.
    pub indicator: Indicator,
    /// Which provider answered.
    pub provider: String,
    /// Its verdict.
    pub severity: TiSeverity,
    /// Short provider detail (list name, pulse count, …).
    pub details: String,
}

/// Threat-intelligence look-ups.
#[async_trait]
pub trait ThreatIntel: Send + Sync {
    /// What the sources say about one indicator; no findings when none knows it.
    async fn lookup(&self, indicator: &Indicator) -> PortResult<TiAnswer>;
}

/// A provider that was not asked about an indicator, and why (its quota is used up, it
/// asked us to wait): the report gives one line per provider and reason.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TiSkip {
    /// The provider.
    pub provider: String,
    /// Why, in words that do not change from one indicator to the next.
    pub why: String,
}

/// The answer of the threat-intelligence sources about one indicator.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TiAnswer {
    /// What the sources that were asked said.
    pub findings: Vec<TiFinding>,
    /// Why the indicator was not sent to internet providers, when it was not (a private
    /// address, an unqualified name): offline lists and the workspace still saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withheld: Option<String>,
    /// Providers not asked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<TiSkip>,
}

impl From<Vec<TiFinding>> for TiAnswer {
    fn from(findings: Vec<TiFinding>) -> Self {
        Self {
            findings,
            ..Default::default()
        }
    }
}

/// The idempotency ledger: every side effect is keyed and recorded, so a redelivered message
/// never repeats it.
#[async_trait]
pub trait Ledger: Send + Sync {
    /// The detail recorded for `key`, if the effect was already done.
    async fn get(&self, key: &str) -> PortResult<Option<String>>;
    /// Records `key` as done; returns false when it was already recorded (first writer wins).
    async fn record(&self, key: &str, detail: &str) -> PortResult<bool>;
}

/// Where triage reports are written; returns a link an analyst can open.
#[async_trait]
pub trait ReportStore: Send + Sync {
    /// Stores (or overwrites) an HTML report under `name`; returns its URL.
    async fn put_html(&self, name: &str, html: &str) -> PortResult<String>;
}

/// Small named blobs kept between invocations (the alert engine's base snapshot and journal).
#[async_trait]
pub trait StateStore: Send + Sync {
    /// The bytes saved under `key`, if any.
    async fn load(&self, key: &str) -> PortResult<Option<Vec<u8>>>;
    /// Saves (replaces) the bytes under `key`.
    async fn save(&self, key: &str, bytes: &[u8]) -> PortResult<()>;
    /// Saves `bytes` under `key` only if nothing is there (a conditional write: blob
    /// `If-None-Match: *`); returns false when the key already exists, so two writers of the
    /// same journal entry cannot both succeed.
    async fn create(&self, key: &str, bytes: &[u8]) -> PortResult<bool>;
    /// Removes `key` (absent keys are fine).
    async fn delete(&self, key: &str) -> PortResult<()>;
}

/// Log Analytics Logs Ingestion API: rows into a custom table through a DCR stream.
#[async_trait]
pub trait LogsIngestion: Send + Sync {
    /// Uploads `rows` (JSON objects) to `stream`; returns how many API calls it took.
    async fn upload(&self, stream: &str, rows: &[serde_json::Value]) -> PortResult<usize>;
}

/// Which table holds Sentinel's threat intelligence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TiTable {
    /// `ThreatIntelIndicators` (STIX observables: `ObservableKey`, `ObservableValue`,
    /// `IsActive`, `ValidUntil`, `Confidence`): the table Sentinel writes to since 2025.
    #[default]
    ThreatIntelIndicators,
    /// `ThreatIntelligenceIndicator`: the legacy table, no longer ingested since 31 Aug 2025
    /// and retired on 31 May 2026; only on request (`SOCWIRE_TI_TABLE`).
    ThreatIntelligenceIndicator,
}

impl std::str::FromStr for TiTable {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            t if t.eq_ignore_ascii_case("ThreatIntelIndicators") => Ok(Self::ThreatIntelIndicators),
            t if t.eq_ignore_ascii_case("ThreatIntelligenceIndicator") => {
                Ok(Self::ThreatIntelligenceIndicator)
            }
            other => Err(format!(
                "{other:?}: use ThreatIntelIndicators or (legacy) ThreatIntelligenceIndicator"
            )),
        }
    }
}

/// A question triage may ask the workspace (Log Analytics in Azure, SQLite locally). Each is a
/// named, typed question: adapters render it (the Azure one as KQL with every literal escaped,
/// see [`crate::queries`]); no caller ever passes query text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "question", rename_all = "camelCase")]
pub enum Question {
    /// Security alerts naming a host in the last `days` days.
    RecentAlertsForHost {
        /// The host, by name and FQDN.
        host: HostRef,
        /// Look-back in days.
        days: u32,
    },
    /// Sign-ins (Entra ID, and Windows logons 4624/4625) and failures of an account in the
    /// last `days` days.
    SigninsForAccount {
        /// The account, by its identifiers.
        account: AccountRef,
        /// Look-back in days.
        days: u32,
    },
    /// When an IP address was first seen in the workspace (within `days` days).
    FirstSeenIp {
        /// The address.
        ip: String,
        /// Look-back in days.
        days: u32,
    },
    /// When a domain was first seen in the workspace (within `days` days).
    FirstSeenDomain {
        /// The domain (lower case).
        domain: String,
        /// Look-back in days.
        days: u32,
    },
    /// Processes started on a host in the last `days` days (Defender's
    /// `DeviceProcessEvents`, and `SecurityEvent` 4688 where Defender is not deployed), most
    /// frequent first.
    ProcessesOnHost {
        /// The host, by name and FQDN.
        host: HostRef,
        /// Look-back in days.
        days: u32,
    },
    /// Active, unexpired entries of Sentinel's threat-intelligence table for an indicator.
    ThreatIndicator {
        /// The indicator.
        indicator: Indicator,
        /// The table asked.
        #[serde(default)]
        table: TiTable,
    },
}

impl Question {
    /// The question's name, as findings cite it.
    pub fn name(&self) -> &'static str {
        match self {
            Question::RecentAlertsForHost { .. } => "recent-alerts-for-host",
            Question::SigninsForAccount { .. } => "signins-for-account",
            Question::FirstSeenIp { .. } => "first-seen-ip",
            Question::FirstSeenDomain { .. } => "first-seen-domain",
            Question::ProcessesOnHost { .. } => "processes-on-host",
            Question::ThreatIndicator { .. } => "threat-indicator",
        }
    }
}

/// The answer to a [`Question`]: named columns per row, and the query text that produced it
/// (cited in findings).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// The query as the adapter ran it (KQL in Azure; a description of the SQL locally).
    pub query: String,
    /// Rows, each a map of column name to value.
    pub rows: Vec<serde_json::Map<String, serde_json::Value>>,
    /// True when more rows existed than were kept.
    pub truncated: bool,
    /// What the service said went wrong in part (a missing table in a fuzzy union): the rows
    /// are kept, and the finding says they may be incomplete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The workspace, asked typed questions.
#[async_trait]
pub trait WorkspaceQueries: Send + Sync {
    /// Answers one question.
    async fn ask(&self, question: &Question) -> PortResult<Answer>;
}

/// An AmlCompute cluster as the workspace reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfo {
    /// Compute name.
    pub name: String,
    /// VM size.
    pub vm_size: String,
    /// `provisioningState`: Creating, Succeeded, Failed, Deleting, Updating, Canceled.
    pub state: String,
    /// `allocationState`: Steady or Resizing.
    pub allocation: String,
    /// Nodes allocated now.
    pub nodes: u32,
    /// Scale limits.
    pub min_nodes: u32,
    /// Scale limits.
    pub max_nodes: u32,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why nodes could not be added (AmlCompute's `errors`, such as a core quota reached
    /// during scale-up) while the cluster itself reads Succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_error: Option<String>,
}

/// One logged value of a job's metric (MLflow's metric history).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    /// The step it was logged at.
    pub step: i64,
    /// When, unix ms.
    pub timestamp: i64,
    /// The value; None when it was NaN or infinite.
    pub value: Option<f64>,
}

/// What to create: an AmlCompute cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    /// Compute name.
    pub name: String,
    /// VM size (`Standard_NC6s_v3`, …).
    pub vm_size: String,
    /// `Dedicated` or `LowPriority`.
    pub priority: String,
    /// Scale settings.
    pub min_nodes: u32,
    /// Scale settings.
    pub max_nodes: u32,
    /// Idle time before scale-down, seconds.
    pub idle_seconds: u64,
}

/// Where a create-or-update stands after the call.
#[derive(Debug, Clone, PartialEq)]
pub enum Provisioning {
    /// The cluster exists and is usable.
    Ready(ClusterInfo),
    /// Accepted; follow `operation` (an `Azure-AsyncOperation` URL, or None to read the
    /// cluster itself) no sooner than `retry_after_secs`.
    InProgress {
        /// Operation to poll.
        operation: Option<String>,
        /// Retry-After.
        retry_after_secs: u64,
    },
}

/// A long-running operation's state.
#[derive(Debug, Clone, PartialEq)]
pub enum OperationStatus {
    /// Still running; ask again after this many seconds.
    InProgress(u64),
    /// Done.
    Succeeded,
    /// Failed, with the service's reason.
    Failed(String),
}

/// A Command job to submit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobSubmission {
    /// Job name (deterministic from the command, so a resubmission finds it).
    pub id: String,
    /// Experiment name.
    pub experiment: String,
    /// Compute name.
    pub cluster: String,
    /// Registered environment id.
    pub environment_id: String,
    /// Command line run in the container.
    pub command: String,
    /// Input name → datastore URI.
    pub inputs: std::collections::BTreeMap<String, String>,
    /// Tags (commandId, lineage, hyper-parameters).
    pub tags: std::collections::BTreeMap<String, String>,
}

/// A job as the workspace reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobInfo {
    /// Job name.
    pub id: String,
    /// NotStarted, Queued, Preparing, Provisioning, Starting, Running, Finalizing,
    /// CancelRequested, Completed, Failed, Canceled, NotResponding, Paused.
    pub status: String,
    /// Compute name.
    pub cluster: String,
    /// Tags given at submission.
    #[serde(default)]
    pub tags: std::collections::BTreeMap<String, String>,
    /// Failure reason, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it was submitted (unix ms), when known.
    #[serde(default)]
    pub created_ms: i64,
}

impl JobInfo {
    /// True once the job can change no more.
    pub fn is_terminal(&self) -> bool {
        matches!(self.status.as_str(), "Completed" | "Failed" | "Canceled")
    }
}

/// A model version to register.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRegistration {
    /// Model name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Folder holding the artefacts (model.onnx, model.safetensors, eval.safetensors,
    /// metadata.json).
    pub folder: std::path::PathBuf,
    /// The job that produced it.
    pub job_id: String,
    /// Tags (commandId, AP figures).
    pub tags: std::collections::BTreeMap<String, String>,
}

/// An Azure Machine Learning workspace: compute, datastore, environments, jobs, models.
#[async_trait]
pub trait MlWorkspace: Send + Sync {
    /// The cluster, if it exists.
    async fn get_cluster(&self, name: &str) -> PortResult<Option<ClusterInfo>>;
    /// Creates the cluster, or updates the scale settings of one with the same VM size (a
    /// different VM size is `Permanent`: a cluster's VM size never changes in place). Quota and
    /// bad requests are `Permanent`; throttling and server errors `Transient`.
    async fn create_cluster(&self, spec: &ClusterSpec) -> PortResult<Provisioning>;
    /// Sets the cluster's minimum node count to 0, so its nodes go once idle (after a pipeline
    /// ended or failed). An absent cluster is fine.
    async fn scale_back(&self, name: &str) -> PortResult<()>;
    /// Follows a long-running operation returned by [`MlWorkspace::create_cluster`].
    async fn operation_status(&self, operation: &str) -> PortResult<OperationStatus>;
    /// Copies a staged folder into the workspace datastore under `path`; returns its URI.
    async fn upload_folder(&self, folder: &std::path::Path, path: &str) -> PortResult<String>;
    /// Registers (or finds) an environment version for a container image; returns its id.
    async fn register_environment(&self, name: &str, image: &str) -> PortResult<String>;
    /// Submits a Command job; a job with the same id already there is returned as it is.
    async fn submit_job(&self, job: &JobSubmission) -> PortResult<JobInfo>;
    /// The job, if it exists.
    async fn get_job(&self, id: &str) -> PortResult<Option<JobInfo>>;
    /// Asks the job to stop.
    async fn cancel_job(&self, id: &str) -> PortResult<()>;
    /// Copies the job's `model` output folder to `dest`, streamed, refusing (`Permanent`) an
    /// output larger than `max_bytes` in all.
    async fn download_job_output(
        &self,
        id: &str,
        dest: &std::path::Path,
        max_bytes: u64,
    ) -> PortResult<()>;
    /// Every logged value of the job's metric `key`, in the order logged (MLflow tracking).
    async fn metric_history(&self, id: &str, key: &str) -> PortResult<Vec<MetricPoint>>;
    /// Registers a model version from a folder; returns where it now lives.
    async fn register_model(&self, model: &ModelRegistration) -> PortResult<String>;
}

/// A command for the `ml-commands` topic, sent by a function itself because an output binding
/// can set neither Subject, MessageId nor ScheduledEnqueueTimeUtc.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutgoingCommand {
    /// Subject (the subscriptions filter on it).
    pub subject: String,
    /// MessageId (stable, so the broker drops a repeated send).
    pub message_id: String,
    /// JSON body.
    pub body: serde_json::Value,
    /// Deliver no earlier than this (unix ms).
    pub not_before_ms: Option<i64>,
}

/// Sends commands (now or scheduled) to the `ml-commands` topic.
#[async_trait]
pub trait CommandBus: Send + Sync {
    /// Sends one command; a duplicate MessageId is not an error.
    async fn send(&self, command: &OutgoingCommand) -> PortResult<()>;
}

/// Fetches an asset URL into a file, enforcing the host allow-list and a size cap.
#[async_trait]
pub trait AssetFetcher: Send + Sync {
    /// Downloads `url` to `dest`; returns the bytes written. A host not on the allow-list,
    /// a path outside the allowed local folders, or a body over `max_bytes` is `Permanent`.
    async fn fetch(&self, url: &str, dest: &std::path::Path, max_bytes: u64) -> PortResult<u64>;
}
