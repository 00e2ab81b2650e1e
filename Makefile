# Every target installs what it needs into .venv first, so a fresh clone needs only Python 3.11.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
DATA ?= demo/expenses.csv
# PostgreSQL on loopback for the contract tests; pytest-django creates and drops test_<name>.
POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/postgres

.PHONY: install install-dev run test lint bench evaluate clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==25.3

$(VENV)/.installed: $(BIN)/python requirements.txt
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

# Headless Chromium for the browser tests, from Debian's package (Playwright's own download fails here).
$(VENV)/.installed-browser: $(BIN)/python
	@if [ -x /usr/bin/chromium ]; then \
		echo "Chromium found at /usr/bin/chromium"; \
	else \
		echo "Installing Debian's chromium package with apt-get"; \
		apt-get update -qq && apt-get install -y -qq chromium; \
	fi
	touch $@

# wrk, the HTTP load generator of the benchmarks, from Debian's package.
$(VENV)/.installed-wrk: $(BIN)/python
	@if command -v wrk >/dev/null; then \
		echo "wrk found at $$(command -v wrk)"; \
	else \
		echo "Installing Debian's wrk package with apt-get"; \
		apt-get update -qq && apt-get install -y -qq wrk; \
	fi
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev $(VENV)/.installed-browser $(VENV)/.installed-wrk

run: install
	mkdir -p var
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(BIN)/python manage.py setup_demo --data "$(DATA)"
	$(BIN)/honcho start --procfile Procfile --port $(PORT)

# Every test: unit tests, the lookup contract on SQLite, moto and DynamoDB Local, the integration
# tests against PostgreSQL and Redis on loopback, then the SQL contract again on PostgreSQL.
test: install-dev
	$(BIN)/python manage.py makemigrations --check --dry-run --settings config.settings.test
	$(BIN)/ruff check .
	$(BIN)/pytest
	CONTRACT_STORES=sql DATABASE_URL=$(POSTGRES_URL) $(BIN)/pytest -p no:cacheprovider \
		tests/lookup/contract/test_lookup_store_contract.py tests/lookup/contract/test_similar_expenses_many.py \
		tests/lookup/contract/test_lookup_commands.py

# Quality on the real purchase-card and payments data: a date-ordered replay through the production policy.
# Writes docs/quality.md, docs/images/ and test-artifacts/evaluation.json. The end-to-end accuracy test
# through a running stack (tests/integration/test_real_data.py) runs in make test.
evaluate: install-dev
	$(BIN)/python -m evaluation.replay

# Speed, scale and cost: every section starts what it needs on 127.0.0.1 (gunicorn, a Celery worker,
# PostgreSQL databases, Redis, DynamoDB Local) and stops it again. Writes docs/benchmarks.md and
# test-artifacts/benchmarks.json in about 10 minutes on 2 cores.
bench: install-dev
	$(BIN)/python -m benchmarks.suite

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf var .pytest_cache
