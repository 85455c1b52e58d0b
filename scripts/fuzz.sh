#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ (cargo-fuzz, libFuzzer) for a bounded time, from the
# committed seed corpus in fuzz/corpus/<target>/. Fails if any target finds a crash (a
# panic, abort, timeout or out-of-memory): the input is left in fuzz/artifacts/<target>/
# and printed. New inputs the fuzzer finds go to a scratch directory, not to the corpus.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 15)
# Reproduce a crash: cargo fuzz run --dev -s none --fuzz-dir fuzz TARGET fuzz/artifacts/TARGET/crash-...
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-15}"
log() { printf '==> %s\n' "$*" >&2; }

if ! cargo fuzz --version >/dev/null 2>&1; then
    log "cargo install cargo-fuzz"
    cargo install -q cargo-fuzz --locked
fi

# No sanitizer: the code under test is safe Rust (plus storage's mmap module), where a
# bug shows as a panic, which libFuzzer reports as a crash without one. Without a
# sanitizer cargo-fuzz needs no unstable rustc option (-Zsanitizer would need nightly
# or RUSTC_BOOTSTRAP=1), so the stable toolchain builds the targets.
# Its own target directory: the instrumented build must not evict the normal one.
export CARGO_TARGET_DIR="${KARST_FUZZ_TARGET_DIR:-$PWD/fuzz/target}"
fuzz=(cargo fuzz)
build_flags=(--sanitizer none --fuzz-dir fuzz)
# Unoptimized by default: it builds in half the CPU time of an optimized build, which
# matters more than speed of execution for a bounded run in the test suite. Longer
# hunts: KARST_FUZZ_RELEASE=1 scripts/fuzz.sh 600.
if [ "${KARST_FUZZ_RELEASE:-0}" = 1 ]; then
    build_flags+=(--release)
else
    build_flags+=(--dev)
fi

start=$SECONDS
log "cargo fuzz build (target dir $CARGO_TARGET_DIR)"
"${fuzz[@]}" build "${build_flags[@]}"
log "built in $((SECONDS - start)) s"

mapfile -t targets < <("${fuzz[@]}" list --fuzz-dir fuzz)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
status=0
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t" "fuzz/corpus/$t"
    log "fuzz $t for ${seconds} s"
    run_start=$SECONDS
    # The scratch dir comes first: libFuzzer writes new inputs to the first corpus dir only.
    if "${fuzz[@]}" run "${build_flags[@]}" "$t" "$scratch/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$scratch/$t.log" 2>&1; then
        runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$scratch/$t.log" | grep -o '[0-9]*$' || true)
        log "$t: no crash in $((SECONDS - run_start)) s, ${runs:-?} inputs"
    else
        status=1
        tail -n 60 "$scratch/$t.log" >&2
        for f in fuzz/artifacts/"$t"/*; do
            [ -f "$f" ] || continue
            log "$t: crashing input $f"
            od -A x -t x1z -v "$f" | head -n 40 >&2
        done
        log "$t: FAILED"
    fi
done
log "fuzzing took $((SECONDS - start)) s in all"
exit "$status"
