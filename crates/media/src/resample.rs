//! Sample-rate conversion between the rates calls use (8, 16, 48 kHz): a polyphase
//! windowed-sinc filter for the rational ratio L/M, keeping its history across frames so a
//! stream converts without clicks at frame edges.

/// Converts one stream from `from` Hz to `to` Hz.
#[derive(Clone, Debug)]
pub struct Resampler {
    up: usize,
    down: usize,
    /// Filter taps at the upsampled rate, scaled by `up`.
    taps: Vec<f32>,
    /// The last input samples, oldest first (enough for the filter).
    history: Vec<f32>,
    /// Position of the next output in the upsampled stream, relative to `history`'s start.
    phase: usize,
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl Resampler {
    pub fn new(from: u32, to: u32) -> Resampler {
        let g = gcd(from as usize, to as usize).max(1);
        let (up, down) = (to as usize / g, from as usize / g);
        let factor = up.max(down);
        // Cut off a little below the lower Nyquist frequency, at the upsampled rate.
        let cutoff = 0.45 / factor as f32;
        let half = 12 * factor;
        let taps: Vec<f32> = (0..=2 * half)
            .map(|i| {
                let n = i as f32 - half as f32;
                let sinc = if n == 0.0 {
                    2.0 * cutoff
                } else {
                    (2.0 * std::f32::consts::PI * cutoff * n).sin() / (std::f32::consts::PI * n)
                };
                let window = 0.5 - 0.5 * (2.0 * std::f32::consts::PI * i as f32 / (2 * half) as f32).cos();
                sinc * window * up as f32
            })
            .collect();
        let keep = taps.len() / up + 1;
        Resampler { up, down, taps, history: vec![0.0; keep], phase: keep * up }
    }

    /// Whether this resampler changes anything.
    pub fn is_identity(&self) -> bool {
        self.up == self.down
    }

    /// Converts `input`, appending to `out`.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        if self.is_identity() {
            out.extend_from_slice(input);
            return;
        }
        self.history.extend(input.iter().map(|s| f32::from(*s)));
        let available = self.history.len() * self.up;
        let len = self.taps.len();
        while self.phase < available {
            // Output at upsampled position p: sum over input k with k*up <= p of h[p - k*up] x[k].
            let p = self.phase;
            let mut acc = 0.0f32;
            let first = (p + 1).saturating_sub(len).div_ceil(self.up);
            let mut k = p / self.up;
            loop {
                let t = p - k * self.up;
                if t >= len {
                    break;
                }
                acc += self.taps[t] * self.history[k];
                if k == first || k == 0 {
                    break;
                }
                k -= 1;
            }
            out.push(acc.round().clamp(-32768.0, 32767.0) as i16);
            self.phase += self.down;
        }
        // Keep what the filter still needs and shift the phase with it.
        let keep = len / self.up + 1;
        let drop = self.history.len().saturating_sub(keep);
        self.history.drain(..drop);
        self.phase -= drop * self.up;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, f: f32, n: usize) -> Vec<i16> {
        (0..n).map(|i| (10000.0 * (2.0 * std::f32::consts::PI * f * i as f32 / rate as f32).sin()) as i16).collect()
    }

    fn power_at(samples: &[i16], rate: u32, f: f32) -> f32 {
        let c = 2.0 * (2.0 * std::f32::consts::PI * f / rate as f32).cos();
        let (mut s1, mut s2) = (0.0f32, 0.0f32);
        for v in samples {
            let s = f32::from(*v) + c * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        (s1 * s1 + s2 * s2 - c * s1 * s2) / (samples.len() as f32).powi(2)
    }

    #[test]
    fn lengths_and_tones_survive_every_conversion() {
        for (from, to) in [(8000, 16000), (16000, 8000), (8000, 48000), (48000, 8000), (16000, 48000), (48000, 16000)] {
            let mut r = Resampler::new(from, to);
            let frame = from as usize / 50;
            let input = tone(from, 440.0, frame * 25);
            let mut out = Vec::new();
            for chunk in input.chunks(frame) {
                r.process(chunk, &mut out);
            }
            let expected = input.len() * to as usize / from as usize;
            assert!(out.len().abs_diff(expected) <= 2, "{from}->{to}: {} samples, expected {expected}", out.len());
            let settled = &out[out.len() / 4..];
            let p440 = power_at(settled, to, 440.0);
            let p1000 = power_at(settled, to, 1000.0);
            assert!(p440 > 100.0 * p1000, "{from}->{to}: 440 Hz is the tone ({p440} vs {p1000})");
            let peak = settled.iter().map(|s| s.unsigned_abs()).max().unwrap();
            assert!((9000..=11000).contains(&peak), "{from}->{to}: amplitude kept ({peak})");
        }
    }

    #[test]
    fn downsampling_removes_what_the_lower_rate_cannot_carry() {
        let mut r = Resampler::new(48000, 8000);
        let mut out = Vec::new();
        r.process(&tone(48000, 6000.0, 48000), &mut out);
        let peak = out[out.len() / 4..].iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!(peak < 500, "a 6 kHz tone does not alias into 8 kHz audio (peak {peak})");
        assert!(Resampler::new(8000, 8000).is_identity());
    }
}
