//! RTCP (RFC 3550 §6): sender and receiver reports, SDES CNAME, BYE — built and read.
//!
//! Only what a PBX leg needs: a compound packet of SR or RR plus SDES CNAME every few seconds,
//! and from the peer's reports the loss it sees and the round-trip time (LSR/DLSR, §6.4.1).

/// One report block (§6.4.1): what the reporter sees of one source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportBlock {
    pub ssrc: u32,
    /// Fraction lost since the last report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed).
    pub cumulative_lost: i32,
    pub highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// The middle 32 bits of the NTP time of the last SR received from that source.
    pub last_sr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub delay_since_last_sr: u32,
}

/// A sender report's sender part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SenderInfo {
    pub ntp: u64,
    pub rtp_timestamp: u32,
    pub packets: u32,
    pub octets: u32,
}

/// What was read from a compound RTCP packet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RtcpPacket {
    pub ssrc: Option<u32>,
    pub sender: Option<SenderInfo>,
    pub reports: Vec<ReportBlock>,
    pub cname: Option<String>,
    pub bye: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtcpError {
    #[error("RTCP packet too short")]
    Truncated,
    #[error("not RTCP version 2")]
    Version,
}

const SR: u8 = 200;
const RR: u8 = 201;
const SDES: u8 = 202;
const BYE: u8 = 203;

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Whether a datagram is RTCP rather than RTP (RFC 5761 §4: payload types 64–95 after the
/// marker bit, i.e. packet types 192–223), for RTP and RTCP on one port.
pub fn is_rtcp(packet: &[u8]) -> bool {
    packet.len() >= 2 && (192..=223).contains(&packet[1])
}

/// Reads a compound RTCP packet. Unknown packet types are skipped.
pub fn parse(data: &[u8]) -> Result<RtcpPacket, RtcpError> {
    let mut out = RtcpPacket::default();
    let mut at = 0;
    while at + 4 <= data.len() {
        let first = data[at];
        if first >> 6 != 2 {
            return Err(RtcpError::Version);
        }
        let count = usize::from(first & 0x1f);
        let kind = data[at + 1];
        let words = usize::from(u16::from_be_bytes([data[at + 2], data[at + 3]]));
        let end = at + 4 + words * 4;
        let body = data.get(at + 4..end).ok_or(RtcpError::Truncated)?;
        match kind {
            SR | RR => {
                out.ssrc = Some(be32(body, 0).ok_or(RtcpError::Truncated)?);
                let mut blocks_at = 4;
                if kind == SR {
                    let ntp_hi = u64::from(be32(body, 4).ok_or(RtcpError::Truncated)?);
                    let ntp_lo = u64::from(be32(body, 8).ok_or(RtcpError::Truncated)?);
                    out.sender = Some(SenderInfo {
                        ntp: (ntp_hi << 32) | ntp_lo,
                        rtp_timestamp: be32(body, 12).ok_or(RtcpError::Truncated)?,
                        packets: be32(body, 16).ok_or(RtcpError::Truncated)?,
                        octets: be32(body, 20).ok_or(RtcpError::Truncated)?,
                    });
                    blocks_at = 24;
                }
                for i in 0..count {
                    let b = blocks_at + i * 24;
                    let lost_word = be32(body, b + 4).ok_or(RtcpError::Truncated)?;
                    // 24-bit two's complement.
                    let cumulative = ((lost_word & 0x00ff_ffff) << 8) as i32 >> 8;
                    out.reports.push(ReportBlock {
                        ssrc: be32(body, b).ok_or(RtcpError::Truncated)?,
                        fraction_lost: (lost_word >> 24) as u8,
                        cumulative_lost: cumulative,
                        highest_seq: be32(body, b + 8).ok_or(RtcpError::Truncated)?,
                        jitter: be32(body, b + 12).ok_or(RtcpError::Truncated)?,
                        last_sr: be32(body, b + 16).ok_or(RtcpError::Truncated)?,
                        delay_since_last_sr: be32(body, b + 20).ok_or(RtcpError::Truncated)?,
                    });
                }
            }
            SDES => {
                // First chunk's CNAME item (type 1).
                let mut i = 4;
                while i + 2 <= body.len() && body[i] != 0 {
                    let (item, len) = (body[i], usize::from(body[i + 1]));
                    let value = body.get(i + 2..i + 2 + len).ok_or(RtcpError::Truncated)?;
                    if item == 1 {
                        out.cname = Some(String::from_utf8_lossy(value).into_owned());
                        break;
                    }
                    i += 2 + len;
                }
            }
            BYE => out.bye = true,
            _ => {}
        }
        at = end;
    }
    Ok(out)
}

/// Builds a compound packet: an SR (with `sender`) or an RR, then SDES with `cname`.
pub fn build(ssrc: u32, sender: Option<SenderInfo>, reports: &[ReportBlock], cname: &str, out: &mut Vec<u8>) {
    let reports = &reports[..reports.len().min(31)];
    let start = out.len();
    let kind = if sender.is_some() { SR } else { RR };
    out.extend_from_slice(&[0x80 | reports.len() as u8, kind, 0, 0]);
    out.extend_from_slice(&ssrc.to_be_bytes());
    if let Some(s) = sender {
        out.extend_from_slice(&s.ntp.to_be_bytes());
        out.extend_from_slice(&s.rtp_timestamp.to_be_bytes());
        out.extend_from_slice(&s.packets.to_be_bytes());
        out.extend_from_slice(&s.octets.to_be_bytes());
    }
    for r in reports {
        out.extend_from_slice(&r.ssrc.to_be_bytes());
        let lost =
            (u32::from(r.fraction_lost) << 24) | (r.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff) as u32 & 0x00ff_ffff);
        out.extend_from_slice(&lost.to_be_bytes());
        out.extend_from_slice(&r.highest_seq.to_be_bytes());
        out.extend_from_slice(&r.jitter.to_be_bytes());
        out.extend_from_slice(&r.last_sr.to_be_bytes());
        out.extend_from_slice(&r.delay_since_last_sr.to_be_bytes());
    }
    let words = ((out.len() - start) / 4 - 1) as u16;
    out[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
    // SDES: one chunk, CNAME, then a zero item padded to 32 bits.
    let sdes = out.len();
    out.extend_from_slice(&[0x81, SDES, 0, 0]);
    out.extend_from_slice(&ssrc.to_be_bytes());
    let cname = &cname.as_bytes()[..cname.len().min(255)];
    out.push(1);
    out.push(cname.len() as u8);
    out.extend_from_slice(cname);
    out.push(0);
    while !(out.len() - sdes).is_multiple_of(4) {
        out.push(0);
    }
    let words = ((out.len() - sdes) / 4 - 1) as u16;
    out[sdes + 2..sdes + 4].copy_from_slice(&words.to_be_bytes());
}

/// Appends a BYE for `ssrc`.
pub fn build_bye(ssrc: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(&[0x81, BYE, 0, 1]);
    out.extend_from_slice(&ssrc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sr_with_report_and_cname_reads_back() {
        let report = ReportBlock {
            ssrc: 0xdead_beef,
            fraction_lost: 25,
            cumulative_lost: -3,
            highest_seq: 0x0001_0010,
            jitter: 42,
            last_sr: 0x1234_5678,
            delay_since_last_sr: 65536,
        };
        let sender = SenderInfo { ntp: 0xe000_0000_8000_0000, rtp_timestamp: 160, packets: 50, octets: 8000 };
        let mut out = Vec::new();
        build(0xabcd, Some(sender), &[report], "starling@pbx", &mut out);
        assert!(is_rtcp(&out));
        assert_eq!(out.len() % 4, 0);
        let p = parse(&out).unwrap();
        assert_eq!(p.ssrc, Some(0xabcd));
        assert_eq!(p.sender, Some(sender));
        assert_eq!(p.reports, [report]);
        assert_eq!(p.cname.as_deref(), Some("starling@pbx"));
        let mut bye = Vec::new();
        build_bye(0xabcd, &mut bye);
        assert!(parse(&bye).unwrap().bye);
    }

    #[test]
    fn bad_rtcp_is_an_error_not_a_panic() {
        assert_eq!(parse(&[0x80, 200, 0, 6, 1, 2]), Err(RtcpError::Truncated));
        assert_eq!(parse(&[0x40, 200, 0, 0]), Err(RtcpError::Version));
        assert_eq!(
            parse(&[0x81, 201, 0, 1, 0, 0, 0, 1]),
            Err(RtcpError::Truncated),
            "a report block promised, none there"
        );
        for len in 0..40 {
            let _ = parse(&vec![0x81u8; len]);
        }
    }
}
