//! The interactive consoles: the root console (`-c`) and the remote console (`-r`).
//! Both are a rustyline prompt with tab completion and history; they differ only in where a
//! line goes (the core's registry directly, or the control socket).

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, ExternalPrinter, Helper};

/// Where console lines go.
pub trait Backend: Send {
    /// Runs a line; returns its output and whether the server is still there.
    fn execute(&mut self, line: &str) -> (String, bool);
    fn complete(&mut self, line: &str) -> Vec<String>;
}

struct LineHelper {
    backend: Arc<Mutex<dyn Backend>>,
}

impl Completer for LineHelper {
    type Candidate = String;
    fn complete(&self, line: &str, pos: usize, _: &Context<'_>) -> rustyline::Result<(usize, Vec<String>)> {
        let typed = &line[..pos];
        let start = typed.rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let candidates = self.backend.lock().unwrap_or_else(|p| p.into_inner()).complete(typed);
        Ok((start, candidates))
    }
}
impl Hinter for LineHelper {
    type Hint = String;
}
impl Highlighter for LineHelper {}
impl Validator for LineHelper {}
impl Helper for LineHelper {}

/// Prints log lines above the prompt while the user types.
pub type LinePrinter = starling_core::logger::ConsoleWriter;

fn history_file() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".starling_history"))
}

/// What ended a console session.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// `quit`/`exit` or Ctrl-D on a remote console; Ctrl-D on a root console without a terminal.
    Closed,
    /// Ctrl-C.
    Interrupted,
    /// The server went away.
    ServerGone,
}

/// Runs a console until it ends. `ready` receives the function that prints log lines above
/// the prompt, before the first prompt appears. `remote` consoles treat `quit`/`exit` and
/// Ctrl-D as the end of the session.
pub fn run(prompt: &str, backend: Arc<Mutex<dyn Backend>>, remote: bool, ready: impl FnOnce(LinePrinter)) -> Ended {
    if !std::io::stdin().is_terminal() {
        ready(Box::new(|line: &str| {
            let _ = std::io::stdout().write_all(line.as_bytes());
        }));
        return run_plain(&backend, remote);
    }
    let mut editor: Editor<LineHelper, DefaultHistory> = match Editor::new() {
        Ok(editor) => editor,
        Err(e) => {
            eprintln!("cannot start the console: {e}");
            return run_plain(&backend, remote);
        }
    };
    editor.set_helper(Some(LineHelper { backend: backend.clone() }));
    let history = history_file();
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    match editor.create_external_printer() {
        Ok(printer) => {
            let printer = Mutex::new(printer);
            ready(Box::new(move |line: &str| {
                let _ = printer.lock().unwrap_or_else(|p| p.into_inner()).print(line.trim_end_matches('\n').to_owned());
            }));
        }
        Err(_) => ready(Box::new(|line: &str| eprint!("{line}"))),
    }
    let ended = loop {
        match editor.readline(prompt) {
            Ok(line) => {
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                let _ = editor.add_history_entry(line);
                if let Some(ended) = one_line(&backend, line, remote) {
                    break ended;
                }
            }
            Err(ReadlineError::Interrupted) => break Ended::Interrupted,
            Err(ReadlineError::Eof) if remote => break Ended::Closed,
            Err(ReadlineError::Eof) => println!("Use 'core stop now' to stop Starling, or Ctrl-C."),
            Err(e) => {
                eprintln!("console: {e}");
                break Ended::Closed;
            }
        }
    };
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
    ended
}

/// Without a terminal (input from a pipe): one command per line, no prompt.
fn run_plain(backend: &Arc<Mutex<dyn Backend>>, remote: bool) -> Ended {
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(ended) = one_line(backend, line, remote) {
            return ended;
        }
    }
    Ended::Closed
}

fn one_line(backend: &Arc<Mutex<dyn Backend>>, line: &str, remote: bool) -> Option<Ended> {
    if line.eq_ignore_ascii_case("quit") || line.eq_ignore_ascii_case("exit") {
        if remote {
            return Some(Ended::Closed);
        }
        println!("Use 'core stop now' to stop Starling.");
        return None;
    }
    let (out, alive) = backend.lock().unwrap_or_else(|p| p.into_inner()).execute(line);
    print!("{out}");
    let _ = std::io::stdout().flush();
    (!alive).then_some(Ended::ServerGone)
}
