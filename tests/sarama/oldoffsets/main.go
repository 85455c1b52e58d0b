// oldoffsets: sarama 1.22 with its default config (the 0.8.2 protocol) commits and
// fetches consumer offsets the ways clients of that era did: its OffsetManager
// (GroupCoordinator v0, OffsetFetch v1, OffsetCommit v1), and sarama's own
// OffsetCommit v0 and OffsetFetch v0 requests (0.8.1 clients) on the coordinator.
//
// Usage: oldoffsets -bootstrap HOST:PORT -topic TOPIC (a topic of 2 partitions)
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/Shopify/sarama"
)

func fail(format string, args ...interface{}) {
	fmt.Printf("FAIL: "+format+"\n", args...)
	os.Exit(1)
}

func check(what string, err error) {
	if err != nil {
		fail("%s: %v", what, err)
	}
}

// managedOffset is what a fresh OffsetManager of group reads for partition 0.
func managedOffset(client sarama.Client, group, topic string) (int64, string) {
	om, err := sarama.NewOffsetManagerFromClient(group, client)
	check("NewOffsetManagerFromClient", err)
	defer om.Close()
	pom, err := om.ManagePartition(topic, 0)
	check("ManagePartition", err)
	defer pom.Close()
	return pom.NextOffset()
}

func main() {
	bootstrap := flag.String("bootstrap", "", "broker address")
	topic := flag.String("topic", "", "a topic with 2 partitions")
	flag.Parse()
	sarama.Logger = log.New(os.Stderr, "[sarama] ", log.Lmicroseconds)
	config := sarama.NewConfig() // Version 0.8.2: sarama 1.22's default
	config.ClientID = "karst-tests-sarama-oldoffsets"
	config.Consumer.Offsets.Initial = sarama.OffsetOldest
	config.Consumer.Offsets.CommitInterval = 100 * time.Millisecond
	client, err := sarama.NewClient([]string{*bootstrap}, config)
	check("NewClient", err)
	defer client.Close()
	group := fmt.Sprintf("sarama-oldoffsets-%d", time.Now().UnixNano())

	// OffsetManager: nothing committed yet, then 5 committed on Close.
	if off, _ := managedOffset(client, group, *topic); off != sarama.OffsetOldest {
		fail("a new group's offset: %d, want OffsetOldest", off)
	}
	om, err := sarama.NewOffsetManagerFromClient(group, client)
	check("NewOffsetManagerFromClient", err)
	pom, err := om.ManagePartition(*topic, 0)
	check("ManagePartition", err)
	pom.MarkOffset(5, "by the offset manager")
	check("closing the partition offset manager", pom.Close())
	check("closing the offset manager (commits)", om.Close())
	off, meta := managedOffset(client, group, *topic)
	if off != 5 || meta != "by the offset manager" {
		fail("after the offset manager's commit: %d %q, want 5", off, meta)
	}
	fmt.Println("OffsetManager committed 5 (OffsetCommit v1) and read it back (OffsetFetch v1)")

	// v0 requests, as 0.8.1 clients sent them, on the group's coordinator.
	coordinator, err := client.Coordinator(group)
	check("Coordinator", err)
	commit := &sarama.OffsetCommitRequest{Version: 0, ConsumerGroup: group}
	commit.AddBlock(*topic, 1, 7, 0, "v0 commit")
	resp, err := coordinator.CommitOffset(commit)
	check("OffsetCommit v0", err)
	if kerr := resp.Errors[*topic][1]; kerr != sarama.ErrNoError {
		fail("OffsetCommit v0: %v", kerr)
	}
	fetch := &sarama.OffsetFetchRequest{Version: 0, ConsumerGroup: group}
	fetch.AddPartition(*topic, 0)
	fetch.AddPartition(*topic, 1)
	fetched, err := coordinator.FetchOffset(fetch)
	check("OffsetFetch v0", err)
	for p, want := range map[int32]struct {
		offset int64
		meta   string
	}{0: {5, "by the offset manager"}, 1: {7, "v0 commit"}} {
		b := fetched.GetBlock(*topic, p)
		if b == nil || b.Err != sarama.ErrNoError || b.Offset != want.offset || b.Metadata != want.meta {
			fail("OffsetFetch v0 of partition %d: %+v, want offset %d %q", p, b, want.offset, want.meta)
		}
	}
	fmt.Println("OffsetCommit v0 committed 7; OffsetFetch v0 read both partitions' offsets")
	fmt.Println("OK")
}
