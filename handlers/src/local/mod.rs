//! Local adapters: the stand-ins `socwire up` uses when no Azure settings are present. They are
//! real stores (SQLite in WAL mode, files), not mocks, so the whole system runs offline.

mod ledger;
mod ml;
mod reports;
mod sentinel;
mod tables;
mod threat_intel;

pub use ledger::SqliteLedger;
pub use ml::{LocalCommandBus, LocalMlOptions, LocalModel, LocalWorkspace};
pub use reports::FileReportStore;
pub use sentinel::{SqliteIncidentStore, StoredComment};
pub use tables::SqliteTables;
pub use threat_intel::{OfflineThreatIntel, TiEntry};

use crate::ports::PortError;
use std::path::Path;

/// Opens a SQLite database for an adapter: WAL, a busy timeout so the host and the CLI can share
/// it, and `synchronous=NORMAL` (durable across a killed process).
pub(crate) fn open_sqlite(path: &Path, schema: &str) -> Result<rusqlite::Connection, PortError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| PortError::Permanent(format!("cannot create {}: {e}", dir.display())))?;
    }
    let conn = rusqlite::Connection::open(path).map_err(sqlite_error)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(sqlite_error)?;
    conn.execute_batch(&format!(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; {schema}"
    ))
    .map_err(sqlite_error)?;
    Ok(conn)
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
