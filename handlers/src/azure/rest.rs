//! One JSON-over-HTTPS client for the ARM, Log Analytics and threat-intelligence adapters, on
//! the adapters' one retry loop ([`super::send_retrying`], bounded by [`AdapterOptions`]): it
//! adds authorisation (a cached bearer token, replaced after a 401, or a fixed API key), JSON
//! bodies and answers, and error texts that name the call and carry no secret.

use super::{send_retrying, status_error, token_error, AdapterOptions};
use crate::ports::{PortError, PortResult};
use azure_core::credentials::TokenCredential;
use reqwest::Method;
use serde_json::Value;
use socwire_common::text::redact_secrets;
use std::sync::Arc;

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
    options: AdapterOptions,
    token: tokio::sync::Mutex<Option<(String, azure_core::time::OffsetDateTime)>>,
}

impl RestClient {
    /// A client with `auth`, bounded by `options`.
    pub fn new(auth: Auth, options: AdapterOptions) -> Self {
        Self {
            http: options.client(),
            auth,
            options,
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
                    .map_err(|e| token_error(scope, &e))?;
                let token = t.token.secret().to_string();
                *cached = Some((token.clone(), t.expires_on));
                Ok(Some(("authorization", format!("Bearer {token}"))))
            }
        }
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
        let bearer = matches!(self.auth, Auth::Bearer(..));
        let reply = send_retrying(&self.options, &what, bearer, |refresh| {
            let method = method.clone();
            async move {
                let mut request = self.http.request(method.clone(), url.clone());
                if let Some((name, value)) = self.authorization(refresh).await? {
                    request = request.header(name, value);
                }
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                Ok(match body {
                    Some(b) => request.json(b),
                    None if method == Method::POST || method == Method::PUT => {
                        request.header("content-length", "0")
                    }
                    None => request,
                })
            }
        })
        .await?;
        if !reply.status.is_success() {
            return Err(match status_error(&what, reply.status, &reply.text()) {
                PortError::Permanent(t) if reply.refreshed && reply.status.as_u16() == 401 => {
                    PortError::Permanent(format!("{t} (after a fresh token)"))
                }
                PortError::Transient(t) if reply.attempts > 1 => {
                    PortError::Transient(format!("{t} (after {} attempts)", reply.attempts))
                }
                other => other,
            });
        }
        if reply.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&reply.body)
            .map_err(|e| PortError::Transient(format!("{what}: answer is not complete JSON ({e})")))
    }
}
