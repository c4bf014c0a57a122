//! starling-testing: for tests that need something of the machine: IPv6 (`ipv6`), io_uring (`io_uring`), the RTP
//! relay in the kernel (`kernel_relay`: root, Linux 6.6+, clang at build time), root (`root`).
//!
//! CI has all of them, so there such a test must run: a machine without the capability fails
//! the test, naming what is missing. A developer's machine that lacks one can opt out
//! explicitly with `STARLING_TEST_WITHOUT=ipv6,io_uring,...`: the test then prints one line,
//! `SKIPPED <test>: needs <capability> (<why>)`, and passes over it. Nothing else skips.

/// The environment variable listing the capabilities this machine opts out of.
pub const WITHOUT: &str = "STARLING_TEST_WITHOUT";

/// Whether `list` (the variable's value) names `capability`.
fn lists(list: &str, capability: &str) -> bool {
    list.split(',').any(|c| c.trim().eq_ignore_ascii_case(capability))
}

/// A test found `capability` missing (`why`): returns `true` (the caller returns at once) if
/// [`WITHOUT`] lists it, after printing the one line; else the test fails here.
#[track_caller]
pub fn missing(capability: &str, why: &str) -> bool {
    let list = std::env::var(WITHOUT).unwrap_or_default();
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    if lists(&list, capability) {
        eprintln!("SKIPPED {test}: needs {capability} ({why}); {WITHOUT}={list}");
        return true;
    }
    panic!("{test} needs {capability}: {why} (CI has it; opt out with {WITHOUT}={capability})");
}

/// [`missing`] when `result` is an error; its value otherwise.
#[track_caller]
pub fn needs<T, E: std::fmt::Display>(capability: &str, result: Result<T, E>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(e) => {
            missing(capability, &e.to_string());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_names_capabilities() {
        assert!(lists("ipv6,io_uring", "io_uring"));
        assert!(lists(" IPv6 ", "ipv6"));
        assert!(!lists("", "ipv6"));
        assert!(!lists("ipv6x", "ipv6"));
    }

    #[test]
    #[should_panic(expected = "needs a_capability_no_machine_has")]
    fn a_missing_capability_fails_unless_listed() {
        missing("a_capability_no_machine_has", "for the test");
    }
}
