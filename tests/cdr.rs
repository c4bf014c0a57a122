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
";

fn cdr_pbx(name: &str, uas: u16, cdr_conf: &str) -> (Server, u16) {
    let (server, port) = sip_pbx_on_port(
        name,
        &["pbx_config", "app_dial", "app_echo", "func_cdr", "app_cdr", "cdr_csv", "cdr_sqlite3"],
        Some(EXTENSIONS),
        |_| {
            format!(
                "allowguest=yes\ncontext=default\n[uas]\ntype=peer\nhost=127.0.0.1\nport={uas}\ninsecure=port,invite\n\
                 disallow=all\nallow=ulaw\n"
            )
        },
    );
    std::fs::write(server.dir.etc().join("cdr.conf"), cdr_conf).unwrap();
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
