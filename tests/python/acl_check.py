"""confluent-kafka as one principal under ACLs: `acl_check.py HOST:PORT CONFIG_JSON ACTIONS_JSON`.

Each action is `produce:TOPIC`, `consume:TOPIC:GROUP` (commit included) or `topics`
(the topics Metadata lists). Prints one JSON object: each action's outcome, `ok` or
the error's name (TOPIC_AUTHORIZATION_FAILED, GROUP_AUTHORIZATION_FAILED, ...)."""

import json
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

bs, security, actions = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
base = {"bootstrap.servers": bs, **security}
out = {}


def produce(topic):
    errors = []
    p = Producer({**base, "acks": "all", "message.timeout.ms": 15000})
    p.produce(topic, b"v", on_delivery=lambda err, m: errors.append(err))
    p.flush(30)
    if not errors:
        return "no delivery report"
    return "ok" if errors[0] is None else errors[0].name()


def consume(topic, group):
    c = Consumer({**base, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                return m.error().name()
            c.commit(message=m, asynchronous=False)
            return "ok"
        return "nothing read"
    except KafkaException as e:
        return e.args[0].name()
    finally:
        c.close()


for a in actions:
    kind, _, rest = a.partition(":")
    if kind == "produce":
        out[a] = produce(rest)
    elif kind == "consume":
        topic, group = rest.split(":")
        out[a] = consume(topic, group)
    elif kind == "topics":
        md = AdminClient(base).list_topics(timeout=30)
        out[a] = sorted(t for t in md.topics if not t.startswith("__"))
print(json.dumps(out), flush=True)
