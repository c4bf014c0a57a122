//! Sound files as Asterisk keeps them: `.wav` (8 kHz, 16-bit, mono PCM; also 16 kHz),
//! raw `.ulaw`/`.alaw`, and `.sln` (raw 16-bit signed little-endian at 8 kHz). Reading gives
//! linear samples; writing takes them.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AudioFileError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("not a WAV file: {0}")]
    NotWav(&'static str),
    #[error("unsupported WAV format: {0}")]
    Unsupported(String),
}

/// Linear samples and their rate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Audio {
    pub rate: u32,
    pub samples: Vec<i16>,
}

/// The formats a file name's extension selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Wav,
    Ulaw,
    Alaw,
    Sln,
}

impl Format {
    /// `wav`, `ulaw`/`pcm`/`mu`, `alaw`/`al`, `sln`/`raw`.
    pub fn from_extension(ext: &str) -> Option<Format> {
        match ext.to_ascii_lowercase().as_str() {
            "wav" => Some(Format::Wav),
            "ulaw" | "pcm" | "mu" | "ul" => Some(Format::Ulaw),
            "alaw" | "al" => Some(Format::Alaw),
            "sln" | "raw" => Some(Format::Sln),
            _ => None,
        }
    }
}

/// Reads a whole file of `format`.
pub fn read(format: Format, mut input: impl Read) -> Result<Audio, AudioFileError> {
    let mut data = Vec::new();
    input.read_to_end(&mut data)?;
    match format {
        Format::Wav => parse_wav(&data),
        Format::Ulaw => Ok(Audio {
            rate: 8000,
            samples: data.iter().map(|c| crate::g711::ULAW_TO_LINEAR[usize::from(*c)]).collect(),
        }),
        Format::Alaw => Ok(Audio {
            rate: 8000,
            samples: data.iter().map(|c| crate::g711::ALAW_TO_LINEAR[usize::from(*c)]).collect(),
        }),
        Format::Sln => {
            Ok(Audio { rate: 8000, samples: data.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect() })
        }
    }
}

/// Writes `audio` in `format` (raw formats must be 8 kHz).
pub fn write(format: Format, audio: &Audio, mut out: impl Write) -> Result<(), AudioFileError> {
    match format {
        Format::Wav => {
            let data_len = (audio.samples.len() * 2) as u32;
            let mut header = Vec::with_capacity(44);
            header.extend_from_slice(b"RIFF");
            header.extend_from_slice(&(36 + data_len).to_le_bytes());
            header.extend_from_slice(b"WAVEfmt ");
            header.extend_from_slice(&16u32.to_le_bytes());
            header.extend_from_slice(&1u16.to_le_bytes()); // PCM
            header.extend_from_slice(&1u16.to_le_bytes()); // mono
            header.extend_from_slice(&audio.rate.to_le_bytes());
            header.extend_from_slice(&(audio.rate * 2).to_le_bytes());
            header.extend_from_slice(&2u16.to_le_bytes());
            header.extend_from_slice(&16u16.to_le_bytes());
            header.extend_from_slice(b"data");
            header.extend_from_slice(&data_len.to_le_bytes());
            out.write_all(&header)?;
            write_sln(&audio.samples, out)
        }
        Format::Sln => write_sln(&audio.samples, out),
        Format::Ulaw | Format::Alaw => {
            if audio.rate != 8000 {
                return Err(AudioFileError::Unsupported(format!("{format:?} is 8000 Hz, not {}", audio.rate)));
            }
            let mut codes = vec![0u8; audio.samples.len()];
            if format == Format::Ulaw {
                crate::g711::encode_ulaw(&audio.samples, &mut codes);
            } else {
                crate::g711::encode_alaw(&audio.samples, &mut codes);
            }
            out.write_all(&codes)?;
            Ok(())
        }
    }
}

fn write_sln(samples: &[i16], mut out: impl Write) -> Result<(), AudioFileError> {
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    out.write_all(&bytes)?;
    Ok(())
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// RIFF/WAVE with a PCM `fmt ` chunk (16-bit mono) and a `data` chunk; other chunks skipped.
fn parse_wav(data: &[u8]) -> Result<Audio, AudioFileError> {
    if data.get(..4) != Some(b"RIFF") || data.get(8..12) != Some(b"WAVE") {
        return Err(AudioFileError::NotWav("no RIFF/WAVE header"));
    }
    let mut at = 12;
    let mut rate = None;
    while at + 8 <= data.len() {
        let id = &data[at..at + 4];
        let len = le32(data, at + 4).ok_or(AudioFileError::NotWav("truncated chunk"))? as usize;
        let body = &data[at + 8..(at + 8).saturating_add(len).min(data.len())];
        match id {
            b"fmt " => {
                let (format, channels, bits) = (le16(body, 0), le16(body, 2), le16(body, 14));
                let sample_rate = le32(body, 4).ok_or(AudioFileError::NotWav("short fmt chunk"))?;
                if format != Some(1) || channels != Some(1) || bits != Some(16) {
                    return Err(AudioFileError::Unsupported(format!(
                        "format {format:?}, {channels:?} channels, {bits:?} bits (want PCM, 1, 16)"
                    )));
                }
                rate = Some(sample_rate);
            }
            b"data" => {
                let rate = rate.ok_or(AudioFileError::NotWav("data before fmt"))?;
                let samples = body.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
                return Ok(Audio { rate, samples });
            }
            _ => {}
        }
        at += 8 + len + (len & 1); // chunks are padded to even sizes
    }
    Err(AudioFileError::NotWav("no data chunk"))
}

/// The folders a sound of `language` (empty: `en`) is looked up in, best first: as Asterisk,
/// `<soundsdir>/<language>`, and also its `<language>_*` variants beside it (Debian's
/// `asterisk-core-sounds-en-wav` installs `en_US_f_Allison/` and leaves the `en` link to another
/// package), then the same for `en`, then `soundsdir` itself.
pub fn sound_dirs(soundsdir: &Path, language: &str) -> Vec<PathBuf> {
    let language = if language.is_empty() { "en" } else { language };
    let mut dirs = Vec::new();
    for lang in [language, "en"] {
        dirs.push(soundsdir.join(lang));
        if let Ok(entries) = std::fs::read_dir(soundsdir) {
            let prefix = format!("{lang}_");
            let mut variants: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.is_dir() && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix))
                })
                .collect();
            variants.sort();
            dirs.extend(variants);
        }
    }
    dirs.push(soundsdir.to_path_buf());
    dirs
}

/// Finds the sound `name` (relative to the [`sound_dirs`], or an absolute path without
/// extension) as a file that exists, with its format. Extensions tried: `native` first when it
/// is a file format (`ulaw` for a µ-law call: no translation), then `.wav` (and `.WAV`), `.sln`,
/// `.ulaw`, `.alaw`. The caller refuses names that climb out of their folder first.
pub fn find_sound(soundsdir: &Path, language: &str, name: &str, native: &str) -> Option<(PathBuf, Format)> {
    let mut extensions = Vec::new();
    if native == "ulaw" || native == "alaw" {
        extensions.push(native);
    }
    extensions.extend(["wav", "WAV", "sln", "ulaw", "alaw"]);
    let dirs = if Path::new(name).is_absolute() { vec![PathBuf::new()] } else { sound_dirs(soundsdir, language) };
    for dir in dirs {
        for ext in &extensions {
            let path = dir.join(format!("{name}.{ext}"));
            if path.is_file() {
                return Some((path, Format::from_extension(&ext.to_ascii_lowercase())?));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone() -> Audio {
        Audio { rate: 8000, samples: (0..800).map(|n| ((n as f32 * 0.34).sin() * 9000.0) as i16).collect() }
    }

    #[test]
    fn wav_and_sln_round_trip() {
        for format in [Format::Wav, Format::Sln] {
            let mut bytes = Vec::new();
            write(format, &tone(), &mut bytes).unwrap();
            assert_eq!(read(format, &bytes[..]).unwrap(), tone());
        }
    }

    #[test]
    fn g711_files_round_trip_within_quantisation() {
        for format in [Format::Ulaw, Format::Alaw] {
            let mut bytes = Vec::new();
            write(format, &tone(), &mut bytes).unwrap();
            assert_eq!(bytes.len(), 800);
            let back = read(format, &bytes[..]).unwrap();
            for (a, b) in back.samples.iter().zip(&tone().samples) {
                assert!((i32::from(*a) - i32::from(*b)).abs() <= i32::from(b.unsigned_abs()) / 16 + 132);
            }
        }
    }

    #[test]
    fn wav_errors() {
        assert!(matches!(read(Format::Wav, &b"RIFX"[..]), Err(AudioFileError::NotWav(_))));
        let mut stereo = Vec::new();
        write(Format::Wav, &tone(), &mut stereo).unwrap();
        stereo[22] = 2;
        assert!(matches!(read(Format::Wav, &stereo[..]), Err(AudioFileError::Unsupported(_))));
        assert_eq!(Format::from_extension("WAV"), Some(Format::Wav));
        assert_eq!(Format::from_extension("gsm"), None);
    }
}
