//! `VoiceMail(mailbox[@context][&mailbox2...][,options])`, as Asterisk's `vm_exec` and
//! `leave_voicemail`: the greeting, `vm-intro`, the beep, the recording, the spool files, the
//! email and the MWI counts.

use std::time::Duration;

use starling_core::apps::{AppFuture, AppResult};
use starling_core::channel::{Channel, ChannelState, Jump, JumpTarget};
use starling_core::chrono::{Local, Utc};
use starling_core::tracing;
use starling_media::audio_file::{self, Audio, Format};

use crate::config::VmUser;
use crate::email::{self, Email, EmailVars};
use crate::media::{self, RecordEnd, RecordLimits, Stop};
use crate::spool::{self, MessageInfo};

pub const DESCRIPTION: &str = "VoiceMail(mailbox[@context][&mailbox2...][,options]): plays the mailbox's greeting \
(u: unavailable, b: busy; the recorded unavail/busy/temp greeting, else the recorded name or vm-theperson and the \
number, then vm-isunavail or vm-isonphone), then vm-intro (s: skip it), a beep, and records until #, silence \
(maxsilence), maxsecs or hangup, into the spool's INBOX as msgNNNN.wav and msgNNNN.txt. During the greeting # skips \
to the beep, 0 goes to the o extension (operator=yes), * to the a extension (of exitcontext or the current \
context). With review=yes the caller may listen (2), record again (3) or accept (1). Emails the owner through \
mailcmd (the recording attached with attach=yes) and updates the mailbox's message waiting state. Sets VMSTATUS to \
SUCCESS, USEREXIT or FAILED.";

/// A counter for `msg_id` (Asterisk's `generate_msg_id`: `time-counter`).
static MSG_COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

pub fn voicemail_exec<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move {
        let args = starling_core::apps::standard_args(data);
        let boxes = args.first().map_or("", |a| a.trim());
        let options = args.get(1).map_or("", |a| a.trim());
        let Some(first) = boxes.split('&').map(str::trim).find(|b| !b.is_empty()) else {
            tracing::warn!("VoiceMail requires an argument (mailbox[@context][&mailbox2...][,options])");
            chan.set_var("VMSTATUS", "FAILED");
            return AppResult::Continue;
        };
        let conf = crate::conf();
        let Some(user) = conf.find(first).cloned() else {
            tracing::warn!("No entry in voicemail config file for '{first}'");
            chan.set_var("VMSTATUS", "FAILED");
            return AppResult::Continue;
        };
        match leave_voicemail(chan, &user, options).await {
            Ok(status) => {
                chan.set_var("VMSTATUS", status);
                AppResult::Continue
            }
            Err(status) => {
                chan.set_var("VMSTATUS", status);
                AppResult::Hangup
            }
        }
    })
}

/// The greeting to play: a recorded one of the mailbox, else Asterisk's default prompts.
fn greeting(chan: &Channel, user: &VmUser, options: &str) -> Vec<String> {
    let dir = spool::mailbox_dir(&chan.core().settings().spooldir, &user.context, &user.mailbox);
    let recorded = |name: &str| {
        let path = dir.join(name);
        crate::recording_exists(&path).then(|| path.to_string_lossy().into_owned())
    };
    let (busy, unavail) = (options.contains('b'), options.contains('u'));
    if !busy && !unavail {
        return recorded("temp").into_iter().collect();
    }
    if let Some(temp) = recorded("temp") {
        return vec![temp];
    }
    if let Some(own) = recorded(if busy { "busy" } else { "unavail" }) {
        return vec![own];
    }
    // Asterisk's invent_message: the recorded name, else vm-theperson and the number.
    let mut files = match recorded("greet") {
        Some(name) => vec![name],
        None => {
            let mut files = vec!["vm-theperson".to_owned()];
            files.extend(media::digit_files(&user.mailbox));
            files
        }
    };
    files.push(if busy { "vm-isonphone" } else { "vm-isunavail" }.to_owned());
    files
}

/// Priority 1 of `exten` in `context`.
fn jump_to(context: &str, exten: &str) -> Jump {
    Jump { context: Some(context.to_owned()), exten: Some(exten.to_owned()), target: JumpTarget::Priority(1) }
}

/// Leaves a message in `user`'s INBOX. `Ok(VMSTATUS)` to go on, `Err(VMSTATUS)` when the
/// caller hung up.
pub(crate) async fn leave_voicemail(
    chan: &mut Channel,
    user: &VmUser,
    options: &str,
) -> Result<&'static str, &'static str> {
    let conf = crate::conf();
    let g = &conf.general;
    let core = chan.core().clone();
    let inbox = crate::folder_dir(&core, user, "INBOX");
    if chan.state() != ChannelState::Up {
        chan.answer();
    }
    if spool::count(&inbox) >= g.maxmsg {
        tracing::warn!("No more messages possible for mailbox {}", user.id());
        return match media::play(chan, "vm-mailboxfull", "").await {
            Err(Stop::HungUp) => Err("FAILED"),
            _ => Ok("FAILED"),
        };
    }
    // The keys that leave (Asterisk's ecodes): # skips to the beep, 0 goes to the `o`
    // extension (operator=yes), * to the `a` extension, of exitcontext or the current context.
    let exit_context = user.option("exitcontext").unwrap_or(&g.exitcontext).to_owned();
    let exit_context = if exit_context.is_empty() { chan.context.clone() } else { exit_context };
    let cid = (!chan.caller.number.is_empty()).then(|| chan.caller.number.clone());
    let mut ecodes = String::from("#");
    if user.flag("operator", g.operator) && core.priority_exists(&exit_context, "o", 1, cid.as_deref()) {
        ecodes.push('0');
    }
    if core.priority_exists(&exit_context, "a", 1, cid.as_deref()) {
        ecodes.push('*');
    }
    let mut silent = options.contains('s');
    let mut key = match media::play_all(chan, &greeting(chan, user, options), &ecodes).await {
        Ok(()) => None,
        Err(Stop::HungUp) => return Err("FAILED"),
        Err(Stop::Key(k)) => Some(k),
    };
    if key == Some('#') {
        // As Asterisk: # skips the rest of the greeting and the instructions.
        silent = true;
        key = None;
    }
    if key.is_none() && !silent {
        key = match media::play(chan, "vm-intro", &ecodes).await {
            Ok(()) | Err(Stop::Key('#')) => None,
            Err(Stop::HungUp) => return Err("USEREXIT"),
            Err(Stop::Key(k)) => Some(k),
        };
    }
    match key {
        Some('*') => {
            starling_core::verbose!(3, "Voicemail for {}: the caller pressed *, to {exit_context},a,1", user.id());
            chan.jump(jump_to(&exit_context, "a"));
            return Ok("USEREXIT");
        }
        Some('0') => {
            starling_core::verbose!(3, "Voicemail for {}: the caller pressed 0, to {exit_context},o,1", user.id());
            if media::play(chan, "transfer", "").await == Err(Stop::HungUp) {
                return Err("USEREXIT");
            }
            chan.jump(jump_to(&exit_context, "o"));
            return Ok("USEREXIT");
        }
        _ => {}
    }
    if media::play(chan, "beep", "").await == Err(Stop::HungUp) {
        return Err("USEREXIT");
    }
    let limits = RecordLimits {
        max: (g.maxsecs > 0).then(|| Duration::from_secs(g.maxsecs.into())),
        silence: (g.maxsilence > 0).then(|| Duration::from_secs(g.maxsilence.into())),
        threshold: g.silencethreshold,
    };
    // With the operator, 0 ends the recording too (Asterisk's canceldtmf): vm-saveoper asks
    // whether to keep it, then the caller goes to `o`.
    let operator = ecodes.contains('0');
    let (mut samples, end) = media::record(chan, limits, if operator { "#0" } else { "#" }).await;
    let mut hung_up = end == RecordEnd::HungUp;
    // review=yes: the caller may listen, record again or accept (Asterisk's play_record_review
    // for an outside caller); 0 (operator=yes) leaves for the `o` extension.
    let mut to_operator = false;
    if end == RecordEnd::Key('0') {
        match save_for_operator(chan).await {
            Some(keep) => {
                to_operator = true;
                if !keep {
                    samples.clear();
                }
            }
            None => hung_up = true,
        }
    } else if !hung_up && user.flag("review", g.review) {
        match review(chan, &mut samples, limits, operator).await {
            Reviewed::Keep => {}
            Reviewed::HungUp => hung_up = true,
            Reviewed::Operator { keep } => {
                to_operator = true;
                if !keep {
                    samples.clear();
                }
            }
        }
    }
    if to_operator {
        if media::play(chan, "transfer", "").await == Err(Stop::HungUp) {
            hung_up = true;
        }
        chan.jump(jump_to(&exit_context, "o"));
    }
    let outcome = |status| {
        if hung_up {
            Err(status)
        } else if to_operator {
            Ok("USEREXIT")
        } else {
            Ok(status)
        }
    };
    // Whole seconds, rounded (Asterisk counts the recording's length in seconds).
    let duration = ((samples.len() as u64 + 4000) / 8000) as u32;
    if samples.is_empty() || duration < g.minsecs {
        starling_core::verbose!(
            3,
            "Recording was {duration} seconds long but needs to be at least {} - abandoning",
            g.minsecs.max(1)
        );
        return outcome("FAILED");
    }
    let mut wav = Vec::new();
    let audio = Audio { rate: 8000, samples };
    if let Err(e) = audio_file::write(Format::Wav, &audio, &mut wav) {
        tracing::warn!("Voicemail for {}: {e}", user.id());
        return outcome("FAILED");
    }
    let now = Utc::now();
    let counter = MSG_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let info = MessageInfo {
        origmailbox: user.mailbox.clone(),
        context: chan.context.clone(),
        macrocontext: String::new(),
        exten: chan.exten.clone(),
        rdnis: "unknown".into(),
        priority: chan.priority,
        callerchan: chan.name().to_owned(),
        callerid: spool::callerid_merge(&chan.caller.name, &chan.caller.number, "Unknown"),
        origdate: now.format("%a %b %e %r UTC %Y").to_string(),
        origtime: now.timestamp(),
        category: String::new(),
        msg_id: format!("{}-{counter:08x}", now.timestamp()),
        flag: String::new(),
        duration,
    };
    let number = match spool::store(&inbox, g.maxmsg, &wav, &info.render()) {
        Ok(Some(number)) => number,
        Ok(None) => {
            tracing::warn!("No more messages possible for mailbox {}", user.id());
            return outcome("FAILED");
        }
        Err(e) => {
            tracing::warn!("Voicemail for {}: cannot write to {}: {e}", user.id(), inbox.display());
            return outcome("FAILED");
        }
    };
    let base = spool::message_base(&inbox, number);
    starling_core::verbose!(3, "Saving message as is: {} ({duration} s)", base.display());
    if !user.email.is_empty() {
        send_email(chan, user, number, &info, &wav);
    }
    crate::mailbox_changed(&core, user);
    outcome("SUCCESS")
}

/// How reviewing a recording ended.
enum Reviewed {
    /// Accepted (`1`), or no answer: the message is kept.
    Keep,
    HungUp,
    /// `0`: to the operator, the message kept (`1` at `vm-saveoper`) or not.
    Operator {
        keep: bool,
    },
}

/// `0` for the operator after recording: `vm-saveoper`, then `1` keeps the message
/// (`vm-msgsaved`), anything else (or nothing in 3 s) throws it away (`vm-deleted`).
/// `Some(keep)`, `None` when the caller hung up.
async fn save_for_operator(chan: &mut Channel) -> Option<bool> {
    let answer = match media::play(chan, "vm-saveoper", "0123456789*#").await {
        Ok(()) => media::wait_key(chan, Duration::from_secs(3)).await.ok()?,
        Err(Stop::Key(k)) => Some(k),
        Err(Stop::HungUp) => return None,
    };
    let keep = answer == Some('1');
    let said = if keep { "vm-msgsaved" } else { "vm-deleted" };
    if media::play(chan, said, "").await == Err(Stop::HungUp) {
        return None;
    }
    Some(keep)
}

/// Asterisk's `play_record_review` for a caller with `review=yes`: `vm-review` (1 accept, 2
/// listen, 3 record again after `vm-intro` and the beep; `vm-reachoper` and 0 with the
/// operator), `vm-msgsaved` and `vm-goodbye` once accepted. No answer four times keeps it.
async fn review(chan: &mut Channel, samples: &mut Vec<i16>, limits: RecordLimits, operator: bool) -> Reviewed {
    const KEYS: &str = "0123456789*#";
    let key = |r: Result<(), Stop>| match r {
        Ok(()) => Ok(None),
        Err(Stop::Key(k)) => Ok(Some(k)),
        Err(Stop::HungUp) => Err(()),
    };
    let mut attempts = 0;
    let mut cmd: Option<char> = None;
    loop {
        let step: Result<Option<char>, ()> = match cmd.take() {
            Some('1') => {
                starling_core::verbose!(3, "Saving message as is");
                let names = ["vm-msgsaved".to_owned(), "vm-goodbye".to_owned()];
                return match media::play_all(chan, &names, "").await {
                    Err(Stop::HungUp) => Reviewed::HungUp,
                    _ => Reviewed::Keep,
                };
            }
            Some('2') => {
                starling_core::verbose!(3, "Reviewing the message");
                key(media::play_samples(chan, samples, KEYS).await)
            }
            Some('3') => {
                starling_core::verbose!(3, "Re-recording the message");
                let names = ["vm-intro".to_owned(), "beep".to_owned()];
                if media::play_all(chan, &names, "").await == Err(Stop::HungUp) {
                    return Reviewed::HungUp;
                }
                let (again, end) = media::record(chan, limits, "#").await;
                *samples = again;
                if end == RecordEnd::HungUp {
                    return Reviewed::HungUp;
                }
                Ok(None)
            }
            Some('0') if operator => {
                return match save_for_operator(chan).await {
                    Some(keep) => Reviewed::Operator { keep },
                    None => Reviewed::HungUp,
                };
            }
            Some(_) => key(media::play(chan, "vm-sorry", KEYS).await),
            None => {
                let mut answer = key(media::play(chan, "vm-review", KEYS).await);
                if operator && matches!(answer, Ok(None)) {
                    answer = match key(media::play(chan, "vm-reachoper", KEYS).await) {
                        Ok(None) => media::wait_key(chan, Duration::from_millis(600)).await.map_err(drop),
                        other => other,
                    };
                }
                if matches!(answer, Ok(None)) {
                    answer = media::wait_key(chan, Duration::from_secs(6)).await.map_err(drop);
                }
                if matches!(answer, Ok(None)) {
                    attempts += 1;
                    if attempts > 3 {
                        return Reviewed::Keep;
                    }
                }
                answer
            }
        };
        match step {
            Ok(next) => cmd = next,
            Err(()) => return Reviewed::HungUp,
        }
    }
}

/// This host's name, for the From of emails (Asterisk's `gethostname`).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

pub(crate) fn send_email(chan: &Channel, user: &VmUser, number: u32, info: &MessageInfo, wav: &[u8]) {
    let conf = crate::conf();
    let g = &conf.general;
    let vars = EmailVars {
        name: user.fullname.clone(),
        mailbox: user.mailbox.clone(),
        context: user.context.clone(),
        msgnum: number + 1,
        duration: info.duration,
        callerid: info.callerid.clone(),
        cidname: chan.caller.name.clone(),
        cidnum: chan.caller.number.clone(),
        date: Local::now().format("%A, %B %d, %Y at %r").to_string(),
    };
    let server =
        if g.serveremail.contains('@') { g.serveremail.clone() } else { format!("{}@{}", g.serveremail, host_name()) };
    let attach = user.attach.unwrap_or(g.attach);
    let file_name = format!("msg{number:04}.wav");
    let email = Email {
        from: format!("\"{}\" <{server}>", vars.substitute(&g.fromstring)),
        to: format!("\"{}\" <{}>", user.fullname, user.email),
        subject: vars.substitute(&g.emailsubject),
        body: vars.substitute(&g.emailbody),
        attachment: attach.then_some((file_name, wav)),
        unique: format!("{}-{}-{number}-{}", user.mailbox, user.context, info.msg_id),
        headers: vec![
            ("X-Asterisk-VM-Message-Num", (number + 1).to_string()),
            ("X-Asterisk-VM-Server-Name", host_name()),
            ("X-Asterisk-VM-Context", user.context.clone()),
            ("X-Asterisk-VM-Extension", user.mailbox.clone()),
            (
                "X-Asterisk-VM-Caller-ID-Num",
                if chan.caller.number.is_empty() { "an unknown caller".into() } else { chan.caller.number.clone() },
            ),
            ("X-Asterisk-VM-Caller-ID-Name", chan.caller.name.clone()),
            ("X-Asterisk-VM-Duration", info.duration.to_string()),
            ("X-Asterisk-VM-Category", String::new()),
            ("X-Asterisk-VM-Message-Type", "New".into()),
            ("X-Asterisk-VM-Orig-date", info.origdate.clone()),
            ("X-Asterisk-VM-Orig-time", info.origtime.to_string()),
        ],
    };
    let message = email.render(&Local::now().to_rfc2822());
    email::send(g.mailcmd.clone(), message, user.email.clone());
}
