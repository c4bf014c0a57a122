//! The media half of a call's task, apart from its signalling: what the far end's RTP becomes
//! (voice frames, key presses by RFC 4733 or heard inband) and what the channel's frames and
//! key presses become on the wire (translated voice, RFC 4733 packets, inband tones). It reads
//! no socket and no clock: the task hands it packets and the time, and sends what the RTP
//! session queues.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use starling_core::frame::Frame;
use starling_core::tracing;
use starling_media::dtmf::{DtmfEvent, EventReceiver, EventSender, InbandDetector};
use starling_media::opus::OpusParams;
use starling_media::sdp::Negotiated;
use starling_media::session::{Received, RtpSession};
use starling_media::translate::{self, AudioFormat, Translator};

use crate::call::jitter::JitterPlayout;
use crate::config::DtmfMode;

/// The RTP format name a negotiated codec carries in frames.
pub fn format_name(codec: &str) -> &'static str {
    match codec.to_ascii_uppercase().as_str() {
        "PCMU" => "ulaw",
        "PCMA" => "alaw",
        "OPUS" => "opus",
        _ => "unknown",
    }
}

/// A key press lasts this long on the wire, in 20 ms packets.
const PRESS: Duration = Duration::from_millis(100);
const PACKET: Duration = Duration::from_millis(20);
/// A key still heard inband this long after the audio stopped is ended then.
const INBAND_LINGER: Duration = Duration::from_millis(100);

/// What the call speaks: the negotiated codec as frames name it, its payload type and clock
/// (samples per millisecond), and telephone-event's payload type if the far end takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Format {
    pub name: &'static str,
    pub payload_type: u8,
    pub samples_per_ms: u32,
    pub event_type: Option<u8>,
}

impl Format {
    pub fn of(negotiated: Option<&Negotiated>) -> Format {
        match negotiated {
            Some(n) => Format {
                name: format_name(&n.codec.name),
                payload_type: n.codec.payload_type,
                samples_per_ms: n.codec.clock_rate / 1000,
                event_type: n.telephone_event.as_ref().map(|c| c.payload_type),
            },
            None => Format { name: "unknown", payload_type: 255, samples_per_ms: 8, event_type: None },
        }
    }

    /// The samples a voice payload of `len` bytes holds (G.711: one per byte; else 20 ms).
    fn samples(&self, len: usize) -> u32 {
        match self.name {
            "ulaw" | "alaw" => len as u32,
            _ => 20 * self.samples_per_ms,
        }
    }
}

/// A key press going out as RFC 4733 packets.
struct DigitOut {
    sender: EventSender,
    /// The RTP timestamp every packet of the press carries (when it began).
    start: u32,
    next: Instant,
    pt: u8,
    duration: u32,
}

impl DigitOut {
    /// Sends the next packet; false once the press is fully sent.
    fn send_next(&mut self, session: &mut RtpSession) -> bool {
        match self.sender.next_packet() {
            Some((payload, marker)) => {
                session.send_event(self.pt, marker, self.start, &payload);
                self.next += PACKET;
                true
            }
            None => false,
        }
    }
}

/// A key press going out inband: its tones, 20 ms (160 samples) at a time.
struct InbandOut {
    samples: Vec<i16>,
    sent: usize,
    next: Instant,
}

impl InbandOut {
    /// The next 20 ms as signed linear bytes; `None` once all is sent.
    fn next_frame(&mut self) -> Option<Vec<u8>> {
        let chunk = self.samples.get(self.sent..(self.sent + 160).min(self.samples.len()))?;
        if chunk.is_empty() {
            return None;
        }
        self.sent += chunk.len();
        self.next += PACKET;
        Some(chunk.iter().flat_map(|s| s.to_le_bytes()).collect())
    }
}

/// Key presses heard in the far end's audio (`dtmfmode=inband`, or `auto` without
/// telephone-event).
struct InbandIn {
    detector: InbandDetector,
    /// When the key being heard began.
    started: Instant,
    /// When audio was last fed to the detector.
    heard: Instant,
    linear: Vec<i16>,
}

/// A call's media (see the module's header).
pub struct CallMedia {
    /// Shared with the relay thread, which runs our far end's packets through it while relayed.
    session: Arc<Mutex<RtpSession>>,
    format: Format,
    dtmfmode: DtmfMode,
    /// The far end's Opus fmtp (FEC, DTX, its playback rate), for the encoder.
    opus: OpusParams,
    digit_out: Option<DigitOut>,
    inband_out: Option<InbandOut>,
    inband_in: InbandIn,
    events_in: EventReceiver,
    events: Vec<DtmfEvent>,
    /// Frames written in another format than ours, and their translator.
    write_translator: Option<Translator>,
    /// sip.conf's jitter buffer on received voice (`jbenable`), when used.
    jitter: Option<JitterPlayout>,
}

impl CallMedia {
    pub fn new(
        session: Arc<Mutex<RtpSession>>,
        dtmfmode: DtmfMode,
        negotiated: Option<&Negotiated>,
        jitter: Option<JitterPlayout>,
        now: Instant,
    ) -> Self {
        let mut media = CallMedia {
            session,
            format: Format::of(None),
            dtmfmode,
            opus: OpusParams::default(),
            digit_out: None,
            inband_out: None,
            inband_in: InbandIn {
                detector: InbandDetector::new(),
                started: now,
                heard: now,
                linear: Vec::with_capacity(160),
            },
            events_in: EventReceiver::default(),
            events: Vec::new(),
            write_translator: None,
            jitter,
        };
        media.set_format(negotiated);
        media
    }

    pub fn session(&self) -> MutexGuard<'_, RtpSession> {
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The session, for the relay thread to share.
    pub fn shared_session(&self) -> &Arc<Mutex<RtpSession>> {
        &self.session
    }

    /// A new answer or offer was agreed: what we send and expect from now on.
    pub fn set_format(&mut self, negotiated: Option<&Negotiated>) {
        self.format = Format::of(negotiated);
        // (A translator already made keeps its encoder: a new one is made when the formats change.)
        self.opus = negotiated.and_then(|n| n.codec.fmtp.as_deref()).map(OpusParams::from_fmtp).unwrap_or_default();
    }

    /// Whether key presses go in the audio: `dtmfmode=inband`, or `auto` when the far end did
    /// not take telephone-event.
    fn inband(&self) -> bool {
        match self.dtmfmode {
            DtmfMode::Inband => true,
            DtmfMode::Auto => self.format.event_type.is_none(),
            _ => false,
        }
    }

    /// A key press is going out (voice waits meanwhile).
    pub fn sending_digit(&self) -> bool {
        self.digit_out.is_some() || self.inband_out.is_some()
    }

    /// Stops sending a key press by RFC 4733 (the stream is handed to a native bridge).
    pub fn drop_digit(&mut self) {
        self.digit_out = None;
    }

    /// The call joined a bridge whose other party does or does not take jitter itself
    /// (`Some`), or left it (`None`): whether received voice is dejittered.
    pub fn set_bridged(&mut self, peer_wants_jitter: Option<bool>) {
        if let Some(jitter) = self.jitter.as_mut() {
            jitter.set_bridged(peer_wants_jitter);
        }
    }

    /// The earliest time [`CallMedia::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let lingering = self.inband_in.detector.pressed().map(|_| self.inband_in.heard + INBAND_LINGER);
        [
            self.session().poll_timeout(),
            self.digit_out.as_ref().map(|d| d.next),
            self.inband_out.as_ref().map(|d| d.next),
            lingering,
            self.jitter.as_ref().and_then(|j| j.next_tick()),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Sends what is due at `now`: the next packet of a key press, the next 20 ms of an inband
    /// one, RTCP; a key heard inband whose audio stopped ends, and the jitter buffer's frames
    /// due are played out (into `frames`). `native`: the call is relayed natively.
    pub fn handle_timeout(&mut self, now: Instant, native: bool, frames: &mut Vec<Frame>) {
        if let Some(out) = self.digit_out.as_mut() {
            let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
            if now >= out.next && !out.send_next(&mut session) {
                session.skip(out.duration);
                self.digit_out = None;
            }
        }
        if self.inband_in.detector.pressed().is_some() && now >= self.inband_in.heard + INBAND_LINGER {
            self.inband_in.detector.flush(&mut self.events);
            for event in self.events.drain(..) {
                if let DtmfEvent::End { digit, .. } = event {
                    let duration_ms = now.saturating_duration_since(self.inband_in.started).as_millis() as u32;
                    frames.push(Frame::DtmfEnd { digit, duration_ms });
                }
            }
        }
        if let Some(out) = self.inband_out.as_mut() {
            if now >= out.next {
                match out.next_frame() {
                    Some(bytes) => self.send_voice("slin", 160, bytes),
                    None => self.inband_out = None,
                }
            }
        }
        if let Some(jitter) = self.jitter.as_mut() {
            jitter.poll(now, native, |frame| frames.push(frame));
        }
        self.session().handle_timeout(now);
    }

    /// Sends a key press: inband tones or RFC 4733 packets, as the call's `dtmfmode` and the
    /// far end's telephone-event say (`dtmfmode=info` is the signalling's). One at a time.
    pub fn send_digit(&mut self, now: Instant, digit: char, call_id: &str) {
        if self.inband() {
            // 100 ms of the key's two tones, as voice, 20 ms at a time, then 60 ms of silence:
            // a far end that hears nothing after the key (no other audio) still hears it end.
            match starling_media::dtmf::tone(digit, 800) {
                Some(mut samples) if self.inband_out.is_none() => {
                    samples.resize(800 + 480, 0);
                    self.inband_out = Some(InbandOut { samples, sent: 0, next: now });
                }
                _ => tracing::debug!("DTMF '{digit}' not sent inband on {call_id}: one already going"),
            }
            return;
        }
        // 100 ms presses in 20 ms packets, in the RTP clock's units.
        let packet = PACKET.as_millis() as u32 * self.format.samples_per_ms;
        let duration = PRESS.as_millis() as u32 * self.format.samples_per_ms;
        match (self.format.event_type, EventSender::new(digit, duration, packet)) {
            (Some(pt), Some(sender)) if self.digit_out.is_none() => {
                let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
                let mut out = DigitOut { sender, start: session.next_timestamp(), next: now, pt, duration };
                out.send_next(&mut session);
                self.digit_out = Some(out);
            }
            _ => tracing::debug!("DTMF '{digit}' not sent on {call_id}: no telephone-event, or one already going"),
        }
    }

    /// Sends a voice frame of the channel's, translated to our format if it is in another.
    pub fn send_voice(&mut self, format: &'static str, samples: u32, data: Vec<u8>) {
        let ours = self.format;
        if format == ours.name {
            self.session().send(ours.payload_type, false, samples, &data);
            return;
        }
        let (Some(from), Some(to)) = (AudioFormat::from_name(format), AudioFormat::from_name(ours.name)) else {
            return;
        };
        if self.write_translator.as_ref().is_none_or(|t| t.from != from || t.to != to) {
            match Translator::new(from, to, &self.opus) {
                Ok(t) => self.write_translator = Some(t),
                Err(e) => {
                    tracing::warn!("cannot write {format} as {}: {e}", ours.name);
                    return;
                }
            }
        }
        let Some(translator) = self.write_translator.as_mut() else { return };
        let frames = translator.translate(translate::Frame::from_bytes(from, data)).unwrap_or_default();
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        for frame in frames {
            let bytes = frame.into_bytes();
            session.send(ours.payload_type, false, ours.samples(bytes.len()), &bytes);
        }
    }

    /// What a packet of the far end's (accepted by the session) says, as frames for the
    /// channel: key presses (RFC 4733, or heard in G.711 audio) and voice in our format, through
    /// the jitter buffer when one is used (`native`: the call is relayed natively, so not).
    pub fn decode(&mut self, now: Instant, packet: &Received, buffer: &[u8], native: bool, frames: &mut Vec<Frame>) {
        let payload = &buffer[packet.payload.0..packet.payload.1];
        let format = self.format;
        if Some(packet.payload_type) == format.event_type {
            self.events_in.handle(packet.timestamp, payload, &mut self.events);
            for event in self.events.drain(..) {
                frames.push(match event {
                    DtmfEvent::Begin(digit) => Frame::DtmfBegin(digit),
                    DtmfEvent::End { digit, duration } => {
                        tracing::debug!("DTMF '{digit}' received");
                        Frame::DtmfEnd { digit, duration_ms: duration / format.samples_per_ms.max(1) }
                    }
                });
            }
            return;
        }
        if packet.payload_type != format.payload_type {
            return;
        }
        if self.inband() && matches!(format.name, "ulaw" | "alaw") {
            let inband = &mut self.inband_in;
            inband.linear.resize(payload.len(), 0);
            if format.name == "ulaw" {
                starling_media::g711::decode_ulaw(payload, &mut inband.linear);
            } else {
                starling_media::g711::decode_alaw(payload, &mut inband.linear);
            }
            inband.detector.feed(&inband.linear, &mut self.events);
            inband.heard = now;
            for event in self.events.drain(..) {
                frames.push(match event {
                    DtmfEvent::Begin(digit) => {
                        inband.started = now;
                        Frame::DtmfBegin(digit)
                    }
                    DtmfEvent::End { digit, .. } => {
                        tracing::debug!("DTMF '{digit}' heard inband");
                        let duration_ms = now.saturating_duration_since(inband.started).as_millis() as u32;
                        Frame::DtmfEnd { digit, duration_ms }
                    }
                });
            }
        }
        let voice =
            Frame::Voice { format: format.name, samples: format.samples(payload.len()), data: payload.to_vec() };
        let voice = match self.jitter.as_mut() {
            Some(jitter) => jitter.put(now, native, packet.timestamp, format.samples_per_ms, voice),
            None => Some(voice),
        };
        frames.extend(voice);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_media::session::SessionConfig;
    use std::net::SocketAddr;

    fn media(dtmfmode: DtmfMode, sdp_answer: &str) -> (CallMedia, Instant) {
        let now = Instant::now();
        let far: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let mut session = RtpSession::new(SessionConfig::default(), now, std::time::SystemTime::now(), 7);
        session.set_remote(far, false);
        let remote = starling_media::sdp::RemoteMedia::parse(sdp_answer).unwrap();
        let codecs = [starling_media::sdp::Codec::from_allow_name("ulaw").unwrap()];
        let negotiated = starling_media::sdp::negotiate(&remote, &codecs, true).unwrap();
        (CallMedia::new(Arc::new(Mutex::new(session)), dtmfmode, Some(&negotiated), None, now), now)
    }

    const WITH_EVENTS: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
    const WITHOUT_EVENTS: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

    fn sent(media: &CallMedia) -> Vec<Vec<u8>> {
        let mut session = media.session();
        std::iter::from_fn(|| session.poll_transmit()).filter(|t| !t.rtcp).map(|t| t.data).collect()
    }

    /// An RFC 4733 press: a packet at once, then one every 20 ms on the clock it is given, all
    /// of one timestamp, until the press (100 ms) and its three end packets are sent.
    #[test]
    fn a_key_press_is_paced_on_the_given_clock() {
        let (mut media, now) = media(DtmfMode::Rfc2833, WITH_EVENTS);
        media.send_digit(now, '5', "c");
        assert!(media.sending_digit());
        let mut packets = sent(&media);
        let mut t = now;
        let mut frames = Vec::new();
        while media.sending_digit() {
            t = media.poll_timeout().unwrap().max(t);
            media.handle_timeout(t, false, &mut frames);
            packets.extend(sent(&media));
        }
        assert!(frames.is_empty());
        assert!(packets.len() >= 6, "{} packets", packets.len());
        assert!(packets.iter().all(|p| p[1] & 0x7f == 101), "telephone-event");
        let ts = |p: &Vec<u8>| u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
        assert!(packets.iter().all(|p| ts(p) == ts(&packets[0])), "one timestamp for the press");
        assert!(t - now >= Duration::from_millis(80), "paced: {:?}", t - now);
    }

    /// Without telephone-event, `auto` plays the key as tones: 16 frames of 20 ms (100 ms of
    /// tones, then silence), in PCMU.
    #[test]
    fn auto_without_telephone_event_plays_tones() {
        let (mut media, now) = media(DtmfMode::Auto, WITHOUT_EVENTS);
        media.send_digit(now, '1', "c");
        let mut t = now;
        let mut packets = Vec::new();
        let mut frames = Vec::new();
        while media.sending_digit() {
            t = media.poll_timeout().unwrap().max(t);
            media.handle_timeout(t, false, &mut frames);
            packets.extend(sent(&media));
        }
        assert_eq!(packets.len(), 8, "1280 samples in 160-sample frames");
        assert!(packets.iter().all(|p| p[1] & 0x7f == 0 && p.len() == 12 + 160));
    }

    /// The far end's voice becomes frames in our format; telephone-event packets become key
    /// presses; another payload type is dropped.
    #[test]
    fn packets_become_frames() {
        let (mut media, now) = media(DtmfMode::Rfc2833, WITH_EVENTS);
        let mut frames = Vec::new();
        let voice = Received {
            payload_type: 0,
            timestamp: 0,
            payload: (12, 172),
            ssrc: 1,
            marker: false,
            sequence: 1,
            new_stream: false,
        };
        media.decode(now, &voice, &[0xff; 172], false, &mut frames);
        assert!(matches!(&frames[..], [Frame::Voice { format: "ulaw", samples: 160, data }] if data.len() == 160));
        frames.clear();
        let mut event = vec![0u8; 16];
        event[12..16].copy_from_slice(&[5, 0x80, 0x03, 0x20]);
        let end = Received {
            payload_type: 101,
            timestamp: 800,
            payload: (12, 16),
            ssrc: 1,
            marker: false,
            sequence: 1,
            new_stream: false,
        };
        media.decode(now, &end, &event, false, &mut frames);
        assert!(frames.iter().any(|f| matches!(f, Frame::DtmfEnd { digit: '5', duration_ms: 100 })), "{frames:?}");
        frames.clear();
        let other = Received {
            payload_type: 8,
            timestamp: 0,
            payload: (12, 172),
            ssrc: 1,
            marker: false,
            sequence: 1,
            new_stream: false,
        };
        media.decode(now, &other, &[0xd5; 172], false, &mut frames);
        assert!(frames.is_empty());
    }
}
