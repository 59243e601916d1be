# Two entry points for a fresh machine with only Python 3.10+ on it; each sets itself up.
#   make demo   train -> export -> verify -> bench -> report -> pack on the offline quickstart recipe
#   make test   the test suite (offline, CPU)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
RECIPE ?= recipes/quickstart.yaml

.PHONY: setup demo test edge clean
EDGE   := .venv-edge

# The full install (training + export + tests), pinned by constraints.txt for a repeatable stack.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[train,jax,mlflow,test]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/tk train $(RECIPE)
	$(BIN)/tk export $(RECIPE) --format all --quantize all
	$(BIN)/tk verify $(RECIPE)
	$(BIN)/tk bench $(RECIPE) --runs 30
	$(BIN)/tk report $(RECIPE)
	$(BIN)/tk pack $(RECIPE) exported/$$(basename $(RECIPE) .yaml)-device --force

# The device install (no TensorFlow): the `edge` tests run there too, on the run the full suite exported.
$(EDGE)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(EDGE)
	$(EDGE)/bin/python -m pip install -q --upgrade pip
	$(EDGE)/bin/python -m pip install -q -c constraints.txt -e . pytest
	touch $@

test: setup $(EDGE)/.installed
	TK_EDGE_RUN_OUT=$(CURDIR)/.edge-run $(BIN)/python -m pytest -q
	TK_EDGE_RUN=$$(cat .edge-run) $(EDGE)/bin/python -m pytest -q -m edge -p no:cacheprovider tests/edge tests/test_layout.py

clean:
	rm -rf $(VENV) $(EDGE) .edge-run exported/*/ exported/.cache data/quickstart
