//! Helpers shared by the handler (`socwire`) and the local host (`socwire-host`), so that
//! neither depends on the other for them: log-safe text and secret redaction ([`text`]) and an
//! HTTP listener with connection and time bounds ([`listener`]).

pub mod fs;
pub mod listener;
pub mod text;
