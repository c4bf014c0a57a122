//! A jitter buffer for legs whose audio is decoded (never for the native relay): frames go in
//! as they arrive, in any order; one frame comes out per frame interval, in timestamp order,
//! `Lost` where one never came (the decoder conceals it).
//!
//! Fixed: playout starts once `delay` worth of audio is buffered and stays that far behind.
//! Adaptive: the target delay follows the measured jitter (four times it, within `min`..`max`);
//! the buffer shrinks by dropping a frame when it holds too much and grows after an underrun.
//!
//! Resync ([`JitterBuffer::set_resync_threshold`], Asterisk's `jbresyncthreshold`): a frame whose
//! timestamp jumps (forward or back) by more than the threshold from where the stream was is
//! not late or far ahead but a new timeline — the far end restarted its clock. As Asterisk's
//! fixed jitterbuffer (`resynch_jb`), the new timeline continues right after the last frame
//! held; with nothing held the buffer starts over (and fills again).

use std::collections::BTreeMap;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Always this delay, in samples.
    Fixed { delay: u32 },
    /// A delay between `min` and `max` samples that follows the jitter.
    Adaptive { min: u32, max: u32 },
}

/// What one playout tick yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Playout {
    /// Still filling: play silence.
    Buffering,
    Frame(Vec<u8>),
    /// The frame for this slot is missing: conceal.
    Lost,
}

/// Counters for `sip show channelstats`-style output.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JitterStats {
    pub late: u64,
    pub lost: u64,
    pub dropped: u64,
    pub duplicates: u64,
    /// Jumps past the resync threshold taken as a new timeline.
    pub resyncs: u64,
}

pub struct JitterBuffer {
    mode: Mode,
    clock_rate: u32,
    frame: u32,
    /// Frames by extended timestamp (unwrapped relative to the first).
    frames: BTreeMap<i64, Vec<u8>>,
    /// The newest timestamp seen and its extended value, for unwrapping the next.
    base: Option<(u32, i64)>,
    /// A jump (in samples) past which the stream is taken as a new timeline; `None`: never.
    resync: Option<u32>,
    next: Option<i64>,
    target: u32,
    /// RFC 3550-style jitter estimate in samples (×16).
    jitter_q4: u64,
    last_transit: Option<i64>,
    start: Option<Instant>,
    underruns: u32,
    pub stats: JitterStats,
}

impl JitterBuffer {
    /// `frame` samples per packet (160 for 20 ms at 8 kHz) at `clock_rate`.
    pub fn new(mode: Mode, clock_rate: u32, frame: u32) -> JitterBuffer {
        let target = match mode {
            Mode::Fixed { delay } => delay,
            Mode::Adaptive { min, .. } => min,
        };
        JitterBuffer {
            mode,
            clock_rate,
            frame: frame.max(1),
            frames: BTreeMap::new(),
            base: None,
            resync: None,
            next: None,
            target,
            jitter_q4: 0,
            last_transit: None,
            start: None,
            underruns: 0,
            stats: JitterStats::default(),
        }
    }

    /// Whether no frame is held.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The delay the buffer aims for now, in samples.
    pub fn target(&self) -> u32 {
        self.target
    }

    /// Takes a jump of more than `samples` in the timestamps as a new timeline (see the
    /// module's doc); 0 turns resync off.
    pub fn set_resync_threshold(&mut self, samples: u32) {
        self.resync = (samples > 0).then_some(samples);
    }

    /// The extended timestamp of `ts`: the nearest to the newest seen (so a stream may run for
    /// ever, wrapping as often as it likes).
    fn unwrap(&mut self, ts: u32) -> i64 {
        let Some((newest, extended)) = self.base else {
            self.base = Some((ts, 0));
            return 0;
        };
        let t = extended + i64::from(ts.wrapping_sub(newest) as i32);
        if t > extended {
            self.base = Some((ts, t));
        }
        t
    }

    /// Where the stream was: just after the newest frame held, else the playout point.
    fn expected(&self) -> Option<i64> {
        self.frames.last_key_value().map(|(&t, _)| t + i64::from(self.frame)).or(self.next)
    }

    /// A frame arrived at `now` with RTP timestamp `ts`.
    pub fn put(&mut self, now: Instant, ts: u32, payload: &[u8]) {
        let mut t = self.unwrap(ts);
        if let (Some(threshold), Some(expected)) = (self.resync, self.expected()) {
            if (t - expected).unsigned_abs() > u64::from(threshold) {
                self.stats.resyncs += 1;
                self.last_transit = None;
                if self.frames.is_empty() {
                    // Nothing to continue from: start over, filling again.
                    self.next = None;
                    self.start = None;
                    self.base = Some((ts, 0));
                    t = 0;
                } else {
                    // The new timeline continues right after the newest frame held.
                    self.base = Some((ts, expected));
                    t = expected;
                }
            }
        }
        let start = *self.start.get_or_insert(now);
        let arrival = (now.saturating_duration_since(start).as_secs_f64() * f64::from(self.clock_rate)) as i64;
        let transit = arrival - t;
        if let Some(last) = self.last_transit {
            let d = (transit - last).unsigned_abs();
            self.jitter_q4 = self.jitter_q4 + d - ((self.jitter_q4 + 8) >> 4);
        }
        self.last_transit = Some(transit);
        if let Mode::Adaptive { min, max } = self.mode {
            // Saturating: a far end's timestamps can make the jitter anything (2^33 samples).
            let jitter = u32::try_from(self.jitter_q4 >> 4).unwrap_or(u32::MAX);
            let wanted = jitter
                .saturating_mul(4)
                .saturating_add(self.frame.saturating_mul(1 + self.underruns.min(4)))
                .clamp(min, max);
            // Grow at once, shrink slowly (a frame at a time, in get()).
            if wanted > self.target {
                self.target = wanted;
            } else if wanted + self.frame < self.target {
                self.target -= self.frame;
            }
        }
        if self.next.is_some_and(|next| t < next) {
            self.stats.late += 1;
            return;
        }
        if self.frames.insert(t, payload.to_vec()).is_some() {
            self.stats.duplicates += 1;
        }
    }

    /// Called once per frame interval: the frame to play now.
    pub fn get(&mut self) -> Playout {
        let Some(next) = self.next else {
            let (Some((&first, _)), Some((&last, _))) = (self.frames.first_key_value(), self.frames.last_key_value())
            else {
                return Playout::Buffering;
            };
            if (last - first + i64::from(self.frame)) < i64::from(self.target) {
                return Playout::Buffering;
            }
            self.next = Some(first);
            return self.get();
        };
        // Too much buffered for the target: skip frames (adaptive shrink), as many as it takes
        // at once — a far end whose timestamp jumps by 2^31 is 13 million frames ahead, which
        // a frame at a time (this used to recurse per frame) overflowed the stack.
        let mut next = next;
        if let (Mode::Adaptive { .. }, Some((&last, _))) = (self.mode, self.frames.last_key_value()) {
            let (frame, limit) = (i64::from(self.frame), i64::from(self.target + 2 * self.frame));
            let held = last - next + frame;
            if held > limit {
                let skipped = (held - limit + frame - 1) / frame;
                next += skipped * frame;
                self.stats.dropped += skipped as u64;
            }
        }
        // Frames before the playout point are never played (skipped, or off the frame grid).
        while self.frames.first_key_value().is_some_and(|(&t, _)| t < next) {
            self.frames.pop_first();
        }
        self.next = Some(next + i64::from(self.frame));
        match self.frames.remove(&next) {
            Some(frame) => {
                self.underruns = self.underruns.saturating_sub(1);
                Playout::Frame(frame)
            }
            None => {
                self.stats.lost += 1;
                self.underruns += 1;
                Playout::Lost
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reorders_and_reports_loss() {
        let start = Instant::now();
        let mut jb = JitterBuffer::new(Mode::Fixed { delay: 480 }, 8000, 160);
        // Frames 0..6 arrive out of order, frame 3 never comes.
        for (i, n) in [0u32, 2, 1, 4, 5, 6].iter().enumerate() {
            jb.put(start + Duration::from_millis(i as u64 * 20), 1000 + n * 160, &[*n as u8]);
        }
        let out: Vec<Playout> = (0..7).map(|_| jb.get()).collect();
        assert_eq!(
            out,
            [
                Playout::Frame(vec![0]),
                Playout::Frame(vec![1]),
                Playout::Frame(vec![2]),
                Playout::Lost,
                Playout::Frame(vec![4]),
                Playout::Frame(vec![5]),
                Playout::Frame(vec![6]),
            ]
        );
        assert_eq!(jb.stats.lost, 1);
        // A frame older than the playout point is late.
        jb.put(start, 1000, &[0]);
        assert_eq!(jb.stats.late, 1);
    }

    #[test]
    fn buffers_until_the_delay_is_reached_and_timestamps_wrap() {
        let start = Instant::now();
        let mut jb = JitterBuffer::new(Mode::Fixed { delay: 480 }, 8000, 160);
        jb.put(start, u32::MAX - 159, &[1]); // then 0 and 160: the timestamp wraps
        assert_eq!(jb.get(), Playout::Buffering);
        jb.put(start, 0, &[2]);
        assert_eq!(jb.get(), Playout::Buffering);
        jb.put(start, 160, &[3]);
        assert_eq!(jb.get(), Playout::Frame(vec![1]));
        assert_eq!(jb.get(), Playout::Frame(vec![2]));
        assert_eq!(jb.get(), Playout::Frame(vec![3]));
    }

    /// Found by fuzz/ (rtp): a timestamp jump of 2^31 made get() recurse once per frame
    /// skipped (13 million deep) and overflow the stack.
    #[test]
    fn a_timestamp_jump_is_skipped_at_once() {
        let start = Instant::now();
        let mut jb = JitterBuffer::new(Mode::Adaptive { min: 160, max: 1600 }, 8000, 160);
        let jump = 160 * 13_000_000; // just under 2^31
        jb.put(start, 0, &[1]);
        jb.put(start + Duration::from_millis(20), jump, &[2]);
        jb.put(start + Duration::from_millis(40), jump + 7, &[3]); // off the frame grid
        assert_eq!(jb.target(), 1600, "the jitter seen takes the target to its max");
        // The playout point goes at once to the target (+ 2 frames) before the newest frame.
        let out: Vec<Playout> = (0..12).map(|_| jb.get()).collect();
        assert_eq!(out[..10], [const { Playout::Lost }; 10]);
        assert_eq!(out[10], Playout::Frame(vec![2]));
        assert_eq!(out[11], Playout::Lost, "the frame off the grid is never played");
        assert_eq!(jb.stats.dropped, u64::from(jump / 160) - 10);
        assert!(jb.frames.is_empty());
    }

    /// Found by fuzz/ (rtp): timestamps swinging by 2^31 made the jitter ×4 overflow.
    #[test]
    fn any_jitter_is_clamped_not_overflowed() {
        let start = Instant::now();
        let mut jb = JitterBuffer::new(Mode::Adaptive { min: 160, max: 1600 }, 8000, 160);
        for n in 0..64u32 {
            jb.put(start + Duration::from_millis(u64::from(n)), if n % 2 == 0 { 0 } else { 0x7fff_ffff }, &[0]);
        }
        assert_eq!(jb.target(), 1600);
    }

    /// A far end that restarts its clock (a jump past the threshold) goes on right after the
    /// newest frame held, as Asterisk's fixed jitterbuffer resyncs; without a threshold the jump
    /// would be a wait of 10 s of lost frames.
    #[test]
    fn a_jump_past_the_threshold_resyncs() {
        let start = Instant::now();
        let mut jb = JitterBuffer::new(Mode::Fixed { delay: 320 }, 8000, 160);
        jb.set_resync_threshold(8000); // 1 s
        for n in 0..3u32 {
            jb.put(start, 5000 + n * 160, &[n as u8]);
        }
        assert_eq!(jb.get(), Playout::Frame(vec![0]));
        // The clock jumps 10 s ahead (and again back): each goes on right after frame 2.
        jb.put(start, 5000 + 80_000, &[3]);
        jb.put(start, 5000 + 80_160, &[4]);
        jb.put(start, 7, &[5]);
        assert_eq!(jb.stats.resyncs, 2);
        let out: Vec<Playout> = (0..5).map(|_| jb.get()).collect();
        let frames: Vec<Playout> = (1..6).map(|n| Playout::Frame(vec![n])).collect();
        assert_eq!(out, frames);
        // A jump within the threshold is only a gap.
        jb.put(start, 7 + 160 * 3, &[6]);
        assert_eq!(jb.stats.resyncs, 2);
        assert_eq!([jb.get(), jb.get(), jb.get()], [Playout::Lost, Playout::Lost, Playout::Frame(vec![6])]);
        // With nothing held the buffer starts over: it fills again first.
        jb.put(start, 1_000_000, &[7]);
        assert_eq!(jb.stats.resyncs, 3);
        assert_eq!(jb.get(), Playout::Buffering);
        jb.put(start, 1_000_160, &[8]);
        assert_eq!(jb.get(), Playout::Frame(vec![7]));
    }

    /// Timestamps are unwrapped against the newest seen, so a stream may wrap many times.
    #[test]
    fn a_long_stream_wraps_many_times() {
        let start = Instant::now();
        let step = 1u32 << 30; // frames of 2^30 samples: the timestamp wraps every 4 frames
        let mut jb = JitterBuffer::new(Mode::Fixed { delay: step }, 8000, step);
        for n in 0..12u32 {
            jb.put(start, n.wrapping_mul(step), &[n as u8]);
            assert_eq!(jb.get(), Playout::Frame(vec![n as u8]), "frame {n}");
        }
        assert_eq!(jb.stats.late + jb.stats.lost, 0);
    }

    #[test]
    fn adaptive_grows_with_jitter() {
        let start = Instant::now();
        let mut jb = JitterBuffer::new(Mode::Adaptive { min: 160, max: 1600 }, 8000, 160);
        for n in 0..100u32 {
            // Arrivals wobble by ±30 ms around the 20 ms grid.
            let wobble = if n % 2 == 0 { 0 } else { 30 };
            jb.put(start + Duration::from_millis(u64::from(n) * 20 + wobble), n * 160, &[0]);
        }
        assert!(jb.target() >= 480, "target {} samples", jb.target());
        assert!(jb.target() <= 1600);
    }
}
