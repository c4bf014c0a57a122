//! The manager's actions: the core ones (Login... ExtensionState) and those modules register.
//! Each reply is rendered with the action's `ActionID` after the `Response` line (and after
//! the `Event` line of each list event), as Asterisk does.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use starling_core::bridge::BridgeSummary;
use starling_core::channel::{Channel, ChannelSummary, Jump, JumpTarget};
use starling_core::events::Event;
use starling_core::frame::{CallerId, Cause, Frame, Reply as ChannelReply};
use starling_core::manager::{list, Message, Reply};
use starling_core::originate::{Destination, Originate};
use starling_core::security::{SecurityEvent, SecurityEventType};
use starling_core::{tokio, tracing, verbose, Core};

use crate::config::{parse_classes, ALL};
use crate::{Next, Session, State};

/// Core actions: name, required write classes (any of them; empty = none), synopsis.
const CORE_ACTIONS: &[(&str, &str, &str)] = &[
    ("Login", "", "Login Manager."),
    ("Logoff", "", "Logoff Manager."),
    ("Challenge", "", "Generate Challenge for MD5 Auth."),
    ("Ping", "", "Keepalive command."),
    ("Events", "", "Control Event Flow."),
    ("ListCommands", "", "List available manager commands."),
    ("CoreStatus", "system,reporting", "Show PBX core status variables."),
    ("CoreSettings", "system,reporting", "Show PBX core settings (version etc)."),
    ("CoreShowChannels", "system,reporting", "List currently active channels."),
    ("Status", "system,call,reporting", "List channel status."),
    ("Command", "command", "Execute Starling CLI Command."),
    ("Hangup", "system,call", "Hangup channel."),
    ("Redirect", "call", "Redirect (transfer) a call."),
    ("Originate", "originate", "Originate a call."),
    ("Getvar", "call,reporting", "Gets a channel variable or function value."),
    ("Setvar", "call", "Sets a channel variable or function value."),
    ("DBGet", "system,reporting", "Get DB Entry."),
    ("DBPut", "system", "Put DB entry."),
    ("DBDel", "system", "Delete DB entry."),
    ("Reload", "system,config", "Send a reload event."),
    ("ModuleLoad", "system", "Module management."),
    ("ModuleCheck", "system", "Check if module is loaded."),
    ("ExtensionState", "call,reporting", "Check Extension Status."),
    ("ExtensionStateList", "call,reporting", "List the current known extension states."),
];

/// Every action (core and modules'): (name, privilege, synopsis), sorted by name.
pub(crate) fn all(core: &Core) -> Vec<(String, String, String)> {
    let mut all: Vec<(String, String, String)> = CORE_ACTIONS
        .iter()
        .map(|(n, p, s)| (n.to_string(), if p.is_empty() { "<none>".into() } else { p.to_string() }, s.to_string()))
        .collect();
    for action in core.manager_actions().all() {
        all.push((action.name.to_owned(), action.privilege.to_owned(), action.synopsis.to_owned()));
    }
    all.sort_by_key(|(name, _, _)| name.to_ascii_lowercase());
    all
}

/// Renders a reply with the action's ActionID.
fn render(reply: &[Message], action_id: Option<&str>) -> String {
    let mut out = String::new();
    for message in reply {
        match action_id {
            Some(id) => {
                let mut stamped = Message::default();
                let mut headers = message.headers.iter();
                if let Some(first) = headers.next() {
                    stamped.headers.push(first.clone());
                }
                stamped.headers.push(("ActionID".into(), id.to_owned()));
                stamped.headers.extend(headers.cloned());
                out.push_str(&stamped.render());
            }
            None => out.push_str(&message.render()),
        }
    }
    out
}

fn allowed(session: &Session, privilege: &str) -> bool {
    let needed = parse_classes(privilege).unwrap_or(ALL);
    needed == 0 || session.user.as_ref().is_some_and(|u| u.write & needed != 0)
}

/// Handles one message; returns what to write and what to do next.
pub(crate) async fn handle(state: &Arc<State>, session: &mut Session, message: Message) -> (String, Next) {
    let action_id = message.get("ActionID").map(str::to_owned);
    let Some(action) = message.value("Action").map(str::to_owned) else {
        return (render(&[Message::error("Missing action in request")], action_id.as_deref()), Next::Continue);
    };
    let lower = action.to_ascii_lowercase();
    let (reply, next) = match lower.as_str() {
        "login" => login(state, session, &message),
        "challenge" => (challenge(state, session, &message), Next::Continue),
        "logoff" => (
            vec![Message::default().with("Response", "Goodbye").with("Message", "Thanks for all the fish.")],
            Next::Close,
        ),
        _ if session.user.is_none() => (vec![Message::error("Permission denied")], Next::Continue),
        _ => (run(state, session, &action, &message, action_id.as_deref()).await, Next::Continue),
    };
    (render(&reply, action_id.as_deref()), next)
}

/// Asterisk's `function_capable_string_allowed_with_auths`: text that can evaluate functions
/// (a Getvar variable, Status's `Variables`, Originate's `Data` and `Variable`s) may not name
/// `SHELL` or `EVAL` unless the user has the `system` write class.
fn function_capable_string_allowed(session: &Session, text: &str) -> bool {
    has_system_class(session) || !(text.contains("SHELL") || text.contains("EVAL"))
}

fn has_system_class(session: &Session) -> bool {
    let system = crate::config::class_bit("system").unwrap_or(0);
    session.user.as_ref().is_some_and(|u| u.write & system != 0)
}

/// An `Access Forbidden` refusal: the error reply, and a NOTICE line naming who asked what.
fn forbidden(session: &Session, message: &str, what: &str) -> Reply {
    let user = session.user.as_ref().map_or("", |u| u.name.as_str());
    tracing::info!("Manager '{user}' from {}: {message} ({})", session.addr.ip(), what.escape_debug());
    vec![Message::error(message)]
}

/// A dummy channel that evaluates as the manager does: functions marked dangerous refused
/// (unless `live_dangerously`), as in Asterisk's manager threads.
fn manager_dummy(core: &Arc<Core>) -> Channel {
    let mut dummy = Channel::dummy(core);
    dummy.inhibit_escalations(true);
    dummy
}

/// Whether two secrets are equal, in a time that does not depend on where they differ (only
/// on their lengths), so that timing a refusal tells nothing about the secret.
fn same_secret(given: &str, secret: &str) -> bool {
    let (given, secret) = (given.as_bytes(), secret.as_bytes());
    let differ = given.iter().zip(secret).fold(0u8, |acc, (a, b)| acc | (a ^ b));
    // black_box: the compiler may not turn the fold back into an early-exit comparison.
    std::hint::black_box(differ) == 0 && given.len() == secret.len()
}

/// Reports a security event about this session's login (Service `AMI`), as manager.c's
/// report_* functions.
fn report(
    state: &Arc<State>,
    session: &Session,
    kind: SecurityEventType,
    user: &str,
    fields: Vec<(&'static str, String)>,
) {
    let event = SecurityEvent {
        kind,
        service: "AMI",
        account_id: user.to_owned(),
        session_id: format!("0x{:x}", session.id),
        transport: "TCP",
        local: session.local,
        remote: session.addr,
        fields,
    };
    starling_core::security::report(state.core().events(), &event);
}

/// Login, as manager.c's authenticate(): an unknown user, a source the user's ACL refuses,
/// a wrong secret or key are each logged (NOTICE, manager.c's words, which fail2ban's
/// asterisk filter reads) and reported as security events; a login as SuccessfulAuth.
fn login(state: &Arc<State>, session: &mut Session, message: &Message) -> (Reply, Next) {
    let conf = state.conf();
    let username = message.get("Username").unwrap_or("").trim();
    let ip = session.addr.ip();
    let Some(user) = conf.user(username) else {
        tracing::info!(target: "manager.c", "{ip} tried to authenticate with nonexistent user '{username}'");
        report(state, session, SecurityEventType::InvalidAccountId, username, Vec::new());
        return (vec![Message::error("Authentication failed")], Next::CloseSlowly);
    };
    if !starling_core::acl::allows(&user.acl, ip) {
        tracing::info!(target: "manager.c", "{ip} failed to pass IP ACL as '{username}'");
        report(state, session, SecurityEventType::FailedAcl, username, Vec::new());
        return (vec![Message::error("Authentication failed")], Next::CloseSlowly);
    }
    let md5 = message.get("AuthType").is_some_and(|t| t.eq_ignore_ascii_case("md5"));
    let good = if md5 {
        match (&session.challenge, message.get("Key")) {
            (Some(challenge), Some(key)) => {
                let expected = format!("{:x}", md5::compute(format!("{challenge}{}", user.secret)));
                let good = same_secret(&expected, &key.trim().to_ascii_lowercase());
                if !good {
                    tracing::info!(target: "manager.c", "{ip} failed to authenticate as '{username}'");
                    let fields = vec![
                        ("Challenge", challenge.clone()),
                        ("Response", key.trim().to_owned()),
                        ("ExpectedResponse", String::new()),
                    ];
                    report(state, session, SecurityEventType::ChallengeResponseFailed, username, fields);
                    return (vec![Message::error("Authentication failed")], Next::CloseSlowly);
                }
                good
            }
            _ => false,
        }
    } else {
        message.get("Secret").is_some_and(|secret| same_secret(secret, &user.secret))
    };
    if !good {
        tracing::info!(target: "manager.c", "{ip} failed to authenticate as '{username}'");
        report(state, session, SecurityEventType::InvalidPassword, username, Vec::new());
        return (vec![Message::error("Authentication failed")], Next::CloseSlowly);
    }
    report(state, session, SecurityEventType::SuccessfulAuth, username, vec![("UsingPassword", "1".to_owned())]);
    session.events = events_mask(message.get("Events"), user.read);
    session.user = Some(user.clone());
    state.logged_in(session);
    verbose!(2, "Manager '{username}' logged on from {ip}");
    let reply = vec![Message::success().with("Message", "Authentication accepted")];
    // Asterisk tells a new session the system is up (FullyBooted) when it may read system events.
    if session.events & crate::config::class_bit("system").unwrap_or(0) != 0 {
        let core = state.core();
        let since = |t: SystemTime| t.elapsed().map_or(0, |d| d.as_secs()).to_string();
        let booted = Message::event("FullyBooted")
            .with("Privilege", "system,all")
            .with("Uptime", since(core.started_at()))
            .with("LastReload", since(core.last_reload()))
            .with("Status", "Fully Booted");
        let _ = session.later.send(booted.render());
    }
    (reply, Next::Continue)
}

/// `Events: on|off|class,class` narrowed to what the user may read.
fn events_mask(text: Option<&str>, read: u32) -> u32 {
    match text.map(str::trim) {
        None => read,
        Some(t) if t.eq_ignore_ascii_case("on") => read,
        Some(t) if t.eq_ignore_ascii_case("off") => 0,
        Some(t) => parse_classes(t).unwrap_or(0) & read,
    }
}

fn challenge(state: &Arc<State>, session: &mut Session, message: &Message) -> Reply {
    if !message.get("AuthType").is_some_and(|t| t.eq_ignore_ascii_case("md5")) {
        return vec![Message::error("Must specify AuthType")];
    }
    let challenge = session.challenge.get_or_insert_with(|| state.new_challenge()).clone();
    vec![Message::success().with("Challenge", challenge)]
}

/// The actions of a logged-in session.
async fn run(state: &Arc<State>, session: &mut Session, action: &str, m: &Message, action_id: Option<&str>) -> Reply {
    let core = state.core().clone();
    let lower = action.to_ascii_lowercase();
    if let Some((_, privilege, _)) = CORE_ACTIONS.iter().find(|(n, _, _)| n.eq_ignore_ascii_case(action)) {
        if !allowed(session, privilege) {
            return vec![Message::error("Permission denied")];
        }
    } else if let Some(registered) = core.manager_actions().get(action) {
        if !allowed(session, registered.privilege) {
            return vec![Message::error("Permission denied")];
        }
        let handler = registered.handler.clone();
        let m = m.clone();
        return tokio::task::spawn_blocking(move || handler(&m)).await.unwrap_or_default();
    } else {
        return unknown(action);
    }
    match lower.as_str() {
        "ping" => {
            let now = SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            vec![Message::success()
                .with("Ping", "Pong")
                .with("Timestamp", format!("{}.{:06}", now.as_secs(), now.subsec_micros()))]
        }
        "events" => {
            // manager.c's set_eventmask: a number, on/off (ast_true/ast_false) or classes;
            // nothing is an error and leaves the mask as it was.
            let read = session.user.as_ref().map_or(0, |u| u.read);
            let Some(mask) = event_mask(m.get("EventMask").unwrap_or("")) else {
                return vec![Message::error("Invalid event mask")];
            };
            session.events = mask & read;
            vec![Message::success().with("Events", if mask == 0 { "Off" } else { "On" })]
        }
        "listcommands" => {
            // Those the user may run, as manager.c lists them (its write classes, or none needed).
            let mut reply = Message::success();
            for (name, privilege, synopsis) in all(&core) {
                let needed = if privilege == "<none>" { "" } else { privilege.as_str() };
                if allowed(session, needed) {
                    reply = reply.with(&name, format!("{synopsis} (Priv: {privilege})"));
                }
            }
            vec![reply]
        }
        "corestatus" => {
            let local = |t: SystemTime| starling_core::chrono::DateTime::<starling_core::chrono::Local>::from(t);
            let (started, reloaded) = (local(core.started_at()), local(core.last_reload()));
            vec![Message::success()
                .with("CoreStartupDate", started.format("%Y-%m-%d").to_string())
                .with("CoreStartupTime", started.format("%H:%M:%S").to_string())
                .with("CoreReloadDate", reloaded.format("%Y-%m-%d").to_string())
                .with("CoreReloadTime", reloaded.format("%H:%M:%S").to_string())
                .with("CoreCurrentCalls", core.channels().active_channels().to_string())]
        }
        "coresettings" => {
            let settings = core.settings();
            vec![Message::success()
                .with("AMIversion", "9.0.0")
                .with("AsteriskVersion", format!("Starling {}", starling_core::VERSION))
                .with("SystemName", &settings.systemname)
                .with("CoreMaxCalls", settings.maxcalls.to_string())
                .with("CoreMaxLoadAvg", "0.000000")
                .with("CoreRunUser", settings.runuser.as_ref().map_or("", |u| u.name.as_str()))
                .with("CoreRunGroup", settings.rungroup.as_ref().map_or("", |g| g.name.as_str()))
                .with("CoreMaxFilehandles", "0")
                .with("CoreRealTimeEnabled", "No")
                .with("CoreCDRenabled", if core.cdr().settings().enable { "Yes" } else { "No" })
                .with("CoreHTTPenabled", "No")
                .with("SoundsSearchCustomDir", "No")]
        }
        "coreshowchannels" => core_show_channels(&core),
        "status" => status(&core, session, m).await,
        "command" => {
            let Some(command) = m.value("Command") else { return vec![Message::error("No command provided")] };
            let command = command.to_owned();
            let output = {
                let core = core.clone();
                tokio::task::spawn_blocking(move || {
                    core.cli().execute(&core, starling_core::cli::ConsoleId::Root, &command)
                })
                .await
                .unwrap_or_default()
            };
            let mut reply = Message::success().with("Message", "Command output follows");
            for line in output.lines() {
                reply = reply.with("Output", line);
            }
            vec![reply]
        }
        "hangup" => {
            let Some(channel) = m.value("Channel") else { return vec![Message::error("No channel specified")] };
            let cause = m.value("Cause").and_then(|c| c.parse::<u16>().ok()).map_or(Cause::NORMAL_CLEARING, Cause);
            if core.channels().send_frame(channel, Frame::Hangup(cause)) == 0 {
                return vec![Message::error("No such channel")];
            }
            vec![Message::success().with("Message", "Channel Hungup")]
        }
        "redirect" => redirect(&core, m),
        "originate" => originate(&core, session, m, action_id).await,
        "getvar" => {
            let Some(name) = m.value("Variable") else { return vec![Message::error("No variable specified")] };
            if !function_capable_string_allowed(session, name) {
                return forbidden(session, "GetVar Access Forbidden: Variable", name);
            }
            let value = match m.value("Channel") {
                Some(channel) => match core.channels().find(channel) {
                    Some(summary) => channel_value(&core, &summary, name).await,
                    None => return vec![Message::error("No such channel")],
                },
                // A function outside a call runs on a dummy channel, as Asterisk's Getvar does.
                None if name.ends_with(')') => manager_dummy(&core).getvar(name),
                None => core.global(name).unwrap_or_default(),
            };
            vec![Message::success().with("Variable", name).with("Value", value)]
        }
        "setvar" => {
            let Some(name) = m.value("Variable") else { return vec![Message::error("No variable specified")] };
            let value = m.get("Value").unwrap_or("").to_owned();
            // `NAME(args)` is the function's write (pbx_builtin_setvar_helper), refused here
            // when it is dangerous (the channel would refuse it too, but too late to answer).
            let function =
                name.find('(').filter(|_| name.ends_with(')')).and_then(|open| core.functions().get(&name[..open]));
            if function.as_ref().is_some_and(|f| !f.write_allowed(&manager_dummy(&core))) {
                return vec![Message::error("Variable not set")];
            }
            match m.value("Channel") {
                Some(channel) => {
                    if core.channels().send_frame(channel, Frame::SetVar(name.to_owned(), value)) == 0 {
                        return vec![Message::error("No such channel")];
                    }
                }
                None if function.is_some() => {
                    if !manager_dummy(&core).setvar_helper(name, &value) {
                        return vec![Message::error("Variable not set")];
                    }
                }
                None => {
                    core.set_global(name, &value);
                }
            }
            vec![Message::success().with("Message", "Variable Set")]
        }
        "dbget" => {
            let (Some(family), Some(key)) = (m.value("Family"), m.value("Key")) else {
                return vec![Message::error("No family specified.")];
            };
            match core.db().get(family, key) {
                Ok(Some(value)) => list(
                    "Result will follow",
                    vec![Message::event("DBGetResponse").with("Family", family).with("Key", key).with("Val", value)],
                    "DBGetComplete",
                ),
                _ => vec![Message::error("Database entry not found")],
            }
        }
        "dbput" => {
            let (Some(family), Some(key)) = (m.value("Family"), m.value("Key")) else {
                return vec![Message::error("No family specified")];
            };
            match core.db().put(family, key, m.get("Val").unwrap_or("")) {
                Ok(()) => vec![Message::success().with("Message", "Updated database successfully")],
                Err(_) => vec![Message::error("Failed to update entry")],
            }
        }
        "dbdel" => {
            let (Some(family), Some(key)) = (m.value("Family"), m.value("Key")) else {
                return vec![Message::error("No family specified.")];
            };
            match core.db().del(family, key) {
                Ok(true) => vec![Message::success().with("Message", "Key deleted successfully")],
                _ => vec![Message::error("Database entry not found")],
            }
        }
        "reload" => {
            // manager.c's action_reload, its texts for ast_module_reload's results.
            let module = m.value("Module").map(str::to_owned);
            let result = tokio::task::spawn_blocking(move || match module {
                Some(name) => core.loader().reload(&core, &name).map_err(|e| reload_error(&e, "")),
                None => {
                    core.reload();
                    Ok(())
                }
            })
            .await
            .unwrap_or(Err("An unknown error occurred"));
            match result {
                Ok(()) => vec![Message::success().with("Message", "Module Reloaded")],
                Err(e) => vec![Message::error(e)],
            }
        }
        "moduleload" => {
            // manager.c's manager_moduleload: load, unload, refresh (unload then load) and
            // reload (one module, or all without Module).
            let kind = m.value("LoadType").unwrap_or("").to_ascii_lowercase();
            if kind.is_empty() {
                return vec![Message::error("Incomplete ModuleLoad action.")];
            }
            let module = m.value("Module").map(str::to_owned);
            if module.is_none() && kind != "reload" {
                return vec![Message::error("Need module name")];
            }
            let module = module.unwrap_or_default();
            let result = tokio::task::spawn_blocking(move || match kind.as_str() {
                "load" => {
                    core.loader().load(&core, &module).map(|()| "Module loaded.").map_err(|_| "Could not load module.")
                }
                "unload" => {
                    let unloaded = core.loader().unload(&module);
                    core.hints_refresh();
                    unloaded.map(|()| "Module unloaded.").map_err(|_| "Could not unload module.")
                }
                "refresh" => core
                    .loader()
                    .unload(&module)
                    .and_then(|()| core.loader().load(&core, &module))
                    .map(|()| "Module unloaded and loaded.")
                    .map_err(|_| "Could not refresh module."),
                "reload" if module.is_empty() => {
                    core.reload();
                    Ok("All modules reloaded")
                }
                "reload" => core
                    .loader()
                    .reload(&core, &module)
                    .map(|()| "Module reloaded.")
                    .map_err(|e| reload_error(&e, " action")),
                _ => Err("Incomplete ModuleLoad action."),
            })
            .await
            .unwrap_or(Err("Could not load module."));
            match result {
                Ok(text) => vec![Message::success().with("Message", text)],
                Err(text) => vec![Message::error(text)],
            }
        }
        "modulecheck" => {
            // (No Module: ast_module_check of nothing, not loaded.)
            if m.value("Module").is_some_and(|module| core.loader().is_loaded(module)) {
                vec![Message::success().with("Version", "")]
            } else {
                vec![Message::error("Module not loaded")]
            }
        }
        "extensionstate" => {
            // manager.c's action_extensionstate: the hint's state, or -1 (Unknown) without one.
            let Some(exten) = m.value("Exten") else { return vec![Message::error("Extension not specified")] };
            let context = m.value("Context").unwrap_or("default");
            let status = core.extension_state(context, exten);
            let hint = core.hints().hint(context, exten).unwrap_or_default();
            vec![Message::success()
                .with("Message", "Extension Status")
                .with("Exten", exten)
                .with("Context", context)
                .with("Hint", hint)
                .with("Status", status.0.to_string())
                .with("StatusText", status.as_str())]
        }
        "extensionstatelist" => {
            let items = core
                .hints()
                .list()
                .into_iter()
                .map(|h| {
                    Message::event("ExtensionStatus")
                        .with("Exten", h.exten)
                        .with("Context", h.context)
                        .with("Hint", h.hint)
                        .with("Status", h.state.0.to_string())
                        .with("StatusText", h.state.as_str())
                })
                .collect();
            starling_core::manager::list("Extension Statuses will follow", items, "ExtensionStateListComplete")
        }
        // Every name in CORE_ACTIONS is matched above.
        _ => unknown(action),
    }
}

/// manager.c's texts for a failed module reload (`Reload`; `ModuleLoad` adds ` action` to the
/// second and a full stop to the first).
fn reload_error(error: &starling_core::loader::LoaderError, action: &str) -> &'static str {
    use starling_core::loader::LoaderError;
    use starling_core::module::ReloadError;
    match (error, action) {
        (LoaderError::NotLoaded(_), "") => "No such module",
        (LoaderError::NotLoaded(_), _) => "No such module.",
        (LoaderError::Reload { error: ReloadError::NotSupported, .. }, "") => "Module does not support reload",
        (LoaderError::Reload { error: ReloadError::NotSupported, .. }, _) => "Module does not support reload action.",
        _ => "An unknown error occurred",
    }
}

/// manager.c's strings_to_mask: digits are the mask itself, ast_false 0, ast_true every
/// class, else the classes named; `None` for nothing (an error).
fn event_mask(text: &str) -> Option<u32> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return Some(text.parse().unwrap_or(u32::MAX));
    }
    match starling_core::config::parse_bool(text) {
        Some(false) => Some(0),
        Some(true) => Some(ALL),
        None => Some(
            text.split(',')
                .map(|class| {
                    if class.trim().eq_ignore_ascii_case("all") {
                        ALL
                    } else {
                        crate::config::class_bit(class).unwrap_or(0)
                    }
                })
                .fold(0, |mask, bit| mask | bit),
        ),
    }
}

/// The reply to an action nobody registered.
fn unknown(action: &str) -> Reply {
    vec![Message::error(&format!(
        "Invalid/unknown command: {action}. Use Action: ListCommands to show available commands."
    ))]
}

/// How long a channel has to answer a question about itself (Getvar, Status's `Variables`):
/// a channel takes it between two frames it reads, so only one busy in something that does not
/// read (a `System()` command) is slower.
const CHANNEL_ANSWER: Duration = Duration::from_millis(500);

/// `${name}` on the live channel of `summary`, evaluated by the channel's own task (Asterisk's
/// `ast_func_read` or `pbx_retrieve_variable` under the channel's lock): a variable, a built-in,
/// a global or a function. A channel that does not answer in time: the variable as it was last
/// listed.
async fn channel_value(core: &Core, summary: &ChannelSummary, name: &str) -> String {
    let (reply, answer) = ChannelReply::new();
    if core.channels().send_frame(&summary.name, Frame::GetVar(name.to_owned(), reply)) > 0 {
        if let Ok(Ok(value)) = tokio::time::timeout(CHANNEL_ANSWER, answer).await {
            return value;
        }
    }
    summary.variables.get(name).cloned().unwrap_or_default()
}

/// The bridge a channel is in (its `BridgeUniqueid`), or empty.
fn bridge_of<'a>(bridges: &'a [BridgeSummary], channel: &str) -> &'a str {
    bridges.iter().find(|b| b.channels.iter().any(|c| c == channel)).map_or("", |b| b.id.as_str())
}

/// `HH:MM:SS` since the channel was created.
fn duration(summary: &ChannelSummary) -> String {
    let secs = summary.created.elapsed().as_secs();
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// `CoreShowChannels`: one `CoreShowChannel` per channel, in Asterisk's list framing.
fn core_show_channels(core: &Core) -> Reply {
    let bridges = core.bridges().list();
    let items = core
        .channels()
        .list()
        .into_iter()
        .map(|c| {
            let mut message = Message::event("CoreShowChannel");
            message.headers.extend(c.snapshot_fields(Event::new("CoreShowChannel", "call")).fields);
            message
                .with("Application", &c.app)
                .with("ApplicationData", &c.data)
                .with("Duration", duration(&c))
                .with("BridgeId", bridge_of(&bridges, &c.name))
        })
        .collect();
    list("Channels will follow", items, "CoreShowChannelsComplete")
}

/// `Status` (one channel with `Channel`, else all): Asterisk 20's `generate_status` fields.
/// `Variables: a,b` adds `Variable: a=value` for each (functions too, evaluated on the
/// channel), `AllVariables: true` every variable set on it. Starling keeps no dialled number,
/// translation path or call groups: `DNID`, `Readtrans` and `Writetrans` are empty and the groups 0.
async fn status(core: &Core, session: &Session, m: &Message) -> Reply {
    if let Some(variables) = m.value("Variables").filter(|v| !function_capable_string_allowed(session, v)) {
        return forbidden(session, "Status Access Forbidden: Variables", variables);
    }
    let only = m.value("Channel");
    let channels: Vec<ChannelSummary> =
        core.channels().list().into_iter().filter(|c| only.is_none_or(|name| c.name == name)).collect();
    if only.is_some() && channels.is_empty() {
        return vec![Message::error("No such channel")];
    }
    let wanted: Vec<&str> = m
        .value("Variables")
        .map(|v| v.split(',').map(str::trim).filter(|v| !v.is_empty()).collect())
        .unwrap_or_default();
    let all_variables = m.value("AllVariables").and_then(starling_core::config::parse_bool).unwrap_or(false);
    let bridges = core.bridges().list();
    let or_unknown = |s: &str| if s.is_empty() { "<unknown>".to_owned() } else { s.to_owned() };
    let mut items = Vec::with_capacity(channels.len());
    for c in channels {
        let mut message = Message::event("Status").with("Privilege", "Call");
        message.headers.extend(c.snapshot_fields(Event::new("Status", "call")).fields);
        let hangup_at =
            c.hangup_at.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs());
        message = message
            .with("Type", c.name.split('/').next().unwrap_or(""))
            .with("DNID", "")
            .with("EffectiveConnectedLineNum", or_unknown(&c.connected.number))
            .with("EffectiveConnectedLineName", or_unknown(&c.connected.name))
            .with("TimeToHangup", hangup_at.to_string())
            .with("BridgeID", bridge_of(&bridges, &c.name))
            .with("Application", &c.app)
            .with("Data", &c.data)
            .with("Nativeformats", format!("({})", c.native_format))
            .with("Readformat", c.native_format)
            .with("Readtrans", "")
            .with("Writeformat", c.native_format)
            .with("Writetrans", "")
            .with("Callgroup", "0")
            .with("Pickupgroup", "0")
            .with("Seconds", c.created.elapsed().as_secs().to_string());
        for name in &wanted {
            let value = channel_value(core, &c, name).await;
            message = message.with("Variable", format!("{name}={value}"));
        }
        if all_variables {
            for (name, value) in &c.variables {
                message = message.with("Variable", format!("{name}={value}"));
            }
        }
        items.push(message);
    }
    list("Channel status will follow", items, "StatusComplete")
}

fn redirect(core: &Core, m: &Message) -> Reply {
    let Some(channel) = m.value("Channel") else { return vec![Message::error("Channel not specified")] };
    let Some(exten) = m.value("Exten") else { return vec![Message::error("Exten not specified")] };
    let priority = m.value("Priority").unwrap_or("1");
    let target = match priority.parse::<u32>() {
        Ok(n) if n > 0 => JumpTarget::Priority(n),
        _ => JumpTarget::Label(priority.to_owned()),
    };
    let jump = Jump { context: m.value("Context").map(str::to_owned), exten: Some(exten.to_owned()), target };
    if core.channels().send_frame(channel, Frame::Redirect(jump)) == 0 {
        return vec![Message::error(&format!("Channel does not exist: {channel}"))];
    }
    vec![Message::success().with("Message", "Redirect successful")]
}

/// Whether an Originate of `app(data)` needs the `system` write class, as Asterisk's
/// `action_originate` decides: an application that runs programs or other applications
/// (any name containing `system`, `exec`, `agi`, `mixmonitor`, `externalivr` or `originate`,
/// so `ExecIf(1?System(...))` and `TryExec` too), or data that evaluates `SHELL` or `EVAL`.
/// `Some` names what was refused (`Application` or `Data`).
fn originate_needs_system(app: &str, data: &str) -> Option<&'static str> {
    let app = app.to_ascii_lowercase();
    if ["system", "exec", "agi", "mixmonitor", "externalivr", "originate"].iter().any(|bad| app.contains(bad)) {
        Some("Application")
    } else if data.contains("SHELL") || data.contains("EVAL") {
        Some("Data")
    } else {
        None
    }
}

/// `Originate`: synchronous (the reply waits for the answer) or `Async: true` (the reply at
/// once, then an `OriginateResponse` event carrying the ActionID).
async fn originate(core: &Arc<Core>, session: &Session, m: &Message, action_id: Option<&str>) -> Reply {
    let Some(target) = m.value("Channel") else { return vec![Message::error("Channel not specified")] };
    if !target.contains('/') {
        return vec![Message::error("Invalid channel")];
    }
    let destination = match (m.value("Application"), m.value("Exten")) {
        (Some(app), _) => {
            let data = m.get("Data").unwrap_or("");
            if !has_system_class(session) {
                if let Some(what) = originate_needs_system(app, data) {
                    return forbidden(
                        session,
                        &format!("Originate Access Forbidden: {what}"),
                        &format!("{app}({data})"),
                    );
                }
            }
            let Some(app) = core.apps().get(app) else { return vec![Message::error("Application does not exist")] };
            Destination::Application { app, data: data.to_owned() }
        }
        (None, Some(exten)) => {
            let priority = m.value("Priority").and_then(|p| p.parse().ok()).unwrap_or(1);
            Destination::Extension {
                context: m.value("Context").unwrap_or("default").to_owned(),
                exten: exten.to_owned(),
                priority,
            }
        }
        (None, None) => return vec![Message::error("Exten or Application not specified")],
    };
    // The variables are set on a channel whose dialplan then runs outside the manager's
    // inhibition: one that names SHELL or EVAL needs the system class and live_dangerously.
    for variable in m.get_all("Variable") {
        if (variable.contains("SHELL") || variable.contains("EVAL"))
            && !(has_system_class(session) && core.settings().live_dangerously)
        {
            return forbidden(session, "Originate Access Forbidden: Variable", variable);
        }
    }
    let timeout = m.value("Timeout").and_then(|t| t.parse::<u64>().ok()).unwrap_or(30_000);
    let variables = m
        .get_all("Variable")
        .flat_map(|v| v.split(','))
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .collect();
    let request = Originate {
        target: target.to_owned(),
        destination: destination.clone(),
        timeout: Duration::from_millis(timeout),
        caller: m.value("CallerID").map(CallerId::parse).unwrap_or_default(),
        variables,
        account: m.get("Account").unwrap_or("").to_owned(),
    };
    let asynchronous = m.value("Async").and_then(starling_core::config::parse_bool).unwrap_or(false);
    if !asynchronous {
        return match core.originate(request).await {
            Ok(_) => vec![Message::success().with("Message", "Originate successfully queued")],
            Err(_) => vec![Message::error("Originate failed")],
        };
    }
    let core = core.clone();
    let action_id = action_id.map(str::to_owned);
    let caller = request.caller.clone();
    tokio::spawn(async move {
        let result = core.originate(request).await;
        let (response, reason, channel) = match &result {
            Ok(o) => ("Success", 4, Some(o.clone())),
            Err(f) => ("Failure", f.reason, f.channel.clone()),
        };
        let (context, exten, app, data) = match &destination {
            Destination::Extension { context, exten, .. } => {
                (context.clone(), exten.clone(), String::new(), String::new())
            }
            Destination::Application { app, data } => (String::new(), String::new(), app.name.to_owned(), data.clone()),
        };
        let or_unknown = |s: &str| if s.is_empty() { "<unknown>".to_owned() } else { s.to_owned() };
        let mut event = Event::new("OriginateResponse", "call");
        if let Some(id) = action_id {
            event = event.with("ActionID", id);
        }
        let channel_name = channel.as_ref().map(|c| c.channel.clone()).unwrap_or_default();
        let event = event
            .with("Response", response)
            .with("Channel", channel_name)
            .with("Context", context)
            .with("Exten", exten)
            .with("Application", app)
            .with("Data", data)
            .with("Reason", reason.to_string())
            .with("Uniqueid", channel.map(|c| c.uniqueid).unwrap_or_else(|| "<null>".into()))
            .with("CallerIDNum", or_unknown(&caller.number))
            .with("CallerIDName", or_unknown(&caller.name));
        core.events().publish(event);
    });
    vec![Message::success().with("Message", "Originate successfully queued")]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn originate_needs_system_as_asterisk_decides() {
        for app in [
            "System",
            "TrySystem",
            "Exec",
            "TryExec",
            "ExecIf",
            "AGI",
            "EAGI",
            "MixMonitor",
            "ExternalIVR",
            "Originate",
        ] {
            assert_eq!(originate_needs_system(app, ""), Some("Application"), "{app}");
        }
        assert_eq!(originate_needs_system("NoOp", "${SHELL(id)}"), Some("Data"));
        assert_eq!(originate_needs_system("Set", "A=${EVAL(${B})}"), Some("Data"));
        assert_eq!(originate_needs_system("Playback", "hello-world"), None);
        assert_eq!(originate_needs_system("Wait", "1"), None);
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("s3cret", "s3cret"));
        assert!(!same_secret("s3creT", "s3cret"));
        assert!(!same_secret("s3cre", "s3cret"));
        assert!(!same_secret("s3crets", "s3cret"));
        assert!(!same_secret("", "s3cret"));
        assert!(same_secret("", ""));
    }
}
