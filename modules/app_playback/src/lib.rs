//! app_playback: `Playback(file[&file2...][,options])`, as Asterisk's app_playback — sound
//! files from `soundsdir`, translated to the channel's format and sent in 20 ms frames at
//! real-time pace. Sets `PLAYBACKSTATUS` to `SUCCESS` or `FAILED`. Also `Background()`, which
//! Asterisk keeps among the PBX built-ins: it lives here, beside the file streaming it shares.
//!
//! Files are looked up as Asterisk does (`<soundsdir>/<language>/<name>.<ext>`), and also in a
//! `<language>_*` folder beside it, because Debian's `asterisk-core-sounds-en-wav` installs
//! `en_US_f_Allison/` and leaves the `en` link to another package. Extensions tried: the
//! channel's own format first (`.ulaw` for a µ-law call: no translation), then `.wav`, `.sln`,
//! `.ulaw`, `.alaw`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use starling_core::apps::{App, AppFuture, AppResult};
use starling_core::channel::{Channel, ChannelState, Read};
use starling_core::frame::Frame;
use starling_core::tokio::time::Instant;
use starling_core::{tracing, LoadError, Module, ModuleContext};
use starling_media::audio_file::{self, Format};
use starling_media::opus::OpusParams;
use starling_media::translate::{self, AudioFormat, Translator};

const FRAME: Duration = Duration::from_millis(20);

/// The folders to look in for `language`, best first.
fn sound_dirs(soundsdir: &Path, language: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for lang in [language, "en"] {
        dirs.push(soundsdir.join(lang));
        if let Ok(entries) = std::fs::read_dir(soundsdir) {
            let mut variants: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.is_dir()
                        && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&format!("{lang}_")))
                })
                .collect();
            variants.sort();
            dirs.extend(variants);
        }
    }
    dirs.push(soundsdir.to_path_buf());
    dirs
}

/// Finds `name` (relative to the sounds folders, or an absolute path without extension).
pub fn find_sound(soundsdir: &Path, language: &str, name: &str, native: &str) -> Option<(PathBuf, Format)> {
    let mut extensions = Vec::new();
    if native == "ulaw" || native == "alaw" {
        extensions.push(native);
    }
    extensions.extend(["wav", "sln", "ulaw", "alaw"]);
    let dirs = if Path::new(name).is_absolute() { vec![PathBuf::new()] } else { sound_dirs(soundsdir, language) };
    for dir in dirs {
        for ext in &extensions {
            let path = dir.join(format!("{name}.{ext}"));
            if path.is_file() {
                return Some((path, Format::from_extension(ext)?));
            }
        }
    }
    None
}

fn audio_format(name: &str) -> AudioFormat {
    AudioFormat::ALL.into_iter().find(|f| f.name() == name).unwrap_or(AudioFormat::Slin8)
}

/// Why a file did not play to its end.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamError {
    NotFound,
    Unreadable(String),
    HungUp,
    /// A key in the escape set was pressed.
    Interrupted(char),
}

/// Plays one file on the channel at real-time pace; a key press in `escape` stops it.
pub async fn stream_file(chan: &mut Channel, name: &str, escape: &str) -> Result<(), StreamError> {
    let soundsdir = chan.core().settings().soundsdir.clone();
    let (path, format) =
        find_sound(&soundsdir, &chan.language, name, chan.native_format).ok_or(StreamError::NotFound)?;
    let file = std::fs::File::open(&path).map_err(|e| StreamError::Unreadable(format!("{}: {e}", path.display())))?;
    let audio = audio_file::read(format, std::io::BufReader::new(file))
        .map_err(|e| StreamError::Unreadable(format!("{}: {e}", path.display())))?;
    let source = if audio.rate == 16000 { AudioFormat::Slin16 } else { AudioFormat::Slin8 };
    let target = audio_format(chan.native_format);
    let mut translator = Translator::new(source, target, &OpusParams::default())
        .map_err(|e| StreamError::Unreadable(format!("{}: {e}", path.display())))?;
    let per_frame = (audio.rate / 50) as usize;
    let target_samples = target.rate() / 50;
    let mut next = Instant::now();
    for chunk in audio.samples.chunks(per_frame) {
        let mut pcm = chunk.to_vec();
        pcm.resize(per_frame, 0);
        let frames =
            translator.translate(translate::Frame::Linear(pcm)).map_err(|e| StreamError::Unreadable(e.to_string()))?;
        for frame in frames {
            // Until this frame is due, read (and drop) what the caller sends; notice a hangup.
            loop {
                let now = Instant::now();
                if now >= next {
                    break;
                }
                match chan.read_timeout(next - now).await {
                    Read::HungUp => return Err(StreamError::HungUp),
                    Read::Frame(Frame::DtmfEnd { digit, .. }) if escape.contains(digit) => {
                        return Err(StreamError::Interrupted(digit))
                    }
                    _ => {}
                }
            }
            let data = match frame {
                translate::Frame::Encoded(bytes) => bytes,
                translate::Frame::Linear(samples) => samples.iter().flat_map(|s| s.to_le_bytes()).collect(),
            };
            chan.write(Frame::Voice { format: target.name(), samples: target_samples, data });
            next += FRAME;
        }
    }
    Ok(())
}

fn playback<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move {
        let (files, options) = data.split_once(',').unwrap_or((data, ""));
        if files.trim().is_empty() {
            tracing::warn!("Playback requires an argument (filename)");
            return AppResult::Hangup;
        }
        let skip = options.contains("skip");
        if !options.contains("noanswer") && chan.state() != ChannelState::Up {
            chan.answer();
        }
        let mut status = "SUCCESS";
        for file in files.split('&').map(str::trim) {
            match stream_file(chan, file, "").await {
                Ok(()) | Err(StreamError::Interrupted(_)) => {}
                Err(StreamError::HungUp) => return AppResult::Hangup,
                Err(StreamError::NotFound) => {
                    if !skip {
                        tracing::warn!("Playback failed on {} (file '{file}' not found)", chan.name());
                        status = "FAILED";
                    }
                }
                Err(StreamError::Unreadable(why)) => {
                    tracing::warn!("Playback failed on {}: {why}", chan.name());
                    status = "FAILED";
                }
            }
        }
        chan.set_var("PLAYBACKSTATUS", status);
        AppResult::Continue
    })
}

/// How long Background's caller has for each further digit (Asterisk's `TIMEOUT(digit)`).
const DIGIT_TIMEOUT: Duration = Duration::from_secs(5);

/// `Background(file[&file2...][,options[,langoverride[,context]]])`: plays the files while
/// listening for keys; a key stops the sound and starts an extension (more digits are collected
/// as WaitExten does, then the dialplan goes there, or to `i`). Without a key, the dialplan
/// goes on at the next priority. Options: `s` skip when not answered, `n` do not answer.
/// Sets `BACKGROUNDSTATUS`.
fn background<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move {
        let mut args = data.splitn(4, ',').map(str::trim);
        let files = args.next().unwrap_or("");
        let options = args.next().unwrap_or("");
        let language = args.next().filter(|l| !l.is_empty()).map(str::to_owned);
        let context = args.next().filter(|c| !c.is_empty()).map(str::to_owned);
        if files.is_empty() {
            tracing::warn!("Background requires an argument (filename)");
            return AppResult::Hangup;
        }
        if chan.state() != ChannelState::Up {
            if options.contains('s') {
                chan.set_var("BACKGROUNDSTATUS", "SUCCESS");
                return AppResult::Continue;
            }
            if !options.contains('n') {
                chan.answer();
            }
        }
        let saved_language = language.map(|l| std::mem::replace(&mut chan.language, l));
        let mut status = "SUCCESS";
        let mut pressed = None;
        for file in files.split('&').map(str::trim) {
            match stream_file(chan, file, "0123456789*#ABCD").await {
                Ok(()) => {}
                Err(StreamError::Interrupted(digit)) => {
                    pressed = Some(digit);
                    break;
                }
                Err(StreamError::HungUp) => return AppResult::Hangup,
                Err(StreamError::NotFound) => {
                    tracing::warn!("Background failed on {} (file '{file}' not found)", chan.name());
                    status = "FAILED";
                    break;
                }
                Err(StreamError::Unreadable(why)) => {
                    tracing::warn!("Background failed on {}: {why}", chan.name());
                    status = "FAILED";
                    break;
                }
            }
        }
        if let Some(language) = saved_language {
            chan.language = language;
        }
        chan.set_var("BACKGROUNDSTATUS", status);
        match pressed {
            Some(digit) => {
                if let Some(context) = context {
                    chan.context = context;
                }
                starling_core::builtins::collect_extension(chan, Some(digit), DIGIT_TIMEOUT).await
            }
            None => AppResult::Continue,
        }
    })
}

struct Loaded(#[allow(dead_code)] Vec<starling_core::apps::Registration<App>>);
impl Module for Loaded {}

fn load(ctx: &ModuleContext) -> Result<Box<dyn Module>, LoadError> {
    let apps = vec![
        ctx.register_app(App {
            name: "Playback",
            synopsis: "Play a file.",
            description: "Playback(filename[&filename2[&...]][,options]): plays the files (without extension) from soundsdir in the channel's language; answers first unless 'noanswer'; 'skip' passes over missing files silently. Sets PLAYBACKSTATUS to SUCCESS or FAILED.",
            exec: playback,
            uses: None,
        })?,
        ctx.register_app(App {
            name: "Background",
            synopsis: "Play an audio file while waiting for digits of an extension to go to.",
            description: "Background(filename[&filename2...][,options[,langoverride[,context]]]): plays the files; a key press stops them and starts collecting an extension to go to. Options: s (skip if not answered), n (do not answer). Sets BACKGROUNDSTATUS.",
            exec: background,
            uses: None,
        })?,
    ];
    Ok(Box::new(Loaded(apps)))
}

starling_core::module! {
    description: "Sound File Playback Application",
    support_level: Core,
    load: load,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sounds_are_found_in_the_language_folder_or_a_variant_of_it() {
        let dir = std::env::temp_dir().join(format!("playback-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("en_US_f_Allison")).unwrap();
        std::fs::create_dir_all(dir.join("fr")).unwrap();
        std::fs::write(dir.join("en_US_f_Allison/hello-world.wav"), b"x").unwrap();
        std::fs::write(dir.join("en_US_f_Allison/hello-world.ulaw"), b"x").unwrap();
        std::fs::write(dir.join("fr/bonjour.sln"), b"x").unwrap();
        let found = |lang, name, native| {
            find_sound(&dir, lang, name, native).map(|(p, _)| p.strip_prefix(&dir).unwrap().to_owned())
        };
        assert_eq!(found("en", "hello-world", "slin"), Some(PathBuf::from("en_US_f_Allison/hello-world.wav")));
        assert_eq!(
            found("en", "hello-world", "ulaw"),
            Some(PathBuf::from("en_US_f_Allison/hello-world.ulaw")),
            "no translation"
        );
        assert_eq!(
            found("fr", "hello-world", "alaw"),
            Some(PathBuf::from("en_US_f_Allison/hello-world.wav")),
            "falls back to en"
        );
        assert_eq!(found("fr", "bonjour", "slin"), Some(PathBuf::from("fr/bonjour.sln")));
        assert_eq!(found("en", "nothing", "slin"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
