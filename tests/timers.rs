//! Issue 23: the features the call's sans-IO session brings, end to end with SIPp — RFC 4028
//! session timers (the call ends with BYE at expiry when nobody refreshes it, and Starling
//! refreshes when it is the refresher) and RFC 3262 reliable provisional responses.

use std::time::Duration;

use crate::util::*;

const EXTENSIONS: &str = "[default]
exten => 600,1,Answer()
 same => n,Echo()
exten => 10,1,Dial(SIP/uas,5)
 same => n,Hangup()
exten => 601,1,Ringing()
 same => n,Wait(1)
 same => n,Answer()
 same => n,Echo()
";

/// An offer of PCMU from 127.0.0.1:9 (discard): the INVITE is not refused for its media.
const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

fn pbx(name: &str, sip_conf: &str) -> (Server, u16) {
    pbx_with_uas(name, sip_conf, 9)
}

/// [`pbx`] with the peer `uas` (a SIPp UAS) on `uas_port`.
fn pbx_with_uas(name: &str, sip_conf: &str, uas_port: u16) -> (Server, u16) {
    let (server, port) = sip_pbx(
        name,
        &["pbx_config", "app_echo", "app_dial", "cdr_csv"],
        Some(EXTENSIONS),
        &format!(
            "allowguest=yes\ncontext=default\ndisallow=all\nallow=ulaw\n{sip_conf}\
             [uas]\ntype=peer\nhost=127.0.0.1\nport={uas_port}\ninsecure=port,invite\ndisallow=all\nallow=ulaw\n"
        ),
    );
    std::fs::write(server.dir.etc().join("cdr.conf"), "[general]\nenable=yes\n").unwrap();
    server.rx("module reload cdr_csv.so");
    (server, port)
}

/// A caller that asks for a 90 s session timer it refreshes itself, then never does: the 200
/// names it refresher, and at 90 − 30 s Starling ends the call with BYE (SIPp answers it 200),
/// logs why, and the CDR shows an answered call of about a minute.
#[test]
fn a_session_nobody_refreshes_ends_with_bye_at_expiry() {
    let (server, port) = pbx("stexpire", "");
    let (code, out) = sipp_bounded(
        &format!("127.0.0.1:{port}"),
        "127.0.0.1",
        free_udp_port(),
        "invite_timer_expires.xml",
        &["-s", "600", "-m", "1"],
        Duration::from_secs(90),
    );
    assert_eq!(code, 0, "{out}\n{}", server.log_tail());
    assert!(server.log().contains("Session timer expired"), "{}", server.log_tail());
    let dir = server.dir.path.clone();
    let line = eventually(Duration::from_secs(5), || {
        let csv = std::fs::read_to_string(dir.join("log/cdr-csv/Master.csv")).ok()?;
        csv.lines().find(|l| l.contains("\"ANSWERED\"")).map(str::to_owned)
    })
    .unwrap_or_else(|| panic!("an answered record\n{}", server.log_tail()));
    // duration and billsec are the two unquoted numbers before the disposition.
    let billsec: u64 = line
        .split(',')
        .filter(|f| !f.starts_with('"'))
        .nth(1)
        .and_then(|f| f.parse().ok())
        .unwrap_or_else(|| panic!("billsec in {line}"));
    assert!((55..=65).contains(&billsec), "billsec {billsec}: {line}");
}

/// A caller that asks the UAS to refresh (and allows UPDATE): Starling answers refresher=uas
/// and refreshes with an UPDATE at half the interval, naming itself refresher (`uac` of that
/// UPDATE, RFC 4028 §9).
#[test]
fn starling_refreshes_a_session_it_is_refresher_of() {
    let (server, port) = pbx("strefresh", "");
    let (code, out) = sipp_bounded(
        &format!("127.0.0.1:{port}"),
        "127.0.0.1",
        free_udp_port(),
        "invite_timer_refreshed.xml",
        &["-s", "600", "-m", "1"],
        Duration::from_secs(70),
    );
    assert_eq!(code, 0, "{out}\n{}", server.log_tail());
}

/// `session-timers=refuse`: an INVITE that requires `timer` gets 420 naming it; and a
/// `session-minse` under RFC 4028's 90 s stops startup naming the line.
#[test]
fn session_timer_keys_refuse_and_bound() {
    let (server, port) = pbx("strefuse", "session-timers=refuse\n");
    let invite = format!(
        "INVITE sip:600@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKst420\r\n\
         From: <sip:guest@127.0.0.1:9>;tag=a\r\nTo: <sip:600@127.0.0.1:{port}>\r\nCall-ID: st420@x\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:guest@127.0.0.1:9>\r\nRequire: timer\r\nSession-Expires: 90\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    );
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let invite = invite.replace("127.0.0.1:9", &socket.local_addr().unwrap().to_string());
    socket.send_to(invite.as_bytes(), ("127.0.0.1", port)).unwrap();
    let mut buffer = [0u8; 4096];
    let answer = loop {
        let (n, _) = socket.recv_from(&mut buffer).expect("an answer");
        let text = String::from_utf8_lossy(&buffer[..n]).into_owned();
        if !text.starts_with("SIP/2.0 100") {
            break text;
        }
    };
    assert!(answer.starts_with("SIP/2.0 420"), "{answer}");
    assert!(answer.contains("\r\nUnsupported: timer\r\n"), "{answer}");
    drop(server);

    let dir = TestDir::new("stbound");
    dir.write_starling_conf(&moddir(), "");
    dir.write("modules.conf", "[modules]\nautoload = no\nload => chan_sip.so\n");
    dir.write("sip.conf", "[general]\nbindaddr=127.0.0.1\nbindport=0\nsession-minse=30\n");
    let output = run_starling(&["-C", dir.config().to_str().unwrap(), "-f"], Duration::from_secs(20));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("sip.conf:4: session-minse '30': must be at least 90 seconds"), "{stderr}");
}

/// An INVITE that requires 100rel to an extension that rings first: the 180 is reliable
/// (Require: 100rel, RSeq), SIPp's PRACK gets 200, and the call is answered after it.
#[test]
fn a_caller_requiring_100rel_gets_a_reliable_180_and_its_prack_answered() {
    let (server, port) = pbx("st100rel", "");
    let (code, out) = run_sipp_with(port, "invite_100rel.xml", &["-s", "601", "-m", "1"]);
    assert_eq!(code, 0, "{out}\n{}", server.log_tail());
}

/// As UAC: a called party whose 183 with early media is reliable gets it PRACKed (RAck naming
/// its RSeq and our INVITE), and the call goes on to the answer and ends with BYE.
#[test]
fn a_reliable_183_from_the_called_party_is_pracked() {
    let uas = SippUas::spawn("uas_100rel.xml");
    let (server, port) = pbx_with_uas("st100reluac", "", uas.port);
    let (code, out) = run_sipp_with(port, "invite_answer.xml", &["-s", "10", "-m", "1"]);
    assert_eq!(code, 0, "caller: {out}\n{}", server.log_tail());
    let (code, out) = uas.finish();
    assert_eq!(code, 0, "called party: {out}\n{}", server.log_tail());
}
