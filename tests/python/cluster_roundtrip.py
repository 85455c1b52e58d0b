"""Against a three-broker cluster: a 12-partition topic with replication factor 3,
one keyed-by-partition record produced to every partition with acks=all, and every
one consumed back from its partition's leader."""

from karst_common import Deliveries, bootstrap, check, consume_all, producer, unique_topic, wait_until, admin
from confluent_kafka.admin import NewTopic

P = 12
bs = bootstrap()
topic = unique_topic("cluster-py")
a = admin(bs)
a.create_topics([NewTopic(topic, num_partitions=P, replication_factor=3)], operation_timeout=10, request_timeout=15)[topic].result(timeout=60)


def ready():
    t = a.list_topics(topic=topic, timeout=10).topics.get(topic)
    return t is not None and t.error is None and len(t.partitions) == P and all(
        p.leader >= 0 and len(p.replicas) == 3 and len(p.isrs) == 3 for p in t.partitions.values())


wait_until(f"{topic}: {P} partitions led, 3 replicas in sync each", ready)
leaders = {p.id: p.leader for p in a.list_topics(topic=topic, timeout=10).topics[topic].partitions.values()}
check(set(leaders.values()) == {1, 2, 3}, f"leaders {leaders} not spread over brokers 1-3")

p = producer(bs, acks="all")
d = Deliveries()
for part in range(P):
    p.produce(topic, partition=part, value=f"value-{part}".encode(), on_delivery=d)
d.wait(p, P)
got = consume_all(bs, topic, list(range(P)), P)
seen = sorted((m.partition(), m.value().decode()) for m in got)
check(seen == [(part, f"value-{part}") for part in range(P)], f"consumed {seen}")
print(f"confluent-kafka: {P} partitions (replication factor 3) produced and consumed through {bs}; leaders {sorted(set(leaders.values()))}")
print("OK")
