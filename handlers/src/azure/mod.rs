//! Azure adapters for the ports: Sentinel over ARM REST, Blob Storage for the ledger, reports
//! and state, and Storage queues through `azure_storage_queue`. Managed identity
//! (`azure_identity`) is the default credential; a storage connection string with an account
//! key (Azurite's `UseDevelopmentStorage=true`, for instance) signs requests with a SAS instead.

mod assets;
mod blob;
mod logs;
mod ml;
mod queue;
mod sentinel;
mod servicebus;
mod storage;

pub use assets::{host_allowed, AllowListedFetcher};
pub use blob::{BlobLedger, BlobReportStore, BlobStateStore};
pub use logs::{LogsIngestionRest, LOGS_API_VERSION, MAX_CALL_BYTES};
pub use ml::{AzureMlRest, ML_API_VERSION};
pub use queue::{AzureQueue, ReceivedQueueMessage};
pub use sentinel::{SentinelRest, SENTINEL_API_VERSION};
pub use servicebus::ServiceBusRest;
pub use storage::StorageAccount;

use crate::ports::PortError;
use azure_core::credentials::TokenCredential;
use std::sync::Arc;

/// The credential Azure adapters use by default: the Function App's managed identity
/// (`AZURE_CLIENT_ID` selects a user-assigned one).
pub fn default_credential() -> anyhow::Result<Arc<dyn TokenCredential>> {
    let options = std::env::var("AZURE_CLIENT_ID")
        .ok()
        .filter(|v| !v.is_empty())
        .map(|id| azure_identity::ManagedIdentityCredentialOptions {
            user_assigned_id: Some(azure_identity::UserAssignedId::ClientId(id)),
            ..Default::default()
        });
    Ok(azure_identity::ManagedIdentityCredential::new(options)?)
}

/// Gets a bearer token for `scope`.
pub(crate) async fn bearer(
    credential: &dyn TokenCredential,
    scope: &str,
) -> Result<String, PortError> {
    let token = credential
        .get_token(&[scope], None)
        .await
        .map_err(|e| PortError::Transient(format!("getting a token for {scope}: {e}")))?;
    Ok(format!("Bearer {}", token.token.secret()))
}

/// Maps an HTTP failure to a port error: 404 not found, 409/412 conflict, 408/429/5xx
/// transient, anything else permanent. The body is cut short: it may echo input.
pub(crate) fn status_error(what: &str, status: reqwest::StatusCode, body: &str) -> PortError {
    let body = socwire_common::text::for_log(body, 300);
    let text = format!("{what}: HTTP {status}: {body}");
    match status.as_u16() {
        404 => PortError::NotFound(text),
        409 | 412 => PortError::Conflict(text),
        408 | 429 | 500..=599 => PortError::Transient(text),
        _ => PortError::Permanent(text),
    }
}

/// Maps a transport failure (no HTTP answer) to a transient port error.
pub(crate) fn transport_error(what: &str, e: reqwest::Error) -> PortError {
    PortError::Transient(format!("{what}: {e}"))
}

/// One HTTP client for every adapter, with timeouts.
pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap_or_default()
}
