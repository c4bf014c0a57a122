//! Issue 25: device state and hints. A hinted SIP peer is called (SIPp on both sides) and its
//! extension state goes Idle → Ringing → InUse → Idle in `core show hints`, `EXTENSION_STATE()`
//! and the manager's `ExtensionState` (with `ExtensionStatus` and `DeviceStateChange` events);
//! a `Custom:` device set by the dialplan survives a restart (astdb); `devstate change` moves a
//! hint and the manager hears it (panoramisk, the real AMI client).

use std::time::{Duration, Instant};

use crate::manager::{free_tcp_port, get, panoramisk_python, Ami, Msg};
use crate::util::*;

const EXTENSIONS: &str = "[default]
exten => 1001,hint,SIP/1001&Custom:dnd1001
exten => 1002,hint,Custom:lamp
exten => 2000,hint,SIP/alice
exten => 500,1,Dial(SIP/1001)
 same => n,Hangup()
exten => 600,1,Answer()
 same => n,Set(DEVICE_STATE(Custom:lamp)=INUSE)
 same => n,NoOp(lamp is ${DEVICE_STATE(Custom:lamp)} and 1002 is ${EXTENSION_STATE(1002)})
 same => n,Hangup()
";

/// Starling with the hint modules, res_manager on a free port (user `admin`) and peer 1001 at
/// `peer_port`.
fn hints_pbx(name: &str, peer_port: u16) -> (Server, u16, u16) {
    let ami = free_tcp_port();
    let (server, sip) = sip_pbx_on_port(
        name,
        &["pbx_config", "app_dial", "func_devstate", "func_extstate", "res_manager"],
        Some(EXTENSIONS),
        |_| {
            format!(
                "allowguest=yes\ncontext=default\n[1001]\ntype=peer\nhost=127.0.0.1\nport={peer_port}\n\
                 insecure=invite\ndisallow=all\nallow=ulaw\n[alice]\ntype=friend\nhost=dynamic\nsecret=pw\n"
            )
        },
    );
    write_manager_conf(&server, ami);
    let out = server.rx("module load res_manager");
    assert!(out.contains("Loaded"), "{out}\n{}", server.log_tail());
    (server, sip, ami)
}

pub(crate) fn write_manager_conf(server: &Server, ami: u16) {
    std::fs::write(
        server.dir.etc().join("manager.conf"),
        format!(
            "[general]\nenabled=yes\nport={ami}\nbindaddr=127.0.0.1\n\n[admin]\nsecret=s3cret\nread=all\nwrite=all\n\
             deny=0.0.0.0/0.0.0.0\npermit=127.0.0.1/255.255.255.255\n"
        ),
    )
    .unwrap();
}

/// Sends an action and returns its reply, keeping the events that come meanwhile.
fn ask(ami: &mut Ami, headers: &[(&str, &str)], events: &mut Vec<Msg>) -> Msg {
    let id = headers.iter().find(|(k, _)| *k == "ActionID").map(|(_, v)| *v).expect("an ActionID");
    ami.send(headers);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let m = ami.read().expect("the session stays open");
        if get(&m, "ActionID") == Some(id) {
            return m;
        }
        if get(&m, "Event").is_some() {
            events.push(m);
        }
    }
    panic!("no reply to {headers:?}");
}

/// The values of a sequence with repeats next to each other dropped.
fn changes<T: PartialEq + Clone>(seen: &[T]) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for s in seen {
        if out.last() != Some(s) {
            out.push(s.clone());
        }
    }
    out
}

/// The hint of a SIP peer follows a call to it: Idle (0) while it waits, Ringing (8) while it
/// rings (the UAS answers after 2 s), InUse (1) while it talks, Idle again after the BYE — in
/// the manager's ExtensionState (Status and StatusText), EXTENSION_STATE() (read through
/// Getvar) and `core show hints`; ExtensionStatus events say the same, DeviceStateChange events
/// name SIP/1001.
#[test]
fn a_hinted_peer_goes_idle_ringing_inuse_idle_through_a_call() {
    let uas = SippUas::spawn("uas_ring_answer.xml");
    let (server, sip, port) = hints_pbx("hintcall", uas.port);
    let hints = server.rx("core show hints");
    assert!(hints.contains("\n    -= Registered Asterisk Dial Plan Hints =-\n"), "{hints}");
    let line = format!(
        "{:<30}: {:<60}  State:{:<15} Presence:{:<15} Watchers  0\n",
        "1001@default", "SIP/1001&Custom:dnd1001", "Idle", "not_set"
    );
    assert!(hints.contains(&line), "{hints}\nwanted:\n{line}");
    assert!(hints.ends_with("----------------\n- 3 hints registered\n"), "{hints}");

    let mut ami = Ami::login(port, "admin", "s3cret");
    let mut events = Vec::new();
    let first = ask(&mut ami, &[("Action", "ExtensionState"), ("Exten", "1001"), ("ActionID", "e0")], &mut events);
    assert_eq!(get(&first, "Response"), Some("Success"), "{first:?}");
    assert_eq!(get(&first, "Message"), Some("Extension Status"));
    assert_eq!(get(&first, "Context"), Some("default"));
    assert_eq!(get(&first, "Hint"), Some("SIP/1001&Custom:dnd1001"));
    assert_eq!((get(&first, "Status"), get(&first, "StatusText")), (Some("0"), Some("Idle")));

    let caller = std::thread::spawn(move || run_sipp(sip, "invite_answer.xml", "500", "", "", 1));
    let (mut statuses, mut functions) = (Vec::new(), Vec::new());
    let mut ringing_hints = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    while Instant::now() < deadline {
        n += 1;
        let id = format!("p{n}");
        let state = ask(&mut ami, &[("Action", "ExtensionState"), ("Exten", "1001"), ("ActionID", &id)], &mut events);
        let status = get(&state, "Status").unwrap_or("").to_owned();
        let id = format!("g{n}");
        let var = ask(
            &mut ami,
            &[("Action", "Getvar"), ("Variable", "EXTENSION_STATE(1001@default)"), ("ActionID", &id)],
            &mut events,
        );
        functions.push(get(&var, "Value").unwrap_or("").to_owned());
        if status == "8" && ringing_hints.is_none() {
            ringing_hints = Some(server.rx("core show hints"));
        }
        statuses.push(status);
        if caller.is_finished() && statuses.last().map(String::as_str) == Some("0") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, out) = caller.join().unwrap();
    assert_eq!(code, 0, "{out}\n{}", server.log_tail());
    assert_eq!(uas.finish().0, 0, "the peer took the call");
    assert_eq!(changes(&statuses), ["0", "8", "1", "0"], "{statuses:?}");
    assert_eq!(changes(&functions), ["NOT_INUSE", "RINGING", "INUSE", "NOT_INUSE"], "{functions:?}");
    let ringing_hints = ringing_hints.unwrap();
    assert!(ringing_hints.contains("State:Ringing "), "{ringing_hints}");

    // The events, in order (the last may still be on its way).
    let deadline = Instant::now() + Duration::from_secs(5);
    let status_events = |events: &[Msg]| -> Vec<(String, String)> {
        events
            .iter()
            .filter(|e| get(e, "Event") == Some("ExtensionStatus") && get(e, "Exten") == Some("1001"))
            .map(|e| (get(e, "Status").unwrap_or("").to_owned(), get(e, "StatusText").unwrap_or("").to_owned()))
            .collect()
    };
    while status_events(&events).len() < 3 && Instant::now() < deadline {
        events.push(ami.read().expect("the session stays open"));
    }
    let pairs = |v: &[(&str, &str)]| v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
    assert_eq!(status_events(&events), pairs(&[("8", "Ringing"), ("1", "InUse"), ("0", "Idle")]), "{events:#?}");
    let event = events.iter().find(|e| get(e, "Event") == Some("ExtensionStatus")).unwrap();
    assert_eq!(get(event, "Context"), Some("default"));
    assert_eq!(get(event, "Hint"), Some("SIP/1001&Custom:dnd1001"));
    let devices: Vec<&str> = events
        .iter()
        .filter(|e| get(e, "Event") == Some("DeviceStateChange") && get(e, "Device") == Some("SIP/1001"))
        .filter_map(|e| get(e, "State"))
        .collect();
    // (The dialled channel is first NOT_INUSE, Down before its 180: reported as the device's
    // first state.)
    assert!(changes(&devices).ends_with(&["RINGING", "INUSE", "NOT_INUSE"]), "{devices:?}");

    let list = ask(&mut ami, &[("Action", "ExtensionStateList"), ("ActionID", "l")], &mut events);
    assert_eq!(get(&list, "EventList"), Some("start"), "{list:?}");
    let mut items = Vec::new();
    loop {
        let m = ami.read().expect("the list");
        if get(&m, "Event") == Some("ExtensionStateListComplete") {
            assert_eq!(get(&m, "ListItems"), Some("3"), "{m:?}");
            break;
        }
        if get(&m, "ActionID") == Some("l") {
            items.push(m);
        }
    }
    assert_eq!(items.len(), 3, "{items:?}");
    assert!(items.iter().all(|m| get(m, "Event") == Some("ExtensionStatus")), "{items:?}");
}

/// `Set(DEVICE_STATE(Custom:lamp)=INUSE)` in the dialplan: the hint on Custom:lamp is InUse,
/// `devstate list` shows it, and after a restart (the astdb keeps CustomDevstate/lamp) both
/// still do; `DEVICE_STATE()` refuses to set a device that is not Custom.
#[test]
fn a_custom_device_set_by_the_dialplan_survives_a_restart() {
    let (server, sip, _ami) = hints_pbx("hintcustom", 9);
    assert!(server.rx("core show hints").contains("State:Idle"), "{}", server.rx("core show hints"));
    let (code, out) = run_sipp(sip, "invite_pbx_hangs_up.xml", "600", "", "", 1);
    assert_eq!(code, 0, "{out}\n{}", server.log_tail());
    let logged =
        eventually(Duration::from_secs(5), || server.log().contains("lamp is INUSE and 1002 is INUSE").then_some(()));
    assert!(logged.is_some(), "{}", server.log_tail());
    let hint_of_1002 = |server: &Server| {
        let hints = server.rx("core show hints");
        hints.lines().find(|l| l.starts_with("1002@default")).map(str::to_owned).unwrap_or(hints)
    };
    assert!(hint_of_1002(&server).contains("State:InUse "), "{}", hint_of_1002(&server));
    let list = server.rx("devstate list");
    let expected = "\n---------------------------------------------------------------------\n\
                    --- Custom Device States --------------------------------------------\n\
                    ---------------------------------------------------------------------\n\
                    ---\n\
                    --- Name: 'Custom:lamp'  State: 'INUSE'\n\
                    ---\n\
                    ---------------------------------------------------------------------\n\
                    ---------------------------------------------------------------------\n\n";
    assert_eq!(list, expected);

    let dir = server.into_dir();
    let server = Server::start(dir);
    let state = eventually(Duration::from_secs(5), || {
        let line = hint_of_1002(&server);
        line.contains("State:InUse ").then_some(line)
    });
    assert!(state.is_some(), "after the restart: {}\n{}", hint_of_1002(&server), server.log_tail());
    assert_eq!(server.rx("devstate list"), expected);
}

/// `devstate change Custom:dnd1001 BUSY` (Asterisk's wording and refusals) moves the hint of
/// 1001 to Busy: panoramisk, the real AMI client, receives the ExtensionStatus event (Status 2,
/// StatusText Busy) and the DeviceStateChange; back to NOT_INUSE it is Idle again.
#[test]
fn devstate_change_moves_a_hint_and_the_manager_hears_it() {
    let python = panoramisk_python();
    let (server, _sip, port) = hints_pbx("hintdevstate", 9);
    let usage = server.rx("devstate change SIP/1001 BUSY");
    assert!(usage.contains("The devstate command can only be used to set 'Custom:' device state!"), "{usage}");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ami/extension_status.py");
    let mut child = std::process::Command::new(python)
        .arg(script)
        .args([port.to_string().as_str(), "admin", "s3cret", "1001"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The client logs in and waits for FullyBooted; then the change.
    std::thread::sleep(Duration::from_millis(1500));
    let out = server.rx("devstate change Custom:dnd1001 BUSY");
    assert_eq!(out, "Changing dnd1001 to BUSY\n");
    let busy = eventually(Duration::from_secs(5), || {
        let hints = server.rx("core show hints");
        hints.contains("State:Busy ").then_some(())
    });
    assert!(busy.is_some(), "{}", server.rx("core show hints"));
    assert_eq!(server.rx("devstate change Custom:dnd1001 NOT_INUSE"), "Changing dnd1001 to NOT_INUSE\n");
    let status = wait_timeout(&mut child, Duration::from_secs(30)).unwrap_or_else(|| {
        let _ = child.kill();
        child.wait().unwrap()
    });
    let output = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(status.success(), "{text}\n{}", server.log_tail());
    assert!(text.contains("ExtensionStatus 1001 default 2 Busy"), "{text}");
    assert!(text.contains("ExtensionStatus 1001 default 0 Idle"), "{text}");
    assert!(text.contains("DeviceStateChange Custom:dnd1001 BUSY"), "{text}");
    // A reload keeps the hints (and computes them again).
    assert_eq!(server.rx("dialplan reload"), "Dialplan reloaded.\n");
    let hints = server.rx("core show hints");
    assert!(hints.ends_with("- 3 hints registered\n") && hints.contains("State:Idle "), "{hints}");
    let usage = server.rx("devstate change Custom:dnd1001 SIDEWAYS");
    assert!(usage.contains("Usage: devstate change <device> <state>"), "{usage}");
    // Without func_devstate no one answers for Custom: devices: a hint on one alone is
    // Unavailable at once.
    assert_eq!(server.rx("module unload func_devstate"), "Unloaded func_devstate.so\n");
    let hints = server.rx("core show hints");
    let lamp = hints.lines().find(|l| l.starts_with("1002@default")).unwrap_or(&hints);
    assert!(lamp.contains("State:Unavailable "), "{hints}");
}

/// A dynamic peer's hint is Unavailable (4) until it registers, then Idle (0): chan_sip tells
/// the core when a peer registers (the manager hears ExtensionStatus for 2000).
#[test]
fn a_registration_makes_a_dynamic_peers_hint_idle() {
    let (server, sip, port) = hints_pbx("hintregister", 9);
    let line = |server: &Server| {
        let hints = server.rx("core show hints");
        hints.lines().find(|l| l.starts_with("2000@default")).map(str::to_owned).unwrap_or(hints)
    };
    assert!(line(&server).contains("State:Unavailable "), "{}", line(&server));
    let mut ami = Ami::login(port, "admin", "s3cret");
    let (code, out) = run_sipp(sip, "register.xml", "alice", "alice", "pw", 1);
    assert_eq!(code, 0, "{out}\n{}", server.log_tail());
    let event = ami.until("Exten", "2000", Duration::from_secs(5));
    assert_eq!(
        (get(&event, "Event"), get(&event, "Status"), get(&event, "StatusText")),
        (Some("ExtensionStatus"), Some("0"), Some("Idle"))
    );
    assert!(line(&server).contains("State:Idle "), "{}", line(&server));
}

/// The phone of a hinted peer puts its call on hold (re-INVITE sendonly): with `notifyhold=yes`
/// the hint goes InUse (1) → Hold (16) → Idle (0), and DEVICE_STATE() reads ONHOLD meanwhile.
#[test]
fn a_held_call_makes_the_hint_hold() {
    let (statuses, devices) = held_call_states("hinthold", "notifyhold=yes\n");
    let seen = changes(&statuses);
    assert!(seen.ends_with(&["1".to_owned(), "16".to_owned(), "0".to_owned()]), "{statuses:?}");
    assert!(changes(&devices).contains(&"ONHOLD".to_owned()), "{devices:?}");
}

/// chan_sip's default `notifyhold=no`: the held call stays in use (1), never Hold (16).
#[test]
fn without_notifyhold_a_held_call_stays_in_use() {
    let (statuses, devices) = held_call_states("hintnohold", "");
    let seen = changes(&statuses);
    assert!(seen.ends_with(&["1".to_owned(), "0".to_owned()]) && !seen.contains(&"16".to_owned()), "{statuses:?}");
    assert!(!devices.contains(&"ONHOLD".to_owned()), "{devices:?}");
}

/// `callcounter=no` (chan_sip's default; Starling's is yes): the peer's calls do not make its
/// state, the hint stays idle (0) through the call.
#[test]
fn without_callcounter_calls_leave_the_hint_idle() {
    let (statuses, _) = held_call_states("hintnocount", "callcounter=no\n");
    assert!(statuses.iter().all(|s| s == "0"), "{statuses:?}");
}

/// The hint's statuses (ExtensionState) and DEVICE_STATE(SIP/desk) every 100 ms while the desk
/// phone calls, holds, unholds and hangs up, with `general` in sip.conf's `[general]`.
fn held_call_states(name: &str, general: &str) -> (Vec<String>, Vec<String>) {
    let ami = free_tcp_port();
    let (server, sip) = sip_pbx_on_port(
        name,
        &["pbx_config", "func_devstate", "func_extstate", "res_manager"],
        Some("[default]\nexten => 3000,hint,SIP/desk\nexten => 10,1,Answer()\n same => n,Wait(10)\n same => n,Hangup()\n"),
        |_| general.to_owned() + "[desk]\ntype=friend\nhost=127.0.0.1\ninsecure=port,invite\ncontext=default\nmohinterpret=passthrough\ndisallow=all\nallow=ulaw\n",
    );
    write_manager_conf(&server, ami);
    assert!(server.rx("module load res_manager").contains("Loaded"));
    let mut ami = Ami::login(ami, "admin", "s3cret");
    let mut events = Vec::new();
    let caller = std::thread::spawn(move || run_sipp(sip, "invite_hold.xml", "10", "", "", 1));
    let (mut statuses, mut devices) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    while Instant::now() < deadline {
        n += 1;
        let id = format!("p{n}");
        let state = ask(&mut ami, &[("Action", "ExtensionState"), ("Exten", "3000"), ("ActionID", &id)], &mut events);
        statuses.push(get(&state, "Status").unwrap_or("").to_owned());
        let id = format!("g{n}");
        let var = ask(
            &mut ami,
            &[("Action", "Getvar"), ("Variable", "DEVICE_STATE(SIP/desk)"), ("ActionID", &id)],
            &mut events,
        );
        devices.push(get(&var, "Value").unwrap_or("").to_owned());
        if caller.is_finished() && statuses.last().map(String::as_str) == Some("0") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, out) = caller.join().unwrap();
    assert_eq!(code, 0, "{out}\n{}", server.log_tail());
    (statuses, devices)
}
