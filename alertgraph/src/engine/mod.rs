//! The incremental, time-windowed communication graph: hosts/IPs are nodes, alerts are
//! directed, timed edges. Every alert joins one group (a subgraph) when it arrives, with work
//! per alert, never per window:
//!
//! - alerts on the same directed pair share a group;
//! - an alert B → C joins the group of a recent alert A → B (within `flow_gap_ms`) when such a
//!   continuation is improbable against the window's own background (B rarely sends, the rule
//!   is rare, both pairs are rare); a host-only alert on B joins the path it follows the same way;
//! - alerts touching a hub (a node with far more peers than the window's typical node: scanners,
//!   domain controllers, a flooding source) join that hub's star group, so noise does not glue
//!   unrelated activity together.
//!
//! Groups are emitted as final rows by [`Engine::evict`]: whole, when their newest alert has left
//! the window (closed), or in parts, when a long-lived group still straddles the window edge
//! half a window later (the part that left). Every accepted alert ends in exactly one row;
//! [`Engine::finish`] emits what is left at the end of a stream.

mod evict;
mod link;
mod ranking;
mod score;
mod snapshot;
mod state;
mod tables;

#[doc(hidden)]
pub use link::LinkTrace;
pub use ranking::rank;

use crate::alert::{Alert, AlertView, Rejected};
use crate::{FastMap, FastSet, TextMap};
use score::Scratch;
use serde::{Deserialize, Serialize};
use state::{Group, Node, Pair, Slot};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use tables::{Kinds, RuleCounts, Strings};

/// Engine settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// How long an alert stays in the window (ms).
    pub window_ms: i64,
    /// A node is a hub when it has more distinct peers than this and than eight times the
    /// window's mean degree.
    pub hub_degree: usize,
    /// An alert B → C may continue an alert A → B that came at most this long before it (ms).
    pub flow_gap_ms: i64,
    /// Most alerts held (window plus groups still open); above it the oldest leave early.
    pub max_alerts: usize,
    /// Most bytes held (estimated); above it the oldest alerts leave early.
    pub max_bytes: usize,
    /// Rows list every AlertId (for evaluation), not only the first [`crate::subgraph::MAX_ROW_ALERT_IDS`].
    pub list_all_alert_ids: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            window_ms: 24 * 3600 * 1000,
            hub_degree: 24,
            flow_gap_ms: 2 * 3600 * 1000,
            max_alerts: 4_000_000,
            max_bytes: 1 << 30,
            list_all_alert_ids: false,
        }
    }
}

/// A pair with at most this many alerts in the window is rare: routine pairs (polling, admin
/// sessions) neither continue nor are continued.
const RARE_PAIR: u32 = 2;

/// Incoming rare alerts remembered per node for continuations.
pub(crate) const RECENT_IN: usize = 8;

/// A continuation is linked when the expected number of such continuations by chance is
/// below this.
pub(crate) const LINK_CHANCE: f64 = 0.1;

/// A group with more alerts than this neither continues nor is continued: a big group has many
/// recent alerts, so something follows one of them by chance (and it would glue paths to it).
const MAX_LINKED_GROUP: u32 = 32;

/// Most information (nats) one link adds to a score.
const MAX_LINK_INFO: f64 = 6.0;

/// Fewest arrivals counted between two alerts of a continuation.
const MIN_BETWEEN: f64 = 8.0;

/// Bytes an alert costs beyond its id text (slot, window entry, map entries), for the bound.
const ALERT_OVERHEAD_BYTES: usize = 160;

/// Never a group.
const NO_GROUP: u32 = u32::MAX;

/// Most alert kinds held at once (in the window); alerts of further kinds are judged by their
/// rule alone.
const MAX_KINDS: usize = 1 << 16;

/// Not a kind (the kind table is full).
const NO_KIND: u32 = u32::MAX;

/// Never a slot.
const NO_SLOT: u32 = u32::MAX;

/// Lowest chance carried by an incoming alert.
const MIN_CHANCE: f32 = 1e-2;

/// Fewest alerts in the window before any continuation is judged improbable: rates need a
/// background to be measured against.
const MIN_BACKGROUND: usize = 200;

/// Counters of early evictions forced by the count/byte bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EarlyEvictions {
    /// Times the bound forced alerts out.
    pub times: u64,
    /// Alerts emitted before their time because of it.
    pub alerts: u64,
}

/// The engine: alerts held, their groups, and the window's background counters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Engine {
    cfg: Config,
    pub(crate) nodes: Vec<Node>,
    #[serde(skip)]
    node_index: TextMap<u32>,
    free_nodes: Vec<u32>,
    pub(crate) slots: Vec<Option<Slot>>,
    free_slots: Vec<u32>,
    /// Slots in the window, oldest first.
    window: VecDeque<u32>,
    /// Alerts per directed pair in the window.
    pub(crate) pairs: FastMap<(u32, u32), Pair>,
    /// Alerts per rule name in the window.
    pub(crate) rules: RuleCounts,
    /// Alert kinds, (rule name, protocol) → id: what a node's routine repeats (a backup job is
    /// one rule on one service), the unit of the link test's rates.
    kinds: Kinds,
    /// Alerts per kind in the window (rarity classes and spread, as for rules).
    kind_counts: RuleCounts,
    /// Alerts per (sending node, kind) in the window.
    node_kinds: FastMap<(u32, u32), u32>,
    /// Alerts per (source, destination, kind) in the window, network alerts only, for kinds a
    /// pair has no place for in [`Pair::kinds`].
    pair_kinds: FastMap<(u32, u32, u32), u32>,
    groups: Vec<Group>,
    free_groups: Vec<u32>,
    /// Groups in use (not free) when the last compaction ran.
    groups_after_compaction: usize,
    stars: FastMap<u32, u32>,
    checks: BinaryHeap<Reverse<(i64, u32)>>,
    distinct_pairs: u64,
    /// AlertIds held, by keyed hash (an attacker cannot craft collisions without the
    /// per-process key; a 64-bit clash between honest ids is a ~1e-8 chance per million).
    #[serde(skip)]
    seen: FastSet<u64>,
    #[serde(skip)]
    id_hasher: ahash::RandomState,
    pub(crate) protocols: Strings,
    pub(crate) tactics: Strings,
    pub(crate) names: Strings,
    max_time: i64,
    /// Alerts accepted so far: the clock continuations are measured in, so a busy day or hour
    /// (more alerts per minute) makes a continuation more likely by chance, as it is.
    arrivals: u64,
    bytes: usize,
    early: EarlyEvictions,
    /// Tables the scoring of a row reuses.
    #[serde(skip)]
    scratch: Scratch,
    /// What the link test saw for each alert, when diagnostics are on.
    #[serde(skip)]
    trace: Option<Vec<LinkTrace>>,
}

impl Engine {
    /// An empty engine.
    pub fn new(cfg: Config) -> Self {
        Self {
            cfg,
            nodes: Vec::new(),
            node_index: TextMap::default(),
            free_nodes: Vec::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            window: VecDeque::new(),
            pairs: FastMap::default(),
            rules: RuleCounts::new(),
            kinds: Kinds::default(),
            kind_counts: RuleCounts::new(),
            node_kinds: FastMap::default(),
            pair_kinds: FastMap::default(),
            groups: Vec::new(),
            free_groups: Vec::new(),
            groups_after_compaction: 0,
            stars: FastMap::default(),
            checks: BinaryHeap::new(),
            distinct_pairs: 0,
            seen: FastSet::default(),
            id_hasher: ahash::RandomState::new(),
            protocols: Strings::new(4096),
            tactics: Strings::new(256),
            names: Strings::new(1 << 16),
            max_time: i64::MIN,
            arrivals: 0,
            bytes: 0,
            early: EarlyEvictions::default(),
            scratch: Scratch::default(),
            trace: None,
        }
    }

    /// Diagnostics: records what the link test saw for every alert from now on.
    #[doc(hidden)]
    pub fn set_trace(&mut self, on: bool) {
        self.trace = on.then(Vec::new);
    }

    /// Diagnostics: the records since [`Engine::set_trace`].
    #[doc(hidden)]
    pub fn take_trace(&mut self) -> Vec<LinkTrace> {
        self.trace.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// The settings.
    pub fn config(&self) -> Config {
        self.cfg
    }

    /// Alerts in the window.
    pub fn len(&self) -> usize {
        self.window.len()
    }

    /// True when the engine holds no alert.
    pub fn is_empty(&self) -> bool {
        self.held() == 0
    }

    /// Alerts held: in the window, or out of it and waiting in an open group.
    pub fn held(&self) -> usize {
        self.slots.len() - self.free_slots.len()
    }

    /// Estimated bytes held.
    pub fn held_bytes(&self) -> usize {
        self.bytes
    }

    /// Nodes held.
    pub fn node_count(&self) -> usize {
        self.nodes.len() - self.free_nodes.len()
    }

    /// Early evictions forced by the count/byte bound so far.
    pub fn early_evictions(&self) -> EarlyEvictions {
        self.early
    }

    /// The newest alert time seen (unix ms), if any.
    pub fn newest(&self) -> Option<i64> {
        (self.max_time != i64::MIN).then_some(self.max_time)
    }

    /// Start of the window: alerts before it leave it, and are refused on arrival.
    pub fn window_start(&self) -> i64 {
        self.max_time.saturating_sub(self.cfg.window_ms)
    }

    /// How long a group may straddle the window edge before the part outside is emitted.
    fn hold_ms(&self) -> i64 {
        self.cfg.window_ms / 2
    }

    /// Adds an alert. Refuses a duplicate AlertId still held, and an alert older than the
    /// window.
    pub fn ingest(&mut self, alert: &Alert) -> Result<(), Rejected> {
        self.ingest_view(&alert.view())
    }

    /// [`Engine::ingest`] of a view (text borrowed from the input).
    pub fn ingest_view(&mut self, alert: &AlertView<'_>) -> Result<(), Rejected> {
        if self.max_time != i64::MIN && alert.time_generated < self.window_start() {
            return Err(Rejected {
                alert_id: Some(alert.alert_id.to_string()),
                reason: format!(
                    "TimeGenerated is older than the window ({} min before the newest alert)",
                    self.cfg.window_ms / 60_000
                ),
            });
        }
        // Held from here on: nothing below refuses the alert.
        let hash = self.id_hasher.hash_one(&*alert.alert_id);
        if !self.seen.insert(hash) {
            return Err(Rejected {
                alert_id: Some(alert.alert_id.to_string()),
                reason: "duplicate AlertId (already in the window)".into(),
            });
        }
        let time = alert.time_generated;
        self.arrivals += 1;
        self.max_time = self.max_time.max(time);
        // A host known only by name (no address) is its own node, keyed by the name.
        let src_key = match &*alert.src_ip {
            "" => alert.src_host.as_deref().unwrap_or_default(),
            ip => ip,
        };
        let dst_key = alert.dst_ip.as_deref().or(alert.dst_host.as_deref());
        let src = self.node(src_key, alert.src_host.as_deref(), alert.domain);
        let dst = match dst_key {
            Some(key) if key != src_key => self.node(key, alert.dst_host.as_deref(), alert.domain),
            _ => {
                self.nodes[src as usize].refs += 1;
                src
            }
        };
        let name = self.names.intern(Some(&alert.alert_name));
        let protocol = self.protocols.intern(alert.protocol.as_deref());
        let kind = self.kind(name, protocol);
        let host_only = src == dst;
        let pair_before = self.pairs.get(&(src, dst)).copied();
        let pair_group = pair_before.and_then(|p| self.live_root(p.group));
        let hub = [src, dst]
            .into_iter()
            .find(|&n| !host_only && self.is_hub(n));
        if let Some(t) = self.trace.as_mut() {
            t.push(LinkTrace {
                arrival: self.arrivals,
                kind: if hub.is_some() {
                    0
                } else if host_only {
                    1
                } else {
                    2
                },
                pair_count: pair_before.map_or(0, |p| p.count),
                pair_factor: 1.0,
                ..LinkTrace::default()
            });
        }
        let (group, link, attached, kept_pair) = if let Some(h) = hub {
            let star = self.stars.get(&h).copied();
            let g = match star.and_then(|g| self.live_root(g)) {
                Some(g) => g,
                None => {
                    let g = self.new_group(Some(h));
                    self.stars.insert(h, g);
                    g
                }
            };
            (g, 0.0, false, false)
        } else if host_only {
            match self.best_link(src, time, name, kind, false) {
                Some(link) => {
                    let entry = &mut self.nodes[src as usize].recent_in[link.entry];
                    entry.chance = (entry.chance * link.expected as f32).max(MIN_CHANCE);
                    if let Some(t) = self.trace.as_mut().and_then(|t| t.last_mut()) {
                        t.linked = true;
                    }
                    (link.group, link.info, true, false)
                }
                None => (
                    pair_group.unwrap_or_else(|| self.new_group(None)),
                    0.0,
                    false,
                    false,
                ),
            }
        } else if let Some(l) = self.fresh_kind_link(src, dst, time, name, kind, pair_before) {
            // A kind the routine pair has not carried, improbable after a story on its source:
            // it joins the story, not the pair's routine group (which keeps the pair).
            if let Some(t) = self.trace.as_mut().and_then(|t| t.last_mut()) {
                t.linked = true;
            }
            let chance = &mut self.nodes[src as usize].recent_in[l.entry].chance;
            *chance = chance.sqrt();
            self.remember_incoming(dst, time, l.group, name, kind);
            (l.group, l.info, false, true)
        } else {
            let mut g = pair_group.unwrap_or_else(|| self.new_group(None));
            let rare = pair_before.map_or(0, |p| p.count) < RARE_PAIR
                && self.groups[g as usize].live <= MAX_LINKED_GROUP;
            let mut link = 0.0;
            if rare {
                if let Some(t) = self.trace.as_mut().and_then(|t| t.last_mut()) {
                    t.kind = 3;
                }
                if let Some(l) = self.best_link(src, time, name, kind, pair_before.is_none()) {
                    if let Some(t) = self.trace.as_mut().and_then(|t| t.last_mut()) {
                        t.linked = true;
                    }
                    g = self.union(g, l.group);
                    link = l.info;
                    // Half the evidence on the node (in nats) is spent: a second continuation out
                    // of it (a chance one before the real one, or a fan-out) needs more of its own.
                    let chance = &mut self.nodes[src as usize].recent_in[l.entry].chance;
                    *chance = chance.sqrt();
                }
                self.remember_incoming(dst, time, g, name, kind);
            }
            (g, link, false, false)
        };

        // Background counters.
        self.rules.change(name, true);
        self.nodes[src as usize].sent += 1;
        self.count_kind(src, kind, true);
        let mut opened = false;
        if !attached {
            let p = self.pairs.entry((src, dst)).or_insert(Pair::NEW);
            p.count += 1;
            if !host_only && kind != NO_KIND && !p.count_kind(kind, true) {
                p.spilled += 1;
                *self.pair_kinds.entry((src, dst, kind)).or_insert(0) += 1;
            }
            if !kept_pair {
                p.group = group;
            }
            if !host_only && p.count == 1 {
                self.nodes[src as usize].singles += 1;
            } else if !host_only && p.count == 2 {
                self.nodes[src as usize].singles -= 1;
            }
            if p.count > 1 && !host_only {
                self.nodes[src as usize].repeated += 1;
            }
            if p.count == 1 && !host_only {
                opened = true;
                self.nodes[src as usize].opened += 1;
                self.nodes[src as usize].degree += 1;
                self.nodes[dst as usize].degree += 1;
                self.distinct_pairs += 1;
            }
        }
        let g = &mut self.groups[group as usize];
        g.live += 1;
        g.newest = g.newest.max(time);

        let slot = Slot {
            time,
            src,
            dst,
            severity: alert.severity,
            domain: alert.domain,
            protocol,
            tactic: self.tactics.intern(alert.tactic.as_deref()),
            name,
            kind,
            id: (*alert.alert_id).into(),
            hash,
            link,
            attached,
            group,
            counted_pair: !attached,
            opened,
            next: NO_SLOT,
        };
        self.bytes += ALERT_OVERHEAD_BYTES + slot.id.len();
        let s = tables::put(&mut self.slots, &mut self.free_slots, Some(slot));
        // Keep the window in time order; a late alert is inserted near the back (cheap).
        if self
            .window
            .back()
            .is_none_or(|&w| self.slot(w).time <= time)
        {
            self.window.push_back(s);
        } else {
            let at = self.window.partition_point(|&w| self.slot(w).time <= time);
            self.window.insert(at, s);
        }
        Ok(())
    }

    pub(crate) fn slot(&self, s: u32) -> &Slot {
        self.slots[s as usize].as_ref().expect("live slot")
    }
}
