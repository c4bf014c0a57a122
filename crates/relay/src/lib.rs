//! The RTP relay of natively bridged calls: where their packets go, read and sent on without a
//! trip through tokio, for any channel driver that bridges two calls speaking the same codec.
//!
//! A bridged call's driver (chan_sip's pvt) hands its RTP socket over to one of the relay
//! threads once relaying has begun (the other call has published the stream to continue:
//! [`RelayTo::begins`]). From then on this thread reads the socket, runs each packet through
//! the call's RTP session (receive statistics, comedia, strictrtp, the RTP timeout: the same
//! [`RtpSession::handle_rtp`] the driver would run) and through the relay leg (crates/media's
//! [`RelayLeg`]: payload types mapped, one continuous stream), and sends it from the other
//! call's socket to the other far end. The driver takes its socket back when the bridge ends
//! ([`RelayHandle`]'s drop). What the thread counts, the driver reads through the handle
//! ([`RelayHandle::stats`]).
//!
//! Why threads of their own: through tokio every packet wakes a task (and often a parked
//! worker thread), which costs more than the packet. Here one wake-up serves every socket
//! that is ready, then the thread sleeps out the rest of [`BATCH`], so that at a few hundred
//! packets a millisecond they are read and sent in one round, at the price of at most that
//! much delay. A round is done one of two ways ([`Backend`]):
//!
//! - [`Backend::IoUring`] (Linux 6.0 and later): each socket has one multishot `recvmsg`
//!   in an io_uring, into buffers the kernel takes from a ring we refill; each relayed
//!   packet is a `send` from the buffer it came in. A round is two system calls, however
//!   many packets: one to wait for and take what came, one to send what goes.
//! - [`Backend::Epoll`], where io_uring is missing or forbidden (old kernels, seccomp):
//!   level-triggered epoll, then one `recvfrom` and one `sendto` per packet.
//!
//! Where both far ends of a leg are on this host, the thread hands the leg on to the relay in
//! the kernel ([`KernelRelay`], `kernel.rs`) after the first packet from the source strictrtp
//! has learned (the SDP's address at once, another after `probation`), and the packets no longer
//! reach the thread at all; the thread keeps the socket, takes in the kernel's counters, and
//! takes the leg back for whatever the kernel leaves to it.
//!
//! A leg with SRTP on either side (SDES, crates/media's [`RelayCrypto`]) is opened with the key
//! of the call it comes from and sealed with the key of the call it goes to, in the thread,
//! with the calls' own SRTP contexts; such a leg is never handed to the kernel, which has no
//! keys.
//!
//! The crate knows nothing of SIP: a call is its sockets, its [`RtpSession`], its
//! [`PublishedMedia`] (where its far end is, the stream relayed packets continue) and a
//! [`RelayLeg`] (the payload types mapped).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use starling_core::tracing;
use starling_media::relay::{Opened, RelayCrypto, RelayLeg};
use starling_media::session::{ReceiveError, RtpSession, Stats};

mod epoll;
mod kernel;
mod uring;

pub use kernel::KernelRelay;

/// How long the thread gathers packets between two rounds.
pub const BATCH: Duration = Duration::from_millis(1);

/// A leg's statistics are published every this many packets it receives (about once a second
/// at 20 ms a packet), at once for a stray one, and whenever the kernel's counters are taken in.
pub const STATS_EVERY: u64 = 50;

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a call publishes of its media to a native bridge, shared (behind a mutex:
/// [`SharedMedia`]) between the call's driver, the other call and the relay. chan_sip's is its
/// pvt's `MediaInfo`.
pub trait PublishedMedia: Send {
    /// Where the call's far end receives RTP (from its SDP, or learnt with comedia), if known:
    /// where the packets relayed to it go.
    fn far_end(&self) -> FarEnd;

    /// The same, to change: a move is counted ([`FarEnd::set`]).
    fn far_end_mut(&mut self) -> &mut FarEnd;

    /// Where the packets relayed to the call's far end go, if known.
    fn remote(&self) -> Option<SocketAddr> {
        self.far_end().get()
    }

    /// The call's RTP session has learnt (comedia) that its far end is at `remote`.
    fn set_remote(&mut self, remote: Option<SocketAddr>) {
        self.far_end_mut().set(remote);
    }

    /// Relaying into this call begins, if it has published the stream it was sending (SSRC,
    /// next sequence number, next timestamp): the packets relayed to its far end continue that
    /// stream. `None` while it has not (the relaying waits); each stream is given once.
    fn begin_relaying_into(&mut self) -> Option<(u32, u16, u32)>;

    /// The relay has sent a packet to the call's far end, in the call's stream: the call's own
    /// packets, when the relaying ends, go on from `next` (sequence number, timestamp).
    fn relayed_into(&mut self, next: (u16, u32)) {
        let _ = next;
    }
}

/// Where a call's far end receives RTP, as a call publishes it to a native bridge.
///
/// A change away from an address already known (a re-INVITE, comedia learning another source)
/// is counted in one process-wide number, so that a relay thread reads the other far end of
/// each leg the kernel relays only when some far end has moved: reading them all every
/// [`kernel::CHECK`] touched a cache line of every call 50 times a second (a tenth of
/// Starling's CPU with 600 calls relayed in the kernel). A far end first learnt (from nothing)
/// is not a move: no leg can be relaying to it yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FarEnd(Option<SocketAddr>);

/// The far ends that have moved since Starling started ([`FarEnd::set`]).
static MOVES: AtomicU64 = AtomicU64::new(0);

impl FarEnd {
    pub fn get(self) -> Option<SocketAddr> {
        self.0
    }

    pub fn set(&mut self, to: Option<SocketAddr>) {
        if self.0.is_some() && self.0 != to {
            // The new address is written (under the media's lock) before a relay thread that
            // sees this count reads it.
            MOVES.fetch_add(1, Ordering::SeqCst);
        }
        self.0 = to;
    }

    /// How many far ends have moved so far.
    fn moves() -> u64 {
        MOVES.load(Ordering::SeqCst)
    }
}

/// A call's [`PublishedMedia`], as the relay and the driver share it.
pub type SharedMedia = Arc<Mutex<dyn PublishedMedia>>;

/// Where a native bridge sends what one call's far end sends: the other call's RTP socket and
/// far end, with the rewriting that keeps the other phone's stream continuous.
pub struct RelayTo {
    /// The other call's RTP socket, which the packets are sent from.
    pub rtp: Arc<UdpSocket>,
    /// The other call's media: where its far end is.
    pub media: SharedMedia,
    pub leg: RelayLeg,
    /// The SRTP of either call, if any: what our far end sends is opened with ours, what goes
    /// to the other far end sealed with the other call's. A leg with SRTP on either side stays
    /// in the thread (the relay in the kernel has no keys).
    pub crypto: RelayCrypto,
}

impl RelayTo {
    /// Whether relaying can begin: the other call has published the stream our packets are to
    /// continue (it is told that they now come: [`PublishedMedia::begin_relaying_into`]).
    pub fn begins(&mut self) -> bool {
        let Some((ssrc, seq, ts)) = lock(&self.media).begin_relaying_into() else { return false };
        self.leg.continue_stream(ssrc, seq, ts);
        true
    }

    /// Rewrites the plain RTP packet in `buffer[..len]` (opened already, if our far end's is
    /// SRTP) for the other call and sends it from its socket to its far end.
    pub fn forward(&mut self, buffer: &mut [u8], len: usize) {
        if let Some((target, len)) = self.rewrite(buffer, len) {
            // Nonblocking: a full socket buffer drops the packet, as it would on the wire.
            let _ = self.rtp.send_to(&buffer[..len], target);
        }
    }

    /// Rewrites the plain RTP packet in `buffer[..len]` for the other call, sealed with its
    /// SRTP if it has any (`buffer` has room for the tag): where to send it from
    /// [`RelayTo::rtp`], if anywhere (a packet the leg refuses, or a far end not known yet,
    /// goes nowhere), and its length.
    pub fn rewrite(&mut self, buffer: &mut [u8], len: usize) -> Option<(SocketAddr, usize)> {
        self.leg.relay(buffer.get_mut(..len)?).ok()?;
        let target = {
            let mut media = lock(&self.media);
            if let Some(next) = self.leg.next_out() {
                media.relayed_into(next);
            }
            media.remote()?
        };
        let len = self.crypto.seal(buffer, len).ok()?;
        Some((target, len))
    }
}

impl std::fmt::Debug for RelayTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayTo").field("rtp", &self.rtp.local_addr().ok()).finish_non_exhaustive()
    }
}

/// One direction of a natively bridged call, handed over by its driver: what its far end sends
/// to `socket` goes on through `to`.
pub struct RelayedLeg {
    /// Our RTP socket (nonblocking), which the thread reads.
    pub socket: Arc<UdpSocket>,
    /// Our RTP session (the driver's), which takes every packet first.
    pub session: Arc<Mutex<RtpSession>>,
    /// What we publish to the other call (our far end's address moves with comedia).
    pub published: SharedMedia,
    /// The other call's socket and far end, and the rewriting.
    pub to: Box<RelayTo>,
}

/// A relayed leg's RTP statistics ([`RtpSession::stats`]) as the relay last published them
/// (see [`STATS_EVERY`]), for the driver to show (chan_sip's `sip show channelstats`). A clone
/// reads the same figures, and goes on receiving them after the handle is dropped: the last
/// counters the kernel relayed are published as the leg is taken off its thread.
#[derive(Clone, Default)]
pub struct LegStats(Arc<Mutex<Option<Stats>>>);

impl LegStats {
    /// The figures last published; `None` before the first.
    pub fn get(&self) -> Option<Stats> {
        lock(&self.0).clone()
    }

    /// Publishes `stats` (the relay does; a driver may too, for what it learns itself of the
    /// session while the leg is relayed, such as RTCP).
    pub fn set(&self, stats: Stats) {
        *lock(&self.0) = Some(stats);
    }
}

impl std::fmt::Debug for LegStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("LegStats").field(&self.get()).finish()
    }
}

/// A leg on its thread.
struct Entry {
    leg: Box<RelayedLeg>,
    /// Where the leg's statistics are published ([`RelayHandle::stats`]).
    stats: LegStats,
    received: u64,
    /// Our far end's address as last published.
    remote: Option<SocketAddr>,
    /// The leg is relayed in the kernel.
    offload: Option<kernel::Offload>,
    /// The kernel cannot relay the leg between these two far ends.
    refused: Option<(SocketAddr, SocketAddr)>,
}

impl Entry {
    fn new(leg: Box<RelayedLeg>, stats: LegStats) -> Entry {
        let remote = lock(&leg.session).remote();
        Entry { leg, stats, received: 0, remote, offload: None, refused: None }
    }

    /// Takes a packet from our far end, `buffer[..len]`: where to send it on from
    /// `leg.to.rtp`, rewritten in place (opened and sealed where either leg has SRTP: `buffer`
    /// has room for the tag), and its length, if it goes on. A leg the kernel relays is taken
    /// back first (this packet is one it left alone), and handed over again once the packet
    /// has gone through; a leg with SRTP never goes to the kernel.
    fn take(
        &mut self,
        now: Instant,
        from: SocketAddr,
        buffer: &mut [u8],
        len: usize,
        kernel: Option<&KernelRelay>,
    ) -> Option<(SocketAddr, usize)> {
        let kernel = kernel.filter(|_| self.leg.to.crypto.is_plain());
        if let Some(kernel) = kernel {
            // A packet the session is sure to refuse (strictrtp, locked onto another source)
            // leaves the leg in the kernel: it is only counted.
            if self.offload.is_none() || lock(&self.leg.session).may_take_from(now, from) {
                kernel.take_back(self);
            }
        }
        let (target, len) = self.relay(now, from, buffer, len)?;
        if let Some(kernel) = kernel.filter(|_| self.offload.is_none()) {
            // Only the source strictrtp has learned (after probation, or the SDP's address)
            // goes to the kernel.
            if lock(&self.leg.session).source() == Some(from) {
                kernel.hand_over(self, from, target);
            }
        }
        Some((target, len))
    }

    fn relay(&mut self, now: Instant, from: SocketAddr, buffer: &mut [u8], len: usize) -> Option<(SocketAddr, usize)> {
        let leg = &mut self.leg;
        // SRTP from our far end: opened with our key. One that is not authentic (or a replay)
        // goes nowhere, counted by the call's SRTP; its SRTCP is for our session alone.
        let len = match leg.to.crypto.open(buffer.get_mut(..len)?) {
            Ok(Opened::Rtp(len)) => len,
            Ok(Opened::Rtcp(len)) => {
                let _ = lock(&leg.session).handle_rtcp(now, &buffer[..len]);
                return None;
            }
            Err(_) => return None,
        };
        let packet = &buffer[..len];
        let remote = {
            let mut session = lock(&leg.session);
            let handled = session.handle_rtp(now, from, packet);
            if let Err(ReceiveError::Stray(_)) = handled {
                // Published at once (a lock and a copy: less than the packet cost to receive).
                self.stats.set(session.stats());
            }
            handled.ok()?;
            self.received += 1;
            if self.received.is_multiple_of(STATS_EVERY) {
                self.stats.set(session.stats());
            }
            session.remote()
        };
        if remote != self.remote {
            // Comedia learnt where our far end really is: the other call sends there.
            self.remote = remote;
            lock(&leg.published).set_remote(remote);
        }
        leg.to.rewrite(buffer, len)
    }
}

/// Our ids are unique counters: one multiplication spreads them (SipHash is not needed).
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A thread's legs, by id.
type Legs = HashMap<u64, Entry, BuildHasherDefault<IdHasher>>;

enum Command {
    Add(u64, Box<RelayedLeg>, LegStats),
    Remove(u64),
    Stop,
}

/// One relay thread's end: the commands waiting for it, and the eventfd that wakes it.
struct Inner {
    wake: OwnedFd,
    commands: Mutex<Vec<Command>>,
    /// The relay in the kernel, where it could be loaded.
    kernel: Option<Arc<KernelRelay>>,
}

impl Inner {
    fn send(&self, command: Command) {
        lock(&self.commands).push(command);
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a u64 to an eventfd we own.
        unsafe { libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    fn take_commands(&self) -> Vec<Command> {
        std::mem::take(&mut *lock(&self.commands))
    }

    fn kernel(&self) -> Option<&KernelRelay> {
        self.kernel.as_deref()
    }

    /// A leg taken off the thread: taken back from the kernel first.
    fn release(&self, mut entry: Entry) {
        if let Some(kernel) = self.kernel() {
            kernel.take_back(&mut entry);
        }
    }

    /// Looks after the legs in the kernel (`next`: when): every [`kernel::CHECK`] whether
    /// their other far ends moved, every [`kernel::SYNC`] their counters. How long the thread
    /// may wait for packets before it is due again (forever without the kernel).
    fn tend(&self, legs: &mut Legs, next: &mut Tending, now: Instant) -> Option<Duration> {
        let kernel = self.kernel()?;
        if now >= next.check {
            next.check = now + kernel::CHECK;
            let take_in = now >= next.sync;
            if take_in {
                next.sync = now + kernel::SYNC;
            }
            // Read before the legs: a move counted while they are looked at is looked at again.
            let moves = FarEnd::moves();
            if take_in || moves != next.moves {
                next.moves = moves;
                for entry in legs.values_mut() {
                    kernel.tend(entry, take_in);
                }
            }
        }
        Some(next.check.saturating_duration_since(now))
    }
}

/// When a thread next looks after its legs in the kernel ([`Inner::tend`]).
struct Tending {
    check: Instant,
    sync: Instant,
    /// [`FarEnd::moves`] when the legs were last looked at.
    moves: u64,
}

impl Tending {
    fn now() -> Tending {
        let now = Instant::now();
        Tending { check: now, sync: now, moves: FarEnd::moves() }
    }
}

/// How the relay threads wait for packets and move them (the module's doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    IoUring,
    Epoll,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::IoUring => "io_uring",
            Backend::Epoll => "epoll",
        })
    }
}

/// The relay threads ([`Relay::threads_for_this_machine`]); each leg is given to one of
/// them in turn.
pub struct Relay {
    workers: Vec<Arc<Inner>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    next_id: AtomicU64,
}

/// More threads than this buy nothing but wake-ups: one relays ~150,000 packets a second.
pub const MAX_THREADS: usize = 4;

/// A leg being relayed; dropping it takes the leg (and its sockets) off the thread.
pub struct RelayHandle {
    inner: Arc<Inner>,
    id: u64,
    stats: LegStats,
}

impl RelayHandle {
    /// The leg's statistics as the relay publishes them.
    pub fn stats(&self) -> &LegStats {
        &self.stats
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        self.inner.send(Command::Remove(self.id));
    }
}

impl std::fmt::Debug for RelayHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayHandle").field("id", &self.id).finish()
    }
}

fn cvt(result: libc::c_int) -> io::Result<libc::c_int> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// The relay threads' nice value. A relay thread's round is short and bounded (it sleeps out
/// each [`BATCH`]), but when it waits behind other threads for a core its sockets fill and the
/// calls lose packets: at 1,500 calls beside the load generator, 2 % of them at nice 0 and none
/// at nice -10 (benches/RESULTS.md, session 7). Asterisk gets the same from its `-p`
/// (realtime priority for the whole process), which Debian's asterisk.service sets.
pub const NICE: libc::c_int = -10;

/// Raises the calling thread to [`NICE`] where the process may (root, or `CAP_SYS_NICE`, or an
/// `RLIMIT_NICE` that allows it); elsewhere it stays at the default.
fn raise_priority() {
    // SAFETY: plain syscalls on the calling thread.
    let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, NICE) };
    if result < 0 {
        let error = io::Error::last_os_error();
        tracing::debug!("RTP relay: the thread stays at its priority (nice {NICE}: {error})");
    }
}

/// A relay thread's start: says on `ready` whether its epoll or ring could be made, and runs
/// it if so.
fn serve<T>(ready: mpsc::SyncSender<io::Result<()>>, opened: io::Result<T>, run: impl FnOnce(T)) {
    match opened {
        Ok(state) => {
            let _ = ready.send(Ok(()));
            run(state);
        }
        Err(e) => {
            let _ = ready.send(Err(e));
        }
    }
}

/// Sleeps out the rest of a round that began at `round`.
fn finish_round(round: Instant) {
    let spent = round.elapsed();
    if spent < BATCH {
        std::thread::sleep(BATCH - spent);
    }
}

impl Relay {
    /// Starts `threads` threads (at least one) on io_uring, or on epoll where io_uring cannot
    /// be had, with the relay in the kernel where it can be loaded (the reasons are logged).
    pub fn start(threads: usize) -> io::Result<Relay> {
        let kernel = match KernelRelay::load() {
            Ok(kernel) => {
                tracing::info!("RTP relay: calls between far ends on this host are relayed in the kernel (tc on lo)");
                Some(Arc::new(kernel))
            }
            Err(e) => {
                tracing::debug!("RTP relay: not in the kernel ({e})");
                None
            }
        };
        match Relay::start_with(Backend::IoUring, threads, kernel.clone()) {
            Ok(relay) => Ok(relay),
            Err(e) => {
                tracing::info!("RTP relay: io_uring is not available ({e}); relaying with epoll");
                Relay::start_with(Backend::Epoll, threads, kernel)
            }
        }
    }

    /// Starts `threads` threads (at least one) on `backend`, handing legs to `kernel` if given.
    pub fn start_with(backend: Backend, threads: usize, kernel: Option<Arc<KernelRelay>>) -> io::Result<Relay> {
        let mut relay = Relay { workers: Vec::new(), threads: Mutex::new(Vec::new()), next_id: AtomicU64::new(0) };
        for n in 0..threads.max(1) {
            // SAFETY: a plain syscall; the fd returned is ours alone.
            let wake = unsafe { OwnedFd::from_raw_fd(cvt(libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK))?) };
            let inner = Arc::new(Inner { wake, commands: Mutex::new(Vec::new()), kernel: kernel.clone() });
            let thread_inner = inner.clone();
            // The thread sets up its own epoll or ring (an io_uring is best used by the
            // thread that made it) and says whether it could.
            let (ready, started) = mpsc::sync_channel(1);
            let thread = std::thread::Builder::new().name(format!("sip-rtp-relay{n}")).spawn(move || {
                // Every relayed call goes through these threads: a panic ends the process (70).
                starling_core::panic::critical(&format!("The RTP relay thread {n}"), move || {
                    raise_priority();
                    let inner = &*thread_inner;
                    match backend {
                        Backend::IoUring => serve(ready, uring::open(inner), uring::Thread::run),
                        Backend::Epoll => serve(ready, epoll::open(inner), |epoll| epoll::run(epoll, inner)),
                    }
                })
            })?;
            // `relay` stops the threads started so far if this one fails (its drop).
            let setup = started.recv().unwrap_or_else(|_| Err(io::Error::other("the relay thread ended")));
            if let Err(e) = setup {
                let _ = thread.join();
                return Err(e);
            }
            relay.workers.push(inner);
            lock(&relay.threads).push(thread);
        }
        tracing::debug!("RTP relay: {} thread(s) on {backend}", relay.workers.len());
        Ok(relay)
    }

    /// One thread for two cores, at most [`MAX_THREADS`]: the relay shares the machine with
    /// the rest of Starling (and, on a small box, with whatever else runs there). Two threads
    /// on two cores relayed no more, and starved the other programs into losing packets.
    pub fn threads_for_this_machine() -> usize {
        (std::thread::available_parallelism().map_or(1, |n| n.get()) / 2).clamp(1, MAX_THREADS)
    }

    /// Hands a leg to a thread until the handle is dropped.
    pub fn add(&self, leg: RelayedLeg) -> RelayHandle {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let inner = self.workers[(id % self.workers.len() as u64) as usize].clone();
        let stats = LegStats::default();
        inner.send(Command::Add(id, Box::new(leg), stats.clone()));
        RelayHandle { inner, id, stats }
    }

    /// Stops the threads and waits for them (module unload: their code must not outlive the
    /// library). Legs still relayed are dropped.
    pub fn stop(&self) {
        for inner in &self.workers {
            inner.send(Command::Stop);
        }
        for thread in std::mem::take(&mut *lock(&self.threads)) {
            let _ = thread.join();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_media::relay::RelayLeg;
    use starling_media::session::SessionConfig;
    use starling_media::srtp::{MasterKey, SharedSrtp, Srtp, Suite};
    use std::time::SystemTime;

    fn rtp(seq: u16) -> Vec<u8> {
        rtp_with(0x1234, seq, u32::from(seq) * 160, 0)
    }

    fn rtp_with(ssrc: u32, seq: u16, ts: u32, pt: u8) -> Vec<u8> {
        rtp_rs::RtpPacketBuilder::new()
            .payload_type(pt)
            .ssrc(ssrc)
            .sequence(seq.into())
            .timestamp(ts)
            .payload(&[0xd5; 160])
            .build()
            .unwrap()
    }

    /// On io_uring, which CI's kernel has: a machine without it fails here rather than pass
    /// without testing (unless it opts out: `starling_testing`).
    fn on_io_uring(test: fn(Relay)) {
        let relay = Relay::start_with(Backend::IoUring, 2, None)
            .map_err(|e| format!("Linux 6.0+, not forbidden by seccomp: {e}"));
        if let Some(relay) = starling_testing::needs("io_uring", relay) {
            test(relay);
        }
    }

    #[test]
    fn packets_are_relayed_counted_and_stop_with_the_handle_on_io_uring() {
        on_io_uring(relayed_counted_and_stopped);
    }

    #[test]
    fn packets_are_relayed_counted_and_stop_with_the_handle_on_epoll() {
        relayed_counted_and_stopped(Relay::start_with(Backend::Epoll, 2, None).unwrap());
    }

    #[test]
    fn a_burst_is_relayed_whole_and_stopping_leaves_the_socket_to_the_pvt_on_io_uring() {
        on_io_uring(burst_then_stop);
    }

    #[test]
    fn a_burst_is_relayed_whole_and_stopping_leaves_the_socket_to_the_pvt_on_epoll() {
        burst_then_stop(Relay::start_with(Backend::Epoll, 1, None).unwrap());
    }

    /// What a call publishes, as a driver keeps it (chan_sip: its pvt's `MediaInfo`).
    #[derive(Default)]
    struct Media {
        remote: FarEnd,
        /// Where the relay last said the stream it sends here goes on.
        relayed: Option<(u16, u32)>,
    }

    impl PublishedMedia for Media {
        fn far_end(&self) -> FarEnd {
            self.remote
        }
        fn far_end_mut(&mut self) -> &mut FarEnd {
            &mut self.remote
        }
        fn begin_relaying_into(&mut self) -> Option<(u32, u16, u32)> {
            None
        }
        fn relayed_into(&mut self, next: (u16, u32)) {
            self.relayed = Some(next);
        }
    }

    /// The packets received as the relay last published them.
    fn received(handle: &RelayHandle) -> u64 {
        handle.stats().get().map_or(0, |s| s.received_packets)
    }

    /// The strays as the relay last published them.
    fn strays(handle: &RelayHandle) -> u64 {
        handle.stats().get().map_or(0, |s| s.stray_packets)
    }

    /// A relayed leg: far end A → `ours` → out of `other` → far end B.
    struct Leg {
        ours: Arc<UdpSocket>,
        other: Arc<UdpSocket>,
        far_a: UdpSocket,
        far_b: UdpSocket,
        session: Arc<Mutex<RtpSession>>,
        /// What the other call publishes: where `other` sends.
        other_media: Arc<Mutex<Media>>,
    }

    impl Leg {
        /// Far end A sends from the address its SDP names.
        fn new() -> Leg {
            Leg::with_sdp(true)
        }

        /// Far end A sends from elsewhere than its SDP's address (behind NAT): strictrtp
        /// learns it after probation.
        fn behind_nat() -> Leg {
            Leg::with_sdp(false)
        }

        fn with_sdp(at_sdp_address: bool) -> Leg {
            let bind = || UdpSocket::bind("127.0.0.1:0").unwrap();
            let (ours, other) = (Arc::new(bind()), Arc::new(bind()));
            ours.set_nonblocking(true).unwrap();
            other.set_nonblocking(true).unwrap();
            let far_b = bind();
            far_b.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let far_a = bind();
            let mut session = RtpSession::new(SessionConfig::default(), Instant::now(), SystemTime::now(), 7);
            let sdp = if at_sdp_address { far_a.local_addr().unwrap() } else { "127.0.0.1:9".parse().unwrap() };
            session.set_remote(sdp, false);
            let session = Arc::new(Mutex::new(session));
            let other_media =
                Arc::new(Mutex::new(Media { remote: FarEnd(Some(far_b.local_addr().unwrap())), relayed: None }));
            Leg { ours, other, far_a, far_b, session, other_media }
        }

        /// Whether nothing reaches far end B within `wait`.
        fn nothing_at_b(&self, wait: Duration) -> bool {
            self.far_b.set_read_timeout(Some(wait)).unwrap();
            let mut buf = [0u8; 2048];
            let nothing = self.far_b.recv_from(&mut buf).is_err();
            self.far_b.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            nothing
        }

        fn relay_on(&self, relay: &Relay) -> RelayHandle {
            self.relay_with(relay, RelayLeg::new())
        }

        fn relay_with(&self, relay: &Relay, rewrite: RelayLeg) -> RelayHandle {
            self.relay_crypto(relay, rewrite, RelayCrypto::default())
        }

        fn relay_crypto(&self, relay: &Relay, rewrite: RelayLeg, crypto: RelayCrypto) -> RelayHandle {
            relay.add(RelayedLeg {
                socket: self.ours.clone(),
                session: self.session.clone(),
                published: Arc::new(Mutex::new(Media::default())),
                to: Box::new(RelayTo {
                    rtp: self.other.clone(),
                    media: self.other_media.clone(),
                    leg: rewrite,
                    crypto,
                }),
            })
        }

        fn send(&self, seq: u16) {
            self.far_a.send_to(&rtp(seq), self.ours.local_addr().unwrap()).unwrap();
        }

        /// The next packet at far end B, checked to have come from `other` untouched.
        fn expect(&self, seq: u16) {
            let mut buf = [0u8; 2048];
            let (len, from) = self.far_b.recv_from(&mut buf).unwrap_or_else(|e| panic!("packet {seq} relayed: {e}"));
            assert_eq!(from, self.other.local_addr().unwrap(), "sent from the other call's socket");
            assert_eq!(&buf[..len], &rtp(seq)[..], "one stream passes through untouched");
        }

        /// The next packet at far end B, from `other`: (SSRC, sequence, timestamp, payload
        /// type), its payload checked.
        fn next_at_b(&self) -> (u32, u16, u32, u8) {
            let mut buf = [0u8; 2048];
            let (len, from) = self.far_b.recv_from(&mut buf).expect("a packet relayed");
            assert_eq!(from, self.other.local_addr().unwrap(), "sent from the other call's socket");
            let r = rtp_rs::RtpReader::new(&buf[..len]).unwrap();
            assert_eq!(r.payload(), &[0xd5; 160]);
            (r.ssrc(), r.sequence_number().into(), r.timestamp(), r.payload_type())
        }

        /// Whether a packet waits in our socket (for the pvt) within `wait`.
        fn waiting_in_ours(&self, wait: Duration) -> bool {
            let deadline = Instant::now() + wait;
            let mut buf = [0u8; 2048];
            while Instant::now() < deadline {
                if self.ours.recv_from(&mut buf).is_ok() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            false
        }
    }

    /// The session counts what came; dropping the handle stops the relaying.
    fn relayed_counted_and_stopped(relay: Relay) {
        let leg = Leg::new();
        let handle = leg.relay_on(&relay);
        for seq in 0..60u16 {
            leg.send(seq);
            leg.expect(seq);
        }
        assert_eq!(lock(&leg.session).stats().received_packets, 60);
        assert_eq!(received(&handle), 50, "published at 50");
        drop(handle);
        std::thread::sleep(Duration::from_millis(20));
        leg.send(61);
        leg.far_b.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let mut buf = [0u8; 2048];
        assert!(leg.far_b.recv_from(&mut buf).is_err(), "not relayed once the handle is gone");
        assert!(leg.waiting_in_ours(Duration::from_secs(1)), "the packet waits in our socket for the pvt");
        relay.stop();
    }

    /// More packets at once than io_uring's buffers (16 in tests): they wait in the sockets
    /// and are all relayed, in order. A relay stopped with legs on it leaves their sockets
    /// to be read again.
    fn burst_then_stop(relay: Relay) {
        let legs: Vec<Leg> = (0..4).map(|_| Leg::new()).collect();
        let handles: Vec<RelayHandle> = legs.iter().map(|leg| leg.relay_on(&relay)).collect();
        std::thread::sleep(Duration::from_millis(20));
        for seq in 0..100u16 {
            for leg in &legs {
                leg.send(seq);
            }
        }
        for leg in &legs {
            for seq in 0..100u16 {
                leg.expect(seq);
            }
            assert_eq!(lock(&leg.session).stats().received_packets, 100);
        }
        relay.stop();
        for leg in &legs {
            leg.send(100);
            assert!(leg.waiting_in_ours(Duration::from_secs(1)), "the relay let go of the socket");
        }
        drop(handles);
    }

    /// The relay in the kernel needs root and this crate built with clang, as in CI: a machine
    /// without them fails here rather than pass without testing (unless it opts out:
    /// `starling_testing`).
    fn in_the_kernel(test: fn(Relay, &KernelRelay)) {
        let kernel = KernelRelay::load().map_err(|e| format!("root, Linux 6.6+, clang at build time: {e}"));
        if let Some(kernel) = starling_testing::needs("kernel_relay", kernel) {
            let kernel = Arc::new(kernel);
            test(Relay::start_with(Backend::IoUring, 1, Some(kernel.clone())).unwrap(), &kernel);
            test(Relay::start_with(Backend::Epoll, 1, Some(kernel.clone())).unwrap(), &kernel);
        }
    }

    /// After its first packet a leg is the kernel's: the packets go on rewritten as the relay
    /// leg would (SSRC, sequence numbers and timestamps continuing the stream the other phone
    /// hears, payload types mapped); its counters reach the session and its published statistics; a new
    /// SSRC is taken back by the thread and the stream stays continuous; dropping the handle
    /// takes the leg out of the kernel.
    #[test]
    fn a_leg_between_far_ends_on_this_host_is_relayed_in_the_kernel() {
        in_the_kernel(|relay, kernel| {
            let leg = Leg::new();
            let mut rewrite = RelayLeg::new();
            rewrite.continue_stream(0x5555, 700, 16_000);
            rewrite.map_payload_type(0, Some(8));
            let handle = leg.relay_with(&relay, rewrite);
            let send = |ssrc: u32, seq: u16, ts: u32| {
                leg.far_a.send_to(&rtp_with(ssrc, seq, ts, 0), leg.ours.local_addr().unwrap()).unwrap()
            };
            send(0x1234, 10, 1600);
            assert_eq!(leg.next_at_b(), (0x5555, 700, 16_000, 8), "the first packet, through the thread");
            assert_eq!(kernel.legs(), (1, 0), "the leg is handed to the kernel");
            for i in 1..100u16 {
                send(0x1234, 10 + i, 1600 + u32::from(i) * 160);
                assert_eq!(leg.next_at_b(), (0x5555, 700 + i, 16_000 + u32::from(i) * 160, 8), "packet {i}");
            }
            assert_eq!(kernel.legs(), (1, 99), "the kernel relayed the rest");
            std::thread::sleep(kernel::SYNC + Duration::from_millis(200));
            assert_eq!(lock(&leg.session).stats().received_packets, 100, "the kernel's count, taken in");
            assert_eq!((lock(&leg.session).stats().lost_packets), 0);
            assert_eq!(received(&handle), 100, "and published");
            // A new stream from far end A: the thread takes the leg back for it.
            send(0x9999, 40_000, 123_456);
            assert_eq!(leg.next_at_b(), (0x5555, 800, 16_000 + 100 * 160, 8), "continuing the stream");
            send(0x9999, 40_001, 123_456 + 160);
            assert_eq!(leg.next_at_b(), (0x5555, 801, 16_000 + 101 * 160, 8));
            assert_eq!(kernel.legs().0, 1, "handed over again");
            // The other far end moves (a re-INVITE): within a CHECK the packets go there.
            let far_c = UdpSocket::bind("127.0.0.1:0").unwrap();
            far_c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            lock(&leg.other_media).remote.set(Some(far_c.local_addr().unwrap()));
            std::thread::sleep(kernel::CHECK * 3);
            send(0x9999, 40_002, 123_456 + 320);
            let mut buf = [0u8; 2048];
            let (_, from) = far_c.recv_from(&mut buf).expect("relayed to where the other far end moved");
            assert_eq!(from, leg.other.local_addr().unwrap());
            assert_eq!(kernel.legs().0, 1, "and handed over again");
            drop(handle);
            std::thread::sleep(Duration::from_millis(50));
            assert_eq!(kernel.legs().0, 0, "taken out of the kernel with the handle");
            send(0x9999, 40_003, 123_456 + 480);
            assert!(leg.waiting_in_ours(Duration::from_secs(1)), "the packet waits in our socket for the pvt");
            relay.stop();
        });
    }

    /// strictrtp on the relay's path: far end A, behind NAT, is relayed from its 5th packet
    /// in sequence (probation 4), and only then handed to the kernel; a stranger's packets
    /// reach the thread, are counted as stray (published at once) and go nowhere; the
    /// party's next packet goes on (and back to the kernel).
    fn strictrtp_on_the_relay(relay: Relay, kernel: Option<&KernelRelay>) {
        let leg = Leg::behind_nat();
        let handle = leg.relay_on(&relay);
        let in_kernel = || kernel.map(|k| k.legs().0);
        for seq in 0..4u16 {
            leg.send(seq);
            std::thread::sleep(Duration::from_millis(15));
        }
        assert!(leg.nothing_at_b(Duration::from_millis(200)), "not relayed in probation");
        assert_eq!(in_kernel(), kernel.map(|_| 0), "not handed to the kernel in probation");
        for seq in 4..30u16 {
            leg.send(seq);
            leg.expect(seq);
        }
        assert_eq!(in_kernel(), kernel.map(|_| 1), "learned: handed to the kernel");
        let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
        for seq in 0..10u16 {
            stranger.send_to(&rtp(500 + seq), leg.ours.local_addr().unwrap()).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(leg.nothing_at_b(Duration::from_millis(200)), "the stranger's packets go nowhere");
        assert_eq!(lock(&leg.session).stats().stray_packets, 14, "the 4 in probation and the stranger's 10");
        assert_eq!(strays(&handle), 14, "and published at once");
        leg.send(30);
        leg.expect(30);
        assert_eq!(in_kernel(), kernel.map(|_| 1), "the party's next packet: back in the kernel");
        drop(handle);
        std::thread::sleep(Duration::from_millis(50));
        relay.stop();
    }

    /// One SRTP leg's keys: the phone's context and the call's (shared with the relay).
    fn srtp_leg(seed: u8) -> (Srtp, SharedSrtp) {
        let suite = Suite::AesCm128HmacSha1_80;
        let phone = MasterKey::generate(suite, |b| b.fill(seed));
        let ours = MasterKey::generate(suite, |b| b.fill(seed.wrapping_add(100)));
        (Srtp::new(&phone, &ours).unwrap(), Srtp::new(&ours, &phone).unwrap().into_shared())
    }

    /// SRTP on both legs, through the thread: far end A's SRTP is opened with A's leg's key
    /// (its SRTCP taken by the session, not relayed), sealed with B's, and B opens every
    /// packet; a forged packet is dropped and counted; the kernel (where it runs) never gets
    /// the leg. Then SRTP to plain.
    fn srtp_through_the_thread(relay: Relay, kernel: Option<&KernelRelay>) {
        let leg = Leg::new();
        let ((mut phone_a, ours_a), (mut phone_b, ours_b)) = (srtp_leg(1), srtp_leg(2));
        let crypto = RelayCrypto { from: Some(ours_a.clone()), to: Some(ours_b) };
        let handle = leg.relay_crypto(&relay, RelayLeg::new(), crypto);
        let to_ours = leg.ours.local_addr().unwrap();
        for seq in 0..40u16 {
            let mut wire = rtp(seq);
            phone_a.protect_rtp(&mut wire).unwrap();
            leg.far_a.send_to(&wire, to_ours).unwrap();
            if seq == 20 {
                let mut forged = wire.clone();
                forged[30] ^= 1;
                leg.far_a.send_to(&forged, to_ours).unwrap();
                let mut report = vec![0x81, 0xc9, 0, 7, 0, 0, 0x12, 0x34];
                report.extend_from_slice(&[0; 24]);
                phone_a.protect_rtcp(&mut report).unwrap();
                leg.far_a.send_to(&report, to_ours).unwrap();
            }
            let mut buf = [0u8; 2048];
            let (len, _) = leg.far_b.recv_from(&mut buf).unwrap_or_else(|e| panic!("packet {seq} relayed: {e}"));
            assert_ne!(&buf[12..172], &rtp(seq)[12..], "encrypted towards B");
            let len = phone_b.unprotect_rtp(&mut buf[..len]).unwrap_or_else(|e| panic!("B opens packet {seq}: {e}"));
            assert_eq!(&buf[..len], &rtp(seq)[..]);
        }
        assert!(leg.nothing_at_b(Duration::from_millis(100)), "neither the forged packet nor SRTCP went on");
        assert_eq!(lock(&ours_a).failures(), 1, "the forged packet, counted");
        assert_eq!(lock(&leg.session).stats().received_packets, 40);
        assert_eq!(kernel.map(|k| k.legs().0), kernel.map(|_| 0), "an SRTP leg stays in the thread");
        assert_eq!(
            lock(&leg.other_media).relayed,
            Some((40, 40 * 160)),
            "the other call hears where its stream goes on when the relaying ends"
        );
        drop(handle);
        std::thread::sleep(Duration::from_millis(50));
        // SRTP to plain: B gets the packets in clear.
        let leg = Leg::new();
        let (mut phone_a, ours_a) = srtp_leg(3);
        let handle = leg.relay_crypto(&relay, RelayLeg::new(), RelayCrypto { from: Some(ours_a), to: None });
        for seq in 0..10u16 {
            let mut wire = rtp(seq);
            phone_a.protect_rtp(&mut wire).unwrap();
            leg.far_a.send_to(&wire, leg.ours.local_addr().unwrap()).unwrap();
            leg.expect(seq);
        }
        assert_eq!(kernel.map(|k| k.legs().0), kernel.map(|_| 0), "nor an SRTP to plain one");
        drop(handle);
        std::thread::sleep(Duration::from_millis(50));
        relay.stop();
    }

    #[test]
    fn srtp_legs_are_opened_and_sealed_on_the_relay_thread() {
        srtp_through_the_thread(Relay::start_with(Backend::Epoll, 1, None).unwrap(), None);
        on_io_uring(|relay| srtp_through_the_thread(relay, None));
    }

    #[test]
    fn srtp_legs_never_go_to_the_relay_in_the_kernel() {
        in_the_kernel(|relay, kernel| srtp_through_the_thread(relay, Some(kernel)));
    }

    /// The statistics outlive the handle: what the kernel relayed since the last [`kernel::SYNC`]
    /// is published as the leg is taken back, for a driver that still shows them.
    #[test]
    fn the_kernel_s_last_counters_are_published_after_the_handle_is_dropped() {
        in_the_kernel(|relay, kernel| {
            let leg = Leg::new();
            let handle = leg.relay_on(&relay);
            let stats = handle.stats().clone();
            for seq in 0..20u16 {
                leg.send(seq);
                leg.expect(seq);
            }
            assert_eq!(kernel.legs(), (1, 19), "all but the first in the kernel");
            assert_eq!(stats.get(), None, "nothing published yet (no stray, fewer than 50, no sync)");
            drop(handle);
            let deadline = Instant::now() + Duration::from_secs(2);
            while stats.get().map(|s| s.received_packets) != Some(20) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            assert_eq!(stats.get().map(|s| s.received_packets), Some(20), "taken back and published");
            assert_eq!(kernel.legs().0, 0);
            relay.stop();
        });
    }

    /// Once learning is over (5 s) a stranger's packets do not even take the leg out of the
    /// kernel: counted in the thread, and the kernel's entry relays on.
    #[test]
    fn a_stranger_leaves_a_locked_leg_in_the_kernel() {
        in_the_kernel(|relay, kernel| {
            let leg = Leg::new();
            let handle = leg.relay_on(&relay);
            let started = Instant::now();
            let mut seq = 0u16;
            while started.elapsed() < starling_media::session::STRICT_RTP_LEARN_TIMEOUT + Duration::from_millis(200) {
                leg.send(seq);
                leg.expect(seq);
                seq += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            let (legs, relayed) = kernel.legs();
            assert_eq!((legs, relayed), (1, u64::from(seq) - 1), "all but the first in the kernel");
            let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
            for i in 0..10u16 {
                stranger.send_to(&rtp(900 + i), leg.ours.local_addr().unwrap()).unwrap();
            }
            assert!(leg.nothing_at_b(Duration::from_millis(200)), "the stranger's packets go nowhere");
            assert_eq!(strays(&handle), 10, "counted and published");
            leg.send(seq);
            leg.expect(seq);
            assert_eq!(kernel.legs(), (1, relayed + 1), "the same entry relays on");
            drop(handle);
            std::thread::sleep(Duration::from_millis(50));
            relay.stop();
        });
    }

    #[test]
    fn strictrtp_on_the_relay_thread() {
        strictrtp_on_the_relay(Relay::start_with(Backend::Epoll, 1, None).unwrap(), None);
        on_io_uring(|relay| strictrtp_on_the_relay(relay, None));
    }

    #[test]
    fn strictrtp_on_the_relay_in_the_kernel() {
        in_the_kernel(|relay, kernel| strictrtp_on_the_relay(relay, Some(kernel)));
    }

    /// What follows an RTP packet's fixed header.
    #[derive(Clone, Copy)]
    struct Shape {
        csrcs: u8,
        ext_words: Option<u16>,
        padding: u8,
        payload: usize,
    }

    /// An RTP packet with what the fixed header may be followed by: CSRCs, a header
    /// extension, padding.
    fn rtp_full(ssrc: u32, seq: u16, ts: u32, pt: u8, marker: bool, shape: &Shape) -> Vec<u8> {
        let Shape { csrcs, ext_words, padding, payload } = *shape;
        let mut p = vec![0x80 | csrcs, pt | if marker { 0x80 } else { 0 }];
        if ext_words.is_some() {
            p[0] |= 0x10;
        }
        if padding > 0 {
            p[0] |= 0x20;
        }
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        for c in 0..u32::from(csrcs) {
            p.extend_from_slice(&(0xc0c0_0000 + c).to_be_bytes());
        }
        if let Some(words) = ext_words {
            p.extend_from_slice(&[0xbe, 0xde]);
            p.extend_from_slice(&words.to_be_bytes());
            p.extend(std::iter::repeat_n(0xee, usize::from(words) * 4));
        }
        p.extend((0..payload).map(|i| i as u8));
        if padding > 0 {
            p.extend(std::iter::repeat_n(0, usize::from(padding) - 1));
            p.push(padding);
        }
        p
    }

    /// Random packets (CSRCs, extensions, padding, markers, gaps, reordering, an unmapped
    /// payload type, new SSRCs now and then) come out of the kernel byte for byte as the
    /// relay leg makes them in the thread, and the session counts them as it would have.
    #[test]
    fn the_kernel_rewrites_and_counts_as_the_thread_does() {
        in_the_kernel(|relay, _kernel| {
            let configure = || {
                let mut rewrite = RelayLeg::new();
                rewrite.continue_stream(0x5555, 700, 16_000);
                rewrite.map_payload_type(0, Some(8));
                rewrite.map_payload_type(101, Some(96));
                rewrite.map_payload_type(13, None);
                rewrite
            };
            let leg = Leg::new();
            let handle = leg.relay_with(&relay, configure());
            let mut expected = configure();
            let mut mirror = RtpSession::new(SessionConfig::default(), Instant::now(), SystemTime::now(), 8);
            let from = leg.far_a.local_addr().unwrap();
            mirror.set_remote(from, false);
            leg.far_b.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
            let mut seed = 0x5eed_u64;
            let mut random = |n: u64| {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                (seed >> 33) % n
            };
            let (mut ssrc, mut seq, mut ts) = (0x1234u32, 10u16, 1600u32);
            for i in 0..400 {
                if random(60) == 0 {
                    ssrc = ssrc.wrapping_mul(31).wrapping_add(7);
                    seq = random(65_536) as u16;
                    ts = random(1 << 32) as u32;
                }
                // Mostly in order; now and then a gap, or one from the past.
                let this_seq = match random(20) {
                    0 => seq.wrapping_sub(3),
                    1 => {
                        seq = seq.wrapping_add(2);
                        seq
                    }
                    _ => seq,
                };
                seq = seq.wrapping_add(1);
                ts = ts.wrapping_add(160);
                let pt = [0, 0, 0, 0, 101, 13][random(6) as usize];
                let ext = (random(4) == 0).then(|| random(3) as u16);
                let padding = if random(5) == 0 { 1 + random(4) as u8 } else { 0 };
                let shape = Shape { csrcs: random(3) as u8, ext_words: ext, padding, payload: random(200) as usize };
                let packet = rtp_full(ssrc, this_seq, ts, pt, random(8) == 0, &shape);
                let _ = mirror.handle_rtp(Instant::now(), from, &packet);
                let mut want = packet.clone();
                let relayed = expected.relay(&mut want).is_ok();
                leg.far_a.send_to(&packet, leg.ours.local_addr().unwrap()).unwrap();
                if relayed {
                    let mut buf = [0u8; 2048];
                    let (len, _) = leg.far_b.recv_from(&mut buf).unwrap_or_else(|e| panic!("packet {i} relayed: {e}"));
                    assert_eq!(
                        &buf[..len],
                        &want[..],
                        "packet {i} (ssrc {ssrc:#x}, seq {this_seq}, pt {pt}, ext {ext:?}, padding {padding})"
                    );
                }
            }
            std::thread::sleep(kernel::SYNC + Duration::from_millis(200));
            let (got, want) = (lock(&leg.session).stats(), mirror.stats());
            assert_eq!((got.received_packets, got.lost_packets), (want.received_packets, want.lost_packets));
            drop(handle);
            relay.stop();
        });
    }
}
