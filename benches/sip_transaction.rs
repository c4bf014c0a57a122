//! Transaction matching and the memory of idle transactions.
//!
//! Targets (issue 4): match a message to its transaction among 100,000 live ones at
//! ≥ 2,000,000 lookups/s; ≤ 2 KiB per idle server INVITE transaction (printed before the
//! benches run, measured with a counting allocator).

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use starling_sip::transaction::{Config, Endpoint, Transport};
use starling_sip::{parse, Response, SipMessage};

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

fn invite(i: usize) -> Vec<u8> {
    format!(
        "INVITE sip:600@192.168.1.10 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.168.1.{}:5062;branch=z9hG4bK-{i:08x}-a1b2c3d4;rport\r\n\
Max-Forwards: 70\r\nTo: <sip:600@192.168.1.10>\r\nFrom: \"Alice\" <sip:alice@192.168.1.10>;tag=f{i}\r\n\
Call-ID: {i}-3848276298220188511@192.168.1.50\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@192.168.1.50:5062>\r\n\
Content-Length: 0\r\n\r\n",
        i % 250
    )
    .into_bytes()
}

/// An endpoint with `n` server INVITE transactions, each answered 180 (idle, waiting).
fn endpoint_with(n: usize) -> Endpoint {
    let mut ep = Endpoint::new(Config { auto_trying: false, ..Config::default() });
    let now = Instant::now();
    let remote: SocketAddr = "192.168.1.50:5062".parse().unwrap();
    for i in 0..n {
        ep.handle(now, remote, Transport::Udp, &invite(i));
        while let Some(event) = ep.poll_event() {
            if let starling_sip::transaction::Event::Request { tx, request, .. } = event {
                let mut ringing = Response::to_request(&request, 180);
                ringing.set_to_tag("as5e3b1c2d");
                ep.send_response(now, tx, ringing);
            }
        }
        while ep.poll_transmit().is_some() {}
    }
    ep
}

fn memory_per_transaction() {
    let before = ALLOCATED.load(Ordering::Relaxed);
    let ep = endpoint_with(10_000);
    let after = ALLOCATED.load(Ordering::Relaxed);
    println!(
        "memory per idle server INVITE transaction (180 sent): {} bytes ({} live)",
        (after - before) / 10_000,
        ep.len()
    );
}

fn lookups(c: &mut Criterion) {
    memory_per_transaction();
    let ep = endpoint_with(100_000);
    let probes: Vec<_> = (0..1000)
        .map(|i| match parse(&invite(i * 97)).unwrap() {
            SipMessage::Request(r) => r,
            _ => unreachable!(),
        })
        .collect();
    let mut group = c.benchmark_group("sip_transaction");
    group.throughput(Throughput::Elements(probes.len() as u64));
    group.bench_function("match_request_among_100k", |b| {
        b.iter(|| probes.iter().filter(|r| ep.match_request(std::hint::black_box(r)).is_some()).count())
    });
    group.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);
