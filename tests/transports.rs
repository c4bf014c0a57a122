//! Issue 24: chan_sip's `transport=` lists beyond their first entry (the first is what we send
//! with; the peer may register over any listed, and over no other: 403, as chan_sip's
//! check_request_transport), and `sip reload` reading the TLS certificates again (connections
//! made after it get the new one).

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use crate::tls::Pki;
use crate::util::*;

/// A REGISTER of `user` (no secret: no challenge) with its Contact on `transport` at `local`.
fn register(port: u16, local: u16, user: &str, transport: &str, n: u32) -> String {
    let upper = transport.to_ascii_uppercase();
    let param = if transport == "udp" { String::new() } else { format!(";transport={transport}") };
    format!(
        "REGISTER sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/{upper} 127.0.0.1:{local};branch=z9hG4bKtl{user}{n};rport\r\n\
         From: <sip:{user}@127.0.0.1>;tag=r{n}\r\nTo: <sip:{user}@127.0.0.1>\r\nCall-ID: transports-{user}-{n}\r\n\
         CSeq: {n} REGISTER\r\nContact: <sip:{user}@127.0.0.1:{local}{param}>\r\nExpires: 300\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

/// The status line of the answer to a REGISTER of `user` over UDP.
fn register_udp(port: u16, user: &str, n: u32) -> String {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let local = socket.local_addr().unwrap().port();
    socket.send_to(register(port, local, user, "udp", n).as_bytes(), ("127.0.0.1", port)).unwrap();
    let mut buffer = [0u8; 4096];
    let len = socket.recv_from(&mut buffer).map_or(0, |(len, _)| len);
    String::from_utf8_lossy(&buffer[..len]).lines().next().unwrap_or("").to_owned()
}

/// The status line of the answer to a REGISTER of `user` over a new TCP connection.
fn register_tcp(port: u16, user: &str, n: u32) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("Starling listens on TCP");
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let local = stream.local_addr().unwrap().port();
    stream.write_all(register(port, local, user, "tcp", n).as_bytes()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut text = String::new();
    let mut buffer = [0u8; 4096];
    while !text.contains("\r\n\r\n") && Instant::now() < deadline {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(len) => text.push_str(&String::from_utf8_lossy(&buffer[..len])),
        }
    }
    text.lines().next().unwrap_or("").to_owned()
}

/// `transport=tls,udp`: TLS is what we send with (`Prim.Transp.`), both may be registered
/// over (`Allowed.Trsp`), TCP may not: 403 and chan_sip's log lines. `transport=udp` refuses
/// TCP alike; a peer without `transport=` registers over either.
#[test]
fn a_transport_list_says_what_a_peer_may_register_over() {
    let pki = Pki::new("transportspki");
    let tls_port = free_udp_port();
    let (server, port) = sip_pbx(
        "transports",
        &["pbx_config"],
        None,
        &format!(
            "tcpenable=yes\n{}[a]\ntype=friend\nhost=dynamic\ncontext=default\ntransport=tls,udp\n\
             [c]\ntype=friend\nhost=dynamic\ncontext=default\ntransport=udp\n\
             [d]\ntype=friend\nhost=dynamic\ncontext=default\n",
            pki.general(tls_port, "server")
        ),
    );
    let peer = server.rx("sip show peer a");
    assert!(peer.contains("Prim.Transp. : TLS\n") && peer.contains("Allowed.Trsp : TLS,UDP\n"), "{peer}");
    assert!(server.rx("sip show peer d").contains("Allowed.Trsp : UDP,TCP,TLS\n"));

    assert_eq!(register_tcp(port, "a", 1), "SIP/2.0 403 Forbidden", "{}", server.log_tail());
    let log = server.log();
    assert!(log.contains("'TCP' is not a valid transport for 'a'. we only use 'TLS,UDP'! ending call."), "{log}");
    assert!(
        log.contains("failed for '127.0.0.1:") && log.contains("- Device not configured to use this transport type")
    );
    assert!(!server.rx("sip show peer a").contains("Reg. Contact : sip:"), "not registered");

    assert_eq!(register_udp(port, "a", 2), "SIP/2.0 200 OK", "{}", server.log_tail());
    let peer = server.rx("sip show peer a");
    assert!(peer.contains("Transport    : UDP\n") && peer.contains("Prim.Transp. : TLS\n"), "{peer}");

    assert_eq!(register_tcp(port, "c", 3), "SIP/2.0 403 Forbidden");
    assert_eq!(register_udp(port, "c", 4), "SIP/2.0 200 OK");
    assert_eq!(register_tcp(port, "d", 5), "SIP/2.0 200 OK", "{}", server.log_tail());
    assert!(server.rx("sip show peer d").contains("Transport    : TCP\n"));
    assert_eq!(register_udp(port, "d", 6), "SIP/2.0 200 OK");
}

/// The issuer's common name of the certificate Starling presents on `port` to a client that
/// trusts `ca` only (Python's ssl, the name 127.0.0.1 checked); `Err` with Python's words when
/// the handshake fails.
fn presented_issuer(port: u16, ca: &str) -> Result<String, String> {
    let script = "import socket, ssl, sys\n\
        ctx = ssl.create_default_context(cafile=sys.argv[2])\n\
        s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=10), server_hostname='127.0.0.1')\n\
        print(dict(x[0] for x in s.getpeercert()['issuer'])['commonName'])\n";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script, &port.to_string(), ca])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(30)).expect("python3 ends in time");
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if status.success() {
        Ok(text)
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// `sip reload` reads the TLS certificate files again: after sip.conf names a certificate of
/// another CA, new connections get it (and a client trusting the old CA only refuses it); a
/// connection made before the reload goes on. A certificate that cannot be read refuses the
/// reload at its line and the one in use stays.
#[test]
fn sip_reload_reads_the_tls_certificates_again() {
    let pki = Pki::new("tlsreloadpki");
    pki.rogue_ca("rogue");
    pki.issue("renewed", "rogue", "IP:127.0.0.1");
    let tls_port = free_udp_port();
    let (server, _port) = sip_pbx("tlsreload", &["pbx_config"], None, &pki.general(tls_port, "server"));
    assert_eq!(presented_issuer(tls_port, &pki.file("ca.pem")), Ok("Starling test CA".to_owned()));
    // A connection open across the reload (plain TCP under TLS: the handshake is made by a
    // client that stays connected).
    let mut keeper = std::process::Command::new("openssl")
        .args(["s_client", "-quiet", "-connect", &format!("127.0.0.1:{tls_port}"), "-CAfile", &pki.file("ca.pem")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let shown = eventually(Duration::from_secs(10), || server.rx("sip show tcp").contains("TLS").then_some(()));
    assert!(shown.is_some(), "{}", server.rx("sip show tcp"));

    let conf = server.dir.etc().join("sip.conf");
    let written = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(&conf, written.replace(&pki.file("server."), &pki.file("renewed."))).unwrap();
    let out = server.rx("sip reload");
    assert!(!out.contains("rror"), "{out}\n{}", server.log_tail());
    assert!(server.log().contains("SIP TLS: certificates read again from sip.conf"), "{}", server.log_tail());
    assert_eq!(presented_issuer(tls_port, &pki.file("rogue.pem")), Ok("Rogue CA".to_owned()));
    let refused = presented_issuer(tls_port, &pki.file("ca.pem"));
    assert!(refused.as_ref().is_err_and(|e| e.contains("CERTIFICATE_VERIFY_FAILED")), "{refused:?}");

    // The connection made before is still there, and still answered: an OPTIONS on it.
    let options = format!(
        "OPTIONS sip:127.0.0.1:{tls_port} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:9;branch=z9hG4bKkeep1\r\n\
         From: <sip:probe@127.0.0.1>;tag=k1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: keep-1\r\nCSeq: 1 OPTIONS\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    keeper.stdin.as_mut().unwrap().write_all(options.as_bytes()).unwrap();
    let mut stdout = keeper.stdout.take().unwrap();
    let (sender, answer) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 2048];
        let len = stdout.read(&mut buffer).unwrap_or(0);
        let _ = sender.send(String::from_utf8_lossy(&buffer[..len]).into_owned());
    });
    let answer = answer.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
    let _ = keeper.kill();
    let _ = keeper.wait();
    assert!(answer.starts_with("SIP/2.0 200 OK"), "the connection made before the reload: {answer:?}");

    // A file that cannot be read: the reload is refused at its line, the certificate stays.
    std::fs::write(&conf, written.replace(&pki.file("server.pem"), "/nonexistent/sip.pem")).unwrap();
    let out = server.rx("sip reload");
    assert!(out.contains("tlscertfile '/nonexistent/sip.pem': cannot read it"), "{out}");
    assert_eq!(presented_issuer(tls_port, &pki.file("rogue.pem")), Ok("Rogue CA".to_owned()));
}
