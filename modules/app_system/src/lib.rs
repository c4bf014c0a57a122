//! app_system: `System(command)`, `TrySystem(command)` and the `SHELL(command)` function, as
//! Asterisk's app_system and func_shell — **off by default**. A dialplan that runs shell
//! commands is a door to the host for anyone who can put text into a variable (a caller ID, a
//! SIP header), so they only work once `app_system.conf` says `[general]` `enabled = yes`.
//! Disabled, they log why and fail (`SYSTEMSTATUS=FAILURE`, SHELL reads as an error).

use std::sync::atomic::{AtomicBool, Ordering};

use starling_core::apps::{App, AppFuture, AppResult, Function};
use starling_core::channel::Channel;
use starling_core::config::ConfigErrors;
use starling_core::{tokio, tracing, LoadError, Module, ModuleContext, ReloadError};

const CONFIG: &str = "app_system.conf";

/// Whether app_system.conf enables the commands (read at load and reload).
static ENABLED: AtomicBool = AtomicBool::new(false);

fn read_config(ctx: &ModuleContext) -> Result<bool, ConfigErrors> {
    if !ctx.config_dir().join(CONFIG).exists() {
        return Ok(false);
    }
    let config = ctx.load_config(CONFIG)?;
    match config.section("general").and_then(|s| s.get("enabled")) {
        Some(var) => Ok(var.parse_bool()?),
        None => Ok(false),
    }
}

fn disabled(what: &str) -> String {
    format!("{what} is disabled: set enabled = yes in [general] of {CONFIG} to allow shell commands")
}

/// Runs `command` with `/bin/sh -c`: SUCCESS (exit 0), APPERROR (another exit), FAILURE (not run).
async fn run(chan: &mut Channel, command: &str, app: &str) -> &'static str {
    if !ENABLED.load(Ordering::Relaxed) {
        tracing::warn!("{} on {}", disabled(app), chan.name());
        return "FAILURE";
    }
    if command.trim().is_empty() {
        tracing::warn!("{app} requires an argument (command)");
        return "FAILURE";
    }
    match tokio::process::Command::new("/bin/sh").arg("-c").arg(command).kill_on_drop(true).status().await {
        Ok(status) if status.success() => "SUCCESS",
        Ok(status) => {
            tracing::warn!("{app}: '{command}' exited with {status}");
            "APPERROR"
        }
        Err(e) => {
            tracing::warn!("{app}: unable to execute '{command}': {e}");
            "FAILURE"
        }
    }
}

/// `System(command)`: hangs up when the command could not be run, as Asterisk's does.
fn system<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move {
        let status = run(chan, data, "System").await;
        chan.set_var("SYSTEMSTATUS", status);
        if status == "FAILURE" {
            AppResult::Hangup
        } else {
            AppResult::Continue
        }
    })
}

/// `TrySystem(command)`: the same, but the dialplan always goes on.
fn try_system<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move {
        let status = run(chan, data, "TrySystem").await;
        chan.set_var("SYSTEMSTATUS", status);
        AppResult::Continue
    })
}

/// `${SHELL(command)}`: the command's standard output.
fn shell(_chan: &mut Channel, command: &str) -> Result<String, String> {
    if !ENABLED.load(Ordering::Relaxed) {
        return Err(disabled("SHELL()"));
    }
    // Functions are synchronous: let the runtime move other tasks off this worker meanwhile.
    let output = tokio::task::block_in_place(|| std::process::Command::new("/bin/sh").arg("-c").arg(command).output())
        .map_err(|e| format!("SHELL: unable to execute '{command}': {e}"))?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

struct AppSystem(#[allow(dead_code)] Vec<Box<dyn std::any::Any + Send + Sync>>);

impl Module for AppSystem {
    fn reload(&mut self, ctx: &ModuleContext) -> Result<(), ReloadError> {
        ENABLED.store(read_config(ctx)?, Ordering::Relaxed);
        Ok(())
    }
}

fn load(ctx: &ModuleContext) -> Result<Box<dyn Module>, LoadError> {
    ENABLED.store(read_config(ctx)?, Ordering::Relaxed);
    let registrations: Vec<Box<dyn std::any::Any + Send + Sync>> = vec![
        Box::new(ctx.register_app(App {
            name: "System",
            synopsis: "Execute a system command.",
            description: "System(command): runs the command with /bin/sh; SYSTEMSTATUS is SUCCESS, APPERROR or FAILURE (then the channel hangs up). Disabled unless app_system.conf has enabled = yes.",
            exec: system,
            uses: None,
        })?),
        Box::new(ctx.register_app(App {
            name: "TrySystem",
            synopsis: "Try executing a system command.",
            description: "TrySystem(command): as System, but the dialplan always goes on.",
            exec: try_system,
            uses: None,
        })?),
        Box::new(ctx.register_function(Function {
            name: "SHELL",
            synopsis: "Executes a command using the system shell and captures its output.",
            syntax: "SHELL(command)",
            read: Some(shell),
            write: None,
            escalation: starling_core::apps::Escalation::Read,
            uses: None,
        })?),
    ];
    Ok(Box::new(AppSystem(registrations)))
}

starling_core::module! {
    description: "Generic System() application",
    support_level: Core,
    load: load,
}
