//! Helpers shared by integration tests.
// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

pub mod arm;
pub mod context;
pub mod fault_server;
pub mod tokens;
