//! Opus through libopus (`audiopus`): mono, at 8, 16 or 48 kHz, with in-band FEC, DTX and the
//! audio band as the peer's fmtp asks (`useinbandfec`, `usedtx`, `maxplaybackrate`), and loss
//! concealment when a packet is missing.

use audiopus::coder::{Decoder, Encoder};
use audiopus::{Application, Bitrate, Channels, SampleRate};

/// libopus's `OPUS_SET_DTX_REQUEST`.
const OPUS_SET_DTX_REQUEST: i32 = 4016;
/// libopus's `OPUS_SET_MAX_BANDWIDTH_REQUEST`, and its `OPUS_BANDWIDTH_*` values.
const OPUS_SET_MAX_BANDWIDTH_REQUEST: i32 = 4004;
const OPUS_BANDWIDTH_NARROWBAND: i32 = 1101;
const OPUS_BANDWIDTH_MEDIUMBAND: i32 = 1102;
const OPUS_BANDWIDTH_WIDEBAND: i32 = 1103;
const OPUS_BANDWIDTH_SUPERWIDEBAND: i32 = 1104;
const OPUS_BANDWIDTH_FULLBAND: i32 = 1105;

/// The widest audio band a receiver playing at `rate` Hz can use (RFC 7587 §6.1,
/// `maxplaybackrate`; as Asterisk's codec_opus maps it): 8 kHz narrowband, 12 kHz mediumband,
/// 16 kHz wideband, 24 kHz superwideband, above that fullband.
fn max_bandwidth(rate: u32) -> i32 {
    match rate {
        0..=8000 => OPUS_BANDWIDTH_NARROWBAND,
        8001..=12000 => OPUS_BANDWIDTH_MEDIUMBAND,
        12001..=16000 => OPUS_BANDWIDTH_WIDEBAND,
        16001..=24000 => OPUS_BANDWIDTH_SUPERWIDEBAND,
        _ => OPUS_BANDWIDTH_FULLBAND,
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpusError {
    #[error("Opus works at 8000, 12000, 16000, 24000 or 48000 Hz, not {0}")]
    Rate(u32),
    #[error("libopus: {0}")]
    Codec(#[from] audiopus::Error),
}

/// What the peer's `a=fmtp` for Opus says (RFC 7587 §6).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpusParams {
    pub useinbandfec: bool,
    pub usedtx: bool,
    pub maxplaybackrate: Option<u32>,
}

impl OpusParams {
    /// Reads `useinbandfec=1;maxplaybackrate=16000;stereo=0`.
    pub fn from_fmtp(fmtp: &str) -> OpusParams {
        let mut p = OpusParams::default();
        for (name, value) in fmtp.split(';').filter_map(|kv| kv.split_once('=')) {
            match name.trim().to_ascii_lowercase().as_str() {
                "useinbandfec" => p.useinbandfec = value.trim() == "1",
                "usedtx" => p.usedtx = value.trim() == "1",
                "maxplaybackrate" => p.maxplaybackrate = value.trim().parse().ok(),
                _ => {}
            }
        }
        p
    }
}

/// One leg's Opus encoder and decoder at one sample rate.
pub struct OpusCodec {
    encoder: Encoder,
    decoder: Decoder,
    rate: u32,
}

fn sample_rate(rate: u32) -> Result<SampleRate, OpusError> {
    Ok(match rate {
        8000 => SampleRate::Hz8000,
        12000 => SampleRate::Hz12000,
        16000 => SampleRate::Hz16000,
        24000 => SampleRate::Hz24000,
        48000 => SampleRate::Hz48000,
        other => return Err(OpusError::Rate(other)),
    })
}

impl OpusCodec {
    /// A mono VoIP codec at `rate` Hz.
    pub fn new(rate: u32, params: &OpusParams) -> Result<OpusCodec, OpusError> {
        let sr = sample_rate(rate)?;
        let mut encoder = Encoder::new(sr, Channels::Mono, Application::Voip)?;
        encoder.set_inband_fec(params.useinbandfec)?;
        if params.useinbandfec {
            encoder.set_packet_loss_perc(10)?;
        }
        encoder.set_encoder_ctl_request(OPUS_SET_DTX_REQUEST, i32::from(params.usedtx))?;
        if let Some(playback) = params.maxplaybackrate {
            // The far end plays no wider than this: spend no bits above it.
            encoder.set_encoder_ctl_request(OPUS_SET_MAX_BANDWIDTH_REQUEST, max_bandwidth(playback))?;
        }
        encoder.set_bitrate(Bitrate::BitsPerSecond(if rate <= 8000 { 16_000 } else { 24_000 }))?;
        let decoder = Decoder::new(sr, Channels::Mono)?;
        Ok(OpusCodec { encoder, decoder, rate })
    }

    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Encodes one frame (20 ms = rate / 50 samples) into `out`; returns the packet length.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, OpusError> {
        Ok(self.encoder.encode(pcm, out)?)
    }

    /// Decodes a packet into `out` (room for a 20 ms frame at least); `None` conceals a lost
    /// packet. Returns the number of samples written.
    pub fn decode(&mut self, packet: Option<&[u8]>, out: &mut [i16]) -> Result<usize, OpusError> {
        Ok(self.decoder.decode(packet, out, false)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, frequency: f32, samples: usize) -> Vec<i16> {
        (0..samples)
            .map(|n| (8000.0 * (2.0 * std::f32::consts::PI * frequency * n as f32 / rate as f32).sin()) as i16)
            .collect()
    }

    /// The energy of `samples` at `frequency` (Goertzel).
    fn power_at(samples: &[i16], rate: u32, frequency: f32) -> f32 {
        let c = 2.0 * (2.0 * std::f32::consts::PI * frequency / rate as f32).cos();
        let (mut s1, mut s2) = (0.0f32, 0.0f32);
        for v in samples {
            let s = f32::from(*v) + c * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        s1 * s1 + s2 * s2 - c * s1 * s2
    }

    /// The strongest frequency (10 Hz steps) by Goertzel power.
    fn dominant(samples: &[i16], rate: u32) -> f32 {
        (10..=300)
            .map(|i| i as f32 * 10.0)
            .map(|f| (f, power_at(samples, rate, f)))
            .fold((0.0, 0.0), |best, (f, p)| if p > best.1 { (f, p) } else { best })
            .0
    }

    /// `maxplaybackrate=8000`: a 6 kHz tone at 48 kHz is not sent (narrowband stops at 4 kHz);
    /// without it, it is.
    #[test]
    fn maxplaybackrate_narrows_the_encoded_band() {
        let rate = 48000;
        let frame = (rate / 50) as usize;
        let input: Vec<i16> = (0..frame * 50)
            .map(|n| {
                let t = n as f32 / rate as f32;
                (6000.0 * (2.0 * std::f32::consts::PI * 500.0 * t).sin()
                    + 6000.0 * (2.0 * std::f32::consts::PI * 6000.0 * t).sin()) as i16
            })
            .collect();
        let through = |params: &OpusParams| {
            let mut codec = OpusCodec::new(rate, params).unwrap();
            let (mut packet, mut pcm, mut output) = ([0u8; 1500], vec![0i16; frame], Vec::new());
            for chunk in input.chunks(frame) {
                let len = codec.encode(chunk, &mut packet).unwrap();
                let n = codec.decode(Some(&packet[..len]), &mut pcm).unwrap();
                output.extend_from_slice(&pcm[..n]);
            }
            let steady = &output[frame * 10..];
            power_at(steady, rate, 6000.0) / power_at(steady, rate, 500.0)
        };
        let full = through(&OpusParams::default());
        let narrow = through(&OpusParams::from_fmtp("maxplaybackrate=8000"));
        assert!(full > 0.1, "fullband keeps 6 kHz: ratio {full}");
        assert!(narrow < 0.01, "narrowband drops 6 kHz: ratio {narrow}");
        assert_eq!(
            [8000, 12000, 16000, 24000, 48000].map(max_bandwidth),
            [
                OPUS_BANDWIDTH_NARROWBAND,
                OPUS_BANDWIDTH_MEDIUMBAND,
                OPUS_BANDWIDTH_WIDEBAND,
                OPUS_BANDWIDTH_SUPERWIDEBAND,
                OPUS_BANDWIDTH_FULLBAND
            ]
        );
    }

    #[test]
    fn a_440_hz_tone_keeps_its_frequency_at_every_rate() {
        for rate in [8000u32, 16000, 48000] {
            let mut codec = OpusCodec::new(rate, &OpusParams { useinbandfec: true, ..Default::default() }).unwrap();
            let frame = (rate / 50) as usize;
            let input = tone(rate, 440.0, frame * 50);
            let mut output = Vec::new();
            let mut packet = [0u8; 1500];
            let mut pcm = vec![0i16; frame];
            for chunk in input.chunks(frame) {
                let len = codec.encode(chunk, &mut packet).unwrap();
                assert!(len > 0 && len < 200, "{len} bytes");
                let n = codec.decode(Some(&packet[..len]), &mut pcm).unwrap();
                output.extend_from_slice(&pcm[..n]);
            }
            // Skip the codec's start-up (a few frames of delay and ramp).
            let f = dominant(&output[frame * 10..], rate);
            assert!((f - 440.0).abs() <= 10.0, "{rate} Hz: dominant {f}");
        }
    }

    #[test]
    fn a_lost_packet_is_concealed_and_bad_rates_refused() {
        let mut codec = OpusCodec::new(8000, &OpusParams::default()).unwrap();
        let mut pcm = [0i16; 160];
        assert_eq!(codec.decode(None, &mut pcm).unwrap(), 160);
        assert!(matches!(OpusCodec::new(44100, &OpusParams::default()), Err(OpusError::Rate(44100))));
        assert_eq!(
            OpusParams::from_fmtp("useinbandfec=1; usedtx=1;maxplaybackrate=16000"),
            OpusParams { useinbandfec: true, usedtx: true, maxplaybackrate: Some(16000) }
        );
    }
}
