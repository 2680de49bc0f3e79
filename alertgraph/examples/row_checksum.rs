//! A checksum of every row the engine writes on fixed streams, to show that a change leaves
//! the rows as they were (refactoring) or to name the streams it changed:
//! `cargo run --release -p alertgraph --example row_checksum` (the history profile's key is
//! fixed, so that runs compare).

#[path = "../tests/real_data/mod.rs"]
mod real_data;

use alertgraph::eval::rank_stream;
use alertgraph::generate::{generate, Family, GenConfig};
use alertgraph::{Alert, Config, Engine};
use sha2::{Digest, Sha256};

fn checksum(name: &str, alerts: &[Alert]) {
    let cfg = Config {
        history_seed: 7,
        ..Config::default()
    };
    let (rows, accepted) = rank_stream(&mut Engine::new(cfg), alerts);
    let mut lines: Vec<Vec<u8>> = rows
        .iter()
        .map(|r| {
            let mut out = Vec::new();
            r.write_row("2026-01-01T00:00:00.000Z", &mut out);
            out
        })
        .collect();
    lines.sort();
    let mut h = Sha256::new();
    for l in &lines {
        h.update(l);
        h.update(b"\n");
    }
    let hex: String = h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    println!(
        "{name:<28} {accepted:>8} alerts {:>7} rows  {hex}",
        rows.len()
    );
}

fn main() {
    for family in [Family::A, Family::B] {
        let g = generate(GenConfig {
            alerts: 300_000,
            chains: 20,
            seed: 42,
            span_ms: 7 * 86_400_000,
            family,
            ..GenConfig::default()
        });
        checksum(&format!("family {family:?} 300k 7 days"), &g.alerts);
    }
    checksum("CPTC all teams", &real_data::cptc_all().alerts);
    checksum("AIT santos", &real_data::ait("santos").alerts);
}
