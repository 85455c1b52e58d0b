// Captures the request frames sarama 1.22 writes for the legacy API versions
// Karst's protocol/src/legacy codecs serve, and shows how sarama decodes the
// golden response bodies those codecs are tested against.
//
// It listens on loopback only and talks to itself: each case opens a
// sarama.Broker to the listener, sends one request, and the listener saves the
// frame, then answers with golden-responses/<Key>-v<N>.bin under the request's
// correlation id. See ../README.md for how to run it.
package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/Shopify/sarama"
)

type testCase struct {
	file     string // saved as sarama-requests/<file>.bin
	response string // golden-responses/<response>.bin
	version  sarama.KafkaVersion
	send     func(b *sarama.Broker) (interface{}, error)
}

func msgV0() *sarama.Message {
	return &sarama.Message{Codec: sarama.CompressionNone, Value: []byte("hi")}
}

func msgV1() *sarama.Message {
	return &sarama.Message{Codec: sarama.CompressionNone, Value: []byte("hi"), Version: 1, Timestamp: time.Unix(1700000000, 0)}
}

func str(s string) *string { return &s }

func cases() []testCase {
	produce := func(version int16, msg *sarama.Message) func(b *sarama.Broker) (interface{}, error) {
		return func(b *sarama.Broker) (interface{}, error) {
			req := &sarama.ProduceRequest{RequiredAcks: sarama.WaitForLocal, Timeout: 1500, Version: version}
			req.AddMessage("events", 0, msg)
			return b.Produce(req)
		}
	}
	fetch := func(version int16) func(b *sarama.Broker) (interface{}, error) {
		return func(b *sarama.Broker) (interface{}, error) {
			req := &sarama.FetchRequest{MaxWaitTime: 500, MinBytes: 1, Version: version}
			if version >= 3 {
				req.MaxBytes = sarama.MaxResponseSize
			}
			req.AddBlock("events", 0, 41, 1048576)
			return b.Fetch(req)
		}
	}
	commit := func(version int16) func(b *sarama.Broker) (interface{}, error) {
		return func(b *sarama.Broker) (interface{}, error) {
			req := &sarama.OffsetCommitRequest{Version: version, ConsumerGroup: "g1"}
			if version >= 1 {
				req.ConsumerGroupGeneration = 4
				req.ConsumerID = "m-1"
			}
			req.AddBlock("events", 0, 42, sarama.ReceiveTime, "m")
			return b.CommitOffset(req)
		}
	}
	createTopics := func(version int16) func(b *sarama.Broker) (interface{}, error) {
		return func(b *sarama.Broker) (interface{}, error) {
			req := &sarama.CreateTopicsRequest{
				Version: version,
				TopicDetails: map[string]*sarama.TopicDetail{
					"new": {NumPartitions: 3, ReplicationFactor: 1, ConfigEntries: map[string]*string{"cleanup.policy": str("compact")}},
				},
				Timeout:      30 * time.Second,
				ValidateOnly: version >= 1,
			}
			return b.CreateTopics(req)
		}
	}
	return []testCase{
		{"produce-v0", "Produce-v0", sarama.V0_8_2_0, produce(0, msgV0())},
		{"produce-v1", "Produce-v1", sarama.V0_9_0_0, produce(1, msgV0())},
		{"produce-v2", "Produce-v2", sarama.V0_10_0_0, produce(2, msgV1())},
		{"fetch-v0", "Fetch-v0", sarama.V0_8_2_0, fetch(0)},
		{"fetch-v1", "Fetch-v1", sarama.V0_9_0_0, fetch(1)},
		{"fetch-v2", "Fetch-v2", sarama.V0_10_0_0, fetch(2)},
		{"fetch-v3", "Fetch-v3", sarama.V0_10_1_0, fetch(3)},
		{"list-offsets-v0", "ListOffsets-v0", sarama.V0_8_2_0, func(b *sarama.Broker) (interface{}, error) {
			req := &sarama.OffsetRequest{}
			req.AddBlock("events", 0, sarama.OffsetNewest, 1)
			return b.GetAvailableOffsets(req)
		}},
		{"offset-commit-v0", "OffsetCommit-v0", sarama.V0_8_2_0, commit(0)},
		{"offset-commit-v1", "OffsetCommit-v1", sarama.V0_8_2_0, commit(1)},
		{"offset-fetch-v0", "OffsetFetch-v0", sarama.V0_8_2_0, func(b *sarama.Broker) (interface{}, error) {
			req := &sarama.OffsetFetchRequest{ConsumerGroup: "g1"}
			req.AddPartition("events", 0)
			req.AddPartition("events", 1)
			return b.FetchOffset(req)
		}},
		{"create-topics-v0", "CreateTopics-v0", sarama.V0_10_1_0, createTopics(0)},
		{"create-topics-v1", "CreateTopics-v1", sarama.V0_11_0_0, createTopics(1)},
		{"delete-topics-v0", "DeleteTopics-v0", sarama.V0_10_1_0, func(b *sarama.Broker) (interface{}, error) {
			return b.DeleteTopics(&sarama.DeleteTopicsRequest{Topics: []string{"old"}, Timeout: 30 * time.Second})
		}},
		{"describe-configs-v0", "DescribeConfigs-v0", sarama.V0_11_0_0, func(b *sarama.Broker) (interface{}, error) {
			return b.DescribeConfigs(&sarama.DescribeConfigsRequest{
				Resources: []*sarama.ConfigResource{{Type: sarama.TopicResource, Name: "events"}},
			})
		}},
	}
}

// serveOne saves the next request frame and answers it with the golden body.
func serveOne(ln net.Listener, reqPath, respPath string, done chan<- error) {
	conn, err := ln.Accept()
	if err != nil {
		done <- err
		return
	}
	defer conn.Close()
	var size [4]byte
	if _, err := io.ReadFull(conn, size[:]); err != nil {
		done <- err
		return
	}
	frame := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(conn, frame); err != nil {
		done <- err
		return
	}
	if err := os.WriteFile(reqPath, append(size[:], frame...), 0o644); err != nil {
		done <- err
		return
	}
	body, err := os.ReadFile(respPath)
	if err != nil {
		done <- err
		return
	}
	resp := make([]byte, 8, 8+len(body))
	binary.BigEndian.PutUint32(resp[0:4], uint32(4+len(body)))
	copy(resp[4:8], frame[4:8]) // correlation id
	resp = append(resp, body...)
	_, err = conn.Write(resp)
	done <- err
}

func main() {
	dir := "."
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	if err := os.MkdirAll(filepath.Join(dir, "sarama-requests"), 0o755); err != nil {
		panic(err)
	}
	report, err := os.Create(filepath.Join(dir, "sarama-decoded-responses.txt"))
	if err != nil {
		panic(err)
	}
	defer report.Close()
	for _, c := range cases() {
		done := make(chan error, 1)
		go serveOne(ln, filepath.Join(dir, "sarama-requests", c.file+".bin"), filepath.Join(dir, "golden-responses", c.response+".bin"), done)
		conf := sarama.NewConfig()
		conf.Version = c.version
		conf.ClientID = "sarama"
		b := sarama.NewBroker(ln.Addr().String())
		if err := b.Open(conf); err != nil {
			panic(err)
		}
		resp, err := c.send(b)
		if serr := <-done; serr != nil {
			panic(fmt.Sprintf("%s: %v", c.file, serr))
		}
		_ = b.Close()
		if err != nil {
			panic(fmt.Sprintf("%s: sarama could not decode the golden response: %v", c.file, err))
		}
		text, err := json.Marshal(resp)
		if err != nil {
			panic(err)
		}
		fmt.Fprintf(report, "%s (%s): %s\n", c.response, c.file, text)
	}
}
