# Turnout developer commands. `make run` and `make test` are the quick start.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
LOCK := requirements/dev.lock

.PHONY: run setup test lint format typecheck check lock bench drill protos

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# Reinstalls only when the lock file or the client's metadata changes. The `turnout`
# command and client (clients/, its dependencies pinned in the lock through the dev
# extra) are installed editable, so the tests run the real entry point.
$(VENV)/.installed: $(LOCK) clients/pyproject.toml | $(BIN)/uv
	$(BIN)/uv pip sync --quiet --python $(BIN)/python $(LOCK)
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e clients
	touch $@

.env:
	$(PYTHON) deploy/make_env.py .env.example .env

setup: $(VENV)/.installed .env
	@mkdir -p var/staticfiles var/artifacts

## Bring the whole product up: services check, migrate, demo data, web + worker + beat.
run: setup
	$(BIN)/python manage.py check_services --create-database
	$(BIN)/python manage.py migrate --no-input
	$(BIN)/python manage.py bootstrap_demo
	@rm -rf var/prometheus  # samples of processes from an earlier run
	exec $(BIN)/honcho --no-colour start --procfile Procfile

## The whole suite against the real PostgreSQL and Redis: the in-process tests on two
## pytest-xdist workers, then the ones that start processes (tests/integration/) alone.
## Each run names its slowest tests, to keep CI's time in view.
test: setup
	$(BIN)/python manage.py check_services
	$(BIN)/pytest -n 2 -m "not integration" --durations=10
	$(BIN)/pytest -m integration --durations=15

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: setup
	$(BIN)/mypy
	$(BIN)/mypy bench

check: lint typecheck
	$(BIN)/python manage.py makemigrations --check --dry-run

## Regenerate the lock files from pyproject.toml.
lock: | $(BIN)/uv
	$(BIN)/uv pip compile --quiet --generate-hashes --python-version 3.11 pyproject.toml --extra cpu --extra demo --extra dev -o requirements/dev.lock
	$(BIN)/uv pip compile --quiet --generate-hashes --python-version 3.11 pyproject.toml --extra cpu --extra s3 -o requirements/cpu.lock
	$(BIN)/uv pip compile --quiet --generate-hashes --python-version 3.11 pyproject.toml --extra gpu --extra s3 -o requirements/gpu.lock

## Benchmark: raw onnxruntime against Turnout end to end, two MLPs (docs/benchmarks.md). Options: BENCH_ARGS="--seconds 5".
bench: setup
	@{ command -v wrk && command -v h2load; } >/dev/null 2>&1 || { \
		sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nghttp2-client >/dev/null; }
	$(BIN)/python manage.py check_services --create-database
	$(BIN)/python manage.py migrate --no-input
	$(BIN)/python bench/run.py $(BENCH_ARGS)

## Fault drill: load while a worker is killed, Redis and PostgreSQL restart (private ones; docs/operations.md).
drill: setup
	$(BIN)/python bench/fault_drill.py $(DRILL_ARGS)

## Regenerate the gRPC stubs (gateway/grpc_generated/) from gateway/proto/grpc_predict_v2.proto.
## The messages go into a descriptor pool of their own instead of protobuf's default one:
## Triton's client stubs define the same names (package inference), and a process (the test
## suite, a tool) may load both.
protos: setup
	$(BIN)/python -m grpc_tools.protoc -Igateway/grpc_generated=gateway/proto \
		--python_out=. --grpc_python_out=. gateway/grpc_generated/grpc_predict_v2.proto
	sed -i 's/_descriptor_pool.Default().AddSerializedFile(/_descriptor_pool.DescriptorPool().AddSerializedFile(/' \
		gateway/grpc_generated/grpc_predict_v2_pb2.py
	touch gateway/grpc_generated/__init__.py
