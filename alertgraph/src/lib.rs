//! alertgraph: a streaming IT/OT alert graph engine. Alerts become timed, directed edges between
//! hosts; the engine forms network-communication subgraphs over a sliding window and ranks
//! them so an analyst reads a few subgraphs instead of thousands of alerts, with multi-hop
//! attacks (lateral movement, IT into OT) first. Pure: no I/O, no clocks, no randomness
//! except the seeded generator.

pub mod alert;
pub mod engine;
pub mod eval;
pub mod generate;
pub mod subgraph;
pub mod svg;

pub use alert::{Alert, AlertView, Domain, Rejected, Severity};
pub use engine::{rank, Config, EarlyEvictions, Engine};
pub use subgraph::{Subgraph, SubgraphEdge, SubgraphNode};

use std::hash::{BuildHasherDefault, Hasher};

/// The multiply-rotate hash rustc uses (FxHash): fast for the engine's integer keys. Never
/// used on attacker-chosen strings (those go through std's keyed SipHash).
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.add(u64::from(*b));
        }
    }
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// A hash map keyed by integers, with [`FxHasher`].
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<FxHasher>>;
