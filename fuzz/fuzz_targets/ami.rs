//! Any bytes as what an AMI client sends: lines to the manager message reader (res_manager
//! reads them from the socket, at most 16 KiB each, and hands them over one by one).
//!
//! Must hold: nothing panics; no message has more than MAX_HEADERS headers; each message read,
//! written back as the manager writes messages, reads back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use starling_core::manager::{MessageReader, MAX_HEADERS};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut reader = MessageReader::default();
    let mut messages = Vec::new();
    for line in text.split_inclusive('\n') {
        match reader.line(line) {
            Ok(Some(message)) => messages.push(message),
            Ok(None) => {}
            Err(_) => break, // the connection is closed
        }
    }
    for message in messages {
        assert!(!message.headers.is_empty() && message.headers.len() <= MAX_HEADERS);
        let rendered = message.render();
        let mut again = MessageReader::default();
        let back: Vec<_> = rendered.split_inclusive('\n').filter_map(|l| again.line(l).expect("rendered")).collect();
        assert_eq!(back, [message], "rendered as {rendered:?}");
    }
});
