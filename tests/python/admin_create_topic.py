"""AdminClient creates a 3-partition topic; metadata shows it; creating it again fails
with TOPIC_ALREADY_EXISTS."""

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import NewTopic

from karst_common import bootstrap, check, create_topic, fail, unique_topic

bs = bootstrap()
topic = unique_topic("admin")
a = create_topic(bs, topic, 3)

md = a.list_topics(timeout=10)
check(topic in md.topics, f"list_topics does not show {topic}: {sorted(md.topics)}")
t = md.topics[topic]
check(sorted(t.partitions) == [0, 1, 2], f"partitions {sorted(t.partitions)}")
broker_ids = set(md.brokers)
check(len(broker_ids) == 1, f"brokers {md.brokers}")
for p in t.partitions.values():
    check(p.leader in broker_ids, f"partition {p.id} leader {p.leader} not a known broker")
    check(p.replicas == [p.leader], f"partition {p.id} replicas {p.replicas}")
    check(p.isrs == [p.leader], f"partition {p.id} isr {p.isrs}")
print(f"created {topic} with 3 partitions, leader {t.partitions[0].leader}")

again = a.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)], request_timeout=15)
try:
    again[topic].result(timeout=30)
    fail("creating an existing topic succeeded")
except KafkaException as e:
    code = e.args[0].code()
    check(code == KafkaError.TOPIC_ALREADY_EXISTS, f"re-create error {e.args[0]}, expected TOPIC_ALREADY_EXISTS")
    print(f"re-create refused: {e.args[0].name()}")
print("OK")
