//! The native RTP relay: the hot path of every bridged call whose legs share a codec.
//!
//! A packet read from one leg is checked (rtp-rs's zero-copy reader), rewritten in place and
//! sent on the other leg; nothing is decoded and nothing is allocated. While the far end keeps
//! one stream, the packet goes through untouched except for the payload type where the two
//! legs numbered a codec differently. When the incoming stream changes (a re-INVITE moved the
//! far end, or it restarted its SSRC), the relay keeps what the receiving leg sees continuous:
//! the same SSRC, sequence numbers going on by one, timestamps going on by the last step —
//! so the phone on that leg does not hear the change as loss or a new talker.
//!
//! A leg with SRTP on either side ([`RelayCrypto`]) is unprotected with the key of the leg it
//! comes from before it is rewritten, and protected with the key of the leg it goes to after:
//! SRTP to SRTP, SRTP to plain RTP, plain RTP to SRTP. Its SRTCP (on a muxed port) is opened
//! for the leg's own session and goes no further: each leg's session reports for itself.

use rtp_rs::RtpReader;

use crate::srtp::{is_rtcp, SharedSrtp, SrtpError};

/// Why a packet was not relayed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    #[error("not an RTP packet: {0:?}")]
    Malformed(String),
    #[error("payload type {0} has no mapping on the other leg")]
    UnmappedPayloadType(u8),
    /// Not authentic, a replay, not SRTP (counted by the leg's [`crate::srtp::Srtp`]); or it
    /// could not be protected.
    #[error("SRTP: {0}")]
    Srtp(#[from] SrtpError),
}

/// What came in on a relayed leg, once opened by [`RelayCrypto::open`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opened {
    /// An RTP packet, plain, of this length: it goes on.
    Rtp(usize),
    /// An RTCP compound packet (muxed), plain, of this length: for the leg's own session.
    Rtcp(usize),
}

/// The SRTP of one relayed direction: the key of the leg the packets come from (`from`: they
/// are unprotected with it) and of the leg they go to (`to`: protected with it); `None` for a
/// plain RTP leg. The contexts are the calls' own ([`SharedSrtp`]).
#[derive(Clone, Debug, Default)]
pub struct RelayCrypto {
    pub from: Option<SharedSrtp>,
    pub to: Option<SharedSrtp>,
}

fn lock(srtp: &SharedSrtp) -> std::sync::MutexGuard<'_, crate::srtp::Srtp> {
    srtp.lock().unwrap_or_else(|p| p.into_inner())
}

impl RelayCrypto {
    /// Plain RTP on both sides: nothing to do (and the relay in the kernel may take the leg).
    pub fn is_plain(&self) -> bool {
        self.from.is_none() && self.to.is_none()
    }

    /// Opens what arrived from the `from` leg's far end, in place. A plain direction is not
    /// looked at (RTP, as it is).
    pub fn open(&self, packet: &mut [u8]) -> Result<Opened, RelayError> {
        if self.is_plain() {
            return Ok(Opened::Rtp(packet.len()));
        }
        let rtcp = is_rtcp(packet);
        let len = match &self.from {
            Some(srtp) if rtcp => lock(srtp).unprotect_rtcp(packet)?,
            Some(srtp) => lock(srtp).unprotect_rtp(packet)?,
            None => packet.len(),
        };
        Ok(if rtcp { Opened::Rtcp(len) } else { Opened::Rtp(len) })
    }

    /// Seals the (rewritten) RTP packet in `buffer[..len]` for the `to` leg, in place: its
    /// length on the wire.
    pub fn seal(&self, buffer: &mut [u8], len: usize) -> Result<usize, RelayError> {
        match &self.to {
            Some(srtp) => Ok(lock(srtp).protect_rtp_in_place(buffer, len)?),
            None => Ok(len),
        }
    }
}

/// What a relay leg does to the stream it relays (see [`RelayLeg::state`]): the incoming SSRC
/// goes out as `out_ssrc`, sequence numbers and timestamps shifted by the offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayState {
    pub in_ssrc: u32,
    pub out_ssrc: u32,
    pub seq_offset: u16,
    pub ts_offset: u32,
    /// The last packet sent on (sequence number, timestamp).
    pub last_out: Option<(u16, u32)>,
    /// The last timestamp step seen.
    pub last_step: u32,
}

/// One direction of a relay: what the receiving leg has been shown so far.
#[derive(Clone, Debug)]
pub struct RelayLeg {
    /// Incoming payload type → outgoing (`None`: drop the packet).
    pt_map: [Option<u8>; 128],
    /// The SSRC the receiving leg sees; the first stream's own until it changes.
    out_ssrc: Option<u32>,
    /// The incoming stream currently relayed.
    in_ssrc: Option<u32>,
    seq_offset: u16,
    ts_offset: u32,
    last_out: Option<(u16, u32)>,
    /// The last timestamp step seen (samples per packet), for continuity across a change.
    last_step: u32,
    pub packets: u64,
    pub octets: u64,
}

impl Default for RelayLeg {
    fn default() -> Self {
        let mut pt_map = [None; 128];
        for (pt, slot) in pt_map.iter_mut().enumerate() {
            *slot = Some(pt as u8);
        }
        RelayLeg {
            pt_map,
            out_ssrc: None,
            in_ssrc: None,
            seq_offset: 0,
            ts_offset: 0,
            last_out: None,
            last_step: 160,
            packets: 0,
            octets: 0,
        }
    }
}

impl RelayLeg {
    /// A relay that passes every payload type through as it is.
    pub fn new() -> RelayLeg {
        RelayLeg::default()
    }

    /// Maps an incoming payload type to the number the receiving leg negotiated for the same
    /// codec (or `None` to drop it).
    pub fn map_payload_type(&mut self, incoming: u8, outgoing: Option<u8>) {
        if let Some(slot) = self.pt_map.get_mut(usize::from(incoming & 0x7f)) {
            *slot = outgoing;
        }
    }

    /// Makes the relayed packets continue a stream the receiving leg already hears (ours, sent
    /// before the relay began): its SSRC, then `next_seq` and `next_ts` on.
    pub fn continue_stream(&mut self, ssrc: u32, next_seq: u16, next_ts: u32) {
        self.out_ssrc = Some(ssrc);
        self.in_ssrc = None;
        self.last_out = Some((next_seq.wrapping_sub(1), next_ts.wrapping_sub(self.last_step)));
    }

    /// Rewrites `packet` in place for the receiving leg. Allocates nothing.
    pub fn relay(&mut self, packet: &mut [u8]) -> Result<(), RelayError> {
        let (ssrc, seq, ts, pt) = {
            let reader = RtpReader::new(packet).map_err(|e| RelayError::Malformed(format!("{e:?}")))?;
            (reader.ssrc(), u16::from(reader.sequence_number()), reader.timestamp(), reader.payload_type())
        };
        let out_pt = self.pt_map[usize::from(pt)].ok_or(RelayError::UnmappedPayloadType(pt))?;
        if self.in_ssrc != Some(ssrc) {
            self.switch_stream(ssrc, seq, ts);
        }
        let out_seq = seq.wrapping_add(self.seq_offset);
        let out_ts = ts.wrapping_add(self.ts_offset);
        if let Some((last_seq, last_ts)) = self.last_out {
            // Only a packet in order teaches the step (a retransmitted or late one does not).
            if out_seq == last_seq.wrapping_add(1) && out_ts != last_ts {
                self.last_step = out_ts.wrapping_sub(last_ts);
            }
        }
        self.last_out = Some((out_seq, out_ts));
        let out_ssrc = self.out_ssrc.unwrap_or(ssrc);
        if out_pt != pt {
            packet[1] = (packet[1] & 0x80) | out_pt;
        }
        if out_seq != seq {
            packet[2..4].copy_from_slice(&out_seq.to_be_bytes());
        }
        if out_ts != ts {
            packet[4..8].copy_from_slice(&out_ts.to_be_bytes());
        }
        if out_ssrc != ssrc {
            packet[8..12].copy_from_slice(&out_ssrc.to_be_bytes());
        }
        self.packets += 1;
        self.octets += packet.len() as u64;
        Ok(())
    }

    /// Where the relaying stands, for a relay that goes on elsewhere (chan_sip's in the
    /// kernel): `None` until a stream has been relayed.
    pub fn state(&self) -> Option<RelayState> {
        Some(RelayState {
            in_ssrc: self.in_ssrc?,
            out_ssrc: self.out_ssrc?,
            seq_offset: self.seq_offset,
            ts_offset: self.ts_offset,
            last_out: self.last_out,
            last_step: self.last_step,
        })
    }

    /// Where the stream the receiving leg hears would go on after the last packet sent on
    /// (sequence number, timestamp): where its call continues it when the relaying ends.
    pub fn next_out(&self) -> Option<(u16, u32)> {
        let (seq, ts) = self.last_out?;
        Some((seq.wrapping_add(1), ts.wrapping_add(self.last_step)))
    }

    /// The payload type an incoming one goes on as (`None`: it is dropped).
    pub fn outgoing_payload_type(&self, incoming: u8) -> Option<u8> {
        self.pt_map[usize::from(incoming & 0x7f)]
    }

    /// Takes back the relaying of [`RelayLeg::state`]'s stream, done elsewhere since: `packets`
    /// more packets (`octets` in all), the last sent on as `last_out`, the last step seen.
    pub fn relayed_elsewhere(&mut self, packets: u64, octets: u64, last_out: Option<(u16, u32)>, last_step: u32) {
        self.packets += packets;
        self.octets += octets;
        if last_out.is_some() {
            self.last_out = last_out;
        }
        self.last_step = last_step;
    }

    /// A new incoming stream: continue the outgoing one from where it was.
    fn switch_stream(&mut self, ssrc: u32, seq: u16, ts: u32) {
        match self.last_out {
            None => {
                self.out_ssrc = Some(ssrc);
                self.seq_offset = 0;
                self.ts_offset = 0;
            }
            Some((last_seq, last_ts)) => {
                self.seq_offset = last_seq.wrapping_add(1).wrapping_sub(seq);
                self.ts_offset = last_ts.wrapping_add(self.last_step).wrapping_sub(ts);
            }
        }
        self.in_ssrc = Some(ssrc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtp_rs::RtpPacketBuilder;

    fn packet(ssrc: u32, seq: u16, ts: u32, pt: u8) -> Vec<u8> {
        RtpPacketBuilder::new()
            .payload_type(pt)
            .ssrc(ssrc)
            .sequence(seq.into())
            .timestamp(ts)
            .payload(&[0xff; 160])
            .build()
            .unwrap()
    }

    fn fields(p: &[u8]) -> (u32, u16, u32, u8) {
        let r = RtpReader::new(p).unwrap();
        (r.ssrc(), r.sequence_number().into(), r.timestamp(), r.payload_type())
    }

    #[test]
    fn one_stream_passes_through_untouched() {
        let mut leg = RelayLeg::new();
        for i in 0..5u16 {
            let original = packet(0xabcd, 65534u16.wrapping_add(i), 1000 + u32::from(i) * 160, 0);
            let mut p = original.clone();
            leg.relay(&mut p).unwrap();
            assert_eq!(p, original);
        }
        assert_eq!(leg.packets, 5);
    }

    #[test]
    fn a_new_far_end_continues_the_same_stream() {
        let mut leg = RelayLeg::new();
        for i in 0..3u16 {
            leg.relay(&mut packet(0x1111, 100 + i, 8000 + u32::from(i) * 160, 0)).unwrap();
        }
        // The far end changed (re-INVITE): new SSRC, unrelated numbers.
        let mut p = packet(0x2222, 40000, 123_456, 0);
        leg.relay(&mut p).unwrap();
        assert_eq!(fields(&p), (0x1111, 103, 8000 + 3 * 160, 0));
        let mut p = packet(0x2222, 40001, 123_456 + 160, 0);
        leg.relay(&mut p).unwrap();
        assert_eq!(fields(&p), (0x1111, 104, 8000 + 4 * 160, 0));
    }

    /// A relay handed elsewhere and back keeps the stream continuous across a new SSRC.
    #[test]
    fn a_relay_taken_back_from_elsewhere_continues_the_stream() {
        let mut leg = RelayLeg::new();
        assert_eq!(leg.state(), None);
        leg.relay(&mut packet(0x1111, 100, 8000, 0)).unwrap();
        let state = leg.state().unwrap();
        assert_eq!((state.in_ssrc, state.out_ssrc, state.last_out), (0x1111, 0x1111, Some((100, 8000))));
        // Elsewhere: 10 more packets, 160 samples apart.
        leg.relayed_elsewhere(10, 1720, Some((110, 8000 + 1600)), 160);
        assert_eq!(leg.packets, 11);
        let mut p = packet(0x2222, 5, 999, 0);
        leg.relay(&mut p).unwrap();
        assert_eq!(fields(&p), (0x1111, 111, 8000 + 1760, 0));
        assert_eq!(leg.outgoing_payload_type(0), Some(0));
    }

    #[test]
    fn a_relay_can_continue_the_stream_sent_before_it() {
        let mut leg = RelayLeg::new();
        leg.continue_stream(0x5555, 700, 16_000);
        let mut p = packet(0x1111, 3, 480, 0);
        leg.relay(&mut p).unwrap();
        assert_eq!(fields(&p), (0x5555, 700, 16_000, 0));
        let mut p = packet(0x1111, 4, 640, 0);
        leg.relay(&mut p).unwrap();
        assert_eq!(fields(&p), (0x5555, 701, 16_160, 0));
    }

    #[test]
    fn payload_types_are_mapped_and_marker_kept() {
        let mut leg = RelayLeg::new();
        leg.map_payload_type(101, Some(96));
        leg.map_payload_type(18, None);
        let mut p = RtpPacketBuilder::new()
            .payload_type(101)
            .marked(true)
            .ssrc(1)
            .sequence(1.into())
            .timestamp(0)
            .payload(&[1, 0x80, 0, 160])
            .build()
            .unwrap();
        leg.relay(&mut p).unwrap();
        let r = RtpReader::new(&p).unwrap();
        assert_eq!((r.payload_type(), r.mark()), (96, true));
        assert_eq!(leg.relay(&mut packet(1, 2, 160, 18)), Err(RelayError::UnmappedPayloadType(18)));
        assert!(matches!(leg.relay(&mut [0x80, 0, 1]), Err(RelayError::Malformed(_))));
    }

    use crate::srtp::{MasterKey, Srtp, Suite};

    /// One leg with SRTP: the phone's context and ours (shared with the relay), each with its
    /// own key, as SDES has it.
    fn srtp_leg(seed: u8) -> (Srtp, SharedSrtp) {
        let suite = Suite::AesCm128HmacSha1_80;
        let phone = MasterKey::generate(suite, |b| b.fill(seed));
        let ours = MasterKey::generate(suite, |b| b.fill(seed.wrapping_add(100)));
        (Srtp::new(&phone, &ours).unwrap(), Srtp::new(&ours, &phone).unwrap().into_shared())
    }

    /// A relayed direction as the relay thread runs it, without the session: open, rewrite,
    /// seal. The packet as it leaves, or why not.
    fn through(crypto: &RelayCrypto, leg: &mut RelayLeg, wire: &[u8]) -> Result<Vec<u8>, RelayError> {
        let mut buffer = [0u8; 2048];
        buffer[..wire.len()].copy_from_slice(wire);
        let Opened::Rtp(len) = crypto.open(&mut buffer[..wire.len()])? else { panic!("RTP, not RTCP") };
        leg.relay(&mut buffer[..len])?;
        let len = crypto.seal(&mut buffer, len)?;
        Ok(buffer[..len].to_vec())
    }

    /// SRTP from phone A, plain RTP to phone B: B gets the plain packet, rewritten to continue
    /// its stream; a forged or replayed packet from A goes nowhere and is counted.
    #[test]
    fn srtp_to_plain_is_opened_then_rewritten() {
        let (mut phone_a, ours_a) = srtp_leg(1);
        let crypto = RelayCrypto { from: Some(ours_a.clone()), to: None };
        let mut leg = RelayLeg::new();
        leg.continue_stream(0x5555, 700, 16_000);
        for i in 0..3u16 {
            let plain = packet(0x1111, 100 + i, 8000 + u32::from(i) * 160, 0);
            let mut wire = plain.clone();
            phone_a.protect_rtp(&mut wire).unwrap();
            assert_ne!(wire[12..], plain[12..]);
            let out = through(&crypto, &mut leg, &wire).unwrap();
            assert_eq!(fields(&out), (0x5555, 700 + i, 16_000 + u32::from(i) * 160, 0));
            assert_eq!(out[12..], plain[12..], "the payload in clear");
        }
        let mut forged = packet(0x1111, 103, 8480, 0);
        phone_a.protect_rtp(&mut forged).unwrap();
        let replayed = forged.clone();
        forged[20] ^= 1;
        assert!(matches!(through(&crypto, &mut leg, &forged), Err(RelayError::Srtp(_))));
        through(&crypto, &mut leg, &replayed).unwrap();
        assert!(matches!(through(&crypto, &mut leg, &replayed), Err(RelayError::Srtp(_))), "a replay");
        assert!(
            matches!(through(&crypto, &mut leg, &packet(0x1111, 104, 8640, 0)), Err(RelayError::Srtp(_))),
            "plain RTP from an SRTP leg"
        );
        assert_eq!(ours_a.lock().unwrap().failures(), 3);
        assert_eq!(leg.packets, 4);
    }

    /// Plain RTP from phone A, SRTP to phone B: sealed with B's leg's key, B opens it; and
    /// SRTP to SRTP, each leg with its own key.
    #[test]
    fn plain_to_srtp_and_srtp_to_srtp_are_sealed_with_the_receiving_leg_s_key() {
        let (mut phone_b, ours_b) = srtp_leg(2);
        let crypto = RelayCrypto { from: None, to: Some(ours_b.clone()) };
        let mut leg = RelayLeg::new();
        for i in 0..3u16 {
            let plain = packet(0x1111, 100 + i, 8000 + u32::from(i) * 160, 0);
            let mut out = through(&crypto, &mut leg, &plain).unwrap();
            assert_eq!(out.len(), plain.len() + 10, "the 80-bit tag");
            assert_ne!(out[12..172], plain[12..], "encrypted on the wire");
            let len = phone_b.unprotect_rtp(&mut out).unwrap();
            assert_eq!(out[..len], plain[..]);
        }
        let (mut phone_a, ours_a) = srtp_leg(3);
        let crypto = RelayCrypto { from: Some(ours_a), to: Some(ours_b) };
        let mut leg = RelayLeg::new();
        leg.continue_stream(0x5555, 65_534, 16_000);
        for i in 0..4u16 {
            let plain = packet(0x2222, 7 + i, 320 * u32::from(i), 0);
            let mut wire = plain.clone();
            phone_a.protect_rtp(&mut wire).unwrap();
            let mut out = through(&crypto, &mut leg, &wire).unwrap();
            assert!(phone_a.unprotect_rtp(&mut out.clone()).is_err(), "not A's key");
            let len = phone_b.unprotect_rtp(&mut out).expect("B's key opens it, across the wrap");
            assert_eq!(fields(&out[..len]), (0x5555, 65_534u16.wrapping_add(i), 16_000 + 320 * u32::from(i), 0));
            assert_eq!(out[12..len], plain[12..]);
        }
    }

    /// The call's task sends on its own stream with the leg's context, the relay carries the
    /// stream on with the same context (past a sequence wrap: the rollover counter), and the
    /// task takes it back: the phone opens every packet. A re-key by the call (a re-INVITE)
    /// reaches the relay at once.
    #[test]
    fn the_shared_context_keeps_the_stream_continuous_and_takes_a_rekey() {
        let (mut phone_b, ours_b) = srtp_leg(4);
        let mut seq = 65_530u16;
        let task_sends = |seq: u16| {
            let mut p = packet(0x5555, seq, u32::from(seq) * 160, 0);
            ours_b.lock().unwrap().protect_rtp(&mut p).unwrap();
            p
        };
        for _ in 0..3 {
            let mut p = task_sends(seq);
            phone_b.unprotect_rtp(&mut p).unwrap();
            seq = seq.wrapping_add(1);
        }
        let crypto = RelayCrypto { from: None, to: Some(ours_b.clone()) };
        let mut leg = RelayLeg::new();
        leg.continue_stream(0x5555, seq, u32::from(seq) * 160);
        for i in 0..10u16 {
            let mut out = through(&crypto, &mut leg, &packet(0x1111, i, u32::from(i) * 160, 0)).unwrap();
            phone_b.unprotect_rtp(&mut out).unwrap_or_else(|e| panic!("relayed packet {i}: {e}"));
        }
        let (last_seq, _) = leg.state().unwrap().last_out.unwrap();
        let mut p = task_sends(last_seq.wrapping_add(1));
        phone_b.unprotect_rtp(&mut p).expect("the task's next packet, past the wrap");
        // A re-key of the far end's direction (ours unchanged), made by the call.
        let suite = Suite::AesCm128HmacSha1_80;
        let (new_phone, ours) =
            (MasterKey::generate(suite, |b| b.fill(44)), MasterKey::generate(suite, |b| b.fill(104)));
        ours_b.lock().unwrap().rekey(&ours, &new_phone).unwrap();
        let mut phone_b = Srtp::new(&new_phone, &ours).unwrap();
        let mut back = packet(0x7777, 1, 160, 0);
        phone_b.protect_rtp(&mut back).unwrap();
        let crypto = RelayCrypto { from: Some(ours_b), to: None };
        through(&crypto, &mut RelayLeg::new(), &back).expect("the relay opens with the new key");
    }

    /// Muxed SRTCP is opened for the leg's session and not relayed; no room for the tag is an
    /// error, not a panic.
    #[test]
    fn srtcp_is_opened_and_a_full_buffer_refused() {
        let (mut phone_a, ours_a) = srtp_leg(5);
        let crypto = RelayCrypto { from: Some(ours_a), to: None };
        let rtcp =
            vec![0x81, 0xc9, 0, 7, 0, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let mut wire = rtcp.clone();
        phone_a.protect_rtcp(&mut wire).unwrap();
        assert_eq!(crypto.open(&mut wire), Ok(Opened::Rtcp(rtcp.len())));
        assert_eq!(wire[..rtcp.len()], rtcp[..]);
        let (_, ours_b) = srtp_leg(6);
        let crypto = RelayCrypto { from: None, to: Some(ours_b) };
        let mut tight = packet(1, 1, 160, 0);
        let len = tight.len();
        assert!(matches!(crypto.seal(&mut tight, len), Err(RelayError::Srtp(_))));
        assert!(RelayCrypto::default().is_plain());
    }
}
