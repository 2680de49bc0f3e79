//! The Log Analytics query API (`POST {endpoint}/v1/workspaces/{id}/query`; answers as in Azure Monitor's "Log Analytics
//! API response format", partial errors included)
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

/// One row of an answer: column name to value.
pub type Row = Map<String, Value>;

/// Rows of the first table of a query answer, as maps of column name to value, and the
/// warnings of a partial answer. The query API answers 200 with the rows it has plus an
/// `error` object when part of a query failed (a table a fuzzy union names does not exist in
/// the workspace): those rows are kept and the error becomes a warning. An `error` with no
/// table is a failure.
pub fn rows_of(answer: &Value) -> PortResult<(Vec<Row>, Vec<String>)> {
    let error = answer.get("error").filter(|e| !e.is_null()).map(|err| {
        let mut text = err
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("query error")
            .to_string();
        let details: Vec<&str> = err
            .get("details")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|d| d.get("message").and_then(Value::as_str))
            .take(3)
            .collect();
        if !details.is_empty() {
            text = format!("{text} ({})", details.join("; "));
        }
        socwire_common::text::for_log(&text, 300)
    });
    let Some(table) = answer.get("tables").and_then(|t| t.get(0)) else {
        return match error {
            Some(e) => Err(PortError::Permanent(format!("Log Analytics: {e}"))),
            None => Ok((Vec::new(), Vec::new())),
        };
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
    let rows = rows
        .into_iter()
        .filter_map(|r| match r {
            Value::Array(cells) => Some(columns.iter().cloned().zip(cells).collect()),
            _ => None,
        })
        .collect();
    Ok((
        rows,
        error
            .map(|e| vec![format!("partial answer: {e}")])
            .unwrap_or_default(),
    ))
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
        let (mut rows, warnings) = rows_of(&answer)?;
        let truncated = rows.len() > crate::queries::MAX_ROWS;
        rows.truncate(crate::queries::MAX_ROWS);
        Ok(Answer {
            query,
            rows,
            truncated,
            warnings,
        })
    }
}
