//! G.711 µ-law and A-law (ITU-T G.711), both directions.
//!
//! Decoding is a 256-entry table per law; encoding is a table too, indexed by the sample's
//! top 14 (µ-law) or 13 (A-law) bits, which is all G.711 looks at, so a 20 ms frame is 320
//! table lookups. The tables are computed at compile time by the reference algorithm
//! ([`linear_to_ulaw`], [`linear_to_alaw`]), which the tests check against ITU's for every sample. The tables and the
//! encoders are those of the ITU reference (as in Sun's public-domain g711.c, which Asterisk's
//! ulaw.c/alaw.c also reproduce): µ-law has a bias of 0x84 and clips at 32635, A-law works on
//! 13 bits with the even bits inverted (0x55).

/// µ-law code → 16-bit linear sample.
pub static ULAW_TO_LINEAR: [i16; 256] = build_ulaw_table();
/// A-law code → 16-bit linear sample.
pub static ALAW_TO_LINEAR: [i16; 256] = build_alaw_table();

const fn ulaw_decode(code: u8) -> i16 {
    let u = !code;
    let mut t = (((u & 0x0f) as i32) << 3) + 0x84;
    t <<= (u & 0x70) >> 4;
    (if u & 0x80 != 0 { 0x84 - t } else { t - 0x84 }) as i16
}

const fn alaw_decode(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = ((a & 0x0f) as i32) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

const fn build_ulaw_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = ulaw_decode(i as u8);
        i += 1;
    }
    table
}

const fn build_alaw_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = alaw_decode(i as u8);
        i += 1;
    }
    table
}

/// µ-law code of each 14-bit sample (`sample >> 2`, offset by 8192).
static ULAW_ENCODE: [u8; 16384] = {
    let mut table = [0u8; 16384];
    let mut i = 0;
    while i < 16384 {
        table[i] = linear_to_ulaw(((i as i32 - 8192) << 2) as i16);
        i += 1;
    }
    table
};

/// A-law code of each 13-bit sample (`sample >> 3`, offset by 4096).
static ALAW_ENCODE: [u8; 8192] = {
    let mut table = [0u8; 8192];
    let mut i = 0;
    while i < 8192 {
        table[i] = linear_to_alaw(((i as i32 - 4096) << 3) as i16);
        i += 1;
    }
    table
};

/// One linear sample → µ-law (computed; the frame encoders use the table built from this).
#[inline]
pub const fn linear_to_ulaw(sample: i16) -> u8 {
    // On 14 bits, as G.711 defines it: bias 33, clip at 8159.
    let v = (sample as i32) >> 2;
    let (magnitude, mask) = if v < 0 { (-v, 0x7fu8) } else { (v, 0xffu8) };
    // Clipping at 8158 instead of 8159 gives the same code (segment 7, mantissa 15) and keeps
    // the segment below 8.
    let clipped = if magnitude < 8158 { magnitude } else { 8158 };
    let biased = clipped + 33; // 33 ..= 8191
                               // Segment: 0 below 64, then one per doubling.
    let lz = ((biased as u32) | 0x3f).leading_zeros();
    let segment = (26 - lz) as i32;
    let mantissa = (biased >> (segment + 1)) & 0x0f;
    (((segment << 4) | mantissa) as u8) ^ mask
}

/// One linear sample → A-law (computed; the frame encoders use the table built from this).
#[inline]
pub const fn linear_to_alaw(sample: i16) -> u8 {
    let s = (sample as i32) >> 3; // 13 bits
    let (magnitude, mask) = if s >= 0 { (s, 0xd5u8) } else { (-s - 1, 0x55u8) };
    // Segment: 0 for magnitudes below 32, then one per doubling (at most 7: |s| < 4096).
    let segment = (27 - ((magnitude as u32) | 0x1f).leading_zeros()) as i32;
    let mantissa = if segment < 2 { (magnitude >> 1) & 0x0f } else { (magnitude >> segment) & 0x0f };
    (((segment << 4) | mantissa) as u8) ^ mask
}

/// Encodes a frame of linear samples into µ-law bytes (`out.len() == samples.len()`).
pub fn encode_ulaw(samples: &[i16], out: &mut [u8]) {
    for (o, s) in out.iter_mut().zip(samples) {
        *o = ULAW_ENCODE[((i32::from(*s) >> 2) + 8192) as usize];
    }
}

/// Decodes µ-law bytes into linear samples.
pub fn decode_ulaw(codes: &[u8], out: &mut [i16]) {
    for (o, c) in out.iter_mut().zip(codes) {
        *o = ULAW_TO_LINEAR[usize::from(*c)];
    }
}

/// Encodes a frame of linear samples into A-law bytes.
pub fn encode_alaw(samples: &[i16], out: &mut [u8]) {
    for (o, s) in out.iter_mut().zip(samples) {
        *o = ALAW_ENCODE[((i32::from(*s) >> 3) + 4096) as usize];
    }
}

/// Decodes A-law bytes into linear samples.
pub fn decode_alaw(codes: &[u8], out: &mut [i16]) {
    for (o, c) in out.iter_mut().zip(codes) {
        *o = ALAW_TO_LINEAR[usize::from(*c)];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference encoders, written as ITU's / Sun's g711.c writes them (segment search).
    fn reference_ulaw(pcm: i16) -> u8 {
        const SEG_UEND: [i32; 8] = [0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff, 0x1fff];
        let mut v = i32::from(pcm) >> 2;
        let mask = if v < 0 {
            v = -v;
            0x7f
        } else {
            0xff
        };
        v = v.min(8159) + (0x84 >> 2);
        match SEG_UEND.iter().position(|end| v <= *end) {
            None => 0x7f ^ mask,
            Some(seg) => ((((seg as i32) << 4) | ((v >> (seg + 1)) & 0xf)) as u8) ^ mask,
        }
    }

    fn reference_alaw(pcm: i16) -> u8 {
        const SEG_AEND: [i32; 8] = [0x1f, 0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff];
        let mut v = i32::from(pcm) >> 3;
        let mask = if v >= 0 {
            0xd5
        } else {
            v = -v - 1;
            0x55
        };
        match SEG_AEND.iter().position(|end| v <= *end) {
            None => 0x7f ^ mask,
            Some(seg) => {
                let mantissa = if seg < 2 { (v >> 1) & 0xf } else { (v >> seg) & 0xf };
                ((((seg as i32) << 4) | mantissa) as u8) ^ mask
            }
        }
    }

    #[test]
    fn encoders_match_the_reference_for_every_sample() {
        let all: Vec<i16> = (i16::MIN..=i16::MAX).collect();
        let (mut ulaw, mut alaw) = (vec![0u8; all.len()], vec![0u8; all.len()]);
        encode_ulaw(&all, &mut ulaw);
        encode_alaw(&all, &mut alaw);
        for (i, pcm) in all.iter().enumerate() {
            assert_eq!(linear_to_ulaw(*pcm), reference_ulaw(*pcm), "µ-law {pcm}");
            assert_eq!(linear_to_alaw(*pcm), reference_alaw(*pcm), "A-law {pcm}");
            assert_eq!((ulaw[i], alaw[i]), (reference_ulaw(*pcm), reference_alaw(*pcm)), "tables at {pcm}");
        }
    }

    #[test]
    fn known_g711_values() {
        // µ-law: 0xff and 0x7f are the two zeros, 0x00/0x80 the extremes (±32124).
        assert_eq!((ULAW_TO_LINEAR[0xff], ULAW_TO_LINEAR[0x7f]), (0, 0));
        assert_eq!((ULAW_TO_LINEAR[0x00], ULAW_TO_LINEAR[0x80]), (-32124, 32124));
        assert_eq!(linear_to_ulaw(0), 0xff);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        // A-law: 0xd5/0x55 are ±8, 0xaa/0x2a the extremes (±32256).
        assert_eq!((ALAW_TO_LINEAR[0xd5], ALAW_TO_LINEAR[0x55]), (8, -8));
        assert_eq!((ALAW_TO_LINEAR[0xaa], ALAW_TO_LINEAR[0x2a]), (32256, -32256));
        assert_eq!(linear_to_alaw(0), 0xd5);
        assert_eq!(linear_to_alaw(i16::MAX), 0xaa);
    }

    #[test]
    fn every_code_round_trips() {
        for code in 0..=255u8 {
            assert_eq!(linear_to_alaw(ALAW_TO_LINEAR[usize::from(code)]), code, "A-law {code:#x}");
            // µ-law has two zeros (0x7f and 0xff); every other code comes back as itself.
            if code != 0x7f {
                assert_eq!(linear_to_ulaw(ULAW_TO_LINEAR[usize::from(code)]), code, "µ-law {code:#x}");
            }
        }
    }

    #[test]
    fn quantisation_error_is_bounded() {
        for pcm in (i16::MIN..=i16::MAX).step_by(7) {
            let u = i32::from(ULAW_TO_LINEAR[usize::from(linear_to_ulaw(pcm))]);
            let a = i32::from(ALAW_TO_LINEAR[usize::from(linear_to_alaw(pcm))]);
            let p = i32::from(pcm);
            // Each segment doubles the step; the error stays within half a step (≤ 1/32 of the value + a bias).
            assert!((u - p).abs() <= p.abs() / 16 + 132, "µ-law {pcm} -> {u}");
            assert!((a - p).abs() <= p.abs() / 16 + 16, "A-law {pcm} -> {a}");
        }
    }
}
