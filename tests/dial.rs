//! Dial(SIP/...): outbound calls, bridging, the DIALSTATUS outcomes and forking, with SIPp on
//! both sides (a UAC calling in, one or two UASes called).

use std::time::Duration;

use crate::util::*;

const EXTENSIONS: &str = "[default]
exten => 10,1,Dial(SIP/uas,5)
 same => n,Hangup()
exten => 11,1,Dial(SIP/uas,2)
 same => n,Answer()
 same => n,NoOp(DIALSTATUS=${DIALSTATUS} CAUSE=${HANGUPCAUSE})
 same => n,Hangup()
exten => 12,1,Dial(SIP/nobody,2)
 same => n,Answer()
 same => n,NoOp(DIALSTATUS=${DIALSTATUS})
 same => n,Hangup()
exten => 13,1,Dial(SIP/uas&SIP/uas2,5)
 same => n,Hangup()
exten => 14,1,Dial(Local/600@default,5)
 same => n,Hangup()
exten => 600,1,Answer()
 same => n,Echo()
";

/// Starling with app_dial; `uas` (and `uas2`) are peers at the given SIPp ports.
fn b2bua(name: &str, uas: u16, uas2: u16) -> (Server, u16) {
    let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = TestDir::new(name);
    dir.write_starling_conf(&moddir(), "");
    dir.write(
        "modules.conf",
        "[modules]\nautoload = no\nload => pbx_config.so\nload => app_dial.so\nload => app_echo.so\nload => chan_sip.so\n",
    );
    dir.write("extensions.conf", EXTENSIONS);
    let peer = |name: &str, port: u16| {
        format!("[{name}]\ntype=peer\nhost=127.0.0.1\nport={port}\ninsecure=port,invite\ndisallow=all\nallow=ulaw\n")
    };
    dir.write(
        "sip.conf",
        &format!(
            "[general]\nbindaddr=127.0.0.1\nbindport={port}\nallowguest=yes\ncontext=default\n{}{}",
            peer("uas", uas),
            peer("uas2", uas2)
        ),
    );
    (Server::start(dir), port)
}

fn dial_log_has(server: &Server, text: &str) -> bool {
    eventually(Duration::from_secs(5), || server.log().contains(text).then_some(())).is_some()
}

/// SIPp calls 10 → Dial(SIP/uas): the UAS answers, the two calls are bridged natively (same
/// codec on both legs), the caller's BYE ends both.
#[test]
fn dial_bridges_two_sip_calls_natively() {
    let uas = SippUas::spawn("uas_answer.xml");
    let (server, port) = b2bua("dialok", uas.port, 1);
    let caller = std::thread::spawn(move || run_sipp(port, "invite_answer_long.xml", "10", "", "", 1));
    let bridges = eventually(Duration::from_secs(5), || {
        let b = server.rx("bridge show all");
        b.contains("native_rtp").then_some(b)
    });
    assert!(bridges.is_some(), "a native bridge: {}\n{}", server.rx("bridge show all"), server.log_tail());
    let channels = server.rx("core show channels");
    assert!(channels.contains("SIP/uas-"), "{channels}");
    let (code, out) = caller.join().unwrap();
    assert_eq!(code, 0, "caller: {out}\n{}", server.log_tail());
    let (code, out) = uas.finish();
    assert_eq!(code, 0, "callee got the BYE: {out}\n{}", server.log_tail());
    let gone = eventually(Duration::from_secs(5), || {
        let c = server.rx("core show channels");
        c.contains("0 active channels").then_some(c)
    });
    assert!(gone.is_some(), "both legs ended: {}", server.rx("core show channels"));
    assert!(server.rx("sip show channels").contains("0 active SIP channels"));
}

/// 486 from the callee: DIALSTATUS=BUSY, HANGUPCAUSE 17.
#[test]
fn a_busy_callee_makes_dialstatus_busy() {
    let uas = SippUas::spawn("uas_busy.xml");
    let (server, port) = b2bua("dialbusy", uas.port, 1);
    let (code, out) = run_sipp(port, "invite_pbx_hangs_up.xml", "11", "", "", 1);
    assert_eq!(code, 0, "{out}\n{}", server.log_tail());
    assert!(dial_log_has(&server, "DIALSTATUS=BUSY CAUSE=17"), "{}", server.log_tail());
    let (code, out) = uas.finish();
    assert_eq!(code, 0, "callee: {out}");
}

/// No answer within Dial's timeout: CANCEL to the callee (which answers 487), NOANSWER.
#[test]
fn no_answer_in_time_cancels_and_makes_noanswer() {
    let uas = SippUas::spawn("uas_ring_cancel.xml");
    let (server, port) = b2bua("dialnoanswer", uas.port, 1);
    let (code, out) = run_sipp(port, "invite_pbx_hangs_up.xml", "11", "", "", 1);
    assert_eq!(code, 0, "{out}\n{}", server.log_tail());
    assert!(dial_log_has(&server, "DIALSTATUS=NOANSWER"), "{}", server.log_tail());
    let (code, out) = uas.finish();
    assert_eq!(code, 0, "callee got CANCEL: {out}\n{}", server.log_tail());
}

/// An unknown peer: CHANUNAVAIL without sending anything.
#[test]
fn an_unknown_peer_is_chanunavail() {
    let (server, port) = b2bua("dialunknown", 1, 1);
    let (code, out) = run_sipp(port, "invite_pbx_hangs_up.xml", "12", "", "", 1);
    assert_eq!(code, 0, "{out}\n{}", server.log_tail());
    assert!(dial_log_has(&server, "DIALSTATUS=CHANUNAVAIL"), "{}", server.log_tail());
}

/// Dial(SIP/uas&SIP/uas2): the first rings, the second answers; the first gets CANCEL.
#[test]
fn forking_cancels_the_loser() {
    let ringing = SippUas::spawn("uas_ring_cancel.xml");
    let answering = SippUas::spawn("uas_answer.xml");
    let (server, port) = b2bua("dialfork", ringing.port, answering.port);
    let (code, out) = run_sipp(port, "invite_answer.xml", "13", "", "", 1);
    assert_eq!(code, 0, "caller: {out}\n{}", server.log_tail());
    let (code, out) = ringing.finish();
    assert_eq!(code, 0, "the loser got CANCEL: {out}\n{}", server.log_tail());
    let (code, out) = answering.finish();
    assert_eq!(code, 0, "the winner got BYE: {out}\n{}", server.log_tail());
}

/// Dial(Local/600@default): a Local channel answered by the dialplan, bridged to the caller.
#[test]
fn dial_reaches_a_local_channel() {
    let (server, port) = b2bua("diallocal", 1, 1);
    let (code, out) = run_sipp(port, "invite_answer.xml", "14", "", "", 1);
    assert_eq!(code, 0, "{out}\n{}", server.log_tail());
    assert!(dial_log_has(&server, "Called Local/600@default"), "{}", server.log_tail());
}
