# Alliance: the two commands a newcomer needs are `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# three distinct free loopback ports, all held open while choosing
FREE_PORTS = $$($(BIN)/python -c 'import socket; ss=[socket.socket() for _ in range(3)]; [s.bind(("127.0.0.1", 0)) for s in ss]; print(*[s.getsockname()[1] for s in ss])')

.PHONY: install demo down test docs test-containers images compose-env compose-up compose-down lint bench-tracker bench-attribution bench-commission bench-settlement bench-reports bench-camp bench-scale bench-flood bench-retention bench-tracing clean

# The demo, the tests and the benches run on the development secrets; a service refuses them
# unless ALLIANCE_ENV=dev (production is the default: docs/security.md).
demo test test-containers bench-tracker bench-attribution bench-commission bench-settlement bench-reports bench-camp bench-scale bench-flood bench-retention: export ALLIANCE_ENV = dev

$(STAMP): pyproject.toml constraints.txt clients/python/pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]' -e ./clients/python
	touch $(STAMP)

install: $(STAMP)

## demo: start Kafka + PostgreSQL + the three services, send a realistic run, print the ledger
demo: install
	$(BIN)/alliance stack up
	$(BIN)/alliance services start
	$(BIN)/alliance demo
	@echo
	@echo "Services keep running: tracker :8001, attribution :8002, commission :8003 (docs at /docs)."
	@echo "Stop everything with: make down"

## down: stop the services and the stack started by `make demo`
down: install
	-$(BIN)/alliance services stop
	$(BIN)/alliance stack down

## images: alliance, alliance-kafka, alliance-postgres on debian:bookworm-slim (PostgreSQL 15 and postgresql-15-hll from Debian), and the Helm chart's alliance-cnpg-postgres (CloudNativePG's image with postgresql-15-hll) when its base is present or pullable
images: install
	deploy/docker/ensure-docker.sh
	deploy/docker/build.sh

## compose-env: deploy/.env with fresh secrets for the compose stack (never overwritten)
compose-env: install
	$(BIN)/alliance compose-env

# COMPOSE_FILES=-f deploy/compose.yaml alone where containers may use a bridge network
COMPOSE_FILES ?= -f deploy/compose.yaml -f deploy/compose.host.yaml
## compose-up: the stack of deploy/compose.yaml (three brokers, two workers a service)
compose-up: compose-env
	docker compose $(COMPOSE_FILES) up -d --wait

## compose-down: stop it (volumes are kept; `docker compose … down -v` drops them)
compose-down:
	docker compose $(COMPOSE_FILES) down

## test-containers: build the images, run the compose stack, kill a broker under load
test-containers: install
	deploy/docker/ensure-docker.sh
	BASE_IMAGE_PULL=0 deploy/docker/build.sh
	$(BIN)/pytest -q -p no:cacheprovider tests/containers $(PYTEST_ARGS)

## docs: build the documentation site (docs/, mkdocs.yml) into site/, strictly: a broken link or a page left out of the nav fails
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache .importlinter

## test: a throw-away stack on free ports, the whole suite against it, then tear it down
test: install
	@set -e; \
	export ALLIANCE_STATE_DIR="$(CURDIR)/.stack/test-$$$$"; \
	set -- $(FREE_PORTS); \
	export ALLIANCE_KAFKA_PORT=$$1 ALLIANCE_KAFKA_CONTROLLER_PORT=$$2 ALLIANCE_POSTGRES_PORT=$$3; \
	trap '$(BIN)/alliance stack down >/dev/null; rm -rf "$$ALLIANCE_STATE_DIR"' EXIT; \
	$(BIN)/alliance stack up; \
	$(BIN)/pytest -q -p no:cacheprovider --ignore=tests/containers $(PYTEST_ARGS)

## bench-tracing: what traces cost per event, off and on (docs/logs-and-traces.md)
bench-tracing: install
	$(BIN)/python -m bench.tracing_overhead

## bench-tracker: the click redirect under load next to a bare FastAPI endpoint
bench-tracker: install
	$(BIN)/python -m bench.tracker.run

## bench-attribution: the attribution service draining 1M events next to a raw consumer
bench-attribution: install
	$(BIN)/python -m bench.attribution.run

## bench-commission: the ledger consumer next to an asyncpg COPY, and settlement latency
bench-commission: install
	$(BIN)/python -m bench.commission.run

## bench-settlement: settlement latency over a seeded ledger of 10M postings, and settlement (whole days, partial days) and statement latency of one store with 1,000,000 orders in a month, in the state the commission service's scheduled compaction leaves
bench-settlement: install
	$(BIN)/python -m bench.commission.settlement

## bench-reports: 90-day dashboards over 10M postings and 100M clicks of read models
bench-reports: install
	$(BIN)/python -m bench.reports.run

## bench-camp: the alliance camp (plain and personalised) over 1,000 stores' catalogs
bench-camp: install
	$(BIN)/python -m bench.camp.run

## bench-scale: attribution and commission with one and two workers on 12 partitions, a kill
bench-scale: install
	$(BIN)/python -m bench.scale.run

## bench-flood: one visitor's 2,000,000 clicks then its order: decision latency, attribution RSS
bench-flood: install
	$(BIN)/python -m bench.flood.run

## bench-retention: 60 days of clicks (days compressed): the size levels off; a day expired by dropping its partition beside DELETE + VACUUM
bench-retention: install
	$(BIN)/python -m bench.retention.run

clean: down
	rm -rf .stack
