//! The little SDP the generator needs: our PCMU offer/answer, and the audio address of the far end's.

use std::net::{Ipv4Addr, SocketAddrV4};

/// Our SDP: PCMU only, 20 ms, on `ip:port`.
pub fn pcmu(ip: Ipv4Addr, port: u16, session: u64) -> String {
    format!(
        "v=0\r\no=callgen {session} 1 IN IP4 {ip}\r\ns=callgen\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
    )
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
