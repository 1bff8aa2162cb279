# LoyalNest developer entry points. A fresh machine needs only `make up` or `make test`:
# both set themselves up first.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
BUF_IMAGE := .build/buf-image.binpb

.PHONY: setup system-deps gen gen-check lint fmt test test-unit up bench clean

setup: system-deps $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

system-deps:
	tools/ensure-system-packages.sh

gen: $(STAMP)
	$(BIN)/python tools/genproto.py

gen-check: $(STAMP)
	$(BIN)/python tools/genproto.py --check

lint: setup
	$(BIN)/ruff check pkg tests bench tools
	$(BIN)/ruff format --check pkg tests bench tools
	$(BIN)/mypy
	$(BIN)/python tools/genproto.py --buf-image $(BUF_IMAGE)
	$(BIN)/buf lint $(BUF_IMAGE) --config proto/buf.yaml --path loyalnest

fmt: $(STAMP)
	$(BIN)/ruff check --fix pkg tests bench tools
	$(BIN)/ruff format pkg tests bench tools

test: setup
	$(BIN)/pytest -q

test-unit: setup
	$(BIN)/pytest -q tests/unit

up: setup
	$(BIN)/loyalnest up

bench: setup
	$(BIN)/python bench/bench_points.py

clean:
	rm -rf .build .pytest_cache .mypy_cache .ruff_cache
