"""A transactional producer that opens a transaction, writes to it and then hangs
without ending it (the test kills it -9): prints "open" once its records are
acknowledged. Arguments: bootstrap, topic, transactional id, transaction.timeout.ms."""

import sys
import time

from confluent_kafka import Producer

bootstrap, topic, transactional_id, timeout_ms = sys.argv[1:5]
p = Producer({"bootstrap.servers": bootstrap, "transactional.id": transactional_id, "transaction.timeout.ms": int(timeout_ms)})
p.init_transactions(60)
p.begin_transaction()
for i in range(10):
    p.produce(topic, value=b"hanging-%d" % i, partition=0)
if p.flush(60) != 0:
    sys.exit("records not acknowledged")
print("open", flush=True)
time.sleep(600)
