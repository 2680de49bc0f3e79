//! What `alert-stream` keeps per Event Hubs partition between batches and in its journal.
//! Apart from the function so the shared [`crate::context::Context`] can hold it without the
//! two modules importing each other.

use alertgraph::{Alert, Engine};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Recent batches remembered per partition to answer redeliveries.
const RECENT_BATCHES: usize = 32;

/// The engines of the partitions this process has seen, held between batches.
#[derive(Default)]
pub struct EngineState {
    pub(super) partitions: BTreeMap<String, PartitionState>,
    /// Analysts' verdicts, and when they were last read from the state store.
    pub(super) feedback: alertgraph::feedback::Feedback,
    pub(super) feedback_read: Option<std::time::Instant>,
}

/// One partition's engine and journal position.
pub(super) struct PartitionState {
    pub(super) engine: Engine,
    /// Number of the next journal entry.
    pub(super) next: u64,
    /// Number of the first entry not yet compacted into the base.
    pub(super) base_next: u64,
    pub(super) recent: VecDeque<BatchRecord>,
}

/// A batch as the journal holds it (JSON: alerts carry optional fields).
#[derive(Serialize, Deserialize)]
pub(super) struct JournalEntry {
    pub(super) batch: BatchRecord,
    /// Accepted alerts, in the order they were applied.
    pub(super) alerts: Vec<Alert>,
}

/// Which events a batch emitted, to answer its redelivery.
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct BatchRecord {
    pub(super) first_seq: i64,
    pub(super) last_seq: i64,
    /// The events' JSON text.
    pub(super) events: Vec<String>,
}

impl BatchRecord {
    pub(super) fn overlaps(&self, first: i64, last: i64) -> bool {
        self.first_seq <= last && first <= self.last_seq
    }
}

/// The compacted state of a partition.
#[derive(Serialize, Deserialize)]
pub(super) struct Base {
    pub(super) next: u64,
    pub(super) engine: Vec<u8>,
    pub(super) recent: Vec<BatchRecord>,
}

impl PartitionState {
    pub(super) fn remember(&mut self, batch: BatchRecord) {
        if self.recent.len() == RECENT_BATCHES {
            self.recent.pop_front();
        }
        self.recent.push_back(batch);
    }
}
