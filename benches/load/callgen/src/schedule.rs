//! When calls start, and when each call's packets go out: pure arithmetic, no clock.
//!
//! Call `k` is due `k / rate` seconds after the start, and starts then unless `concurrent`
//! calls are in progress (then as soon as one ends: late calls catch up). Media runs on a
//! 1 ms tick grid; each stream has a phase (its index modulo 20) and sends on the ticks
//! `t ≡ phase (mod 20)` from its first tick at or after its start, until its stop tick
//! (excluded): the calls' packets are spread evenly over each 20 ms.

use std::time::Duration;

/// Packet period in ticks (ms).
pub const PERIOD: u64 = 20;

/// The call schedule.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// Calls per second.
    pub rate: f64,
    /// The most calls in progress at once.
    pub concurrent: u32,
    /// Calls in all (`--calls`), or no more than `rate × duration`.
    pub total: u64,
    /// No call starts after this (`--duration`).
    pub until: Option<Duration>,
}

/// What to do about the next call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Start it now.
    Start,
    /// It is due at this offset from the start.
    At(Duration),
    /// Due, but `concurrent` calls are in progress.
    Full,
    /// Every call has been started.
    Done,
}

impl Schedule {
    pub fn new(rate: f64, concurrent: u32, calls: Option<u64>, duration: Option<Duration>) -> Schedule {
        let total = match (calls, duration) {
            (Some(c), _) => c,
            (None, Some(d)) => (d.as_secs_f64() * rate).ceil() as u64,
            (None, None) => u64::MAX,
        };
        Schedule { rate, concurrent, total, until: duration }
    }

    /// When call `k` is due, from the start.
    pub fn due(&self, k: u64) -> Duration {
        Duration::from_secs_f64(k as f64 / self.rate)
    }

    /// The next call is number `started`; `in_progress` calls are not over; `elapsed` since the start.
    pub fn next(&self, started: u64, in_progress: u32, elapsed: Duration) -> Next {
        if started >= self.total || self.until.is_some_and(|u| elapsed >= u) {
            return Next::Done;
        }
        let due = self.due(started);
        if due > elapsed {
            Next::At(due)
        } else if in_progress >= self.concurrent {
            Next::Full
        } else {
            Next::Start
        }
    }
}

/// A stream's phase on the 20 ms grid.
pub fn phase(index: u32) -> u64 {
    u64::from(index) % PERIOD
}

/// The first tick at or after `tick` in `phase`.
pub fn first_tick(tick: u64, phase: u64) -> u64 {
    let base = tick - tick % PERIOD + phase;
    if base >= tick {
        base
    } else {
        base + PERIOD
    }
}

/// The packets a stream sends from `first` (in phase) up to `stop` (excluded).
#[cfg(test)]
pub fn packets(first: u64, stop: u64) -> u64 {
    if stop <= first {
        0
    } else {
        (stop - first).div_ceil(PERIOD)
    }
}

/// The tick (ms from the epoch) of an offset, rounded up.
pub fn tick_of(offset: Duration) -> u64 {
    offset.as_nanos().div_ceil(1_000_000) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_and_limit() {
        let s = Schedule::new(10.0, 2, Some(3), None);
        assert_eq!(s.next(0, 0, Duration::ZERO), Next::Start);
        assert_eq!(s.next(1, 1, Duration::from_millis(50)), Next::At(Duration::from_millis(100)));
        assert_eq!(s.next(1, 1, Duration::from_millis(100)), Next::Start);
        assert_eq!(s.next(2, 2, Duration::from_millis(250)), Next::Full);
        assert_eq!(s.next(2, 1, Duration::from_millis(250)), Next::Start);
        assert_eq!(s.next(3, 0, Duration::from_secs(9)), Next::Done);
    }

    #[test]
    fn duration_bounds_the_starts() {
        let s = Schedule::new(30.0, 600, None, Some(Duration::from_secs(40)));
        assert_eq!(s.total, 1200);
        assert_eq!(s.next(1199, 0, Duration::from_millis(39_967)), Next::Start);
        assert_eq!(s.next(1000, 0, Duration::from_secs(40)), Next::Done);
    }

    #[test]
    fn phases_spread_the_calls() {
        let mut per_tick = [0u32; PERIOD as usize];
        for i in 0..1800 {
            per_tick[phase(i) as usize] += 1;
        }
        assert!(per_tick.iter().all(|&n| n == 90));
    }

    #[test]
    fn first_tick_is_in_phase_and_not_early() {
        assert_eq!(first_tick(100, 0), 100);
        assert_eq!(first_tick(100, 5), 105);
        assert_eq!(first_tick(107, 5), 125);
        assert_eq!(first_tick(105, 5), 105);
        for t in 0..60 {
            for p in 0..PERIOD {
                let f = first_tick(t, p);
                assert!(f >= t && f < t + PERIOD && f % PERIOD == p);
            }
        }
    }

    #[test]
    fn packet_counts() {
        assert_eq!(packets(100, 100), 0);
        assert_eq!(packets(100, 101), 1);
        assert_eq!(packets(100, 120), 1);
        assert_eq!(packets(100, 121), 2);
        // A 5 s call: media from ACK + 200 ms to BYE - 300 ms = 4.5 s = 225 packets.
        let first = first_tick(200, 3);
        assert_eq!(packets(first, 4700), 225);
        assert_eq!(tick_of(Duration::from_micros(1500)), 2);
        assert_eq!(tick_of(Duration::from_millis(7)), 7);
    }
}
