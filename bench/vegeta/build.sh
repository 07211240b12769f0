#!/usr/bin/env bash
# Build the pinned vegeta (from its Go module, fetched through the Go module proxy) and
# the bench target server into ~/.cache/chaosaa/bench/. Idempotent; never commit binaries.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source ../_gobuild.sh
module=github.com/tsenart/vegeta/v12
go_build_pinned "$module" main.Version vegeta "$module"
go build -trimpath -ldflags "-s -w" -o "$out/chaosaa-bench-target" ./target
echo "$out/chaosaa-bench-target"
