//! Helpers shared by the handler (`socwire`) and the local host (`socwire-host`), so that
//! neither depends on the other for them: log-safe text and secret redaction ([`text`]) and an
//! HTTP listener with connection and time bounds (`listener`, the default feature of the same
//! name).
#![warn(missing_docs)]
// No function over 100 lines of code outside tests (decision 0017).
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

pub mod fs;
#[cfg(feature = "listener")]
pub mod listener;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod text;
