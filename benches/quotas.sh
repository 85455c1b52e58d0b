#!/usr/bin/env bash
# Client quotas (issue 21, acceptance 3): a producer over its producer_byte_rate is held
# to the quota over a minute while another client's throughput is unaffected. A
# benchmark, not a timed test.
#
#   benches/quotas.sh [--quota BYTES_PER_S] [--free-rate BYTES_PER_S] [--seconds N] [--size BYTES] [--out FILE]
#
# One Karst (release, its defaults: fsync before every acknowledgement) on a free
# 127.0.0.1 port with a temporary data directory; `karst quota set --client-id limited
# producer_byte_rate=QUOTA` (default 2 MiB/s). Two confluent-kafka producers
# (benches/quota_client.py: SIZE-byte messages, default 1000, acks=all), each on its
# own topic: "limited" as fast as it may, "free" at --free-rate (default 20 MB/s: an
# unpaced producer writes hundreds of MB/s here and would fill the disk in a minute;
# the topics keep 1 GiB). First "free" alone for 20 s (its baseline), then "limited"
# and "free" side by side for --seconds (default 66: six of the quota's 11-second
# windows, about a minute. A rate is held to the quota over each window, and a client
# may send a window's worth at once, so over a span that is not whole windows the
# share swings by up to a window's worth: 60 s may hold 6.5 windows' bursts, 10 % over,
# in Kafka as in Karst). Reported: each one's
# acknowledged MB/s, "limited" as a share of its quota, "free" alongside as a share of
# its baseline with its acknowledgement latency percentiles, and the throttle times.
# Writes benches/results/<UTC date>-quotas.md. About 1.5 minutes once built.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

quota=2097152
free_rate=20000000
seconds=66
size=1000
out="$here/results/$(date -u +%F)-quotas.md"
args_given="$*"
while [ $# -gt 0 ]; do
    case "$1" in
        --quota) quota="$2"; shift 2 ;;
        --free-rate) free_rate="$2"; shift 2 ;;
        --seconds) seconds="$2"; shift 2 ;;
        --size) size="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        *) echo "usage: $0 [--quota BYTES_PER_S] [--seconds N] [--size BYTES] [--out FILE]" >&2; exit 2 ;;
    esac
done

log() { echo "[quotas.sh] $*" >&2; }
python3 -c 'import confluent_kafka' 2>/dev/null || { log "needs confluent-kafka (pip install confluent-kafka)"; exit 1; }

# shellcheck source=benches/single-karst.sh
. "$here/single-karst.sh"
single_karst_setup quotas
addr="127.0.0.1:$(free_port)"
single_karst_start --listen "$addr"
for t in q-limited q-free; do
    "$KARST_BIN" topic create "$t" -b "$addr" --config retention.bytes=1073741824 --config segment.bytes=134217728 >/dev/null
done
"$KARST_BIN" quota set --client-id limited "producer_byte_rate=$quota" -b "$addr" >/dev/null
"$KARST_BIN" quota list -b "$addr" >&2

client() { python3 "$here/quota_client.py" "$addr" "$1" "$2" "$3" "$size" "${4:-0}"; }
log "free alone for 20 s"
alone="$(client q-free free 20 "$free_rate")"
log "limited and free side by side for $seconds s"
client q-limited limited "$seconds" >"$work/limited.json" &
limited_pid=$!
client q-free free "$seconds" "$free_rate" >"$work/free.json"
wait "$limited_pid"

mkdir -p "$(dirname "$out")"
python3 - "$alone" "$(cat "$work/limited.json")" "$(cat "$work/free.json")" "$quota" "$seconds" "$size" "$args_given" "$(git -C "$root" rev-parse --short HEAD)" "$free_rate" >"$out" <<'PY'
import json, sys
alone, limited, free = (json.loads(a) for a in sys.argv[1:4])
quota, seconds, size, args, rev, free_rate = float(sys.argv[4]), sys.argv[5], sys.argv[6], sys.argv[7], sys.argv[8], float(sys.argv[9])
mb = lambda r: r["bytes"] / r["seconds"] / 1e6
print(f"# Client quotas: a producer held to producer_byte_rate, another unaffected\n")
print(f"`benches/quotas.sh {args}`, Karst {rev}; {size}-byte messages, acks=all, confluent-kafka producers.\n")
lat = lambda r: f"{r['p50_ms']:.1f} / {r['p99_ms']:.1f} / {r['p999_ms']:.1f}"
print("| producer | quota | MB/s | share | ack latency p50 / p99 / p99.9 (ms) | throttle answers | longest throttle |")
print("|---|---|---|---|---|---|---|")
print(f"| free, alone (20 s, offered {free_rate/1e6:.0f} MB/s) | none | {mb(alone):.2f} | baseline | {lat(alone)} | {alone['throttles']} | {alone['max_throttle_ms']:.0f} ms |")
print(f"| limited ({seconds} s, unpaced) | {quota/1e6:.2f} MB/s | {mb(limited):.3f} | {100*mb(limited)/(quota/1e6):.1f} % of its quota | {lat(limited)} | {limited['throttles']} | {limited['max_throttle_ms']:.0f} ms |")
print(f"| free, alongside ({seconds} s, offered {free_rate/1e6:.0f} MB/s) | none | {mb(free):.2f} | {100*mb(free)/mb(alone):.1f} % of its baseline | {lat(free)} | {free['throttles']} | {free['max_throttle_ms']:.0f} ms |")
PY
cat "$out"
