//! Outbound registration (`register =>`) against SIPp registrars: Registered with digest,
//! Rejected on wrong credentials, Timeout when nobody answers; `sip show registry`.

use std::time::Duration;

use crate::util::*;

fn server(name: &str, general: &str) -> Server {
    sip_pbx(name, &[], None, general).0
}

fn registry_shows(server: &Server, text: &str) -> Option<String> {
    eventually(Duration::from_secs(8), || {
        let registry = server.rx("sip show registry");
        registry.contains(text).then_some(registry)
    })
}

/// A challenge answered with the line's secret: Registered, with the granted 60 s and a Reg.Time.
#[test]
fn a_line_registers_with_digest() {
    let registrar = SippUas::spawn("registrar_auth.xml");
    let server = server("regok", &format!("register => alice:s3cret@127.0.0.1:{}/600~60\n", registrar.port));
    let registry = registry_shows(&server, "Registered");
    assert!(registry.is_some(), "{}\n{}", server.rx("sip show registry"), server.log_tail());
    let registry = registry.unwrap();
    let mut lines = registry.lines();
    assert_eq!(
        lines.next(),
        Some("Host                                    dnsmgr Username       Refresh State                Reg.Time                 ")
    );
    let row = lines.next().unwrap();
    assert!(
        row.starts_with(&format!(
            "{:<39} N      alice               60 Registered           ",
            format!("127.0.0.1:{}", registrar.port)
        )),
        "{row}"
    );
    assert!(row.contains(" 20"), "a Reg.Time: {row}");
    assert_eq!(lines.next(), Some("1 SIP registrations."));
    let (code, out) = registrar.finish();
    assert_eq!(code, 0, "the registrar verified the digest: {out}");
}

/// A line whose peer has an `outboundproxy` and another `fromuser`: the REGISTER goes to the
/// proxy, names the registrar in its Request-URI, the AOR in To and the third-party registrant
/// in From; `sip show registry detail` shows all of it.
#[test]
fn a_third_party_registration_through_a_proxy_shows_in_detail() {
    let proxy = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    proxy.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let port = proxy.local_addr().unwrap().port();
    let server = server(
        "regdetail",
        &format!(
            "register => trunk?alice:pw@registrar.example/600\n\
             [trunk]\ntype=peer\nhost=127.0.0.1\nfromuser=pbx-main\noutboundproxy=sip:127.0.0.1:{port}\n"
        ),
    );
    let mut buffer = [0u8; 4096];
    let len = proxy.recv(&mut buffer).expect("the REGISTER reaches the proxy");
    let register = String::from_utf8_lossy(&buffer[..len]).into_owned();
    assert!(register.starts_with("REGISTER sip:registrar.example SIP/2.0\r\n"), "{register}");
    assert!(register.contains("\r\nTo: <sip:alice@registrar.example>\r\n"), "{register}");
    assert!(register.contains("\r\nFrom: <sip:pbx-main@registrar.example>;tag="), "{register}");
    let detail = server.rx("sip show registry detail");
    for line in [
        "Registration 1: alice@registrar.example:5060\n",
        "  State          : Request Sent\n",
        &format!("  Sent to        : UDP 127.0.0.1:{port}\n"),
        &format!("  Outbound proxy : sip:127.0.0.1:{port}\n"),
        "  AOR            : sip:alice@registrar.example\n",
        "  Registrant     : sip:pbx-main@registrar.example (third party)\n",
        "  Local socket   : UDP 127.0.0.1:",
        "  Peer           : trunk\n",
    ] {
        assert!(detail.contains(line), "{line:?} in\n{detail}");
    }
    assert!(detail.ends_with("\n1 SIP registrations.\n"), "{detail}");
}

/// 403 to our credentials: Rejected.
#[test]
fn wrong_credentials_are_rejected() {
    let registrar = SippUas::spawn("registrar_reject.xml");
    let server = server("regreject", &format!("register => alice:wrong@127.0.0.1:{}\n", registrar.port));
    assert!(registry_shows(&server, "Rejected").is_some(), "{}\n{}", server.rx("sip show registry"), server.log_tail());
    assert!(server.log().contains("rejected (403)"), "{}", server.log_tail());
}

/// Nobody answers: Timeout after `registertimeout`, and it keeps trying.
#[test]
fn no_registrar_is_a_timeout() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    silent.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let port = silent.local_addr().unwrap().port();
    let server = server("regtimeout", &format!("registertimeout=1\nregister => alice:s3cret@127.0.0.1:{port}\n"));
    assert!(registry_shows(&server, "Timeout").is_some(), "{}\n{}", server.rx("sip show registry"), server.log_tail());
    let mut buffer = [0u8; 2048];
    let mut registers = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    while registers.len() < 2 && std::time::Instant::now() < deadline {
        if let Ok(len) = silent.recv(&mut buffer) {
            let text = String::from_utf8_lossy(&buffer[..len]).into_owned();
            if text.starts_with("REGISTER ") {
                registers.push(text);
            }
        }
    }
    assert!(registers.len() >= 2, "it tries again: {registers:?}");
    let call_id = |m: &str| m.lines().find(|l| l.starts_with("Call-ID:")).map(str::to_owned);
    assert_eq!(call_id(&registers[0]), call_id(&registers[1]), "one Call-ID for the line");
}

/// A call from the registrar to the line's extension runs in the context of the line's
/// `peer?`, even with `allowguest=no`.
#[test]
fn calls_from_the_registrar_land_in_the_lines_peer_context() {
    let registrar = SippUas::spawn("registrar_auth.xml");
    let (server, port) = sip_pbx(
        "regcall",
        &["pbx_config"],
        Some("[from-trunk]\nexten => 600,1,Answer()\n same => n,NoOp(Call in from the trunk)\n same => n,Hangup()\n"),
        &format!(
            "allowguest=no\nregister => trunk?alice:s3cret@127.0.0.1:{}/600~60\n\
             [trunk]\ntype=peer\nhost=192.0.2.1\ninsecure=invite\ncontext=from-trunk\n",
            registrar.port
        ),
    );
    assert!(registry_shows(&server, "Registered").is_some(), "{}", server.log_tail());
    let (code, out) = run_sipp(port, "invite_pbx_hangs_up.xml", "600", "", "", 1);
    assert_eq!(code, 0, "{out}\n{}", server.log_tail());
    assert!(server.log().contains("Call in from the trunk"), "{}", server.log_tail());
    assert!(server.log().contains("Accepting call SIP/trunk-"), "{}", server.log_tail());
}

/// Where Debian put Kamailio's modules (the folder holding `tm.so`), whatever the architecture.
fn kamailio_modules() -> String {
    let found = std::fs::read_dir("/usr/lib").into_iter().flatten().flatten().find_map(|entry| {
        let dir = entry.path().join("kamailio/modules");
        dir.join("tm.so").exists().then_some(dir)
    });
    let dir = found.unwrap_or_else(|| std::path::PathBuf::from("/usr/lib/kamailio/modules"));
    dir.display().to_string()
}

/// A real registrar: Kamailio (registrar + auth, bindings in memory) run in the foreground on
/// a free port; stopped with SIGTERM to its main process (which ends its children).
pub(crate) struct Kamailio {
    child: std::process::Child,
    dir: TestDir,
    pub(crate) port: u16,
}

impl Kamailio {
    pub(crate) fn start(password: &str) -> Kamailio {
        let port = free_udp_port();
        Kamailio::start_on(password, port)
    }

    /// On a given port (to come back where it was); grants expiries down to 1 s.
    fn start_on(password: &str, port: u16) -> Kamailio {
        Kamailio::start_with(password, port, |_| String::new())
    }

    /// Also on TLS (its `tls` module, Debian's kamailio-tls-modules) at `tls_port`, presenting
    /// `cert`/`key` (PEM files) and asking clients for no certificate.
    pub(crate) fn start_tls(password: &str, tls_port: u16, cert: &std::path::Path, key: &std::path::Path) -> Kamailio {
        Kamailio::start_with(password, free_udp_port(), |dir| {
            let tls_cfg = dir.join("tls.cfg");
            std::fs::write(
                &tls_cfg,
                format!(
                    "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n\
                 private_key = {}\ncertificate = {}\n\n[client:default]\nmethod = TLSv1.2+\nverify_certificate = no\n\
                 require_certificate = no\n",
                    key.display(),
                    cert.display()
                ),
            )
            .unwrap();
            format!(
                "enable_tls=yes\nlisten=tls:127.0.0.1:{tls_port}\nloadmodule \"tls.so\"\nmodparam(\"tls\", \"config\", \"{}\")\n",
                tls_cfg.display()
            )
        })
    }

    /// With more lines of configuration (made from its folder) before the modules.
    fn start_with(password: &str, port: u16, extra: impl FnOnce(&std::path::Path) -> String) -> Kamailio {
        let dir = TestDir::new("kamailio");
        let extra = extra(&dir.path);
        let ctl = dir.path.join("ctl");
        let cfg = dir.path.join("kamailio.cfg");
        std::fs::write(
            &cfg,
            format!(
                "#!KAMAILIO\ndebug=2\nlog_stderror=yes\nchildren=1\nlisten=udp:127.0.0.1:{port}\n\
                 mpath=\"{mpath}/\"\n{extra}\
                 loadmodule \"kex.so\"\nloadmodule \"tm.so\"\nloadmodule \"sl.so\"\nloadmodule \"rr.so\"\n\
                 loadmodule \"pv.so\"\nloadmodule \"maxfwd.so\"\nloadmodule \"textops.so\"\nloadmodule \"siputils.so\"\n\
                 loadmodule \"usrloc.so\"\nloadmodule \"registrar.so\"\nloadmodule \"auth.so\"\nloadmodule \"ctl.so\"\n\
                 modparam(\"usrloc\", \"db_mode\", 0)\nmodparam(\"ctl\", \"binrpc\", \"unix:{ctl}\")\n\
                 modparam(\"registrar\", \"min_expires\", 1)\n\
                 request_route {{\n\
                   if (is_method(\"REGISTER\")) {{\n\
                     if (!pv_auth_check(\"$fd\", \"{password}\", \"0\", \"1\")) {{ auth_challenge(\"$fd\", \"1\"); exit; }}\n\
                     save(\"location\");\n    exit;\n  }}\n\
                   if (!lookup(\"location\")) {{ sl_send_reply(\"404\", \"Not Found\"); exit; }}\n\
                   t_relay();\n}}\n",
                ctl = ctl.display(),
                mpath = kamailio_modules(),
            ),
        )
        .unwrap();
        let child = std::process::Command::new("kamailio")
            .arg("-f")
            .arg(&cfg)
            .args(["-DD", "-E", "-Y"])
            .arg(&dir.path)
            .stdout(std::fs::File::create(dir.path.join("kamailio.log")).unwrap())
            .stderr(std::fs::File::create(dir.path.join("kamailio.err")).unwrap())
            .spawn()
            .expect("kamailio (Debian's kamailio)");
        let kamailio = Kamailio { child, dir, port };
        let up = eventually(Duration::from_secs(5), || kamailio.ul_dump().contains("Domain: location").then_some(()));
        assert!(up.is_some(), "kamailio started: {}", kamailio.log());
        kamailio
    }

    /// `kamcmd ul.dump`: who is registered.
    fn ul_dump(&self) -> String {
        let out = std::process::Command::new("timeout")
            .args(["5", "kamcmd", "-s"])
            .arg(format!("unix:{}", self.dir.path.join("ctl").display()))
            .arg("ul.dump")
            .output()
            .expect("kamcmd");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path.join("kamailio.err")).unwrap_or_default()
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        kill_pid(self.child.id() as i32, 15);
        if wait_timeout(&mut self.child, Duration::from_secs(5)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starling registers to Kamailio with digest: Registered, the binding in `ul.dump`; a call
/// to the AOR through Kamailio reaches Starling's dialplan (the line's extension, `[general]
/// context`). With a wrong password: Rejected.
#[test]
fn kamailio_registrar_takes_the_registration_and_relays_a_call() {
    let kamailio = Kamailio::start("s3cret");
    let (server, port) = sip_pbx(
        "regkam",
        &["pbx_config"],
        Some("[incoming]\nexten => 600,1,Answer()\n same => n,NoOp(Call from Kamailio)\n same => n,Hangup()\n"),
        &format!(
            "allowguest=no\ncontext=incoming\n\
             register => alice:s3cret@127.0.0.1:{}/600~60\nregister => bob:wrong@127.0.0.1:{}/601\n",
            kamailio.port, kamailio.port
        ),
    );
    let registry = registry_shows(&server, "Registered");
    assert!(registry.is_some(), "{}\n{}\n{}", server.rx("sip show registry"), server.log_tail(), kamailio.log());
    let bound = eventually(Duration::from_secs(5), || {
        let dump = kamailio.ul_dump();
        (dump.contains("AoR: alice") && dump.contains(&format!("sip:600@127.0.0.1:{port}"))).then_some(dump)
    });
    assert!(bound.is_some(), "the binding is in Kamailio: {}", kamailio.ul_dump());
    assert!(registry_shows(&server, "Rejected").is_some(), "bob's wrong password: {}", server.rx("sip show registry"));
    let (code, out) = run_sipp(kamailio.port, "invite_pbx_hangs_up.xml", "alice", "", "", 1);
    assert_eq!(code, 0, "{out}\n{}\n{}", server.log_tail(), kamailio.log());
    assert!(server.log().contains("Call from Kamailio"), "{}", server.log_tail());
}

/// Kamailio stops: the refresh gets no answer and the line shows Timeout; Kamailio comes back
/// on the same port: Registered again.
#[test]
fn kamailio_gone_is_a_timeout_and_back_is_registered() {
    let kamailio = Kamailio::start("s3cret");
    let kam_port = kamailio.port;
    // Refreshed every 2 s (a fifth of 10 s); no answer within 1 s is a timeout.
    let server =
        server("regkamback", &format!("registertimeout=1\nregister => alice:s3cret@127.0.0.1:{kam_port}/600~10\n"));
    assert!(registry_shows(&server, "Registered").is_some(), "{}\n{}", server.rx("sip show registry"), kamailio.log());
    drop(kamailio);
    assert!(registry_shows(&server, "Timeout").is_some(), "{}\n{}", server.rx("sip show registry"), server.log_tail());
    let back = Kamailio::start_on("s3cret", kam_port);
    assert!(registry_shows(&server, "Registered").is_some(), "{}\n{}", server.rx("sip show registry"), back.log());
}

/// A response by hand to `request`: its Via, From, Call-ID and CSeq, To with a tag, and for a
/// REGISTER its Contact and Expires (granting what was asked).
fn response_to(request: &str, status: &str) -> String {
    let mut response = format!("SIP/2.0 {status}\r\n");
    let mut copied = vec!["via:", "from:", "call-id:", "cseq:"];
    if request.starts_with("REGISTER ") {
        copied.extend(["contact:", "expires:"]);
    }
    for line in request.lines() {
        let lower = line.to_ascii_lowercase();
        if copied.iter().any(|h| lower.starts_with(h)) {
            response.push_str(line);
            response.push_str("\r\n");
        } else if lower.starts_with("to:") {
            response.push_str(line);
            response.push_str(";tag=reg\r\n");
        }
    }
    response.push_str("Content-Length: 0\r\n\r\n");
    response
}

/// The next request of `method` that reaches `socket` (others are skipped), and where from.
fn next_request(socket: &std::net::UdpSocket, method: &str) -> Option<(String, std::net::SocketAddr)> {
    let mut buffer = [0u8; 4096];
    while let Ok((len, from)) = socket.recv_from(&mut buffer) {
        let text = String::from_utf8_lossy(&buffer[..len]).into_owned();
        if text.starts_with(&format!("{method} ")) {
            return Some((text, from));
        }
    }
    None
}

/// A registrar by hand: answers every REGISTER 200 (granting what was asked) and keeps them.
fn answer_registers(socket: &std::net::UdpSocket, seen: &mut Vec<String>) {
    while let Some((text, from)) = next_request(socket, "REGISTER") {
        socket.send_to(response_to(&text, "200 OK").as_bytes(), from).unwrap();
        seen.push(text);
    }
}

fn header<'a>(message: &'a str, name: &str) -> &'a str {
    message
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()))
        .unwrap_or("")
}

/// Behind NAT: with `externaddr` and a registrar outside `localnet`, the REGISTER's Via and
/// Contact name `externaddr`; `sip show registry detail` shows that binding and our real socket.
#[test]
fn a_registration_behind_nat_names_externaddr() {
    let registrar = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    registrar.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let port = registrar.local_addr().unwrap().port();
    let server = server(
        "regnat",
        &format!("externaddr=198.51.100.7\nlocalnet=192.168.0.0/16\nregister => alice:pw@127.0.0.1:{port}/600\n"),
    );
    let (register, _) = next_request(&registrar, "REGISTER").expect("a REGISTER");
    assert!(header(&register, "Via").starts_with("SIP/2.0/UDP 198.51.100.7:"), "{register}");
    assert!(header(&register, "Contact").starts_with("<sip:600@198.51.100.7:"), "{register}");
    let detail = server.rx("sip show registry detail");
    assert!(detail.contains("  Binding        : sip:600@198.51.100.7:"), "{detail}");
    assert!(detail.contains("  Local socket   : UDP 127.0.0.1:"), "{detail}");
}

/// `reregister_on=403,480` (ours): a trunk refusing our INVITE with 403 gets a new REGISTER of
/// its account at once (same Call-ID, next CSeq); a 486, not in the list, does not.
#[test]
fn an_invite_refused_with_a_listed_status_registers_again() {
    let trunk = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    trunk.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let port = trunk.local_addr().unwrap().port();
    let server = server(
        "regreregister",
        &format!(
            "register => trunk?alice:pw@127.0.0.1:{port}/600\n\
             [trunk]\ntype=peer\nhost=127.0.0.1\nport={port}\ninsecure=port,invite\nreregister_on=403,480\n"
        ),
    );
    let (first, from) = next_request(&trunk, "REGISTER").expect("the first REGISTER");
    trunk.send_to(response_to(&first, "200 OK").as_bytes(), from).unwrap();
    assert!(registry_shows(&server, "Registered").is_some(), "{}", server.log_tail());

    let refuse_invite = |status: &str| {
        let _ = server.rx("channel originate SIP/trunk/123 application Wait 1");
        let (invite, from) = next_request(&trunk, "INVITE").expect("the INVITE reaches the trunk");
        trunk.send_to(response_to(&invite, status).as_bytes(), from).unwrap();
    };
    refuse_invite("403 Forbidden");
    let (again, from) = next_request(&trunk, "REGISTER").expect("a REGISTER after the 403");
    assert_eq!(header(&again, "Call-ID"), header(&first, "Call-ID"), "{again}");
    let cseq = |m: &str| header(m, "CSeq").split(' ').next().unwrap().parse::<u32>().unwrap();
    assert!(cseq(&again) > cseq(&first), "{again}");
    trunk.send_to(response_to(&again, "200 OK").as_bytes(), from).unwrap();
    let log = server.log();
    assert!(
        log.contains("'trunk' answered 403 to our INVITE: registering alice@127.0.0.1 again"),
        "{}",
        server.log_tail()
    );

    refuse_invite("486 Busy Here");
    trunk.set_read_timeout(Some(Duration::from_millis(1500))).unwrap();
    assert!(next_request(&trunk, "REGISTER").is_none(), "no REGISTER after a 486");
}

/// `sip reload` without a line that was registered: it is unregistered (Expires: 0, same
/// Call-ID) and leaves `sip show registry`; a line added by the reload registers.
#[test]
fn reload_unregisters_removed_lines_and_registers_new_ones() {
    let registrar = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    registrar.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let reg_port = registrar.local_addr().unwrap().port();
    let (server, port) = sip_pbx("regreload", &[], None, &format!("register => alice:pw@127.0.0.1:{reg_port}/600\n"));
    let conf = |lines: &str| format!("[general]\nbindaddr=127.0.0.1\nbindport={port}\n{lines}");
    let etc = server.dir.etc();
    let mut seen = Vec::new();
    let registered = eventually(Duration::from_secs(8), || {
        answer_registers(&registrar, &mut seen);
        server.rx("sip show registry").contains("Registered").then_some(())
    });
    assert!(registered.is_some(), "{}\n{}", server.rx("sip show registry"), server.log_tail());
    std::fs::write(etc.join("sip.conf"), conf(&format!("register => bob:pw@127.0.0.1:{reg_port}/601\n"))).unwrap();
    assert_eq!(server.rx("sip reload"), "");
    let swapped = eventually(Duration::from_secs(8), || {
        answer_registers(&registrar, &mut seen);
        let registry = server.rx("sip show registry");
        (registry.contains("bob") && registry.contains("Registered") && !registry.contains("alice")).then_some(())
    });
    assert!(swapped.is_some(), "{}\n{}", server.rx("sip show registry"), server.log_tail());
    let alice: Vec<&String> = seen.iter().filter(|m| m.contains("sip:alice@")).collect();
    let last = alice.last().expect("alice registered");
    assert!(last.contains("Expires: 0"), "alice unregistered: {last}");
    let call_id = |m: &str| m.lines().find(|l| l.starts_with("Call-ID:")).map(str::to_owned);
    assert_eq!(call_id(alice[0]), call_id(last), "with the line's Call-ID");
}

/// `core stop gracefully` unregisters the registered lines (Expires: 0) before the process ends.
#[test]
fn stopping_unregisters() {
    let registrar = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    registrar.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let reg_port = registrar.local_addr().unwrap().port();
    let mut server = server("regstop", &format!("register => alice:pw@127.0.0.1:{reg_port}/600\n"));
    let mut seen = Vec::new();
    let registered = eventually(Duration::from_secs(8), || {
        answer_registers(&registrar, &mut seen);
        server.rx("sip show registry").contains("Registered").then_some(())
    });
    assert!(registered.is_some(), "{}", server.log_tail());
    let _ = server.try_rx("core stop gracefully");
    assert!(server.wait_exit(Duration::from_secs(10)).success());
    answer_registers(&registrar, &mut seen);
    let last = seen.last().unwrap();
    assert!(last.contains("Expires: 0"), "unregistered at stop: {last}");
}

/// A registrar by hand on one address (its own thread): while answering, REGISTERs get 200
/// (granting what was asked), INVITEs 486 and OPTIONS 200; it keeps every request that reached
/// it. Not answering is as good as gone (the socket stays bound, so nothing else takes the port).
struct HandRegistrar {
    address: std::net::SocketAddr,
    answering: std::sync::Arc<std::sync::atomic::AtomicBool>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HandRegistrar {
    fn start(address: &str) -> HandRegistrar {
        HandRegistrar::on(std::net::UdpSocket::bind(address).expect("bind the registrar"))
    }

    fn on(socket: std::net::UdpSocket) -> HandRegistrar {
        use std::sync::atomic::{AtomicBool, Ordering};
        socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let address = socket.local_addr().unwrap();
        let answering = std::sync::Arc::new(AtomicBool::new(true));
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (a, st, se) = (answering.clone(), stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while !st.load(Ordering::Relaxed) {
                let Ok((len, from)) = socket.recv_from(&mut buffer) else { continue };
                let text = String::from_utf8_lossy(&buffer[..len]).into_owned();
                let status = match text.split(' ').next() {
                    Some("REGISTER" | "OPTIONS") => "200 OK",
                    Some("INVITE") => "486 Busy Here",
                    _ => continue,
                };
                se.lock().unwrap().push(text.clone());
                if a.load(Ordering::Relaxed) {
                    let _ = socket.send_to(response_to(&text, status).as_bytes(), from);
                }
            }
        });
        HandRegistrar { address, answering, seen, stop, thread: Some(thread) }
    }

    fn answering(&self, on: bool) {
        self.answering.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// The REGISTERs that reached it, one per CSeq (retransmissions counted once).
    fn registers(&self) -> usize {
        let seen = self.seen.lock().unwrap();
        let cseqs: std::collections::HashSet<&str> =
            seen.iter().filter(|m| m.starts_with("REGISTER ")).map(|m| header(m, "CSeq")).collect();
        cseqs.len()
    }

    fn invites(&self) -> usize {
        let seen = self.seen.lock().unwrap();
        let cseqs: std::collections::HashSet<&str> =
            seen.iter().filter(|m| m.starts_with("INVITE ")).map(|m| header(m, "Call-ID")).collect();
        cseqs.len()
    }

    fn first(&self, method: &str) -> Option<String> {
        self.seen.lock().unwrap().iter().find(|m| m.starts_with(&format!("{method} "))).cloned()
    }
}

impl Drop for HandRegistrar {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Where `sip show registry detail` says the line's REGISTERs went.
fn sent_to(server: &Server) -> String {
    let detail = server.rx("sip show registry detail");
    detail.lines().find(|l| l.starts_with("  Sent to")).unwrap_or("").to_owned()
}

/// Issue 9, DNS SRV (`srvlookup`, on by default): `register => ...@trunk.test` without a port
/// asks `_sip._udp.trunk.test` (dnsmasq here) and registers with the priority-10 target; its
/// refreshes stick to it, and a call to the trunk goes there. The first registrar stops
/// answering: the refresh moves to the priority-20 one, Registered again, and stays there (even
/// when the first answers again); the next call follows it. trunk.test's own A record (nobody
/// there) is never used.
#[test]
fn srv_registrars_in_order_and_the_next_when_the_first_stops_answering() {
    let first = HandRegistrar::start("127.0.0.2:0");
    let second = HandRegistrar::start("127.0.0.3:0");
    let dns = Dnsmasq::start(&[
        format!("--srv-host=_sip._udp.trunk.test,reg1.trunk.test,{},10,0", first.address.port()),
        format!("--srv-host=_sip._udp.trunk.test,reg2.trunk.test,{},20,0", second.address.port()),
        "--host-record=reg1.trunk.test,127.0.0.2".into(),
        "--host-record=reg2.trunk.test,127.0.0.3".into(),
        "--host-record=trunk.test,127.0.0.9".into(),
    ]);
    // Refreshed every second (a fifth of 5 s); no answer within 1 s is a timeout.
    let (server, _) = sip_pbx_with_options("regsrv", &dns.nameserver_option(), &[], None, |_| {
        "registertimeout=1\nregister => trunk?alice:pw@trunk.test/600~5\n\
         [trunk]\ntype=peer\nhost=trunk.test\ninsecure=port,invite\n"
            .to_owned()
    });
    let why =
        |server: &Server| format!("{}\n{}\n{}", server.rx("sip show registry detail"), server.log_tail(), dns.log());
    let stuck = eventually(Duration::from_secs(10), || (first.registers() >= 3).then_some(()));
    assert!(stuck.is_some(), "registered, then two refreshes at the priority-10 target: {}", why(&server));
    assert!(server.rx("sip show registry").contains("Registered"), "{}", why(&server));
    assert_eq!(second.registers(), 0, "nothing to the priority-20 target while the first answers");
    let register = first.first("REGISTER").unwrap();
    assert!(
        register.starts_with("REGISTER sip:trunk.test SIP/2.0\r\n"),
        "the Request-URI names the domain: {register}"
    );
    assert!(dns.log().contains("query[SRV] _sip._udp.trunk.test"), "{}", dns.log());
    assert_eq!(sent_to(&server), format!("  Sent to        : UDP {}", first.address));

    let _ = server.rx("channel originate SIP/trunk/123 application Wait 1");
    let called = eventually(Duration::from_secs(5), || (first.invites() == 1).then_some(()));
    assert!(called.is_some(), "the call goes to the line's registrar: {}", why(&server));

    first.answering(false);
    let moved = eventually(Duration::from_secs(10), || {
        (second.registers() >= 2 && server.rx("sip show registry").contains("Registered")).then_some(())
    });
    assert!(moved.is_some(), "the refresh moved to the priority-20 target: {}", why(&server));
    assert_eq!(sent_to(&server), format!("  Sent to        : UDP {}", second.address));

    first.answering(true);
    let at_first = first.registers();
    let at_second = second.registers();
    let kept = eventually(Duration::from_secs(10), || (second.registers() >= at_second + 3).then_some(()));
    assert!(kept.is_some(), "refreshes go on at the second: {}", why(&server));
    assert_eq!(first.registers(), at_first, "none back to the first though it answers again");

    let _ = server.rx("channel originate SIP/trunk/123 application Wait 1");
    let called = eventually(Duration::from_secs(5), || (second.invites() == 1).then_some(()));
    assert!(called.is_some(), "the next call follows the line: {}", why(&server));
    assert_eq!(first.invites(), 1, "and not to the SRV's first target");
    assert!(!server.log().contains("127.0.0.9"), "trunk.test's A record is not used: {}", server.log_tail());
}

/// Two A records and a port given (so no SRV, though the name has SRV records): the line's
/// refreshes all go to the one address that answered first; when it stops answering, the next
/// address takes over and is Registered.
#[test]
fn two_a_records_refreshes_stick_to_the_one_that_answered() {
    // The same port on both addresses (a port given with the host applies to each of them).
    let (a, b) = (0..20)
        .find_map(|_| {
            let a = std::net::UdpSocket::bind("127.0.0.2:0").ok()?;
            let b = std::net::UdpSocket::bind(("127.0.0.3", a.local_addr().ok()?.port())).ok()?;
            Some((a, b))
        })
        .expect("one free port on 127.0.0.2 and 127.0.0.3");
    let port = a.local_addr().unwrap().port();
    let (a, b) = (HandRegistrar::on(a), HandRegistrar::on(b));
    let dns = Dnsmasq::start(&[
        "--host-record=pool.test,127.0.0.2".into(),
        "--host-record=pool.test,127.0.0.3".into(),
        format!("--srv-host=_sip._udp.pool.test,elsewhere.test,{port},10,0"),
        "--host-record=elsewhere.test,127.0.0.9".into(),
    ]);
    let (server, _) = sip_pbx_with_options("rega", &dns.nameserver_option(), &[], None, |_| {
        format!("registertimeout=1\nregister => alice:pw@pool.test:{port}/600~5\n")
    });
    let why =
        |server: &Server| format!("{}\n{}\n{}", server.rx("sip show registry detail"), server.log_tail(), dns.log());
    let refreshed = eventually(Duration::from_secs(10), || (a.registers() + b.registers() >= 4).then_some(()));
    assert!(refreshed.is_some(), "{}", why(&server));
    let (answered, other) = if a.registers() > 0 { (&a, &b) } else { (&b, &a) };
    assert_eq!(other.registers(), 0, "every refresh to {}: {}", answered.address, why(&server));
    assert!(!dns.log().contains("query[SRV]"), "a port given: no SRV lookup: {}", dns.log());

    answered.answering(false);
    let moved = eventually(Duration::from_secs(10), || {
        (other.registers() >= 2 && server.rx("sip show registry").contains("Registered")).then_some(())
    });
    assert!(moved.is_some(), "the next address took over: {}", why(&server));
    assert_eq!(sent_to(&server), format!("  Sent to        : UDP {}", other.address));
}
