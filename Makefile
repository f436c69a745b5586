# The two README commands: `make demo` (main job) and `make test` (test suite).
# Both create .venv on first use and install what they need; reruns only
# rebuild when the build inputs changed.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.lpmon-installed
PIP := $(BIN)/pip install --disable-pip-version-check -q -c constraints.txt
# PyTorch's CPU build (a wheel on these machines' disk): the tests cross-check our
# kernels against FBGEMM through it. Plain `torch` would pull a multi-GB CUDA build.
TORCH_VERSION := 2.13.0
BUILD_INPUTS := pyproject.toml setup.py constraints.txt $(wildcard kernels/*.pyx kernels/*.pxd kernels/*.pxi kernels/*.h kernels/*.c)

.PHONY: demo test test-fast bench install clean

demo: $(STAMP)
	$(BIN)/lpmon demo

# On every core (pytest-xdist, a test file per worker), then the tests that must
# run alone (they restart PostgreSQL).
test: $(STAMP)
	$(BIN)/pytest -q -n 2 --dist loadfile -m "not serial"
	$(BIN)/pytest -q -m serial

# Everything but the tests marked slow.
test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python bench/bench_metrics.py

install: $(STAMP)

$(STAMP): $(BUILD_INPUTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) setuptools wheel Cython
	$(PIP) -e '.[airflow,demo,test]' --no-build-isolation
	$(PIP) torch==$(TORCH_VERSION)
	touch $@

clean:
	rm -rf $(VENV) build dist *.egg-info lpmon/_kernels/*.so $(patsubst %.pyx,%.c,$(wildcard kernels/*.pyx))
