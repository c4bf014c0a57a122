//! Issue 21: digest authentication as strict as the RFCs, and the security log fail2ban reads
//! (Debian's fail2ban-regex with its asterisk filter over Starling's messages log).

use std::io::Read as _;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

use starling_sip::digest::{Challenge, Credentials};

use crate::util::*;

const EXTENSIONS: &str = "[default]
exten => 100,1,NoOp(reached 100)
 same => n,Busy()
exten => 200,1,NoOp(reached 200)
 same => n,Busy()
";

struct Pbx {
    server: Server,
    sip: u16,
    ami: u16,
}

impl Pbx {
    /// chan_sip (alice/pw, no guests), pbx_config and res_manager (`admin`/`s3cret` reading
    /// everything, `watcher`/`w4tch` reading `security` only), with logger.conf sending
    /// security events to `messages` (for fail2ban) and to `security`.
    fn start(name: &str, general: &str) -> Pbx {
        let sip = free_udp_port();
        let ami = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = TestDir::new(name);
        dir.write_starling_conf(&moddir(), "");
        dir.write(
            "modules.conf",
            "[modules]\nautoload = no\nload => pbx_config.so\nload => res_manager.so\nload => chan_sip.so\n",
        );
        dir.write("extensions.conf", EXTENSIONS);
        dir.write(
            "sip.conf",
            &format!(
                "[general]\nbindaddr=127.0.0.1\nbindport={sip}\nallowguest=no\n{general}\n\
                 [alice]\ntype=friend\nhost=dynamic\nsecret=pw\ncontext=default\ndisallow=all\nallow=ulaw\n"
            ),
        );
        dir.write(
            "manager.conf",
            &format!(
                "[general]\nenabled=yes\nport={ami}\nbindaddr=127.0.0.1\n\n[admin]\nsecret=s3cret\nread=all\nwrite=all\n\
                 deny=0.0.0.0/0.0.0.0\npermit=127.0.0.0/255.0.0.0\n\n[watcher]\nsecret=w4tch\nread=security\nwrite=\n"
            ),
        );
        dir.write(
            "logger.conf",
            "[logfiles]\nconsole => notice,warning,error\nmessages => notice,warning,error,security\nsecurity => security\n",
        );
        Pbx { server: Server::start(dir), sip, ami }
    }

    fn log_file(&self, name: &str) -> String {
        std::fs::read_to_string(self.server.dir.path.join("log").join(name)).unwrap_or_default()
    }

    /// Waits until the log file `name` contains `text`.
    fn await_log(&self, name: &str, text: &str) {
        if eventually(Duration::from_secs(10), || self.log_file(name).contains(text).then_some(())).is_none() {
            panic!("no {text:?} in log/{name}:\n{}", self.log_file(name));
        }
    }
}

/// `%XX` for every byte but letters and digits: any text as a URI user.
fn pct(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// A SIP phone by hand on a chosen loopback address (the attacker's address in the logs).
struct Phone {
    socket: UdpSocket,
    server: u16,
    n: u32,
}

impl Phone {
    fn new(ip: &str, server: u16) -> Phone {
        let socket = UdpSocket::bind((ip, 0)).unwrap_or_else(|e| panic!("bind {ip}: {e}"));
        socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Phone { socket, server, n: 0 }
    }

    fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    fn register_uri(&self) -> String {
        format!("sip:127.0.0.1:{}", self.server)
    }

    fn invite_uri(&self, exten: &str) -> String {
        format!("sip:{exten}@127.0.0.1:{}", self.server)
    }

    /// Sends `method` to `uri` as `user` (From; To is `to` for REGISTER, the URI's user for
    /// INVITE) and returns the final response (an INVITE's is ACKed).
    /// `method` without credentials, then again answering the challenge with `password` (qop).
    fn challenged(&mut self, method: &str, uri: &str, user: &str, to: &str, password: &str) -> String {
        let challenge = self.send(method, uri, user, to, None);
        self.send(method, uri, user, to, Some(&answer(&challenge, method, uri, user, password, true)))
    }

    fn send(&mut self, method: &str, uri: &str, user: &str, to: &str, authorization: Option<&str>) -> String {
        self.n += 1;
        let (n, local) = (self.n, self.addr());
        let call_id = format!("{n}-{}@test", local.port());
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
            local.port() + 2
        );
        let body = if method == "INVITE" { sdp } else { String::new() };
        let auth = authorization.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
        let content_type = if body.is_empty() { "" } else { "Content-Type: application/sdp\r\n" };
        let head = |method: &str, to_header: &str| {
            format!(
                "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKsec{n}\r\n\
                 From: <sip:{user}@127.0.0.1>;tag=f{n}\r\nTo: {to_header}\r\nCall-ID: {call_id}\r\n\
                 CSeq: 1 {method}\r\nMax-Forwards: 70\r\nContact: <sip:{user}@{local}>\r\n"
            )
        };
        let to_header = format!("<sip:{to}@127.0.0.1>");
        let request =
            format!("{}{auth}{content_type}Content-Length: {}\r\n\r\n{body}", head(method, &to_header), body.len());
        self.socket.send_to(request.as_bytes(), ("127.0.0.1", self.server)).unwrap();
        let mut buffer = [0u8; 8192];
        loop {
            let (len, _) = self.socket.recv_from(&mut buffer).unwrap_or_else(|e| panic!("no answer to {method}: {e}"));
            let text = String::from_utf8_lossy(&buffer[..len]).into_owned();
            let code: u16 = text.get(8..11).and_then(|c| c.parse().ok()).unwrap_or(0);
            if !text.starts_with("SIP/2.0 ") || !text.contains(&format!("Call-ID: {call_id}")) || code < 200 {
                continue;
            }
            if method == "INVITE" && code >= 300 {
                let ack = format!("{}Content-Length: 0\r\n\r\n", head("ACK", header(&text, "To")));
                self.socket.send_to(ack.as_bytes(), ("127.0.0.1", self.server)).unwrap();
            }
            return text;
        }
    }
}

fn header<'a>(message: &'a str, name: &str) -> &'a str {
    message
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(':')))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name} in {message}"))
}

/// The `Authorization` answering the challenge in `response` (with `qop=auth` unless `qop` is false).
fn answer(response: &str, method: &str, uri: &str, user: &str, password: &str, qop: bool) -> String {
    let mut challenge = Challenge::parse(header(response, "WWW-Authenticate")).expect("a digest challenge");
    if !qop {
        challenge.qop.clear();
    }
    let credentials = Credentials { username: user.into(), password: Some(password.into()), ha1: None };
    credentials.answer(&challenge, method, uri, "0a4f113b", 1).expect("an MD5 challenge")
}

fn status(response: &str) -> &str {
    response.lines().next().unwrap_or("")
}

/// Credentials captured from an INVITE to 100 and replayed in an INVITE to 200 get `400 Bad
/// Request`, a NOTICE, and no call; the same credentials still call 100. A nonce answered
/// without qop calls once; the second request on it is challenged again (401, stale=true).
#[test]
fn a_digest_answer_for_100_replayed_to_200_is_refused_and_logged() {
    let pbx = Pbx::start("secreplay", "");
    let mut phone = Phone::new("127.0.0.1", pbx.sip);
    let (to_100, to_200) = (phone.invite_uri("100"), phone.invite_uri("200"));
    let challenge = phone.send("INVITE", &to_100, "alice", "100", None);
    assert!(status(&challenge).starts_with("SIP/2.0 401"), "{challenge}");
    let captured = answer(&challenge, "INVITE", &to_100, "alice", "pw", true);

    let replayed = phone.send("INVITE", &to_200, "alice", "200", Some(&captured));
    assert_eq!(status(&replayed), "SIP/2.0 400 Bad Request", "{replayed}");
    pbx.await_log(
        "messages",
        &format!("Digest uri '{to_100}' from '<sip:alice@127.0.0.1>;tag=f2' ({}) does not match the Request-URI '{to_200}': 400", phone.addr()),
    );
    let genuine = phone.send("INVITE", &to_100, "alice", "100", Some(&captured));
    assert_eq!(status(&genuine), "SIP/2.0 486 Busy Here", "{genuine}");
    assert!(pbx.server.log().contains("reached 100"), "{}", pbx.server.log_tail());
    assert!(!pbx.server.log().contains("reached 200"), "no call to 200: {}", pbx.server.log_tail());

    // Without qop: once.
    let challenge = phone.send("INVITE", &to_100, "alice", "100", None);
    let once = answer(&challenge, "INVITE", &to_100, "alice", "pw", false);
    assert!(!once.contains("qop"), "{once}");
    let first = phone.send("INVITE", &to_100, "alice", "100", Some(&once));
    assert_eq!(status(&first), "SIP/2.0 486 Busy Here", "{first}");
    let again = phone.send("INVITE", &to_100, "alice", "100", Some(&once));
    assert!(status(&again).starts_with("SIP/2.0 401"), "{again}");
    assert!(header(&again, "WWW-Authenticate").ends_with("stale=true"), "{again}");
    let reregister = phone.send("REGISTER", &phone.register_uri(), "alice", "alice", None);
    let once = answer(&reregister, "REGISTER", &phone.register_uri(), "alice", "pw", false);
    let first = phone.send("REGISTER", &phone.register_uri(), "alice", "alice", Some(&once));
    assert!(status(&first).starts_with("SIP/2.0 200"), "{first}");
    let again = phone.send("REGISTER", &phone.register_uri(), "alice", "alice", Some(&once));
    assert!(status(&again).starts_with("SIP/2.0 401") && again.contains("stale=true"), "{again}");
    assert!(eventually(Duration::from_secs(10), || pbx
        .server
        .rx("core show channels")
        .contains("0 active channels")
        .then_some(()))
    .is_some());
}

/// sip.conf `noncelifetime`: a right answer on a nonce older than that gets 401 with
/// `stale=true`, for REGISTER and INVITE; the fresh nonce then works.
#[test]
fn an_expired_nonce_is_challenged_again_with_stale_true() {
    let pbx = Pbx::start("secstale", "noncelifetime=1");
    let mut phone = Phone::new("127.0.0.1", pbx.sip);
    let register = phone.register_uri();
    let to_100 = phone.invite_uri("100");
    let first_register = phone.send("REGISTER", &register, "alice", "alice", None);
    let first_invite = phone.send("INVITE", &to_100, "alice", "100", None);
    let old_register = answer(&first_register, "REGISTER", &register, "alice", "pw", true);
    let old_invite = answer(&first_invite, "INVITE", &to_100, "alice", "pw", true);
    // Time must pass for a nonce to expire: there is nothing to poll for.
    std::thread::sleep(Duration::from_millis(1500));
    let stale = phone.send("REGISTER", &register, "alice", "alice", Some(&old_register));
    assert!(
        status(&stale).starts_with("SIP/2.0 401") && header(&stale, "WWW-Authenticate").ends_with(", stale=true"),
        "{stale}"
    );
    let fresh = answer(&stale, "REGISTER", &register, "alice", "pw", true);
    let ok = phone.send("REGISTER", &register, "alice", "alice", Some(&fresh));
    assert!(status(&ok).starts_with("SIP/2.0 200"), "{ok}");
    let stale = phone.send("INVITE", &to_100, "alice", "100", Some(&old_invite));
    assert!(
        status(&stale).starts_with("SIP/2.0 401") && header(&stale, "WWW-Authenticate").ends_with(", stale=true"),
        "{stale}"
    );
    let fresh = answer(&stale, "INVITE", &to_100, "alice", "pw", true);
    let call = phone.send("INVITE", &to_100, "alice", "100", Some(&fresh));
    assert_eq!(status(&call), "SIP/2.0 486 Busy Here", "{call}");
}

/// An AMI login from `ip` (a Python socket: std cannot choose a TCP source address); the reply.
fn ami_login_from(ip: &str, port: u16, user: &str, secret: &str) -> String {
    let script = format!(
        "import socket\ns=socket.socket()\ns.settimeout(5)\ns.bind(('{ip}',0))\ns.connect(('127.0.0.1',{port}))\n\
         s.sendall(b'Action: Login\\r\\nUsername: {user}\\r\\nSecret: {secret}\\r\\n\\r\\n')\ndata=b''\n\
         while b'Message:' not in data or not data.endswith(b'\\r\\n\\r\\n'):\n    chunk=s.recv(4096)\n    \
         if not chunk: break\n    data+=chunk\nprint(data.decode())\n"
    );
    let mut child =
        Command::new("python3").args(["-c", &script]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let done = wait_timeout(&mut child, Duration::from_secs(15));
    if done.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut out).unwrap();
    out
}

/// Runs Debian's fail2ban-regex with its asterisk filter over `log`: the address of each match.
fn fail2ban_matches(log: &std::path::Path) -> Vec<String> {
    let mut child = Command::new("fail2ban-regex")
        .args(["-o", "ip"])
        .arg(log)
        .arg("/etc/fail2ban/filter.d/asterisk.conf")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fail2ban-regex (Debian's fail2ban)");
    let status = wait_timeout(&mut child, Duration::from_secs(60)).expect("fail2ban-regex within a minute");
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "fail2ban-regex: {status}\n{out}\n{err}");
    out.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

/// Every failure fail2ban's asterisk filter knows, each from its own loopback address: a
/// wrong REGISTER password (.2), an unknown name (.3), a wrong INVITE password (.4), a call to
/// an extension that does not exist (.5), a failed AMI login (.6). fail2ban-regex over the
/// messages log finds each with that address, and nothing for the successes (.7 SIP, .8 AMI)
/// nor for a forged log line inside a URI user (`%0A` then a line naming 10.9.9.9), sent in a
/// REGISTER and as the extension of an INVITE (.9: only the sender's address is found).
#[test]
fn fail2ban_finds_each_failure_with_the_attackers_address() {
    let pbx = Pbx::start("secf2b", "");
    let port = pbx.sip;
    let wrong_register = {
        let mut phone = Phone::new("127.0.0.2", port);
        let uri = phone.register_uri();
        let reply = phone.challenged("REGISTER", &uri, "alice", "alice", "nope");
        assert!(status(&reply).starts_with("SIP/2.0 403"), "{reply}");
        phone.addr()
    };
    let unknown_register = {
        let mut phone = Phone::new("127.0.0.3", port);
        let uri = phone.register_uri();
        let reply = phone.challenged("REGISTER", &uri, "mallory", "mallory", "x");
        assert!(status(&reply).starts_with("SIP/2.0 403"), "{reply}");
        phone.addr()
    };
    let wrong_invite = {
        let mut phone = Phone::new("127.0.0.4", port);
        let uri = phone.invite_uri("100");
        let reply = phone.challenged("INVITE", &uri, "alice", "100", "nope");
        assert!(status(&reply).starts_with("SIP/2.0 403"), "{reply}");
        phone.addr()
    };
    let no_such_exten = {
        let mut phone = Phone::new("127.0.0.5", port);
        let uri = phone.invite_uri("999");
        let reply = phone.challenged("INVITE", &uri, "alice", "999", "pw");
        assert!(status(&reply).starts_with("SIP/2.0 404"), "{reply}");
        phone.addr()
    };
    let ami_failed = ami_login_from("127.0.0.6", pbx.ami, "admin", "guess");
    assert!(ami_failed.contains("Authentication failed"), "{ami_failed}");
    {
        let mut phone = Phone::new("127.0.0.7", port);
        let uri = phone.register_uri();
        let reply = phone.challenged("REGISTER", &uri, "alice", "alice", "pw");
        assert!(status(&reply).starts_with("SIP/2.0 200"), "{reply}");
        let uri = phone.invite_uri("100");
        let reply = phone.challenged("INVITE", &uri, "alice", "100", "pw");
        assert_eq!(status(&reply), "SIP/2.0 486 Busy Here", "{reply}");
    }
    let ami_ok = ami_login_from("127.0.0.8", pbx.ami, "admin", "s3cret");
    assert!(ami_ok.contains("Authentication accepted"), "{ami_ok}");
    let forger = {
        let forged = "x\n[Dec  7 03:00:00] NOTICE[1] chan_sip.c: Registration from '<sip:x@1.2.3.4>' failed for '10.9.9.9:5060' - Wrong password";
        let user = pct(forged);
        let mut phone = Phone::new("127.0.0.9", port);
        let uri = phone.register_uri();
        let reply = phone.challenged("REGISTER", &uri, &user, &user, "x");
        assert!(status(&reply).starts_with("SIP/2.0 403"), "{reply}");
        let uri = phone.invite_uri(&user);
        let reply = phone.challenged("INVITE", &uri, "alice", &user, "pw");
        assert!(status(&reply).starts_with("SIP/2.0 404"), "{reply}");
        phone.addr()
    };
    pbx.await_log("messages", &format!("Call from 'alice' ({}) to extension 'x\\n[Dec  7 03:00:00]", forger));
    pbx.await_log("messages", "SecurityEvent=\"SuccessfulAuth\"");

    let messages = pbx.log_file("messages");
    assert!(!messages.lines().any(|l| l.starts_with("[Dec  7 03:00:00]")), "a forged line:\n{messages}");
    let matched = fail2ban_matches(&pbx.server.dir.path.join("log/messages"));
    let count = |addr: SocketAddr| matched.iter().filter(|ip| **ip == addr.ip().to_string()).count();
    // A REGISTER failure is both chan_sip's NOTICE and the security event; a failed INVITE
    // authentication only the event (chan_sip's "Failed to authenticate device" names no
    // address); an unknown extension only the NOTICE; a failed AMI login manager.c's NOTICE
    // and the event. The forger's REGISTER is both (its own address); its INVITE's NOTICE is
    // not matched at all: the filter's `to extension '[^']*'` stops at the quotes in the text.
    let expected = [(wrong_register, 2), (unknown_register, 2), (wrong_invite, 1), (no_such_exten, 1), (forger, 2)];
    for (addr, n) in expected {
        assert_eq!(count(addr), n, "{addr}: {matched:?}\n{messages}");
    }
    assert_eq!(matched.iter().filter(|ip| *ip == "127.0.0.6").count(), 2, "AMI: {matched:?}\n{messages}");
    assert_eq!(matched.len(), 2 + 2 + 1 + 1 + 2 + 2, "nothing else (not .7, .8, 10.9.9.9): {matched:?}\n{messages}");

    // The security channel holds the events alone, in Asterisk's shape.
    let security = pbx.log_file("security");
    assert!(
        security.lines().all(|l| l.contains("] SECURITY[") && l.contains(" res_security_log.c: SecurityEvent=\"")),
        "{security}"
    );
    let line = |kind: &str, remote: &str| {
        security
            .lines()
            .find(|l| {
                l.contains(&format!("SecurityEvent=\"{kind}\"")) && l.contains(&format!("RemoteAddress=\"{remote}"))
            })
            .unwrap_or_else(|| panic!("no {kind} from {remote}:\n{security}"))
            .to_owned()
    };
    let invalid = line("InvalidPassword", &format!("IPV4/UDP/127.0.0.2/{}", wrong_register.port()));
    let fields = invalid.split_once("SecurityEvent=").unwrap().1;
    let names: Vec<&str> = fields.split("\",").map(|f| f.split('=').next().unwrap_or("")).collect();
    assert_eq!(
        names,
        [
            "\"InvalidPassword",
            "EventTV",
            "Severity",
            "Service",
            "EventVersion",
            "AccountID",
            "SessionID",
            "LocalAddress",
            "RemoteAddress",
            "Challenge",
            "ReceivedChallenge",
            "ReceivedHash"
        ],
        "{invalid}"
    );
    assert!(
        invalid.contains(",Severity=\"Error\",Service=\"SIP\",EventVersion=\"2\",AccountID=\"alice\",SessionID=\"0x")
            && invalid.contains(&format!(",LocalAddress=\"IPV4/UDP/127.0.0.1/{port}\",")),
        "{invalid}"
    );
    line("InvalidAccountID", &format!("IPV4/UDP/127.0.0.3/{}", unknown_register.port()));
    line("InvalidPassword", &format!("IPV4/UDP/127.0.0.4/{}", wrong_invite.port()));
    let ok = line("SuccessfulAuth", "IPV4/UDP/127.0.0.7/");
    assert!(ok.contains("Severity=\"Informational\"") && ok.ends_with(",UsingPassword=\"1\""), "{ok}");
    let ami = security.lines().find(|l| l.contains("Service=\"AMI\"") && l.contains("/127.0.0.6/")).unwrap_or("");
    assert!(ami.contains("SecurityEvent=\"InvalidPassword\"") && ami.contains("AccountID=\"admin\""), "{security}");
    assert!(ami.contains("RemoteAddress=\"IPV4/TCP/127.0.0.6/"), "{ami}");
    assert!(
        security.contains("Service=\"AMI\"") && security.contains("SecurityEvent=\"SuccessfulAuth\""),
        "{security}"
    );
    line("InvalidAccountID", &format!("IPV4/UDP/127.0.0.9/{}", forger.port()));
    let forged = line("ChallengeSent", &format!("IPV4/UDP/127.0.0.9/{}", forger.port()));
    assert!(
        forged.contains("AccountID=\"x\\n[Dec  7 03:00:00] NOTICE[1] chan_sip.c: Registration from '<sip:x@1.2.3.4>' failed for '10.9.9.9:5060' - Wrong password\""),
        "{forged}"
    );
    assert!(!security.lines().chain(messages.lines()).any(|l| l.starts_with("[Dec")), "{security}");
}

/// The manager events of a session, read raw: each as its `Key: Value` lines in order.
fn ami_events_until(
    reader: &mut impl std::io::BufRead,
    done: impl Fn(&[(String, String)]) -> bool,
) -> Vec<(String, String)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let mut message = Vec::new();
        loop {
            let mut line = String::new();
            assert!(reader.read_line(&mut line).unwrap() > 0, "the manager closed the session");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (k, v) = line.split_once(": ").unwrap_or((line, ""));
            message.push((k.to_owned(), v.to_owned()));
        }
        if done(&message) {
            return message;
        }
    }
    panic!("no such event within 10 s");
}

/// A user reading the `security` class gets Asterisk's security events as manager events
/// named after their type (`Event: InvalidPassword`, `Privilege: security,all`), with the
/// fields of the log line as headers in the same order: for SIP and for AMI itself.
#[test]
fn security_events_reach_manager_users_with_the_security_class() {
    use std::io::{BufRead as _, BufReader, Write as _};
    let pbx = Pbx::start("secami", "");
    let stream = std::net::TcpStream::connect(("127.0.0.1", pbx.ami)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut banner = String::new();
    reader.read_line(&mut banner).unwrap();
    writer.write_all(b"Action: Login\r\nUsername: watcher\r\nSecret: w4tch\r\n\r\n").unwrap();
    let reply = ami_events_until(&mut reader, |m| m.first().is_some_and(|(k, _)| k == "Response"));
    assert_eq!(reply[0].1, "Success", "{reply:?}");

    let mut phone = Phone::new("127.0.0.2", pbx.sip);
    let uri = phone.register_uri();
    let challenge = phone.send("REGISTER", &uri, "alice", "alice", None);
    phone.send("REGISTER", &uri, "alice", "alice", Some(&answer(&challenge, "REGISTER", &uri, "alice", "nope", true)));
    let sip = ami_events_until(&mut reader, |m| m.first().is_some_and(|(k, v)| k == "Event" && v == "InvalidPassword"));
    let names: Vec<&str> = sip.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "Event",
            "Privilege",
            "EventTV",
            "Severity",
            "Service",
            "EventVersion",
            "AccountID",
            "SessionID",
            "LocalAddress",
            "RemoteAddress",
            "Challenge",
            "ReceivedChallenge",
            "ReceivedHash"
        ],
        "{sip:?}"
    );
    let get = |m: &[(String, String)], key: &str| {
        m.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_default()
    };
    assert_eq!(get(&sip, "Privilege"), "security,all");
    assert_eq!(get(&sip, "Service"), "SIP");
    assert_eq!(get(&sip, "AccountID"), "alice");
    assert_eq!(get(&sip, "EventVersion"), "2");
    assert_eq!(get(&sip, "RemoteAddress"), format!("IPV4/UDP/127.0.0.2/{}", phone.addr().port()));
    assert_eq!(get(&sip, "LocalAddress"), format!("IPV4/UDP/127.0.0.1/{}", pbx.sip));

    let refused = ami_login_from("127.0.0.3", pbx.ami, "nobody", "x");
    assert!(refused.contains("Authentication failed"), "{refused}");
    let ami =
        ami_events_until(&mut reader, |m| m.first().is_some_and(|(k, v)| k == "Event" && v == "InvalidAccountID"));
    assert_eq!(get(&ami, "Service"), "AMI");
    assert_eq!(get(&ami, "AccountID"), "nobody");
    assert!(get(&ami, "RemoteAddress").starts_with("IPV4/TCP/127.0.0.3/"), "{ami:?}");
    assert_eq!(get(&ami, "Severity"), "Error");
}
