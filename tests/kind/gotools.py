"""Go-built checkers for the kind tier's static tests, built once and cached.

``kindcheck`` is ``tests/kind/kindcheck/main.go`` compiled *inside* a copy of the pinned
kind module (its config loader and validator are internal packages), so the kind configs
are checked by kind's own code. Go environment as in hack/k8s-bin: everything under
``~/.cache/chaosaa/go``, modules from the Go module proxy.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from chaosaa.kindsetup.kindconfig import KIND_VERSION

HERE = Path(__file__).resolve().parent
KINDCHECK_SOURCE = HERE / "kindcheck" / "main.go"
KIND_MODULE = "sigs.k8s.io/kind"


class GoUnavailable(Exception):
    """No Go toolchain on this machine."""


def cache_dir() -> Path:
    return Path(os.environ.get("CHAOSAA_CACHE_DIR", Path.home() / ".cache" / "chaosaa"))


def go_binary() -> str:
    found = shutil.which("go") or (
        "/usr/local/go/bin/go" if os.access("/usr/local/go/bin/go", os.X_OK) else None
    )
    if found is None:
        raise GoUnavailable(
            "no `go` on PATH (needed to check the kind configs with kind's own code)"
        )
    return found


def go_env() -> dict[str, str]:
    root = cache_dir() / "go"
    return os.environ | {
        "GOPATH": str(root),
        "GOMODCACHE": str(root / "pkg" / "mod"),
        "GOCACHE": str(root / "cache"),
        "GOFLAGS": "-buildvcs=false -modcacherw",
        "GOTOOLCHAIN": "local",
    }


def _go(*args: str, cwd: Path | None = None, timeout: float = 600) -> str:
    proc = subprocess.run(
        [go_binary(), *args],
        cwd=cwd,
        env=go_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"go {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def kind_module_dir() -> Path:
    """The pinned kind module in the module cache (downloaded on first use)."""
    with tempfile.TemporaryDirectory() as tmp:
        info = json.loads(
            _go("mod", "download", "-json", f"{KIND_MODULE}@{KIND_VERSION}", cwd=Path(tmp))
        )
    return Path(info["Dir"])


def build_kindcheck() -> Path:
    digest = hashlib.sha256(KINDCHECK_SOURCE.read_bytes()).hexdigest()[:12]
    binary = cache_dir() / "bin" / f"kindcheck-{KIND_VERSION}-{digest}"
    if os.access(binary, os.X_OK):
        return binary
    module = kind_module_dir()
    binary.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="chaosaa-kindcheck-") as tmp:
        work = Path(tmp) / "kind"
        shutil.copytree(module, work)
        for path in [work, *work.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
            else:
                path.chmod(0o644)
        # Inside kind's pkg/ tree, so Go lets it import kind's internal packages.
        pkg = work / "pkg" / "chaosaakindcheck"
        pkg.mkdir()
        shutil.copy(KINDCHECK_SOURCE, pkg / "main.go")
        _go("build", "-o", str(binary) + ".tmp", "./pkg/chaosaakindcheck", cwd=work)
    os.replace(str(binary) + ".tmp", binary)
    return binary


def run_kindcheck(binary: Path, *files: Path) -> list[dict[str, object]]:
    proc = subprocess.run(
        [str(binary), *map(str, files)], capture_output=True, text=True, timeout=60, check=False
    )
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"kindcheck failed ({proc.returncode}): {proc.stderr}")
    return [json.loads(line) for line in proc.stdout.splitlines()]


ACTIONLINT_VERSION = "v1.7.12"


def build_actionlint() -> Path:
    """actionlint (GitHub Actions workflow checker), installed from its Go module."""
    bin_dir = cache_dir() / "bin" / f"actionlint-{ACTIONLINT_VERSION}"
    binary = bin_dir / "actionlint"
    if os.access(binary, os.X_OK):
        return binary
    with tempfile.TemporaryDirectory() as tmp:
        env_bin = {"GOBIN": str(bin_dir)}
        package = f"github.com/rhysd/actionlint/cmd/actionlint@{ACTIONLINT_VERSION}"
        proc = subprocess.run(
            [go_binary(), "install", package],
            cwd=tmp, env=go_env() | env_bin, capture_output=True, text=True, timeout=600,
            check=False,
        )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"building actionlint failed:\n{proc.stderr[-3000:]}")
    return binary
