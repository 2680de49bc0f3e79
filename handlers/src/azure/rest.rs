//! One JSON-over-HTTPS client for the ARM, Log Analytics and threat-intelligence adapters:
//! bounded retries on 408/429/5xx and transport failures (Retry-After honoured up to a bound,
//! exponential backoff otherwise), a fresh token after a 401, a client timeout, a cap on the
//! answer's size, and every error text passed through `redact_secrets`.

use super::status_error;
use crate::ports::{PortError, PortResult};
use azure_core::credentials::TokenCredential;
use reqwest::Method;
use serde_json::Value;
use socwire_common::text::redact_secrets;
use std::sync::Arc;
use std::time::Duration;

/// How a [`RestClient`] retries and bounds calls.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per call, the first included.
    pub attempts: u32,
    /// First backoff when the server names no Retry-After; doubles per attempt.
    pub base_backoff: Duration,
    /// Longest wait honoured in-process; a longer Retry-After fails the call at once as
    /// transient (the host retries the message later).
    pub max_wait: Duration,
    /// Client timeout per attempt.
    pub timeout: Duration,
    /// Largest answer read, bytes.
    pub max_body: usize,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 4,
            base_backoff: Duration::from_millis(500),
            max_wait: Duration::from_secs(30),
            timeout: Duration::from_secs(30),
            max_body: 16 * 1024 * 1024,
        }
    }
}

/// How requests are authorised.
#[derive(Clone)]
pub enum Auth {
    /// A bearer token from a credential for a scope.
    Bearer(Arc<dyn TokenCredential>, String),
    /// A fixed header (an API key); its value is never logged.
    Header(&'static str, String),
    /// Nothing.
    None,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Bearer(_, scope) => write!(f, "Bearer({scope})"),
            Auth::Header(name, _) => write!(f, "Header({name}: REDACTED)"),
            Auth::None => f.write_str("None"),
        }
    }
}

/// A JSON client with retries.
#[derive(Debug)]
pub struct RestClient {
    http: reqwest::Client,
    auth: Auth,
    policy: RetryPolicy,
    token: tokio::sync::Mutex<Option<(String, azure_core::time::OffsetDateTime)>>,
}

/// The wait a 429/503 answer asks for: `Retry-After` in seconds or as an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    Some(
        (when.with_timezone(&chrono::Utc) - chrono::Utc::now())
            .to_std()
            .unwrap_or_default(),
    )
}

impl RestClient {
    /// A client with `auth` and `policy`.
    pub fn new(auth: Auth, policy: RetryPolicy) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(policy.timeout.min(Duration::from_secs(10)))
            .timeout(policy.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            http,
            auth,
            policy,
            token: tokio::sync::Mutex::new(None),
        }
    }

    async fn authorization(&self, refresh: bool) -> PortResult<Option<(&'static str, String)>> {
        match &self.auth {
            Auth::None => Ok(None),
            Auth::Header(name, value) => Ok(Some((name, value.clone()))),
            Auth::Bearer(credential, scope) => {
                let mut cached = self.token.lock().await;
                let soon = azure_core::time::OffsetDateTime::now_utc()
                    + azure_core::time::Duration::minutes(2);
                if let Some((token, expires)) = cached.as_ref() {
                    if !refresh && *expires > soon {
                        return Ok(Some(("authorization", format!("Bearer {token}"))));
                    }
                }
                let t = credential
                    .get_token(&[scope.as_str()], None)
                    .await
                    .map_err(|e| {
                        PortError::Transient(redact_secrets(&format!(
                            "getting a token for {scope}: {e}"
                        )))
                    })?;
                let token = t.token.secret().to_string();
                *cached = Some((token.clone(), t.expires_on));
                Ok(Some(("authorization", format!("Bearer {token}"))))
            }
        }
    }

    async fn read_body(&self, mut response: reqwest::Response, what: &str) -> PortResult<String> {
        let mut bytes = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if bytes.len() + chunk.len() > self.policy.max_body {
                        return Err(PortError::Permanent(format!(
                            "{what}: answer is over {} bytes; not read",
                            self.policy.max_body
                        )));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(PortError::Transient(redact_secrets(&format!(
                        "{what}: answer cut short after {} bytes: {e}",
                        bytes.len()
                    ))))
                }
            }
        }
        String::from_utf8(bytes)
            .map_err(|_| PortError::Permanent(format!("{what}: answer is not UTF-8")))
    }

    /// Sends `method url` with an optional JSON body and extra headers; returns the JSON
    /// answer (`Null` for an empty one). `what` names the call in errors (it must hold no
    /// secret; URLs in it are redacted anyway).
    pub async fn call(
        &self,
        method: Method,
        url: &url::Url,
        body: Option<&Value>,
        headers: &[(&str, &str)],
        what: &str,
    ) -> PortResult<Value> {
        let what = redact_secrets(what);
        let mut refreshed = false;
        let mut force_refresh = false;
        let mut last: Option<PortError> = None;
        let mut backoff = self.policy.base_backoff;
        for attempt in 1..=self.policy.attempts.max(1) {
            let auth = self
                .authorization(std::mem::take(&mut force_refresh))
                .await?;
            let mut request = self.http.request(method.clone(), url.clone());
            if let Some((name, value)) = auth {
                request = request.header(name, value);
            }
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            request = match body {
                Some(b) => request.json(b),
                None if method == Method::POST || method == Method::PUT => {
                    request.header("content-length", "0")
                }
                None => request,
            };
            let wait;
            match request.send().await {
                Err(e) => {
                    let kind = if e.is_timeout() {
                        "timed out"
                    } else {
                        "no answer"
                    };
                    last = Some(PortError::Transient(redact_secrets(&format!(
                        "{what}: {kind}: {e}"
                    ))));
                    wait = backoff;
                }
                Ok(response) => {
                    let status = response.status();
                    if status.as_u16() == 401 && !refreshed && matches!(self.auth, Auth::Bearer(..))
                    {
                        refreshed = true;
                        force_refresh = true;
                        last = Some(PortError::Transient(format!("{what}: HTTP 401")));
                        continue;
                    }
                    let retryable = matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504);
                    let asked = retry_after(response.headers());
                    let text = match self.read_body(response, &what).await {
                        Ok(t) => t,
                        Err(e @ PortError::Transient(_)) => {
                            last = Some(e);
                            tokio::time::sleep(backoff.min(self.policy.max_wait)).await;
                            backoff *= 2;
                            continue;
                        }
                        Err(e) => return Err(e),
                    };
                    if status.is_success() {
                        if text.trim().is_empty() {
                            return Ok(Value::Null);
                        }
                        match serde_json::from_str(&text) {
                            Ok(v) => return Ok(v),
                            Err(e) => {
                                last = Some(PortError::Transient(format!(
                                    "{what}: answer is not complete JSON ({e})"
                                )));
                                wait = backoff;
                            }
                        }
                    } else if retryable {
                        let err = status_error(&what, status, &redact_secrets(&text));
                        if let Some(asked) = asked {
                            if asked > self.policy.max_wait {
                                return Err(PortError::Transient(format!(
                                    "{err}; Retry-After {}s is over the {}s bound: left to a later delivery",
                                    asked.as_secs(),
                                    self.policy.max_wait.as_secs()
                                )));
                            }
                        }
                        wait = asked.unwrap_or(backoff);
                        last = Some(err);
                    } else {
                        let mut err = status_error(&what, status, &redact_secrets(&text));
                        if status.as_u16() == 401 {
                            err = PortError::Permanent(format!("{err} (after a fresh token)"));
                        }
                        return Err(err);
                    }
                }
            }
            if attempt < self.policy.attempts {
                tokio::time::sleep(wait.min(self.policy.max_wait)).await;
                backoff = (backoff * 2).min(self.policy.max_wait);
            }
        }
        let last = last.unwrap_or_else(|| PortError::Transient(format!("{what}: failed")));
        Err(match last {
            PortError::Transient(t) => {
                PortError::Transient(format!("{t} (after {} attempts)", self.policy.attempts))
            }
            other => other,
        })
    }
}
