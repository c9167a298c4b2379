# Every target sets up what it needs: `.venv` is created when missing and refreshed when
# pyproject.toml changes (a stamp file), and reused otherwise.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 3000
DYNAMODB_PORT ?= 8000
DYNAMODB_DATA ?= .data/dynamodb
STAGE ?= dev
REGION ?= us-east-1
OFFLINE_LAMBDA_PORT ?= 3002
OFFLINE_FAKE_PORT ?= 3003
OFFLINE_TIMERS_DB ?= .data/offline-timers.sqlite3
NPM_STAMP := node_modules/.installed


.PHONY: help venv java chromium screenshot replay run chat admin test test-long lint typecheck dynamodb-local dynamodb offline bench package clean

help:
	@echo "make run      serve the bot locally on 127.0.0.1:$(PORT) (embedded SQLite store; the"
	@echo "              inspector at http://127.0.0.1:$(PORT)/)"
	@echo "make chat     talk to the running local bot (ARGS=\"--platform messenger\")"
	@echo "make admin    sessions admin CLI (ARGS=\"list slack#T0LOCAL#U0LOCAL\")"
	@echo "make dynamodb DynamoDB Local on 127.0.0.1:$(DYNAMODB_PORT) until Ctrl-C (tables in .data/dynamodb)"
	@echo "make offline  the deploy's functions under serverless-offline on 127.0.0.1:$(PORT)"
	@echo "make test     lint, type-check and the whole test suite (what CI runs)"
	@echo "make test-long  the property tests with thousands of examples (minutes)"
	@echo "make bench    benchmarks against DynamoDB Local"
	@echo "make package  serverless package offline + cfn-lint"
	@echo "make replay   replay a saved transcript against the bot it was recorded with (FILE=chat.json)"
	@echo "make screenshot  the inspector's picture in docs/, from its browser test"

$(STAMP): pyproject.toml
	@echo "Setting up the Python environment in $(VENV) (the first time takes about a minute;"
	@echo "later runs reuse it, and only a change to pyproject.toml refreshes it)..."
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

# AWS's DynamoDB Local on a port, for `make run` and `make admin` with SESSIONS_TABLE set.
dynamodb: $(STAMP) java
	@$(BIN)/python -m tests.dynamodb_local --serve --port $(DYNAMODB_PORT) --db-path $(DYNAMODB_DATA)

lint: $(STAMP)
	$(BIN)/ruff check sessions handlers bot examples tests benchmarks scripts
	$(BIN)/ruff format --check sessions handlers bot examples tests benchmarks scripts

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck dynamodb-local package chromium
	$(BIN)/python -m pytest

# Chromium for the inspector's browser test: installed from Debian when missing and we are
# root (CI is); otherwise the run stops here and names the package.
chromium:
	@bash scripts/ensure-chromium.sh

# The picture of the inspector in the README (docs/inspector.png), from the browser test.
screenshot: $(STAMP) chromium
	UPDATE_SCREENSHOT=1 $(BIN)/python -m pytest -q tests/e2e/test_inspector.py

# Replay a saved transcript against the bot's current code: make replay FILE=chat.json (the
# bot the transcript was recorded with; BOT=... overrides it, a bot of another class is refused)
replay: $(STAMP)
	@$(BIN)/python -m handlers.tools.replay $(FILE)

# The model tests with 2,000 examples each: the record layout's (make test runs 150) and the
# whole product's, on SQLite and on DynamoDB Local (make test runs 200 on SQLite, 50 on
# DynamoDB Local); 5,000
# installing users of one workspace on DynamoDB Local (make test runs 1,000); 2,000 signed
# mutations of each platform's requests (make test runs 400); 1,000 interleavings on DynamoDB
# Local (make test runs 120).
test-long: $(STAMP) java
	LAYOUT_EXAMPLES=2000 $(BIN)/python -m pytest -q \
		tests/property/test_layout_model.py --hypothesis-show-statistics
	INSTALL_USERS=5000 $(BIN)/python -m pytest -q tests/contract/test_installation_records.py \
		-k five_thousand
	PRODUCT_MODEL_EXAMPLES=2000 $(BIN)/python -m pytest -q \
		tests/property/test_product_model.py --hypothesis-show-statistics
	MUTATION_EXAMPLES=2000 $(BIN)/python -m pytest -q tests/reliability/test_mutation_fuzz.py
	INTERLEAVING_EXAMPLES=1000 $(BIN)/python -m pytest -q tests/property/test_interleavings_dynamodb.py

# The cold start as deployed is measured on the zip of the code as it is: packaged first.
bench: $(STAMP) dynamodb-local package
	$(BIN)/python -m benchmarks

# The local bot on the embedded SQLite store (SESSIONS_TABLE selects DynamoDB instead).
run: $(STAMP)
	@PORT=$(PORT) $(BIN)/python -m handlers.tools.local

# The chat simulator, against a running `make run`: make chat ARGS="--platform messenger"
chat: $(STAMP)
	@PORT=$(PORT) $(BIN)/python -m handlers.tools.chat $(ARGS)

# The deploy's own functions under serverless-offline (a third-party emulator of API Gateway
# and Lambda) on 127.0.0.1:$(PORT), stage `offline`: plain environment values instead of the
# SSM references (SLACK_SIGNING_SECRET, ..., SESSIONS_TABLE; AWS_ENDPOINT_URL_DYNAMODB for
# DynamoDB Local), the project's venv as the Python that runs them. A slow turn's async
# self-invoke goes to the emulator's Lambda port, never to AWS. Replies go to fake Slack/Graph
# APIs served beside it on $(OFFLINE_FAKE_PORT) unless SLACK_API_URL/MESSENGER_API_URL are
# set; unset secrets come from the development config (.data/local.env), as for make run.
# Timers: the functions keep their schedules in an SQLite file (SESSIONS_TIMERS_DB, default
# $(OFFLINE_TIMERS_DB)) and a loop beside the emulator fires them through its Lambda port,
# as EventBridge Scheduler invokes the functions in AWS.
offline: $(STAMP) $(NPM_STAMP)
	@eval "$$($(BIN)/python -m handlers.tools.local --offline-env --port $(OFFLINE_FAKE_PORT))"; \
	export SESSIONS_TIMERS_DB="$${SESSIONS_TIMERS_DB:-$(abspath $(OFFLINE_TIMERS_DB))}"; \
	mkdir -p "$$(dirname "$$SESSIONS_TIMERS_DB")"; \
	$(BIN)/python -m handlers.tools.local --fakes-only --port $(OFFLINE_FAKE_PORT) & fakes=$$!; \
	$(BIN)/python -m handlers.tools.offline --timers-db "$$SESSIONS_TIMERS_DB" \
		--lambda-url http://127.0.0.1:$(OFFLINE_LAMBDA_PORT) & timers=$$!; \
	trap 'kill $$fakes $$timers 2>/dev/null' EXIT; \
	echo "Replies go to $$SLACK_API_URL and $$MESSENGER_API_URL; talk to it with:"; \
	echo "  make chat ARGS=\"--outbox http://127.0.0.1:$(OFFLINE_FAKE_PORT)\""; \
	VIRTUAL_ENV="$(abspath $(VENV))" OFFLINE_HTTP_PORT=$(PORT) \
		OFFLINE_LAMBDA_PORT=$(OFFLINE_LAMBDA_PORT) \
		AWS_ENDPOINT_URL_LAMBDA=http://127.0.0.1:$(OFFLINE_LAMBDA_PORT) \
		SLS_TELEMETRY_DISABLED=1 SLS_NOTIFICATIONS_MODE=off \
		npx --no-install serverless offline start --stage offline --region $(REGION)

# The sessions admin CLI: make admin ARGS="list slack#T0LOCAL#U0LOCAL"
admin: $(STAMP)
	@$(BIN)/python -m handlers.tools.admin $(ARGS)

# osls and serverless-python-requirements from package.json (a lock without registry URLs).
$(NPM_STAMP): package.json package-lock.json .npmrc
	@echo "Installing the deploy tooling into node_modules (npm ci: the first time takes a minute or two)..."
	npm ci --no-audit --no-fund --loglevel=error
	@touch $(NPM_STAMP)

# The deploy artifact, offline and with no AWS credentials: serverless package (secrets are
# SSM references resolved by CloudFormation at deploy time), cfn-lint on the template, and a
# check of the zip's contents and size. STAGE=prod packages the production stage. (W3005 is a
# redundant DependsOn in the HTTP API routes the framework generates: a warning, not ours.)
package: $(STAMP) $(NPM_STAMP)
	@start=$$(date +%s%N); \
	SLS_PYTHON_BIN="$(abspath $(BIN)/python)" SLS_TELEMETRY_DISABLED=1 SLS_NOTIFICATIONS_MODE=off \
		npx --no-install serverless package --stage $(STAGE) --region $(REGION) && \
	$(BIN)/cfn-lint --non-zero-exit-code error --ignore-checks W3005 \
		-- .serverless/cloudformation-template-update-stack.json && \
	$(BIN)/python scripts/check_package.py .serverless/chat-sessions.zip && \
	echo "make package: $$(( ($$(date +%s%N) - start) / 1000000 )) ms"

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache .hypothesis .serverless node_modules
