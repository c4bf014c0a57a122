//! starling-callgen: B2BUA calls through Starling with RTP both ways, for the load harness's
//! `relay` stage (benches/load/README.md).
//!
//! It plays both SIPp roles of the `bridged` stage in one process: the caller (uac) calls
//! Starling, whose `Dial(SIP/uas)` calls our uas; both legs send PCMU (50 packets/s) from ONE
//! plain UDP socket per side, shared by every call, in `sendmmsg` batches on 1 ms ticks, and
//! count what Starling relays to them, per call, by indices carried in the payload. SIPp's
//! `play_pcap_audio` opens a raw socket per playing call instead, and the kernel hands every
//! UDP packet on the host to every raw socket, so its cost per packet grows with the calls.
//!
//! At the end it prints one line of `key=value` pairs (for the shell's `eval`) on stdout.

mod media;
mod net;
mod payload;
mod schedule;
mod sdp;
mod sip;
mod stats;
mod tls;

use std::fmt::Write as _;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;

use media::{Command, Live, Report};
use schedule::{Next, Schedule};
use sip::{Engine, Leg, Out};

/// B2BUA calls through Starling (uac → Starling Dial(SIP/uas) → our uas) with PCMU both ways
/// over plain UDP sockets; prints the call and packet counts as one `key=value` line.
#[derive(Parser, Debug)]
#[command(name = "starling-callgen", version)]
struct Args {
    /// Starling's SIP address (where the uac's INVITEs go).
    #[arg(long)]
    target: SocketAddrV4,
    /// The Request-URI's user: the extension dialled.
    #[arg(long, default_value = "1000")]
    service: String,
    /// The uac's SIP socket.
    #[arg(long, default_value = "127.0.0.1:0")]
    uac_bind: SocketAddrV4,
    /// The uas's SIP socket (Starling's [uas] peer: host and port).
    #[arg(long)]
    uas_bind: SocketAddrV4,
    /// The caller side's RTP socket.
    #[arg(long, default_value = "127.0.0.1:0")]
    a_media: SocketAddrV4,
    /// The called side's RTP socket.
    #[arg(long, default_value = "127.0.0.1:0")]
    b_media: SocketAddrV4,
    /// Calls started per second.
    #[arg(long)]
    rate: f64,
    /// The most calls in progress at once.
    #[arg(long)]
    concurrent: u32,
    /// Calls in all.
    #[arg(long)]
    calls: Option<u64>,
    /// Seconds during which calls are started (with or instead of --calls).
    #[arg(long)]
    duration: Option<f64>,
    /// Seconds from a call's ACK to its BYE.
    #[arg(long)]
    hold: f64,
    /// Stop (and report) after this many seconds, finished or not.
    #[arg(long, default_value_t = 3600.0)]
    max_seconds: f64,
    /// Milliseconds the uas waits between its 100 and its 200.
    #[arg(long, default_value_t = 0)]
    answer_delay_ms: u64,
    /// The uas answers with 200 at once, without a 100 Trying first.
    #[arg(long)]
    no_trying: bool,
    /// Socket buffer size (bytes) asked for each socket; forced past rmem_max/wmem_max as root.
    #[arg(long, default_value_t = 32 << 20)]
    buffer: usize,
    /// Seconds between progress lines on stderr (0: none).
    #[arg(long, default_value_t = 5.0)]
    progress: f64,
    /// Also write the result line to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// SIP over TLS: the CA (PEM) that signed Starling's certificate. The uac connects to
    /// --target over TLS; the uas listens for TLS on --uas-bind (TCP) with --tls-cert/--tls-key.
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    tls_ca: Option<PathBuf>,
    /// The uas's certificate chain (PEM), for --tls-ca.
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// The uas's private key (PEM), for --tls-ca.
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// SDES-SRTP on both legs (AES_CM_128_HMAC_SHA1_80; keys only go over TLS: needs --tls-ca).
    #[arg(long, requires = "tls_ca")]
    srtp: bool,
}

/// Where the SIP of both legs goes: two UDP sockets, or TLS connections (see tls.rs).
enum Signalling {
    Udp { uac: UdpSocket, uas: UdpSocket },
    Tls { uac: Box<tls::Link>, listener: std::net::TcpListener, server: Arc<rustls::ServerConfig>, uas: Vec<tls::Link> },
}

impl Signalling {
    /// Hands everything that has come to the engine.
    fn receive(&mut self, engine: &mut Engine, buf: &mut [u8]) {
        match self {
            Signalling::Udp { uac, uas } => {
                for (leg, socket) in [(Leg::A, &*uac), (Leg::B, &*uas)] {
                    loop {
                        match socket.recv_from(buf) {
                            Ok((n, src)) => engine.handle(Instant::now(), leg, src, &buf[..n]),
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                            Err(_) => break, // an ICMP error reported on the socket: nothing to read
                        }
                    }
                }
            }
            Signalling::Tls { uac, listener, server, uas } => {
                while let Ok((tcp, peer)) = listener.accept() {
                    match tls::Link::accept(tcp, peer, server.clone()) {
                        Ok(link) => uas.push(link),
                        Err(e) => eprintln!("starling-callgen: TLS from {peer}: {e:#}"),
                    }
                }
                let mut messages = Vec::new();
                for (leg, link) in std::iter::once((Leg::A, &mut **uac)).chain(uas.iter_mut().map(|l| (Leg::B, l))) {
                    link.read(&mut messages);
                    for message in messages.drain(..) {
                        engine.handle(Instant::now(), leg, link.peer, &message);
                    }
                }
                uas.retain(|link| !link.closed);
            }
        }
    }

    /// Sends a message of `leg` to `to`: false if it could not go.
    fn send(&mut self, leg: Leg, to: SocketAddr, data: &[u8]) -> bool {
        match self {
            Signalling::Udp { uac, uas } => {
                let socket = if leg == Leg::A { &*uac } else { &*uas };
                socket.send_to(data, to).is_ok()
            }
            Signalling::Tls { uac, uas, .. } => {
                // The caller has one connection; the uas answers on the connection the request
                // came on (or, for anything else, Starling's latest).
                let link = match leg {
                    Leg::A => Some(&mut **uac),
                    Leg::B => {
                        let i = uas.iter().position(|l| l.peer == to).or(uas.len().checked_sub(1));
                        i.map(|i| &mut uas[i])
                    }
                };
                let Some(link) = link.filter(|l| !l.closed) else { return false };
                link.send(data);
                true
            }
        }
    }

    /// What to wait on for reading.
    fn fds(&self) -> Vec<libc::c_int> {
        match self {
            Signalling::Udp { uac, uas } => vec![uac.as_raw_fd(), uas.as_raw_fd()],
            Signalling::Tls { uac, listener, uas, .. } => {
                let mut fds = vec![uac.fd(), listener.as_raw_fd()];
                fds.extend(uas.iter().map(tls::Link::fd));
                fds
            }
        }
    }

    /// Sends what the TLS connections still hold.
    fn flush(&mut self) {
        if let Signalling::Tls { uac, uas, .. } = self {
            uac.flush();
            uas.iter_mut().for_each(tls::Link::flush);
        }
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Relaxed);
}

fn install_signals() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("starling-callgen: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn local(socket: &UdpSocket) -> Result<SocketAddrV4> {
    v4(socket.local_addr()?)
}

fn v4(addr: SocketAddr) -> Result<SocketAddrV4> {
    match addr {
        SocketAddr::V4(a) => Ok(sip::visible(a)),
        SocketAddr::V6(a) => bail!("IPv6 socket {a}: only IPv4 is supported"),
    }
}

fn run(args: Args) -> Result<()> {
    if !args.rate.is_finite() || args.rate <= 0.0 || args.concurrent == 0 {
        bail!("--rate and --concurrent must be positive");
    }
    if args.calls.is_none() && args.duration.is_none() {
        bail!("give --calls or --duration (or both)");
    }
    if !args.hold.is_finite() || args.hold < 0.0 {
        bail!("--hold must be 0 or more seconds");
    }
    install_signals();
    let (mut signalling, uac_addr, uas_addr) = match (&args.tls_ca, &args.tls_cert, &args.tls_key) {
        (Some(ca), Some(cert), Some(key)) => {
            let client = tls::client_config(ca)?;
            let server = tls::server_config(cert, key)?;
            let uac = tls::Link::connect(args.target.into(), client)?;
            let listener = std::net::TcpListener::bind(args.uas_bind).context("uas TLS listener")?;
            listener.set_nonblocking(true)?;
            let (uac_addr, uas_addr) = (v4(uac.local_addr()?)?, v4(listener.local_addr()?)?);
            (Signalling::Tls { uac: Box::new(uac), listener, server, uas: Vec::new() }, uac_addr, uas_addr)
        }
        _ => {
            let (uac, _) = net::udp_socket(args.uac_bind, 4 << 20).context("uac SIP socket")?;
            let (uas, _) = net::udp_socket(args.uas_bind, 4 << 20).context("uas SIP socket")?;
            let (uac_addr, uas_addr) = (local(&uac)?, local(&uas)?);
            (Signalling::Udp { uac, uas }, uac_addr, uas_addr)
        }
    };
    let (a_rtp, a_buf) = net::udp_socket(args.a_media, args.buffer).context("A media socket")?;
    let (b_rtp, b_buf) = net::udp_socket(args.b_media, args.buffer).context("B media socket")?;
    let cfg = sip::Config {
        service: args.service.clone(),
        target: args.target,
        uac: uac_addr,
        uas: uas_addr,
        a_media: local(&a_rtp)?,
        b_media: local(&b_rtp)?,
        hold: Duration::from_secs_f64(args.hold),
        trying: !args.no_trying,
        answer_delay: Duration::from_millis(args.answer_delay_ms),
        run: format!("{:x}", std::process::id()),
        tls: args.tls_ca.is_some(),
        srtp: args.srtp,
    };
    let schedule = Schedule::new(args.rate, args.concurrent, args.calls, args.duration.map(Duration::from_secs_f64));
    eprintln!(
        "starling-callgen: uac {} uas {} media A {} B {} (receive buffers {} / {} KiB) -> Starling {}; \
         {} calls/s, at most {} at once, {} calls, hold {} s",
        cfg.uac,
        cfg.uas,
        cfg.a_media,
        cfg.b_media,
        a_buf / 1024,
        b_buf / 1024,
        cfg.target,
        args.rate,
        args.concurrent,
        if schedule.total == u64::MAX { "unbounded".to_string() } else { schedule.total.to_string() },
        args.hold
    );

    let epoch = Instant::now();
    let cpu0 = net::cpu_seconds();
    let (a_live, b_live) = (Arc::new(Live::default()), Arc::new(Live::default()));
    let (a_tx, a_rx) = mpsc::channel();
    let (b_tx, b_rx) = mpsc::channel();
    let media_addrs = (cfg.a_media, cfg.b_media);
    let a_thread = {
        let live = a_live.clone();
        thread::Builder::new()
            .name("media-a".into())
            .spawn(move || media::run(a_rtp, epoch, 0xA000_0000, a_rx, live))?
    };
    let b_thread = {
        let live = b_live.clone();
        thread::Builder::new()
            .name("media-b".into())
            .spawn(move || media::run(b_rtp, epoch, 0x0B00_0000, b_rx, live))?
    };

    let mut engine = Engine::new(cfg, schedule.total.min(u64::from(u32::MAX / 2)));
    let max = Duration::from_secs_f64(args.max_seconds.max(0.0));
    let progress = (args.progress > 0.0).then(|| Duration::from_secs_f64(args.progress));
    let mut next_progress = progress.map(|p| epoch + p);
    let mut last_progress = (epoch, cpu0);
    let mut buf = vec![0u8; 65_536];
    let mut send_errors = 0u64;
    let mut drain_until: Option<Instant> = None;
    let mut stopped_early = false;
    loop {
        let now = Instant::now();
        let elapsed = now - epoch;
        if STOP.load(Relaxed) || elapsed >= max {
            stopped_early = true;
            break;
        }
        // Start the calls that are due.
        let mut next_start = None;
        let mut starting = true;
        loop {
            match schedule.next(engine.counts.started, engine.counts.in_progress, elapsed) {
                Next::Start => engine.start_call(now),
                Next::At(d) => {
                    next_start = Some(epoch + d);
                    break;
                }
                Next::Full => break,
                Next::Done => {
                    starting = false;
                    break;
                }
            }
        }
        // Everything started and over: wait for Starling's BYEs to B (2 s at most) and the
        // last packets (0.5 s), then stop.
        if !starting && engine.counts.in_progress == 0 {
            let until = *drain_until.get_or_insert(now + Duration::from_secs(2));
            if now >= until || (engine.counts.b_open == 0 && now >= until - Duration::from_millis(1500)) {
                break;
            }
        }
        signalling.receive(&mut engine, &mut buf);
        engine.handle_timeout(Instant::now());
        for out in engine.out.drain(..) {
            match out {
                Out::Sip { leg, to, data } => {
                    if !signalling.send(leg, to, &data) {
                        send_errors += 1;
                    }
                }
                Out::Media { leg, command } => {
                    let _ = if leg == Leg::A { a_tx.send(command) } else { b_tx.send(command) };
                }
            }
        }
        let now = Instant::now();
        if let Some(at) = next_progress.filter(|at| now >= *at) {
            let c = &engine.counts;
            let cpu = net::cpu_seconds();
            let cpu_pct = (cpu - last_progress.1) / (now - last_progress.0).as_secs_f64().max(1e-9) * 100.0;
            last_progress = (now, cpu);
            eprintln!(
                "[{:6.1}s] up {} (peak {}), started {}, ok {}, failed {}; RTP sent A {} B {}, received A {} B {}; \
                 our CPU {cpu_pct:.0}% since the last line",
                (now - epoch).as_secs_f64(),
                c.up,
                c.peak,
                c.started,
                c.ok,
                c.failed,
                a_live.sent.load(Relaxed),
                b_live.sent.load(Relaxed),
                a_live.received.load(Relaxed),
                b_live.received.load(Relaxed),
            );
            next_progress = Some(at + progress.unwrap_or(Duration::MAX));
        }
        let mut wake = now + Duration::from_millis(20);
        for t in [engine.poll_timeout(), next_start, next_progress].into_iter().flatten() {
            wake = wake.min(t);
        }
        let ms = wake.saturating_duration_since(now).as_micros().div_ceil(1000) as i32;
        signalling.flush();
        net::poll_readable(&signalling.fds(), ms);
    }
    let elapsed = epoch.elapsed();
    // Read while the sockets are open (the media threads own them).
    let drops = [media_addrs.0, media_addrs.1].map(|a| net::socket_drops(a).map_or(-1, |d| d as i64));
    let _ = a_tx.send(Command::Shutdown);
    let _ = b_tx.send(Command::Shutdown);
    let a = a_thread.join().map_err(|_| anyhow::anyhow!("the A media thread panicked"))?;
    let b = b_thread.join().map_err(|_| anyhow::anyhow!("the B media thread panicked"))?;
    let cpu = net::cpu_seconds() - cpu0;
    let run = Run { cpu, elapsed, stopped_early, sip_send_errors: send_errors, drops };
    let line = summary(&engine, &a, &b, &run);
    println!("{line}");
    if let Some(path) = &args.out {
        std::fs::write(path, format!("{line}\n")).with_context(|| format!("cannot write {}", path.display()))?;
    }
    for (side, r) in [("A", &a), ("B", &b)] {
        if let Some(e) = &r.first_error {
            eprintln!("starling-callgen: media {side}: first socket error: {e}");
        }
    }
    Ok(())
}

/// A stream's first second of media (50 packets): loss there is the bridge not being up yet.
const HEAD: u32 = 50;

/// Of the packets lost in one direction, those among each stream's first [`HEAD`] and those
/// among its last [`HEAD`] (before the BYE: loss there is packets still queued at hangup).
fn lost_at_the_ends(sender: &Report, receiver: &Report) -> (u64, u64) {
    let (mut first, mut last) = (0, 0);
    for (index, &n) in &sender.sent {
        let head = n.min(HEAD);
        let tail_from = n.saturating_sub(HEAD).max(head);
        let missing = |k: u32| receiver.received.get(index).map_or(k, |r| r.missing_below(k));
        first += u64::from(missing(head));
        last += u64::from(missing(n) - missing(tail_from));
    }
    (first, last)
}

/// Sent, distinct received and lost (per stream, never below 0) in one direction.
fn direction(sender: &Report, receiver: &Report) -> (u64, u64, u64) {
    let sent = sender.sent.values().map(|&n| u64::from(n)).sum();
    let received = receiver.received.values().map(|r| u64::from(r.distinct)).sum();
    let lost = sender
        .sent
        .iter()
        .map(|(index, &n)| u64::from(n.saturating_sub(receiver.received.get(index).map_or(0, |r| r.distinct))))
        .sum();
    (sent, received, lost)
}

fn lossy_streams<'a>(sender: &'a Report, receiver: &'a Report) -> impl Iterator<Item = u32> + 'a {
    sender
        .sent
        .iter()
        .filter(|(index, &n)| receiver.received.get(index).map_or(0, |r| r.distinct) < n)
        .map(|(index, _)| *index)
}

/// What the result line says about the run itself.
#[derive(Clone, Copy)]
struct Run {
    /// Our CPU seconds.
    cpu: f64,
    elapsed: Duration,
    /// By --max-seconds or a signal.
    stopped_early: bool,
    sip_send_errors: u64,
    /// The media sockets' receive-buffer drops (-1: unknown).
    drops: [i64; 2],
}

fn summary(engine: &Engine, a: &Report, b: &Report, run: &Run) -> String {
    let Run { cpu, elapsed, stopped_early, sip_send_errors, drops: [a_drops, b_drops] } = *run;
    let c = &engine.counts;
    let (a2b_sent, a2b_received, a2b_lost) = direction(a, b);
    let (b2a_sent, b2a_received, b2a_lost) = direction(b, a);
    let ((a2b_head, a2b_tail), (b2a_head, b2a_tail)) = (lost_at_the_ends(a, b), lost_at_the_ends(b, a));
    let mut lossy: Vec<u32> = lossy_streams(a, b).chain(lossy_streams(b, a)).collect();
    lossy.sort_unstable();
    lossy.dedup();
    let dup: u64 = a.received.values().chain(b.received.values()).map(|r| u64::from(r.duplicates)).sum();
    let reordered: u64 = a.received.values().chain(b.received.values()).map(|r| u64::from(r.reordered)).sum();
    let reasons = c.fail_reasons.iter().map(|(k, v)| format!("{k}:{v}")).collect::<Vec<_>>().join(",");
    let mut line = String::new();
    let _ = write!(
        line,
        "started={} ok={} failed={} unfinished={} peak={} a2b_sent={a2b_sent} a2b_received={a2b_received} \
         a2b_lost={a2b_lost} a2b_lost_first_s={a2b_head} a2b_lost_last_s={a2b_tail} b2a_sent={b2a_sent} b2a_received={b2a_received} b2a_lost={b2a_lost} b2a_lost_first_s={b2a_head} b2a_lost_last_s={b2a_tail} dup={dup} \
         reordered={reordered} lossy_calls={} misrouted={} foreign={} unknown_stream={} srtp_failures={} rtp_send_errors={} \
         late_ticks={} worst_late_ms={} worst_late_at_s={:.1} b_legs={} unlinked={} b_refused={} no_ack={} sip_retrans={} stray={} \
         sip_send_errors={sip_send_errors} a_rcvbuf_drops={a_drops} b_rcvbuf_drops={b_drops} stopped_early={} fail_reasons=\"{reasons}\" cpu_s={cpu:.2} elapsed_s={:.1}",
        c.started,
        c.ok,
        c.failed,
        c.in_progress,
        c.peak,
        lossy.len(),
        a.misrouted + b.misrouted,
        a.foreign + b.foreign,
        a.unknown_stream + b.unknown_stream,
        a.srtp_failures + b.srtp_failures,
        a.send_errors + b.send_errors,
        a.late_ticks + b.late_ticks,
        a.worst_late_ms.max(b.worst_late_ms),
        if a.worst_late_ms >= b.worst_late_ms { a.worst_late_at_ms } else { b.worst_late_at_ms } as f64 / 1000.0,
        c.b_legs,
        c.unlinked,
        c.b_refused,
        c.no_ack,
        c.retrans,
        c.stray,
        u8::from(stopped_early),
        elapsed.as_secs_f64(),
    );
    line
}
