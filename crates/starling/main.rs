//! `starling`: the PBX binary. It reads the flags and `starling.conf`, and either starts the
//! server (step 1 of ARCHITECTURE.md's call flow: one runtime, the core, the modules of
//! `modules.conf`, the control socket) or connects to a running one as a remote console.
//!
//! Exit codes (INTERFACE.md): 0 a clean stop; 1 a configuration error, naming `file:line`;
//! 2 a socket that cannot be bound or a directory or socket that cannot be opened, naming it.
//! They are decided in one place, [`main`], from the error [`run`] returns — except 70, a
//! panic in a part Starling cannot serve without, which [`starling_core::panic`] exits with.

mod console;
mod control;
mod privileges;
mod server;
mod settings;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgAction, Parser};

/// The flags, as Asterisk's.
#[derive(Parser, Debug)]
#[command(name = "starling", about = "Starling PBX", disable_version_flag = true)]
pub struct Flags {
    /// Use this starling.conf.
    #[arg(short = 'C', value_name = "FILE", default_value = "/etc/starling/starling.conf")]
    pub config: PathBuf,
    /// Stay in the foreground and log to standard error.
    #[arg(short = 'f')]
    pub foreground: bool,
    /// Start an interactive console (implies -f).
    #[arg(short = 'c')]
    pub console: bool,
    /// Connect to a running Starling as a remote console.
    #[arg(short = 'r')]
    pub remote: bool,
    /// Like -r (Asterisk's reconnecting remote console).
    #[arg(short = 'R')]
    pub remote_reconnect: bool,
    /// Run one CLI command on a running Starling and print its output (implies -r).
    #[arg(short = 'x', value_name = "COMMAND")]
    pub execute: Option<String>,
    /// More verbose (repeat for more).
    #[arg(short = 'v', action = ArgAction::Count)]
    pub verbose: u8,
    /// More debug output (repeat for more).
    #[arg(short = 'd', action = ArgAction::Count)]
    pub debug: u8,
    /// Print the version and exit.
    #[arg(short = 'V')]
    pub version: bool,
    /// Quiet: no verbose output on the console.
    #[arg(short = 'q')]
    pub quiet: bool,
    /// Accepted for Asterisk compatibility (no colours are used anyway).
    #[arg(short = 'n', hide = true)]
    pub no_color: bool,
    /// Accepted for Asterisk compatibility (core dumps follow the system's settings).
    #[arg(short = 'g', hide = true)]
    pub dump_core: bool,
}

/// A failure that ends the process with a given code.
#[derive(Debug)]
pub struct Fatal {
    pub code: u8,
    pub message: String,
}

impl Fatal {
    /// Exit code 1: a configuration error.
    pub fn config(message: impl std::fmt::Display) -> Fatal {
        Fatal { code: 1, message: message.to_string() }
    }
    /// Exit code 2: a socket, file or directory that cannot be bound or opened.
    pub fn resource(message: impl std::fmt::Display) -> Fatal {
        Fatal { code: 2, message: message.to_string() }
    }
}

impl std::fmt::Display for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Fatal {}

fn run(flags: Flags) -> anyhow::Result<()> {
    if flags.version {
        println!("Starling {}", starling_core::VERSION);
        return Ok(());
    }
    if flags.remote || flags.remote_reconnect || flags.execute.is_some() {
        return Ok(server::remote(&flags)?);
    }
    Ok(server::start(&flags)?)
}

fn main() -> ExitCode {
    // Every panic is logged through the logger; one in a part Starling cannot serve without
    // ends the process with code 70 (starling_core::panic).
    starling_core::panic::install_hook();
    let flags = Flags::parse();
    match run(flags) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let code = err.chain().find_map(|e| e.downcast_ref::<Fatal>()).map_or(1, |f| f.code);
            eprintln!("starling: {err:#}");
            ExitCode::from(code)
        }
    }
}
