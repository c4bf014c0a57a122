//! Dial(SIP/...): outbound calls, bridging, the DIALSTATUS outcomes and forking, with SIPp on
//! both sides (a UAC calling in, one or two UASes called).

use std::time::Duration;

use crate::util::*;

const EXTENSIONS: &str = "[default]
exten => 10,1,Dial(SIP/uas,5)
 same => n,Hangup()
exten => 11,1,Dial(SIP/uas,2)
 same => n,Answer()
 same => n,NoOp(DIALSTATUS=${DIALSTATUS} CAUSE=${HANGUPCAUSE})
 same => n,Hangup()
exten => 12,1,Dial(SIP/nobody,2)
 same => n,Answer()
 same => n,NoOp(DIALSTATUS=${DIALSTATUS})
 same => n,Hangup()
exten => 13,1,Dial(SIP/uas&SIP/uas2,5)
 same => n,Hangup()
exten => 15,1,Dial(SIP/viaproxy/15,5)
 same => n,Hangup()
exten => 16,1,Dial(SIP/trunk/16,5)
 same => n,Hangup()
exten => 17,1,Dial(SIP/uas,5,U(sub-callee^hello))
 same => n,Hangup()
exten => 18,1,Dial(SIP/uas,5,U(sub-abort))
 same => n,Answer()
 same => n,NoOp(After abort DIALSTATUS=${DIALSTATUS})
 same => n,Hangup()
exten => 20,1,Dial(SIP/uas2,5)
 same => n,Hangup()
exten => 14,1,Dial(Local/600@default,5)
 same => n,Hangup()
exten => 600,1,Answer()
 same => n,Echo()
[sub-callee]
exten => s,1,NoOp(Sub on ${CHANNEL} arg ${ARG1})
 same => n,Return()
[sub-abort]
exten => s,1,Set(GOSUB_RESULT=ABORT)
 same => n,Return()
";

/// Starling with app_dial; `uas` (and `uas2`) are peers at the given SIPp ports.
fn b2bua(name: &str, uas: u16, uas2: u16) -> (Server, u16) {
    b2bua_with(name, uas, uas2, "", "")
}

/// [`b2bua`] with more `[general]` lines and more sip.conf sections.
fn b2bua_with(name: &str, uas: u16, uas2: u16, general: &str, more_peers: &str) -> (Server, u16) {
    let peer = |name: &str, port: u16| {
        format!("[{name}]\ntype=peer\nhost=127.0.0.1\nport={port}\ninsecure=port,invite\ndisallow=all\nallow=ulaw\n")
    };
    sip_pbx(
        name,
        &["pbx_config", "app_dial", "app_echo", "res_musiconhold"],
        Some(EXTENSIONS),
        &format!("allowguest=yes\ncontext=default\n{general}{}{}{more_peers}", peer("uas", uas), peer("uas2", uas2)),
    )
}

fn dial_log_has(server: &Server, text: &str) -> bool {
    eventually(Duration::from_secs(5), || server.log().contains(text).then_some(())).is_some()
}

/// SIPp calls 10 → Dial(SIP/uas): the UAS answers, the two calls are bridged natively (same
/// codec on both legs), the caller's BYE ends both.
#[test]
fn dial_bridges_two_sip_calls_natively() {
    let uas = SippUas::spawn("uas_answer.xml");
    let (server, port) = b2bua("dialok", uas.port, 1);
    let caller = std::thread::spawn(move || run_sipp(port, "invite_answer_long.xml", "10", "", "", 1));
    let bridges = eventually(Duration::from_secs(5), || {
        let b = server.rx("bridge show all");
        b.contains("native_rtp").then_some(b)
    });
    assert!(bridges.is_some(), "a native bridge: {}\n{}", server.rx("bridge show all"), server.log_tail());
    let channels = server.rx("core show channels");
    assert!(channels.contains("SIP/uas-"), "{channels}");
    let (code, out) = caller.join().unwrap();
    assert_eq!(code, 0, "caller: {out}\n{}", server.log_tail());
    let (code, out) = uas.finish();
    assert_eq!(code, 0, "callee got the BYE: {out}\n{}", server.log_tail());
    let gone = eventually(Duration::from_secs(5), || {
        let c = server.rx("core show channels");
        c.contains("0 active channels").then_some(c)
    });
    assert!(gone.is_some(), "both legs ended: {}", server.rx("core show channels"));
    assert!(server.rx("sip show channels").contains("0 active SIP channels"));
}

/// 486 from the callee: DIALSTATUS=BUSY, HANGUPCAUSE 17.
#[test]
fn a_busy_callee_makes_dialstatus_busy() {
    let uas = SippUas::spawn("uas_busy.xml");
    let (server, port) = b2bua("dialbusy", uas.port, 1);
    let (code, out) = run_sipp(port, "invite_pbx_hangs_up.xml", "11", "", "", 1);
    assert_eq!(code, 0, "{out}\n{}", server.log_tail());
    assert!(dial_log_has(&server, "DIALSTATUS=BUSY CAUSE=17"), "{}", server.log_tail());
    let (code, out) = uas.finish();
    assert_eq!(code, 0, "callee: {out}");
}

/// No answer within Dial's timeout: CANCEL to the callee (which answers 487), NOANSWER.
#[test]
fn no_answer_in_time_cancels_and_makes_noanswer() {
    let uas = SippUas::spawn("uas_ring_cancel.xml");
    let (server, port) = b2bua("dialnoanswer", uas.port, 1);
    let (code, out) = run_sipp(port, "invite_pbx_hangs_up.xml", "11", "", "", 1);
    assert_eq!(code, 0, "{out}\n{}", server.log_tail());
    assert!(dial_log_has(&server, "DIALSTATUS=NOANSWER"), "{}", server.log_tail());
    let (code, out) = uas.finish();
    assert_eq!(code, 0, "callee got CANCEL: {out}\n{}", server.log_tail());
}

/// An unknown peer: CHANUNAVAIL without sending anything.
#[test]
fn an_unknown_peer_is_chanunavail() {
    let (server, port) = b2bua("dialunknown", 1, 1);
    let (code, out) = run_sipp(port, "invite_pbx_hangs_up.xml", "12", "", "", 1);
    assert_eq!(code, 0, "{out}\n{}", server.log_tail());
    assert!(dial_log_has(&server, "DIALSTATUS=CHANUNAVAIL"), "{}", server.log_tail());
}

/// Dial(SIP/uas&SIP/uas2): the first rings, the second answers; the first gets CANCEL.
#[test]
fn forking_cancels_the_loser() {
    let ringing = SippUas::spawn("uas_ring_cancel.xml");
    let answering = SippUas::spawn("uas_answer.xml");
    let (server, port) = b2bua("dialfork", ringing.port, answering.port);
    let (code, out) = run_sipp(port, "invite_answer.xml", "13", "", "", 1);
    assert_eq!(code, 0, "caller: {out}\n{}", server.log_tail());
    let (code, out) = ringing.finish();
    assert_eq!(code, 0, "the loser got CANCEL: {out}\n{}", server.log_tail());
    let (code, out) = answering.finish();
    assert_eq!(code, 0, "the winner got BYE: {out}\n{}", server.log_tail());
}

/// Dial(Local/600@default): a Local channel answered by the dialplan, bridged to the caller.
#[test]
fn dial_reaches_a_local_channel() {
    let (server, port) = b2bua("diallocal", 1, 1);
    let (code, out) = run_sipp(port, "invite_answer.xml", "14", "", "", 1);
    assert_eq!(code, 0, "{out}\n{}", server.log_tail());
    assert!(dial_log_has(&server, "Called Local/600@default"), "{}", server.log_tail());
}

/// alice (baresip) calls bob (baresip, registered, auto-answer) through Dial(SIP/bob,20): each
/// hears the other's tone. Returns the bridge technology seen while they talked.
/// `sip show channelstats` counts the packets of both calls (relayed ones too).
fn both_counting(server: &Server) {
    let counting = eventually(Duration::from_secs(5), || packets_received(server).iter().all(|&n| n > 0).then_some(()));
    assert!(counting.is_some(), "{}", server.rx("sip show channelstats"));
}

/// The RTP packets Starling has received on each call (`sip show channelstats`' Recv: Pack).
fn packets_received(server: &Server) -> Vec<u64> {
    let stats = server.rx("sip show channelstats");
    stats
        .lines()
        .skip(1)
        .filter(|l| l.starts_with("127.0.0.1"))
        .filter_map(|l| l.split_whitespace().nth(3).and_then(|n| n.parse::<u64>().ok()))
        .collect()
}

/// alice (baresip, a 440 Hz tone) calls bob (baresip, auto-answer, 880 Hz) through
/// `Dial(SIP/bob,20)`; both must hear the other's tone. `general` goes in sip.conf's
/// `[general]`, `peer_keys` in both peers' sections; `during` runs while they talk. Returns the
/// bridge's technology.
fn alice_calls_bob(
    name: &str,
    alice_codec: (&str, &str, u32),
    bob_codec: (&str, &str, u32),
    general: &str,
    peer_keys: &str,
    during: impl FnOnce(&Server),
) -> String {
    let (server, port) = alice_and_bob_pbx(name, alice_codec.0, bob_codec.0, general, peer_keys, &[]);
    alice_calls_bob_on(&server, port, name, alice_codec, bob_codec, during)
}

/// The Starling [`alice_calls_bob`] calls through (`files`: more configuration files).
fn alice_and_bob_pbx(
    name: &str,
    alice_allow: &str,
    bob_allow: &str,
    general: &str,
    peer_keys: &str,
    files: &[(&str, &str)],
) -> (Server, u16) {
    sip_pbx_with_files(
        name,
        &["pbx_config", "app_dial"],
        Some("[from-alice]\nexten => bob,1,Dial(SIP/bob,20)\n same => n,Hangup()\n[from-bob]\n"),
        &format!(
            "{general}[alice]\ntype=friend\nhost=dynamic\nsecret=pw\ncontext=from-alice\ndisallow=all\nallow={alice_allow}\n{peer_keys}\
             [bob]\ntype=friend\nhost=dynamic\nsecret=bobpw\ncontext=from-bob\ndisallow=all\nallow={bob_allow}\n{peer_keys}"
        ),
        files,
    )
}

/// [`alice_calls_bob`] through `server` (SIP on `port`).
fn alice_calls_bob_on(
    server: &Server,
    port: u16,
    name: &str,
    alice_codec: (&str, &str, u32),
    bob_codec: (&str, &str, u32),
    during: impl FnOnce(&Server),
) -> String {
    let bob = Baresip::spawn(
        &format!("{name}-bob"),
        &format!("<sip:bob@127.0.0.1:{port}>;auth_pass=bobpw;answermode=auto;regint=60"),
        bob_codec.1,
        bob_codec.2,
        880,
        &[],
        14,
    );
    let registered = eventually(Duration::from_secs(10), || {
        server.rx("sip show peer bob").contains("Reg. Contact : sip:").then_some(())
    });
    assert!(registered.is_some(), "bob registered: {}\n{}", server.rx("sip show peer bob"), server.log_tail());
    let alice = Baresip::spawn(
        &format!("{name}-alice"),
        &format!("<sip:alice@127.0.0.1:{port}>;auth_pass=pw;answermode=auto;regint=0"),
        alice_codec.1,
        alice_codec.2,
        440,
        &["-e", &format!("/dial sip:bob@127.0.0.1:{port}")],
        8,
    );
    let technology = eventually(Duration::from_secs(8), || {
        let bridges = server.rx("bridge show all");
        ["native_rtp", "simple_bridge"].into_iter().find(|t| bridges.contains(t)).map(str::to_owned)
    })
    .unwrap_or_else(|| panic!("alice and bob were bridged\n{}", server.log_tail()));
    let rows = eventually(Duration::from_secs(5), || (packets_received(server).len() == 2).then_some(()));
    assert!(rows.is_some(), "{}", server.rx("sip show channelstats"));
    assert!(server.rx("sip show channelstats").starts_with("Peer             Call ID      Duration Recv: Pack  Lost       (     %) Jitter Send: Pack  Lost       (     %) Jitter"));
    during(server);
    let (samples, peak, log) = alice.heard();
    assert!(samples >= 16_000, "alice heard at least 2 s: {samples} samples\n{log}\n{}", server.log_tail());
    assert!((875..=885).contains(&peak), "alice heard bob's 880 Hz: peak at {peak} Hz\n{}", server.log_tail());
    let (samples, peak, log) = bob.heard();
    assert!(samples >= 16_000, "bob heard at least 2 s: {samples} samples\n{log}");
    assert!((435..=445).contains(&peak), "bob heard alice's 440 Hz: peak at {peak} Hz");
    technology
}

/// Both on PCMU: the media is relayed natively (`bridge show all` says native_rtp).
#[test]
fn baresip_alice_and_bob_talk_through_a_native_bridge() {
    let technology =
        alice_calls_bob("dialbs", ("ulaw", "g711.so", 8000), ("ulaw", "g711.so", 8000), "", "", both_counting);
    assert_eq!(technology, "native_rtp");
}

/// A stranger spraying RTP at every RTP port of rtp.conf's range, every 10 ms per port, from
/// before the call to the end: a 2 kHz tone, in sequence, one SSRC per port.
struct Stranger {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Stranger {
    fn spray(ports: std::ops::Range<u16>) -> Stranger {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let mut linear = [0i16; 160];
            let mut payload = [0u8; 160];
            let mut sent = 0u64;
            let mut seq = 0u16;
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                for (i, sample) in linear.iter_mut().enumerate() {
                    let t = (u64::from(seq) * 160 + i as u64) as f64 / 8000.0;
                    *sample = (f64::sin(2.0 * std::f64::consts::PI * 2000.0 * t) * 16_000.0) as i16;
                }
                starling_media::g711::encode_ulaw(&linear, &mut payload);
                for port in ports.clone().step_by(2) {
                    let mut packet = vec![0x80, 0x00];
                    packet.extend_from_slice(&seq.to_be_bytes());
                    packet.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
                    packet.extend_from_slice(&(0x0bad_0000 + u32::from(port)).to_be_bytes());
                    packet.extend_from_slice(&payload);
                    sent += u64::from(socket.send_to(&packet, ("127.0.0.1", port)).is_ok());
                }
                seq = seq.wrapping_add(1);
                std::thread::sleep(Duration::from_millis(10));
            }
            sent
        });
        Stranger { stop, thread: Some(thread) }
    }

    /// Stops; how many packets it sent.
    fn stop(mut self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().map_or(0, |t| t.join().unwrap())
    }
}

impl Drop for Stranger {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// An RTP port range of 20 ports, all free now (below the ephemeral ports).
fn free_rtp_range() -> std::ops::Range<u16> {
    let mut base = 24_000 + (std::process::id() % 300) as u16 * 20;
    loop {
        let range = base..base + 20;
        if range.clone().all(|p| std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok()) {
            return range;
        }
        base = if base >= 31_000 { 24_000 } else { base + 20 };
    }
}

/// The packets strictrtp refused on each call (`sip show channelstats`' last column, Stray).
fn strays(server: &Server) -> Vec<u64> {
    let stats = server.rx("sip show channelstats");
    stats
        .lines()
        .skip(1)
        .filter(|l| l.starts_with("127.0.0.1"))
        .filter_map(|l| l.split_whitespace().last().and_then(|n| n.parse::<u64>().ok()))
        .collect()
}

/// RTP bleed (issue 21): a stranger sprays RTP at the call's RTP ports from before the call
/// (so it is there first) and all through; alice and bob, natively bridged, still hear each
/// other's tone and not its 2 kHz, and `sip show channelstats` counts its packets as Stray on
/// both calls. `peer_keys`: `nat=force_rport,comedia` for the comedia variant, where media
/// goes where the source strictrtp takes is. Both far ends are on this host: the legs are
/// relayed in the kernel once learned, and the stranger's packets go up to the relay thread.
fn stranger_sprays_at_a_bridged_call(name: &str, peer_keys: &str) {
    let range = free_rtp_range();
    let rtp_conf = format!("[general]\nrtpstart={}\nrtpend={}\n", range.start, range.end - 1);
    let ulaw = ("ulaw", "g711.so", 8000);
    let (server, port) = alice_and_bob_pbx(name, "ulaw", "ulaw", "", peer_keys, &[("rtp.conf", &rtp_conf)]);
    let stranger = Stranger::spray(range);
    let technology = alice_calls_bob_on(&server, port, name, ulaw, ulaw, |server| {
        let counted = eventually(Duration::from_secs(5), || {
            let strays = strays(server);
            (strays.len() == 2 && strays.iter().all(|&n| n >= 50)).then_some(strays)
        });
        assert!(
            counted.is_some(),
            "the stranger's packets are counted on both calls: {}\n{}",
            server.rx("sip show channelstats"),
            server.log_tail()
        );
    });
    assert_eq!(technology, "native_rtp");
    assert!(stranger.stop() > 500, "the stranger sprayed all along");
    // As root (CI), the bridged legs went to the relay in the kernel: that path is the one tested.
    if !server.log().contains("relayed in the kernel (tc on lo)") {
        starling_testing::missing(
            "kernel_relay",
            &format!("root, Linux 6.6+, clang at build time\n{}", server.log_tail()),
        );
    }
}

#[test]
fn a_stranger_spraying_rtp_at_a_bridged_call_is_ignored_and_counted() {
    stranger_sprays_at_a_bridged_call("dialbleed", "");
}

#[test]
fn a_stranger_spraying_rtp_first_at_a_comedia_call_is_ignored_and_counted() {
    stranger_sprays_at_a_bridged_call("dialbleedcomedia", "nat=force_rport,comedia\n");
}

/// With `rtptimeout=2`, a natively bridged call whose far ends keep talking stays up: the relay
/// thread runs what it relays through each call's RTP session, so it counts as received.
#[test]
fn rtptimeout_spares_a_relayed_call_that_is_talking() {
    let technology = alice_calls_bob(
        "dialrtpto",
        ("ulaw", "g711.so", 8000),
        ("ulaw", "g711.so", 8000),
        "rtptimeout=2\n",
        "",
        |server| {
            // Twice the timeout after the bridge began, both calls are still up.
            std::thread::sleep(Duration::from_secs(4));
            let channels = server.rx("core show channels");
            assert!(channels.contains("2 active channels"), "{channels}\n{}", server.log_tail());
            assert!(!server.log().contains("for lack of RTP activity"), "{}", server.log_tail());
        },
    );
    assert_eq!(technology, "native_rtp");
}

/// With `directmedia=yes` on both, alice and bob are re-INVITEd to send to each other: their
/// tones still arrive, and no more RTP reaches Starling.
#[test]
fn directmedia_sends_alice_and_bob_to_each_other() {
    let technology = alice_calls_bob(
        "dialdirect",
        ("ulaw", "g711.so", 8000),
        ("ulaw", "g711.so", 8000),
        "",
        "directmedia=yes\n",
        |server| {
            // Once both far ends took the re-INVITEs, the counts stop growing.
            let still = eventually(Duration::from_secs(5), || {
                let before = packets_received(server);
                std::thread::sleep(Duration::from_millis(500));
                (before.len() == 2 && packets_received(server) == before).then_some(before)
            });
            assert!(
                still.is_some(),
                "the media left Starling: {}\n{}",
                server.rx("sip show channelstats"),
                server.log_tail()
            );
            assert!(
                server.rx("sip show peer alice").contains("  Direct media : Yes"),
                "{}",
                server.rx("sip show peer alice")
            );
        },
    );
    assert_eq!(technology, "native_rtp");
}

/// alice on Opus, bob on PCMU: the frames are translated in the bridge's drivers.
#[test]
fn baresip_opus_alice_and_pcmu_bob_are_translated() {
    let technology =
        alice_calls_bob("dialbsx", ("opus", "opus.so", 48000), ("ulaw", "g711.so", 8000), "", "", both_counting);
    assert_eq!(technology, "simple_bridge");
}

/// A REFER from the caller (SIPp, the transferer) sends the party it talks to (bob, baresip) to
/// 600 (Echo) in the caller's context: 202, a NOTIFY with the sipfrag, BYE to the transferer —
/// and bob hears his own tone come back.
#[test]
fn refer_transfers_the_other_party_to_echo() {
    let (server, port) = sip_pbx(
        "dialrefer",
        &["pbx_config", "app_dial", "app_echo"],
        Some("[guests]\nexten => bob,1,Dial(SIP/bob,20)\n same => n,Hangup()\nexten => 600,1,Answer()\n same => n,Echo()\n"),
        "allowguest=yes\ncontext=guests\ndisallow=all\nallow=ulaw\n[bob]\ntype=friend\nhost=dynamic\nsecret=bobpw\ncontext=guests\n",
    );
    let bob = Baresip::spawn(
        "dialrefer-bob",
        &format!("<sip:bob@127.0.0.1:{port}>;auth_pass=bobpw;answermode=auto;regint=60"),
        "g711.so",
        8000,
        880,
        &[],
        10,
    );
    let registered = eventually(Duration::from_secs(10), || {
        server.rx("sip show peer bob").contains("Reg. Contact : sip:").then_some(())
    });
    assert!(registered.is_some(), "bob registered\n{}", server.log_tail());
    let (code, out) = run_sipp(port, "invite_refer.xml", "bob", "", "", 1);
    assert_eq!(code, 0, "the transferer: {out}\n{}", server.log_tail());
    let echoing =
        eventually(Duration::from_secs(5), || server.rx("core show channels").contains("Echo(").then_some(()));
    assert!(echoing.is_some(), "bob is in Echo: {}\n{}", server.rx("core show channels"), server.log_tail());
    let (samples, peak, log) = bob.heard();
    assert!(samples >= 16_000, "bob heard at least 2 s: {samples}\n{log}");
    assert!((875..=885).contains(&peak), "bob hears his own 880 Hz tone: peak at {peak} Hz\n{}", server.log_tail());
}

/// `directmedia=yes` (in `[general]`: the guest caller's and the peer's): each SIPp is
/// re-INVITEd to send to the other's media port; at the caller's BYE the callee gets its BYE
/// with no re-INVITE back to Starling first.
#[test]
fn directmedia_reinvites_both_far_ends_to_each_other() {
    let uas = SippUas::spawn("uas_direct.xml");
    let (server, port) = b2bua_with("dialdirect2", uas.port, 1, "directmedia=yes\n", "");
    let (code, out) = run_sipp(port, "invite_direct.xml", "10", "", "", 1);
    assert_eq!(code, 0, "the caller was sent to 7020: {out}\n{}", server.log_tail());
    let (code, out) = uas.finish();
    assert_eq!(code, 0, "the callee was sent to 7010, then got the BYE: {out}\n{}", server.log_tail());
    assert!(server.rx("sip show peer uas").contains("  Direct media : Yes"));
}

/// directmedia, then the caller holds: the other party is to hear music on hold, so the bridge
/// hands the media back and both far ends are re-INVITEd to Starling's own RTP port.
#[test]
fn a_hold_in_direct_media_brings_the_media_back_for_music_on_hold() {
    let uas = SippUas::spawn("uas_direct_held.xml");
    let (server, port) = b2bua_with("dialdirecthold", uas.port, 1, "directmedia=yes\n", "");
    std::fs::write(server.dir.etc().join("musiconhold.conf"), crate::sip::moh_files(&server.dir.path)).unwrap();
    assert_eq!(server.rx("moh reload"), "");
    let (code, out) = run_sipp(port, "invite_direct_hold.xml", "10", "", "", 1);
    assert_eq!(code, 0, "the holder: {out}\n{}", server.log_tail());
    let (code, out) = uas.finish();
    assert_eq!(code, 0, "the held party: {out}\n{}", server.log_tail());
    assert!(
        dial_log_has(&server, "Started music on hold, class 'default', on channel 'SIP/uas-"),
        "{}",
        server.log_tail()
    );
}

/// An attended transfer: the caller (by hand) calls 10 (→ uas, Bob) and 20 (→ uas2, Carol),
/// then REFERs its first call with `Replaces` naming the second: 202, NOTIFY 200, a BYE on
/// each of its calls, and Bob and Carol are left talking to each other in one bridge.
#[test]
fn refer_with_replaces_connects_the_transferers_two_parties() {
    let bob = SippUas::spawn("uas_answer.xml");
    let carol = SippUas::spawn("uas_answer.xml");
    let (server, port) = b2bua("dialatt", bob.port, carol.port);
    let first = crate::sip::HandCall::dial(port, "10", "attended-1");
    let second = crate::sip::HandCall::dial(port, "20", "attended-2");
    let tag = |to: &str| to.split(";tag=").nth(1).unwrap_or_default().to_owned();
    let refer_to = format!(
        "Refer-To: <sip:20@127.0.0.1?Replaces=attended-2%3Bto-tag%3D{}%3Bfrom-tag%3Dhand1>\r\nReferred-By: <sip:guest@127.0.0.1>\r\n",
        tag(&second.to)
    );
    first.send_with("REFER", 2, "z9hG4bKrefer1", &refer_to);
    first.expect("SIP/2.0 202");
    assert!(first.expect("NOTIFY").contains("SIP/2.0 200 OK"));
    first.expect("BYE");
    second.expect("BYE");
    let channels = eventually(Duration::from_secs(5), || {
        let c = server.rx("core show channels");
        (c.contains("2 active channels") && c.contains("SIP/uas-") && c.contains("SIP/uas2-")).then_some(c)
    });
    assert!(channels.is_some(), "Bob and Carol remain: {}\n{}", server.rx("core show channels"), server.log_tail());
    let bridged = server.rx("bridge show all");
    assert_eq!(bridged.lines().filter(|l| l.contains(" 2 ")).count(), 1, "one bridge of two: {bridged}");
    assert!(server.rx("channel request hangup all").contains("hungup"), "{}", server.log_tail());
    let (code, out) = bob.finish();
    assert_eq!(code, 0, "bob: {out}\n{}", server.log_tail());
    let (code, out) = carol.finish();
    assert_eq!(code, 0, "carol: {out}\n{}", server.log_tail());
}

/// An INVITE with `Replaces` naming a bridged call (a phone taking it over): it is answered,
/// the replaced caller gets a BYE, and the called party is bridged with the new call.
#[test]
fn an_invite_with_replaces_takes_the_place_of_a_bridged_call() {
    let bob = SippUas::spawn("uas_answer.xml");
    let (server, port) = b2bua("dialreplaces", bob.port, 1);
    let alice = crate::sip::HandCall::dial(port, "10", "replaced-1");
    let tag = alice.to.split(";tag=").nth(1).unwrap_or_default().to_owned();
    let _carol = crate::sip::HandCall::dial_with(
        port,
        "anything",
        "replacing-1",
        &format!("Replaces: replaced-1;to-tag={tag};from-tag=hand1\r\n"),
    );
    alice.expect("BYE");
    let channels = eventually(Duration::from_secs(5), || {
        let c = server.rx("core show channels");
        (c.contains("2 active channels") && c.contains("SIP/uas-")).then_some(c)
    });
    assert!(channels.is_some(), "carol and bob: {}\n{}", server.rx("core show channels"), server.log_tail());
    assert!(server.rx("bridge show all").lines().any(|l| l.contains(" 2 ")), "{}", server.rx("bridge show all"));
    assert!(server.rx("channel request hangup all").contains("hungup"));
    let (code, out) = bob.finish();
    assert_eq!(code, 0, "bob: {out}\n{}", server.log_tail());
}

/// With `mohinterpret=passthrough`, the caller putting the call on hold (re-INVITE sendonly)
/// is answered recvonly and passed on: the called party gets a re-INVITE with sendonly.
#[test]
fn hold_passes_through_the_bridge() {
    let uas = SippUas::spawn("uas_held.xml");
    let (server, port) = b2bua_with("dialhold", uas.port, 1, "mohinterpret=passthrough\n", "");
    let (code, out) = run_sipp(port, "invite_hold.xml", "10", "", "", 1);
    assert_eq!(code, 0, "the holder: {out}\n{}", server.log_tail());
    let (code, out) = uas.finish();
    assert_eq!(code, 0, "the held party got a sendonly re-INVITE: {out}\n{}", server.log_tail());
}

/// With `mohinterpret` as Asterisk's default (`default`), the party put on hold hears the
/// default music on hold class instead (no re-INVITE reaches it: SIPp's scenario would fail).
#[test]
fn a_held_party_hears_music_on_hold() {
    let uas = SippUas::spawn("uas_answer.xml");
    let (server, port) = b2bua("dialmoh", uas.port, 1);
    std::fs::write(server.dir.etc().join("musiconhold.conf"), crate::sip::moh_files(&server.dir.path)).unwrap();
    assert_eq!(server.rx("moh reload"), "");
    let (code, out) = run_sipp(port, "invite_hold.xml", "10", "", "", 1);
    assert_eq!(code, 0, "the holder: {out}\n{}", server.log_tail());
    let (code, out) = uas.finish();
    assert_eq!(code, 0, "the held party got no re-INVITE: {out}\n{}", server.log_tail());
    assert!(
        dial_log_has(&server, "Started music on hold, class 'default', on channel 'SIP/uas-"),
        "{}",
        server.log_tail()
    );
}

/// Open file descriptors of a process (its sockets among them).
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// `call-limit=1` on the called peer: a second Dial while one call is up is BUSY at once, and
/// the slot comes back on every ending (a 486, a cancel, a BYE) — as do the RTP sockets.
#[test]
fn call_limit_slots_and_rtp_ports_are_released_on_every_ending() {
    let busy = SippUas::spawn("uas_busy.xml");
    let ringing = SippUas::spawn("uas_ring_cancel.xml");
    let answering = SippUas::spawn("uas_answer.xml");
    let peer = |name: &str, port: u16| {
        // No insecure=port: the callers (SIPp, other ports) come in as guests, not as these peers.
        format!("[{name}]\ntype=peer\nhost=127.0.0.1\nport={port}\ncall-limit=1\ndisallow=all\nallow=ulaw\n")
    };
    let (server, port) = sip_pbx(
        "diallimit",
        &["pbx_config", "app_dial"],
        Some("[default]\nexten => _X,1,Dial(SIP/p${EXTEN},2)\n same => n,Answer()\n same => n,NoOp(${EXTEN}:${DIALSTATUS})\n same => n,Hangup()\n"),
        &format!(
            "allowguest=yes\ncontext=default\n{}{}{}",
            peer("p1", busy.port),
            peer("p2", ringing.port),
            peer("p3", answering.port)
        ),
    );
    let baseline = open_fds(server.pid());
    // 486, then a cancel after Dial's 2 s: each releases its slot.
    let (code, out) = run_sipp(port, "invite_pbx_hangs_up.xml", "1", "", "", 1);
    assert_eq!(code, 0, "{out}\n{}", server.log_tail());
    assert_eq!(run_sipp(port, "invite_pbx_hangs_up.xml", "2", "", "", 1).0, 0, "{}", server.log_tail());
    assert!(dial_log_has(&server, "1:BUSY") && dial_log_has(&server, "2:NOANSWER"), "{}", server.log_tail());
    // A call to 3 stays up (3 s); a second Dial to 3 meanwhile is BUSY without any SIP.
    let first = std::thread::spawn(move || run_sipp(port, "invite_answer_long.xml", "3", "", "", 1));
    let up = eventually(Duration::from_secs(5), || server.rx("bridge show all").contains(" 2 ").then_some(()));
    assert!(up.is_some(), "{}", server.log_tail());
    assert_eq!(run_sipp(port, "invite_pbx_hangs_up.xml", "3", "", "", 1).0, 0, "{}", server.log_tail());
    assert!(dial_log_has(&server, "3:BUSY"), "call-limit reached: {}", server.log_tail());
    assert!(server.log().contains("Call-limit 1 reached for 'p3'"), "{}", server.log_tail());
    assert_eq!(first.join().unwrap().0, 0, "{}", server.log_tail());
    for uas in [busy, ringing, answering] {
        let (code, out) = uas.finish();
        assert_eq!(code, 0, "{out}");
    }
    let released = eventually(Duration::from_secs(5), || (open_fds(server.pid()) <= baseline).then_some(()));
    assert!(released.is_some(), "sockets released: {} open, {baseline} at start", open_fds(server.pid()));
    assert!(server.rx("sip show channels").contains("0 active SIP channels"));
}

/// `busylevel`, as chan_sip's: it only makes the peer's device state `BUSY` (with a call-limit,
/// from that many calls to and from it on); calls are not refused for it — an inbound call from
/// the peer at its busylevel is taken, and a Dial to it rings it (up to call-limit).
/// `DEVICE_STATE()` reads INUSE, BUSY, NOT_INUSE, INVALID and UNAVAILABLE as chan_sip's
/// sip_devicestate gives them; `sip show peer` shows `Busy level`.
#[test]
fn busylevel_makes_the_device_state_busy_without_refusing_calls() {
    // The build first: the UAS below gives up after 25 s.
    starling_bin();
    let uas = SippUas::spawn("uas_answer.xml");
    let (server, port) = sip_pbx(
        "busylevel",
        &["pbx_config", "app_dial", "func_devstate"],
        Some(
            "[busy]\nexten => 300,1,Answer()\n same => n,NoOp(A=${DEVICE_STATE(SIP/desk)})\n same => n,Wait(4)\n same => n,Hangup()\n\
             exten => 301,1,NoOp(B=${DEVICE_STATE(SIP/desk)} ${DEVICE_STATE(SIP/idle)} ${DEVICE_STATE(SIP/nobody)} ${DEVICE_STATE(SIP/dyn)})\n\
             \x20same => n,Dial(SIP/desk,5,L(1000))\nexten => h,1,NoOp(B:${DIALSTATUS})\n",
        ),
        &format!(
            "[desk]\ntype=friend\nhost=127.0.0.1\nport={}\ninsecure=port,invite\ncontext=busy\ncall-limit=3\nbusylevel=2\n\
             disallow=all\nallow=ulaw\n[idle]\ntype=peer\nhost=127.0.0.1\nport=9\ncall-limit=1\nbusylevel=1\n\
             [dyn]\ntype=friend\nhost=dynamic\nsecret=pw\n",
            uas.port
        ),
    );
    // A: one call from desk (1 in use, below busylevel): INUSE; it stays up 4 s.
    let first = std::thread::spawn(move || run_sipp(port, "invite_pbx_hangs_up.xml", "300", "", "", 1));
    assert!(dial_log_has(&server, "A=INUSE"), "{}", server.log_tail());
    // B: a second call from desk meanwhile (2 in use: busylevel) is taken, reads BUSY, and
    // its Dial to desk (the third, within call-limit) is answered (and ended by L after 1 s).
    let (code, out) = run_sipp(port, "invite_pbx_hangs_up.xml", "301", "", "", 1);
    assert_eq!(code, 0, "{out}\n{}", server.log_tail());
    assert!(dial_log_has(&server, "B=BUSY NOT_INUSE INVALID UNAVAILABLE"), "{}", server.log_tail());
    assert!(dial_log_has(&server, "B:ANSWER"), "{}", server.log_tail());
    assert_eq!(first.join().unwrap().0, 0, "{}", server.log_tail());
    assert_eq!(uas.finish().0, 0, "the Dial reached desk");
    let desk = server.rx("sip show peer desk");
    assert!(desk.contains("  Call limit   : 3\n  Busy level   : 2\n"), "{desk}");
    assert!(!server.rx("sip show peer dyn").contains("Busy level"), "shown only when set");
}

/// `U(sub-callee^hello)`: a subroutine runs on the called party (with its argument) before the
/// bridge; `GOSUB_RESULT=ABORT` from one ends the called leg instead (DIALSTATUS=CANCEL).
#[test]
fn u_runs_a_subroutine_on_the_called_party() {
    let uas = SippUas::spawn("uas_answer.xml");
    let (server, port) = b2bua("dialgosub", uas.port, 1);
    let (code, out) = run_sipp(port, "invite_answer.xml", "17", "", "", 1);
    assert_eq!(code, 0, "{out}\n{}", server.log_tail());
    assert!(dial_log_has(&server, "Sub on SIP/uas-"), "{}", server.log_tail());
    assert!(server.log().contains("arg hello"), "{}", server.log_tail());
    assert_eq!(uas.finish().0, 0);
    let aborting = SippUas::spawn("uas_answer.xml");
    let (server, port) = b2bua("dialgosubabort", aborting.port, 1);
    let (code, out) = run_sipp(port, "invite_pbx_hangs_up.xml", "18", "", "", 1);
    assert_eq!(code, 0, "{out}\n{}", server.log_tail());
    assert!(dial_log_has(&server, "After abort DIALSTATUS=CANCEL"), "{}", server.log_tail());
    assert_eq!(aborting.finish().0, 0, "the called party got its BYE");
}

/// One call from SIPp to `exten`, dialled out to a SIPp UAS playing `uas_scenario` that
/// `peers(uas port)` configures (with `general` lines): both sides must pass their scenario.
fn one_dialled_call(name: &str, uas_scenario: &str, general: &str, peers: impl Fn(u16) -> String, exten: &str) {
    let uas = SippUas::spawn(uas_scenario);
    let (server, port) = b2bua_with(name, 1, 1, general, &peers(uas.port));
    let (code, out) = run_sipp(port, "invite_answer.xml", exten, "", "", 1);
    assert_eq!(code, 0, "{out}\n{}", server.log_tail());
    let (code, out) = uas.finish();
    assert_eq!(code, 0, "the called side: {out}");
}

/// A peer with `outboundproxy`: the INVITE goes to the proxy (here the SIPp UAS), the
/// Request-URI still names the peer's host.
#[test]
fn outboundproxy_receives_the_invite() {
    let peer = |port| {
        format!("[viaproxy]\ntype=peer\nhost=192.0.2.1\noutboundproxy=127.0.0.1:{port}\ndisallow=all\nallow=ulaw\n")
    };
    one_dialled_call("dialproxy", "uas_answer.xml", "", peer, "15");
}

/// The called peer challenges our INVITE: we answer with its `defaultuser`/`secret` (MD5,
/// qop=auth; SIPp verifies the digest) and the call goes through.
#[test]
fn a_challenge_is_answered_with_the_peers_credentials() {
    let peer = |port| {
        format!("[trunk]\ntype=peer\nhost=127.0.0.1\nport={port}\ndefaultuser=trunk\nsecret=trunkpw\ndisallow=all\nallow=ulaw\n")
    };
    one_dialled_call("dialauth", "uas_auth.xml", "", peer, "16");
}

/// A trunk peer without a secret of its own: its challenge is answered with the credentials
/// of its account, the `register => trunk?...` line (its registrar here never answers).
#[test]
fn a_challenge_is_answered_with_the_accounts_credentials() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let account = format!("register => trunk?trunk:trunkpw@127.0.0.1:{}\n", silent.local_addr().unwrap().port());
    let peer = |port| format!("[trunk]\ntype=peer\nhost=127.0.0.1\nport={port}\ndisallow=all\nallow=ulaw\n");
    one_dialled_call("dialaccount", "uas_auth.xml", &account, peer, "16");
}

/// The same trunk challenging as a proxy (407): the account's credentials go in
/// Proxy-Authorization.
#[test]
fn a_407_is_answered_with_the_accounts_credentials() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let account = format!("register => trunk?trunk:trunkpw@127.0.0.1:{}\n", silent.local_addr().unwrap().port());
    let peer = |port| format!("[trunk]\ntype=peer\nhost=127.0.0.1\nport={port}\ndisallow=all\nallow=ulaw\n");
    one_dialled_call("dialaccount407", "uas_auth407.xml", &account, peer, "16");
}

/// A key pressed on the caller's leg (`dial`'s options, or the caller's RTP) must reach the
/// called leg: a call back into Starling itself (peer `loop`, with `loop_options`), whose Read()
/// logs `KEY=` then waits `wait` seconds. Returns the server's log.
fn key_reaches_a_call_back(name: &str, dial_options: &str, loop_options: &str, scenario: &str, wait: u32) -> String {
    let extensions = format!(
        "[guests]\nexten => 20,1,Dial(SIP/loop/21,5{dial_options})\n same => n,Hangup()\n\
         [loopback]\nexten => 21,1,Answer()\n same => n,Read(KEY,,1,,,4)\n same => n,NoOp(KEY=${{KEY}})\n same => n,Wait({wait})\n"
    );
    let (server, port) =
        sip_pbx_on_port(name, &["pbx_config", "app_dial", "app_playback"], Some(&extensions), |port| {
            format!(
                "allowguest=yes\ncontext=guests\ndisallow=all\nallow=ulaw\n\
             [loop]\ntype=peer\nhost=127.0.0.1\nport={port}\ncontext=loopback\n{loop_options}"
            )
        });
    let (code, out) = run_sipp(port, scenario, "20", "", "", 1);
    assert_eq!(code, 0, "{out}\n{}", server.log_tail());
    server.log()
}

/// RFC 4733 key presses from SIPp's dtmf_2833_1.pcap on the caller's leg cross the native bridge
/// and arrive on the called leg.
#[test]
fn rfc4733_digits_cross_the_bridge() {
    let log = key_reaches_a_call_back("dialdtmf", "", "", "invite_dtmf.xml", 2);
    assert!(log.contains("joined 'native_rtp' bridge"), "{log}");
    assert!(log.contains("KEY=1"), "the key crossed the bridge: {log}");
}

/// dtmfmode=inband: Dial's D() option presses 5 on the called leg as two tones in the audio,
/// and the call back into Starling (inband too) hears the key in Read().
#[test]
fn inband_digits_are_sent_and_heard() {
    let log = key_reaches_a_call_back("dialinband", ",D(5)", "dtmfmode=inband\n", "invite_pbx_hangs_up.xml", 1);
    assert!(log.contains("KEY=5"), "the key was heard in the audio: {log}");
}

/// The dialplan of the Dial option tests (issue 22): `uas` is a SIPp called party, `5` the
/// extension blind transfers go to.
const OPTION_EXTENSIONS: &str = "[default]
exten => 30,1,Dial(SIP/uas,5,gS(1))
 same => n,NoOp(After S DIALSTATUS=${DIALSTATUS})
 same => n,Hangup()
exten => 31,1,Dial(SIP/uas,5,S(1))
 same => n,NoOp(Not reached after S)
exten => 32,1,Dial(SIP/uas,5,g)
 same => n,NoOp(Went on after the called party hung up: ${DIALSTATUS})
 same => n,Hangup()
exten => 33,1,Dial(SIP/uas,5)
 same => n,NoOp(Not reached without g)
exten => 34,1,Set(LIMIT_PLAYAUDIO_CALLEE=yes)
 same => n,Set(LIMIT_TIMEOUT_FILE=beep)
 same => n,Dial(SIP/uas,5,L(5000:4000))
 same => n,Hangup()
exten => 35,1,Set(LIMIT_PLAYAUDIO_CALLER=no)
 same => n,Set(LIMIT_PLAYAUDIO_CALLEE=yes)
 same => n,Set(LIMIT_WARNING_FILE=beep)
 same => n,Dial(SIP/uas,5,L(3000:2500:1000))
 same => n,Hangup()
exten => 36,1,Dial(SIP/uas,5,A(vm-youhave))
 same => n,Hangup()
exten => 40,1,Dial(SIP/uas,5,T)
 same => n,Hangup()
exten => 41,1,Dial(SIP/uas,5,t)
 same => n,NoOp(Not reached after t)
exten => 42,1,Dial(SIP/uas,5,L(4000))
 same => n,Hangup()
exten => 5,1,NoOp(Transferred ${CHANNEL})
 same => n,Hangup()
";

/// Starling with [`OPTION_EXTENSIONS`] and the prompts of app_playback; `uas` at that port.
fn options_pbx(name: &str, uas: u16) -> (Server, u16) {
    sip_pbx(
        name,
        &["pbx_config", "app_dial", "app_playback"],
        Some(OPTION_EXTENSIONS),
        &format!(
            "allowguest=yes\ncontext=default\n[uas]\ntype=peer\nhost=127.0.0.1\nport={uas}\ninsecure=port,invite\ndisallow=all\nallow=ulaw\n"
        ),
    )
}

/// SIPp calls `exten` (playing `caller`), dialled to a SIPp UAS playing `callee`: both
/// scenarios must pass. Returns the server (to read its log).
fn option_call(name: &str, exten: &str, caller: &str, callee: &str) -> Server {
    let uas = SippUas::spawn(callee);
    let (server, port) = options_pbx(name, uas.port);
    let (code, out) = run_sipp(port, caller, exten, "", "", 1);
    assert_eq!(code, 0, "the caller: {out}\n{}", server.log_tail());
    let (code, out) = uas.finish();
    assert_eq!(code, 0, "the called party: {out}\n{}", server.log_tail());
    server
}

/// A UDP socket the called party's SDP names (`uas_answer_rtp.xml`, `-key rtpport`): counts
/// the RTP packets Starling sends there until `stop` is set.
struct RtpCounter {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<usize>,
}

impl RtpCounter {
    fn start() -> RtpCounter {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let port = socket.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut packets = 0;
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while !stopping.load(std::sync::atomic::Ordering::Relaxed) && std::time::Instant::now() < deadline {
                if let Ok(n) = socket.recv(&mut buf) {
                    if n > 12 && buf[0] >> 6 == 2 {
                        packets += 1;
                    }
                }
            }
            packets
        });
        RtpCounter { port, stop, thread }
    }
    fn packets(self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// Like [`option_call`] with the called party's media counted: (server, RTP packets it got).
fn option_call_counting(name: &str, exten: &str, caller: &str) -> (Server, usize) {
    let rtp = RtpCounter::start();
    let uas = SippUas::spawn_with("uas_answer_rtp.xml", 1, &["-key", "rtpport", &rtp.port.to_string()]);
    let (server, port) = options_pbx(name, uas.port);
    let (code, out) = run_sipp(port, caller, exten, "", "", 1);
    assert_eq!(code, 0, "the caller: {out}\n{}", server.log_tail());
    let (code, out) = uas.finish();
    assert_eq!(code, 0, "the called party: {out}\n{}", server.log_tail());
    (server, rtp.packets())
}

/// `S(1)`: the called party is hung up a second after it answers (BYE to it); with `g` the
/// caller goes on in the dialplan, without it the caller is hung up too.
#[test]
fn s_hangs_up_the_called_party_after_x_seconds() {
    let server = option_call("dials", "30", "invite_pbx_hangs_up.xml", "uas_answer.xml");
    assert!(dial_log_has(&server, "After S DIALSTATUS=ANSWER"), "{}", server.log_tail());
    assert!(server.log().contains("Setting call duration limit to 1.000 seconds."), "{}", server.log_tail());
    let server = option_call("dialsnog", "31", "invite_pbx_hangs_up.xml", "uas_answer.xml");
    assert!(dial_log_has(&server, "The call limit of 1000 ms ran out"), "{}", server.log_tail());
    assert!(!server.log().contains("Not reached after S"), "{}", server.log_tail());
}

/// `g`: when the called party hangs up (its BYE), the caller goes on at the next priority;
/// without `g` the caller is hung up.
#[test]
fn g_goes_on_when_the_called_party_hangs_up() {
    let server = option_call("dialg", "32", "invite_pbx_hangs_up.xml", "uas_answer_bye.xml");
    assert!(dial_log_has(&server, "Went on after the called party hung up: ANSWER"), "{}", server.log_tail());
    let server = option_call("dialnog", "33", "invite_pbx_hangs_up.xml", "uas_answer_bye.xml");
    assert!(!server.log().contains("Not reached without g"), "{}", server.log_tail());
}

/// `L(4000)` without warnings: both are hung up when the 4 s run out. SIPp's `#` and `5`
/// (RFC 4733) go through to the called party: no transfer without `t`/`T`.
#[test]
fn l_ends_the_call_and_keys_pass_without_t() {
    let server = option_call("diallplain", "42", "invite_transfer.xml", "uas_answer.xml");
    assert!(dial_log_has(&server, "The call limit of 4000 ms ran out"), "{}", server.log_tail());
    let log = server.log();
    assert!(log.contains("Setting call duration limit to 4.000 seconds."), "{log}");
    assert!(!log.contains("blind-transferred"), "{log}");
}

/// The lines of `log` where a file played: (channel, file).
fn played(log: &str) -> Vec<(String, String)> {
    log.lines()
        .filter_map(|l| {
            let rest = &l[l.find("<SIP/")? + 1..];
            let (chan, rest) = rest.split_once("> Playing '")?;
            Some((chan.to_owned(), rest.split('\'').next()?.to_owned()))
        })
        .collect()
}

/// `L(5000:4000)` with `LIMIT_PLAYAUDIO_CALLEE=yes` and `LIMIT_TIMEOUT_FILE=beep`: 4 s before
/// the end both hear "you have 3 seconds" (Asterisk's `timeleft`), and as the limit runs out
/// both hear the beep; the called party's RTP (the native relay paused) carries them.
#[test]
fn l_warns_both_parties_with_the_time_left() {
    let (server, packets) = option_call_counting("dialwarn", "34", "invite_pbx_hangs_up_late.xml");
    assert!(dial_log_has(&server, "The call limit of 5000 ms ran out"), "{}", server.log_tail());
    let played = played(&server.log());
    for file in ["vm-youhave.wav", "queue-seconds.wav", "beep.wav"] {
        let to: Vec<&str> = played.iter().filter(|(_, f)| f == file).map(|(c, _)| c.as_str()).collect();
        assert_eq!(to.len(), 2, "{file} to both: {played:?}");
        assert!(to.contains(&"SIP/uas-00000001") && to.contains(&"SIP/uas-00000002"), "{file} to both: {played:?}");
    }
    assert!(played.iter().any(|(_, f)| f.starts_with("digits/")), "the seconds said: {played:?}");
    // vm-youhave, a digit, queue-seconds and the beep: well over 2 s of audio, 50 packets a second.
    assert!(packets >= 100, "the called party got the prompts: {packets} RTP packets\n{}", server.log_tail());
}

/// `L(3000:2500:1000)` with `LIMIT_WARNING_FILE=beep`, to the called party only
/// (`LIMIT_PLAYAUDIO_CALLER=no`): the beep 2.5 s before the end, and again a second after it.
#[test]
fn l_repeats_the_warning_file_to_the_called_party_only() {
    let (server, packets) = option_call_counting("dialwarnrep", "35", "invite_pbx_hangs_up.xml");
    assert!(dial_log_has(&server, "The call limit of 3000 ms ran out"), "{}", server.log_tail());
    let played = played(&server.log());
    assert_eq!(played.len(), 2, "two warnings: {played:?}");
    assert!(played.iter().all(|(c, f)| c == "SIP/uas-00000002" && f == "beep.wav"), "{played:?}");
    assert!(packets >= 30, "two beeps of 0.43 s: {packets} RTP packets");
}

/// `A(vm-youhave)`: the called party hears the announcement (RTP to its port) before the
/// bridge, and the caller is answered after it.
#[test]
fn a_plays_the_announcement_to_the_called_party_before_the_bridge() {
    let (server, packets) = option_call_counting("dialannounce", "36", "invite_answer.xml");
    let log = server.log();
    let announced = log.find("> Playing 'vm-youhave.wav'").expect("the announcement played");
    let line_start = log[..announced].rfind('\n').map_or(0, |n| n + 1);
    assert!(log[line_start..announced].contains("<SIP/uas-00000002"), "to the called party: {log}");
    let bridged = log.find("joined 'native_rtp' bridge").expect("then the bridge");
    assert!(announced < bridged, "{log}");
    // 0.91 s of audio and nothing else (neither SIPp sends RTP): about 45 packets.
    assert!(packets >= 40, "the called party got the announcement: {packets} RTP packets\n{log}");
}

// The caller comes from the called peer's address: it is `SIP/uas-00000001` too.

/// `T`: the caller presses `#` `5` (RFC 4733 from SIPp): the called party is sent to
/// extension 5 of the caller's context and the caller is hung up.
#[test]
fn caller_blind_transfers_with_t() {
    let server = option_call("dialxfercaller", "40", "invite_transfer.xml", "uas_answer.xml");
    assert!(dial_log_has(&server, "Transferred SIP/uas-00000002"), "{}", server.log_tail());
    assert!(server.log().contains(" blind-transferred SIP/uas-"), "{}", server.log_tail());
}

/// `t`: the called party presses `#` `5`: the caller goes to extension 5, the called party is
/// hung up.
#[test]
fn callee_blind_transfers_with_t() {
    let server = option_call("dialxfercallee", "41", "invite_pbx_hangs_up.xml", "uas_transfer.xml");
    assert!(dial_log_has(&server, "Transferred SIP/uas-00000001"), "{}", server.log_tail());
    assert!(!server.log().contains("Not reached after t"), "{}", server.log_tail());
}
