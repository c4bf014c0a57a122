//! app_dial: `Dial(Tech/a[&Tech/b...][,timeout[,options]])`, as Asterisk's app_dial.
//!
//! Every target is requested from its technology and called at once (parallel forking); the
//! first to answer wins and the others are hung up (chan_sip sends them CANCEL). Meanwhile the
//! caller hears what the callees indicate (ringing, early media) — or, with `r`, ringing from
//! the start. The answered call is bridged by the core ([`starling_core::bridge`]).
//!
//! Afterwards `DIALSTATUS` is `ANSWER`, `BUSY`, `NOANSWER`, `CANCEL`, `CONGESTION` or
//! `CHANUNAVAIL` (by Asterisk's rules: any busy callee makes it BUSY, else any congested one
//! CONGESTION, else any that could not be reached CHANUNAVAIL, else NOANSWER), with
//! `DIALEDPEERNAME`, `DIALEDPEERNUMBER`, `DIALEDTIME` and `ANSWEREDTIME` (seconds), and the
//! caller's `HANGUPCAUSE` carries the last callee's cause.
//!
//! Options: `r` ringing, `m[(class)]` music on hold for the caller until a callee answers
//! (early media before the caller's own answer; ringing when the class cannot play), `t`/`T` blind transfer by the callee/caller (`#` then an extension of the
//! caller's context; no native bridge then, so that the keys reach it), `g` go on in the
//! dialplan when the callee hangs up, `S(x)` hang up the callee x s after it answers,
//! `L(x[:y[:z]])` limit the call to x ms, warning y ms before the end and every z ms after (the
//! `LIMIT_*` variables say what plays to whom; each prompt is played with the bridge left, so
//! the native relay pauses for it), `D(called:calling)` send digits once answered, `A(file)` play an announcement to the
//! callee before bridging (through the `Playback` application, when loaded), `U(context[^arg...])`
//! Gosub `context,s,1(args)` on the callee before bridging (`GOSUB_RESULT=ABORT` ends it).

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use starling_core::apps::{App, AppFuture, AppResult};
use starling_core::bridge::{bridge_on_own_task, connect, BridgeConfig, BridgeEnd, Connected, Side};
use starling_core::channel::{publish_dial, Channel, ChannelState};
use starling_core::frame::{Cause, Control, Frame, Handover};
use starling_core::tech::Requestor;
use starling_core::tokio::time::{sleep_until, Instant};
use starling_core::{tokio, tracing, verbose, LoadError, Module, ModuleContext};

/// Dial's options, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Options {
    ringing: bool,
    /// `m[(class)]`: the class ("" for the channel's own, or default).
    music: Option<String>,
    callee_transfer: bool,
    caller_transfer: bool,
    go_on: bool,
    /// `S(x)`: the called party is hung up x seconds after it answers.
    duration_stop: Option<Duration>,
    /// `L(x[:y[:z]])`: the limit x.
    limit: Option<Duration>,
    /// `L`'s y: the first warning this long before the limit (adjusted as Asterisk's
    /// `ast_bridge_timelimit` does when it would come before the call starts).
    warning: Option<Duration>,
    /// `L`'s z: a warning again this long after each one (zero: once).
    warning_freq: Duration,
    digits_called: String,
    digits_calling: String,
    announcement: Option<String>,
    /// `U(context[^arg...])`: the Gosub target run on the called party before the bridge.
    callee_gosub: Option<String>,
}

/// Reads `rtTgL(60000)D(1:2)A(hello)`: letters, some with a parenthesised argument.
fn parse_options(text: &str) -> Options {
    let mut options = Options::default();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let mut arg = None;
        if chars.peek() == Some(&'(') {
            chars.next();
            let mut value = String::new();
            for c in chars.by_ref() {
                if c == ')' {
                    break;
                }
                value.push(c);
            }
            arg = Some(value);
        }
        match c {
            'r' => options.ringing = true,
            'm' => options.music = Some(arg.unwrap_or_default()),
            't' => options.callee_transfer = true,
            'T' => options.caller_transfer = true,
            'g' => options.go_on = true,
            'L' => {
                // L(x[:y[:z]]), all in ms, as ast_bridge_timelimit reads them (atol: 0 when not a number).
                let arg = arg.unwrap_or_default();
                let mut fields = arg.split(':').map(|f| f.trim().parse::<u64>().unwrap_or(0));
                let (limit, mut warning, mut freq) =
                    (fields.next().unwrap_or(0), fields.next().unwrap_or(0), fields.next().unwrap_or(0));
                if limit == 0 {
                    tracing::warn!("Bridge does not accept L({arg})");
                    continue;
                }
                if warning > limit {
                    // A first warning before the call starts moves later by whole intervals,
                    // or goes when there are none.
                    let delta = warning - limit;
                    if freq == 0 {
                        warning = 0;
                    } else {
                        warning = warning.saturating_sub(freq * (1 + (delta - 1) / freq));
                        if warning < 1 {
                            (warning, freq) = (0, 0);
                        }
                    }
                }
                options.limit = Some(Duration::from_millis(limit));
                options.warning = (warning > 0).then(|| Duration::from_millis(warning));
                options.warning_freq = Duration::from_millis(freq);
            }
            'S' => {
                let seconds = arg.as_deref().map(str::trim).and_then(|a| a.parse::<u64>().ok()).unwrap_or(0);
                if seconds == 0 {
                    tracing::warn!("Dial does not accept S({})", arg.unwrap_or_default());
                } else {
                    options.duration_stop = Some(Duration::from_secs(seconds));
                }
            }
            'D' => {
                let arg = arg.unwrap_or_default();
                let (called, calling) = arg.split_once(':').unwrap_or((&arg, ""));
                options.digits_called = called.to_owned();
                options.digits_calling = calling.to_owned();
            }
            'A' => options.announcement = arg.filter(|a| !a.is_empty()),
            // As app_dial: the `^`s are commas, and the first field is a context whose `s,1` runs.
            'U' => {
                options.callee_gosub = arg.filter(|a| !a.is_empty()).map(|a| match a.split_once('^') {
                    Some((context, args)) => format!("{context},s,1({})", args.replace('^', ",")),
                    None => format!("{a},s,1"),
                })
            }
            _ => tracing::debug!("Dial: option '{c}' is not supported; ignored"),
        }
    }
    options
}

/// Asterisk's tally of why callees did not answer (`handle_cause`).
#[derive(Debug, Default)]
struct Tally {
    busy: u32,
    congestion: u32,
    nochan: u32,
    /// The last callee's cause, for the caller's HANGUPCAUSE.
    last_cause: Option<Cause>,
}

impl Tally {
    fn cause(&mut self, cause: Cause) {
        self.last_cause = Some(cause);
        match cause {
            Cause::USER_BUSY => self.busy += 1,
            Cause::CONGESTION | Cause::SWITCH_CONGESTION => self.congestion += 1,
            Cause::NO_ANSWER | Cause::NORMAL_CLEARING | Cause::NO_USER_RESPONSE => {}
            _ => self.nochan += 1,
        }
    }
    fn status(&self) -> &'static str {
        if self.busy > 0 {
            "BUSY"
        } else if self.congestion > 0 {
            "CONGESTION"
        } else if self.nochan > 0 {
            "CHANUNAVAIL"
        } else {
            "NOANSWER"
        }
    }
}

/// `DIALSTATUS` word for one callee that ended with `cause` (its `DialEnd`).
fn status_of(cause: Cause) -> &'static str {
    let mut tally = Tally::default();
    tally.cause(cause);
    tally.status()
}

/// Publishes a callee's `DialEnd` and ends its call detail record with the same status (as
/// Asterisk's CDR engine reads the dial message).
fn dial_end(chan: &mut Channel, callee: &mut Channel, status: &str) {
    publish_dial(Some(chan), callee, "DialEnd", ("DialStatus", status));
    chan.cdr_dial_end(callee.name(), status);
}

/// A callee while it rings.
struct Callee {
    channel: Channel,
    /// The dial string's data (`bob` of `SIP/bob`): `DIALEDPEERNUMBER`.
    number: String,
}

/// What happened while the callees rang.
enum Ring {
    /// The caller hung up.
    Cancelled,
    /// Nobody answered in time.
    Timeout,
    /// Every callee failed.
    Failed,
    Answered(Box<Callee>),
}

/// A pickup's request reached a channel this Dial rings (or its caller): says where to send
/// the picker, and waits for it.
async fn take_picker(reply: starling_core::frame::Reply<starling_core::pickup::PickupTake>) -> Option<Channel> {
    let (give, take) = tokio::sync::oneshot::channel();
    reply.send(give).ok()?;
    tokio::time::timeout(Duration::from_secs(5), take).await.ok()?.ok()
}

/// The next frame from any callee: (which, frame or None once hung up).
async fn next_callee_frame(callees: &mut [Callee]) -> (usize, Option<Frame>) {
    let mut reads: Vec<Pin<Box<dyn Future<Output = Option<Frame>> + Send + '_>>> =
        callees.iter_mut().map(|c| Box::pin(c.channel.read()) as Pin<Box<_>>).collect();
    std::future::poll_fn(|cx| {
        for (i, read) in reads.iter_mut().enumerate() {
            if let Poll::Ready(frame) = read.as_mut().poll(cx) {
                return Poll::Ready((i, frame));
            }
        }
        Poll::Pending
    })
    .await
}

/// A pickup ([`starling_core::pickup`]) answered in place of the callee of that index (`None`:
/// it asked the caller's channel, an INVITE with Replaces naming the caller's ringing dialog):
/// the picker is the party that answered (the CDR and `DIALEDPEERNAME` name
/// it); the leg it rang goes with the others (CANCEL, "Call completed elsewhere").
fn picked_up(chan: &mut Channel, callees: &[Callee], picker: Channel, target: Option<usize>) -> Ring {
    // Asked through the caller, the picker answers in place of the first callee (its record
    // names the picker; the others keep theirs).
    let number = match callees.get(target.unwrap_or(0)) {
        Some(rung) => {
            verbose!(3, "{} picked up {} for {}", picker.name(), rung.channel.name(), chan.name());
            chan.cdr_dial_picked_up(rung.channel.name(), picker.name());
            rung.number.clone()
        }
        None => {
            verbose!(3, "{} picked up the call of {}", picker.name(), chan.name());
            chan.cdr_dial_begin(picker.name());
            picker.caller.number.clone()
        }
    };
    Ring::Answered(Box::new(Callee { channel: picker, number }))
}

/// Waits for the first answer, relaying progress to the caller.
async fn ring(
    chan: &mut Channel,
    callees: &mut Vec<Callee>,
    timeout: Option<Duration>,
    options: &Options,
    music: bool,
    tally: &mut Tally,
) -> Ring {
    let deadline = timeout.map(|t| Instant::now() + t);
    // With `r`, or `m` (music, or ringing when it cannot play), the callees' progress and
    // early media do not reach the caller.
    let local_ringing = options.ringing || options.music.is_some();
    if local_ringing && !music {
        chan.indicate(Control::Ringing);
    }
    let mut told_ringing = local_ringing;
    loop {
        if callees.is_empty() {
            return Ring::Failed;
        }
        let timer = async {
            match deadline {
                Some(at) => sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            frame = chan.read() => match frame {
                None => return Ring::Cancelled,
                Some(Frame::Pickup(reply)) => {
                    if let Some(picker) = take_picker(reply).await {
                        return picked_up(chan, callees, picker, None);
                    }
                }
                Some(_) => {}
            },
            (i, frame) = next_callee_frame(callees) => match frame {
                Some(Frame::Control(Control::Answer)) => {
                    let callee = callees.remove(i);
                    verbose!(3, "{} answered {}", callee.channel.name(), chan.name());
                    return Ring::Answered(Box::new(callee));
                }
                Some(Frame::Pickup(reply)) => {
                    if let Some(picker) = take_picker(reply).await {
                        return picked_up(chan, callees, picker, Some(i));
                    }
                }
                Some(Frame::Control(Control::Ringing)) => {
                    verbose!(3, "{} is ringing", callees[i].channel.name());
                    if !told_ringing {
                        chan.indicate(Control::Ringing);
                        told_ringing = true;
                    }
                }
                Some(Frame::Control(Control::Progress)) => {
                    verbose!(3, "{} is making progress passing it to {}", callees[i].channel.name(), chan.name());
                    if !local_ringing {
                        chan.indicate(Control::Progress);
                    }
                }
                Some(Frame::Control(control @ (Control::Busy | Control::Congestion))) => {
                    let mut callee = callees.remove(i);
                    verbose!(3, "{} is {}", callee.channel.name(), if control == Control::Busy { "busy" } else { "circuit-busy" });
                    let cause = if control == Control::Busy { Cause::USER_BUSY } else { Cause::CONGESTION };
                    let cause = callee.channel.hangup_cause().unwrap_or(cause);
                    dial_end(chan, &mut callee.channel, status_of(cause));
                    tally.cause(cause);
                }
                // Early media: the caller hears the callee's ringback or announcement.
                Some(frame @ Frame::Voice { .. }) if !local_ringing => chan.write(frame),
                Some(_) => {}
                None => {
                    let mut callee = callees.remove(i);
                    let cause = callee.channel.hangup_cause().unwrap_or(Cause::NORMAL_CLEARING);
                    verbose!(3, "{} hung up ({})", callee.channel.name(), cause.name());
                    dial_end(chan, &mut callee.channel, status_of(cause));
                    tally.cause(cause);
                }
            },
            _ = timer => return Ring::Timeout,
        }
    }
}

/// What `L()` plays, and to whom (Asterisk's `ast_bridge_timelimit`, read from the caller's
/// variables when Dial starts).
#[derive(Debug, Default)]
struct LimitSounds {
    to_caller: bool,
    to_callee: bool,
    /// `LIMIT_WARNING_FILE`, else `timeleft` ("you have N minutes M seconds").
    warning: String,
    /// `LIMIT_TIMEOUT_FILE`: played as the limit runs out.
    end: Option<String>,
    /// `LIMIT_CONNECT_FILE`: played as the call is connected.
    start: Option<String>,
}

/// Asterisk's `ast_true`.
fn is_true(value: &str) -> bool {
    ["yes", "true", "y", "t", "1", "on"].iter().any(|t| value.trim().eq_ignore_ascii_case(t))
}

impl LimitSounds {
    fn read(chan: &Channel) -> LimitSounds {
        let var = |name: &str| chan.var(name).map(str::to_owned);
        let to_caller = var("LIMIT_PLAYAUDIO_CALLER").is_none_or(|v| is_true(&v));
        let to_callee = var("LIMIT_PLAYAUDIO_CALLEE").is_some_and(|v| is_true(&v));
        let file = |name: &str| var(name).filter(|v| !v.is_empty());
        LimitSounds {
            to_caller: to_caller || !to_callee,
            to_callee,
            warning: file("LIMIT_WARNING_FILE").unwrap_or_else(|| "timeleft".to_owned()),
            end: file("LIMIT_TIMEOUT_FILE"),
            start: file("LIMIT_CONNECT_FILE"),
        }
    }
}

/// Runs a dialplan application on `chan` as a prompt (its status variable left as it was).
async fn run_app(chan: &mut Channel, app: &str, data: &str, status: &str) {
    let Some(app_found) = chan.core().apps().get(app) else {
        tracing::warn!("Dial: the limit's prompts need the {app} application (app_playback)");
        return;
    };
    let saved = chan.var(status).map(str::to_owned);
    (app_found.exec)(chan, data).await;
    chan.set_var(status, saved.as_deref().unwrap_or(""));
}

/// Plays `sound` to `chan` as `limits_interval_playback` does: `timeleft` says the time left
/// until `quitting` (`vm-youhave`, minutes when more than one, seconds).
async fn limit_prompt(chan: &mut Channel, sound: &str, quitting: Instant) {
    if !sound.eq_ignore_ascii_case("timeleft") {
        run_app(chan, "Playback", sound, "PLAYBACKSTATUS").await;
        return;
    }
    let remaining = quitting.saturating_duration_since(Instant::now()).as_secs();
    if remaining == 0 {
        return;
    }
    let (min, sec) = if remaining / 60 > 1 { (remaining / 60, remaining % 60) } else { (0, remaining) };
    run_app(chan, "Playback", "vm-youhave", "PLAYBACKSTATUS").await;
    if min > 0 {
        run_app(chan, "SayNumber", &min.to_string(), "PLAYBACKSTATUS").await;
        run_app(chan, "Playback", "queue-minutes", "PLAYBACKSTATUS").await;
    }
    if sec > 0 {
        run_app(chan, "SayNumber", &sec.to_string(), "PLAYBACKSTATUS").await;
        run_app(chan, "Playback", "queue-seconds", "PLAYBACKSTATUS").await;
    }
}

/// Plays a limit's sound to the sides `sounds` names while the bridge is down (so the native
/// relay is too): the other side meanwhile hears nothing and what it sends is dropped, as
/// while Asterisk's bridge channel plays a file.
async fn limit_prompts(chan: &mut Channel, callee: &mut Channel, sounds: &LimitSounds, sound: &str, quitting: Instant) {
    async fn drain(chan: &mut Channel) {
        while chan.read().await.is_some() {}
    }
    match (sounds.to_caller, sounds.to_callee) {
        (true, true) => {
            tokio::join!(limit_prompt(chan, sound, quitting), limit_prompt(callee, sound, quitting));
        }
        (true, false) => {
            tokio::select! {
                _ = limit_prompt(chan, sound, quitting) => {}
                _ = drain(callee) => {}
            }
        }
        (false, true) => {
            tokio::select! {
                _ = limit_prompt(callee, sound, quitting) => {}
                _ = drain(chan) => {}
            }
        }
        (false, false) => {}
    }
}

fn dial<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move {
        // Dial(Technology/Resource[&...][,timeout[,options[,URL]]]), AST_STANDARD_APP_ARGS.
        let ([targets, timeout, options, _url], _) = starling_core::apps::app_args::<4>(data);
        let targets = targets.trim();
        let timeout = timeout.trim().parse::<f64>().ok().filter(|t| *t > 0.0);
        let options = parse_options(options.trim());
        // L() wins over S() (ast_bridge_timelimit undoes it); without anything to play it is
        // the same plain limit.
        let limit_sounds = options.limit.map(|_| LimitSounds::read(chan));
        let warns = options.warning.is_some_and(|w| Some(w) < options.limit);
        let limit = options.limit.or(options.duration_stop);
        if let Some(limit) = limit {
            if !warns && limit_sounds.as_ref().is_none_or(|s| s.end.is_none() && s.start.is_none()) {
                verbose!(3, "Setting call duration limit to {:.3} seconds.", limit.as_secs_f64());
            }
        }
        if targets.is_empty() {
            tracing::warn!("Dial requires an argument (technology/resource)");
            chan.set_var("DIALSTATUS", "CHANUNAVAIL");
            return AppResult::Continue;
        }
        let started = Instant::now();
        let core = chan.core().clone();
        let requestor = Requestor::from_channel(chan);
        let mut tally = Tally::default();
        let mut callees = Vec::new();
        for target in targets.split('&').map(str::trim).filter(|t| !t.is_empty()) {
            match core.request_channel(target, &requestor) {
                Ok(mut channel) => {
                    verbose!(3, "Called {target}");
                    // As app_dial: the callee is dialled from the caller's extension (what
                    // `Pickup(exten@context)` looks for).
                    channel.exten = chan.exten.clone();
                    let number = target.split_once('/').map_or(target, |(_, d)| d).to_owned();
                    publish_dial(Some(chan), &mut channel, "DialBegin", ("DialString", &number));
                    // One record per callee (Asterisk's CDR for each Party B).
                    chan.cdr_dial_begin(channel.name());
                    channel.call();
                    callees.push(Callee { channel, number });
                }
                Err(cause) => {
                    tracing::warn!(
                        "Unable to create channel of type '{}' (cause {} - {})",
                        target.split('/').next().unwrap_or(target),
                        cause.0,
                        cause.name()
                    );
                    tally.cause(cause);
                }
            }
        }
        let music = options.music.as_deref().is_some_and(|class| {
            // Before the caller's own answer the music is early media (chan_sip: 183 with SDP).
            if chan.state() != starling_core::channel::ChannelState::Up {
                chan.indicate(Control::Progress);
            }
            starling_core::moh::start(chan, class)
        });
        let outcome = ring(chan, &mut callees, timeout.map(Duration::from_secs_f64), &options, music, &mut tally).await;
        if music {
            starling_core::moh::stop(chan);
        }
        // The ones that did not win are hung up (CANCEL while they ring).
        let (others_cause, others_status) = match outcome {
            Ring::Answered(_) => (Cause::ANSWERED_ELSEWHERE, "CANCEL"),
            Ring::Timeout => (Cause::NORMAL_CLEARING, "NOANSWER"),
            _ => (Cause::NORMAL_CLEARING, "CANCEL"),
        };
        for mut callee in callees.drain(..) {
            dial_end(chan, &mut callee.channel, others_status);
            callee.channel.hangup(others_cause);
        }
        // Each callee's record ended with its DialEnd; what the dialplan does next is another
        // record (Channel::set_application), as Asterisk's finalized CDR hands over.
        let dial_status = |chan: &mut Channel, status: &str| chan.set_var("DIALSTATUS", status);
        let dialed_time = |chan: &mut Channel| chan.set_var("DIALEDTIME", &started.elapsed().as_secs().to_string());
        let mut callee = match outcome {
            Ring::Cancelled => {
                dial_status(chan, "CANCEL");
                dialed_time(chan);
                return AppResult::Hangup;
            }
            Ring::Timeout => {
                verbose!(3, "Nobody picked up in {} ms", timeout.map_or(0.0, |t| t * 1000.0));
                dial_status(chan, "NOANSWER");
                dialed_time(chan);
                return AppResult::Continue;
            }
            Ring::Failed => {
                let status = tally.status();
                dial_status(chan, status);
                if let Some(cause) = tally.last_cause {
                    chan.set_hangup_cause(cause);
                }
                dialed_time(chan);
                return AppResult::Continue;
            }
            Ring::Answered(callee) => callee,
        };
        dial_end(chan, &mut callee.channel, "ANSWER");
        dial_status(chan, "ANSWER");
        chan.set_var("DIALEDPEERNAME", callee.channel.name());
        chan.set_var("DIALEDPEERNUMBER", &callee.number);
        callee.channel.set_state(ChannelState::Up);
        if let Some(file) = &options.announcement {
            match core.apps().get("Playback") {
                Some(playback) => {
                    (playback.exec)(&mut callee.channel, file).await;
                }
                None => tracing::warn!("Dial: A({file}) needs the Playback application (app_playback)"),
            }
        }
        if let Some(target) = &options.callee_gosub {
            let ran = core.run_subroutine(&mut callee.channel, target).await;
            let result = callee.channel.var("GOSUB_RESULT").unwrap_or("").to_ascii_uppercase();
            if let Err(e) = &ran {
                tracing::warn!("Dial: U({target}) on {}: {e}", callee.channel.name());
            }
            // GOSUB_RESULT=ABORT (or a subroutine that hung up) ends the called party's leg.
            if ran.is_err() || result == "ABORT" || callee.channel.is_hung_up() {
                callee.channel.hangup(Cause::NORMAL_CLEARING);
                chan.cdr_dial_end(callee.channel.name(), "CANCEL");
                dial_status(chan, "CANCEL");
                dialed_time(chan);
                return AppResult::Continue;
            }
        }
        chan.answer();
        for digit in options.digits_called.chars() {
            callee.channel.send_digit(digit);
        }
        for digit in options.digits_calling.chars() {
            chan.send_digit(digit);
        }
        let answered = Instant::now();
        let mut config = BridgeConfig {
            limit,
            callee_transfer: options.callee_transfer,
            caller_transfer: options.caller_transfer,
            transfer_context: chan.context.clone(),
        };
        let quitting = limit.map(|l| answered + l);
        let no_sounds = LimitSounds::default();
        let sounds = limit_sounds.as_ref().unwrap_or(&no_sounds);
        // The bridge is left for each prompt, then entered again (so the native relay pauses
        // and the prompt reaches the channel).
        let mut next_warning = match (quitting, options.warning) {
            (Some(quitting), Some(warning)) if warns => Some(quitting - warning),
            _ => None,
        };
        if let (Some(quitting), Some(start)) = (quitting, &sounds.start) {
            limit_prompts(chan, &mut callee.channel, sounds, start, quitting).await;
        }
        let connected = loop {
            let now = Instant::now();
            config.limit =
                [next_warning, quitting].into_iter().flatten().min().map(|at| at.saturating_duration_since(now));
            let connected = connect(chan, &mut callee.channel, &config).await;
            let (Connected::End(BridgeEnd::Limit), Some(quitting)) = (&connected, quitting) else { break connected };
            if Instant::now() + Duration::from_millis(5) >= quitting {
                if let Some(end) = &sounds.end {
                    limit_prompts(chan, &mut callee.channel, sounds, end, quitting).await;
                }
                break connected;
            }
            limit_prompts(chan, &mut callee.channel, sounds, &sounds.warning, quitting).await;
            next_warning = (!options.warning_freq.is_zero()).then(|| Instant::now() + options.warning_freq);
        };
        config.limit = limit;
        chan.set_var("ANSWEREDTIME", &answered.elapsed().as_secs().to_string());
        dialed_time(chan);
        // After an attended transfer the called party goes on elsewhere and the caller (the
        // transferer, or the channel replaced) leaves.
        let end = match connected {
            Connected::End(end) => end,
            Connected::Elsewhere(party) => {
                bridge_on_own_task(*party, callee.channel, config);
                return AppResult::Hangup;
            }
            Connected::HandOver(reply) => {
                let _ = reply.send(Handover::Party(Box::new(callee.channel)));
                return AppResult::Hangup;
            }
            Connected::GiveAway(give) => {
                let _ = give.send(callee.channel);
                return AppResult::Hangup;
            }
        };
        match end {
            BridgeEnd::HungUp(Side::Caller, cause) => {
                callee.channel.hangup(cause);
                AppResult::Hangup
            }
            BridgeEnd::HungUp(Side::Callee, cause) => {
                chan.set_hangup_cause(cause);
                if options.go_on {
                    AppResult::Continue
                } else {
                    AppResult::Hangup
                }
            }
            BridgeEnd::Limit => {
                verbose!(3, "The call limit of {} ms ran out", limit.map_or(0, |l| l.as_millis()));
                callee.channel.hangup(Cause::NORMAL_CLEARING);
                if options.go_on {
                    AppResult::Continue
                } else {
                    AppResult::Hangup
                }
            }
            BridgeEnd::Transfer(Side::Callee, exten) => {
                // The callee sends the caller elsewhere and leaves.
                verbose!(
                    3,
                    "{} blind-transferred {} to {exten}@{}",
                    callee.channel.name(),
                    chan.name(),
                    config.transfer_context
                );
                callee.channel.hangup(Cause::NORMAL_CLEARING);
                chan.jump(starling_core::channel::Jump {
                    context: Some(config.transfer_context.clone()),
                    exten: Some(exten),
                    target: starling_core::channel::JumpTarget::Priority(1),
                });
                AppResult::Continue
            }
            BridgeEnd::Transfer(Side::Caller, exten) => {
                // The caller sends the callee elsewhere and hangs up.
                verbose!(
                    3,
                    "{} blind-transferred {} to {exten}@{}",
                    chan.name(),
                    callee.channel.name(),
                    config.transfer_context
                );
                let mut transferred = callee.channel;
                transferred.context = config.transfer_context.clone();
                transferred.exten = exten;
                transferred.priority = 1;
                core.start_pbx(transferred);
                AppResult::Hangup
            }
            // Carried out by `connect`, which never ends with them.
            BridgeEnd::AttendedTransfer(..) | BridgeEnd::Replaced(..) => AppResult::Hangup,
        }
    })
}

fn load(ctx: &ModuleContext) -> Result<Box<dyn Module>, LoadError> {
    let app = App {
        name: "Dial",
        synopsis: "Attempt to connect to another device or endpoint and bridge the call.",
        description: "Dial(Technology/Resource[&Technology2/Resource2...][,timeout[,options]]): calls every \
target at once; the first to answer is bridged with the caller, the others are hung up. timeout is in \
seconds. Options: r (indicate ringing), m(class) (music on hold until answered), t/T (the called/calling party \
may blind-transfer with # and an extension), g (go on in the dialplan when the called party hangs up), \
S(x) (hang up the called party x seconds after it answers), L(x[:y[:z]]) (limit the call to x ms; \
warn y ms before the end, then every z ms: LIMIT_WARNING_FILE, LIMIT_TIMEOUT_FILE, LIMIT_CONNECT_FILE, \
LIMIT_PLAYAUDIO_CALLER, LIMIT_PLAYAUDIO_CALLEE), D(called:calling) (send DTMF once answered), A(file) (announcement to the \
called party), U(context^args) (Gosub context,s,1 on the called party first). Sets DIALSTATUS (ANSWER BUSY NOANSWER CANCEL CONGESTION CHANUNAVAIL), DIALEDPEERNAME, \
DIALEDPEERNUMBER, DIALEDTIME, ANSWEREDTIME.",
        exec: dial,
        uses: None,
    };
    Ok(Box::new(ctx.register_apps(vec![app])?))
}

starling_core::module! {
    description: "Dialing Application",
    support_level: Core,
    load: load,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_with_arguments() {
        assert_eq!(parse_options("U(sub-screen^a^b)").callee_gosub.as_deref(), Some("sub-screen,s,1(a,b)"));
        assert_eq!(parse_options("U(sub)").callee_gosub.as_deref(), Some("sub,s,1"));
        let o = parse_options("rtgL(60000:30000)D(12:3)A(hello-world)");
        assert!(o.ringing && o.callee_transfer && o.go_on && !o.caller_transfer);
        assert_eq!(o.limit, Some(Duration::from_secs(60)));
        assert_eq!((o.warning, o.warning_freq), (Some(Duration::from_secs(30)), Duration::ZERO));
        assert_eq!((o.digits_called.as_str(), o.digits_calling.as_str()), ("12", "3"));
        assert_eq!(o.announcement.as_deref(), Some("hello-world"));
        assert_eq!(parse_options(""), Options::default());
        assert_eq!(parse_options("m").music.as_deref(), Some(""));
        assert_eq!(parse_options("rm(jazz)t").music.as_deref(), Some("jazz"));
    }

    #[test]
    fn limit_and_duration_stop_as_asterisk_reads_them() {
        let o = parse_options("L(10000:4000:1500)S(20)");
        assert_eq!(o.limit, Some(Duration::from_secs(10)));
        assert_eq!((o.warning, o.warning_freq), (Some(Duration::from_millis(4000)), Duration::from_millis(1500)));
        assert_eq!(o.duration_stop, Some(Duration::from_secs(20)));
        // A first warning before the start moves later by whole intervals: 25 s - 2 × 10 s.
        let o = parse_options("L(10000:25000:10000)");
        assert_eq!(o.warning, Some(Duration::from_secs(5)));
        // ... or goes, without an interval.
        assert_eq!(parse_options("L(10000:25000)").warning, None);
        assert_eq!(parse_options("L(0)").limit, None);
        assert_eq!(parse_options("S(0)S(x)").duration_stop, None);
    }

    #[test]
    fn dialstatus_follows_asterisks_tally() {
        let mut t = Tally::default();
        assert_eq!(t.status(), "NOANSWER");
        t.cause(Cause::REQUESTED_CHAN_UNAVAIL);
        assert_eq!(t.status(), "CHANUNAVAIL");
        t.cause(Cause::CONGESTION);
        assert_eq!(t.status(), "CONGESTION");
        t.cause(Cause::USER_BUSY);
        assert_eq!(t.status(), "BUSY");
        assert_eq!(t.last_cause, Some(Cause::USER_BUSY));
    }
}
