//! The local Log Analytics workspace: the rows triage asks about (alerts, sign-ins, processes,
//! network sightings, threat indicators) in SQLite, filled by `socwire sentinel import` and the
//! demo, answering the same typed [`Question`]s the Azure adapter renders as KQL.

use super::{sqlite_error, SqlitePool};
use crate::ports::{Answer, PortError, PortResult, Question, WorkspaceQueries};
use async_trait::async_trait;
use serde_json::{json, Map, Value};
use std::path::Path;

/// One row of a local workspace table, with the columns questions filter on pulled out.
#[derive(Debug, Clone, Default)]
pub struct LogRow {
    /// KQL table name (`SecurityAlert`, `SigninLogs`, `DeviceProcessEvents`, `DnsEvents`, …).
    pub table: String,
    /// Host the row is about (lower case).
    pub host: Option<String>,
    /// Account the row is about (lower case).
    pub account: Option<String>,
    /// IP address in the row.
    pub ip: Option<String>,
    /// Domain in the row (lower case).
    pub domain: Option<String>,
    /// `TimeGenerated`, ms since the epoch.
    pub time_ms: i64,
    /// The row's columns as the KQL table would return them.
    pub body: Map<String, Value>,
}

/// SQLite stand-in for a Log Analytics workspace.
pub struct SqliteWorkspace {
    pool: SqlitePool,
}

impl SqliteWorkspace {
    /// Opens (or creates) the workspace at `path`.
    pub fn open(path: &Path) -> PortResult<Self> {
        let pool = SqlitePool::open(
            path,
            "CREATE TABLE IF NOT EXISTS la_rows (
                 row_key TEXT PRIMARY KEY,
                 table_name TEXT NOT NULL,
                 host TEXT, account TEXT, ip TEXT, domain TEXT,
                 time_ms INTEGER NOT NULL,
                 body TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS la_rows_host ON la_rows (table_name, host);
             CREATE INDEX IF NOT EXISTS la_rows_account ON la_rows (table_name, account);
             CREATE INDEX IF NOT EXISTS la_rows_ip ON la_rows (ip);
             CREATE INDEX IF NOT EXISTS la_rows_domain ON la_rows (domain);
             CREATE TABLE IF NOT EXISTS la_ti (
                 kind TEXT NOT NULL, value TEXT NOT NULL, body TEXT NOT NULL,
                 PRIMARY KEY (kind, value)
             );",
            // Triage asks many questions per incident, several incidents at once: readers run
            // side by side in WAL mode.
            4,
        )?;
        Ok(Self { pool })
    }

    /// Adds rows; a row with the same table, time and body is stored once.
    pub fn add_rows(&self, rows: &[LogRow]) -> PortResult<()> {
        let mut conn = self.pool.lock();
        let tx = conn.transaction().map_err(sqlite_error)?;
        for r in rows {
            let body = Value::Object(r.body.clone()).to_string();
            let key = crate::ids::stable_id(
                "la-row",
                &format!("{}\u{0}{}\u{0}{body}", r.table, r.time_ms),
            );
            tx.execute(
                "INSERT OR IGNORE INTO la_rows (row_key, table_name, host, account, ip, domain, time_ms, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                rusqlite::params![key, r.table, r.host, r.account, r.ip, r.domain, r.time_ms, body],
            )
            .map_err(sqlite_error)?;
        }
        tx.commit().map_err(sqlite_error)
    }

    /// Adds (or replaces) an entry of the local `ThreatIntelligenceIndicator` table.
    pub fn add_indicator(
        &self,
        kind: &str,
        value: &str,
        body: &Map<String, Value>,
    ) -> PortResult<()> {
        self.pool
            .lock()
            .execute(
                "INSERT OR REPLACE INTO la_ti (kind, value, body) VALUES (?1, ?2, ?3)",
                rusqlite::params![
                    kind,
                    value.to_ascii_lowercase(),
                    Value::Object(body.clone()).to_string()
                ],
            )
            .map(|_| ())
            .map_err(sqlite_error)
    }

    fn bodies(
        &self,
        sql: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> PortResult<Vec<Map<String, Value>>> {
        let conn = self.pool.lock();
        let mut stmt = conn.prepare_cached(sql).map_err(sqlite_error)?;
        let rows = stmt
            .query_map(params, |r| r.get::<_, String>(0))
            .map_err(sqlite_error)?;
        rows.map(|r| {
            let text = r.map_err(sqlite_error)?;
            match serde_json::from_str(&text) {
                Ok(Value::Object(m)) => Ok(m),
                _ => Err(PortError::Permanent(
                    "stored workspace row is corrupt".into(),
                )),
            }
        })
        .collect()
    }
}

fn since_ms(days: u32) -> i64 {
    chrono::Utc::now().timestamp_millis() - i64::from(days) * 86_400_000
}

fn rfc3339(ms: i64) -> Value {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| json!(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)))
        .unwrap_or(Value::Null)
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

#[async_trait]
impl WorkspaceQueries for SqliteWorkspace {
    async fn ask(&self, question: &Question) -> PortResult<Answer> {
        let limit = (crate::queries::MAX_ROWS + 1) as i64;
        let mut rows = match question {
            Question::RecentAlertsForHost { host, days } => self.bodies(
                "SELECT body FROM la_rows WHERE table_name = 'SecurityAlert' AND host = ?1 AND time_ms > ?2 ORDER BY time_ms DESC LIMIT ?3",
                &[&host.to_ascii_lowercase(), &since_ms(*days), &limit],
            )?,
            Question::ProcessesOnHost { host, days } => self.bodies(
                "SELECT json_object('FileName', json_extract(body, '$.FileName'), 'ProcessCommandLine', json_extract(body, '$.ProcessCommandLine'), 'Count', COUNT(*))
                 FROM la_rows WHERE table_name = 'DeviceProcessEvents' AND host = ?1 AND time_ms > ?2
                 GROUP BY json_extract(body, '$.FileName'), json_extract(body, '$.ProcessCommandLine') ORDER BY COUNT(*) DESC LIMIT ?3",
                &[&host.to_ascii_lowercase(), &since_ms(*days), &limit],
            )?,
            Question::SigninsForAccount { account, days } => {
                let conn = self.pool.lock();
                let (total, failures, last): (i64, i64, Option<i64>) = conn
                    .query_row(
                        "SELECT COUNT(*), COALESCE(SUM(COALESCE(json_extract(body, '$.ResultType'), '0') != '0'), 0), MAX(time_ms)
                         FROM la_rows WHERE table_name = 'SigninLogs' AND account = ?1 AND time_ms > ?2",
                        rusqlite::params![account.to_ascii_lowercase(), since_ms(*days)],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .map_err(sqlite_error)?;
                vec![object(json!({
                    "Total": total, "Failures": failures,
                    "Last": last.map(rfc3339).unwrap_or(Value::Null)
                }))]
            }
            Question::FirstSeenIp { ip: value, days } | Question::FirstSeenDomain { domain: value, days } => {
                let column = if matches!(question, Question::FirstSeenIp { .. }) { "ip" } else { "domain" };
                let conn = self.pool.lock();
                let (first, count): (Option<i64>, i64) = conn
                    .query_row(
                        &format!("SELECT MIN(time_ms), COUNT(*) FROM la_rows WHERE {column} = ?1 AND time_ms > ?2"),
                        rusqlite::params![value.to_ascii_lowercase(), since_ms(*days)],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .map_err(sqlite_error)?;
                vec![object(json!({
                    "FirstSeen": first.map(rfc3339).unwrap_or(Value::Null), "Count": count
                }))]
            }
            Question::ThreatIndicator { indicator } => self.bodies(
                "SELECT body FROM la_ti WHERE kind = ?1 AND value = ?2 LIMIT ?3",
                &[&indicator.kind, &indicator.value.to_ascii_lowercase(), &limit],
            )?,
        };
        let truncated = rows.len() > crate::queries::MAX_ROWS;
        rows.truncate(crate::queries::MAX_ROWS);
        Ok(Answer {
            query: crate::queries::render(question),
            rows,
            truncated,
        })
    }
}
