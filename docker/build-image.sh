#!/usr/bin/env bash
# Builds the `karst:local` image without any registry: a statically linked karst
# (glibc's static libraries, `crt-static`) built on this machine, stripped, copied
# into an image FROM scratch.
#
#   docker/build-image.sh [TAG]      (default karst:local)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tag="${1:-karst:local}"
target_dir="${CARGO_TARGET_DIR:-$root/target}-static"
triple="$(rustc -vV | sed -n 's/^host: //p')"
RUSTFLAGS='-C target-feature=+crt-static' CARGO_TARGET_DIR="$target_dir" \
    cargo build --release -p karst --target "$triple" --manifest-path "$root/Cargo.toml"
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
cp "$target_dir/$triple/release/karst" "$ctx/karst"
strip "$ctx/karst"
mkdir "$ctx/data"
docker build -q -t "$tag" -f "$root/docker/Dockerfile.scratch" "$ctx" >/dev/null
echo "$tag: $(du -h "$ctx/karst" | cut -f1) binary"
