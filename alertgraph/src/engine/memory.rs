//! What the engine holds in bytes, counted from the tables themselves (their allocated
//! capacity and the text they hold), so that the bound a deployment sets is a bound on memory,
//! not on an estimate per alert.

use super::state::{Group, Incoming, NodeKind, Pair, Slot};
use super::{Engine, RECENT_IN};
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

/// Bytes of a shared string: its text and the allocation's two counters.
pub(super) fn text_bytes(text: &Arc<str>) -> usize {
    text.len() + 2 * size_of::<usize>()
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
        let vec = |cap: usize, item: usize| cap * item;
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
        vec(cap!(self.slots), size_of::<Option<Slot>>())
            + self.bytes
            + vec(cap!(self.free_slots), 4)
            + vec(cap!(self.window), 4)
            + map_bytes(cap!(self.seen), 8)
            + vec(
                cap!(self.nodes),
                size_of::<super::state::Node>() + RECENT_IN * size_of::<Incoming>(),
            )
            + self.node_text
            + map_bytes(cap!(self.node_index), size_of::<(Arc<str>, u32)>())
            + vec(cap!(self.free_nodes), 4)
            + map_bytes(cap!(self.pairs), size_of::<((u32, u32), Pair)>())
            + map_bytes(cap!(self.node_kinds), size_of::<((u32, u32), NodeKind)>())
            + map_bytes(cap!(self.pair_kinds), size_of::<((u32, u32, u32), u32)>())
            + map_bytes(cap!(self.accounts), size_of::<(u64, u32)>())
            + map_bytes(cap!(self.node_accounts), size_of::<((u32, u64), u32)>())
            + map_bytes(cap!(self.stars), size_of::<(u32, u32)>())
            + self.kinds.bytes()
            + self.rules.bytes()
            + self.kind_counts.bytes()
            + vec(cap!(self.groups), size_of::<Group>())
            + vec(cap!(self.free_groups), 4)
            + vec(cap!(self.checks), size_of::<(i64, u32)>())
            + vec(
                cap!(self.name_classes),
                size_of::<Option<(u64, u32, Class)>>(),
            )
            + strings
            + self.history.held_bytes()
    }

    /// Gives tables that grew for a larger window back to the allocator (after the bound moved
    /// alerts out early), so that what is held and what is allocated agree again.
    pub(super) fn shrink(&mut self) {
        self.slots.shrink_to_fit();
        self.free_slots.shrink_to_fit();
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
