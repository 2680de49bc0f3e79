//! Microsoft Sentinel incidents over the ARM REST API (`Microsoft.SecurityInsights`).

use super::{bearer, http_client, status_error, transport_error};
use crate::ports::{IncidentStore, PortError, PortResult};
use crate::sentinel::{Entity, Incident, IncidentId, Severity};
use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use url::Url;

/// The stable Microsoft.SecurityInsights API version used.
pub const SENTINEL_API_VERSION: &str = "2025-09-01";

/// Times a severity update re-reads the incident after an etag conflict.
const CONFLICT_RETRIES: usize = 5;

/// Sentinel incidents through ARM, authorised with a token for `{endpoint}/.default`.
#[derive(Debug)]
pub struct SentinelRest {
    endpoint: Url,
    scope: String,
    credential: Arc<dyn TokenCredential>,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct EntityList {
    #[serde(default)]
    entities: Vec<Entity>,
}

impl SentinelRest {
    /// An adapter for the ARM endpoint (`https://management.azure.com` in the public cloud).
    pub fn new(endpoint: &str, credential: Arc<dyn TokenCredential>) -> anyhow::Result<Self> {
        let endpoint = Url::parse(endpoint)
            .map_err(|e| anyhow::anyhow!("SOCWIRE_SENTINEL_ENDPOINT {endpoint:?}: {e}"))?;
        if endpoint.scheme() != "https"
            && !matches!(endpoint.host_str(), Some("127.0.0.1" | "localhost"))
        {
            anyhow::bail!("SOCWIRE_SENTINEL_ENDPOINT must use https");
        }
        let scope = format!("{}/.default", endpoint.as_str().trim_end_matches('/'));
        Ok(Self {
            endpoint,
            scope,
            credential,
            http: http_client(),
        })
    }

    fn url(&self, path: &str) -> Url {
        let mut url = self.endpoint.clone();
        url.set_path(path);
        url.set_query(Some(&format!("api-version={SENTINEL_API_VERSION}")));
        url
    }

    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> PortResult<Value> {
        let token = bearer(self.credential.as_ref(), &self.scope).await?;
        let mut request = self
            .http
            .request(method.clone(), self.url(path))
            .header("authorization", token);
        request = match body {
            Some(b) => request.json(b),
            None if method == Method::POST => request.header("content-length", "0"),
            None => request,
        };
        let what = format!("Sentinel {method} {path}");
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(&what, e))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| transport_error(&what, e))?;
        if !status.is_success() {
            return Err(status_error(&what, status, &text));
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text)
            .map_err(|e| PortError::Permanent(format!("{what}: answer is not JSON: {e}")))
    }
}

#[async_trait]
impl IncidentStore for SentinelRest {
    async fn get(&self, id: &IncidentId) -> PortResult<Incident> {
        let v = self.call(Method::GET, id.arm_id(), None).await?;
        serde_json::from_value(v).map_err(|e| {
            PortError::Permanent(format!("incident {}: unexpected shape: {e}", id.name()))
        })
    }

    async fn entities(&self, id: &IncidentId) -> PortResult<Vec<Entity>> {
        let v = self
            .call(Method::POST, &format!("{}/entities", id.arm_id()), None)
            .await?;
        let list: EntityList = serde_json::from_value(v).map_err(|e| {
            PortError::Permanent(format!("entities of {}: unexpected shape: {e}", id.name()))
        })?;
        Ok(list.entities)
    }

    async fn set_severity(&self, id: &IncidentId, severity: Severity) -> PortResult<()> {
        for _ in 0..CONFLICT_RETRIES {
            let mut incident = self.get(id).await?;
            if incident.properties.severity == severity {
                return Ok(());
            }
            incident.properties.severity = severity;
            let body = json!({ "etag": incident.etag, "properties": incident.properties });
            match self.call(Method::PUT, id.arm_id(), Some(&body)).await {
                Ok(_) => return Ok(()),
                Err(PortError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(PortError::Conflict(format!(
            "incident {} kept changing; severity not set after {CONFLICT_RETRIES} tries",
            id.name()
        )))
    }

    async fn put_comment(
        &self,
        id: &IncidentId,
        comment_id: &str,
        message: &str,
    ) -> PortResult<()> {
        if comment_id.is_empty()
            || !comment_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(PortError::Permanent(format!(
                "comment id {comment_id:?} is not a GUID-like name"
            )));
        }
        let body = json!({ "properties": { "message": message } });
        self.call(
            Method::PUT,
            &format!("{}/comments/{comment_id}", id.arm_id()),
            Some(&body),
        )
        .await
        .map(|_| ())
    }
}
