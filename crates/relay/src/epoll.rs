//! The relay thread on epoll: where io_uring cannot be had.
//!
//! epoll is libc's, level-triggered, and a ready socket is read once a round: mio's
//! edge-triggered epoll (and `recvmmsg`, which tries the next datagram too) needs a second
//! read per packet to find the socket empty, and a phone sends one packet in 20 ms. What is
//! left waits for the next round.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Instant;

use starling_core::tracing;

use super::{cvt, finish_round, Command, Entry, Inner, Legs, Tending};

const EVENTS: usize = 1024;
/// The largest packet read: the rest of the buffer is room for what SRTP adds.
const RECEIVE: usize = 2048 - 64;
/// The epoll key of the thread's own eventfd (commands waiting).
const WAKE: u64 = u64::MAX;

fn epoll_add(epoll: RawFd, fd: RawFd, key: u64) -> io::Result<()> {
    let mut event = libc::epoll_event { events: libc::EPOLLIN as u32, u64: key };
    // SAFETY: epoll_ctl with a valid event struct; both fds are open.
    cvt(unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut event) }).map(drop)
}

/// The thread's epoll, watching its eventfd.
pub(super) fn open(inner: &Inner) -> io::Result<OwnedFd> {
    // SAFETY: a plain syscall; the fd returned is ours alone.
    let epoll = unsafe { OwnedFd::from_raw_fd(cvt(libc::epoll_create1(libc::EPOLL_CLOEXEC))?) };
    epoll_add(epoll.as_raw_fd(), inner.wake.as_raw_fd(), WAKE)?;
    Ok(epoll)
}

/// Relays until told to stop.
pub(super) fn run(epoll: OwnedFd, inner: &Inner) {
    let epoll = epoll.as_raw_fd();
    let mut legs = Legs::default();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
    let mut buffer = [0u8; 2048];
    let mut tending = Tending::now();
    loop {
        let wait = inner.tend(&mut legs, &mut tending, Instant::now());
        let timeout = wait.map_or(-1, |wait| wait.as_millis().min(i32::MAX as u128) as libc::c_int);
        // SAFETY: `events` has room for EVENTS entries.
        let n = unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), EVENTS as libc::c_int, timeout) };
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
                for command in inner.take_commands() {
                    match command {
                        Command::Add(id, leg, stats) => {
                            if let Err(e) = epoll_add(epoll, leg.socket.as_raw_fd(), id) {
                                tracing::warn!("RTP relay: cannot watch a socket: {e}");
                                continue;
                            }
                            legs.insert(id, Entry::new(leg, stats));
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
                                inner.release(entry);
                            }
                        }
                        Command::Stop => {
                            legs.into_values().for_each(|entry| inner.release(entry));
                            return;
                        }
                    }
                }
                continue;
            }
            let Some(entry) = legs.get_mut(&key) else { continue };
            // (Room for an SRTP tag after the largest packet we read.)
            if let Ok((len, from)) = entry.leg.socket.recv_from(&mut buffer[..RECEIVE]) {
                if let Some((target, len)) = entry.take(round, from, &mut buffer, len, inner.kernel()) {
                    // Nonblocking: a full socket buffer drops the packet, as it would on the wire.
                    let _ = entry.leg.to.rtp.send_to(&buffer[..len], target);
                }
            }
        }
        finish_round(round);
    }
}
