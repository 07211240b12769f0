# chaosaa — the targets a newcomer guesses.
#   make demo   run a GameDay against a local 3-region lab (no cluster, no Docker)
#   make test   run every test tier this machine supports
#   make lint   ruff, mypy --strict, import-linter
#   make bench  benchmarks; results go to docs/benchmarks.md by hand

PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: dev test test-unit test-db test-k8s test-kind lint bench demo k8s-bin docker-engine kind-images kind-up kind-up-local kind-down lab lab-down clean prometheus

$(BIN)/chaosaa: pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

dev: $(BIN)/chaosaa

prometheus:
	@command -v prometheus >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's prometheus package"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q prometheus >/dev/null || \
	    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q prometheus >/dev/null; }; \
	  else \
	    echo "chaosaa needs a 'prometheus' binary on PATH: sudo apt-get install prometheus" >&2; exit 4; \
	  fi; }

test: dev
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: dev
	$(BIN)/pytest -m "not prometheus and not lab and not k8s and not netns and not kind and not db" $(PYTEST_ARGS)

test-db: dev
	$(BIN)/pytest -m db $(PYTEST_ARGS)

lint: dev
	$(BIN)/ruff check chaosaa tests bench
	$(BIN)/ruff format --check chaosaa tests bench
	$(BIN)/mypy --strict chaosaa
	$(BIN)/lint-imports

bench: dev
	$(BIN)/python bench/run_all.py

demo: dev prometheus
	$(BIN)/chaosaa run experiments/region-down.yaml --report-dir chaosaa-reports/demo; \
	  code=$$?; echo; echo "exit code $$code; HTML report: chaosaa-reports/demo/report.html"; exit $$code

k8s-bin:
	bash hack/k8s-bin

# A Docker engine that can run kind (does nothing where one already works).
docker-engine:
	bash hack/docker-engine

# The kind node image, the images kubeadm runs in it and the demo's Python base, built
# offline from Go modules and Debian packages into ~/.cache/chaosaa (docs/kind.md).
kind-images: docker-engine
	bash hack/kind-images

# kind up with those local images (air-gapped machines, ours). KIND_UP_ARGS=--workers 0
KIND_UP_ARGS ?=
kind-up-local: dev kind-images
	eval "$$(bash hack/kind-images --env)" && $(BIN)/chaosaa kind up $(KIND_UP_ARGS)

test-k8s: dev k8s-bin
	$(BIN)/pytest -m k8s $(PYTEST_ARGS)

lab: dev prometheus
	$(BIN)/chaosaa lab up

lab-down: dev
	$(BIN)/chaosaa lab down

kind-up: dev
	$(BIN)/chaosaa kind up

kind-down: dev
	PATH="$$(bash hack/kind-images --bin-dir):$$PATH" $(BIN)/chaosaa kind down

test-kind: dev
	$(BIN)/pytest --kind tests/kind $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache chaosaa-reports *.egg-info
