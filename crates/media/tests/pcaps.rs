//! Real packets: the pcaps shipped with SIPp (Debian's `sip-tester`, installed by `.ci/run`)
//! decode to the DTMF digits their names promise and to non-silent A-law audio.

use std::path::Path;

use starling_media::dtmf::{DtmfEvent, EventReceiver};
use starling_media::g711;

/// The UDP payloads of an Ethernet/IPv4 pcap, in order.
fn udp_payloads(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e} (install Debian's sip-tester)", path.display()));
    assert_eq!(&data[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "a little-endian pcap");
    assert_eq!(u32::from_le_bytes(data[20..24].try_into().unwrap()), 1, "Ethernet frames");
    let mut at = 24;
    let mut out = Vec::new();
    while at + 16 <= data.len() {
        let len = u32::from_le_bytes(data[at + 8..at + 12].try_into().unwrap()) as usize;
        let frame = &data[at + 16..at + 16 + len];
        at += 16 + len;
        if frame.len() < 14 || frame[12..14] != [0x08, 0x00] {
            continue;
        }
        let ip = &frame[14..];
        let header = usize::from(ip[0] & 0x0f) * 4;
        if ip[9] != 17 {
            continue;
        }
        let udp = &ip[header..];
        let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
        out.push(udp[8..udp_len.min(udp.len())].to_vec());
    }
    out
}

fn sipp(name: &str) -> std::path::PathBuf {
    Path::new("/usr/share/sip-tester").join(name)
}

#[test]
fn sipp_rfc2833_pcaps_give_their_digits() {
    for (file, digit) in [
        ("dtmf_2833_0.pcap", '0'),
        ("dtmf_2833_1.pcap", '1'),
        ("dtmf_2833_5.pcap", '5'),
        ("dtmf_2833_9.pcap", '9'),
        ("dtmf_2833_pound.pcap", '#'),
        ("dtmf_2833_star.pcap", '*'),
    ] {
        let mut receiver = EventReceiver::default();
        let mut events = Vec::new();
        for packet in udp_payloads(&sipp(file)) {
            let rtp = rtp_rs::RtpReader::new(&packet).unwrap();
            receiver.handle(rtp.timestamp(), rtp.payload(), &mut events);
        }
        assert_eq!(events.first(), Some(&DtmfEvent::Begin(digit)), "{file}: {events:?}");
        assert!(
            matches!(events.last(), Some(DtmfEvent::End { digit: d, duration }) if *d == digit && *duration > 0),
            "{file}: {events:?}"
        );
        assert_eq!(events.len(), 2, "{file}: one press: {events:?}");
    }
}

#[test]
fn sipp_g711a_pcap_decodes_to_audio() {
    let packets = udp_payloads(&sipp("g711a.pcap"));
    assert!(packets.len() > 100, "{} packets", packets.len());
    let mut samples = Vec::new();
    let mut last_seq = None;
    for packet in &packets {
        let rtp = rtp_rs::RtpReader::new(packet).unwrap();
        assert_eq!(rtp.payload_type(), 8, "PCMA");
        let seq = u16::from(rtp.sequence_number());
        if let Some(last) = last_seq {
            assert_eq!(seq, u16::wrapping_add(last, 1));
        }
        last_seq = Some(seq);
        let mut frame = vec![0i16; rtp.payload().len()];
        g711::decode_alaw(rtp.payload(), &mut frame);
        samples.extend(frame);
    }
    let rms = (samples.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / samples.len() as f64).sqrt();
    assert!(rms > 100.0, "the recording is not silence (rms {rms:.0})");
    // Re-encoding the decoded audio gives the same bytes: A-law round-trips exactly.
    let first = rtp_rs::RtpReader::new(&packets[0]).unwrap();
    let mut again = vec![0u8; first.payload().len()];
    g711::encode_alaw(&samples[..again.len()], &mut again);
    assert_eq!(again, first.payload());
}
