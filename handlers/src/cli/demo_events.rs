//! `socwire demo-events`: demo incidents and their incident-created events.

use socwire::local::SqliteIncidentStore;
use std::path::Path;

/// Seeds `count` demo incidents into the local Sentinel store under `data_dir` and prints their
/// incident-created events as one Event Grid array on stdout.
pub fn run(data_dir: &Path, count: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    let store = SqliteIncidentStore::open(&data_dir.join("sentinel.sqlite3"))?;
    let events = socwire::demo::seed(&store, count)?;
    println!("{}", serde_json::to_string_pretty(&events)?);
    eprintln!(
        "seeded {count} incident(s) in {}",
        data_dir.join("sentinel.sqlite3").display()
    );
    Ok(())
}
