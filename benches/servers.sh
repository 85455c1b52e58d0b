# Sourced by benches/clients.sh, transactions.sh and groups.sh: brokers started by the
# script, stopped on exit.
#   servers_setup NAME   exports CARGO_TARGET_DIR (default /tmp/target-bench), makes
#                        $work (removed on exit) and the empty list $pids; every PID
#                        the caller appends to it is stopped by stop_servers and on exit
#   stop_servers         SIGTERM to each, then SIGKILL to any still there after 30 s
# shellcheck shell=bash

servers_setup() {
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/target-bench}"
    work="$(mktemp -d "${TMPDIR:-/tmp}/karst-$1.XXXXXX")"
    pids=()
    trap servers_cleanup EXIT
    trap 'exit 130' INT TERM
}

stop_servers() {
    local pid i
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    # Kafka shuts down cleanly in a few seconds; anything still there after 30 s is killed.
    for pid in "${pids[@]}"; do
        for ((i = 0; i < 300; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    pids=()
}

servers_cleanup() {
    stop_servers
    rm -rf "$work"
}
