import builtins

import numpy as np
import pytest

from lpmon.cli import main
from lpmon.model import Model, ModelSpec, SpecError, TableSpec, forward_fp32
from lpmon.model.dlrm_import import import_dlrm, model_from_state_dict
from support.models import random_batch

SPEC = ModelSpec(
    dense=tuple(f"dense_{i}" for i in range(4)),
    tables=tuple(TableSpec(f"sparse_{t}", 30, 8) for t in range(3)),
    bottom_mlp=(16, 8),
    top_mlp=(10, 1),
)


def test_state_dict_round_trip_keeps_predictions():
    model = Model.initialise(SPEC, seed=2)
    state = dict(model.weights, **{"module_step": np.zeros(1)})
    again = model_from_state_dict(state)
    assert again.spec == SPEC
    batch = random_batch(SPEC, 100, np.random.default_rng(0))
    np.testing.assert_array_equal(forward_fp32(again, batch).probabilities, forward_fp32(model, batch).probabilities)


def test_cat_interaction_is_inferred():
    spec = ModelSpec(
        dense=("dense_0",), tables=(TableSpec("sparse_0", 5, 3),), bottom_mlp=(4,), top_mlp=(2, 1), interaction="cat"
    )
    assert model_from_state_dict(Model.initialise(spec).weights).spec.interaction == "cat"


def test_bad_state_dicts():
    weights = Model.initialise(SPEC).weights
    with pytest.raises(SpecError, match="no top_l"):
        model_from_state_dict({k: v for k, v in weights.items() if not k.startswith("top_l")})
    broken = dict(weights)
    broken["top_l.0.weight"] = np.zeros((10, 5), np.float32)
    with pytest.raises(SpecError, match="top_l.0 takes 5 inputs"):
        model_from_state_dict(broken)


def test_without_torch_the_error_says_what_to_install(monkeypatch, tmp_path, capsys):
    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch":
            raise ImportError("no torch")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    with pytest.raises(ImportError, match=r"pip install torch==2.13.0 \(the CPU build\)"):
        import_dlrm(tmp_path / "model.pt")
    assert main(["import-dlrm", str(tmp_path / "model.pt"), "--out", str(tmp_path / "snap")]) == 1
    err = capsys.readouterr().err  # one line, no traceback
    assert err.count("\n") == 1 and err.startswith("lpmon import-dlrm: ") and "pip install torch==2.13.0" in err


def test_torch_checkpoint_file(tmp_path):
    torch = pytest.importorskip("torch")
    model = Model.initialise(SPEC, seed=3)
    state = {f"module.{k}": torch.from_numpy(v) for k, v in model.weights.items()}
    torch.save({"state_dict": state, "iter": 7}, tmp_path / "dlrm.pt")
    imported = import_dlrm(tmp_path / "dlrm.pt")
    batch = random_batch(SPEC, 50, np.random.default_rng(1))
    np.testing.assert_array_equal(forward_fp32(imported, batch).probabilities, forward_fp32(model, batch).probabilities)


def test_torch_checkpoint_imported_straight_to_a_mapped_snapshot(tmp_path, monkeypatch):
    """Each tensor is checked once, while it is written: the model loaded at the end is
    mapped, and no full-model finite scan runs; a NaN is refused with nothing published."""
    torch = pytest.importorskip("torch")
    model = Model.initialise(SPEC, seed=3)
    state = {f"module.{k}": torch.from_numpy(v) for k, v in model.weights.items()}
    torch.save({"state_dict": state}, tmp_path / "dlrm.pt")
    scans = []
    real = Model.__post_init__
    monkeypatch.setattr(Model, "__post_init__", lambda self: scans.append(dict(self.checked)) or real(self))
    imported = import_dlrm(tmp_path / "dlrm.pt", out=tmp_path / "snap")
    assert len(scans) == 1 and set(scans[0]) == set(SPEC.weight_shapes())  # only Model.load's, all pre-checked
    assert all(isinstance(array, np.memmap) for array in imported.weights.values())
    assert (tmp_path / "snap" / "weights.json").is_file() and Model.load(tmp_path / "snap").spec == SPEC
    batch = random_batch(SPEC, 50, np.random.default_rng(1))
    np.testing.assert_array_equal(forward_fp32(imported, batch).probabilities, forward_fp32(model, batch).probabilities)
    state["module.emb_l.1.weight"] = state["module.emb_l.1.weight"].clone()
    state["module.emb_l.1.weight"][4, 2] = float("nan")
    torch.save({"state_dict": state}, tmp_path / "nan.pt")
    with pytest.raises(SpecError, match="weights: emb_l.1.weight has 1 NaN or inf values"):
        import_dlrm(tmp_path / "nan.pt", out=tmp_path / "nan")
    assert not (tmp_path / "nan" / "weights.json").exists()
    assert [p.name for p in (tmp_path / "nan" / "weights").iterdir()] == [".lock"]
