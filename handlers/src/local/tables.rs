use super::SqlitePool;
use crate::ports::{LogsIngestion, PortError, PortResult, StateStore};
use async_trait::async_trait;
use rusqlite::OptionalExtension;
use serde_json::Value;
use std::path::Path;

/// Local stand-in for Log Analytics custom tables and for blob-held state: SQLite tables that
/// the CLI and tests read. Rows carrying the same `RowKey` are stored once, which is what the
/// KQL de-duplication on that column does in Azure.
pub struct SqliteTables {
    pool: SqlitePool,
}

impl SqliteTables {
    /// Opens (or creates) the tables at `path`.
    pub fn open(path: &Path) -> PortResult<Self> {
        let pool = SqlitePool::open(
            path,
            "CREATE TABLE IF NOT EXISTS rows (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 stream TEXT NOT NULL,
                 row_key TEXT,
                 body TEXT NOT NULL,
                 UNIQUE (stream, row_key)
             );
             CREATE TABLE IF NOT EXISTS state (
                 key TEXT PRIMARY KEY,
                 bytes BLOB NOT NULL
             );
             -- The console lists alert stories by score, a page at a time.
             CREATE INDEX IF NOT EXISTS rows_subgraph_score
                 ON rows (json_extract(body, '$.Score'))
                 WHERE stream = 'Custom-AlertSubgraphs';",
            1,
        )?;
        Ok(Self { pool })
    }

    /// Every row of `stream`, oldest first.
    pub fn rows(&self, stream: &str) -> PortResult<Vec<Value>> {
        let conn = self.pool.lock();
        let mut stmt = conn
            .prepare_cached("SELECT body FROM rows WHERE stream = ?1 ORDER BY seq")
            .map_err(PortError::sqlite)?;
        let rows = stmt
            .query_map([stream], |r| r.get::<_, String>(0))
            .map_err(PortError::sqlite)?;
        rows.map(|r| {
            let text = r.map_err(PortError::sqlite)?;
            serde_json::from_str(&text)
                .map_err(|e| PortError::Permanent(format!("stored row is corrupt: {e}")))
        })
        .collect()
    }
}

#[async_trait]
impl LogsIngestion for SqliteTables {
    async fn upload(&self, stream: &str, rows: &[Value]) -> PortResult<usize> {
        let mut conn = self.pool.lock();
        let tx = conn.transaction().map_err(PortError::sqlite)?;
        for row in rows {
            let key = row.get("RowKey").and_then(Value::as_str);
            tx.execute(
                "INSERT OR IGNORE INTO rows (stream, row_key, body) VALUES (?1, ?2, ?3)",
                rusqlite::params![stream, key, row.to_string()],
            )
            .map_err(PortError::sqlite)?;
        }
        tx.commit().map_err(PortError::sqlite)?;
        Ok(1)
    }
}

#[async_trait]
impl StateStore for SqliteTables {
    async fn load(&self, key: &str) -> PortResult<Option<Vec<u8>>> {
        self.pool
            .lock()
            .query_row("SELECT bytes FROM state WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(PortError::sqlite)
    }

    async fn save(&self, key: &str, bytes: &[u8]) -> PortResult<()> {
        self.pool.lock()
            .execute(
                "INSERT INTO state (key, bytes) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET bytes = excluded.bytes",
                rusqlite::params![key, bytes],
            )
            .map(|_| ())
            .map_err(PortError::sqlite)
    }

    async fn create(&self, key: &str, bytes: &[u8]) -> PortResult<bool> {
        self.pool
            .lock()
            .execute(
                "INSERT OR IGNORE INTO state (key, bytes) VALUES (?1, ?2)",
                rusqlite::params![key, bytes],
            )
            .map(|changed| changed == 1)
            .map_err(PortError::sqlite)
    }

    async fn delete(&self, key: &str) -> PortResult<()> {
        self.pool
            .lock()
            .execute("DELETE FROM state WHERE key = ?1", [key])
            .map(|_| ())
            .map_err(PortError::sqlite)
    }
}
