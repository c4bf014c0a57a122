//! Sockets: plain UDP with big buffers, and batches of datagrams through `sendmmsg` and
//! `recvmmsg` (one system call per batch instead of one per packet).

use std::io;
use std::mem;
#[cfg(test)]
use std::net::SocketAddr;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;

use anyhow::{Context, Result};

/// A nonblocking UDP socket on `addr` whose buffers are `buffer` bytes each (forced past
/// `net.core.rmem_max`/`wmem_max` when we may, that is as root). Returns the socket and the
/// receive buffer the kernel granted.
pub fn udp_socket(addr: SocketAddrV4, buffer: usize) -> Result<(UdpSocket, usize)> {
    let socket = UdpSocket::bind(addr).with_context(|| format!("cannot bind UDP {addr}"))?;
    socket.set_nonblocking(true).context("cannot make the socket nonblocking")?;
    let fd = socket.as_raw_fd();
    let size = buffer.min(i32::MAX as usize) as libc::c_int;
    for (force, plain) in [(libc::SO_RCVBUFFORCE, libc::SO_RCVBUF), (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF)] {
        if setsockopt(fd, force, size).is_err() {
            let _ = setsockopt(fd, plain, size);
        }
    }
    let mut granted: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: fd is a socket we own; granted/len point to a c_int and its size.
    unsafe {
        libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, (&mut granted as *mut libc::c_int).cast(), &mut len);
    }
    Ok((socket, granted.max(0) as usize))
}

fn setsockopt(fd: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: fd is a socket; value is a c_int that outlives the call.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            (&value as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub fn to_sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(*addr.ip()).to_be() },
        sin_zero: [0; 8],
    }
}

pub fn from_sockaddr(sa: &libc::sockaddr_in) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)), u16::from_be(sa.sin_port))
}

/// Sends `packets[i]` to `dests[i]` with as few `sendmmsg` calls as the kernel allows. Returns
/// how many went (from the front); a full send buffer (`EAGAIN`) stops early without an error.
/// Sends the first `len` bytes of each packet (at most `N`) to its destination.
pub fn send_batch<const N: usize>(
    fd: libc::c_int,
    packets: &[[u8; N]],
    len: usize,
    dests: &[libc::sockaddr_in],
) -> io::Result<usize> {
    debug_assert_eq!(packets.len(), dests.len());
    const CHUNK: usize = 256;
    let mut iov: [libc::iovec; CHUNK] = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; CHUNK];
    // SAFETY: mmsghdr is plain data; all-zero is a valid (empty) value.
    let mut hdrs: [libc::mmsghdr; CHUNK] = unsafe { mem::zeroed() };
    let mut done = 0;
    while done < packets.len() {
        let n = (packets.len() - done).min(CHUNK);
        for i in 0..n {
            iov[i].iov_base = packets[done + i].as_ptr() as *mut libc::c_void;
            iov[i].iov_len = len.min(N);
            hdrs[i].msg_hdr.msg_name = &dests[done + i] as *const libc::sockaddr_in as *mut libc::c_void;
            hdrs[i].msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            hdrs[i].msg_hdr.msg_iov = &mut iov[i];
            hdrs[i].msg_hdr.msg_iovlen = 1;
            hdrs[i].msg_hdr.msg_control = std::ptr::null_mut();
            hdrs[i].msg_hdr.msg_controllen = 0;
            hdrs[i].msg_hdr.msg_flags = 0;
        }
        // SAFETY: hdrs[..n] point to iovecs and addresses that live until the call returns.
        let r = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), n as libc::c_uint, libc::MSG_DONTWAIT) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted {
                return Ok(done);
            }
            if done > 0 {
                return Ok(done);
            }
            return Err(e);
        }
        done += r as usize;
        if (r as usize) < n {
            return Ok(done);
        }
    }
    Ok(done)
}

/// Buffers for `recvmmsg` batches.
pub struct RecvBatch {
    bufs: Vec<[u8; RecvBatch::BUF]>,
    names: Vec<libc::sockaddr_in>,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl RecvBatch {
    /// Larger datagrams are cut (and then are not ours: ours are 172 bytes).
    pub const BUF: usize = 512;

    pub fn new(n: usize) -> RecvBatch {
        RecvBatch {
            bufs: vec![[0; RecvBatch::BUF]; n],
            // SAFETY: sockaddr_in and mmsghdr are plain data; all-zero is valid.
            names: vec![unsafe { mem::zeroed() }; n],
            iov: vec![libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; n],
            hdrs: vec![unsafe { mem::zeroed() }; n],
        }
    }

    /// One nonblocking `recvmmsg`: the number of datagrams read (0 when none was waiting).
    pub fn recv(&mut self, fd: libc::c_int) -> io::Result<usize> {
        let n = self.bufs.len();
        for i in 0..n {
            self.iov[i].iov_base = self.bufs[i].as_mut_ptr().cast();
            self.iov[i].iov_len = RecvBatch::BUF;
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&mut self.names[i] as *mut libc::sockaddr_in).cast();
            h.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_iov = &mut self.iov[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        // SAFETY: every header points into self's buffers, which outlive the call.
        let r = unsafe {
            libc::recvmmsg(fd, self.hdrs.as_mut_ptr(), n as libc::c_uint, libc::MSG_DONTWAIT, std::ptr::null_mut())
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        Ok(r as usize)
    }

    /// Datagram `i` of the last batch and where it came from.
    pub fn get(&self, i: usize) -> (&[u8], SocketAddrV4) {
        let len = (self.hdrs[i].msg_len as usize).min(RecvBatch::BUF);
        let truncated = self.hdrs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        let data = if truncated { &self.bufs[i][..0] } else { &self.bufs[i][..len] };
        (data, from_sockaddr(&self.names[i]))
    }
}

/// This process's CPU time so far (user + system, every thread), in seconds.
pub fn cpu_seconds() -> f64 {
    // SAFETY: rusage is plain data, filled in by the call.
    let mut ru: libc::rusage = unsafe { mem::zeroed() };
    // SAFETY: ru is a valid rusage to write to.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Waits up to `timeout_ms` for one of `fds` to be readable.
pub fn poll_readable(fds: &[libc::c_int], timeout_ms: i32) {
    let mut pfds: Vec<libc::pollfd> =
        fds.iter().map(|&fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect();
    // SAFETY: pfds is a valid array of pollfd of the given length.
    unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
}

/// The `drops` column of `/proc/net/udp` for the socket bound to `addr` (datagrams the kernel
/// threw away because the receive buffer was full), `None` when it cannot be read.
pub fn socket_drops(addr: SocketAddrV4) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/udp").ok()?;
    // /proc/net/udp writes the address as the in-memory u32 in hex (little-endian on x86), then the port.
    let ip = u32::from_ne_bytes(addr.ip().octets());
    let local = format!("{ip:08X}:{:04X}", addr.port());
    parse_drops(&table, &local)
}

fn parse_drops(table: &str, local: &str) -> Option<u64> {
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        (fields.get(1) == Some(&local)).then(|| fields.last()?.parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_of_one_socket() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
            1: 0100007F:A1B2 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 17\n\
            2: 0100007F:A1B4 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 0\n";
        assert_eq!(parse_drops(table, "0100007F:A1B2"), Some(17));
        assert_eq!(parse_drops(table, "0100007F:A1B4"), Some(0));
        assert_eq!(parse_drops(table, "0100007F:0001"), None);
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn our_own_socket_is_found() {
        let (socket, _) = udp_socket("127.0.0.1:0".parse().unwrap(), 1 << 16).unwrap();
        let SocketAddr::V4(addr) = socket.local_addr().unwrap() else { panic!() };
        assert_eq!(socket_drops(addr), Some(0));
    }
}
