// franz: franz-go (kgo, and kadm for admin) against a broker, run by
// tests/tests/go_clients.rs against Karst and against Apache Kafka:
//
//	franz <produce-consume|group|group848|admin|txn> <bootstrap> <topic>
//	franz bench <bootstrap> <topic> <records> <bytes>
//	franz eos-pipeline <bootstrap> <input> <output> <group> <worker>   (eos.go)
//	franz secure <bootstrap> <topic> <user> <password> <ca-file>       (secure.go)
//	franz oauth <bootstrap> <topic> <token> <bad-token> <ca-file>      (secure.go)
//	franz mtls <bootstrap> <topic> <ca-file> <cert-file> <key-file>    (secure.go)
//
// Modes:
//
//	produce-consume  kgo's default producer (idempotent, acks=all) and one with acks=1
//	                 and no idempotence, each codec; a direct consumer reads every record
//	                 back in per-key order; a group member reads and commits, and a new
//	                 member of the group resumes after the commit; then 20000 records
//	                 in small idempotent batches five in flight, acks=0, a 900 kB
//	                 record, and a consumer whose fetch limit is below its size
//	group            two members of one group (kgo's default cooperative-sticky
//	                 balancer): the first alone takes all four partitions and commits,
//	                 the second joining rebalances to 2 + 2, every record is read once
//	                 across the group and the committed offsets reach the log end;
//	                 the second leaving gives the first all four back; ListGroups
//	                 says "classic"
//	group848         the same with KIP-848's consumer protocol (ServerSideBalancer: the
//	                 broker assigns with "uniform"); ListGroups says "consumer"
//	admin            kadm: create topic, list topics, metadata, describe configs, list
//	                 start/end offsets, list and describe groups, fetch offsets, lag,
//	                 alter configs, brokers and their configs, create partitions,
//	                 offsets by time and max timestamp (records with headers and set
//	                 timestamps), delete records, commit and delete offsets, delete
//	                 group, delete topic
//	txn              transactions (txn.go): a transactional producer commits 50 records,
//	                 aborts 50 and commits 50 more in a 1-partition topic; the log end
//	                 offset and the last stable offset are 153 (three markers); a
//	                 read_committed consumer reads exactly the 100 committed records in
//	                 order, a read_uncommitted one all 150; an open transaction's records
//	                 move the end offset but not the last stable offset and are not read
//	                 read_committed until the commit; then a GroupTransactSession reads
//	                 300 records of a 2-partition input topic as a group (read_committed,
//	                 stable offsets), writes them upper-cased to an output topic and
//	                 commits its offsets in each transaction: the output holds each input
//	                 once and the group's committed offsets equal the input's end offsets
//	bench            benches/clients.sh's rate check: creates topic (one partition), kgo's
//	                 default producer (idempotent, acks=all, 10 ms linger) sends the
//	                 records, then a fresh consumer group reads them from the start;
//	                 prints one "BENCH ..." line of key=value pairs (benchLine)
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
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
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

func client(bootstrap string, opts ...kgo.Opt) *kgo.Client {
	all := append([]kgo.Opt{
		kgo.SeedBrokers(bootstrap),
		kgo.ClientID("karst-tests-franz"),
		kgo.RetryTimeout(timeout),
	}, opts...)
	cl, err := kgo.NewClient(all...)
	must(err, "kgo.NewClient")
	return cl
}

// createTopic creates topic and waits until every partition has a leader: metadata
// can lag CreateTopics by a moment, on any broker.
func createTopic(adm *kadm.Client, topic string, partitions int32) {
	resp, err := adm.CreateTopic(ctxFor(timeout), partitions, 1, nil, topic)
	must(err, "CreateTopic")
	must(resp.Err, "CreateTopic "+topic)
	deadline := time.Now().Add(timeout)
	for {
		md, err := adm.Metadata(ctxFor(10*time.Second), topic)
		if err == nil {
			if d, exists := md.Topics[topic]; exists && d.Err == nil && len(d.Partitions) == int(partitions) {
				ready := true
				for _, p := range d.Partitions {
					ready = ready && p.Leader >= 0 && p.Err == nil
				}
				if ready {
					return
				}
			}
		}
		check(time.Now().Before(deadline), "no leaders for %s", topic)
		time.Sleep(100 * time.Millisecond)
	}
}

// send produces n records keyed "key-<i mod 7>" with values "<prefix>-<i>" and waits for
// every acknowledgement; returns the values.
func send(cl *kgo.Client, topic string, n int, prefix string) []string {
	values := make([]string, n)
	recs := make([]*kgo.Record, n)
	for i := range n {
		values[i] = fmt.Sprintf("%s-%d", prefix, i)
		recs[i] = &kgo.Record{Topic: topic, Key: []byte(fmt.Sprintf("key-%d", i%7)), Value: []byte(values[i])}
	}
	results := cl.ProduceSync(ctxFor(timeout), recs...)
	must(results.FirstErr(), "ProduceSync")
	for _, r := range results {
		check(r.Record.Offset >= 0, "no offset for %s", r.Record.Value)
	}
	return values
}

type got struct {
	partition int32
	offset    int64
	key       string
	value     string
}

// pollUntil polls cl until want records arrived (or fails).
func pollUntil(cl *kgo.Client, want int, what string) []got {
	var out []got
	deadline := time.Now().Add(timeout)
	for len(out) < want {
		check(time.Now().Before(deadline), "%s: consumed %d of %d", what, len(out), want)
		fs := cl.PollFetches(ctxFor(time.Second))
		for _, e := range fs.Errors() {
			if e.Err != context.DeadlineExceeded {
				fail("%s: fetch error on %s/%d: %v", what, e.Topic, e.Partition, e.Err)
			}
		}
		fs.EachRecord(func(r *kgo.Record) {
			out = append(out, got{r.Partition, r.Offset, string(r.Key), string(r.Value)})
		})
	}
	return out
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

func produceConsume(bootstrap, topic string) {
	adm := kadm.NewClient(client(bootstrap))
	defer adm.Close()
	createTopic(adm, topic, 3)

	// kgo's defaults: idempotent, acks=all, snappy.
	prod := client(bootstrap, kgo.ProducerLinger(5*time.Millisecond))
	sent := send(prod, topic, 300, "first")
	prod.Close()
	ok("idempotent producer (kgo's default), acks=all: 300 records acknowledged")
	for _, codec := range []kgo.CompressionCodec{kgo.NoCompression(), kgo.GzipCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()} {
		p := client(bootstrap, kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite(), kgo.ProducerBatchCompression(codec))
		sent = append(sent, send(p, topic, 25, fmt.Sprintf("codec%d", len(sent)))...)
		p.Close()
	}
	ok("acks=1 without idempotence, uncompressed, gzip, lz4, zstd: 100 more acknowledged")

	direct := client(bootstrap, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	all := pollUntil(direct, len(sent), "direct consumer")
	direct.Close()
	check(sameSet(all, sent), "direct consumer read %d records, not the %d sent once each", len(all), len(sent))
	// One key, one partition: offsets grow in send order per key.
	byKey := map[string][]got{}
	for _, g := range all {
		byKey[g.key] = append(byKey[g.key], g)
	}
	for k, gs := range byKey {
		for i := 1; i < len(gs); i++ {
			check(gs[i].partition == gs[0].partition && gs[i].offset > gs[i-1].offset, "key %s: records out of order or spread over partitions", k)
		}
	}
	ok("direct consumer read all %d, per-key order kept", len(sent))

	group := topic + "-group"
	member := func() *kgo.Client {
		return client(bootstrap, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	}
	m := member()
	read := pollUntil(m, len(sent), "group member")
	check(sameSet(read, sent), "group member read %d, not the %d sent", len(read), len(sent))
	must(m.CommitUncommittedOffsets(ctxFor(timeout)), "CommitUncommittedOffsets")
	m.Close() // LeaveGroup
	ok("group member read %d and committed", len(sent))

	prod = client(bootstrap)
	second := send(prod, topic, 50, "second")
	prod.Close()
	m = member()
	read = pollUntil(m, len(second), "second group member")
	check(sameSet(read, second), "a new member resumed elsewhere than the commit: first %v", read[0])
	m.Close()
	ok("a new member resumed after the committed offsets: 50 new records")

	edges(bootstrap, topic+"-edges")
}

// edges: many pipelined idempotent batches, acks=0, a record near the size limit,
// and a consumer whose per-partition fetch limit is below one record's size.
func edges(bootstrap, topic string) {
	adm := kadm.NewClient(client(bootstrap))
	defer adm.Close()
	createTopic(adm, topic, 3)

	// Small batches, up to five in flight per broker (kgo with idempotence, Kafka 1.0+):
	// the broker sees sequence numbers of several batches of one partition at once.
	prod := client(bootstrap, kgo.ProducerBatchMaxBytes(2048), kgo.ProducerLinger(0))
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var firstErr error
	const n = 20000
	values := make([]string, n)
	for i := range n {
		values[i] = fmt.Sprintf("pipelined-%05d", i)
		wg.Add(1)
		prod.Produce(context.Background(), &kgo.Record{Topic: topic, Key: []byte(fmt.Sprintf("k%d", i%11)), Value: []byte(values[i])}, func(_ *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				errMu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				errMu.Unlock()
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * timeout):
		fail("20000 pipelined records not all acknowledged")
	}
	must(firstErr, "pipelined produce")
	prod.Close()
	ends, err := adm.ListEndOffsets(ctxFor(timeout), topic)
	must(err, "ListEndOffsets")
	total := int64(0)
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	check(total == n, "%d records in the log after %d acknowledged, idempotently", total, n)
	ok("20000 records in 2 KiB batches, 5 in flight per broker, idempotent: exactly 20000 in the log")

	noAck := client(bootstrap, kgo.RequiredAcks(kgo.NoAck()), kgo.DisableIdempotentWrite())
	sent := send(noAck, topic, 30, "noack")
	noAck.Close()
	big := client(bootstrap, kgo.ProducerBatchMaxBytes(1000000), kgo.ProducerBatchCompression(kgo.NoCompression()))
	large := make([]byte, 900000)
	for i := range large {
		large[i] = byte('a' + i%26)
	}
	res := big.ProduceSync(ctxFor(timeout), &kgo.Record{Topic: topic, Partition: 0, Key: []byte("large"), Value: large})
	must(res.FirstErr(), "a 900 kB record")
	big.Close()
	ok("acks=0 (30 records) and a 900 kB record accepted")

	// A 1 kB per-partition fetch limit, below the large record: the broker still hands
	// out the first batch whole, so the consumer makes progress (KIP-74).
	cons := client(bootstrap, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxPartitionBytes(1024), kgo.FetchMaxBytes(1024), kgo.BrokerMaxReadBytes(4<<20))
	want := n + len(sent) + 1
	all := pollUntil(cons, want, "a consumer with a 1 kB fetch limit")
	cons.Close()
	check(len(all) == want, "read %d records, not %d", len(all), want)
	seen := map[string]bool{}
	gotLarge := false
	for _, g := range all {
		if g.key == "large" {
			gotLarge = len(g.value) == len(large) && g.value == string(large)
		} else {
			seen[g.value] = true
		}
	}
	for _, v := range append(values, sent...) {
		check(seen[v], "record %s never read", v)
	}
	check(gotLarge, "the 900 kB record did not come back intact")
	ok("a consumer with 1 kB fetch limits read all %d, the 900 kB record intact", want)
}

// tracked is one group member: its assignment (from the callbacks) and its records.
type tracked struct {
	name     string
	cl       *kgo.Client
	mu       sync.Mutex
	assigned map[int32]bool
	revoked  []int32
	read     []got
}

func (t *tracked) parts() []int32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var ps []int32
	for p := range t.assigned {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	return ps
}

// serverSide: the "group848" mode, where members speak KIP-848's consumer protocol
// and the broker assigns.
var serverSide bool

func newMember(bootstrap, group, topic, name string) *tracked {
	t := &tracked{name: name, assigned: map[int32]bool{}}
	protocol := []kgo.Opt{}
	if serverSide {
		protocol = append(protocol, kgo.ServerSideBalancer(), kgo.Balancers(kgo.CooperativeStickyBalancer()))
	}
	t.cl = client(bootstrap, append(protocol, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit(),
		kgo.ClientID(name),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			t.mu.Lock()
			defer t.mu.Unlock()
			for _, p := range m[topic] {
				t.assigned[p] = true
			}
		}),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, m map[string][]int32) {
			// What was read from the moving partitions is committed before they move,
			// so the new owner starts after it.
			if err := cl.CommitUncommittedOffsets(ctx); err != nil {
				fmt.Printf("commit on revoke (%s): %v\n", name, err)
			}
			t.mu.Lock()
			defer t.mu.Unlock()
			for _, p := range m[topic] {
				delete(t.assigned, p)
				t.revoked = append(t.revoked, p)
			}
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			t.mu.Lock()
			defer t.mu.Unlock()
			for _, p := range m[topic] {
				delete(t.assigned, p)
			}
		}),
	)...)
	return t
}

// poll is one poll of the member: records kept, then committed synchronously.
func (t *tracked) poll() {
	fs := t.cl.PollFetches(ctxFor(200 * time.Millisecond))
	for _, e := range fs.Errors() {
		if e.Err != context.DeadlineExceeded {
			fail("%s: fetch error on %s/%d: %v", t.name, e.Topic, e.Partition, e.Err)
		}
	}
	n := 0
	fs.EachRecord(func(r *kgo.Record) {
		t.mu.Lock()
		t.read = append(t.read, got{r.Partition, r.Offset, string(r.Key), string(r.Value)})
		t.mu.Unlock()
		n++
	})
	if n > 0 {
		must(t.cl.CommitUncommittedOffsets(ctxFor(timeout)), t.name+": commit")
	}
}

func groupMode(bootstrap, topic string) {
	adm := kadm.NewClient(client(bootstrap))
	defer adm.Close()
	createTopic(adm, topic, 4)
	prod := client(bootstrap)
	sent := send(prod, topic, 200, "g1")
	group := topic + "-group"

	a := newMember(bootstrap, group, topic, "member-a")
	deadline := time.Now().Add(timeout)
	for len(a.parts()) != 4 || len(a.read) < len(sent) {
		check(time.Now().Before(deadline), "the first member: partitions %v, %d of %d read", a.parts(), len(a.read), len(sent))
		a.poll()
	}
	ok("first member alone: 4 partitions, %d records read and committed", len(a.read))

	b := newMember(bootstrap, group, topic, "member-b")
	// Both poll concurrently: a member must keep polling for a rebalance to complete.
	var stop sync.WaitGroup
	done := make(chan struct{})
	for _, m := range []*tracked{a, b} {
		stop.Add(1)
		go func() {
			defer stop.Done()
			for {
				select {
				case <-done:
					return
				default:
					m.poll()
				}
			}
		}()
	}
	deadline = time.Now().Add(timeout)
	for len(a.parts()) != 2 || len(b.parts()) != 2 {
		check(time.Now().Before(deadline), "after the second member joined: A %v, B %v", a.parts(), b.parts())
		time.Sleep(50 * time.Millisecond)
	}
	ok("second member joined: A %v, B %v (A revoked %v)", a.parts(), b.parts(), a.revoked)

	more := send(prod, topic, 200, "g2")
	sent = append(sent, more...)
	deadline = time.Now().Add(timeout)
	for {
		a.mu.Lock()
		b.mu.Lock()
		n := len(a.read) + len(b.read)
		a.mu.Unlock()
		b.mu.Unlock()
		if n >= len(sent) {
			break
		}
		check(time.Now().Before(deadline), "after the rebalance: %d of %d read", n, len(sent))
		time.Sleep(50 * time.Millisecond)
	}
	close(done)
	stop.Wait()
	all := append(append([]got(nil), a.read...), b.read...)
	check(sameSet(all, sent), "the group read %d records, not the %d sent once each", len(all), len(sent))
	for _, m := range []*tracked{a, b} {
		mine := map[int32]bool{}
		for _, p := range m.parts() {
			mine[p] = true
		}
		after := 0
		for _, g := range m.read {
			if len(g.value) > 3 && g.value[:3] == "g2-" {
				check(mine[g.partition], "%s read %s from partition %d, not its own %v", m.name, g.value, g.partition, m.parts())
				after++
			}
		}
		check(after > 0, "%s read nothing after the rebalance", m.name)
	}
	ok("all %d read once across the group, each member from its own partitions", len(sent))

	ends, err := adm.ListEndOffsets(ctxFor(timeout), topic)
	must(err, "ListEndOffsets")
	committed, err := adm.FetchOffsets(ctxFor(timeout), group)
	must(err, "FetchOffsets")
	for p := int32(0); p < 4; p++ {
		end, _ := ends.Lookup(topic, p)
		c, exists := committed.Lookup(topic, p)
		check(exists && c.Err == nil && c.At == end.Offset, "partition %d: committed %v, log end %d", p, c, end.Offset)
	}
	ok("committed offsets at the log end of every partition")
	listed, err := adm.ListGroups(ctxFor(timeout))
	must(err, "ListGroups")
	want := "classic"
	if serverSide {
		want = "consumer"
	}
	check(listed[group].GroupType == want, "the group's type is %q, not %q", listed[group].GroupType, want)
	ok("ListGroups: a %s group", want)

	// The second member leaves (LeaveGroup on Close): the first takes all four back.
	b.cl.Close()
	more = send(prod, topic, 100, "g3")
	sent = append(sent, more...)
	deadline = time.Now().Add(timeout)
	for len(a.parts()) != 4 || len(a.read)+len(b.read) < len(sent) {
		check(time.Now().Before(deadline), "after the second member left: A %v, %d of %d read", a.parts(), len(a.read)+len(b.read), len(sent))
		a.poll()
	}
	all = append(append([]got(nil), a.read...), b.read...)
	check(sameSet(all, sent), "after the second member left, the group read %d records, not the %d sent once each", len(all), len(sent))
	ok("second member left: the first has all 4 partitions again and read the next 100, each record once")
	a.cl.Close()
	prod.Close()
}

func adminMode(bootstrap, topic string) {
	cl := client(bootstrap)
	adm := kadm.NewClient(cl)
	defer adm.Close()
	retention := "3600000"
	resp, err := adm.CreateTopic(ctxFor(timeout), 2, 1, map[string]*string{"retention.ms": &retention}, topic)
	must(err, "CreateTopic")
	must(resp.Err, "CreateTopic "+topic)
	check(resp.NumPartitions == 2, "CreateTopic answered %d partitions", resp.NumPartitions)
	_, err = adm.CreateTopic(ctxFor(timeout), 2, 1, nil, topic)
	check(errors.Is(err, kerr.TopicAlreadyExists), "creating %s again: %v", topic, err)
	ok("CreateTopic with a config; again: TOPIC_ALREADY_EXISTS")

	deadline := time.Now().Add(timeout)
	for {
		topics, err := adm.ListTopics(ctxFor(10 * time.Second))
		if err == nil && topics.Has(topic) && len(topics[topic].Partitions) == 2 {
			break
		}
		check(time.Now().Before(deadline), "ListTopics misses %s (%v)", topic, err)
		time.Sleep(100 * time.Millisecond)
	}
	md, err := adm.Metadata(ctxFor(timeout), topic)
	must(err, "Metadata")
	check(len(md.Brokers) >= 1 && md.Controller >= 0, "Metadata: brokers %v, controller %d", md.Brokers, md.Controller)
	ok("ListTopics, Metadata (%d broker(s), controller %d)", len(md.Brokers), md.Controller)

	configs, err := adm.DescribeTopicConfigs(ctxFor(timeout), topic)
	must(err, "DescribeTopicConfigs")
	rc, err := configs.On(topic, nil)
	must(err, "DescribeTopicConfigs "+topic)
	must(rc.Err, "DescribeTopicConfigs "+topic)
	found := false
	for _, c := range rc.Configs {
		if c.Key == "retention.ms" {
			found = true
			check(c.MaybeValue() == retention && c.Source.String() == "DYNAMIC_TOPIC_CONFIG", "retention.ms = %q from %v", c.MaybeValue(), c.Source)
		}
	}
	check(found, "DescribeTopicConfigs has no retention.ms")
	ok("DescribeTopicConfigs: retention.ms from the topic's own config")

	prod := client(bootstrap)
	send(prod, topic, 30, "admin")
	prod.Close()
	starts, err := adm.ListStartOffsets(ctxFor(timeout), topic)
	must(err, "ListStartOffsets")
	ends, err := adm.ListEndOffsets(ctxFor(timeout), topic)
	must(err, "ListEndOffsets")
	total := int64(0)
	for p := int32(0); p < 2; p++ {
		s, _ := starts.Lookup(topic, p)
		e, _ := ends.Lookup(topic, p)
		must(s.Err, "start offset")
		must(e.Err, "end offset")
		check(s.Offset == 0, "partition %d starts at %d", p, s.Offset)
		total += e.Offset
	}
	check(total == 30, "end offsets sum to %d, not 30", total)
	ok("ListStartOffsets, ListEndOffsets (30 records over 2 partitions)")

	group := topic + "-admin-group"
	m := client(bootstrap, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())
	pollUntil(m, 30, "group member")
	must(m.CommitUncommittedOffsets(ctxFor(timeout)), "commit")
	listed, err := adm.ListGroups(ctxFor(timeout))
	must(err, "ListGroups")
	lg, exists := listed[group]
	check(exists && lg.ProtocolType == "consumer", "ListGroups: %v", listed)
	described, err := adm.DescribeGroups(ctxFor(timeout), group)
	must(err, "DescribeGroups")
	dg := described[group]
	must(dg.Err, "DescribeGroups "+group)
	check(dg.State == "Stable" && len(dg.Members) == 1 && dg.ProtocolType == "consumer", "DescribeGroups: state %s, %d members, protocol type %q", dg.State, len(dg.Members), dg.ProtocolType)
	ok("ListGroups, DescribeGroups (Stable, one member, protocol %s)", dg.Protocol)
	m.Close()
	offsets, err := adm.FetchOffsets(ctxFor(timeout), group)
	must(err, "FetchOffsets")
	for p := int32(0); p < 2; p++ {
		e, _ := ends.Lookup(topic, p)
		c, exists := offsets.Lookup(topic, p)
		check(exists && c.Err == nil && c.At == e.Offset, "partition %d: committed %v, end %d", p, c, e.Offset)
	}
	described, err = adm.DescribeGroups(ctxFor(timeout), group)
	must(err, "DescribeGroups")
	check(described[group].State == "Empty", "after the member left: %s", described[group].State)
	ok("FetchOffsets at the log end; the group Empty after its member left")

	adminMore(bootstrap, adm, topic, group)

	del, err := adm.DeleteTopic(ctxFor(timeout), topic)
	must(err, "DeleteTopic")
	must(del.Err, "DeleteTopic "+topic)
	deadline = time.Now().Add(timeout)
	for {
		topics, err := adm.ListTopics(ctxFor(10 * time.Second))
		if err == nil && !topics.Has(topic) {
			break
		}
		check(time.Now().Before(deadline), "DeleteTopic: %s still listed", topic)
		time.Sleep(100 * time.Millisecond)
	}
	ok("DeleteTopic")
}

// adminMore: the kadm calls beyond the basics, on topic (2 partitions, 30 records,
// group's commits at the log end, the group Empty).
func adminMore(bootstrap string, adm *kadm.Client, topic, group string) {
	lags, err := adm.Lag(ctxFor(timeout), group)
	must(err, "Lag")
	lag := lags[group]
	must(lag.DescribeErr, "Lag describe")
	must(lag.FetchErr, "Lag fetch")
	check(lag.Lag.Total() == 0 && lag.State == "Empty", "Lag: total %d, state %s", lag.Lag.Total(), lag.State)

	seg := "20971520"
	alt, err := adm.AlterTopicConfigs(ctxFor(timeout), []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "segment.bytes", Value: &seg}}, topic)
	must(err, "AlterTopicConfigs")
	for _, r := range alt {
		must(r.Err, "AlterTopicConfigs "+r.Name)
	}
	// A broker applies a config change once the controller's record reaches it (Kafka
	// too): DescribeTopicConfigs may show the old value for a moment.
	deadline := time.Now().Add(timeout)
	for {
		configs, err := adm.DescribeTopicConfigs(ctxFor(timeout), topic)
		must(err, "DescribeTopicConfigs")
		rc, _ := configs.On(topic, nil)
		values := map[string]string{}
		for _, c := range rc.Configs {
			values[c.Key] = c.MaybeValue()
		}
		if values["segment.bytes"] == seg {
			check(values["retention.ms"] == "3600000", "retention.ms lost by an incremental SET of another key: %q", values["retention.ms"])
			break
		}
		check(time.Now().Before(deadline), "after an incremental SET: segment.bytes %q", values["segment.bytes"])
		time.Sleep(100 * time.Millisecond)
	}
	brokers, err := adm.ListBrokers(ctxFor(timeout))
	must(err, "ListBrokers")
	check(len(brokers) >= 1, "ListBrokers: %v", brokers)
	bc, err := adm.DescribeBrokerConfigs(ctxFor(timeout), brokers[0].NodeID)
	must(err, "DescribeBrokerConfigs")
	check(len(bc) == 1 && bc[0].Err == nil && len(bc[0].Configs) > 0, "DescribeBrokerConfigs: %v", bc)
	ok("Lag (0, Empty), AlterTopicConfigs SET keeps the other keys, ListBrokers, DescribeBrokerConfigs (%d keys)", len(bc[0].Configs))

	cp, err := adm.CreatePartitions(ctxFor(timeout), 1, topic)
	must(err, "CreatePartitions")
	must(cp[topic].Err, "CreatePartitions "+topic)
	deadline = time.Now().Add(timeout)
	for {
		md, err := adm.Metadata(ctxFor(10*time.Second), topic)
		if err == nil && len(md.Topics[topic].Partitions) == 3 {
			break
		}
		check(time.Now().Before(deadline), "CreatePartitions: still not 3 partitions")
		time.Sleep(100 * time.Millisecond)
	}
	ok("CreatePartitions +1")

	// Records with headers and chosen timestamps, to partition 2 (the new one).
	prod := client(bootstrap, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	var recs []*kgo.Record
	for i := range 10 {
		recs = append(recs, &kgo.Record{Topic: topic, Partition: 2, Value: []byte(fmt.Sprint(i)), Timestamp: base.Add(time.Duration(i) * time.Minute),
			Headers: []kgo.RecordHeader{{Key: "i", Value: []byte(fmt.Sprint(i))}, {Key: "empty", Value: nil}}})
	}
	must(prod.ProduceSync(ctxFor(timeout), recs...).FirstErr(), "ProduceSync to partition 2")
	prod.Close()
	after, err := adm.ListOffsetsAfterMilli(ctxFor(timeout), base.Add(5*time.Minute-time.Millisecond).UnixMilli(), topic)
	must(err, "ListOffsetsAfterMilli")
	o, _ := after.Lookup(topic, 2)
	must(o.Err, "ListOffsetsAfterMilli partition 2")
	check(o.Offset == 5 && o.Timestamp == base.Add(5*time.Minute).UnixMilli(), "ListOffsetsAfterMilli: offset %d timestamp %d", o.Offset, o.Timestamp)
	maxTs, err := adm.ListMaxTimestampOffsets(ctxFor(timeout), topic)
	must(err, "ListMaxTimestampOffsets")
	mo, _ := maxTs.Lookup(topic, 2)
	check(mo.Err == nil && mo.Offset == 9, "ListMaxTimestampOffsets: %+v", mo)
	cons := client(bootstrap, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {2: kgo.NewOffset().AfterMilli(base.Add(7 * time.Minute).UnixMilli())}}))
	var first *kgo.Record
	deadline = time.Now().Add(timeout)
	for first == nil {
		check(time.Now().Before(deadline), "a consumer starting at a time read nothing")
		fs := cons.PollFetches(ctxFor(time.Second))
		fs.EachRecord(func(r *kgo.Record) {
			if first == nil {
				first = r
			}
		})
	}
	cons.Close()
	check(first.Offset == 7 && string(first.Value) == "7" && first.Timestamp.Equal(base.Add(7*time.Minute)), "a consumer starting at a time began at %d %q %v", first.Offset, first.Value, first.Timestamp)
	check(len(first.Headers) == 2 && first.Headers[0].Key == "i" && string(first.Headers[0].Value) == "7" && first.Headers[1].Key == "empty" && len(first.Headers[1].Value) == 0,
		"headers read back: %+v", first.Headers)
	ok("headers and timestamps; ListOffsetsAfterMilli, ListMaxTimestampOffsets, a consumer starting at a time")

	del, err := adm.DeleteRecords(ctxFor(timeout), kadm.Offsets{topic: {2: {Topic: topic, Partition: 2, At: 4}}})
	must(err, "DeleteRecords")
	dr := del[topic][2]
	must(dr.Err, "DeleteRecords partition 2")
	check(dr.LowWatermark == 4, "DeleteRecords low watermark %d", dr.LowWatermark)
	starts, err := adm.ListStartOffsets(ctxFor(timeout), topic)
	must(err, "ListStartOffsets")
	so, _ := starts.Lookup(topic, 2)
	check(so.Offset == 4, "start offset after DeleteRecords: %d", so.Offset)
	ok("DeleteRecords, ListStartOffsets after it")

	// Offsets set and deleted by an admin, for a group with no members.
	other := group + "-admin-set"
	os := kadm.Offsets{}
	os.Add(kadm.Offset{Topic: topic, Partition: 0, At: 1, LeaderEpoch: -1, Metadata: "set by kadm"})
	must(adm.CommitAllOffsets(ctxFor(timeout), other, os), "CommitAllOffsets")
	fetched, err := adm.FetchOffsets(ctxFor(timeout), other)
	must(err, "FetchOffsets")
	fo, exists := fetched.Lookup(topic, 0)
	check(exists && fo.At == 1 && fo.Metadata == "set by kadm", "FetchOffsets after CommitAllOffsets: %+v", fo)
	dor, err := adm.DeleteOffsets(ctxFor(timeout), other, kadm.TopicsSet{topic: {0: {}}})
	must(err, "DeleteOffsets")
	must(dor.Error(), "DeleteOffsets")
	fetched, err = adm.FetchOffsets(ctxFor(timeout), other)
	must(err, "FetchOffsets")
	fo, exists = fetched.Lookup(topic, 0)
	check(!exists || fo.At == -1, "FetchOffsets after DeleteOffsets: %+v", fo)
	dg, err := adm.DeleteGroup(ctxFor(timeout), group)
	must(err, "DeleteGroup")
	must(dg.Err, "DeleteGroup "+group)
	listed, err := adm.ListGroups(ctxFor(timeout))
	must(err, "ListGroups")
	_, still := listed[group]
	check(!still, "DeleteGroup: %s still listed", group)
	ok("CommitAllOffsets with metadata, DeleteOffsets, DeleteGroup")
}

// benchArgs parses bench's <records> <bytes>.
func benchArgs(args []string) (int, int) {
	check(len(args) == 2, "usage: franz bench <bootstrap> <topic> <records> <bytes>")
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

// bench: everything at the client's defaults except what the check fixes (acks=all,
// one partition, reading from the start); the record values are all 'x'.
func bench(bootstrap, topic string, n, size int) {
	adm := kadm.NewClient(client(bootstrap))
	createTopic(adm, topic, 1)
	adm.Close()

	value := make([]byte, size)
	for i := range value {
		value[i] = 'x'
	}
	cl := client(bootstrap)
	var failed atomic.Value
	ctx := ctxFor(5 * timeout)
	start := time.Now()
	for range n {
		// Produce blocks while MaxBufferedRecords are in flight: kgo's own back-pressure.
		cl.Produce(ctx, &kgo.Record{Topic: topic, Value: value}, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.Store(err)
			}
		})
	}
	must(cl.Flush(ctx), "Flush")
	produced := time.Since(start)
	if err, bad := failed.Load().(error); bad {
		fail("Produce: %v", err)
	}
	cl.Close()

	start = time.Now()
	cons := client(bootstrap, kgo.ConsumerGroup("bench-"+topic), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	defer cons.Close()
	var first time.Duration
	got := 0
	deadline := time.Now().Add(5 * timeout)
	for got < n {
		check(time.Now().Before(deadline), "consumed %d of %d records", got, n)
		fs := cons.PollFetches(ctxFor(10 * time.Second))
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				fail("fetch %s/%d: %v", t, p, err)
			}
		})
		if c := fs.NumRecords(); c > 0 {
			if got == 0 {
				first = time.Since(start)
			}
			got += c
		}
	}
	benchLine("franz-go", n, size, produced, first, time.Since(start))
}

func main() {
	if len(os.Args) == 6 && os.Args[1] == "bench" {
		n, size := benchArgs(os.Args[4:])
		bench(os.Args[2], os.Args[3], n, size)
		return
	}
	if len(os.Args) == 7 && os.Args[1] == "eos-pipeline" {
		worker, err := strconv.Atoi(os.Args[6])
		must(err, "worker number")
		eosPipeline(os.Args[2], os.Args[3], os.Args[4], os.Args[5], worker)
		return
	}
	if len(os.Args) == 7 && os.Args[1] == "secure" {
		secureMode(os.Args[2], os.Args[3], os.Args[4], os.Args[5], os.Args[6])
		return
	}
	if len(os.Args) == 7 && os.Args[1] == "mtls" {
		mtlsMode(os.Args[2], os.Args[3], os.Args[4], os.Args[5], os.Args[6])
		return
	}
	if len(os.Args) == 7 && os.Args[1] == "oauth" {
		oauthMode(os.Args[2], os.Args[3], os.Args[4], os.Args[5], os.Args[6])
		return
	}
	if len(os.Args) != 4 {
		fail("usage: franz <produce-consume|group|group848|admin|txn> <bootstrap> <topic> | franz bench <bootstrap> <topic> <records> <bytes>")
	}
	mode, bootstrap, topic := os.Args[1], os.Args[2], os.Args[3]
	switch mode {
	case "produce-consume":
		produceConsume(bootstrap, topic)
	case "group":
		groupMode(bootstrap, topic)
	case "group848":
		serverSide = true
		groupMode(bootstrap, topic)
	case "admin":
		adminMode(bootstrap, topic)
	case "txn":
		txnMode(bootstrap, topic)
	default:
		fail("unknown mode %s", mode)
	}
}
