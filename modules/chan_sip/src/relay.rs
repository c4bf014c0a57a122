//! The RTP relay threads: where the packets of natively bridged calls go, read and sent on
//! without a trip through tokio.
//!
//! A bridged call's pvt hands its RTP socket over to one of them once relaying has begun (the other
//! call has published the stream to continue). From then on this thread reads the socket,
//! runs each packet through the call's RTP session (receive statistics, comedia, strictrtp,
//! the RTP timeout: the same [`RtpSession::handle_rtp`] the pvt would run) and through the
//! relay leg (crates/media's [`RelayLeg`](starling_media::relay::RelayLeg): payload types
//! mapped, one continuous stream), and sends it from the other call's socket to the other far
//! end. The pvt takes its socket back when the bridge ends ([`RelayHandle`]'s drop).
//!
//! Why threads of their own: through tokio every packet wakes a task (and often a parked
//! worker thread), which costs more than the packet. Here one wake-up serves every socket
//! that is ready: the thread waits with epoll, serves what is ready, then sleeps out the rest
//! of [`BATCH`], so that at a few hundred packets a millisecond they are read and sent in one
//! round, at the price of at most that much delay. epoll is libc's, level-triggered, and a
//! ready socket is read once a round: mio's edge-triggered epoll (and `recvmmsg`, which
//! tries the next datagram too) needs a second read per packet to find the socket empty,
//! and a phone sends one packet in 20 ms. What is left waits for the next round.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use starling_core::tracing;
use starling_media::session::{RtpSession, Stats};

use crate::pvt::{MediaInfo, RelayTo};

/// How long the thread gathers packets between two rounds.
pub const BATCH: Duration = Duration::from_millis(1);

const EVENTS: usize = 1024;
/// The epoll key of the thread's own eventfd (commands waiting).
const WAKE: u64 = u64::MAX;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One direction of a natively bridged call, handed over by its pvt: what its far end sends
/// to `socket` goes on through `to`.
pub struct RelayedLeg {
    /// Our RTP socket, which the thread reads.
    pub socket: Arc<UdpSocket>,
    /// Our RTP session (the pvt's), which takes every packet first.
    pub session: Arc<Mutex<RtpSession>>,
    /// What we publish to the other call (our far end's address moves with comedia).
    pub published: Arc<Mutex<MediaInfo>>,
    /// The other call's socket and far end, and the rewriting.
    pub to: Box<RelayTo>,
    /// Refreshes `sip show channelstats` (every 50 packets, as the pvt does).
    pub publish_stats: Box<dyn FnMut(Stats) + Send>,
}

/// A leg on its thread.
struct Entry {
    leg: Box<RelayedLeg>,
    received: u64,
    /// Our far end's address as last published.
    remote: Option<SocketAddr>,
}

impl Entry {
    fn new(leg: Box<RelayedLeg>) -> Entry {
        let remote = lock(&leg.session).remote();
        Entry { leg, received: 0, remote }
    }

    fn take(&mut self, now: Instant, from: SocketAddr, packet: &mut [u8]) {
        let leg = &mut self.leg;
        let remote = {
            let mut session = lock(&leg.session);
            if session.handle_rtp(now, from, packet).is_err() {
                return;
            }
            self.received += 1;
            if self.received.is_multiple_of(50) {
                (leg.publish_stats)(session.stats());
            }
            session.remote()
        };
        if remote != self.remote {
            // Comedia learnt where our far end really is: the other call sends there.
            self.remote = remote;
            lock(&leg.published).remote = remote;
        }
        leg.to.forward(packet);
    }
}

enum Command {
    Add(u64, Box<RelayedLeg>),
    Remove(u64),
    Stop,
}

/// One relay thread's end: its epoll, and the commands waiting for it.
struct Inner {
    epoll: OwnedFd,
    wake: OwnedFd,
    commands: Mutex<Vec<Command>>,
}

impl Inner {
    fn send(&self, command: Command) {
        lock(&self.commands).push(command);
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a u64 to an eventfd we own.
        unsafe { libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }
}

/// chan_sip's relay threads ([`Relay::threads_for_this_machine`]); each leg is given to one of
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

fn epoll_add(epoll: RawFd, fd: RawFd, key: u64) -> io::Result<()> {
    let mut event = libc::epoll_event { events: libc::EPOLLIN as u32, u64: key };
    // SAFETY: epoll_ctl with a valid event struct; both fds are open.
    cvt(unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut event) }).map(drop)
}

impl Relay {
    /// Starts `threads` threads (at least one).
    pub fn start(threads: usize) -> io::Result<Relay> {
        let mut relay = Relay { workers: Vec::new(), threads: Mutex::new(Vec::new()), next_id: AtomicU64::new(0) };
        for n in 0..threads.max(1) {
            // SAFETY: plain syscalls; the fds returned are ours alone.
            let epoll = unsafe { OwnedFd::from_raw_fd(cvt(libc::epoll_create1(libc::EPOLL_CLOEXEC))?) };
            let wake = unsafe { OwnedFd::from_raw_fd(cvt(libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK))?) };
            epoll_add(epoll.as_raw_fd(), wake.as_raw_fd(), WAKE)?;
            let inner = Arc::new(Inner { epoll, wake, commands: Mutex::new(Vec::new()) });
            let thread_inner = inner.clone();
            // `relay` stops the threads started so far if a later one fails (its drop).
            let thread =
                std::thread::Builder::new().name(format!("sip-rtp-relay{n}")).spawn(move || run(&thread_inner))?;
            relay.workers.push(inner);
            lock(&relay.threads).push(thread);
        }
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
        inner.send(Command::Add(id, Box::new(leg)));
        RelayHandle { inner, id }
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

fn run(inner: &Inner) {
    let epoll = inner.epoll.as_raw_fd();
    let mut legs: HashMap<u64, Entry, BuildHasherDefault<IdHasher>> = HashMap::default();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
    let mut buffer = [0u8; 2048];
    loop {
        // SAFETY: `events` has room for EVENTS entries.
        let n = unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), EVENTS as libc::c_int, -1) };
        if n < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            tracing::error!("RTP relay: epoll_wait: {error}; relaying stops");
            return;
        }
        let round = Instant::now();
        for event in &events[..n as usize] {
            let key = event.u64;
            if key == WAKE {
                let mut count = 0u64;
                // SAFETY: reads 8 bytes into a u64 from our eventfd.
                unsafe { libc::read(inner.wake.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
                let commands = std::mem::take(&mut *lock(&inner.commands));
                for command in commands {
                    match command {
                        Command::Add(id, leg) => {
                            if let Err(e) = epoll_add(epoll, leg.socket.as_raw_fd(), id) {
                                tracing::warn!("RTP relay: cannot watch a socket: {e}");
                                continue;
                            }
                            legs.insert(id, Entry::new(leg));
                        }
                        Command::Remove(id) => {
                            if let Some(entry) = legs.remove(&id) {
                                // Before the socket can close (the entry holds it open).
                                // SAFETY: the fd is open; a null event is allowed for DEL.
                                unsafe {
                                    libc::epoll_ctl(
                                        epoll,
                                        libc::EPOLL_CTL_DEL,
                                        entry.leg.socket.as_raw_fd(),
                                        std::ptr::null_mut(),
                                    )
                                };
                            }
                        }
                        Command::Stop => return,
                    }
                }
                continue;
            }
            let Some(entry) = legs.get_mut(&key) else { continue };
            if let Ok((len, from)) = entry.leg.socket.recv_from(&mut buffer) {
                entry.take(round, from, &mut buffer[..len]);
            }
        }
        let spent = round.elapsed();
        if spent < BATCH {
            std::thread::sleep(BATCH - spent);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_media::relay::RelayLeg;
    use starling_media::session::SessionConfig;
    use std::time::SystemTime;

    fn rtp(seq: u16) -> Vec<u8> {
        rtp_rs::RtpPacketBuilder::new()
            .payload_type(0)
            .ssrc(0x1234)
            .sequence(seq.into())
            .timestamp(u32::from(seq) * 160)
            .payload(&[0xd5; 160])
            .build()
            .unwrap()
    }

    /// Far end A → our socket (leg), relayed out of the other call's socket to far end B; the
    /// session counts what came; dropping the handle stops the relaying.
    #[test]
    fn packets_are_relayed_counted_and_stop_with_the_handle() {
        let relay = Relay::start(2).unwrap();
        let ours = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        let other = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        ours.set_nonblocking(true).unwrap();
        other.set_nonblocking(true).unwrap();
        let far_a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let far_b = UdpSocket::bind("127.0.0.1:0").unwrap();
        far_b.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let session =
            Arc::new(Mutex::new(RtpSession::new(SessionConfig::default(), Instant::now(), SystemTime::now(), 7)));
        let other_media =
            Arc::new(Mutex::new(MediaInfo { remote: Some(far_b.local_addr().unwrap()), ..Default::default() }));
        let published = Arc::new(Mutex::new(MediaInfo::default()));
        let stats = Arc::new(AtomicU64::new(0));
        let seen = stats.clone();
        let handle = relay.add(RelayedLeg {
            socket: ours.clone(),
            session: session.clone(),
            published,
            to: Box::new(RelayTo { rtp: other.clone(), media: other_media, leg: RelayLeg::new() }),
            publish_stats: Box::new(move |s: Stats| seen.store(s.received_packets, Ordering::Relaxed)),
        });
        let mut buf = [0u8; 2048];
        for seq in 0..60u16 {
            far_a.send_to(&rtp(seq), ours.local_addr().unwrap()).unwrap();
            let (len, from) = far_b.recv_from(&mut buf).expect("relayed");
            assert_eq!(from, other.local_addr().unwrap(), "sent from the other call's socket");
            assert_eq!(&buf[..len], &rtp(seq)[..], "one stream passes through untouched");
        }
        assert_eq!(lock(&session).stats().received_packets, 60);
        assert_eq!(stats.load(Ordering::Relaxed), 50, "channelstats refreshed at 50");
        drop(handle);
        std::thread::sleep(Duration::from_millis(20));
        far_a.send_to(&rtp(61), ours.local_addr().unwrap()).unwrap();
        far_b.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        assert!(far_b.recv_from(&mut buf).is_err(), "not relayed once the handle is gone");
        let mut back = [0u8; 2048];
        assert!(ours.recv_from(&mut back).is_ok(), "the packet waits in our socket for the pvt");
        relay.stop();
    }
}
