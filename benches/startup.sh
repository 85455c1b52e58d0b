#!/usr/bin/env bash
# Start-up of a broker whose __consumer_offsets received 10 million commits, before and
# after the log cleaner compacted it (issue 20, acceptance 4): start-up time, peak
# memory, log size and records replayed. A benchmark, not a timed test.
#
#   benches/startup.sh [--groups N] [--topics N] [--partitions N] [--rounds N]
#                      [--segment-bytes B] [--connections N] [--depth N] [--restarts N]
#                      [--out FILE] [--keep]
#
# Defaults: 1,000 groups × 2 topics × 50 partitions = 100,000 distinct keys (group,
# topic, partition), each committed --rounds 100 times: 10,000,000 commits, one
# OffsetCommit v8 request per group and round (100 partitions each), over 4 connections
# with 16 requests in flight on each (benches/src/bin/offsetload.rs). --segment-bytes
# is offsets.topic.segment.bytes (default 1 MiB, so the log has many segments and
# little of it stays in the active segments, which the cleaner never touches);
# --restarts measured start-ups per phase (default 3); --keep leaves the data directory
# and the logs in the temporary directory.
#
# One Karst (release, its defaults otherwise: fsync before every acknowledgement) on a
# free 127.0.0.1 port with a temporary data directory:
# 1. started with the cleaner off (log.cleaner.enable=false); offsetload creates the
#    topics and writes every commit; then stopped with SIGTERM.
# 2. "before": started --restarts times with the cleaner still off, each start timed
#    until an OffsetFetch of the first group is answered (Karst replays
#    __consumer_offsets before it serves: its listener accepts connections in the
#    kernel's backlog earlier but answers nothing until the groups are loaded); then
#    the committed offsets of every group are fetched and compared with each key's last
#    commit, memory is read from /proc/<pid>/status (VmHWM: peak RSS, which counts the
#    log pages Karst maps while it reads them; RssAnon: its own memory, also sampled
#    every 5 ms during the start for its peak), and the broker is stopped (SIGTERM).
# 3. started with the cleaner on (log.cleaner.backoff.ms=500) until no clean has
#    completed for 10 s (karst_log_cleaner_cleans on the admin endpoint), then stopped.
# 4. "after": as 2.
# The log's size is the sum of __consumer_offsets' .log files (and `du` of its
# directories); records replayed come from the "loaded consumer groups" log line (and
# its "became coordinator" lines: partitions read when their leadership was applied).
# The page cache is not dropped: the start-ups read a log the kernel has cached (the
# log was just written), so they measure Karst's work, not the disk.
# Writes benches/results/<UTC date>-startup.md. The broker is stopped on exit (by PID).
# About 10 minutes with the defaults on the 2-core reference machine once built.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

groups=1000
topics=2
partitions=50
rounds=100
segment_bytes=1048576
connections=4
depth=16
restarts=3
keep=0
out="$here/results/$(date -u +%F)-startup.md"
args_given="$*"
usage="usage: $0 [--groups N] [--topics N] [--partitions N] [--rounds N] [--segment-bytes B] [--connections N] [--depth N] [--restarts N] [--out FILE] [--keep]"
while [ $# -gt 0 ]; do
    case "$1" in
        --groups) groups="$2"; shift 2 ;;
        --topics) topics="$2"; shift 2 ;;
        --partitions) partitions="$2"; shift 2 ;;
        --rounds) rounds="$2"; shift 2 ;;
        --segment-bytes) segment_bytes="$2"; shift 2 ;;
        --connections) connections="$2"; shift 2 ;;
        --depth) depth="$2"; shift 2 ;;
        --restarts) restarts="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --keep) keep=1; shift ;;
        *) echo "$usage" >&2; exit 2 ;;
    esac
done
shape=(--groups "$groups" --topics "$topics" --partitions "$partitions" --rounds "$rounds")

log() { echo "[startup.sh] $*" >&2; }
for tool in python3 curl; do
    command -v "$tool" >/dev/null || { log "needs $tool on PATH"; exit 1; }
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/target-bench}"
if [ -z "${KARST_BIN:-}" ] || [ -z "${OFFSETLOAD_BIN:-}" ]; then
    log "building karst and offsetload (release)"
    nice -n 10 cargo build --release -p karst -p karst-benches --bin karst --bin offsetload >&2
fi
KARST_BIN="${KARST_BIN:-$CARGO_TARGET_DIR/release/karst}"
OFFSETLOAD_BIN="${OFFSETLOAD_BIN:-$CARGO_TARGET_DIR/release/offsetload}"

work="$(mktemp -d "${TMPDIR:-/tmp}/karst-startup.XXXXXX")"
data="$work/data"
karst_pid=""
stop_karst() {
    local i
    [ -n "$karst_pid" ] || return 0
    kill -TERM "$karst_pid" 2>/dev/null || true
    for ((i = 0; i < 1200; i++)); do kill -0 "$karst_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$karst_pid" 2>/dev/null; then
        log "karst did not stop within 120 s; killing it"
        kill -KILL "$karst_pid" 2>/dev/null || true
    fi
    wait "$karst_pid" 2>/dev/null || true
    karst_pid=""
}
cleanup() {
    stop_karst
    if [ "$keep" = 1 ]; then log "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
addr="127.0.0.1:$(free_port)"
now_ns() { date +%s%N; }

# start_karst <name> [--set ...]: a Karst on $addr with $data (stdout $work/<name>.out,
# log $work/<name>.log at info); sets karst_pid and start_ns.
start_karst() {
    local name="$1"
    shift
    mkdir -p "$data"
    start_ns=$(now_ns)
    # Karst reads KARST_* variables as settings: none of the caller's reach it.
    env $(env | sed -n 's/^\(KARST_[A-Za-z0-9_]*\)=.*/-u \1/p') KARST_LOG=info \
        "$KARST_BIN" serve --listen "$addr" --data-dir "$data" --admin-listen 127.0.0.1:0 \
        --set "offsets.topic.segment.bytes=$segment_bytes" "$@" \
        >"$work/$name.out" 2>"$work/$name.log" &
    karst_pid=$!
}
wait_listening() { # wait_listening <name>
    local i
    for ((i = 0; i < 6000; i++)); do
        grep -q '^Karst listening on' "$work/$1.out" 2>/dev/null && return 0
        kill -0 "$karst_pid" 2>/dev/null || { log "$1: karst exited; log tail:"; tail -20 "$work/$1.log" >&2; exit 1; }
        sleep 0.1
    done
    log "$1: karst not listening after 600 s"
    exit 1
}
metric() { # metric <admin addr> <name> -> value (0 if absent)
    curl -s "http://$1/metrics" | awk -v n="$2" '$1 == n {print $2; found=1} END {if (!found) print 0}'
}
# Bytes of __consumer_offsets' .log files, their number, and du of its directories.
log_size() {
    python3 - "$data" <<'EOF'
import glob, os, subprocess, sys
dirs = glob.glob(os.path.join(sys.argv[1], "__consumer_offsets-*"))
logs = [f for d in dirs for f in glob.glob(os.path.join(d, "*.log"))]
size = sum(os.path.getsize(f) for f in logs)
du = int(subprocess.run(["du", "-sB1", "-c", *dirs], capture_output=True, text=True).stdout.split()[-2]) if dirs else 0
print(size, len(logs), du)
EOF
}

# Phase 1: the commits.
log "karst on $addr, data in $data; writing $((groups * topics * partitions * rounds)) commits"
start_karst write --set log.cleaner.enable=false
wait_listening write
commit_json=$("$OFFSETLOAD_BIN" commit --broker "$addr" "${shape[@]}" --connections "$connections" --depth "$depth")
log "commits: $commit_json"
t=$(now_ns)
stop_karst
stop_write_ms=$((($(now_ns) - t) / 1000000))
read -r size_before segments_before du_before <<<"$(log_size)"
log "__consumer_offsets: $size_before bytes in $segments_before segments (du $du_before)"

# measure <phase> [--set ...]: --restarts timed start-ups; appends one JSON line per
# start-up to $work/<phase>.jsonl.
measure() {
    local phase="$1" i name probe loaded
    shift
    for ((i = 1; i <= restarts; i++)); do
        name="$phase-$i"
        sync
        start_karst "$name" "$@"
        if ! probe=$("$OFFSETLOAD_BIN" probe --broker "$addr" "${shape[@]}" --pid "$karst_pid" --since-ns "$start_ns"); then
            log "$name: probe failed; log tail:"
            tail -20 "$work/$name.log" >&2
            exit 1
        fi
        wait_listening "$name"
        # "loaded consumer groups" with its fields, the take-overs of partitions, and the
        # log lines' own timestamps of the start-up's steps.
        loaded=$(python3 - "$work/$name.log" <<'EOF'
import json, re, sys
from datetime import datetime
ansi = re.compile(r"\x1b\[[0-9;]*m")
lines = [ansi.sub("", l) for l in open(sys.argv[1], errors="replace")]
def ts(l):
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z", l)
    return datetime.fromisoformat(m.group(1)[:26]).timestamp() if m else None
def field(l, k):
    m = re.search(rf"\b{k}=(\d+)", l)
    return int(m.group(1)) if m else None
out = {"records": None, "groups": None, "takeover_lines": 0, "takeover_records": 0}
first = next((ts(l) for l in lines if ts(l) is not None), None)
for l in lines:
    if "loaded consumer groups" in l:
        out["records"], out["groups"] = field(l, "records"), field(l, "groups")
        out["loaded_at_ms"] = (ts(l) - first) * 1e3 if first and ts(l) else None
    if "recovered logs" in l and first and ts(l):
        out["recovered_at_ms"] = (ts(l) - first) * 1e3
    if "became coordinator of the groups" in l:
        out["takeover_lines"] += 1
        out["takeover_records"] += field(l, "records") or 0
print(json.dumps(out))
EOF
)
        python3 -c 'import json,sys; a=json.loads(sys.argv[1]); a["log"]=json.loads(sys.argv[2]); print(json.dumps(a))' "$probe" "$loaded" >>"$work/$phase.jsonl"
        log "$name: $(tail -1 "$work/$phase.jsonl")"
        stop_karst
    done
}

measure before --set log.cleaner.enable=false

# Phase 3: compaction.
log "compacting"
start_karst clean --set log.cleaner.backoff.ms=500
wait_listening clean
admin=$(sed -n 's/^Karst admin listening on //p' "$work/clean.out" | head -1)
clean_start=$(now_ns)
last_cleans=0 last_change=$(now_ns)
while :; do
    cleans=$(metric "$admin" karst_log_cleaner_cleans_total)
    [ "$cleans" = 0 ] && cleans=$(metric "$admin" karst_log_cleaner_cleans)
    if [ "$cleans" != "$last_cleans" ]; then last_cleans=$cleans last_change=$(now_ns); fi
    # Done when no clean completed for 10 s, after at least one (or after 30 s without any:
    # nothing was cleanable, e.g. every partition still in its active segment).
    if [ $(($(now_ns) - last_change)) -gt 10000000000 ] && { [ "${cleans%.*}" -gt 0 ] || [ $(($(now_ns) - clean_start)) -gt 30000000000 ]; }; then break; fi
    if [ $(($(now_ns) - clean_start)) -gt 900000000000 ]; then log "the cleaner was still cleaning after 900 s"; exit 1; fi
    kill -0 "$karst_pid" 2>/dev/null || { log "karst exited while cleaning"; tail -20 "$work/clean.log" >&2; exit 1; }
    sleep 0.5
done
clean_ms=$(((last_change - clean_start) / 1000000))
cleaner_metrics=$(curl -s "http://$admin/metrics" | grep -E '^karst_log_cleaner_' || true)
stop_karst
read -r size_after segments_after du_after <<<"$(log_size)"
log "compacted in $clean_ms ms ($last_cleans cleans): $size_after bytes in $segments_after segments (du $du_after)"

measure after --set log.cleaner.enable=false

# The report.
mkdir -p "$(dirname "$out")"
python3 - "$work" "$out" <<EOF
import json, statistics, sys
work, out = sys.argv[1], sys.argv[2]
commit = json.loads('''$commit_json''')
runs = {p: [json.loads(l) for l in open(f"{work}/{p}.jsonl")] for p in ("before", "after")}
size = {"before": ($size_before, $segments_before, $du_before), "after": ($size_after, $segments_after, $du_after)}
med = lambda p, f: statistics.median(f(r) for r in runs[p])
def ready(r): return r["ready_ms"]
def hwm(r): return r["memory_at_ready"]["vm_hwm_kib"] / 1024
def anon_peak(r): return r["rss_anon_peak_sampled_kib"] / 1024
def anon(r): return r["memory_at_ready"]["rss_anon_kib"] / 1024
def records(r): return r["log"]["records"] or 0
def loaded(r): return r["log"].get("loaded_at_ms")
def takeovers(r): return r["log"]["takeover_records"]
def ratio(a, b): return f"{a / b:.3f}×" if b else "–"
rows = [
    ("commits written", f"{commit['commits']:,}", "", ""),
    ("distinct keys (group, topic, partition)", f"{commit['keys']:,}", f"{commit['keys']:,}", "1"),
    ("__consumer_offsets size (.log bytes)", f"{size['before'][0]:,}", f"{size['after'][0]:,}", ratio(size['after'][0], size['before'][0])),
    ("segments", f"{size['before'][1]:,}", f"{size['after'][1]:,}", ratio(size['after'][1], size['before'][1])),
    ("records read by the start-up's replay", f"{med('before', records):,.0f}", f"{med('after', records):,.0f}", ratio(med('after', records), med('before', records))),
    ("start-up until OffsetFetch answers, ms (median)", f"{med('before', ready):,.0f}", f"{med('after', ready):,.0f}", ratio(med('after', ready), med('before', ready))),
    ("peak RSS (VmHWM), MiB (median)", f"{med('before', hwm):,.1f}", f"{med('after', hwm):,.1f}", ratio(med('after', hwm), med('before', hwm))),
    ("peak anonymous RSS (sampled every 5 ms), MiB (median)", f"{med('before', anon_peak):,.1f}", f"{med('after', anon_peak):,.1f}", ratio(med('after', anon_peak), med('before', anon_peak))),
    ("anonymous RSS when ready, MiB (median)", f"{med('before', anon):,.1f}", f"{med('after', anon):,.1f}", ratio(med('after', anon), med('before', anon))),
]
with open(out, "w") as f:
    w = lambda s="": print(s, file=f)
    w(f"# Start-up after {commit['commits']:,} offset commits, before and after compaction ($(date -u +%F))")
    w()
    w("\`benches/startup.sh${args_given:+ $args_given}\` (Karst $(git -C "$root" rev-parse --short HEAD), release), on a shared $(nproc)-core machine")
    w("(load average $(cut -d' ' -f1-3 /proc/loadavg) at the end): one sample per start-up, $restarts start-ups per phase.")
    w()
    w(f"{commit['keys']:,} keys ($groups groups × $topics topics × $partitions partitions), each committed $rounds times by")
    w(f"OffsetCommit v8 (generation -1, empty member id), {commit['commits_per_request']} commits per request, {commit['connections']} connections")
    w(f"× {commit['depth']} in flight: **{commit['commits_per_s']:,.0f} commits/s** ({commit['requests_per_s']:,.0f} requests/s, {commit['seconds']:.1f} s), Karst's")
    w(f"default durability (fsync before every acknowledgement). \`offsets.topic.segment.bytes\` = $segment_bytes.")
    w()
    w("| | before compaction | after compaction | after / before |")
    w("|---|---:|---:|---:|")
    for r in rows:
        w(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} |")
    w()
    w(f"Compaction: the cleaner (\`log.cleaner.backoff.ms=500\`) took $clean_ms ms from start to its last clean ($last_cleans cleans).")
    w(f"du of the log's directories: {size['before'][2]:,} bytes before, {size['after'][2]:,} after.")
    w()
    w("Every start-up (ready: ms from starting the process to the first OffsetFetch answer; the log lines'")
    w("own times from the first line to \`recovered logs\` and to \`loaded consumer groups\`; the records that")
    w("line counts, and those of its \`became coordinator\` lines: partitions read while the metadata")
    w("image was applied, before \`recovered logs\`, because the leader epoch moved):")
    w()
    w("| phase | ready ms | recovered logs at ms | groups loaded at ms | records replayed | of which by take-overs | VmHWM MiB | peak RssAnon MiB | RssAnon at ready MiB | keys checked / wrong |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    fmt = lambda v: "–" if v is None else f"{v:,.0f}"
    for p in ("before", "after"):
        for r in runs[p]:
            w(f"| {p} | {ready(r):,.0f} | {fmt(r['log'].get('recovered_at_ms'))} | {fmt(loaded(r))} | {records(r):,} | {takeovers(r):,} | {hwm(r):,.1f} | {anon_peak(r):,.1f} | {anon(r):,.1f} | {r['keys_checked']:,} / {r['keys_wrong']} |")
    w()
    w("Every start-up's OffsetFetch answers were compared with the last offset committed for")
    w("each key of every group (\`keys checked / wrong\`); a wrong one fails the run.")
    w()
    w("Cleaner metrics after compaction:")
    w()
    w("\`\`\`")
    w("""$cleaner_metrics""")
    w("\`\`\`")
    w()
    w("Raw lines:")
    w()
    w("\`\`\`")
    w(json.dumps(commit))
    for p in ("before", "after"):
        for r in runs[p]:
            w(p + " " + json.dumps(r))
    w("\`\`\`")
EOF
cat "$out"
log "wrote $out"
