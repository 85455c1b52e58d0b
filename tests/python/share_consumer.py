"""One share-group consumer (confluent-kafka ShareConsumer, KIP-932) for
tests/tests/share_groups.rs. It reports on stdout, one line per event:

  MSG <partition> <offset> <value> <action>   a record it got and what it did with it
  ACKED <n>                                  a commit of acknowledgements succeeded
  FAIL: <reason>

and runs until stdin reaches EOF (the test closes it), or until it acted on --stop-after
records. --action says what it does with every record: accept, release, reject, or
hold (acknowledge nothing: the record stays acquired until its lock expires, or until
the consumer is closed or killed)."""

import argparse
import sys
import threading

from confluent_kafka import KafkaException, ShareConsumer

try:
    from confluent_kafka import AcknowledgeType
except ImportError:  # older layouts keep it beside the consumer
    from confluent_kafka.cimpl import AcknowledgeType

ap = argparse.ArgumentParser()
ap.add_argument("--bootstrap", required=True)
ap.add_argument("--topic", required=True)
ap.add_argument("--group", required=True)
ap.add_argument("--action", default="accept", choices=["accept", "release", "reject", "hold"])
ap.add_argument("--stop-after", type=int, default=0)
ap.add_argument("--max-poll-records", type=int, default=0)
args = ap.parse_args()


def say(line):
    print(line, flush=True)


stop = threading.Event()


def watch_stdin():
    sys.stdin.read()
    stop.set()


threading.Thread(target=watch_stdin, daemon=True).start()

explicit = args.action != "hold"
conf = {
    "bootstrap.servers": args.bootstrap,
    "group.id": args.group,
    "share.acknowledgement.mode": "explicit" if explicit else "implicit",
}
if args.max_poll_records:
    conf["max.poll.records"] = args.max_poll_records
kinds = {"accept": AcknowledgeType.ACCEPT, "release": AcknowledgeType.RELEASE, "reject": AcknowledgeType.REJECT}
acted = 0
try:
    consumer = ShareConsumer(conf)
    consumer.subscribe([args.topic])
    while not stop.is_set() and (args.stop_after == 0 or acted < args.stop_after):
        msgs = consumer.poll(0.5)
        got = 0
        for m in msgs:
            if m.error() is not None:
                say(f"ERR {m.error()}")
                continue
            value = m.value().decode() if m.value() is not None else ""
            say(f"MSG {m.partition()} {m.offset()} {value} {args.action}")
            got += 1
            if explicit:
                consumer.acknowledge(m, kinds[args.action])
        acted += got
        if got and not explicit:
            # Holding: no further poll, which would accept them.
            break
        if got and explicit:
            result = consumer.commit_sync(30)
            failed = [str(e) for e in result.values() if e is not None]
            if failed:
                say(f"FAIL: acknowledgement commit failed: {failed}")
                sys.exit(1)
            say(f"ACKED {got}")
    if args.action == "hold":
        # Records acquired and never acknowledged: stay until killed.
        stop.wait()
        sys.exit(0)
    consumer.close()
    say("CLOSED")
except KafkaException as e:
    say(f"FAIL: {e}")
    sys.exit(1)
