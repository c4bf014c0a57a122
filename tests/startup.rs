use std::time::Duration;

use crate::util::*;

fn dir_with_conf(name: &str) -> TestDir {
    let dir = TestDir::new(name);
    dir.write_starling_conf(&moddir(), "");
    dir.write("modules.conf", "[modules]\nautoload = yes\n");
    dir.write("cli_aliases.conf", "[general]\ntemplate = friendly\n[friendly]\nhelp => core show help\n");
    dir
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn version_flag_prints_the_version() {
    let out = run_starling(&["-V"], Duration::from_secs(10));
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("Starling {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn starts_answers_and_stops_now_with_exit_code_0() {
    let mut server = Server::start(dir_with_conf("stopnow"));
    assert_eq!(server.rx("core show version"), format!("Starling {}\n", env!("CARGO_PKG_VERSION")));
    let channels = server.rx("core show channels");
    assert!(channels.ends_with("0 active channels\n0 active calls\n0 calls processed\n"), "{channels}");
    let modules = server.rx("module show");
    assert!(modules.starts_with("Module "), "{modules}");
    assert!(modules.contains("res_clialiases.so"), "{modules}");
    assert!(!modules.contains("test_loader"), "test_* modules are not autoloaded: {modules}");
    assert!(modules.contains("func_strings.so") && modules.contains("func_logic.so"), "{modules}");
    assert!(!modules.contains("pbx_config"), "no extensions.conf: pbx_config declines: {modules}");
    assert!(modules.ends_with("22 modules loaded\n"), "{modules}");
    let pid_file = server.dir.path.join("run/starling.pid");
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap().trim(), server.pid().to_string());

    server.rx("core stop now");
    let status = server.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", server.log_tail());
    assert!(!pid_file.exists(), "the pid file is removed on a clean stop");
    assert!(!server.dir.path.join("run/starling.ctl").exists(), "the control socket is removed on a clean stop");
    assert!(server.log().contains("Starling Ready."), "{}", server.log_tail());
}

#[test]
fn a_bad_line_in_starling_conf_exits_1_naming_file_and_line() {
    let dir = dir_with_conf("badline");
    let conf = std::fs::read_to_string(dir.config()).unwrap();
    dir.write("starling.conf", &format!("{conf}maxcalls = lots\n"));
    let line = conf.lines().count() + 1;
    let out = run_starling(&["-C", dir.config().to_str().unwrap(), "-f"], Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(&format!("starling.conf:{line}: maxcalls 'lots'")), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_bad_line_in_a_module_config_exits_1_naming_file_and_line() {
    let dir = dir_with_conf("badmodconf");
    dir.write("cli_aliases.conf", "[general]\ntemplate = friendly\n[friendly]\nreload\n");
    let out = run_starling(&["-C", dir.config().to_str().unwrap(), "-f"], Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("cli_aliases.conf:4: expected 'key = value', found 'reload'"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_missing_config_file_exits_1_naming_it() {
    let out = run_starling(&["-C", "/nonexistent/starling.conf", "-f"], Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("/nonexistent/starling.conf"), "{}", stderr(&out));
}

#[test]
fn a_port_in_use_exits_2_naming_it() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = dir_with_conf("portinuse");
    dir.write("modules.conf", "[modules]\nautoload = no\nload => test_loader.so\n");
    dir.write("test_loader.conf", &format!("[general]\nbindport = {port}\n"));
    let out = run_starling(&["-C", dir.config().to_str().unwrap(), "-f"], Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_directory_that_cannot_be_made_exits_2_naming_it() {
    let dir = dir_with_conf("baddir");
    std::fs::write(dir.path.join("afile"), "").unwrap();
    let conf = std::fs::read_to_string(dir.config()).unwrap().replace("rundir => ../run", "rundir => ../afile/run");
    dir.write("starling.conf", &conf);
    let out = run_starling(&["-C", dir.config().to_str().unwrap(), "-f"], Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot open rundir"), "{}", stderr(&out));
}

#[test]
fn a_second_instance_on_the_same_rundir_refuses_to_start() {
    let server = Server::start(dir_with_conf("twice"));
    let out = run_starling(&["-C", server.dir.config().to_str().unwrap(), "-f"], Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("already running"), "{err}");
    assert!(err.contains(&format!("pid {}", server.pid())), "{err}");
    assert_eq!(
        server.rx("core show version").trim(),
        format!("Starling {}", env!("CARGO_PKG_VERSION")),
        "the first one still runs"
    );
}

#[test]
fn sigterm_and_core_stop_gracefully_wait_for_calls_to_end() {
    for how in ["SIGTERM", "core stop gracefully"] {
        let dir = dir_with_conf("graceful");
        dir.write("modules.conf", "[modules]\nautoload = no\nload => test_loader.so\n");
        let mut server = Server::start(dir);
        assert!(server.rx("test loader hold").starts_with("Holding Test/hold-00000001"));
        if how == "SIGTERM" {
            server.signal(SIGTERM);
        } else {
            server.rx("core stop gracefully");
        }
        let waiting =
            eventually(Duration::from_secs(10), || server.log().contains("Waiting for 1 channel(s)").then_some(()));
        assert!(waiting.is_some(), "{how}: no wait announced\n{}", server.log_tail());
        assert!(server.running(), "{how}: stopped while a call was up");
        assert!(server.rx("core show channels").contains("1 active call\n"));
        server.rx("test loader release");
        assert_eq!(server.wait_exit(Duration::from_secs(10)).code(), Some(0), "{how}");
    }
}

#[test]
fn core_stop_now_does_not_wait_for_calls() {
    let dir = dir_with_conf("stopnowcalls");
    dir.write("modules.conf", "[modules]\nautoload = no\nload => test_loader.so\n");
    let mut server = Server::start(dir);
    server.rx("test loader hold");
    server.rx("core stop now");
    assert_eq!(server.wait_exit(Duration::from_secs(10)).code(), Some(0));
}

#[test]
fn core_abort_shutdown_cancels_a_graceful_stop() {
    let dir = dir_with_conf("abort");
    dir.write("modules.conf", "[modules]\nautoload = no\nload => test_loader.so\n");
    let mut server = Server::start(dir);
    server.rx("test loader hold");
    server.rx("core stop gracefully");
    server.rx("core abort shutdown");
    server.rx("test loader release");
    assert_eq!(server.rx("core abort shutdown"), "No shutdown is pending.\n");
    assert!(server.running());
    assert!(server.rx("core show version").starts_with("Starling"));
}

#[test]
fn sighup_reloads_like_core_reload() {
    let dir = dir_with_conf("sighup");
    dir.write("modules.conf", "[modules]\nautoload = no\nload => test_loader.so\n");
    let server = Server::start(dir);
    assert!(server.rx("test loader show").contains("reloads=0"));
    server.signal(SIGHUP);
    let reloaded =
        eventually(Duration::from_secs(10), || server.rx("test loader show").contains("reloads=1").then_some(()));
    assert!(reloaded.is_some(), "{}", server.log_tail());
    server.rx("core reload");
    assert!(server.rx("test loader show").contains("reloads=2"));
}

#[test]
fn without_f_it_runs_in_the_background_and_reports_start_up_errors() {
    let dir = dir_with_conf("daemon");
    let config = dir.config();
    let out = run_starling(&["-C", config.to_str().unwrap()], Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let pid_file = dir.path.join("run/starling.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    // The daemon is not our child: make sure it goes whatever happens below.
    struct KillOnDrop(i32);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            kill_pid(self.0, SIGKILL);
        }
    }
    let _guard = KillOnDrop(pid);
    let rx = |cmd: &str| run_starling(&["-C", config.to_str().unwrap(), "-rx", cmd], Duration::from_secs(10));
    assert!(String::from_utf8_lossy(&rx("core show version").stdout).starts_with("Starling "));
    rx("core stop now");
    let gone = eventually(Duration::from_secs(10), || (!pid_file.exists()).then_some(()));
    assert!(gone.is_some(), "the daemon did not stop");

    // A module's config error still reaches the shell as exit code 1.
    dir.write("cli_aliases.conf", "[general]\ntemplate = missing\n");
    let out = run_starling(&["-C", config.to_str().unwrap()], Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("cli_aliases.conf:2: template 'missing'"), "{}", stderr(&out));
}

#[test]
fn logs_go_to_the_messages_file_in_logdir() {
    let dir = dir_with_conf("messages");
    dir.write("logger.conf", "[logfiles]\nmessages => notice,warning,error,verbose(3)\nfull => *\n");
    let server = Server::start(dir);
    let messages = server.dir.path.join("log/messages");
    let ready = eventually(Duration::from_secs(5), || {
        std::fs::read_to_string(&messages).ok().filter(|m| m.contains("Starling Ready.")).map(|_| ())
    });
    assert!(ready.is_some(), "{:?}", std::fs::read_to_string(&messages));
    assert!(server.dir.path.join("log/full").exists());
}

/// The open-files soft limit: `maxfiles` sets it (as Asterisk's); without it, it is raised to
/// the hard limit (calls hold two sockets each).
#[test]
fn maxfiles_sets_the_open_files_limit() {
    let soft_limit = |server: &Server| {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid())).unwrap();
        let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap().to_owned();
        let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
        (numbers[0].to_owned(), numbers[1].to_owned())
    };
    let dir = TestDir::new("maxfiles");
    dir.write_starling_conf(&moddir(), "maxfiles = 2048");
    dir.write("modules.conf", "[modules]\nautoload = no\n");
    let server = Server::start(dir);
    let (soft, hard) = soft_limit(&server);
    if hard == "unlimited" || hard.parse::<u64>().unwrap() >= 2048 {
        assert_eq!(soft, "2048", "hard {hard}");
    }
    let dir = TestDir::new("maxfilesdefault");
    dir.write_starling_conf(&moddir(), "");
    dir.write("modules.conf", "[modules]\nautoload = no\n");
    let server = Server::start(dir);
    let (soft, hard) = soft_limit(&server);
    assert_eq!(soft, hard, "raised to the hard limit");
}
