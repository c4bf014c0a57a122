//! What one direction of one call received: which packet indices came (a bitmap), how many
//! came twice, how many came after a later one.

/// Packet indices above this are taken for garbage (at 50 packets/s, 5.8 hours of one call).
pub const MAX_PACKET: u32 = 1 << 20;

/// One stream's arrivals.
#[derive(Clone, Debug, Default)]
pub struct Received {
    bits: Vec<u64>,
    /// Distinct packets.
    pub distinct: u32,
    pub duplicates: u32,
    /// Packets that arrived after one with a higher index (each counted once, when it came).
    pub reordered: u32,
    highest: Option<u32>,
}

/// What one arrival was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    New,
    Duplicate,
    /// New, but after a later packet.
    Late,
    /// An index beyond [`MAX_PACKET`].
    Bogus,
}

impl Received {
    /// How many of the packets `0..n` did not come.
    pub fn missing_below(&self, n: u32) -> u32 {
        let n = n.min(MAX_PACKET);
        let mut have = 0;
        for (w, word) in self.bits.iter().enumerate() {
            let base = w as u32 * 64;
            if base >= n {
                break;
            }
            let mask = if n - base >= 64 { u64::MAX } else { (1u64 << (n - base)) - 1 };
            have += (word & mask).count_ones();
        }
        n - have
    }

    pub fn record(&mut self, packet: u32) -> Arrival {
        if packet >= MAX_PACKET {
            return Arrival::Bogus;
        }
        let (word, bit) = ((packet / 64) as usize, packet % 64);
        if word >= self.bits.len() {
            self.bits.resize(word + 1 + word / 2, 0);
        }
        if self.bits[word] & (1 << bit) != 0 {
            self.duplicates += 1;
            return Arrival::Duplicate;
        }
        self.bits[word] |= 1 << bit;
        self.distinct += 1;
        match self.highest {
            Some(h) if packet < h => {
                self.reordered += 1;
                Arrival::Late
            }
            _ => {
                self.highest = Some(packet);
                Arrival::New
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_distinct_duplicates_and_late() {
        let mut r = Received::default();
        assert_eq!(r.record(0), Arrival::New);
        assert_eq!(r.record(2), Arrival::New);
        assert_eq!(r.record(1), Arrival::Late);
        assert_eq!(r.record(2), Arrival::Duplicate);
        assert_eq!(r.record(1), Arrival::Duplicate);
        assert_eq!(r.record(500), Arrival::New);
        assert_eq!(r.record(MAX_PACKET), Arrival::Bogus);
        assert_eq!((r.distinct, r.duplicates, r.reordered), (4, 2, 1));
        assert_eq!(r.missing_below(3), 0);
        assert_eq!(r.missing_below(4), 1);
        assert_eq!(r.missing_below(501), 497);
        assert_eq!(Received::default().missing_below(50), 50);
    }
}
