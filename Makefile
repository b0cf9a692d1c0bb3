# driftwire: `make demo` and `make test` set everything up themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export DRIFTWIRE_CACHE_DIR ?= $(HOME)/.cache/driftwire
export PIP_CACHE_DIR ?= $(DRIFTWIRE_CACHE_DIR)/pip

.PHONY: help setup native wheel lock licenses kafka-dist ops-deps browser alertmanager dashboards demo test lint typecheck unit kafka bench eval clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# The dependencies come from lock files with hashes (make lock writes them with uv from
# pyproject.toml): pip installs uv itself from requirements-uv.lock, uv installs the rest.
UV := $(VENV)/bin/uv
export UV_CACHE_DIR ?= $(DRIFTWIRE_CACHE_DIR)/uv
LOCK_FLAGS := --universal --python-version 3.11 --generate-hashes --custom-compile-command 'make lock' -q

$(UV): requirements-uv.lock
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "driftwire needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --require-hashes -r requirements-uv.lock
	@touch $@

# Bytecode is compiled at install time (as pip does; uv does not by default): a process that
# cannot write it (PYTHONDONTWRITEBYTECODE, a read-only tree) would otherwise compile scipy,
# numpy and the rest from source at every start, about 1.4 s of CPU per worker or CLI call.
$(STAMP): pyproject.toml requirements-dev.lock $(UV)
	$(UV) pip install -q --python $(PY) --require-hashes --no-deps --compile-bytecode -r requirements-dev.lock
	$(UV) pip install -q --python $(PY) --no-deps -e .
	$(UV) pip check -q --python $(PY)
	$(PY) -m compileall -q src >/dev/null
	@touch $@

# The compiled decoder (native/, Rust + PyO3, built by maturin) when cargo is there; without
# it driftwire runs its pure-Python decoder (same results, slower). NATIVE=0 forces that.
NATIVE ?= 1
CARGO := $(shell command -v cargo 2>/dev/null)
NATIVE_STAMP := $(VENV)/.native
ifeq ($(NATIVE)$(if $(CARGO),yes,),1yes)
export DRIFTWIRE_REQUIRE_NATIVE := 1
SETUP_NATIVE := $(NATIVE_STAMP)
else
SETUP_NATIVE :=
endif

$(NATIVE_STAMP): $(STAMP) native/Cargo.toml native/pyproject.toml $(wildcard native/src/*.rs)
	@echo "building the compiled decoder (native/, release build, a minute or two the first time)"
	PATH="$(dir $(CARGO)):$$PATH" $(PY) -m pip install -q ./native
	@touch $@

setup: $(STAMP) $(SETUP_NATIVE) ## create the virtual environment and install driftwire (+ the compiled decoder if cargo is there)
	@if [ -z "$(SETUP_NATIVE)" ]; then \
	  rm -f $(NATIVE_STAMP); $(PY) -m pip uninstall -q -y driftwire-native 2>/dev/null || true; \
	  echo "no Rust toolchain (cargo) found or NATIVE=0: driftwire uses its pure-Python decoder"; \
	fi

native: $(NATIVE_STAMP) ## build and install the compiled decoder (needs cargo)

wheel: setup ## build the distributable wheels into dist/ (driftwire, and driftwire-native if cargo is there)
	$(PY) -m pip wheel -q --no-deps -w dist .
	@if [ -n "$(CARGO)" ]; then \
	  $(PY) -m pip install -q 'maturin>=1.7,<2' && \
	  PATH="$(dir $(CARGO)):$$PATH" $(VENV)/bin/maturin build -q --release -m native/Cargo.toml -o dist; \
	else echo "no cargo: built the pure-Python wheel only"; fi
	@ls dist

lock: $(UV) ## re-resolve requirements*.lock from pyproject.toml (pins with hashes; needs PyPI)
	$(UV) pip compile pyproject.toml $(LOCK_FLAGS) -o requirements.lock
	$(UV) pip compile pyproject.toml --extra dev -c requirements.lock $(LOCK_FLAGS) -o requirements-dev.lock

licenses: setup ## fail on a copyleft licence among the runtime dependencies (pip-licenses)
	$(PY) tools/check_licenses.py

kafka-dist: setup ## fetch the Apache Kafka 4.x jars from Maven Central (cached)
	@$(PY) tools/kafka_broker.py --ensure

ops-deps: ## install prometheus + promtool (Debian package) for the operations tests, if missing
	@if command -v prometheus >/dev/null && command -v promtool >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing the Debian package prometheus (prometheus, promtool)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	else \
	  echo "make ops-deps: prometheus and promtool are missing and this is not root with apt-get;" \
	    "install them (Debian/Ubuntu: sudo apt-get install --no-install-recommends prometheus)" \
	    "or put both on PATH" >&2; \
	  exit 1; \
	fi

browser: ## install Debian's chromium for the HTML report's browser test, if missing
	@if [ -n "$$DRIFTWIRE_CHROMIUM" ] || command -v chromium >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing the Debian package chromium"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends chromium >/dev/null \
	  && command -v chromium >/dev/null \
	  || { echo "make browser: installing chromium failed" >&2; exit 1; }; \
	else \
	  echo "make browser: chromium is missing and this is not root with apt-get;" \
	    "install it (Debian/Ubuntu: sudo apt-get install chromium)" \
	    "or set DRIFTWIRE_CHROMIUM to a Chromium or Chrome binary" >&2; \
	  exit 1; \
	fi

alertmanager: ## install Prometheus Alertmanager (Debian package) for the bridge tests, if missing
	@if [ -n "$$DRIFTWIRE_ALERTMANAGER" ] || command -v prometheus-alertmanager >/dev/null \
	  || command -v alertmanager >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing the Debian package prometheus-alertmanager"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends prometheus-alertmanager >/dev/null \
	  && command -v prometheus-alertmanager >/dev/null \
	  || { echo "make alertmanager: installing prometheus-alertmanager failed" >&2; exit 1; }; \
	else \
	  echo "make alertmanager: Alertmanager is missing and this is not root with apt-get;" \
	    "install it (Debian/Ubuntu: sudo apt-get install prometheus-alertmanager)," \
	    "put 'alertmanager' on PATH or set DRIFTWIRE_ALERTMANAGER to its binary" >&2; \
	  exit 1; \
	fi

dashboards: setup ## regenerate the Grafana dashboards (JSON) from dashboards/build.py
	$(PY) dashboards/build.py

demo: setup ## run the demo: a generated stream with a known drift, alerts printed
	$(VENV)/bin/driftwire demo

lint: setup ## ruff
	$(VENV)/bin/ruff check src tests load_tests tools dashboards
	$(VENV)/bin/ruff format --check src tests load_tests tools dashboards

typecheck: setup ## mypy over the package
	$(VENV)/bin/mypy src

# make test runs the suite on TEST_WORKERS processes (pytest-xdist), each with its own broker;
# TEST_WORKERS=0 runs it in one process
TEST_WORKERS ?= 2

test: setup kafka-dist ops-deps browser alertmanager lint typecheck licenses ## every test, including the real-broker integration tests
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist worksteal

kafka: kafka-dist ## run a local single-node Kafka broker until Ctrl-C
	$(PY) tools/kafka_broker.py

bench: setup kafka-dist ## the benchmarks, sized to finish in a few minutes
	$(PY) load_tests/bench_decoder.py --json load_tests/results/decoder.json
	$(PY) load_tests/bench_profiler.py --json load_tests/results/profiler.json
	$(PY) load_tests/bench_drift.py --json load_tests/results/drift.json
	$(PY) load_tests/bench_producer.py --json load_tests/results/producer.json
	$(PY) load_tests/bench_pipeline.py --events 100000 --grid 1x12,100x12 --json load_tests/results/pipeline-quick.json

eval: setup ## detection quality: real tables, power table, generated streams (about 10 min)
	$(PY) load_tests/eval_detection.py --json load_tests/results/detection.json

clean: ## remove the virtual environment and caches inside the repo
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
