//! Access control lists (`permit=`/`deny=`), as Asterisk's acl.c: rules apply in order and
//! the last one that matches decides. A rule applies to addresses of its own family (an
//! IPv4-mapped IPv6 address is IPv4). An address no rule matches is allowed — unless the list
//! has a catch-all of the other family (`deny=0.0.0.0/0.0.0.0`, `deny=::/0`): that is the
//! list's stance for every address, so `deny=0.0.0.0/0` + `permit=10.0.0.0/8` does not let
//! IPv6 in (Asterisk's acl.c does: its IPv4 rules are skipped for IPv6 sources).

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
        match (self.network, addr.to_canonical()) {
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

/// Whether `rules` let `addr` in (Asterisk's `ast_apply_ha`, with the other family's
/// catch-all as the default; see the module's text).
pub fn allows(rules: &[AclRule], addr: IpAddr) -> bool {
    if let Some(rule) = rules.iter().rev().find(|r| r.matches(addr)) {
        return rule.permit;
    }
    // Nothing of the address's own family matched (its own catch-all would have): the other
    // family's catch-all, if there is one, decides.
    rules.iter().rev().find(|r| r.prefix == 0).is_none_or(|r| r.permit)
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

    fn rules(list: &[(&str, bool)]) -> Vec<AclRule> {
        list.iter()
            .map(|(text, permit)| {
                let (network, prefix) = parse_network(text).unwrap();
                AclRule { permit: *permit, network, prefix }
            })
            .collect()
    }

    fn allowed(rules: &[AclRule], addr: &str) -> bool {
        allows(rules, addr.parse().unwrap())
    }

    #[test]
    fn each_family_is_allowed_or_denied_as_written() {
        let both = rules(&[("0.0.0.0/0.0.0.0", false), ("127.0.0.1", true), ("::/0", false), ("::1", true)]);
        assert!(allowed(&both, "127.0.0.1") && allowed(&both, "::1") && allowed(&both, "::ffff:127.0.0.1"));
        assert!(!allowed(&both, "10.0.0.1") && !allowed(&both, "2001:db8::1") && !allowed(&both, "::ffff:10.0.0.1"));
        // The same rules in another order (IPv6 first) mean the same.
        let swapped = rules(&[("::/0", false), ("::1", true), ("0.0.0.0/0", false), ("127.0.0.1", true)]);
        for addr in ["127.0.0.1", "::1", "10.0.0.1", "2001:db8::1"] {
            assert_eq!(allowed(&swapped, addr), allowed(&both, addr), "{addr}");
        }
    }

    #[test]
    fn a_rule_of_one_family_never_lets_the_other_through_by_default() {
        let lan_only = rules(&[("0.0.0.0/0.0.0.0", false), ("192.168.1.0/24", true)]);
        assert!(allowed(&lan_only, "192.168.1.20"));
        assert!(!allowed(&lan_only, "2001:db8::1"), "an IPv6 source is denied by the IPv4 catch-all");
        assert!(!allowed(&lan_only, "::1"));
        let v6_only = rules(&[("::/0", false), ("fd00::/8", true)]);
        assert!(allowed(&v6_only, "fd00::5") && !allowed(&v6_only, "10.0.0.1"));
        // Without a catch-all an address no rule matches is allowed, as in Asterisk.
        let block_one = rules(&[("10.0.0.0/8", false)]);
        assert!(!allowed(&block_one, "10.1.1.1") && allowed(&block_one, "192.168.1.1") && allowed(&block_one, "::1"));
        // An IPv6 rule does not apply to an IPv4-mapped address (Asterisk's acl.c).
        let v6_rule = rules(&[("::/0", true), ("::ffff:0:0/96", false)]);
        assert!(allowed(&v6_rule, "::ffff:10.0.0.1"));
    }
}
