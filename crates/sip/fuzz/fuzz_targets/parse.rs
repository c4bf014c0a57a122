//! Any bytes, as a datagram and as a stream: the parser returns, never panics; a message that
//! parses writes back to bytes that parse; an error's 400, when it has one, parses too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use starling_sip::message::StreamDecoder;
use starling_sip::{parse, parse_datagram, Datagram};

fuzz_target!(|data: &[u8]| {
    match parse_datagram(data) {
        Ok(Datagram::Message(message)) => {
            let again = parse(&message.to_bytes()).expect("a parsed message writes back to one that parses");
            assert_eq!(again.to_bytes(), parse(&again.to_bytes()).unwrap().to_bytes());
        }
        Ok(Datagram::KeepAlive) => {}
        Err(e) => {
            if let Some(response) = e.bad_request() {
                parse(&response.to_bytes()).expect("a 400 parses");
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
