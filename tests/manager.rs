//! The manager interface (res_manager) over real TCP: login (plain and MD5), the core actions,
//! events from real SIP calls (SIPp), many sessions at once, a client that stops reading, and
//! a real AMI client from PyPI (panoramisk).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::util::*;

const EXTENSIONS: &str = "[globals]
SITE=north
[default]
exten => 900,1,Answer()
 same => n,Set(CALLERID(num)=5551234)
 same => n,Set(CALLERID(name)=Front Desk)
 same => n,Set(COLOUR=green)
 same => n,Wait(10)
 same => n,Hangup()
exten => 600,1,Answer()
 same => n,Wait(0.5)
 same => n,Hangup()
exten => 700,1,Answer()
 same => n,Wait(30)
 same => n,Hangup()
exten => 701,1,Set(MOVED=yes)
 same => n,Hangup()
exten => 500,1,Dial(SIP/bob)
 same => n,Hangup()
exten => 800,1,Answer()
 same => n,Set(I=0)
 same => n,While($[${I} < 3000])
 same => n,Set(I=$[${I} + 1])
 same => n,EndWhile()
 same => n,Hangup()
";

pub(crate) fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starling with res_manager on a free port (user `admin`/`s3cret`, all classes; user
/// `reader`/`r3ad`: reads call events, writes nothing) and chan_sip with peer `bob` at `bob_port`.
fn ami_pbx(name: &str, bob_port: u16) -> (Server, u16, u16) {
    ami_pbx_with(name, bob_port, "")
}

/// [`ami_pbx`] with more `[general]` lines in manager.conf.
pub(crate) fn ami_pbx_with(name: &str, bob_port: u16, general: &str) -> (Server, u16, u16) {
    ami_pbx_sip(name, bob_port, general, "")
}

/// [`ami_pbx_with`] with more `[general]` lines in sip.conf (`register =>` lines).
fn ami_pbx_sip(name: &str, bob_port: u16, general: &str, sip_general: &str) -> (Server, u16, u16) {
    let ami = free_tcp_port();
    let (server, sip) = sip_pbx_on_port(
        name,
        &["pbx_config", "app_dial", "cdr_csv", "func_callerid", "func_cdr", "func_db", "res_manager"],
        Some(EXTENSIONS),
        |_| {
            format!(
                "allowguest=yes\ncontext=default\n{sip_general}[bob]\ntype=peer\nhost=127.0.0.1\nport={bob_port}\ninsecure=port,invite\n\
                 disallow=all\nallow=ulaw\n[carol]\ntype=friend\nhost=dynamic\n"
            )
        },
    );
    std::fs::write(
        server.dir.etc().join("manager.conf"),
        format!(
            "[general]\nenabled=yes\nport={ami}\nbindaddr=127.0.0.1\n{general}\n[admin]\nsecret=s3cret\nread=all\nwrite=all\n\
             deny=0.0.0.0/0.0.0.0\npermit=127.0.0.1/255.255.255.255\n\n[reader]\nsecret=r3ad\nread=call\nwrite=\n"
        ),
    )
    .unwrap();
    // chan_sip was loaded by sip_pbx; res_manager declined without its config: load it now.
    let out = server.rx("module load res_manager");
    assert!(out.contains("Loaded"), "{out}\n{}", server.log_tail());
    (server, sip, ami)
}

/// A raw AMI connection.
pub(crate) struct Ami {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

pub(crate) type Msg = Vec<(String, String)>;

pub(crate) fn get<'a>(m: &'a Msg, key: &str) -> Option<&'a str> {
    m.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.as_str())
}

impl Ami {
    pub(crate) fn connect(port: u16) -> Ami {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut ami = Ami { reader: BufReader::new(stream.try_clone().unwrap()), writer: stream };
        let mut banner = String::new();
        ami.reader.read_line(&mut banner).unwrap();
        assert_eq!(banner, "Asterisk Call Manager/9.0.0\r\n");
        ami
    }

    pub(crate) fn send(&mut self, headers: &[(&str, &str)]) {
        let mut text = String::new();
        for (k, v) in headers {
            text.push_str(&format!("{k}: {v}\r\n"));
        }
        text.push_str("\r\n");
        self.writer.write_all(text.as_bytes()).unwrap();
    }

    /// The next message; `None` when the connection closes.
    pub(crate) fn read(&mut self) -> Option<Msg> {
        let mut message = Vec::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let line = line.trim_end();
            if line.is_empty() {
                if message.is_empty() {
                    continue;
                }
                return Some(message);
            }
            // An empty value is `Key: ` (its space trimmed above with the line end).
            let (k, v) =
                line.split_once(": ").or_else(|| line.strip_suffix(':').map(|k| (k, ""))).unwrap_or((line, ""));
            message.push((k.to_owned(), v.to_owned()));
        }
    }

    /// Reads until a message with `key: value` (skipping others), within `timeout`.
    pub(crate) fn until(&mut self, key: &str, value: &str, timeout: Duration) -> Msg {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let m = self.read().unwrap_or_else(|| panic!("closed while waiting for {key}: {value}"));
            if get(&m, key) == Some(value) {
                return m;
            }
        }
        panic!("no {key}: {value} within {timeout:?}");
    }

    pub(crate) fn login(port: u16, user: &str, secret: &str) -> Ami {
        let mut ami = Ami::connect(port);
        ami.send(&[("Action", "Login"), ("Username", user), ("Secret", secret), ("ActionID", "l1")]);
        let reply = ami.read().unwrap();
        assert_eq!(get(&reply, "Response"), Some("Success"), "{reply:?}");
        assert_eq!(get(&reply, "ActionID"), Some("l1"));
        ami
    }
}

#[test]
fn login_actions_and_refusals() {
    let (server, _sip, port) = ami_pbx("amibasic", 1);
    // Before login only Login/Challenge/Logoff.
    let mut ami = Ami::connect(port);
    ami.send(&[("Action", "Ping")]);
    assert_eq!(get(&ami.read().unwrap(), "Message"), Some("Permission denied"));
    // A wrong secret: refused, then the connection closes.
    ami.send(&[("Action", "Login"), ("Username", "admin"), ("Secret", "nope")]);
    assert_eq!(get(&ami.read().unwrap(), "Message"), Some("Authentication failed"));
    let started = Instant::now();
    assert!(ami.read().is_none(), "closed after a failed login");
    assert!(started.elapsed() >= Duration::from_millis(500), "after a delay");

    // MD5 challenge login.
    let mut ami = Ami::connect(port);
    ami.send(&[("Action", "Challenge"), ("AuthType", "MD5")]);
    let challenge = get(&ami.read().unwrap(), "Challenge").unwrap().to_owned();
    let key = md5_hex(&format!("{challenge}s3cret"));
    ami.send(&[("Action", "Login"), ("AuthType", "MD5"), ("Username", "admin"), ("Key", &key)]);
    assert_eq!(get(&ami.read().unwrap(), "Message"), Some("Authentication accepted"));
    // (Its own login may come first, as a SuccessfulAuth security event: admin reads all.)
    let booted = ami.until("Event", "FullyBooted", Duration::from_secs(5));
    assert_eq!(get(&booted, "Privilege"), Some("system,all"));

    ami.send(&[("Action", "Ping"), ("ActionID", "p1")]);
    let pong = ami.until("ActionID", "p1", Duration::from_secs(5));
    assert_eq!((get(&pong, "Response"), get(&pong, "Ping")), (Some("Success"), Some("Pong")));
    assert_eq!(pong[0].0, "Response");
    assert_eq!(pong[1], ("ActionID".to_owned(), "p1".to_owned()));

    ami.send(&[("Action", "Command"), ("Command", "core show version"), ("ActionID", "c1")]);
    let out = ami.until("ActionID", "c1", Duration::from_secs(5));
    assert!(get(&out, "Output").unwrap().starts_with("Starling "), "{out:?}");

    ami.send(&[("Action", "DBPut"), ("Family", "fam"), ("Key", "k"), ("Val", "v1"), ("ActionID", "d1")]);
    assert_eq!(get(&ami.until("ActionID", "d1", Duration::from_secs(5)), "Response"), Some("Success"));
    ami.send(&[("Action", "DBGet"), ("Family", "fam"), ("Key", "k"), ("ActionID", "d2")]);
    let start = ami.until("ActionID", "d2", Duration::from_secs(5));
    assert_eq!(get(&start, "EventList"), Some("start"));
    let entry = ami.read().unwrap();
    assert_eq!((get(&entry, "Event"), get(&entry, "Val")), (Some("DBGetResponse"), Some("v1")));
    assert_eq!(get(&ami.read().unwrap(), "Event"), Some("DBGetComplete"));
    assert_eq!(server.rx("database get fam k"), "Value: v1\n");
    ami.send(&[("Action", "DBDel"), ("Family", "fam"), ("Key", "k"), ("ActionID", "d3")]);
    assert_eq!(get(&ami.until("ActionID", "d3", Duration::from_secs(5)), "Message"), Some("Key deleted successfully"));

    ami.send(&[("Action", "SIPpeers"), ("ActionID", "s1")]);
    let start = ami.until("ActionID", "s1", Duration::from_secs(5));
    assert_eq!(get(&start, "Message"), Some("Peer status list will follow"));
    // Peers in name order, as chan_sip lists them.
    for name in ["bob", "carol"] {
        let peer = ami.read().unwrap();
        assert_eq!((get(&peer, "Event"), get(&peer, "ObjectName")), (Some("PeerEntry"), Some(name)), "{peer:?}");
    }
    let done = ami.read().unwrap();
    assert_eq!((get(&done, "Event"), get(&done, "ListItems")), (Some("PeerlistComplete"), Some("2")));

    ami.send(&[("Action", "Bogus"), ("ActionID", "b1")]);
    let bogus = ami.until("ActionID", "b1", Duration::from_secs(5));
    assert!(get(&bogus, "Message").unwrap().starts_with("Invalid/unknown command: Bogus."), "{bogus:?}");

    let connected = server.rx("manager show connected");
    assert!(connected.contains("admin") && connected.contains("1 users connected."), "{connected}");
    assert!(server.rx("manager show commands").contains("SIPpeers"));

    // A user without write classes may not run Command.
    let mut reader = Ami::login(port, "reader", "r3ad");
    reader.send(&[("Action", "Command"), ("Command", "core show version"), ("ActionID", "x")]);
    assert_eq!(get(&reader.until("ActionID", "x", Duration::from_secs(5)), "Message"), Some("Permission denied"));

    // (admin reads `security`: reader's login came to it as a SuccessfulAuth event.)
    ami.send(&[("Action", "Logoff")]);
    ami.until("Response", "Goodbye", Duration::from_secs(5));
    assert!(ami.read().is_none());
}

/// A phone registering and unregistering is seen as PeerStatus Registered (with its Address)
/// and Unregistered, as chan_sip's registrar publishes them.
#[test]
fn registrations_are_peer_status_events() {
    let (_server, sip, port) = ami_pbx("amiregister", free_udp_port());
    let mut ami = Ami::login(port, "admin", "s3cret");
    let phone = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    phone.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let me = phone.local_addr().unwrap();
    let register = |cseq: u32, expires: u32| {
        let request = format!(
            "REGISTER sip:127.0.0.1:{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKreg{cseq}\r\n\
             From: <sip:carol@127.0.0.1>;tag=c1\r\nTo: <sip:carol@127.0.0.1>\r\nCall-ID: carol-reg@127.0.0.1\r\n\
             CSeq: {cseq} REGISTER\r\nContact: <sip:carol@{me}>\r\nExpires: {expires}\r\nMax-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n"
        );
        phone.send_to(request.as_bytes(), ("127.0.0.1", sip)).unwrap();
        let mut buffer = [0u8; 4096];
        let (len, _) = phone.recv_from(&mut buffer).expect("an answer to the REGISTER");
        let answer = String::from_utf8_lossy(&buffer[..len]).into_owned();
        assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
    };
    register(1, 300);
    let registered = ami.until("PeerStatus", "Registered", Duration::from_secs(5));
    assert_eq!(get(&registered, "Peer"), Some("SIP/carol"));
    assert_eq!(get(&registered, "ChannelType"), Some("SIP"));
    assert_eq!(get(&registered, "Address"), Some(me.to_string().as_str()));
    register(2, 0);
    let gone = ami.until("PeerStatus", "Unregistered", Duration::from_secs(5));
    assert_eq!(get(&gone, "Peer"), Some("SIP/carol"));
}

fn md5_hex(text: &str) -> String {
    // The test has no md5 crate: ask Python (on every machine the suite runs on).
    let out = std::process::Command::new("python3")
        .args(["-c", &format!("import hashlib;print(hashlib.md5({text:?}.encode()).hexdigest())")])
        .output()
        .unwrap();
    let hex = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(hex.len(), 32, "{hex}");
    hex
}

/// Originate of SIP/bob (a SIPp UAS) to extension 600: the session sees Newchannel,
/// DialBegin, DialEnd, Hangup and the Cdr, in that order; the async form ends with
/// OriginateResponse carrying the ActionID.
#[test]
fn originate_reports_the_call_as_asterisk_does() {
    let bob = SippUas::spawn_for("uas_answer.xml", 2);
    let (server, _sip, port) = ami_pbx("amiorig", bob.port);
    let mut ami = Ami::login(port, "admin", "s3cret");
    ami.send(&[
        ("Action", "Originate"),
        ("Channel", "SIP/bob"),
        ("Context", "default"),
        ("Exten", "600"),
        ("Priority", "1"),
        ("ActionID", "o1"),
    ]);
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline && !seen.contains(&"Cdr".to_owned()) {
        let m = ami.read().expect("events");
        if let Some(event) = get(&m, "Event") {
            if event == "Newchannel" {
                assert!(get(&m, "Channel").unwrap().starts_with("SIP/bob-"), "{m:?}");
                assert!(get(&m, "Uniqueid").is_some() && get(&m, "Linkedid").is_some(), "{m:?}");
            }
            if event == "Cdr" {
                assert_eq!(get(&m, "Disposition"), Some("ANSWERED"), "{m:?}");
                assert_eq!(get(&m, "Destination"), Some("600"), "{m:?}");
            }
            seen.push(event.to_owned());
        } else if get(&m, "ActionID") == Some("o1") {
            assert_eq!(get(&m, "Message"), Some("Originate successfully queued"), "{m:?}");
        }
    }
    let order: Vec<&str> = ["Newchannel", "DialBegin", "DialEnd", "Hangup", "Cdr"]
        .into_iter()
        .filter(|e| seen.iter().any(|s| s == e))
        .collect();
    assert_eq!(order.len(), 5, "{seen:?}\n{}", server.log_tail());
    let position = |e: &str| seen.iter().position(|s| s == e).unwrap();
    assert!(
        position("Newchannel") < position("DialBegin")
            && position("DialBegin") < position("DialEnd")
            && position("DialEnd") < position("Hangup")
            && position("Hangup") < position("Cdr"),
        "{seen:?}"
    );

    ami.send(&[
        ("Action", "Originate"),
        ("Channel", "SIP/bob"),
        ("Exten", "600"),
        ("Async", "true"),
        ("ActionID", "o2"),
    ]);
    let queued = ami.until("ActionID", "o2", Duration::from_secs(5));
    assert_eq!(get(&queued, "Response"), Some("Success"));
    let response = ami.until("Event", "OriginateResponse", Duration::from_secs(15));
    assert_eq!(
        (get(&response, "ActionID"), get(&response, "Response"), get(&response, "Reason")),
        (Some("o2"), Some("Success"), Some("4")),
        "{response:?}"
    );
    let (code, out) = bob.finish();
    assert_eq!(code, 0, "{out}");
}

/// The name of the SIP channel up now (waiting for it).
fn sip_channel(server: &Server) -> String {
    eventually(Duration::from_secs(10), || {
        let channels = server.rx("core show channels");
        channels.lines().find(|l| l.starts_with("SIP/")).map(|l| l.split_whitespace().next().unwrap().to_owned())
    })
    .expect("a channel")
}

/// Redirect and Setvar/Getvar on a live call; Hangup ends it.
#[test]
fn redirect_setvar_and_hangup_reach_a_live_channel() {
    let (server, sip, port) = ami_pbx("amiredirect", 1);
    let caller = std::thread::spawn(move || run_sipp(sip, "invite_pbx_hangs_up.xml", "700", "", "", 1));
    let channel = sip_channel(&server);
    let mut ami = Ami::login(port, "admin", "s3cret");
    ami.send(&[
        ("Action", "Setvar"),
        ("Channel", &channel),
        ("Variable", "COLOUR"),
        ("Value", "blue"),
        ("ActionID", "s"),
    ]);
    assert_eq!(get(&ami.until("ActionID", "s", Duration::from_secs(5)), "Response"), Some("Success"));
    // Applied when the channel next reads (Wait reads all along).
    let value = eventually(Duration::from_secs(5), || {
        ami.send(&[("Action", "Getvar"), ("Channel", &channel), ("Variable", "COLOUR"), ("ActionID", "g")]);
        let m = ami.until("ActionID", "g", Duration::from_secs(5));
        (get(&m, "Value") == Some("blue")).then_some(())
    });
    assert!(value.is_some(), "Getvar sees what Setvar set");
    ami.send(&[("Action", "CoreShowChannels"), ("ActionID", "c")]);
    ami.until("ActionID", "c", Duration::from_secs(5));
    let entry = ami.read().unwrap();
    assert_eq!(
        (get(&entry, "Event"), get(&entry, "Channel")),
        (Some("CoreShowChannel"), Some(channel.as_str())),
        "{entry:?}"
    );
    assert_eq!(get(&entry, "Application"), Some("Wait"), "{entry:?}");
    ami.send(&[
        ("Action", "Redirect"),
        ("Channel", &channel),
        ("Context", "default"),
        ("Exten", "701"),
        ("Priority", "1"),
        ("ActionID", "r"),
    ]);
    assert_eq!(get(&ami.until("ActionID", "r", Duration::from_secs(5)), "Message"), Some("Redirect successful"));
    let (code, out) = caller.join().unwrap();
    assert_eq!(code, 0, "the call went on at 701, which hangs up: {out}\n{}", server.log_tail());
    assert!(server.log().contains("Executing [701@default:1] Set("), "{}", server.log_tail());

    let caller = std::thread::spawn(move || run_sipp(sip, "invite_pbx_hangs_up.xml", "700", "", "", 1));
    let channel = sip_channel(&server);
    ami.send(&[("Action", "Hangup"), ("Channel", &channel), ("ActionID", "h")]);
    assert_eq!(get(&ami.until("ActionID", "h", Duration::from_secs(5)), "Message"), Some("Channel Hungup"));
    let (code, out) = caller.join().unwrap();
    assert_eq!(code, 0, "{out}");
}

/// Sends an action and reads until its reply, keeping the events that come meanwhile.
fn action(ami: &mut Ami, headers: &[(&str, &str)], events: &mut Vec<Msg>) -> Msg {
    let id = headers.iter().find(|(k, _)| *k == "ActionID").map(|(_, v)| *v).expect("an ActionID");
    ami.send(headers);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let m = ami.read().expect("the session stays open");
        if get(&m, "Event").is_some() && get(&m, "ActionID").is_none() {
            events.push(m);
        } else if get(&m, "ActionID") == Some(id) {
            return m;
        }
    }
    panic!("no reply to {headers:?}");
}

/// Reads events (keeping them) until one satisfies `done`.
fn events_until(ami: &mut Ami, events: &mut Vec<Msg>, what: &str, done: impl Fn(&Msg) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let m = ami.read().unwrap_or_else(|| panic!("closed while waiting for {what}"));
        let found = done(&m);
        events.push(m);
        if found {
            return;
        }
    }
    panic!("no {what} within 15 s: {events:#?}");
}

/// A SIPp call to 900 (Set(CALLERID(num)), Set(CALLERID(name)), Set(COLOUR), Wait) that presses
/// 1 (RFC 4733) and hangs up: the manager sees Newexten for every step, NewCallerid for each
/// change, VarSet (varsetevents=yes), DTMFBegin/DTMFEnd, HangupRequest then Hangup, each with
/// Asterisk 20's fields and class. Meanwhile Getvar evaluates functions on the channel
/// (`CALLERID(num)`, `CDR(src)`), built-ins and variables, globals and functions without a
/// channel, and Status lists Asterisk 20's fields with the variables asked for.
#[test]
fn dialplan_steps_caller_id_dtmf_and_getvar_as_asterisk() {
    let (server, sip, port) = ami_pbx_with("amisteps", 1, "varsetevents=yes\n");
    let mut ami = Ami::login(port, "admin", "s3cret");
    let mut events = Vec::new();
    let reply = action(
        &mut ami,
        &[("Action", "DBPut"), ("Family", "ami"), ("Key", "floor"), ("Val", "3"), ("ActionID", "db")],
        &mut events,
    );
    assert_eq!(get(&reply, "Response"), Some("Success"), "{reply:?}");
    let caller = std::thread::spawn(move || run_sipp(sip, "invite_dtmf.xml", "900", "", "", 1));
    events_until(&mut ami, &mut events, "the second NewCallerid", |m| {
        get(m, "Event") == Some("NewCallerid") && get(m, "CallerIDName") == Some("Front Desk")
    });
    let channel = get(events.last().unwrap(), "Channel").unwrap().to_owned();
    let mut getvar = |variable: &str, channel: Option<&str>, events: &mut Vec<Msg>| {
        let mut headers = vec![("Action", "Getvar"), ("Variable", variable), ("ActionID", "gv")];
        headers.extend(channel.map(|c| ("Channel", c)));
        let reply = action(&mut ami, &headers, events);
        assert_eq!((get(&reply, "Response"), get(&reply, "Variable")), (Some("Success"), Some(variable)), "{reply:?}");
        get(&reply, "Value").unwrap_or_default().to_owned()
    };
    assert_eq!(getvar("CALLERID(num)", Some(&channel), &mut events), "5551234");
    assert_eq!(getvar("CALLERID(name)", Some(&channel), &mut events), "Front Desk");
    assert_eq!(getvar("CDR(src)", Some(&channel), &mut events), "5551234");
    assert_eq!(getvar("CDR(dst)", Some(&channel), &mut events), "900");
    assert_eq!(getvar("CHANNEL", Some(&channel), &mut events), channel);
    assert_eq!(getvar("SITE", Some(&channel), &mut events), "north", "a global, seen from the channel");
    assert_eq!(getvar("SITE", None, &mut events), "north");
    assert_eq!(getvar("DB_EXISTS(ami/floor)", None, &mut events), "1", "a function without a channel");
    assert_eq!(getvar("DB(ami/floor)", None, &mut events), "", "DB is dangerous from the manager");
    // COLOUR is set right after the second NewCallerid: ask until the channel has run it.
    let colour = (0..20).find_map(|_| {
        let value = getvar("COLOUR", Some(&channel), &mut events);
        (value == "green").then_some(value).or_else(|| {
            std::thread::sleep(Duration::from_millis(50));
            None
        })
    });
    assert_eq!(colour.as_deref(), Some("green"));

    let listed = action(
        &mut ami,
        &[("Action", "Status"), ("Channel", &channel), ("Variables", "COLOUR,CALLERID(name)"), ("ActionID", "st")],
        &mut events,
    );
    assert_eq!(get(&listed, "EventList"), Some("start"), "{listed:?}");
    let status = ami.read().unwrap();
    assert_eq!(
        (get(&status, "Event"), get(&status, "Channel")),
        (Some("Status"), Some(channel.as_str())),
        "{status:?}"
    );
    let keys: Vec<&str> =
        status.iter().map(|(k, _)| k.as_str()).filter(|k| !["Privilege", "ActionID"].contains(k)).collect();
    let expected = [
        "Event",
        "Channel",
        "ChannelState",
        "ChannelStateDesc",
        "CallerIDNum",
        "CallerIDName",
        "ConnectedLineNum",
        "ConnectedLineName",
        "Language",
        "AccountCode",
        "Context",
        "Exten",
        "Priority",
        "Uniqueid",
        "Linkedid",
        "Type",
        "DNID",
        "EffectiveConnectedLineNum",
        "EffectiveConnectedLineName",
        "TimeToHangup",
        "BridgeID",
        "Application",
        "Data",
        "Nativeformats",
        "Readformat",
        "Readtrans",
        "Writeformat",
        "Writetrans",
        "Callgroup",
        "Pickupgroup",
        "Seconds",
        "Variable",
        "Variable",
    ];
    assert_eq!(keys, expected, "{status:?}");
    let variables: Vec<&str> = status.iter().filter(|(k, _)| k == "Variable").map(|(_, v)| v.as_str()).collect();
    assert_eq!(variables, ["COLOUR=green", "CALLERID(name)=Front Desk"]);
    assert_eq!((get(&status, "Type"), get(&status, "Application")), (Some("SIP"), Some("Wait")), "{status:?}");
    assert_eq!((get(&status, "CallerIDNum"), get(&status, "Readformat")), (Some("5551234"), Some("ulaw")));
    let complete = ami.read().unwrap();
    assert_eq!((get(&complete, "Event"), get(&complete, "ListItems")), (Some("StatusComplete"), Some("1")));

    events_until(&mut ami, &mut events, "the Hangup", |m| {
        get(m, "Event") == Some("Hangup") && get(m, "Channel") == Some(channel.as_str())
    });
    let (code, out) = caller.join().unwrap();
    assert_eq!(code, 0, "{out}\n{}", server.log_tail());

    let of = |name: &str| -> Vec<&Msg> {
        events.iter().filter(|m| get(m, "Event") == Some(name) && get(m, "Channel") == Some(channel.as_str())).collect()
    };
    // Newexten: one per step, the snapshot then Extension, Application, AppData.
    let steps: Vec<(&str, &str)> =
        of("Newexten").iter().map(|m| (get(m, "Application").unwrap(), get(m, "AppData").unwrap())).collect();
    assert_eq!(
        steps,
        [
            ("Answer", ""),
            ("Set", "CALLERID(num)=5551234"),
            ("Set", "CALLERID(name)=Front Desk"),
            ("Set", "COLOUR=green"),
            ("Wait", "10")
        ]
    );
    let newexten = of("Newexten")[1];
    assert_eq!(get(newexten, "Privilege"), Some("dialplan,all"));
    let tail: Vec<&str> = newexten.iter().rev().take(4).map(|(k, _)| k.as_str()).collect();
    assert_eq!(tail, ["AppData", "Application", "Extension", "Linkedid"], "{newexten:?}");
    assert_eq!((get(newexten, "Extension"), get(newexten, "Priority")), (Some("900"), Some("2")));
    // NewCallerid: one per change, the new caller ID in the snapshot, then CID-CallingPres.
    let callerids: Vec<(&str, &str)> =
        of("NewCallerid").iter().map(|m| (get(m, "CallerIDNum").unwrap(), get(m, "CallerIDName").unwrap())).collect();
    assert_eq!(callerids, [("5551234", "A Guest"), ("5551234", "Front Desk")]);
    let newcallerid = of("NewCallerid")[0];
    assert_eq!(get(newcallerid, "Privilege"), Some("call,all"));
    assert_eq!(
        newcallerid.last().unwrap(),
        &("CID-CallingPres".to_owned(), "0 (Presentation Allowed, Not Screened)".to_owned())
    );
    // VarSet, with varsetevents=yes.
    let colour = of("VarSet").into_iter().find(|m| get(m, "Variable") == Some("COLOUR")).expect("VarSet COLOUR");
    assert_eq!((get(colour, "Value"), get(colour, "Privilege")), (Some("green"), Some("dialplan,all")));
    // The key SIPp pressed.
    let begin = of("DTMFBegin");
    let end = of("DTMFEnd");
    assert_eq!(begin.len(), 1, "{begin:?}");
    assert_eq!(end.len(), 1, "{end:?}");
    assert_eq!((get(begin[0], "Digit"), get(begin[0], "Direction")), (Some("1"), Some("Received")));
    assert_eq!(get(begin[0], "Privilege"), Some("dtmf,all"));
    assert_eq!((get(end[0], "Digit"), get(end[0], "Direction")), (Some("1"), Some("Received")));
    let tail: Vec<&str> = end[0].iter().rev().take(3).map(|(k, _)| k.as_str()).collect();
    assert_eq!(tail, ["Direction", "DurationMs", "Digit"], "{:?}", end[0]);
    assert!(get(end[0], "DurationMs").unwrap().parse::<u32>().unwrap() > 0, "{:?}", end[0]);
    // The caller's BYE: HangupRequest (its cause) before the Hangup.
    let position = |name: &str| {
        events.iter().position(|m| get(m, "Event") == Some(name) && get(m, "Channel") == Some(channel.as_str()))
    };
    let request = of("HangupRequest");
    assert_eq!(request.len(), 1, "{events:#?}");
    assert_eq!((get(request[0], "Cause"), get(request[0], "Privilege")), (Some("16"), Some("call,all")));
    assert!(position("HangupRequest") < position("Hangup"), "{events:#?}");
}

/// 50 sessions each receive every event of 20 calls.
#[test]
fn fifty_sessions_get_every_event() {
    let (_server, sip, port) = ami_pbx("amifanout", 1);
    let mut sessions: Vec<Ami> = (0..50).map(|_| Ami::login(port, "admin", "s3cret")).collect();
    let (code, out) = run_sipp_with(sip, "invite_pbx_hangs_up.xml", &["-s", "600", "-m", "20", "-l", "10", "-r", "20"]);
    assert_eq!(code, 0, "{out}");
    for (i, ami) in sessions.iter_mut().enumerate() {
        let (mut newchannels, mut hangups, mut cdrs) = (0, 0, 0);
        while cdrs < 20 {
            let m = ami.read().unwrap_or_else(|| panic!("session {i} closed"));
            match get(&m, "Event") {
                Some("Newchannel") => newchannels += 1,
                Some("Hangup") => hangups += 1,
                Some("Cdr") => cdrs += 1,
                _ => {}
            }
        }
        assert_eq!((newchannels, hangups), (20, 20), "session {i}");
    }
}

fn small_receive_buffer(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 4096;
    // SAFETY: setsockopt on an open socket with a pointer to a c_int and its size.
    let result = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(result, 0, "SO_RCVBUF: {}", std::io::Error::last_os_error());
}

/// A session that stops reading is dropped with a log line once its socket stays full, while
/// the calls that make the events (3,000 VarSet and 9,000 Newexten events each) go on and
/// another session, one that asked for the call and cdr classes as a wallboard does, keeps
/// receiving.
#[test]
fn a_session_that_stops_reading_is_dropped() {
    let (server, sip, port) = ami_pbx_with("amistuck", 1, "varsetevents=yes\n");
    let stuck = Ami::login(port, "admin", "s3cret");
    // A small receive buffer: what the kernels hold for a reader that stopped (loopback TCP
    // grows to megabytes otherwise) stays well under what the calls send, however slowly they
    // run on a busy machine.
    small_receive_buffer(&stuck.writer);
    let mut healthy = Ami::connect(port);
    healthy.send(&[("Action", "Login"), ("Username", "admin"), ("Secret", "s3cret"), ("Events", "call,cdr")]);
    assert_eq!(get(&healthy.read().unwrap(), "Response"), Some("Success"));
    let reader = std::thread::spawn(move || {
        let mut cdrs = 0;
        while cdrs < 5 {
            match healthy.read() {
                Some(m) if get(&m, "Event") == Some("Cdr") => cdrs += 1,
                Some(_) => {}
                None => return None,
            }
        }
        Some(healthy)
    });
    let (code, out) = run_sipp_with(sip, "invite_pbx_hangs_up.xml", &["-s", "800", "-m", "5", "-l", "5", "-r", "5"]);
    assert_eq!(code, 0, "calls go on: {out}\n{}", server.log_tail());
    let healthy = reader.join().unwrap();
    assert!(
        healthy.is_some(),
        "the healthy session got every call's Cdr: {}",
        server.log().lines().filter(|l| l.contains("disconnected")).collect::<Vec<_>>().join("\n")
    );
    let dropped = eventually(Duration::from_secs(5), || server.log().contains("disconnected: ").then_some(()));
    assert!(dropped.is_some(), "the stuck session is dropped\n{}", server.log_tail());
    assert!(server.rx("manager show connected").contains("1 users connected."));
    drop((stuck, healthy));
}

/// The Python of `target/ami-venv`, with panoramisk from PyPI (made here when `.ci/run` has
/// not made it already).
pub(crate) fn panoramisk_python() -> std::path::PathBuf {
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ami-venv");
    let python = venv.join("bin/python3");
    let ready = |python: &std::path::Path| {
        std::process::Command::new(python).args(["-c", "import panoramisk"]).status().is_ok_and(|s| s.success())
    };
    if !ready(&python) {
        let made = std::process::Command::new("python3").arg("-m").arg("venv").arg(&venv).status().unwrap();
        assert!(made.success(), "python3 -m venv (Debian's python3-venv)");
        let mut pip =
            std::process::Command::new(venv.join("bin/pip")).args(["install", "-q", "panoramisk"]).spawn().unwrap();
        let status = wait_timeout(&mut pip, Duration::from_secs(180)).expect("pip install panoramisk in time");
        assert!(status.success() && ready(&python), "pip install panoramisk");
    }
    python
}

/// Acceptance: panoramisk logs in, sees FullyBooted, originates SIP/bob to 600 and receives
/// Newchannel, DialBegin, DialEnd, Hangup and Cdr in that order.
#[test]
fn panoramisk_drives_starling_unchanged() {
    let python = panoramisk_python();
    let bob = SippUas::spawn("uas_answer.xml");
    let (server, _sip, port) = ami_pbx("amipanoramisk", bob.port);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ami/originate.py");
    let mut child = std::process::Command::new(python)
        .arg(script)
        .args([port.to_string().as_str(), "admin", "s3cret"])
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
    assert!(status.success(), "{text}\n{}", server.log_tail());
    assert!(text.contains("originate: Success Originate successfully queued"), "{text}");
    assert!(text.contains("response: OriginateResponse Success 4"), "{text}");
    let (code, out) = bob.finish();
    assert_eq!(code, 0, "{out}");
}

/// Sessions that connect and never log in (a scan, a flood): past `authlimit` they are closed
/// at once without a greeting, the rest after `authtimeout`; an admin still logs in, and a
/// logged-in session gives its place back.
#[test]
fn sessions_that_never_log_in_are_bounded_by_authlimit_and_authtimeout() {
    let (server, _sip, port) = ami_pbx_with("amiauthlimit", 1, "authlimit=150\nauthtimeout=3");
    let connect = || {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        BufReader::new(stream)
    };
    // Whether the server greeted the connection (else it closed it without a word).
    let greeted = |reader: &mut BufReader<TcpStream>| {
        let mut line = String::new();
        matches!(reader.read_line(&mut line), Ok(n) if n > 0 && line == "Asterisk Call Manager/9.0.0\r\n")
    };
    let mut idle: Vec<_> = (0..200).map(|_| connect()).collect();
    let served = idle.iter_mut().map(&greeted).filter(|&g| g).count();
    assert_eq!(served, 150, "authlimit=150 of 200 connections\n{}", server.log_tail());

    // The 150 are closed after authtimeout (3 s), not before.
    let mut closed = 0;
    for reader in &mut idle {
        let mut rest = String::new();
        if let Ok(0) = reader.read_line(&mut rest) {
            closed += 1;
        }
    }
    assert_eq!(closed, 200, "every connection ends");
    let timed_out = server.log().matches("disconnected: it did not log in in time").count();
    assert_eq!(timed_out, 150, "the greeted ones were closed by authtimeout\n{}", server.log_tail());
    drop(idle);

    // Nobody waits to log in now: an admin logs in, and gives the place back.
    let _admin = Ami::login(port, "admin", "s3cret");
    let mut again: Vec<_> = (0..150).map(|_| connect()).collect();
    let served = again.iter_mut().map(greeted).filter(|&g| g).count();
    assert_eq!(served, 150, "the logged-in admin holds no place of the 150\n{}", server.log_tail());
    assert!(server.rx("manager show connected").contains("1 users connected."));
}

/// Originate of anything that can run a program (System, ExecIf(...?System()), AGI...) or data
/// that evaluates SHELL/EVAL needs the `system` write class, as Asterisk's `action_originate`.
#[test]
fn originate_of_what_runs_programs_needs_the_system_class() {
    let (server, _sip, port) = ami_pbx("amioriginatesystem", 1);
    let conf = server.dir.etc().join("manager.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str("\n[dialer]\nsecret=d1al\nread=call\nwrite=call,originate\n");
    std::fs::write(&conf, text).unwrap();
    server.rx("module reload res_manager");
    assert!(server.rx("manager show users").contains("dialer"), "{}", server.log_tail());
    assert!(server.rx("module load app_exec").contains("Loaded"), "{}", server.log_tail());
    let touched = server.dir.path.join("touched");
    let data = format!("1?System(touch {})", touched.display());
    let originate = |ami: &mut Ami, app: &str, data: &str, id: &str| {
        ami.send(&[
            ("Action", "Originate"),
            ("Channel", "Local/600@default"),
            ("Application", app),
            ("Data", data),
            ("ActionID", id),
        ]);
        let reply = ami.until("ActionID", id, Duration::from_secs(15));
        get(&reply, "Message").unwrap_or("").to_owned()
    };
    let mut dialer = Ami::login(port, "dialer", "d1al");
    assert_eq!(originate(&mut dialer, "ExecIf", &data, "o1"), "Originate Access Forbidden: Application");
    assert_eq!(originate(&mut dialer, "TryExec", "System(id)", "o2"), "Originate Access Forbidden: Application");
    assert_eq!(originate(&mut dialer, "NoOp", "${SHELL(id)}", "o3"), "Originate Access Forbidden: Data");
    assert_eq!(originate(&mut dialer, "Wait", "1", "o4"), "Originate successfully queued");
    assert!(!touched.exists(), "nothing ran");
    let mut admin = Ami::login(port, "admin", "s3cret");
    assert_eq!(originate(&mut admin, "ExecIf", "1?NoOp(allowed)", "o5"), "Originate successfully queued");
}

/// Starling with res_manager, app_system (enabled), app_exec, func_db and a dialplan, no SIP;
/// `options` go in starling.conf `[options]`. Users: `admin` (every class, `system` too) and
/// `dialer` (`call,originate`: no `system`). 610 runs SHELL from the dialplan.
fn dangerous_pbx(name: &str, options: &str) -> (Server, u16) {
    let port = free_tcp_port();
    let dir = TestDir::new(name);
    dir.write_starling_conf(&moddir(), options);
    let loads: String = ["pbx_config", "app_exec", "app_system", "app_verbose", "func_db", "res_manager"]
        .iter()
        .map(|m| format!("load => {m}.so\n"))
        .collect();
    dir.write("modules.conf", &format!("[modules]\nautoload = no\n{loads}"));
    dir.write("app_system.conf", "[general]\nenabled = yes\n");
    let ran = dir.path.join("dialplan-ran");
    dir.write(
        "extensions.conf",
        &format!(
            "[default]\nexten => 700,1,Answer()\n same => n,Wait(30)\n same => n,Hangup()\n\
             exten => 610,1,Answer()\n same => n,Set(OUT=${{SHELL(touch {} && printf dp)}})\n \
             same => n,Verbose(1,DIALPLAN SHELL=${{OUT}}.)\n same => n,Wait(1)\n same => n,Hangup()\n",
            ran.display()
        ),
    );
    dir.write(
        "manager.conf",
        &format!(
            "[general]\nenabled=yes\nport={port}\nbindaddr=127.0.0.1\n\n[admin]\nsecret=s3cret\nread=all\nwrite=all\n\n\
             [dialer]\nsecret=d1al\nread=call\nwrite=call,originate\n"
        ),
    );
    let server = Server::start(dir);
    (server, port)
}

/// Sends `headers` (with an ActionID) and gives the reply's `Response` and `Message`.
fn ask(ami: &mut Ami, headers: &[(&str, &str)]) -> (String, String, Msg) {
    let reply = action(ami, headers, &mut Vec::new());
    let field = |k| get(&reply, k).unwrap_or("").to_owned();
    (field("Response"), field("Message"), reply)
}

/// `Status` of `channel` asking for `variables`: the `Variable` headers of its Status event.
fn status_variables(ami: &mut Ami, channel: &str, variables: &str) -> Vec<String> {
    ami.send(&[("Action", "Status"), ("Channel", channel), ("Variables", variables), ("ActionID", "stv")]);
    let first = ami.until("ActionID", "stv", Duration::from_secs(10));
    assert_eq!(get(&first, "Response"), Some("Success"), "{first:?}");
    let status = ami.until("Event", "Status", Duration::from_secs(10));
    ami.until("Event", "StatusComplete", Duration::from_secs(10));
    status.iter().filter(|(k, _)| k == "Variable").map(|(_, v)| v.clone()).collect()
}

/// How many times `line` is in the log.
fn log_count(server: &Server, line: &str) -> usize {
    server.log().matches(line).count()
}

/// The default (`live_dangerously = no`): a manager user without `system` cannot name SHELL
/// or EVAL (Getvar, Status, Originate's Data and Variable) nor originate what runs programs;
/// one with `system` gets dangerous functions refused where the manager evaluates them
/// (Getvar with and without a channel, Status, Setvar of DB()) with Asterisk's ERROR line. The
/// dialplan still runs SHELL, and `system` still originates `ExecIf(1?System(...))`.
#[test]
fn the_manager_cannot_reach_dangerous_functions_by_default() {
    let (server, port) = dangerous_pbx("amidanger", "");
    let marker = server.dir.path.join("shell-ran");
    let touch = format!("SHELL(touch {})", marker.display());
    let mut dialer = Ami::login(port, "dialer", "d1al");
    let (response, message, _) = ask(&mut dialer, &[("Action", "Getvar"), ("Variable", &touch), ("ActionID", "g1")]);
    assert_eq!((response.as_str(), message.as_str()), ("Error", "GetVar Access Forbidden: Variable"));
    assert!(server.log().contains("Manager 'dialer' from 127.0.0.1: GetVar Access Forbidden: Variable"));
    let (response, message, _) =
        ask(&mut dialer, &[("Action", "Status"), ("Variables", &format!("CHANNEL,{touch}")), ("ActionID", "s1")]);
    assert_eq!((response.as_str(), message.as_str()), ("Error", "Status Access Forbidden: Variables"));
    let system = format!("1?System(touch {})", marker.display());
    let originate = |ami: &mut Ami, app: &str, data: &str, variable: &str, id: &str| {
        let mut headers =
            vec![("Action", "Originate"), ("Channel", "Local/700@default"), ("Application", app), ("Data", data)];
        if !variable.is_empty() {
            headers.push(("Variable", variable));
        }
        headers.push(("ActionID", id));
        let (_, message, _) = ask(ami, &headers);
        message
    };
    assert_eq!(originate(&mut dialer, "ExecIf", &system, "", "o1"), "Originate Access Forbidden: Application");
    let variable = format!("X=${{{touch}}}");
    assert_eq!(originate(&mut dialer, "Wait", "1", &variable, "o2"), "Originate Access Forbidden: Variable");

    // With the system class, the manager still cannot run them: each is blocked and logged.
    let mut admin = Ami::login(port, "admin", "s3cret");
    let (response, _, reply) = ask(&mut admin, &[("Action", "Getvar"), ("Variable", &touch), ("ActionID", "g2")]);
    assert_eq!((response.as_str(), get(&reply, "Value")), ("Success", Some("")), "{reply:?}");
    assert_eq!(log_count(&server, "Dangerous function SHELL read blocked"), 1, "{}", server.log_tail());
    assert_eq!(originate(&mut admin, "Wait", "30", "", "o3"), "Originate successfully queued");
    let (_, _, listed) = ask(&mut admin, &[("Action", "Status"), ("ActionID", "s2")]);
    assert_eq!(get(&listed, "Response"), Some("Success"));
    let channel = admin.until("Event", "Status", Duration::from_secs(10));
    let channel = get(&channel, "Channel").unwrap().to_owned();
    admin.until("Event", "StatusComplete", Duration::from_secs(10));
    let (response, _, reply) =
        ask(&mut admin, &[("Action", "Getvar"), ("Channel", &channel), ("Variable", &touch), ("ActionID", "g3")]);
    assert_eq!((response.as_str(), get(&reply, "Value")), ("Success", Some("")), "{reply:?}");
    assert_eq!(status_variables(&mut admin, &channel, &touch), [format!("{touch}=")]);
    assert_eq!(log_count(&server, "Dangerous function SHELL read blocked"), 3, "{}", server.log_tail());
    for (id, channel) in [("w1", None), ("w2", Some(channel.as_str()))] {
        let mut headers = vec![("Action", "Setvar"), ("Variable", "DB(danger/key)"), ("Value", "x")];
        headers.extend(channel.map(|c| ("Channel", c)));
        headers.push(("ActionID", id));
        let (response, message, _) = ask(&mut admin, &headers);
        assert_eq!((response.as_str(), message.as_str()), ("Error", "Variable not set"), "{id}");
    }
    assert_eq!(log_count(&server, "Dangerous function DB write blocked"), 2, "{}", server.log_tail());
    assert!(!server.rx("database show danger").contains("/danger/key"), "nothing written");
    assert_eq!(originate(&mut admin, "Wait", "1", &variable, "o4"), "Originate Access Forbidden: Variable");
    assert!(!marker.exists(), "no SHELL ran from the manager");

    // The system class originates what runs programs (Asterisk's rule); the dialplan runs SHELL.
    assert_eq!(originate(&mut admin, "ExecIf", &system, "", "o5"), "Originate successfully queued");
    assert!(eventually(Duration::from_secs(10), || marker.exists().then_some(())).is_some(), "{}", server.log_tail());
    let (_, message, _) = ask(
        &mut admin,
        &[
            ("Action", "Originate"),
            ("Channel", "Local/610@default"),
            ("Application", "Wait"),
            ("Data", "1"),
            ("ActionID", "o6"),
        ],
    );
    assert_eq!(message, "Originate successfully queued");
    let ran = eventually(Duration::from_secs(10), || server.log().contains("DIALPLAN SHELL=dp.").then_some(()));
    assert!(ran.is_some(), "{}", server.log_tail());
    assert!(server.dir.path.join("dialplan-ran").exists());
    assert_eq!(log_count(&server, "Dangerous function SHELL"), 3, "the dialplan's SHELL is not blocked");
}

/// `live_dangerously = yes`: a user with the `system` class reads SHELL and writes DB from the
/// manager, and originates `ExecIf(1?System(...))` and variables naming SHELL; one without the
/// class is still refused, as in Asterisk.
#[test]
fn live_dangerously_lets_the_system_class_run_them() {
    let (server, port) = dangerous_pbx("amilivedanger", "live_dangerously = yes");
    let mut admin = Ami::login(port, "admin", "s3cret");
    let (response, _, reply) =
        ask(&mut admin, &[("Action", "Getvar"), ("Variable", "SHELL(echo hi)"), ("ActionID", "g1")]);
    assert_eq!((response.as_str(), get(&reply, "Value")), ("Success", Some("hi")), "{reply:?}");
    let (response, message, _) =
        ask(&mut admin, &[("Action", "Setvar"), ("Variable", "DB(danger/key)"), ("Value", "x"), ("ActionID", "w1")]);
    assert_eq!((response.as_str(), message.as_str()), ("Success", "Variable Set"));
    let (_, _, reply) = ask(&mut admin, &[("Action", "Getvar"), ("Variable", "DB(danger/key)"), ("ActionID", "g2")]);
    assert_eq!(get(&reply, "Value"), Some("x"), "{reply:?}");
    let marker = server.dir.path.join("system-ran");
    let system = format!("1?System(touch {})", marker.display());
    let (_, message, _) = ask(
        &mut admin,
        &[
            ("Action", "Originate"),
            ("Channel", "Local/700@default"),
            ("Application", "ExecIf"),
            ("Data", &system),
            ("Variable", "X=${SHELL(echo hi)}"),
            ("ActionID", "o1"),
        ],
    );
    assert_eq!(message, "Originate successfully queued");
    assert!(eventually(Duration::from_secs(10), || marker.exists().then_some(())).is_some(), "{}", server.log_tail());
    assert!(!server.log().contains("Dangerous function"), "{}", server.log_tail());

    let mut dialer = Ami::login(port, "dialer", "d1al");
    let (_, message, _) = ask(&mut dialer, &[("Action", "Getvar"), ("Variable", "SHELL(echo hi)"), ("ActionID", "g3")]);
    assert_eq!(message, "GetVar Access Forbidden: Variable");
    let (_, message, _) = ask(
        &mut dialer,
        &[
            ("Action", "Originate"),
            ("Channel", "Local/700@default"),
            ("Application", "ExecIf"),
            ("Data", &system),
            ("ActionID", "o2"),
        ],
    );
    assert_eq!(message, "Originate Access Forbidden: Application");
}

/// The header names of a message, in order (without `ActionID`, which is the client's).
fn keys(m: &Msg) -> Vec<&str> {
    m.iter().map(|(k, _)| k.as_str()).filter(|k| *k != "ActionID").collect()
}

/// Asks and returns the reply (the first message carrying the ActionID), skipping events.
fn reply(ami: &mut Ami, headers: &[(&str, &str)]) -> Msg {
    let mut ignored = Vec::new();
    action(ami, headers, &mut ignored)
}

/// Asterisk 20's channel snapshot (`ast_manager_build_channel_state_string`), in order.
const CHANNEL_SNAPSHOT: [&str; 14] = [
    "Channel",
    "ChannelState",
    "ChannelStateDesc",
    "CallerIDNum",
    "CallerIDName",
    "ConnectedLineNum",
    "ConnectedLineName",
    "Language",
    "AccountCode",
    "Context",
    "Exten",
    "Priority",
    "Uniqueid",
    "Linkedid",
];

/// Asterisk 20's bridge snapshot (`ast_manager_build_bridge_state_string`), in order.
const BRIDGE_SNAPSHOT: [&str; 7] = [
    "BridgeUniqueid",
    "BridgeType",
    "BridgeTechnology",
    "BridgeCreator",
    "BridgeName",
    "BridgeNumChannels",
    "BridgeVideoSourceMode",
];

/// CoreStatus, CoreSettings, ListCommands, Events, Reload, ModuleLoad and ModuleCheck answer
/// with manager.c's headers, in its order, and its Response/Message texts.
#[test]
fn core_actions_answer_as_manager_c() {
    let (_server, sip, port) = ami_pbx("amicore", 1);
    let mut ami = Ami::login(port, "admin", "s3cret");

    let status = reply(&mut ami, &[("Action", "CoreStatus"), ("ActionID", "cs")]);
    assert_eq!(
        keys(&status),
        ["Response", "CoreStartupDate", "CoreStartupTime", "CoreReloadDate", "CoreReloadTime", "CoreCurrentCalls"],
        "{status:?}"
    );
    assert_eq!(status[1], ("ActionID".to_owned(), "cs".to_owned()));
    assert_eq!((get(&status, "Response"), get(&status, "CoreCurrentCalls")), (Some("Success"), Some("0")));
    let date = get(&status, "CoreStartupDate").unwrap();
    let time = get(&status, "CoreStartupTime").unwrap();
    assert!(date.len() == 10 && date.as_bytes()[4] == b'-' && date.as_bytes()[7] == b'-', "%Y-%m-%d: {date}");
    assert!(time.len() == 8 && time.as_bytes()[2] == b':' && time.as_bytes()[5] == b':', "%H:%M:%S: {time}");

    let settings = reply(&mut ami, &[("Action", "CoreSettings"), ("ActionID", "st")]);
    assert_eq!(
        keys(&settings),
        [
            "Response",
            "AMIversion",
            "AsteriskVersion",
            "SystemName",
            "CoreMaxCalls",
            "CoreMaxLoadAvg",
            "CoreRunUser",
            "CoreRunGroup",
            "CoreMaxFilehandles",
            "CoreRealTimeEnabled",
            "CoreCDRenabled",
            "CoreHTTPenabled",
            "SoundsSearchCustomDir"
        ],
        "{settings:?}"
    );
    for (key, value) in [
        ("Response", "Success"),
        ("AMIversion", "9.0.0"),
        ("CoreMaxCalls", "0"),
        ("CoreMaxLoadAvg", "0.000000"),
        ("CoreRunUser", ""),
        ("CoreRunGroup", ""),
        ("CoreMaxFilehandles", "0"),
        ("CoreRealTimeEnabled", "No"),
        ("CoreCDRenabled", "Yes"),
        ("CoreHTTPenabled", "No"),
        ("SoundsSearchCustomDir", "No"),
    ] {
        assert_eq!(get(&settings, key), Some(value), "{key}: {settings:?}");
    }
    assert!(get(&settings, "AsteriskVersion").unwrap().starts_with("Starling "), "{settings:?}");

    // ListCommands: `Name: synopsis (Priv: classes)` for what the user may run, in name order.
    let commands = reply(&mut ami, &[("Action", "ListCommands"), ("ActionID", "lc")]);
    assert_eq!(commands[0], ("Response".to_owned(), "Success".to_owned()));
    assert!(get(&commands, "Message").is_none(), "no Message: {commands:?}");
    for (name, line) in [
        ("Ping", "Keepalive command. (Priv: <none>)"),
        ("CoreStatus", "Show PBX core status variables. (Priv: system,reporting)"),
        ("ModuleLoad", "Module management. (Priv: system)"),
        ("SIPpeers", "List SIP peers (text format). (Priv: system,reporting)"),
        ("SIPqualifypeer", "Qualify SIP peers. (Priv: system,reporting)"),
    ] {
        assert_eq!(get(&commands, name), Some(line), "{commands:?}");
    }
    let names: Vec<String> = keys(&commands)[1..].iter().map(|k| k.to_ascii_lowercase()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    // reader has no write class: only the actions that need none.
    let mut reader = Ami::login(port, "reader", "r3ad");
    let theirs = reply(&mut reader, &[("Action", "ListCommands"), ("ActionID", "lc")]);
    let theirs: Vec<&str> = keys(&theirs)[1..].to_vec();
    assert_eq!(theirs, ["Challenge", "Events", "ListCommands", "Login", "Logoff", "Ping"], "reader's list");

    // Events: off, on, classes; nothing is an error.
    let missing = reply(&mut ami, &[("Action", "Events"), ("ActionID", "e0")]);
    assert_eq!((get(&missing, "Response"), get(&missing, "Message")), (Some("Error"), Some("Invalid event mask")));
    let off = reply(&mut reader, &[("Action", "Events"), ("EventMask", "off"), ("ActionID", "e1")]);
    assert_eq!(keys(&off), ["Response", "Events"]);
    assert_eq!((get(&off, "Response"), get(&off, "Events")), (Some("Success"), Some("Off")));
    // A call while reader's events are off: admin sees its Cdr, reader nothing before its Pong.
    let (code, out) = run_sipp(sip, "invite_pbx_hangs_up.xml", "600", "", "", 1);
    assert_eq!(code, 0, "{out}");
    ami.until("Event", "Cdr", Duration::from_secs(10));
    reader.send(&[("Action", "Ping"), ("ActionID", "p")]);
    let pong = reader.read().unwrap();
    assert_eq!(get(&pong, "Ping"), Some("Pong"), "no events while off: {pong:?}");
    for (mask, answer) in [("on", "On"), ("call,cdr", "On"), ("0", "Off"), ("system", "On")] {
        let m = reply(&mut reader, &[("Action", "Events"), ("EventMask", mask), ("ActionID", "e")]);
        assert_eq!(get(&m, "Events"), Some(answer), "EventMask: {mask}");
    }
    let on = reply(&mut reader, &[("Action", "Events"), ("EventMask", "call"), ("ActionID", "e2")]);
    assert_eq!(get(&on, "Events"), Some("On"));
    let (code, out) = run_sipp(sip, "invite_pbx_hangs_up.xml", "600", "", "", 1);
    assert_eq!(code, 0, "{out}");
    reader.until("Event", "Newchannel", Duration::from_secs(10));

    // Reload: all, one module, one that is not loaded, one without a reload.
    for (module, response, message) in [
        (None, "Success", "Module Reloaded"),
        (Some("chan_sip"), "Success", "Module Reloaded"),
        (Some("chan_nosuch"), "Error", "No such module"),
        (Some("app_dial"), "Error", "Module does not support reload"),
    ] {
        let mut headers = vec![("Action", "Reload"), ("ActionID", "r")];
        headers.extend(module.map(|m| ("Module", m)));
        let m = reply(&mut ami, &headers);
        assert_eq!(keys(&m), ["Response", "Message"], "{m:?}");
        assert_eq!((get(&m, "Response"), get(&m, "Message")), (Some(response), Some(message)), "{module:?}");
    }

    // ModuleCheck and ModuleLoad.
    let check =
        |ami: &mut Ami, module: &str| reply(ami, &[("Action", "ModuleCheck"), ("Module", module), ("ActionID", "c")]);
    let loaded = check(&mut ami, "func_db.so");
    assert_eq!(keys(&loaded), ["Response", "Version"], "{loaded:?}");
    assert_eq!((get(&loaded, "Response"), get(&loaded, "Version")), (Some("Success"), Some("")));
    for (load_type, module, response, message) in [
        (Some("unload"), Some("func_db"), "Success", "Module unloaded."),
        (Some("unload"), Some("func_db"), "Error", "Could not unload module."),
        (Some("load"), Some("func_db"), "Success", "Module loaded."),
        (Some("load"), Some("func_nosuch"), "Error", "Could not load module."),
        (Some("refresh"), Some("func_db"), "Success", "Module unloaded and loaded."),
        (Some("reload"), Some("chan_sip"), "Success", "Module reloaded."),
        (Some("reload"), Some("func_db"), "Error", "Module does not support reload action."),
        (Some("reload"), Some("chan_nosuch"), "Error", "No such module."),
        (Some("reload"), None, "Success", "All modules reloaded"),
        (None, Some("func_db"), "Error", "Incomplete ModuleLoad action."),
        (Some("load"), None, "Error", "Need module name"),
    ] {
        let mut headers = vec![("Action", "ModuleLoad"), ("ActionID", "m")];
        headers.extend(load_type.map(|t| ("LoadType", t)));
        headers.extend(module.map(|m| ("Module", m)));
        let m = reply(&mut ami, &headers);
        assert_eq!(
            (get(&m, "Response"), get(&m, "Message")),
            (Some(response), Some(message)),
            "{load_type:?} {module:?}"
        );
        if (load_type, response) == (Some("unload"), "Success") {
            let gone = check(&mut ami, "func_db");
            assert_eq!((get(&gone, "Response"), get(&gone, "Message")), (Some("Error"), Some("Module not loaded")));
        }
    }
    assert_eq!(get(&check(&mut ami, "func_db"), "Response"), Some("Success"), "loaded again");
    let nothing = reply(&mut ami, &[("Action", "ModuleCheck"), ("ActionID", "c")]);
    assert_eq!(get(&nothing, "Message"), Some("Module not loaded"));
}

/// A call through Dial (SIPp caller to 500, SIP/bob a SIPp UAS): Newstate (Ringing then Up for
/// the called channel) and the bridge's BridgeCreate, BridgeEnter (twice), BridgeLeave (twice)
/// and BridgeDestroy, each with Asterisk 20's headers in its order.
#[test]
fn newstate_and_bridge_events_as_asterisk() {
    let bob = SippUas::spawn("uas_answer.xml");
    let (server, sip, port) = ami_pbx("amibridge", bob.port);
    let mut ami = Ami::login(port, "admin", "s3cret");
    let (code, out) = run_sipp(sip, "invite_answer.xml", "500", "", "", 1);
    assert_eq!(code, 0, "{out}\n{}", server.log_tail());
    let mut events = Vec::new();
    events_until(&mut ami, &mut events, "the BridgeDestroy", |m| get(m, "Event") == Some("BridgeDestroy"));
    let (code, out) = bob.finish();
    assert_eq!(code, 0, "{out}");
    let named = |name: &str| -> Vec<&Msg> { events.iter().filter(|m| get(m, "Event") == Some(name)).collect() };

    // (The caller, from bob's address, is a SIP/bob channel too: DialBegin names both.)
    let dial = named("DialBegin")[0];
    let (caller, called) = (get(dial, "Channel").unwrap(), get(dial, "DestChannel").unwrap());
    // Newstate: the snapshot alone.
    let callee: Vec<&Msg> = named("Newstate").into_iter().filter(|m| get(m, "Channel") == Some(called)).collect();
    let states: Vec<(&str, &str)> =
        callee.iter().map(|m| (get(m, "ChannelState").unwrap(), get(m, "ChannelStateDesc").unwrap())).collect();
    assert_eq!(states, [("5", "Ringing"), ("6", "Up")], "{events:#?}");
    let mut expected = vec!["Event", "Privilege"];
    expected.extend(CHANNEL_SNAPSHOT);
    for m in &callee {
        assert_eq!(keys(m), expected, "{m:?}");
        assert_eq!(get(m, "Privilege"), Some("call,all"));
    }
    let caller_up = named("Newstate").into_iter().find(|m| get(m, "Channel") == Some(caller));
    assert_eq!(caller_up.and_then(|m| get(m, "ChannelStateDesc")), Some("Up"), "{events:#?}");

    // The bridge's life, in order, one BridgeUniqueid.
    let life: Vec<(&str, &str)> = events
        .iter()
        .filter_map(|m| {
            get(m, "Event").filter(|e| e.starts_with("Bridge")).map(|e| (e, get(m, "BridgeNumChannels").unwrap()))
        })
        .collect();
    assert_eq!(
        life,
        [
            ("BridgeCreate", "0"),
            ("BridgeEnter", "1"),
            ("BridgeEnter", "2"),
            ("BridgeLeave", "1"),
            ("BridgeLeave", "0"),
            ("BridgeDestroy", "0")
        ],
        "{events:#?}"
    );
    let id = get(named("BridgeCreate")[0], "BridgeUniqueid").unwrap();
    assert!(!id.is_empty());
    let mut bridge_only = vec!["Event", "Privilege"];
    bridge_only.extend(BRIDGE_SNAPSHOT);
    let mut with_channel = bridge_only.clone();
    with_channel.extend(CHANNEL_SNAPSHOT);
    for m in events.iter().filter(|m| get(m, "Event").is_some_and(|e| e.starts_with("Bridge"))) {
        let event = get(m, "Event").unwrap();
        let wanted = if event == "BridgeEnter" || event == "BridgeLeave" { &with_channel } else { &bridge_only };
        assert_eq!(&keys(m), wanted, "{m:?}");
        assert_eq!(get(m, "Privilege"), Some("call,all"));
        assert_eq!(get(m, "BridgeUniqueid"), Some(id));
        for (key, value) in [
            ("BridgeType", "basic"),
            ("BridgeCreator", "<unknown>"),
            ("BridgeName", "<unknown>"),
            ("BridgeVideoSourceMode", "none"),
        ] {
            assert_eq!(get(m, key), Some(value), "{m:?}");
        }
    }
    let entered: Vec<&str> = named("BridgeEnter").iter().map(|m| get(m, "Channel").unwrap()).collect();
    assert_eq!(entered, [caller, called]);
    for m in named("BridgeEnter") {
        assert_eq!(get(m, "ChannelStateDesc"), Some("Up"), "{m:?}");
    }
}

/// `register =>` lines against a SIPp registrar that takes the digest, one that answers 403 and
/// one that never answers: Registry events with chan_sip's texts; SIPshowregistry lists the
/// lines; SIPshowpeer shows chan_sip's headers in its order; SIPqualifypeer acknowledges and
/// publishes SIPQualifyPeerDone.
#[test]
fn sip_actions_and_registry_events_as_chan_sip() {
    let good = SippUas::spawn("registrar_auth.xml");
    let refusing = SippUas::spawn("registrar_reject.xml");
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let bob = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let bob_port = bob.local_addr().unwrap().port();
    let (server, _sip, port) = ami_pbx_sip("amisipreg", bob_port, "", "registertimeout=2\n");
    // The lines come with a `sip reload` once the session is in (res_manager loads after chan_sip).
    let mut ami = Ami::login(port, "admin", "s3cret");
    let sip_conf = server.dir.etc().join("sip.conf");
    let text = std::fs::read_to_string(&sip_conf).unwrap();
    let lines = format!(
        "registertimeout=2\nregister => alice:s3cret@127.0.0.1:{}/600~60\nregister => dave:wrong@127.0.0.1:{}\n\
         register => erin:pw@127.0.0.1:{silent_port}\n",
        good.port, refusing.port
    );
    // frank, qualified, for SIPqualifypeer.
    let frank = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let frank_peer =
        format!("\n[frank]\ntype=peer\nhost=127.0.0.1\nport={}\nqualify=yes\n", frank.local_addr().unwrap().port());
    std::fs::write(&sip_conf, text.replacen("registertimeout=2\n", &lines, 1) + &frank_peer).unwrap();
    server.rx("sip reload");
    let mut events = Vec::new();
    let seen = |events: &Vec<Msg>, user: &str| {
        events.iter().any(|m| get(m, "Event") == Some("Registry") && get(m, "Username") == Some(user))
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while !(seen(&events, "alice") && seen(&events, "dave") && seen(&events, "erin")) && Instant::now() < deadline {
        let m = ami.read().expect("the session stays open");
        events.push(m);
    }
    let registry = |user: &str| -> &Msg {
        events
            .iter()
            .find(|m| get(m, "Event") == Some("Registry") && get(m, "Username") == Some(user))
            .unwrap_or_else(|| panic!("a Registry event for {user}: {events:#?}\n{}", server.log_tail()))
    };
    for (user, status) in [("alice", "Registered"), ("dave", "No Authentication"), ("erin", "Unregistered")] {
        let m = registry(user);
        assert_eq!(keys(m), ["Event", "Privilege", "ChannelType", "Username", "Domain", "Status"], "{m:?}");
        assert_eq!(get(m, "Privilege"), Some("system,all"));
        assert_eq!((get(m, "ChannelType"), get(m, "Domain")), (Some("SIP"), Some("127.0.0.1")));
        assert_eq!(get(m, "Status"), Some(status), "{user}: {m:?}");
    }

    let list = reply(&mut ami, &[("Action", "SIPshowregistry"), ("ActionID", "sr")]);
    assert_eq!(keys(&list), ["Response", "EventList", "Message"]);
    assert_eq!((get(&list, "EventList"), get(&list, "Message")), (Some("start"), Some("Registrations will follow")));
    let mut entries = Vec::new();
    loop {
        let m = ami.read().unwrap();
        if get(&m, "ActionID") != Some("sr") {
            continue; // an event meanwhile
        }
        if get(&m, "Event") == Some("RegistrationsComplete") {
            assert_eq!(keys(&m), ["Event", "EventList", "ListItems"], "{m:?}");
            assert_eq!((get(&m, "EventList"), get(&m, "ListItems")), (Some("Complete"), Some("3")));
            break;
        }
        entries.push(m);
    }
    let alice = entries.iter().find(|m| get(m, "Username") == Some("alice")).expect("alice's line");
    assert_eq!(
        keys(alice),
        ["Event", "Host", "Port", "Username", "Domain", "DomainPort", "Refresh", "State", "RegistrationTime"]
    );
    let good_port = good.port.to_string();
    for (key, value) in [
        ("Event", "RegistryEntry"),
        ("Host", "127.0.0.1"),
        ("Port", good_port.as_str()),
        ("Domain", "127.0.0.1"),
        ("DomainPort", "5060"),
        ("Refresh", "60"),
        ("State", "Registered"),
    ] {
        assert_eq!(get(alice, key), Some(value), "{key}: {alice:?}");
    }
    assert!(get(alice, "RegistrationTime").unwrap().parse::<u64>().unwrap() > 1_600_000_000, "{alice:?}");

    // SIPshowpeer: chan_sip's manager listing.
    let peer = reply(&mut ami, &[("Action", "SIPshowpeer"), ("Peer", "bob"), ("ActionID", "sp")]);
    assert_eq!(
        keys(&peer),
        [
            "Response",
            "Channeltype",
            "ObjectName",
            "ChanObjectType",
            "SecretExist",
            "RemoteSecretExist",
            "MD5SecretExist",
            "Context",
            "Language",
            "ToneZone",
            "AMAflags",
            "CID-CallingPres",
            "Callgroup",
            "Pickupgroup",
            "Named Callgroup",
            "Named Pickupgroup",
            "MOHSuggest",
            "VoiceMailbox",
            "TransferMode",
            "LastMsgsSent",
            "Maxforwards",
            "Call-limit",
            "Busy-level",
            "MaxCallBR",
            "Dynamic",
            "Callerid",
            "RegExpire",
            "SIP-AuthInsecure",
            "SIP-Forcerport",
            "SIP-Comedia",
            "ACL",
            "SIP-CanReinvite",
            "SIP-DirectMedia",
            "SIP-PromiscRedir",
            "SIP-UserPhone",
            "SIP-VideoSupport",
            "SIP-TextSupport",
            "SIP-T.38Support",
            "SIP-T.38EC",
            "SIP-T.38MaxDtgrm",
            "SIP-Sess-Timers",
            "SIP-Sess-Refresh",
            "SIP-Sess-Expires",
            "SIP-Sess-Min",
            "SIP-RTP-Engine",
            "SIP-Encryption",
            "SIP-RTCP-Mux",
            "SIP-DTMFmode",
            "ToHost",
            "Address-IP",
            "Address-Port",
            "Default-addr-IP",
            "Default-addr-port",
            "Default-Username",
            "Codecs",
            "Status",
            "SIP-Useragent",
            "Reg-Contact",
            "QualifyFreq",
            "Parkinglot",
            "SIP-Use-Reason-Header",
            "Description"
        ],
        "{peer:?}"
    );
    let bob_port_text = bob_port.to_string();
    for (key, value) in [
        ("Response", "Success"),
        ("Channeltype", "SIP"),
        ("ObjectName", "bob"),
        ("ChanObjectType", "peer"),
        ("SecretExist", "N"),
        ("MD5SecretExist", "N"),
        ("Context", "default"),
        ("Call-limit", "0"),
        ("Dynamic", "N"),
        ("Callerid", ""),
        ("RegExpire", "-1 seconds"),
        ("SIP-AuthInsecure", "port,invite"),
        ("ACL", "N"),
        ("SIP-DTMFmode", "rfc2833"),
        ("Address-IP", "127.0.0.1"),
        ("Address-Port", bob_port_text.as_str()),
        ("Codecs", "(ulaw)"),
        ("Status", "Unmonitored"),
        ("QualifyFreq", "60000 ms"),
    ] {
        assert_eq!(get(&peer, key), Some(value), "{key}: {peer:?}");
    }
    let carol = reply(&mut ami, &[("Action", "SIPshowpeer"), ("Peer", "carol"), ("ActionID", "sp")]);
    assert_eq!((get(&carol, "Dynamic"), get(&carol, "Address-IP")), (Some("Y"), Some("(null)")), "{carol:?}");
    let nobody = reply(&mut ami, &[("Action", "SIPshowpeer"), ("Peer", "zed"), ("ActionID", "sp")]);
    assert_eq!((get(&nobody, "Response"), get(&nobody, "Message")), (Some("Error"), Some("Peer zed not found.")));
    let unnamed = reply(&mut ami, &[("Action", "SIPshowpeer"), ("ActionID", "sp")]);
    assert_eq!(get(&unnamed, "Message"), Some("Peer: <name> missing."));

    // SIPqualifypeer: the acknowledgement, SIPQualifyPeerDone, and a new OPTIONS to frank.
    frank.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let branch = |frank: &std::net::UdpSocket| -> Option<String> {
        let mut buffer = [0u8; 4096];
        let len = frank.recv(&mut buffer).ok()?;
        let text = String::from_utf8_lossy(&buffer[..len]).into_owned();
        assert!(text.starts_with("OPTIONS sip:"), "{text}");
        text.split("branch=").nth(1).map(|b| b.split([';', '\r']).next().unwrap().to_owned())
    };
    let mut before = Vec::new();
    while let Some(b) = branch(&frank) {
        before.push(b);
    }
    let qualify = reply(&mut ami, &[("Action", "SIPqualifypeer"), ("Peer", "frank"), ("ActionID", "q1")]);
    assert_eq!(keys(&qualify), ["Response", "Message"]);
    assert_eq!(get(&qualify, "Message"), Some("SIP peer found - will qualify"));
    let done = ami.until("Event", "SIPQualifyPeerDone", Duration::from_secs(5));
    assert_eq!(keys(&done), ["Event", "Privilege", "Peer"], "{done:?}");
    assert_eq!(
        (get(&done, "Peer"), get(&done, "ActionID"), get(&done, "Privilege")),
        (Some("frank"), Some("q1"), Some("call,all"))
    );
    let poked = eventually(Duration::from_secs(5), || branch(&frank).filter(|b| !before.contains(b)));
    assert!(poked.is_some(), "a new OPTIONS to frank (before: {before:?})");
    // bob has qualify=no: one OPTIONS all the same, as chan_sip's forced poke.
    let qualify = reply(&mut ami, &[("Action", "SIPqualifypeer"), ("Peer", "bob"), ("ActionID", "q3")]);
    assert_eq!(get(&qualify, "Message"), Some("SIP peer found - will qualify"));
    let done = ami.until("Event", "SIPQualifyPeerDone", Duration::from_secs(5));
    assert_eq!((get(&done, "Peer"), get(&done, "ActionID")), (Some("bob"), Some("q3")));
    bob.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(branch(&bob).is_some(), "an OPTIONS to bob");
    let unknown = reply(&mut ami, &[("Action", "SIPqualifypeer"), ("Peer", "zed"), ("ActionID", "q2")]);
    assert_eq!((get(&unknown, "Response"), get(&unknown, "Message")), (Some("Error"), Some("Peer not found")));
    drop(silent);
    let (code, out) = good.finish();
    assert_eq!(code, 0, "the registrar verified the digest: {out}");
}

/// `core stop now`: the Shutdown event (system class), Cleanly without channels, Uncleanly
/// with a call up, `Restart: False`; then the session closes.
#[test]
fn shutdown_event_says_whether_calls_were_cut() {
    for (name, call, how) in [("amishutclean", false, "Cleanly"), ("amishutcalls", true, "Uncleanly")] {
        let (mut server, sip, port) = ami_pbx(name, 1);
        let mut ami = Ami::login(port, "admin", "s3cret");
        let caller = call.then(|| {
            let caller = std::thread::spawn(move || run_sipp(sip, "invite_pbx_hangs_up.xml", "700", "", "", 1));
            sip_channel(&server);
            caller
        });
        // (-rx may see the server go before it answers.)
        let _ = server.try_rx("core stop now");
        let shutdown = ami.until("Event", "Shutdown", Duration::from_secs(10));
        assert_eq!(keys(&shutdown), ["Event", "Privilege", "Shutdown", "Restart"], "{shutdown:?}");
        assert_eq!(get(&shutdown, "Privilege"), Some("system,all"));
        assert_eq!((get(&shutdown, "Shutdown"), get(&shutdown, "Restart")), (Some(how), Some("False")), "{name}");
        assert!(ami.read().is_none(), "the session ends");
        assert!(server.wait_exit(Duration::from_secs(10)).success());
        if let Some(caller) = caller {
            let _ = caller.join().unwrap();
        }
    }
}
