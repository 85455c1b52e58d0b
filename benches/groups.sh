#!/usr/bin/env bash
# Consumer-group rebalance time (classic and KIP-848) and share-group (KIP-932) throughput,
# against Karst and against Apache Kafka 4.4, same machine, same run. One sample per cell.
#
#   benches/groups.sh [--members N] [--partitions P] [--rate R] [--protocols cooperative,eager,consumer]
#                     [--no-fast-heartbeat] [--share-records N] [--share-partitions P]
#                     [--share-consumers 1,4,16] [--share-max-seconds S] [--out FILE]
#
# Brokers (started together at the beginning, each on free 127.0.0.1 ports with a temporary
# data directory, stopped on exit by PID):
# - Karst (release build, its defaults) and a single-node Kafka 4.4 (KRaft, the broker JVM
#   settings of benches/clients.sh, its defaults, replication factor 1 for internal topics),
#   both with group.initial.rebalance.delay.ms=0 (the 3 s default delays only a classic
#   group's first rebalance, when it is empty, and would be most of the first step), and the
#   Kafka formatted with share.version=1, the level Karst finalizes.
# - Unless --no-fast-heartbeat: a second Karst and a second Kafka, the same but with
#   group.consumer.heartbeat.interval.ms=500 (the default is 5000 on both; Kafka also needs
#   group.consumer.min.heartbeat.interval.ms=500 to allow it), for one more consumer-protocol run.
#
# 1. Rebalance (benches/groups_rebalance.py, one Python process per run, one thread per
#    member, confluent-kafka 2.16): a topic of P partitions (default 20) with a producer at R
#    records/s (default 1000, 100 bytes); N members (default 10) join one at a time, then
#    leave one at a time (close()); per step the time from the new member's subscribe() (the
#    leaving member's close()) until the members' assignments are the balanced final one,
#    and whether the other members kept consuming meanwhile. Per protocol (--protocols,
#    default cooperative,consumer; cooperative: classic, cooperative-sticky; eager: classic,
#    range, about 100 s more; consumer: group.protocol=consumer) Karst first, then Kafka.
# 2. Share groups (benches/groups_share.py): a topic of P partitions (default 8) filled with N
#    records (default 2,000,000 × 100 bytes) on each broker; per consumer count (default 1, 4,
#    16) a new share group (share.auto.offset.reset=earliest) drains it with that many
#    ShareConsumer processes (explicit acknowledgement, commit_sync after every poll),
#    bounded by --share-max-seconds (default 60). Records/s, MB/s, commit latency.
#
# Writes benches/results/<UTC date>-groups.md. About 9 minutes with the defaults once built.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

members=10
partitions=20
rate=1000
protocols=cooperative,consumer
fast_hb=1
share_records=2000000
share_partitions=8
share_consumers=1,4,16
share_max_seconds=60
out="$here/results/$(date -u +%F)-groups.md"
args_given="$*"
usage="usage: $0 [--members N] [--partitions P] [--rate R] [--protocols cooperative,eager,consumer] [--no-fast-heartbeat] [--share-records N] [--share-partitions P] [--share-consumers 1,4,16] [--share-max-seconds S] [--out FILE]"
while [ $# -gt 0 ]; do
    case "$1" in
        --members) members="$2"; shift 2 ;;
        --partitions) partitions="$2"; shift 2 ;;
        --rate) rate="$2"; shift 2 ;;
        --protocols) protocols="$2"; shift 2 ;;
        --no-fast-heartbeat) fast_hb=0; shift ;;
        --share-records) share_records="$2"; shift 2 ;;
        --share-partitions) share_partitions="$2"; shift 2 ;;
        --share-consumers) share_consumers="$2"; shift 2 ;;
        --share-max-seconds) share_max_seconds="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        *) echo "$usage" >&2; exit 2 ;;
    esac
done
IFS=, read -r -a protos <<<"$protocols"
IFS=, read -r -a counts <<<"$share_consumers"

log() { echo "[groups.sh] $(date -u +%T) $*" >&2; }
for tool in java kcat python3; do
    command -v "$tool" >/dev/null || { log "needs $tool on PATH"; exit 1; }
done
python3 -c 'import confluent_kafka' 2>/dev/null || { log "needs confluent-kafka (pip install confluent-kafka)"; exit 1; }
if ! python3 -c 'import hdrh.histogram' 2>/dev/null; then
    log "installing hdrhistogram (pip)"
    pip install --quiet hdrhistogram >&2
fi

# shellcheck source=benches/servers.sh
. "$here/servers.sh"
servers_setup groups

if [ -z "${KARST_BIN:-}" ]; then
    log "building karst (release)"
    nice -n 10 cargo build --release -p karst --bin karst >&2
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

declare -A addr_of pid_of

# start_karst <name> [serve options]
start_karst() {
    local name="$1"
    shift
    addr_of[$name]="127.0.0.1:$(free_port)"
    mkdir -p "$work/$name-data"
    # Karst reads KARST_* variables as settings: none of the caller's reach it.
    env $(env | sed -n 's/^\(KARST_[A-Za-z0-9_]*\)=.*/-u \1/p') KARST_LOG=warn \
        "$KARST_BIN" serve --listen "${addr_of[$name]}" --data-dir "$work/$name-data" --admin-listen 127.0.0.1:0 \
        --set group.initial.rebalance.delay.ms=0 "$@" >"$work/$name.out" 2>"$work/$name.log" &
    pid_of[$name]=$!
    pids+=("${pid_of[$name]}")
}

# start_kafka <name> [extra server.properties lines]
kafka_jvm=(-Xmx1G -Xms1G -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true)
start_kafka() {
    local name="$1" controller dir="$work/$1" cluster_id="-" line
    shift
    addr_of[$name]="127.0.0.1:$(free_port)"
    controller="127.0.0.1:$(free_port)"
    mkdir -p "$dir/log"
    cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$controller
listeners=PLAINTEXT://${addr_of[$name]},CONTROLLER://$controller
advertised.listeners=PLAINTEXT://${addr_of[$name]}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/log
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
    for line in "$@"; do echo "$line" >>"$dir/server.properties"; done
    while [ "${cluster_id:0:1}" = "-" ]; do
        cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
    done
    java -Xmx256m -XX:TieredStopAtLevel=1 -cp "$broker_cp" kafka.tools.StorageTool format \
        --cluster-id "$cluster_id" --config "$dir/server.properties" --feature share.version=1 \
        >"$work/$name-format.log" 2>&1 \
        || { log "StorageTool format failed:"; cat "$work/$name-format.log" >&2; exit 1; }
    (cd "$dir" && exec java "${kafka_jvm[@]}" "-Dkafka.logs.dir=$dir/logs" -cp "$broker_cp" kafka.Kafka \
        "$dir/server.properties") >"$work/$name.log" 2>&1 &
    pid_of[$name]=$!
    pids+=("${pid_of[$name]}")
}

systems=(karst kafka)
start_karst karst
start_kafka kafka
if [ "$fast_hb" = 1 ]; then
    start_karst karst-hb500 --set group.consumer.heartbeat.interval.ms=500
    start_kafka kafka-hb500 group.consumer.heartbeat.interval.ms=500 group.consumer.min.heartbeat.interval.ms=500
    systems+=(karst-hb500 kafka-hb500)
fi
for sys in "${systems[@]}"; do
    case "$sys" in
    karst*) wait_ready "${addr_of[$sys]}" "$sys" 60 "${pid_of[$sys]}" ;;
    *) wait_ready "${addr_of[$sys]}" "$sys" 300 "${pid_of[$sys]}" ;;
    esac
done
log "$(for sys in "${systems[@]}"; do printf '%s on %s; ' "$sys" "${addr_of[$sys]}"; done)"
features() { # finalized features as a client sees them (Kafka's FeatureCommand)
    timeout 60 java -Xmx256m -XX:TieredStopAtLevel=1 -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$clients_cp" org.apache.kafka.tools.FeatureCommand \
        --bootstrap-server "${addr_of[$1]}" describe 2>/dev/null |
        sed -n 's/^Feature: \([^ \t]*\).*FinalizedVersionLevel: \([^ \t]*\).*/\1=\2/p' | paste -sd, || true
}
declare -A feat
for sys in karst kafka; do feat[$sys]="$(features "$sys")"; done
log "features: karst ${feat[karst]}; kafka ${feat[kafka]}"

# Each group coordinator's first use sets things up (Kafka creates __consumer_offsets on the
# first FindCoordinator): one member joins a group once on every broker, unmeasured.
warmups=()
for sys in "${systems[@]}"; do
    timeout 120 python3 "$here/groups_rebalance.py" --bootstrap "${addr_of[$sys]}" --topic warmup --group warmup \
        --protocol cooperative --members 1 --partitions 1 --rate 100 --hold 0.2 >/dev/null 2>>"$work/client-$sys.log" &
    warmups+=($!)
done
for job in "${warmups[@]}"; do
    wait "$job" || log "a warm-up join failed (exit $?; see the client stderr in the report)"
done

started=$(date -u +%FT%TZ)
t_start=$(date +%s)

# ---- 1. rebalance ----
# rebalance <system> <protocol> <label>: JSON lines in $work/rb-<label>-<system>.jsonl
step_timeout=60
rebalance() {
    local sys="$1" proto="$2" label="$3" f="$work/rb-$3-$1.jsonl"
    log "rebalance: $label on $sys"
    if ! timeout $(((2 * members) * (step_timeout + 10) + 60)) python3 "$here/groups_rebalance.py" \
        --bootstrap "${addr_of[$sys]}" --topic "rb-$label" --group "rb-$label" --protocol "$proto" \
        --members "$members" --partitions "$partitions" --rate "$rate" --step-timeout "$step_timeout" --hold 0.5 \
        >"$f" 2>>"$work/client-$sys.log"; then
        log "  $label on $sys did not finish: $(tail -1 "$f" | cut -c1-300)"
    fi
    python3 - "$f" <<'PY' >&2
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith('{"step"')]
for kind in ("join", "leave"):
    ms = [r["ms"] for r in rows if r["step"] == kind]
    if ms:
        print(f"  {kind}: {len(ms)} steps, p50 {statistics.median(ms):.0f} ms, max {max(ms):.0f} ms")
PY
}
declare -a rb_runs=()
for proto in "${protos[@]}"; do
    for sys in karst kafka; do rebalance "$sys" "$proto" "$proto"; done
    rb_runs+=("$proto|$proto|karst|kafka")
done
if [ "$fast_hb" = 1 ]; then
    for sys in karst-hb500 kafka-hb500; do rebalance "$sys" consumer consumer-hb500; done
    rb_runs+=("consumer-hb500|consumer|karst-hb500|kafka-hb500")
fi
t_rebalance=$(($(date +%s) - t_start))

# ---- 2. share groups ----
declare -A fill_of
for sys in karst kafka; do
    log "share: filling $share_records records into $sys"
    fill_of[$sys]=$(timeout 300 python3 "$here/groups_share.py" fill --bootstrap "${addr_of[$sys]}" --topic share-bench \
        --partitions "$share_partitions" --records "$share_records" --size 100 2>>"$work/client-$sys.log" || echo '{"error": "fill failed"}')
    log "  ${fill_of[$sys]}"
done
for n in "${counts[@]}"; do
    for sys in karst kafka; do
        log "share: $n consumers on $sys"
        timeout $((share_max_seconds + 180)) python3 "$here/groups_share.py" drain --bootstrap "${addr_of[$sys]}" \
            --topic share-bench --group "share-$n" --consumers "$n" --records "$share_records" \
            --max-seconds "$share_max_seconds" >"$work/share-$n-$sys.json" 2>>"$work/client-$sys.log" ||
            log "  failed (exit $?)"
        log "  $(cut -c1-400 "$work/share-$n-$sys.json")"
    done
done
elapsed=$(($(date +%s) - t_start))
declare -A alive
for sys in "${systems[@]}"; do
    alive[$sys]=yes
    kill -0 "${pid_of[$sys]}" 2>/dev/null || alive[$sys]=no
done

# ---- report ----
mkdir -p "$(dirname "$out")"
{
    echo "# Consumer-group rebalance and share-group throughput: Karst and Apache Kafka ($(date -u +%F))"
    echo
    echo "\`benches/groups.sh${args_given:+ $args_given}\`, started $started, measured in $elapsed s"
    echo "($t_rebalance s of rebalances). Karst $(git -C "$root" rev-parse --short HEAD) (release),"
    echo "Apache Kafka 4.4.0 (one KRaft node, $(java -version 2>&1 | head -1)), confluent-kafka"
    echo "$(python3 -c 'import confluent_kafka as c; print(c.version(), "(librdkafka", c.libversion()[0] + ")")')."
    echo "One sample per cell on a shared, noisy $(nproc)-core machine: differences under a few tens of percent are noise."
    echo
    python3 "$here/groups_report.py" --work "$work" --members "$members" --partitions "$partitions" --rate "$rate" \
        --share-records "$share_records" --share-partitions "$share_partitions" --share-consumers "$share_consumers" \
        --share-max-seconds "$share_max_seconds" --runs "${rb_runs[@]}"
    cat <<EOF

Brokers, all started at the beginning and running throughout:

- Karst: its defaults (fsync before every acknowledgement; group.consumer.heartbeat.interval.ms
  5000, session 45000; group.share.* Kafka's defaults) plus \`group.initial.rebalance.delay.ms=0\`.
- Kafka: broker defaults (no fsync before acknowledging), replication factor 1 for internal
  topics, \`group.initial.rebalance.delay.ms=0\`, formatted with \`--feature share.version=1\`.
- The "hb500" pair: the same, plus \`group.consumer.heartbeat.interval.ms=500\` (and on Kafka
  \`group.consumer.min.heartbeat.interval.ms=500\`, without which it refuses the value).
- Finalized features (Kafka's FeatureCommand): Karst \`${feat[karst]:-?}\`; Kafka \`${feat[kafka]:-?}\`.
- Client settings are librdkafka's defaults (classic: session.timeout.ms 45000,
  heartbeat.interval.ms 3000; auto.offset.reset=latest for the rebalance members).
EOF
    for sys in "${systems[@]}"; do
        echo
        case "$sys" in
        karst*)
            if [ -s "$work/$sys.log" ]; then
                echo "$sys's log at warn and above (still running at the end: ${alive[$sys]}; $(wc -l <"$work/$sys.log") lines, the last 15):"
                echo
                echo '```'
                tail -15 "$work/$sys.log" | cut -c1-400
                echo '```'
            else
                echo "$sys logged nothing at warn or above (still running at the end: ${alive[$sys]})."
            fi
            ;;
        *)
            w=$(grep -E ' (ERROR|WARN) ' "$work/$sys.log" | grep -v 'The metadata log appears to be empty' || true)
            if [ -n "$w" ]; then
                echo "$sys's log, WARN and ERROR but the first start's (still running at the end: ${alive[$sys]}; $(wc -l <<<"$w") lines, the last 10):"
                echo
                echo '```'
                tail -10 <<<"$w" | cut -c1-400
                echo '```'
            else
                echo "$sys logged no WARN or ERROR (still running at the end: ${alive[$sys]})."
            fi
            ;;
        esac
    done
    for sys in "${systems[@]}"; do
        if grep -qv 'The share consumer is in "Preview"' "$work/client-$sys.log" 2>/dev/null; then
            echo
            echo "Client stderr against $sys (the last 10 lines but librdkafka's warning that its share consumer is a preview):"
            echo
            echo '```'
            grep -v 'The share consumer is in "Preview"' "$work/client-$sys.log" | tail -10 | cut -c1-400
            echo '```'
        fi
    done
} >"$out"
cat "$out"
log "wrote $out"
