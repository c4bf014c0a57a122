//! Issue 22: `rtptimeout` and `rtpholdtimeout` (sip.conf `[general]`) hang up a call whose far
//! end went silent, as chan_sip's check_rtp_timeout: its NOTICE, cause 44, and not while the
//! far end holds the call (until `rtpholdtimeout`).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::dtmf::{expect, Phone};
use crate::util::*;

const EXTENSIONS: &str = "[default]\n\
exten => 600,1,Answer()\n same => n,Echo()\n\
exten => bob,1,Dial(SIP/bob,10)\n same => n,Hangup()\n\
exten => h,1,Verbose(1,H HANGUPCAUSE=${HANGUPCAUSE})\n";

/// Starling with chan_sip on a free port (`general` in sip.conf's `[general]`, peer `bob` at
/// `bob_port`) and the manager on another (`admin`/`s3cret`); returns the SIP and AMI ports.
fn server(name: &str, general: &str, bob_port: u16) -> (Server, u16, u16) {
    server_with(name, general, bob_port, "")
}

/// [`server`] with more lines in bob's section.
fn server_with(name: &str, general: &str, bob_port: u16, bob_keys: &str) -> (Server, u16, u16) {
    let port = free_udp_port();
    let ami = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = TestDir::new(name);
    dir.write_starling_conf(&moddir(), "");
    dir.write(
        "modules.conf",
        "[modules]\nautoload = no\nload => pbx_config.so\nload => app_dial.so\nload => app_echo.so\nload => app_verbose.so\nload => res_manager.so\nload => chan_sip.so\n",
    );
    dir.write(
        "manager.conf",
        &format!(
            "[general]\nenabled=yes\nport={ami}\nbindaddr=127.0.0.1\n[admin]\nsecret=s3cret\nread=all\nwrite=all\n"
        ),
    );
    dir.write("extensions.conf", EXTENSIONS);
    dir.write(
        "sip.conf",
        &format!(
            "[general]\nbindaddr=127.0.0.1\nbindport={port}\ncontext=default\nallowguest=yes\ndisallow=all\nallow=ulaw\n{general}\n\
             [bob]\ntype=peer\nhost=127.0.0.1\nport={bob_port}\ncontext=default\ndisallow=all\nallow=ulaw\n{bob_keys}"
        ),
    );
    (Server::start(dir), port, ami)
}

/// A manager session logged in as `admin`, reading events.
fn manager(port: u16) -> BufReader<TcpStream> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(b"Action: Login\r\nUsername: admin\r\nSecret: s3cret\r\n\r\n").unwrap();
    BufReader::new(stream)
}

/// Reads the manager's messages until an event named `name`, and returns it.
fn event(ami: &mut BufReader<TcpStream>, name: &str) -> String {
    let mut message = String::new();
    loop {
        let mut line = String::new();
        let n = ami.read_line(&mut line).unwrap_or_else(|e| panic!("{name} event: {e}; last {message}"));
        assert!(n > 0, "the manager closed before a {name} event");
        if line == "\r\n" {
            if message.starts_with(&format!("Event: {name}\r\n")) {
                return message;
            }
            message.clear();
        } else {
            message.push_str(&line);
        }
    }
}

/// chan_sip's NOTICE for the call, and how many seconds of silence it names.
fn disconnect_notice(server: &Server) -> Option<(String, u64)> {
    server.log().lines().find_map(|l| {
        let (_, rest) = l.split_once("NOTICE[")?;
        let (_, text) = rest.split_once("chan_sip.c: Disconnecting call '")?;
        let (channel, rest) = text.split_once("' for lack of RTP activity in ")?;
        let seconds = rest.strip_suffix(" seconds")?.parse().ok()?;
        Some((channel.to_owned(), seconds))
    })
}

/// A guest talks to Echo() for a second and falls silent: `rtptimeout=2` later, Starling logs
/// chan_sip's NOTICE, sends the manager chan_sip's SessionTimeout event, sends BYE, and the
/// channel ends with cause 44.
#[test]
fn rtptimeout_hangs_up_a_silent_call_to_the_dialplan() {
    let (server, port, ami) = server("rtptoecho", "rtptimeout=2", free_udp_port());
    let mut ami = manager(ami);
    let call = Phone::call(port, "600", "rtpto-echo@127.0.0.1", true);
    call.send_silence(50);
    let silent_from = Instant::now();
    call.sip.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
    let bye = expect(&call.sip, "BYE ");
    let after = silent_from.elapsed();
    assert!(bye.contains("Call-ID: rtpto-echo@127.0.0.1"), "{bye}");
    assert!(after >= Duration::from_millis(1800), "not before rtptimeout: BYE after {after:?}");
    let (channel, seconds) =
        disconnect_notice(&server).unwrap_or_else(|| panic!("chan_sip's NOTICE\n{}", server.log_tail()));
    assert!(channel.starts_with("SIP/127.0.0.1-"), "{channel}");
    assert_eq!(seconds, 2);
    let cause = eventually(Duration::from_secs(3), || server.log().contains("H HANGUPCAUSE=44").then_some(()));
    assert!(cause.is_some(), "cause 44 (REQUESTED_CHAN_UNAVAIL)\n{}", server.log_tail());
    let gone = eventually(Duration::from_secs(3), || {
        server.rx("core show channels").contains("0 active channels").then_some(())
    });
    assert!(gone.is_some(), "{}", server.rx("core show channels"));
    let timeout = event(&mut ami, "SessionTimeout");
    let uniqueid = timeout.lines().find_map(|l| l.strip_prefix("Uniqueid: ")).unwrap_or("");
    assert!(
        timeout.starts_with(&format!(
            "Event: SessionTimeout\r\nPrivilege: call,all\r\nSource: RTPTimeout\r\nChannel: {channel}\r\nUniqueid: "
        )) && !uniqueid.is_empty(),
        "{timeout}"
    );
}

/// A natively bridged call (both PCMU, the same dtmfmode): bob keeps talking, the caller stops.
/// The caller's leg times out (the relay counts what it relays); both legs get BYE.
#[test]
fn rtptimeout_hangs_up_a_relayed_call_when_one_far_end_stops() {
    let (bob_sip, bob_rtp, bob_port) = Phone::listen();
    let (server, port, _) = server("rtptonative", "rtptimeout=2", bob_port);
    let dialing = std::thread::spawn(move || Phone::call(port, "bob", "rtpto-native@127.0.0.1", true));
    let bob = Phone::answer(bob_sip, bob_rtp, true);
    let alice = dialing.join().unwrap();
    let native =
        eventually(Duration::from_secs(5), || server.rx("bridge show all").contains("native_rtp").then_some(()));
    assert!(native.is_some(), "{}\n{}", server.rx("bridge show all"), server.log_tail());
    // Bob talks for 6 s all along; alice for 1 s, then falls silent.
    let talking = std::thread::spawn(move || {
        bob.send_silence(300);
        bob
    });
    alice.send_silence(50);
    alice.sip.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
    let bye = expect(&alice.sip, "BYE ");
    assert!(bye.contains("Call-ID: rtpto-native@127.0.0.1"), "{bye}");
    let bob = talking.join().unwrap();
    bob.sip.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    expect(&bob.sip, "BYE ");
    let (channel, seconds) =
        disconnect_notice(&server).unwrap_or_else(|| panic!("chan_sip's NOTICE\n{}", server.log_tail()));
    assert!(channel.starts_with("SIP/127.0.0.1-"), "the caller's leg timed out, not bob's: {channel}");
    assert_eq!(seconds, 2);
    assert!(server.log().contains("H HANGUPCAUSE=44"), "{}", server.log_tail());
}

/// `rtptimeout` in a peer's section (none in `[general]`): bob falls silent in a relayed call
/// while the caller keeps talking; bob's leg times out and both get BYE.
#[test]
fn a_peers_own_rtptimeout_hangs_up_when_it_falls_silent() {
    let (bob_sip, bob_rtp, bob_port) = Phone::listen();
    let (server, port, _) = server_with("rtptopeer", "", bob_port, "rtptimeout=2\n");
    let dialing = std::thread::spawn(move || Phone::call(port, "bob", "rtpto-peer@127.0.0.1", true));
    let bob = Phone::answer(bob_sip, bob_rtp, true);
    let alice = dialing.join().unwrap();
    let native =
        eventually(Duration::from_secs(5), || server.rx("bridge show all").contains("native_rtp").then_some(()));
    assert!(native.is_some(), "{}\n{}", server.rx("bridge show all"), server.log_tail());
    let talking = std::thread::spawn(move || {
        alice.send_silence(300);
        alice
    });
    bob.send_silence(50);
    bob.sip.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
    expect(&bob.sip, "BYE ");
    let alice = talking.join().unwrap();
    alice.sip.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    expect(&alice.sip, "BYE ");
    let (channel, seconds) =
        disconnect_notice(&server).unwrap_or_else(|| panic!("chan_sip's NOTICE\n{}", server.log_tail()));
    assert!(channel.starts_with("SIP/bob-"), "bob's leg timed out: {channel}");
    assert_eq!(seconds, 2);
}

/// On hold (the caller's re-INVITE says sendonly) silence is spared past `rtptimeout=2` and
/// ends the call at `rtpholdtimeout=5`.
#[test]
fn rtpholdtimeout_ends_a_held_call_and_rtptimeout_spares_it() {
    let (server, port, _) = server("rtphold", "rtptimeout=2\nrtpholdtimeout=5", free_udp_port());
    let call = Phone::call(port, "600", "rtphold@127.0.0.1", true);
    call.send_silence(25);
    call.reinvite("sendonly");
    let silent_from = Instant::now();
    let held = eventually(Duration::from_secs(2), || server.rx("sip show channels").contains("Yes").then_some(()));
    assert!(held.is_some(), "{}", server.rx("sip show channels"));
    call.sip.set_read_timeout(Some(Duration::from_secs(9))).unwrap();
    let bye = expect(&call.sip, "BYE ");
    let after = silent_from.elapsed();
    assert!(bye.contains("Call-ID: rtphold@127.0.0.1"), "{bye}");
    assert!(after >= Duration::from_millis(4000), "spared past rtptimeout while held: BYE after {after:?}");
    let (_, seconds) = disconnect_notice(&server).unwrap_or_else(|| panic!("chan_sip's NOTICE\n{}", server.log_tail()));
    assert_eq!(seconds, 5);
    assert!(eventually(Duration::from_secs(3), || server.log().contains("H HANGUPCAUSE=44").then_some(())).is_some());
}

/// A bad `rtpholdtimeout` stops start-up with the file and line.
#[test]
fn a_bad_rtpholdtimeout_is_a_config_error() {
    let dir = TestDir::new("rtpholdbad");
    dir.write_starling_conf(&moddir(), "");
    dir.write("modules.conf", "[modules]\nautoload = no\nload => chan_sip.so\n");
    dir.write(
        "sip.conf",
        &format!("[general]\nbindaddr=127.0.0.1\nbindport={}\nrtpholdtimeout=soon\n", free_udp_port()),
    );
    let out = run_starling(&["-C", dir.config().to_str().unwrap(), "-f"], Duration::from_secs(20));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("sip.conf:4: rtpholdtimeout 'soon'"), "{text}");
}
