# Every target that runs code bootstraps first: system packages (apt, as root),
# .venv, and an editable install of sipline; fast when all of it is present.

VENV := .venv
CONFIG ?= configs/single.toml

.PHONY: bootstrap run test lint bench-micro bench

bootstrap:
	@scripts/bootstrap.sh

# The proxy with the embedded defaults (SQLite under ./data, no Redis): the
# schema migrated, demo subscribers added if absent, then `sipline proxy`.
DEMO_USERS := alice bob
SIPLINE := $(VENV)/bin/sipline

run: bootstrap
	@$(SIPLINE) db migrate --config $(CONFIG)
	@domain=$$($(VENV)/bin/python -c 'from sipline.config import load_settings as l; print(l("$(CONFIG)").proxy.domains[0])') && \
	listed=$$($(SIPLINE) subscriber list --config $(CONFIG)) && \
	for user in $(DEMO_USERS); do \
		echo "$$listed" | grep -q "^$$user@$$domain " || \
		echo "$$user-demo-pw" | $(SIPLINE) subscriber add "$$user@$$domain" --password-stdin --config $(CONFIG); \
	done
	@$(VENV)/bin/python -c "from sipline.config import load_settings; \
		s = load_settings('$(CONFIG)'); domain = s.proxy.domains[0]; \
		print(f'phones register at {s.sip.host}:{s.sip.port} (' + '/'.join(s.sip.transports).upper() + f'), domain {domain}'); \
		[print(f'  demo subscriber {u}@{domain}, password {u}-demo-pw') for u in '$(DEMO_USERS)'.split()]"
	exec $(SIPLINE) proxy --config $(CONFIG)

test: bootstrap
	$(VENV)/bin/python -m pytest

lint: bootstrap
	$(VENV)/bin/ruff check .

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
