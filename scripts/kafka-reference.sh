#!/usr/bin/env bash
# Apache Kafka as the reference broker of the differential tests (tests/src/kafka.rs):
# resolves org.apache.kafka:kafka_2.13 and its run-time dependencies with Maven
# (tests/kafka/pom.xml) into a cache directory once, and prints the path of the
# classpath file there (one line: the jars joined by ':'). A cache that is already
# complete is reused without running Maven, so it works offline after the first run.
#
#   scripts/kafka-reference.sh            # prints e.g. ~/.cache/karst/kafka-4.4.0/classpath
#   scripts/kafka-reference.sh clients    # the Java client, tools and Streams
#                                         # (tests/java/pom.xml): .../kafka-4.4.0-clients/classpath
#   scripts/kafka-reference.sh connect    # Kafka Connect and the file connectors
#                                         # (tests/connect/pom.xml): .../kafka-4.4.0-connect/classpath
#
# Settings (environment):
#   KARST_KAFKA_VERSION   Kafka version (default 4.4.0; tests/src/kafka.rs has the same default)
#   KARST_KAFKA_CACHE     cache directory (default ${XDG_CACHE_HOME:-$HOME/.cache}/karst/kafka-<version>;
#                         "-clients" or "-connect" is appended for those)
#
# Nothing here is committed: the jars live only in the cache (and Maven's local repository).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

log() { printf 'kafka-reference: %s\n' "$*" >&2; }

case "${1:-broker}" in
    broker) pom="$root/tests/kafka/pom.xml" suffix="" ;;
    clients) pom="$root/tests/java/pom.xml" suffix="-clients" ;;
    # Its own Kafka version, set in that pom (see there why).
    connect) pom="$root/tests/connect/pom.xml" suffix="-connect" ;;
    *)
        log "usage: $0 [broker|clients]"
        exit 2
        ;;
esac
version="${KARST_KAFKA_VERSION:-4.4.0}"
cache="${KARST_KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/karst/kafka-$version}$suffix"
classpath_file="$cache/classpath"

# Complete when it was resolved from this very pom and the classpath file names only
# jars that are there.
complete() {
    cmp -s "$pom" "$cache/pom.xml" || return 1
    [ -s "$classpath_file" ] || return 1
    local jar
    IFS=: read -r -a jars <"$classpath_file"
    ((${#jars[@]})) || return 1
    for jar in "${jars[@]}"; do
        [ -f "$jar" ] || return 1
    done
}

if complete; then
    printf '%s\n' "$classpath_file"
    exit 0
fi

if ! command -v mvn >/dev/null; then
    log "no Maven (mvn) on PATH: cannot resolve Apache Kafka $version"
    exit 1
fi

mkdir -p "$(dirname "$cache")"
# One resolver at a time (test processes may ask together); the others wait, then
# find the cache complete.
if command -v flock >/dev/null; then
    exec 9>"$cache.lock"
    flock -w 600 9 || { log "timed out waiting for $cache.lock"; exit 1; }
    if complete; then
        printf '%s\n' "$classpath_file"
        exit 0
    fi
fi
# Resolve into a fresh directory and move it into place whole, so an interrupted run
# never leaves a half-filled cache that looks complete.
staging="$(mktemp -d "$(dirname "$cache")/.kafka-$version.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
log "resolving $(basename "$(dirname "$pom")")/pom.xml (Kafka $version) with Maven into $cache"
# Maven's output goes to stderr (stdout is the path), without the colour codes that
# Debian's Maven prints even in batch mode.
mvn -q -B -Dstyle.color=never -f "$pom" \
    -Dkafka.version="$version" \
    dependency:copy-dependencies \
    -DincludeScope=runtime \
    -DoutputDirectory="$staging/lib" 2>&1 | sed 's/\x1b\[[0-9;]*m//g' >&2

shopt -s nullglob
jars=("$staging"/lib/*.jar)
if ! ((${#jars[@]})); then
    log "Maven resolved no jars for Kafka $version"
    exit 1
fi
names=()
for jar in "${jars[@]}"; do
    names+=("$cache/lib/$(basename "$jar")")
done
(
    IFS=:
    printf '%s\n' "${names[*]}"
) >"$staging/classpath"
printf '%s\n' "$version" >"$staging/version"
cp "$pom" "$staging/pom.xml"

rm -rf "$cache"
mv "$staging" "$cache"
trap - EXIT
log "${#jars[@]} jars in $cache/lib"
printf '%s\n' "$classpath_file"
