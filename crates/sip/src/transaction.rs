//! Transactions (RFC 3261 §17, with RFC 6026's Accepted state), behind one [`Endpoint`].
//!
//! The endpoint is the whole transaction layer of one socket, without the socket: bytes
//! that arrived go in through [`Endpoint::handle`], requests and responses from the
//! transaction user (chan_sip) through [`Endpoint::send_request`] and
//! [`Endpoint::send_response`]; out come datagrams ([`Endpoint::poll_transmit`]), events
//! ([`Endpoint::poll_event`]) and the next deadline ([`Endpoint::poll_timeout`]). Time is an
//! argument; nothing here reads a clock. After every input, drain `poll_transmit` and
//! `poll_event` and re-arm the timer from `poll_timeout` before the next input.
//!
//! What it does for the transaction user:
//! - absorbs retransmitted requests (answering them with the last response) and retransmitted
//!   final responses (re-sending the ACK for a non-2xx);
//! - retransmits requests (Timers A, E) and non-2xx finals (Timer G) over unreliable transports,
//!   and times transactions out (Timers B, F, H);
//! - sends the ACK for a non-2xx final itself; answers CANCEL (200, or 481 when nothing matches)
//!   and reports the INVITE it cancels;
//! - for an INVITE answered 2xx (Accepted), retransmits the 2xx until the ACK arrives (RFC 3261
//!   §13.3.1.4 puts this in the UAS core; it lives here so chan_sip need not keep a timer per
//!   call) and reports the ACK, or [`TerminationReason::NoAck`] after 64·T1;
//! - answers a request it cannot parse with `400` where one can be formed;
//! - caps the server transactions it keeps ([`Config::max_server_transactions`]): past the
//!   cap a new request makes no transaction and goes up as [`Event::Overloaded`], for the
//!   transaction user to take ([`Endpoint::accept`]: a request in one of its dialogs, from a
//!   peer it knows) or refuse ([`Endpoint::refuse`]: a stateless `503` with `Retry-After`);
//! - adds `received`/`rport` to the top Via of requests (RFC 3261 §18.2.1, RFC 3581), and sends
//!   responses back to where the request came from.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::header::HeaderName;
use crate::message::{parse_datagram, Datagram, MessageHeaders, ParseError, Request, Response, SipMessage};
use crate::typed::{CSeq, Method, Via};
use crate::uri::Host;

/// RFC 3261's timer letters (and RFC 6026's L and M).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    /// INVITE client: retransmit.
    A,
    /// INVITE client: give up.
    B,
    /// INVITE client: wait for retransmitted finals after a non-2xx.
    D,
    /// Non-INVITE client: retransmit.
    E,
    /// Non-INVITE client: give up.
    F,
    /// INVITE server: retransmit the final response (non-2xx; 2xx while Accepted).
    G,
    /// INVITE server: give up waiting for the ACK of a non-2xx.
    H,
    /// INVITE server: absorb ACK retransmissions.
    I,
    /// Non-INVITE server: absorb request retransmissions.
    J,
    /// Non-INVITE client: absorb response retransmissions.
    K,
    /// INVITE server (RFC 6026): leave Accepted.
    L,
    /// INVITE client (RFC 6026): leave Accepted.
    M,
}

/// RFC 3261's T1, T2, T4 and the endpoint's behaviour.
#[derive(Clone, Debug)]
pub struct Config {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
    /// Send `100 Trying` as soon as an INVITE arrives (Asterisk does).
    pub auto_trying: bool,
    /// At most this many server transactions are kept (each holds its last response, up
    /// to 64·T1): past it a new request goes up as [`Event::Overloaded`], and
    /// [`Endpoint::accept`] takes at most as many again.
    pub max_server_transactions: usize,
    /// The `Retry-After` of the `503` that refuses a request past the cap.
    pub retry_after: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            auto_trying: true,
            max_server_transactions: usize::MAX,
            retry_after: Duration::from_secs(5),
        }
    }
}

/// UDP retransmits; TCP/TLS do not (and their "wait" timers are zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    /// TCP with TLS on it (RFC 3261 §26.2.1: `SIP/2.0/TLS` in the Via, `transport=tls` in URIs).
    Tls,
}

impl Transport {
    /// Whether the transport delivers in order and resends itself (TCP and TLS): no
    /// retransmission timers then.
    pub fn reliable(self) -> bool {
        self != Transport::Udp
    }
    /// The name a Via writes (`UDP`, `TCP`, `TLS`).
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }
    /// The value of a URI's `transport` parameter for it (`None` for UDP, the default).
    pub fn uri_param(self) -> Option<&'static str> {
        match self {
            Transport::Udp => None,
            Transport::Tcp => Some("tcp"),
            Transport::Tls => Some("tls"),
        }
    }
    /// From a Via's transport or a URI's `transport` parameter (any case); `None` for others.
    pub fn from_name(name: &str) -> Option<Transport> {
        [Transport::Udp, Transport::Tcp, Transport::Tls].into_iter().find(|t| t.via_name().eq_ignore_ascii_case(name))
    }
}

/// Bytes to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub remote: SocketAddr,
    pub transport: Transport,
    pub data: Vec<u8>,
}

/// A transaction's handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId(u64);

/// Why a transaction ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TerminationReason {
    /// It ran to its end.
    Completed,
    /// No final response in time (Timer B, F): treat as 408.
    Timeout,
    /// A final response was not acknowledged (Timer H, or L for a 2xx).
    NoAck,
    /// The transport reported an error.
    TransportError,
}

/// What the transaction user learns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A new request (not ACK, not CANCEL). Answer it with [`Endpoint::send_response`].
    Request { tx: TxId, request: Request, remote: SocketAddr, transport: Transport },
    /// An ACK for a 2xx, which no transaction owns: it goes to the dialog. `tx` is the INVITE
    /// transaction whose 2xx it acknowledges, if that is still known.
    Ack { tx: Option<TxId>, request: Request, remote: SocketAddr },
    /// A CANCEL for `tx` arrived; the endpoint has answered it 200. Answer the INVITE (487).
    Cancelled { tx: TxId, request: Request },
    /// A response to a request sent with [`Endpoint::send_request`] (retransmitted finals are
    /// absorbed, but a retransmitted 2xx to an INVITE comes again so the dialog re-sends ACK).
    Response { tx: TxId, response: Response },
    /// A response that matches no transaction (a 2xx after Timer M, a stray): for the dialog.
    StrayResponse { response: Response, remote: SocketAddr },
    /// A transaction ended.
    Terminated { tx: TxId, reason: TerminationReason },
    /// A message that did not parse; a 400 has been queued when one could be formed.
    Malformed { remote: SocketAddr, error: ParseError },
    /// A new request (not ACK, not CANCEL) while [`Config::max_server_transactions`] are
    /// live: no transaction was made. Take it with [`Endpoint::accept`] (it belongs to a
    /// dialog, or comes from a peer the transaction user knows) or refuse it with
    /// [`Endpoint::refuse`]; a request left alone gets nothing (its sender retransmits).
    Overloaded { request: Request, remote: SocketAddr, transport: Transport },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Calling,
    Trying,
    Proceeding,
    Accepted,
    Completed,
    Confirmed,
}

/// What identifies a transaction, borrowed from a message being matched or from the
/// transaction itself. Server: RFC 3261 §17.2.3 (branch, sent-by, method with ACK as
/// INVITE), or the RFC 2543 fallback; client: §17.1.3 (branch, CSeq method).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum KeyRef<'a> {
    Client { branch: &'a str, method: &'a str },
    Server { branch: &'a str, sent_by: &'a str, method: &'a str },
    Server2543 { uri: &'a str, from_tag: &'a str, call_id: &'a str, cseq: u32, method: &'a str, via: &'a str },
}

/// The owned form of [`KeyRef`], kept by each transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Key {
    Client { branch: Box<str>, method: Box<str> },
    Server { branch: Box<str>, sent_by: Box<str>, method: Box<str> },
    Server2543 { uri: Box<str>, from_tag: Box<str>, call_id: Box<str>, cseq: u32, method: Box<str>, via: Box<str> },
}

impl Key {
    fn as_ref(&self) -> KeyRef<'_> {
        match self {
            Key::Client { branch, method } => KeyRef::Client { branch, method },
            Key::Server { branch, sent_by, method } => KeyRef::Server { branch, sent_by, method },
            Key::Server2543 { uri, from_tag, call_id, cseq, method, via } => {
                KeyRef::Server2543 { uri, from_tag, call_id, cseq: *cseq, method, via }
            }
        }
    }

    fn from_ref(key: KeyRef<'_>) -> Key {
        match key {
            KeyRef::Client { branch, method } => Key::Client { branch: branch.into(), method: method.into() },
            KeyRef::Server { branch, sent_by, method } => {
                Key::Server { branch: branch.into(), sent_by: sent_by.into(), method: method.into() }
            }
            KeyRef::Server2543 { uri, from_tag, call_id, cseq, method, via } => Key::Server2543 {
                uri: uri.into(),
                from_tag: from_tag.into(),
                call_id: call_id.into(),
                cseq,
                method: method.into(),
                via: via.into(),
            },
        }
    }
}

/// A key for a lookup: borrowed from the message where it can be (the common case, no
/// allocation), owned where it had to be computed (the RFC 2543 fallback).
enum Lookup<'a> {
    Borrowed(KeyRef<'a>),
    Owned(Key),
}

impl Lookup<'_> {
    fn key(&self) -> KeyRef<'_> {
        match self {
            Lookup::Borrowed(k) => *k,
            Lookup::Owned(k) => k.as_ref(),
        }
    }
}

/// Identifies the 2xx whose ACK is awaited (Call-ID, CSeq number, From tag).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct AckKey {
    call_id: Box<str>,
    cseq: u32,
    from_tag: Box<str>,
}

struct Transaction {
    kind: Kind,
    state: State,
    remote: SocketAddr,
    transport: Transport,
    /// The bytes retransmitted by Timers A/E (request) or G (response), or re-sent when a
    /// retransmission arrives.
    last: Option<Vec<u8>>,
    /// The current retransmission interval.
    interval: Duration,
    /// Active timers and their deadlines: mostly two at a time (A/B, E/F, G/H), so room for two
    /// is made up front.
    timers: Vec<(Timer, Instant)>,
    /// Client INVITE: the request, to build the ACK for a non-2xx (boxed: most transactions
    /// have none).
    request: Option<Box<Request>>,
    /// Client INVITE: the ACK sent for a non-2xx, re-sent on each retransmitted final.
    ack: Option<Vec<u8>>,
    key: Key,
    ack_key: Option<AckKey>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    InviteClient,
    NonInviteClient,
    InviteServer,
    NonInviteServer,
}

/// The transaction layer of one socket; see the module docs.
pub struct Endpoint {
    config: Config,
    next_id: u64,
    /// Boxed: a transaction is a few hundred bytes, and a table of them inline keeps that much
    /// in every empty slot too; the table never shrinks, so a burst (a registration storm,
    /// 2,000 BLF keys subscribing: each server transaction lives Timer J's 32 s) would leave it
    /// that big for good.
    transactions: HashMap<TxId, Box<Transaction>>,
    /// Transactions by the hash of their key (with a per-process random hasher, so nobody can
    /// aim collisions at it); a lookup hashes borrowed parts of the message, allocating nothing.
    index: HashMap<u64, Vec<TxId>>,
    hasher: RandomState,
    awaiting_ack: HashMap<AckKey, TxId>,
    timers: BTreeSet<(Instant, TxId, Timer)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// Server transactions live (counted against [`Config::max_server_transactions`]).
    servers: usize,
    /// Requests refused with `503` since [`Endpoint::take_refused`] was last called.
    refused: u64,
}

const MAGIC_COOKIE: &str = "z9hG4bK";

fn sent_by(via: &Via) -> String {
    match via.port {
        Some(p) => format!("{}:{p}", via.host),
        None => via.host.to_string(),
    }
}

impl Endpoint {
    pub fn new(config: Config) -> Endpoint {
        Endpoint {
            config,
            next_id: 0,
            transactions: HashMap::new(),
            index: HashMap::new(),
            hasher: RandomState::new(),
            awaiting_ack: HashMap::new(),
            timers: BTreeSet::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            servers: 0,
            refused: 0,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Changes the cap on server transactions (a reload); those live past a lower cap run out.
    pub fn set_max_server_transactions(&mut self, max: usize) {
        self.config.max_server_transactions = max;
    }

    /// How many transactions are live.
    pub fn len(&self) -> usize {
        self.transactions.len()
    }
    pub fn is_empty(&self) -> bool {
        self.transactions.is_empty()
    }

    /// How many server transactions are live (what [`Config::max_server_transactions`] caps).
    pub fn server_transactions(&self) -> usize {
        self.servers
    }

    /// How many requests were refused with `503` since the last call (for a log line with a
    /// count, rather than one per request).
    pub fn take_refused(&mut self) -> u64 {
        std::mem::take(&mut self.refused)
    }

    /// Bytes to send next. Call until `None` after every input.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event. Call until `None` after every input.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Endpoint::handle_timeout`] must be called next. The value may change after any
    /// call that takes `now`.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(at, _, _)| *at)
    }

    /// Runs every timer due at `now`. An early or extra call does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, tx, timer)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            let live = self.transactions.get_mut(&tx).is_some_and(|t| {
                let before = t.timers.len();
                t.timers.retain(|(name, when)| !(*name == timer && *when == at));
                t.timers.len() != before
            });
            if live {
                self.fire(now, tx, timer);
            }
        }
    }

    fn new_id(&mut self) -> TxId {
        self.next_id += 1;
        TxId(self.next_id)
    }

    fn find(&self, key: KeyRef<'_>) -> Option<TxId> {
        let list = self.index.get(&self.hasher.hash_one(key))?;
        list.iter().copied().find(|tx| self.transactions.get(tx).is_some_and(|t| t.key.as_ref() == key))
    }

    fn insert(&mut self, tx: TxId, transaction: Transaction) {
        let hash = self.hasher.hash_one(transaction.key.as_ref());
        // Room for one: a key's hash is nearly always its own.
        self.index.entry(hash).or_insert_with(|| Vec::with_capacity(1)).push(tx);
        self.transactions.insert(tx, Box::new(transaction));
    }

    /// (Re)arms `timer` of `tx` for `at`.
    fn start_timer(&mut self, tx: TxId, timer: Timer, at: Instant) {
        self.stop_timer(tx, timer);
        if let Some(t) = self.transactions.get_mut(&tx) {
            t.timers.push((timer, at));
            self.timers.insert((at, tx, timer));
        }
    }

    fn stop_timer(&mut self, tx: TxId, timer: Timer) {
        if let Some(t) = self.transactions.get_mut(&tx) {
            t.timers.retain(|(name, when)| {
                if *name == timer {
                    self.timers.remove(&(*when, tx, timer));
                    false
                } else {
                    true
                }
            });
        }
    }

    fn terminate(&mut self, tx: TxId, reason: TerminationReason) {
        let Some(t) = self.transactions.remove(&tx) else { return };
        if matches!(t.kind, Kind::InviteServer | Kind::NonInviteServer) {
            self.servers -= 1;
        }
        for (timer, at) in &t.timers {
            self.timers.remove(&(*at, tx, *timer));
        }
        let hash = self.hasher.hash_one(t.key.as_ref());
        if let Some(list) = self.index.get_mut(&hash) {
            list.retain(|other| *other != tx);
            if list.is_empty() {
                self.index.remove(&hash);
            }
        }
        if let Some(k) = &t.ack_key {
            if self.awaiting_ack.get(k) == Some(&tx) {
                self.awaiting_ack.remove(k);
            }
        }
        self.events.push_back(Event::Terminated { tx, reason });
    }

    fn transmit(&mut self, remote: SocketAddr, transport: Transport, data: Vec<u8>) {
        self.transmits.push_back(Transmit { remote, transport, data });
    }

    /// The transport reported that `tx`'s messages cannot be sent (RFC 3261 §17.1.4).
    pub fn handle_transport_error(&mut self, tx: TxId) {
        self.terminate(tx, TerminationReason::TransportError);
    }

    /// Starts a client transaction for `request` (which must carry a top Via whose branch is
    /// unique; see [`Endpoint::new_branch`]) and sends it.
    pub fn send_request(
        &mut self,
        now: Instant,
        mut request: Request,
        remote: SocketAddr,
        transport: Transport,
    ) -> TxId {
        stamp_transport(&mut request, transport);
        let tx = self.new_id();
        let branch = request.headers.get(&HeaderName::Via).and_then(|v| via_parts(v)).map_or("", |(_, b)| b);
        let key = Key::from_ref(KeyRef::Client { branch, method: request.method.as_str() });
        let data = request.to_bytes();
        let invite = request.method == Method::Invite;
        let t1 = self.config.t1;
        let transaction = Transaction {
            kind: if invite { Kind::InviteClient } else { Kind::NonInviteClient },
            state: if invite { State::Calling } else { State::Trying },
            remote,
            transport,
            last: Some(data.clone()),
            interval: t1,
            timers: Vec::with_capacity(2),
            request: invite.then(|| Box::new(request)),
            ack: None,
            key,
            ack_key: None,
        };
        self.insert(tx, transaction);
        self.transmit(remote, transport, data);
        let (retransmit, give_up) = if invite { (Timer::A, Timer::B) } else { (Timer::E, Timer::F) };
        if !transport.reliable() {
            self.start_timer(tx, retransmit, now + t1);
        }
        self.start_timer(tx, give_up, now + 64 * t1);
        tx
    }

    /// Sends a message outside any transaction: the ACK for a 2xx (RFC 3261 §13.2.2.4), or a
    /// 2xx re-sent by a dialog.
    pub fn send_stateless(&mut self, remote: SocketAddr, transport: Transport, message: &SipMessage) {
        self.transmit(remote, transport, message.to_bytes());
    }

    /// Sends bytes already made outside any transaction (an ACK kept for a retransmitted 2xx).
    pub fn send_bytes(&mut self, remote: SocketAddr, transport: Transport, data: Vec<u8>) {
        self.transmit(remote, transport, data);
    }

    /// A branch parameter for a new client transaction: the magic cookie and `unique`
    /// (the caller supplies the randomness).
    pub fn new_branch(unique: &str) -> String {
        format!("{MAGIC_COOKIE}{unique}")
    }

    /// Answers the server transaction `tx`. Provisional responses may be sent several times,
    /// then one final. Ignored when `tx` has ended or already has a final response.
    pub fn send_response(&mut self, now: Instant, tx: TxId, response: Response) {
        let Some(t) = self.transactions.get_mut(&tx) else { return };
        if !matches!(t.state, State::Trying | State::Proceeding) {
            return;
        }
        let data = response.to_bytes();
        let (remote, transport, kind) = (t.remote, t.transport, t.kind);
        t.last = Some(data.clone());
        let t1 = self.config.t1;
        let reliable = transport.reliable();
        self.transmit(remote, transport, data);
        let status = response.status;
        match (kind, status) {
            (_, 100..=199) => {
                if let Some(t) = self.transactions.get_mut(&tx) {
                    t.state = State::Proceeding;
                }
            }
            (Kind::InviteServer, 200..=299) => {
                if let Some(t) = self.transactions.get_mut(&tx) {
                    t.state = State::Accepted;
                    t.interval = t1;
                }
                if let Some(key) = ack_key(&response) {
                    self.awaiting_ack.insert(key.clone(), tx);
                    if let Some(t) = self.transactions.get_mut(&tx) {
                        t.ack_key = Some(key);
                    }
                }
                if !reliable {
                    self.start_timer(tx, Timer::G, now + t1);
                }
                self.start_timer(tx, Timer::L, now + 64 * t1);
            }
            (Kind::InviteServer, _) => {
                if let Some(t) = self.transactions.get_mut(&tx) {
                    t.state = State::Completed;
                    t.interval = t1;
                }
                if !reliable {
                    self.start_timer(tx, Timer::G, now + t1);
                }
                self.start_timer(tx, Timer::H, now + 64 * t1);
            }
            (_, _) => {
                if let Some(t) = self.transactions.get_mut(&tx) {
                    t.state = State::Completed;
                }
                let wait = if reliable { Duration::ZERO } else { 64 * t1 };
                self.start_timer(tx, Timer::J, now + wait);
            }
        }
    }

    fn fire(&mut self, now: Instant, tx: TxId, timer: Timer) {
        let t2 = self.config.t2;
        let Some(t) = self.transactions.get_mut(&tx) else { return };
        match timer {
            Timer::A | Timer::E | Timer::G => {
                let Some(data) = t.last.clone() else { return };
                let still = match timer {
                    Timer::A => t.state == State::Calling,
                    Timer::E => matches!(t.state, State::Trying | State::Proceeding),
                    _ => matches!(t.state, State::Completed | State::Accepted),
                };
                if !still {
                    return;
                }
                // Timer A doubles without bound; E and G stop at T2 (E at T2 once Proceeding).
                t.interval = match timer {
                    Timer::A => t.interval * 2,
                    Timer::E if t.state == State::Proceeding => t2,
                    _ => (t.interval * 2).min(t2),
                };
                let (remote, transport, next) = (t.remote, t.transport, now + t.interval);
                self.transmit(remote, transport, data);
                self.start_timer(tx, timer, next);
            }
            Timer::B | Timer::F => self.terminate(tx, TerminationReason::Timeout),
            Timer::H | Timer::L => self.terminate(tx, TerminationReason::NoAck),
            Timer::D | Timer::I | Timer::J | Timer::K | Timer::M => self.terminate(tx, TerminationReason::Completed),
        }
    }

    /// The server transaction a request belongs to (a retransmission, an ACK, a CANCEL's INVITE
    /// is looked up with its own method), if any.
    pub fn match_request(&self, request: &Request) -> Option<TxId> {
        self.find(server_key(request)?.key())
    }

    /// The client transaction a response belongs to, if any.
    pub fn match_response(&self, response: &Response) -> Option<TxId> {
        let (_, branch) = via_parts(response.headers.get(&HeaderName::Via)?)?;
        let cseq = response.headers.get(&HeaderName::CSeq)?;
        let method = cseq.split_ascii_whitespace().nth(1)?;
        self.find(KeyRef::Client { branch, method })
    }

    /// The server transaction `response` answers, found from what a response copies from its
    /// request (top Via, CSeq method): for a transaction user that keeps no [`TxId`] per
    /// request, like [`crate::session::InviteSession`]. `None` for an RFC 2543 request (no
    /// magic cookie), whose key needs its Request-URI.
    pub fn match_server_response(&self, response: &Response) -> Option<TxId> {
        let (sent_by, branch) = via_parts(response.headers.get(&HeaderName::Via)?)?;
        if !branch.starts_with(MAGIC_COOKIE) {
            return None;
        }
        let method = response.headers.get(&HeaderName::CSeq)?.split_ascii_whitespace().nth(1)?;
        let method = if method.eq_ignore_ascii_case("ACK") { "INVITE" } else { method };
        self.find(KeyRef::Server { branch, sent_by, method })
    }

    /// Handles one datagram (or one message read from a stream) from `remote`.
    pub fn handle(&mut self, now: Instant, remote: SocketAddr, transport: Transport, data: &[u8]) {
        match parse_datagram(data) {
            Ok(Datagram::KeepAlive) => {}
            Ok(Datagram::Message(message)) => self.handle_message(now, remote, transport, message),
            Err(error) => {
                if let Some(response) = error.bad_request() {
                    self.transmit(remote, transport, response.to_bytes());
                }
                self.events.push_back(Event::Malformed { remote, error });
            }
        }
    }

    /// Handles a message already parsed (a stream's [`crate::message::StreamDecoder`] output).
    pub fn handle_message(&mut self, now: Instant, remote: SocketAddr, transport: Transport, message: SipMessage) {
        match message {
            SipMessage::Request(request) => self.handle_request(now, remote, transport, request),
            SipMessage::Response(response) => self.handle_response(now, remote, response),
        }
    }

    fn handle_response(&mut self, now: Instant, remote: SocketAddr, response: Response) {
        let Some(tx) = self.match_response(&response) else {
            self.events.push_back(Event::StrayResponse { response, remote });
            return;
        };
        let (t1, t4) = (self.config.t1, self.config.t4);
        let Some(t) = self.transactions.get(&tx) else { return };
        let (kind, state, remote, transport) = (t.kind, t.state, t.remote, t.transport);
        let reliable = transport.reliable();
        let status = response.status;
        let set_state = |this: &mut Self, state: State| {
            if let Some(t) = this.transactions.get_mut(&tx) {
                t.state = state;
            }
        };
        match (kind, state, status) {
            (Kind::InviteClient, State::Calling | State::Proceeding, 100..=199) => {
                set_state(self, State::Proceeding);
                self.stop_timer(tx, Timer::A);
                self.events.push_back(Event::Response { tx, response });
            }
            (Kind::InviteClient, State::Calling | State::Proceeding, 200..=299) => {
                set_state(self, State::Accepted);
                // Accepted only absorbs 2xx retransmissions (for 64·T1): the INVITE is no longer
                // needed, and at a thousand calls a second it would hold a lot of memory.
                if let Some(t) = self.transactions.get_mut(&tx) {
                    t.last = None;
                    t.request = None;
                }
                self.stop_timer(tx, Timer::A);
                self.stop_timer(tx, Timer::B);
                self.start_timer(tx, Timer::M, now + 64 * t1);
                self.events.push_back(Event::Response { tx, response });
            }
            (Kind::InviteClient, State::Accepted, 200..=299) => {
                // A retransmitted 2xx: the dialog re-sends its ACK.
                self.events.push_back(Event::Response { tx, response });
            }
            (Kind::InviteClient, State::Calling | State::Proceeding, 300..) => {
                let ack = t.request.as_ref().map(|invite| ack_for_non_2xx(invite, &response).to_bytes());
                if let Some(t) = self.transactions.get_mut(&tx) {
                    t.state = State::Completed;
                    t.ack = ack.clone();
                }
                if let Some(ack) = ack {
                    self.transmit(remote, transport, ack);
                }
                self.stop_timer(tx, Timer::A);
                self.stop_timer(tx, Timer::B);
                let wait = if reliable { Duration::ZERO } else { Duration::from_secs(32) };
                self.start_timer(tx, Timer::D, now + wait);
                self.events.push_back(Event::Response { tx, response });
            }
            (Kind::InviteClient, State::Completed, 300..) => {
                if let Some(ack) = t.ack.clone() {
                    self.transmit(remote, transport, ack);
                }
            }
            (Kind::NonInviteClient, State::Trying | State::Proceeding, 100..=199) => {
                set_state(self, State::Proceeding);
                self.events.push_back(Event::Response { tx, response });
            }
            (Kind::NonInviteClient, State::Trying | State::Proceeding, 200..) => {
                set_state(self, State::Completed);
                if let Some(t) = self.transactions.get_mut(&tx) {
                    t.last = None;
                }
                self.stop_timer(tx, Timer::E);
                self.stop_timer(tx, Timer::F);
                let wait = if reliable { Duration::ZERO } else { t4 };
                self.start_timer(tx, Timer::K, now + wait);
                self.events.push_back(Event::Response { tx, response });
            }
            _ => {} // a retransmission the state has already seen
        }
    }

    fn handle_request(&mut self, now: Instant, remote: SocketAddr, transport: Transport, mut request: Request) {
        mark_received(&mut request, remote);
        let Some(key) = server_key(&request).map(|k| Key::from_ref(k.key())) else { return };
        if let Some(tx) = self.find(key.as_ref()) {
            self.handle_retransmission(now, tx, &request);
            return;
        }
        match request.method {
            Method::Ack => {
                // An ACK that matches no INVITE transaction acknowledges a 2xx.
                let tx = ack_key_of_request(&request).and_then(|k| self.awaiting_ack.remove(&k));
                if let Some(tx) = tx {
                    self.terminate(tx, TerminationReason::Completed);
                }
                self.events.push_back(Event::Ack { tx, request, remote });
            }
            Method::Cancel => self.handle_cancel(now, remote, transport, request, key),
            _ if self.servers >= self.config.max_server_transactions => {
                self.events.push_back(Event::Overloaded { request, remote, transport });
            }
            _ => self.start_server(now, remote, transport, request, key),
        }
    }

    fn start_server(&mut self, now: Instant, remote: SocketAddr, transport: Transport, request: Request, key: Key) {
        let tx = self.new_server(remote, transport, &request, key);
        if request.method == Method::Invite && self.config.auto_trying {
            let trying = Response::to_request(&request, 100);
            self.send_response(now, tx, trying);
        }
        self.events.push_back(Event::Request { tx, request, remote, transport });
    }

    /// Takes a request that came as [`Event::Overloaded`]: a server transaction is made for
    /// it past the cap, and it comes again as [`Event::Request`]. At twice the cap it is
    /// refused instead (that bounds what requests the transaction user vouches for can hold).
    pub fn accept(&mut self, now: Instant, request: Request, remote: SocketAddr, transport: Transport) {
        if self.servers >= self.config.max_server_transactions.saturating_mul(2) {
            return self.refuse(request, remote, transport);
        }
        let Some(key) = server_key(&request).map(|k| Key::from_ref(k.key())) else { return };
        match self.find(key.as_ref()) {
            // A retransmission taken meanwhile: it is answered as one.
            Some(tx) => self.handle_retransmission(now, tx, &request),
            None => self.start_server(now, remote, transport, request, key),
        }
    }

    /// Refuses a request that came as [`Event::Overloaded`] with `503 Service Unavailable`
    /// and `Retry-After`, keeping no state. Its To tag is made from its Call-ID, so a
    /// retransmission is refused with the same tag.
    pub fn refuse(&mut self, request: Request, remote: SocketAddr, transport: Transport) {
        let mut response = Response::to_request(&request, 503);
        let tag = self.hasher.hash_one(request.call_id().unwrap_or(""));
        response.set_to_tag(&format!("{tag:016x}"));
        response.headers.push(HeaderName::RetryAfter, self.config.retry_after.as_secs().to_string());
        self.refused += 1;
        self.transmit(remote, transport, response.to_bytes());
    }

    fn new_server(&mut self, remote: SocketAddr, transport: Transport, request: &Request, key: Key) -> TxId {
        self.servers += 1;
        let tx = self.new_id();
        let invite = request.method == Method::Invite;
        self.insert(
            tx,
            Transaction {
                kind: if invite { Kind::InviteServer } else { Kind::NonInviteServer },
                state: if invite { State::Proceeding } else { State::Trying },
                remote,
                transport,
                last: None,
                interval: self.config.t1,
                timers: Vec::with_capacity(2),
                request: None,
                ack: None,
                key,
                ack_key: None,
            },
        );
        tx
    }

    fn handle_retransmission(&mut self, now: Instant, tx: TxId, request: &Request) {
        let t4 = self.config.t4;
        let Some(t) = self.transactions.get_mut(&tx) else { return };
        if request.method == Method::Ack {
            // The ACK of a non-2xx final: stop retransmitting, absorb ACKs for a while.
            if t.kind == Kind::InviteServer && t.state == State::Completed {
                t.state = State::Confirmed;
                let wait = if t.transport.reliable() { Duration::ZERO } else { t4 };
                self.stop_timer(tx, Timer::G);
                self.stop_timer(tx, Timer::H);
                self.start_timer(tx, Timer::I, now + wait);
            }
            return;
        }
        // A retransmitted request gets the last response again (nothing while Trying).
        if matches!(t.state, State::Proceeding | State::Completed) {
            if let Some(last) = t.last.clone() {
                let (remote, transport) = (t.remote, t.transport);
                self.transmit(remote, transport, last);
            }
        }
    }

    fn handle_cancel(&mut self, now: Instant, remote: SocketAddr, transport: Transport, request: Request, key: Key) {
        let invite_key = match key.as_ref() {
            KeyRef::Server { branch, sent_by, .. } => KeyRef::Server { branch, sent_by, method: "INVITE" },
            KeyRef::Server2543 { uri, from_tag, call_id, cseq, via, .. } => {
                KeyRef::Server2543 { uri, from_tag, call_id, cseq, method: "INVITE", via }
            }
            KeyRef::Client { .. } => return,
        };
        let invite = self.find(invite_key);
        let pending = invite.filter(|i| self.transactions.get(i).is_some_and(|t| t.state == State::Proceeding));
        if pending.is_none() && self.servers >= self.config.max_server_transactions {
            // Past the cap a CANCEL that cancels nothing is answered without a transaction
            // (one that does is served: there is one per INVITE kept).
            let response = Response::to_request(&request, 481);
            return self.transmit(remote, transport, response.to_bytes());
        }
        let tx = self.new_server(remote, transport, &request, key);
        let status = if pending.is_some() { 200 } else { 481 };
        let mut response = Response::to_request(&request, status);
        // The CANCEL's 200 carries the To tag the INVITE's responses carry (none yet, usually).
        if let Some(tag) = request.to().and_then(|t| t.tag().map(str::to_owned)) {
            response.set_to_tag(&tag);
        }
        self.send_response(now, tx, response);
        if let Some(invite) = pending {
            self.events.push_back(Event::Cancelled { tx: invite, request });
        }
    }
}

/// RFC 3261 §18.2.1 and RFC 3581: note where the request really came from in its top Via.
fn mark_received(request: &mut Request, remote: SocketAddr) {
    let Some(mut via) = request.top_via() else { return };
    let source = Host::from(remote.ip());
    let mut changed = false;
    if via.host != source {
        via.set_param("received", Some(remote.ip().to_string()));
        changed = true;
    }
    if via.rport().is_some() {
        via.set_param("rport", Some(remote.port().to_string()));
        if via.received().is_none() {
            via.set_param("received", Some(remote.ip().to_string()));
        }
        changed = true;
    }
    if changed {
        if let Some(first) = request.headers.0.iter_mut().find(|h| h.name == HeaderName::Via) {
            first.value = via.to_string();
        }
    }
}

/// `(sent-by, branch)` of a Via value, borrowed: `SIP/2.0/UDP host:port;branch=z9hG4bK...`.
/// `None` when the sent-by has whitespace inside (legal, rare: the caller computes it the slow way).
fn via_parts(value: &str) -> Option<(&str, &str)> {
    // Past "SIP / 2.0 / transport": the second '/', then the transport token.
    let mut slashes = value.match_indices('/');
    slashes.next()?;
    let (second, _) = slashes.next()?;
    let rest = value[second + 1..].trim_start();
    let transport_end = rest.find(|c: char| c.is_ascii_whitespace())?;
    let rest = rest[transport_end..].trim_start();
    let (sent_by, params) = rest.split_once(';').unwrap_or((rest, ""));
    let sent_by = sent_by.trim_end();
    if sent_by.is_empty() || sent_by.contains(char::is_whitespace) {
        return None;
    }
    let branch = params
        .split(';')
        .filter_map(|p| p.split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("branch"))
        .map_or("", |(_, value)| value.trim());
    Some((sent_by, branch))
}

/// The server transaction key of a request (ACK matches its INVITE).
fn server_key(request: &Request) -> Option<Lookup<'_>> {
    let via_value = request.headers.get(&HeaderName::Via)?;
    let method = match request.method {
        Method::Ack => "INVITE",
        ref m => m.as_str(),
    };
    if let Some((sent_by, branch)) = via_parts(via_value) {
        if branch.starts_with(MAGIC_COOKIE) {
            return Some(Lookup::Borrowed(KeyRef::Server { branch, sent_by, method }));
        }
    }
    let via = Via::parse(via_value).ok()?;
    if let Some(branch) = via.branch().filter(|b| b.starts_with(MAGIC_COOKIE)) {
        let sent_by: String = sent_by(&via);
        return Some(Lookup::Owned(Key::from_ref(KeyRef::Server { branch, sent_by: &sent_by, method })));
    }
    let from_tag = request.from().and_then(|f| f.tag().map(str::to_owned)).unwrap_or_default();
    Some(Lookup::Owned(Key::from_ref(KeyRef::Server2543 {
        uri: &request.uri.to_string(),
        from_tag: &from_tag,
        call_id: request.call_id()?,
        cseq: request.cseq()?.seq,
        method,
        via: &via.to_string(),
    })))
}

fn ack_key(response: &Response) -> Option<AckKey> {
    Some(AckKey {
        call_id: response.call_id()?.into(),
        cseq: response.cseq()?.seq,
        from_tag: response.from()?.tag()?.into(),
    })
}

fn ack_key_of_request(request: &Request) -> Option<AckKey> {
    Some(AckKey {
        call_id: request.call_id()?.into(),
        cseq: request.cseq()?.seq,
        from_tag: request.from()?.tag()?.into(),
    })
}

/// RFC 3261 §17.1.1.3: the ACK for a non-2xx final is built by the transaction from the
/// INVITE (Request-URI, top Via, From, Call-ID, Route, CSeq number) and the response's To.
pub fn ack_for_non_2xx(invite: &Request, response: &Response) -> Request {
    derived_from_invite(invite, Method::Ack, response.headers.get(&HeaderName::To))
}

/// RFC 3261 §9.1: the CANCEL for a client INVITE (same Request-URI, top Via, From, To,
/// Call-ID, Route; CSeq number with method CANCEL). Send it with [`Endpoint::send_request`].
pub fn cancel_for(invite: &Request) -> Request {
    derived_from_invite(invite, Method::Cancel, None)
}

/// A request that shares the INVITE's transaction identity: its Request-URI, top Via, From,
/// Call-ID, Routes and CSeq number, with `method`, and `to` (or the INVITE's To).
fn derived_from_invite(invite: &Request, method: Method, to: Option<&str>) -> Request {
    let mut request = Request::new(method.clone(), invite.uri.clone());
    if let Some(via) = invite.headers.get(&HeaderName::Via) {
        request.headers.push(HeaderName::Via, via);
    }
    request.headers.push(HeaderName::MaxForwards, "70");
    if let Some(from) = invite.headers.get(&HeaderName::From) {
        request.headers.push(HeaderName::From, from);
    }
    if let Some(to) = to.or_else(|| invite.headers.get(&HeaderName::To)) {
        request.headers.push(HeaderName::To, to);
    }
    if let Some(call_id) = invite.headers.get(&HeaderName::CallId) {
        request.headers.push(HeaderName::CallId, call_id);
    }
    if let Some(cseq) = invite.cseq() {
        request.headers.push(HeaderName::CSeq, CSeq { seq: cseq.seq, method }.to_string());
    }
    for route in invite.headers.get_all(&HeaderName::Route) {
        request.headers.push(HeaderName::Route, route);
    }
    request
}

/// A top Via for a request we send (`SIP/2.0/UDP host:port;branch=...;rport`).
/// RFC 3261 §18.1.1: the top Via names the transport the request goes over, whatever the
/// request's maker wrote there (`SIP/2.0/UDP` becomes `SIP/2.0/TCP` on a connection).
fn stamp_transport(request: &mut Request, transport: Transport) {
    let Some(via) = request.headers.0.iter_mut().find(|h| h.name == HeaderName::Via) else { return };
    let value = via.value.trim_start();
    let Some(protocol) = value.get(..8).filter(|p| p.eq_ignore_ascii_case("SIP/2.0/")) else { return };
    let rest = &value[protocol.len()..];
    let name_end = rest.find(|c: char| c.is_ascii_whitespace()).unwrap_or(rest.len());
    if !rest[..name_end].eq_ignore_ascii_case(transport.via_name()) {
        via.value = format!("SIP/2.0/{}{}", transport.via_name(), &rest[name_end..]);
    }
}

pub fn via_for(transport: Transport, host: Host, port: u16, branch: &str) -> Via {
    let rport = crate::uri::Param::new("rport", None::<String>);
    via(transport, host, port, vec![crate::uri::Param::new("branch", Some(branch)), rport])
}

/// [`via_for`] without the branch: for a template whose requests each get their own.
pub fn via_without_branch(transport: Transport, host: Host, port: u16) -> Via {
    via(transport, host, port, vec![crate::uri::Param::new("rport", None::<String>)])
}

fn via(transport: Transport, host: Host, port: u16, params: Vec<crate::uri::Param>) -> Via {
    Via { transport: transport.via_name().to_owned(), host, port: Some(port), params }
}
