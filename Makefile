# The two commands of a fresh machine: `make run` and `make test`.
# uv comes from PyPI if it is missing; Kafka's jars (Maven Central) and FerretDB
# (Go module proxy) are fetched into .cache/ on first use and reused afterwards.

SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo "$(HOME)/.local/bin/uv")
PYTEST_ARGS ?=

.PHONY: run test unit bench deps stack-fetch clean

$(UV):
	python3 -m pip install --user --quiet uv

deps: $(UV)
	$(UV) sync --frozen --quiet

stack-fetch: deps
	$(UV) run --frozen tessera-devstack fetch

## The whole platform on the Docker-free stack; Ctrl-C stops everything it started.
run: stack-fetch
	$(UV) run --frozen tessera-devstack run

## Unit, integration (real Kafka + FerretDB) and end-to-end tests.
test: stack-fetch
	$(UV) run --frozen pytest $(PYTEST_ARGS)

## Unit tests only: no broker, no store.
unit: deps
	$(UV) run --frozen pytest tests/unit $(PYTEST_ARGS)

## Enrolments per second and latency through the gateway, beside a bare baseline.
bench: stack-fetch
	$(UV) run --frozen python -m bench.enrolment

clean:
	rm -rf .run
