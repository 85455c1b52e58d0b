"""AdminClient.list_offsets with OffsetSpec.earliest(), latest(), for_timestamp(t) and
max_timestamp() (ListOffsets v7+, KIP-734) on a topic of known records: partition 0
holds five records whose timestamps are out of order (the largest is not the last),
partition 1 none. Checks the offsets, then prints one ANSWERS line (offset, timestamp
and leader epoch of every answer) that the test compares with Apache Kafka's."""

import json

from confluent_kafka import TopicPartition
from confluent_kafka.admin import OffsetSpec

from karst_common import Deliveries, admin, bootstrap, check, create_topic, producer, unique_topic

T0 = 1_700_000_000_000
# Offsets 0..4. The largest timestamp, T0 + 3000, is at offset 2, not the last; the
# first at or after T0 + 2500 is offset 2 too (offset order, not timestamp order).
STAMPS = [T0, T0 + 1000, T0 + 3000, T0 + 2000, T0 + 2500]

bs = bootstrap()
topic = unique_topic("list-offsets")
create_topic(bs, topic, 2)

p = producer(bs, **{"linger.ms": 100})
d = Deliveries()
for i, ts in enumerate(STAMPS):
    p.produce(topic, value=f"m{i}".encode(), partition=0, timestamp=ts, on_delivery=d)
d.wait(p, len(STAMPS))

# (name, spec, expected offset in partition 0, in partition 1)
SPECS = [
    ("earliest", OffsetSpec.earliest(), 0, 0),
    ("latest", OffsetSpec.latest(), 5, 0),
    ("max_timestamp", OffsetSpec.max_timestamp(), 2, -1),
    ("for_timestamp(T0 + 500)", OffsetSpec.for_timestamp(T0 + 500), 1, -1),
    ("for_timestamp(T0 + 2500)", OffsetSpec.for_timestamp(T0 + 2500), 2, -1),
    ("for_timestamp(before the first)", OffsetSpec.for_timestamp(T0 - 1), 0, -1),
    ("for_timestamp(after the largest)", OffsetSpec.for_timestamp(T0 + 3001), -1, -1),
]

a = admin(bs)
answers = {}
for name, spec, *expected in SPECS:
    wanted = {TopicPartition(topic, partition): spec for partition in (0, 1)}
    futures = a.list_offsets(wanted, request_timeout=30)
    for partition, want in zip((0, 1), expected):
        info = futures[TopicPartition(topic, partition)].result(timeout=60)
        answers[f"{name}, partition {partition}"] = [info.offset, info.timestamp, info.leader_epoch]
        print(f"{name}, partition {partition}: offset {info.offset} timestamp {info.timestamp} leader epoch {info.leader_epoch}")
        check(info.offset == want, f"{name}, partition {partition}: offset {info.offset}, expected {want}")

check(answers["max_timestamp, partition 0"][1] == T0 + 3000, f"max_timestamp's timestamp: {answers['max_timestamp, partition 0']}")
print("ANSWERS " + json.dumps(answers, sort_keys=True))
print("OK")
