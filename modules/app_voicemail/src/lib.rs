//! app_voicemail: Asterisk's voicemail. `VoiceMail(box@context,u|b|s)` greets the caller and
//! records a message into the spool (`<spooldir>/voicemail/<context>/<box>/INBOX/msg0000.wav`
//! and `.txt`, Asterisk's layout, see [`spool`]), emails it through `mailcmd` (the WAV attached
//! with `attach=yes`, see [`email`]) and publishes the mailbox's counts to the core's MWI
//! state (`starling_core::mwi`), which chan_sip turns into `NOTIFY`s for phones with
//! `mailbox=`. `VoiceMailMain(box@context)` is Asterisk's menu: listen, delete, save to folders,
//! forward, reply, record greetings and change the password (written back to voicemail.conf by
//! [`password`]).
//!
//! Configuration: `voicemail.conf` (see [`config`]); `voicemail reload` (or `module reload
//! app_voicemail`) re-reads it. CLI: `voicemail show users [for <context>]`, `voicemail show
//! zones`. Functions: `MAILBOX_EXISTS(box[@context])`, `VM_INFO(box[@context],attribute[,folder])`.
//! Manager: `MailboxCount`, `MailboxStatus`, `VoicemailUsersList`.
//!
//! Step 2 of ARCHITECTURE.md's walk: applications run on the channel's own task.

pub mod config;
pub mod email;
pub mod envelope;
mod main_menu;
pub mod media;
pub mod password;
pub mod spool;
mod voicemail;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use starling_core::apps::{App, Escalation, Function};
use starling_core::channel::Channel;
use starling_core::cli::{CliCall, CliCommand, CliResult};
use starling_core::config::ConfigErrors;
use starling_core::manager::{list, ManagerAction, Message};
use starling_core::{Core, LoadError, Module, ModuleContext, ReloadError};

use config::{VmConf, VmUser, CONFIG};

/// The configuration in force, for the applications and functions (plain `fn`s, as the core
/// calls them). Set by load and reload, cleared at unload.
static CONF: RwLock<Option<Arc<VmConf>>> = RwLock::new(None);

/// The configuration in force (an empty one before load).
pub(crate) fn conf() -> Arc<VmConf> {
    CONF.read().unwrap_or_else(|p| p.into_inner()).clone().unwrap_or_default()
}

/// A mailbox's folder (`INBOX`, `Old`) in the spool.
pub(crate) fn folder_dir(core: &Core, user: &VmUser, folder: &str) -> PathBuf {
    spool::mailbox_dir(&core.settings().spooldir, &user.context, &user.mailbox).join(folder)
}

/// A password changed by its owner, put in force at once (Asterisk's `reset_user_pw`); the
/// file was rewritten already, so a reload reads the same.
pub(crate) fn set_password(user: &VmUser, password: &str) {
    let mut guard = CONF.write().unwrap_or_else(|p| p.into_inner());
    if let Some(conf) = guard.as_ref() {
        let mut changed = (**conf).clone();
        if let Some(found) = changed.users.iter_mut().find(|u| u.id() == user.id()) {
            found.password = password.to_owned();
        }
        *guard = Some(Arc::new(changed));
    }
}

/// `(new, old)` of a mailbox (Asterisk's `inboxcount`).
pub(crate) fn inbox_count(core: &Core, user: &VmUser) -> (u32, u32) {
    (spool::count(&folder_dir(core, user, "INBOX")), spool::count(&folder_dir(core, user, "Old")))
}

/// Tells the core how many messages `user` has (Asterisk's `queue_mwi_event`).
pub(crate) fn publish_mwi(core: &Core, user: &VmUser) {
    let (new, old) = inbox_count(core, user);
    core.publish_mwi(&user.id(), new, old);
}

/// A message was left, moved, read or deleted: the core hears the counts, and `externnotify`
/// runs (Asterisk's `notify_new_message` and `run_externnotify`).
pub(crate) fn mailbox_changed(core: &Core, user: &VmUser) {
    publish_mwi(core, user);
    let externnotify = conf().general.externnotify.clone();
    if !externnotify.is_empty() {
        let (new, old) = inbox_count(core, user);
        let context = if user.context.is_empty() { "\"\"" } else { user.context.as_str() };
        // As Asterisk: `externnotify context mailbox new old urgent`, through the shell, not waited for.
        email::run_detached(format!("{externnotify} {context} {} {new} {old} 0", user.mailbox));
    }
}

fn load_conf(ctx: &ModuleContext) -> Result<VmConf, ConfigErrors> {
    if !ctx.config_dir().join(CONFIG).exists() {
        starling_core::tracing::warn!("{CONFIG} not found: no mailboxes");
        return Ok(VmConf::default());
    }
    VmConf::parse(&ctx.load_config(CONFIG)?)
}

/// Puts `conf` in force and publishes the counts of its mailboxes (those gone are forgotten).
fn install(core: &Core, mut conf: VmConf) {
    if conf.general.password_in_spool {
        // Asterisk's `passwordlocation=spooldir`: a mailbox's secret.conf overrides voicemail.conf.
        for user in &mut conf.users {
            let file = folder_dir(core, user, "").join(password::SPOOL_FILE);
            if let Some(password) = password::read_spool(&file) {
                user.password = password;
            }
        }
    }
    let old = CONF.write().unwrap_or_else(|p| p.into_inner()).replace(Arc::new(conf.clone()));
    if let Some(old) = old {
        for user in old.users.iter().filter(|u| conf.find(&u.id()).is_none()) {
            core.mwi().forget(&user.id());
        }
    }
    for user in &conf.users {
        publish_mwi(core, user);
    }
}

struct AppVoicemail {
    core: Arc<Core>,
    _apps: starling_core::module::Registrations,
    _functions: starling_core::module::Registrations,
    _cli: starling_core::cli::CliRegistration,
    _actions: starling_core::module::Registrations,
}

impl Module for AppVoicemail {
    fn reload(&mut self, ctx: &ModuleContext) -> Result<(), ReloadError> {
        let conf = load_conf(ctx)?;
        install(ctx.core(), conf);
        Ok(())
    }
}

impl Drop for AppVoicemail {
    fn drop(&mut self) {
        if let Some(conf) = CONF.write().unwrap_or_else(|p| p.into_inner()).take() {
            for user in &conf.users {
                self.core.mwi().forget(&user.id());
            }
        }
    }
}

/// `voicemail show users [for <context>]`, as Asterisk's `handle_voicemail_show_users`.
fn show_users(call: &mut CliCall<'_>) -> CliResult {
    let context = match call.args() {
        [] => None,
        [word, context] if word.eq_ignore_ascii_case("for") => Some(context.clone()),
        _ => return CliResult::ShowUsage,
    };
    let conf = conf();
    if conf.users.is_empty() {
        call.print("There are no voicemail users currently defined\n");
        return CliResult::Failure;
    }
    if let Some(context) = &context {
        if !conf.users.iter().any(|u| &u.context == context) {
            let _ = writeln!(call, "No such voicemail context \"{context}\"");
            return CliResult::Failure;
        }
    }
    let mut out = format!("{:<10} {:<5} {:<25} {:<10} {:>6}\n", "Context", "Mbox", "User", "Zone", "NewMsg");
    let mut n = 0;
    for user in conf.users.iter().filter(|u| context.as_ref().is_none_or(|c| &u.context == c)) {
        let (new, _) = inbox_count(call.core, user);
        let _ = writeln!(
            out,
            "{:<10} {:<5} {:<25} {:<10} {:>6}",
            user.context, user.mailbox, user.fullname, user.zone, new
        );
        n += 1;
    }
    let _ = writeln!(out, "{n} voicemail users configured.");
    call.print(&out);
    CliResult::Success
}

/// `voicemail show zones`, as Asterisk's `handle_voicemail_show_zones`.
fn show_zones(call: &mut CliCall<'_>) -> CliResult {
    if !call.args().is_empty() {
        return CliResult::ShowUsage;
    }
    let conf = conf();
    if conf.general.zones.is_empty() {
        call.print("There are no voicemail zones currently defined\n");
        return CliResult::Failure;
    }
    let mut out = format!("{:<15} {:<20} {:<45}\n", "Zone", "Timezone", "Message Format");
    for (name, value) in &conf.general.zones {
        let (tz, format) = value.split_once('|').unwrap_or((value, ""));
        let _ = writeln!(out, "{name:<15} {tz:<20} {format:<45}");
    }
    call.print(&out);
    CliResult::Success
}

fn reload_command(call: &mut CliCall<'_>) -> CliResult {
    if !call.args().is_empty() {
        return CliResult::ShowUsage;
    }
    call.print("Reloading voicemail configuration...\n");
    match call.core.loader().reload(call.core, "app_voicemail") {
        Ok(()) => CliResult::Success,
        Err(e) => {
            let _ = writeln!(call, "{e}");
            CliResult::Failure
        }
    }
}

/// `MAILBOX_EXISTS(box[@context])`: 1 or 0.
fn mailbox_exists(_chan: &mut Channel, args: &str) -> Result<String, String> {
    if args.trim().is_empty() {
        return Err("MAILBOX_EXISTS requires an argument (<mailbox>[@<context>])".into());
    }
    Ok(if conf().find(args).is_some() { "1" } else { "0" }.into())
}

/// `VM_INFO(box[@context],attribute[,folder])`, as Asterisk's `acf_vm_info`.
fn vm_info(chan: &mut Channel, args: &str) -> Result<String, String> {
    let args = starling_core::apps::standard_args(args);
    let arg = |i: usize| args.get(i).map_or("", |a| a.trim());
    if arg(0).is_empty() || arg(1).is_empty() {
        return Err("VM_INFO requires an argument (<mailbox>[@<context>],attribute[,folder])".into());
    }
    let conf = conf();
    let user = conf.find(arg(0));
    let attribute = arg(1).to_ascii_lowercase();
    if attribute == "exists" {
        return Ok(if user.is_some() { "1" } else { "0" }.into());
    }
    let Some(user) = user else { return Ok(String::new()) };
    Ok(match attribute.as_str() {
        "password" => user.password.clone(),
        "fullname" => user.fullname.clone(),
        "email" => user.email.clone(),
        "pager" => user.pager.clone(),
        "tz" => user.zone.clone(),
        "language" | "locale" => String::new(),
        "count" => {
            let folder = if arg(2).is_empty() { "INBOX" } else { arg(2) };
            if !spool::FOLDERS.iter().any(|f| f.eq_ignore_ascii_case(folder)) && folder != "Urgent" {
                return Err(format!("VM_INFO: invalid folder '{folder}'"));
            }
            spool::count(&folder_dir(chan.core(), user, folder)).to_string()
        }
        other => return Err(format!("VM_INFO: unknown attribute '{other}'")),
    })
}

/// The manager's `MailboxCount`/`MailboxStatus`: the mailbox named, counted.
fn mailbox_counts(core: &Core, m: &Message) -> Result<(String, u32, u32), Message> {
    let Some(mailbox) = m.value("Mailbox").filter(|v| !v.trim().is_empty()) else {
        return Err(Message::error("Mailbox not specified"));
    };
    let conf = conf();
    let (new, old) = conf.find(mailbox).map_or((0, 0), |user| inbox_count(core, user));
    Ok((mailbox.to_owned(), new, old))
}

fn actions(core: &Arc<Core>) -> Vec<ManagerAction> {
    let (count_core, status_core, list_core) = (Arc::downgrade(core), Arc::downgrade(core), Arc::downgrade(core));
    vec![
        ManagerAction {
            name: "MailboxCount",
            synopsis: "Check Mailbox Message Count.",
            privilege: "call",
            handler: Arc::new(move |m| {
                let Some(core) = count_core.upgrade() else { return vec![Message::error("Shutting down")] };
                match mailbox_counts(&core, m) {
                    Ok((mailbox, new, old)) => vec![Message::success()
                        .with("Message", "Mailbox Message Count")
                        .with("Mailbox", mailbox)
                        .with("UrgMessages", "0")
                        .with("NewMessages", new.to_string())
                        .with("OldMessages", old.to_string())],
                    Err(e) => vec![e],
                }
            }),
        },
        ManagerAction {
            name: "MailboxStatus",
            synopsis: "Check mailbox.",
            privilege: "call",
            handler: Arc::new(move |m| {
                let Some(core) = status_core.upgrade() else { return vec![Message::error("Shutting down")] };
                match mailbox_counts(&core, m) {
                    Ok((mailbox, new, _)) => vec![Message::success()
                        .with("Message", "Mailbox Status")
                        .with("Mailbox", mailbox)
                        .with("Waiting", new.to_string())],
                    Err(e) => vec![e],
                }
            }),
        },
        ManagerAction {
            name: "VoicemailUsersList",
            synopsis: "List All Voicemail User Information.",
            privilege: "call",
            handler: Arc::new(move |_| {
                let Some(core) = list_core.upgrade() else { return vec![Message::error("Shutting down")] };
                let conf = conf();
                let items = conf
                    .users
                    .iter()
                    .map(|user| {
                        let (new, old) = inbox_count(&core, user);
                        Message::event("VoicemailUserEntry")
                            .with("VMContext", &user.context)
                            .with("VoiceMailbox", &user.mailbox)
                            .with("Fullname", &user.fullname)
                            .with("Email", &user.email)
                            .with("Pager", &user.pager)
                            .with("TimeZone", &user.zone)
                            .with("Attachment", if user.attach.unwrap_or(conf.general.attach) { "Yes" } else { "No" })
                            .with("MailCommand", &conf.general.mailcmd)
                            .with("MaxMessageCount", conf.general.maxmsg.to_string())
                            .with("MaxMessageLength", conf.general.maxsecs.to_string())
                            .with("NewMessageCount", new.to_string())
                            .with("OldMessageCount", old.to_string())
                    })
                    .collect();
                list("Voicemail user list will follow", items, "VoicemailUserEntryComplete")
            }),
        },
    ]
}

fn load(ctx: &ModuleContext) -> Result<Box<dyn Module>, LoadError> {
    let conf = load_conf(ctx)?;
    install(ctx.core(), conf);
    let apps = ctx.register_apps(vec![
        App::new("VoiceMail", "Leave a Voicemail message.", voicemail::DESCRIPTION, voicemail::voicemail_exec),
        App::new("VoiceMailMain", "Check Voicemail messages.", main_menu::DESCRIPTION, main_menu::voicemail_main_exec),
    ])?;
    let functions = ctx.register_functions(vec![
        Function::read_only(
            "MAILBOX_EXISTS",
            "Tell if a mailbox is configured.",
            "MAILBOX_EXISTS(mailbox[@context])",
            mailbox_exists,
        ),
        Function {
            name: "VM_INFO",
            synopsis: "Returns the selected attribute from a mailbox.",
            syntax: "VM_INFO(mailbox[@context],attribute[,folder])",
            read: Some(vm_info),
            write: None,
            escalation: Escalation::None,
            uses: None,
        },
    ])?;
    let cli = ctx.register_cli(vec![
        CliCommand::new(
            "voicemail show users",
            "List defined voicemail boxes",
            "Usage: voicemail show users [for <context>]\n       Lists all mailboxes currently set up\n",
            show_users,
        ),
        CliCommand::new(
            "voicemail show zones",
            "List zone message formats",
            "Usage: voicemail show zones\n       Lists zone message formats\n",
            show_zones,
        ),
        CliCommand::new(
            "voicemail reload",
            "Reload voicemail configuration",
            "Usage: voicemail reload\n       Reload voicemail configuration\n",
            reload_command,
        ),
    ])?;
    let actions = ctx.register_manager_actions(actions(ctx.core()))?;
    Ok(Box::new(AppVoicemail {
        core: ctx.core().clone(),
        _apps: apps,
        _functions: functions,
        _cli: cli,
        _actions: actions,
    }))
}

/// Whether `path` names a recording that can be played (any format app_voicemail reads).
pub(crate) fn recording_exists(path: &Path) -> bool {
    ["wav", "WAV", "sln", "ulaw", "alaw"].iter().any(|ext| path.with_extension(ext).is_file())
}

starling_core::module! {
    description: "Comedian Mail (Voicemail System)",
    support_level: Core,
    load: load,
}
