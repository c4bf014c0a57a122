//! The CLI command registry: what the console, `-r` and `-rx` run.
//!
//! A command is one [`CliCommand`]: its words (`"core show version"`), a one-line summary
//! for `core show help`, its usage (printed when the handler returns
//! [`CliResult::ShowUsage`]), the handler, and optionally a completer for its arguments, as
//! Asterisk's `AST_CLI_DEFINE` entries are. Modules register a table of them in `load` and
//! keep the [`CliRegistration`] guard; dropping it on unload removes them.
//!
//! The longest registered command whose words begin the line runs; the words after it are
//! its arguments. Words compare case-insensitively. Handlers are synchronous (as Asterisk's
//! are) and run off the runtime's worker threads, so they may block briefly on a lock.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use crate::core::Core;

/// What a handler returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CliResult {
    Success,
    /// Wrong arguments: the caller prints the command's usage.
    ShowUsage,
    /// The handler has printed why it failed.
    Failure,
}

/// Identifies a console for commands that act on "this console" (`core set verbose`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConsoleId {
    /// The foreground console (`-c`) or standard error (`-f`); also what `-rx` acts on.
    Root,
    /// A remote console connected with `-r`.
    Remote(u64),
}

pub type CliHandler = Arc<dyn Fn(&mut CliCall<'_>) -> CliResult + Send + Sync>;
/// Completes the word at `position` (an index into `words`) of a command line.
pub type CliCompleter = Arc<dyn Fn(&Arc<Core>, &[&str], usize) -> Vec<String> + Send + Sync>;

/// One CLI command, as `AST_CLI_DEFINE` describes one.
#[derive(Clone)]
pub struct CliCommand {
    pub command: Cow<'static, str>,
    pub summary: Cow<'static, str>,
    pub usage: Cow<'static, str>,
    pub handler: CliHandler,
    pub completer: Option<CliCompleter>,
}

impl CliCommand {
    pub fn new(
        command: impl Into<Cow<'static, str>>,
        summary: impl Into<Cow<'static, str>>,
        usage: impl Into<Cow<'static, str>>,
        handler: impl Fn(&mut CliCall<'_>) -> CliResult + Send + Sync + 'static,
    ) -> Self {
        CliCommand {
            command: command.into(),
            summary: summary.into(),
            usage: usage.into(),
            handler: Arc::new(handler),
            completer: None,
        }
    }

    /// Adds a completer for the words after the command.
    pub fn with_completer(
        mut self,
        completer: impl Fn(&Arc<Core>, &[&str], usize) -> Vec<String> + Send + Sync + 'static,
    ) -> Self {
        self.completer = Some(Arc::new(completer));
        self
    }

    /// The command's words (`["core", "show", "version"]`).
    pub fn words(&self) -> impl Iterator<Item = &str> {
        self.command.split_ascii_whitespace()
    }
}

/// One run of a handler: its arguments, its output, and who asked.
pub struct CliCall<'a> {
    pub core: &'a Arc<Core>,
    /// Every word of the line, the command's own words first.
    pub words: Vec<String>,
    /// How many of `words` are the command itself; the rest are arguments.
    pub command_len: usize,
    pub console: ConsoleId,
    out: String,
}

impl CliCall<'_> {
    /// The words after the command.
    pub fn args(&self) -> &[String] {
        &self.words[self.command_len..]
    }
    /// Appends to the command's output.
    pub fn print(&mut self, text: &str) {
        self.out.push_str(text);
    }
}

impl fmt::Write for CliCall<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.out.push_str(s);
        Ok(())
    }
}

/// A command with that name exists already.
#[derive(Debug, thiserror::Error)]
#[error("CLI command '{0}' is already registered")]
pub struct DuplicateCommand(pub String);

#[derive(Default)]
struct Registry {
    next_id: u64,
    /// By id, so a guard can remove exactly its own entries.
    commands: BTreeMap<u64, (String, CliCommand)>,
}

/// The registry. One per [`Core`].
#[derive(Clone, Default)]
pub struct Cli {
    inner: Arc<Mutex<Registry>>,
}

/// Keeps commands registered; dropping it unregisters them.
#[must_use = "the commands are unregistered when this guard drops"]
pub struct CliRegistration {
    inner: Arc<Mutex<Registry>>,
    ids: Vec<u64>,
}

impl Drop for CliRegistration {
    fn drop(&mut self) {
        let mut registry = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for id in &self.ids {
            registry.commands.remove(id);
        }
    }
}

fn same_words(a: &str, b: &str) -> bool {
    a.split_ascii_whitespace().map(str::to_ascii_lowercase).eq(b.split_ascii_whitespace().map(str::to_ascii_lowercase))
}

impl Cli {
    /// Adds `commands` for `owner` (a module name, or `"core"`). Refuses a duplicate, as
    /// Asterisk's `ast_cli_register` does, and then registers none of them.
    pub fn register(&self, owner: &str, commands: Vec<CliCommand>) -> Result<CliRegistration, DuplicateCommand> {
        let mut registry = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for (i, command) in commands.iter().enumerate() {
            let clash = registry.commands.values().any(|(_, c)| same_words(&c.command, &command.command))
                || commands[..i].iter().any(|c| same_words(&c.command, &command.command));
            if clash {
                return Err(DuplicateCommand(command.command.to_string()));
            }
        }
        let mut ids = Vec::with_capacity(commands.len());
        for command in commands {
            registry.next_id += 1;
            let id = registry.next_id;
            registry.commands.insert(id, (owner.to_owned(), command));
            ids.push(id);
        }
        Ok(CliRegistration { inner: self.inner.clone(), ids })
    }

    /// Every command, sorted by its words.
    pub fn commands(&self) -> Vec<CliCommand> {
        let registry = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<CliCommand> = registry.commands.values().map(|(_, c)| c.clone()).collect();
        all.sort_by(|a, b| a.command.cmp(&b.command));
        all
    }

    /// The longest command whose words begin `words`, and how many words it has.
    fn find(&self, words: &[String]) -> Option<(CliCommand, usize)> {
        let registry = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        registry
            .commands
            .values()
            .filter_map(|(_, c)| {
                let len = c.words().count();
                let matches = len <= words.len() && c.words().zip(words).all(|(a, b)| a.eq_ignore_ascii_case(b));
                matches.then(|| (c.clone(), len))
            })
            .max_by_key(|(_, len)| *len)
    }

    /// Runs one command line and returns what it printed.
    pub fn execute(&self, core: &Arc<Core>, console: ConsoleId, line: &str) -> String {
        let words = split_words(line);
        if words.is_empty() {
            return String::new();
        }
        let Some((command, command_len)) = self.find(&words) else {
            return format!(
                "No such command '{}' (type 'core show help {}' for other possible commands)\n",
                line.trim(),
                words[0]
            );
        };
        let mut call = CliCall { core, words, command_len, console, out: String::new() };
        let result = (command.handler)(&mut call);
        let mut out = call.out;
        if result == CliResult::ShowUsage {
            out.push_str(command.usage.trim_end());
            out.push('\n');
        }
        out
    }

    /// Candidates for the last word of `line` (the one being typed; empty after a space).
    pub fn complete(&self, core: &Arc<Core>, line: &str) -> Vec<String> {
        let mut words: Vec<&str> = line.split_ascii_whitespace().collect();
        if line.is_empty() || line.ends_with(|c: char| c.is_ascii_whitespace()) {
            words.push("");
        }
        let position = words.len() - 1;
        let partial = words[position].to_ascii_lowercase();
        let mut found: Vec<String> = Vec::new();
        for command in self.commands() {
            let own: Vec<&str> = command.words().collect();
            let typed_match = own.iter().zip(&words[..position]).all(|(a, b)| a.eq_ignore_ascii_case(b));
            if !typed_match {
                continue;
            }
            if position < own.len() {
                if own[position].to_ascii_lowercase().starts_with(partial.as_str()) {
                    found.push(own[position].to_owned());
                }
            } else if let Some(completer) = &command.completer {
                found.extend(
                    completer(core, &words, position)
                        .into_iter()
                        .filter(|c| c.to_ascii_lowercase().starts_with(partial.as_str())),
                );
            }
        }
        found.sort();
        found.dedup();
        found
    }
}

/// Splits a command line into words; `"double quotes"` keep spaces inside one word.
pub fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_command(name: &'static str) -> CliCommand {
        CliCommand::new(name, "echo", "Usage: echo", |call| {
            let args = call.args().join(",");
            call.print(&format!("args={args}\n"));
            CliResult::Success
        })
    }

    #[test]
    fn words_and_quotes() {
        assert_eq!(split_words("  sip show  peer \"a b\" x"), ["sip", "show", "peer", "a b", "x"]);
        assert_eq!(split_words("\"\""), [""]);
    }

    #[test]
    fn longest_match_runs_with_the_rest_as_arguments() {
        let core = Core::for_tests();
        let cli = core.cli();
        let _r = cli.register("test", vec![echo_command("test show"), echo_command("test show peer")]).unwrap();
        assert_eq!(cli.execute(&core, ConsoleId::Root, "TEST show peer bob"), "args=bob\n");
        assert_eq!(cli.execute(&core, ConsoleId::Root, "test show x"), "args=x\n");
        assert!(cli.execute(&core, ConsoleId::Root, "test nothing").starts_with("No such command 'test nothing'"));
    }

    #[test]
    fn duplicates_are_refused_and_guards_unregister() {
        let core = Core::for_tests();
        let cli = core.cli();
        let guard = cli.register("a", vec![echo_command("test one")]).unwrap();
        assert!(cli.register("b", vec![echo_command("test  ONE")]).is_err());
        assert!(cli.register("b", vec![echo_command("test two"), echo_command("test two")]).is_err());
        drop(guard);
        assert!(cli.execute(&core, ConsoleId::Root, "test one").starts_with("No such command"));
        let _again = cli.register("b", vec![echo_command("test one")]).unwrap();
    }

    #[test]
    fn usage_is_printed_on_show_usage() {
        let core = Core::for_tests();
        let cli = core.cli();
        let _r = cli
            .register(
                "t",
                vec![CliCommand::new("test usage", "s", "Usage: test usage <x>\n", |_| CliResult::ShowUsage)],
            )
            .unwrap();
        assert_eq!(cli.execute(&core, ConsoleId::Root, "test usage"), "Usage: test usage <x>\n");
    }

    #[test]
    fn completion_of_words_and_arguments() {
        let core = Core::for_tests();
        let cli = core.cli();
        let _r = cli
            .register(
                "t",
                vec![
                    echo_command("test show peers"),
                    echo_command("test show peer").with_completer(|_, _, _| vec!["alice".into(), "bob".into()]),
                    echo_command("test set debug"),
                ],
            )
            .unwrap();
        assert_eq!(cli.complete(&core, "test s"), ["set", "show"]);
        assert_eq!(cli.complete(&core, "test show "), ["peer", "peers"]);
        assert_eq!(cli.complete(&core, "test show peer "), ["alice", "bob"]);
        assert_eq!(cli.complete(&core, "test show peer b"), ["bob"]);
        assert!(cli.complete(&core, "nothing ").is_empty());
    }
}
