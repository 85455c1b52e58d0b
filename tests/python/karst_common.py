"""Shared helpers for the confluent-kafka scripts. Every script takes the bootstrap
address as its only argument, prints what it checked, and exits non-zero on failure."""

import sys
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TIMEOUT = 60.0


def bootstrap():
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} HOST:PORT")
    return sys.argv[1]


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def unique_topic(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def wait_until(what, cond, timeout=TIMEOUT, interval=0.05):
    """Polls cond() until true or fails naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
        interval = min(interval * 2, 0.5)


def admin(bs):
    return AdminClient({"bootstrap.servers": bs})


def create_topic(bs, name, partitions, config=None):
    """Creates a topic and waits until metadata shows all its partitions with a leader."""
    a = admin(bs)
    futures = a.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=10,
        request_timeout=15,
    )
    futures[name].result(timeout=TIMEOUT)

    def ready():
        md = a.list_topics(topic=name, timeout=10)
        t = md.topics.get(name)
        return (
            t is not None
            and t.error is None
            and len(t.partitions) == partitions
            and all(p.leader >= 0 for p in t.partitions.values())
        )

    wait_until(f"metadata of {name} to show {partitions} partitions with leaders", ready)
    return a


def producer(bs, **conf):
    c = {"bootstrap.servers": bs, "acks": "all", "linger.ms": 5}
    c.update(conf)
    return Producer(c)


class Deliveries:
    """Collects delivery reports; fails on the first error."""

    def __init__(self):
        self.ok = []
        self.errors = []

    def __call__(self, err, msg):
        if err is not None:
            self.errors.append((err, msg.key(), msg.value()))
        else:
            self.ok.append(msg)

    def wait(self, p, expected):
        remaining = p.flush(TIMEOUT)
        check(remaining == 0, f"{remaining} messages still undelivered after {TIMEOUT}s")
        check(not self.errors, f"delivery errors: {self.errors[:5]} ({len(self.errors)} total)")
        check(len(self.ok) == expected, f"{len(self.ok)} delivery reports, expected {expected}")


def consumer(bs, **conf):
    c = {
        "bootstrap.servers": bs,
        # librdkafka insists on a group.id, but nothing here uses the group:
        # partitions are assigned explicitly and offsets are never committed.
        "group.id": "karst-tests-unused",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
        "auto.offset.reset": "error",
    }
    c.update(conf)
    return Consumer(c)


def consume_all(bs, topic, partitions, expected, **conf):
    """Assigns `partitions` from the beginning and reads until `expected` messages
    arrived; then checks that the high watermarks add up to exactly that many."""
    c = consumer(bs, **conf)
    tps = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions]
    c.assign(tps)
    out = []
    deadline = time.monotonic() + TIMEOUT
    while len(out) < expected:
        if time.monotonic() > deadline:
            fail(f"consumed {len(out)} of {expected} messages from {topic} in {TIMEOUT}s")
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                continue
            fail(f"consumer error: {m.error()}")
        out.append(m)
    total = 0
    for p in partitions:
        low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        check(low == 0, f"{topic}-{p}: low watermark {low}, expected 0")
        total += high - low
    check(total == expected, f"high watermarks sum to {total} messages, expected {expected}")
    check(len(out) == expected, f"consumed {len(out)} messages, expected {expected}")
    c.close()
    return out
