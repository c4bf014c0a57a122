//! The application and function registries: what `Dial`, `Playback`, `${LEN(...)}` resolve
//! to. Modules register theirs in `load` and keep the guard; `core show applications` and
//! `core show functions` list them. A name is registered once (case-insensitively, as Asterisk).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use crate::channel::Channel;
use crate::module::UseCount;

/// Asterisk's `__ast_app_separate_args`: splits application arguments at `delim` outside
/// parentheses, brackets and double quotes, into at most `max` (the last one takes the rest).
/// With `remove_chars` (`AST_STANDARD_APP_ARGS`) the quotes go and `\x` becomes `x`; without
/// (`AST_STANDARD_RAW_ARGS`) both stay. A trailing delimiter makes one more, empty, argument;
/// an empty string has none.
pub fn separate_args(data: &str, delim: char, remove_chars: bool, max: usize) -> Vec<String> {
    let mut args = Vec::new();
    if data.is_empty() || max == 0 {
        return args;
    }
    let (mut paren, mut bracket, mut quote) = (0u32, 0u32, false);
    let mut current = String::new();
    let mut chars = data.chars();
    let mut ended_on_delim = false;
    while let Some(c) = chars.next() {
        ended_on_delim = false;
        match c {
            '(' => paren += 1,
            ')' => paren = paren.saturating_sub(1),
            '[' => bracket += 1,
            ']' => bracket = bracket.saturating_sub(1),
            '"' if delim != '"' => {
                quote = !quote;
                if remove_chars {
                    continue;
                }
            }
            '\\' => {
                if !remove_chars {
                    current.push(c);
                }
                if let Some(next) = chars.next() {
                    current.push(next);
                }
                continue;
            }
            _ if c == delim && paren == 0 && bracket == 0 && !quote && args.len() + 1 < max => {
                args.push(std::mem::take(&mut current));
                ended_on_delim = true;
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    if !current.is_empty() || ended_on_delim || args.is_empty() {
        args.push(current);
    }
    args
}

/// `AST_STANDARD_APP_ARGS`: [`separate_args`] at commas, quotes and escapes removed.
pub fn standard_args(data: &str) -> Vec<String> {
    separate_args(data, ',', true, usize::MAX)
}

/// What an application tells the PBX loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppResult {
    /// Go on with the next priority (or where the application jumped).
    Continue,
    /// Stop the dialplan (the channel hangs up, `h` runs).
    Hangup,
}

pub type AppFuture<'a> = Pin<Box<dyn Future<Output = AppResult> + Send + 'a>>;
/// An application: runs on the channel's own task with its (substituted) arguments.
pub type AppFn = for<'a> fn(&'a mut Channel, &'a str) -> AppFuture<'a>;
/// A function read: `${NAME(args)}`.
pub type FuncRead = fn(&mut Channel, &str) -> Result<String, String>;
/// A function write: `Set(NAME(args)=value)`.
pub type FuncWrite = fn(&mut Channel, &str, &str) -> Result<(), String>;

#[derive(Clone)]
pub struct App {
    pub name: &'static str,
    pub synopsis: &'static str,
    pub description: &'static str,
    pub exec: AppFn,
    /// The registering module's use count: held while the application runs.
    pub uses: Option<Arc<UseCount>>,
}

impl App {
    /// An application with its `core show application` texts (its module's use is added when
    /// it is registered).
    pub const fn new(name: &'static str, synopsis: &'static str, description: &'static str, exec: AppFn) -> App {
        App { name, synopsis, description, exec, uses: None }
    }
}

impl App {
    /// Runs the application on `chan` with `data`, its module's use held, as the PBX loop and
    /// originate do. A panic inside it ends this call only (see [`hang_up_after_panic`]) and
    /// comes back as [`AppResult::Hangup`].
    pub async fn run(&self, chan: &mut Channel, data: &str) -> AppResult {
        let _use = self.uses.clone().map(crate::module::ModuleUse::new);
        // Inside the future: an AppFn that panics before it returns its future is caught too.
        let exec = self.exec;
        let ran = crate::panic::catch_future(async { exec(&mut *chan, data).await }).await;
        match ran {
            Ok(result) => result,
            Err(report) => {
                hang_up_after_panic(chan, &format!("Application {}({data})", self.name), &report);
                AppResult::Hangup
            }
        }
    }
}

/// What a call does after a panic in its own work (an application, a function): one ERROR
/// line names the channel and the panic, and the channel hangs up with `FAILURE` (Asterisk's
/// `AST_CAUSE_FAILURE`, as for an application that fails): the far end gets BYE once answered,
/// a 500 before. The dialplan then ends as at any hangup (`h` runs).
pub fn hang_up_after_panic(chan: &mut Channel, what: &str, report: &crate::panic::PanicReport) {
    crate::tracing::error!("{what} on {} panicked: {report}; hanging up the call", chan.name());
    if !chan.is_hung_up() {
        chan.set_hangup_cause(crate::frame::Cause::FAILURE);
        chan.hangup(crate::frame::Cause::FAILURE);
    }
}

#[derive(Clone)]
pub struct Function {
    pub name: &'static str,
    pub synopsis: &'static str,
    /// How it is called (`LEN(string)`), for `core show functions` and `core show function`.
    pub syntax: &'static str,
    pub read: Option<FuncRead>,
    pub write: Option<FuncWrite>,
    /// Whether reading or writing it is dangerous (runs programs, touches files or the
    /// database), so refused from outside the dialplan (see [`Function::read_allowed`]).
    pub escalation: Escalation,
    pub uses: Option<Arc<UseCount>>,
}

/// Asterisk's `ast_custom_function_escalation` (`AST_CFE_*`, given to
/// `ast_custom_function_register_escalating`): which uses of a function escalate privileges.
/// An escalating use is refused on a channel that inhibits escalations (one evaluating for the
/// manager, see [`Channel::inhibit_escalations`]) unless `live_dangerously = yes`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Escalation {
    /// Safe to read and write from anywhere (`AST_CFE_NONE`).
    #[default]
    None,
    /// Reading it is dangerous (`SHELL`, `DB_DELETE`).
    Read,
    /// Writing it is dangerous.
    Write,
    /// Both (`DB`, Asterisk's `FILE`).
    Both,
}

impl Escalation {
    pub fn on_read(self) -> bool {
        matches!(self, Escalation::Read | Escalation::Both)
    }
    pub fn on_write(self) -> bool {
        matches!(self, Escalation::Write | Escalation::Both)
    }
}

impl Function {
    /// Asterisk's `is_read_allowed`: false (and one ERROR line, `Dangerous function NAME read
    /// blocked`, as `ast_func_read` writes) when reading this function escalates, `chan`
    /// inhibits escalations and `live_dangerously` is off.
    pub fn read_allowed(&self, chan: &Channel) -> bool {
        self.allowed(chan, self.escalation.on_read(), "read")
    }
    /// Asterisk's `is_write_allowed`, as [`Function::read_allowed`] for `Set(NAME()=...)`.
    pub fn write_allowed(&self, chan: &Channel) -> bool {
        self.allowed(chan, self.escalation.on_write(), "write")
    }
    fn allowed(&self, chan: &Channel, escalates: bool, what: &str) -> bool {
        if !escalates || !chan.inhibits_escalations() {
            return true;
        }
        if chan.core().settings().live_dangerously {
            crate::tracing::debug!(
                "{} {} from a dangerous context",
                if what == "read" { "Reading" } else { "Writing" },
                self.name
            );
            return true;
        }
        crate::tracing::error!("Dangerous function {} {what} blocked", self.name);
        false
    }
}

/// A registry of named things, unregistered by guard.
pub struct Registry<T> {
    items: Arc<Mutex<BTreeMap<String, T>>>,
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Registry { items: Arc::default() }
    }
}

/// Keeps an entry registered; dropping it unregisters it.
#[must_use = "the entry is unregistered when this guard drops"]
pub struct Registration<T> {
    items: Arc<Mutex<BTreeMap<String, T>>>,
    key: String,
}

impl<T> Drop for Registration<T> {
    fn drop(&mut self) {
        self.items.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.key);
    }
}

/// A name is registered already.
#[derive(Debug, thiserror::Error)]
#[error("'{0}' is already registered")]
pub struct Duplicate(pub String);

impl<T: Clone> Registry<T> {
    /// Adds `item` as `name`; refused if the name exists.
    pub fn register(&self, name: &str, item: T) -> Result<Registration<T>, Duplicate> {
        let key = name.to_ascii_lowercase();
        let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        if items.contains_key(&key) {
            return Err(Duplicate(name.to_owned()));
        }
        items.insert(key.clone(), item);
        Ok(Registration { items: self.items.clone(), key })
    }

    pub fn get(&self, name: &str) -> Option<T> {
        self.items.lock().unwrap_or_else(|p| p.into_inner()).get(&name.to_ascii_lowercase()).cloned()
    }

    /// Every name registered (lower case), sorted.
    pub fn names(&self) -> Vec<String> {
        self.items.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect()
    }

    /// Every entry, by name.
    pub fn all(&self) -> Vec<T> {
        self.items.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop<'a>(_: &'a mut Channel, _: &'a str) -> AppFuture<'a> {
        Box::pin(async { AppResult::Continue })
    }

    /// As app.c's __ast_app_separate_args.
    #[test]
    fn arguments_split_as_asterisk() {
        assert_eq!(standard_args("a,b,c"), ["a", "b", "c"]);
        assert_eq!(standard_args("1,\"hello, world\""), ["1", "hello, world"], "quotes group and go");
        assert_eq!(standard_args("x,${CUT(a,b,c)},[1,2]"), ["x", "${CUT(a,b,c)}", "[1,2]"], "nesting");
        assert_eq!(standard_args("a\\,b"), ["a,b"], "an escaped comma");
        assert_eq!(standard_args("a,"), ["a", ""], "a trailing comma is one more argument");
        assert!(standard_args("").is_empty());
        assert_eq!(separate_args("a,b,c", ',', true, 2), ["a", "b,c"], "the last takes the rest");
        assert_eq!(separate_args("\"a,b\",c", ',', false, usize::MAX), ["\"a,b\"", "c"], "raw keeps quotes");
    }

    fn read_nothing(_: &mut Channel, _: &str) -> Result<String, String> {
        Ok(String::new())
    }

    /// As Asterisk's is_read_allowed/is_write_allowed: only an escalating use on a channel that
    /// inhibits escalations is refused (live_dangerously is off in the test core).
    #[test]
    fn escalating_uses_are_refused_only_where_inhibited() {
        let core = crate::Core::for_tests();
        let (mut chan, _driver) = Channel::new(&core, "Test", "x", false);
        let function = |escalation| Function {
            name: "F",
            synopsis: "",
            syntax: "F()",
            read: Some(read_nothing),
            write: None,
            escalation,
            uses: None,
        };
        let all = [Escalation::None, Escalation::Read, Escalation::Write, Escalation::Both];
        for escalation in all {
            assert!(function(escalation).read_allowed(&chan) && function(escalation).write_allowed(&chan));
        }
        assert!(!chan.inhibit_escalations(true));
        let allowed: Vec<(bool, bool)> =
            all.iter().map(|&e| (function(e).read_allowed(&chan), function(e).write_allowed(&chan))).collect();
        assert_eq!(allowed, [(true, true), (false, true), (true, false), (false, false)]);
        assert!(chan.inhibit_escalations(false), "the swap gives the previous setting back");
        assert!(function(Escalation::Both).read_allowed(&chan));
    }

    #[test]
    fn register_once_and_unregister_on_drop() {
        let apps: Registry<App> = Registry::default();
        let app = App { name: "NoOp", synopsis: "Do nothing", description: "", exec: noop, uses: None };
        let guard = apps.register("NoOp", app.clone()).unwrap();
        assert!(apps.register("NOOP", app.clone()).is_err());
        assert_eq!(apps.get("noop").unwrap().name, "NoOp");
        drop(guard);
        assert!(apps.get("NoOp").is_none());
    }
}
