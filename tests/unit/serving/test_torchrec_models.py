"""Imported TorchRec models through the rest of lpmon: an int8 plan on the DCN cross layers
run end to end by `lpmon run`, and the TorchScript export of DLRM and DLRM_DCN models
under int8 plans checked at 0 ulp against lpmon's executor (in a fresh process too)."""

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from lpmon.cli import main
from lpmon.config import load
from lpmon.model import Executor, Model
from lpmon.model.torchrec_import import import_torchrec
from lpmon.pipeline import open_store
from lpmon.pipeline.assembly import Ranges, assemble
from lpmon.traffic import TrafficStore
from support.serving import run_fresh
from support.torchrec_models import TABLES, build, features_file, random_batch, require_torchrec, save

require_torchrec()
from lpmon.serving.torchscript import export, ulps  # noqa: E402
from lpmon.torch_backend import TorchExecutor  # noqa: E402

DAY = dt.date(2026, 11, 1)


def imported(root, kind):
    checkpoint = save(build(kind), root / "model.pt")
    return import_torchrec(checkpoint, root / "snapshot", features_file(root / "features.json"))


@pytest.fixture(scope="module", params=["dlrm", "dcn"])
def model(request, tmp_path_factory):
    return imported(tmp_path_factory.mktemp(request.param), request.param)


def int8_plan(model, batch, tables=("int8", "int4", "int8")):
    names = [n for n, _, _ in model.spec.linear_layers()]
    precisions = {**{n: "int8" for n in names}, **{f"emb_l.{t}": p for t, p in enumerate(tables)}}
    return assemble(model, Ranges.calibrate(model, batch, "l2"), precisions, model_id="torchrec")


def test_export_under_an_int8_plan_is_exact(model, tmp_path):
    batch = random_batch(TABLES, 2000, np.random.default_rng(3))
    plan = int8_plan(model, batch.slice(0, 1000))
    assert {layer.precision for layer in plan.layers if layer.name.startswith("cross_l.")} <= {"int8"}
    info = export(model, plan, tmp_path / "model.pt", probe=batch)
    assert info["checked_on"]["max_ulp"] == 0, info["checked_on"]
    assert info["layers"]["emb_l.0"]["features"] == ["cat_0", "cat_1"]
    assert info["layers"]["emb_l.1"]["pooling"] == "mean" and info["pair_order"] == model.spec.pair_order
    ours = Executor(model, plan).forward(batch)
    theirs = run_fresh(tmp_path, [tmp_path / "model.pt"], batch)[tmp_path / "model.pt"]
    assert ulps(ours.probabilities, theirs).max() == 0
    if model.spec.cross_layers:
        assert info["layers"]["cross_l.1.W"]["op"] == "quantized::linear_with_input_q_dq_qweight_dq_output_fp32"
        assert {"cross_l.0.V", "cross_l.1.W"} <= set(ours.saturation)
    # the torch back end runs the same module, its FC units (cross layers too) hooked
    torch_run = TorchExecutor(model, plan).forward(batch, taps=True)
    assert ulps(torch_run.probabilities, ours.probabilities).max() == 0
    assert set(torch_run.saturation) == set(ours.saturation)


def write_traffic(store: TrafficStore, model: Model, n: int, seed: int) -> None:
    """A day of traffic in the imported model's columns (dense_*, cat_*), labels drawn from it."""
    rng = np.random.default_rng(seed)
    batch = random_batch(TABLES, n, rng)
    p = Executor(model).forward(batch).probabilities
    columns = {
        "request_id": pa.array(np.arange(n, dtype=np.int64)),
        "label": pa.array((rng.random(n) < p).astype(np.int64)),
        "ts": pa.array(np.full(n, np.datetime64(f"{DAY}T12:00:00", "us"))),
    }
    for i, name in enumerate(model.spec.dense):
        columns[name] = pa.array(batch.dense[:, i])
    for name, feature in zip(model.spec.sparse, batch.sparse):
        offsets = np.append(feature.offsets, len(feature.indices)).astype(np.int32)
        columns[name] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(feature.indices))
    store.write_day(DAY, pa.table(columns))


def test_lpmon_run_of_a_day_under_an_int8_plan_on_the_cross_layers(tmp_path, capsys):
    model = imported(tmp_path, "dcn")
    traffic = TrafficStore(tmp_path / "traffic")
    write_traffic(traffic, model, 6000, seed=4)
    config_path = tmp_path / "lpmon.toml"
    config_path.write_text(
        f'store = "sqlite:///{tmp_path / "state.db"}"\n\n'
        "[defaults]\nsample_size = 4000\nmax_sample_size = 4000\nmin_examples = 1000\n\n"
        f'[models.dcn]\ntraffic = "{traffic.root}"\nsnapshot = "{tmp_path / "snapshot"}"\n'
    )
    path = str(config_path)
    assert main(["init", "--config", path]) == 0
    plan = int8_plan(model, random_batch(TABLES, 2000, np.random.default_rng(5)))
    plan = type(plan)("dcn", 1, plan.layers)
    (tmp_path / "plan.json").write_text(plan.to_json())
    assert main(["plans", "import", "--config", path, "--model", "dcn", str(tmp_path / "plan.json")]) == 0
    assert main(["plans", "promote", "--config", path, "--model", "dcn", "1", "--force"]) == 0
    capsys.readouterr()
    assert main(["run", "--config", path, "--model", "dcn", "--date", str(DAY)]) == 0, capsys.readouterr().err
    assert "plan v1" in capsys.readouterr().out
    store = open_store(load(config_path, environ={}))
    layers = {row["layer"]: row for row in store.layer_metrics("dcn", str(DAY))}
    for name in ("cross_l.0.V", "cross_l.0.W", "cross_l.1.V", "cross_l.1.W"):
        row = layers[name]
        assert row["layer_precision"] == "int8" and 0 < row["sqnr_db"] < 80, row
    run = next(r for r in store.rows("runs", "dcn") if r["logical_date"] == str(DAY))
    assert run["sample_size"] == 4000 and run["plan_version"] == 1, run
