use crate::util::*;

fn server(name: &str) -> Server {
    let dir = TestDir::new(name);
    dir.write_starling_conf(&moddir(), "");
    dir.write("modules.conf", "[modules]\nautoload = no\nload => pbx_config.so\n");
    dir.write("extensions.conf", "[default]\nexten => 100,1,Answer()\n same => n(greet),Verbose(2,hi ${EXTEN})\nexten => _9X.,1,NoOp()\ninclude => other\n[other]\nexten => 200,1,Hangup(17)\n");
    Server::start(dir)
}

#[test]
fn dialplan_show_lists_in_asterisks_layout() {
    let server = server("dpshow");
    let out = server.rx("dialplan show default");
    assert!(out.starts_with("[ Context 'default' created by 'pbx_config' ]\n  '100' =>          1. Answer()"), "{out}");
    assert!(out.contains("\n     [greet]        2. Verbose(2,hi ${EXTEN})"), "{out}");
    assert!(out.contains("  Include =>        'other'"), "{out}");
    assert!(out.ends_with("-= 2 extensions (3 priorities) in 1 context. =-\n"), "{out}");
    assert!(server.rx("dialplan show").ends_with("-= 3 extensions (4 priorities) in 2 contexts. =-\n"));
    assert!(server.rx("dialplan show nosuch").contains("There is no existence of 'nosuch' context"));
    assert!(server.rx("core show applications").contains("GotoIf: Conditional goto."));
    let app = server.rx("core show application RaiseException");
    assert!(app.starts_with("\n  -= Info about application 'RaiseException' =- \n\n[Synopsis]\n"), "{app}");
    assert_eq!(server.rx("core show application Nope"), "Your application Nope was not found\n");
    let functions = server.rx("core show functions like LOC");
    assert_eq!(
        functions,
        format!(
            "Matching Custom Functions:\n{}\nLOCAL                 LOCAL(varname)                       Manage variables local to the gosub stack frame.\n1 matching custom functions installed.\n",
            "-".repeat(80)
        )
    );
    assert!(server.rx("core show functions").contains("EXCEPTION             EXCEPTION(field)"));
    let function = server.rx("core show function GLOBAL");
    assert!(
        function.starts_with("\n  -= Info about function 'GLOBAL' =- \n\n[Synopsis]\nGets or sets the global variable specified.\n\n[Description]\n"),
        "{function}"
    );
    assert!(function.contains("[Syntax]\nGLOBAL(varname)\n"), "{function}");
    assert_eq!(server.rx("core show function NOPE"), "No function by that name registered.\n");
}

/// pbx_config's CLI changes the dialplan in force; `dialplan save` writes it back only with
/// `static = yes` and `writeprotect = no`, and what it writes loads again.
#[test]
fn dialplan_add_remove_and_save_follow_static_and_writeprotect() {
    let server = server("dpsave");
    assert_eq!(server.rx("dialplan save"), "I can't save dialplan now, see 'extensions.conf' example file.\n");
    assert_eq!(
        server.rx("dialplan add extension 555,1,Verbose(1,added) into default"),
        "Extension '555,1,Verbose(1,added)' added into 'default' context\n"
    );
    assert_eq!(
        server.rx("dialplan add extension 555,1,NoOp into default"),
        "Extension 555@default with priority 1 already exists\n"
    );
    assert_eq!(server.rx("dialplan add ignorepat 9 into default"), "Ignore pattern '9' added into 'default' context\n");
    let show = server.rx("dialplan show 555@default");
    assert!(show.contains("  '555' =>          1. Verbose(1,added)                           [pbx_config]"), "{show}");
    assert!(show.ends_with("-= 1 extension (1 priority) in 1 context. =-\n"), "{show}");
    assert_eq!(server.rx("dialplan remove extension 200@other"), "Whole extension 200@other removed\n");
    assert_eq!(server.rx("dialplan show 200@"), "There is no existence of '200' extension in all contexts\n");

    server.dir.write(
        "extensions.conf",
        "[general]\nstatic = yes\nwriteprotect = no\n[globals]\nG = 1\n[default]\nexten => 100,1,Answer()\n same => n(greet),NoOp(x\\;y)\n",
    );
    assert_eq!(server.rx("dialplan reload"), "Dialplan reloaded.\n");
    assert!(server.rx("dialplan add include other into default").contains("included in 'default'"));
    assert!(server.rx("dialplan add extension 300/555,1,Hangup(17) into other").contains("did not exist"));
    let saved = server.dir.path.join("saved.conf");
    assert_eq!(
        server.rx(&format!("dialplan save {}", saved.display())),
        format!("Dialplan successfully saved into '{}'\n", saved.display())
    );
    let text = std::fs::read_to_string(&saved).unwrap();
    for line in [
        "[general]\nstatic=yes\nwriteprotect=no\n",
        "[globals]\nG => 1\n",
        "exten => 100,1,Answer()\nexten => 100,2(greet),NoOp(x\\;y)\n",
        "include => other\n",
        "[other]\nexten => 300/555,1,Hangup(17)\n",
    ] {
        assert!(text.contains(line), "{line:?} missing from\n{text}");
    }
    std::fs::copy(&saved, server.dir.etc().join("extensions.conf")).unwrap();
    assert_eq!(server.rx("dialplan reload"), "Dialplan reloaded.\n");
    let show = server.rx("dialplan show");
    assert!(show.contains("'300' (CID match '555') => ") && show.contains("   [greet]"), "{show}");
}

#[test]
fn dialplan_reload_is_atomic() {
    let server = server("dpreload");
    server.dir.write("extensions.conf", "[default]\nexten => 300,1,NoOp()\nexten => 301,x,NoOp()\n");
    let out = server.rx("dialplan reload");
    assert_eq!(out, "extensions.conf:3: exten '301,x,NoOp()': bad priority 'x'\nThe dialplan was not changed.\n");
    assert!(server.rx("dialplan show default").contains("'100' =>"), "the old dialplan stays");
    server.dir.write("extensions.conf", "[default]\nexten => 300,1,NoOp()\n");
    assert_eq!(server.rx("dialplan reload"), "Dialplan reloaded.\n");
    let out = server.rx("dialplan show default");
    assert!(out.contains("'300' =>") && !out.contains("'100' =>"), "{out}");
}

#[test]
fn a_bad_extensions_conf_stops_start_up_with_its_line() {
    let dir = TestDir::new("dpbad");
    dir.write_starling_conf(&moddir(), "");
    dir.write("modules.conf", "[modules]\nautoload = yes\n");
    dir.write("extensions.conf", "[default]\nexten => 100,1,NoOp()\nswitch => IAX2/box\n");
    let out = run_starling(&["-C", dir.config().to_str().unwrap(), "-f"], std::time::Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("extensions.conf:3: switch 'IAX2/box': switches are not supported"), "{err}");
}

/// The astdb lives in `dbdir` and survives a restart (even `kill -9`).
#[test]
fn database_commands_and_persistence() {
    let mut server = server("astdb");
    assert_eq!(server.rx("database put cidname 5551212 Alice"), "Updated database successfully\n");
    assert_eq!(server.rx("database put blacklist 666 1"), "Updated database successfully\n");
    assert_eq!(server.rx("database get cidname 5551212"), "Value: Alice\n");
    assert_eq!(server.rx("database get cidname 0"), "Database entry not found.\n");
    let show = server.rx("database show");
    assert!(show.contains("/cidname/5551212") && show.ends_with("2 results found.\n"), "{show}");
    assert_eq!(server.rx("database del blacklist 666"), "Database entry removed.\n");
    server.signal(SIGKILL);
    server.wait_exit(std::time::Duration::from_secs(10));
    let again = Server::start(server.into_dir());
    assert_eq!(again.rx("database get cidname 5551212"), "Value: Alice\n", "kept across kill -9");
    assert_eq!(again.rx("database get blacklist 666"), "Database entry not found.\n");
}

/// A Local channel runs the dialplan end to end through the binary: originate, watch it in
/// `core show channels`, hang it up.
#[test]
fn originate_a_local_channel_into_the_dialplan() {
    let dir = TestDir::new("originate");
    dir.write_starling_conf(&moddir(), "");
    dir.write("modules.conf", "[modules]\nautoload = yes\n");
    dir.write(
        "extensions.conf",
        "[default]\nexten => 100,1,Answer()\n same => n,Set(WHO=${CHANNEL})\n same => n,Verbose(1,Local dialplan ran for ${WHO} len ${LEN(${WHO})})\n same => n,Wait(60)\n",
    );
    let server = Server::start(dir);
    assert_eq!(server.rx("channel originate Local/100@default application Wait 60"), "");
    let ran = eventually(std::time::Duration::from_secs(10), || {
        server.log().contains("Local dialplan ran for Local/100@default-").then_some(())
    });
    assert!(ran.is_some(), "{}", server.log_tail());
    assert!(server.log().contains("-- Executing [100@default:1] Answer(\"Local/100@default-"), "{}", server.log_tail());
    let channels = server.rx("core show channels");
    assert!(channels.contains("2 active channels\n1 active call\n"), "{channels}");
    assert!(channels.contains("Wait(60)"), "{channels}");
    assert_eq!(server.rx("channel request hangup all"), "All channels have been hungup\n");
    let gone = eventually(std::time::Duration::from_secs(10), || {
        server.rx("core show channels count").starts_with("0 active channels").then_some(())
    });
    assert!(gone.is_some(), "{}", server.rx("core show channels"));
    let refused = server.rx("channel originate SIP/bob application Wait 1");
    assert!(refused.contains("Unable to request channel SIP/bob"), "no SIP technology without chan_sip: {refused}");
}

/// System(), TrySystem() and SHELL() are refused until app_system.conf enables them; then
/// they run through /bin/sh, and `module reload` switches them.
#[test]
fn system_and_shell_are_off_until_enabled() {
    let dir = TestDir::new("system");
    dir.write_starling_conf(&moddir(), "");
    dir.write("modules.conf", "[modules]\nautoload = yes\n");
    let marker = dir.path.join("ran");
    dir.write(
        "extensions.conf",
        &format!(
            "[default]\nexten => 100,1,TrySystem(touch {})\n same => n,Verbose(1,TRY=${{SYSTEMSTATUS}} OUT=${{SHELL(echo hi)}}.)\n same => n,System(exit 3)\n same => n,Verbose(1,SYS=${{SYSTEMSTATUS}})\n same => n,Wait(60)\n",
            marker.display()
        ),
    );
    let server = Server::start(dir);
    let _ = server.rx("channel originate Local/100@default application Wait 60");
    let refused =
        eventually(std::time::Duration::from_secs(10), || server.log().contains("TRY=FAILURE OUT=.").then_some(()));
    assert!(refused.is_some(), "{}", server.log_tail());
    assert!(server.log().contains("TrySystem is disabled: set enabled = yes in [general] of app_system.conf"));
    assert!(!marker.exists(), "nothing ran");
    let _ = server.rx("channel request hangup all");

    server.dir.write("app_system.conf", "[general]\nenabled = yes\n");
    let _ = server.rx("module reload app_system.so");
    let _ = server.rx("channel originate Local/100@default application Wait 60");
    let ran = eventually(std::time::Duration::from_secs(10), || server.log().contains("SYS=APPERROR").then_some(()));
    assert!(ran.is_some(), "{}", server.log_tail());
    // SHELL's output keeps its newline; the log indents a message's further lines with a tab, so
    // that no text can pass for a log line of its own.
    assert!(server.log().contains("TRY=SUCCESS OUT=hi\n\t."), "{}", server.log_tail());
    assert!(marker.exists(), "TrySystem ran the command");
    let _ = server.rx("channel request hangup all");
}

/// TIMEOUT(absolute) interrupts Wait() and sends the call to `T`; without `T` it hangs up.
#[test]
fn the_absolute_timeout_goes_to_t_or_hangs_up() {
    let dir = TestDir::new("abstimeout");
    dir.write_starling_conf(&moddir(), "");
    dir.write("modules.conf", "[modules]\nautoload = yes\n");
    dir.write(
        "extensions.conf",
        "[default]\nexten => 100,1,Set(TIMEOUT(absolute)=0.5)\n same => n,Verbose(1,LEFT=${TIMEOUT(absolute)})\n same => n,Wait(30)\n same => n,Verbose(1,not reached)\nexten => T,1,Verbose(1,Absolute timeout reached)\n same => n,Hangup()\n[plain]\nexten => 200,1,Set(TIMEOUT(absolute)=0.5)\n same => n,Wait(30)\n same => n,Verbose(1,not reached)\n",
    );
    let server = Server::start(dir);
    let _ = server.rx("channel originate Local/100@default application Wait 60");
    let reached = eventually(std::time::Duration::from_secs(10), || {
        server.log().contains("Absolute timeout reached").then_some(())
    });
    assert!(reached.is_some(), "{}", server.log_tail());
    assert!(server.log().contains("LEFT=0.4") || server.log().contains("LEFT=0.5"), "{}", server.log_tail());
    let _ = server.rx("channel originate Local/200@plain application Wait 60");
    let gone = eventually(std::time::Duration::from_secs(10), || {
        server.rx("core show channels count").starts_with("0 active channels").then_some(())
    });
    assert!(gone.is_some(), "{}", server.rx("core show channels"));
    assert!(!server.log().contains("not reached"), "{}", server.log_tail());
    assert!(server.log().contains("Timeout on Local/200@plain-"), "{}", server.log_tail());
}

/// `autofallthrough=no`: an extension that runs out of priorities waits `TIMEOUT(response)`
/// for the caller and then goes to `t`; with the default, the call ends at once, and a
/// `DIALSTATUS` of BUSY is indicated first.
#[test]
fn running_out_of_priorities_follows_autofallthrough() {
    let dir = TestDir::new("fallthrough");
    dir.write_starling_conf(&moddir(), "");
    dir.write("modules.conf", "[modules]\nautoload = yes\n");
    dir.write(
        "extensions.conf",
        "[general]\nautofallthrough = no\n[default]\nexten => 100,1,Set(TIMEOUT(response)=0.3)\n same => n,Verbose(1,Out of priorities)\nexten => t,1,Verbose(1,Response timeout reached)\n",
    );
    let server = Server::start(dir);
    let _ = server.rx("channel originate Local/100@default application Wait 60");
    let reached = eventually(std::time::Duration::from_secs(10), || {
        server.log().contains("Response timeout reached").then_some(())
    });
    assert!(reached.is_some(), "{}", server.log_tail());
    let log = server.log();
    assert!(log.contains("Timeout on Local/100@default-") && !log.contains("Auto fallthrough"), "{log}");

    server.dir.write("extensions.conf", "[default]\nexten => 200,1,Set(DIALSTATUS=BUSY)\n");
    assert_eq!(server.rx("dialplan reload"), "Dialplan reloaded.\n");
    let _ = server.rx("channel originate Local/200@default application Wait 60");
    let fell = eventually(std::time::Duration::from_secs(10), || {
        server.log().contains("Auto fallthrough, channel 'Local/200@default-").then_some(())
    });
    assert!(fell.is_some(), "{}", server.log_tail());
    assert!(server.log().contains("status is 'BUSY'"), "{}", server.log_tail());
    let _ = server.rx("channel request hangup all");
}

/// A Starling with every module (autoload) and `extensions` as extensions.conf.
fn full_server(name: &str, extensions: &str) -> Server {
    let dir = TestDir::new(name);
    dir.write_starling_conf(&moddir(), "");
    dir.write("modules.conf", "[modules]\nautoload = yes\n");
    dir.write("extensions.conf", extensions);
    Server::start(dir)
}

/// Originates `Local/<target>` (its other half waits in Wait()) and waits, 10 s at most, until
/// the log contains `marker`; returns the log.
fn run_local(server: &Server, target: &str, marker: &str) -> String {
    let _ = server.rx(&format!("channel originate Local/{target} application Wait 30"));
    let log = eventually(std::time::Duration::from_secs(10), || {
        let log = server.log();
        log.contains(marker).then_some(log)
    });
    log.unwrap_or_else(|| panic!("no {marker:?} in the log\n{}", server.log_tail()))
}

/// The log without the `Executing [...]` lines (whose arguments would match anything).
fn output(log: &str) -> String {
    log.lines().filter(|l| !l.contains("-- Executing [")).map(|l| format!("{l}\n")).collect()
}

/// The Gosub family end to end: GosubIf's branches with arguments, `${ARGn}`/`${ARGC}`,
/// `LOCAL()` (the caller's value back after Return, the subroutine's own gone), `Return`'s
/// `GOSUB_RETVAL`; MSet; ExecIf both ways; GotoIfTime both ways; Goto to a label of another
/// context; While with ContinueWhile.
#[test]
fn gosub_family_local_mset_execif_and_while() {
    let server = full_server(
        "dpgosub",
        "[default]
exten => 100,1,MSet(A=1,B=two,X=outer)
 same => n,Verbose(1,MSET=${A}/${B}/${X})
 same => n,GosubIf($[${A} = 1]?sub,s,1(p,q):sub,s,1(wrong))
 same => n,Verbose(1,BACK X=${X} RET=${GOSUB_RETVAL} ARG1=${ARG1} ARGC=${ARGC} Y=${Y}.)
 same => n,GosubIf($[${A} = 2]?sub,s,1(wrong):sub,s,1(false-branch))
 same => n,Verbose(1,FALSE RET=${GOSUB_RETVAL})
 same => n,Set(GOSUB_RETVAL=none)
 same => n,GosubIf(0?sub,s,1(wrong))
 same => n,Verbose(1,NO BRANCH RET=${GOSUB_RETVAL})
 same => n,ExecIf($[${B} = two]?Verbose(1,EXECIF true):Verbose(1,EXECIF false))
 same => n,ExecIf(0?Verbose(1,EXECIF without a false branch))
 same => n,GotoIfTime(*,*,*,*?intime:outtime)
 same => n(outtime),Verbose(1,TIME out of range)
 same => n(intime),Verbose(1,TIME in range)
 same => n,GotoIfTime(*,*,31,feb?timewrong:timefalse)
 same => n(timewrong),Verbose(1,TIME wrong branch)
 same => n(timefalse),Verbose(1,TIME false branch)
 same => n,Goto(loops,s,start)
[sub]
exten => s,1,Set(LOCAL(X)=inner-${ARG1})
 same => n,Set(LOCAL(Y)=local)
 same => n,Verbose(1,IN X=${X} ARGS=${ARG1}+${ARG2} ARGC=${ARGC} LOCAL=${LOCAL(X)} NOTLOCAL=${LOCAL(A)}.)
 same => n,Return(${ARG1}${ARG2})
[loops]
exten => s,1,Verbose(1,not at the label)
 same => n(start),Set(I=0)
 same => n,While($[${I} < 5])
 same => n,Set(I=$[${I} + 1])
 same => n,ExecIf($[${I} = 2]?ContinueWhile())
 same => n,Set(S=${S}${I})
 same => n,EndWhile()
 same => n,Verbose(1,WHILE=${S} I=${I})
",
    );
    let log = run_local(&server, "100@default", "WHILE=");
    for expected in [
        "MSET=1/two/outer\n",
        "IN X=inner-p ARGS=p+q ARGC=2 LOCAL=inner-p NOTLOCAL=.\n",
        "BACK X=outer RET=pq ARG1= ARGC= Y=.\n",
        "IN X=inner-false-branch ARGS=false-branch+ ARGC=1 LOCAL=inner-false-branch NOTLOCAL=.\n",
        "FALSE RET=false-branch\n",
        "NO BRANCH RET=none\n",
        "EXECIF true\n",
        "TIME in range\n",
        "TIME false branch\n",
        "WHILE=1345 I=5\n",
    ] {
        assert!(log.contains(expected), "{expected:?} missing\n{log}");
    }
    for absent in ["wrong", "EXECIF false", "EXECIF without", "out of range", "not at the label"] {
        assert!(!output(&log).contains(absent), "{absent:?} ran\n{log}");
    }
    assert!(!log.contains("no writable function"), "LOCAL() can be set: {log}");
}

/// `_VAR` reaches the channel dialled (once), `__VAR` every generation after it; `[globals]`
/// and `GLOBAL()` are seen by every channel, and kept by `dialplan reload` unless
/// `clearglobalvars = yes`.
#[test]
fn variables_inherit_through_dial_and_globals_are_shared() {
    let text = |general: &str, last: &str| {
        format!(
            "{general}[globals]
G1=from-conf
[default]
exten => 100,1,Set(GLOBAL(G2)=set-by-100)
 same => n,Set(_ONCE=once)
 same => n,Set(__ALWAYS=always)
 same => n,Set(PLAIN=plain)
 same => n,Verbose(1,TOP G1=${{G1}}/${{GLOBAL(G1)}} G2=${{G2}} ONCE=${{ONCE}} ALWAYS=${{ALWAYS}})
 same => n,Dial(Local/101@default,5)
exten => 101,1,Verbose(1,CHILD ONCE=${{ONCE}} ALWAYS=${{ALWAYS}} PLAIN=${{PLAIN}}. G2=${{GLOBAL(G2)}})
 same => n,Dial(Local/102@default,5)
exten => 102,1,Verbose(1,GRANDCHILD ONCE=${{ONCE}}. ALWAYS=${{ALWAYS}} PLAIN=${{PLAIN}}. G2=${{G2}})
exten => 103,1,Verbose(1,{last} G1=${{G1}} G2=${{G2}}.)
"
        )
    };
    let server = full_server("dpinherit", &text("", "RELOADED"));
    let log = run_local(&server, "100@default", "GRANDCHILD");
    for expected in [
        "TOP G1=from-conf/from-conf G2=set-by-100 ONCE=once ALWAYS=always\n",
        "CHILD ONCE=once ALWAYS=always PLAIN=. G2=set-by-100\n",
        "GRANDCHILD ONCE=. ALWAYS=always PLAIN=. G2=set-by-100\n",
    ] {
        assert!(log.contains(expected), "{expected:?} missing\n{log}");
    }
    assert_eq!(server.rx("dialplan reload"), "Dialplan reloaded.\n");
    let log = run_local(&server, "103@default", "RELOADED");
    assert!(log.contains("RELOADED G1=from-conf G2=set-by-100.\n"), "{log}");
    // As pbx_config, the clearglobalvars read at one load decides at the next reload.
    server.dir.write("extensions.conf", &text("[general]\nclearglobalvars = yes\n", "CLEARED"));
    assert_eq!(server.rx("dialplan reload"), "Dialplan reloaded.\n");
    let log = run_local(&server, "103@default", "CLEARED");
    assert!(log.contains("CLEARED G1=from-conf G2=set-by-100.\n"), "{log}");
    assert_eq!(server.rx("dialplan reload"), "Dialplan reloaded.\n");
    let log = run_local(&server, "103@default", "CLEARED");
    assert!(log.contains("CLEARED G1=from-conf G2=.\n"), "{log}");
}

/// `h` runs after the call with `HANGUPCAUSE` (Hangup's cause by name, Macro's refusal, `i`'s
/// Hangup(21)); `i` gets `INVALID_EXTEN`; Macro is refused with a hint to use Gosub; Log writes
/// at its level as Asterisk's does, and Verbose only up to the console's verbosity.
#[test]
fn h_hangupcause_i_macro_log_and_verbose() {
    let server = full_server(
        "dphangup",
        "[busy]
exten => 100,1,Log(WARNING,careful now)
 same => n,Log(NOTICE,just so you know)
 same => n,Log(BOGUS,never logged)
 same => n,Verbose(4,too quiet to show)
 same => n,Verbose(3,loud enough)
 same => n,Hangup(USER_BUSY)
 same => n,Verbose(1,not reached after Hangup)
exten => h,1,Verbose(1,H busy HANGUPCAUSE=${HANGUPCAUSE})
[macro]
exten => 200,1,Macro(oldstyle,arg)
 same => n,Verbose(1,not reached after Macro)
exten => h,1,Verbose(1,H macro HANGUPCAUSE=${HANGUPCAUSE})
[invalid]
exten => 300,1,Goto(555,1)
exten => i,1,Verbose(1,I ran for ${INVALID_EXTEN})
 same => n,Hangup(21)
exten => h,1,Verbose(1,H invalid HANGUPCAUSE=${HANGUPCAUSE})
",
    );
    let log = run_local(&server, "100@busy", "H busy");
    assert!(log.contains("H busy HANGUPCAUSE=17\n"), "{log}");
    let line = |text: &str| log.lines().find(|l| l.contains(text)).unwrap_or_else(|| panic!("no {text:?}\n{log}"));
    assert!(line("Ext. 100:1 @ busy: careful now").contains("] WARNING["), "{log}");
    assert!(line("Ext. 100:2 @ busy: just so you know").contains("] NOTICE["), "{log}");
    assert!(line("Unknown log level: 'BOGUS'").contains("] ERROR["), "{log}");
    assert!(log.contains("    -- loud enough\n"), "{log}");
    assert!(!log.contains("Auto fallthrough"), "the end of h is not a fall-through: {log}");
    for absent in ["never logged", "too quiet to show", "not reached after Hangup"] {
        assert!(!output(&log).contains(absent), "{absent:?}\n{log}");
    }

    let log = run_local(&server, "200@macro", "H macro");
    assert!(log.contains("Macro(oldstyle,arg) is not supported") && log.contains("use Gosub() instead"), "{log}");
    assert!(log.contains("H macro HANGUPCAUSE=16\n") && !output(&log).contains("not reached after Macro"), "{log}");

    let log = run_local(&server, "300@invalid", "H invalid");
    assert!(log.contains("I ran for 555\n") && log.contains("H invalid HANGUPCAUSE=21\n"), "{log}");
    // As Asterisk's local_call: a Local channel to an extension that does not exist is refused.
    let log = run_local(&server, "555@invalid", "while calling Local channel");
    assert!(log.contains("No such extension/context 555@invalid while calling Local channel"), "{log}");
}

/// The statuses of the sound applications on a Local channel (no audio needed): `skip`/`s`
/// leave an unanswered line alone (PLAYBACKSTATUS=SUCCESS, BACKGROUNDSTATUS=SUCCESS,
/// READSTATUS=SKIPPED, RECORD_STATUS=SKIP), `noanswer`/`n` play or read without answering,
/// a missing file is FAILED, Record stops at its maximum (TIMEOUT, RECORDED_FILE, a WAV in a
/// folder it makes), a name with `..` is refused (FAILED, ERROR) and a name without a format is
/// an ERROR that ends the call.
#[test]
fn sound_applications_set_their_status_variables() {
    let dir = TestDir::new("dpsounds");
    let rec = dir.path.join("recordings/new");
    dir.write_starling_conf(&moddir(), "");
    dir.write("modules.conf", "[modules]\nautoload = yes\n");
    let up = "UP=${IF($[${CHANNEL(state)} = Up]?yes:no)}";
    dir.write(
        "extensions.conf",
        &format!(
            "[globals]
REC={rec}
[default]
exten => 100,1,Playback(hello-world,skip)
 same => n,Verbose(1,SKIP=${{PLAYBACKSTATUS}} {up})
 same => n,Background(hello-world,s)
 same => n,Read(PIN,beep,4,s)
 same => n,Record(${{REC}}/skipped.wav,,,s)
 same => n,Verbose(1,SKIPPED BG=${{BACKGROUNDSTATUS}} READ=${{READSTATUS}} PIN=${{PIN}}. REC=${{RECORD_STATUS}} {up})
 same => n,Playback(no-such-file,noanswer)
 same => n,Verbose(1,NOANSWER=${{PLAYBACKSTATUS}} {up})
 same => n,Read(PIN,,2,n,1,0.2)
 same => n,Verbose(1,READ NOANSWER=${{READSTATUS}} {up})
 same => n,Playback(beep&no-such-file)
 same => n,Verbose(1,PARTLY=${{PLAYBACKSTATUS}} {up})
 same => n,Playback(no-such-file,skip)
 same => n,Verbose(1,SKIP WHEN UP=${{PLAYBACKSTATUS}})
 same => n,Playback(beep)
 same => n,Verbose(1,PLAYED=${{PLAYBACKSTATUS}})
 same => n,Background(no-such-file)
 same => n,Verbose(1,BG MISSING=${{BACKGROUNDSTATUS}})
 same => n,Background(beep)
 same => n,Verbose(1,BG PLAYED=${{BACKGROUNDSTATUS}})
 same => n,Record(${{REC}}/take.wav,0,1,q)
 same => n,Verbose(1,REC=${{RECORD_STATUS}} FILE=${{RECORDED_FILE}})
 same => n,Record(${{REC}}/take.xyz,,,q)
 same => n,Verbose(1,BAD FORMAT=${{RECORD_STATUS}})
 same => n,Set(CLIMB=../en/beep)
 same => n,Playback(${{CLIMB}})
 same => n,Verbose(1,CLIMB PLAY=${{PLAYBACKSTATUS}})
 same => n,Record(${{REC}}/../escape.wav,0,1,q)
 same => n,Verbose(1,CLIMB REC=${{RECORD_STATUS}})
 same => n,Record(${{REC}}/noformat)
 same => n,Verbose(1,not reached after a nameless Record)
exten => h,1,Verbose(1,H REC=${{RECORD_STATUS}})
",
            rec = rec.display()
        ),
    );
    let server = Server::start(dir);
    let log = run_local(&server, "100@default", "H REC=");
    for expected in [
        "SKIP=SUCCESS UP=no\n".to_owned(),
        "SKIPPED BG=SUCCESS READ=SKIPPED PIN=. REC=SKIP UP=no\n".into(),
        "NOANSWER=FAILED UP=no\n".into(),
        "READ NOANSWER=TIMEOUT UP=no\n".into(),
        "PARTLY=FAILED UP=yes\n".into(),
        "SKIP WHEN UP=FAILED\n".into(),
        "PLAYED=SUCCESS\n".into(),
        "BG MISSING=FAILED\n".into(),
        "BG PLAYED=SUCCESS\n".into(),
        format!("REC=TIMEOUT FILE={}/take\n", rec.display()),
        "BAD FORMAT=ERROR\n".into(),
        "CLIMB PLAY=FAILED\n".into(),
        "CLIMB REC=ERROR\n".into(),
        "H REC=ERROR\n".into(),
    ] {
        assert!(log.contains(&expected), "{expected:?} missing\n{log}");
    }
    assert!(!output(&log).contains("not reached after a nameless Record"), "{log}");
    assert!(!log.contains("(file 'hello-world' not found)"), "{log}");
    let wav = std::fs::read(rec.join("take.wav")).unwrap_or_default();
    assert!(wav.starts_with(b"RIFF") && wav.len() >= 44, "a WAV was written: {} bytes", wav.len());
    assert!(!rec.join("skipped.wav").exists(), "a skipped Record writes nothing");
    assert!(!rec.join("../escape.wav").exists(), "a name with '..' is refused");
    assert!(log.contains("Refusing to play '../en/beep': a file name may not contain '..'"), "{log}");
}

/// The functions through the real PBX: every one the issue lists that needs no call audio,
/// with `${VAR:offset:length}` and `$[...]` operators in the same lines.
#[test]
fn dialplan_functions_end_to_end() {
    let server = full_server(
        "dpfuncs",
        "[default]
exten => 100,1,Set(LIST=a-b-c-d)
 same => n,Set(NUM=18005551212)
 same => n,Set(CALLERID(all)=\"Ann Smith\" <5551000>)
 same => n,Set(HASH(h,k1)=v1)
 same => n,Set(HASH(h,k2)=v2)
 same => n,Verbose(1,STRINGS LEN=${LEN(${LIST})} CUT=${CUT(LIST,-,2-3)} FQ=${FIELDQTY(LIST,-)} RE=${REGEX(\"^a-\" ${LIST})}/${REGEX(\"^b\" ${LIST})} DAY=${STRFTIME(129600,,%Y-%m-%d)} HASH=${HASH(h,k2)}/${HASH(h)}/${HASHKEYS(h)})
 same => n,Verbose(1,LOGIC IF=${IF($[1 > 2]?y:n)} ISNULL=${ISNULL(${NOPE})}/${ISNULL(x)} EXISTS=${EXISTS(${LIST})}/${EXISTS(${NOPE})})
 same => n,Verbose(1,PARTY CID=${CALLERID(num)}/${CALLERID(name)} TECH=${CHANNEL(channeltype)} CTX=${CHANNEL(context)})
 same => n,Verbose(1,SUBSTR ${NUM:-7}/${NUM:1:3}/${NUM:-4:2}/${NUM:0:-4}/${NUM:-20:2}/${NUM:20}.)
 same => n,Verbose(1,EXPR $[3 * (2 + 1)]/$[10 % 4]/$[7 / 2]/$[abc = abc]/$[abc != abc]/$[10 > 9]/$[5 <= 4]/$[9 >= 9]/$[0 | b]/$[a & 0]/$[!0]/$[1 ? yes :: no]/$[12345 : 1..]/$[x12 =~ \"[0-9]+\"]/$[-3 + 1])
 same => n,Set(R=${RAND(5,7)})
 same => n,Verbose(1,RAND=${IF($[${R} >= 5 & ${R} <= 7]?inside:outside)})
",
    );
    let log = run_local(&server, "100@default", "RAND=");
    for expected in [
        "STRINGS LEN=7 CUT=b-c FQ=4 RE=1/0 DAY=1970-01-02 HASH=v2/v1,v2/k1,k2\n",
        "LOGIC IF=n ISNULL=1/0 EXISTS=1/0\n",
        "PARTY CID=5551000/Ann Smith TECH=Local CTX=default\n",
        "SUBSTR 5551212/800/12/1800555/18/.\n",
        "EXPR 9/2/3.5/1/0/1/0/1/b/0/1/yes/3/2/-2\n",
        "RAND=inside\n",
    ] {
        assert!(log.contains(expected), "{expected:?} missing\n{log}");
    }
}

/// Arguments as Asterisk splits them (issue 22): `\,` is a comma, not a separator; quotes group;
/// `${}` and `$[]` inside an argument do not split it; an application's last field is the rest
/// as written.
#[test]
fn escaped_and_quoted_arguments_split_as_asterisk() {
    let server = full_server(
        "dpescapes",
        "[default]
exten => 100,1,Set(WORDS=alpha,beta,gamma,delta)
 same => n,Set(THIRD=${CUT(WORDS,\\,,3)})
 same => n,Set(COUNT=${FIELDQTY(WORDS,\\,)})
 same => n,Set(MIDDLE=${CUT(WORDS,\",\",2-3)})
 same => n,Set(PICK=${IF($[${COUNT} > 3]?a\\:b:c)})
 same => n,Set(HASH(h,k\\,1)=v)
 same => n,Verbose(1,ESCAPES ${THIRD}/${COUNT}/${MIDDLE}/${PICK}/${HASH(h,k\\,1)}/${CUT(WORDS,\\,,${COUNT})})
",
    );
    let log = run_local(&server, "100@default", "ESCAPES");
    let expected = "ESCAPES gamma/4/beta,gamma/a:b/v/delta\n";
    assert!(output(&log).contains(expected), "{expected:?} missing\n{log}");
    assert!(!log.contains("CUT: bad field"), "{log}");
}

/// DB()/DB_EXISTS()/DB_DELETE() from the dialplan write the same astdb the CLI reads.
#[test]
fn db_functions_share_the_astdb_with_the_cli() {
    let server = full_server(
        "dpdb",
        "[default]
exten => 100,1,Set(DB(audit/kept)=yes)
 same => n,Set(DB(audit/gone)=soon)
 same => n,Verbose(1,DB=${DB(audit/gone)} RESULT=${DB_RESULT} EXISTS=${DB_EXISTS(audit/gone)})
 same => n,Verbose(1,DELETED=${DB_DELETE(audit/gone)} THEN=${DB_EXISTS(audit/gone)} MISSING=${DB(audit/gone)}.)
 same => n,Verbose(1,FROM CLI=${DB(cli/key)})
",
    );
    assert_eq!(server.rx("database put cli key typed"), "Updated database successfully\n");
    let log = run_local(&server, "100@default", "FROM CLI=");
    for expected in ["DB=soon RESULT=soon EXISTS=1\n", "DELETED=soon THEN=0 MISSING=.\n", "FROM CLI=typed\n"] {
        assert!(log.contains(expected), "{expected:?} missing\n{log}");
    }
    assert_eq!(server.rx("database get audit kept"), "Value: yes\n");
    assert_eq!(server.rx("database get audit gone"), "Database entry not found.\n");
}
