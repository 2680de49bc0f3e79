//! `cargo bench -p socwire --bench triage`: incident triage end to end on the local adapters
//! (SQLite Sentinel, ledger and workspace, report files), through the handler over loopback
//! HTTP as the host calls it, 16 invocations in flight (the Storage queue trigger's default
//! batch size). Latency is per invocation: the request is handed to the function → the
//! verdict is applied and recorded (severity, comment, report, ledger). Broker time is not
//! included (see the foundation bench for the local queue). Two runs:
//!
//! 1. offline threat intelligence only: 10,000 incidents with 1–50 entities each (every kind,
//!    some indicators on the offline lists) — the run earlier figures were measured with;
//! 2. the four internet providers on a local mock server, VirusTotal's key marked public (4
//!    look-ups a minute), the mock answering some look-ups with 429 + Retry-After, some slowly,
//!    some with HTML: 5,000 incidents whose indicators are public addresses, names and URLs,
//!    with descriptions holding more (defanged) indicators.
//!
//! Prints numbers; asserts only that every incident was triaged.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use socwire::context::Context;
use socwire::local::SqliteIncidentStore;
use socwire::sentinel::{Entity, Incident, IncidentProperties, Severity};
use socwire::settings::Settings;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const INCIDENTS: usize = 10_000;
const INCIDENTS_WITH_PROVIDERS: usize = 5_000;
const IN_FLIGHT: usize = 16;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1000.0
}

/// A small deterministic generator (xorshift), so runs are comparable.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The first run's entities (unchanged since the bench was written).
fn entity(rng: &mut Rng, n: usize) -> Entity {
    let (kind, props) = match rng.below(10) {
        0 => {
            let known = ["203.0.113.66", "198.51.100.23", "192.0.2.10"][rng.below(3) as usize];
            ("Ip", json!({ "address": known }))
        }
        1 => (
            "Ip",
            json!({"address": format!("10.{}.{}.{}", rng.below(255), rng.below(255), rng.below(255))}),
        ),
        2 => (
            "Host",
            json!({"hostName": format!("WS-{:04}", rng.below(500)), "dnsDomain": "corp.example"}),
        ),
        3 => (
            "Account",
            json!({"accountName": format!("user{}", rng.below(2000)), "upnSuffix": "corp.example"}),
        ),
        4 => (
            "DnsResolution",
            json!({"domainName": format!("site{}.example", rng.below(5000))}),
        ),
        5 => (
            "Url",
            json!({"url": format!("https://cdn{}.example/p/{n}", rng.below(3000))}),
        ),
        6 => (
            "FileHash",
            json!({"algorithm": "SHA256", "hashValue": format!("{:064x}", rng.next() as u128 * 7919)}),
        ),
        7 => (
            "Process",
            json!({"commandLine": "powershell -nop", "host": {"properties": {"hostName": format!("WS-{:04}", rng.below(500))}}}),
        ),
        8 => (
            "MailMessage",
            json!({"sender": format!("a@mail{}.example", rng.below(900)), "urls": [format!("http://l{}.example/x", rng.below(900))]}),
        ),
        _ => ("CloudApplication", json!({"appName": "Office 365"})),
    };
    Entity::new(kind, props)
}

/// The second run's entities: public values, so the providers are asked.
fn public_entity(rng: &mut Rng, n: usize) -> Entity {
    let (kind, props) = match rng.below(8) {
        0 | 1 => (
            "Ip",
            json!({"address": format!("45.{}.{}.{}", rng.below(64), rng.below(250), 1 + rng.below(250))}),
        ),
        2 => (
            "DnsResolution",
            json!({"domainName": format!("www.site{}.com", rng.below(3000))}),
        ),
        3 => (
            "Url",
            json!({"url": format!("https://cdn{}.net/p/{n}", rng.below(2000))}),
        ),
        4 => (
            "FileHash",
            json!({"algorithm": "SHA256", "hashValue": format!("{:064x}", rng.next() as u128 * 7919)}),
        ),
        5 => (
            "Process",
            json!({"commandLine": format!("powershell -nop -c \"iwr hxxp://dl{}[.]org/a.ps1\"", rng.below(500))}),
        ),
        6 => (
            "Host",
            json!({"hostName": format!("WS-{:04}", rng.below(500))}),
        ),
        _ => (
            "Ip",
            json!({"address": format!("10.{}.{}.{}", rng.below(255), rng.below(255), rng.below(255))}),
        ),
    };
    Entity::new(kind, props)
}

#[derive(Default)]
struct Mock {
    requests: AtomicU64,
    throttled: AtomicU64,
    html: AtomicU64,
}

type S = State<Arc<Mock>>;

impl Mock {
    /// Every 97th request is answered 429 with Retry-After 1 s, every 89th with HTML, every
    /// 83rd after 50 ms; the rest at once.
    async fn answer(&self, ok: serde_json::Value) -> Response {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        if n % 97 == 96 {
            self.throttled.fetch_add(1, Ordering::Relaxed);
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "1")],
                "{\"error\":{\"code\":\"QuotaExceededError\"}}",
            )
                .into_response();
        }
        if n % 89 == 88 {
            self.html.fetch_add(1, Ordering::Relaxed);
            return ([("content-type", "text/html")], "<html>busy</html>").into_response();
        }
        if n % 83 == 82 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Json(ok).into_response()
    }
}

async fn vt(State(m): S, _h: HeaderMap, Path((_kind, id)): Path<(String, String)>) -> Response {
    let bad = id.len() % 7 == 0;
    m.answer(json!({"data": {"attributes": {"last_analysis_stats": {"harmless": 60, "malicious": if bad { 3 } else { 0 }, "suspicious": 0, "undetected": 10}}}})).await
}

async fn abuse(State(m): S, Query(q): Query<HashMap<String, String>>) -> Response {
    let score = q.get("ipAddress").map_or(0, |ip| ip.len() as i64 * 7 % 101);
    m.answer(json!({"data": {"abuseConfidenceScore": score, "totalReports": score / 10}}))
        .await
}

async fn greynoise(State(m): S, Path(ip): Path<String>) -> Response {
    let class = if ip.ends_with('7') {
        "malicious"
    } else {
        "benign"
    };
    m.answer(json!({"ip": ip, "classification": class, "riot": false}))
        .await
}

async fn otx(State(m): S, Path((_s, value)): Path<(String, String)>) -> Response {
    m.answer(json!({"pulse_info": {"count": value.len() % 3}}))
        .await
}

fn seed_incidents(
    dir: &std::path::Path,
    count: usize,
    rng: &mut Rng,
    make: fn(&mut Rng, usize) -> Entity,
    describe: bool,
) -> (Vec<socwire::sentinel::IncidentId>, usize) {
    let store = SqliteIncidentStore::open(&dir.join("sentinel.sqlite3")).unwrap();
    let mut ids = Vec::with_capacity(count);
    let mut entities_total = 0;
    for n in 0..count {
        let id = socwire::demo::incident_id(n + 1);
        let entities_count = 1 + rng.below(50) as usize;
        entities_total += entities_count;
        let entities: Vec<Entity> = (0..entities_count).map(|i| make(rng, i)).collect();
        let description = describe.then(|| {
            format!(
                "Beacon to hxxps://c2-{}[.]info/gate from 185.220.{}.{}; dropper {:032x}",
                rng.below(400),
                rng.below(100),
                1 + rng.below(250),
                rng.next() as u128 * 31
            )
        });
        let incident = Incident {
            id: id.arm_id().into(),
            name: id.name().into(),
            etag: None,
            properties: IncidentProperties {
                title: format!("Incident {n}"),
                severity: [Severity::Low, Severity::Medium, Severity::High][n % 3],
                status: "New".into(),
                description,
                incident_number: Some(n as i64),
                other: Default::default(),
            },
        };
        store.seed(&incident, &entities).unwrap();
        ids.push(id);
    }
    socwire::demo::seed_workspace(
        &socwire::local::SqliteWorkspace::open(&dir.join("workspace.sqlite3")).unwrap(),
    )
    .unwrap();
    (ids, entities_total)
}

async fn run(
    label: &str,
    settings: Settings,
    dir: &std::path::Path,
    ids: Vec<socwire::sentinel::IncidentId>,
) {
    let ctx = Arc::new(Context::from_settings(&settings).unwrap());
    let app = socwire::serve::app(ctx, settings.max_body_bytes);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let url = format!("http://{addr}/triage-incident");
    let client = reqwest::Client::new();
    let total = ids.len();
    let queue = Arc::new(std::sync::Mutex::new(ids));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..IN_FLIGHT {
        let (client, url, queue) = (client.clone(), url.clone(), queue.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let Some(id) = queue.lock().unwrap().pop() else {
                    break;
                };
                let body = json!({"Data": {"request": serde_json::to_string(id.arm_id()).unwrap()},
                    "Metadata": {"DequeueCount": "1", "Id": "\"m\""}})
                .to_string();
                let t = Instant::now();
                let r = client.post(&url).body(body).send().await.unwrap();
                let status = r.status();
                let text = r.text().await.unwrap();
                assert!(status.is_success(), "{status}: {text}");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort();
    let ledger = socwire::local::SqliteLedger::open(&dir.join("ledger.sqlite3")).unwrap();
    let triaged = ledger.count("triage:v1:").unwrap();
    assert_eq!(triaged as usize, total, "every incident triaged");
    println!(
        "{label}: {} incidents in {secs:.2} s = {:.0} incidents/s; per invocation p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({IN_FLIGHT} in flight, {} cores)",
        lat.len(),
        lat.len() as f64 / secs,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().unwrap().as_secs_f64() * 1000.0,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
    );
    let reports = std::fs::read_dir(dir.join("reports/triage"))
        .map(|d| d.count())
        .unwrap_or(0);
    println!(
        "{label}: {reports} reports written; {} incidents left alone",
        total - reports
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    // 1. Offline threat intelligence.
    let dir = tempfile::tempdir().unwrap();
    let seeding = Instant::now();
    let mut rng = Rng(0x5eed_cafe);
    let (ids, entities) = seed_incidents(dir.path(), INCIDENTS, &mut rng, entity, false);
    println!(
        "seeded {INCIDENTS} incidents with {entities} entities (1-50 each) in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );
    let settings = Settings::from_lookup(|k| {
        (k == "SOCWIRE_DATA_DIR").then(|| dir.path().display().to_string())
    })
    .unwrap();
    rt.block_on(run("triage", settings, dir.path(), ids));

    // 2. The internet providers on a local mock.
    let mock = Arc::new(Mock::default());
    let mock_url = rt.block_on(async {
        let app = Router::new()
            .route("/api/v3/{kind}/{id}", get(vt))
            .route("/api/v2/check", get(abuse))
            .route("/v3/community/{ip}", get(greynoise))
            .route("/api/v1/indicators/{section}/{value}/general", get(otx))
            .with_state(mock.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    });
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x0dd_ba11);
    let (ids, entities) = seed_incidents(
        dir.path(),
        INCIDENTS_WITH_PROVIDERS,
        &mut rng,
        public_entity,
        true,
    );
    println!(
        "seeded {INCIDENTS_WITH_PROVIDERS} incidents with {entities} entities (public indicators, descriptions with defanged ones)"
    );
    let data_dir = dir.path().display().to_string();
    let settings = Settings::from_lookup(|k| match k {
        "SOCWIRE_DATA_DIR" => Some(data_dir.clone()),
        "SOCWIRE_TI_VIRUSTOTAL_KEY"
        | "SOCWIRE_TI_ABUSEIPDB_KEY"
        | "SOCWIRE_TI_GREYNOISE_KEY"
        | "SOCWIRE_TI_OTX_KEY" => Some("bench-key".into()),
        "SOCWIRE_TI_VIRUSTOTAL_URL"
        | "SOCWIRE_TI_ABUSEIPDB_URL"
        | "SOCWIRE_TI_GREYNOISE_URL"
        | "SOCWIRE_TI_OTX_URL" => Some(mock_url.clone()),
        "SOCWIRE_TI_VIRUSTOTAL_TIER" => Some("public".into()),
        "SOCWIRE_TI_TIMEOUT" => Some("2s".into()),
        _ => None,
    })
    .unwrap();
    rt.block_on(run(
        "triage with providers on a local mock",
        settings,
        dir.path(),
        ids,
    ));
    println!(
        "mock providers: {} requests, {} answered 429, {} answered HTML",
        mock.requests.load(Ordering::Relaxed),
        mock.throttled.load(Ordering::Relaxed),
        mock.html.load(Ordering::Relaxed)
    );
}
