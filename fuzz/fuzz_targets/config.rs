//! Any bytes as a set of `.conf` files: the input's NUL bytes separate `extensions.conf` from
//! `f1.conf`, `f2.conf`... which it may `#include` (by name or glob, in any order or depth).
//! The configuration read is then taken as extensions.conf. Three included files at most: files
//! that all include `f*.conf` are read along every order of them (cycles are refused, not
//! repeats), which is n! readings — an administrator's own doing, as in Asterisk, and not what
//! this target looks for.
//!
//! Must hold: nothing panics; reading is the same twice; every value and section comes from a
//! file that was read, at a line that file has.
#![no_main]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use starling_core::config::{Config, MemSource};
use starling_dialplan::extensions::Dialplan;

fuzz_target!(|data: &[u8]| {
    let mut files = data.split(|b| *b == 0);
    let main = files.next().unwrap_or_default();
    let mut source = MemSource(HashMap::new());
    for (i, file) in files.enumerate().take(3) {
        source.0.insert(PathBuf::from(format!("/etc/starling/f{}.conf", i + 1)), file.to_vec());
    }
    let name = Path::new("/etc/starling/extensions.conf");
    source.0.insert(name.to_path_buf(), main.to_vec());
    let read = Config::parse_with(&source, name, main);
    assert_eq!(read, Config::parse_with(&source, name, main), "reading twice differs");
    let Ok(config) = read else { return };
    let lines: HashMap<String, usize> = config
        .files
        .iter()
        .map(|f| {
            let shown = f.strip_prefix("/etc/starling").unwrap_or(f).to_string_lossy().into_owned();
            (shown, source.0[f].split(|b| *b == b'\n').count())
        })
        .collect();
    for section in config.all_sections() {
        let locations = std::iter::once(&section.location).chain(section.variables.iter().map(|v| &v.location));
        for at in locations {
            let count = lines.get(&*at.file).unwrap_or_else(|| panic!("{at} is in no file read: {lines:?}"));
            assert!(at.line >= 1 && at.line as usize <= *count, "{at}: the file has {count} lines");
        }
    }
    let _ = Dialplan::from_config(&config).map(|d| d.show(None, None));
});
