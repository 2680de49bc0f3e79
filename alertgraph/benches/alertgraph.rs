//! `cargo bench -p alertgraph`: speed, memory and state size of the engine, then ranking quality
//! on both generator families. Prints figures; asserts nothing.
//!
//! Arguments (after `--`): `--speed` or `--quality` for one part only; `--quick` for small
//! sizes; `--seeds tune|held-out|all|FROM-TO` (default held-out: seeds 3-7; seeds 0-2 were
//! used for tuning, `tune` runs 1-2; seeds 8-12 were first run once, after the fifth pass, as a
//! fresh check). `ALERTGRAPH_BENCH_10M=1` adds the 10M-alert speed run. `--real` runs the
//! public labelled sets in `../shared/data` instead (`SOCWIRE_REAL_DATA` to point elsewhere);
//! `--memory` the streaming path's memory at 1M, 4M and 10M alerts a day.

use alertgraph::eval::{evaluate, rank_stream};
use alertgraph::formats::Format;
use alertgraph::generate::{generate, Family, GenConfig};
use alertgraph::{rank, Config, Engine, Subgraph};
use std::time::Instant;

#[path = "../tests/real_data/mod.rs"]
mod real_data;

/// The allocator of the socwire binary (handlers/src/main.rs), so the figures are its.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// Resident and peak resident memory of this process in bytes (Linux).
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU seconds this thread has used (user + system), so figures hold on a busy machine.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Wall and CPU time of `f`.
fn timed<T>(f: impl FnOnce() -> T) -> (T, f64, f64) {
    let (wall, cpu) = (Instant::now(), cpu_secs());
    let out = f();
    (out, wall.elapsed().as_secs_f64(), cpu_secs() - cpu)
}

/// CPU seconds of each phase of [`whole_process`].
#[derive(Default)]
struct Phases {
    parse: f64,
    sort: f64,
    ingest: f64,
    rank: f64,
    write: f64,
}

/// Batch mode as `socwire alerts prioritise` runs it: JSON lines in, every row ranked and
/// written as JSON lines out. Returns the rows, the alerts accepted, the output bytes and the
/// CPU seconds of each phase.
fn whole_process(jsonl: &[u8], cfg: Config) -> (Vec<Subgraph>, usize, usize, Phases) {
    let mut phases = Phases::default();
    let text = std::str::from_utf8(jsonl).expect("utf-8");
    // As the CLI reads: any format, detected per line (ALERTS.md lines take the fast path).
    let (read, _, parse) = timed(|| alertgraph::batch::read_input(text, Format::Auto));
    let mut alerts = read.alerts;
    phases.parse = parse;
    let (_, _, sort) = timed(|| alerts.sort_by_key(|a| a.time_generated));
    phases.sort = sort;
    let ((mut rows, accepted), _, ingest) = timed(|| {
        let mut engine = Engine::new(cfg);
        let mut rows = Vec::new();
        let mut accepted = 0;
        for a in &alerts {
            if engine.ingest_view(a).is_ok() {
                accepted += 1;
            }
            rows.extend(engine.evict());
        }
        rows.extend(engine.finish());
        (rows, accepted)
    });
    phases.ingest = ingest;
    alerts.clear();
    let (_, _, rank_secs) = timed(|| rank(&mut rows));
    phases.rank = rank_secs;
    // Each row is formed in one reused buffer, as the CLI does before writing it out.
    let (out_bytes, _, write) = timed(|| {
        let mut row = Vec::with_capacity(4096);
        let mut bytes = 0;
        for r in &rows {
            row.clear();
            r.write_row("2026-11-29T00:00:00.000Z", &mut row);
            row.push(b'\n');
            bytes += std::hint::black_box(&row).len();
        }
        bytes
    });
    phases.write = write;
    (rows, accepted, out_bytes, phases)
}

fn speed(n: usize) {
    let g = generate(GenConfig {
        alerts: n,
        chains: 50,
        seed: 42,
        span_ms: 7 * DAY_MS,
        family: Family::B,
        ..GenConfig::default()
    });
    let mut jsonl = Vec::with_capacity(n * 260);
    for a in &g.alerts {
        serde_json::to_writer(&mut jsonl, a).expect("alert");
        jsonl.push(b'\n');
    }
    let cfg = Config::default();

    // Streaming ingest with eviction, batches of 1,000 pre-parsed alerts.
    let (rss_before, _) = rss();
    let mut engine = Engine::new(cfg);
    let mut peak_held = 0usize;
    let mut peak_bytes = 0usize;
    let (rows, wall, cpu) = timed(|| {
        let mut rows = 0usize;
        for batch in g.alerts.chunks(1000) {
            for a in batch {
                let _ = engine.ingest(a);
            }
            rows += engine.evict().len();
            peak_held = peak_held.max(engine.held());
            peak_bytes = peak_bytes.max(engine.held_bytes());
        }
        rows
    });
    let (rss_after, _) = rss();
    let held = engine.held();
    let (snapshot, snap_secs, _) = timed(|| engine.snapshot());
    let journal_bytes = jsonl.len();
    println!(
        "{n:>9} alerts, 7 days, family B | streaming ingest+evict: {:.0} alerts/s per CPU second ({cpu:.2} CPU s, {wall:.2} s wall), {rows} final rows | window peak {peak_held} alerts ({:.0} MB est.), RSS +{} MB after ingest",
        n as f64 / cpu.max(0.01),
        peak_bytes as f64 / 1e6,
        rss_after.saturating_sub(rss_before) / 1_000_000
    );
    println!(
        "          state: snapshot {:.1} MB for {held} alerts held = {:.0} B/alert (written in {snap_secs:.3} s); journal {:.0} B/alert",
        snapshot.len() as f64 / 1e6,
        snapshot.len() as f64 / held.max(1) as f64,
        journal_bytes as f64 / n as f64
    );
    drop((engine, snapshot, g));

    // The floor: serde_json reading every line and keeping nothing (what any JSON reader must
    // at least do), and into a JSON tree.
    let (_, floor_wall, floor) = timed(|| {
        for line in std::str::from_utf8(&jsonl).expect("utf-8").lines() {
            std::hint::black_box(serde_json::from_str::<serde::de::IgnoredAny>(line).is_ok());
        }
    });
    let (_, _, tree) = timed(|| {
        for line in std::str::from_utf8(&jsonl).expect("utf-8").lines() {
            std::hint::black_box(serde_json::from_str::<serde_json::Value>(line).is_ok());
        }
    });
    let ((all, accepted, out_bytes, phases), wall, cpu) = timed(|| whole_process(&jsonl, cfg));
    println!(
        "          serde_json floor: {floor:.2} CPU s ({floor_wall:.2} s wall) reading every line, {tree:.2} CPU s into JSON trees; whole process = {:.2}x the floor in CPU time, {:.2}x in wall time",
        cpu / floor.max(1e-9),
        wall / floor_wall.max(1e-9)
    );
    let (_, peak) = rss();
    println!(
        "          whole process (JSONL {:.0} MB in, {} rows / {:.0} MB out): {:.0} alerts/s per CPU second ({cpu:.2} CPU s, {wall:.2} s wall) = parse {:.2} + sort {:.2} + ingest+evict {:.2} + rank {:.2} + write {:.2} CPU s; {accepted} of {n} accepted; peak RSS {} MB",
        jsonl.len() as f64 / 1e6,
        all.len(),
        out_bytes as f64 / 1e6,
        n as f64 / cpu.max(0.01),
        phases.parse,
        phases.sort,
        phases.ingest,
        phases.rank,
        phases.write,
        peak / 1_000_000
    );
}

fn quality(seeds: &[u64], quick: bool) {
    println!(
        "\nquality: recall at K = 2M (a chain is found when one top-K row holds >= 60 % of its alerts and the chain is >= 20 % of that row)"
    );
    println!(
        "{:>6} {:>5} {:>9} {:>6} {:>5} {:>7} {:>8} {:>11} {:>9} {:>8}",
        "family",
        "days",
        "alerts",
        "chains",
        "seed",
        "recall",
        "rows",
        "alerts_read",
        "reduction",
        "secs"
    );
    let sizes: &[usize] = if quick {
        &[100_000]
    } else {
        &[100_000, 1_000_000]
    };
    for family in [Family::A, Family::B] {
        for days in [1i64, 7] {
            for &alerts in sizes {
                let chains = 20;
                let mut recall = Vec::new();
                let mut worst_reduction = f64::MAX;
                for &seed in seeds {
                    let g = generate(GenConfig {
                        alerts,
                        chains,
                        seed,
                        span_ms: days * DAY_MS,
                        family,
                        ..GenConfig::default()
                    });
                    let started = Instant::now();
                    let (rows, accepted) =
                        rank_stream(&mut Engine::new(Config::default()), &g.alerts);
                    let secs = started.elapsed().as_secs_f64();
                    let e = evaluate(&rows, &g.labels, accepted, 2 * chains);
                    println!(
                        "{:>6} {:>5} {:>9} {:>6} {:>5} {:>7.3} {:>8} {:>11} {:>9.0} {:>8.2}",
                        format!("{family:?}"),
                        days,
                        alerts,
                        chains,
                        seed,
                        e.recall,
                        e.rows,
                        e.alerts_read,
                        e.reduction,
                        secs
                    );
                    recall.push(e.recall);
                    worst_reduction = worst_reduction.min(e.reduction);
                }
                let mean = recall.iter().sum::<f64>() / recall.len().max(1) as f64;
                let min = recall.iter().copied().fold(f64::MAX, f64::min);
                println!(
                    "{:>6} {:>5} {:>9} summary over seeds {:?}: mean recall {:.3}, min {:.3}, least reduction {:.0}x",
                    format!("{family:?}"),
                    days,
                    alerts,
                    seeds,
                    mean,
                    min,
                    worst_reduction
                );
            }
        }
    }
}

/// Resets this process's peak RSS (Linux `clear_refs` 5), so the next peak is one run's.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// `--memory`: the streaming path (one partition, as `alert-stream` holds it) at 1M, 4M and 10M
/// alerts a day for 30 hours, generated hour by hour, under the default bound.
fn memory() {
    let cfg = Config::default();
    println!(
        "\nstreaming memory: one partition, 30 hours, family B generated hour by hour, bound {} MB (Config::max_bytes)",
        cfg.max_bytes >> 20
    );
    println!(
        "{:>10} {:>9} {:>12} {:>14} {:>12} {:>14} {:>10} {:>10}",
        "alerts/day",
        "ingested",
        "peak held",
        "peak held MB",
        "peak RSS MB",
        "early evicted",
        "alerts/s",
        "rows"
    );
    const HOUR_MS: i64 = 3_600_000;
    for per_day in [1_000_000usize, 4_000_000, 10_000_000] {
        reset_peak_rss();
        let mut engine = Engine::new(cfg);
        let (mut peak_held, mut peak_bytes, mut ingested, mut rows) =
            (0usize, 0usize, 0usize, 0usize);
        let started = Instant::now();
        for hour in 0..30i64 {
            let g = generate(GenConfig {
                alerts: per_day / 24,
                chains: 1,
                seed: 1000 + hour as u64,
                start_ms: GenConfig::default().start_ms + hour * HOUR_MS,
                span_ms: HOUR_MS,
                family: Family::B,
            });
            for batch in g.alerts.chunks(1000) {
                for a in batch {
                    ingested += usize::from(engine.ingest(a).is_ok());
                }
                rows += engine.evict().len();
                peak_held = peak_held.max(engine.held());
                peak_bytes = peak_bytes.max(engine.held_bytes());
            }
        }
        let secs = started.elapsed().as_secs_f64();
        let (_, peak) = rss();
        println!(
            "{:>10} {:>9} {:>12} {:>14} {:>12} {:>14} {:>10.0} {:>10}",
            per_day,
            ingested,
            peak_held,
            peak_bytes >> 20,
            peak >> 20,
            engine.early_evictions().alerts,
            ingested as f64 / secs,
            rows
        );
    }
    println!("peak RSS includes the hour of generated alerts being fed (about 300 B per alert); alerts/s includes generating them");
}

/// `--real`: the public labelled sets (issue #20's measures) beside two baselines.
fn real() {
    println!("\nreal alert sets: alerts read (top rows first, whole rows) up to the first compromise / post-exploitation evidence");
    println!(
        "{:<22} {:>7} {:>6} {:>6} | {:>14} {:>7} {:>5} | {:>9} {:>9} | {:>6} | {:>6} {:>6} {:>7}",
        "stream",
        "alerts",
        "evid.",
        "rows",
        "engine read",
        "% strm",
        "row#",
        "SIEM",
        "rarest",
        "attk.p",
        "wall s",
        "cpu s",
        "peak MB"
    );
    let loaders =
        std::iter::once(Box::new(real_data::cptc_all) as Box<dyn Fn() -> real_data::Dataset>)
            .chain(
                (1..=10).map(|t| Box::new(move || real_data::cptc_team(t)) as Box<dyn Fn() -> _>),
            )
            .chain(
                real_data::AIT_SCENARIOS
                    .iter()
                    .map(|s| Box::new(move || real_data::ait(s)) as Box<dyn Fn() -> _>),
            );
    for load in loaders {
        let d = load();
        assert!(
            d.refused.is_empty(),
            "{}: {:?}",
            d.name,
            &d.refused[..d.refused.len().min(3)]
        );
        reset_peak_rss();
        let cfg = Config {
            list_all_alert_ids: true,
            ..Config::default()
        };
        let ((rows, accepted), wall, cpu) = timed(|| rank_stream(&mut Engine::new(cfg), &d.alerts));
        let (_, peak) = rss();
        let found = real_data::alerts_read_to_evidence(&rows, &d.evidence);
        let cell = |r: Option<usize>| r.map_or("-".to_string(), |n| n.to_string());
        println!(
            "{:<22} {:>7} {:>6} {:>6} | {:>14} {:>7} {:>5} | {:>9} {:>9} | {:>6} | {:>6.2} {:>6.2} {:>7}",
            d.name,
            accepted,
            d.evidence.len(),
            rows.len(),
            cell(found.map(|f| f.0)),
            found.map_or("-".into(), |f| format!("{:.2}", 100.0 * f.0 as f64 / accepted.max(1) as f64)),
            cell(found.map(|f| f.1)),
            cell(real_data::siem_baseline(&d.alerts, &d.evidence)),
            cell(real_data::rarest_rule_baseline(&d.alerts, &d.evidence)),
            real_data::rows_with_path_through(&rows, &d.attackers),
            wall,
            cpu,
            peak / 1_000_000
        );
    }
    println!("columns: evid. = evidence alerts (CPTC: ATTACK_RESPONSE/TROJAN signatures and successful privilege gains; AIT: the authors' post-exploitation labels); engine read = alerts in the ranked rows read up to and including the first row holding evidence (% strm: of the stream; row#: that row's rank); SIEM = one line per rule, highest severity then most frequent first; rarest = one line per rule, rarest first; attk.p = rows claiming a path through an attacker address (CPTC: 10.<team>.254.0/24)");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    let quick = has("--quick");
    if has("--real") {
        real();
        return;
    }
    if has("--memory") {
        memory();
        return;
    }
    let seeds: Vec<u64> = match args
        .iter()
        .position(|a| a == "--seeds")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
    {
        Some("tune") => vec![1, 2],
        Some("all") => (1..=7).collect(),
        Some(range) if range.contains('-') => {
            let (from, to) = range.split_once('-').unwrap_or_default();
            match (from.parse::<u64>(), to.parse::<u64>()) {
                (Ok(from), Ok(to)) => (from..=to).collect(),
                _ => panic!("--seeds takes tune, held-out, all or FROM-TO, not {range:?}"),
            }
        }
        _ => (3..=7).collect(),
    };
    if !has("--quality") {
        println!("speed and memory (one core; family B, 7 days, 50 chains)");
        let mut sizes = if quick {
            vec![300_000]
        } else {
            vec![300_000, 1_000_000]
        };
        if std::env::var("ALERTGRAPH_BENCH_10M").is_ok_and(|v| v == "1") {
            sizes.push(10_000_000);
        }
        for n in sizes {
            speed(n);
        }
    }
    if !has("--speed") {
        quality(&seeds, quick);
    }
}
