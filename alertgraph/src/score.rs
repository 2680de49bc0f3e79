//! Scoring one subgraph, with the reasons an analyst reads.
//!
//! Signals (each adds to the score and, when it matters, a reason):
//! - a time-respecting multi-hop path A → B → C (later hop after earlier hop, no node twice);
//! - an IT host reaching into OT, and OT protocols (Modbus, DNP3, S7, OPC-UA) used from IT;
//! - severities and the spread of ATT&CK tactics (lateral movement above all);
//! - rarity: communication pairs seen only once or twice in the whole window;
//! - fan-out / fan-in (scanning, spraying, collection), damped so a scanner alone does not
//!   outrank a chain.

use crate::alert::{format_time, Severity};
use crate::engine::{Edge, Engine};
use crate::subgraph::{Subgraph, SubgraphEdge, SubgraphNode, MAX_ROW_EDGES, MAX_ROW_NODES};
use crate::FastMap;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashSet};

/// Protocols of industrial control networks.
const OT_PROTOCOLS: [&str; 6] = ["modbus", "dnp3", "s7", "s7comm", "opc-ua", "opcua"];

/// Longest path tracked per node (bounds the work on large noise components).
const MAX_TRACKED_PATH: usize = 16;

/// Weights: one place to read and tune how signals combine.
const W_HOP: f64 = 4.0;
const W_IT_OT: f64 = 3.0;
const W_OT_PROTOCOL: f64 = 2.0;
const W_MAX_SEVERITY: f64 = 1.0;
const W_SEVERITY_VOLUME: f64 = 0.5;
const W_TACTIC: f64 = 0.75;
const W_LATERAL: f64 = 1.5;
const W_RARITY: f64 = 3.0;
const W_FAN: f64 = 0.5;

pub(crate) struct GroupView<'a> {
    pub(crate) engine: &'a Engine,
    pub(crate) edges: &'a [u32],
    pub(crate) is_hub: &'a [bool],
}

fn is_ot_protocol(p: &str) -> bool {
    OT_PROTOCOLS.iter().any(|o| o.eq_ignore_ascii_case(p))
}

pub(crate) fn score_group(g: &GroupView<'_>) -> Subgraph {
    let engine = g.engine;
    let mut edges: Vec<&Edge> = g.edges.iter().map(|&i| &engine.edges[i as usize]).collect();
    edges.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.id.cmp(&b.id)));
    let ip = |n: u32| &*engine.nodes[n as usize].ip;

    // Stable id from the sorted alert ids.
    let mut ids: Vec<&str> = edges.iter().map(|e| &*e.id).collect();
    ids.sort_unstable();
    let mut hasher = Sha256::new();
    for id in &ids {
        hasher.update(id.as_bytes());
        hasher.update([0u8]);
    }
    let subgraph_id: String = hasher.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();

    // Pairs, nodes, degrees inside the group.
    struct Pair {
        first: i64,
        alerts: u32,
        protocols: BTreeSet<u16>,
        tactics: BTreeSet<u16>,
    }
    let mut pairs: FastMap<(u32, u32), Pair> = FastMap::default();
    let mut nodes: BTreeSet<u32> = BTreeSet::new();
    for e in &edges {
        nodes.insert(e.src);
        nodes.insert(e.dst);
        let p = pairs.entry((e.src, e.dst)).or_insert(Pair {
            first: e.time,
            alerts: 0,
            protocols: BTreeSet::new(),
            tactics: BTreeSet::new(),
        });
        p.alerts += 1;
        if e.protocol != 0 {
            p.protocols.insert(e.protocol);
        }
        if e.tactic != 0 {
            p.tactics.insert(e.tactic);
        }
    }
    let mut out_peers: FastMap<u32, u32> = FastMap::default();
    let mut in_peers: FastMap<u32, u32> = FastMap::default();
    for &(s, d) in pairs.keys() {
        if s != d {
            *out_peers.entry(s).or_default() += 1;
            *in_peers.entry(d).or_default() += 1;
        }
    }

    let mut score = 0.0;
    let mut reasons = Vec::new();

    // Longest time-respecting simple path.
    let mut best: FastMap<u32, Vec<u32>> = FastMap::default();
    let mut longest: Vec<u32> = Vec::new();
    for e in edges.iter().filter(|e| e.src != e.dst) {
        let mut candidate = best.get(&e.src).cloned().unwrap_or_else(|| vec![e.src]);
        if candidate.contains(&e.dst) || candidate.len() >= MAX_TRACKED_PATH {
            continue;
        }
        candidate.push(e.dst);
        let current = best.get(&e.dst).map_or(1, Vec::len);
        if candidate.len() > current {
            if candidate.len() > longest.len() {
                longest = candidate.clone();
            }
            best.insert(e.dst, candidate);
        }
    }
    let hops = longest.len().saturating_sub(1) as u32;
    if hops >= 2 {
        score += W_HOP * f64::from(hops - 1);
        let path: Vec<&str> = longest.iter().map(|&n| ip(n)).collect();
        reasons.push(format!("{hops}-hop time-ordered path {}", path.join(" → ")));
    }

    // IT into OT.
    let crossing = edges.iter().find(|e| {
        e.domain == crate::Domain::OT && e.src != e.dst && engine.nodes[e.src as usize].it
    });
    let crosses_it_ot = crossing.is_some();
    if let Some(e) = crossing {
        score += W_IT_OT;
        reasons.push(format!(
            "IT host {} reached OT host {}",
            ip(e.src),
            ip(e.dst)
        ));
    }
    let ot_protocol = edges.iter().find(|e| {
        engine.nodes[e.src as usize].it
            && engine
                .protocols
                .get(u32::from(e.protocol))
                .is_some_and(is_ot_protocol)
    });
    if let Some(e) = ot_protocol {
        score += W_OT_PROTOCOL;
        let p = engine
            .protocols
            .get(u32::from(e.protocol))
            .unwrap_or_default();
        reasons.push(format!("OT protocol {p} used from IT host {}", ip(e.src)));
    }

    // Severity.
    let max_severity = edges
        .iter()
        .map(|e| e.severity)
        .max()
        .unwrap_or(Severity::Informational);
    let severity_sum: f64 = edges.iter().map(|e| e.severity.weight()).sum();
    score += W_MAX_SEVERITY * max_severity.weight() + W_SEVERITY_VOLUME * (1.0 + severity_sum).ln();
    if max_severity >= Severity::Medium {
        let serious = edges
            .iter()
            .filter(|e| e.severity >= Severity::Medium)
            .count();
        reasons.push(format!(
            "{serious} alert(s) of Medium or High severity (max {max_severity:?})"
        ));
    }

    // Tactics.
    let tactics: BTreeSet<u16> = edges.iter().map(|e| e.tactic).filter(|&t| t != 0).collect();
    let names: Vec<&str> = tactics
        .iter()
        .filter_map(|&t| engine.tactics.get(u32::from(t)))
        .collect();
    let lateral = names
        .iter()
        .any(|t| t.eq_ignore_ascii_case("LateralMovement"));
    score += W_TACTIC * names.len().min(5) as f64 + if lateral { W_LATERAL } else { 0.0 };
    if names.len() >= 2 || lateral {
        reasons.push(format!(
            "{} ATT&CK tactic(s): {}",
            names.len(),
            names.join(", ")
        ));
    }

    // Rarity of the pairs, relative to the window; damped for fan-out sources.
    let max_out = out_peers.values().copied().max().unwrap_or(0);
    let max_in = in_peers.values().copied().max().unwrap_or(0);
    let fan = max_out.max(max_in);
    let rare = pairs
        .keys()
        .filter(|k| k.0 != k.1 && engine.pairs.get(k).copied().unwrap_or(0) <= 2)
        .count();
    let real_pairs = pairs.keys().filter(|k| k.0 != k.1).count();
    if real_pairs > 0 {
        let share = rare as f64 / real_pairs as f64;
        let damp = if fan > 4 { 4.0 / f64::from(fan) } else { 1.0 };
        score += W_RARITY * share * damp;
        if share >= 0.5 {
            reasons.push(format!(
                "{rare} of {real_pairs} communication pair(s) rare in the window"
            ));
        }
    }

    // Fan-out / fan-in.
    if fan >= 5 {
        score += W_FAN * f64::from(fan).ln();
        let (who, peers, dir) = match out_peers
            .iter()
            .max_by_key(|(n, c)| (**c, std::cmp::Reverse(**n)))
        {
            Some((n, c)) if *c >= max_in => (*n, *c, "fan-out"),
            _ => {
                let (n, c) = in_peers
                    .iter()
                    .max_by_key(|(n, c)| (**c, std::cmp::Reverse(**n)))
                    .map(|(n, c)| (*n, *c))
                    .unwrap_or((0, 0));
                (n, c, "fan-in")
            }
        };
        let hub_note = if g.is_hub.get(who as usize).copied().unwrap_or(false) {
            " (hub, kept apart)"
        } else {
            ""
        };
        reasons.push(format!("{dir}: {} with {peers} peers{hub_note}", ip(who)));
    }
    if reasons.is_empty() {
        reasons.push(format!("{} alert(s), nothing notable", edges.len()));
    }

    // Rows.
    let mut edge_rows: Vec<(&(u32, u32), &Pair)> = pairs.iter().collect();
    edge_rows.sort_by(|a, b| {
        b.1.alerts
            .cmp(&a.1.alerts)
            .then(a.1.first.cmp(&b.1.first))
            .then(a.0.cmp(b.0))
    });
    let edge_rows = edge_rows
        .into_iter()
        .take(MAX_ROW_EDGES)
        .map(|(&(s, d), p)| SubgraphEdge {
            src: ip(s).into(),
            dst: ip(d).into(),
            first_seen: format_time(p.first),
            alerts: p.alerts,
            protocols: p
                .protocols
                .iter()
                .filter_map(|&x| engine.protocols.get(u32::from(x)))
                .map(str::to_string)
                .collect(),
            tactics: p
                .tactics
                .iter()
                .filter_map(|&x| engine.tactics.get(u32::from(x)))
                .map(str::to_string)
                .collect(),
        })
        .collect();
    let mut seen_ips: HashSet<&str> = HashSet::new();
    let node_rows = nodes
        .iter()
        .filter(|&&n| seen_ips.insert(ip(n)))
        .take(MAX_ROW_NODES)
        .map(|&n| {
            let node = &engine.nodes[n as usize];
            SubgraphNode {
                ip: node.ip.to_string(),
                host: node.host.as_deref().map(str::to_string),
                domain: match (node.it, node.ot) {
                    (true, true) => "IT/OT",
                    (false, true) => "OT",
                    _ => "IT",
                }
                .into(),
            }
        })
        .collect();
    Subgraph {
        subgraph_id,
        rank: 0,
        score,
        first_seen: edges.first().map_or(0, |e| e.time),
        last_seen: edges.iter().map(|e| e.time).max().unwrap_or(0),
        node_count: nodes.len() as u32,
        edge_count: pairs.len() as u32,
        alert_count: edges.len() as u32,
        longest_path: hops,
        crosses_it_ot,
        nodes: node_rows,
        edges: edge_rows,
        alert_ids: ids.iter().map(|s| s.to_string()).collect(),
        reasons,
    }
}
