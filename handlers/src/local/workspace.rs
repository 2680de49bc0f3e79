//! The local Log Analytics workspace: the rows triage asks about (alerts, sign-ins, processes,
//! network sightings, threat indicators) in SQLite, filled by `socwire sentinel import` and the
//! demo, answering the same typed [`Question`]s the Azure adapter renders as KQL.

use super::SqlitePool;
use crate::ports::{Answer, PortError, PortResult, Question, WorkspaceQueries};
use crate::sentinel::HostRef;
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

impl LogRow {
    /// A workspace row from a `logs` entry: the table's usual columns name the host, account, IP
    /// and domain.
    pub fn from_log_entry(entry: &Map<String, Value>) -> Option<LogRow> {
        let table = entry.get("table").and_then(Value::as_str)?.to_string();
        let pick = |cols: &[&str]| cols.iter().find_map(|c| lower_text(entry.get(*c)));
        let mut body = entry.clone();
        body.remove("table");
        Some(LogRow {
            host: pick(&["DeviceName", "Computer", "HostName", "CompromisedEntity"]),
            account: pick(&["UserPrincipalName", "AccountName", "AccountUpn"]),
            ip: pick(&["IPAddress", "RemoteIP", "SourceIP", "DestinationIP"]),
            domain: pick(&["Name", "DomainName"]).or_else(|| {
                entry
                    .get("RemoteUrl")
                    .and_then(Value::as_str)
                    .and_then(|u| {
                        url::Url::parse(u)
                            .ok()
                            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
                    })
            }),
            time_ms: time_generated_ms(entry.get("TimeGenerated")),
            table,
            body,
        })
    }
}

/// `TimeGenerated` in ms since the epoch (now when absent or not RFC 3339).
pub fn time_generated_ms(v: Option<&Value>) -> i64 {
    v.and_then(Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_millis())
        .unwrap_or_else(|| chrono::Utc::now().timestamp_millis())
}

/// A text value trimmed and lower-cased; `None` when absent or empty.
pub fn lower_text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
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
        let tx = conn.transaction().map_err(PortError::sqlite)?;
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
            .map_err(PortError::sqlite)?;
        }
        tx.commit().map_err(PortError::sqlite)
    }

    /// Adds (or replaces) an entry of the local threat-intelligence table (rows in the shape
    /// of `ThreatIntelIndicators`, or of the legacy `ThreatIntelligenceIndicator`).
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
            .map_err(PortError::sqlite)
    }

    fn bodies(
        &self,
        sql: &str,
        params: &[&dyn rusqlite::ToSql],
    ) -> PortResult<Vec<Map<String, Value>>> {
        let conn = self.pool.lock();
        let mut stmt = conn.prepare_cached(sql).map_err(PortError::sqlite)?;
        let rows = stmt
            .query_map(params, |r| r.get::<_, String>(0))
            .map_err(PortError::sqlite)?;
        rows.map(|r| {
            let text = r.map_err(PortError::sqlite)?;
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

/// SQL matching the `host` column to a host as the KQL does: FQDN, name, or a name prefix.
const HOST_SQL: &str = "(host = ?1 OR host = ?2 OR substr(host, 1, length(?2) + 1) = ?2 || '.')";

fn host_params(host: &HostRef) -> (String, String) {
    (
        host.fqdn.clone().unwrap_or_default().to_ascii_lowercase(),
        host.name.to_ascii_lowercase(),
    )
}

impl SqliteWorkspace {
    /// Sign-ins of an account (Entra ID sign-ins, Windows logons 4624/4625): total, failures
    /// and the last one, in one row.
    fn signins(
        &self,
        account: &crate::sentinel::AccountRef,
        days: u32,
    ) -> PortResult<Vec<Map<String, Value>>> {
        let conn = self.pool.lock();
        // `ResultType` is a string in SigninLogs ("0" is success) but rows imported by
        // hand may hold the number 0: compared as text, both read as success.
        let (total, failures, last): (i64, i64, Option<i64>) = conn
                .prepare_cached(
                    "SELECT COUNT(*),
                            COALESCE(SUM(CASE WHEN table_name = 'SigninLogs'
                                              THEN CAST(COALESCE(json_extract(body, '$.ResultType'), 0) AS TEXT) != '0'
                                              ELSE CAST(json_extract(body, '$.EventID') AS TEXT) = '4625' END), 0),
                            MAX(time_ms)
                     FROM la_rows
                     WHERE time_ms > ?1 AND (
                           (table_name = 'SigninLogs' AND ((?2 IS NOT NULL AND account = ?2)
                              OR (?3 IS NOT NULL AND lower(json_extract(body, '$.UserId')) = ?3)))
                        OR (table_name = 'SecurityEvent' AND CAST(json_extract(body, '$.EventID') AS TEXT) IN ('4624', '4625') AND (
                              (?4 IS NOT NULL AND upper(json_extract(body, '$.TargetUserSid')) = ?4)
                           OR (?5 IS NOT NULL AND ?6 IS NOT NULL AND lower(json_extract(body, '$.TargetUserName')) = ?5
                               AND lower(json_extract(body, '$.TargetDomainName')) = ?6))))",
                )
                .and_then(|mut stmt| stmt.query_row(
                    rusqlite::params![
                        since_ms(days),
                        account.upn.as_deref().map(str::to_ascii_lowercase),
                        account.object_id.as_deref().map(str::to_ascii_lowercase),
                        account.sid.as_deref().map(str::to_ascii_uppercase),
                        account.name.as_deref().map(str::to_ascii_lowercase),
                        account.domain.as_deref().map(str::to_ascii_lowercase),
                    ],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                ))
                .map_err(PortError::sqlite)?;
        Ok(vec![object(json!({
            "Total": total, "Failures": failures,
            "Last": last.map(rfc3339).unwrap_or(Value::Null)
        }))])
    }

    /// When an address or domain (`column`) was first seen, and how often, in one row.
    fn first_seen(
        &self,
        column: &str,
        value: &str,
        days: u32,
    ) -> PortResult<Vec<Map<String, Value>>> {
        let conn = self.pool.lock();
        let (first, count): (Option<i64>, i64) = conn
            .prepare_cached(&format!(
                "SELECT MIN(time_ms), COUNT(*) FROM la_rows WHERE {column} = ?1 AND time_ms > ?2"
            ))
            .and_then(|mut stmt| {
                stmt.query_row(
                    rusqlite::params![value.to_ascii_lowercase(), since_ms(days)],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
            })
            .map_err(PortError::sqlite)?;
        Ok(vec![object(json!({
            "FirstSeen": first.map(rfc3339).unwrap_or(Value::Null), "Count": count
        }))])
    }
}

#[async_trait]
impl WorkspaceQueries for SqliteWorkspace {
    async fn ask(&self, question: &Question) -> PortResult<Answer> {
        let limit = (crate::queries::MAX_ROWS + 1) as i64;
        let mut rows = match question {
            Question::RecentAlertsForHost { host, days } => {
                let (fqdn, name) = host_params(host);
                self.bodies(
                    &format!("SELECT body FROM la_rows WHERE table_name = 'SecurityAlert' AND {HOST_SQL} AND time_ms > ?3 ORDER BY time_ms DESC LIMIT ?4"),
                    &[&fqdn, &name, &since_ms(*days), &limit],
                )?
            }
            Question::ProcessesOnHost { host, days } => {
                let (fqdn, name) = host_params(host);
                // Defender's DeviceProcessEvents, and Windows' SecurityEvent 4688 (file name
                // taken from NewProcessName) where Defender is not deployed.
                self.bodies(
                    &format!("SELECT json_object('FileName', file, 'ProcessCommandLine', cmd, 'Source', source, 'Count', COUNT(*)) FROM (
                         SELECT json_extract(body, '$.FileName') AS file, json_extract(body, '$.ProcessCommandLine') AS cmd, 'DeviceProcessEvents' AS source
                           FROM la_rows WHERE table_name = 'DeviceProcessEvents' AND {HOST_SQL} AND time_ms > ?3
                         UNION ALL
                         SELECT replace(json_extract(body, '$.NewProcessName'), rtrim(json_extract(body, '$.NewProcessName'), replace(json_extract(body, '$.NewProcessName'), '\\', '')), ''),
                                json_extract(body, '$.CommandLine'), 'SecurityEvent 4688'
                           FROM la_rows WHERE table_name = 'SecurityEvent' AND CAST(json_extract(body, '$.EventID') AS TEXT) = '4688' AND {HOST_SQL} AND time_ms > ?3)
                       GROUP BY file, cmd, source ORDER BY COUNT(*) DESC LIMIT ?4"),
                    &[&fqdn, &name, &since_ms(*days), &limit],
                )?
            }
            Question::SigninsForAccount { account, days } => self.signins(account, *days)?,
            Question::FirstSeenIp { ip: value, days }
            | Question::FirstSeenDomain {
                domain: value,
                days,
            } => {
                let column = if matches!(question, Question::FirstSeenIp { .. }) {
                    "ip"
                } else {
                    "domain"
                };
                self.first_seen(column, value, *days)?
            }
            Question::ThreatIndicator { indicator, .. } => self.bodies(
                "SELECT body FROM la_ti WHERE kind = ?1 AND value = ?2 LIMIT ?3",
                &[
                    &indicator.kind,
                    &indicator.value.to_ascii_lowercase(),
                    &limit,
                ],
            )?,
        };
        let truncated = rows.len() > crate::queries::MAX_ROWS;
        rows.truncate(crate::queries::MAX_ROWS);
        Ok(Answer {
            query: crate::queries::render(question),
            rows,
            truncated,
            warnings: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sentinel::AccountRef;

    fn row(table: &str, host: Option<&str>, account: Option<&str>, body: Value) -> LogRow {
        LogRow {
            table: table.into(),
            host: host.map(str::to_string),
            account: account.map(str::to_string),
            time_ms: chrono::Utc::now().timestamp_millis() - 60_000,
            body: object(body),
            ..Default::default()
        }
    }

    async fn signins(ws: &SqliteWorkspace, account: AccountRef) -> (i64, i64) {
        let a = ws
            .ask(&Question::SigninsForAccount { account, days: 2 })
            .await
            .unwrap();
        let n = |c: &str| a.rows[0][c].as_i64().unwrap();
        (n("Total"), n("Failures"))
    }

    #[tokio::test]
    async fn numeric_result_types_accounts_and_hosts_match_as_tables_store_them() {
        let dir = tempfile::tempdir().unwrap();
        let ws = SqliteWorkspace::open(&dir.path().join("w.sqlite3")).unwrap();
        let mut rows = Vec::new();
        // Twelve successful sign-ins, ResultType as the number 0 (and one text "0").
        for i in 0..12 {
            rows.push(row(
                "SigninLogs",
                None,
                Some("j.doe@corp.example"),
                json!({"n": i, "ResultType": 0, "UserId": "F7033626-AAAA-BBBB-CCCC-06646F4F95B3"}),
            ));
        }
        rows.push(row(
            "SigninLogs",
            None,
            Some("j.doe@corp.example"),
            json!({"n": 99, "ResultType": "0"}),
        ));
        rows.push(row(
            "SigninLogs",
            None,
            Some("j.doe@corp.example"),
            json!({"n": 100, "ResultType": "50126"}),
        ));
        // Windows logons: by SID, and by name with domain.
        rows.push(row("SecurityEvent", Some("vm1.contoso.com"), None, json!({"EventID": 4625, "TargetUserSid": "S-1-5-21-1-2-3-500", "TargetUserName": "administrator", "TargetDomainName": "CONTOSO"})));
        rows.push(row("SecurityEvent", Some("vm1.contoso.com"), None, json!({"EventID": 4624, "TargetUserSid": "S-1-5-21-1-2-3-500", "TargetUserName": "administrator", "TargetDomainName": "CONTOSO"})));
        rows.push(row("SecurityEvent", Some("vm2.contoso.com"), None, json!({"EventID": 4624, "TargetUserName": "administrator", "TargetDomainName": "FABRIKAM"})));
        // A process seen only by Windows (4688), on a host stored by its FQDN.
        rows.push(row("SecurityEvent", Some("vm1.contoso.com"), None, json!({"EventID": 4688, "NewProcessName": "C:\\Windows\\System32\\cmd.exe", "CommandLine": "cmd /c whoami"})));
        rows.push(row(
            "SecurityAlert",
            Some("vm1.contoso.com"),
            None,
            json!({"AlertName": "x"}),
        ));
        ws.add_rows(&rows).unwrap();

        let upn = AccountRef {
            upn: Some("j.doe@corp.example".into()),
            ..Default::default()
        };
        assert_eq!(signins(&ws, upn).await, (14, 1), "numeric 0 is a success");
        let oid = AccountRef {
            object_id: Some("f7033626-aaaa-bbbb-cccc-06646f4f95b3".into()),
            ..Default::default()
        };
        assert_eq!(signins(&ws, oid).await, (12, 0));
        let sid = AccountRef {
            sid: Some("S-1-5-21-1-2-3-500".into()),
            ..Default::default()
        };
        assert_eq!(signins(&ws, sid).await, (2, 1));
        let named = AccountRef {
            name: Some("administrator".into()),
            domain: Some("contoso".into()),
            ..Default::default()
        };
        assert_eq!(
            signins(&ws, named).await,
            (2, 1),
            "not FABRIKAM\\administrator"
        );

        // A Host entity without dnsDomain still finds rows stored under the FQDN.
        let host = HostRef {
            name: "vm1".into(),
            fqdn: None,
        };
        let p = ws
            .ask(&Question::ProcessesOnHost {
                host: host.clone(),
                days: 2,
            })
            .await
            .unwrap();
        assert_eq!(p.rows.len(), 1, "{p:?}");
        assert_eq!(p.rows[0]["FileName"], "cmd.exe");
        assert_eq!(p.rows[0]["Source"], "SecurityEvent 4688");
        let a = ws
            .ask(&Question::RecentAlertsForHost { host, days: 7 })
            .await
            .unwrap();
        assert_eq!(a.rows.len(), 1);
        let other = HostRef {
            name: "vm".into(),
            fqdn: None,
        };
        let none = ws
            .ask(&Question::RecentAlertsForHost {
                host: other,
                days: 7,
            })
            .await
            .unwrap();
        assert!(none.rows.is_empty(), "a prefix is a whole label");
    }
}
