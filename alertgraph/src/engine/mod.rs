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
mod ingest;
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
