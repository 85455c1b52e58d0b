"""A dead-letter queue for a share group (KIP-932), the recipe in the README.

    python3 share_dlq.py --bootstrap HOST:PORT --topic jobs --group workers \
        --dlq jobs.dlq --max-attempts 3 [--idle-exit SECONDS]

Each record is processed (here: a record whose value contains "poison" fails). A
record that fails is released, so the share group delivers it again (to this or any
other consumer of the group); once its delivery count reaches --max-attempts it is
copied to the dead-letter topic, with headers naming where it came from and how often
it was tried, and accepted, so the group moves on. --max-attempts must not exceed the
broker's group.share.delivery.count.limit (5), past which the broker archives the
record itself without telling anyone.

Prints one line per record: "OK <value>" or "DLQ <value> <attempts>" (and "RETRY <value>
<attempts>" for each failed try); exits after --idle-exit seconds without records."""

import argparse
import time

from confluent_kafka import Producer, ShareConsumer

try:
    from confluent_kafka import AcknowledgeType
except ImportError:
    from confluent_kafka.cimpl import AcknowledgeType

ap = argparse.ArgumentParser()
ap.add_argument("--bootstrap", required=True)
ap.add_argument("--topic", required=True)
ap.add_argument("--group", required=True)
ap.add_argument("--dlq", required=True)
ap.add_argument("--max-attempts", type=int, default=3)
ap.add_argument("--idle-exit", type=float, default=0)
args = ap.parse_args()


def process(value):
    if "poison" in value:
        raise ValueError("cannot process")


consumer = ShareConsumer({"bootstrap.servers": args.bootstrap, "group.id": args.group, "share.acknowledgement.mode": "explicit"})
producer = Producer({"bootstrap.servers": args.bootstrap, "acks": "all", "enable.idempotence": True})
consumer.subscribe([args.topic])
last_record = time.monotonic()
try:
    while args.idle_exit == 0 or time.monotonic() - last_record < args.idle_exit:
        msgs = consumer.poll(0.5)
        for m in msgs:
            if m.error() is not None:
                print(f"ERR {m.error()}", flush=True)
                continue
            last_record = time.monotonic()
            value = m.value().decode() if m.value() is not None else ""
            attempts = m.delivery_count()
            try:
                process(value)
                print(f"OK {value}", flush=True)
                consumer.acknowledge(m, AcknowledgeType.ACCEPT)
            except ValueError:
                if attempts < args.max_attempts:
                    print(f"RETRY {value} {attempts}", flush=True)
                    consumer.acknowledge(m, AcknowledgeType.RELEASE)
                    continue
                headers = [
                    ("dlq.topic", m.topic().encode()),
                    ("dlq.partition", str(m.partition()).encode()),
                    ("dlq.offset", str(m.offset()).encode()),
                    ("dlq.attempts", str(attempts).encode()),
                ]
                producer.produce(args.dlq, key=m.key(), value=m.value(), headers=headers)
                # The copy is durable before the original is let go.
                if producer.flush(30) != 0:
                    raise SystemExit(f"could not write {value} to {args.dlq}")
                print(f"DLQ {value} {attempts}", flush=True)
                consumer.acknowledge(m, AcknowledgeType.ACCEPT)
        if msgs:
            consumer.commit_sync()
finally:
    consumer.close()
