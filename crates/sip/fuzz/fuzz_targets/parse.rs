//! Any bytes, as a datagram and as a stream: the parser returns, never panics; a message that
//! parses writes back to bytes that parse; an error's 400, when it has one, is well formed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use starling_sip::message::StreamDecoder;
use starling_sip::{parse, parse_datagram, Datagram, ParseErrorKind};

fuzz_target!(|data: &[u8]| {
    match parse_datagram(data) {
        Ok(Datagram::Message(message)) => {
            let again = parse(&message.to_bytes()).expect("a parsed message writes back to one that parses");
            assert_eq!(again.to_bytes(), parse(&again.to_bytes()).unwrap().to_bytes());
        }
        Ok(Datagram::KeepAlive) => {}
        Err(e) => {
            // The 400 copies From, To, Call-ID and CSeq as they came; the rest of it must parse.
            if let Some(response) = e.bad_request() {
                if let Err(again) = parse(&response.to_bytes()) {
                    assert!(
                        matches!(again.kind, ParseErrorKind::BadHeader("CSeq" | "From" | "To" | "Call-ID", _)),
                        "the answer to {e:?} does not parse: {again:?}"
                    );
                }
            }
        }
    }
    let mut stream = StreamDecoder::new();
    for chunk in data.chunks(7) {
        stream.push(chunk);
        while let Some(item) = stream.next_item() {
            if item.is_err() {
                return;
            }
        }
    }
});
