"""confluent-kafka under a quota: `quota_throttle.py HOST:PORT TOPIC CLIENT_ID COUNT SIZE`.

Produces COUNT messages of SIZE bytes with `client.id` CLIENT_ID (acks=all), then reads
them back with the same client id; librdkafka's throttle_cb reports each throttle
time the broker answers with. Prints one JSON object: the throttle events seen by the
producer and the consumer, the largest throttle time, and how many were delivered
and read."""

import json
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition

bs, topic, client_id, count, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
events = {"producer": [], "consumer": []}


def on_throttle(who):
    return lambda e: events[who].append(e.throttle_time * 1000.0)


p = Producer({"bootstrap.servers": bs, "client.id": client_id, "acks": "all", "linger.ms": 5,
              "throttle_cb": on_throttle("producer")})
delivered = []
value = b"q" * size
for i in range(count):
    while True:
        try:
            p.produce(topic, value, on_delivery=lambda err, m: delivered.append(err))
            break
        except BufferError:
            p.poll(0.1)
    p.poll(0)
p.flush(120)
# Throttle callbacks are served by poll.
deadline = time.monotonic() + 5
while time.monotonic() < deadline and not events["producer"]:
    p.poll(0.2)

c = Consumer({"bootstrap.servers": bs, "client.id": client_id, "group.id": "quota-" + client_id,
              "enable.auto.commit": False, "throttle_cb": on_throttle("consumer"), "fetch.max.bytes": 1 << 20})
c.assign([TopicPartition(topic, 0, 0)])
read = 0
deadline = time.monotonic() + 120
while read < count and time.monotonic() < deadline:
    m = c.poll(0.5)
    if m is not None and not m.error():
        read += 1
c.close()
print(json.dumps({
    "producer_throttles": len(events["producer"]),
    "consumer_throttles": len(events["consumer"]),
    "max_throttle_ms": max(events["producer"] + events["consumer"] + [0]),
    "delivered": sum(1 for e in delivered if e is None),
    "read": read,
}), flush=True)
