//! Opus through libopus (`audiopus`): mono, at 8, 16 or 48 kHz, with in-band FEC and DTX as the
//! peer's fmtp asks (`useinbandfec`, `usedtx`), and loss concealment when a packet is missing.

use audiopus::coder::{Decoder, Encoder};
use audiopus::{Application, Bitrate, Channels, SampleRate};

/// libopus's `OPUS_SET_DTX_REQUEST`.
const OPUS_SET_DTX_REQUEST: i32 = 4016;

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

    /// The strongest frequency (10 Hz steps) by Goertzel power.
    fn dominant(samples: &[i16], rate: u32) -> f32 {
        let x: Vec<f32> = samples.iter().map(|s| f32::from(*s)).collect();
        (10..=300)
            .map(|i| i as f32 * 10.0)
            .map(|f| {
                let c = 2.0 * (2.0 * std::f32::consts::PI * f / rate as f32).cos();
                let (mut s1, mut s2) = (0.0f32, 0.0f32);
                for v in &x {
                    let s = v + c * s1 - s2;
                    s2 = s1;
                    s1 = s;
                }
                (f, s1 * s1 + s2 * s2 - c * s1 * s2)
            })
            .fold((0.0, 0.0), |best, (f, p)| if p > best.1 { (f, p) } else { best })
            .0
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
