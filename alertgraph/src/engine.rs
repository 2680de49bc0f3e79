//! The incremental, time-windowed communication graph: hosts/IPs are nodes, alerts are
//! directed, timed edges. Ingest is O(1) per alert; subgraphs are formed on demand from the
//! window (connected components, with very high-degree "hub" nodes such as scanners and domain
//! controllers kept in their own star subgraph so they do not glue unrelated activity together).

use crate::alert::{Alert, Domain, Rejected, Severity};
use crate::score::{score_group, GroupView};
use crate::subgraph::Subgraph;
use crate::FastMap;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};

/// Engine settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// How long an alert stays in the window (ms).
    pub window_ms: i64,
    /// A node talking to more distinct peers than this is a hub: its edges form a star
    /// subgraph of their own instead of joining components.
    pub hub_degree: usize,
    /// An alert B → C continues an alert A → B that came at most this long before it (ms).
    pub flow_gap_ms: i64,
}

/// A pair with at most this many alerts in the window is rare: routine continuations (both
/// pairs busy) do not glue subgraphs together.
const RARE_PAIR: u32 = 2;

/// Incoming alerts remembered per node for the flow rule.
const RECENT_IN: usize = 8;

impl Default for Config {
    fn default() -> Self {
        Self {
            window_ms: 24 * 3600 * 1000,
            hub_degree: 24,
            flow_gap_ms: 2 * 3600 * 1000,
        }
    }
}

/// A node (an address) in the window.
#[derive(Debug, Clone, Default)]
pub(crate) struct Node {
    pub(crate) ip: Box<str>,
    pub(crate) host: Option<Box<str>>,
    /// Endpoint of an IT alert.
    pub(crate) it: bool,
    /// Endpoint of an OT alert.
    pub(crate) ot: bool,
    refs: u32,
}

/// An alert as an edge.
#[derive(Debug, Clone)]
pub(crate) struct Edge {
    pub(crate) time: i64,
    pub(crate) src: u32,
    /// Equal to `src` for host-only alerts.
    pub(crate) dst: u32,
    pub(crate) severity: Severity,
    pub(crate) domain: Domain,
    pub(crate) protocol: u16,
    pub(crate) tactic: u16,
    pub(crate) name: u32,
    pub(crate) port: Option<u16>,
    pub(crate) id: Box<str>,
    id_hash: u64,
}

/// Interned short strings (protocols, tactics, alert names); index 0 is "none".
#[derive(Debug, Clone)]
pub(crate) struct Strings {
    pub(crate) values: Vec<Box<str>>,
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

    pub(crate) fn get(&self, i: u32) -> Option<&str> {
        (i != 0).then(|| &*self.values[i as usize])
    }
}

/// The engine: the window's edges plus the counters scoring needs.
#[derive(Debug, Clone)]
pub struct Engine {
    cfg: Config,
    pub(crate) nodes: Vec<Node>,
    node_index: HashMap<Box<str>, u32>,
    free_nodes: Vec<u32>,
    pub(crate) edges: VecDeque<Edge>,
    /// Alerts per directed pair in the window.
    pub(crate) pairs: FastMap<(u32, u32), u32>,
    /// AlertIds in the window, by keyed hash (an attacker cannot craft collisions without
    /// the per-process key; a 64-bit clash between honest ids is a ~1e-8 chance per million).
    seen: FastMap<u64, u32>,
    id_hasher: RandomState,
    pub(crate) protocols: Strings,
    pub(crate) tactics: Strings,
    pub(crate) names: Strings,
    max_time: i64,
}

impl Engine {
    /// An empty engine.
    pub fn new(cfg: Config) -> Self {
        Self {
            cfg,
            nodes: Vec::new(),
            node_index: HashMap::new(),
            free_nodes: Vec::new(),
            edges: VecDeque::new(),
            pairs: FastMap::default(),
            seen: FastMap::default(),
            id_hasher: RandomState::new(),
            protocols: Strings::new(4096),
            tactics: Strings::new(256),
            names: Strings::new(1 << 16),
            max_time: i64::MIN,
        }
    }

    /// The settings.
    pub fn config(&self) -> Config {
        self.cfg
    }

    /// Alerts in the window.
    pub fn len(&self) -> usize {
        self.edges.len()
    }

    /// True when the window is empty.
    pub fn is_empty(&self) -> bool {
        self.edges.is_empty()
    }

    /// Nodes in the window.
    pub fn node_count(&self) -> usize {
        self.nodes.len() - self.free_nodes.len()
    }

    /// The newest alert time seen (unix ms), if any.
    pub fn newest(&self) -> Option<i64> {
        (self.max_time != i64::MIN).then_some(self.max_time)
    }

    /// Start of the window: alerts before it are evicted, and refused on arrival.
    pub fn window_start(&self) -> i64 {
        self.max_time.saturating_sub(self.cfg.window_ms)
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
            n.host = None;
            self.free_nodes.push(id);
        }
    }

    /// Adds an alert. Refuses a duplicate AlertId still in the window, and an alert older than
    /// the window.
    pub fn ingest(&mut self, alert: &Alert) -> Result<(), Rejected> {
        let hash = self.id_hasher.hash_one(alert.alert_id.as_str());
        if self.seen.contains_key(&hash) {
            return Err(Rejected {
                alert_id: Some(alert.alert_id.clone()),
                reason: "duplicate AlertId (already in the window)".into(),
            });
        }
        if self.max_time != i64::MIN && alert.time_generated < self.window_start() {
            return Err(Rejected {
                alert_id: Some(alert.alert_id.clone()),
                reason: format!(
                    "TimeGenerated is older than the window ({} min before the newest alert)",
                    self.cfg.window_ms / 60_000
                ),
            });
        }
        self.max_time = self.max_time.max(alert.time_generated);
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
        *self.pairs.entry((src, dst)).or_insert(0) += 1;
        *self.seen.entry(hash).or_insert(0) += 1;
        let edge = Edge {
            time: alert.time_generated,
            src,
            dst,
            severity: alert.severity,
            domain: alert.domain,
            protocol: self.protocols.intern(alert.protocol.as_deref()) as u16,
            tactic: self.tactics.intern(alert.tactic.as_deref()) as u16,
            name: self.names.intern(Some(&alert.alert_name)),
            port: alert.dst_port,
            id: alert.alert_id.as_str().into(),
            id_hash: hash,
        };
        self.edges.push_back(edge);
        Ok(())
    }

    /// True when the oldest alert has left the window by more than an eighth of it, so an
    /// [`Engine::evict`] now frees a worthwhile chunk.
    pub fn should_evict(&self) -> bool {
        self.edges
            .front()
            .is_some_and(|e| e.time < self.window_start() - self.cfg.window_ms / 8)
    }

    /// Removes alerts older than the window. Returns the subgraphs that closed: every alert of
    /// them left the window, so they will not change again.
    pub fn evict(&mut self) -> Vec<Subgraph> {
        let cutoff = self.window_start();
        if self.edges.front().is_none_or(|e| e.time >= cutoff) {
            return Vec::new();
        }
        let closed: Vec<Subgraph> = self
            .subgraphs()
            .into_iter()
            .filter(|s| s.last_seen < cutoff)
            .collect();
        let mut kept = VecDeque::with_capacity(self.edges.len());
        let edges = std::mem::take(&mut self.edges);
        for e in edges {
            if e.time >= cutoff {
                kept.push_back(e);
                continue;
            }
            if let Some(c) = self.pairs.get_mut(&(e.src, e.dst)) {
                *c -= 1;
                if *c == 0 {
                    self.pairs.remove(&(e.src, e.dst));
                }
            }
            if let Some(c) = self.seen.get_mut(&e.id_hash) {
                *c -= 1;
                if *c == 0 {
                    self.seen.remove(&e.id_hash);
                }
            }
            self.release(e.src);
            self.release(e.dst);
        }
        self.edges = kept;
        closed
    }

    /// The subgraphs of the current window, scored and ranked (rank 1 = look first).
    ///
    /// Alerts join one subgraph when they are on the same directed pair, or when one continues
    /// the other in time (A → B, then B → C within `flow_gap_ms`). Alerts touching a hub (a node
    /// with more distinct peers than `hub_degree`: scanners, domain controllers) form that hub's
    /// star instead, so background noise does not glue unrelated activity together.
    pub fn subgraphs(&self) -> Vec<Subgraph> {
        let n = self.nodes.len();
        // Hubs in two passes: the obvious ones (scanners, domain controllers), then nodes that
        // still have too many peers once those are left out, so a server a scanner touched
        // does not become a hub merely for being scanned.
        let mut degree = vec![0u32; n];
        for &(s, d) in self.pairs.keys() {
            if s != d {
                degree[s as usize] += 1;
                degree[d as usize] += 1;
            }
        }
        let first: Vec<bool> = degree
            .iter()
            .map(|&d| d as usize > self.cfg.hub_degree * 4)
            .collect();
        let mut rest = vec![0u32; n];
        for &(s, d) in self.pairs.keys() {
            if s != d && !first[s as usize] && !first[d as usize] {
                rest[s as usize] += 1;
                rest[d as usize] += 1;
            }
        }
        let is_hub: Vec<bool> = (0..n)
            .map(|i| first[i] || rest[i] as usize > self.cfg.hub_degree)
            .collect();
        let rare = |e: &Edge| {
            self.pairs
                .get(&(e.src, e.dst))
                .is_some_and(|&c| c <= RARE_PAIR)
        };
        // Which star an alert belongs to, if any: every alert of a strong hub, and the routine
        // (non-rare) alerts of the others. Rare alerts of a weak hub still link up.
        let star = |e: &Edge| -> Option<u32> {
            let strong = [e.src, e.dst].into_iter().find(|&x| first[x as usize]);
            strong.or_else(|| {
                if rare(e) {
                    None
                } else {
                    [e.src, e.dst].into_iter().find(|&x| is_hub[x as usize])
                }
            })
        };
        let mut order: Vec<u32> = (0..self.edges.len() as u32).collect();
        order.sort_by_key(|&i| self.edges[i as usize].time);
        let mut uf = UnionFind::new(self.edges.len());
        let mut first_on_pair: FastMap<(u32, u32), u32> = FastMap::default();
        let mut recent_in: FastMap<u32, VecDeque<(i64, u32)>> = FastMap::default();
        for &i in &order {
            let e = &self.edges[i as usize];
            if star(e).is_some() {
                continue;
            }
            let first = *first_on_pair.entry((e.src, e.dst)).or_insert(i);
            uf.union(i, first);
            if !rare(e) {
                continue;
            }
            if let Some(incoming) = recent_in.get(&e.src) {
                for &(t, j) in incoming {
                    if e.time - t <= self.cfg.flow_gap_ms {
                        uf.union(i, j);
                    }
                }
            }
            let slot = recent_in.entry(e.dst).or_default();
            if slot.len() == RECENT_IN {
                slot.pop_front();
            }
            slot.push_back((e.time, i));
        }
        let mut groups: FastMap<u64, Vec<u32>> = FastMap::default();
        for (i, e) in self.edges.iter().enumerate() {
            let key = match star(e) {
                Some(h) => (1u64 << 32) | u64::from(h),
                None => u64::from(uf.find(i as u32)),
            };
            groups.entry(key).or_default().push(i as u32);
        }
        let mut out: Vec<Subgraph> = groups
            .into_values()
            .map(|edges| {
                score_group(&GroupView {
                    engine: self,
                    edges: &edges,
                    is_hub: &is_hub,
                })
            })
            .collect();
        rank(&mut out);
        out
    }

    /// Serialises the window (settings and alerts) for a state store.
    pub fn snapshot(&self) -> Vec<u8> {
        let alerts: Vec<Alert> = self.edges.iter().map(|e| self.alert_of(e)).collect();
        serde_json::to_vec(&Snapshot {
            version: 1,
            config: self.cfg,
            alerts,
        })
        .unwrap_or_default()
    }

    /// Rebuilds an engine from [`Engine::snapshot`] bytes.
    pub fn restore(bytes: &[u8]) -> Result<Self, String> {
        let snap: Snapshot = serde_json::from_slice(bytes)
            .map_err(|e| format!("engine snapshot is unreadable: {e}"))?;
        if snap.version != 1 {
            return Err(format!(
                "engine snapshot version {} is not supported",
                snap.version
            ));
        }
        let mut engine = Engine::new(snap.config);
        for a in &snap.alerts {
            engine
                .ingest(a)
                .map_err(|e| format!("engine snapshot: {e}"))?;
        }
        Ok(engine)
    }

    fn alert_of(&self, e: &Edge) -> Alert {
        let src = &self.nodes[e.src as usize];
        let dst = &self.nodes[e.dst as usize];
        Alert {
            time_generated: e.time,
            alert_id: e.id.to_string(),
            alert_name: self.names.get(e.name).unwrap_or_default().to_string(),
            severity: e.severity,
            domain: e.domain,
            src_ip: src.ip.to_string(),
            dst_ip: (e.dst != e.src).then(|| dst.ip.to_string()),
            src_host: src.host.as_deref().map(str::to_string),
            dst_host: (e.dst != e.src)
                .then(|| dst.host.as_deref().map(str::to_string))
                .flatten(),
            dst_port: e.port,
            protocol: self
                .protocols
                .get(u32::from(e.protocol))
                .map(str::to_string),
            tactic: self.tactics.get(u32::from(e.tactic)).map(str::to_string),
        }
    }
}

/// Sorts by score (ties: more alerts first, then id) and numbers the ranks from 1.
pub fn rank(subgraphs: &mut [Subgraph]) {
    subgraphs.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.alert_count.cmp(&a.alert_count))
            .then(a.subgraph_id.cmp(&b.subgraph_id))
    });
    for (i, s) in subgraphs.iter_mut().enumerate() {
        s.rank = i as u32 + 1;
    }
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    config: Config,
    alerts: Vec<Alert>,
}

struct UnionFind(Vec<u32>);

impl UnionFind {
    fn new(n: usize) -> Self {
        Self((0..n as u32).collect())
    }

    fn find(&mut self, mut x: u32) -> u32 {
        while self.0[x as usize] != x {
            let parent = self.0[x as usize];
            self.0[x as usize] = self.0[parent as usize];
            x = parent;
        }
        x
    }

    fn union(&mut self, a: u32, b: u32) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.0[hi as usize] = lo;
        }
    }
}
