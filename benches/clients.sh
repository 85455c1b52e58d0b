#!/usr/bin/env bash
# Produce and consume rate per client family against Karst and against Apache Kafka,
# same machine, same run (issue 17: "no client is slow on Karst"). One sample each,
# not a harness: benches/run.sh is the careful comparison.
#
#   benches/clients.sh [--records N] [--bytes S] [--out FILE] [--only TEXT] [--karst-set KEY=VALUE]...
#
# --only keeps the clients whose name contains TEXT (e.g. kafka-go); --karst-set passes a
# setting to Karst (e.g. log.flush.interval.messages=9223372036854775807: acknowledge
# from the page cache and fsync in the background, as Kafka does).
#
# Starts a fresh Karst (release build, default settings: fsync before every
# acknowledgement) and a single-node Apache Kafka 4.4 (KRaft, Kafka's broker JVM
# settings as benches/src/bin/harness/systems.rs, its default durability: no fsync),
# both on free 127.0.0.1 ports with data in a temporary directory, and both running for
# the whole measurement. Then for each client, Karst first and Kafka right after (so a
# load change on the shared machine hits both alike): a new one-partition topic, N
# records of S bytes produced with acks=all at the client's default batching and
# idempotence, then read back from the beginning by a fresh consumer group. Clients:
# Kafka's ProducerPerformance/ConsumerPerformance (the Java client), kcat (librdkafka),
# and the bench modes of tests/go/{franz,sarama,kafkago} and tests/node/kafkajs_check.js.
# Writes benches/results/<UTC date>-clients.md. Every server started here is stopped on
# exit (by PID); every client run is bounded by a timeout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

records=200000
bytes=512
out="$here/results/$(date -u +%F)-clients.md"
only=""
karst_sets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --records) records="$2"; shift 2 ;;
        --bytes) bytes="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --only) only="$2"; shift 2 ;;
        --karst-set) karst_sets+=(--set "$2"); shift 2 ;;
        *) echo "usage: $0 [--records N] [--bytes S] [--out FILE] [--only TEXT] [--karst-set KEY=VALUE]..." >&2; exit 2 ;;
    esac
done
client_timeout=300

log() { echo "[clients.sh] $*" >&2; }
for tool in java go node kcat python3; do
    command -v "$tool" >/dev/null || { log "needs $tool on PATH"; exit 1; }
done

# shellcheck source=benches/servers.sh
. "$here/servers.sh"
servers_setup clients

log "building karst (release) and the Go programs"
nice -n 10 cargo build --release --bin karst >&2
karst_bin="$CARGO_TARGET_DIR/release/karst"
mkdir -p "$work/bin"
for prog in franz sarama kafkago; do
    # Module mode with the committed go.sum, as tests/src/modern.rs builds them.
    (cd "$root/tests/go/$prog" && GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" go build -o "$work/bin/$prog" .)
done
if [ ! -d "$root/tests/node/node_modules/kafkajs" ]; then
    log "npm ci in tests/node"
    (cd "$root/tests/node" && npm ci --no-audit --no-fund >&2)
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
# Karst reads KARST_* variables as settings: it runs on its defaults here, except the
# group join delay, set to 0 as for Kafka below (the harness's Kafka peer does the
# same): otherwise both wait 3 s before a new group's first assignment, which would
# dwarf reading 100 MB.
env $(env | sed -n 's/^\(KARST_[A-Za-z0-9_]*\)=.*/-u \1/p') KARST_LOG=warn \
    "$karst_bin" serve --listen "$karst_addr" --data-dir "$work/karst-data" --admin-listen 127.0.0.1:0 \
    --set group.initial.rebalance.delay.ms=0 "${karst_sets[@]}" >"$work/karst.log" 2>&1 &
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
group.initial.rebalance.delay.ms=0
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
log "karst on $karst_addr, kafka on $kafka_addr"

# The records for kcat: one per line, S bytes of 'x' (the Go and Node programs send the same).
payload="$work/records.txt"
python3 -c "import sys; line=b'x'*$bytes+b'\n'; sys.stdout.buffer.write(line*$records)" >"$payload"

java_tool() { timeout "$client_timeout" java -Xmx512M -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$clients_cp" "$@"; }
create_topic() { java_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$1" --create --topic "$2" --partitions 1 --replication-factor 1 >/dev/null; }
now() { date +%s.%N; }

# Each run prints "produce_rate consume_rate" (msgs/s; consume includes the group join).
run_kcat() {
    local addr="$1" topic="$2" t0 t1 t2
    create_topic "$addr" "$topic" || return 1
    t0=$(now)
    timeout "$client_timeout" kcat -P -b "$addr" -t "$topic" -X acks=all -l "$payload" || return 1
    t1=$(now)
    timeout "$client_timeout" kcat -b "$addr" -G "bench-$topic" -X auto.offset.reset=earliest -c "$records" -q "$topic" >/dev/null || return 1
    t2=$(now)
    python3 -c "print($records / ($t1 - $t0), $records / ($t2 - $t1))"
}
run_java() {
    local addr="$1" topic="$2" p c
    create_topic "$addr" "$topic" || return 1
    p=$(java_tool org.apache.kafka.tools.ProducerPerformance --topic "$topic" --num-records "$records" \
        --record-size "$bytes" --throughput -1 --producer-props "bootstrap.servers=$addr" acks=all | tail -1) || return 1
    echo "${sys:-} producer: $p" >>"$work/java.log"
    c=$(java_tool org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "$addr" --topic "$topic" \
        --messages "$records" --group "bench-$topic" --timeout 60000 | tail -1) || return 1
    echo "${sys:-} consumer: $c" >>"$work/java.log"
    # The consumer's CSV: data.consumed.in.nMsg is the 5th field, nMsg.sec the 6th.
    [ "$(echo "$c" | awk -F', *' '{print $5}')" = "$records" ] || { echo "ConsumerPerformance read: $c" >&2; return 1; }
    # "N records sent, R records/sec (...)".
    echo "$(echo "$p" | sed -n 's/.* records sent, \([0-9.]*\) records\/sec.*/\1/p') $(echo "$c" | awk -F', *' '{print $6}')"
}
run_bench_mode() {
    local addr="$1" topic="$2" line
    shift 2
    line=$(timeout "$client_timeout" "$@" bench "$addr" "$topic" "$records" "$bytes" | grep '^BENCH ') || return 1
    echo "${sys:-} ${line#BENCH }" >>"$work/bench-lines.log"
    echo "$line" | python3 -c "
import sys
kv = dict(f.split('=', 1) for f in sys.stdin.read().split()[1:])
print($records / float(kv['produce_s']), $records / float(kv['consume_s']))"
}

clients=("Java client 4.4 (ProducerPerformance / ConsumerPerformance)" "librdkafka 2.0 (kcat)" "franz-go 1.22" "IBM sarama 1.61" "segmentio/kafka-go 0.4.51" "KafkaJS 2.2.4")
run_client() {
    case "$1" in
        0) run_java "$2" "$3" ;;
        1) run_kcat "$2" "$3" ;;
        2) run_bench_mode "$2" "$3" "$work/bin/franz" ;;
        3) run_bench_mode "$2" "$3" "$work/bin/sarama" ;;
        4) run_bench_mode "$2" "$3" "$work/bin/kafkago" ;;
        5) run_bench_mode "$2" "$3" node "$root/tests/node/kafkajs_check.js" ;;
    esac
}

# Unrecorded: Kafka's JIT compiles its hot paths (benches/run.sh warms it too), and
# both brokers have served one load before the first measured client.
for addr in "$karst_addr" "$kafka_addr"; do
    log "warm-up on $addr"
    run_kcat "$addr" "warmup" >/dev/null || log "warm-up on $addr failed"
done

declare -A rate
started=$(date -u +%FT%TZ)
t_start=$(date +%s)
measured=()
for i in "${!clients[@]}"; do
    [[ "${clients[$i]}" == *"$only"* ]] && measured+=("$i")
done
[ ${#measured[@]} -gt 0 ] || { log "no client matches --only $only"; exit 2; }
for i in "${measured[@]}"; do
    for sys in karst kafka; do
        addr=$karst_addr
        [ $sys = kafka ] && addr=$kafka_addr
        log "${clients[$i]} on $sys"
        if r=$(run_client "$i" "$addr" "bench-$i-$sys" 2>>"$work/clients.log"); then
            read -r rate[$i,$sys,p] rate[$i,$sys,c] <<<"$r"
            log "  produce ${rate[$i,$sys,p]} msgs/s, consume ${rate[$i,$sys,c]} msgs/s"
        else
            log "  failed (see below)"
            rate[$i,$sys,p]=""
            rate[$i,$sys,c]=""
        fi
    done
done
elapsed=$(($(date +%s) - t_start))

fmt() { python3 -c "import sys; v=sys.argv[1]; print(f'{float(v):,.0f}' if v else 'failed')" "$1"; }
mbs() { python3 -c "import sys; v=sys.argv[1]; print(f'{float(v) * $bytes / 1e6:.1f}' if v else '–')" "$1"; }
ratio() { python3 -c "import sys; a, b = sys.argv[1], sys.argv[2]; print(f'{float(a) / float(b):.2f}×' if a and b else '–')" "$1" "$2"; }

mkdir -p "$(dirname "$out")"
{
    echo "# Clients against Karst and Apache Kafka ($(date -u +%F))"
    echo
    echo "\`benches/clients.sh\` (records: $records × $bytes bytes, acks=all, one partition), started $started,"
    echo "measured in $elapsed s. One sample per cell on a shared $(nproc)-core machine: differences under"
    echo "a few tens of percent are noise. Produce: msgs/s from the first record to the last"
    echo "acknowledgement (MB/s = msgs/s × $bytes bytes). Consume: a fresh consumer group reading"
    echo "from the beginning, msgs/s from creating the consumer (group join included) to the last record."
    echo
    echo "| client | produce Karst msgs/s (MB/s) | produce Kafka msgs/s (MB/s) | Karst/Kafka | consume Karst msgs/s | consume Kafka msgs/s | Karst/Kafka |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for i in "${measured[@]}"; do
        echo "| ${clients[$i]} | $(fmt "${rate[$i,karst,p]}") ($(mbs "${rate[$i,karst,p]}")) | $(fmt "${rate[$i,kafka,p]}") ($(mbs "${rate[$i,kafka,p]}")) | $(ratio "${rate[$i,karst,p]}" "${rate[$i,kafka,p]}") | $(fmt "${rate[$i,karst,c]}") | $(fmt "${rate[$i,kafka,c]}") | $(ratio "${rate[$i,karst,c]}" "${rate[$i,kafka,c]}") |"
    done
    cat <<EOF

Brokers, both running throughout, each client measured on Karst and then right away on Kafka:

- Karst $(git -C "$root" rev-parse --short HEAD) (release), default settings (**fsync before every acknowledgement**)
  but \`group.initial.rebalance.delay.ms=0\`, as for Kafka$([ ${#karst_sets[@]} -gt 0 ] && printf '; and %s' "${karst_sets[*]}").
- Apache Kafka 4.4.0, one KRaft node, \`-Xmx1G -Xms1G\` G1 as its start script, broker defaults
  (acknowledged from the page cache, **no fsync**) plus replication factor 1 for internal
  topics and \`group.initial.rebalance.delay.ms=0\`; $(java -version 2>&1 | head -1).
- Before the measured runs each broker took one unrecorded kcat load of the same size
  (Kafka's JIT warms up; the Java tools themselves start cold for every run).

What each client did (its defaults unless said):

- Java client: \`ProducerPerformance --throughput -1 acks=all\` (idempotent, linger.ms=5,
  batch.size=16384); \`ConsumerPerformance\` (classic group protocol, auto-commit), rate as
  its \`nMsg.sec\`, which counts the group join.
- librdkafka: \`kcat -P -X acks=all -l\` (not idempotent, linger.ms=5,
  batch.num.messages=10000); \`kcat -G\` with \`auto.offset.reset=earliest\`, timed from the
  process start to its exit after the last record.
- franz-go: \`Produce\` of every record then \`Flush\` (idempotent, acks=all, linger 10 ms,
  batches up to 1 MB); a \`ConsumerGroup\` client polling (auto-commit).
- sarama: an \`AsyncProducer\` with \`RequiredAcks=WaitForAll\` (sarama's default is the leader
  only), not idempotent, no flush thresholds, 5 requests in flight, Version 2.8; a
  \`ConsumerGroup\` marking every message (auto-commit every second).
- kafka-go: a \`Writer\` with \`RequiredAcks=RequireAll\` (its zero value is acks=0), one
  \`WriteMessages\` call with every record: batches of 100 records, one request in flight per
  partition, not idempotent; a group \`Reader\` with \`FetchMessage\` and a single commit at
  the end (\`ReadMessage\` would commit every record synchronously).
- KafkaJS: \`producer.send\` of 1,000 records at a time, each awaited before the next
  (KafkaJS batches only what one call hands it), \`acks: -1\`, not idempotent; a consumer
  group with \`eachMessage\` (auto-commit).

Karst fsyncs before acknowledging and Kafka does not, so a client that keeps one small
request in flight (kafka-go, KafkaJS as used here) waits for the disk on Karst and not on
Kafka. benches/run.sh compares durability settings side by side.
EOF
    if [ -s "$work/bench-lines.log" ]; then
        echo
        echo "Raw lines of the Go and Node bench modes (seconds):"
        echo
        echo '```'
        cat "$work/bench-lines.log"
        echo '```'
    fi
    if [ -s "$work/java.log" ]; then
        echo
        echo "The Java tools' result lines:"
        echo
        echo '```'
        cat "$work/java.log"
        echo '```'
    fi
    if [ -s "$work/clients.log" ]; then
        echo
        echo "Client stderr (tail):"
        echo
        echo '```'
        tail -20 "$work/clients.log"
        echo '```'
    fi
} >"$out"
cat "$out"
log "wrote $out"
