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

async fn run(chan: &mut Channel, text: &str) -> AppResult {
    let (name, args) = split_app(text.trim());
    let Some(app) = chan.core().apps().get(name) else {
        tracing::warn!("Could not find application ({name})");
        return AppResult::Continue;
    };
    let _use = app.uses.clone().map(ModuleUse::new);
    (app.exec)(chan, args).await
}

fn exec<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move { run(chan, data).await })
}

fn exec_if<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move {
        let Some((condition, branches)) = data.split_once('?') else {
            tracing::warn!("ExecIf requires an argument: expression?app(args)[:app(args)]");
            return AppResult::Continue;
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
        match (is_true(condition), no) {
            (true, _) => run(chan, yes).await,
            (false, Some(no)) => run(chan, no).await,
            (false, None) => AppResult::Continue,
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
}
