# Vafa: `make run` starts everything on this machine, `make test` checks everything.
# Both install what is missing first (uv and Python packages from PyPI, PostgreSQL from apt,
# Kafka's jars from Maven Central, buf from npm).
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY := .venv/bin/python
# uv as a module of the machine's python3: works however pip placed its script (pyenv shims
# appear only after a rehash).
UV := python3 -m uv
export PATH := $(HOME)/.local/bin:$(PATH)

.PHONY: help setup infra run stop status demo test lint unit e2e bench proto

help:  ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

setup:  ## install uv and the Python workspace
	@bash deploy/local/setup.sh

infra: setup  ## start PostgreSQL and Kafka (idempotent)
	@bash deploy/local/infra.sh up

run: infra  ## start the whole stack and print where to look
	@$(PY) deploy/local/stack.py up

stop:  ## stop the app processes, then PostgreSQL and Kafka
	@if [ -x $(PY) ]; then $(PY) deploy/local/stack.py down; fi
	@bash deploy/local/infra.sh down

status:  ## what is running
	@bash deploy/local/infra.sh status || true
	@$(PY) deploy/local/stack.py status || true

demo: run  ## signed Persian and Armenian shop orders through the gateway, then what came of them
	@$(PY) deploy/local/demo.py

lint:  ## ruff, formatting, mypy, and the contract checks (stale bindings, buf lint, breaking)
	@bash deploy/local/setup.sh --dev
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy libs/kit/src gateway/src services/*/src
	bash proto/check.sh

test: lint infra  ## lint, then every test against the real PostgreSQL and Kafka (restarts the stack on this code)
	@$(PY) deploy/local/stack.py up --restart > /dev/null
	$(UV) run --frozen pytest libs gateway services deploy/tests tests

bench: run  ## throughput and latency of the order flow, beside a raw Kafka+asyncpg baseline
	@$(PY) bench/orders.py

proto:  ## regenerate libs/events from proto/
	@bash deploy/local/setup.sh
	bash proto/gen.sh
