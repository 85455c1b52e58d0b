#!/usr/bin/env bash
# Transactional produce throughput against Karst and against Apache Kafka, same machine,
# same run (issue 19, acceptance 5): records/s, MB/s and commit latency at 1, 10 and 100
# records per transaction. One sample per cell, not a harness.
#
#   benches/transactions.sh [--transactions N] [--warmup N] [--max-seconds S] [--sizes 1,10,100]
#                           [--bytes B] [--out FILE]
#
# --transactions: measured transactions per point and broker (default 1000); --warmup:
# unmeasured transactions before them in the same producer (default 100); --max-seconds:
# a point stops measuring after S seconds even if fewer transactions are done (default
# 60; the table says how many were); --sizes: records per transaction; --bytes: record
# value size (default 100).
#
# Starts a fresh Karst (release build, its defaults: fsync before every acknowledgement)
# and a single-node Apache Kafka 4.4 (KRaft, Kafka's broker JVM settings as
# benches/clients.sh, its defaults: no fsync on acknowledgement) on free 127.0.0.1 ports
# with data in a temporary directory, both running for the whole measurement. Each
# broker first takes one unrecorded run (Kafka's JIT). Then for each point, Karst first
# and Kafka right after: benches/transactions/TxnBench.java creates a new topic of one
# partition (replication factor 1), and one transactional producer (acks=all) runs
# begin / send N records / commitTransaction in a loop. The run fails unless the topic's
# last stable offset afterwards counts every record and one marker per transaction.
# Writes benches/results/<UTC date>-transactions.md. Every server started here is
# stopped on exit (by PID); every client run is bounded by a timeout. About 5 minutes
# with the defaults once built.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

transactions=1000
warmup=100
max_seconds=60
sizes=1,10,100
bytes=100
out="$here/results/$(date -u +%F)-transactions.md"
usage="usage: $0 [--transactions N] [--warmup N] [--max-seconds S] [--sizes 1,10,100] [--bytes B] [--out FILE]"
while [ $# -gt 0 ]; do
    case "$1" in
        --transactions) transactions="$2"; shift 2 ;;
        --warmup) warmup="$2"; shift 2 ;;
        --max-seconds) max_seconds="$2"; shift 2 ;;
        --sizes) sizes="$2"; shift 2 ;;
        --bytes) bytes="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        *) echo "$usage" >&2; exit 2 ;;
    esac
done
IFS=, read -r -a points <<<"$sizes"
# The measured part is bounded by --max-seconds; JVM start, topic creation, warm-up
# and the final check get 120 s more.
client_timeout=$((max_seconds + 120))

log() { echo "[transactions.sh] $*" >&2; }
for tool in java kcat python3 curl; do
    command -v "$tool" >/dev/null || { log "needs $tool on PATH"; exit 1; }
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/target-bench}"
work="$(mktemp -d "${TMPDIR:-/tmp}/karst-transactions.XXXXXX")"
pids=()
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
cleanup() {
    stop_servers
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${KARST_BIN:-}" ]; then
    log "building karst (release)"
    nice -n 10 cargo build --release --bin karst >&2
    KARST_BIN="$CARGO_TARGET_DIR/release/karst"
fi
broker_cp="$(cat "$(bash scripts/kafka-reference.sh)")"
clients_cp="$(cat "$(bash scripts/kafka-reference.sh clients)")"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Ready when Metadata lists a broker (Kafka answers before its broker is registered).
wait_ready() {
    local addr="$1" name="$2" secs="$3" pid="$4" i
    for ((i = 0; i < secs * 4; i++)); do
        kill -0 "$pid" 2>/dev/null || { log "$name exited; log tail:"; tail -20 "$work/$name.log" >&2; exit 1; }
        if timeout 5 kcat -L -b "$addr" -m 2 2>/dev/null | grep -q '^ *broker [0-9]* at'; then return 0; fi
        sleep 0.25
    done
    log "$name not ready after $secs s"
    exit 1
}

karst_addr="127.0.0.1:$(free_port)"
mkdir -p "$work/karst-data"
# Karst reads KARST_* variables as settings: none of the caller's reach it.
env $(env | sed -n 's/^\(KARST_[A-Za-z0-9_]*\)=.*/-u \1/p') KARST_LOG=warn \
    "$KARST_BIN" serve --listen "$karst_addr" --data-dir "$work/karst-data" --admin-listen 127.0.0.1:0 \
    >"$work/karst.out" 2>"$work/karst.log" &
pids+=($!)
karst_pid=$!

kafka_addr="127.0.0.1:$(free_port)"
controller="127.0.0.1:$(free_port)"
mkdir -p "$work/kafka/log"
cat >"$work/kafka/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$controller
listeners=PLAINTEXT://$kafka_addr,CONTROLLER://$controller
advertised.listeners=PLAINTEXT://$kafka_addr
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$work/kafka/log
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
EOF
# A KRaft cluster id: 16 random bytes, URL-safe base64 without padding, not starting with '-'.
cluster_id="-"
while [ "${cluster_id:0:1}" = "-" ]; do
    cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
done
java -Xmx256m -XX:TieredStopAtLevel=1 -cp "$broker_cp" kafka.tools.StorageTool format \
    --cluster-id "$cluster_id" --config "$work/kafka/server.properties" >"$work/kafka-format.log" 2>&1 \
    || { log "StorageTool format failed:"; cat "$work/kafka-format.log" >&2; exit 1; }
kafka_jvm=(-Xmx1G -Xms1G -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true -Dorg.slf4j.simpleLogger.defaultLogLevel=warn)
(cd "$work/kafka" && exec java "${kafka_jvm[@]}" "-Dkafka.logs.dir=$work/kafka/logs" -cp "$broker_cp" kafka.Kafka \
    "$work/kafka/server.properties") >"$work/kafka.log" 2>&1 &
pids+=($!)
kafka_pid=$!

wait_ready "$karst_addr" karst 60 "$karst_pid"
wait_ready "$kafka_addr" kafka 300 "$kafka_pid"
admin_addr=$(sed -n 's/.*Karst admin listening on //p' "$work/karst.out" | head -1)
log "karst on $karst_addr (admin $admin_addr), kafka on $kafka_addr"

# bench <addr> <topic> <records per txn> <transactions> <warm-up>: the TXNBENCH line.
bench() {
    timeout "$client_timeout" java -Xmx512m -XX:+UseSerialGC -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
        -cp "$clients_cp" "$here/transactions/TxnBench.java" "$1" "$2" "$3" "$4" "$5" "$bytes" "$max_seconds" \
        2>>"$work/client.log" | tee -a "$work/client.out" | grep '^TXNBENCH '
}

for sys in karst kafka; do
    addr=$karst_addr
    [ $sys = kafka ] && addr=$kafka_addr
    log "warm-up on $sys"
    bench "$addr" "txn-warmup" 10 500 0 >/dev/null || log "warm-up on $sys failed"
done

declare -A line
started=$(date -u +%FT%TZ)
t_start=$(date +%s)
for n in "${points[@]}"; do
    for sys in karst kafka; do
        addr=$karst_addr
        [ $sys = kafka ] && addr=$kafka_addr
        log "$n records per transaction on $sys"
        if l=$(bench "$addr" "txn-$n-$sys" "$n" "$transactions" "$warmup"); then
            line[$n,$sys]="$l"
            log "  $l"
        else
            log "  failed: $(grep '^FAIL' "$work/client.out" | tail -1)"
            line[$n,$sys]=""
        fi
    done
done
elapsed=$(($(date +%s) - t_start))
karst_metrics=$(curl -s "http://$admin_addr/metrics" | grep '^karst_transaction' || true)
karst_alive=yes
kill -0 "$karst_pid" 2>/dev/null || karst_alive=no

cells() { # cells <n> -> the table row's cells after the first
    python3 - "${line[$1,karst]}" "${line[$1,kafka]}" "$bytes" <<'EOF'
import sys
def kv(l):
    return dict(f.split("=", 1) for f in l.split()[1:]) if l else None
k, f, b = kv(sys.argv[1]), kv(sys.argv[2]), int(sys.argv[3])
def part(d):
    if d is None:
        return ["failed", "–", "–", "–"]
    r = float(d["records_per_s"])
    lat = f'{float(d["commit_p50_ms"]):.2f} / {float(d["commit_p99_ms"]):.2f} / {float(d["commit_p999_ms"]):.2f}'
    return [f"{r:,.0f}", f"{r * b / 1e6:.2f}", lat, f'{int(d["txns"]):,}']
ratio = f'{float(k["records_per_s"]) / float(f["records_per_s"]):.2f}×' if k and f else "–"
ka, fa = part(k), part(f)
print(" | ".join([ka[0], fa[0], ratio, ka[1], fa[1], ka[2], fa[2], f"{ka[3]} / {fa[3]}"]))
EOF
}

mkdir -p "$(dirname "$out")"
{
    echo "# Transactions: Karst and Apache Kafka ($(date -u +%F))"
    echo
    echo "\`benches/transactions.sh --transactions $transactions --warmup $warmup --max-seconds $max_seconds --sizes $sizes --bytes $bytes\`,"
    echo "started $started, measured in $elapsed s. One sample per cell on a shared, noisy $(nproc)-core machine:"
    echo "differences under a few tens of percent are noise."
    echo
    echo "One transactional producer (Java client 4.4, acks=all), one topic of 1 partition"
    echo "(replication factor 1), records of $bytes bytes: begin, send N records, commitTransaction,"
    echo "repeat. Records/s from the first measured begin to the last commit's return"
    echo "(MB/s = records/s × $bytes bytes of value); commit latency is the time commitTransaction"
    echo "takes (sending what the producer still holds, waiting for the acknowledgements, then"
    echo "EndTxn), p50 / p99 / p99.9 in ms (HdrHistogram). Each point first ran $warmup unmeasured"
    echo "transactions in the same producer; the run checks afterwards that the topic's last"
    echo "stable offset counts every record and one commit marker per transaction."
    echo
    echo "| records / txn | Karst records/s | Kafka records/s | Karst/Kafka | Karst MB/s | Kafka MB/s | Karst commit ms p50 / p99 / p99.9 | Kafka commit ms p50 / p99 / p99.9 | transactions measured (Karst / Kafka) |"
    echo "|---:|---:|---:|---:|---:|---:|---|---|---|"
    for n in "${points[@]}"; do
        echo "| $n | $(cells "$n") |"
    done
    cat <<EOF

Brokers, both running throughout, each point measured on Karst and then right away on Kafka:

- Karst $(git -C "$root" rev-parse --short HEAD) (release), default settings:
  \`log.flush.interval.messages=1\`, **fsync before every acknowledgement**, which covers the
  records, the \`__transaction_state\` writes and the markers.
- Apache Kafka 4.4.0, one KRaft node, \`-Xmx1G -Xms1G\` G1 as its start script, broker defaults
  plus replication factor 1 (min ISR 1) for internal topics. Kafka's default flush policy is
  \`log.flush.interval.messages\` = Long.MAX_VALUE and \`log.flush.interval.ms\` unset (its
  scheduler at Long.MAX_VALUE): **no fsync before acknowledging**; data, transaction state
  and markers reach the disk when the kernel writes the page cache back (and at segment
  roll and shutdown). $(java -version 2>&1 | head -1).
- Both durabilities are as each broker ships them; this is not an equal-durability comparison.
- Finalized features the client saw (\`Admin.describeFeatures\`): Karst
  \`$(sed -n 's/.*features=\([^ ]*\).*/\1/p' <<<"${line[${points[0]},karst]}")\`, Kafka
  \`$(sed -n 's/.*features=\([^ ]*\).*/\1/p' <<<"${line[${points[0]},kafka]}")\`. Without a finalized \`transaction.version\` 2 the
  client runs transactions v1 (an AddPartitionsToTxn request per transaction); with it,
  v2 (KIP-890: the partition is added by the Produce request itself).
- Before the measured points each broker took one unrecorded run (500 transactions of 10 records).
EOF
    echo
    echo "Raw lines (Karst first, then Kafka, per point):"
    echo
    echo '```'
    for n in "${points[@]}"; do
        for sys in karst kafka; do echo "$sys ${line[$n,$sys]:-failed}"; done
    done
    echo '```'
    echo
    echo "Karst's transaction metrics at the end (warm-up included; Karst still running: $karst_alive):"
    echo
    echo '```'
    echo "${karst_metrics:-none}"
    echo '```'
    if [ -s "$work/karst.log" ]; then
        echo
        echo "Karst's log at warn and above ($(wc -l <"$work/karst.log") lines; the last 20):"
        echo
        echo '```'
        tail -20 "$work/karst.log"
        echo '```'
    fi
    if grep -q -E ' (ERROR|WARN) ' "$work/kafka.log"; then
        echo
        echo "Kafka's log, WARN and ERROR ($(grep -c -E ' (ERROR|WARN) ' "$work/kafka.log") lines; the last 10):"
        echo
        echo '```'
        grep -E ' (ERROR|WARN) ' "$work/kafka.log" | tail -10
        echo '```'
    fi
    if [ -s "$work/client.log" ]; then
        echo
        echo "Client stderr (tail):"
        echo
        echo '```'
        tail -20 "$work/client.log"
        echo '```'
    fi
} >"$out"
cat "$out"
log "wrote $out"
