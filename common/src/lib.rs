//! Helpers shared by the handler (`socwire`) and the local host (`socwire-host`), so that
//! neither depends on the other for them: log-safe text and secret redaction ([`text`]) and an
//! HTTP listener with connection and time bounds (`listener`, the default feature of the same
//! name).
#![warn(missing_docs)]

pub mod fs;
#[cfg(feature = "listener")]
pub mod listener;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod text;
