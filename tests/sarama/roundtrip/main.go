// roundtrip: sarama 1.22 (Debian) produces keyed messages with headers into a
// 3-partition topic with a SyncProducer or an AsyncProducer (acks=all), then reads every
// partition back with a PartitionConsumer from the oldest offset and checks keys,
// values, headers and offsets against what the producer was told.
//
// Usage: roundtrip -bootstrap HOST:PORT -mode sync|async [-n N]
package main

import (
	"bytes"
	"flag"
	"fmt"
	"log"
	"os"
	"strconv"
	"time"

	"github.com/Shopify/sarama"
)

const timeout = 60 * time.Second

func fail(format string, args ...interface{}) {
	fmt.Printf("FAIL: "+format+"\n", args...)
	os.Exit(1)
}

func newConfig() *sarama.Config {
	c := sarama.NewConfig()
	// Never the default (0.8.2, legacy message format): the newest version 1.22 knows.
	c.Version = sarama.V2_1_0_0
	c.ClientID = "karst-tests-sarama"
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Return.Successes = true
	c.Producer.Return.Errors = true
	c.Producer.Partitioner = sarama.NewHashPartitioner
	// sarama 1.22 can hand a new producer a broker whose connection it has not opened
	// yet and fail the first request with "broker not connected"; it retries that like
	// any other retriable error. A retry stored twice would still show: the high
	// watermark check below wants exactly one offset per acknowledged message.
	c.Producer.Retry.Max = 3
	c.Consumer.Return.Errors = true
	c.Admin.Timeout = 10 * time.Second
	c.Metadata.Retry.Max = 10
	c.Metadata.Retry.Backoff = 200 * time.Millisecond
	return c
}

func key(i int) string   { return "key-" + strconv.Itoa(i%23) }
func value(i int) []byte { return bytes.Repeat([]byte(fmt.Sprintf("value-%06d|", i)), 1+i%4) }
func headers(i int) []sarama.RecordHeader {
	return []sarama.RecordHeader{
		{Key: []byte("seq"), Value: []byte(strconv.Itoa(i))},
		{Key: []byte("origin"), Value: []byte("sarama")},
	}
}

func message(topic string, i int) *sarama.ProducerMessage {
	return &sarama.ProducerMessage{
		Topic:    topic,
		Key:      sarama.StringEncoder(key(i)),
		Value:    sarama.ByteEncoder(value(i)),
		Headers:  headers(i),
		Metadata: i,
	}
}

type position struct {
	partition int32
	offset    int64
}

func main() {
	bootstrap := flag.String("bootstrap", "", "broker address")
	mode := flag.String("mode", "sync", "sync or async")
	n := flag.Int("n", 3000, "messages")
	flag.Parse()
	// Shown by the test harness when the test fails.
	sarama.Logger = log.New(os.Stderr, "[sarama] ", log.Lmicroseconds)
	addrs := []string{*bootstrap}
	config := newConfig()
	topic := fmt.Sprintf("sarama-%s-%d", *mode, time.Now().UnixNano())

	admin, err := sarama.NewClusterAdmin(addrs, config)
	if err != nil {
		fail("NewClusterAdmin: %v", err)
	}
	if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: 1}, false); err != nil {
		fail("CreateTopic %s: %v", topic, err)
	}
	admin.Close()

	client, err := sarama.NewClient(addrs, config)
	if err != nil {
		fail("NewClient: %v", err)
	}
	defer client.Close()
	deadline := time.Now().Add(timeout)
	for {
		_ = client.RefreshMetadata(topic)
		parts, err := client.Partitions(topic)
		if err == nil && len(parts) == 3 {
			break
		}
		if time.Now().After(deadline) {
			fail("metadata never showed 3 partitions for %s: %v %v", topic, parts, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	sent := map[position]int{}
	record := func(m *sarama.ProducerMessage) {
		p := position{m.Partition, m.Offset}
		if prev, dup := sent[p]; dup {
			fail("messages %d and %d both acknowledged at %v", prev, m.Metadata.(int), p)
		}
		sent[p] = m.Metadata.(int)
	}

	switch *mode {
	case "sync":
		producer, err := sarama.NewSyncProducerFromClient(client)
		if err != nil {
			fail("NewSyncProducer: %v", err)
		}
		// A few hundred one at a time, the rest in SendMessages batches.
		single := *n / 10
		for i := 0; i < single; i++ {
			m := message(topic, i)
			part, off, err := producer.SendMessage(m)
			if err != nil {
				fail("SendMessage %d: %v", i, err)
			}
			if part != m.Partition || off != m.Offset {
				fail("SendMessage returned %d/%d but the message says %d/%d", part, off, m.Partition, m.Offset)
			}
			record(m)
		}
		for start := single; start < *n; start += 500 {
			var batch []*sarama.ProducerMessage
			for i := start; i < start+500 && i < *n; i++ {
				batch = append(batch, message(topic, i))
			}
			if err := producer.SendMessages(batch); err != nil {
				fail("SendMessages from %d: %v", start, err)
			}
			for _, m := range batch {
				record(m)
			}
		}
		if err := producer.Close(); err != nil {
			fail("closing SyncProducer: %v", err)
		}
	case "async":
		producer, err := sarama.NewAsyncProducerFromClient(client)
		if err != nil {
			fail("NewAsyncProducer: %v", err)
		}
		go func() {
			for i := 0; i < *n; i++ {
				producer.Input() <- message(topic, i)
			}
		}()
		timer := time.After(timeout)
		for acked := 0; acked < *n; {
			select {
			case m := <-producer.Successes():
				record(m)
				acked++
			case e := <-producer.Errors():
				fail("AsyncProducer error for message %v: %v", e.Msg.Metadata, e.Err)
			case <-timer:
				fail("AsyncProducer: only %d of %d acknowledged in %v", acked, *n, timeout)
			}
		}
		if err := producer.Close(); err != nil {
			fail("closing AsyncProducer: %v", err)
		}
	default:
		fail("unknown mode %q", *mode)
	}
	if len(sent) != *n {
		fail("%d acknowledgements for %d messages", len(sent), *n)
	}

	perPartition := map[int32]int64{}
	for p := range sent {
		perPartition[p.partition]++
	}
	if len(perPartition) != 3 {
		fail("keyed messages used partitions %v, expected all 3", perPartition)
	}

	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		fail("NewConsumer: %v", err)
	}
	defer consumer.Close()
	total := 0
	for partition := int32(0); partition < 3; partition++ {
		count := perPartition[partition]
		newest, err := client.GetOffset(topic, partition, sarama.OffsetNewest)
		if err != nil {
			fail("GetOffset newest %d: %v", partition, err)
		}
		if newest != count {
			fail("partition %d: high watermark %d, but %d messages were acknowledged", partition, newest, count)
		}
		oldest, err := client.GetOffset(topic, partition, sarama.OffsetOldest)
		if err != nil || oldest != 0 {
			fail("partition %d: oldest offset %d (%v), expected 0", partition, oldest, err)
		}
		pc, err := consumer.ConsumePartition(topic, partition, sarama.OffsetOldest)
		if err != nil {
			fail("ConsumePartition %d: %v", partition, err)
		}
		timer := time.After(timeout)
		for next := int64(0); next < count; next++ {
			select {
			case m := <-pc.Messages():
				if m.Offset != next {
					fail("partition %d: got offset %d, expected %d", partition, m.Offset, next)
				}
				i, ok := sent[position{partition, m.Offset}]
				if !ok {
					fail("partition %d offset %d was never acknowledged", partition, m.Offset)
				}
				if string(m.Key) != key(i) || !bytes.Equal(m.Value, value(i)) {
					fail("%d/%d: key %q value %q, expected message %d", partition, m.Offset, m.Key, m.Value, i)
				}
				want := headers(i)
				if len(m.Headers) != len(want) {
					fail("%d/%d: %d headers, expected %d", partition, m.Offset, len(m.Headers), len(want))
				}
				for h := range want {
					if !bytes.Equal(m.Headers[h].Key, want[h].Key) || !bytes.Equal(m.Headers[h].Value, want[h].Value) {
						fail("%d/%d: header %d is %q=%q", partition, m.Offset, h, m.Headers[h].Key, m.Headers[h].Value)
					}
				}
				total++
			case e := <-pc.Errors():
				fail("partition %d consumer error: %v", partition, e)
			case <-timer:
				fail("partition %d: consumed %d of %d in %v", partition, next, count, timeout)
			}
		}
		pc.Close()
		fmt.Printf("partition %d: %d messages verified\n", partition, count)
	}
	if total != *n {
		fail("verified %d messages, expected %d", total, *n)
	}
	fmt.Printf("%s producer: %d messages round-tripped\nOK\n", *mode, *n)
}
