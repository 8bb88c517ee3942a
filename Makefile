# Turnstile: `make run` starts the local stack, `make test` runs every check.
# Every target installs only what is missing (see deploy/install.sh).

SHELL := /bin/bash
.DEFAULT_GOAL := help
BIN := .venv/bin
DEMO_RATE ?= 50

.PHONY: run test down lint install clean help

run: install ## Start Kafka, PostgreSQL, every service and demo traffic on 127.0.0.1; print the URLs
	$(BIN)/turnstile stack up --services --demo-rate $(DEMO_RATE)

test: install ## Lint, type-check and run all tests (integration tests start their own servers)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest

down: ## Stop everything `make run` started
	@if [ -x $(BIN)/turnstile ]; then $(BIN)/turnstile stack down; fi

lint: install ## ruff and mypy only
	$(BIN)/ruff check .
	$(BIN)/mypy

install: ## Install system packages, TimescaleDB (built once), the venv and the Kafka jars (skips what is done)
	@deploy/install.sh

clean: down ## Stop the stack; delete its state (.turnstile), caches and install stamps
	rm -rf .turnstile .mypy_cache .ruff_cache .pytest_cache .hypothesis
	rm -f .venv/.turnstile-deps-*
	find . -path ./.venv -prune -o -name __pycache__ -type d -exec rm -rf {} +

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | \
		awk -F':.*## ' '{ printf "  make %-8s %s\n", $$1, $$2 }'
