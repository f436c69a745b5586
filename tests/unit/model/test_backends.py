"""The back-end registry (lpmon.model.backends): the seam through which lpmon.model scores a
model and reads a snapshot with a back end it never imports (lpmon.torch_backend registers
itself when imported). Run here with a stand-in back end, so without torch."""

import dataclasses

import numpy as np
import pytest

from lpmon.model import Executor, ForwardResult, Model, ModelSpec, TableSpec, backends, forward_fp32, load_snapshot
from lpmon.model.backends import Backend, register, snapshot_backend
from support.models import random_batch

SPEC = ModelSpec(
    dense=("dense_0", "dense_1"),
    tables=(TableSpec("sparse_0", 20, 4), TableSpec("sparse_1", 10, 4)),
    bottom_mlp=(8, 4),
    top_mlp=(6, 1),
)


@pytest.fixture
def without_torch_backend(monkeypatch):
    """The registry as a process that never imported lpmon.torch_backend has it."""
    monkeypatch.setattr(backends, "_registered", {"numpy": backends.backend("numpy")})


def test_numpy_is_lpmon_models_own_back_end():
    model = Model.initialise(SPEC)
    assert isinstance(backends.executor(model, None), Executor)
    assert backends.backend("numpy").load_snapshot == Model.load


def test_a_back_end_not_loaded_says_which_module_registers_it(tmp_path, without_torch_backend):
    model = dataclasses.replace(Model.initialise(SPEC), backend="torch")
    batch = random_batch(SPEC, 5, np.random.default_rng(0))
    with pytest.raises(LookupError, match=r'back end "torch" is not loaded \(loaded: numpy\).*lpmon.torch_backend'):
        forward_fp32(model, batch)
    (tmp_path / "model.pt").write_bytes(b"")  # a TorchScript program's directory
    assert snapshot_backend(tmp_path) == "torch"
    with pytest.raises(LookupError, match="lpmon.torch_backend"):
        load_snapshot(tmp_path)


def test_a_registered_back_end_scores_its_models_and_reads_its_snapshots(tmp_path, without_torch_backend):
    numpy_model = Model.initialise(SPEC)
    calls = []

    class StandIn:
        def __init__(self, model, plan):
            calls.append(("executor", model.backend, plan))

        def forward(self, batch, **options):
            return ForwardResult(np.full(len(batch), 0.5, np.float32))

    def load(directory):
        calls.append(("load", directory.name))
        return dataclasses.replace(numpy_model, backend="torch")

    register(Backend("torch", StandIn, load))
    (tmp_path / "program").mkdir()
    (tmp_path / "program" / "model.pt").write_bytes(b"")
    model = load_snapshot(tmp_path / "program")
    result = forward_fp32(model, random_batch(SPEC, 5, np.random.default_rng(0)))
    np.testing.assert_array_equal(result.probabilities, np.full(5, 0.5, np.float32))
    assert calls == [("load", "program"), ("executor", "torch", None)]
    # lpmon's own format wins in a directory that holds both; numpy models stay on the NumPy executor.
    numpy_model.save(tmp_path / "program")
    assert snapshot_backend(tmp_path / "program") == "numpy"
    assert load_snapshot(tmp_path / "program").backend == "numpy"
    assert isinstance(backends.executor(numpy_model, None), Executor)
    assert snapshot_backend(tmp_path / "nothing") is None
