//! Current client libraries that come from their own package ecosystems rather than
//! from Debian: Go programs in module mode (`tests/go/<name>/`, each its own module
//! with a committed go.sum) and the Node.js program in `tests/node/` (its
//! package-lock.json committed, `npm ci` into `tests/node/node_modules`).
//! `scripts/test-all.sh` downloads their dependencies first.
//!
//! Each program runs one scenario against a bootstrap address and checks it itself,
//! printing `OK <step>` lines, or `FAIL <why>` and a non-zero exit.
//! [`against_karst_and_kafka`] runs the same scenario against Karst and then against
//! Apache Kafka, so a failure is known to be Karst's. A missing toolchain (no `go`,
//! one older than the module needs, no `node`, no `node_modules`) is a
//! [`ClientUnavailable`]: the test skips, saying why.

use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::broker::{workspace_root, Broker};
use crate::clients::run_checked;
use crate::kafka::{KafkaBroker, KafkaUnavailable};
use crate::unique_topic;

/// How long one scenario may run against one broker.
pub const SCENARIO_TIMEOUT: Duration = Duration::from_secs(240);
/// Building a Go program (dependencies compiled once into the shared build cache).
const GO_BUILD_TIMEOUT: Duration = Duration::from_secs(600);

/// Why a client cannot run here: the test prints it and skips.
#[derive(Debug, Clone)]
pub struct ClientUnavailable(pub String);

impl fmt::Display for ClientUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client unavailable: {}", self.0)
    }
}

impl std::error::Error for ClientUnavailable {}

impl ClientUnavailable {
    /// The reason, if `e` says that the client cannot run here.
    pub fn of(e: &anyhow::Error) -> Option<&ClientUnavailable> {
        e.downcast_ref::<ClientUnavailable>()
    }
}

/// `(major, minor)` of a Go version string such as `go1.26.8` or `1.23`.
fn go_version(s: &str) -> Option<(u32, u32)> {
    let mut it = s.trim().trim_start_matches("go").split('.');
    let major = it.next()?.parse().ok()?;
    let minor = it.next().map_or(Some(0), |m| m.chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok())?;
    Some((major, minor))
}

/// The `go` directive of a go.mod.
fn go_mod_requires(go_mod: &str) -> Option<(u32, u32)> {
    go_mod.lines().find_map(|l| l.trim().strip_prefix("go ").and_then(go_version))
}

/// Builds the Go module `tests/go/<name>/` (once per source version) and returns the
/// binary's path.
///
/// Module mode with the committed go.sum (`-mod=readonly`: a dependency missing from
/// go.sum fails the build instead of changing it) and the local toolchain only
/// (`GOTOOLCHAIN=local`: no toolchain download behind the test's back). Modules come
/// from the module cache, which `scripts/test-all.sh` fills with `go mod download`.
/// The binary lands in `$TMPDIR/karst-tests-go/mod-<name>-<hash>/` via an atomic
/// rename; a lock file there makes parallel test processes share one build.
pub fn go_module_binary(name: &str) -> Result<PathBuf> {
    let src_dir = workspace_root().join("tests/go").join(name);
    let go_mod = std::fs::read_to_string(src_dir.join("go.mod")).with_context(|| format!("reading {}/go.mod", src_dir.display()))?;
    let needed = go_mod_requires(&go_mod).with_context(|| format!("no go directive in {}/go.mod", src_dir.display()))?;
    let have = match Command::new("go").args(["env", "GOVERSION"]).env("GOTOOLCHAIN", "local").stdin(Stdio::null()).output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ClientUnavailable(format!("no `go` on PATH to build tests/go/{name}")).into());
        }
        Err(e) => return Err(e).context("running go env GOVERSION"),
        // Before Go 1.16 there is no GOVERSION: far too old anyway.
        Ok(out) => go_version(&String::from_utf8_lossy(&out.stdout)).unwrap_or((1, 0)),
    };
    if have < needed {
        return Err(ClientUnavailable(format!(
            "tests/go/{name} needs Go {}.{} or newer, `go` here is {}.{}",
            needed.0, needed.1, have.0, have.1
        ))
        .into());
    }

    // The program's sources and the shared module it replaces in (tests/go/common).
    let mut files: Vec<PathBuf> = [src_dir.clone(), src_dir.with_file_name("common")]
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "go") || p.file_name().is_some_and(|n| n == "go.mod" || n == "go.sum"))
        .collect();
    files.sort();
    let mut hasher = DefaultHasher::new();
    for path in &files {
        path.file_name().hash(&mut hasher);
        std::fs::read(path)?.hash(&mut hasher);
    }
    let root = std::env::temp_dir().join("karst-tests-go");
    let out_dir = root.join(format!("mod-{name}-{:016x}", hasher.finish()));
    let bin = out_dir.join(name);
    if bin.is_file() {
        return Ok(bin);
    }
    std::fs::create_dir_all(&out_dir)?;
    // Test processes of one run start together: one builds, the others wait for it
    // and take its binary rather than compiling the same dependencies side by side.
    let lock = std::fs::File::create(out_dir.join("build.lock"))?;
    lock.lock().context("locking the Go build")?;
    if bin.is_file() {
        return Ok(bin);
    }
    let partial = out_dir.join(format!("{name}.partial-{}", std::process::id()));
    let mut cmd = Command::new("go");
    cmd.arg("build")
        .arg("-o")
        .arg(&partial)
        .arg(".")
        .current_dir(&src_dir)
        .env("GO111MODULE", "on")
        .env("GOFLAGS", "-mod=readonly -buildvcs=false")
        .env("GOTOOLCHAIN", "local")
        .env("GOCACHE", root.join("cache"))
        .stdin(Stdio::null());
    run_checked(&mut cmd, GO_BUILD_TIMEOUT).with_context(|| format!("building Go module tests/go/{name}"))?;
    std::fs::rename(&partial, &bin)?;
    Ok(bin)
}

/// `node` and the path of `tests/node/<script>`, once `tests/node/node_modules` holds
/// `package` (installed by `npm ci`).
pub fn node_program(script: &str, package: &str) -> Result<(PathBuf, PathBuf)> {
    let dir = workspace_root().join("tests/node");
    let node = match Command::new("node").arg("--version").stdin(Stdio::null()).output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ClientUnavailable("no `node` on PATH".into()).into());
        }
        Err(e) => return Err(e).context("running node --version"),
        Ok(out) => String::from_utf8_lossy(&out.stdout).trim().to_string(),
    };
    let major: u32 = node.trim_start_matches('v').split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
    if major < 14 {
        return Err(ClientUnavailable(format!("node {node} is older than 14, which {package} needs")).into());
    }
    if !dir.join("node_modules").join(package).join("package.json").is_file() {
        return Err(ClientUnavailable(format!(
            "{}/node_modules/{package} is missing: run `npm ci` there (scripts/test-all.sh does)",
            dir.display()
        ))
        .into());
    }
    Ok((PathBuf::from("node"), dir.join(script)))
}

/// Runs `program args... <bootstrap> <topic>` (a scenario that checks itself) with
/// [`SCENARIO_TIMEOUT`], failing with its output unless it exits 0.
pub fn run_scenario(program: &Path, args: &[&str], bootstrap: &str, topic: &str) -> Result<Output> {
    let mut cmd = Command::new(program);
    cmd.args(args).arg(bootstrap).arg(topic).stdin(Stdio::null());
    run_checked(&mut cmd, SCENARIO_TIMEOUT)
}

/// Runs `scenario(bootstrap, topic)` against a fresh Karst broker, then against Apache
/// Kafka, printing each run's stdout. `prepare` runs first (building the client, so
/// the brokers' clocks start after it): a [`ClientUnavailable`] from it skips the
/// test, a [`KafkaUnavailable`] skips only the Kafka half; both print why.
pub fn against_karst_and_kafka<P>(
    what: &str,
    prepare: impl FnOnce() -> Result<P>,
    scenario: impl Fn(&P, &str, &str) -> Result<Output>,
) -> Result<()> {
    let prepared = match prepare() {
        Ok(p) => p,
        Err(e) => match ClientUnavailable::of(&e) {
            Some(why) => {
                println!("skipped: {why}");
                return Ok(());
            }
            None => return Err(e),
        },
    };
    let mut karst = Broker::start(&["--set", "group.initial.rebalance.delay.ms=0"])?;
    let topic = unique_topic(what);
    let out = scenario(&prepared, &karst.bootstrap(), &topic).with_context(|| format!("{what} against Karst"))?;
    println!("against Karst:\n{}", String::from_utf8_lossy(&out.stdout));
    karst.check_running()?;
    drop(karst);

    let kafka = match KafkaBroker::start() {
        Ok(k) => k,
        Err(e) => match KafkaUnavailable::of(&e) {
            Some(why) => {
                println!("Apache Kafka half skipped: {why}");
                return Ok(());
            }
            None => return Err(e),
        },
    };
    let topic = unique_topic(what);
    let out =
        scenario(&prepared, &kafka.bootstrap(), &topic).with_context(|| format!("{what} against Apache Kafka {}", kafka.version()))?;
    println!("against Apache Kafka {}:\n{}", kafka.version(), String::from_utf8_lossy(&out.stdout));
    Ok(())
}

/// Runs the Go module `tests/go/<module>` in `mode` against Karst and Apache Kafka.
pub fn go_scenario_on_both(module: &str, mode: &str) -> Result<()> {
    against_karst_and_kafka(
        &format!("{module}-{mode}"),
        || go_module_binary(module),
        |bin, bootstrap, topic| run_scenario(bin, &[mode], bootstrap, topic),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_versions() {
        assert_eq!(go_version("go1.26.8"), Some((1, 26)));
        assert_eq!(go_version("1.23"), Some((1, 23)));
        assert_eq!(go_version("go1.22rc1"), Some((1, 22)));
        assert_eq!(go_mod_requires("module x\n\ngo 1.26.0\n"), Some((1, 26)));
    }

    #[test]
    fn unavailable_is_found_through_context() {
        let e = anyhow::Error::from(ClientUnavailable("no go".into())).context("building");
        assert_eq!(ClientUnavailable::of(&e).map(|u| u.0.as_str()), Some("no go"));
    }
}
