//! Scoring one final row against the window's own background, with the reasons an analyst
//! reads. Part of the engine: it reads the window the engine keeps. Nothing here is an absolute
//! threshold on path length, severity or tactic: a signal counts by how improbable it is in
//! this window.
//!
//! Signals (information in nats, summed):
//! - improbable continuations: each alert that joined a path because the continuation was
//!   unlikely by chance (the node rarely sends, the rule is rare) carries ln(p0 / expected);
//!   host-only alerts that follow a path node count the same way; the sum is scaled down when
//!   the linked alerts are a small part of the row (min(1, 2 (linked + 1) / alerts));
//! - rare rules: a rule whose rarity class (it and every rule about as rare) holds less than
//!   1 % of the window adds ln(0.01 / share) (the five rarest of the row);
//! - a novel IT → OT crossing: an IT host reaching an OT host on a pair that is rare in the
//!   window (an engineering workstation that programs PLCs daily is not novel);
//! - severity only as a tie-breaker, and a reading cost of 0.1 ln(alerts).

use super::{counts_as_stage, Engine, Strings, LINK_CHANCE};
use crate::alert::{format_time, Severity};
use crate::classify::Stage;
use crate::subgraph::{EvidenceItem, Subgraph, SubgraphEdge, SubgraphNode, MAX_ROW_ALERT_IDS};
use crate::FastMap;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Longest path tracked per node (bounds the work on large groups).
const MAX_TRACKED_PATH: usize = 16;
/// A rule under this share of the window is rare.
const RARE_RULE_SHARE: f64 = 0.01;
/// Rare rules counted per row.
const MAX_RARE_RULES: usize = 5;
/// Pairs with at most this many alerts in the window (row included) are novel.
const NOVEL_PAIR: u32 = 3;
/// Weight of a novel IT → OT crossing (nats).
const W_IT_OT: f64 = 3.0;
/// Weight of the maximum severity (tie-breaker).
const W_SEVERITY: f64 = 0.25;
/// Cost of reading a row, per nat of its size: among rows with little evidence, the smaller
/// come first.
const W_READING: f64 = 0.1;
/// Edges and nodes described per row (counts stay exact).
const MAX_DESCRIBED: usize = 100;
/// Protocols and tactics listed per edge.
const MAX_TAGS: usize = 8;
/// Evidence alerts described per row.
const MAX_EVIDENCE_ITEMS: usize = 10;
/// Victims named in a campaign's reasons.
const MAX_VICTIMS_NAMED: usize = 8;
/// Weight of each stage a host reached beyond its first (nats).
const W_PROGRESSION: f64 = 1.0;

/// Information (nats) of compromise evidence of `stage`: how much likelier a host showing it is
/// compromised than one that does not, on a log scale; the strongest stages are those an
/// attacker reaches last.
fn evidence_weight(stage: Stage) -> f64 {
    match stage {
        Stage::Execution | Stage::Credential => 5.0,
        Stage::Privilege | Stage::Control => 6.0,
        Stage::Exfiltration => 6.5,
        Stage::Impact => 7.0,
        _ => 0.0,
    }
}

/// Names of the stages in `mask` (bit = stage index), in kill-chain order.
fn stage_names(mask: u16) -> String {
    (1..10u8)
        .filter(|i| mask & (1 << i) != 0)
        .map(|i| Stage::from_index(i).name())
        .collect::<Vec<_>>()
        .join(" → ")
}

fn is_ot_protocol(p: &str) -> bool {
    [
        "modbus", "dnp3", "s7", "s7comm", "opc-ua", "opcua", "iec104", "enip",
    ]
    .iter()
    .any(|o| o.eq_ignore_ascii_case(p))
}

/// `text` clipped as [`clip`] does, shared when it is short enough already.
fn shared_clip(text: &Arc<str>, chars: usize) -> Arc<str> {
    if text.len() <= chars {
        text.clone()
    } else {
        clip(text, chars).into()
    }
}

fn clip(text: &str, chars: usize) -> String {
    if text.len() <= chars {
        return text.to_string(); // at most `chars` bytes, so at most `chars` characters
    }
    let mut out: String = text.chars().take(chars).collect();
    if text.chars().count() > chars {
        out.push('…');
    }
    out
}

/// (source, destination, rule, protocol).
type KindOnPair = (u32, u32, u32, u32);

/// A row's alerts on one directed pair.
#[derive(Clone, Copy, Debug)]
struct PairAgg {
    first: i64,
    alerts: u32,
    protocols: Tags,
    tactics: Tags,
}

/// Up to [`MAX_TAGS`] distinct interned strings, inline.
#[derive(Clone, Copy, Default, Debug)]
struct Tags {
    items: [u32; MAX_TAGS],
    len: usize,
}

impl Tags {
    fn add(&mut self, x: u32) {
        if x != 0 && self.len < MAX_TAGS && !self.items[..self.len].contains(&x) {
            self.items[self.len] = x;
            self.len += 1;
        }
    }

    fn as_slice(&self) -> &[u32] {
        &self.items[..self.len]
    }
}

/// Tables reused from row to row (cleared, not reallocated).
#[derive(Default, Debug)]
pub(crate) struct Scratch {
    pairs: FastMap<(u32, u32), PairAgg>,
    nodes: FastMap<u32, ()>,
    rules: FastMap<u32, u32>,
    /// The row's slots in id order.
    by_id: Vec<u32>,
    /// The row's pairs in first-seen order.
    pair_order: Vec<(u32, u32)>,
    /// The row's nodes in first-contact order.
    node_order: Vec<u32>,
    /// Longest time-respecting path found so far into each node, as (start, length) in `paths`.
    best: FastMap<u32, (usize, usize)>,
    /// Every path recorded in `best`, one after another.
    paths: Vec<u32>,
    /// Rare rules of the row: (share of the window, rule, alerts in the window).
    rare: Vec<(f64, u32, u32)>,
    /// The slots of the part being emitted.
    pub(super) part: Vec<u32>,
    /// The row's (pair, kind)s: seen on an earlier day, alerts.
    combos: FastMap<KindOnPair, (bool, u32)>,
    /// The row's subjects: the stages of its own alerts about each, and whether one attacks it.
    subjects: FastMap<u32, (u16, bool)>,
    /// The row's alerts per evidence kind.
    kinds_seen: FastMap<u32, u32>,
}

impl Clone for Scratch {
    /// Empty: the tables hold nothing between rows.
    fn clone(&self) -> Self {
        Scratch::default()
    }
}

impl Scratch {
    /// Empties the tables for the next row; `part`, filled before scoring, is kept.
    fn clear(&mut self) {
        // Tables a huge row grew are dropped rather than cleared bucket by bucket ever after.
        if self.pairs.capacity() > 4096 || self.paths.capacity() > 1 << 16 {
            let part = std::mem::take(&mut self.part);
            *self = Scratch {
                part,
                ..Scratch::default()
            };
        }
        self.pairs.clear();
        self.nodes.clear();
        self.rules.clear();
        self.by_id.clear();
        self.pair_order.clear();
        self.node_order.clear();
        self.best.clear();
        self.paths.clear();
        self.rare.clear();
        self.combos.clear();
        self.subjects.clear();
        self.kinds_seen.clear();
    }
}

/// The score so far and the reasons that give it.
#[derive(Default)]
struct Score {
    value: f64,
    reasons: Vec<String>,
}

/// Whether a row repeats earlier days, from the history profile.
struct Routine {
    /// Alerts on (pair, kind)s seen on an earlier day.
    alerts: u32,
    /// Most of the row does: a routine row.
    row: bool,
    /// What novel information (links, rare rules) counts for.
    novelty: f64,
}

/// Hex of the first `bytes` bytes of `digest`.
fn hex(digest: &[u8], bytes: usize) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    digest[..bytes]
        .iter()
        .flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]])
        .map(char::from)
        .collect()
}

/// The row of `scratch.part` (slots sorted by time). When the part is still counted in the
/// window (end of stream), `counted` is true and its own alerts are taken out of the background.
/// `star` is the node whose star (a hub's, or a campaign's source) the row is.
pub(crate) fn score_row(
    engine: &Engine,
    counted: bool,
    star: Option<u32>,
    scratch: &mut Scratch,
) -> Subgraph {
    scratch.clear();
    let subgraph_id = subgraph_id(engine, scratch);
    aggregate(engine, scratch);
    let routine = routine(engine, scratch);
    let mut score = Score::default();
    let (hops, path) = longest_path(engine, scratch, &mut score);
    links(engine, scratch, routine.novelty, &mut score);
    evidence(engine, scratch, counted, routine.row, &mut score);
    let alerts = scratch.part.len();
    let campaign = star.filter(|&h| {
        scratch
            .part
            .iter()
            .filter(|&&s| engine.slot(s).src == h)
            .count()
            * 2
            > alerts
    });
    match campaign {
        Some(h) => campaign_victims(engine, scratch, h, &mut score),
        None => progression(engine, scratch, &mut score),
    }
    rare_rules(engine, scratch, counted, routine.novelty, &mut score);
    let crosses_it_ot = crossing(engine, scratch, counted, &mut score);
    let max_severity = scratch
        .part
        .iter()
        .map(|&s| engine.slot(s).severity)
        .max()
        .unwrap_or(Severity::Informational);
    score.value += W_SEVERITY * max_severity.weight() - W_READING * (alerts as f64).ln();
    if score.reasons.is_empty() {
        score.reasons.push(format!(
            "{} alert(s), nothing improbable against this window",
            alerts
        ));
    }
    let shape = shape(engine, scratch, campaign);
    if let Some((change, reason)) = engine.feedback.adjustment(&shape) {
        score.value += change;
        // First: what analysts said outweighs what the engine found.
        score.reasons.insert(0, reason);
    }
    if routine.row {
        score.reasons.push(format!(
            "{} of {alerts} alert(s) on pairs that carried the same rule on an earlier day in the last {} days (routine)",
            routine.alerts,
            super::history::HISTORY_DAYS
        ));
    }
    if engine.emitting_early {
        score
            .reasons
            .push("emitted before its time: the engine's memory or alert bound was reached".into());
    }
    describe(
        engine,
        scratch,
        Subgraph {
            subgraph_id,
            rank: 0,
            score: score.value,
            first_seen: 0,
            last_seen: 0,
            node_count: 0,
            edge_count: 0,
            alert_count: alerts as u32,
            longest_path: hops,
            crosses_it_ot,
            path,
            nodes: Vec::new(),
            edges: Vec::new(),
            alert_ids: Vec::new(),
            evidence: Vec::new(),
            shape,
            reasons: score.reasons,
        },
    )
}

/// The stable id: a hash of the row's sorted AlertIds (left sorted in `by_id`).
fn subgraph_id(engine: &Engine, scratch: &mut Scratch) -> String {
    let Scratch { by_id, part, .. } = scratch;
    by_id.extend_from_slice(part);
    by_id.sort_unstable_by(|&a, &b| engine.slot(a).id.cmp(&engine.slot(b).id));
    let mut hasher = Sha256::new();
    for &s in by_id.iter() {
        hasher.update(engine.slot(s).id.as_bytes());
        hasher.update([0u8]);
    }
    hex(&hasher.finalize(), 16)
}

/// The row's pairs, nodes (first contact first) and rules.
fn aggregate(engine: &Engine, scratch: &mut Scratch) {
    let Scratch {
        pairs,
        nodes: node_seen,
        rules,
        pair_order,
        node_order,
        part,
        ..
    } = scratch;
    for &p in part.iter() {
        let s = engine.slot(p);
        for n in [s.src, s.dst] {
            if node_seen.insert(n, ()).is_none() {
                node_order.push(n);
            }
        }
        *rules.entry(s.name).or_default() += 1;
        let agg = pairs.entry((s.src, s.dst)).or_insert_with(|| {
            pair_order.push((s.src, s.dst));
            PairAgg {
                first: s.time,
                alerts: 0,
                protocols: Tags::default(),
                tactics: Tags::default(),
            }
        });
        agg.alerts += 1;
        agg.protocols.add(s.protocol);
        agg.tactics.add(s.tactic);
    }
}

/// What past windows saw: the share of the row's alerts whose pair carried their kind on an
/// earlier day (weekly maintenance is new once, routine the next week).
fn routine(engine: &Engine, scratch: &mut Scratch) -> Routine {
    let Scratch { combos, part, .. } = scratch;
    combos.clear();
    if engine.has_history() {
        for &p in part.iter() {
            let s = engine.slot(p);
            let key = (s.src, s.dst, s.name, s.protocol);
            if let Some(c) = combos.get_mut(&key) {
                c.1 += 1;
            } else if combos.len() < 256 {
                let before = engine.pair_kind_seen_before(s.src, s.dst, s.name, s.protocol, s.time);
                combos.insert(key, (before, 1));
            }
        }
    }
    let alerts: u32 = combos.values().filter(|c| c.0).map(|c| c.1).sum();
    // A row is routine when most of it repeats earlier days (a weekly maintenance run repeats
    // every pair and rule); a hop or two along pairs busy before is no such repetition.
    let row = f64::from(alerts) >= 0.75 * part.len() as f64;
    Routine {
        alerts,
        row,
        novelty: if row { 0.25 } else { 1.0 },
    }
}

/// The longest time-respecting simple path (reported; its weight comes from the links): its
/// hops, and its nodes when the row claims it (two hops or more).
fn longest_path(engine: &Engine, scratch: &mut Scratch, score: &mut Score) -> (u32, Vec<Arc<str>>) {
    let Scratch {
        best, paths, part, ..
    } = scratch;
    // Each node's best path so far is a range of `paths`; a longer one is appended, never
    // rewritten.
    let mut longest = 0..0;
    // A path runs over hops: network alerts that speak of an attack, or that joined as an
    // improbable continuation (a response or a host's own beacon is held as actor → subject,
    // so no path runs back through the attacker).
    for &p in part.iter() {
        let s = engine.slot(p);
        if s.src == s.dst || (s.stage == Stage::None && s.link <= 0.0) {
            continue;
        }
        // A campaign's source starts paths; none runs through it.
        let through = !engine.nodes[s.src as usize].campaign;
        let from = best
            .get(&s.src)
            .filter(|_| through)
            .map(|&(at, len)| at..at + len);
        let (len, blocked) = match &from {
            Some(path) => (path.len(), paths[path.clone()].contains(&s.dst)),
            None => (1, false),
        };
        if blocked || len >= MAX_TRACKED_PATH || len < best.get(&s.dst).map_or(1, |&(_, len)| len) {
            continue;
        }
        let at = paths.len();
        match from {
            Some(path) => paths.extend_from_within(path),
            None => paths.push(s.src),
        }
        paths.push(s.dst);
        let candidate = at..paths.len();
        if candidate.len() > longest.len() {
            longest = candidate.clone();
        }
        best.insert(s.dst, (at, candidate.len()));
    }
    let longest = &paths[longest];
    let hops = longest.len().saturating_sub(1) as u32;
    let mut path = Vec::new();
    if hops >= 2 {
        path = longest
            .iter()
            .map(|&n| engine.nodes[n as usize].ip.clone())
            .collect();
        let text: Vec<&str> = path.iter().map(|n: &Arc<str>| &**n).collect();
        score
            .reasons
            .push(format!("{hops}-hop time-ordered path {}", text.join(" → ")));
    }
    (hops, path)
}

/// Improbable continuations: their information, in proportion to how much of the row they
/// explain (a routine group that once linked a few alerts is mostly routine traffic to read).
fn links(engine: &Engine, scratch: &Scratch, novelty: f64, score: &mut Score) {
    let slots = || scratch.part.iter().map(|&s| engine.slot(s));
    let links = || slots().filter(|s| s.link > 0.0 && !s.attached);
    let attached = || slots().filter(|s| s.attached);
    let (link_count, attached_count) = (links().count(), attached().count());
    let linked = (link_count + attached_count) as f64;
    let explained = (2.0 * (linked + 1.0) / scratch.part.len() as f64).min(1.0);
    let link_info: f64 = (links().map(|s| f64::from(s.link)).sum::<f64>()
        + attached().map(|s| f64::from(s.link)).sum::<f64>())
        * explained
        * novelty;
    score.value += link_info;
    if link_count > 0 {
        let best = links().map(|s| f64::from(s.link)).fold(0.0, f64::max);
        score.reasons.push(format!(
            "{link_count} continuation(s) unlikely by chance in this window (best: {:.1e} expected)",
            LINK_CHANCE * (-best).exp()
        ));
    }
    if attached_count > 0 {
        score.reasons.push(format!(
            "{attached_count} host alert(s) follow the path on its hosts"
        ));
    }
}

/// Compromise evidence: the strongest stage, more stages, more alerts; judged again against
/// the window as it stands (an alert taken for evidence before the window had a background,
/// the first minutes of a stream, may be of a routine kind).
fn evidence(
    engine: &Engine,
    scratch: &mut Scratch,
    counted: bool,
    routine_row: bool,
    score: &mut Score,
) {
    let Scratch {
        kinds_seen, part, ..
    } = scratch;
    let slots = || part.iter().map(|&s| engine.slot(s));
    // The row's own alerts of each evidence kind, when they are out of the background.
    kinds_seen.clear();
    if !counted {
        for s in slots().filter(|s| s.evidence) {
            kinds_seen.entry(s.kind).or_insert(0);
        }
        for s in slots() {
            if let Some(n) = kinds_seen.get_mut(&s.kind) {
                *n += 1;
            }
        }
    }
    let routine = |kind: u32| -> bool {
        let own = kinds_seen.get(&kind).copied().unwrap_or(0);
        kind != super::NO_KIND && !engine.kind_is_rare(kind, engine.background_len(), own)
    };
    let mut evidence_alerts = 0usize;
    let mut evidence_stages = 0u16;
    let mut top: Option<&super::state::Slot> = None;
    for s in slots().filter(|s| s.evidence && !routine(s.kind)) {
        evidence_alerts += 1;
        evidence_stages |= 1 << s.stage as u8;
        if top.is_none_or(|t| s.stage > t.stage) {
            top = Some(s);
        }
    }
    if let Some(t) = top {
        score.value += (evidence_weight(t.stage)
            + 0.5 * f64::from(evidence_stages.count_ones() - 1)
            + 0.3 * (evidence_alerts as f64).ln())
            * if routine_row { 0.5 } else { 1.0 };
        score.reasons.push(format!(
            "compromise evidence about {}: {evidence_alerts} alert(s) of {} (strongest: {:?})",
            engine.nodes[t.dst as usize].ip,
            stage_names(evidence_stages),
            clip(engine.names.get(t.name).unwrap_or_default(), 80)
        ));
    }
}

/// A campaign: its source's attacks on many hosts, named with the strongest evidence about
/// each, ranked by a quarter of the strongest (the victims' own rows rank above it: they are
/// what to read first; breadth alone is no evidence — a vulnerability scanner reaches every
/// host).
fn campaign_victims(engine: &Engine, scratch: &mut Scratch, h: u32, score: &mut Score) {
    let Scratch { subjects, part, .. } = scratch;
    subjects.clear();
    for &p in part.iter() {
        let s = engine.slot(p);
        if s.src == h && s.dst != h {
            subjects.entry(s.dst).or_insert((0, true));
        }
    }
    let ip = |n: u32| &*engine.nodes[n as usize].ip;
    let stage_of = |n: u32| engine.nodes[n as usize].top_evidence;
    let mut victims: Vec<u32> = subjects.keys().copied().collect();
    victims.sort_by_key(|&n| {
        (
            std::cmp::Reverse(stage_of(n)),
            engine.nodes[n as usize].ip.clone(),
        )
    });
    let strongest = victims.first().map_or(Stage::None, |&n| stage_of(n));
    score.value += 0.25 * evidence_weight(strongest);
    let named: Vec<String> = victims
        .iter()
        .take(MAX_VICTIMS_NAMED)
        .map(|&n| match stage_of(n) {
            Stage::None => ip(n).to_string(),
            st => format!("{} ({})", ip(n), st.name()),
        })
        .collect();
    score.reasons.push(format!(
        "campaign from {}: {} host(s) attacked: {}{}",
        ip(h),
        victims.len(),
        named.join(", "),
        if victims.len() > MAX_VICTIMS_NAMED {
            ", …"
        } else {
            ""
        }
    ));
}

/// Progression: the stages a host this row attacks or speaks of reached in the window (one
/// pass: the stages of the row's own alerts per subject, then the window's).
fn progression(engine: &Engine, scratch: &mut Scratch, score: &mut Score) {
    let Scratch { subjects, part, .. } = scratch;
    subjects.clear();
    for &p in part.iter() {
        let s = engine.slot(p);
        let entry = subjects.entry(s.dst).or_insert((0, false));
        if counts_as_stage(s.stage, s.evidence) {
            entry.0 |= 1 << s.stage as u8;
        }
        entry.1 |= s.stage >= Stage::Attempt;
    }
    let mut best: Option<(u32, u16)> = None;
    for (&n, &(own, _)) in subjects.iter().filter(|(_, v)| v.1) {
        let node = &engine.nodes[n as usize];
        let mask = (1..10usize)
            .filter(|&i| node.stages[i] > 0)
            .fold(own, |m, i| m | 1 << i)
            & !1;
        let better = best.is_none_or(|(b, m)| {
            (mask.count_ones(), std::cmp::Reverse(n)) > (m.count_ones(), std::cmp::Reverse(b))
        });
        if better {
            best = Some((n, mask));
        }
    }
    if let Some((n, mask)) = best.filter(|(_, m)| m.count_ones() >= 2) {
        score.value += W_PROGRESSION * f64::from(mask.count_ones() - 1);
        score.reasons.push(format!(
            "host {} reached {} stages: {}",
            engine.nodes[n as usize].ip,
            mask.count_ones(),
            stage_names(mask)
        ));
    }
}

/// Rare rules, against the window's background: the rarest counts in full, the next ones a
/// quarter each, and, as for links, in proportion to how much of the row the rare alerts are (a
/// campaign's thousands of probes with a few rare ones among them is mostly routine to read).
fn rare_rules(
    engine: &Engine,
    scratch: &mut Scratch,
    counted: bool,
    novelty: f64,
    score: &mut Score,
) {
    let Scratch {
        rules, rare, part, ..
    } = scratch;
    let alerts = part.len();
    let total = engine.background_len() as f64 + if counted { 0.0 } else { alerts as f64 };
    rare.extend(rules.iter().map(|(&r, &n)| {
        let in_window = engine.rules.count(r) + if counted { 0 } else { n };
        let tail = engine.rules.tail(in_window) + if counted { 0 } else { u64::from(n) };
        (tail.max(1) as f64 / total.max(1.0), r, in_window)
    }));
    rare.retain(|&(share, _, _)| share < RARE_RULE_SHARE);
    // Ties in rule name order (not by index: indexes are reused as rules come and go).
    rare.sort_by(|a, b| {
        a.0.total_cmp(&b.0)
            .then_with(|| engine.names.get(a.1).cmp(&engine.names.get(b.1)))
    });
    let rare_alerts: u32 = rare.iter().map(|&(_, r, _)| rules[&r]).sum();
    let rare_explained = (2.0 * (f64::from(rare_alerts) + 1.0) / alerts as f64).min(1.0);
    for (i, &(share, r, count)) in rare.iter().take(MAX_RARE_RULES).enumerate() {
        let weight = if i == 0 { 1.0 } else { 0.25 };
        score.value += weight * rare_explained * novelty * (RARE_RULE_SHARE / share).ln();
        score.reasons.push(format!(
            "rare rule {:?}: {count} of {} alerts in the window",
            clip(engine.names.get(r).unwrap_or_default(), 80),
            total as u64
        ));
    }
}

/// A novel IT → OT crossing (an IT host reaching an OT host on a pair rare in the window and
/// not seen on earlier days); whether the row crosses at all.
fn crossing(engine: &Engine, scratch: &Scratch, counted: bool, score: &mut Score) -> bool {
    let slots = || scratch.part.iter().map(|&s| engine.slot(s));
    let crossing = slots().find(|s| {
        s.src != s.dst
            && s.domain == crate::Domain::OT
            && !scratch
                .combos
                .get(&(s.src, s.dst, s.name, s.protocol))
                .is_some_and(|c| c.0)
            && engine.nodes[s.src as usize].it
            && engine.pairs.get(&(s.src, s.dst)).map_or(0, |p| p.count)
                + if counted {
                    0
                } else {
                    scratch.pairs[&(s.src, s.dst)].alerts
                }
                <= NOVEL_PAIR
    });
    if let Some(s) = crossing {
        score.value += W_IT_OT;
        let protocol = engine.protocols.get(s.protocol).unwrap_or("?");
        let ot = if is_ot_protocol(protocol) {
            " over an OT protocol"
        } else {
            ""
        };
        score.reasons.push(format!(
            "IT host {} reached OT host {} on a novel pair ({}{ot})",
            engine.nodes[s.src as usize].ip,
            engine.nodes[s.dst as usize].ip,
            clip(protocol, 32)
        ));
    }
    slots()
        .any(|s| s.src != s.dst && s.domain == crate::Domain::OT && engine.nodes[s.src as usize].it)
}

/// The row's shape: campaign (and its source) or story, its rules and its stages — what
/// analysts' verdicts are kept under.
fn shape(engine: &Engine, scratch: &Scratch, campaign: Option<u32>) -> String {
    let mut names: Vec<&str> = scratch
        .rules
        .keys()
        .map(|&r| engine.names.get(r).unwrap_or_default())
        .collect();
    names.sort_unstable();
    names.truncate(64);
    let stages = scratch
        .part
        .iter()
        .fold(0u16, |m, &s| m | 1 << engine.slot(s).stage as u8);
    let mut h = Sha256::new();
    match campaign {
        Some(c) => {
            h.update(format!("campaign\u{0}{}\u{0}", engine.nodes[c as usize].ip).as_bytes())
        }
        None => h.update(b"story\0"),
    }
    for n in names {
        h.update(n.as_bytes());
        h.update([0u8]);
    }
    h.update(stages.to_le_bytes());
    hex(&h.finalize(), 8)
}

/// The row's description: times, counts, edges (busiest first), nodes (first contact first),
/// evidence and AlertIds (evidence first, so a cut list never hides it).
fn describe(engine: &Engine, scratch: &mut Scratch, mut row: Subgraph) -> Subgraph {
    let Scratch {
        pairs,
        by_id,
        pair_order,
        node_order,
        part,
        ..
    } = scratch;
    let slots = || part.iter().map(|&s| engine.slot(s));
    let ip = |n: u32| &*engine.nodes[n as usize].ip;
    pair_order.sort_by(|a, b| {
        pairs[b]
            .alerts
            .cmp(&pairs[a].alerts)
            .then(pairs[a].first.cmp(&pairs[b].first))
    });
    let tags = |list: &[u32], table: &Strings| -> Vec<Arc<str>> {
        list.iter()
            .filter_map(|&x| table.shared(x))
            .map(|t| shared_clip(t, 64))
            .collect()
    };
    row.edges = pair_order
        .iter()
        .take(MAX_DESCRIBED)
        .map(|k| {
            let p = &pairs[k];
            SubgraphEdge {
                src: ip(k.0).into(),
                dst: ip(k.1).into(),
                first_seen: format_time(p.first),
                alerts: p.alerts,
                protocols: tags(p.protocols.as_slice(), &engine.protocols),
                tactics: tags(p.tactics.as_slice(), &engine.tactics),
            }
        })
        .collect();
    row.nodes = node_order
        .iter()
        .take(MAX_DESCRIBED)
        .map(|&n| {
            let node = &engine.nodes[n as usize];
            SubgraphNode {
                ip: node.ip.clone(),
                host: node.host.as_ref().map(|h| shared_clip(h, 64)),
                domain: match (node.it, node.ot) {
                    (true, true) => "IT/OT",
                    (false, true) => "OT",
                    _ => "IT",
                },
            }
        })
        .collect();
    row.evidence = slots()
        .filter(|s| s.evidence)
        .take(MAX_EVIDENCE_ITEMS)
        .map(|s| EvidenceItem {
            alert_id: s.id.clone(),
            time: format_time(s.time),
            name: engine
                .names
                .shared(s.name)
                .map_or_else(|| "".into(), |n| shared_clip(n, 120)),
            stage: s.stage.name(),
            host: engine.nodes[s.dst as usize].ip.clone(),
            peer: (s.src != s.dst).then(|| engine.nodes[s.src as usize].ip.clone()),
        })
        .collect();
    let limit = if engine.cfg.list_all_alert_ids {
        usize::MAX
    } else {
        MAX_ROW_ALERT_IDS
    };
    row.alert_ids = by_id
        .iter()
        .filter(|&&s| engine.slot(s).evidence)
        .chain(by_id.iter().filter(|&&s| !engine.slot(s).evidence))
        .take(limit)
        .map(|&s| engine.slot(s).id.clone())
        .collect();
    row.first_seen = slots().next().map_or(0, |s| s.time);
    row.last_seen = slots().map(|s| s.time).max().unwrap_or(0);
    row.node_count = node_order.len() as u32;
    row.edge_count = pairs.len() as u32;
    row
}
