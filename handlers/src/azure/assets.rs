//! Fetching NGC assets: `https` from allow-listed hosts only (redirects are checked against the
//! same list), streamed to a file under a size cap; `file://` only from allow-listed local
//! folders (the offline stand-in for NGC, see docs/decisions/0007-gpu-lifecycle.md).

use crate::ports::{AssetFetcher, PortError, PortResult};
use async_trait::async_trait;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;
use url::Url;

/// The allow-listed fetcher.
#[derive(Debug, Clone)]
pub struct AllowListedFetcher {
    hosts: Vec<String>,
    local_dirs: Vec<PathBuf>,
    http: reqwest::Client,
}

/// True when `host` is on `list` (exact, or `*.suffix` entries).
pub fn host_allowed(list: &[String], host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    list.iter().any(|entry| match entry.strip_prefix("*.") {
        Some(suffix) => host.ends_with(&format!(".{suffix}")),
        None => *entry == host,
    })
}

impl AllowListedFetcher {
    /// A fetcher for `hosts` (lower-case names; `*.example.com` allowed) and local folders.
    pub fn new(hosts: Vec<String>, local_dirs: Vec<PathBuf>) -> Self {
        let hosts: Vec<String> = hosts
            .into_iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        let for_redirects = hosts.clone();
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(240))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                let host = attempt.url().host_str().unwrap_or("?").to_string();
                let ok = attempt.url().scheme() == "https" && host_allowed(&for_redirects, &host);
                if attempt.previous().len() > 5 {
                    attempt.error("too many redirects")
                } else if ok {
                    attempt.follow()
                } else {
                    attempt.error(format!(
                        "redirect to {host} is not on the asset host allow-list"
                    ))
                }
            }))
            .build()
            .unwrap_or_default();
        Self {
            hosts,
            local_dirs,
            http,
        }
    }

    fn refuse(&self, url: &str, why: &str) -> PortError {
        PortError::Permanent(format!(
            "asset {}: {why}",
            socwire_common::text::redact_secrets(url)
        ))
    }

    async fn fetch_file(&self, url: &Url, raw: &str, dest: &Path, max: u64) -> PortResult<u64> {
        let path = url
            .to_file_path()
            .map_err(|_| self.refuse(raw, "not a local file path"))?;
        let real = std::fs::canonicalize(&path)
            .map_err(|e| self.refuse(raw, &format!("cannot be read: {e}")))?;
        let allowed = self
            .local_dirs
            .iter()
            .any(|d| std::fs::canonicalize(d).is_ok_and(|d| real.starts_with(d)));
        if !allowed {
            return Err(self.refuse(
                raw,
                "file:// assets must lie under a folder listed in SOCWIRE_ML_LOCAL_ASSET_DIRS",
            ));
        }
        let len = std::fs::metadata(&real)
            .map_err(|e| self.refuse(raw, &e.to_string()))?
            .len();
        if len > max {
            return Err(self.refuse(raw, &format!("{len} bytes is over the {max}-byte asset size cap (SOCWIRE_ML_MAX_ASSET_BYTES)")));
        }
        tokio::fs::copy(&real, dest)
            .await
            .map_err(|e| PortError::Transient(format!("copying {}: {e}", real.display())))
    }

    async fn fetch_http(&self, url: &Url, raw: &str, dest: &Path, max: u64) -> PortResult<u64> {
        let host = url.host_str().unwrap_or_default();
        let loopback = matches!(host, "127.0.0.1" | "localhost");
        if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
            return Err(self.refuse(raw, "only https:// URLs are fetched"));
        }
        if !host_allowed(&self.hosts, host) {
            return Err(self.refuse(
                raw,
                &format!(
                    "host {host:?} is not on the asset allow-list (SOCWIRE_NGC_ALLOWED_HOSTS: {})",
                    self.hosts.join(", ")
                ),
            ));
        }
        let what = format!("asset {}", socwire_common::text::redact_secrets(raw));
        let mut response = self.http.get(url.clone()).send().await.map_err(|e| {
            if e.is_redirect() {
                let cause = std::error::Error::source(&e)
                    .map(|c| c.to_string())
                    .unwrap_or_default();
                PortError::Permanent(format!("{what}: {cause}"))
            } else {
                super::transport_error(&what, e)
            }
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err(super::status_error(&what, status, ""));
        }
        if response.content_length().is_some_and(|n| n > max) {
            return Err(self.refuse(
                raw,
                &format!(
                    "{} bytes is over the {max}-byte asset size cap",
                    response.content_length().unwrap_or_default()
                ),
            ));
        }
        let mut file = tokio::fs::File::create(dest)
            .await
            .map_err(|e| PortError::Transient(format!("{}: {e}", dest.display())))?;
        let mut written: u64 = 0;
        let mut next_report: u64 = 64 << 20;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| super::transport_error(&what, e))?
        {
            written += chunk.len() as u64;
            if written > max {
                drop(file);
                let _ = tokio::fs::remove_file(dest).await;
                return Err(self.refuse(
                    raw,
                    &format!("the body is over the {max}-byte asset size cap"),
                ));
            }
            file.write_all(&chunk)
                .await
                .map_err(|e| PortError::Transient(format!("{}: {e}", dest.display())))?;
            if written >= next_report {
                tracing::info!(asset = %what, mib = written >> 20, "downloading");
                next_report += 64 << 20;
            }
        }
        file.flush()
            .await
            .map_err(|e| PortError::Transient(e.to_string()))?;
        Ok(written)
    }
}

#[async_trait]
impl AssetFetcher for AllowListedFetcher {
    async fn fetch(&self, raw: &str, dest: &Path, max_bytes: u64) -> PortResult<u64> {
        let url = Url::parse(raw).map_err(|e| self.refuse(raw, &format!("not a URL: {e}")))?;
        match url.scheme() {
            "file" => self.fetch_file(&url, raw, dest, max_bytes).await,
            "https" | "http" => self.fetch_http(&url, raw, dest, max_bytes).await,
            other => Err(self.refuse(raw, &format!("scheme {other:?} is not fetched"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;

    async fn server() -> String {
        let app = axum::Router::new()
            .route("/small.bin", get(|| async { vec![1u8; 100] }))
            .route("/big.bin", get(|| async { vec![1u8; 10_000] }))
            .route(
                "/away",
                get(|| async { axum::response::Redirect::temporary("https://evil.example/x") }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn only_allow_listed_hosts_and_sizes_under_the_cap_are_fetched() {
        let base = server().await;
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("d");
        let f = AllowListedFetcher::new(vec!["127.0.0.1".into()], vec![]);
        assert_eq!(
            f.fetch(&format!("{base}/small.bin"), &dest, 1000)
                .await
                .unwrap(),
            100
        );
        let e = f
            .fetch(&format!("{base}/big.bin"), &dest, 1000)
            .await
            .unwrap_err();
        assert!(
            matches!(e, PortError::Permanent(ref m) if m.contains("size cap")),
            "{e}"
        );
        let e = f
            .fetch(&format!("{base}/away"), &dest, 1000)
            .await
            .unwrap_err();
        assert!(
            matches!(e, PortError::Permanent(ref m) if m.contains("allow-list")),
            "{e}"
        );
        let ngc_only = AllowListedFetcher::new(vec!["api.ngc.nvidia.com".into()], vec![]);
        let e = ngc_only
            .fetch(&format!("{base}/small.bin"), &dest, 1000)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("not on the asset allow-list"), "{e}");
        let e = ngc_only
            .fetch("http://api.ngc.nvidia.com/x", &dest, 1000)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("only https"), "{e}");
    }

    #[tokio::test]
    async fn file_urls_must_lie_under_an_allowed_folder() {
        let dir = tempfile::tempdir().unwrap();
        let allowed = dir.path().join("assets");
        std::fs::create_dir_all(&allowed).unwrap();
        std::fs::write(allowed.join("a.bin"), b"12345").unwrap();
        std::fs::write(dir.path().join("secret"), b"x").unwrap();
        let f = AllowListedFetcher::new(vec![], vec![allowed.clone()]);
        let dest = dir.path().join("d");
        let ok = Url::from_file_path(allowed.join("a.bin")).unwrap();
        assert_eq!(f.fetch(ok.as_str(), &dest, 100).await.unwrap(), 5);
        let escape = format!("file://{}/../secret", allowed.display());
        let e = f.fetch(&escape, &dest, 100).await.unwrap_err();
        assert!(e.to_string().contains("SOCWIRE_ML_LOCAL_ASSET_DIRS"), "{e}");
        assert!(f
            .fetch(ok.as_str(), &dest, 2)
            .await
            .unwrap_err()
            .to_string()
            .contains("size cap"));
    }
}
