//! Peer poking (`qualify`), as chan_sip's `sip_poke_peer`: an OPTIONS to every qualified peer
//! each `qualifyfreq` seconds (the first ones spread over the period, so thousands of peers do
//! not fire at once); any response counts as alive — `OK (N ms)` within `qualify` ms,
//! `LAGGED (N ms)` later; none within 2 × `qualify` ms (or the transaction failing) makes the peer
//! `UNREACHABLE`, poked again every 10 s until it answers; `UNKNOWN` before the first answer.
//! A dynamic peer is poked only while registered.
//!
//! This is the state alone: [`Qualifier::due`] says whom to poke now, the monitor sends the
//! OPTIONS and reports back with [`Qualifier::sent`], [`Qualifier::answered`] and
//! [`Qualifier::failed`]; [`Qualifier::poll_timeout`] says when to call again.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

/// What `sip show peers` says of a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerStatus {
    /// `qualify=no`.
    Unmonitored,
    /// Qualified, no answer yet (or not registered).
    Unknown,
    Reachable {
        ms: u32,
    },
    Lagged {
        ms: u32,
    },
    Unreachable,
}

impl PeerStatus {
    /// The `Status` column of `sip show peers`.
    pub fn text(self) -> String {
        match self {
            PeerStatus::Unmonitored => "Unmonitored".into(),
            PeerStatus::Unknown => "UNKNOWN".into(),
            PeerStatus::Reachable { ms } => format!("OK ({ms} ms)"),
            PeerStatus::Lagged { ms } => format!("LAGGED ({ms} ms)"),
            PeerStatus::Unreachable => "UNREACHABLE".into(),
        }
    }
    pub fn is_online(self) -> bool {
        matches!(self, PeerStatus::Reachable { .. } | PeerStatus::Lagged { .. })
    }
}

/// Asterisk's `DEFAULT_FREQ_NOTOK`: how often an unreachable peer is poked.
pub const UNREACHABLE_FREQ: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Poked {
    /// `qualify` ms.
    max_ms: u32,
    freq: Duration,
    status: PeerStatus,
    next: Instant,
    /// The OPTIONS in flight: when it was sent.
    outstanding: Option<Instant>,
}

/// A change of status, for the log line and the event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusChange {
    pub peer: String,
    pub status: PeerStatus,
    pub max_ms: u32,
    /// The line chan_sip logs (`Peer 'SIP/bob' is now Reachable. (12ms / 2000ms)`).
    pub log: String,
}

#[derive(Debug, Default)]
pub struct Qualifier {
    peers: HashMap<String, Poked>,
    /// Every peer's next deadline (its poke, or its answer's), in order: the monitor asks for the
    /// next one on every wake-up, so this must not be a scan of 10,000 peers.
    schedule: BTreeSet<(Instant, String)>,
    /// Spreads first pokes: a counter mixed into the offset.
    spread: u64,
}

impl Poked {
    /// When this peer next needs attention: its answer's deadline, or its next poke.
    fn deadline(&self) -> Instant {
        match self.outstanding {
            Some(sent) => sent + Duration::from_millis(2 * u64::from(self.max_ms)),
            None => self.next,
        }
    }
}

impl Qualifier {
    /// Makes the set of qualified peers `(name, qualify ms, qualifyfreq s)` the current one
    /// (at start and on `sip reload`): new peers get a first poke spread over their period,
    /// peers that stay keep their status, others are forgotten.
    pub fn configure(&mut self, now: Instant, peers: &[(String, u32, u32)]) {
        let wanted: HashSet<&str> = peers.iter().map(|(n, _, _)| n.as_str()).collect();
        self.peers.retain(|name, _| wanted.contains(name.as_str()));
        for (name, max_ms, freq) in peers {
            let freq = Duration::from_secs(u64::from((*freq).max(1)));
            match self.peers.get_mut(name) {
                Some(p) => {
                    p.max_ms = *max_ms;
                    p.freq = freq;
                }
                None => {
                    // A pseudo-random offset in [0, freq): the golden-ratio sequence spreads
                    // any number of peers evenly over the period.
                    self.spread = self.spread.wrapping_add(0x9e37_79b9_7f4a_7c15);
                    let offset = freq.mul_f64((self.spread >> 11) as f64 / (1u64 << 53) as f64);
                    self.peers.insert(
                        name.clone(),
                        Poked {
                            max_ms: *max_ms,
                            freq,
                            status: PeerStatus::Unknown,
                            next: now + offset,
                            outstanding: None,
                        },
                    );
                }
            }
        }
        self.schedule = self.peers.iter().map(|(name, p)| (p.deadline(), name.clone())).collect();
    }

    /// Runs `f` on a peer and moves it in the schedule if its deadline changed.
    fn update<T>(&mut self, name: &str, f: impl FnOnce(&mut Poked) -> T) -> Option<T> {
        let p = self.peers.get_mut(name)?;
        let before = p.deadline();
        let out = f(p);
        let after = p.deadline();
        if after != before {
            self.schedule.remove(&(before, name.to_owned()));
            self.schedule.insert((after, name.to_owned()));
        }
        Some(out)
    }

    /// The status of a qualified peer (`None`: not qualified).
    pub fn status(&self, peer: &str) -> Option<PeerStatus> {
        self.peers.get(peer).map(|p| p.status)
    }

    /// Every qualified peer's status.
    pub fn statuses(&self) -> impl Iterator<Item = (&str, PeerStatus)> {
        self.peers.iter().map(|(n, p)| (n.as_str(), p.status))
    }

    /// When [`Qualifier::due`] has something to do next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.schedule.first().map(|(at, _)| *at)
    }

    /// Pokes that went unanswered too long become UNREACHABLE (returned as changes); returns
    /// the peers to poke now in `poke` (the caller reports each with [`Qualifier::sent`]).
    pub fn due(&mut self, now: Instant, poke: &mut Vec<String>) -> Vec<StatusChange> {
        let mut changes = Vec::new();
        let mut due = Vec::new();
        while let Some((at, name)) = self.schedule.first().cloned() {
            if at > now {
                break;
            }
            self.schedule.pop_first();
            due.push(name);
        }
        for name in due {
            let Some(p) = self.peers.get_mut(&name) else { continue };
            if let Some(sent) = p.outstanding.take() {
                p.next = now + UNREACHABLE_FREQ;
                if let Some(change) = set_status(&name, p, PeerStatus::Unreachable, now.duration_since(sent)) {
                    changes.push(change);
                }
                self.schedule.insert((p.deadline(), name));
            } else {
                // Out of the schedule until `sent` says what happened.
                poke.push(name);
            }
        }
        changes
    }

    /// The OPTIONS to `peer` left at `now` (or could not: `sent = false`, e.g. a dynamic peer
    /// not registered, which is UNKNOWN and tried again a period later).
    pub fn sent(&mut self, peer: &str, now: Instant, sent: bool) -> Option<StatusChange> {
        let p = self.peers.get_mut(peer)?;
        // Normally `due` took it out of the schedule already; a direct call may not have.
        self.schedule.remove(&(p.deadline(), peer.to_owned()));
        let change = if sent {
            p.outstanding = Some(now);
            None
        } else {
            p.next = now + p.freq;
            set_status(peer, p, PeerStatus::Unknown, Duration::ZERO)
        };
        let deadline = p.deadline();
        self.schedule.insert((deadline, peer.to_owned()));
        change
    }

    /// Pokes `peer` at the next [`Qualifier::due`] (`sip qualify peer`).
    pub fn poke_now(&mut self, peer: &str, now: Instant) -> bool {
        self.update(peer, |p| {
            p.outstanding = None;
            p.next = now;
        })
        .is_some()
    }

    /// A response (any: even 404 or 501 means the peer is there) to the OPTIONS sent to `peer`.
    pub fn answered(&mut self, peer: &str, now: Instant) -> Option<StatusChange> {
        self.update(peer, |p| {
            let sent = p.outstanding.take()?;
            let rtt = now.duration_since(sent);
            let ms = rtt.as_millis().min(u128::from(u32::MAX)) as u32;
            p.next = now + p.freq;
            let status = if ms <= p.max_ms { PeerStatus::Reachable { ms } } else { PeerStatus::Lagged { ms } };
            set_status(peer, p, status, rtt)
        })?
    }

    /// The OPTIONS to `peer` failed (transaction timeout, transport error).
    pub fn failed(&mut self, peer: &str, now: Instant) -> Option<StatusChange> {
        self.update(peer, |p| {
            let sent = p.outstanding.take()?;
            p.next = now + UNREACHABLE_FREQ;
            set_status(peer, p, PeerStatus::Unreachable, now.duration_since(sent))
        })?
    }
}

/// Sets a status; a change (by kind: a new round-trip time alone is not one) is returned with
/// chan_sip's log line.
fn set_status(name: &str, p: &mut Poked, status: PeerStatus, rtt: Duration) -> Option<StatusChange> {
    let before = std::mem::replace(&mut p.status, status);
    if std::mem::discriminant(&before) == std::mem::discriminant(&status) {
        return None;
    }
    let ms = rtt.as_millis();
    let log = match status {
        PeerStatus::Reachable { ms } => format!("Peer 'SIP/{name}' is now Reachable. ({ms}ms / {}ms)", p.max_ms),
        PeerStatus::Lagged { ms } => format!("Peer 'SIP/{name}' is now Lagged. ({ms}ms / {}ms)", p.max_ms),
        PeerStatus::Unreachable => format!("Peer 'SIP/{name}' is now UNREACHABLE!  Last qualify: {ms}"),
        PeerStatus::Unknown => format!("Peer 'SIP/{name}' is now UNKNOWN (not registered)"),
        PeerStatus::Unmonitored => return None,
    };
    Some(StatusChange { peer: name.to_owned(), status, max_ms: p.max_ms, log })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(n: usize) -> Vec<(String, u32, u32)> {
        (0..n).map(|i| (format!("p{i}"), 100, 60)).collect()
    }

    #[test]
    fn first_pokes_are_spread_over_the_period() {
        let now = Instant::now();
        let mut q = Qualifier::default();
        q.configure(now, &peers(10_000));
        let mut per_second = [0u32; 60];
        for p in q.peers.values() {
            per_second[(p.next - now).as_secs() as usize] += 1;
        }
        assert!(per_second.iter().all(|&n| (120..=220).contains(&n)), "{per_second:?}");
    }

    #[test]
    fn answered_fast_slow_and_never() {
        let t0 = Instant::now();
        let mut q = Qualifier::default();
        q.configure(t0, &[("bob".into(), 100, 60)]);
        assert_eq!(q.status("bob"), Some(PeerStatus::Unknown));
        let mut poke = Vec::new();
        q.due(t0 + Duration::from_secs(61), &mut poke);
        assert_eq!(poke, ["bob"]);
        let t1 = t0 + Duration::from_secs(61);
        q.sent("bob", t1, true);
        let change = q.answered("bob", t1 + Duration::from_millis(12)).unwrap();
        assert_eq!(change.log, "Peer 'SIP/bob' is now Reachable. (12ms / 100ms)");
        assert_eq!(q.status("bob").unwrap().text(), "OK (12 ms)");
        // Next poke a period later; this one answers late: LAGGED.
        let t2 = t1 + Duration::from_secs(60);
        q.sent("bob", t2, true);
        let change = q.answered("bob", t2 + Duration::from_millis(150)).unwrap();
        assert_eq!(change.status, PeerStatus::Lagged { ms: 150 });
        // Then no answer within 2 × 100 ms: UNREACHABLE, poked again in 10 s.
        let t3 = t2 + Duration::from_secs(60);
        q.sent("bob", t3, true);
        assert_eq!(q.poll_timeout(), Some(t3 + Duration::from_millis(200)));
        let changes = q.due(t3 + Duration::from_millis(200), &mut Vec::new());
        assert_eq!(changes[0].log, "Peer 'SIP/bob' is now UNREACHABLE!  Last qualify: 200");
        assert_eq!(q.answered("bob", t3 + Duration::from_millis(300)), None, "a late answer is ignored");
        assert_eq!(q.poll_timeout(), Some(t3 + Duration::from_millis(200) + UNREACHABLE_FREQ));
        assert!(q.poke_now("bob", t3));
        let mut poke = Vec::new();
        q.due(t3 + Duration::from_millis(250), &mut poke);
        assert_eq!(poke, ["bob"]);
    }

    #[test]
    fn reload_keeps_status_and_drops_removed_peers() {
        let t0 = Instant::now();
        let mut q = Qualifier::default();
        q.configure(t0, &[("a".into(), 100, 60), ("b".into(), 100, 60)]);
        q.sent("a", t0, true);
        q.answered("a", t0 + Duration::from_millis(5));
        q.configure(t0, &[("a".into(), 2000, 30)]);
        assert_eq!(q.status("a"), Some(PeerStatus::Reachable { ms: 5 }));
        assert_eq!(q.status("b"), None);
        assert!(q.sent("a", t0, false).is_some(), "not registered: UNKNOWN");
    }
}
