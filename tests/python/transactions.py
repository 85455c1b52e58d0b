"""Transactions with confluent-kafka (librdkafka): a transactional producer commits 40
records, aborts 40 and commits 40 more in a 1-partition topic; the log ends at 123 (three
markers); a read_committed consumer reads exactly the 80 committed records in order, a
read_uncommitted one all 120. An open transaction moves the high watermark but not the
last stable offset, and its records reach a read_committed consumer only after the
commit. Then consume-transform-produce: a read_committed group member reads 150 records
of a 2-partition topic, writes them upper-cased to an output topic and commits its
offsets with send_offsets_to_transaction(offsets, consumer_group_metadata()); the output
holds every input once and the group's committed offsets equal the input's end."""

import time

from confluent_kafka import Consumer, KafkaError, TopicPartition

from karst_common import TIMEOUT, bootstrap, check, create_topic, fail, producer, unique_topic

N = 40
M = 150
bs = bootstrap()
topic = unique_topic("txn")
create_topic(bs, topic, 1)


def reader(isolation, group=None, **conf):
    c = {
        "bootstrap.servers": bs,
        "group.id": group or "karst-tests-unused",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
        "auto.offset.reset": "earliest",
        "isolation.level": isolation,
    }
    c.update(conf)
    return Consumer(c)


def read(t, partition, isolation, want, start=0):
    """Reads t/partition from `start` until `want` messages came, then 2 s more for
    extras; returns the messages in the order read."""
    c = reader(isolation)
    c.assign([TopicPartition(t, partition, start)])
    out = []
    deadline = time.monotonic() + TIMEOUT
    while len(out) < want:
        if time.monotonic() > deadline:
            fail(f"{isolation} consumer read {len(out)} of {want} from {t}/{partition}")
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            fail(f"{isolation} consumer error: {m.error()}")
        out.append(m)
    extra = time.monotonic() + 2
    while time.monotonic() < extra:
        m = c.poll(0.2)
        if m is not None and not m.error():
            out.append(m)
    c.close()
    return out


def high_watermark(t, partition, isolation):
    """The end offset a consumer of this isolation level is told: the high watermark
    read_uncommitted, the last stable offset read_committed."""
    c = reader(isolation)
    _, high = c.get_watermark_offsets(TopicPartition(t, partition), timeout=10, cached=False)
    c.close()
    return high


def settle(fetch, want, key=lambda v: v):
    """fetch() until key(result) == want or TIMEOUT passed; returns the last result
    (the caller checks it)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        got = fetch()
        if key(got) == want or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def values(prefix, n):
    return [f"{prefix}-{i}" for i in range(n)]


def in_txn(p, t, vals, commit):
    p.begin_transaction()
    for v in vals:
        p.produce(t, value=v.encode())
    # Delivered before the end either way: abort_transaction would otherwise purge
    # records still queued in the client, and the abort would never reach the log.
    check(p.flush(TIMEOUT) == 0, "transaction's records not delivered")
    if commit:
        p.commit_transaction(TIMEOUT)
    else:
        p.abort_transaction(TIMEOUT)


p = producer(bs, **{"transactional.id": f"{topic}-txn", "linger.ms": 0})
p.init_transactions(TIMEOUT)
first, aborted, second = values("committed1", N), values("aborted", N), values("committed2", N)
in_txn(p, topic, first, True)
in_txn(p, topic, aborted, False)
in_txn(p, topic, second, True)
print(f"transactional producer: {N} committed, {N} aborted, {N} committed")

# A coordinator may answer EndTxn before the markers are written: awaited.
end, lso = settle(lambda: (high_watermark(topic, 0, "read_uncommitted"), high_watermark(topic, 0, "read_committed")),
                  (3 * N + 3, 3 * N + 3))
check(end == 3 * N + 3 and lso == 3 * N + 3, f"high watermark {end}, last stable offset {lso}, want both {3 * N + 3}")
rc = read(topic, 0, "read_committed", 2 * N)
got = [m.value().decode() for m in rc]
check(got == first + second, f"read_committed consumer read {len(got)} records, not the {2 * N} committed in order: {got}")
check(rc[N - 1].offset() == N - 1 and rc[N].offset() == 2 * N + 2,
      f"committed records at offsets {rc[N - 1].offset()}, {rc[N].offset()}; want {N - 1}, {2 * N + 2}")
print(f"read_committed consumer: exactly the {2 * N} committed records in order, none aborted")
ru = [m.value().decode() for m in read(topic, 0, "read_uncommitted", 3 * N)]
check(ru == first + aborted + second, f"read_uncommitted consumer read {len(ru)} records, not all {3 * N} in order")
print(f"read_uncommitted consumer: all {3 * N}, the aborted ones too, no control records")

# An open transaction holds the last stable offset back.
open_values = values("open", N)
p.begin_transaction()
for v in open_values:
    p.produce(topic, value=v.encode())
check(p.flush(TIMEOUT) == 0, "open transaction: records not delivered")
end, lso = high_watermark(topic, 0, "read_uncommitted"), high_watermark(topic, 0, "read_committed")
check(end == 4 * N + 3 and lso == 3 * N + 3,
      f"open transaction: high watermark {end} (want {4 * N + 3}), last stable offset {lso} (want {3 * N + 3})")
held = reader("read_committed")
held.assign([TopicPartition(topic, 0, 3 * N + 3)])
early = held.consume(num_messages=N, timeout=2)
check(not early, f"read_committed consumer got {len(early)} records of an open transaction")
p.commit_transaction(TIMEOUT)
after = []
deadline = time.monotonic() + TIMEOUT
while len(after) < N:
    if time.monotonic() > deadline:
        fail(f"after the commit: read {len(after)} of {N}")
    for m in held.consume(num_messages=N, timeout=0.5):
        check(not m.error(), f"read_committed consumer error: {m.error()}")
        after.append(m.value().decode())
held.close()
check(after == open_values, f"after the commit the read_committed consumer read {after}")
print(f"open transaction: high watermark {4 * N + 3}, last stable offset {3 * N + 3} until the commit, then its {N} records")

# Consume-transform-produce.
src, dst, group = f"{topic}-in", f"{topic}-out", f"{topic}-etl"
create_topic(bs, src, 2)
create_topic(bs, dst, 1)
plain = producer(bs)
inputs = [f"in-{i}" for i in range(M)]
for i, v in enumerate(inputs):
    plain.produce(src, key=f"key-{i % 7}".encode(), value=v.encode())
check(plain.flush(TIMEOUT) == 0, "input records not delivered")

etl = producer(bs, **{"transactional.id": f"{topic}-etl-txn", "linger.ms": 5})
etl.init_transactions(TIMEOUT)
c = reader("read_committed", group=group)
c.subscribe([src])
done, txns = 0, 0
deadline = time.monotonic() + TIMEOUT
while done < M:
    if time.monotonic() > deadline:
        fail(f"transform: {done} of {M} records in committed transactions")
    msgs = c.consume(num_messages=50, timeout=0.5)
    for m in msgs:
        check(not m.error(), f"group consumer error: {m.error() if m.error() else ''}")
    if not msgs:
        continue
    etl.begin_transaction()
    nxt = {}
    for m in msgs:
        etl.produce(dst, key=m.key(), value=m.value().decode().upper().encode())
        nxt[m.partition()] = m.offset() + 1
    etl.send_offsets_to_transaction([TopicPartition(src, part, off) for part, off in nxt.items()],
                                    c.consumer_group_metadata(), TIMEOUT)
    etl.commit_transaction(TIMEOUT)
    done += len(msgs)
    txns += 1
check(done == M, f"transform: {done} records, want {M}")
ends = [high_watermark(src, part, "read_uncommitted") for part in (0, 1)]
# Offsets committed in a transaction show once its markers are written: awaited.
committed = settle(lambda: c.committed([TopicPartition(src, 0), TopicPartition(src, 1)], timeout=10), ends,
                   key=lambda tps: [tp.offset for tp in tps])
c.close()
print(f"consume-transform-produce: {M} records in {txns} transactions with send_offsets_to_transaction")

out = sorted(m.value().decode() for m in read(dst, 0, "read_committed", M))
check(out == sorted(v.upper() for v in inputs), f"output: {len(out)} records, not each of the {M} transformed inputs once")
print("output topic: every input once, transformed")
total = 0
for tp in committed:
    e = ends[tp.partition]
    check(tp.error is None and tp.offset == e, f"group {group}, {src}/{tp.partition}: committed {tp.offset}, end {e}")
    total += e
check(total == M, f"input end offsets add up to {total}, want {M}")
print("the group's offsets committed in the transactions equal the input's end offsets")
print("OK")
