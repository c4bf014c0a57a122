//! Issue 24: SDES-SRTP (`encryption=yes`) with real peers. baresip over TLS with
//! `mediaenc=srtp-mand` (Debian's baresip-core has the srtp module) calls another such baresip
//! through `Dial(SIP/b)`, calls Echo(), and calls a plain-RTP baresip; each hears the other's
//! tone (FFT), `sip show channel` says SRTP, and a tshark capture of Starling's RTP ports shows
//! that the SRTP legs carry no tone when their payloads are read as PCMU — while the plain leg
//! of the same capture does (the check's own control). The bridged calls are relayed natively
//! (the relay thread opens and seals each SRTP leg with its own keys). SIPp sends an SDES offer over UDP to an
//! `encryption=yes` Starling: 488, and the WARNING that says why.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::tls::{baresip_tls, registered_over_tls, Pki};
use crate::util::*;

const EXTENSIONS: &str = "[default]\n\
exten => 600,1,Answer()\n same => n,Echo()\n same => n,Hangup()\n\
exten => 700,1,Dial(SIP/b,10)\n same => n,Hangup()\n\
exten => 800,1,Dial(SIP/c,10)\n same => n,Hangup()\n";

/// a and b: phones over TLS with SRTP required; c: a plain-RTP phone over UDP.
const PHONES: &str = "[a]\ntype=friend\nhost=dynamic\nsecret=pw\ncontext=default\ntransport=tls,udp\nencryption=yes\n\
[b]\ntype=friend\nhost=dynamic\nsecret=pw\ncontext=default\ntransport=tls,udp\nencryption=yes\n\
[c]\ntype=friend\nhost=dynamic\nsecret=pw\ncontext=default\n";

/// An RTP port range of this test's own (rtp.conf), away from the default range, other
/// tests' ranges and the ephemeral ports: a capture of it holds this test's media alone.
fn own_rtp_range(slot: u16) -> std::ops::Range<u16> {
    let mut base = 21_000 + (std::process::id() % 50) as u16 * 60 + slot * 20;
    loop {
        let range = base..base + 20;
        if range.clone().all(|p| std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok()) {
            return range;
        }
        base = if base >= 23_900 { 21_000 } else { base + 20 };
    }
}

/// A Starling with TLS, the phones, and `range` as its RTP ports.
/// Its UDP SIP port too.
fn srtp_pbx(name: &str, pki: &Pki, tls_port: u16, range: &std::ops::Range<u16>) -> (Server, u16) {
    let rtp_conf = format!("[general]\nrtpstart={}\nrtpend={}\n", range.start, range.end - 1);
    sip_pbx_with_files(
        name,
        &["pbx_config", "app_dial", "app_echo"],
        Some(EXTENSIONS),
        &format!("{}{PHONES}", pki.general(tls_port, "server")),
        &[("rtp.conf", &rtp_conf)],
    )
}

/// baresip's account over TLS with SRTP required, and its config (the test's CA, the srtp module).
fn srtp_phone(pki: &Pki, user: &str, tls_port: u16, regint: u32) -> (String, String) {
    (
        format!(
            "<sip:{user}@127.0.0.1:{tls_port};transport=tls>;auth_pass=pw;answermode=auto;regint={regint};mediaenc=srtp-mand"
        ),
        format!("{}module srtp.so\n", baresip_tls(pki, None)),
    )
}

/// tshark capturing UDP to and from `range` on lo, into `file`; stopped (SIGINT, by its pid)
/// when [`Capture::packets`] reads it, or killed on drop.
struct Capture {
    child: Child,
    file: std::path::PathBuf,
    _dir: TestDir,
}

impl Capture {
    fn start(name: &str, range: &std::ops::Range<u16>) -> Capture {
        let dir = TestDir::new(name);
        let file = dir.path.join("rtp.pcap");
        let child = Command::new("tshark")
            .args(["-i", "lo", "-n", "-q", "-f"])
            .arg(format!("udp portrange {}-{}", range.start, range.end - 1))
            .arg("-w")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path.join("tshark.err")).unwrap())
            .spawn()
            .expect("tshark (Debian's tshark)");
        let err = dir.path.join("tshark.err");
        let started = eventually(Duration::from_secs(15), || {
            std::fs::read_to_string(&err).unwrap_or_default().contains("Capturing on").then_some(())
        });
        assert!(started.is_some(), "tshark did not start: {}", std::fs::read_to_string(&err).unwrap_or_default());
        Capture { child, file, _dir: dir }
    }

    /// Stops the capture; every UDP datagram as (source port, destination port, payload).
    fn packets(mut self) -> Vec<(u16, u16, Vec<u8>)> {
        kill_pid(self.child.id() as i32, libc::SIGINT);
        if wait_timeout(&mut self.child, Duration::from_secs(10)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let out = Command::new("timeout")
            .args(["60", "tshark", "-n", "-r"])
            .arg(&self.file)
            .args(["-T", "fields", "-e", "udp.srcport", "-e", "udp.dstport", "-e", "udp.payload"])
            .output()
            .expect("tshark -r");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let mut f = line.split('\t');
                let src = f.next()?.parse().ok()?;
                let dst = f.next()?.parse().ok()?;
                let hex: String = f.next()?.chars().filter(|c| c.is_ascii_hexdigit()).collect();
                let bytes = (0..hex.len() / 2).filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok());
                Some((src, dst, bytes.collect()))
            })
            .collect()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One direction of RTP in a capture, its payloads read as PCMU: how much of its spectrum's
/// energy lies within 15 Hz of 440 Hz and of 880 Hz (a share, 0 to 1), as numpy finds it.
/// A PCMU tone puts most of its energy there; encrypted payloads, noise, spread it over 4 kHz.
fn tone_share(payloads: &[&[u8]], dir: &Path) -> f64 {
    let mut samples: Vec<i16> = Vec::new();
    for payload in payloads {
        let body = payload.get(12..).unwrap_or_default();
        let mut linear = vec![0i16; body.len()];
        starling_media::g711::decode_ulaw(body, &mut linear);
        samples.extend(linear);
    }
    let raw = dir.join(format!("flow-{}.raw", samples.len()));
    std::fs::write(&raw, samples.iter().flat_map(|s| s.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(
            "import sys,numpy as n\nd=n.fromfile(sys.argv[1],dtype='<i2').astype(float)\nd-=d.mean()\n\
             p=n.abs(n.fft.rfft(d))**2\nf=n.fft.rfftfreq(len(d),1/8000)\n\
             m=(abs(f-440)<15)|(abs(f-880)<15)\nprint(p[m].sum()/max(p.sum(),1e-9))",
        )
        .arg(&raw)
        .output()
        .expect("python3 with numpy");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(-1.0)
}

/// The capture's RTP flows (source port, destination port) of at least 100 packets that
/// touch one of `ports`, with the share of their energy at the tones ([`tone_share`]). RTCP
/// (payload types 200–204) is left out.
fn flows(packets: &[(u16, u16, Vec<u8>)], ports: &[u16], dir: &Path) -> Vec<((u16, u16), usize, f64)> {
    let mut by_flow: std::collections::BTreeMap<(u16, u16), Vec<&[u8]>> = Default::default();
    for (src, dst, payload) in packets {
        let rtcp = payload.len() > 1 && (200..=204).contains(&payload[1]);
        if (ports.contains(src) || ports.contains(dst)) && !rtcp && payload.len() > 12 {
            by_flow.entry((*src, *dst)).or_default().push(payload);
        }
    }
    by_flow
        .into_iter()
        .filter(|(_, p)| p.len() >= 100)
        .map(|(flow, payloads)| (flow, payloads.len(), tone_share(&payloads, dir)))
        .collect()
}

/// Starling's RTP port of each call in `sip show channel` (its `Audio IP`), and whether each
/// says `Media: SRTP`, read while the calls are up.
fn channels_media(server: &Server) -> Vec<(u16, String)> {
    let channels = server.rx("sip show channels");
    channels
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(2))
        .filter(|id| id.len() > 4)
        .filter_map(|id| {
            let detail = server.rx(&format!("sip show channel {id}"));
            let value =
                |key: &str| detail.lines().find_map(|l| l.trim_start().strip_prefix(key).map(|v| v.trim().to_owned()));
            let port = value("Audio IP:")?.rsplit(':').next()?.parse().ok()?;
            Some((port, format!("{} {}", value("Media:")?, value("Crypto suite:")?)))
        })
        .collect()
}

/// A `Key: value` line of `sip show channel`'s block for each call.
fn channel_values(server: &Server, key: &str) -> Vec<String> {
    let channels = server.rx("sip show channels");
    channels
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(2))
        .filter(|id| id.len() > 4)
        .filter_map(|id| {
            let detail = server.rx(&format!("sip show channel {id}"));
            detail.lines().find_map(|l| l.trim_start().strip_prefix(key).map(|v| v.trim().to_owned()))
        })
        .collect()
}

/// A `Key: value` line of `sip show channel` for the call whose Call-ID starts with `call_id`.
fn channel_value(server: &Server, call_id: &str, key: &str) -> Option<String> {
    let detail = server.rx(&format!("sip show channel {call_id}"));
    detail.lines().find_map(|l| l.trim_start().strip_prefix(key).map(|v| v.trim().to_owned()))
}

/// Both calls of a bridge relayed natively: `bridge show all` says `native_rtp`, and each
/// call's `sip show channel` says `Native relay: Yes` (the relay thread reads its RTP socket,
/// opening and sealing SRTP). Checked while the calls talk.
fn assert_relayed_natively(server: &Server) {
    let relayed = eventually(Duration::from_secs(5), || {
        let relayed = channel_values(server, "Native relay:");
        (relayed.len() == 2 && relayed.iter().all(|v| v == "Yes")).then_some(relayed)
    });
    assert!(
        relayed.is_some(),
        "both legs relayed natively: {:?}\n{}\n{}",
        channel_values(server, "Native relay:"),
        server.rx("bridge show all"),
        server.log_tail()
    );
    assert!(server.rx("bridge show all").contains("native_rtp"), "{}", server.rx("bridge show all"));
}

/// Acceptance: baresip A (TLS, srtp-mand) calls baresip B (TLS, srtp-mand) through
/// `Dial(SIP/b)`: each hears the other's tone; both calls show `Media: SRTP` with the suite;
/// `sip show peer` says `Encryption : Yes`; and in a capture of Starling's RTP ports, no flow of
/// the call carries 440 or 880 Hz when read as PCMU.
#[test]
fn baresip_srtp_calls_baresip_srtp_through_dial_and_the_wire_is_encrypted() {
    let pki = Pki::new("srtppki1");
    let tls_port = free_udp_port();
    let range = own_rtp_range(0);
    let (server, _) = srtp_pbx("srtpdial", &pki, tls_port, &range);
    let peer = server.rx("sip show peer b");
    assert!(peer.contains("Encryption   : Yes"), "{peer}");
    assert!(server.rx("sip show peer c").contains("Encryption   : No"));

    let (account_b, config) = srtp_phone(&pki, "b", tls_port, 600);
    let phone_b = Baresip::spawn_with("srtpb", &account_b, "g711.so", 8000, 880, &[], 40, &config);
    assert!(registered_over_tls(&server, "b").is_some(), "{}\n{}", phone_b.log(), server.log_tail());

    let capture = Capture::start("srtpcap1", &range);
    let (account_a, config) = srtp_phone(&pki, "a", tls_port, 0);
    let dial = format!("/dial sip:700@127.0.0.1:{tls_port};transport=tls");
    let caller = Baresip::spawn_with("srtpa", &account_a, "g711.so", 8000, 440, &["-e", &dial], 8, &config);
    let media = eventually(Duration::from_secs(10), || {
        let media = channels_media(&server);
        (media.len() == 2).then_some(media)
    });
    let media = media.unwrap_or_else(|| {
        panic!("two calls: {}\n{}\n{}", server.rx("sip show channels"), caller.log(), server.log_tail())
    });
    for (_, shown) in &media {
        assert!(shown.starts_with("SRTP AES_CM_128_HMAC_SHA1_") || shown.starts_with("SRTP AEAD_"), "{media:?}");
    }
    // Relayed natively: each leg's SRTP opened with its own key and sealed with the other's.
    assert_relayed_natively(&server);
    let (samples, peak, log) = caller.heard();
    assert!(samples >= 16_000, "a heard b: {samples} samples\n{log}\n{}\n{}", phone_b.log(), server.log_tail());
    assert!((875..=885).contains(&peak), "a hears b's 880 Hz: peak at {peak} Hz\n{log}");
    let (samples, peak, log) = phone_b.heard();
    assert!(samples >= 16_000, "b heard a: {samples} samples\n{log}");
    assert!((435..=445).contains(&peak), "b hears a's 440 Hz: peak at {peak} Hz\n{log}");

    let packets = capture.packets();
    let ports: Vec<u16> = media.iter().map(|(port, _)| *port).collect();
    let dir = TestDir::new("srtpflows1");
    let flows = flows(&packets, &ports, &dir.path);
    // Four directions: a→us, us→a, b→us, us→b.
    assert!(flows.len() >= 4, "the call's RTP in the capture: {flows:?} ({} packets)", packets.len());
    for (flow, count, share) in &flows {
        assert!((0.0..0.05).contains(share), "flow {flow:?} ({count} packets) carries the tone: share {share}");
    }
}

/// Acceptance: baresip over TLS + SRTP to Echo() hears its own tone back.
#[test]
fn srtp_to_echo_returns_the_tone() {
    let pki = Pki::new("srtppki2");
    let tls_port = free_udp_port();
    let range = own_rtp_range(1);
    let (server, _) = srtp_pbx("srtpecho", &pki, tls_port, &range);
    let (account, config) = srtp_phone(&pki, "a", tls_port, 0);
    let dial = format!("/dial sip:600@127.0.0.1:{tls_port};transport=tls");
    let echo = Baresip::spawn_with("srtpecho", &account, "g711.so", 8000, 440, &["-e", &dial], 6, &config);
    let shown = eventually(Duration::from_secs(10), || {
        let media = channels_media(&server);
        media.first().map(|(_, shown)| shown.clone())
    });
    assert!(shown.as_deref().is_some_and(|s| s.starts_with("SRTP ")), "{shown:?}\n{}", server.log_tail());
    let (samples, peak, log) = echo.heard();
    assert!(samples >= 16_000, "the echo came back: {samples} samples\n{log}\n{}", server.log_tail());
    assert!((435..=445).contains(&peak), "the echo is the 440 Hz tone: peak at {peak} Hz\n{log}");
}

/// Baresip `c`, a plain-RTP phone (UDP, PCMU, playing 880 Hz, auto-answer), registered.
fn plain_phone_c(name: &str, server: &Server, udp_port: u16) -> Baresip {
    let plain = format!("<sip:c@127.0.0.1:{udp_port}>;auth_pass=pw;answermode=auto;regint=600");
    let phone_c = Baresip::spawn(name, &plain, "g711.so", 8000, 880, &[], 40);
    let registered = eventually(Duration::from_secs(10), || {
        server.rx("sip show peer c").contains("Reg. Contact : sip:c").then_some(())
    });
    assert!(registered.is_some(), "{}\n{}", phone_c.log(), server.log_tail());
    phone_c
}

/// Acceptance: an SRTP leg (baresip over TLS, srtp-mand) bridged by `Dial(SIP/c)` to a
/// plain-RTP phone (baresip over UDP): each hears the other; in the capture the SRTP leg's
/// flows carry no tone read as PCMU, and the plain leg's do (so the check can see a tone).
#[test]
fn an_srtp_leg_bridges_with_a_plain_rtp_leg() {
    let pki = Pki::new("srtppki3");
    let tls_port = free_udp_port();
    let range = own_rtp_range(2);
    let (server, udp_port) = srtp_pbx("srtpmixed", &pki, tls_port, &range);
    let phone_c = plain_phone_c("srtpc", &server, udp_port);

    let capture = Capture::start("srtpcap3", &range);
    let (account, config) = srtp_phone(&pki, "a", tls_port, 0);
    let dial = format!("/dial sip:800@127.0.0.1:{tls_port};transport=tls");
    let caller = Baresip::spawn_with("srtpa3", &account, "g711.so", 8000, 440, &["-e", &dial], 8, &config);
    let media = eventually(Duration::from_secs(10), || {
        let media = channels_media(&server);
        (media.len() == 2).then_some(media)
    })
    .unwrap_or_else(|| {
        panic!("two calls: {}\n{}\n{}", server.rx("sip show channels"), caller.log(), server.log_tail())
    });
    let secure: Vec<u16> = media.iter().filter(|(_, m)| m.starts_with("SRTP ")).map(|(p, _)| *p).collect();
    let clear: Vec<u16> = media.iter().filter(|(_, m)| m.starts_with("RTP ")).map(|(p, _)| *p).collect();
    assert_eq!((secure.len(), clear.len()), (1, 1), "one SRTP leg, one plain: {media:?}");
    assert_relayed_natively(&server);
    let (samples, peak, log) = caller.heard();
    assert!(samples >= 16_000, "a heard c: {samples} samples\n{log}\n{}\n{}", phone_c.log(), server.log_tail());
    assert!((875..=885).contains(&peak), "a hears c's 880 Hz: peak at {peak} Hz\n{log}");
    let (samples, peak, log) = phone_c.heard();
    assert!(samples >= 16_000, "c heard a: {samples} samples\n{log}");
    assert!((435..=445).contains(&peak), "c hears a's 440 Hz: peak at {peak} Hz\n{log}");

    let packets = capture.packets();
    let dir = TestDir::new("srtpflows3");
    let encrypted = flows(&packets, &secure, &dir.path);
    let plain = flows(&packets, &clear, &dir.path);
    assert!(encrypted.len() >= 2 && plain.len() >= 2, "{encrypted:?} {plain:?} ({} packets)", packets.len());
    for (flow, count, share) in &encrypted {
        assert!((0.0..0.05).contains(share), "SRTP flow {flow:?} ({count} packets) carries the tone: {share}");
    }
    for (flow, count, share) in &plain {
        assert!(*share > 0.5, "plain flow {flow:?} ({count} packets) is the tone: share {share}");
    }
}

/// Keys only over TLS: an SDES offer over plain UDP to `encryption=yes` (a guest, from
/// `[general]`) is answered 488 with a WARNING that says so; a plain offer there is 488 too
/// (chan_sip's "Matched device setup to use SRTP, but request was not!"); and `Dial(SIP/d)` to
/// an `encryption=yes` peer reached over UDP is refused before any INVITE leaves.
#[test]
fn an_sdes_offer_over_udp_with_encryption_yes_is_refused_with_488() {
    let extensions = "[default]\nexten => 100,1,Answer()\n same => n,Echo()\n\
                      exten => 900,1,Dial(SIP/d,5)\n same => n,Hangup()\n";
    let (server, port) = sip_pbx(
        "srtpudp",
        &["pbx_config", "app_dial", "app_echo"],
        Some(extensions),
        "encryption=yes\n[d]\ntype=peer\nhost=127.0.0.1\nport=9\nencryption=yes\n",
    );
    let (code, out) = run_sipp_with(port, "invite_sdes_488.xml", &["-s", "100", "-m", "1"]);
    assert_eq!(code, 0, "488 to the SDES offer over UDP: {out}\n{}", server.log_tail());
    let warned = eventually(Duration::from_secs(5), || {
        server
            .log()
            .lines()
            .find(|l| l.contains("] WARNING[") && l.contains("keys are only sent over TLS"))
            .map(str::to_owned)
    });
    let line = warned.unwrap_or_else(|| panic!("the WARNING: {}", server.log_tail()));
    assert!(line.contains("refused with 488"), "{line}");

    let (code, out) = run_sipp_with(port, "invite_plain_488.xml", &["-s", "100", "-m", "1"]);
    assert_eq!(code, 0, "488 to the plain offer: {out}\n{}", server.log_tail());
    assert!(server.log().contains("Matched device setup to use SRTP, but request was not!"), "{}", server.log_tail());

    let _ = server.try_rx("channel originate SIP/d application Echo");
    let refused = eventually(Duration::from_secs(5), || {
        server.log().contains("Not calling 'd': encryption=yes, and SRTP keys are only sent over TLS").then_some(())
    });
    assert!(refused.is_some(), "{}", server.log_tail());
}

/// A phone of the test's own over TLS (`openssl s_client` carries its SIP, as in tls.rs) whose
/// media is SRTP made with Starling's own crates/media: what s_client prints, gathered.
struct TlsPhone {
    child: Child,
    read: std::sync::Arc<std::sync::Mutex<String>>,
}

impl TlsPhone {
    fn connect(pki: &Pki, tls_port: u16) -> TlsPhone {
        use std::io::BufRead;
        let mut child = Command::new("openssl")
            .args(["s_client", "-quiet", "-ign_eof", "-verify_return_error", "-CAfile"])
            .arg(pki.file("ca.pem"))
            .args(["-connect", &format!("127.0.0.1:{tls_port}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_client");
        let read = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let stdout = child.stdout.take().unwrap();
        let sink = read.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut read = sink.lock().unwrap();
                read.push_str(line.trim_end_matches('\r'));
                read.push('\n');
            }
        });
        TlsPhone { child, read }
    }

    fn send(&mut self, message: &str) {
        use std::io::Write;
        self.child.stdin.as_mut().unwrap().write_all(message.as_bytes()).unwrap();
        self.child.stdin.as_mut().unwrap().flush().unwrap();
    }

    /// The 200 OK to our `CSeq: <seq> INVITE` (its header lines and body), once it has come.
    fn ok_to(&self, seq: u32) -> Option<String> {
        eventually(Duration::from_secs(10), || {
            let read = self.read.lock().unwrap().clone();
            read.split("SIP/2.0 ")
                .find(|m| m.starts_with("200 OK") && m.contains(&format!("CSeq: {seq} INVITE")))
                .map(str::to_owned)
        })
    }
}

impl Drop for TlsPhone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The SDP of a [`TlsPhone`]: PCMU (and RFC 4733 keys, as baresip's) on `rtp_port`, RTP/SAVP with `key` under `tag`.
fn sdes_sdp(rtp_port: u16, key: &starling_media::srtp::MasterKey, tag: u32, version: u32) -> String {
    format!(
        "v=0\r\no=- 1 {version} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {rtp_port} RTP/SAVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-16\r\na=crypto:{}\r\na=sendrecv\r\n",
        starling_media::sdes::Crypto::new(tag, key.clone())
    )
}

/// A [`TlsPhone`]'s INVITE (CSeq `seq`) to `exten`, in dialog once `to_tag` is known.
fn sdes_invite(tls_port: u16, exten: &str, call_id: &str, seq: u32, to_tag: &str, body: &str) -> String {
    format!(
        "INVITE sip:{exten}@127.0.0.1:{tls_port};transport=tls SIP/2.0\r\n\
         Via: SIP/2.0/TLS 127.0.0.1:5099;branch=z9hG4bK{call_id}{seq};rport\r\nMax-Forwards: 70\r\n\
         From: <sip:guest@127.0.0.1>;tag=rk1\r\nTo: <sip:{exten}@127.0.0.1>{to_tag}\r\nCall-ID: {call_id}\r\n\
         CSeq: {seq} INVITE\r\nContact: <sip:guest@127.0.0.1:5099;transport=tls>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A [`TlsPhone`]'s ACK or BYE in the dialog of [`sdes_invite`].
fn sdes_request(tls_port: u16, exten: &str, call_id: &str, method: &str, seq: u32, to_tag: &str) -> String {
    format!(
        "{method} sip:{exten}@127.0.0.1:{tls_port};transport=tls SIP/2.0\r\n\
         Via: SIP/2.0/TLS 127.0.0.1:5099;branch=z9hG4bK{call_id}{method}{seq};rport\r\nMax-Forwards: 70\r\n\
         From: <sip:guest@127.0.0.1>;tag=rk1\r\nTo: <sip:{exten}@127.0.0.1>{to_tag}\r\nCall-ID: {call_id}\r\n\
         CSeq: {seq} {method}\r\nContent-Length: 0\r\n\r\n"
    )
}

/// The To tag of a response.
fn to_tag_of(response: &str) -> String {
    response
        .lines()
        .find(|l| l.starts_with("To:"))
        .and_then(|l| l.split_once(";tag=").map(|(_, t)| format!(";tag={}", t.trim())))
        .unwrap_or_else(|| panic!("a To tag: {response}"))
}

/// Re-keying (RFC 4568 §7.1.4) end to end: a TLS phone offers SDES with key K1 to Echo(); its
/// SRTP comes back protected with Starling's key; a re-INVITE brings K2 under another tag, and
/// the answer takes that tag with Starling's same key; packets under K2 are echoed, packets
/// still under K1 are dropped (not authentic any more), and nothing comes back in clear.
#[test]
fn a_reinvite_with_a_new_key_rekeys_the_call() {
    use starling_media::sdp::RemoteMedia;
    use starling_media::srtp::{MasterKey, Srtp, Suite};

    let pki = Pki::new("srtppki5");
    let tls_port = free_udp_port();
    let (server, _) =
        sip_pbx("srtprekey", &["pbx_config", "app_echo"], Some(EXTENSIONS), &pki.general(tls_port, "server"));
    let rtp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    rtp.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let rtp_port = rtp.local_addr().unwrap().port();
    let suite = Suite::AesCm128HmacSha1_80;
    let k1 = MasterKey::generate(suite, |b| b.iter_mut().enumerate().for_each(|(i, x)| *x = i as u8 ^ 0x5a));
    let k2 = MasterKey::generate(suite, |b| b.iter_mut().enumerate().for_each(|(i, x)| *x = i as u8 ^ 0xa5));
    let sdp = |key: &MasterKey, tag: u32, version: u32| sdes_sdp(rtp_port, key, tag, version);
    let invite = |seq: u32, to_tag: &str, body: &str| sdes_invite(tls_port, "600", "rekey-1", seq, to_tag, body);
    let request = |method: &str, seq: u32, to_tag: &str| sdes_request(tls_port, "600", "rekey-1", method, seq, to_tag);
    // The answer's crypto line and Starling's RTP address.
    let answer_of = |ok: &str| {
        let body = &ok[ok.find("v=0").unwrap_or_else(|| panic!("an SDP in {ok}"))..];
        let media = RemoteMedia::parse(body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert!(media.secure, "RTP/SAVP: {body}");
        assert_eq!(media.crypto.len(), 1, "one line: {body}");
        media
    };

    let mut phone = TlsPhone::connect(&pki, tls_port);
    phone.send(&invite(1, "", &sdp(&k1, 1, 1)));
    let ok = phone.ok_to(1).unwrap_or_else(|| panic!("{}\n{}", phone.read.lock().unwrap(), server.log_tail()));
    let first = answer_of(&ok);
    let to_tag = to_tag_of(&ok);
    assert_eq!(first.crypto[0].tag, 1, "{ok}");
    let theirs = first.crypto[0].key.clone();
    phone.send(&request("ACK", 1, &to_tag));

    // Our SRTP; what comes back, unprotected with Starling's key (the payload's first byte says
    // which phase it was sent in).
    let mut ours_k1 = Srtp::new(&k1, &theirs).unwrap();
    let mut back = Srtp::new(&k2, &theirs).unwrap();
    let mut seq = 0u16;
    let mut echoed: Vec<u8> = Vec::new();
    let mut clear = 0;
    let mut exchange = |srtp: &mut Srtp, mark: u8, count: usize, echoed: &mut Vec<u8>| {
        let mut buffer = [0u8; 1500];
        for _ in 0..count {
            seq = seq.wrapping_add(1);
            let mut packet = vec![0x80, 0x00];
            packet.extend_from_slice(&seq.to_be_bytes());
            packet.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
            packet.extend_from_slice(&0x0bad_cafe_u32.to_be_bytes());
            packet.extend_from_slice(&[mark; 160]);
            srtp.protect_rtp(&mut packet).unwrap();
            rtp.send_to(&packet, first.address).unwrap();
            let until = std::time::Instant::now() + Duration::from_millis(20);
            while std::time::Instant::now() < until {
                let Ok((len, _)) = rtp.recv_from(&mut buffer) else { continue };
                if len >= 2 && (200..=204).contains(&buffer[1]) {
                    continue; // SRTCP
                }
                if len == 172 && buffer[12..172].iter().all(|b| *b == mark) {
                    clear += 1;
                }
                if let Ok(plain) = back.unprotect_rtp(&mut buffer[..len]) {
                    echoed.push(buffer[12.min(plain)..plain].first().copied().unwrap_or(0));
                }
            }
        }
    };
    exchange(&mut ours_k1, 0x11, 60, &mut echoed);
    assert!(
        echoed.iter().filter(|m| **m == 0x11).count() >= 20,
        "K1's packets came back under Starling's key: {echoed:?}\n{}",
        server.log_tail()
    );

    // The re-INVITE with K2 under tag 7: Starling takes it, keeping its own key.
    phone.send(&invite(2, &to_tag, &sdp(&k2, 7, 2)));
    let ok = phone.ok_to(2).unwrap_or_else(|| panic!("{}\n{}", phone.read.lock().unwrap(), server.log_tail()));
    let second = answer_of(&ok);
    assert_eq!(second.crypto[0].tag, 7, "the answer takes the new line's tag: {ok}");
    assert_eq!(second.crypto[0].key, theirs, "Starling's key stays for the dialog");
    phone.send(&request("ACK", 2, &to_tag));
    echoed.clear();
    let mut ours_k2 = Srtp::new(&k2, &theirs).unwrap();
    exchange(&mut ours_k2, 0x22, 60, &mut echoed);
    exchange(&mut ours_k1, 0x33, 40, &mut echoed);
    assert!(
        echoed.iter().filter(|m| **m == 0x22).count() >= 20,
        "K2's packets come back: {echoed:?}\n{}",
        server.log_tail()
    );
    assert!(!echoed.contains(&0x33), "packets still under K1 are dropped: {echoed:?}");
    assert_eq!(clear, 0, "nothing came back in clear");
    phone.send(&request("BYE", 3, &to_tag));
}

/// Re-keying reaches the native relay: a TLS phone of the test's own (SDES, key K1) calls the
/// plain-RTP baresip c through `Dial(SIP/c)`; the bridge is relayed natively, and c's packets
/// reach the phone sealed with Starling's key. A re-INVITE brings K2: packets under K2 go on
/// through the relay (none dropped), packets still under K1 are dropped and counted (`SRTP
/// dropped`); the relay stays on, and c's packets still open with Starling's unchanged key in
/// the same context (its stream continuous across the re-INVITE).
#[test]
fn a_reinvite_rekeys_a_natively_relayed_srtp_leg() {
    use starling_media::sdp::RemoteMedia;
    use starling_media::srtp::{MasterKey, Srtp, Suite};

    let pki = Pki::new("srtppki6");
    let tls_port = free_udp_port();
    let range = own_rtp_range(3);
    let (server, udp_port) = srtp_pbx("srtprekeyrelay", &pki, tls_port, &range);
    let _phone_c = plain_phone_c("srtprkc", &server, udp_port);

    let rtp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    rtp.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
    let rtp_port = rtp.local_addr().unwrap().port();
    let suite = Suite::AesCm128HmacSha1_80;
    let k1 = MasterKey::generate(suite, |b| b.iter_mut().enumerate().for_each(|(i, x)| *x = i as u8 ^ 0x3c));
    let k2 = MasterKey::generate(suite, |b| b.iter_mut().enumerate().for_each(|(i, x)| *x = i as u8 ^ 0xc3));
    let (exten, call_id) = ("800", "rekey-relay-1");
    let mut phone = TlsPhone::connect(&pki, tls_port);
    phone.send(&sdes_invite(tls_port, exten, call_id, 1, "", &sdes_sdp(rtp_port, &k1, 1, 1)));
    let ok = phone.ok_to(1).unwrap_or_else(|| panic!("{}\n{}", phone.read.lock().unwrap(), server.log_tail()));
    let to_tag = to_tag_of(&ok);
    let answer = RemoteMedia::parse(&ok[ok.find("v=0").expect("an SDP")..]).unwrap();
    let theirs = answer.crypto[0].key.clone();
    phone.send(&sdes_request(tls_port, exten, call_id, "ACK", 1, &to_tag));

    // Sends `count` packets 20 ms apart under `srtp`; counts what comes back and opens
    // with Starling's key (`back`: one context for the whole call, as a phone keeps it).
    let mut back = Srtp::new(&k1, &theirs).unwrap();
    let mut seq = 0u16;
    let mut talk = |srtp: &mut Srtp, count: usize| {
        let (mut opened, mut buffer) = (0, [0u8; 1500]);
        for _ in 0..count {
            seq = seq.wrapping_add(1);
            let mut packet = vec![0x80, 0x00];
            packet.extend_from_slice(&seq.to_be_bytes());
            packet.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
            packet.extend_from_slice(&0x0bad_cafe_u32.to_be_bytes());
            packet.extend_from_slice(&[0x55; 160]);
            srtp.protect_rtp(&mut packet).unwrap();
            rtp.send_to(&packet, answer.address).unwrap();
            let until = std::time::Instant::now() + Duration::from_millis(20);
            while std::time::Instant::now() < until {
                let Ok((len, _)) = rtp.recv_from(&mut buffer) else { continue };
                if len >= 2 && (200..=204).contains(&buffer[1]) {
                    continue; // SRTCP
                }
                opened += usize::from(back.unprotect_rtp(&mut buffer[..len]).is_ok());
            }
        }
        opened
    };
    let dropped =
        || channel_value(&server, call_id, "SRTP dropped:").and_then(|v| v.parse::<u64>().ok()).unwrap_or(u64::MAX);
    let mut k1_srtp = Srtp::new(&k1, &theirs).unwrap();
    let opened = talk(&mut k1_srtp, 75);
    assert!(opened >= 40, "c's packets reach us sealed with Starling's key: {opened}\n{}", server.log_tail());
    assert_relayed_natively(&server);
    let before = dropped();

    phone.send(&sdes_invite(tls_port, exten, call_id, 2, &to_tag, &sdes_sdp(rtp_port, &k2, 7, 2)));
    let ok = phone.ok_to(2).unwrap_or_else(|| panic!("{}\n{}", phone.read.lock().unwrap(), server.log_tail()));
    let second = RemoteMedia::parse(&ok[ok.find("v=0").expect("an SDP")..]).unwrap();
    assert_eq!(second.crypto[0].key, theirs, "Starling's key stays for the dialog");
    phone.send(&sdes_request(tls_port, exten, call_id, "ACK", 2, &to_tag));
    let mut k2_srtp = Srtp::new(&k2, &theirs).unwrap();
    let opened = talk(&mut k2_srtp, 50);
    assert_eq!(dropped(), before, "the relay opens K2's packets: none dropped\n{}", server.log_tail());
    assert!(opened >= 30, "c's packets still open (the stream continuous): {opened}");
    talk(&mut k1_srtp, 30);
    assert_eq!(dropped(), before + 30, "K1's packets after the re-key: dropped and counted");
    assert_eq!(channel_value(&server, call_id, "Native relay:").as_deref(), Some("Yes"), "still relayed natively");
    phone.send(&sdes_request(tls_port, exten, call_id, "BYE", 3, &to_tag));
}
