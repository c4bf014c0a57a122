//! pbx_config: loads `extensions.conf` and makes it the dialplan every new channel runs
//! (step 2 of the call flow: "start the PBX on it in the context of the peer"). `dialplan
//! reload` is atomic: a file with an error keeps the dialplan in force and prints file:line.

use std::fmt::Write as _;
use std::sync::Arc;

use starling_core::cli::{CliCommand, CliRegistration, CliResult};
use starling_core::config::ConfigErrors;
use starling_core::{tracing, LoadError, Module, ModuleContext, ReloadError};
use starling_dialplan::extensions::Dialplan;
use starling_dialplan::pbx::{install, PbxRunner};

const CONFIG: &str = "extensions.conf";

fn read(ctx: &ModuleContext) -> Result<Dialplan, ConfigErrors> {
    let plan = Dialplan::from_config(&ctx.load_config(CONFIG)?)?;
    for (context, missing) in plan.dangling_includes() {
        tracing::warn!("Context '{context}' tries to include nonexistent context '{missing}'");
    }
    Ok(plan)
}

struct PbxConfig {
    core: Arc<starling_core::Core>,
    _cli: CliRegistration,
}

impl Module for PbxConfig {
    fn reload(&mut self, ctx: &ModuleContext) -> Result<(), ReloadError> {
        reload(ctx)?;
        Ok(())
    }
    fn unload(self: Box<Self>) {
        self.core.set_pbx(None);
    }
}

/// Parses the file again and swaps it in only if it is whole.
fn reload(ctx: &ModuleContext) -> Result<(), ConfigErrors> {
    let plan = read(ctx)?;
    runner(ctx).replace(plan);
    Ok(())
}

fn runner(ctx: &ModuleContext) -> Arc<PbxRunner> {
    RUNNER.get().cloned().unwrap_or_else(|| install(ctx.core(), Dialplan::default()))
}

/// The runner this module installed (one per process; reload replaces its dialplan).
static RUNNER: std::sync::OnceLock<Arc<PbxRunner>> = std::sync::OnceLock::new();

fn load(ctx: &ModuleContext) -> Result<Box<dyn Module>, LoadError> {
    if !ctx.config_dir().join(CONFIG).exists() {
        // As Asterisk's pbx_config: no file, no dialplan module.
        return Err(LoadError::Decline(format!("no {CONFIG} in {}", ctx.config_dir().display())));
    }
    let plan = read(ctx)?;
    match RUNNER.get() {
        Some(existing) => {
            existing.replace(plan);
            ctx.core().set_pbx(Some(existing.clone()));
        }
        None => {
            let _ = RUNNER.set(install(ctx.core(), plan));
        }
    }
    let reload_ctx = ctx.clone();
    let cli = ctx.register_cli(vec![
        CliCommand::new(
            "dialplan show",
            "Show dialplan",
            "Usage: dialplan show [[exten@]context]\n       Show dialplan\n",
            |call| {
                let plan = RUNNER.get().map(|r| r.plan()).unwrap_or_default();
                let only = call.args().first().map(|a| a.rsplit('@').next().unwrap_or(a).to_owned());
                if let Some(name) = &only {
                    if plan.context(name).is_none() {
                        let _ = writeln!(call, "There is no existence of '{name}' context");
                        return CliResult::Failure;
                    }
                }
                call.print(&plan.show(only.as_deref()));
                CliResult::Success
            },
        ),
        CliCommand::new(
            "dialplan reload",
            "Reload extensions and *only* extensions",
            "Usage: dialplan reload\n       Reload extensions.conf without reloading any other modules.\n",
            move |call| match reload(&reload_ctx) {
                Ok(()) => {
                    call.print("Dialplan reloaded.\n");
                    CliResult::Success
                }
                Err(e) => {
                    let _ = writeln!(call, "{e}\nThe dialplan was not changed.");
                    CliResult::Failure
                }
            },
        ),
    ])?;
    Ok(Box::new(PbxConfig { core: ctx.core().clone(), _cli: cli }))
}

starling_core::module! {
    description: "Text Extension Configuration",
    support_level: Core,
    load: load,
}
