# Two commands on a fresh machine:  make demo   and   make test
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BROKER ?= tansu

.PHONY: setup demo test test-servers lint lock audit kafka-up kafka-down clean

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	touch $@

setup: $(STAMP)

## The console's front-end libraries (Leaflet for the area map), pinned by
## package-lock.json and served by the console itself (no CDN). Without npm the console
## still runs; its map page says the map library is missing.
NODE_STAMP := node_modules/.installed
$(NODE_STAMP): package.json package-lock.json
	@if command -v npm >/dev/null; then \
	  npm ci --ignore-scripts --no-audit --no-fund && touch $@; \
	else \
	  echo "npm is not installed: the console's area map needs it (Debian: sudo apt-get install npm; then make setup again)" >&2; \
	fi
setup: $(NODE_STAMP)

## Set up and run the demo on the embedded broker (ARGS="--duration 30 --json")
demo: setup
	$(BIN)/canhbao demo $(ARGS)
	@echo "canhbao is in $(BIN), not on your PATH: run $(BIN)/canhbao --help, or 'source $(BIN)/activate' first" >&2

## Run the tests; BROKER=tansu (default), kafka, or tansu,kafka for the integration suite
test: setup
	$(BIN)/pytest --broker $(BROKER) $(ARGS)

## Install the Debian packages some tests run against (tests/servers.py: mosquitto ...);
## without them, make test skips those tests and says why
test-servers:
	@pkgs="$$($(PY) tests/servers.py --missing)"; \
	if [ -z "$$pkgs" ]; then echo "every test server is installed"; exit 0; fi; \
	sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	echo "installing from Debian: $$pkgs"; \
	$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$pkgs

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

## Re-pin constraints.txt to what is installed now
lock: setup
	(echo "# Pinned versions CI tested. Regenerate: make lock"; \
	 $(BIN)/pip freeze --exclude-editable | grep -v '^-e') > constraints.txt

## The supply chain: constraints.txt is what is installed (make lock would change
## nothing), pip check passes, and no pin has a known vulnerability (pip-audit;
## says plainly when no advisory service answered; tests/audit_ignore.txt for exceptions)
audit: setup
	$(BIN)/python tests/audit.py

## Apache Kafka from Maven Central on 127.0.0.1:9092 (no Docker)
kafka-up:
	infra/kafka/start.sh

kafka-down:
	infra/kafka/stop.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
