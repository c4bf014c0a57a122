//! SDP offer/answer (RFC 3264) for one audio stream.
//!
//! - [`LocalMedia::offer`] writes our offer from a codec preference list (`allow=` order),
//!   with `telephone-event`, `ptime` and a direction (`sendonly` to hold).
//! - [`RemoteMedia::parse`] reads the peer's SDP with `sdp-rs`: its first audio stream's
//!   address, payload types, telephone-event, direction, ptime, rtcp-mux.
//! - [`negotiate`] intersects their codecs with ours, in our order or theirs, and says why
//!   when nothing is common (→ SIP 488). [`LocalMedia::answer`] writes the answer.
//! - SDES-SRTP (RFC 4568): an `RTP/SAVP` stream's `a=crypto` lines are read into
//!   [`RemoteMedia::crypto`]; [`LocalMedia::crypto`] makes ours `RTP/SAVP` with its lines
//!   (see [`crate::sdes`]).
//!
//! We write SDP ourselves (a dozen lines) rather than through sdp-rs, whose 0.2 writes
//! `a=rtpmap:111 opus/48000/2` as `opus/48000 2`; the test `opus_rtpmap_keeps_its_channels`
//! holds us to the right form. sdp-rs 0.2 also reads `a=inactive` as an unknown attribute,
//! which [`RemoteMedia::parse`] corrects.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use sdp_rs::lines::media::ProtoType;
use sdp_rs::lines::Attribute;
use sdp_rs::SessionDescription;

use crate::sdes::Crypto;

/// A codec as SDP names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Codec {
    /// `PCMU`, `PCMA`, `opus`, `telephone-event`... (compared case-insensitively).
    pub name: String,
    pub clock_rate: u32,
    pub channels: Option<u32>,
    /// The static payload type (RFC 3551), or the dynamic one we offer.
    pub payload_type: u8,
    pub fmtp: Option<String>,
}

impl Codec {
    pub fn pcmu() -> Codec {
        Codec { name: "PCMU".into(), clock_rate: 8000, channels: None, payload_type: 0, fmtp: None }
    }
    pub fn pcma() -> Codec {
        Codec { name: "PCMA".into(), clock_rate: 8000, channels: None, payload_type: 8, fmtp: None }
    }
    pub fn g722() -> Codec {
        Codec { name: "G722".into(), clock_rate: 8000, channels: None, payload_type: 9, fmtp: None }
    }
    pub fn opus() -> Codec {
        Codec {
            name: "opus".into(),
            clock_rate: 48000,
            channels: Some(2),
            payload_type: 111,
            fmtp: Some("useinbandfec=1;maxplaybackrate=16000;stereo=0".into()),
        }
    }
    pub fn telephone_event() -> Codec {
        Codec {
            name: "telephone-event".into(),
            clock_rate: 8000,
            channels: None,
            payload_type: 101,
            fmtp: Some("0-16".into()),
        }
    }

    /// The codec for an Asterisk `allow=` name (`ulaw`, `alaw`, `opus`).
    pub fn from_allow_name(name: &str) -> Option<Codec> {
        match name.trim().to_ascii_lowercase().as_str() {
            "ulaw" | "pcmu" | "g711u" => Some(Codec::pcmu()),
            "alaw" | "pcma" | "g711a" => Some(Codec::pcma()),
            // G.722 is read in offers (static type 9) but not allowed: there is no G.722 codec
            // here yet to decode it for Playback, Echo or translation.
            "opus" => Some(Codec::opus()),
            _ => None,
        }
    }

    /// Same codec (name, rate, channels), whatever the payload type.
    pub fn same_as(&self, other: &Codec) -> bool {
        self.name.eq_ignore_ascii_case(&other.name)
            && self.clock_rate == other.clock_rate
            && self.channels.unwrap_or(1) == other.channels.unwrap_or(1)
    }

    fn rtpmap(&self) -> String {
        match self.channels {
            Some(ch) => format!("{} {}/{}/{ch}", self.payload_type, self.name, self.clock_rate),
            None => format!("{} {}/{}", self.payload_type, self.name, self.clock_rate),
        }
    }

    /// A static payload type's codec (when an offer lists it without rtpmap).
    fn from_static(pt: u8) -> Option<Codec> {
        match pt {
            0 => Some(Codec::pcmu()),
            8 => Some(Codec::pcma()),
            9 => Some(Codec::g722()),
            _ => None,
        }
    }
}

/// The direction of a stream (RFC 3264 §5.1); `sendonly`/`inactive` put the other side on hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
    /// What an answer says to an offer with this direction.
    pub fn answer(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }
}

/// Our side of the session.
#[derive(Clone, Debug)]
pub struct LocalMedia {
    pub address: IpAddr,
    pub port: u16,
    /// In preference order.
    pub codecs: Vec<Codec>,
    /// `Some` to offer RFC 4733 events.
    pub telephone_event: Option<Codec>,
    pub ptime: u32,
    pub direction: Direction,
    /// `o=` session id and version; bump the version for every new offer in a dialog.
    pub session_id: u64,
    pub session_version: u64,
    pub username: String,
    /// SDES: our `a=crypto` lines (an offer's choices, or the one line an answer accepts).
    /// Any makes the stream `RTP/SAVP`; none, `RTP/AVP`.
    pub crypto: Vec<Crypto>,
}

impl LocalMedia {
    /// Our offer.
    pub fn offer(&self) -> String {
        let mut codecs = self.codecs.clone();
        codecs.extend(self.telephone_event.clone());
        self.write(&codecs, self.direction)
    }

    /// Our answer to a negotiated offer: the common codecs (chosen first), telephone-event if
    /// both have it, the direction that answers theirs (combined with ours: on hold we only send).
    pub fn answer(&self, negotiated: &Negotiated) -> String {
        let mut codecs = negotiated.codecs.clone();
        codecs.extend(negotiated.telephone_event.clone());
        let direction = match (self.direction, negotiated.remote_direction.answer()) {
            (Direction::SendRecv, d) => d,
            (ours, Direction::SendRecv) => ours,
            (Direction::SendOnly, Direction::SendOnly) => Direction::SendOnly,
            (Direction::RecvOnly, Direction::RecvOnly) => Direction::RecvOnly,
            _ => Direction::Inactive,
        };
        self.write(&codecs, direction)
    }

    fn write(&self, codecs: &[Codec], direction: Direction) -> String {
        let ip = if self.address.is_ipv4() { "IP4" } else { "IP6" };
        let mut sdp = String::with_capacity(400);
        let _ = write!(
            sdp,
            "v=0\r\no={} {} {} IN {ip} {}\r\ns={}\r\nc=IN {ip} {}\r\nt=0 0\r\n",
            self.username, self.session_id, self.session_version, self.address, self.username, self.address
        );
        let pts: Vec<String> = codecs.iter().map(|c| c.payload_type.to_string()).collect();
        let profile = if self.crypto.is_empty() { "RTP/AVP" } else { "RTP/SAVP" };
        let _ = write!(sdp, "m=audio {} {profile} {}\r\n", self.port, pts.join(" "));
        for c in codecs {
            let _ = write!(sdp, "a=rtpmap:{}\r\n", c.rtpmap());
            if let Some(fmtp) = &c.fmtp {
                let _ = write!(sdp, "a=fmtp:{} {fmtp}\r\n", c.payload_type);
            }
        }
        for crypto in &self.crypto {
            let _ = write!(sdp, "a=crypto:{crypto}\r\n");
        }
        let _ = write!(sdp, "a=ptime:{}\r\na={}\r\n", self.ptime, direction.as_str());
        sdp
    }
}

/// The peer's side, read from its SDP.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoteMedia {
    /// Where to send RTP (`c=` and the audio `m=` port); port 0 means the stream is refused.
    pub address: SocketAddr,
    /// Their audio codecs in their order, with their payload types (telephone-event apart).
    pub codecs: Vec<Codec>,
    pub telephone_event: Option<Codec>,
    pub direction: Direction,
    pub ptime: Option<u32>,
    pub rtcp_mux: bool,
    /// `a=rtcp:<port>` (RFC 3605): where RTCP goes when it is not RTP's port + 1.
    pub rtcp_port: Option<u16>,
    /// `c=0.0.0.0`: RFC 2543 hold.
    pub hold_address: bool,
    pub session_version: String,
    /// The stream is `RTP/SAVP` (or `RTP/SAVPF`): secure media asked for.
    pub secure: bool,
    /// Its `a=crypto` lines that could be read, in the offerer's order (lines we cannot read,
    /// an unknown suite among them, are left out).
    pub crypto: Vec<Crypto>,
}

/// Why an SDP could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpError {
    #[error("malformed SDP: {0}")]
    Malformed(String),
    #[error("no audio stream")]
    NoAudio,
    #[error("no connection address for the audio stream")]
    NoAddress,
    /// Answer 488 Not Acceptable Here.
    #[error("no codec in common (they offer {offered}; we allow {allowed})")]
    NoCommonCodec { offered: String, allowed: String },
}

/// An `o=` or `c=` line whose `IN IP6` address is bracketed (`[::1]`), without the brackets.
fn unbracketed_ip6(line: &str) -> Option<String> {
    if !(line.starts_with("o=") || line.starts_with("c=")) {
        return None;
    }
    let at = line.find("IN IP6 [")? + "IN IP6 ".len();
    let end = at + line[at..].find(']')?;
    Some(format!("{}{}{}", &line[..at], &line[at + 1..end], &line[end + 1..]))
}

impl RemoteMedia {
    pub fn parse(sdp: &str) -> Result<RemoteMedia, SdpError> {
        // sdp-rs wants CRLF line ends and a final one; peers send LF too. Some (SIPp) write an
        // IPv6 address in `o=`/`c=` between brackets, as in a URI: taken without them.
        // `r=` and `z=` lines (repeat times, time zones) are dropped unread: nothing here uses
        // them, and sdp-rs 0.2 panics on a time too large for chrono (`r=99999999999999999 1`).
        let normalised: String = sdp
            .lines()
            .filter(|l| !(l.starts_with("r=") || l.starts_with("z=")))
            .map(|l| {
                let l = l.trim_end_matches('\r');
                match unbracketed_ip6(l) {
                    Some(fixed) => format!("{fixed}\r\n"),
                    None => format!("{l}\r\n"),
                }
            })
            .collect();
        let session = SessionDescription::try_from(normalised).map_err(|e| SdpError::Malformed(e.to_string()))?;
        let media = session
            .media_descriptions
            .iter()
            .find(|m| m.media.media.to_string().eq_ignore_ascii_case("audio"))
            .ok_or(SdpError::NoAudio)?;
        let connection = media.connections.first().or(session.connection.as_ref()).ok_or(SdpError::NoAddress)?;
        let ip = connection.connection_address.base;
        let mut direction = Direction::SendRecv;
        let mut ptime = None;
        let mut rtcp_mux = false;
        let mut rtcp_port = None;
        let mut rtpmaps: Vec<Codec> = Vec::new();
        let mut fmtps: Vec<(u8, String)> = Vec::new();
        let mut crypto = Vec::new();
        let session_level = session.attributes.len();
        for (i, attribute) in session.attributes.iter().chain(&media.attributes).enumerate() {
            match attribute {
                Attribute::Sendrecv => direction = Direction::SendRecv,
                Attribute::Sendonly => direction = Direction::SendOnly,
                Attribute::Recvonly => direction = Direction::RecvOnly,
                Attribute::Inactive => direction = Direction::Inactive,
                Attribute::Ptime(p) => ptime = Some(*p as u32),
                Attribute::Rtpmap(map) => {
                    if let Ok(pt) = u8::try_from(map.payload_type) {
                        rtpmaps.push(Codec {
                            name: map.encoding_name.clone(),
                            clock_rate: map.clock_rate.max(0) as u32,
                            channels: map.encoding_params.map(|c| c.max(0) as u32),
                            payload_type: pt,
                            fmtp: None,
                        });
                    }
                }
                Attribute::Other(key, value) => match (key.as_str(), value) {
                    // sdp-rs 0.2 reads sendrecv/sendonly/recvonly but leaves `inactive` as Other.
                    ("inactive", None) => direction = Direction::Inactive,
                    ("rtcp-mux", _) => rtcp_mux = true,
                    // RFC 4568 §9.1: at the media level only. At most 32 lines are kept.
                    ("crypto", Some(v)) if crypto.len() < 32 && i >= session_level => {
                        if let Ok(line) = Crypto::parse(v) {
                            crypto.push(line);
                        }
                    }
                    ("rtcp", Some(v)) => rtcp_port = v.split_ascii_whitespace().next().and_then(|p| p.parse().ok()),
                    ("fmtp", Some(v)) => {
                        if let Some((pt, params)) = v.split_once(' ') {
                            if let Ok(pt) = pt.trim().parse() {
                                fmtps.push((pt, params.trim().to_owned()));
                            }
                        }
                    }
                    _ => {}
                },
                _ => {}
            }
        }
        // The first rtpmap and fmtp of each payload type, found by index: an offer may hold
        // thousands of each, and the m= line thousands of payload types.
        let (mut rtpmap_of, mut fmtp_of) = ([None::<usize>; 256], [None::<usize>; 256]);
        for (i, c) in rtpmaps.iter().enumerate().rev() {
            rtpmap_of[usize::from(c.payload_type)] = Some(i);
        }
        for (i, (pt, _)) in fmtps.iter().enumerate().rev() {
            fmtp_of[usize::from(*pt)] = Some(i);
        }
        let mut listed = [false; 256];
        let mut codecs = Vec::new();
        let mut telephone_event = None;
        for pt in media.media.fmt.split_ascii_whitespace().filter_map(|p| p.parse::<u8>().ok()) {
            // A payload type listed twice is one format (Asterisk sets it once per type).
            if std::mem::replace(&mut listed[usize::from(pt)], true) {
                continue;
            }
            let codec = rtpmap_of[usize::from(pt)].map(|i| rtpmaps[i].clone()).or_else(|| Codec::from_static(pt));
            let Some(mut codec) = codec else { continue };
            codec.fmtp = fmtp_of[usize::from(pt)].map(|i| fmtps[i].1.clone());
            if codec.name.eq_ignore_ascii_case("telephone-event") {
                if codec.clock_rate == 8000 || telephone_event.is_none() {
                    telephone_event = Some(codec);
                }
            } else {
                codecs.push(codec);
            }
        }
        Ok(RemoteMedia {
            address: SocketAddr::new(ip, media.media.port),
            codecs,
            telephone_event,
            direction,
            ptime,
            rtcp_mux,
            rtcp_port,
            hold_address: ip.is_unspecified(),
            session_version: session.origin.sess_version.clone(),
            secure: matches!(media.media.proto, ProtoType::RtpSavp | ProtoType::RtpSavpf),
            crypto,
        })
    }

    /// Whether this SDP puts us on hold.
    pub fn is_hold(&self) -> bool {
        self.hold_address || matches!(self.direction, Direction::SendOnly | Direction::Inactive)
    }
}

/// What offer/answer agreed.
#[derive(Clone, Debug, PartialEq)]
pub struct Negotiated {
    /// The codec to send, with the payload type the *offerer* gave it.
    pub codec: Codec,
    /// Every common codec, chosen first.
    pub codecs: Vec<Codec>,
    pub telephone_event: Option<Codec>,
    pub remote: SocketAddr,
    /// Where their RTCP goes: `remote` with `a=rtcp-mux`, the `a=rtcp:` port, else RTP's + 1.
    pub remote_rtcp: SocketAddr,
    pub remote_direction: Direction,
}

/// Intersects an offer with the codecs we allow. `prefer_ours` picks by our order (Asterisk's
/// default), else by theirs. Payload types stay the offerer's, as RFC 3264 §6.1 requires.
pub fn negotiate(offer: &RemoteMedia, allowed: &[Codec], prefer_ours: bool) -> Result<Negotiated, SdpError> {
    let mut common: Vec<Codec> = if prefer_ours {
        allowed.iter().filter_map(|ours| offer.codecs.iter().find(|theirs| theirs.same_as(ours)).cloned()).collect()
    } else {
        offer.codecs.iter().filter(|theirs| allowed.iter().any(|ours| ours.same_as(theirs))).cloned().collect()
    };
    common.dedup_by(|a, b| a.same_as(b));
    let Some(codec) = common.first().cloned() else {
        let names = |codecs: &[Codec]| codecs.iter().map(|c| c.name.clone()).collect::<Vec<_>>().join(",");
        return Err(SdpError::NoCommonCodec { offered: names(&offer.codecs), allowed: names(allowed) });
    };
    Ok(Negotiated {
        codec,
        codecs: common,
        telephone_event: offer.telephone_event.clone(),
        remote: offer.address,
        remote_rtcp: match (offer.rtcp_mux, offer.rtcp_port) {
            (true, _) => offer.address,
            (false, Some(port)) => SocketAddr::new(offer.address.ip(), port),
            (false, None) => SocketAddr::new(offer.address.ip(), offer.address.port().wrapping_add(1)),
        },
        remote_direction: if offer.hold_address { Direction::SendOnly } else { offer.direction },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> LocalMedia {
        LocalMedia {
            address: "192.0.2.1".parse().unwrap(),
            port: 10000,
            codecs: vec![Codec::pcmu(), Codec::pcma(), Codec::opus()],
            telephone_event: Some(Codec::telephone_event()),
            ptime: 20,
            direction: Direction::SendRecv,
            session_id: 4711,
            session_version: 1,
            username: "Starling".into(),
            crypto: Vec::new(),
        }
    }

    /// A 64 KB offer (the largest a SIP message may be) made of what costs most: an `m=` line
    /// listing one payload type thousands of times, thousands of rtpmaps and fmtps, and a line
    /// of 20,000 `(`. It parses or fails, in time linear in its size (see the bench), and the
    /// codecs come out once each.
    fn hostile_offer(pts: usize, maps: usize) -> String {
        let mut sdp = String::from("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n");
        sdp.push_str("m=audio 4000 RTP/AVP");
        for n in 0..pts {
            sdp.push_str(if n % 2 == 0 { " 0" } else { " 96" });
        }
        sdp.push_str("\r\n");
        for n in 0..maps {
            sdp.push_str(&format!(
                "a=rtpmap:{} X{n}/8000\r\na=fmtp:{} {}\r\n",
                97 + n % 100,
                97 + n % 100,
                "(".repeat(3)
            ));
        }
        sdp.push_str("a=rtpmap:96 opus/48000/2\r\n");
        sdp.push_str(&format!("a=x:{}\r\n", "(".repeat(20_000)));
        sdp
    }

    #[test]
    fn a_huge_offer_is_read_in_one_pass() {
        let sdp = hostile_offer(10_000, 1_000);
        let remote = RemoteMedia::parse(&sdp).unwrap();
        let names: Vec<&str> = remote.codecs.iter().take(3).map(|c| c.name.as_str()).collect();
        assert_eq!((remote.codecs.len(), names), (2, vec!["PCMU", "opus"]));
    }

    proptest::proptest! {
        /// Random mixes of SDP lines, brackets and quotes, repeated up to 64 KB: an error or
        /// media, never a panic, and each payload type at most once.
        #[test]
        fn random_offers_are_bounded(
            lines in proptest::collection::vec(
                proptest::sample::select(vec![
                    "v=0", "o=- 1 1 IN IP4 127.0.0.1", "o=- 1 1 IN IP6 [::1]", "s=-", "c=IN IP4 127.0.0.1",
                    "c=IN IP6 [::1", "t=0 0", "m=audio 4000 RTP/AVP 0 8 101 0 0", "m=video 1 RTP/AVP 96",
                    "a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16", "a=fmtp:",
                    "a=rtpmap:", "a=sendonly", "a=inactive", "a=rtcp:", "a=rtcp-mux", "a=ptime:", "b=AS:",
                    "a=x:((((((((", "a=\"\"\"\"", "a=<<<<>>>>", "", "\r", "=", "m=audio 4000 RTP/SAVP 0",
                    "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20",
                    "a=crypto:", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:|||", "a=crypto:x y z",
                ]),
                0..40,
            ),
            repeat in 1usize..2_000,
        ) {
            let unit = lines.join("\r\n") + "\r\n";
            let sdp = unit.repeat(if unit.len() * repeat > 65_535 { 1 } else { repeat });
            if let Ok(remote) = RemoteMedia::parse(&sdp) {
                let mut pts: Vec<u8> = remote.codecs.iter().map(|c| c.payload_type).collect();
                let before = pts.len();
                pts.sort_unstable();
                pts.dedup();
                proptest::prop_assert_eq!(pts.len(), before);
            }
        }
    }

    const BARESIP: &str = "v=0\r\no=- 1234 5678 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 8 0 101\r\nb=AS:64\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\na=label:1\r\na=ssrc:1 cname:x\r\n";

    /// An SDES offer (baresip's `mediaenc=srtp-mand` shape): RTP/SAVP, its crypto lines in its
    /// order, an unreadable one left out, one at the session level ignored. Our own secure
    /// offer and answer read back.
    #[test]
    fn sdes_offers_and_answers() {
        let offer = BARESIP.replace("RTP/AVP", "RTP/SAVP").replace(
            "a=sendrecv\r\n",
            "a=sendrecv\r\na=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj\r\n\
             a=crypto:2 F8_128_HMAC_SHA1_80 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj\r\n\
             a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj\r\n",
        );
        let offer = offer.replace(
            "t=0 0\r\n",
            "t=0 0\r\na=crypto:9 AES_CM_128_HMAC_SHA1_80 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj\r\n",
        );
        let remote = RemoteMedia::parse(&offer).unwrap();
        assert!(remote.secure);
        assert_eq!(remote.crypto.iter().map(|c| c.tag).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(
            crate::sdes::choose(&remote.crypto).map(|c| c.key.suite),
            Some(crate::srtp::Suite::AesCm128HmacSha1_32)
        );
        let plain = RemoteMedia::parse(BARESIP).unwrap();
        assert!(!plain.secure && plain.crypto.is_empty());

        let mut ours = local();
        assert!(ours.offer().contains("m=audio 10000 RTP/AVP "), "no crypto: plain RTP");
        ours.crypto = crate::srtp::Suite::ALL
            .iter()
            .zip(1..)
            .map(|(suite, tag)| Crypto::new(tag, crate::srtp::MasterKey::generate(*suite, |b| b.fill(tag as u8))))
            .collect();
        let text = ours.offer();
        assert!(text.contains("m=audio 10000 RTP/SAVP 0 8 111 101\r\n"), "{text}");
        assert!(text.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"), "{text}");
        let back = RemoteMedia::parse(&text).unwrap();
        assert!(back.secure);
        assert_eq!(back.crypto, ours.crypto);
        let negotiated = negotiate(&back, &[Codec::pcmu()], true).unwrap();
        ours.crypto.truncate(1);
        let answer = RemoteMedia::parse(&ours.answer(&negotiated)).unwrap();
        assert!(answer.secure);
        assert_eq!(answer.crypto, ours.crypto);
    }

    #[test]
    fn opus_rtpmap_keeps_its_channels() {
        let offer = local().offer();
        assert!(offer.contains("a=rtpmap:111 opus/48000/2\r\n"), "{offer}");
        assert!(offer.contains("m=audio 10000 RTP/AVP 0 8 111 101\r\n"), "{offer}");
        // And our own offer reads back.
        let back = RemoteMedia::parse(&offer).unwrap();
        assert_eq!(back.codecs.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["PCMU", "PCMA", "opus"]);
        assert_eq!(back.codecs[2].channels, Some(2));
        assert_eq!(back.codecs[2].fmtp.as_deref(), Some("useinbandfec=1;maxplaybackrate=16000;stereo=0"));
        assert_eq!(back.telephone_event.unwrap().payload_type, 101);
    }

    /// IPv6, plain and as SIPp writes it (bracketed); our own IPv6 offer reads back.
    #[test]
    fn ipv6_addresses_with_or_without_brackets() {
        for (o, c) in [("::1", "::1"), ("[::1]", "[::1]"), ("[2001:db8::7]", "2001:db8::7")] {
            let sdp = BARESIP
                .replace("IN IP4 127.0.0.1\r\ns=-", &format!("IN IP6 {o}\r\ns=-"))
                .replace("c=IN IP4 127.0.0.1", &format!("c=IN IP6 {c}"));
            let offer = RemoteMedia::parse(&sdp).unwrap_or_else(|e| panic!("{e}: {sdp}"));
            let ip = c.trim_start_matches('[').trim_end_matches(']');
            assert_eq!(offer.address, std::net::SocketAddr::new(ip.parse().unwrap(), 4000));
        }
        let mut v6 = local();
        v6.address = "2001:db8::1".parse().unwrap();
        let back = RemoteMedia::parse(&v6.offer()).unwrap();
        assert_eq!(back.address.ip(), v6.address);
        assert!(v6.offer().contains("c=IN IP6 2001:db8::1\r\n"), "{}", v6.offer());
    }

    #[test]
    fn negotiation_in_our_order_or_theirs() {
        let offer = RemoteMedia::parse(BARESIP).unwrap();
        assert_eq!(offer.address, "127.0.0.1:4000".parse().unwrap());
        let ours = negotiate(&offer, &local().codecs, true).unwrap();
        assert_eq!(ours.codec.name, "PCMU");
        let theirs = negotiate(&offer, &local().codecs, false).unwrap();
        assert_eq!(theirs.codec.name, "PCMA");
        let answer = local().answer(&ours);
        assert!(answer.contains("m=audio 10000 RTP/AVP 0 8 101\r\n"), "{answer}");
        assert!(answer.contains("a=fmtp:101 0-15\r\n"), "the offerer's events: {answer}");
        assert!(answer.contains("a=sendrecv"));
    }

    #[test]
    fn no_common_codec_says_what_was_offered() {
        let offer = RemoteMedia::parse(
            &BARESIP
                .replace("RTP/AVP 8 0 101", "RTP/AVP 9 101")
                .replace("a=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n", ""),
        )
        .unwrap();
        let e = negotiate(&offer, &[Codec::pcmu()], true).unwrap_err();
        assert_eq!(e, SdpError::NoCommonCodec { offered: "G722".into(), allowed: "PCMU".into() });
    }

    #[test]
    fn hold_by_direction_or_zero_address_and_the_answer() {
        let sendonly = RemoteMedia::parse(&BARESIP.replace("a=sendrecv", "a=sendonly")).unwrap();
        assert!(sendonly.is_hold());
        let n = negotiate(&sendonly, &local().codecs, true).unwrap();
        assert!(local().answer(&n).contains("a=recvonly\r\n"));
        let old_style = RemoteMedia::parse(&BARESIP.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0")).unwrap();
        assert!(old_style.is_hold());
        let inactive = RemoteMedia::parse(&BARESIP.replace("a=sendrecv", "a=inactive")).unwrap();
        let n = negotiate(&inactive, &local().codecs, true).unwrap();
        assert!(local().answer(&n).contains("a=inactive\r\n"));
        let mut held = local();
        held.direction = Direction::SendOnly;
        held.session_version += 1;
        let reoffer = held.offer();
        assert!(reoffer.contains("o=Starling 4711 2 IN IP4") && reoffer.contains("a=sendonly"), "{reoffer}");
    }

    /// Found by fuzz/ (sdp): sdp-rs panicked (chrono's "TimeDelta::seconds out of bounds") on
    /// a repeat time too large, in the body of any INVITE.
    #[test]
    fn huge_repeat_and_zone_times_are_not_read() {
        let sdp = BARESIP.replace(
            "t=0 0\r\n",
            "t=0 0\r\nr=00000000000000008715660741256668904 15 0\r\nz=99999999999999999999 -1h\r\n",
        );
        assert_eq!(RemoteMedia::parse(&sdp).unwrap(), RemoteMedia::parse(BARESIP).unwrap());
    }

    #[test]
    fn static_types_without_rtpmap_lf_lines_and_ipv6() {
        let sdp = "v=0\no=- 1 1 IN IP6 ::1\ns=-\nc=IN IP6 2001:db8::5\nt=0 0\nm=audio 5004 RTP/AVP 0\n";
        let r = RemoteMedia::parse(&format!("{sdp}a=rtcp:5010 IN IP6 2001:db8::5\n")).unwrap();
        assert_eq!(r.codecs, [Codec::pcmu()]);
        assert_eq!(r.rtcp_port, Some(5010));
        assert_eq!(r.address, "[2001:db8::5]:5004".parse().unwrap());
        assert_eq!(
            RemoteMedia::parse("v=0\r\n"),
            Err(SdpError::Malformed(
                RemoteMedia::parse("v=0\r\n").unwrap_err().to_string().replace("malformed SDP: ", "")
            ))
        );
        let video_only =
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=video 5000 RTP/AVP 96\r\n";
        assert_eq!(RemoteMedia::parse(video_only), Err(SdpError::NoAudio));
    }
}
