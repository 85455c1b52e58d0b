//! The container image (a static binary FROM scratch, built by docker/build-image.sh)
//! under docker/compose.yml: a client on the host produces and consumes through the
//! published port. Skipped, saying why, where no Docker engine or image is present.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{ensure, Result};
use karst_tests::cluster::free_ports;
use karst_tests::{kcat_consume, kcat_produce, run_checked, run_command, unique_topic, wait_for, workspace_root};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Takes the compose project down (with its volumes) however the test ends.
struct Project {
    name: String,
    file: &'static str,
    ports: Vec<u16>,
}

impl Project {
    fn compose(&self) -> Command {
        let mut c = Command::new("docker-compose");
        c.arg("-p").arg(&self.name).arg("-f").arg(workspace_root().join(self.file)).stdin(Stdio::null());
        c.env("KARST_PORT", self.ports[0].to_string());
        for (i, p) in self.ports.iter().enumerate() {
            c.env(format!("KARST_PORT{}", i + 1), p.to_string());
        }
        c
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        match run_command(self.compose().args(["down", "-v", "--timeout", "20"]), TIMEOUT) {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!("docker-compose down failed:\n{}", karst_tests::show_output(&out)),
            Err(e) => eprintln!("docker-compose down failed: {e:#}"),
        }
    }
}

/// Where Docker and the image are present: the image; otherwise why not.
fn image() -> Result<String, &'static str> {
    let engine = Command::new("docker").arg("info").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !engine.is_ok_and(|s| s.success()) {
        return Err("no Docker engine answers `docker info` here");
    }
    std::env::var("KARST_IMAGE").map_err(|_| "KARST_IMAGE is not set (scripts/test-all.sh builds it with docker/build-image.sh)")
}

#[test]
fn compose_runs_one_broker_that_host_clients_reach() -> Result<()> {
    let image = match image() {
        Ok(i) => i,
        Err(why) => {
            println!("skipped: {why}");
            return Ok(());
        }
    };
    let port = free_ports(1)?[0];
    let project = Project { name: unique_topic("karstci").replace('-', ""), file: "docker/compose.yml", ports: vec![port] };
    run_checked(project.compose().env("KARST_IMAGE", &image).args(["up", "-d"]), TIMEOUT)?;
    let bootstrap = format!("localhost:{port}");
    wait_for("the broker in the container to answer", TIMEOUT, || {
        run_command(Command::new("kcat").args(["-b", &bootstrap, "-L", "-m", "2"]).stdin(Stdio::null()), TIMEOUT)
            .ok()
            .filter(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(&format!("at localhost:{port}")))
    })?;
    let topic = unique_topic("docker");
    let want: Vec<String> = (0..100).map(|i| format!("message-{i}")).collect();
    kcat_produce(&bootstrap, &topic, &want, "all")?;
    let got = kcat_consume(&bootstrap, &topic)?;
    ensure!(got == want, "consumed {} lines, first {:?}", got.len(), got.first());
    println!("compose: {image} on localhost:{port} served 100 messages from kcat on the host");
    Ok(())
}

/// The compose network's name and a `docker run` on it with the image's `karst`.
fn karst_on_network(project: &Project, image: &str) -> Command {
    let mut c = Command::new("docker");
    c.args(["run", "--rm", "-i", "--network", &format!("{}_default", project.name), "--entrypoint", "/karst", image]);
    c
}

/// `karst produce` in a container on the compose network, one value per line on stdin.
fn container_produce(project: &Project, image: &str, bootstrap: &str, topic: &str, lines: &[String]) -> Result<()> {
    use std::io::Write;
    let mut child = karst_on_network(project, image)
        .args(["produce", "--bootstrap-server", bootstrap, topic])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    {
        let mut stdin = child.stdin.take().expect("stdin");
        for l in lines {
            writeln!(stdin, "{l}")?;
        }
    }
    let out = child.wait_with_output()?;
    ensure!(out.status.success(), "karst produce via {bootstrap} in a container failed:\n{}", karst_tests::show_output(&out));
    Ok(())
}

/// `karst consume` in a container on the compose network: `n` values from the beginning.
fn container_consume(project: &Project, image: &str, bootstrap: &str, topic: &str, n: usize) -> Result<Vec<String>> {
    let out = run_checked(
        karst_on_network(project, image)
            .args(["consume", "--bootstrap-server", bootstrap, topic, "--from", "beginning"])
            .args(["--max-messages", &n.to_string(), "--timeout-ms", "30000"])
            .stdin(Stdio::null()),
        TIMEOUT,
    )?;
    Ok(String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect())
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn compose_cluster_keeps_a_replicated_topic_through_a_docker_kill() -> Result<()> {
    let image = match image() {
        Ok(i) => i,
        Err(why) => {
            println!("skipped: {why}");
            return Ok(());
        }
    };
    let ports = free_ports(3)?;
    let project = Project { name: unique_topic("karstcl").replace('-', ""), file: "docker/compose.cluster.yml", ports: ports.clone() };
    run_checked(project.compose().env("KARST_IMAGE", &image).args(["up", "-d"]), TIMEOUT)?;
    let bootstrap = ports.iter().map(|p| format!("localhost:{p}")).collect::<Vec<_>>().join(",");
    // Node ids come from the host names (karst-1..3); each CLIENT listener is
    // advertised as the port published on the host.
    let listed = wait_for("three brokers in Metadata", TIMEOUT, || {
        run_command(Command::new("kcat").args(["-b", &bootstrap, "-L", "-m", "2"]).stdin(Stdio::null()), TIMEOUT)
            .ok()
            .filter(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(" 3 brokers:"))
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    })?;
    for (i, p) in ports.iter().enumerate() {
        ensure!(listed.contains(&format!("broker {} at localhost:{p}", i + 1)), "broker {} not at localhost:{p}:\n{listed}", i + 1);
    }
    let topic = unique_topic("replicated");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", ports[0]).parse()?;
    karst_tests::raw::RawClient::connect(addr)?.create_replicated(&topic, 3, 3, &[("min.insync.replicas", "2")])?;
    let mut want: Vec<String> = (0..100).map(|i| format!("before-{i}")).collect();
    kcat_produce(&bootstrap, &topic, &want, "all")?;

    // Clients inside the compose network bootstrap from the INTERNAL listeners by
    // service name, with the image's own `karst produce` / `karst consume`.
    let inside: Vec<String> = (0..50).map(|i| format!("inside-{i}")).collect();
    container_produce(&project, &image, "karst-1:19092", &topic, &inside)?;
    want.extend(inside);
    let got = container_consume(&project, &image, "karst-2:19092", &topic, want.len())?;
    ensure!(sorted(got.clone()) == sorted(want.clone()), "consumed in a container via karst-2:19092: {} of {}", got.len(), want.len());

    // docker kill: SIGKILL, no controlled shutdown.
    let id = run_checked(project.compose().env("KARST_IMAGE", &image).args(["ps", "-q", "karst-1"]), TIMEOUT)?;
    let id = String::from_utf8_lossy(&id.stdout).trim().to_string();
    ensure!(!id.is_empty(), "no container for karst-1");
    run_checked(Command::new("docker").args(["kill", &id]).stdin(Stdio::null()), TIMEOUT)?;
    let rest = ports[1..].iter().map(|p| format!("localhost:{p}")).collect::<Vec<_>>().join(",");
    let after: Vec<String> = (0..100).map(|i| format!("after-{i}")).collect();
    kcat_produce(&rest, &topic, &after, "all")?;
    want.extend(after);
    let inside: Vec<String> = (0..50).map(|i| format!("inside-after-{i}")).collect();
    container_produce(&project, &image, "karst-2:19092,karst-3:19092", &topic, &inside)?;
    want.extend(inside);
    let got = container_consume(&project, &image, "karst-3:19092", &topic, want.len())?;
    ensure!(sorted(got.clone()) == sorted(want.clone()), "after docker kill, in a container: {} of {}", got.len(), want.len());
    let got = kcat_consume(&rest, &topic)?;
    ensure!(sorted(got.clone()) == sorted(want.clone()), "after docker kill of node 1: consumed {} of {} records", got.len(), want.len());
    println!(
        "compose cluster: {image}, {} records on a replication-factor-3 topic (min.insync.replicas 2), some after docker kill of node 1, produced and consumed from the host and from containers on the compose network",
        want.len()
    );
    Ok(())
}
