//! Narrow interfaces to every outside system. Functions depend only on these traits; each has a
//! local adapter (SQLite, files) in `crate::local` and an Azure adapter in `crate::azure`.

use crate::sentinel::{Entity, Incident, IncidentId, Indicator, Severity};
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
}

impl PortError {
    /// True when a later retry may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, PortError::Transient(_) | PortError::Conflict(_))
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
    /// Sets the severity with a GET-modify-PUT that sends the etag back; retries on conflict.
    async fn set_severity(&self, id: &IncidentId, severity: Severity) -> PortResult<()>;
    /// `IncidentComments_CreateOrUpdate` with a caller-chosen comment id: putting the same id
    /// twice leaves one comment, which is what makes redelivery harmless.
    async fn put_comment(&self, id: &IncidentId, comment_id: &str, message: &str)
        -> PortResult<()>;
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
    /// Findings for one indicator; empty when no provider knows it.
    async fn lookup(&self, indicator: &Indicator) -> PortResult<Vec<TiFinding>>;
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
