//! Translation between audio formats, as Asterisk's translator matrix: each direct step has a
//! cost, a path between two formats is the cheapest chain of steps (Dijkstra over the few
//! formats), and `core show translation` prints the table of path costs.

use std::fmt::Write as _;

use crate::g711;
use crate::opus::{OpusCodec, OpusError, OpusParams};
use crate::resample::Resampler;

/// The formats a call's audio can be in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AudioFormat {
    Ulaw,
    Alaw,
    Opus,
    /// Signed linear at 8, 16 and 48 kHz (Asterisk's slin, slin16, slin48).
    Slin8,
    Slin16,
    Slin48,
}

impl AudioFormat {
    pub const ALL: [AudioFormat; 6] = [
        AudioFormat::Ulaw,
        AudioFormat::Alaw,
        AudioFormat::Opus,
        AudioFormat::Slin8,
        AudioFormat::Slin16,
        AudioFormat::Slin48,
    ];

    /// Asterisk's name for it.
    pub fn name(self) -> &'static str {
        match self {
            AudioFormat::Ulaw => "ulaw",
            AudioFormat::Alaw => "alaw",
            AudioFormat::Opus => "opus",
            AudioFormat::Slin8 => "slin",
            AudioFormat::Slin16 => "slin16",
            AudioFormat::Slin48 => "slin48",
        }
    }

    /// The format Asterisk calls `name` (`ulaw`, `slin16`...).
    pub fn from_name(name: &str) -> Option<AudioFormat> {
        AudioFormat::ALL.into_iter().find(|f| f.name() == name)
    }

    pub fn rate(self) -> u32 {
        match self {
            AudioFormat::Ulaw | AudioFormat::Alaw | AudioFormat::Slin8 => 8000,
            AudioFormat::Slin16 => 16000,
            AudioFormat::Opus | AudioFormat::Slin48 => 48000,
        }
    }

    fn is_linear(self) -> bool {
        matches!(self, AudioFormat::Slin8 | AudioFormat::Slin16 | AudioFormat::Slin48)
    }
}

/// The direct steps and their costs (relative CPU per second of audio).
fn step_cost(from: AudioFormat, to: AudioFormat) -> Option<u32> {
    use AudioFormat::*;
    match (from, to) {
        (Ulaw | Alaw, Slin8) | (Slin8, Ulaw | Alaw) => Some(1),
        (Opus, Slin8 | Slin16 | Slin48) => Some(15),
        (Slin8 | Slin16 | Slin48, Opus) => Some(30),
        (a, b) if a != b && a.is_linear() && b.is_linear() => Some(4),
        _ => None,
    }
}

/// The cheapest chain of formats from `from` to `to` (both included), with its cost.
pub fn path(from: AudioFormat, to: AudioFormat) -> Option<(Vec<AudioFormat>, u32)> {
    let n = AudioFormat::ALL.len();
    let index = |f: AudioFormat| AudioFormat::ALL.iter().position(|x| *x == f).unwrap_or(0);
    let mut cost = vec![u32::MAX; n];
    let mut previous: Vec<Option<usize>> = vec![None; n];
    let mut done = vec![false; n];
    cost[index(from)] = 0;
    for _ in 0..n {
        let Some(u) = (0..n).filter(|i| !done[*i] && cost[*i] != u32::MAX).min_by_key(|i| cost[*i]) else { break };
        done[u] = true;
        for v in 0..n {
            if let Some(c) = step_cost(AudioFormat::ALL[u], AudioFormat::ALL[v]) {
                if cost[u] + c < cost[v] {
                    cost[v] = cost[u] + c;
                    previous[v] = Some(u);
                }
            }
        }
    }
    let target = index(to);
    if cost[target] == u32::MAX {
        return None;
    }
    let mut chain = vec![to];
    let mut at = target;
    while let Some(p) = previous[at] {
        chain.push(AudioFormat::ALL[p]);
        at = p;
    }
    chain.reverse();
    Some((chain, cost[target]))
}

/// `core show translation`: the cost of the cheapest path from each format (rows) to each
/// other (columns), `-` where there is none.
pub fn translation_table() -> String {
    let mut out = String::from("         Translation times between formats (relative cost; - = none)\n        Source Format (Rows) Destination Format (Columns)\n\n");
    let _ = write!(out, "{:>8}", "");
    for f in AudioFormat::ALL {
        let _ = write!(out, " {:>7}", f.name());
    }
    out.push('\n');
    for from in AudioFormat::ALL {
        let _ = write!(out, "{:>8}", from.name());
        for to in AudioFormat::ALL {
            let cell = match path(from, to) {
                Some((_, c)) if from != to => c.to_string(),
                _ => "-".into(),
            };
            let _ = write!(out, " {cell:>7}");
        }
        out.push('\n');
    }
    out
}

/// One frame of audio in a format: encoded bytes, or linear samples.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Encoded(Vec<u8>),
    Linear(Vec<i16>),
}

impl Frame {
    /// A voice frame's bytes in `format` (signed linear is little-endian, as in a WAV file).
    pub fn from_bytes(format: AudioFormat, data: Vec<u8>) -> Frame {
        if format.is_linear() {
            Frame::Linear(data.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect())
        } else {
            Frame::Encoded(data)
        }
    }
    /// The frame as a voice frame's bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Frame::Encoded(bytes) => bytes,
            Frame::Linear(samples) => samples.iter().flat_map(|s| s.to_le_bytes()).collect(),
        }
    }
}

enum Step {
    UlawToLinear,
    AlawToLinear,
    LinearToUlaw,
    LinearToAlaw,
    Resample(Resampler),
    OpusDecode(OpusCodec),
    OpusEncode { codec: OpusCodec, pending: Vec<i16> },
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TranslateError {
    #[error("no translation path from {0} to {1}")]
    NoPath(&'static str, &'static str),
    #[error("{0}")]
    Opus(#[from] OpusError),
}

/// A chain of steps from one format to another, with the state each step keeps (resampler
/// history, Opus codec state).
pub struct Translator {
    steps: Vec<Step>,
    pub from: AudioFormat,
    pub to: AudioFormat,
}

impl Translator {
    pub fn new(from: AudioFormat, to: AudioFormat, opus: &OpusParams) -> Result<Translator, TranslateError> {
        let (chain, _) = path(from, to).ok_or(TranslateError::NoPath(from.name(), to.name()))?;
        let mut steps = Vec::new();
        for pair in chain.windows(2) {
            use AudioFormat::*;
            steps.push(match (pair[0], pair[1]) {
                (Ulaw, _) => Step::UlawToLinear,
                (Alaw, _) => Step::AlawToLinear,
                (_, Ulaw) => Step::LinearToUlaw,
                (_, Alaw) => Step::LinearToAlaw,
                (Opus, linear) => Step::OpusDecode(OpusCodec::new(linear.rate(), opus)?),
                (linear, Opus) => Step::OpusEncode { codec: OpusCodec::new(linear.rate(), opus)?, pending: Vec::new() },
                (a, b) => Step::Resample(Resampler::new(a.rate(), b.rate())),
            });
        }
        Ok(Translator { steps, from, to })
    }

    /// Translates one frame; returns zero or more frames (Opus encodes whole 20 ms frames).
    pub fn translate(&mut self, frame: Frame) -> Result<Vec<Frame>, TranslateError> {
        let mut frames = vec![frame];
        for step in &mut self.steps {
            let mut next = Vec::with_capacity(frames.len());
            for frame in frames {
                match (&mut *step, frame) {
                    (Step::UlawToLinear, Frame::Encoded(codes)) => {
                        let mut pcm = vec![0; codes.len()];
                        g711::decode_ulaw(&codes, &mut pcm);
                        next.push(Frame::Linear(pcm));
                    }
                    (Step::AlawToLinear, Frame::Encoded(codes)) => {
                        let mut pcm = vec![0; codes.len()];
                        g711::decode_alaw(&codes, &mut pcm);
                        next.push(Frame::Linear(pcm));
                    }
                    (Step::LinearToUlaw, Frame::Linear(pcm)) => {
                        let mut codes = vec![0; pcm.len()];
                        g711::encode_ulaw(&pcm, &mut codes);
                        next.push(Frame::Encoded(codes));
                    }
                    (Step::LinearToAlaw, Frame::Linear(pcm)) => {
                        let mut codes = vec![0; pcm.len()];
                        g711::encode_alaw(&pcm, &mut codes);
                        next.push(Frame::Encoded(codes));
                    }
                    (Step::Resample(r), Frame::Linear(pcm)) => {
                        let mut out = Vec::with_capacity(pcm.len() * 6);
                        r.process(&pcm, &mut out);
                        next.push(Frame::Linear(out));
                    }
                    (Step::OpusDecode(codec), Frame::Encoded(packet)) => {
                        let mut pcm = vec![0; codec.rate() as usize / 10]; // room for 100 ms
                        let n = codec.decode(Some(&packet), &mut pcm)?;
                        pcm.truncate(n);
                        next.push(Frame::Linear(pcm));
                    }
                    (Step::OpusEncode { codec, pending }, Frame::Linear(pcm)) => {
                        pending.extend_from_slice(&pcm);
                        let frame = codec.rate() as usize / 50;
                        while pending.len() >= frame {
                            let mut packet = vec![0; 1500];
                            let len = codec.encode(&pending[..frame], &mut packet)?;
                            packet.truncate(len);
                            pending.drain(..frame);
                            next.push(Frame::Encoded(packet));
                        }
                    }
                    // A frame of the wrong kind for this step cannot come from a valid chain.
                    (_, other) => next.push(other),
                }
            }
            frames = next;
        }
        Ok(frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AudioFormat::*;

    #[test]
    fn cheapest_paths() {
        assert_eq!(path(Ulaw, Alaw), Some((vec![Ulaw, Slin8, Alaw], 2)));
        assert_eq!(path(Ulaw, Opus), Some((vec![Ulaw, Slin8, Opus], 31)), "Opus encodes at 8 kHz directly");
        assert_eq!(path(Opus, Slin16), Some((vec![Opus, Slin16], 15)));
        assert_eq!(path(Slin48, Ulaw), Some((vec![Slin48, Slin8, Ulaw], 5)));
        let table = translation_table();
        assert!(table.contains("    ulaw       -       2      31       1       5       5"), "{table}");
    }

    #[test]
    fn ulaw_to_alaw_and_through_opus() {
        let pcm: Vec<i16> = (0..160).map(|n| ((n as f32 * 0.35).sin() * 9000.0) as i16).collect();
        let mut ulaw = vec![0u8; 160];
        g711::encode_ulaw(&pcm, &mut ulaw);
        let mut t = Translator::new(Ulaw, Alaw, &OpusParams::default()).unwrap();
        let out = t.translate(Frame::Encoded(ulaw.clone())).unwrap();
        let [Frame::Encoded(alaw)] = out.as_slice() else { panic!("{out:?}") };
        assert_eq!(alaw.len(), 160);
        let mut to_opus = Translator::new(Ulaw, Opus, &OpusParams::default()).unwrap();
        let mut from_opus = Translator::new(Opus, Ulaw, &OpusParams::default()).unwrap();
        let mut back = Vec::new();
        for _ in 0..10 {
            for frame in to_opus.translate(Frame::Encoded(ulaw.clone())).unwrap() {
                for f in from_opus.translate(frame).unwrap() {
                    let Frame::Encoded(codes) = f else { panic!() };
                    back.extend(codes);
                }
            }
        }
        assert_eq!(back.len(), 1600, "10 frames of 20 ms come back as 10 frames of 160 µ-law bytes");
    }
}
