#!/usr/bin/env bash
# Build the pinned Toxiproxy server (from its Go module, fetched through the Go module
# proxy; version pinned in go.mod) into ~/.cache/chaosaa/bench/, for bench/lab_proxy.py.
# Idempotent; never commit binaries.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source ../_gobuild.sh
module=github.com/Shopify/toxiproxy/v2
go_build_pinned "$module" "$module.Version" toxiproxy-server "$module/cmd/server"
