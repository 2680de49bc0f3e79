//! Log Analytics Logs Ingestion API: rows into a custom table through a data collection rule
//! (DCR) stream. Calls stay under 1 MB; a 413 splits the call; 429/503 wait for Retry-After.

use super::{bearer, http_client, status_error, transport_error};
use crate::ports::{LogsIngestion, PortError, PortResult};
use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Logs Ingestion API version.
pub const LOGS_API_VERSION: &str = "2023-01-01";
/// Largest request body sent (the API's limit is 1 MB).
pub const MAX_CALL_BYTES: usize = 1_000_000;
/// Throttled calls retried before giving up (the message is then retried by the host).
const THROTTLE_RETRIES: u32 = 5;
/// Longest Retry-After honoured in-process.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The Logs Ingestion client for one DCR.
#[derive(Debug)]
pub struct LogsIngestionRest {
    endpoint: String,
    dcr_immutable_id: String,
    credential: Arc<dyn TokenCredential>,
    http: reqwest::Client,
}

impl LogsIngestionRest {
    /// A client for the data collection endpoint (or DCR ingestion endpoint) and DCR id.
    pub fn new(
        endpoint: &str,
        dcr_immutable_id: &str,
        credential: Arc<dyn TokenCredential>,
    ) -> anyhow::Result<Self> {
        let url = url::Url::parse(endpoint)
            .map_err(|e| anyhow::anyhow!("SOCWIRE_LOGS_ENDPOINT {endpoint:?}: {e}"))?;
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
            http: http_client(),
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
            let mut calls = 0;
            for attempt in 0..=THROTTLE_RETRIES {
                let token = bearer(
                    self.credential.as_ref(),
                    "https://monitor.azure.com/.default",
                )
                .await?;
                let response = self
                    .http
                    .post(&url)
                    .header("authorization", token)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .map_err(|e| transport_error("Logs Ingestion", e))?;
                calls += 1;
                let status = response.status();
                if status.is_success() {
                    return Ok(calls);
                }
                if status.as_u16() == 413 && rows.len() > 1 {
                    let mut left = rows;
                    let right = left.split_off(left.len() / 2);
                    return Ok(calls
                        + self.post(stream, left).await?
                        + self.post(stream, right).await?);
                }
                if matches!(status.as_u16(), 429 | 503) && attempt < THROTTLE_RETRIES {
                    let wait = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map_or(Duration::from_secs(1 << attempt), Duration::from_secs)
                        .min(MAX_RETRY_AFTER);
                    tracing::warn!(
                        status = status.as_u16(),
                        wait_s = wait.as_secs(),
                        "Logs Ingestion throttled; waiting"
                    );
                    tokio::time::sleep(wait).await;
                    continue;
                }
                let text = response.text().await.unwrap_or_default();
                return Err(status_error(
                    &format!("Logs Ingestion to {stream}"),
                    status,
                    &text,
                ));
            }
            Err(PortError::Transient(format!(
                "Logs Ingestion to {stream}: still throttled after {THROTTLE_RETRIES} retries"
            )))
        })
    }
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
