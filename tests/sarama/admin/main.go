// admin: sarama 1.22 ClusterAdmin creates a topic, sees it, is refused a second
// create, deletes it, and no longer sees it. It looks with ListTopics (Metadata v0 +
// DescribeConfigs v0 in sarama 1.22) or, with -look describe, DescribeTopics
// (Metadata v5).
//
// With -version 0.10.1.0 sarama sends CreateTopics v0 and DeleteTopics v0, with
// 0.11.0.0 v1 of both (the default, 2.1.0, sends CreateTopics v2 and DeleteTopics v1).
//
// Usage: admin -bootstrap HOST:PORT [-look list|describe] [-version V]
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/Shopify/sarama"
)

const timeout = 30 * time.Second

func fail(format string, args ...interface{}) {
	fmt.Printf("FAIL: "+format+"\n", args...)
	os.Exit(1)
}

// lookup reports the topic's partition count and replication factor, if it exists.
type lookup func(admin sarama.ClusterAdmin, topic string) (partitions int32, replicas int16, ok bool)

func listTopics(admin sarama.ClusterAdmin, topic string) (int32, int16, bool) {
	topics, err := admin.ListTopics()
	if err != nil {
		fail("ListTopics: %v", err)
	}
	d, ok := topics[topic]
	return d.NumPartitions, d.ReplicationFactor, ok
}

func describeTopics(admin sarama.ClusterAdmin, topic string) (int32, int16, bool) {
	md, err := admin.DescribeTopics([]string{topic})
	if err != nil {
		fail("DescribeTopics: %v", err)
	}
	if len(md) != 1 || md[0].Name != topic {
		fail("DescribeTopics(%s) returned %d topics", topic, len(md))
	}
	switch md[0].Err {
	case sarama.ErrNoError:
	case sarama.ErrUnknownTopicOrPartition:
		return 0, 0, false
	default:
		fail("DescribeTopics(%s): %v", topic, md[0].Err)
	}
	var replicas int16
	if len(md[0].Partitions) > 0 {
		replicas = int16(len(md[0].Partitions[0].Replicas))
	}
	return int32(len(md[0].Partitions)), replicas, true
}

func main() {
	bootstrap := flag.String("bootstrap", "", "broker address")
	look := flag.String("look", "list", "list (ListTopics) or describe (DescribeTopics)")
	version := flag.String("version", "2.1.0", "the Kafka version sarama speaks")
	flag.Parse()
	// Shown by the test harness when the test fails.
	sarama.Logger = log.New(os.Stderr, "[sarama] ", log.Lmicroseconds)
	config := sarama.NewConfig()
	v, err := sarama.ParseKafkaVersion(*version)
	if err != nil {
		fail("-version %s: %v", *version, err)
	}
	config.Version = v
	config.ClientID = "karst-tests-sarama-admin"
	config.Admin.Timeout = 10 * time.Second
	admin, err := sarama.NewClusterAdmin([]string{*bootstrap}, config)
	if err != nil {
		fail("NewClusterAdmin: %v", err)
	}
	defer admin.Close()
	topic := fmt.Sprintf("sarama-admin-%d", time.Now().UnixNano())
	var listed lookup
	switch *look {
	case "list":
		listed = listTopics
	case "describe":
		listed = describeTopics
	default:
		fail("unknown -look %q", *look)
	}

	if _, _, ok := listed(admin, topic); ok {
		fail("%s listed before it was created", topic)
	}
	if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1}, false); err != nil {
		fail("CreateTopic: %v", err)
	}
	deadline := time.Now().Add(timeout)
	for {
		partitions, replicas, ok := listed(admin, topic)
		if ok && partitions == 2 {
			if replicas != 1 {
				fail("%s: replication factor %d", *look, replicas)
			}
			break
		}
		if time.Now().After(deadline) {
			fail("%s never showed %s with 2 partitions (last: %v, %d partitions)", *look, topic, ok, partitions)
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Printf("created %s; %s shows it with 2 partitions\n", topic, *look)

	err = admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1}, false)
	if te, ok := err.(*sarama.TopicError); !ok || te.Err != sarama.ErrTopicAlreadyExists {
		fail("second CreateTopic: got %v, expected TOPIC_ALREADY_EXISTS", err)
	}
	fmt.Println("second CreateTopic refused with TOPIC_ALREADY_EXISTS")

	if err := admin.DeleteTopic(topic); err != nil {
		fail("DeleteTopic: %v", err)
	}
	deadline = time.Now().Add(timeout)
	for {
		if _, _, ok := listed(admin, topic); !ok {
			break
		}
		if time.Now().After(deadline) {
			fail("%s still shows %s after DeleteTopic", *look, topic)
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Printf("deleted %s; %s no longer shows it\n", topic, *look)

	if err := admin.DeleteTopic(topic); err != sarama.ErrUnknownTopicOrPartition {
		fail("deleting a deleted topic: got %v, expected UNKNOWN_TOPIC_OR_PARTITION", err)
	}
	fmt.Println("OK")
}
