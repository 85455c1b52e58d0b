#!/usr/bin/env bash
# TLS beside plaintext (issue 21, acceptance 5): the same producer against one Karst
# over PLAINTEXT, SSL and SASL_SSL (SCRAM-SHA-512), one listener after the other. A
# benchmark, not a timed test.
#
#   benches/tls.sh [--seconds N] [--size BYTES] [--out FILE]
#
# One Karst (release, its defaults: fsync before every acknowledgement) with three
# listeners on free 127.0.0.1 ports, a certificate from a CA made here with openssl
# (P-256), and a SCRAM-SHA-512 user made with `karst user add`. For each listener a
# confluent-kafka producer (benches/quota_client.py: SIZE-byte messages, default 1000,
# acks=all, unpaced, its own topic keeping 512 MiB) runs --seconds (default 15): its
# acknowledged MB/s and messages/s, acknowledgement latency percentiles, and the share
# of the plaintext figure. Writes benches/results/<UTC date>-tls.md. About a minute
# once built.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

seconds=15
size=1000
out="$here/results/$(date -u +%F)-tls.md"
args_given="$*"
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds="$2"; shift 2 ;;
        --size) size="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        *) echo "usage: $0 [--seconds N] [--size BYTES] [--out FILE]" >&2; exit 2 ;;
    esac
done

log() { echo "[tls.sh] $*" >&2; }
for tool in python3 openssl; do
    command -v "$tool" >/dev/null || { log "needs $tool on PATH"; exit 1; }
done
python3 -c 'import confluent_kafka' 2>/dev/null || { log "needs confluent-kafka (pip install confluent-kafka)"; exit 1; }

# shellcheck source=benches/single-karst.sh
. "$here/single-karst.sh"
single_karst_setup tls

# A CA and a server certificate for 127.0.0.1 (Kafka's PEM keystore: key, then chain).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=Karst bench CA" \
    -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=karst-bench" \
    -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$work/san.ext"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial -days 2 \
    -extfile "$work/san.ext" -out "$work/server.crt" 2>/dev/null
openssl pkcs8 -topk8 -nocrypt -in "$work/server.key" -out "$work/server.p8" 2>/dev/null
cat "$work/server.p8" "$work/server.crt" >"$work/keystore.pem"

plain="127.0.0.1:$(free_port)"
ssl="127.0.0.1:$(free_port)"
sasl="127.0.0.1:$(free_port)"
single_karst_start --listen "PLAINTEXT://$plain,SSL://$ssl,SASL_SSL://$sasl" \
    --set "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL" \
    --set "ssl.keystore.type=PEM" --set "ssl.keystore.location=$work/keystore.pem" \
    --set "sasl.enabled.mechanisms=SCRAM-SHA-512" --set "log.retention.check.interval.ms=1000"
"$KARST_BIN" user add bench --password bench-secret --mechanism SCRAM-SHA-512 -b "$plain" >/dev/null
for t in t-plain t-ssl t-sasl; do
    "$KARST_BIN" topic create "$t" -b "$plain" --config retention.bytes=536870912 --config segment.bytes=67108864 >/dev/null
done

run() { python3 "$here/quota_client.py" "$1" "$2" "bench-$2" "$seconds" "$size" 0 "$3"; }
log "PLAINTEXT for $seconds s"
r_plain="$(run "$plain" t-plain '{}')"
log "SSL for $seconds s"
r_ssl="$(run "$ssl" t-ssl "{\"security.protocol\": \"SSL\", \"ssl.ca.location\": \"$work/ca.pem\"}")"
log "SASL_SSL (SCRAM-SHA-512) for $seconds s"
r_sasl="$(run "$sasl" t-sasl "{\"security.protocol\": \"SASL_SSL\", \"ssl.ca.location\": \"$work/ca.pem\", \"sasl.mechanisms\": \"SCRAM-SHA-512\", \"sasl.username\": \"bench\", \"sasl.password\": \"bench-secret\"}")"

mkdir -p "$(dirname "$out")"
python3 - "$r_plain" "$r_ssl" "$r_sasl" "$seconds" "$size" "$args_given" "$(git -C "$root" rev-parse --short HEAD)" >"$out" <<'PY'
import json, sys
plain, ssl, sasl = (json.loads(a) for a in sys.argv[1:4])
seconds, size, args, rev = sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]
mb = lambda r: r["bytes"] / r["seconds"] / 1e6
msgs = lambda r: r["messages"] / r["seconds"]
print("# TLS beside plaintext: one producer per listener\n")
print(f"`benches/tls.sh {args}`, Karst {rev}; {size}-byte messages, acks=all, unpaced confluent-kafka producer, {seconds} s each, one after the other.\n")
print("| listener | MB/s | msgs/s | share of PLAINTEXT | ack latency p50 / p99 / p99.9 (ms) |")
print("|---|---|---|---|---|")
for name, r in [("PLAINTEXT", plain), ("SSL (TLS 1.3, P-256)", ssl), ("SASL_SSL, SCRAM-SHA-512", sasl)]:
    print(f"| {name} | {mb(r):.1f} | {msgs(r):,.0f} | {100*mb(r)/mb(plain):.0f} % | {r['p50_ms']:.1f} / {r['p99_ms']:.1f} / {r['p999_ms']:.1f} |")
PY
cat "$out"
