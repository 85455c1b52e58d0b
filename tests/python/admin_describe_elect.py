"""AdminClient describe_topics (librdkafka's DescribeTopics) and elect_leaders
(ElectLeaders) against one broker: every partition is led by its preferred replica,
so a preferred election is not needed."""

from confluent_kafka import ElectionType, KafkaError, KafkaException, TopicCollection, TopicPartition

from karst_common import admin, bootstrap, check, create_topic, unique_topic

bs = bootstrap()
topic = unique_topic("admin-describe")
create_topic(bs, topic, 3)
a = admin(bs)

desc = a.describe_topics(TopicCollection([topic]), request_timeout=15)[topic].result(timeout=30)
check(desc.name == topic and len(desc.partitions) == 3, f"describe_topics: {desc}")
for p in desc.partitions:
    check(p.leader is not None and len(p.replicas) == 1 and len(p.isr) == 1, f"partition {p.id}: {p}")
check(not desc.is_internal and desc.topic_id is not None, f"topic id, not internal: {desc}")
print(f"{topic}: 3 partitions, each led, topic id {desc.topic_id}")

missing = unique_topic("admin-missing")
try:
    a.describe_topics(TopicCollection([missing]), request_timeout=15)[missing].result(timeout=30)
    check(False, "describe_topics of a missing topic succeeded")
except KafkaException as e:
    code = e.args[0].code()
    check(code == KafkaError.UNKNOWN_TOPIC_OR_PART, f"a missing topic: {e}")
    print(f"missing topic: {e.args[0].name()}")

result = a.elect_leaders(ElectionType.PREFERRED, [TopicPartition(topic, 0), TopicPartition(topic, 2)]).result(timeout=30)
check(len(result) == 2, f"elect_leaders: {result}")
for tp, err in result.items():
    check(err is not None and err.code() == KafkaError.ELECTION_NOT_NEEDED, f"{tp}: {err}")
print("preferred election: not needed for both partitions")
print("OK")
