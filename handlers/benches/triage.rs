//! `cargo bench -p socwire --bench triage`: incident triage end to end on the local adapters
//! (SQLite Sentinel, ledger and workspace, offline threat intelligence, report files), through
//! the handler over loopback HTTP as the host calls it. 10,000 incidents with 1–50 entities
//! each (every kind, some indicators on the offline lists); 16 invocations in flight (the
//! Storage queue trigger's default batch size). Latency is per invocation: the request is
//! handed to the function → the verdict is applied and recorded (severity, comment, report,
//! ledger). Broker time is not included (see the foundation bench for the local queue).
//! Prints numbers; asserts only that every incident was triaged.

use serde_json::json;
use socwire::context::Context;
use socwire::local::SqliteIncidentStore;
use socwire::sentinel::{Entity, Incident, IncidentProperties, Severity};
use socwire::settings::Settings;
use std::sync::Arc;
use std::time::{Duration, Instant};

const INCIDENTS: usize = 10_000;
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
    Entity {
        kind: kind.into(),
        properties: props.as_object().unwrap().clone(),
    }
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings::from_lookup(|k| {
        (k == "SOCWIRE_DATA_DIR").then(|| dir.path().display().to_string())
    })
    .unwrap();
    let store = SqliteIncidentStore::open(&dir.path().join("sentinel.sqlite3")).unwrap();
    let mut rng = Rng(0x5eed_cafe);
    let mut ids = Vec::with_capacity(INCIDENTS);
    let mut entities_total = 0;
    let seeding = Instant::now();
    for n in 0..INCIDENTS {
        let id = socwire::demo::incident_id(n + 1);
        let count = 1 + rng.below(50) as usize;
        entities_total += count;
        let entities: Vec<Entity> = (0..count).map(|i| entity(&mut rng, i)).collect();
        let incident = Incident {
            id: id.arm_id().into(),
            name: id.name().into(),
            etag: None,
            properties: IncidentProperties {
                title: format!("Incident {n}"),
                severity: [Severity::Low, Severity::Medium, Severity::High][n % 3],
                status: "New".into(),
                description: None,
                incident_number: Some(n as i64),
                other: Default::default(),
            },
        };
        store.seed(&incident, &entities).unwrap();
        ids.push(id);
    }
    drop(store);
    socwire::demo::seed_workspace(
        &socwire::local::SqliteWorkspace::open(&dir.path().join("workspace.sqlite3")).unwrap(),
    )
    .unwrap();
    println!(
        "seeded {INCIDENTS} incidents with {entities_total} entities (1-50 each) in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let ctx = Arc::new(Context::from_settings(&settings).unwrap());
        let app = socwire::serve::app(ctx, settings.max_body_bytes);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let url = format!("http://{addr}/triage-incident");
        let client = reqwest::Client::new();
        let queue = Arc::new(std::sync::Mutex::new(ids));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..IN_FLIGHT {
            let (client, url, queue) = (client.clone(), url.clone(), queue.clone());
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                loop {
                    let Some(id) = queue.lock().unwrap().pop() else { break };
                    let body = json!({"Data": {"request": serde_json::to_string(id.arm_id()).unwrap()},
                        "Metadata": {"DequeueCount": "1", "Id": "\"m\""}}).to_string();
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
        let ledger = socwire::local::SqliteLedger::open(&dir.path().join("ledger.sqlite3")).unwrap();
        let triaged = ledger.count("triage:v1:").unwrap();
        assert_eq!(triaged as usize, INCIDENTS, "every incident triaged");
        println!(
            "triage: {} incidents in {secs:.2} s = {:.0} incidents/s; per invocation p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({IN_FLIGHT} in flight, {} cores)",
            lat.len(),
            lat.len() as f64 / secs,
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            lat.last().unwrap().as_secs_f64() * 1000.0,
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        );
        let reports = std::fs::read_dir(dir.path().join("reports/triage")).map(|d| d.count()).unwrap_or(0);
        println!("triage: {reports} reports written; {} incidents left alone", INCIDENTS - reports);
    });
}
