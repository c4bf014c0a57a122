//! Least privilege: `[options] runuser`/`rungroup` and the control socket's `[files]` keys,
//! as Asterisk's asterisk.c has them.
//!
//! The server starts as root, binds its ports and loads its modules (chan_sip binds its SIP
//! sockets and loads the relay's tc program on `lo`, which needs CAP_BPF and CAP_NET_ADMIN),
//! and only then [`drop_privileges`]: the state directories and what start-up wrote in them
//! go to the user, then the groups (`setgroups`/`initgroups`), the gid and the uid change for
//! every thread (glibc's set*id calls change all the threads of the process), real, effective
//! and saved alike, so no capability is left and none can be had back.
//!
//! No capability is kept: what the relay does after start-up needs none. The program and its
//! link stay attached through the file descriptors loaded as root, and inserting, reading and
//! deleting the entries of its map through the map's descriptor is checked against that
//! descriptor's mode alone (since Linux 6.5 `kernel.unprivileged_bpf_disabled` is checked when
//! a map is created or a program loaded, not on every bpf() call; the relay needs TCX, Linux
//! 6.6, anyway; tests/privileges.rs sees both legs of a call in the map with no capability
//! left). Were an insert refused, the leg would stay in the relay thread (`hand_over`).
//! Loading the relay again after the drop (an unload and load of chan_sip) fails, and chan_sip
//! relays in its threads, as it does wherever the program cannot be loaded. (Keeping a
//! capability would not be simple either: capset(2) sets the calling thread's alone, and the
//! relay threads are running by then.)

use std::ffi::CString;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use starling_core::{verbose, ControlSocket, Group, Settings, User};

use crate::Fatal;

/// Calls `lookup` with a growing buffer until it fits (the `*_r` functions' ERANGE).
fn with_buffer<T>(mut lookup: impl FnMut(&mut Vec<libc::c_char>) -> Result<Option<T>, i32>) -> io::Result<Option<T>> {
    let mut buffer = vec![0 as libc::c_char; 1024];
    loop {
        match lookup(&mut buffer) {
            Ok(found) => return Ok(found),
            Err(libc::ERANGE) if buffer.len() < 1 << 20 => buffer.resize(buffer.len() * 4, 0),
            Err(code) => return Err(io::Error::from_raw_os_error(code)),
        }
    }
}

/// The user `name` in the system's user database, `None` if there is none.
pub fn lookup_user(name: &str) -> io::Result<Option<User>> {
    let Ok(c_name) = CString::new(name) else { return Ok(None) };
    with_buffer(|buffer| {
        // SAFETY: getpwnam_r fills `entry` with pointers into `buffer`, both alive here.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let code =
            unsafe { libc::getpwnam_r(c_name.as_ptr(), &mut entry, buffer.as_mut_ptr(), buffer.len(), &mut found) };
        match (code, found.is_null()) {
            (0, true) => Ok(None),
            (0, false) => Ok(Some(User { name: name.to_owned(), uid: entry.pw_uid, gid: entry.pw_gid })),
            // Some C libraries say "not found" with these.
            (libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM, _) => Ok(None),
            (code, _) => Err(code),
        }
    })
}

/// The group `name` in the system's group database, `None` if there is none.
pub fn lookup_group(name: &str) -> io::Result<Option<Group>> {
    let Ok(c_name) = CString::new(name) else { return Ok(None) };
    with_buffer(|buffer| {
        // SAFETY: as in lookup_user, with getgrnam_r.
        let mut entry: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        let code =
            unsafe { libc::getgrnam_r(c_name.as_ptr(), &mut entry, buffer.as_mut_ptr(), buffer.len(), &mut found) };
        match (code, found.is_null()) {
            (0, true) => Ok(None),
            (0, false) => Ok(Some(Group { name: name.to_owned(), gid: entry.gr_gid })),
            (libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM, _) => Ok(None),
            (code, _) => Err(code),
        }
    })
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_encoded_bytes()).map_err(io::Error::other)
}

/// Gives the control socket its mode (`astctlpermissions`) and, where configured, its owner
/// and group (`astctlowner`, `astctlgroup`). Run after it is bound, and again after the drop
/// gave rundir's files to `runuser`.
pub fn set_control_socket_access(path: &Path, ctl: &ControlSocket) -> Result<(), Fatal> {
    let fail =
        |what: &str, e: io::Error| Fatal::resource(format!("control socket {}: cannot {what}: {e}", path.display()));
    if ctl.owner.is_some() || ctl.group.is_some() {
        let uid = ctl.owner.as_ref().map(|u| u.uid);
        let gid = ctl.group.as_ref().map(|g| g.gid);
        std::os::unix::fs::lchown(path, uid, gid).map_err(|e| fail("change its owner", e))?;
    }
    let c = c_path(path).map_err(|e| fail("change its mode", e))?;
    // SAFETY: chmod on a NUL-terminated path that lives across the call.
    if unsafe { libc::chmod(c.as_ptr(), ctl.permissions as libc::mode_t) } != 0 {
        return Err(fail("change its mode", io::Error::last_os_error()));
    }
    Ok(())
}

/// Gives `dir`, and everything under it that `from` owns, to `uid`:`gid`, not following
/// symbolic links: what start-up made as root there (the log files, the astdb and its
/// journal, the pid file, the control socket) stays the server's after the drop. Files of
/// other owners are left alone.
fn give_tree(dir: &Path, from: u32, uid: u32, gid: u32) -> io::Result<()> {
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.file_type().is_symlink() {
            continue;
        }
        if meta.uid() == from && (meta.uid(), meta.gid()) != (uid, gid) {
            std::os::unix::fs::lchown(&path, Some(uid), Some(gid))
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
        }
    }
    Ok(())
}

/// Switches to `runuser`/`rungroup` once start-up is done (see the module's doc). Nothing to
/// do without them. Started by another user than root: only that user (and its group) may
/// be asked for, as Asterisk says.
pub fn drop_privileges(settings: &Settings, dump_core: bool) -> Result<(), Fatal> {
    let (user, group) = (settings.runuser.as_ref(), settings.rungroup.as_ref());
    if user.is_none() && group.is_none() {
        return Ok(());
    }
    // SAFETY: plain getters.
    let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if euid != 0 {
        if let Some(user) = user.filter(|u| u.uid != euid) {
            return Err(Fatal::config(format!("started as nonroot, but runuser '{}' requested", user.name)));
        }
        if let Some(group) = group.filter(|g| g.gid != egid) {
            return Err(Fatal::config(format!("started as nonroot, but rungroup '{}' requested", group.name)));
        }
        return Ok(());
    }
    let uid = user.map_or(euid, |u| u.uid);
    let gid = group.map(|g| g.gid).or(user.map(|u| u.gid)).unwrap_or(egid);
    for (what, dir) in [
        ("rundir", &settings.rundir),
        ("logdir", &settings.logdir),
        ("dbdir", &settings.dbdir),
        ("spooldir", &settings.spooldir),
    ] {
        give_tree(dir, euid, uid, gid)
            .map_err(|e| Fatal::resource(format!("cannot give {what} {} to the runuser: {e}", dir.display())))?;
    }
    set_control_socket_access(&settings.control_socket(), &settings.ctl)?;

    let os = io::Error::last_os_error;
    // SAFETY: the set*id family, which glibc applies to every thread of the process.
    unsafe {
        if let Some(group) = group {
            // Only the rungroup: no supplementary groups (Asterisk's setgroups(0, NULL)).
            if libc::setgroups(0, std::ptr::null()) != 0 {
                return Err(Fatal::resource(format!("Unable to drop unneeded groups: {}", os())));
            }
            if libc::setgid(group.gid) != 0 {
                return Err(Fatal::resource(format!("Unable to setgid to {} ({}): {}", group.gid, group.name, os())));
            }
        } else if let Some(user) = user {
            if libc::setgid(user.gid) != 0 {
                return Err(Fatal::resource(format!("Unable to setgid to {}: {}", user.gid, os())));
            }
            let name = CString::new(user.name.as_str()).unwrap_or_default();
            if libc::initgroups(name.as_ptr(), user.gid) != 0 {
                return Err(Fatal::resource(format!("Unable to init groups for '{}': {}", user.name, os())));
            }
        }
        if let Some(user) = user {
            if libc::setuid(user.uid) != 0 {
                return Err(Fatal::resource(format!("Unable to setuid to {} ({}): {}", user.uid, user.name, os())));
            }
            // Real, effective and saved: the way back to root is closed.
            let (mut r, mut e, mut s) = (0, 0, 0);
            libc::getresuid(&mut r, &mut e, &mut s);
            if [r, e, s] != [uid; 3] || (uid != 0 && libc::setuid(0) == 0) {
                return Err(Fatal::resource(format!(
                    "Unable to setuid to {} ({}): root is still within reach",
                    uid, user.name
                )));
            }
        }
        // A process that changed its uid cannot dump core; -g asks for core dumps anyway.
        if dump_core && libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) != 0 {
            eprintln!("Unable to set the process for core dumps after changing to a non-root user. {}", os());
        }
    }
    if let Some(group) = group {
        verbose!(1, "Running as group '{}'", group.name);
    }
    if let Some(user) = user {
        verbose!(1, "Running as user '{}'", user.name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// root is in every user database; a name no system has is not.
    #[test]
    fn users_and_groups_are_looked_up() {
        let root = lookup_user("root").unwrap().unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(lookup_group("root").unwrap().unwrap().gid, 0);
        assert_eq!(lookup_user("no-such-user-starling").unwrap(), None);
        assert_eq!(lookup_group("no-such-group-starling").unwrap(), None);
        assert_eq!(lookup_user("nul\0inside").unwrap(), None);
    }

    /// The control socket gets the configured mode whatever the umask gave it.
    #[test]
    fn the_control_socket_gets_its_mode() {
        let dir = std::env::temp_dir().join(format!("starling-ctl-mode-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.ctl");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        for mode in [0o660, 0o600, 0o666] {
            let ctl = ControlSocket { permissions: mode, ..ControlSocket::default() };
            set_control_socket_access(&path, &ctl).unwrap();
            assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, mode);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
