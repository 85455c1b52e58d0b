"""Rebalance time of one consumer group (benches/groups.sh).

  groups_rebalance.py --bootstrap HOST:PORT --topic T --group G --protocol {cooperative,eager,consumer}
                      [--members 10] [--partitions 20] [--rate 1000] [--step-timeout 60] [--hold 1]

Creates topic T (PARTITIONS partitions, replication factor 1), starts one producer
thread writing RATE records of 100 bytes a second round-robin over the partitions, then
MEMBERS confluent-kafka consumers, one thread each, join the group one at a time and
afterwards leave it one at a time (close()), the last one unmeasured. Protocols:
cooperative = classic with partition.assignment.strategy=cooperative-sticky, eager =
classic with range (eager), consumer = group.protocol=consumer (KIP-848, the broker's
default assignor). Everything else is the client's and the broker's default.

Each member thread polls (consume(500, 0.02)); its rebalance callbacks (on_assign,
on_revoke, on_lost: served inside consume()) keep its assignment and when it last
changed, and after every consume() it is checked against the client's assignment(). A step starts right before the new member's
subscribe() (or the leaving member's close()) and ends at the last assignment change
that makes the members' assignments the balanced final one: every partition assigned
exactly once among the members in the group, loads differing by at most one. It must
then hold for --hold seconds unchanged (else the step goes on). Consumption across a
step: records the other members (all but the joining or leaving one) consumed between
its start and end, records produced meanwhile, the longest time within the step in
which none of them consumed anything, the longest time one of them went without a
record, and how many of them held no partition at some point (an eager rebalance
revokes everything from each member, each at its own heartbeat), how many partitions
changed owner (and how many had to), the producer's longest acknowledgement wait, and
each member's assignment changes in the step. The same gaps over the --hold period after
the step are the baseline.

Prints one JSON line per step, then a final {"done": ...} line. A step that does not
converge within --step-timeout ends the run with a {"timeout": ...} line holding every
member's last assignment."""

import argparse
import json
import sys
import threading
import time

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

ap = argparse.ArgumentParser()
ap.add_argument("--bootstrap", required=True)
ap.add_argument("--topic", required=True)
ap.add_argument("--group", required=True)
ap.add_argument("--protocol", required=True, choices=["cooperative", "eager", "consumer"])
ap.add_argument("--members", type=int, default=10)
ap.add_argument("--partitions", type=int, default=20)
ap.add_argument("--rate", type=float, default=1000.0)
ap.add_argument("--step-timeout", type=float, default=60.0)
ap.add_argument("--hold", type=float, default=1.0)
args = ap.parse_args()
now = time.monotonic


def say(obj):
    print(json.dumps(obj), flush=True)


admin = AdminClient({"bootstrap.servers": args.bootstrap})
for f in admin.create_topics([NewTopic(args.topic, args.partitions, 1)], operation_timeout=30).values():
    f.result(60)
# Until the topic's leaders are known to a fresh client.
deadline = now() + 60
while now() < deadline:
    md = admin.list_topics(args.topic, timeout=10).topics.get(args.topic)
    if md is not None and md.error is None and len(md.partitions) == args.partitions and all(p.leader >= 0 for p in md.partitions.values()):
        break
    time.sleep(0.2)

stop_producer = threading.Event()
produced = []  # (time, n) per pacing tick
acked = []  # (time, acknowledgement latency in s) per record


def delivered(err, msg):
    if err is None:
        acked.append((now(), msg.latency()))


def produce():
    p = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 5, "acks": "all"})
    value = b"v" * 100
    start, sent = now(), 0
    while not stop_producer.is_set():
        due = int(args.rate * (now() - start))
        n = due - sent
        for i in range(n):
            try:
                p.produce(args.topic, value, partition=(sent + i) % args.partitions, on_delivery=delivered)
            except BufferError:
                p.poll(0.01)
        if n > 0:
            produced.append((now(), n))
            sent = due
        p.poll(0.005)
    p.flush(10)


class Member:
    def __init__(self, idx):
        self.idx = idx
        self.assignment = frozenset()
        self.since = 0.0  # when the current assignment was first seen
        self.events = []  # (time, records) per non-empty consume()
        self.history = []  # (time, assignment) at each change
        self.leave = threading.Event()
        self.started = threading.Event()
        self.t_subscribe = None
        self.close_ms = None
        self.error = None
        self.mismatches = 0
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def config(self):
        conf = {"bootstrap.servers": args.bootstrap, "group.id": args.group, "auto.offset.reset": "latest",
                "client.id": f"member-{self.idx}"}
        if args.protocol == "consumer":
            conf["group.protocol"] = "consumer"
        else:
            conf["partition.assignment.strategy"] = "cooperative-sticky" if args.protocol == "cooperative" else "range"
        return conf

    def changed(self, t, a):
        if a != self.assignment:
            self.assignment, self.since = a, t
            self.history.append((t, a))

    def on_assign(self, _c, parts):
        self.changed(now(), self.assignment | frozenset(p.partition for p in parts))

    def on_revoke(self, _c, parts):
        self.changed(now(), self.assignment - frozenset(p.partition for p in parts))

    def run(self):
        try:
            c = Consumer(self.config())
            self.t_subscribe = now()
            self.since = self.t_subscribe
            c.subscribe([args.topic], on_assign=self.on_assign, on_revoke=self.on_revoke, on_lost=self.on_revoke)
            self.started.set()
            while not self.leave.is_set():
                msgs = c.consume(500, 0.02)
                if msgs:
                    self.events.append((now(), len(msgs)))
                # What the callbacks said must be what the client holds.
                if frozenset(tp.partition for tp in c.assignment()) != self.assignment:
                    self.mismatches += 1
            t = now()
            c.close()
            self.close_ms = (now() - t) * 1000.0
        except Exception as e:  # reported, not hidden
            self.error = repr(e)
            self.started.set()
        finally:
            self.closed.set()


def balanced(members):
    n = len(members)
    seen = []
    for m in members:
        seen.extend(m.assignment)
    if sorted(seen) != list(range(args.partitions)):
        return False
    loads = [len(m.assignment) for m in members]
    return max(loads) - min(loads) <= 1


def longest_gap(times, t0, t1):
    times = sorted([t0, t1] + [t for t in times if t0 <= t <= t1])
    return max(b - a for a, b in zip(times, times[1:])) * 1000.0


def gaps_and_count(others, t0, t1):
    """(longest time none of `others` consumed, longest time one of them did not, records they consumed)."""
    every, worst, count = [], 0.0, 0
    for m in others:
        mine = [(t, n) for t, n in list(m.events) if t0 <= t <= t1]
        count += sum(n for _, n in mine)
        every.extend(t for t, _ in mine)
        worst = max(worst, longest_gap([t for t, _ in mine], t0, t1))
    return longest_gap(every, t0, t1), worst, count


def emptied(others, t0, t1):
    """(How many of `others` held no partition at some point between t0 and t1, as an eager
    revocation leaves them; the longest time one of them held none, in ms)."""
    n, longest = 0, 0.0
    for m in others:
        hist = list(m.history)
        empty_since = None
        for t, a in hist:
            if t > t1:
                break
            if not a and empty_since is None:
                empty_since = t
            elif a and empty_since is not None:
                if t >= t0:
                    n += 1
                    longest = max(longest, t - max(empty_since, t0))
                empty_since = None
        if empty_since is not None:
            n += 1
            longest = max(longest, t1 - max(empty_since, t0))
    return n, longest * 1000.0


def produced_between(t0, t1):
    return sum(n for t, n in list(produced) if t0 <= t <= t1)


def ack_max_ms(t0, t1):
    return max([lat for t, lat in list(acked) if t0 <= t <= t1] or [0.0]) * 1000.0


def owners(members):
    return {p: m.idx for m in members for p in m.assignment}


def timeline(members, t0, t1):
    """Per member, (ms since t0, partitions held) at each change of its assignment in the step."""
    return {m.idx: [(round((t - t0) * 1000.0), len(a)) for t, a in list(m.history) if t0 <= t <= t1] for m in members}


def wait_converged(members, t0):
    """The time of the last change that made `members` balanced, held for --hold s; None on timeout."""
    deadline = t0 + args.step_timeout
    while now() < deadline:
        for m in members:
            if m.error:
                return None
        if balanced(members):
            snap = [(m.assignment, m.since) for m in members]
            t1 = max([t0] + [s for _, s in snap])
            time.sleep(args.hold)
            if [(m.assignment, m.since) for m in members] == snap:
                return t1
            continue
        time.sleep(0.005)
    return None


def dump(members):
    return {f"member-{m.idx}": {"assignment": sorted(m.assignment), "error": m.error} for m in members}


threading.Thread(target=produce, daemon=True).start()
time.sleep(1.0)
live, steps = [], []


def step(kind, mover):
    others = [m for m in live if m is not mover]
    before = owners(live)
    if kind == "join":
        mover.thread.start()
        mover.started.wait(30)
        t0 = mover.t_subscribe or now()
        group = live + [mover]
    else:
        t0 = now()
        mover.leave.set()
        group = others
    t1 = wait_converged(group, t0)
    if t1 is None:
        say({"timeout": f"{kind} {mover.idx}", "members": len(group), "seconds": args.step_timeout, "state": dump(group)})
        return False
    gap, member_gap, count = gaps_and_count(others, t0, t1) if others else (None, None, None)
    # The hold that followed: the steady state's longest gaps, for comparison.
    base, member_base, _ = gaps_and_count(group, t1 + 0.05, t1 + args.hold)
    after = owners(group)
    # Partitions that changed owner, and the fewest that had to: the new member's share, or the leaver's.
    moved = sum(1 for p in range(args.partitions) if before.get(p) != after.get(p))
    needed = len(mover.assignment) if kind == "join" else sum(1 for o in before.values() if o == mover.idx)
    r1 = lambda v: None if v is None else round(v, 1)
    n_empty, empty_ms = emptied(others, t0, t1)
    rec = {"step": kind, "member": mover.idx, "members_after": len(group), "ms": round((t1 - t0) * 1000.0, 1),
           "others_consumed": count, "produced": produced_between(t0, t1),
           "longest_gap_ms": r1(gap), "longest_member_gap_ms": r1(member_gap), "others_emptied": n_empty, "longest_empty_ms": r1(empty_ms),
           "hold_gap_ms": r1(base), "hold_member_gap_ms": r1(member_base),
           "moved": moved, "moved_needed": needed, "ack_max_ms": r1(ack_max_ms(t0, t1)),
           "hold_ack_max_ms": r1(ack_max_ms(t1 + 0.05, t1 + args.hold)),
           "timeline": timeline(group + ([mover] if kind == "leave" else []), t0, t1),
           "loads": sorted(len(m.assignment) for m in group)}
    if kind == "leave":
        mover.closed.wait(30)
        rec["close_ms"] = None if mover.close_ms is None else round(mover.close_ms, 1)
    say(rec)
    steps.append(rec)
    if kind == "join":
        live.append(mover)
    else:
        live.remove(mover)
    return True


ok = True
members = [Member(i) for i in range(args.members)]
for m in members:
    if not step("join", m):
        ok = False
        break
while ok and len(live) > 1:
    if not step("leave", live[0]):
        ok = False
        break
for m in live:
    m.leave.set()
for m in live:
    m.closed.wait(30)
stop_producer.set()
say({"done": ok, "protocol": args.protocol, "steps": len(steps),
     "assignment_mismatches": sum(m.mismatches for m in members), "errors": [m.error for m in members if m.error]})
sys.exit(0 if ok else 1)
