# Every target that runs code bootstraps first: system packages (apt, as root),
# .venv, and an editable install of sipline; fast when all of it is present.

VENV := .venv
CONFIG ?= configs/single.toml

.PHONY: bootstrap run test lint bench-micro

bootstrap:
	@scripts/bootstrap.sh

run: bootstrap
	$(VENV)/bin/sipline run --config $(CONFIG)

test: bootstrap
	$(VENV)/bin/python -m pytest

lint: bootstrap
	$(VENV)/bin/ruff check .

bench-micro: bootstrap
	$(VENV)/bin/python -m pytest bench/micro --benchmark-only
