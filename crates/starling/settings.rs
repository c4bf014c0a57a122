//! `starling.conf`: `[directories]` (relative to the folder that holds the file), `[options]`
//! and `[files]` (the control socket's name, mode and owner, as Asterisk's asterisk.conf).
//! User and group names are looked up in the system's user database as the file is read.

use std::path::{Path, PathBuf};

use starling_core::config::{Config, ConfigError, ConfigErrors};
use starling_core::{ControlSocket, Settings};

use crate::privileges::{lookup_group, lookup_user};

/// The defaults of an installed system, as Asterisk's are under /var.
const DEFAULT_RUNDIR: &str = "/var/run/starling";
const DEFAULT_LOGDIR: &str = "/var/log/starling";
const DEFAULT_DBDIR: &str = "/var/lib/starling";
const DEFAULT_SPOOLDIR: &str = "/var/spool/starling";
const DEFAULT_SOUNDSDIR: &str = "/usr/share/asterisk/sounds";

/// Reads `path`. `binary_dir` is the default `moddir`.
pub fn load(path: &Path, binary_dir: &Path) -> Result<Settings, ConfigErrors> {
    let config = Config::load(path)?;
    parse(&config, path, binary_dir)
}

pub fn parse(config: &Config, path: &Path, binary_dir: &Path) -> Result<Settings, ConfigErrors> {
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let resolve = |value: &str| -> PathBuf {
        let p = Path::new(value);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    let mut settings = Settings {
        config_file: path.to_path_buf(),
        etcdir: base.clone(),
        moddir: binary_dir.to_path_buf(),
        rundir: DEFAULT_RUNDIR.into(),
        logdir: DEFAULT_LOGDIR.into(),
        dbdir: DEFAULT_DBDIR.into(),
        spooldir: DEFAULT_SPOOLDIR.into(),
        soundsdir: DEFAULT_SOUNDSDIR.into(),
        maxcalls: 0,
        maxfiles: 0,
        systemname: String::new(),
        nameservers: Vec::new(),
        verbose: 0,
        debug: 0,
        live_dangerously: false,
        runuser: None,
        rungroup: None,
        ctl: ControlSocket::default(),
    };
    let mut errors = ConfigErrors::default();
    for section in config.sections() {
        match section.name.to_ascii_lowercase().as_str() {
            "directories" => {
                for var in &section.variables {
                    if var.value.is_empty() {
                        errors.push(var.error("expected a directory"));
                        continue;
                    }
                    // Asterisk spells these astetcdir, astmoddir...; both are accepted.
                    let key = var.name.to_ascii_lowercase();
                    let slot = match key.strip_prefix("ast").unwrap_or(&key) {
                        "etcdir" => &mut settings.etcdir,
                        "moddir" => &mut settings.moddir,
                        "rundir" => &mut settings.rundir,
                        "logdir" => &mut settings.logdir,
                        "dbdir" => &mut settings.dbdir,
                        "spooldir" => &mut settings.spooldir,
                        "soundsdir" => &mut settings.soundsdir,
                        _ => {
                            errors.push(ConfigError::at(
                                &var.location,
                                format!("unknown directory '{}': expected etcdir, moddir, rundir, logdir, dbdir, spooldir or soundsdir", var.name),
                            ));
                            continue;
                        }
                    };
                    *slot = resolve(&var.value);
                }
            }
            "options" => {
                for var in &section.variables {
                    let result = match var.name.to_ascii_lowercase().as_str() {
                        "maxcalls" => var.parse::<u32>().map(|v| settings.maxcalls = v),
                        "maxfiles" => var.parse::<u64>().map(|v| settings.maxfiles = v),
                        "verbose" => var.parse::<u8>().map(|v| settings.verbose = v),
                        "debug" => var.parse::<u8>().map(|v| settings.debug = v),
                        "live_dangerously" => var.parse_bool().map(|v| settings.live_dangerously = v),
                        "systemname" => {
                            settings.systemname = var.value.clone();
                            Ok(())
                        }
                        "nameserver" => match parse_nameserver(&var.value) {
                            Some(address) => {
                                settings.nameservers.push(address);
                                Ok(())
                            }
                            None => Err(var.error("expected an IP address, with a port or not (53)")),
                        },
                        "runuser" => user(var).map(|u| settings.runuser = u),
                        "rungroup" => group(var).map(|g| settings.rungroup = g),
                        _ => Err(ConfigError::at(
                            &var.location,
                            format!(
                                "unknown option '{}': expected maxcalls, maxfiles, verbose, debug, systemname, nameserver, live_dangerously, runuser or rungroup",
                                var.name
                            ),
                        )),
                    };
                    if let Err(e) = result {
                        errors.push(e);
                    }
                }
            }
            "files" => {
                for var in &section.variables {
                    let ctl = &mut settings.ctl;
                    let result = match var.name.to_ascii_lowercase().as_str() {
                        "astctl" => {
                            if var.value.is_empty() || var.value.contains('/') || var.value == ".." {
                                Err(var.error("expected a file name (the socket is made in rundir)"))
                            } else {
                                ctl.name = var.value.clone();
                                Ok(())
                            }
                        }
                        "astctlpermissions" => parse_mode(&var.value)
                            .map(|mode| ctl.permissions = mode)
                            .ok_or_else(|| var.error("expected an octal mode such as 0660")),
                        "astctlowner" => user(var).map(|u| ctl.owner = u),
                        "astctlgroup" => group(var).map(|g| ctl.group = g),
                        _ => Err(ConfigError::at(
                            &var.location,
                            format!(
                                "unknown option '{}': expected astctl, astctlpermissions, astctlowner or astctlgroup",
                                var.name
                            ),
                        )),
                    };
                    if let Err(e) = result {
                        errors.push(e);
                    }
                }
            }
            _ => errors.push(ConfigError::at(
                &section.location,
                format!("unknown section [{}]: expected [directories], [options] or [files]", section.name),
            )),
        }
    }
    errors.into_result(settings)
}

/// A user name (empty: none), looked up now: Asterisk's "No such user" for one the system
/// does not have.
fn user(var: &starling_core::config::Variable) -> Result<Option<starling_core::User>, ConfigError> {
    if var.value.is_empty() {
        return Ok(None);
    }
    match lookup_user(&var.value) {
        Ok(Some(user)) => Ok(Some(user)),
        Ok(None) => Err(var.error("no such user")),
        Err(e) => Err(var.error(format_args!("cannot look the user up: {e}"))),
    }
}

/// A group name (empty: none), looked up now.
fn group(var: &starling_core::config::Variable) -> Result<Option<starling_core::Group>, ConfigError> {
    if var.value.is_empty() {
        return Ok(None);
    }
    match lookup_group(&var.value) {
        Ok(Some(group)) => Ok(Some(group)),
        Ok(None) => Err(var.error("no such group")),
        Err(e) => Err(var.error(format_args!("cannot look the group up: {e}"))),
    }
}

/// `astctlpermissions`: octal digits, as Asterisk reads them (`%o`): `0660`, `660`, `0o660`;
/// at most 07777.
fn parse_mode(value: &str) -> Option<u32> {
    let digits = value.trim();
    let digits = digits.strip_prefix("0o").unwrap_or(digits);
    if digits.is_empty() || digits.len() > 5 {
        return None;
    }
    u32::from_str_radix(digits, 8).ok().filter(|&mode| mode <= 0o7777)
}

/// `nameserver = 127.0.0.1`, `127.0.0.1:5353`, `::1`, `[::1]:5353`.
fn parse_nameserver(value: &str) -> Option<std::net::SocketAddr> {
    let value = value.trim();
    value.parse().ok().or_else(|| {
        let ip: std::net::IpAddr = value.trim_start_matches('[').trim_end_matches(']').parse().ok()?;
        Some(std::net::SocketAddr::new(ip, 53))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_relative_to_the_conf() {
        let c = Config::parse_str(
            "starling.conf",
            "[directories]\nrundir = ../var/run\nastlogdir => /tmp/log\nmoddir=/opt/mods\n[options]\nmaxcalls=10\nverbose=3\nsystemname=node1\n",
        )
        .unwrap();
        let s = parse(&c, Path::new("/srv/etc/starling.conf"), Path::new("/usr/bin")).unwrap();
        assert_eq!(s.rundir, Path::new("/srv/etc/../var/run"));
        assert_eq!(s.logdir, Path::new("/tmp/log"));
        assert_eq!(s.moddir, Path::new("/opt/mods"));
        assert_eq!(s.etcdir, Path::new("/srv/etc"));
        assert_eq!((s.maxcalls, s.verbose, s.systemname.as_str()), (10, 3, "node1"));
    }

    #[test]
    fn moddir_defaults_to_the_binary_folder_and_errors_name_lines() {
        let c = Config::parse_str("starling.conf", "[directories]\n[options]\nmaxcalls=lots\ncolour=yes\n[extra]\n")
            .unwrap();
        let e = parse(&c, Path::new("/e/starling.conf"), Path::new("/bin")).unwrap_err().to_string();
        assert_eq!(
            e,
            "starling.conf:3: maxcalls 'lots': invalid digit found in string\n\
             starling.conf:4: unknown option 'colour': expected maxcalls, maxfiles, verbose, debug, systemname, nameserver, live_dangerously, runuser or rungroup\n\
             starling.conf:5: unknown section [extra]: expected [directories], [options] or [files]"
        );
        let c = Config::parse_str("starling.conf", "").unwrap();
        assert_eq!(parse(&c, Path::new("/e/starling.conf"), Path::new("/bin")).unwrap().moddir, Path::new("/bin"));
    }

    /// `nameserver` lines, in order; port 53 unless given; a host name is an error.
    #[test]
    fn nameservers_in_order() {
        let text = "[options]\nnameserver = 127.0.0.1:5353\nnameserver = ::1\nnameserver = [::1]:54\nnameserver = ns.example\n";
        let c = Config::parse_str("starling.conf", text).unwrap();
        let e = parse(&c, Path::new("/e/starling.conf"), Path::new("/bin")).unwrap_err().to_string();
        assert_eq!(e, "starling.conf:5: nameserver 'ns.example': expected an IP address, with a port or not (53)");
        let c = Config::parse_str("starling.conf", &text.replace("nameserver = ns.example\n", "")).unwrap();
        let s = parse(&c, Path::new("/e/starling.conf"), Path::new("/bin")).unwrap();
        let want: Vec<std::net::SocketAddr> =
            ["127.0.0.1:5353", "[::1]:53", "[::1]:54"].iter().map(|a| a.parse().unwrap()).collect();
        assert_eq!(s.nameservers, want);
    }

    /// `live_dangerously` is Asterisk's boolean, `no` unless set; anything else stops startup.
    #[test]
    fn live_dangerously_defaults_to_no() {
        let read = |text: &str| {
            let c = Config::parse_str("starling.conf", text).unwrap();
            parse(&c, Path::new("/e/starling.conf"), Path::new("/bin")).map_err(|e| e.to_string())
        };
        assert!(!read("[options]\n").unwrap().live_dangerously);
        assert!(read("[options]\nlive_dangerously = yes\n").unwrap().live_dangerously);
        assert!(!read("[options]\nlive_dangerously = no\n").unwrap().live_dangerously);
        assert_eq!(
            read("[options]\nlive_dangerously = maybe\n").unwrap_err(),
            "starling.conf:2: live_dangerously 'maybe': expected yes or no"
        );
    }

    /// runuser/rungroup and the [files] keys: looked up, defaults, and each bad line named.
    #[test]
    fn runuser_rungroup_and_the_control_socket() {
        let c = Config::parse_str("starling.conf", "[options]\n").unwrap();
        let s = parse(&c, Path::new("/e/starling.conf"), Path::new("/bin")).unwrap();
        assert_eq!((&s.runuser, &s.rungroup), (&None, &None));
        assert_eq!(s.ctl, ControlSocket { name: "starling.ctl".into(), permissions: 0o660, owner: None, group: None });
        assert_eq!(s.control_socket(), Path::new("/var/run/starling/starling.ctl"));

        let text = "[options]\nrunuser = root\nrungroup = root\n[files]\nastctl = pbx.ctl\nastctlpermissions = 0600\nastctlowner = root\nastctlgroup = root\n";
        let c = Config::parse_str("starling.conf", text).unwrap();
        let s = parse(&c, Path::new("/e/starling.conf"), Path::new("/bin")).unwrap();
        let root = starling_core::User { name: "root".into(), uid: 0, gid: 0 };
        let root_group = starling_core::Group { name: "root".into(), gid: 0 };
        assert_eq!((s.runuser.as_ref(), s.rungroup.as_ref()), (Some(&root), Some(&root_group)));
        assert_eq!(
            s.ctl,
            ControlSocket { name: "pbx.ctl".into(), permissions: 0o600, owner: Some(root), group: Some(root_group) }
        );
        assert_eq!(s.control_socket(), Path::new("/var/run/starling/pbx.ctl"));
        for (mode, want) in [("660", 0o660), ("0o640", 0o640), ("04770", 0o4770)] {
            let c = Config::parse_str("starling.conf", &format!("[files]\nastctlpermissions={mode}\n")).unwrap();
            assert_eq!(parse(&c, Path::new("/e/starling.conf"), Path::new("/bin")).unwrap().ctl.permissions, want);
        }

        let text = "[options]\nrunuser = no-such-user-starling\nrungroup = no-such-group-starling\n[files]\nastctlpermissions = 0689\nastctlpermissions = 17777\nastctlowner = no-such-user-starling\nastctlgroup = no-such-group-starling\nastctl = ../x.ctl\nastctlmode = 1\n";
        let c = Config::parse_str("starling.conf", text).unwrap();
        let e = parse(&c, Path::new("/e/starling.conf"), Path::new("/bin")).unwrap_err().to_string();
        assert_eq!(
            e,
            "starling.conf:2: runuser 'no-such-user-starling': no such user\n\
             starling.conf:3: rungroup 'no-such-group-starling': no such group\n\
             starling.conf:5: astctlpermissions '0689': expected an octal mode such as 0660\n\
             starling.conf:6: astctlpermissions '17777': expected an octal mode such as 0660\n\
             starling.conf:7: astctlowner 'no-such-user-starling': no such user\n\
             starling.conf:8: astctlgroup 'no-such-group-starling': no such group\n\
             starling.conf:9: astctl '../x.ctl': expected a file name (the socket is made in rundir)\n\
             starling.conf:10: unknown option 'astctlmode': expected astctl, astctlpermissions, astctlowner or astctlgroup"
        );
    }
}
