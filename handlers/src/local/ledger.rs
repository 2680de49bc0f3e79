use super::SqlitePool;
use crate::ports::PortError;
use crate::ports::{Ledger, PortResult};
use async_trait::async_trait;
use rusqlite::OptionalExtension;
use std::path::Path;

/// The idempotency ledger in SQLite: one row per effect key; the primary key makes the first
/// writer win. A small pool of connections serves concurrent invocations (the
/// `incident-created` hot path reads it on every event).
pub struct SqliteLedger {
    pool: SqlitePool,
}

impl SqliteLedger {
    /// Opens (or creates) the ledger at `path`.
    pub fn open(path: &Path) -> PortResult<Self> {
        let pool = SqlitePool::open(
            path,
            "CREATE TABLE IF NOT EXISTS ledger (
                 key TEXT PRIMARY KEY,
                 detail TEXT NOT NULL,
                 recorded_ms INTEGER NOT NULL
             );",
            4,
        )?;
        Ok(Self { pool })
    }

    /// Number of recorded effects whose key starts with `prefix`.
    pub fn count(&self, prefix: &str) -> PortResult<u64> {
        self.pool.with(|conn| {
            conn.query_row(
                "SELECT COUNT(*) FROM ledger WHERE substr(key, 1, length(?1)) = ?1",
                [prefix],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(PortError::sqlite)
        })
    }
}

#[async_trait]
impl Ledger for SqliteLedger {
    async fn get(&self, key: &str) -> PortResult<Option<String>> {
        self.pool.with(|conn| {
            conn.query_row("SELECT detail FROM ledger WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(PortError::sqlite)
        })
    }

    async fn record(&self, key: &str, detail: &str) -> PortResult<bool> {
        let now = chrono::Utc::now().timestamp_millis();
        self.pool.with(|conn| {
            conn.execute(
                "INSERT OR IGNORE INTO ledger (key, detail, recorded_ms) VALUES (?1, ?2, ?3)",
                rusqlite::params![key, detail, now],
            )
            .map(|n| n == 1)
            .map_err(PortError::sqlite)
        })
    }
}
