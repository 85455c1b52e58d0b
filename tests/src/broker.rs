//! Starting, killing and restarting the real `karst` binary.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tempfile::TempDir;

use crate::wait::wait_for;

/// How long a broker may take from spawn to its "listening" line.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The line prefix `karst serve` prints on stdout once its listener is bound.
const LISTENING: &str = "Karst listening on ";
/// What a controller-only node prints instead (its controller address).
const CONTROLLER_LISTENING: &str = "Karst controller listening on ";
/// The line `karst serve` prints, before the Kafka one, once its admin HTTP endpoint is bound.
const ADMIN_LISTENING: &str = "Karst admin listening on ";

/// The workspace root (the parent of this package's directory).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Path of the `karst` binary under test.
///
/// `KARST_BIN` if set; else `<workspace>/target/debug/karst` if it exists; else the
/// binary is built once with `cargo build -p karst --features failpoints` (storage
/// fault injection for `durability.rs`; cargo's own build-directory lock
/// serialises parallel test processes; a `OnceLock` serialises threads of this one)
/// and taken from the target directory cargo reports.
pub fn karst_bin() -> Result<PathBuf> {
    static BIN: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| find_or_build_karst().map_err(|e| format!("{e:#}"))).clone().map_err(|e| anyhow!(e))
}

fn find_or_build_karst() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("KARST_BIN") {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("KARST_BIN={} is not a file", bin.display());
        }
        return Ok(bin);
    }
    let default = workspace_root().join("target/debug/karst");
    if default.is_file() {
        return Ok(default);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let root = workspace_root();
    let status = Command::new(&cargo)
        .args(["build", "-p", "karst", "--features", "failpoints"])
        .current_dir(&root)
        .stdout(Stdio::null())
        .status()
        .context("running cargo build -p karst")?;
    if !status.success() {
        bail!("cargo build -p karst --features failpoints failed: {status}");
    }
    let meta = Command::new(&cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(&root)
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo metadata")?;
    let meta: serde_json::Value = serde_json::from_slice(&meta.stdout).context("parsing cargo metadata output")?;
    let target = meta["target_directory"].as_str().ok_or_else(|| anyhow!("cargo metadata has no target_directory"))?;
    let bin = Path::new(target).join("debug/karst");
    if !bin.is_file() {
        bail!("cargo build -p karst --features failpoints succeeded but {} is missing", bin.display());
    }
    Ok(bin)
}

/// A running `karst serve` on 127.0.0.1 with a private data directory.
///
/// Killed (SIGKILL) on drop, printing the tail of its stderr (shown by the test
/// harness only if the test fails). Logs are kept if the test panics, logs and data
/// if `KARST_TEST_KEEP` is set or the test asked for it.
pub struct Broker {
    child: Option<Child>,
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    data_dir: Option<TempDir>,
    log_dir: Option<TempDir>,
    extra_args: Vec<String>,
    launch: Launch,
    generation: u32,
    /// Keep logs and data whatever happens ([`Broker::keep_files`]).
    keep: bool,
}

/// How the broker process is started beyond its arguments.
#[derive(Debug, Clone, Default)]
pub struct Launch {
    /// Extra environment variables (e.g. `TOKIO_WORKER_THREADS`).
    pub env: Vec<(String, String)>,
    /// Soft and hard RLIMIT_NOFILE for the process (set by `sh -c 'ulimit -n N'`).
    pub nofile: Option<u64>,
}

impl Broker {
    /// Starts a broker: `karst serve --listen 127.0.0.1:0 --data-dir <tmp> <extra_args>`,
    /// with `--admin-listen 127.0.0.1:0` unless `extra_args` names one (brokers of
    /// parallel tests must not race for the default admin port).
    pub fn start(extra_args: &[&str]) -> Result<Broker> {
        Broker::start_with(extra_args, Launch::default())
    }

    /// [`Broker::start`] with process settings: environment, open-file limit.
    pub fn start_with(extra_args: &[&str], launch: Launch) -> Result<Broker> {
        let data_dir = tempfile::Builder::new().prefix("karst-data-").tempdir().context("creating data dir")?;
        let log_dir = tempfile::Builder::new().prefix("karst-logs-").tempdir().context("creating log dir")?;
        let mut broker = Broker {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_addr: None,
            data_dir: Some(data_dir),
            log_dir: Some(log_dir),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            launch,
            generation: 0,
            keep: false,
        };
        broker.spawn()?;
        Ok(broker)
    }

    fn spawn(&mut self) -> Result<()> {
        self.generation += 1;
        let bin = karst_bin()?;
        let stderr_path = self.stderr_log();
        let stderr = File::create(&stderr_path).with_context(|| format!("creating {}", stderr_path.display()))?;
        let mut cmd = match self.launch.nofile {
            // Both limits, so the broker's raise of the soft limit to the hard one
            // cannot undo it.
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c").arg(format!("ulimit -n {n} && exec \"$0\" \"$@\"")).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.addr.port()))
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        if !self.extra_args.iter().any(|a| a.starts_with("--admin-listen")) {
            cmd.arg("--admin-listen").arg("127.0.0.1:0");
        }
        scrub_karst_env(&mut cmd);
        // An error at start-up is printed by anyhow; without its backtrace the message
        // stays inside the stderr tail that failures show.
        cmd.env("RUST_LIB_BACKTRACE", "0");
        cmd.envs(self.launch.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut child = cmd.spawn().with_context(|| format!("spawning {}", bin.display()))?;
        let stdout = child.stdout.take().context("broker stdout")?;
        let stdout_path = self.log_path("stdout");
        let (tx, rx) = mpsc::channel::<(SocketAddr, Option<SocketAddr>)>();
        // Reads the "listening" line, then keeps draining stdout into a file so the
        // broker never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut copy = File::create(stdout_path).ok();
            let mut sent = false;
            let mut admin = None;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(f) = copy.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                if !sent {
                    if let Some(addr) = parse_admin_listening(&line) {
                        admin = Some(addr);
                    } else if let Some(addr) = parse_listening(&line) {
                        sent = true;
                        let _ = tx.send((addr, admin));
                    }
                }
            }
        });
        self.child = Some(child);
        let (addr, admin) = wait_for("the broker's listening line", START_TIMEOUT, || match rx.try_recv() {
            Ok(addrs) => Some(Ok(addrs)),
            Err(mpsc::TryRecvError::Empty) => self
                .exit_status()
                .map(|status| Err(anyhow!("karst exited with {status} before listening; stderr:\n{}", self.stderr_tail(40)))),
            Err(mpsc::TryRecvError::Disconnected) => {
                Some(Err(anyhow!("karst closed stdout without printing `{LISTENING}ADDR`; stderr:\n{}", self.stderr_tail(40))))
            }
        })
        .map_err(|e| anyhow!("{e}; stderr:\n{}", self.stderr_tail(40)))??;
        if !addr.ip().is_loopback() || addr.port() == 0 {
            bail!("broker reported a strange listening address {addr}");
        }
        self.addr = addr;
        self.admin_addr = admin;
        Ok(())
    }

    /// The bound address of the admin HTTP endpoint (`/metrics`, `/health/*`);
    /// `None` for a controller-only node or when it is disabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// The data directory (kept across [`Broker::restart`]).
    pub fn data_dir(&self) -> &Path {
        self.data_dir.as_ref().map_or(Path::new("/nonexistent"), |d| d.path())
    }

    /// Keeps this broker's logs (every generation's) and data directory after the test,
    /// printing where: for a failure found by a checker rather than a panic.
    pub fn keep_files(&mut self) {
        self.keep = true;
    }

    /// The stderr log of the current (or last) broker process.
    pub fn stderr_log(&self) -> PathBuf {
        self.log_path("stderr")
    }

    fn log_path(&self, stream: &str) -> PathBuf {
        let dir = self.log_dir.as_ref().map_or(Path::new("/tmp"), |d| d.path());
        dir.join(format!("{stream}-{}.log", self.generation))
    }

    /// The last `n` lines of the current process's stderr.
    pub fn stderr_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(self.stderr_log()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The process id of the running broker.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `Some(status)` if the broker process has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Fails (with the broker's stderr tail) unless the broker process is still running.
    pub fn check_running(&mut self) -> Result<()> {
        let running = self.child.is_some();
        match (running, self.exit_status()) {
            (false, _) => bail!("broker is not running (killed by the test)"),
            (true, Some(status)) => bail!("broker exited with {status}; stderr tail:\n{}", self.stderr_tail(40)),
            (true, None) => Ok(()),
        }
    }

    /// SIGKILL the broker and reap it. The data directory stays.
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("SIGKILL karst")?;
            child.wait().context("reaping karst")?;
        }
        Ok(())
    }

    /// SIGTERM the broker and wait up to `timeout` for it to exit; returns its status.
    pub fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let pid = self.pid().context("broker is not running")?;
        let status = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().context("running kill -TERM")?;
        if !status.success() {
            bail!("kill -TERM {pid} failed");
        }
        let exit = wait_for("the broker to exit after SIGTERM", timeout, || self.exit_status())?;
        self.child = None;
        Ok(exit)
    }

    /// Sends `signal` (a `kill` signal name such as STOP or CONT) to the broker.
    pub fn signal(&self, signal: &str) -> Result<()> {
        let pid = self.pid().context("broker is not running")?;
        let status = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().context("running kill")?;
        if !status.success() {
            bail!("kill -{signal} {pid} failed");
        }
        Ok(())
    }

    /// Starts a new broker process on the same data directory (killing the current
    /// one with SIGKILL first if it is still running), on the same port as a
    /// restarted Kafka broker is, so clients' bootstrap lists stay good; on
    /// another if that one was taken meanwhile.
    pub fn restart(&mut self) -> Result<()> {
        self.kill9()?;
        if self.spawn().is_ok() {
            return Ok(());
        }
        // The attempt's process is gone (or going) before the next one takes its data
        // directory: it may still hold the directory's lock while it exits.
        self.kill9()?;
        self.addr.set_port(0);
        self.spawn()
    }
}

/// Hermetic: `KARST_*` variables are broker settings (KARST_NUM_PARTITIONS=3), so none
/// of the caller's (KARST_BIN, KARST_IMAGE, KARST_TEST_KEEP, ...) may leak into a `karst`
/// a test starts, except the log filter KARST_LOG.
pub fn scrub_karst_env(cmd: &mut Command) {
    for (name, _) in std::env::vars_os() {
        let name_str = name.to_string_lossy();
        if name_str.starts_with("KARST_") && name_str != "KARST_LOG" {
            cmd.env_remove(&name);
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Test harnesses (libtest, nextest) show a test's output only when it fails,
        // so the broker's last words are always printed, whether the test failed by
        // panicking or by returning an error.
        eprintln!(
            "---- karst stderr (last 60 lines of {}) ----\n{}\n---- end karst stderr ----",
            self.stderr_log().display(),
            self.stderr_tail(60)
        );
        let keep = self.keep || std::env::var_os("KARST_TEST_KEEP").is_some();
        if std::thread::panicking() || keep {
            if let Some(dir) = self.log_dir.take() {
                eprintln!("karst logs kept in {}", dir.keep().display());
            }
        }
        if keep {
            if let Some(dir) = self.data_dir.take() {
                eprintln!("karst data kept in {}", dir.keep().display());
            }
        }
    }
}

fn parse_listening(line: &str) -> Option<SocketAddr> {
    let marker = [LISTENING, CONTROLLER_LISTENING].into_iter().find(|m| line.contains(m))?;
    let at = line.find(marker)?;
    line[at + marker.len()..].trim().parse().ok()
}

fn parse_admin_listening(line: &str) -> Option<SocketAddr> {
    let at = line.find(ADMIN_LISTENING)?;
    line[at + ADMIN_LISTENING.len()..].trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_admin_listening_line() {
        assert_eq!(parse_admin_listening("Karst admin listening on 127.0.0.1:9644"), Some(SocketAddr::from(([127, 0, 0, 1], 9644))));
        assert_eq!(parse_listening("Karst admin listening on 127.0.0.1:9644"), None, "not taken for the Kafka listener");
        assert_eq!(parse_admin_listening("Karst listening on 127.0.0.1:1"), None);
    }

    #[test]
    fn parses_the_listening_line() {
        assert_eq!(parse_listening("Karst listening on 127.0.0.1:40123"), Some(SocketAddr::from(([127, 0, 0, 1], 40123))));
        assert_eq!(parse_listening("Karst listening on nowhere"), None);
        assert_eq!(parse_listening("Karst controller listening on 127.0.0.1:9"), Some(SocketAddr::from(([127, 0, 0, 1], 9))));
        assert_eq!(parse_listening("starting"), None);
    }
}
