use super::SqlitePool;
use crate::ports::{IncidentStore, PortError, PortResult};
use crate::sentinel::{Entity, Incident, IncidentId, WorkspaceRef};
use async_trait::async_trait;
use rusqlite::OptionalExtension;
use serde_json::Value;
use std::path::Path;

/// The local Sentinel: incidents, entities and comments in SQLite, with the same etag and
/// comment-id semantics as the REST API.
pub struct SqliteIncidentStore {
    pool: SqlitePool,
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
        let pool = SqlitePool::open(
            path,
            "CREATE TABLE IF NOT EXISTS incidents (
                 key TEXT PRIMARY KEY,
                 body TEXT NOT NULL,
                 version INTEGER NOT NULL
             );
             -- The console lists incidents newest (highest number) first, a page at a time.
             CREATE INDEX IF NOT EXISTS incidents_number
                 ON incidents (json_extract(body, '$.properties.incidentNumber'));
             CREATE TABLE IF NOT EXISTS entities (
                 key TEXT NOT NULL,
                 position INTEGER NOT NULL,
                 body TEXT NOT NULL,
                 PRIMARY KEY (key, position)
             );
             CREATE TABLE IF NOT EXISTS alerts (
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
            1,
        )?;
        Ok(Self { pool })
    }

    /// The JSON bodies `sql` selects for incident `id`, in order; `what` names one in errors.
    fn listed<T: serde::de::DeserializeOwned>(
        &self,
        sql: &str,
        id: &IncidentId,
        what: &str,
    ) -> PortResult<Vec<T>> {
        let conn = self.pool.lock();
        let mut stmt = conn.prepare_cached(sql).map_err(PortError::sqlite)?;
        let rows = stmt
            .query_map([id.key()], |r| r.get::<_, String>(0))
            .map_err(PortError::sqlite)?;
        rows.map(|row| {
            let body = row.map_err(PortError::sqlite)?;
            serde_json::from_str(&body)
                .map_err(|e| PortError::Permanent(format!("stored {what} is corrupt: {e}")))
        })
        .collect()
    }

    /// Inserts or replaces an incident and its entities (used by the demo and tests).
    pub fn seed(&self, incident: &Incident, entities: &[Entity]) -> PortResult<IncidentId> {
        self.import(incident, entities, &[])
    }

    /// Inserts an incident, or updates it when one with the same id exists (its version, and
    /// so its etag, moves on), replacing its entities and alerts. `createdTimeUtc` and
    /// `lastModifiedTimeUtc` are set as the service sets them when the input lacks them.
    pub fn import(
        &self,
        incident: &Incident,
        entities: &[Entity],
        alerts: &[Value],
    ) -> PortResult<IncidentId> {
        let id = IncidentId::parse(&incident.id)
            .map_err(|e| PortError::Permanent(format!("incident id: {e}")))?;
        let mut stored = incident.clone();
        stored.etag = None;
        stored.id = id.arm_id().to_string();
        stored.name = id.name().to_string();
        let now = Value::String(now_rfc3339());
        let other = &mut stored.properties.other;
        other.entry("createdTimeUtc").or_insert_with(|| now.clone());
        other.entry("lastModifiedTimeUtc").or_insert(now);
        let mut conn = self.pool.lock();
        let tx = conn.transaction().map_err(PortError::sqlite)?;
        let body =
            serde_json::to_string(&stored).map_err(|e| PortError::Permanent(e.to_string()))?;
        tx.execute(
            "INSERT INTO incidents (key, body, version) VALUES (?1, ?2, 1)
             ON CONFLICT (key) DO UPDATE SET body = excluded.body, version = version + 1",
            rusqlite::params![id.key(), body],
        )
        .map_err(PortError::sqlite)?;
        for (table, items) in [
            (
                "entities",
                entities
                    .iter()
                    .map(serde_json::to_string)
                    .collect::<Result<Vec<_>, _>>(),
            ),
            (
                "alerts",
                alerts
                    .iter()
                    .map(serde_json::to_string)
                    .collect::<Result<Vec<_>, _>>(),
            ),
        ] {
            let items = items.map_err(|e| PortError::Permanent(e.to_string()))?;
            tx.execute(&format!("DELETE FROM {table} WHERE key = ?1"), [id.key()])
                .map_err(PortError::sqlite)?;
            for (position, body) in items.iter().enumerate() {
                tx.execute(
                    &format!("INSERT INTO {table} (key, position, body) VALUES (?1, ?2, ?3)"),
                    rusqlite::params![id.key(), position as i64, body],
                )
                .map_err(PortError::sqlite)?;
            }
        }
        tx.commit().map_err(PortError::sqlite)?;
        Ok(id)
    }

    /// Changes an incident as an analyst would in the portal (tests and the demo): the version
    /// and `lastModifiedTimeUtc` move on, so a writer holding the old etag gets a conflict.
    pub fn analyst_edit(
        &self,
        id: &IncidentId,
        edit: impl FnOnce(&mut crate::sentinel::IncidentProperties),
    ) -> PortResult<()> {
        let mut incident = futures_lite_get(self, id)?;
        edit(&mut incident.properties);
        incident.etag = None;
        self.put_incident(id, &incident)
    }

    /// The comments on an incident, in id order.
    pub fn comments(&self, id: &IncidentId) -> PortResult<Vec<StoredComment>> {
        let conn = self.pool.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT comment_id, message FROM comments WHERE key = ?1 ORDER BY comment_id",
            )
            .map_err(PortError::sqlite)?;
        let rows = stmt
            .query_map([id.key()], |r| {
                Ok(StoredComment {
                    comment_id: r.get(0)?,
                    message: r.get(1)?,
                })
            })
            .map_err(PortError::sqlite)?;
        rows.collect::<Result<_, _>>().map_err(PortError::sqlite)
    }

    /// Every incident, in key order.
    pub fn list(&self) -> PortResult<Vec<Incident>> {
        let conn = self.pool.lock();
        let mut stmt = conn
            .prepare_cached("SELECT body, version FROM incidents ORDER BY key")
            .map_err(PortError::sqlite)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(PortError::sqlite)?;
        rows.map(|row| {
            let (body, version) = row.map_err(PortError::sqlite)?;
            decode_incident(&body, version)
        })
        .collect()
    }

    /// A PUT of the whole incident, checked against the etag in the body as ARM does.
    fn put_incident(&self, id: &IncidentId, incident: &Incident) -> PortResult<()> {
        let conn = self.pool.lock();
        let current: Option<i64> = conn
            .query_row(
                "SELECT version FROM incidents WHERE key = ?1",
                [id.key()],
                |r| r.get(0),
            )
            .optional()
            .map_err(PortError::sqlite)?;
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
        stored
            .properties
            .other
            .insert("lastModifiedTimeUtc".into(), Value::String(now_rfc3339()));
        let body =
            serde_json::to_string(&stored).map_err(|e| PortError::Permanent(e.to_string()))?;
        conn.execute(
            "UPDATE incidents SET body = ?2, version = version + 1 WHERE key = ?1",
            rusqlite::params![id.key(), body],
        )
        .map_err(PortError::sqlite)?;
        Ok(())
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn futures_lite_get(store: &SqliteIncidentStore, id: &IncidentId) -> PortResult<Incident> {
    let conn = store.pool.lock();
    let row: Option<(String, i64)> = conn
        .query_row(
            "SELECT body, version FROM incidents WHERE key = ?1",
            [id.key()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(PortError::sqlite)?;
    let (body, version) = row.ok_or_else(|| PortError::NotFound(id.to_string()))?;
    decode_incident(&body, version)
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
        futures_lite_get(self, id)
    }

    async fn entities(&self, id: &IncidentId) -> PortResult<Vec<Entity>> {
        self.listed(
            "SELECT body FROM entities WHERE key = ?1 ORDER BY position",
            id,
            "entity",
        )
    }

    async fn alerts(&self, id: &IncidentId) -> PortResult<Vec<Value>> {
        self.listed(
            "SELECT body FROM alerts WHERE key = ?1 ORDER BY position",
            id,
            "alert",
        )
    }

    async fn update(&self, id: &IncidentId, incident: &Incident) -> PortResult<()> {
        if incident.etag.is_none() {
            return Err(PortError::Permanent(
                "an update must carry the etag it read".into(),
            ));
        }
        self.put_incident(id, incident)
    }

    async fn list_modified_since(
        &self,
        workspace: &WorkspaceRef,
        since: chrono::DateTime<chrono::Utc>,
        max: usize,
    ) -> PortResult<Vec<Incident>> {
        let prefix = workspace
            .incident("00000000-0000-0000-0000-000000000000")
            .map_err(|e| PortError::Permanent(format!("workspace: {e}")))?
            .key();
        let prefix = prefix.trim_end_matches("00000000-0000-0000-0000-000000000000");
        let mut out = Vec::new();
        for incident in self.list()? {
            if !incident.id.to_ascii_lowercase().starts_with(prefix) {
                continue;
            }
            let time = |field: &str| {
                incident
                    .properties
                    .other
                    .get(field)
                    .and_then(Value::as_str)
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&chrono::Utc))
            };
            let newest = time("lastModifiedTimeUtc").max(time("createdTimeUtc"));
            if newest.is_none_or(|t| t >= since) {
                out.push(incident);
            }
            if out.len() >= max {
                break;
            }
        }
        Ok(out)
    }

    async fn put_comment(
        &self,
        id: &IncidentId,
        comment_id: &str,
        message: &str,
    ) -> PortResult<()> {
        let conn = self.pool.lock();
        let exists: bool = conn
            .query_row("SELECT 1 FROM incidents WHERE key = ?1", [id.key()], |_| {
                Ok(true)
            })
            .optional()
            .map_err(PortError::sqlite)?
            .unwrap_or(false);
        if !exists {
            return Err(PortError::NotFound(id.to_string()));
        }
        conn.execute(
            "INSERT INTO comments (key, comment_id, message) VALUES (?1, ?2, ?3)
             ON CONFLICT (key, comment_id) DO UPDATE SET message = excluded.message",
            rusqlite::params![id.key(), comment_id, message],
        )
        .map_err(PortError::sqlite)?;
        Ok(())
    }
}
