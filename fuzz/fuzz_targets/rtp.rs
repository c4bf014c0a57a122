//! Any bytes as the datagrams of a call's media port: RTP, RTCP (RFC 3550) and RFC 4733
//! telephone-events, to a session, a relay leg, a DTMF receiver and a jitter buffer.
//!
//! The input is records: one byte of length (0-255), one byte of flags (bits 0-3: the
//! milliseconds since the previous datagram ×20, bit 4: from another address), the datagram.
//!
//! Must hold: nothing panics; an RTCP packet read is written back (as RTCP writes it) and
//! reads back the same; a telephone-event payload reads back the same; a relayed packet is
//! still RTP with the same length, marker and payload; every RTCP report the session sends
//! reads back; SRTP/SRTCP unprotect never panics on a datagram, and RTP protected by one
//! leg is unprotected by the other to the same bytes.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use rtp_rs::RtpReader;
use starling_media::dtmf::{EventPayload, EventReceiver};
use starling_media::jitter::{JitterBuffer, Mode};
use starling_media::relay::RelayLeg;
use starling_media::rtcp;
use starling_media::session::{RtpSession, SessionConfig};
use starling_media::srtp::{MasterKey, Srtp, Suite};

fuzz_target!(|data: &[u8]| {
    let start = Instant::now();
    let config = SessionConfig { comedia: true, timeout: Some(Duration::from_secs(30)), ..SessionConfig::default() };
    let mut session = RtpSession::new(config, start, UNIX_EPOCH + Duration::from_secs(1_700_000_000), 42);
    let peer: SocketAddr = "192.0.2.7:4000".parse().unwrap();
    let stranger: SocketAddr = "198.51.100.9:4000".parse().unwrap();
    session.set_remote(peer, false);
    let mut relay = RelayLeg::new();
    relay.map_payload_type(8, Some(0));
    relay.map_payload_type(13, None);
    let mut dtmf = EventReceiver::default();
    let mut jitter = JitterBuffer::new(Mode::Adaptive { min: 160, max: 1600 }, 8000, 160);
    let mut events = Vec::new();
    let mut now = start;
    let (key_a, key_b) = (MasterKey::generate(Suite::AesCm128HmacSha1_32, |b| b.fill(1)), MasterKey::generate(Suite::AesCm128HmacSha1_32, |b| b.fill(2)));
    let (mut srtp_a, mut srtp_b) = (Srtp::new(&key_a, &key_b).unwrap(), Srtp::new(&key_b, &key_a).unwrap());

    let mut rest = data;
    while let [len, flags, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (packet, next) = tail.split_at(len);
        rest = next;
        now += Duration::from_millis(u64::from(flags & 0x0f) * 20);
        let from = if flags & 0x10 != 0 { stranger } else { peer };

        if rtcp::is_rtcp(packet) {
            let _ = session.handle_rtcp(now, packet);
        } else if let Ok(received) = session.handle_rtp(now, from, packet) {
            let payload = &packet[received.payload.0..received.payload.1];
            if received.payload_type == 101 {
                dtmf.handle(received.timestamp, payload, &mut events);
            } else {
                jitter.put(now, received.timestamp, payload);
                let _ = jitter.get();
            }
        }
        rtcp_round_trip(packet);
        let _ = srtp_a.unprotect(&mut packet.to_vec());
        let mut protected = packet.to_vec();
        if !rtcp::is_rtcp(packet) && RtpReader::new(packet).is_ok() && srtp_b.protect_rtp(&mut protected).is_ok() {
            let len = srtp_a.unprotect_rtp(&mut protected);
            // A sequence number far behind one seen is refused (the replay window), else opened.
            if let Ok(len) = len {
                assert_eq!(&protected[..len], packet);
            }
        }
        if let Some(event) = EventPayload::parse(packet) {
            assert_eq!(EventPayload::parse(&event.to_bytes()), Some(event));
        }
        let mut relayed = packet.to_vec();
        if relay.relay(&mut relayed).is_ok() {
            let (before, after) = (RtpReader::new(packet).unwrap(), RtpReader::new(&relayed).expect("relayed is RTP"));
            assert_eq!(relayed.len(), packet.len());
            assert_eq!((before.mark(), before.payload()), (after.mark(), after.payload()));
        }

        session.handle_timeout(now);
        while let Some(transmit) = session.poll_transmit() {
            if transmit.rtcp {
                rtcp::parse(&transmit.data).expect("our RTCP reads back");
            }
        }
        while session.poll_event().is_some() {}
    }
    let _ = (session.stats(), dtmf.pending(), relay.state());
});

/// A compound RTCP packet read, written back with what was read, reads back the same.
fn rtcp_round_trip(packet: &[u8]) {
    let Ok(read) = rtcp::parse(packet) else { return };
    let (Some(ssrc), cname) = (read.ssrc, read.cname.clone().unwrap_or_default()) else { return };
    if read.reports.len() > 31 || cname.len() > 255 {
        return;
    }
    let mut written = Vec::new();
    rtcp::build(ssrc, read.sender, &read.reports, &cname, &mut written);
    let again = rtcp::parse(&written).expect("what RTCP writes reads back");
    assert_eq!((again.ssrc, again.sender, &again.reports), (Some(ssrc), read.sender, &read.reports));
    assert_eq!(again.cname.unwrap_or_default(), cname);
}
