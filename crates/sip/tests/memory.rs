//! Issue 25's budget: at most 4 KiB a subscription held, measured over 2,000 subscriptions.
//!
//! The heap is measured with glibc's `mallinfo2` (bytes in chunks in use, their headers
//! included), not with a counting `#[global_allocator]`: the workspace links std dynamically
//! (`-C prefer-dynamic`), so what std allocates inside libstd.so (`format!`, `to_string`)
//! bypasses a counting allocator while its frees do not. `mallinfo2` sees the whole process, so
//! this file holds this one test and nothing runs beside it.

use std::time::Instant;

use starling_sip::session::Transmit;
use starling_sip::subscription::{NotifyState, State, Subscription, SubscriptionConfig};
use starling_sip::{parse, Response, SipMessage};

fn heap_in_use() -> usize {
    // SAFETY: mallinfo2 only reads the allocator's counters.
    unsafe { libc::mallinfo2() }.uordblks
}

fn subscribe(i: usize) -> starling_sip::Request {
    let text = format!(
        "SUBSCRIBE sip:1001@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bKs{i}\r\n\
         From: <sip:1002@192.0.2.1>;tag=w{i}\r\nTo: <sip:1001@192.0.2.1>\r\nCall-ID: {i:08x}-a84b4c76e66710@192.0.2.7\r\n\
         CSeq: 1 SUBSCRIBE\r\nContact: <sip:1002@192.0.2.7:5062>\r\nEvent: dialog\r\nMax-Forwards: 70\r\n\
         Accept: application/dialog-info+xml\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n"
    );
    match parse(text.as_bytes()).unwrap() {
        SipMessage::Request(r) => r,
        SipMessage::Response(_) => unreachable!("a request"),
    }
}

/// What a subscription keeps once accepted and its first NOTIFY answered (the 200 and the
/// NOTIFY are taken and dropped, as the driver hands them to the transaction layer).
#[test]
fn a_subscription_holds_under_4_kib() {
    let now = Instant::now();
    let mut held: Vec<Subscription> = Vec::with_capacity(2000);
    let before = heap_in_use();
    for i in 0..2000 {
        let mut s = Subscription::uas(
            now,
            SubscriptionConfig::default(),
            subscribe(i),
            &format!("as{i:08x}"),
            "1001",
            NotifyState::new(0),
        );
        let mut notify = None;
        while let Some(t) = s.poll_transmit() {
            if let Transmit::Request { request, .. } = t {
                notify = Some(request);
            }
        }
        s.handle_response(now, Response::to_request(&notify.expect("the first NOTIFY"), 200));
        while s.poll_event().is_some() {}
        held.push(s);
    }
    // The subscriptions themselves sit in `held`'s buffer, reserved before the measure.
    let per = (heap_in_use() - before) / held.len() + std::mem::size_of::<Subscription>();
    println!("{per} bytes a subscription ({} inline)", std::mem::size_of::<Subscription>());
    assert!(per <= 4096, "{per} bytes a subscription");
    assert!(held.iter().all(|s| s.state() == State::Active));
}
