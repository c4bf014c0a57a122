//! Issue 24: SIP over TLS (`tlsenable`, `transport=tls`, `tls://` lines) with real peers:
//! baresip registering and calling over TLS, a second baresip called over the connection it
//! registered on, client verification (`tlsverifyclient`), server verification
//! (`tlsdontverifyserver`) against a second Starling, and a `tls://` registration to Kamailio's
//! tls module. The certificates are made by each test with `openssl` (a CA, a server
//! certificate for 127.0.0.1, client certificates).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::registry::Kamailio;
use crate::util::*;

/// A test's certificates: a CA, and certificates it (or a rogue CA) signed, as PEM files.
pub(crate) struct Pki {
    pub(crate) dir: TestDir,
}

impl Pki {
    /// The CA (`ca.pem`) and a server certificate for 127.0.0.1 (`server.pem`/`server.key`,
    /// subjectAltName IP:127.0.0.1).
    pub(crate) fn new(name: &str) -> Pki {
        let pki = Pki { dir: TestDir::new(name) };
        pki.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=Starling test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ]);
        pki.issue("server", "ca", "IP:127.0.0.1");
        pki
    }

    pub(crate) fn path(&self, file: &str) -> PathBuf {
        self.dir.path.join(file)
    }

    /// `path` as sip.conf and baresip's config take it.
    pub(crate) fn file(&self, file: &str) -> String {
        self.path(file).display().to_string()
    }

    pub(crate) fn openssl(&self, args: &[&str]) {
        let out = Command::new("timeout")
            .arg("30")
            .arg("openssl")
            .args(args)
            .current_dir(&self.dir.path)
            .output()
            .expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A self-signed CA of its own (`<name>.pem`/`<name>.key`).
    pub(crate) fn rogue_ca(&self, name: &str) {
        let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
        self.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=Rogue CA",
            "-keyout",
            &key,
            "-out",
            &pem,
        ]);
    }

    /// `<name>.pem`/`<name>.key` signed by `ca` for `san`, and `<name>-bundle.pem` (both, as
    /// baresip's `sip_certificate` wants them).
    pub(crate) fn issue(&self, name: &str, ca: &str, san: &str) {
        let (key, csr, pem) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &key,
            "-out",
            &csr,
        ]);
        let ext = format!("{name}.ext");
        std::fs::write(
            self.path(&ext),
            format!(
                "subjectAltName={san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
                 extendedKeyUsage=serverAuth,clientAuth\n"
            ),
        )
        .unwrap();
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &pem,
        ]);
        let bundle =
            std::fs::read_to_string(self.path(&pem)).unwrap() + &std::fs::read_to_string(self.path(&key)).unwrap();
        std::fs::write(self.path(&format!("{name}-bundle.pem")), bundle).unwrap();
    }

    /// sip.conf's `[general]` lines for TLS on `port`, presenting `cert` (`server`...).
    pub(crate) fn general(&self, port: u16, cert: &str) -> String {
        format!(
            "tlsenable=yes\ntlsbindaddr=127.0.0.1:{port}\ntlscertfile={}\ntlsprivatekey={}\ntlscafile={}\n",
            self.file(&format!("{cert}.pem")),
            self.file(&format!("{cert}.key")),
            self.file("ca.pem"),
        )
    }
}

const EXTENSIONS: &str = "[default]\n\
exten => 600,1,Answer()\n same => n,Echo()\n same => n,Hangup()\n\
exten => 700,1,Dial(SIP/b,10)\n same => n,Hangup()\n";

/// The peers a and b, phones registering over TLS (also allowed over UDP).
const PHONES: &str = "[a]\ntype=friend\nhost=dynamic\nsecret=pw\ncontext=default\ntransport=tls,udp\n\
[b]\ntype=friend\nhost=dynamic\nsecret=pw\ncontext=default\ntransport=tls,udp\n";

/// Waits until `sip show peer <name>` shows a contact over TLS; the text, or `None`.
pub(crate) fn registered_over_tls(server: &Server, name: &str) -> Option<String> {
    eventually(Duration::from_secs(10), || {
        let peer = server.rx(&format!("sip show peer {name}"));
        (peer.contains("transport=tls") && peer.contains("Transport    : TLS")).then_some(peer)
    })
}

/// baresip's config for TLS: it trusts the test's CA and (when given) presents `cert`.
pub(crate) fn baresip_tls(pki: &Pki, cert: Option<&str>) -> String {
    let mut config = format!("sip_cafile {}\n", pki.file("ca.pem"));
    if let Some(cert) = cert {
        config += &format!("sip_certificate {}\n", pki.file(&format!("{cert}-bundle.pem")));
    }
    config
}

/// Acceptance 1: baresip registers over TLS (`;transport=tls`), `sip show peer` and `sip show
/// tcp` show it so; a call from baresip over TLS to Echo() returns its tone; a second baresip,
/// registered over TLS, is called by `Dial(SIP/b)` over the connection it registered on (no
/// connection opened by us: nothing `Client` in `sip show tcp`), and each hears the other.
#[test]
fn baresip_registers_and_calls_over_tls_and_is_called_over_its_connection() {
    let pki = Pki::new("tlspki1");
    let tls_port = free_udp_port();
    let (server, _) = sip_pbx(
        "tlsbaresip",
        &["pbx_config", "app_dial", "app_echo"],
        Some(EXTENSIONS),
        &format!("{}{PHONES}", pki.general(tls_port, "server")),
    );
    assert!(server.log().contains(&format!("SIP Listening on TLS 127.0.0.1:{tls_port}")), "{}", server.log_tail());
    let account = |user: &str, regint: u32| {
        format!("<sip:{user}@127.0.0.1:{tls_port};transport=tls>;auth_pass=pw;answermode=auto;regint={regint}")
    };
    let config = baresip_tls(&pki, None);

    // Registration over TLS, and what the CLI shows of it.
    let phone_b = Baresip::spawn_with("tlsb", &account("b", 600), "g711.so", 8000, 880, &[], 30, &config);
    let peer = registered_over_tls(&server, "b");
    assert!(
        peer.is_some(),
        "b registered over TLS: {}\n{}\n{}",
        server.rx("sip show peer b"),
        phone_b.log(),
        server.log_tail()
    );
    let tcp = server.rx("sip show tcp");
    let header = tcp.lines().next().unwrap_or("");
    assert!(header.contains("Address") && header.contains("Transport") && header.contains("Type"), "{tcp}");
    assert!(tcp.lines().any(|l| l.contains("127.0.0.1:") && l.contains("TLS") && l.contains("Server")), "{tcp}");
    assert!(!tcp.contains("Client"), "{tcp}");
    let peers = server.rx("sip show peers");
    assert!(peers.lines().any(|l| l.starts_with("b/b ") && l.contains("127.0.0.1")), "{peers}");

    // baresip over TLS to Echo(): its tone comes back.
    let echo = Baresip::spawn_with(
        "tlsecho",
        &account("a", 0),
        "g711.so",
        8000,
        440,
        &["-e", &format!("/dial sip:600@127.0.0.1:{tls_port};transport=tls")],
        6,
        &config,
    );
    let (samples, peak, log) = echo.heard();
    assert!(samples >= 16_000, "at least 2 s of audio came back: {samples} samples\n{log}\n{}", server.log_tail());
    assert!((435..=445).contains(&peak), "the echo is the 440 Hz tone: peak at {peak} Hz\n{log}");
    assert!(server.log().contains("Accepting call SIP/a-"), "{}", server.log_tail());

    // a (over TLS) calls 700: Dial(SIP/b) goes over b's registered TLS connection.
    let caller = Baresip::spawn_with(
        "tlsa",
        &account("a", 0),
        "g711.so",
        8000,
        440,
        &["-e", &format!("/dial sip:700@127.0.0.1:{tls_port};transport=tls")],
        8,
        &config,
    );
    let (samples, peak, log) = caller.heard();
    assert!(samples >= 16_000, "a heard b: {samples} samples\n{log}\n{}\n{}", phone_b.log(), server.log_tail());
    assert!((875..=885).contains(&peak), "a hears b's 880 Hz: peak at {peak} Hz\n{log}");
    let tcp = server.rx("sip show tcp");
    assert!(!tcp.contains("Client"), "b was called over its own connection, none opened to it: {tcp}");
    let (samples, peak, log) = phone_b.heard();
    assert!(samples >= 16_000, "b heard a: {samples} samples\n{log}");
    assert!((435..=445).contains(&peak), "b hears a's 440 Hz: peak at {peak} Hz\n{log}");
}

/// Acceptance 2: with `tlsverifyclient=yes` a client whose certificate the CA did not sign
/// fails the handshake and registers nothing; one with a certificate from the CA registers.
#[test]
fn tlsverifyclient_refuses_a_client_the_ca_did_not_sign() {
    let pki = Pki::new("tlspki2");
    pki.rogue_ca("rogue");
    pki.issue("intruder", "rogue", "IP:127.0.0.1");
    pki.issue("phone", "ca", "IP:127.0.0.1");
    let tls_port = free_udp_port();
    let (server, _) = sip_pbx(
        "tlsverifyclient",
        &["pbx_config"],
        Some(EXTENSIONS),
        &format!("{}tlsverifyclient=yes\n{PHONES}", pki.general(tls_port, "server")),
    );
    let account = |user: &str| format!("<sip:{user}@127.0.0.1:{tls_port};transport=tls>;auth_pass=pw;regint=600");
    let intruder = Baresip::spawn_with(
        "tlsrogue",
        &account("a"),
        "g711.so",
        8000,
        440,
        &[],
        20,
        &baresip_tls(&pki, Some("intruder")),
    );
    let refused = eventually(Duration::from_secs(10), || {
        server.log().contains("SIP TLS handshake from 127.0.0.1:").then_some(())
    });
    assert!(refused.is_some(), "the handshake failed: {}\n{}", server.log_tail(), intruder.log());
    // A certificate from the CA (and a client without one would be refused alike) registers.
    let phone =
        Baresip::spawn_with("tlsgood", &account("b"), "g711.so", 8000, 440, &[], 20, &baresip_tls(&pki, Some("phone")));
    assert!(registered_over_tls(&server, "b").is_some(), "{}\n{}", server.log_tail(), phone.log());
    let a = server.rx("sip show peer a");
    assert!(!a.contains("transport=tls") && a.contains("Addr->IP     : (null)"), "nothing registered: {a}");
    drop(intruder);
    // Without any certificate: refused too.
    let bare = Baresip::spawn_with("tlsbare", &account("a"), "g711.so", 8000, 440, &[], 20, &baresip_tls(&pki, None));
    let handshakes = |log: &str| log.matches("SIP TLS handshake from 127.0.0.1:").count();
    let before = handshakes(&server.log());
    let again = eventually(Duration::from_secs(10), || (handshakes(&server.log()) > before).then_some(()));
    assert!(again.is_some(), "{}\n{}", server.log_tail(), bare.log());
    assert!(!server.rx("sip show peer a").contains("transport=tls"), "nothing registered");
}

/// Acceptance 3: a peer with `transport=tls` whose certificate names another address is not
/// reached when `tlsdontverifyserver=no` (the handshake fails, qualify never sees it), and is
/// reached (qualify OK, over a TLS connection we opened) with `tlsdontverifyserver=yes`. The
/// peer is a second Starling presenting a certificate for 127.0.0.2.
#[test]
fn tlsdontverifyserver_decides_whether_a_mismatched_server_is_reached() {
    let pki = Pki::new("tlspki3");
    pki.issue("elsewhere", "ca", "IP:127.0.0.2");
    let far_tls = free_udp_port();
    let (far, _) = sip_pbx("tlsfar", &["pbx_config"], Some(EXTENSIONS), &pki.general(far_tls, "elsewhere"));
    let near = |name: &str, dontverify: &str| {
        let tls_port = free_udp_port();
        sip_pbx(
            name,
            &["pbx_config"],
            Some(EXTENSIONS),
            &format!(
                "{}tlsdontverifyserver={dontverify}\n\
                 [far]\ntype=peer\nhost=127.0.0.1\nport={far_tls}\ntransport=tls\nqualify=yes\nqualifyfreq=2\n",
                pki.general(tls_port, "server")
            ),
        )
        .0
    };

    let strict = near("tlsstrict", "no");
    let failed = eventually(Duration::from_secs(10), || {
        let log = strict.log();
        log.contains(&format!("SIP TLS handshake to 127.0.0.1:{far_tls} failed")).then_some(log)
    });
    assert!(failed.is_some(), "{}\n{}", strict.log_tail(), far.log_tail());
    assert!(!strict.rx("sip show peers").contains("OK ("), "{}", strict.rx("sip show peers"));
    assert!(!strict.rx("sip show tcp").contains("Client"), "no connection kept");
    drop(strict);

    let lax = near("tlslax", "yes");
    let reached = eventually(Duration::from_secs(10), || {
        let peers = lax.rx("sip show peers");
        peers.contains("OK (").then_some(peers)
    });
    assert!(reached.is_some(), "{}\n{}\n{}", lax.rx("sip show peers"), lax.log_tail(), far.log_tail());
    let tcp = lax.rx("sip show tcp");
    assert!(
        tcp.lines().any(|l| l.contains(&format!("127.0.0.1:{far_tls}")) && l.contains("TLS") && l.contains("Client")),
        "{tcp}"
    );
    let far_tcp = far.rx("sip show tcp");
    assert!(far_tcp.lines().any(|l| l.contains("TLS") && l.contains("Server")), "{far_tcp}");
}

/// Acceptance 4: `register => tls://user:pw@127.0.0.1:<port>` against Kamailio's tls module
/// (a certificate for 127.0.0.1 from the test's CA, verified): Registered, over TLS.
#[test]
fn a_tls_register_line_registers_to_kamailio() {
    let pki = Pki::new("tlspki4");
    let kamailio_tls = free_udp_port();
    let kamailio = Kamailio::start_tls("s3cret", kamailio_tls, &pki.path("server.pem"), &pki.path("server.key"));
    let tls_port = free_udp_port();
    let (server, _) = sip_pbx(
        "tlskam",
        &["pbx_config"],
        None,
        &format!("{}register => tls://alice:s3cret@127.0.0.1:{kamailio_tls}/600~60\n", pki.general(tls_port, "server")),
    );
    let registry = eventually(Duration::from_secs(10), || {
        let registry = server.rx("sip show registry");
        registry.contains("Registered").then_some(registry)
    });
    assert!(registry.is_some(), "{}\n{}\n{}", server.rx("sip show registry"), server.log_tail(), kamailio.log());
    let detail = server.rx("sip show registry detail");
    assert!(detail.contains(&format!("Sent to        : TLS 127.0.0.1:{kamailio_tls}")), "{detail}");
    let tcp = server.rx("sip show tcp");
    assert!(
        tcp.lines()
            .any(|l| l.contains(&format!("127.0.0.1:{kamailio_tls}")) && l.contains("TLS") && l.contains("Client")),
        "{tcp}"
    );
}

/// Acceptance 5: `tlsenable=yes` with a certificate file that is not there stops start-up
/// with exit code 1 and `sip.conf:LINE: ...`, as other config errors do.
#[test]
fn a_missing_tls_certificate_stops_startup_at_its_line() {
    let dir = TestDir::new("tlsbadconf");
    dir.write_starling_conf(&moddir(), "");
    dir.write("modules.conf", "[modules]\nautoload = no\nload => chan_sip.so\n");
    let port = free_udp_port();
    dir.write(
        "sip.conf",
        &format!(
            "[general]\nbindaddr=127.0.0.1\nbindport={port}\ntlsenable=yes\ntlscertfile=/nonexistent/starling.pem\n"
        ),
    );
    let out = run_starling(&["-C", dir.config().to_str().unwrap(), "-f"], Duration::from_secs(20));
    let err = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("sip.conf:5: tlscertfile '/nonexistent/starling.pem': cannot read it"), "{err}");
}

/// The TCP transport's limits hold for TLS: past `tcpauthlimit` unauthenticated connections a
/// new one is closed at once, and one that does not even finish its handshake is closed after
/// `tcpauthtimeout`.
#[test]
fn tcpauthtimeout_and_tcpauthlimit_hold_for_tls() {
    use std::io::Read;
    let pki = Pki::new("tlspki6");
    let tls_port = free_udp_port();
    let (server, _) = sip_pbx(
        "tlsauthlimits",
        &["pbx_config"],
        None,
        &format!("{}tcpauthtimeout=4\ntcpauthlimit=1\n", pki.general(tls_port, "server")),
    );
    let connect = || {
        let stream = std::net::TcpStream::connect(("127.0.0.1", tls_port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        stream
    };
    let ended = |mut stream: &std::net::TcpStream| {
        let mut buffer = [0u8; 512];
        matches!(stream.read(&mut buffer), Ok(0) | Err(_))
    };
    let silent = connect();
    let port = silent.local_addr().unwrap().port();
    let listed = eventually(Duration::from_secs(5), || {
        let tcp = server.rx("sip show tcp");
        tcp.contains(&format!("127.0.0.1:{port}")).then_some(tcp)
    });
    assert!(listed.is_some(), "{}", server.rx("sip show tcp"));
    let refused = connect();
    assert!(ended(&refused), "past tcpauthlimit: closed at once");
    let tcp = server.rx("sip show tcp");
    assert!(tcp.contains(&format!("127.0.0.1:{port}")) && tcp.lines().count() == 2, "only the first: {tcp}");
    assert!(ended(&silent), "closed after tcpauthtimeout without a handshake");
    let logged = eventually(Duration::from_secs(5), || {
        server.log().contains("no handshake in time (tcpauthtimeout)").then_some(())
    });
    assert!(logged.is_some(), "{}", server.log_tail());
}

/// A phone whose contact is a `sips:` URI (`openssl s_client` speaking SIP by hand: Debian's
/// baresip 1.0 cannot register a `sips:` account) registers over TLS and is called over its
/// connection: the INVITE has the `sips:` Request-URI and a `SIP/2.0/TLS` Via, and our Contact
/// says `;transport=tls` at our TLS port.
#[test]
fn a_sips_contact_is_called_over_its_tls_connection() {
    use std::io::{BufRead, Write};
    let pki = Pki::new("tlspki7");
    let tls_port = free_udp_port();
    let (server, _) = sip_pbx(
        "tlssips",
        &["pbx_config", "app_echo"],
        Some(EXTENSIONS),
        &format!("{}[c]\ntype=friend\nhost=dynamic\ncontext=default\n", pki.general(tls_port, "server")),
    );
    // Killed by its pid when the test ends, whichever way (a guard), which ends the reader.
    struct Client(std::process::Child);
    impl Drop for Client {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut client = Command::new("openssl")
        .args(["s_client", "-quiet", "-ign_eof", "-verify_return_error", "-CAfile"])
        .arg(pki.path("ca.pem"))
        .args(["-connect", &format!("127.0.0.1:{tls_port}")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(Client)
        .expect("openssl s_client");
    let read = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let read = read.clone();
        let stdout = client.0.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut read = read.lock().unwrap();
                read.push_str(&line);
                read.push('\n');
            }
        })
    };
    let register = "REGISTER sips:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5099;branch=z9hG4bKsips1;rport\r\n\
                    Max-Forwards: 70\r\nFrom: <sips:c@127.0.0.1>;tag=s1\r\nTo: <sips:c@127.0.0.1>\r\n\
                    Call-ID: sips-reg-1\r\nCSeq: 1 REGISTER\r\nContact: <sips:c@127.0.0.1:5099>\r\n\
                    Expires: 600\r\nContent-Length: 0\r\n\r\n";
    client.0.stdin.as_mut().unwrap().write_all(register.as_bytes()).unwrap();
    let seen = |text: &str| eventually(Duration::from_secs(10), || read.lock().unwrap().contains(text).then_some(()));
    let registered = seen("SIP/2.0 200 OK");
    assert!(registered.is_some(), "{}\n{}", read.lock().unwrap(), server.log_tail());
    let peer = server.rx("sip show peer c");
    assert!(peer.contains("Reg. Contact : sips:c@127.0.0.1:5099") && peer.contains("Transport    : TLS"), "{peer}");
    let _ = server.try_rx("channel originate SIP/c application Echo");
    let invited = seen("INVITE sips:c@127.0.0.1:5099 SIP/2.0");
    assert!(invited.is_some(), "{}\n{}", read.lock().unwrap(), server.log_tail());
    let text = read.lock().unwrap().clone();
    let invite = &text[text.find("INVITE sips:").unwrap()..];
    assert!(invite.contains("Via: SIP/2.0/TLS 127.0.0.1:"), "{invite}");
    assert!(invite.contains(&format!("@127.0.0.1:{tls_port};transport=tls>")), "our Contact: {invite}");
    assert!(!server.rx("sip show tcp").contains("Client"), "over its own connection");
    drop(client);
    let _ = reader.join();
}

/// A TLS peer written as a host name is verified against that name (RFC 5922), not against the
/// address it resolves to: a server whose certificate names `far.test` (and not 127.0.0.1) is
/// reached with `tlsdontverifyserver=no` when the peer is `host=far.test` (dnsmasq answers).
#[test]
fn a_tls_peer_named_by_dns_is_verified_against_its_name() {
    let pki = Pki::new("tlspki8");
    pki.issue("farname", "ca", "DNS:far.test");
    let dns = Dnsmasq::start(&["--host-record=far.test,127.0.0.1".to_owned()]);
    let far_tls = free_udp_port();
    let (far, _) = sip_pbx("tlsfarname", &["pbx_config"], Some(EXTENSIONS), &pki.general(far_tls, "farname"));
    let tls_port = free_udp_port();
    let (near, _) =
        sip_pbx_with_options("tlsnearname", &dns.nameserver_option(), &["pbx_config"], Some(EXTENSIONS), |_| {
            format!(
                "{}tlsdontverifyserver=no\n\
             [far]\ntype=peer\nhost=far.test\nport={far_tls}\ntransport=tls\nqualify=yes\nqualifyfreq=2\n",
                pki.general(tls_port, "server")
            )
        });
    let reached = eventually(Duration::from_secs(10), || {
        let peers = near.rx("sip show peers");
        peers.contains("OK (").then_some(peers)
    });
    assert!(reached.is_some(), "{}\n{}\n{}\n{}", near.rx("sip show peers"), near.log_tail(), far.log_tail(), dns.log());
    let tcp = near.rx("sip show tcp");
    assert!(
        tcp.lines().any(|l| l.contains(&format!("127.0.0.1:{far_tls}")) && l.contains("TLS") && l.contains("Client")),
        "{tcp}"
    );
}
