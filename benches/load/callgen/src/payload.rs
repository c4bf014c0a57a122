//! The RTP packets: a 12-byte header of our own (seq, timestamp, SSRC) and 160 bytes of PCMU
//! whose first bytes carry the call index and the packet index.
//!
//! Starling's relay rewrites seq, timestamp and SSRC, so the indices travel in the payload.
//! Each byte of them survives a µ-law decode/encode round trip (a transcoding or mixing path
//! would do one): the indices are written as nibbles in bytes 0x80..=0x8F, behind a two-byte
//! magic, and the rest of the payload is 0xFF (µ-law silence). µ-law's only byte that does not
//! come back from decode/encode is 0x7F (negative zero, which encodes as 0xFF); none is used.

pub const RTP_HEADER: usize = 12;
pub const PAYLOAD: usize = 160;
pub const PACKET: usize = RTP_HEADER + PAYLOAD;
/// Samples a packet (20 ms at 8 kHz).
pub const SAMPLES: u32 = 160;

const MAGIC: [u8; 2] = [0xC3, 0x3C];
/// Magic + 8 nibbles of call index + 8 nibbles of packet index.
const ID_LEN: usize = MAGIC.len() + 16;

/// Writes `call` and `packet` into the start of a payload.
pub fn encode_ids(call: u32, packet: u32, out: &mut [u8]) {
    out[..2].copy_from_slice(&MAGIC);
    for (i, value) in [call, packet].into_iter().enumerate() {
        for n in 0..8 {
            out[2 + i * 8 + n] = 0x80 | ((value >> (28 - 4 * n)) & 0xF) as u8;
        }
    }
}

/// The call and packet index of a payload written by [`encode_ids`], `None` for anything else.
pub fn decode_ids(payload: &[u8]) -> Option<(u32, u32)> {
    if payload.len() < ID_LEN || payload[..2] != MAGIC {
        return None;
    }
    let mut values = [0u32; 2];
    for (i, value) in values.iter_mut().enumerate() {
        for &b in &payload[2 + i * 8..2 + i * 8 + 8] {
            if b & 0xF0 != 0x80 {
                return None;
            }
            *value = (*value << 4) | u32::from(b & 0x0F);
        }
    }
    Some((values[0], values[1]))
}

/// A packet's bytes with the payload's filler in place; [`write_packet`] fills in the rest.
pub fn template() -> [u8; PACKET] {
    let mut p = [0xFFu8; PACKET];
    p[..RTP_HEADER].fill(0);
    p
}

/// Header and indices of one packet (the filler is left as [`template`] wrote it).
pub fn write_packet(buf: &mut [u8; PACKET], seq: u16, ts: u32, ssrc: u32, marker: bool, call: u32, packet: u32) {
    buf[0] = 0x80; // V=2, no padding, no extension, no CSRC
    buf[1] = if marker { 0x80 } else { 0x00 }; // PT 0 (PCMU)
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    buf[4..8].copy_from_slice(&ts.to_be_bytes());
    buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
    encode_ids(call, packet, &mut buf[RTP_HEADER..]);
}

/// The indices of a received RTP packet (whatever its header says, CSRCs and an extension
/// skipped), `None` when it is not RTP or not ours.
pub fn parse_packet(data: &[u8]) -> Option<(u32, u32)> {
    if data.len() < RTP_HEADER || data[0] >> 6 != 2 {
        return None;
    }
    let mut start = RTP_HEADER + 4 * usize::from(data[0] & 0x0F);
    if data[0] & 0x10 != 0 {
        let ext = data.get(start + 2..start + 4)?;
        start += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    decode_ids(data.get(start..)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        let mut p = template();
        for (call, packet) in [(0, 0), (1, 2), (1799, 999), (u32::MAX, 0x7F7F_7F7F), (0x1234_5678, 0x9ABC_DEF0)] {
            write_packet(&mut p, 7, 160, 42, false, call, packet);
            assert_eq!(parse_packet(&p), Some((call, packet)));
        }
    }

    #[test]
    fn no_negative_zero_in_the_payload() {
        let mut p = template();
        write_packet(&mut p, 0xFFFF, u32::MAX, u32::MAX, true, u32::MAX, u32::MAX);
        assert!(p[RTP_HEADER..].iter().all(|&b| b != 0x7F));
    }

    #[test]
    fn survives_a_ulaw_decode_encode_round_trip() {
        let mut p = template();
        write_packet(&mut p, 1, 2, 3, false, 0x0123_4567, 0x89AB_CDEF);
        let mut pcm = [0i16; PAYLOAD];
        starling_media::g711::decode_ulaw(&p[RTP_HEADER..], &mut pcm);
        let mut back = p;
        starling_media::g711::encode_ulaw(&pcm, &mut back[RTP_HEADER..]);
        assert_eq!(back, p);
        assert_eq!(parse_packet(&back), Some((0x0123_4567, 0x89AB_CDEF)));
    }

    #[test]
    fn skips_csrcs_and_extension() {
        let mut p = template();
        write_packet(&mut p, 1, 2, 3, false, 5, 6);
        // One CSRC and a one-word extension in front of the same payload.
        let mut q = vec![0x91, 0x00, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 9, 9, 9, 9, 0xBE, 0xDE, 0, 1, 1, 2, 3, 4];
        q.extend_from_slice(&p[RTP_HEADER..]);
        assert_eq!(parse_packet(&q), Some((5, 6)));
    }

    #[test]
    fn refuses_what_is_not_ours() {
        assert_eq!(parse_packet(&[0x80; 11]), None);
        let mut p = template();
        write_packet(&mut p, 1, 2, 3, false, 5, 6);
        p[RTP_HEADER + 5] = 0x7F;
        assert_eq!(parse_packet(&p), None);
        let silence = [0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1].iter().copied().chain([0xFF; 160]).collect::<Vec<u8>>();
        assert_eq!(parse_packet(&silence), None);
        p[0] = 0x40; // version 1
        assert_eq!(parse_packet(&p), None);
    }
}
