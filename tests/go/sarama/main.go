// sarama: the current IBM sarama (v1.61) against a broker, run by
// tests/tests/sarama_current.rs against Karst and against Apache Kafka. Debian's
// sarama 1.22 programs under tests/sarama/ stay as they are; this one is a Go module.
//
//	sarama <produce-consume|group|admin|offsets|txn> <bootstrap> <topic>
//	sarama bench <bootstrap> <topic> <records> <bytes>
//	sarama secure <scram-addr> <oauth-addr> <mtls-addr> <topic> <user> <password> <ca> <token> <bad-token> <cert> <key>   (secure.go)
//
// Modes:
//
//	produce-consume  a SyncProducer with sarama's default Version (2.8) and one with
//	                 the newest Version sarama knows, each idempotent with acks=all and
//	                 with each codec; consumers of both versions read every record back
//	group            two ConsumerGroup members (range, eager): the first alone takes
//	                 all four partitions and commits, the second joining rebalances to
//	                 2 + 2, every record is read once across the group and the committed
//	                 offsets reach the log end, and the second leaving gives the first
//	                 all four back; then the same with cooperative-sticky
//	admin            ClusterAdmin: create topic, list and describe topics, describe
//	                 cluster, describe and alter configs, create partitions, list and
//	                 describe groups, list group offsets, delete records, delete group,
//	                 delete topic
//	offsets          an AsyncProducer with headers and set timestamps, GetOffset by
//	                 time, a PartitionConsumer from the middle, an OffsetManager
//	                 committing with metadata, a static member (InstanceId)
//	txn              transactions (txn.go), with sarama's default Version and the
//	                 newest: a transactional SyncProducer (Transaction.ID, idempotent,
//	                 one request in flight, acks=all) commits 40 records, aborts 40 and
//	                 commits 40 in a 1-partition topic; end offset and last stable
//	                 offset 123 (three markers); a read_committed consumer reads exactly
//	                 the 80 committed in order, a read_uncommitted one all 120; an open
//	                 transaction moves the end offset but not the last stable offset;
//	                 then a ConsumerGroup reads 60 messages of a 2-partition topic and
//	                 writes each upper-cased to an output topic in its own transaction
//	                 with AddMessageToTxnWithGroupMetadata: the output holds each input
//	                 once and the group's committed offsets equal the input's end
//	bench            benches/clients.sh's rate check: creates topic (one partition), an
//	                 AsyncProducer at sarama's defaults but acks=all (sarama's default
//	                 is the leader only; not idempotent, no flush thresholds, 5
//	                 requests in flight) sends the records, then a fresh ConsumerGroup
//	                 reads them from the oldest offset; prints one "BENCH ..." line
//
// Prints "OK <step>" per step and exits 0, or "FAIL <why>" and exits 1. Every wait is
// bounded.
package main

import (
	"context"
	"errors"
	"fmt"
	"karsttests/common"
	"log"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// The shared line protocol and helpers (tests/go/common).
var (
	fail      = common.Fail
	ok        = common.OK
	check     = common.Check
	must      = common.Must
	benchLine = common.BenchLine
)

const timeout = 60 * time.Second

// config is sarama's defaults with version (nil: sarama's default Version).
func config(version *sarama.KafkaVersion) *sarama.Config {
	c := sarama.NewConfig()
	if version != nil {
		c.Version = *version
	}
	c.ClientID = "karst-tests-sarama"
	c.Metadata.Retry.Max = 20
	c.Metadata.Retry.Backoff = 250 * time.Millisecond
	c.Producer.Return.Successes = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Retry.Max = 10
	c.Producer.Retry.Backoff = 250 * time.Millisecond
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	c.Consumer.Return.Errors = true
	return c
}

func admin(bootstrap string, version *sarama.KafkaVersion) sarama.ClusterAdmin {
	a, err := sarama.NewClusterAdmin([]string{bootstrap}, config(version))
	must(err, "NewClusterAdmin")
	return a
}

// createTopic creates topic and waits until every partition has a leader: metadata
// can lag CreateTopics by a moment, on any broker.
func createTopic(a sarama.ClusterAdmin, topic string, partitions int32) {
	must(a.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: 1}, false), "CreateTopic")
	deadline := time.Now().Add(timeout)
	for {
		md, err := a.DescribeTopics([]string{topic})
		if err == nil && len(md) == 1 && md[0].Err == sarama.ErrNoError && len(md[0].Partitions) == int(partitions) {
			ready := true
			for _, p := range md[0].Partitions {
				ready = ready && p.Leader >= 0
			}
			if ready {
				return
			}
		}
		check(time.Now().Before(deadline), "no leaders for %s (%v)", topic, err)
		time.Sleep(100 * time.Millisecond)
	}
}

// send produces n records keyed "key-<i mod 7>" with values "<prefix>-<i>" through a
// SyncProducer and returns the values.
func send(bootstrap string, c *sarama.Config, topic string, n int, prefix string) []string {
	p, err := sarama.NewSyncProducer([]string{bootstrap}, c)
	must(err, "NewSyncProducer")
	defer p.Close()
	msgs := make([]*sarama.ProducerMessage, n)
	values := make([]string, n)
	for i := range n {
		values[i] = fmt.Sprintf("%s-%d", prefix, i)
		msgs[i] = &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(fmt.Sprintf("key-%d", i%7)), Value: sarama.StringEncoder(values[i])}
	}
	must(p.SendMessages(msgs), "SendMessages")
	for _, m := range msgs {
		check(m.Offset >= 0, "no offset for %v", m.Value)
	}
	return values
}

type got struct {
	partition int32
	offset    int64
	key       string
	value     string
}

// readAll reads every partition of topic from the oldest offset until want records
// arrived (or fails).
func readAll(bootstrap string, version *sarama.KafkaVersion, topic string, want int) []got {
	c, err := sarama.NewConsumer([]string{bootstrap}, config(version))
	must(err, "NewConsumer")
	defer c.Close()
	parts, err := c.Partitions(topic)
	must(err, "Partitions")
	out := make(chan got, want)
	for _, p := range parts {
		pc, err := c.ConsumePartition(topic, p, sarama.OffsetOldest)
		must(err, "ConsumePartition")
		defer pc.Close()
		go func() {
			for m := range pc.Messages() {
				out <- got{m.Partition, m.Offset, string(m.Key), string(m.Value)}
			}
		}()
	}
	var all []got
	deadline := time.After(timeout)
	for len(all) < want {
		select {
		case g := <-out:
			all = append(all, g)
		case <-deadline:
			fail("consumed %d of %d", len(all), want)
		}
	}
	return all
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

func versionName(v *sarama.KafkaVersion) string {
	if v == nil {
		return "default Version " + sarama.DefaultVersion.String()
	}
	return "Version " + v.String()
}

func produceConsume(bootstrap, topic string) {
	recent := sarama.MaxVersion
	a := admin(bootstrap, &recent)
	defer a.Close()
	createTopic(a, topic, 3)
	var sent []string
	for _, v := range []*sarama.KafkaVersion{nil, &recent} {
		for _, codec := range []sarama.CompressionCodec{sarama.CompressionNone, sarama.CompressionGZIP, sarama.CompressionSnappy, sarama.CompressionLZ4, sarama.CompressionZSTD} {
			c := config(v)
			c.Producer.Idempotent = true
			c.Net.MaxOpenRequests = 1
			c.Producer.Compression = codec
			sent = append(sent, send(bootstrap, c, topic, 40, fmt.Sprintf("%s-%s", c.Version, codec))...)
		}
		ok("idempotent SyncProducer, acks=all, %s: 200 records acknowledged (none, gzip, snappy, lz4, zstd)", versionName(v))
	}
	for _, v := range []*sarama.KafkaVersion{nil, &recent} {
		all := readAll(bootstrap, v, topic, len(sent))
		check(sameSet(all, sent), "consumer (%s) read %d records, not the %d sent once each", versionName(v), len(all), len(sent))
		byKey := map[string][]got{}
		for _, g := range all {
			byKey[g.key] = append(byKey[g.key], g)
		}
		for k, gs := range byKey {
			sort.Slice(gs, func(i, j int) bool { return gs[i].offset < gs[j].offset })
			for i := 1; i < len(gs); i++ {
				check(gs[i].partition == gs[0].partition, "key %s on partitions %d and %d", k, gs[0].partition, gs[i].partition)
			}
		}
		ok("consumer with %s read all %d, one partition per key", versionName(v), len(sent))
	}
}

// member is one ConsumerGroup member: its claims (from Setup/Cleanup) and records.
type member struct {
	name     string
	topic    string
	group    sarama.ConsumerGroup
	mu       sync.Mutex
	claims   []int32
	sessions int
	read     []got
	cancel   context.CancelFunc
	done     chan struct{}
}

func (m *member) Setup(s sarama.ConsumerGroupSession) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sessions++
	return nil
}

func (m *member) Cleanup(s sarama.ConsumerGroupSession) error { return nil }

// ConsumeClaim runs while the member owns the partition: under an eager strategy
// until the session ends, under a cooperative one until the partition is revoked
// (Setup and Cleanup then run only when the member joins and leaves), so the
// member's claims are tracked here.
func (m *member) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	m.setClaim(claim.Partition(), true)
	defer m.setClaim(claim.Partition(), false)
	for msg := range claim.Messages() {
		m.mu.Lock()
		m.read = append(m.read, got{msg.Partition, msg.Offset, string(msg.Key), string(msg.Value)})
		m.mu.Unlock()
		s.MarkMessage(msg, "")
		if len(claim.Messages()) == 0 {
			s.Commit()
		}
	}
	// Marked offsets are committed before the partition goes to another member.
	s.Commit()
	return nil
}

func (m *member) setClaim(p int32, owned bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var claims []int32
	for _, c := range m.claims {
		if c != p {
			claims = append(claims, c)
		}
	}
	if owned {
		claims = append(claims, p)
	}
	sort.Slice(claims, func(i, j int) bool { return claims[i] < claims[j] })
	m.claims = claims
}

func (m *member) state() ([]int32, int, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]int32(nil), m.claims...), len(m.read), m.sessions
}

func startMember(bootstrap, group, topic, name string, strategy sarama.BalanceStrategy) *member {
	recent := sarama.MaxVersion
	c := config(&recent)
	c.ClientID = name
	c.Consumer.Offsets.AutoCommit.Enable = false
	c.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{strategy}
	g, err := sarama.NewConsumerGroup([]string{bootstrap}, group, c)
	must(err, "NewConsumerGroup")
	ctx, cancel := context.WithCancel(context.Background())
	m := &member{name: name, topic: topic, group: g, cancel: cancel, done: make(chan struct{})}
	go func() {
		for err := range g.Errors() {
			fmt.Printf("%s: error %v\n", name, err)
		}
	}()
	go func() {
		defer close(m.done)
		// Consume returns at the end of each session (a rebalance); the loop rejoins.
		for ctx.Err() == nil {
			if err := g.Consume(ctx, []string{topic}, m); err != nil && ctx.Err() == nil {
				fmt.Printf("%s: Consume: %v\n", name, err)
				time.Sleep(100 * time.Millisecond)
			}
		}
	}()
	return m
}

func (m *member) stop() {
	m.cancel()
	select {
	case <-m.done:
	case <-time.After(timeout):
		fail("%s did not stop", m.name)
	}
	must(m.group.Close(), m.name+": Close")
}

func groupScenario(bootstrap, topic string, strategy sarama.BalanceStrategy) {
	recent := sarama.MaxVersion
	a := admin(bootstrap, &recent)
	defer a.Close()
	createTopic(a, topic, 4)
	c := config(&recent)
	sent := send(bootstrap, c, topic, 200, "g1")
	group := topic + "-group"
	name := strategy.Name()

	ma := startMember(bootstrap, group, topic, "member-a", strategy)
	deadline := time.Now().Add(timeout)
	for {
		claims, n, _ := ma.state()
		if len(claims) == 4 && n >= len(sent) {
			break
		}
		check(time.Now().Before(deadline), "%s: the first member: claims %v, %d of %d read", name, claims, n, len(sent))
		time.Sleep(50 * time.Millisecond)
	}
	// Everything read is committed before the second member comes.
	deadline = time.Now().Add(timeout)
	for !committedAtEnd(bootstrap, a, group, topic, 4, len(sent)) {
		check(time.Now().Before(deadline), "%s: the first member's commits never reached the log end", name)
		time.Sleep(100 * time.Millisecond)
	}
	ok("%s: first member alone: 4 partitions, %d records read and committed", name, len(sent))

	mb := startMember(bootstrap, group, topic, "member-b", strategy)
	deadline = time.Now().Add(timeout)
	for {
		ca, _, _ := ma.state()
		cb, _, _ := mb.state()
		if len(ca) == 2 && len(cb) == 2 {
			ok("%s: second member joined: A %v, B %v", name, ca, cb)
			break
		}
		check(time.Now().Before(deadline), "%s: after the second member joined: A %v, B %v", name, ca, cb)
		time.Sleep(50 * time.Millisecond)
	}

	sent = append(sent, send(bootstrap, c, topic, 200, "g2")...)
	deadline = time.Now().Add(timeout)
	for {
		_, na, _ := ma.state()
		_, nb, _ := mb.state()
		if na+nb >= len(sent) {
			break
		}
		check(time.Now().Before(deadline), "%s: after the rebalance: %d of %d read", name, na+nb, len(sent))
		time.Sleep(50 * time.Millisecond)
	}
	deadline = time.Now().Add(timeout)
	for !committedAtEnd(bootstrap, a, group, topic, 4, -1) {
		check(time.Now().Before(deadline), "%s: the group's commits never reached the log end", name)
		time.Sleep(100 * time.Millisecond)
	}
	ma.mu.Lock()
	mb.mu.Lock()
	all := append(append([]got(nil), ma.read...), mb.read...)
	for _, m := range []*member{ma, mb} {
		mine := map[int32]bool{}
		for _, p := range m.claims {
			mine[p] = true
		}
		after := 0
		for _, g := range m.read {
			if strings.HasPrefix(g.value, "g2-") {
				check(mine[g.partition], "%s: %s read %s from partition %d, not its own %v", name, m.name, g.value, g.partition, m.claims)
				after++
			}
		}
		check(after > 0, "%s: %s read nothing after the rebalance", name, m.name)
	}
	ma.mu.Unlock()
	mb.mu.Unlock()
	check(sameSet(all, sent), "%s: the group read %d records, not the %d sent once each", name, len(all), len(sent))
	ok("%s: all %d read once across the group, each member from its own partitions, commits at the log end", name, len(sent))

	// The second member leaves (LeaveGroup on Close): the first takes all four back.
	mb.stop()
	sent = append(sent, send(bootstrap, c, topic, 100, "g3")...)
	deadline = time.Now().Add(timeout)
	for {
		claims, na, _ := ma.state()
		_, nb, _ := mb.state()
		if len(claims) == 4 && na+nb >= len(sent) {
			break
		}
		check(time.Now().Before(deadline), "%s: after the second member left: A %v, %d of %d read", name, claims, na+nb, len(sent))
		time.Sleep(50 * time.Millisecond)
	}
	ma.mu.Lock()
	all = append(append([]got(nil), ma.read...), mb.read...)
	ma.mu.Unlock()
	check(sameSet(all, sent), "%s: after the second member left, the group read %d records, not the %d sent once each", name, len(all), len(sent))
	ok("%s: second member left: the first has all 4 partitions again and read the next 100, each record once", name)
	ma.stop()
}

// committedAtEnd: the group's committed offset of every partition is its log end
// (and, if total >= 0, the ends add up to total).
func committedAtEnd(bootstrap string, a sarama.ClusterAdmin, group, topic string, partitions int32, total int) bool {
	client, err := sarama.NewClient([]string{bootstrap}, config(nil))
	if err != nil {
		return false
	}
	defer client.Close()
	var ps []int32
	for p := range partitions {
		ps = append(ps, p)
	}
	offsets, err := a.ListConsumerGroupOffsets(group, map[string][]int32{topic: ps})
	if err != nil {
		return false
	}
	sum := int64(0)
	for p := int32(0); p < partitions; p++ {
		end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return false
		}
		b := offsets.GetBlock(topic, p)
		if b == nil || b.Err != sarama.ErrNoError || b.Offset != end {
			return false
		}
		sum += end
	}
	return total < 0 || sum == int64(total)
}

func adminMode(bootstrap, topic string) {
	recent := sarama.MaxVersion
	a := admin(bootstrap, &recent)
	defer a.Close()
	retention := "3600000"
	must(a.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1, ConfigEntries: map[string]*string{"retention.ms": &retention}}, false), "CreateTopic")
	err := a.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1}, false)
	check(errors.Is(err, sarama.ErrTopicAlreadyExists), "creating %s again: %v", topic, err)
	deadline := time.Now().Add(timeout)
	for {
		topics, err := a.ListTopics()
		if err == nil && topics[topic].NumPartitions == 2 {
			check(topics[topic].ConfigEntries["retention.ms"] != nil && *topics[topic].ConfigEntries["retention.ms"] == retention, "ListTopics: retention.ms of %s is %v", topic, topics[topic].ConfigEntries["retention.ms"])
			break
		}
		check(time.Now().Before(deadline), "ListTopics misses %s (%v)", topic, err)
		time.Sleep(100 * time.Millisecond)
	}
	md, err := a.DescribeTopics([]string{topic})
	must(err, "DescribeTopics")
	check(len(md) == 1 && len(md[0].Partitions) == 2, "DescribeTopics: %v", md)
	brokers, controller, err := a.DescribeCluster()
	must(err, "DescribeCluster")
	check(len(brokers) >= 1 && controller >= 0, "DescribeCluster: %d brokers, controller %d", len(brokers), controller)
	ok("CreateTopic (again: TOPIC_ALREADY_EXISTS), ListTopics with configs, DescribeTopics, DescribeCluster")

	res := sarama.ConfigResource{Type: sarama.TopicResource, Name: topic}
	entries, err := a.DescribeConfig(res)
	must(err, "DescribeConfig")
	found := false
	for _, e := range entries {
		if e.Name == "retention.ms" {
			found = true
			check(e.Value == retention && e.Source == sarama.SourceTopic, "retention.ms = %q from %v", e.Value, e.Source)
		}
	}
	check(found, "DescribeConfig has no retention.ms")
	seg := "10485760"
	must(a.IncrementalAlterConfig(sarama.TopicResource, topic, map[string]sarama.IncrementalAlterConfigsEntry{
		"segment.bytes": {Operation: sarama.IncrementalAlterConfigsOperationSet, Value: &seg},
	}, false), "IncrementalAlterConfig")
	// A broker applies a config change once the controller's record reaches it (Kafka
	// too): DescribeConfig may show the old value for a moment.
	deadline = time.Now().Add(timeout)
	for {
		entries, err = a.DescribeConfig(res)
		must(err, "DescribeConfig")
		values := map[string]string{}
		for _, e := range entries {
			values[e.Name] = e.Value
		}
		if values["segment.bytes"] == seg {
			check(values["retention.ms"] == retention, "retention.ms lost by an incremental SET of another key: %q", values["retention.ms"])
			break
		}
		check(time.Now().Before(deadline), "segment.bytes after SET: %q", values["segment.bytes"])
		time.Sleep(100 * time.Millisecond)
	}
	ok("DescribeConfig (value and source), IncrementalAlterConfig SET")

	must(a.CreatePartitions(topic, 3, nil, false), "CreatePartitions")
	deadline = time.Now().Add(timeout)
	for {
		md, err := a.DescribeTopics([]string{topic})
		if err == nil && len(md) == 1 && len(md[0].Partitions) == 3 {
			break
		}
		check(time.Now().Before(deadline), "CreatePartitions: still not 3 partitions")
		time.Sleep(100 * time.Millisecond)
	}
	ok("CreatePartitions 2 -> 3")

	c := config(&recent)
	c.Producer.Partitioner = sarama.NewManualPartitioner
	p, err := sarama.NewSyncProducer([]string{bootstrap}, c)
	must(err, "NewSyncProducer")
	for i := range 30 {
		_, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Partition: int32(i % 3), Value: sarama.StringEncoder(fmt.Sprint(i))})
		must(err, "SendMessage")
	}
	p.Close()
	must(a.DeleteRecords(topic, map[int32]int64{0: 5}), "DeleteRecords")
	client, err := sarama.NewClient([]string{bootstrap}, config(&recent))
	must(err, "NewClient")
	earliest, err := client.GetOffset(topic, 0, sarama.OffsetOldest)
	must(err, "GetOffset")
	check(earliest == 5, "earliest offset of partition 0 after DeleteRecords: %d", earliest)
	ok("DeleteRecords, GetOffset oldest")

	group := topic + "-admin-group"
	m := startMember(bootstrap, group, topic, "admin-member", sarama.NewBalanceStrategyRange())
	deadline = time.Now().Add(timeout)
	for {
		claims, n, _ := m.state()
		if len(claims) == 3 && n >= 25 {
			break
		}
		check(time.Now().Before(deadline), "the group member: claims %v, %d of 25 read", claims, n)
		time.Sleep(50 * time.Millisecond)
	}
	groups, err := a.ListConsumerGroups()
	must(err, "ListConsumerGroups")
	check(groups[group] == "consumer", "ListConsumerGroups: %v", groups)
	desc, err := a.DescribeConsumerGroups([]string{group})
	must(err, "DescribeConsumerGroups")
	check(len(desc) == 1 && desc[0].State == "Stable" && len(desc[0].Members) == 1 && desc[0].Protocol == "range", "DescribeConsumerGroups: %+v", desc[0])
	ok("ListConsumerGroups, DescribeConsumerGroups (Stable, one member, range)")
	m.stop()
	deadline = time.Now().Add(timeout)
	for !committedAtEnd(bootstrap, a, group, topic, 3, 30) {
		check(time.Now().Before(deadline), "ListConsumerGroupOffsets: the commits are not at the log end")
		time.Sleep(100 * time.Millisecond)
	}
	desc, err = a.DescribeConsumerGroups([]string{group})
	must(err, "DescribeConsumerGroups")
	check(desc[0].State == "Empty", "after the member left: %s", desc[0].State)
	must(a.DeleteConsumerGroup(group), "DeleteConsumerGroup")
	groups, err = a.ListConsumerGroups()
	must(err, "ListConsumerGroups")
	_, still := groups[group]
	check(!still, "DeleteConsumerGroup: still listed")
	ok("ListConsumerGroupOffsets at the log end, the group Empty after Close, DeleteConsumerGroup")
	client.Close()

	must(a.DeleteTopic(topic), "DeleteTopic")
	deadline = time.Now().Add(timeout)
	for {
		topics, err := a.ListTopics()
		if _, exists := topics[topic]; err == nil && !exists {
			break
		}
		check(time.Now().Before(deadline), "DeleteTopic: %s still listed", topic)
		time.Sleep(100 * time.Millisecond)
	}
	ok("DeleteTopic")
}

// offsetsMode: an AsyncProducer writing records with headers and set timestamps,
// GetOffset by time, a PartitionConsumer from the middle reading them back, an
// OffsetManager committing and reading offsets with metadata, and a static group
// member (Consumer.Group.InstanceId) coming back to the same partitions.
func offsetsMode(bootstrap, topic string) {
	recent := sarama.MaxVersion
	a := admin(bootstrap, &recent)
	defer a.Close()
	createTopic(a, topic, 2)

	c := config(&recent)
	c.Producer.Partitioner = sarama.NewManualPartitioner
	c.Producer.Return.Errors = true
	p, err := sarama.NewAsyncProducer([]string{bootstrap}, c)
	must(err, "NewAsyncProducer")
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	for i := range 20 {
		p.Input() <- &sarama.ProducerMessage{Topic: topic, Partition: 0, Value: sarama.StringEncoder(fmt.Sprint(i)), Timestamp: base.Add(time.Duration(i) * time.Minute),
			Headers: []sarama.RecordHeader{{Key: []byte("i"), Value: []byte(fmt.Sprint(i))}}}
	}
	for range 20 {
		select {
		case <-p.Successes():
		case e := <-p.Errors():
			fail("AsyncProducer: %v", e.Err)
		case <-time.After(timeout):
			fail("AsyncProducer: no acknowledgement")
		}
	}
	must(p.Close(), "AsyncProducer.Close")
	client, err := sarama.NewClient([]string{bootstrap}, config(&recent))
	must(err, "NewClient")
	defer client.Close()
	at, err := client.GetOffset(topic, 0, base.Add(12*time.Minute-time.Millisecond).UnixMilli())
	must(err, "GetOffset by time")
	check(at == 12, "GetOffset by time: %d", at)
	ok("AsyncProducer with headers and set timestamps, GetOffset by time")

	consumer, err := sarama.NewConsumerFromClient(client)
	must(err, "NewConsumerFromClient")
	pc, err := consumer.ConsumePartition(topic, 0, 12)
	must(err, "ConsumePartition")
	select {
	case m := <-pc.Messages():
		check(m.Offset == 12 && string(m.Value) == "12" && m.Timestamp.Equal(base.Add(12*time.Minute)) && len(m.Headers) == 1 && string(m.Headers[0].Value) == "12",
			"message 12 read back as offset %d value %q time %v headers %v", m.Offset, m.Value, m.Timestamp, m.Headers)
	case <-time.After(timeout):
		fail("PartitionConsumer from 12: nothing")
	}
	must(pc.Close(), "PartitionConsumer.Close")
	must(consumer.Close(), "Consumer.Close")
	ok("PartitionConsumer from the middle: offset, value, timestamp and headers kept")

	group := topic + "-offsets"
	om, err := sarama.NewOffsetManagerFromClient(group, client)
	must(err, "NewOffsetManagerFromClient")
	pom, err := om.ManagePartition(topic, 0)
	must(err, "ManagePartition")
	next, _ := pom.NextOffset()
	check(next == sarama.OffsetOldest, "NextOffset of a group without commits: %d", next)
	pom.MarkOffset(7, "seven")
	om.Commit()
	must(pom.Close(), "PartitionOffsetManager.Close")
	must(om.Close(), "OffsetManager.Close")
	offsets, err := a.ListConsumerGroupOffsets(group, map[string][]int32{topic: {0, 1}})
	must(err, "ListConsumerGroupOffsets")
	b0, b1 := offsets.GetBlock(topic, 0), offsets.GetBlock(topic, 1)
	check(b0 != nil && b0.Offset == 7 && b0.Metadata == "seven" && b1 != nil && b1.Offset == -1, "ListConsumerGroupOffsets: %+v %+v", b0, b1)
	om, err = sarama.NewOffsetManagerFromClient(group, client)
	must(err, "NewOffsetManagerFromClient")
	pom, err = om.ManagePartition(topic, 0)
	must(err, "ManagePartition")
	next, meta := pom.NextOffset()
	check(next == 7 && meta == "seven", "NextOffset after the commit: %d %q", next, meta)
	must(pom.Close(), "PartitionOffsetManager.Close")
	must(om.Close(), "OffsetManager.Close")
	ok("OffsetManager: MarkOffset with metadata, Commit, NextOffset in a new manager")

	// A static member leaves no gap: its successor with the same instance id gets the
	// same partitions back.
	static := func() *member {
		sc := config(&recent)
		sc.ClientID = "static"
		sc.Consumer.Offsets.AutoCommit.Enable = false
		sc.Consumer.Group.InstanceId = "static-1"
		sc.Consumer.Group.Session.Timeout = 30 * time.Second
		g, err := sarama.NewConsumerGroup([]string{bootstrap}, group+"-static", sc)
		must(err, "NewConsumerGroup (static)")
		ctx, cancel := context.WithCancel(context.Background())
		m := &member{name: "static", topic: topic, group: g, cancel: cancel, done: make(chan struct{})}
		go func() {
			defer close(m.done)
			for ctx.Err() == nil {
				if err := g.Consume(ctx, []string{topic}, m); err != nil && ctx.Err() == nil {
					fmt.Printf("static: Consume: %v\n", err)
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
		return m
	}
	waitClaims := func(m *member, what string) {
		deadline := time.Now().Add(timeout)
		for {
			claims, _, _ := m.state()
			if len(claims) == 2 {
				return
			}
			check(time.Now().Before(deadline), "%s: claims %v", what, claims)
			time.Sleep(50 * time.Millisecond)
		}
	}
	first := static()
	waitClaims(first, "the static member")
	desc, err := a.DescribeConsumerGroups([]string{group + "-static"})
	must(err, "DescribeConsumerGroups")
	check(len(desc) == 1 && len(desc[0].Members) == 1, "DescribeConsumerGroups: %+v", desc)
	var instance string
	for _, m := range desc[0].Members {
		if m.GroupInstanceId != nil {
			instance = *m.GroupInstanceId
		}
	}
	check(instance == "static-1", "DescribeConsumerGroups: the member's instance id is %q", instance)
	first.stop()
	second := static()
	waitClaims(second, "the static member's successor")
	second.stop()
	ok("a static member (InstanceId) described with its instance id; its successor gets both partitions")
}

// benchArgs parses bench's <records> <bytes>.
func benchArgs(args []string) (int, int) {
	check(len(args) == 2, "usage: sarama bench <bootstrap> <topic> <records> <bytes>")
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

// benchCounter counts what a ConsumerGroup session delivers and marks it consumed.
type benchCounter struct {
	got  chan int
	done context.Context
}

func (b *benchCounter) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (b *benchCounter) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (b *benchCounter) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for {
		select {
		case m, open := <-claim.Messages():
			if !open {
				return nil
			}
			s.MarkMessage(m, "")
			b.got <- 1
		case <-b.done.Done():
			return nil
		}
	}
}

// bench: sarama's defaults except what the check fixes (acks=all, one partition,
// reading from the oldest offset); the record values are all 'x'.
func bench(bootstrap, topic string, n, size int) {
	a := admin(bootstrap, nil)
	createTopic(a, topic, 1)
	must(a.Close(), "ClusterAdmin.Close")

	value := make([]byte, size)
	for i := range value {
		value[i] = 'x'
	}
	p, err := sarama.NewAsyncProducer([]string{bootstrap}, config(nil))
	must(err, "NewAsyncProducer")
	start := time.Now()
	go func() {
		for range n {
			p.Input() <- &sarama.ProducerMessage{Topic: topic, Value: sarama.ByteEncoder(value)}
		}
	}()
	deadline := time.After(5 * timeout)
	for acked := 0; acked < n; {
		select {
		case <-p.Successes():
			acked++
		case e := <-p.Errors():
			fail("AsyncProducer: %v", e.Err)
		case <-deadline:
			fail("acknowledged %d of %d records", acked, n)
		}
	}
	produced := time.Since(start)
	must(p.Close(), "AsyncProducer.Close")

	start = time.Now()
	g, err := sarama.NewConsumerGroup([]string{bootstrap}, "bench-"+topic, config(nil))
	must(err, "NewConsumerGroup")
	ctx, stop := context.WithCancel(context.Background())
	counter := &benchCounter{got: make(chan int, 1024), done: ctx}
	go func() {
		for ctx.Err() == nil {
			if err := g.Consume(ctx, []string{topic}, counter); err != nil && ctx.Err() == nil {
				fail("ConsumerGroup.Consume: %v", err)
			}
		}
	}()
	var first time.Duration
	for got := 0; got < n; {
		select {
		case <-counter.got:
			if got == 0 {
				first = time.Since(start)
			}
			got++
		case err := <-g.Errors():
			fail("ConsumerGroup: %v", err)
		case <-deadline:
			fail("consumed %d of %d records", got, n)
		}
	}
	consumed := time.Since(start)
	stop()
	must(g.Close(), "ConsumerGroup.Close")
	benchLine("sarama", n, size, produced, first, consumed)
}

func main() {
	if len(os.Args) == 13 && os.Args[1] == "secure" {
		secureMode(os.Args[2:])
		return
	}
	if len(os.Args) == 6 && os.Args[1] == "bench" {
		n, size := benchArgs(os.Args[4:])
		bench(os.Args[2], os.Args[3], n, size)
		return
	}
	if len(os.Args) != 4 {
		fail("usage: sarama <produce-consume|group|admin|offsets|txn> <bootstrap> <topic> | sarama bench <bootstrap> <topic> <records> <bytes>")
	}
	if os.Getenv("SARAMA_LOG") != "" {
		sarama.Logger = log.New(os.Stderr, "[sarama] ", log.Lmicroseconds)
	}
	mode, bootstrap, topic := os.Args[1], os.Args[2], os.Args[3]
	switch mode {
	case "produce-consume":
		produceConsume(bootstrap, topic)
	case "group":
		groupScenario(bootstrap, topic, sarama.NewBalanceStrategyRange())
		groupScenario(bootstrap, topic+"-coop", sarama.NewBalanceStrategyCooperativeSticky())
	case "admin":
		adminMode(bootstrap, topic)
	case "offsets":
		offsetsMode(bootstrap, topic)
	case "txn":
		txnMode(bootstrap, topic)
	default:
		fail("unknown mode %s", mode)
	}
}
