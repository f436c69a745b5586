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
# TorchRec (the oracle of `lpmon import-torchrec`'s tests), pinned: its CPU FBGEMM
# (fbgemm-gpu-cpu; plain `pip install torchrec` pulls the 500 MB CUDA fbgemm-gpu, which
# does not import here) and torchrec without their dependencies, which would replace
# torch, then the few torchrec needs, under constraints.txt like everything else.
TORCHREC_STAMP := $(VENV)/.lpmon-torchrec-installed
BUILD_INPUTS := pyproject.toml setup.py constraints.txt $(wildcard kernels/*.pyx kernels/*.pxd kernels/*.pxi kernels/*.h kernels/*.c)

.PHONY: demo test test-fast lint bench install install-torchrec clean

# DEMO_ARGS: more `lpmon demo` options (CI: --check-readme README.md).
demo: $(STAMP)
	$(BIN)/lpmon demo $(DEMO_ARGS)

# On every core (pytest-xdist, a test file per worker), then the tests that must
# run alone (they restart PostgreSQL). LPMON_REQUIRE_TORCHREC=1: the TorchRec tests
# fail, rather than skip, if torchrec does not import.
test: $(STAMP) $(TORCHREC_STAMP)
	LPMON_REQUIRE_TORCHREC=1 $(BIN)/pytest -q -n 2 --dist loadfile -m "not serial" --durations=25
	LPMON_REQUIRE_TORCHREC=1 $(BIN)/pytest -q -m serial

# Everything but the tests marked slow.
test-fast: $(STAMP) $(TORCHREC_STAMP)
	$(BIN)/pytest -q -m "not slow"

# Lint (pyflakes, pycodestyle, isort), the format check and the types of the numeric core:
# the settings are pyproject.toml's [tool.ruff] and [tool.mypy]. CI runs this before the tests.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Every benchmark in bench/, at small sizes (about 6 minutes on 2 busy cores; not run in CI). For the
# figures of PERF.md and the issues, run a script alone at its default sizes (see its --help).
bench: $(STAMP)
	$(BIN)/python bench/bench_metrics.py --sizes 1e6 1e7 --repeat 3
	$(BIN)/python bench/bench_calibrate.py --n 1e6 --repeat 3
	$(BIN)/python bench/bench_quant.py --rows 100000 --bags 8192 --repeat 3
	$(BIN)/python bench/bench_model.py --examples 16384 --rows 10000 --repeat 3
	$(BIN)/python bench/bench_pipeline.py --sizes 20000 --rows 10000
	$(BIN)/python bench/bench_decisions.py --sizes 5000 --days 8 --scenarios outliers gradual_drift
	$(BIN)/python bench/bench_decisions.py --evidence --sizes 2000 --reps 5 --days 10 --truth-examples 200000

install: $(STAMP) $(TORCHREC_STAMP)

install-torchrec: $(TORCHREC_STAMP)

$(TORCHREC_STAMP): $(STAMP)
	$(PIP) --no-deps fbgemm-gpu-cpu==1.8.0 torchrec==1.8.0
	$(PIP) tensordict==0.15.3 torchmetrics==1.0.3 tqdm pyre-extensions
	$(BIN)/python -c "from torchrec.models.dlrm import DLRM, DLRM_DCN"
	touch $@

$(STAMP): $(BUILD_INPUTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) setuptools wheel Cython
	$(PIP) -e '.[airflow,demo,test]' --no-build-isolation
	$(PIP) torch==$(TORCH_VERSION)
	touch $@

clean:
	rm -rf $(VENV) build dist *.egg-info lpmon/_kernels/*.so $(patsubst %.pyx,%.c,$(wildcard kernels/*.pyx))
