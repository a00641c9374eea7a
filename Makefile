# RouterHub developer commands. `make run` and `make test` work on a fresh machine with Python 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PORT ?= 8000
WORKERS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: install run test serve lint format bench bench-router bench-scale soak worker migrate clean help

help:
	@echo "make run          install, migrate, seed the demo, serve http://127.0.0.1:$(PORT) with a worker"
	@echo "make test         install and run the whole test suite"
	@echo "make serve        production server (ASGI, $(WORKERS) workers, settings from the environment)"
	@echo "make lint         ruff check, ruff format --check, mypy (the Python client strict), makemigrations --check"
	@echo "make bench        gateway, routing and training benchmarks (writes bench/results.json)"
	@echo "make bench-router train and evaluate routers on ../shared/datasets"
	@echo "make bench-scale  usage, ledger and settlement at 10M usage rows (database rh_scale, dropped after)"
	@echo "make soak         10 min steady load on the production server: worker memory growth, errors, settlement"

$(STAMP): pyproject.toml clients/python/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,embeddings]'
	$(BIN)/python -m pip install -q -e ./clients/python
	@touch $(STAMP)

# The JavaScript SDKs the client tests run (tests/routing/test_clients_js.py), exactly as
# tests/js/package-lock.json pins them: only `make test` installs them (run, serve, worker and
# migrate need no npm, offline too). Without npm this says so and goes on: those tests then
# skip, or fail under REQUIRE_SERVICES=1.
JS_STAMP := tests/js/node_modules/.installed-stamp

$(JS_STAMP): tests/js/package.json tests/js/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  cd tests/js && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed-stamp; \
	else \
	  echo "npm not found: not installing tests/js (the JavaScript SDK tests will skip; install Node.js 20+ to run them)"; \
	fi

install: $(STAMP)

migrate: install
	$(BIN)/python manage.py migrate --noinput

run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	PORT=$(PORT) $(BIN)/python manage.py runlocal

test: install $(JS_STAMP)
	@$(BIN)/python -m tests.browser_setup || true
	ROUTERHUB_ENV=test $(BIN)/python -m pytest $(PYTEST_ARGS); status=$$?; \
	  if [ $$status -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$status

serve: install
	ROUTERHUB_ENV=$${ROUTERHUB_ENV:-production} $(BIN)/python manage.py collectstatic --noinput -v 0
	ROUTERHUB_ENV=$${ROUTERHUB_ENV:-production} $(BIN)/gunicorn routerhub.asgi:application \
	  -c deploy/gunicorn.conf.py --workers $(WORKERS) --bind 0.0.0.0:$(PORT)

worker: install
	$(BIN)/celery -A routerhub worker -Q default,training -l info

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy --config-file clients/python/pyproject.toml clients/python/src clients/python/examples
	ROUTERHUB_ENV=test $(BIN)/python manage.py makemigrations --check --dry-run

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Gateway overhead vs LiteLLM, router/<slug> added latency and a settlement check, then routing
# decision latency and training throughput on ../shared/datasets (~13 min on 2 cores; creates
# bench/.litellm-venv the first time). Options go through BENCH_ARGS, e.g.
# `make bench BENCH_ARGS="--duration 10 --datasets /path/to/datasets --big-folds 3 --no-routing"`.
bench: install
	$(BIN)/python -m bench.run_all $(BENCH_ARGS)

bench-router: install
	$(BIN)/python -m bench.router --datasets ../shared/datasets

# Not a test. Loads 10M usage records and ledger entries (1,000 organizations, 100,000 keys, 90
# days) into the database rh_scale with COPY (~6 GB, ~25 min on 2 busy cores), times the usage
# API, dashboard, ledger pages, key spend, settlement and a streamed month of CSV, writes
# bench/scale_results.json and drops the database. Options through SCALE_ARGS, e.g.
# `make bench-scale SCALE_ARGS="--rows 1000000 --database rh_scale_small --keep"`.
bench-scale: install
	$(BIN)/python -m bench.scale $(SCALE_ARGS)

# Not part of `make test` (tests/reliability/test_soak.py runs one minute of it). Wipes the
# database routerhub_soak and Redis db 12 by default; options through SOAK_ARGS, e.g.
# `make soak SOAK_ARGS="--duration 3600 --concurrency 16 --database-url postgres://…"`.
soak: install
	$(BIN)/python -m bench.soak --workers $(WORKERS) $(SOAK_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache staticfiles tests/js/node_modules
