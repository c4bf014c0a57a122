//! The Starling core: what every part of the PBX shares at run time.
//!
//! It holds the registries modules add to (CLI commands, channels; technologies,
//! applications and functions as their issues land), the module loader, the Asterisk
//! `.conf` parser, logging, and the one copy of `tokio` and `tracing` that the binary and
//! every module use. It is built as a Rust `dylib` so that there is exactly one copy of it
//! in a process (ARCHITECTURE.md, "The module boundary"): modules write
//! `starling_core::tokio` and `starling_core::tracing`, never their own.
//!
//! Step 1 of the call flow ("Start") happens here: the binary builds a [`Core`], the
//! [`loader`] loads each module from `modules.conf`, and each module's `load` registers
//! what it brings through its [`ModuleContext`].

pub use chrono;
pub use tokio;
pub use tracing;
pub use tracing_subscriber;

include!(concat!(env!("OUT_DIR"), "/build_id.rs"));

/// The version printed by `core show version` and `-V`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub mod acl;
pub mod apps;
pub mod bridge;
pub mod builtins;
pub mod cdr;
pub mod channel;
pub mod cli;
mod cli_core;
pub mod config;
pub mod core;
pub mod db;
pub mod devicestate;
pub mod events;
pub mod frame;
pub mod hints;
pub mod loader;
pub mod local;
pub mod logger;
pub mod manager;
pub mod module;
pub mod moh;
pub mod mwi;
pub mod originate;
pub mod panic;
pub mod pickup;
pub mod security;
pub mod tech;

pub use crate::core::{ControlSocket, Core, Extent, Group, Pbx, Settings, ShutdownMode, User};
pub use crate::module::{LoadError, Module, ModuleContext, ModuleInfo, ReloadError, SupportLevel};
