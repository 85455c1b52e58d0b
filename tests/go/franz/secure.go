package main

// franz secure <bootstrap> <topic> <user> <password> <ca-file>: kgo over SASL_SSL with
// SCRAM-SHA-512, verifying the broker's certificate against ca-file: 100 records
// produced (acks=all, idempotent) and read back in order; then the same user with a
// wrong password must fail to authenticate.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

func secureOpts(bootstrap, user, password, caFile string) []kgo.Opt {
	pem, err := os.ReadFile(caFile)
	must(err, "reading the CA")
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		fail("no certificate in %s", caFile)
	}
	host := bootstrap[:strings.LastIndex(bootstrap, ":")]
	return []kgo.Opt{
		kgo.SeedBrokers(bootstrap),
		kgo.DialTLSConfig(&tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12}),
		kgo.SASL(scram.Auth{User: user, Pass: password}.AsSha512Mechanism()),
	}
}

func secureMode(bootstrap, topic, user, password, caFile string) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	p, err := kgo.NewClient(append(secureOpts(bootstrap, user, password, caFile), kgo.AllowAutoTopicCreation())...)
	must(err, "producer")
	const n = 100
	for i := 0; i < n; i++ {
		r := &kgo.Record{Topic: topic, Value: []byte(fmt.Sprintf("v-%03d", i))}
		must(p.ProduceSync(ctx, r).FirstErr(), "produce over SASL_SSL")
	}
	p.Close()
	ok("franz-go produced 100 records over SASL_SSL with SCRAM-SHA-512")
	c, err := kgo.NewClient(append(secureOpts(bootstrap, user, password, caFile), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	must(err, "consumer")
	got := 0
	for got < n {
		fs := c.PollFetches(ctx)
		if errs := fs.Errors(); len(errs) > 0 {
			fail("fetch: %v", errs[0].Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if string(r.Value) != fmt.Sprintf("v-%03d", got) {
				fail("record %d is %q", got, r.Value)
			}
			got++
		})
	}
	c.Close()
	ok("franz-go read them back in order")
	bad, err := kgo.NewClient(secureOpts(bootstrap, user, password+"-wrong", caFile)...)
	must(err, "client with a wrong password")
	defer bad.Close()
	pctx, pcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer pcancel()
	err = bad.Ping(pctx)
	if err == nil || !strings.Contains(err.Error(), "SASL_AUTHENTICATION_FAILED") {
		fail("a wrong password: expected SASL_AUTHENTICATION_FAILED, got %v", err)
	}
	ok("a wrong password is refused: SASL_AUTHENTICATION_FAILED")
}
