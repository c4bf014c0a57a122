//! [`Core`]: the one object that ties the registries, the loader and the settings together.
//! The binary builds it once; modules reach it through their `ModuleContext`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime};

use crate::channel::Channels;
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
    pub soundsdir: PathBuf,
    /// `[options] maxcalls`: at most this many calls at once (0 = no limit).
    pub maxcalls: u32,
    /// `[options] systemname`: prefixes uniqueids so nodes never collide.
    pub systemname: String,
    /// Verbosity and debug level at start (`[options]`, raised by `-v`/`-d`).
    pub verbose: u8,
    pub debug: u8,
}

impl Settings {
    /// The control socket (`starling.ctl` in `rundir`).
    pub fn control_socket(&self) -> PathBuf {
        self.rundir.join("starling.ctl")
    }
    /// The pid file (`starling.pid` in `rundir`).
    pub fn pid_file(&self) -> PathBuf {
        self.rundir.join("starling.pid")
    }
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
        });
        let registration = crate::cli_core::register(&core);
        let _ = core.core_cli.set(registration);
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
            soundsdir: dir,
            maxcalls: 0,
            systemname: String::new(),
            verbose: 0,
            debug: 0,
        };
        Core::new(settings, runtime.handle().clone())
    }
}
