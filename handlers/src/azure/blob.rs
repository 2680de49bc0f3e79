//! Blob Storage adapters over the Blob REST API: the idempotency ledger (one blob per key,
//! created with `If-None-Match: *` so the first writer wins), triage reports and named state.

use super::storage::StorageAccount;
use super::{send_retrying, status_error, AdapterOptions, Reply};
use crate::ports::{Ledger, PortError, PortResult, ReportStore, StateStore};
use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use tokio::sync::OnceCell;
use url::Url;

/// Blob REST API version sent as `x-ms-version`.
const BLOB_API_VERSION: &str = "2021-08-06";

/// One container of an account.
#[derive(Debug)]
struct Container {
    account: StorageAccount,
    name: String,
    options: AdapterOptions,
    http: reqwest::Client,
    created: OnceCell<()>,
}

/// A blob write's outcome.
enum Put {
    Created,
    /// The blob was there already (`If-None-Match: *` refused). `ambiguous`: an earlier
    /// attempt of this same write may be what put it there.
    Exists {
        ambiguous: bool,
    },
}

impl Container {
    fn new(account: &StorageAccount, name: &str, options: AdapterOptions) -> anyhow::Result<Self> {
        super::storage::check_name(name, "blob container")?;
        Ok(Self {
            account: account.clone(),
            name: name.into(),
            http: options.client(),
            options,
            created: OnceCell::new(),
        })
    }

    fn url(&self, blob: Option<&str>) -> Url {
        let mut url = self.account.blob_endpoint.clone();
        {
            let mut segments = url.path_segments_mut().expect("endpoints are base URLs");
            segments.pop_if_empty().push(&self.name);
            if let Some(b) = blob {
                segments.push(b);
            }
        }
        url
    }

    /// Sends a request (fresh SAS or token per attempt) with retries; see [`AdapterOptions`].
    async fn send(
        &self,
        method: Method,
        url: Url,
        build: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> PortResult<Reply> {
        let http = &self.http;
        send_retrying(&self.options, "blob storage", true, |_| async {
            let request = self
                .account
                .authorise(url.clone(), |u| http.request(method.clone(), u))
                .await?;
            Ok(build(
                request
                    .header("x-ms-version", BLOB_API_VERSION)
                    .header("x-ms-date", httpdate_now()),
            ))
        })
        .await
    }

    /// Creates the container once per process (409 ContainerAlreadyExists is fine).
    async fn ensure(&self) -> PortResult<()> {
        self.created
            .get_or_try_init(|| async {
                let mut url = self.url(None);
                url.set_query(Some("restype=container"));
                let r = self
                    .send(Method::PUT, url, |b| b.header("content-length", "0"))
                    .await?;
                match r.status {
                    s if s.is_success() || s == StatusCode::CONFLICT => Ok(()),
                    s => Err(status_error(
                        &format!("creating container {}", self.name),
                        s,
                        &r.text(),
                    )),
                }
            })
            .await
            .map(|_| ())
    }

    async fn put(
        &self,
        blob: &str,
        body: Vec<u8>,
        content_type: &str,
        only_if_new: bool,
    ) -> PortResult<Put> {
        self.ensure().await?;
        let r = self
            .send(Method::PUT, self.url(Some(blob)), |b| {
                let b = b
                    .header("x-ms-blob-type", "BlockBlob")
                    .header("content-type", content_type)
                    .body(body.clone());
                if only_if_new {
                    b.header("if-none-match", "*")
                } else {
                    b
                }
            })
            .await?;
        match r.status {
            s if s.is_success() => Ok(Put::Created),
            StatusCode::CONFLICT | StatusCode::PRECONDITION_FAILED if only_if_new => {
                Ok(Put::Exists {
                    ambiguous: r.ambiguous,
                })
            }
            s => Err(status_error(
                &format!("writing blob {}/{blob}", self.name),
                s,
                &r.text(),
            )),
        }
    }

    /// Deletes `blob`; a missing blob is fine.
    async fn delete(&self, blob: &str) -> PortResult<()> {
        let r = self
            .send(Method::DELETE, self.url(Some(blob)), |b| b)
            .await?;
        match r.status {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            s => Err(status_error(
                &format!("deleting blob {}/{blob}", self.name),
                s,
                &r.text(),
            )),
        }
    }

    async fn get(&self, blob: &str) -> PortResult<Option<Vec<u8>>> {
        let r = self.send(Method::GET, self.url(Some(blob)), |b| b).await?;
        match r.status {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(Some(r.body)),
            s => Err(status_error(
                &format!("reading blob {}/{blob}", self.name),
                s,
                &r.text(),
            )),
        }
    }
}

fn httpdate_now() -> String {
    chrono::Utc::now()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// Ledger keys become blob names: readable, with anything outside a safe set hex-escaped, and
/// bounded in length (long keys end in their SHA-256).
fn blob_name(key: &str) -> String {
    use sha2::Digest as _;
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b':' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    if out.len() > 512 {
        let digest = sha2::Sha256::digest(key.as_bytes());
        out.truncate(440);
        out.push('~');
        out.extend(digest.iter().map(|b| format!("{b:02x}")));
    }
    out
}

/// The idempotency ledger in a blob container: `record` creates `key` with
/// `If-None-Match: *`, so exactly one writer succeeds however many race.
#[derive(Debug)]
pub struct BlobLedger(Container);

impl BlobLedger {
    /// A ledger in `container` (created on first use).
    pub fn new(account: &StorageAccount, container: &str) -> anyhow::Result<Self> {
        Self::with_options(account, container, AdapterOptions::default())
    }

    /// The same with explicit timeouts and retry bounds.
    pub fn with_options(
        account: &StorageAccount,
        container: &str,
        options: AdapterOptions,
    ) -> anyhow::Result<Self> {
        Ok(Self(Container::new(account, container, options)?))
    }
}

#[async_trait]
impl Ledger for BlobLedger {
    async fn get(&self, key: &str) -> PortResult<Option<String>> {
        Ok(self
            .0
            .get(&blob_name(key))
            .await?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// A retry after an answer that never came back (or a 5xx) can find the blob its own
    /// first attempt wrote: then the stored detail is read back, and the write counts as this
    /// caller's when it holds the same detail. Either way the blob keeps the first detail.
    async fn record(&self, key: &str, detail: &str) -> PortResult<bool> {
        let name = blob_name(key);
        match self
            .0
            .put(
                &name,
                detail.as_bytes().to_vec(),
                "text/plain; charset=utf-8",
                true,
            )
            .await?
        {
            Put::Created => Ok(true),
            Put::Exists { ambiguous: false } => Ok(false),
            Put::Exists { ambiguous: true } => {
                Ok(self.0.get(&name).await?.as_deref() == Some(detail.as_bytes()))
            }
        }
    }
}

/// Triage reports as HTML blobs; the link is the blob URL (opened with the analyst's Entra
/// sign-in; no SAS is ever put in a comment).
#[derive(Debug)]
pub struct BlobReportStore(Container, Option<super::sas::LinkSigner>);

impl BlobReportStore {
    /// Reports in `container` (created on first use). With a managed identity, links carry a
    /// read-only user delegation SAS valid for three days (see [`BlobReportStore::with_link_lifetime`]);
    /// with an account key (Azurite) they are plain URLs: an account key never signs a link.
    pub fn new(account: &StorageAccount, container: &str) -> anyhow::Result<Self> {
        Self::with_link_lifetime(
            account,
            container,
            chrono::Duration::hours(72),
            AdapterOptions::default(),
        )
    }

    /// As [`BlobReportStore::new`], with links valid for `lifetime` (at most 7 days) and
    /// explicit timeouts and retry bounds.
    pub fn with_link_lifetime(
        account: &StorageAccount,
        container: &str,
        lifetime: chrono::Duration,
        options: AdapterOptions,
    ) -> anyhow::Result<Self> {
        let signer = match &account.auth {
            super::storage::StorageAuth::Token(credential) => {
                Some(super::sas::LinkSigner::new(credential.clone(), lifetime))
            }
            super::storage::StorageAuth::Key(_) => None,
        };
        Ok(Self(Container::new(account, container, options)?, signer))
    }
}

#[async_trait]
impl ReportStore for BlobReportStore {
    async fn put_html(&self, name: &str, html: &str) -> PortResult<String> {
        if name.is_empty()
            || name.len() > 200
            || name
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == "..")
        {
            return Err(PortError::Permanent(format!(
                "report name {name:?} is not a plain blob name"
            )));
        }
        self.0
            .put(
                name,
                html.as_bytes().to_vec(),
                "text/html; charset=utf-8",
                false,
            )
            .await?;
        let mut url = self.0.url(Some(name));
        if let Some(signer) = &self.1 {
            let sas = signer
                .sign(
                    &self.0.account.name,
                    &self.0.account.blob_endpoint,
                    &self.0.name,
                    name,
                )
                .await?;
            url.set_query(Some(&sas));
        }
        Ok(url.to_string())
    }
}

/// Named state blobs (the alert engine's window between invocations).
#[derive(Debug)]
pub struct BlobStateStore(Container);

impl BlobStateStore {
    /// State in `container` (created on first use).
    pub fn new(account: &StorageAccount, container: &str) -> anyhow::Result<Self> {
        Self::with_options(account, container, AdapterOptions::default())
    }

    /// The same with explicit timeouts and retry bounds.
    pub fn with_options(
        account: &StorageAccount,
        container: &str,
        options: AdapterOptions,
    ) -> anyhow::Result<Self> {
        Ok(Self(Container::new(account, container, options)?))
    }
}

#[async_trait]
impl StateStore for BlobStateStore {
    async fn load(&self, key: &str) -> PortResult<Option<Vec<u8>>> {
        self.0.get(&blob_name(key)).await
    }

    async fn save(&self, key: &str, bytes: &[u8]) -> PortResult<()> {
        self.0
            .put(
                &blob_name(key),
                bytes.to_vec(),
                "application/octet-stream",
                false,
            )
            .await
            .map(|_| ())
    }

    async fn create(&self, key: &str, bytes: &[u8]) -> PortResult<bool> {
        self.0
            .put(
                &blob_name(key),
                bytes.to_vec(),
                "application/octet-stream",
                true,
            )
            .await
            .map(|put| matches!(put, Put::Created))
    }

    async fn delete(&self, key: &str) -> PortResult<()> {
        self.0.delete(&blob_name(key)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_names_escape_unsafe_bytes_and_stay_bounded() {
        assert_eq!(blob_name("triage:v1:ws/inc-1"), "triage:v1:ws%2Finc-1");
        assert_eq!(blob_name("a b?#"), "a%20b%3F%23");
        let long = blob_name(&"x".repeat(2000));
        assert!(long.len() <= 512 && long.contains('~'));
        assert_ne!(blob_name(&"x".repeat(2000)), blob_name(&"x".repeat(2001)));
    }

    #[test]
    fn container_names_are_checked() {
        let a = StorageAccount::parse("UseDevelopmentStorage=true").unwrap();
        assert!(BlobLedger::new(&a, "socwire-ledger").is_ok());
        for bad in ["Ledger", "ab", "a--b", "-ab", "has_underscore"] {
            assert!(BlobLedger::new(&a, bad).is_err(), "{bad}");
        }
    }
}
