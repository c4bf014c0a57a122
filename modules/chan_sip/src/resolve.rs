//! Where a SIP host is: DNS SRV then A/AAAA, as Asterisk's chan_sip does with `srvlookup=yes`
//! (RFC 3263 §4.2 without NAPTR).
//!
//! A name given without a port is first looked up as `_sip._udp.<name>` (`_sip._tcp.<name>` for
//! TCP). Its SRV records, in RFC 2782's order ([`srv_order`]), are each resolved to addresses,
//! with the record's port. Without SRV records — or with a port, or with `srvlookup=no` — the
//! name's own A (AAAA) records are used, on the port given or 5060. An IP literal is never looked
//! up. What to ask ([`Query::for_host`]) and the order ([`srv_order`]) are pure; [`Resolver`] does
//! the asking, with hickory-resolver on the core's tokio runtime.
//!
//! Where this differs from Asterisk: `ast_get_srv` keeps only the first SRV target, where this
//! keeps every target's addresses in order, so that a `register =>` line can move to the next
//! registrar when one fails (see `registry::Line`); and the weights follow RFC 2782's running sum
//! (Asterisk compares each record's own weight with the random number).
//!
//! The monitor never waits on DNS: it spawns a lookup ([`Resolver::lookup`]) on the core's runtime
//! and takes the result back as a message ([`Lookup`]). A call's own task (`Dial`) may wait, as
//! chan_sip's `create_addr` does, through [`Resolver::lookup_blocking`], which lets the runtime
//! move its other tasks off the thread meanwhile.

use std::net::{IpAddr, SocketAddr};

use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use starling_core::tokio::runtime::{Handle, RuntimeFlavor};
use starling_core::{tokio, tracing};

/// What to ask the DNS for a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    /// An IP literal: nothing to ask.
    Address(SocketAddr),
    /// The SRV records of `service` (`_sip._udp.<host>`); without any, `host`'s own addresses on 5060.
    Srv { service: String, host: String },
    /// `host`'s own addresses (A, or AAAA), on `port`.
    Host { host: String, port: u16 },
}

impl Query {
    /// For `host` (brackets around an IPv6 literal allowed) and the port given with it, if any:
    /// SRV only for a name without a port, and only with `srvlookup` (Asterisk: "Specifying a
    /// port ... will suppress SRV lookups").
    pub fn for_host(host: &str, port: Option<u16>, tcp: bool, srvlookup: bool) -> Query {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Query::Address(SocketAddr::new(ip, port.unwrap_or(5060)));
        }
        match port {
            None if srvlookup => {
                let protocol = if tcp { "tcp" } else { "udp" };
                Query::Srv { service: format!("_sip._{protocol}.{host}"), host: host.to_owned() }
            }
            _ => Query::Host { host: host.to_owned(), port: port.unwrap_or(5060) },
        }
    }
}

/// One SRV record: a target host and its port, with its priority and weight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrvRecord {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
}

/// RFC 2782's order: lowest priority first; within one priority, each next record is chosen as
/// the RFC writes it: the zero-weight records first, then a draw in `0..=sum of the weights`
/// takes the first record whose running sum reaches it (so a zero weight keeps a small chance,
/// and the others go by their weights). `random(n)` returns a number in `0..=n`. A target of
/// `.` ("decidedly not available at this domain") is dropped, as Asterisk drops it.
pub fn srv_order(mut records: Vec<SrvRecord>, mut random: impl FnMut(u64) -> u64) -> Vec<SrvRecord> {
    records.retain(|r| !r.target.is_empty() && r.target != ".");
    // Stable: within a priority the zero weights come first, the rest keep the DNS's order.
    records.sort_by_key(|r| (r.priority, r.weight != 0));
    let mut ordered = Vec::with_capacity(records.len());
    let mut rest = records.into_iter().peekable();
    while let Some(first) = rest.next() {
        let priority = first.priority;
        let mut group = vec![first];
        while let Some(next) = rest.next_if(|r| r.priority == priority) {
            group.push(next);
        }
        while !group.is_empty() {
            let sum: u64 = group.iter().map(|r| u64::from(r.weight)).sum();
            let pick = random(sum).min(sum);
            let mut running = 0;
            let at = group
                .iter()
                .position(|r| {
                    running += u64::from(r.weight);
                    running >= pick
                })
                .unwrap_or(0);
            ordered.push(group.remove(at));
        }
    }
    ordered
}

/// A lookup the monitor started, and what it is for: its result comes back to the monitor as
/// `ToMonitor::Resolved`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The registrar (or proxy) of the `register =>` line with this Call-ID.
    Registrar { call_id: String },
    /// A peer to poke (qualify).
    Poke { peer: String },
}

/// The DNS client: hickory-resolver, asking the `[options] nameserver`s of starling.conf, else
/// those of `/etc/resolv.conf` (and `/etc/hosts` first, as the system does).
#[derive(Clone)]
pub struct Resolver {
    /// `None` when the system's configuration could not be read: then the C library's resolver
    /// answers (A/AAAA only, no SRV).
    dns: Option<TokioResolver>,
    /// The core's runtime, where every lookup runs.
    runtime: Handle,
    /// The name each address was found for (see [`ServerNames`]).
    names: ServerNames,
}

/// The host name an address was last found for (the domain asked, not an SRV target, as RFC
/// 5922 §4 wants): what a TLS server there must have in its certificate. Shared with the TLS
/// connections we open; bounded (forgotten past [`ServerNames::MAX`], then learnt again).
#[derive(Clone, Debug, Default)]
pub struct ServerNames(std::sync::Arc<std::sync::Mutex<std::collections::HashMap<SocketAddr, String>>>);

impl ServerNames {
    const MAX: usize = 4096;

    fn learn(&self, host: &str, addresses: &[SocketAddr]) {
        let mut names = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if names.len() + addresses.len() > Self::MAX {
            names.clear();
        }
        for address in addresses {
            names.insert(*address, host.to_owned());
        }
    }

    /// The name `address` was found for, if it was looked up.
    pub fn name_of(&self, address: SocketAddr) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).get(&address).cloned()
    }
}

impl Resolver {
    /// Asks `nameservers` (the system's when empty). Only IPv4 addresses are taken unless the
    /// SIP socket is IPv6 (`ipv6`): a socket of one family cannot send to the other.
    pub fn new(nameservers: &[SocketAddr], ipv6: bool, runtime: Handle) -> Resolver {
        let builder = if nameservers.is_empty() {
            TokioResolver::builder_tokio()
                .map_err(|e| {
                    tracing::warn!("DNS: cannot read the system's resolver configuration ({e}): no SRV lookups")
                })
                .ok()
        } else {
            let servers = nameservers
                .iter()
                .map(|address| {
                    let mut server = NameServerConfig::udp_and_tcp(address.ip());
                    for connection in &mut server.connections {
                        connection.port = address.port();
                    }
                    server
                })
                .collect();
            let config = ResolverConfig::from_parts(None, Vec::new(), servers);
            Some(TokioResolver::builder_with_config(config, TokioRuntimeProvider::default()))
        };
        let dns = builder.and_then(|mut builder| {
            builder.options_mut().ip_strategy =
                if ipv6 { LookupIpStrategy::Ipv6AndIpv4 } else { LookupIpStrategy::Ipv4Only };
            builder.build().map_err(|e| tracing::warn!("DNS: cannot make a resolver ({e}): no SRV lookups")).ok()
        });
        Resolver { dns, runtime, names: ServerNames::default() }
    }

    /// The names addresses were found for.
    pub fn names(&self) -> ServerNames {
        self.names.clone()
    }

    /// The addresses `query` finds, in the order to try them (see the module doc); empty when
    /// none. `seed` draws the SRV weights. Runs on the core's runtime: await it from anywhere.
    pub async fn lookup(&self, query: Query, seed: u64) -> Vec<SocketAddr> {
        if let Query::Address(address) = query {
            return vec![address];
        }
        let host = match &query {
            Query::Srv { host, .. } | Query::Host { host, .. } => host.clone(),
            Query::Address(_) => String::new(),
        };
        let this = self.clone();
        let task = self.runtime.spawn(async move { this.ask(query, seed).await });
        let addresses = task.await.unwrap_or_default();
        self.names.learn(&host, &addresses);
        addresses
    }

    /// [`Resolver::lookup`] for a caller that is not async (a channel's `request`, the CLI): waits
    /// for the answer, letting the runtime move its other tasks off this thread meanwhile.
    pub fn lookup_blocking(&self, query: Query, seed: u64) -> Vec<SocketAddr> {
        if let Query::Address(address) = query {
            return vec![address];
        }
        let name = match &query {
            Query::Srv { host, .. } | Query::Host { host, .. } => host.clone(),
            Query::Address(address) => address.to_string(),
        };
        let lookup = self.lookup(query, seed);
        match Handle::try_current() {
            Ok(current) if current.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| current.block_on(lookup))
            }
            // A single-threaded runtime (the monitor's) cannot wait here: it gets no DNS.
            Ok(_) => {
                tracing::warn!("DNS: '{name}' asked from a single-threaded runtime: not resolved");
                Vec::new()
            }
            Err(_) => self.runtime.block_on(lookup),
        }
    }

    async fn ask(&self, query: Query, seed: u64) -> Vec<SocketAddr> {
        let mut all = match query {
            Query::Address(address) => vec![address],
            Query::Host { host, port } => self.addresses(&host, port).await,
            Query::Srv { service, host } => {
                let records = self.srv(&service).await;
                if records.is_empty() {
                    self.addresses(&host, 5060).await
                } else {
                    let mut state = seed;
                    let ordered = srv_order(records, |n| splitmix64(&mut state) % (n + 1));
                    tracing::debug!("DNS: SRV {service}: {ordered:?}");
                    let mut all = Vec::new();
                    for record in ordered {
                        all.extend(self.addresses(&record.target, record.port).await);
                    }
                    all
                }
            }
        };
        let mut seen = std::collections::HashSet::new();
        all.retain(|a| seen.insert(*a));
        all
    }

    /// The SRV records of `service`; none when there are none or the lookup fails.
    async fn srv(&self, service: &str) -> Vec<SrvRecord> {
        let Some(dns) = &self.dns else { return Vec::new() };
        match dns.srv_lookup(service).await {
            Ok(lookup) => lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::SRV(srv) => Some(SrvRecord {
                        priority: srv.priority,
                        weight: srv.weight,
                        port: srv.port,
                        target: srv.target.to_utf8(),
                    }),
                    _ => None,
                })
                .collect(),
            Err(e) => {
                tracing::debug!("DNS: no SRV for {service}: {e}");
                Vec::new()
            }
        }
    }

    /// `host`'s addresses with `port`, in the resolver's order.
    async fn addresses(&self, host: &str, port: u16) -> Vec<SocketAddr> {
        match &self.dns {
            Some(dns) => match dns.lookup_ip(host).await {
                Ok(lookup) => lookup.iter().map(|ip| SocketAddr::new(ip, port)).collect(),
                Err(e) => {
                    tracing::debug!("DNS: no address for {host}: {e}");
                    Vec::new()
                }
            },
            None => {
                let host = host.to_owned();
                let found = tokio::task::spawn_blocking(move || {
                    std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port)).map(|a| a.collect::<Vec<_>>())
                });
                found.await.ok().and_then(Result::ok).unwrap_or_default()
            }
        }
    }
}

/// A small, well-mixed pseudo-random sequence (for the SRV weights: no need for more).
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn srv(priority: u16, weight: u16, target: &str) -> SrvRecord {
        SrvRecord { priority, weight, port: 5060, target: target.into() }
    }

    fn targets(records: &[SrvRecord]) -> Vec<&str> {
        records.iter().map(|r| r.target.as_str()).collect()
    }

    #[test]
    fn what_is_asked_for_a_host() {
        let srv = |s: &str, h: &str| Query::Srv { service: s.into(), host: h.into() };
        let host = |h: &str, port| Query::Host { host: h.into(), port };
        assert_eq!(
            Query::for_host("trunk.example", None, false, true),
            srv("_sip._udp.trunk.example", "trunk.example")
        );
        assert_eq!(Query::for_host("trunk.example", None, true, true), srv("_sip._tcp.trunk.example", "trunk.example"));
        assert_eq!(
            Query::for_host("trunk.example", Some(5080), false, true),
            host("trunk.example", 5080),
            "a port: no SRV"
        );
        assert_eq!(Query::for_host("trunk.example", None, false, false), host("trunk.example", 5060), "srvlookup=no");
        assert_eq!(Query::for_host("192.0.2.1", None, false, true), Query::Address("192.0.2.1:5060".parse().unwrap()));
        assert_eq!(Query::for_host("[::1]", Some(5070), false, true), Query::Address("[::1]:5070".parse().unwrap()));
    }

    #[test]
    fn priorities_first_then_weights() {
        let records = vec![srv(20, 0, "backup"), srv(10, 60, "big"), srv(10, 0, "zero"), srv(10, 40, "small")];
        // The smallest draw takes the first of the running sum (a zero weight), the largest the last.
        assert_eq!(targets(&srv_order(records.clone(), |_| 0)), ["zero", "big", "small", "backup"]);
        assert_eq!(targets(&srv_order(records, |n| n)), ["small", "big", "zero", "backup"]);
        let dot = vec![srv(10, 0, "."), srv(20, 0, "b")];
        assert_eq!(targets(&srv_order(dot, |_| 0)), ["b"], "'.': not offered there");
    }

    /// Over many draws, weights 1 and 3 put the heavy record first 3 times in 5 (the draws 2, 3
    /// and 4 of 0..=4), seeded: the same every run.
    #[test]
    fn weights_are_proportions() {
        let mut state = 7;
        let mut first_heavy = 0;
        for _ in 0..4000 {
            let ordered = srv_order(vec![srv(1, 1, "light"), srv(1, 3, "heavy")], |n| splitmix64(&mut state) % (n + 1));
            if ordered[0].target == "heavy" {
                first_heavy += 1;
            }
        }
        assert!((2250..2550).contains(&first_heavy), "heavy first {first_heavy} times of 4000");
    }

    /// dnsmasq (Debian's dnsmasq-base) on a free port of 127.0.0.1, answering from `records`
    /// alone; killed on drop.
    struct Dnsmasq(std::process::Child, u16);

    impl Dnsmasq {
        fn start(records: &[&str]) -> Dnsmasq {
            let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let child = std::process::Command::new("/usr/sbin/dnsmasq")
                .args(["--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--local=/test/"])
                .args(["--bind-interfaces", "--listen-address=127.0.0.1", "--pid-file="])
                .arg(format!("--port={port}"))
                .args(records)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("dnsmasq (Debian's dnsmasq-base)");
            // Up when it answers: a UDP query for a name it knows.
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            socket.set_read_timeout(Some(std::time::Duration::from_millis(100))).unwrap();
            let query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x04ping\x04test\x00\x00\x01\x00\x01";
            let up = (0..50).any(|_| {
                let _ = socket.send_to(query, ("127.0.0.1", port));
                socket.recv(&mut [0u8; 512]).is_ok()
            });
            assert!(up, "dnsmasq answers on port {port}");
            Dnsmasq(child, port)
        }
    }

    impl Drop for Dnsmasq {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Against a real DNS server: SRV targets in priority order with their ports; a port given,
    /// `srvlookup=no` or no SRV records: the name's own A records; an unknown name: nothing.
    #[test]
    fn lookups_against_dnsmasq() {
        let dns = Dnsmasq::start(&[
            "--srv-host=_sip._udp.trunk.test,b.trunk.test,5072,20,0",
            "--srv-host=_sip._udp.trunk.test,a.trunk.test,5071,10,0",
            "--srv-host=_sip._tcp.trunk.test,b.trunk.test,5082,10,0",
            "--host-record=a.trunk.test,127.0.0.2",
            "--host-record=b.trunk.test,127.0.0.3",
            "--host-record=trunk.test,127.0.0.4",
            "--host-record=plain.test,127.0.0.5",
        ]);
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let nameserver: SocketAddr = ([127, 0, 0, 1], dns.1).into();
        let resolver = {
            let _entered = runtime.enter();
            Resolver::new(&[nameserver], false, runtime.handle().clone())
        };
        let lookup = |host: &str, port, tcp, srv| -> Vec<String> {
            let found = resolver.lookup_blocking(Query::for_host(host, port, tcp, srv), 1);
            found.iter().map(ToString::to_string).collect()
        };
        assert_eq!(lookup("trunk.test", None, false, true), ["127.0.0.2:5071", "127.0.0.3:5072"]);
        assert_eq!(lookup("trunk.test", None, true, true), ["127.0.0.3:5082"], "_sip._tcp");
        assert_eq!(lookup("trunk.test", Some(5090), false, true), ["127.0.0.4:5090"], "a port: no SRV");
        assert_eq!(lookup("trunk.test", None, false, false), ["127.0.0.4:5060"], "srvlookup=no");
        assert_eq!(lookup("plain.test", None, false, true), ["127.0.0.5:5060"], "no SRV records: A on 5060");
        assert!(lookup("nowhere.test", None, false, true).is_empty());
        assert_eq!(lookup("192.0.2.1", None, false, true), ["192.0.2.1:5060"]);
        // Awaited from another runtime (as the monitor's would), it still runs on this one.
        let other = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let found = other.block_on(resolver.lookup(Query::for_host("trunk.test", None, false, true), 2));
        assert_eq!(found.len(), 2);
    }

    proptest! {
        /// Whatever the records and the draws: every record but `.` comes out once, priorities
        /// never go down.
        #[test]
        fn the_order_is_a_permutation_by_priority(
            records in proptest::collection::vec((0u16..4, 0u16..5, "[a-c.]"), 0..12),
            draws in proptest::collection::vec(any::<u64>(), 12),
        ) {
            let records: Vec<SrvRecord> = records.into_iter().map(|(p, w, t)| srv(p, w, &t)).collect();
            let mut draws = draws.into_iter().cycle();
            let ordered = srv_order(records.clone(), |n| draws.next().unwrap_or(0) % (n + 1));
            let mut want: Vec<SrvRecord> = records.into_iter().filter(|r| r.target != ".").collect();
            let mut got = ordered.clone();
            let key = |r: &SrvRecord| (r.priority, r.weight, r.target.clone());
            want.sort_by_key(key);
            got.sort_by_key(key);
            prop_assert_eq!(got, want);
            prop_assert!(ordered.windows(2).all(|w| w[0].priority <= w[1].priority));
        }
    }
}
