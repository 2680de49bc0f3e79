//! `cargo bench -p alertgraph`: engine ingest speed, memory per alert in the window, and the
//! quality of the ranking on generated data as noise grows. Prints figures; asserts nothing.

use alertgraph::generate::{evaluate, generate, GenConfig};
use alertgraph::{rank, Config, Engine};
use std::time::Instant;

/// Resident memory of this process in bytes (Linux), for the memory-per-alert figure.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");

    // Speed: ingest of pre-parsed alerts on one core.
    let n = if quick { 200_000 } else { 1_000_000 };
    let data = generate(GenConfig {
        alerts: n,
        chains: 50,
        seed: 42,
        ..GenConfig::default()
    });
    let before = rss_bytes();
    let mut engine = Engine::new(Config::default());
    let started = Instant::now();
    for a in &data.alerts {
        let _ = engine.ingest(a);
    }
    let secs = started.elapsed().as_secs_f64();
    let after = rss_bytes();
    println!(
        "ingest: {n} alerts in {:.3} s = {:.0} alerts/s (one core, pre-parsed)",
        secs,
        n as f64 / secs
    );
    if let (Some(b), Some(a)) = (before, after) {
        println!(
            "memory: {:.0} bytes per alert in the window ({} alerts, {} nodes; RSS delta)",
            (a.saturating_sub(b)) as f64 / engine.len() as f64,
            engine.len(),
            engine.node_count()
        );
    }
    let started = Instant::now();
    let subgraphs = engine.subgraphs();
    println!(
        "subgraphs: {} formed and ranked over {} alerts in {:.3} s",
        subgraphs.len(),
        engine.len(),
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let snap = engine.snapshot();
    let snap_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let restored = Engine::restore(&snap).expect("restore");
    println!(
        "snapshot: {} MB in {:.3} s, restore {:.3} s ({} alerts)",
        snap.len() / 1_000_000,
        snap_secs,
        started.elapsed().as_secs_f64(),
        restored.len()
    );
    drop((engine, restored, data));

    // Quality as noise grows (same 20 chains, more background).
    println!("\nquality (K = 2 x chains; a chain is found when one top-K subgraph holds >= 2/3 of its alerts)");
    println!(
        "{:>9} {:>6} {:>6} {:>7} {:>9} {:>10} {:>12} {:>12}",
        "alerts", "chains", "seed", "recall", "precision", "subgraphs", "alerts/sub", "alerts/read"
    );
    let sizes: &[usize] = if quick {
        &[20_000, 100_000]
    } else {
        &[20_000, 100_000, 300_000, 1_000_000]
    };
    for &alerts in sizes {
        for seed in [1u64, 2, 3] {
            let chains = 20;
            let g = generate(GenConfig {
                alerts,
                chains,
                seed,
                ..GenConfig::default()
            });
            let mut engine = Engine::new(Config::default());
            let mut all = Vec::new();
            for a in &g.alerts {
                let _ = engine.ingest(a);
                if engine.should_evict() {
                    all.extend(engine.evict());
                }
            }
            all.extend(engine.subgraphs());
            rank(&mut all);
            let e = evaluate(&all, &g.labels, g.alerts.len(), 2 * chains);
            println!(
                "{:>9} {:>6} {:>6} {:>7.3} {:>9.3} {:>10} {:>12.1} {:>12.1}",
                alerts,
                chains,
                seed,
                e.recall,
                e.precision,
                all.len(),
                e.reduction_all,
                e.reduction_read
            );
        }
    }
}
