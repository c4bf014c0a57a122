//! Issue 22: DTMF interworking through `Dial(SIP/bob)` between every pair of `dtmfmode`
//! (rfc2833, info, inband, auto): a key the caller sends its way reaches bob his way. Both far
//! ends are hand-made phones ([`Phone`]): the caller is a guest (`[general] dtmfmode`), bob a
//! static peer with his own `dtmfmode`.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crate::util::*;

/// A phone by hand: one SIP socket, one RTP socket, one dialog, PCMU (0) and
/// telephone-event (101) offered or answered.
pub(crate) struct Phone {
    pub(crate) sip: UdpSocket,
    pub(crate) rtp: UdpSocket,
    /// Starling's SIP address.
    server: SocketAddr,
    /// Where Starling wants our RTP (its SDP).
    pub(crate) their_rtp: SocketAddr,
    /// The telephone-event payload type Starling offered or answered, if any.
    pub(crate) event_pt: Option<u8>,
    /// Our dialog headers (From, To with both tags, Call-ID), as our requests carry them.
    from: String,
    to: String,
    call_id: String,
    cseq: std::cell::Cell<u32>,
    seq: std::cell::Cell<u16>,
}

fn header<'a>(message: &'a str, name: &str) -> &'a str {
    message
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
        .unwrap_or("")
}

fn sockets() -> (UdpSocket, UdpSocket) {
    let sip = UdpSocket::bind("127.0.0.1:0").unwrap();
    sip.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    rtp.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    (sip, rtp)
}

fn sdp(rtp_port: u16, events: bool, direction: &str) -> String {
    let (formats, event_lines) =
        if events { ("0 101", "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n") } else { ("0", "") };
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {rtp_port} RTP/AVP {formats}\r\na=rtpmap:0 PCMU/8000\r\n{event_lines}a={direction}\r\n"
    )
}

/// The RTP port and telephone-event payload type of an SDP body in `message`.
fn media_of(message: &str) -> (u16, Option<u8>) {
    let port = message
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("an SDP body in {message}"));
    let pt = message
        .lines()
        .find_map(|l| l.strip_prefix("a=rtpmap:").filter(|l| l.to_ascii_lowercase().contains("telephone-event")))
        .and_then(|l| l.split(' ').next())
        .and_then(|p| p.parse().ok());
    (port, pt)
}

/// Reads `socket` until a message whose first line starts with `prefix` (requests on the way are
/// answered 200), and returns it.
pub(crate) fn expect(socket: &UdpSocket, prefix: &str) -> String {
    let mut buffer = [0u8; 8192];
    loop {
        let (len, from) = socket.recv_from(&mut buffer).unwrap_or_else(|e| panic!("a SIP message ({prefix}): {e}"));
        let text = String::from_utf8_lossy(&buffer[..len]).into_owned();
        if !text.starts_with("SIP/2.0") && !text.starts_with("ACK ") {
            ok(socket, &text, from);
        }
        if text.starts_with(prefix) {
            return text;
        }
    }
}

fn ok(socket: &UdpSocket, request: &str, from: SocketAddr) {
    let copied: String =
        ["Via", "From", "To", "Call-ID", "CSeq"].iter().map(|h| format!("{h}: {}\r\n", header(request, h))).collect();
    let to_tag = if header(request, "To").contains("tag=") { "" } else { ";tag=phone" };
    let copied = copied.replacen(
        &format!("To: {}\r\n", header(request, "To")),
        &format!("To: {}{to_tag}\r\n", header(request, "To")),
        1,
    );
    socket.send_to(format!("SIP/2.0 200 OK\r\n{copied}Content-Length: 0\r\n\r\n").as_bytes(), from).unwrap();
}

impl Phone {
    /// Calls `exten` at Starling (SIP on `port`) as a guest, offering telephone-event or not,
    /// and waits for the 200 (answered with ACK).
    pub(crate) fn call(port: u16, exten: &str, call_id: &str, events: bool) -> Phone {
        let (sip, rtp) = sockets();
        let (sip_port, rtp_port) = (sip.local_addr().unwrap().port(), rtp.local_addr().unwrap().port());
        let body = sdp(rtp_port, events, "sendrecv");
        let from = format!("<sip:guest@127.0.0.1:{sip_port}>;tag=caller1");
        let invite = format!(
            "INVITE sip:{exten}@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{sip_port};branch=z9hG4bKcall1\r\nFrom: {from}\r\nTo: <sip:{exten}@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:guest@127.0.0.1:{sip_port}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let server: SocketAddr = ([127, 0, 0, 1], port).into();
        sip.send_to(invite.as_bytes(), server).unwrap();
        let answer = expect(&sip, "SIP/2.0 200");
        let (their_port, event_pt) = media_of(&answer);
        let phone = Phone {
            sip,
            rtp,
            server,
            their_rtp: ([127, 0, 0, 1], their_port).into(),
            event_pt,
            from,
            to: header(&answer, "To").to_owned(),
            call_id: call_id.to_owned(),
            cseq: 1.into(),
            seq: 0.into(),
        };
        phone.request("ACK", "", "");
        phone
    }

    /// A phone waiting for Starling's INVITE: its SIP port, to put in bob's `port=`.
    pub(crate) fn listen() -> (UdpSocket, UdpSocket, u16) {
        let (sip, rtp) = sockets();
        let port = sip.local_addr().unwrap().port();
        (sip, rtp, port)
    }

    /// Answers the INVITE Starling sends (answering telephone-event only if `events` and
    /// offered), and waits for the ACK.
    pub(crate) fn answer(sip: UdpSocket, rtp: UdpSocket, events: bool) -> Phone {
        let mut buffer = [0u8; 8192];
        let (invite, server) = loop {
            let (len, from) = sip.recv_from(&mut buffer).expect("Starling's INVITE");
            let text = String::from_utf8_lossy(&buffer[..len]).into_owned();
            if text.starts_with("INVITE ") {
                break (text, from);
            }
        };
        let (their_port, offered_pt) = media_of(&invite);
        let rtp_port = rtp.local_addr().unwrap().port();
        let event_pt = offered_pt.filter(|_| events);
        let body = sdp(rtp_port, false, "sendrecv");
        let body = match event_pt {
            Some(pt) => body.replace("RTP/AVP 0\r\n", &format!("RTP/AVP 0 {pt}\r\n")).replace(
                "a=sendrecv",
                &format!("a=rtpmap:{pt} telephone-event/8000\r\na=fmtp:{pt} 0-16\r\na=sendrecv"),
            ),
            None => body,
        };
        let sip_port = sip.local_addr().unwrap().port();
        let to = format!("{};tag=callee1", header(&invite, "To"));
        let copied: String =
            ["Via", "From", "Call-ID", "CSeq"].iter().map(|h| format!("{h}: {}\r\n", header(&invite, h))).collect();
        let ok = format!(
            "SIP/2.0 200 OK\r\n{copied}To: {to}\r\nContact: <sip:bob@127.0.0.1:{sip_port}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        sip.send_to(ok.as_bytes(), server).unwrap();
        expect(&sip, "ACK ");
        Phone {
            sip,
            rtp,
            server,
            their_rtp: ([127, 0, 0, 1], their_port).into(),
            event_pt,
            // Our requests go the other way: their From is our To.
            from: to,
            to: header(&invite, "From").to_owned(),
            call_id: header(&invite, "Call-ID").to_owned(),
            cseq: 1.into(),
            seq: 0.into(),
        }
    }

    /// Sends a request in the dialog (`extra`: header lines ending in CRLF), with `body`.
    pub(crate) fn request(&self, method: &str, extra: &str, body: &str) {
        let cseq = if method == "ACK" { self.cseq.get() } else { self.cseq.get() + 1 };
        self.cseq.set(cseq);
        let sip_port = self.sip.local_addr().unwrap().port();
        let message = format!(
            "{method} sip:x@{} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{sip_port};branch=z9hG4bK{method}{cseq}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContact: <sip:phone@127.0.0.1:{sip_port}>\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            self.server,
            self.from,
            self.to,
            self.call_id,
            body.len()
        );
        self.sip.send_to(message.as_bytes(), self.server).unwrap();
    }

    /// A re-INVITE with our media `direction` (`sendonly` holds the call), answered and ACKed.
    pub(crate) fn reinvite(&self, direction: &str) {
        let body = sdp(self.rtp.local_addr().unwrap().port(), true, direction);
        self.request("INVITE", "Content-Type: application/sdp\r\n", &body);
        expect(&self.sip, "SIP/2.0 200");
        self.request("ACK", "", "");
    }

    fn send_rtp(&self, pt: u8, marker: bool, timestamp: u32, payload: &[u8]) {
        let seq = self.seq.get();
        self.seq.set(seq.wrapping_add(1));
        let mut packet = vec![0x80, if marker { 0x80 | pt } else { pt }];
        packet.extend_from_slice(&seq.to_be_bytes());
        packet.extend_from_slice(&timestamp.to_be_bytes());
        packet.extend_from_slice(&0x0dd0_5eedu32.to_be_bytes());
        packet.extend_from_slice(payload);
        self.rtp.send_to(&packet, self.their_rtp).unwrap();
    }

    /// `samples` as 20 ms PCMU frames (the last padded with silence), one every 20 ms.
    pub(crate) fn send_audio(&self, samples: &[i16]) {
        for chunk in samples.chunks(160) {
            let mut linear = [0i16; 160];
            linear[..chunk.len()].copy_from_slice(chunk);
            let mut payload = [0u8; 160];
            starling_media::g711::encode_ulaw(&linear, &mut payload);
            let timestamp = u32::from(self.seq.get()) * 160;
            self.send_rtp(0, false, timestamp, &payload);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// 20 ms of silence, `n` times.
    pub(crate) fn send_silence(&self, n: usize) {
        self.send_audio(&vec![0i16; 160 * n]);
    }

    /// A key press as RFC 4733 events (100 ms, then the End three times).
    fn press_rfc4733(&self, digit: char) {
        let event = "0123456789*#".find(digit).unwrap() as u8;
        let pt = self.event_pt.expect("telephone-event was negotiated");
        let timestamp = u32::from(self.seq.get()) * 160;
        for (i, (end, duration)) in
            [(false, 160u16), (false, 320), (false, 480), (false, 640), (true, 800), (true, 800), (true, 800)]
                .into_iter()
                .enumerate()
        {
            let mut payload = vec![event, if end { 0x80 | 10 } else { 10 }];
            payload.extend_from_slice(&duration.to_be_bytes());
            self.send_rtp(pt, i == 0, timestamp, &payload);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A key press as chan_sip's INFO.
    fn press_info(&self, digit: char) {
        self.request(
            "INFO",
            "Content-Type: application/dtmf-relay\r\n",
            &format!("Signal={digit}\r\nDuration=250\r\n"),
        );
    }

    /// A key press in the audio: 120 ms of its two tones.
    fn press_inband(&self, digit: char) {
        self.send_audio(&starling_media::dtmf::tone(digit, 960).unwrap());
    }

    pub(crate) fn press(&self, mode: &str, digit: char) {
        match mode {
            "rfc2833" => self.press_rfc4733(digit),
            "info" => self.press_info(digit),
            "inband" => self.press_inband(digit),
            other => panic!("no way to press a key in mode {other}"),
        }
    }
}

/// What reached bob within `within`: the RFC 4733 events (by digit), the INFO bodies, and the
/// 20 ms PCMU frames decoded.
#[derive(Default, Debug)]
struct Heard {
    events: Vec<char>,
    infos: Vec<String>,
    frames: Vec<Vec<i16>>,
}

fn listen_for(phone: &Phone, within: Duration) -> Heard {
    let mut heard = Heard::default();
    let deadline = Instant::now() + within;
    phone.rtp.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    phone.sip.set_nonblocking(true).unwrap();
    let mut buffer = [0u8; 8192];
    while Instant::now() < deadline {
        if let Ok(len) = phone.rtp.recv(&mut buffer) {
            if len > 12 {
                let pt = buffer[1] & 0x7f;
                let payload = &buffer[12..len];
                if pt == 0 {
                    let mut linear = vec![0i16; payload.len()];
                    starling_media::g711::decode_ulaw(payload, &mut linear);
                    heard.frames.push(linear);
                } else if Some(pt) == phone.event_pt && !payload.is_empty() {
                    if let Some(d) = "0123456789*#ABCD".chars().nth(usize::from(payload[0])) {
                        heard.events.push(d);
                    }
                }
            }
        }
        while let Ok((len, from)) = phone.sip.recv_from(&mut buffer) {
            let text = String::from_utf8_lossy(&buffer[..len]).into_owned();
            if text.starts_with("INFO ") {
                ok(&phone.sip, &text, from);
                let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
                heard.infos.push(format!("{}|{body}", header(&text, "Content-Type")));
            }
        }
    }
    phone.sip.set_nonblocking(false).unwrap();
    heard
}

/// Goertzel power of `frequency` in 8 kHz samples.
fn goertzel(samples: &[i16], frequency: f64) -> f64 {
    let k = 2.0 * (2.0 * std::f64::consts::PI * frequency / 8000.0).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for x in samples {
        let s = f64::from(*x) + k * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    s1 * s1 + s2 * s2 - k * s1 * s2
}

/// The DTMF key a 20 ms frame holds (both its tones far above the other six), if any.
fn key_in(frame: &[i16]) -> Option<char> {
    const ROWS: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
    const COLUMNS: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
    const KEYS: [&str; 4] = ["123A", "456B", "789C", "*0#D"];
    let strongest = |freqs: &[f64; 4]| {
        let powers: Vec<f64> = freqs.iter().map(|f| goertzel(frame, *f)).collect();
        let (i, max) = powers.iter().enumerate().fold((0, 0.0), |a, (i, p)| if *p > a.1 { (i, *p) } else { a });
        let others = powers.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, p)| *p).fold(0.0, f64::max);
        (max > 1e9 && max > 6.3 * others).then_some(i)
    };
    KEYS[strongest(&ROWS)?].chars().nth(strongest(&COLUMNS)?)
}

/// A guest (`[general] dtmfmode=<caller>`) dials bob (`dtmfmode=<callee>`); the caller presses
/// 5 its way; bob must get a 5 his way. `caller_events`/`callee_events`: whether each phone
/// offers or answers telephone-event (what `auto` decides on).
fn interwork(name: &str, caller: &str, caller_events: bool, callee: &str, callee_events: bool, expect_as: &str) {
    let port = free_udp_port();
    let (bob_sip, bob_rtp, bob_port) = Phone::listen();
    let dir = TestDir::new(name);
    dir.write_starling_conf(&moddir(), "");
    dir.write(
        "modules.conf",
        "[modules]\nautoload = no\nload => pbx_config.so\nload => app_dial.so\nload => chan_sip.so\n",
    );
    dir.write("extensions.conf", "[default]\nexten => bob,1,Dial(SIP/bob,10)\n same => n,Hangup()\n");
    dir.write(
        "sip.conf",
        &format!(
            "[general]\nbindaddr=127.0.0.1\nbindport={port}\ncontext=default\nallowguest=yes\ndisallow=all\nallow=ulaw\ndtmfmode={caller}\n\
             [bob]\ntype=peer\nhost=127.0.0.1\nport={bob_port}\ncontext=default\ndisallow=all\nallow=ulaw\ndtmfmode={callee}\n"
        ),
    );
    let server = Server::start(dir);
    let call_id = format!("{name}@127.0.0.1");
    let dialing = std::thread::spawn(move || Phone::call(port, "bob", &call_id, caller_events));
    let bob = Phone::answer(bob_sip, bob_rtp, callee_events);
    let alice = dialing.join().unwrap();
    let bridged = eventually(Duration::from_secs(5), || {
        let bridges = server.rx("bridge show all");
        ["native_rtp", "simple_bridge"].into_iter().find(|t| bridges.contains(t)).map(str::to_owned)
    });
    let technology = bridged.unwrap_or_else(|| panic!("bridged\n{}", server.log_tail()));
    // Media first, so that both legs have a far end learnt; then the key, then quiet audio.
    alice.send_silence(10);
    let sent_as = match caller {
        "auto" if caller_events => "rfc2833",
        "auto" => "inband",
        mode => mode,
    }
    .to_owned();
    let pressing = std::thread::spawn(move || {
        alice.press(&sent_as, '5');
        alice.send_silence(40);
        alice
    });
    let heard = listen_for(&bob, Duration::from_millis(1600));
    let _alice = pressing.join().unwrap();
    let context = format!(
        "{caller}→{callee} ({technology}): events {:?}, INFO {:?}, {} frames {:?}\n{}",
        heard.events,
        heard.infos,
        heard.frames.len(),
        heard
            .frames
            .iter()
            .filter(|f| f.iter().any(|x| x.abs() > 100))
            .map(|f| (
                f.len(),
                key_in(f),
                goertzel(f, 770.0) as u64,
                goertzel(f, 1336.0) as u64,
                goertzel(f, 697.0) as u64
            ))
            .collect::<Vec<_>>(),
        server.log_tail()
    );
    match expect_as {
        "rfc2833" => {
            assert!(heard.events.contains(&'5'), "an RFC 4733 5: {context}");
            assert!(heard.infos.is_empty(), "{context}");
        }
        "info" => {
            assert_eq!(
                heard.infos,
                ["application/dtmf-relay|Signal=5\r\nDuration=250\r\n"],
                "one INFO as chan_sip's: {context}"
            );
            assert!(heard.events.is_empty(), "{context}");
        }
        "inband" => {
            let keyed = heard.frames.iter().filter(|f| key_in(f) == Some('5')).count();
            let other = heard.frames.iter().filter(|f| key_in(f).is_some_and(|k| k != '5')).count();
            assert!(keyed >= 4 && other == 0, "{keyed} frames of a 5's tones, {other} of other keys: {context}");
            assert!(heard.events.is_empty() && heard.infos.is_empty(), "{context}");
        }
        _ => unreachable!(),
    }
    // Different ways of carrying keys cannot be relayed packet for packet; the same way can.
    let expected = if caller == callee { "native_rtp" } else { "simple_bridge" };
    assert_eq!(technology, expected, "{context}");
}

macro_rules! interwork_tests {
    ($($name:ident: $caller:literal $caller_events:literal -> $callee:literal $callee_events:literal as $expect:literal;)*) => {
        $(
            #[test]
            fn $name() {
                interwork(stringify!($name), $caller, $caller_events, $callee, $callee_events, $expect);
            }
        )*
    };
}

interwork_tests! {
    rfc2833_to_rfc2833: "rfc2833" true -> "rfc2833" true as "rfc2833";
    rfc2833_to_info: "rfc2833" true -> "info" false as "info";
    rfc2833_to_inband: "rfc2833" true -> "inband" false as "inband";
    info_to_rfc2833: "info" true -> "rfc2833" true as "rfc2833";
    info_to_info: "info" false -> "info" false as "info";
    info_to_inband: "info" false -> "inband" false as "inband";
    inband_to_rfc2833: "inband" false -> "rfc2833" true as "rfc2833";
    inband_to_info: "inband" false -> "info" false as "info";
    inband_to_inband: "inband" false -> "inband" false as "inband";
    auto_with_events_to_info: "auto" true -> "info" false as "info";
    info_to_auto_with_events: "info" false -> "auto" true as "rfc2833";
    info_to_auto_without_events: "info" false -> "auto" false as "inband";
    auto_without_events_to_rfc2833: "auto" false -> "rfc2833" true as "rfc2833";
}
