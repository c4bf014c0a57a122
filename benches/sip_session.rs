//! The call state machine (`starling_sip::session::InviteSession`, issue 23): a whole call
//! between a UAC and a UAS session — INVITE, 180, 200, ACK, BYE, 200 — with every message
//! written to bytes and parsed again, as the wire would. No Endpoint, no sockets: what the
//! session itself costs a call. Also prints the memory of an answered, idle session.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use starling_sip::session::{InviteSession, SessionConfig, Transmit};
use starling_sip::{parse, HeaderName, Method, Request, SipMessage, Uri, Via};

struct Counting;
static ALLOCATED: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size() as isize, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SDP: &[u8] = b"v=0\r\no=- 1 1 IN IP4 192.168.1.50\r\ns=-\r\nc=IN IP4 192.168.1.50\r\nt=0 0\r\nm=audio 10000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";

fn invite(i: usize) -> Request {
    let mut r = Request::new(Method::Invite, Uri::parse("sip:600@192.168.1.10").unwrap());
    r.headers.push(HeaderName::Via, format!("SIP/2.0/UDP 192.168.1.50:5062;branch=z9hG4bK-{i:08x};rport"));
    r.headers.push(HeaderName::MaxForwards, "70");
    r.headers.push(HeaderName::From, format!("\"Alice\" <sip:alice@192.168.1.10>;tag=f{i}"));
    r.headers.push(HeaderName::To, "<sip:600@192.168.1.10>");
    r.headers.push(HeaderName::CallId, format!("{i}-3848276298220188511@192.168.1.50"));
    r.headers.push(HeaderName::CSeq, "102 INVITE");
    r.headers.push(HeaderName::Contact, "<sip:alice@192.168.1.50:5062>");
    r.headers.push(HeaderName::ContentType, "application/sdp");
    r.body = SDP.to_vec();
    r
}

fn wire(transmit: Transmit) -> SipMessage {
    let message = match transmit {
        Transmit::Request { request, .. } | Transmit::Ack { request, .. } => SipMessage::Request(request),
        Transmit::Response { response, .. } => SipMessage::Response(response),
    };
    parse(&message.to_bytes()).unwrap()
}

fn configs() -> (SessionConfig, SessionConfig) {
    let uac = SessionConfig {
        via: Via::parse("SIP/2.0/UDP 192.168.1.50:5062;rport").unwrap(),
        contact: "<sip:alice@192.168.1.50:5062>".into(),
        ..SessionConfig::default()
    };
    let uas = SessionConfig {
        via: Via::parse("SIP/2.0/UDP 192.168.1.10:5060;rport").unwrap(),
        contact: "<sip:600@192.168.1.10:5060>".into(),
        user_agent: "Starling PBX".into(),
        ..SessionConfig::default()
    };
    (uac, uas)
}

/// Passes every message of `from` to `to` (requests and responses alike).
fn pass(now: Instant, from: &mut InviteSession, to: &mut InviteSession) {
    while let Some(t) = from.poll_transmit() {
        match wire(t) {
            SipMessage::Request(r) => to.handle_request(now, r),
            SipMessage::Response(r) => to.handle_response(now, r),
        }
    }
    while from.poll_event().is_some() {}
}

/// An answered call (ACK received); returns both sides.
fn answered(i: usize, uac_config: &SessionConfig, uas_config: &SessionConfig) -> (InviteSession, InviteSession) {
    let now = Instant::now();
    let mut uac = InviteSession::uac(now, uac_config.clone(), invite(i));
    let Some(SipMessage::Request(inv)) = uac.poll_transmit().map(wire) else { unreachable!() };
    let mut uas = InviteSession::uas(now, uas_config.clone(), inv, "as5e3b1c2d");
    uas.ring(now);
    uas.answer(now, SDP.to_vec());
    pass(now, &mut uas, &mut uac);
    pass(now, &mut uac, &mut uas);
    (uac, uas)
}

fn memory_per_session() {
    let (uac_config, uas_config) = configs();
    let before = ALLOCATED.load(Ordering::Relaxed);
    let calls: Vec<_> = (0..1000).map(|i| answered(i, &uac_config, &uas_config).1).collect();
    let after = ALLOCATED.load(Ordering::Relaxed);
    println!("memory per answered UAS session (idle): {} bytes ({} live)", (after - before) / 1000, calls.len());
}

fn calls(c: &mut Criterion) {
    memory_per_session();
    let (uac_config, uas_config) = configs();
    let mut group = c.benchmark_group("session");
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function("call (INVITE 180 200 ACK BYE 200, through bytes)", |b| {
        b.iter(|| {
            i += 1;
            let (mut uac, mut uas) = answered(i, &uac_config, &uas_config);
            let now = Instant::now();
            uac.hangup(now);
            pass(now, &mut uac, &mut uas);
            pass(now, &mut uas, &mut uac);
            uas.state()
        })
    });
    group.finish();
}

criterion_group!(benches, calls);
criterion_main!(benches);
