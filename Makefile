# Every target that runs code bootstraps first: system packages (apt, as root),
# .venv, and an editable install of sipline; fast when all of it is present.

VENV := .venv
CONFIG ?= configs/single.toml

.PHONY: bootstrap run test lint bench-micro bench

bootstrap:
	@scripts/bootstrap.sh

# Every role on this box with the embedded defaults (SQLite under ./data, no
# Redis): relay, proxy, B2BUA, both ACR nodes and a simulated carrier, after
# the schema is migrated and demo data (subscribers alice and bob, a carrier
# with a rate deck, a DID) provisioned; see `sipline stack --help`. Each role's
# admin port (/status, /metrics) is printed at start; `sipline status` shows
# them all. Ctrl-C stops everything, as does SIGINT to make alone (the stack
# watches its parent: make does not pass that signal on).
SIPLINE := $(VENV)/bin/sipline

run: bootstrap
	exec $(SIPLINE) stack --config $(CONFIG)

test: bootstrap
	$(VENV)/bin/python -m pytest

# ruff on everything; mypy --strict on the core and the shell (the files of
# [tool.mypy] in pyproject.toml: sipline/sip, sipline/net).
lint: bootstrap
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench-micro: bootstrap
	$(VENV)/bin/python -m pytest bench/micro --benchmark-only

# A sipp load test stepping through RATES (calls/s), DURATION seconds each;
# fails unless the highest rate is sustained. Results in bench/results/.
SCENARIO ?= options
RATES ?= 1000,2000,4000
DURATION ?= 10
TRANSPORT ?= udp

bench: bootstrap
	$(VENV)/bin/python -m bench $(SCENARIO) --rates $(RATES) --duration $(DURATION) --transport $(TRANSPORT)
