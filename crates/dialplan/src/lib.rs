//! The dialplan: what `extensions.conf` means, as Asterisk means it (step 2 of ARCHITECTURE.md's
//! call flow: "start the PBX on it in the context of the peer").
//!
//! - [`expr`]: `$[...]` expressions with Asterisk's operators and numeric/string rules.
//! - [`substitute`]: `${VAR}`, `${VAR:offset:length}`, `${FUNC(args)}`, `$[...]`, nested.
//! - [`timing`]: time conditions (`9:00-17:00,mon-fri,*,*`) for includes and GotoIfTime.
//! - [`extensions`]: extensions.conf: contexts, priorities, labels, hints, includes with time
//!   conditions, finding the extension for a call, `dialplan show`.
//! - [`pbx`]: the PBX loop on a channel (jumps, labels, Gosub, `i` and `h`, autofallthrough) and
//!   the runner the core starts channels with.
//! - [`pattern`]: extension patterns, `Match`/`CanMatch`/`MatchMore`, and Asterisk's sort order.
pub mod expr;
pub mod extensions;
pub mod matcher;
pub mod pattern;
pub mod pbx;
pub mod substitute;
pub mod timing;

/// Runs `f` on a thread with a stack of `bytes`, as small as the tests say the dialplan's
/// recursion needs at its limits; an overflow aborts the test binary, which fails the run.
/// The limits are measured in release builds (what ships, what CI tests); an unoptimised
/// build's frames are several times larger, so there the stack is too.
#[cfg(test)]
pub(crate) fn on_stack<T: Send + 'static>(bytes: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
    let bytes = if cfg!(debug_assertions) { bytes * 8 } else { bytes };
    std::thread::Builder::new().stack_size(bytes).spawn(f).expect("spawn a test thread").join().expect("no panic")
}
