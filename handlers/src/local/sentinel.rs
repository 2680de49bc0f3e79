use super::{open_sqlite, sqlite_error};
use crate::ports::{IncidentStore, PortError, PortResult};
use crate::sentinel::{Entity, Incident, IncidentId, Severity};
use async_trait::async_trait;
use rusqlite::OptionalExtension;
use std::path::Path;
use std::sync::Mutex;

/// The local Sentinel: incidents, entities and comments in SQLite, with the same etag and
/// comment-id semantics as the REST API.
pub struct SqliteIncidentStore {
    conn: Mutex<rusqlite::Connection>,
}

/// A comment as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredComment {
    /// Caller-chosen comment id.
    pub comment_id: String,
    /// Comment text (HTML allowed, as in Sentinel).
    pub message: String,
}

impl SqliteIncidentStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> PortResult<Self> {
        let conn = open_sqlite(
            path,
            "CREATE TABLE IF NOT EXISTS incidents (
                 key TEXT PRIMARY KEY,
                 body TEXT NOT NULL,
                 version INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS entities (
                 key TEXT NOT NULL,
                 position INTEGER NOT NULL,
                 body TEXT NOT NULL,
                 PRIMARY KEY (key, position)
             );
             CREATE TABLE IF NOT EXISTS comments (
                 key TEXT NOT NULL,
                 comment_id TEXT NOT NULL,
                 message TEXT NOT NULL,
                 PRIMARY KEY (key, comment_id)
             );",
        )?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Inserts or replaces an incident and its entities (used by the demo and tests).
    pub fn seed(&self, incident: &Incident, entities: &[Entity]) -> PortResult<IncidentId> {
        let id = IncidentId::parse(&incident.id)
            .map_err(|e| PortError::Permanent(format!("seed: {e}")))?;
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(sqlite_error)?;
        let body =
            serde_json::to_string(incident).map_err(|e| PortError::Permanent(e.to_string()))?;
        tx.execute(
            "INSERT OR REPLACE INTO incidents (key, body, version) VALUES (?1, ?2, 1)",
            rusqlite::params![id.key(), body],
        )
        .map_err(sqlite_error)?;
        tx.execute("DELETE FROM entities WHERE key = ?1", [id.key()])
            .map_err(sqlite_error)?;
        for (position, entity) in entities.iter().enumerate() {
            let body =
                serde_json::to_string(entity).map_err(|e| PortError::Permanent(e.to_string()))?;
            tx.execute(
                "INSERT INTO entities (key, position, body) VALUES (?1, ?2, ?3)",
                rusqlite::params![id.key(), position as i64, body],
            )
            .map_err(sqlite_error)?;
        }
        tx.commit().map_err(sqlite_error)?;
        Ok(id)
    }

    /// The comments on an incident, in id order.
    pub fn comments(&self, id: &IncidentId) -> PortResult<Vec<StoredComment>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT comment_id, message FROM comments WHERE key = ?1 ORDER BY comment_id",
            )
            .map_err(sqlite_error)?;
        let rows = stmt
            .query_map([id.key()], |r| {
                Ok(StoredComment {
                    comment_id: r.get(0)?,
                    message: r.get(1)?,
                })
            })
            .map_err(sqlite_error)?;
        rows.collect::<Result<_, _>>().map_err(sqlite_error)
    }

    /// Every incident, in key order.
    pub fn list(&self) -> PortResult<Vec<Incident>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached("SELECT body, version FROM incidents ORDER BY key")
            .map_err(sqlite_error)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(sqlite_error)?;
        rows.map(|row| {
            let (body, version) = row.map_err(sqlite_error)?;
            decode_incident(&body, version)
        })
        .collect()
    }

    /// A PUT of the whole incident, checked against the etag in the body as ARM does.
    fn put_incident(&self, id: &IncidentId, incident: &Incident) -> PortResult<()> {
        let conn = self.lock();
        let current: Option<i64> = conn
            .query_row(
                "SELECT version FROM incidents WHERE key = ?1",
                [id.key()],
                |r| r.get(0),
            )
            .optional()
            .map_err(sqlite_error)?;
        let version = current.ok_or_else(|| PortError::NotFound(id.to_string()))?;
        if let Some(etag) = &incident.etag {
            if *etag != etag_of(version) {
                return Err(PortError::Conflict(format!(
                    "New version of resource '{}' exists. Data was not saved",
                    id.name()
                )));
            }
        }
        let mut stored = incident.clone();
        stored.etag = None;
        let body =
            serde_json::to_string(&stored).map_err(|e| PortError::Permanent(e.to_string()))?;
        conn.execute(
            "UPDATE incidents SET body = ?2, version = version + 1 WHERE key = ?1",
            rusqlite::params![id.key(), body],
        )
        .map_err(sqlite_error)?;
        Ok(())
    }
}

fn etag_of(version: i64) -> String {
    format!("\"{version:08x}-0000-0000-0000-000000000000\"")
}

fn decode_incident(body: &str, version: i64) -> PortResult<Incident> {
    let mut incident: Incident = serde_json::from_str(body)
        .map_err(|e| PortError::Permanent(format!("stored incident is corrupt: {e}")))?;
    incident.etag = Some(etag_of(version));
    Ok(incident)
}

#[async_trait]
impl IncidentStore for SqliteIncidentStore {
    async fn get(&self, id: &IncidentId) -> PortResult<Incident> {
        let conn = self.lock();
        let row: Option<(String, i64)> = conn
            .query_row(
                "SELECT body, version FROM incidents WHERE key = ?1",
                [id.key()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(sqlite_error)?;
        let (body, version) = row.ok_or_else(|| PortError::NotFound(id.to_string()))?;
        decode_incident(&body, version)
    }

    async fn entities(&self, id: &IncidentId) -> PortResult<Vec<Entity>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached("SELECT body FROM entities WHERE key = ?1 ORDER BY position")
            .map_err(sqlite_error)?;
        let rows = stmt
            .query_map([id.key()], |r| r.get::<_, String>(0))
            .map_err(sqlite_error)?;
        rows.map(|row| {
            let body = row.map_err(sqlite_error)?;
            serde_json::from_str(&body)
                .map_err(|e| PortError::Permanent(format!("stored entity is corrupt: {e}")))
        })
        .collect()
    }

    async fn set_severity(&self, id: &IncidentId, severity: Severity) -> PortResult<()> {
        // GET-modify-PUT with the etag, re-reading on conflict: the same loop the REST adapter runs.
        for _ in 0..5 {
            let mut incident = self.get(id).await?;
            if incident.properties.severity == severity {
                return Ok(());
            }
            incident.properties.severity = severity;
            match self.put_incident(id, &incident) {
                Err(PortError::Conflict(_)) => continue,
                other => return other,
            }
        }
        Err(PortError::Conflict(format!(
            "incident {} kept changing under us",
            id.name()
        )))
    }

    async fn put_comment(
        &self,
        id: &IncidentId,
        comment_id: &str,
        message: &str,
    ) -> PortResult<()> {
        let conn = self.lock();
        let exists: bool = conn
            .query_row("SELECT 1 FROM incidents WHERE key = ?1", [id.key()], |_| {
                Ok(true)
            })
            .optional()
            .map_err(sqlite_error)?
            .unwrap_or(false);
        if !exists {
            return Err(PortError::NotFound(id.to_string()));
        }
        conn.execute(
            "INSERT INTO comments (key, comment_id, message) VALUES (?1, ?2, ?3)
             ON CONFLICT (key, comment_id) DO UPDATE SET message = excluded.message",
            rusqlite::params![id.key(), comment_id, message],
        )
        .map_err(sqlite_error)?;
        Ok(())
    }
}
