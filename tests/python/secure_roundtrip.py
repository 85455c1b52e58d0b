"""confluent-kafka over a secured listener: `secure_roundtrip.py HOST:PORT CONFIG_JSON MODE`.

CONFIG_JSON holds the client's security settings (security.protocol, ssl.*, sasl.*);
`oauth.token` (with `oauth.principal`) is a bearer token the client's oauth_cb hands over,
told to expire in an hour whatever the token says (the broker is the one to check).
MODE `roundtrip`: creates a topic, produces 200 messages and consumes them back.
MODE `refused`: a producer with these settings must fail to authenticate."""

import json
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

if len(sys.argv) != 4:
    sys.exit(f"usage: {sys.argv[0]} HOST:PORT CONFIG_JSON roundtrip|refused")
bs, security, mode = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
token, principal = security.pop("oauth.token", None), security.pop("oauth.principal", "")
base = {"bootstrap.servers": bs, **security}
if token is not None:
    base["oauth_cb"] = lambda _config: (token, time.time() + 3600, principal, {})


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


if mode == "refused":
    errors = []
    p = Producer({**base, "error_cb": lambda e: errors.append(e), "message.timeout.ms": 10000})
    p.produce("refused-" + uuid.uuid4().hex[:8], b"x")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not errors:
        p.poll(0.2)
    codes = [e.code() for e in errors]
    if KafkaError._AUTHENTICATION not in codes and KafkaError._SSL not in codes and KafkaError._TRANSPORT not in codes:
        fail(f"expected an authentication failure, got {[str(e) for e in errors]}")
    print(f"refused: {errors[0]}", flush=True)
    sys.exit(0)

topic = "secure-" + uuid.uuid4().hex[:12]
admin = AdminClient(base)
for t, f in admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)]).items():
    f.result(30)

N = 200
delivered = []
p = Producer({**base, "acks": "all", "linger.ms": 5})
for i in range(N):
    p.produce(topic, key=str(i).encode(), value=f"value-{i}".encode(), on_delivery=lambda err, m: delivered.append(err))
if p.flush(30) != 0 or len(delivered) != N or any(delivered):
    fail(f"delivered {len(delivered)} of {N}, errors {[e for e in delivered if e][:3]}")

c = Consumer({**base, "group.id": "secure-" + uuid.uuid4().hex[:8], "auto.offset.reset": "earliest", "enable.auto.commit": False})
c.assign([TopicPartition(topic, 0, 0)])
got = []
deadline = time.monotonic() + 60
while len(got) < N and time.monotonic() < deadline:
    m = c.poll(0.5)
    if m is None:
        continue
    if m.error():
        fail(f"consume: {m.error()}")
    got.append(m.value().decode())
c.close()
if got != [f"value-{i}" for i in range(N)]:
    fail(f"consumed {len(got)} of {N} in order")
print(f"roundtrip: {N} messages produced and consumed on {topic}", flush=True)
