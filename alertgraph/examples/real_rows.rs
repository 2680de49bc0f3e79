//! Diagnostics: the top rows the engine ranks on one of the public labelled sets, with their
//! reasons and claimed paths, and where the first evidence and every attacker path lie.
//!
//! `cargo run --release -p alertgraph --example real_rows -- cptc 3 [TOP]` (team 0 = all
//! teams merged) or `-- ait shaw [TOP]`.

#[path = "../tests/real_data/mod.rs"]
mod real_data;

use alertgraph::eval::rank_stream;
use alertgraph::{Config, Engine};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_default();
    let d = match arg(0) {
        "cptc" => match arg(1).parse::<u32>().unwrap_or(0) {
            0 => real_data::cptc_all(),
            team => real_data::cptc_team(team),
        },
        "ait" => real_data::ait(arg(1)),
        _ => panic!("usage: real_rows cptc TEAM|0 [TOP] | ait SCENARIO [TOP]"),
    };
    let top: usize = arg(2).parse().unwrap_or(10);
    let cfg = Config {
        list_all_alert_ids: true,
        ..Config::default()
    };
    let (rows, accepted) = rank_stream(&mut Engine::new(cfg), &d.alerts);
    println!("{}: {accepted} alerts, {} rows", d.name, rows.len());
    for r in rows.iter().take(top) {
        let ev = r
            .alert_ids
            .iter()
            .filter(|id| d.evidence.contains(&***id))
            .count();
        println!(
            "#{} score {:.2} alerts {} evidence {} nodes {} path {:?}",
            r.rank, r.score, r.alert_count, ev, r.node_count, r.path
        );
        for reason in &r.reasons {
            println!("    {reason}");
        }
    }
    for r in rows.iter().filter(|r| {
        r.path.len() > 2
            && r.path[1..r.path.len() - 1]
                .iter()
                .any(|n| d.attackers.contains(&**n))
    }) {
        println!(
            "attacker path in row #{} ({} alerts): {:?}",
            r.rank, r.alert_count, r.reasons
        );
    }
}
