"""One consumer-group member (confluent-kafka, subscribe()) for the group tests in
tests/tests/groups_confluent.rs. It reports on stdout, one line per event, in the line
protocol described in tests/src/group.rs (ASSIGN/REVOKE/LOST/ASSIGNMENT, MSG, COMMIT,
IDLE, STOPPING, CLOSED, FAIL:), and runs until stdin reaches EOF (or --stop-after messages).

Offsets are committed synchronously: every --commit-every messages (0: never while
running), in the revoke callback (before the partitions go to another member), and when
stopping. Never in the lost callback: lost partitions already belong to someone else."""

import argparse
import sys
import threading

from confluent_kafka import Consumer, KafkaError, KafkaException

ap = argparse.ArgumentParser()
ap.add_argument("--bootstrap", required=True)
ap.add_argument("--topic", required=True)
ap.add_argument("--group", required=True)
ap.add_argument("--name", default="member")
ap.add_argument("--strategy", default="range")
ap.add_argument("--instance-id")
ap.add_argument("--session-timeout-ms", type=int, default=6000)
ap.add_argument("--commit-every", type=int, default=0)
ap.add_argument("--stop-after", type=int, default=0)
# KIP-848: "consumer" has the broker assign partitions; the classic knobs do not apply.
ap.add_argument("--protocol", default="classic")
ap.add_argument("--assignor")
# Subscribe to the topic names matching this regular expression instead of --topic.
ap.add_argument("--regex")
args = ap.parse_args()


def say(line):
    print(line, flush=True)


def parts(tps):
    return ",".join(str(p) for p in sorted(tps)) or "-"


stop = threading.Event()


def watch_stdin():
    sys.stdin.read()  # returns at EOF: the test closed our stdin
    stop.set()


threading.Thread(target=watch_stdin, daemon=True).start()

conf = {
    "bootstrap.servers": args.bootstrap,
    "group.id": args.group,
    "client.id": args.name,
    "partition.assignment.strategy": args.strategy,
    "session.timeout.ms": args.session_timeout_ms,
    "heartbeat.interval.ms": max(100, args.session_timeout_ms // 4),
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    "enable.partition.eof": False,
}
if args.protocol == "consumer":
    for key in ("partition.assignment.strategy", "session.timeout.ms", "heartbeat.interval.ms"):
        del conf[key]
    conf["group.protocol"] = "consumer"
    if args.assignor:
        conf["group.remote.assignor"] = args.assignor
if args.instance_id:
    conf["group.instance.id"] = args.instance_id
consumer = Consumer(conf)
assignment = set()


def commit(reason):
    try:
        result = consumer.commit(asynchronous=False)
    except KafkaException as e:
        if e.args[0].code() == KafkaError._NO_OFFSET:
            return
        say(f"COMMITFAIL {reason} {e}")
        return
    failed = [tp for tp in result if tp.error is not None]
    if failed:
        say(f"COMMITFAIL {reason} {failed}")
    done = [f"{tp.partition}:{tp.offset}" for tp in result if tp.error is None and tp.offset >= 0]
    if done:
        say(f"COMMIT {','.join(done)}")


def on_assign(c, tps):
    global busy
    busy = True
    assignment.update(tp.partition for tp in tps)
    say(f"ASSIGN {parts(tp.partition for tp in tps)}")
    say(f"ASSIGNMENT {parts(assignment)}")


def on_revoke(c, tps):
    global busy
    busy = True
    # Still ours until the callback returns: commit what was consumed from them.
    commit("revoke")
    assignment.difference_update(tp.partition for tp in tps)
    say(f"REVOKE {parts(tp.partition for tp in tps)}")
    say(f"ASSIGNMENT {parts(assignment)}")


def on_lost(c, tps):
    global busy
    busy = True
    assignment.difference_update(tp.partition for tp in tps)
    say(f"LOST {parts(tp.partition for tp in tps)}")
    say(f"ASSIGNMENT {parts(assignment)}")


consumer.subscribe(["^" + args.regex if args.regex else args.topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
consumed = 0
busy = False  # something happened since the last IDLE
while not stop.is_set():
    m = consumer.poll(0.2)
    if m is None:
        if busy:
            # Everything before this line is done, including the commits it triggered.
            say("IDLE")
            busy = False
        continue
    busy = True
    if m.error():
        if m.error().fatal():
            say(f"FAIL: fatal consumer error {m.error()}")
            sys.exit(1)
        say(f"ERROR {m.error()}")
        continue
    say(f"MSG {m.partition()} {m.offset()} {m.value().decode()}")
    consumed += 1
    if args.commit_every and consumed % args.commit_every == 0:
        commit("every")
    if args.stop_after and consumed >= args.stop_after:
        break
say("STOPPING")
commit("stop")
consumer.close()
say("CLOSED")
