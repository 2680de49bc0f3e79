//! The local stand-in for the Azure Functions host (`socwire up`): reads host.json and
//! function.json files, starts the custom handler as the real host does, and feeds it from
//! embedded, durable SQLite brokers with the host's delivery rules.
#![warn(missing_docs)]

pub mod brokers;
pub mod config;
pub mod envelope;
pub mod runtime;
pub mod stats;
pub mod worker;

pub use runtime::{parse_schedule, Host, UpOptions};
pub use stats::Summary;
