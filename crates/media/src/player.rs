//! A file being played to a channel, without I/O (Asterisk's `ast_filestream` read with
//! `ast_readframe`, moved by `ast_seekstream`): the audio cut into 20 ms frames of the
//! channel's format, in order, with a position that can skip forward and back (VoiceMailMain's
//! `#`/`*` by `skipms`, `ast_control_streamfile`'s fast forward and rewind). The caller paces
//! the frames (one every 20 ms) and reads the channel meanwhile.

use crate::audio_file::Audio;
use crate::opus::OpusParams;
use crate::translate::{self, AudioFormat, TranslateError, Translator};

pub struct Player {
    audio: Audio,
    /// The next sample to play.
    position: usize,
    translator: Translator,
    target: AudioFormat,
}

impl Player {
    /// Plays `audio` (8 or 16 kHz signed linear) as `target`.
    pub fn new(audio: Audio, target: AudioFormat) -> Result<Player, TranslateError> {
        let source = if audio.rate == 16000 { AudioFormat::Slin16 } else { AudioFormat::Slin8 };
        let translator = Translator::new(source, target, &OpusParams::default())?;
        Ok(Player { audio, position: 0, translator, target })
    }

    /// The channel's format.
    pub fn format(&self) -> AudioFormat {
        self.target
    }

    /// Samples (of the channel's rate) in one 20 ms frame.
    pub fn frame_samples(&self) -> u32 {
        self.target.rate() / 50
    }

    fn per_frame(&self) -> usize {
        (self.audio.rate / 50).max(1) as usize
    }

    /// The next 20 ms, encoded for the channel (a codec may give none or several frames for
    /// one input); `None` at the end of the file. A short last chunk is padded with silence.
    pub fn next_frames(&mut self) -> Option<Result<Vec<Vec<u8>>, TranslateError>> {
        if self.position >= self.audio.samples.len() {
            return None;
        }
        let end = (self.position + self.per_frame()).min(self.audio.samples.len());
        let mut pcm = self.audio.samples[self.position..end].to_vec();
        pcm.resize(self.per_frame(), 0);
        self.position = end;
        Some(
            self.translator
                .translate(translate::Frame::Linear(pcm))
                .map(|frames| frames.into_iter().map(translate::Frame::into_bytes).collect()),
        )
    }

    /// Moves by `ms` (negative: back), kept within the file, on a frame boundary.
    pub fn seek(&mut self, ms: i64) {
        let per_ms = i64::from(self.audio.rate / 1000);
        let target = (self.position as i64).saturating_add(ms.saturating_mul(per_ms));
        let per_frame = self.per_frame() as i64;
        let clamped = target.clamp(0, self.audio.samples.len() as i64);
        self.position = (clamped / per_frame * per_frame) as usize;
    }

    /// Back to the start (`ast_control_streamfile`'s restart key).
    pub fn restart(&mut self) {
        self.position = 0;
    }

    /// Where playing is, in milliseconds from the start.
    pub fn position_ms(&self) -> u64 {
        self.position as u64 * 1000 / u64::from(self.audio.rate.max(1))
    }

    /// The whole file, in milliseconds.
    pub fn length_ms(&self) -> u64 {
        self.audio.samples.len() as u64 * 1000 / u64::from(self.audio.rate.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn player(seconds: usize) -> Player {
        let audio = Audio { rate: 8000, samples: (0..seconds * 8000).map(|i| (i % 100) as i16).collect() };
        Player::new(audio, AudioFormat::Ulaw).unwrap()
    }

    #[test]
    fn frames_come_in_order_until_the_end() {
        let mut p = player(1);
        let mut frames = 0;
        while let Some(out) = p.next_frames() {
            let out = out.unwrap();
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].len(), 160);
            frames += 1;
        }
        assert_eq!(frames, 50);
        assert_eq!(p.position_ms(), 1000);
        assert_eq!(p.frame_samples(), 160);
    }

    #[test]
    fn seeking_skips_and_rewinds_within_the_file() {
        let mut p = player(10);
        assert_eq!(p.length_ms(), 10_000);
        p.seek(3000);
        assert_eq!(p.position_ms(), 3000);
        p.seek(-1000);
        assert_eq!(p.position_ms(), 2000);
        p.seek(-5000);
        assert_eq!(p.position_ms(), 0);
        p.seek(60_000);
        assert_eq!(p.position_ms(), 10_000);
        assert!(p.next_frames().is_none());
        p.restart();
        assert_eq!(p.position_ms(), 0);
        p.seek(i64::MAX);
        p.seek(i64::MIN);
        assert_eq!(p.position_ms(), 0);
        // A position between frames is put on a frame's start.
        p.seek(7);
        assert_eq!(p.position_ms(), 0);
    }
}
