//! Per-chain diagnostics for tuning the link test (tuning seeds only):
//! `cargo run --release -p alertgraph --example chains -- a 1 100000 0,1,2 [all|quiet]`
//! (`CHAINS=n` in the environment for n chains instead of 20; K = 2n).
//!
//! For each stream (family, days, alerts, seed) prints recall at K = 2 × chains and, for every
//! missed chain (every chain with `all`), its alerts in time order: which row holds each (rank,
//! alerts in the row), and what the link test saw (pair count before it, rate, per-pair factor,
//! the recent incoming alerts it could follow with their expected count by chance, linked or not).

use alertgraph::eval::{evaluate, rank_stream, CHAIN_SHARE, ROW_SHARE};
use alertgraph::generate::{generate, Family, GenConfig};
use alertgraph::{Config, Engine};
use std::collections::HashMap;

const DAY_MS: i64 = 24 * 3600 * 1000;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let family: Family = args
        .first()
        .map_or("a", String::as_str)
        .parse()
        .expect("family");
    let days: i64 = args.get(1).map_or(Ok(1), |s| s.parse()).expect("days");
    let alerts: usize = args
        .get(2)
        .map_or(Ok(100_000), |s| s.parse())
        .expect("alerts");
    let seeds: Vec<u64> = args
        .get(3)
        .map_or("0,1,2", String::as_str)
        .split(',')
        .map(|s| s.parse().expect("seed"))
        .collect();
    let all = args.get(4).is_some_and(|s| s == "all");
    let quiet = args.get(4).is_some_and(|s| s == "quiet");
    let chains: usize = std::env::var("CHAINS").map_or(20, |v| v.parse().expect("CHAINS"));
    let mut total_found = 0;
    for seed in seeds {
        let g = generate(GenConfig {
            alerts,
            chains,
            seed,
            span_ms: days * DAY_MS,
            family,
            ..GenConfig::default()
        });
        let mut engine = Engine::new(Config {
            list_all_alert_ids: true,
            ..Config::default()
        });
        engine.set_trace(!quiet);
        let (rows, accepted) = rank_stream(&mut engine, &g.alerts);
        let trace = engine.take_trace();
        let k = 2 * chains;
        let e = evaluate(&rows, &g.labels, accepted, k);
        total_found += e.found;
        println!(
            "== {family:?} {days}d {alerts} seed {seed}: found {}/{} reduction {:.0}x rows {}",
            e.found, e.chains, e.reduction, e.rows
        );
        if quiet {
            continue;
        }
        // Alert id -> (index in the stream), row of each alert.
        let index: HashMap<&str, usize> = g
            .alerts
            .iter()
            .enumerate()
            .map(|(i, a)| (a.alert_id.as_str(), i))
            .collect();
        let mut row_of: HashMap<&str, usize> = HashMap::new();
        for (r, row) in rows.iter().enumerate() {
            for id in &row.alert_ids {
                row_of.insert(&**id, r);
            }
        }
        let trace_of: HashMap<u64, usize> = trace
            .iter()
            .enumerate()
            .map(|(i, t)| (t.arrival, i))
            .collect();
        let index_ref = &index;
        let chain_of: HashMap<usize, u32> = g
            .labels
            .iter()
            .flat_map(|l| {
                l.alert_ids
                    .iter()
                    .map(move |id| (index_ref[id.as_str()], l.chain))
            })
            .collect();
        for l in &g.labels {
            let n = l.alert_ids.len();
            let mut per_row: HashMap<usize, usize> = HashMap::new();
            for id in &l.alert_ids {
                *per_row.entry(row_of[id.as_str()]).or_default() += 1;
            }
            let found = per_row.iter().any(|(&r, &c)| {
                r < k
                    && c as f64 >= CHAIN_SHARE * n as f64
                    && c as f64 >= ROW_SHARE * f64::from(rows[r].alert_count)
            });
            let grouped = per_row
                .values()
                .any(|&c| c as f64 >= CHAIN_SHARE * n as f64);
            if found && !all {
                continue;
            }
            println!(
                "  chain {} ({} hops, {} alerts, ot {}): {} {}",
                l.chain,
                l.hops,
                n,
                l.crosses_it_ot,
                if found { "FOUND" } else { "MISSED" },
                if grouped {
                    "(grouped: ranking miss)"
                } else {
                    "(split)"
                }
            );
            let mut ids: Vec<usize> = l.alert_ids.iter().map(|id| index[id.as_str()]).collect();
            ids.sort_unstable();
            let t0 = g.alerts[ids[0]].time_generated;
            for i in ids {
                let a = &g.alerts[i];
                let r = row_of[a.alert_id.as_str()];
                let row = &rows[r];
                print!(
                    "    +{:>4}m {:>12} -> {:<12} {:<28} row #{:<5} ({} alerts, score {:.1})",
                    (a.time_generated - t0) / 60_000,
                    a.src_ip,
                    a.dst_ip.as_deref().unwrap_or("-"),
                    a.alert_name,
                    r + 1,
                    row.alert_count,
                    row.score
                );
                if let Some(&ti) = trace_of.get(&(i as u64 + 1)) {
                    let t = &trace[ti];
                    print!(
                        " | kind {} pair {} rate {:.2e} factor {:.3} cand {} exp {} {}",
                        t.kind,
                        t.pair_count,
                        t.rate,
                        t.pair_factor,
                        t.candidates,
                        t.expected.map_or("-".into(), |x| format!("{x:.2e}")),
                        if t.linked { "LINKED" } else { "" }
                    );
                    for &(seq, exp, live) in &t.seen {
                        let from = (seq as usize).checked_sub(1);
                        let mark =
                            from.and_then(|f| chain_of.get(&f))
                                .map_or("bg".to_string(), |c| {
                                    if *c == l.chain {
                                        "CHAIN".into()
                                    } else {
                                        format!("c{c}")
                                    }
                                });
                        print!(" [{mark} {exp:.2e} g{live}]");
                    }
                }
                println!();
            }
        }
    }
    println!("total found {total_found}");
}
