//! The relay in the kernel: a tc program on `lo` (bpf/relay.bpf.c) that relays the packets of
//! a leg whose two far ends are both on this host, without waking the relay thread.
//!
//! The relay thread takes each leg's first packets as before. Once a packet from the source
//! the RTP session has learned (strictrtp: the SDP's address, or another after `probation`)
//! has gone through ([`Entry::take`]), the thread hands the leg to the kernel
//! ([`KernelRelay::hand_over`]), keyed by that source's address:
//! one entry in the program's map, keyed by the far end's address and our port, saying how
//! to rewrite the packet (the other call's socket and far end; the relay leg's SSRC,
//! sequence and timestamp offsets and payload types) and carrying on the receive statistics
//! and the relay leg's last packet. From then on the program rewrites each packet of that
//! stream on `lo`'s ingress and the stack delivers it to the other far end as if it came from
//! the other call's socket: one trip through the stack in place of two, and no system call
//! of ours.
//!
//! Whatever the map does not describe exactly goes on to our socket, as before: another
//! SSRC, a payload type the leg does not map, RTCP, a packet from anywhere else. A packet from
//! anywhere else that the session is locked against (strictrtp) is counted there as stray and
//! dropped, and the leg stays in the kernel. When another such packet reaches the thread it
//! first takes the leg back ([`KernelRelay::take_back`]: the
//! entry's counters and last packet go into the RTP session and the relay leg), handles the
//! packet, and hands the leg over again. Every [`SYNC`] the thread takes in the counters of
//! the legs in the kernel (the RTP timeout, RTCP and the leg's [`LegStats`](super::LegStats) see them at that
//! pace), and every [`CHECK`] it takes back a leg whose other far end has moved.
//!
//! Only legs whose far ends are both on this host are handed over: the program lets the
//! stack deliver the rewritten packet locally, and does not route it out of another
//! interface. (Relaying to other hosts from tc would take a FIB lookup and a redirect to the
//! egress interface, and tests with traffic beyond loopback.) IPv4 only.
//!
//! Loading needs CAP_BPF and CAP_NET_ADMIN (root), Linux 6.6 (TCX, whose link the kernel
//! removes when the process ends: a netlink tc filter would outlive a crash), and this crate
//! built with clang (build.rs). Without them every packet goes through the thread.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aya::maps::{HashMap, MapData};

use super::{lock, Entry};

/// How often the relay thread looks whether the other far end of a leg the kernel relays
/// has moved (a re-INVITE, comedia): it then takes the leg back, and the next packet goes to
/// the new address. No system call unless one has.
pub const CHECK: Duration = Duration::from_millis(20);

/// How often the relay thread takes in the counters of the legs the kernel relays.
pub const SYNC: Duration = Duration::from_millis(500);

/// A far end's packets to one of our sockets (`struct leg_key`): addresses and ports as on
/// the wire; `daddr` is 0 for a socket bound to every address.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Key {
    saddr: [u8; 4],
    daddr: [u8; 4],
    sport: [u8; 2],
    dport: [u8; 2],
}

/// `struct leg`, field for field: what the program is to do (written here), then what it
/// keeps (read here).
#[repr(C)]
#[derive(Clone, Copy)]
struct Leg {
    out_saddr: [u8; 4],
    out_daddr: [u8; 4],
    out_sport: [u8; 2],
    out_dport: [u8; 2],
    in_ssrc: u32,
    out_ssrc: u32,
    ts_offset: u32,
    seq_offset: u16,
    pad0: u16,
    clock_rate: u32,
    /// Incoming payload type → outgoing; 0xff: not relayed there.
    pt_map: [u8; 128],
    packets: u64,
    octets: u64,
    relayed_octets: u64,
    last_rx_ns: u64,
    last_transit: i64,
    jitter_q4: u32,
    max_seq: u32,
    last_ts: u32,
    last_step: u32,
    last_seq: u16,
    have_last: u8,
    have_transit: u8,
    pad1: u32,
}

const _: () = assert!(size_of::<Key>() == 12 && size_of::<Leg>() == 224, "as in bpf/relay.bpf.c");

// SAFETY: plain data without implicit padding (the sizes above match the sum of the
// fields); every bit pattern is a valid value.
unsafe impl aya::Pod for Key {}
// SAFETY: as for Key.
unsafe impl aya::Pod for Leg {}

/// A leg in the kernel, as the thread knows it.
#[derive(Clone, Copy)]
pub(super) struct Offload {
    key: Key,
    /// The other far end it sends to (a move takes the leg back).
    target: SocketAddr,
    /// The entry's counters as last taken in.
    seen: Counters,
}

#[derive(Clone, Copy, Default)]
struct Counters {
    packets: u64,
    octets: u64,
    relayed_octets: u64,
}

/// The program, attached to `lo`, and its map. One for all the relay threads.
pub struct KernelRelay {
    legs: Mutex<HashMap<MapData, Key, Leg>>,
    /// Holds the program and its link (dropping it detaches the program).
    _ebpf: Mutex<aya::Ebpf>,
}

impl KernelRelay {
    /// Loads the program and attaches it to `lo`'s ingress.
    #[cfg(kernel_relay)]
    pub fn load() -> io::Result<KernelRelay> {
        use aya::programs::{tc::TcAttachOptions, LinkOrder, SchedClassifier, TcAttachType};
        static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/relay.bpf.o"));
        // Without the kernel's BTF: the program reads no kernel structure (nothing to
        // relocate), and vmlinux's would keep ~8 MB of memory for good. (aya's loader parses
        // it all the same, and `btf(None)` drops it: the ~5 MB it leaves freed in this thread's
        // malloc arena go back to the system below.)
        let loaded = aya::EbpfLoader::new().btf(None).load(OBJECT);
        #[cfg(target_env = "gnu")]
        // SAFETY: glibc's malloc_trim only releases free memory.
        unsafe {
            libc::malloc_trim(0)
        };
        let mut ebpf = loaded.map_err(io::Error::other)?;
        let program: &mut SchedClassifier = ebpf
            .program_mut("starling_rtp_relay")
            .ok_or_else(|| io::Error::other("no program in the object"))?
            .try_into()
            .map_err(io::Error::other)?;
        program.load().map_err(io::Error::other)?;
        program
            .attach_with_options("lo", TcAttachType::Ingress, TcAttachOptions::TcxOrder(LinkOrder::default()))
            .map_err(io::Error::other)?;
        let map = ebpf.take_map("legs").ok_or_else(|| io::Error::other("no map in the object"))?;
        let legs = HashMap::try_from(map).map_err(io::Error::other)?;
        Ok(KernelRelay { legs: Mutex::new(legs), _ebpf: Mutex::new(ebpf) })
    }

    #[cfg(not(kernel_relay))]
    pub fn load() -> io::Result<KernelRelay> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "starling-relay was built without it (no clang)"))
    }

    /// How many legs the kernel relays now, and how many packets it has relayed of them.
    #[cfg(test)]
    pub fn legs(&self) -> (usize, u64) {
        let legs = lock(&self.legs);
        legs.iter().flatten().fold((0, 0), |(n, packets), (_, leg)| (n + 1, packets + leg.packets))
    }

    /// Hands `entry`'s leg to the kernel, its packet from `from` having just gone to `target`,
    /// if it can go there (see the module's doc). Asks again only when either address changes.
    pub(super) fn hand_over(&self, entry: &mut Entry, from: SocketAddr, target: SocketAddr) {
        if entry.offload.is_some() || entry.refused == Some((from, target)) {
            return;
        }
        match describe(entry, from, target) {
            Some((key, leg)) => match lock(&self.legs).insert(key, leg, 0) {
                Ok(()) => entry.offload = Some(Offload { key, target, seen: Counters::default() }),
                Err(e) => {
                    starling_core::tracing::debug!("RTP relay: a leg stays in the thread: {e}");
                    entry.refused = Some((from, target));
                }
            },
            None => entry.refused = Some((from, target)),
        }
    }

    /// Takes `entry`'s leg back from the kernel (nothing to do if it is not there): what the
    /// kernel relayed goes into its RTP session and relay leg.
    pub(super) fn take_back(&self, entry: &mut Entry) {
        let Some(offload) = entry.offload.take() else { return };
        let kept = {
            let mut legs = lock(&self.legs);
            let kept = legs.get(&offload.key, 0).ok();
            let _ = legs.remove(&offload.key);
            kept
        };
        // (A packet the program was relaying at that very moment may be left out of the
        // counters: at 50 packets a second, a rare miscount of one.)
        if let Some(kept) = kept {
            take_in(entry, offload.seen, &kept);
        }
    }

    /// Looks after `entry`'s leg, if the kernel relays it: takes it back when the other far
    /// end has moved; else, with `take_in`, takes in what the kernel relayed since the last time.
    pub(super) fn tend(&self, entry: &mut Entry, take_in: bool) {
        let Some(Offload { key, target, seen }) = entry.offload else { return };
        if lock(&entry.leg.to.media).remote() != Some(target) {
            self.take_back(entry);
        } else if take_in {
            let kept = lock(&self.legs).get(&key, 0).ok();
            // (An entry that is not there any more has nothing left to take in.)
            if let Some(kept) = kept {
                let seen = self::take_in(entry, seen, &kept);
                if let Some(offload) = &mut entry.offload {
                    offload.seen = seen;
                }
            }
        }
    }
}

/// The map's entry for `entry`'s leg, if the kernel can relay it.
fn describe(entry: &Entry, from: SocketAddr, target: SocketAddr) -> Option<(Key, Leg)> {
    let (SocketAddr::V4(from), SocketAddr::V4(to)) = (from, target) else { return None };
    if !on_this_host(*from.ip()) || !on_this_host(*to.ip()) {
        return None;
    }
    let (SocketAddr::V4(ours), SocketAddr::V4(theirs)) =
        (entry.leg.socket.local_addr().ok()?, entry.leg.to.rtp.local_addr().ok()?)
    else {
        return None;
    };
    let source = if theirs.ip().is_unspecified() { source_towards(target)? } else { *theirs.ip() };
    let rx = lock(&entry.leg.session).receive_state()?;
    let relay = entry.leg.to.leg.state()?;
    if relay.in_ssrc != rx.ssrc {
        return None;
    }
    let mut pt_map = [0xff; 128];
    for (pt, slot) in (0u8..).zip(pt_map.iter_mut()) {
        if let Some(out) = entry.leg.to.leg.outgoing_payload_type(pt) {
            *slot = out;
        }
    }
    let (last_seq, last_ts) = relay.last_out.unwrap_or_default();
    let key = Key {
        saddr: from.ip().octets(),
        daddr: ours.ip().octets(),
        sport: from.port().to_be_bytes(),
        dport: ours.port().to_be_bytes(),
    };
    let leg = Leg {
        out_saddr: source.octets(),
        out_daddr: to.ip().octets(),
        out_sport: theirs.port().to_be_bytes(),
        out_dport: to.port().to_be_bytes(),
        in_ssrc: relay.in_ssrc,
        out_ssrc: relay.out_ssrc,
        ts_offset: relay.ts_offset,
        seq_offset: relay.seq_offset,
        pad0: 0,
        clock_rate: rx.clock_rate,
        pt_map,
        packets: 0,
        octets: 0,
        relayed_octets: 0,
        last_rx_ns: 0,
        last_transit: 0,
        jitter_q4: rx.jitter_q4,
        max_seq: rx.extended_max,
        last_ts,
        last_step: relay.last_step,
        last_seq,
        have_last: u8::from(relay.last_out.is_some()),
        have_transit: 0,
        pad1: 0,
    };
    Some((key, leg))
}

/// Puts the kernel's counters in the RTP session and the relay leg (and publishes
/// them: [`LegStats`](super::LegStats)), as far as they went on since `seen`: the counters now taken in.
fn take_in(entry: &mut Entry, seen: Counters, kept: &Leg) -> Counters {
    let packets = kept.packets.wrapping_sub(seen.packets);
    if packets == 0 {
        return seen;
    }
    let last_out = (kept.have_last != 0).then_some((kept.last_seq, kept.last_ts));
    entry.leg.to.leg.relayed_elsewhere(packets, kept.relayed_octets - seen.relayed_octets, last_out, kept.last_step);
    if let Some(next) = entry.leg.to.leg.next_out() {
        // Where the other call's own packets go on when the relaying ends (as the thread
        // says after each packet it relays).
        lock(&entry.leg.to.media).relayed_into(next);
    }
    let stats = {
        let mut session = lock(&entry.leg.session);
        session.received_elsewhere(
            packets,
            kept.octets - seen.octets,
            kept.max_seq,
            kept.jitter_q4,
            instant_at(kept.last_rx_ns),
        );
        session.stats()
    };
    entry.received += packets;
    entry.stats.set(stats);
    Counters { packets: kept.packets, octets: kept.octets, relayed_octets: kept.relayed_octets }
}

/// The [`Instant`] of a CLOCK_MONOTONIC reading (what `bpf_ktime_get_ns` gives).
fn instant_at(monotonic_ns: u64) -> Instant {
    let now = Instant::now();
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let now_ns = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
    now.checked_sub(Duration::from_nanos(now_ns.saturating_sub(monotonic_ns))).unwrap_or(now)
}

/// Whether `ip` is one of this host's addresses (packets to it come in on `lo`).
fn on_this_host(ip: Ipv4Addr) -> bool {
    ip.is_loopback() || UdpSocket::bind((ip, 0)).is_ok()
}

/// The source address the stack gives a packet to `target` from a socket bound to every
/// address.
fn source_towards(target: SocketAddr) -> Option<Ipv4Addr> {
    let probe = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    probe.connect(target).ok()?;
    match probe.local_addr().ok()?.ip() {
        IpAddr::V4(ip) => Some(ip),
        IpAddr::V6(_) => None,
    }
}
