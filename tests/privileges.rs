//! Issue 21, item 5: least privilege. Started as root with `runuser`/`rungroup`, Starling binds
//! and loads as root and then runs as that user, with no capability left; the kernel relay it
//! loaded as root keeps relaying; the control socket has the mode and owner starling.conf
//! gives it; what it writes after the drop (astdb, CDRs) is written. The tests run as root, as
//! CI does (a test that cannot be root fails).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::*;

/// The ids of a `/proc/<pid>/status` line (`Uid:`, `Gid:`: real, effective, saved, filesystem).
fn status_ids(pid: u32, key: &str) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("no {key} in {status}"));
    line[key.len()..].split_whitespace().map(|n| n.parse().unwrap()).collect()
}

/// A `/proc/<pid>/status` capability set (`CapEff:`, `CapPrm:`), as a mask.
fn status_caps(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("no {key} in {status}"));
    u64::from_str_radix(line[key.len()..].trim(), 16).unwrap()
}

/// The id of the kernel relay's map (`legs`: 12-byte keys, 224-byte values) among the file
/// descriptors of process `pid`, as its fdinfo says; other Starlings' maps are not looked at.
fn relay_map_id(pid: u32) -> Option<u32> {
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).ok()?.flatten() {
        let Ok(info) = std::fs::read_to_string(entry.path()) else { continue };
        let field = |name: &str| info.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()));
        if field("key_size:").as_deref() == Some("12") && field("value_size:").as_deref() == Some("224") {
            return field("map_id:").and_then(|id| id.parse().ok());
        }
    }
    None
}

/// The number of entries in map `id` (Debian's bpftool, its JSON read by python3).
fn map_entries(id: u32) -> usize {
    let out = Command::new("bpftool")
        .args(["-j", "map", "dump", "id", &id.to_string()])
        .output()
        .expect("bpftool (Debian's package bpftool)");
    assert!(out.status.success(), "bpftool map dump: {}", String::from_utf8_lossy(&out.stderr));
    let mut python = Command::new("python3")
        .args(["-c", "import json, sys; print(len(json.load(sys.stdin)))"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    std::io::Write::write_all(&mut python.stdin.take().unwrap(), &out.stdout).unwrap();
    let counted = python.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&counted.stdout);
    text.trim().parse().unwrap_or_else(|_| panic!("bpftool's JSON: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Lets the user the server drops to into the test's folders (whatever the umask gave them).
fn open_to_all(dir: &TestDir) {
    for path in [dir.path.clone(), dir.etc()] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for entry in std::fs::read_dir(dir.etc()).unwrap().flatten() {
        std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
}

fn uid_of(name: &str) -> u32 {
    let out = Command::new("id").args(["-u", name]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn gid_of_group(name: &str) -> u32 {
    let out = Command::new("getent").args(["group", name]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split(':').nth(2).unwrap().parse().unwrap()
}

/// Whether this machine is not root and opted out of the tests that need it (else not being
/// root fails the test, as CI runs them as root; see `starling_testing`).
fn root_opted_out() -> bool {
    // SAFETY: a getter.
    let euid = unsafe { geteuid() };
    euid != 0 && starling_testing::missing("root", &format!("these tests start Starling as root; euid {euid}"))
}

extern "C" {
    fn geteuid() -> u32;
}

/// A Starling started as root with `runuser = nobody`, `rungroup = nogroup` and `files` in
/// `[files]`: alice and bob are friends (host=dynamic), alice's `bob` is Dial(SIP/bob); the
/// CDRs go to cdr-csv. Returns it and its SIP port.
/// (Its callers check `root_opted_out` first.)
fn pbx_as_nobody(name: &str, files: &str) -> (Server, u16) {
    let port = free_udp_port();
    let dir = TestDir::new(name);
    dir.write_starling_conf(&moddir(), &format!("runuser = nobody\nrungroup = nogroup\n[files]\n{files}"));
    dir.write(
        "modules.conf",
        "[modules]\nautoload = no\nload => pbx_config.so\nload => app_dial.so\nload => cdr_csv.so\nload => chan_sip.so\n",
    );
    dir.write("extensions.conf", "[from-alice]\nexten => bob,1,Dial(SIP/bob,20)\n same => n,Hangup()\n[from-bob]\n");
    dir.write(
        "sip.conf",
        &format!(
            "[general]\nbindaddr=127.0.0.1\nbindport={port}\n\
             [alice]\ntype=friend\nhost=dynamic\nsecret=pw\ncontext=from-alice\ndisallow=all\nallow=ulaw\n\
             [bob]\ntype=friend\nhost=dynamic\nsecret=bobpw\ncontext=from-bob\ndisallow=all\nallow=ulaw\n"
        ),
    );
    open_to_all(&dir);
    (Server::start(dir), port)
}

/// bob (baresip, auto-answer, 880 Hz) registers (his binding written to the astdb), alice
/// (440 Hz) calls him; once they are bridged natively `during` runs; each must hear the other.
fn alice_calls_bob(server: &Server, port: u16, name: &str, during: impl FnOnce()) {
    let bob = Baresip::spawn(
        &format!("{name}-bob"),
        &format!("<sip:bob@127.0.0.1:{port}>;auth_pass=bobpw;answermode=auto;regint=60"),
        "g711.so",
        8000,
        880,
        &[],
        20,
    );
    let registered =
        eventually(Duration::from_secs(10), || server.rx("database show").contains("/SIP/Registry/bob").then_some(()));
    assert!(registered.is_some(), "bob's binding in the astdb: {}\n{}", server.rx("database show"), server.log_tail());
    let alice = Baresip::spawn(
        &format!("{name}-alice"),
        &format!("<sip:alice@127.0.0.1:{port}>;auth_pass=pw;answermode=auto;regint=0"),
        "g711.so",
        8000,
        440,
        &["-e", &format!("/dial sip:bob@127.0.0.1:{port}")],
        14,
    );
    // Generous: under CI load baresip can take seconds to start and dial (once over 8 s).
    let bridged =
        eventually(Duration::from_secs(14), || server.rx("bridge show all").contains("native_rtp").then_some(()));
    assert!(bridged.is_some(), "alice and bob bridged natively\n{}", server.log_tail());
    during();
    let (samples, peak, log) = alice.heard();
    assert!(samples >= 16_000, "alice heard at least 2 s: {samples} samples\n{log}\n{}", server.log_tail());
    assert!((875..=885).contains(&peak), "alice heard bob's 880 Hz: peak at {peak} Hz\n{}", server.log_tail());
    let (samples, peak, log) = bob.heard();
    assert!(samples >= 16_000, "bob heard at least 2 s: {samples} samples\n{log}");
    assert!((435..=445).contains(&peak), "bob heard alice's 440 Hz: peak at {peak} Hz");
}

/// Root starts it with `runuser = nobody`, `rungroup = nogroup`: every uid and gid of the
/// process is nobody's/nogroup's and no capability is left; the control socket is 0660 and
/// belongs to `astctlowner`:`astctlgroup`, and root's `-rx` still works; bob's REGISTER is
/// kept in the astdb; alice calls bob (baresip both) and each hears the other's tone while the
/// kernel relay loaded as root holds their legs; the call's CDR is written, by nobody.
#[test]
fn runuser_nobody_still_relays_in_the_kernel_and_writes_its_state() {
    if root_opted_out() {
        return;
    }
    let nobody = uid_of("nobody");
    let nogroup = gid_of_group("nogroup");
    let daemon = uid_of("daemon");
    let (server, port) =
        pbx_as_nobody("privdrop", "astctlpermissions = 0660\nastctlowner = daemon\nastctlgroup = nogroup\n");
    let pid = server.pid();

    // The drop: every uid nobody, every gid nogroup, no supplementary group, no capability.
    let dropped = eventually(Duration::from_secs(5), || (status_ids(pid, "Uid:") == [nobody; 4]).then_some(()));
    assert!(dropped.is_some(), "uids {:?}\n{}", status_ids(pid, "Uid:"), server.log_tail());
    assert_eq!(status_ids(pid, "Gid:"), [nogroup; 4]);
    assert_eq!(status_ids(pid, "Groups:"), Vec::<u32>::new());
    assert_eq!((status_caps(pid, "CapEff:"), status_caps(pid, "CapPrm:")), (0, 0), "no capability kept");
    let ps = Command::new("ps").args(["-o", "user=", "-p", &pid.to_string()]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&ps.stdout).trim(), "nobody");
    assert!(server.log().contains("Running as user 'nobody'"), "{}", server.log_tail());
    assert!(server.log().contains("Running as group 'nogroup'"), "{}", server.log_tail());
    assert!(server.log().contains("relayed in the kernel"), "the kernel relay loaded as root\n{}", server.log_tail());

    // The control socket: 0660, daemon:nogroup as configured; root's -rx works.
    let ctl = std::fs::symlink_metadata(server.dir.path.join("run/starling.ctl")).unwrap();
    assert_eq!((ctl.mode() & 0o7777, ctl.uid(), ctl.gid()), (0o660, daemon, nogroup));
    assert!(server.rx("core show version").starts_with("Starling "));
    let settings = server.rx("core show settings");
    assert!(settings.contains("  Running as user:             nobody\n"), "{settings}");
    assert!(settings.contains("  Running under group:         nogroup\n"), "{settings}");
    // What start-up made as root is nobody's now.
    for path in ["run", "run/starling.pid", "log", "db"] {
        let meta = std::fs::symlink_metadata(server.dir.path.join(path)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (nobody, nogroup), "{path}");
    }

    // `core reload` reopens the log files as nobody (they were made as root): what follows
    // still reaches log/messages.
    server.rx("core reload");
    assert!(!server.log().contains("Permission denied"), "{}", server.log_tail());

    // The legs go to the kernel: the relay's map holds both during the call.
    alice_calls_bob(&server, port, "privdrop", || {
        let map = relay_map_id(pid).expect("the relay's map among the server's descriptors");
        let in_kernel = eventually(Duration::from_secs(5), || (map_entries(map) == 2).then_some(()));
        assert!(in_kernel.is_some(), "both legs in the kernel: {} entries\n{}", map_entries(map), server.log_tail());
    });

    // The call's CDR, written by nobody.
    let csv = server.dir.path.join("log/cdr-csv/Master.csv");
    let written = eventually(Duration::from_secs(5), || {
        std::fs::read_to_string(&csv).ok().filter(|t| t.contains("SIP/alice-") && t.contains("SIP/bob-")).map(|_| ())
    });
    assert!(written.is_some(), "alice's CDR: {:?}\n{}", std::fs::read_to_string(&csv), server.log_tail());
    assert_eq!(std::fs::metadata(&csv).unwrap().uid(), nobody);
    let messages = std::fs::read_to_string(server.dir.path.join("log/messages")).unwrap_or_default();
    assert!(messages.contains("Accepting call SIP/alice-"), "the call's NOTICE in log/messages:\n{messages}");
    assert!(!server.log().contains("Permission denied"), "{}", server.log_tail());
}

/// chan_sip unloaded and loaded again after the drop cannot load the kernel relay (no
/// capability left): it relays in its threads, and a bridged call is still heard both ways.
#[test]
fn chan_sip_loaded_again_after_the_drop_relays_in_its_threads() {
    if root_opted_out() {
        return;
    }
    let (server, port) = pbx_as_nobody("privreload", "");
    let pid = server.pid();
    assert!(relay_map_id(pid).is_some(), "the kernel relay loaded as root\n{}", server.log_tail());
    let unloaded = server.rx("module unload chan_sip.so");
    assert!(unloaded.contains("Unloaded chan_sip"), "{unloaded}\n{}", server.log_tail());
    assert_eq!(server.rx("module load chan_sip.so"), "Loaded chan_sip.so\n", "{}", server.log_tail());
    assert_eq!(status_caps(pid, "CapEff:"), 0);
    alice_calls_bob(&server, port, "privreload", || {
        let entries = relay_map_id(pid).map_or(0, map_entries);
        assert_eq!(entries, 0, "no leg in the kernel after the drop");
    });
}

/// Without runuser nothing changes hands: the control socket is still 0660 (set, not left to
/// the umask) and belongs to whoever started the server.
#[test]
fn the_control_socket_is_0660_by_default() {
    if root_opted_out() {
        return;
    }
    let dir = TestDir::new("ctlmode");
    dir.write_starling_conf(&moddir(), "");
    dir.write("modules.conf", "[modules]\nautoload = no\n");
    let server = Server::start(dir);
    let ctl = std::fs::symlink_metadata(server.dir.path.join("run/starling.ctl")).unwrap();
    assert_eq!((ctl.mode() & 0o7777, ctl.uid(), ctl.gid()), (0o660, 0, 0));
    assert_eq!(status_ids(server.pid(), "Uid:"), [0; 4]);
}

/// A runuser the system does not have stops start-up with exit 1, naming the line.
#[test]
fn a_runuser_that_does_not_exist_stops_start_up() {
    let dir = TestDir::new("nouser");
    dir.write_starling_conf(&moddir(), "runuser = no-such-user-starling\n");
    let out = run_starling(&["-C", dir.config().to_str().unwrap(), "-f"], Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("starling.conf:11: runuser 'no-such-user-starling': no such user"), "{stderr}");
}

/// Started as nobody with `runuser = daemon`: exit 1, as Asterisk ("started as nonroot, but
/// runuser ... requested"); with `runuser = nobody` it starts.
#[test]
fn a_non_root_start_cannot_switch_to_another_user() {
    if root_opted_out() {
        return;
    }
    let nobody = uid_of("nobody");
    let nogroup = gid_of_group("nogroup");
    let dir = TestDir::new("nonroot");
    dir.write_starling_conf(&moddir(), "runuser = daemon\n");
    dir.write("modules.conf", "[modules]\nautoload = no\n");
    open_to_all(&dir);
    // The server makes its directories as nobody: let it write in the test's folder.
    std::fs::set_permissions(&dir.path, std::fs::Permissions::from_mode(0o777)).unwrap();
    // Rust's libstd (which the binary links) is in the toolchain under /root, closed to
    // nobody: a copy in the test's folder, found through LD_LIBRARY_PATH.
    let libs = dir.path.join("lib");
    std::fs::create_dir_all(&libs).unwrap();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let libstd = maps
        .split_whitespace()
        .find(|p| p.starts_with('/') && p.contains("/libstd-") && p.ends_with(".so"))
        .expect("this test binary links libstd dynamically, as the server does");
    let copy = libs.join(Path::new(libstd).file_name().unwrap());
    std::fs::copy(libstd, &copy).unwrap();
    std::fs::set_permissions(&libs, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let spawn = |dir: &Path| {
        Command::new(starling_bin())
            .env("LD_LIBRARY_PATH", &libs)
            .args(["-C", dir.join("etc/starling.conf").to_str().unwrap(), "-f"])
            .uid(nobody)
            .gid(nogroup)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn starling as nobody")
    };
    let mut child = spawn(&dir.path);
    let status = wait_timeout(&mut child, Duration::from_secs(20));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{stderr}");
    assert!(stderr.contains("started as nonroot, but runuser 'daemon' requested"), "{stderr}");

    // As itself: nothing to switch, it runs.
    dir.write_starling_conf(&moddir(), "runuser = nobody\n");
    open_to_all(&dir);
    std::fs::set_permissions(&dir.path, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut child = spawn(&dir.path);
    let config = dir.config();
    let answered = eventually(Duration::from_secs(20), || {
        let out = run_starling(&["-C", config.to_str().unwrap(), "-rx", "core show version"], Duration::from_secs(20));
        out.status.success().then_some(())
    });
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(answered.is_some() && running, "started as nobody with runuser = nobody");
}
