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
    assert!(out.contains("2. Verbose(2,hi ${EXTEN}) [greet]"), "{out}");
    assert!(out.contains("  Include =>        'other'"), "{out}");
    assert!(out.ends_with("-= 2 extensions (3 priorities) in 1 context. =-\n"), "{out}");
    assert!(server.rx("dialplan show").ends_with("-= 3 extensions (4 priorities) in 2 contexts. =-\n"));
    assert!(server.rx("dialplan show nosuch").contains("There is no existence of 'nosuch' context"));
    assert!(server.rx("core show applications").contains("GotoIf: Conditional goto."));
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
    assert!(server.log().contains("TRY=SUCCESS OUT=hi\n."), "{}", server.log_tail());
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
