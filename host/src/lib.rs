//! The local stand-in for the Azure Functions host (`socwire up`): reads host.json and
//! function.json files, starts the custom handler as the real host does, and feeds it from
//! embedded, durable SQLite brokers with the host's delivery rules.
#![warn(missing_docs)]
// No function over 100 lines of code outside tests (decision 0017).
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

pub mod brokers;
pub mod config;
pub mod envelope;
pub mod runtime;
pub mod stats;
pub mod worker;

pub use runtime::{parse_schedule, Host, UpOptions};
pub use stats::Summary;
