// timestamps: sarama 1.22 (Debian) writes record batches whose MaxTimestamp is
// -1. Produces records with explicit timestamps one batch at a time, then asks
// client.GetOffset for times before, between and after them (ListOffsets by
// timestamp), as Kafka answers: the first offset whose timestamp is at or after
// the time asked, -1 past the last.
//
// Usage: timestamps -bootstrap HOST:PORT
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/Shopify/sarama"
)

const timeout = 60 * time.Second

func fail(format string, args ...interface{}) {
	fmt.Printf("FAIL: "+format+"\n", args...)
	os.Exit(1)
}

func ms(t time.Time) int64 { return t.UnixNano() / int64(time.Millisecond) }

func main() {
	bootstrap := flag.String("bootstrap", "", "broker address")
	flag.Parse()
	sarama.Logger = log.New(os.Stderr, "[sarama] ", log.Lmicroseconds)
	addrs := []string{*bootstrap}
	c := sarama.NewConfig()
	c.Version = sarama.V2_1_0_0
	c.ClientID = "karst-tests-sarama"
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Return.Successes = true
	c.Producer.Retry.Max = 0
	c.Admin.Timeout = 10 * time.Second
	c.Metadata.Retry.Max = 10
	c.Metadata.Retry.Backoff = 200 * time.Millisecond
	topic := fmt.Sprintf("sarama-timestamps-%d", time.Now().UnixNano())

	admin, err := sarama.NewClusterAdmin(addrs, c)
	if err != nil {
		fail("NewClusterAdmin: %v", err)
	}
	if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, false); err != nil {
		fail("CreateTopic %s: %v", topic, err)
	}
	admin.Close()

	client, err := sarama.NewClient(addrs, c)
	if err != nil {
		fail("NewClient: %v", err)
	}
	defer client.Close()
	deadline := time.Now().Add(timeout)
	for {
		_ = client.RefreshMetadata(topic)
		if parts, err := client.Partitions(topic); err == nil && len(parts) == 1 {
			break
		}
		if time.Now().After(deadline) {
			fail("metadata never showed %s", topic)
		}
		time.Sleep(100 * time.Millisecond)
	}
	producer, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		fail("NewSyncProducer: %v", err)
	}
	defer producer.Close()

	// Ten minutes ago, a second apart: offsets 0, 1, 2 in three batches.
	base := time.Now().Add(-10 * time.Minute).Truncate(time.Millisecond)
	for i := 0; i < 3; i++ {
		m := &sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(fmt.Sprintf("v%d", i)), Timestamp: base.Add(time.Duration(i) * time.Second)}
		_, off, err := producer.SendMessage(m)
		if err != nil {
			fail("SendMessage %d: %v", i, err)
		}
		if off != int64(i) {
			fail("message %d acknowledged at offset %d", i, off)
		}
	}

	for _, q := range []struct {
		at   time.Time
		want int64
	}{
		{base.Add(-time.Hour), 0},
		{base, 0},
		{base.Add(500 * time.Millisecond), 1},
		{base.Add(2 * time.Second), 2},
		{base.Add(3 * time.Second), -1},
	} {
		got, err := client.GetOffset(topic, 0, ms(q.at))
		if err != nil {
			fail("GetOffset(%d): %v", ms(q.at), err)
		}
		if got != q.want {
			fail("GetOffset at base%+dms = %d, want %d", ms(q.at)-ms(base), got, q.want)
		}
	}
	fmt.Println("OK")
}
