// oldgroup: a consumer group of three members speaking the Kafka 0.9/0.10 group
// protocol through sarama 1.22 (Debian). sarama's ConsumerGroup needs 0.10.2, so the
// members drive the protocol themselves through sarama's Broker API, as consumers of
// that era did: FindCoordinator v0, JoinGroup v0 (one "range" protocol, the leader
// assigns), SyncGroup v0, Heartbeat v0, OffsetFetch v1, OffsetCommit v2 and
// LeaveGroup v0, each member with its own sarama.Client and Fetch at the given version.
//
// It produces -n keyed messages into an existing, empty 6-partition topic; three
// members consume each partition up to half its high watermark and commit, then leave;
// three new members resume from the committed offsets and consume the rest. It checks
// that every message was consumed exactly once, in offset order without gaps, that
// phase 2 started each partition exactly where phase 1 committed, and that the final
// committed offsets are the high watermarks.
//
// Usage: oldgroup -bootstrap HOST:PORT -topic T -group G [-version 0.9.0.0|0.10.0.0] [-n N] [-delay D] [-late D]
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/Shopify/sarama"
)

const (
	numPartitions     = 6
	numMembers        = 3
	sessionTimeout    = 10 * time.Second
	heartbeatInterval = 500 * time.Millisecond
	commitInterval    = 500 * time.Millisecond
	phaseTimeout      = 120 * time.Second
	protocolName      = "range"
)

func fail(format string, args ...interface{}) {
	fmt.Printf("FAIL: "+format+"\n", args...)
	os.Exit(1)
}

type position struct {
	partition int32
	offset    int64
}

// setup is what every member shares: where, what, and as which Kafka version.
type setup struct {
	addrs   []string
	topic   string
	group   string
	version sarama.KafkaVersion
	delay   time.Duration
	late    time.Duration
}

func (s *setup) config(clientID string) *sarama.Config {
	c := sarama.NewConfig()
	c.Version = s.version
	c.ClientID = clientID
	c.Consumer.Return.Errors = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Partitioner = sarama.NewHashPartitioner
	c.Producer.Return.Successes = true
	c.Metadata.Retry.Max = 10
	c.Metadata.Retry.Backoff = 200 * time.Millisecond
	return c
}

func (s *setup) newClient(clientID string) sarama.Client {
	client, err := sarama.NewClient(s.addrs, s.config(clientID))
	if err != nil {
		fail("%s: NewClient: %v", clientID, err)
	}
	return client
}

// ledger records every consumed message, in the order the members saw them.
type ledger struct {
	mu       sync.Mutex
	produced map[position]string
	order    map[int32][]int64 // per partition: consumed offsets in consumption order
	count    map[position]int
	perPhase map[int]int
	first    map[int]map[int32]int64 // phase -> partition -> first consumed offset
}

func (l *ledger) record(phase int, who string, m *sarama.ConsumerMessage) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := position{m.Partition, m.Offset}
	want, ok := l.produced[p]
	if !ok {
		fail("%s consumed %d/%d, which was never produced", who, m.Partition, m.Offset)
	}
	if string(m.Value) != want {
		fail("%s consumed %d/%d with value %q, produced %q", who, m.Partition, m.Offset, m.Value, want)
	}
	l.order[m.Partition] = append(l.order[m.Partition], m.Offset)
	l.count[p]++
	l.perPhase[phase]++
	if l.first[phase] == nil {
		l.first[phase] = map[int32]int64{}
	}
	if _, seen := l.first[phase][m.Partition]; !seen {
		l.first[phase][m.Partition] = m.Offset
	}
}

// phase is one round of three members consuming every partition up to target.
type phase struct {
	n      int
	target map[int32]int64
	ledger *ledger

	mu          sync.Mutex
	committed   map[int32]int64          // last successful commit of this phase
	synced      map[string]int32         // member -> generation of its last successful sync
	assignments map[string][]int32       // member -> partitions of that sync
	leaderSaw   map[int32]int            // generation -> members in the leader's JoinGroup answer
	leaders     map[int32]map[string]int // generation -> members that were told they lead
	generation  int32                    // the generation all members consumed in first
	joinRounds  int                      // successful join+sync rounds, all members
	rejoins     int                      // rejoins after a successful sync (rebalances)
	heartbeats  int                      // successful heartbeats
	commits     int                      // successful commits
	done        chan struct{}
	closed      bool
}

func newPhase(n int, target map[int32]int64, l *ledger) *phase {
	return &phase{
		n: n, target: target, ledger: l,
		committed:   map[int32]int64{},
		synced:      map[string]int32{},
		assignments: map[string][]int32{},
		leaderSaw:   map[int32]int{},
		leaders:     map[int32]map[string]int{},
		done:        make(chan struct{}),
	}
}

func (ph *phase) isDone() bool {
	select {
	case <-ph.done:
		return true
	default:
		return false
	}
}

func (ph *phase) synchronized(name string, gen int32, leader bool, members int, parts []int32) {
	ph.mu.Lock()
	defer ph.mu.Unlock()
	ph.synced[name] = gen
	ph.assignments[name] = parts
	ph.joinRounds++
	if ph.leaders[gen] == nil {
		ph.leaders[gen] = map[string]int{}
	}
	if leader {
		ph.leaders[gen][name]++
		ph.leaderSaw[gen] = members
	}
}

// allIn reports whether all members have synced in generation gen; then it checks
// that the generation has one leader that saw every member and that the assignments
// cover every partition exactly once.
func (ph *phase) allIn(gen int32) bool {
	ph.mu.Lock()
	defer ph.mu.Unlock()
	if len(ph.synced) < numMembers {
		return false
	}
	for _, g := range ph.synced {
		if g != gen {
			return false
		}
	}
	if len(ph.leaders[gen]) != 1 {
		fail("phase %d generation %d: %d members were told they lead (%v)", ph.n, gen, len(ph.leaders[gen]), ph.leaders[gen])
	}
	if ph.leaderSaw[gen] != numMembers {
		fail("phase %d generation %d: the leader's JoinGroup answer listed %d members, expected %d", ph.n, gen, ph.leaderSaw[gen], numMembers)
	}
	owner := map[int32]string{}
	for name, parts := range ph.assignments {
		for _, p := range parts {
			if prev, dup := owner[p]; dup {
				fail("phase %d generation %d: partition %d assigned to both %s and %s", ph.n, gen, p, prev, name)
			}
			owner[p] = name
		}
	}
	if len(owner) != numPartitions {
		fail("phase %d generation %d: assignments %v do not cover %d partitions", ph.n, gen, ph.assignments, numPartitions)
	}
	if ph.generation == 0 {
		ph.generation = gen
	}
	return true
}

func (ph *phase) commitSucceeded(offsets map[int32]int64) {
	ph.mu.Lock()
	defer ph.mu.Unlock()
	for p, o := range offsets {
		ph.committed[p] = o
	}
	if ph.closed {
		return
	}
	for p, t := range ph.target {
		if ph.committed[p] != t {
			return
		}
	}
	ph.closed = true
	close(ph.done)
}

func (ph *phase) count(what *int) {
	ph.mu.Lock()
	*what++
	ph.mu.Unlock()
}

func (ph *phase) rebalanced() {
	ph.mu.Lock()
	ph.rejoins++
	ph.mu.Unlock()
}

// member is one group member: its own client, its member id and generation.
type member struct {
	name   string
	s      *setup
	ph     *phase
	client sarama.Client
	id     string
	gen    int32
	leader bool
	parts  []int32
}

func (m *member) coordinator() *sarama.Broker {
	for attempt := 0; ; attempt++ {
		b, err := m.client.Coordinator(m.s.group)
		if err == nil {
			return b
		}
		if attempt == 20 {
			fail("%s: no coordinator for %s: %v", m.name, m.s.group, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (m *member) refreshCoordinator() {
	if err := m.client.RefreshCoordinator(m.s.group); err != nil {
		sarama.Logger.Printf("%s: RefreshCoordinator: %v", m.name, err)
	}
	time.Sleep(200 * time.Millisecond)
}

// rangeAssign is the range assignor: partitions in order, split in contiguous runs
// over the members sorted by id, the first ones taking one more when it is uneven.
func rangeAssign(memberIDs []string, partitions int) map[string][]int32 {
	sort.Strings(memberIDs)
	out := map[string][]int32{}
	per, extra := partitions/len(memberIDs), partitions%len(memberIDs)
	next := 0
	for i, id := range memberIDs {
		n := per
		if i < extra {
			n++
		}
		for j := 0; j < n; j++ {
			out[id] = append(out[id], int32(next))
			next++
		}
	}
	return out
}

// joinAndSync runs JoinGroup v0 and SyncGroup v0 until the member holds an
// assignment of some generation.
func (m *member) joinAndSync() {
	deadline := time.Now().Add(phaseTimeout)
	for {
		if time.Now().After(deadline) {
			fail("%s: no successful join and sync in %v", m.name, phaseTimeout)
		}
		coord := m.coordinator()
		join := &sarama.JoinGroupRequest{
			Version:        0,
			GroupId:        m.s.group,
			SessionTimeout: int32(sessionTimeout / time.Millisecond),
			MemberId:       m.id,
			ProtocolType:   "consumer",
		}
		if err := join.AddGroupProtocolMetadata(protocolName, &sarama.ConsumerGroupMemberMetadata{Version: 0, Topics: []string{m.s.topic}}); err != nil {
			fail("%s: encoding member metadata: %v", m.name, err)
		}
		jr, err := coord.JoinGroup(join)
		if err != nil {
			fail("%s: JoinGroup v0 (member id %q): %v", m.name, m.id, err)
		}
		switch jr.Err {
		case sarama.ErrNoError:
		case sarama.ErrUnknownMemberId:
			sarama.Logger.Printf("%s: JoinGroup: unknown member id %q, joining afresh", m.name, m.id)
			m.id = ""
			continue
		case sarama.ErrNotCoordinatorForConsumer, sarama.ErrConsumerCoordinatorNotAvailable:
			sarama.Logger.Printf("%s: JoinGroup: %v", m.name, jr.Err)
			m.refreshCoordinator()
			continue
		default:
			fail("%s: JoinGroup v0 (member id %q) answered %v", m.name, m.id, jr.Err)
		}
		if jr.MemberId == "" || jr.GenerationId <= 0 || jr.LeaderId == "" {
			fail("%s: JoinGroup v0 answered member id %q, generation %d, leader %q", m.name, jr.MemberId, jr.GenerationId, jr.LeaderId)
		}
		if m.id != "" && jr.MemberId != m.id {
			fail("%s: rejoined as %q, answered with member id %q", m.name, m.id, jr.MemberId)
		}
		if jr.GroupProtocol != protocolName {
			fail("%s: JoinGroup v0 chose protocol %q, the only one offered is %q", m.name, jr.GroupProtocol, protocolName)
		}
		m.id, m.gen = jr.MemberId, jr.GenerationId
		m.leader = jr.LeaderId == jr.MemberId

		sync := &sarama.SyncGroupRequest{GroupId: m.s.group, GenerationId: m.gen, MemberId: m.id}
		members := 0
		if m.leader {
			meta, err := jr.GetMembers()
			if err != nil {
				fail("%s: decoding the members' metadata: %v", m.name, err)
			}
			if _, self := meta[m.id]; !self {
				fail("%s: leader of generation %d, but not among the members %v", m.name, m.gen, keys(meta))
			}
			var ids []string
			for id, md := range meta {
				if len(md.Topics) != 1 || md.Topics[0] != m.s.topic {
					fail("%s: member %s subscribes to %v", m.name, id, md.Topics)
				}
				ids = append(ids, id)
			}
			members = len(ids)
			for id, parts := range rangeAssign(ids, numPartitions) {
				a := &sarama.ConsumerGroupMemberAssignment{Version: 0, Topics: map[string][]int32{m.s.topic: parts}}
				if err := sync.AddGroupAssignmentMember(id, a); err != nil {
					fail("%s: encoding the assignment: %v", m.name, err)
				}
			}
		} else if len(jr.Members) != 0 {
			fail("%s: a follower of generation %d was sent %d members' metadata", m.name, m.gen, len(jr.Members))
		}
		sr, err := coord.SyncGroup(sync)
		if err != nil {
			fail("%s: SyncGroup v0 (generation %d): %v", m.name, m.gen, err)
		}
		switch sr.Err {
		case sarama.ErrNoError:
		case sarama.ErrRebalanceInProgress, sarama.ErrIllegalGeneration:
			sarama.Logger.Printf("%s: SyncGroup generation %d: %v, rejoining", m.name, m.gen, sr.Err)
			continue
		case sarama.ErrUnknownMemberId:
			sarama.Logger.Printf("%s: SyncGroup generation %d: %v, joining afresh", m.name, m.gen, sr.Err)
			m.id = ""
			continue
		case sarama.ErrNotCoordinatorForConsumer, sarama.ErrConsumerCoordinatorNotAvailable:
			m.refreshCoordinator()
			continue
		default:
			fail("%s: SyncGroup v0 (generation %d) answered %v", m.name, m.gen, sr.Err)
		}
		m.parts = nil
		if len(sr.MemberAssignment) > 0 {
			a, err := sr.GetMemberAssignment()
			if err != nil {
				fail("%s: decoding the assignment of generation %d: %v", m.name, m.gen, err)
			}
			for t, parts := range a.Topics {
				if t != m.s.topic {
					fail("%s: assigned topic %q", m.name, t)
				}
				m.parts = append(m.parts, parts...)
			}
		}
		sort.Slice(m.parts, func(i, j int) bool { return m.parts[i] < m.parts[j] })
		sarama.Logger.Printf("%s: generation %d, member %s, leader %v, partitions %v", m.name, m.gen, m.id, m.leader, m.parts)
		m.ph.synchronized(m.name, m.gen, m.leader, members, m.parts)
		return
	}
}

func keys(m map[string]sarama.ConsumerGroupMemberMetadata) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// heartbeat sends Heartbeat v0; true means the member must rejoin.
func (m *member) heartbeat() bool {
	hr, err := m.coordinator().Heartbeat(&sarama.HeartbeatRequest{GroupId: m.s.group, GenerationId: m.gen, MemberId: m.id})
	if err != nil {
		fail("%s: Heartbeat v0 (generation %d): %v", m.name, m.gen, err)
	}
	switch hr.Err {
	case sarama.ErrNoError:
		m.ph.count(&m.ph.heartbeats)
		return false
	case sarama.ErrRebalanceInProgress, sarama.ErrIllegalGeneration:
		sarama.Logger.Printf("%s: Heartbeat generation %d: %v", m.name, m.gen, hr.Err)
		return true
	case sarama.ErrUnknownMemberId:
		sarama.Logger.Printf("%s: Heartbeat generation %d: %v", m.name, m.gen, hr.Err)
		m.id = ""
		return true
	case sarama.ErrNotCoordinatorForConsumer, sarama.ErrConsumerCoordinatorNotAvailable:
		m.refreshCoordinator()
		return true
	default:
		fail("%s: Heartbeat v0 (generation %d) answered %v", m.name, m.gen, hr.Err)
	}
	return false
}

// fetchOffsets asks OffsetFetch v1 for the committed offsets (-1: none).
func fetchOffsets(name string, client sarama.Client, s *setup, parts []int32) map[int32]int64 {
	for attempt := 0; ; attempt++ {
		coord, err := client.Coordinator(s.group)
		if err != nil {
			fail("%s: no coordinator for %s: %v", name, s.group, err)
		}
		req := &sarama.OffsetFetchRequest{Version: 1, ConsumerGroup: s.group}
		for _, p := range parts {
			req.AddPartition(s.topic, p)
		}
		resp, err := coord.FetchOffset(req)
		if err != nil {
			fail("%s: OffsetFetch v1: %v", name, err)
		}
		out := map[int32]int64{}
		retry := false
		for _, p := range parts {
			b := resp.GetBlock(s.topic, p)
			if b == nil {
				fail("%s: OffsetFetch v1 answered nothing for partition %d", name, p)
			}
			switch b.Err {
			case sarama.ErrNoError:
				out[p] = b.Offset
			case sarama.ErrOffsetsLoadInProgress, sarama.ErrNotCoordinatorForConsumer, sarama.ErrConsumerCoordinatorNotAvailable:
				retry = true
			default:
				fail("%s: OffsetFetch v1 partition %d answered %v", name, p, b.Err)
			}
		}
		if !retry {
			return out
		}
		if attempt == 20 {
			fail("%s: OffsetFetch v1 kept answering retriable errors", name)
		}
		_ = client.RefreshCoordinator(s.group)
		time.Sleep(200 * time.Millisecond)
	}
}

// commit sends OffsetCommit v2 with the member's generation and id; true means the
// member must rejoin (the commit was refused because of a rebalance).
func (m *member) commit(offsets map[int32]int64) bool {
	if len(offsets) == 0 {
		return false
	}
	req := &sarama.OffsetCommitRequest{
		Version:                 2,
		ConsumerGroup:           m.s.group,
		ConsumerGroupGeneration: m.gen,
		ConsumerID:              m.id,
		RetentionTime:           -1,
	}
	for p, o := range offsets {
		req.AddBlock(m.s.topic, p, o, 0, "")
	}
	resp, err := m.coordinator().CommitOffset(req)
	if err != nil {
		fail("%s: OffsetCommit v2 (generation %d): %v", m.name, m.gen, err)
	}
	for p := range offsets {
		kerr, ok := resp.Errors[m.s.topic][p]
		if !ok {
			fail("%s: OffsetCommit v2 answered nothing for partition %d", m.name, p)
		}
		switch kerr {
		case sarama.ErrNoError:
		case sarama.ErrRebalanceInProgress, sarama.ErrIllegalGeneration, sarama.ErrUnknownMemberId:
			sarama.Logger.Printf("%s: OffsetCommit generation %d partition %d: %v", m.name, m.gen, p, kerr)
			if kerr == sarama.ErrUnknownMemberId {
				m.id = ""
			}
			return true
		default:
			fail("%s: OffsetCommit v2 (generation %d) partition %d answered %v", m.name, m.gen, p, kerr)
		}
	}
	copied := map[int32]int64{}
	for p, o := range offsets {
		copied[p] = o
	}
	m.ph.count(&m.ph.commits)
	m.ph.commitSucceeded(copied)
	return false
}

// waitForAll heartbeats until every member of the phase has synced in this member's
// generation; true means the member must rejoin.
func (m *member) waitForAll() bool {
	if m.heartbeat() {
		return true
	}
	hb := time.NewTicker(heartbeatInterval)
	defer hb.Stop()
	for !m.ph.isDone() && !m.ph.allIn(m.gen) {
		select {
		case <-hb.C:
			if m.heartbeat() {
				return true
			}
		case <-time.After(20 * time.Millisecond):
		}
	}
	return false
}

type feed struct {
	pc   sarama.PartitionConsumer
	quit chan struct{}
}

// consume reads the member's partitions from the committed offsets up to the phase's
// targets, heartbeating and committing as it goes; true means the member must rejoin.
func (m *member) consume() bool {
	start := fetchOffsets(m.name, m.client, m.s, m.parts)
	consumer, err := sarama.NewConsumerFromClient(m.client)
	if err != nil {
		fail("%s: NewConsumer: %v", m.name, err)
	}
	defer consumer.Close()

	msgs := make(chan *sarama.ConsumerMessage)
	errs := make(chan *sarama.ConsumerError)
	feeds := map[int32]*feed{}
	var stopping sync.WaitGroup
	stop := func(p int32) {
		f := feeds[p]
		if f == nil {
			return
		}
		delete(feeds, p)
		close(f.quit)
		stopping.Add(1)
		go func() {
			defer stopping.Done()
			f.pc.AsyncClose()
			go func() {
				for range f.pc.Messages() {
				}
			}()
			for range f.pc.Errors() {
			}
		}()
	}
	defer func() {
		for p := range feeds {
			stop(p)
		}
		stopping.Wait()
	}()

	next := map[int32]int64{}
	for _, p := range m.parts {
		from := start[p]
		if from < 0 {
			from = sarama.OffsetOldest
		}
		if from >= m.ph.target[p] {
			next[p] = from
			continue
		}
		pc, err := consumer.ConsumePartition(m.s.topic, p, from)
		if err != nil {
			fail("%s: ConsumePartition %d at %d: %v", m.name, p, from, err)
		}
		if from == sarama.OffsetOldest {
			oldest, err := m.client.GetOffset(m.s.topic, p, sarama.OffsetOldest)
			if err != nil {
				fail("%s: GetOffset oldest %d: %v", m.name, p, err)
			}
			from = oldest
		}
		next[p] = from
		f := &feed{pc: pc, quit: make(chan struct{})}
		feeds[p] = f
		go func() {
			for {
				select {
				case msg, ok := <-f.pc.Messages():
					if !ok {
						return
					}
					select {
					case msgs <- msg:
					case <-f.quit:
						return
					}
				case e, ok := <-f.pc.Errors():
					if !ok {
						return
					}
					select {
					case errs <- e:
					case <-f.quit:
						return
					}
				case <-f.quit:
					return
				}
			}
		}()
	}
	sarama.Logger.Printf("%s: consuming %v from %v up to %v", m.name, m.parts, next, m.ph.target)

	hb := time.NewTicker(heartbeatInterval)
	defer hb.Stop()
	ct := time.NewTicker(commitInterval)
	defer ct.Stop()
	timeout := time.After(phaseTimeout)
	for len(feeds) > 0 {
		select {
		case msg := <-msgs:
			p := msg.Partition
			if _, live := feeds[p]; !live || msg.Offset >= m.ph.target[p] {
				continue
			}
			if msg.Offset != next[p] {
				fail("%s: partition %d delivered offset %d, expected %d", m.name, p, msg.Offset, next[p])
			}
			m.ph.ledger.record(m.ph.n, m.name, msg)
			time.Sleep(m.s.delay) // the work a consumer does per message
			next[p]++
			if next[p] == m.ph.target[p] {
				stop(p)
			}
		case e := <-errs:
			fail("%s: consumer error: %v", m.name, e)
		case <-hb.C:
			if m.heartbeat() {
				// Commit what was consumed, as a consumer does before it rejoins.
				m.commit(next)
				return true
			}
		case <-ct.C:
			if m.commit(next) {
				return true
			}
		case <-timeout:
			fail("%s: partitions %v not consumed to %v in %v (at %v)", m.name, m.parts, m.ph.target, phaseTimeout, next)
		}
	}
	return m.commit(next)
}

// idle heartbeats until the phase is done; true means the member must rejoin.
func (m *member) idle() bool {
	hb := time.NewTicker(heartbeatInterval)
	defer hb.Stop()
	for {
		select {
		case <-m.ph.done:
			return false
		case <-hb.C:
			if m.ph.isDone() {
				return false
			}
			if m.heartbeat() {
				return !m.ph.isDone()
			}
		}
	}
}

func (m *member) leave() {
	lr, err := m.coordinator().LeaveGroup(&sarama.LeaveGroupRequest{GroupId: m.s.group, MemberId: m.id})
	if err != nil {
		fail("%s: LeaveGroup v0: %v", m.name, err)
	}
	if lr.Err != sarama.ErrNoError {
		fail("%s: LeaveGroup v0 (member %s, generation %d) answered %v", m.name, m.id, m.gen, lr.Err)
	}
	sarama.Logger.Printf("%s: left", m.name)
}

func (m *member) run() {
	synced := false
	for {
		if synced {
			m.ph.rebalanced()
		}
		m.joinAndSync()
		synced = true
		if m.waitForAll() {
			continue
		}
		if m.consume() {
			continue
		}
		if m.idle() {
			continue
		}
		break
	}
	m.leave()
}

func runPhase(s *setup, n int, target map[int32]int64, l *ledger) *phase {
	ph := newPhase(n, target, l)
	var wg sync.WaitGroup
	for i := 0; i < numMembers; i++ {
		name := fmt.Sprintf("oldgroup-p%d-m%d", n, i)
		m := &member{name: name, s: s, ph: ph, client: s.newClient(name)}
		wg.Add(1)
		wait := time.Duration(0)
		if i == numMembers-1 {
			wait = s.late
		}
		go func() {
			defer wg.Done()
			defer m.client.Close()
			time.Sleep(wait)
			m.run()
		}()
	}
	finished := make(chan struct{})
	go func() {
		wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
	case <-time.After(2 * phaseTimeout):
		ph.mu.Lock()
		fail("phase %d did not finish in %v: committed %v of %v", n, 2*phaseTimeout, ph.committed, ph.target)
	}
	return ph
}

func join(xs map[int32]int64) string {
	s := make([]string, numPartitions)
	for p := int32(0); p < numPartitions; p++ {
		s[p] = fmt.Sprint(xs[p])
	}
	return strings.Join(s, ",")
}

func main() {
	bootstrap := flag.String("bootstrap", "", "broker address")
	topic := flag.String("topic", "", "an existing, empty topic with 6 partitions")
	group := flag.String("group", "", "a group id not used before")
	version := flag.String("version", "0.9.0.0", "Kafka version to speak: 0.9.0.0 or 0.10.0.0")
	n := flag.Int("n", 6000, "messages")
	delay := flag.Duration("delay", time.Millisecond, "processing time per consumed message, so that members heartbeat and commit while consuming")
	late := flag.Duration("late", 0, "the third member of each phase joins this much later (beyond group.initial.rebalance.delay.ms it forces a rebalance before consuming)")
	flag.Parse()
	sarama.Logger = log.New(os.Stderr, "[sarama] ", log.Lmicroseconds)

	v, err := sarama.ParseKafkaVersion(*version)
	if err != nil {
		fail("version %q: %v", *version, err)
	}
	if !v.IsAtLeast(sarama.V0_9_0_0) || v.IsAtLeast(sarama.V0_10_1_0) {
		fail("version %s: this program is for the JoinGroup v0 protocol of 0.9.0 and 0.10.0", v)
	}
	if *topic == "" || *group == "" || *bootstrap == "" {
		fail("-bootstrap, -topic and -group are required")
	}
	s := &setup{addrs: []string{*bootstrap}, topic: *topic, group: *group, version: v, delay: *delay, late: *late}

	// Produce N keyed messages with unique values into the empty topic.
	client := s.newClient("oldgroup-producer")
	defer client.Close()
	parts, err := client.Partitions(s.topic)
	if err != nil {
		fail("Partitions(%s): %v", s.topic, err)
	}
	if len(parts) != numPartitions {
		fail("topic %s has %d partitions, expected %d", s.topic, len(parts), numPartitions)
	}
	for p := int32(0); p < numPartitions; p++ {
		if hw, err := client.GetOffset(s.topic, p, sarama.OffsetNewest); err != nil || hw != 0 {
			fail("partition %d: high watermark %d (%v), expected an empty topic", p, hw, err)
		}
	}
	for p, o := range fetchOffsets("oldgroup-producer", client, s, parts) {
		if o != -1 {
			fail("group %s already has offset %d for partition %d", s.group, o, p)
		}
	}
	l := &ledger{produced: map[position]string{}, order: map[int32][]int64{}, count: map[position]int{}, perPhase: map[int]int{}, first: map[int]map[int32]int64{}}
	producer, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		fail("NewSyncProducer: %v", err)
	}
	for start := 0; start < *n; start += 500 {
		var batch []*sarama.ProducerMessage
		for i := start; i < start+500 && i < *n; i++ {
			batch = append(batch, &sarama.ProducerMessage{
				Topic: s.topic,
				Key:   sarama.StringEncoder(fmt.Sprintf("key-%d", i%101)),
				Value: sarama.StringEncoder(fmt.Sprintf("m-%06d", i)),
			})
		}
		if err := producer.SendMessages(batch); err != nil {
			fail("SendMessages from %d: %v", start, err)
		}
		for _, m := range batch {
			p := position{m.Partition, m.Offset}
			if _, dup := l.produced[p]; dup {
				fail("two messages acknowledged at %v", p)
			}
			l.produced[p] = string(m.Value.(sarama.StringEncoder))
		}
	}
	if err := producer.Close(); err != nil {
		fail("closing SyncProducer: %v", err)
	}
	hw := map[int32]int64{}
	half := map[int32]int64{}
	perPartition := map[int32]int64{}
	for p := range l.produced {
		perPartition[p.partition]++
	}
	for p := int32(0); p < numPartitions; p++ {
		newest, err := client.GetOffset(s.topic, p, sarama.OffsetNewest)
		if err != nil {
			fail("GetOffset newest %d: %v", p, err)
		}
		if newest != perPartition[p] {
			fail("partition %d: high watermark %d, but %d messages were acknowledged", p, newest, perPartition[p])
		}
		hw[p] = newest
		half[p] = newest / 2
	}
	fmt.Printf("sarama %s: produced %d messages, high watermarks %s\n", v, *n, join(hw))

	// Phase 1: three members consume each partition to half its high watermark.
	ph1 := runPhase(s, 1, half, l)
	committed1 := fetchOffsets("check", client, s, parts)
	for p := int32(0); p < numPartitions; p++ {
		if committed1[p] != half[p] {
			fail("after phase 1, partition %d has committed offset %d, expected %d", p, committed1[p], half[p])
		}
		if first := l.first[1][p]; half[p] > 0 && first != 0 {
			fail("phase 1 started partition %d at %d, expected 0 (no committed offset)", p, first)
		}
	}
	fmt.Printf("phase 1: generation %d, %d members, %d join rounds, %d rejoins, %d heartbeats, %d commits; consumed %d; committed %s\n",
		ph1.generation, numMembers, ph1.joinRounds, ph1.rejoins, ph1.heartbeats, ph1.commits, l.perPhase[1], join(committed1))

	// Phase 2: three new members resume from the committed offsets.
	ph2 := runPhase(s, 2, hw, l)
	if ph2.generation <= ph1.generation {
		fail("phase 2 consumed in generation %d, phase 1 in %d", ph2.generation, ph1.generation)
	}
	for p := int32(0); p < numPartitions; p++ {
		if hw[p] > half[p] {
			first, ok := l.first[2][p]
			if !ok || first != committed1[p] {
				fail("phase 2 started partition %d at %d (consumed: %v), phase 1 committed %d", p, first, ok, committed1[p])
			}
		}
	}
	final := fetchOffsets("check", client, s, parts)
	for p := int32(0); p < numPartitions; p++ {
		if final[p] != hw[p] {
			fail("finally partition %d has committed offset %d, high watermark %d", p, final[p], hw[p])
		}
	}
	fmt.Printf("phase 2: generation %d, %d members, %d join rounds, %d rejoins, %d heartbeats, %d commits; consumed %d, from the phase 1 commits; committed %s\n",
		ph2.generation, numMembers, ph2.joinRounds, ph2.rejoins, ph2.heartbeats, ph2.commits, l.perPhase[2], join(final))

	// Every message exactly once, every partition in offset order without gaps.
	for p, c := range l.count {
		if c != 1 {
			fail("%d/%d (%s) consumed %d times", p.partition, p.offset, l.produced[p], c)
		}
	}
	for pos := range l.produced {
		if l.count[pos] == 0 {
			fail("%d/%d (%s) never consumed", pos.partition, pos.offset, l.produced[pos])
		}
	}
	for p := int32(0); p < numPartitions; p++ {
		for i, o := range l.order[p] {
			if o != int64(i) {
				fail("partition %d: consumption %d was offset %d", p, i, o)
			}
		}
	}
	values := map[string]bool{}
	for _, val := range l.produced {
		values[val] = true
	}
	if len(values) != *n || len(l.count) != *n {
		fail("%d distinct values produced, %d positions consumed, expected %d", len(values), len(l.count), *n)
	}
	fmt.Printf("%d messages consumed exactly once (%d + %d), offsets contiguous in every partition; final commits = high watermarks\nOK\n",
		*n, l.perPhase[1], l.perPhase[2])
}
