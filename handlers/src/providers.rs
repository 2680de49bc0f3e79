//! Threat-intelligence providers on the internet — VirusTotal (v3), AbuseIPDB (v2), GreyNoise
//! (community v3) and AlienVault OTX (v1) — each enabled by its API key setting and mapped to
//! MSTICPy's levels with the thresholds in SENTINEL.md §5, behind one [`ProviderChain`] that
//! also holds the offline feed: look-ups of one indicator run concurrently, each with a
//! timeout, answers are cached (bounded, with a TTL), and a provider that fails or stalls is
//! reported as such in the findings instead of failing the triage. Sentinel's own TI table is
//! asked through the workspace port ([`crate::ports::Question::ThreatIndicator`]).

use crate::azure::{AdapterOptions, Auth, RestClient};
use crate::ports::{PortError, PortResult, ThreatIntel, TiFinding, TiSeverity};
use crate::sentinel::Indicator;
use async_trait::async_trait;
use base64::Engine as _;
use reqwest::Method;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An API key: never printed, never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(REDACTED)")
    }
}

/// One provider's verdict on one indicator, before it becomes a finding.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Its name in findings and reports.
    fn name(&self) -> &'static str;
    /// Whether it can look up indicators of `kind`.
    fn supports(&self, kind: &str) -> bool;
    /// `None` when the provider does not know the indicator.
    async fn check(&self, indicator: &Indicator) -> PortResult<Option<(TiSeverity, String)>>;
}

fn client(header: &'static str, key: &Secret, timeout: Duration) -> RestClient {
    RestClient::new(
        Auth::Header(header, key.0.clone()),
        AdapterOptions {
            timeout,
            max_retries: 1,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            max_body: 1024 * 1024,
            ..AdapterOptions::json_api()
        },
    )
}

fn base(url: &str, what: &str) -> anyhow::Result<url::Url> {
    let u = url::Url::parse(url).map_err(|e| anyhow::anyhow!("{what} base URL {url:?}: {e}"))?;
    if u.scheme() != "https" && !matches!(u.host_str(), Some("127.0.0.1" | "localhost")) {
        anyhow::bail!("{what} base URL must use https");
    }
    Ok(u)
}

fn with_segments(base: &url::Url, segments: &[&str]) -> url::Url {
    let mut u = base.clone();
    if let Ok(mut p) = u.path_segments_mut() {
        p.pop_if_empty().extend(segments);
    }
    u
}

fn not_found_is_unknown<T>(r: PortResult<T>) -> PortResult<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(PortError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

fn int(v: &Value, pointer: &str) -> Option<i64> {
    v.pointer(pointer).and_then(Value::as_i64)
}

/// VirusTotal API v3 (`x-apikey`): `last_analysis_stats` malicious + suspicious engines are
/// the "positives": >1 high, >0 warning, 0 information.
pub struct VirusTotal {
    base: url::Url,
    rest: RestClient,
}

impl VirusTotal {
    /// A client for `base_url` (`https://www.virustotal.com`).
    pub fn new(base_url: &str, key: &Secret, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            base: base(base_url, "VirusTotal")?,
            rest: client("x-apikey", key, timeout),
        })
    }
}

#[async_trait]
impl Provider for VirusTotal {
    fn name(&self) -> &'static str {
        "virustotal"
    }
    fn supports(&self, kind: &str) -> bool {
        matches!(kind, "ipv4" | "ipv6" | "domain" | "url" | "filehash")
    }
    async fn check(&self, i: &Indicator) -> PortResult<Option<(TiSeverity, String)>> {
        let url_id;
        let (collection, id) = match i.kind.as_str() {
            "ipv4" | "ipv6" => ("ip_addresses", i.value.as_str()),
            "domain" => ("domains", i.value.as_str()),
            "filehash" => ("files", i.value.as_str()),
            _ => {
                url_id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&i.value);
                ("urls", url_id.as_str())
            }
        };
        let url = with_segments(&self.base, &["api", "v3", collection, id]);
        let Some(v) = not_found_is_unknown(
            self.rest
                .call(Method::GET, &url, None, &[], "VirusTotal look-up")
                .await,
        )?
        else {
            return Ok(None);
        };
        let stats = "/data/attributes/last_analysis_stats";
        let malicious = int(&v, &format!("{stats}/malicious")).ok_or_else(|| {
            PortError::Permanent("VirusTotal: answer has no last_analysis_stats".into())
        })?;
        let positives = malicious + int(&v, &format!("{stats}/suspicious")).unwrap_or(0);
        let total: i64 = v
            .pointer(stats)
            .and_then(Value::as_object)
            .map(|m| m.values().filter_map(Value::as_i64).sum())
            .unwrap_or(0);
        let level = match positives {
            p if p > 1 => TiSeverity::High,
            1 => TiSeverity::Warning,
            _ => TiSeverity::Information,
        };
        Ok(Some((
            level,
            format!("{positives}/{total} engines flag it"),
        )))
    }
}

/// AbuseIPDB API v2 check (`Key`): abuseConfidenceScore >50 high, >0 warning, else
/// information.
pub struct AbuseIpDb {
    base: url::Url,
    rest: RestClient,
}

impl AbuseIpDb {
    /// A client for `base_url` (`https://api.abuseipdb.com`).
    pub fn new(base_url: &str, key: &Secret, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            base: base(base_url, "AbuseIPDB")?,
            rest: client("key", key, timeout),
        })
    }
}

#[async_trait]
impl Provider for AbuseIpDb {
    fn name(&self) -> &'static str {
        "abuseipdb"
    }
    fn supports(&self, kind: &str) -> bool {
        matches!(kind, "ipv4" | "ipv6")
    }
    async fn check(&self, i: &Indicator) -> PortResult<Option<(TiSeverity, String)>> {
        let mut url = with_segments(&self.base, &["api", "v2", "check"]);
        url.query_pairs_mut()
            .append_pair("ipAddress", &i.value)
            .append_pair("maxAgeInDays", "90");
        let v = self
            .rest
            .call(
                Method::GET,
                &url,
                None,
                &[("accept", "application/json")],
                "AbuseIPDB check",
            )
            .await?;
        let score = int(&v, "/data/abuseConfidenceScore").ok_or_else(|| {
            PortError::Permanent("AbuseIPDB: answer has no abuseConfidenceScore".into())
        })?;
        let reports = int(&v, "/data/totalReports").unwrap_or(0);
        let level = match score {
            s if s > 50 => TiSeverity::High,
            s if s > 0 => TiSeverity::Warning,
            _ => TiSeverity::Information,
        };
        Ok(Some((
            level,
            format!("abuse confidence {score}%, {reports} report(s)"),
        )))
    }
}

/// GreyNoise community API v3 (`key`): classification "malicious" → high, else information;
/// 404 (not observed) → unknown.
pub struct GreyNoise {
    base: url::Url,
    rest: RestClient,
}

impl GreyNoise {
    /// A client for `base_url` (`https://api.greynoise.io`).
    pub fn new(base_url: &str, key: &Secret, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            base: base(base_url, "GreyNoise")?,
            rest: client("key", key, timeout),
        })
    }
}

#[async_trait]
impl Provider for GreyNoise {
    fn name(&self) -> &'static str {
        "greynoise"
    }
    fn supports(&self, kind: &str) -> bool {
        kind == "ipv4"
    }
    async fn check(&self, i: &Indicator) -> PortResult<Option<(TiSeverity, String)>> {
        let url = with_segments(&self.base, &["v3", "community", &i.value]);
        let Some(v) = not_found_is_unknown(
            self.rest
                .call(Method::GET, &url, None, &[], "GreyNoise look-up")
                .await,
        )?
        else {
            return Ok(None);
        };
        let class = v
            .get("classification")
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        let name = v.get("name").and_then(Value::as_str).unwrap_or("");
        let level = if class.eq_ignore_ascii_case("malicious") {
            TiSeverity::High
        } else {
            TiSeverity::Information
        };
        let riot = v.get("riot").and_then(Value::as_bool).unwrap_or(false);
        Ok(Some((
            level,
            format!(
                "classification {class}{}{}",
                if name.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", name.chars().take(80).collect::<String>())
                },
                if riot {
                    "; common business service"
                } else {
                    ""
                }
            ),
        )))
    }
}

/// AlienVault OTX API v1 (`X-OTX-API-KEY`): pulse count 0 information, 1 warning, ≥2 high.
pub struct Otx {
    base: url::Url,
    rest: RestClient,
}

impl Otx {
    /// A client for `base_url` (`https://otx.alienvault.com`).
    pub fn new(base_url: &str, key: &Secret, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            base: base(base_url, "OTX")?,
            rest: client("x-otx-api-key", key, timeout),
        })
    }
}

#[async_trait]
impl Provider for Otx {
    fn name(&self) -> &'static str {
        "otx"
    }
    fn supports(&self, kind: &str) -> bool {
        matches!(kind, "ipv4" | "ipv6" | "domain" | "url" | "filehash")
    }
    async fn check(&self, i: &Indicator) -> PortResult<Option<(TiSeverity, String)>> {
        let section = match i.kind.as_str() {
            "ipv4" => "IPv4",
            "ipv6" => "IPv6",
            "domain" => "domain",
            "filehash" => "file",
            _ => "url",
        };
        let url = with_segments(
            &self.base,
            &["api", "v1", "indicators", section, &i.value, "general"],
        );
        let Some(v) = not_found_is_unknown(
            self.rest
                .call(Method::GET, &url, None, &[], "OTX look-up")
                .await,
        )?
        else {
            return Ok(None);
        };
        let pulses = int(&v, "/pulse_info/count")
            .ok_or_else(|| PortError::Permanent("OTX: answer has no pulse_info.count".into()))?;
        let level = match pulses {
            0 => TiSeverity::Information,
            1 => TiSeverity::Warning,
            _ => TiSeverity::High,
        };
        Ok(Some((level, format!("{pulses} pulse(s)"))))
    }
}

/// Cache settings.
#[derive(Debug, Clone, Copy)]
pub struct CacheLimits {
    /// How long an answer is reused.
    pub ttl: Duration,
    /// Most answers kept.
    pub entries: usize,
}

type CacheKey = (&'static str, String, String);
/// A provider's answer: its level and detail, or `None` when it does not know the indicator.
type Verdict = Option<(TiSeverity, String)>;

/// The offline feed plus every enabled provider.
pub struct ProviderChain {
    offline: Arc<dyn ThreatIntel>,
    providers: Vec<Arc<dyn Provider>>,
    timeout: Duration,
    limits: CacheLimits,
    cache: std::sync::Mutex<HashMap<CacheKey, (Instant, Verdict)>>,
}

impl ProviderChain {
    /// A chain of `offline` and `providers`, each look-up bounded by `timeout`.
    pub fn new(
        offline: Arc<dyn ThreatIntel>,
        providers: Vec<Arc<dyn Provider>>,
        timeout: Duration,
        limits: CacheLimits,
    ) -> Self {
        Self {
            offline,
            providers,
            timeout,
            limits,
            cache: Default::default(),
        }
    }

    /// Names of the enabled providers.
    pub fn names(&self) -> Vec<&'static str> {
        self.providers.iter().map(|p| p.name()).collect()
    }

    fn cached(&self, key: &CacheKey) -> Option<Option<(TiSeverity, String)>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.limits.ttl)
            .map(|(_, v)| v.clone())
    }

    fn remember(&self, key: CacheKey, value: Option<(TiSeverity, String)>) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= self.limits.entries {
            let ttl = self.limits.ttl;
            cache.retain(|_, (at, _)| at.elapsed() < ttl);
            while cache.len() >= self.limits.entries {
                let Some(oldest) = cache
                    .iter()
                    .min_by_key(|(_, (at, _))| *at)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                cache.remove(&oldest);
            }
        }
        cache.insert(key, (Instant::now(), value));
    }

    async fn ask(&self, p: &Arc<dyn Provider>, i: &Indicator) -> Option<TiFinding> {
        let key = (p.name(), i.kind.clone(), i.value.clone());
        let answer = match self.cached(&key) {
            Some(hit) => Ok(hit),
            None => match tokio::time::timeout(self.timeout, p.check(i)).await {
                Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
                Ok(Err(e)) => Err(socwire_common::text::for_log(&e.to_string(), 200)),
                Ok(Ok(v)) => {
                    self.remember(key, v.clone());
                    Ok(v)
                }
            },
        };
        let (severity, details) = match answer {
            Ok(None) => return None,
            Ok(Some((s, d))) => (s, socwire_common::text::for_log(&d, 200)),
            Err(reason) => (TiSeverity::Information, format!("look-up failed: {reason}")),
        };
        Some(TiFinding {
            indicator: i.clone(),
            provider: p.name().to_string(),
            severity,
            details,
        })
    }
}

#[async_trait]
impl ThreatIntel for ProviderChain {
    async fn lookup(&self, indicator: &Indicator) -> PortResult<Vec<TiFinding>> {
        let mut findings = self.offline.lookup(indicator).await?;
        let asks = self
            .providers
            .iter()
            .filter(|p| p.supports(&indicator.kind))
            .map(|p| self.ask(p, indicator));
        findings.extend(futures::future::join_all(asks).await.into_iter().flatten());
        Ok(findings)
    }
}
