//! The control socket (`starling.ctl` in `rundir`): how `-r` and `-rx` reach a running server.
//!
//! A line protocol, one message per line:
//!
//! | from   | line                  | meaning                                                  |
//! |--------|-----------------------|----------------------------------------------------------|
//! | client | `V <verbose> <debug>` | a remote console: send me log lines at these levels      |
//! | client | `X <command line>`    | run a CLI command                                        |
//! | client | `T <partial line>`    | complete the last word                                   |
//! | server | `O <text>`            | one line of a command's output (or one completion)       |
//! | server | `E`                   | the end of that output                                   |
//! | server | `L <text>`            | one log line, at any time, for a remote console          |
//!
//! Command output never mixes with log lines inside one line, and a client that sent `X`
//! reads `O` lines until `E` (a connection closed instead means the server stopped).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;

use starling_core::cli::ConsoleId;
use starling_core::tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use starling_core::tokio::net::{UnixListener, UnixStream as AsyncUnixStream};
use starling_core::{logger, tokio, tracing, Core};

/// Accepts remote consoles until the process ends.
pub async fn serve(core: Arc<Core>, listener: UnixListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection(core.clone(), stream));
            }
            Err(e) => {
                tracing::warn!("control socket: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Appends `text` as `O` lines (or another prefix) to `out`.
fn framed(prefix: &str, text: &str, out: &mut String) {
    for line in text.lines() {
        out.push_str(prefix);
        out.push(' ');
        out.push_str(line);
        out.push('\n');
    }
}

async fn connection(core: Arc<Core>, stream: AsyncUnixStream) {
    let (read, mut write) = stream.into_split();
    let mut lines = AsyncBufReader::new(read).lines();
    let mut console: Option<(ConsoleId, tokio::sync::mpsc::UnboundedReceiver<String>)> = None;
    let console_id = |c: &Option<(ConsoleId, _)>| c.as_ref().map_or(ConsoleId::Root, |(id, _)| *id);
    loop {
        let reply = tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(line)) => {
                    let id = console_id(&console);
                    request(&core, &mut console, id, &line).await
                }
                _ => break,
            },
            Some(log) = next_log(&mut console) => {
                let mut out = String::new();
                framed("L", &log, &mut out);
                out
            }
        };
        if write.write_all(reply.as_bytes()).await.is_err() {
            break;
        }
    }
    if let Some((id, _)) = console {
        logger::remove_remote(id);
    }
}

/// The next log line for a remote console; never, for a plain `-rx` connection.
async fn next_log(console: &mut Option<(ConsoleId, tokio::sync::mpsc::UnboundedReceiver<String>)>) -> Option<String> {
    match console.as_mut() {
        Some((_, rx)) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn request(
    core: &Arc<Core>,
    console: &mut Option<(ConsoleId, tokio::sync::mpsc::UnboundedReceiver<String>)>,
    console_id: ConsoleId,
    line: &str,
) -> String {
    let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
    let mut out = String::new();
    match kind {
        "V" => {
            let mut levels = rest.split_ascii_whitespace().map(|n| n.parse::<u8>().unwrap_or(0));
            let (verbose, debug) = (levels.next().unwrap_or(0), levels.next().unwrap_or(0));
            if let Some((old, _)) = console.take() {
                logger::remove_remote(old);
            }
            *console = Some(logger::add_remote(verbose, debug));
            return out;
        }
        "X" => {
            let (core, command) = (core.clone(), rest.to_owned());
            // Handlers are synchronous and may block on a lock: keep them off the workers.
            let text = tokio::task::spawn_blocking(move || core.cli().execute(&core, console_id, &command))
                .await
                .unwrap_or_default();
            framed("O", &text, &mut out);
        }
        "T" => {
            for candidate in core.cli().complete(core, rest) {
                framed("O", &candidate, &mut out);
            }
        }
        _ => framed("O", &format!("Unknown control request '{kind}'"), &mut out),
    }
    out.push_str("E\n");
    out
}

/// The client side, used by `-r` and `-rx`. Blocking: the console is a plain thread.
pub struct Client {
    stream: UnixStream,
    replies: mpsc::Receiver<Option<String>>,
}

impl Client {
    /// Connects; log lines (after [`Client::subscribe`]) are passed to `on_log` on a reader thread.
    pub fn connect(path: &Path, on_log: impl Fn(&str) + Send + 'static) -> std::io::Result<Client> {
        let stream = UnixStream::connect(path)?;
        let reader = BufReader::new(stream.try_clone()?);
        let (tx, replies) = mpsc::channel();
        std::thread::spawn(move || {
            for line in reader.lines() {
                let Ok(line) = line else { break };
                if let Some(log) = line.strip_prefix("L ") {
                    on_log(log);
                } else if let Some(text) = line.strip_prefix("O ") {
                    let _ = tx.send(Some(text.to_owned()));
                } else if line == "E" {
                    let _ = tx.send(None);
                }
            }
            // Dropping `tx` tells a waiting request that the server went away.
        });
        Ok(Client { stream, replies })
    }

    /// Asks for log lines at these levels.
    pub fn subscribe(&mut self, verbose: u8, debug: u8) -> std::io::Result<()> {
        writeln!(self.stream, "V {verbose} {debug}")
    }

    fn request(&mut self, kind: char, text: &str) -> std::io::Result<(Vec<String>, bool)> {
        let text = text.replace(['\n', '\r'], " ");
        writeln!(self.stream, "{kind} {text}")?;
        let mut lines = Vec::new();
        loop {
            match self.replies.recv() {
                Ok(Some(line)) => lines.push(line),
                Ok(None) => return Ok((lines, true)),
                Err(_) => return Ok((lines, false)),
            }
        }
    }

    /// Runs a command; returns its output lines and whether the server finished the reply
    /// (false: the connection closed, as after `core stop now`).
    pub fn execute(&mut self, command: &str) -> std::io::Result<(Vec<String>, bool)> {
        self.request('X', command)
    }

    /// Completions for the last word of `line`.
    pub fn complete(&mut self, line: &str) -> Vec<String> {
        self.request('T', line).map(|(lines, _)| lines).unwrap_or_default()
    }
}
