//! Property tests: no input makes the parser panic, and what we build reads back the same.

use proptest::prelude::*;
use starling_sip::message::{StreamDecoder, StreamItem};
use starling_sip::{parse, parse_datagram, HeaderName, Host, Method, NameAddr, Request, SipMessage, Uri, Via};

const INVITE: &[u8] = b"INVITE sip:bob@biloxi.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.com>\r\n\
From: \"Alice\" <sip:alice@atlanta.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@[2001:db8::1]:5060>, <tel:+1-555-0100>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 10\r\n\r\nv=0\r\no=x\r\n";

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1500)) {
        let _ = parse_datagram(&bytes);
        let mut stream = StreamDecoder::new();
        stream.push(&bytes);
        for _ in 0..8 {
            match stream.next_item() {
                None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            }
        }
    }

    /// A valid message with a few bytes changed, inserted or removed: an error or a message,
    /// never a panic; and an error that can be answered builds a 400 that parses.
    #[test]
    fn mutated_messages_never_panic(edits in proptest::collection::vec((0..INVITE.len(), any::<u8>(), 0..3u8), 1..6)) {
        let mut bytes = INVITE.to_vec();
        for (at, byte, op) in edits {
            let at = at.min(bytes.len().saturating_sub(1));
            match op {
                0 => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ => { bytes.remove(at); }
            }
        }
        match parse(&bytes) {
            Ok(message) => { let _ = parse(&message.to_bytes()); }
            Err(e) => {
                // The 400 copies From, To, Call-ID and CSeq as they came (a fault there is
                // answered too), so those may not parse; everything else of it must.
                if let Some(response) = e.bad_request() {
                    if let Err(again) = parse(&response.to_bytes()) {
                        let copied = matches!(
                            again.kind,
                            starling_sip::ParseErrorKind::BadHeader("CSeq" | "From" | "To" | "Call-ID", _)
                        );
                        prop_assert!(copied, "the 400 for {:?} does not parse: {:?}", e, again);
                    }
                }
            }
        }
    }

    /// However a TCP stream is cut into reads, it is framed into the same items as when it
    /// arrives whole (up to and with the first error, after which the connection is closed).
    #[test]
    fn stream_framing_does_not_depend_on_the_reads(
        parts in proptest::collection::vec(0..5usize, 1..8),
        tail in proptest::collection::vec(any::<u8>(), 0..40),
        cuts in proptest::collection::vec(1..80usize, 1..400),
    ) {
        const RESPONSE: &[u8] = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP a;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
            To: <sip:x@y>;tag=2\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nl: 0\r\n\r\n";
        let pool: [&[u8]; 5] = [INVITE, b"\r\n\r\n", b"\r\n", RESPONSE, b"\nINVITE sip:x SIP/2.0\r\nContent-Length: 3\r\n\r\nabc"];
        let mut stream: Vec<u8> = parts.iter().flat_map(|&i| pool[i].iter().copied()).collect();
        stream.extend(tail);
        let items = |reads: &mut dyn Iterator<Item = &[u8]>| {
            let mut decoder = StreamDecoder::new();
            let mut items = Vec::new();
            for read in reads {
                decoder.push(read);
                while let Some(item) = decoder.next_item() {
                    let failed = item.is_err();
                    items.push(item);
                    if failed {
                        return items;
                    }
                }
            }
            items
        };
        let whole = items(&mut std::iter::once(stream.as_slice()));
        let mut rest = stream.as_slice();
        let mut cut_reads = Vec::new();
        for cut in cuts.iter().cycle().take(stream.len()) {
            if rest.is_empty() {
                break;
            }
            let (read, after) = rest.split_at((*cut).min(rest.len()));
            cut_reads.push(read);
            rest = after;
        }
        let cut = items(&mut cut_reads.into_iter());
        prop_assert_eq!(&cut, &whole);
        let bytewise = items(&mut stream.chunks(1));
        prop_assert_eq!(&bytewise, &whole);
        prop_assert!(whole.iter().filter(|i| matches!(i, Ok(StreamItem::Message(_)))).count() <= parts.len());
    }

    /// build → serialise → parse gives the same message.
    #[test]
    fn built_requests_read_back(
        user in "[a-z][a-z0-9._-]{0,12}",
        host in prop_oneof![
            "[a-z]{1,10}(\\.[a-z]{2,5}){0,2}".prop_map(Host::Name),
            any::<[u8; 4]>().prop_map(|a| Host::V4(a.into())),
            any::<[u16; 8]>().prop_map(|a| Host::V6(a.into())),
        ],
        port in proptest::option::of(1u16..),
        method in prop_oneof![Just(Method::Invite), Just(Method::Register), Just(Method::Options), "[A-Z]{3,10}".prop_map(|m| Method::parse(&m).unwrap())],
        display in proptest::option::of("[ -~]{0,20}"),
        branch in "[a-zA-Z0-9]{1,20}",
        seq in 0u32..(1 << 31),
        call_id in "[a-zA-Z0-9.-]{1,20}(@[a-zA-Z0-9.-]{1,20})?",
        body in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let uri = Uri::sip(Some(&user), host.clone(), port);
        let mut request = Request::new(method.clone(), uri.clone());
        let via = Via { transport: "UDP".into(), host, port, params: vec![starling_sip::Param::new("branch", Some(format!("z9hG4bK{branch}")))] };
        request.headers.push(HeaderName::Via, via.to_string());
        let mut from = NameAddr::new(uri.clone());
        from.display = display;
        from.set_param("tag", Some("abc".into()));
        request.headers.push(HeaderName::From, from.to_string());
        request.headers.push(HeaderName::To, NameAddr::new(uri).to_string());
        request.headers.push(HeaderName::CallId, call_id);
        request.headers.push(HeaderName::CSeq, format!("{seq} {method}"));
        request.body = body;
        let bytes = request.to_bytes();
        let parsed = parse(&bytes);
        prop_assert!(parsed.is_ok(), "{:?}\n{}", parsed, String::from_utf8_lossy(&bytes));
        let SipMessage::Request(mut parsed) = parsed.unwrap() else { panic!("not a request") };
        parsed.headers.remove(&HeaderName::ContentLength);
        prop_assert_eq!(&parsed, &request);
        let parsed_from = NameAddr::parse(parsed.headers.get(&HeaderName::From).unwrap()).unwrap();
        prop_assert_eq!(parsed_from, from);
        prop_assert_eq!(Via::parse(parsed.headers.get(&HeaderName::Via).unwrap()).unwrap(), via);
    }
}

/// Nesting and repetition a stranger controls (issue 20), at 10^5 and at the most a message may
/// hold: nothing in this crate recurses or rescans, so every parser runs on a 256 KiB stack and
/// answers with a value or an error.
mod nesting {
    use starling_sip::digest::{Authorization, Challenge};
    use starling_sip::{parse_datagram, NameAddr, ParseErrorKind, Uri, Via};

    fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new().stack_size(256 * 1024).spawn(f).unwrap().join().unwrap()
    }

    /// Values of one header: quotes, escapes, angle brackets, parentheses, parameters, lists.
    fn hostile_values(n: usize) -> Vec<String> {
        vec![
            format!("\"{}\" <sip:a@b>", "\\\"".repeat(n)),
            format!("\"{}\" <sip:a@b>", "\\".repeat(n)),
            format!("\"{}", "\"".repeat(n)),
            format!("{}sip:a@b{}", "<".repeat(n), ">".repeat(n)),
            format!("<sip:{}1@b>", "(".repeat(n)),
            format!("<sip:a@b{}>", ";x".repeat(n)),
            format!("<sip:a@b>{}", ";tag=\"\"".repeat(n)),
            format!("<sip:a@b?{}>", "h=v&".repeat(n)),
            format!("{}<sip:a@b>", "a ".repeat(n)),
            "<sip:a@b>,".repeat(n),
            format!("SIP/2.0/UDP h{}", ";branch=z9hG4bK1".repeat(n)),
            format!("Digest {}", "realm=\"\\\"\",".repeat(n)),
            format!("Digest realm=\"{}\"", "\\\\\"".repeat(n)),
        ]
    }

    #[test]
    fn header_values_nested_100000_deep() {
        on_small_stack(|| {
            for value in hostile_values(100_000) {
                let _ = NameAddr::parse(&value);
                let _ = Via::parse(&value);
                let _ = Uri::parse(value.trim_start_matches('<').trim_end_matches('>'));
                let _ = Authorization::parse(&value);
                let _ = Challenge::parse(&value);
            }
        });
    }

    fn invite_with(name: &str, value: &str) -> Vec<u8> {
        format!(
            "INVITE sip:1@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1\r\n\
             From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:1@127.0.0.1>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\
             {name}: {value}\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    /// Each value in each header a message may nest in: as large as a message may be, it
    /// parses or is refused; larger, it is refused as too large.
    #[test]
    fn messages_nested_to_the_size_limit_and_past_it() {
        on_small_stack(|| {
            for name in ["From", "To", "Contact", "Via", "Route", "Authorization", "Server"] {
                for n in [9_000, 100_000] {
                    for value in hostile_values(n) {
                        let bytes = invite_with(name, &value);
                        match parse_datagram(&bytes) {
                            Err(e) if bytes.len() > starling_sip::message::MAX_MESSAGE => {
                                assert!(matches!(e.kind, ParseErrorKind::TooLarge { .. }), "{name}: {e:?}")
                            }
                            Err(_) | Ok(_) => assert!(bytes.len() <= starling_sip::message::MAX_MESSAGE),
                        }
                    }
                }
            }
        });
    }

    proptest::proptest! {
        /// Random mixes of what nests or pairs in a header, repeated up to the size limit.
        #[test]
        fn random_mixes_in_headers(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec![
                    "\"", "\\", "<", ">", "(", ")", ";", "=", ",", "sip:", "a@b", " ", "?", "&", "%", "%2", "[", "]",
                    ":", "tag", "Digest ",
                ]),
                1..40,
            ),
            repeat in 1usize..20_000,
            header in proptest::sample::select(vec!["From", "To", "Contact", "Via", "Route", "Authorization"]),
        ) {
            let unit: String = pieces.concat();
            let value = unit.repeat(repeat.min(65_000 / unit.len()).max(1));
            let bytes = invite_with(header, &value);
            let outcome = on_small_stack(move || starling_sip::parse(&bytes).map(|m| m.to_bytes().len()));
            if let Ok(len) = outcome {
                proptest::prop_assert!(len <= 2 * starling_sip::message::MAX_MESSAGE);
            }
        }
    }
}
