//! Any text as an SDP offer (what an INVITE or re-INVITE body brings).
//!
//! Must hold: nothing panics; an offer that parses and has a codec in common is answered with
//! an SDP that parses back to the codecs, telephone-event and address the negotiation chose,
//! and (SDES) to the `a=crypto` line answering the offer's first usable one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use starling_media::sdes::{self, Crypto};
use starling_media::sdp::{negotiate, Codec, Direction, LocalMedia, RemoteMedia};
use starling_media::srtp::MasterKey;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(offer) = RemoteMedia::parse(text) else { return };
    let _ = offer.is_hold();
    let mut ours = LocalMedia {
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
    };
    if let Some(theirs) = sdes::choose(&offer.crypto) {
        ours.crypto = vec![Crypto::new(theirs.tag, MasterKey::generate(theirs.key.suite, |b| b.fill(7)))];
    }
    for prefer_ours in [true, false] {
        let Ok(negotiated) = negotiate(&offer, &ours.codecs, prefer_ours) else { continue };
        let answer = ours.answer(&negotiated);
        let back =
            RemoteMedia::parse(&answer).unwrap_or_else(|e| panic!("our answer does not parse ({e}): {answer:?}"));
        assert_eq!(back.address, "192.0.2.1:10000".parse().unwrap());
        let names =
            |codecs: &[Codec]| codecs.iter().map(|c| (c.payload_type, c.name.to_ascii_lowercase())).collect::<Vec<_>>();
        assert_eq!(names(&back.codecs), names(&negotiated.codecs), "answer {answer:?}");
        assert_eq!(back.crypto, ours.crypto, "answer {answer:?}");
        assert_eq!(back.secure, !ours.crypto.is_empty(), "answer {answer:?}");
    }
    let _ = ours.offer();
});
