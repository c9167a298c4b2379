# Every target sets up what it needs: `.venv` is created when missing and refreshed when
# pyproject.toml changes (a stamp file), and reused otherwise.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 3000

.PHONY: help venv java run chat admin test lint typecheck dynamodb-local bench package clean

help:
	@echo "make run      serve the bot locally on 127.0.0.1:$(PORT) (embedded SQLite store)"
	@echo "make chat     talk to the running local bot (ARGS=\"--platform messenger\")"
	@echo "make admin    sessions admin CLI (ARGS=\"list slack#T0LOCAL#U0LOCAL\")"
	@echo "make test     lint, type-check and the whole test suite (what CI runs)"
	@echo "make bench    benchmarks against DynamoDB Local"
	@echo "make package  serverless package offline + cfn-lint"

$(STAMP): pyproject.toml
	@if ! $(BIN)/python -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then \
		rm -rf $(VENV); \
		$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed: set PYTHON=python3.12 (or similar)"' && \
		$(PYTHON) -m venv $(VENV); \
	fi
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

# Java for AWS's DynamoDB Local: installed from Debian when missing and we are root (CI is);
# otherwise the run stops here and names the package to install.
java:
	@bash scripts/ensure-java.sh

dynamodb-local: $(STAMP) java
	@$(BIN)/python -m tests.dynamodb_local

lint: $(STAMP)
	$(BIN)/ruff check sessions handlers bot tests benchmarks
	$(BIN)/ruff format --check sessions handlers bot tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck dynamodb-local
	$(BIN)/python -m pytest

bench: $(STAMP) dynamodb-local
	$(BIN)/python -m benchmarks

# The local bot on the embedded SQLite store (SESSIONS_TABLE selects DynamoDB instead).
run: $(STAMP)
	@PORT=$(PORT) $(BIN)/python -m handlers.local

# The chat simulator, against a running `make run`: make chat ARGS="--platform messenger"
chat: $(STAMP)
	@PORT=$(PORT) $(BIN)/python -m handlers.chat $(ARGS)

# The sessions admin CLI: make admin ARGS="list slack#T0LOCAL#U0LOCAL"
admin: $(STAMP)
	@$(BIN)/python -m handlers.admin $(ARGS)

package:
	@echo "Packaging is coming (issue 6)."

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache .hypothesis
