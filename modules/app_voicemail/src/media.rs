//! What VoiceMail() and VoiceMailMain() do to the channel: play prompts (from `soundsdir`, as
//! app_playback finds them, or a recording by its path) with keys that interrupt them, wait
//! for keys, and record the caller to 8 kHz signed linear. Modules do not call each other, so
//! this is app_voicemail's own small copy of Asterisk's `ast_stream_and_wait`/`ast_play_and_record`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use starling_core::channel::{Channel, Read};
use starling_core::frame::Frame;
use starling_core::tokio::time::Instant;
use starling_core::tracing;
use starling_media::audio_file::{self, Format};
use starling_media::opus::OpusParams;
use starling_media::player::Player;
use starling_media::translate::{self, AudioFormat, Translator};

const FRAME: Duration = Duration::from_millis(20);

/// Why playing or waiting stopped early.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    /// The caller hung up.
    HungUp,
    /// A key of the escape set was pressed.
    Key(char),
}

/// A prompt (`vm-intro`) or an absolute path without extension, as a file that exists
/// (looked up as app_playback does: [`audio_file::find_sound`]).
pub fn find_sound(soundsdir: &Path, language: &str, name: &str) -> Option<(PathBuf, Format)> {
    audio_file::find_sound(soundsdir, language, name, "")
}

fn audio_format(name: &str) -> AudioFormat {
    AudioFormat::ALL.into_iter().find(|f| f.name() == name).unwrap_or(AudioFormat::Slin8)
}

/// How a message being listened to may be steered (Asterisk's `ast_control_streamfile` with
/// app_voicemail's `listen_control_*` keys): `#` skips forward and `*` back by `skipms`, `0`
/// pauses until the next key, `2` starts again, a key of `stop` stops it (and is the caller's
/// next choice).
#[derive(Clone, Copy, Debug)]
pub struct Control<'a> {
    pub forward: char,
    pub reverse: char,
    pub pause: char,
    pub restart: char,
    pub stop: &'a str,
    pub skipms: u32,
}

impl Control<'_> {
    /// Asterisk's defaults (`DEFAULT_LISTEN_CONTROL_*`).
    pub fn listen(skipms: u32) -> Control<'static> {
        Control { forward: '#', reverse: '*', pause: '0', restart: '2', stop: "13456789", skipms }
    }
}

/// Plays `name` at real-time pace; a key in `escape` stops it. A file that is missing or
/// unreadable is skipped with a warning (as Asterisk goes on past a missing prompt).
pub async fn play(chan: &mut Channel, name: &str, escape: &str) -> Result<(), Stop> {
    stream(chan, name, escape, None).await
}

/// Plays a message with [`Control`]'s keys.
pub async fn play_controlled(chan: &mut Channel, name: &str, control: &Control<'_>) -> Result<(), Stop> {
    stream(chan, name, "", Some(control)).await
}

/// The file `name` names, read whole.
fn load(chan: &Channel, name: &str) -> Option<audio_file::Audio> {
    let soundsdir = chan.core().settings().soundsdir.clone();
    let Some((path, format)) = find_sound(&soundsdir, &chan.language, name) else {
        tracing::warn!("VoiceMail on {}: file '{name}' not found", chan.name());
        return None;
    };
    starling_core::verbose!(3, "<{}> Playing '{}'", chan.name(), path.display());
    let read = std::fs::File::open(&path)
        .map_err(|e| e.to_string())
        .and_then(|f| audio_file::read(format, std::io::BufReader::new(f)).map_err(|e| e.to_string()));
    match read {
        Ok(audio) => Some(audio),
        Err(e) => {
            tracing::warn!("VoiceMail on {}: {}: {e}", chan.name(), path.display());
            None
        }
    }
}

/// Plays 8 kHz samples held in memory (a recording being reviewed); a key in `escape` stops it.
pub async fn play_samples(chan: &mut Channel, samples: &[i16], escape: &str) -> Result<(), Stop> {
    stream_audio(chan, audio_file::Audio { rate: 8000, samples: samples.to_vec() }, escape, None).await
}

async fn stream(chan: &mut Channel, name: &str, escape: &str, control: Option<&Control<'_>>) -> Result<(), Stop> {
    let Some(audio) = load(chan, name) else { return Ok(()) };
    stream_audio(chan, audio, escape, control).await
}

async fn stream_audio(
    chan: &mut Channel,
    audio: audio_file::Audio,
    escape: &str,
    control: Option<&Control<'_>>,
) -> Result<(), Stop> {
    let Ok(mut player) = Player::new(audio, audio_format(chan.native_format)) else { return Ok(()) };
    let (format, samples) = (player.format().name(), player.frame_samples());
    let mut next = Instant::now();
    while let Some(frames) = player.next_frames() {
        for data in frames.unwrap_or_default() {
            // Until this frame is due, read what the caller sends: keys, a hangup.
            loop {
                let now = Instant::now();
                if now >= next {
                    break;
                }
                let digit = match chan.read_timeout(next - now).await {
                    Read::HungUp => return Err(Stop::HungUp),
                    Read::Frame(Frame::DtmfEnd { digit, .. }) => digit,
                    _ => continue,
                };
                match control {
                    None if escape.contains(digit) => return Err(Stop::Key(digit)),
                    None => {}
                    Some(c) if digit == c.forward => player.seek(i64::from(c.skipms)),
                    Some(c) if digit == c.reverse => player.seek(-i64::from(c.skipms)),
                    Some(c) if digit == c.restart => player.restart(),
                    Some(c) if digit == c.pause => {
                        // Paused: silence until any key (Asterisk's pause key).
                        wait_key(chan, Duration::from_secs(3600)).await?;
                        next = Instant::now();
                    }
                    Some(c) if c.stop.contains(digit) => return Err(Stop::Key(digit)),
                    Some(_) => {}
                }
            }
            chan.write(Frame::Voice { format, samples, data });
            next += FRAME;
        }
    }
    Ok(())
}

/// Plays each file in turn (Asterisk's prompt sequences); the first key of `escape` stops all.
pub async fn play_all(chan: &mut Channel, names: &[String], escape: &str) -> Result<(), Stop> {
    for name in names {
        play(chan, name, escape).await?;
    }
    Ok(())
}

/// Waits up to `timeout` for a key (`Ok(None)`: none came).
pub async fn wait_key(chan: &mut Channel, timeout: Duration) -> Result<Option<char>, Stop> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        match chan.read_timeout(left).await {
            Read::HungUp => return Err(Stop::HungUp),
            Read::Timeout => return Ok(None),
            Read::Frame(Frame::DtmfEnd { digit, .. }) => return Ok(Some(digit)),
            Read::Frame(_) => {}
        }
    }
}

/// Reads keys until `#`, `max` keys, or `timeout` between keys (Asterisk's `ast_readstring`);
/// `first` is a key already pressed (during the prompt).
pub async fn read_keys(chan: &mut Channel, first: Option<char>, max: usize, timeout: Duration) -> Result<String, Stop> {
    let mut keys = String::new();
    let mut key = first;
    loop {
        if key.is_none() {
            key = wait_key(chan, timeout).await?;
        }
        match key.take() {
            None | Some('#') => return Ok(keys),
            Some(k) => {
                keys.push(k);
                if keys.len() >= max {
                    return Ok(keys);
                }
            }
        }
    }
}

/// Reads keys until `#` or `max` keys (Asterisk's `ast_readstring`): `first_timeout` for the
/// first key, `timeout` between the next ones; `first` is a key already pressed.
pub async fn read_string(
    chan: &mut Channel,
    first: Option<char>,
    max: usize,
    first_timeout: Duration,
    timeout: Duration,
) -> Result<String, Stop> {
    let first = match first {
        Some(k) => Some(k),
        None => wait_key(chan, first_timeout).await?,
    };
    if first.is_none() {
        return Ok(String::new());
    }
    read_keys(chan, first, max, timeout).await
}

/// How a recording ended (Asterisk's `ast_play_and_record` outcomes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordEnd {
    /// `#` (or another terminator).
    Key(char),
    /// `maxsilence` seconds of silence (trimmed off the end).
    Silence,
    /// `maxsecs` reached.
    MaxLength,
    HungUp,
}

/// What to stop a recording on.
#[derive(Clone, Copy, Debug)]
pub struct RecordLimits {
    pub max: Option<Duration>,
    pub silence: Option<Duration>,
    /// Mean absolute amplitude below which a frame is silence.
    pub threshold: u32,
}

/// Records the caller to 8 kHz samples until `terminators`, silence, the maximum or hangup.
pub async fn record(chan: &mut Channel, limits: RecordLimits, terminators: &str) -> (Vec<i16>, RecordEnd) {
    let mut samples: Vec<i16> = Vec::new();
    let Ok(mut decoder) = Translator::new(audio_format(chan.native_format), AudioFormat::Slin8, &OpusParams::default())
    else {
        return (samples, RecordEnd::HungUp);
    };
    let started = Instant::now();
    let mut quiet_samples = 0usize;
    let end = loop {
        let wait = match limits.max {
            Some(max) => max.saturating_sub(started.elapsed()),
            None => Duration::from_secs(3600),
        };
        if wait.is_zero() {
            break RecordEnd::MaxLength;
        }
        match chan.read_timeout(wait).await {
            Read::HungUp => break RecordEnd::HungUp,
            Read::Timeout => {
                if limits.max.is_some() {
                    break RecordEnd::MaxLength;
                }
            }
            Read::Frame(Frame::DtmfEnd { digit, .. }) if terminators.contains(digit) => break RecordEnd::Key(digit),
            Read::Frame(Frame::Voice { format, data, .. }) if format == chan.native_format => {
                let input = if format.starts_with("slin") {
                    translate::Frame::Linear(data.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect())
                } else {
                    translate::Frame::Encoded(data)
                };
                for frame in decoder.translate(input).unwrap_or_default() {
                    if let translate::Frame::Linear(pcm) = frame {
                        let energy =
                            pcm.iter().map(|s| u64::from(s.unsigned_abs())).sum::<u64>() / pcm.len().max(1) as u64;
                        if energy < u64::from(limits.threshold) {
                            quiet_samples += pcm.len();
                        } else {
                            quiet_samples = 0;
                        }
                        samples.extend_from_slice(&pcm);
                    }
                }
                if limits.silence.is_some_and(|s| quiet_samples as u64 * 1000 / 8000 >= s.as_millis() as u64) {
                    // As Asterisk, the silence that ended it is not kept.
                    samples.truncate(samples.len().saturating_sub(quiet_samples));
                    break RecordEnd::Silence;
                }
            }
            Read::Frame(_) => {}
        }
    };
    (samples, end)
}

/// `digits/1`, `digits/0`... for each digit of `number` (Asterisk's `ast_say_digit_str`).
pub fn digit_files(number: &str) -> Vec<String> {
    number
        .chars()
        .filter_map(|c| match c {
            '0'..='9' => Some(format!("digits/{c}")),
            '*' => Some("digits/star".to_owned()),
            '#' => Some("digits/pound".to_owned()),
            _ => None,
        })
        .collect()
}

/// The files that say `n` (0-999 and thousands, Asterisk's English `ast_say_number`).
pub fn number_files(n: u32) -> Vec<String> {
    let mut out = Vec::new();
    let mut n = n;
    if n == 0 {
        return vec!["digits/0".into()];
    }
    if n >= 1000 {
        out.extend(number_files(n / 1000));
        out.push("digits/thousand".into());
        n %= 1000;
    }
    if n >= 100 {
        out.push(format!("digits/{}", n / 100));
        out.push("digits/hundred".into());
        n %= 100;
    }
    if n >= 20 {
        out.push(format!("digits/{}", n / 10 * 10));
        n %= 10;
    }
    if n > 0 {
        out.push(format!("digits/{n}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_digits_are_said_as_asterisk_says_them() {
        assert_eq!(digit_files("10a2"), ["digits/1", "digits/0", "digits/2"]);
        assert_eq!(number_files(0), ["digits/0"]);
        assert_eq!(number_files(1), ["digits/1"]);
        assert_eq!(number_files(42), ["digits/40", "digits/2"]);
        assert_eq!(number_files(115), ["digits/1", "digits/hundred", "digits/15"]);
        assert_eq!(number_files(2000), ["digits/2", "digits/thousand"]);
    }
}
