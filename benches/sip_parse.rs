//! SIP message parsing: the hot path of every datagram chan_sip reads.
//!
//! Targets (issue 4): parse a typical ~900-byte INVITE with SDP at ≥ 250,000/s on one core;
//! parse + serialise a 200 OK at ≥ 150,000/s. `rsip` is measured on the same INVITE as the
//! baseline the issue names (it parses ~170,000/s untyped on this machine).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use starling_sip::{parse, MessageHeaders, SipMessage, StreamDecoder, StreamItem};

/// A typical softphone INVITE with SDP (906 bytes).
pub const INVITE: &str = "INVITE sip:600@192.168.1.10:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.168.1.50:5062;branch=z9hG4bK-524287-1---a1b2c3d4e5f60718;rport\r\n\
Max-Forwards: 70\r\n\
Contact: <sip:alice@192.168.1.50:5062;transport=UDP>\r\n\
To: <sip:600@192.168.1.10>\r\n\
From: \"Alice\" <sip:alice@192.168.1.10>;tag=9fxced76sl\r\n\
Call-ID: 3848276298220188511@192.168.1.50\r\n\
CSeq: 1 INVITE\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO, UPDATE\r\n\
Content-Type: application/sdp\r\n\
Supported: replaces, norefersub, timer\r\n\
User-Agent: Z 5.6.2 v2.10.20.2\r\n\
Allow-Events: presence, kpml, talk\r\n\
Content-Length: 337\r\n\
\r\n\
v=0\r\n\
o=Z 1700000000 1 IN IP4 192.168.1.50\r\n\
s=Z\r\n\
c=IN IP4 192.168.1.50\r\n\
t=0 0\r\n\
m=audio 8000 RTP/AVP 0 8 111 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 minptime=20; useinbandfec=1\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=sendrecv\r\n\
a=ptime:20\r\n\
a=rtcp-mux\r\n\
a=ssrc:1234567890 cname:alice@example.com\r\n\
a=x-note:padding-to-typical-size\r\n";

pub const OK: &str = "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 192.168.1.50:5062;branch=z9hG4bK-524287-1---a1b2c3d4e5f60718;rport=5062;received=192.168.1.50\r\n\
From: \"Alice\" <sip:alice@192.168.1.10>;tag=9fxced76sl\r\n\
To: <sip:600@192.168.1.10>;tag=as5e3b1c2d\r\n\
Call-ID: 3848276298220188511@192.168.1.50\r\n\
CSeq: 1 INVITE\r\n\
Server: Starling PBX 0.1.0\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, SUBSCRIBE, NOTIFY, INFO, PUBLISH, MESSAGE\r\n\
Supported: replaces, timer\r\n\
Contact: <sip:600@192.168.1.10:5060>\r\n\
Content-Length: 0\r\n\r\n";

fn parse_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("sip_parse");
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("invite_with_sdp", INVITE.len()), |b| {
        b.iter(|| parse(std::hint::black_box(INVITE.as_bytes())).unwrap())
    });
    group.bench_function("invite_then_read_transaction_keys", |b| {
        b.iter(|| {
            let SipMessage::Request(r) = parse(std::hint::black_box(INVITE.as_bytes())).unwrap() else {
                unreachable!()
            };
            (r.top_via().unwrap().branch().map(str::len), r.cseq().unwrap().seq)
        })
    });
    group.bench_function("ok_parse_and_serialize", |b| {
        b.iter(|| parse(std::hint::black_box(OK.as_bytes())).unwrap().to_bytes())
    });
    group.bench_function(BenchmarkId::new("rsip_invite_with_sdp", INVITE.len()), |b| {
        b.iter(|| rsip::SipMessage::try_from(std::hint::black_box(INVITE.as_bytes())).unwrap())
    });
    group.finish();
}

/// Frames `message` as a TCP connection reads it, `piece` bytes at a time (asking for a message
/// after every read, as chan_sip's connection task does).
fn frame_in_pieces(message: &[u8], piece: usize) -> usize {
    let mut decoder = StreamDecoder::new();
    let mut framed = 0;
    for chunk in message.chunks(piece) {
        decoder.push(chunk);
        while let Some(item) = decoder.next_item() {
            if let Ok(StreamItem::Message(_)) = item {
                framed += 1;
            }
        }
    }
    framed
}

/// An INVITE whose headers fill most of the stream cap (~16 KB: a long Route set, as a call
/// through several proxies carries), to show how framing grows with the head's size.
fn long_invite() -> String {
    let (head, body) = INVITE.split_once("\r\n\r\n").expect("the INVITE has a blank line");
    let mut text = head.to_owned();
    for i in 0..150 {
        text.push_str(&format!("\r\nRecord-Route: <sip:proxy{i:03}.example.com;lr;ftag=9fxced76sl;did=a1b.c2d3e4f5>"));
    }
    format!("{text}\r\n\r\n{body}")
}

/// Issue 20: framing a stream is linear in the bytes read, however small the reads.
fn stream_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("sip_stream");
    group.throughput(Throughput::Elements(1));
    for piece in [1, 16, 1460] {
        group.bench_function(BenchmarkId::new("invite_with_sdp_in_pieces_of", piece), |b| {
            b.iter(|| assert_eq!(frame_in_pieces(std::hint::black_box(INVITE.as_bytes()), piece), 1))
        });
    }
    let long = long_invite();
    for piece in [16, 1460] {
        group.bench_function(BenchmarkId::new(format!("invite_{}_bytes_in_pieces_of", long.len()), piece), |b| {
            b.iter(|| assert_eq!(frame_in_pieces(std::hint::black_box(long.as_bytes()), piece), 1))
        });
    }
    group.finish();
}

criterion_group!(benches, parse_benches, stream_benches);
criterion_main!(benches);
