//! Load shedding (issue 20, items 2 and 4): a flood of strangers' INVITEs past
//! `maxservertransactions` is refused with 503 while a registered phone still registers and
//! calls; `maxcalls` refuses a call past it as Asterisk does; SIGTERM drains the calls up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::util::*;

const EXTENSIONS: &str = "\
[test]
exten => 100,1,Answer()
 same => n,Wait(30)
 same => n,Hangup()
";

/// VmRSS of a process, in kB (0 once it is gone).
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// How many of `status` SIPp's final screen counted (the `503 <----------  N` line).
fn sipp_received(out: &str, status: &str) -> u64 {
    out.lines()
        .rev()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|t| t.len() > 2 && t[0] == status && t[1].starts_with('<'))
        .and_then(|t| t[2..].iter().find_map(|x| x.parse().ok()))
        .unwrap_or(0)
}

/// The counts of the server's "Refused N request(s) with 503" lines.
fn refused_in_log(log: &str) -> Vec<u64> {
    log.lines()
        .filter_map(|l| l.split("Refused ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

/// 20,000 distinct unauthenticated INVITEs at up to 10,000 a second against a cap of 200:
/// those past it get 503 (logged with a count, not a line each), RSS stays bounded, and a
/// registered phone registers and makes an answered call during the flood and after it.
#[test]
fn issue_20_a_flood_past_maxservertransactions_gets_503_and_a_registered_phone_still_calls() {
    let (server, port) = sip_pbx(
        "overload",
        &["pbx_config"],
        Some(EXTENSIONS),
        "allowguest=no\nmaxservertransactions=200\n\
         [alice]\ntype=friend\nhost=dynamic\nsecret=pw\ncontext=test\ndisallow=all\nallow=ulaw\n",
    );
    let target = format!("127.0.0.1:{port}");
    let phone = free_udp_port();
    let auth = ["-au", "alice", "-ap", "pw", "-m", "1"];
    let register = || sipp_from(&target, "127.0.0.1", phone, "register.xml", &[&["-s", "alice"], &auth[..]].concat());
    let call = || sipp_from(&target, "127.0.0.1", phone, "invite_auth.xml", &[&["-s", "100"], &auth[..]].concat());
    let (code, out) = register();
    assert_eq!(code, 0, "the phone registers before the flood: {out}\n{}", server.log_tail());

    let pid = server.pid();
    let rss_start = rss_kb(pid);
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            for _ in 0..1200 {
                if !sampling.load(Ordering::Relaxed) {
                    break;
                }
                peak = peak.max(rss_kb(pid));
                std::thread::sleep(Duration::from_millis(50));
            }
            peak
        })
    };
    let flood = SippUas::spawn_with(
        "flood_invite.xml",
        20_000,
        &[&target, "-s", "100", "-r", "10000", "-l", "20000", "-recv_timeout", "10000", "-mp", "46000"],
    );
    let shedding = eventually(Duration::from_secs(20), || server.log().contains("Refused ").then_some(()));
    assert!(shedding.is_some(), "the cap is reached\n{}", server.log_tail());
    let (register_during, register_out) = register();
    let (call_during, call_out) = call();
    let (flood_code, flood_out) = flood.finish();
    sampling.store(false, Ordering::Relaxed);
    let rss_peak = sampler.join().unwrap();

    assert_eq!(register_during, 0, "REGISTER during the flood: {register_out}\n{}", server.log_tail());
    assert_eq!(call_during, 0, "a call during the flood: {call_out}\n{}", server.log_tail());
    let (challenged, refused) = (sipp_received(&flood_out, "401"), sipp_received(&flood_out, "503"));
    eprintln!(
        "flood: SIPp exit {flood_code}, 401 {challenged}, 503 {refused}; RSS kB start {rss_start}, peak {rss_peak}"
    );
    assert!(refused >= 10_000, "most of the flood is refused: 401 {challenged}, 503 {refused}\n{flood_out}");
    assert!(challenged >= 100, "about the cap's worth is challenged: 401 {challenged}\n{flood_out}");
    assert!(challenged + refused >= 19_000, "every INVITE is answered: {challenged} + {refused}\n{flood_out}");
    assert!(rss_peak < rss_start + 48 * 1024, "RSS bounded: {rss_start} kB at the start, {rss_peak} kB at the peak");

    let (code, out) = register();
    assert_eq!(code, 0, "REGISTER after the flood: {out}\n{}", server.log_tail());
    let (code, out) = call();
    assert_eq!(code, 0, "a call after the flood: {out}\n{}", server.log_tail());

    // The refusals are logged at most once a second, with their count: every one is counted.
    let logged = eventually(Duration::from_secs(10), || {
        let counts = refused_in_log(&server.log());
        (counts.iter().sum::<u64>() >= refused).then_some(counts)
    });
    let counts = logged.unwrap_or_else(|| panic!("{:?} logged for {refused}", refused_in_log(&server.log())));
    assert!(counts.len() < 100, "one line a second, not one a request: {} lines", counts.len());
    let idle = eventually(Duration::from_secs(10), || {
        server.rx("core show channels count").starts_with("0 active channels").then_some(())
    });
    assert!(idle.is_some(), "{}", server.rx("core show channels"));
}

/// `maxcalls = 2`: a third call at once is refused as Asterisk's increase_call_count and
/// chan_sip refuse it (480, one WARNING naming the channel); the two go on and end normally.
#[test]
fn maxcalls_refuses_a_third_call_with_480_and_the_two_go_on() {
    let (server, port) = sip_pbx_with_options("maxcalls", "maxcalls = 2\n", &["pbx_config"], Some(EXTENSIONS), |_| {
        "allowguest=yes\ncontext=test\n".to_owned()
    });
    let two = std::thread::spawn(move || {
        run_sipp_with(port, "invite_answer_hold.xml", &["-s", "100", "-m", "2", "-l", "2", "-d", "8000"])
    });
    let up = eventually(Duration::from_secs(10), || {
        let channels = server.rx("core show channels");
        channels.contains("2 of 2 max active calls").then_some(channels)
    });
    assert!(up.is_some(), "{}\n{}", server.rx("core show channels"), server.log_tail());
    let (code, out) = run_sipp_with(port, "invite_480.xml", &["-s", "100", "-m", "1"]);
    assert_eq!(code, 0, "the third call gets 480: {out}\n{}", server.log_tail());
    assert!(
        server.log().contains("Maximum call limit of 2 calls exceeded by 'SIP/127.0.0.1-"),
        "{}",
        server.log_tail()
    );
    assert!(server.rx("core show channels").contains("2 of 2 max active calls"), "the two are still up");
    let (code, out) = two.join().unwrap();
    assert_eq!(code, 0, "the two calls end normally: {out}\n{}", server.log_tail());
    let idle = eventually(Duration::from_secs(10), || {
        server.rx("core show channels").contains("0 of 2 max active calls").then_some(())
    });
    assert!(idle.is_some(), "{}", server.rx("core show channels"));
}

/// SIGTERM with five calls up: a new INVITE gets 503, OPTIONS 503, the five calls go on and
/// end with BYE/200, and the process exits 0 once the last is gone.
#[test]
fn issue_20_sigterm_drains_five_calls_refusing_new_ones_with_503_and_exits_0() {
    let (mut server, port) = sip_pbx("drain", &["pbx_config"], Some(EXTENSIONS), "allowguest=yes\ncontext=test\n");
    let five = std::thread::spawn(move || {
        run_sipp_with(port, "invite_answer_hold.xml", &["-s", "100", "-m", "5", "-l", "5", "-r", "20", "-d", "10000"])
    });
    let up = eventually(Duration::from_secs(10), || {
        server.rx("core show channels count").contains("5 active calls").then_some(())
    });
    assert!(up.is_some(), "{}\n{}", server.rx("core show channels"), server.log_tail());
    server.signal(SIGTERM);
    let options = eventually(Duration::from_secs(5), || {
        let out = std::process::Command::new("sipsak")
            .args(["-s", &format!("sip:100@127.0.0.1:{port}"), "-v"])
            .output()
            .expect("sipsak (Debian's sipsak)");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("SIP/2.0 503").then_some(text)
    });
    assert!(options.is_some(), "OPTIONS 503 while draining\n{}", server.log_tail());
    let (code, out) = run_sipp_with(port, "invite_503.xml", &["-s", "100", "-m", "1"]);
    assert_eq!(code, 0, "a new INVITE gets 503: {out}\n{}", server.log_tail());
    assert!(server.rx("core show channels count").contains("5 active calls"), "the five are still up");
    let (code, out) = five.join().unwrap();
    assert_eq!(code, 0, "the five calls end normally (BYE, 200): {out}\n{}", server.log_tail());
    let status = server.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{}", server.log_tail());
}
