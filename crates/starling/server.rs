//! Starting the server (and stopping it), and the remote console's side of `-r`/`-rx`.
//!
//! Start-up does everything that can fail with a clear message before it forks into the
//! background: read the config files, make the directories, take the pid file's lock (one
//! server per `rundir`), bind the control socket. Then, without `-f`/`-c`, it forks; the
//! parent waits on a pipe until the child has loaded its modules, so a module's config error
//! still reaches the shell as exit code 1. Once the modules are loaded it switches to
//! `runuser`/`rungroup` (privileges.rs).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener as StdUnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use starling_core::config::Config;
use starling_core::loader::{LoaderError, ModulesConf, StaticModule};
use starling_core::tokio::signal::unix::{signal, SignalKind};
use starling_core::{logger, tokio, tracing, verbose, Core, LoadError, Settings, ShutdownMode};

use crate::console::{self, Backend, Ended};
use crate::control::{self, Client};
use crate::{settings, Fatal, Flags};

/// The modules linked into this binary (`static-modules`), found before moddir.
fn static_modules() -> Vec<StaticModule> {
    #[cfg(feature = "static-modules")]
    return vec![
        res_clialiases::module_info,
        pbx_config::module_info,
        func_strings::module_info,
        func_logic::module_info,
        func_db::module_info,
        app_verbose::module_info,
        app_exec::module_info,
        func_channel::module_info,
        chan_sip::module_info,
        app_echo::module_info,
        app_directed_pickup::module_info,
        app_dial::module_info,
        app_playback::module_info,
        app_system::module_info,
        func_callerid::module_info,
        func_timeout::module_info,
        func_devstate::module_info,
        func_extstate::module_info,
        cdr_csv::module_info,
        cdr_sqlite3::module_info,
        cdr_pgsql::module_info,
        func_cdr::module_info,
        app_cdr::module_info,
        res_manager::module_info,
        res_musiconhold::module_info,
        app_voicemail::module_info,
    ];
    #[cfg(not(feature = "static-modules"))]
    Vec::new()
}

fn load_settings(flags: &Flags) -> Result<Settings, Fatal> {
    let binary_dir = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)).unwrap_or_default();
    let mut settings = settings::load(&flags.config, &binary_dir).map_err(Fatal::config)?;
    settings.verbose = if flags.quiet { 0 } else { settings.verbose.saturating_add(flags.verbose) };
    settings.debug = settings.debug.saturating_add(flags.debug);
    Ok(settings)
}

/// The pid file, locked for as long as the server runs.
struct PidFile {
    file: File,
    path: PathBuf,
}

impl PidFile {
    fn lock(settings: &Settings) -> Result<PidFile, Fatal> {
        let path = settings.pid_file();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Fatal::resource(format!("cannot open pid file {}: {e}", path.display())))?;
        if file.try_lock().is_err() {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Err(Fatal::resource(format!(
                "another Starling (pid {}) is already running with rundir {}; use -r to connect to it",
                pid.trim(),
                settings.rundir.display()
            )));
        }
        Ok(PidFile { file, path })
    }

    fn write_pid(&mut self) {
        let _ = self.file.set_len(0);
        let _ = self.file.write_all(format!("{}\n", std::process::id()).as_bytes());
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn bind_control_socket(settings: &Settings) -> Result<StdUnixListener, Fatal> {
    let path = settings.control_socket();
    // The pid lock is ours, so a socket file left here is a dead server's.
    let _ = std::fs::remove_file(&path);
    // Bound under a umask that lets no one else in until its mode is set (still one thread).
    // SAFETY: umask only changes this process's mask.
    let umask = unsafe { libc::umask(0o177) };
    let bound = StdUnixListener::bind(&path);
    // SAFETY: as above, putting the mask back.
    unsafe { libc::umask(umask) };
    let listener = bound.map_err(|e| Fatal::resource(format!("cannot bind control socket {}: {e}", path.display())))?;
    crate::privileges::set_control_socket_access(&path, &settings.ctl)?;
    listener.set_nonblocking(true).map_err(|e| Fatal::resource(format!("control socket {}: {e}", path.display())))?;
    Ok(listener)
}

/// The write end of the pipe to a waiting parent (background start only).
struct ReadyPipe(Option<OwnedFd>);

impl ReadyPipe {
    /// Tells the parent how start-up ended; it exits with `code`.
    fn report(&mut self, code: u8) {
        if let Some(fd) = self.0.take() {
            let mut file = File::from(fd);
            let _ = file.write_all(&[code]);
        }
    }
}

/// Forks into the background. Returns in the child; the parent exits with the child's
/// start-up code. Must run before any thread is started.
fn daemonize() -> Result<ReadyPipe, Fatal> {
    let mut fds = [0; 2];
    // SAFETY: plain libc calls on a process that has no other threads yet.
    unsafe {
        if libc::pipe(fds.as_mut_ptr()) != 0 {
            return Err(Fatal::resource(format!("cannot create a pipe: {}", std::io::Error::last_os_error())));
        }
        let (read, write) = (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]));
        match libc::fork() {
            -1 => Err(Fatal::resource(format!("cannot fork: {}", std::io::Error::last_os_error()))),
            0 => {
                drop(read);
                libc::setsid();
                Ok(ReadyPipe(Some(write)))
            }
            _ => {
                drop(write);
                let mut code = [1u8];
                let mut file = File::from(read);
                let got = file.read(&mut code).unwrap_or(0);
                // No byte: the child died before it could say (its stderr said why).
                std::process::exit(if got == 1 { i32::from(code[0]) } else { 1 });
            }
        }
    }
}

/// Points standard input, output and error at /dev/null (a daemon's console is nowhere).
fn detach_stdio() {
    if let Ok(null) = OpenOptions::new().read(true).write(true).open("/dev/null") {
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors, which this process owns.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
}

fn make_dirs(settings: &Settings) -> Result<(), Fatal> {
    for (what, dir) in [
        ("rundir", &settings.rundir),
        ("logdir", &settings.logdir),
        ("dbdir", &settings.dbdir),
        ("spooldir", &settings.spooldir),
    ] {
        std::fs::create_dir_all(dir)
            .map_err(|e| Fatal::resource(format!("cannot open {what} {}: {e}", dir.display())))?;
    }
    Ok(())
}

fn load_modules_conf(settings: &Settings) -> Result<ModulesConf, Fatal> {
    let path = settings.etcdir.join("modules.conf");
    if !path.exists() {
        return Ok(ModulesConf { autoload: true, ..ModulesConf::default() });
    }
    let config = Config::load(&path).map_err(Fatal::config)?;
    ModulesConf::parse(&config).map_err(Fatal::config)
}

/// Loads what `modules.conf` asks for. A missing or refused module is logged and skipped, as
/// Asterisk skips it; a module whose config is wrong or whose port is taken stops start-up.
fn load_modules(core: &Arc<Core>, conf: &ModulesConf) -> Result<(), Fatal> {
    let fatal = |name: &str, error: LoadError| match error {
        LoadError::Config(e) => Fatal::config(e),
        LoadError::Resource(e) => Fatal::resource(format!("{name}: {e}")),
        e => Fatal::config(format!("{name}: {e}")),
    };
    let list = core.loader().startup_list(core, conf).map_err(|e| fatal("modules.conf", e))?;
    for (name, location) in list {
        match core.loader().load(core, &name) {
            Ok(()) => verbose!(2, "Loaded {name}.so"),
            Err(LoaderError::Load { error: LoadError::Decline(why), .. }) => {
                tracing::info!("Module '{name}' declined to load: {why}")
            }
            Err(LoaderError::Load { name, error }) => return Err(fatal(&name, error)),
            Err(e) => match location {
                Some(location) => tracing::error!("{location}: {e}"),
                None => tracing::error!("{e}"),
            },
        }
    }
    Ok(())
}

/// `maxfiles`: the soft open-files limit, as Asterisk sets it (0: up to the hard limit, so
/// thousands of calls, two sockets each, are not refused at the default 1,024). A limit the
/// system will not grant is logged and the process goes on with what it has.
fn set_open_files_limit(maxfiles: u64) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a pointer to a live rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    let wanted = if maxfiles == 0 { limit.rlim_max } else { maxfiles as libc::rlim_t };
    if wanted == limit.rlim_cur {
        return;
    }
    let new = libc::rlimit { rlim_cur: wanted, rlim_max: limit.rlim_max.max(wanted) };
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
        eprintln!("starling: cannot set the open files limit to {wanted}: {}", std::io::Error::last_os_error());
    }
}

/// Runs the server until it is stopped.
pub fn start(flags: &Flags) -> Result<(), Fatal> {
    let settings = load_settings(flags)?;
    set_open_files_limit(settings.maxfiles);
    let modules_conf = load_modules_conf(&settings)?;
    make_dirs(&settings)?;
    let mut pid_file = PidFile::lock(&settings)?;
    let listener = bind_control_socket(&settings)?;
    let socket_path = settings.control_socket();
    let foreground = flags.foreground || flags.console;
    let mut ready = if foreground { ReadyPipe(None) } else { daemonize()? };
    pid_file.write_pid();

    let result = serve(flags, settings, modules_conf, listener, &mut ready);
    if let Err(e) = &result {
        if ready.0.is_some() {
            eprintln!("starling: {e}");
            ready.report(e.code);
            // The parent prints nothing more; exit quietly with the same code.
            std::process::exit(i32::from(e.code));
        }
    }
    let _ = std::fs::remove_file(&socket_path);
    drop(pid_file);
    result
}

fn serve(
    flags: &Flags,
    settings: Settings,
    modules_conf: ModulesConf,
    listener: StdUnixListener,
    ready: &mut ReadyPipe,
) -> Result<(), Fatal> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("starling")
        .build()
        .map_err(|e| Fatal::resource(format!("cannot start the runtime: {e}")))?;
    let console_writer: Option<logger::ConsoleWriter> =
        if flags.foreground || flags.console { Some(Box::new(|line: &str| eprint!("{line}"))) } else { None };
    logger::init(&settings, console_writer).map_err(Fatal::config)?;

    let core = {
        let _entered = runtime.enter();
        Core::new(settings, runtime.handle().clone())
    };
    if core.settings().live_dangerously {
        // Asterisk's words when live_dangerously is on.
        tracing::warn!("Privilege escalation protection disabled!");
    }
    core.cdr().load(&core.settings().etcdir).map_err(Fatal::config)?;
    core.features().load(&core.settings().etcdir).map_err(Fatal::config)?;
    let _translation_cli = register_translation_cli(&core);
    let db = starling_core::db::SqliteStorage::open(&core.settings().dbdir).map_err(Fatal::resource)?;
    core.set_db(Arc::new(db));
    core.loader().set_static_modules(static_modules());
    {
        let core = core.clone();
        runtime
            .block_on(async move { tokio::task::spawn_blocking(move || load_modules(&core, &modules_conf)).await })
            .map_err(|e| Fatal::config(format!("loading modules: {e}")))??;
    }
    let listener = {
        let _entered = runtime.enter();
        tokio::net::UnixListener::from_std(listener).map_err(|e| Fatal::resource(format!("control socket: {e}")))?
    };
    runtime.spawn(starling_core::panic::critical_task(
        "The control socket listener",
        control::serve(core.clone(), listener),
    ));
    // Everything that needs root is done: the ports are bound, the modules loaded.
    crate::privileges::drop_privileges(core.settings(), flags.dump_core)?;
    runtime.block_on(watch_signals(core.clone()))?;
    verbose!(0, "Starling Ready.");
    ready.report(0);
    if ready.0.is_none() && !flags.foreground && !flags.console {
        detach_stdio();
    }
    if flags.console {
        start_root_console(core.clone());
    }

    let mode = runtime.block_on(wait_for_stop(core.clone()));
    verbose!(0, "Starling is stopping ({}).", if mode == ShutdownMode::Now { "now" } else { "gracefully" });
    {
        let core = core.clone();
        let _ = runtime.block_on(async move { tokio::task::spawn_blocking(move || core.loader().unload_all()).await });
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
    logger::set_console_writer(None);
    Ok(())
}

/// `core show translation`: Asterisk's table of translation costs, from the media crate's
/// translation matrix (the core crate does not link the codecs; the binary does).
fn register_translation_cli(core: &Arc<Core>) -> Option<starling_core::cli::CliRegistration> {
    let command = starling_core::cli::CliCommand::new(
        "core show translation",
        "Display translation matrix",
        "Usage: core show translation\n       Displays known codec translators and the cost associated\n       with each conversion.\n",
        |call| {
            use std::fmt::Write as _;
            let _ = write!(call, "{}", starling_media::translate::translation_table());
            starling_core::cli::CliResult::Success
        },
    );
    core.cli().register("core", vec![command]).ok()
}

async fn watch_signals(core: Arc<Core>) -> Result<(), Fatal> {
    let sig = |kind: SignalKind| signal(kind).map_err(|e| Fatal::resource(format!("cannot handle signals: {e}")));
    let (mut term, mut hup, mut int) =
        (sig(SignalKind::terminate())?, sig(SignalKind::hangup())?, sig(SignalKind::interrupt())?);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => core.request_shutdown(ShutdownMode::Gracefully),
                _ = int.recv() => core.request_shutdown(ShutdownMode::Now),
                _ = hup.recv() => {
                    let core = core.clone();
                    // Each failure is logged where it happens (the module loader).
                    let _ = tokio::task::spawn_blocking(move || core.reload()).await;
                }
            }
        }
    });
    Ok(())
}

/// Waits for a stop request; a graceful one also waits for the last call to end.
async fn wait_for_stop(core: Arc<Core>) -> ShutdownMode {
    let mut requests = core.watch_shutdown();
    loop {
        let pending = *requests.borrow_and_update();
        match pending {
            Some(ShutdownMode::Now) => return ShutdownMode::Now,
            Some(ShutdownMode::Gracefully) => {
                let calls = core.channels().active_channels();
                if calls == 0 {
                    return ShutdownMode::Gracefully;
                }
                verbose!(1, "Waiting for {calls} channel(s) to end before stopping");
                // Wake on a new request (abort, now) or check the channels again shortly.
                let _ = tokio::time::timeout(Duration::from_millis(200), requests.changed()).await;
            }
            None => {
                if requests.changed().await.is_err() {
                    return ShutdownMode::Now;
                }
            }
        }
    }
}

/// The root console talks to the core directly.
struct LocalBackend(Arc<Core>);

impl Backend for LocalBackend {
    fn execute(&mut self, line: &str) -> (String, bool) {
        let _entered = self.0.runtime().enter();
        (self.0.cli().execute(&self.0, starling_core::cli::ConsoleId::Root, line), true)
    }
    fn complete(&mut self, line: &str) -> Vec<String> {
        self.0.cli().complete(&self.0, line)
    }
}

fn start_root_console(core: Arc<Core>) {
    std::thread::spawn(move || {
        let backend: Arc<Mutex<dyn Backend>> = Arc::new(Mutex::new(LocalBackend(core.clone())));
        let ended = console::run("*CLI> ", backend, false, |printer| logger::set_console_writer(Some(printer)));
        logger::set_console_writer(Some(Box::new(|line: &str| eprint!("{line}"))));
        match ended {
            Ended::Interrupted => core.request_shutdown(ShutdownMode::Now),
            _ => tracing::info!(
                "The console's input has ended; Starling keeps running (stop it with -rx \"core stop now\")."
            ),
        }
    });
}

struct RemoteBackend(Client);

impl Backend for RemoteBackend {
    fn execute(&mut self, line: &str) -> (String, bool) {
        match self.0.execute(line) {
            Ok((lines, finished)) => (lines.iter().map(|l| format!("{l}\n")).collect(), finished),
            Err(_) => (String::new(), false),
        }
    }
    fn complete(&mut self, line: &str) -> Vec<String> {
        self.0.complete(line)
    }
}

/// `-r` and `-rx`.
pub fn remote(flags: &Flags) -> Result<(), Fatal> {
    let settings = load_settings(flags)?;
    let path = settings.control_socket();
    let printer: Arc<Mutex<Option<console::LinePrinter>>> = Arc::default();
    let log_printer = printer.clone();
    let connect = || {
        Client::connect(&path, move |line| {
            if let Some(print) = log_printer.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                print(&format!("{line}\n"));
            }
        })
        .map_err(|e| {
            Fatal::resource(format!("unable to connect to Starling at {} ({e}); is it running?", path.display()))
        })
    };
    let mut client = connect()?;
    if let Some(command) = &flags.execute {
        let (lines, _) =
            client.execute(command).map_err(|e| Fatal::resource(format!("control socket {}: {e}", path.display())))?;
        let mut out = std::io::stdout().lock();
        for line in lines {
            let _ = writeln!(out, "{line}");
        }
        return Ok(());
    }
    client
        .subscribe(settings.verbose, settings.debug)
        .map_err(|e| Fatal::resource(format!("control socket {}: {e}", path.display())))?;
    let host = hostname();
    let (version, _) = client.execute("core show version").unwrap_or_default();
    println!("Connected to {} currently running on {host} (pid = {})", version.join(" "), read_pid(&settings));
    let backend: Arc<Mutex<dyn Backend>> = Arc::new(Mutex::new(RemoteBackend(client)));
    let ended = console::run(&format!("{host}*CLI> "), backend, true, |p| {
        *printer.lock().unwrap_or_else(|p| p.into_inner()) = Some(p)
    });
    if ended == Ended::ServerGone {
        println!("Disconnected from Starling server");
    }
    Ok(())
}

fn read_pid(settings: &Settings) -> String {
    std::fs::read_to_string(settings.pid_file()).map(|s| s.trim().to_owned()).unwrap_or_else(|_| "?".into())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}
