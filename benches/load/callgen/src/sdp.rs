//! The little SDP the generator needs: our PCMU offer/answer, and the audio address of the far end's.

use std::net::{Ipv4Addr, SocketAddrV4};

use starling_media::sdes::Crypto;
use starling_media::srtp::{MasterKey, Suite};

/// Our SDP: PCMU only, 20 ms, on `ip:port`.
#[cfg(test)]
pub fn pcmu(ip: Ipv4Addr, port: u16, session: u64) -> String {
    pcmu_with(ip, port, session, None)
}

/// Our SDP, with SDES-SRTP (`RTP/SAVP` and one `a=crypto` line) when `crypto` is given.
pub fn pcmu_with(ip: Ipv4Addr, port: u16, session: u64, crypto: Option<&Crypto>) -> String {
    let (profile, line) = match crypto {
        Some(c) => ("RTP/SAVP", format!("a=crypto:{c}\r\n")),
        None => ("RTP/AVP", String::new()),
    };
    format!(
        "v=0\r\no=callgen {session} 1 IN IP4 {ip}\r\ns=callgen\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} {profile} 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n{line}a=sendrecv\r\n"
    )
}

/// The far end's `a=crypto` line we take: the first `AES_CM_128_HMAC_SHA1_80` one (every
/// stream of the generator uses that suite: its packets are all of one length).
pub fn their_crypto(body: &[u8]) -> Option<Crypto> {
    let text = std::str::from_utf8(body).ok()?;
    let media = starling_media::sdp::RemoteMedia::parse(text).ok()?;
    media.crypto.into_iter().find(|c| c.usable() && c.key.suite == Suite::AesCm128HmacSha1_80)
}

/// Our key for stream `index` on one side (`salt`): made up from the two, repeatable. (A load
/// generator's keys need not be secret; they must differ between calls.)
pub fn our_key(index: u32, salt: u64) -> MasterKey {
    let mut state = (u64::from(index) << 20) ^ salt ^ 0x9e37_79b9_7f4a_7c15;
    MasterKey::generate(Suite::AesCm128HmacSha1_80, |bytes| {
        for b in bytes.iter_mut() {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            *b = (z ^ (z >> 31)) as u8;
        }
    })
}

/// Where the far end wants its audio: the first `m=audio` port with the `c=` that applies to it
/// (the media-level one, else the session-level one). `None` without an IPv4 address, without
/// audio, or with the stream refused (port 0).
pub fn audio_addr(body: &[u8]) -> Option<SocketAddrV4> {
    let text = std::str::from_utf8(body).ok()?;
    let mut session_c = None;
    let mut audio: Option<(u16, Option<Ipv4Addr>)> = None;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(c) = line.strip_prefix("c=") {
            let ip = connection_ip(c);
            match audio.as_mut() {
                Some((_, media_c)) => *media_c = media_c.or(ip),
                None => session_c = ip,
            }
        } else if let Some(m) = line.strip_prefix("m=") {
            if audio.is_some() {
                break; // the audio stream's section is over
            }
            let mut fields = m.split_ascii_whitespace();
            if fields.next() == Some("audio") {
                let port = fields.next()?.split('/').next()?.parse().ok()?;
                audio = Some((port, None));
            }
        }
    }
    let (port, media_c) = audio?;
    let ip = media_c.or(session_c)?;
    (port != 0).then(|| SocketAddrV4::new(ip, port))
}

/// `IN IP4 192.0.2.1` (a multicast `/ttl` suffix ignored) → the address.
fn connection_ip(c: &str) -> Option<Ipv4Addr> {
    let mut fields = c.split_ascii_whitespace();
    if fields.next()? != "IN" || fields.next()? != "IP4" {
        return None;
    }
    fields.next()?.split('/').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_sdp_reads_back() {
        let body = pcmu(Ipv4Addr::LOCALHOST, 41002, 7);
        assert_eq!(audio_addr(body.as_bytes()), Some("127.0.0.1:41002".parse().unwrap()));
        assert!(body.contains("m=audio 41002 RTP/AVP 0\r\n"));
        assert!(body.contains("a=rtpmap:0 PCMU/8000\r\n"));
    }

    #[test]
    fn our_srtp_sdp_reads_back() {
        let ours = Crypto::new(1, our_key(7, 1));
        let body = pcmu_with(Ipv4Addr::LOCALHOST, 41002, 7, Some(&ours));
        assert!(body.contains("m=audio 41002 RTP/SAVP 0\r\n"));
        assert_eq!(their_crypto(body.as_bytes()), Some(ours));
        assert_ne!(our_key(7, 1), our_key(8, 1));
        assert_ne!(our_key(7, 1), our_key(7, 2));
        assert_eq!(their_crypto(pcmu(Ipv4Addr::LOCALHOST, 41002, 7).as_bytes()), None);
    }

    #[test]
    fn media_level_c_wins() {
        let body = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
            m=audio 12000 RTP/AVP 0 101\r\nc=IN IP4 127.0.0.1\r\na=rtpmap:0 PCMU/8000\r\n\
            m=video 13000 RTP/AVP 96\r\nc=IN IP4 10.9.9.9\r\n";
        assert_eq!(audio_addr(body.as_bytes()), Some("127.0.0.1:12000".parse().unwrap()));
    }

    #[test]
    fn session_c_and_lf_only() {
        let body = "v=0\nc=IN IP4 127.0.0.1\nm=video 9 RTP/AVP 96\nm=audio 10002 RTP/AVP 0\n";
        assert_eq!(audio_addr(body.as_bytes()), Some("127.0.0.1:10002".parse().unwrap()));
    }

    #[test]
    fn refused_or_missing() {
        assert_eq!(audio_addr(b"v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 0 RTP/AVP 0\r\n"), None);
        assert_eq!(audio_addr(b"v=0\r\nm=audio 10000 RTP/AVP 0\r\n"), None);
        assert_eq!(audio_addr(b"v=0\r\nc=IN IP6 ::1\r\nm=audio 10000 RTP/AVP 0\r\n"), None);
        assert_eq!(audio_addr(b""), None);
        assert_eq!(audio_addr(&[0xFF, 0xFE]), None);
    }
}
