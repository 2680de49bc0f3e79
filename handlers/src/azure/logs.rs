//! Log Analytics Logs Ingestion API: rows into a custom table through a data collection rule
//! (DCR) stream. Calls stay under 1 MB; a 413 splits the call; 429/5xx, timeouts and cut
//! connections are retried with the same body (Retry-After honoured, capped), a 401 once with a
//! fresh token.
//!
//! The API has no server-side de-duplication, so a retried call whose first attempt did land
//! writes its rows twice. Every retry therefore sends the very same bytes (same rows, same
//! `RowKey` idempotency column, same `x-ms-client-request-id`), and readers de-duplicate on it
//! (`RowKey` = SubgraphId; the workbook's `arg_max(TimeGenerated, *) by SubgraphId`).

use super::{bearer, send_retrying, status_error, AdapterOptions};
use crate::ports::{LogsIngestion, PortError, PortResult};
use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use serde_json::Value;
use std::sync::Arc;

/// Logs Ingestion API version.
pub const LOGS_API_VERSION: &str = "2023-01-01";
/// Largest request body sent (the API's limit is 1 MB).
pub const MAX_CALL_BYTES: usize = 1_000_000;

/// The Logs Ingestion client for one DCR.
#[derive(Debug)]
pub struct LogsIngestionRest {
    endpoint: String,
    dcr_immutable_id: String,
    credential: Arc<dyn TokenCredential>,
    options: AdapterOptions,
    http: reqwest::Client,
}

impl LogsIngestionRest {
    /// A client for the data collection endpoint (or DCR ingestion endpoint) and DCR id.
    pub fn new(
        endpoint: &str,
        dcr_immutable_id: &str,
        credential: Arc<dyn TokenCredential>,
    ) -> anyhow::Result<Self> {
        Self::with_options(
            endpoint,
            dcr_immutable_id,
            credential,
            AdapterOptions::default(),
        )
    }

    /// The same with explicit timeouts and retry bounds.
    pub fn with_options(
        endpoint: &str,
        dcr_immutable_id: &str,
        credential: Arc<dyn TokenCredential>,
        options: AdapterOptions,
    ) -> anyhow::Result<Self> {
        let url = url::Url::parse(endpoint).map_err(|e| {
            let shown = socwire_common::text::redact_secrets(endpoint);
            anyhow::anyhow!("SOCWIRE_LOGS_ENDPOINT {shown:?}: {e}")
        })?;
        if url.scheme() != "https" && !matches!(url.host_str(), Some("127.0.0.1" | "localhost")) {
            anyhow::bail!("SOCWIRE_LOGS_ENDPOINT must use https");
        }
        if dcr_immutable_id.is_empty()
            || !dcr_immutable_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            anyhow::bail!(
                "SOCWIRE_LOGS_DCR_ID {dcr_immutable_id:?} is not a DCR immutable id (dcr-…)"
            );
        }
        Ok(Self {
            endpoint: endpoint.trim_end_matches('/').into(),
            dcr_immutable_id: dcr_immutable_id.into(),
            credential,
            http: options.client(),
            options,
        })
    }

    /// Splits rows into JSON arrays of at most [`MAX_CALL_BYTES`].
    fn chunks(rows: &[Value]) -> PortResult<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        let mut current: Vec<u8> = b"[".to_vec();
        for row in rows {
            let text = serde_json::to_vec(row).map_err(|e| PortError::Permanent(e.to_string()))?;
            if text.len() + 2 > MAX_CALL_BYTES {
                return Err(PortError::Permanent(format!(
                    "one row is {} bytes; the Logs Ingestion API takes 1 MB per call",
                    text.len()
                )));
            }
            if current.len() + text.len() + 2 > MAX_CALL_BYTES {
                current.push(b']');
                out.push(std::mem::replace(&mut current, b"[".to_vec()));
            }
            if current.len() > 1 {
                current.push(b',');
            }
            current.extend_from_slice(&text);
        }
        if current.len() > 1 {
            current.push(b']');
            out.push(current);
        }
        Ok(out)
    }

    /// Posts one array; on 413 posts each half. Returns calls made.
    fn post<'a>(
        &'a self,
        stream: &'a str,
        rows: Vec<Value>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = PortResult<usize>> + Send + 'a>> {
        Box::pin(async move {
            let url = format!(
                "{}/dataCollectionRules/{}/streams/{}?api-version={LOGS_API_VERSION}",
                self.endpoint,
                self.dcr_immutable_id,
                url::form_urlencoded::byte_serialize(stream.as_bytes()).collect::<String>()
            );
            let body =
                serde_json::to_vec(&rows).map_err(|e| PortError::Permanent(e.to_string()))?;
            let request_id = request_id(&body);
            let what = format!("Logs Ingestion to {stream}");
            let reply = send_retrying(&self.options, &what, true, |_| async {
                let token = bearer(
                    self.credential.as_ref(),
                    "https://monitor.azure.com/.default",
                )
                .await?;
                Ok(self
                    .http
                    .post(&url)
                    .header("authorization", token)
                    .header("content-type", "application/json")
                    .header("x-ms-client-request-id", &request_id)
                    .body(body.clone()))
            })
            .await?;
            let calls = reply.attempts as usize;
            if reply.status.is_success() {
                return Ok(calls);
            }
            if reply.status.as_u16() == 413 && rows.len() > 1 {
                let mut left = rows;
                let right = left.split_off(left.len() / 2);
                return Ok(calls
                    + self.post(stream, left).await?
                    + self.post(stream, right).await?);
            }
            Err(status_error(&what, reply.status, &reply.text()))
        })
    }
}

/// A request id that is the same for the same bytes: every retry of a call carries it.
fn request_id(body: &[u8]) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(body);
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

#[async_trait]
impl LogsIngestion for LogsIngestionRest {
    async fn upload(&self, stream: &str, rows: &[Value]) -> PortResult<usize> {
        let mut calls = 0;
        for chunk in Self::chunks(rows)? {
            let rows: Vec<Value> =
                serde_json::from_slice(&chunk).map_err(|e| PortError::Permanent(e.to_string()))?;
            calls += self.post(stream, rows).await?;
        }
        Ok(calls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_stay_under_one_megabyte_and_keep_every_row() {
        let rows: Vec<Value> = (0..3000)
            .map(|i| serde_json::json!({ "RowKey": i, "Pad": "x".repeat(900) }))
            .collect();
        let chunks = LogsIngestionRest::chunks(&rows).unwrap();
        assert!(chunks.len() >= 3);
        let mut total = 0;
        for c in &chunks {
            assert!(c.len() <= MAX_CALL_BYTES);
            total += serde_json::from_slice::<Vec<Value>>(c).unwrap().len();
        }
        assert_eq!(total, 3000);
        let huge = vec![serde_json::json!({ "Pad": "x".repeat(MAX_CALL_BYTES) })];
        assert!(LogsIngestionRest::chunks(&huge).is_err());
    }
}
