//! Access control lists (`permit=`/`deny=`), as Asterisk's acl.c: rules apply in order and
//! the last one that matches decides; an address no rule matches is allowed.

use std::net::IpAddr;

/// One `permit=`/`deny=` rule, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclRule {
    pub permit: bool,
    pub network: IpAddr,
    pub prefix: u8,
}

impl AclRule {
    /// Whether `addr` is inside the rule's network.
    pub fn matches(&self, addr: IpAddr) -> bool {
        let addr = match (self.network, addr) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            _ => addr,
        };
        match (self.network, addr) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Whether `rules` let `addr` in (Asterisk's `ast_apply_ha`).
pub fn allows(rules: &[AclRule], addr: IpAddr) -> bool {
    rules.iter().rev().find(|r| r.matches(addr)).is_none_or(|r| r.permit)
}

/// `a.b.c.d[/prefix|/netmask]`.
pub fn parse_network(text: &str) -> Option<(IpAddr, u8)> {
    let (addr, mask) = match text.split_once('/') {
        Some((a, m)) => (a.trim(), Some(m.trim())),
        None => (text.trim(), None),
    };
    let addr: IpAddr = addr.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match mask {
        None => max,
        Some(m) if m.contains('.') => {
            let mask: std::net::Ipv4Addr = m.parse().ok()?;
            let bits = u32::from(mask);
            if bits.leading_ones() + bits.trailing_zeros() != 32 {
                return None;
            }
            bits.leading_ones() as u8
        }
        Some(m) => m.parse::<u8>().ok().filter(|p| *p <= max)?,
    };
    Some((addr, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_matching_rule_decides() {
        let rule = |text: &str, permit: bool| {
            let (network, prefix) = parse_network(text).unwrap();
            AclRule { permit, network, prefix }
        };
        let rules = [rule("0.0.0.0/0", false), rule("127.0.0.1/255.255.255.255", true), rule("10.0.0.0/8", true)];
        assert!(allows(&rules, "127.0.0.1".parse().unwrap()));
        assert!(allows(&rules, "10.1.2.3".parse().unwrap()));
        assert!(!allows(&rules, "192.168.1.1".parse().unwrap()));
        assert!(allows(&[], "192.168.1.1".parse().unwrap()));
        assert!(allows(&rules, "::ffff:10.0.0.1".parse().unwrap()));
        assert!(parse_network("10.0.0.0/255.0.255.0").is_none());
        assert!(parse_network("10.0.0.0/33").is_none());
    }
}
