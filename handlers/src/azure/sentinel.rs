//! Microsoft Sentinel incidents over the ARM REST API (`Microsoft.SecurityInsights`,
//! api-version 2025-09-01). URLs are built from the incident id's validated segments, appended
//! one by one ([`IncidentId::path_segments`]); a `nextLink` is followed only on the same origin
//! and under the same workspace.

use super::rest::{Auth, RestClient};
use super::AdapterOptions;
use crate::ports::{IncidentStore, PortError, PortResult};
use crate::sentinel::{Entity, Incident, IncidentId, WorkspaceRef};
use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use url::Url;

/// The stable Microsoft.SecurityInsights API version used.
pub const SENTINEL_API_VERSION: &str = "2025-09-01";
/// Pages followed by one list call.
const MAX_PAGES: usize = 50;

/// Sentinel incidents through ARM, authorised with a token for `{endpoint}/.default`.
#[derive(Debug)]
pub struct SentinelRest {
    endpoint: Url,
    rest: RestClient,
}

#[derive(Deserialize)]
struct EntityList {
    #[serde(default)]
    entities: Vec<Entity>,
}

impl SentinelRest {
    /// An adapter for the ARM endpoint (`https://management.azure.com` in the public cloud).
    pub fn new(endpoint: &str, credential: Arc<dyn TokenCredential>) -> anyhow::Result<Self> {
        Self::with_options(endpoint, credential, AdapterOptions::json_api())
    }

    /// As [`SentinelRest::new`], with explicit timeouts and retry bounds (tests shorten the
    /// waits).
    pub fn with_options(
        endpoint: &str,
        credential: Arc<dyn TokenCredential>,
        options: AdapterOptions,
    ) -> anyhow::Result<Self> {
        let endpoint = Url::parse(endpoint)
            .map_err(|e| anyhow::anyhow!("SOCWIRE_SENTINEL_ENDPOINT {endpoint:?}: {e}"))?;
        if endpoint.scheme() != "https"
            && !matches!(endpoint.host_str(), Some("127.0.0.1" | "localhost"))
        {
            anyhow::bail!("SOCWIRE_SENTINEL_ENDPOINT must use https");
        }
        if endpoint.cannot_be_a_base() {
            anyhow::bail!("SOCWIRE_SENTINEL_ENDPOINT is not a base URL");
        }
        let scope = format!("{}/.default", endpoint.origin().ascii_serialization());
        Ok(Self {
            rest: RestClient::new(Auth::Bearer(credential, scope), options),
            endpoint,
        })
    }

    /// `{endpoint}/{segments…}?api-version=…`, each segment appended (and percent-encoded) on
    /// its own.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.endpoint.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.clear().extend(segments);
        }
        url.set_query(None);
        url.query_pairs_mut()
            .append_pair("api-version", SENTINEL_API_VERSION);
        url
    }

    fn incident_url(id: &IncidentId, this: &Self, tail: &[&str]) -> Url {
        let mut segments: Vec<&str> = id.path_segments().to_vec();
        segments.extend_from_slice(tail);
        this.url(&segments)
    }

    async fn call(&self, method: Method, url: &Url, body: Option<&Value>) -> PortResult<Value> {
        let what = format!("Sentinel {method} {}", url.path());
        self.rest.call(method, url, body, &[], &what).await
    }
}

/// True when `next` may be followed from a list of `first`: same origin, same path.
fn same_list(first: &Url, next: &Url) -> bool {
    first.origin() == next.origin() && first.path().eq_ignore_ascii_case(next.path())
}

#[async_trait]
impl IncidentStore for SentinelRest {
    async fn get(&self, id: &IncidentId) -> PortResult<Incident> {
        let v = self
            .call(Method::GET, &Self::incident_url(id, self, &[]), None)
            .await?;
        serde_json::from_value(v).map_err(|e| {
            PortError::Permanent(format!("incident {}: unexpected shape: {e}", id.name()))
        })
    }

    async fn entities(&self, id: &IncidentId) -> PortResult<Vec<Entity>> {
        let v = self
            .call(
                Method::POST,
                &Self::incident_url(id, self, &["entities"]),
                None,
            )
            .await?;
        let list: EntityList = serde_json::from_value(v).map_err(|e| {
            PortError::Permanent(format!("entities of {}: unexpected shape: {e}", id.name()))
        })?;
        Ok(list.entities)
    }

    async fn alerts(&self, id: &IncidentId) -> PortResult<Vec<Value>> {
        let v = self
            .call(
                Method::POST,
                &Self::incident_url(id, self, &["alerts"]),
                None,
            )
            .await?;
        match v.get("value") {
            Some(Value::Array(items)) => Ok(items.clone()),
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(_) => Err(PortError::Permanent(format!(
                "alerts of {}: unexpected shape",
                id.name()
            ))),
        }
    }

    async fn update(&self, id: &IncidentId, incident: &Incident) -> PortResult<()> {
        if incident.etag.is_none() {
            return Err(PortError::Permanent(
                "an update must carry the etag it read".into(),
            ));
        }
        let body = json!({ "etag": incident.etag, "properties": incident.properties });
        self.call(Method::PUT, &Self::incident_url(id, self, &[]), Some(&body))
            .await
            .map(|_| ())
    }

    async fn put_comment(
        &self,
        id: &IncidentId,
        comment_id: &str,
        message: &str,
    ) -> PortResult<()> {
        if !crate::sentinel::is_safe_segment(comment_id)
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
            &Self::incident_url(id, self, &["comments", comment_id]),
            Some(&body),
        )
        .await
        .map(|_| ())
    }

    async fn list_modified_since(
        &self,
        workspace: &WorkspaceRef,
        since: chrono::DateTime<chrono::Utc>,
        max: usize,
    ) -> PortResult<Vec<Incident>> {
        let probe = workspace
            .incident("00000000-0000-0000-0000-000000000000")
            .map_err(|e| PortError::Permanent(format!("workspace: {e}")))?;
        let mut segments = probe.provider_segments().to_vec();
        segments.push("incidents");
        let first = self.url(&segments);
        let mut url = first.clone();
        let stamp = since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        url.query_pairs_mut()
            .append_pair(
                "$filter",
                &format!("properties/lastModifiedTimeUtc ge {stamp}"),
            )
            .append_pair("$orderby", "properties/lastModifiedTimeUtc asc")
            .append_pair("$top", "200");
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let page = self.call(Method::GET, &url, None).await?;
            let items = page
                .get("value")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for item in items {
                match serde_json::from_value::<Incident>(item) {
                    Ok(i) => out.push(i),
                    Err(e) => tracing::warn!(
                        "incident list: an item of unexpected shape was skipped: {e}"
                    ),
                }
                if out.len() >= max {
                    return Ok(out);
                }
            }
            match page.get("nextLink").and_then(Value::as_str) {
                Some(next) => {
                    let next = Url::parse(next)
                        .map_err(|e| PortError::Permanent(format!("nextLink: {e}")))?;
                    if !same_list(&first, &next) {
                        return Err(PortError::Permanent(
                            "nextLink leaves the incident list's origin or path; not followed"
                                .into(),
                        ));
                    }
                    url = next;
                }
                None => return Ok(out),
            }
        }
        Ok(out)
    }
}
