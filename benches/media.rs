//! Media hot paths. Targets (issue 5): relay ≤ 1 µs of CPU per packet (parse, rewrite, hand
//! on), G.711 encode + decode of a 20 ms frame ≤ 100 ns. Issue 24: SRTP protect and unprotect of
//! a 160-byte payload < 2 µs each.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rtp_rs::RtpPacketBuilder;
use starling_media::g711;
use starling_media::relay::RelayLeg;

fn g711_frames(c: &mut Criterion) {
    let samples: Vec<i16> = (0..160).map(|i| ((i as f32 * 0.3).sin() * 12000.0) as i16).collect();
    let mut codes = [0u8; 160];
    let mut back = [0i16; 160];
    let mut group = c.benchmark_group("g711_20ms_frame");
    group.throughput(Throughput::Elements(1));
    group.bench_function("ulaw_encode_decode", |b| {
        b.iter(|| {
            g711::encode_ulaw(std::hint::black_box(&samples), &mut codes);
            g711::decode_ulaw(std::hint::black_box(&codes), &mut back);
            back[17]
        })
    });
    group.bench_function("alaw_encode_decode", |b| {
        b.iter(|| {
            g711::encode_alaw(std::hint::black_box(&samples), &mut codes);
            g711::decode_alaw(std::hint::black_box(&codes), &mut back);
            back[17]
        })
    });
    group.finish();
}

/// One 20 ms PCMU packet (12-byte header, 160 bytes of silence), sequence 1.
fn pcmu_packet() -> Vec<u8> {
    RtpPacketBuilder::new()
        .payload_type(0)
        .ssrc(0x1234)
        .sequence(1.into())
        .timestamp(160)
        .payload(&[0xd5; 160])
        .build()
        .unwrap()
}

fn relay(c: &mut Criterion) {
    let template = pcmu_packet();
    let mut group = c.benchmark_group("rtp_relay");
    group.throughput(Throughput::Elements(1));
    group.bench_function("same_stream_per_packet", |b| {
        let mut leg = RelayLeg::new();
        let mut packet = template.clone();
        b.iter(|| {
            leg.relay(std::hint::black_box(&mut packet)).unwrap();
            packet[2] ^= 1; // a different sequence number each time
        })
    });
    group.bench_function("rewriting_per_packet", |b| {
        let mut leg = RelayLeg::new();
        leg.relay(
            &mut RtpPacketBuilder::new()
                .payload_type(0)
                .ssrc(0x9999)
                .sequence(7.into())
                .timestamp(0)
                .payload(&[0; 160])
                .build()
                .unwrap(),
        )
        .unwrap();
        leg.map_payload_type(0, Some(8));
        let mut packet = template.clone();
        b.iter(|| {
            leg.relay(std::hint::black_box(&mut packet)).unwrap();
            packet[8..12].copy_from_slice(&0x1234u32.to_be_bytes());
        })
    });
    group.finish();
}

fn opus(c: &mut Criterion) {
    use starling_media::opus::{OpusCodec, OpusParams};
    let mut codec = OpusCodec::new(8000, &OpusParams { useinbandfec: true, ..Default::default() }).unwrap();
    let samples: Vec<i16> = (0..160).map(|i| ((i as f32 * 0.345).sin() * 9000.0) as i16).collect();
    let mut packet = [0u8; 1500];
    let mut group = c.benchmark_group("opus_20ms_8khz");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode", |b| b.iter(|| codec.encode(std::hint::black_box(&samples), &mut packet).unwrap()));
    let len = codec.encode(&samples, &mut packet).unwrap();
    let mut pcm = [0i16; 160];
    group.bench_function("decode", |b| {
        b.iter(|| codec.decode(Some(std::hint::black_box(&packet[..len])), &mut pcm).unwrap())
    });
    group.finish();
}

fn session_size(_: &mut Criterion) {
    use starling_media::session::{RtpSession, SessionConfig};
    println!(
        "size of one RtpSession (not decoding, queues empty): {} bytes; RelayLeg: {} bytes",
        std::mem::size_of::<RtpSession>() + SessionConfig::default().cname.len(),
        std::mem::size_of::<RelayLeg>()
    );
    let _ = RtpSession::new;
}

/// SRTP (issue 24): protect and unprotect of one 20 ms PCMU packet (12-byte header, 160-byte
/// payload), per suite. Unprotect runs a fresh sequence number each time (the replay window
/// refuses a packet seen), so each iteration protects one packet and unprotects it: the
/// `protect_unprotect` figure, minus `protect`, is unprotect's.
fn srtp(c: &mut Criterion) {
    use starling_media::srtp::{MasterKey, Srtp, Suite};
    let mut group = c.benchmark_group("srtp_160_byte_payload");
    group.throughput(Throughput::Elements(1));
    for suite in [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32, Suite::AeadAes128Gcm] {
        let ours = MasterKey::generate(suite, |b| b.fill(7));
        let theirs = MasterKey::generate(suite, |b| b.fill(9));
        let template = pcmu_packet();
        group.bench_function(format!("protect/{suite}"), |b| {
            let mut tx = Srtp::new(&ours, &theirs).unwrap();
            let mut seq = 1u16;
            let mut packet = Vec::with_capacity(256);
            b.iter(|| {
                packet.clear();
                packet.extend_from_slice(&template);
                seq = seq.wrapping_add(1);
                packet[2..4].copy_from_slice(&seq.to_be_bytes());
                tx.protect_rtp(std::hint::black_box(&mut packet)).unwrap();
            })
        });
        group.bench_function(format!("protect_unprotect/{suite}"), |b| {
            let mut tx = Srtp::new(&ours, &theirs).unwrap();
            let mut rx = Srtp::new(&theirs, &ours).unwrap();
            let mut seq = 1u16;
            let mut packet = Vec::with_capacity(256);
            b.iter(|| {
                packet.clear();
                packet.extend_from_slice(&template);
                seq = seq.wrapping_add(1);
                packet[2..4].copy_from_slice(&seq.to_be_bytes());
                tx.protect_rtp(&mut packet).unwrap();
                rx.unprotect_rtp(std::hint::black_box(&mut packet)).unwrap()
            })
        });
    }
    group.finish();
}

/// The native relay's own work per packet of an SRTP leg (issue 24): open with the incoming
/// leg's key, rewrite, seal with the outgoing leg's ([`RelayCrypto`]), in the relay's 2 kB
/// buffer, AES_CM_128_HMAC_SHA1_80 (what phones offer first). The phone's protecting of each
/// packet is set-up, not measured. Compare with `rtp_relay/same_stream_per_packet`.
fn srtp_relay(c: &mut Criterion) {
    use criterion::BatchSize;
    use starling_media::relay::{Opened, RelayCrypto};
    use starling_media::srtp::{MasterKey, Srtp, Suite};
    let suite = Suite::AesCm128HmacSha1_80;
    let key = |n: u8| MasterKey::generate(suite, |b| b.fill(n));
    let template = pcmu_packet();
    let mut group = c.benchmark_group("srtp_relay");
    group.throughput(Throughput::Elements(1));
    for (name, from, to) in
        [("srtp_to_srtp", true, true), ("srtp_to_plain", true, false), ("plain_to_srtp", false, true)]
    {
        group.bench_function(format!("{name}_per_packet"), |b| {
            let mut phone = Srtp::new(&key(1), &key(2)).unwrap();
            let crypto = RelayCrypto {
                from: from.then(|| Srtp::new(&key(2), &key(1)).unwrap().into_shared()),
                to: to.then(|| Srtp::new(&key(3), &key(4)).unwrap().into_shared()),
            };
            let mut leg = RelayLeg::new();
            let mut seq = 1u16;
            b.iter_batched_ref(
                || {
                    seq = seq.wrapping_add(1);
                    let mut packet = template.clone();
                    packet[2..4].copy_from_slice(&seq.to_be_bytes());
                    if from {
                        phone.protect_rtp(&mut packet).unwrap();
                    }
                    let mut buffer = [0u8; 2048];
                    buffer[..packet.len()].copy_from_slice(&packet);
                    (buffer, packet.len())
                },
                |(buffer, len)| {
                    let Ok(Opened::Rtp(len)) = crypto.open(&mut buffer[..*len]) else { panic!("opened") };
                    leg.relay(&mut buffer[..len]).unwrap();
                    crypto.seal(std::hint::black_box(buffer), len).unwrap()
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, session_size, g711_frames, relay, opus, srtp, srtp_relay);
criterion_main!(benches);
