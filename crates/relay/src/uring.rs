//! The relay thread on io_uring (Linux 6.0 and later).
//!
//! Each leg's socket has one multishot `recvmsg` in the thread's ring, which the kernel
//! completes once a datagram, into a buffer it takes from our buffer ring: the buffer holds
//! the sender's address and the packet. A packet that goes on is rewritten where it lies and
//! sent from that buffer by a `send` with a destination address; the buffer goes back to the
//! ring when the send completes (one that goes nowhere goes back at once). The thread's
//! eventfd has a `read` waiting, which completes when commands come.
//!
//! A round: `io_uring_enter` waits for a completion and, the ring being `DEFER_TASKRUN`,
//! takes in everything that came since the last round; the thread handles it all and queues
//! the sends; a second `io_uring_enter` sends them; then it sleeps out the round.

use std::io;
use std::mem::size_of;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use io_uring::types::{BufRingEntry, CancelBuilder, Fd, RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring, Probe};
use socket2::SockAddr;
use starling_core::tracing;

use super::{finish_round, Command, Entry, Inner, Legs, Tending};

const SQ_ENTRIES: u32 = 1024;
/// Room for every completion of several rounds at 1,800 calls a thread (180 packets a ms).
const CQ_ENTRIES: u32 = 16384;
/// The buffers the kernel receives into (a power of two): 2 MB a thread. A packet holds its
/// buffer from its arrival until its send completes, about two rounds; when they run out,
/// packets wait in their sockets until the next round gives buffers back.
/// (The tests have 16, so that a burst runs them out.)
const BUFFERS: u16 = if cfg!(test) { 16 } else { 1024 };
const BUFFER_SIZE: usize = 2048;
/// Our one buffer group.
const GROUP: u16 = 0;

/// What a completion is for: the low two bits of its user_data (the rest: a leg's id for
/// RECV, a buffer's id for SEND).
const RECV: u64 = 0;
const SEND: u64 = 1;
const WAKE: u64 = 2;
const CANCEL: u64 = 3;

fn user_data(kind: u64, n: u64) -> u64 {
    (n << 2) | kind
}

/// The buffer ring and the buffers it lends the kernel.
struct Buffers {
    /// BUFFERS entries, page-aligned (mmap), registered with the ring.
    ring: NonNull<BufRingEntry>,
    /// Our next free slot in `ring` (the kernel sees it once published).
    tail: u16,
    memory: Box<[u8]>,
    /// Each buffer's destination while its packet is being sent.
    dests: Box<[SockAddr]>,
}

impl Buffers {
    fn new() -> io::Result<Buffers> {
        let size = usize::from(BUFFERS) * size_of::<BufRingEntry>();
        // SAFETY: an anonymous private mapping; checked for failure below.
        let ring = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ring == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let unspecified = SockAddr::from(SocketAddr::from(([0, 0, 0, 0], 0)));
        let mut buffers = Buffers {
            ring: NonNull::new(ring.cast()).expect("mmap does not return null on success"),
            tail: 0,
            memory: vec![0u8; usize::from(BUFFERS) * BUFFER_SIZE].into_boxed_slice(),
            dests: vec![unspecified; usize::from(BUFFERS)].into_boxed_slice(),
        };
        for bid in 0..BUFFERS {
            buffers.give(bid);
        }
        buffers.publish();
        Ok(buffers)
    }

    /// Puts buffer `bid` back in the ring (the kernel sees it at the next [`Buffers::publish`]).
    fn give(&mut self, bid: u16) {
        // SAFETY: the slot is within the BUFFERS entries of the mapping; the kernel reads
        // only slots before the published tail, and this one is past it.
        let entry = unsafe { &mut *self.ring.as_ptr().add(usize::from(self.tail & (BUFFERS - 1))) };
        entry.set_addr(self.memory[usize::from(bid) * BUFFER_SIZE..].as_ptr() as u64);
        entry.set_len(BUFFER_SIZE as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail field of a live, initialised buffer ring; the kernel reads it
        // atomically, and Release makes the entries written before it visible first.
        unsafe {
            let tail = BufRingEntry::tail(self.ring.as_ptr()) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}

impl Drop for Buffers {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, of that size; the ring that used it is gone.
        unsafe { libc::munmap(self.ring.as_ptr().cast(), usize::from(BUFFERS) * size_of::<BufRingEntry>()) };
    }
}

fn open_ring() -> io::Result<(IoUring, Buffers)> {
    // DEFER_TASKRUN (Linux 6.1): what arrives between rounds is taken in when the thread
    // asks, not by interrupting it. Without it the ring still works, a little dearer.
    let ring = IoUring::builder()
        .setup_cqsize(CQ_ENTRIES)
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(SQ_ENTRIES)
        .or_else(|_| IoUring::builder().setup_cqsize(CQ_ENTRIES).build(SQ_ENTRIES))?;
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    // SEND_ZC came with Linux 6.0, as did multishot recvmsg and send with an address.
    if !probe.is_supported(opcode::SendZc::CODE) {
        return Err(io::Error::new(io::ErrorKind::Unsupported, "Linux before 6.0 (no multishot recvmsg)"));
    }
    let buffers = Buffers::new()?;
    // SAFETY: the ring memory is page-aligned, BUFFERS entries, and lives in `buffers`, which
    // the thread drops only after the ring (see `Thread`).
    unsafe { ring.submitter().register_buf_ring_with_flags(buffers.ring.as_ptr() as u64, BUFFERS, GROUP, 0)? };
    Ok((ring, buffers))
}

/// The thread's ring, ready to relay (with its read on the eventfd waiting).
pub(super) fn open(inner: &Inner) -> io::Result<Thread<'_>> {
    let (ring, buffers) = open_ring()?;
    let mut thread = Thread {
        ring,
        buffers,
        inner,
        legs: Legs::default(),
        // SAFETY: msghdr is plain data, valid zeroed; only the name's length matters here.
        msghdr: Box::new(libc::msghdr {
            msg_namelen: size_of::<libc::sockaddr_in6>() as u32,
            ..unsafe { std::mem::zeroed() }
        }),
        wake_count: Box::new(0),
        in_flight: 0,
        rearm: Vec::new(),
    };
    thread.arm_wake();
    thread.ring.submit()?;
    Ok(thread)
}

pub(super) struct Thread<'a> {
    // First, so that it is dropped before the buffers it writes into.
    ring: IoUring,
    buffers: Buffers,
    inner: &'a Inner,
    legs: Legs,
    /// The template of every multishot recvmsg (the kernel reads it when each is armed).
    msghdr: Box<libc::msghdr>,
    /// Where the eventfd's read puts its count.
    wake_count: Box<u64>,
    /// Operations the kernel may still write for: armed receives, sends, the eventfd read.
    in_flight: usize,
    /// Legs whose receive ended (no buffers, say) and is to be armed again this round.
    rearm: Vec<u64>,
}

impl Thread<'_> {
    /// Relays until told to stop, then lets go of everything.
    pub(super) fn run(mut self) {
        self.relay_rounds();
        self.shutdown();
    }

    fn relay_rounds(&mut self) {
        let mut completions: Vec<cqueue::Entry> = Vec::with_capacity(CQ_ENTRIES as usize);
        let mut tending = Tending::now();
        loop {
            let waited = match self.inner.tend(&mut self.legs, &mut tending, Instant::now()) {
                None => self.ring.submit_and_wait(1),
                Some(wait) => {
                    let wait = Timespec::from(wait);
                    self.ring.submitter().submit_with_args(1, &SubmitArgs::new().timespec(&wait))
                }
            };
            if let Err(e) = waited {
                // EINTR: a signal; EBUSY: completions wait to be taken first; ETIME: the legs in
                // the kernel are due to be looked after.
                if !matches!(e.raw_os_error(), Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::ETIME)) {
                    tracing::error!("RTP relay: io_uring_enter: {e}; relaying stops");
                    return;
                }
            }
            let round = Instant::now();
            completions.clear();
            completions.extend(self.ring.completion());
            for completion in &completions {
                if !self.complete(round, completion) {
                    return;
                }
            }
            self.buffers.publish();
            for id in std::mem::take(&mut self.rearm) {
                if let Some(fd) = self.legs.get(&id).map(|entry| entry.leg.socket.as_raw_fd()) {
                    self.arm(id, fd);
                }
            }
            self.submit();
            finish_round(round);
        }
    }

    /// Handles one completion; false when the thread is to stop.
    fn complete(&mut self, round: Instant, completion: &cqueue::Entry) -> bool {
        let (kind, n) = (completion.user_data() & 3, completion.user_data() >> 2);
        match kind {
            RECV => self.received(round, n, completion.result(), completion.flags()),
            SEND => {
                self.in_flight -= 1;
                // A failed send (a full socket buffer) loses the packet, as on the wire.
                self.buffers.give(n as u16);
            }
            WAKE => {
                self.in_flight -= 1;
                return self.commands();
            }
            _ => {} // CANCEL: its receive's own completion says it ended.
        }
        true
    }

    fn received(&mut self, round: Instant, id: u64, result: i32, flags: u32) {
        if let Some(bid) = cqueue::buffer_select(flags) {
            if !self.relay(round, id, bid, result as usize) {
                self.buffers.give(bid);
            }
        }
        if cqueue::more(flags) {
            return;
        }
        self.in_flight -= 1;
        if !self.legs.contains_key(&id) {
            return; // cancelled: the leg was taken off
        }
        // Out of buffers (or the completion queue overflowed): arm it again once buffers are
        // back. Anything else is the socket's own trouble; its packets wait there.
        if result >= 0 || result == -libc::ENOBUFS {
            self.rearm.push(id);
        } else {
            let error = io::Error::from_raw_os_error(-result);
            tracing::warn!("RTP relay: receiving stopped on a relayed socket: {error}");
        }
    }

    /// Relays the packet in buffer `bid`: true when a send now holds the buffer.
    fn relay(&mut self, round: Instant, id: u64, bid: u16, len: usize) -> bool {
        let Some(entry) = self.legs.get_mut(&id) else { return false };
        let Buffers { memory, dests, .. } = &mut self.buffers;
        let start = usize::from(bid) * BUFFER_SIZE;
        // The whole buffer: what SRTP adds to a packet goes after it, where there is room.
        let buffer = &mut memory[start..start + BUFFER_SIZE];
        let Ok(out) = RecvMsgOut::parse(&buffer[..len.min(BUFFER_SIZE)], &self.msghdr) else { return false };
        if out.is_payload_truncated() || out.is_name_data_truncated() {
            return false;
        }
        let Some(from) = socket_addr(out.name_data()) else { return false };
        let payload = out.payload_data().as_ptr() as usize - buffer.as_ptr() as usize;
        let received = out.payload_data().len();
        let room = &mut buffer[payload..];
        let Some((target, len)) = entry.take(round, from, room, received, self.inner.kernel()) else { return false };
        let packet = &room[..len];
        let dest = &mut dests[usize::from(bid)];
        *dest = SockAddr::from(target);
        let send = opcode::Send::new(Fd(entry.leg.to.rtp.as_raw_fd()), packet.as_ptr(), packet.len() as u32)
            .dest_addr(dest.as_ptr().cast())
            .dest_addr_len(dest.len())
            .build()
            .user_data(user_data(SEND, u64::from(bid)));
        // SAFETY: the packet and its address stay in buffer `bid`, which goes back to the
        // ring only when this send completes.
        let queued = unsafe { self.push(&send) };
        if queued {
            self.in_flight += 1;
        }
        queued
    }

    fn commands(&mut self) -> bool {
        for command in self.inner.take_commands() {
            match command {
                Command::Add(id, leg, stats) => {
                    let fd = leg.socket.as_raw_fd();
                    self.legs.insert(id, Entry::new(leg, stats));
                    self.arm(id, fd);
                }
                Command::Remove(id) => {
                    // The armed receive holds its own reference to the socket until the
                    // cancel ends it.
                    if let Some(entry) = self.legs.remove(&id) {
                        self.inner.release(entry);
                        let cancel =
                            opcode::AsyncCancel::new(user_data(RECV, id)).build().user_data(user_data(CANCEL, id));
                        // SAFETY: a cancel refers to no memory of ours.
                        unsafe { self.push(&cancel) };
                    }
                }
                Command::Stop => return false,
            }
        }
        self.arm_wake();
        true
    }

    fn arm(&mut self, id: u64, fd: i32) {
        let recv = opcode::RecvMsgMulti::new(Fd(fd), &*self.msghdr, GROUP).build().user_data(user_data(RECV, id));
        // SAFETY: the msghdr lives as long as the thread; the buffers come from the ring.
        if unsafe { self.push(&recv) } {
            self.in_flight += 1;
        } else {
            self.rearm.push(id);
        }
    }

    fn arm_wake(&mut self) {
        let read = opcode::Read::new(Fd(self.inner.wake.as_raw_fd()), (&mut *self.wake_count as *mut u64).cast(), 8)
            .build()
            .user_data(user_data(WAKE, 0));
        // SAFETY: the count lives as long as the thread.
        if unsafe { self.push(&read) } {
            self.in_flight += 1;
        } else {
            tracing::error!("RTP relay: cannot wait for commands (the ring is full)");
        }
    }

    /// Queues `entry`, submitting what is queued first if the queue is full; false when it
    /// cannot be queued.
    ///
    /// # Safety
    /// What `entry` points to must stay valid until it completes.
    unsafe fn push(&mut self, entry: &squeue::Entry) -> bool {
        for _ in 0..2 {
            // SAFETY: the caller's.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return true;
            }
            self.submit();
        }
        false
    }

    fn submit(&mut self) {
        if let Err(e) = self.ring.submit() {
            if !matches!(e.raw_os_error(), Some(libc::EINTR) | Some(libc::EBUSY)) {
                tracing::warn!("RTP relay: io_uring_enter: {e}");
            }
        }
    }

    /// Cancels everything and waits (a little) for the kernel to let go of the buffers and
    /// the sockets.
    fn shutdown(&mut self) {
        let cancel = opcode::AsyncCancel2::new(CancelBuilder::any()).build().user_data(user_data(CANCEL, 0));
        // SAFETY: a cancel refers to no memory of ours.
        unsafe { self.push(&cancel) };
        self.legs.drain().for_each(|(_, entry)| self.inner.release(entry));
        let deadline = Instant::now() + Duration::from_millis(500);
        let wait = Timespec::new().nsec(10_000_000);
        while self.in_flight > 0 && Instant::now() < deadline {
            let _ = self.ring.submitter().submit_with_args(1, &SubmitArgs::new().timespec(&wait));
            let completions: Vec<cqueue::Entry> = self.ring.completion().collect();
            for completion in completions {
                let (kind, flags) = (completion.user_data() & 3, completion.flags());
                if kind == SEND || kind == WAKE || (kind == RECV && !cqueue::more(flags)) {
                    self.in_flight -= 1;
                }
            }
        }
        if self.in_flight > 0 {
            tracing::warn!("RTP relay: {} io_uring operations still pending at stop", self.in_flight);
        }
    }
}

/// The address in a recvmsg name (the kernel's sockaddr, as many bytes as it wrote).
fn socket_addr(name: &[u8]) -> Option<SocketAddr> {
    // SAFETY: the bytes are a sockaddr the kernel wrote (its family says which), copied into
    // storage that is larger; socket2 reads only what the family and length allow.
    let (_, addr) = unsafe {
        SockAddr::try_init(|storage, len| {
            if name.len() > *len as usize {
                return Err(io::ErrorKind::InvalidInput.into());
            }
            std::ptr::copy_nonoverlapping(name.as_ptr(), storage.cast::<u8>(), name.len());
            *len = name.len() as libc::socklen_t;
            Ok(())
        })
    }
    .ok()?;
    addr.as_socket()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_survive_the_round_trip_through_sockaddr() {
        for addr in ["127.0.0.1:4000", "[::1]:5004", "[fe80::1%2]:6000"] {
            let addr: SocketAddr = addr.parse().unwrap();
            let slot = SockAddr::from(addr);
            // SAFETY: reading the address's bytes.
            let bytes = unsafe { std::slice::from_raw_parts(slot.as_ptr().cast::<u8>(), slot.len() as usize) };
            assert_eq!(socket_addr(bytes), Some(addr));
        }
        assert_eq!(socket_addr(&[]), None);
        assert_eq!(socket_addr(&[0xff, 0xff, 0, 0]), None, "an unknown family");
    }
}
