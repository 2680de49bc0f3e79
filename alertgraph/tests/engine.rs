//! Engine behaviour: grouping, stable ids, reasons, window eviction, snapshots, and ranking
//! quality on a small fixed seed.

use alertgraph::generate::{evaluate, generate, GenConfig};
use alertgraph::{rank, Alert, Config, Domain, Engine, Severity};

const T0: i64 = 1_795_132_800_000;
const MIN: i64 = 60_000;

#[allow(clippy::too_many_arguments)]
fn alert(
    id: &str,
    minute: i64,
    src: &str,
    dst: Option<&str>,
    domain: Domain,
    protocol: &str,
    tactic: &str,
    severity: Severity,
) -> Alert {
    Alert {
        time_generated: T0 + minute * MIN,
        alert_id: id.into(),
        alert_name: "test".into(),
        severity,
        domain,
        src_ip: src.into(),
        dst_ip: dst.map(Into::into),
        src_host: None,
        dst_host: None,
        dst_port: None,
        protocol: Some(protocol.into()),
        tactic: Some(tactic.into()),
    }
}

fn chain() -> Vec<Alert> {
    vec![
        alert(
            "c1",
            0,
            "10.0.0.1",
            Some("10.0.0.2"),
            Domain::IT,
            "SMB",
            "LateralMovement",
            Severity::Low,
        ),
        alert(
            "c2",
            20,
            "10.0.0.2",
            Some("10.0.0.3"),
            Domain::IT,
            "RDP",
            "LateralMovement",
            Severity::Medium,
        ),
        alert(
            "c3",
            45,
            "10.0.0.3",
            Some("10.20.0.9"),
            Domain::OT,
            "Modbus",
            "ImpairProcessControl",
            Severity::High,
        ),
    ]
}

#[test]
fn a_time_ordered_chain_into_ot_is_one_subgraph_with_reasons_and_ranks_first() {
    let mut e = Engine::new(Config::default());
    for a in chain() {
        e.ingest(&a).unwrap();
    }
    // Routine polling between two OT hosts, and an unrelated single alert.
    for i in 0..20 {
        e.ingest(&alert(
            &format!("p{i}"),
            i,
            "10.20.0.1",
            Some("10.20.0.2"),
            Domain::OT,
            "Modbus",
            "Collection",
            Severity::Informational,
        ))
        .unwrap();
    }
    e.ingest(&alert(
        "x",
        5,
        "10.0.9.9",
        None,
        Domain::IT,
        "TCP",
        "Execution",
        Severity::Medium,
    ))
    .unwrap();
    let subgraphs = e.subgraphs();
    assert_eq!(subgraphs.len(), 3);
    let top = &subgraphs[0];
    assert_eq!(top.alert_ids, ["c1", "c2", "c3"]);
    assert_eq!(
        (
            top.rank,
            top.longest_path,
            top.crosses_it_ot,
            top.node_count
        ),
        (1, 3, true, 4)
    );
    let reasons = top.reasons.join(" | ");
    for needle in [
        "3-hop time-ordered path 10.0.0.1 → 10.0.0.2 → 10.0.0.3 → 10.20.0.9",
        "reached OT",
        "OT protocol Modbus",
        "rare",
    ] {
        assert!(reasons.contains(needle), "{needle} not in {reasons}");
    }
}

#[test]
fn hops_out_of_time_order_are_not_a_path() {
    let mut e = Engine::new(Config::default());
    e.ingest(&alert(
        "a",
        50,
        "10.0.0.1",
        Some("10.0.0.2"),
        Domain::IT,
        "SMB",
        "LateralMovement",
        Severity::Low,
    ))
    .unwrap();
    e.ingest(&alert(
        "b",
        10,
        "10.0.0.2",
        Some("10.0.0.3"),
        Domain::IT,
        "SMB",
        "LateralMovement",
        Severity::Low,
    ))
    .unwrap();
    let s = e.subgraphs();
    assert!(
        s.iter().all(|s| s.longest_path <= 1),
        "B → C happened before A → B"
    );
}

#[test]
fn subgraph_ids_are_stable_for_the_same_alerts_in_any_order() {
    let mut a = Engine::new(Config::default());
    let mut b = Engine::new(Config::default());
    for x in chain() {
        a.ingest(&x).unwrap();
    }
    for x in chain().into_iter().rev() {
        b.ingest(&x).unwrap();
    }
    assert_eq!(a.subgraphs()[0].subgraph_id, b.subgraphs()[0].subgraph_id);
    a.ingest(&alert(
        "c4",
        50,
        "10.20.0.9",
        Some("10.20.0.10"),
        Domain::OT,
        "S7",
        "Execution",
        Severity::High,
    ))
    .unwrap();
    assert_ne!(
        a.subgraphs()[0].subgraph_id,
        b.subgraphs()[0].subgraph_id,
        "a new alert makes a new id"
    );
}

#[test]
fn duplicates_and_too_old_alerts_are_refused_with_reasons() {
    let mut e = Engine::new(Config {
        window_ms: 60 * MIN,
        ..Config::default()
    });
    let c = chain();
    e.ingest(&c[2]).unwrap();
    assert!(e.ingest(&c[2]).unwrap_err().reason.contains("duplicate"));
    let mut old = c[0].clone();
    old.time_generated -= 120 * MIN;
    assert!(e
        .ingest(&old)
        .unwrap_err()
        .reason
        .contains("older than the window"));
    assert_eq!(e.len(), 1);
}

#[test]
fn eviction_bounds_the_window_and_returns_closed_subgraphs() {
    let mut e = Engine::new(Config {
        window_ms: 60 * MIN,
        ..Config::default()
    });
    for a in chain() {
        e.ingest(&a).unwrap();
    }
    let nodes_before = e.node_count();
    // Three hours later: the chain has left the window.
    e.ingest(&alert(
        "late",
        240,
        "10.5.0.1",
        Some("10.5.0.2"),
        Domain::IT,
        "SSH",
        "Discovery",
        Severity::Low,
    ))
    .unwrap();
    assert!(e.should_evict());
    let closed = e.evict();
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].alert_ids, ["c1", "c2", "c3"]);
    assert_eq!((e.len(), e.node_count()), (1, 2));
    assert!(nodes_before > e.node_count());
    // An evicted id may come back (it is outside the window now) without being a duplicate.
    let mut again = chain()[0].clone();
    again.time_generated = T0 + 239 * MIN;
    e.ingest(&again).unwrap();
}

#[test]
fn snapshot_and_restore_keep_the_window() {
    let mut e = Engine::new(Config {
        window_ms: 90 * MIN,
        hub_degree: 10,
        flow_gap_ms: 30 * MIN,
    });
    for a in chain() {
        e.ingest(&a).unwrap();
    }
    let restored = Engine::restore(&e.snapshot()).unwrap();
    assert_eq!(restored.config(), e.config());
    assert_eq!(restored.subgraphs(), e.subgraphs());
    let mut restored = restored;
    assert!(
        restored
            .ingest(&chain()[0])
            .unwrap_err()
            .reason
            .contains("duplicate"),
        "dedupe survives"
    );
    assert!(Engine::restore(b"{not json").is_err());
}

#[test]
fn small_fixed_seed_finds_every_chain_in_the_top_two_m() {
    let g = generate(GenConfig {
        alerts: 20_000,
        chains: 10,
        seed: 11,
        ..GenConfig::default()
    });
    let mut e = Engine::new(Config::default());
    let mut all = Vec::new();
    for a in &g.alerts {
        e.ingest(a).unwrap();
        if e.should_evict() {
            all.extend(e.evict());
        }
    }
    all.extend(e.subgraphs());
    rank(&mut all);
    let eval = evaluate(&all, &g.labels, g.alerts.len(), 20);
    assert!(eval.recall >= 0.9, "{eval:?}");
    assert!(eval.reduction_read >= 100.0, "{eval:?}");
}
