//! Local adapters: the stand-ins `socwire up` uses when no Azure settings are present. They are
//! real stores (SQLite in WAL mode, files), not mocks, so the whole system runs offline.

mod ledger;
mod ml;
mod reports;
mod sentinel;
mod tables;
mod threat_intel;
mod workspace;

pub use ledger::SqliteLedger;
pub use ml::{
    mlflow_store, read_mlflow_file_store, LocalCommandBus, LocalMlOptions, LocalModel,
    LocalWorkspace,
};
pub use reports::FileReportStore;
pub use sentinel::{SqliteIncidentStore, StoredComment};
pub use tables::SqliteTables;
pub use threat_intel::{OfflineThreatIntel, TiEntry};
pub use workspace::{lower_text, time_generated_ms, LogRow, SqliteWorkspace};

use crate::ports::PortError;
use socwire_common::sqlite::OpenError;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Opens a SQLite database for an adapter through [`socwire_common::sqlite::open`] (a 0600
/// file, WAL, `synchronous=NORMAL`, a busy timeout so the host and the CLI can share it) and
/// creates `schema`.
fn open_sqlite(path: &Path, schema: &str) -> Result<rusqlite::Connection, PortError> {
    let conn = socwire_common::sqlite::open(path).map_err(|e| match e {
        OpenError::File(e) => PortError::Store {
            what: format!("cannot create {}", path.display()),
            transient: false,
            source: Box::new(e),
        },
        OpenError::Sqlite(e) => PortError::sqlite(e),
    })?;
    conn.execute_batch(schema).map_err(PortError::sqlite)?;
    Ok(conn)
}

/// A few connections to one SQLite database, so concurrent invocations do not queue behind one
/// lock: WAL lets readers run beside each other and beside one writer, and SQLite's own
/// locking (with the busy timeout) orders the writers.
pub(crate) struct SqlitePool {
    conns: Vec<Mutex<rusqlite::Connection>>,
    next: AtomicUsize,
}

impl SqlitePool {
    /// Opens `size` connections (at least one) to `path`, creating `schema` once.
    pub(crate) fn open(path: &Path, schema: &str, size: usize) -> Result<Self, PortError> {
        let mut conns = vec![Mutex::new(open_sqlite(path, schema)?)];
        for _ in 1..size.max(1) {
            conns.push(Mutex::new(open_sqlite(path, "")?));
        }
        Ok(Self {
            conns,
            next: AtomicUsize::new(0),
        })
    }

    /// A free connection, or (when all are busy) the next one round robin once it is free. A
    /// panic while one was held does not make it unusable: SQLite rolled back what was left.
    pub(crate) fn lock(&self) -> MutexGuard<'_, rusqlite::Connection> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.conns.len();
        for i in 0..n {
            if let Ok(conn) = self.conns[(start + i) % n].try_lock() {
                return conn;
            }
        }
        self.conns[start % n]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on a connection from [`SqlitePool::lock`].
    pub(crate) fn with<T>(&self, f: impl FnOnce(&rusqlite::Connection) -> T) -> T {
        f(&self.lock())
    }
}

/// The threat-intelligence list compiled into the binary.
pub fn threat_intel_builtin() -> &'static str {
    threat_intel::BUILTIN_TI_LIST
}
