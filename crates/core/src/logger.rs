//! Logging: `tracing` events shown as Asterisk shows its log, on the consoles and in files.
//!
//! The levels follow Asterisk's: ERROR and WARNING are `error!`/`warn!`, NOTICE is a plain
//! `info!`, VERBOSE is an `info!` with a `verbose = N` field (the [`verbose!`](crate::verbose)
//! macro, as `ast_verb(N, ...)`), shown where the verbosity is at least N; DEBUG is
//! `debug!` (debug level 1) and `trace!` (level 2 and up).
//!
//! Each console has its own verbosity and debug level: the root console (`-c`, or standard
//! error with `-f`) and every remote console (`-r`), which receives lines through a channel.
//! `logger.conf` `[logfiles]` adds files in `logdir`: `messages => notice,warning,error`,
//! with `verbose`, `verbose(N)`, `debug`, `security` or `*` for more. Without a `logger.conf`,
//! the console shows notice, warning and error, and `messages` gets the same.
//!
//! SECURITY lines (Asterisk's `security` level, [`crate::security`]) are `info!` events with a
//! `security = true` field; only destinations with `security` in their levels (or `*`) get them.
//!
//! Every message has its control characters escaped (`\n`, `\r`, `\t`, `\u{1b}`...), so no
//! string from a peer can start a second line (a forged NOTICE a log watcher would believe).
//! VERBOSE messages keep their line breaks (`sip set debug` shows whole messages), with every
//! other control character escaped and each continuation line indented by a tab.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::{self, Write as _};
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

use crate::cli::ConsoleId;
use crate::cli_core::plural;
use crate::config::{Config, ConfigError, ConfigErrors};
use crate::core::Settings;
use crate::tokio::sync::Notify;

/// `ast_verb(level, ...)`: a VERBOSE message shown where the verbosity is at least `level`.
#[macro_export]
macro_rules! verbose {
    ($level:expr, $($arg:tt)+) => {
        $crate::tracing::info!(verbose = $level as u64, $($arg)+)
    };
}

/// Which messages a destination takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LevelSet {
    pub error: bool,
    pub warning: bool,
    pub notice: bool,
    /// `None`: no verbose; `Some(None)`: at the root verbosity; `Some(Some(n))`: up to n.
    pub verbose: Option<Option<u8>>,
    /// Debug messages at the root debug level.
    pub debug: bool,
    /// Security events (Asterisk's `security` level).
    pub security: bool,
}

impl LevelSet {
    const DEFAULT: LevelSet =
        LevelSet { error: true, warning: true, notice: true, verbose: None, debug: false, security: false };

    /// Parses `notice,warning,error,verbose(3),debug,security` or `*`.
    fn parse(value: &str) -> Result<LevelSet, String> {
        let mut set =
            LevelSet { error: false, warning: false, notice: false, verbose: None, debug: false, security: false };
        for word in value.split(',').map(|w| w.trim().to_ascii_lowercase()) {
            match word.as_str() {
                "" => {}
                "*" => {
                    set = LevelSet {
                        error: true,
                        warning: true,
                        notice: true,
                        verbose: Some(None),
                        debug: true,
                        security: true,
                    }
                }
                "error" => set.error = true,
                "warning" => set.warning = true,
                "notice" => set.notice = true,
                "debug" => set.debug = true,
                "security" => set.security = true,
                "verbose" => set.verbose = Some(None),
                // Asterisk's other levels have no messages here yet; accept them quietly.
                "dtmf" | "fax" => {}
                w => match w
                    .strip_prefix("verbose(")
                    .and_then(|r| r.strip_suffix(')'))
                    .and_then(|n| n.trim().parse::<u8>().ok())
                {
                    Some(n) => set.verbose = Some(Some(n)),
                    None => {
                        return Err(format!(
                            "unknown level '{w}': expected error, warning, notice, verbose, verbose(N), debug, security or *"
                        ))
                    }
                },
            }
        }
        Ok(set)
    }
}

struct FileChannel {
    name: String,
    levels: LevelSet,
    file: Mutex<File>,
}

struct Remote {
    verbose: u8,
    debug: u8,
    lines: Arc<RemoteLines>,
}

/// A remote console's log lines on their way to it: at most [`RemoteLines::CAPACITY`]. A
/// console that does not keep up loses the oldest, and is told how many before the next line
/// it gets; the server never holds more for it, nor waits for it.
#[derive(Default)]
pub struct RemoteLines {
    queue: Mutex<Pending>,
    ready: Notify,
}

#[derive(Default)]
struct Pending {
    lines: VecDeque<String>,
    dropped: u64,
}

impl RemoteLines {
    pub const CAPACITY: usize = 1024;

    fn push(&self, line: String) {
        {
            let mut pending = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            if pending.lines.len() >= Self::CAPACITY {
                pending.lines.pop_front();
                pending.dropped += 1;
            }
            pending.lines.push_back(line);
        }
        self.ready.notify_one();
    }

    /// The next line, waiting for one; after a loss, first a line saying how many were lost.
    pub async fn next(&self) -> String {
        loop {
            {
                let mut pending = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                if pending.dropped > 0 {
                    let n = std::mem::take(&mut pending.dropped);
                    return format!("[{n} log line{} dropped: this console did not keep up]", plural(n));
                }
                if let Some(line) = pending.lines.pop_front() {
                    return line;
                }
            }
            self.ready.notified().await;
        }
    }
}

/// Where a console's log lines are written (standard error, or a prompt's printer).
pub type ConsoleWriter = Box<dyn Fn(&str) + Send + Sync>;

struct Logger {
    root_verbose: AtomicU8,
    root_debug: AtomicU8,
    console_levels: RwLock<LevelSet>,
    console: RwLock<Option<ConsoleWriter>>,
    files: RwLock<Vec<FileChannel>>,
    remotes: Mutex<BTreeMap<u64, Remote>>,
    next_remote: AtomicU64,
    /// The most detailed level anybody wants: 0 INFO, 1 DEBUG, 2 TRACE.
    max_detail: AtomicU8,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Whether the console or a file takes the `security` level (set at each (re)load).
static SECURITY_WANTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether any destination shows SECURITY lines: reporters skip building lines nobody gets.
pub fn security_wanted() -> bool {
    SECURITY_WANTED.load(Ordering::Relaxed)
}

fn logger() -> &'static Logger {
    LOGGER.get_or_init(|| Logger {
        root_verbose: AtomicU8::new(0),
        root_debug: AtomicU8::new(0),
        console_levels: RwLock::new(LevelSet::DEFAULT),
        console: RwLock::new(None),
        files: RwLock::new(Vec::new()),
        remotes: Mutex::new(BTreeMap::new()),
        next_remote: AtomicU64::new(1),
        max_detail: AtomicU8::new(0),
    })
}

/// Installs the global subscriber. `console` receives the root console's lines
/// (standard error with `-f`); `None` shows them nowhere (a daemon).
pub fn init(settings: &Settings, console: Option<ConsoleWriter>) -> Result<(), ConfigErrors> {
    let log = logger();
    log.root_verbose.store(settings.verbose, Ordering::Relaxed);
    log.root_debug.store(settings.debug, Ordering::Relaxed);
    set_console_writer(console);
    reload(settings)?;
    // A second init (tests that build several cores) keeps the first subscriber.
    let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry().with(StarlingLayer));
    Ok(())
}

/// Replaces where root-console lines go (the interactive console swaps in its printer).
pub fn set_console_writer(console: Option<ConsoleWriter>) {
    *logger().console.write().unwrap_or_else(|p| p.into_inner()) = console;
}

/// Whether the root console's lines are shown somewhere (standard error with `-f`, a prompt).
pub fn has_console() -> bool {
    logger().console.read().unwrap_or_else(|p| p.into_inner()).is_some()
}

/// Reads `logger.conf` from `etcdir` again and reopens the files in `logdir`. On an error
/// the old setup stays.
pub fn reload(settings: &Settings) -> Result<(), ConfigErrors> {
    let path = settings.etcdir.join("logger.conf");
    let (console, wanted) = if path.exists() {
        parse_logger_conf(&Config::load(&path)?)?
    } else {
        (LevelSet::DEFAULT, vec![("messages".to_owned(), LevelSet::DEFAULT, None)])
    };
    let mut files = Vec::new();
    for (name, levels, location) in wanted {
        let path: PathBuf = if name.starts_with('/') { PathBuf::from(&name) } else { settings.logdir.join(&name) };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| ConfigError::new(location, format!("cannot open log file {}: {e}", path.display())))?;
        files.push(FileChannel { name, levels, file: Mutex::new(file) });
    }
    let log = logger();
    SECURITY_WANTED.store(console.security || files.iter().any(|f| f.levels.security), Ordering::Relaxed);
    *log.console_levels.write().unwrap_or_else(|p| p.into_inner()) = console;
    *log.files.write().unwrap_or_else(|p| p.into_inner()) = files;
    update_max_detail();
    Ok(())
}

type WantedFile = (String, LevelSet, Option<crate::config::Location>);

fn parse_logger_conf(config: &Config) -> Result<(LevelSet, Vec<WantedFile>), ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let mut console = LevelSet::DEFAULT;
    let mut files = Vec::new();
    for section in config.sections() {
        match section.name.to_ascii_lowercase().as_str() {
            "general" => {} // dateformat, rotatestrategy...: Asterisk's, not used yet
            "logfiles" => {
                for var in &section.variables {
                    match LevelSet::parse(&var.value) {
                        Ok(levels) if var.name.eq_ignore_ascii_case("console") => console = levels,
                        Ok(levels) => files.push((var.name.clone(), levels, Some(var.location.clone()))),
                        Err(e) => errors.push(var.error(e)),
                    }
                }
            }
            other => errors.push(ConfigError::at(
                &section.location,
                format!("unknown section [{other}]: expected [general] or [logfiles]"),
            )),
        }
    }
    errors.into_result((console, files))
}

/// The verbosity of a console.
pub fn verbose(console: ConsoleId) -> u8 {
    match console {
        ConsoleId::Root => logger().root_verbose.load(Ordering::Relaxed),
        ConsoleId::Remote(id) => lock_remotes().get(&id).map_or(0, |r| r.verbose),
    }
}

/// The debug level of a console.
pub fn debug(console: ConsoleId) -> u8 {
    match console {
        ConsoleId::Root => logger().root_debug.load(Ordering::Relaxed),
        ConsoleId::Remote(id) => lock_remotes().get(&id).map_or(0, |r| r.debug),
    }
}

/// `core set verbose N` on a console.
pub fn set_verbose(console: ConsoleId, level: u8) {
    match console {
        ConsoleId::Root => logger().root_verbose.store(level, Ordering::Relaxed),
        ConsoleId::Remote(id) => {
            if let Some(r) = lock_remotes().get_mut(&id) {
                r.verbose = level
            }
        }
    }
}

/// `core set debug N` on a console.
pub fn set_debug(console: ConsoleId, level: u8) {
    match console {
        ConsoleId::Root => logger().root_debug.store(level, Ordering::Relaxed),
        ConsoleId::Remote(id) => {
            if let Some(r) = lock_remotes().get_mut(&id) {
                r.debug = level
            }
        }
    }
    update_max_detail();
}

/// A remote console joins: it gets its lines from the returned queue until [`remove_remote`].
pub fn add_remote(verbose: u8, debug: u8) -> (ConsoleId, Arc<RemoteLines>) {
    let lines = Arc::new(RemoteLines::default());
    let id = logger().next_remote.fetch_add(1, Ordering::Relaxed);
    lock_remotes().insert(id, Remote { verbose, debug, lines: lines.clone() });
    update_max_detail();
    (ConsoleId::Remote(id), lines)
}

pub fn remove_remote(console: ConsoleId) {
    if let ConsoleId::Remote(id) = console {
        lock_remotes().remove(&id);
        update_max_detail();
    }
}

fn lock_remotes() -> std::sync::MutexGuard<'static, BTreeMap<u64, Remote>> {
    logger().remotes.lock().unwrap_or_else(|p| p.into_inner())
}

fn update_max_detail() {
    let log = logger();
    let mut debug = log.root_debug.load(Ordering::Relaxed);
    for r in lock_remotes().values() {
        debug = debug.max(r.debug);
    }
    log.max_detail.store(debug.min(2), Ordering::Relaxed);
    tracing::callsite::rebuild_interest_cache();
}

/// What one event is, in Asterisk's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Error,
    Warning,
    Notice,
    Verbose(u8),
    Debug(u8),
    Security,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Error => "ERROR",
            Kind::Warning => "WARNING",
            Kind::Notice => "NOTICE",
            Kind::Verbose(_) => "VERBOSE",
            Kind::Debug(_) => "DEBUG",
            Kind::Security => "SECURITY",
        }
    }

    /// Whether a destination with these levels, verbosity and debug level shows it.
    fn shown(self, levels: &LevelSet, verbose: u8, debug: u8, console: bool) -> bool {
        match self {
            Kind::Error => levels.error,
            Kind::Warning => levels.warning,
            Kind::Notice => levels.notice,
            Kind::Security => levels.security,
            // A console always shows verbose messages up to its verbosity, as Asterisk's does.
            Kind::Verbose(n) => match (console, levels.verbose) {
                (true, _) | (false, Some(None)) => n <= verbose,
                (false, Some(Some(max))) => n <= max,
                (false, None) => false,
            },
            Kind::Debug(n) => (console || levels.debug) && n <= debug,
        }
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    extra: String,
    verbose: Option<u8>,
    security: bool,
}

impl Visit for Fields {
    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == "security" {
            self.security = value;
        } else {
            let _ = write!(self.extra, " {}={value}", field.name());
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "verbose" {
            self.verbose = Some(u8::try_from(value).unwrap_or(u8::MAX));
        } else {
            let _ = write!(self.extra, " {}={value}", field.name());
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        match u64::try_from(value) {
            Ok(v) => self.record_u64(field, v),
            Err(_) => {
                let _ = write!(self.extra, " {}={value}", field.name());
            }
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.extra, " {}={value}", field.name());
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.extra, " {}={value:?}", field.name());
        }
    }
}

struct StarlingLayer;

impl<S: Subscriber> Layer<S> for StarlingLayer {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>, _: Context<'_, S>) -> bool {
        let detail = logger().max_detail.load(Ordering::Relaxed);
        match *metadata.level() {
            Level::ERROR | Level::WARN | Level::INFO => true,
            Level::DEBUG => detail >= 1,
            Level::TRACE => detail >= 2,
        }
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let keep_breaks = fields.verbose.is_some() && !fields.security;
        fields.message = escape_message(fields.message, keep_breaks);
        fields.extra = escape_message(fields.extra, false);
        let metadata = event.metadata();
        let kind = match *metadata.level() {
            Level::ERROR => Kind::Error,
            Level::WARN => Kind::Warning,
            Level::INFO if fields.security => Kind::Security,
            Level::INFO => fields.verbose.map_or(Kind::Notice, Kind::Verbose),
            Level::DEBUG => Kind::Debug(1),
            Level::TRACE => Kind::Debug(2),
        };
        dispatch(kind, metadata.target(), &fields);
    }
}

fn dispatch(kind: Kind, target: &str, fields: &Fields) {
    let log = logger();
    let root_verbose = log.root_verbose.load(Ordering::Relaxed);
    let root_debug = log.root_debug.load(Ordering::Relaxed);
    let console_levels = *log.console_levels.read().unwrap_or_else(|p| p.into_inner());
    let mut console_line: Option<String> = None;
    let mut line_for_console = || console_line.get_or_insert_with(|| format_console(kind, target, fields)).clone();

    if kind.shown(&console_levels, root_verbose, root_debug, true) {
        if let Some(write) = log.console.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            write(&line_for_console());
        }
    }
    {
        let mut remotes = lock_remotes();
        remotes.retain(|_, remote| {
            // A console whose connection is gone (nobody else holds its queue) is forgotten.
            if Arc::strong_count(&remote.lines) == 1 {
                return false;
            }
            if kind.shown(&console_levels, remote.verbose, remote.debug, true) {
                remote.lines.push(line_for_console());
            }
            true
        });
    }
    let files = log.files.read().unwrap_or_else(|p| p.into_inner());
    let mut file_line: Option<String> = None;
    for channel in files.iter() {
        if kind.shown(&channel.levels, root_verbose, root_debug, false) {
            let line = file_line.get_or_insert_with(|| format_file(kind, target, fields));
            let mut file = channel.file.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = file.write_all(line.as_bytes()) {
                // Nowhere else to report it but the console.
                eprintln!("cannot write log file '{}': {e}", channel.name);
            }
        }
    }
}

/// `text` with every control character escaped (`\n`, `\r`, `\t`, `\u{1b}`; and the
/// Unicode line and paragraph separators as `\u{2028}`): what a peer sent can never make a
/// line of its own in a log.
pub fn escape_controls(text: &str) -> String {
    escape(text, false)
}

fn is_break_like(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

fn escape(text: &str, keep_breaks: bool) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' if keep_breaks && chars.peek() == Some(&'\n') => {}
            // A kept line break: the next line is indented, so it cannot pass for a log line.
            '\n' if keep_breaks => out.push_str("\n\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_break_like(c) => {
                let _ = write!(out, "{}", c.escape_unicode());
            }
            c => out.push(c),
        }
    }
    out
}

fn escape_message(text: String, keep_breaks: bool) -> String {
    if text.chars().any(is_break_like) {
        escape(&text, keep_breaks)
    } else {
        text
    }
}

fn timestamp() -> String {
    crate::chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string()
}

fn verbose_prefix(level: u8) -> &'static str {
    match level {
        0 | 1 => "",
        2 => "  == ",
        3 => "    -- ",
        _ => "       > ",
    }
}

/// `    -- message` for verbose, `[time] LEVEL[pid] target: message` for the rest.
fn format_console(kind: Kind, target: &str, fields: &Fields) -> String {
    match kind {
        Kind::Verbose(n) => format!("{}{}{}\n", verbose_prefix(n), fields.message, fields.extra),
        _ => format!(
            "[{}] {}[{}] {target}: {}{}\n",
            timestamp(),
            kind.name(),
            std::process::id(),
            fields.message,
            fields.extra
        ),
    }
}

fn format_file(kind: Kind, target: &str, fields: &Fields) -> String {
    let prefix = if let Kind::Verbose(n) = kind { verbose_prefix(n) } else { "" };
    format!(
        "[{}] {}[{}] {target}: {prefix}{}{}\n",
        timestamp(),
        kind.name(),
        std::process::id(),
        fields.message,
        fields.extra
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_console_that_falls_behind_loses_the_oldest_lines_and_is_told() {
        let lines = RemoteLines::default();
        let total = RemoteLines::CAPACITY + 500;
        for i in 0..total {
            lines.push(format!("line {i}"));
        }
        let runtime = crate::tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            assert_eq!(lines.next().await, "[500 log lines dropped: this console did not keep up]");
            for i in 500..total {
                assert_eq!(lines.next().await, format!("line {i}"));
            }
            lines.push("one more".into());
            assert_eq!(lines.next().await, "one more", "no loss reported when nothing was lost");
        });
        assert!(lines.queue.lock().unwrap().lines.is_empty());
    }

    #[test]
    fn level_sets() {
        let s = LevelSet::parse("notice, warning,error,verbose(3)").unwrap();
        assert!(s.notice && s.warning && s.error && !s.debug);
        assert_eq!(s.verbose, Some(Some(3)));
        assert_eq!(LevelSet::parse("*").unwrap().verbose, Some(None));
        assert!(LevelSet::parse("loud").is_err());
    }

    #[test]
    fn who_sees_what() {
        let console = LevelSet::DEFAULT;
        assert!(Kind::Verbose(3).shown(&console, 3, 0, true));
        assert!(!Kind::Verbose(4).shown(&console, 3, 0, true));
        assert!(!Kind::Debug(1).shown(&console, 5, 0, true));
        assert!(Kind::Debug(1).shown(&console, 0, 1, true));
        let file = LevelSet::parse("notice,warning,error").unwrap();
        assert!(!Kind::Verbose(1).shown(&file, 5, 0, false));
        let file = LevelSet::parse("verbose(2)").unwrap();
        assert!(Kind::Verbose(2).shown(&file, 0, 0, false));
        assert!(!Kind::Verbose(3).shown(&file, 9, 0, false));
        assert!(!Kind::Notice.shown(&file, 9, 0, false));
    }

    #[test]
    fn the_security_level_is_its_own() {
        let messages = LevelSet::parse("notice,warning,error").unwrap();
        assert!(!Kind::Security.shown(&messages, 9, 9, false));
        let security = LevelSet::parse("security").unwrap();
        assert!(Kind::Security.shown(&security, 0, 0, false));
        assert!(!Kind::Notice.shown(&security, 0, 0, false));
        assert!(Kind::Security.shown(&LevelSet::parse("*").unwrap(), 0, 0, false));
        let f = Fields { message: "SecurityEvent=\"SuccessfulAuth\"".into(), ..Fields::default() };
        let line = format_file(Kind::Security, "res_security_log.c", &f);
        assert!(
            line.contains("] SECURITY[") && line.ends_with("] res_security_log.c: SecurityEvent=\"SuccessfulAuth\"\n")
        );
    }

    /// A `%0A` that a URI user unescaped to a line feed cannot start a line of its own.
    #[test]
    fn control_characters_are_escaped() {
        let forged = "x\n[Dec  7 03:00:00] NOTICE[1] chan_sip.c: Registration from '<sip:x@1.2.3.4>' failed for '10.9.9.9:5060' - Wrong password";
        let escaped = escape_message(forged.to_owned(), false);
        assert!(!escaped.contains('\n') && escaped.starts_with("x\\n[Dec  7"), "{escaped}");
        assert_eq!(escape_controls("a\r\tb\u{1b}[31m\u{2028}c\u{85}"), "a\\r\\tb\\u{1b}[31m\\u{2028}c\\u{85}");
        assert_eq!(escape_message("plain".into(), false), "plain");
        // Verbose keeps its line breaks (sip debug), indenting what follows each.
        assert_eq!(escape_message("a\r\nNOTICE[1] b\u{7}".into(), true), "a\n\tNOTICE[1] b\\u{7}");
    }

    #[test]
    fn logger_conf_errors_name_the_line() {
        let c = Config::parse_str("logger.conf", "[logfiles]\nmessages => notice,loud\n[other]\n").unwrap();
        let e = parse_logger_conf(&c).unwrap_err().to_string();
        assert!(e.starts_with("logger.conf:2: messages 'notice,loud': unknown level 'loud'"), "{e}");
        assert!(e.contains("logger.conf:3: unknown section [other]"), "{e}");
    }

    #[test]
    fn formats() {
        let f = Fields { message: "Executing [100@default:1] Answer".into(), ..Fields::default() };
        assert_eq!(format_console(Kind::Verbose(3), "app", &f), "    -- Executing [100@default:1] Answer\n");
        let line = format_file(Kind::Warning, "chan_sip", &f);
        assert!(
            line.contains("] WARNING[") && line.ends_with("chan_sip: Executing [100@default:1] Answer\n"),
            "{line}"
        );
    }
}
