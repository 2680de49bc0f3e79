//! Snapshot and restore: the engine serialised for a state store, and rebuilt from it.

use super::Engine;
use crate::FastSet;

impl Engine {
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
            .ok_or("engine snapshot: not a version 7 snapshot")?;
        let mut e: Engine = bincode::deserialize(body)
            .map_err(|e| format!("engine snapshot is unreadable: {e}"))?;
        e.node_index = e
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.refs > 0)
            .map(|(i, n)| (n.ip.clone(), i as u32))
            .collect();
        e.id_hasher = ahash::RandomState::new();
        e.seen = FastSet::default();
        for s in e.slots.iter_mut().flatten() {
            s.hash = e.id_hasher.hash_one(&*s.id);
            e.seen.insert(s.hash);
        }
        // Allocations as restored (a deserialised table is as large as what it holds).
        e.recent_bytes = e
            .nodes
            .iter()
            .map(|n| {
                super::memory::recent_bytes(
                    n.recent_in.capacity() + n.recent_by_identity.capacity(),
                )
            })
            .sum();
        e.protocols.reindex();
        e.tactics.reindex();
        e.names.reindex();
        Ok(e)
    }
}

/// Marks (and versions) a snapshot.
const SNAPSHOT_MAGIC: &[u8] = b"alertgraph-v7\n";
