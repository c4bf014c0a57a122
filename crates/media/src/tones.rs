//! Call-progress tones in indications.conf's syntax (`ring = 440+480/2000,0/4000`), a
//! generator of their audio at 8 kHz, and the built-in tones of a few countries.
//!
//! A tone is a list of parts played in a loop: `f1[+f2]/ms` two tones added, `f1*f2/ms` one
//! modulated by the other, `0/ms` silence; a leading `!` plays the list once. A part with no
//! `/ms` lasts for ever.

#[derive(Clone, Debug, PartialEq)]
pub struct TonePart {
    pub frequencies: (u32, u32),
    pub modulate: bool,
    /// Milliseconds; `None` for ever.
    pub duration: Option<u32>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tone {
    pub parts: Vec<TonePart>,
    pub once: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad tone part '{0}': expected f1[+f2|*f2][/ms]")]
pub struct ToneError(pub String);

impl Tone {
    pub fn parse(spec: &str) -> Result<Tone, ToneError> {
        let spec = spec.trim();
        let (once, spec) = match spec.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, spec),
        };
        let mut parts = Vec::new();
        for raw in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = || ToneError(raw.to_owned());
            let raw_part = raw.strip_prefix('!').unwrap_or(raw);
            let (freqs, duration) = match raw_part.split_once('/') {
                Some((f, d)) => (f, Some(d.trim().parse::<u32>().map_err(|_| bad())?)),
                None => (raw_part, None),
            };
            let (modulate, (a, b)) = if let Some(pair) = freqs.split_once('*') {
                (true, pair)
            } else {
                (false, freqs.split_once('+').unwrap_or((freqs, "0")))
            };
            let a = a.trim().parse::<u32>().map_err(|_| bad())?;
            let b = b.trim().parse::<u32>().map_err(|_| bad())?;
            if a > 4000 || b > 4000 {
                return Err(bad());
            }
            parts.push(TonePart { frequencies: (a, b), modulate, duration });
        }
        if parts.is_empty() {
            return Err(ToneError(spec.to_owned()));
        }
        Ok(Tone { parts, once })
    }
}

/// Plays a [`Tone`] as 8 kHz samples, frame by frame.
pub struct ToneGenerator {
    tone: Tone,
    part: usize,
    /// Samples played of the current part.
    at: u64,
    done: bool,
}

const RATE: f64 = 8000.0;
const AMPLITUDE: f64 = 4000.0; // about -16 dBm0 per tone

impl ToneGenerator {
    pub fn new(tone: Tone) -> ToneGenerator {
        ToneGenerator { tone, part: 0, at: 0, done: false }
    }

    /// Fills `out`; returns false once a `!` tone has finished (the rest is silence).
    pub fn fill(&mut self, out: &mut [i16]) -> bool {
        for sample in out.iter_mut() {
            if self.done {
                *sample = 0;
                continue;
            }
            let part = &self.tone.parts[self.part];
            let t = self.at as f64 / RATE;
            let (f1, f2) = (f64::from(part.frequencies.0), f64::from(part.frequencies.1));
            let w = |f: f64| (2.0 * std::f64::consts::PI * f * t).sin();
            let value = match (part.modulate, f1, f2) {
                (_, 0.0, 0.0) => 0.0,
                (true, _, _) => AMPLITUDE * w(f1) * (0.5 + 0.5 * w(f2)),
                (false, _, 0.0) => AMPLITUDE * w(f1),
                (false, _, _) => AMPLITUDE * (w(f1) + w(f2)),
            };
            *sample = value as i16;
            self.at += 1;
            if let Some(ms) = part.duration {
                if self.at >= u64::from(ms) * 8 {
                    self.at = 0;
                    self.part += 1;
                    if self.part == self.tone.parts.len() {
                        self.part = 0;
                        self.done = self.tone.once;
                    }
                }
            }
        }
        !self.done
    }
}

/// A country's tones, as indications.conf's sample has them.
#[derive(Clone, Debug)]
pub struct CountryTones {
    pub country: &'static str,
    pub description: &'static str,
    pub dial: &'static str,
    pub ring: &'static str,
    pub busy: &'static str,
    pub congestion: &'static str,
    pub callwaiting: &'static str,
}

/// The built-in countries (Asterisk's indications.conf.sample values).
pub const COUNTRIES: &[CountryTones] = &[
    CountryTones {
        country: "us",
        description: "United States / North America",
        dial: "350+440",
        ring: "440+480/2000,0/4000",
        busy: "480+620/500,0/500",
        congestion: "480+620/250,0/250",
        callwaiting: "440/300,0/10000",
    },
    CountryTones {
        country: "uk",
        description: "United Kingdom",
        dial: "350+440",
        ring: "400+450/400,0/200,400+450/400,0/2000",
        busy: "400/375,0/375",
        congestion: "400/400,0/350,400/225,0/525",
        callwaiting: "400/100,0/4000",
    },
    CountryTones {
        country: "de",
        description: "Germany",
        dial: "425",
        ring: "425/1000,0/4000",
        busy: "425/480,0/480",
        congestion: "425/240,0/240",
        callwaiting: "!425/200,!0/200,!425/200,!0/5000,!425/200,!0/200,!425/200,!0/5000,!425/200,!0/200,!425/200,!0/5000,!425/200,!0/200,!425/200,!0/5000,!425/200,!0/200,!425/200,0",
    },
    CountryTones {
        country: "fr",
        description: "France",
        dial: "440",
        ring: "440/1500,0/3500",
        busy: "440/500,0/500",
        congestion: "440/250,0/250",
        callwaiting: "440/300,0/10000",
    },
];

/// A built-in country by its code.
pub fn country(code: &str) -> Option<&'static CountryTones> {
    COUNTRIES.iter().find(|c| c.country.eq_ignore_ascii_case(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_indications_syntax() {
        let ring = Tone::parse("440+480/2000,0/4000").unwrap();
        assert_eq!(ring.parts.len(), 2);
        assert_eq!(ring.parts[0], TonePart { frequencies: (440, 480), modulate: false, duration: Some(2000) });
        assert_eq!(ring.parts[1].frequencies, (0, 0));
        assert!(!ring.once);
        assert!(Tone::parse("!950/330,!1400/330,!1800/330,0").unwrap().once);
        assert!(Tone::parse("425*25/400").unwrap().parts[0].modulate);
        assert!(Tone::parse("440/x").is_err());
        assert!(Tone::parse("").is_err());
        for c in COUNTRIES {
            for spec in [c.dial, c.ring, c.busy, c.congestion, c.callwaiting] {
                Tone::parse(spec).unwrap_or_else(|e| panic!("{}: {e}", c.country));
            }
        }
    }

    #[test]
    fn busy_tone_cadence_at_8khz() {
        let mut g = ToneGenerator::new(Tone::parse(country("us").unwrap().busy).unwrap());
        let mut second = vec![0i16; 8000];
        assert!(g.fill(&mut second));
        let loud = |range: std::ops::Range<usize>| second[range].iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!(loud(0..4000) > 3000, "on for 500 ms");
        assert_eq!(loud(4000..8000), 0, "off for 500 ms");
        let mut once = ToneGenerator::new(Tone::parse("!440/100").unwrap());
        let mut frame = vec![0i16; 1600];
        assert!(!once.fill(&mut frame), "a ! tone ends");
        assert!(frame[800..].iter().all(|s| *s == 0));
    }
}
