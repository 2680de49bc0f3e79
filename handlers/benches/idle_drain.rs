//! `--exit-when-idle` must not slow the host (issue 21, 7g): its 20 ms idle poll used to count
//! every Event Hubs event past the checkpoint with a correlated subquery per row, so its cost
//! grew with the backlog and the host spent its CPU polling instead of delivering.
//!
//! ```sh
//! cargo bench -p socwire --bench idle_drain                      # 300,000 alerts
//! cargo bench -p socwire --bench idle_drain -- --alerts 3000000  # the issue's figure
//! cargo bench -p socwire --bench idle_drain -- --alerts 3000000 --no-drain  # poll cost only
//! ```
//!
//! It seeds the `alerts` hub of a fresh local broker with generated alerts (family A), then
//! prints what one idle poll costs at that backlog (the old row-counting query next to the
//! current `pending_work`), and drains the same backlog twice with `socwire up`: once with
//! `--exit-when-idle` (timed to its exit) and once without (timed until the broker reports no
//! pending event, polled twice a second from here).

use alertgraph::generate::{generate, Family, GenConfig};
use socwire_host::brokers::{Brokers, Consumers, SystemClock};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The former idle check's Event Hubs count (host/src/brokers/status.rs before issue 21).
const OLD_QUERY: &str = "SELECT COUNT(*) FROM eh_events e WHERE e.hub = ?1 AND e.seq > COALESCE(
    (SELECT c.seq FROM eh_checkpoints c WHERE c.hub = ?1 AND c.consumer_group = ?2 AND c.partition = e.partition), -1)";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn consumers() -> Consumers {
    Consumers {
        queues: vec![],
        service_bus: vec![],
        event_hubs: vec![("alerts".into(), "$Default".into())],
    }
}

fn seed(dir: &Path, alerts: usize) -> anyhow::Result<()> {
    let t = Instant::now();
    let g = generate(GenConfig {
        alerts,
        chains: 20,
        seed: 1,
        family: Family::A,
        ..GenConfig::default()
    });
    let bodies: Vec<Vec<u8>> = g
        .alerts
        .iter()
        .map(|a| serde_json::to_vec(a).unwrap())
        .collect();
    println!(
        "generated {} alerts in {:.1} s",
        bodies.len(),
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let brokers = Brokers::open(dir, Arc::new(SystemClock))?;
    brokers.hub("alerts").ensure(4)?;
    let props = serde_json::Value::Object(Default::default());
    for chunk in bodies.chunks(10_000) {
        let events: Vec<(Option<&str>, &[u8], &serde_json::Value)> =
            chunk.iter().map(|b| (None, b.as_slice(), &props)).collect();
        brokers.hub("alerts").send_many(&events)?;
    }
    println!(
        "seeded the alerts hub in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

fn poll_costs(dir: &Path) -> anyhow::Result<()> {
    let brokers = Brokers::open(dir, Arc::new(SystemClock))?;
    let c = consumers();
    let t = Instant::now();
    let mut pending = 0;
    for _ in 0..50 {
        pending = brokers.pending_work(&c)?.ready_now;
    }
    let new = t.elapsed() / 50;
    let conn = rusqlite::Connection::open(dir.join("brokers.sqlite3"))?;
    let t = Instant::now();
    let mut old_count: i64 = 0;
    for _ in 0..3 {
        old_count = conn.query_row(OLD_QUERY, ["alerts", "$Default"], |r| r.get(0))?;
    }
    let old = t.elapsed() / 3;
    println!(
        "one idle poll at a backlog of {pending} events: pending_work {:.3} ms (old row count {:.1} ms, counted {old_count}); \
         the poll runs every 20 ms",
        new.as_secs_f64() * 1e3,
        old.as_secs_f64() * 1e3
    );
    Ok(())
}

fn socwire(data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_socwire"));
    cmd.current_dir(repo())
        .env_remove("SOCWIRE_DATA_DIR")
        .env_remove("SOCWIRE_LOG")
        .args(["up", "--quiet", "--port", "0", "--data-dir"])
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Starts `socwire up` on `dir` and times until the broker reports no pending alert (polled
/// twice a second from here, the same way for both runs); with `--exit-when-idle` it then
/// waits for the exit, otherwise it stops the host with SIGINT, as Ctrl-C does.
fn drain(dir: &Path, alerts: usize, exit_when_idle: bool) -> anyhow::Result<f64> {
    let brokers = Brokers::open(dir, Arc::new(SystemClock))?;
    let c = consumers();
    let mut cmd = socwire(dir);
    if exit_when_idle {
        cmd.arg("--exit-when-idle");
    }
    let t = Instant::now();
    let mut child = cmd.spawn()?;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        if brokers.pending_work(&c)?.ready_now == 0 {
            break;
        }
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("socwire up exited early: {status}");
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let label = if exit_when_idle {
        "with --exit-when-idle"
    } else {
        "without --exit-when-idle"
    };
    if exit_when_idle {
        let status = child.wait()?;
        anyhow::ensure!(
            status.success(),
            "socwire up --exit-when-idle failed: {status}"
        );
        println!(
            "{label}: hub drained in {secs:.1} s: {:.0} alerts/s (exited {:.1} s after the start)",
            alerts as f64 / secs,
            t.elapsed().as_secs_f64()
        );
    } else {
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        child.wait()?;
        println!(
            "{label}: hub drained in {secs:.1} s: {:.0} alerts/s",
            alerts as f64 / secs
        );
    }
    Ok(secs)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let alerts = args
        .windows(2)
        .find(|w| w[0] == "--alerts")
        .map(|w| w[1].parse())
        .transpose()?
        .unwrap_or(300_000);
    let drains = !args.iter().any(|a| a == "--no-drain");
    let root = tempfile::tempdir()?;
    let a = root.path().join("with-flag");
    socwire_common::fs::private_dir(&a)?;
    seed(&a, alerts)?;
    poll_costs(&a)?;
    if !drains {
        return Ok(());
    }
    let b = root.path().join("without-flag");
    socwire_common::fs::private_dir(&b)?;
    for file in [
        "brokers.sqlite3",
        "brokers.sqlite3-wal",
        "brokers.sqlite3-shm",
    ] {
        if a.join(file).exists() {
            std::fs::copy(a.join(file), b.join(file))?;
        }
    }
    let without = drain(&b, alerts, false)?;
    let with_flag = drain(&a, alerts, true)?;
    println!(
        "rate with the flag / without: {:.2}",
        without / with_flag.max(f64::EPSILON)
    );
    Ok(())
}
