//! The container image (a static binary FROM scratch, built by docker/build-image.sh)
//! under docker/compose.yml: a client on the host produces and consumes through the
//! published port. Skipped, saying why, where no Docker engine or image is present.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{ensure, Result};
use karst_tests::{run_checked, run_command, unique_topic, wait_for, workspace_root};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Takes the compose project down (with its volume) however the test ends.
struct Project {
    name: String,
    port: u16,
}

impl Project {
    fn compose(&self) -> Command {
        let mut c = Command::new("docker-compose");
        c.arg("-p")
            .arg(&self.name)
            .arg("-f")
            .arg(workspace_root().join("docker/compose.yml"))
            .env("KARST_PORT", self.port.to_string())
            .stdin(Stdio::null());
        c
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = run_command(self.compose().args(["down", "-v", "--timeout", "20"]), TIMEOUT);
    }
}

#[test]
fn compose_runs_one_broker_that_host_clients_reach() -> Result<()> {
    let engine = Command::new("docker").arg("info").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !engine.is_ok_and(|s| s.success()) {
        println!("skipped: no Docker engine answers `docker info` here");
        return Ok(());
    }
    let Ok(image) = std::env::var("KARST_IMAGE") else {
        println!("skipped: KARST_IMAGE is not set (scripts/test-all.sh builds it with docker/build-image.sh)");
        return Ok(());
    };
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let project = Project { name: unique_topic("karstci").replace('-', ""), port };
    run_checked(project.compose().env("KARST_IMAGE", &image).args(["up", "-d"]), TIMEOUT)?;
    let bootstrap = format!("localhost:{port}");
    wait_for("the broker in the container to answer", TIMEOUT, || {
        run_command(Command::new("kcat").args(["-b", &bootstrap, "-L", "-m", "2"]).stdin(Stdio::null()), TIMEOUT)
            .ok()
            .filter(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(&format!("at localhost:{port}")))
    })?;
    let topic = unique_topic("docker");
    let mut produce = Command::new("kcat");
    produce.args(["-b", &bootstrap, "-t", &topic, "-P", "-X", "acks=all"]).stdin(Stdio::piped());
    let mut child = produce.spawn()?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        for i in 0..100 {
            writeln!(stdin, "message-{i}")?;
        }
    }
    ensure!(child.wait()?.success(), "kcat producer failed");
    let out = run_checked(
        Command::new("kcat").args(["-b", &bootstrap, "-t", &topic, "-C", "-o", "beginning", "-e", "-q"]).stdin(Stdio::null()),
        TIMEOUT,
    )?;
    let got: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    let want: Vec<String> = (0..100).map(|i| format!("message-{i}")).collect();
    ensure!(got == want, "consumed {} lines, first {:?}", got.len(), got.first());
    println!("compose: {image} on localhost:{port} served 100 messages from kcat on the host");
    Ok(())
}
