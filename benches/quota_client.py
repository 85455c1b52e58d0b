"""A producer: `quota_client.py HOST:PORT TOPIC CLIENT_ID SECONDS SIZE [RATE [CONFIG_JSON]]`.

Produces SIZE-byte messages with `client.id` CLIENT_ID for SECONDS, as fast as it may
(keeping librdkafka's queue full) or at RATE bytes per second (0: unpaced), with the
client settings of CONFIG_JSON added (security.protocol, ssl.*, sasl.*), and prints one JSON
object: bytes and messages acknowledged within the period, its length, the throttle
times the broker answered with (throttle_cb), and the acknowledgement latency
percentiles (from produce() to the delivery report)."""

import json
import sys
import time

from confluent_kafka import Producer

bs, topic, client_id, seconds, size = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
rate = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
extra = json.loads(sys.argv[7]) if len(sys.argv) > 7 else {}
throttles = []
acked = [0]
latencies = []
p = Producer({"bootstrap.servers": bs, "client.id": client_id, "acks": "all", "linger.ms": 5,
              "queue.buffering.max.kbytes": 16384, "throttle_cb": lambda e: throttles.append(e.throttle_time * 1000.0), **extra})
value = b"b" * size
start = time.monotonic()
end = start + seconds


def delivered(err, msg):
    if err is None and time.monotonic() <= end:
        acked[0] += 1
        latencies.append(msg.latency() * 1000.0)


sent = 0
while time.monotonic() < end:
    if rate > 0 and sent >= rate * (time.monotonic() - start):
        p.poll(0.001)
        continue
    try:
        p.produce(topic, value, on_delivery=delivered)
        sent += size
        p.poll(0)
    except BufferError:
        p.poll(0.01)
elapsed = time.monotonic() - start
# What was still queued when the period ended does not count.
p.purge()
p.flush(10)
latencies.sort()
pct = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else 0.0
print(json.dumps({"client_id": client_id, "bytes": acked[0] * size, "messages": acked[0], "seconds": elapsed,
                  "throttles": len(throttles), "max_throttle_ms": max(throttles + [0]),
                  "p50_ms": pct(0.5), "p99_ms": pct(0.99), "p999_ms": pct(0.999)}), flush=True)
