#!/usr/bin/env bash
# Build the pinned vegeta (from its Go module, fetched through the Go module proxy) and
# the bench target server into ~/.cache/chaosaa/bench/. Idempotent; never commit binaries.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${CHAOSAA_BENCH_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/chaosaa/bench}"
mkdir -p "$out"
cd "$here"
module=github.com/tsenart/vegeta/v12
version="$(go list -m -f '{{.Version}}' "$module")"
go build -trimpath -ldflags "-s -w -X main.Version=$version" -o "$out/vegeta" "$module"
go build -trimpath -ldflags "-s -w" -o "$out/chaosaa-bench-target" ./target
echo "$out/vegeta"
echo "$out/chaosaa-bench-target"
