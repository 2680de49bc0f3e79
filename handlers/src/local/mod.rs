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
pub use ml::{LocalCommandBus, LocalMlOptions, LocalModel, LocalWorkspace};
pub use reports::FileReportStore;
pub use sentinel::{SqliteIncidentStore, StoredComment};
pub use tables::SqliteTables;
pub use threat_intel::{OfflineThreatIntel, TiEntry};
pub use workspace::{LogRow, SqliteWorkspace};

use crate::ports::PortError;
use std::path::Path;

/// Opens a SQLite database for an adapter: WAL, a busy timeout so the host and the CLI can share
/// it, and `synchronous=NORMAL` (durable across a killed process).
pub(crate) fn open_sqlite(path: &Path, schema: &str) -> Result<rusqlite::Connection, PortError> {
    socwire_common::fs::private_file(path)
        .map_err(|e| PortError::Permanent(format!("cannot create {}: {e}", path.display())))?;
    let conn = rusqlite::Connection::open(path).map_err(sqlite_error)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(sqlite_error)?;
    conn.execute_batch(&format!(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; {schema}"
    ))
    .map_err(sqlite_error)?;
    Ok(conn)
}

/// A few connections to one SQLite database, so concurrent invocations do not queue behind one
/// lock: WAL lets readers run beside each other and beside one writer, and SQLite's own
/// locking (with the busy timeout) orders the writers.
pub(crate) struct SqlitePool {
    conns: Vec<std::sync::Mutex<rusqlite::Connection>>,
    next: std::sync::atomic::AtomicUsize,
}

impl SqlitePool {
    /// Opens `size` connections (at least one) to `path`, creating `schema` once.
    pub(crate) fn open(path: &Path, schema: &str, size: usize) -> Result<Self, PortError> {
        let mut conns = vec![std::sync::Mutex::new(open_sqlite(path, schema)?)];
        for _ in 1..size.max(1) {
            conns.push(std::sync::Mutex::new(open_sqlite(path, "")?));
        }
        Ok(Self {
            conns,
            next: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// Runs `f` on a free connection, or waits for one (round robin) when all are busy.
    pub(crate) fn with<T>(&self, f: impl FnOnce(&rusqlite::Connection) -> T) -> T {
        let start = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let n = self.conns.len();
        for i in 0..n {
            if let Ok(conn) = self.conns[(start + i) % n].try_lock() {
                return f(&conn);
            }
        }
        let conn = self.conns[start % n]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        f(&conn)
    }
}

/// Maps a SQLite error: a busy or locked database is worth a retry, anything else is not.
pub(crate) fn sqlite_error(e: rusqlite::Error) -> PortError {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            PortError::Transient(format!("sqlite: {e}"))
        }
        _ => PortError::Permanent(format!("sqlite: {e}")),
    }
}

/// The threat-intelligence list compiled into the binary.
pub fn threat_intel_builtin() -> &'static str {
    threat_intel::BUILTIN_TI_LIST
}
