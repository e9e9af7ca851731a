# geosup: two commands do all the set-up on a fresh machine.
#   make demo   create .venv, install geosup, build the demo city and run every check
#   make test   also install the test tools and the system packages (PostGIS, Chromium),
#               then run every test
PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip
DEMO_DIR ?= geosup-demo

.PHONY: demo test lint system-deps clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(PIP) install --quiet -e ".[test]"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/geosup demo $(DEMO_DIR)

system-deps:
	@bash .ci/system-deps.sh

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .

test: $(VENV)/.installed-test system-deps
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
