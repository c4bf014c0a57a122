//! Issue 22: sip.conf's jitter buffer (`jbenable`, `jbmaxsize`, ...) on a call whose frames go
//! to a dialplan application. A hand-made phone ([`Phone`]) talks to `Echo()` with packets
//! reordered and one late, each packet's payload a marker: with `jbenable=yes` the echo comes
//! back in order (the late one dropped); with `jbenable=no` the reordering comes back as sent.
//! Through a SIP-to-SIP bridge that is not native, only `jbforce=yes` puts it in order.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use crate::dtmf::Phone;
use crate::util::*;

const EXTENSIONS: &str = "[default]\nexten => 600,1,Answer()\n same => n,Echo()\n";

/// Packets 1..=40, one every 20 ms, in this order: the pairs (10, 11), (20, 21) and (30, 31)
/// swapped, and 15 held back to go after 40 (600 ms after its turn).
fn sending_order() -> Vec<u8> {
    let mut order: Vec<u8> = (1..=40).filter(|n| *n != 15).collect();
    for first in [10u8, 20, 30] {
        let at = order.iter().position(|n| *n == first).unwrap();
        order.swap(at, at + 1);
    }
    order.push(15);
    order
}

/// Starling with Echo() at 600 and `general` in sip.conf's `[general]`.
fn server(name: &str, general: &str) -> (Server, u16) {
    let general = general.to_owned();
    sip_pbx_with_options(name, "", &["pbx_config", "app_echo"], Some(EXTENSIONS), move |_| {
        format!("context=default\nallowguest=yes\ndisallow=all\nallow=ulaw\n{general}\n")
    })
}

/// Sends [`sending_order`] as PCMU packets (marker `n` fills packet n's payload; its sequence
/// number and timestamp are n's) from `phone`'s RTP socket, one every 20 ms (15 goes 600 ms
/// late), and returns the markers of the packets that reach `listener`, in the order they came.
fn talk(phone: &Phone, listener: &UdpSocket) -> Vec<u8> {
    let socket = listener.try_clone().unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let listening = std::thread::spawn(move || listen(&socket));
    let start = Instant::now();
    for (slot, n) in sending_order().into_iter().enumerate() {
        let due = if n == 15 { Duration::from_millis(15 * 20 + 600) } else { Duration::from_millis(slot as u64 * 20) };
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        let mut packet = vec![0x80, 0];
        packet.extend_from_slice(&u16::from(n).to_be_bytes());
        packet.extend_from_slice(&(16_000 + u32::from(n) * 160).to_be_bytes());
        packet.extend_from_slice(&0x0dd0_5eedu32.to_be_bytes());
        packet.extend_from_slice(&[n; 160]);
        phone.rtp.send_to(&packet, phone.their_rtp).unwrap();
    }
    listening.join().unwrap()
}

/// [`talk`] to Echo(): what comes back.
fn talk_to_echo(phone: &Phone) -> Vec<u8> {
    talk(phone, &phone.rtp)
}

/// The markers of the PCMU packets that reach `socket`, until none has come for 1.5 s (at most 15 s).
fn listen(socket: &UdpSocket) -> Vec<u8> {
    let (start, mut last) = (Instant::now(), Instant::now());
    let mut markers = Vec::new();
    let mut buffer = [0u8; 2048];
    while last.elapsed() < Duration::from_millis(1500) && start.elapsed() < Duration::from_secs(15) {
        let Ok(len) = socket.recv(&mut buffer) else { continue };
        // 12 bytes of header (Starling sends no CSRC or extension), PCMU only.
        if len > 12 && buffer[1] & 0x7f == 0 {
            last = Instant::now();
            markers.push(buffer[12]);
        }
    }
    markers
}

fn position(markers: &[u8], n: u8) -> usize {
    markers.iter().position(|m| *m == n).unwrap_or_else(|| panic!("marker {n} never came back: {markers:?}"))
}

/// `jbenable=yes` (fixed, `jbmaxsize=200`): the echo is in order — each swapped pair put back,
/// the late packet never played after the ones that followed it — and `sip show settings` says so.
#[test]
fn jbenable_puts_echoed_packets_back_in_order() {
    let (server, port) = server("jbecho", "jbenable=yes\njbmaxsize=200\njbimpl=fixed");
    let settings = server.rx("sip show settings");
    assert!(settings.contains("  Jitterbuffer enabled:   Yes\n"), "{settings}");
    assert!(settings.contains("  Jitterbuffer max size:  200\n"), "{settings}");
    assert!(settings.contains("  Jitterbuffer impl:      fixed\n"), "{settings}");
    let phone = Phone::call(port, "600", "jb-on@127.0.0.1", false);
    let markers = talk_to_echo(&phone);
    assert!(markers.windows(2).all(|w| w[0] < w[1]), "in order, without repeats: {markers:?}\n{}", server.log_tail());
    // The swapped pairs were reordered, not dropped (200 ms of buffer for 20 ms of disorder).
    for n in [10u8, 11, 20, 21, 30, 31] {
        position(&markers, n);
    }
    assert!(markers.len() >= 35, "nearly all came back: {markers:?}");
    phone.request("BYE", "", "");
}

/// `jbenable=no` (the default): the same talk comes back as it was sent, out of order — the
/// test above sees the buffer's work, not the network's.
#[test]
fn without_jbenable_the_reordering_comes_back() {
    let (server, port) = server("jbnone", "");
    let settings = server.rx("sip show settings");
    assert!(settings.contains("  Jitterbuffer enabled:   No\n"), "{settings}");
    assert!(settings.contains("  Jitterbuffer resync:    1000\n"), "{settings}");
    let phone = Phone::call(port, "600", "jb-off@127.0.0.1", false);
    let markers = talk_to_echo(&phone);
    for (first, second) in [(10u8, 11u8), (20, 21), (30, 31)] {
        assert!(position(&markers, second) < position(&markers, first), "{second} before {first}: {markers:?}");
    }
    assert!(position(&markers, 15) > position(&markers, 40), "15 came last: {markers:?}");
    phone.request("BYE", "", "");
}

/// A bad `jbmaxsize` stops start-up with the file and line.
#[test]
fn a_bad_jbmaxsize_is_a_config_error() {
    let dir = TestDir::new("jbbad");
    dir.write_starling_conf(&moddir(), "");
    dir.write("modules.conf", "[modules]\nautoload = no\nload => chan_sip.so\n");
    dir.write(
        "sip.conf",
        &format!("[general]\nbindaddr=127.0.0.1\nbindport={}\njbenable=yes\njbmaxsize=abc\n", free_udp_port()),
    );
    let out = run_starling(&["-C", dir.config().to_str().unwrap(), "-f"], Duration::from_secs(20));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("sip.conf:5: jbmaxsize 'abc'"), "{text}");
}

/// A caller bridged to bob through Dial with transfer keys (`t`: a `simple_bridge`, frames, not
/// the relay), `jbenable=yes` and `jbforce` as given; the talk's markers as bob gets them.
fn through_a_bridge(name: &str, jbforce: &str) -> Vec<u8> {
    let (bob_sip, bob_rtp, bob_port) = Phone::listen();
    let extensions = "[default]\nexten => bob,1,Dial(SIP/bob,10,t)\n same => n,Hangup()\n";
    let general = format!("jbenable=yes\njbforce={jbforce}");
    let (server, port) = sip_pbx_with_options(name, "", &["pbx_config", "app_dial"], Some(extensions), move |_| {
        format!(
            "context=default\nallowguest=yes\ndisallow=all\nallow=ulaw\n{general}\n\
                 [bob]\ntype=peer\nhost=127.0.0.1\nport={bob_port}\ncontext=default\ndisallow=all\nallow=ulaw\n"
        )
    });
    let call_id = format!("{name}@127.0.0.1");
    let dialing = std::thread::spawn(move || Phone::call(port, "bob", &call_id, false));
    let bob = Phone::answer(bob_sip, bob_rtp, false);
    let alice = dialing.join().unwrap();
    let bridged =
        eventually(Duration::from_secs(5), || server.rx("bridge show all").contains("simple_bridge").then_some(()));
    assert!(bridged.is_some(), "{}\n{}", server.rx("bridge show all"), server.log_tail());
    let markers = talk(&alice, &bob.rtp);
    alice.request("BYE", "", "");
    markers
}

/// As abstract_jb, a SIP leg going to another SIP leg (a phone with a jitter buffer of its own)
/// is dejittered only with `jbforce=yes`: without it bob gets the caller's packets as they came.
#[test]
fn a_sip_to_sip_bridge_is_dejittered_only_with_jbforce() {
    let forced = through_a_bridge("jbforced", "yes");
    assert!(forced.windows(2).all(|w| w[0] < w[1]), "jbforce=yes: in order: {forced:?}");
    assert!(forced.len() >= 35, "nearly all came through: {forced:?}");
    let not_forced = through_a_bridge("jbnotforced", "no");
    for (first, second) in [(10u8, 11u8), (20, 21), (30, 31)] {
        assert!(
            position(&not_forced, second) < position(&not_forced, first),
            "jbforce=no: {second} before {first}: {not_forced:?}"
        );
    }
}
