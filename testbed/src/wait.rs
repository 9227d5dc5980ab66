//! Polling with a deadline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Makes SIGINT and SIGTERM end every [`until`] wait with an error, so a
/// long run unwinds through the drops that remove its namespaces and
/// processes.
pub fn interrupt_waits_on_signal() -> anyhow::Result<()> {
    ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst))
        .map_err(|e| anyhow::anyhow!("cannot install the signal handler: {e}"))
}

/// An error once SIGINT or SIGTERM has arrived (see
/// [`interrupt_waits_on_signal`]), for loops that wait some other way.
pub fn check_interrupted() -> anyhow::Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        anyhow::bail!("interrupted");
    }
    Ok(())
}

/// Calls `f` every `every` until it returns `Some`, or fails after
/// `timeout` with `what` in the error.
pub fn until<T>(what: &str, timeout: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if INTERRUPTED.load(Ordering::SeqCst) {
            anyhow::bail!("interrupted while waiting for {what}");
        }
        if Instant::now() >= end {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(every);
    }
}

/// [`until`] with a 200 ms poll interval.
pub fn poll<T>(what: &str, timeout: Duration, f: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    until(what, timeout, Duration::from_millis(200), f)
}
