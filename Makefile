# Two entry points for a fresh machine with only Python 3.10+ on it; each sets itself up.
#   make demo   train -> export -> verify -> bench -> report -> pack on the offline quickstart recipe
#   make test   ruff check + format check, then the test suite (offline, CPU)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
RECIPE ?= recipes/quickstart.yaml

.PHONY: setup demo lint test test-fast edge clean
EDGE   := .venv-edge

# The full install (training + export + tests), pinned by constraints.txt for a repeatable stack.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[train,jax,mlflow,test,openvino-export]'
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
	$(EDGE)/bin/python -m pip install -q -c constraints.txt -e '.[openvino]' pytest
	touch $@

# Lint and format first: seconds, and a red line before minutes of training.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# -n 1: the suite runs in one pytest-xdist worker, so a native crash (a runtime's abort under memory
# pressure) costs the test it happened in, not the run; the edge pass runs even if the first failed.
# --basetemp: the edge pass reads the run the first pass exported; under /tmp/pytest-of-$USER another
# pytest on the machine could rotate it away in between (pytest keeps its last 3 folders there).
test: lint $(EDGE)/.installed
	@rm -f .edge-run; status=0; \
	TK_EDGE_RUN_OUT=$(CURDIR)/.edge-run $(BIN)/python -m pytest -q -n 1 --basetemp=$(CURDIR)/.pytest-tmp \
		|| status=$$?; \
	if [ -s .edge-run ]; then TK_EDGE_RUN=$$(cat .edge-run) $(EDGE)/bin/python -m pytest -q -m edge \
		-p no:cacheprovider tests/edge tests/web tests/core/test_formats.py tests/test_layout.py tests/cli/test_launch.py || status=$$?; else status=1; fi; \
	exit $$status

# core, data, the layout rules and the device unit tests: every test that trains nothing (< 30 s).
test-fast: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not trains" tests/core tests/data tests/edge tests/test_layout.py

clean:
	rm -rf $(VENV) $(EDGE) .edge-run .pytest-tmp exported/*/ exported/.cache data/quickstart
