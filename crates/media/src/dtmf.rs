//! DTMF: RFC 4733 telephone-events (receive and send), and inband detection (Goertzel).
//!
//! An RFC 4733 event is a run of RTP packets with the same timestamp (the event's start); the
//! duration grows in each, and the last three carry the End bit. [`EventReceiver`] turns such
//! packets into one `Begin` and one `End` per key press, whatever is lost or repeated;
//! [`EventSender`] makes the packets for a key press. [`InbandDetector`] finds DTMF in audio
//! (for `dtmfmode=inband`) with the Goertzel algorithm over 102-sample blocks at 8 kHz.

/// The payload of one telephone-event packet (RFC 4733 §2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventPayload {
    pub event: u8,
    pub end: bool,
    pub volume: u8,
    pub duration: u16,
}

impl EventPayload {
    pub fn parse(payload: &[u8]) -> Option<EventPayload> {
        let b: &[u8; 4] = payload.get(..4)?.try_into().ok()?;
        Some(EventPayload {
            event: b[0],
            end: b[1] & 0x80 != 0,
            volume: b[1] & 0x3f,
            duration: u16::from_be_bytes([b[2], b[3]]),
        })
    }

    pub fn to_bytes(self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [self.event, (u8::from(self.end) << 7) | (self.volume & 0x3f), d[0], d[1]]
    }
}

/// The key of an event code (0–9, `*`, `#`, A–D; 16 is hook flash, shown as `!`).
pub fn event_to_digit(event: u8) -> Option<char> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + event - 12)),
        16 => Some('!'),
        _ => None,
    }
}

/// The event code of a key.
pub fn digit_to_event(digit: char) -> Option<u8> {
    match digit.to_ascii_uppercase() {
        d @ '0'..='9' => Some(d as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        d @ 'A'..='D' => Some(d as u8 - b'A' + 12),
        '!' => Some(16),
        _ => None,
    }
}

/// A key press, as it starts and ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtmfEvent {
    Begin(char),
    /// The key was released after `duration` samples.
    End {
        digit: char,
        duration: u32,
    },
}

/// Turns received telephone-event packets into key presses.
#[derive(Debug, Default)]
pub struct EventReceiver {
    /// The event being received: its RTP timestamp, digit, and whether its End was seen.
    current: Option<(u32, char, bool)>,
    last_duration: u32,
}

impl EventReceiver {
    /// Takes one packet (its RTP timestamp and payload); returns what it means, if anything
    /// new. A new event that arrives before the old one's End ends the old one first.
    pub fn handle(&mut self, timestamp: u32, payload: &[u8], out: &mut Vec<DtmfEvent>) {
        let Some(p) = EventPayload::parse(payload) else { return };
        let Some(digit) = event_to_digit(p.event) else { return };
        match self.current {
            Some((ts, _, ended)) if ts == timestamp => {
                self.last_duration = self.last_duration.max(u32::from(p.duration));
                if p.end && !ended {
                    self.current = Some((ts, digit, true));
                    out.push(DtmfEvent::End { digit, duration: self.last_duration });
                }
            }
            previous => {
                if let Some((_, old, false)) = previous {
                    out.push(DtmfEvent::End { digit: old, duration: self.last_duration });
                }
                self.current = Some((timestamp, digit, p.end));
                self.last_duration = u32::from(p.duration);
                out.push(DtmfEvent::Begin(digit));
                if p.end {
                    out.push(DtmfEvent::End { digit, duration: self.last_duration });
                }
            }
        }
    }

    /// The event still held down, if its End never came (the caller times it out).
    pub fn pending(&self) -> Option<char> {
        self.current.filter(|(_, _, ended)| !ended).map(|(_, d, _)| d)
    }
}

/// The packets of one key press: one per `packet_samples`, then three End packets.
#[derive(Clone, Debug)]
pub struct EventSender {
    event: u8,
    total: u32,
    step: u32,
    sent: u32,
    ends_left: u8,
}

impl EventSender {
    /// A press of `digit` lasting `duration` samples (e.g. 800 = 100 ms at 8 kHz), sent every
    /// `packet_samples` (160 = 20 ms). `None` for a character that is not a DTMF key.
    pub fn new(digit: char, duration: u32, packet_samples: u32) -> Option<EventSender> {
        Some(EventSender {
            event: digit_to_event(digit)?,
            total: duration.clamp(packet_samples.max(1), 0xffff),
            step: packet_samples.max(1),
            sent: 0,
            ends_left: 3,
        })
    }

    /// The next payload and whether it carries the marker bit (only the first does); `None`
    /// when the press is fully sent. All packets of one press share one RTP timestamp.
    pub fn next_packet(&mut self) -> Option<([u8; 4], bool)> {
        let first = self.sent == 0;
        if self.sent < self.total {
            self.sent = (self.sent + self.step).min(self.total);
            let end = self.sent == self.total;
            if end {
                self.ends_left -= 1;
            }
            let p = EventPayload { event: self.event, end, volume: 10, duration: self.sent as u16 };
            return Some((p.to_bytes(), first));
        }
        if self.ends_left == 0 {
            return None;
        }
        self.ends_left -= 1;
        let p = EventPayload { event: self.event, end: true, volume: 10, duration: self.total as u16 };
        Some((p.to_bytes(), false))
    }
}

/// Inband DTMF detection at 8 kHz, as Asterisk's dsp.c (`dtmf_detect`): Goertzel over
/// 102-sample blocks (12.75 ms). A block holds a key when its strongest row and column tones
/// are each above [`DTMF_THRESHOLD`], within the twist limits (the row at most 8 dB above the
/// column, the column at most 4 dB above the row), each 8 dB above the other tones of its
/// group, and together most of the block's energy ([`DTMF_TO_TOTAL_ENERGY`]). A key begins
/// after [`DTMF_HITS_TO_BEGIN`] blocks in a row and ends after [`DTMF_MISSES_TO_END`] blocks
/// without it (a short dropout or a burst of noise inside a press is not a second press).
#[derive(Debug, Default)]
pub struct InbandDetector {
    block: Vec<f32>,
    /// The key of the last block, and how many blocks in a row held it.
    last_hit: Option<char>,
    hits: u32,
    /// The key being heard (reported by a `Begin`), and the blocks without it since.
    reported: Option<char>,
    misses: u32,
}

const ROWS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
const COLUMNS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const KEYS: [[char; 4]; 4] = [['1', '2', '3', 'A'], ['4', '5', '6', 'B'], ['7', '8', '9', 'C'], ['*', '0', '#', 'D']];
/// dsp.c's `DTMF_GSIZE`.
const BLOCK: usize = 102;
/// The least Goertzel power of each tone (dsp.c's `DTMF_THRESHOLD`: a tone of amplitude ~175).
pub const DTMF_THRESHOLD: f32 = 8.0e7;
/// The row may be this much (8 dB) stronger than the column (dsp.c's `DTMF_NORMAL_TWIST`).
pub const DTMF_NORMAL_TWIST: f32 = 6.31;
/// The column may be this much (4 dB) stronger than the row (dsp.c's `DTMF_REVERSE_TWIST`).
pub const DTMF_REVERSE_TWIST: f32 = 2.51;
/// Each tone must be this much (8 dB) stronger than the others of its group.
pub const DTMF_RELATIVE_PEAK: f32 = 6.3;
/// The two tones' power against the block's energy (dsp.c's `DTMF_TO_TOTAL_ENERGY`; two clean
/// tones give about 51).
pub const DTMF_TO_TOTAL_ENERGY: f32 = 42.0;
pub const DTMF_HITS_TO_BEGIN: u32 = 2;
pub const DTMF_MISSES_TO_END: u32 = 3;

fn goertzel(samples: &[f32], frequency: f32) -> f32 {
    let coefficient = 2.0 * (2.0 * std::f32::consts::PI * frequency / 8000.0).cos();
    let (mut s1, mut s2) = (0.0f32, 0.0f32);
    for x in samples {
        let s = x + coefficient * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    s1 * s1 + s2 * s2 - coefficient * s1 * s2
}

impl InbandDetector {
    pub fn new() -> InbandDetector {
        InbandDetector { block: Vec::with_capacity(BLOCK), ..Default::default() }
    }

    /// Feeds 8 kHz linear samples; pushes a `Begin` when a key has been present for two blocks
    /// (~25 ms) and an `End` when it has been gone for three (or another key begins).
    pub fn feed(&mut self, samples: &[i16], out: &mut Vec<DtmfEvent>) {
        for s in samples {
            self.block.push(f32::from(*s));
            if self.block.len() == BLOCK {
                let digit = classify(&self.block);
                self.block.clear();
                self.step(digit, out);
            }
        }
    }

    /// The key heard now (between its `Begin` and its `End`), if any.
    pub fn pressed(&self) -> Option<char> {
        self.reported
    }

    /// The audio stopped (a sender that sends nothing after a key): ends the key being heard.
    pub fn flush(&mut self, out: &mut Vec<DtmfEvent>) {
        self.block.clear();
        self.last_hit = None;
        self.hits = 0;
        self.misses = 0;
        if let Some(digit) = self.reported.take() {
            out.push(DtmfEvent::End { digit, duration: 0 });
        }
    }

    /// dsp.c's hit logic: `-ABB` begins B, `BBBBABB` stays in B, `BBB---` ends B, `BBBCC`
    /// ends B and begins C.
    fn step(&mut self, hit: Option<char>, out: &mut Vec<DtmfEvent>) {
        if let Some(current) = self.reported {
            if hit == Some(current) {
                self.misses = 0;
            } else {
                self.misses += 1;
                if self.misses >= DTMF_MISSES_TO_END {
                    self.reported = None;
                    out.push(DtmfEvent::End { digit: current, duration: 0 });
                }
            }
        }
        if hit != self.last_hit {
            self.last_hit = hit;
            self.hits = 0;
        }
        if let Some(digit) = hit.filter(|d| Some(*d) != self.reported) {
            self.hits += 1;
            if self.hits == DTMF_HITS_TO_BEGIN {
                if let Some(current) = self.reported.take() {
                    out.push(DtmfEvent::End { digit: current, duration: 0 });
                }
                self.reported = Some(digit);
                self.misses = 0;
                out.push(DtmfEvent::Begin(digit));
            }
        }
    }
}

/// The key one block holds, if any (see [`InbandDetector`]).
fn classify(block: &[f32]) -> Option<char> {
    let energy: f32 = block.iter().map(|x| x * x).sum();
    let best = |freqs: &[f32; 4]| {
        let powers = freqs.map(|f| goertzel(block, f));
        let i = (0..4).fold(0, |b, i| if powers[i] > powers[b] { i } else { b });
        let peak = (0..4).filter(|j| *j != i).all(|j| powers[j] * DTMF_RELATIVE_PEAK <= powers[i]);
        (i, powers[i], peak)
    };
    let (r, row, row_peak) = best(&ROWS);
    let (c, col, col_peak) = best(&COLUMNS);
    let ok = row >= DTMF_THRESHOLD
        && col >= DTMF_THRESHOLD
        && col < row * DTMF_REVERSE_TWIST
        && row < col * DTMF_NORMAL_TWIST
        && row_peak
        && col_peak
        && row + col > DTMF_TO_TOTAL_ENERGY * energy;
    ok.then_some(KEYS[r][c])
}

/// 8 kHz linear samples of a DTMF key (both tones, each at about -10 dBm0).
pub fn tone(digit: char, samples: usize) -> Option<Vec<i16>> {
    let (r, c) = KEYS
        .iter()
        .enumerate()
        .find_map(|(r, row)| row.iter().position(|k| *k == digit.to_ascii_uppercase()).map(|c| (r, c)))?;
    let (f1, f2) = (ROWS[r], COLUMNS[c]);
    Some(
        (0..samples)
            .map(|n| {
                let t = n as f32 / 8000.0;
                (5000.0 * (2.0 * std::f32::consts::PI * f1 * t).sin()
                    + 5000.0 * (2.0 * std::f32::consts::PI * f2 * t).sin()) as i16
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_and_digits() {
        let p = EventPayload { event: 11, end: true, volume: 10, duration: 800 };
        assert_eq!(EventPayload::parse(&p.to_bytes()), Some(p));
        assert_eq!(EventPayload::parse(&[1, 2]), None);
        for d in "0123456789*#ABCD!".chars() {
            assert_eq!(event_to_digit(digit_to_event(d).unwrap()), Some(d));
        }
        assert_eq!(digit_to_event('x'), None);
    }

    #[test]
    fn a_sent_press_is_received_once_even_with_repeated_ends() {
        let mut sender = EventSender::new('5', 800, 160).unwrap();
        let mut receiver = EventReceiver::default();
        let mut events = Vec::new();
        let mut packets = 0;
        let mut markers = 0;
        while let Some((payload, marker)) = sender.next_packet() {
            packets += 1;
            markers += usize::from(marker);
            receiver.handle(4000, &payload, &mut events);
        }
        assert_eq!(packets, 5 + 2, "five growing packets, the last an End, then two more Ends");
        assert_eq!(markers, 1);
        assert_eq!(events, [DtmfEvent::Begin('5'), DtmfEvent::End { digit: '5', duration: 800 }]);
        assert_eq!(receiver.pending(), None);
    }

    #[test]
    fn lost_first_packets_and_lost_ends() {
        let mut receiver = EventReceiver::default();
        let mut events = Vec::new();
        // Only the End packets of '7' arrive.
        let end = EventPayload { event: 7, end: true, volume: 10, duration: 480 }.to_bytes();
        receiver.handle(100, &end, &mut events);
        receiver.handle(100, &end, &mut events);
        // '8' starts; its End is lost, then '9' starts.
        receiver.handle(900, &EventPayload { event: 8, end: false, volume: 10, duration: 160 }.to_bytes(), &mut events);
        receiver.handle(
            2000,
            &EventPayload { event: 9, end: false, volume: 10, duration: 160 }.to_bytes(),
            &mut events,
        );
        assert_eq!(
            events,
            [
                DtmfEvent::Begin('7'),
                DtmfEvent::End { digit: '7', duration: 480 },
                DtmfEvent::Begin('8'),
                DtmfEvent::End { digit: '8', duration: 160 },
                DtmfEvent::Begin('9'),
            ]
        );
        assert_eq!(receiver.pending(), Some('9'));
    }

    #[test]
    fn inband_detection_finds_every_key_and_ignores_speechlike_tones() {
        for d in "123A456B789C*0#D".chars() {
            let mut detector = InbandDetector::new();
            let mut events = Vec::new();
            let mut audio = tone(d, 800).unwrap();
            audio.extend(std::iter::repeat_n(0, 400));
            detector.feed(&audio, &mut events);
            assert_eq!(events, [DtmfEvent::Begin(d), DtmfEvent::End { digit: d, duration: 0 }], "{d}");
        }
        let mut detector = InbandDetector::new();
        let mut events = Vec::new();
        let a440: Vec<i16> = (0..8000)
            .map(|n| (8000.0 * (2.0 * std::f32::consts::PI * 440.0 * n as f32 / 8000.0).sin()) as i16)
            .collect();
        detector.feed(&a440, &mut events);
        assert!(events.is_empty(), "a 440 Hz tone is not DTMF: {events:?}");
        // A key and then no audio at all: the key ends when the caller flushes.
        detector.feed(&tone('7', 400).unwrap(), &mut events);
        assert_eq!((events.as_slice(), detector.pressed()), (&[DtmfEvent::Begin('7')][..], Some('7')));
        detector.flush(&mut events);
        assert_eq!(events.last(), Some(&DtmfEvent::End { digit: '7', duration: 0 }));
        assert_eq!(detector.pressed(), None);
    }

    /// `samples` of a row tone at `row_amp` and a column tone at `col_amp`, then `gap` of silence.
    fn tones(row: f32, row_amp: f32, col: f32, col_amp: f32, samples: usize) -> Vec<i16> {
        (0..samples)
            .map(|n| {
                let t = n as f32 / 8000.0;
                (row_amp * (2.0 * std::f32::consts::PI * row * t).sin()
                    + col_amp * (2.0 * std::f32::consts::PI * col * t).sin()) as i16
            })
            .collect()
    }

    fn detect(audio: &[i16]) -> Vec<DtmfEvent> {
        let mut detector = InbandDetector::new();
        let mut events = Vec::new();
        detector.feed(audio, &mut events);
        detector.feed(&[0; 800], &mut events);
        events
    }

    fn db(x: f32) -> f32 {
        10f32.powf(x / 20.0)
    }

    /// '5' (770 + 1336 Hz), 100 ms, with the column `col_db` against the row.
    fn five_with_twist(col_db: f32) -> Vec<DtmfEvent> {
        detect(&tones(770.0, 6000.0, 1336.0, 6000.0 * db(col_db), 800))
    }

    #[test]
    fn twist_limits_as_dsp_c() {
        let five = [DtmfEvent::Begin('5'), DtmfEvent::End { digit: '5', duration: 0 }];
        // Normal twist (the row louder, as a line loses highs): up to 8 dB.
        assert_eq!(five_with_twist(-7.0), five);
        assert_eq!(five_with_twist(-9.5), []);
        // Reverse twist (the column louder): up to 4 dB.
        assert_eq!(five_with_twist(3.0), five);
        assert_eq!(five_with_twist(5.5), []);
    }

    #[test]
    fn levels_and_noise() {
        let five = [DtmfEvent::Begin('5'), DtmfEvent::End { digit: '5', duration: 0 }];
        // Quiet but above the threshold (~-35 dBm0 per tone), and too quiet.
        assert_eq!(detect(&tones(770.0, 400.0, 1336.0, 400.0, 800)), five);
        assert_eq!(detect(&tones(770.0, 100.0, 1336.0, 100.0, 800)), []);
        // White noise (a fixed LCG): 20 dB under the tones is heard through, at the tones'
        // level it is not DTMF (too little of the energy in the two tones).
        let noisy = |amplitude: f32| {
            let mut state = 12345u32;
            tones(770.0, 5000.0, 1336.0, 5000.0, 800)
                .into_iter()
                .map(|x| {
                    state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    let noise = ((state >> 16) as f32 / 32768.0 - 1.0) * amplitude * 3f32.sqrt();
                    (f32::from(x) + noise) as i16
                })
                .collect::<Vec<i16>>()
        };
        assert_eq!(detect(&noisy(500.0)), five);
        assert_eq!(detect(&noisy(5000.0)), []);
        // A third tone near a row (a chord, speech) breaks the relative peak test.
        let mut chord = tones(770.0, 5000.0, 1336.0, 5000.0, 800);
        for (x, y) in chord.iter_mut().zip(tones(852.0, 4000.0, 0.0, 0.0, 800)) {
            *x = x.saturating_add(y);
        }
        assert_eq!(detect(&chord), []);
    }

    #[test]
    fn hits_to_begin_and_misses_to_end() {
        // 20 ms cannot fill two blocks: no key.
        assert_eq!(detect(&tone('5', 160).unwrap()), []);
        // 40 ms (as the shortest key ITU-T Q.24 asks to detect) is a key.
        assert_eq!(
            detect(&tone('5', 320).unwrap()),
            [DtmfEvent::Begin('5'), DtmfEvent::End { digit: '5', duration: 0 }]
        );
        // A 15 ms dropout inside a press is one press; a 60 ms gap is two.
        let mut audio = tone('5', 480).unwrap();
        audio.extend(std::iter::repeat_n(0, 120));
        audio.extend(tone('5', 480).unwrap());
        assert_eq!(detect(&audio), [DtmfEvent::Begin('5'), DtmfEvent::End { digit: '5', duration: 0 }]);
        let mut audio = tone('5', 480).unwrap();
        audio.extend(std::iter::repeat_n(0, 480));
        audio.extend(tone('5', 480).unwrap());
        assert_eq!(detect(&audio).len(), 4);
        // One key straight after another ends the first and begins the second.
        let mut audio = tone('1', 480).unwrap();
        audio.extend(tone('9', 480).unwrap());
        assert_eq!(
            detect(&audio),
            [
                DtmfEvent::Begin('1'),
                DtmfEvent::End { digit: '1', duration: 0 },
                DtmfEvent::Begin('9'),
                DtmfEvent::End { digit: '9', duration: 0 }
            ]
        );
    }

    /// Keys through G.711 (what a leg decodes) are still keys.
    #[test]
    fn keys_survive_ulaw() {
        for d in "0123456789*#".chars() {
            let linear = tone(d, 800).unwrap();
            let mut coded = vec![0u8; linear.len()];
            crate::g711::encode_ulaw(&linear, &mut coded);
            let mut decoded = vec![0i16; coded.len()];
            crate::g711::decode_ulaw(&coded, &mut decoded);
            assert_eq!(detect(&decoded), [DtmfEvent::Begin(d), DtmfEvent::End { digit: d, duration: 0 }], "{d}");
        }
    }
}
