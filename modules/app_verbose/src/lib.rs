//! app_verbose: `Verbose([level,]message)` and `Log(level,message)`, as Asterisk's app_verbose:
//! dialplan text into the console and log files.

use starling_core::apps::{App, AppFuture, AppResult};
use starling_core::channel::Channel;
use starling_core::{tracing, verbose, LoadError, Module, ModuleContext};

fn verbose_app<'a>(_: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move {
        let (level, message) = match data.split_once(',') {
            Some((l, m)) if l.trim().parse::<u8>().is_ok() => (l.trim().parse::<u8>().unwrap_or(0), m),
            _ => (0, data),
        };
        verbose!(level, "{message}");
        AppResult::Continue
    })
}

/// `Log(ERROR|WARNING|NOTICE|DEBUG|VERBOSE|DTMF,message)`.
fn log_app<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move {
        let Some((level, message)) = data.split_once(',') else {
            tracing::warn!("Log requires an argument (level,message)");
            return AppResult::Continue;
        };
        let location = format!("{}@{}:{}", chan.exten, chan.context, chan.priority);
        match level.trim().to_ascii_uppercase().as_str() {
            "ERROR" => tracing::error!("Ext. {location}: {message}"),
            "WARNING" => tracing::warn!("Ext. {location}: {message}"),
            "DEBUG" => tracing::debug!("Ext. {location}: {message}"),
            "VERBOSE" => verbose!(1, "Ext. {location}: {message}"),
            _ => tracing::info!("Ext. {location}: {message}"),
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
            description: "Log(level,message): level is ERROR, WARNING, NOTICE, DEBUG or VERBOSE.",
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
