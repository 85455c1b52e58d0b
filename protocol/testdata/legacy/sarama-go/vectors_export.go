// Copied into a copy of sarama 1.22's package directory (see ../README.md): it
// reaches sarama's unexported encoder and decoder, as sarama's producer and
// consumer use them.

package sarama

import "time"

// VecRecord is one record of a test vector; Timestamp in ms.
type VecRecord struct {
	Key, Value []byte
	Timestamp  int64
}

// EncodeProduceSet encodes records as sarama's producer (produce_set.go) lays
// them out for one partition at message version 0 (Kafka 0.8-0.9) or 1 (0.10).
func EncodeProduceSet(version int8, codec CompressionCodec, recs []VecRecord) ([]byte, error) {
	set := &MessageSet{}
	for _, r := range recs {
		m := &Message{Codec: CompressionNone, Key: r.Key, Value: r.Value, Version: version}
		if version >= 1 {
			m.Timestamp = time.Unix(r.Timestamp/1000, (r.Timestamp%1000)*int64(time.Millisecond))
		}
		set.addMessage(m)
	}
	if codec == CompressionNone {
		return encode(set, nil)
	}
	if version >= 1 {
		for i, msg := range set.Messages {
			msg.Offset = int64(i)
		}
	}
	payload, err := encode(set, nil)
	if err != nil {
		return nil, err
	}
	comp := &Message{Codec: codec, CompressionLevel: CompressionLevelDefault, Value: payload, Set: set}
	if version >= 1 {
		comp.Version = 1
		comp.Timestamp = set.Messages[0].Msg.Timestamp
	}
	outer := &MessageSet{}
	outer.addMessage(comp)
	return encode(outer, nil)
}

// VecOut is one record as sarama's consumer hands it out.
type VecOut struct {
	Offset, Timestamp int64
	LogAppendTime     bool
	Key, Value        []byte
}

// DecodeFetchedSet decodes a fetched message set as sarama's consumer does
// (consumer.go parseMessages).
func DecodeFetchedSet(b []byte) ([]VecOut, error) {
	var ms MessageSet
	if err := decode(b, &ms); err != nil {
		return nil, err
	}
	var out []VecOut
	for _, block := range ms.Messages {
		inner := block.Messages()
		for _, msg := range inner {
			offset := msg.Offset
			ts := msg.Msg.Timestamp
			if msg.Msg.Version >= 1 {
				offset += block.Offset - inner[len(inner)-1].Offset
				if msg.Msg.LogAppendTime {
					ts = block.Msg.Timestamp
				}
			}
			millis := int64(-1)
			if msg.Msg.Version >= 1 && !ts.IsZero() {
				millis = ts.UnixNano() / int64(time.Millisecond)
			}
			out = append(out, VecOut{offset, millis, msg.Msg.LogAppendTime, msg.Msg.Key, msg.Msg.Value})
		}
	}
	return out, nil
}
