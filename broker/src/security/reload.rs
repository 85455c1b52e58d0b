//! Material read from files (certificates, keys, JWKS) that is looked at again, at most
//! once a second and only when used, and rebuilt when a file's modification time
//! changes: a new certificate or key set takes effect without a restart. A change
//! that does not load is logged and the previous material kept.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use tracing::{info, warn};

/// How often the files are looked at for changes.
const CHECK_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Loaded<T> {
    value: T,
    /// The files' modification times when `value` was built.
    stamps: Vec<Option<SystemTime>>,
    checked: Instant,
}

/// A value built from `files`, rebuilt when they change.
#[derive(Debug)]
pub struct Reloaded<T> {
    files: Vec<PathBuf>,
    /// What the files hold, for the log.
    what: &'static str,
    state: Mutex<Loaded<T>>,
}

fn stamps(files: &[PathBuf]) -> Vec<Option<SystemTime>> {
    files.iter().map(|f| fs::metadata(f).and_then(|m| m.modified()).ok()).collect()
}

impl<T: Clone> Reloaded<T> {
    /// Builds the value now: material that does not load stops start-up.
    pub fn new(files: Vec<PathBuf>, what: &'static str, build: impl FnOnce() -> Result<T, String>) -> Result<Reloaded<T>, String> {
        let before = stamps(&files);
        let value = build()?;
        Ok(Reloaded { files, what, state: Mutex::new(Loaded { value, stamps: before, checked: Instant::now() }) })
    }

    /// The current value, rebuilt first with `build` if a file changed.
    pub fn get(&self, build: impl FnOnce() -> Result<T, String>) -> T {
        let mut s = self.state.lock();
        if s.checked.elapsed() >= CHECK_EVERY {
            s.checked = Instant::now();
            let now = stamps(&self.files);
            if now != s.stamps {
                match build() {
                    Ok(value) => {
                        info!(files = ?self.files, "{} changed: reloaded", self.what);
                        s.value = value;
                        s.stamps = now;
                    }
                    // A file caught half-written is looked at again at the next check.
                    Err(e) => warn!(files = ?self.files, "{} changed but does not load (keeping the previous): {e}", self.what),
                }
            }
        }
        s.value.clone()
    }
}
