//! Outbound registrations (`register =>`), as chan_sip's registry: one state machine per line,
//! keeping Starling registered to its trunk providers.
//!
//! | Asterisk state      | OpenSIPS uac_registrant | when                                                        |
//! |---------------------|-------------------------|-------------------------------------------------------------|
//! | `Unregistered`      | NOT_REGISTERED          | before the first REGISTER                                   |
//! | `Request Sent`      | REGISTERING             | a REGISTER without credentials is out                       |
//! | `Auth. Sent`        | AUTHENTICATING          | the REGISTER answering a 401/407 is out                     |
//! | `Registered`        | REGISTERED              | 2xx; refreshed at expiry − 15 s (a fifth of it below 30 s)  |
//! | `Timeout`           | REGISTER_TIMEOUT        | no answer at all; retried after `registertimeout`           |
//! | `Rejected`          | WRONG_CREDENTIALS       | 401/407/403 after our credentials; retried with backoff     |
//! | `No Authentication` | (AUTHENTICATING failed) | a challenge we cannot answer (no secret, other algorithm)   |
//! | `Failed`            | REGISTRAR_ERROR         | another final error, or `registerattempts` exhausted        |
//!
//! The Call-ID stays the same for a line's life and the CSeq goes up with every REGISTER (the
//! registrar orders refreshes by it). 423 Interval Too Brief is retried at once with its
//! `Min-Expires`. The monitor does the I/O: [`Registry::due`] says which lines to send,
//! [`Registry::request`] builds each REGISTER, the responses and timeouts come back through
//! [`Registry::response`] and [`Registry::timeout`].

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use starling_sip::digest::{Challenge, Credentials};
use starling_sip::message::Response;
use starling_sip::transaction::{via_for, Transport};
use starling_sip::uri::{Host, Uri};
use starling_sip::{HeaderName, MessageHeaders, Method, Request};

use crate::config::Registration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegState {
    Unregistered,
    RequestSent,
    AuthSent,
    Registered,
    Timeout,
    Rejected,
    NoAuthentication,
    Failed,
}

impl RegState {
    /// As `sip show registry` prints it.
    pub fn text(self) -> &'static str {
        match self {
            RegState::Unregistered => "Unregistered",
            RegState::RequestSent => "Request Sent",
            RegState::AuthSent => "Auth. Sent",
            RegState::Registered => "Registered",
            RegState::Timeout => "Timeout",
            RegState::Rejected => "Rejected",
            RegState::NoAuthentication => "No Authentication",
            RegState::Failed => "Failed",
        }
    }
}

/// One `register =>` line and where it stands.
#[derive(Clone, Debug)]
pub struct Line {
    pub config: Registration,
    pub state: RegState,
    /// The expiry asked for, then granted (`Refresh` column).
    pub expiry: u32,
    /// When the last 2xx came (`Reg.Time`).
    pub reg_time: Option<SystemTime>,
    call_id: String,
    from_tag: String,
    cseq: u32,
    /// When to send next (`None`: waiting for a response, or given up).
    next: Option<Instant>,
    /// Failed attempts in a row (for `registerattempts` and the backoff).
    pub(crate) attempts: u32,
    /// This attempt already answered a challenge.
    authenticated: bool,
    /// Unregistering (Expires: 0): the answer ends the line.
    pub removing: bool,
    /// A REGISTER is out since then: no final answer within `registertimeout` is a Timeout.
    waiting: Option<Instant>,
    /// Where the last REGISTER went (the proxy when there is one): calls from there belong to
    /// this line.
    pub registrar: Option<SocketAddr>,
    /// The `outboundproxy` the REGISTERs go through (the line's peer's, else `[general]`'s).
    pub proxy: Option<String>,
    /// A third-party registrant: the From of our REGISTERs when the line's peer has a
    /// `fromuser` other than the line's user (the AOR, in To, stays the user's).
    pub registrant: Option<String>,
    /// Our address the last REGISTER went from (`Local socket` of the detail view; the
    /// monitor sets it, the REGISTER itself names the address remotes see).
    pub local: Option<SocketAddr>,
    /// The Contact of the last REGISTER (`Binding`).
    pub binding: Option<String>,
    /// The registrar's (or proxy's) addresses as last resolved, in the resolver's order, and
    /// the one in use: refreshes stick to it until it fails (no answer, or a 5xx), then the
    /// next is tried; after the last, the host is resolved afresh.
    addresses: Vec<SocketAddr>,
    address: usize,
    /// A lookup of the registrar's host is out (the monitor started it; [`Registry::resolved`]
    /// takes its answer).
    resolving: bool,
}

impl Line {
    /// Where the next REGISTER goes: the address in use. `None` when no address is known: the
    /// host is to be resolved first ([`Registry::start_resolving`]).
    pub fn registrar_address(&self) -> Option<SocketAddr> {
        self.addresses.get(self.address).copied()
    }

    /// The address in use failed: the next one is tried (the host is resolved again after the
    /// last).
    fn next_address(&mut self) {
        self.address += 1;
        if self.address >= self.addresses.len() {
            self.addresses.clear();
            self.address = 0;
        }
    }

    /// The address of record: `sip:user@domain` (the domain is the registrar's host unless given).
    pub fn aor(&self) -> String {
        format!("sip:{}@{}", self.config.user, self.config.domain.as_deref().unwrap_or(&self.config.host))
    }
    /// The Call-ID every REGISTER of the line carries.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }
    /// The CSeq of the last REGISTER sent.
    pub fn cseq(&self) -> u32 {
        self.cseq
    }
    /// When the next REGISTER goes (the refresh, or a retry), if one is planned.
    pub fn next_attempt(&self) -> Option<Instant> {
        self.next
    }
}

/// The lines, with the `[general]` settings they follow.
#[derive(Debug, Default)]
pub struct Registry {
    pub lines: Vec<Line>,
    /// Each line's next deadline (its next REGISTER, or its answer's), in order: asked on every
    /// wake-up of the monitor, so never a scan of 10,000 lines.
    schedule: BTreeSet<(Instant, usize)>,
    registertimeout: Duration,
    registerattempts: u32,
}

/// Asterisk's EXPIRY_GUARD_SECS / _LIMIT / _PCT: when to refresh a granted expiry.
fn refresh_after(expiry: u32) -> Duration {
    if expiry > 30 {
        Duration::from_secs(u64::from(expiry - 15))
    } else {
        Duration::from_millis(u64::from(expiry) * 200)
    }
}

impl Registry {
    /// Takes the `register =>` lines of the configuration in force (at start and on reload):
    /// lines that stay keep their state; new ones start at once (spread a little); removed ones
    /// are returned so the monitor can unregister them.
    pub fn configure(
        &mut self,
        now: Instant,
        lines: &[Registration],
        defaultexpiry: u32,
        registertimeout: u32,
        registerattempts: u32,
    ) -> Vec<Line> {
        self.registertimeout = Duration::from_secs(u64::from(registertimeout.max(1)));
        self.registerattempts = registerattempts;
        let wanted: HashSet<&Registration> = lines.iter().collect();
        let (kept, removed): (Vec<Line>, Vec<Line>) =
            std::mem::take(&mut self.lines).into_iter().partition(|l| wanted.contains(&l.config));
        self.lines = kept;
        let existing: HashSet<Registration> = self.lines.iter().map(|l| l.config.clone()).collect();
        for (i, config) in lines.iter().enumerate() {
            if existing.contains(config) {
                continue;
            }
            // First REGISTERs 10 ms apart: thousands of lines do not leave in one burst.
            let start = now + Duration::from_millis(10 * i as u64);
            self.lines.push(Line {
                config: config.clone(),
                state: RegState::Unregistered,
                expiry: config.expiry.unwrap_or(defaultexpiry),
                reg_time: None,
                call_id: crate::ids::call_id("starling"),
                from_tag: crate::ids::tag(),
                cseq: 101,
                next: Some(start),
                attempts: 0,
                authenticated: false,
                removing: false,
                waiting: None,
                registrar: None,
                proxy: None,
                registrant: None,
                local: None,
                binding: None,
                addresses: Vec::new(),
                address: 0,
                resolving: false,
            });
        }
        self.schedule = (0..self.lines.len()).filter_map(|i| Some((self.deadline(i)?, i))).collect();
        removed
    }

    /// When line `i` next needs attention.
    fn deadline(&self, i: usize) -> Option<Instant> {
        let line = self.lines.get(i)?;
        line.next.or(line.waiting.map(|w| w + self.registertimeout))
    }

    /// Runs `change` on the registry, then moves line `i` in the schedule if its deadline moved.
    fn rescheduled<T>(&mut self, i: usize, change: impl FnOnce(&mut Self) -> T) -> T {
        let before = self.deadline(i);
        let out = change(self);
        self.reschedule(i, before);
        out
    }

    /// Moves line `i` in the schedule after a change (its deadline was `before`).
    fn reschedule(&mut self, i: usize, before: Option<Instant>) {
        let after = self.deadline(i);
        if after != before {
            if let Some(before) = before {
                self.schedule.remove(&(before, i));
            }
            if let Some(after) = after {
                self.schedule.insert((after, i));
            }
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.schedule.first().map(|(at, _)| *at)
    }

    /// The lines to send a REGISTER for now (their index). A REGISTER unanswered for
    /// `registertimeout` makes its line `Timeout` and is sent again at once, as chan_sip's
    /// `sip_reg_timeout` ("timed out, trying again"), until `registerattempts` are spent.
    #[cfg(test)]
    pub fn due(&mut self, now: Instant) -> Vec<usize> {
        self.due_and_timed_out(now).0
    }

    /// [`Registry::due`], and the lines whose REGISTER went unanswered for `registertimeout`
    /// (with the state they were in): those the monitor publishes again (chan_sip's
    /// `sip_reg_timeout`). Only the lines whose deadline came are looked at.
    pub fn due_and_timed_out(&mut self, now: Instant) -> (Vec<usize>, Vec<(usize, RegState)>) {
        let (timeout, attempts_allowed) = (self.registertimeout, self.registerattempts);
        let mut due = Vec::new();
        let mut timed_out = Vec::new();
        let mut ready = Vec::new();
        while let Some(&(at, i)) = self.schedule.first() {
            if at > now {
                break;
            }
            self.schedule.pop_first();
            ready.push(i);
        }
        for i in ready {
            let Some(line) = self.lines.get_mut(i) else { continue };
            if line.waiting.is_some_and(|w| now >= w + timeout) {
                line.waiting = None;
                line.next_address();
                if line.removing {
                    continue;
                }
                timed_out.push((i, line.state));
                line.state = RegState::Timeout;
                line.attempts += 1;
                if attempts_allowed > 0 && line.attempts >= attempts_allowed {
                    line.state = RegState::Failed;
                    continue;
                }
                line.next = Some(now);
            }
            if line.next.is_some_and(|at| at <= now) {
                line.next = None;
                line.authenticated = false;
                due.push(i);
            }
            // Whatever is left (a later deadline) goes back in the schedule.
            if let Some(at) = self.deadline(i) {
                self.schedule.insert((at, i));
            }
        }
        (due, timed_out)
    }

    /// The REGISTER for line `i` (its next CSeq), from `local` (as the registrar must see it:
    /// Via and Contact); with `authorization` when it
    /// answers a challenge. Moves the line to Request Sent or Auth. Sent.
    pub fn request(
        &mut self,
        i: usize,
        now: Instant,
        local: SocketAddr,
        branch: &str,
        useragent: &str,
        authorization: Option<(HeaderName, String)>,
    ) -> Request {
        self.rescheduled(i, |r| {
            let line = &mut r.lines[i];
            line.cseq += 1;
            let config = &line.config;
            let registrar = Host::parse(&config.host).unwrap_or_else(|_| Host::from_ip(local.ip()));
            let uri = Uri::sip(None, registrar, config.port);
            let aor = format!("<{}>", line.aor());
            let from = line.registrant.as_ref().map_or_else(|| aor.clone(), |r| format!("<{r}>"));
            let mut request = Request::new(Method::Register, uri);
            let via = via_for(Transport::Udp, Host::from_ip(local.ip()), local.port(), branch);
            request.headers.push(HeaderName::Via, via.to_string());
            request.headers.push(HeaderName::MaxForwards, "70");
            request.headers.push(HeaderName::From, format!("{from};tag={}", line.from_tag));
            request.headers.push(HeaderName::To, aor);
            request.headers.push(HeaderName::CallId, line.call_id.clone());
            request.headers.push(HeaderName::CSeq, format!("{} REGISTER", line.cseq));
            let expiry = if line.removing { 0 } else { line.expiry };
            let transport = match config.transport.as_str() {
                "tcp" => ";transport=tcp",
                "tls" => ";transport=tls",
                _ => "",
            };
            let binding = format!("sip:{}@{local}{transport}", config.extension);
            request.headers.push(HeaderName::Contact, format!("<{binding}>"));
            line.binding = Some(binding);
            request.headers.push(HeaderName::Expires, expiry.to_string());
            request.headers.push(HeaderName::UserAgent, useragent.to_owned());
            let answering = authorization.is_some();
            if let Some((header, value)) = authorization {
                request.headers.push(header, value);
            }
            // A refresh shows Registered, and a retry after no answer Timeout, until answered.
            if answering || !matches!(line.state, RegState::Registered | RegState::Timeout) {
                line.state = if answering { RegState::AuthSent } else { RegState::RequestSent };
            }
            line.authenticated = answering;
            line.waiting = Some(now);
            request
        })
    }

    /// What the REGISTER of line `i` got. Returns the `Authorization` to re-send with, when the
    /// answer is a challenge we can meet.
    pub fn response(
        &mut self,
        i: usize,
        now: Instant,
        response: &Response,
        cnonce: &str,
    ) -> Option<(HeaderName, String)> {
        self.rescheduled(i, |r| {
            let (timeout, attempts_allowed) = (r.registertimeout, r.registerattempts);
            let line = r.lines.get_mut(i)?;
            let status = response.status;
            if status >= 200 {
                line.waiting = None;
            }
            match status {
                100..=199 => None,
                200..=299 => {
                    if line.removing {
                        line.state = RegState::Unregistered;
                        line.next = None;
                        return None;
                    }
                    // The granted expiry: our Contact's `expires`, else Expires, else what we asked.
                    let granted = response
                        .contacts()
                        .iter()
                        .find(|c| c.uri.user.as_deref() == Some(line.config.extension.as_str()))
                        .and_then(|c| c.param("expires").and_then(|p| p.value.as_deref()).and_then(|v| v.parse().ok()))
                        .or_else(|| response.headers.get(&HeaderName::Expires).and_then(|v| v.trim().parse().ok()))
                        .unwrap_or(line.expiry);
                    line.expiry = granted;
                    line.state = RegState::Registered;
                    line.reg_time = Some(SystemTime::now());
                    line.attempts = 0;
                    line.next = Some(now + refresh_after(granted));
                    None
                }
                401 | 407 if !line.authenticated => {
                    let header =
                        if status == 401 { HeaderName::WwwAuthenticate } else { HeaderName::ProxyAuthenticate };
                    let challenge = response.headers.get(&header).and_then(Challenge::parse);
                    let credentials = line.config.secret.as_ref().map(|secret| Credentials {
                        username: line.config.authuser.clone().unwrap_or_else(|| line.config.user.clone()),
                        password: Some(secret.clone()),
                        ha1: None,
                    });
                    let uri = Uri::sip(None, Host::parse(&line.config.host).ok()?, line.config.port).to_string();
                    let answer = match (challenge, credentials) {
                        (Some(challenge), Some(credentials)) => {
                            credentials.answer(&challenge, "REGISTER", &uri, cnonce, 1)
                        }
                        _ => None,
                    };
                    match answer {
                        Some(value) => {
                            let header =
                                if status == 401 { HeaderName::Authorization } else { HeaderName::ProxyAuthorization };
                            Some((header, value))
                        }
                        None => {
                            line.state = RegState::NoAuthentication;
                            Self::retry(line, now, timeout, attempts_allowed);
                            None
                        }
                    }
                }
                401 | 403 | 407 => {
                    line.state = RegState::Rejected;
                    Self::retry(line, now, timeout, attempts_allowed);
                    None
                }
                423 => {
                    let min =
                        response.headers.get(&HeaderName::parse("Min-Expires")).and_then(|v| v.trim().parse().ok());
                    match min {
                        Some(min) if min > line.expiry => {
                            line.expiry = min;
                            line.next = Some(now);
                        }
                        _ => {
                            line.state = RegState::Failed;
                            Self::retry(line, now, timeout, attempts_allowed);
                        }
                    }
                    None
                }
                _ => {
                    if status >= 500 {
                        line.next_address();
                    }
                    line.state = RegState::Failed;
                    Self::retry(line, now, timeout, attempts_allowed);
                    None
                }
            }
        })
    }

    /// The REGISTER of line `i` got no answer at all.
    pub fn timeout(&mut self, i: usize, now: Instant) {
        self.rescheduled(i, |r| {
            let (timeout, attempts_allowed) = (r.registertimeout, r.registerattempts);
            let Some(line) = r.lines.get_mut(i) else { return };
            if line.waiting.take().is_none() {
                return; // registertimeout already struck and a new REGISTER is out
            }
            line.next_address();
            if line.removing {
                line.next = None;
                return;
            }
            line.state = RegState::Timeout;
            Self::retry(line, now, timeout, attempts_allowed);
        })
    }

    /// Schedules the next attempt: after `registertimeout`, doubling with each failure in a row
    /// (up to 8×) for refusals; never again once `registerattempts` (0: no limit) are spent.
    fn retry(line: &mut Line, now: Instant, timeout: Duration, attempts_allowed: u32) {
        line.attempts += 1;
        if attempts_allowed > 0 && line.attempts >= attempts_allowed {
            line.state = RegState::Failed;
            line.next = None;
            return;
        }
        let backoff = match line.state {
            RegState::Rejected | RegState::NoAuthentication => 1u32 << line.attempts.min(3),
            _ => 1,
        };
        line.next = Some(now + timeout * backoff);
    }

    /// Line `i` registers again now (`reregister_on`), unless a REGISTER of it is already out,
    /// it is being removed, or its attempts are spent (`Failed`). Whether one will go.
    pub fn reregister(&mut self, i: usize, now: Instant) -> bool {
        self.rescheduled(i, |r| {
            let Some(line) = r.lines.get_mut(i) else { return false };
            if line.waiting.is_some() || line.removing || line.state == RegState::Failed {
                return false;
            }
            line.next = Some(now);
            true
        })
    }

    /// Line `i` needs its registrar's host resolved: whether to start a lookup now (not when
    /// one is already out for it).
    pub fn start_resolving(&mut self, i: usize) -> bool {
        match self.lines.get_mut(i) {
            Some(line) if !line.resolving => {
                line.resolving = true;
                true
            }
            _ => false,
        }
    }

    /// The lookup of line `i`'s registrar came back with `addresses`, in the order to try them
    /// (SRV, then A/AAAA). Whether to send its REGISTER now; with no address the next try is
    /// after `registertimeout`, as chan_sip's "Probably a DNS error ..., trying REGISTER again".
    pub fn resolved(&mut self, i: usize, now: Instant, addresses: Vec<SocketAddr>) -> bool {
        self.rescheduled(i, |r| {
            let timeout = r.registertimeout;
            let Some(line) = r.lines.get_mut(i) else { return false };
            line.resolving = false;
            line.addresses = addresses;
            line.address = 0;
            if line.addresses.is_empty() {
                line.next = Some(now + timeout);
                return false;
            }
            true
        })
    }

    /// Marks line `i` for unregistering (Expires: 0) and sends it next.
    pub fn remove(&mut self, i: usize, now: Instant) {
        self.rescheduled(i, |r| {
            if let Some(line) = r.lines.get_mut(i) {
                line.removing = true;
                line.next = Some(now);
            }
        })
    }
}

/// `Host` of `sip show registry`: `host:port`.
pub fn host_column(config: &Registration) -> String {
    format!("{}:{}", config.host, config.port.unwrap_or(5060))
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_sip::message::SipMessage;

    fn line() -> Registration {
        Registration {
            peer: None,
            transport: "udp".into(),
            user: "alice".into(),
            domain: None,
            secret: Some("s3cret".into()),
            authuser: None,
            host: "127.0.0.1".into(),
            port: Some(5080),
            extension: "600".into(),
            expiry: Some(120),
        }
    }

    fn respond(request: &Request, status: u16, extra: &str) -> Response {
        let mut text = format!("SIP/2.0 {status} X\r\n");
        for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
            text.push_str(&format!("{name}: {}\r\n", request.headers.get(&HeaderName::parse(name)).unwrap()));
        }
        text.push_str(extra);
        text.push_str("Content-Length: 0\r\n\r\n");
        match starling_sip::message::parse(text.as_bytes()).unwrap() {
            SipMessage::Response(r) => r,
            _ => unreachable!(),
        }
    }

    fn registry(attempts: u32) -> (Registry, Instant) {
        let now = Instant::now();
        let mut r = Registry::default();
        r.configure(now, &[line()], 120, 20, attempts);
        (r, now)
    }

    const LOCAL: &str = "127.0.0.1:5060";

    #[test]
    fn challenge_then_registered_then_refresh_with_the_same_call_id() {
        let (mut r, now) = registry(0);
        assert_eq!(r.due(now), [0]);
        let first = r.request(0, now, LOCAL.parse().unwrap(), "z9hG4bK1", "Starling", None);
        assert_eq!(r.lines[0].state, RegState::RequestSent);
        assert_eq!(first.headers.get(&HeaderName::CSeq), Some("102 REGISTER"));
        assert_eq!(first.headers.get(&HeaderName::Expires), Some("120"));
        let challenge =
            respond(&first, 401, "WWW-Authenticate: Digest realm=\"trunk\", nonce=\"abc\", qop=\"auth\"\r\n");
        let auth = r.response(0, now, &challenge, "c0ffee").expect("answer the challenge");
        assert!(auth.1.contains("username=\"alice\""), "{auth:?}");
        let second = r.request(0, now, LOCAL.parse().unwrap(), "z9hG4bK2", "Starling", Some(auth));
        assert_eq!(r.lines[0].state, RegState::AuthSent);
        assert_eq!(second.headers.get(&HeaderName::CSeq), Some("103 REGISTER"));
        assert_eq!(second.call_id(), first.call_id());
        let ok = respond(&second, 200, "Contact: <sip:600@127.0.0.1:5060>;expires=60\r\n");
        assert_eq!(r.response(0, now, &ok, "x"), None);
        assert_eq!((r.lines[0].state, r.lines[0].expiry), (RegState::Registered, 60));
        assert_eq!(r.poll_timeout(), Some(now + Duration::from_secs(45)), "refresh at expiry - 15 s");
        let refresh = r.due(now + Duration::from_secs(45));
        assert_eq!(refresh, [0]);
        let third = r.request(0, now, LOCAL.parse().unwrap(), "z9hG4bK3", "Starling", None);
        assert_eq!((third.call_id(), third.headers.get(&HeaderName::CSeq)), (first.call_id(), Some("104 REGISTER")));
    }

    #[test]
    fn wrong_credentials_are_rejected_and_retried_with_backoff() {
        let (mut r, now) = registry(0);
        r.due(now);
        let first = r.request(0, now, LOCAL.parse().unwrap(), "b1", "S", None);
        let challenge = respond(&first, 401, "WWW-Authenticate: Digest realm=\"t\", nonce=\"n\"\r\n");
        let auth = r.response(0, now, &challenge, "c");
        let second = r.request(0, now, LOCAL.parse().unwrap(), "b2", "S", auth);
        r.response(0, now, &respond(&second, 403, ""), "c");
        assert_eq!(r.lines[0].state, RegState::Rejected);
        assert_eq!(r.poll_timeout(), Some(now + Duration::from_secs(40)), "20 s doubled");
    }

    #[test]
    fn timeouts_interval_too_brief_and_attempts() {
        let (mut r, now) = registry(2);
        r.due(now);
        let first = r.request(0, now, LOCAL.parse().unwrap(), "b1", "S", None);
        r.response(0, now, &respond(&first, 423, "Min-Expires: 300\r\n"), "c");
        assert_eq!((r.lines[0].expiry, r.due(now)), (300, vec![0]));
        r.request(0, now, LOCAL.parse().unwrap(), "b2", "S", None);
        r.timeout(0, now);
        assert_eq!(r.lines[0].state, RegState::Timeout);
        assert_eq!(r.poll_timeout(), Some(now + Duration::from_secs(20)));
        r.due(now + Duration::from_secs(20));
        r.request(0, now, LOCAL.parse().unwrap(), "b3", "S", None);
        r.timeout(0, now);
        assert_eq!((r.lines[0].state, r.poll_timeout()), (RegState::Failed, None), "registerattempts=2 spent");
        assert_eq!(RegState::NoAuthentication.text(), "No Authentication");
    }

    /// Registrar stickiness: the resolved addresses in order; refreshes keep to the one that
    /// answered; no answer or a 503 moves to the next; after the last the host is resolved again.
    #[test]
    fn the_registrar_address_sticks_until_it_fails() {
        let (mut r, now) = registry(0);
        let (a, b): (SocketAddr, SocketAddr) = ("192.0.2.1:5060".parse().unwrap(), "192.0.2.2:5060".parse().unwrap());
        assert_eq!(r.lines[0].registrar_address(), None, "not resolved yet");
        assert!(r.start_resolving(0));
        assert!(!r.start_resolving(0), "one lookup at a time");
        assert!(r.resolved(0, now, vec![a, b]));
        assert_eq!(r.lines[0].registrar_address(), Some(a));
        r.due(now);
        let first = r.request(0, now, LOCAL.parse().unwrap(), "b1", "S", None);
        r.response(0, now, &respond(&first, 200, "Contact: <sip:600@127.0.0.1:5060>;expires=60\r\n"), "c");
        assert_eq!(r.lines[0].registrar_address(), Some(a), "the refresh goes to the same one");
        r.request(0, now, LOCAL.parse().unwrap(), "b2", "S", None);
        r.timeout(0, now);
        assert_eq!(r.lines[0].registrar_address(), Some(b), "no answer: the next address");
        let to_b = r.request(0, now, LOCAL.parse().unwrap(), "b3", "S", None);
        r.response(0, now, &respond(&to_b, 503, ""), "c");
        assert_eq!(r.lines[0].registrar_address(), None, "after the last, to be resolved afresh");
        assert!(r.start_resolving(0));
    }

    /// A registrar that resolves to nothing: tried again after `registertimeout` (20 s here).
    /// A REGISTER unanswered for registertimeout (20 s): the line is sent again, and named as
    /// timed out with the state it was in (for the monitor to publish); nothing before then.
    #[test]
    fn an_unanswered_register_times_out_after_registertimeout() {
        let (mut r, now) = registry(0);
        r.due(now);
        r.request(0, now, LOCAL.parse().unwrap(), "b1", "S", None);
        assert_eq!(r.due_and_timed_out(now + Duration::from_secs(19)), (vec![], vec![]));
        let later = now + Duration::from_secs(20);
        assert_eq!(r.due_and_timed_out(later), (vec![0], vec![(0, RegState::RequestSent)]));
        assert_eq!((r.lines[0].state, r.lines[0].attempts), (RegState::Timeout, 1));
    }

    #[test]
    fn no_address_is_retried_after_registertimeout() {
        let (mut r, now) = registry(0);
        assert_eq!(r.due(now), [0]);
        assert!(r.start_resolving(0));
        assert!(!r.resolved(0, now, Vec::new()));
        assert_eq!(r.poll_timeout(), Some(now + Duration::from_secs(20)));
        assert_eq!(r.due(now + Duration::from_secs(20)), [0]);
        assert!(r.start_resolving(0), "and looked up again");
    }

    /// `reregister_on`: a registered line is due at once; not while a REGISTER is out, nor once
    /// its attempts are spent.
    #[test]
    fn reregister_sends_now_unless_one_is_out() {
        let (mut r, now) = registry(1);
        r.due(now);
        let first = r.request(0, now, LOCAL.parse().unwrap(), "b1", "S", None);
        assert!(!r.reregister(0, now), "a REGISTER is out");
        r.response(0, now, &respond(&first, 200, "Contact: <sip:600@127.0.0.1:5060>;expires=60\r\n"), "c");
        assert_eq!(r.lines[0].state, RegState::Registered);
        let later = now + Duration::from_secs(5);
        assert!(r.reregister(0, later));
        assert_eq!((r.poll_timeout(), r.due(later)), (Some(later), vec![0]), "due now, not at the refresh");
        let second = r.request(0, later, LOCAL.parse().unwrap(), "b2", "S", None);
        assert_eq!(second.call_id(), first.call_id());
        r.timeout(0, later);
        assert_eq!(r.lines[0].state, RegState::Failed, "registerattempts=1 spent");
        assert!(!r.reregister(0, later));
        assert!(!r.reregister(7, later), "no such line");
    }
}
