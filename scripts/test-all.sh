#!/usr/bin/env bash
# The whole Karst test suite, from a fresh Debian 12 machine (run as root, or as a user
# with sudo): installs the external clients the end-to-end tests drive (kcat, Go +
# Debian's sarama, confluent-kafka for Python, the Go modules of franz-go, sarama and
# kafka-go, KafkaJS) and the toolchain bits librdkafka needs
# to build from source, checks formatting and clippy, resolves Apache Kafka's jars (the
# differential tests' reference broker) into a cache, then builds the broker, runs every
# test with nextest and runs each fuzz target for a bounded time (scripts/fuzz.sh).
# Idempotent: anything already present is skipped. Exits non-zero if any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

# ---- system packages ------------------------------------------------------------------
packages=(
    kcat                               # tests/tests/kcat.rs
    golang-go                          # tests/tests/sarama.rs
    golang-github-shopify-sarama-dev   # sarama 1.22 sources, built offline
    build-essential pkg-config cmake zlib1g-dev libzstd-dev  # rdkafka-sys builds librdkafka
    python3 python3-pip                # tests/tests/confluent.rs
    ca-certificates curl
)
missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
if ((${#missing[@]})); then
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ---- current Go and Node.js clients (tests/go/*, tests/node) -----------------------------
# franz-go, the current sarama and kafka-go are Go modules with go.sum committed: their
# dependencies are downloaded into the module cache here and the tests build from it
# with -mod=readonly. KafkaJS is installed exactly as tests/node/package-lock.json says.
# Debian's Go (1.19) is older than these modules need; a Go or Node.js that is missing
# or too old makes those tests skip, saying why, rather than fail.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
    log "apt-get install nodejs npm (tests/tests/kafkajs.rs)"
    if ! { DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null; }; then
        log "installing Node.js failed: the KafkaJS tests will skip"
    fi
fi
if command -v npm >/dev/null; then
    log "npm ci (tests/node: KafkaJS)"
    (cd tests/node && npm ci --no-audit --no-fund --loglevel=error) || log "npm ci failed: the KafkaJS tests will skip"
fi
for module in tests/go/*/; do
    log "go mod download (${module%/})"
    (cd "$module" && GOFLAGS=-mod=readonly GOTOOLCHAIN=local go mod download) ||
        log "go mod download failed in ${module%/} (no Go, or one too old): its tests will skip or fail, saying why"
done

# ---- confluent-kafka (Python) -----------------------------------------------------------
if ! python3 -c 'import confluent_kafka' 2>/dev/null; then
    log "pip install confluent-kafka"
    # Debian's own python3 is "externally managed" (PEP 668); a pyenv/venv python is not.
    python3 -m pip install -q --disable-pip-version-check confluent-kafka 2>/dev/null ||
        python3 -m pip install -q --disable-pip-version-check --break-system-packages confluent-kafka
fi

# ---- PyYAML (scripts/check-deploy.py, tests/tests/deploy_files.rs) ---------------------------
if ! python3 -c 'import yaml' 2>/dev/null; then
    log "pip install PyYAML"
    python3 -m pip install -q --disable-pip-version-check PyYAML 2>/dev/null ||
        python3 -m pip install -q --disable-pip-version-check --break-system-packages PyYAML
fi

# ---- Rust toolchain bits ------------------------------------------------------------------
if ! command -v cargo >/dev/null; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    else
        log "no cargo found: install a Rust toolchain (rustup) first"
        exit 1
    fi
fi
if ! cargo clippy --version >/dev/null 2>&1 || ! cargo fmt --version >/dev/null 2>&1; then
    log "rustup component add clippy rustfmt"
    rustup component add clippy rustfmt
fi
if ! cargo nextest --version >/dev/null 2>&1; then
    log "cargo install cargo-nextest"
    cargo install -q cargo-nextest --locked
fi

# ---- format and lints ------------------------------------------------------------------------
# Checked first (cheap), recorded, and the tests still run so one run shows everything.
status=0
log "cargo fmt --all --check"
cargo fmt --all --check || status=$?
log "cargo fmt --check (fuzz/)"
cargo fmt --manifest-path fuzz/Cargo.toml --check || status=$?
log "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings || status=$?

# ---- Apache Kafka, the reference broker (tests/tests/differential.rs) ----------------------
# Kafka 4 runs on Java 17+; Debian's JRE and Maven are installed where missing (best
# effort: without a JVM the differential tests skip, saying why). Its jars are resolved
# once into a cache (scripts/kafka-reference.sh, reused offline afterwards) and the
# cache is named in KARST_KAFKA_CLASSPATH, so the tests never skip here: with that set,
# a missing Kafka fails them.
if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
    log "apt-get install openjdk-17-jre-headless maven (Apache Kafka for the differential tests)"
    if ! { DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
            openjdk-17-jre-headless maven >/dev/null; }; then
        log "installing a JVM and Maven failed"
    fi
fi
if command -v java >/dev/null && command -v mvn >/dev/null; then
    # resolve <kafka-reference.sh argument> <variable> <what it is for>
    resolve() {
        log "scripts/kafka-reference.sh $1 ($3: jars resolved once into a cache)"
        local file
        if file=$(timeout 900 bash scripts/kafka-reference.sh "$1"); then
            export "$2=$file"
            log "$2=$file"
        else
            log "resolving $3 failed: its tests will fail"
            status=1
        fi
    }
    resolve broker KARST_KAFKA_CLASSPATH "Apache Kafka ${KARST_KAFKA_VERSION:-4.4.0}, the reference broker"
    resolve clients KARST_KAFKA_CLIENTS_CLASSPATH "the Java client, Kafka's tools and Streams"
    resolve connect KARST_KAFKA_CONNECT_CLASSPATH "Kafka Connect and the file connectors"
else
    log "no java or mvn: the differential and Java client tests will skip"
fi

# ---- build and test -------------------------------------------------------------------------
# One build of every binary and test target, so features unify once and nothing is
# compiled twice. The benchmark harness (benches/, with its peers' client crates) has
# its own command, benches/run.sh, and stays out of the test build.
exclude=(--exclude karst-benches)
log "cargo build --workspace --bins --tests"
cargo build --workspace "${exclude[@]}" --bins --tests
target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
export KARST_BIN="$target_dir/debug/karst"
log "KARST_BIN=$KARST_BIN"

# The container image for tests/tests/docker.rs, where a Docker engine and
# docker-compose are present (the test says why it skips otherwise).
if command -v docker-compose >/dev/null && docker info >/dev/null 2>&1; then
    log "docker/build-image.sh karst:local (static binary, image FROM scratch)"
    if CARGO_TARGET_DIR="$target_dir" docker/build-image.sh karst:local; then
        export KARST_IMAGE=karst:local
    else
        log "building the image failed: the Docker test will skip"
    fi
else
    log "no Docker engine or docker-compose: the Docker test will skip"
fi

# anyhow errors returned by tests: no backtrace noise (panics keep RUST_BACKTRACE).
export RUST_LIB_BACKTRACE="${RUST_LIB_BACKTRACE:-0}"

log "cargo nextest run --workspace --no-fail-fast"
cargo nextest run --workspace "${exclude[@]}" --no-fail-fast || status=$?
log "cargo test --doc --workspace"
cargo test --doc --workspace "${exclude[@]}" || status=$?

# Every decoder of outside bytes, fuzzed for a bounded time from the committed corpus
# (KARST_FUZZ_SECONDS per target; 0 skips). Fails on any crash, leaving the input in
# fuzz/artifacts/.
fuzz_seconds="${KARST_FUZZ_SECONDS:-15}"
if [ "$fuzz_seconds" -gt 0 ]; then
    log "scripts/fuzz.sh $fuzz_seconds"
    bash scripts/fuzz.sh "$fuzz_seconds" || status=$?
fi

if [ "$status" -ne 0 ]; then
    log "FAILED (exit $status)"
else
    log "all tests passed"
fi
exit "$status"
