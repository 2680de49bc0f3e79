//! `cargo bench -p socwire --bench foundation`: figures for the custom handler and the local
//! brokers. Prints numbers; asserts nothing.
//! - handler: requests/s, p50/p99 latency of `POST /incident-created` to a `socwire serve`
//!   process (loopback HTTP, 32 concurrent clients), and to a minimal Node.js handler process
//!   under the same load;
//! - `socwire serve` process: spawn → ready time and idle RSS;
//! - local Storage queue broker: put / receive / delete messages per second;
//! - the same against Azurite through `azure_storage_queue`, when Azurite listens on :10001.

use std::sync::Arc;
use std::time::{Duration, Instant};

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1000.0
}

const ID: &str = "/subscriptions/0000/resourceGroups/soc/providers/Microsoft.OperationalInsights/workspaces/ws/providers/Microsoft.SecurityInsights/incidents/73e01a99-5cd7-4139-a149-9f2736ff2ab5";

/// Drives `total` POSTs of `body` to `url` from `workers` concurrent clients; returns
/// (requests/s, p50 ms, p99 ms).
async fn load(url: &str, body: &str, total: usize, workers: usize) -> (f64, f64, f64) {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (client, url, body) = (client.clone(), url.to_string(), body.to_string());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(total / workers);
            for _ in 0..total / workers {
                let t = Instant::now();
                let r = client.post(&url).body(body.clone()).send().await.unwrap();
                assert!(r.status().is_success(), "{}", r.status());
                r.bytes().await.unwrap();
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
    (
        lat.len() as f64 / secs,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
    )
}

/// A minimal Node.js custom handler answering `incident-created` with the same output shape
/// (parse the envelope, take the incident id, queue one request): the baseline to beat.
const NODE_HANDLER: &str = r#"
const http = require('http');
const server = http.createServer((req, res) => {
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', () => {
    const env = JSON.parse(body);
    const id = env.Data.event.data.object.id;
    const out = { Outputs: { triage: [{ incidentId: id, requestId: id, source: 'incident-created' }] }, Logs: [] };
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(out));
  });
});
server.listen(0, '127.0.0.1', () => { console.log(server.address().port); });
"#;

/// Starts `socwire serve` (this build's binary) on a free port with its state in `dir`;
/// returns the process, its port and how long it took to accept connections.
fn spawn_serve(dir: &std::path::Path) -> (std::process::Child, u16, Duration) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_socwire"))
        .arg("serve")
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("SOCWIRE_DATA_DIR", dir)
        .env("SOCWIRE_LOG", "warn")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ready = loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break started.elapsed();
        }
        std::thread::yield_now();
    };
    (child, port, ready)
}

/// `incident-created` through a `socwire serve` process and through a minimal Node.js
/// process, each under the same load from this process.
async fn handler(dir: &std::path::Path) {
    let (mut serve, port, _) = spawn_serve(dir);
    let event = serde_json::json!({"id": "e1", "subject": ID, "eventType": "Sentinel.IncidentCreated", "eventTime": "2026-11-23T00:00:00Z",
        "data": {"object": {"id": ID, "properties": {"title": "t", "severity": "High", "status": "New"}}}});
    let body = serde_json::json!({"Data": {"event": event}, "Metadata": {}}).to_string();
    let (total, workers) = (20_000, 32);
    let url = format!("http://127.0.0.1:{port}/incident-created");
    load(&url, &body, 2_000, workers).await; // warm-up: connections, caches
    let (rate, p50, p99) = load(&url, &body, total, workers).await;
    let _ = serve.kill();
    let _ = serve.wait();
    println!(
        "handler (socwire serve process): {total} invocations of incident-created = {rate:.0} req/s; p50 {p50:.2} ms, p99 {p99:.2} ms ({workers} concurrent, loopback)"
    );
    let node = std::process::Command::new("node")
        .args(["-e", NODE_HANDLER])
        .stdout(std::process::Stdio::piped())
        .spawn();
    let Ok(mut node) = node else {
        println!("node handler: skipped (node is not installed)");
        return;
    };
    let mut port = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(node.stdout.as_mut().unwrap()),
        &mut port,
    )
    .unwrap();
    let url = format!("http://127.0.0.1:{}/incident-created", port.trim());
    load(&url, &body, 2_000, workers).await;
    let (node_rate, node_p50, node_p99) = load(&url, &body, total, workers).await;
    println!(
        "node handler process (same request, same client, same run): {node_rate:.0} req/s; p50 {node_p50:.2} ms, p99 {node_p99:.2} ms; socwire is {:.2}x",
        rate / node_rate
    );
    let _ = node.kill();
    let _ = node.wait();
}

fn serve_process() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, _, ready) = spawn_serve(dir.path());
    let rss = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_string())
        })
        .unwrap_or_else(|| "?".into());
    println!(
        "serve process: spawn → accepting in {:.1} ms; idle RSS {rss} kB",
        ready.as_secs_f64() * 1000.0
    );
    let _ = child.kill();
    let _ = child.wait();
}

fn local_queue() -> f64 {
    use socwire_host::brokers::{Brokers, SystemClock};
    let dir = tempfile::tempdir().unwrap();
    let b = Brokers::open(dir.path(), Arc::new(SystemClock)).unwrap();
    let n = 50_000;
    let bodies: Vec<Vec<u8>> = (0..n)
        .map(|i| format!("{{\"incidentId\":\"{i}\"}}").into_bytes())
        .collect();
    let started = Instant::now();
    for chunk in bodies.chunks(32) {
        let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
        b.queue("q").put_many(&refs, 0).unwrap();
    }
    let mut done = 0;
    while done < n {
        let got = b.queue("q").receive(32, 60_000).unwrap();
        let receipts: Vec<(String, String)> = got
            .iter()
            .map(|m| (m.id.clone(), m.pop_receipt.clone()))
            .collect();
        done += b.queue("q").delete_many(&receipts).unwrap();
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    println!("local queue broker: {n} messages put + received + deleted (batches of 32, durable WAL) = {rate:.0} msg/s");
    rate
}

async fn azurite_queue(local: f64) {
    if std::net::TcpStream::connect("127.0.0.1:10001").is_err() {
        println!("azurite queue: skipped (Azurite not listening on 127.0.0.1:10001)");
        return;
    }
    let account = socwire::azure::StorageAccount::parse("UseDevelopmentStorage=true").unwrap();
    let q = socwire::azure::AzureQueue::new(
        &account,
        &format!("bench-{}", uuid::Uuid::new_v4().simple()),
    )
    .unwrap();
    q.create_if_missing().await.unwrap();
    let n = 2_000;
    let started = Instant::now();
    for i in 0..n {
        q.put(&format!("{{\"incidentId\":\"{i}\"}}"), 0)
            .await
            .unwrap();
    }
    let mut done = 0;
    while done < n {
        for m in q.receive(32, 60).await.unwrap() {
            q.delete(&m).await.unwrap();
            done += 1;
        }
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    println!("azurite queue: {n} messages put + received + deleted through azure_storage_queue = {rate:.0} msg/s; local broker is {:.0}x that", local / rate);
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(handler(dir.path()));
    serve_process();
    let local = local_queue();
    rt.block_on(azurite_queue(local));
}
