//! `VoiceMailMain([mailbox][@context][,options])`, as Asterisk's `vm_execmain`: login
//! (`vm-login`, `vm-password`, `vm-incorrect`, at most `maxlogins` tries; `s` skips the
//! password), the counts (`vm-youhave` N `vm-INBOX` `vm-and` M `vm-Old` `vm-messages`), then the
//! main menu (`vm_instructions_en`): `1` first message, `5` repeat, `4`/`6` previous/next, `7`
//! delete or undelete, `8` forward to other mailboxes, `9` save to a folder, `2` change folders,
//! `3` advanced options, `0` mailbox options, `*` help, `#` goodbye. While a message plays `#`
//! and `*` skip forward and back by `skipms`, `0` pauses, `2` starts it again. On leaving a
//! folder, deleted messages go, heard new ones move to `Old`, the folder is renumbered and the
//! MWI counts published.

use std::path::{Path, PathBuf};
use std::time::Duration;

use starling_core::apps::{AppFuture, AppResult};
use starling_core::channel::{Channel, ChannelState};
use starling_core::tracing;
use starling_media::audio_file::{self, Audio, Format};

use crate::config::VmUser;
use crate::envelope;
use crate::media::{self, Control, RecordLimits, Stop};
use crate::spool::{self, FOLDERS};

pub const DESCRIPTION: &str = "VoiceMailMain([mailbox][@context][,options]): lets a mailbox's owner log in (the \
password unless s) and listen to messages as Asterisk's: 1 first message, 5 repeat, 4 previous, 6 next, 7 delete, \
8 forward to another mailbox, 9 save to a folder (0 INBOX, 1 Old, 2 Work, 3 Family, 4 Friends), 2 change folders, \
3 advanced options (1 reply, 3 envelope, 5 send a message with sendvoicemail=yes), 0 mailbox options (1 unavailable \
greeting, 2 busy greeting, 3 name, 4 temporary greeting, 5 password, written back to voicemail.conf), * help, # exit; \
while a message plays # and * skip by skipms. Heard new messages move to Old; the message waiting state is updated.";

const KEYS: &str = "0123456789*#";

pub fn voicemail_main_exec<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move {
        if chan.state() != ChannelState::Up {
            chan.answer();
        }
        match run(chan, data).await {
            Ok(()) => AppResult::Continue,
            Err(Stop::HungUp) => AppResult::Hangup,
            Err(Stop::Key(_)) => AppResult::Continue,
        }
    })
}

/// One folder open: its messages and what was done to each (Asterisk's `vm_state`).
struct Folder {
    /// Its number in [`FOLDERS`] (0 INBOX, 1 Old...).
    index: usize,
    dir: PathBuf,
    numbers: Vec<u32>,
    heard: Vec<bool>,
    deleted: Vec<bool>,
}

impl Folder {
    fn open(chan: &Channel, user: &VmUser, index: usize) -> Folder {
        let dir = crate::folder_dir(chan.core(), user, FOLDERS[index]);
        let numbers = {
            let _lock = spool::lock();
            spool::messages(&dir)
        };
        let n = numbers.len();
        Folder { index, dir, numbers, heard: vec![false; n], deleted: vec![false; n] }
    }

    fn is_empty(&self) -> bool {
        self.numbers.is_empty()
    }

    /// Applies what was done (Asterisk's `close_mailbox`): deleted messages (and those saved
    /// to another folder) go, heard new ones move to Old; then the folder is renumbered.
    fn close(&self, chan: &Channel, user: &VmUser) {
        let old = crate::folder_dir(chan.core(), user, "Old");
        let maxmsg = crate::conf().general.maxmsg;
        let _lock = spool::lock();
        for (i, &number) in self.numbers.iter().enumerate() {
            if self.deleted[i] {
                spool::remove(&self.dir, number);
            } else if self.index == 0 && self.heard[i] {
                if let Err(e) = spool::move_message(&self.dir, number, &old, maxmsg) {
                    tracing::warn!("Voicemail {}: cannot move message {number} to Old: {e}", user.id());
                }
            }
        }
        if let Err(e) = spool::resequence(&self.dir) {
            tracing::warn!("Voicemail {}: {}: {e}", user.id(), self.dir.display());
        }
    }
}

fn files(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

/// Plays `names`; a key stops them and is the answer (Asterisk's `ast_play_and_wait` chain).
async fn prompt(chan: &mut Channel, names: &[String]) -> Result<Option<char>, Stop> {
    match media::play_all(chan, names, KEYS).await {
        Ok(()) => Ok(None),
        Err(Stop::Key(k)) => Ok(Some(k)),
        Err(Stop::HungUp) => Err(Stop::HungUp),
    }
}

/// [`prompt`], then waits up to `wait` for a key.
async fn prompt_wait(chan: &mut Channel, names: &[String], wait: Duration) -> Result<Option<char>, Stop> {
    match prompt(chan, names).await? {
        Some(k) => Ok(Some(k)),
        None => media::wait_key(chan, wait).await,
    }
}

/// `vm-Old vm-messages` (Asterisk's `vm_play_folder_name`).
fn folder_name(index: usize) -> Vec<String> {
    vec![format!("vm-{}", FOLDERS[index]), "vm-messages".into()]
}

/// A greeting's file without extension: `<spool>/<context>/<box>/unavail`.
fn greeting_base(chan: &Channel, user: &VmUser, name: &str) -> PathBuf {
    spool::mailbox_dir(&chan.core().settings().spooldir, &user.context, &user.mailbox).join(name)
}

fn path_name(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Mailboxes typed as `1002*1003#` (Asterisk's `forward_message` prompt `vm-extension`): the
/// mailboxes of `context` they name, or `None` when one is not a mailbox (or is the sender's).
fn receivers(typed: &str, context: &str, sender: &VmUser, allow_self: bool) -> Option<Vec<VmUser>> {
    let conf = crate::conf();
    let mut found = Vec::new();
    for number in typed.split('*').filter(|n| !n.is_empty()) {
        let user = conf.find(&format!("{number}@{context}"))?;
        if !allow_self && user.id() == sender.id() {
            return None;
        }
        found.push(user.clone());
    }
    (!found.is_empty()).then_some(found)
}

/// Asks for the mailbox (when not given) and the password; `None`: the caller failed.
async fn login(chan: &mut Channel, data: &str) -> Result<Option<VmUser>, Stop> {
    let args = starling_core::apps::standard_args(data);
    let given = args.first().map_or("", |a| a.trim()).to_owned();
    let options = args.get(1).map_or("", |a| a.trim()).to_owned();
    let (given_box, context) = match given.split_once('@') {
        Some((number, context)) => (number.to_owned(), context.to_owned()),
        None => (given.clone(), "default".to_owned()),
    };
    let conf = crate::conf();
    let maxlogins = conf.general.maxlogins;
    let mut mailbox = given_box;
    for attempt in 0..maxlogins {
        if mailbox.is_empty() {
            let first = match media::play(chan, "vm-login", KEYS).await {
                Ok(()) => None,
                Err(Stop::Key(k)) => Some(k),
                Err(Stop::HungUp) => return Err(Stop::HungUp),
            };
            mailbox = media::read_keys(chan, first, 80, Duration::from_secs(5)).await?;
        }
        let user = conf.find(&format!("{mailbox}@{context}")).cloned();
        if options.contains('s') && user.is_some() {
            return Ok(user);
        }
        let first = match media::play(chan, "vm-password", KEYS).await {
            Ok(()) => None,
            Err(Stop::Key(k)) => Some(k),
            Err(Stop::HungUp) => return Err(Stop::HungUp),
        };
        let password = media::read_keys(chan, first, 80, Duration::from_secs(5)).await?;
        if let Some(user) = user.filter(|u| u.password == password) {
            return Ok(Some(user));
        }
        starling_core::verbose!(3, "Incorrect password '{password}' for user '{mailbox}' (context = {context})");
        if attempt + 1 < maxlogins {
            media::play(chan, "vm-incorrect", "").await.or_else(ignore_key)?;
            // A given mailbox is asked again only when it did not exist (as Asterisk's).
            if conf.find(&format!("{mailbox}@{context}")).is_none() {
                mailbox.clear();
            }
        }
    }
    tracing::warn!("Too many failed login attempts on {}", chan.name());
    media::play(chan, "vm-goodbye", "").await.or_else(ignore_key)?;
    Ok(None)
}

/// A key pressed where no key was listened for is no error.
fn ignore_key(stop: Stop) -> Result<(), Stop> {
    match stop {
        Stop::HungUp => Err(Stop::HungUp),
        Stop::Key(_) => Ok(()),
    }
}

/// `vm-youhave N vm-INBOX vm-and M vm-Old vm-messages` (Asterisk's `vm_intro_en`).
fn intro_files(new: usize, old: usize) -> Vec<String> {
    let mut files = vec!["vm-youhave".to_owned()];
    if new > 0 {
        files.extend(media::number_files(new as u32));
        files.push("vm-INBOX".into());
        if old > 0 {
            files.push("vm-and".into());
        }
    }
    if old > 0 {
        files.extend(media::number_files(old as u32));
        files.push("vm-Old".into());
    }
    if new == 0 && old == 0 {
        files.push("vm-no".into());
    }
    files.push(if new + old == 1 { "vm-message" } else { "vm-messages" }.into());
    files
}

/// The instructions within a message (Asterisk's `vm_instructions_en`, not starting).
fn message_instructions(folder: &Folder, current: usize) -> Vec<String> {
    let mut files = Vec::new();
    if current > 0 {
        files.push("vm-prev".to_owned());
    }
    files.push("vm-advopts".into());
    files.push("vm-repeat".into());
    if current + 1 < folder.numbers.len() {
        files.push("vm-next".into());
    }
    files.push(if folder.deleted[current] { "vm-undelete" } else { "vm-delete" }.into());
    files.push("vm-toforward".into());
    files.push("vm-savemessage".into());
    files.push("vm-helpexit".into());
    files
}

/// The menu before a message is played (`vms->starting`).
fn starting_instructions(folder: &Folder) -> Vec<String> {
    let mut files = Vec::new();
    if !folder.is_empty() {
        files.push("vm-onefor".to_owned());
        files.extend(folder_name(folder.index));
    }
    files.push("vm-opts".into());
    files.push("vm-helpexit".into());
    files
}

async fn run(chan: &mut Channel, data: &str) -> Result<(), Stop> {
    let Some(user) = login(chan, data).await? else { return Ok(()) };
    starling_core::verbose!(3, "User '{}' logged in to VoiceMailMain on {}", user.id(), chan.name());
    let conf = crate::conf();
    let inbox = Folder::open(chan, &user, 0);
    let old_count = spool::count(&crate::folder_dir(chan.core(), &user, "Old")) as usize;
    let new_count = inbox.numbers.len();
    let folder = if inbox.is_empty() && old_count > 0 { Folder::open(chan, &user, 1) } else { inbox };
    let mut session = Session { user, folder, current: 0, starting: true };
    let forcename = session.user.flag("forcename", conf.general.forcename);
    let forcegreetings = session.user.flag("forcegreetings", conf.general.forcegreetings);
    if session.user.password == session.user.mailbox && (forcename || forcegreetings) {
        let done = session.new_user(chan, forcename, forcegreetings).await;
        if !matches!(done, Ok(true)) {
            session.folder.close(chan, &session.user);
            done?;
            return media::play(chan, "vm-goodbye", "").await.or_else(ignore_key);
        }
    }
    let mut cmd = None;
    if conf.general.tempgreetwarn && crate::recording_exists(&greeting_base(chan, &session.user, "temp")) {
        cmd = prompt(chan, &files(&["vm-tempgreetactive"])).await?;
    }
    if cmd.is_none() {
        cmd = prompt(chan, &intro_files(new_count, old_count)).await?;
    }
    let result = session.main_loop(chan, cmd).await;
    session.folder.close(chan, &session.user);
    crate::mailbox_changed(chan.core(), &session.user);
    result
}

/// A logged-in owner's session (Asterisk's `vm_state` and `vm_execmain`'s locals).
struct Session {
    user: VmUser,
    folder: Folder,
    current: usize,
    /// No message played yet in this folder.
    starting: bool,
}

impl Session {
    async fn main_loop(&mut self, chan: &mut Channel, mut cmd: Option<char>) -> Result<(), Stop> {
        loop {
            let key = match cmd.take() {
                Some(k) => k,
                None => match self.instructions(chan).await? {
                    Some(k) => k,
                    None => break,
                },
            };
            cmd = match key {
                '1' => {
                    self.current = 0;
                    self.play_current(chan).await?
                }
                '5' => self.play_current(chan).await?,
                '2' => self.change_folder(chan).await?,
                '3' => self.advanced(chan).await?,
                '4' if self.current > 0 => {
                    self.current -= 1;
                    self.play_message(chan).await?
                }
                '6' if self.current + 1 < self.folder.numbers.len() => {
                    self.current += 1;
                    self.play_message(chan).await?
                }
                '4' | '6' => prompt(chan, &files(&["vm-nomore"])).await?,
                '7' if !self.folder.is_empty() => {
                    let i = self.current;
                    self.folder.deleted[i] = !self.folder.deleted[i];
                    let said = if self.folder.deleted[i] { "vm-deleted" } else { "vm-undeleted" };
                    let key = prompt(chan, &files(&[said])).await?;
                    self.next_after_command(chan, key).await?
                }
                '8' if !self.folder.is_empty() => {
                    let key = self.forward(chan).await?;
                    self.next_after_command(chan, key).await?
                }
                '8' => prompt(chan, &files(&["vm-nomore"])).await?,
                '9' if !self.folder.is_empty() => {
                    let key = self.save(chan).await?;
                    self.next_after_command(chan, key).await?
                }
                '*' if !self.starting => {
                    let mut help = vec!["vm-onefor".to_owned()];
                    help.extend(folder_name(self.folder.index));
                    help.push("vm-opts".into());
                    prompt(chan, &help).await?
                }
                '0' => self.options(chan).await?,
                '#' => break,
                _ => None,
            };
        }
        media::play(chan, "vm-goodbye", "").await.or_else(ignore_key)
    }

    /// The instructions, up to three times; `None`: no key came (Asterisk's `'t'`).
    async fn instructions(&mut self, chan: &mut Channel) -> Result<Option<char>, Stop> {
        for _ in 0..3 {
            let names = if self.starting || self.folder.is_empty() {
                starting_instructions(&self.folder)
            } else {
                message_instructions(&self.folder, self.current)
            };
            if let Some(key) = prompt_wait(chan, &names, Duration::from_secs(6)).await? {
                return Ok(Some(key));
            }
        }
        Ok(None)
    }

    /// With `nextaftercmd`, the next message plays after 7, 8 and 9 (Asterisk's
    /// `VM_SKIPAFTERCMD`); else `key` (pressed during the confirmation) is the next choice.
    async fn next_after_command(&mut self, chan: &mut Channel, key: Option<char>) -> Result<Option<char>, Stop> {
        if crate::conf().general.nextaftercmd && self.current + 1 < self.folder.numbers.len() {
            self.current += 1;
            return self.play_message(chan).await;
        }
        Ok(key)
    }

    /// `1`/`5`: the current message, or `vm-youhave vm-no vm-INBOX vm-messages`.
    async fn play_current(&mut self, chan: &mut Channel) -> Result<Option<char>, Stop> {
        if self.folder.is_empty() {
            let mut names = files(&["vm-youhave", "vm-no"]);
            names.extend(folder_name(self.folder.index));
            return prompt(chan, &names).await;
        }
        self.play_message(chan).await
    }

    /// `vm-first vm-message`, `vm-message N`..., the envelope (`envelope`, `saycid`,
    /// `sayduration`; `1` skips it), then the recording with [`Control`]'s keys (Asterisk's
    /// `play_message`). A key pressed is the caller's next choice.
    async fn play_message(&mut self, chan: &mut Channel) -> Result<Option<char>, Stop> {
        self.starting = false;
        let i = self.current;
        let last = self.folder.numbers.len() - 1;
        let mut intro = Vec::new();
        if i == 0 {
            intro.push("vm-first".to_owned());
        } else if i == last {
            intro.push("vm-last".to_owned());
        }
        intro.push("vm-message".into());
        if i != 0 && i != last {
            intro.extend(media::number_files(i as u32 + 1));
        }
        let base = spool::message_base(&self.folder.dir, self.folder.numbers[i]);
        intro.extend(self.envelope_files(chan, &base, false));
        match prompt(chan, &intro).await? {
            Some('1') | None => {}
            Some(key) => return Ok(Some(key)),
        }
        self.folder.heard[i] = true;
        starling_core::verbose!(3, "Playing message {} of {} to {}", i + 1, self.user.id(), chan.name());
        let control = Control::listen(crate::conf().general.skipms);
        match media::play_controlled(chan, &path_name(&base), &control).await {
            Ok(()) => Ok(None),
            Err(Stop::Key(k)) => Ok(Some(k)),
            Err(Stop::HungUp) => Err(Stop::HungUp),
        }
    }

    /// What is said of a message before it (`forced`: advanced option 3 says the date and the
    /// caller whatever `envelope`/`saycid` say).
    fn envelope_files(&self, chan: &Channel, base: &Path, forced: bool) -> Vec<String> {
        let conf = crate::conf();
        let g = &conf.general;
        let info = spool::MessageInfo::parse(&std::fs::read_to_string(base.with_extension("txt")).unwrap_or_default());
        let mut names = Vec::new();
        if forced || self.user.flag("envelope", g.envelope) {
            names.extend(envelope::datetime_files(&g.zones, &self.user.zone, info.origtime));
        }
        if forced || self.user.flag("saycid", g.saycid) {
            let spooldir = chan.core().settings().spooldir.clone();
            let greet_of = |number: &str| {
                let greet = spool::mailbox_dir(&spooldir, &info.context, number).join("greet");
                crate::recording_exists(&greet).then(|| path_name(&greet))
            };
            names.extend(envelope::callerid_files(&info.callerid, &info.context, &g.cidinternalcontexts, greet_of));
        }
        if !forced && self.user.flag("sayduration", g.sayduration) {
            let minimum = self.user.option("saydurationm").and_then(|m| m.parse().ok()).unwrap_or(g.saydurationm);
            names.extend(envelope::duration_files(info.duration, minimum));
        }
        names
    }

    /// `2`: `vm-changeto`, then the folder by its number (Asterisk's `get_folder2`); `#` keeps
    /// the folder. Says the folder's name.
    async fn change_folder(&mut self, chan: &mut Channel) -> Result<Option<char>, Stop> {
        if let Some(index) = choose_folder(chan, "vm-changeto").await? {
            self.folder.close(chan, &self.user);
            crate::mailbox_changed(chan.core(), &self.user);
            self.folder = Folder::open(chan, &self.user, index);
        }
        self.starting = true;
        self.current = 0;
        prompt(chan, &folder_name(self.folder.index)).await
    }

    /// `9`: `vm-savefolder`, then the folder: the message is copied there (next number) and
    /// marked deleted here, so it goes from this folder when it is closed (Asterisk's
    /// `save_to_folder`). `vm-message N vm-savedto vm-Work vm-messages`, or `vm-mailboxfull`.
    async fn save(&mut self, chan: &mut Channel) -> Result<Option<char>, Stop> {
        let Some(index) = choose_folder(chan, "vm-savefolder").await? else { return Ok(None) };
        let i = self.current;
        let maxmsg = crate::conf().general.maxmsg;
        let saved = if index == self.folder.index {
            Ok(true)
        } else {
            let target = crate::folder_dir(chan.core(), &self.user, FOLDERS[index]);
            let _lock = spool::lock();
            spool::copy_message(&self.folder.dir, self.folder.numbers[i], &target, maxmsg).map(|n| n.is_some())
        };
        match saved {
            Ok(true) => {
                if index != self.folder.index {
                    self.folder.deleted[i] = true;
                }
                starling_core::verbose!(
                    3,
                    "Voicemail {}: message {} saved to {}",
                    self.user.id(),
                    i + 1,
                    FOLDERS[index]
                );
                let mut names = vec!["vm-message".to_owned()];
                names.extend(media::number_files(i as u32 + 1));
                names.push("vm-savedto".into());
                names.extend(folder_name(index));
                prompt(chan, &names).await
            }
            Ok(false) => {
                self.folder.deleted[i] = false;
                self.folder.heard[i] = false;
                prompt(chan, &files(&["vm-mailboxfull"])).await
            }
            Err(e) => {
                tracing::warn!("Voicemail {}: cannot save to {}: {e}", self.user.id(), FOLDERS[index]);
                prompt(chan, &files(&["vm-sorry"])).await
            }
        }
    }

    /// Asks for mailboxes (`vm-extension`, digits, `#`; several joined by `*`), as Asterisk's
    /// `forward_message`: up to three tries, `pbx-invalid` after a bad one. `None`: none given.
    async fn ask_receivers(&mut self, chan: &mut Channel, allow_self: bool) -> Result<Option<Vec<VmUser>>, Stop> {
        let maxmsg = crate::conf().general.maxmsg;
        for _ in 0..3 {
            let first = prompt(chan, &files(&["vm-extension"])).await?;
            if first == Some('#') {
                continue;
            }
            let typed = media::read_string(chan, first, 80, Duration::from_secs(10), Duration::from_secs(2)).await?;
            if typed.is_empty() {
                continue;
            }
            match receivers(&typed, &self.user.context, &self.user, allow_self) {
                Some(found) => {
                    if let Some(full) = found.iter().find(|u| {
                        let (new, old) = crate::inbox_count(chan.core(), u);
                        new + old >= maxmsg
                    }) {
                        tracing::info!("Mailbox '{}' is full with capacity of {maxmsg}", full.id());
                        prompt(chan, &files(&["vm-mailboxfull"])).await?;
                        continue;
                    }
                    return Ok(Some(found));
                }
                None => {
                    starling_core::verbose!(3, "'{typed}' is not a valid mailbox");
                    prompt(chan, &files(&["pbx-invalid"])).await?;
                }
            }
        }
        Ok(None)
    }

    /// `8`: the message is copied to other mailboxes' INBOX (Asterisk's `forward_message` with
    /// `vm_forwardoptions`: `1` records something to go before it in the copies, `2` forwards,
    /// `*` returns). Their counts are published and those with an
    /// email are emailed (as for a new message).
    async fn forward(&mut self, chan: &mut Channel) -> Result<Option<char>, Stop> {
        let Some(targets) = self.ask_receivers(chan, false).await? else { return Ok(None) };
        let mut retries = 0;
        let mut cmd = None;
        let mut prepend: Option<Vec<i16>> = None;
        loop {
            match cmd.take() {
                Some('2') => break,
                Some('*') => return Ok(None),
                Some('1') => {
                    // Asterisk's ast_play_and_prepend: the beep, then a recording until `#`
                    // that goes before the forwarded copies (the message here stays as it is).
                    media::play(chan, "beep", "").await.or_else(ignore_key)?;
                    let g = &crate::conf().general;
                    let limits = RecordLimits {
                        max: (g.maxsecs > 0).then(|| Duration::from_secs(g.maxsecs.into())),
                        silence: (g.maxsilence > 0).then(|| Duration::from_secs(g.maxsilence.into())),
                        threshold: g.silencethreshold,
                    };
                    let (samples, end) = media::record(chan, limits, "#").await;
                    if end == media::RecordEnd::HungUp {
                        return Err(Stop::HungUp);
                    }
                    starling_core::verbose!(3, "Recorded {} ms to prepend", samples.len() / 8);
                    prepend = Some(samples);
                }
                _ => {
                    cmd = prompt_wait(chan, &files(&["vm-forwardoptions", "vm-starmain"]), Duration::from_secs(6))
                        .await?;
                    if cmd.is_none() {
                        retries += 1;
                        if retries > 3 {
                            return Ok(None);
                        }
                    }
                }
            }
        }
        let maxmsg = crate::conf().general.maxmsg;
        let number = self.folder.numbers[self.current];
        let mut copied = 0;
        for target in &targets {
            let inbox = crate::folder_dir(chan.core(), target, "INBOX");
            let copied_to = {
                let _lock = spool::lock();
                spool::copy_message(&self.folder.dir, number, &inbox, maxmsg)
            };
            if let (Ok(Some(n)), Some(intro)) = (&copied_to, &prepend) {
                if let Err(e) = prepend_to(&spool::message_base(&inbox, *n), intro) {
                    tracing::warn!("Voicemail {}: cannot prepend to the forwarded message: {e}", target.id());
                }
            }
            match copied_to {
                Ok(Some(n)) => {
                    starling_core::verbose!(
                        3,
                        "Voicemail {}: message forwarded to {} as msg{n:04}",
                        self.user.id(),
                        target.id()
                    );
                    crate::mailbox_changed(chan.core(), target);
                    // As Asterisk's copy_message: the receiver is told as of a new message.
                    if !target.email.is_empty() {
                        let copy = spool::message_base(&inbox, n);
                        let text = std::fs::read_to_string(copy.with_extension("txt")).unwrap_or_default();
                        let info = spool::MessageInfo::parse(&text);
                        let wav = std::fs::read(copy.with_extension("wav")).unwrap_or_default();
                        crate::voicemail::send_email(chan, target, n, &info, &wav);
                    }
                    copied += 1;
                }
                Ok(None) => tracing::warn!("Voicemail {}: mailbox full", target.id()),
                Err(e) => tracing::warn!("Voicemail {}: cannot forward: {e}", target.id()),
            }
        }
        if copied == 0 {
            return prompt(chan, &files(&["vm-sorry"])).await;
        }
        prompt(chan, &files(&["vm-msgforwarded"])).await
    }

    /// `3`: advanced options (Asterisk's `vm_execmain` case '3'): `1` reply (a message to the
    /// caller's mailbox when the caller ID number is one of this context), `3` the envelope,
    /// `5` a new message for other mailboxes (`sendvoicemail=yes`), `*` back; `2` (callback)
    /// and `4` (dial out) need contexts Starling does not take and say `vm-sorry`.
    async fn advanced(&mut self, chan: &mut Channel) -> Result<Option<char>, Stop> {
        let sendvoicemail = self.user.flag("sendvoicemail", crate::conf().general.sendvoicemail);
        let mut repeats = 0;
        let mut cmd: Option<char> = None;
        loop {
            let has_message = !self.starting && !self.folder.is_empty();
            match cmd.take() {
                Some('1') => {
                    if has_message {
                        self.reply(chan).await?;
                    } else {
                        prompt(chan, &files(&["vm-sorry"])).await?;
                    }
                    return Ok(None);
                }
                Some('3') => {
                    if has_message {
                        let base = spool::message_base(&self.folder.dir, self.folder.numbers[self.current]);
                        let names = self.envelope_files(chan, &base, true);
                        prompt(chan, &names).await?;
                    } else {
                        prompt(chan, &files(&["vm-sorry"])).await?;
                    }
                    return Ok(None);
                }
                Some('5') => {
                    if sendvoicemail {
                        if let Some(targets) = self.ask_receivers(chan, true).await? {
                            leave_for(chan, &targets[0]).await?;
                        }
                    } else {
                        prompt(chan, &files(&["vm-sorry"])).await?;
                    }
                    return Ok(None);
                }
                Some('2' | '4') => {
                    prompt(chan, &files(&["vm-sorry"])).await?;
                    return Ok(None);
                }
                Some('*') => return Ok(None),
                _ => {
                    let mut names = Vec::new();
                    if !self.starting {
                        names.push("vm-toreply".to_owned());
                        names.push("vm-tohearenv".to_owned());
                    }
                    if sendvoicemail {
                        names.push("vm-leavemsg".into());
                    }
                    names.push("vm-starmain".into());
                    cmd = prompt_wait(chan, &names, Duration::from_secs(6)).await?;
                    if cmd.is_none() {
                        repeats += 1;
                        if repeats > 3 {
                            return Ok(None);
                        }
                    }
                }
            }
        }
    }

    /// Advanced option 1: a message left in the mailbox of the caller's number.
    async fn reply(&mut self, chan: &mut Channel) -> Result<(), Stop> {
        let base = spool::message_base(&self.folder.dir, self.folder.numbers[self.current]);
        let info = spool::MessageInfo::parse(&std::fs::read_to_string(base.with_extension("txt")).unwrap_or_default());
        let (_, number) = envelope::parse_callerid(&info.callerid);
        if number.is_empty() {
            starling_core::verbose!(3, "No CID number available, no reply sent");
            return prompt(chan, &files(&["vm-nonumber"])).await.map(drop);
        }
        let conf = crate::conf();
        let Some(target) = conf.find(&format!("{number}@{}", self.user.context)).cloned() else {
            starling_core::verbose!(
                3,
                "No mailbox number '{number}' in context '{}', no reply sent",
                self.user.context
            );
            return prompt(chan, &files(&["vm-nobox"])).await.map(drop);
        };
        starling_core::verbose!(3, "Leaving voicemail for '{number}' in context '{}'", self.user.context);
        leave_for(chan, &target).await
    }

    /// `0`: mailbox options (Asterisk's `vm_options`).
    async fn options(&mut self, chan: &mut Channel) -> Result<Option<char>, Stop> {
        let maxgreet = crate::conf().general.maxgreet;
        let mut retries = 0;
        let mut cmd: Option<char> = None;
        loop {
            if cmd.is_some() {
                retries = 0;
            }
            cmd = match cmd.take() {
                Some('1') => self.record_greeting(chan, "vm-rec-unv", "unavail", maxgreet).await?,
                Some('2') => self.record_greeting(chan, "vm-rec-busy", "busy", maxgreet).await?,
                Some('3') => self.record_greeting(chan, "vm-rec-name", "greet", maxgreet).await?,
                Some('4') => self.temp_greeting(chan, maxgreet).await?,
                Some('5') => self.change_password(chan).await?,
                Some('*') | Some('t') => return Ok(None),
                _ => {
                    let mut names = Vec::new();
                    if crate::recording_exists(&greeting_base(chan, &self.user, "temp")) {
                        names.push("vm-tmpexists".to_owned());
                    }
                    names.push("vm-options".into());
                    let key = prompt_wait(chan, &names, Duration::from_secs(6)).await?;
                    if key.is_none() {
                        retries += 1;
                        if retries > 3 {
                            return Ok(None);
                        }
                    }
                    key
                }
            };
        }
    }

    /// `0 4`: the temporary greeting (Asterisk's `vm_tempgreeting`): recorded at once when
    /// there is none; else `1` records it again, `2` removes it (`vm-tempremoved`), `*` back.
    async fn temp_greeting(&mut self, chan: &mut Channel, maxgreet: u32) -> Result<Option<char>, Stop> {
        let base = greeting_base(chan, &self.user, "temp");
        let mut retries = 0;
        let mut cmd: Option<char> = None;
        loop {
            if !crate::recording_exists(&base) {
                let key = self.record_greeting(chan, "vm-rec-temp", "temp", maxgreet).await?;
                return Ok(if key == Some('t') { None } else { key });
            }
            if cmd.is_some() {
                retries = 0;
            }
            cmd = match cmd.take() {
                Some('1') => self.record_greeting(chan, "vm-rec-temp", "temp", maxgreet).await?,
                Some('2') => {
                    spool::remove_recording(&base);
                    prompt(chan, &files(&["vm-tempremoved"])).await?;
                    return Ok(None);
                }
                Some('*') | Some('t') => return Ok(None),
                _ => {
                    let key = prompt_wait(chan, &files(&["vm-tempgreeting2"]), Duration::from_secs(6)).await?;
                    if key.is_none() {
                        retries += 1;
                        if retries > 3 {
                            return Ok(None);
                        }
                    }
                    key
                }
            };
        }
    }

    /// A greeting recorded by the owner (Asterisk's `play_record_review` for an owner):
    /// `prompt`, the beep, the recording to `<name>.tmp.wav` until `#`, silence or `maxgreet`;
    /// then `vm-review`: `1` keeps it as `<name>.wav` (`vm-msgsaved`), `2` plays it, `3`
    /// records again. No answer after four tries (or a hangup) throws it away: `Some('t')`.
    async fn record_greeting(
        &mut self,
        chan: &mut Channel,
        prompt_file: &str,
        name: &str,
        maxgreet: u32,
    ) -> Result<Option<char>, Stop> {
        let base = greeting_base(chan, &self.user, name);
        let temp = base.with_file_name(format!("{name}.tmp"));
        let temp_wav = base.with_file_name(format!("{name}.tmp.wav"));
        let conf = crate::conf();
        let limits = RecordLimits {
            max: (maxgreet > 0).then(|| Duration::from_secs(maxgreet.into())),
            silence: (conf.general.maxsilence > 0).then(|| Duration::from_secs(conf.general.maxsilence.into())),
            threshold: conf.general.silencethreshold,
        };
        let mut recorded = false;
        let mut attempts = 0;
        let mut cmd = Some('3');
        loop {
            cmd = match cmd.take() {
                Some('1') if recorded => {
                    starling_core::verbose!(3, "Saving message as is");
                    if let Err(e) = std::fs::rename(&temp_wav, base.with_extension("wav")) {
                        tracing::warn!("Voicemail {}: cannot save {}: {e}", self.user.id(), base.display());
                    }
                    prompt(chan, &files(&["vm-msgsaved"])).await?;
                    return Ok(None);
                }
                Some('1') | Some('3') => {
                    starling_core::verbose!(3, "{} the message", if recorded { "Re-recording" } else { "Recording" });
                    media::play_all(chan, &files(&[prompt_file, "beep"]), KEYS).await.or_else(ignore_key)?;
                    let (samples, end) = media::record(chan, limits, "#").await;
                    if end == media::RecordEnd::HungUp {
                        let _ = std::fs::remove_file(&temp_wav);
                        return Err(Stop::HungUp);
                    }
                    let mut wav = Vec::new();
                    if let Some(dir) = temp_wav.parent() {
                        let _ = std::fs::create_dir_all(dir);
                    }
                    let written = audio_file::write(Format::Wav, &Audio { rate: 8000, samples }, &mut wav)
                        .map_err(|e| e.to_string())
                        .and_then(|()| spool::write_atomically(&temp_wav, &wav).map_err(|e| e.to_string()));
                    match written {
                        Ok(()) => recorded = true,
                        Err(e) => tracing::warn!("Voicemail {}: {}: {e}", self.user.id(), temp_wav.display()),
                    }
                    None
                }
                Some('2') if recorded => {
                    starling_core::verbose!(3, "Reviewing the message");
                    prompt(chan, &[path_name(&temp)]).await?
                }
                Some(_) => prompt(chan, &files(&["vm-sorry"])).await?,
                None => {
                    let key = if recorded {
                        prompt(chan, &files(&["vm-review"])).await?
                    } else {
                        prompt_wait(chan, &files(&["vm-torerecord"]), Duration::from_millis(600)).await?
                    };
                    let key = match key {
                        Some(k) => Some(k),
                        None => media::wait_key(chan, Duration::from_secs(6)).await?,
                    };
                    if key.is_none() {
                        attempts += 1;
                        if attempts > 3 {
                            let _ = std::fs::remove_file(&temp_wav);
                            return Ok(Some('t'));
                        }
                    }
                    key
                }
            };
        }
    }

    /// A new user's first login (Asterisk's `vm_newuser_setup`, when the password is the
    /// mailbox number and `forcename`/`forcegreetings` are on): `vm-newuser`, the name (`greet`)
    /// and the unavailable and busy greetings when missing, recorded as with `0`; then a new
    /// password, up to three tries. `Ok(false)`: the user stopped (no answer, `#`, or three
    /// failed tries) and VoiceMailMain ends.
    async fn new_user(&mut self, chan: &mut Channel, forcename: bool, forcegreetings: bool) -> Result<bool, Stop> {
        prompt(chan, &files(&["vm-newuser"])).await?;
        let maxgreet = crate::conf().general.maxgreet;
        let mut wanted = Vec::new();
        if forcename {
            wanted.push(("vm-rec-name", "greet"));
        }
        if forcegreetings {
            wanted.push(("vm-rec-unv", "unavail"));
            wanted.push(("vm-rec-busy", "busy"));
        }
        for (prompt_file, name) in wanted {
            if crate::recording_exists(&greeting_base(chan, &self.user, name)) {
                continue;
            }
            if self.record_greeting(chan, prompt_file, name, maxgreet).await? == Some('t') {
                return Ok(false);
            }
        }
        let minpassword = crate::conf().general.minpassword as usize;
        for _ in 0..3 {
            let Some(first) = read_password(chan, "vm-newpassword").await? else { return Ok(false) };
            if first.is_empty() {
                return Ok(false);
            }
            let said = if first.len() < minpassword || first.contains('*') {
                tracing::info!("Invalid password for user {}", self.user.id());
                "vm-invalid-password"
            } else {
                let Some(second) = read_password(chan, "vm-reenterpassword").await? else { return Ok(false) };
                if second == first {
                    self.store_password(chan, first).await;
                    prompt(chan, &files(&["vm-passchanged"])).await?;
                    return Ok(true);
                }
                tracing::info!("Password mismatch for user {}", self.user.id());
                "vm-mismatch"
            };
            prompt(chan, &files(&[said, "vm-pls-try-again"])).await?;
        }
        Ok(false)
    }

    /// Stores the new password and puts it in force (Asterisk's `vm_change_password`): written
    /// to voicemail.conf, or to the mailbox's `secret.conf` with `passwordlocation=spooldir`, then
    /// `externpassnotify` runs; or, with `externpass`, that program changes it (Asterisk's
    /// `vm_change_password_shell`: in force when it exits 0). A failure is logged and the old
    /// one stays.
    async fn store_password(&mut self, chan: &Channel, password: String) {
        let g = crate::conf().general.clone();
        let (context, mailbox) = (&self.user.context, &self.user.mailbox);
        let stored = if !g.externpass.is_empty() {
            let command = format!("{} {context} {mailbox} {password}", g.externpass);
            crate::email::run_and_wait(command).await.map(|()| g.externpass.clone())
        } else {
            let file = if g.password_in_spool {
                crate::folder_dir(chan.core(), &self.user, "").join(crate::password::SPOOL_FILE)
            } else {
                chan.core().settings().etcdir.join(crate::config::CONFIG)
            };
            let written = if g.password_in_spool {
                crate::password::write_spool(&file, &password)
            } else {
                crate::password::write(&file, context, mailbox, &password)
            };
            if written.is_ok() && !g.externpassnotify.is_empty() {
                crate::email::run_detached(format!("{} {context} {mailbox} {password}", g.externpassnotify));
            }
            written.map(|()| file.display().to_string()).map_err(|e| e.to_string())
        };
        match stored {
            Ok(place) => {
                crate::set_password(&self.user, &password);
                self.user.password = password;
                starling_core::verbose!(4, "Voicemail {}: password changed by {place}", self.user.id());
            }
            Err(e) => tracing::warn!("Voicemail {}: the password was not changed: {e}", self.user.id()),
        }
    }

    /// `0 5`: `vm-newpassword`, the digits and `#`, `vm-reenterpassword`, the same again; then
    /// `vm-passchanged` and the password is written to voicemail.conf (Asterisk's
    /// `vm_change_password`), or `vm-mismatch` / `vm-invalid-password` and `vm-pls-try-again`.
    /// A password that starts with `-` cannot be changed (`vm-no`).
    async fn change_password(&mut self, chan: &mut Channel) -> Result<Option<char>, Stop> {
        if self.user.password.starts_with('-') {
            return prompt(chan, &files(&["vm-no"])).await;
        }
        let Some(first) = read_password(chan, "vm-newpassword").await? else { return Ok(None) };
        let minpassword = crate::conf().general.minpassword as usize;
        if first.len() < minpassword || first.contains('*') {
            tracing::info!("Invalid password for user {}", self.user.id());
            return prompt(chan, &files(&["vm-invalid-password", "vm-pls-try-again"])).await;
        }
        let Some(second) = read_password(chan, "vm-reenterpassword").await? else { return Ok(None) };
        if first != second {
            tracing::info!("Password mismatch for user {}", self.user.id());
            return prompt(chan, &files(&["vm-mismatch", "vm-pls-try-again"])).await;
        }
        self.store_password(chan, first).await;
        prompt(chan, &files(&["vm-passchanged"])).await
    }
}

/// Puts `intro` before the recording of message `base` (`.wav`) and adds its length to the
/// message's `duration`.
fn prepend_to(base: &Path, intro: &[i16]) -> Result<(), String> {
    let wav = base.with_extension("wav");
    let file = std::fs::File::open(&wav).map_err(|e| e.to_string())?;
    let audio = audio_file::read(Format::Wav, std::io::BufReader::new(file)).map_err(|e| e.to_string())?;
    if audio.rate != 8000 {
        return Err(format!("{}: {} Hz, not 8000", wav.display(), audio.rate));
    }
    let mut samples = intro.to_vec();
    samples.extend_from_slice(&audio.samples);
    let mut out = Vec::new();
    audio_file::write(Format::Wav, &Audio { rate: 8000, samples }, &mut out).map_err(|e| e.to_string())?;
    let txt = base.with_extension("txt");
    let mut info = spool::MessageInfo::parse(&std::fs::read_to_string(&txt).map_err(|e| e.to_string())?);
    info.duration += ((intro.len() + 4000) / 8000) as u32;
    let _lock = spool::lock();
    spool::write_atomically(&wav, &out).map_err(|e| e.to_string())?;
    spool::write_atomically(&txt, info.render().as_bytes()).map_err(|e| e.to_string())
}

/// A password prompt, then the keys until `#` (a `#` during the prompt: an empty password);
/// `None` when the caller said nothing.
async fn read_password(chan: &mut Channel, prompt_file: &str) -> Result<Option<String>, Stop> {
    let first = prompt(chan, &files(&[prompt_file])).await?;
    if first == Some('#') {
        return Ok(Some(String::new()));
    }
    let typed = media::read_string(chan, first, 79, Duration::from_secs(10), Duration::from_secs(2)).await?;
    Ok((!typed.is_empty()).then_some(typed))
}

/// `VoiceMail()` for `target` from within VoiceMailMain (reply, send): its temporary greeting
/// if any, `vm-intro`, the beep and the recording.
async fn leave_for(chan: &mut Channel, target: &VmUser) -> Result<(), Stop> {
    match crate::voicemail::leave_voicemail(chan, target, "").await {
        Ok(_) => Ok(()),
        Err(_) => Err(Stop::HungUp),
    }
}

/// `vm-changeto`/`vm-savefolder`, then `vm-press 0 vm-for vm-INBOX vm-messages 1 vm-for...
/// vm-tocancel` until a folder's key (Asterisk's `get_folder2`); `#` (or four rounds without
/// one) cancels. Folders 0 to 4 (INBOX, Old, Work, Family, Friends).
async fn choose_folder(chan: &mut Channel, first: &str) -> Result<Option<usize>, Stop> {
    let mut key = prompt(chan, &files(&[first])).await?;
    let mut loops = 0;
    loop {
        match key {
            Some('#') => return Ok(None),
            Some(k @ '0'..='4') => return Ok(Some(k as usize - '0' as usize)),
            _ if loops == 4 => return Ok(None),
            _ => {}
        }
        loops += 1;
        key = folder_menu(chan).await?;
    }
}

/// Asterisk's `get_folder`: each folder by its number, half a second apart, then `vm-tocancel`.
async fn folder_menu(chan: &mut Channel) -> Result<Option<char>, Stop> {
    if let Some(k) = prompt(chan, &files(&["vm-press"])).await? {
        return Ok(Some(k));
    }
    for (index, _) in FOLDERS.iter().enumerate() {
        let mut names = media::number_files(index as u32);
        names.push("vm-for".into());
        names.extend(folder_name(index));
        if let Some(k) = prompt_wait(chan, &names, Duration::from_millis(500)).await? {
            return Ok(Some(k));
        }
    }
    prompt_wait(chan, &files(&["vm-tocancel"]), Duration::from_secs(4)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counts_are_said_as_asterisk_says_them() {
        assert_eq!(intro_files(1, 0), ["vm-youhave", "digits/1", "vm-INBOX", "vm-message"]);
        assert_eq!(
            intro_files(2, 3),
            ["vm-youhave", "digits/2", "vm-INBOX", "vm-and", "digits/3", "vm-Old", "vm-messages"]
        );
        assert_eq!(intro_files(0, 0), ["vm-youhave", "vm-no", "vm-messages"]);
    }
}
