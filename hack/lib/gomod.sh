# hack/lib/gomod.sh — build Go programs from the Go module proxy, at pinned versions.
# Sourced by hack/k8s-bin and hack/kind-images (bash). The caller sets:
#   CACHE_DIR   cache root (~/.cache/chaosaa)
#   BIN_DIR     where `build` installs binaries
#   LOG_TAG     prefix of log lines
# and may set GO (go command), GO_NICE (niceness, default 10), GO_BUILD_TAGS.
#
# GOPATH, GOMODCACHE and GOCACHE live under CACHE_DIR/go so that every script (and a CI
# run on the same machine) shares the downloads and the compile cache.

log() { printf '[%s] %s\n' "${LOG_TAG}" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "${LOG_TAG}" "$*" >&2; exit 1; }

# gomod_env: pick the toolchain and export the shared Go environment.
gomod_env() {
  if [[ -z "${GO:-}" ]]; then
    if command -v go >/dev/null 2>&1; then GO="go"; else GO="/usr/local/go/bin/go"; fi
  fi
  command -v "${GO}" >/dev/null 2>&1 || die "go not found (set GO=/path/to/go)"
  GO_ROOT_DIR="${CACHE_DIR}/go"
  WORK_DIR="${GO_ROOT_DIR}/build"
  export GOPATH="${GO_ROOT_DIR}"
  export GOMODCACHE="${GO_ROOT_DIR}/pkg/mod"
  export GOCACHE="${GO_ROOT_DIR}/cache"
  # -modcacherw: the module cache stays deletable with a plain `rm -rf`.
  export GOFLAGS="-buildvcs=false -modcacherw"
  # Never fetch another toolchain behind our back: every pinned module says go <= ours.
  export GOTOOLCHAIN=local
  export CGO_ENABLED=0
  mkdir -p "${WORK_DIR}" "${GOMODCACHE}" "${GOCACHE}"
  START_ALL=${START_ALL:-${SECONDS}}
}

gocmd() { nice -n "${GO_NICE:-10}" "${GO}" "$@"; }

# upstream_gomod MODULE VERSION -> path of that module's go.mod in the module cache
upstream_gomod() {
  gocmd mod download -json "$1@$2" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p'
}

# module_dir MODULE VERSION -> the module's extracted source in the module cache
module_dir() {
  gocmd mod download -json "$1@$2" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'
}

# Local-path replace directives (`mod => ./dir` or `mod => ../dir`) of an upstream go.mod,
# printed as "module" lines. They are dropped when the module is used as a dependency.
local_replaces() {
  awk '
    /^replace[[:space:]]*\(/ { inblock = 1; next }
    inblock && /^\)/        { inblock = 0; next }
    { line = $0; sub(/^replace[[:space:]]+/, "", line) }
    (inblock || $1 == "replace") {
      n = split(line, f, /[[:space:]]+/)
      for (i = 1; i <= n; i++) if (f[i] == "=>") {
        if (f[i+1] ~ /^\.\.?\//) print (f[1] == "" ? f[2] : f[1])
        break
      }
    }' "$1"
}

# prepare_module DIR MODULE VERSION PKG... : a throw-away wrapper module that requires
# MODULE@VERSION and imports PKG... from a tools.go, so `go mod tidy` resolves exactly the
# dependency versions upstream pins.
prepare_module() {
  local dir="$1" module="$2" version="$3"; shift 3
  local gomod rep
  rm -rf "${dir}"; mkdir -p "${dir}"
  gomod="$(upstream_gomod "${module}" "${version}")"
  [[ -n "${gomod}" && -f "${gomod}" ]] || die "cannot download ${module}@${version}"
  (
    cd "${dir}"
    gocmd mod init "chaosaa.local/gomod/$(basename "${dir}")" 2>/dev/null \
      || die "go mod init failed in ${dir}"
    gocmd mod edit -require="${module}@${version}"
    # Kubernetes keeps its k8s.io/* libraries as staging modules replaced by local paths;
    # outside its repo they are the published k8s.io/* v0.<minor>.<patch> modules.
    if [[ "${module}" == "k8s.io/kubernetes" ]]; then
      while IFS= read -r rep; do
        [[ "${rep}" == k8s.io/* ]] || die "unexpected local replace in ${gomod}: ${rep}"
        gocmd mod edit -replace="${rep}=${rep}@v0.${version#v1.}"
      done < <(local_replaces "${gomod}")
    fi
    # KEEP_REPLACES=1: keep upstream's replaces by module (forks it pins), which
    # are dropped for a dependency too; without them some modules do not compile.
    if [[ "${KEEP_REPLACES:-}" == 1 ]]; then
      gocmd mod edit -json "${gomod}" | jq -r '.Replace[]? | select(.New.Path | startswith(".") | not)
        | "\(.Old.Path)\(if .Old.Version then "@" + .Old.Version else "" end)=\(.New.Path)@\(.New.Version)"' \
        | while IFS= read -r rep; do gocmd mod edit -replace="${rep}"; done
    fi
    {
      printf '//go:build tools\n\npackage tools\n\nimport (\n'
      printf '\t_ "%s"\n' "$@"
      printf ')\n'
    } > tools.go
    gocmd mod tidy
  )
}

# build DIR NAME PKG LDFLAGS : build one binary and install it atomically into BIN_DIR.
build() {
  local dir="$1" name="$2" pkg="$3" ldflags="$4" t0=${SECONDS}
  if [[ -x "${BIN_DIR}/${name}" ]]; then
    log "${name}: present"
    return 0
  fi
  log "${name}: building ${pkg} ..."
  (cd "${dir}" && gocmd build -trimpath -tags="${GO_BUILD_TAGS:-notest,grpcnotrace}" \
     -ldflags="${ldflags}" -o "${BIN_DIR}/.${name}.tmp" "${pkg}")
  mv -f "${BIN_DIR}/.${name}.tmp" "${BIN_DIR}/${name}"
  log "${name}: done in $((SECONDS - t0))s (total $((SECONDS - START_ALL))s)"
}

# k8s_ldflags VERSION : the -X set of upstream's hack/lib/version.sh; without gitVersion
# the binaries report v0.0.0-master and version skew checks get confused.
k8s_ldflags() {
  local version="$1" minor p flags="-s -w"
  minor="${version#v1.}"; minor="${minor%%.*}"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X ${p}.gitVersion=${version} -X ${p}.gitMajor=1"
    flags+=" -X ${p}.gitMinor=${minor} -X ${p}.gitTreeState=clean"
  done
  printf '%s\n' "${flags}"
}
