//! The PBX loop end to end on a real channel whose driver end is the test: what the dialplan
//! did shows in the commands the driver receives and in the channel's variables afterwards.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use starling_core::channel::{Channel, ChannelDriver, DriverCommand};
use starling_core::config::Config;
use starling_core::frame::{Cause, Control, Frame};
use starling_core::Core;
use starling_dialplan::extensions::Dialplan;
use starling_dialplan::pbx::run;

const CONF: &str = "[globals]\nGREETING=hello\n\
[default]\n\
exten => 100,1,Answer()\n\
 same => n,Set(X=5)\n\
 same => n,GotoIf($[${X} > 3]?big:small)\n\
 same => n(small),Set(RESULT=small)\n\
 same => n,Hangup()\n\
 same => n(big),Gosub(sub,s,1(a,b))\n\
 same => n,Set(RESULT=big-${GOSUB_RETVAL}-${GREETING}-${EXTEN})\n\
 same => n,Hangup(17)\n\
exten => 200,1,Answer()\n\
 same => n,Wait(30)\n\
 same => n,Set(NOTREACHED=1)\n\
exten => 300,1,NoOp(falls through)\n\
exten => 400,1,Ringing()\n\
 same => n,Busy(0)\n\
exten => 500,1,Goto(default,100,1)\n\
exten => 600,1,Goto(999,1)\n\
exten => i,1,Set(WAS=${INVALID_EXTEN})\n\
 same => n,Hangup(1)\n\
exten => h,1,Set(CAUSE=${HANGUPCAUSE})\n\
[sub]\n\
exten => s,1,Set(JOINED=${ARG1}${ARG2})\n\
 same => n,Return(${JOINED})\n";

type Globals = Arc<RwLock<BTreeMap<String, String>>>;

fn setup(exten: &str) -> (Arc<Core>, Channel, ChannelDriver, Arc<Dialplan>, Globals) {
    let core = Core::for_tests();
    let plan = Dialplan::from_config(&Config::parse_str("extensions.conf", CONF).unwrap()).unwrap();
    let globals = Arc::new(RwLock::new(plan.globals.iter().cloned().collect()));
    let (mut chan, driver) = Channel::new(&core, "Test", "alice", true);
    chan.exten = exten.into();
    // Gosub asks the core's dialplan whether its destination exists.
    let runner = starling_dialplan::pbx::install(&core, plan);
    (core, chan, driver, runner.plan(), globals)
}

fn commands(driver: &mut ChannelDriver) -> Vec<DriverCommand> {
    std::iter::from_fn(|| driver.commands.try_recv().ok()).collect()
}

#[test]
fn goto_if_labels_gosub_with_arguments_and_h() {
    let (core, chan, mut driver, plan, globals) = setup("100");
    let chan = core.runtime().block_on(run(plan, globals, chan));
    assert_eq!(chan.var("RESULT"), Some("big-ab-hello-100"));
    assert_eq!(chan.var("JOINED"), Some("ab"));
    assert_eq!(chan.var("ARG1"), None, "Return restored the caller's ARGn");
    assert_eq!(chan.hangup_cause(), Some(Cause::USER_BUSY));
    assert_eq!(chan.var("CAUSE"), Some("17"), "h ran with HANGUPCAUSE");
    assert_eq!(commands(&mut driver), [DriverCommand::Answer, DriverCommand::Hangup(Cause::USER_BUSY)]);
}

#[test]
fn a_caller_hanging_up_ends_wait_and_runs_h() {
    let (core, chan, mut driver, plan, globals) = setup("200");
    let frames = driver.frames.clone();
    let chan = core.runtime().block_on(async move {
        let handle = starling_core::tokio::spawn(run(plan, globals, chan));
        starling_core::tokio::time::sleep(Duration::from_millis(50)).await;
        frames.send(Frame::Hangup(Cause::NORMAL_CLEARING)).await.unwrap();
        starling_core::tokio::time::timeout(Duration::from_secs(5), handle).await.expect("the dialplan ended").unwrap()
    });
    assert_eq!(chan.var("NOTREACHED"), None);
    assert_eq!(chan.var("CAUSE"), Some("16"));
    assert_eq!(commands(&mut driver), [DriverCommand::Answer]);
}

#[test]
fn fallthrough_invalid_extensions_busy_and_goto() {
    let (core, chan, mut driver, plan, globals) = setup("300");
    let chan = core.runtime().block_on(run(plan, globals, chan));
    assert_eq!(chan.hangup_cause(), Some(Cause::NORMAL_CLEARING), "autofallthrough");
    assert_eq!(commands(&mut driver), [DriverCommand::Hangup(Cause::NORMAL_CLEARING)]);

    let (core, chan, mut driver, plan, globals) = setup("600");
    let chan = core.runtime().block_on(run(plan, globals, chan));
    assert_eq!(chan.var("WAS"), Some("999"), "the i extension with INVALID_EXTEN");
    assert_eq!(commands(&mut driver), [DriverCommand::Hangup(Cause::UNALLOCATED)]);

    // A channel that *starts* where nothing exists starts at s (none here), as __ast_pbx_run.
    let (core, chan, _driver, plan, globals) = setup("999");
    let chan = core.runtime().block_on(run(plan, globals, chan));
    assert_eq!(chan.var("WAS"), Some("s"), "fell back to s, which is invalid too");

    let (core, chan, mut driver, plan, globals) = setup("400");
    core.runtime().block_on(run(plan, globals, chan));
    assert_eq!(
        commands(&mut driver),
        [
            DriverCommand::Indicate(Control::Ringing),
            DriverCommand::Indicate(Control::Busy),
            DriverCommand::Hangup(Cause::USER_BUSY)
        ]
    );

    let (core, chan, _driver, plan, globals) = setup("500");
    let chan = core.runtime().block_on(run(plan, globals, chan));
    assert_eq!(chan.var("RESULT").map(|r| r.starts_with("big-ab")), Some(true), "Goto to another extension");
}

const MENU: &str = "[menu]\n\
exten => s,1,Answer()\n\
 same => n,WaitExten(0.3)\n\
exten => 1,1,Set(CHOICE=one)\n\
exten => 12,1,Set(CHOICE=twelve)\n\
exten => 123,1,Set(CHOICE=123)\n\
exten => t,1,Set(CHOICE=timeout)\n\
exten => i,1,Set(CHOICE=invalid-${INVALID_EXTEN})\n";

/// WaitExten collects digits against the dialplan: waits while a longer extension could match,
/// times out to `t`, and sends an impossible number to `i`.
#[test]
fn wait_exten_menu() {
    for (digits, expected) in [("12", "twelve"), ("123", "123"), ("", "timeout"), ("9", "invalid-9")] {
        let core = Core::for_tests();
        let plan = Dialplan::from_config(&Config::parse_str("extensions.conf", MENU).unwrap()).unwrap();
        let runner = starling_dialplan::pbx::install(&core, plan);
        let globals = Arc::new(RwLock::new(BTreeMap::new()));
        let (mut chan, driver) = Channel::new(&core, "Test", "caller", true);
        chan.context = "menu".into();
        for d in digits.chars() {
            driver.frames.try_send(Frame::DtmfEnd { digit: d, duration_ms: 100 }).unwrap();
        }
        let chan = core.runtime().block_on(run(runner.plan(), globals, chan));
        assert_eq!(chan.var("CHOICE"), Some(expected), "digits {digits:?}");
        core.set_pbx(None);
    }
}

const EXCEPTIONS: &str = "[start]\n\
exten => 1,1,Goto(nowhere,1)\n\
exten => 2,1,Wait(5)\n\
exten => 3,1,RaiseException(MINE)\n\
exten => 4,1,WaitExten(0.2)\n\
exten => 5,1,NoOp(exact)\n\
exten => _5,2,Set(FROM=pattern)\n\
exten => e,1,Set(SEEN=${EXCEPTION(reason)}@${EXCEPTION(context)},${EXCEPTION(exten)},${EXCEPTION(priority)})\n\
exten => h,1,Set(H1=ran)\n\
 same => n,Hangup()\n\
 same => n,Set(H3=ran)\n\
[other]\n\
exten => s,1,Set(AT=s)\n\
[default]\n\
exten => s,1,Set(AT=default-s)\n";

fn run_in(context: &str, exten: &str) -> Channel {
    run_with_timeout(context, exten, None)
}

fn run_with_timeout(context: &str, exten: &str, absolute: Option<Duration>) -> Channel {
    let core = Core::for_tests();
    // pbx_config registers EXCEPTION() in a running server.
    let _exception = core
        .functions()
        .register(
            "EXCEPTION",
            starling_core::apps::Function {
                name: "EXCEPTION",
                synopsis: "",
                syntax: "EXCEPTION(field)",
                read: Some(starling_core::builtins::exception_read),
                write: None,
                escalation: starling_core::apps::Escalation::None,
                uses: None,
            },
        )
        .unwrap();
    let plan = Dialplan::from_config(&Config::parse_str("extensions.conf", EXCEPTIONS).unwrap()).unwrap();
    let runner = starling_dialplan::pbx::install(&core, plan);
    let globals = Arc::new(RwLock::new(BTreeMap::new()));
    let (mut chan, _driver) = Channel::new(&core, "Test", "caller", true);
    (chan.context, chan.exten) = (context.into(), exten.into());
    chan.set_absolute_timeout(absolute);
    let chan = core.runtime().block_on(run(runner.plan(), globals, chan));
    core.set_pbx(None);
    chan
}

/// `e` catches what has no `i`/`T`/`t` (EXCEPTION() says why and where), RaiseException goes
/// there too; `h` stops at an application that hangs up; a priority one extension lacks comes
/// from the next that matches; a start where nothing exists falls back to s, then `default`.
#[test]
fn exceptions_h_priorities_and_the_start_fallbacks() {
    let chan = run_in("start", "1");
    assert_eq!(chan.exception.as_ref().map(|e| e.reason.as_str()), Some("INVALID"));
    assert_eq!(chan.exception.as_ref().map(|e| e.exten.as_str()), Some("nowhere"));
    assert_eq!(chan.var("H1"), Some("ran"));
    assert_eq!(chan.var("H3"), None, "h ended at its Hangup()");
    let chan = run_in("start", "3");
    assert_eq!(chan.var("SEEN"), Some("MINE@start,3,1"));
    let chan = run_with_timeout("start", "2", Some(Duration::from_millis(200)));
    assert_eq!(chan.var("SEEN"), Some("ABSOLUTETIMEOUT@start,2,1"), "no T: e");
    let chan = run_in("start", "4");
    assert_eq!(chan.exception.as_ref().map(|e| e.reason.as_str()), Some("RESPONSETIMEOUT"), "no t: e");
    let chan = run_in("start", "5");
    assert_eq!(chan.var("FROM"), Some("pattern"), "5 has no priority 2; _5 has");
    assert_eq!(run_in("other", "nosuch").var("AT"), Some("s"));
    assert_eq!(run_in("nosuchcontext", "nosuch").var("AT"), Some("default-s"));
}
