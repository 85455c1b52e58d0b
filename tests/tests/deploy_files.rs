//! The deployment files that cannot run here (Kubernetes manifests, the monitoring
//! profile's Prometheus and Grafana files, docker/Dockerfile) are checked by
//! scripts/check-deploy.py: they parse and agree with Karst's config keys, its
//! listeners and ports, and the agreed metric names. The checker itself is shown to
//! catch a broken copy of each kind of file.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use karst_tests::{run_command, show_output, workspace_root};

const TIMEOUT: Duration = Duration::from_secs(60);

fn check(root: &Path) -> Result<Output> {
    let script = root.join("scripts/check-deploy.py");
    run_command(Command::new("python3").arg(&script).arg(root).stdin(Stdio::null()), TIMEOUT)
}

#[test]
fn deployment_files_are_consistent() -> Result<()> {
    let out = check(&workspace_root())?;
    ensure!(out.status.success(), "scripts/check-deploy.py failed (PyYAML comes with scripts/test-all.sh):\n{}", show_output(&out));
    println!("{}", String::from_utf8_lossy(&out.stdout).trim());
    Ok(())
}

/// A copy of what the checker reads, with `file`'s `from` replaced by `to`.
fn broken_copy(file: &str, from: &str, to: &str) -> Result<tempfile::TempDir> {
    let root = workspace_root();
    let dir = tempfile::tempdir()?;
    for sub in ["docker", "deploy", "scripts", "broker/src"] {
        copy_tree(&root.join(sub), &dir.path().join(sub))?;
    }
    let path = dir.path().join(file);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {file}"))?;
    ensure!(text.contains(from), "{file} has no `{from}` to break");
    std::fs::write(&path, text.replacen(from, to, 1))?;
    Ok(dir)
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[test]
fn the_checker_catches_broken_files() -> Result<()> {
    let cases = [
        ("docker/grafana/dashboards/karst.json", "karst_requests_total", "karst_request_total", "not an agreed metric name"),
        ("docker/compose.cluster.yml", "KARST_INTER_BROKER_LISTENER_NAME", "KARST_INTER_BROKER_LISTENER", "not a Karst config key"),
        ("docker/compose.yml", "KARST_LOG_DIRS", "KARST_LOG_DIRECTORY", "`log.directory` is not a Karst config key"),
        ("docker/compose.yml", "INTERNAL://karst:19092", "INTERNAL://karst:29092", "INTERNAL advertised as karst:29092"),
        ("docker/compose.cluster.yml", "CLIENT://localhost:${KARST_PORT2:-9093}", "CLIENT://localhost:9093", "CLIENT advertised as"),
        ("docker/compose.cluster.yml", "CLIENT:PLAINTEXT,INTERNAL:PLAINTEXT", "CLIENT:PLAINTEXT", "listener INTERNAL: security protocol"),
        ("docker/prometheus.yml", "karst-3:9644", "karst-3:9092", "want every broker's admin port"),
        ("deploy/k8s/statefulset.yaml", "path: /health/ready", "path: /ready", "readinessProbe must GET /health/ready"),
        ("deploy/k8s/statefulset.yaml", "1@karst-1.karst-headless", "1@karst-7.karst-headless", "voter 1@karst-7"),
        ("deploy/k8s/services.yaml", "publishNotReadyAddresses: true", "publishNotReadyAddresses: false", "publish not-ready pods"),
        (
            "deploy/k8s/pdb.yaml",
            "matchLabels:\n      app.kubernetes.io/name: karst",
            "matchLabels:\n      app.kubernetes.io/name: kafka",
            "selects no",
        ),
        ("deploy/k8s/services.yaml", "clusterIP: None", "clusterIP: [None", "does not parse"),
        ("deploy/k8s/kustomization.yaml", "pdb.yaml", "pdbs.yaml", "resource pdbs.yaml does not exist"),
    ];
    for (file, from, to, want) in cases {
        let dir = broken_copy(file, from, to)?;
        let out = check(dir.path())?;
        let text = String::from_utf8_lossy(&out.stdout);
        ensure!(!out.status.success(), "{file} with `{from}` → `{to}` passed the check:\n{}", show_output(&out));
        ensure!(text.contains(want), "{file} with `{from}` → `{to}`: no `{want}` in\n{}", show_output(&out));
    }
    println!("check-deploy caught {} broken files", cases.len());
    Ok(())
}
