//! What a new user sees on stderr at start-up: Karst's own lines at info, its
//! dependencies (openraft prints whole state structs at info) only from warn,
//! unless `KARST_LOG` or `RUST_LOG` asks for more.
//!
//! One test in this file: it sets the log variables of its own process, which
//! the brokers it starts inherit.

use std::time::Duration;

use anyhow::{ensure, Result};
use karst_tests::{wait_until, Broker};

const STARTED: &str = "broker started";

/// Waits until the broker has logged its start-up line, then returns its stderr.
fn startup_log(broker: &Broker) -> Result<String> {
    wait_until("the broker's start-up log line", Duration::from_secs(30), || {
        std::fs::read_to_string(broker.stderr_log()).is_ok_and(|t| t.contains(STARTED))
    })?;
    Ok(std::fs::read_to_string(broker.stderr_log())?)
}

fn openraft_info_lines(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains(" INFO ") && l.contains("openraft")).collect()
}

#[test]
fn dependencies_log_at_warn_by_default_and_the_environment_overrides() -> Result<()> {
    std::env::remove_var("KARST_LOG");
    std::env::remove_var("RUST_LOG");
    let broker = Broker::start(&[])?;
    let log = startup_log(&broker)?;
    ensure!(log.lines().any(|l| l.contains(" INFO ") && l.contains("karst")), "Karst's own info lines are kept:\n{log}");
    let noisy = openraft_info_lines(&log);
    ensure!(noisy.is_empty(), "openraft INFO lines at default verbosity:\n{}", noisy.join("\n"));
    drop(broker);

    std::env::set_var("RUST_LOG", "info");
    let broker = Broker::start(&[])?;
    let log = startup_log(&broker)?;
    ensure!(!openraft_info_lines(&log).is_empty(), "RUST_LOG=info shows openraft's info lines again:\n{log}");
    Ok(())
}
