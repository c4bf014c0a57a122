//! app_playback: `Playback(file[&file2...][,options])`, as Asterisk's app_playback — sound
//! files from `soundsdir`, translated to the channel's format and sent in 20 ms frames at
//! real-time pace. Sets `PLAYBACKSTATUS` to `SUCCESS` or `FAILED`. The other applications that
//! stream sound files live here too, beside the streaming they share: `Background()` and
//! `SayDigits()`/`SayNumber()`/`SayAlpha()` (PBX built-ins in Asterisk), `Read()` (app_read),
//! `Record()` (app_record) and `PlayTones()` (app_playtones).
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
use starling_media::player::Player;
use starling_media::tones;
use starling_media::translate::{self, AudioFormat, Translator};

mod say;
pub use say::{alpha_files, digit_files, number_files};

const FRAME: Duration = Duration::from_millis(20);

/// Whether a file name from the dialplan has a `..` component. Such a name is refused, with a
/// warning, wherever an application opens a file: the name may carry caller data
/// (`Playback(${CALLERID(num)})`), and must not climb out of the folder it names.
pub fn climbs_out(name: &str) -> bool {
    Path::new(name).components().any(|c| c == std::path::Component::ParentDir)
}

/// Finds `name` (relative to the sounds folders, or an absolute path without extension) as
/// [`audio_file::find_sound`] does. A name with a `..` component is never looked up (a warning
/// says so).
pub fn find_sound(soundsdir: &Path, language: &str, name: &str, native: &str) -> Option<(PathBuf, Format)> {
    if climbs_out(name) {
        tracing::warn!("Refusing to play '{name}': a file name may not contain '..'");
        return None;
    }
    audio_file::find_sound(soundsdir, language, name, native)
}

fn audio_format(name: &str) -> AudioFormat {
    AudioFormat::ALL.into_iter().find(|f| f.name() == name).unwrap_or(AudioFormat::Slin8)
}

/// Before an application that needs the line up: `s` in `options` skips it (true: the caller
/// returns at once, having set its status), else the channel is answered unless `n` says not.
fn skip_or_answer(chan: &mut Channel, options: &str, status: (&str, &str)) -> bool {
    if chan.state() == ChannelState::Up {
        return false;
    }
    if options.contains('s') {
        chan.set_var(status.0, status.1);
        return true;
    }
    if !options.contains('n') {
        chan.answer();
    }
    false
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
    // A file replaces whatever a generator (PlayTones) was playing, as in Asterisk.
    chan.stop_generator();
    let soundsdir = chan.core().settings().soundsdir.clone();
    let (path, format) =
        find_sound(&soundsdir, &chan.language, name, chan.native_format).ok_or(StreamError::NotFound)?;
    // Asterisk's file.c line, which says who hears what.
    starling_core::verbose!(
        3,
        "<{}> Playing '{name}.{}' (language '{}')",
        chan.name(),
        path.extension().and_then(|e| e.to_str()).unwrap_or(""),
        if chan.language.is_empty() { "default" } else { chan.language.as_str() }
    );
    let file = std::fs::File::open(&path).map_err(|e| StreamError::Unreadable(format!("{}: {e}", path.display())))?;
    let audio = audio_file::read(format, std::io::BufReader::new(file))
        .map_err(|e| StreamError::Unreadable(format!("{}: {e}", path.display())))?;
    // The file cut into 20 ms frames of the channel's format (starling_media's Player, shared
    // with app_voicemail, whose messages also seek).
    let mut player = Player::new(audio, audio_format(chan.native_format))
        .map_err(|e| StreamError::Unreadable(format!("{}: {e}", path.display())))?;
    let (format, samples) = (player.format().name(), player.frame_samples());
    let mut next = Instant::now();
    while let Some(frames) = player.next_frames() {
        for data in frames.map_err(|e| StreamError::Unreadable(e.to_string()))? {
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
            chan.write(Frame::Voice { format, samples, data });
            next += FRAME;
        }
    }
    Ok(())
}

fn playback<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move {
        // AST_STANDARD_APP_ARGS, as app_playback parses them.
        let args = starling_core::apps::standard_args(data);
        let files = args.first().map_or("", String::as_str);
        let options = args.get(1).map_or("", String::as_str);
        if files.trim().is_empty() {
            tracing::warn!("Playback requires an argument (filename)");
            return AppResult::Hangup;
        }
        // As app_playback: `skip` plays nothing on a line that is not up (and that is a
        // success); `noanswer` plays without answering (early media).
        if chan.state() != ChannelState::Up {
            if options.contains("skip") {
                chan.set_var("PLAYBACKSTATUS", "SUCCESS");
                return AppResult::Continue;
            }
            if !options.contains("noanswer") {
                chan.answer();
            }
        }
        let mut status = "SUCCESS";
        for file in files.split('&').map(str::trim) {
            match stream_file(chan, file, "").await {
                Ok(()) | Err(StreamError::Interrupted(_)) => {}
                Err(StreamError::HungUp) => return AppResult::Hangup,
                Err(StreamError::NotFound) => {
                    tracing::warn!("Playback failed on {} (file '{file}' not found)", chan.name());
                    status = "FAILED";
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

/// `Background(file[&file2...][,options[,langoverride[,context]]])`: plays the files while
/// listening for keys; a key stops the sound and starts an extension (more digits are collected
/// as WaitExten does, `TIMEOUT(digit)` apart, then the dialplan goes there, or to `i`). Without a key, the dialplan
/// goes on at the next priority. Options: `s` skip when not answered, `n` do not answer.
/// Sets `BACKGROUNDSTATUS`.
fn background<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move {
        let parsed = starling_core::apps::separate_args(data, ',', true, 4);
        let mut args = parsed.iter().map(|a| a.trim());
        let files = args.next().unwrap_or("");
        let options = args.next().unwrap_or("");
        let language = args.next().filter(|l| !l.is_empty()).map(str::to_owned);
        let context = args.next().filter(|c| !c.is_empty()).map(str::to_owned);
        if files.is_empty() {
            tracing::warn!("Background requires an argument (filename)");
            return AppResult::Hangup;
        }
        if skip_or_answer(chan, options, ("BACKGROUNDSTATUS", "SUCCESS")) {
            return AppResult::Continue;
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
                let digit_timeout = chan.timeouts.digit;
                starling_core::builtins::collect_extension(chan, Some(digit), digit_timeout).await
            }
            None => AppResult::Continue,
        }
    })
}

/// Plays `files` one after another, not interruptible (the Say* applications).
async fn say(chan: &mut Channel, files: Vec<String>) -> AppResult {
    if chan.state() != ChannelState::Up {
        chan.answer();
    }
    for file in files {
        match stream_file(chan, &file, "").await {
            Err(StreamError::HungUp) => return AppResult::Hangup,
            Err(StreamError::NotFound) => tracing::warn!("Say failed on {}: no file '{file}'", chan.name()),
            Err(StreamError::Unreadable(why)) => tracing::warn!("Say failed on {}: {why}", chan.name()),
            Ok(()) | Err(StreamError::Interrupted(_)) => {}
        }
    }
    AppResult::Continue
}

fn say_digits<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move { say(chan, digit_files(data.trim())).await })
}

fn say_alpha<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move { say(chan, alpha_files(data.trim())).await })
}

/// `SayNumber(number[,gender])`: the number in the channel's language, by that language's rules
/// (say.rs: en, en_GB, da, de, es, fr, it, nl, no, pt, se; others as English), from the files
/// of its sound folder. `gender` (`f`, `m`, `n`, `c`) picks forms where the language has them.
fn say_number<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move {
        let parsed = starling_core::apps::standard_args(data);
        let mut args = parsed.iter().map(|a| a.trim());
        let text = args.next().unwrap_or("");
        let gender = args.next().filter(|g| !g.is_empty());
        match text.parse::<i64>() {
            Ok(number) => {
                let files = number_files(number, &chan.language, gender);
                say(chan, files).await
            }
            Err(_) => {
                tracing::warn!("SayNumber: '{text}' is not a number");
                AppResult::Continue
            }
        }
    })
}

/// `Read(variable[,filename[&filename2...][,maxdigits[,options[,attempts[,timeout]]]]])`, as
/// app_read: plays the prompt (a key interrupts it and counts as the first digit), then reads
/// up to `maxdigits` (0 or empty: until `#`, at most 255), `#` ending early. Waits
/// `TIMEOUT(response)` (10 s) for the first digit and `TIMEOUT(digit)` (5 s) between digits, or
/// `timeout` seconds for each. Retries an empty answer `attempts` times. Options: `s` skip when
/// not answered, `n` read without answering, `i` the prompt is an indication tone (a tone name
/// of the channel's zone such as `dial`, or a tone list) played until the first key. Sets the
/// variable and `READSTATUS` (`OK`, `TIMEOUT`, `HANGUP`, `SKIPPED`, `ERROR`).
fn read<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move {
        let args = starling_core::apps::standard_args(data);
        let arg = |i: usize| args.get(i).map_or("", |a| a.trim());
        let variable = arg(0);
        if variable.is_empty() {
            tracing::warn!("Read requires an argument (variable)");
            chan.set_var("READSTATUS", "ERROR");
            return AppResult::Continue;
        }
        let prompts = arg(1);
        let maxdigits = match arg(2).parse::<usize>() {
            Ok(n) if n > 0 => n.min(255),
            _ => 255,
        };
        let options = arg(3);
        let attempts = arg(4).parse::<u32>().ok().filter(|a| *a > 0).unwrap_or(1);
        let timeout = arg(5).parse::<f64>().ok().filter(|t| *t > 0.0).map(Duration::from_secs_f64);
        let (first_timeout, digit_timeout) = match timeout {
            Some(t) => (t, t),
            None => (chan.timeouts.response, chan.timeouts.digit),
        };
        let indication = options.contains('i');
        if skip_or_answer(chan, options, ("READSTATUS", "SKIPPED")) {
            chan.set_var(variable, "");
            return AppResult::Continue;
        }
        let mut status = "TIMEOUT";
        let mut digits = String::new();
        for _ in 0..attempts {
            digits.clear();
            let mut ended = false;
            let mut tone = false;
            if indication && !prompts.is_empty() {
                match start_tones(chan, prompts) {
                    Ok(()) => tone = true,
                    Err(why) => tracing::warn!("Read: '{prompts}' is not a tone ({why}); playing it as files"),
                }
            }
            for prompt in prompts.split('&').map(str::trim).filter(|p| !p.is_empty() && !tone) {
                match stream_file(chan, prompt, "0123456789*#").await {
                    Ok(()) => {}
                    Err(StreamError::Interrupted('#')) => {
                        ended = true;
                        break;
                    }
                    Err(StreamError::Interrupted(digit)) => {
                        digits.push(digit);
                        break;
                    }
                    Err(StreamError::HungUp) => {
                        chan.set_var("READSTATUS", "HANGUP");
                        return AppResult::Hangup;
                    }
                    Err(StreamError::NotFound) => tracing::warn!("Read: no file '{prompt}' on {}", chan.name()),
                    Err(StreamError::Unreadable(why)) => tracing::warn!("Read on {}: {why}", chan.name()),
                }
            }
            while !ended && digits.len() < maxdigits {
                let wait = if digits.is_empty() { first_timeout } else { digit_timeout };
                let deadline = Instant::now() + wait;
                let digit = loop {
                    match chan.read_timeout(deadline.saturating_duration_since(Instant::now())).await {
                        Read::HungUp => {
                            chan.set_var("READSTATUS", "HANGUP");
                            return AppResult::Hangup;
                        }
                        Read::Timeout => break None,
                        Read::Frame(Frame::DtmfEnd { digit, .. }) => break Some(digit),
                        Read::Frame(_) => {}
                    }
                };
                if tone {
                    chan.stop_generator();
                    tone = false;
                }
                match digit {
                    Some('#') => ended = true,
                    Some(digit) => digits.push(digit),
                    None => break,
                }
            }
            if ended || !digits.is_empty() {
                status = "OK";
                break;
            }
        }
        chan.set_var(variable, &digits);
        chan.set_var("READSTATUS", status);
        AppResult::Continue
    })
}

/// `PlayTones(arg)`: a tone from the built-in tone zone (`dial`, `ring`, `busy`, `congestion`,
/// `callwaiting`; the `us` zone, or the channel's `TONEZONE` variable's) or a tone list in
/// indications.conf syntax (`440+480/2000,0/4000`), played while the dialplan goes on, until
/// StopPlayTones or another sound.
fn play_tones<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move {
        if let Err(why) = start_tones(chan, data.trim()) {
            tracing::warn!("PlayTones: unable to start playtones ('{}': {why})", data.trim());
        }
        AppResult::Continue
    })
}

/// Starts `arg` — a tone of the channel's zone (`TONEZONE`, else `us`) by name, or a tone list
/// in indications.conf syntax — as the channel's generator (Asterisk's `ast_playtones_start`).
fn start_tones(chan: &mut Channel, arg: &str) -> Result<(), String> {
    let zone = chan.var("TONEZONE").and_then(tones::country).or_else(|| tones::country("us"));
    let spec = match (arg, zone) {
        ("dial", Some(z)) => z.dial,
        ("ring", Some(z)) => z.ring,
        ("busy", Some(z)) => z.busy,
        ("congestion", Some(z)) => z.congestion,
        ("callwaiting", Some(z)) => z.callwaiting,
        _ => arg,
    };
    let tone = tones::Tone::parse(spec).map_err(|e| e.0)?;
    let target = audio_format(chan.native_format);
    let mut translator =
        Translator::new(AudioFormat::Slin8, target, &OpusParams::default()).map_err(|e| e.to_string())?;
    let mut generator = tones::ToneGenerator::new(tone);
    let samples = target.rate() / 50;
    chan.start_generator(move || {
        let mut pcm = vec![0i16; 160];
        generator.fill(&mut pcm);
        let frame = translator.translate(translate::Frame::Linear(pcm)).ok()?.pop()?;
        let data = frame.into_bytes();
        Some(Frame::Voice { format: target.name(), samples, data })
    });
    Ok(())
}

fn stop_play_tones<'a>(chan: &'a mut Channel, _data: &'a str) -> AppFuture<'a> {
    Box::pin(async move {
        chan.stop_generator();
        AppResult::Continue
    })
}

/// Mean absolute amplitude below which a frame counts as silence (Asterisk's default
/// `silencethreshold` in dsp.conf is 256).
const SILENCE_THRESHOLD: u32 = 256;

/// `Record(filename.format[,silence[,maxduration[,options]]])`, as app_record: beeps (unless
/// `q`), then records what the caller says until `#` (`*` with `t`, any key with `y`, none
/// with `x`), `silence` seconds of silence, `maxduration` seconds, or hangup (the file is kept
/// only with `k`). `%d` in the name becomes a number that makes it new. A relative name is
/// under soundsdir, as in Asterisk; the folder is made if it does not exist. A name without a
/// format is an error that ends the call. Formats: wav, sln, ulaw, alaw. Options `s` (skip
/// when not answered), `n` (no answer). Sets `RECORDED_FILE` (without extension) and
/// `RECORD_STATUS` (`DTMF`, `SILENCE`, `TIMEOUT`, `HANGUP`, `SKIP`, `ERROR`).
fn record<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move {
        let args = starling_core::apps::standard_args(data);
        let arg = |i: usize| args.get(i).map_or("", |a| a.trim());
        let Some((name, extension)) = arg(0).rsplit_once('.') else {
            // As app_record: a name without a format is an error that ends the call.
            tracing::warn!("Record: no extension specified to filename '{}'", arg(0));
            chan.set_var("RECORD_STATUS", "ERROR");
            return AppResult::Hangup;
        };
        let Some(format) = Format::from_extension(extension) else {
            tracing::warn!("Record: unknown format '{extension}'");
            chan.set_var("RECORD_STATUS", "ERROR");
            return AppResult::Continue;
        };
        let silence = arg(1).parse::<f64>().ok().filter(|s| *s > 0.0).map(Duration::from_secs_f64);
        let max = arg(2).parse::<f64>().ok().filter(|s| *s > 0.0).map(Duration::from_secs_f64);
        let options = arg(3);
        let terminators = if options.contains('x') {
            ""
        } else if options.contains('y') {
            "0123456789*#ABCD"
        } else if options.contains('t') {
            "*"
        } else {
            "#"
        };
        if skip_or_answer(chan, options, ("RECORD_STATUS", "SKIP")) {
            return AppResult::Continue;
        }
        if climbs_out(name) {
            tracing::warn!("Record: refusing to record to '{name}': a file name may not contain '..'");
            chan.set_var("RECORD_STATUS", "ERROR");
            return AppResult::Continue;
        }
        let soundsdir = chan.core().settings().soundsdir.clone();
        let base = if Path::new(name).is_absolute() { PathBuf::from(name) } else { soundsdir.join(name) };
        let base = if name.contains("%d") {
            let mut n = 0;
            loop {
                let candidate = PathBuf::from(base.to_string_lossy().replace("%d", &n.to_string()));
                if !Path::new(&format!("{}.{extension}", candidate.display())).exists() {
                    break candidate;
                }
                n += 1;
            }
        } else {
            base
        };
        let path = PathBuf::from(format!("{}.{extension}", base.display()));
        if !options.contains('q') && stream_file(chan, "beep", "").await == Err(StreamError::HungUp) {
            chan.set_var("RECORD_STATUS", "HANGUP");
            return AppResult::Hangup;
        }
        let mut decoder =
            match Translator::new(audio_format(chan.native_format), AudioFormat::Slin8, &OpusParams::default()) {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!("Record on {}: {e}", chan.name());
                    chan.set_var("RECORD_STATUS", "ERROR");
                    return AppResult::Continue;
                }
            };
        let started = Instant::now();
        let mut samples: Vec<i16> = Vec::new();
        let mut quiet = Duration::ZERO;
        let status = loop {
            let wait = match max {
                Some(max) => max.saturating_sub(started.elapsed()),
                None => Duration::from_secs(3600),
            };
            if wait.is_zero() {
                break "TIMEOUT";
            }
            match chan.read_timeout(wait).await {
                Read::HungUp => break "HANGUP",
                Read::Timeout => {
                    if max.is_some() {
                        break "TIMEOUT";
                    }
                }
                Read::Frame(Frame::DtmfEnd { digit, .. }) if terminators.contains(digit) => break "DTMF",
                Read::Frame(Frame::Voice { format, data, .. }) if format == chan.native_format => {
                    let input = if format.starts_with("slin") {
                        translate::Frame::Linear(
                            data.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect(),
                        )
                    } else {
                        translate::Frame::Encoded(data)
                    };
                    for frame in decoder.translate(input).unwrap_or_default() {
                        if let translate::Frame::Linear(pcm) = frame {
                            let energy =
                                pcm.iter().map(|s| s.unsigned_abs() as u32).sum::<u32>() / pcm.len().max(1) as u32;
                            quiet = if energy < SILENCE_THRESHOLD {
                                quiet + Duration::from_millis(pcm.len() as u64 / 8)
                            } else {
                                Duration::ZERO
                            };
                            samples.extend_from_slice(&pcm);
                        }
                    }
                    if silence.is_some_and(|s| quiet >= s) {
                        break "SILENCE";
                    }
                }
                Read::Frame(_) => {}
            }
        };
        let audio = audio_file::Audio { rate: 8000, samples };
        if status == "HANGUP" && !options.contains('k') {
            chan.set_var("RECORD_STATUS", status);
            return AppResult::Hangup;
        }
        // As app_record, the folder is made if it does not exist yet.
        if let Some(folder) = path.parent() {
            let _ = std::fs::create_dir_all(folder);
        }
        let written = std::fs::File::create(&path).map_err(|e| e.to_string()).and_then(|file| {
            audio_file::write(format, &audio, std::io::BufWriter::new(file)).map_err(|e| e.to_string())
        });
        if let Err(e) = written {
            tracing::warn!("Record on {}: cannot write {}: {e}", chan.name(), path.display());
            chan.set_var("RECORD_STATUS", "ERROR");
            return if status == "HANGUP" { AppResult::Hangup } else { AppResult::Continue };
        }
        chan.set_var("RECORDED_FILE", &base.to_string_lossy());
        chan.set_var("RECORD_STATUS", status);
        if status == "HANGUP" {
            AppResult::Hangup
        } else {
            AppResult::Continue
        }
    })
}

fn load(ctx: &ModuleContext) -> Result<Box<dyn Module>, LoadError> {
    let apps = vec![
        App {
            name: "Playback",
            synopsis: "Play a file.",
            description: "Playback(filename[&filename2[&...]][,options]): plays the files (without extension) from soundsdir in the channel's language; answers first unless 'noanswer'; 'skip' plays nothing when the channel is not answered. Sets PLAYBACKSTATUS to SUCCESS or FAILED.",
            exec: playback,
            uses: None,
        },
        App {
            name: "Background",
            synopsis: "Play an audio file while waiting for digits of an extension to go to.",
            description: "Background(filename[&filename2...][,options[,langoverride[,context]]]): plays the files; a key press stops them and starts collecting an extension to go to. Options: s (skip if not answered), n (do not answer). Sets BACKGROUNDSTATUS.",
            exec: background,
            uses: None,
        },
        App {
            name: "Read",
            synopsis: "Read a variable.",
            description: "Read(variable[,filename[&filename2...][,maxdigits[,options[,attempts[,timeout]]]]]): plays the prompt, reads DTMF digits ended by # into the variable. Options: s (skip if not answered), n (read without answering), i (the prompt is an indication tone). Sets READSTATUS (OK, TIMEOUT, HANGUP, SKIPPED, ERROR).",
            exec: read,
            uses: None,
        },
        App {
            name: "SayDigits",
            synopsis: "Say Digits.",
            description: "SayDigits(digits): says the digits one by one (0-9, *, #, -).",
            exec: say_digits,
            uses: None,
        },
        App {
            name: "SayNumber",
            synopsis: "Say Number.",
            description: "SayNumber(number[,gender]): says the number in the channel's language (en, en_GB, da, de, es, fr, it, nl, no, pt, se; others as English).",
            exec: say_number,
            uses: None,
        },
        App {
            name: "Record",
            synopsis: "Record to a file.",
            description: "Record(filename.format[,silence[,maxduration[,options]]]): records until # (or silence, maxduration, hangup). Formats wav, sln, ulaw, alaw. Options: k keep on hangup, n no answer, q no beep, s skip if not answered, t * terminates, x no terminator, y any key terminates. Sets RECORDED_FILE and RECORD_STATUS.",
            exec: record,
            uses: None,
        },
        App {
            name: "PlayTones",
            synopsis: "Play a tone list.",
            description: "PlayTones(arg): plays a tone from the tone zone (dial, ring, busy, congestion, callwaiting) or a tone list such as 440+480/2000,0/4000, while the dialplan goes on; StopPlayTones ends it.",
            exec: play_tones,
            uses: None,
        },
        App {
            name: "StopPlayTones",
            synopsis: "Stop playing a tone list.",
            description: "StopPlayTones(): stops the tones PlayTones started.",
            exec: stop_play_tones,
            uses: None,
        },
        App {
            name: "SayAlpha",
            synopsis: "Say Alpha.",
            description: "SayAlpha(text): spells the text, letter by letter.",
            exec: say_alpha,
            uses: None,
        },
    ];
    Ok(Box::new(ctx.register_apps(apps)?))
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
        assert_eq!(found("en", "../en_US_f_Allison/hello-world", "slin"), None, "a name may not climb");
        assert!(climbs_out("../x") && climbs_out("a/../../b") && climbs_out("/a/../b"));
        assert!(!climbs_out("a..b/c") && !climbs_out("digits/1") && !climbs_out("/var/lib/x"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
