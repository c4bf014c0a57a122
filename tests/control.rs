use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::util::*;

fn server(name: &str) -> Server {
    let dir = TestDir::new(name);
    dir.write_starling_conf(&moddir(), "");
    dir.write("modules.conf", "[modules]\nautoload = yes\nload => test_loader.so\n");
    dir.write("cli_aliases.conf", "[general]\ntemplate = friendly\n[friendly]\nhelp => core show help\n");
    Server::start(dir)
}

/// Sends raw protocol lines and collects the reply up to `E`.
fn raw_request(stream: &mut UnixStream, line: &str) -> Vec<String> {
    writeln!(stream, "{line}").unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut lines = Vec::new();
    loop {
        let mut l = String::new();
        if reader.read_line(&mut l).unwrap() == 0 || l == "E\n" {
            return lines;
        }
        lines.push(l.trim_end().to_owned());
    }
}

#[test]
fn unknown_commands_and_usage() {
    let server = server("unknown");
    assert!(server.rx("frobnicate now").starts_with("No such command 'frobnicate now'"));
    assert!(server.rx("module load").starts_with("Usage: module load"));
    let help = server.rx("core show help core show");
    assert!(help.contains("core show version -- Display version info"), "{help}");
    assert!(server.rx("help module").contains("module show -- List modules and info"), "the alias runs core show help");
    assert!(server.rx("core show uptime seconds").starts_with("System uptime: "));
    assert!(server.rx("core show settings").contains("Run/Sockets directory:"));
}

/// `core show translation`: each format to each other, the cheapest path's cost (issue 22).
#[test]
fn core_show_translation_prints_the_cost_table() {
    let server = server("translation");
    let table = server.rx("core show translation");
    let rows: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    let header = rows.iter().find(|r| r.first() == Some(&"ulaw")).unwrap_or_else(|| panic!("{table}"));
    assert_eq!(header, &["ulaw", "alaw", "opus", "slin", "slin16", "slin48"], "{table}");
    let row = |name: &str| rows.iter().rev().find(|r| r.first() == Some(&name)).unwrap_or_else(|| panic!("{table}"));
    // ulaw to alaw goes through slin (1 + 1); nothing translates to itself.
    assert_eq!(row("ulaw")[1..3], ["-", "2"], "{table}");
    assert_eq!(row("ulaw")[4], "1", "{table}");
    assert_eq!(row("opus")[3], "-", "{table}");
    assert!(row("opus").iter().skip(1).filter(|c| **c != "-").all(|c| c.parse::<u32>().is_ok()), "{table}");
}

#[test]
fn completion_over_the_control_socket() {
    let server = server("complete");
    let mut stream = UnixStream::connect(server.dir.path.join("run/starling.ctl")).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(raw_request(&mut stream, "T module u"), ["O unload"]);
    assert_eq!(raw_request(&mut stream, "T module unload res_c"), ["O res_clialiases.so"]);
    assert_eq!(raw_request(&mut stream, "T module unload r"), ["O res_clialiases.so", "O res_musiconhold.so"]);
    assert!(raw_request(&mut stream, "T module unload ").contains(&"O test_loader.so".to_owned()));
    assert_eq!(raw_request(&mut stream, "T core show v"), ["O version"]);
    assert_eq!(raw_request(&mut stream, "X core show version"), [format!("O Starling {}", env!("CARGO_PKG_VERSION"))]);
}

#[test]
fn rx_without_a_server_exits_2_naming_the_socket() {
    let dir = TestDir::new("noserver");
    dir.write_starling_conf(&moddir(), "");
    let out =
        run_starling(&["-C", dir.config().to_str().unwrap(), "-rx", "core show version"], Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("starling.ctl"));
}

/// A remote console (`-r`) runs commands and receives log lines at its own verbosity, and
/// `core set verbose` there changes only that console.
#[test]
fn remote_console_gets_logs_at_its_own_verbosity() {
    let server = server("remote");
    let mut child = Command::new(starling_bin())
        .args(["-C", server.dir.config().to_str().unwrap(), "-r", "-vvv"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let wait_for = |needle: &str| -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    };
    assert!(wait_for("Connected to Starling"), "no banner");
    writeln!(stdin, "core show version").unwrap();
    assert!(wait_for(&format!("Starling {}", env!("CARGO_PKG_VERSION"))));
    // Another client makes the server log at verbose level 3: this console (-vvv) sees it.
    server.rx("test loader hold");
    assert!(wait_for("-- Holding Test/hold-00000001"), "the remote console did not get the verbose line");
    writeln!(stdin, "core set verbose 0").unwrap();
    assert!(wait_for("Verbosity is now OFF"));
    server.rx("test loader hold");
    writeln!(stdin, "core show version").unwrap();
    // The next line after the command's output must not be the second hold's log line.
    let mut saw_hold = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("Holding Test/hold-00000002") => saw_hold = true,
            Ok(line) if line.starts_with("Starling ") => break,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert!(!saw_hold, "verbose 0 still showed a verbose 3 line");
    writeln!(stdin, "quit").unwrap();
    drop(stdin);
    let status = wait_timeout(&mut child, Duration::from_secs(10)).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("the remote console did not quit");
    });
    assert!(status.success());
    // The server's own console verbosity did not change.
    assert!(server.rx("core show settings").contains("Root console verbosity:      3"));
}

/// The control socket is bounded both ways: a request line past its limit closes that
/// connection only, and a remote console that does not read loses its oldest log lines (and
/// is told how many) while the server goes on serving others.
#[test]
fn the_control_socket_bounds_what_it_reads_and_holds() {
    let server = server("bounded");
    let socket = server.dir.path.join("run/starling.ctl");
    let mut long = UnixStream::connect(&socket).unwrap();
    long.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let line = format!("X core show version {}\n", "a".repeat(1 << 20));
    // The server may close before it has read it all: a write error is part of the answer.
    let _ = long.write_all(line.as_bytes());
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut long, &mut rest);
    assert!(
        rest.is_empty(),
        "no reply to a line over the limit: {:?}",
        String::from_utf8_lossy(&rest[..rest.len().min(200)])
    );
    assert!(
        server.log().contains("control socket: closing a connection: a line over 65536 bytes"),
        "{}",
        server.log_tail()
    );

    // A remote console at verbose 3 that reads nothing while 20,000 lines are logged.
    let mut slow = UnixStream::connect(&socket).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    writeln!(slow, "V 3 0").unwrap();
    let holds = 20_000;
    let busy = UnixStream::connect(&socket).unwrap();
    busy.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut writer = busy.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let mut batch = String::new();
        for _ in 0..holds {
            batch.push_str("X test loader hold\n");
        }
        writer.write_all(batch.as_bytes()).unwrap();
    });
    let mut ends = 0;
    for line in BufReader::new(busy).lines() {
        if line.unwrap() == "E" {
            ends += 1;
            if ends == holds {
                break;
            }
        }
    }
    sender.join().unwrap();
    assert_eq!(ends, holds, "every command answered while a console did not read");

    // Now it reads: what the socket held, then the count of what was dropped, then the newest lines.
    let mut dropped = None;
    let mut last = String::new();
    for line in BufReader::new(slow).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("L [").and_then(|l| l.split_once(" log lines dropped")) {
            dropped = Some(n.0.parse::<u32>().unwrap());
        }
        let done = line.contains(&format!("Holding Test/hold-{holds:08x}"));
        last = line;
        if done {
            break;
        }
    }
    assert!(last.contains(&format!("Holding Test/hold-{holds:08x}")), "the newest line arrives: {last}");
    let dropped = dropped.expect("the console is told that lines were dropped");
    assert!(dropped > 0 && dropped < holds, "{dropped}");
    assert!(server.rx("test loader release").contains(&format!("Released {holds}")));
}
