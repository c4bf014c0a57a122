//! res_musiconhold: music on hold as Asterisk's `mode=files` classes. `musiconhold.conf` names
//! the classes (`[name]`, `mode=files`, `directory=`, `sort=alpha|random`); without the file
//! there is one class, `default`, playing Debian's `asterisk-moh-opsound-*` folder
//! (`<soundsdir>/../moh`, Asterisk's `astdatadir/moh`). A relative `directory` is under that
//! same parent. The files of a class (`.wav`, `.sln`, `.ulaw`, `.alaw`) are read once, when the
//! class first plays, and shared by every channel that hears it; each channel plays them in
//! turn, from the first (`alpha`) or from a random one (`random`), translated to its format, as
//! its generator — so the dialplan (or a bridge) goes on meanwhile.
//!
//! Applications: `MusicOnHold(class[,duration])` (plays, until hangup or `duration` seconds),
//! `StartMusicOnHold(class)` (starts and goes on), `StopMusicOnHold()`. The core starts a
//! class itself when a bridged party holds the call (chan_sip's `mohinterpret`). CLI:
//! `moh show classes`, `moh show files`, `moh reload`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use starling_core::apps::{App, AppFuture, AppResult};
use starling_core::channel::{Channel, Read};
use starling_core::cli::{CliCommand, CliResult};
use starling_core::config::{Config, ConfigError, ConfigErrors};
use starling_core::frame::Frame;
use starling_core::moh::MusicOnHold;
use starling_core::{tracing, LoadError, Module, ModuleContext, ReloadError};
use starling_media::audio_file::{self, Audio, Format};
use starling_media::opus::OpusParams;
use starling_media::translate::{self, AudioFormat, Translator};

const CONFIG: &str = "musiconhold.conf";

/// One `[class]`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Class {
    name: String,
    directory: PathBuf,
    random: bool,
}

/// The classes, from musiconhold.conf (or the built-in `default`); `datadir` is where a
/// relative `directory` starts.
fn classes(config: Option<&Config>, datadir: &Path) -> Result<Vec<Class>, ConfigErrors> {
    let Some(config) = config else {
        return Ok(vec![Class { name: "default".into(), directory: datadir.join("moh"), random: false }]);
    };
    let mut errors = ConfigErrors::default();
    let mut classes = Vec::new();
    for section in config.sections().filter(|s| !s.name.eq_ignore_ascii_case("general")) {
        let mut class = Class { name: section.name.clone(), directory: datadir.join("moh"), random: false };
        for var in &section.variables {
            let result: Result<(), ConfigError> = match var.name.to_ascii_lowercase().as_str() {
                "mode" => match var.value.trim().to_ascii_lowercase().as_str() {
                    "files" => Ok(()),
                    _ => Err(var.error("only mode=files is supported (custom, mp3 and playlist are not)")),
                },
                "directory" => {
                    let dir = Path::new(var.value.trim());
                    class.directory = if dir.is_absolute() { dir.to_path_buf() } else { datadir.join(dir) };
                    Ok(())
                }
                "sort" => match var.value.trim().to_ascii_lowercase().as_str() {
                    "random" | "randstart" => {
                        class.random = true;
                        Ok(())
                    }
                    "alpha" | "" => Ok(()),
                    _ => Err(var.error("expected alpha or random")),
                },
                // Understood by Asterisk, meaning nothing for files played as they are.
                "format" | "digit" | "announcement" | "kill_escalation_delay" | "kill_method" | "answeredonly" => {
                    Ok(())
                }
                _ => {
                    tracing::warn!(
                        "{}: unknown key '{}' in class '{}' of {CONFIG}",
                        var.location,
                        var.name,
                        section.name
                    );
                    Ok(())
                }
            };
            if let Err(e) = result {
                errors.push(e);
            }
        }
        classes.push(class);
    }
    errors.into_result(classes)
}

/// The files of a folder that can be played, in name order, read.
fn read_files(directory: &Path) -> Result<Vec<(String, Arc<Audio>)>, String> {
    let entries = std::fs::read_dir(directory).map_err(|e| format!("{}: {e}", directory.display()))?;
    let mut paths: Vec<(PathBuf, Format)> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let format = Format::from_extension(p.extension()?.to_str()?)?;
            Some((p, format))
        })
        .collect();
    paths.sort_by(|a, b| a.0.cmp(&b.0));
    // One file per name: a sound in several formats plays once (the first format found).
    paths.dedup_by(|b, a| a.0.file_stem() == b.0.file_stem());
    let mut files = Vec::new();
    for (path, format) in paths {
        let read = std::fs::File::open(&path)
            .map_err(|e| e.to_string())
            .and_then(|f| audio_file::read(format, std::io::BufReader::new(f)).map_err(|e| e.to_string()));
        match read {
            Ok(audio) if !audio.samples.is_empty() => {
                let name = path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
                files.push((name, Arc::new(audio)));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("Music on hold: cannot read {}: {e}", path.display()),
        }
    }
    if files.is_empty() {
        return Err(format!("no sound files in {}", directory.display()));
    }
    Ok(files)
}

/// A class's files, read: each file's name and sound.
type Files = Arc<Vec<(String, Arc<Audio>)>>;

/// The player the core calls.
struct Player {
    classes: RwLock<Vec<Class>>,
    /// Each class's files, read when it first plays.
    loaded: Mutex<HashMap<String, Files>>,
}

impl Player {
    fn files(&self, class: &Class) -> Result<Files, String> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(files) = loaded.get(&class.name) {
            return Ok(files.clone());
        }
        let files = Arc::new(read_files(&class.directory)?);
        loaded.insert(class.name.clone(), files.clone());
        Ok(files)
    }

    fn class(&self, name: &str) -> Option<Class> {
        self.classes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
            .cloned()
    }
}

/// Walks the files in turn, 20 ms at a time, in the channel's format.
struct Stream {
    files: Files,
    file: usize,
    at: usize,
    translator: Option<(u32, Translator)>,
    target: AudioFormat,
}

impl Stream {
    fn next_frame(&mut self) -> Option<Frame> {
        let audio = self.files[self.file].1.clone();
        let per_frame = (audio.rate / 50) as usize;
        let end = (self.at + per_frame).min(audio.samples.len());
        let mut pcm = audio.samples[self.at..end].to_vec();
        pcm.resize(per_frame, 0);
        self.at = end;
        if self.at >= audio.samples.len() {
            self.at = 0;
            self.file = (self.file + 1) % self.files.len();
        }
        if self.translator.as_ref().is_none_or(|(rate, _)| *rate != audio.rate) {
            let source = if audio.rate == 16_000 { AudioFormat::Slin16 } else { AudioFormat::Slin8 };
            self.translator = Some((audio.rate, Translator::new(source, self.target, &OpusParams::default()).ok()?));
        }
        let (_, translator) = self.translator.as_mut()?;
        let frame = translator.translate(translate::Frame::Linear(pcm)).ok()?.pop()?;
        Some(Frame::Voice { format: self.target.name(), samples: self.target.rate() / 50, data: frame.into_bytes() })
    }
}

impl MusicOnHold for Player {
    fn start(&self, chan: &mut Channel, class: &str) -> Result<(), String> {
        let class = self.class(class).ok_or_else(|| format!("no class '{class}' in {CONFIG}"))?;
        let files = self.files(&class)?;
        let file = if class.random { random_below(files.len()) } else { 0 };
        let target = AudioFormat::from_name(chan.native_format).unwrap_or(AudioFormat::Slin8);
        let mut stream = Stream { files, file, at: 0, translator: None, target };
        chan.start_generator(move || stream.next_frame());
        Ok(())
    }

    fn classes(&self) -> Vec<String> {
        self.classes.read().unwrap_or_else(|p| p.into_inner()).iter().map(|c| c.name.clone()).collect()
    }
}

/// A number below `n` that differs from call to call (where `sort=random` starts).
fn random_below(n: usize) -> usize {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    (nanos as usize) % n.max(1)
}

/// `MusicOnHold(class[,duration])`: plays until the caller hangs up, or for `duration` seconds.
fn music_on_hold<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move {
        let ([class, duration], _) = starling_core::apps::app_args::<2>(data);
        let class = class.as_str();
        let duration = duration.trim().parse::<f64>().ok().filter(|d| *d > 0.0).map(Duration::from_secs_f64);
        if !starling_core::moh::start(chan, class) {
            return AppResult::Continue;
        }
        let deadline = duration.map(|d| std::time::Instant::now() + d);
        let result = loop {
            let wait = deadline
                .map_or(Duration::from_secs(3600), |at| at.saturating_duration_since(std::time::Instant::now()));
            if wait.is_zero() {
                break AppResult::Continue;
            }
            if let Read::HungUp = chan.read_timeout(wait).await {
                break AppResult::Hangup;
            }
        };
        starling_core::moh::stop(chan);
        result
    })
}

fn start_music_on_hold<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move {
        starling_core::moh::start(chan, data);
        AppResult::Continue
    })
}

fn stop_music_on_hold<'a>(chan: &'a mut Channel, _data: &'a str) -> AppFuture<'a> {
    Box::pin(async move {
        starling_core::moh::stop(chan);
        AppResult::Continue
    })
}

struct ResMusicOnHold {
    player: Arc<Player>,
    _registration: starling_core::apps::Registration<Arc<dyn MusicOnHold>>,
    _apps: starling_core::module::Registrations,
    _cli: starling_core::cli::CliRegistration,
}

/// The classes as the configuration directory and soundsdir say now.
fn load_classes(ctx: &ModuleContext) -> Result<Vec<Class>, ConfigErrors> {
    let soundsdir = ctx.core().settings().soundsdir.clone();
    let datadir = soundsdir.parent().map_or_else(|| soundsdir.clone(), Path::to_path_buf);
    let config = if ctx.config_dir().join(CONFIG).exists() { Some(ctx.load_config(CONFIG)?) } else { None };
    classes(config.as_ref(), &datadir)
}

impl Module for ResMusicOnHold {
    fn reload(&mut self, ctx: &ModuleContext) -> Result<(), ReloadError> {
        let classes = load_classes(ctx)?;
        *self.player.classes.write().unwrap_or_else(|p| p.into_inner()) = classes;
        self.player.loaded.lock().unwrap_or_else(|p| p.into_inner()).clear();
        Ok(())
    }
}

fn load(ctx: &ModuleContext) -> Result<Box<dyn Module>, LoadError> {
    let player = Arc::new(Player { classes: RwLock::new(load_classes(ctx)?), loaded: Mutex::default() });
    let registration = ctx.register_moh(player.clone())?;
    let apps = ctx.register_apps(vec![
        App::new(
            "MusicOnHold",
            "Play Music On Hold indefinitely.",
            "MusicOnHold(class[,duration]): plays hold music of the class (the channel's, or default) until hangup, or for duration seconds.",
            music_on_hold,
        ),
        App::new(
            "StartMusicOnHold",
            "Play Music On Hold.",
            "StartMusicOnHold(class): starts hold music and goes on with the dialplan.",
            start_music_on_hold,
        ),
        App::new("StopMusicOnHold", "Stop playing Music On Hold.", "StopMusicOnHold(): stops the hold music.", stop_music_on_hold),
    ])?;
    let (shown, listed) = (player.clone(), player.clone());
    let cli = ctx.register_cli(vec![
        CliCommand::new(
            "moh show classes",
            "List MusicOnHold classes",
            "Usage: moh show classes\n       Lists all MusicOnHold classes.\n",
            move |call| {
                let mut out = String::new();
                for class in shown.classes.read().unwrap_or_else(|p| p.into_inner()).iter() {
                    let _ = writeln!(
                        out,
                        "Class: {}\n\tMode: files\n\tDirectory: {}",
                        class.name,
                        class.directory.display()
                    );
                }
                call.print(&out);
                CliResult::Success
            },
        ),
        CliCommand::new(
            "moh show files",
            "List MusicOnHold file-based classes",
            "Usage: moh show files\n       Lists all loaded file-based MusicOnHold classes and their files.\n",
            move |call| {
                let mut out = String::new();
                let classes = listed.classes.read().unwrap_or_else(|p| p.into_inner()).clone();
                for class in classes {
                    let _ = writeln!(out, "Class: {}", class.name);
                    match listed.files(&class) {
                        Ok(files) => {
                            for (name, _) in files.iter() {
                                let _ = writeln!(out, "\tFile: {}", class.directory.join(name).display());
                            }
                        }
                        Err(e) => {
                            let _ = writeln!(out, "\t({e})");
                        }
                    }
                }
                call.print(&out);
                CliResult::Success
            },
        ),
        CliCommand::new(
            "moh reload",
            "Reload MusicOnHold",
            "Usage: moh reload\n       Reloads the MusicOnHold module.\n",
            |call| match call.core.loader().reload(call.core, "res_musiconhold") {
                Ok(()) => CliResult::Success,
                Err(e) => {
                    let _ = writeln!(call, "{e}");
                    CliResult::Failure
                }
            },
        ),
    ])?;
    Ok(Box::new(ResMusicOnHold { player, _registration: registration, _apps: apps, _cli: cli }))
}

starling_core::module! {
    description: "Music On Hold Resource",
    support_level: Core,
    load: load,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_from_the_file_or_the_default() {
        let datadir = Path::new("/usr/share/asterisk");
        assert_eq!(
            classes(None, datadir).unwrap(),
            [Class { name: "default".into(), directory: datadir.join("moh"), random: false }]
        );
        let config = Config::parse_str(
            CONFIG,
            "[default]\nmode=files\ndirectory=moh\n[jazz]\nmode=files\ndirectory=/srv/jazz\nsort=random\n",
        )
        .unwrap();
        let found = classes(Some(&config), datadir).unwrap();
        assert_eq!(found[1], Class { name: "jazz".into(), directory: "/srv/jazz".into(), random: true });
        let bad = Config::parse_str(CONFIG, "[x]\nmode=custom\napplication=/usr/bin/mpg123\n").unwrap();
        let error = classes(Some(&bad), datadir).unwrap_err().to_string();
        assert!(error.starts_with("musiconhold.conf:2: mode 'custom': only mode=files"), "{error}");
    }
}
