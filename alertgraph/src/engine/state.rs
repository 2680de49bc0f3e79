//! What the engine holds: nodes, alerts (slots), their groups and the pair table.

use super::tables::put;
use super::{Engine, NO_GROUP, NO_KIND, NO_SLOT};
use crate::alert::{Domain, Severity};
use crate::classify::Stage;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Arc;

/// A node (an address) with alerts in the engine.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Node {
    pub(crate) ip: Arc<str>,
    pub(crate) host: Option<Arc<str>>,
    /// Endpoint of an IT alert.
    pub(crate) it: bool,
    /// Endpoint of an OT alert.
    pub(crate) ot: bool,
    /// Alerts held that name this node.
    pub(super) refs: u32,
    /// Alerts in the window this node sent (host-only alerts included).
    pub(crate) sent: u32,
    /// Of those, alerts that opened a pair (the first alert from it to that peer in the window).
    pub(super) opened: u32,
    /// And alerts to a peer it already had an alert to in the window.
    pub(super) repeated: u32,
    /// Distinct peers in the window.
    pub(super) degree: u32,
    /// Peers it sent exactly one alert to in the window (host-only alerts aside).
    pub(super) singles: u32,
    /// Recent incoming alerts on rare pairs.
    pub(super) recent_in: VecDeque<Incoming>,
    /// Incoming alerts with an identity that left `recent_in` (a busy node's sixteen recent
    /// ones span minutes), one per account, the most recent kept: a hop that reuses a stolen
    /// account an hour later still finds the hop that brought it.
    pub(super) recent_by_identity: Vec<Incoming>,
    /// Alerts in the window about this node (it is their subject), per stage.
    pub(crate) stages: [u32; 10],
    /// Alerts in the window that are compromise evidence about this node.
    pub(crate) evidence: u32,
    /// The group of the current episode of compromise evidence about this node (`NO_GROUP`
    /// when none), and the time of its newest alert.
    pub(super) evidence_group: u32,
    pub(super) evidence_last: i64,
    /// Distinct hosts this node sent attack alerts (reconnaissance, attempts) to in the window.
    pub(crate) attacked: u32,
    /// It has been a campaign's source (an attacker's address, or a pivot's) while held: no
    /// path is claimed through it, and nothing it sends continues a story into it.
    pub(crate) campaign: bool,
    /// The strongest compromise evidence seen about this node while it is held (for the rows
    /// of campaigns that reached it), and when it was last seen.
    pub(crate) top_evidence: Stage,
    pub(crate) last_evidence: i64,
}

/// A recent incoming alert on a rare pair, that a continuation from its node may follow.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(super) struct Incoming {
    pub(super) time: i64,
    /// Arrival number.
    pub(super) seq: u64,
    pub(super) group: u32,
    /// Chance that what already followed it on this node (host alerts) happened by chance: a
    /// continuation after them is that much less likely by chance.
    pub(super) chance: f32,
    /// Share of the window of its kind's rarity class (rule and protocol) when it arrived: of
    /// two incoming alerts a continuation could follow, it follows the rarer.
    pub(super) share: f32,
    /// Identity it carried (keyed hashes; 0 for none): account, logon session, command line.
    pub(super) identity: Identity,
}

/// Who or what an alert ran as, by keyed hash (0 for none): a hop that reuses the identity of
/// the hop into its source continues it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Identity {
    pub(super) account: u64,
    pub(super) logon: u64,
    pub(super) process: u64,
}

impl Identity {
    /// The part both share, if any: (account, logon, process).
    pub(super) fn shared_with(&self, other: &Identity) -> Option<u8> {
        [
            (self.account, other.account),
            (self.logon, other.logon),
            (self.process, other.process),
        ]
        .iter()
        .position(|&(a, b)| a != 0 && a == b)
        .map(|i| i as u8)
    }
}

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
    /// Its kind (rule, protocol), for the link test's counters.
    pub(super) kind: u32,
    pub(crate) id: Arc<str>,
    /// Keyed hash of `id` (the key is per process: recomputed on restore).
    #[serde(skip)]
    pub(super) hash: u64,
    /// Information (nats) of the improbable continuation that attached it; 0 when none.
    pub(crate) link: f32,
    /// The attack stage it speaks of (about `dst`, its subject).
    pub(crate) stage: Stage,
    /// Compromise evidence about `dst`: a compromise stage of a kind rare in the window.
    pub(crate) evidence: bool,
    /// The sensor saw the packet go from `dst` to `src` (a response, or the compromised host's
    /// own traffic): the engine holds every network alert as actor → subject.
    pub(crate) reversed: bool,
    /// Keyed hash of its account (0 for none), counted in the window's account table.
    pub(super) account: u64,
    /// A host-only alert attached to the path it follows.
    pub(crate) attached: bool,
    pub(super) group: u32,
    /// Counted in the pair table (false for attached host-only alerts).
    pub(super) counted_pair: bool,
    /// Opened its pair (counted in its sender's `opened`).
    pub(super) opened: bool,
    /// Next slot in its group's waiting list.
    pub(super) next: u32,
}

/// A singly linked list of slots threaded through [`Slot::next`]: a group's waiting alerts,
/// appended and joined in O(1) without allocating.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(super) struct SlotList {
    pub(super) head: u32,
    pub(super) tail: u32,
    pub(super) len: u32,
}

impl SlotList {
    pub(super) const EMPTY: SlotList = SlotList {
        head: NO_SLOT,
        tail: NO_SLOT,
        len: 0,
    };

    pub(super) fn push(&mut self, s: u32, slots: &mut [Option<Slot>]) {
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

    pub(super) fn append(&mut self, other: SlotList, slots: &mut [Option<Slot>]) {
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

    /// Replaces `out`'s contents with the list's slots, in list order.
    pub(super) fn collect_into(self, slots: &[Option<Slot>], out: &mut Vec<u32>) {
        out.clear();
        out.reserve(self.len as usize);
        let mut s = self.head;
        while out.len() < self.len as usize {
            out.push(s);
            s = slots[s as usize].as_ref().map_or(NO_SLOT, |x| x.next);
        }
    }
}

/// Alerts a node sent of one kind in the window, and its current host-only episode of that
/// kind (a group, and the time of its newest alert).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(super) struct NodeKind {
    pub(super) sends: u32,
    pub(super) episode: u32,
    pub(super) last: i64,
}

/// A group of alerts (union-find node; the fields beyond `parent` are kept at the root).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Group {
    pub(super) parent: u32,
    /// Alerts held (in the window or waiting to be emitted).
    pub(super) live: u32,
    pub(super) newest: i64,
    /// Alerts that left the window and wait in this group to be emitted.
    pub(super) pending: SlotList,
    pub(super) pending_oldest: i64,
    /// The hub whose star this is.
    pub(super) star: Option<u32>,
    /// Cutoff at which a check is queued, i64::MAX when none.
    pub(super) scheduled: i64,
}

/// Alerts on a directed pair in the window.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Pair {
    pub(crate) count: u32,
    pub(super) group: u32,
    /// Network alerts per kind on the pair, for two kinds (`NO_KIND` when free): most pairs
    /// carry one or two, and they are counted here without a second table; further kinds are
    /// counted in `Engine::pair_kinds`.
    pub(super) kinds: [(u32, u32); 2],
    /// Its alerts counted in `Engine::pair_kinds` instead.
    pub(super) spilled: u32,
    /// Attack alerts (reconnaissance, attempts) on the pair.
    pub(super) attacks: u32,
}

impl Pair {
    pub(super) const NEW: Pair = Pair {
        count: 0,
        group: NO_GROUP,
        kinds: [(NO_KIND, 0); 2],
        spilled: 0,
        attacks: 0,
    };

    /// Counts (`up`) or uncounts a network alert of `kind` on the pair; false when the kind has
    /// no place here (it is counted in the spill table).
    pub(super) fn count_kind(&mut self, kind: u32, up: bool) -> bool {
        if let Some(k) = self.kinds.iter_mut().find(|k| k.0 == kind) {
            if up {
                k.1 += 1;
            } else {
                k.1 -= 1;
                if k.1 == 0 {
                    k.0 = NO_KIND;
                }
            }
            return true;
        }
        if !up {
            return false;
        }
        match self.kinds.iter_mut().find(|k| k.0 == NO_KIND) {
            Some(k) => {
                *k = (kind, 1);
                true
            }
            None => false,
        }
    }

    /// True when the pair carries an alert of `kind` in its own places.
    pub(super) fn has_kind(&self, kind: u32) -> bool {
        self.kinds.iter().any(|k| k.0 == kind)
    }
}

impl Engine {
    pub(super) fn node(&mut self, ip: &str, host: Option<&str>, domain: Domain) -> u32 {
        let id = match self.node_index.get(ip) {
            Some(&id) => id,
            None => {
                let ip: Arc<str> = ip.into();
                self.node_text += super::memory::text_bytes(&ip);
                let fresh = Node {
                    ip: ip.clone(),
                    evidence_group: NO_GROUP,
                    ..Node::default()
                };
                let id = put(&mut self.nodes, &mut self.free_nodes, fresh);
                self.node_index.insert(ip, id);
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
            self.node_text += n.host.as_ref().map_or(0, super::memory::text_bytes);
        }
        id
    }

    pub(super) fn release(&mut self, id: u32) {
        let n = &mut self.nodes[id as usize];
        n.refs -= 1;
        if n.refs == 0 {
            self.recent_bytes -= super::memory::recent_bytes(
                n.recent_in.capacity() + n.recent_by_identity.capacity(),
            );
            self.node_text -= super::memory::text_bytes(&n.ip)
                + n.host.as_ref().map_or(0, super::memory::text_bytes);
            let ip = std::mem::take(&mut n.ip);
            self.node_index.remove(&ip);
            *n = Node::default();
            self.free_nodes.push(id);
        }
    }
}
