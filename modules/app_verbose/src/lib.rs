//! app_verbose: `Verbose([level,]message)` and `Log(level,message)`, as Asterisk's app_verbose:
//! dialplan text into the console and log files.

use starling_core::apps::{App, AppFuture, AppResult};
use starling_core::channel::Channel;
use starling_core::{tracing, verbose, LoadError, Module, ModuleContext};

/// `[level,]message` as app_verbose reads it (AST_STANDARD_APP_ARGS: quotes and `\` escapes
/// removed, the message takes the rest): a level that is not a number is warned about and
/// taken as 0; levels above 4 are 4.
fn verbose_level(data: &str) -> (u8, String) {
    let mut args = starling_core::apps::separate_args(data, ',', true, 2).into_iter();
    let (first, message) = (args.next().unwrap_or_default(), args.next());
    match message {
        None => (0, first),
        Some(message) => match first.trim().parse::<u32>() {
            Ok(n) => (n.min(4) as u8, message),
            Err(_) => {
                tracing::warn!("'{first}' is not a verboser number");
                (0, message)
            }
        },
    }
}

fn verbose_app<'a>(_: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move {
        let (level, message) = verbose_level(data);
        verbose!(level, "{message}");
        AppResult::Continue
    })
}

/// `Log(ERROR|WARNING|NOTICE|DEBUG|VERBOSE|DTMF,message)` (DTMF is logged as NOTICE).
fn log_app<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move {
        let args = starling_core::apps::separate_args(data, ',', true, 2);
        let [level, message] = args.as_slice() else {
            tracing::warn!("Log requires an argument (level,message)");
            return AppResult::Continue;
        };
        // Asterisk logs it as if from file "Ext. <exten>", line <priority>, function "@ <context>".
        let location = format!("Ext. {}:{} @ {}", chan.exten, chan.priority, chan.context);
        match level.trim().to_ascii_uppercase().as_str() {
            "ERROR" => tracing::error!("{location}: {message}"),
            "WARNING" => tracing::warn!("{location}: {message}"),
            "NOTICE" | "DTMF" => tracing::info!("{location}: {message}"),
            "DEBUG" => tracing::debug!("{location}: {message}"),
            "VERBOSE" => verbose!(1, "{location}: {message}"),
            _ => tracing::error!("Unknown log level: '{level}'"),
        }
        AppResult::Continue
    })
}

fn load(ctx: &ModuleContext) -> Result<Box<dyn Module>, LoadError> {
    let apps = vec![
        App {
            name: "Verbose",
            synopsis: "Send arbitrary text to verbose output.",
            description: "Verbose([level,]message)",
            exec: verbose_app,
            uses: None,
        },
        App {
            name: "Log",
            synopsis: "Send arbitrary text to a selected log level.",
            description: "Log(level,message): level is ERROR, WARNING, NOTICE, DEBUG, VERBOSE or DTMF.",
            exec: log_app,
            uses: None,
        },
    ];
    Ok(Box::new(ctx.register_apps(apps)?))
}

starling_core::module! {
    description: "Send verbose output",
    support_level: Core,
    load: load,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbose_levels_as_app_verbose_reads_them() {
        let level = verbose_level;
        assert_eq!(level("hello"), (0, "hello".into()));
        assert_eq!(level("2,hi, there"), (2, "hi, there".into()), "the message keeps its commas");
        assert_eq!(level("9,loud"), (4, "loud".into()), "at most 4");
        assert_eq!(level("hi,there"), (0, "there".into()), "not a number: level 0, the rest is the message");
        // The message is app_verbose's last field: the rest as written, quotes and `\` kept
        // (Asterisk's __ast_app_separate_args leaves the last of its declared fields alone).
        assert_eq!(level("1,\"quoted, text\" and \\\"more\\\""), (1, "\"quoted, text\" and \\\"more\\\"".into()));
        // A lone message is the first field: parsed, so its quotes and escapes go.
        assert_eq!(level("\"quoted, text\" and \\\"more\\\""), (0, "quoted, text and \"more\"".into()));
    }
}
