//! One RTP session (a call leg's media), without sockets: packets and `now` in; packets,
//! events and a deadline out (str0m's shape: drain [`RtpSession::poll_transmit`] and
//! [`RtpSession::poll_event`] after every input, then wait until [`RtpSession::poll_timeout`]).
//!
//! It keeps what RFC 3550 asks of a participant: our SSRC, sequence number and timestamp
//! (random at the start, continuous across silence and codec changes), the receive
//! statistics of the peer's stream (A.1 sequence tracking, A.8 jitter), RTCP reports every
//! 5 s with RTT from the peer's LSR/DLSR, and the RTP timeout (`rtptimeout`; `rtpholdtimeout`
//! while the peer holds the call). Where the peer is behind NAT it learns the address to send
//! to from the packets it takes (`comedia`, symmetric RTP).
//!
//! `strictrtp` decides which packets it takes, as Asterisk's res_rtp_asterisk (13.7 and later;
//! `seqno` as 18): the session starts *learning*, and learns again whenever the SDP names
//! another address than the source it knows ([`RtpSession::set_remote`]). While learning,
//! packets from the SDP's address are taken at once (that becomes the source); packets from
//! any other address are dropped until one address has sent `probation` (4) more packets in
//! sequence after its first (with `yes`, spread over at least `(probation - 1) × 9 - 5` ms,
//! against floods; `seqno` checks the sequence only), and it then becomes the source.
//! A packet from the known source starts every other candidate's count again, so a stranger
//! interleaved with a party that talks never qualifies. [`STRICT_RTP_LEARN_TIMEOUT`] after
//! learning began (counted from its first packet), with a source known, the session locks
//! onto it: from then on only that address is taken, until the next change of SDP address.
//! Packets refused are counted ([`Stats::stray_packets`]).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rtp_rs::{RtpPacketBuilder, RtpReader};

use crate::rtcp::{self, ReportBlock, SenderInfo};

/// How a session behaves.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Samples per second of the RTP clock (8000 for G.711, 48000 for Opus).
    pub clock_rate: u32,
    /// Send to where the peer's packets come from, not (only) to the SDP address.
    pub comedia: bool,
    /// `strictrtp`: which sources are taken (see the module's doc).
    pub strict: StrictRtp,
    /// `probation`: how many packets in sequence after its first make a new source (≥ 2).
    pub probation: u16,
    /// Hang up when nothing arrives for this long (`rtptimeout`); `None` never.
    pub timeout: Option<Duration>,
    /// While the far end holds the call ([`RtpSession::set_on_hold`]), hang up only when
    /// nothing arrives for this long (`rtpholdtimeout`); `None`: never while on hold. As
    /// chan_sip's `check_rtp_timeout`, it counts only with a `timeout` set.
    pub hold_timeout: Option<Duration>,
    /// How often RTCP reports go out.
    pub rtcp_interval: Duration,
    pub cname: String,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            clock_rate: 8000,
            comedia: false,
            strict: StrictRtp::Yes,
            probation: DEFAULT_PROBATION,
            timeout: None,
            hold_timeout: None,
            rtcp_interval: Duration::from_secs(5),
            cname: "starling".into(),
        }
    }
}

/// rtp.conf `strictrtp` (Asterisk's `strict_rtp_mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StrictRtp {
    /// Every packet is taken, from anywhere.
    No,
    /// A new source is learned after `probation` packets in sequence, not too fast.
    #[default]
    Yes,
    /// As `Yes`, checking the sequence only (no minimum duration).
    Seqno,
}

/// rtp.conf `probation`'s default (Asterisk's `DEFAULT_LEARNING_MIN_SEQUENTIAL`).
pub const DEFAULT_PROBATION: u16 = 4;

/// How long learning lasts once a source is known (Asterisk's `STRICT_RTP_LEARN_TIMEOUT`).
pub const STRICT_RTP_LEARN_TIMEOUT: Duration = Duration::from_millis(5000);

/// Asterisk's `strict_rtp_state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StrictState {
    /// Every source taken (`strictrtp=no`).
    Open,
    /// Learning the source (`STRICT_RTP_LEARN`).
    Learn,
    /// Locked onto the source (`STRICT_RTP_CLOSED`).
    Closed,
}

/// Asterisk's `rtp_learning_info`: the candidate source and how far it has come.
#[derive(Clone, Copy, Debug)]
struct Learning {
    /// The address qualifying to be the source.
    proposed: Option<SocketAddr>,
    max_seq: u16,
    /// Packets in sequence still needed.
    packets: u16,
    /// When the current run began (for the minimum duration, `yes` only).
    received: Option<Instant>,
    /// When learning began (its first packet).
    start: Option<Instant>,
}

/// A datagram to send: RTP to the RTP port, RTCP to the RTCP port (RTP + 1, or the same with
/// rtcp-mux).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub remote: SocketAddr,
    pub rtcp: bool,
    pub data: Vec<u8>,
}

/// What the session tells its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEvent {
    /// The peer's address was learned (comedia) or changed.
    RemoteLearned(SocketAddr),
    /// Nothing arrived for `rtptimeout`: hang up.
    Timeout,
    /// The peer sent RTCP BYE.
    Bye,
}

/// A received RTP packet's header fields and where its payload is in the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    pub ssrc: u32,
    pub payload_type: u8,
    pub marker: bool,
    pub sequence: u16,
    pub timestamp: u32,
    /// `data[payload.0..payload.1]` is the payload.
    pub payload: (usize, usize),
    /// Whether this is the first packet of a new stream (SSRC change).
    pub new_stream: bool,
}

/// Why a datagram was not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiveError {
    #[error("malformed RTP")]
    Malformed,
    #[error("from {0}, not the learned source (strictrtp)")]
    Stray(SocketAddr),
}

/// Receive statistics of the peer's stream (RFC 3550 A.1, A.3, A.8).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReceiveStats {
    pub ssrc: u32,
    pub packets: u64,
    pub octets: u64,
    base_seq: u32,
    max_seq: u16,
    cycles: u32,
    expected_prior: u32,
    received_prior: u32,
    /// Jitter ×16, in timestamp units (A.8 keeps it scaled).
    jitter_q4: u32,
    last_transit: Option<i64>,
}

impl ReceiveStats {
    /// A new source whose first packet has `seq` (counted by the `update_seq` that follows).
    /// (`max_seq` starts at `seq` itself: one below it would make a first `seq` of 0 look like
    /// a wrap, and count 65,536 packets lost.)
    fn start(&mut self, ssrc: u32, seq: u16) {
        *self = ReceiveStats { ssrc, base_seq: u32::from(seq), max_seq: seq, ..Default::default() };
    }

    fn update_seq(&mut self, seq: u16) {
        let delta = seq.wrapping_sub(self.max_seq);
        if delta > 0 && delta < 0x8000 {
            if seq < self.max_seq {
                self.cycles += 1 << 16;
            }
            self.max_seq = seq;
        }
    }

    /// The extended highest sequence number received.
    pub fn extended_max(&self) -> u32 {
        self.cycles + u32::from(self.max_seq)
    }
    /// Packets expected from the first to the highest sequence number.
    pub fn expected(&self) -> u32 {
        self.extended_max().wrapping_sub(self.base_seq).wrapping_add(1)
    }
    /// Cumulative packets lost (may be negative with duplicates).
    pub fn lost(&self) -> i64 {
        i64::from(self.expected()) - self.packets as i64
    }
    /// Interarrival jitter in timestamp units.
    pub fn jitter(&self) -> u32 {
        self.jitter_q4 >> 4
    }

    fn report_block(&mut self, last_sr: u32, dlsr: u32) -> ReportBlock {
        let expected = self.expected();
        let expected_interval = expected.wrapping_sub(self.expected_prior);
        let received_interval = (self.packets as u32).wrapping_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.packets as u32;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / i64::from(expected_interval)).min(255) as u8
        };
        ReportBlock {
            ssrc: self.ssrc,
            fraction_lost,
            cumulative_lost: self.lost().clamp(-0x80_0000, 0x7f_ffff) as i32,
            highest_seq: self.extended_max(),
            jitter: self.jitter(),
            last_sr,
            delay_since_last_sr: dlsr,
        }
    }
}

/// The receive statistics a relay elsewhere carries on (see [`RtpSession::receive_state`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceiveState {
    pub ssrc: u32,
    /// The extended highest sequence number received (cycles in the high half).
    pub extended_max: u32,
    /// RFC 3550's jitter, ×16, in timestamp units.
    pub jitter_q4: u32,
    pub clock_rate: u32,
}

/// Statistics for `sip show channelstats`.
#[derive(Clone, Debug, PartialEq)]
pub struct Stats {
    pub sent_packets: u64,
    pub received_packets: u64,
    pub lost_packets: i64,
    /// Our reception jitter, milliseconds.
    pub jitter_ms: f64,
    /// What the peer reports it lost of our stream.
    pub peer_lost: Option<i32>,
    pub rtt: Option<Duration>,
    /// RTP packets refused by `strictrtp` (from a source not, or not yet, learned).
    pub stray_packets: u64,
}

/// One RTP session; see the module docs.
pub struct RtpSession {
    config: SessionConfig,
    ssrc: u32,
    next_seq: u16,
    /// Our timestamp = `ts_base` + samples since the start.
    ts_base: u32,
    samples_sent: u64,
    sent_packets: u64,
    sent_octets: u64,
    /// Where RTP goes (from SDP, or learned), and RTCP (RTP port + 1 unless muxed).
    remote: Option<SocketAddr>,
    remote_rtcp: Option<SocketAddr>,
    learned: Option<SocketAddr>,
    strict_state: StrictState,
    /// The source `strictrtp` takes packets from (Asterisk's `strict_rtp_address`).
    strict_address: Option<SocketAddr>,
    learning: Learning,
    /// The sequence number of the last packet taken (Asterisk's `lastrxseqno`).
    last_rx_seq: u16,
    stray_packets: u64,
    rx: Option<ReceiveStats>,
    last_rx: Instant,
    /// The last SR from the peer: its NTP middle 32 bits and when it arrived.
    last_sr: Option<(u32, Instant)>,
    rtt: Option<Duration>,
    peer_lost: Option<i32>,
    epoch: Instant,
    epoch_wall: SystemTime,
    next_rtcp: Instant,
    timed_out: bool,
    /// The far end holds the call: `hold_timeout` applies instead of `timeout`.
    on_hold: bool,
    /// The far end sends its media elsewhere (direct media): no RTP timeout, no RTCP reports.
    elsewhere: bool,
    transmits: VecDeque<Transmit>,
    events: VecDeque<SessionEvent>,
}

/// A splitmix64 step: spreads the caller's random seed over SSRC, sequence and timestamp.
fn mix(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl RtpSession {
    /// A session started at `now` (`wall` is the same moment on the wall clock, for RTCP's NTP
    /// times). `seed` is random from the caller; SSRC, first sequence number and timestamp
    /// come from it (RFC 3550 wants them random).
    pub fn new(config: SessionConfig, now: Instant, wall: SystemTime, seed: u64) -> RtpSession {
        let mut seed = seed;
        let next_rtcp = now + config.rtcp_interval;
        RtpSession {
            ssrc: mix(&mut seed) as u32,
            next_seq: mix(&mut seed) as u16,
            ts_base: mix(&mut seed) as u32,
            samples_sent: 0,
            sent_packets: 0,
            sent_octets: 0,
            remote: None,
            remote_rtcp: None,
            learned: None,
            strict_state: if config.strict == StrictRtp::No { StrictState::Open } else { StrictState::Learn },
            strict_address: None,
            learning: Learning { proposed: None, max_seq: 0, packets: config.probation, received: None, start: None },
            last_rx_seq: 0,
            stray_packets: 0,
            rx: None,
            last_rx: now,
            last_sr: None,
            rtt: None,
            peer_lost: None,
            epoch: now,
            epoch_wall: wall,
            next_rtcp,
            timed_out: false,
            on_hold: false,
            elsewhere: false,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            config,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Sets where to send (from the SDP: `c=` and `m=` port; RTCP on the next port unless
    /// `rtcp_mux`). With comedia, a learned address takes over once packets arrive.
    /// An address other than the source `strictrtp` knows starts learning again.
    pub fn set_remote(&mut self, rtp: SocketAddr, rtcp_mux: bool) {
        self.remote = Some(rtp);
        let mut rtcp = rtp;
        if !rtcp_mux {
            rtcp.set_port(rtp.port().wrapping_add(1));
        }
        self.remote_rtcp = Some(rtcp);
        self.learn_if_moved(rtp);
    }

    /// Asterisk's `remote_address_set`: the source is learned again when the SDP's address
    /// is not the one known (`rtp_learning_start`).
    fn learn_if_moved(&mut self, rtp: SocketAddr) {
        if self.strict_state != StrictState::Open && self.strict_address != Some(rtp) {
            self.strict_state = StrictState::Learn;
            self.learning.proposed = None;
            self.learning.start = None;
            self.learning_init(self.last_rx_seq);
        }
    }

    /// `rtp_learning_seq_init`.
    fn learning_init(&mut self, seq: u16) {
        self.learning.max_seq = seq;
        self.learning.packets = self.config.probation;
        self.learning.received = None;
    }

    /// `rtp_learning_rtp_seq_update`: the packets the candidate still needs after `seq`.
    fn learning_update(&mut self, now: Instant, seq: u16) -> u16 {
        let probation = self.config.probation;
        let learning = &mut self.learning;
        if seq == learning.max_seq.wrapping_add(1) {
            learning.packets = learning.packets.saturating_sub(1);
        } else {
            // A gap: start again.
            learning.packets = probation.saturating_sub(1);
            learning.received = Some(now);
        }
        if self.config.strict == StrictRtp::Yes {
            // Against floods: the run must have taken at least the minimum duration.
            let min = Duration::from_millis((u64::from(probation.saturating_sub(1)) * 9).saturating_sub(5));
            match learning.received {
                None => learning.received = Some(now),
                Some(began) if learning.packets == 0 && now.saturating_duration_since(began) < min => {
                    learning.packets = probation.saturating_sub(1);
                    learning.received = Some(now);
                }
                Some(_) => {}
            }
        }
        learning.max_seq = seq;
        learning.packets
    }

    /// Whether `strictrtp` takes a packet with sequence number `seq` from `from` (Asterisk's
    /// `ast_rtp_interpret` switch on `strict_rtp_state`).
    fn strict_takes(&mut self, now: Instant, from: SocketAddr, seq: u16) -> bool {
        if self.strict_state == StrictState::Learn {
            let start = *self.learning.start.get_or_insert(now);
            if self.strict_address.is_some() && now.saturating_duration_since(start) > STRICT_RTP_LEARN_TIMEOUT {
                self.strict_state = StrictState::Closed;
            } else {
                if self.strict_address == Some(from) {
                    // The known source: every candidate starts again.
                    self.learning_init(seq);
                    return true;
                }
                if self.remote == Some(from) {
                    // The SDP's address is taken at once.
                    self.strict_address = Some(from);
                    self.learning_init(seq);
                    return true;
                }
                if self.learning.proposed == Some(from) {
                    if self.learning_update(now, seq) == 0 {
                        self.strict_address = Some(from);
                        self.learning_init(seq);
                        return true;
                    }
                } else {
                    // An attacker, or the start of the stream expected.
                    self.learning.proposed = Some(from);
                    self.learning_init(seq);
                }
                return false;
            }
        }
        match self.strict_state {
            StrictState::Open => true,
            StrictState::Learn | StrictState::Closed => self.strict_address == Some(from),
        }
    }

    /// Whether a packet from `from` arriving at `now` may be taken, without taking it: false
    /// only when the session is (or is due to be) locked onto another source, so that a packet
    /// from there is certain to be refused.
    pub fn may_take_from(&self, now: Instant, from: SocketAddr) -> bool {
        let locked = match self.strict_state {
            StrictState::Open => false,
            StrictState::Closed => true,
            StrictState::Learn => {
                self.strict_address.is_some()
                    && self
                        .learning
                        .start
                        .is_some_and(|start| now.saturating_duration_since(start) > STRICT_RTP_LEARN_TIMEOUT)
            }
        };
        !locked || self.strict_address == Some(from)
    }

    /// The source whose packets are taken now: the one learned under `strictrtp`, or the
    /// last one seen without it. `None` before any.
    pub fn source(&self) -> Option<SocketAddr> {
        match self.strict_state {
            StrictState::Open => self.learned,
            StrictState::Learn | StrictState::Closed => self.strict_address,
        }
    }

    /// Whether `strictrtp` has locked onto the source (learning is over).
    pub fn source_locked(&self) -> bool {
        self.strict_state == StrictState::Closed
    }

    /// Sets where RTP and RTCP go from what the offer/answer agreed (see [`Negotiated`]).
    ///
    /// [`Negotiated`]: crate::sdp::Negotiated
    pub fn set_remote_media(&mut self, negotiated: &crate::sdp::Negotiated) {
        self.remote = Some(negotiated.remote);
        self.remote_rtcp = Some(negotiated.remote_rtcp);
        self.learn_if_moved(negotiated.remote);
    }

    /// Sends RTCP to `rtcp` (the peer's `a=rtcp:` port) instead of RTP's port + 1.
    pub fn set_remote_rtcp(&mut self, rtcp: SocketAddr) {
        self.remote_rtcp = Some(rtcp);
    }

    /// Where RTP goes now.
    pub fn remote(&self) -> Option<SocketAddr> {
        self.learned.filter(|_| self.config.comedia).or(self.remote)
    }

    /// Takes one RTP datagram from `from`. Returns where its payload is.
    /// A packet `strictrtp` refuses is [`ReceiveError::Stray`], and counted.
    pub fn handle_rtp(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> Result<Received, ReceiveError> {
        let reader = RtpReader::new(data).map_err(|_| ReceiveError::Malformed)?;
        let (ssrc, seq) = (reader.ssrc(), u16::from(reader.sequence_number()));
        if !self.strict_takes(now, from, seq) {
            self.stray_packets += 1;
            return Err(ReceiveError::Stray(from));
        }
        self.last_rx_seq = seq;
        let offset = reader.payload_offset();
        let payload_len = reader.payload().len();
        let timestamp = reader.timestamp();
        if self.learned != Some(from) {
            self.learned = Some(from);
            if self.config.comedia {
                self.events.push_back(SessionEvent::RemoteLearned(from));
            }
        }
        let new_stream = self.rx.as_ref().is_none_or(|rx| rx.ssrc != ssrc);
        let rx = self.rx.get_or_insert_with(ReceiveStats::default);
        if new_stream {
            rx.start(ssrc, seq);
        }
        rx.update_seq(seq);
        rx.packets += 1;
        rx.octets += payload_len as u64;
        // A.8: transit = arrival (in timestamp units) - timestamp; J += (|D| - J) / 16.
        let arrival =
            (now.saturating_duration_since(self.epoch).as_secs_f64() * f64::from(self.config.clock_rate)) as i64;
        let transit = arrival - i64::from(timestamp);
        if let Some(last) = rx.last_transit {
            let d = (transit - last).unsigned_abs().min(u64::from(u32::MAX >> 4)) as u32;
            rx.jitter_q4 = rx.jitter_q4.wrapping_add(d).wrapping_sub((rx.jitter_q4 + 8) >> 4);
        }
        rx.last_transit = Some(transit);
        self.last_rx = now;
        self.timed_out = false;
        Ok(Received {
            ssrc,
            payload_type: reader.payload_type(),
            marker: reader.mark(),
            sequence: seq,
            timestamp,
            payload: (offset, offset + payload_len),
            new_stream,
        })
    }

    /// The stream being received and where its statistics stand, for a relay that takes the
    /// far end's packets elsewhere (chan_sip's in the kernel): `None` before the first packet.
    pub fn receive_state(&self) -> Option<ReceiveState> {
        let rx = self.rx.as_ref()?;
        Some(ReceiveState {
            ssrc: rx.ssrc,
            extended_max: rx.extended_max(),
            jitter_q4: rx.jitter_q4,
            clock_rate: self.config.clock_rate,
        })
    }

    /// Takes in what was received elsewhere of [`RtpSession::receive_state`]'s stream:
    /// `packets` more packets (`octets` of payload), the highest sequence number and the
    /// jitter (×16) now, the last packet at `last_rx`. (The next packet here does not update
    /// the jitter: the transit times elsewhere are not on our clock.)
    pub fn received_elsewhere(
        &mut self,
        packets: u64,
        octets: u64,
        extended_max: u32,
        jitter_q4: u32,
        last_rx: Instant,
    ) {
        let Some(rx) = self.rx.as_mut() else { return };
        rx.packets += packets;
        rx.octets += octets;
        rx.cycles = extended_max & 0xffff_0000;
        rx.max_seq = extended_max as u16;
        self.last_rx_seq = extended_max as u16;
        rx.jitter_q4 = jitter_q4;
        rx.last_transit = None;
        if packets > 0 && last_rx > self.last_rx {
            self.last_rx = last_rx;
            self.timed_out = false;
        }
    }

    /// Takes one RTCP datagram.
    pub fn handle_rtcp(&mut self, now: Instant, data: &[u8]) -> Result<(), rtcp::RtcpError> {
        let packet = rtcp::parse(data)?;
        if let Some(sender) = packet.sender {
            self.last_sr = Some(((sender.ntp >> 16) as u32, now));
        }
        let ntp_now = self.ntp(now);
        for report in packet.reports.iter().filter(|r| r.ssrc == self.ssrc) {
            self.peer_lost = Some(report.cumulative_lost);
            if report.last_sr != 0 {
                // RTT = A - LSR - DLSR, in 1/65536 s.
                let a = (ntp_now >> 16) as u32;
                let rtt = a.wrapping_sub(report.last_sr).wrapping_sub(report.delay_since_last_sr);
                if rtt < 0x8000_0000 {
                    self.rtt = Some(Duration::from_micros(u64::from(rtt) * 1_000_000 / 65536));
                }
            }
        }
        if packet.bye {
            self.events.push_back(SessionEvent::Bye);
        }
        Ok(())
    }

    /// Sends a payload covering `samples` samples (160 for 20 ms of G.711). A `marker` starts
    /// a talkspurt. Silence is skipped with [`RtpSession::skip`], so timestamps stay continuous.
    pub fn send(&mut self, payload_type: u8, marker: bool, samples: u32, payload: &[u8]) {
        let timestamp = self.ts_base.wrapping_add(self.samples_sent as u32);
        if self.emit(payload_type, marker, timestamp, payload) {
            self.samples_sent += u64::from(samples);
        }
    }

    /// Queues one RTP packet with the next sequence number; false if there is nowhere to send.
    fn emit(&mut self, payload_type: u8, marker: bool, timestamp: u32, payload: &[u8]) -> bool {
        let Some(remote) = self.remote() else { return false };
        let builder = RtpPacketBuilder::new()
            .payload_type(payload_type & 0x7f)
            .marked(marker)
            .ssrc(self.ssrc)
            .sequence(self.next_seq.into())
            .timestamp(timestamp)
            .payload(payload);
        let mut data = vec![0; builder.target_length()];
        let Ok(len) = builder.build_into(&mut data) else { return false };
        data.truncate(len);
        self.next_seq = self.next_seq.wrapping_add(1);
        self.sent_packets += 1;
        self.sent_octets += payload.len() as u64;
        self.transmits.push_back(Transmit { remote, rtcp: false, data });
        true
    }

    /// Sends one RFC 4733 event packet: every packet of one key press carries the timestamp
    /// of its start (`next_timestamp()` when it began). After the last, [`RtpSession::skip`]
    /// the press's duration so the audio that follows continues the timeline.
    pub fn send_event(&mut self, payload_type: u8, marker: bool, start: u32, payload: &[u8; 4]) {
        self.emit(payload_type, marker, start, payload);
    }

    /// Lets `samples` of time pass without sending (silence, or a pause between events).
    pub fn skip(&mut self, samples: u32) {
        self.samples_sent += u64::from(samples);
    }

    /// The sequence number the next packet will carry.
    pub fn next_sequence(&self) -> u16 {
        self.next_seq
    }

    /// Our stream goes on from `next_seq` and `next_ts`: a native relay carried it on (in our
    /// SSRC) while it sent the other call's packets to our far end, and we send again. Without
    /// this the far end would see sequence numbers it has had already (with SRTP: replays, and
    /// dropped).
    pub fn continue_from(&mut self, next_seq: u16, next_ts: u32) {
        self.next_seq = next_seq;
        self.ts_base = next_ts.wrapping_sub(self.samples_sent as u32);
    }

    /// The timestamp the next packet will carry (for an RFC 4733 event that starts now).
    pub fn next_timestamp(&self) -> u32 {
        self.ts_base.wrapping_add(self.samples_sent as u32)
    }

    fn ntp(&self, now: Instant) -> u64 {
        let wall = self.epoch_wall + now.saturating_duration_since(self.epoch);
        let since_unix = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
        // NTP counts from 1900: 70 years and 17 leap days before 1970.
        let secs = since_unix.as_secs() + 2_208_988_800;
        let frac = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
        (secs << 32) | frac
    }

    /// The far end's media goes to somebody else from `now` (`true`: its call is redirected
    /// by direct media, and nothing arriving is no reason to hang up), or comes back to us
    /// (`false`: the RTP timeout counts from `now`).
    pub fn set_media_elsewhere(&mut self, now: Instant, elsewhere: bool) {
        if self.elsewhere && !elsewhere {
            self.last_rx = now;
            self.next_rtcp = now + self.config.rtcp_interval;
        }
        self.elsewhere = elsewhere;
    }

    /// The far end put the call on hold (`true`: its last offer was sendonly or inactive), or
    /// took it back. On hold, silence is no reason to hang up before `hold_timeout`.
    pub fn set_on_hold(&mut self, on_hold: bool) {
        self.on_hold = on_hold;
    }

    /// How long nothing has arrived, at `now` (what a timeout's log line tells).
    pub fn silent_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_rx)
    }

    /// How long silence may last before [`SessionEvent::Timeout`], as chan_sip's
    /// `check_rtp_timeout`: `rtptimeout`, or on hold the larger of it and `rtpholdtimeout`
    /// (never on hold without `rtpholdtimeout`, never at all without `rtptimeout`).
    fn timeout_now(&self) -> Option<Duration> {
        let timeout = self.config.timeout?;
        if self.on_hold {
            self.config.hold_timeout.map(|hold| hold.max(timeout))
        } else {
            Some(timeout)
        }
    }

    /// Runs what is due at `now`: an RTCP report, the RTP timeout. Extra calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.elsewhere {
            return;
        }
        if let Some(timeout) = self.timeout_now() {
            if !self.timed_out && now.saturating_duration_since(self.last_rx) >= timeout {
                self.timed_out = true;
                self.events.push_back(SessionEvent::Timeout);
            }
        }
        if now >= self.next_rtcp {
            self.next_rtcp = now + self.config.rtcp_interval;
            self.send_report(now);
        }
    }

    fn send_report(&mut self, now: Instant) {
        let Some(remote) = self.remote_rtcp.or(self.remote()) else { return };
        let (last_sr, dlsr) = match self.last_sr {
            Some((lsr, at)) => (lsr, (now.saturating_duration_since(at).as_secs_f64() * 65536.0) as u32),
            None => (0, 0),
        };
        let reports: Vec<ReportBlock> = self.rx.as_mut().map(|rx| rx.report_block(last_sr, dlsr)).into_iter().collect();
        let sender = (self.sent_packets > 0).then(|| SenderInfo {
            ntp: self.ntp(now),
            rtp_timestamp: self.ts_base.wrapping_add(self.samples_sent as u32),
            packets: self.sent_packets as u32,
            octets: self.sent_octets as u32,
        });
        let mut data = Vec::with_capacity(128);
        rtcp::build(self.ssrc, sender, &reports, &self.config.cname, &mut data);
        self.transmits.push_back(Transmit { remote, rtcp: true, data });
    }

    /// The next datagram to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    #[must_use]
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// When [`RtpSession::handle_timeout`] is due. May change after any input.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.elsewhere {
            return None;
        }
        let timeout = self.timeout_now().filter(|_| !self.timed_out).map(|t| self.last_rx + t);
        Some(timeout.map_or(self.next_rtcp, |t| t.min(self.next_rtcp)))
    }

    pub fn stats(&self) -> Stats {
        let (received, lost, jitter) = self.rx.as_ref().map_or((0, 0, 0), |rx| (rx.packets, rx.lost(), rx.jitter()));
        Stats {
            sent_packets: self.sent_packets,
            received_packets: received,
            lost_packets: lost,
            jitter_ms: f64::from(jitter) * 1000.0 / f64::from(self.config.clock_rate),
            peer_lost: self.peer_lost,
            rtt: self.rtt,
            stray_packets: self.stray_packets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn pair() -> (RtpSession, RtpSession, Instant) {
        let now = Instant::now();
        let wall = SystemTime::now();
        let mut a = RtpSession::new(SessionConfig::default(), now, wall, 1);
        let mut b = RtpSession::new(SessionConfig::default(), now, wall, 2);
        a.set_remote(addr("127.0.0.1:20002"), false);
        b.set_remote(addr("127.0.0.1:20000"), false);
        (a, b, now)
    }

    #[test]
    fn sequence_and_timestamps_continue_across_silence() {
        let (mut a, mut b, now) = pair();
        a.send(0, true, 160, &[0xff; 160]);
        a.skip(160 * 5);
        a.send(0, true, 160, &[0xff; 160]);
        let first = a.poll_transmit().unwrap();
        let second = a.poll_transmit().unwrap();
        let r1 = b.handle_rtp(now, addr("127.0.0.1:20000"), &first.data).unwrap();
        let r2 = b.handle_rtp(now + Duration::from_millis(120), addr("127.0.0.1:20000"), &second.data).unwrap();
        assert_eq!(r2.sequence, r1.sequence.wrapping_add(1), "no gap in sequence numbers");
        assert_eq!(r2.timestamp.wrapping_sub(r1.timestamp), 160 * 6, "timestamps count the silence");
        assert!(r1.new_stream && !r2.new_stream);
        assert_eq!(&second.data[r2.payload.0..r2.payload.1], &[0xff; 160]);
        assert_eq!(b.stats().lost_packets, 0);
    }

    #[test]
    fn loss_and_jitter_are_counted_and_reported() {
        let (mut a, mut b, start) = pair();
        let mut now = start;
        for i in 0..50u32 {
            a.send(0, i == 0, 160, &[0xd5; 160]);
            let t = a.poll_transmit().unwrap();
            now = start + Duration::from_millis(u64::from(i) * 20 + if i % 2 == 0 { 0 } else { 5 });
            if i % 10 != 3 {
                b.handle_rtp(now, addr("127.0.0.1:20000"), &t.data).unwrap();
            }
        }
        let stats = b.stats();
        assert_eq!((stats.received_packets, stats.lost_packets), (45, 5));
        assert!(stats.jitter_ms > 1.0 && stats.jitter_ms < 10.0, "{}", stats.jitter_ms);
        // B reports to A; A sees its loss and an RTT.
        a.handle_timeout(start + Duration::from_secs(5));
        let sr = a.poll_transmit().unwrap();
        assert!(sr.rtcp && sr.remote == addr("127.0.0.1:20003"));
        b.handle_rtcp(start + Duration::from_secs(5), &sr.data).unwrap();
        b.handle_timeout(start + Duration::from_millis(5040));
        let rr = b.poll_transmit().unwrap();
        a.handle_rtcp(start + Duration::from_millis(5100), &rr.data).unwrap();
        let stats = a.stats();
        assert_eq!(stats.peer_lost, Some(5));
        let rtt = stats.rtt.unwrap();
        assert!(rtt >= Duration::from_millis(55) && rtt <= Duration::from_millis(65), "{rtt:?}");
        let _ = now;
    }

    /// A stream whose first sequence number is 0, or one that wraps past 65535, loses nothing.
    #[test]
    fn a_stream_from_sequence_zero_or_across_the_wrap_loses_nothing() {
        for first in [0u16, 65_530] {
            let now = Instant::now();
            let mut b = RtpSession::new(SessionConfig::default(), now, SystemTime::now(), 9);
            b.set_remote(addr("127.0.0.1:20000"), false);
            for i in 0..20u16 {
                let mut packet = vec![0x80, 0x00];
                packet.extend_from_slice(&first.wrapping_add(i).to_be_bytes());
                packet.extend_from_slice(&(u32::from(i) * 160).to_be_bytes());
                packet.extend_from_slice(&7u32.to_be_bytes());
                packet.extend_from_slice(&[0xd5; 160]);
                b.handle_rtp(now, addr("127.0.0.1:20000"), &packet).unwrap();
            }
            let stats = b.stats();
            assert_eq!((stats.received_packets, stats.lost_packets), (20, 0), "from {first}");
        }
    }

    /// A relay carried our stream on (in our SSRC) to 40_000 / 123_456: our next packets go
    /// on from there, and the samples sent before stay counted.
    #[test]
    fn our_stream_continues_where_a_relay_left_it() {
        let start = Instant::now();
        let mut s = RtpSession::new(SessionConfig::default(), start, SystemTime::now(), 3);
        s.set_remote(addr("127.0.0.1:20000"), false);
        s.send(0, false, 160, &[0xd5; 160]);
        let _ = s.poll_transmit();
        s.continue_from(40_000, 123_456);
        assert_eq!((s.next_sequence(), s.next_timestamp()), (40_000, 123_456));
        s.send(0, false, 160, &[0xd5; 160]);
        s.send(0, false, 160, &[0xd5; 160]);
        let fields = |t: Transmit| {
            let r = RtpReader::new(&t.data).unwrap();
            (r.ssrc(), u16::from(r.sequence_number()), r.timestamp())
        };
        let ssrc = s.ssrc();
        assert_eq!(fields(s.poll_transmit().unwrap()), (ssrc, 40_000, 123_456));
        assert_eq!(fields(s.poll_transmit().unwrap()), (ssrc, 40_001, 123_616));
        assert_eq!(s.stats().sent_packets, 3);
    }

    /// Packets received elsewhere (the relay in the kernel) count as received here, and the
    /// stream goes on here afterwards with nothing lost and the RTP timeout put off.
    #[test]
    fn what_is_received_elsewhere_is_counted_and_the_stream_goes_on() {
        let config = SessionConfig { timeout: Some(Duration::from_secs(2)), ..SessionConfig::default() };
        let start = Instant::now();
        let mut b = RtpSession::new(config, start, SystemTime::now(), 9);
        b.set_remote(addr("127.0.0.1:20000"), false);
        assert_eq!(b.receive_state(), None);
        let packet = |seq: u16| {
            let mut p = vec![0x80, 0x00];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
            p.extend_from_slice(&7u32.to_be_bytes());
            p.extend_from_slice(&[0xd5; 160]);
            p
        };
        for seq in 65_530..65_535u16 {
            b.handle_rtp(start, addr("127.0.0.1:20000"), &packet(seq)).unwrap();
        }
        let state = b.receive_state().unwrap();
        assert_eq!((state.ssrc, state.extended_max, state.clock_rate), (7, 65_534, 8000));
        // 100 packets elsewhere, across the wrap, the last 3 s in.
        b.received_elsewhere(100, 16_000, 0x1_0000 + 98, 40, start + Duration::from_secs(3));
        b.handle_timeout(start + Duration::from_secs(4));
        assert_eq!(b.poll_event(), None, "the timeout counts from the last packet elsewhere");
        for seq in 99..104u16 {
            b.handle_rtp(start + Duration::from_secs(4), addr("127.0.0.1:20000"), &packet(seq)).unwrap();
        }
        let stats = b.stats();
        assert_eq!((stats.received_packets, stats.lost_packets), (110, 0));
        assert_eq!(b.receive_state().unwrap().extended_max, 0x1_0000 + 103);
    }

    #[test]
    fn comedia_learns_and_strict_drops_strays() {
        let now = Instant::now();
        let config = SessionConfig { comedia: true, ..SessionConfig::default() };
        let mut s = RtpSession::new(config, now, SystemTime::now(), 3);
        s.set_remote(addr("10.0.0.5:4000"), false);
        let mut peer = RtpSession::new(SessionConfig::default(), now, SystemTime::now(), 4);
        peer.set_remote(addr("192.0.2.1:10000"), false);
        let nat = addr("198.51.100.7:31000");
        let mut taken = 0;
        for i in 0..5u64 {
            peer.send(8, i == 0, 160, &[0; 160]);
            let p = peer.poll_transmit().unwrap().data;
            taken += usize::from(s.handle_rtp(now + Duration::from_millis(20 * i), nat, &p).is_ok());
        }
        assert_eq!(taken, 1, "behind NAT: the 5th packet in sequence is the first taken");
        assert_eq!(s.poll_event(), Some(SessionEvent::RemoteLearned(nat)));
        assert_eq!(s.remote(), Some(nat), "NAT: answer where it came from");
        peer.send(8, false, 160, &[0; 160]);
        let p = peer.poll_transmit().unwrap().data;
        let stranger = addr("203.0.113.9:5000");
        assert_eq!(s.handle_rtp(now, stranger, &p), Err(ReceiveError::Stray(stranger)));
        assert_eq!(s.handle_rtp(now, nat, &[1, 2, 3]), Err(ReceiveError::Malformed));
        assert_eq!(s.stats().stray_packets, 5, "the 4 in probation and the stranger's");
    }

    /// One step of a strictrtp scenario.
    #[derive(Clone, Copy)]
    enum Step {
        /// At `ms`, a packet from `who` with sequence `seq`: taken or not.
        Rtp(u64, char, u16, bool),
        /// The SDP names `who`'s address (a re-INVITE).
        Sdp(char),
    }
    use Step::{Rtp, Sdp};

    /// A: the party, at the address its SDP names. N: the party seen through NAT; M: the
    /// same after its NAT rebinds. S: a stranger. X: an SDP address nobody sends from.
    fn who(c: char) -> SocketAddr {
        addr(match c {
            'A' => "192.0.2.10:4000",
            'N' => "198.51.100.7:31000",
            'M' => "198.51.100.7:31002",
            'S' => "203.0.113.9:5000",
            'X' => "10.0.0.5:4000",
            _ => unreachable!("{c}"),
        })
    }

    fn packet(ssrc: u32, seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 0x08];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0xd5; 160]);
        p
    }

    /// The party and a stranger sending every 20 ms, interleaved: (party's, stranger's).
    fn interleaved(party: char, from_ms: u64, n: u16, party_seq: u16, stranger_seq: u16) -> Vec<Step> {
        (0..n)
            .flat_map(|i| {
                let ms = from_ms + u64::from(i) * 20;
                [Rtp(ms, 'S', stranger_seq.wrapping_add(i), false), Rtp(ms + 1, party, party_seq.wrapping_add(i), true)]
            })
            .collect()
    }

    /// A party's run every 20 ms from `from_ms`, the first `refused` of them refused.
    fn run(party: char, from_ms: u64, seq: u16, n: u16, refused: u16) -> Vec<Step> {
        (0..n).map(|i| Rtp(from_ms + u64::from(i) * 20, party, seq.wrapping_add(i), i >= refused)).collect()
    }

    /// strictrtp as Asterisk's res_rtp_asterisk, step by step (`probation` 4: a new source's
    /// 5th packet in sequence is its first taken).
    #[test]
    fn strictrtp_learns_a_source_only_after_probation() {
        let cases: Vec<(&str, StrictRtp, char, Vec<Step>)> = vec![
            ("the SDP's address is taken at once", StrictRtp::Yes, 'A', run('A', 0, 100, 3, 0)),
            (
                "a stranger spraying from the start, interleaved with the party at the SDP's address",
                StrictRtp::Yes,
                'A',
                [run('S', 0, 7000, 3, 3), interleaved('A', 60, 300, 100, 7003)].concat(),
            ),
            (
                "a stranger spraying from the start, the party behind NAT alone first",
                StrictRtp::Yes,
                'X',
                [run('N', 0, 500, 6, 4), interleaved('N', 120, 300, 506, 9000)].concat(),
            ),
            ("behind NAT, across the sequence wrap", StrictRtp::Yes, 'X', run('N', 0, 65_533, 8, 4)),
            (
                "a gap starts the count again (the packet after it counts as the first)",
                StrictRtp::Yes,
                'X',
                vec![
                    Rtp(0, 'N', 10, false),
                    Rtp(20, 'N', 11, false),
                    Rtp(40, 'N', 13, false),
                    Rtp(60, 'N', 14, false),
                    Rtp(80, 'N', 15, false),
                    Rtp(100, 'N', 16, true),
                ],
            ),
            (
                "a flood in sequence qualifies too fast with yes",
                StrictRtp::Yes,
                'X',
                (0..12).map(|i| Rtp(u64::from(i) / 4, 'S', 40 + i, false)).collect(),
            ),
            (
                "seqno checks the sequence only",
                StrictRtp::Seqno,
                'X',
                (0..6).map(|i| Rtp(0, 'S', 40 + i, i >= 4)).collect(),
            ),
            (
                "seqno: a stranger interleaved with the party never qualifies",
                StrictRtp::Seqno,
                'A',
                interleaved('A', 0, 100, 1, 2),
            ),
            (
                "the party's NAT rebinds while learning: the new address once the old is quiet",
                StrictRtp::Yes,
                'X',
                [run('N', 0, 1, 10, 4), run('M', 200, 11, 10, 4)].concat(),
            ),
            (
                "locked after 5 s of learning: a rebinding is refused until the SDP changes",
                StrictRtp::Yes,
                'X',
                [
                    run('N', 0, 1, 300, 4),
                    run('M', 6000, 301, 20, 20),
                    vec![Sdp('A')],
                    run('M', 6400, 321, 6, 4),
                    vec![Rtp(6600, 'N', 400, false)],
                ]
                .concat(),
            ),
            (
                "a re-INVITE to the address known keeps the lock",
                StrictRtp::Yes,
                'A',
                [run('A', 0, 1, 300, 0), vec![Sdp('A')], run('S', 6000, 50, 10, 10)].concat(),
            ),
            ("no: anyone", StrictRtp::No, 'A', [run('S', 0, 1, 3, 0), run('N', 60, 90, 2, 0)].concat()),
        ];
        for (name, strict, sdp, steps) in cases {
            let start = Instant::now();
            let config = SessionConfig { comedia: true, strict, ..SessionConfig::default() };
            let mut s = RtpSession::new(config, start, SystemTime::now(), 11);
            s.set_remote(who(sdp), false);
            let mut refused = 0;
            for (i, step) in steps.into_iter().enumerate() {
                match step {
                    Sdp(c) => s.set_remote(who(c), false),
                    Rtp(ms, c, seq, taken) => {
                        let got = s.handle_rtp(start + Duration::from_millis(ms), who(c), &packet(0x1000, seq));
                        assert_eq!(got.is_ok(), taken, "{name}: step {i}, from {c} seq {seq} at {ms} ms: {got:?}");
                        refused += u64::from(!taken);
                        if taken && strict != StrictRtp::No {
                            assert_eq!(s.source(), Some(who(c)), "{name}: step {i}");
                            assert_eq!(s.remote(), Some(who(c)), "{name}: comedia sends to the source");
                        }
                    }
                }
            }
            assert_eq!(s.stats().stray_packets, refused, "{name}: every packet refused is counted");
        }
    }

    /// `may_take_from` answers for a session due to lock before a packet has locked it.
    #[test]
    fn may_take_from_knows_when_learning_is_due_to_end() {
        let start = Instant::now();
        let mut s = RtpSession::new(SessionConfig::default(), start, SystemTime::now(), 5);
        assert!(s.may_take_from(start, who('S')), "learning: anyone may qualify");
        s.set_remote(who('A'), false);
        s.handle_rtp(start, who('A'), &packet(1, 1)).unwrap();
        assert!(s.may_take_from(start + Duration::from_secs(4), who('S')));
        assert!(!s.may_take_from(start + Duration::from_secs(6), who('S')));
        assert!(s.may_take_from(start + Duration::from_secs(6), who('A')));
        assert!(!s.source_locked(), "not until a packet comes");
        let no = SessionConfig { strict: StrictRtp::No, ..SessionConfig::default() };
        let open = RtpSession::new(no, start, SystemTime::now(), 5);
        assert!(open.may_take_from(start + Duration::from_secs(60), who('S')));
    }

    /// Whatever the packets and addresses, a session locked onto a source takes nothing from
    /// anywhere else, and `may_take_from` says so beforehand.
    #[test]
    fn a_locked_session_takes_nothing_from_elsewhere() {
        let start = Instant::now();
        let mut s = RtpSession::new(SessionConfig::default(), start, SystemTime::now(), 5);
        s.set_remote(who('A'), false);
        for i in 0..300u16 {
            s.handle_rtp(start + Duration::from_millis(u64::from(i) * 20), who('A'), &packet(1, i)).unwrap();
        }
        assert!(s.source_locked());
        let now = start + Duration::from_secs(6);
        assert!(s.may_take_from(now, who('A')) && !s.may_take_from(now, who('S')));
        for i in 0..1000u16 {
            let at = start + Duration::from_millis(6000 + u64::from(i));
            assert!(s.handle_rtp(at, who('S'), &packet(1, 300 + i)).is_err());
        }
        assert_eq!(s.stats().received_packets, 300);
        assert_eq!(s.stats().stray_packets, 1000);
    }

    #[test]
    fn no_timeout_while_the_media_goes_elsewhere() {
        let start = Instant::now();
        let config = SessionConfig { timeout: Some(Duration::from_secs(30)), ..SessionConfig::default() };
        let mut s = RtpSession::new(config, start, SystemTime::now(), 1);
        s.set_remote("127.0.0.1:4000".parse().unwrap(), false);
        s.set_media_elsewhere(start, true);
        assert_eq!(s.poll_timeout(), None);
        s.handle_timeout(start + Duration::from_secs(60));
        assert_eq!(s.poll_event(), None);
        assert!(s.poll_transmit().is_none(), "no RTCP report while the media is elsewhere");
        // Back: the 30 s count from the return, not from the last packet.
        let back = start + Duration::from_secs(100);
        s.set_media_elsewhere(back, false);
        s.handle_timeout(back + Duration::from_secs(29));
        assert_eq!(s.poll_event(), None);
        s.handle_timeout(back + Duration::from_secs(30));
        assert_eq!(s.poll_event(), Some(SessionEvent::Timeout));
    }

    #[test]
    fn rtp_timeout_fires_once_until_media_returns() {
        let now = Instant::now();
        let config = SessionConfig { timeout: Some(Duration::from_secs(30)), ..SessionConfig::default() };
        let mut s = RtpSession::new(config, now, SystemTime::now(), 5);
        let mut t = now;
        let mut timeouts = 0;
        while let Some(next) = s.poll_timeout() {
            if next > now + Duration::from_secs(60) {
                break;
            }
            t = next;
            s.handle_timeout(t);
            while let Some(e) = s.poll_event() {
                assert_eq!(e, SessionEvent::Timeout);
                timeouts += 1;
            }
        }
        assert_eq!(timeouts, 1);
        assert!(t >= now + Duration::from_secs(30));
    }

    /// chan_sip's `check_rtp_timeout`: on hold, `rtpholdtimeout` (at least `rtptimeout`)
    /// instead of `rtptimeout`; no `rtpholdtimeout`: never on hold; none at all without
    /// `rtptimeout`.
    #[test]
    fn on_hold_the_hold_timeout_counts() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let session = |timeout: Option<u64>, hold: Option<u64>| {
            let config = SessionConfig {
                timeout: timeout.map(Duration::from_secs),
                hold_timeout: hold.map(Duration::from_secs),
                rtcp_interval: Duration::from_secs(3600),
                ..SessionConfig::default()
            };
            let mut s = RtpSession::new(config, start, SystemTime::now(), 9);
            s.set_on_hold(true);
            s
        };
        let fires_at = |mut s: RtpSession| {
            (1..200).find(|t| {
                s.handle_timeout(at(*t));
                s.poll_event() == Some(SessionEvent::Timeout)
            })
        };
        assert_eq!(fires_at(session(Some(2), Some(6))), Some(6));
        assert_eq!(fires_at(session(Some(2), None)), None, "on hold without rtpholdtimeout: never");
        assert_eq!(fires_at(session(None, Some(6))), None, "rtpholdtimeout alone does nothing (chan_sip)");
        assert_eq!(fires_at(session(Some(8), Some(3))), Some(8), "never before rtptimeout");
        // Taken back off hold: rtptimeout again, counted from the last packet.
        let mut s = session(Some(2), Some(60));
        s.handle_timeout(at(5));
        assert_eq!(s.poll_event(), None);
        s.set_on_hold(false);
        assert_eq!(s.poll_timeout(), Some(at(2)));
        s.handle_timeout(at(5));
        assert_eq!(s.poll_event(), Some(SessionEvent::Timeout));
        assert_eq!(s.silent_for(at(5)), Duration::from_secs(5));
    }

    #[test]
    fn random_starting_points_differ_by_seed() {
        let now = Instant::now();
        let a = RtpSession::new(SessionConfig::default(), now, SystemTime::now(), 1);
        let b = RtpSession::new(SessionConfig::default(), now, SystemTime::now(), 2);
        assert_ne!(a.ssrc(), b.ssrc());
        assert_ne!(a.next_timestamp(), b.next_timestamp());
    }
}
