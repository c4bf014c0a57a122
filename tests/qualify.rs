//! Peer poking (qualify): OK, LAGGED, UNREACHABLE in `sip show peers`, chan_sip's log lines,
//! and Dial refusing an unreachable peer without sending it anything.

use std::net::UdpSocket;
use std::time::Duration;

use crate::util::*;

fn server(name: &str, peers: &str) -> (Server, u16) {
    sip_pbx(
        name,
        &["pbx_config", "app_dial"],
        Some("[default]\nexten => 30,1,Dial(SIP/dead,2)\n same => n,Answer()\n same => n,NoOp(DIALSTATUS=${DIALSTATUS})\n same => n,Hangup()\n"),
        &format!("allowguest=yes\ncontext=default\n{peers}"),
    )
}

/// Answers every OPTIONS that reaches `socket` with 200, as a phone would.
fn answer_options(socket: &UdpSocket) -> usize {
    let mut buffer = [0u8; 4096];
    let mut answered = 0;
    while let Ok((len, from)) = socket.recv_from(&mut buffer) {
        let text = String::from_utf8_lossy(&buffer[..len]).into_owned();
        if !text.starts_with("OPTIONS ") {
            continue;
        }
        let mut response = String::from("SIP/2.0 200 OK\r\n");
        for line in text.lines() {
            let lower = line.to_ascii_lowercase();
            if ["via:", "from:", "call-id:", "cseq:"].iter().any(|h| lower.starts_with(h)) {
                response.push_str(line);
                response.push_str("\r\n");
            } else if lower.starts_with("to:") {
                response.push_str(line);
                response.push_str(";tag=answered\r\n");
            }
        }
        response.push_str("Content-Length: 0\r\n\r\n");
        socket.send_to(response.as_bytes(), from).unwrap();
        answered += 1;
    }
    answered
}

/// A peer that answers 50 ms late with `qualify=30` is LAGGED.
#[test]
fn a_slow_peer_is_lagged() {
    let slow = SippUas::spawn_for("uas_options_slow.xml", 5);
    let (server, _) = server(
        "qualifylag",
        &format!("[slow]\ntype=peer\nhost=127.0.0.1\nport={}\nqualify=30\nqualifyfreq=1\n", slow.port),
    );
    let lagged = eventually(Duration::from_secs(5), || {
        let peers = server.rx("sip show peers");
        peers.contains("LAGGED (").then_some(peers)
    });
    assert!(lagged.is_some(), "{}\n{}", server.rx("sip show peers"), server.log_tail());
    assert!(server.log().contains("Peer 'SIP/slow' is now Lagged. ("), "{}", server.log_tail());
    assert!(server.rx("sip show peers").contains("[Monitored: 1 online, 0 offline"));
}

/// A peer that never answers becomes UNREACHABLE (2 × qualify ms), and Dial gives CHANUNAVAIL
/// without sending it an INVITE; once it answers (`sip qualify peer` pokes at once) it is OK.
#[test]
fn an_unreachable_peer_is_chanunavail_then_ok_when_it_answers() {
    let dead = UdpSocket::bind("127.0.0.1:0").unwrap();
    dead.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    let (server, port) = server(
        "qualifydead",
        &format!("[dead]\ntype=peer\nhost=127.0.0.1\nport={dead_port}\nqualify=100\nqualifyfreq=1\n"),
    );
    let unreachable = eventually(Duration::from_secs(5), || {
        server.log().contains("Peer 'SIP/dead' is now UNREACHABLE!  Last qualify: ").then_some(())
    });
    assert!(unreachable.is_some(), "{}", server.log_tail());
    assert!(server.rx("sip show peers").contains("UNREACHABLE"), "{}", server.rx("sip show peers"));
    // Drain the OPTIONS received so far, then call: nothing but OPTIONS may arrive.
    let mut buffer = [0u8; 4096];
    while dead.recv_from(&mut buffer).is_ok() {}
    let (code, out) = run_sipp(port, "invite_pbx_hangs_up.xml", "30", "", "", 1);
    assert_eq!(code, 0, "{out}\n{}", server.log_tail());
    assert!(server.log().contains("DIALSTATUS=CHANUNAVAIL"), "{}", server.log_tail());
    while let Ok((len, _)) = dead.recv_from(&mut buffer) {
        assert!(!buffer[..len].starts_with(b"INVITE"), "no INVITE to an unreachable peer");
    }
    // It comes back: answer the poke `sip qualify peer` sends at once.
    assert_eq!(server.rx("sip qualify peer dead"), "");
    let ok = eventually(Duration::from_secs(5), || {
        answer_options(&dead);
        let peers = server.rx("sip show peers");
        peers.contains("OK (").then_some(peers)
    });
    assert!(ok.is_some(), "{}\n{}", server.rx("sip show peers"), server.log_tail());
    assert!(server.log().contains("Peer 'SIP/dead' is now Reachable. ("), "{}", server.log_tail());
}

/// A peer whose `host=` is a name without a port (`srvlookup` on by default): its pokes go to
/// the SRV target (dnsmasq's `_sip._udp.far.test`, a port other than 5060, on 127.0.0.2) and it
/// is OK there; a call to it goes there too.
#[test]
fn a_peer_named_by_srv_is_poked_and_called_at_the_srv_target() {
    let far = UdpSocket::bind("127.0.0.2:0").unwrap();
    far.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let port = far.local_addr().unwrap().port();
    let dns = Dnsmasq::start(&[
        format!("--srv-host=_sip._udp.far.test,box.far.test,{port},10,0"),
        "--host-record=box.far.test,127.0.0.2".into(),
        "--host-record=far.test,127.0.0.9".into(),
    ]);
    let (server, _) = sip_pbx_with_options("qualifysrv", &dns.nameserver_option(), &[], None, |_| {
        "[far]\ntype=peer\nhost=far.test\nqualify=yes\nqualifyfreq=1\n".to_owned()
    });
    let ok = eventually(Duration::from_secs(8), || {
        answer_options(&far);
        let peers = server.rx("sip show peers");
        peers.contains(" OK (").then_some(peers)
    });
    assert!(ok.is_some(), "{}\n{}\n{}", server.rx("sip show peers"), server.log_tail(), dns.log());
    let _ = server.rx("channel originate SIP/far/100 application Wait 1");
    let mut buffer = [0u8; 4096];
    let invite = eventually(Duration::from_secs(5), || {
        let (len, _) = far.recv_from(&mut buffer).ok()?;
        let text = String::from_utf8_lossy(&buffer[..len]).into_owned();
        text.starts_with("INVITE ").then_some(text)
    });
    let invite = invite.unwrap_or_else(|| panic!("the INVITE reached the SRV target: {}", server.log_tail()));
    assert!(invite.starts_with("INVITE sip:100@far.test SIP/2.0\r\n"), "{invite}");
}
