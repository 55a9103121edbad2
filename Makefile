# make run  : set up (system packages, .venv) and serve the Kunming demo on the embedded PostGIS
# make test : set up the same way and run the whole test suite on a throwaway PostGIS cluster
VENV    := .venv
PYTHON  ?= python3
STAMP   := $(VENV)/.installed

.PHONY: setup system run test bench clean-db

setup: system $(STAMP)

system:
	@bash scripts/system-deps.sh

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	@touch $(STAMP)

run: setup
	$(VENV)/bin/riskmap serve

test: setup
	$(VENV)/bin/python -m pytest -q

bench: setup
	for b in tiles hazchem routes emergency monitoring; do $(VENV)/bin/python -m bench.$$b || exit 1; done

clean-db:
	-$(VENV)/bin/riskmap db stop
	rm -rf data/pgcluster
