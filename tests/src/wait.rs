//! Waiting for conditions: poll with a deadline, never a bare sleep as synchronisation.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// Polls `probe` until it yields `Some`, or fails after `timeout` naming `what`.
///
/// The poll interval starts at 10 ms and backs off to 200 ms.
pub fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Result<T> {
    let start = Instant::now();
    let mut interval = Duration::from_millis(10);
    loop {
        if let Some(v) = probe() {
            return Ok(v);
        }
        let elapsed = start.elapsed();
        if elapsed >= timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(interval.min(timeout - elapsed));
        interval = (interval * 2).min(Duration::from_millis(200));
    }
}

/// Polls `cond` until it is true, or fails after `timeout` naming `what`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> Result<()> {
    wait_for(what, timeout, || cond().then_some(()))
}
