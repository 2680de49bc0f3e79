//! Azure adapters for the ports: Sentinel over ARM REST, Blob Storage for the ledger, reports
//! and state, and Storage queues through `azure_storage_queue`. Managed identity
//! (`azure_identity`) is the default credential; a storage connection string with an account
//! key (Azurite's `UseDevelopmentStorage=true`, for instance) signs requests with a SAS instead.

mod assets;
mod blob;
mod eventhubs;
mod loganalytics;
mod logs;
mod ml;
mod ml_identity;
mod queue;
mod rest;
mod sas;
mod sentinel;
mod servicebus;
mod storage;

pub use assets::{host_allowed, AllowListedFetcher};
pub use blob::{BlobLedger, BlobReportStore, BlobStateStore};
pub use eventhubs::{EventHubsRest, MAX_BATCH_BYTES};
pub use loganalytics::LogAnalyticsQuery;
pub use logs::{LogsIngestionRest, LOGS_API_VERSION, MAX_CALL_BYTES};
pub use ml::{AzureMlRest, BLOCK_BYTES as ML_BLOCK_BYTES, ML_API_VERSION};
pub use ml_identity::{job_credential, AzureMlIdentity};
pub use queue::{AzureQueue, ReceivedQueueMessage};
pub use rest::{Auth, RestClient};
pub use sas::{user_delegation_sas, LinkSigner, UserDelegationKey, UD_SAS_VERSION};
pub use sentinel::{SentinelRest, SENTINEL_API_VERSION};
pub use servicebus::ServiceBusRest;
pub use storage::{StorageAccount, StorageAuth};

use crate::ports::PortError;
use azure_core::credentials::TokenCredential;
use socwire_common::text::{for_log, redact_secrets};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Timeouts and retry bounds of one Azure adapter, given to its constructor (never global).
/// Every Azure REST call — storage, Logs Ingestion, ARM, Log Analytics, threat intelligence —
/// goes through the one retry loop these bound.
///
/// A call is retried (at most `max_retries` times) when the service answers 408, 429, 500,
/// 502, 503 or 504, or when no answer came (connection refused or reset, timeout, a body cut
/// short); any other 4xx is final, except that a 401 gets one more attempt with a fresh
/// credential on top of the retries. The wait before retry `n` (0-based) is the service's
/// `Retry-After` when it sent one, else `base_delay × 2ⁿ` with jitter (a random point in its
/// upper half); either way at most `max_delay`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterOptions {
    /// Per-attempt limit: connect, send, and read the full response body.
    pub timeout: Duration,
    /// Limit on establishing the connection.
    pub connect_timeout: Duration,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// First back-off when the service gave no `Retry-After`.
    pub base_delay: Duration,
    /// Longest wait before any retry, `Retry-After` included.
    pub max_delay: Duration,
    /// Largest answer body read, in bytes; a longer one fails the call as permanent.
    pub max_body: usize,
    /// When true, a `Retry-After` longer than `max_delay` fails the call at once as transient
    /// (a later delivery retries it) instead of waiting `max_delay` and retrying early.
    pub defer_long_waits: bool,
}

impl Default for AdapterOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            max_retries: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_body: 256 * 1024 * 1024,
            defer_long_waits: false,
        }
    }
}

impl AdapterOptions {
    /// The bounds for JSON APIs called while a message is handled (ARM, Log Analytics):
    /// 30 s per attempt, 3 retries from 500 ms, answers up to 16 MiB, and a `Retry-After` over
    /// 30 s left to a later delivery.
    pub fn json_api() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_retries: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_body: 16 * 1024 * 1024,
            defer_long_waits: true,
        }
    }

    /// An HTTP client with these timeouts that follows no redirect (a token or key is never
    /// sent on to another host).
    pub(crate) fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .connect_timeout(self.connect_timeout.min(self.timeout))
            .timeout(self.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default()
    }

    /// Logs that `what` failed with `error` and waits [`AdapterOptions::delay`] before retry
    /// `retry` (0-based).
    pub(crate) async fn back_off(
        &self,
        what: &str,
        retry: u32,
        retry_after: Option<Duration>,
        error: &PortError,
    ) {
        let wait = self.delay(retry, retry_after);
        tracing::warn!(
            retry = retry + 1,
            wait_ms = wait.as_millis() as u64,
            error = %error,
            "{what}: retrying"
        );
        tokio::time::sleep(wait).await;
    }

    /// How long to wait before retry `retry` (0-based).
    pub(crate) fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(asked) => asked.min(self.max_delay),
            None => {
                let full = self
                    .base_delay
                    .saturating_mul(1 << retry.min(16))
                    .min(self.max_delay);
                // Jitter: callers that failed together do not all retry together.
                full / 2 + full.mul_f64(fastrand::f64() / 2.0)
            }
        }
    }
}

/// The wait a throttled answer asks for: `x-ms-retry-after-ms`, `retry-after-ms`, or
/// `Retry-After` in seconds or as an HTTP date.
pub(crate) fn retry_after(get: impl Fn(&str) -> Option<String>) -> Option<Duration> {
    for name in ["x-ms-retry-after-ms", "retry-after-ms"] {
        if let Some(ms) = get(name).and_then(|v| v.trim().parse::<u64>().ok()) {
            return Some(Duration::from_millis(ms));
        }
    }
    let value = get("retry-after")?;
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or_default())
}

/// The credential Azure adapters use by default: the Function App's managed identity
/// (`AZURE_CLIENT_ID` selects a user-assigned one).
pub fn default_credential() -> anyhow::Result<Arc<dyn TokenCredential>> {
    managed_identity_credential(&AdapterOptions::default())
}

/// The managed identity credential (App Service `IDENTITY_ENDPOINT` + `IDENTITY_HEADER`, else
/// IMDS), its token requests bounded by `options`: timeouts and at most `max_retries` retries
/// (the SDK's own default would retry for up to a minute).
pub fn managed_identity_credential(
    options: &AdapterOptions,
) -> anyhow::Result<Arc<dyn TokenCredential>> {
    let mut client_options = azure_core::http::ClientOptions {
        retry: azure_core::http::RetryOptions::exponential(
            azure_core::http::ExponentialRetryOptions {
                initial_delay: to_time(options.base_delay),
                max_retries: options.max_retries,
                max_total_elapsed: to_time(
                    (options.timeout + options.max_delay)
                        .saturating_mul(options.max_retries.saturating_add(1)),
                ),
                max_delay: to_time(options.max_delay),
            },
        ),
        ..Default::default()
    };
    client_options.transport = Some(azure_core::http::Transport::new(Arc::new(options.client())));
    let credential_options = azure_identity::ManagedIdentityCredentialOptions {
        user_assigned_id: std::env::var("AZURE_CLIENT_ID")
            .ok()
            .filter(|v| !v.is_empty())
            .map(azure_identity::UserAssignedId::ClientId),
        client_options,
    };
    let credential = azure_identity::ManagedIdentityCredential::new(Some(credential_options))
        .map_err(|e| anyhow::anyhow!("managed identity: {}", redact_secrets(&e.to_string())))?;
    Ok(credential)
}

fn to_time(d: Duration) -> azure_core::time::Duration {
    azure_core::time::Duration::milliseconds(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Gets a bearer token for `scope`.
pub(crate) async fn bearer(
    credential: &dyn TokenCredential,
    scope: &str,
) -> Result<String, PortError> {
    let token = credential
        .get_token(&[scope], None)
        .await
        .map_err(|e| token_error(scope, &e))?;
    Ok(format!("Bearer {}", token.token.secret()))
}

/// A credential's failure to give a token for `scope` as a port error: permanent when the
/// identity endpoint refused (the identity is not assigned: retrying won't help), else
/// transient.
pub(crate) fn token_error(scope: &str, e: &azure_core::Error) -> PortError {
    let text = format!("getting a token for {scope}: {}", error_chain(e));
    match http_status_in_chain(e) {
        Some(400 | 401 | 403 | 404) => PortError::Permanent(text),
        _ => PortError::Transient(text),
    }
}

/// The first HTTP status in an SDK error or its causes (credentials wrap the endpoint's error).
fn http_status_in_chain(e: &azure_core::Error) -> Option<u16> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(status) = err
            .downcast_ref::<azure_core::Error>()
            .and_then(azure_core::Error::http_status)
        {
            return Some(u16::from(status));
        }
        current = err.source();
    }
    None
}

/// An error and its causes as one line, with every credential in a URL query redacted and the
/// length bounded: safe for a port error, a 503 body or a log.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    for_log(&redact_secrets(&text), 500)
}

/// Maps an HTTP failure to a port error: 404 not found, 409/412 conflict, 408/429/5xx
/// transient, anything else permanent. The body is cut short: it may echo input.
pub(crate) fn status_error(what: &str, status: reqwest::StatusCode, body: &str) -> PortError {
    let body = for_log(&redact_secrets(body), 300);
    let text = format!("{what}: HTTP {status}: {body}");
    match status.as_u16() {
        404 => PortError::NotFound(text),
        409 | 412 => PortError::Conflict(text),
        408 | 429 | 500..=599 => PortError::Transient(text),
        _ => PortError::Permanent(text),
    }
}

/// Maps a transport failure (no full HTTP answer) to a transient port error that names the
/// cause; any SAS or key in the URL the error quotes is redacted.
pub(crate) fn transport_error(what: &str, e: reqwest::Error) -> PortError {
    let cause = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the response body was cut short"
    } else {
        "no answer"
    };
    PortError::Transient(format!("{what}: {cause}: {}", error_chain(&e)))
}

/// A complete answer: status, the headers that matter and the whole body.
pub(crate) struct Reply {
    /// Final status.
    pub status: reqwest::StatusCode,
    /// Its headers.
    pub headers: reqwest::header::HeaderMap,
    /// Full body.
    pub body: Vec<u8>,
    /// Requests sent.
    pub attempts: u32,
    /// True when an earlier attempt may have taken effect although no success came back
    /// (a timeout, a cut connection or a 5xx after the request was sent).
    pub ambiguous: bool,
    /// True when a 401 was answered and the request sent again with a fresh credential.
    pub refreshed: bool,
}

impl Reply {
    /// The body as text (for error messages).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// True for the statuses worth retrying.
fn retryable(status: reqwest::StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

/// Reads a whole body, refusing (as permanent) one over `max` bytes without reading it all.
async fn read_body(
    mut response: reqwest::Response,
    max: usize,
    what: &str,
) -> Result<Vec<u8>, PortError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport_error(what, e))?
    {
        if body.len() + chunk.len() > max {
            return Err(PortError::Permanent(format!(
                "{what}: answer is over {max} bytes; not read"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Sends the request `build` makes (called again for every attempt, so each gets a fresh SAS
/// or token; its argument is true right after a 401, when a cached token must be replaced),
/// reads the whole body, and retries under `options`; see [`AdapterOptions`]. A 401 is
/// retried once only when `refreshable` (a fixed API key would be refused again).
/// Returns the last answer, success or not; `Err` only when no answer came at all, the
/// answer was too large, or a `Retry-After` was deferred.
pub(crate) async fn send_retrying<F, Fut>(
    options: &AdapterOptions,
    what: &str,
    refreshable: bool,
    mut build: F,
) -> Result<Reply, PortError>
where
    F: FnMut(bool) -> Fut,
    Fut: Future<Output = Result<reqwest::RequestBuilder, PortError>>,
{
    let mut ambiguous = false;
    let mut refresh = false;
    let mut refreshed = false;
    let mut attempts = 0;
    let mut retry = 0;
    loop {
        // A credential failure is final here: the credential retried on its own already.
        let request = build(std::mem::take(&mut refresh)).await?;
        attempts += 1;
        let attempt = async {
            // The error says whether the request may have reached the service.
            let response = request.send().await.map_err(|e| {
                let sent = !e.is_connect();
                (transport_error(what, e), sent)
            })?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = read_body(response, options.max_body, what)
                .await
                .map_err(|e| (e, true))?;
            Ok::<_, (PortError, bool)>((status, headers, body))
        };
        let (error, wait) = match attempt.await {
            Ok((status, headers, body)) => {
                if status == reqwest::StatusCode::UNAUTHORIZED && refreshable && !refreshed {
                    tracing::info!("{what}: 401: retrying once with a fresh credential");
                    refreshed = true;
                    refresh = true;
                    continue;
                }
                if !retryable(status) || retry >= options.max_retries {
                    return Ok(Reply {
                        status,
                        headers,
                        body,
                        attempts,
                        ambiguous,
                        refreshed,
                    });
                }
                ambiguous |= status.is_server_error() || status.as_u16() == 408;
                let wait = retry_after(|name| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                });
                let error = status_error(what, status, &String::from_utf8_lossy(&body));
                if let Some(asked) =
                    wait.filter(|w| options.defer_long_waits && *w > options.max_delay)
                {
                    return Err(PortError::Transient(format!(
                        "{error}; Retry-After {}s is over the {}s bound: left to a later delivery",
                        asked.as_secs(),
                        options.max_delay.as_secs()
                    )));
                }
                (error, wait)
            }
            Err((PortError::Transient(text), _)) if retry >= options.max_retries => {
                return Err(PortError::Transient(if attempts > 1 {
                    format!("{text} (gave up after {attempts} attempts)")
                } else {
                    text
                }));
            }
            Err((e @ PortError::Transient(_), sent)) => {
                ambiguous |= sent;
                (e, None)
            }
            Err((e, _)) => return Err(e),
        };
        options.back_off(what, retry, wait, &error).await;
        retry += 1;
    }
}

/// An HTTP client with the default [`AdapterOptions`] timeouts, for the adapters that take no
/// options (Service Bus, Azure ML, report links).
pub(crate) fn http_client() -> reqwest::Client {
    AdapterOptions::default().client()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_honours_retry_after_and_is_capped() {
        let o = AdapterOptions {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            ..Default::default()
        };
        let within = |d: Duration, full: u64| (full / 2..=full).contains(&(d.as_millis() as u64));
        for _ in 0..20 {
            assert!(within(o.delay(0, None), 100));
            assert!(within(o.delay(2, None), 400));
            assert!(within(o.delay(40, None), 1000));
        }
        assert_eq!(
            o.delay(0, Some(Duration::from_millis(700))),
            Duration::from_millis(700)
        );
        assert_eq!(
            o.delay(0, Some(Duration::from_secs(3600))),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn retry_after_reads_seconds_milliseconds_and_dates() {
        let header =
            |name: &'static str, value: String| move |n: &str| (n == name).then(|| value.clone());
        assert_eq!(
            retry_after(header("retry-after", "7".into())),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(header("x-ms-retry-after-ms", "250".into())),
            Some(Duration::from_millis(250))
        );
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30))
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let wait = retry_after(header("retry-after", later)).unwrap();
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30));
        assert_eq!(retry_after(header("retry-after", "soon".into())), None);
        assert_eq!(retry_after(|_| None), None);
    }

    #[tokio::test]
    async fn a_network_failure_keeps_the_cause_and_drops_the_sas() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!(
            "http://127.0.0.1:{port}/c/b?sv=2019-12-12&sp=racwdlup&spr=https,http&sig=c2VjcmV0c2ln"
        );
        let e = reqwest::get(&url).await.unwrap_err();
        assert!(
            e.to_string().contains("c2VjcmV0c2ln"),
            "reqwest quotes the URL, SAS and all"
        );
        let text = transport_error("blob storage", e).to_string();
        assert!(
            !text.contains("c2VjcmV0c2ln") && !text.contains("racwdlup"),
            "{text}"
        );
        assert!(text.contains("could not connect"), "{text}");
        assert!(text.contains(&format!("127.0.0.1:{port}/c/b?")), "{text}");
    }
}
