//! The one way the local stores open SQLite: the handler's local adapters and the host's
//! brokers alike.

use std::path::Path;
use std::time::Duration;

/// How long a statement waits for another connection's lock before failing as busy.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of a database file reads may map into memory (SQLite's `mmap_size`).
pub const MMAP_BYTES: u64 = 256 * 1024 * 1024;

/// Why a database could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// The file (or its directory) could not be created.
    File(std::io::Error),
    /// SQLite refused the file or a setting.
    Sqlite(rusqlite::Error),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::File(e) => write!(f, "cannot create the database file: {e}"),
            OpenError::Sqlite(e) => write!(f, "sqlite: {e}"),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpenError::File(e) => Some(e),
            OpenError::Sqlite(e) => Some(e),
        }
    }
}

/// Opens the database at `path`, creating it (and its directory) private to the user first
/// ([`crate::fs::private_file`]): WAL, so readers run beside one writer; `synchronous=NORMAL`,
/// durable across a killed process; a [`BUSY_TIMEOUT`], so the host and the CLI can share
/// the file; transactions that take the write lock when they begin; and reads through a memory map of up to [`MMAP_BYTES`], so a connection whose page
/// cache another connection's commit invalidated reads pages without copying them in again.
pub fn open(path: &Path) -> Result<rusqlite::Connection, OpenError> {
    crate::fs::private_file(path).map_err(OpenError::File)?;
    let mut conn = rusqlite::Connection::open(path).map_err(OpenError::Sqlite)?;
    // Transactions take the write lock when they begin (and wait for it up to the busy
    // timeout). A deferred one that reads first and then writes fails at once with "database
    // is locked" when another process (the host beside its handler) committed in between.
    conn.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
    conn.busy_timeout(BUSY_TIMEOUT).map_err(OpenError::Sqlite)?;
    conn.execute_batch(&format!(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA mmap_size={MMAP_BYTES};"
    ))
    .map_err(OpenError::Sqlite)?;
    Ok(conn)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_new_database_is_private_and_in_wal_mode() {
        let dir = std::env::temp_dir().join(format!("socwire-sqlite-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("state").join("db.sqlite3");
        let conn = open(&path).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 1, "NORMAL");
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        drop(conn);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_transaction_holds_the_write_lock_from_its_start() {
        let dir = std::env::temp_dir().join(format!("socwire-sqlite-tx-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("db.sqlite3");
        let mut a = open(&path).unwrap();
        let b = open(&path).unwrap();
        b.busy_timeout(Duration::ZERO).unwrap();
        let tx = a.transaction().unwrap();
        // A deferred transaction would hold nothing yet, and b could start writing.
        let err = b.execute_batch("BEGIN IMMEDIATE").unwrap_err();
        assert_eq!(
            err.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy)
        );
        drop(tx);
        b.execute_batch("BEGIN IMMEDIATE; COMMIT").unwrap();
        drop((a, b));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_path_that_cannot_be_created_is_a_file_error() {
        // A directory cannot be made under a plain file.
        let file = std::env::temp_dir().join(format!("socwire-sqlite-{}.txt", std::process::id()));
        std::fs::write(&file, b"not a directory").unwrap();
        let err = open(&file.join("db.sqlite3")).unwrap_err();
        assert!(matches!(err, OpenError::File(_)), "{err}");
        std::fs::remove_file(&file).unwrap();
    }
}
