"""An idempotent producer (enable.idempotence=true) produces; every message is in the
log exactly once and in produce order per partition."""

from collections import defaultdict

from karst_common import Deliveries, bootstrap, check, consume_all, create_topic, producer, unique_topic

N = 5000
bs = bootstrap()
topic = unique_topic("idempotent")
create_topic(bs, topic, 3)

p = producer(bs, **{"enable.idempotence": True, "linger.ms": 2, "max.in.flight.requests.per.connection": 5})
d = Deliveries()
for i in range(N):
    p.produce(topic, key=f"k{i % 11}".encode(), value=str(i).encode(), on_delivery=d)
    if i % 250 == 0:
        p.poll(0)
d.wait(p, N)
positions = [(m.partition(), m.offset()) for m in d.ok]
check(len(set(positions)) == N, "two deliveries share a partition/offset")

got = consume_all(bs, topic, [0, 1, 2], N)
values = [int(m.value()) for m in got]
check(sorted(values) == list(range(N)), "messages missing or duplicated")
per_partition = defaultdict(list)
for m in got:
    per_partition[m.partition()].append(int(m.value()))
for part, vals in per_partition.items():
    check(vals == sorted(vals), f"partition {part}: produce order not preserved")
delivered_at = {int(m.value()): (m.partition(), m.offset()) for m in d.ok}
for m in got:
    check(delivered_at[int(m.value())] == (m.partition(), m.offset()),
          f"value {m.value()} at {m.partition()}/{m.offset()}, delivery said {delivered_at[int(m.value())]}")
print(f"{N} idempotent messages, each exactly once: "
      f"{', '.join(f'p{k}={len(v)}' for k, v in sorted(per_partition.items()))}")
print("OK")
