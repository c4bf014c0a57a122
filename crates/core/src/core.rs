//! [`Core`]: the one object that ties the registries, the loader and the settings together.
//! The binary builds it once; modules reach it through their `ModuleContext`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime};

use crate::apps::{App, Function, Registry};
use crate::channel::{Channel, Channels};
use crate::cli::{Cli, CliRegistration};
use crate::loader::Loader;
use crate::tokio::runtime::Handle;
use crate::tokio::sync::watch;

/// `starling.conf`, resolved: every directory is absolute or relative to the conf's folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The `starling.conf` that was read.
    pub config_file: PathBuf,
    pub etcdir: PathBuf,
    /// Where modules are loaded from (the binary's own folder when starling.conf names none).
    pub moddir: PathBuf,
    pub rundir: PathBuf,
    pub logdir: PathBuf,
    pub dbdir: PathBuf,
    /// Where voicemail keeps its messages (`voicemail/<context>/<mailbox>/INBOX`): Asterisk's
    /// `astspooldir`.
    pub spooldir: PathBuf,
    pub soundsdir: PathBuf,
    /// `[options] maxcalls`: at most this many calls at once (0 = no limit).
    pub maxcalls: u32,
    /// `[options] maxfiles` (Asterisk's): the open-files limit to set at start; 0 (the default)
    /// raises it to the hard limit. Each call holds two sockets (RTP and RTCP).
    pub maxfiles: u64,
    /// `[options] systemname`: prefixes uniqueids so nodes never collide.
    pub systemname: String,
    /// `[options] nameserver` (Starling's, one line each): the DNS servers modules ask (chan_sip's
    /// SRV and A/AAAA lookups), in order; none: the system's (`/etc/resolv.conf`).
    pub nameservers: Vec<std::net::SocketAddr>,
    /// Verbosity and debug level at start (`[options]`, raised by `-v`/`-d`).
    pub verbose: u8,
    pub debug: u8,
    /// `[options] live_dangerously` (Asterisk's, default `no`): whether functions marked
    /// dangerous ([`crate::apps::Escalation`]: `SHELL`, `DB`...) may run when evaluated from
    /// outside the dialplan (the manager's Getvar, Setvar, Status and Originate).
    pub live_dangerously: bool,
    /// `[options] runuser` (Asterisk's): the user the server runs as once its modules are
    /// loaded (it starts as root to bind and load what needs root).
    pub runuser: Option<User>,
    /// `[options] rungroup` (Asterisk's): the group it runs as (else `runuser`'s own group).
    pub rungroup: Option<Group>,
    /// `[files]` (Asterisk's asterisk.conf keys): the control socket's name in `rundir`
    /// (`astctl`), its mode (`astctlpermissions`, default 0660), owner and group.
    pub ctl: ControlSocket,
}

/// A user named in starling.conf, as the system's user database had it when the file was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    /// Its primary group.
    pub gid: u32,
}

/// A group named in starling.conf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: u32,
}

/// `[files] astctl`, `astctlpermissions`, `astctlowner`, `astctlgroup`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlSocket {
    /// The socket's file name in `rundir`.
    pub name: String,
    /// Its mode, set after it is bound (not left to the umask).
    pub permissions: u32,
    /// Its owner and group; `None`: the user (group) the server runs as.
    pub owner: Option<User>,
    pub group: Option<Group>,
}

impl Default for ControlSocket {
    fn default() -> ControlSocket {
        ControlSocket { name: "starling.ctl".into(), permissions: 0o660, owner: None, group: None }
    }
}

impl Settings {
    /// The control socket (`starling.ctl`, or `[files] astctl`, in `rundir`).
    pub fn control_socket(&self) -> PathBuf {
        self.rundir.join(&self.ctl.name)
    }
    /// The pid file (`starling.pid` in `rundir`).
    pub fn pid_file(&self) -> PathBuf {
        self.rundir.join("starling.pid")
    }
}

/// Whatever runs the dialplan (pbx_config registers it): a channel driver hands each new
/// inbound channel to [`Core::start_pbx`].
pub trait Pbx: Send + Sync {
    /// Runs the dialplan on `channel` on a task of its own, from its context/exten/priority.
    fn start(&self, channel: Channel);
    /// Whether `exten` exists (Match) or could with more digits (MatchMore) in `context`,
    /// for a driver that must answer 404/484 before creating a channel.
    fn exists(&self, context: &str, exten: &str, callerid: Option<&str>) -> Extent;
    /// Whether `exten` in `context` has priority `priority` (WaitExten goes on to the next
    /// priority on a timeout when there is one).
    fn priority_exists(&self, context: &str, exten: &str, priority: u32, callerid: Option<&str>) -> bool;
    /// Whether more digits after `exten` could still match in `context` (Asterisk's
    /// `ast_matchmore_extension`: a complete `!` match says no).
    fn can_match_more(&self, context: &str, exten: &str, callerid: Option<&str>) -> bool;
    /// The priority of `label` in the extension `exten` of `context` (Asterisk's
    /// `ast_findlabel_extension`).
    fn find_label(&self, context: &str, exten: &str, label: &str, callerid: Option<&str>) -> Option<u32>;
    /// Runs `Gosub(target)` on a channel its caller owns (Dial's `U()` on the called party),
    /// until the subroutine's `Return`; `Err` if it hangs up or cannot be run.
    fn run_subroutine<'a>(
        &'a self,
        channel: &'a mut Channel,
        target: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>>;
    /// A global variable (`[globals]`, `Set(GLOBAL(x)=...)`).
    fn global(&self, name: &str) -> Option<String>;
    /// `text` with its `${...}` and `$[...]` substituted on `channel`, as the dialplan does.
    fn substitute(&self, channel: &mut Channel, text: &str) -> String;
    /// Sets (an empty value removes) a global variable.
    fn set_global(&self, name: &str, value: &str);
    /// Every hint of the dialplan: `(context, exten, devices)` (`exten => 1001,hint,SIP/1001`),
    /// for the core's hint table ([`crate::hints`]).
    fn hints(&self) -> Vec<(String, String, String)> {
        Vec::new()
    }
}

/// What [`Pbx::exists`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extent {
    Exists,
    /// Not yet: more digits could match (SIP 484).
    Incomplete,
    /// No (SIP 404).
    Missing,
}

/// How the process is to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownMode {
    /// `core stop now`: hang up everything and exit.
    Now,
    /// `core stop gracefully`, SIGTERM: take no new calls, exit when the last one ends.
    Gracefully,
}

/// The PBX core: settings, registries, loader.
pub struct Core {
    settings: Settings,
    runtime: Handle,
    cli: Cli,
    channels: Channels,
    loader: Loader,
    started: Instant,
    started_at: SystemTime,
    last_reload: Mutex<SystemTime>,
    shutdown: watch::Sender<Option<ShutdownMode>>,
    core_cli: OnceLock<CliRegistration>,
    channel_sequence: std::sync::atomic::AtomicU32,
    apps: Registry<App>,
    functions: Registry<Function>,
    techs: Registry<Arc<dyn crate::tech::Tech>>,
    moh: Registry<Arc<dyn crate::moh::MusicOnHold>>,
    bridges: crate::bridge::Bridges,
    events: crate::events::Events,
    cdr: crate::cdr::CdrEngine,
    /// features.conf (the pickup keys).
    features: crate::pickup::Features,
    manager_actions: Registry<crate::manager::ManagerAction>,
    pbx: std::sync::RwLock<Option<Arc<dyn Pbx>>>,
    builtin_apps: OnceLock<Vec<crate::apps::Registration<App>>>,
    local_tech: OnceLock<crate::apps::Registration<Arc<dyn crate::tech::Tech>>>,
    db: OnceLock<Arc<dyn crate::db::Storage>>,
    pub(crate) devstates: crate::devicestate::DeviceStates,
    pub(crate) hints: crate::hints::Hints,
    pub(crate) mwi: crate::mwi::Mwi,
}

impl Core {
    /// Builds the core and registers its own CLI commands. Call inside the runtime.
    pub fn new(settings: Settings, runtime: Handle) -> Arc<Core> {
        let now = SystemTime::now();
        let core = Arc::new(Core {
            settings,
            runtime,
            cli: Cli::default(),
            channels: Channels::default(),
            loader: Loader::default(),
            started: Instant::now(),
            started_at: now,
            last_reload: Mutex::new(now),
            shutdown: watch::channel(None).0,
            core_cli: OnceLock::new(),
            channel_sequence: std::sync::atomic::AtomicU32::new(0),
            apps: Registry::default(),
            functions: Registry::default(),
            techs: Registry::default(),
            moh: Registry::default(),
            bridges: Default::default(),
            events: Default::default(),
            cdr: Default::default(),
            features: Default::default(),
            manager_actions: Registry::default(),
            pbx: std::sync::RwLock::new(None),
            builtin_apps: OnceLock::new(),
            local_tech: OnceLock::new(),
            db: OnceLock::new(),
            devstates: Default::default(),
            hints: Default::default(),
            mwi: Default::default(),
        });
        crate::devicestate::DeviceStates::start(&core);
        let registration = crate::cli_core::register(&core);
        let _ = core.core_cli.set(registration);
        let builtins =
            crate::builtins::builtins().into_iter().filter_map(|app| core.apps.register(app.name, app).ok()).collect();
        let _ = core.builtin_apps.set(builtins);
        let local: Arc<dyn crate::tech::Tech> = Arc::new(crate::tech::LocalTech);
        if let Ok(registration) = core.techs.register("Local", local) {
            let _ = core.local_tech.set(registration);
        }
        core
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }
    pub fn runtime(&self) -> Handle {
        self.runtime.clone()
    }
    pub fn cli(&self) -> &Cli {
        &self.cli
    }
    pub fn channels(&self) -> &Channels {
        &self.channels
    }
    pub fn loader(&self) -> &Loader {
        &self.loader
    }
    /// Sets the database (the binary opens it in `dbdir` at start, before modules load).
    pub fn set_db(&self, db: Arc<dyn crate::db::Storage>) {
        let _ = self.db.set(db);
    }
    /// The database; an in-memory one (with a warning) if none was set, so nothing panics.
    pub fn db(&self) -> Arc<dyn crate::db::Storage> {
        self.db
            .get_or_init(|| {
                crate::tracing::warn!("No database was opened; using one in memory");
                Arc::new(crate::db::SqliteStorage::in_memory())
            })
            .clone()
    }
    /// Dialplan applications (`Answer`, `Dial`...).
    pub fn apps(&self) -> &Registry<App> {
        &self.apps
    }
    /// Dialplan functions (`LEN`, `CALLERID`...).
    pub fn functions(&self) -> &Registry<Function> {
        &self.functions
    }
    /// Channel technologies (`SIP`, `Local`), by name.
    pub fn techs(&self) -> &Registry<Arc<dyn crate::tech::Tech>> {
        &self.techs
    }
    /// Who plays music on hold (under [`crate::moh::PLAYER`]).
    pub fn moh(&self) -> &Registry<Arc<dyn crate::moh::MusicOnHold>> {
        &self.moh
    }
    /// The event bus (what the manager interface reports).
    pub fn events(&self) -> &crate::events::Events {
        &self.events
    }
    /// The CDR engine (`cdr.conf`, the backends).
    pub fn cdr(&self) -> &crate::cdr::CdrEngine {
        &self.cdr
    }
    /// features.conf (`pickupexten`...).
    pub fn features(&self) -> &crate::pickup::Features {
        &self.features
    }
    /// Manager actions modules add (chan_sip's `SIPpeers`...).
    pub fn manager_actions(&self) -> &Registry<crate::manager::ManagerAction> {
        &self.manager_actions
    }
    /// The bridges up now (`bridge show all`).
    pub fn bridges(&self) -> &crate::bridge::Bridges {
        &self.bridges
    }
    /// Sets (or clears) what runs the dialplan.
    pub fn set_pbx(&self, pbx: Option<Arc<dyn Pbx>>) {
        *self.pbx.write().unwrap_or_else(|p| p.into_inner()) = pbx;
        self.hints_changed();
    }
    /// The dialplan's hints (none without a dialplan).
    pub(crate) fn pbx_hints(&self) -> Vec<(String, String, String)> {
        let pbx = self.pbx.read().unwrap_or_else(|p| p.into_inner()).clone();
        pbx.map(|p| p.hints()).unwrap_or_default()
    }
    /// Starts the dialplan on a new channel; without a dialplan the channel hangs up.
    pub fn start_pbx(&self, mut channel: Channel) {
        channel.announce();
        channel.mark_pbx();
        let pbx = self.pbx.read().unwrap_or_else(|p| p.into_inner()).clone();
        match pbx {
            Some(pbx) => pbx.start(channel),
            None => {
                crate::tracing::warn!("No dialplan is loaded: hanging up {}", channel.name());
                channel.hangup(crate::frame::Cause::NO_ROUTE_DESTINATION);
            }
        }
    }
    /// Runs a dialplan subroutine on `channel` (see [`Pbx::run_subroutine`]).
    pub async fn run_subroutine(&self, channel: &mut Channel, target: &str) -> Result<(), String> {
        let pbx = self.pbx.read().unwrap_or_else(|p| p.into_inner()).clone();
        match pbx {
            Some(pbx) => pbx.run_subroutine(channel, target).await,
            None => Err("no dialplan is loaded".into()),
        }
    }
    /// `text` substituted on `channel` as the dialplan does (see [`Pbx::substitute`]); `None`
    /// without a dialplan.
    pub fn substitute(&self, channel: &mut Channel, text: &str) -> Option<String> {
        let pbx = self.pbx.read().unwrap_or_else(|p| p.into_inner()).clone();
        pbx.map(|pbx| pbx.substitute(channel, text))
    }
    /// A global dialplan variable (`None` without a dialplan).
    pub fn global(&self, name: &str) -> Option<String> {
        self.pbx.read().unwrap_or_else(|p| p.into_inner()).as_ref().and_then(|p| p.global(name))
    }
    /// Sets a global dialplan variable; `false` without a dialplan.
    pub fn set_global(&self, name: &str, value: &str) -> bool {
        let pbx = self.pbx.read().unwrap_or_else(|p| p.into_inner()).clone();
        pbx.map(|p| p.set_global(name, value)).is_some()
    }
    /// Asks the dialplan whether an extension exists (Missing without a dialplan).
    pub fn extension_exists(&self, context: &str, exten: &str, callerid: Option<&str>) -> Extent {
        let pbx = self.pbx.read().unwrap_or_else(|p| p.into_inner()).clone();
        pbx.map_or(Extent::Missing, |p| p.exists(context, exten, callerid))
    }
    /// Whether the dialplan has `exten`'s priority `priority` in `context`.
    pub fn priority_exists(&self, context: &str, exten: &str, priority: u32, callerid: Option<&str>) -> bool {
        let pbx = self.pbx.read().unwrap_or_else(|p| p.into_inner()).clone();
        pbx.is_some_and(|p| p.priority_exists(context, exten, priority, callerid))
    }
    /// Whether more digits could still match (see [`Pbx::can_match_more`]); false without a
    /// dialplan.
    pub fn extension_can_match_more(&self, context: &str, exten: &str, callerid: Option<&str>) -> bool {
        let pbx = self.pbx.read().unwrap_or_else(|p| p.into_inner()).clone();
        pbx.is_some_and(|p| p.can_match_more(context, exten, callerid))
    }
    /// The priority a label names (see [`Pbx::find_label`]).
    pub fn find_label(&self, context: &str, exten: &str, label: &str, callerid: Option<&str>) -> Option<u32> {
        let pbx = self.pbx.read().unwrap_or_else(|p| p.into_inner()).clone();
        pbx.and_then(|p| p.find_label(context, exten, label, callerid))
    }
    /// The next channel number (the `0000000a` in `SIP/bob-0000000a`).
    pub fn next_channel_sequence(&self) -> u32 {
        self.channel_sequence.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
    }
    /// When the process started (`core show uptime`).
    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }
    pub fn started_at(&self) -> SystemTime {
        self.started_at
    }
    pub fn last_reload(&self) -> SystemTime {
        *self.last_reload.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `core reload` and SIGHUP: the logger, then every module that supports reloads.
    /// Returns one line per module that could not reload.
    pub fn reload(self: &Arc<Self>) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = crate::logger::reload(&self.settings) {
            problems.push(format!("logger.conf: {e}"));
        }
        if let Err(e) = self.cdr.load(&self.settings.etcdir) {
            problems.push(format!("cdr.conf: {e}"));
        }
        if let Err(e) = self.features.load(&self.settings.etcdir) {
            problems.push(format!("features.conf: {e}"));
        }
        for problem in &problems {
            tracing::error!("reload: {problem}");
        }
        // (The loader logs each module's failure itself.)
        problems.extend(self.loader.reload_all(self));
        *self.last_reload.lock().unwrap_or_else(|p| p.into_inner()) = SystemTime::now();
        problems
    }

    /// Asks the process to stop. A later `Now` overrides a pending `Gracefully`.
    pub fn request_shutdown(&self, mode: ShutdownMode) {
        self.shutdown.send_if_modified(|pending| {
            let stronger = !matches!(pending, Some(ShutdownMode::Now));
            if stronger {
                *pending = Some(mode);
            }
            stronger
        });
    }
    /// `core abort shutdown`: cancels a graceful stop that is waiting for calls. Returns
    /// whether one was pending.
    pub fn abort_shutdown(&self) -> bool {
        self.shutdown.send_if_modified(|pending| {
            let waiting = *pending == Some(ShutdownMode::Gracefully);
            if waiting {
                *pending = None;
            }
            waiting
        })
    }
    /// The pending stop, if any. Channel drivers refuse new calls while it is `Some`.
    pub fn shutdown_pending(&self) -> Option<ShutdownMode> {
        *self.shutdown.borrow()
    }
    /// Follows stop requests (the binary waits on this).
    pub fn watch_shutdown(&self) -> watch::Receiver<Option<ShutdownMode>> {
        self.shutdown.subscribe()
    }

    /// A core with default settings under a temporary folder, on a shared test runtime.
    #[doc(hidden)]
    pub fn for_tests() -> Arc<Core> {
        static RUNTIME: OnceLock<crate::tokio::runtime::Runtime> = OnceLock::new();
        let runtime = RUNTIME.get_or_init(|| {
            crate::tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("test runtime")
        });
        let dir = std::env::temp_dir().join("starling-core-tests");
        let settings = Settings {
            config_file: dir.join("starling.conf"),
            etcdir: dir.clone(),
            moddir: dir.clone(),
            rundir: dir.clone(),
            logdir: dir.clone(),
            dbdir: dir.clone(),
            spooldir: dir.clone(),
            soundsdir: dir,
            maxcalls: 0,
            maxfiles: 0,
            systemname: String::new(),
            nameservers: Vec::new(),
            verbose: 0,
            debug: 0,
            live_dangerously: false,
            runuser: None,
            rungroup: None,
            ctl: ControlSocket::default(),
        };
        Core::new(settings, runtime.handle().clone())
    }
}
