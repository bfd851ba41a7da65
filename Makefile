# Counsel's task runner. `make run` and `make test` work from a fresh clone on Debian.
.DEFAULT_GOAL := help
.PHONY: help setup setup-test run test lint format stop services status lock

PY := .venv/bin/python

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

setup:  ## system packages and .venv with the runtime requirements
	@scripts/bootstrap

setup-test:  ## setup plus Chromium and the test and lint tools
	@scripts/bootstrap --test

run: setup  ## run everything (services, web, worker, beat) with the demo company; Ctrl-C stops
	@$(PY) scripts/run

test: setup-test  ## every test: unit and integration, then browser tests
	@scripts/test

lint: setup-test  ## ruff check, ruff format --check, makemigrations --check, access lint
	.venv/bin/ruff check .
	scripts/check-access
	.venv/bin/ruff format --check .
	DJANGO_SETTINGS_MODULE=config.settings.test $(PY) -W ignore::RuntimeWarning manage.py makemigrations --check --dry-run

format:  ## apply ruff's fixes and formatting
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

stop:  ## stop `make run` (also one killed hard) and the services
	@python3 scripts/run stop

services:  ## start PostgreSQL and Redis only
	@scripts/services start

status:  ## show whether PostgreSQL and Redis run
	@scripts/services status

lock:  ## re-pin requirements/*.txt from requirements/*.in
	@scripts/lock
