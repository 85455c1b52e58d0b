// Package common holds what every Go client program under tests/go shares: the
// "OK <step>" / "FAIL <why>" line protocol its Rust runner reads, bounded contexts
// and the benchmark line benches/clients.sh parses. Each program is its own module
// (its own client library and go.sum) and takes this one by a local replace.
package common

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"time"
)

// OK reports a step that held.
func OK(format string, args ...any) { fmt.Printf("OK "+format+"\n", args...) }

// Fail reports why the scenario failed and exits 1.
func Fail(format string, args ...any) {
	fmt.Printf("FAIL "+format+"\n", args...)
	os.Exit(1)
}

// Check fails unless cond holds.
func Check(cond bool, format string, args ...any) {
	if !cond {
		Fail(format, args...)
	}
}

// Must fails on err, naming what failed.
func Must(err error, what string) {
	if err != nil {
		Fail("%s: %v", what, err)
	}
}

// CtxFor is a context that ends after d.
func CtxFor(d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	_ = cancel // released at the deadline; the programs are short-lived
	return ctx
}

// BenchLine prints the one line benches/clients.sh reads from a bench run.
func BenchLine(client string, n, size int, produce, first, consume time.Duration) {
	fmt.Printf("BENCH client=%s records=%d bytes=%d produce_s=%.4f first_s=%.4f consume_s=%.4f\n",
		client, n, size, produce.Seconds(), first.Seconds(), consume.Seconds())
}

// CAPool reads the PEM CA certificates a secured client verifies the broker with.
func CAPool(caFile string) *x509.CertPool {
	pem, err := os.ReadFile(caFile)
	Must(err, "reading the CA")
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		Fail("no certificate in %s", caFile)
	}
	return pool
}
