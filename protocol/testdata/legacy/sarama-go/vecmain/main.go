// sarama-vectors gen DIR: DIR/v{0,1}-{codec}.bin, the fixed records of
// KafkaOracle.java as sarama 1.22's producer encodes them.
// sarama-vectors read DIR: DIR/*.sarama, sarama's consumer's reading of each DIR/down-*.bin.
package main

import (
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"

	"github.com/Shopify/sarama"
)

func records(big bool) []sarama.VecRecord {
	var out []sarama.VecRecord
	for i := 0; i < 12; i++ {
		var key, value []byte
		if i%3 != 0 {
			key = []byte(fmt.Sprintf("key-%d", i))
		}
		switch {
		case i%5 == 0:
		case i%7 == 0:
			value = []byte{}
		case i == 8 && big:
			value = make([]byte, 70000)
			for j := range value {
				value[j] = byte((j*31 + j/1000) & 0xff)
			}
		default:
			value = []byte(strings.Repeat(fmt.Sprintf("value-%d", i), i))
		}
		ts := int64(1600000000000) + int64(i)*1000 - int64(i%4)*3000
		out = append(out, sarama.VecRecord{Key: key, Value: value, Timestamp: ts})
	}
	return out
}

func hex(b []byte) string {
	if b == nil {
		return "-"
	}
	if len(b) > 64 {
		return fmt.Sprintf("#%d:%x", len(b), crc32.ChecksumIEEE(b))
	}
	return fmt.Sprintf("x%x", b)
}

func main() {
	dir := os.Args[2]
	codecs := []struct {
		name  string
		codec sarama.CompressionCodec
	}{{"none", sarama.CompressionNone}, {"gzip", sarama.CompressionGZIP}, {"snappy", sarama.CompressionSnappy}, {"lz4", sarama.CompressionLZ4}}
	switch os.Args[1] {
	case "gen":
		for _, c := range codecs {
			for v := int8(0); v <= 1; v++ {
				b, err := sarama.EncodeProduceSet(v, c.codec, records(c.codec != sarama.CompressionNone))
				if err != nil {
					panic(err)
				}
				if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("v%d-%s.bin", v, c.name)), b, 0o644); err != nil {
					panic(err)
				}
			}
		}
	case "read":
		files, _ := filepath.Glob(filepath.Join(dir, "down-*.bin"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				panic(err)
			}
			var s strings.Builder
			recs, err := sarama.DecodeFetchedSet(b)
			if err != nil {
				s.WriteString("error " + err.Error() + "\n")
			} else {
				s.WriteString("ok\n")
				for _, r := range recs {
					lat := 0
					if r.LogAppendTime {
						lat = 1
					}
					fmt.Fprintf(&s, "%d %d %d %s %s\n", r.Offset, r.Timestamp, lat, hex(r.Key), hex(r.Value))
				}
			}
			out := strings.TrimSuffix(f, ".bin") + ".sarama"
			if err := os.WriteFile(out, []byte(s.String()), 0o644); err != nil {
				panic(err)
			}
		}
	}
}
