package main

// sarama secure <scram-addr> <oauth-addr> <mtls-addr> <topic> <user> <password> <ca-file>
//               <token> <bad-token> <client-cert> <client-key>
// SASL_SSL with SCRAM-SHA-512 (xdg-go/scram, as sarama's documentation shows) at
// scram-addr, SASL_SSL with OAUTHBEARER (a token provider handing over token) at
// oauth-addr, and SSL with a client certificate at mtls-addr, each verifying the
// broker against ca-file: 50 records produced (acks=all) and read back in order on
// each; then a wrong password and a bad token must fail with SASL_AUTHENTICATION_FAILED.

import (
	"crypto/tls"
	"fmt"
	"karsttests/common"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/xdg-go/scram"
)

type xdgSCRAM struct {
	*scram.Client
	*scram.ClientConversation
}

func (x *xdgSCRAM) Begin(user, password, authzID string) error {
	c, err := scram.SHA512.NewClient(user, password, authzID)
	if err != nil {
		return err
	}
	x.Client = c
	x.ClientConversation = c.NewConversation()
	return nil
}

func (x *xdgSCRAM) Step(challenge string) (string, error) {
	return x.ClientConversation.Step(challenge)
}
func (x *xdgSCRAM) Done() bool { return x.ClientConversation.Done() }

type staticToken string

func (t staticToken) Token() (*sarama.AccessToken, error) {
	return &sarama.AccessToken{Token: string(t)}, nil
}

func tlsConfig(bootstrap, caFile, certFile, keyFile string) *tls.Config {
	pool := common.CAPool(caFile)
	c := &tls.Config{RootCAs: pool, ServerName: bootstrap[:strings.LastIndex(bootstrap, ":")], MinVersion: tls.VersionTLS12}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		must(err, "the client certificate")
		c.Certificates = []tls.Certificate{pair}
	}
	return c
}

func secureConfig(bootstrap, caFile string, setup func(c *sarama.Config)) *sarama.Config {
	c := config(&sarama.V3_6_0_0)
	c.Net.TLS.Enable = true
	c.Net.TLS.Config = tlsConfig(bootstrap, caFile, "", "")
	setup(c)
	return c
}

func roundtrip(bootstrap, topic, what string, c *sarama.Config) {
	p, err := sarama.NewSyncProducer([]string{bootstrap}, c)
	must(err, what+": producer")
	var want []string
	for i := 0; i < 50; i++ {
		v := fmt.Sprintf("%s-%02d", what, i)
		_, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(v)})
		must(err, what+": produce")
		want = append(want, v)
	}
	must(p.Close(), what+": close producer")
	cons, err := sarama.NewConsumer([]string{bootstrap}, c)
	must(err, what+": consumer")
	pc, err := cons.ConsumePartition(topic, 0, sarama.OffsetOldest)
	must(err, what+": ConsumePartition")
	for i := range want {
		select {
		case m := <-pc.Messages():
			if string(m.Value) != want[i] {
				fail("%s: record %d is %q", what, i, m.Value)
			}
		case err := <-pc.Errors():
			fail("%s: consume: %v", what, err)
		case <-time.After(timeout):
			fail("%s: read %d of %d", what, i, len(want))
		}
	}
	pc.Close()
	cons.Close()
	ok("sarama produced and read back 50 records over %s", what)
}

func refused(bootstrap, what string, c *sarama.Config) {
	c.Metadata.Retry.Max = 0
	client, err := sarama.NewClient([]string{bootstrap}, c)
	if err == nil {
		client.Close()
		fail("%s was let in", what)
	}
	if !strings.Contains(err.Error(), "SASL") && !strings.Contains(err.Error(), "authenticat") {
		fail("%s: expected an authentication failure, got %v", what, err)
	}
	ok("%s is refused: %v", what, err)
}

func secureMode(args []string) {
	scramAddr, oauthAddr, mtlsAddr, topic, user, password, caFile, token, badToken, certFile, keyFile :=
		args[0], args[1], args[2], args[3], args[4], args[5], args[6], args[7], args[8], args[9], args[10]
	withScram := func(pw string) func(c *sarama.Config) {
		return func(c *sarama.Config) {
			c.Net.SASL.Enable = true
			c.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA512
			c.Net.SASL.User, c.Net.SASL.Password = user, pw
			c.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &xdgSCRAM{} }
		}
	}
	withToken := func(t string) func(c *sarama.Config) {
		return func(c *sarama.Config) {
			c.Net.SASL.Enable = true
			c.Net.SASL.Mechanism = sarama.SASLTypeOAuth
			c.Net.SASL.TokenProvider = staticToken(t)
		}
	}
	roundtrip(scramAddr, topic+"-scram", "SASL_SSL/SCRAM-SHA-512", secureConfig(scramAddr, caFile, withScram(password)))
	roundtrip(oauthAddr, topic+"-oauth", "SASL_SSL/OAUTHBEARER", secureConfig(oauthAddr, caFile, withToken(token)))
	mtls := secureConfig(mtlsAddr, caFile, func(c *sarama.Config) {})
	mtls.Net.TLS.Config = tlsConfig(mtlsAddr, caFile, certFile, keyFile)
	roundtrip(mtlsAddr, topic+"-mtls", "SSL with a client certificate", mtls)
	refused(scramAddr, "a wrong SCRAM password", secureConfig(scramAddr, caFile, withScram(password+"-wrong")))
	refused(oauthAddr, "a token signed by another key", secureConfig(oauthAddr, caFile, withToken(badToken)))
}
