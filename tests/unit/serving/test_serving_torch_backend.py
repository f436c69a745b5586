"""backend = "torch": the same model scored with PyTorch/FBGEMM, through the same
pipeline. A DLRM imported both ways gives the same fp32 predictions (<= 1e-6) and,
under one int8 plan, the same predictions to the ulp; a user's TorchScript program
of nn.EmbeddingBag + nn.Linear is a snapshot the pipeline runs."""

import dataclasses
import datetime as dt
import json

import numpy as np
import pytest

from lpmon.config import load
from lpmon.demo.world import WorldConfig, write_world
from lpmon.model import Model, forward_fp32, forward_quantized, load_snapshot
from lpmon.model.dlrm_import import import_dlrm
from lpmon.model.spec import SpecError
from lpmon.pipeline import open_store, run_day
from lpmon.pipeline.assembly import Ranges, assemble, observe
from lpmon.store import init_store
from support import REPO
from support.models import random_batch

torch = pytest.importorskip("torch")
import lpmon.torch_backend  # noqa: E402, F401 - registers back end "torch" (the pipeline imports it for a config's backend)
from lpmon.serving.torchscript import ulps  # noqa: E402
from support.models import dlrm_checkpoint  # noqa: E402

nn = torch.nn
DAY = dt.date(2026, 11, 1)


def both_ways(tmp_path):
    model = import_dlrm(dlrm_checkpoint(tmp_path / "dlrm.pt"))
    return model, dataclasses.replace(model, backend="torch")


def test_imported_dlrm_both_ways_fp32_and_int8(tmp_path):
    numpy_model, torch_model = both_ways(tmp_path)
    batch = random_batch(numpy_model.spec, 4000, np.random.default_rng(3))
    ours, theirs = forward_fp32(numpy_model, batch), forward_fp32(torch_model, batch)
    assert np.max(np.abs(ours.probabilities.astype(np.float64) - theirs.probabilities)) <= 1e-6
    ranges = Ranges.calibrate(numpy_model, batch.slice(0, 1000), "l2")
    names = [n for n, _, _ in numpy_model.spec.linear_layers()]
    plan = assemble(numpy_model, ranges, {**{n: "int8" for n in names}, "embeddings": "int8"})
    q_numpy = forward_quantized(numpy_model, batch, plan, taps=True)
    q_torch = forward_quantized(torch_model, batch, plan, taps=True)
    assert ulps(q_numpy.probabilities, q_torch.probabilities).max() <= 1
    assert ulps(q_numpy.probabilities, q_torch.probabilities).max() == 0  # measured: bit for bit
    assert q_torch.saturation == q_numpy.saturation  # counted by the hooks, as the executor counts
    for name in names:
        np.testing.assert_array_equal(q_torch.taps[name].output, q_numpy.taps[name].output)
    # Observers fed through forward hooks (every other row) see what the executor's observe= sees.
    fed = {}
    forward_fp32(
        torch_model,
        batch,
        batch_size=700,
        observe_every=2,
        observe=lambda name, x: fed.setdefault(name, []).append(x.copy()),
    )
    expected = {}
    forward_fp32(
        numpy_model,
        batch,
        batch_size=700,
        observe_every=2,
        observe=lambda name, x: expected.setdefault(name, []).append(x.copy()),
    )
    for name in names:
        a, b = np.concatenate(fed[name]), np.concatenate(expected[name])
        assert a.shape == b.shape == (2000, a.shape[1]) and np.max(np.abs(a - b)) < 1e-5
    torch_ranges = Ranges.from_observers(observe(torch_model, batch.slice(0, 1000), "minmax"))
    numpy_ranges = Ranges.from_observers(observe(numpy_model, batch.slice(0, 1000), "minmax"))
    for name in names:
        assert torch_ranges.by_layer[name].hi == pytest.approx(numpy_ranges.by_layer[name].hi, rel=1e-6)


class UserDLRM(nn.Module):
    """A user's own fp32 model, written with nn.EmbeddingBag and nn.Linear as facebookresearch/dlrm does."""

    def __init__(self, model: Model):
        super().__init__()
        spec, w = model.spec, model.weights
        self.emb_l = nn.ModuleList()
        for t, table in enumerate(spec.tables):
            bag = nn.EmbeddingBag(table.rows, table.dim, mode="sum")
            bag.weight.data = torch.from_numpy(w[f"emb_l.{t}.weight"].copy())
            self.emb_l.append(bag)

        def mlp(prefix, count, last_relu):
            layers = []
            for i in range(count):
                weight = torch.from_numpy(w[f"{prefix}.{2 * i}.weight"].copy())
                linear = nn.Linear(weight.shape[1], weight.shape[0])
                linear.weight.data, linear.bias.data = weight, torch.from_numpy(w[f"{prefix}.{2 * i}.bias"].copy())
                layers += [linear, nn.ReLU() if i < count - 1 or last_relu else nn.Identity()]
            return nn.Sequential(*layers)

        self.bot_l = mlp("bot_l", len(spec.bottom_mlp), True)
        self.top_l = mlp("top_l", len(spec.top_mlp), False)
        self.temperature = 1.0

    def forward(self, dense_x, lS_o: list[torch.Tensor], lS_i: list[torch.Tensor]):
        x = self.bot_l(dense_x)
        ly = [x] + [bag(lS_i[t], lS_o[t]) for t, bag in enumerate(self.emb_l)]
        T = torch.stack(ly, dim=1)
        Z = torch.bmm(T, T.transpose(1, 2))
        n = T.shape[1]
        pairs = torch.tril_indices(n, n, offset=-1)
        return torch.sigmoid(self.top_l(torch.cat([x, Z[:, pairs[0], pairs[1]]], dim=1)) / self.temperature)


def torch_snapshot(model: Model, folder):
    folder.mkdir(parents=True, exist_ok=True)
    torch.jit.script(UserDLRM(model)).save(str(folder / "model.pt"))
    (folder / "inputs.json").write_text(
        json.dumps({"dense": list(model.spec.dense), "sparse": list(model.spec.sparse)})
    )
    return folder


def test_a_torchscript_program_is_a_snapshot_found_by_module_type(tmp_path):
    numpy_model, _ = both_ways(tmp_path)
    loaded = load_snapshot(torch_snapshot(numpy_model, tmp_path / "snap"))
    assert loaded.backend == "torch" and loaded.spec == numpy_model.spec
    for name, value in numpy_model.weights.items():
        np.testing.assert_array_equal(loaded.weights[name], value)
    # A program whose forward is not the DLRM of its modules is refused, not scored differently.
    other = UserDLRM(numpy_model)
    other.temperature = 2.0
    torch.jit.script(other).save(str(tmp_path / "snap" / "model.pt"))
    with pytest.raises(SpecError, match="supports DLRM-shaped programs only"):
        load_snapshot(tmp_path / "snap")
    with pytest.raises(SpecError, match="a TorchScript program .*load it with lpmon.model.load_snapshot"):
        Model.load(tmp_path / "snap")  # the NumPy format's own loader says where to go
    (tmp_path / "snap" / "inputs.json").unlink()
    with pytest.raises(SpecError, match="no inputs.json"):
        load_snapshot(tmp_path / "snap")


LOAD_MODELS = """
import sys
from types import SimpleNamespace
from lpmon.pipeline import load_model
for backend, snapshot in zip(sys.argv[1::2], sys.argv[2::2]):
    loaded_before = "lpmon.torch_backend" in sys.modules
    model = load_model(SimpleNamespace(backend=backend, snapshot=snapshot))
    print(model.backend, loaded_before, "lpmon.torch_backend" in sys.modules, "torch" in sys.modules)
"""


def test_the_pipeline_loads_the_torch_back_end_for_a_model_that_needs_it_only(tmp_path):
    """lpmon.model never imports lpmon.torch_backend: load_model does, for backend = "torch"
    or a TorchScript program snapshot (the program imported, then scored as configured)."""
    import subprocess
    import sys

    numpy_model, _ = both_ways(tmp_path)
    numpy_snapshot, program = numpy_model.save(tmp_path / "numpy"), torch_snapshot(numpy_model, tmp_path / "program")
    runs = ["numpy", numpy_snapshot, "numpy", program, "torch", numpy_snapshot]
    done = subprocess.run(
        [sys.executable, "-c", LOAD_MODELS, *map(str, runs)], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert done.stdout.split("\n")[:3] == [
        "numpy False False False",  # a NumPy model: no torch
        "numpy False True True",  # a program needs the torch back end to be read
        "torch True True True",
    ]


@pytest.mark.slow
def test_the_pipeline_runs_a_user_torch_model_as_the_numpy_executor_does(tmp_path):
    """The world's model as a user's TorchScript program, backend = "torch", beside
    the same snapshot on the NumPy executor: the same day's verdict and plan."""
    results = {}
    for backend in ("numpy", "torch"):
        root = tmp_path / backend
        paths = write_world(root, WorldConfig("stable", days=1, seed=1, examples_per_day=50_000))
        snapshot = paths.snapshot
        if backend == "torch":
            snapshot = torch_snapshot(Model.load(paths.snapshot), root / "torch_snapshot")
        text = paths.config.read_text().replace(str(paths.snapshot), str(snapshot))
        paths.config.write_text(
            text.replace(
                "# Written by `lpmon world`.\n",
                f'[defaults]\nsample_size = 10000\nmin_examples = 1000\nbackend = "{backend}"\n',
            )
        )
        config = load(paths.config, environ={})
        init_store(config.store)
        results[backend] = (run_day(config, "stable", DAY), open_store(config))
    numpy_result, torch_result = results["numpy"][0], results["torch"][0]
    assert numpy_result.plan_version == 1 and numpy_result.action == "ONBOARD", numpy_result  # a plan was made
    assert torch_result.status == numpy_result.status and torch_result.action == numpy_result.action
    assert torch_result.plan_version == numpy_result.plan_version
    if numpy_result.dne_pct is not None:
        assert torch_result.dne_pct == pytest.approx(numpy_result.dne_pct, abs=1e-3)
    plans = [
        json.loads(store.active_plan("stable").plan_json)["layers"] if store.active_plan("stable") else None
        for _, store in results.values()
    ]
    assert plans[0] == plans[1] or (
        plans[0]
        and {k: v["precision"] for k, v in plans[0].items()} == {k: v["precision"] for k, v in plans[1].items()}
    )


def test_backend_config(tmp_path):
    paths = write_world(tmp_path, WorldConfig("stable", days=1, examples_per_day=200))
    paths.config.write_text(paths.config.read_text() + 'backend = "jax"\n')
    with pytest.raises(Exception, match='backend: must be "numpy" or "torch"'):
        load(paths.config, environ={})


@pytest.mark.slow
def test_bench_pipeline_prints_the_torch_back_end_beside_numpy():
    import subprocess
    import sys

    bench = REPO / "bench" / "bench_pipeline.py"
    done = subprocess.run(
        [sys.executable, str(bench), "--sizes", "3000", "--rows", "1000", "--backend", "torch"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    assert "torch back end: daily run" in done.stdout and "torch / NumPy" in done.stdout


def test_without_torch_the_back_end_says_what_to_install(tmp_path, request):
    """The pipeline imports the torch back end for a model configured with backend = "torch":
    without torch, that import is the error, and it names the extra."""
    from types import SimpleNamespace

    from lpmon.pipeline import load_model

    numpy_model, _ = both_ways(tmp_path)
    snapshot = numpy_model.save(tmp_path / "snap")
    request.getfixturevalue("without_torch")  # after the model is built with torch
    with pytest.raises(ImportError, match=r"pip install 'lpmon\[torch\]'"):
        load_model(SimpleNamespace(backend="torch", snapshot=str(snapshot)))
    assert load_model(SimpleNamespace(backend="numpy", snapshot=str(snapshot))).backend == "numpy"
