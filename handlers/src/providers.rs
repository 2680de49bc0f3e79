//! Threat-intelligence providers on the internet — VirusTotal (v3), AbuseIPDB (v2), GreyNoise
//! (community v3) and AlienVault OTX (v1) — each enabled by its API key setting and mapped to
//! MSTICPy's levels (its `msticpy/context/tiproviders` modules), behind one [`ProviderChain`]
//! that also holds the offline feed. Before anything leaves for the internet the chain screens
//! the indicator ([`crate::ioc::screen`]: no private address, no unqualified name); each
//! provider has a quota (a sliding minute and a UTC day, VirusTotal's public limits when its
//! key is marked public) and is paused as long as a 429 asks, for every invocation of this
//! process; answers are cached (failures for a short time); a provider that fails, stalls or
//! answers HTML, nothing or too much is reported as such instead of failing the triage.
//! Sentinel's own TI table is asked through the workspace port
//! ([`crate::ports::Question::ThreatIndicator`]).

use crate::azure::AdapterOptions;
use crate::ports::{PortResult, ThreatIntel, TiAnswer, TiFinding, TiSeverity, TiSkip};
use crate::sentinel::Indicator;
use async_trait::async_trait;
use base64::Engine as _;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
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

/// Why a provider gave no verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// The provider asked us to slow down (HTTP 429), for `retry_after` when it said how long.
    Throttled {
        /// Its `Retry-After`.
        retry_after: Option<Duration>,
        /// What it said.
        detail: String,
    },
    /// The key was refused (HTTP 401 or 403).
    Refused(String),
    /// Anything else: no answer, a server error, an answer that is not what the API
    /// documents (HTML, empty, too large, without the expected fields).
    Failed(String),
}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LookupError::Throttled {
                retry_after,
                detail,
            } => match retry_after {
                Some(d) => write!(
                    f,
                    "throttled (HTTP 429, retry after {} s): {detail}",
                    d.as_secs()
                ),
                None => write!(f, "throttled (HTTP 429): {detail}"),
            },
            LookupError::Refused(t) | LookupError::Failed(t) => f.write_str(t),
        }
    }
}

/// A provider's answer: its level and detail, or `None` when it does not know the indicator.
pub type Verdict = Option<(TiSeverity, String)>;

/// One provider's verdict on one indicator, before it becomes a finding.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Its name in findings and reports.
    fn name(&self) -> &'static str;
    /// Whether it can look up indicators of `kind`.
    fn supports(&self, kind: &str) -> bool;
    /// `None` when the provider does not know the indicator.
    async fn check(&self, indicator: &Indicator) -> Result<Verdict, LookupError>;
}

/// Largest provider answer read.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// A GET-with-API-key client: one attempt per look-up (a failure is cached for a short time
/// instead of retried at once, and a 429 pauses the provider), answers up to 1 MiB, no
/// redirects, errors that never carry the key.
struct ProviderHttp {
    options: AdapterOptions,
    http: reqwest::Client,
    header: &'static str,
    key: Secret,
}

impl ProviderHttp {
    fn new(header: &'static str, key: &Secret, timeout: Duration) -> Self {
        let options = AdapterOptions {
            timeout,
            max_retries: 0,
            max_body: MAX_ANSWER_BYTES,
            ..AdapterOptions::json_api()
        };
        Self {
            http: options.client(),
            options,
            header,
            key: key.clone(),
        }
    }

    /// The JSON answer to `GET url`, `None` for a 404.
    async fn get(
        &self,
        url: &url::Url,
        headers: &[(&str, &str)],
        what: &str,
    ) -> Result<Option<Value>, LookupError> {
        let reply = crate::azure::send_retrying(&self.options, what, false, |_| async {
            let mut r = self
                .http
                .get(url.clone())
                .header(self.header, self.key.0.as_str());
            for (name, value) in headers {
                r = r.header(*name, *value);
            }
            Ok(r)
        })
        .await
        .map_err(|e| LookupError::Failed(e.to_string()))?;
        let status = reply.status.as_u16();
        let body = || {
            socwire_common::text::for_log(&socwire_common::text::redact_secrets(&reply.text()), 200)
        };
        match status {
            200..=299 => {}
            404 => return Ok(None),
            429 => {
                return Err(LookupError::Throttled {
                    retry_after: crate::azure::retry_after(|name| {
                        reply
                            .headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string)
                    }),
                    detail: body(),
                })
            }
            401 | 403 => {
                return Err(LookupError::Refused(format!(
                    "{what}: the key was refused (HTTP {status})"
                )))
            }
            _ => {
                return Err(LookupError::Failed(format!(
                    "{what}: HTTP {status}: {}",
                    body()
                )))
            }
        }
        if reply.body.iter().all(u8::is_ascii_whitespace) {
            return Err(LookupError::Failed(format!("{what}: empty answer")));
        }
        serde_json::from_slice(&reply.body).map(Some).map_err(|_| {
            let kind = reply
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("no content type");
            LookupError::Failed(format!(
                "{what}: answer is not JSON ({})",
                socwire_common::text::for_log(kind, 60)
            ))
        })
    }
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

fn int(v: &Value, pointer: &str) -> Option<i64> {
    v.pointer(pointer).and_then(Value::as_i64)
}

/// VirusTotal API v3 (`x-apikey`). The "positives" MSTICPy grades are the engines that call
/// the object malicious (`last_analysis_stats.malicious`, the v2 API's `positives`; MSTICPy's
/// v3 lookup counts the same): >1 high, 1 warning, 0 information. Engines that only find it
/// suspicious are reported in the detail, not counted.
pub struct VirusTotal {
    base: url::Url,
    http: ProviderHttp,
}

impl VirusTotal {
    /// A client for `base_url` (`https://www.virustotal.com`).
    pub fn new(base_url: &str, key: &Secret, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            base: base(base_url, "VirusTotal")?,
            http: ProviderHttp::new("x-apikey", key, timeout),
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
    async fn check(&self, i: &Indicator) -> Result<Verdict, LookupError> {
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
        let Some(v) = self.http.get(&url, &[], "VirusTotal look-up").await? else {
            return Ok(None);
        };
        let stats = "/data/attributes/last_analysis_stats";
        let malicious = int(&v, &format!("{stats}/malicious")).ok_or_else(|| {
            LookupError::Failed("VirusTotal: answer has no last_analysis_stats".into())
        })?;
        let suspicious = int(&v, &format!("{stats}/suspicious")).unwrap_or(0);
        let total: i64 = v
            .pointer(stats)
            .and_then(Value::as_object)
            .map(|m| m.values().filter_map(Value::as_i64).sum())
            .unwrap_or(0);
        let level = match malicious {
            p if p > 1 => TiSeverity::High,
            1 => TiSeverity::Warning,
            _ => TiSeverity::Information,
        };
        let also = if suspicious > 0 {
            format!(", {suspicious} suspicious")
        } else {
            String::new()
        };
        Ok(Some((
            level,
            format!("{malicious}/{total} engines flag it malicious{also}"),
        )))
    }
}

/// AbuseIPDB API v2 check (`Key`): abuseConfidenceScore >50 high, >0 warning, else
/// information.
pub struct AbuseIpDb {
    base: url::Url,
    http: ProviderHttp,
}

impl AbuseIpDb {
    /// A client for `base_url` (`https://api.abuseipdb.com`).
    pub fn new(base_url: &str, key: &Secret, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            base: base(base_url, "AbuseIPDB")?,
            http: ProviderHttp::new("key", key, timeout),
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
    async fn check(&self, i: &Indicator) -> Result<Verdict, LookupError> {
        let mut url = with_segments(&self.base, &["api", "v2", "check"]);
        url.query_pairs_mut()
            .append_pair("ipAddress", &i.value)
            .append_pair("maxAgeInDays", "90");
        let v = self
            .http
            .get(&url, &[("accept", "application/json")], "AbuseIPDB check")
            .await?
            .ok_or_else(|| LookupError::Failed("AbuseIPDB check: HTTP 404".into()))?;
        let score = int(&v, "/data/abuseConfidenceScore").ok_or_else(|| {
            LookupError::Failed("AbuseIPDB: answer has no abuseConfidenceScore".into())
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
    http: ProviderHttp,
}

impl GreyNoise {
    /// A client for `base_url` (`https://api.greynoise.io`).
    pub fn new(base_url: &str, key: &Secret, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            base: base(base_url, "GreyNoise")?,
            http: ProviderHttp::new("key", key, timeout),
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
    async fn check(&self, i: &Indicator) -> Result<Verdict, LookupError> {
        let url = with_segments(&self.base, &["v3", "community", &i.value]);
        let Some(v) = self.http.get(&url, &[], "GreyNoise look-up").await? else {
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
                "classification {}{}{}",
                socwire_common::text::for_log(class, 40),
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
/// A registered domain goes to the `domain` section, a host name within one (`www.evil.com`)
/// to `hostname` (the OTX SDK's indicator types).
pub struct Otx {
    base: url::Url,
    http: ProviderHttp,
}

impl Otx {
    /// A client for `base_url` (`https://otx.alienvault.com`).
    pub fn new(base_url: &str, key: &Secret, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            base: base(base_url, "OTX")?,
            http: ProviderHttp::new("x-otx-api-key", key, timeout),
        })
    }

    /// The OTX indicator section for `i`.
    pub fn section(i: &Indicator) -> &'static str {
        match i.kind.as_str() {
            "ipv4" => "IPv4",
            "ipv6" => "IPv6",
            "domain" if crate::ioc::registrable(&i.value).as_deref() == Some(i.value.as_str()) => {
                "domain"
            }
            "domain" => "hostname",
            "filehash" => "file",
            _ => "url",
        }
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
    async fn check(&self, i: &Indicator) -> Result<Verdict, LookupError> {
        let url = with_segments(
            &self.base,
            &[
                "api",
                "v1",
                "indicators",
                Self::section(i),
                &i.value,
                "general",
            ],
        );
        let Some(v) = self.http.get(&url, &[], "OTX look-up").await? else {
            return Ok(None);
        };
        let pulses = int(&v, "/pulse_info/count")
            .ok_or_else(|| LookupError::Failed("OTX: answer has no pulse_info.count".into()))?;
        let level = match pulses {
            0 => TiSeverity::Information,
            1 => TiSeverity::Warning,
            _ => TiSeverity::High,
        };
        Ok(Some((level, format!("{pulses} pulse(s)"))))
    }
}

/// How many look-ups a provider's key allows: in any sliding minute, and per UTC day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    /// Look-ups in any 60 seconds.
    pub per_minute: Option<u32>,
    /// Look-ups per UTC day.
    pub per_day: Option<u32>,
}

impl Quota {
    /// VirusTotal's public API: 4 requests a minute, 500 a day (its "Public vs Premium API"
    /// page).
    pub const VIRUSTOTAL_PUBLIC: Quota = Quota {
        per_minute: Some(4),
        per_day: Some(500),
    };
}

impl std::str::FromStr for Quota {
    type Err = String;
    /// `4/min,500/day` (also `4/m`, `500/d`), or `none`.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut q = Quota::default();
        if s.trim().eq_ignore_ascii_case("none") {
            return Ok(q);
        }
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (n, unit) = part
                .split_once('/')
                .ok_or_else(|| format!("{part:?}: write N/min or N/day"))?;
            let n: u32 = n
                .trim()
                .parse()
                .map_err(|_| format!("{part:?}: {n:?} is not a whole number"))?;
            if n == 0 {
                return Err(format!("{part:?}: a quota of 0 would never ask"));
            }
            match unit.trim().to_ascii_lowercase().as_str() {
                "m" | "min" | "minute" => q.per_minute = Some(n),
                "d" | "day" => q.per_day = Some(n),
                other => return Err(format!("{part:?}: unit {other:?} is not min or day")),
            }
        }
        Ok(q)
    }
}

/// Whether a look-up may go now.
enum Admit {
    /// Yes, after this wait (a slot that frees within the allowed wait is reserved).
    After(Duration),
    /// No: the provider is not asked, for this reason.
    Skip(String),
}

#[derive(Default)]
struct GateState {
    /// Times of the look-ups of the last minute (and reserved ones).
    recent: VecDeque<Instant>,
    /// The UTC day counted, and its count.
    day: Option<(chrono::NaiveDate, u32)>,
    /// Paused until, and why.
    paused: Option<(Instant, String)>,
}

/// A provider's quota and pause, shared by every invocation of this process.
struct Gate {
    quota: Quota,
    state: std::sync::Mutex<GateState>,
}

const MINUTE: Duration = Duration::from_secs(60);

impl Gate {
    fn new(quota: Quota) -> Self {
        Self {
            quota,
            state: Default::default(),
        }
    }

    fn admit(&self, max_wait: Duration) -> Admit {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if let Some((until, why)) = &st.paused {
            if *until > now {
                return Admit::Skip(why.clone());
            }
            st.paused = None;
        }
        let today = chrono::Utc::now().date_naive();
        let used_today = match st.day {
            Some((d, n)) if d == today => n,
            _ => 0,
        };
        if let Some(limit) = self.quota.per_day {
            if used_today >= limit {
                return Admit::Skip(format!(
                    "its daily quota of {limit} look-ups is used up (it resets at 00:00 UTC)"
                ));
            }
        }
        let at = match self.quota.per_minute {
            None => now,
            Some(limit) => {
                while st.recent.front().is_some_and(|t| *t + MINUTE <= now) {
                    st.recent.pop_front();
                }
                let limit = limit as usize;
                if st.recent.len() < limit {
                    now
                } else {
                    let frees = st.recent[st.recent.len() - limit] + MINUTE;
                    if frees.saturating_duration_since(now) > max_wait {
                        return Admit::Skip(format!(
                            "its quota of {limit} look-ups a minute is used up"
                        ));
                    }
                    frees
                }
            }
        };
        if self.quota.per_minute.is_some() {
            st.recent.push_back(at);
        }
        st.day = Some((today, used_today + 1));
        Admit::After(at.saturating_duration_since(now))
    }

    fn pause(&self, for_: Duration, why: String) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let until = Instant::now() + for_;
        if st.paused.as_ref().is_none_or(|(u, _)| *u < until) {
            st.paused = Some((until, why));
        }
    }
}

/// Cache settings.
#[derive(Debug, Clone, Copy)]
pub struct CacheLimits {
    /// How long an answer is reused.
    pub ttl: Duration,
    /// How long a failed look-up is remembered (not asked again) — short, so a provider that
    /// is down is not asked for every indicator of every incident.
    pub failure_ttl: Duration,
    /// Most answers kept.
    pub entries: usize,
}

/// Longest pause a provider's `Retry-After` can ask for.
const MAX_PAUSE: Duration = Duration::from_secs(24 * 3600);
/// Pause after a 429 without `Retry-After` (VirusTotal sends none).
const DEFAULT_PAUSE: Duration = Duration::from_secs(60);

type CacheKey = (&'static str, String, String);
type Cached = (Instant, Result<Verdict, String>);

/// The outcome of asking one provider.
enum Asked {
    Found(TiFinding),
    Unknown,
    Skipped(TiSkip),
}

/// The offline feed plus every enabled provider.
pub struct ProviderChain {
    offline: Arc<dyn ThreatIntel>,
    providers: Vec<(Arc<dyn Provider>, Gate)>,
    timeout: Duration,
    limits: CacheLimits,
    cache: std::sync::Mutex<HashMap<CacheKey, Cached>>,
}

impl ProviderChain {
    /// A chain of `offline` and `providers` (each with its quota), each look-up bounded by
    /// `timeout` (and a look-up waits at most that long for a quota slot).
    pub fn new(
        offline: Arc<dyn ThreatIntel>,
        providers: Vec<(Arc<dyn Provider>, Quota)>,
        timeout: Duration,
        limits: CacheLimits,
    ) -> Self {
        Self {
            offline,
            providers: providers
                .into_iter()
                .map(|(p, q)| (p, Gate::new(q)))
                .collect(),
            timeout,
            limits,
            cache: Default::default(),
        }
    }

    /// Names of the enabled providers.
    pub fn names(&self) -> Vec<&'static str> {
        self.providers.iter().map(|(p, _)| p.name()).collect()
    }

    fn cached(&self, key: &CacheKey) -> Option<Result<Verdict, String>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(key).and_then(|(at, v)| {
            let ttl = if v.is_ok() {
                self.limits.ttl
            } else {
                self.limits.failure_ttl
            };
            (at.elapsed() < ttl).then(|| v.clone())
        })
    }

    fn remember(&self, key: CacheKey, value: Result<Verdict, String>) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= self.limits.entries {
            let (ttl, failure_ttl) = (self.limits.ttl, self.limits.failure_ttl);
            cache.retain(|_, (at, v)| at.elapsed() < if v.is_ok() { ttl } else { failure_ttl });
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

    async fn ask(&self, p: &Arc<dyn Provider>, gate: &Gate, i: &Indicator) -> Asked {
        let key = (p.name(), i.kind.clone(), i.value.clone());
        let skip = |why: String| {
            Asked::Skipped(TiSkip {
                provider: p.name().to_string(),
                why,
            })
        };
        let answer = match self.cached(&key) {
            Some(hit) => hit,
            None => {
                match gate.admit(self.timeout) {
                    Admit::Skip(why) => return skip(why),
                    Admit::After(wait) if !wait.is_zero() => tokio::time::sleep(wait).await,
                    Admit::After(_) => {}
                }
                let result = match tokio::time::timeout(self.timeout, p.check(i)).await {
                    Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
                    Ok(Ok(v)) => Ok(v),
                    Ok(Err(LookupError::Throttled { retry_after, .. })) => {
                        let pause = retry_after.unwrap_or(DEFAULT_PAUSE).min(MAX_PAUSE);
                        let until = chrono::Utc::now()
                            + chrono::Duration::from_std(pause).unwrap_or_default();
                        let why = format!(
                            "it answered 429 (too many requests) and is not asked until {}",
                            until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                        );
                        gate.pause(pause, why.clone());
                        return skip(why);
                    }
                    Ok(Err(LookupError::Refused(detail))) => {
                        let why = format!(
                            "{}; not asked for {} s",
                            socwire_common::text::for_log(&detail, 120),
                            self.limits.failure_ttl.as_secs()
                        );
                        gate.pause(self.limits.failure_ttl, why.clone());
                        return skip(why);
                    }
                    Ok(Err(LookupError::Failed(detail))) => {
                        Err(socwire_common::text::for_log(&detail, 200))
                    }
                };
                self.remember(key, result.clone());
                result
            }
        };
        let (severity, details) = match answer {
            Ok(None) => return Asked::Unknown,
            Ok(Some((s, d))) => (s, socwire_common::text::for_log(&d, 200)),
            Err(reason) => (TiSeverity::Information, format!("look-up failed: {reason}")),
        };
        Asked::Found(TiFinding {
            indicator: i.clone(),
            provider: p.name().to_string(),
            severity,
            details,
        })
    }
}

#[async_trait]
impl ThreatIntel for ProviderChain {
    async fn lookup(&self, indicator: &Indicator) -> PortResult<TiAnswer> {
        let mut answer = self.offline.lookup(indicator).await?;
        let mut asked: Vec<&(Arc<dyn Provider>, Gate)> = self
            .providers
            .iter()
            .filter(|(p, _)| p.supports(&indicator.kind))
            .collect();
        if asked.is_empty() {
            return Ok(answer);
        }
        if let Err(why) = crate::ioc::screen(indicator) {
            answer.withheld = Some(why);
            asked.clear();
        }
        let outcomes =
            futures::future::join_all(asked.iter().map(|(p, gate)| self.ask(p, gate, indicator)))
                .await;
        for outcome in outcomes {
            match outcome {
                Asked::Found(f) => answer.findings.push(f),
                Asked::Unknown => {}
                Asked::Skipped(s) => answer.skipped.push(s),
            }
        }
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_parse_and_a_sliding_minute_is_kept() {
        assert_eq!(
            "4/min, 500/day".parse::<Quota>().unwrap(),
            Quota::VIRUSTOTAL_PUBLIC
        );
        assert_eq!("none".parse::<Quota>().unwrap(), Quota::default());
        for bad in ["4", "0/min", "4/hour", "x/min"] {
            assert!(bad.parse::<Quota>().is_err(), "{bad}");
        }
        let gate = Gate::new(Quota::VIRUSTOTAL_PUBLIC);
        for _ in 0..4 {
            assert!(matches!(gate.admit(Duration::ZERO), Admit::After(d) if d.is_zero()));
        }
        // The fifth look-up of the minute waits for the first slot to free, or is skipped
        // when it may not wait that long.
        assert!(
            matches!(gate.admit(Duration::from_secs(1)), Admit::Skip(why) if why.contains("4 look-ups a minute"))
        );
        assert!(
            matches!(gate.admit(Duration::from_secs(61)), Admit::After(d) if d > Duration::from_secs(50))
        );
        let daily = Gate::new(Quota {
            per_minute: None,
            per_day: Some(2),
        });
        assert!(matches!(daily.admit(Duration::ZERO), Admit::After(_)));
        assert!(matches!(daily.admit(Duration::ZERO), Admit::After(_)));
        assert!(
            matches!(daily.admit(Duration::ZERO), Admit::Skip(why) if why.contains("daily quota of 2"))
        );
        gate.pause(Duration::from_secs(30), "paused".into());
        assert!(
            matches!(gate.admit(Duration::from_secs(120)), Admit::Skip(why) if why == "paused")
        );
    }

    #[test]
    fn otx_sections_tell_domains_from_host_names() {
        let d = |v: &str| Indicator {
            kind: "domain".into(),
            value: v.into(),
        };
        assert_eq!(Otx::section(&d("evil.com")), "domain");
        assert_eq!(Otx::section(&d("evil.co.uk")), "domain");
        assert_eq!(Otx::section(&d("www.evil.com")), "hostname");
        assert_eq!(Otx::section(&d("cdn.a.evil.co.uk")), "hostname");
    }
}
