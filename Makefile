# The two commands of a fresh machine: `make run` and `make test`.
# uv comes from PyPI if it is missing; Kafka's jars (Maven Central) are fetched into
# .cache/ on first use and reused afterwards, and Jaeger is built there once with Go from
# the Go module proxy; PostgreSQL 15's server and Chromium come
# from Debian's packages when the machine lacks them.

SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
PYTEST_ARGS ?=

.PHONY: run test unit fuzz lint bench deps stack-fetch postgres browser browser-tools clean

deps:
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --frozen --quiet

stack-fetch: deps postgres
	$(UV) run --frozen tessera-devstack fetch

## Debian's PostgreSQL 15 server binaries (the devstack runs its own private cluster).
postgres:
	@ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || { \
	  echo "installing Debian's postgresql-15 server"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql-15; }

## The whole platform on the Docker-free stack; Ctrl-C stops everything it started.
run: stack-fetch
	$(UV) run --frozen tessera-devstack run

## Debian's Chromium for the dashboard test (Playwright drives it; it never downloads one).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the dashboard test"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

## axe-core from npm (package-lock.json), injected by the participant app's browser test.
browser-tools:
	@[ -f node_modules/axe-core/axe.min.js ] || npm ci --no-audit --no-fund --silent

## Unit, integration (real Kafka + PostgreSQL, a real headless Chromium) and end-to-end tests.
test: stack-fetch browser browser-tools
	$(UV) run --frozen pytest $(PYTEST_ARGS)

## Unit tests only: no broker, no store.
unit: deps
	$(UV) run --frozen pytest tests/unit $(PYTEST_ARGS)

## The property tests of participant input, searched long: FUZZ_EXAMPLES a property, fresh
## examples each run; what fails is kept in .hypothesis/ and replayed first next time.
FUZZ_EXAMPLES ?= 100000
fuzz: deps
	TESSERA_FUZZ=long TESSERA_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(UV) run --frozen pytest \
	  tests/unit/test_fuzz_participant_input.py --timeout=0 --hypothesis-show-statistics $(PYTEST_ARGS)

## Static checks (ruff), not part of make test.
lint: deps
	$(UV) run --frozen ruff check libs services deploy tests bench

## Enrolments per second and latency through the gateway, beside a bare baseline;
## answers per second end to end (gateway → dialogue → store → Kafka) and the
## screening's cost per answer; the group view of 100 sealed texts, cold and warm key cache; the participant
## app on a slow phone (until the code can be typed, first and next visit); personal-data screening's precision, recall and cost;
## erasure completion time at growing totals stored (ERASURE_TOTALS, e.g. 10000,1000000);
## event-to-figure lag under a steady answer load and a 100,000-answer dialogue's query time;
## the suppression rules' cost per table, exact audit included; a killed consumer consuming
## again; one key-epoch rotation with ROTATION_TOTALS live keys and data-key requests served
## meanwhile; the fault table (each service killed, the broker and the store restarted, under load).
ERASURE_TOTALS ?= 10000,100000,1000000
ROTATION_TOTALS ?= 100000,1000000
bench: stack-fetch browser
	$(UV) run --frozen python -m bench.enrolment
	$(UV) run --frozen python -m bench.answers
	$(UV) run --frozen python -m bench.groupview
	$(UV) run --frozen python -m bench.app
	$(UV) run --frozen python -m bench.screening
	$(UV) run --frozen python -m bench.erasure --totals $(ERASURE_TOTALS)
	$(UV) run --frozen python -m bench.analytics
	$(UV) run --frozen python -m bench.suppression
	$(UV) run --frozen python -m bench.recovery
	ROTATION_TOTALS=$(ROTATION_TOTALS) $(UV) run --frozen python -m bench.rotation
	$(UV) run --frozen python -m bench.faults

clean:
	rm -rf .run
