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
mod history;
mod link;
mod memory;
mod ranking;
mod score;
mod snapshot;
mod state;
mod tables;

use link::Arrival;
#[doc(hidden)]
pub use link::LinkTrace;
pub use ranking::rank;

use crate::alert::{Alert, AlertExt, AlertView, Direction, Rejected};
use crate::classify::{classify, infer_direction, Class, Stage, Subject};
use crate::{FastMap, FastSet, TextMap};
use score::Scratch;
use serde::{Deserialize, Serialize};
use state::{Group, Identity, Node, NodeKind, Pair, Slot};
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
    /// Most bytes held ([`Engine::held_bytes`]: every table's allocation, the history
    /// included); above it the oldest alerts leave the window early.
    pub max_bytes: usize,
    /// Rows list every AlertId (for evaluation), not only the first [`crate::subgraph::MAX_ROW_ALERT_IDS`].
    pub list_all_alert_ids: bool,
    /// Places in the history profile (12 bytes each, counted in `max_bytes`): what past windows
    /// saw of each (pair, kind), (host, kind) and kind, for about five weeks.
    pub history_entries: usize,
    /// Key of the history profile's hash: 0 draws one at random (an attacker cannot choose
    /// names that push each other out of the profile); a fixed key makes runs comparable
    /// (which entries a full profile gives up depends on it).
    pub history_seed: u64,
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
            history_entries: 1 << 18,
            history_seed: 0,
        }
    }
}

/// A pair with at most this many alerts in the window is rare: routine pairs (polling, admin
/// sessions) neither continue nor are continued.
const RARE_PAIR: u32 = 2;

/// Incoming rare alerts remembered per node for continuations.
pub(crate) const RECENT_IN: usize = 16;

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

/// Never a group.
const NO_GROUP: u32 = u32::MAX;

/// Most alert kinds held at once (in the window); alerts of further kinds are judged by their
/// rule alone.
const MAX_KINDS: usize = 1 << 16;

/// Not a kind (the kind table is full).
pub(super) const NO_KIND: u32 = u32::MAX;

/// Never a slot.
const NO_SLOT: u32 = u32::MAX;

/// A kind under this share of the window is rare: a compromise stage of a rare kind is
/// compromise evidence.
pub(crate) const RARE_KIND_SHARE: f64 = 0.01;

/// Host-only alerts of one kind on one host more than this apart are separate episodes, and
/// so are episodes of compromise evidence about one host.
const EPISODE_GAP_MS: i64 = 3600 * 1000;

/// A node that sent attack alerts (reconnaissance, attempts) to this many hosts in the window
/// is a campaign's source: its further attack alerts form one campaign row.
pub(super) const CAMPAIGN_VICTIMS: u32 = 6;

/// Whether an alert counts in its subject's stages: attacks always, compromise stages only as
/// evidence (a routine "suspicious process" on every host is no stage reached).
pub(crate) fn counts_as_stage(stage: Stage, evidence: bool) -> bool {
    stage.is_attack() || evidence
}

/// Lowest chance carried by an incoming alert.
const MIN_CHANCE: f32 = 1e-2;

/// Fewest alerts in the window before any continuation is judged improbable: rates need a
/// background to be measured against.
pub(super) const MIN_BACKGROUND: usize = 200;

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
    pub(super) kind_counts: RuleCounts,
    /// Alerts per (sending node, kind) in the window, and host-only episodes.
    node_kinds: FastMap<(u32, u32), NodeKind>,
    /// Alerts per account (keyed hash) in the window, and per (sending node, account).
    accounts: FastMap<u64, u32>,
    node_accounts: FastMap<(u32, u64), u32>,
    /// Seeds of the keyed hash of identities (kept with the snapshot: identities hashed before
    /// a restore still match those hashed after it).
    identity_seeds: [u64; 4],
    /// What each rule name says (by name index): the class, and the category (keyed hash) and
    /// tactic it was read with.
    #[serde(skip)]
    pub(super) name_classes: Vec<Option<(u64, u32, Class)>>,
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
    /// What past windows saw.
    history: history::History,
    /// Analysts' verdicts by row shape (set by the host from its store).
    #[serde(skip)]
    pub(super) feedback: crate::feedback::Feedback,
    /// Bytes of node addresses and host names held.
    node_text: usize,
    /// Bytes of the nodes' remembered incoming alerts.
    pub(super) recent_bytes: usize,
    /// Tables the scoring of a row reuses.
    #[serde(skip)]
    scratch: Scratch,
    /// While [`Engine::finish`] runs: the alerts the window held, the background rows are
    /// scored against.
    #[serde(skip)]
    finishing: Option<usize>,
    /// While the count or byte bound moves alerts out early: their rows say so.
    #[serde(skip)]
    pub(super) emitting_early: bool,
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
            accounts: FastMap::default(),
            node_accounts: FastMap::default(),
            identity_seeds: {
                let r = ahash::RandomState::new();
                [0u64, 1, 2, 3].map(|i| r.hash_one(i))
            },
            name_classes: Vec::new(),
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
            history: history::History::new(cfg.history_entries, cfg.history_seed),
            feedback: Default::default(),
            node_text: 0,
            recent_bytes: 0,
            scratch: Scratch::default(),
            finishing: None,
            emitting_early: false,
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

    /// Sets the analysts' verdicts rows are scored with from now on.
    pub fn set_feedback(&mut self, feedback: crate::feedback::Feedback) {
        self.feedback = feedback;
    }

    /// Sets the byte bound (a host dividing its budget among the partitions it holds); the
    /// next [`Engine::evict`] keeps to it.
    pub fn set_max_bytes(&mut self, max_bytes: usize) {
        self.cfg.max_bytes = max_bytes;
    }

    /// Alerts in the window.
    pub fn len(&self) -> usize {
        self.window.len()
    }

    /// True when the engine holds no alert.
    pub fn is_empty(&self) -> bool {
        self.held() == 0
    }

    /// Alerts in the window rows are scored against (during [`Engine::finish`], the window as
    /// it stood).
    pub(crate) fn background_len(&self) -> usize {
        self.finishing.unwrap_or(self.window.len())
    }

    /// Alerts held: in the window, or out of it and waiting in an open group.
    pub fn held(&self) -> usize {
        self.slots.len() - self.free_slots.len()
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
        let tactic = self.tactics.intern(alert.tactic.as_deref());
        let kind = self.kind(name, protocol);
        let ext = alert.ext.as_deref();
        let class = self.class_of(name, alert, tactic);
        let host_only = src == dst;
        // Every network alert is held as actor → subject: a response, or a compromised host's
        // own traffic (its beacon, the output an attack got back), is about its source.
        let direction = infer_direction(
            ext.and_then(|e| e.direction),
            ext.and_then(|e| e.src_port),
            alert.dst_port,
        );
        let reversed = !host_only
            && match class.subject {
                Subject::Source => {
                    !(class.stage == Stage::Control && direction == Direction::Response)
                }
                Subject::Destination => direction == Direction::Response,
            };
        let (src, dst) = if reversed { (dst, src) } else { (src, dst) };
        let identity = self.identity_of(ext);
        let arrival = Arrival {
            time,
            name,
            kind,
            identity,
        };
        let rare_kind = self.kind_is_rare(kind, self.window.len(), 1);
        let evidence = class.stage.is_compromise() && rare_kind;
        let attack = !host_only && matches!(class.stage, Stage::Recon | Stage::Attempt);
        let pair_before = self.pairs.get(&(src, dst)).copied();
        let pair_group = pair_before.and_then(|p| self.live_root(p.group));
        let star = if host_only || evidence {
            None
        } else if attack && self.nodes[src as usize].attacked >= CAMPAIGN_VICTIMS {
            Some(src)
        } else {
            [src, dst].into_iter().find(|&n| self.is_hub(n))
        };
        if let Some(t) = self.trace.as_mut() {
            t.push(LinkTrace {
                arrival: self.arrivals,
                kind: if star.is_some() {
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
        let (group, link, attached, kept_pair) = if let Some(h) = star {
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
            match self.best_link(src, &arrival, false) {
                Some(link) => {
                    let entry = self.incoming_mut(src, link.entry);
                    entry.chance = (entry.chance * link.expected as f32).max(MIN_CHANCE);
                    if let Some(t) = self.trace.as_mut().and_then(|t| t.last_mut()) {
                        t.linked = true;
                    }
                    (link.group, link.info, true, false)
                }
                // Host-only alerts form episodes by host, kind and time: a flood of one rule is
                // one row, and never hides a rare alert after it.
                None if evidence => (self.evidence_episode(src, time), 0.0, false, true),
                None => (self.host_episode(src, kind, time), 0.0, false, true),
            }
        } else if evidence {
            // Compromise evidence about `dst` is an episode of its own, never part of the
            // pair's routine (an attacker's floods). A hop that carries it (remote execution on
            // `dst`) continues a story into `src` when that is improbable by chance; a host's
            // own traffic (a beacon, an attack response) is a finding about it, not a hop.
            // It joins its pair's group while that is a story's size (a probe then the
            // exploit on one pair), never a flood's or a campaign's.
            let mut g = match pair_group {
                Some(pg)
                    if self.groups[pg as usize].live <= MAX_LINKED_GROUP
                        && self.groups[pg as usize].star.is_none() =>
                {
                    let n = &mut self.nodes[dst as usize];
                    n.evidence_group = pg;
                    n.evidence_last = n.evidence_last.max(time);
                    pg
                }
                _ => self.evidence_episode(dst, time),
            };
            let mut link = 0.0;
            let rare = pair_before.map_or(0, |p| p.count) < RARE_PAIR
                && self.groups[g as usize].live <= MAX_LINKED_GROUP;
            if !reversed {
                if let Some(t) = self.trace.as_mut().and_then(|t| t.last_mut()) {
                    t.kind = if rare { 3 } else { 2 };
                }
                // On a rare pair, as any hop; on a routine one, as a kind new on it.
                let found = if rare {
                    self.best_link(src, &arrival, pair_before.is_none())
                } else {
                    self.fresh_kind_link(src, dst, &arrival, pair_before)
                };
                if let Some(l) = found {
                    if let Some(t) = self.trace.as_mut().and_then(|t| t.last_mut()) {
                        t.linked = true;
                    }
                    g = self.union(g, l.group);
                    link = l.info;
                    let chance = &mut self.incoming_mut(src, l.entry).chance;
                    *chance = chance.sqrt();
                    self.nodes[dst as usize].evidence_group = g;
                }
                if rare || found.is_some() {
                    self.remember_incoming(dst, &arrival, g);
                }
            }
            (g, link, false, true)
        } else if let Some(l) = self.fresh_kind_link(src, dst, &arrival, pair_before) {
            // A kind the routine pair has not carried, improbable after a story on its source:
            // it joins the story, not the pair's routine group (which keeps the pair).
            if let Some(t) = self.trace.as_mut().and_then(|t| t.last_mut()) {
                t.linked = true;
            }
            let chance = &mut self.incoming_mut(src, l.entry).chance;
            *chance = chance.sqrt();
            self.remember_incoming(dst, &arrival, l.group);
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
                if let Some(l) = self.best_link(src, &arrival, pair_before.is_none()) {
                    if let Some(t) = self.trace.as_mut().and_then(|t| t.last_mut()) {
                        t.linked = true;
                    }
                    g = self.union(g, l.group);
                    link = l.info;
                    // Half the evidence on the node (in nats) is spent: a second continuation out
                    // of it (a chance one before the real one, or a fan-out) needs more of its own.
                    let chance = &mut self.incoming_mut(src, l.entry).chance;
                    *chance = chance.sqrt();
                }
                self.remember_incoming(dst, &arrival, g);
            } else {
                self.remember_identity(dst, &arrival, g);
            }
            (g, link, false, false)
        };

        // Background counters.
        self.rules.change(name, true);
        self.nodes[src as usize].sent += 1;
        self.count_kind(src, kind, true);
        self.count_account(src, identity.account, true);
        let subject = &mut self.nodes[dst as usize];
        if counts_as_stage(class.stage, evidence) {
            subject.stages[class.stage as usize] += 1;
        }
        if evidence {
            subject.evidence += 1;
            subject.top_evidence = subject.top_evidence.max(class.stage);
            subject.last_evidence = subject.last_evidence.max(time);
        }
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
            if attack {
                p.attacks += 1;
                if p.attacks == 1 {
                    let actor = &mut self.nodes[src as usize];
                    actor.attacked += 1;
                    actor.campaign |= actor.attacked >= CAMPAIGN_VICTIMS;
                }
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
            tactic,
            name,
            kind,
            id: (*alert.alert_id).into(),
            hash,
            link,
            stage: class.stage,
            evidence,
            reversed,
            account: identity.account,
            attached,
            group,
            counted_pair: !attached,
            opened,
            next: NO_SLOT,
        };
        self.bytes += memory::text_bytes(&slot.id);
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

    /// Whether alerts of `kind` are rare in a window of `total` alerts, counting `extra` more of
    /// it: a compromise stage of a rare kind is compromise evidence. By the kind's own share
    /// (not its rarity class, as rules are judged for the rare-rule reason: a lone beacon is
    /// not made routine by other rare rules), and never routine before its third alert.
    pub(super) fn kind_is_rare(&self, kind: u32, total: usize, extra: u32) -> bool {
        if kind == NO_KIND {
            return false;
        }
        let count = self.kind_counts.count(kind) + extra;
        count < 3 || f64::from(count) / (total as f64 + f64::from(extra)) < RARE_KIND_SHARE
    }

    /// What an alert of rule `name` says, read once per rule (and again when its category or
    /// tactic differ from the last time).
    fn class_of(&mut self, name: u32, alert: &AlertView<'_>, tactic: u32) -> Class {
        let category = alert.ext.as_deref().and_then(|e| e.category.as_deref());
        let key = category.map_or(0, |c| self.id_hasher.hash_one(c));
        let i = name as usize;
        if let Some(Some((k, t, class))) = self.name_classes.get(i) {
            if *k == key && *t == tactic {
                return *class;
            }
        }
        let class = classify(&alert.alert_name, category, alert.tactic.as_deref());
        if self.name_classes.len() <= i {
            self.name_classes.resize(i + 1, None);
        }
        self.name_classes[i] = Some((key, tactic, class));
        class
    }

    /// A rule name left the table: what was read for its index no longer holds.
    pub(super) fn forget_name(&mut self, name: u32) {
        if let Some(c) = self.name_classes.get_mut(name as usize) {
            *c = None;
        }
    }

    /// The identity an alert ran as, by keyed hash (0 for each part it lacks).
    fn identity_of(&self, ext: Option<&AlertExt>) -> Identity {
        let Some(e) = ext else {
            return Identity::default();
        };
        use std::hash::{BuildHasher, Hasher};
        let [a, b, c, d] = self.identity_seeds;
        let state = ahash::RandomState::with_seeds(a, b, c, d);
        // Case-insensitive (accounts are), without a lowered copy.
        let hash = |parts: &[Option<&str>]| -> u64 {
            if parts[0].is_none() {
                return 0;
            }
            let mut h = state.build_hasher();
            for part in parts {
                for b in part.unwrap_or_default().bytes() {
                    h.write_u8(b.to_ascii_lowercase());
                }
                h.write_u8(0xff);
            }
            h.finish().max(1)
        };
        Identity {
            account: hash(&[e.account.as_deref(), e.account_domain.as_deref()]),
            logon: hash(&[e.logon_id.as_deref()]),
            process: hash(&[e.command_line_hash.as_deref()]),
        }
    }

    /// The current episode of compromise evidence about `node` (a new one after a gap).
    fn evidence_episode(&mut self, node: u32, time: i64) -> u32 {
        let n = &self.nodes[node as usize];
        let (current, last) = (n.evidence_group, n.evidence_last);
        let g = match self.live_root(current) {
            Some(g) if time - last <= EPISODE_GAP_MS => g,
            _ => self.new_group(None),
        };
        let n = &mut self.nodes[node as usize];
        n.evidence_group = g;
        n.evidence_last = n.evidence_last.max(time);
        g
    }

    /// The current host-only episode of `kind` on `node` (a new one after a gap).
    fn host_episode(&mut self, node: u32, kind: u32, time: i64) -> u32 {
        let (current, last) = self
            .node_kinds
            .get(&(node, kind))
            .map_or((NO_GROUP, i64::MIN), |k| (k.episode, k.last));
        let g = match self.live_root(current) {
            Some(g) if time.saturating_sub(last) <= EPISODE_GAP_MS => g,
            _ => self.new_group(None),
        };
        if kind != NO_KIND {
            let entry = self.node_kinds.entry((node, kind)).or_insert(NodeKind {
                sends: 0,
                episode: NO_GROUP,
                last: i64::MIN,
            });
            entry.episode = g;
            entry.last = entry.last.max(time);
        }
        g
    }

    pub(crate) fn slot(&self, s: u32) -> &Slot {
        self.slots[s as usize].as_ref().expect("live slot")
    }
}
