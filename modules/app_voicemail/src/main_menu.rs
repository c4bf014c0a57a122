//! `VoiceMailMain([mailbox][@context][,options])`, as Asterisk's `vm_execmain`, the basic menu:
//! login (`vm-login`, `vm-password`, `vm-incorrect`, at most `maxlogins` tries; `s` skips the
//! password), the counts (`vm-youhave` N `vm-INBOX` `vm-and` M `vm-Old` `vm-messages`), then
//! `1` plays the messages of the folder (new ones first), and within a message `5` repeats it,
//! `4`/`6` go to the previous/next, `7` deletes (or undeletes) it, `9` saves it to `Old`, `#`
//! leaves; `#` at the main menu says goodbye. On leaving, heard new messages move to `Old`,
//! deleted ones go, the folders are renumbered and the MWI counts published.

use std::path::PathBuf;
use std::time::Duration;

use starling_core::apps::{AppFuture, AppResult};
use starling_core::channel::{Channel, ChannelState};
use starling_core::tracing;

use crate::config::VmUser;
use crate::media::{self, Stop};
use crate::spool;

pub const DESCRIPTION: &str = "VoiceMailMain([mailbox][@context][,options]): lets a mailbox's owner log in (the \
password unless s) and listen to messages: 1 plays them, then 5 repeats, 4 previous, 6 next, 7 deletes, 9 saves to \
Old, # leaves. Heard new messages move to Old; the message waiting state is updated.";

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

/// One folder open: its messages and what was done to each.
struct Folder {
    name: &'static str,
    dir: PathBuf,
    numbers: Vec<u32>,
    heard: Vec<bool>,
    deleted: Vec<bool>,
    /// Saved to Old (from INBOX).
    saved: Vec<bool>,
}

impl Folder {
    fn open(chan: &Channel, user: &VmUser, name: &'static str) -> Folder {
        let dir = crate::folder_dir(chan.core(), user, name);
        let numbers = spool::messages(&dir);
        let n = numbers.len();
        Folder { name, dir, numbers, heard: vec![false; n], deleted: vec![false; n], saved: vec![false; n] }
    }

    /// Applies what was done (Asterisk's `close_mailbox`): deleted messages go, heard or saved
    /// new ones move to Old; then the folder is renumbered.
    fn close(&self, chan: &Channel, user: &VmUser) {
        let old = crate::folder_dir(chan.core(), user, "Old");
        let maxmsg = crate::conf().general.maxmsg;
        for (i, &number) in self.numbers.iter().enumerate() {
            if self.deleted[i] {
                spool::remove(&self.dir, number);
            } else if self.name == "INBOX" && (self.heard[i] || self.saved[i]) {
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

/// The instructions within a message (Asterisk's `vm_instructions_en`).
fn message_instructions(folder: &Folder, current: usize) -> Vec<String> {
    let mut files = Vec::new();
    if current > 0 {
        files.push("vm-prev".to_owned());
    }
    files.push("vm-repeat".into());
    if current + 1 < folder.numbers.len() {
        files.push("vm-next".into());
    }
    files.push(if folder.deleted[current] { "vm-undelete" } else { "vm-delete" }.into());
    files.push("vm-savemessage".into());
    files.push("vm-helpexit".into());
    files
}

async fn run(chan: &mut Channel, data: &str) -> Result<(), Stop> {
    let Some(user) = login(chan, data).await? else { return Ok(()) };
    starling_core::verbose!(3, "User '{}' logged in to VoiceMailMain on {}", user.id(), chan.name());
    let inbox = Folder::open(chan, &user, "INBOX");
    let old_count = spool::count(&crate::folder_dir(chan.core(), &user, "Old")) as usize;
    let mut folder = if inbox.numbers.is_empty() && old_count > 0 { Folder::open(chan, &user, "Old") } else { inbox };
    let new_count = if folder.name == "INBOX" { folder.numbers.len() } else { 0 };
    let result = menu(chan, &user, &mut folder, new_count, old_count).await;
    folder.close(chan, &user);
    crate::publish_mwi(chan.core(), &user);
    result
}

async fn menu(chan: &mut Channel, user: &VmUser, folder: &mut Folder, new: usize, old: usize) -> Result<(), Stop> {
    let mut key = match media::play_all(chan, &intro_files(new, old), KEYS).await {
        Ok(()) => None,
        Err(Stop::Key(k)) => Some(k),
        Err(Stop::HungUp) => return Err(Stop::HungUp),
    };
    let mut current: Option<usize> = None;
    let mut silent_rounds = 0;
    loop {
        if key.is_none() {
            let prompt = match current {
                Some(i) => message_instructions(folder, i),
                None => {
                    vec!["vm-onefor".into(), format!("vm-{}", folder.name), "vm-messages".into(), "vm-helpexit".into()]
                }
            };
            key = match media::play_all(chan, &prompt, KEYS).await {
                Ok(()) => media::wait_key(chan, Duration::from_secs(5)).await?,
                Err(Stop::Key(k)) => Some(k),
                Err(Stop::HungUp) => return Err(Stop::HungUp),
            };
            if key.is_none() {
                silent_rounds += 1;
                if silent_rounds >= 3 {
                    return media::play(chan, "vm-goodbye", "").await.or_else(ignore_key);
                }
                continue;
            }
        }
        silent_rounds = 0;
        let pressed = key.take().unwrap_or('#');
        let target = match (pressed, current) {
            ('1', _) => Some(0),
            ('5', Some(i)) => Some(i),
            ('4', Some(i)) if i > 0 => Some(i - 1),
            ('6', Some(i)) if i + 1 < folder.numbers.len() => Some(i + 1),
            ('4', Some(_)) => {
                key = media::play(chan, "vm-nomore", KEYS).await.err().and_then(stop_key).transpose()?;
                None
            }
            ('6', Some(_)) => {
                key = media::play(chan, "vm-nomore", KEYS).await.err().and_then(stop_key).transpose()?;
                None
            }
            ('7', Some(i)) => {
                folder.deleted[i] = !folder.deleted[i];
                let said = if folder.deleted[i] { "vm-deleted" } else { "vm-undeleted" };
                key = media::play(chan, said, KEYS).await.err().and_then(stop_key).transpose()?;
                None
            }
            ('9', Some(i)) => {
                folder.saved[i] = true;
                key = media::play_all(chan, &["vm-message".into(), "vm-savedto".into(), "vm-Old".into()], KEYS)
                    .await
                    .err()
                    .and_then(stop_key)
                    .transpose()?;
                None
            }
            ('#', _) => {
                return media::play(chan, "vm-goodbye", "").await.or_else(ignore_key);
            }
            _ => None,
        };
        if let Some(i) = target {
            if folder.numbers.is_empty() {
                key = media::play_all(chan, &["vm-no".into(), "vm-messages".into()], KEYS)
                    .await
                    .err()
                    .and_then(stop_key)
                    .transpose()?;
                continue;
            }
            current = Some(i);
            key = play_message(chan, user, folder, i).await?;
        }
    }
}

/// A key that stopped a prompt, as `Some(Ok(key))`; a hangup as `Some(Err)`.
fn stop_key(stop: Stop) -> Option<Result<char, Stop>> {
    match stop {
        Stop::Key(k) => Some(Ok(k)),
        Stop::HungUp => Some(Err(Stop::HungUp)),
    }
}

/// `vm-first`/`vm-message N`, then the recording (Asterisk's `play_message`); a key pressed
/// meanwhile is the caller's next choice.
async fn play_message(chan: &mut Channel, user: &VmUser, folder: &mut Folder, i: usize) -> Result<Option<char>, Stop> {
    let mut intro = if i == 0 {
        vec!["vm-first".to_owned(), "vm-message".to_owned()]
    } else if i + 1 == folder.numbers.len() {
        vec!["vm-last".to_owned(), "vm-message".to_owned()]
    } else {
        let mut files = vec!["vm-message".to_owned()];
        files.extend(media::number_files(i as u32 + 1));
        files
    };
    let base = spool::message_base(&folder.dir, folder.numbers[i]);
    intro.push(base.to_string_lossy().into_owned());
    folder.heard[i] = true;
    starling_core::verbose!(3, "Playing message {} of {} to {}", i + 1, user.id(), chan.name());
    match media::play_all(chan, &intro, KEYS).await {
        Ok(()) => Ok(None),
        Err(Stop::Key(k)) => Ok(Some(k)),
        Err(Stop::HungUp) => Err(Stop::HungUp),
    }
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
