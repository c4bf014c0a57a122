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
/// parentheses, brackets and double quotes. With `remove_chars` (`AST_STANDARD_APP_ARGS`) the
/// quotes go and `\x` becomes `x` (any `x`: `,` `|` `)` `"` `\`); without
/// (`AST_STANDARD_RAW_ARGS`) both stay. There are at most `max` arguments, as the fields an
/// application declares: the last one is the rest of the text as written (Asterisk does not
/// parse it). A trailing delimiter makes one more, empty, argument; an empty string has none.
pub fn separate_args(data: &str, delim: char, remove_chars: bool, max: usize) -> Vec<String> {
    let mut args = Vec::new();
    if max == 0 {
        return args;
    }
    let (mut paren, mut bracket, mut quote) = (0u32, 0u32, false);
    let mut rest = data;
    let mut ended_on_delim = false;
    while !rest.is_empty() && args.len() + 1 < max {
        let mut current = String::new();
        let mut chars = rest.char_indices();
        let mut next = "";
        ended_on_delim = false;
        while let Some((i, c)) = chars.next() {
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
                    if let Some((_, escaped)) = chars.next() {
                        current.push(escaped);
                    }
                    continue;
                }
                _ if c == delim && paren == 0 && bracket == 0 && !quote => {
                    next = &rest[i + c.len_utf8()..];
                    ended_on_delim = true;
                    break;
                }
                _ => {}
            }
            current.push(c);
        }
        args.push(current);
        rest = if ended_on_delim { next } else { "" };
    }
    if !rest.is_empty() || ended_on_delim {
        args.push(rest.to_owned());
    }
    args
}

/// `AST_STANDARD_APP_ARGS`: [`separate_args`] at commas, quotes and escapes removed.
pub fn standard_args(data: &str) -> Vec<String> {
    separate_args(data, ',', true, usize::MAX)
}

/// `AST_DECLARE_APP_ARGS` with `N` fields filled by `AST_STANDARD_APP_ARGS`: the fields, those
/// not given empty, and how many were given (`args.argc`).
pub fn app_args<const N: usize>(data: &str) -> ([String; N], usize) {
    let given = separate_args(data, ',', true, N);
    let argc = given.len();
    let mut given = given.into_iter();
    (std::array::from_fn(|_| given.next().unwrap_or_default()), argc)
}

/// Asterisk's `ast_get_encoded_char`: the byte at the start of `text` and how many bytes
/// spell it — `\n`, `\r`, `\t`, `\xHH` (one or two hex digits), `\0OOO` (octal), `\c` for
/// any other `c`, or the byte itself. `None` at the end or for `\x` without a hex digit.
pub fn encoded_char(text: &[u8]) -> Option<(u8, usize)> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    match text {
        [] => None,
        [b'\\', b'n', ..] => Some((b'\n', 2)),
        [b'\\', b'r', ..] => Some((b'\r', 2)),
        [b'\\', b't', ..] => Some((b'\t', 2)),
        [b'\\', b'x', rest @ ..] => {
            let Some(high) = rest.first().and_then(|&b| hex(b)) else {
                tracing::error!(
                    "Illegal character '{}' in hexadecimal string",
                    rest.first().map_or(String::new(), |&b| (b as char).escape_debug().to_string())
                );
                return None;
            };
            match rest.get(1).and_then(|&b| hex(b)) {
                Some(low) => Some(((high << 4) | low, 4)),
                None => Some((high, 3)),
            }
        }
        [b'\\', b'0', rest @ ..] => {
            let digits = rest.iter().take_while(|b| (b'0'..=b'7').contains(b)).count();
            // As Asterisk's char, more than three digits wrap.
            let value = rest[..digits].iter().fold(0u8, |v, &d| v.wrapping_shl(3).wrapping_add(d - b'0'));
            Some((value, 2 + digits))
        }
        [b'\\', c, ..] => Some((*c, 2)),
        [b'\\'] => Some((0, 1)),
        [c, ..] => Some((*c, 1)),
    }
}

/// Asterisk's `ast_get_encoded_str`: every [`encoded_char`] of `text` decoded (what functions
/// do with a delimiter); it stops at a bad escape, as Asterisk's does.
pub fn get_encoded_str(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((byte, used)) = encoded_char(rest) {
        out.push(byte);
        rest = &rest[used..];
    }
    String::from_utf8_lossy(&out).into_owned()
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

impl Function {
    /// A function that is only read and is safe from anywhere (its module's use is added when
    /// it is registered).
    pub const fn read_only(
        name: &'static str,
        synopsis: &'static str,
        syntax: &'static str,
        read: FuncRead,
    ) -> Function {
        Function { name, synopsis, syntax, read: Some(read), write: None, escalation: Escalation::None, uses: None }
    }
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

    /// Asterisk's argument rules, case by case (app.c's __ast_app_separate_args, and the
    /// examples of Asterisk's documentation for escaping in arguments).
    #[test]
    fn arguments_split_as_asterisk_splits_them() {
        let table: &[(&str, usize, &[&str])] = &[
            // `${CUT(WORDS,\,,3)}`: the delimiter is an escaped comma.
            ("WORDS,\\,,3", 3, &["WORDS", ",", "3"]),
            // `${FIELDQTY(WORDS,\,)}`: its last field stays `\,` (FIELDQTY decodes it).
            ("WORDS,\\,", 2, &["WORDS", "\\,"]),
            ("a\\,b,c", usize::MAX, &["a,b", "c"]),
            ("a\\|b", usize::MAX, &["a|b"]),
            ("a\\)b,c", usize::MAX, &["a)b", "c"]),
            ("a\\(b,c", usize::MAX, &["a(b", "c"]),
            ("say \\\"hi\\\",x", usize::MAX, &["say \"hi\"", "x"]),
            ("back\\\\slash,x", usize::MAX, &["back\\slash", "x"]),
            ("\"a,b\",c", usize::MAX, &["a,b", "c"]),
            ("x\"a,b\"y,c", usize::MAX, &["xa,by", "c"]),
            ("${CUT(a,b,c)},d", usize::MAX, &["${CUT(a,b,c)}", "d"]),
            ("$[${X} + 1],d", usize::MAX, &["$[${X} + 1]", "d"]),
            ("$[1,2],d", usize::MAX, &["$[1,2]", "d"]),
            ("a,,b", usize::MAX, &["a", "", "b"]),
            (",", usize::MAX, &["", ""]),
            ("a,", usize::MAX, &["a", ""]),
            ("", usize::MAX, &[]),
            // The last declared field is the rest as written: not split, not unescaped.
            ("1,a\\,b,c", 2, &["1", "a\\,b,c"]),
            ("1,\"q\"", 2, &["1", "\"q\""]),
            ("a,b,", 2, &["a", "b,"]),
            ("a,", 2, &["a", ""]),
            // An unbalanced closing parenthesis does not go below zero.
            ("a),b", usize::MAX, &["a)", "b"]),
            // A backslash at the very end escapes nothing.
            ("a\\", usize::MAX, &["a"]),
        ];
        for (data, max, want) in table {
            assert_eq!(separate_args(data, ',', true, *max), *want, "{data:?} in at most {max}");
        }
        assert_eq!(get_encoded_str("\\,"), ",");
        assert_eq!(get_encoded_str("a\\tb\\n\\x41\\0101\\\\"), "a\tb\nAA\\");
        let (fields, argc) = app_args::<3>("v,\\,");
        assert_eq!((fields, argc), (["v".to_owned(), ",".to_owned(), String::new()], 2));
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
