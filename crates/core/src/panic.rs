//! Panics: contained where one call's work is done, loud and fatal where the whole process
//! depends on the part that panicked (INTERFACE.md, exit code 70).
//!
//! - [`install_hook`] wraps std's hook: a panic nobody contains is logged at ERROR through
//!   the logger (thread, message, location), so it reaches the log files of a daemon, and
//!   std's hook writes it to standard error unless a console shows the log there already.
//! - [`catch`] and [`catch_future`] are the boundaries around one call's work (a dialplan
//!   application, a function, chan_sip's call task): inside them the hook only notes the
//!   panic, and the boundary gets it as a [`PanicReport`] to log once with the channel's name
//!   and to end that call the way any failed call ends.
//! - [`critical`] and [`critical_task`] wrap a thread or task Starling cannot serve without (the
//!   SIP monitor, the RTP relay, a CDR writer, the manager and control listeners): a panic there
//!   is logged through the logger and to standard error, and the process exits with
//!   [`EXIT_SOFTWARE`] so the service manager starts it again. Asterisk has no such boundary (a
//!   crash there takes the process down); a process left up but no longer serving SIP is worse.
//!
//! This works across the module boundary because there is one `std` (prefer-dynamic) and one
//! core: the hook and the thread-locals below are the same for the binary and every module.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The exit code after a panic in a part Starling cannot serve without (`EX_SOFTWARE`).
pub const EXIT_SOFTWARE: i32 = 70;

/// What a panic said, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PanicReport {
    pub thread: String,
    pub message: String,
    /// `file:line:column`, or empty when the hook was not installed.
    pub location: String,
}

impl std::fmt::Display for PanicReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "'{}'", self.message)?;
        if !self.location.is_empty() {
            write!(f, " at {}", self.location)?;
        }
        write!(f, " (thread '{}')", self.thread)
    }
}

fn payload_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}

fn thread_name() -> String {
    std::thread::current().name().unwrap_or("<unnamed>").to_owned()
}

thread_local! {
    /// Boundaries this thread is inside: the hook leaves the logging to the innermost.
    static CONTAINED: Cell<u32> = const { Cell::new(0) };
    /// The last panic the hook noted for a boundary.
    static NOTED: RefCell<Option<PanicReport>> = const { RefCell::new(None) };
}

/// Installs the hook (once; later calls do nothing). Call it before any thread starts.
pub fn install_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // std's own (or a test harness's): still used where no console shows the log, so that
        // standard error has it too (a daemon's, a unit test's).
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let report = PanicReport {
                thread: thread_name(),
                message: payload_message(info.payload()),
                location: info.location().map(|l| l.to_string()).unwrap_or_default(),
            };
            if CONTAINED.with(Cell::get) > 0 {
                NOTED.with(|n| *n.borrow_mut() = Some(report));
            } else {
                crate::tracing::error!("Panic {report}");
                if !crate::logger::has_console() {
                    previous(info);
                }
            }
        }));
    });
}

/// Runs `f`; a panic inside it comes back as `Err` (and the hook does not log it: the caller
/// does, with what it knows, e.g. the channel's name).
pub fn catch<R>(f: impl FnOnce() -> R) -> Result<R, PanicReport> {
    CONTAINED.with(|c| c.set(c.get() + 1));
    let result = std::panic::catch_unwind(AssertUnwindSafe(f));
    CONTAINED.with(|c| c.set(c.get() - 1));
    result.map_err(|payload| {
        NOTED.with(|n| n.borrow_mut().take()).unwrap_or_else(|| PanicReport {
            thread: thread_name(),
            message: payload_message(payload.as_ref()),
            location: String::new(),
        })
    })
}

/// A future that gives a panic of the future it wraps as `Err` (see [`catch_future`]).
pub struct CatchUnwind<F> {
    inner: Option<Pin<Box<F>>>,
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, PanicReport>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(inner) = self.inner.as_mut() else { return Poll::Pending };
        match catch(|| inner.as_mut().poll(cx)) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(report) => {
                // Never polled again; what it held is dropped now, not with the wrapper.
                self.inner = None;
                Poll::Ready(Err(report))
            }
        }
    }
}

/// [`catch`] for a future: every poll of `future` runs inside the boundary.
pub fn catch_future<F: Future>(future: F) -> CatchUnwind<F> {
    CatchUnwind { inner: Some(Box::pin(future)) }
}

/// Logs that `part` stopped with `report` (through the logger and to standard error) and ends
/// the process with [`EXIT_SOFTWARE`].
pub fn critical_failure(part: &str, report: &PanicReport) -> ! {
    let line =
        format!("{part} stopped: panic {report}; Starling cannot serve without it, exiting with code {EXIT_SOFTWARE}");
    crate::tracing::error!("{line}");
    if !crate::logger::has_console() {
        eprintln!("starling: ERROR: {line}");
    }
    std::process::exit(EXIT_SOFTWARE)
}

/// Runs the body of a thread Starling cannot serve without: a panic in it ends the process
/// (see [`critical_failure`]).
pub fn critical<R>(part: &str, f: impl FnOnce() -> R) -> R {
    match catch(f) {
        Ok(result) => result,
        Err(report) => critical_failure(part, &report),
    }
}

/// [`critical`] for a task.
pub async fn critical_task<F: Future>(part: &str, future: F) -> F::Output {
    match catch_future(future).await {
        Ok(result) => result,
        Err(report) => critical_failure(part, &report),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contained_panic_comes_back_with_its_message_and_location() {
        install_hook();
        let report = catch(|| -> u32 { panic!("boom {}", 7) }).unwrap_err();
        assert_eq!(report.message, "boom 7");
        assert!(report.location.contains("panic.rs:"), "{report}");
        assert_eq!(catch(|| 5), Ok(5));
        // Nested: the inner boundary takes its own, the outer goes on.
        let outer = catch(|| catch(|| panic!("inner")).unwrap_err().message);
        assert_eq!(outer.as_deref(), Ok("inner"));
        assert_eq!(CONTAINED.with(Cell::get), 0);
    }

    #[test]
    fn a_future_that_panics_is_err_and_is_dropped() {
        install_hook();
        struct Dropped(std::sync::Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Dropped {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let held = Dropped(dropped.clone());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let result = runtime.block_on(catch_future(async move {
            let _held = held;
            tokio::task::yield_now().await;
            panic!("in a call");
        }));
        assert_eq!(result.unwrap_err().message, "in a call");
        assert!(dropped.load(std::sync::atomic::Ordering::Relaxed));
        let fine = runtime.block_on(catch_future(async { 3 }));
        assert_eq!(fine, Ok(3));
    }

    #[test]
    fn a_payload_that_is_not_text_is_named() {
        install_hook();
        let report = catch(|| std::panic::panic_any(42u8)).unwrap_err();
        assert_eq!(report.message, "Box<dyn Any>");
    }
}
