//! Issue 20, item 3: a panic is contained or loud, never silent. The fixture module
//! `test_panic` (tests/fixtures/test_panic) panics on purpose: its `Panic()` application and
//! `PANIC()` function inside one call, its CDR writer on the writer thread. The caller is a
//! friend with `call-limit=1`, so a leaked slot shows as a 486 on its next call.

use std::time::Duration;

use crate::util::*;

const EXTENSIONS: &str = "\
[default]
exten => 100,1,Answer()
 same => n,Panic(boom in the dialplan)
 same => n,Hangup()
exten => 101,1,Panic(boom before answer)
 same => n,Hangup()
exten => 102,1,Answer()
 same => n,Set(X=${PANIC(boom in a function)})
 same => n,Hangup()
exten => 200,1,Answer()
 same => n,Echo()
exten => cdrpanic,1,Answer()
 same => n,Hangup()
exten => h,1,Set(CDR(userfield)=h ran ${HANGUPCAUSE})
";

/// A Starling with the fixture, cdr_csv (with the userfield) and `alice`, a friend with
/// `call-limit=1`.
fn panic_pbx(name: &str) -> (Server, u16) {
    let (server, port) = sip_pbx_on_port(
        name,
        &["pbx_config", "app_echo", "func_cdr", "cdr_csv", "test_panic"],
        Some(EXTENSIONS),
        |_| {
            "allowguest=yes\ncontext=default\n[alice]\ntype=friend\nhost=dynamic\ncontext=default\ncall-limit=1\ndisallow=all\nallow=ulaw\n".to_owned()
        },
    );
    std::fs::write(server.dir.etc().join("cdr.conf"), "[general]\nenable=yes\n[csv]\nloguserfield=yes\n").unwrap();
    server.rx("core reload");
    (server, port)
}

fn alice_call(port: u16, exten: &str, scenario: &str) -> (i32, String) {
    run_sipp_with(port, scenario, &["-s", exten, "-m", "1"])
}

/// Waits (bounded) until no channel and no SIP dialog is left.
fn wait_until_idle(server: &Server) {
    let idle = eventually(Duration::from_secs(10), || {
        let core = server.rx("core show channels");
        let sip = server.rx("sip show channels");
        (core.contains("0 active channels") && sip.contains("0 active SIP channels")).then_some(())
    });
    assert!(
        idle.is_some(),
        "{}\n{}\n{}",
        server.rx("core show channels"),
        server.rx("sip show channels"),
        server.log_tail()
    );
}

fn csv_lines(server: &Server) -> Vec<String> {
    std::fs::read_to_string(server.dir.path.join("log/cdr-csv/Master.csv"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A call answered, then `Panic()`: its caller gets BYE; a call in parallel goes on and hangs
/// up normally; one ERROR line names the channel and the message; `h` runs (HANGUPCAUSE 38,
/// FAILURE) and the CDR is written; nothing is left (channels, dialogs, call-limit slot). The
/// same for a panic in a function read during substitution.
#[test]
fn issue_20_a_panic_in_one_call_ends_that_call_only() {
    let (mut server, port) = panic_pbx("panicbye");

    let parallel = std::thread::spawn(move || run_sipp_with(port, "invite_answer_long.xml", &["-s", "200", "-m", "1"]));
    let up =
        eventually(Duration::from_secs(15), || server.rx("core show channels").contains("1 active call").then_some(()));
    assert!(up.is_some(), "the parallel call is up: {}\n{}", server.rx("core show channels"), server.log_tail());

    let (code, out) = alice_call(port, "100", "invite_alice_pbx_hangs_up.xml");
    assert_eq!(code, 0, "BYE after the panic: {out}\n{}", server.log_tail());
    let (code, out) = parallel.join().unwrap();
    assert_eq!(code, 0, "the parallel call ends normally: {out}\n{}", server.log_tail());
    assert!(server.running(), "{}", server.log_tail());

    let log = server.log();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR") && l.contains("boom in the dialplan")).collect();
    assert_eq!(errors.len(), 1, "one ERROR line: {errors:?}\n{}", server.log_tail());
    assert!(
        errors[0].contains("Application Panic(boom in the dialplan) on SIP/alice-")
            && errors[0].contains("panicked: 'boom in the dialplan' at tests/fixtures/test_panic/src/lib.rs:"),
        "{}",
        errors[0]
    );
    wait_until_idle(&server);

    // The slot is free (call-limit=1 would refuse with 486), and a panic in a function ends
    // its call the same way.
    let (code, out) = alice_call(port, "102", "invite_alice_pbx_hangs_up.xml");
    assert_eq!(code, 0, "BYE after the function's panic: {out}\n{}", server.log_tail());
    assert!(
        server.log().lines().any(|l| l.contains("ERROR")
            && l.contains("Function PANIC(boom in a function) on SIP/alice-")
            && l.contains("panicked: 'boom in a function'")),
        "{}",
        server.log_tail()
    );
    wait_until_idle(&server);

    let rows = eventually(Duration::from_secs(10), || {
        let lines = csv_lines(&server);
        (lines.iter().filter(|l| l.contains("\"alice\"")).count() >= 2).then_some(lines)
    })
    .unwrap_or_else(|| panic!("CDRs of both calls: {:?}\n{}", csv_lines(&server), server.log_tail()));
    let panicked = rows.iter().find(|l| l.contains(",\"100\",")).expect("the CDR of the call to 100");
    assert!(panicked.contains("\"ANSWERED\""), "{panicked}");
    assert!(panicked.ends_with(",\"h ran 38\""), "h ran with FAILURE: {panicked}");
    let function = rows.iter().find(|l| l.contains(",\"102\",")).expect("the CDR of the call to 102");
    assert!(function.ends_with(",\"h ran 38\""), "h ran with FAILURE: {function}");
    assert!(server.running(), "{}", server.log_tail());
}

/// `Panic()` before the answer: the caller gets 500 Server Internal Error, twice in a row
/// (the call-limit slot of the first is free again), and nothing is left.
#[test]
fn issue_20_a_panic_before_answer_gets_500() {
    let (mut server, port) = panic_pbx("panic500");
    for attempt in 1..=2 {
        let (code, out) = alice_call(port, "101", "invite_alice_500.xml");
        assert_eq!(code, 0, "500, attempt {attempt}: {out}\n{}", server.log_tail());
        wait_until_idle(&server);
    }
    let log = server.log();
    let errors = log.lines().filter(|l| l.contains("ERROR") && l.contains("boom before answer")).count();
    assert_eq!(errors, 2, "{}", server.log_tail());
    assert!(server.running(), "{}", server.log_tail());
}

/// A panic on a CDR writer's thread (a part Starling cannot serve without) is logged through
/// the logger (the `messages` file) and on standard error, and the process exits with 70.
#[test]
fn issue_20_a_panic_in_a_critical_thread_exits_70() {
    let (mut server, port) = panic_pbx("panic70");
    // The call's record reaches the writer as the call ends: whether SIPp still sees the BYE
    // races the exit, so only the exit is asserted.
    let _ = run_sipp_with(port, "invite_pbx_hangs_up.xml", &["-s", "cdrpanic", "-m", "1"]);
    let status = server.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(70), "{}", server.log_tail());
    let said = "The CDR writer cdr_test_panic stopped: panic 'test_panic: the CDR writer was given a call to cdrpanic'";
    assert!(server.log().contains(said), "on standard error: {}", server.log_tail());
    let messages = std::fs::read_to_string(server.dir.path.join("log/messages")).unwrap_or_default();
    let line = messages.lines().find(|l| l.contains(said)).unwrap_or_else(|| panic!("in messages:\n{messages}"));
    assert!(line.contains("ERROR") && line.contains("exiting with code 70"), "{line}");
}
