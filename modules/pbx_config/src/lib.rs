//! pbx_config: loads `extensions.conf` and makes it the dialplan every new channel runs
//! (step 2 of the call flow: "start the PBX on it in the context of the peer"). `dialplan
//! reload` is atomic: a file with an error keeps the dialplan in force and prints file:line.
//! As Asterisk's pbx_config it also changes the dialplan in force from the CLI (`dialplan add|
//! remove extension|include|ignorepat`, `dialplan remove context`) and writes it back with
//! `dialplan save`, which `[general]` allows only with `static = yes` and `writeprotect = no`.
//! It also brings the applications that need the dialplan itself: GotoIfTime and
//! While/EndWhile/ExitWhile/ContinueWhile (Asterisk's app_while), and the functions GLOBAL(),
//! LOCAL() (the Gosub level's variables; Gosub itself is built into the core) and EXCEPTION().

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
    _functions: starling_core::module::Registrations,
}

/// `GLOBAL(name)`: the dialplan's global variables.
fn global_read(_: &mut Channel, name: &str) -> Result<String, String> {
    Ok(RUNNER.get().and_then(|r| r.global(name.trim())).unwrap_or_default())
}

fn global_write(_: &mut Channel, name: &str, value: &str) -> Result<(), String> {
    let runner = RUNNER.get().ok_or("no dialplan is loaded")?;
    runner.set_global(name.trim(), value);
    Ok(())
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

/// The applications of the channel's current extension, by priority (for While's scans).
fn current_steps(chan: &Channel) -> Vec<(u32, String)> {
    let Some(runner) = RUNNER.get() else { return Vec::new() };
    let plan = runner.plan();
    let callerid = (!chan.caller.number.is_empty()).then(|| chan.caller.number.clone());
    plan.find(&chan.context, &chan.exten, callerid.as_deref(), starling_dialplan::pattern::Mode::Match, &now())
        .map(|f| f.extension.priorities.values().map(|p| (p.number, p.app.to_ascii_lowercase())).collect())
        .unwrap_or_default()
}

/// The EndWhile that closes the While at `at` (nesting counted), as an index into `steps`.
fn matching_end(steps: &[(u32, String)], at: usize) -> Option<usize> {
    let mut depth = 0;
    for (i, (_, app)) in steps.iter().enumerate().skip(at + 1) {
        match app.as_str() {
            "while" => depth += 1,
            "endwhile" if depth == 0 => return Some(i),
            "endwhile" => depth -= 1,
            _ => {}
        }
    }
    None
}

/// The While enclosing index `at` (the one whose EndWhile lies after it).
fn enclosing_while(steps: &[(u32, String)], at: usize) -> Option<usize> {
    (0..at).rev().find(|i| steps[*i].1 == "while" && matching_end(steps, *i).is_some_and(|end| end >= at))
}

fn jump_to(chan: &mut Channel, priority: u32) {
    chan.jump(Jump { context: None, exten: None, target: starling_core::channel::JumpTarget::Priority(priority) });
}

/// While/EndWhile/ExitWhile/ContinueWhile (Asterisk's app_while), by scanning the extension.
fn while_step(chan: &mut Channel, app: &str, condition: bool) -> AppResult {
    let steps = current_steps(chan);
    let Some(at) = steps.iter().position(|(n, _)| *n == chan.priority) else { return AppResult::Continue };
    // Where the step goes: past the matching EndWhile, or back to the enclosing While.
    let target = match app {
        "While" if condition => return AppResult::Continue,
        "While" => matching_end(&steps, at).map(|end| steps[end].0 + 1),
        "EndWhile" | "ContinueWhile" => enclosing_while(&steps, at).map(|start| steps[start].0),
        _ => enclosing_while(&steps, at).and_then(|start| matching_end(&steps, start)).map(|end| steps[end].0 + 1),
    };
    match target {
        Some(priority) => {
            jump_to(chan, priority);
            AppResult::Continue
        }
        None => {
            tracing::warn!("{app} without its While/EndWhile in {}@{}", chan.exten, chan.context);
            AppResult::Hangup
        }
    }
}

fn while_app<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move { while_step(chan, "While", starling_core::builtins::is_true(data)) })
}
fn end_while<'a>(chan: &'a mut Channel, _: &'a str) -> AppFuture<'a> {
    Box::pin(async move { while_step(chan, "EndWhile", false) })
}
fn exit_while<'a>(chan: &'a mut Channel, _: &'a str) -> AppFuture<'a> {
    Box::pin(async move { while_step(chan, "ExitWhile", false) })
}
fn continue_while<'a>(chan: &'a mut Channel, _: &'a str) -> AppFuture<'a> {
    Box::pin(async move { while_step(chan, "ContinueWhile", false) })
}

/// Runs a `dialplan add|remove` change on the dialplan in force and prints its message.
fn changed(
    call: &mut starling_core::cli::CliCall<'_>,
    change: impl FnOnce(&mut Dialplan) -> Result<String, String>,
) -> CliResult {
    let Some(runner) = RUNNER.get() else {
        call.print("No dialplan is loaded\n");
        return CliResult::Failure;
    };
    let result = runner.modify(change);
    call.core.hints_changed();
    match result {
        Ok(message) => {
            call.print(&message);
            CliResult::Success
        }
        Err(message) if message == "Usage" => CliResult::ShowUsage,
        Err(message) => {
            call.print(&message);
            CliResult::Failure
        }
    }
}

/// `dialplan save [path]`: only with `static = yes` and `writeprotect = no`, as pbx_config.
fn save(call: &mut starling_core::cli::CliCall<'_>, etcdir: &std::path::Path) -> CliResult {
    let plan = RUNNER.get().map(|r| r.plan()).unwrap_or_default();
    if !plan.general.static_ || plan.general.writeprotect {
        let _ = writeln!(call, "I can't save dialplan now, see '{CONFIG}' example file.");
        return CliResult::Failure;
    }
    let path = match call.args() {
        [] => etcdir.join(CONFIG),
        [path] if path.contains(".conf") => std::path::PathBuf::from(path),
        [dir] => std::path::Path::new(dir).join(CONFIG),
        _ => return CliResult::ShowUsage,
    };
    match std::fs::write(&path, plan.save_text(&plan.globals)) {
        Ok(()) => {
            let _ = writeln!(call, "Dialplan successfully saved into '{}'", path.display());
            CliResult::Success
        }
        Err(e) => {
            let _ = writeln!(call, "Failed to create file '{}': {e}", path.display());
            CliResult::Failure
        }
    }
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
    // Hints are read again; their watchers stay (Asterisk moves them to the new dialplan).
    ctx.core().hints_changed();
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
                if call.args().len() > 1 {
                    return CliResult::ShowUsage;
                }
                // [[exten@]context]: empty parts mean "all".
                let (exten, context) = match call.args().first() {
                    None => (None, None),
                    Some(arg) => match arg.split_once('@') {
                        Some((e, c)) => (Some(e.to_owned()), Some(c.to_owned())),
                        None => (None, Some(arg.clone())),
                    },
                };
                let exten = exten.filter(|e| !e.is_empty());
                let context = context.filter(|c| !c.is_empty());
                match plan.show(context.as_deref(), exten.as_deref()) {
                    Ok(text) => {
                        call.print(&text);
                        CliResult::Success
                    }
                    Err(message) => {
                        call.print(&message);
                        CliResult::Failure
                    }
                }
            },
        ),
        CliCommand::new(
            "dialplan add extension",
            "Add new extension into context",
            "Usage: dialplan add extension <exten>,<priority>,<app> into <context> [replace]\n\n       app can be either:\n         app-name\n         app-name(app-data)\n         app-name,<app-data>\n\n       This command will add the new extension into <context>.  If\n       an extension with the same priority already exists and the\n       'replace' option is given we will replace the extension.\n",
            |call| {
                let args = call.args().to_vec();
                let replace = match args.get(3).map(String::as_str) {
                    None => false,
                    Some("replace") if args.len() == 4 => true,
                    Some(_) => return CliResult::ShowUsage,
                };
                if args.len() < 3 || args[1] != "into" {
                    return CliResult::ShowUsage;
                }
                changed(call, |plan| plan.add_extension(&args[0], &args[2], replace))
            },
        ),
        CliCommand::new(
            "dialplan remove extension",
            "Remove a specified extension",
            "Usage: dialplan remove extension exten[/cid]@context [priority]\n       Remove an extension from a given context. If a priority\n       is given, only that specific priority from the given extension\n       will be removed.\n",
            |call| {
                let args = call.args().to_vec();
                if args.is_empty() || args.len() > 2 {
                    return CliResult::ShowUsage;
                }
                changed(call, |plan| plan.remove_extension(&args[0], args.get(1).map(String::as_str)))
            },
        ),
        CliCommand::new(
            "dialplan add include",
            "Include context in other context",
            "Usage: dialplan add include <context> into <context>\n       Include a context in another context.\n",
            |call| {
                let args = call.args().to_vec();
                if args.len() != 3 || args[1] != "into" {
                    return CliResult::ShowUsage;
                }
                changed(call, |plan| plan.add_include(&args[0], &args[2]))
            },
        ),
        CliCommand::new(
            "dialplan remove include",
            "Remove a specified include from context",
            "Usage: dialplan remove include <context> from <context>\n       Remove an included context from another context.\n",
            |call| {
                let args = call.args().to_vec();
                if args.len() != 3 || args[1] != "from" {
                    return CliResult::ShowUsage;
                }
                changed(call, |plan| plan.remove_include(&args[0], &args[2]))
            },
        ),
        CliCommand::new(
            "dialplan add ignorepat",
            "Add new ignore pattern",
            "Usage: dialplan add ignorepat <pattern> into <context>\n       This command adds a new ignore pattern into context <context>\n",
            |call| {
                let args = call.args().to_vec();
                if args.len() != 3 || args[1] != "into" {
                    return CliResult::ShowUsage;
                }
                changed(call, |plan| plan.add_ignorepat(&args[0], &args[2]))
            },
        ),
        CliCommand::new(
            "dialplan remove ignorepat",
            "Remove ignore pattern from context",
            "Usage: dialplan remove ignorepat <pattern> from <context>\n       This command removes an ignore pattern from context <context>\n",
            |call| {
                let args = call.args().to_vec();
                if args.len() != 3 || args[1] != "from" {
                    return CliResult::ShowUsage;
                }
                changed(call, |plan| plan.remove_ignorepat(&args[0], &args[2]))
            },
        ),
        CliCommand::new(
            "dialplan remove context",
            "Remove a specified context",
            "Usage: dialplan remove context <context>\n       Removes all extensions from a specified context.\n",
            |call| {
                let args = call.args().to_vec();
                if args.len() != 1 {
                    return CliResult::ShowUsage;
                }
                changed(call, |plan| Ok(plan.remove_context(&args[0])))
            },
        ),
        CliCommand::new(
            "dialplan save",
            "Save current dialplan into a file",
            "Usage: dialplan save [/path/to/extension/file]\n       Save dialplan created by pbx_config module.\n\nExample: dialplan save                 (/etc/asterisk/extensions.conf)\n         dialplan save /home/markster  (/home/markster/extensions.conf)\n",
            {
                let etcdir = ctx.config_dir();
                move |call| save(call, &etcdir)
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
    let apps = [
        App::new(
            "GotoIfTime",
            "Conditional Goto based on the current time.",
            "GotoIfTime(times,weekdays,mdays,months?[labeliftrue][:labeliffalse])",
            goto_if_time,
        ),
        App::new(
            "While",
            "Start a while loop.",
            "While(expr): runs to the matching EndWhile while expr is true.",
            while_app,
        ),
        App::new("EndWhile", "End a while loop.", "EndWhile(): returns to the matching While.", end_while),
        App::new("ExitWhile", "End a While loop.", "ExitWhile(): leaves the innermost While loop.", exit_while),
        App::new(
            "ContinueWhile",
            "Restart a While loop.",
            "ContinueWhile(): returns to the innermost While.",
            continue_while,
        ),
    ]
    .into_iter()
    .map(|a| ctx.register_app(a))
    .collect::<Result<Vec<_>, _>>()?;
    let functions = ctx.register_functions(vec![
        starling_core::apps::Function {
            name: "GLOBAL",
            synopsis: "Gets or sets the global variable specified.",
            syntax: "GLOBAL(varname)",
            read: Some(global_read),
            write: Some(global_write),
            escalation: starling_core::apps::Escalation::None,
            uses: None,
        },
        // Gosub is the core's; its LOCAL() comes with the dialplan, as GLOBAL() does.
        starling_core::apps::Function {
            name: "LOCAL",
            synopsis: "Manage variables local to the gosub stack frame.",
            syntax: "LOCAL(varname)",
            read: Some(starling_core::builtins::local_read),
            write: Some(starling_core::builtins::local_write),
            escalation: starling_core::apps::Escalation::None,
            uses: None,
        },
        starling_core::apps::Function {
            name: "EXCEPTION",
            synopsis: "Retrieve the details of the current dialplan exception.",
            syntax: "EXCEPTION(field)",
            read: Some(starling_core::builtins::exception_read),
            write: None,
            escalation: starling_core::apps::Escalation::None,
            uses: None,
        },
    ])?;
    Ok(Box::new(PbxConfig { core: ctx.core().clone(), _cli: cli, _apps: apps, _functions: functions }))
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

    /// Counting loops run by the real PBX loop: While/EndWhile, and ExitWhile from inside.
    #[test]
    fn while_loops_run() {
        let core = starling_core::Core::for_tests();
        let runner = RUNNER.get_or_init(|| install(&core, Dialplan::default())).clone();
        let _guards: Vec<_> =
            [("While", while_app as starling_core::apps::AppFn), ("EndWhile", end_while), ("ExitWhile", exit_while)]
                .into_iter()
                .filter_map(|(name, exec)| {
                    core.apps().register(name, App { name, synopsis: "", description: "", exec, uses: None }).ok()
                })
                .collect();
        for (exit_at, expected) in [("99", "5"), ("3", "3")] {
            let text = format!(
                "[default]\nexten => s,1,Set(I=0)\n same => n,While($[${{I}} < 5])\n same => n,Set(I=$[${{I}} + 1])\n same => n,GotoIf($[${{I}} != {exit_at}]?next)\n same => n,ExitWhile()\n same => n(next),EndWhile()\n same => n,Set(DONE=${{I}})\n"
            );
            let plan =
                Dialplan::from_config(&starling_core::config::Config::parse_str("extensions.conf", &text).unwrap())
                    .unwrap();
            runner.replace(plan);
            let (chan, _driver) = Channel::new(&core, "Test", "loop", true);
            let globals = std::sync::Arc::new(std::sync::RwLock::new(Default::default()));
            let chan = core.runtime().block_on(starling_dialplan::pbx::run(runner.plan(), globals, chan));
            assert_eq!(chan.var("DONE"), Some(expected), "exit at {exit_at}");
        }
    }

    #[test]
    fn while_scans_find_their_partners() {
        let steps: Vec<(u32, String)> =
            ["set", "while", "noop", "while", "noop", "endwhile", "exitwhile", "endwhile", "hangup"]
                .iter()
                .enumerate()
                .map(|(i, a)| (i as u32 + 1, a.to_string()))
                .collect();
        assert_eq!(matching_end(&steps, 1), Some(7), "the outer While closes at the outer EndWhile");
        assert_eq!(matching_end(&steps, 3), Some(5));
        assert_eq!(enclosing_while(&steps, 6), Some(1), "ExitWhile after the inner loop belongs to the outer");
        assert_eq!(enclosing_while(&steps, 4), Some(3));
        assert_eq!(enclosing_while(&steps, 0), None);
    }

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
