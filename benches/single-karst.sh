# Sourced by benches/quotas.sh and benches/tls.sh: one release Karst on loopback.
#   single_karst_setup NAME   builds karst (unless KARST_BIN is set), makes $work and
#                             the exit trap that stops the broker and removes $work
#   free_port                 a free 127.0.0.1 port
#   single_karst_start ARGS   starts `karst serve --data-dir $work/data ARGS` (the
#                             caller's KARST_* settings kept from it) and waits until
#                             it listens
# shellcheck shell=bash

single_karst_setup() {
    local name="$1"
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/target-bench}"
    if [ -z "${KARST_BIN:-}" ]; then
        echo "[$name] building karst (release)" >&2
        nice -n 10 cargo build --release -p karst --bin karst >&2
    fi
    KARST_BIN="${KARST_BIN:-$CARGO_TARGET_DIR/release/karst}"
    work="$(mktemp -d "${TMPDIR:-/tmp}/karst-$name.XXXXXX")"
    karst_pid=""
    trap single_karst_cleanup EXIT
    trap 'exit 130' INT TERM
}

single_karst_cleanup() {
    if [ -n "$karst_pid" ]; then
        kill -TERM "$karst_pid" 2>/dev/null || true
        wait "$karst_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

single_karst_start() {
    local i
    env $(env | sed -n 's/^\(KARST_[A-Za-z0-9_]*\)=.*/-u \1/p') KARST_LOG=info \
        "$KARST_BIN" serve --data-dir "$work/data" --admin-listen 127.0.0.1:0 "$@" \
        >"$work/karst.out" 2>"$work/karst.log" &
    karst_pid=$!
    for ((i = 0; i < 600; i++)); do
        grep -q '^Karst listening on' "$work/karst.out" 2>/dev/null && return 0
        kill -0 "$karst_pid" 2>/dev/null || { echo "karst exited:" >&2; tail -20 "$work/karst.log" >&2; exit 1; }
        sleep 0.1
    done
    echo "karst not listening after 60 s" >&2
    exit 1
}
