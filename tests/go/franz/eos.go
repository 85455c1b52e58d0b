package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// eosPipeline: one consume-transform-produce pipeline of tests/tests/exactly_once.rs,
// with a GroupTransactSession (transactions v2 where the broker finalizes them):
// records of <input> read read_committed as a member of <group> are written to the
// same partition of <output> as "<value>|w<worker>-<n>|<count>" (the tag and size of
// their transaction, so a torn one shows), the group's offsets committed in the
// transaction. Until its standard input closes. Reports on standard output, one
// line each: "STAGE <consuming|producing|committing|starting>", "COMMITTED <tag>",
// "ABORTED <tag>", "RESTART <why>" (the session is closed and a new one, with the
// same transactional id, fences the old producer and aborts what it left open).
func eosPipeline(bootstrap, input, output, group string, worker int) {
	var stop atomic.Bool
	go func() {
		r := bufio.NewReader(os.Stdin)
		for {
			if _, err := r.ReadByte(); err != nil {
				stop.Store(true)
				return
			}
		}
	}()
	say := func(format string, args ...any) { fmt.Printf(format+"\n", args...) }
	seq := 0
	for !stop.Load() {
		say("STAGE starting")
		opts := []kgo.Opt{}
		// KARST_CHECKER_DEBUG=franz: kgo's own account on standard error.
		if strings.Contains(os.Getenv("KARST_CHECKER_DEBUG"), "franz") {
			opts = append(opts, kgo.WithLogger(kgo.BasicLogger(os.Stderr, kgo.LogLevelInfo, func() string {
				return fmt.Sprintf("franz w%d ", worker)
			})))
		}
		sess, err := kgo.NewGroupTransactSession(append(opts,
			kgo.SeedBrokers(strings.Split(bootstrap, ",")...), kgo.ClientID(fmt.Sprintf("karst-eos-franz-w%d", worker)),
			kgo.TransactionalID(group+"-w"+strconv.Itoa(worker)), kgo.TransactionTimeout(60*time.Second),
			kgo.ConsumerGroup(group), kgo.ConsumeTopics(input), kgo.SessionTimeout(10*time.Second),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
			kgo.RequireStableFetchOffsets(), kgo.RecordPartitioner(kgo.ManualPartitioner()),
			kgo.ProducerLinger(0), kgo.RetryTimeout(90*time.Second),
		)...)
		if err != nil {
			say("RESTART NewGroupTransactSession: %v", err)
			time.Sleep(200 * time.Millisecond)
			continue
		}
		why := run(sess, output, worker, &seq, &stop, say)
		sess.Close()
		if why != "" {
			say("RESTART %s", why)
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// run moves records until stopped (""), or until an error: why.
func run(sess *kgo.GroupTransactSession, output string, worker int, seq *int, stop *atomic.Bool, say func(string, ...any)) string {
	for !stop.Load() {
		say("STAGE consuming")
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		fs := sess.PollRecords(ctx, 50)
		cancel()
		// Fetch errors are kgo's to retry (a broker gone, a leader moving).
		if fs.NumRecords() == 0 {
			continue
		}
		*seq++
		tag := fmt.Sprintf("w%d-%d", worker, *seq)
		say("STAGE producing")
		if err := sess.Begin(); err != nil {
			return "Begin: " + err.Error()
		}
		var recs []*kgo.Record
		fs.EachRecord(func(r *kgo.Record) {
			recs = append(recs, &kgo.Record{Topic: output, Partition: r.Partition, Value: []byte(string(r.Value) + "|" + tag + "|")})
		})
		for _, r := range recs {
			r.Value = append(r.Value, []byte(strconv.Itoa(len(recs)))...)
		}
		ctx, cancel = context.WithTimeout(context.Background(), 90*time.Second)
		produceErr := sess.ProduceSync(ctx, recs...).FirstErr()
		cancel()
		say("STAGE committing")
		ctx, cancel = context.WithTimeout(context.Background(), 90*time.Second)
		// A produce error aborts the transaction (TryAbort); End reports it.
		how := kgo.TryCommit
		if produceErr != nil {
			how = kgo.TryAbort
		}
		committed, err := sess.End(ctx, how)
		cancel()
		switch {
		case err != nil:
			return fmt.Sprintf("End of %s (produce: %v): %v", tag, produceErr, err)
		case committed:
			say("COMMITTED %s", tag)
		default:
			say("ABORTED %s", tag)
		}
	}
	return ""
}
