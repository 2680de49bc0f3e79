//! Read-only, single-blob, time-limited links to triage reports: a user delegation SAS signed
//! with a key from Get User Delegation Key (`POST {blob}/?restype=service&comp=userdelegationkey`)
//! under the Function App's managed identity — never an account key. The string-to-sign is
//! the documented one for service versions 2020-12-06 and later.

use super::transport_error;
use crate::ports::{PortError, PortResult};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Service version the SAS is signed for (and the key requested with).
pub const UD_SAS_VERSION: &str = "2022-11-02";

/// A user delegation key as Get User Delegation Key returns it.
#[derive(Clone, PartialEq, Eq)]
pub struct UserDelegationKey {
    /// `SignedOid`.
    pub signed_oid: String,
    /// `SignedTid`.
    pub signed_tid: String,
    /// `SignedStart`.
    pub signed_start: String,
    /// `SignedExpiry`.
    pub signed_expiry: String,
    /// `SignedService`.
    pub signed_service: String,
    /// `SignedVersion`.
    pub signed_version: String,
    /// `Value`: the key, base64.
    pub value: String,
}

impl std::fmt::Debug for UserDelegationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserDelegationKey")
            .field("signed_oid", &self.signed_oid)
            .field("signed_expiry", &self.signed_expiry)
            .field("value", &"REDACTED")
            .finish()
    }
}

fn tag<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&close)? + start;
    Some(xml[start..end].trim())
}

impl UserDelegationKey {
    /// Parses the `<UserDelegationKey>` answer.
    pub fn from_xml(xml: &str) -> PortResult<Self> {
        let get = |n: &str| {
            tag(xml, n)
                .map(str::to_string)
                .ok_or_else(|| PortError::Permanent(format!("user delegation key: no <{n}>")))
        };
        Ok(Self {
            signed_oid: get("SignedOid")?,
            signed_tid: get("SignedTid")?,
            signed_start: get("SignedStart")?,
            signed_expiry: get("SignedExpiry")?,
            signed_service: get("SignedService")?,
            signed_version: get("SignedVersion")?,
            value: get("Value")?,
        })
    }
}

/// The string-to-sign of a read-only blob user delegation SAS (version 2020-12-06 and later).
pub fn string_to_sign(
    account: &str,
    container: &str,
    blob: &str,
    key: &UserDelegationKey,
    start: &str,
    expiry: &str,
) -> String {
    [
        "r",
        start,
        expiry,
        &format!("/blob/{account}/{container}/{blob}"),
        &key.signed_oid,
        &key.signed_tid,
        &key.signed_start,
        &key.signed_expiry,
        &key.signed_service,
        &key.signed_version,
        "",
        "",
        "",
        "",
        "https",
        UD_SAS_VERSION,
        "b",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
    ]
    .join("\n")
}

/// The SAS query string (`sp=r&…&sig=…`) for one blob, read-only, https only.
pub fn user_delegation_sas(
    account: &str,
    container: &str,
    blob: &str,
    key: &UserDelegationKey,
    start: &str,
    expiry: &str,
) -> PortResult<String> {
    let secret = base64::engine::general_purpose::STANDARD
        .decode(key.value.trim())
        .map_err(|_| PortError::Permanent("user delegation key is not base64".into()))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&secret)
        .map_err(|_| PortError::Permanent("user delegation key is unusable".into()))?;
    mac.update(string_to_sign(account, container, blob, key, start, expiry).as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    Ok(url::form_urlencoded::Serializer::new(String::new())
        .append_pair("sp", "r")
        .append_pair("st", start)
        .append_pair("se", expiry)
        .append_pair("skoid", &key.signed_oid)
        .append_pair("sktid", &key.signed_tid)
        .append_pair("skt", &key.signed_start)
        .append_pair("ske", &key.signed_expiry)
        .append_pair("sks", &key.signed_service)
        .append_pair("skv", &key.signed_version)
        .append_pair("spr", "https")
        .append_pair("sv", UD_SAS_VERSION)
        .append_pair("sr", "b")
        .append_pair("sig", &sig)
        .finish())
}

fn stamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Signs report links with user delegation keys, fetching (and caching) a key as needed.
pub struct LinkSigner {
    credential: std::sync::Arc<dyn azure_core::credentials::TokenCredential>,
    http: reqwest::Client,
    /// How long a link stays valid (at most 7 days: a key's longest life).
    pub lifetime: chrono::Duration,
    key: tokio::sync::Mutex<Option<(UserDelegationKey, chrono::DateTime<chrono::Utc>)>>,
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LinkSigner({}s)", self.lifetime.num_seconds())
    }
}

impl LinkSigner {
    /// A signer for links valid for `lifetime` (clamped to 5 minutes – 7 days).
    pub fn new(
        credential: std::sync::Arc<dyn azure_core::credentials::TokenCredential>,
        lifetime: chrono::Duration,
    ) -> Self {
        Self {
            credential,
            http: super::http_client(),
            lifetime: lifetime.clamp(
                chrono::Duration::minutes(5),
                chrono::Duration::days(7) - chrono::Duration::minutes(10),
            ),
            key: tokio::sync::Mutex::new(None),
        }
    }

    /// Get User Delegation Key for `[start, expiry]` from the blob service at `blob_endpoint`.
    pub async fn fetch_key(
        &self,
        blob_endpoint: &url::Url,
        start: chrono::DateTime<chrono::Utc>,
        expiry: chrono::DateTime<chrono::Utc>,
    ) -> PortResult<UserDelegationKey> {
        let token = super::bearer(
            self.credential.as_ref(),
            "https://storage.azure.com/.default",
        )
        .await?;
        let mut url = blob_endpoint.clone();
        url.set_query(Some("restype=service&comp=userdelegationkey"));
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><KeyInfo><Start>{}</Start><Expiry>{}</Expiry></KeyInfo>",
            stamp(start),
            stamp(expiry)
        );
        let what = "Get User Delegation Key";
        let response = self
            .http
            .post(url)
            .header("authorization", token)
            .header("x-ms-version", UD_SAS_VERSION)
            .header("content-type", "application/xml")
            .body(body)
            .send()
            .await
            .map_err(|e| transport_error(what, e))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| transport_error(what, e))?;
        if !status.is_success() {
            return Err(super::status_error(what, status, &text));
        }
        UserDelegationKey::from_xml(&text)
    }

    /// A SAS for `container/blob` valid from now for the lifetime.
    pub async fn sign(
        &self,
        account: &str,
        blob_endpoint: &url::Url,
        container: &str,
        blob: &str,
    ) -> PortResult<String> {
        let now = chrono::Utc::now();
        let expiry = now + self.lifetime;
        let mut cached = self.key.lock().await;
        let fresh = match cached.as_ref() {
            Some((key, until)) if *until >= expiry => key.clone(),
            _ => {
                let until = (now + chrono::Duration::days(7) - chrono::Duration::minutes(5))
                    .min(expiry + chrono::Duration::days(1));
                let key = self
                    .fetch_key(blob_endpoint, now - chrono::Duration::minutes(5), until)
                    .await?;
                *cached = Some((key.clone(), until));
                key
            }
        };
        user_delegation_sas(
            account,
            container,
            blob,
            &fresh,
            &stamp(now - chrono::Duration::minutes(5)),
            &stamp(expiry),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> UserDelegationKey {
        UserDelegationKey::from_xml(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><UserDelegationKey>\
             <SignedOid>11111111-1111-1111-1111-111111111111</SignedOid>\
             <SignedTid>22222222-2222-2222-2222-222222222222</SignedTid>\
             <SignedStart>2026-11-29T00:00:00Z</SignedStart>\
             <SignedExpiry>2026-12-05T00:00:00Z</SignedExpiry>\
             <SignedService>b</SignedService><SignedVersion>2022-11-02</SignedVersion>\
             <Value>c29jd2lyZS10ZXN0LWtleS0wMTIzNDU2Nzg5YWJjZGVm</Value></UserDelegationKey>",
        )
        .unwrap()
    }

    #[test]
    fn the_signature_matches_an_independent_hmac_of_the_documented_string() {
        let sas = user_delegation_sas(
            "socwirereports",
            "socwire-reports",
            "triage/abc.html",
            &key(),
            "2026-11-29T10:00:00Z",
            "2026-12-02T10:00:00Z",
        )
        .unwrap();
        // Expected signature computed outside this code (Python hmac/hashlib over the
        // documented 2020-12-06+ string-to-sign with the same fields).
        let sig = url::form_urlencoded::parse(sas.as_bytes())
            .find(|(k, _)| k == "sig")
            .unwrap()
            .1
            .to_string();
        assert_eq!(sig, EXPECTED_SIG);
        for field in [
            "sp=r",
            "sr=b",
            "spr=https",
            "sks=b",
            "sv=2022-11-02",
            "skoid=11111111",
        ] {
            assert!(sas.contains(field), "{field} missing: {sas}");
        }
        assert!(
            !sas.contains("c29jd2lyZS10ZXN0"),
            "the key never appears in a link"
        );
        assert!(!format!("{:?}", key()).contains("c29jd2lyZS10ZXN0"));
    }

    #[tokio::test]
    async fn the_key_is_fetched_with_a_bearer_token_and_cached() {
        use axum::routing::post;
        use std::sync::{Arc, Mutex};
        #[derive(Debug)]
        struct Fixed;
        #[async_trait::async_trait]
        impl azure_core::credentials::TokenCredential for Fixed {
            async fn get_token(
                &self,
                scopes: &[&str],
                _: Option<azure_core::credentials::TokenRequestOptions<'_>>,
            ) -> azure_core::Result<azure_core::credentials::AccessToken> {
                assert_eq!(scopes, ["https://storage.azure.com/.default"]);
                Ok(azure_core::credentials::AccessToken::new(
                    "mi-token",
                    azure_core::time::OffsetDateTime::now_utc()
                        + azure_core::time::Duration::hours(1),
                ))
            }
        }
        type Seen = Vec<(String, String, String, String)>;
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let s = seen.clone();
        let app = axum::Router::new().route(
            "/",
            post(move |q: axum::extract::RawQuery, h: axum::http::HeaderMap, body: String| {
                let s = s.clone();
                async move {
                    let header = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                    s.lock().unwrap().push((q.0.unwrap_or_default(), header("authorization"), header("x-ms-version"), body));
                    "<?xml version=\"1.0\"?><UserDelegationKey><SignedOid>o</SignedOid><SignedTid>t</SignedTid><SignedStart>2026-11-29T00:00:00Z</SignedStart><SignedExpiry>2026-12-05T00:00:00Z</SignedExpiry><SignedService>b</SignedService><SignedVersion>2022-11-02</SignedVersion><Value>c2VjcmV0</Value></UserDelegationKey>"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint: url::Url = format!("http://{}/", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let signer = LinkSigner::new(Arc::new(Fixed), chrono::Duration::hours(72));
        let a = signer
            .sign("acct", &endpoint, "reports", "triage/a.html")
            .await
            .unwrap();
        let b = signer
            .sign("acct", &endpoint, "reports", "triage/b.html")
            .await
            .unwrap();
        assert_ne!(a, b, "one SAS per blob");
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen.len(),
            1,
            "the key is reused while it covers the link's life"
        );
        let (query, auth, version, body) = &seen[0];
        assert_eq!(query, "restype=service&comp=userdelegationkey");
        assert_eq!(auth, "Bearer mi-token");
        assert_eq!(version, UD_SAS_VERSION);
        assert!(
            body.contains("<KeyInfo><Start>") && body.contains("<Expiry>"),
            "{body}"
        );
        let se = url::form_urlencoded::parse(a.as_bytes())
            .find(|(k, _)| k == "se")
            .unwrap()
            .1
            .to_string();
        let se = chrono::DateTime::parse_from_rfc3339(&se).unwrap();
        let hours = (se.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_hours();
        assert!(
            (71..=72).contains(&hours),
            "link lifetime is the configured one: {hours}h"
        );
    }

    const EXPECTED_SIG: &str = "suSjjlNY7V7EfSQNI/ukPSxQtSDLZlD6CKUtKRx7dho=";
}
