//! sip.conf's jitter buffer (`jbenable`, `jbforce`, `jbmaxsize`, `jbimpl`, `jbresyncthreshold`,
//! `jbtargetextra`) on a call whose received voice goes to the core as frames.
//!
//! When it is used is abstract_jb's rule (`ast_jb_do_usecheck`) with chan_sip's properties (a
//! SIP leg both creates jitter and takes it: `AST_CHAN_TP_CREATESJITTER | WANTSJITTER`): the
//! frames a call receives are dejittered when `jbenable=yes` and what they go to cannot take
//! jitter itself — a dialplan application (Echo, Playback, Read, Record...), or a bridge with a
//! channel of another technology (Local) — and, with `jbforce=yes` as well, when they go to
//! another SIP leg through a bridge that is not native. A natively relayed call (the relay
//! threads, the kernel) and direct media never have one: their packets never become frames.
//!
//! Each received voice frame goes into a [`JitterBuffer`] at its RTP timestamp; a tick every
//! frame interval (the far end's packet time) takes the next one out, in timestamp order. A
//! frame that comes after its turn is dropped (late); one that never came is a gap — nothing
//! goes to the core for it (no concealment: Asterisk hands an interpolation frame to
//! translators with PLC; Starling's G.711 has none, and Opus conceals on the decoding side only
//! when a packet is missing from its own stream). A timestamp jump past `jbresyncthreshold` is a
//! new timeline, played on from where the old one ends. After 10 slots with nothing to play and
//! nothing held the tick stops until the next frame (a silent or held far end costs nothing).
//!
//! The cost: nothing at all with `jbenable=no` (no `JitterPlayout`, no tick); otherwise one timer
//! wake-up per frame interval while frames flow, on the call's own task.

use std::time::{Duration, Instant};

use starling_core::frame::Frame;
use starling_core::tracing;
use starling_media::jitter::{JitterBuffer, Mode, Playout};

use crate::config::JbConf;

/// Slots in a row with nothing to play (and nothing held) after which the tick stops, as
/// Asterisk's adaptive jitterbuffer stops interpolating after `max_contig_interp` (10).
const IDLE_SLOTS: u32 = 10;

/// Slots played at most in one tick when the task woke up late; past them the schedule starts
/// again from now (a stalled task does not replay seconds of slots).
const CATCH_UP: u32 = 50;

/// The jitter buffer of one call (its task owns it).
pub struct JitterPlayout {
    conf: JbConf,
    /// In a bridge: whether its other party takes jitter itself; `None` outside a bridge.
    bridged: Option<bool>,
    /// The buffer and its tick, while frames flow.
    active: Option<Active>,
    /// For the log lines (the call's Call-ID).
    label: String,
}

struct Active {
    buffer: JitterBuffer,
    format: &'static str,
    /// Samples per frame (the buffer's grid) and its duration (the tick).
    samples: u32,
    interval: Duration,
    next_tick: Instant,
    /// Slots in a row with nothing played.
    idle: u32,
}

impl JitterPlayout {
    /// The call's jitter buffer; `None` with `jbenable=no`.
    pub fn new(conf: &JbConf, label: &str) -> Option<JitterPlayout> {
        conf.enabled.then(|| JitterPlayout { conf: conf.clone(), bridged: None, active: None, label: label.to_owned() })
    }

    /// The call joined a bridge whose other party does or does not take jitter itself
    /// (`Some`), or left it (`None`).
    pub fn set_bridged(&mut self, peer_wants_jitter: Option<bool>) {
        self.bridged = peer_wants_jitter;
        if !self.wanted(false) {
            self.stop();
        }
    }

    /// abstract_jb's rule: not native, and either what the frames go to takes no jitter, or
    /// `jbforce`.
    pub fn wanted(&self, native: bool) -> bool {
        !native
            && match self.bridged {
                Some(true) => self.conf.forced,
                Some(false) | None => true,
            }
    }

    /// When the next frame is due; `None` while there is nothing to play.
    pub fn next_tick(&self) -> Option<Instant> {
        self.active.as_ref().map(|a| a.next_tick)
    }

    /// A voice frame received at `now` with RTP `timestamp` (`samples_per_ms`: the codec's
    /// clock). Buffered (`None`), or handed back to go to the core at once when no buffer is
    /// wanted (`native`: relayed natively) or the frame cannot be timed.
    pub fn put(
        &mut self,
        now: Instant,
        native: bool,
        timestamp: u32,
        samples_per_ms: u32,
        frame: Frame,
    ) -> Option<Frame> {
        if !self.wanted(native) {
            self.stop();
            return Some(frame);
        }
        let Frame::Voice { format, samples, data } = frame else { return Some(frame) };
        // Less than a millisecond a frame (or no clock) cannot be paced: as Asterisk's
        // jitterbuffer takes only frames with timing (`len >= 2`), it passes on.
        if samples_per_ms == 0 || samples < samples_per_ms {
            return Some(Frame::Voice { format, samples, data });
        }
        let fits = self.active.as_ref().is_some_and(|a| a.format == format && a.samples == samples);
        if !fits {
            self.start(now, format, samples, samples_per_ms);
        }
        let active = self.active.as_mut()?;
        active.buffer.put(now, timestamp, &data);
        active.idle = 0;
        None
    }

    /// The tick: hands each frame due by `now` to `send`, in order.
    pub fn poll(&mut self, now: Instant, native: bool, mut send: impl FnMut(Frame)) {
        if !self.wanted(native) {
            self.stop();
            return;
        }
        let Some(active) = self.active.as_mut() else { return };
        let mut slots = 0;
        while now >= active.next_tick {
            slots += 1;
            if slots > CATCH_UP {
                active.next_tick = now + active.interval;
                break;
            }
            active.next_tick += active.interval;
            match active.buffer.get() {
                Playout::Frame(data) => {
                    active.idle = 0;
                    send(Frame::Voice { format: active.format, samples: active.samples, data });
                }
                Playout::Lost | Playout::Buffering => active.idle += 1,
            }
            if active.idle >= IDLE_SLOTS && active.buffer.is_empty() {
                self.stop();
                return;
            }
        }
    }

    fn start(&mut self, now: Instant, format: &'static str, samples: u32, samples_per_ms: u32) {
        let ms = |v: u32| v.saturating_mul(samples_per_ms);
        let mode = if self.conf.adaptive {
            let max = ms(self.conf.max_size).max(samples);
            Mode::Adaptive { min: ms(self.conf.target_extra).max(samples).min(max), max }
        } else {
            Mode::Fixed { delay: ms(self.conf.max_size) }
        };
        let mut buffer = JitterBuffer::new(mode, samples_per_ms.saturating_mul(1000), samples);
        buffer.set_resync_threshold(ms(self.conf.resync_threshold));
        let interval = Duration::from_micros(u64::from(samples) * 1000 / u64::from(samples_per_ms));
        if self.active.is_none() {
            tracing::debug!("{}: {} jitterbuffer created", self.label, self.conf.implementation());
        }
        self.active = Some(Active { buffer, format, samples, interval, next_tick: now + interval, idle: 0 });
    }

    fn stop(&mut self) {
        if let Some(active) = self.active.take() {
            let s = &active.buffer.stats;
            tracing::debug!(
                "{}: {} jitterbuffer destroyed (late {}, lost {}, dropped {}, resyncs {})",
                self.label,
                self.conf.implementation(),
                s.late,
                s.lost,
                s.dropped,
                s.resyncs
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(adaptive: bool, forced: bool) -> JbConf {
        JbConf { enabled: true, forced, max_size: 60, adaptive, ..JbConf::default() }
    }

    fn voice(n: u8) -> Frame {
        Frame::Voice { format: "ulaw", samples: 160, data: vec![n; 160] }
    }

    fn marker(frame: &Frame) -> u8 {
        match frame {
            Frame::Voice { data, .. } => data[0],
            other => panic!("{other:?}"),
        }
    }

    /// Runs the ticks from `from` for `slots` frame intervals; the markers played.
    fn play(jb: &mut JitterPlayout, from: Instant, slots: u32) -> Vec<u8> {
        let mut out = Vec::new();
        for slot in 1..=slots {
            jb.poll(from + Duration::from_millis(u64::from(slot) * 20), false, |f| out.push(marker(&f)));
        }
        out
    }

    #[test]
    fn off_without_jbenable() {
        assert!(JitterPlayout::new(&JbConf::default(), "t").is_none());
    }

    /// abstract_jb's usecheck with chan_sip's properties.
    #[test]
    fn used_as_abstract_jb_decides() {
        let mut jb = JitterPlayout::new(&conf(false, false), "t").unwrap();
        assert!(jb.wanted(false), "to an application");
        assert!(!jb.wanted(true), "never natively relayed");
        jb.set_bridged(Some(false));
        assert!(jb.wanted(false), "bridged to a channel that takes no jitter (Local)");
        jb.set_bridged(Some(true));
        assert!(!jb.wanted(false), "bridged to a SIP leg: only forced");
        let mut forced = JitterPlayout::new(&conf(false, true), "t").unwrap();
        forced.set_bridged(Some(true));
        assert!(forced.wanted(false) && !forced.wanted(true));
        jb.set_bridged(None);
        assert!(jb.wanted(false), "back in the dialplan");
    }

    /// Reordered frames come out in order, a late one is dropped, a missing one is a gap; the
    /// tick stops once nothing is left and starts again with the next frame.
    #[test]
    fn plays_in_order_and_stops_when_idle() {
        let t0 = Instant::now();
        let mut jb = JitterPlayout::new(&conf(false, false), "t").unwrap();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // (All arrive before the first tick: 60 ms, 3 frames, are held at once.)
        // Frames 0..8 arrive every 20 ms, 2 and 3 swapped, 5 never, 6 after its turn.
        for (i, n) in [0u8, 1, 3, 2, 4, 7, 8].into_iter().enumerate() {
            assert!(jb.put(at(i as u64 * 20), false, 1000 + u32::from(n) * 160, 8, voice(n)).is_none());
        }
        assert_eq!(jb.next_tick(), Some(at(20)));
        let mut out = play(&mut jb, t0, 8);
        jb.put(at(170), false, 1000 + 6 * 160, 8, voice(6));
        out.extend(play(&mut jb, at(160), 20));
        assert_eq!(out, [0, 1, 2, 3, 4, 7, 8]);
        assert_eq!(jb.next_tick(), None, "idle: no tick");
        // A new talk spurt starts a new buffer.
        assert!(jb.put(at(800), false, 50_000, 8, voice(9)).is_none());
        assert!(jb.next_tick().is_some());
    }

    /// Passed through at once when not wanted, and the buffer goes.
    #[test]
    fn passes_through_when_not_wanted() {
        let t0 = Instant::now();
        let mut jb = JitterPlayout::new(&conf(true, false), "t").unwrap();
        assert!(jb.put(t0, false, 0, 8, voice(1)).is_none());
        assert!(jb.next_tick().is_some());
        assert_eq!(jb.put(t0, true, 160, 8, voice(2)), Some(voice(2)), "native");
        assert_eq!(jb.next_tick(), None);
        jb.set_bridged(Some(true));
        assert_eq!(jb.put(t0, false, 320, 8, voice(3)), Some(voice(3)), "SIP to SIP, not forced");
        jb.set_bridged(None);
        // No timing: an empty frame, a frame shorter than a millisecond.
        let empty = Frame::Voice { format: "ulaw", samples: 0, data: Vec::new() };
        assert_eq!(jb.put(t0, false, 480, 8, empty.clone()), Some(empty));
        assert_eq!(jb.put(t0, false, 480, 0, voice(4)), Some(voice(4)));
    }

    /// A timestamp jump past jbresyncthreshold plays on in order (not 10 s of gaps).
    #[test]
    fn resyncs_on_a_jump() {
        let t0 = Instant::now();
        let mut jb = JitterPlayout::new(&conf(false, false), "t").unwrap();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        for n in 0..3u8 {
            jb.put(at(u64::from(n) * 20), false, u32::from(n) * 160, 8, voice(n));
        }
        for n in 3..6u8 {
            jb.put(at(u64::from(n) * 20), false, 80_000 + u32::from(n) * 160, 8, voice(n));
        }
        assert_eq!(play(&mut jb, t0, 12), [0, 1, 2, 3, 4, 5]);
    }

    /// A task that wakes up late plays every slot due, in order, at once.
    #[test]
    fn catches_up_after_a_late_wake_up() {
        let t0 = Instant::now();
        let mut jb = JitterPlayout::new(&conf(false, false), "t").unwrap();
        for n in 0..5u8 {
            jb.put(t0, false, u32::from(n) * 160, 8, voice(n));
        }
        let mut out = Vec::new();
        jb.poll(t0 + Duration::from_millis(200), false, |f| out.push(marker(&f)));
        assert_eq!(out, [0, 1, 2, 3, 4]);
    }
}
