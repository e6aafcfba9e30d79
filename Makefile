# circhub — the two commands a fresh machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PEER   := .venv-peer
PEER_STAMP := $(PEER)/.installed
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: demo test bench peer mutants chaos lint services odbc faketime chromium cluster-tools serve clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	  || { echo "circhub needs Python 3.11+ ($(PYTHON) is older)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

# The demo needs no server: members and central store are SQLite files. Where the local
# PostgreSQL (and its ODBC driver) are at hand it also runs Evergreen and Polaris-style members.
demo: $(STAMP)
	@scripts/ensure-services >/dev/null 2>&1 || echo "(no local PostgreSQL: every demo member is Koha on SQLite)"
	@scripts/ensure-odbc >/dev/null 2>&1 || echo "(no PostgreSQL ODBC driver: no Polaris-style members)"
	$(BIN)/circhub demo

test: $(STAMP) services odbc faketime chromium cluster-tools
	$(BIN)/python -m pytest -q

bench: $(STAMP) $(PEER_STAMP) services odbc
	$(BIN)/python -m bench

# The bench's peer, dlt with its pyarrow and connectorx backends, in a venv of its own (never
# circhub's: dlt's pins, psycopg2 and its SQLAlchemy, stay out of circhub's).
$(PEER_STAMP): bench/peer-requirements.txt
	@test -x $(PEER)/bin/python || $(PYTHON) -m venv $(PEER) \
	  || { echo "make peer: could not create $(PEER) with $(PYTHON) -m venv"; exit 1; }
	@$(PEER)/bin/pip install -q --upgrade pip \
	  || { echo "make peer: could not upgrade pip in $(PEER)"; exit 1; }
	@$(PEER)/bin/pip install -q -r bench/peer-requirements.txt \
	  || { echo "make peer: could not install bench/peer-requirements.txt into $(PEER)"; exit 1; }
	@$(PEER)/bin/python -c 'import dlt, connectorx, pyarrow, sqlalchemy, pymysql, psycopg2' \
	  || { echo "make peer: $(PEER) installed but a backend does not import (see above)"; exit 1; }
	@touch $@

peer: $(PEER_STAMP)

# Mutation testing of the modules that carry the guarantees (not part of `make test`: about an
# hour on two cores). MODULES= limits it to some (names or paths as in scripts/mutants.toml);
# MUTANT_JOBS modules run at once (their tests wait on the databases much of the time); a run
# cut short resumes. Report: mutants/report.md; figures quoted in docs/reliability.md.
MUTANT_JOBS ?= 2
mutants: $(STAMP) services odbc
	$(BIN)/python scripts/mutants.py --jobs $(MUTANT_JOBS) $(MODULES)

# Randomized fault schedules against a simulated consortium on the harness's own PostgreSQL and
# MariaDB instances, which it kills and restarts and whose members' clocks it skews through
# libfaketime (not part of `make test`, which runs two schedules). CHAOS_SCHEDULES=N,
# CHAOS_SEED=S; CHAOS_ONLY=I reruns schedule I of a seed. Figures: docs/reliability.md
# ("Fault campaign").
chaos: $(STAMP) services odbc faketime
	$(BIN)/python -m chaos

lint: $(STAMP)
	$(BIN)/ruff check .
	scripts/lint-imports

services:
	@scripts/ensure-services

odbc:
	@scripts/ensure-odbc

faketime:
	@scripts/ensure-faketime

chromium:
	@scripts/ensure-chromium

cluster-tools:
	@scripts/ensure-cluster-tools

serve: $(STAMP)
	$(BIN)/circhub serve

clean:
	rm -rf $(VENV) $(PEER) circhub.db demo var

# Production topology on one machine (root): Prefect server on PostgreSQL, workers in network
# namespaces; `scripts/cluster/down` tears it down. See docs/scaling.md.
cluster: $(STAMP) services
	scripts/cluster/up
