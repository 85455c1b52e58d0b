"""Messages with explicit, distinct timestamps; offsets_for_times finds the first offset
whose timestamp is >= the one asked for, also inside a batch; timestamps round-trip."""

import time

from confluent_kafka import TIMESTAMP_CREATE_TIME, TopicPartition

from karst_common import Deliveries, bootstrap, check, consume_all, consumer, create_topic, producer, unique_topic

N = 100
STEP = 1000
bs = bootstrap()
topic = unique_topic("times")
create_topic(bs, topic, 1)
base = int(time.time() * 1000) - 3_600_000

p = producer(bs, **{"linger.ms": 50})
d = Deliveries()
for i in range(N):
    p.produce(topic, value=f"m{i}".encode(), partition=0, timestamp=base + i * STEP, on_delivery=d)
    if i % 25 == 24:
        p.flush(30)  # four separate batches of 25
d.wait(p, N)
check(sorted(m.offset() for m in d.ok) == list(range(N)), "delivery offsets not 0..N-1")

got = consume_all(bs, topic, [0], N)
for m in got:
    check(m.timestamp() == (TIMESTAMP_CREATE_TIME, base + m.offset() * STEP),
          f"offset {m.offset()}: timestamp {m.timestamp()}, expected create time {base + m.offset() * STEP}")

c = consumer(bs)
cases = [
    ("exactly the 50th timestamp", base + 50 * STEP, 50),
    ("just before the 50th timestamp", base + 50 * STEP - 1, 50),
    ("mid-batch: just after the 37th", base + 37 * STEP + 1, 38),
    ("first timestamp", base, 0),
    ("before everything", base - 10 * STEP, 0),
    ("the last timestamp", base + (N - 1) * STEP, N - 1),
    ("after everything", base + N * STEP, -1),
]
for what, ts, want in cases:
    res = c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=15)
    check(len(res) == 1, f"{what}: {res}")
    check(res[0].error is None, f"{what}: error {res[0].error}")
    check(res[0].offset == want, f"{what} (ts {ts}): offset {res[0].offset}, expected {want}")
    print(f"{what}: offset {res[0].offset}")
c.close()
print("OK")
