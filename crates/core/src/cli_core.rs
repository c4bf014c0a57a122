//! The core's own CLI commands: `core show ...`, `core set ...`, `core reload`, `core stop ...`,
//! `module ...`. Output shapes follow Asterisk's, since scripts read them.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use crate::cli::{CliCall, CliCommand, CliRegistration, CliResult};
use crate::core::{Core, ShutdownMode};
use crate::logger;

pub(crate) fn register(core: &Arc<Core>) -> CliRegistration {
    let mut commands = vec![
        CliCommand::new("core show version", "Display version info", "Usage: core show version\n       Shows Starling version information.\n", |call| {
            let _ = writeln!(call, "Starling {}", crate::VERSION);
            CliResult::Success
        }),
        CliCommand::new(
            "core show uptime",
            "Show uptime information",
            "Usage: core show uptime [seconds]\n       Shows Starling uptime information.\n       The seconds word returns the uptime in seconds only.\n",
            show_uptime,
        ),
        CliCommand::new(
            "core show channels",
            "Display information on channels",
            "Usage: core show channels [concise|verbose|count]\n       Lists currently defined channels and some information about them.\n",
            show_channels,
        ),
        CliCommand::new("core show settings", "Show some core settings", "Usage: core show settings\n       Show core settings.\n", show_settings),
        CliCommand::new(
            "core show help",
            "Display help list, or specific help on a command",
            "Usage: core show help [topic]\n       When called with a topic as an argument, displays usage\n       information on the given command. If called without a\n       topic, it provides a list of commands.\n",
            show_help,
        ),
        CliCommand::new(
            "core set verbose",
            "Set level of verbose chattiness",
            "Usage: core set verbose {<level>|off}\n       Sets the verbosity of this console.\n",
            |call| set_level(call, "Verbosity", logger::verbose, logger::set_verbose),
        ),
        CliCommand::new(
            "core set debug",
            "Set level of debug chattiness",
            "Usage: core set debug {<level>|off}\n       Sets the debug level of this console.\n",
            |call| set_level(call, "Core debug", logger::debug, logger::set_debug),
        ),
        CliCommand::new("core reload", "Global reload", "Usage: core reload\n       Execute a global reload.\n", |call| {
            if !call.args().is_empty() {
                return CliResult::ShowUsage;
            }
            let problems = call.core.reload();
            for problem in &problems {
                let _ = writeln!(call, "{problem}");
            }
            if problems.is_empty() { CliResult::Success } else { CliResult::Failure }
        }),
        CliCommand::new(
            "core waitfullybooted",
            "Wait for Starling to be fully booted",
            "Usage: core waitfullybooted\n       Waits until Starling has loaded its modules. For scripts.\n",
            |call| {
                // The control socket answers only once start-up is done, so this is immediate.
                call.print("Starling has fully booted.\n");
                CliResult::Success
            },
        ),
        CliCommand::new("core stop now", "Shut down Starling immediately", "Usage: core stop now\n       Shuts down a running Starling immediately, hanging up all active calls.\n", |call| {
            call.core.request_shutdown(ShutdownMode::Now);
            CliResult::Success
        }),
        CliCommand::new(
            "core stop gracefully",
            "Gracefully shut down Starling",
            "Usage: core stop gracefully\n       Causes Starling to not accept new calls, and exit when all\n       active calls have terminated normally.\n",
            |call| {
                call.core.request_shutdown(ShutdownMode::Gracefully);
                CliResult::Success
            },
        ),
        CliCommand::new("core abort shutdown", "Cancel a running shutdown", "Usage: core abort shutdown\n       Causes Starling to abort a graceful shutdown.\n", |call| {
            if !call.core.abort_shutdown() {
                let _ = writeln!(call, "No shutdown is pending.");
            }
            CliResult::Success
        }),
    ];
    commands.extend([
        CliCommand::new(
            "core show applications",
            "Shows registered dialplan applications",
            "Usage: core show applications [like <text>]\n       List applications which are currently available.\n",
            |call| {
                let like = match call.args() {
                    [] => None,
                    [w, t] if w.eq_ignore_ascii_case("like") => Some(t.to_ascii_lowercase()),
                    _ => return CliResult::ShowUsage,
                };
                let apps: Vec<_> = call
                    .core
                    .apps()
                    .all()
                    .into_iter()
                    .filter(|a| like.as_ref().is_none_or(|l| a.name.to_ascii_lowercase().contains(l.as_str())))
                    .collect();
                let _ = writeln!(call, "    -= Registered Starling Applications =-");
                for app in &apps {
                    let _ = writeln!(call, "{:>25}: {}", app.name, app.synopsis);
                }
                let _ = writeln!(
                    call,
                    "    -= {} Applications {} =-",
                    apps.len(),
                    if like.is_some() { "Matching" } else { "Registered" }
                );
                CliResult::Success
            },
        ),
        CliCommand::new(
            "core show application",
            "Describe a specific dialplan application",
            "Usage: core show application <application>\n       Describes a particular application.\n",
            |call| {
                let [name] = call.args() else { return CliResult::ShowUsage };
                let name = name.clone();
                let Some(app) = call.core.apps().get(&name) else {
                    let _ = writeln!(call, "Your application {name} was not found");
                    return CliResult::Failure;
                };
                let _ = writeln!(
                    call,
                    "\n  -= Info about application '{}' =- \n\n[Synopsis]\n{} \n\n[Description]\n{} \n",
                    app.name, app.synopsis, app.description
                );
                CliResult::Success
            },
        ),
        CliCommand::new(
            "core show functions",
            "Shows registered dialplan functions",
            "Usage: core show functions [like <text>]\n       List builtin functions.\n",
            |call| {
                // As Asterisk's pbx_functions.c: "%-20.20s  %-35.35s  %s" rows.
                let like = match call.args() {
                    [] => None,
                    [w, t] if w.eq_ignore_ascii_case("like") => Some(t.clone()),
                    _ => return CliResult::ShowUsage,
                };
                let functions: Vec<_> = call
                    .core
                    .functions()
                    .all()
                    .into_iter()
                    .filter(|f| like.as_ref().is_none_or(|l| f.name.contains(l.as_str())))
                    .collect();
                let heading = if like.is_some() { "Matching" } else { "Installed" };
                let _ = writeln!(call, "{heading} Custom Functions:\n{}", "-".repeat(80));
                for f in &functions {
                    let _ = writeln!(call, "{:<20.20}  {:<35.35}  {}", f.name, f.syntax, f.synopsis);
                }
                let matching = if like.is_some() { "matching " } else { "" };
                let _ = writeln!(call, "{} {matching}custom functions installed.", functions.len());
                CliResult::Success
            },
        ),
        CliCommand::new(
            "core show function",
            "Describe a specific dialplan function",
            "Usage: core show function <function>\n       Describe a particular dialplan function.\n",
            |call| {
                let [name] = call.args() else { return CliResult::ShowUsage };
                let name = name.clone();
                let Some(f) = call.core.functions().get(&name) else {
                    let _ = writeln!(call, "No function by that name registered.");
                    return CliResult::Failure;
                };
                let or_na = |s: &'static str| if s.is_empty() { "Not available" } else { s };
                let _ = writeln!(
                    call,
                    "\n  -= Info about function '{}' =- \n\n[Synopsis]\n{}\n\n[Description]\nNot available\n\n[Syntax]\n{}\n\n[Arguments]\nNot available\n\n[See Also]\nNot available\n",
                    f.name,
                    or_na(f.synopsis),
                    or_na(f.syntax)
                );
                CliResult::Success
            },
        ),
    ]);
    commands.extend([
        CliCommand::new(
            "core show channeltypes",
            "List available channel types",
            "Usage: core show channeltypes\n       Lists available channel types registered in your\n       Starling server.\n",
            |call| {
                let techs = call.core.techs().all();
                let _ = writeln!(call, "{:<15.15}  {:<40.40} ", "Type", "Description");
                let _ = writeln!(call, "{:<15.15}  {:<40.40} ", "-------------", "-----------");
                for tech in &techs {
                    let _ = writeln!(call, "{:<15.15}  {:<40.40} ", tech.name(), tech.description());
                }
                let _ = writeln!(call, "----------\n{} channel drivers registered.", techs.len());
                CliResult::Success
            },
        ),
        CliCommand::new(
            "core show hints",
            "Show dialplan hints",
            "Usage: core show hints\n       List registered hints.\n       Hint details are shown in five columns. In order from left to right, they are:\n       1. Hint extension URI.\n       2. List of mapped device or presence state identifiers.\n       3. Current extension state. The aggregate of mapped device states.\n       4. Current presence state for the mapped presence state provider.\n       5. Watchers - number of subscriptions and other entities watching this hint.\n",
            |call| {
                let hints = call.core.hints().list();
                if hints.is_empty() {
                    call.print("There are no registered dialplan hints\n");
                    return CliResult::Success;
                }
                call.print("\n    -= Registered Asterisk Dial Plan Hints =-\n");
                for hint in &hints {
                    call.print(&hint_line(hint));
                }
                let _ = writeln!(call, "----------------\n- {} hints registered", hints.len());
                CliResult::Success
            },
        ),
        CliCommand::new(
            "core show hint",
            "Show dialplan hint",
            "Usage: core show hint <exten>\n       List registered hint.\n       Hint details are shown in five columns. In order from left to right, they are:\n       1. Hint extension URI.\n       2. List of mapped device or presence state identifiers.\n       3. Current extension state. The aggregate of mapped device states.\n       4. Current presence state for the mapped presence state provider.\n       5. Watchers - number of subscriptions and other entities watching this hint.\n",
            |call| {
                let [wanted] = call.args() else { return CliResult::ShowUsage };
                let wanted = wanted.clone();
                let (exten, context) = wanted.split_once('@').map_or((wanted.as_str(), None), |(e, c)| (e, Some(c)));
                let matching: Vec<_> = call
                    .core
                    .hints()
                    .list()
                    .into_iter()
                    .filter(|h| {
                        h.exten.to_ascii_lowercase().starts_with(&exten.to_ascii_lowercase())
                            && context.is_none_or(|c| h.context.eq_ignore_ascii_case(c))
                    })
                    .collect();
                if matching.is_empty() {
                    let _ = writeln!(call, "No hints matching extension {wanted}");
                    return CliResult::Success;
                }
                for hint in &matching {
                    call.print(&hint_line(hint));
                }
                let n = matching.len();
                let _ = writeln!(call, "{n} hint{} matching extension {wanted}", if n != 1 { "s" } else { "" });
                CliResult::Success
            },
        ),
        CliCommand::new(
            "bridge show all",
            "List all bridges in the system",
            "Usage: bridge show all\n       List all bridges\n",
            |call| {
                let bridges = call.core.bridges().list();
                let _ = writeln!(call, "{:<36} {:>5} {:<15} Technology", "Bridge-ID", "Chans", "Type");
                for bridge in &bridges {
                    let _ = writeln!(call, "{:<36} {:>5} {:<15} {}", bridge.id, bridge.channels.len(), "basic", bridge.technology);
                }
                CliResult::Success
            },
        ),
    ]);
    commands.extend(database_commands());
    commands.extend(channel_commands());
    commands.push(cdr_show_status());
    commands.extend(crate::loader::cli_commands());
    core.cli().register("core", commands).expect("the core's commands are registered first")
}

/// `cdr show status`, as Asterisk 20 prints it.
fn cdr_show_status() -> CliCommand {
    CliCommand::new(
        "cdr show status",
        "Display the CDR status",
        "Usage: cdr show status\n\tDisplays the Call Detail Record engine system status.\n",
        |call| {
            let engine = call.core.cdr();
            let settings = engine.settings();
            let yes_no = |b: bool| if b { "Yes" } else { "No" };
            let _ = writeln!(call, "\nCall Detail Record (CDR) settings\n----------------------------------");
            let _ = writeln!(
                call,
                "  Logging:                    {}",
                if settings.enable { "Enabled" } else { "Disabled" }
            );
            let _ = writeln!(call, "  Mode:                       Simple");
            if settings.enable {
                let _ = writeln!(call, "  Log calls by default:       Yes");
                let _ = writeln!(call, "  Log unanswered calls:       {}", yes_no(settings.unanswered));
                let _ = writeln!(call, "  Log congestion:             {}", yes_no(settings.congestion));
                let _ = writeln!(call, "  End before h exten:         {}", yes_no(settings.endbeforehexten));
                let _ = writeln!(call, "  Records logged:             {}", engine.posted());
                let _ = writeln!(call, "\n* Registered Backends\n  -------------------");
                let names = engine.backend_names();
                if names.is_empty() {
                    let _ = writeln!(call, "    (none)");
                }
                for name in names {
                    match engine.backend_status(&name) {
                        Some(status) => {
                            let _ = writeln!(call, "    {name} ({status})");
                        }
                        None => {
                            let _ = writeln!(call, "    {name}");
                        }
                    }
                }
            }
            CliResult::Success
        },
    )
}

/// `channel originate` (Local channels) and `channel request hangup`.
fn channel_commands() -> Vec<CliCommand> {
    vec![
        CliCommand::new(
            "channel originate",
            "Originate a call",
            "Usage: channel originate <tech/data> application <appname> [appdata]\n  Originate a call and connect it to the specified application.\n\nUsage: channel originate <tech/data> extension [exten@][context]\n  Originate a call and connect it to the specified extension.\n  Channels other than Local/ are dialled first; the application or extension runs once they answer (30 s at most).\n",
            |call| {
                let args: Vec<String> = call.args().to_vec();
                let (Some(target), Some(kind)) = (args.first(), args.get(1)) else { return CliResult::ShowUsage };
                let Some(local) = target.strip_prefix("Local/").or_else(|| target.strip_prefix("local/")) else {
                    return originate_outbound(call, target, &args[1..]);
                };
                let (exten, context) = local.split_once('@').unwrap_or((local, "default"));
                let core = call.core.clone();
                let _entered = core.runtime().enter();
                let (mut one, two) = crate::local::local_pair(&core, exten, context);
                if !crate::local::destination_exists(&core, &two) {
                    return CliResult::Success;
                }
                match kind.to_ascii_lowercase().as_str() {
                    "application" => {
                        let Some(app) = args.get(2).and_then(|name| core.apps().get(name)) else {
                            let _ = writeln!(call, "No such application");
                            return CliResult::Failure;
                        };
                        let data = args.get(3..).map(|rest| rest.join(" ")).unwrap_or_default();
                        core.start_pbx(two);
                        crate::tokio::spawn(async move {
                            app.run(&mut one, &data).await;
                            one.hangup(crate::frame::Cause::NORMAL_CLEARING);
                        });
                    }
                    "extension" => {
                        let spec = args.get(2).cloned().unwrap_or_else(|| "s@default".into());
                        let (e, c) = spec.split_once('@').map_or((spec.as_str(), "default"), |(e, c)| (e, c));
                        one.exten = if e.is_empty() { "s".into() } else { e.to_owned() };
                        one.context = c.to_owned();
                        core.start_pbx(two);
                        core.start_pbx(one);
                    }
                    _ => return CliResult::ShowUsage,
                }
                CliResult::Success
            },
        ),
        CliCommand::new(
            "channel request hangup",
            "Request a hangup on a given channel",
            "Usage: channel request hangup <channel>|<all>\n       Request that a channel be hung up. The hangup takes effect\n       the next time the driver reads or writes from the channel.\n",
            |call| {
                let [name] = call.args() else { return CliResult::ShowUsage };
                let name = name.clone();
                let asked = call.core.channels().request_hangup(&name);
                if name.eq_ignore_ascii_case("all") {
                    call.print("All channels have been hungup\n");
                } else if asked > 0 {
                    let _ = writeln!(call, "Requested Hangup on channel '{name}'");
                } else {
                    let _ = writeln!(call, "{name} is not a known channel");
                    return CliResult::Failure;
                }
                CliResult::Success
            },
        )
        .with_completer(|core, _, _| {
            let mut names: Vec<String> = core.channels().list().into_iter().map(|c| c.name).collect();
            names.push("all".into());
            names
        }),
    ]
}

/// `database put|get|del|deltree|show`, as Asterisk's main/db.c.
fn database_commands() -> Vec<CliCommand> {
    fn report(call: &mut CliCall<'_>, e: crate::db::DbError) -> CliResult {
        let _ = writeln!(call, "{e}");
        CliResult::Failure
    }
    vec![
        CliCommand::new("database put", "Adds/updates database value", "Usage: database put <family> <key> <value>\n       Adds or updates an entry in the Starling database for\n       a given family, key, and value.\n", |call| {
            let [family, key, value] = call.args() else { return CliResult::ShowUsage };
            let (family, key, value) = (family.clone(), key.clone(), value.clone());
            match call.core.db().put(&family, &key, &value) {
                Ok(()) => {
                    call.print("Updated database successfully\n");
                    CliResult::Success
                }
                Err(e) => report(call, e),
            }
        }),
        CliCommand::new("database get", "Gets database value", "Usage: database get <family> <key>\n       Retrieves an entry in the Starling database for a given\n       family and key.\n", |call| {
            let [family, key] = call.args() else { return CliResult::ShowUsage };
            let (family, key) = (family.clone(), key.clone());
            match call.core.db().get(&family, &key) {
                Ok(Some(value)) => {
                    let _ = writeln!(call, "Value: {value}");
                    CliResult::Success
                }
                Ok(None) => {
                    call.print("Database entry not found.\n");
                    CliResult::Failure
                }
                Err(e) => report(call, e),
            }
        }),
        CliCommand::new("database del", "Removes database key/value", "Usage: database del <family> <key>\n       Deletes an entry in the Starling database for a given\n       family and key.\n", |call| {
            let [family, key] = call.args() else { return CliResult::ShowUsage };
            let (family, key) = (family.clone(), key.clone());
            match call.core.db().del(&family, &key) {
                Ok(true) => {
                    call.print("Database entry removed.\n");
                    CliResult::Success
                }
                Ok(false) => {
                    call.print("Database entry does not exist.\n");
                    CliResult::Failure
                }
                Err(e) => report(call, e),
            }
        }),
        CliCommand::new("database deltree", "Removes database keytree/values", "Usage: database deltree <family> [keytree]\n       Deletes a family or specific keytree within a family\n       in the Starling database.\n", |call| {
            let (family, subtree) = match call.args() {
                [f] => (f.clone(), None),
                [f, t] => (f.clone(), Some(t.clone())),
                _ => return CliResult::ShowUsage,
            };
            match call.core.db().deltree(&family, subtree.as_deref()) {
                Ok(n) => {
                    let _ = writeln!(call, "{n} database entries removed.");
                    CliResult::Success
                }
                Err(e) => report(call, e),
            }
        }),
        CliCommand::new("database show", "Shows database contents", "Usage: database show [family [keytree]]\n       Shows Starling database contents, optionally restricted\n       to a given family, or family and keytree.\n", |call| {
            let prefix = match call.args() {
                [] => String::new(),
                [f] => format!("/{}", f.trim_matches('/')),
                [f, t] => format!("/{}/{}", f.trim_matches('/'), t.trim_matches('/')),
                _ => return CliResult::ShowUsage,
            };
            match call.core.db().show(&prefix) {
                Ok(rows) => {
                    for (key, value) in &rows {
                        let _ = writeln!(call, "{key:<50}: {value:<25}");
                    }
                    let _ = writeln!(call, "{} results found.", rows.len());
                    CliResult::Success
                }
                Err(e) => report(call, e),
            }
        }),
    ]
}

pub(crate) fn plural(n: impl Into<u64>) -> &'static str {
    if n.into() == 1 {
        ""
    } else {
        "s"
    }
}

/// Asterisk's `print_uptimestr`: "1 day, 2 hours, 3 minutes, 4 seconds".
fn uptime_words(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "<1 second".into();
    }
    let mut parts = Vec::new();
    for (unit, size) in
        [("year", 31_536_000), ("week", 604_800), ("day", 86_400), ("hour", 3_600), ("minute", 60), ("second", 1)]
    {
        let n = secs / size;
        secs %= size;
        if n > 0 {
            parts.push(format!("{n} {unit}{}", plural(n)));
        }
    }
    parts.join(", ")
}

fn show_uptime(call: &mut CliCall<'_>) -> CliResult {
    let seconds = match call.args() {
        [] => false,
        [w] if w.eq_ignore_ascii_case("seconds") => true,
        _ => return CliResult::ShowUsage,
    };
    let up = call.core.uptime();
    let since_reload = call.core.last_reload().elapsed().unwrap_or_default();
    if seconds {
        let _ = writeln!(call, "System uptime: {}\nLast reload: {}", up.as_secs(), since_reload.as_secs());
    } else {
        let _ = writeln!(call, "System uptime: {}\nLast reload: {}", uptime_words(up), uptime_words(since_reload));
    }
    CliResult::Success
}

fn show_channels(call: &mut CliCall<'_>) -> CliResult {
    let mode = match call.args() {
        [] => "",
        [m] if ["concise", "verbose", "count"].contains(&m.to_ascii_lowercase().as_str()) => m.as_str(),
        _ => return CliResult::ShowUsage,
    }
    .to_ascii_lowercase();
    let channels = call.core.channels().list();
    match mode.as_str() {
        "" => {
            let _ = writeln!(
                call,
                "{:<20.20} {:<20.20} {:<7.7} {:<30.30}",
                "Channel", "Location", "State", "Application(Data)"
            );
            for c in &channels {
                let _ = writeln!(
                    call,
                    "{:<20.20} {:<20.20} {:<7.7} {:<30.30}",
                    c.name,
                    c.location,
                    c.state.as_str(),
                    c.application
                );
            }
        }
        "concise" => {
            for c in &channels {
                let _ = writeln!(
                    call,
                    "{}!{}!{}!{}",
                    c.name,
                    c.location.replace(['@', ':'], "!"),
                    c.state.as_str(),
                    c.application
                );
            }
            return CliResult::Success;
        }
        "verbose" => {
            let _ = writeln!(call, "{:<20} {:<20} {:<7} {:<30}", "Channel", "Location", "State", "Application(Data)");
            for c in &channels {
                let _ =
                    writeln!(call, "{:<20} {:<20} {:<7} {:<30}", c.name, c.location, c.state.as_str(), c.application);
            }
        }
        _ => {}
    }
    let count = channels.len() as u64;
    let calls = channels.iter().filter(|c| c.is_call).count() as u64;
    let _ = writeln!(call, "{count} active channel{}", plural(count));
    let maxcalls = call.core.settings().maxcalls;
    if maxcalls > 0 {
        let percent = calls as f64 * 100.0 / f64::from(maxcalls);
        let _ = writeln!(call, "{calls} of {maxcalls} max active call{} ({percent:5.2}% of capacity)", plural(calls));
    } else {
        let _ = writeln!(call, "{calls} active call{}", plural(calls));
    }
    let processed = call.core.channels().calls_processed();
    let _ = writeln!(call, "{processed} call{} processed", plural(processed));
    CliResult::Success
}

fn show_settings(call: &mut CliCall<'_>) -> CliResult {
    let s = call.core.settings().clone();
    let started = crate::chrono::DateTime::<crate::chrono::Local>::from(call.core.started_at());
    let reloaded = crate::chrono::DateTime::<crate::chrono::Local>::from(call.core.last_reload());
    let verbose = logger::verbose(call.console);
    let debug = logger::debug(call.console);
    let out = format!(
        "\nPBX Core settings\n-----------------\n  Version:                     {}\n  Build id:                    {}\n  System name:                 {}\n  Maximum calls:               {}\n  Root console verbosity:      {verbose}\n  Current console verbosity:   {verbose}\n  Debug level:                 {debug}\n  Running as user:             {}\n  Running under group:         {}\n  Startup time:                {}\n  Last reload time:            {}\n\n* Directories\n  -------------\n  Configuration file:          {}\n  Configuration directory:     {}\n  Module directory:            {}\n  Run/Sockets directory:       {}\n  PID file:                    {}\n  Log directory:               {}\n  Database directory:          {}\n  Spool directory:             {}\n  Sounds directory:            {}\n",
        crate::VERSION,
        crate::BUILD_ID,
        if s.systemname.is_empty() { "<none>" } else { &s.systemname },
        if s.maxcalls == 0 { "Not set".to_owned() } else { s.maxcalls.to_string() },
        s.runuser.as_ref().map_or("Not set", |u| u.name.as_str()),
        s.rungroup.as_ref().map_or("Not set", |g| g.name.as_str()),
        started.format("%Y-%m-%d %H:%M:%S"),
        reloaded.format("%Y-%m-%d %H:%M:%S"),
        s.config_file.display(),
        s.etcdir.display(),
        s.moddir.display(),
        s.rundir.display(),
        s.pid_file().display(),
        s.logdir.display(),
        s.dbdir.display(),
        s.spooldir.display(),
        s.soundsdir.display(),
    );
    call.print(&out);
    CliResult::Success
}

fn show_help(call: &mut CliCall<'_>) -> CliResult {
    let topic: Vec<String> = call.args().iter().map(|w| w.to_ascii_lowercase()).collect();
    let commands = call.core.cli().commands();
    if !topic.is_empty() {
        let wanted = topic.join(" ");
        if let Some(command) = commands.iter().find(|c| c.words().collect::<Vec<_>>().join(" ") == wanted) {
            call.print(&command.usage);
            if !command.usage.ends_with('\n') {
                call.print("\n");
            }
            return CliResult::Success;
        }
    }
    let mut shown = 0;
    for command in &commands {
        let words: Vec<&str> = command.words().collect();
        let matches = topic.len() <= words.len()
            && topic.iter().zip(&words).all(|(t, w)| w.to_ascii_lowercase().starts_with(t.as_str()));
        if matches {
            let _ = writeln!(call, "{:>30} -- {}", command.command, command.summary);
            shown += 1;
        }
    }
    if shown == 0 {
        let _ = writeln!(call, "No such command '{}'.", topic.join(" "));
        return CliResult::Failure;
    }
    CliResult::Success
}

fn set_level(
    call: &mut CliCall<'_>,
    what: &str,
    get: fn(crate::cli::ConsoleId) -> u8,
    set: fn(crate::cli::ConsoleId, u8),
) -> CliResult {
    let level = match call.args() {
        [w] if w.eq_ignore_ascii_case("off") => 0,
        [w] => match w.parse::<u8>() {
            Ok(n) => n,
            Err(_) => return CliResult::ShowUsage,
        },
        _ => return CliResult::ShowUsage,
    };
    let old = get(call.console);
    set(call.console, level);
    if level == 0 {
        let _ = writeln!(call, "{what} is now OFF");
    } else if old == level {
        let _ = writeln!(call, "{what} is at least {level}");
    } else {
        let _ = writeln!(call, "{what} was {old} and is now {level}");
    }
    CliResult::Success
}

/// `channel originate SIP/bob application Echo` (or `extension 600@default`): dials the
/// channel and, once it answers (within 30 s), runs the application or the dialplan on it.
fn originate_outbound(call: &mut crate::cli::CliCall<'_>, target: &str, rest: &[String]) -> CliResult {
    use crate::originate::{Destination, Originate};
    let core = call.core.clone();
    let kind = rest.first().map(|k| k.to_ascii_lowercase()).unwrap_or_default();
    let destination = match kind.as_str() {
        "application" => match rest.get(1).and_then(|name| core.apps().get(name)) {
            Some(app) => Destination::Application { app, data: rest.get(2..).map(|r| r.join(" ")).unwrap_or_default() },
            None => {
                let _ = writeln!(call, "No such application");
                return CliResult::Failure;
            }
        },
        "extension" => {
            let spec = rest.get(1).cloned().unwrap_or_else(|| "s@default".into());
            let (e, c) = spec.split_once('@').unwrap_or((spec.as_str(), "default"));
            let exten = if e.is_empty() { "s".into() } else { e.to_owned() };
            Destination::Extension { context: c.to_owned(), exten, priority: 1 }
        }
        _ => return CliResult::ShowUsage,
    };
    if core.techs().get(target.split('/').next().unwrap_or("")).is_none() {
        let _ = writeln!(
            call,
            "Unable to request channel {target}: {}",
            crate::frame::Cause::REQUESTED_CHAN_UNAVAIL.name()
        );
        return CliResult::Failure;
    }
    let request = Originate {
        target: target.to_owned(),
        destination,
        timeout: std::time::Duration::from_secs(30),
        caller: Default::default(),
        variables: Vec::new(),
        account: String::new(),
    };
    let _entered = core.runtime().enter();
    crate::tokio::spawn(async move {
        let _ = core.originate(request).await;
    });
    CliResult::Success
}

/// One hint as pbx.c's `handle_show_hints` prints it (no presence states here: `not_set`).
fn hint_line(hint: &crate::hints::HintSummary) -> String {
    let uri = format!("{}@{}", hint.exten, hint.context);
    format!(
        "{:<30.30}: {:<60.60}  State:{:<15.15} Presence:{:<15.15} Watchers {:>2}\n",
        uri,
        hint.hint,
        hint.state.as_str(),
        "not_set",
        hint.watchers
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::ChannelState;
    use crate::cli::ConsoleId;

    #[test]
    fn uptime_is_worded_as_asterisk_words_it() {
        assert_eq!(uptime_words(Duration::from_secs(0)), "<1 second");
        assert_eq!(uptime_words(Duration::from_secs(3_661)), "1 hour, 1 minute, 1 second");
        assert_eq!(uptime_words(Duration::from_secs(172_800 + 120)), "2 days, 2 minutes");
    }

    #[test]
    fn version_and_channels() {
        let core = Core::for_tests();
        let run = |line: &str| core.cli().execute(&core, ConsoleId::Root, line);
        assert_eq!(run("core show version"), format!("Starling {}\n", crate::VERSION));
        let out = run("core show channels");
        assert!(out.ends_with("0 active channels\n0 active calls\n0 calls processed\n"), "{out}");
        let _c = core.channels().register("SIP/alice-00000001", ChannelState::Up, true);
        let out = run("core show channels");
        assert!(out.contains("SIP/alice-00000001"), "{out}");
        assert!(out.ends_with("1 active channel\n1 active call\n1 call processed\n"), "{out}");
        assert_eq!(run("core show channels count"), "1 active channel\n1 active call\n1 call processed\n");
        assert!(run("core show channels bogus").starts_with("Usage: core show channels"));
    }

    #[test]
    fn help_lists_and_explains() {
        let core = Core::for_tests();
        let out = core.cli().execute(&core, ConsoleId::Root, "core show help module");
        assert!(out.contains("module show -- List modules and info"), "{out}");
        assert!(!out.contains("core show version"), "{out}");
        let out = core.cli().execute(&core, ConsoleId::Root, "core show help core show version");
        assert!(out.starts_with("Usage: core show version"), "{out}");
    }

    #[test]
    fn shutdown_requests() {
        let core = Core::for_tests();
        core.cli().execute(&core, ConsoleId::Root, "core stop gracefully");
        assert_eq!(core.shutdown_pending(), Some(ShutdownMode::Gracefully));
        core.cli().execute(&core, ConsoleId::Root, "core abort shutdown");
        assert_eq!(core.shutdown_pending(), None);
        core.cli().execute(&core, ConsoleId::Root, "core stop now");
        core.request_shutdown(ShutdownMode::Gracefully);
        assert_eq!(core.shutdown_pending(), Some(ShutdownMode::Now), "now is not weakened to gracefully");
        assert!(!core.abort_shutdown());
    }
}
