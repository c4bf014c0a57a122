//! The harness: a real `starling` in a temp dir, with generated config, driven through `-rx`.
//!
//! [`Server`] writes `starling.conf` (every directory inside the temp dir, `moddir` the
//! folder cargo built the modules into), starts the binary with `-f`, waits until the
//! control socket answers, and on drop kills the process by the pid it started. A test that
//! panics prints the server's log tail.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The binary under test. The first call also makes sure every module in `target/<profile>`
/// was built against the same core as the binary: `cargo test` rebuilds the binary but not
/// the modules' cdylibs, so after an edit to the core they would be refused (by the build-id
/// check, as they should be). One `cargo build` per test run keeps the two in step.
pub fn starling_bin() -> PathBuf {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let profile = if cfg!(debug_assertions) { "dev" } else { "release" };
        let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        // What cargo sets for a test binary (CARGO_MANIFEST_DIR, CARGO_PKG_*...) must not reach
        // this build: a build script that tracks one (ring's tracks CARGO_MANIFEST_DIR) would see
        // it differ from the shell's `cargo build`, and ring, rustls and every crate above them
        // would be built again here, then again by the next `cargo build` (minutes each time).
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy().into_owned();
            let set_for_tests = [
                "CARGO_MANIFEST_",
                "CARGO_PKG_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
                "CARGO_PRIMARY_",
                "CARGO_TARGET_TMPDIR",
            ];
            if set_for_tests.iter().any(|prefix| name.starts_with(prefix)) {
                cargo.env_remove(&name);
            }
        }
        let status = cargo
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "--profile", profile])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build --profile {profile} failed");
    });
    PathBuf::from(env!("CARGO_BIN_EXE_starling"))
}

/// Where cargo put the binary and the modules (`target/<profile>`).
pub fn moddir() -> PathBuf {
    starling_bin().parent().unwrap().to_path_buf()
}

/// A fresh directory for one test, removed on drop.
pub struct TestDir {
    pub path: PathBuf,
}

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        // Short paths: a Unix socket path must fit in 108 bytes.
        let path = std::env::temp_dir().join(format!("stl-{}-{n}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(path.join("etc")).unwrap();
        TestDir { path }
    }

    pub fn etc(&self) -> PathBuf {
        self.path.join("etc")
    }

    /// Writes `etc/<name>`.
    pub fn write(&self, name: &str, text: &str) {
        fs::write(self.etc().join(name), text).unwrap();
    }

    /// A standard starling.conf with every directory inside this test dir.
    pub fn write_starling_conf(&self, moddir: &Path, extra_options: &str) {
        self.write(
            "starling.conf",
            &format!(
                "[directories]\nmoddir => {}\nrundir => ../run\nlogdir => ../log\ndbdir => ../db\nspooldir => ../spool\nsoundsdir => /usr/share/asterisk/sounds\n\n[options]\nverbose = 3\n{extra_options}\n",
                moddir.display()
            ),
        );
    }

    pub fn config(&self) -> PathBuf {
        self.etc().join("starling.conf")
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Runs `starling` with these arguments to the end, bounded in time.
pub fn run_starling(args: &[&str], timeout: Duration) -> Output {
    let mut child = Command::new(starling_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn starling");
    let status = wait_timeout(&mut child, timeout).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("starling {args:?} did not finish within {timeout:?}");
    });
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut stdout).unwrap();
    child.stderr.take().unwrap().read_to_end(&mut stderr).unwrap();
    Output { status, stdout, stderr }
}

/// Waits for a child to exit, at most `timeout`.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `f` until it returns `Some`, at most `timeout`.
pub fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A running server, killed by its pid on drop.
pub struct Server {
    pub dir: TestDir,
    child: Child,
    log: PathBuf,
}

impl Server {
    /// Starts `starling -C <dir>/etc/starling.conf -f` and waits until `-rx` answers.
    pub fn start(dir: TestDir) -> Server {
        let server = Self::spawn_binary(&starling_bin(), dir, &["-f"]);
        server.wait_ready();
        server
    }

    /// Waits until the server answers on its control socket.
    pub fn wait_ready(&self) {
        let answered = eventually(Duration::from_secs(20), || {
            let out = self.try_rx("core show version")?;
            out.starts_with("Starling ").then_some(())
        });
        if answered.is_none() {
            panic!("starling did not answer on its control socket\n{}", self.log_tail());
        }
    }

    /// Starts `binary` with extra flags and does not wait for it.
    pub fn spawn_binary(binary: &Path, dir: TestDir, flags: &[&str]) -> Server {
        let log = dir.path.join("server.log");
        let out = fs::File::create(&log).unwrap();
        let child = Command::new(binary)
            .arg("-C")
            .arg(dir.config())
            .args(flags)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn starling");
        Server { dir, child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs a CLI command through `-rx`; `None` if the server did not answer.
    pub fn try_rx(&self, command: &str) -> Option<String> {
        let config = self.dir.config();
        let out = run_starling(&["-C", config.to_str().unwrap(), "-rx", command], Duration::from_secs(20));
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs a CLI command through `-rx` and returns its output.
    pub fn rx(&self, command: &str) -> String {
        self.try_rx(command).unwrap_or_else(|| panic!("-rx {command:?} failed\n{}", self.log_tail()))
    }

    /// Sends a signal to the server.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the pid of the child this guard started.
        unsafe { libc_kill(self.child.id() as i32, signal) };
    }

    /// Waits for the process to exit (bounded) and returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        match wait_timeout(&mut self.child, timeout) {
            Some(status) => status,
            None => panic!("starling did not exit within {timeout:?}\n{}", self.log_tail()),
        }
    }

    /// Stops the process (if it still runs) and hands back its directory, to start again in it.
    pub fn into_dir(mut self) -> TestDir {
        if self.running() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        // The emptied path left behind makes this guard's own drop a no-op.
        TestDir { path: std::mem::take(&mut self.dir.path) }
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// The server's combined stdout/stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of the log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!("--- server log tail ({}) ---\n{tail}\n---", self.log.display())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
        if self.running() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

pub const SIGHUP: i32 = 1;
pub const SIGTERM: i32 = 15;
pub const SIGKILL: i32 = 9;

/// Kills a pid that this test started indirectly (a daemon's, read from its pid file).
pub fn kill_pid(pid: i32, signal: i32) {
    // SAFETY: kill(2); the caller names a pid it started.
    unsafe { libc_kill(pid, signal) };
}

/// Runs SIPp (Debian's `sip-tester`) in the foreground against `127.0.0.1:port` with a
/// scenario from tests/scenarios, `service` as the user and `user`/`password` for digest
/// (`-au`/`-ap`), bounded in time; returns its exit code (0: every call succeeded) and output.
pub fn run_sipp(port: u16, scenario: &str, service: &str, user: &str, password: &str, calls: u32) -> (i32, String) {
    run_sipp_with(port, scenario, &["-s", service, "-au", user, "-ap", password, "-m", &calls.to_string()])
}

/// SIPp with `scenario` and these arguments (service, credentials, call count, rate...).
pub fn run_sipp_with(port: u16, scenario: &str, args: &[&str]) -> (i32, String) {
    sipp_at(&format!("127.0.0.1:{port}"), "127.0.0.1", scenario, args)
}

/// [`run_sipp_with`] towards `target` (`[::1]:5060`) from `local_ip`.
pub fn sipp_at(target: &str, local_ip: &str, scenario: &str, args: &[&str]) -> (i32, String) {
    sipp_from(target, local_ip, free_udp_port(), scenario, args)
}

/// [`sipp_at`] from a chosen local port (a phone that keeps its address across scenarios).
pub fn sipp_from(target: &str, local_ip: &str, local: u16, scenario: &str, args: &[&str]) -> (i32, String) {
    sipp_bounded(target, local_ip, local, scenario, args, Duration::from_secs(20))
}

/// [`sipp_from`] for a scenario that takes up to `limit` (SIPp's `-timeout`; it is killed 10 s
/// after that).
pub fn sipp_bounded(
    target: &str,
    local_ip: &str,
    local: u16,
    scenario: &str,
    args: &[&str],
    limit: Duration,
) -> (i32, String) {
    let scenarios = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let work = tempfile_dir("sipp");
    // SIPp's digest `uri` is `sip:remote_ip:remote_port` (IPv6 without brackets) unless told;
    // Starling wants the Request-URI there (RFC 2617 §3.2.2.5, issue 21), as phones send it.
    let service = args.iter().position(|a| *a == "-s").and_then(|i| args.get(i + 1));
    let auth_uri = match service {
        _ if !args.contains(&"-au") || args.contains(&"-auth_uri") => None,
        Some(service) if scenario.starts_with("invite") => Some(format!("{service}@{target}")),
        _ => Some(target.to_owned()),
    };
    let auth_uri: Vec<String> = auth_uri.map(|u| vec!["-auth_uri".to_owned(), u]).unwrap_or_default();
    let mut child = Command::new("sipp")
        .current_dir(&work)
        .arg(target)
        .args(["-sf", scenarios.join(scenario).to_str().unwrap()])
        .args(args)
        .args(&auth_uri)
        .args(["-i", local_ip, "-p", &local.to_string(), "-nostdin", "-timeout"])
        .arg(format!("{}s", limit.as_secs()))
        .arg("-timeout_error")
        .args(["-recv_timeout", "5000", "-default_behaviors", "all,-bye"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sipp (Debian's sip-tester)");
    let status = wait_timeout(&mut child, limit + Duration::from_secs(10)).unwrap_or_else(|| {
        let _ = child.kill();
        child.wait().unwrap()
    });
    let mut out = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut out);
    }
    let _ = fs::remove_dir_all(&work);
    (status.code().unwrap_or(-1), out)
}

fn tempfile_dir(name: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("stl-{}-{n}-{name}", std::process::id()));
    fs::create_dir_all(&path).unwrap();
    path
}

/// A SIPp UAS (the called party of a test) listening on `port` for one call; kill on drop.
pub struct SippUas {
    child: Child,
    work: PathBuf,
    pub port: u16,
}

impl SippUas {
    /// Starts `sipp -sf <scenario>` as a UAS on 127.0.0.1, free port, taking one call.
    pub fn spawn(scenario: &str) -> SippUas {
        SippUas::spawn_for(scenario, 1)
    }

    /// As [`SippUas::spawn`], taking `calls` calls (or OPTIONS) before it exits.
    pub fn spawn_for(scenario: &str, calls: u32) -> SippUas {
        SippUas::spawn_with(scenario, calls, &[])
    }

    /// As [`SippUas::spawn_for`], with more SIPp arguments (`-t t1` for TCP).
    pub fn spawn_with(scenario: &str, calls: u32, args: &[&str]) -> SippUas {
        // Its 60 s start when it does: the first test of a run may wait minutes for the
        // binary's `cargo build` (see `starling_bin`), so that comes first.
        starling_bin();
        let scenarios = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
        let work = tempfile_dir("sipp-uas");
        let port = free_udp_port();
        let child = Command::new("sipp")
            .current_dir(&work)
            .args(["-sf", scenarios.join(scenario).to_str().unwrap()])
            .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-m", &calls.to_string(), "-nostdin"])
            .args(["-timeout", "60s", "-timeout_error", "-default_behaviors", "all,-bye"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sipp (Debian's sip-tester)");
        // SIPp binds its port at once; give it a moment so the first INVITE finds it.
        std::thread::sleep(Duration::from_millis(300));
        SippUas { child, work, port }
    }

    /// Waits (bounded) for the one call to finish: SIPp's exit code (0: the scenario passed)
    /// and its output. SIPp gives up after 60 s: the first Starling a CI run starts has taken
    /// 37 s to load chan_sip (its kernel relay), so a UAS spawned before it must outwait that.
    pub fn finish(mut self) -> (i32, String) {
        let status = wait_timeout(&mut self.child, Duration::from_secs(70)).unwrap_or_else(|| {
            let _ = self.child.kill();
            self.child.wait().unwrap()
        });
        let mut out = String::new();
        if let Some(mut s) = self.child.stdout.take() {
            let _ = s.read_to_string(&mut out);
        }
        if let Some(mut s) = self.child.stderr.take() {
            let _ = s.read_to_string(&mut out);
        }
        (status.code().unwrap_or(-1), out)
    }
}

impl Drop for SippUas {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.work);
    }
}

/// The length (in 8 kHz samples) of a WAV file and the frequency of its FFT peak, by numpy
/// (Debian's python3-numpy).
pub fn dominant_frequency(wav: &Path) -> (u64, u64) {
    let analysis = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg("import sys,wave,numpy as n\nw=wave.open(sys.argv[1]);d=n.frombuffer(w.readframes(w.getnframes()),dtype=n.int16).astype(float)[::w.getnchannels()]\nf=n.abs(n.fft.rfft(d));print(len(d)*8000//w.getframerate(), round(n.argmax(f)*w.getframerate()/len(d)))")
        .arg(wav)
        .output()
        .expect("python3 with numpy (python3-numpy)");
    let text = String::from_utf8_lossy(&analysis.stdout).into_owned();
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().unwrap_or(0));
    (fields.next().unwrap_or(0), fields.next().unwrap_or(0))
}

/// A baresip user agent in a home of its own: sends a tone from a file, records what it hears.
pub struct Baresip {
    child: std::process::Child,
    home: std::path::PathBuf,
    _dir: TestDir,
}

impl Baresip {
    /// `account` is baresip's accounts line; `args` e.g. `-e /dial ...`; it quits after `seconds`.
    pub fn spawn(
        name: &str,
        account: &str,
        codec_module: &str,
        rate: u32,
        tone_hz: u32,
        args: &[&str],
        seconds: u32,
    ) -> Baresip {
        Baresip::spawn_with(name, account, codec_module, rate, tone_hz, args, seconds, "")
    }

    /// [`Baresip::spawn`] with more `config` lines (TLS: `sip_cafile`, `sip_certificate`; with
    /// a certificate baresip listens for TLS on its SIP port + 1).
    #[allow(clippy::too_many_arguments)]
    pub fn spawn_with(
        name: &str,
        account: &str,
        codec_module: &str,
        rate: u32,
        tone_hz: u32,
        args: &[&str],
        seconds: u32,
        config: &str,
    ) -> Baresip {
        Baresip::spawn_tone(name, account, codec_module, rate, (tone_hz, 10.0), args, seconds, config)
    }

    /// [`Baresip::spawn_with`] with a `contacts` file (`"1001" <sip:1001@...>;presence=p2p`
    /// lines, which the `presence` module subscribes to).
    #[allow(clippy::too_many_arguments)]
    pub fn spawn_with_contacts(
        name: &str,
        account: &str,
        codec_module: &str,
        rate: u32,
        tone_hz: u32,
        args: &[&str],
        seconds: u32,
        config: &str,
        contacts: &str,
    ) -> Baresip {
        Baresip::spawn_full(name, account, codec_module, rate, (tone_hz, 10.0), args, seconds, config, contacts)
    }

    /// [`Baresip::spawn_with`] with a tone of `(Hz, seconds)`: baresip ends the call when its
    /// file ends (aufile's end of file).
    #[allow(clippy::too_many_arguments)]
    pub fn spawn_tone(
        name: &str,
        account: &str,
        codec_module: &str,
        rate: u32,
        tone: (u32, f64),
        args: &[&str],
        seconds: u32,
        config: &str,
    ) -> Baresip {
        Baresip::spawn_full(name, account, codec_module, rate, tone, args, seconds, config, "")
    }

    #[allow(clippy::too_many_arguments)]
    fn spawn_full(
        name: &str,
        account: &str,
        codec_module: &str,
        rate: u32,
        (tone_hz, tone_seconds): (u32, f64),
        args: &[&str],
        seconds: u32,
        config: &str,
        contacts: &str,
    ) -> Baresip {
        let dir = TestDir::new(name);
        let home = dir.path.clone();
        let tone = home.join("tone.wav");
        let channels = if codec_module == "opus.so" { "2" } else { "1" };
        let made = std::process::Command::new("sox")
            .args(["-n", "-r", &rate.to_string(), "-c", channels, "-b", "16", "-e", "signed-integer"])
            .arg(&tone)
            .args(["synth", &tone_seconds.to_string(), "sine", &tone_hz.to_string(), "vol", "0.5"])
            .status()
            .expect("sox");
        assert!(made.success());
        let sip_port = free_udp_port();
        std::fs::write(
            home.join("config"),
            format!(
                "poll_method epoll\nsip_listen 127.0.0.1:{sip_port}\nnet_interface 127.0.0.1\naudio_player aufile,{h}/heard.wav\naudio_source aufile,{t}\naudio_alert aufile,{h}/alert.wav\nmodule_path /usr/lib/baresip/modules\nmodule {codec_module}\nmodule aufile.so\nmodule sndfile.so\nmodule_app account.so\nmodule_app menu.so\nsnd_path {h}\n{config}\n",
                h = home.display(),
                t = tone.display()
            ),
        )
        .unwrap();
        std::fs::write(home.join("accounts"), format!("{account}\n")).unwrap();
        if !contacts.is_empty() {
            std::fs::write(home.join("contacts"), contacts).unwrap();
        }
        let child = std::process::Command::new("baresip")
            .arg("-f")
            .arg(&home)
            .args(args)
            .args(["-t", &seconds.to_string()])
            .current_dir(&home)
            .stdout(std::fs::File::create(home.join("baresip.log")).unwrap())
            .stderr(std::fs::File::create(home.join("baresip.err")).unwrap())
            .spawn()
            .expect("baresip (Debian's baresip-core)");
        Baresip { child, home, _dir: dir }
    }

    /// What it has written to its log so far.
    pub fn log(&self) -> String {
        let log = std::fs::read_to_string(self.home.join("baresip.log")).unwrap_or_default();
        log + &std::fs::read_to_string(self.home.join("baresip.err")).unwrap_or_default()
    }

    /// Waits for it to quit; the FFT peak of what it heard (samples at 8 kHz, Hz) and its log.
    pub fn heard(mut self) -> (u64, u64, String) {
        if wait_timeout(&mut self.child, Duration::from_secs(30)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let log = std::fs::read_to_string(self.home.join("baresip.log")).unwrap_or_default();
        let decoded = std::fs::read_dir(&self.home)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with("-dec.wav"));
        match decoded {
            Some(path) => {
                let (samples, peak) = dominant_frequency(&path);
                (samples, peak, log)
            }
            None => (0, 0, log),
        }
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free UDP port on 127.0.0.1 (bound then released: good enough for tests).
/// A port of 127.0.0.1 free for UDP and for TCP alike (SIPp `-t t1` listens on TCP on it, and
/// tests that open hundreds of connections take ephemeral ports a UDP-only check misses).
pub fn free_udp_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A Starling with SIP on a free port of 127.0.0.1: it loads `modules` (names without `.so`)
/// and chan_sip, with `extensions` as extensions.conf when given; sip.conf is `[general]`,
/// `bindaddr`, `bindport`, then `sip_conf` (more `[general]` lines and sections).
pub fn sip_pbx(name: &str, modules: &[&str], extensions: Option<&str>, sip_conf: &str) -> (Server, u16) {
    sip_pbx_on_port(name, modules, extensions, |_| sip_conf.to_owned())
}

/// [`sip_pbx`] with sip.conf made from the port (for a peer that is Starling itself).
pub fn sip_pbx_on_port(
    name: &str,
    modules: &[&str],
    extensions: Option<&str>,
    sip_conf: impl FnOnce(u16) -> String,
) -> (Server, u16) {
    sip_pbx_with_options(name, "", modules, extensions, sip_conf)
}

/// [`sip_pbx_on_port`] with more starling.conf `[options]` lines (`nameserver = ...`).
pub fn sip_pbx_with_options(
    name: &str,
    options: &str,
    modules: &[&str],
    extensions: Option<&str>,
    sip_conf: impl FnOnce(u16) -> String,
) -> (Server, u16) {
    let port = free_udp_port();
    let sip_conf = sip_conf(port);
    let dir = TestDir::new(name);
    dir.write_starling_conf(&moddir(), options);
    let loads: String = modules.iter().chain(["chan_sip"].iter()).map(|m| format!("load => {m}.so\n")).collect();
    dir.write("modules.conf", &format!("[modules]\nautoload = no\n{loads}"));
    if let Some(extensions) = extensions {
        dir.write("extensions.conf", extensions);
    }
    dir.write("sip.conf", &format!("[general]\nbindaddr=127.0.0.1\nbindport={port}\n{sip_conf}"));
    (Server::start(dir), port)
}

/// [`sip_pbx`] with more configuration files (`("rtp.conf", text)`).
pub fn sip_pbx_with_files(
    name: &str,
    modules: &[&str],
    extensions: Option<&str>,
    sip_conf: &str,
    files: &[(&str, &str)],
) -> (Server, u16) {
    let port = free_udp_port();
    let dir = TestDir::new(name);
    dir.write_starling_conf(&moddir(), "");
    let loads: String = modules.iter().chain(["chan_sip"].iter()).map(|m| format!("load => {m}.so\n")).collect();
    dir.write("modules.conf", &format!("[modules]\nautoload = no\n{loads}"));
    if let Some(extensions) = extensions {
        dir.write("extensions.conf", extensions);
    }
    dir.write("sip.conf", &format!("[general]\nbindaddr=127.0.0.1\nbindport={port}\n{sip_conf}"));
    for (file, text) in files {
        dir.write(file, text);
    }
    (Server::start(dir), port)
}

/// A DNS server we control: Debian's dnsmasq (package dnsmasq-base) in the foreground on a free
/// UDP port of 127.0.0.1, answering from `records` alone (its `--srv-host=` and `--host-record=`
/// options) and NXDOMAIN for any other name under `.test`; killed by its pid on drop.
pub struct Dnsmasq {
    child: Child,
    pub port: u16,
    dir: TestDir,
}

impl Dnsmasq {
    pub fn start(records: &[String]) -> Dnsmasq {
        let dir = TestDir::new("dns");
        let port = free_udp_port();
        let log = dir.path.join("dnsmasq.log");
        let child = Command::new("/usr/sbin/dnsmasq")
            .args(["--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--local=/test/"])
            .args([
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                "--pid-file=",
                "--log-facility=-",
                "--log-queries",
            ])
            .arg(format!("--port={port}"))
            .args(records)
            .stdout(fs::File::create(&log).unwrap())
            .stderr(fs::File::create(dir.path.join("dnsmasq.err")).unwrap())
            .spawn()
            .expect("dnsmasq (Debian's dnsmasq-base)");
        let dns = Dnsmasq { child, port, dir };
        let up = eventually(Duration::from_secs(5), || dns.log().contains("cleared cache").then_some(()));
        assert!(up.is_some(), "dnsmasq started: {}", dns.log());
        dns
    }

    /// What it logged: one line per query and per answer.
    pub fn log(&self) -> String {
        let out = fs::read_to_string(self.dir.path.join("dnsmasq.log")).unwrap_or_default();
        out + &fs::read_to_string(self.dir.path.join("dnsmasq.err")).unwrap_or_default()
    }

    /// The starling.conf `[options]` line that makes Starling ask it.
    pub fn nameserver_option(&self) -> String {
        format!("nameserver = 127.0.0.1:{}", self.port)
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
