package main

// franz secure <bootstrap> <topic> <user> <password> <ca-file>: kgo over SASL_SSL with
// SCRAM-SHA-512, verifying the broker's certificate against ca-file: 100 records
// produced (acks=all, idempotent) and read back in order; then the same user with a
// wrong password must fail to authenticate.
// franz oauth <bootstrap> <topic> <token> <bad-token> <ca-file>: the same with
// OAUTHBEARER and a JWT; the bad token must fail to authenticate.
// franz mtls <bootstrap> <topic> <ca-file> <cert-file> <key-file>: SSL with a client
// certificate: 100 records produced and read back; without the certificate the
// connection must fail.

import (
	"context"
	"crypto/tls"
	"fmt"
	"karsttests/common"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

func tlsOpts(bootstrap, caFile string, certs []tls.Certificate) []kgo.Opt {
	host := bootstrap[:strings.LastIndex(bootstrap, ":")]
	return []kgo.Opt{
		kgo.SeedBrokers(bootstrap),
		kgo.DialTLSConfig(&tls.Config{RootCAs: common.CAPool(caFile), ServerName: host, MinVersion: tls.VersionTLS12, Certificates: certs}),
	}
}

func mtlsMode(bootstrap, topic, caFile, certFile, keyFile string) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	must(err, "the client certificate")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	p, err := kgo.NewClient(append(tlsOpts(bootstrap, caFile, []tls.Certificate{pair}), kgo.AllowAutoTopicCreation())...)
	must(err, "producer")
	for i := 0; i < 100; i++ {
		must(p.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte(fmt.Sprintf("m-%03d", i))}).FirstErr(), "produce over mTLS")
	}
	p.Close()
	c, err := kgo.NewClient(append(tlsOpts(bootstrap, caFile, []tls.Certificate{pair}), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	must(err, "consumer")
	got := 0
	for got < 100 {
		fs := c.PollFetches(ctx)
		if errs := fs.Errors(); len(errs) > 0 {
			fail("fetch: %v", errs[0].Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if string(r.Value) != fmt.Sprintf("m-%03d", got) {
				fail("record %d is %q", got, r.Value)
			}
			got++
		})
	}
	c.Close()
	ok("franz-go produced and read back 100 records over SSL with a client certificate")
	anon, err := kgo.NewClient(tlsOpts(bootstrap, caFile, nil)...)
	must(err, "client without a certificate")
	defer anon.Close()
	pctx, pcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer pcancel()
	if err := anon.Ping(pctx); err == nil {
		fail("a client without a certificate was let in")
	}
	ok("a client without a certificate is refused")
}

func secureOpts(bootstrap, caFile string, mechanism sasl.Mechanism) []kgo.Opt {
	return append(tlsOpts(bootstrap, caFile, nil), kgo.SASL(mechanism))
}

func secureMode(bootstrap, topic, user, password, caFile string) {
	good := scram.Auth{User: user, Pass: password}.AsSha512Mechanism()
	bad := scram.Auth{User: user, Pass: password + "-wrong"}.AsSha512Mechanism()
	secureRoundtrip(bootstrap, topic, caFile, good, bad, "SCRAM-SHA-512", "a wrong password")
}

func oauthMode(bootstrap, topic, token, badToken, caFile string) {
	good := oauth.Auth{Token: token}.AsMechanism()
	bad := oauth.Auth{Token: badToken}.AsMechanism()
	secureRoundtrip(bootstrap, topic, caFile, good, bad, "OAUTHBEARER", "a bad token")
}

func secureRoundtrip(bootstrap, topic, caFile string, good, bad sasl.Mechanism, mechanism, badWhat string) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	p, err := kgo.NewClient(append(secureOpts(bootstrap, caFile, good), kgo.AllowAutoTopicCreation())...)
	must(err, "producer")
	const n = 100
	for i := 0; i < n; i++ {
		r := &kgo.Record{Topic: topic, Value: []byte(fmt.Sprintf("v-%03d", i))}
		must(p.ProduceSync(ctx, r).FirstErr(), "produce over SASL_SSL")
	}
	p.Close()
	ok("franz-go produced 100 records over SASL_SSL with %s", mechanism)
	c, err := kgo.NewClient(append(secureOpts(bootstrap, caFile, good), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
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
	refused, err := kgo.NewClient(secureOpts(bootstrap, caFile, bad)...)
	must(err, "client with "+badWhat)
	defer refused.Close()
	pctx, pcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer pcancel()
	err = refused.Ping(pctx)
	if err == nil || !strings.Contains(err.Error(), "SASL_AUTHENTICATION_FAILED") {
		fail("%s: expected SASL_AUTHENTICATION_FAILED, got %v", badWhat, err)
	}
	ok("%s is refused: SASL_AUTHENTICATION_FAILED", badWhat)
}
