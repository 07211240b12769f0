#!/usr/bin/env bash
# Build the pinned Toxiproxy server (from its Go module, fetched through the Go module
# proxy; version pinned in go.mod) into ~/.cache/chaosaa/bench/, for bench/lab_proxy.py.
# Idempotent; never commit binaries.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${CHAOSAA_BENCH_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/chaosaa/bench}"
mkdir -p "$out"
cd "$here"
module=github.com/Shopify/toxiproxy/v2
version="$(go list -m -f '{{.Version}}' "$module")"
go build -trimpath -ldflags "-s -w -X $module.Version=$version" \
    -o "$out/toxiproxy-server" "$module/cmd/server"
echo "$out/toxiproxy-server"
