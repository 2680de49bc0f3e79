//! alertgraph: a streaming IT/OT alert graph engine. Alerts become timed, directed edges between
//! hosts; the engine forms network-communication subgraphs over a sliding window and ranks
//! them so an analyst reads a few subgraphs instead of thousands of alerts, with multi-hop
//! attacks (lateral movement, IT into OT) first. Pure: no I/O, no clocks, no randomness
//! except the seeded generator.
#![warn(missing_docs)]
// No function over 100 lines of code outside tests (decision 0017).
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

pub mod alert;
pub mod batch;
pub mod classify;
pub mod engine;
pub mod eval;
pub mod feedback;
pub mod formats;
pub mod generate;
pub mod subgraph;
pub mod svg;

pub use alert::{Alert, AlertView, Domain, Rejected, Severity};
pub use engine::{rank, Config, EarlyEvictions, Engine};
pub use subgraph::{EvidenceItem, Subgraph, SubgraphEdge, SubgraphNode};

/// A hash map keyed by integers (FxHash): fast, and never keyed by attacker-chosen text.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, rustc_hash::FxBuildHasher>;

/// A hash set of integers (FxHash).
pub(crate) type FastSet<K> = std::collections::HashSet<K, rustc_hash::FxBuildHasher>;

/// A hash map keyed by text an alert carries (addresses, rule names), with keyed hashing
/// ([`ahash::RandomState`], random keys per process): an attacker cannot craft collisions.
pub(crate) type TextMap<V> = std::collections::HashMap<std::sync::Arc<str>, V, ahash::RandomState>;
