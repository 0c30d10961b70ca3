# Each target creates or updates the project's virtual environment itself (.venv).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.bgkit-installed
BROWSER_STAMP := $(VENV)/.bgkit-browser-installed

.PHONY: demo lab test lint format bench browser-check clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "bgkit needs Python 3.11 or newer; run make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[sandbox,dev]'
	$(BIN)/python -m bgkit.postgres --ensure
	touch $(STAMP)

## demo: run a release of the ALB weighted runbook in the embedded sandbox
demo: $(STAMP)
	$(BIN)/bgkit run alb_weighted

## lab: prepare a release record of the ALB weighted runbook and open it in JupyterLab (Run All;
## the gate waits for your click); RUNBOOK=... and ARGS='-p plan canary ...' to change it
RUNBOOK ?= alb_weighted
lab: $(STAMP)
	$(BIN)/bgkit lab $(RUNBOOK) $(ARGS)

## test: lint, format check, unit and integration tests, and every runbook through nbval
# Five workers on two cores: the runbook tests mostly wait on bakes, but the sandboxes' load is
# CPU (at 4b4cfc1: 663 s and 698 s with five against 722 s with six; long ago, four: 480 s against 405 s).
test: $(STAMP) lint
	$(BIN)/pytest -n 5 --dist loadfile --nbval-lax tests runbooks

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## bench: measurements, not tests: the judge against today's rollback rules, then release wall
## time, then a wave release's wall time against the sum of its targets' releases
bench: $(STAMP)
	$(BIN)/python benchmarks/judge.py
	$(BIN)/python benchmarks/release_wall_time.py
	$(BIN)/python benchmarks/waves_wall_time.py

$(BROWSER_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[sandbox,dev,browser]'
	touch $(BROWSER_STAMP)

## browser-check: what a person sees, in headless Chromium (Debian's chromium, apt-installed when
## missing and root): the reviewer's page of a real release (DOM and screenshot), then
## `bgkit lab` in JupyterLab driven by Playwright (Run All, the gate, Approve / Roll back / no click)
browser-check: $(BROWSER_STAMP)
	$(BIN)/python tools/browser_check.py --screenshot outputs/browser-check.png
	$(BIN)/pytest -p no:cacheprovider browser_tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
