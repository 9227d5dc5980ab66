//! Polling with a deadline.

use std::time::{Duration, Instant};

/// Calls `f` every `every` until it returns `Some`, or fails after
/// `timeout` with `what` in the error.
pub fn until<T>(what: &str, timeout: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
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
