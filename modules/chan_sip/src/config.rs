//! sip.conf as a typed struct: `[general]`, `register =>` lines, and peer/user/friend
//! sections (templates included, by the core's `.conf` parser). Invalid values are errors
//! naming file:line; unknown keys are warnings, as Asterisk warns.

use std::net::IpAddr;

use crate::rpid::{SendRpid, TrustIdOutbound};
use starling_core::config::{parse_bool, Config, ConfigError, ConfigErrors, Section, Variable};
use starling_core::frame::{CallerId, Presentation};
use starling_core::tracing;
use starling_media::session::{StrictRtp, DEFAULT_PROBATION};

/// `dtmfmode=`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DtmfMode {
    #[default]
    Rfc2833,
    Info,
    Inband,
    Auto,
}

impl DtmfMode {
    /// As sip.conf spells it (`SIP-DTMFmode` of the manager's SIPshowpeer).
    pub fn as_str(self) -> &'static str {
        match self {
            DtmfMode::Rfc2833 => "rfc2833",
            DtmfMode::Info => "info",
            DtmfMode::Inband => "inband",
            DtmfMode::Auto => "auto",
        }
    }
}

/// `qualify=`: no, yes (2000 ms), or a limit in ms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qualify {
    No,
    Ms(u32),
}

/// `nat=` as a set of Asterisk's flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Nat {
    pub force_rport: bool,
    pub comedia: bool,
}

/// `host=`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerHost {
    Dynamic,
    Static(String),
}

/// `type=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerKind {
    Peer,
    User,
    Friend,
}

/// `insecure=port,invite`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Insecure {
    pub port: bool,
    pub invite: bool,
}

pub use starling_core::acl::{parse_network, AclRule};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub kind: PeerKind,
    pub host: PeerHost,
    pub port: Option<u16>,
    pub secret: Option<String>,
    pub md5secret: Option<String>,
    pub defaultuser: Option<String>,
    pub fromuser: Option<String>,
    pub fromdomain: Option<String>,
    pub context: String,
    pub callerid: Option<CallerId>,
    /// `allow`/`disallow` in order: the codecs by preference.
    pub codecs: Vec<String>,
    pub dtmfmode: DtmfMode,
    /// `rtptimeout`/`rtpholdtimeout` in the peer's section (default: `[general]`'s), as
    /// chan_sip's build_peer.
    pub rtptimeout: Option<u32>,
    pub rtpholdtimeout: Option<u32>,
    pub qualify: Qualify,
    pub qualifyfreq: u32,
    pub call_limit: Option<u32>,
    pub busylevel: Option<u32>,
    pub nat: Nat,
    pub insecure: Insecure,
    pub acl: Vec<AclRule>,
    pub directmedia: DirectMedia,
    /// `session-timers`, `session-expires`, `session-minse`, `session-refresher`.
    pub session_timers: SessionTimers,
    /// Where every request to the peer goes (the Request-URI still names the peer); the
    /// `[general]` one unless the peer has its own.
    pub outboundproxy: Option<String>,
    /// `mohinterpret`: the music on hold class this peer hears when the party it is bridged to
    /// holds it; `None` for `passthrough` (the hold goes on to the peer as a re-INVITE).
    pub mohinterpret: Option<String>,
    /// Starling's `reregister_on=403,408,480`: an outbound INVITE to this peer failing with one
    /// of these statuses re-registers the peer's `register =>` lines at once.
    pub reregister_on: Vec<u16>,
    /// The first of `transport=`: what we send to this peer with (`udp` without the key).
    pub transport: String,
    /// `encryption=yes`: SDES-SRTP (RTP/SAVP with `a=crypto`) offered to this peer and
    /// required of it, as chan_sip's SIP_PAGE2_USE_SRTP.
    pub encryption: bool,
    /// Every transport `transport=` lists (chan_sip's `peer->transports`), the first included:
    /// those this peer may register over. Empty without the key: any enabled transport.
    pub transports: Vec<String>,
    /// `trustrpid`: a Remote-Party-ID (else P-Asserted-Identity) header of this peer's INVITE
    /// sets the caller ID, as chan_sip's `get_rpid`.
    pub trustrpid: bool,
    /// `sendrpid=yes|rpid|pai|no`: the header that presents the caller on our INVITEs.
    pub sendrpid: SendRpid,
    /// `trust_id_outbound=legacy|yes|no`: what that header tells of a restricted caller.
    pub trust_id_outbound: TrustIdOutbound,
    /// `callingpres`: the presentation of this peer's calls (unless its asserted identity says
    /// otherwise, as chan_sip's `check_peer_ok`).
    pub callingpres: Presentation,
    pub accountcode: String,
    pub setvar: Vec<(String, String)>,
    /// `mailbox=` (each line, comma-separated, duplicates dropped, as chan_sip's
    /// `add_peer_mailboxes`): `box[@context]`, whose counts (the core's MWI state) the peer is
    /// sent in `message-summary` NOTIFYs.
    pub mailbox: Vec<String>,
    /// `vmexten`: the user of `Message-Account` in those NOTIFYs (chan_sip's default `asterisk`).
    pub vmexten: Option<String>,
    /// `subscribemwi` (chan_sip's `SIP_PAGE2_SUBSCRIBEMWIONLY`, default no): the peer is told
    /// its counts only through its own `message-summary` subscription, never unsolicited.
    pub subscribemwi: bool,
    pub language: String,
    pub description: String,
    /// `allowsubscribe` (default `[general]`'s, yes): whether this peer may SUBSCRIBE to
    /// extension states (chan_sip's `SIP_PAGE2_ALLOWSUBSCRIBE`).
    pub allowsubscribe: bool,
    /// `subscribecontext`: where its subscriptions' extensions (and their hints) are looked up;
    /// `None`: `[general]`'s, else the peer's `context`.
    pub subscribecontext: Option<String>,
    /// `callcounter` (default `[general]`'s): whether the peer's calls make its device state
    /// (chan_sip counts them when this or `call-limit` is set; without, the device is idle or
    /// unavailable whatever its calls).
    pub callcounter: bool,
    /// `callgroup`, `pickupgroup`, `namedcallgroup`, `namedpickupgroup` (chan_sip's, per peer
    /// only): what its channels carry for call pickup.
    pub groups: starling_core::pickup::PickupGroups,
}

impl Peer {
    /// Whether this peer may register over `transport` (`udp`, `tcp`, `tls`): one `transport=`
    /// lists, or any without the key (chan_sip's check_request_transport).
    pub fn allows_transport(&self, transport: &str) -> bool {
        self.transports.is_empty() || self.transports.iter().any(|t| t.eq_ignore_ascii_case(transport))
    }

    /// `transport=`'s list as chan_sip's get_transport_list prints it (`TLS,UDP`); every
    /// transport without the key.
    pub fn transport_list(&self) -> String {
        if self.transports.is_empty() {
            return "UDP,TCP,TLS".to_owned();
        }
        self.transports.iter().map(|t| t.to_ascii_uppercase()).collect::<Vec<_>>().join(",")
    }
}

/// `mohinterpret=class|passthrough` (empty: `default`).
fn parse_mohinterpret(value: &str) -> Option<String> {
    match value.trim() {
        v if v.eq_ignore_ascii_case("passthrough") => None,
        "" => Some("default".into()),
        class => Some(class.to_owned()),
    }
}

/// `ip`, `ip:port`, `v6`, `[v6]` or `[v6]:port` (a bind address).
pub use starling_tls::split_bindaddr;

impl General {
    /// Whether `remote` is outside every `localnet` while `externaddr` is set: then it is told
    /// `externaddr` (Asterisk's `ast_sip_ouraddrfor`; without `localnet`, nothing is remapped).
    pub fn remapped_for(&self, remote: IpAddr) -> Option<(IpAddr, Option<u16>)> {
        let outside = !self.localnet.is_empty()
            && !self
                .localnet
                .iter()
                .any(|&(network, prefix)| AclRule { permit: true, network, prefix }.matches(remote));
        self.externaddr.filter(|_| outside)
    }

    /// Where SIP over TCP listens when `tcpenable=yes`: `tcpbindaddr` (its port, else
    /// `bindport`), else `bindaddr:bindport`.
    pub fn tcp_address(&self) -> Option<std::net::SocketAddr> {
        if !self.tcpenable {
            return None;
        }
        let (ip, port) = self.tcpbindaddr.as_deref().and_then(split_bindaddr).unwrap_or((self.bindaddr, None));
        Some(std::net::SocketAddr::new(ip, port.unwrap_or(self.bindport)))
    }
}

/// `outboundproxy=[sip:]host[:port][;params]`: the proxy as written (checked), and its host
/// and port (5060 unless given).
pub fn parse_proxy(var: &Variable) -> Result<(String, String, u16), ConfigError> {
    let (host, port) = split_proxy(&var.value).ok_or_else(|| var.error("expected [sip:]host[:port]"))?;
    Ok((var.value.trim().to_owned(), host, port))
}

/// The host and port of an `outboundproxy` value (5060 unless given).
pub fn split_proxy(value: &str) -> Option<(String, u16)> {
    split_proxy_port(value).map(|(host, port)| (host, port.unwrap_or(5060)))
}

/// The host and the port given (if any) of an `outboundproxy` value: without a port, its host
/// is looked up in DNS SRV (`srvlookup`).
pub fn split_proxy_port(value: &str) -> Option<(String, Option<u16>)> {
    let proxy = value.trim().trim_start_matches("sip:");
    let proxy = proxy.split(';').next().unwrap_or(proxy);
    let (host, port) = match proxy.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && !h.is_empty() && !p.contains(']') => (h, Some(p.parse().ok()?)),
        _ => (proxy, None),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| (host.to_owned(), port))
}

/// One `register =>` line.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Registration {
    pub peer: Option<String>,
    pub transport: String,
    pub user: String,
    pub domain: Option<String>,
    pub secret: Option<String>,
    pub authuser: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    pub extension: String,
    pub expiry: Option<u32>,
}

/// `maxservertransactions` when sip.conf says nothing: a registration storm of 500 a second
/// (1,000 REGISTER transactions a second, each kept 32 s) fits, in about 50 MB at most.
pub const DEFAULT_MAX_SERVER_TRANSACTIONS: usize = 50_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct General {
    pub bindaddr: IpAddr,
    pub bindport: u16,
    pub context: String,
    pub allowguest: bool,
    pub alwaysauthreject: bool,
    /// `[general] trustrpid`: every peer's default, and the guests'.
    pub trustrpid: bool,
    /// `[general] encryption`: every peer's default, and the guests'.
    pub encryption: bool,
    /// `[general] sendrpid` and `trust_id_outbound`: every peer's defaults.
    pub sendrpid: SendRpid,
    pub trust_id_outbound: TrustIdOutbound,
    /// `[general] noncelifetime` (a Starling addition; seconds, 30): how long a digest nonce is
    /// good for, after which a right answer with it gets `stale=true`.
    pub noncelifetime: u32,
    pub realm: String,
    pub useragent: String,
    pub codecs: Vec<String>,
    pub dtmfmode: DtmfMode,
    pub qualify: Qualify,
    pub qualifyfreq: u32,
    pub defaultexpiry: u32,
    pub minexpiry: u32,
    pub maxexpiry: u32,
    pub registertimeout: u32,
    pub registerattempts: u32,
    /// `[general] outboundproxy`: REGISTERs of lines without a peer, and peers without their own.
    pub outboundproxy: Option<String>,
    /// `[general] mohinterpret` (`default`), for peers without their own and for guests.
    pub mohinterpret: Option<String>,
    /// `externaddr=host[:port]` (resolved when the file is read): what remotes outside
    /// `localnet` are told our address is.
    pub externaddr: Option<(IpAddr, Option<u16>)>,
    pub localnet: Vec<(IpAddr, u8)>,
    pub nat: Nat,
    /// `[general] directmedia`: the default of every peer, and what guests get.
    pub directmedia: DirectMedia,
    /// `session-timers`, `session-expires`, `session-minse`, `session-refresher`.
    pub session_timers: SessionTimers,
    pub rtptimeout: Option<u32>,
    /// `rtpholdtimeout` (seconds): the silence a call the far end holds may keep (counts only
    /// with `rtptimeout`, as chan_sip's).
    pub rtpholdtimeout: Option<u32>,
    pub tcpenable: bool,
    pub tcpbindaddr: Option<String>,
    /// `tcpauthtimeout` (seconds, default 30, as chan_sip's): a TCP connection made to us that
    /// has not authenticated by then is closed.
    pub tcpauthtimeout: u32,
    /// `tcpauthlimit` (default 100, as chan_sip's): how many connections made to us may be
    /// unauthenticated at once; past it a new connection is closed as soon as it is accepted.
    pub tcpauthlimit: u32,
    /// The `tls*` keys (SIP over TLS, see `crate::tls`).
    pub tls: crate::tls::TlsConf,
    /// `maxservertransactions` (Starling's own; Asterisk's chan_sip has no cap): server
    /// transactions kept at once; past it new requests from strangers get `503`.
    pub maxservertransactions: usize,
    pub language: String,
    /// `srvlookup` (default yes, as Asterisk's): a host without a port is looked up in DNS SRV
    /// first (`_sip._udp.<host>`, see `resolve`).
    pub srvlookup: bool,
    /// The `jb*` keys (see [`JbConf`]).
    pub jb: JbConf,
    /// `allowsubscribe` (yes): SUBSCRIBE is taken (every peer's default; `no` here refuses
    /// every subscription, as chan_sip's global flag).
    pub allowsubscribe: bool,
    /// `subscribecontext`: every peer's default (none: the peer's `context`).
    pub subscribecontext: Option<String>,
    /// `notifyringing` (yes): a ringing extension is `early` in dialog-info NOTIFYs (else
    /// `confirmed` when it is also in use, as chan_sip).
    pub notifyringing: bool,
    /// `notifycid` (no): a ringing extension's dialog-info names the caller (the channel in the
    /// dialplan at that extension: of the subscription's context, or any with `ignore-context`).
    pub notifycid: NotifyCid,
    /// `notifyhold` (no, as chan_sip): a held call makes its peer's device `ONHOLD` (dialog-info
    /// `confirmed` with `+sip.rendering` `no`, PIDF `On hold`); without it a held call is in use.
    pub notifyhold: bool,
    /// `callcounter` (every peer's default; Starling's default is yes, chan_sip's no): a peer's
    /// calls make its device state (in use, ringing, on hold).
    pub callcounter: bool,
}

/// `notifycid = yes|no|ignore-context` (chan_sip's `sip_cfg.notifycid`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NotifyCid {
    #[default]
    No,
    Yes,
    IgnoreContext,
}

/// sip.conf's jitter buffer (Asterisk's `struct ast_jb_conf`, read by `ast_jb_read_conf`): on
/// the receiving side of a call whose frames go to the core (see `crate::call::jitter`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JbConf {
    /// `jbenable` (no).
    pub enabled: bool,
    /// `jbforce` (no): also when the frames go to a party that dejitters itself (a SIP leg).
    pub forced: bool,
    /// `jbmaxsize` (200 ms): the fixed buffer's delay, the adaptive one's most.
    pub max_size: u32,
    /// `jbresyncthreshold` (1000 ms): a timestamp jump past it is a new timeline.
    pub resync_threshold: u32,
    /// `jbimpl` (`fixed`, or `adaptive`).
    pub adaptive: bool,
    /// `jbtargetextra` (40 ms): what the adaptive buffer keeps above the jitter (its least).
    pub target_extra: u32,
    /// `jblog` (no): accepted and shown; Starling writes no frame log.
    pub log: bool,
}

impl Default for JbConf {
    /// Asterisk's `ast_jb_conf_default`.
    fn default() -> JbConf {
        JbConf {
            enabled: false,
            forced: false,
            max_size: 200,
            resync_threshold: 1000,
            adaptive: false,
            target_extra: 40,
            log: false,
        }
    }
}

impl JbConf {
    /// `fixed` or `adaptive`, as `sip show settings` shows it.
    pub fn implementation(&self) -> &'static str {
        if self.adaptive {
            "adaptive"
        } else {
            "fixed"
        }
    }
}

/// One `jb*` key of `[general]` (Asterisk's `ast_jb_read_conf`, which ignores a bad value
/// where Starling stops with it); `false` when `var` is none of them.
fn jb_key(jb: &mut JbConf, var: &Variable) -> Result<bool, ConfigError> {
    match var.name.to_ascii_lowercase().as_str() {
        "jbenable" => jb.enabled = var.parse_bool()?,
        "jbforce" => jb.forced = var.parse_bool()?,
        "jblog" => jb.log = var.parse_bool()?,
        "jbmaxsize" => jb.max_size = positive(var)?,
        "jbresyncthreshold" => jb.resync_threshold = positive(var)?,
        "jbtargetextra" => {
            jb.target_extra = var
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= i32::MAX as u32)
                .ok_or_else(|| var.error("expected a whole number of milliseconds"))?
        }
        "jbimpl" => {
            jb.adaptive = match var.value.trim().to_ascii_lowercase().as_str() {
                "fixed" => false,
                "adaptive" => true,
                _ => return Err(var.error("expected fixed or adaptive")),
            }
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// `rtp.conf` `[general]` (Asterisk's res_rtp_asterisk reads it; here the SIP channel driver,
/// which owns the RTP sockets, does, at load and at `sip reload`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtpSettings {
    /// `rtpstart`–`rtpend`: RTP on the even ports of the range, RTCP on the odd one above.
    pub start: u16,
    pub end: u16,
    /// `rtpchecksums`: UDP checksums on the RTP sockets (no: `SO_NO_CHECK`, as Asterisk).
    pub checksums: bool,
    /// `strictrtp`: `yes` (the default), `seqno` or `no` (see crates/media's session).
    pub strict: StrictRtp,
    /// `probation`: packets in sequence after its first that make a new media source (4).
    pub probation: u16,
}

impl Default for RtpSettings {
    fn default() -> RtpSettings {
        RtpSettings {
            start: 10_000,
            end: 20_000,
            checksums: true,
            strict: StrictRtp::Yes,
            probation: DEFAULT_PROBATION,
        }
    }
}

/// Ports below this are not RTP (Asterisk's `MINIMUM_RTP_PORT`).
const MINIMUM_RTP_PORT: u16 = 1024;

impl RtpSettings {
    /// The `[general]` section of rtp.conf; a value out of place is an error naming its line.
    pub fn parse(config: &Config) -> Result<RtpSettings, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let mut rtp = RtpSettings::default();
        let (mut start_var, mut end_var) = (None, None);
        for var in config.section("general").map(|s| s.variables.as_slice()).unwrap_or_default() {
            let result = match var.name.to_ascii_lowercase().as_str() {
                "rtpstart" => var.parse().and_then(|port: u16| {
                    if port < MINIMUM_RTP_PORT {
                        return Err(var.error(format!("below {MINIMUM_RTP_PORT}")));
                    }
                    rtp.start = port;
                    start_var = Some(var);
                    Ok(())
                }),
                "rtpend" => var.parse().map(|port| {
                    rtp.end = port;
                    end_var = Some(var);
                }),
                "rtpchecksums" => var.parse_bool().map(|b| rtp.checksums = b),
                "strictrtp" => match var.value.trim().to_ascii_lowercase().as_str() {
                    "seqno" => {
                        rtp.strict = StrictRtp::Seqno;
                        Ok(())
                    }
                    _ => var.parse_bool().map(|b| rtp.strict = if b { StrictRtp::Yes } else { StrictRtp::No }),
                },
                // Asterisk warns and keeps 4 where the value is not a number above 1.
                "probation" => var.parse().and_then(|n: u16| {
                    if n <= 1 {
                        return Err(var.error("must be above 1"));
                    }
                    rtp.probation = n;
                    Ok(())
                }),
                // Understood by Asterisk, with no effect here (no ICE, STUN or DTLS).
                "dtmftimeout"
                | "rtcpinterval"
                | "icesupport"
                | "stunaddr"
                | "turnaddr"
                | "turnusername"
                | "turnpassword"
                | "srtpreplayprotection"
                | "learning_min_duration" => Ok(()),
                _ => {
                    tracing::warn!("{}: unknown key '{}' in rtp.conf", var.location, var.name);
                    Ok(())
                }
            };
            if let Err(e) = result {
                errors.push(e);
            }
        }
        // Only a value written can make the range empty (the defaults are sound).
        if let Some(var) = (rtp.start.saturating_add(1) >= rtp.end).then_some(end_var.or(start_var)).flatten() {
            errors.push(var.error(format!("rtpstart {} and rtpend {} leave no port pair", rtp.start, rtp.end)));
        }
        errors.into_result(rtp)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipConf {
    pub general: General,
    /// rtp.conf's settings (its defaults without the file).
    pub rtp: RtpSettings,
    pub registrations: Vec<Registration>,
    /// Shared, so a call can hold its peer's settings without copying them.
    pub peers: Vec<std::sync::Arc<Peer>>,
    /// Peers by name and by static address: every request looks one up, and a site may have
    /// ten thousand.
    index: PeerIndex,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct PeerIndex {
    by_name: std::collections::HashMap<String, Vec<usize>>,
    by_ip: std::collections::HashMap<IpAddr, Vec<usize>>,
    /// The first `register =>` line naming a peer (`peer?...`), by the peer's name.
    account_by_peer: std::collections::HashMap<String, usize>,
    /// The first `register =>` line to a host, by the host (each qualify poke asks: a scan of
    /// 2,000 lines for each of 2,000 peers was 2 % of Starling's CPU, issue 29).
    account_by_host: std::collections::HashMap<String, usize>,
}

impl SipConf {
    pub fn new(general: General, registrations: Vec<Registration>, peers: Vec<Peer>) -> SipConf {
        let peers: Vec<std::sync::Arc<Peer>> = peers.into_iter().map(std::sync::Arc::new).collect();
        let mut index = PeerIndex::default();
        for (i, peer) in peers.iter().enumerate() {
            index.by_name.entry(peer.name.clone()).or_default().push(i);
            if let PeerHost::Static(host) = &peer.host {
                if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
                    index.by_ip.entry(ip).or_default().push(i);
                }
            }
        }
        for (i, r) in registrations.iter().enumerate() {
            if let Some(peer) = &r.peer {
                index.account_by_peer.entry(peer.clone()).or_insert(i);
            }
            index.account_by_host.entry(r.host.clone()).or_insert(i);
        }
        SipConf { general, rtp: RtpSettings::default(), registrations, peers, index }
    }

    /// The section named `name` that `want` accepts (a name may be both a user and a peer).
    pub fn peer(&self, name: &str, want: impl Fn(&Peer) -> bool) -> Option<&std::sync::Arc<Peer>> {
        self.index.by_name.get(name)?.iter().map(|&i| &self.peers[i]).find(|p| want(p))
    }

    /// The `register =>` line that is `peer`'s account: the one naming it (`peer?...`), else
    /// the first registering to its static host. Its credentials answer the peer's challenges
    /// and `reregister_on` refreshes it.
    pub fn account_of(&self, peer: &Peer) -> Option<&Registration> {
        let named = self.index.account_by_peer.get(&peer.name);
        let i = named.or_else(|| match &peer.host {
            PeerHost::Static(host) => self.index.account_by_host.get(host),
            PeerHost::Dynamic => None,
        })?;
        self.registrations.get(*i)
    }

    /// The peers whose `host=` is this address, in the file's order.
    pub fn peers_at(&self, ip: IpAddr) -> impl Iterator<Item = &std::sync::Arc<Peer>> {
        self.index.by_ip.get(&ip).into_iter().flatten().map(|&i| &self.peers[i])
    }
}

/// The codec names sip.conf may allow.
const CODECS: [&str; 3] = ["ulaw", "alaw", "opus"];

fn apply_codecs(list: &mut Vec<String>, var: &Variable, allow: bool) -> Result<(), ConfigError> {
    for name in var.value.split([',', '&', ' ']).map(str::trim).filter(|n| !n.is_empty()) {
        let name = name.to_ascii_lowercase();
        if name == "all" {
            if allow {
                for c in CODECS {
                    if !list.iter().any(|l| l == c) {
                        list.push(c.to_owned());
                    }
                }
            } else {
                list.clear();
            }
            continue;
        }
        let known = match name.as_str() {
            "ulaw" | "pcmu" | "g711u" => "ulaw",
            "alaw" | "pcma" | "g711a" => "alaw",
            "opus" => "opus",
            // Asterisk codecs Starling cannot carry yet: accepted in disallow, warned in allow.
            "gsm" | "g722" | "g729" | "g726" | "ilbc" | "speex" | "h263" | "h264" | "vp8" => {
                if allow {
                    tracing::warn!("{}: codec '{name}' is not supported by Starling; ignored", var.location);
                }
                continue;
            }
            _ => return Err(var.error("unknown codec")),
        };
        list.retain(|l| l != known);
        if allow {
            list.push(known.to_owned());
        }
    }
    Ok(())
}

fn parse_dtmfmode(var: &Variable) -> Result<DtmfMode, ConfigError> {
    match var.value.to_ascii_lowercase().as_str() {
        "rfc2833" | "rfc4733" => Ok(DtmfMode::Rfc2833),
        "info" => Ok(DtmfMode::Info),
        "inband" => Ok(DtmfMode::Inband),
        "auto" => Ok(DtmfMode::Auto),
        _ => Err(var.error("expected rfc2833|info|inband|auto")),
    }
}

fn parse_qualify(var: &Variable) -> Result<Qualify, ConfigError> {
    match parse_bool(&var.value) {
        Some(true) => Ok(Qualify::Ms(2000)),
        Some(false) => Ok(Qualify::No),
        None => var
            .parse::<u32>()
            .map(|ms| if ms == 0 { Qualify::No } else { Qualify::Ms(ms) })
            .map_err(|_| var.error("expected yes, no or milliseconds")),
    }
}

fn parse_nat(var: &Variable) -> Result<Nat, ConfigError> {
    let mut nat = Nat::default();
    for word in var.value.split(',').map(|w| w.trim().to_ascii_lowercase()) {
        match word.as_str() {
            "no" | "never" => {}
            "yes" | "force_rport,comedia" => {
                nat.force_rport = true;
                nat.comedia = true;
            }
            "force_rport" | "route" => nat.force_rport = true,
            "comedia" => nat.comedia = true,
            "auto_force_rport" | "auto_comedia" => {}
            _ => return Err(var.error("expected no, force_rport, comedia, auto_force_rport or auto_comedia")),
        }
    }
    Ok(nat)
}

/// `directmedia`: whether a bridged call's media may go straight between the two far ends
/// (re-INVITEs pointing each at the other) instead of through our RTP relay. Asterisk's flags
/// `SIP_DIRECT_MEDIA`, `SIP_DIRECT_MEDIA_NAT`, `SIP_REINVITE_UPDATE` and
/// `SIP_PAGE3_DIRECT_MEDIA_OUTGOING`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirectMedia {
    /// `yes`, or any of the words below.
    pub enabled: bool,
    /// `nonat`: not when the other far end is behind NAT (its peer has `nat=comedia`).
    pub nonat: bool,
    /// `update`: the redirection is an UPDATE rather than a re-INVITE.
    pub update: bool,
    /// `outgoing`: accepted; Starling treats it as `yes` (see docs/INTERFACE.md).
    pub outgoing: bool,
}

/// `yes`/`no`, or a comma-separated list of `update`, `nonat`, `outgoing` (chan_sip's words).
fn parse_directmedia(var: &Variable) -> Result<DirectMedia, ConfigError> {
    if let Ok(on) = var.parse_bool() {
        return Ok(DirectMedia { enabled: on, ..DirectMedia::default() });
    }
    let mut direct = DirectMedia { enabled: true, ..DirectMedia::default() };
    for word in var.value.split(',').map(str::trim) {
        match word.to_ascii_lowercase().as_str() {
            "update" => direct.update = true,
            "nonat" => direct.nonat = true,
            "outgoing" => direct.outgoing = true,
            _ => return Err(var.error("expected yes, no, or a list of update, nonat, outgoing")),
        }
    }
    Ok(direct)
}

/// RFC 4028 session timers as chan_sip configures them: `session-timers`,
/// `session-expires`, `session-minse`, `session-refresher`, in `[general]` and per peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionTimers {
    /// `originate`, `accept` (the default) or `refuse`.
    pub mode: starling_sip::session::SessionTimerMode,
    /// `session-expires`: the interval we ask for, seconds (default 1800).
    pub expires: u32,
    /// `session-minse`: the shortest interval we take, seconds (default and least 90).
    pub min_se: u32,
    /// `session-refresher`: `uas` (the default) or `uac`.
    pub refresher: starling_sip::session::Refresher,
}

impl Default for SessionTimers {
    fn default() -> SessionTimers {
        SessionTimers {
            mode: starling_sip::session::SessionTimerMode::Accept,
            expires: 1800,
            min_se: 90,
            refresher: starling_sip::session::Refresher::Uas,
        }
    }
}

impl SessionTimers {
    /// Takes `var` if it is one of the four keys: `Ok(false)` if it is not.
    fn parse(&mut self, var: &Variable) -> Result<bool, ConfigError> {
        use starling_sip::session::{Refresher, SessionTimerMode};
        match var.name.to_ascii_lowercase().as_str() {
            "session-timers" => {
                self.mode = match var.value.trim().to_ascii_lowercase().as_str() {
                    "originate" => SessionTimerMode::Originate,
                    "accept" => SessionTimerMode::Accept,
                    "refuse" => SessionTimerMode::Refuse,
                    _ => return Err(var.error("expected originate, accept or refuse")),
                }
            }
            "session-expires" => {
                let expires: u32 = var.parse()?;
                if expires < 90 {
                    return Err(var.error("must be at least 90 seconds"));
                }
                self.expires = expires;
            }
            "session-minse" => {
                let min_se: u32 = var.parse()?;
                if min_se < 90 {
                    return Err(var.error("must be at least 90 seconds (RFC 4028)"));
                }
                self.min_se = min_se;
            }
            "session-refresher" => {
                self.refresher = match var.value.trim().to_ascii_lowercase().as_str() {
                    "uac" => Refresher::Uac,
                    "uas" => Refresher::Uas,
                    _ => return Err(var.error("expected uac or uas")),
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// chan_sip's words for the mode (`sip show peer`, SIPshowpeer).
    pub fn mode_name(&self) -> &'static str {
        use starling_sip::session::SessionTimerMode;
        match self.mode {
            SessionTimerMode::Originate => "Originate",
            SessionTimerMode::Accept => "Accept",
            SessionTimerMode::Refuse => "Refuse",
        }
    }
}

/// `[peer?][transport://]user[@domain][:secret[:authuser]]@host[:port][/extension][~expiry]`.
pub fn parse_register(var: &Variable) -> Result<Registration, ConfigError> {
    let bad = |why: &str| var.error(why);
    let mut text = var.value.trim();
    let mut peer = None;
    if let Some((p, rest)) = text.split_once('?') {
        peer = Some(p.to_owned());
        text = rest;
    }
    let mut transport = "udp".to_owned();
    if let Some((t, rest)) = text.split_once("://") {
        transport = t.to_ascii_lowercase();
        if !["udp", "tcp", "tls"].contains(&transport.as_str()) {
            return Err(bad("transport must be udp, tcp or tls"));
        }
        text = rest;
    }
    let mut expiry = None;
    if let Some((rest, e)) = text.rsplit_once('~') {
        expiry = Some(e.parse::<u32>().map_err(|_| bad("bad ~expiry"))?);
        text = rest;
    }
    // The host part follows the last '@'; the extension follows a '/' after it.
    let (userpart, hostpart) = text.rsplit_once('@').ok_or_else(|| bad("expected user[:secret]@host"))?;
    let (hostport, extension) = match hostpart.split_once('/') {
        Some((h, e)) => (h, e.to_owned()),
        None => (hostpart, "s".to_owned()),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => {
            (h.to_owned(), Some(p.parse::<u16>().map_err(|_| bad("bad port"))?))
        }
        _ => (hostport.to_owned(), None),
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let mut fields = userpart.splitn(3, ':');
    let user_domain = fields.next().unwrap_or("");
    let secret = fields.next().map(str::to_owned);
    let authuser = fields.next().map(str::to_owned);
    let (user, domain) = match user_domain.split_once('@') {
        Some((u, d)) => (u.to_owned(), Some(d.to_owned())),
        None => (user_domain.to_owned(), None),
    };
    if user.is_empty() {
        return Err(bad("no user"));
    }
    // chan_sip: a tls:// line without a port goes to 5061 (STANDARD_TLS_PORT).
    let port = port.or((transport == "tls").then_some(crate::tls::STANDARD_TLS_PORT));
    Ok(Registration { peer, transport, user, domain, secret, authuser, host, port, extension, expiry })
}

impl SipConf {
    /// sip.conf, with rtp.conf beside it when there is one (both as the module loads them).
    pub fn load(ctx: &starling_core::ModuleContext) -> Result<SipConf, ConfigErrors> {
        let mut conf = SipConf::parse(&ctx.load_config("sip.conf")?)?;
        if ctx.config_dir().join("rtp.conf").exists() {
            conf.rtp = RtpSettings::parse(&ctx.load_config("rtp.conf")?)?;
        }
        Ok(conf)
    }

    pub fn parse(config: &Config) -> Result<SipConf, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let mut general = General {
            bindaddr: "0.0.0.0".parse().expect("an address"),
            bindport: 5060,
            context: "default".into(),
            allowguest: true,
            alwaysauthreject: true,
            trustrpid: false,
            encryption: false,
            sendrpid: SendRpid::No,
            trust_id_outbound: TrustIdOutbound::Legacy,
            noncelifetime: 30,
            realm: "asterisk".into(),
            useragent: format!("Starling PBX {}", starling_core::VERSION),
            codecs: vec!["ulaw".into(), "alaw".into()],
            dtmfmode: DtmfMode::Rfc2833,
            qualify: Qualify::No,
            qualifyfreq: 60,
            defaultexpiry: 120,
            minexpiry: 60,
            maxexpiry: 3600,
            registertimeout: 20,
            registerattempts: 0,
            outboundproxy: None,
            mohinterpret: Some("default".into()),
            externaddr: None,
            localnet: Vec::new(),
            nat: Nat { force_rport: true, comedia: false },
            directmedia: DirectMedia::default(),
            session_timers: SessionTimers::default(),
            rtptimeout: None,
            rtpholdtimeout: None,
            tcpenable: false,
            maxservertransactions: DEFAULT_MAX_SERVER_TRANSACTIONS,
            tcpbindaddr: None,
            tcpauthtimeout: 30,
            tcpauthlimit: 100,
            tls: Default::default(),
            language: "en".into(),
            srvlookup: true,
            jb: JbConf::default(),
            allowsubscribe: true,
            subscribecontext: None,
            notifyringing: true,
            notifycid: NotifyCid::No,
            notifyhold: false,
            callcounter: true,
        };
        let mut registrations = Vec::new();
        if let Some(section) = config.section("general") {
            for var in &section.variables {
                if let Err(e) = general_key(&mut general, &mut registrations, var) {
                    errors.push(e);
                }
            }
        }
        // The files are read now, so that a certificate that cannot be used stops a load or
        // a reload at its line (the module makes its own context from them again).
        if general.tls.enabled() {
            if let Err(e) = crate::tls::TlsContext::new(&general.tls) {
                errors.push(e);
            }
        }
        let mut peers = Vec::new();
        for section in config.sections().filter(|s| !s.name.eq_ignore_ascii_case("general")) {
            match peer(section, &general) {
                Ok(p) => peers.push(p),
                Err(mut e) => errors.0.append(&mut e.0),
            }
        }
        errors.into_result(SipConf::new(general, registrations, peers))
    }
}

fn general_key(g: &mut General, registrations: &mut Vec<Registration>, var: &Variable) -> Result<(), ConfigError> {
    let bool_of = |v: &Variable| v.parse_bool();
    if let Some(tls) = g.tls.key(var) {
        return tls;
    }
    match var.name.to_ascii_lowercase().as_str() {
        "bindaddr" => g.bindaddr = var.value.parse().map_err(|_| var.error("expected an IP address"))?,
        "bindport" => g.bindport = var.parse()?,
        "udpbindaddr" => {
            let (addr, port) = match var.value.rsplit_once(':') {
                Some((a, p)) if !a.contains(':') => (a, Some(p)),
                _ => (var.value.as_str(), None),
            };
            g.bindaddr = addr.parse().map_err(|_| var.error("expected an IP address"))?;
            if let Some(p) = port {
                g.bindport = p.parse().map_err(|_| var.error("bad port"))?;
            }
        }
        "context" => g.context = var.value.clone(),
        "allowguest" => g.allowguest = bool_of(var)?,
        "alwaysauthreject" => g.alwaysauthreject = bool_of(var)?,
        "trustrpid" => g.trustrpid = bool_of(var)?,
        "encryption" => g.encryption = bool_of(var)?,
        "sendrpid" => g.sendrpid = SendRpid::parse(var)?,
        "trust_id_outbound" => g.trust_id_outbound = TrustIdOutbound::parse(var)?,
        "noncelifetime" => {
            g.noncelifetime = var.parse()?;
            if g.noncelifetime == 0 {
                return Err(var.error("noncelifetime must be at least 1 second"));
            }
        }
        "realm" => g.realm = var.value.clone(),
        "useragent" => g.useragent = var.value.clone(),
        "allow" => apply_codecs(&mut g.codecs, var, true)?,
        "disallow" => apply_codecs(&mut g.codecs, var, false)?,
        "dtmfmode" => g.dtmfmode = parse_dtmfmode(var)?,
        "qualify" => g.qualify = parse_qualify(var)?,
        "qualifyfreq" => g.qualifyfreq = var.parse()?,
        "defaultexpiry" | "defaultexpirey" => g.defaultexpiry = var.parse()?,
        "minexpiry" | "minexpirey" => g.minexpiry = var.parse()?,
        "maxexpiry" | "maxexpirey" => g.maxexpiry = var.parse()?,
        "registertimeout" => g.registertimeout = var.parse()?,
        "registerattempts" => g.registerattempts = var.parse()?,
        "outboundproxy" => g.outboundproxy = Some(parse_proxy(var)?.0),
        "mohinterpret" => g.mohinterpret = parse_mohinterpret(&var.value),
        "externaddr" | "externip" | "externhost" => {
            let resolved = split_bindaddr(&var.value).or_else(|| {
                let (host, port) = match var.value.trim().rsplit_once(':') {
                    Some((h, p)) => (h, Some(p.parse().ok()?)),
                    None => (var.value.trim(), None),
                };
                let ip = std::net::ToSocketAddrs::to_socket_addrs(&(host, 0)).ok()?.next()?.ip();
                Some((ip, port))
            });
            g.externaddr = Some(resolved.ok_or_else(|| var.error("expected an address or a host name that resolves"))?);
        }
        "localnet" => g
            .localnet
            .push(parse_network(&var.value).ok_or_else(|| var.error("expected address/prefix or address/netmask"))?),
        "nat" => g.nat = parse_nat(var)?,
        "directmedia" | "canreinvite" => g.directmedia = parse_directmedia(var)?,
        _ if g.session_timers.parse(var)? => {}
        "rtptimeout" => g.rtptimeout = Some(var.parse()?).filter(|t: &u32| *t > 0),
        "rtpholdtimeout" => g.rtpholdtimeout = Some(var.parse()?).filter(|t: &u32| *t > 0),
        "tcpenable" => g.tcpenable = bool_of(var)?,
        "tcpbindaddr" => {
            split_bindaddr(&var.value).ok_or_else(|| var.error("expected an IP address, with a port or not"))?;
            g.tcpbindaddr = Some(var.value.trim().to_owned());
        }
        "tcpauthtimeout" => g.tcpauthtimeout = positive(var)?,
        "tcpauthlimit" => g.tcpauthlimit = positive(var)?,
        "maxservertransactions" => {
            g.maxservertransactions = var.parse()?;
            if g.maxservertransactions == 0 {
                return Err(var.error("expected a number above 0"));
            }
        }
        "language" => g.language = var.value.clone(),
        "srvlookup" => g.srvlookup = bool_of(var)?,
        "allowsubscribe" => g.allowsubscribe = bool_of(var)?,
        "notifyringing" => g.notifyringing = bool_of(var)?,
        "notifyhold" => g.notifyhold = bool_of(var)?,
        "callcounter" => g.callcounter = bool_of(var)?,
        "notifycid" => {
            g.notifycid = if var.value.trim().eq_ignore_ascii_case("ignore-context") {
                NotifyCid::IgnoreContext
            } else if bool_of(var).map_err(|_| var.error("expected yes, no or ignore-context"))? {
                NotifyCid::Yes
            } else {
                NotifyCid::No
            }
        }
        "subscribecontext" => g.subscribecontext = Some(var.value.trim().to_owned()).filter(|c| !c.is_empty()),
        "register" => registrations.push(parse_register(var)?),
        _ if jb_key(&mut g.jb, var)? => {}
        _ => tracing::warn!("{}: unknown [general] key '{}' in sip.conf", var.location, var.name),
    }
    Ok(())
}

/// A whole number of at least 1 (chan_sip's `PARSE_IN_RANGE` 1..INT_MAX).
fn positive(var: &Variable) -> Result<u32, ConfigError> {
    var.parse::<u32>()
        .ok()
        .filter(|n| (1..=i32::MAX as u32).contains(n))
        .ok_or_else(|| var.error("expected a whole number of at least 1"))
}

fn peer(section: &Section, general: &General) -> Result<Peer, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let mut p = Peer {
        name: section.name.clone(),
        kind: PeerKind::Friend,
        host: PeerHost::Dynamic,
        port: None,
        secret: None,
        md5secret: None,
        defaultuser: None,
        fromuser: None,
        fromdomain: None,
        context: general.context.clone(),
        callerid: None,
        codecs: general.codecs.clone(),
        dtmfmode: general.dtmfmode,
        rtptimeout: general.rtptimeout,
        rtpholdtimeout: general.rtpholdtimeout,
        qualify: general.qualify,
        qualifyfreq: general.qualifyfreq,
        call_limit: None,
        busylevel: None,
        nat: general.nat,
        insecure: Insecure::default(),
        acl: Vec::new(),
        directmedia: general.directmedia,
        session_timers: general.session_timers,
        outboundproxy: general.outboundproxy.clone(),
        mohinterpret: general.mohinterpret.clone(),
        reregister_on: Vec::new(),
        transport: "udp".into(),
        encryption: general.encryption,
        transports: Vec::new(),
        trustrpid: general.trustrpid,
        sendrpid: general.sendrpid,
        trust_id_outbound: general.trust_id_outbound,
        callingpres: Presentation::default(),
        accountcode: String::new(),
        setvar: Vec::new(),
        mailbox: Vec::new(),
        vmexten: None,
        subscribemwi: false,
        language: general.language.clone(),
        description: String::new(),
        allowsubscribe: general.allowsubscribe,
        subscribecontext: general.subscribecontext.clone(),
        callcounter: general.callcounter,
        groups: Default::default(),
    };
    let mut has_type = false;
    for var in &section.variables {
        let result: Result<(), ConfigError> = (|| {
            match var.name.to_ascii_lowercase().as_str() {
                "type" => {
                    has_type = true;
                    p.kind = match var.value.to_ascii_lowercase().as_str() {
                        "peer" => PeerKind::Peer,
                        "user" => PeerKind::User,
                        "friend" => PeerKind::Friend,
                        _ => return Err(var.error("expected peer, user or friend")),
                    }
                }
                "host" => {
                    p.host = if var.value.eq_ignore_ascii_case("dynamic") {
                        PeerHost::Dynamic
                    } else if var.value.trim().is_empty() {
                        return Err(var.error("expected dynamic or a host"));
                    } else {
                        PeerHost::Static(var.value.trim().to_owned())
                    }
                }
                "port" => p.port = Some(var.parse()?),
                "secret" => p.secret = Some(var.value.clone()),
                "md5secret" => {
                    if var.value.len() != 32 || !var.value.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(var.error("expected 32 hex digits (md5 of user:realm:secret)"));
                    }
                    p.md5secret = Some(var.value.to_ascii_lowercase())
                }
                "defaultuser" | "username" => p.defaultuser = Some(var.value.clone()),
                "fromuser" => p.fromuser = Some(var.value.clone()),
                "fromdomain" => p.fromdomain = Some(var.value.clone()),
                "context" => p.context = var.value.clone(),
                "callerid" => p.callerid = Some(CallerId::parse(&var.value)),
                "allow" => apply_codecs(&mut p.codecs, var, true)?,
                "disallow" => apply_codecs(&mut p.codecs, var, false)?,
                "dtmfmode" => p.dtmfmode = parse_dtmfmode(var)?,
                "rtptimeout" => p.rtptimeout = Some(var.parse()?).filter(|t: &u32| *t > 0),
                "rtpholdtimeout" => p.rtpholdtimeout = Some(var.parse()?).filter(|t: &u32| *t > 0),
                "qualify" => p.qualify = parse_qualify(var)?,
                "qualifyfreq" => p.qualifyfreq = var.parse()?,
                "call-limit" | "call_limit" => p.call_limit = Some(var.parse()?),
                "callgroup" => {
                    p.groups.callgroup = starling_core::pickup::parse_group(&var.value).map_err(|e| var.error(e))?
                }
                "pickupgroup" => {
                    p.groups.pickupgroup = starling_core::pickup::parse_group(&var.value).map_err(|e| var.error(e))?
                }
                "namedcallgroup" => p.groups.named_callgroups = starling_core::pickup::parse_named_groups(&var.value),
                "namedpickupgroup" => {
                    p.groups.named_pickupgroups = starling_core::pickup::parse_named_groups(&var.value)
                }
                "busylevel" => p.busylevel = Some(var.parse()?),
                "callcounter" => p.callcounter = var.parse_bool()?,
                "nat" => p.nat = parse_nat(var)?,
                "insecure" => {
                    for word in var.value.split(',').map(|w| w.trim().to_ascii_lowercase()) {
                        match word.as_str() {
                            "port" => p.insecure.port = true,
                            "invite" => p.insecure.invite = true,
                            "no" | "" => {}
                            "very" => {
                                p.insecure.port = true;
                                p.insecure.invite = true;
                            }
                            _ => return Err(var.error("expected port, invite or port,invite")),
                        }
                    }
                }
                "permit" | "deny" => {
                    let (network, prefix) = parse_network(&var.value)
                        .ok_or_else(|| var.error("expected address/prefix or address/netmask"))?;
                    p.acl.push(AclRule { permit: var.name.eq_ignore_ascii_case("permit"), network, prefix });
                }
                "directmedia" | "canreinvite" => p.directmedia = parse_directmedia(var)?,
                _ if p.session_timers.parse(var)? => {}
                "outboundproxy" => p.outboundproxy = Some(parse_proxy(var)?.0),
                "mohinterpret" => p.mohinterpret = parse_mohinterpret(&var.value),
                "reregister_on" => {
                    p.reregister_on = var
                        .value
                        .split(',')
                        .map(|code| code.trim().parse::<u16>().ok().filter(|c| (400..700).contains(c)))
                        .collect::<Option<Vec<u16>>>()
                        .ok_or_else(|| var.error("expected SIP failure statuses (400-699) separated by commas"))?;
                }
                "transport" => {
                    // chan_sip: a list of those allowed, the first the one we send with.
                    let listed: Vec<String> = var.value.split(',').map(|t| t.trim().to_ascii_lowercase()).collect();
                    if let Some(bad) = listed.iter().find(|t| !["udp", "tcp", "tls"].contains(&t.as_str())) {
                        return Err(var.error(format!("unknown transport '{bad}': expected udp, tcp or tls")));
                    }
                    p.transport = listed[0].clone();
                    p.transports = Vec::new();
                    for t in listed {
                        if !p.transports.contains(&t) {
                            p.transports.push(t);
                        }
                    }
                }
                "trustrpid" => p.trustrpid = var.parse_bool()?,
                "encryption" => p.encryption = var.parse_bool()?,
                "sendrpid" => p.sendrpid = SendRpid::parse(var)?,
                "trust_id_outbound" => p.trust_id_outbound = TrustIdOutbound::parse(var)?,
                "callingpres" => {
                    p.callingpres = Presentation::parse(&var.value)
                        .ok_or_else(|| var.error("expected a presentation (allowed_not_screened ... unavailable)"))?
                }
                "accountcode" => p.accountcode = var.value.clone(),
                "setvar" => {
                    let (k, v) = var.value.split_once('=').ok_or_else(|| var.error("expected NAME=value"))?;
                    p.setvar.push((k.trim().to_owned(), v.trim().to_owned()));
                }
                "mailbox" => {
                    for mailbox in var.value.split(',').map(str::trim).filter(|m| !m.is_empty()) {
                        if !p.mailbox.iter().any(|m| m == mailbox) {
                            p.mailbox.push(mailbox.to_owned());
                        }
                    }
                }
                "subscribemwi" => p.subscribemwi = var.parse_bool()?,
                "vmexten" => p.vmexten = Some(var.value.trim().to_owned()).filter(|v| !v.is_empty()),
                "language" => p.language = var.value.clone(),
                "description" => p.description = var.value.clone(),
                "allowsubscribe" => p.allowsubscribe = var.parse_bool()?,
                "subscribecontext" => p.subscribecontext = Some(var.value.trim().to_owned()).filter(|c| !c.is_empty()),
                _ => tracing::warn!(
                    "{}: unknown key '{}' for peer '{}' in sip.conf",
                    var.location,
                    var.name,
                    section.name
                ),
            }
            Ok(())
        })();
        if let Err(e) = result {
            errors.push(e);
        }
    }
    // A peer reached over TLS at a host without a port is reached on 5061, as chan_sip's.
    if p.transport == "tls" && p.port.is_none() && matches!(p.host, PeerHost::Static(_)) {
        p.port = Some(crate::tls::STANDARD_TLS_PORT);
    }
    if !has_type {
        errors.push(ConfigError::at(
            &section.location,
            format!("[{}] has no type= (peer, user or friend)", section.name),
        ));
    }
    errors.into_result(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SipConf, String> {
        SipConf::parse(&Config::parse_str("sip.conf", text).unwrap()).map_err(|e| e.to_string())
    }

    fn rtp(text: &str) -> Result<RtpSettings, String> {
        RtpSettings::parse(&Config::parse_str("rtp.conf", text).unwrap()).map_err(|e| e.to_string())
    }

    /// `allowsubscribe` (default yes) and `subscribecontext` (default none): `[general]`'s are
    /// every peer's defaults, a peer's own win; a bad boolean is an error at its line.
    #[test]
    fn subscription_keys() {
        let conf = parse("[general]\n[a]\ntype=friend\n").unwrap();
        assert!(conf.general.allowsubscribe);
        assert_eq!(conf.general.subscribecontext, None);
        assert!(conf.peers[0].allowsubscribe);
        assert_eq!(conf.peers[0].subscribecontext, None);
        let conf = parse(
            "[general]\nallowsubscribe=no\nsubscribecontext=blf\n[a]\ntype=friend\n\
             [b]\ntype=friend\nallowsubscribe=yes\nsubscribecontext=lamps\n[c]\ntype=peer\nsubscribecontext=\n",
        )
        .unwrap();
        assert!(!conf.general.allowsubscribe);
        assert_eq!(conf.general.subscribecontext.as_deref(), Some("blf"));
        let peer = |n: &str| conf.peers.iter().find(|p| p.name == n).unwrap().clone();
        assert!(!peer("a").allowsubscribe);
        assert_eq!(peer("a").subscribecontext.as_deref(), Some("blf"));
        assert!(peer("b").allowsubscribe);
        assert_eq!(peer("b").subscribecontext.as_deref(), Some("lamps"));
        assert_eq!(peer("c").subscribecontext, None);
        let error = parse("[general]\n[a]\ntype=friend\nallowsubscribe=perhaps\n").unwrap_err();
        assert!(error.contains("sip.conf:4"), "{error}");
        let g = parse("[general]\n").unwrap().general;
        assert!(g.notifyringing);
        assert_eq!(g.notifycid, NotifyCid::No);
        let g = parse("[general]\nnotifyringing=no\nnotifycid=Ignore-Context\n").unwrap().general;
        assert!(!g.notifyringing);
        assert_eq!(g.notifycid, NotifyCid::IgnoreContext);
        assert_eq!(parse("[general]\nnotifycid=yes\n").unwrap().general.notifycid, NotifyCid::Yes);
        let error = parse("[general]\nnotifycid=sometimes\n").unwrap_err();
        assert!(error.contains("expected yes, no or ignore-context"), "{error}");
    }

    /// The `jb*` keys: Asterisk's defaults, every key read, `jbimpl=adaptive`, and a bad value
    /// an error at its line.
    #[test]
    fn jitterbuffer_keys() {
        assert_eq!(parse("[general]\n").unwrap().general.jb, JbConf::default());
        let jb = parse(
            "[general]\njbenable=yes\njbforce=yes\njbmaxsize=120\njbresyncthreshold=500\njbimpl=Adaptive\n\
             jbtargetextra=0\njblog=yes\n",
        )
        .unwrap()
        .general
        .jb;
        let expected = JbConf {
            enabled: true,
            forced: true,
            max_size: 120,
            resync_threshold: 500,
            adaptive: true,
            target_extra: 0,
            log: true,
        };
        assert_eq!(jb, expected);
        assert_eq!(jb.implementation(), "adaptive");
        for (line, key) in [
            ("jbmaxsize=abc", "jbmaxsize"),
            ("jbmaxsize=0", "jbmaxsize"),
            ("jbresyncthreshold=-1", "jbresyncthreshold"),
            ("jbimpl=elastic", "jbimpl"),
            ("jbenable=perhaps", "jbenable"),
            ("jbtargetextra=x", "jbtargetextra"),
        ] {
            let e = parse(&format!("[general]\nbindport=5060\n{line}\n")).unwrap_err();
            assert!(e.starts_with(&format!("sip.conf:3: {key} '")), "{line}: {e}");
        }
    }

    /// `rtptimeout`/`rtpholdtimeout`: in `[general]` and in a peer's section (which wins), as
    /// chan_sip's; 0 is none.
    #[test]
    fn rtp_timeouts_in_general_and_peers() {
        let conf = parse(
            "[general]\nrtptimeout=60\nrtpholdtimeout=300\n[a]\ntype=peer\nhost=dynamic\n\
             [b]\ntype=peer\nhost=dynamic\nrtptimeout=5\nrtpholdtimeout=0\n",
        )
        .unwrap();
        assert_eq!((conf.general.rtptimeout, conf.general.rtpholdtimeout), (Some(60), Some(300)));
        let peer = |name: &str| conf.peers.iter().find(|p| p.name == name).unwrap();
        assert_eq!((peer("a").rtptimeout, peer("a").rtpholdtimeout), (Some(60), Some(300)));
        assert_eq!((peer("b").rtptimeout, peer("b").rtpholdtimeout), (Some(5), None));
        let e = parse("[general]\n[c]\ntype=peer\nhost=dynamic\nrtpholdtimeout=-1\n").unwrap_err();
        assert!(e.starts_with("sip.conf:5: rtpholdtimeout '-1'"), "{e}");
    }

    /// The session timer keys: chan_sip's defaults (accept, 1800, 90, uas), `[general]` as
    /// every peer's default, a peer's own winning; under 90 s or an unknown word stops startup.
    #[test]
    fn session_timer_keys_in_general_and_peers() {
        use starling_sip::session::{Refresher, SessionTimerMode};
        let conf = parse(
            "[general]\nsession-timers=originate\nsession-expires=600\n[a]\ntype=peer\nhost=dynamic\n\
             [b]\ntype=peer\nhost=dynamic\nsession-timers=refuse\nsession-minse=120\nsession-refresher=uac\n",
        )
        .unwrap();
        assert_eq!(SessionTimers::default().mode, SessionTimerMode::Accept);
        let peer = |name: &str| conf.peers.iter().find(|p| p.name == name).unwrap().session_timers;
        assert_eq!(peer("a"), SessionTimers { mode: SessionTimerMode::Originate, expires: 600, ..Default::default() });
        assert_eq!(
            peer("b"),
            SessionTimers { mode: SessionTimerMode::Refuse, expires: 600, min_se: 120, refresher: Refresher::Uac }
        );
        assert_eq!(peer("b").mode_name(), "Refuse");
        for (line, why) in [
            ("session-minse=89", "must be at least 90"),
            ("session-expires=10", "must be at least 90"),
            ("session-timers=sometimes", "expected originate, accept or refuse"),
            ("session-refresher=both", "expected uac or uas"),
        ] {
            let e = parse(&format!("[general]\n{line}\n")).unwrap_err();
            assert!(e.starts_with("sip.conf:2: ") && e.contains(why), "{line}: {e}");
        }
    }

    /// `notifyhold` (no) and `callcounter` (yes: Starling's default; `[general]`'s is every peer's).
    #[test]
    fn notifyhold_and_callcounter() {
        let conf = parse("[general]\n[a]\ntype=friend\n").unwrap();
        assert!(!conf.general.notifyhold && conf.general.callcounter && conf.peers[0].callcounter);
        let conf =
            parse("[general]\nnotifyhold=yes\ncallcounter=no\n[a]\ntype=friend\n[b]\ntype=friend\ncallcounter=yes\n")
                .unwrap();
        assert!(conf.general.notifyhold && !conf.general.callcounter);
        let peer = |n: &str| conf.peers.iter().find(|p| p.name == n).unwrap().callcounter;
        assert!(!peer("a") && peer("b"));
        assert!(parse("[general]\nnotifyhold=maybe\n").is_err());
    }

    /// Call and pickup groups: numbers and ranges 0-63, and names; a bad group stops start-up.
    #[test]
    fn call_and_pickup_groups() {
        let conf = parse("[a]\ntype=friend\nhost=dynamic\ncallgroup=1,3-5\npickupgroup=1\nnamedcallgroup=sales, x\nnamedpickupgroup=sales\n").unwrap();
        let a = conf.peers.iter().find(|p| p.name == "a").unwrap();
        assert_eq!((a.groups.callgroup, a.groups.pickupgroup), (0b111010, 0b10));
        assert_eq!(a.groups.named_callgroups, ["sales", "x"]);
        assert!(a.groups.may_pick_up(&a.groups));
        let err = parse("[a]\ntype=peer\nhost=dynamic\ncallgroup=1,64\n").unwrap_err().to_string();
        assert!(err.contains("sip.conf:4") && err.contains("callgroup '1,64'"), "{err}");
    }

    /// `noncelifetime` (Starling's): seconds, 30 by default, at least 1.
    /// `mailbox=` lines add up (commas, blanks and duplicates as chan_sip's add_peer_mailboxes);
    /// `[general] trustrpid` is every peer's default; busylevel is a whole number.
    #[test]
    fn mailbox_trustrpid_and_busylevel() {
        let conf = parse(
            "[general]\ntrustrpid=yes\n[a]\ntype=peer\nhost=dynamic\nmailbox=1@default, ,2\nmailbox=2,3@vm\n\
             busylevel=2\nvmexten=800\nsubscribemwi=yes\n[b]\ntype=peer\nhost=dynamic\ntrustrpid=no\n",
        )
        .unwrap();
        let (a, b) = (conf.peer("a", |_| true).unwrap(), conf.peer("b", |_| true).unwrap());
        assert_eq!(a.mailbox, ["1@default", "2", "3@vm"]);
        assert_eq!((a.vmexten.as_deref(), a.subscribemwi), (Some("800"), true));
        assert_eq!((b.vmexten.as_deref(), b.subscribemwi), (None, false));
        assert!(parse("[a]\ntype=peer\nsubscribemwi=perhaps\n").is_err());
        assert!(b.mailbox.is_empty());
        assert!(conf.general.trustrpid && a.trustrpid && !b.trustrpid);
        assert_eq!((a.busylevel, b.busylevel), (Some(2), None));
        assert!(!parse("[general]\n").unwrap().general.trustrpid);
        assert!(parse("[a]\ntype=peer\nbusylevel=lots\n").is_err());
    }

    #[test]
    fn noncelifetime_is_whole_seconds_above_zero() {
        assert_eq!(parse("[general]\n").unwrap().general.noncelifetime, 30);
        assert_eq!(parse("[general]\nnoncelifetime=5\n").unwrap().general.noncelifetime, 5);
        let zero = parse("[general]\nbindport=5060\nnoncelifetime=0\n").unwrap_err();
        assert!(zero.starts_with("sip.conf:3: noncelifetime '0'") && zero.contains("at least 1 second"), "{zero}");
        assert!(parse("[general]\nnoncelifetime=soon\n").unwrap_err().starts_with("sip.conf:2: noncelifetime"));
    }

    #[test]
    fn rtp_conf_range_checksums_and_strictness() {
        assert_eq!(rtp(""), Ok(RtpSettings::default()));
        assert_eq!(
            rtp("[general]\nrtpstart=30000\nrtpend=30010\nrtpchecksums=no\nstrictrtp=no\nicesupport=no\n"),
            Ok(RtpSettings { start: 30_000, end: 30_010, checksums: false, strict: StrictRtp::No, probation: 4 })
        );
        let seqno = rtp("[general]\nstrictrtp=seqno\nprobation=8\n").unwrap();
        assert_eq!((seqno.strict, seqno.probation), (StrictRtp::Seqno, 8));
        assert_eq!(rtp("[general]\nstrictrtp=yes\n").unwrap().strict, StrictRtp::Yes);
        assert!(rtp("[general]\nprobation=1\n").unwrap_err().starts_with("rtp.conf:2: probation"));
        assert!(rtp("[general]\nprobation=many\n").unwrap_err().starts_with("rtp.conf:2: probation"));
        assert_eq!(rtp("[general]\nrtpstart=abc\n").unwrap_err().lines().next().unwrap().split(':').nth(1), Some("2"));
        let empty = rtp("[general]\nrtpstart=30000\nrtpend=30001\n").unwrap_err();
        assert!(empty.starts_with("rtp.conf:3: rtpend '30001'") && empty.contains("no port pair"), "{empty}");
        let high = rtp("[general]\nrtpstart=20000\n").unwrap_err();
        assert!(high.starts_with("rtp.conf:2: rtpstart"), "{high}");
        assert!(rtp("[general]\nrtpstart=80\n").unwrap_err().contains("below 1024"));
        assert!(rtp("[general]\nstrictrtp=maybe\n").is_err());
    }

    #[test]
    fn maxservertransactions_has_a_default_and_must_be_above_0() {
        assert_eq!(parse("[general]\n").unwrap().general.maxservertransactions, DEFAULT_MAX_SERVER_TRANSACTIONS);
        assert_eq!(parse("[general]\nmaxservertransactions=300\n").unwrap().general.maxservertransactions, 300);
        assert!(parse("[general]\nmaxservertransactions=0\n").unwrap_err().contains("sip.conf:2"));
        assert!(parse("[general]\nmaxservertransactions=lots\n").is_err());
    }

    /// externaddr applies to remotes outside every localnet, and only when localnet is set
    /// (as ast_sip_ouraddrfor); tcpbindaddr takes an address with a port or not.
    #[test]
    fn externaddr_localnet_and_tcpbindaddr() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let conf =
            parse("[general]\nexternaddr=203.0.113.5:5099\nlocalnet=192.168.0.0/16\nlocalnet=10.0.0.0/8\n").unwrap();
        let g = &conf.general;
        assert_eq!(g.externaddr, Some((ip("203.0.113.5"), Some(5099))));
        assert_eq!(g.remapped_for(ip("198.51.100.1")), g.externaddr);
        assert_eq!(g.remapped_for(ip("10.1.2.3")), None);
        assert_eq!(g.remapped_for(ip("192.168.7.7")), None);
        let no_localnet = parse("[general]\nexternip=203.0.113.5\n").unwrap();
        assert_eq!(no_localnet.general.remapped_for(ip("198.51.100.1")), None, "nothing without localnet");
        assert!(parse("[general]\nexternaddr=203.0.113.5:port\n").unwrap_err().contains("sip.conf:2: externaddr"));
        let tcp = parse("[general]\nbindport=5070\ntcpenable=yes\ntcpbindaddr=127.0.0.2\n").unwrap();
        assert_eq!(tcp.general.tcp_address(), Some("127.0.0.2:5070".parse().unwrap()));
        let tcp = parse("[general]\ntcpenable=yes\ntcpbindaddr=[::1]:5080\n").unwrap();
        assert_eq!(tcp.general.tcp_address(), Some("[::1]:5080".parse().unwrap()));
        assert_eq!(parse("[general]\ntcpbindaddr=127.0.0.2\n").unwrap().general.tcp_address(), None, "tcpenable=no");
        assert!(parse("[general]\ntcpbindaddr=nowhere\n").is_err());
    }

    /// chan_sip's defaults (30 s, 100 connections) and range (at least 1).
    #[test]
    fn tls_keys_transport_lists_and_tls_registrations() {
        let conf = parse(
            "[general]\ntlsbindaddr=127.0.0.1:5071\ntlsclientmethod=tlsv1_2\ntlsdontverifyserver=yes\n\
             register => tls://alice:pw@127.0.0.1:5081\nregister => tls://bob:pw@trunk.example\n\
             [a]\ntype=peer\nhost=127.0.0.1\ntransport=tls,udp\n[b]\ntype=friend\nhost=dynamic\ntransport=udp,tls\n",
        )
        .unwrap();
        let g = &conf.general;
        assert!(!g.tls.enabled(), "tlsenable defaults to no");
        assert_eq!(g.tls.bindaddr, Some(("127.0.0.1".parse().unwrap(), Some(5071))));
        assert!(g.tls.dontverifyserver);
        assert_eq!(conf.registrations[0].transport, "tls");
        assert_eq!(conf.registrations[0].port, Some(5081));
        assert_eq!(conf.registrations[1].port, Some(5061), "tls:// without a port: 5061");
        let a = conf.peer("a", |_| true).unwrap();
        assert_eq!((a.transport.as_str(), a.port), ("tls", Some(5061)), "the first listed; 5061");
        assert_eq!(a.transports, ["tls", "udp"], "every listed one may be registered over");
        assert!(a.allows_transport("UDP") && a.allows_transport("tls") && !a.allows_transport("TCP"));
        assert_eq!(a.transport_list(), "TLS,UDP");
        let b = conf.peer("b", |_| true).unwrap();
        assert_eq!((b.transport.as_str(), b.port), ("udp", None));
        let c = parse(
            "[general]\n[c]\ntype=friend\nhost=dynamic\ntransport= TCP , tcp,udp\n[d]\ntype=friend\nhost=dynamic\n",
        )
        .unwrap();
        let (c, d) = (c.peer("c", |_| true).unwrap(), c.peer("d", |_| true).unwrap());
        assert_eq!((c.transport.as_str(), c.transport_list().as_str()), ("tcp", "TCP,UDP"), "listed once each");
        assert!(d.transports.is_empty() && d.allows_transport("tcp") && d.allows_transport("tls"), "no key: any");
        let e = parse("[general]\n[c]\ntype=peer\nhost=dynamic\ntransport=tls,sctp\n").unwrap_err();
        assert!(e.contains("sip.conf:5: transport 'tls,sctp': unknown transport 'sctp'"), "{e}");
        let e = parse("[general]\nbindport=5060\ntlsenable=yes\ntlscertfile=/nonexistent.pem\n").unwrap_err();
        assert!(e.starts_with("sip.conf:4: tlscertfile '/nonexistent.pem': cannot read it"), "{e}");
        let e = parse("[general]\ntlsenable=yes\n").unwrap_err();
        assert_eq!(e, "sip.conf:2: tlsenable 'yes': needs tlscertfile");
    }

    #[test]
    fn tcpauthtimeout_and_tcpauthlimit() {
        let g = parse("").unwrap().general;
        assert_eq!((g.tcpauthtimeout, g.tcpauthlimit), (30, 100));
        let g = parse("[general]\ntcpauthtimeout=5\ntcpauthlimit=500\n").unwrap().general;
        assert_eq!((g.tcpauthtimeout, g.tcpauthlimit), (5, 500));
        for bad in ["tcpauthtimeout=0", "tcpauthlimit=-1", "tcpauthlimit=lots", "tcpauthtimeout=3000000000"] {
            let e = parse(&format!("[general]\n{bad}\n")).unwrap_err();
            assert!(e.starts_with(&format!("sip.conf:2: {}", bad.split('=').next().unwrap())), "{e}");
        }
    }

    /// directmedia as chan_sip reads it: yes/no, or words; `[general]`'s is every peer's default
    /// (Starling's default is no).
    #[test]
    fn directmedia_words_and_defaults() {
        let conf = parse(
            "[general]\ndirectmedia=nonat\n[a]\ntype=peer\nhost=dynamic\n[b]\ntype=peer\nhost=dynamic\ncanreinvite=no\n\
             [c]\ntype=peer\nhost=dynamic\ndirectmedia=update,nonat\n",
        )
        .unwrap();
        let direct = |name: &str| conf.peers.iter().find(|p| p.name == name).unwrap().directmedia;
        assert_eq!(direct("a"), DirectMedia { enabled: true, nonat: true, ..DirectMedia::default() });
        assert_eq!(direct("b"), DirectMedia::default());
        assert_eq!(direct("c"), DirectMedia { enabled: true, nonat: true, update: true, outgoing: false });
        assert!(!parse("[p]\ntype=peer\nhost=dynamic\n").unwrap().peers[0].directmedia.enabled);
        let e = parse("[p]\ntype=peer\nhost=dynamic\ndirectmedia=sometimes\n").unwrap_err();
        assert!(e.starts_with("sip.conf:4: directmedia 'sometimes'"), "{e}");
    }

    /// A peer's account: the first line naming it, else the first to its static host.
    #[test]
    fn a_peers_account_is_the_line_naming_it_else_the_first_to_its_host() {
        let conf = parse(
            "[general]\nregister => a:pw@trunk.example\nregister => b:pw@trunk.example\n\
             register => trunk2?c:pw@other.example\nregister => trunk2?d:pw@other.example\n\
             [trunk]\ntype=peer\nhost=trunk.example\n[trunk2]\ntype=peer\nhost=trunk.example\n\
             [lone]\ntype=peer\nhost=lone.example\n[phone]\ntype=friend\nhost=dynamic\n",
        )
        .unwrap();
        let account = |name: &str| conf.account_of(conf.peer(name, |_| true).unwrap()).map(|r| r.user.as_str());
        assert_eq!(account("trunk"), Some("a"), "the first line to its host");
        assert_eq!(account("trunk2"), Some("c"), "the first line naming it, before its host's");
        assert_eq!((account("lone"), account("phone")), (None, None));
    }

    #[test]
    fn general_registrations_and_templated_peers() {
        let conf = parse(
            "[general]\nbindport=5070\ncontext=internal\nallowguest=no\ndisallow=all\nallow=alaw,ulaw\n\
             register => trunk?tcp://alice@example.com:s3cret:authalice@sip.example.com:5080/600~300\n\
             localnet=192.168.0.0/255.255.0.0\n\
             [phone](!)\ntype=friend\nhost=dynamic\nqualify=yes\ncall-limit=1\n\
             [bob](phone)\nsecret=b0b\ncallerid=\"Bob\" <200>\ninsecure=port,invite\npermit=10.0.0.0/8\n",
        )
        .unwrap();
        assert_eq!(
            (conf.general.bindport, conf.general.context.as_str(), conf.general.allowguest),
            (5070, "internal", false)
        );
        assert_eq!(conf.general.codecs, ["alaw", "ulaw"]);
        assert_eq!(conf.general.localnet, [("192.168.0.0".parse().unwrap(), 16)]);
        let r = &conf.registrations[0];
        assert_eq!(r.peer.as_deref(), Some("trunk"));
        assert_eq!((r.transport.as_str(), r.user.as_str(), r.domain.as_deref()), ("tcp", "alice", Some("example.com")));
        assert_eq!((r.secret.as_deref(), r.authuser.as_deref()), (Some("s3cret"), Some("authalice")));
        assert_eq!(
            (r.host.as_str(), r.port, r.extension.as_str(), r.expiry),
            ("sip.example.com", Some(5080), "600", Some(300))
        );
        assert_eq!(conf.peers.len(), 1, "the template is not a peer");
        let bob = &conf.peers[0];
        assert_eq!(
            (bob.kind, &bob.host, bob.qualify, bob.call_limit),
            (PeerKind::Friend, &PeerHost::Dynamic, Qualify::Ms(2000), Some(1))
        );
        assert_eq!(bob.context, "internal", "inherits [general] context");
        assert_eq!(bob.callerid.as_ref().unwrap().number, "200");
        assert!(bob.insecure.port && bob.insecure.invite);
        assert_eq!(bob.acl[0].prefix, 8);
    }

    #[test]
    fn minimal_register_line() {
        let var = Variable {
            name: "register".into(),
            value: "1234:pw@provider.net".into(),
            location: starling_core::config::Location { file: "sip.conf".into(), line: 3 },
            object: true,
            inherited: false,
        };
        let r = parse_register(&var).unwrap();
        assert_eq!(
            (r.user.as_str(), r.secret.as_deref(), r.host.as_str(), r.port, r.extension.as_str()),
            ("1234", Some("pw"), "provider.net", None, "s")
        );
    }

    #[test]
    fn errors_name_their_lines() {
        let e = parse("[general]\nbindport=x\ndtmfmode=loud\nallow=martian\n[p]\nhost=dynamic\ntransport=udpp\nmd5secret=nothex\n").unwrap_err();
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 6, "{e}");
        assert!(lines[0].starts_with("sip.conf:2: bindport 'x'"), "{e}");
        assert!(lines[1].starts_with("sip.conf:3: dtmfmode 'loud': expected rfc2833|info|inband|auto"), "{e}");
        assert!(lines[2].starts_with("sip.conf:4: allow 'martian': unknown codec"), "{e}");
        assert!(lines[3].starts_with("sip.conf:7: transport 'udpp': unknown transport"), "{e}");
        assert!(lines[4].starts_with("sip.conf:8: md5secret 'nothex'"), "{e}");
        assert!(lines[5].starts_with("sip.conf:5: [p] has no type="), "{e}");
    }

    /// `sendrpid`, `trust_id_outbound` (in `[general]`, every peer's default, and per peer) and
    /// the peer's `callingpres`; a bad value stops startup naming its line.
    #[test]
    fn sendrpid_trust_id_outbound_and_callingpres() {
        let conf = parse(
            "[general]\nsendrpid=pai\ntrust_id_outbound=yes\n[a]\ntype=peer\nhost=dynamic\n\
             [b]\ntype=peer\nhost=dynamic\nsendrpid=yes\ntrust_id_outbound=legacy\ncallingpres=prohib_passed_screen\n\
             [c]\ntype=peer\nhost=dynamic\nsendrpid=no\ncallingpres=35\n",
        )
        .unwrap();
        let peer = |name: &str| conf.peers.iter().find(|p| p.name == name).unwrap();
        assert_eq!((peer("a").sendrpid, peer("a").trust_id_outbound), (SendRpid::Pai, TrustIdOutbound::Yes));
        assert_eq!((peer("b").sendrpid, peer("b").trust_id_outbound), (SendRpid::Rpid, TrustIdOutbound::Legacy));
        assert_eq!(
            (peer("b").callingpres, peer("c").callingpres),
            (Presentation::PROHIB_PASSED_SCREEN, Presentation::PROHIB)
        );
        assert_eq!((peer("c").sendrpid, peer("a").callingpres), (SendRpid::No, Presentation::ALLOWED_NOT_SCREENED));
        let defaults = parse("[general]\n[d]\ntype=peer\nhost=dynamic\nsendrpid=rpid\n").unwrap();
        assert_eq!(
            (defaults.peers[0].sendrpid, defaults.peers[0].trust_id_outbound),
            (SendRpid::Rpid, TrustIdOutbound::Legacy)
        );
        let e = parse("[general]\nsendrpid=both\n").unwrap_err();
        assert_eq!(e, "sip.conf:2: sendrpid 'both': expected yes, rpid, pai or no");
        let e = parse("[general]\ntrust_id_outbound=maybe\n[e]\ntype=peer\nhost=dynamic\ncallingpres=hidden\n")
            .unwrap_err();
        assert!(
            e.starts_with(
                "sip.conf:2: trust_id_outbound 'maybe': expected legacy, yes or no\nsip.conf:6: callingpres 'hidden'"
            ),
            "{e}"
        );
    }
}
