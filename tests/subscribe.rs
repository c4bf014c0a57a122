//! Issue 25: SUBSCRIBE/NOTIFY in chan_sip. A SIPp BLF key (peer `watcher`, digest) subscribes
//! with `Event: dialog` to 1001, a hinted SIP peer (a SIPp UAS that rings 2 s then answers),
//! and sees NOTIFYs terminated → early → confirmed → terminated while another SIPp calls 1001
//! and hangs up (the bodies read from SIPp's message trace and parsed by Python's XML parser);
//! `sip show subscriptions` lists it; it unsubscribes (Expires: 0) and gets 200 and a last
//! NOTIFY `terminated`. A SUBSCRIBE to an extension without a hint is 404.

use std::time::Duration;

use crate::util::*;

const EXTENSIONS: &str = "[default]
exten => 1001,hint,SIP/1001
exten => 1002,hint,Custom:lamp
exten => 1003,hint,Custom:lamp
exten => 1001,1,Dial(SIP/1001)
 same => n,Hangup()
exten => 2000,1,Answer()
 same => n,Hangup()
";

/// Starling with peer 1001 at `peer_port` (hinted) and `watcher` (a friend with a secret) that
/// subscribes.
fn subscribe_pbx(name: &str, peer_port: u16) -> (Server, u16) {
    sip_pbx_on_port(name, &["pbx_config", "app_dial", "func_devstate"], Some(EXTENSIONS), |_| {
        format!(
            "allowguest=yes\ncontext=default\nnotifycid=yes\n[1001]\ntype=peer\nhost=127.0.0.1\nport={peer_port}\n\
             insecure=invite\ndisallow=all\nallow=ulaw\n[watcher]\ntype=friend\nhost=dynamic\nsecret=pw\n\
             context=default\n[watcher2]\ntype=friend\nhost=dynamic\nsecret=pw\n[nosub]\ntype=friend\nhost=dynamic\nsecret=pw\nallowsubscribe=no\n"
        )
    })
}

/// The messages SIPp received, from its `-trace_msg` file.
fn received_messages(trace: &str) -> Vec<String> {
    trace
        .split("-----------------------------------------------")
        .filter(|chunk| chunk.contains("message received"))
        .filter_map(|chunk| {
            let start = chunk.find("bytes :")? + "bytes :".len();
            Some(chunk[start..].trim_start_matches(['\r', '\n']).to_owned())
        })
        .collect()
}

/// Every message of a SIPp `-trace_msg` file: when (seconds into the day, from SIPp's
/// `YYYY-MM-DD HH:MM:SS.uuuuuu` stamp), whether it was received (else sent), and the message.
fn trace_entries(trace: &str) -> Vec<(f64, bool, String)> {
    trace
        .split("-----------------------------------------------")
        .filter_map(|chunk| {
            let (stamp, rest) = chunk.split_once('\n')?;
            let time = stamp.split_whitespace().last()?;
            let mut hms = time.split(':');
            let (h, m, s) = (hms.next()?, hms.next()?, hms.next()?);
            let at = h.parse::<f64>().ok()? * 3600.0 + m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?;
            let (first, message) = rest.split_once('\n')?;
            let received = first.contains("message received");
            Some((at, received, message.trim_start_matches(['\r', '\n']).to_owned()))
        })
        .collect()
}

/// The header and body of a message.
fn split_message(message: &str) -> (&str, &str) {
    message.split_once("\r\n\r\n").or_else(|| message.split_once("\n\n")).unwrap_or((message, ""))
}

/// The value of a header of `head`.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A dialog-info body read by Python's XML parser (ElementTree): the root must be RFC 4235's
/// `dialog-info` (its namespace), with `version`, `state` and `entity`; each `dialog` has a
/// `state`. Returns `(version, state attribute, the dialogs' states)`.
fn parse_dialog_info(body: &str) -> (u32, String, Vec<String>) {
    let script = "import sys, xml.etree.ElementTree as ET\n\
                  r = ET.fromstring(sys.stdin.buffer.read())\n\
                  ns = '{urn:ietf:params:xml:ns:dialog-info}'\n\
                  assert r.tag == ns + 'dialog-info', r.tag\n\
                  assert r.get('entity', '').startswith('sip:1001@'), r.get('entity')\n\
                  ds = r.findall(ns + 'dialog')\n\
                  assert len(ds) == 1 and ds[0].get('id') == '1001', ds\n\
                  print(r.get('version'), r.get('state'), ' '.join(d.find(ns + 'state').text for d in ds))\n";
    let text = python_on(script, body);
    let mut words = text.split_whitespace();
    let version = words.next().and_then(|v| v.parse().ok()).expect("a version");
    let state = words.next().unwrap_or("").to_owned();
    (version, state, words.map(str::to_owned).collect())
}

/// The BLF key follows a call to 1001: terminated (idle) → early (ringing) → confirmed →
/// terminated, each NOTIFY's dialog-info well-formed, full, its version counting up; `sip show
/// subscriptions` lists the subscription in chan_sip's columns; the unsubscribe gets 200 and a
/// last NOTIFY with `Subscription-State: terminated`, and the list is empty again.
#[test]
fn a_dialog_subscription_follows_a_call_and_ends_on_unsubscribe() {
    let uas_trace = std::env::temp_dir().join(format!("stl-{}-subdialog-uas.log", std::process::id()));
    let _ = std::fs::remove_file(&uas_trace);
    // (A longer bound than SippUas's 25 s: a loaded machine may take a while to start Starling
    // and the subscription before the call.)
    let uas_args = ["-trace_msg", "-message_file", uas_trace.to_str().unwrap(), "-timeout", "60s"];
    let uas = SippUas::spawn_with("uas_ring_answer.xml", 1, &uas_args);
    let (server, sip) = subscribe_pbx("subdialog", uas.port);
    let trace = std::env::temp_dir().join(format!("stl-{}-subdialog-trace.log", std::process::id()));
    let _ = std::fs::remove_file(&trace);
    let trace_arg = trace.to_str().unwrap().to_owned();
    let auth_uri = format!("1001@127.0.0.1:{sip}");
    let subscriber = std::thread::spawn(move || {
        let args = ["-s", "1001", "-au", "watcher", "-ap", "pw", "-auth_uri", &auth_uri, "-m", "1"];
        let args: Vec<&str> = args.into_iter().chain(["-trace_msg", "-message_file", &trace_arg]).collect();
        sipp_bounded(
            &format!("127.0.0.1:{sip}"),
            "127.0.0.1",
            free_udp_port(),
            "subscribe_dialog.xml",
            &args,
            Duration::from_secs(40),
        )
    });
    let listed = eventually(Duration::from_secs(10), || {
        let out = server.rx("sip show subscriptions");
        out.contains("1 active SIP subscription\n").then_some(out)
    });
    let listed = listed.unwrap_or_else(|| panic!("{}\n{}", server.rx("sip show subscriptions"), server.log_tail()));
    let mut lines = listed.lines();
    assert_eq!(
        lines.next(),
        Some("Peer             User             Call ID          Extension        Last state     Type            Mailbox    Expiry"),
        "{listed}"
    );
    let row = lines.next().unwrap_or("");
    assert!(row.starts_with("127.0.0.1        watcher          "), "{listed}");
    assert!(row.contains("  1001@default     Idle           dialog-info+xml <none>     600"), "{listed}");
    // The subscription watches the hint (core show hints counts it).
    let hints = server.rx("core show hints");
    let hint = hints.lines().find(|l| l.starts_with("1001@default")).unwrap_or(&hints);
    assert!(hint.ends_with("Watchers  1"), "{hints}");

    let (code, out) = run_sipp(sip, "invite_answer.xml", "1001", "", "", 1);
    assert_eq!(code, 0, "{out}\n{}", server.log_tail());
    assert_eq!(uas.finish().0, 0, "the peer took the call");
    let (code, out) = subscriber.join().unwrap();
    let text = std::fs::read_to_string(&trace).unwrap_or_default();
    let _ = std::fs::remove_file(&trace);
    assert_eq!(code, 0, "{out}\n{text}\n{}", server.log_tail());

    let notifies: Vec<String> = received_messages(&text).into_iter().filter(|m| m.starts_with("NOTIFY ")).collect();
    assert_eq!(notifies.len(), 5, "{text}");
    let mut states = Vec::new();
    for (i, notify) in notifies.iter().enumerate() {
        let (head, body) = split_message(notify);
        assert_eq!(header(head, "Event"), Some("dialog"), "{notify}");
        assert_eq!(header(head, "Content-Type"), Some("application/dialog-info+xml"), "{notify}");
        let (version, full, dialogs) = parse_dialog_info(body);
        assert_eq!(version, i as u32, "{notify}");
        assert_eq!(full, "full", "{notify}");
        assert_eq!(dialogs.len(), 1, "{notify}");
        let subscription_state = header(head, "Subscription-State").unwrap_or("");
        if i < 4 {
            assert!(subscription_state.starts_with("active;expires="), "{notify}");
            states.push(dialogs[0].clone());
        } else {
            assert!(subscription_state.starts_with("terminated"), "{notify}");
        }
    }
    assert_eq!(states, ["terminated", "early", "confirmed", "terminated"], "{text}");

    // Each NOTIFY within 100 ms of the change that makes it: the 180 the peer sends (ringing),
    // its 200 (answered), the BYE it receives (the call is over: the hangup may come first).
    let uas_text = std::fs::read_to_string(&uas_trace).unwrap_or_default();
    let _ = std::fs::remove_file(&uas_trace);
    let uas_at = |received: bool, start: &str| {
        trace_entries(&uas_text)
            .into_iter()
            .find(|(_, r, m)| *r == received && m.starts_with(start))
            .map(|(at, _, _)| at)
            .unwrap_or_else(|| panic!("no {start} in the peer's trace:\n{uas_text}"))
    };
    let changes = [uas_at(false, "SIP/2.0 180"), uas_at(false, "SIP/2.0 200"), uas_at(true, "BYE ")];
    let notified: Vec<f64> = trace_entries(&text)
        .into_iter()
        .filter(|(_, r, m)| *r && m.starts_with("NOTIFY "))
        .map(|(at, _, _)| at)
        .collect();
    let delays: Vec<f64> =
        changes.iter().zip(&notified[1..4]).map(|(change, notify)| (notify - change) * 1000.0).collect();
    println!(
        "NOTIFY after the change (ms): ringing {:.1}, answered {:.1}, hung up {:.1}",
        delays[0], delays[1], delays[2]
    );
    assert!(delays.iter().all(|d| *d < 100.0), "NOTIFY delays (ms): {delays:?}");
    // The ringing NOTIFY names the caller side of the dialog (chan_sip's notifyringing), and
    // with notifycid=yes the caller (the guest's From: "A Guest" <sip:guest@...>).
    assert!(notifies[1].contains("direction=\"recipient\""), "{}", notifies[1]);
    let remote =
        "<remote>\n<identity display=\"A Guest\">sip:guest@127.0.0.1</identity>\n<target uri=\"sip:guest@127.0.0.1\"/>";
    assert!(notifies[1].contains(remote), "{}", notifies[1]);
    let out = server.rx("sip show subscriptions");
    assert!(out.ends_with("\n0 active SIP subscriptions\n"), "{out}");
}

/// A SUBSCRIBE to an extension that exists but has no hint is 404 (after the challenge: the
/// watcher authenticates first, as for an INVITE); a wrong password gets no further than 403.
#[test]
fn a_subscription_to_an_extension_without_a_hint_is_404() {
    let (server, sip) = subscribe_pbx("subnohint", 9);
    let auth_uri = format!("2000@127.0.0.1:{sip}");
    let args =
        ["-s", "2000", "-key", "user", "watcher", "-au", "watcher", "-ap", "pw", "-auth_uri", &auth_uri, "-m", "1"];
    let (code, out) = run_sipp_with(sip, "subscribe_404.xml", &args);
    assert_eq!(code, 0, "{out}\n{}", server.log_tail());
    assert!(server.log().contains("for '2000@default': no hint there, 404"), "{}", server.log_tail());
    assert!(server.rx("sip show subscriptions").ends_with("\n0 active SIP subscriptions\n"));
}

/// A peer with `allowsubscribe=no` is refused `403 Forbidden (policy)` once authenticated, as
/// chan_sip.
#[test]
fn a_peer_without_allowsubscribe_is_refused() {
    let (server, sip) = subscribe_pbx("subpolicy", 9);
    let auth_uri = format!("1001@127.0.0.1:{sip}");
    let args = ["-s", "1001", "-key", "user", "nosub", "-au", "nosub", "-ap", "pw", "-auth_uri", &auth_uri, "-m", "1"];
    let (code, out) = run_sipp_with(sip, "subscribe_403.xml", &args);
    assert_eq!(code, 0, "{out}\n{}", server.log_tail());
    assert!(server.log().contains("Subscription from 'nosub' (127.0.0.1:"), "{}", server.log_tail());
}

/// Runs `scenario` (subscribe_watch or subscribe_481) as `watcher` to 1002 (hint Custom:lamp)
/// with `accept`, in the background, tracing what SIPp receives to `trace`.
fn watch(
    sip: u16,
    scenario: &'static str,
    event: &'static str,
    accept: &'static str,
    trace: &std::path::Path,
) -> std::thread::JoinHandle<(i32, String)> {
    watch_as(sip, ("watcher", "1002"), scenario, (event, accept), trace)
}

/// [`watch`] as `(user, exten)` with `(event, accept)`.
fn watch_as(
    sip: u16,
    (user, exten): (&'static str, &'static str),
    scenario: &'static str,
    (event, accept): (&'static str, &'static str),
    trace: &std::path::Path,
) -> std::thread::JoinHandle<(i32, String)> {
    let _ = std::fs::remove_file(trace);
    let trace = trace.to_str().unwrap().to_owned();
    std::thread::spawn(move || {
        let auth_uri = format!("{exten}@127.0.0.1:{sip}");
        let mut args = vec!["-s", exten, "-key", "user", user, "-key", "event", event, "-key", "accept", accept];
        args.extend(["-au", user, "-ap", "pw", "-auth_uri", &auth_uri, "-m", "1"]);
        args.extend(["-trace_msg", "-message_file", &trace]);
        sipp_bounded(
            &format!("127.0.0.1:{sip}"),
            "127.0.0.1",
            free_udp_port(),
            scenario,
            &args,
            Duration::from_secs(40),
        )
    })
}

/// The row of `sip show subscriptions` once there is one, else a panic with the log.
fn listed_row(server: &Server) -> String {
    let row = eventually(Duration::from_secs(10), || {
        let out = server.rx("sip show subscriptions");
        out.contains("1 active SIP subscription\n").then(|| out.lines().nth(1).unwrap_or("").to_owned())
    });
    row.unwrap_or_else(|| panic!("{}\n{}", server.rx("sip show subscriptions"), server.log_tail()))
}

/// A presence subscription (`Accept: application/pidf+xml`) to a hint on `Custom:lamp`:
/// PIDF bodies (parsed by Python's XML parser) say `open`/`Ready`, then `busy`/`On the phone`
/// when `devstate change` makes the lamp INUSE; when Starling stops, a last NOTIFY says
/// `terminated;reason=deactivated`.
#[test]
fn a_presence_subscription_hears_a_device_change_and_the_shutdown() {
    let (mut server, sip) = subscribe_pbx("subpresence", 9);
    let trace = std::env::temp_dir().join(format!("stl-{}-subpresence-trace.log", std::process::id()));
    let subscriber = watch(sip, "subscribe_watch.xml", "presence", "application/pidf+xml", &trace);
    let row = listed_row(&server);
    assert!(row.contains("  1002@default     Idle           pidf+xml        <none>     600"), "{row}");
    assert_eq!(server.rx("devstate change Custom:lamp INUSE"), "Changing lamp to INUSE\n");
    let inuse = eventually(Duration::from_secs(5), || listed_row(&server).contains(" InUse ").then_some(()));
    assert!(inuse.is_some(), "{}", server.rx("sip show subscriptions"));
    server.rx("core stop now");
    server.wait_exit(Duration::from_secs(20));
    let (code, out) = subscriber.join().unwrap();
    let text = std::fs::read_to_string(&trace).unwrap_or_default();
    let _ = std::fs::remove_file(&trace);
    assert_eq!(code, 0, "{out}\n{text}");
    let notifies: Vec<String> = received_messages(&text).into_iter().filter(|m| m.starts_with("NOTIFY ")).collect();
    assert_eq!(notifies.len(), 3, "{text}");
    let pidf: Vec<(String, String, String)> = notifies
        .iter()
        .map(|n| {
            let (head, body) = split_message(n);
            assert_eq!(header(head, "Event"), Some("presence"), "{n}");
            assert_eq!(header(head, "Content-Type"), Some("application/pidf+xml"), "{n}");
            parse_pidf(body)
        })
        .collect();
    let words = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
    assert_eq!(pidf[0], words("open", "Ready", "-"), "{text}");
    assert_eq!(pidf[1], words("open", "On the phone", "busy"), "{text}");
    let (head, _) = split_message(&notifies[2]);
    assert_eq!(header(head, "Subscription-State"), Some("terminated;reason=deactivated"), "{}", notifies[2]);
}

/// A PIDF body read by Python's XML parser: the tuple's basic status, the note, the RPID
/// activity (`-` without one).
fn parse_pidf(body: &str) -> (String, String, String) {
    let script = "import sys, xml.etree.ElementTree as ET\n\
                  r = ET.fromstring(sys.stdin.buffer.read())\n\
                  ns = '{urn:ietf:params:xml:ns:pidf}'\n\
                  ep = '{urn:ietf:params:xml:ns:pidf:rpid:rpid-person}'\n\
                  assert r.tag == ns + 'presence', r.tag\n\
                  t = r.find(ns + 'tuple')\n\
                  assert t.get('id') == '1002', t.get('id')\n\
                  acts = r.find('.//' + ep + 'activities')\n\
                  act = '-' if acts is None or len(acts) == 0 else acts[0].tag.split('}')[1]\n\
                  print(t.find(ns + 'status').find(ns + 'basic').text + '|' + r.find(ns + 'note').text + '|' + act)\n";
    let out = python_on(script, body);
    let mut parts = out.trim().split('|').map(str::to_owned);
    (parts.next().unwrap_or_default(), parts.next().unwrap_or_default(), parts.next().unwrap_or_default())
}

/// Runs a Python script with `input` on its stdin; its stdout (a failure panics with stderr).
fn python_on(script: &str, input: &str) -> String {
    let mut child = std::process::Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python: {}\n{input}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An older phone asks for `application/xpidf+xml`: its NOTIFYs carry XPIDF (`open`/`online`);
/// it answers the NOTIFY of a change 481 (it forgot the subscription): the subscription ends
/// there, without another NOTIFY, and `sip show subscriptions` no longer lists it.
#[test]
fn an_xpidf_subscription_ends_when_a_notify_gets_481() {
    let (server, sip) = subscribe_pbx("subxpidf", 9);
    let trace = std::env::temp_dir().join(format!("stl-{}-subxpidf-trace.log", std::process::id()));
    let subscriber = watch(sip, "subscribe_481.xml", "presence", "application/xpidf+xml", &trace);
    let row = listed_row(&server);
    assert!(row.contains("  1002@default     Idle           xpidf+xml       <none>     600"), "{row}");
    assert_eq!(server.rx("devstate change Custom:lamp INUSE"), "Changing lamp to INUSE\n");
    let (code, out) = subscriber.join().unwrap();
    let text = std::fs::read_to_string(&trace).unwrap_or_default();
    let _ = std::fs::remove_file(&trace);
    assert_eq!(code, 0, "{out}\n{text}\n{}", server.log_tail());
    let gone = eventually(Duration::from_secs(5), || {
        server.rx("sip show subscriptions").ends_with("\n0 active SIP subscriptions\n").then_some(())
    });
    assert!(gone.is_some(), "{}", server.rx("sip show subscriptions"));
    let notifies: Vec<String> = received_messages(&text).into_iter().filter(|m| m.starts_with("NOTIFY ")).collect();
    assert_eq!(notifies.len(), 2, "{text}");
    let (head, body) = split_message(&notifies[0]);
    assert_eq!(header(head, "Content-Type"), Some("application/xpidf+xml"), "{}", notifies[0]);
    assert!(body.contains("<status status=\"open\" />") && body.contains("substatus=\"online\""), "{body}");
    let (_, body) = split_message(&notifies[1]);
    assert!(body.contains("<status status=\"inuse\" />") && body.contains("substatus=\"onthephone\""), "{body}");
    // Another change sends nothing: the subscription is over.
    assert_eq!(server.rx("devstate change Custom:lamp NOT_INUSE"), "Changing lamp to NOT_INUSE\n");
    std::thread::sleep(Duration::from_millis(300));
    assert!(!server.log().contains("panicked"), "{}", server.log_tail());
}

/// The last NOTIFY's `Subscription-State` of a subscriber's trace, once it has `n` NOTIFYs.
fn last_state_of(trace: &str, n: usize) -> String {
    let notifies: Vec<String> = received_messages(trace).into_iter().filter(|m| m.starts_with("NOTIFY ")).collect();
    assert_eq!(notifies.len(), n, "{trace}");
    let (head, _) = split_message(&notifies[n - 1]);
    header(head, "Subscription-State").unwrap_or("").to_owned()
}

/// Two subscriptions to hints on `Custom:lamp` (1002 by `watcher`, 1003 by `watcher2`) both
/// hear a change; `dialplan reload` without the hint of 1003 ends its subscription
/// (`terminated;reason=noresource`) and keeps the other; `sip reload` without the peer
/// `watcher` ends its subscription (`terminated;reason=deactivated`).
#[test]
fn a_removed_hint_or_peer_ends_its_subscriptions() {
    let (server, sip) = subscribe_pbx("subremoved", 9);
    let trace1 = std::env::temp_dir().join(format!("stl-{}-subremoved-1.log", std::process::id()));
    let trace2 = std::env::temp_dir().join(format!("stl-{}-subremoved-2.log", std::process::id()));
    let dialog = ("dialog", "application/dialog-info+xml");
    let first = watch_as(sip, ("watcher", "1002"), "subscribe_watch.xml", dialog, &trace1);
    let second = watch_as(sip, ("watcher2", "1003"), "subscribe_watch.xml", dialog, &trace2);
    let both = eventually(Duration::from_secs(10), || {
        server.rx("sip show subscriptions").contains("\n2 active SIP subscriptions\n").then_some(())
    });
    assert!(both.is_some(), "{}\n{}", server.rx("sip show subscriptions"), server.log_tail());
    assert_eq!(server.rx("devstate change Custom:lamp RINGING"), "Changing lamp to RINGING\n");
    let ringing = eventually(Duration::from_secs(5), || {
        (server.rx("sip show subscriptions").matches(" Ringing ").count() == 2).then_some(())
    });
    assert!(ringing.is_some(), "{}", server.rx("sip show subscriptions"));

    std::fs::write(
        server.dir.etc().join("extensions.conf"),
        EXTENSIONS.replace("exten => 1003,hint,Custom:lamp\n", ""),
    )
    .unwrap();
    server.rx("dialplan reload");
    let (code, out) = second.join().unwrap();
    let text = std::fs::read_to_string(&trace2).unwrap_or_default();
    let _ = std::fs::remove_file(&trace2);
    assert_eq!(code, 0, "{out}\n{text}\n{}", server.log_tail());
    assert_eq!(last_state_of(&text, 3), "terminated;reason=noresource");
    let one = eventually(Duration::from_secs(5), || {
        let out = server.rx("sip show subscriptions");
        (out.contains("\n1 active SIP subscription\n") && out.contains(" watcher ")).then_some(())
    });
    assert!(one.is_some(), "{}", server.rx("sip show subscriptions"));

    let sip_conf = std::fs::read_to_string(server.dir.etc().join("sip.conf")).unwrap();
    let without = sip_conf.replace("[watcher]\ntype=friend\nhost=dynamic\nsecret=pw\ncontext=default\n", "");
    assert_ne!(without, sip_conf);
    std::fs::write(server.dir.etc().join("sip.conf"), without).unwrap();
    server.rx("sip reload");
    let (code, out) = first.join().unwrap();
    let text = std::fs::read_to_string(&trace1).unwrap_or_default();
    let _ = std::fs::remove_file(&trace1);
    assert_eq!(code, 0, "{out}\n{text}\n{}", server.log_tail());
    assert_eq!(last_state_of(&text, 3), "terminated;reason=deactivated");
    assert!(server.rx("sip show subscriptions").ends_with("\n0 active SIP subscriptions\n"));
}
