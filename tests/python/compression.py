"""Producing with compression.type gzip, snappy, lz4 and zstd: each round-trips."""

import os

from karst_common import Deliveries, bootstrap, check, consume_all, create_topic, producer, unique_topic

N = 2000
bs = bootstrap()


def value_for(codec, i):
    # Compressible text plus a few incompressible bytes, so batches hold real work.
    return f"{codec}-{i:06d}-".encode() + b"abcdefgh" * (i % 50) + os.urandom(8).hex().encode()


for codec in ["gzip", "snappy", "lz4", "zstd"]:
    topic = unique_topic(f"compressed-{codec}")
    create_topic(bs, topic, 1)
    p = producer(bs, **{"compression.type": codec, "linger.ms": 20, "batch.num.messages": 500})
    d = Deliveries()
    values = []
    for i in range(N):
        v = value_for(codec, i)
        values.append(v)
        p.produce(topic, key=str(i).encode(), value=v, on_delivery=d)
        if i % 200 == 0:
            p.poll(0)
    d.wait(p, N)
    offsets = sorted(m.offset() for m in d.ok)
    check(offsets == list(range(N)), f"{codec}: delivery offsets are not 0..{N - 1}")
    got = consume_all(bs, topic, [0], N)
    check([m.offset() for m in got] == list(range(N)), f"{codec}: consumed offsets not 0..{N - 1}")
    check([m.value() for m in got] == values, f"{codec}: values differ")
    check([m.key() for m in got] == [str(i).encode() for i in range(N)], f"{codec}: keys differ")
    print(f"{codec}: {N} messages round-tripped")
print("OK")
