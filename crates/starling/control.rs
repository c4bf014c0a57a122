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
//!
//! Bounded both ways: a line longer than [`MAX_LINE`] closes the connection (with a warning),
//! and a remote console that does not read loses its oldest log lines
//! ([`logger::RemoteLines`]) rather than making the server hold them.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;

use starling_core::cli::ConsoleId;
use starling_core::logger::RemoteLines;
use starling_core::tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader as AsyncBufReader,
};
use starling_core::tokio::net::{UnixListener, UnixStream as AsyncUnixStream};
use starling_core::{logger, tokio, tracing, Core};

/// The longest request line a client may send (a CLI command line).
pub const MAX_LINE: usize = 64 * 1024;

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

/// Request lines, each at most [`MAX_LINE`] bytes. Cancel-safe (a `select!` branch): a line
/// read in part stays in `partial` for the next call.
struct Lines<R> {
    reader: R,
    partial: Vec<u8>,
}

impl<R: AsyncBufRead + Unpin> Lines<R> {
    /// The next line without its end; `None` at the end of the stream.
    async fn next(&mut self) -> std::io::Result<Option<String>> {
        let room = (MAX_LINE + 1).saturating_sub(self.partial.len()) as u64;
        (&mut self.reader).take(room).read_until(b'\n', &mut self.partial).await?;
        if self.partial.last() == Some(&b'\n') {
            self.partial.pop();
        } else if self.partial.len() > MAX_LINE {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("a line over {MAX_LINE} bytes")));
        } else if self.partial.is_empty() {
            return Ok(None); // the end of the stream (a last line without its end is still read)
        }
        let line = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        Ok(Some(line))
    }
}

async fn connection(core: Arc<Core>, stream: AsyncUnixStream) {
    let (read, mut write) = stream.into_split();
    let mut lines = Lines { reader: AsyncBufReader::new(read), partial: Vec::new() };
    let mut console: Option<(ConsoleId, Arc<RemoteLines>)> = None;
    let console_id = |c: &Option<(ConsoleId, _)>| c.as_ref().map_or(ConsoleId::Root, |(id, _)| *id);
    loop {
        let reply = tokio::select! {
            line = lines.next() => match line {
                Ok(Some(line)) => {
                    let id = console_id(&console);
                    request(&core, &mut console, id, &line).await
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("control socket: closing a connection: {e}");
                    break;
                }
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
async fn next_log(console: &mut Option<(ConsoleId, Arc<RemoteLines>)>) -> Option<String> {
    match console.as_mut() {
        Some((_, lines)) => Some(lines.next().await),
        None => std::future::pending().await,
    }
}

async fn request(
    core: &Arc<Core>,
    console: &mut Option<(ConsoleId, Arc<RemoteLines>)>,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &[u8], cut: usize) -> Vec<std::io::Result<Option<String>>> {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            // A reader that returns `cut` bytes at a time (as a socket may).
            let (mut client, server) = tokio::io::duplex(cut);
            let input = input.to_vec();
            let writer = tokio::spawn(async move {
                for chunk in input.chunks(cut) {
                    client.write_all(chunk).await.unwrap();
                }
            });
            let mut lines = Lines { reader: AsyncBufReader::with_capacity(cut, server), partial: Vec::new() };
            let mut out = Vec::new();
            loop {
                let line = lines.next().await;
                let end = !matches!(line, Ok(Some(_)));
                out.push(line);
                if end {
                    break;
                }
            }
            writer.abort();
            out
        })
    }

    #[test]
    fn lines_are_read_whole_however_they_arrive() {
        for cut in [1, 3, 64, 4096] {
            let got: Vec<_> =
                read_all(b"X core show version\nV 3 0\nX last", cut).into_iter().map(|l| l.unwrap()).collect();
            assert_eq!(
                got,
                [Some("X core show version".to_owned()), Some("V 3 0".to_owned()), Some("X last".to_owned()), None],
                "cut {cut}"
            );
        }
    }

    #[test]
    fn a_line_over_the_limit_is_an_error_not_a_buffer() {
        let mut input = b"X ok\n".to_vec();
        input.extend(std::iter::repeat_n(b'a', MAX_LINE + 10));
        input.extend(b"\nX never\n");
        let got = read_all(&input, 8192);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].as_ref().unwrap().as_deref(), Some("X ok"));
        assert_eq!(got[1].as_ref().unwrap_err().kind(), std::io::ErrorKind::InvalidData);
        let mut exact = vec![b'b'; MAX_LINE];
        exact.push(b'\n');
        assert_eq!(read_all(&exact, 8192)[0].as_ref().unwrap().as_ref().map(String::len), Some(MAX_LINE));
    }
}
