"""Share-group throughput (benches/groups.sh).

  groups_share.py fill  --bootstrap HOST:PORT --topic T --partitions 8 --records N --size 100
  groups_share.py drain --bootstrap HOST:PORT --topic T --group G --consumers C --records N
                        [--max-seconds 60] [--size 100]

fill: creates topic T (replication factor 1) and writes N records of SIZE bytes
round-robin over its partitions (acks=all), then prints {"filled": N, "seconds": ...}.

drain: sets the share group G's share.auto.offset.reset to earliest (IncrementalAlterConfigs
on its GROUP resource, type 32, sent as a raw request: librdkafka's GROUP resource type is
the ACL one), then starts C processes, each one confluent-kafka ShareConsumer in explicit
mode subscribed to T: poll(), acknowledge(ACCEPT) every record, commit_sync(), again,
until N records were accepted by all of them together (or --max-seconds passed).
Acknowledgement latency is the time commit_sync() takes, recorded per commit in an HDR
histogram (microseconds, 3 significant digits) and merged over the processes. Prints one
JSON object: records accepted, distinct (partition, offset), bytes, the time from the
subscribes to the last commit that reached N, the time from the first record delivered
to that commit, commits, latency percentiles, errors."""

import argparse
import json
import multiprocessing as mp
import socket
import struct
import sys
import time

from confluent_kafka import KafkaException, Producer, ShareConsumer
from confluent_kafka.admin import AdminClient, NewTopic

try:
    from confluent_kafka import AcknowledgeType
except ImportError:
    from confluent_kafka.cimpl import AcknowledgeType
from hdrh.histogram import HdrHistogram

ap = argparse.ArgumentParser()
ap.add_argument("mode", choices=["fill", "drain"])
ap.add_argument("--bootstrap", required=True)
ap.add_argument("--topic", required=True)
ap.add_argument("--group")
ap.add_argument("--partitions", type=int, default=8)
ap.add_argument("--records", type=int, required=True)
ap.add_argument("--size", type=int, default=100)
ap.add_argument("--consumers", type=int, default=1)
ap.add_argument("--max-seconds", type=float, default=60.0)
args = ap.parse_args()


def fill():
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    for f in admin.create_topics([NewTopic(args.topic, args.partitions, 1)], operation_timeout=30).values():
        f.result(60)
    time.sleep(1.0)
    p = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 10, "acks": "all", "batch.num.messages": 10000})
    value = b"s" * args.size
    failed = [0]

    def report(err, _msg):
        if err is not None:
            failed[0] += 1

    t = time.monotonic()
    for i in range(args.records):
        while True:
            try:
                p.produce(args.topic, value, partition=i % args.partitions, on_delivery=report)
                break
            except BufferError:
                p.poll(0.01)
        if i % 1000 == 0:
            p.poll(0)
    left = p.flush(120)
    if left or failed[0]:
        print(json.dumps({"error": f"{left} records not delivered, {failed[0]} failed"}), flush=True)
        sys.exit(1)
    print(json.dumps({"filled": args.records, "seconds": round(time.monotonic() - t, 3)}), flush=True)


def kstr(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def set_earliest(group):
    """IncrementalAlterConfigs v0 (api 44): share.auto.offset.reset=earliest on GROUP `group` (type 32)."""
    host, port = args.bootstrap.rsplit(":", 1)
    body = struct.pack(">i", 1) + struct.pack(">b", 32) + kstr(group)
    body += struct.pack(">i", 1) + kstr("share.auto.offset.reset") + struct.pack(">b", 0) + kstr("earliest")
    body += struct.pack(">b", 0)  # validate_only
    header = struct.pack(">hhi", 44, 0, 7) + kstr("groups-bench")
    frame = header + body
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(struct.pack(">i", len(frame)) + frame)
        buf = b""
        while len(buf) < 4 or len(buf) < 4 + struct.unpack(">i", buf[:4])[0]:
            chunk = s.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed before the IncrementalAlterConfigs answer")
            buf += chunk
    # size, correlation id, throttle, [error_code, error_message, type, name]
    _, corr, _throttle, n = struct.unpack(">iiii", buf[:16])
    code = struct.unpack(">h", buf[16:18])[0]
    if corr != 7 or n != 1 or code != 0:
        raise RuntimeError(f"IncrementalAlterConfigs of group {group}: error code {code}")


def consumer(idx, total, done, first, end, lock, q, t_start):
    hist = HdrHistogram(1, 60_000_000, 3)
    accepted, seen, commits, errors, failed_commits = 0, set(), 0, [], 0
    try:
        c = ShareConsumer({"bootstrap.servers": args.bootstrap, "group.id": args.group,
                           "share.acknowledgement.mode": "explicit", "client.id": f"share-{idx}"})
        c.subscribe([args.topic])
        while not done.is_set() and time.monotonic() - t_start < args.max_seconds:
            msgs = c.poll(0.2)
            got = 0
            for m in msgs:
                if m.error() is not None:
                    errors.append(str(m.error()))
                    continue
                c.acknowledge(m, AcknowledgeType.ACCEPT)
                seen.add((m.partition(), m.offset()))
                got += 1
            if not got:
                continue
            with lock:
                if first.value == 0.0:
                    first.value = time.monotonic()
            t = time.perf_counter()
            result = c.commit_sync(30)
            hist.record_value(max(1, int((time.perf_counter() - t) * 1e6)))
            commits += 1
            bad = [str(e) for e in result.values() if e is not None]
            if bad:
                failed_commits += 1
                errors.extend(bad[:3])
                continue
            accepted += got
            with lock:
                total.value += got
                if total.value >= args.records and end.value == 0.0:
                    end.value = time.monotonic()
                    done.set()
        c.close()
    except KafkaException as e:
        errors.append(f"consumer {idx}: {e}")
    q.put({"accepted": accepted, "seen": sorted(seen), "commits": commits, "failed_commits": failed_commits,
           "errors": errors[:5], "hist": hist.encode().decode()})


def drain():
    set_earliest(args.group)
    ctx = mp.get_context("fork")
    total, first, end = ctx.Value("q", 0, lock=False), ctx.Value("d", 0.0, lock=False), ctx.Value("d", 0.0, lock=False)
    lock, done, q = ctx.Lock(), ctx.Event(), ctx.Queue()
    t_start = time.monotonic()
    procs = [ctx.Process(target=consumer, args=(i, total, done, first, end, lock, q, t_start)) for i in range(args.consumers)]
    for p in procs:
        p.start()
    results = [q.get(timeout=args.max_seconds + 120) for _ in procs]
    for p in procs:
        p.join(30)
    hist = HdrHistogram(1, 60_000_000, 3)
    seen = set()
    for r in results:
        hist.add(HdrHistogram.decode(r["hist"]))
        seen.update(map(tuple, r["seen"]))
    accepted = sum(r["accepted"] for r in results)
    t_end = end.value if end.value else time.monotonic()
    out = {
        "consumers": args.consumers, "accepted": accepted, "distinct": len(seen), "target": args.records,
        "complete": end.value != 0.0, "seconds_from_subscribe": round(t_end - t_start, 3),
        "seconds_from_first_record": round(t_end - first.value, 3) if first.value else None,
        "commits": sum(r["commits"] for r in results), "failed_commits": sum(r["failed_commits"] for r in results),
        "per_consumer": [r["accepted"] for r in results],
        "ack_p50_ms": hist.get_value_at_percentile(50) / 1000.0, "ack_p99_ms": hist.get_value_at_percentile(99) / 1000.0,
        "ack_p999_ms": hist.get_value_at_percentile(99.9) / 1000.0, "ack_max_ms": hist.get_max_value() / 1000.0,
        "errors": [e for r in results for e in r["errors"]][:10],
    }
    print(json.dumps(out), flush=True)


fill() if args.mode == "fill" else drain()
