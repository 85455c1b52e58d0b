package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// txnConfig: a transactional producer as sarama requires one (idempotent, one request
// in flight, acks=all).
func txnConfig(version *sarama.KafkaVersion, id string) *sarama.Config {
	c := config(version)
	c.Producer.Idempotent = true
	c.Producer.Transaction.ID = id
	c.Net.MaxOpenRequests = 1
	c.Producer.RequiredAcks = sarama.WaitForAll
	return c
}

// txnProducer is a transactional SyncProducer; creating one runs InitProducerId,
// which sarama retries for minutes against a broker that cannot answer: bounded here.
func txnProducer(bootstrap string, version *sarama.KafkaVersion, id string) sarama.SyncProducer {
	type made struct {
		p   sarama.SyncProducer
		err error
	}
	ch := make(chan made, 1)
	go func() {
		p, err := sarama.NewSyncProducer([]string{bootstrap}, txnConfig(version, id))
		ch <- made{p, err}
	}()
	select {
	case m := <-ch:
		must(m.err, "NewSyncProducer (transactional)")
		check(m.p.IsTransactional(), "producer with Transaction.ID is not transactional")
		return m.p
	case <-time.After(timeout):
		fail("NewSyncProducer (transactional, %s): no producer after %v (InitProducerId)", id, timeout)
		return nil
	}
}

func txnMessages(topic string, n int, prefix string) ([]*sarama.ProducerMessage, []string) {
	msgs := make([]*sarama.ProducerMessage, n)
	values := make([]string, n)
	for i := range n {
		values[i] = fmt.Sprintf("%s-%d", prefix, i)
		msgs[i] = &sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(values[i])}
	}
	return msgs, values
}

// inTxn sends msgs in one transaction and commits or aborts it.
func inTxn(p sarama.SyncProducer, msgs []*sarama.ProducerMessage, commit bool, what string) {
	must(p.BeginTxn(), what+": BeginTxn")
	check(p.TxnStatus()&sarama.ProducerTxnFlagInTransaction != 0, "%s: not in a transaction after BeginTxn (status %v)", what, p.TxnStatus())
	must(p.SendMessages(msgs), what+": SendMessages")
	if commit {
		must(p.CommitTxn(), what+": CommitTxn")
	} else {
		must(p.AbortTxn(), what+": AbortTxn")
	}
	check(p.TxnStatus()&sarama.ProducerTxnFlagReady != 0, "%s: producer not ready after ending the transaction (status %v)", what, p.TxnStatus())
}

// readIsolated reads partition 0 of topic from the oldest offset with isolation level
// iso until want messages came, then for two more seconds for any extra; returns them
// in the order read.
func readIsolated(bootstrap string, version *sarama.KafkaVersion, topic string, iso sarama.IsolationLevel, from int64, want int, what string) []got {
	c := config(version)
	c.Consumer.IsolationLevel = iso
	cons, err := sarama.NewConsumer([]string{bootstrap}, c)
	must(err, "NewConsumer")
	defer cons.Close()
	pc, err := cons.ConsumePartition(topic, 0, from)
	must(err, "ConsumePartition")
	defer pc.Close()
	var out []got
	deadline := time.After(timeout)
	for len(out) < want {
		select {
		case m := <-pc.Messages():
			out = append(out, got{m.Partition, m.Offset, string(m.Key), string(m.Value)})
		case e := <-pc.Errors():
			fail("%s: %v", what, e)
		case <-deadline:
			fail("%s: consumed %d of %d", what, len(out), want)
		}
	}
	extra := time.After(2 * time.Second)
	for {
		select {
		case m := <-pc.Messages():
			out = append(out, got{m.Partition, m.Offset, string(m.Key), string(m.Value)})
		case <-extra:
			return out
		}
	}
}

func valuesOf(gs []got) []string {
	vs := make([]string, len(gs))
	for i, g := range gs {
		vs[i] = g.value
	}
	return vs
}

func sameOrder(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// newestOffset is ListOffsets(latest) for topic/partition with isolation level iso:
// the high watermark read_uncommitted, the last stable offset read_committed.
// (client.GetOffset always asks read_uncommitted, so the request is built here.)
func newestOffset(bootstrap string, version *sarama.KafkaVersion, topic string, partition int32, iso sarama.IsolationLevel) int64 {
	c := config(version)
	cl, err := sarama.NewClient([]string{bootstrap}, c)
	must(err, "NewClient")
	defer cl.Close()
	leader, err := cl.Leader(topic, partition)
	must(err, "Leader")
	req := sarama.NewOffsetRequest(c.Version)
	req.IsolationLevel = iso
	req.AddBlock(topic, partition, sarama.OffsetNewest, 1)
	resp, err := leader.GetAvailableOffsets(req)
	must(err, "ListOffsets")
	blk := resp.GetBlock(topic, partition)
	check(blk != nil && blk.Err == sarama.ErrNoError, "ListOffsets %s/%d: %+v", topic, partition, blk)
	return blk.Offset
}

func txnMode(bootstrap, topic string) {
	recent := sarama.MaxVersion
	for _, v := range []*sarama.KafkaVersion{nil, &recent} {
		t := topic + "-" + strings.ReplaceAll(versionName(v)[strings.LastIndex(versionName(v), " ")+1:], ".", "-")
		txnCommitAbort(bootstrap, v, t)
		txnConsumeTransformProduce(bootstrap, v, t)
	}
}

func txnCommitAbort(bootstrap string, v *sarama.KafkaVersion, topic string) {
	const n = 40
	a := admin(bootstrap, v)
	defer a.Close()
	createTopic(a, topic, 1)
	p := txnProducer(bootstrap, v, topic+"-txn")
	first, firstValues := txnMessages(topic, n, "committed1")
	inTxn(p, first, true, "first transaction")
	aborted, abortedValues := txnMessages(topic, n, "aborted")
	inTxn(p, aborted, false, "second transaction")
	second, secondValues := txnMessages(topic, n, "committed2")
	inTxn(p, second, true, "third transaction")
	ok("%s: transactional SyncProducer: %d committed, %d aborted, %d committed", versionName(v), n, n, n)

	// A coordinator may answer EndTxn before the markers are written: awaited.
	var end, lso int64
	deadline := time.Now().Add(timeout)
	for {
		end = newestOffset(bootstrap, v, topic, 0, sarama.ReadUncommitted)
		lso = newestOffset(bootstrap, v, topic, 0, sarama.ReadCommitted)
		if (end == 3*n+3 && lso == 3*n+3) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	check(end == 3*n+3 && lso == 3*n+3, "end offset %d, last stable offset %d, want both %d (3 x %d records + 3 markers)", end, lso, 3*n+3, n)

	want := append(append([]string{}, firstValues...), secondValues...)
	rc := readIsolated(bootstrap, v, topic, sarama.ReadCommitted, sarama.OffsetOldest, len(want), "read_committed consumer")
	check(sameOrder(valuesOf(rc), want), "read_committed consumer read %d records, want the %d committed in order: %v", len(rc), len(want), valuesOf(rc))
	check(rc[n-1].offset == n-1 && rc[n].offset == 2*n+2, "committed records at offsets %d, %d; want %d, %d", rc[n-1].offset, rc[n].offset, n-1, 2*n+2)
	ok("%s: read_committed consumer read exactly the %d committed records in order, none aborted", versionName(v), len(want))
	all := append(append(append([]string{}, firstValues...), abortedValues...), secondValues...)
	ru := readIsolated(bootstrap, v, topic, sarama.ReadUncommitted, sarama.OffsetOldest, len(all), "read_uncommitted consumer")
	check(sameOrder(valuesOf(ru), all), "read_uncommitted consumer read %d records, want all %d in order", len(ru), len(all))
	ok("%s: read_uncommitted consumer read all %d, aborted ones too, no control records", versionName(v), len(all))

	// An open transaction: its records move the high watermark, not the last stable offset.
	open, openValues := txnMessages(topic, n, "open")
	must(p.BeginTxn(), "BeginTxn (open)")
	must(p.SendMessages(open), "SendMessages (open)")
	end = newestOffset(bootstrap, v, topic, 0, sarama.ReadUncommitted)
	lso = newestOffset(bootstrap, v, topic, 0, sarama.ReadCommitted)
	check(end == 4*n+3 && lso == 3*n+3, "open transaction: end offset %d (want %d), last stable offset %d (want %d)", end, 4*n+3, lso, 3*n+3)
	must(p.CommitTxn(), "CommitTxn (open)")
	after := readIsolated(bootstrap, v, topic, sarama.ReadCommitted, 3*n+3, n, "read_committed consumer after the commit")
	check(sameOrder(valuesOf(after), openValues), "after the commit: read %d records, want the %d of the transaction", len(after), n)
	must(p.Close(), "SyncProducer.Close")
	ok("%s: open transaction: end offset %d, last stable offset %d until the commit, then its %d records read_committed", versionName(v), 4*n+3, 3*n+3, n)
}

// transformer is a ConsumerGroupHandler that writes each message upper-cased to out
// and commits the message's offset in the same transaction (AddMessageToTxn).
type transformer struct {
	producer sarama.SyncProducer
	group    string
	out      string
	txn      sync.Mutex // one transaction at a time: claims run concurrently
	mu       sync.Mutex
	once     sync.Once
	done     int
	err      error
	all      chan struct{}
	want     int
}

func (t *transformer) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (t *transformer) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (t *transformer) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for m := range claim.Messages() {
		err := t.transform(s, m)
		t.mu.Lock()
		if err != nil && t.err == nil {
			t.err = err
		}
		t.done++
		if t.done == t.want || err != nil {
			t.once.Do(func() { close(t.all) })
		}
		t.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

func (t *transformer) transform(s sarama.ConsumerGroupSession, m *sarama.ConsumerMessage) error {
	t.txn.Lock()
	defer t.txn.Unlock()
	p := t.producer
	if err := p.BeginTxn(); err != nil {
		return fmt.Errorf("BeginTxn: %w", err)
	}
	out := &sarama.ProducerMessage{Topic: t.out, Key: sarama.ByteEncoder(m.Key), Value: sarama.StringEncoder(strings.ToUpper(string(m.Value)))}
	if _, _, err := p.SendMessage(out); err != nil {
		return fmt.Errorf("SendMessage: %w", err)
	}
	meta := sarama.NewConsumerGroupMetadataFromSession(s, t.group, nil)
	if err := p.AddMessageToTxnWithGroupMetadata(m, meta, nil); err != nil {
		return fmt.Errorf("AddMessageToTxnWithGroupMetadata: %w", err)
	}
	if err := p.CommitTxn(); err != nil {
		return fmt.Errorf("CommitTxn: %w", err)
	}
	return nil
}

func txnConsumeTransformProduce(bootstrap string, v *sarama.KafkaVersion, topic string) {
	const m = 60
	in, out, group := topic+"-in", topic+"-out", topic+"-etl"
	a := admin(bootstrap, v)
	defer a.Close()
	createTopic(a, in, 2)
	createTopic(a, out, 1)
	inputs := send(bootstrap, config(v), in, m, "in")

	p := txnProducer(bootstrap, v, topic+"-etl-txn")
	c := config(v)
	c.Consumer.IsolationLevel = sarama.ReadCommitted
	c.Consumer.Offsets.AutoCommit.Enable = false
	g, err := sarama.NewConsumerGroup([]string{bootstrap}, group, c)
	must(err, "NewConsumerGroup")
	t := &transformer{producer: p, group: group, out: out, all: make(chan struct{}), want: m}
	ctx, stop := context.WithCancel(context.Background())
	consumed := make(chan error, 1)
	go func() {
		for ctx.Err() == nil {
			if err := g.Consume(ctx, []string{in}, t); err != nil {
				consumed <- err
				return
			}
		}
		consumed <- nil
	}()
	select {
	case <-t.all:
	case err := <-consumed:
		fail("ConsumerGroup.Consume: %v", err)
	case <-time.After(timeout):
		t.mu.Lock()
		fail("transform: %d of %d messages in committed transactions", t.done, m)
	}
	stop()
	must(<-consumed, "ConsumerGroup.Consume")
	must(g.Close(), "ConsumerGroup.Close")
	must(p.Close(), "SyncProducer.Close")
	must(t.err, "transform")
	ok("%s: consume-transform-produce: %d messages, one transaction each with AddMessageToTxn", versionName(v), m)

	want := make([]string, m)
	for i, x := range inputs {
		want[i] = strings.ToUpper(x)
	}
	output := readIsolated(bootstrap, v, out, sarama.ReadCommitted, sarama.OffsetOldest, m, "read_committed consumer of the output")
	check(sameSet(output, want), "output: %d records, want each of the %d transformed inputs once", len(output), m)
	ok("%s: output topic holds every input once, transformed", versionName(v))

	// Offsets committed in a transaction become visible once its markers are written:
	// awaited.
	ends := []int64{newestOffset(bootstrap, v, in, 0, sarama.ReadUncommitted), newestOffset(bootstrap, v, in, 1, sarama.ReadUncommitted)}
	var offsets *sarama.OffsetFetchResponse
	deadline := time.Now().Add(timeout)
	for {
		offsets, err = a.ListConsumerGroupOffsets(group, map[string][]int32{in: {0, 1}})
		must(err, "ListConsumerGroupOffsets")
		all := true
		for part := int32(0); part < 2; part++ {
			blk := offsets.GetBlock(in, part)
			all = all && blk != nil && blk.Err == sarama.ErrNoError && blk.Offset == ends[part]
		}
		if all || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	total := int64(0)
	for part := int32(0); part < 2; part++ {
		blk := offsets.GetBlock(in, part)
		check(blk != nil && blk.Err == sarama.ErrNoError && blk.Offset == ends[part], "group %s, %s/%d: committed %+v, log end %d", group, in, part, blk, ends[part])
		total += ends[part]
	}
	check(total == m, "input end offsets add up to %d, want %d", total, m)
	ok("%s: the group's offsets committed in the transactions equal the input's end offsets", versionName(v))
}
