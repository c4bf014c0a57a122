//! pbx_config: loads `extensions.conf` and makes it the dialplan every new channel runs
//! (step 2 of the call flow: "start the PBX on it in the context of the peer"). `dialplan
//! reload` is atomic: a file with an error keeps the dialplan in force and prints file:line.

use std::fmt::Write as _;
use std::sync::Arc;

use starling_core::apps::{App, AppFuture, AppResult, Registration};
use starling_core::channel::{Channel, Jump};
use starling_core::cli::{CliCommand, CliRegistration, CliResult};
use starling_core::config::ConfigErrors;
use starling_core::{tracing, LoadError, Module, ModuleContext, ReloadError};
use starling_dialplan::extensions::Dialplan;
use starling_dialplan::pbx::{install, now, PbxRunner};
use starling_dialplan::timing::{TimeOfDay, Timing};

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
    _apps: Vec<Registration<App>>,
}

/// `GotoIfTime(times,weekdays,mdays,months?[labeliftrue][:labeliffalse])` at `time`.
fn goto_if_time_at(chan: &mut Channel, data: &str, time: &TimeOfDay) -> AppResult {
    let Some((condition, branches)) = data.split_once('?') else {
        tracing::warn!("GotoIfTime requires an argument: <time range>,<days of week>,<days of month>,<months>?'labeliftrue':'labeliffalse'");
        return AppResult::Continue;
    };
    let timing = match Timing::parse(condition) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!("GotoIfTime: {e}");
            return AppResult::Continue;
        }
    };
    let (yes, no) = branches.split_once(':').unwrap_or((branches, ""));
    let target = if timing.matches(time) { yes } else { no }.trim();
    if target.is_empty() {
        return AppResult::Continue;
    }
    match Jump::parse(target) {
        Some(jump) => {
            chan.jump(jump);
            AppResult::Continue
        }
        None => {
            tracing::warn!("GotoIfTime: bad destination '{target}'");
            AppResult::Hangup
        }
    }
}

fn goto_if_time<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move { goto_if_time_at(chan, data, &now()) })
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
    let apps = vec![ctx.register_app(App {
        name: "GotoIfTime",
        synopsis: "Conditional Goto based on the current time.",
        description: "GotoIfTime(times,weekdays,mdays,months?[labeliftrue][:labeliffalse])",
        exec: goto_if_time,
        uses: None,
    })?];
    Ok(Box::new(PbxConfig { core: ctx.core().clone(), _cli: cli, _apps: apps }))
}

starling_core::module! {
    description: "Text Extension Configuration",
    support_level: Core,
    load: load,
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_core::channel::JumpTarget;

    #[test]
    fn goto_if_time_takes_the_branch_of_the_moment() {
        let core = starling_core::Core::for_tests();
        let (mut chan, _driver) = Channel::new(&core, "Test", "x", false);
        let monday_noon = TimeOfDay { weekday: 1, mday: 5, month: 6, hour: 12, minute: 0 };
        let sunday = TimeOfDay { weekday: 0, ..monday_noon };
        goto_if_time_at(&mut chan, "9:00-17:00,mon-fri,*,*?open:closed", &monday_noon);
        assert_eq!(chan.take_jump().map(|j| j.target), Some(JumpTarget::Label("open".into())));
        goto_if_time_at(&mut chan, "9:00-17:00,mon-fri,*,*?open:closed", &sunday);
        assert_eq!(chan.take_jump().map(|j| j.target), Some(JumpTarget::Label("closed".into())));
        goto_if_time_at(&mut chan, "9:00-17:00,mon-fri,*,*?open", &sunday);
        assert_eq!(chan.take_jump(), None, "no false branch: go on");
    }
}
