//! The PBX loop (Asterisk's `__ast_pbx_run`): runs a channel through the dialplan on the
//! channel's own task — find the extension, substitute the priority's arguments, run its
//! application, go to the next priority or where the application jumped — until the channel
//! hangs up or the dialplan ends; then the `h` extension runs, as in Asterisk.
//!
//! - A channel that starts where no extension exists starts at `s` instead, then in the
//!   `default` context (`__ast_pbx_run`'s fallbacks).
//! - An extension that does not exist goes to `i` (with `INVALID_EXTEN` set) if the context
//!   has one, else to `e` (`EXCEPTION(reason)` is `INVALID`), else the channel hangs up. The
//!   absolute timeout goes to `T`, else `e` (`ABSOLUTETIMEOUT`); a response timeout to `t`,
//!   else `e` (`RESPONSETIMEOUT`).
//! - Running off the end of an extension hangs up (`autofallthrough=yes`, Asterisk's default).
//! - `HANGUPCAUSE` is set before `h` runs; `h` stops at an application that hangs up.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use starling_core::apps::AppResult;
use starling_core::channel::{Channel, JumpTarget};
use starling_core::frame::{Cause, Control};
use starling_core::module::ModuleUse;
use starling_core::{tokio, tracing, verbose, Core, Extent, Pbx};

use crate::extensions::{Dialplan, Want};
use crate::pattern::Mode;
use crate::substitute::{substitute, Scope};
use crate::timing::TimeOfDay;

/// Substitution on a channel: its variables and built-ins, then the globals, and the
/// registered functions.
struct ChannelScope<'a> {
    chan: &'a mut Channel,
    globals: &'a BTreeMap<String, String>,
}

impl Scope for ChannelScope<'_> {
    fn variable(&self, name: &str) -> Option<String> {
        let chan = &*self.chan;
        let builtin = match name {
            "EXTEN" => Some(chan.exten.clone()),
            "CONTEXT" => Some(chan.context.clone()),
            "PRIORITY" => Some(chan.priority.to_string()),
            "CHANNEL" => Some(chan.name().to_owned()),
            "UNIQUEID" => Some(chan.uniqueid().to_owned()),
            "LANGUAGE" => Some(chan.language.clone()),
            "ACCOUNTCODE" => Some(chan.accountcode.clone()),
            "CALLERID(num)" | "CALLERIDNUM" => Some(chan.caller.number.clone()),
            "CALLERID(name)" | "CALLERIDNAME" => Some(chan.caller.name.clone()),
            "HANGUPCAUSE" => chan.hangup_cause().map(|c| c.0.to_string()),
            "EPOCH" => Some(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
                    .to_string(),
            ),
            _ => None,
        };
        builtin.or_else(|| chan.var(name).map(str::to_owned)).or_else(|| self.globals.get(name).cloned())
    }

    fn function(&mut self, name: &str, args: &str) -> Result<String, String> {
        let function =
            self.chan.core().functions().get(name).ok_or_else(|| format!("Function {name} not registered"))?;
        let read = function.read.ok_or_else(|| format!("Function {name} cannot be read"))?;
        if !function.read_allowed(self.chan) {
            // Logged as Asterisk's ast_func_read does; the value is empty, as for a failure.
            return Ok(String::new());
        }
        let _use = function.uses.clone().map(ModuleUse::new);
        let chan = &mut *self.chan;
        match starling_core::panic::catch(|| read(chan, args)) {
            Ok(value) => value,
            Err(report) => {
                // It ends the call (the loop sees the hangup); the value is empty, as for a
                // function that failed, without a second line about it.
                starling_core::apps::hang_up_after_panic(self.chan, &format!("Function {name}({args})"), &report);
                Ok(String::new())
            }
        }
    }

    fn warn(&mut self, message: String) {
        tracing::warn!("{}: {message}", self.chan.name());
    }
}

/// Local time now, for time conditions.
pub fn now() -> TimeOfDay {
    use starling_core::chrono::{Datelike, Local, Timelike};
    let t = Local::now();
    TimeOfDay {
        weekday: t.weekday().num_days_from_sunday() as u8,
        mday: t.day() as u8,
        month: t.month() as u8,
        hour: t.hour() as u8,
        minute: t.minute() as u8,
    }
}

/// Runs `chan` through `plan` until it ends (see the module docs); gives the channel back,
/// hung up.
pub async fn run(plan: Arc<Dialplan>, globals: Arc<RwLock<BTreeMap<String, String>>>, mut chan: Channel) -> Channel {
    start_where_something_exists(&plan, &mut chan);
    let cause = match run_priorities(&plan, &globals, &mut chan, false, None).await {
        Ended::Hangup(cause) => cause,
        Ended::Returned => Cause::NORMAL_CLEARING,
    };
    chan.hangup(cause);
    // The h extension runs after the hangup, with HANGUPCAUSE set; not on what a pickup left
    // behind (the channel went on elsewhere).
    if !chan.is_zombie() && exists(&plan, &chan, "h") {
        chan.cdr_before_hangup_exten();
        chan.exten = "h".into();
        chan.priority = 1;
        run_priorities(&plan, &globals, &mut chan, true, None).await;
    }
    chan
}

/// The channel's caller ID number, as the dialplan matches `/cid` against it.
fn callerid(chan: &Channel) -> Option<String> {
    (!chan.caller.number.is_empty()).then(|| chan.caller.number.clone())
}

/// Whether `exten` exists (at priority 1) in the channel's context, for its caller ID.
fn exists(plan: &Dialplan, chan: &Channel, exten: &str) -> bool {
    plan.find(&chan.context, exten, callerid(chan).as_deref(), Mode::Match, &now()).is_some()
}

/// `__ast_pbx_run`'s start: where the channel points does not exist, so `s`, then the
/// `default` context.
fn start_where_something_exists(plan: &Dialplan, chan: &mut Channel) {
    let cid = callerid(chan);
    let here = |chan: &Channel| {
        plan.find_at(&chan.context, &chan.exten, cid.as_deref(), Mode::Match, Want::Priority(chan.priority), &now())
            .is_some()
    };
    if here(chan) {
        return;
    }
    verbose!(
        2,
        "Starting {} at {},{},{} failed so falling back to exten 's'",
        chan.name(),
        chan.context,
        chan.exten,
        chan.priority
    );
    chan.exten = "s".into();
    chan.priority = 1;
    if !here(chan) {
        verbose!(
            2,
            "Starting {} at {},{},{} still failed so falling back to context 'default'",
            chan.name(),
            chan.context,
            chan.exten,
            chan.priority
        );
        chan.context = "default".into();
    }
}

/// Goes to `e` (which the caller found) with `EXCEPTION(reason)` set.
fn to_exception(chan: &mut Channel, reason: &str) {
    starling_core::builtins::raise_exception(chan, reason);
    let _ = chan.take_jump();
    chan.exten = "e".into();
    chan.priority = 1;
}

/// How the loop ended.
enum Ended {
    /// The channel is to hang up with this cause.
    Hangup(Cause),
    /// The subroutine it ran returned (see [`run_subroutine`]).
    Returned,
}

/// Runs `Gosub(target)` on `chan` until that subroutine returns (Dial's `U()`): the Gosub is
/// executed, and the loop stops as soon as the Gosub stack is back below its level.
pub async fn run_subroutine(
    plan: &Dialplan,
    globals: &RwLock<BTreeMap<String, String>>,
    chan: &mut Channel,
    target: &str,
) -> Result<(), String> {
    let gosub = chan.core().apps().get("Gosub").ok_or("no Gosub application")?;
    let (context, exten, priority) = (chan.context.clone(), chan.exten.clone(), chan.priority);
    let depth = chan.gosub_stack.len();
    (gosub.exec)(chan, target).await;
    if chan.gosub_stack.len() <= depth {
        return Err(format!("Gosub({target}) did not start"));
    }
    let callerid = (!chan.caller.number.is_empty()).then(|| chan.caller.number.clone());
    if let Err(cause) = apply_jump(plan, chan, callerid.as_deref()) {
        return Err(format!("Gosub({target}): no such place ({})", cause.name()));
    }
    let ended = run_priorities(plan, globals, chan, false, Some(depth + 1)).await;
    chan.gosub_stack.truncate(depth);
    (chan.context, chan.exten, chan.priority) = (context, exten, priority);
    match ended {
        Ended::Returned => Ok(()),
        Ended::Hangup(cause) => Err(format!("the subroutine ended the call ({})", cause.name())),
    }
}

/// Goes where the last application jumped (labels resolved in `plan`); `Err` for a label that
/// does not exist. Without a jump, nothing changes.
fn apply_jump(plan: &Dialplan, chan: &mut Channel, callerid: Option<&str>) -> Result<bool, Cause> {
    let Some(jump) = chan.take_jump() else { return Ok(false) };
    if let Some(c) = jump.context {
        chan.context = c;
    }
    if let Some(e) = jump.exten {
        chan.exten = e;
    }
    chan.priority = match jump.target {
        JumpTarget::Priority(n) => n,
        JumpTarget::Label(label) => {
            match plan
                .find_at(&chan.context, &chan.exten, callerid, Mode::Match, Want::Label(&label), &now())
                .map(|f| f.priority.number)
            {
                Some(n) => n,
                None => {
                    tracing::warn!(
                        "Priority '{label}' must be a number > 0, or valid label ({}, {})",
                        chan.context,
                        chan.exten
                    );
                    return Err(Cause::NORMAL_CLEARING);
                }
            }
        }
    };
    Ok(true)
}

/// The loop proper. With `stop_below`, it also ends (Returned) once the Gosub stack is
/// shallower than that.
async fn run_priorities(
    plan: &Dialplan,
    globals: &RwLock<BTreeMap<String, String>>,
    chan: &mut Channel,
    in_h: bool,
    stop_below: Option<usize>,
) -> Ended {
    loop {
        if chan.is_hung_up() && !in_h {
            return Ended::Hangup(chan.hangup_cause().unwrap_or(Cause::NORMAL_CLEARING));
        }
        // The manager's Redirect: go there (whatever the last application was doing).
        if !in_h {
            if let Some(jump) = chan.take_redirect() {
                verbose!(3, "Redirecting {} to {:?}", chan.name(), jump);
                chan.jump(jump);
                if let Err(cause) = apply_jump(plan, chan, None) {
                    return Ended::Hangup(cause);
                }
                continue;
            }
        }
        // TIMEOUT(absolute) struck (during the last application, or between priorities).
        if !in_h && chan.take_timed_out() {
            let _ = chan.take_jump();
            if exists(plan, chan, "T") {
                verbose!(3, "Timeout on {}, going to 'T'", chan.name());
                chan.exten = "T".into();
                chan.priority = 1;
            } else if exists(plan, chan, "e") {
                verbose!(3, "Timeout on {}, going to 'e'", chan.name());
                to_exception(chan, "ABSOLUTETIMEOUT");
            } else {
                verbose!(3, "Timeout on {}, hanging up (no 'T' or 'e' extension)", chan.name());
                return Ended::Hangup(Cause::NORMAL_CLEARING);
            }
        }
        let callerid = callerid(chan);
        let found = plan.find_at(
            &chan.context,
            &chan.exten,
            callerid.as_deref(),
            Mode::Match,
            Want::Priority(chan.priority),
            &now(),
        );
        let Some(found) = found else {
            // The extension ran out of priorities; `h` just ends (ast_pbx_h_exten_run).
            if in_h {
                return Ended::Hangup(chan.hangup_cause().unwrap_or(Cause::NORMAL_CLEARING));
            }
            let exten = chan.exten.clone();
            if !exists(plan, chan, &exten) {
                // No such extension (at priority 1): i, else e, else hang up.
                if exists(plan, chan, "i") {
                    verbose!(
                        3,
                        "Channel '{}' sent to invalid extension: context,exten,priority={},{},{}",
                        chan.name(),
                        chan.context,
                        chan.exten,
                        chan.priority
                    );
                    chan.set_var("INVALID_EXTEN", &exten);
                    chan.exten = "i".into();
                    chan.priority = 1;
                    continue;
                }
                if exists(plan, chan, "e") && exten != "e" {
                    to_exception(chan, "INVALID");
                    continue;
                }
                tracing::warn!(
                    "Channel '{}' sent to invalid extension but no invalid handler: context,exten,priority={},{},{}",
                    chan.name(),
                    chan.context,
                    chan.exten,
                    chan.priority
                );
                return Ended::Hangup(Cause::UNALLOCATED);
            }
            if plan.general.autofallthrough {
                return fall_through(chan).await;
            }
            // autofallthrough=no: wait TIMEOUT(response) for an extension, as Asterisk does.
            let response = chan.timeouts.response;
            let digits = starling_core::builtins::collect_extension(chan, None, response).await;
            if digits == AppResult::Hangup {
                return Ended::Hangup(chan.hangup_cause().unwrap_or(Cause::NORMAL_CLEARING));
            }
            match apply_jump(plan, chan, callerid.as_deref()) {
                Err(cause) => return Ended::Hangup(cause),
                Ok(true) => continue,
                // No key and nowhere to go on: a simple timeout, t, else e, else hang up.
                Ok(false) if exists(plan, chan, "t") => {
                    chan.exten = "t".into();
                    chan.priority = 1;
                    continue;
                }
                Ok(false) if exists(plan, chan, "e") => {
                    to_exception(chan, "RESPONSETIMEOUT");
                    continue;
                }
                Ok(false) => return Ended::Hangup(Cause::NORMAL_CLEARING),
            }
        };
        let priority = found.priority;
        let data = if priority.data.contains('$') {
            // A copy of the globals: a function read during substitution may take their lock.
            let globals = globals.read().unwrap_or_else(|p| p.into_inner()).clone();
            let mut scope = ChannelScope { chan: &mut *chan, globals: &globals };
            substitute(&priority.data, &mut scope)
        } else {
            priority.data.clone()
        };
        // A function that panicked during substitution hung the call up: its application
        // does not run.
        if chan.is_hung_up() && !in_h {
            return Ended::Hangup(chan.hangup_cause().unwrap_or(Cause::NORMAL_CLEARING));
        }
        let app_name = priority.app.clone();
        let Some(app) = chan.core().apps().get(&app_name) else {
            tracing::warn!(
                "No application '{app_name}' for extension ({}, {}, {})",
                chan.context,
                chan.exten,
                chan.priority
            );
            return Ended::Hangup(Cause::NORMAL_CLEARING);
        };
        verbose!(
            3,
            "Executing [{}@{}:{}] {}(\"{}\", \"{}\") in new stack",
            chan.exten,
            chan.context,
            chan.priority,
            app.name,
            chan.name(),
            data
        );
        chan.set_application(app.name, &data);
        // A panic in the application ends this call only (App::run hangs it up, FAILURE).
        let result = app.run(chan, &data).await;
        // Most steps (Set, While, GotoIf...) finish without waiting on anything, so a dialplan
        // loop would keep its worker thread until it ends, starving the other tasks (the
        // manager's sessions, which then fall behind the events the loop makes). Asterisk's
        // channel threads are preempted by the kernel; here the task yields once its budget of
        // steps is spent.
        tokio::task::coop::consume_budget().await;
        match apply_jump(plan, chan, callerid.as_deref()) {
            Ok(true) => {}
            // Interrupted by the absolute timeout: the priority stays (EXCEPTION(priority)).
            Ok(false) if chan.is_timed_out() => {}
            Ok(false) => chan.priority += 1,
            Err(cause) => return Ended::Hangup(cause),
        }
        if stop_below.is_some_and(|depth| chan.gosub_stack.len() < depth) {
            return Ended::Returned;
        }
        // In `h` an application that hangs up ends `h` (ast_pbx_h_exten_run stops at it).
        if result == AppResult::Hangup && (in_h || (!chan.is_timed_out() && !chan.is_redirected())) {
            return Ended::Hangup(chan.hangup_cause().unwrap_or(Cause::NORMAL_CLEARING));
        }
    }
}

/// `autofallthrough=yes` (the default): the extension ran out of priorities, so the call
/// ends — after a busy or congestion indication when the last Dial said so (`DIALSTATUS`),
/// as Asterisk's `__ast_pbx_run` does.
async fn fall_through(chan: &mut Channel) -> Ended {
    let status = chan.var("DIALSTATUS").unwrap_or("UNKNOWN").to_owned();
    verbose!(2, "Auto fallthrough, channel '{}' status is '{status}'", chan.name());
    let indication = match status.to_ascii_uppercase().as_str() {
        "CONGESTION" | "CHANUNAVAIL" => Some((Control::Congestion, Cause::CONGESTION)),
        "BUSY" => Some((Control::Busy, Cause::USER_BUSY)),
        _ => None,
    };
    if let Some((control, cause)) = indication {
        starling_core::builtins::indicate_then_hang_up(chan, control, cause, "10").await;
        return Ended::Hangup(cause);
    }
    Ended::Hangup(Cause::NORMAL_CLEARING)
}

/// The dialplan that runs channels, as registered with the core by pbx_config. Reload swaps
/// the dialplan atomically; calls in progress keep the one they started with.
pub struct PbxRunner {
    plan: RwLock<Arc<Dialplan>>,
    globals: Arc<RwLock<BTreeMap<String, String>>>,
}

impl PbxRunner {
    pub fn new(plan: Dialplan) -> PbxRunner {
        let globals = plan.globals.iter().cloned().collect();
        PbxRunner { plan: RwLock::new(Arc::new(plan)), globals: Arc::new(RwLock::new(globals)) }
    }

    /// The dialplan in force.
    pub fn plan(&self) -> Arc<Dialplan> {
        self.plan.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Changes the dialplan in force (the `dialplan add|remove ...` commands): a changed copy is
    /// swapped in, so calls in progress keep the one they started with.
    pub fn modify<R>(&self, change: impl FnOnce(&mut Dialplan) -> R) -> R {
        let mut slot = self.plan.write().unwrap_or_else(|p| p.into_inner());
        let mut plan = Dialplan::clone(&slot);
        let result = change(&mut plan);
        *slot = Arc::new(plan);
        result
    }

    /// A global variable (`GLOBAL(name)`, `[globals]`).
    pub fn global(&self, name: &str) -> Option<String> {
        self.globals.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }
    /// Sets (an empty value removes) a global variable.
    pub fn set_global(&self, name: &str, value: &str) {
        let mut globals = self.globals.write().unwrap_or_else(|p| p.into_inner());
        if value.is_empty() {
            globals.remove(name);
        } else {
            globals.insert(name.to_owned(), value.to_owned());
        }
    }

    /// Swaps in a new dialplan (`dialplan reload`). Globals are cleared first when the
    /// dialplan in force said `clearglobalvars = yes` — as pbx_config, the setting read at the
    /// previous load decides — then the file's are set over them.
    pub fn replace(&self, plan: Dialplan) {
        {
            let clear = self.plan().general.clearglobalvars;
            let mut globals = self.globals.write().unwrap_or_else(|p| p.into_inner());
            if clear {
                globals.clear();
            }
            globals.extend(plan.globals.iter().cloned());
        }
        *self.plan.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(plan);
    }
}

impl Pbx for PbxRunner {
    fn global(&self, name: &str) -> Option<String> {
        PbxRunner::global(self, name)
    }
    fn set_global(&self, name: &str, value: &str) {
        PbxRunner::set_global(self, name, value)
    }
    fn substitute(&self, channel: &mut Channel, text: &str) -> String {
        let globals = self.globals.read().unwrap_or_else(|p| p.into_inner()).clone();
        substitute(text, &mut ChannelScope { chan: channel, globals: &globals })
    }
    fn start(&self, channel: Channel) {
        let plan = self.plan();
        let globals = self.globals.clone();
        let name = channel.name().to_owned();
        tokio::spawn(async move {
            // Applications and functions have their own boundary (App::run); this one names the
            // channel for a panic in the loop itself. The channel, dropped with the loop, still
            // ends the call at the far end and writes its CDR.
            if let Err(report) = starling_core::panic::catch_future(run(plan, globals, channel)).await {
                tracing::error!("The dialplan on {name} panicked: {report}; the call is hung up");
            }
        });
    }

    fn run_subroutine<'a>(
        &'a self,
        channel: &'a mut Channel,
        target: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>> {
        let plan = self.plan();
        let globals = self.globals.clone();
        Box::pin(async move { run_subroutine(&plan, &globals, channel, target).await })
    }

    fn exists(&self, context: &str, exten: &str, callerid: Option<&str>) -> Extent {
        let plan = self.plan();
        let now = now();
        if plan.find(context, exten, callerid, Mode::Match, &now).is_some() {
            Extent::Exists
        } else if plan.find(context, exten, callerid, Mode::MatchMore, &now).is_some() {
            Extent::Incomplete
        } else {
            Extent::Missing
        }
    }

    fn priority_exists(&self, context: &str, exten: &str, priority: u32, callerid: Option<&str>) -> bool {
        let plan = self.plan();
        plan.find_at(context, exten, callerid, Mode::Match, Want::Priority(priority), &now()).is_some()
    }

    fn can_match_more(&self, context: &str, exten: &str, callerid: Option<&str>) -> bool {
        self.plan().find(context, exten, callerid, Mode::MatchMore, &now()).is_some()
    }

    fn find_label(&self, context: &str, exten: &str, label: &str, callerid: Option<&str>) -> Option<u32> {
        let plan = self.plan();
        plan.find_at(context, exten, callerid, Mode::Match, Want::Label(label), &now()).map(|f| f.priority.number)
    }

    fn hints(&self) -> Vec<(String, String, String)> {
        self.plan().hints()
    }
}

/// Makes `core.start_pbx()` use this runner (and returns it, for reload).
pub fn install(core: &Core, plan: Dialplan) -> Arc<PbxRunner> {
    let runner = Arc::new(PbxRunner::new(plan));
    core.set_pbx(Some(runner.clone()));
    runner
}
