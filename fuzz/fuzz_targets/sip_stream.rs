//! Any bytes as a TCP stream, cut where the input says: the first byte gives the number of cuts
//! (0 to 15), two bytes each give where (modulo the stream's length), the rest is the stream.
//!
//! Must hold: nothing panics; the stream cut anywhere frames the same items (messages, pings,
//! pongs, and the first error, after which the connection is closed) as the stream read at
//! once; every framed message writes back to bytes that parse to it (Content-Length aside).
#![no_main]

use libfuzzer_sys::fuzz_target;
use starling_sip::message::{StreamDecoder, StreamItem};
use starling_sip::{parse, HeaderName, ParseError, SipMessage};

fuzz_target!(|data: &[u8]| {
    let Some((&count, rest)) = data.split_first() else { return };
    let count = usize::from(count % 16).min(rest.len() / 2);
    let (spec, stream) = rest.split_at(count * 2);
    let mut cuts: Vec<usize> =
        spec.chunks_exact(2).map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) % (stream.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.push(stream.len());

    let whole = {
        let mut decoder = StreamDecoder::new();
        decoder.push(stream);
        let mut items = Vec::new();
        drain(&mut decoder, &mut items);
        items
    };
    let mut cut = Vec::new();
    let mut decoder = StreamDecoder::new();
    let mut from = 0;
    for to in cuts {
        decoder.push(&stream[from..to]);
        from = to;
        if drain(&mut decoder, &mut cut) {
            break;
        }
    }
    assert_eq!(cut, whole, "the stream cut differently framed other items");

    for item in &whole {
        if let Ok(StreamItem::Message(message)) = item {
            let bytes = message.to_bytes();
            let again =
                parse(&bytes).unwrap_or_else(|e| panic!("{message:?} writes back as unparsable {bytes:?}: {e}"));
            assert_eq!(without_length(&again), without_length(message));
        }
    }
});

/// Takes every item ready into `out`; true once an error ended the stream.
fn drain(decoder: &mut StreamDecoder, out: &mut Vec<Result<StreamItem, ParseError>>) -> bool {
    while let Some(item) = decoder.next_item() {
        let failed = item.is_err();
        out.push(item);
        if failed {
            return true;
        }
    }
    false
}

fn without_length(message: &SipMessage) -> SipMessage {
    let mut m = message.clone();
    match &mut m {
        SipMessage::Request(r) => r.headers.remove(&HeaderName::ContentLength),
        SipMessage::Response(r) => r.headers.remove(&HeaderName::ContentLength),
    }
    m
}
