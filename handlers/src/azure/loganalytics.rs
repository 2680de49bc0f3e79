//! The Log Analytics query API (`POST {endpoint}/v1/workspaces/{id}/query`, SENTINEL.md §3)
//! answering the workspace's typed questions, rendered as KQL by [`crate::queries`].

use super::rest::{Auth, RestClient};
use super::AdapterOptions;
use crate::ports::{Answer, PortError, PortResult, Question, WorkspaceQueries};
use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use reqwest::Method;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Typed questions through the Log Analytics query API.
#[derive(Debug)]
pub struct LogAnalyticsQuery {
    url: url::Url,
    rest: RestClient,
}

impl LogAnalyticsQuery {
    /// A client for workspace (customer id) `workspace_id` at `endpoint`
    /// (`https://api.loganalytics.io`).
    pub fn new(
        endpoint: &str,
        workspace_id: &str,
        credential: Arc<dyn TokenCredential>,
    ) -> anyhow::Result<Self> {
        Self::with_options(
            endpoint,
            workspace_id,
            credential,
            AdapterOptions::json_api(),
        )
    }

    /// As [`LogAnalyticsQuery::new`] with explicit timeouts and retry bounds.
    pub fn with_options(
        endpoint: &str,
        workspace_id: &str,
        credential: Arc<dyn TokenCredential>,
        options: AdapterOptions,
    ) -> anyhow::Result<Self> {
        let mut url = url::Url::parse(endpoint)
            .map_err(|e| anyhow::anyhow!("SOCWIRE_LA_ENDPOINT {endpoint:?}: {e}"))?;
        if url.scheme() != "https" && !matches!(url.host_str(), Some("127.0.0.1" | "localhost")) {
            anyhow::bail!("SOCWIRE_LA_ENDPOINT must use https");
        }
        if uuid::Uuid::parse_str(workspace_id).is_err() {
            anyhow::bail!("SOCWIRE_LA_WORKSPACE_ID must be the workspace (customer) id, a GUID");
        }
        let scope = format!("{}/.default", url.origin().ascii_serialization());
        url.path_segments_mut()
            .map_err(|_| anyhow::anyhow!("SOCWIRE_LA_ENDPOINT is not a base URL"))?
            .clear()
            .extend(["v1", "workspaces", workspace_id, "query"]);
        Ok(Self {
            url,
            rest: RestClient::new(Auth::Bearer(credential, scope), options),
        })
    }
}

/// Rows of the first table of a query answer, as maps of column name to value.
pub fn rows_of(answer: &Value) -> PortResult<Vec<Map<String, Value>>> {
    if let Some(err) = answer.get("error").filter(|e| !e.is_null()) {
        let msg = err
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("query error");
        return Err(PortError::Permanent(format!(
            "Log Analytics: {}",
            socwire_common::text::for_log(msg, 300)
        )));
    }
    let Some(table) = answer.get("tables").and_then(|t| t.get(0)) else {
        return Ok(Vec::new());
    };
    let columns: Vec<String> = table
        .get("columns")
        .and_then(Value::as_array)
        .map(|c| {
            c.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let rows = table
        .get("rows")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    Ok(rows
        .into_iter()
        .filter_map(|r| match r {
            Value::Array(cells) => Some(columns.iter().cloned().zip(cells).collect()),
            _ => None,
        })
        .collect())
}

#[async_trait]
impl WorkspaceQueries for LogAnalyticsQuery {
    async fn ask(&self, question: &Question) -> PortResult<Answer> {
        let query = crate::queries::render(question);
        let days = match question {
            Question::RecentAlertsForHost { days, .. }
            | Question::SigninsForAccount { days, .. }
            | Question::FirstSeenIp { days, .. }
            | Question::FirstSeenDomain { days, .. }
            | Question::ProcessesOnHost { days, .. } => *days,
            Question::ThreatIndicator { .. } => 90,
        };
        let body = json!({ "query": query, "timespan": format!("P{days}D") });
        let what = format!("Log Analytics query {}", question.name());
        let answer = self
            .rest
            .call(
                Method::POST,
                &self.url,
                Some(&body),
                &[("prefer", "wait=60")],
                &what,
            )
            .await?;
        let mut rows = rows_of(&answer)?;
        let truncated = rows.len() > crate::queries::MAX_ROWS;
        rows.truncate(crate::queries::MAX_ROWS);
        Ok(Answer {
            query,
            rows,
            truncated,
        })
    }
}
