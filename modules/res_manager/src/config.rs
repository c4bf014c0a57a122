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
    /// `tlsenable`, `tlsbindaddr` (`bindaddr`, port 5039), `tlscertfile`, `tlsprivatekey` and
    /// the other `tls*` keys Asterisk's tcptls.c reads: the same protocol over TLS, on a
    /// listener of its own beside the plain one.
    pub tls: starling_tls::TlsConf,
    pub users: Vec<User>,
}

/// The port of the manager over TLS when `tlsbindaddr` names none (Asterisk's
/// `DEFAULT_MANAGER_TLS_PORT`).
pub const DEFAULT_MANAGER_TLS_PORT: u16 = 5039;

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
            tls: starling_tls::TlsConf::default(),
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
                    if let Some(result) = conf.tls.key(var) {
                        if let Err(e) = result {
                            errors.push(e);
                        }
                        continue;
                    }
                    let result = match var.name.to_ascii_lowercase().as_str() {
                        "enabled" => var.parse_bool().map(|b| conf.enabled = b),
                        "port" => var.parse::<u16>().map(|p| conf.port = p),
                        "bindaddr" => var.parse::<IpAddr>().map(|a| conf.bindaddr = a),
                        "authtimeout" => var.parse::<u64>().map(|s| conf.authtimeout = Duration::from_secs(s)),
                        "authlimit" => var.parse::<usize>().map(|n| conf.authlimit = n),
                        "writetimeout" => parse_ms(var).map(|d| conf.writetimeout = d),
                        "varsetevents" => var.parse_bool().map(|b| conf.varset_events = b),
                        // Accepted, not acted on: HTTP, display and debug options.
                        "webenabled" | "httptimeout" | "displayconnects" | "timestampevents" | "debug"
                        | "channelvars" | "allowmultiplelogin" | "block-sockets" => Ok(()),
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
        // The files are read now, so that a certificate that cannot be used stops a load or a
        // reload at its line (the listener makes its configuration from them again).
        if conf.enabled && conf.tls.enabled() {
            if let Err(e) = conf.tls.server_config() {
                errors.push(e);
            }
        }
        errors.into_result(conf)
    }

    /// Where the manager listens for TLS: `tlsbindaddr` (port 5039 unless it names one), else
    /// `bindaddr:5039`; `None` unless both `enabled` and `tlsenable` are yes.
    pub fn tls_address(&self) -> Option<std::net::SocketAddr> {
        self.tls.address(self.bindaddr, DEFAULT_MANAGER_TLS_PORT).filter(|_| self.enabled)
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

    #[test]
    fn tls_keys_listen_on_5039_beside_the_plain_port() {
        let parse = |text: &str| ManagerConf::parse(&Config::parse_str("manager.conf", text).unwrap());
        let conf = parse("[general]\nenabled=yes\nbindaddr=127.0.0.1\n").unwrap();
        assert_eq!(conf.tls_address(), None, "tlsenable defaults to no");
        let conf = parse("[general]\nenabled=no\ntlsenable=yes\ntlscertfile=/k/a.pem\n").unwrap();
        assert_eq!(conf.tls_address(), None, "enabled=no: no listener at all");
        // Unreadable files are the parse's errors, at their line.
        let err = parse("[general]\nenabled=yes\nbindaddr=127.0.0.1\ntlsenable=yes\ntlscertfile=/nonexistent/a.pem\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("manager.conf:5: tlscertfile '/nonexistent/a.pem': cannot read it"), "{err}");
        let err = parse("[general]\nenabled=yes\ntlsenable=yes\n").unwrap_err().to_string();
        assert_eq!(err, "manager.conf:3: tlsenable 'yes': needs tlscertfile");
        let err = parse("[general]\ntlsbindaddr=somewhere\ntlsenable=perhaps\n").unwrap_err().to_string();
        assert!(err.contains("manager.conf:2: tlsbindaddr") && err.contains("manager.conf:3: tlsenable"), "{err}");
        let mut conf = parse("[general]\nenabled=yes\nbindaddr=127.0.0.1\ntlsbindaddr=127.0.0.2\n").unwrap();
        conf.tls.enable = conf.tls.certfile.clone().or(Some(starling_tls::Setting {
            value: "yes".into(),
            location: starling_core::config::Location { file: "manager.conf".into(), line: 1 },
        }));
        assert_eq!(conf.tls_address(), Some("127.0.0.2:5039".parse().unwrap()), "tlsbindaddr without a port: 5039");
        conf.tls.bindaddr = None;
        assert_eq!(conf.tls_address(), Some("127.0.0.1:5039".parse().unwrap()), "no tlsbindaddr: bindaddr:5039");
    }
}
