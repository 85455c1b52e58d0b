"""The tables of benches/groups.sh's report, from the JSON its clients wrote in --work."""

import argparse
import json
import os
import statistics

ap = argparse.ArgumentParser()
ap.add_argument("--work", required=True)
ap.add_argument("--members", type=int)
ap.add_argument("--partitions", type=int)
ap.add_argument("--rate", type=float)
ap.add_argument("--share-records", type=int)
ap.add_argument("--share-partitions", type=int)
ap.add_argument("--share-consumers")
ap.add_argument("--share-max-seconds", type=float)
ap.add_argument("--runs", nargs="*", default=[])  # label|protocol|karst system|kafka system
args = ap.parse_args()

DESCRIBE = {
    "cooperative": "classic protocol, `partition.assignment.strategy=cooperative-sticky`",
    "eager": "classic protocol, `partition.assignment.strategy=range` (eager: every member revokes everything)",
    "consumer": "`group.protocol=consumer` (KIP-848, the broker's default assignor: uniform on both)",
}


def load(label, system):
    path = os.path.join(args.work, f"rb-{label}-{system}.jsonl")
    steps, other = [], []
    if os.path.exists(path):
        for line in open(path):
            line = line.strip()
            if not line.startswith("{"):
                continue
            d = json.loads(line)
            (steps if "step" in d else other).append(d)
    return steps, other


def fmt(v, digits=0):
    return "–" if v is None else f"{v:,.{digits}f}"


def ratio(a, b):
    return "–" if a is None or b is None or b == 0 else f"{a / b:.2f}×"


def counted(rows, kind):
    """The steps of a kind (None: all) in the summary: not the first join, which creates the group."""
    return [r for r in rows if kind in (None, r["step"]) and not (r["step"] == "join" and r["member"] == 0)]


def stat(rows, kind, f):
    ms = [r["ms"] for r in counted(rows, kind)]
    return f(ms) if ms else None


print("## 1. Rebalance time: members join one at a time, then leave one at a time\n")
print(f"A topic of {args.partitions} partitions, a producer writing {args.rate:,.0f} records/s of 100 bytes round-robin")
print(f"over them (acks=all) throughout; {args.members} confluent-kafka consumers, one thread each in one")
print("Python process, join the group one at a time (each after the previous step converged")
print("and held), then leave one at a time (`close()`, the oldest first; the last one's leave is not")
print("measured). A step is the time from the new member's `subscribe()` (the leaving member's")
print("`close()`) to the last assignment change that makes every member's `assignment()` the")
print("balanced final one: each partition assigned exactly once, loads differing by at most one;")
print("it must then stay unchanged for 0.5 s. Members call `consume(500, 0.02)` in a loop; their")
print("rebalance callbacks (served inside it) keep their assignment, checked against `assignment()`")
print("after every call, so a step is known to about 20 ms. `ratio` is Karst/Kafka.\n")

print("Summary, ms, over the steps but the first join (which creates the group: it is in the")
print("per-step tables):\n")
print("| run | steps | Karst p50 | Kafka p50 | p50 ratio | Karst max | Kafka max | max ratio |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
data = {}
for run in args.runs:
    label, proto, ka, kf = run.split("|")
    (sa, oa), (sf, of) = load(label, ka), load(label, kf)
    data[label] = (proto, ka, kf, sa, oa, sf, of)
    for kind, name in (("join", "joins"), ("leave", "leaves"), (None, "all")):
        a50, f50 = stat(sa, kind, statistics.median), stat(sf, kind, statistics.median)
        amax, fmax = stat(sa, kind, max), stat(sf, kind, max)
        n = f"{len(counted(sa, kind))} / {len(counted(sf, kind))}"
        print(f"| {label} | {name} ({n}) | {fmt(a50)} | {fmt(f50)} | {ratio(a50, f50)} | {fmt(amax)} | {fmt(fmax)} | {ratio(amax, fmax)} |")
print()
print("`steps` counts the steps measured on Karst / on Kafka (a full run has "
      f"{args.members - 1} joins to an existing group and {args.members - 1} leaves).\n")

for label, (proto, ka, kf, sa, oa, sf, of) in data.items():
    hb = " with `group.consumer.heartbeat.interval.ms=500` on both brokers" if "hb500" in label else ""
    print(f"### {label}: {DESCRIBE[proto]}{hb}\n")
    print("Per step: time to the balanced assignment; what the other members (all but the joining or")
    print("leaving one) did meanwhile: records they consumed / records produced during the step; the")
    print("longest time in the step in which none of them consumed a record (group) and in which one")
    print("of them did not (member); how many of them held no partition at some point in the step")
    print("(revoked everything, as eager members do) and the longest such time; partitions that changed")
    print("owner in the step (in brackets the fewest that had to: the new member's share, the leaver's")
    print("partitions); the producer's longest acknowledgement wait in the step (Karst fsyncs before")
    print("acknowledging, so a slow disk shows here and stops every consumer alike). Last column: how")
    print("long the leaving member's `close()` took.\n")
    print("| step | members after | Karst ms | Kafka ms | ratio | Karst consumed / produced | Kafka consumed / produced | Karst gap ms group / member | Kafka gap ms group / member | Karst emptied (longest ms) | Kafka emptied (longest ms) | moved Karst / Kafka | producer ack max ms Karst / Kafka | close() ms Karst / Kafka |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|")
    key = lambda r: (r["step"], r["member"])
    fa = {key(r): r for r in sa}
    ff = {key(r): r for r in sf}
    order = [k for k in [("join", i) for i in range(args.members)] + [("leave", i) for i in range(args.members)] if k in fa or k in ff]
    g = lambda r, x: None if r is None else r.get(x)
    cp = lambda r: "–" if r is None or r.get("others_consumed") is None else f"{r['others_consumed']:,} / {r['produced']:,}"
    gaps = lambda r: "–" if r is None or r.get("longest_gap_ms") is None else f"{r['longest_gap_ms']:,.0f} / {r['longest_member_gap_ms']:,.0f}"
    emp = lambda r: "–" if r is None or r.get("others_consumed") is None else f"{r['others_emptied']} ({r['longest_empty_ms']:,.0f})"
    mv = lambda r: "–" if r is None or "moved" not in r else f"{r['moved']} ({r['moved_needed']})"
    for k in order:
        a, f = fa.get(k), ff.get(k)
        members = (a or f)["members_after"]
        close = "" if k[0] == "join" else f"{fmt(g(a, 'close_ms'))} / {fmt(g(f, 'close_ms'))}"
        print(f"| {k[0]} {k[1] + 1} | {members} | {fmt(g(a, 'ms'))} | {fmt(g(f, 'ms'))} | {ratio(g(a, 'ms'), g(f, 'ms'))} | {cp(a)} | {cp(f)} | {gaps(a)} | {gaps(f)} | {emp(a)} | {emp(f)} | {mv(a)} / {mv(f)} | {fmt(g(a, 'ack_max_ms'))} / {fmt(g(f, 'ack_max_ms'))} | {close} |")
    for sysname, steps, other in (("Karst", sa, oa), ("Kafka", sf, of)):
        holds = [r["hold_gap_ms"] for r in steps[1:]]
        mholds = [r["hold_member_gap_ms"] for r in steps[1:]]
        aholds = [r["hold_ack_max_ms"] for r in steps[1:] if "hold_ack_max_ms" in r]
        if holds:
            print(f"\n\n{sysname}, the baseline: in the steady 0.5 s after each step (but the first) the longest gap was, group / member, "
                  f"median {statistics.median(holds):.0f} / {statistics.median(mholds):.0f} ms, max {max(holds):.0f} / {max(mholds):.0f} ms"
                  + (f"; the producer's longest acknowledgement wait median {statistics.median(aholds):.0f} ms, max {max(aholds):.0f} ms." if aholds else "."), end="")
        # Steps well over their kind's median: when each member's assignment changed (ms after the step's start: partitions held).
        for kind in ("join", "leave"):
            ks = counted(steps, kind)
            if len(ks) < 3:
                continue
            med = statistics.median(r["ms"] for r in ks)
            for r in ks:
                if r["ms"] > 1.3 * med and "timeline" in r:
                    tl = "; ".join(f"member {int(i) + 1}: " + ", ".join(f"{t} ms→{n}" for t, n in ch) for i, ch in r["timeline"].items() if ch)
                    print(f"\n\n{sysname} {kind} {r['member'] + 1} took {r['ms']:,.0f} ms ({r['ms'] / med:.1f}× the median {kind}): "
                          f"assignment changes (ms after the start → partitions held): {tl}.", end="")
        for d in other:
            if "timeout" in d:
                print(f"\n\n**{sysname}: step `{d['timeout']}` did not converge within {d['seconds']:.0f} s** "
                      f"({d['members']} members). Last assignments: `{json.dumps(d['state'])}`", end="")
            elif "done" in d:
                if not d["done"]:
                    print(f"\n{sysname}: the run stopped after {d['steps']} steps.", end="")
                if d.get("assignment_mismatches"):
                    print(f"\n{sysname}: {d['assignment_mismatches']} times a member's callbacks and its `assignment()` disagreed after a poll.", end="")
                if d.get("errors"):
                    print(f"\n{sysname}: member errors `{d['errors']}`.", end="")
        if not steps and not other:
            print(f"\n\n**{sysname}: no result** (the client process failed; see its stderr below).", end="")
    print("\n")

print("## 2. Share groups: draining a topic with 1 to 16 share consumers\n")
print(f"A topic of {args.share_partitions} partitions filled with {args.share_records:,} records of 100 bytes (acks=all) on each")
print("broker; per consumer count a new share group (`share.auto.offset.reset=earliest`, set with")
print("IncrementalAlterConfigs on its GROUP resource) drains it: that many processes, each one")
print("confluent-kafka `ShareConsumer` (explicit acknowledgement): `poll()`, `acknowledge()` every record")
print("(ACCEPT), `commit_sync()`, again, until the group has accepted every record (bounded by")
print(f"{args.share_max_seconds:.0f} s). Rates are records accepted over the time from the first record delivered to")
print("the commit that completed the count (MB/s of record values); the times to the first record")
print("delivered and to the last commit count from the consumers' start (process start, `subscribe()`,")
print("group join, assignment). Commit latency: the time each `commit_sync()` took (it carries the")
print("acknowledgements of the whole poll), HDR histogram over all commits of all consumers (the")
print("number of commits is in the table: where it is under a thousand, p99.9 is about the maximum).\n")


def share(sysname, n):
    path = os.path.join(args.work, f"share-{n}-{sysname}.json")
    try:
        return json.loads(open(path).read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return None


def rate(r):
    if r is None or not r.get("seconds_from_first_record"):
        return None
    return r["accepted"] / r["seconds_from_first_record"]


print("| consumers | Karst records/s | Kafka records/s | ratio | Karst MB/s | Kafka MB/s | Karst first record / drained, s | Kafka first record / drained, s | Karst commit ms p50 / p99 / p99.9 | Kafka commit ms p50 / p99 / p99.9 | accepted / distinct (Karst; Kafka) | commits (Karst / Kafka) |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|---|")
notes = []
for n in args.share_consumers.split(","):
    a, f = share("karst", n), share("kafka", n)
    ra, rf = rate(a), rate(f)
    lat = lambda r: "–" if r is None else f"{r['ack_p50_ms']:.2f} / {r['ack_p99_ms']:.2f} / {r['ack_p999_ms']:.2f}"
    drain = lambda r: "–" if r is None else (
        (f"{r['seconds_from_subscribe'] - r['seconds_from_first_record']:.1f} / " if r.get("seconds_from_first_record") else "– / ")
        + f"{r['seconds_from_subscribe']:.1f}" + ("" if r["complete"] else " (incomplete)"))
    ad = lambda r: "–" if r is None else f"{r['accepted']:,} / {r['distinct']:,}"
    cm = lambda r: "–" if r is None else f"{r['commits']:,}"
    mb = lambda x: None if x is None else x * 100 / 1e6
    print(f"| {n} | {fmt(ra)} | {fmt(rf)} | {ratio(ra, rf)} | {fmt(mb(ra), 2)} | {fmt(mb(rf), 2)} | {drain(a)} | {drain(f)} | {lat(a)} | {lat(f)} | {ad(a)}; {ad(f)} | {cm(a)} / {cm(f)} |")
    for sysname, r in (("Karst", a), ("Kafka", f)):
        if r is None:
            notes.append(f"- {n} consumer{'s' if n != '1' else ''} on {sysname}: no result (the client failed; see its stderr below).")
        else:
            extra = []
            if not r["complete"]:
                extra.append(f"**incomplete**: {r['accepted']:,} of {r['target']:,} accepted within the bound")
            if r["failed_commits"]:
                extra.append(f"{r['failed_commits']} commits answered with errors")
            if r["errors"]:
                extra.append(f"errors: `{'; '.join(r['errors'][:3])}`")
            extra.append(f"records per consumer {r['per_consumer']}")
            extra.append(f"{r['accepted'] / max(1, r['commits']):,.0f} records per commit")
            notes.append(f"- {n} consumer{'s' if n != '1' else ''} on {sysname}: " + "; ".join(extra) + ".")
print()
print("\n".join(notes))
