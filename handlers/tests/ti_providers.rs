//! Threat-intelligence providers against a local HTTP server answering with the documented
//! response shapes (VirusTotal v3, AbuseIPDB v2, GreyNoise community v3, OTX v1), and the
//! chain's screening, quotas, pauses on 429, caches and handling of huge, empty, HTML,
//! malformed and slow answers.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use socwire::local::OfflineThreatIntel;
use socwire::ports::{ThreatIntel, TiSeverity};
use socwire::providers::{
    AbuseIpDb, CacheLimits, GreyNoise, LookupError, Otx, Provider, ProviderChain, Quota, Secret,
    VirusTotal,
};
use socwire::sentinel::Indicator;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Known bad everywhere.
const BAD: &str = "185.220.101.4";
/// Reported a little.
const SCANNER: &str = "45.33.32.156";
/// Known, benign.
const BENIGN: &str = "9.9.9.9";

#[derive(Default)]
struct Seen {
    count: AtomicUsize,
    paths: Mutex<Vec<String>>,
}
type S = State<Arc<Seen>>;

impl Seen {
    fn note(&self, path: String) {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.paths.lock().unwrap().push(path);
    }
    fn n(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

fn key_ok(h: &HeaderMap, name: &str) -> bool {
    h.get(name).and_then(|v| v.to_str().ok()) == Some("test-key")
}

async fn vt(State(s): S, h: HeaderMap, Path((kind, id)): Path<(String, String)>) -> Response {
    s.note(format!("vt/{kind}/{id}"));
    if !key_ok(&h, "x-apikey") {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"code": "WrongCredentialsError"}})),
        )
            .into_response();
    }
    let stats = |m: i64, s: i64| {
        Json(
            json!({"data": {"id": id, "type": kind, "attributes": {"last_analysis_stats": {"harmless": 60, "malicious": m, "suspicious": s, "undetected": 10, "timeout": 0}}}}),
        )
    };
    match (kind.as_str(), id.as_str()) {
        ("ip_addresses", BAD) => stats(3, 1).into_response(),
        ("domains", "one-hit.com") => stats(1, 0).into_response(),
        ("domains", "suspicious-only.com") => stats(0, 5).into_response(),
        ("domains", "clean.org") => stats(0, 0).into_response(),
        ("domains", "malformed.net") => Json(json!({"data": {"attributes": {}}})).into_response(),
        ("domains", "huge.net") => (
            [("content-type", "application/json")],
            HUGE.get().expect("built before the server starts").clone(),
        )
            .into_response(),
        ("domains", "html.net") => (
            [("content-type", "text/html")],
            "<html><body>Service temporarily unavailable</body></html>",
        )
            .into_response(),
        ("domains", "empty.net") => (StatusCode::OK, "").into_response(),
        ("domains", "throttled.net") => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "120")],
            Json(json!({"error": {"code": "QuotaExceededError", "message": "quota exceeded"}})),
        )
            .into_response(),
        ("domains", "slow.net") => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            stats(5, 0).into_response()
        }
        ("urls", id) => {
            // v3 url ids are unpadded base64url of the URL.
            assert_eq!(id, "aHR0cDovL3BoaXNoLmV4YW1wbGUubmV0L2xvZ2lu");
            stats(7, 0).into_response()
        }
        _ => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"code": "NotFoundError", "message": "not found"}})),
        )
            .into_response(),
    }
}

async fn abuse(State(s): S, h: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    s.note(format!(
        "abuse/{}",
        q.get("ipAddress").cloned().unwrap_or_default()
    ));
    assert_eq!(h.get("accept").unwrap(), "application/json");
    if !key_ok(&h, "key") {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"errors": [{"detail": "Authentication failed.", "status": 401}]})),
        )
            .into_response();
    }
    let score = match q.get("ipAddress").map(String::as_str) {
        Some(BAD) => 100,
        Some(SCANNER) => 25,
        _ => 0,
    };
    Json(json!({"data": {"ipAddress": q["ipAddress"], "isPublic": true, "abuseConfidenceScore": score, "countryCode": "US", "totalReports": score / 10, "isWhitelisted": false}})).into_response()
}

async fn greynoise(State(s): S, h: HeaderMap, Path(ip): Path<String>) -> (StatusCode, Json<Value>) {
    s.note(format!("greynoise/{ip}"));
    assert!(key_ok(&h, "key"));
    match ip.as_str() {
        BAD => (
            StatusCode::OK,
            Json(
                json!({"ip": ip, "noise": true, "riot": false, "classification": "malicious", "name": "<script>alert(1)</script>", "last_seen": "2026-11-28", "message": "Success"}),
            ),
        ),
        BENIGN => (
            StatusCode::OK,
            Json(
                json!({"ip": ip, "noise": false, "riot": true, "classification": "benign", "name": "Scanner Co", "message": "Success"}),
            ),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            Json(
                json!({"ip": ip, "noise": false, "riot": false, "message": "IP not observed scanning the internet or contained in RIOT data set."}),
            ),
        ),
    }
}

async fn otx(
    State(s): S,
    h: HeaderMap,
    Path((section, value)): Path<(String, String)>,
) -> (StatusCode, Json<Value>) {
    s.note(format!("otx/{section}/{value}"));
    assert!(key_ok(&h, "x-otx-api-key"));
    let count = match (section.as_str(), value.as_str()) {
        ("IPv4", BAD) => 2,
        ("domain", "one-hit.com") => 1,
        ("hostname", "www.bad-host.com") => 3,
        _ => 0,
    };
    (
        StatusCode::OK,
        Json(
            json!({"indicator": value, "type": section, "pulse_info": {"count": count, "pulses": []}}),
        ),
    )
}

/// A 10 MB JSON answer, built once (building it in the handler would take longer than the
/// chain's timeout in a debug build).
static HUGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

async fn server() -> (String, Arc<Seen>) {
    HUGE.get_or_init(|| format!("{{\"pad\": \"{}\"}}", "x".repeat(10 * 1024 * 1024)));
    let seen = Arc::new(Seen::default());
    let app = Router::new()
        .route("/api/v3/{kind}/{id}", get(vt))
        .route("/api/v2/check", get(abuse))
        .route("/v3/community/{ip}", get(greynoise))
        .route("/api/v1/indicators/{section}/{value}/general", get(otx))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

fn ind(kind: &str, value: &str) -> Indicator {
    Indicator {
        kind: kind.into(),
        value: value.into(),
    }
}

const T: Duration = Duration::from_millis(500);

fn limits(entries: usize) -> CacheLimits {
    CacheLimits {
        ttl: Duration::from_secs(60),
        failure_ttl: Duration::from_secs(60),
        entries,
    }
}

fn chain(base: &str, quota: Quota, entries: usize) -> ProviderChain {
    let key = Secret("test-key".into());
    let providers: Vec<(Arc<dyn Provider>, Quota)> = vec![
        (
            Arc::new(VirusTotal::new(base, &key, Duration::from_secs(5)).unwrap()),
            quota,
        ),
        (
            Arc::new(AbuseIpDb::new(base, &key, Duration::from_secs(5)).unwrap()),
            Quota::default(),
        ),
        (
            Arc::new(GreyNoise::new(base, &key, Duration::from_secs(5)).unwrap()),
            Quota::default(),
        ),
        (
            Arc::new(Otx::new(base, &key, Duration::from_secs(5)).unwrap()),
            Quota::default(),
        ),
    ];
    let offline =
        Arc::new(OfflineThreatIntel::from_json(socwire::local::threat_intel_builtin()).unwrap());
    ProviderChain::new(
        offline,
        providers,
        Duration::from_millis(400),
        limits(entries),
    )
}

#[tokio::test]
async fn each_provider_maps_documented_answers_to_msticpy_levels() {
    let (base, _) = server().await;
    let key = Secret("test-key".into());
    let vt = VirusTotal::new(&base, &key, T).unwrap();
    let level = |r: Result<Option<(TiSeverity, String)>, LookupError>| r.unwrap().map(|x| x.0);
    assert_eq!(
        level(vt.check(&ind("ipv4", BAD)).await),
        Some(TiSeverity::High)
    );
    assert_eq!(
        level(vt.check(&ind("domain", "one-hit.com")).await),
        Some(TiSeverity::Warning)
    );
    assert_eq!(
        level(vt.check(&ind("domain", "clean.org")).await),
        Some(TiSeverity::Information)
    );
    // "Positives" are the engines that call it malicious, as MSTICPy counts them; engines that
    // only find it suspicious are named, not counted.
    let suspicious = vt
        .check(&ind("domain", "suspicious-only.com"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(suspicious.0, TiSeverity::Information);
    assert_eq!(suspicious.1, "0/75 engines flag it malicious, 5 suspicious");
    assert_eq!(
        level(
            vt.check(&ind("url", "http://phish.example.net/login"))
                .await
        ),
        Some(TiSeverity::High)
    );
    assert_eq!(
        vt.check(&ind("filehash", "00")).await.unwrap(),
        None,
        "404: not known"
    );
    let detail = vt.check(&ind("ipv4", BAD)).await.unwrap().unwrap().1;
    assert_eq!(detail, "3/74 engines flag it malicious, 1 suspicious");

    let abuse = AbuseIpDb::new(&base, &key, T).unwrap();
    assert_eq!(
        level(abuse.check(&ind("ipv4", BAD)).await),
        Some(TiSeverity::High)
    );
    assert_eq!(
        level(abuse.check(&ind("ipv4", SCANNER)).await),
        Some(TiSeverity::Warning)
    );
    assert_eq!(
        level(abuse.check(&ind("ipv4", "1.1.1.1")).await),
        Some(TiSeverity::Information)
    );
    assert!(!abuse.supports("domain"));

    let gn = GreyNoise::new(&base, &key, T).unwrap();
    assert_eq!(
        level(gn.check(&ind("ipv4", BAD)).await),
        Some(TiSeverity::High)
    );
    assert_eq!(
        level(gn.check(&ind("ipv4", BENIGN)).await),
        Some(TiSeverity::Information)
    );
    assert_eq!(gn.check(&ind("ipv4", "1.1.1.1")).await.unwrap(), None);

    let otx = Otx::new(&base, &key, T).unwrap();
    assert_eq!(
        level(otx.check(&ind("ipv4", BAD)).await),
        Some(TiSeverity::High)
    );
    assert_eq!(
        level(otx.check(&ind("domain", "one-hit.com")).await),
        Some(TiSeverity::Warning)
    );
    // A host name within a domain is asked in OTX's `hostname` section.
    assert_eq!(
        level(otx.check(&ind("domain", "www.bad-host.com")).await),
        Some(TiSeverity::High)
    );

    let wrong = AbuseIpDb::new(&base, &Secret("nope-secret".into()), T).unwrap();
    let err = wrong.check(&ind("ipv4", BAD)).await.unwrap_err();
    assert!(matches!(err, LookupError::Refused(_)), "{err}");
    assert!(
        err.to_string().contains("401") && !err.to_string().contains("nope-secret"),
        "{err}"
    );
    assert!(
        VirusTotal::new("http://provider.example", &key, T).is_err(),
        "https only"
    );
}

#[tokio::test]
async fn the_chain_reports_each_provider_caches_and_survives_bad_answers() {
    let (base, seen) = server().await;
    let chain = chain(&base, Quota::default(), 8);
    let found = chain.lookup(&ind("ipv4", BAD)).await.unwrap();
    let mut by: Vec<(String, TiSeverity)> = found
        .findings
        .iter()
        .map(|f| (f.provider.clone(), f.severity))
        .collect();
    by.sort();
    assert_eq!(
        by,
        [
            ("abuseipdb".to_string(), TiSeverity::High),
            ("greynoise".to_string(), TiSeverity::High),
            ("otx".to_string(), TiSeverity::High),
            ("virustotal".to_string(), TiSeverity::High),
        ]
    );
    let gn = found
        .findings
        .iter()
        .find(|f| f.provider == "greynoise")
        .unwrap();
    assert!(
        gn.details.contains("<script>"),
        "raw provider text is kept; reports escape it"
    );
    let asked = seen.n();
    chain.lookup(&ind("ipv4", BAD)).await.unwrap();
    assert_eq!(seen.n(), asked, "answered from the cache");

    // HTML, empty, 10 MB, malformed and slow answers: a clear "look-up failed" each, never a
    // retry, and the failure is remembered for a while rather than asked again.
    for (domain, why) in [
        ("html.net", "not JSON (text/html)"),
        ("empty.net", "empty answer"),
        ("huge.net", "over 1048576 bytes"),
        ("malformed.net", "last_analysis_stats"),
        ("slow.net", "no answer within 400 ms"),
    ] {
        let before = seen.n();
        let found = chain.lookup(&ind("domain", domain)).await.unwrap();
        let vt = found
            .findings
            .iter()
            .find(|f| f.provider == "virustotal")
            .unwrap();
        assert_eq!(vt.severity, TiSeverity::Information, "{domain}");
        assert!(
            vt.details.contains("look-up failed") && vt.details.contains(why),
            "{domain}: {}",
            vt.details
        );
        assert_eq!(
            seen.n() - before,
            2,
            "{domain}: one request to VirusTotal and one to OTX"
        );
        let before = seen.n();
        let again = chain.lookup(&ind("domain", domain)).await.unwrap();
        assert_eq!(seen.n(), before, "{domain}: the failure is cached");
        assert!(again
            .findings
            .iter()
            .any(|f| f.details.contains("look-up failed")));
    }
    // The cache stays within its bound however many indicators pass through.
    for n in 0..10 {
        chain
            .lookup(&ind("domain", &format!("d{n}.com")))
            .await
            .unwrap();
    }
    let before = seen.n();
    chain.lookup(&ind("domain", "d0.com")).await.unwrap();
    assert!(seen.n() > before, "the oldest entries were evicted");
}

#[tokio::test]
async fn private_and_unqualified_observables_never_reach_internet_providers() {
    let (base, seen) = server().await;
    let chain = chain(&base, Quota::default(), 100);
    for (kind, value, why) in [
        ("ipv4", "10.1.2.3", "private"),
        ("ipv4", "203.0.113.66", "documentation"),
        ("ipv6", "fe80::1", "link-local"),
        ("url", "http://192.168.1.10/admin", "private"),
        ("url", "http://intranet/login", "unqualified"),
        ("domain", "fin-ws-042.corp", "not a public name"),
        ("filehash", "00000000000000000000000000000000", "variety"),
    ] {
        let answer = chain.lookup(&ind(kind, value)).await.unwrap();
        let withheld = answer.withheld.unwrap_or_default();
        assert!(withheld.contains(why), "{value}: {withheld}");
        assert!(
            answer
                .findings
                .iter()
                .all(|f| f.provider.starts_with("offline")),
            "{value}"
        );
    }
    assert_eq!(seen.n(), 0, "{:?}", seen.paths.lock().unwrap());
    // The offline list still sees every indicator, private or not.
    let offline = chain.lookup(&ind("ipv4", "203.0.113.66")).await.unwrap();
    assert_eq!(offline.findings[0].provider, "offline:demo-blocklist");
}

#[tokio::test]
async fn quotas_and_429s_are_honoured_across_look_ups_and_reported_once() {
    let (base, seen) = server().await;
    // VirusTotal's public limits: 4 a minute. The chain waits at most 400 ms for a slot.
    let chain = chain(&base, Quota::VIRUSTOTAL_PUBLIC, 100);
    let mut skipped = Vec::new();
    for n in 0..7 {
        let a = chain
            .lookup(&ind("domain", &format!("q{n}.com")))
            .await
            .unwrap();
        skipped.extend(a.skipped);
    }
    let vt_calls = seen
        .paths
        .lock()
        .unwrap()
        .iter()
        .filter(|p| p.starts_with("vt/"))
        .count();
    assert_eq!(vt_calls, 4, "four a minute");
    assert_eq!(skipped.len(), 3, "{skipped:?}");
    assert!(
        skipped
            .iter()
            .all(|s| s.provider == "virustotal" && s.why.contains("4 look-ups a minute")),
        "{skipped:?}"
    );

    // A 429 with Retry-After pauses the provider for every later look-up, with no retry.
    let chain = chain_without_quota(&base);
    let before = seen.n();
    let a = chain.lookup(&ind("domain", "throttled.net")).await.unwrap();
    assert_eq!(
        seen.n() - before,
        2,
        "one VirusTotal request (not retried) and one OTX"
    );
    assert!(a.skipped[0].why.contains("429"), "{:?}", a.skipped);
    let before = seen.paths.lock().unwrap().len();
    let b = chain.lookup(&ind("domain", "clean.org")).await.unwrap();
    let after: Vec<String> = seen.paths.lock().unwrap()[before..].to_vec();
    assert!(
        after.iter().all(|p| !p.starts_with("vt/")),
        "paused: {after:?}"
    );
    assert_eq!(b.skipped.len(), 1);
    assert_eq!(
        b.skipped[0].why, a.skipped[0].why,
        "one reason, so one line in the report"
    );
}

fn chain_without_quota(base: &str) -> ProviderChain {
    chain(base, Quota::default(), 100)
}
