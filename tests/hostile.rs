//! Issue 20, item 1: nesting a stranger controls (a guest's From user) and nesting a
//! dialplan holds reach the expression and substitution evaluators 20,000 levels deep. Each
//! call is answered and hung up as the dialplan says, one WARNING is logged, and the process
//! lives on with no channel left over.

use std::time::Duration;

use crate::util::{eventually, moddir, run_starling, sip_pbx, sipp_at, Server, TestDir};

/// The nesting the issue's INVITE carries.
const DEPTH: usize = 20_000;

/// A guest from 127.0.0.1 lands in `[public]`: 1 evaluates the caller's number in `$[...]`
/// (the issue's dialplan), 2 nests `${...}` DEPTH deep around it, 3 nests a function call
/// DEPTH deep around it; each then answers and hangs up. 4 answers and Gosubs to itself
/// without end. 5 runs the caller's number as an application, then answers and hangs up.
fn hostile_pbx(name: &str) -> (Server, u16) {
    let substitutions = format!("{}{{CALLERID(num)}}{}", "${".repeat(DEPTH), "}".repeat(DEPTH));
    let functions = format!("{}${{CALLERID(num)}}{}", "${LEN(".repeat(DEPTH), ")}".repeat(DEPTH));
    let extensions = format!(
        "[public]\n\
         exten => 1,1,Set(A=$[${{CALLERID(num)}} = 1])\n same => n,Answer()\n same => n,Verbose(1,A is '${{A}}')\n same => n,Hangup()\n\
         exten => 2,1,Set(B={substitutions})\n same => n,Answer()\n same => n,Verbose(1,B is '${{B}}')\n same => n,Hangup()\n\
         exten => 3,1,Set(C={functions})\n same => n,Answer()\n same => n,Verbose(1,C is '${{C}}')\n same => n,Hangup()\n\
         exten => 4,1,Answer()\n same => n(again),Gosub(again)\n\
         exten => 5,1,Exec(${{CALLERID(num)}})\n same => n,Answer()\n same => n,Hangup()\n"
    );
    sip_pbx(
        name,
        &["pbx_config", "func_callerid", "func_strings", "app_verbose", "app_exec"],
        Some(&extensions),
        "allowguest=yes\ncontext=public\n",
    )
}

/// tests/scenarios/invite_pbx_hangs_up.xml with `from_user` as the From user, written to `dir`.
fn scenario_from(dir: &TestDir, from_user: &str) -> String {
    let template = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/invite_pbx_hangs_up.xml"),
    )
    .unwrap();
    let scenario = template
        .replace("<sip:guest@[local_ip]:[local_port]>;tag", &format!("<sip:{from_user}@[local_ip]:[local_port]>;tag"));
    assert_eq!(scenario.matches(&format!("<sip:{from_user}@")).count(), 2, "the INVITE's and the ACK's From");
    let path = dir.path.join("hostile.xml");
    std::fs::write(&path, scenario).unwrap();
    path.to_str().unwrap().to_owned()
}

/// Calls `exten` as a guest whose From user is `from_user`: SIPp's exit code and output.
fn call(server: &Server, port: u16, exten: &str, from_user: &str) -> (i32, String) {
    let scenario = scenario_from(&server.dir, from_user);
    sipp_at(&format!("127.0.0.1:{port}"), "127.0.0.1", &scenario, &["-s", exten, "-m", "1"])
}

/// WARNING lines in the log that were not there before `before` bytes.
fn warnings_since(server: &Server, before: usize) -> Vec<String> {
    let log = server.log();
    log.get(before..).unwrap_or("").lines().filter(|l| l.contains("] WARNING[")).map(str::to_owned).collect()
}

fn assert_no_channels(server: &Server) {
    let idle = eventually(Duration::from_secs(10), || {
        server.rx("core show channels count").starts_with("0 active channels").then_some(())
    });
    assert!(idle.is_some(), "{}\n{}", server.rx("core show channels"), server.log_tail());
}

/// The issue's INVITE: a From user of 20,000 `(` then `1`, evaluated in `$[...]`.
#[test]
fn issue_20_deep_parentheses_in_a_guest_caller_id_are_a_syntax_error() {
    let (mut server, port) = hostile_pbx("hostexpr");
    let user = format!("{}1", "(".repeat(DEPTH));
    let before = server.log().len();
    let (code, out) = call(&server, port, "1", &user);
    assert_eq!(code, 0, "answered and hung up by the dialplan: {out}\n{}", server.log_tail());
    assert!(server.running(), "{}", server.log_tail());
    assert!(server.log().contains("A is ''"), "an expression error is empty: {}", server.log_tail());
    let warnings = warnings_since(&server, before);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].contains("SIP/"), "the WARNING names the channel: {}", warnings[0]);
    assert!(warnings[0].len() < 1000, "the WARNING does not copy the whole expression: {}", warnings[0].len());
    assert_no_channels(&server);

    // Still serving: a sane caller evaluates as before.
    let (code, out) = call(&server, port, "1", "1");
    assert_eq!(code, 0, "{out}\n{}", server.log_tail());
    assert!(server.log().contains("A is '1'"), "{}", server.log_tail());
    assert_no_channels(&server);
}

/// `${...}` nested 20,000 deep around the caller's number: too deep is empty, one WARNING.
#[test]
fn issue_20_deep_substitution_around_a_caller_id_is_refused() {
    let (mut server, port) = hostile_pbx("hostsubst");
    let user = format!("{}1", "(".repeat(DEPTH));
    let before = server.log().len();
    let (code, out) = call(&server, port, "2", &user);
    assert_eq!(code, 0, "answered and hung up by the dialplan: {out}\n{}", server.log_tail());
    assert!(server.running(), "{}", server.log_tail());
    assert!(server.log().contains("B is ''"), "{}", server.log_tail());
    let warnings = warnings_since(&server, before);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].contains("SIP/"), "the WARNING names the channel: {}", warnings[0]);
    assert_no_channels(&server);
}

/// A function's argument nested 20,000 deep (`${LEN(${LEN(...)})}`): the part past the limit
/// is empty, one WARNING, and the levels inside the limit still run.
#[test]
fn issue_20_deep_function_arguments_around_a_caller_id_are_refused() {
    let (mut server, port) = hostile_pbx("hostfunc");
    let user = format!("{}1", "(".repeat(DEPTH));
    let before = server.log().len();
    let (code, out) = call(&server, port, "3", &user);
    assert_eq!(code, 0, "answered and hung up by the dialplan: {out}\n{}", server.log_tail());
    assert!(server.running(), "{}", server.log_tail());
    // LEN("") is 0, LEN("0") is 1, and every level above is 1.
    assert!(server.log().contains("C is '1'"), "{}", server.log_tail());
    let warnings = warnings_since(&server, before);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].contains("SIP/"), "the WARNING names the channel: {}", warnings[0]);
    assert_no_channels(&server);
}

/// A Gosub that never returns fails at the 513th level, which hangs the call up: BYE, one
/// WARNING naming the channel.
#[test]
fn a_gosub_loop_ends_the_call_at_the_stack_limit() {
    let (mut server, port) = hostile_pbx("hostgosub");
    let before = server.log().len();
    let (code, out) = call(&server, port, "4", "looper");
    assert_eq!(code, 0, "answered, then BYE: {out}\n{}", server.log_tail());
    assert!(server.running(), "{}", server.log_tail());
    let warnings = warnings_since(&server, before);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].contains("SIP/") && warnings[0].contains("512 Gosubs deep"), "{}", warnings[0]);
    assert_no_channels(&server);
}

/// `#include`s nested deeper than Asterisk's ten, or in a loop, stop start-up with exit 1 and
/// `file:line: what is wrong`.
#[test]
fn deep_or_looping_includes_stop_startup() {
    let dir = TestDir::new("hostincl");
    dir.write_starling_conf(&moddir(), "");
    dir.write("modules.conf", "[modules]\nautoload = no\nload => pbx_config.so\n");
    dir.write("extensions.conf", "[default]\nexten => 1,1,NoOp()\n#include deep1.conf\n");
    for n in 1..=11 {
        dir.write(&format!("deep{n}.conf"), &format!("[deep{n}]\nexten => 1,1,NoOp()\n#include deep{}.conf\n", n + 1));
    }
    dir.write("deep12.conf", "[deep12]\nexten => 1,1,NoOp()\n");
    let config = dir.config();
    let out = run_starling(&["-C", config.to_str().unwrap(), "-f"], Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("deep10.conf:3: #include \"deep11.conf\": Maximum Include level (10) exceeded"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    dir.write("deep1.conf", "[deep1]\n#include extensions.conf\n");
    let out = run_starling(&["-C", config.to_str().unwrap(), "-f"], Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("deep1.conf:2: #include") && stderr.contains("would include itself"), "{stderr}");
}

/// A From user of 2,500 nested `Exec(` (20 KB: SIPp itself fails on much larger headers)
/// reaching `Exec(${CALLERID(num)})`: past 100 levels nothing runs, one WARNING, and the
/// dialplan goes on to answer and hang up.
#[test]
fn nested_exec_from_a_caller_id_runs_nothing() {
    let (mut server, port) = hostile_pbx("hostexec");
    let user = format!("{}Hangup(){}", "Exec(".repeat(2_500), ")".repeat(2_500));
    let before = server.log().len();
    let (code, out) = call(&server, port, "5", &user);
    assert_eq!(code, 0, "answered and hung up by the dialplan: {out}\n{}", server.log_tail());
    assert!(server.running(), "{}", server.log_tail());
    let warnings = warnings_since(&server, before);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].contains("SIP/") && warnings[0].contains("nested deeper than 100"), "{}", warnings[0]);
    assert_no_channels(&server);
}
