#!/usr/bin/env bash
# Runs Karst and its peers side by side on this machine and writes
# benches/results/<UTC date>.md (tables) with PNG plots beside it.
#
#   benches/run.sh [--quick] [--skip-install] [harness options, e.g. --only karst,null\ broker --skip ef]
#
# Installs what it needs from the package registries when missing (Debian:
# redis-server, nats-server, rabbitmq-server, fonts-dejavu-core; cargo install: tansu
# with its memory and SQLite storage engines, cached in ~/.cargo/bin; a JRE and
# Maven for Apache Kafka, whose jars scripts/kafka-reference.sh resolves once into a
# cache), builds `karst` and the bench binaries in release, then runs the harness.
# Every server listens on 127.0.0.1 only and is stopped by the harness.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

quick=""
install=1
pass=()
for a in "$@"; do
    case "$a" in
        --quick) quick="--quick" ;;
        --skip-install) install=0 ;;
        *) pass+=("$a") ;;
    esac
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/target-bench}"
log() { echo "[run.sh] $*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi
}

if [ "$install" = 1 ]; then
    want=()
    command -v redis-server >/dev/null || want+=(redis-server)
    command -v nats-server >/dev/null || want+=(nats-server)
    [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || command -v rabbitmq-server >/dev/null || want+=(rabbitmq-server)
    [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || want+=(fonts-dejavu-core)
    # Apache Kafka 4 needs Java 17+; Maven resolves its jars (scripts/kafka-reference.sh).
    command -v java >/dev/null || want+=(openjdk-17-jre-headless)
    command -v mvn >/dev/null || want+=(maven)
    if [ ${#want[@]} -gt 0 ]; then
        log "installing ${want[*]}"
        # Keep the packages' services from starting (they would listen on
        # default ports, RabbitMQ on every interface): the harness starts its own.
        made_policy=0
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null && as_root chmod +x /usr/sbin/policy-rc.d && made_policy=1
        fi
        as_root apt-get update -qq || log "apt-get update failed"
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q --no-install-recommends "${want[@]}" \
            || log "apt-get install failed: the report will list what is missing"
        [ "$made_policy" = 1 ] && as_root rm -f /usr/sbin/policy-rc.d
        # A service that started anyway is stopped (systemd machines).
        for s in redis-server nats-server rabbitmq-server; do
            if command -v systemctl >/dev/null && systemctl is-active --quiet "$s" 2>/dev/null; then
                as_root systemctl stop "$s" || true
                as_root systemctl disable "$s" 2>/dev/null || true
            fi
        done
    fi
    if [ ! -x "$HOME/.cargo/bin/tansu" ]; then
        log "installing tansu with cargo install (memory and SQLite storage; a long compile, once)"
        CARGO_TARGET_DIR=/tmp/target-tansu cargo install tansu --locked --features "dynostore,libsql" \
            || log "cargo install tansu failed: the report will say Tansu did not run"
    fi
fi

log "building karst and the bench binaries (release)"
cargo build --release -p karst -p karst-benches

tansu=()
[ -x "$HOME/.cargo/bin/tansu" ] && tansu=(--tansu "$HOME/.cargo/bin/tansu")

# Apache Kafka's jars: a cache that is complete is reused without Maven (offline).
kafka=()
cp_file="${KARST_KAFKA_CLASSPATH:-}"
if [ -z "$cp_file" ] && ! cp_file=$(timeout 900 bash "$root/scripts/kafka-reference.sh"); then
    log "no Apache Kafka jars: the report will say Kafka did not run"
    cp_file=""
fi
[ -n "$cp_file" ] && kafka=(--kafka-classpath "$cp_file")

mkdir -p "$here/results"
exec "$CARGO_TARGET_DIR/release/harness" $quick \
    --bin-dir "$CARGO_TARGET_DIR/release" \
    --karst "$CARGO_TARGET_DIR/release/karst" \
    --results "$here/results" \
    "${tansu[@]}" "${kafka[@]}" "${pass[@]}"
