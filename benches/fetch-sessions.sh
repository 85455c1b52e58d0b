#!/usr/bin/env bash
# KIP-227 fetch sessions on and off: broker and client CPU per fetched record when a
# consumer reads a topic of many partitions (1,000) of which only a few get records.
# One sample per cell, not a harness.
#
#   benches/fetch-sessions.sh [--partitions N] [--records N] [--rate R] [--out FILE]
#
# For each setting (sessions on: `max.incremental.fetch.session.cache.slots=1000`, the
# default; off: `=0`) a fresh Karst (release build, otherwise its defaults) is started,
# and for each consumer a new topic of N partitions is created and read from the
# beginning by the consumer over all its partitions (no group) while a producer (kcat)
# sends R records of 100 bytes per second under 4 keys, i.e. to at most 4 partitions,
# until the consumer has read all of them. Consumers: librdkafka (kcat -C; librdkafka
# has no fetch sessions, so this line is the control) and the Java client 4.4
# (tests/java/FetchSessionsCheck.java), which fetches incrementally when it can; and,
# first, the producer alone (no consumer), whose broker CPU the consumer rows share.
# Broker CPU is utime+stime from /proc/<pid>/stat between the producer's start and the
# consumer's exit; client CPU is the consumer process's (kcat: /usr/bin/time; Java: the
# JVM's process CPU from the consumer's creation on, as the program reports it). Writes
# benches/results/<UTC date>-fetch-sessions.md. Every process started here is stopped on
# exit (by PID); every client run is bounded by a timeout. About 2 minutes.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

partitions=1000
records=20000
rate=2000
out="$here/results/$(date -u +%F)-fetch-sessions.md"
while [ $# -gt 0 ]; do
    case "$1" in
        --partitions) partitions="$2"; shift 2 ;;
        --records) records="$2"; shift 2 ;;
        --rate) rate="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        *) echo "usage: $0 [--partitions N] [--records N] [--rate R] [--out FILE]" >&2; exit 2 ;;
    esac
done
client_timeout=120

log() { echo "[fetch-sessions.sh] $*" >&2; }
for tool in kcat python3 curl /usr/bin/time; do
    command -v "$tool" >/dev/null || { log "needs $tool"; exit 1; }
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/target-bench}"
work="$(mktemp -d "${TMPDIR:-/tmp}/karst-fetch-sessions.XXXXXX")"
pids=()
stop_all() {
    local pid i
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    pids=()
}
cleanup() {
    stop_all
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "building karst (release)"
nice -n 10 cargo build --release --bin karst >&2
karst_bin="$CARGO_TARGET_DIR/release/karst"
clients_cp=""
if command -v java >/dev/null && file=$(bash scripts/kafka-reference.sh clients 2>/dev/null); then
    clients_cp="$(cat "$file")"
else
    log "no Java client jars: the Java line is skipped"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
ticks_per_s=$(getconf CLK_TCK)
metric() { # metric <admin addr> <name with labels> -> value (0 if absent)
    curl -s "http://$1/metrics" | awk -v n="$2" '$1 == n {print $2; found=1} END {if (!found) print 0}'
}

# Starts Karst with `slots` fetch-session slots; sets karst_addr, admin_addr, karst_pid.
start_karst() {
    local slots="$1" i
    karst_addr="127.0.0.1:$(free_port)"
    rm -rf "$work/data" && mkdir -p "$work/data"
    : >"$work/karst-$slots.out"
    env $(env | sed -n 's/^\(KARST_[A-Za-z0-9_]*\)=.*/-u \1/p') KARST_LOG=warn \
        "$karst_bin" serve --listen "$karst_addr" --data-dir "$work/data" --admin-listen 127.0.0.1:0 \
        --set "max.incremental.fetch.session.cache.slots=$slots" >"$work/karst-$slots.out" 2>"$work/karst-$slots.log" &
    karst_pid=$!
    pids+=("$karst_pid")
    admin_addr=""
    for ((i = 0; i < 240; i++)); do
        admin_addr=$(sed -n 's/.*Karst admin listening on //p' "$work/karst-$slots.out" | head -1)
        if [ -n "$admin_addr" ] && timeout 5 kcat -L -b "$karst_addr" -m 2 2>/dev/null | grep -q '^ *broker [0-9]* at'; then return 0; fi
        kill -0 "$karst_pid" 2>/dev/null || { log "karst exited:"; tail -20 "$work/karst-$slots.log" >&2; exit 1; }
        sleep 0.25
    done
    log "karst not ready"
    exit 1
}

# Sends `records` lines "k<i%4>:<100 bytes>" at `rate` per second into kcat -P.
produce() {
    local topic="$1"
    python3 - "$records" "$rate" <<'EOF' | kcat -P -b "$karst_addr" -t "$topic" -K: -X linger.ms=5 2>>"$work/producer.log"
import sys, time
n, rate = int(sys.argv[1]), float(sys.argv[2])
value = "x" * 100
start, sent = time.monotonic(), 0
while sent < n:
    due = min(n, int((time.monotonic() - start) * rate) + 1)
    while sent < due:
        sys.stdout.write(f"k{sent % 4}:{value}\n")
        sent += 1
    sys.stdout.flush()
    time.sleep(0.01)
EOF
}

# One measurement: prints "broker_cpu_s client_cpu_s fetches sent omitted".
run() {
    local client="$1" topic="$2" cons_pid fetches0 cpu0 cpu1 client_cpu fetched i
    "$karst_bin" topic create "$topic" --partitions "$partitions" -b "$karst_addr" >/dev/null
    fetches0=$(metric "$admin_addr" 'karst_requests_total{api="Fetch"}')
    case "$client" in
        none)
            # The producer alone: the broker CPU every consumer row shares.
            cpu0=$(cpu_ticks "$karst_pid")
            produce "$topic"
            cpu1=$(cpu_ticks "$karst_pid")
            python3 -c "print(($cpu1 - $cpu0) / $ticks_per_s, 0, 0, 0, 0)"
            return 0
            ;;
        librdkafka)
            timeout "$client_timeout" /usr/bin/time -f "%U %S" -o "$work/time" \
                kcat -C -b "$karst_addr" -t "$topic" -o beginning -c "$records" -q >/dev/null 2>>"$work/consumer.log" &
            ;;
        java)
            timeout "$client_timeout" java -Xmx384m -XX:+UseSerialGC -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$clients_cp" \
                "$root/tests/java/FetchSessionsCheck.java" "$karst_addr" "$topic" "$partitions" "$records" 0 >"$work/java.out" 2>>"$work/consumer.log" &
            ;;
    esac
    cons_pid=$!
    # The consumer is fetching (a few rounds over every partition) before records flow.
    for ((i = 0; i < 600; i++)); do
        fetched=$(metric "$admin_addr" 'karst_requests_total{api="Fetch"}')
        python3 -c "import sys; sys.exit(0 if float('$fetched') >= float('$fetches0') + 3 else 1)" && break
        kill -0 "$cons_pid" 2>/dev/null || break
        sleep 0.1
    done
    local s0 o0 f0
    s0=$(metric "$admin_addr" karst_fetch_session_partitions_sent_total)
    o0=$(metric "$admin_addr" karst_fetch_session_partitions_omitted_total)
    f0=$(metric "$admin_addr" 'karst_requests_total{api="Fetch"}')
    cpu0=$(cpu_ticks "$karst_pid")
    produce "$topic"
    wait "$cons_pid" || { log "$client consumer failed:"; tail -5 "$work/consumer.log" >&2; return 1; }
    cpu1=$(cpu_ticks "$karst_pid")
    case "$client" in
        librdkafka) client_cpu=$(awk '{print $1 + $2}' "$work/time") ;;
        java) client_cpu=$(sed -n 's/.*cpu_ms=\([0-9]*\).*/\1/p' "$work/java.out" | awk '{print $1 / 1000}') ;;
    esac
    python3 -c "print(($cpu1 - $cpu0) / $ticks_per_s, $client_cpu,
        $(metric "$admin_addr" 'karst_requests_total{api="Fetch"}') - $f0,
        $(metric "$admin_addr" karst_fetch_session_partitions_sent_total) - $s0,
        $(metric "$admin_addr" karst_fetch_session_partitions_omitted_total) - $o0)"
}

clients=(none librdkafka)
[ -n "$clients_cp" ] && clients+=(java)
declare -A result
started=$(date -u +%FT%TZ)
t_start=$(date +%s)
for mode in on off; do
    slots=1000
    [ "$mode" = off ] && slots=0
    start_karst "$slots"
    log "sessions $mode (slots=$slots): karst on $karst_addr"
    for client in "${clients[@]}"; do
        log "  $client: $records records at $rate/s into 4 of $partitions partitions"
        if r=$(run "$client" "fs-$client-$mode"); then
            result[$client,$mode]="$r"
            log "    broker cpu s, client cpu s, fetches, partitions sent, omitted: $r"
        else
            result[$client,$mode]=""
        fi
    done
    stop_all
done
elapsed=$(($(date +%s) - t_start))

row() { # row <client> <mode>
    python3 - "${result[$1,$2]}" "${result[none,$2]}" "$records" "$1" "$2" <<'EOF'
import sys
r, base, n, client, mode = sys.argv[1].split(), sys.argv[2].split(), int(sys.argv[3]), sys.argv[4], sys.argv[5]
if client == "none":
    if r:
        print(f"| none (producer only) | {mode} | {float(r[0]) * 1e6 / n:,.1f} | | | | | {float(r[0]):.2f} / – |")
    else:
        print(f"| none (producer only) | {mode} | failed | | | | | |")
elif not r:
    print(f"| {client} | {mode} | failed | | | | | |")
else:
    b, c, f, s, o = (float(x) for x in r)
    extra = f"{(b - float(base[0])) * 1e6 / n:,.1f}" if base else "–"
    inc = f"{s:,.0f} / {o:,.0f}" if s or o else "– (no session)"
    print(f"| {client} | {mode} | {b * 1e6 / n:,.1f} | {extra} | {c * 1e6 / n:,.1f} | {f:,.0f} | {inc} | {b:.2f} / {c:.2f} |")
EOF
}

mkdir -p "$(dirname "$out")"
{
    echo "# Fetch sessions on and off ($(date -u +%F))"
    echo
    echo "\`benches/fetch-sessions.sh\` (topic of $partitions partitions; $records records of 100 bytes at $rate/s under"
    echo "4 keys, so into at most 4 partitions, read from the beginning by one consumer of every"
    echo "partition), started $started, measured in $elapsed s. One sample per cell on a shared $(nproc)-core"
    echo "machine. CPU per record: CPU time over the records read. Broker CPU counts from the"
    echo "producer's start to the consumer's exit, the producer's load included; \"of which the"
    echo "consumer\" subtracts the producer-only row of the same setting. Client CPU is the"
    echo "consumer process's."
    echo
    echo "| consumer | sessions | broker CPU µs/record | of which the consumer | client CPU µs/record | Fetch requests | incremental: partitions sent / omitted | broker / client CPU s |"
    echo "|---|---|---:|---:|---:|---:|---|---|"
    for client in "${clients[@]}"; do
        row "$client" on
        row "$client" off
    done
    cat <<EOF

- Karst $(git -C "$root" rev-parse --short HEAD) (release), default settings but
  \`max.incremental.fetch.session.cache.slots\` (\`on\`: 1000, the default; \`off\`: 0).
- librdkafka: $(kcat -V 2>&1 | sed -n 's/.*librdkafka \([0-9][^ ]*\).*/\1/p' | head -1) (kcat -C, all partitions, no group). librdkafka does not
  implement KIP-227: every fetch has session id 0 and epoch -1 and names every partition,
  so \`on\` and \`off\` are the same for it (the control).
- Java: kafka-clients 4.4 (tests/java/FetchSessionsCheck.java, \`assign\` of every
  partition, fetch.max.wait.ms 500); with sessions it sends one full fetch and then
  incremental ones; with 0 slots every fetch is full (1,000 partitions each way).
EOF
} >"$out"
log "wrote $out"
cat "$out"
