//! Issue 25: call pickup. features.conf `pickupexten` (`*8`) with sip.conf's call and pickup
//! groups (baresip phones, audio both ways), an INVITE with Replaces naming a ringing dialog (a
//! BLF key) or no dialog (481), `Pickup(exten@context)` and `PickupChan(SIP/1002)` (SIPp).
//! Phone 1002 is a SIPp UAS that rings until it is CANCELled "Call completed elsewhere".

use std::time::Duration;

use crate::util::{eventually, run_sipp_with, sip_pbx, Baresip, Server, SippUas};

/// 1002 (the UAS) is dialled from its extension; 81002 and 82 pick it up.
const EXTENSIONS: &str = "[phones]\n\
    exten => 1002,hint,SIP/1002\n\
    exten => 1002,1,Dial(SIP/1002,20)\n same => n,Hangup()\n\
    exten => 81002,1,Pickup(1002@phones)\n same => n,Hangup()\n\
    exten => 82,1,PickupChan(SIP/1002)\n same => n,Hangup()\n";

/// A PBX whose 1002 is the SIPp UAS on `uas_port`; 1001 and 1003 are phones without secrets;
/// 1002 and 1003 share call and pickup group 1 (1001 is in none).
fn pbx(name: &str, uas_port: u16) -> (Server, u16) {
    let (server, port) = sip_pbx(
        name,
        &["pbx_config", "app_dial", "app_directed_pickup", "cdr_csv"],
        Some(EXTENSIONS),
        &format!(
            "context=phones\n\
             [1001]\ntype=friend\nhost=dynamic\ncontext=phones\ndisallow=all\nallow=ulaw\n\
             [1002]\ntype=friend\nhost=127.0.0.1\nport={uas_port}\ncontext=phones\ndisallow=all\nallow=ulaw\ncallgroup=1\npickupgroup=1\n\
             [1003]\ntype=friend\nhost=dynamic\ncontext=phones\ndisallow=all\nallow=ulaw\ncallgroup=1,3-5\npickupgroup=1\nnamedpickupgroup=sales\n"
        ),
    );
    (server, port)
}

/// Waits until the UAS rings (its leg `Ringing` in `core show channels`).
fn wait_ringing(server: &Server) {
    let ringing = eventually(Duration::from_secs(20), || {
        let channels = server.rx("core show channels");
        channels.lines().any(|l| l.starts_with("SIP/1002-") && l.contains("Ringing")).then_some(())
    });
    assert!(ringing.is_some(), "1002 rings\n{}\n{}", server.rx("core show channels"), server.log_tail());
}

/// The CDR rows (Master.csv) once they are written.
fn cdr_rows(server: &Server, want: impl Fn(&[String]) -> bool) -> Vec<String> {
    let path = server.dir.path.join("log/cdr-csv/Master.csv");
    eventually(Duration::from_secs(10), || {
        let rows: Vec<String> = std::fs::read_to_string(&path).unwrap_or_default().lines().map(str::to_owned).collect();
        want(&rows).then_some(rows)
    })
    .unwrap_or_else(|| panic!("CDRs: {:?}\n{}", std::fs::read_to_string(&path), server.log_tail()))
}

/// A caller (a SIPp guest, `invite_answer.xml`: BYE 1 s after the answer) dials 1002 on its own
/// thread while `pick` picks the call up; then checks the UAS's CANCEL (its scenario does) and
/// that the caller's record names the picker as the party that answered.
fn caller_picked_up(name: &str, pick: impl FnOnce(&Server, u16)) {
    let uas = SippUas::spawn("uas_ring_cancel_elsewhere.xml");
    let (server, port) = pbx(name, uas.port);
    let caller = std::thread::spawn(move || run_sipp_with(port, "invite_answer.xml", &["-s", "1002", "-m", "1"]));
    wait_ringing(&server);
    pick(&server, port);
    let (code, out) = caller.join().unwrap();
    assert_eq!(code, 0, "the caller was answered by the picker\n{out}\n{}", server.log_tail());
    let (code, out) = uas.finish();
    assert_eq!(code, 0, "1002 got CANCEL with Reason: SIP;cause=200\n{out}\n{}", server.log_tail());
    let rows = cdr_rows(&server, |rows| rows.iter().any(|r| r.contains("\"Dial\"")));
    let dial = rows.iter().find(|r| r.contains("\"Dial\"")).unwrap();
    assert!(dial.contains("\"SIP/1003-") && dial.contains("\"ANSWERED\""), "the record names the picker: {rows:#?}");
    assert!(!rows.iter().any(|r| r.contains("\"SIP/1002-")), "no record for the rung leg: {rows:#?}");
}

/// `Pickup(1002@phones)`: the ringing channel dialled from extension 1002 (its own context
/// `phones`, the peer's) is answered by phone 1003.
#[test]
fn pickup_by_extension_answers_the_ringing_call() {
    caller_picked_up("pickupexten_app", |server, port| {
        let (code, out) = run_sipp_with(port, "invite_picker.xml", &["-s", "81002", "-m", "1"]);
        assert_eq!(code, 0, "1003 picked up\n{out}\n{}", server.log_tail());
    });
}

/// `PickupChan(SIP/1002)`: the ringing channel `SIP/1002-...` is answered by phone 1003; the
/// manager hears `Pickup` with the picker's channel and the target's (`TargetChannel`).
#[test]
fn pickupchan_answers_the_named_ringing_channel() {
    caller_picked_up("pickupchan", |server, port| {
        let ami = crate::manager::free_tcp_port();
        crate::hints::write_manager_conf(server, ami);
        let loaded = server.rx("module load res_manager");
        assert!(loaded.contains("Loaded"), "{loaded}\n{}", server.log_tail());
        let mut manager = crate::manager::Ami::login(ami, "admin", "s3cret");
        let (code, out) = run_sipp_with(port, "invite_picker.xml", &["-s", "82", "-m", "1"]);
        assert_eq!(code, 0, "1003 picked up\n{out}\n{}", server.log_tail());
        let event = manager.until("Event", "Pickup", Duration::from_secs(10));
        let field = |key| crate::manager::get(&event, key).unwrap_or("");
        assert!(field("Channel").starts_with("SIP/1003-"), "{event:?}");
        assert!(field("TargetChannel").starts_with("SIP/1002-"), "{event:?}");
    });
}

/// A Replaces header naming the dialog of the `sip show channels` row `row` picks (its Call-ID
/// and tags, as `sip show channel` shows them).
fn replaces_of(server: &Server, row: impl Fn(&str) -> bool) -> String {
    let channels = server.rx("sip show channels");
    let prefix = channels
        .lines()
        .skip(1)
        .filter(|l| l.starts_with("127.0.0.1"))
        .find(|l| row(l))
        .and_then(|l| l.get(34..49))
        .map(str::trim)
        .unwrap_or_else(|| panic!("the dialog: {channels}"))
        .to_owned();
    let shown = server.rx(&format!("sip show channel {prefix}"));
    let field = |key: &str| {
        shown
            .lines()
            .find_map(|l| l.trim().strip_prefix(key).map(|v| v.trim().to_owned()))
            .unwrap_or_else(|| panic!("{key} in {shown}"))
    };
    let theirs = Some(field("Their Tag:")).filter(|t| !t.is_empty()).unwrap_or_else(|| "x".to_owned());
    format!("{};to-tag={};from-tag={theirs}", field("Call-ID:"), field("Our Tag:"))
}

/// An INVITE with Replaces naming the ringing leg (its Call-ID and our tag, as
/// `sip show channel` shows them) picks it up, as a phone's BLF key does.
#[test]
fn invite_with_replaces_picks_up_a_ringing_dialog() {
    caller_picked_up("pickupreplaces", |server, port| {
        let replaces = replaces_of(server, |row| row.trim_end().ends_with(" 1002"));
        let (code, out) =
            run_sipp_with(port, "invite_replaces.xml", &["-s", "1002", "-m", "1", "-key", "replaces", &replaces]);
        assert_eq!(code, 0, "1003 picked up with Replaces: {replaces}\n{out}\n{}", server.log_tail());
    });
}

/// An INVITE with Replaces naming the caller's own dialog, still ringing (a call to us whose
/// Dial rings 1002), answers the caller: the Dial takes the new call as the party that answered
/// and CANCELs 1002.
#[test]
fn invite_with_replaces_of_a_ringing_call_to_us_answers_it() {
    caller_picked_up("pickupinbound", |server, port| {
        let replaces = replaces_of(server, |row| !row.trim_end().ends_with(" 1002"));
        let (code, out) =
            run_sipp_with(port, "invite_replaces.xml", &["-s", "1002", "-m", "1", "-key", "replaces", &replaces]);
        assert_eq!(code, 0, "1003 answered the caller with Replaces: {replaces}\n{out}\n{}", server.log_tail());
    });
}

/// A BLF key: 1003 subscribes to 1002's hint (Event: dialog) while it rings; the NOTIFY names
/// the ringing call `pickup-<the subscription's Call-ID>`, and an INVITE with that in Replaces
/// picks the call up (as `Pickup(1002@phones)`, chan_sip's magic pickup).
#[test]
fn invite_with_replaces_of_a_blf_notifys_call_id_picks_up() {
    caller_picked_up("pickupblf", |server, port| {
        let args = ["-s", "1002", "-key", "user", "1003", "-cid_str", "blf-%u", "-m", "1"];
        let (code, out) = run_sipp_with(port, "subscribe_once.xml", &args);
        assert_eq!(code, 0, "the NOTIFY names the ringing call\n{out}\n{}", server.log_tail());
        assert!(server.rx("sip show subscriptions").contains("blf-1"), "{}", server.rx("sip show subscriptions"));
        let replaces = "pickup-blf-1;to-tag=a;from-tag=b";
        let (code, out) =
            run_sipp_with(port, "invite_replaces.xml", &["-s", "1002", "-m", "1", "-key", "replaces", replaces]);
        assert_eq!(code, 0, "1003 picked up from its BLF key\n{out}\n{}", server.log_tail());
    });
}

/// An INVITE with Replaces naming no dialog of ours is 481.
#[test]
fn invite_with_replaces_of_an_unknown_dialog_is_481() {
    let (server, port) = pbx("pickup481", 9);
    let (code, out) = run_sipp_with(port, "invite_replaces_481.xml", &["-s", "1002", "-m", "1"]);
    assert_eq!(code, 0, "481\n{out}\n{}", server.log_tail());
}

/// sip show peer shows the groups as chan_sip does.
#[test]
fn sip_show_peer_shows_the_groups() {
    let (server, _) = pbx("pickupshow", 9);
    let shown = server.rx("sip show peer 1003");
    for line in
        ["  Callgroup    : 1, 3, 4, 5\n", "  Pickupgroup  : 1\n", "  Named Callgr : \n", "  Nam. Pickupgr: sales\n"]
    {
        assert!(shown.contains(line), "{line:?} in {shown}");
    }
}

/// features.conf `pickupexten` (`*8`): baresip 1003 dials it while 1002 (its pickup group)
/// rings for baresip 1001; 1003 gets the call, each hears the other's tone (1001 440 Hz, 1003
/// 880 Hz), 1002 gets CANCEL "Call completed elsewhere", and the CDR names 1003.
#[test]
fn baresip_dials_pickupexten_and_takes_the_call_ringing_in_its_group() {
    let uas = SippUas::spawn("uas_ring_cancel_elsewhere.xml");
    let (server, port) = pbx("pickupstar8", uas.port);
    let caller = Baresip::spawn(
        "pickup-1001",
        &format!("<sip:1001@127.0.0.1:{port}>;regint=0"),
        "g711.so",
        8000,
        440,
        &["-e", &format!("/dial sip:1002@127.0.0.1:{port}")],
        12,
    );
    wait_ringing(&server);
    let picker = Baresip::spawn(
        "pickup-1003",
        &format!("<sip:1003@127.0.0.1:{port}>;regint=0"),
        "g711.so",
        8000,
        880,
        &["-e", &format!("/dial sip:*8@127.0.0.1:{port}")],
        8,
    );
    let bridged = eventually(Duration::from_secs(8), || {
        let bridges = server.rx("bridge show all");
        (bridges.contains("native_rtp") || bridges.contains("simple_bridge")).then_some(())
    });
    assert!(bridged.is_some(), "1001 and 1003 bridged: {}\n{}", server.rx("bridge show all"), server.log_tail());
    let (samples, peak, log) = picker.heard();
    assert!(samples >= 16_000, "1003 heard at least 2 s: {samples} samples\n{log}\n{}", server.log_tail());
    assert!((435..=445).contains(&peak), "1003 heard 1001's 440 Hz: peak at {peak} Hz\n{}", server.log_tail());
    let (samples, peak, log) = caller.heard();
    assert!(samples >= 16_000, "1001 heard at least 2 s: {samples} samples\n{log}");
    assert!((875..=885).contains(&peak), "1001 heard 1003's 880 Hz: peak at {peak} Hz");
    let (code, out) = uas.finish();
    assert_eq!(code, 0, "1002 got CANCEL with Reason: SIP;cause=200\n{out}\n{}", server.log_tail());
    let rows = cdr_rows(&server, |rows| rows.iter().any(|r| r.contains("\"Dial\"")));
    let dial = rows.iter().find(|r| r.contains("\"Dial\"")).unwrap();
    assert!(dial.contains("\"SIP/1001-") && dial.contains("\"SIP/1003-") && dial.contains("\"ANSWERED\""), "{rows:#?}");
}

/// Issue 25's acceptance: baresip's `presence` module watching 1001 (a `;presence=p2p` contact,
/// `Event: presence`, PIDF) shows 1001 `busy` while it is in a call and `online` after.
#[test]
fn baresip_presence_shows_busy_during_a_call_and_online_after() {
    let phone = SippUas::spawn("uas_answer.xml");
    let (server, port) = sip_pbx(
        "pickuppresence",
        &["pbx_config", "app_dial"],
        Some("[phones]\nexten => 1001,hint,SIP/1001\nexten => 1001,1,Dial(SIP/1001,20)\n same => n,Hangup()\n"),
        &format!(
            "context=phones\n[1001]\ntype=friend\nhost=127.0.0.1\nport={}\ncontext=phones\ndisallow=all\nallow=ulaw\n\
             [1004]\ntype=friend\nhost=dynamic\ncontext=phones\n",
            phone.port
        ),
    );
    let watcher = Baresip::spawn_with_contacts(
        "presence-1004",
        &format!("<sip:1004@127.0.0.1:{port}>;regint=0"),
        "g711.so",
        8000,
        440,
        &["-v"],
        25,
        "module_app contact.so\nmodule_app presence.so\n",
        &format!("\"1001\" <sip:1001@127.0.0.1:{port}>;presence=p2p\n"),
    );
    // baresip logs `<sip:1001@...> changed status from Online to Busy` (the words coloured).
    let status = |word: &'static str| {
        move |log: &str| {
            log.lines()
                .any(|l| l.contains("changed status") && l.rsplit(" to ").next().is_some_and(|to| to.contains(word)))
        }
    };
    // Subscribed, and told 1001 is idle (Online) before the call.
    let subscribed = eventually(Duration::from_secs(10), || {
        server.rx("sip show subscriptions").contains("1001@phones      Idle").then_some(())
    });
    assert!(subscribed.is_some(), "{}\n{}\n{}", watcher.log(), server.rx("sip show subscriptions"), server.log_tail());
    std::thread::sleep(Duration::from_millis(500));
    let (code, out) = run_sipp_with(port, "invite_answer_long.xml", &["-s", "1001", "-m", "1"]);
    assert_eq!(code, 0, "the call to 1001\n{out}\n{}", server.log_tail());
    let busy_then_online = eventually(Duration::from_secs(10), || {
        let log = watcher.log();
        let busy = log.lines().position(|l| status("Busy")(l))?;
        log.lines().skip(busy).any(|l| status("Online")(l)).then_some(())
    });
    assert!(busy_then_online.is_some(), "1001 busy, then online\n{}\n{}", watcher.log(), server.log_tail());
    let (code, out) = phone.finish();
    assert_eq!(code, 0, "{out}");
}
