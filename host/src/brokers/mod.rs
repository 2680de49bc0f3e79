//! Embedded, durable brokers in one SQLite database (`brokers.sqlite3`): Storage queues,
//! Service Bus queues/topics/subscriptions, Event Hubs and Event Grid topics, plus one
//! dead-letter store across them.
//!
//! The database runs in WAL mode with `synchronous=NORMAL`: a commit survives the process being
//! killed (`kill -9`), though not a power cut. Every state change is one transaction. All time
//! comes from a [`Clock`], so the delivery rules are tested with [`ManualClock`], never sleeps.

mod browse;
mod clock;
mod deadletter;
mod eventgrid;
mod eventhub;
mod queue;
mod rejects;
mod replay;
mod servicebus;
mod status;

pub use browse::{DeadLetterPage, FunctionTrigger, PartitionCounts};
pub use clock::{Clock, ManualClock, SystemClock};
pub use deadletter::{DeadLetter, DeadLetterKind};
pub use eventgrid::{EgDelivery, EgSubscriptionOptions, EventGrid, Topic, EVENT_GRID_BACKOFF_SECS};
pub use eventhub::{EhEvent, Hub};
pub use queue::{Queue, QueueMessage};
pub use rejects::{TriggerSource, REJECTS_QUEUE};
pub use servicebus::{
    FilterError, FilterInput, SbEntityOptions, SbMessage, SbReceived, SendOutcome,
    ServiceBusEntity, SqlFilter,
};
pub use status::{BrokerStatus, Consumers, PendingWork};

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

/// A broker failure.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// SQLite failed.
    #[error("broker database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The caller named something that does not exist or cannot take the request.
    #[error("{0}")]
    Invalid(String),
    /// The data directory could not be used.
    #[error("broker data directory: {0}")]
    Io(#[from] std::io::Error),
}

impl From<socwire_common::sqlite::OpenError> for BrokerError {
    fn from(e: socwire_common::sqlite::OpenError) -> Self {
        match e {
            socwire_common::sqlite::OpenError::File(e) => Self::Io(e),
            socwire_common::sqlite::OpenError::Sqlite(e) => Self::Sqlite(e),
        }
    }
}

/// Result of broker calls.
pub type BrokerResult<T> = Result<T, BrokerError>;

/// Schema version written to `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS queue_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    body BLOB NOT NULL,
    dequeue_count INTEGER NOT NULL DEFAULT 0,
    pop_receipt TEXT,
    insertion_ms INTEGER NOT NULL,
    expiration_ms INTEGER NOT NULL,
    next_visible_ms INTEGER NOT NULL,
    leased INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS queues (name TEXT PRIMARY KEY);
CREATE INDEX IF NOT EXISTS queue_ready ON queue_messages (queue, next_visible_ms, id);

CREATE TABLE IF NOT EXISTS sb_entities (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    topic TEXT,
    filter TEXT,
    max_delivery_count INTEGER NOT NULL,
    lock_ms INTEGER NOT NULL,
    requires_session INTEGER NOT NULL,
    dup_window_ms INTEGER NOT NULL,
    next_seq INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS sb_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    entity TEXT NOT NULL,
    seq INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    body BLOB NOT NULL,
    subject TEXT,
    session_id TEXT,
    correlation_id TEXT,
    content_type TEXT,
    props TEXT NOT NULL,
    enqueued_ms INTEGER NOT NULL,
    visible_ms INTEGER NOT NULL,
    delivery_count INTEGER NOT NULL DEFAULT 0,
    lock_token TEXT,
    locked_until INTEGER
);
CREATE INDEX IF NOT EXISTS sb_ready ON sb_messages (entity, visible_ms, seq);
CREATE INDEX IF NOT EXISTS sb_session ON sb_messages (entity, session_id, seq);
CREATE UNIQUE INDEX IF NOT EXISTS sb_lock ON sb_messages (lock_token);
CREATE TABLE IF NOT EXISTS sb_dedup (
    entity TEXT NOT NULL,
    message_id TEXT NOT NULL,
    seen_ms INTEGER NOT NULL,
    PRIMARY KEY (entity, message_id)
);

CREATE TABLE IF NOT EXISTS eh_hubs (
    name TEXT PRIMARY KEY,
    partitions INTEGER NOT NULL,
    round_robin INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS eh_events (
    hub TEXT NOT NULL,
    partition INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    enqueued_ms INTEGER NOT NULL,
    partition_key TEXT,
    body BLOB NOT NULL,
    props TEXT NOT NULL,
    PRIMARY KEY (hub, partition, seq)
) WITHOUT ROWID;
-- The next sequence number of each partition, kept apart from the events so that retention
-- can delete every event of a partition without the numbers starting again at 0.
CREATE TABLE IF NOT EXISTS eh_sequences (
    hub TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_seq INTEGER NOT NULL,
    PRIMARY KEY (hub, partition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS eh_checkpoints (
    hub TEXT NOT NULL,
    consumer_group TEXT NOT NULL,
    partition INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (hub, consumer_group, partition)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS eg_subscriptions (
    topic TEXT NOT NULL,
    subscriber TEXT NOT NULL,
    max_attempts INTEGER NOT NULL,
    ttl_ms INTEGER NOT NULL,
    PRIMARY KEY (topic, subscriber)
);
CREATE TABLE IF NOT EXISTS eg_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    subscriber TEXT NOT NULL,
    event TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    first_ms INTEGER NOT NULL,
    next_ms INTEGER NOT NULL,
    lease_until INTEGER,
    last_status INTEGER,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS eg_due ON eg_deliveries (next_ms, id);
CREATE TABLE IF NOT EXISTS eg_unrouted (
    topic TEXT PRIMARY KEY,
    events INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    reason TEXT NOT NULL,
    description TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    dead_lettered_ms INTEGER NOT NULL,
    body BLOB NOT NULL,
    meta TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS function_triggers (
    function TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    source TEXT NOT NULL
);
";

/// The brokers: one SQLite connection behind a mutex, and a clock.
pub struct Brokers {
    conn: Mutex<rusqlite::Connection>,
    clock: Arc<dyn Clock>,
}

impl Brokers {
    /// Opens (or creates) `dir/brokers.sqlite3`.
    pub fn open(dir: &Path, clock: Arc<dyn Clock>) -> BrokerResult<Self> {
        let conn = socwire_common::sqlite::open(&dir.join("brokers.sqlite3"))?;
        conn.execute_batch("PRAGMA foreign_keys=OFF;")?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(BrokerError::Invalid(format!(
                "brokers.sqlite3 has schema version {version}, newer than this socwire ({SCHEMA_VERSION})"
            )));
        }
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION};"))?;
        Ok(Self {
            conn: Mutex::new(conn),
            clock,
        })
    }

    fn lock(&self) -> MutexGuard<'_, rusqlite::Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Makes every delivery a previous (killed) run held available again: queue messages under
    /// a receive lease, locked Service Bus messages, leased Event Grid deliveries. Call only
    /// while holding the data directory's lock, i.e. when no other host is consuming.
    pub fn release_leases(&self) -> BrokerResult<usize> {
        let now = self.now();
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let mut n = tx.execute(
            "UPDATE queue_messages SET next_visible_ms = ?1, leased = 0, pop_receipt = NULL WHERE leased = 1 AND next_visible_ms > ?1",
            [now],
        )?;
        n += tx.execute(
            "UPDATE sb_messages SET locked_until = NULL, lock_token = NULL WHERE locked_until > ?1",
            [now],
        )?;
        n += tx.execute(
            "UPDATE eg_deliveries SET lease_until = NULL WHERE lease_until > ?1",
            [now],
        )?;
        tx.commit()?;
        Ok(n)
    }

    /// Makes every retry that is waiting out a back-off due now, as if its wait had passed:
    /// Event Grid deliveries after a failed attempt and queue messages after a failed dequeue.
    /// Attempt and dequeue counts are kept, so dead-lettering and poisoning happen exactly as
    /// they would have. Messages a sender delayed on purpose are left alone.
    pub fn retries_due_now(&self) -> BrokerResult<usize> {
        let now = self.now();
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let mut n = tx.execute(
            "UPDATE eg_deliveries SET next_ms = ?1 WHERE attempts > 0 AND next_ms > ?1",
            [now],
        )?;
        n += tx.execute(
            "UPDATE queue_messages SET next_visible_ms = ?1 WHERE leased = 0 AND dequeue_count > 0 AND next_visible_ms > ?1",
            [now],
        )?;
        tx.commit()?;
        Ok(n)
    }
}

fn new_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Brokers in a fresh temporary directory with a manual clock at 1,000,000 ms.
    pub fn brokers() -> (tempfile::TempDir, Brokers, Arc<ManualClock>) {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_000_000));
        let b = Brokers::open(dir.path(), clock.clone()).unwrap();
        (dir, b, clock)
    }

    /// A Service Bus message with this MessageId and body.
    pub fn msg(id: &str, body: &str) -> SbMessage {
        SbMessage {
            message_id: id.into(),
            body: body.as_bytes().to_vec(),
            ..Default::default()
        }
    }
}
