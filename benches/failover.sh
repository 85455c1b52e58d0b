#!/usr/bin/env bash
# Failover time of a producer and a consumer when a partition's leader goes away, with
# KIP-951 leader hints and without (issue 18, acceptance 4). One sample per row, not a
# harness.
#
#   benches/failover.sh [--rounds N] [--out FILE] [--keep] [--only EVENT,...]
#
# --keep leaves the clients' lines and the brokers' logs in the temporary directory;
# --only runs some of the events (KILL, TERM, MOVE).
#
# For each client and each way of losing the leader: a fresh three-node Karst cluster
# (each node broker and controller voter, Karst's defaults: broker.session.timeout.ms
# 9000), a topic of one partition replicated 3 times (min.insync.replicas=2), and one
# client process producing a record every 10 ms (acks=all) while consuming the
# partition from the beginning, printing a line per acknowledgement and per record
# consumed (benches/failover/). Once 200 records are acknowledged, the partition's
# leader goes, three ways: SIGKILL (a crash: the controller moves the leadership once
# the broker's session times out), SIGTERM (a controlled shutdown: the broker fences
# itself and the leadership moves at once) and MOVE (`karst topic reassign` to the two
# followers: the leadership moves while the old leader stays up, and answers what
# still comes to it NOT_LEADER_OR_FOLLOWER, the one case where a hint can tell a client
# more than a disconnect). Measured from that moment: the producer's next
# acknowledgement and the consumer's next record past the last one it had read, and
# the longest pause between consecutive acknowledgements (records) from then on.
#
# Clients: the Java client 4.4 and confluent-kafka's librdkafka (2.5+), which follow the
# leader hints in Produce responses, each against Karst and against a Karst built
# without the hints (feature karst-broker/bench-no-leader-hints: the same client with
# and without them); and kcat on Debian's librdkafka 2.0.2, from before KIP-951. Needs
# java, kcat, stdbuf, setsid and python3 with confluent-kafka; Kafka's client jars via
# scripts/kafka-reference.sh. KARST_BIN and KARST_BIN_NO_HINTS name the two broker
# binaries (default: both built in release, CARGO_TARGET_DIR as benches/run.sh).
# Writes benches/results/<UTC date>-failover.md. Every process started here is stopped
# on exit (servers by PID, each client by its process group); every client run is
# bounded. About 2.5 minutes a round on the 2-core reference machine.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

rounds=1
keep=0
only=KILL,TERM,MOVE
out="$here/results/$(date -u +%F)-failover.md"
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --keep) keep=1; shift ;;
        --only) only="$2"; shift 2 ;;
        *) echo "usage: $0 [--rounds N] [--out FILE] [--keep] [--only EVENT,...]" >&2; exit 2 ;;
    esac
done
run_secs=60        # the longest a client runs
ack_before=200     # acknowledgements before the leader goes
ack_after=50       # acknowledgements (and records) after the signal before a run stops

log() { echo "[failover.sh] $*" >&2; }
for tool in java kcat stdbuf setsid python3; do
    command -v "$tool" >/dev/null || { log "needs $tool on PATH"; exit 1; }
done
python3 -c 'import confluent_kafka' 2>/dev/null || { log "needs python3 with confluent-kafka"; exit 1; }

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/target-bench}"
if [ -z "${KARST_BIN_NO_HINTS:-}" ]; then
    log "building karst without leader hints (release)"
    nice -n 10 cargo build --release --bin karst --features karst-broker/bench-no-leader-hints >&2
    KARST_BIN_NO_HINTS="$CARGO_TARGET_DIR/release/karst-no-leader-hints"
    cp "$CARGO_TARGET_DIR/release/karst" "$KARST_BIN_NO_HINTS"
fi
if [ -z "${KARST_BIN:-}" ]; then
    log "building karst (release)"
    nice -n 10 cargo build --release --bin karst >&2
    KARST_BIN="$CARGO_TARGET_DIR/release/karst"
fi
clients_cp="$(cat "$(bash scripts/kafka-reference.sh clients)")"
rdkafka_version="$(python3 -c 'import confluent_kafka; print(confluent_kafka.libversion()[0])')"
kcat_librdkafka="$(kcat -V 2>&1 | sed -n 's/.*librdkafka \([0-9.]*\).*/\1/p' | head -1)"

work="$(mktemp -d "${TMPDIR:-/tmp}/karst-failover.XXXXXX")"
pids=()
client_pid=""
stop_all() {
    local pid i
    # The client and anything it started (kcat) form one process group.
    if [ -n "$client_pid" ]; then
        kill -KILL -- "-$client_pid" 2>/dev/null || true
        wait "$client_pid" 2>/dev/null || true
    fi
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    pids=()
    client_pid=""
}
cleanup() {
    stop_all
    if [ "$keep" = 1 ]; then log "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Ports below the ephemeral range, free now.
free_port() {
    python3 -c '
import random, socket
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
while True:
    p = random.randrange(10000, low)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass
    finally:
        s.close()'
}

declare -A node_pid node_addr
karst_cli() { timeout 30 "$KARST_BIN" "$@"; }

# Starts nodes 1..3 of broker binary $2 in $work/run-$1; returns once Metadata lists
# all three.
start_cluster() {
    local dir="$work/run-$1" bin="$2" voters="" i port cport
    declare -A cports
    for i in 1 2 3; do
        cports[$i]=$(free_port)
        voters+="${voters:+,}$i@127.0.0.1:${cports[$i]}"
    done
    for i in 1 2 3; do
        port=$(free_port)
        node_addr[$i]="127.0.0.1:$port"
        mkdir -p "$dir/node$i"
        env $(env | sed -n 's/^\(KARST_[A-Za-z0-9_]*\)=.*/-u \1/p') KARST_LOG=warn \
            "$bin" serve --node-id "$i" --listen "${node_addr[$i]}" --data-dir "$dir/node$i" \
            --controller-listen "127.0.0.1:${cports[$i]}" --controller-quorum-voters "$voters" \
            --admin-listen 127.0.0.1:0 >"$dir/node$i.log" 2>&1 &
        node_pid[$i]=$!
        pids+=($!)
    done
    bootstrap="${node_addr[1]},${node_addr[2]},${node_addr[3]}"
    for ((i = 0; i < 240; i++)); do
        if [ "$(timeout 5 kcat -L -b "$bootstrap" -m 2 2>/dev/null | grep -c '^ *broker [0-9]* at')" = 3 ]; then return 0; fi
        sleep 0.25
    done
    log "the cluster did not come up; logs in $dir"
    tail -20 "$dir"/node*.log >&2
    exit 1
}

leader_of() {
    karst_cli topic describe "$1" --bootstrap-server "$bootstrap" --output json |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["partitions"][0]["leader"])'
}

now_ms() { date +%s%3N; }

count() { grep -c "^$1 " "$2" 2>/dev/null || true; }

# run_one <client> <broker binary> <signal> <label>: writes "producer_ms consumer_ms"
# (or "-" for either not seen) to $work/<label>.result.
run_one() {
    local client="$1" bin="$2" sig="$3" label="$4" topic leader killed_at i lines acks recs
    start_cluster "$label" "$bin"
    topic="failover-$label"
    karst_cli topic create "$topic" --partitions 1 --replication-factor 3 --config min.insync.replicas=2 \
        --bootstrap-server "$bootstrap" >/dev/null
    for ((i = 0; i < 120; i++)); do
        leader=$(leader_of "$topic" 2>/dev/null || true)
        [ -n "$leader" ] && [ "$leader" -ge 1 ] 2>/dev/null && break
        sleep 0.25
    done
    lines="$work/$label.lines"
    # setsid: the client leads its own process group, stopped as one.
    case "$client" in
        java) setsid java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
            -cp "$clients_cp" "$here/failover/FailoverClient.java" "$bootstrap" "$topic" "$run_secs" >"$lines" 2>"$work/$label.err" & ;;
        confluent|kcat) setsid python3 "$here/failover/failover_client.py" "$client" "$bootstrap" "$topic" "$run_secs" \
            >"$lines" 2>"$work/$label.err" & ;;
    esac
    client_pid=$!
    for ((i = 0; i < 600; i++)); do
        [ "$(count ACK "$lines")" -ge "$ack_before" ] && break
        kill -0 "$client_pid" 2>/dev/null || break
        sleep 0.05
    done
    leader=$(leader_of "$topic")
    acks=$(count ACK "$lines")
    recs=$(count REC "$lines")
    killed_at=$(now_ms)
    if [ "$sig" = MOVE ]; then
        karst_cli topic reassign "$topic" --partition 0 --replicas "$(printf '%s\n' 1 2 3 | grep -vx "$leader" | paste -sd,)" \
            --bootstrap-server "$bootstrap" >/dev/null
        log "$label: partition moved off leader $leader at $killed_at"
    else
        kill "-$sig" "${node_pid[$leader]}"
        log "$label: leader $leader sent SIG$sig at $killed_at"
    fi
    # Until traffic has flowed again for a while (or the client's time is up).
    while kill -0 "$client_pid" 2>/dev/null; do
        [ "$(count ACK "$lines")" -ge $((acks + ack_after)) ] && [ "$(count REC "$lines")" -ge $((recs + ack_after)) ] && break
        sleep 0.1
    done
    stop_all
    python3 - "$lines" "$killed_at" >"$work/$label.result" <<'EOF'
import sys
path, killed = sys.argv[1], int(sys.argv[2])
acks, recs = [], []
for l in open(path):
    f = l.split()
    if len(f) >= 3 and f[0] in ("ACK", "REC"):
        (acks if f[0] == "ACK" else recs).append((int(f[1]), int(f[2])))
before = [o for t, o in recs if t <= killed]
last = max(before) if before else -1


def first_and_pause(times):
    """ms from the event to the first time after it, and the longest gap between
    consecutive times from the last one before it on ("-" where none came after)."""
    times = sorted(times)
    after = [t for t in times if t > killed]
    if not after:
        return "-", "-"
    prev = max([t for t in times if t <= killed], default=killed)
    return str(after[0] - killed), str(max(b - a for a, b in zip([prev] + after, after)))


p = first_and_pause([t for t, _ in acks])
c = first_and_pause([t for t, o in recs if o > last])
print(*p, *c)
EOF
}

# Rows: client, which broker build.
rows=(java/hints java/none confluent/hints confluent/none kcat/hints)
declare -A names=(
    [java/hints]="Java client 4.4, hints in the responses"
    [java/none]="Java client 4.4, a build without hints"
    [confluent/hints]="librdkafka $rdkafka_version (confluent-kafka), hints in the responses"
    [confluent/none]="librdkafka $rdkafka_version (confluent-kafka), a build without hints"
    [kcat/hints]="librdkafka $kcat_librdkafka (kcat, before KIP-951: ignores the hints)"
)
IFS=, read -r -a events <<<"$only"
declare -A what=([KILL]="SIGKILL" [TERM]="SIGTERM" [MOVE]="moved (reassigned)")
declare -A results
for sig in "${events[@]}"; do
    for row in "${rows[@]}"; do
        client="${row%/*}"
        bin="$KARST_BIN"
        [ "${row#*/}" = none ] && bin="$KARST_BIN_NO_HINTS"
        for ((r = 1; r <= rounds; r++)); do
            label="$client-${row#*/}-$sig-$r"
            run_one "$client" "$bin" "$sig" "$label"
            res="$(cat "$work/$label.result")"
            log "$label: producer next ack, longest pause; consumer next record, longest pause (ms): $res"
            results[$row-$sig-$r]="$res"
        done
    done
done

{
    echo "# Failover: producer and consumer when a partition's leader goes ($(date -u +%F))"
    echo
    echo "\`benches/failover.sh --rounds $rounds\` on $(nproc) cores; brokers: \`$KARST_BIN\` and, without the hints,"
    echo "\`$KARST_BIN_NO_HINTS\`."
    echo "Three Karst nodes (broker and controller each, defaults: broker.session.timeout.ms 9000),"
    echo "one partition replicated 3 times, min.insync.replicas 2; one record every 10 ms, acks=all."
    echo "Milliseconds from the moment the leader goes to the producer's next acknowledgement (the"
    echo "consumer's next new record), and the longest pause between consecutive ones from then on;"
    echo "rounds separated by commas."
    echo
    echo "| leader lost by | client | producer: next ack | producer: longest pause | consumer: next record | consumer: longest pause |"
    echo "|---|---|---|---|---|---|"
    for sig in "${events[@]}"; do
        for row in "${rows[@]}"; do
            cols=("" "" "" "")
            for ((r = 1; r <= rounds; r++)); do
                read -r -a res <<<"${results[$row-$sig-$r]}"
                for k in 0 1 2 3; do cols[k]+="${cols[k]:+, }${res[k]:--}"; done
            done
            echo "| ${what[$sig]} | ${names[$row]} | ${cols[0]} | ${cols[1]} | ${cols[2]} | ${cols[3]} |"
        done
    done
} >"$out"
log "wrote $out"
cat "$out"
