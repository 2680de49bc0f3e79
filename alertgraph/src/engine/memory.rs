//! What the engine holds in bytes, counted from the tables themselves (their allocated
//! capacity and the text they hold), so that the bound a deployment sets is a bound on memory,
//! not on an estimate per alert.

use super::state::{Group, Incoming, NodeKind, Pair, Slot};
use super::Engine;
use crate::classify::Class;
use std::mem::size_of;
use std::sync::Arc;

/// Bytes of a `HashMap`/`HashSet` (hashbrown) holding entries of `entry` bytes with `capacity`:
/// its buckets (a power of two at 8/7 of the capacity) with one control byte each.
pub(super) fn map_bytes(capacity: usize, entry: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let buckets = (capacity * 8 / 7).next_power_of_two().max(4);
    buckets * (entry + 1) + 16
}

/// Bytes of a node's remembered incoming alerts with `capacity` places.
pub(super) fn recent_bytes(capacity: usize) -> usize {
    capacity * size_of::<Incoming>()
}

/// Bytes of a shared string: its text and the allocation's two counters.
pub(super) fn text_bytes(text: &Arc<str>) -> usize {
    text.len() + 2 * size_of::<usize>()
}

/// Drops the free places at the end of `items` (their indexes listed in `free`) and orders
/// `free` so that the lowest free place is reused first ([`super::tables::put`] pops the
/// last).
fn truncate_free_tail<T>(items: &mut Vec<T>, free: &mut Vec<u32>) {
    free.sort_unstable();
    while free.last().is_some_and(|&i| i as usize + 1 == items.len()) {
        free.pop();
        items.pop();
    }
    free.reverse();
}

impl Engine {
    /// Bytes the engine holds: every table's allocation, the text of alert ids, addresses and
    /// names, and the history profile. [`crate::Config::max_bytes`] bounds this.
    pub fn held_bytes(&self) -> usize {
        self.measure(false)
    }

    /// [`Engine::held_bytes`] as the tables would be if each were no larger than what it holds
    /// (the target early eviction works to: the tables shrink afterwards).
    pub(super) fn live_bytes(&self) -> usize {
        self.measure(true)
    }

    fn measure(&self, live: bool) -> usize {
        self.memory_parts(live).iter().map(|(_, b)| b).sum()
    }

    /// [`Engine::held_bytes`] by table (diagnostics; `live`: as if no table were larger than
    /// what it holds).
    #[doc(hidden)]
    pub fn memory_parts(&self, live: bool) -> Vec<(&'static str, usize)> {
        let vec = |cap: usize, item: usize| cap * item;
        // Tables indexed by position keep freed places for reuse: what they hold is their
        // length less those.
        let held = |len: usize, cap: usize, free: usize| if live { len - free } else { cap };
        macro_rules! cap {
            ($t:expr) => {
                if live {
                    $t.len()
                } else {
                    $t.capacity()
                }
            };
        }
        let strings = [&self.names, &self.protocols, &self.tactics]
            .iter()
            .map(|s| {
                vec(cap!(s.values), size_of::<Arc<str>>())
                    + s.text_bytes
                    + map_bytes(s.values.len(), size_of::<(Arc<str>, u32)>())
                    + vec(cap!(s.values), 8)
            })
            .sum::<usize>();
        vec![
            (
                "alerts",
                vec(
                    held(
                        self.slots.len(),
                        self.slots.capacity(),
                        self.free_slots.len(),
                    ),
                    size_of::<Option<Slot>>(),
                ) + self.bytes
                    + vec(cap!(self.free_slots), 4),
            ),
            (
                "window",
                vec(cap!(self.window), 4) + map_bytes(cap!(self.seen), 8),
            ),
            (
                "nodes",
                vec(
                    held(
                        self.nodes.len(),
                        self.nodes.capacity(),
                        self.free_nodes.len(),
                    ),
                    size_of::<super::state::Node>(),
                ) + self.recent_bytes
                    + self.node_text
                    + map_bytes(cap!(self.node_index), size_of::<(Arc<str>, u32)>())
                    + vec(cap!(self.free_nodes), 4),
            ),
            (
                "pairs",
                map_bytes(cap!(self.pairs), size_of::<((u32, u32), Pair)>())
                    + map_bytes(cap!(self.pair_kinds), size_of::<((u32, u32, u32), u32)>()),
            ),
            (
                "kinds",
                map_bytes(cap!(self.node_kinds), size_of::<((u32, u32), NodeKind)>())
                    + self.kinds.bytes()
                    + self.rules.bytes()
                    + self.kind_counts.bytes()
                    + vec(
                        cap!(self.name_classes),
                        size_of::<Option<(u64, u32, Class)>>(),
                    )
                    + strings,
            ),
            (
                "accounts",
                map_bytes(cap!(self.accounts), size_of::<(u64, u32)>())
                    + map_bytes(cap!(self.node_accounts), size_of::<((u32, u64), u32)>()),
            ),
            (
                "groups",
                vec(
                    held(
                        self.groups.len(),
                        self.groups.capacity(),
                        self.free_groups.len(),
                    ),
                    size_of::<Group>(),
                ) + vec(cap!(self.free_groups), 4)
                    + vec(cap!(self.checks), size_of::<(i64, u32)>())
                    + map_bytes(cap!(self.stars), size_of::<(u32, u32)>()),
            ),
            ("history", self.history.held_bytes()),
        ]
    }

    /// Renumbers the nodes held into the lowest places (every table that names a node is
    /// rewritten), so the node table can shrink to what it holds.
    fn compact_nodes(&mut self) {
        use super::{FastMap, TextMap};
        if self.free_nodes.is_empty() {
            return;
        }
        let mut new_id = vec![u32::MAX; self.nodes.len()];
        let mut kept = Vec::with_capacity(self.nodes.len() - self.free_nodes.len());
        let free: crate::FastSet<u32> = self.free_nodes.iter().copied().collect();
        for (i, node) in std::mem::take(&mut self.nodes).into_iter().enumerate() {
            if !free.contains(&(i as u32)) {
                new_id[i] = kept.len() as u32;
                kept.push(node);
            }
        }
        self.nodes = kept;
        self.free_nodes.clear();
        let id = |n: u32| new_id[n as usize];
        for slot in self.slots.iter_mut().flatten() {
            slot.src = id(slot.src);
            slot.dst = id(slot.dst);
        }
        self.pairs = self
            .pairs
            .drain()
            .map(|((a, b), p)| ((id(a), id(b)), p))
            .collect();
        self.node_kinds = self
            .node_kinds
            .drain()
            .map(|((n, k), v)| ((id(n), k), v))
            .collect();
        self.pair_kinds = self
            .pair_kinds
            .drain()
            .map(|((a, b, k), v)| ((id(a), id(b), k), v))
            .collect();
        self.node_accounts = self
            .node_accounts
            .drain()
            .map(|((n, a), v)| ((id(n), a), v))
            .collect();
        self.stars = self
            .stars
            .drain()
            .map(|(h, g)| (id(h), g))
            .collect::<FastMap<_, _>>();
        for g in &mut self.groups {
            if let Some(h) = g.star {
                g.star = (new_id.get(h as usize).copied()).filter(|&n| n != u32::MAX);
            }
        }
        self.node_index = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.ip.clone(), i as u32))
            .collect::<TextMap<u32>>();
    }

    /// Gives tables that grew for a larger window back to the allocator (after the bound moved
    /// alerts out early), so that what is held and what is allocated agree again.
    pub(super) fn shrink(&mut self) {
        // Tables indexed by position: drop the free places at their end, and reuse the lowest
        // free places first from now on, so the end stays free for the next shrink.
        truncate_free_tail(&mut self.slots, &mut self.free_slots);
        self.compact_nodes();
        self.compact_groups_now();
        truncate_free_tail(&mut self.groups, &mut self.free_groups);
        self.slots.shrink_to_fit();
        self.nodes.shrink_to_fit();
        self.groups.shrink_to_fit();
        self.free_slots.shrink_to_fit();
        self.free_nodes.shrink_to_fit();
        self.free_groups.shrink_to_fit();
        self.window.shrink_to_fit();
        self.seen.shrink_to_fit();
        self.pairs.shrink_to_fit();
        self.node_kinds.shrink_to_fit();
        self.pair_kinds.shrink_to_fit();
        self.accounts.shrink_to_fit();
        self.node_accounts.shrink_to_fit();
        self.checks.shrink_to_fit();
        self.node_index.shrink_to_fit();
    }
}
