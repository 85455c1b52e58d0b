// group: one member of a sarama 1.22 ConsumerGroup (Debian), for
// tests/tests/groups_sarama.rs. It reports on stdout, one line per event, in the line
// protocol described in tests/src/group.rs (GENERATION, ASSIGN, ASSIGNMENT, REVOKE,
// MSG, STOPPING, CLOSED, FAIL:), and runs until stdin reaches EOF. Every consumed
// message is marked; sarama commits marked offsets every second and when a session
// ends, then Close sends LeaveGroup.
//
// Usage: group -bootstrap HOST:PORT -topic T -group G [-name NAME] [-retention D]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/Shopify/sarama"
)

var outMu sync.Mutex

func say(format string, args ...interface{}) {
	outMu.Lock()
	defer outMu.Unlock()
	fmt.Printf(format+"\n", args...)
}

func fail(format string, args ...interface{}) {
	say("FAIL: "+format, args...)
	os.Exit(1)
}

func parts(ps []int32) string {
	if len(ps) == 0 {
		return "-"
	}
	sorted := append([]int32(nil), ps...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	s := make([]string, len(sorted))
	for i, p := range sorted {
		s[i] = fmt.Sprint(p)
	}
	return strings.Join(s, ",")
}

type handler struct{ topic string }

func (h handler) Setup(s sarama.ConsumerGroupSession) error {
	claims := s.Claims()[h.topic]
	say("GENERATION %d", s.GenerationID())
	say("ASSIGN %s", parts(claims))
	say("ASSIGNMENT %s", parts(claims))
	return nil
}

func (h handler) Cleanup(s sarama.ConsumerGroupSession) error {
	say("REVOKE %s", parts(s.Claims()[h.topic]))
	say("ASSIGNMENT -")
	return nil
}

func (h handler) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for m := range claim.Messages() {
		say("MSG %d %d %s", m.Partition, m.Offset, m.Value)
		s.MarkMessage(m, "")
	}
	return nil
}

func main() {
	bootstrap := flag.String("bootstrap", "", "broker address")
	topic := flag.String("topic", "", "topic")
	group := flag.String("group", "", "group id")
	name := flag.String("name", "member", "client id")
	retention := flag.Duration("retention", 0, "Consumer.Offsets.Retention: 0 (the default) makes sarama commit with OffsetCommit v1, anything else with v2")
	flag.Parse()
	sarama.Logger = log.New(os.Stderr, "[sarama] ", log.Lmicroseconds)

	c := sarama.NewConfig()
	// Never the default (0.8.2, legacy message format): the newest version 1.22 knows.
	c.Version = sarama.V2_1_0_0
	c.ClientID = *name
	c.Consumer.Return.Errors = true
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	c.Consumer.Offsets.CommitInterval = time.Second
	c.Consumer.Offsets.Retention = *retention
	c.Consumer.Group.Rebalance.Strategy = sarama.BalanceStrategyRange
	c.Metadata.Retry.Max = 10
	c.Metadata.Retry.Backoff = 200 * time.Millisecond

	g, err := sarama.NewConsumerGroup([]string{*bootstrap}, *group, c)
	if err != nil {
		fail("NewConsumerGroup: %v", err)
	}
	go func() {
		for err := range g.Errors() {
			say("ERROR %v", err)
		}
	}()

	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin) // returns at EOF: the test closed our stdin
		say("STOPPING")
		cancel()
	}()
	for ctx.Err() == nil {
		// Returns when the session ends (a rebalance, or the cancel above), after
		// Cleanup and the final commit of marked offsets.
		if err := g.Consume(ctx, []string{*topic}, handler{*topic}); err != nil {
			if ctx.Err() != nil {
				break
			}
			fail("Consume: %v", err)
		}
	}
	if err := g.Close(); err != nil {
		fail("Close: %v", err)
	}
	say("CLOSED")
}
