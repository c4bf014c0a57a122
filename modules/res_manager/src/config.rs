//! `manager.conf`: `[general]` and one section per user, as Asterisk reads it.

use std::net::IpAddr;
use std::time::Duration;

use starling_core::acl::{parse_network, AclRule};
use starling_core::config::{Config, ConfigErrors, Variable};
use starling_core::tracing;

/// Asterisk's event/permission classes, by bit.
pub const CLASSES: &[(&str, u32)] = &[
    ("system", 1 << 0),
    ("call", 1 << 1),
    ("log", 1 << 2),
    ("verbose", 1 << 3),
    ("command", 1 << 4),
    ("agent", 1 << 5),
    ("user", 1 << 6),
    ("config", 1 << 7),
    ("dtmf", 1 << 8),
    ("reporting", 1 << 9),
    ("cdr", 1 << 10),
    ("dialplan", 1 << 11),
    ("originate", 1 << 12),
    ("agi", 1 << 13),
    ("cc", 1 << 14),
    ("aoc", 1 << 15),
    ("test", 1 << 16),
    ("security", 1 << 17),
    ("message", 1 << 18),
];

pub const ALL: u32 = (1 << 19) - 1;

/// A class name's bit (`None` for an unknown name).
pub fn class_bit(name: &str) -> Option<u32> {
    CLASSES.iter().find(|(n, _)| n.eq_ignore_ascii_case(name.trim())).map(|(_, b)| *b)
}

/// `system,call,...` or `all` (empty or `none`: nothing).
pub fn parse_classes(text: &str) -> Result<u32, String> {
    let mut mask = 0;
    for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        mask |= match word.to_ascii_lowercase().as_str() {
            "all" => ALL,
            "none" => 0,
            other => class_bit(other).ok_or_else(|| format!("unknown class '{other}'"))?,
        };
    }
    Ok(mask)
}

/// A mask as Asterisk prints it (`system,call`, `<none>`).
pub fn class_names(mask: u32) -> String {
    if mask == 0 {
        return "<none>".into();
    }
    if mask == ALL {
        return "all".into();
    }
    CLASSES.iter().filter(|(_, b)| mask & b != 0).map(|(n, _)| *n).collect::<Vec<_>>().join(",")
}

/// One `[user]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub secret: String,
    pub read: u32,
    pub write: u32,
    pub acl: Vec<AclRule>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagerConf {
    pub enabled: bool,
    pub port: u16,
    pub bindaddr: IpAddr,
    /// A session that does not log in within this long is closed.
    pub authtimeout: Duration,
    /// At most this many sessions may be connected and not yet logged in; past it a new
    /// connection is closed at once (Asterisk's `authlimit`).
    pub authlimit: usize,
    /// A write to a client that blocks this long disconnects it.
    pub writetimeout: Duration,
    /// Publish VarSet events (they are many; off unless asked for).
    pub varset_events: bool,
    pub users: Vec<User>,
}

impl Default for ManagerConf {
    fn default() -> Self {
        ManagerConf {
            enabled: false,
            port: 5038,
            bindaddr: IpAddr::from([0, 0, 0, 0]),
            authtimeout: Duration::from_secs(30),
            authlimit: 50,
            writetimeout: Duration::from_millis(100),
            varset_events: false,
            users: Vec::new(),
        }
    }
}

fn parse_ms(var: &Variable) -> Result<Duration, starling_core::config::ConfigError> {
    var.parse::<u64>().map(Duration::from_millis)
}

impl ManagerConf {
    pub fn parse(config: &Config) -> Result<ManagerConf, ConfigErrors> {
        let mut conf = ManagerConf::default();
        let mut errors = ConfigErrors::default();
        for section in config.sections() {
            if section.name.eq_ignore_ascii_case("general") {
                for var in &section.variables {
                    let result = match var.name.to_ascii_lowercase().as_str() {
                        "enabled" => var.parse_bool().map(|b| conf.enabled = b),
                        "port" => var.parse::<u16>().map(|p| conf.port = p),
                        "bindaddr" => var.parse::<IpAddr>().map(|a| conf.bindaddr = a),
                        "authtimeout" => var.parse::<u64>().map(|s| conf.authtimeout = Duration::from_secs(s)),
                        "authlimit" => var.parse::<usize>().map(|n| conf.authlimit = n),
                        "writetimeout" => parse_ms(var).map(|d| conf.writetimeout = d),
                        "varsetevents" => var.parse_bool().map(|b| conf.varset_events = b),
                        // Accepted, not acted on: HTTP, TLS, display and debug options.
                        "webenabled" | "httptimeout" | "displayconnects" | "timestampevents" | "debug"
                        | "channelvars" | "allowmultiplelogin" | "tlsenable" | "tlsbindaddr" | "tlscertfile"
                        | "tlsprivatekey" | "block-sockets" => Ok(()),
                        other => {
                            tracing::warn!("{}: unknown manager.conf option '{other}' ignored", var.location);
                            Ok(())
                        }
                    };
                    if let Err(e) = result {
                        errors.push(e);
                    }
                }
                continue;
            }
            let mut user =
                User { name: section.name.clone(), secret: String::new(), read: 0, write: 0, acl: Vec::new() };
            for var in &section.variables {
                match var.name.to_ascii_lowercase().as_str() {
                    "secret" => user.secret = var.value.clone(),
                    "read" => match parse_classes(&var.value) {
                        Ok(mask) => user.read = mask,
                        Err(e) => errors.push(var.error(e)),
                    },
                    "write" => match parse_classes(&var.value) {
                        Ok(mask) => user.write = mask,
                        Err(e) => errors.push(var.error(e)),
                    },
                    "permit" | "deny" => match parse_network(&var.value) {
                        Some((network, prefix)) => {
                            user.acl.push(AclRule { permit: var.name.eq_ignore_ascii_case("permit"), network, prefix })
                        }
                        None => errors.push(var.error("expected address/prefix or address/netmask")),
                    },
                    "displayconnects" | "allowmultiplelogin" | "writetimeout" | "eventfilter" | "setvar" | "acl" => {}
                    other => tracing::warn!("{}: unknown manager.conf option '{other}' ignored", var.location),
                }
            }
            if user.secret.is_empty() {
                errors.push(starling_core::config::ConfigError::at(
                    &section.location,
                    format!("manager user '{}' has no secret", section.name),
                ));
            }
            conf.users.push(user);
        }
        errors.into_result(conf)
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_classes_and_errors() {
        let text =
            "[general]\nenabled=yes\nport=15038\nbindaddr=127.0.0.1\n\n[admin]\nsecret=s3cret\nread=system,call\n\
                    write=all\ndeny=0.0.0.0/0.0.0.0\npermit=127.0.0.1/255.255.255.255\n";
        let conf = ManagerConf::parse(&Config::parse_str("manager.conf", text).unwrap()).unwrap();
        assert!(conf.enabled);
        assert_eq!(conf.port, 15038);
        let admin = conf.user("admin").unwrap();
        assert_eq!(admin.read, 0b11);
        assert_eq!(admin.write, ALL);
        assert_eq!(class_names(admin.read), "system,call");
        assert!(starling_core::acl::allows(&admin.acl, "127.0.0.1".parse().unwrap()));
        assert!(!starling_core::acl::allows(&admin.acl, "10.0.0.1".parse().unwrap()));
        let bad = "[general]\nport=none\n[u]\nsecret=x\nread=system,bogus\n[nosecret]\nread=all\n";
        let err = ManagerConf::parse(&Config::parse_str("manager.conf", bad).unwrap()).unwrap_err().to_string();
        assert!(err.contains("manager.conf:2") && err.contains("manager.conf:5"), "{err}");
        assert!(err.contains("no secret"), "{err}");
    }
}
