#!/usr/bin/env bash
# Transactional produce throughput against Karst and against Apache Kafka, same machine,
# same run (issue 19, acceptance 5): records/s, MB/s and commit latency at 1, 10 and 100
# records per transaction. One sample per cell, not a harness.
#
#   benches/transactions.sh [--transactions N] [--warmup N] [--max-seconds S] [--sizes 1,10,100]
#                           [--bytes B] [--no-tv1] [--out FILE]
#
# --transactions: measured transactions per point and broker (default 1000); --warmup:
# unmeasured transactions before them in the same producer (default 100); --max-seconds:
# a point stops measuring after S seconds even if fewer transactions are done (default
# 60; the table says how many were); --sizes: records per transaction; --bytes: record
# value size (default 100); --no-tv1: leave out the second Kafka (below).
#
# Starts a fresh Karst (release build, its defaults: fsync before every acknowledgement)
# and a single-node Apache Kafka 4.4 (KRaft, Kafka's broker JVM settings as
# benches/clients.sh, its defaults: no fsync on acknowledgement) on free 127.0.0.1 ports
# with data in a temporary directory, both running for the whole measurement, both
# finalizing transaction.version 2 (KIP-890 part 2), so the Java client runs transactions
# v2 on both; and a second Karst and a second Kafka with transaction.version 1, on which
# it runs transactions v1 (the protocol librdkafka and sarama speak). Each broker first
# takes one unrecorded run (Kafka's JIT). Then for each point, each Karst and the Kafka of
# its version right after: benches/transactions/TxnBench.java creates a new topic of one
# partition (replication factor 1), and one transactional producer (acks=all) runs
# begin / send N records / commitTransaction in a loop. The run fails unless the topic's
# last stable offset afterwards counts every record and one marker per transaction.
# Also counts each Karst's AddPartitionsToTxn and EndTxn requests per point (retries show).
# Writes benches/results/<UTC date>-transactions.md. Every server started here is
# stopped on exit (by PID); every client run is bounded by a timeout. About 3 minutes
# with the defaults once built (at most about 10 with every point at --max-seconds).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

transactions=1000
warmup=100
max_seconds=60
sizes=1,10,100
tv1=1
bytes=100
out="$here/results/$(date -u +%F)-transactions.md"
usage="usage: $0 [--transactions N] [--warmup N] [--max-seconds S] [--sizes 1,10,100] [--bytes B] [--no-tv1] [--out FILE]"
while [ $# -gt 0 ]; do
    case "$1" in
        --transactions) transactions="$2"; shift 2 ;;
        --warmup) warmup="$2"; shift 2 ;;
        --max-seconds) max_seconds="$2"; shift 2 ;;
        --sizes) sizes="$2"; shift 2 ;;
        --bytes) bytes="$2"; shift 2 ;;
        --no-tv1) tv1=0; shift ;;
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

# shellcheck source=benches/servers.sh
. "$here/servers.sh"
servers_setup transactions

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

# start_karst <name> [serve options]: a Karst in $work/<name>-data (output $work/<name>.out,
# log $work/<name>.log); sets karst_addr and karst_pid.
start_karst() {
    local name="$1"
    shift
    karst_addr="127.0.0.1:$(free_port)"
    mkdir -p "$work/$name-data"
    # Karst reads KARST_* variables as settings: none of the caller's reach it.
    env $(env | sed -n 's/^\(KARST_[A-Za-z0-9_]*\)=.*/-u \1/p') KARST_LOG=warn \
        "$KARST_BIN" serve --listen "$karst_addr" --data-dir "$work/$name-data" --admin-listen 127.0.0.1:0 "$@" \
        >"$work/$name.out" 2>"$work/$name.log" &
    karst_pid=$!
    pids+=($karst_pid)
}
start_karst karst

# start_kafka <name> [StorageTool format options]: a single-node Kafka in $work/<name>
# (log $work/<name>.log); sets kafka_addr and kafka_pid.
kafka_jvm=(-Xmx1G -Xms1G -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true -Dorg.slf4j.simpleLogger.defaultLogLevel=warn)
start_kafka() {
    local name="$1" controller dir="$work/$1" cluster_id="-"
    shift
    kafka_addr="127.0.0.1:$(free_port)"
    controller="127.0.0.1:$(free_port)"
    mkdir -p "$dir/log"
    cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$controller
listeners=PLAINTEXT://$kafka_addr,CONTROLLER://$controller
advertised.listeners=PLAINTEXT://$kafka_addr
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/log
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
EOF
    # A KRaft cluster id: 16 random bytes, URL-safe base64 without padding, not starting with '-'.
    while [ "${cluster_id:0:1}" = "-" ]; do
        cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
    done
    java -Xmx256m -XX:TieredStopAtLevel=1 -cp "$broker_cp" kafka.tools.StorageTool format \
        --cluster-id "$cluster_id" --config "$dir/server.properties" "$@" >"$work/$name-format.log" 2>&1 \
        || { log "StorageTool format failed:"; cat "$work/$name-format.log" >&2; exit 1; }
    (cd "$dir" && exec java "${kafka_jvm[@]}" "-Dkafka.logs.dir=$dir/logs" -cp "$broker_cp" kafka.Kafka \
        "$dir/server.properties") >"$work/$name.log" 2>&1 &
    kafka_pid=$!
    pids+=($kafka_pid)
}

declare -A addr_of=([karst]="$karst_addr") pid_of=([karst]="$karst_pid")
systems=(karst kafka)
start_kafka kafka
addr_of[kafka]=$kafka_addr
pid_of[kafka]=$kafka_pid
if [ "$tv1" = 1 ]; then
    # Transactions v1 with KIP-890 part 1 (verification) but not part 2, on both.
    start_karst karst-tv1 --set transaction.version=1
    addr_of[karst-tv1]=$karst_addr
    pid_of[karst-tv1]=$karst_pid
    start_kafka kafka-tv1 --feature transaction.version=1
    addr_of[kafka-tv1]=$kafka_addr
    pid_of[kafka-tv1]=$kafka_pid
    systems+=(karst-tv1 kafka-tv1)
fi

declare -A admin_of
for sys in "${systems[@]}"; do
    case "$sys" in
    karst*)
        wait_ready "${addr_of[$sys]}" "$sys" 60 "${pid_of[$sys]}"
        admin_of[$sys]=$(sed -n 's/.*Karst admin listening on //p' "$work/$sys.out" | head -1)
        ;;
    *) wait_ready "${addr_of[$sys]}" "$sys" 300 "${pid_of[$sys]}" ;;
    esac
done
karst_pid=${pid_of[karst]}
admin_addr=${admin_of[karst]}
log "$(for sys in "${systems[@]}"; do printf '%s on %s; ' "$sys" "${addr_of[$sys]}"; done)"
metric() { # metric <karst system> <name with labels> -> that Karst's value (0 if absent)
    curl -s "http://${admin_of[$1]}/metrics" | awk -v n="$2" '$1 == n {print $2; found=1} END {if (!found) print 0}'
}

# bench <addr> <topic> <records per txn> <transactions> <warm-up>: the TXNBENCH line.
bench() {
    timeout "$client_timeout" java -Xmx512m -XX:+UseSerialGC -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
        -cp "$clients_cp" "$here/transactions/TxnBench.java" "$1" "$2" "$3" "$4" "$5" "$bytes" "$max_seconds" \
        2>>"$work/client.log" | tee -a "$work/client.out" | grep '^TXNBENCH '
}

for sys in "${systems[@]}"; do
    log "warm-up on $sys"
    bench "${addr_of[$sys]}" "txn-warmup" 10 500 0 >/dev/null || log "warm-up on $sys failed"
done

declare -A line addp
started=$(date -u +%FT%TZ)
t_start=$(date +%s)
for n in "${points[@]}"; do
    for sys in "${systems[@]}"; do
        log "$n records per transaction on $sys"
        a0=0 e0=0
        if [ -n "${admin_of[$sys]:-}" ]; then
            a0=$(metric "$sys" 'karst_requests_total{api="AddPartitionsToTxn"}')
            e0=$(metric "$sys" 'karst_requests_total{api="EndTxn"}')
        fi
        if l=$(bench "${addr_of[$sys]}" "txn-$n-$sys" "$n" "$transactions" "$warmup"); then
            line[$n,$sys]="$l"
            log "  $l"
        else
            log "  failed: $(grep '^FAIL' "$work/client.out" | tail -1)"
            line[$n,$sys]=""
        fi
        if [ -n "${admin_of[$sys]:-}" ]; then
            # AddPartitionsToTxn requests the Karst received per EndTxn (warm-up included):
            # none under transactions v2; under v1 1 unless the client had to retry
            # (CONCURRENT_TRANSACTIONS while the previous transaction's markers were
            # still being written).
            addp[$n,$sys]=$(python3 -c "a, e = $(metric "$sys" 'karst_requests_total{api="AddPartitionsToTxn"}') - $a0, $(metric "$sys" 'karst_requests_total{api="EndTxn"}') - $e0; print(f'{a:.0f} / {e:.0f}')")
            log "  AddPartitionsToTxn / EndTxn requests: ${addp[$n,$sys]}"
        fi
    done
done
elapsed=$(($(date +%s) - t_start))
karst_metrics=$(curl -s "http://$admin_addr/metrics" | grep -E '^karst_transaction|^karst_log_flush_latency_seconds_(sum|count)' || true)
karst_alive=yes
kill -0 "$karst_pid" 2>/dev/null || karst_alive=no

cells() { # cells <n> <system> -> "records/s|MB/s|p50 / p99 / p99.9|transactions"
    python3 - "${line[$1,$2]}" "$bytes" <<'EOF'
import sys
l, b = sys.argv[1], int(sys.argv[2])
if not l:
    print("failed|–|–|–")
else:
    d = dict(f.split("=", 1) for f in l.split()[1:])
    r = float(d["records_per_s"])
    lat = f'{float(d["commit_p50_ms"]):.2f} / {float(d["commit_p99_ms"]):.2f} / {float(d["commit_p999_ms"]):.2f}'
    print(f'{r:,.0f}|{r * b / 1e6:.3f}|{lat}|{int(d["txns"]):,}')
EOF
}
ratio() { # ratio <n> <system a> <system b>
    python3 - "${line[$1,$2]}" "${line[$1,$3]}" <<'EOF'
import sys
r = [float(dict(f.split("=", 1) for f in l.split()[1:])["records_per_s"]) if l else None for l in sys.argv[1:3]]
print(f"{r[0] / r[1]:.2f}×" if None not in r else "–")
EOF
}
features() { sed -n 's/.*features=\([^ ]*\).*/\1/p' <<<"${line[${points[0]},$1]:-}"; }

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
    echo "transactions in the same producer; every run checks afterwards that the topic's last"
    echo "stable offset counts every record and one commit marker per transaction."
    echo
    # table <karst system> <kafka system>
    table() {
        echo "| records / txn | Karst records/s | Kafka records/s | Karst/Kafka | Karst MB/s | Kafka MB/s | Karst commit ms p50 / p99 / p99.9 | Kafka commit ms p50 / p99 / p99.9 | transactions measured (Karst / Kafka) | Karst AddPartitionsToTxn / EndTxn requests |"
        echo "|---:|---:|---:|---:|---:|---:|---|---|---|---:|"
        for n in "${points[@]}"; do
            IFS='|' read -r kr km kl kt <<<"$(cells "$n" "$1")"
            IFS='|' read -r fr fm fl ft <<<"$(cells "$n" "$2")"
            echo "| $n | $kr | $fr | $(ratio "$n" "$1" "$2") | $km | $fm | $kl | $fl | $kt / $ft | ${addp[$n,$1]:-–} |"
        done
    }
    echo "Transactions v2 (\`transaction.version\` 2 finalized on both, as each ships):"
    echo
    table karst kafka
    if [ "$tv1" = 1 ]; then
        echo
        echo "Transactions v1: a second Karst (\`--set transaction.version=1\`) and a second Kafka"
        echo "(formatted with \`transaction.version=1\`), running beside the first ones, each measured"
        echo "right after them:"
        echo
        table karst-tv1 kafka-tv1
    fi
    cat <<EOF

Brokers, all running throughout, each point measured on a Karst and then right away on the Kafka of its version:

- Karst $(git -C "$root" rev-parse --short HEAD) (release), default settings (the second one
  \`transaction.version=1\`): \`log.flush.interval.messages=1\`, **fsync before every
  acknowledgement**, which covers the records, the \`__transaction_state\` writes and the markers.
- Apache Kafka 4.4.0, one KRaft node, \`-Xmx1G -Xms1G\` G1 as its start script, broker defaults
  plus replication factor 1 (min ISR 1) for internal topics. Kafka's default flush policy is
  \`log.flush.interval.messages\` = Long.MAX_VALUE and \`log.flush.interval.ms\` unset (its
  scheduler at Long.MAX_VALUE): **no fsync before acknowledging**; records, transaction
  state and markers reach the disk when the kernel writes the page cache back (and at
  segment roll and shutdown). $(java -version 2>&1 | head -1).
- Both durabilities are as each broker ships them: this is not an equal-durability comparison.
- Finalized features the client saw (\`Admin.describeFeatures\`): Karst \`$(features karst)\`;
  Kafka \`$(features kafka)\`$([ "$tv1" = 1 ] && printf '; Karst tv1 `%s`; Kafka tv1 `%s`' "$(features karst-tv1)" "$(features kafka-tv1)").
  Without a finalized \`transaction.version\` of 2 the Java client runs transactions v1: an
  AddPartitionsToTxn request before the first record of every transaction, and after
  EndTxn the coordinator still writes the markers and the completed state, during which
  the next AddPartitionsToTxn is answered CONCURRENT_TRANSACTIONS and retried (the client
  backs off 20 ms). With 2 (KIP-890 part 2) the partition joins the transaction through
  the Produce request and a new transaction may start while the previous one completes.
- Before the measured points each broker took one unrecorded run (500 transactions of 10 records).
EOF
    echo
    echo "Raw lines:"
    echo
    echo '```'
    for n in "${points[@]}"; do
        for sys in "${systems[@]}"; do echo "$sys ${line[$n,$sys]:-failed}"; done
    done
    echo '```'
    echo
    echo "Karst's transaction and fsync metrics at the end (warm-up included; Karst still running: $karst_alive):"
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
    else
        echo
        echo "Karst logged nothing at warn or above."
    fi
    for sys in "${systems[@]}"; do
        [ "$sys" = karst ] && continue
        # Expected at first start: "Performing controller activation. The metadata log appears to be empty."
        w=$(grep -E ' (ERROR|WARN) ' "$work/$sys.log" | grep -v 'The metadata log appears to be empty' || true)
        if [ -n "$w" ]; then
            echo
            echo "$sys's log, WARN and ERROR but the first start's ($(wc -l <<<"$w") lines; the last 10):"
            echo
            echo '```'
            tail -10 <<<"$w"
            echo '```'
        fi
    done
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
