"""Keyed messages with headers, acks=all, into 3 partitions; a consumer assigned from
the beginning gets all of them with per-partition order, keys, values and headers intact."""

from collections import defaultdict

from karst_common import Deliveries, bootstrap, check, consume_all, create_topic, producer, unique_topic

N = 3000
bs = bootstrap()
topic = unique_topic("keyed")
create_topic(bs, topic, 3)


def headers_for(i):
    return [("seq", str(i).encode()), ("dup", b"a"), ("dup", b"b"), ("empty", b""), ("null", None)]


def value_for(i):
    return f"v{i:06d}|".encode() * (1 + i % 5)


def index_of(value):
    return int(value.split(b"|")[0][1:])


p = producer(bs, acks="all")
d = Deliveries()
for i in range(N):
    p.produce(topic, key=f"key-{i % 37}".encode(), value=value_for(i),
              headers=headers_for(i), on_delivery=d)
    if i % 500 == 0:
        p.poll(0)
d.wait(p, N)

sent = {}  # (partition, offset) -> index
for m in d.ok:
    pos = (m.partition(), m.offset())
    check(pos not in sent, f"two deliveries reported at {pos}")
    sent[pos] = index_of(m.value())
partitions_used = {pos[0] for pos in sent}
check(partitions_used == {0, 1, 2}, f"keyed messages landed only in partitions {partitions_used}")
# The same key always goes to the same partition.
key_partition = {}
for m in d.ok:
    check(key_partition.setdefault(m.key(), m.partition()) == m.partition(), f"key {m.key()} in two partitions")

got = consume_all(bs, topic, [0, 1, 2], N)
by_partition = defaultdict(list)
for m in got:
    by_partition[m.partition()].append(m)
for part, msgs in by_partition.items():
    offsets = [m.offset() for m in msgs]
    check(offsets == list(range(len(msgs))), f"partition {part}: offsets not 0..{len(msgs) - 1}: {offsets[:20]}...")
    # Within a partition, messages appear in the order they were produced.
    seqs = [int(dict((k, v) for k, v in m.headers())["seq"]) for m in msgs]
    check(seqs == sorted(seqs), f"partition {part}: produce order not preserved")
for m in got:
    hdrs = dict((k, v) for k, v in m.headers() if k == "seq")
    i = int(hdrs["seq"])
    check(m.key() == f"key-{i % 37}".encode(), f"message {i}: key {m.key()}")
    check(m.value() == value_for(i), f"message {i}: value {m.value()[:40]}")
    check(sent.get((m.partition(), m.offset())) == i,
          f"message {i} consumed at {m.partition()}/{m.offset()}, delivery report said otherwise")
    check(m.headers() == headers_for(i), f"message {i}: headers {m.headers()} != {headers_for(i)}")
    check(key_partition[m.key()] == m.partition(), f"message {i} consumed from another partition")
seen = sorted(int(dict(m.headers())["seq"]) for m in got)
check(seen == list(range(N)), "some messages missing or duplicated")
print(f"{N} keyed messages with headers round-tripped over 3 partitions "
      f"({', '.join(f'p{k}={len(v)}' for k, v in sorted(by_partition.items()))})")
print("OK")
