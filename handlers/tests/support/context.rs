//! A [`Context`] of real local ports in a test's temporary folder, for tests that change
//! only the ports they exercise (`Context { threat_intel, ..local(dir) }`).

use socwire::context::Context;
use socwire::local::{
    FileReportStore, LocalCommandBus, LocalMlOptions, LocalWorkspace, OfflineThreatIntel,
    SqliteIncidentStore, SqliteLedger, SqliteTables, SqliteWorkspace,
};
use std::path::Path;
use std::sync::Arc;

/// Local Sentinel, workspace, ledger, reports, tables and ML back end under `dir`, an empty
/// threat-intelligence list and default settings.
pub fn local(dir: &Path) -> Context {
    let tables = Arc::new(SqliteTables::open(&dir.join("tables.sqlite3")).unwrap());
    Context {
        incidents: Arc::new(SqliteIncidentStore::open(&dir.join("sentinel.sqlite3")).unwrap()),
        workspace: Arc::new(SqliteWorkspace::open(&dir.join("workspace.sqlite3")).unwrap()),
        threat_intel: Arc::new(OfflineThreatIntel::from_json("[]").unwrap()),
        ledger: Arc::new(SqliteLedger::open(&dir.join("ledger.sqlite3")).unwrap()),
        reports: Arc::new(FileReportStore::new(
            dir.join("reports"),
            "http://127.0.0.1:7071/reports",
        )),
        state: tables.clone(),
        logs: tables,
        alert_engine: Arc::default(),
        ml: Arc::new(
            LocalWorkspace::open(
                dir,
                LocalMlOptions {
                    provision_ms: 0,
                    max_nodes_quota: 8,
                    runner: None,
                },
            )
            .unwrap(),
        ),
        commands: Arc::new(LocalCommandBus::open(dir, "ml-commands").unwrap()),
        assets: Arc::new(socwire::azure::AllowListedFetcher::new(vec![], vec![])),
        settings: Arc::new(socwire::settings::Settings::from_lookup(|_| None).unwrap()),
        adapters: vec![],
    }
}
