//! Issue 24: the manager over TLS (`tlsenable`, `tlsbindaddr`, `tlscertfile`, `tlsprivatekey` in
//! manager.conf): a real AMI client (panoramisk, Python's ssl) logs in on the TLS port with a
//! certificate the test made (openssl), beside the plain listener; a plain client on the TLS
//! port is refused without harm; a certificate that cannot be used stops start-up at its line.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::manager::{ami_pbx_with, free_tcp_port, get, panoramisk_python, Ami};
use crate::tls::Pki;
use crate::util::*;

/// manager.conf's TLS lines for `port`, presenting the test's server certificate.
fn tls_lines(pki: &Pki, port: u16) -> String {
    format!(
        "tlsenable=yes\ntlsbindaddr=127.0.0.1:{port}\ntlscertfile={}\ntlsprivatekey={}\n",
        pki.file("server.pem"),
        pki.file("server.key")
    )
}

/// Runs tests/ami/tls_ping.py against the TLS port; its output (stdout and stderr).
fn panoramisk_over_tls(server: &Server, tls_port: u16, ca: &str) -> String {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ami/tls_ping.py");
    let mut child = std::process::Command::new(panoramisk_python())
        .arg(script)
        .args([tls_port.to_string().as_str(), "admin", "s3cret", ca])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(60)).unwrap_or_else(|| {
        let _ = child.kill();
        child.wait().unwrap()
    });
    let output = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(status.success(), "panoramisk over TLS: {text}\n{}", server.log_tail());
    text
}

/// Acceptance: panoramisk logs in over TLS (verifying the server's certificate against the
/// test's CA), Ping and CoreSettings are answered; a plain TCP client on the TLS port gets no
/// banner and is closed, the server logs why and keeps serving both listeners.
#[test]
fn panoramisk_logs_in_over_tls_beside_the_plain_listener() {
    let pki = Pki::new("amitlspki");
    let tls_port = free_tcp_port();
    let (server, _sip, port) = ami_pbx_with("amitls", 1, &tls_lines(&pki, tls_port));
    assert!(
        server.log().contains(&format!("Manager interface listening on TLS 127.0.0.1:{tls_port}")),
        "{}",
        server.log_tail()
    );

    let text = panoramisk_over_tls(&server, tls_port, &pki.file("ca.pem"));
    assert!(text.contains("ping: Success Pong"), "{text}");
    assert!(text.contains("coresettings: Success 9.0.0"), "{text}");

    // A plain client on the TLS port: what it writes is not a ClientHello, so the handshake
    // fails; it never sees the banner and the connection ends.
    let mut plain = TcpStream::connect(("127.0.0.1", tls_port)).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    plain.write_all(b"Action: Login\r\nUsername: admin\r\nSecret: s3cret\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let end = plain.read_to_end(&mut got);
    assert!(
        end.is_ok() || end.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "closed, not timed out: {end:?}"
    );
    let got = String::from_utf8_lossy(&got);
    assert!(!got.contains("Asterisk Call Manager") && !got.contains("Response"), "{got:?}");
    let refused = eventually(Duration::from_secs(5), || {
        server.log().contains("Manager: TLS handshake with 127.0.0.1:").then_some(())
    });
    assert!(refused.is_some(), "the refusal is logged\n{}", server.log_tail());

    // Both listeners still serve.
    let text = panoramisk_over_tls(&server, tls_port, &pki.file("ca.pem"));
    assert!(text.contains("ping: Success Pong"), "{text}");
    let mut ami = Ami::login(port, "admin", "s3cret");
    ami.send(&[("Action", "Ping"), ("ActionID", "p1")]);
    let reply = ami.until("ActionID", "p1", Duration::from_secs(10));
    assert_eq!(get(&reply, "Response"), Some("Success"), "{reply:?}");
    // The TLS sessions are sessions like the others.
    assert!(server.rx("manager show connected").contains("1 users connected."));
}

/// `module reload res_manager` reads the certificate files again: a connection after it is
/// served with the new certificate (here: one from another CA, which the client then refuses),
/// a connection before it keeps its session.
#[test]
fn a_manager_reload_presents_the_new_certificate_to_new_connections() {
    let pki = Pki::new("amitlsreload");
    pki.rogue_ca("rogue");
    pki.issue("other", "rogue", "IP:127.0.0.1");
    let tls_port = free_tcp_port();
    let (server, _sip, port) = ami_pbx_with("amitlsreload", 1, &tls_lines(&pki, tls_port));
    let text = panoramisk_over_tls(&server, tls_port, &pki.file("ca.pem"));
    assert!(text.contains("ping: Success Pong"), "{text}");

    let conf = server.dir.etc().join("manager.conf");
    let written = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(&conf, written.replace(&pki.file("server."), &pki.file("other."))).unwrap();
    let out = server.rx("module reload res_manager");
    assert!(!out.contains("rror"), "{out}\n{}", server.log_tail());
    let text = panoramisk_over_tls(&server, tls_port, &pki.file("rogue.pem"));
    assert!(text.contains("ping: Success Pong"), "the new certificate (the rogue CA's) is presented: {text}");

    // A certificate that cannot be read: the reload is refused at its line, the old one stays.
    std::fs::write(&conf, written.replace(&pki.file("server.pem"), "/nonexistent/ami.pem")).unwrap();
    let out = server.rx("module reload res_manager");
    assert!(out.contains("tlscertfile '/nonexistent/ami.pem': cannot read it"), "{out}\n{}", server.log_tail());
    let text = panoramisk_over_tls(&server, tls_port, &pki.file("rogue.pem"));
    assert!(text.contains("ping: Success Pong"), "{text}");
    drop(Ami::login(port, "admin", "s3cret"));
}

/// A certificate that cannot be used stops start-up with exit code 1 and
/// `manager.conf:LINE: what is wrong`: a file that is not there, a key of another certificate.
#[test]
fn a_bad_manager_certificate_stops_startup_at_its_line() {
    let pki = Pki::new("amitlsbad");
    pki.issue("other", "ca", "IP:127.0.0.1");
    for (lines, expected) in [
        (
            "tlscertfile=/nonexistent/ami.pem\n".to_owned(),
            "manager.conf:6: tlscertfile '/nonexistent/ami.pem': cannot read it".to_owned(),
        ),
        (
            format!("tlscertfile={}\ntlsprivatekey={}\n", pki.file("server.pem"), pki.file("other.key")),
            format!("manager.conf:7: tlsprivatekey '{}': does not go with tlscertfile", pki.file("other.key")),
        ),
    ] {
        let dir = TestDir::new("amitlsbadconf");
        dir.write_starling_conf(&moddir(), "");
        dir.write("modules.conf", "[modules]\nautoload = no\nload => res_manager.so\n");
        dir.write(
            "manager.conf",
            &format!(
                "[general]\nenabled=yes\nport={}\nbindaddr=127.0.0.1\ntlsenable=yes\n{lines}\n[admin]\nsecret=s3cret\n",
                free_tcp_port()
            ),
        );
        let out = run_starling(&["-C", dir.config().to_str().unwrap(), "-f"], Duration::from_secs(20));
        let err = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(&expected), "{expected}\n{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
