//! The managed identity of an Azure ML compute node, for code running inside an Azure ML job
//! (`socwire ml fine-tune` sending telemetry). Azure ML gives a job's container `MSI_ENDPOINT`,
//! `MSI_SECRET` and `DEFAULT_IDENTITY_CLIENT_ID`; `azure_identity` 1.0 recognises that source
//! but refuses it ("Azure ML managed identity isn't supported"), so the token request is made
//! here, the way Microsoft's MSAL does it (`MachineLearningManagedIdentitySource`): `GET
//! {MSI_ENDPOINT}?api-version=2017-09-01&resource=…&clientid=…` with the header `secret`.

use super::{error_chain, AdapterOptions};
use async_trait::async_trait;
use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::error::ErrorKind;
use azure_core::time::{Duration, OffsetDateTime};
use serde::Deserialize;
use socwire_common::text::for_log;
use std::sync::Arc;

const API_VERSION: &str = "2017-09-01";

/// The token endpoint of an Azure ML compute node's managed identity.
#[derive(Debug)]
pub struct AzureMlIdentity {
    endpoint: url::Url,
    secret: String,
    client_id: String,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_on: Option<serde_json::Value>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

impl AzureMlIdentity {
    /// The identity described by `MSI_ENDPOINT`, `MSI_SECRET` and `DEFAULT_IDENTITY_CLIENT_ID`
    /// (`AZURE_CLIENT_ID` chooses another user-assigned identity); None outside Azure ML.
    pub fn from_env(options: &AdapterOptions) -> anyhow::Result<Option<Self>> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let (Some(endpoint), Some(secret)) = (var("MSI_ENDPOINT"), var("MSI_SECRET")) else {
            return Ok(None);
        };
        let client_id = var("AZURE_CLIENT_ID")
            .or_else(|| var("DEFAULT_IDENTITY_CLIENT_ID"))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "MSI_ENDPOINT is set but neither DEFAULT_IDENTITY_CLIENT_ID nor \
                     AZURE_CLIENT_ID is: give the compute cluster a managed identity"
                )
            })?;
        let endpoint = url::Url::parse(&endpoint)
            .map_err(|e| anyhow::anyhow!("MSI_ENDPOINT is not a URL: {e}"))?;
        Ok(Some(Self::new(endpoint, secret, client_id, options)))
    }

    /// The identity `client_id` at `endpoint`, asked with `secret`.
    pub fn new(
        endpoint: url::Url,
        secret: String,
        client_id: String,
        options: &AdapterOptions,
    ) -> Self {
        Self {
            endpoint,
            secret,
            client_id,
            http: options.client(),
        }
    }
}

fn failure(status: Option<u16>, message: String) -> azure_core::Error {
    match status.map(azure_core::http::StatusCode::from) {
        Some(status) => azure_core::Error::with_message(
            ErrorKind::HttpResponse {
                status,
                error_code: None,
                raw_response: None,
            },
            message,
        ),
        None => azure_core::Error::with_message(ErrorKind::Credential, message),
    }
}

/// Seconds in a JSON number or a string of digits.
fn seconds(v: &serde_json::Value) -> Option<i64> {
    match v {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[async_trait]
impl TokenCredential for AzureMlIdentity {
    async fn get_token(
        &self,
        scopes: &[&str],
        _: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let [scope] = scopes else {
            return Err(failure(None, "exactly one scope is supported".into()));
        };
        let resource = scope.strip_suffix("/.default").unwrap_or(scope);
        let mut url = self.endpoint.clone();
        url.query_pairs_mut()
            .append_pair("api-version", API_VERSION)
            .append_pair("resource", resource)
            .append_pair("clientid", &self.client_id);
        let asked = OffsetDateTime::now_utc();
        let no_answer = |e: reqwest::Error| {
            failure(
                None,
                format!("Azure ML identity endpoint: {}", error_chain(&e)),
            )
        };
        let answer = self
            .http
            .get(url)
            .header("metadata", "true")
            .header("secret", &self.secret)
            .send()
            .await
            .map_err(no_answer)?;
        let status = answer.status().as_u16();
        let body = answer.bytes().await.map_err(no_answer)?;
        if !(200..300).contains(&status) {
            let text = for_log(&String::from_utf8_lossy(&body), 300);
            return Err(failure(
                Some(status),
                format!("Azure ML identity endpoint answered {status}: {text}"),
            ));
        }
        let t: TokenAnswer = serde_json::from_slice(&body).map_err(|e| {
            failure(
                None,
                format!("Azure ML identity endpoint: not a token answer ({e})"),
            )
        })?;
        // `expires_on` is unix seconds; `expires_in` seconds from now. Without either, the
        // token is taken to last five minutes, so it is asked for again soon rather than late.
        let expires_on = t
            .expires_on
            .as_ref()
            .and_then(seconds)
            .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
            .or_else(|| {
                t.expires_in
                    .as_ref()
                    .and_then(seconds)
                    .map(|s| asked + Duration::seconds(s))
            })
            .unwrap_or(asked + Duration::minutes(5));
        Ok(AccessToken::new(t.access_token, expires_on))
    }
}

/// The credential a job's own code uses: the Azure ML node's identity inside an Azure ML job,
/// else the usual managed identity (App Service, IMDS).
pub fn job_credential(options: &AdapterOptions) -> anyhow::Result<Arc<dyn TokenCredential>> {
    Ok(match AzureMlIdentity::from_env(options)? {
        Some(identity) => Arc::new(identity),
        None => super::managed_identity_credential(options)?,
    })
}
