//! One side's RTP (A: the caller's, B: the called party's): one UDP socket for every call, one
//! thread, woken every 1 ms tick. On each tick it sends, in one `sendmmsg` batch, the packets of
//! the streams whose phase is that tick (a twentieth of the calls), then reads whatever has
//! arrived with `recvmmsg` batches and counts it per call. Waking on the tick rather than on
//! each arrival keeps it at 1,000 wake-ups a second whatever the load (the socket's buffer
//! holds what comes in between).

use std::collections::HashMap;
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use starling_media::srtp::{MasterKey, Srtp};

use crate::net::{self, RecvBatch};
use crate::payload::{self, PACKET, SAMPLES};
use crate::schedule::{self, PERIOD};
use crate::stats::{Arrival, Received};

/// What the SIP side tells a media thread.
#[derive(Debug)]
pub enum Command {
    /// Send stream `index` to `dest` from `start` until `stop` (excluded); with SRTP, `keys`
    /// (ours, which protects what we send; theirs, which opens what comes from `dest`).
    Start { index: u32, dest: SocketAddrV4, start: Instant, stop: Instant, keys: Option<Box<(MasterKey, MasterKey)>> },
    /// The far end moved (a re-INVITE).
    Retarget { index: u32, dest: SocketAddrV4 },
    /// Stop sending at `at` (or at the stream's own stop, if sooner).
    Stop { index: u32, at: Instant },
    /// Read what is left and return the report.
    Shutdown,
}

/// Running totals, read by the progress line.
#[derive(Default)]
pub struct Live {
    pub sent: AtomicU64,
    pub received: AtomicU64,
}

/// What one side sent and received.
#[derive(Default)]
pub struct Report {
    /// Packets sent, per stream (call) index.
    pub sent: HashMap<u32, u32>,
    /// Packets received, per the index in their payload.
    pub received: HashMap<u32, Received>,
    /// Datagrams that were not our packets.
    pub foreign: u64,
    /// Our packets from another address than the one this stream sends to (Starling's port
    /// for the call on this side): relayed into the wrong call, or from a port we were not told of.
    pub misrouted: u64,
    /// Our packets for a stream this side had not been told of (yet).
    pub unknown_stream: u64,
    pub send_errors: u64,
    /// SRTP packets that did not open (not authentic, or from an address with no keys).
    pub srtp_failures: u64,
    pub first_error: Option<String>,
    /// Wake-ups that found a tick more than 5 ms overdue (the thread fell behind), and the worst lateness.
    pub late_ticks: u64,
    pub worst_late_ms: u64,
    /// When (ms from the start) the worst lateness was seen.
    pub worst_late_at_ms: u64,
}

/// Room for a packet and the longest SRTP tag.
const WIRE_MAX: usize = PACKET + 16;

struct Stream {
    dest: libc::sockaddr_in,
    first: u64,
    stop: u64,
    packet: u32,
    seq: u16,
    ts: u32,
    ssrc: u32,
}

struct Side {
    epoch: Instant,
    ssrc_salt: u32,
    streams: HashMap<u32, Stream>,
    /// Where each stream's packets go, kept after it ends (the expected source of what comes back).
    peers: HashMap<u32, SocketAddrV4>,
    slots: Vec<Vec<u32>>,
    template: [u8; PACKET],
    /// With SRTP: each stream's contexts (kept after it ends, for what still comes back), and
    /// which stream each far end's address is.
    srtp: HashMap<u32, Srtp>,
    by_peer: HashMap<SocketAddrV4, u32>,
    /// A packet's length on the wire: [`PACKET`], and the tag with SRTP.
    wire: usize,
    out: Vec<[u8; WIRE_MAX]>,
    out_dest: Vec<libc::sockaddr_in>,
    out_index: Vec<u32>,
    report: Report,
}

impl Side {
    fn new(epoch: Instant, ssrc_salt: u32) -> Side {
        Side {
            epoch,
            ssrc_salt,
            streams: HashMap::new(),
            peers: HashMap::new(),
            slots: vec![Vec::new(); PERIOD as usize],
            template: payload::template(),
            srtp: HashMap::new(),
            by_peer: HashMap::new(),
            wire: PACKET,
            out: Vec::with_capacity(1024),
            out_dest: Vec::with_capacity(1024),
            out_index: Vec::with_capacity(1024),
            report: Report::default(),
        }
    }

    fn tick_of(&self, at: Instant) -> u64 {
        schedule::tick_of(at.saturating_duration_since(self.epoch))
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Start { index, dest, start, stop, keys } => {
                if let Some(keys) = keys {
                    match Srtp::new(&keys.0, &keys.1) {
                        Ok(srtp) => {
                            self.wire = PACKET + srtp.suite().rtp_overhead();
                            self.srtp.insert(index, srtp);
                        }
                        Err(e) => {
                            self.report.first_error.get_or_insert_with(|| format!("SRTP: {e}"));
                        }
                    }
                }
                self.by_peer.insert(dest, index);
                let first = schedule::first_tick(self.tick_of(start), schedule::phase(index));
                let stream = Stream {
                    dest: net::to_sockaddr(dest),
                    first,
                    stop: self.tick_of(stop),
                    packet: 0,
                    seq: (index as u16).wrapping_mul(7919),
                    ts: index.wrapping_mul(1000),
                    ssrc: index.wrapping_mul(2_654_435_761) ^ self.ssrc_salt,
                };
                self.peers.insert(index, dest);
                if self.streams.insert(index, stream).is_none() {
                    self.slots[schedule::phase(index) as usize].push(index);
                }
            }
            Command::Retarget { index, dest } => {
                self.peers.insert(index, dest);
                self.by_peer.insert(dest, index);
                if let Some(s) = self.streams.get_mut(&index) {
                    s.dest = net::to_sockaddr(dest);
                }
            }
            Command::Stop { index, at } => {
                let at = self.tick_of(at);
                if let Some(s) = self.streams.get_mut(&index) {
                    s.stop = s.stop.min(at);
                }
            }
            Command::Shutdown => {}
        }
    }

    /// Queues the packets due on tick `t`.
    fn tick(&mut self, t: u64) {
        let Side { streams, slots, template, out, out_dest, out_index, srtp, report, .. } = self;
        slots[(t % PERIOD) as usize].retain(|index| {
            let Some(s) = streams.get_mut(index) else { return false };
            if t >= s.stop {
                streams.remove(index);
                return false;
            }
            if t >= s.first {
                let mut p = [0u8; WIRE_MAX];
                let plain: &mut [u8; PACKET] = (&mut p[..PACKET]).try_into().expect("PACKET bytes");
                *plain = *template;
                payload::write_packet(plain, s.seq, s.ts, s.ssrc, s.packet == 0, *index, s.packet);
                if let Some(srtp) = srtp.get_mut(index) {
                    if let Err(e) = srtp.protect_rtp_in_place(&mut p, PACKET) {
                        report.first_error.get_or_insert_with(|| format!("SRTP: {e}"));
                    }
                }
                out.push(p);
                out_dest.push(s.dest);
                out_index.push(*index);
                s.packet += 1;
                s.seq = s.seq.wrapping_add(1);
                s.ts = s.ts.wrapping_add(SAMPLES);
            }
            true
        });
    }

    /// Sends what is queued; what the kernel would not take yet stays queued.
    fn flush(&mut self, fd: libc::c_int, live: &Live) {
        while !self.out.is_empty() {
            match net::send_batch(fd, &self.out, self.wire, &self.out_dest) {
                Ok(0) => return, // the send buffer is full: next tick
                Ok(n) => {
                    for index in self.out_index.drain(..n) {
                        *self.report.sent.entry(index).or_default() += 1;
                    }
                    self.out.drain(..n);
                    self.out_dest.drain(..n);
                    live.sent.fetch_add(n as u64, Relaxed);
                }
                Err(e) => {
                    // The first packet is refused: count it as not sent and go on with the rest.
                    self.report.send_errors += 1;
                    self.report.first_error.get_or_insert_with(|| e.to_string());
                    self.out.remove(0);
                    self.out_dest.remove(0);
                    self.out_index.remove(0);
                }
            }
        }
    }

    /// Reads what has come, at most [`MAX_BATCHES`] batches: after a stall the backlog is read
    /// over the next ticks, between sends, rather than holding the sends back until it is gone.
    fn receive(&mut self, fd: libc::c_int, batch: &mut RecvBatch, live: &Live) {
        for _ in 0..MAX_BATCHES {
            let n = match batch.recv(fd) {
                Ok(n) => n,
                Err(e) => {
                    self.report.first_error.get_or_insert_with(|| format!("recvmmsg: {e}"));
                    return;
                }
            };
            let mut ours = 0;
            let mut opened = [0u8; 2048];
            for i in 0..n {
                let (mut data, src) = batch.get(i);
                if !self.srtp.is_empty() {
                    // SRTP: opened with the keys of the stream this address is.
                    let context = self.by_peer.get(&src).and_then(|index| self.srtp.get_mut(index));
                    let len = data.len().min(opened.len());
                    opened[..len].copy_from_slice(&data[..len]);
                    match context.map(|srtp| srtp.unprotect_rtp(&mut opened[..len])) {
                        Some(Ok(len)) => data = &opened[..len],
                        _ => {
                            self.report.srtp_failures += 1;
                            continue;
                        }
                    }
                }
                let Some((index, packet)) = payload::parse_packet(data) else {
                    self.report.foreign += 1;
                    continue;
                };
                match self.report.received.entry(index).or_default().record(packet) {
                    Arrival::Bogus => {
                        self.report.foreign += 1;
                        continue;
                    }
                    Arrival::New | Arrival::Late => ours += 1,
                    Arrival::Duplicate => {}
                }
                match self.peers.get(&index) {
                    Some(peer) if *peer == src => {}
                    Some(_) => self.report.misrouted += 1,
                    None => self.report.unknown_stream += 1,
                }
            }
            live.received.fetch_add(ours, Relaxed);
            if n < BATCH {
                return;
            }
        }
    }
}

/// Datagrams a `recvmmsg` call reads at most.
const BATCH: usize = 128;
/// `recvmmsg` calls a wake-up makes at most (2,048 packets; 1,800 calls bring 90 a side a ms).
const MAX_BATCHES: usize = 16;

/// The media thread of one side: runs until [`Command::Shutdown`] (or the sender is dropped).
pub fn run(socket: UdpSocket, epoch: Instant, ssrc_salt: u32, commands: Receiver<Command>, live: Arc<Live>) -> Report {
    let fd = socket.as_raw_fd();
    let mut side = Side::new(epoch, ssrc_salt);
    let mut batch = RecvBatch::new(BATCH);
    let mut next_tick = epoch.elapsed().as_millis() as u64;
    let mut slept_idle = false;
    loop {
        let mut shutdown = false;
        loop {
            match commands.try_recv() {
                Ok(Command::Shutdown) | Err(TryRecvError::Disconnected) => {
                    shutdown = true;
                    break;
                }
                Ok(c) => side.command(c),
                Err(TryRecvError::Empty) => break,
            }
        }
        let now = epoch.elapsed().as_millis() as u64;
        if now > next_tick + 5 && !slept_idle {
            side.report.late_ticks += 1;
            if now - next_tick > side.report.worst_late_ms {
                side.report.worst_late_ms = now - next_tick;
                side.report.worst_late_at_ms = now;
            }
        }
        while next_tick <= now {
            side.tick(next_tick);
            next_tick += 1;
        }
        side.flush(fd, &live);
        side.receive(fd, &mut batch, &live);
        if shutdown {
            return side.report;
        }
        // With nothing to send, nothing comes back either: wake every 10 ms for commands
        // (a stream starts 200 ms after the ACK that announces it).
        let idle = side.streams.is_empty() && side.out.is_empty();
        slept_idle = idle;
        let deadline = epoch + Duration::from_millis(if idle { next_tick + 9 } else { next_tick });
        let now = Instant::now();
        if deadline > now {
            std::thread::sleep(deadline - now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ticks 0..n, returning (tick, stream index, packet index, RTP seq) of every packet queued.
    fn run_ticks(side: &mut Side, n: u64) -> Vec<(u64, u32, u32, u16)> {
        let mut sent = Vec::new();
        for t in 0..n {
            side.tick(t);
            for p in side.out.drain(..) {
                let (index, packet) = payload::parse_packet(&p).unwrap();
                sent.push((t, index, packet, u16::from_be_bytes([p[2], p[3]])));
            }
            side.out_dest.clear();
            side.out_index.clear();
        }
        sent
    }

    #[test]
    fn streams_send_in_their_phase_inside_their_window() {
        let epoch = Instant::now();
        let mut side = Side::new(epoch, 0);
        let dest: SocketAddrV4 = "127.0.0.1:10000".parse().unwrap();
        let ms = |n| epoch + Duration::from_millis(n);
        side.command(Command::Start { index: 3, dest, start: ms(200), stop: ms(300), keys: None });
        side.command(Command::Start { index: 45, dest, start: ms(190), stop: ms(1000), keys: None });
        side.command(Command::Stop { index: 45, at: ms(250) });
        let sent = run_ticks(&mut side, 400);
        let of = |i| sent.iter().filter(|s| s.1 == i).map(|s| (s.0, s.2)).collect::<Vec<_>>();
        assert_eq!(of(3), [(203, 0), (223, 1), (243, 2), (263, 3), (283, 4)]);
        assert_eq!(of(45), [(205, 0), (225, 1), (245, 2)]);
        let seqs: Vec<u16> = sent.iter().filter(|s| s.1 == 3).map(|s| s.3).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
        assert!(side.streams.is_empty(), "ended streams are dropped");
        assert!(side.slots.iter().all(Vec::is_empty));
    }
}
