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

use crate::alert::{Alert, AlertView, Domain, Rejected, Severity};
mod score;

use crate::subgraph::Subgraph;
use crate::FastMap;
use score::{score_row, Scratch};
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};

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
}

impl Default for Config {
    fn default() -> Self {
        Self {
            window_ms: 24 * 3600 * 1000,
            hub_degree: 24,
            flow_gap_ms: 2 * 3600 * 1000,
            max_alerts: 4_000_000,
            max_bytes: 1 << 30,
        }
    }
}

/// A pair with at most this many alerts in the window is rare: routine pairs (polling, admin
/// sessions) neither continue nor are continued.
const RARE_PAIR: u32 = 2;

/// Incoming rare alerts remembered per node for continuations.
const RECENT_IN: usize = 8;

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

/// Never a slot.
const NO_SLOT: u32 = u32::MAX;

/// A node (an address) with alerts in the engine.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Node {
    pub(crate) ip: Box<str>,
    pub(crate) host: Option<Box<str>>,
    /// Endpoint of an IT alert.
    pub(crate) it: bool,
    /// Endpoint of an OT alert.
    pub(crate) ot: bool,
    /// Alerts held that name this node.
    refs: u32,
    /// Alerts in the window this node sent (host-only alerts included).
    pub(crate) sent: u32,
    /// Of those, alerts that opened a pair (the first alert from it to that peer in the window).
    opened: u32,
    /// And alerts to a peer it already had an alert to in the window.
    repeated: u32,
    /// Distinct peers in the window.
    degree: u32,
    /// Recent incoming alerts on rare pairs.
    recent_in: VecDeque<Incoming>,
}

/// A recent incoming alert on a rare pair, that a continuation from its node may follow.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Incoming {
    time: i64,
    /// Arrival number.
    seq: u64,
    group: u32,
    /// Chance that what already followed it on this node (host alerts) happened by chance: a
    /// continuation after them is that much less likely by chance.
    chance: f32,
    /// Share of the window of its rule's rarity class when it arrived: of two incoming alerts a
    /// continuation could follow, it follows the rarer.
    share: f32,
}

/// Lowest chance carried by an incoming alert.
const MIN_CHANCE: f32 = 1e-2;

/// Fewest alerts in the window before any continuation is judged improbable: rates need a
/// background to be measured against.
const MIN_BACKGROUND: usize = 200;

/// An alert held by the engine.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Slot {
    pub(crate) time: i64,
    pub(crate) src: u32,
    /// Equal to `src` for host-only alerts.
    pub(crate) dst: u32,
    pub(crate) severity: Severity,
    pub(crate) domain: Domain,
    pub(crate) protocol: u32,
    pub(crate) tactic: u32,
    pub(crate) name: u32,
    pub(crate) id: Box<str>,
    /// Keyed hash of `id` (the key is per process: recomputed on restore).
    #[serde(skip)]
    hash: u64,
    /// Information (nats) of the improbable continuation that attached it; 0 when none.
    pub(crate) link: f32,
    /// A host-only alert attached to the path it follows.
    pub(crate) attached: bool,
    group: u32,
    /// Counted in the pair table (false for attached host-only alerts).
    counted_pair: bool,
    /// Opened its pair (counted in its sender's `opened`).
    opened: bool,
    /// Next slot in its group's waiting list.
    next: u32,
}

/// A singly linked list of slots threaded through [`Slot::next`]: a group's waiting alerts,
/// appended and joined in O(1) without allocating.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct SlotList {
    head: u32,
    tail: u32,
    len: u32,
}

impl SlotList {
    const EMPTY: SlotList = SlotList {
        head: NO_SLOT,
        tail: NO_SLOT,
        len: 0,
    };

    fn push(&mut self, s: u32, slots: &mut [Option<Slot>]) {
        if let Some(slot) = slots[s as usize].as_mut() {
            slot.next = NO_SLOT;
        }
        self.append(
            SlotList {
                head: s,
                tail: s,
                len: 1,
            },
            slots,
        );
    }

    fn append(&mut self, other: SlotList, slots: &mut [Option<Slot>]) {
        if other.len == 0 {
            return;
        }
        if self.len == 0 {
            *self = other;
            return;
        }
        if let Some(tail) = slots[self.tail as usize].as_mut() {
            tail.next = other.head;
        }
        self.tail = other.tail;
        self.len += other.len;
    }

    fn collect(self, slots: &[Option<Slot>]) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.len as usize);
        let mut s = self.head;
        while out.len() < self.len as usize {
            out.push(s);
            s = slots[s as usize].as_ref().map_or(NO_SLOT, |x| x.next);
        }
        out
    }
}

/// A group of alerts (union-find node; the fields beyond `parent` are kept at the root).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Group {
    parent: u32,
    /// Alerts held (in the window or waiting to be emitted).
    live: u32,
    newest: i64,
    /// Alerts that left the window and wait in this group to be emitted.
    pending: SlotList,
    pending_oldest: i64,
    /// The hub whose star this is.
    star: Option<u32>,
    /// Cutoff at which a check is queued, i64::MAX when none.
    scheduled: i64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Pair {
    pub(crate) count: u32,
    group: u32,
}

/// Interned short strings (protocols, tactics, alert names); index 0 is "none".
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Strings {
    pub(crate) values: Vec<Box<str>>,
    #[serde(skip)]
    index: HashMap<Box<str>, u32>,
    limit: usize,
}

impl Strings {
    fn new(limit: usize) -> Self {
        Self {
            values: vec!["".into()],
            index: HashMap::new(),
            limit,
        }
    }

    fn intern(&mut self, s: Option<&str>) -> u32 {
        let Some(s) = s else { return 0 };
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        if self.values.len() >= self.limit {
            return 0; // an attacker cannot grow this table without bound
        }
        let i = self.values.len() as u32;
        self.values.push(s.into());
        self.index.insert(s.into(), i);
        i
    }

    fn reindex(&mut self) {
        self.index = self
            .values
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, v)| (v.clone(), i as u32))
            .collect();
    }

    pub(crate) fn get(&self, i: u32) -> Option<&str> {
        (i != 0).then(|| &*self.values[i as usize])
    }
}

/// Alerts per rule in the window, and the tail mass a rule's rarity is judged by: the
/// alerts of every rule at most about as rare as it (power-of-two classes of count). Forty
/// rules that each fire rarely are, together, not rare; one rule that fires rarely is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RuleCounts {
    counts: Vec<u32>,
    /// Distinct nodes that sent each rule in the window.
    senders: Vec<u32>,
    /// Alerts per class (class = bit length of the rule's count).
    mass: Vec<u64>,
}

impl RuleCounts {
    fn new() -> Self {
        Self {
            counts: Vec::new(),
            senders: Vec::new(),
            mass: vec![0; 33],
        }
    }

    fn class(count: u32) -> usize {
        (32 - count.leading_zeros()) as usize
    }

    fn change(&mut self, rule: u32, up: bool) {
        let r = rule as usize;
        if self.counts.len() <= r {
            self.counts.resize(r + 1, 0);
        }
        let before = self.counts[r];
        let after = if up { before + 1 } else { before - 1 };
        self.mass[Self::class(before)] -= u64::from(before);
        self.mass[Self::class(after)] += u64::from(after);
        self.counts[r] = after;
    }

    /// A node started (`up`) or stopped sending `rule` in the window.
    fn sender(&mut self, rule: u32, up: bool) {
        let r = rule as usize;
        if self.senders.len() <= r {
            self.senders.resize(r + 1, 0);
        }
        if up {
            self.senders[r] += 1;
        } else {
            self.senders[r] -= 1;
        }
    }

    /// Distinct senders of `rule` per alert of it in the window (1 when it has none): near 1
    /// for a rule any host may send, small for one a few hosts send over and over.
    pub(crate) fn spread(&self, rule: u32) -> f64 {
        let count = self.count(rule);
        if count == 0 {
            return 1.0;
        }
        f64::from(self.senders.get(rule as usize).copied().unwrap_or(0).max(1)) / f64::from(count)
    }

    /// Alerts of `rule` in the window.
    pub(crate) fn count(&self, rule: u32) -> u32 {
        self.counts.get(rule as usize).copied().unwrap_or(0)
    }

    /// Alerts in the window of rules at most as frequent as `count` (same class or rarer).
    pub(crate) fn tail(&self, count: u32) -> u64 {
        self.mass[..=Self::class(count)].iter().sum()
    }

    fn clear(&mut self) {
        *self = Self::new();
    }
}

/// An improbable continuation found for a new alert.
#[derive(Clone, Copy)]
struct Link {
    /// The group it continues.
    group: u32,
    /// Information (nats).
    info: f32,
    /// Which of the node's recent incoming alerts it follows.
    entry: usize,
    /// Expected number of such continuations by chance.
    expected: f64,
}

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
    node_index: HashMap<Box<str>, u32>,
    free_nodes: Vec<u32>,
    pub(crate) slots: Vec<Option<Slot>>,
    free_slots: Vec<u32>,
    /// Slots in the window, oldest first.
    window: VecDeque<u32>,
    /// Alerts per directed pair in the window.
    pub(crate) pairs: FastMap<(u32, u32), Pair>,
    /// Alerts per rule name in the window.
    pub(crate) rules: RuleCounts,
    /// Alerts per (sending node, rule name) in the window.
    node_rules: FastMap<(u32, u32), u32>,
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
    seen: FastMap<u64, u32>,
    #[serde(skip)]
    id_hasher: RandomState,
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
}

impl Engine {
    /// An empty engine.
    pub fn new(cfg: Config) -> Self {
        Self {
            cfg,
            nodes: Vec::new(),
            node_index: HashMap::new(),
            free_nodes: Vec::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            window: VecDeque::new(),
            pairs: FastMap::default(),
            rules: RuleCounts::new(),
            node_rules: FastMap::default(),
            groups: Vec::new(),
            free_groups: Vec::new(),
            groups_after_compaction: 0,
            stars: FastMap::default(),
            checks: BinaryHeap::new(),
            distinct_pairs: 0,
            seen: FastMap::default(),
            id_hasher: RandomState::new(),
            protocols: Strings::new(4096),
            tactics: Strings::new(256),
            names: Strings::new(1 << 16),
            max_time: i64::MIN,
            arrivals: 0,
            bytes: 0,
            early: EarlyEvictions::default(),
            scratch: Scratch::default(),
        }
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

    fn node(&mut self, ip: &str, host: Option<&str>, domain: Domain) -> u32 {
        let id = match self.node_index.get(ip) {
            Some(&id) => id,
            None => {
                let fresh = Node {
                    ip: ip.into(),
                    ..Node::default()
                };
                let id = match self.free_nodes.pop() {
                    Some(id) => {
                        self.nodes[id as usize] = fresh;
                        id
                    }
                    None => {
                        self.nodes.push(fresh);
                        (self.nodes.len() - 1) as u32
                    }
                };
                self.node_index.insert(ip.into(), id);
                id
            }
        };
        let n = &mut self.nodes[id as usize];
        n.refs += 1;
        match domain {
            Domain::IT => n.it = true,
            Domain::OT => n.ot = true,
        }
        if n.host.is_none() {
            n.host = host.map(Into::into);
        }
        id
    }

    fn release(&mut self, id: u32) {
        let n = &mut self.nodes[id as usize];
        n.refs -= 1;
        if n.refs == 0 {
            let ip = std::mem::take(&mut n.ip);
            self.node_index.remove(&ip);
            *n = Node::default();
            self.free_nodes.push(id);
        }
    }

    fn find(&mut self, mut g: u32) -> u32 {
        while self.groups[g as usize].parent != g {
            let parent = self.groups[g as usize].parent;
            self.groups[g as usize].parent = self.groups[parent as usize].parent;
            g = parent;
        }
        g
    }

    /// The live root of `g`, or None when its group was emitted whole.
    fn live_root(&mut self, g: u32) -> Option<u32> {
        if g == NO_GROUP {
            return None;
        }
        let r = self.find(g);
        (self.groups[r as usize].live > 0).then_some(r)
    }

    fn new_group(&mut self, star: Option<u32>) -> u32 {
        let fresh = Group {
            parent: 0,
            live: 0,
            newest: i64::MIN,
            pending: SlotList::EMPTY,
            pending_oldest: i64::MAX,
            star,
            scheduled: i64::MAX,
        };
        let id = match self.free_groups.pop() {
            Some(id) => id,
            None => {
                self.groups.push(fresh.clone());
                (self.groups.len() - 1) as u32
            }
        };
        self.groups[id as usize] = Group {
            parent: id,
            ..fresh
        };
        id
    }

    fn union(&mut self, a: u32, b: u32) -> u32 {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return ra;
        }
        let (big, small) = if self.groups[ra as usize].live >= self.groups[rb as usize].live {
            (ra, rb)
        } else {
            (rb, ra)
        };
        let s = std::mem::replace(
            &mut self.groups[small as usize],
            Group {
                parent: big,
                live: 0,
                newest: i64::MIN,
                pending: SlotList::EMPTY,
                pending_oldest: i64::MAX,
                star: None,
                scheduled: i64::MAX,
            },
        );
        let g = &mut self.groups[big as usize];
        g.live += s.live;
        g.newest = g.newest.max(s.newest);
        let mut pending = g.pending;
        pending.append(s.pending, &mut self.slots);
        let g = &mut self.groups[big as usize];
        g.pending = pending;
        g.pending_oldest = g.pending_oldest.min(s.pending_oldest);
        g.scheduled = g.scheduled.min(s.scheduled);
        big
    }

    fn is_hub(&self, n: u32) -> bool {
        let degree = self.nodes[n as usize].degree as usize;
        if degree <= self.cfg.hub_degree {
            return false;
        }
        let active = self.node_count().max(1) as f64;
        degree as f64 > 8.0 * (2.0 * self.distinct_pairs as f64 / active)
    }

    /// The best improbable continuation into `node` for an alert of rule `name` at `time`:
    /// (group, information in nats).
    fn best_link(&mut self, node: u32, time: i64, name: u32, opens: bool) -> Option<Link> {
        if self.window.len() < MIN_BACKGROUND {
            return None;
        }
        let total = self.window.len() as f64 + 1.0;
        let share = self.rule_share(name);
        // The share of the window's alerts that are this node sending this rule: its own count,
        // plus what it sends (plus one) times the rule's share times the rule's spread (distinct
        // senders per alert). A rule that every host sends (spread ≈ 1) is as likely from a node
        // that has not sent it yet; a rule only a few hosts send (a jump host's admin sessions)
        // is unlikely from any other node.
        let sent = f64::from(self.nodes[node as usize].sent);
        let own = f64::from(self.node_rules.get(&(node, name)).copied().unwrap_or(0));
        let mut rate = (own + (sent + 1.0) * share * self.rules.spread(name)) / total;
        if opens {
            // A first alert to this peer: as likely as the node opening a new pair at all (a
            // server that backs up to the same few peers seldom does).
            let n = &self.nodes[node as usize];
            rate *= (f64::from(n.opened) + 1.0) / (f64::from(n.opened + n.repeated) + 2.0);
        }
        let start = self.window_start().max(time - self.cfg.flow_gap_ms);
        let mut best: Option<(Link, f64)> = None;
        let mut candidates = 0.0;
        for i in 0..self.nodes[node as usize].recent_in.len() {
            let inc = self.nodes[node as usize].recent_in[i];
            if inc.time > time || inc.time < start {
                continue;
            }
            let Some(root) = self.live_root(inc.group) else {
                continue;
            };
            if self.groups[root as usize].live > MAX_LINKED_GROUP {
                continue;
            }
            // Alerts that arrived in between, at least a few (a minimum time resolution).
            let between = (self.arrivals.saturating_sub(inc.seq) as f64).max(MIN_BETWEEN);
            let expected = rate * between * f64::from(inc.chance);
            candidates += 1.0;
            if expected >= LINK_CHANCE {
                continue;
            }
            let joint = expected * f64::from(inc.share);
            if best.is_none_or(|(_, b)| joint < b) {
                best = Some((
                    Link {
                        group: root,
                        info: 0.0,
                        entry: i,
                        expected,
                    },
                    joint,
                ));
            }
        }
        // The continuation was looked for behind every recent incoming alert of the node: the
        // chance that one of them is followed this closely is that many times larger (a busy
        // node with many incoming alerts gets many chances).
        let (mut link, _) = best?;
        link.expected *= candidates;
        if link.expected >= LINK_CHANCE {
            return None;
        }
        link.info = (LINK_CHANCE / link.expected).ln().min(MAX_LINK_INFO) as f32;
        Some(link)
    }

    /// Share of the window of `name`'s rarity class (it and every rule about as rare), counting
    /// one more alert of it.
    fn rule_share(&self, name: u32) -> f64 {
        let total = self.window.len() as f64 + 1.0;
        let count = self.rules.count(name) + 1;
        (self.rules.tail(count) as f64 + f64::from(count)) / total
    }

    /// Adds an alert. Refuses a duplicate AlertId still held, and an alert older than the
    /// window.
    pub fn ingest(&mut self, alert: &Alert) -> Result<(), Rejected> {
        self.ingest_view(&alert.view())
    }

    /// [`Engine::ingest`] of a view (text borrowed from the input).
    pub fn ingest_view(&mut self, alert: &AlertView<'_>) -> Result<(), Rejected> {
        let hash = self.id_hasher.hash_one(&*alert.alert_id);
        if self.seen.contains_key(&hash) {
            return Err(Rejected {
                alert_id: Some(alert.alert_id.to_string()),
                reason: "duplicate AlertId (already in the window)".into(),
            });
        }
        if self.max_time != i64::MIN && alert.time_generated < self.window_start() {
            return Err(Rejected {
                alert_id: Some(alert.alert_id.to_string()),
                reason: format!(
                    "TimeGenerated is older than the window ({} min before the newest alert)",
                    self.cfg.window_ms / 60_000
                ),
            });
        }
        let time = alert.time_generated;
        self.arrivals += 1;
        self.max_time = self.max_time.max(time);
        let src = self.node(&alert.src_ip, alert.src_host.as_deref(), alert.domain);
        let dst = match &alert.dst_ip {
            Some(ip) if *ip != alert.src_ip => {
                self.node(ip, alert.dst_host.as_deref(), alert.domain)
            }
            _ => {
                self.nodes[src as usize].refs += 1;
                src
            }
        };
        let name = self.names.intern(Some(&alert.alert_name));
        let host_only = src == dst;
        let pair_before = self.pairs.get(&(src, dst)).copied();
        let pair_group = pair_before.and_then(|p| self.live_root(p.group));
        let hub = [src, dst]
            .into_iter()
            .find(|&n| !host_only && self.is_hub(n));
        let (group, link, attached) = if let Some(h) = hub {
            let star = self.stars.get(&h).copied();
            let g = match star.and_then(|g| self.live_root(g)) {
                Some(g) => g,
                None => {
                    let g = self.new_group(Some(h));
                    self.stars.insert(h, g);
                    g
                }
            };
            (g, 0.0, false)
        } else if host_only {
            match self.best_link(src, time, name, false) {
                Some(link) => {
                    let entry = &mut self.nodes[src as usize].recent_in[link.entry];
                    entry.chance = (entry.chance * link.expected as f32).max(MIN_CHANCE);
                    (link.group, link.info, true)
                }
                None => (
                    pair_group.unwrap_or_else(|| self.new_group(None)),
                    0.0,
                    false,
                ),
            }
        } else {
            let mut g = pair_group.unwrap_or_else(|| self.new_group(None));
            let rare = pair_before.map_or(0, |p| p.count) < RARE_PAIR
                && self.groups[g as usize].live <= MAX_LINKED_GROUP;
            let mut link = 0.0;
            if rare {
                if let Some(l) = self.best_link(src, time, name, pair_before.is_none()) {
                    g = self.union(g, l.group);
                    link = l.info;
                    // Half the evidence on the node (in nats) is spent: a second continuation out
                    // of it (a chance one before the real one, or a fan-out) needs more of its own.
                    let chance = &mut self.nodes[src as usize].recent_in[l.entry].chance;
                    *chance = chance.sqrt();
                }
                let share = self.rule_share(name) as f32;
                let recent = &mut self.nodes[dst as usize].recent_in;
                if recent.len() == RECENT_IN {
                    recent.pop_front();
                }
                recent.push_back(Incoming {
                    time,
                    seq: self.arrivals,
                    group: g,
                    chance: 1.0,
                    share,
                });
            }
            (g, link, false)
        };

        // Background counters.
        self.rules.change(name, true);
        self.nodes[src as usize].sent += 1;
        let sends = self.node_rules.entry((src, name)).or_insert(0);
        *sends += 1;
        if *sends == 1 {
            self.rules.sender(name, true);
        }
        let mut opened = false;
        if !attached {
            let p = self.pairs.entry((src, dst)).or_insert(Pair {
                count: 0,
                group: NO_GROUP,
            });
            p.count += 1;
            p.group = group;
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
        self.seen.insert(hash, 1);
        let g = &mut self.groups[group as usize];
        g.live += 1;
        g.newest = g.newest.max(time);

        let slot = Slot {
            time,
            src,
            dst,
            severity: alert.severity,
            domain: alert.domain,
            protocol: self.protocols.intern(alert.protocol.as_deref()),
            tactic: self.tactics.intern(alert.tactic.as_deref()),
            name,
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
        let s = match self.free_slots.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(slot);
                s
            }
            None => {
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as u32
            }
        };
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

    /// Takes `s` out of the window's background; it waits in its group.
    fn leave_window(&mut self, s: u32) {
        self.uncount(s);
        self.wait(s);
    }

    /// Takes `s` out of the background counters.
    fn uncount(&mut self, s: u32) {
        let slot = self.slot(s);
        let (src, dst, name, counted) = (slot.src, slot.dst, slot.name, slot.counted_pair);
        if slot.opened {
            self.nodes[src as usize].opened -= 1;
        } else if counted && src != dst {
            self.nodes[src as usize].repeated -= 1;
        }
        self.rules.change(name, false);
        self.nodes[src as usize].sent -= 1;
        if let Some(c) = self.node_rules.get_mut(&(src, name)) {
            *c -= 1;
            if *c == 0 {
                self.node_rules.remove(&(src, name));
                self.rules.sender(name, false);
            }
        }
        if counted {
            if let Some(p) = self.pairs.get_mut(&(src, dst)) {
                p.count -= 1;
                if p.count == 0 {
                    self.pairs.remove(&(src, dst));
                    if src != dst {
                        self.nodes[src as usize].degree -= 1;
                        self.nodes[dst as usize].degree -= 1;
                        self.distinct_pairs -= 1;
                    }
                }
            }
        }
    }

    /// Puts `s` (out of the window) in its group's waiting part and queues the group's check.
    fn wait(&mut self, s: u32) {
        let slot = self.slot(s);
        let (time, group) = (slot.time, slot.group);
        let root = self.find(group);
        let hold = self.hold_ms();
        let g = &mut self.groups[root as usize];
        let mut pending = g.pending;
        pending.push(s, &mut self.slots);
        let g = &mut self.groups[root as usize];
        g.pending = pending;
        g.pending_oldest = g.pending_oldest.min(time);
        let due = g.newest.min(g.pending_oldest.saturating_add(hold));
        if due < g.scheduled {
            g.scheduled = due;
            self.checks.push(Reverse((due, root)));
        }
    }

    /// Emits `root`'s waiting alerts as a row when due: all of them when the group closed
    /// (its newest alert left the window), the waiting part when it has straddled the window
    /// edge for half a window, or at once when `forced`.
    fn check(&mut self, root: u32, cutoff: i64, forced: bool, out: &mut Vec<Subgraph>) {
        self.check_counted(root, cutoff, forced, false, out);
    }

    /// [`Engine::check`]; `counted` when the waiting alerts are still in the background.
    fn check_counted(
        &mut self,
        root: u32,
        cutoff: i64,
        forced: bool,
        counted: bool,
        out: &mut Vec<Subgraph>,
    ) {
        let hold = self.hold_ms();
        let g = &mut self.groups[root as usize];
        g.scheduled = i64::MAX;
        if g.live == 0 || g.pending.len == 0 {
            return;
        }
        let closed = g.newest < cutoff;
        if closed || forced || g.pending_oldest < cutoff.saturating_sub(hold) {
            let list = std::mem::replace(&mut g.pending, SlotList::EMPTY);
            g.pending_oldest = i64::MAX;
            g.live -= list.len;
            let closes = g.live == 0;
            let star = g.star;
            let part = list.collect(&self.slots);
            if closes {
                if let Some(h) = star {
                    if self.stars.get(&h) == Some(&root) {
                        self.stars.remove(&h);
                    }
                }
            }
            self.emit(part, counted, out);
        } else {
            let due = g.newest.min(g.pending_oldest.saturating_add(hold));
            g.scheduled = due;
            self.checks.push(Reverse((due, root)));
        }
    }

    fn emit(&mut self, mut part: Vec<u32>, counted: bool, out: &mut Vec<Subgraph>) {
        part.sort_unstable_by(|&a, &b| {
            let (x, y) = (self.slot(a), self.slot(b));
            x.time.cmp(&y.time).then_with(|| x.id.cmp(&y.id))
        });
        let mut scratch = std::mem::take(&mut self.scratch);
        out.push(score_row(self, &part, counted, &mut scratch));
        self.scratch = scratch;
        for s in part {
            let slot = self.slots[s as usize].take().expect("live slot");
            self.seen.remove(&slot.hash);
            self.bytes -= ALERT_OVERHEAD_BYTES + slot.id.len();
            self.release(slot.src);
            self.release(slot.dst);
            self.free_slots.push(s);
        }
    }

    /// Emits the rows that are final now: groups that closed, parts of groups that straddle
    /// the window edge, and, when the count or byte bound is exceeded, the oldest alerts early
    /// (counted in [`Engine::early_evictions`]). Cheap when nothing is due.
    pub fn evict(&mut self) -> Vec<Subgraph> {
        let mut out = Vec::new();
        let cutoff = self.window_start();
        while let Some(&s) = self.window.front() {
            if self.slot(s).time >= cutoff {
                break;
            }
            self.window.pop_front();
            self.leave_window(s);
        }
        while let Some(&Reverse((due, g))) = self.checks.peek() {
            if due >= cutoff {
                break;
            }
            self.checks.pop();
            let root = self.find(g);
            self.check(root, cutoff, false, &mut out);
        }
        if self.held() > self.cfg.max_alerts || self.bytes > self.cfg.max_bytes {
            self.evict_early(cutoff, &mut out);
        }
        self.compact_groups();
        out
    }

    /// The bound is exceeded: emit waiting parts oldest first, then move the oldest tenth of
    /// the window out and emit it, until the engine is at 90 % of its bound.
    fn evict_early(&mut self, cutoff: i64, out: &mut Vec<Subgraph>) {
        let target_alerts = self.cfg.max_alerts / 10 * 9;
        let target_bytes = self.cfg.max_bytes / 10 * 9;
        let over = |e: &Self| e.held() > target_alerts || e.bytes > target_bytes;
        let before = self.held();
        while over(self) {
            if let Some(Reverse((_, g))) = self.checks.pop() {
                let root = self.find(g);
                self.check(root, cutoff, true, out);
                continue;
            }
            let chunk = (self.window.len() / 10).max(1);
            let mut roots = Vec::new();
            for _ in 0..chunk {
                let Some(s) = self.window.pop_front() else {
                    break;
                };
                self.leave_window(s);
                roots.push(self.slot(s).group);
            }
            if roots.is_empty() {
                break;
            }
            for g in roots {
                let root = self.find(g);
                self.check(root, cutoff, true, out);
            }
        }
        self.early.times += 1;
        self.early.alerts += (before - self.held()) as u64;
    }

    /// Emits every group still held, as at the end of a stream, scored against the window as
    /// it stands; the engine is empty afterwards.
    pub fn finish(&mut self) -> Vec<Subgraph> {
        let mut out = Vec::new();
        let window = std::mem::take(&mut self.window);
        for &s in &window {
            self.wait(s);
        }
        while let Some(Reverse((_, g))) = self.checks.pop() {
            let root = self.find(g);
            self.check_counted(root, i64::MAX, true, true, &mut out);
        }
        self.pairs.clear();
        self.node_rules.clear();
        self.rules.clear();
        self.distinct_pairs = 0;
        self.stars.clear();
        self.compact_groups();
        out
    }

    /// Frees merged-away and emitted group ids once they outnumber the groups in use, so
    /// group memory stays proportional to the alerts held (amortised O(1) per alert).
    fn compact_groups(&mut self) {
        let in_use = self.groups.len() - self.free_groups.len();
        if in_use < 2 * self.groups_after_compaction + 4096 {
            return;
        }
        let n = self.groups.len();
        for i in 0..self.slots.len() {
            if let Some(g) = self.slots[i].as_ref().map(|s| s.group) {
                let root = self.find(g);
                self.slots[i].as_mut().expect("live slot").group = root;
            }
        }
        let pairs: Vec<((u32, u32), u32)> = self.pairs.iter().map(|(k, p)| (*k, p.group)).collect();
        for (k, g) in pairs {
            let root = self.find(g);
            self.pairs.get_mut(&k).expect("pair").group = root;
        }
        for n in 0..self.nodes.len() {
            for i in 0..self.nodes[n].recent_in.len() {
                let g = self.nodes[n].recent_in[i].group;
                let root = self.find(g);
                self.nodes[n].recent_in[i].group = root;
            }
        }
        let stars: Vec<(u32, u32)> = self.stars.iter().map(|(h, g)| (*h, *g)).collect();
        for (h, g) in stars {
            let root = self.find(g);
            self.stars.insert(h, root);
        }
        let checks = std::mem::take(&mut self.checks).into_vec();
        for Reverse((due, g)) in checks {
            let root = self.find(g);
            self.checks.push(Reverse((due, root)));
        }
        // A group id stays when it is a live root; recent_in may name an emitted root, which
        // `live_root` already reads as "none" and which the time check skips.
        let mut keep = vec![false; n];
        for s in self.slots.iter().flatten() {
            keep[s.group as usize] = true;
        }
        for node in &mut self.nodes {
            node.recent_in.retain(|i| keep[i.group as usize]);
        }
        self.pairs.retain(|_, p| keep[p.group as usize]);
        self.stars.retain(|_, g| keep[*g as usize]);
        let mut checks = std::mem::take(&mut self.checks).into_vec();
        checks.retain(|Reverse((_, g))| keep[*g as usize]);
        checks.sort_unstable();
        checks.dedup();
        self.checks = checks.into();
        self.free_groups = (0..n as u32).rev().filter(|&g| !keep[g as usize]).collect();
        self.groups_after_compaction = n - self.free_groups.len();
    }

    /// Serialises the engine (settings, alerts held, groups, counters) for a state store: a
    /// restored engine continues exactly where this one stands.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = SNAPSHOT_MAGIC.to_vec();
        out.extend(bincode::serialize(self).unwrap_or_default());
        out
    }

    /// Rebuilds an engine from [`Engine::snapshot`] bytes.
    pub fn restore(bytes: &[u8]) -> Result<Self, String> {
        let body = bytes
            .strip_prefix(SNAPSHOT_MAGIC)
            .ok_or("engine snapshot: not a version 3 snapshot")?;
        let mut e: Engine = bincode::deserialize(body)
            .map_err(|e| format!("engine snapshot is unreadable: {e}"))?;
        e.node_index = e
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.refs > 0)
            .map(|(i, n)| (n.ip.clone(), i as u32))
            .collect();
        e.id_hasher = RandomState::new();
        e.seen = FastMap::default();
        for s in e.slots.iter_mut().flatten() {
            s.hash = e.id_hasher.hash_one(&*s.id);
            e.seen.insert(s.hash, 1);
        }
        e.protocols.reindex();
        e.tactics.reindex();
        e.names.reindex();
        Ok(e)
    }
}

/// Marks (and versions) a snapshot.
const SNAPSHOT_MAGIC: &[u8] = b"alertgraph-v3\n";

/// Sorts by score (ties: fewer alerts to read first, then id) and numbers the ranks from 1.
pub fn rank(subgraphs: &mut [Subgraph]) {
    // Sort small keys, then move each row once (rows are large to swap).
    let mut order: Vec<usize> = (0..subgraphs.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&subgraphs[a], &subgraphs[b]);
        b.score
            .total_cmp(&a.score)
            .then(a.alert_count.cmp(&b.alert_count))
            .then(a.subgraph_id.cmp(&b.subgraph_id))
    });
    // Apply the permutation in place, cycle by cycle: position i takes row order[i].
    for start in 0..order.len() {
        let mut i = start;
        while order[i] != start {
            let next = order[i];
            subgraphs.swap(i, next);
            order[i] = i;
            i = next;
        }
        order[i] = i;
    }
    for (i, s) in subgraphs.iter_mut().enumerate() {
        s.rank = i as u32 + 1;
    }
}
