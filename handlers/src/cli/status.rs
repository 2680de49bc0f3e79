//! `socwire status`: message counts per queue, subscription, hub and topic.

use super::open_brokers;
use std::path::Path;

/// Prints broker counts.
pub fn run(data_dir: &Path, json: bool) -> anyhow::Result<()> {
    let brokers = open_brokers(data_dir)?;
    let status = brokers.status()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{status}");
    }
    Ok(())
}
