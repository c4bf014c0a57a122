//! app_exec: `Exec(Appname(arguments))` and `ExecIf(expression?Appiftrue(args)[:Appiffalse(args)])`,
//! as Asterisk's app_exec: run another application chosen at run time.

use starling_core::apps::{App, AppFuture, AppResult};
use starling_core::builtins::is_true;
use starling_core::channel::Channel;
use starling_core::module::ModuleUse;
use starling_core::{tracing, LoadError, Module, ModuleContext};

/// `App(args)` → the application's name and arguments.
fn split_app(text: &str) -> (&str, &str) {
    match text.find('(') {
        Some(open) => (&text[..open], text[open + 1..].strip_suffix(')').unwrap_or(&text[open + 1..])),
        None => (text, ""),
    }
}

/// How many `Exec`/`ExecIf` may nest in one another's argument. Asterisk has no limit (each
/// level runs Exec again on the C stack); here they are unwrapped in a loop, and ExecIf reads
/// the rest of its argument at each level, so a bound keeps the work linear in the text.
pub const MAX_EXEC_NESTING: usize = 100;

/// Runs `App(args)`. An `Exec(...)` or `ExecIf(...)` inside is unwrapped here, in a loop, not
/// by running Exec again: nesting in the text (from a file, or from a variable a caller's data
/// went into) takes no stack; past [`MAX_EXEC_NESTING`] levels nothing runs, with a warning,
/// as for an application that does not exist.
async fn run(chan: &mut Channel, text: &str) -> AppResult {
    let mut text = text.trim();
    let mut levels = 0;
    loop {
        let (name, args) = split_app(text);
        let nested = name.eq_ignore_ascii_case("Exec") || name.eq_ignore_ascii_case("ExecIf");
        if nested {
            levels += 1;
            if levels > MAX_EXEC_NESTING {
                tracing::warn!("Exec on {}: nested deeper than {MAX_EXEC_NESTING} levels, nothing run", chan.name());
                return AppResult::Continue;
            }
        }
        if name.eq_ignore_ascii_case("Exec") {
            text = args.trim();
            continue;
        }
        if name.eq_ignore_ascii_case("ExecIf") {
            match branch(args) {
                Some(chosen) => {
                    text = chosen.trim();
                    continue;
                }
                None => return AppResult::Continue,
            }
        }
        let Some(app) = chan.core().apps().get(name) else {
            tracing::warn!("Could not find application ({name})");
            return AppResult::Continue;
        };
        let _use = app.uses.clone().map(ModuleUse::new);
        return (app.exec)(chan, args).await;
    }
}

/// ExecIf's `expression?appiftrue(args)[:appiffalse(args)]` → the application to run, if any.
fn branch(data: &str) -> Option<&str> {
    let Some((condition, branches)) = data.split_once('?') else {
        tracing::warn!("ExecIf requires an argument: expression?app(args)[:app(args)]");
        return None;
    };
    // The false branch starts at the first ':' outside parentheses.
    let mut depth = 0i32;
    let split = branches.char_indices().find(|(_, c)| {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ':' if depth == 0 => return true,
            _ => {}
        }
        false
    });
    let (yes, no) = match split {
        Some((i, _)) => (&branches[..i], Some(&branches[i + 1..])),
        None => (branches, None),
    };
    if is_true(condition) {
        Some(yes)
    } else {
        no
    }
}

fn exec<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move { run(chan, data).await })
}

fn exec_if<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move {
        match branch(data) {
            Some(chosen) => run(chan, chosen).await,
            None => AppResult::Continue,
        }
    })
}

fn load(ctx: &ModuleContext) -> Result<Box<dyn Module>, LoadError> {
    let apps = vec![
        App {
            name: "Exec",
            synopsis: "Executes dialplan application.",
            description: "Exec(appname(arguments))",
            exec,
            uses: None,
        },
        App {
            name: "ExecIf",
            synopsis: "Executes dialplan application, conditionally.",
            description: "ExecIf(expression?appiftrue(args)[:appiffalse(args)])",
            exec: exec_if,
            uses: None,
        },
    ];
    Ok(Box::new(ctx.register_apps(apps)?))
}

starling_core::module! {
    description: "Executes dialplan applications",
    support_level: Core,
    load: load,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_if_runs_the_chosen_application() {
        let core = starling_core::Core::for_tests();
        let (mut chan, _driver) = Channel::new(&core, "Test", "x", false);
        core.runtime().block_on(async {
            exec_if(&mut chan, "1?Set(A=yes):Set(A=no)").await;
            assert_eq!(chan.var("A"), Some("yes"));
            exec_if(&mut chan, "0?Set(B=yes):Set(B=no(x))").await;
            assert_eq!(chan.var("B"), Some("no(x)"));
            exec(&mut chan, "Set(C=1)").await;
            assert_eq!(chan.var("C"), Some("1"));
            assert_eq!(exec(&mut chan, "Nonexistent()").await, AppResult::Continue);
        });
    }

    /// Exec and ExecIf nested to the limit run the innermost application; nested 20,000 deep,
    /// nothing runs. Either way on a 256 KiB stack.
    #[test]
    fn nesting_takes_no_stack() {
        let result = std::thread::Builder::new()
            .stack_size(if cfg!(debug_assertions) { 2048 } else { 256 } * 1024)
            .spawn(|| {
                let core = starling_core::Core::for_tests();
                let (mut chan, _driver) = Channel::new(&core, "Test", "x", false);
                let exec_text = |n| format!("{}Set(D=deep{n}){}", "Exec(".repeat(n), ")".repeat(n));
                let exec_if_text = |n| format!("{}Set(E=deep{n}){}", "ExecIf(1?Exec(".repeat(n), "))".repeat(n));
                core.runtime().block_on(async {
                    // exec itself is the first level.
                    exec(&mut chan, &exec_text(MAX_EXEC_NESTING - 1)).await;
                    exec(&mut chan, &exec_text(20_000)).await;
                    exec(&mut chan, &exec_if_text((MAX_EXEC_NESTING - 1) / 2)).await;
                    exec(&mut chan, &exec_if_text(20_000)).await;
                });
                (chan.var("D").map(str::to_owned), chan.var("E").map(str::to_owned))
            })
            .unwrap()
            .join()
            .unwrap();
        let (d, e) = (format!("deep{}", MAX_EXEC_NESTING - 1), format!("deep{}", (MAX_EXEC_NESTING - 1) / 2));
        assert_eq!(result, (Some(d), Some(e)));
    }
}
