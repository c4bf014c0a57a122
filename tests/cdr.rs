//! CDRs from real calls: SIPp calls in, Starling answers or dials a SIPp UAS, and the records
//! land in `cdr-csv/Master.csv` (cdr_csv) and `master.db` (cdr_sqlite3), also across a
//! graceful stop.

use std::path::Path;
use std::time::Duration;

use crate::util::*;

const EXTENSIONS: &str = "[default]
exten => 600,1,Answer()
 same => n,Set(CDR(userfield)=vip)
 same => n,Wait(0.3)
 same => n,Hangup()
exten => 601,1,Answer()
 same => n,NoCDR()
 same => n,Hangup()
exten => 602,1,Answer()
 same => n,Echo()
exten => 10,1,Dial(SIP/uas,5)
 same => n,Hangup()
exten => 11,1,Dial(SIP/uas,2)
 same => n,Answer()
 same => n,Hangup()
exten => 20,1,Set(CDR(userfield)=fork)
 same => n,Dial(SIP/uas&SIP/uas2,5)
 same => n,Hangup()
exten => 21,1,Dial(SIP/uas3&SIP/uas4,5)
 same => n,Hangup()
exten => 603,1,Answer()
 same => n,Set(CDR(mark)=dropped)
 same => n,Wait(2)
 same => n,ResetCDR()
 same => n,NoOp(After ResetCDR mark=${CDR(mark)}.)
 same => n,Wait(1)
 same => n,Hangup()
exten => 604,1,Answer()
 same => n,Set(CDR(mark)=kept)
 same => n,Wait(2)
 same => n,ResetCDR(v)
 same => n,NoOp(After ResetCDR(v) mark=${CDR(mark)}.)
 same => n,Wait(1)
 same => n,Hangup()
exten => 605,1,Goto(with-h,605,1)
[with-h]
exten => 605,1,Answer()
 same => n,Wait(1)
 same => n,Hangup()
exten => h,1,System(sleep 2)
 same => n,NoOp(h is over)
";

fn cdr_pbx(name: &str, uas: u16, cdr_conf: &str) -> (Server, u16) {
    cdr_pbx_with(name, &[("uas", uas)], cdr_conf)
}

/// A Starling with the CDR backends (csv, sqlite3) and these SIP peers (name, SIPp port).
fn cdr_pbx_with(name: &str, peers: &[(&str, u16)], cdr_conf: &str) -> (Server, u16) {
    let peers: String = peers
        .iter()
        .map(|(peer, port)| {
            format!(
                "[{peer}]\ntype=peer\nhost=127.0.0.1\nport={port}\ninsecure=port,invite\ndisallow=all\nallow=ulaw\n"
            )
        })
        .collect();
    let (server, port) = sip_pbx_on_port(
        name,
        &["pbx_config", "app_dial", "app_echo", "func_cdr", "app_cdr", "app_system", "cdr_csv", "cdr_sqlite3"],
        Some(EXTENSIONS),
        |_| format!("allowguest=yes\ncontext=default\n{peers}"),
    );
    std::fs::write(server.dir.etc().join("cdr.conf"), cdr_conf).unwrap();
    // The h extension of `with-h` takes its time with System(sleep 2).
    std::fs::write(server.dir.etc().join("app_system.conf"), "[general]\nenabled = yes\n").unwrap();
    server.rx("core reload");
    (server, port)
}

fn csv_lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("log/cdr-csv/Master.csv")).unwrap_or_default().lines().map(str::to_owned).collect()
}

/// (channel, dstchannel, disposition, lastapp, userfield) of every row of master.db.
fn db_rows(dir: &Path) -> Vec<(String, String, String, String, String)> {
    let db = rusqlite::Connection::open(dir.join("log/master.db")).unwrap();
    let mut query =
        db.prepare("SELECT channel, dstchannel, disposition, lastapp, userfield FROM cdr ORDER BY id").unwrap();
    query
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// An answered call, a Dial answered by the UAS and a NoCDR call: two records, in Asterisk's CSV layout and in SQLite, with the dispositions Asterisk gives.
#[test]
fn calls_leave_asterisk_records_in_csv_and_sqlite() {
    let answering = SippUas::spawn("uas_answer.xml");
    let (server, port) =
        cdr_pbx("cdrcalls", answering.port, "[general]\nenable=yes\n[csv]\nloguniqueid=yes\nloguserfield=yes\n");
    let status = server.rx("cdr show status");
    assert!(status.contains("Logging:                    Enabled"), "{status}");
    assert!(status.contains("    csv\n") && status.contains("    sqlite3\n"), "{status}");

    let (code, out) = run_sipp(port, "invite_pbx_hangs_up.xml", "600", "", "", 1);
    assert_eq!(code, 0, "{out}\n{}", server.log_tail());
    let (code, out) = run_sipp(port, "invite_answer.xml", "10", "", "", 1);
    assert_eq!(code, 0, "{out}\n{}", server.log_tail());
    let (code, out) = answering.finish();
    assert_eq!(code, 0, "callee: {out}");
    let (code, out) = run_sipp(port, "invite_pbx_hangs_up.xml", "601", "", "", 1);
    assert_eq!(code, 0, "{out}\n{}", server.log_tail());

    let dir = server.dir.path.clone();
    let lines = eventually(Duration::from_secs(5), || {
        let lines = csv_lines(&dir);
        (lines.len() >= 2).then_some(lines)
    })
    .unwrap_or_else(|| panic!("two records: {:?}\n{}", csv_lines(&dir), server.log_tail()));
    assert_eq!(lines.len(), 2, "NoCDR's call is not logged: {lines:?}");
    let first: Vec<&str> = lines[0].split("\",\"").collect();
    assert!(
        lines[0].starts_with("\"\",\"guest\",\"600\",\"default\",\"\"\"A Guest\"\" <guest>\",\"SIP/"),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains(",\"Hangup\",\"\","), "lastapp Hangup: {}", lines[0]);
    assert!(lines[0].contains(",\"ANSWERED\",\"DOCUMENTATION\",\""), "{}", lines[0]);
    assert!(lines[0].ends_with(",\"vip\""), "userfield last: {}", lines[0]);
    assert!(first.len() > 10, "{first:?}");
    assert!(lines[1].contains("\"10\",\"default\"") && lines[1].contains("\"SIP/uas-"), "{}", lines[1]);
    assert!(lines[1].contains(",\"Dial\",\"SIP/uas,5\","), "{}", lines[1]);
    assert!(lines[1].contains("\"ANSWERED\""), "{}", lines[1]);

    let rows = eventually(Duration::from_secs(5), || {
        let rows = db_rows(&dir);
        (rows.len() >= 2).then_some(rows)
    })
    .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!((rows[0].2.as_str(), rows[0].3.as_str(), rows[0].4.as_str()), ("ANSWERED", "Hangup", "vip"));
    assert!(rows[1].1.starts_with("SIP/uas-"), "{rows:?}");
}

/// A busy callee: the caller's record says BUSY with the callee as dstchannel; what the
/// dialplan does afterwards (answer, hang up) is a second record, as in Asterisk.
#[test]
fn a_busy_dial_is_logged_busy() {
    let busy = SippUas::spawn("uas_busy.xml");
    let (server, port) = cdr_pbx("cdrbusy", busy.port, "[general]\n");
    let (code, out) = run_sipp(port, "invite_pbx_hangs_up.xml", "11", "", "", 1);
    assert_eq!(code, 0, "{out}\n{}", server.log_tail());
    let (code, out) = busy.finish();
    assert_eq!(code, 0, "callee: {out}");
    let dir = server.dir.path.clone();
    let lines = eventually(Duration::from_secs(5), || {
        let lines = csv_lines(&dir);
        (lines.len() >= 2).then_some(lines)
    })
    .unwrap_or_else(|| panic!("a record\n{}", server.log_tail()));
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].contains(",\"Dial\",\"SIP/uas,2\",") && lines[0].contains("\"SIP/uas-"), "{}", lines[0]);
    assert!(lines[0].contains(",\"BUSY\",\"DOCUMENTATION\""), "{}", lines[0]);
    assert!(lines[1].contains(",\"\",\"Hangup\",\"\",") && lines[1].contains("\"ANSWERED\""), "{}", lines[1]);
}

/// (channel, dstchannel, disposition, lastapp, lastdata, answer IS NULL, uniqueid, linkedid,
/// sequence, userfield) of every row of master.db, in the order they were written.
#[allow(clippy::type_complexity)]
fn fork_rows(dir: &Path) -> Vec<(String, String, String, String, String, bool, String, String, i64, String)> {
    let db = rusqlite::Connection::open(dir.join("log/master.db")).unwrap();
    let mut query = db
        .prepare(
            "SELECT channel, dstchannel, disposition, lastapp, lastdata, answer IS NULL, uniqueid, linkedid, sequence, \
             userfield FROM cdr ORDER BY id",
        )
        .unwrap();
    query
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// `Dial(SIP/a&SIP/b)` leaves one record per called party, as Asterisk's: a busy first callee
/// and an answering second one give BUSY then ANSWERED; an answering first callee and a ringing
/// second one (cancelled) give ANSWERED then NO ANSWER. The records of a call share the
/// caller's uniqueid and linkedid, number their sequence upwards in the order of the dial, keep
/// `Dial` as lastapp and carry the userfield set before the Dial.
#[test]
fn each_dialled_party_has_its_own_record() {
    let busy = SippUas::spawn("uas_busy.xml");
    let answering = SippUas::spawn("uas_answer.xml");
    let answering_first = SippUas::spawn("uas_answer.xml");
    let ringing = SippUas::spawn("uas_ring_cancel.xml");
    let peers = [("uas", busy.port), ("uas2", answering.port), ("uas3", answering_first.port), ("uas4", ringing.port)];
    let (server, port) = cdr_pbx_with("cdrfork", &peers, "[general]\n[csv]\nloguniqueid=yes\nloguserfield=yes\n");
    for exten in ["20", "21"] {
        let (code, out) = run_sipp(port, "invite_answer.xml", exten, "", "", 1);
        assert_eq!(code, 0, "{exten}: {out}\n{}", server.log_tail());
    }
    for (name, uas) in
        [("busy", busy), ("answering", answering), ("answering first", answering_first), ("ringing", ringing)]
    {
        let (code, out) = uas.finish();
        assert_eq!(code, 0, "{name} callee: {out}\n{}", server.log_tail());
    }
    let dir = server.dir.path.clone();
    let rows = eventually(Duration::from_secs(5), || {
        let rows = fork_rows(&dir);
        (rows.len() >= 4).then_some(rows)
    })
    .unwrap_or_else(|| panic!("four records: {:?}\n{}", fork_rows(&dir), server.log_tail()));
    assert_eq!(rows.len(), 4, "{rows:#?}");
    let summary: Vec<(&str, &str, bool)> =
        rows.iter().map(|r| (r.1.split('-').next().unwrap_or(""), r.2.as_str(), r.5)).collect();
    assert_eq!(
        summary,
        [
            ("SIP/uas", "BUSY", true),
            ("SIP/uas2", "ANSWERED", false),
            ("SIP/uas3", "ANSWERED", false),
            ("SIP/uas4", "NO ANSWER", true)
        ],
        "{rows:#?}"
    );
    for call in rows.chunks(2) {
        let (first, second) = (&call[0], &call[1]);
        assert_eq!(first.0, second.0, "one caller: {call:#?}");
        assert_eq!((&first.6, &first.7), (&second.6, &second.7), "one uniqueid and linkedid: {call:#?}");
        assert_eq!(first.6, first.7, "the caller's own uniqueid is the linkedid: {call:#?}");
        assert!(second.8 > first.8, "sequence rises: {call:#?}");
        assert!(call.iter().all(|r| r.3 == "Dial"), "lastapp Dial: {call:#?}");
    }
    assert_eq!((rows[0].4.as_str(), rows[2].4.as_str()), ("SIP/uas&SIP/uas2,5", "SIP/uas3&SIP/uas4,5"));
    assert!(rows[..2].iter().all(|r| r.9 == "fork"), "the userfield is copied to the second record: {rows:#?}");
    assert!(rows[2..].iter().all(|r| r.9.is_empty()), "{rows:#?}");

    let lines = csv_lines(&dir);
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines[0].contains(",\"SIP/uas-") && lines[0].contains(",\"BUSY\","), "{}", lines[0]);
    assert!(lines[1].contains(",\"SIP/uas2-") && lines[1].contains(",\"ANSWERED\","), "{}", lines[1]);
    assert!(lines[3].contains(",\"SIP/uas4-") && lines[3].contains(",\"NO ANSWER\","), "{}", lines[3]);
}

/// Twenty calls up at once, then `core stop gracefully`: Starling waits for them, and every
/// record is in both backends when it has exited.
#[test]
fn a_graceful_stop_loses_no_record() {
    let (mut server, port) = cdr_pbx("cdrstop", 1, "[general]\n");
    let caller = std::thread::spawn(move || {
        run_sipp_with(port, "invite_answer_long.xml", &["-s", "602", "-m", "20", "-l", "20", "-r", "40"])
    });
    let up = eventually(Duration::from_secs(10), || {
        let c = server.rx("core show channels count");
        c.starts_with("20 active channels").then_some(())
    });
    assert!(up.is_some(), "{}", server.rx("core show channels"));
    server.rx("core stop gracefully");
    let (code, out) = caller.join().unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(server.wait_exit(Duration::from_secs(20)).success());
    let dir = server.dir.path.clone();
    assert_eq!(csv_lines(&dir).len(), 20);
    assert_eq!(db_rows(&dir).len(), 20);
}

/// `kill -9` with calls up: every call that ended before is in both backends (records are
/// written as they come, not at exit); only the calls still up are missing.
#[test]
fn kill_9_loses_only_the_calls_still_up() {
    let (mut server, port) = cdr_pbx("cdrkill", 1, "[general]\n");
    let (code, out) =
        run_sipp_with(port, "invite_pbx_hangs_up.xml", &["-s", "600", "-m", "10", "-l", "10", "-r", "20"]);
    assert_eq!(code, 0, "{out}");
    let dir = server.dir.path.clone();
    let written =
        eventually(Duration::from_secs(5), || (csv_lines(&dir).len() == 10 && db_rows(&dir).len() == 10).then_some(()));
    assert!(written.is_some(), "ten records before the kill: {:?}", csv_lines(&dir));
    let long =
        std::thread::spawn(move || run_sipp_with(port, "invite_answer_long.xml", &["-s", "602", "-m", "3", "-l", "3"]));
    let up = eventually(Duration::from_secs(10), || {
        server.rx("core show channels count").starts_with("3 active channels").then_some(())
    });
    assert!(up.is_some(), "{}", server.rx("core show channels"));
    server.signal(9);
    server.wait_exit(Duration::from_secs(10));
    let _ = long.join(); // the calls cannot end well: their PBX is gone
    assert_eq!(csv_lines(&dir).len(), 10);
    assert_eq!(db_rows(&dir).len(), 10);
}

/// A PostgreSQL cluster of the test's own (Debian's `postgresql`): `initdb` in a temp dir,
/// listening on 127.0.0.1 and a free port, its socket in the same dir, `fsync=off`. initdb
/// refuses root, so as root everything runs as `postgres` (`runuser`). The superuser logs in
/// without a password over the socket (psql); over TCP a password is asked (scram-sha-256).
/// Dropping it stops the cluster by its data directory.
struct Postgres {
    dir: TestDir,
    bin: std::path::PathBuf,
    port: u16,
    as_postgres: bool,
}

impl Postgres {
    fn start(name: &str) -> Postgres {
        let versions = std::fs::read_dir("/usr/lib/postgresql").expect("PostgreSQL (Debian's postgresql package)");
        let bin = versions
            .flatten()
            .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path().join("bin"))))
            .filter(|(_, bin)| bin.join("initdb").exists())
            .max()
            .expect("a /usr/lib/postgresql/<version>/bin/initdb")
            .1;
        let root = std::process::Command::new("id").arg("-u").output().unwrap();
        let as_postgres = String::from_utf8_lossy(&root.stdout).trim() == "0";
        let dir = TestDir::new(name);
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        std::fs::write(dir.path.join("pwfile"), "pgsecret\n").unwrap();
        let pg = Postgres { dir, bin, port, as_postgres };
        if as_postgres {
            let chown = std::process::Command::new("chown").arg("-R").arg("postgres:").arg(&pg.dir.path).status();
            assert!(chown.unwrap().success());
        }
        let data = pg.data();
        let pwfile = format!("--pwfile={}", pg.dir.path.join("pwfile").display());
        let initdb = ["-D", data.to_str().unwrap(), "-U", "postgres", &pwfile, "--auth-local=trust"];
        pg.run("initdb", &[&initdb[..], &["--auth-host=scram-sha-256", "--no-sync", "-E", "UTF8"]].concat());
        pg.start_again();
        pg.psql("postgres", "CREATE ROLE starling LOGIN PASSWORD 'cdr-secret'");
        pg.psql("postgres", "CREATE DATABASE cdrs OWNER starling");
        pg
    }

    fn data(&self) -> std::path::PathBuf {
        self.dir.path.join("data")
    }

    /// Runs one of the cluster's programs (as `postgres` when we are root), bounded in time.
    fn command(&self, program: &str, args: &[&str]) -> std::process::Command {
        let mut command = if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(program));
            c
        } else {
            std::process::Command::new(self.bin.join(program))
        };
        command.args(args).current_dir(&self.dir.path).stdin(std::process::Stdio::null());
        command
    }

    fn run(&self, program: &str, args: &[&str]) -> String {
        let log = self.dir.path.join(format!("{program}.out"));
        let out = std::fs::File::create(&log).unwrap();
        let mut child = self
            .command(program, args)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        let status = wait_timeout(&mut child, Duration::from_secs(60)).unwrap_or_else(|| {
            let _ = child.kill();
            panic!("{program} {args:?} did not finish in 60 s");
        });
        let output = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(status.success(), "{program} {args:?}: {output}\n{}", self.server_log());
        output
    }

    fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path.join("server.log")).unwrap_or_default()
    }

    /// `pg_ctl start` (waits until it accepts connections).
    fn start_again(&self) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories={} -c fsync=off",
            self.port,
            self.dir.path.display()
        );
        let data = self.data();
        let log = self.dir.path.join("server.log");
        self.run(
            "pg_ctl",
            &["-D", data.to_str().unwrap(), "-l", log.to_str().unwrap(), "-o", &options, "-w", "-t", "30", "start"],
        );
    }

    /// `pg_ctl stop -m fast`: sessions are ended, as in a real outage.
    fn stop(&self) {
        let data = self.data();
        self.run("pg_ctl", &["-D", data.to_str().unwrap(), "-m", "fast", "-w", "-t", "30", "stop"]);
    }

    /// Runs SQL through psql on the socket; its unaligned output.
    fn psql(&self, db: &str, sql: &str) -> String {
        let socket = self.dir.path.to_str().unwrap().to_owned();
        let port = self.port.to_string();
        self.run(
            "psql",
            &["-X", "-h", &socket, "-p", &port, "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-Atc", sql],
        )
    }

    /// Turns TLS on (`ssl=on`, no restart: a reload) with `cert.pem`/`cert.key` of `pki` (copied
    /// into the cluster's directory, owned by and readable only to the server, as it wants), or
    /// off (`cert` = `None`).
    fn set_ssl(&self, pki: &crate::tls::Pki, cert: Option<&str>) {
        match cert {
            Some(cert) => {
                for (from, to) in [(format!("{cert}.pem"), "server.crt"), (format!("{cert}.key"), "server.key")] {
                    let to = self.dir.path.join(to);
                    std::fs::copy(pki.path(&from), &to).unwrap();
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
                    if self.as_postgres {
                        let chown = std::process::Command::new("chown").arg("postgres:").arg(&to).status();
                        assert!(chown.unwrap().success());
                    }
                }
                let dir = self.dir.path.display();
                self.psql("postgres", &format!("ALTER SYSTEM SET ssl_cert_file = '{dir}/server.crt'"));
                self.psql("postgres", &format!("ALTER SYSTEM SET ssl_key_file = '{dir}/server.key'"));
                self.psql("postgres", "ALTER SYSTEM SET ssl = on");
            }
            None => {
                self.psql("postgres", "ALTER SYSTEM SET ssl = off");
            }
        }
        self.psql("postgres", "SELECT pg_reload_conf()");
    }

    /// cdr_pgsql.conf for this cluster.
    fn cdr_pgsql_conf(&self, extra: &str) -> String {
        format!(
            "[global]\nhostname=127.0.0.1\nport={}\ndbname=cdrs\nuser=starling\npassword=cdr-secret\nappname=starling-test\n{extra}",
            self.port
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- postgres log ---\n{}", self.server_log());
        }
        let data = self.data();
        if data.join("postmaster.pid").exists() {
            let _ = self
                .command("pg_ctl", &["-D", data.to_str().unwrap(), "-m", "immediate", "-w", "-t", "20", "stop"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// A Starling with cdr_pgsql (for `pg`) and cdr_csv (uniqueids, the reference), SIP on a free port.
fn pgsql_pbx(name: &str, pg: &Postgres, extra_conf: &str, extensions: &str) -> (Server, u16) {
    let port = free_udp_port();
    let dir = TestDir::new(name);
    dir.write_starling_conf(&moddir(), "");
    let modules = ["pbx_config", "app_echo", "func_cdr", "app_cdr", "cdr_csv", "cdr_pgsql", "chan_sip"];
    let loads: String = modules.iter().map(|m| format!("load => {m}.so\n")).collect();
    dir.write("modules.conf", &format!("[modules]\nautoload = no\n{loads}"));
    dir.write("extensions.conf", extensions);
    dir.write(
        "sip.conf",
        &format!("[general]\nbindaddr=127.0.0.1\nbindport={port}\nallowguest=yes\ncontext=default\n"),
    );
    dir.write("cdr.conf", "[general]\n[csv]\nloguniqueid=yes\n");
    dir.write("cdr_pgsql.conf", &pg.cdr_pgsql_conf(extra_conf));
    (Server::start(dir), port)
}

/// The uniqueids of Master.csv (its last field with loguniqueid=yes), sorted.
fn csv_uniqueids(dir: &Path) -> Vec<String> {
    let mut ids: Vec<String> = csv_lines(dir)
        .iter()
        .filter_map(|l| l.rsplit(",\"").next().map(|f| f.trim_end_matches('"').to_owned()))
        .collect();
    ids.sort();
    ids
}

/// The uniqueids of the `cdr` table, sorted (duplicates kept).
fn pg_uniqueids(pg: &Postgres) -> Vec<String> {
    let out = pg.psql("cdrs", "SELECT uniqueid FROM cdr ORDER BY uniqueid");
    out.lines().map(str::to_owned).collect()
}

fn calls(port: u16, n: u32, server: &Server) {
    let (code, out) = run_sipp(port, "invite_pbx_hangs_up.xml", "600", "", "", n);
    assert_eq!(code, 0, "{out}\n{}", server.log_tail());
}

/// Waits until PostgreSQL holds exactly the records cdr_csv wrote (`expected` of them): each
/// call once, none lost.
fn assert_all_in_postgres(pg: &Postgres, server_dir: &Path, expected: usize, log: &dyn Fn() -> String) {
    let csv = eventually(Duration::from_secs(10), || {
        let ids = csv_uniqueids(server_dir);
        (ids.len() == expected).then_some(ids)
    })
    .unwrap_or_else(|| panic!("{expected} CSV records: {:?}\n{}", csv_uniqueids(server_dir), log()));
    let written = eventually(Duration::from_secs(20), || (pg_uniqueids(pg) == csv).then_some(()));
    assert!(written.is_some(), "PostgreSQL {:?}\nCSV {csv:?}\n{}", pg_uniqueids(pg), log());
}

const PG_EXTENSIONS: &str = "[default]
exten => 600,1,Answer()
 same => n,Set(CDR(userfield)=vip)
 same => n,Set(CDR(tenant)=42)
 same => n,Wait(0.2)
 same => n,Hangup()
";

/// Calls land in PostgreSQL (the table created, a password login); PostgreSQL stopped mid-run:
/// the records wait in the spool (`cdr show status` says how many) and arrive when it is back;
/// stopped again, Starling stops gracefully with records spooled, PostgreSQL comes back, Starling
/// starts again and writes them. Every call once: none lost, none twice.
#[test]
fn pgsql_records_survive_an_outage_and_a_restart() {
    let pg = Postgres::start("pgcdr");
    let (server, port) = pgsql_pbx("pgcdrpbx", &pg, "", PG_EXTENSIONS);
    let online = eventually(Duration::from_secs(10), || {
        server
            .rx("cdr show status")
            .contains("    pgsql (online, 0 spooled, sslmode=prefer, not encrypted)\n")
            .then_some(())
    });
    assert!(online.is_some(), "{}\n{}", server.rx("cdr show status"), server.log_tail());
    let dir = server.dir.path.clone();

    calls(port, 3, &server);
    assert_all_in_postgres(&pg, &dir, 3, &|| server.log_tail());
    let row = pg.psql(
        "cdrs",
        "SELECT dst, dcontext, lastapp, disposition, amaflags, userfield, duration >= 0, billsec <= duration, \
         answer >= start, \"end\" >= answer, linkedid = uniqueid, sequence, pg_typeof(start) FROM cdr LIMIT 1",
    );
    assert_eq!(row.trim(), "600|default|Hangup|ANSWERED|DOCUMENTATION|vip|t|t|t|t|t|0|timestamp without time zone");

    // The outage: new records are spooled.
    pg.stop();
    calls(port, 4, &server);
    let spooled = eventually(Duration::from_secs(10), || {
        server
            .rx("cdr show status")
            .contains("    pgsql (offline, 4 spooled, sslmode=prefer, not connected)\n")
            .then_some(())
    });
    assert!(spooled.is_some(), "{}\n{}", server.rx("cdr show status"), server.log_tail());
    assert!(server.log().contains("records are spooled to"), "{}", server.log_tail());
    pg.start_again();
    assert_all_in_postgres(&pg, &dir, 7, &|| server.log_tail());
    let back = eventually(Duration::from_secs(5), || {
        server
            .rx("cdr show status")
            .contains("    pgsql (online, 0 spooled, sslmode=prefer, not encrypted)\n")
            .then_some(())
    });
    assert!(back.is_some(), "{}", server.rx("cdr show status"));
    assert!(server.log().contains("4 spooled record(s) written to the database"), "{}", server.log_tail());

    // Down again, and Starling stops gracefully: the records stay in the spool.
    pg.stop();
    calls(port, 2, &server);
    let spooled = eventually(Duration::from_secs(10), || {
        server
            .rx("cdr show status")
            .contains("    pgsql (offline, 2 spooled, sslmode=prefer, not connected)\n")
            .then_some(())
    });
    assert!(spooled.is_some(), "{}\n{}", server.rx("cdr show status"), server.log_tail());
    server.rx("core stop gracefully");
    let mut server = server;
    assert!(server.wait_exit(Duration::from_secs(20)).success(), "{}", server.log_tail());
    let spool = rusqlite::Connection::open(dir.join("db/cdr-spool.sqlite3")).unwrap();
    let left: i64 =
        spool.query_row("SELECT COUNT(*) FROM cdr_spool WHERE backend = 'pgsql'", [], |r| r.get(0)).unwrap();
    assert_eq!(left, 2);
    drop(spool);

    // PostgreSQL back first, then Starling: the spool drains without a call.
    pg.start_again();
    assert_eq!(pg_uniqueids(&pg).len(), 7);
    let server = Server::start(server.into_dir());
    assert_all_in_postgres(&pg, &dir, 9, &|| server.log_tail());
    assert!(server.log().contains("2 record(s) in"), "{}", server.log_tail());
}

/// An existing table (Asterisk's classic layout, with `calldate`, integer `amaflags` and
/// `disposition`, a timestamptz, a CDR variable's column, a NOT NULL column it cannot fill) gets
/// the columns it has, through the Unix socket; `timezone=UTC` writes UTC wall clock times.
#[test]
fn pgsql_fills_the_columns_an_existing_table_has() {
    let pg = Postgres::start("pgcols");
    pg.psql(
        "cdrs",
        "CREATE TABLE cdr (calldate timestamp NOT NULL, clid varchar(80) NOT NULL DEFAULT '', \
         src varchar(80), dst varchar(80), dcontext varchar(80), channel varchar(80), dstchannel varchar(80), \
         lastapp varchar(3), lastdata varchar(80), duration bigint, billsec float8, disposition int, \
         amaflags int, accountcode varchar(20), uniqueid varchar(32), userfield varchar(255), \
         \"end\" timestamptz, tenant int, peeraccount varchar(20) NOT NULL, note text DEFAULT 'none'); \
         ALTER TABLE cdr OWNER TO starling",
    );
    // Over the Unix socket this time (its directory as hostname).
    let conf = format!("hostname={}\ntable=CDR\ntimezone=UTC\n", pg.dir.path.display());
    let (server, port) = pgsql_pbx("pgcolspbx", &pg, &conf, PG_EXTENSIONS);
    calls(port, 1, &server);
    assert_all_in_postgres(&pg, &server.dir.path, 1, &|| server.log_tail());
    let row = pg.psql(
        "cdrs",
        "SET TIME ZONE 'UTC'; SELECT clid, dst, lastapp, disposition, amaflags, userfield, tenant, peeraccount, note, \
         billsec > 0, abs(extract(epoch FROM (\"end\" - calldate::timestamptz))) < 5 FROM cdr",
    );
    let row = row.lines().last().unwrap_or_default().to_owned();
    assert_eq!(row, "\"A Guest\" <guest>|600|Han|8|3|vip|42||none|t|t", "{}", server.log_tail());
}

/// Without cdr_pgsql.conf the module declines; a bad value stops startup naming its line.
#[test]
fn cdr_pgsql_declines_without_its_file_and_a_bad_value_exits_1() {
    let dir = TestDir::new("pgdecline");
    dir.write_starling_conf(&moddir(), "");
    dir.write("modules.conf", "[modules]\nautoload = no\nload => cdr_pgsql.so\n");
    let server = Server::start(dir);
    assert!(server.rx("module show like cdr_pgsql").ends_with("0 modules loaded\n"));
    let dir = server.into_dir();
    dir.write("cdr_pgsql.conf", "[global]\nhostname=127.0.0.1\nport=none\nfoo=bar\n");
    let out = run_starling(&["-C", dir.config().to_str().unwrap(), "-f"], Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1));
    let err = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(err.contains("cdr_pgsql.conf:3: port 'none': a port is 1 to 65535"), "{err}");
    assert!(err.contains("cdr_pgsql.conf:4: unknown [global] option 'foo' ignored"), "{err}");
}

/// (dst, duration, billsec, lastapp) of every row of master.db.
fn durations(dir: &Path) -> Vec<(String, i64, i64, String)> {
    let db = rusqlite::Connection::open(dir.join("log/master.db")).unwrap();
    let mut query = db.prepare("SELECT dst, duration, billsec, lastapp FROM cdr ORDER BY id").unwrap();
    query.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap().map(Result::unwrap).collect()
}

/// The rows of master.db once there are `n`.
fn rows_of(server: &Server, n: usize) -> Vec<(String, i64, i64, String)> {
    let dir = server.dir.path.clone();
    eventually(Duration::from_secs(8), || {
        let rows = durations(&dir);
        (rows.len() >= n).then_some(rows)
    })
    .unwrap_or_else(|| panic!("{n} records: {:?}\n{}", durations(&dir), server.log_tail()))
}

/// `ResetCDR()` two seconds into an answered call: the record starts (and is answered) again
/// then, so its duration and billsec are the last second only, and its variables are wiped;
/// `ResetCDR(v)` keeps them (Asterisk 20's app_cdr).
#[test]
fn resetcdr_starts_the_record_again_and_v_keeps_its_variables() {
    let (server, port) = cdr_pbx("cdrreset", 1, "[general]\nenable=yes\n");
    for exten in ["603", "604"] {
        let (code, out) = run_sipp(port, "invite_pbx_hangs_up.xml", exten, "", "", 1);
        assert_eq!(code, 0, "{exten}: {out}\n{}", server.log_tail());
    }
    let rows = rows_of(&server, 2);
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (dst, duration, billsec, lastapp) in &rows {
        assert_eq!(
            (*duration, *billsec),
            (1, 1),
            "{dst}: the record starts at the reset, 1 s before the end: {rows:?}"
        );
        assert_eq!(lastapp, "Hangup", "{rows:?}");
    }
    let log = server.log();
    assert!(log.contains("After ResetCDR mark=."), "the variables are wiped: {log}");
    assert!(log.contains("After ResetCDR(v) mark=kept."), "v keeps them: {log}");
}

/// cdr.conf `endbeforehexten`: a call of 1 s whose `h` extension takes 2 s more
/// (`System(sleep 2)`). With `yes` (Asterisk's default, also without the key) the record ends
/// at the hangup, before `h`: 1 s, lastapp Hangup; with `no` it ends after `h`: 3 s, and `h`'s
/// last application is its lastapp.
#[test]
fn endbeforehexten_ends_the_record_before_the_h_extension() {
    for (setting, expected, last) in [("yes", 1, "Hangup"), ("no", 3, "NoOp"), ("", 1, "Hangup")] {
        let conf = if setting.is_empty() { String::new() } else { format!("endbeforehexten={setting}\n") };
        let (server, port) = cdr_pbx(&format!("cdrhexten{setting}"), 1, &format!("[general]\n{conf}"));
        let status = server.rx("cdr show status");
        let shown = if setting == "no" { "No" } else { "Yes" };
        assert!(status.contains(&format!("End before h exten:         {shown}")), "{status}");
        let (code, out) = run_sipp(port, "invite_pbx_hangs_up.xml", "605", "", "", 1);
        assert_eq!(code, 0, "{out}\n{}", server.log_tail());
        let rows = rows_of(&server, 1);
        assert!(server.log().contains("h is over"), "h ran: {}", server.log_tail());
        assert_eq!(rows.len(), 1, "{rows:?}");
        let (_, duration, billsec, lastapp) = &rows[0];
        assert_eq!((*duration, *billsec), (expected, expected), "endbeforehexten={setting}: {rows:?}");
        assert_eq!(lastapp, last, "endbeforehexten={setting}: {rows:?}");
    }
}

/// Issue 24: cdr_pgsql over TLS with a certificate the test made (openssl), `sslmode` as libpq
/// names it: `verify-full` and `prefer` encrypt (the server says so too, in `pg_stat_ssl`), a
/// call's record lands; `disable` does not encrypt; a server certificate from another CA is
/// refused by `verify-full`; one for another name is taken by `verify-ca` and refused by
/// `verify-full`; `require` refuses a server without TLS, where `prefer` goes on in plain.
/// `cdr show status` says the mode and whether the connection is encrypted each time.
#[test]
fn pgsql_connects_over_tls_as_sslmode_says() {
    let pki = crate::tls::Pki::new("pgtlspki");
    pki.rogue_ca("rogue");
    pki.issue("elsewhere", "ca", "IP:127.0.0.2");
    let pg = Postgres::start("pgtls");
    pg.set_ssl(&pki, Some("server"));
    let ca = format!("sslrootcert={}\n", pki.file("ca.pem"));
    let (server, port) = pgsql_pbx("pgtlspbx", &pg, &format!("sslmode=verify-full\n{ca}"), PG_EXTENSIONS);
    let status = |expected: &str| {
        let line = format!("    pgsql ({expected})\n");
        let seen = eventually(Duration::from_secs(15), || server.rx("cdr show status").contains(&line).then_some(()));
        assert!(seen.is_some(), "{line}{}\n{}", server.rx("cdr show status"), server.log_tail());
    };
    // What the server says of the connections of cdr_pgsql (appname starling-test).
    let server_side = || {
        pg.psql(
            "postgres",
            "SELECT COALESCE(string_agg(s.ssl::text || ' ' || COALESCE(s.version, '-'), ','), 'none') \
             FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'starling-test'",
        )
        .trim()
        .to_owned()
    };
    let reload = |conf: &str| {
        assert!(server.rx("module unload cdr_pgsql").contains("Unloaded"), "{}", server.log_tail());
        eventually(Duration::from_secs(10), || (server_side() == "none").then_some(()));
        server.dir.write("cdr_pgsql.conf", &pg.cdr_pgsql_conf(conf));
        let out = server.rx("module load cdr_pgsql");
        assert!(out.contains("Loaded"), "{out}\n{}", server.log_tail());
    };

    status("online, 0 spooled, sslmode=verify-full, encrypted");
    assert!(server_side().starts_with("true TLSv1."), "{}", server_side());
    calls(port, 1, &server);
    assert_all_in_postgres(&pg, &server.dir.path, 1, &|| server.log_tail());

    reload("");
    status("online, 0 spooled, sslmode=prefer, encrypted");
    assert!(server_side().starts_with("true TLSv1."), "{}", server_side());

    reload("sslmode=disable\n");
    status("online, 0 spooled, sslmode=disable, not encrypted");
    assert_eq!(server_side(), "false -");

    reload(&format!("sslmode=verify-full\nsslrootcert={}\n", pki.file("rogue.pem")));
    status("offline, 0 spooled, sslmode=verify-full, not connected");
    assert_eq!(server_side(), "none");

    // A certificate for another address, signed by the trusted CA.
    pg.set_ssl(&pki, Some("elsewhere"));
    reload(&format!("sslmode=verify-ca\n{ca}"));
    status("online, 0 spooled, sslmode=verify-ca, encrypted");
    reload(&format!("sslmode=verify-full\n{ca}"));
    status("offline, 0 spooled, sslmode=verify-full, not connected");

    // A server without TLS.
    pg.set_ssl(&pki, None);
    reload("sslmode=require\n");
    status("offline, 0 spooled, sslmode=require, not connected");
    reload("sslmode=prefer\n");
    status("online, 0 spooled, sslmode=prefer, not encrypted");
    assert_eq!(server_side(), "false -");
    assert!(server.log().contains("sslmode=verify-full, encrypted"), "{}", server.log_tail());
}
