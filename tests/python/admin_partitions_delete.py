"""AdminClient grows a topic from 1 to 4 partitions, then deletes it."""

from confluent_kafka.admin import NewPartitions

from karst_common import bootstrap, check, create_topic, unique_topic, wait_until

bs = bootstrap()
topic = unique_topic("admin-grow")
a = create_topic(bs, topic, 1)

fs = a.create_partitions([NewPartitions(topic, 4)], request_timeout=15)
fs[topic].result(timeout=30)
wait_until(
    "metadata to show 4 partitions",
    lambda: len(a.list_topics(topic=topic, timeout=10).topics[topic].partitions) == 4,
)
print(f"{topic} grew to 4 partitions")

fs = a.delete_topics([topic], request_timeout=15)
fs[topic].result(timeout=30)
wait_until("list_topics to stop showing the deleted topic", lambda: topic not in a.list_topics(timeout=10).topics)
print(f"{topic} deleted")
print("OK")
