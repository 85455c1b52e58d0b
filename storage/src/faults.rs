//! Fault injection at every write, fsync (of files and of directories) and rename
//! the log makes, so tests can make a disk fail on purpose instead of hoping for it
//! (raft-engine's and TiKV's failpoints, in a form that needs no dependency).
//!
//! Compiled in for this crate's unit tests and under the `failpoints` feature, which
//! only test builds enable; elsewhere [`check`] is an empty inline function. Rules
//! come from the `KARST_FAILPOINTS` environment variable, read once on first use,
//! and from [`configure`] (the broker's admin endpoint calls it in a running binary).
//!
//! A specification is `point=action` entries separated by `;`, after fail-rs:
//!
//! ```text
//! fsync=eio                     every fsync of a data file fails with EIO
//! write=3*off->enospc@orders-0  the first 3 writes under a path containing
//!                               "orders-0" pass, every later one fails with ENOSPC
//! fsync=off                     removes every fsync rule
//! write=off@orders-0            removes the write rule for "orders-0"
//! ```
//!
//! Points: `write`, `fsync`, `fsync_dir`, `rename`. Errors: `eio`, `enospc`.

use std::io;
use std::path::Path;

/// An operation that can be made to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// Appending to a segment, writing a checkpoint or snapshot.
    Write,
    /// fsync/fdatasync/msync of a file (segments, indexes, checkpoints).
    Fsync,
    /// fsync of a partition directory after creating, renaming or deleting files.
    FsyncDir,
    /// Renaming a finished temporary file into place.
    Rename,
}

#[cfg(any(test, feature = "failpoints"))]
impl Point {
    fn parse(s: &str) -> Option<Point> {
        match s {
            "write" => Some(Point::Write),
            "fsync" => Some(Point::Fsync),
            "fsync_dir" => Some(Point::FsyncDir),
            "rename" => Some(Point::Rename),
            _ => None,
        }
    }
}

/// The error an injected fault returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// EIO: the device failed.
    Io,
    /// ENOSPC: the file system is full.
    NoSpace,
}

/// Linux (and BSD) errno values; kept here so the crate needs no libc.
#[cfg(any(test, feature = "failpoints"))]
const EIO: i32 = 5;
const ENOSPC: i32 = 28;

#[cfg(any(test, feature = "failpoints"))]
impl Fault {
    fn error(self) -> io::Error {
        io::Error::from_raw_os_error(match self {
            Fault::Io => EIO,
            Fault::NoSpace => ENOSPC,
        })
    }
}

/// Whether `e` says the file system is full (real or injected).
pub(crate) fn is_no_space(e: &io::Error) -> bool {
    e.raw_os_error() == Some(ENOSPC)
}

/// True when faults can be injected in this build.
pub const ENABLED: bool = cfg!(any(test, feature = "failpoints"));

#[cfg(any(test, feature = "failpoints"))]
mod active {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Mutex, OnceLock, PoisonError};

    use super::*;

    #[derive(Debug)]
    struct Rule {
        point: Point,
        /// Only paths containing this fail; `None`: every path.
        path: Option<String>,
        /// Matching calls that pass before the rule starts failing.
        skip: u64,
        seen: AtomicU64,
        fault: Fault,
    }

    fn rules() -> &'static Mutex<Vec<Rule>> {
        static RULES: OnceLock<Mutex<Vec<Rule>>> = OnceLock::new();
        RULES.get_or_init(|| {
            let mut rules = Vec::new();
            if let Ok(spec) = std::env::var("KARST_FAILPOINTS") {
                if let Err(e) = apply(&mut rules, &spec) {
                    tracing::error!("ignoring KARST_FAILPOINTS: {e}");
                } else if !rules.is_empty() {
                    tracing::warn!(spec, "fault injection is on (KARST_FAILPOINTS)");
                }
            }
            Mutex::new(rules)
        })
    }

    pub(super) fn check(point: Point, path: &Path) -> io::Result<()> {
        let rules = rules().lock().unwrap_or_else(PoisonError::into_inner);
        for r in rules.iter().filter(|r| r.point == point) {
            if r.path.as_deref().is_some_and(|p| !path.to_string_lossy().contains(p)) {
                continue;
            }
            if r.seen.fetch_add(1, Ordering::Relaxed) >= r.skip {
                return Err(r.fault.error());
            }
        }
        Ok(())
    }

    pub(super) fn configure(spec: &str) -> Result<(), String> {
        let mut rules = rules().lock().unwrap_or_else(PoisonError::into_inner);
        apply(&mut rules, spec)
    }

    /// Adds one rule; removes it again when the returned guard drops.
    #[cfg(test)]
    pub(super) fn add(point: Point, fault: Fault, skip: u64, path: &str) -> impl Drop {
        rules().lock().unwrap_or_else(PoisonError::into_inner).push(Rule {
            point,
            path: Some(path.to_string()),
            skip,
            seen: AtomicU64::new(0),
            fault,
        });
        Remove { point, path: path.to_string() }
    }

    #[cfg(test)]
    struct Remove {
        point: Point,
        path: String,
    }

    #[cfg(test)]
    impl Drop for Remove {
        fn drop(&mut self) {
            let mut rules = rules().lock().unwrap_or_else(PoisonError::into_inner);
            rules.retain(|r| !(r.point == self.point && r.path.as_deref() == Some(self.path.as_str())));
        }
    }

    /// Parses every entry first, so a bad specification changes nothing.
    fn apply(rules: &mut Vec<Rule>, spec: &str) -> Result<(), String> {
        let mut parsed = Vec::new();
        for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let (point, action) = entry.split_once('=').ok_or_else(|| format!("`{entry}`: expected point=action"))?;
            let point = Point::parse(point.trim()).ok_or_else(|| format!("`{entry}`: unknown point (write, fsync, fsync_dir, rename)"))?;
            let action = action.trim();
            if let Some(rest) = action.strip_prefix("off").filter(|r| r.is_empty() || r.starts_with('@')) {
                parsed.push((point, Err(rest.strip_prefix('@').map(str::to_string))));
                continue;
            }
            let (skip, rest) = match action.split_once("*off->") {
                Some((n, rest)) => (n.trim().parse::<u64>().map_err(|e| format!("`{entry}`: count: {e}"))?, rest),
                None => (0, action),
            };
            let (fault, path) = match rest.split_once('@') {
                Some((f, p)) => (f, Some(p.to_string())),
                None => (rest, None),
            };
            let fault = match fault.trim() {
                "eio" => Fault::Io,
                "enospc" => Fault::NoSpace,
                other => return Err(format!("`{entry}`: unknown error `{other}` (eio, enospc)")),
            };
            parsed.push((point, Ok(Rule { point, path, skip, seen: AtomicU64::new(0), fault })));
        }
        for (point, rule) in parsed {
            match rule {
                Err(None) => rules.retain(|r| r.point != point),
                Err(Some(path)) => rules.retain(|r| !(r.point == point && r.path.as_deref() == Some(path.as_str()))),
                Ok(rule) => {
                    rules.retain(|r| !(r.point == point && r.path == rule.path));
                    rules.push(rule);
                }
            }
        }
        Ok(())
    }
}

/// Fails with the injected error when a rule matches `point` at `path`.
#[cfg(any(test, feature = "failpoints"))]
pub(crate) fn check(point: Point, path: &Path) -> io::Result<()> {
    active::check(point, path)
}

/// Without fault injection compiled in: nothing to check.
#[cfg(not(any(test, feature = "failpoints")))]
#[inline(always)]
pub(crate) fn check(_point: Point, _path: &Path) -> io::Result<()> {
    Ok(())
}

/// Adds the rules of `spec` (see the module documentation); an error when the
/// specification is malformed or fault injection is not compiled into this build.
pub fn configure(spec: &str) -> Result<(), String> {
    #[cfg(any(test, feature = "failpoints"))]
    return active::configure(spec);
    #[cfg(not(any(test, feature = "failpoints")))]
    {
        let _ = spec;
        Err("fault injection is not compiled into this build (cargo feature `failpoints`)".into())
    }
}

/// For tests: `point` fails with `fault` under paths containing `path`, after
/// `skip` calls that pass, until the guard drops.
#[cfg(test)]
pub(crate) fn inject(point: Point, fault: Fault, skip: u64, path: &Path) -> impl Drop {
    active::add(point, fault, skip, &path.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_their_point_and_path_after_the_skipped_calls() {
        let dir = Path::new("/nowhere/faults-rules-test/t-0");
        let _g = inject(Point::Fsync, Fault::Io, 2, dir);
        assert!(check(Point::Write, &dir.join("a.log")).is_ok(), "other point");
        assert!(check(Point::Fsync, Path::new("/nowhere/else")).is_ok(), "other path");
        assert!(check(Point::Fsync, &dir.join("a.log")).is_ok(), "skipped 1");
        assert!(check(Point::Fsync, &dir.join("a.log")).is_ok(), "skipped 2");
        let e = check(Point::Fsync, &dir.join("a.log")).expect_err("fails from the third call");
        assert_eq!(e.raw_os_error(), Some(EIO));
    }

    #[test]
    fn specifications_parse_like_fail_rs_and_off_removes() {
        configure("write=1*off->enospc@faults-spec-test; rename=eio@faults-spec-test").expect("valid");
        let p = Path::new("/x/faults-spec-test/f");
        assert!(check(Point::Write, p).is_ok());
        assert!(is_no_space(&check(Point::Write, p).expect_err("second write fails")));
        assert!(check(Point::Rename, p).is_err());
        configure("write=off@faults-spec-test;rename=off@faults-spec-test").expect("valid");
        assert!(check(Point::Write, p).is_ok() && check(Point::Rename, p).is_ok());
        assert!(configure("fsync=boom").is_err());
        assert!(configure("chmod=eio").is_err());
    }
}
