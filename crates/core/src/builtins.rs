//! The applications every dialplan has, built into the core as Asterisk's pbx_builtins.c are:
//! Answer, Hangup, NoOp, Set, MSet, Goto, GotoIf, Gosub, GosubIf, Return, Wait, Progress,
//! Ringing, Busy, Congestion, WaitExten, RaiseException, and Macro's refusal. Their arguments arrive already
//! substituted. LOCAL()'s read and write live here beside Gosub's stack (pbx_config registers
//! the function with the dialplan).

use std::time::{Duration, Instant};

use crate::apps::{App, AppFuture, AppResult};
use crate::channel::{Channel, Exception, Jump, JumpTarget, Read, StackFrame};
use crate::frame::{Cause, Control};

/// Asterisk's truth for GotoIf/ExecIf: not empty and not zero.
pub fn is_true(text: &str) -> bool {
    let t = text.trim();
    !(t.is_empty() || t.parse::<f64>().is_ok_and(|n| n == 0.0))
}

/// Splits `condition?iftrue[:iffalse]`.
fn conditional(data: &str) -> (bool, Option<&str>, Option<&str>) {
    let (condition, branches) = data.split_once('?').unwrap_or((data, ""));
    let (yes, no) = match branches.split_once(':') {
        Some((y, n)) => (y, Some(n)),
        None => (branches, None),
    };
    (is_true(condition), non_empty(yes), no.and_then(non_empty))
}

fn non_empty(s: &str) -> Option<&str> {
    let s = s.trim();
    (!s.is_empty()).then_some(s)
}

/// `Answer([delay])`: answers; a channel that was not up then waits `delay` ms (or until the
/// caller's first audio), as Asterisk's `__ast_answer`.
fn answer<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move {
        let was_up = chan.state() == crate::channel::ChannelState::Up;
        let ([delay, _], _) = crate::apps::app_args::<2>(data);
        let delay = delay.trim();
        let delay = match delay.parse::<u64>() {
            Ok(ms) => ms,
            Err(_) if delay.is_empty() => 0,
            Err(_) => {
                crate::tracing::warn!("Invalid delay supplied. If attempting to use the 'i' option, please use the 'i' flag instead of passing it as the delay");
                0
            }
        };
        chan.answer();
        if was_up || delay == 0 {
            return AppResult::Continue;
        }
        let until = Instant::now() + Duration::from_millis(delay.min(86_400_000));
        loop {
            match chan.read_timeout(until.saturating_duration_since(Instant::now())).await {
                Read::HungUp => return AppResult::Hangup,
                Read::Timeout | Read::Frame(crate::frame::Frame::Voice { .. }) => return AppResult::Continue,
                Read::Frame(_) => {}
            }
        }
    })
}

/// Sends the dialplan to the `e` extension with `EXCEPTION()` set, as pbx.c's
/// `raise_exception` (the caller has checked that `e` exists when that matters).
pub fn raise_exception(chan: &mut Channel, reason: &str) {
    chan.exception = Some(Exception {
        reason: reason.to_owned(),
        context: chan.context.clone(),
        exten: chan.exten.clone(),
        priority: chan.priority,
    });
    chan.jump(Jump { context: None, exten: Some("e".into()), target: JumpTarget::Priority(1) });
}

/// `RaiseException(reason)`: goes to `e` with `EXCEPTION(reason)` set.
fn raise_exception_app<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move {
        raise_exception(chan, data.trim());
        AppResult::Continue
    })
}

/// `EXCEPTION(reason|context|exten|priority)`: where and why the last exception was raised.
pub fn exception_read(chan: &mut Channel, field: &str) -> Result<String, String> {
    let exception = chan.exception.as_ref().ok_or("EXCEPTION(): no exception has been raised")?;
    let field = field.trim().to_ascii_uppercase();
    Ok(match field.as_str() {
        "REASON" => exception.reason.clone(),
        "CONTEXT" => exception.context.clone(),
        f if f.starts_with("EXTEN") => exception.exten.clone(),
        "PRIORITY" => exception.priority.to_string(),
        _ => return Err(format!("EXCEPTION(): unknown field '{field}'")),
    })
}

/// Whether `exten` exists at priority 1 in the channel's context, for its caller ID.
fn exists_here(chan: &Channel, exten: &str) -> bool {
    let callerid = (!chan.caller.number.is_empty()).then(|| chan.caller.number.clone());
    chan.core().extension_exists(&chan.context, exten, callerid.as_deref()) == crate::Extent::Exists
}

fn hangup<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move {
        chan.hangup(Cause::parse(data).unwrap_or(Cause::NORMAL_CLEARING));
        AppResult::Hangup
    })
}

fn noop<'a>(_: &'a mut Channel, _: &'a str) -> AppFuture<'a> {
    Box::pin(async { AppResult::Continue })
}

/// `NAME=value`, or `FUNC(args)=value` through the function's write.
fn set_one(chan: &mut Channel, assignment: &str) {
    let Some((name, value)) = assignment.split_once('=') else {
        crate::tracing::warn!("Set: '{assignment}' is not NAME=value");
        return;
    };
    set_pair(chan, name, value);
}

/// pbx_builtin_setvar_helper: a variable, or `FUNC(args)` through the function's write (not
/// when the write is dangerous and the channel evaluates for the manager: see
/// [`crate::apps::Function::write_allowed`]). False when a function was not written.
pub(crate) fn set_pair(chan: &mut Channel, name: &str, value: &str) -> bool {
    let name = name.trim();
    if let (Some(open), true) = (name.find('('), name.ends_with(')')) {
        let function = &name[..open];
        let args = &name[open + 1..name.len() - 1];
        let found = chan.core().functions().get(function);
        let Some((function, write)) = found.as_ref().and_then(|f| Some((f, f.write?))) else {
            crate::tracing::warn!("Set: no writable function {function}()");
            return false;
        };
        if !function.write_allowed(chan) {
            return false;
        }
        if let Err(e) = write(chan, args, value) {
            crate::tracing::warn!("Set: {}(): {e}", function.name);
            return false;
        }
        return true;
    }
    chan.set_var(name, value);
    true
}

fn set<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move {
        set_one(chan, data);
        AppResult::Continue
    })
}

fn mset<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move {
        // pbx_builtin_setvar_multiple: AST_STANDARD_APP_ARGS, then each pair at its first '='
        // (quotes and escapes removed again).
        for assignment in crate::apps::standard_args(data) {
            let pair = crate::apps::separate_args(&assignment, '=', true, 2);
            match pair.as_slice() {
                [name, value] => {
                    set_pair(chan, name, value);
                }
                _ => crate::tracing::warn!(
                    "MSet: ignoring entry '{assignment}' with no '=' (in {}@{}:{})",
                    chan.exten,
                    chan.context,
                    chan.priority
                ),
            }
        }
        AppResult::Continue
    })
}

fn goto_target(chan: &mut Channel, target: &str) -> AppResult {
    match Jump::parse(target) {
        Some(jump) => {
            chan.jump(jump);
            AppResult::Continue
        }
        None => {
            crate::tracing::warn!("Goto: bad destination '{target}'");
            AppResult::Hangup
        }
    }
}

fn goto<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move { goto_target(chan, data) })
}

/// `condition?iftrue[:iffalse]`: runs `then` with the chosen branch, if there is one.
fn branch(chan: &mut Channel, data: &str, then: fn(&mut Channel, &str) -> AppResult) -> AppResult {
    let (truth, yes, no) = conditional(data);
    match if truth { yes } else { no } {
        Some(target) => then(chan, target),
        None => AppResult::Continue,
    }
}

fn goto_if<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move { branch(chan, data, goto_target) })
}

/// How many Gosub levels a channel may have open. app_stack has no limit (its stack is a
/// list on the heap: a Gosub that never returns grows it until memory runs out); this is
/// `AST_PBX_MAX_STACK`, Asterisk's bound on the dialplan's other stack (includes searched).
pub const MAX_GOSUB_DEPTH: usize = 512;

/// `[[context,]exten,]priority[(arg1,...)]`: pushes the return address, sets ARG1..ARGn.
fn gosub_to(chan: &mut Channel, data: &str) -> AppResult {
    if chan.gosub_stack.len() >= MAX_GOSUB_DEPTH {
        // The application fails, which hangs the channel up: a Gosub loop warns once.
        crate::tracing::warn!(
            "Gosub({data}): {} is {MAX_GOSUB_DEPTH} Gosubs deep already (a Gosub without Return?)",
            chan.name()
        );
        return AppResult::Hangup;
    }
    let (target, args) = match data.find('(') {
        Some(open) => (&data[..open], data[open + 1..].strip_suffix(')').unwrap_or(&data[open + 1..])),
        None => (data, ""),
    };
    let Some(jump) = Jump::parse(target) else {
        crate::tracing::warn!("Gosub: bad destination '{data}'");
        return AppResult::Hangup;
    };
    // As app_stack: a destination that does not exist is an error, before anything changes.
    let context = jump.context.clone().unwrap_or_else(|| chan.context.clone());
    let exten = jump.exten.clone().unwrap_or_else(|| chan.exten.clone());
    let callerid = (!chan.caller.number.is_empty()).then(|| chan.caller.number.clone());
    let core = chan.core().clone();
    let priority = match &jump.target {
        JumpTarget::Priority(n) => Some(*n),
        JumpTarget::Label(label) => core.find_label(&context, &exten, label, callerid.as_deref()),
    };
    if !priority.is_some_and(|p| core.priority_exists(&context, &exten, p, callerid.as_deref())) {
        crate::tracing::error!(
            "Attempt to reach a non-existent destination for Gosub: (Context:{context}, Extension:{exten}, Priority:{})",
            match &jump.target {
                JumpTarget::Priority(n) => n.to_string(),
                JumpTarget::Label(l) => l.clone(),
            }
        );
        return AppResult::Hangup;
    }
    let mut saved = Vec::new();
    // AST_STANDARD_RAW_ARGS: commas inside quotes or parentheses do not split; quotes stay.
    let arguments = crate::apps::separate_args(args, ',', false, usize::MAX);
    // ARGn (and ARGC) of the caller are hidden for the subroutine's level and restored on
    // Return; as app_stack, ARGn the caller had beyond this call's arguments read as empty.
    let caller_args = chan.gosub_stack.last().map_or(0, |f| f.saved.iter().filter(|(n, _)| is_arg(n)).count());
    for n in 1..=arguments.len().max(caller_args) {
        let name = format!("ARG{n}");
        saved.push((name.clone(), chan.var(&name).map(str::to_owned)));
        chan.set_var(&name, arguments.get(n - 1).map_or("", String::as_str));
    }
    saved.push(("ARGC".to_owned(), chan.var("ARGC").map(str::to_owned)));
    chan.set_var("ARGC", &arguments.len().to_string());
    let frame =
        StackFrame { context: chan.context.clone(), exten: chan.exten.clone(), priority: chan.priority + 1, saved };
    chan.gosub_stack.push(frame);
    chan.jump(jump);
    AppResult::Continue
}

/// `ARG1`, `ARG2`...: the argument variables Gosub sets.
fn is_arg(name: &str) -> bool {
    name.strip_prefix("ARG").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// `${LOCAL(name)}` (app_stack's LOCAL): the variable if it is local to the current Gosub
/// level (set through `LOCAL()` there, or an argument), else empty; outside a Gosub, an error.
pub fn local_read(chan: &mut Channel, name: &str) -> Result<String, String> {
    let name = name.trim();
    let frame = chan.gosub_stack.last().ok_or("LOCAL(): no Gosub stack")?;
    if frame.saved.iter().any(|(n, _)| n == name) {
        Ok(chan.var(name).unwrap_or("").to_owned())
    } else {
        Ok(String::new())
    }
}

/// `Set(LOCAL(name)=value)`: sets the variable for this Gosub level only; `Return` gives it
/// back the value it had before (or none).
pub fn local_write(chan: &mut Channel, name: &str, value: &str) -> Result<(), String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("LOCAL() needs a variable name".into());
    }
    // The variable itself, not an inherited `_name` that `var` would also answer with.
    let before = chan.var_names().any(|n| n == name).then(|| chan.var(name).map(str::to_owned)).flatten();
    let Some(frame) = chan.gosub_stack.last_mut() else {
        return Err(format!("Tried to set LOCAL({name}), but we aren't within a Gosub routine"));
    };
    if !frame.saved.iter().any(|(n, _)| n == name) {
        frame.saved.push((name.to_owned(), before));
    }
    chan.set_var(name, value);
    Ok(())
}

fn gosub<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move { gosub_to(chan, data) })
}

fn gosub_if<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move { branch(chan, data, gosub_to) })
}

fn gosub_return<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move {
        let Some(frame) = chan.gosub_stack.pop() else {
            crate::tracing::warn!("Return without Gosub on {}", chan.name());
            return AppResult::Hangup;
        };
        for (name, value) in frame.saved.iter().rev() {
            chan.set_var(name, value.as_deref().unwrap_or(""));
        }
        chan.set_var("GOSUB_RETVAL", data);
        chan.jump(Jump {
            context: Some(frame.context),
            exten: Some(frame.exten),
            target: JumpTarget::Priority(frame.priority),
        });
        AppResult::Continue
    })
}

/// Waits `seconds`, reading (and dropping) what arrives; a hangup ends the dialplan.
async fn wait_for(chan: &mut Channel, seconds: f64) -> AppResult {
    let until = Instant::now() + Duration::from_secs_f64(seconds.clamp(0.0, 86_400.0));
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return AppResult::Continue;
        }
        if chan.read_timeout(left).await == Read::HungUp {
            return AppResult::Hangup;
        }
    }
}

fn wait<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move { wait_for(chan, data.trim().parse().unwrap_or(0.0)).await })
}

fn progress<'a>(chan: &'a mut Channel, _: &'a str) -> AppFuture<'a> {
    Box::pin(async move {
        chan.indicate(Control::Progress);
        AppResult::Continue
    })
}

fn ringing<'a>(chan: &'a mut Channel, _: &'a str) -> AppFuture<'a> {
    Box::pin(async move {
        chan.indicate(Control::Ringing);
        AppResult::Continue
    })
}

/// Busy/Congestion: indicate, wait for the caller to hang up (at most `timeout` s), hang up.
pub async fn indicate_then_hang_up(chan: &mut Channel, control: Control, cause: Cause, data: &str) -> AppResult {
    chan.indicate(control);
    if let Ok(seconds) = data.trim().parse::<f64>() {
        wait_for(chan, seconds).await;
    } else {
        while chan.read().await.is_some() {}
    }
    chan.hangup(cause);
    AppResult::Hangup
}

fn busy<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(indicate_then_hang_up(chan, Control::Busy, Cause::USER_BUSY, data))
}

fn congestion<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(indicate_then_hang_up(chan, Control::Congestion, Cause::CONGESTION, data))
}

/// `WaitExten([seconds])`: waits `seconds` (else `TIMEOUT(response)`) for the caller's first
/// key, then collects an extension of the current context (see [`collect_extension`]). With
/// no key at all the dialplan goes on at the next priority when there is one, else to `t`
/// (Asterisk's pbx_builtin_waitexten).
fn wait_exten<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move {
        let ([timeout, _], _) = crate::apps::app_args::<2>(data);
        let timeout = Some(timeout)
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|s| *s > 0.0)
            .map_or(chan.timeouts.response, |s| Duration::from_secs_f64(s.min(86_400.0)));
        collect_extension(chan, None, timeout).await
    })
}

/// Collects DTMF into an extension of the channel's context and jumps there, as Asterisk's
/// PBX loop does after WaitExten or Background (`collect_digits`): waits `first_timeout` for
/// the first key (unless `first` already arrived: Background's interruption), then
/// `TIMEOUT(digit)` for each further one, while a longer extension could still match.
/// A complete extension is jumped to; an impossible one, or digits that time out without
/// matching, go to `i` with `INVALID_EXTEN`. No key at all: the next priority if there is one,
/// else `t`. Without the `i` or `t` it needs, the channel hangs up, as in Asterisk.
pub async fn collect_extension(chan: &mut Channel, first: Option<char>, first_timeout: Duration) -> AppResult {
    let core = chan.core().clone();
    let callerid = (!chan.caller.number.is_empty()).then(|| chan.caller.number.clone());
    let exists = |chan: &Channel, exten: &str| {
        core.extension_exists(&chan.context, exten, callerid.as_deref()) == crate::Extent::Exists
    };
    let mut pending = first;
    let mut digits = String::new();
    loop {
        let wait = if digits.is_empty() { first_timeout } else { chan.timeouts.digit };
        let deadline = Instant::now() + wait;
        let digit = match pending.take() {
            Some(digit) => Some(digit),
            None => loop {
                match chan.read_timeout(deadline.saturating_duration_since(Instant::now())).await {
                    Read::HungUp => return AppResult::Hangup,
                    Read::Timeout => break None,
                    Read::Frame(crate::frame::Frame::DtmfEnd { digit, .. }) => break Some(digit),
                    Read::Frame(_) => {}
                }
            },
        };
        let Some(digit) = digit else {
            if digits.is_empty() {
                return response_timeout(chan, &core, callerid.as_deref());
            }
            if exists(chan, &digits) {
                return goto_extension(chan, &digits);
            }
            return invalid_extension(chan, &digits);
        };
        digits.push(digit);
        // pbx.c's collect_digits: read on while a longer extension could still match.
        if !core.extension_can_match_more(&chan.context, &digits, callerid.as_deref()) {
            return if exists(chan, &digits) {
                goto_extension(chan, &digits)
            } else {
                invalid_extension(chan, &digits)
            };
        }
    }
}

fn goto_extension(chan: &mut Channel, exten: &str) -> AppResult {
    chan.jump(Jump { context: None, exten: Some(exten.to_owned()), target: JumpTarget::Priority(1) });
    AppResult::Continue
}

/// No key in time: the next priority, else `t`, else `e` (`RESPONSETIMEOUT`), else hang up.
fn response_timeout(chan: &mut Channel, core: &crate::Core, callerid: Option<&str>) -> AppResult {
    if core.priority_exists(&chan.context, &chan.exten, chan.priority + 1, callerid) {
        crate::verbose!(3, "Timeout on {}, continuing...", chan.name());
        AppResult::Continue
    } else if exists_here(chan, "t") {
        crate::verbose!(3, "Timeout on {}, going to 't'", chan.name());
        goto_extension(chan, "t")
    } else if exists_here(chan, "e") {
        raise_exception(chan, "RESPONSETIMEOUT");
        AppResult::Continue
    } else {
        crate::tracing::warn!("Timeout but no rule 't' or 'e' in context '{}'", chan.context);
        AppResult::Hangup
    }
}

/// Digits that match nothing: `i` with `INVALID_EXTEN`, else `e` (`INVALID`), else hang up.
fn invalid_extension(chan: &mut Channel, digits: &str) -> AppResult {
    if exists_here(chan, "i") {
        crate::verbose!(3, "Invalid extension '{digits}' in context '{}' on {}", chan.context, chan.name());
        chan.set_var("INVALID_EXTEN", digits);
        goto_extension(chan, "i")
    } else if exists_here(chan, "e") {
        raise_exception(chan, "INVALID");
        AppResult::Continue
    } else {
        crate::tracing::warn!("Invalid extension '{digits}', but no rule 'i' or 'e' in context '{}'", chan.context);
        AppResult::Hangup
    }
}

/// Macro() is gone from Asterisk (21) and not offered here: say what to use instead.
fn macro_refused<'a>(chan: &'a mut Channel, data: &'a str) -> AppFuture<'a> {
    Box::pin(async move {
        crate::tracing::error!(
            "Macro({data}) is not supported on {}: use Gosub() instead (Macro was removed in Asterisk 21)",
            chan.name()
        );
        chan.hangup(Cause::NORMAL_CLEARING);
        AppResult::Hangup
    })
}

/// The built-in applications.
pub fn builtins() -> Vec<App> {
    vec![
        App::new(
            "Answer",
            "Answer a channel if ringing.",
            "Answer([delay]): answers the channel if it is ringing, then waits delay ms.",
            answer,
        ),
        App::new(
            "Hangup",
            "Hang up the calling channel.",
            "Hangup([causecode]): hangs up with the Q.850 cause (number or name).",
            hangup,
        ),
        App::new(
            "NoOp",
            "Do Nothing (No Operation).",
            "NoOp([text]): does nothing; the text shows in the verbose log.",
            noop,
        ),
        App::new(
            "Set",
            "Set channel variable or function value.",
            "Set(name=value): sets a variable, or a function's value.",
            set,
        ),
        App::new("MSet", "Set channel variable(s) or function value(s).", "MSet(name1=value1,name2=value2,...)", mset),
        App::new(
            "Goto",
            "Jump to a particular priority, extension, or context.",
            "Goto([[context,]extension,]priority)",
            goto,
        ),
        App::new("GotoIf", "Conditional goto.", "GotoIf(condition?[labeliftrue][:labeliffalse])", goto_if),
        App::new(
            "Gosub",
            "Jump to label, saving return address.",
            "Gosub([[context,]exten,]priority[(arg1[,...][,argN])])",
            gosub,
        ),
        App::new(
            "GosubIf",
            "Conditionally jump to label, saving return address.",
            "GosubIf(condition?labeliftrue[(args)][:labeliffalse[(args)]])",
            gosub_if,
        ),
        App::new(
            "Return",
            "Return from gosub routine.",
            "Return([value]): returns to the Gosub caller; value goes to GOSUB_RETVAL.",
            gosub_return,
        ),
        App::new("Wait", "Waits for some time.", "Wait(seconds): waits, fractions allowed.", wait),
        App::new("Progress", "Indicate progress.", "Progress(): sends early media indication (183).", progress),
        App::new("Ringing", "Indicate ringing tone.", "Ringing(): indicates ringing (180).", ringing),
        App::new(
            "Busy",
            "Indicate the Busy condition.",
            "Busy([timeout]): indicates busy, waits for hangup, hangs up.",
            busy,
        ),
        App::new(
            "Congestion",
            "Indicate the Congestion condition.",
            "Congestion([timeout]): indicates congestion, waits, hangs up.",
            congestion,
        ),
        App::new(
            "WaitExten",
            "Waits for an extension to be entered.",
            "WaitExten([seconds]): collects DTMF into an extension; t on timeout, i when invalid.",
            wait_exten,
        ),
        App::new(
            "RaiseException",
            "Handle an exceptional condition.",
            "RaiseException(reason): goes to the 'e' extension; EXCEPTION(reason) reads the reason.",
            raise_exception_app,
        ),
        App::new(
            "Macro",
            "Refused: use Gosub.",
            "Macro is not supported (removed in Asterisk 21); use Gosub().",
            macro_refused,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Set(VAR=)` after `Set(_VAR=x)` replaces it, as pbx_builtin_setvar_helper does.
    #[test]
    fn a_variable_replaces_its_inheritable_forms() {
        let core = crate::Core::for_tests();
        let (mut chan, _driver) = Channel::new(&core, "Test", "x", false);
        chan.set_var("_V", "once");
        chan.set_var("V", "plain");
        assert!(chan.inheritable_vars().is_empty(), "V is no longer inherited");
        chan.set_var("__V", "always");
        assert_eq!(chan.var("V"), Some("always"));
        assert_eq!(chan.var_names().collect::<Vec<_>>(), ["__V"]);
    }

    /// Answer(delay) answers, then waits for the caller's first audio (or the delay).
    #[test]
    fn answer_with_a_delay_waits_for_audio() {
        let core = crate::Core::for_tests();
        let (mut chan, mut driver) = Channel::new(&core, "Test", "x", true);
        driver
            .frames
            .try_send(crate::frame::Frame::Voice { format: "slin", samples: 160, data: vec![0; 320] })
            .unwrap();
        let done = core
            .runtime()
            .block_on(async { crate::tokio::time::timeout(Duration::from_secs(5), answer(&mut chan, "60000")).await });
        assert_eq!(done, Ok(AppResult::Continue), "the voice frame ended the 60 s delay");
        assert_eq!(driver.commands.try_recv(), Ok(crate::channel::DriverCommand::Answer));
        assert_eq!(chan.state(), crate::channel::ChannelState::Up);
        let again = core
            .runtime()
            .block_on(async { crate::tokio::time::timeout(Duration::from_secs(5), answer(&mut chan, "60000")).await });
        assert_eq!(again, Ok(AppResult::Continue), "an answered channel does not wait");
    }

    #[test]
    fn exception_fields() {
        let core = crate::Core::for_tests();
        let (mut chan, _driver) = Channel::new(&core, "Test", "x", false);
        assert!(exception_read(&mut chan, "reason").is_err(), "none raised yet");
        (chan.context, chan.exten, chan.priority) = ("ctx".into(), "123".into(), 4);
        raise_exception(&mut chan, "CUSTOM");
        let jump = chan.take_jump().unwrap();
        assert_eq!((jump.exten.as_deref(), jump.target), (Some("e"), JumpTarget::Priority(1)));
        let fields: Vec<String> =
            ["reason", "CONTEXT", "exten", "priority"].iter().map(|f| exception_read(&mut chan, f).unwrap()).collect();
        assert_eq!(fields, ["CUSTOM", "ctx", "123", "4"]);
    }

    #[test]
    fn truth_and_conditions() {
        assert!(is_true("1") && is_true("abc") && !is_true("0") && !is_true("") && !is_true(" 0.0 "));
        assert_eq!(conditional("1?yes:no"), (true, Some("yes"), Some("no")));
        assert_eq!(conditional("0?yes"), (false, Some("yes"), None));
        assert_eq!(conditional("0?:no"), (false, None, Some("no")));
    }

    /// A dialplan where only `sub,s,1` exists (and its label `start`).
    struct OnlySub;

    impl crate::Pbx for OnlySub {
        fn start(&self, _: Channel) {}
        fn exists(&self, context: &str, exten: &str, _: Option<&str>) -> crate::Extent {
            if (context, exten) == ("sub", "s") {
                crate::Extent::Exists
            } else {
                crate::Extent::Missing
            }
        }
        fn priority_exists(&self, context: &str, exten: &str, priority: u32, _: Option<&str>) -> bool {
            (context, exten, priority) == ("sub", "s", 1)
        }
        fn can_match_more(&self, _: &str, _: &str, _: Option<&str>) -> bool {
            false
        }
        fn find_label(&self, context: &str, exten: &str, label: &str, _: Option<&str>) -> Option<u32> {
            ((context, exten, label) == ("sub", "s", "start")).then_some(1)
        }
        fn run_subroutine<'a>(
            &'a self,
            _: &'a mut Channel,
            _: &'a str,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>> {
            Box::pin(async { Err("not here".to_owned()) })
        }
        fn global(&self, _: &str) -> Option<String> {
            None
        }
        fn substitute(&self, _: &mut Channel, text: &str) -> String {
            text.to_owned()
        }
        fn set_global(&self, _: &str, _: &str) {}
    }

    /// As app_stack, Gosub to a place that does not exist is an error and changes nothing.
    #[test]
    fn gosub_refuses_a_destination_that_does_not_exist() {
        let core = crate::Core::for_tests();
        core.set_pbx(Some(std::sync::Arc::new(OnlySub)));
        let (mut chan, _driver) = Channel::new(&core, "Test", "x", false);
        assert_eq!(gosub_to(&mut chan, "sub,s,2(a)"), AppResult::Hangup);
        assert_eq!(gosub_to(&mut chan, "nosuch,s,1"), AppResult::Hangup);
        assert_eq!(gosub_to(&mut chan, "sub,s,nolabel"), AppResult::Hangup);
        assert!(chan.gosub_stack.is_empty() && chan.var("ARG1").is_none() && chan.take_jump().is_none());
        assert_eq!(gosub_to(&mut chan, "sub,s,start(a)"), AppResult::Continue);
        assert_eq!(chan.gosub_stack.len(), 1);
        // Arguments split as AST_STANDARD_RAW_ARGS: quotes group and stay.
        assert_eq!(gosub_to(&mut chan, "sub,s,1(\"a,b\",c)"), AppResult::Continue);
        assert_eq!((chan.var("ARG1"), chan.var("ARG2"), chan.var("ARGC")), (Some("\"a,b\""), Some("c"), Some("2")));
    }

    /// A Gosub past MAX_GOSUB_DEPTH levels fails (the channel hangs up) and changes nothing.
    #[test]
    fn gosub_stack_depth_is_bounded() {
        let core = crate::Core::for_tests();
        core.set_pbx(Some(std::sync::Arc::new(OnlySub)));
        let (mut chan, _driver) = Channel::new(&core, "Test", "x", false);
        for n in 0..MAX_GOSUB_DEPTH {
            assert_eq!(gosub_to(&mut chan, &format!("sub,s,1({n})")), AppResult::Continue);
            let _ = chan.take_jump();
        }
        assert_eq!(gosub_to(&mut chan, "sub,s,1(over)"), AppResult::Hangup);
        assert_eq!(chan.gosub_stack.len(), MAX_GOSUB_DEPTH);
        assert_eq!(chan.var("ARG1"), Some((MAX_GOSUB_DEPTH - 1).to_string().as_str()));
        assert!(chan.take_jump().is_none());
    }

    /// MSet splits as AST_STANDARD_APP_ARGS (quotes group and go), each pair at its first '='.
    #[test]
    fn mset_arguments_as_asterisk() {
        let core = crate::Core::for_tests();
        let (mut chan, _driver) = Channel::new(&core, "Test", "x", false);
        core.runtime().block_on(mset(&mut chan, "A=\"x,y\",B=1=2,C"));
        assert_eq!((chan.var("A"), chan.var("B"), chan.var("C")), (Some("x,y"), Some("1=2"), None));
    }

    /// LOCAL() and ARGn/ARGC belong to one Gosub level: visible below it, gone after Return.
    #[test]
    fn local_variables_and_arguments_live_until_return() {
        let core = crate::Core::for_tests();
        core.set_pbx(Some(std::sync::Arc::new(OnlySub)));
        let (mut chan, _driver) = Channel::new(&core, "Test", "x", false);
        chan.set_var("X", "outer");
        assert!(local_write(&mut chan, "X", "1").is_err(), "outside a Gosub");
        assert!(local_read(&mut chan, "X").is_err());
        assert_eq!(chan.var("X"), Some("outer"));
        gosub_to(&mut chan, "sub,s,1(a,b)");
        assert_eq!((chan.var("ARG1"), chan.var("ARG2"), chan.var("ARGC")), (Some("a"), Some("b"), Some("2")));
        local_write(&mut chan, "X", "inner").unwrap();
        local_write(&mut chan, "Y", "new").unwrap();
        local_write(&mut chan, "X", "again").unwrap();
        chan.set_var("Z", "plain");
        assert_eq!(local_read(&mut chan, "X").unwrap(), "again");
        assert_eq!(local_read(&mut chan, "ARG1").unwrap(), "a", "arguments are local too");
        assert_eq!(local_read(&mut chan, "Z").unwrap(), "", "a variable not local to this level");
        gosub_to(&mut chan, "sub,s,1(c)");
        assert_eq!((chan.var("ARG1"), chan.var("ARG2"), chan.var("ARGC")), (Some("c"), None, Some("1")));
        assert_eq!(chan.var("X"), Some("again"), "a LOCAL is seen by the levels below");
        assert_eq!(local_read(&mut chan, "X").unwrap(), "", "but is not theirs");
        core.runtime().block_on(async {
            gosub_return(&mut chan, "").await;
            assert_eq!((chan.var("ARG1"), chan.var("ARG2"), chan.var("ARGC")), (Some("a"), Some("b"), Some("2")));
            gosub_return(&mut chan, "done").await;
        });
        assert_eq!(chan.var("X"), Some("outer"), "the caller's value is back");
        assert_eq!((chan.var("Y"), chan.var("ARG1"), chan.var("ARGC")), (None, None, None));
        assert_eq!(chan.var("Z"), Some("plain"));
        assert_eq!(chan.var("GOSUB_RETVAL"), Some("done"));
    }
}
