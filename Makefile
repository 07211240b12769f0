# chaosaa — the targets a newcomer guesses.
#   make demo        run a GameDay against a local 3-region lab (no cluster, no Docker)
#   make kind-demo   the same on three kind clusters (Docker engine, images, kind up)
#   make kind-operator  the Helm chart on those clusters: GameDay resources run in the hub
#   make test        build what every tier needs, then run every tier (kind included)
#   make test-quick  the unit, Prometheus and lab tiers only (nothing to build)
#   make lint        ruff, mypy --strict, import-linter
#   make bench       benchmarks; results go to docs/benchmarks.md by hand

PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: dev test test-quick test-unit test-db test-k8s test-kind lint bench demo kind-demo kind-operator k8s-bin docker-engine kind-images kind-up kind-up-local kind-down lab lab-down clean prometheus packages

$(BIN)/chaosaa: pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

dev: $(BIN)/chaosaa

# Debian packages: Prometheus (tiers 2, lab), nft/tc (node rules), the databases (tier 6).
APT_PACKAGES := prometheus nftables iproute2 postgresql-15 postgresql-15-pglogical \
  mariadb-server galera-4 rsync prometheus-postgres-exporter prometheus-mysqld-exporter
can_apt = [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1
apt_install = DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(1) >/dev/null || \
	  { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(1) >/dev/null; }

prometheus:
	@command -v prometheus >/dev/null 2>&1 || { \
	  $(can_apt) || { echo "chaosaa needs a 'prometheus' binary on PATH: sudo apt-get install prometheus" >&2; exit 4; }; \
	  echo "==> installing Debian's prometheus package"; $(call apt_install,prometheus); }

# Installs what is missing as root with apt; elsewhere says what the tiers will skip.
packages:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if $(can_apt); then \
	  echo "==> installing Debian packages:" $$missing; $(call apt_install,$$missing); \
	else \
	  echo "==> not installed (needs root and apt-get):" $$missing; \
	  echo "    tests that need them skip here with the reason (and fail in CI)"; \
	fi

# Environment of the kind tier: the images and kind/kubectl of hack/kind-images, control
# planes only unless CHAOSAA_KIND_WORKERS says otherwise (docs/kind.md).
KIND_ENV = eval "$$(bash hack/kind-images --env)" && export CHAOSAA_KIND_WORKERS=$${CHAOSAA_KIND_WORKERS:-0} &&

# Everything every tier needs, built (or found cached) first, with progress lines; then
# every tier. Cold on a 2-core machine: ~35 min of builds (Go), ~30 min of tests.
# SKIP_KIND=1: neither the kind images nor the kind tier (GitHub's ci.yml: kind-smoke.yml
# runs kind there, with the images a runner pulls).
SKIP_KIND ?=
test: dev packages k8s-bin $(if $(SKIP_KIND),,kind-images)
	@echo "==> every tier: unit, prometheus, lab, k8s, netns (as root), db$(if $(SKIP_KIND),,, kind)"
	$(if $(SKIP_KIND),,$(KIND_ENV)) $(BIN)/pytest $(if $(SKIP_KIND),,--kind) $(PYTEST_ARGS)

# Unit, Prometheus and lab tiers: nothing to build but the venv (~6 min).
test-quick: dev prometheus
	$(BIN)/pytest -m "not k8s and not netns and not kind and not db" $(PYTEST_ARGS)

test-unit: dev
	$(BIN)/pytest -m "not prometheus and not lab and not k8s and not netns and not kind and not db" $(PYTEST_ARGS)

test-db: dev packages
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
	@echo "==> Kubernetes binaries (hack/k8s-bin; ~9 min cold, cached in ~/.cache/chaosaa)"
	bash hack/k8s-bin

# A Docker engine that can run kind (does nothing where one already works).
docker-engine:
	@echo "==> Docker engine (hack/docker-engine; nothing to do where one works)"
	bash hack/docker-engine

# The kind node image, the images kubeadm runs in it and the demo's Python base, built
# offline from Go modules and Debian packages into ~/.cache/chaosaa (docs/kind.md).
kind-images: docker-engine
	@echo "==> kind node and component images (hack/kind-images; ~25 min cold, cached)"
	bash hack/kind-images

# kind up with those local images (air-gapped machines, ours). KIND_UP_ARGS=--workers 0
KIND_UP_ARGS ?=
kind-up-local: dev kind-images
	eval "$$(bash hack/kind-images --env)" && $(BIN)/chaosaa kind up $(KIND_UP_ARGS)

# The chart on the kind clusters (brought up as kind-demo does when absent): operator and
# agent in the hub (us), agents in eu and ap, kubeconfig Secrets for eu and ap in the hub;
# then `kubectl --context kind-chaosaa-us apply -n chaosaa-system -f
# experiments/kind/operator/region-down-monthly.yaml` (docs/operator.md).
kind-operator: dev kind-images k8s-bin
	@eval "$$(bash hack/kind-images --env)" && \
	export CHAOSAA_HELM=$$(ls -d $(HOME)/.cache/chaosaa/bin/k8s-*/helm | tail -1) && \
	if [ -z "$$(docker ps -q --filter label=io.x-k8s.kind.cluster=chaosaa-us)" ]; then \
	  echo "==> chaosaa kind up $(KIND_UP_ARGS)" && $(BIN)/chaosaa kind up $(KIND_UP_ARGS) || exit $$?; \
	fi && \
	echo "==> chaosaa kind operator" && $(BIN)/chaosaa kind operator

# The kind GameDay from nothing: engine, images, three clusters (left up for more
# GameDays; `make kind-down` removes them), then experiments/kind/region-down.yaml.
kind-demo: dev kind-images
	@eval "$$(bash hack/kind-images --env)" && \
	if [ -n "$$(docker ps -q --filter label=io.x-k8s.kind.cluster=chaosaa-us)" ]; then \
	  echo "==> kind clusters already up: running the GameDay on them"; \
	else \
	  echo "==> chaosaa kind up $(KIND_UP_ARGS)" && $(BIN)/chaosaa kind up $(KIND_UP_ARGS) || exit $$?; \
	fi; \
	$(BIN)/chaosaa run experiments/kind/region-down.yaml --report-dir chaosaa-reports/kind-demo; \
	  code=$$?; echo; echo "exit code $$code; HTML report: chaosaa-reports/kind-demo/report.html"; \
	  echo "the clusters stay up: more GameDays in experiments/kind/; make kind-down removes them"; \
	  exit $$code

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

# The whole kind tier (~12 min here): clusters up once, every kind GameDay, SIGKILL and
# rollback, kind down.
test-kind: dev kind-images
	$(KIND_ENV) $(BIN)/pytest --kind -m kind tests/kind $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache chaosaa-reports *.egg-info
