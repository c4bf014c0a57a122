//! The relay allocates nothing per packet: counted with a global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use rtp_rs::RtpPacketBuilder;
use starling_media::relay::RelayLeg;

struct Counting;
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn relaying_allocates_nothing() {
    let mut packets: Vec<Vec<u8>> = (0..1000u16)
        .map(|i| {
            // Two far ends in turn, so the rewriting path runs too.
            let ssrc = if i < 500 { 0x1111 } else { 0x2222 };
            RtpPacketBuilder::new()
                .payload_type(0)
                .ssrc(ssrc)
                .sequence(i.into())
                .timestamp(u32::from(i) * 160)
                .payload(&[0xd5; 160])
                .build()
                .unwrap()
        })
        .collect();
    let mut leg = RelayLeg::new();
    leg.map_payload_type(0, Some(0));
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for p in packets.iter_mut() {
        leg.relay(p).unwrap();
    }
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    assert_eq!(after - before, 0, "allocations while relaying 1000 packets");
    assert_eq!(leg.packets, 1000);
}
