"""librdkafka told not to ask for API versions and to assume an old broker
(api.version.request=false, broker.version.fallback 0.8.2 and 0.9.0: message
format v0 and the request versions of those brokers; 0.10.0 and later make
librdkafka ask after all, kept as a control): every codec, produced and consumed back."""

from karst_common import Deliveries, bootstrap, check, consume_all, create_topic, producer, unique_topic

N = 2000
bs = bootstrap()

for fallback in ["0.8.2", "0.9.0", "0.10.0"]:
    old = {"api.version.request": False, "broker.version.fallback": fallback}
    for codec in ["none", "gzip", "snappy", "lz4"]:
        topic = unique_topic(f"fallback-{fallback.replace('.', '-')}-{codec}")
        create_topic(bs, topic, 1)
        p = producer(bs, **old, **{"compression.type": codec, "linger.ms": 20})
        d = Deliveries()
        values = [f"{fallback} {codec} {i:06d} ".encode() + b"xyz" * (i % 40) for i in range(N)]
        for i, v in enumerate(values):
            p.produce(topic, key=str(i % 17).encode(), value=v, partition=0, on_delivery=d)
            if i % 200 == 0:
                p.poll(0)
        d.wait(p, N)
        check(sorted(m.offset() for m in d.ok) == list(range(N)), f"{fallback} {codec}: delivery offsets are not 0..{N - 1}")
        got = consume_all(bs, topic, [0], N, **old)
        check([m.offset() for m in got] == list(range(N)), f"{fallback} {codec}: consumed offsets not 0..{N - 1}")
        check([m.value() for m in got] == values, f"{fallback} {codec}: values differ")
        check([m.key() for m in got] == [str(i % 17).encode() for i in range(N)], f"{fallback} {codec}: keys differ")
        print(f"fallback {fallback}, {codec}: {N} messages round-tripped")
print("OK")
