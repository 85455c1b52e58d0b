// kafkago: segmentio/kafka-go (v0.4.51) against a broker, run by
// tests/tests/kafka_go.rs against Karst and against Apache Kafka.
//
//	kafkago <produce-consume|group|admin|conn> <bootstrap> <topic>
//	kafkago bench <bootstrap> <topic> <records> <bytes>
//
// Modes:
//
//	produce-consume  a Writer (acks=all, hash balancer by key, each codec) and a Reader
//	                 per partition reading every record back in per-key order; a
//	                 Writer creating its topic (AllowAutoTopicCreation)
//	group            two Readers with one GroupID (range): the first alone is assigned
//	                 all four partitions and commits what it read, the second joining
//	                 rebalances to 2 + 2 (seen with DescribeGroups), every record is read
//	                 once across the group and the committed offsets (OffsetFetch) reach
//	                 the log end (ListOffsets); the second leaving gives the first all
//	                 four back
//	admin            Client: CreateTopics (with a config; again: TOPIC_ALREADY_EXISTS),
//	                 Metadata, DescribeConfigs, ListOffsets, ListGroups, DescribeGroups,
//	                 OffsetFetch, IncrementalAlterConfigs, CreatePartitions,
//	                 OffsetCommit without a member, OffsetDelete, DeleteGroups,
//	                 DeleteTopics
//	conn             the low-level Conn to a partition leader (its own, older API
//	                 versions): writes with headers and times (plain and snappy),
//	                 offsets first, last and by time, Seek, ReadBatch, ReadMessage,
//	                 partitions, brokers, controller; a Reader set at a time
//	bench            benches/clients.sh's rate check: creates topic (one partition), a
//	                 Writer at kafka-go's defaults but acks=all (its zero value is
//	                 acks=0; batches of 100 records, one request in flight per
//	                 partition, not idempotent) writes the records in one WriteMessages
//	                 call, then a fresh group Reader reads them from the first offset
//	                 (FetchMessage, one commit at the end: ReadMessage would commit every
//	                 record synchronously); prints one "BENCH ..." line
//
// Prints "OK <step>" per step and exits 0, or "FAIL <why>" and exits 1. Every wait is
// bounded.
package main

import (
	"context"
	"errors"
	"fmt"
	"karsttests/common"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"
)

// The shared line protocol and helpers (tests/go/common).
var (
	fail      = common.Fail
	ok        = common.OK
	check     = common.Check
	must      = common.Must
	ctxFor    = common.CtxFor
	benchLine = common.BenchLine
)

const timeout = 60 * time.Second

func client(bootstrap string) *kafka.Client {
	return &kafka.Client{Addr: kafka.TCP(bootstrap), Timeout: timeout}
}

// createTopic creates topic and waits until every partition has a leader: metadata
// can lag CreateTopics by a moment, on any broker.
func createTopic(c *kafka.Client, topic string, partitions int, configs ...kafka.ConfigEntry) {
	resp, err := c.CreateTopics(ctxFor(timeout), &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: topic, NumPartitions: partitions, ReplicationFactor: 1, ConfigEntries: configs,
	}}})
	must(err, "CreateTopics")
	must(resp.Errors[topic], "CreateTopics "+topic)
	deadline := time.Now().Add(timeout)
	for {
		md, err := c.Metadata(ctxFor(10*time.Second), &kafka.MetadataRequest{Topics: []string{topic}})
		if err == nil && len(md.Topics) == 1 && md.Topics[0].Error == nil && len(md.Topics[0].Partitions) == partitions {
			ready := true
			for _, p := range md.Topics[0].Partitions {
				ready = ready && p.Leader.ID >= 0 && p.Error == nil
			}
			if ready {
				return
			}
		}
		check(time.Now().Before(deadline), "no leaders for %s (%v)", topic, err)
		time.Sleep(100 * time.Millisecond)
	}
}

func writer(bootstrap, topic string, codec compress.Compression) *kafka.Writer {
	return &kafka.Writer{
		Addr:         kafka.TCP(bootstrap),
		Topic:        topic,
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: 5 * time.Millisecond,
		Compression:  codec,
		WriteTimeout: timeout,
		ReadTimeout:  timeout,
	}
}

// send writes n records keyed "key-<i mod 7>" with values "<prefix>-<i>" and returns
// the values.
func send(w *kafka.Writer, n int, prefix string) []string {
	values := make([]string, n)
	msgs := make([]kafka.Message, n)
	for i := range n {
		values[i] = fmt.Sprintf("%s-%d", prefix, i)
		msgs[i] = kafka.Message{Key: []byte(fmt.Sprintf("key-%d", i%7)), Value: []byte(values[i])}
	}
	must(w.WriteMessages(ctxFor(timeout), msgs...), "WriteMessages")
	return values
}

type got struct {
	partition int
	offset    int64
	key       string
	value     string
}

func sameSet(got []got, want []string) bool {
	if len(got) != len(want) {
		return false
	}
	seen := map[string]bool{}
	for _, g := range got {
		seen[g.value] = true
	}
	for _, w := range want {
		if !seen[w] {
			return false
		}
	}
	return true
}

// endOffsets: the log end of each of partitions of topic (ListOffsets).
func endOffsets(c *kafka.Client, topic string, partitions int) map[int]int64 {
	var reqs []kafka.OffsetRequest
	for p := range partitions {
		reqs = append(reqs, kafka.LastOffsetOf(p))
	}
	resp, err := c.ListOffsets(ctxFor(timeout), &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	must(err, "ListOffsets")
	out := map[int]int64{}
	for _, po := range resp.Topics[topic] {
		must(po.Error, "ListOffsets partition")
		out[po.Partition] = po.LastOffset
	}
	return out
}

// committed: the group's committed offsets of topic (OffsetFetch).
func committed(c *kafka.Client, group, topic string, partitions int) map[int]int64 {
	var ps []int
	for p := range partitions {
		ps = append(ps, p)
	}
	resp, err := c.OffsetFetch(ctxFor(timeout), &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ps}})
	must(err, "OffsetFetch")
	must(resp.Error, "OffsetFetch")
	out := map[int]int64{}
	for _, p := range resp.Topics[topic] {
		must(p.Error, "OffsetFetch partition")
		out[p.Partition] = p.CommittedOffset
	}
	return out
}

func produceConsume(bootstrap, topic string) {
	c := client(bootstrap)
	createTopic(c, topic, 3)
	var sent []string
	for _, codec := range []compress.Compression{0, kafka.Gzip, kafka.Snappy, kafka.Lz4, kafka.Zstd} {
		w := writer(bootstrap, topic, codec)
		sent = append(sent, send(w, 60, fmt.Sprintf("codec%d", codec))...)
		must(w.Close(), "Writer.Close")
	}
	ok("Writer, acks=all, keyed: 300 records written (none, gzip, snappy, lz4, zstd)")

	var mu sync.Mutex
	var all []got
	var wg sync.WaitGroup
	for p := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{bootstrap}, Topic: topic, Partition: p, MaxWait: 200 * time.Millisecond})
			defer r.Close()
			end := endOffsets(c, topic, 3)[p]
			for offset := int64(0); offset < end; {
				m, err := r.ReadMessage(ctxFor(timeout))
				must(err, fmt.Sprintf("ReadMessage partition %d", p))
				mu.Lock()
				all = append(all, got{m.Partition, m.Offset, string(m.Key), string(m.Value)})
				mu.Unlock()
				offset = m.Offset + 1
			}
		}()
	}
	wg.Wait()
	check(sameSet(all, sent), "readers read %d records, not the %d written once each", len(all), len(sent))
	byKey := map[string][]got{}
	for _, g := range all {
		byKey[g.key] = append(byKey[g.key], g)
	}
	for k, gs := range byKey {
		for i := 1; i < len(gs); i++ {
			check(gs[i].partition == gs[0].partition && gs[i].offset > gs[i-1].offset, "key %s: records out of order or spread over partitions", k)
		}
	}
	ok("a Reader per partition read all %d, per-key order kept", len(sent))

	// A Writer allowed to create its topic: the broker creates it on the Metadata
	// request, with its default partition count.
	auto := topic + "-auto"
	w := writer(bootstrap, auto, 0)
	w.AllowAutoTopicCreation = true
	var autoSent []string
	deadline := time.Now().Add(timeout)
	for {
		// The first write may find the new topic without a leader yet, as on Kafka.
		msgs := []kafka.Message{{Value: []byte("auto-0")}, {Value: []byte("auto-1")}}
		err := w.WriteMessages(ctxFor(timeout), msgs...)
		if err == nil {
			autoSent = []string{"auto-0", "auto-1"}
			break
		}
		check(time.Now().Before(deadline), "writing to a topic the Writer may create: %v", err)
		time.Sleep(200 * time.Millisecond)
	}
	must(w.Close(), "Writer.Close")
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{bootstrap}, Topic: auto, Partition: 0, MaxWait: 200 * time.Millisecond})
	defer r.Close()
	var autoRead []got
	for len(autoRead) < len(autoSent) {
		m, err := r.ReadMessage(ctxFor(timeout))
		must(err, "ReadMessage of the created topic")
		autoRead = append(autoRead, got{m.Partition, m.Offset, string(m.Key), string(m.Value)})
	}
	check(sameSet(autoRead, autoSent), "the created topic holds %v", autoRead)
	ok("a Writer with AllowAutoTopicCreation created its topic and wrote to it")
}

// member is one group Reader and what it read.
type member struct {
	name string
	r    *kafka.Reader
	mu   sync.Mutex
	read []got
	stop chan struct{}
	done chan struct{}
}

func startMember(bootstrap, group, topic, name string) *member {
	m := &member{name: name, stop: make(chan struct{}), done: make(chan struct{})}
	m.r = kafka.NewReader(kafka.ReaderConfig{
		Brokers:           []string{bootstrap},
		GroupID:           group,
		Topic:             topic,
		StartOffset:       kafka.FirstOffset,
		MaxWait:           200 * time.Millisecond,
		HeartbeatInterval: 500 * time.Millisecond,
		SessionTimeout:    10 * time.Second,
		RebalanceTimeout:  10 * time.Second,
		JoinGroupBackoff:  200 * time.Millisecond,
		Dialer:            &kafka.Dialer{ClientID: name, Timeout: 10 * time.Second},
	})
	go func() {
		defer close(m.done)
		for {
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				select {
				case <-m.stop:
				case <-ctx.Done():
				}
				cancel()
			}()
			msg, err := m.r.FetchMessage(ctx)
			if err != nil {
				cancel()
				select {
				case <-m.stop:
					return
				default:
				}
				fmt.Printf("%s: FetchMessage: %v\n", name, err)
				time.Sleep(100 * time.Millisecond)
				continue
			}
			m.mu.Lock()
			m.read = append(m.read, got{msg.Partition, msg.Offset, string(msg.Key), string(msg.Value)})
			m.mu.Unlock()
			// A synchronous commit of each record: nothing read is left uncommitted
			// when a rebalance moves its partition.
			if err := m.r.CommitMessages(ctx, msg); err != nil {
				fmt.Printf("%s: CommitMessages: %v\n", name, err)
			}
			cancel()
		}
	}()
	return m
}

func (m *member) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.read)
}

func (m *member) close() {
	close(m.stop)
	select {
	case <-m.done:
	case <-time.After(timeout):
		fail("%s did not stop", m.name)
	}
	must(m.r.Close(), m.name+": Close")
}

// assignments: each member's partitions of topic by client id, from DescribeGroups,
// once the group is Stable.
func assignments(c *kafka.Client, group, topic string) (map[string][]int, string) {
	resp, err := c.DescribeGroups(ctxFor(10*time.Second), &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
	if err != nil || len(resp.Groups) != 1 || resp.Groups[0].Error != nil {
		return nil, fmt.Sprintf("DescribeGroups: %v", err)
	}
	g := resp.Groups[0]
	out := map[string][]int{}
	for _, m := range g.Members {
		for _, t := range m.MemberAssignments.Topics {
			if t.Topic == topic {
				ps := append([]int(nil), t.Partitions...)
				sort.Ints(ps)
				out[m.ClientID] = ps
			}
		}
	}
	return out, g.GroupState
}

func groupMode(bootstrap, topic string) {
	c := client(bootstrap)
	createTopic(c, topic, 4)
	w := writer(bootstrap, topic, 0)
	defer w.Close()
	sent := send(w, 200, "g1")
	group := topic + "-group"

	a := startMember(bootstrap, group, topic, "member-a")
	deadline := time.Now().Add(timeout)
	for a.count() < len(sent) {
		check(time.Now().Before(deadline), "the first member read %d of %d", a.count(), len(sent))
		time.Sleep(50 * time.Millisecond)
	}
	as, state := assignments(c, group, topic)
	check(state == "Stable" && len(as) == 1 && len(as["member-a"]) == 4, "the first member alone: %s %v", state, as)
	ok("first member alone: 4 partitions, %d records read and committed", len(sent))

	b := startMember(bootstrap, group, topic, "member-b")
	deadline = time.Now().Add(timeout)
	for {
		as, state = assignments(c, group, topic)
		if state == "Stable" && len(as["member-a"]) == 2 && len(as["member-b"]) == 2 {
			break
		}
		check(time.Now().Before(deadline), "after the second member joined: %s %v", state, as)
		time.Sleep(100 * time.Millisecond)
	}
	ok("second member joined: DescribeGroups says Stable, A %v, B %v", as["member-a"], as["member-b"])

	sent = append(sent, send(w, 200, "g2")...)
	deadline = time.Now().Add(timeout)
	for a.count()+b.count() < len(sent) {
		check(time.Now().Before(deadline), "after the rebalance: %d of %d read", a.count()+b.count(), len(sent))
		time.Sleep(50 * time.Millisecond)
	}
	deadline = time.Now().Add(timeout)
	for {
		ends, offsets := endOffsets(c, topic, 4), committed(c, group, topic, 4)
		done := true
		for p := range 4 {
			done = done && offsets[p] == ends[p]
		}
		if done {
			break
		}
		check(time.Now().Before(deadline), "committed %v, log ends %v", offsets, ends)
		time.Sleep(100 * time.Millisecond)
	}
	a.mu.Lock()
	b.mu.Lock()
	all := append(append([]got(nil), a.read...), b.read...)
	for _, m := range []*member{a, b} {
		mine := map[int]bool{}
		for _, p := range as[m.name] {
			mine[p] = true
		}
		after := 0
		for _, g := range m.read {
			if strings.HasPrefix(g.value, "g2-") {
				check(mine[g.partition], "%s read %s from partition %d, not its own %v", m.name, g.value, g.partition, as[m.name])
				after++
			}
		}
		check(after > 0, "%s read nothing after the rebalance", m.name)
	}
	a.mu.Unlock()
	b.mu.Unlock()
	check(sameSet(all, sent), "the group read %d records, not the %d written once each", len(all), len(sent))
	ok("all %d read once across the group, each member from its own partitions, commits at the log end", len(sent))

	// The second member leaves (LeaveGroup on Close): the first takes all four back.
	b.close()
	deadline = time.Now().Add(timeout)
	for {
		as, state = assignments(c, group, topic)
		if state == "Stable" && len(as) == 1 && len(as["member-a"]) == 4 {
			break
		}
		check(time.Now().Before(deadline), "after the second member left: %s %v", state, as)
		time.Sleep(100 * time.Millisecond)
	}
	sent = append(sent, send(w, 100, "g3")...)
	deadline = time.Now().Add(timeout)
	for a.count()+b.count() < len(sent) {
		check(time.Now().Before(deadline), "after the second member left: %d of %d read", a.count()+b.count(), len(sent))
		time.Sleep(50 * time.Millisecond)
	}
	a.mu.Lock()
	all = append(append([]got(nil), a.read...), b.read...)
	a.mu.Unlock()
	check(sameSet(all, sent), "after the second member left, the group read %d records, not the %d written once each", len(all), len(sent))
	ok("second member left: the first has all 4 partitions again and read the next 100, each record once")
	a.close()
}

func adminMode(bootstrap, topic string) {
	c := client(bootstrap)
	createTopic(c, topic, 2, kafka.ConfigEntry{ConfigName: "retention.ms", ConfigValue: "3600000"})
	resp, err := c.CreateTopics(ctxFor(timeout), &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: 2, ReplicationFactor: 1}}})
	must(err, "CreateTopics")
	check(errors.Is(resp.Errors[topic], kafka.TopicAlreadyExists), "creating %s again: %v", topic, resp.Errors[topic])
	md, err := c.Metadata(ctxFor(timeout), &kafka.MetadataRequest{})
	must(err, "Metadata")
	found := false
	for _, t := range md.Topics {
		found = found || (t.Name == topic && len(t.Partitions) == 2)
	}
	check(found && len(md.Brokers) >= 1 && md.Controller.ID >= 0, "Metadata: topic listed %v, %d brokers, controller %d", found, len(md.Brokers), md.Controller.ID)
	ok("CreateTopics with a config (again: TOPIC_ALREADY_EXISTS), Metadata of all topics")

	dc, err := c.DescribeConfigs(ctxFor(timeout), &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{"retention.ms", "cleanup.policy"},
	}}})
	must(err, "DescribeConfigs")
	check(len(dc.Resources) == 1 && dc.Resources[0].Error == nil, "DescribeConfigs: %+v", dc.Resources)
	values := map[string]string{}
	for _, e := range dc.Resources[0].ConfigEntries {
		values[e.ConfigName] = e.ConfigValue
	}
	check(values["retention.ms"] == "3600000" && values["cleanup.policy"] == "delete" && len(values) == 2, "DescribeConfigs: %v", values)
	ok("DescribeConfigs of two named keys")

	w := writer(bootstrap, topic, 0)
	send(w, 30, "admin")
	must(w.Close(), "Writer.Close")
	ends := endOffsets(c, topic, 2)
	check(ends[0]+ends[1] == 30, "ListOffsets: ends %v do not add up to 30", ends)
	ok("ListOffsets (30 records over 2 partitions)")

	group := topic + "-admin-group"
	m := startMember(bootstrap, group, topic, "admin-member")
	deadline := time.Now().Add(timeout)
	for m.count() < 30 {
		check(time.Now().Before(deadline), "the group member read %d of 30", m.count())
		time.Sleep(50 * time.Millisecond)
	}
	lg, err := c.ListGroups(ctxFor(timeout), &kafka.ListGroupsRequest{})
	must(err, "ListGroups")
	listed := false
	for _, g := range lg.Groups {
		listed = listed || (g.GroupID == group && g.ProtocolType == "consumer")
	}
	check(listed, "ListGroups: %+v", lg.Groups)
	as, state := assignments(c, group, topic)
	check(state == "Stable" && len(as["admin-member"]) == 2, "DescribeGroups: %s %v", state, as)
	ok("ListGroups, DescribeGroups (Stable, the member's 2 partitions)")
	offsets := committed(c, group, topic, 2)
	check(offsets[0] == ends[0] && offsets[1] == ends[1], "OffsetFetch: %v, log ends %v", offsets, ends)
	m.close()
	ok("OffsetFetch at the log end")

	adminMore(c, topic, group, ends)

	del, err := c.DeleteTopics(ctxFor(timeout), &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	must(err, "DeleteTopics")
	must(del.Errors[topic], "DeleteTopics "+topic)
	deadline = time.Now().Add(timeout)
	for {
		md, err := c.Metadata(ctxFor(10*time.Second), &kafka.MetadataRequest{})
		still := err != nil
		if err == nil {
			for _, t := range md.Topics {
				still = still || t.Name == topic
			}
		}
		if !still {
			break
		}
		check(time.Now().Before(deadline), "DeleteTopics: %s still listed (%v)", topic, err)
		time.Sleep(100 * time.Millisecond)
	}
	ok("DeleteTopics")
}

// adminMore: the Client calls beyond the basics, on topic (2 partitions whose log
// ends are ends; group committed at them, its member gone).
func adminMore(c *kafka.Client, topic, group string, ends map[int]int64) {
	ia, err := c.IncrementalAlterConfigs(ctxFor(timeout), &kafka.IncrementalAlterConfigsRequest{Resources: []kafka.IncrementalAlterConfigsRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: topic,
		Configs: []kafka.IncrementalAlterConfigsRequestConfig{{Name: "segment.bytes", Value: "20971520", ConfigOperation: kafka.ConfigOperationSet}},
	}}})
	must(err, "IncrementalAlterConfigs")
	check(len(ia.Resources) == 1 && ia.Resources[0].Error == nil, "IncrementalAlterConfigs: %+v", ia.Resources)
	cp, err := c.CreatePartitions(ctxFor(timeout), &kafka.CreatePartitionsRequest{Topics: []kafka.TopicPartitionsConfig{{Name: topic, Count: 3}}})
	must(err, "CreatePartitions")
	must(cp.Errors[topic], "CreatePartitions "+topic)
	deadline := time.Now().Add(timeout)
	for {
		md, err := c.Metadata(ctxFor(10*time.Second), &kafka.MetadataRequest{Topics: []string{topic}})
		if err == nil && len(md.Topics) == 1 && len(md.Topics[0].Partitions) == 3 {
			break
		}
		check(time.Now().Before(deadline), "CreatePartitions: still not 3 partitions")
		time.Sleep(100 * time.Millisecond)
	}
	ok("IncrementalAlterConfigs SET, CreatePartitions 2 -> 3")

	other := group + "-set"
	oc, err := c.OffsetCommit(ctxFor(timeout), &kafka.OffsetCommitRequest{GroupID: other, GenerationID: -1, Topics: map[string][]kafka.OffsetCommit{
		topic: {{Partition: 0, Offset: 1, Metadata: "set by kafka-go"}, {Partition: 1, Offset: 2}},
	}})
	must(err, "OffsetCommit")
	for _, p := range oc.Topics[topic] {
		must(p.Error, "OffsetCommit partition")
	}
	got := committed(c, other, topic, 3)
	check(got[0] == 1 && got[1] == 2 && got[2] == -1, "OffsetFetch after a commit without a member: %v", got)
	od, err := c.OffsetDelete(ctxFor(timeout), &kafka.OffsetDeleteRequest{GroupID: other, Topics: map[string][]int{topic: {0}}})
	must(err, "OffsetDelete")
	must(od.Error, "OffsetDelete")
	for _, p := range od.Topics[topic] {
		must(p.Error, "OffsetDelete partition")
	}
	got = committed(c, other, topic, 3)
	check(got[0] == -1 && got[1] == 2, "OffsetFetch after OffsetDelete: %v", got)
	dg, err := c.DeleteGroups(ctxFor(timeout), &kafka.DeleteGroupsRequest{GroupIDs: []string{other, group}})
	must(err, "DeleteGroups")
	must(dg.Errors[other], "DeleteGroups "+other)
	must(dg.Errors[group], "DeleteGroups "+group)
	lg, err := c.ListGroups(ctxFor(timeout), &kafka.ListGroupsRequest{})
	must(err, "ListGroups")
	for _, g := range lg.Groups {
		check(g.GroupID != other && g.GroupID != group, "DeleteGroups: %s still listed", g.GroupID)
	}
	ok("OffsetCommit without a member, OffsetDelete, DeleteGroups")
}

// connMode: the low-level Conn to a partition leader, which speaks its own (older)
// API versions: write with headers and times, read offsets first, last and by time,
// seek, read a batch, partitions and brokers.
func connMode(bootstrap, topic string) {
	c := client(bootstrap)
	createTopic(c, topic, 2)
	conn, err := kafka.DialLeader(ctxFor(timeout), "tcp", bootstrap, topic, 1)
	must(err, "DialLeader")
	defer func() { conn.Close() }()
	must(conn.SetDeadline(time.Now().Add(timeout)), "SetDeadline")
	versions, err := conn.ApiVersions()
	must(err, "ApiVersions")
	check(len(versions) > 10, "ApiVersions: %d APIs", len(versions))
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	var msgs []kafka.Message
	for i := range 20 {
		msgs = append(msgs, kafka.Message{Value: []byte(fmt.Sprint(i)), Time: base.Add(time.Duration(i) * time.Minute),
			Headers: []kafka.Header{{Key: "i", Value: []byte(fmt.Sprint(i))}}})
	}
	// Just after CreateTopics a broker may name a leader in Metadata before that
	// replica has taken over (Kafka does): retriable errors are retried, redialing.
	for deadline := time.Now().Add(timeout); ; {
		_, err = conn.WriteMessages(msgs[:10]...)
		var kerr kafka.Error
		if err == nil || !errors.As(err, &kerr) || !kerr.Temporary() || time.Now().After(deadline) {
			break
		}
		conn.Close()
		time.Sleep(100 * time.Millisecond)
		conn, err = kafka.DialLeader(ctxFor(timeout), "tcp", bootstrap, topic, 1)
		must(err, "DialLeader")
		must(conn.SetDeadline(time.Now().Add(timeout)), "SetDeadline")
	}
	must(err, "Conn.WriteMessages")
	_, err = conn.WriteCompressedMessages(kafka.Snappy.Codec(), msgs[10:]...)
	must(err, "Conn.WriteCompressedMessages")
	first, last, err := conn.ReadOffsets()
	must(err, "ReadOffsets")
	check(first == 0 && last == 20, "ReadOffsets: %d..%d", first, last)
	at, err := conn.ReadOffset(base.Add(12*time.Minute - time.Millisecond))
	must(err, "ReadOffset")
	check(at == 12, "ReadOffset by time: %d", at)
	ok("DialLeader, ApiVersions, WriteMessages and WriteCompressedMessages (snappy) with headers and times, ReadOffsets, ReadOffset by time")

	_, err = conn.Seek(5, kafka.SeekAbsolute)
	must(err, "Seek")
	batch := conn.ReadBatch(1, 1<<20)
	var read []kafka.Message
	for {
		m, err := batch.ReadMessage()
		if err != nil {
			break
		}
		read = append(read, m)
	}
	must(batch.Close(), "Batch.Close")
	check(len(read) > 0 && read[0].Offset == 5 && string(read[0].Value) == "5", "ReadBatch after Seek(5): %d messages, first %+v", len(read), read)
	m := read[0]
	check(m.Time.Equal(base.Add(5*time.Minute)) && len(m.Headers) == 1 && string(m.Headers[0].Value) == "5", "message 5 read back: time %v, headers %v", m.Time, m.Headers)
	for len(read) < 15 {
		m, err := conn.ReadMessage(1 << 20)
		must(err, "ReadMessage")
		read = append(read, m)
	}
	for i, m := range read {
		check(m.Offset == int64(5+i) && string(m.Value) == fmt.Sprint(5+i), "message %d read back as offset %d value %q", 5+i, m.Offset, m.Value)
	}
	ok("Seek, ReadBatch and ReadMessage across the uncompressed and the snappy batch, times and headers kept")

	parts, err := conn.ReadPartitions(topic)
	must(err, "ReadPartitions")
	check(len(parts) == 2, "ReadPartitions: %v", parts)
	brokers, err := conn.Brokers()
	must(err, "Brokers")
	controller, err := conn.Controller()
	must(err, "Controller")
	check(len(brokers) >= 1 && controller.ID == brokers[0].ID, "Brokers %v, Controller %v", brokers, controller)
	ok("ReadPartitions, Brokers, Controller")

	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{bootstrap}, Topic: topic, Partition: 1, MaxWait: 200 * time.Millisecond})
	defer r.Close()
	must(r.SetOffsetAt(ctxFor(timeout), base.Add(17*time.Minute)), "Reader.SetOffsetAt")
	rm, err := r.ReadMessage(ctxFor(timeout))
	must(err, "Reader.ReadMessage")
	check(rm.Offset == 17, "a Reader set at a time read offset %d first", rm.Offset)
	ok("Reader.SetOffsetAt")
}

// benchArgs parses bench's <records> <bytes>.
func benchArgs(args []string) (int, int) {
	check(len(args) == 2, "usage: kafkago bench <bootstrap> <topic> <records> <bytes>")
	n, err := strconv.Atoi(args[0])
	check(err == nil && n > 0, "bad record count %q", args[0])
	size, err := strconv.Atoi(args[1])
	check(err == nil && size > 0, "bad record size %q", args[1])
	return n, size
}

// benchLine is the one line benches/clients.sh reads: produce_s from the first record
// handed to the client until the last acknowledgement; consume_s from creating the
// group consumer (so the group join counts) until the last record arrived; first_s
// until the first record arrived.

// bench: kafka-go's defaults except what the check fixes (acks=all, one partition,
// reading from the first offset); the record values are all 'x'.
func bench(bootstrap, topic string, n, size int) {
	createTopic(client(bootstrap), topic, 1)

	value := make([]byte, size)
	for i := range value {
		value[i] = 'x'
	}
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		msgs[i] = kafka.Message{Value: value}
	}
	w := &kafka.Writer{Addr: kafka.TCP(bootstrap), Topic: topic, RequiredAcks: kafka.RequireAll}
	start := time.Now()
	must(w.WriteMessages(ctxFor(5*timeout), msgs...), "WriteMessages")
	produced := time.Since(start)
	must(w.Close(), "Writer.Close")

	start = time.Now()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{bootstrap}, GroupID: "bench-" + topic, Topic: topic, StartOffset: kafka.FirstOffset})
	ctx := ctxFor(5 * timeout)
	var first time.Duration
	var last kafka.Message
	for got := 0; got < n; got++ {
		m, err := r.FetchMessage(ctx)
		must(err, fmt.Sprintf("FetchMessage after %d of %d records", got, n))
		if got == 0 {
			first = time.Since(start)
		}
		last = m
	}
	must(r.CommitMessages(ctx, last), "CommitMessages")
	consumed := time.Since(start)
	must(r.Close(), "Reader.Close")
	benchLine("kafka-go", n, size, produced, first, consumed)
}

func main() {
	if len(os.Args) == 6 && os.Args[1] == "bench" {
		n, size := benchArgs(os.Args[4:])
		bench(os.Args[2], os.Args[3], n, size)
		return
	}
	if len(os.Args) != 4 {
		fail("usage: kafkago <produce-consume|group|admin|conn> <bootstrap> <topic> | kafkago bench <bootstrap> <topic> <records> <bytes>")
	}
	mode, bootstrap, topic := os.Args[1], os.Args[2], os.Args[3]
	switch mode {
	case "produce-consume":
		produceConsume(bootstrap, topic)
	case "group":
		groupMode(bootstrap, topic)
	case "admin":
		adminMode(bootstrap, topic)
	case "conn":
		connMode(bootstrap, topic)
	default:
		fail("unknown mode %s", mode)
	}
}
