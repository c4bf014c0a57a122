//! The RTP port allocator over `rtp.conf`'s `rtpstart`–`rtpend`: even ports for RTP, the odd
//! port above for RTCP, handed out round-robin (a port just freed is the last to be reused, so
//! late packets of an old call do not land in a new one), returned on close.

use std::collections::BTreeSet;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PortError {
    #[error("rtpstart {start} and rtpend {end} leave no even port with a port above it")]
    EmptyRange { start: u16, end: u16 },
    #[error("all {0} RTP port pairs of the range are in use")]
    Exhausted(usize),
}

/// Hands out RTP/RTCP port pairs. The caller binds them; if a bind fails (another program
/// holds the port) it asks again and the allocator has moved on.
#[derive(Debug)]
pub struct PortAllocator {
    first: u16,
    pairs: usize,
    next: usize,
    in_use: BTreeSet<u16>,
}

impl PortAllocator {
    /// The even ports `rtp` with `start <= rtp` and `rtp + 1 <= end` (Asterisk's defaults are
    /// 10000 and 20000).
    pub fn new(start: u16, end: u16) -> Result<PortAllocator, PortError> {
        let first = start.checked_add(start & 1).ok_or(PortError::EmptyRange { start, end })?;
        if first >= end {
            return Err(PortError::EmptyRange { start, end });
        }
        let pairs = usize::from((end - first - 1) / 2 + 1);
        Ok(PortAllocator { first, pairs, next: 0, in_use: BTreeSet::new() })
    }

    /// The next free even port (RTCP is it + 1).
    pub fn allocate(&mut self) -> Result<u16, PortError> {
        for _ in 0..self.pairs {
            let port = self.first + 2 * self.next as u16;
            self.next = (self.next + 1) % self.pairs;
            if self.in_use.insert(port) {
                return Ok(port);
            }
        }
        Err(PortError::Exhausted(self.pairs))
    }

    /// Gives a port back.
    pub fn release(&mut self, port: u16) {
        self.in_use.remove(&port);
    }

    pub fn in_use(&self) -> usize {
        self.in_use.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_ports_round_robin_and_exhaustion() {
        let mut a = PortAllocator::new(10001, 10008).unwrap();
        let got: Vec<u16> = (0..3).map(|_| a.allocate().unwrap()).collect();
        assert_eq!(got, [10002, 10004, 10006]);
        assert_eq!(a.allocate(), Err(PortError::Exhausted(3)));
        a.release(10004);
        assert_eq!(a.allocate(), Ok(10004));
        a.release(10002);
        a.release(10006);
        assert_eq!(a.allocate(), Ok(10006), "round robin: the next after the last one handed out");
        assert_eq!(a.in_use(), 2);
        assert_eq!(PortAllocator::new(20000, 20000).unwrap_err(), PortError::EmptyRange { start: 20000, end: 20000 });
        assert!(PortAllocator::new(65535, 65535).is_err());
        assert_eq!(PortAllocator::new(10000, 20000).unwrap().pairs, 5000);
    }
}
