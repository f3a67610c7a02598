# The commands the README names. `make help` lists them.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= notifier.yml

.DEFAULT_GOAL := help
.PHONY: help install run test lint typecheck pytest bench bench-render bench-intake bench-history bench-prune bench-delivery bench-exporter bench-exporter-events bench-storm bench-replicas bench-ui bench-charts soak check-config stack dashboards screenshots clean

help: ## list the commands
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sed 's|[$$](CONFIG)|$(CONFIG)|g' \
	  | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-22s %s\n", $$1, $$2}'
	@echo "  (CONFIG=$(CONFIG); give another with make run CONFIG=path/to/notifier.yml)"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@# setuptools warns about every editable install of a flat layout (folders named like the packages): expected here
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the notifier, the exporter and the dev tools

run: $(STAMP) ## run the notifier on $(CONFIG) (SQLite in ./data, the log receiver); stays in the foreground
	$(BIN)/notifier serve --config $(CONFIG)

check-config: $(STAMP) ## validate $(CONFIG) and render every template
	$(BIN)/notifier check-config $(CONFIG)

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) ## mypy --strict on the packages, the tests, the benchmarks and the scripts
	$(BIN)/mypy

pytest: $(STAMP) ## the test suite only
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test: lint typecheck pytest ## install everything, then lint, type-check and run the whole test suite

bench: bench-intake bench-render bench-history bench-prune bench-delivery bench-exporter bench-exporter-events bench-storm bench-replicas bench-ui bench-charts ## every benchmark (prints ratios against an in-run baseline)

bench-intake: $(STAMP) ## webhook intake throughput: durable SQLite vs validate-only, uvicorn vs granian
	$(BIN)/python bench/intake.py

bench-render: $(STAMP) ## render time of 100..30,000-alert groups; /healthz and a critical alert while one is delivered
	$(BIN)/python bench/render.py

bench-history: $(STAMP) ## intake transaction of a lone webhook: 200k old messages in the store vs an empty one
	$(BIN)/python bench/history.py

bench-prune: $(STAMP) ## a webhook's commit while housekeeping deletes 50k old rows per table vs without
	$(BIN)/python bench/prune.py

soak: $(STAMP) ## chaos soak (5 min): 2 Alertmanager peers, 3 replicas on PostgreSQL, faults; the exact ledger
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

bench-charts: $(STAMP) ## chart time for 1 and 5 series; webhook -> text latency with charts on vs off
	$(BIN)/python bench/charts.py

bench-delivery: $(STAMP) ## webhook -> Telegram latency at 50/s vs python-telegram-bot straight to the fake
	$(BIN)/python bench/delivery_latency.py

bench-exporter: $(STAMP) ## exporter scrape time with 1M and 10M trades in PostgreSQL vs SELECT 1
	$(BIN)/python bench/exporter_scrape.py --trades 1000000 --trades 10000000

bench-exporter-events: $(STAMP) ## exporter RSS and scrape p50 after 1k and after 1M exchange-API events over real Redis
	$(BIN)/python bench/exporter_events.py

bench-storm: $(STAMP) ## an alert storm into one Telegram group: the notifier against Alertmanager 0.25's notifier
	$(BIN)/python bench/storm.py

bench-ui: $(STAMP) ## the web view with 10k groups and 1M recorded events; intake with the timeline on vs off
	$(BIN)/python bench/ui.py

bench-replicas: $(STAMP) ## intake and drain with 1, 2, 4 replicas on PostgreSQL against one SQLite process
	$(BIN)/python bench/replicas.py

stack: $(STAMP) ## the whole stack from Debian's binaries (demo exporter, Prometheus, Alertmanager, notifier); STACK_ARGS
	$(BIN)/python scripts/stack.py $(STACK_ARGS)

screenshots: $(STAMP) ## the web view's pictures in docs/img/, taken by the browser test from the current code
	NOTIFIER_ARTIFACTS=test-artifacts/screenshots $(BIN)/python -m pytest -q tests/notifier/ui/test_browser.py
	cp test-artifacts/screenshots/ui/timeline.png docs/img/timeline.png

dashboards: $(STAMP) ## regenerate monitoring/grafana/dashboards from scripts/dashboards.py
	$(BIN)/python scripts/dashboards.py

clean: ## remove the virtualenv, caches, test artifacts and ./data
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis test-artifacts *.egg-info data .stack
