//! socwire: Azure Functions custom handlers for security operations and GPU ML work.
//!
//! Layers: [`protocol`] (the host's wire format), [`functions`] (one module per function),
//! [`ports`] with [`local`] and [`azure`] adapters, and [`serve`] (the HTTP server the host
//! starts). The local Functions host lives in the `socwire-host` crate.
#![warn(missing_docs)]
// No function over 100 lines of code outside tests (decision 0017).
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

pub mod azure;
pub mod console;
pub mod context;
pub mod demo;
pub mod functions;
pub mod ids;
pub mod ioc;
pub mod local;
pub mod ml;
pub mod package;
pub mod ports;
pub mod protocol;
pub mod providers;
pub mod queries;
pub mod sentinel;
pub mod serve;
pub mod settings;
