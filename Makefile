# Taskyard developer commands. `make help` lists them.
# Everything runs from .venv, created on first use from requirements*.txt.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Development and tests default to DEBUG on; production sets DEBUG/SECRET_KEY itself.
export DEBUG ?= 1

.DEFAULT_GOAL := help
.PHONY: help run test lint format worker beat flower redis migrate bench bench-lateness bench-dashboard bench-webhooks bench-outages bench-vrp bench-billing bench-backups bench-history bench-notifications bench-datasync clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(VENV)/.python-ok:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "taskyard needs Python >= 3.11; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@touch $@

# A stamp per requirements file: reinstall only when the file changes.
$(VENV)/.installed-run: requirements.txt $(VENV)/.python-ok
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt $(VENV)/.python-ok
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run ## Start web, worker, beat and Flower (embedded SQLite/Redis by default)
	$(PY) -m devstack run

test: $(VENV)/.installed-dev ## Run the test suite (PYTEST_ARGS="-k name" to select)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev ## ruff, mypy, import layering (lint-imports), missing migrations
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(PY) manage.py makemigrations --check --dry-run

format: $(VENV)/.installed-dev ## Apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

migrate: $(VENV)/.installed-run ## Apply database migrations
	$(PY) manage.py migrate

redis: $(VENV)/.installed-run ## Only the embedded Redis, in the foreground (for make worker/beat/flower)
	$(PY) -m devstack redis

worker: $(VENV)/.installed-run ## One Celery worker on all queues (needs REDIS_URL or `make redis`)
	$(VENV)/bin/celery -A config worker --loglevel=INFO

beat: $(VENV)/.installed-run ## The Celery beat scheduler (DatabaseScheduler)
	$(VENV)/bin/celery -A config beat --loglevel=INFO

flower: $(VENV)/.installed-run ## Flower on http://127.0.0.1:5555 behind basic auth
	$(PY) manage.py flower

bench: $(VENV)/.installed-dev ## Issue 18: tracked vs bare Celery vs PostgreSQL peers, private PostgreSQL (BENCH_ARGS="--jobs 1000 --peers none")
	$(PY) bench/throughput.py $(BENCH_ARGS)

bench-lateness: $(VENV)/.installed-dev ## Lateness of delayed jobs: ledger + relay vs Celery ETAs (BENCH_ARGS="--seconds 10")
	$(PY) bench/lateness.py $(BENCH_ARGS)

bench-dashboard: $(VENV)/.installed-dev ## Admin dashboard load time with 1,000,000 jobs (BENCH_ARGS="--jobs 100000")
	$(PY) bench/dashboard.py $(BENCH_ARGS)

bench-history: $(VENV)/.installed-dev ## Stats API, /metrics and dashboard at 1, 3 and 10 million jobs (PostgreSQL: DATABASE_URL=postgres://.../history, BENCH_ARGS="--steps 1000000,3000000")
	$(PY) bench/history.py $(BENCH_ARGS)

bench-webhooks: $(VENV)/.installed-dev ## 10,000 signed webhook POSTs in a burst: all stored and processed (BENCH_ARGS="--events 2000")
	$(PY) bench/webhooks.py $(BENCH_ARGS)

bench-outages: $(VENV)/.installed-dev ## Drain after a Redis outage: back with its data vs back empty (BENCH_ARGS="--jobs 1000 --rounds 3")
	env -u REDIS_URL $(PY) bench/outages.py $(BENCH_ARGS)

bench-vrp: $(VENV)/.installed-dev ## Route optimisation: gap to proven optima at 2 s/10 s + a 300-stop day (BENCH_ARGS="--limits 2")
	$(PY) bench/vrp.py $(BENCH_ARGS)

bench-billing: $(VENV)/.installed-dev ## Monthly billing run of 10,000 customers: run time, invoices/s, worker memory (BENCH_ARGS="--customers 2000")
	$(PY) bench/billing.py $(BENCH_ARGS)

bench-backups: $(VENV)/.installed-dev ## Backup, verification, restore and upkeep times with 500,000 jobs (BENCH_ARGS="--jobs 100000")
	$(PY) bench/backups.py $(BENCH_ARGS)

bench-notifications: $(VENV)/.installed-dev ## 10,000 SMS against a Twilio fake limited to 10/s: each sent once, none dead (BENCH_ARGS="--recipients 2000")
	$(PY) bench/notifications.py $(BENCH_ARGS)

bench-datasync: $(VENV)/.installed-dev ## Data sync records/s: full and incremental sync of 20,000 Airtable records (BENCH_ARGS="--records 5000 --airtable-rate 5")
	$(PY) bench/datasync.py $(BENCH_ARGS)

clean: ## Remove var/ (databases, embedded Redis data, logs); keeps .venv
	rm -rf var
