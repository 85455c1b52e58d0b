package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// txnRecords makes n records for topic (one partition) with values "<prefix>-<i>".
func txnRecords(topic string, n int, prefix string) ([]*kgo.Record, []string) {
	recs := make([]*kgo.Record, n)
	values := make([]string, n)
	for i := range n {
		values[i] = fmt.Sprintf("%s-%d", prefix, i)
		recs[i] = &kgo.Record{Topic: topic, Value: []byte(values[i])}
	}
	return recs, values
}

// inTxn begins a transaction on p, produces recs and ends it with commit or abort.
func inTxn(p *kgo.Client, recs []*kgo.Record, commit kgo.TransactionEndTry, what string) {
	must(p.BeginTransaction(), what+": BeginTransaction")
	must(p.ProduceSync(ctxFor(timeout), recs...).FirstErr(), what+": ProduceSync")
	must(p.EndTransaction(ctxFor(timeout), commit), what+": EndTransaction")
}

// readAll reads topic from its start with isolation level iso until want records came
// (then polls once more for anything extra), returning the values in offset order.
func readAll(bootstrap, topic string, iso kgo.IsolationLevel, want int, what string) []got {
	cl := client(bootstrap, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(iso))
	defer cl.Close()
	out := pollUntil(cl, want, what)
	// Anything past what was wanted would arrive with the same fetches: one more short
	// poll catches a stray record (an aborted one, a duplicate).
	fs := cl.PollFetches(ctxFor(2 * time.Second))
	fs.EachRecord(func(r *kgo.Record) { out = append(out, got{r.Partition, r.Offset, string(r.Key), string(r.Value)}) })
	return out
}

func valuesOf(gs []got) []string {
	vs := make([]string, len(gs))
	for i, g := range gs {
		vs[i] = g.value
	}
	return vs
}

func equalStrings(a, b []string) bool {
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

// txnMode: see the file comment.
func txnMode(bootstrap, topic string) {
	const n = 50
	adm := kadm.NewClient(client(bootstrap))
	defer adm.Close()
	createTopic(adm, topic, 1)

	prod := client(bootstrap, kgo.TransactionalID(topic+"-txn"), kgo.ProducerLinger(0))
	first, firstValues := txnRecords(topic, n, "committed1")
	inTxn(prod, first, kgo.TryCommit, "first transaction")
	aborted, abortedValues := txnRecords(topic, n, "aborted")
	inTxn(prod, aborted, kgo.TryAbort, "second transaction")
	second, secondValues := txnRecords(topic, n, "committed2")
	inTxn(prod, second, kgo.TryCommit, "third transaction")
	ok("transactional producer: %d records committed, %d aborted, %d committed", n, n, n)

	// Each transaction ends with one control record (its marker) in the partition. A
	// coordinator may answer EndTxn before the markers are written: awaited.
	var end, stable kadm.ListedOffset
	deadline := time.Now().Add(timeout)
	for {
		ends, err := adm.ListEndOffsets(ctxFor(timeout), topic)
		must(err, "ListEndOffsets")
		end, _ = ends.Lookup(topic, 0)
		lso, err := adm.ListCommittedOffsets(ctxFor(timeout), topic)
		must(err, "ListCommittedOffsets")
		stable, _ = lso.Lookup(topic, 0)
		if (end.Offset == 3*n+3 && stable.Offset == 3*n+3) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	check(end.Err == nil && end.Offset == 3*n+3, "log end offset %+v, want %d (3 x %d records + 3 markers)", end, 3*n+3, n)
	check(stable.Err == nil && stable.Offset == 3*n+3, "last stable offset %+v, want %d", stable, 3*n+3)
	ok("log end offset and last stable offset %d: three markers after %d records", 3*n+3, 3*n)

	want := append(append([]string{}, firstValues...), secondValues...)
	committed := readAll(bootstrap, topic, kgo.ReadCommitted(), len(want), "read_committed consumer")
	check(equalStrings(valuesOf(committed), want), "read_committed consumer read %d records %v..., want the %d committed in order", len(committed), valuesOf(committed), len(want))
	for i := 1; i < len(committed); i++ {
		check(committed[i].offset > committed[i-1].offset, "read_committed offsets not increasing at %d", i)
	}
	check(committed[n-1].offset == n-1 && committed[n].offset == 2*n+2, "committed records at offsets %d and %d, want %d and %d",
		committed[n-1].offset, committed[n].offset, n-1, 2*n+2)
	ok("read_committed consumer: exactly the %d committed records, in order, none aborted", len(want))

	all := append(append(append([]string{}, firstValues...), abortedValues...), secondValues...)
	uncommitted := readAll(bootstrap, topic, kgo.ReadUncommitted(), len(all), "read_uncommitted consumer")
	check(equalStrings(valuesOf(uncommitted), all), "read_uncommitted consumer read %d records, want all %d in order", len(uncommitted), len(all))
	ok("read_uncommitted consumer: all %d records, the aborted ones too, no control records", len(all))

	// An open transaction holds the last stable offset back: its records are in the
	// log (the high watermark moved) but a read_committed consumer does not get them.
	open, openValues := txnRecords(topic, n, "open")
	must(prod.BeginTransaction(), "BeginTransaction (open)")
	must(prod.ProduceSync(ctxFor(timeout), open...).FirstErr(), "ProduceSync (open)")
	ends, err := adm.ListEndOffsets(ctxFor(timeout), topic)
	must(err, "ListEndOffsets")
	end, _ = ends.Lookup(topic, 0)
	lso, err := adm.ListCommittedOffsets(ctxFor(timeout), topic)
	must(err, "ListCommittedOffsets")
	stable, _ = lso.Lookup(topic, 0)
	check(end.Offset == 4*n+3 && stable.Offset == 3*n+3, "open transaction: end offset %d (want %d), last stable offset %d (want %d)",
		end.Offset, 4*n+3, stable.Offset, 3*n+3)
	held := client(bootstrap, kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumePartitions(nil), kgo.ConsumeResetOffset(kgo.NewOffset().At(3*n+3)))
	fs := held.PollFetches(ctxFor(3 * time.Second))
	check(fs.NumRecords() == 0, "read_committed consumer got %d records of an open transaction", fs.NumRecords())
	must(prod.EndTransaction(ctxFor(timeout), kgo.TryCommit), "EndTransaction (open)")
	released := pollUntil(held, n, "read_committed consumer after the commit")
	held.Close()
	check(equalStrings(valuesOf(released), openValues), "after the commit the read_committed consumer read %d records, want the %d", len(released), n)
	prod.Close()
	ok("open transaction: end offset %d, last stable offset held at %d, nothing read_committed until the commit, then all %d", 4*n+3, 3*n+3, n)

	groupTransact(bootstrap, topic, adm)
}

// groupTransact: consume-transform-produce with a GroupTransactSession; the group's
// offsets are committed inside each transaction (AddOffsetsToTxn, TxnOffsetCommit).
func groupTransact(bootstrap, topic string, adm *kadm.Client) {
	const m = 300
	in, out, group := topic+"-in", topic+"-out", topic+"-etl"
	createTopic(adm, in, 2)
	createTopic(adm, out, 1)
	p := client(bootstrap, kgo.ProducerLinger(5*time.Millisecond))
	inputs := send(p, in, m, "in")
	p.Close()

	sess, err := kgo.NewGroupTransactSession(
		kgo.SeedBrokers(bootstrap), kgo.ClientID("karst-tests-franz"), kgo.RetryTimeout(timeout),
		kgo.TransactionalID(topic+"-etl-txn"), kgo.ConsumerGroup(group), kgo.ConsumeTopics(in),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(), kgo.ProducerLinger(0), kgo.DefaultProduceTopic(out),
	)
	must(err, "NewGroupTransactSession")
	done, txns := 0, 0
	deadline := time.Now().Add(timeout)
	for done < m {
		check(time.Now().Before(deadline), "transform: %d of %d records in committed transactions", done, m)
		fs := sess.PollRecords(ctxFor(time.Second), 64)
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				fail("transform: fetch %s/%d: %v", t, p, err)
			}
		})
		if fs.NumRecords() == 0 {
			continue
		}
		must(sess.Begin(), "GroupTransactSession.Begin")
		var recs []*kgo.Record
		fs.EachRecord(func(r *kgo.Record) {
			recs = append(recs, &kgo.Record{Key: r.Key, Value: []byte(strings.ToUpper(string(r.Value)))})
		})
		must(sess.ProduceSync(ctxFor(timeout), recs...).FirstErr(), "transform: ProduceSync")
		committed, err := sess.End(ctxFor(timeout), kgo.TryCommit)
		must(err, "GroupTransactSession.End")
		check(committed, "transform: transaction %d was not committed (a rebalance?)", txns)
		done += len(recs)
		txns++
	}
	sess.Close()
	check(done == m, "transform: %d records transformed, want %d", done, m)
	ok("GroupTransactSession: %d records read from %s and written to %s in %d transactions", m, in, out, txns)

	want := make([]string, m)
	for i, v := range inputs {
		want[i] = strings.ToUpper(v)
	}
	output := readAll(bootstrap, out, kgo.ReadCommitted(), m, "read_committed consumer of the output")
	check(sameSet(output, want) && len(output) == m, "output: %d records, want each of the %d transformed inputs once", len(output), m)
	ok("output topic: every input once, transformed")

	// Offsets committed in a transaction become visible once its markers are written:
	// awaited.
	ends, err := adm.ListEndOffsets(ctxFor(timeout), in)
	must(err, "ListEndOffsets")
	var fetched kadm.OffsetResponses
	deadline = time.Now().Add(timeout)
	for {
		fetched, err = adm.FetchOffsets(ctxFor(timeout), group)
		must(err, "FetchOffsets")
		all := true
		for part := int32(0); part < 2; part++ {
			end, _ := ends.Lookup(in, part)
			o, found := fetched.Lookup(in, part)
			all = all && found && o.Err == nil && o.At == end.Offset
		}
		if all || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	total := int64(0)
	for part := int32(0); part < 2; part++ {
		end, _ := ends.Lookup(in, part)
		o, found := fetched.Lookup(in, part)
		check(found && o.Err == nil && o.At == end.Offset, "group %s, %s/%d: committed %+v, log end %d", group, in, part, o, end.Offset)
		total += end.Offset
	}
	check(total == m, "input end offsets add up to %d, want %d", total, m)
	ok("group offsets committed in the transactions equal the input's end offsets (%d records)", m)
}
