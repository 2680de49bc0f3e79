//! Helpers shared by the handler (`socwire`) and the local host (`socwire-host`), so that
//! neither depends on the other for them. Pure functions, no dependencies.

pub mod text;
