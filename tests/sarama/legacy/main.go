// legacy: sarama 1.22 (Debian) as much existing code uses it: NewConfig() without
// setting Version (the 0.8.2 protocol: Produce v0 with message format v0, Fetch v0,
// ListOffsets v0), or with an old Version. A SyncProducer and an AsyncProducer send
// keyed messages with the given codec into an existing 3-partition topic; a
// PartitionConsumer per partition reads everything back from the oldest offset and
// checks every key, value and offset, and that nothing is there twice.
//
// With -mode dump it only reads: every partition from the oldest offset to the high
// watermark, one line per message: partition, offset, hex key, hex value ("-" for null).
//
// Usage: legacy -bootstrap HOST:PORT -topic T [-version 0.8.2|0.9.0|0.10.0] [-codec none|gzip|snappy|lz4] [-n N] [-mode roundtrip|dump]
package main

import (
	"bytes"
	"encoding/hex"
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

func key(i int) string   { return "key-" + strconv.Itoa(i%37) }
func value(i int) []byte { return bytes.Repeat([]byte(fmt.Sprintf("legacy-%06d|", i)), 1+i%5) }

type position struct {
	partition int32
	offset    int64
}

func main() {
	bootstrap := flag.String("bootstrap", "", "broker address")
	topic := flag.String("topic", "", "an existing topic with 3 partitions")
	version := flag.String("version", "", "Kafka version to speak (default: sarama's, 0.8.2)")
	codec := flag.String("codec", "none", "none, gzip, snappy or lz4")
	n := flag.Int("n", 10000, "messages")
	mode := flag.String("mode", "roundtrip", "roundtrip or dump")
	flag.Parse()
	sarama.Logger = log.New(os.Stderr, "[sarama] ", log.Lmicroseconds)

	config := sarama.NewConfig()
	if *version != "" {
		v, err := sarama.ParseKafkaVersion(*version)
		if err != nil {
			fail("version %q: %v", *version, err)
		}
		config.Version = v
	}
	switch *codec {
	case "none":
	case "gzip":
		config.Producer.Compression = sarama.CompressionGZIP
	case "snappy":
		config.Producer.Compression = sarama.CompressionSnappy
	case "lz4":
		config.Producer.Compression = sarama.CompressionLZ4
	default:
		fail("unknown codec %q", *codec)
	}
	// The common example: acks=all, a key-hash partitioner, successes returned.
	config.Producer.RequiredAcks = sarama.WaitForAll
	config.Producer.Partitioner = sarama.NewHashPartitioner
	config.Producer.Return.Successes = true
	config.Consumer.Return.Errors = true
	addrs := []string{*bootstrap}

	client, err := sarama.NewClient(addrs, config)
	if err != nil {
		fail("NewClient: %v", err)
	}
	defer client.Close()
	if *mode == "dump" {
		dump(client, *topic)
		return
	}

	sent := map[position]int{}
	record := func(m *sarama.ProducerMessage) {
		p := position{m.Partition, m.Offset}
		if prev, dup := sent[p]; dup {
			fail("messages %d and %d both acknowledged at %v", prev, m.Metadata.(int), p)
		}
		sent[p] = m.Metadata.(int)
	}
	message := func(i int) *sarama.ProducerMessage {
		return &sarama.ProducerMessage{Topic: *topic, Key: sarama.StringEncoder(key(i)), Value: sarama.ByteEncoder(value(i)), Metadata: i}
	}

	// The first half through a SyncProducer, in batches of 500.
	half := *n / 2
	sync, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		fail("NewSyncProducer: %v", err)
	}
	for start := 0; start < half; start += 500 {
		var batch []*sarama.ProducerMessage
		for i := start; i < start+500 && i < half; i++ {
			batch = append(batch, message(i))
		}
		if err := sync.SendMessages(batch); err != nil {
			fail("SendMessages from %d: %v", start, err)
		}
		for _, m := range batch {
			record(m)
		}
	}
	if err := sync.Close(); err != nil {
		fail("closing SyncProducer: %v", err)
	}

	// The rest through an AsyncProducer.
	async, err := sarama.NewAsyncProducerFromClient(client)
	if err != nil {
		fail("NewAsyncProducer: %v", err)
	}
	go func() {
		for i := half; i < *n; i++ {
			async.Input() <- message(i)
		}
	}()
	timer := time.After(timeout)
	for acked := half; acked < *n; {
		select {
		case m := <-async.Successes():
			record(m)
			acked++
		case e := <-async.Errors():
			fail("AsyncProducer error for message %v: %v", e.Msg.Metadata, e.Err)
		case <-timer:
			fail("AsyncProducer: only %d of %d acknowledged in %v", acked, *n, timeout)
		}
	}
	if err := async.Close(); err != nil {
		fail("closing AsyncProducer: %v", err)
	}

	perPartition := map[int32]int64{}
	for p := range sent {
		perPartition[p.partition]++
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		fail("NewConsumer: %v", err)
	}
	defer consumer.Close()
	total := 0
	for partition := int32(0); partition < 3; partition++ {
		count := perPartition[partition]
		// ListOffsets (v0 for the 0.8.2 and 0.9.0 protocols).
		newest, err := client.GetOffset(*topic, partition, sarama.OffsetNewest)
		if err != nil {
			fail("GetOffset newest %d: %v", partition, err)
		}
		if newest != count {
			fail("partition %d: high watermark %d, but %d messages were acknowledged", partition, newest, count)
		}
		oldest, err := client.GetOffset(*topic, partition, sarama.OffsetOldest)
		if err != nil || oldest != 0 {
			fail("partition %d: oldest offset %d (%v), expected 0", partition, oldest, err)
		}
		pc, err := consumer.ConsumePartition(*topic, partition, sarama.OffsetOldest)
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
				total++
			case e := <-pc.Errors():
				fail("partition %d consumer error: %v", partition, e)
			case <-timer:
				fail("partition %d: consumed %d of %d in %v", partition, next, count, timeout)
			}
		}
		pc.Close()
	}
	if total != *n {
		fail("verified %d messages, expected %d", total, *n)
	}
	fmt.Printf("sarama %s (%s): %d messages round-tripped with %s\nOK\n", config.Version, *version, *n, *codec)
}

func hexOrNull(b []byte) string {
	if b == nil {
		return "-"
	}
	return hex.EncodeToString(b)
}

// dump prints every message of every partition of topic, oldest first.
func dump(client sarama.Client, topic string) {
	partitions, err := client.Partitions(topic)
	if err != nil {
		fail("Partitions: %v", err)
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		fail("NewConsumer: %v", err)
	}
	defer consumer.Close()
	for _, partition := range partitions {
		newest, err := client.GetOffset(topic, partition, sarama.OffsetNewest)
		if err != nil {
			fail("GetOffset newest %d: %v", partition, err)
		}
		oldest, err := client.GetOffset(topic, partition, sarama.OffsetOldest)
		if err != nil {
			fail("GetOffset oldest %d: %v", partition, err)
		}
		if newest == oldest {
			continue
		}
		pc, err := consumer.ConsumePartition(topic, partition, oldest)
		if err != nil {
			fail("ConsumePartition %d: %v", partition, err)
		}
		timer := time.After(timeout)
		for done := false; !done; {
			select {
			case m := <-pc.Messages():
				fmt.Printf("%d\t%d\t%s\t%s\n", partition, m.Offset, hexOrNull(m.Key), hexOrNull(m.Value))
				done = m.Offset+1 >= newest
			case e := <-pc.Errors():
				fail("partition %d consumer error: %v", partition, e)
			case <-timer:
				fail("partition %d: not all of %d..%d consumed in %v", partition, oldest, newest, timeout)
			}
		}
		pc.Close()
	}
	fmt.Println("OK")
}
