//! Threat-intelligence providers against a local HTTP server answering with the documented
//! response shapes (VirusTotal v3, AbuseIPDB v2, GreyNoise community v3, OTX v1), and the
//! chain's timeouts, cache and handling of huge, malformed and slow answers.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use socwire::local::OfflineThreatIntel;
use socwire::ports::{ThreatIntel, TiSeverity};
use socwire::providers::{
    AbuseIpDb, CacheLimits, GreyNoise, Otx, Provider, ProviderChain, Secret, VirusTotal,
};
use socwire::sentinel::Indicator;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Default)]
struct Seen(AtomicUsize);
type S = State<Arc<Seen>>;

fn key_ok(h: &HeaderMap, name: &str) -> bool {
    h.get(name).and_then(|v| v.to_str().ok()) == Some("test-key")
}

async fn vt(
    State(s): S,
    h: HeaderMap,
    Path((kind, id)): Path<(String, String)>,
) -> (StatusCode, Json<Value>) {
    s.0.fetch_add(1, Ordering::SeqCst);
    if !key_ok(&h, "x-apikey") {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"code": "WrongCredentialsError"}})),
        );
    }
    let stats = |m: i64, s: i64| json!({"data": {"id": id, "type": kind, "attributes": {"last_analysis_stats": {"harmless": 60, "malicious": m, "suspicious": s, "undetected": 10, "timeout": 0}}}});
    match (kind.as_str(), id.as_str()) {
        ("ip_addresses", "203.0.113.66") => (StatusCode::OK, Json(stats(3, 1))),
        ("domains", "one.example") => (StatusCode::OK, Json(stats(1, 0))),
        ("domains", "clean.example") => (StatusCode::OK, Json(stats(0, 0))),
        ("domains", "malformed.example") => {
            (StatusCode::OK, Json(json!({"data": {"attributes": {}}})))
        }
        ("domains", "huge.example") => (
            StatusCode::OK,
            Json(json!({"pad": "x".repeat(2 * 1024 * 1024)})),
        ),
        ("domains", "slow.example") => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            (StatusCode::OK, Json(stats(5, 0)))
        }
        ("urls", id) => {
            // v3 url ids are unpadded base64url of the URL.
            assert_eq!(id, "aHR0cDovL3BoaXNoLmV4YW1wbGUubmV0L2xvZ2lu");
            (StatusCode::OK, Json(stats(7, 0)))
        }
        _ => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"code": "NotFoundError", "message": "not found"}})),
        ),
    }
}

async fn abuse(
    State(s): S,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    s.0.fetch_add(1, Ordering::SeqCst);
    assert_eq!(h.get("accept").unwrap(), "application/json");
    if !key_ok(&h, "key") {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"errors": [{"detail": "Authentication failed.", "status": 401}]})),
        );
    }
    let score = match q.get("ipAddress").map(String::as_str) {
        Some("203.0.113.66") => 100,
        Some("198.51.100.23") => 25,
        _ => 0,
    };
    (
        StatusCode::OK,
        Json(
            json!({"data": {"ipAddress": q["ipAddress"], "isPublic": true, "abuseConfidenceScore": score, "countryCode": "US", "totalReports": score / 10, "isWhitelisted": false}}),
        ),
    )
}

async fn greynoise(State(s): S, h: HeaderMap, Path(ip): Path<String>) -> (StatusCode, Json<Value>) {
    s.0.fetch_add(1, Ordering::SeqCst);
    assert!(key_ok(&h, "key"));
    match ip.as_str() {
        "203.0.113.66" => (
            StatusCode::OK,
            Json(
                json!({"ip": ip, "noise": true, "riot": false, "classification": "malicious", "name": "<script>alert(1)</script>", "link": "https://viz.greynoise.io/ip/203.0.113.66", "last_seen": "2026-11-28", "message": "Success"}),
            ),
        ),
        "192.0.2.10" => (
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
    s.0.fetch_add(1, Ordering::SeqCst);
    assert!(key_ok(&h, "x-otx-api-key"));
    let count = match (section.as_str(), value.as_str()) {
        ("IPv4", "203.0.113.66") => 2,
        ("domain", "one.example") => 1,
        _ => 0,
    };
    (
        StatusCode::OK,
        Json(
            json!({"indicator": value, "type": section, "pulse_info": {"count": count, "pulses": []}}),
        ),
    )
}

async fn server() -> (String, Arc<Seen>) {
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

#[tokio::test]
async fn each_provider_maps_documented_answers_to_msticpy_levels() {
    let (base, _) = server().await;
    let key = Secret("test-key".into());
    let vt = VirusTotal::new(&base, &key, T).unwrap();
    let level = |r: Option<(TiSeverity, String)>| r.map(|x| x.0);
    assert_eq!(
        level(vt.check(&ind("ipv4", "203.0.113.66")).await.unwrap()),
        Some(TiSeverity::High)
    );
    assert_eq!(
        level(vt.check(&ind("domain", "one.example")).await.unwrap()),
        Some(TiSeverity::Warning)
    );
    assert_eq!(
        level(vt.check(&ind("domain", "clean.example")).await.unwrap()),
        Some(TiSeverity::Information)
    );
    assert_eq!(
        level(
            vt.check(&ind("url", "http://phish.example.net/login"))
                .await
                .unwrap()
        ),
        Some(TiSeverity::High)
    );
    assert_eq!(
        vt.check(&ind("filehash", "00")).await.unwrap(),
        None,
        "404: not known"
    );
    let detail = vt
        .check(&ind("ipv4", "203.0.113.66"))
        .await
        .unwrap()
        .unwrap()
        .1;
    assert_eq!(detail, "4/74 engines flag it");

    let abuse = AbuseIpDb::new(&base, &key, T).unwrap();
    assert_eq!(
        level(abuse.check(&ind("ipv4", "203.0.113.66")).await.unwrap()),
        Some(TiSeverity::High)
    );
    assert_eq!(
        level(abuse.check(&ind("ipv4", "198.51.100.23")).await.unwrap()),
        Some(TiSeverity::Warning)
    );
    assert_eq!(
        level(abuse.check(&ind("ipv4", "192.0.2.1")).await.unwrap()),
        Some(TiSeverity::Information)
    );
    assert!(!abuse.supports("domain"));

    let gn = GreyNoise::new(&base, &key, T).unwrap();
    assert_eq!(
        level(gn.check(&ind("ipv4", "203.0.113.66")).await.unwrap()),
        Some(TiSeverity::High)
    );
    assert_eq!(
        level(gn.check(&ind("ipv4", "192.0.2.10")).await.unwrap()),
        Some(TiSeverity::Information)
    );
    assert_eq!(gn.check(&ind("ipv4", "192.0.2.99")).await.unwrap(), None);

    let otx = Otx::new(&base, &key, T).unwrap();
    assert_eq!(
        level(otx.check(&ind("ipv4", "203.0.113.66")).await.unwrap()),
        Some(TiSeverity::High)
    );
    assert_eq!(
        level(otx.check(&ind("domain", "one.example")).await.unwrap()),
        Some(TiSeverity::Warning)
    );
    assert_eq!(
        level(otx.check(&ind("domain", "clean.example")).await.unwrap()),
        Some(TiSeverity::Information)
    );

    let wrong = AbuseIpDb::new(&base, &Secret("nope-secret".into()), T).unwrap();
    let err = wrong.check(&ind("ipv4", "203.0.113.66")).await.unwrap_err();
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
    let key = Secret("test-key".into());
    let providers: Vec<Arc<dyn Provider>> = vec![
        Arc::new(VirusTotal::new(&base, &key, Duration::from_secs(5)).unwrap()),
        Arc::new(AbuseIpDb::new(&base, &key, Duration::from_secs(5)).unwrap()),
        Arc::new(GreyNoise::new(&base, &key, Duration::from_secs(5)).unwrap()),
        Arc::new(Otx::new(&base, &key, Duration::from_secs(5)).unwrap()),
    ];
    let offline =
        Arc::new(OfflineThreatIntel::from_json(socwire::local::threat_intel_builtin()).unwrap());
    let chain = ProviderChain::new(
        offline,
        providers,
        Duration::from_millis(400),
        CacheLimits {
            ttl: Duration::from_secs(60),
            entries: 4,
        },
    );

    let found = chain.lookup(&ind("ipv4", "203.0.113.66")).await.unwrap();
    let mut by: Vec<(String, TiSeverity)> = found
        .iter()
        .map(|f| (f.provider.clone(), f.severity))
        .collect();
    by.sort();
    assert_eq!(
        by,
        [
            ("abuseipdb".to_string(), TiSeverity::High),
            ("greynoise".to_string(), TiSeverity::High),
            ("offline:demo-blocklist".to_string(), TiSeverity::High),
            ("otx".to_string(), TiSeverity::High),
            ("virustotal".to_string(), TiSeverity::High),
        ]
    );
    let gn = found.iter().find(|f| f.provider == "greynoise").unwrap();
    assert!(
        gn.details.contains("<script>"),
        "raw provider text is kept; reports escape it"
    );
    let asked = seen.0.load(Ordering::SeqCst);
    chain.lookup(&ind("ipv4", "203.0.113.66")).await.unwrap();
    assert_eq!(
        seen.0.load(Ordering::SeqCst),
        asked,
        "answered from the cache"
    );

    for (domain, why) in [
        ("huge.example", "over"),
        ("malformed.example", "last_analysis_stats"),
        ("slow.example", "no answer within 400 ms"),
    ] {
        let found = chain.lookup(&ind("domain", domain)).await.unwrap();
        let vt = found.iter().find(|f| f.provider == "virustotal").unwrap();
        assert_eq!(vt.severity, TiSeverity::Information, "{domain}");
        assert!(
            vt.details.contains("look-up failed") && vt.details.contains(why),
            "{domain}: {}",
            vt.details
        );
    }
    // The cache stays within its bound (4 entries) however many indicators pass through.
    for n in 0..10 {
        chain
            .lookup(&ind("domain", &format!("d{n}.example")))
            .await
            .unwrap();
    }
    let before = seen.0.load(Ordering::SeqCst);
    chain.lookup(&ind("domain", "d0.example")).await.unwrap();
    assert!(
        seen.0.load(Ordering::SeqCst) > before,
        "the oldest entries were evicted"
    );
}
