# Sourced by bench/*/build.sh from their own directory: builds Go binaries pinned by that
# directory's go.mod (modules fetched through the Go module proxy) into the bench binary
# cache, ~/.cache/chaosaa/bench/. Idempotent; never commit binaries.
out="${CHAOSAA_BENCH_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/chaosaa/bench}"
mkdir -p "$out"

# go_build_pinned MODULE VERSION_VAR NAME PACKAGE: build PACKAGE into $out/NAME, stamping
# the version of MODULE that go.mod pins into the Go string variable VERSION_VAR.
go_build_pinned() {
    local module="$1" version_var="$2" name="$3" package="$4" version
    version="$(go list -m -f '{{.Version}}' "$module")"
    go build -trimpath -ldflags "-s -w -X $version_var=$version" -o "$out/$name" "$package"
    echo "$out/$name"
}
