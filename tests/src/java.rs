//! Programs of the Java ecosystem against a broker: the test programs in `tests/java/`
//! (run with Java's source launcher) and Kafka's own command-line tools (by main
//! class), all on the classpath `scripts/kafka-reference.sh clients` resolves.
//!
//! Where no Java or no jars can be had, [`java_command`] fails with
//! [`KafkaUnavailable`](crate::KafkaUnavailable), which tests turn into a skip.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{bail, Result};

use crate::broker::workspace_root;
use crate::clients::{run_command, show_output};
use crate::kafka::{clients_classpath, java_bin, Jars};

/// A client JVM: small heap, serial collector, C1 only (quick to start; these programs
/// measure nothing), slf4j-simple at WARN.
pub const CLIENT_JVM_OPTIONS: &[&str] = &[
    "-Xmx384m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
    "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
];

/// `java <options> -cp <clients classpath> <main>`; add the arguments.
pub fn java_command(main: &str) -> Result<Command> {
    java_command_on(Jars::Clients, main)
}

/// [`java_command`] on the classpath of `jars`.
pub fn java_command_on(jars: Jars, main: &str) -> Result<Command> {
    let classpath = clients_classpath(jars)?;
    let mut cmd = Command::new(java_bin()?);
    cmd.args(CLIENT_JVM_OPTIONS).arg("-cp").arg(classpath).arg(main).stdin(Stdio::null());
    Ok(cmd)
}

/// Runs `tests/java/<source>` with `args`; fails unless it exits 0 within `timeout`.
pub fn run_java_program(source: &str, args: &[&str], timeout: Duration) -> Result<Output> {
    let path = workspace_root().join("tests/java").join(source);
    let mut cmd = java_command(&path.display().to_string())?;
    let out = run_command(cmd.args(args), timeout)?;
    // Named without the (long) classpath.
    if !out.status.success() {
        bail!("java tests/java/{source} {} failed\n{}", args.join(" "), show_output(&out));
    }
    Ok(out)
}

/// Runs one of Kafka's tools by its main class; returns its output whatever its status.
pub fn run_kafka_tool(main_class: &str, args: &[&str], timeout: Duration) -> Result<Output> {
    let mut cmd = java_command(main_class)?;
    run_command(cmd.args(args), timeout)
}
