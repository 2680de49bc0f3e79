//! Engine behaviour: grouping, stable ids, reasons, window eviction, nothing lost, bounded
//! memory, row bounds, snapshots, and ranking quality on a small fixed seed.

use alertgraph::eval::evaluate;
use alertgraph::generate::{generate, Family, GenConfig};
use alertgraph::subgraph::MAX_ROW_BYTES;
use alertgraph::{rank, Alert, Config, Domain, Engine, Severity, Subgraph};
use std::collections::HashSet;

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
        alert_name: format!("{tactic} over {protocol}"),
        severity,
        domain,
        src_ip: src.into(),
        dst_ip: dst.map(Into::into),
        src_host: None,
        dst_host: None,
        dst_port: None,
        protocol: Some(protocol.into()),
        tactic: Some(tactic.into()),
        ext: Default::default(),
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

/// Streams `alerts` through an engine in batches, evicting after each, then finishes; returns
/// the rows and the number of accepted alerts.
fn stream(engine: &mut Engine, alerts: &[Alert], batch: usize) -> (Vec<Subgraph>, usize) {
    let mut rows = Vec::new();
    let mut accepted = 0;
    for chunk in alerts.chunks(batch) {
        for a in chunk {
            accepted += usize::from(engine.ingest(a).is_ok());
        }
        rows.extend(engine.evict());
    }
    rows.extend(engine.finish());
    rank(&mut rows);
    (rows, accepted)
}

/// Every accepted alert is in exactly one row.
fn assert_nothing_lost(rows: &[Subgraph], accepted: usize) {
    let total: usize = rows.iter().map(|r| r.alert_count as usize).sum();
    assert_eq!(
        total, accepted,
        "sum of AlertCount equals the accepted alerts"
    );
    let mut seen = HashSet::new();
    for r in rows {
        assert!(r.alert_ids.len() <= r.alert_count as usize);
        for id in &r.alert_ids {
            assert!(seen.insert(id.clone()), "alert {id} in two rows");
        }
    }
}

fn poll(i: i64, minute: i64) -> Alert {
    alert(
        &format!("p{i}"),
        minute,
        "10.20.0.1",
        Some("10.20.0.2"),
        Domain::OT,
        "Modbus",
        "Collection",
        Severity::Informational,
    )
}

#[test]
fn a_time_ordered_chain_into_ot_is_one_row_with_reasons_and_ranks_first() {
    let cfg = Config::default();
    let mut e = Engine::new(cfg);
    // Background first, so that rates can be judged (and routine polling all day).
    let mut alerts: Vec<Alert> = (0..3000).map(|i| poll(i, i / 3)).collect();
    for i in 0..100 {
        alerts.push(alert(
            &format!("x{i}"),
            i * 10,
            &format!("10.0.9.{}", i % 50),
            None,
            Domain::IT,
            "TCP",
            "Execution",
            Severity::Medium,
        ));
    }
    for mut a in chain() {
        a.time_generated += 900 * MIN;
        alerts.push(a);
    }
    alerts.sort_by_key(|a| a.time_generated);
    let (rows, accepted) = stream(&mut e, &alerts, 500);
    assert_nothing_lost(&rows, accepted);
    let top = &rows[0];
    // The compromise evidence (the OT impact) is listed first.
    assert_eq!(top.alert_ids, ["c3".into(), "c1".into(), "c2".into()]);
    assert_eq!(top.evidence.len(), 1);
    assert_eq!(&*top.evidence[0].host, "10.20.0.9");
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
        "continuation(s) unlikely by chance",
        "reached OT host 10.20.0.9 on a novel pair (Modbus over an OT protocol)",
    ] {
        assert!(reasons.contains(needle), "{needle} not in {reasons}");
    }
}

#[test]
fn hops_out_of_time_order_are_not_a_path() {
    let mut e = Engine::new(Config::default());
    for (id, minute, src, dst) in [
        ("a", 50, "10.0.0.1", "10.0.0.2"),
        ("b", 10, "10.0.0.2", "10.0.0.3"),
    ] {
        e.ingest(&alert(
            id,
            minute,
            src,
            Some(dst),
            Domain::IT,
            "SMB",
            "LateralMovement",
            Severity::Low,
        ))
        .unwrap();
    }
    let rows = e.finish();
    assert!(
        rows.iter().all(|s| s.longest_path <= 1),
        "B → C happened before A → B"
    );
}

#[test]
fn row_ids_are_stable_for_the_same_alerts_in_any_order() {
    let mut a = Engine::new(Config::default());
    let mut b = Engine::new(Config::default());
    for x in chain() {
        a.ingest(&x).unwrap();
    }
    for x in chain().into_iter().rev() {
        b.ingest(&x).unwrap();
    }
    let (ra, rb) = (a.finish(), b.finish());
    let ids = |rows: &[Subgraph]| -> HashSet<String> {
        rows.iter().map(|r| r.subgraph_id.clone()).collect()
    };
    assert_eq!(ids(&ra), ids(&rb));
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
fn a_group_is_emitted_whole_once_its_last_alert_left_the_window() {
    let mut e = Engine::new(Config {
        window_ms: 60 * MIN,
        ..Config::default()
    });
    for a in chain() {
        e.ingest(&a).unwrap();
        assert!(e.evict().is_empty());
    }
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
    let closed = e.evict();
    let ids: HashSet<&str> = closed
        .iter()
        .flat_map(|r| r.alert_ids.iter().map(|id| &**id))
        .collect();
    assert_eq!(ids, HashSet::from(["c1", "c2", "c3"]));
    assert_eq!((e.held(), e.node_count()), (1, 2));
    // An emitted id may come back (it is outside the engine now) without being a duplicate.
    let mut again = chain()[0].clone();
    again.time_generated = T0 + 239 * MIN;
    e.ingest(&again).unwrap();
}

#[test]
fn a_long_lived_pair_is_emitted_in_parts_as_it_leaves_the_window() {
    let mut e = Engine::new(Config {
        window_ms: 60 * MIN,
        ..Config::default()
    });
    // One poll a minute for ten hours: the pair's group never closes.
    let alerts: Vec<Alert> = (0..600).map(|i| poll(i, i)).collect();
    let (rows, accepted) = stream(&mut e, &alerts, 10);
    assert_nothing_lost(&rows, accepted);
    assert!(rows.len() >= 5, "parts left as they aged: {}", rows.len());
    assert!(rows.iter().all(|r| r.alert_count <= 200));
}

#[test]
fn nothing_is_lost_on_multi_day_streams_of_both_families() {
    for family in [Family::A, Family::B] {
        let g = generate(GenConfig {
            alerts: 30_000,
            chains: 10,
            seed: 3,
            span_ms: 3 * 24 * 60 * MIN,
            family,
            ..GenConfig::default()
        });
        let mut e = Engine::new(Config::default());
        let (rows, accepted) = stream(&mut e, &g.alerts, 1000);
        assert_eq!(accepted, g.alerts.len(), "{family:?}");
        assert_nothing_lost(&rows, accepted);
        assert!(e.is_empty());
    }
}

#[test]
fn alerts_far_out_of_order_are_placed_or_refused_and_none_is_lost() {
    let g = generate(GenConfig {
        alerts: 10_000,
        chains: 5,
        seed: 4,
        span_ms: 2 * 24 * 60 * MIN,
        ..GenConfig::default()
    });
    // Reverse every block of 500 and move every 97th alert 30 hours later in the arrival order.
    let mut alerts = g.alerts.clone();
    for block in alerts.chunks_mut(500) {
        block.reverse();
    }
    let late: Vec<Alert> = alerts.iter().step_by(97).cloned().collect();
    alerts.retain(|a| !late.contains(a));
    let at = alerts.len() * 3 / 4;
    alerts.splice(at..at, late);
    let mut e = Engine::new(Config::default());
    let mut refused = 0;
    let mut rows = Vec::new();
    for chunk in alerts.chunks(200) {
        for a in chunk {
            if let Err(r) = e.ingest(a) {
                assert!(r.reason.contains("older than the window"), "{}", r.reason);
                refused += 1;
            }
        }
        rows.extend(e.evict());
    }
    rows.extend(e.finish());
    assert!(refused > 0, "some came too late for the window");
    assert_nothing_lost(&rows, alerts.len() - refused);
}

#[test]
fn a_window_flooded_by_one_noisy_source_stays_within_its_bound() {
    let cfg = Config {
        max_alerts: 5_000,
        ..Config::default()
    };
    let mut e = Engine::new(cfg);
    let mut alerts = Vec::new();
    for i in 0..40_000i64 {
        // One source sweeping everything within two hours, plus a little other traffic.
        alerts.push(alert(
            &format!("f{i}"),
            i / 300,
            "10.66.0.1",
            Some(&format!("10.1.{}.{}", i % 200, i % 250)),
            Domain::IT,
            "TCP",
            "Discovery",
            Severity::High,
        ));
        if i % 50 == 0 {
            alerts.push(alert(
                &format!("o{i}"),
                i / 300,
                "10.2.0.1",
                Some("10.2.0.2"),
                Domain::IT,
                "SMB",
                "LateralMovement",
                Severity::Low,
            ));
        }
    }
    let mut rows = Vec::new();
    for chunk in alerts.chunks(500) {
        for a in chunk {
            e.ingest(a).unwrap();
        }
        rows.extend(e.evict());
        assert!(e.held() <= cfg.max_alerts, "{}", e.held());
    }
    rows.extend(e.finish());
    let early = e.early_evictions();
    assert!(early.times > 0 && early.alerts > 0, "{early:?}");
    assert_nothing_lost(&rows, alerts.len());
}

#[test]
fn the_byte_bound_counts_every_table_and_holds_after_each_batch() {
    // A byte bound the window would pass five times over (each alert opens a pair and a group
    // of its own), with the history profile counted in it.
    let cfg = Config {
        max_bytes: 3 << 20,
        history_entries: 1 << 14,
        ..Config::default()
    };
    let mut e = Engine::new(cfg);
    let empty = e.held_bytes();
    assert!(
        empty >= (1 << 14) * 12,
        "the history profile is counted: {empty}"
    );
    let mut rows = Vec::new();
    let mut accepted = 0;
    for i in 0..60_000i64 {
        let a = alert(
            &format!("b{i}"),
            i / 60,
            &format!("10.{}.{}.{}", i % 7, (i / 7) % 250, i % 250),
            Some(&format!("10.9.{}.{}", (i / 250) % 250, i % 250)),
            Domain::IT,
            "SMB",
            "LateralMovement",
            Severity::Low,
        );
        accepted += usize::from(e.ingest(&a).is_ok());
        if i % 1000 == 999 {
            rows.extend(e.evict());
            assert!(
                e.held_bytes() <= cfg.max_bytes,
                "{} bytes held over a bound of {}: {:?}",
                e.held_bytes(),
                cfg.max_bytes,
                e.memory_parts(false)
            );
        }
    }
    let early = e.early_evictions();
    assert!(early.alerts > 0, "the bound was reached: {early:?}");
    let said = rows
        .iter()
        .filter(|r| {
            r.reasons
                .iter()
                .any(|x| x.contains("emitted before its time"))
        })
        .count();
    assert!(said > 0, "rows moved out early say so");
    rows.extend(e.finish());
    assert_nothing_lost(&rows, accepted);
}

#[test]
fn a_flood_of_made_up_alert_kinds_fills_the_kind_table_and_loses_nothing() {
    // 70,000 alerts of 81,920 possible (rule, protocol) kinds: the kind table (65,536) fills
    // and the rest are judged by their rule. Each alert continues the previous one (a walk
    // over fresh pairs), so the link test runs on every one of them.
    let node = |i: i64| format!("10.{}.{}.{}", i / 65_536, (i / 256) % 256, i % 256);
    let alerts: Vec<Alert> = (0..70_000i64)
        .map(|i| {
            let mut a = alert(
                &format!("k{i}"),
                0,
                &node(i),
                Some(&node(i + 1)),
                Domain::IT,
                &format!("P{}", (i / 20) % 4096),
                "LateralMovement",
                Severity::Medium,
            );
            a.time_generated = T0 + i * 1000;
            a.alert_name = format!("R{}", i % 20);
            a
        })
        .collect();
    let mut e = Engine::new(Config::default());
    let (rows, accepted) = stream(&mut e, &alerts, 1000);
    assert_eq!(accepted, alerts.len(), "every alert accepted");
    assert_nothing_lost(&rows, accepted);
    assert!(e.is_empty());
}

#[test]
fn rows_always_fit_whatever_the_alerts() {
    // A thousand alerts on one pair with every text field at the length limit, each with its
    // own protocol and tactic, plus a chain of such hosts: the row stays under the bound.
    let long = |c: char, i: i64| -> String {
        let mut s = format!("{i}-");
        while s.chars().count() < alertgraph::alert::MAX_FIELD_CHARS {
            s.push(c);
        }
        s
    };
    let mut e = Engine::new(Config::default());
    for i in 0..1000i64 {
        let a = Alert {
            time_generated: T0 + i * 1000,
            alert_id: long('i', i),
            alert_name: long('n', i),
            severity: Severity::High,
            domain: Domain::IT,
            src_ip: "2001:db8::1".into(),
            dst_ip: Some(format!("2001:db8::{:x}", 2 + i % 300)),
            src_host: Some(long('h', 0)),
            dst_host: Some(long('d', i)),
            dst_port: Some(445),
            protocol: Some(long('p', i)),
            tactic: Some(long('t', i)),
            ext: Default::default(),
        };
        assert!(Alert::from_json(&serde_json::to_value(&a).unwrap(), None).is_ok());
        e.ingest(&a).unwrap();
    }
    let rows = e.finish();
    assert_nothing_lost(&rows, 1000);
    for r in &rows {
        let mut bytes = Vec::new();
        r.write_row("2026-11-29T00:00:00.000Z", &mut bytes);
        assert!(bytes.len() <= MAX_ROW_BYTES, "{} bytes", bytes.len());
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["AlertCount"], r.alert_count);
        assert_eq!(v["RowKey"], v["SubgraphId"]);
        if r.alert_count > 100 {
            assert_eq!(v["Truncated"], true);
            let listed = v["AlertIds"].as_array().unwrap().len() as u64;
            assert_eq!(
                listed + v["AlertIdsOmitted"].as_u64().unwrap(),
                u64::from(r.alert_count)
            );
        }
    }
}

#[test]
fn snapshot_and_restore_continue_exactly() {
    let g = generate(GenConfig {
        alerts: 8_000,
        chains: 4,
        seed: 9,
        family: Family::B,
        ..GenConfig::default()
    });
    let (first, rest) = g.alerts.split_at(5_000);
    let mut a = Engine::new(Config::default());
    let mut rows_a = Vec::new();
    for x in first {
        a.ingest(x).unwrap();
        rows_a.extend(a.evict());
    }
    let mut b = Engine::restore(&a.snapshot()).unwrap();
    assert_eq!(b.config(), a.config());
    assert!(
        b.ingest(&first[0])
            .unwrap_err()
            .reason
            .contains("duplicate"),
        "dedupe survives"
    );
    let mut rows_b = rows_a.clone();
    for x in rest {
        a.ingest(x).unwrap();
        rows_a.extend(a.evict());
        b.ingest(x).unwrap();
        rows_b.extend(b.evict());
    }
    rows_a.extend(a.finish());
    rows_b.extend(b.finish());
    assert_eq!(rows_a, rows_b);
    assert!(Engine::restore(b"{not a snapshot").is_err());
}

#[test]
fn small_fixed_seed_finds_most_chains_in_the_top_two_m() {
    let g = generate(GenConfig {
        alerts: 20_000,
        chains: 10,
        seed: 11,
        ..GenConfig::default()
    });
    let mut e = Engine::new(Config::default());
    let (rows, accepted) = stream(&mut e, &g.alerts, 1000);
    let eval = evaluate(&rows, &g.labels, accepted, 20);
    assert!(eval.recall >= 0.7, "{eval:?}"); // measured 0.7 on this seed (issue #9 notes)
    assert!(eval.reduction >= 100.0, "{eval:?}");
}

/// One pair with a million alerts: memory stays within the bound (run with `--ignored`).
#[test]
#[ignore = "slow in debug builds; run with --release -- --ignored"]
fn one_pair_with_a_million_alerts_stays_bounded() {
    let cfg = Config {
        max_alerts: 100_000,
        ..Config::default()
    };
    let mut e = Engine::new(cfg);
    let mut total = 0u64;
    for i in 0..1_000_000i64 {
        e.ingest(&poll(i, i / 1000)).unwrap();
        if i % 1000 == 999 {
            total += e
                .evict()
                .iter()
                .map(|r| u64::from(r.alert_count))
                .sum::<u64>();
            assert!(e.held() <= cfg.max_alerts);
        }
    }
    total += e
        .finish()
        .iter()
        .map(|r| u64::from(r.alert_count))
        .sum::<u64>();
    assert_eq!(total, 1_000_000);
}

/// Ranking orders rows by score, then fewer alerts, then id, and numbers them from 1.
#[test]
fn rank_orders_by_score_then_size_then_id() {
    let g = generate(GenConfig {
        alerts: 5_000,
        chains: 5,
        seed: 11,
        family: Family::B,
        ..GenConfig::default()
    });
    let (rows, _) = stream(&mut Engine::new(Config::default()), &g.alerts, 500);
    assert!(rows.len() > 100);
    for (i, w) in rows.windows(2).enumerate() {
        let (a, b) = (&w[0], &w[1]);
        let key = |r: &Subgraph| (-r.score, r.alert_count, r.subgraph_id.clone());
        assert!(key(a).partial_cmp(&key(b)) != Some(std::cmp::Ordering::Greater));
        assert_eq!((a.rank, b.rank), (i as u32 + 1, i as u32 + 2));
    }
    let mut shuffled: Vec<Subgraph> = rows.iter().rev().cloned().collect();
    shuffled.rotate_left(rows.len() / 3);
    rank(&mut shuffled);
    assert_eq!(shuffled, rows);
}

/// An alert in contract v2 (category, ports, direction as a sensor gives them).
#[allow(clippy::too_many_arguments)]
fn sensed(
    id: &str,
    second: i64,
    src: &str,
    dst: Option<&str>,
    name: &str,
    category: &str,
    ports: (Option<u16>, Option<u16>),
) -> Alert {
    let mut a = alert(id, 0, src, dst, Domain::IT, "TCP", "", Severity::Medium);
    a.time_generated = T0 + second * 1000;
    a.alert_name = name.into();
    a.tactic = None;
    a.dst_port = ports.1;
    a.ext.src_port = ports.0;
    a.ext.category = Some(category.into());
    a
}

#[test]
fn a_response_is_evidence_about_the_victim_and_no_path_runs_through_the_attacker() {
    let attacker = "10.5.254.30";
    let mut alerts = Vec::new();
    // Background so that rates can be judged.
    for i in 0..400 {
        alerts.push(poll(i, i / 4));
    }
    // The attacker probes eight hosts (a campaign), then exploits 10.5.0.7.
    for v in 1..=8 {
        for k in 0..5 {
            alerts.push(sensed(
                &format!("p{v}-{k}"),
                600 + v * 60 + k,
                attacker,
                Some(&format!("10.5.0.{v}")),
                "ET SCAN Possible Nmap User-Agent Observed",
                "Attempted Information Leak",
                (Some(40_000 + k as u16), Some(80)),
            ));
        }
    }
    alerts.push(sensed(
        "x1",
        1300,
        attacker,
        Some("10.5.0.7"),
        "ET WEB_SERVER Possible CVE-2014-6271 Attempt",
        "Web Application Attack",
        (Some(41_000), Some(80)),
    ));
    // The victim's answer, server port to the attacker's ephemeral port: a response.
    alerts.push(sensed(
        "r1",
        1301,
        "10.5.0.7",
        Some(attacker),
        "GPL ATTACK_RESPONSE id check returned root",
        "Potentially Bad Traffic",
        (Some(80), Some(41_000)),
    ));
    // The attacker's next probe: after the victim "sent" to it, it must not make a path.
    alerts.push(sensed(
        "p9",
        1310,
        attacker,
        Some("10.5.0.9"),
        "ET SCAN Possible Nmap User-Agent Observed",
        "Attempted Information Leak",
        (Some(42_000), Some(80)),
    ));
    alerts.sort_by_key(|a| a.time_generated);
    let mut e = Engine::new(Config::default());
    let (rows, accepted) = stream(&mut e, &alerts, 50);
    assert_nothing_lost(&rows, accepted);
    let evidence_row = rows
        .iter()
        .find(|r| r.alert_ids.iter().any(|id| &**id == "r1"))
        .expect("a row holds the response");
    assert_eq!(evidence_row.rank, 1, "{:?}", evidence_row.reasons);
    assert!(
        evidence_row.alert_count <= 2,
        "{}",
        evidence_row.alert_count
    );
    let item = &evidence_row.evidence[0];
    assert_eq!(
        (&*item.host, item.peer.as_deref(), item.stage),
        ("10.5.0.7", Some(attacker), "privilege escalation")
    );
    for r in &rows {
        let through =
            r.path.len() > 2 && r.path[1..r.path.len() - 1].iter().any(|n| &**n == attacker);
        assert!(!through, "a path through the attacker: {:?}", r.reasons);
    }
    let campaign = rows
        .iter()
        .find(|r| {
            r.reasons
                .iter()
                .any(|x| x.starts_with("campaign from 10.5.254.30"))
        })
        .expect("a campaign row");
    assert!(
        campaign
            .reasons
            .iter()
            .any(|x| x.contains("10.5.0.7 (privilege escalation)")),
        "the campaign names its compromised victim first: {:?}",
        campaign.reasons
    );
    assert!(campaign.rank > evidence_row.rank);
}

#[test]
fn a_flood_of_one_rule_does_not_hide_the_rare_alert_after_it() {
    let host = |id: &str, second: i64, name: &str| {
        let mut a = alert(
            id,
            0,
            "10.7.0.4",
            None,
            Domain::IT,
            "HTTP",
            "",
            Severity::Medium,
        );
        a.time_generated = T0 + second * 1000;
        a.alert_name = name.into();
        a.tactic = None;
        a
    };
    let mut alerts = Vec::new();
    for i in 0..3000 {
        alerts.push(poll(i, i / 3));
    }
    for i in 0..5000 {
        alerts.push(host(
            &format!("w{i}"),
            3600 + i / 2,
            "Wazuh: Web server 400 error code.",
        ));
    }
    alerts.push(host(
        "cms",
        7000,
        "Wazuh: CMS (WordPress or Joomla) login attempt.",
    ));
    alerts.push(host(
        "sudo",
        9000,
        "Wazuh: Successful sudo to ROOT executed.",
    ));
    alerts.sort_by_key(|a| a.time_generated);
    let mut e = Engine::new(Config::default());
    let (rows, accepted) = stream(&mut e, &alerts, 500);
    assert_nothing_lost(&rows, accepted);
    let sudo = rows
        .iter()
        .find(|r| r.alert_ids.iter().any(|id| &**id == "sudo"))
        .unwrap();
    assert_eq!((sudo.rank, sudo.alert_count), (1, 1), "{:?}", sudo.reasons);
    assert!(
        sudo.reasons.iter().any(|r| {
            r.contains(
            "host 10.7.0.4 reached 3 stages: reconnaissance → attack attempt → privilege escalation"
        )
        }),
        "{:?}",
        sudo.reasons
    );
    let flood = rows
        .iter()
        .find(|r| r.alert_ids.iter().any(|id| &**id == "w0"))
        .unwrap();
    assert_eq!(flood.alert_count, 5000, "the flood is one episode");
}

#[test]
fn weekly_maintenance_is_new_once_and_routine_the_next_week() {
    // Every day: routine polling. On day 0 and day 7 the engineering workstation downloads
    // programs to three PLCs, each after the one before (a time-ordered IT → OT fan-out).
    let mut alerts = Vec::new();
    for day in 0..9i64 {
        for i in 0..1440i64 {
            let mut a = poll(day * 10_000 + i, day * 1440 + i);
            a.alert_id = format!("poll-{day}-{i}");
            alerts.push(a);
        }
    }
    let run = |day: i64| -> Vec<Alert> {
        let ews = "10.3.0.250";
        let mut out = vec![alert(
            &format!("rdp-{day}"),
            day * 1440 + 600,
            "10.1.0.9",
            Some(ews),
            Domain::IT,
            "RDP",
            "LateralMovement",
            Severity::Medium,
        )];
        for (k, plc) in ["10.20.0.1", "10.20.0.2", "10.20.0.3"].iter().enumerate() {
            out.push(alert(
                &format!("dl-{day}-{k}"),
                day * 1440 + 620 + k as i64 * 10,
                ews,
                Some(plc),
                Domain::OT,
                "S7",
                "Execution",
                Severity::High,
            ));
        }
        out
    };
    alerts.extend(run(0));
    alerts.extend(run(7));
    alerts.sort_by_key(|a| a.time_generated);
    let mut e = Engine::new(Config::default());
    let (rows, accepted) = stream(&mut e, &alerts, 1000);
    assert_nothing_lost(&rows, accepted);
    let row_of = |id: &str| {
        rows.iter()
            .find(|r| r.alert_ids.iter().any(|x| &**x == id))
            .unwrap()
    };
    let (first, second) = (row_of("dl-0-0"), row_of("dl-7-0"));
    assert!(
        !first.reasons.iter().any(|r| r.contains("routine")),
        "{:?}",
        first.reasons
    );
    assert!(
        second
            .reasons
            .iter()
            .any(|r| r.contains("on an earlier day")),
        "{:?}",
        second.reasons
    );
    assert!(
        second.score < first.score - 3.0,
        "week 2 {} against week 1 {}",
        second.score,
        first.score
    );
}
