"""One producer and one consumer of partition 0 of a topic, for benches/failover.sh,
through librdkafka, printing the same lines as FailoverClient.java:
"ACK <epoch ms> <offset or -1>" per acknowledged record, "ERR <epoch ms> <error>" per
failed one, "REC <epoch ms> <offset>" per consumed record. The producer sends a record
every 10 ms with acks=all.

  failover_client.py confluent BOOTSTRAP TOPIC SECONDS
      confluent-kafka's own librdkafka (2.5+: follows KIP-951 leader hints)
  failover_client.py kcat BOOTSTRAP TOPIC SECONDS
      kcat on the system's librdkafka (Debian 12: 2.0.2, before KIP-951); the producer's
      acknowledgements are read from librdkafka's `msg` debug log ("MessageSet with N
      message(s) ... delivered", stamped by librdkafka), so they carry no offsets."""

import re
import subprocess
import sys
import threading
import time

mode, bootstrap, topic, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
until = time.time() + seconds
out_lock = threading.Lock()


def line(s):
    with out_lock:
        print(s, flush=True)


def now_ms():
    return int(time.time() * 1000)


def confluent():
    from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

    def consume():
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "failover-bench-unused", "enable.auto.commit": False})
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        while time.time() < until:
            m = c.poll(0.1)
            if m is not None and not m.error():
                line(f"REC {now_ms()} {m.offset()}")
        c.close()

    t = threading.Thread(target=consume)
    t.start()

    def delivered(err, msg):
        if err is not None:
            line(f"ERR {now_ms()} {err}")
        else:
            line(f"ACK {now_ms()} {msg.offset()}")

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    i, start = 0, time.time()
    while time.time() < until:
        p.produce(topic, value=f"r{i}".encode(), partition=0, on_delivery=delivered)
        i += 1
        # One record per 10 ms; delivery callbacks run meanwhile.
        while (left := start + i * 0.01 - time.time()) > 0:
            p.poll(left)
    p.flush(10)
    t.join()


DELIVERED = re.compile(r"^%7\|(\d+)\.(\d+)\|MSGSET\|.*MessageSet with (\d+) message\(s\).* delivered")


def kcat():
    # Unbuffered stdin (stdbuf -i0): kcat reads each line as it is written.
    producer = subprocess.Popen(
        ["stdbuf", "-i0", "kcat", "-P", "-b", bootstrap, "-t", topic, "-p", "0",
         "-X", "acks=all", "-X", "linger.ms=0", "-d", "msg"],
        stdin=subprocess.PIPE, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, bufsize=1)
    consumer = subprocess.Popen(
        ["kcat", "-C", "-b", bootstrap, "-t", topic, "-p", "0", "-o", "beginning", "-u", "-f", "%o\\n"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)

    def acks():
        for l in producer.stderr:
            m = DELIVERED.match(l)
            if m:
                at = int(m.group(1)) * 1000 + int(m.group(2)[:3].ljust(3, "0"))
                for _ in range(int(m.group(3))):
                    line(f"ACK {at} -1")

    def records():
        for l in consumer.stdout:
            l = l.strip()
            if l.isdigit():
                line(f"REC {now_ms()} {l}")

    threads = [threading.Thread(target=acks), threading.Thread(target=records)]
    for t in threads:
        t.start()
    i, start = 0, time.time()
    while time.time() < until:
        producer.stdin.write(f"r{i}\n")
        producer.stdin.flush()
        i += 1
        time.sleep(max(0.0, start + i * 0.01 - time.time()))
    producer.stdin.close()
    try:
        producer.wait(timeout=15)
    except subprocess.TimeoutExpired:
        producer.kill()
    consumer.terminate()
    consumer.wait()
    for t in threads:
        t.join()


{"confluent": confluent, "kcat": kcat}[mode]()
