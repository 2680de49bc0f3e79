//! The `socwire` commands, one file each (as cargo's `src/bin/cargo/commands/`): the clap
//! arguments and a thin run that calls the library. Only the binary uses them.

pub mod alerts;
pub mod demo_events;
pub mod dlq;
pub mod ml;
pub mod package;
pub mod send;
pub mod sentinel;
pub mod status;
pub mod up;

use clap::Args;
use socwire_host::brokers::{Brokers, SystemClock};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `--data-dir`, for the commands that read or write the local host's state.
#[derive(Args, Debug)]
pub struct DataDir {
    /// Where the local host keeps its state.
    #[arg(
        long,
        global = true,
        default_value = ".socwire",
        env = "SOCWIRE_DATA_DIR"
    )]
    pub data_dir: PathBuf,
}

/// The local host's brokers under `data_dir` (created private when missing).
fn open_brokers(data_dir: &Path) -> anyhow::Result<Brokers> {
    socwire_common::fs::private_dir(data_dir)?;
    Ok(Brokers::open(data_dir, Arc::new(SystemClock))?)
}
