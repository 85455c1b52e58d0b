//! Running external clients (kcat, python, Go programs) with a time bound.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::broker::workspace_root;
use crate::wait::wait_for;

/// Runs `cmd` to completion with stdout and stderr captured, killing it after `timeout`.
///
/// stdin is whatever the caller configured (`Command`'s default inherits it; set
/// `Stdio::null()` or a file). Does not check the exit status; see [`run_checked`].
pub fn run_command(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let what = format!("{cmd:?}");
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().with_context(|| format!("spawning {what}"))?;
    let mut out = child.stdout.take().context("stdout")?;
    let mut err = child.stderr.take().context("stderr")?;
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        buf
    });
    let waited = wait_for(&format!("{what} to exit"), timeout, || child.try_wait().ok().flatten());
    let status = match waited {
        Ok(status) => status,
        Err(e) => {
            let _ = child.kill();
            let status = child.wait().context("reaping timed-out child")?;
            let output = Output { status, stdout: out_reader.join().unwrap_or_default(), stderr: err_reader.join().unwrap_or_default() };
            bail!("{e}; killed it\n{}", show_output(&output));
        }
    };
    Ok(Output { status, stdout: out_reader.join().unwrap_or_default(), stderr: err_reader.join().unwrap_or_default() })
}

/// Like [`run_command`], failing with the full output unless the exit status is 0.
pub fn run_checked(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let what = format!("{cmd:?}");
    let output = run_command(cmd, timeout)?;
    if !output.status.success() {
        bail!("{what} failed with {}\n{}", output.status, show_output(&output));
    }
    Ok(output)
}

/// Status, stdout and stderr of a finished process, for failure messages.
pub fn show_output(output: &Output) -> String {
    format!(
        "status: {}\n---- stdout ----\n{}\n---- stderr ----\n{}\n---- end ----",
        output.status,
        tail(&String::from_utf8_lossy(&output.stdout), 200),
        tail(&String::from_utf8_lossy(&output.stderr), 200),
    )
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let skipped = all.len().saturating_sub(lines);
    let mut s = String::new();
    if skipped > 0 {
        s.push_str(&format!("[... {skipped} lines omitted ...]\n"));
    }
    s.push_str(&all[skipped..].join("\n"));
    s
}

/// Path of a script in `tests/python/`.
pub fn python_script(name: &str) -> PathBuf {
    workspace_root().join("tests/python").join(name)
}

/// Builds the Go program `tests/sarama/<name>/` (once per source version) and
/// returns the binary's path.
///
/// Built offline against Debian's sarama: `GO111MODULE=off`,
/// `GOPATH=<tmp gopath>:/usr/share/gocode`. The binary lands in
/// `$TMPDIR/karst-tests-go/<name>-<source hash>/` via an atomic rename, so parallel
/// test processes of one run share one build and never see a half-written file.
pub fn go_binary(name: &str) -> Result<PathBuf> {
    let src_dir = workspace_root().join("tests/sarama").join(name);
    let mut sources: Vec<PathBuf> = std::fs::read_dir(&src_dir)
        .with_context(|| format!("reading {}", src_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "go"))
        .collect();
    sources.sort();
    if sources.is_empty() {
        bail!("no .go files in {}", src_dir.display());
    }
    let mut hasher = DefaultHasher::new();
    for path in &sources {
        path.file_name().hash(&mut hasher);
        std::fs::read(path)?.hash(&mut hasher);
    }
    let root = std::env::temp_dir().join("karst-tests-go");
    let out_dir = root.join(format!("{name}-{:016x}", hasher.finish()));
    let bin = out_dir.join(name);
    if bin.is_file() {
        return Ok(bin);
    }
    std::fs::create_dir_all(&out_dir)?;
    let gopath = tempfile::Builder::new().prefix("karst-gopath-").tempdir()?;
    let pkg_dir = gopath.path().join("src/karsttests").join(name);
    std::fs::create_dir_all(&pkg_dir)?;
    for path in &sources {
        let file_name = path.file_name().context("source file name")?;
        std::fs::copy(path, pkg_dir.join(file_name))?;
    }
    let partial = out_dir.join(format!("{name}.partial-{}", std::process::id()));
    let mut cmd = Command::new("go");
    cmd.arg("build")
        .arg("-o")
        .arg(&partial)
        .arg(format!("karsttests/{name}"))
        .current_dir(gopath.path())
        .env("GO111MODULE", "off")
        .env("GOPATH", format!("{}:/usr/share/gocode", gopath.path().display()))
        .env("GOFLAGS", "")
        .env("GOPROXY", "off")
        .env("GOCACHE", root.join("cache"))
        .stdin(Stdio::null());
    run_checked(&mut cmd, Duration::from_secs(300)).with_context(|| format!("building Go program {name}"))?;
    std::fs::rename(&partial, &bin)?;
    Ok(bin)
}

/// kcat sends each of `lines` as one record to `topic` with the given `acks`.
pub fn kcat_produce(bootstrap: &str, topic: &str, lines: &[String], acks: &str) -> Result<()> {
    use std::io::Write;
    let mut child = Command::new("kcat")
        .args(["-b", bootstrap, "-t", topic, "-P", "-X", &format!("acks={acks}"), "-X", "message.timeout.ms=30000"])
        .stdin(Stdio::piped())
        .spawn()
        .context("spawning kcat")?;
    {
        let mut stdin = child.stdin.take().context("kcat stdin")?;
        for l in lines {
            writeln!(stdin, "{l}")?;
        }
    }
    anyhow::ensure!(child.wait()?.success(), "kcat producer via {bootstrap} failed");
    Ok(())
}

/// kcat reads `topic` from the beginning to its end: one value per record.
pub fn kcat_consume(bootstrap: &str, topic: &str) -> Result<Vec<String>> {
    let out = run_checked(
        Command::new("kcat").args(["-b", bootstrap, "-t", topic, "-C", "-o", "beginning", "-e", "-q"]).stdin(Stdio::null()),
        Duration::from_secs(60),
    )?;
    Ok(String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect())
}

/// `karst ARGS --output json --bootstrap-server <broker>`, which must succeed; its JSON.
pub fn karst_json(broker: &crate::Broker, args: &[&str]) -> Result<serde_json::Value> {
    let mut cmd = Command::new(crate::karst_bin()?);
    cmd.args(args).args(["--output", "json", "--bootstrap-server", &broker.bootstrap()]).stdin(Stdio::null());
    crate::broker::scrub_karst_env(&mut cmd);
    let out = run_command(&mut cmd, Duration::from_secs(60))?;
    anyhow::ensure!(out.status.success(), "karst {args:?}\n{}", show_output(&out));
    Ok(serde_json::from_slice(&out.stdout)?)
}
