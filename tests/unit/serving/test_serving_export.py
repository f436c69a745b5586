"""`lpmon plans export --format torchscript` and `lpmon score`: the exported module,
run in a fresh process that imports only torch, gives lpmon's own p_q to the ulp,
on the synthetic world (through the CLI) and on an imported facebookresearch/dlrm
checkpoint, for int8/int4/int2 tables and int8/fp16 FC layers."""

import dataclasses
import datetime as dt
import importlib
import json
import re
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from lpmon.cli import main
from lpmon.config import load
from lpmon.demo.world import WorldConfig, write_world
from lpmon.model import Executor, Model
from lpmon.pipeline import open_store
from lpmon.pipeline.assembly import Ranges, assemble
from lpmon.pipeline.context import draw as _draw
from lpmon.serving.scores import read_metadata
from lpmon.store import init_store
from support import REPO
from support.models import dlrm_checkpoint, random_batch
from support.serving import run_fresh

torch = pytest.importorskip("torch")
from lpmon.serving import torchscript  # noqa: E402
from lpmon.serving.torchscript import build_module, export, ulps  # noqa: E402

README = REPO / "README.md"
DAY = dt.date(2026, 11, 1)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small synthetic world with plan v1 (int8 FC layers and tables, ranges from
    the day's traffic) imported and put in force."""
    root = tmp_path_factory.mktemp("world")
    paths = write_world(root, WorldConfig("stable", days=1, seed=3, examples_per_day=12_000))
    text = paths.config.read_text().replace(
        "# Written by `lpmon world`.\n", "[defaults]\nsample_size = 6000\nmin_examples = 1000\n"
    )
    paths.config.write_text(text)
    config = load(paths.config, environ={})
    init_store(config.store)
    model = Model.load(config.model("stable").snapshot)
    sample = _draw(config.model("stable"), model, str(DAY))
    names = [n for n, _, _ in model.spec.linear_layers()]
    plan = assemble(
        model,
        Ranges.calibrate(model, sample.batch, "l2"),
        {**{n: "int8" for n in names}, "embeddings": "int8"},
        model_id="stable",
    )
    (root / "plan.json").write_text(plan.to_json())
    assert main(["plans", "import", "--config", str(paths.config), "--model", "stable", str(root / "plan.json")]) == 0
    assert main(["plans", "promote", "--config", str(paths.config), "--model", "stable", "1", "--force"]) == 0
    return paths.config


def test_world_export_through_the_cli_is_exact_in_a_fresh_process(world, tmp_path, capsys):
    config = load(world, environ={})
    out = tmp_path / "serving" / "stable.pt"
    assert (
        main(
            [
                "plans",
                "export",
                "--config",
                str(world),
                "--model",
                "stable",
                "--version",
                "1",
                "--format",
                "torchscript",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "checked on 4,096 examples of 2026-11-01: largest difference from lpmon's p_q 0 ulp" in printed
    manifest = json.loads(out.with_name("stable.pt.manifest.json").read_text())
    assert manifest["plan_version"] == 1 and manifest["checked_on"]["max_ulp"] == 0
    assert manifest["checked_on"]["traffic_day"] == str(DAY) and manifest["checked_on"]["examples"] == 4096
    assert manifest["checked_on"]["torch"] == torch.__version__ and manifest["checked_on"]["isa"]
    fc = manifest["layers"]["bot_l.0"]
    plan = open_store(config).active_plan("stable")
    layer = json.loads(plan.plan_json)["layers"]["bot_l.0"]
    if layer["precision"] == "int8":
        assert fc["activation"]["scale"] == layer["activation"]["scale"]
        assert fc["activation"]["zero_point"] == layer["activation"]["zero_point"]
        assert len(fc["weight"]["scales"]) == 64 and "fma" in fc["rounding"]["output"]
    table = manifest["layers"]["emb_l.0"]
    assert table["precision"] == "int8" and table["row_format"] == "[dim x uint8][fp32 scale][fp32 bias]"
    assert table["scale_bias"] == "fp32" and table["op"] == "quantized::embedding_bag_byte_rowwise_offsets"

    # lpmon score: the day's sample as the daily run scored it.
    scores = tmp_path / "scores.parquet"
    assert main(["score", "--config", str(world), "--model", "stable", "--date", str(DAY), "--out", str(scores)]) == 0
    table = pq.read_table(scores)
    assert table.column_names == ["request_id", "label", "p_fp32", "p_q"]
    assert read_metadata(scores)["plan_version"] == 1
    model = Model.load(config.model("stable").snapshot)
    sample = _draw(config.model("stable"), model, str(DAY))
    np.testing.assert_array_equal(table.column("request_id").to_numpy(), sample.request_ids)
    p_q = table.column("p_q").to_numpy()
    assert not np.array_equal(p_q, table.column("p_fp32").to_numpy())
    theirs = run_fresh(tmp_path, [out], sample.batch)[out]
    assert ulps(p_q, theirs).max() <= 1, ulps(p_q, theirs).max()
    assert np.array_equal(p_q, theirs)  # measured: no example differs at all


def test_score_fp32_and_another_plan_and_errors(world, tmp_path, capsys):
    out = tmp_path / "fp32.parquet"
    assert (
        main(["score", "--config", str(world), "--model", "stable", "--date", str(DAY), "--fp32", "--out", str(out)])
        == 0
    )
    table = pq.read_table(out)
    np.testing.assert_array_equal(table.column("p_q").to_numpy(), table.column("p_fp32").to_numpy())
    assert read_metadata(out)["plan_version"] is None and read_metadata(out)["p_q"] == "fp32"
    assert (
        main(
            [
                "score",
                "--config",
                str(world),
                "--model",
                "stable",
                "--date",
                str(DAY),
                "--plan",
                "v9",
                "--out",
                str(out),
            ]
        )
        == 1
    )
    assert "no plan v9 (versions: v1)" in capsys.readouterr().err
    assert main(["plans", "export", "--config", str(world), "--model", "stable", "--format", "torchscript"]) == 1
    assert "give --out FILE.pt" in capsys.readouterr().err
    # --format json stays the default and is what it was
    assert main(["plans", "export", "--config", str(world), "--model", "stable"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == 1


PLANS = {  # FC layers, then tables in order
    "int8 FC, int8 tables": ("int8", ["int8"] * 4, False),
    "int8 FC, int4 tables": ("int8", ["int4"] * 4, False),
    "int8 FC, int2 tables": ("int8", ["int2"] * 4, False),
    "int8 FC, int4/int2 tables with range search": ("int8", ["int4", "int2", "int4", "int2"], True),
    "fp16 FC, mixed tables": ("fp16", ["int8", "int4", "fp16", "fp32"], False),
    "mixed FC, mixed tables": (
        {"bot_l.0": "fp16", "bot_l.2": "int8", "top_l.0": "int8", "top_l.2": "fp16"},
        ["int2", "int8", "int4", "fp16"],
        False,
    ),
}


def dlrm_plan(model, ranges, fc, tables, search):
    from lpmon.quant import LayerPlan

    names = [n for n, _, _ in model.spec.linear_layers()]
    precisions = {n: fc[n] if isinstance(fc, dict) else fc for n in names}
    precisions.update({f"emb_l.{t}": p for t, p in enumerate(tables)})
    plan = assemble(model, ranges, precisions, model_id="dlrm")
    if search:
        plan = type(plan)(
            plan.model_id,
            1,
            tuple(
                LayerPlan(layer.name, layer.kind, layer.precision, layer.scheme, layer.activation, True)
                if layer.precision in ("int4", "int2")
                else layer
                for layer in plan.layers
            ),
        )
    return plan


def test_imported_dlrm_exports_are_exact_for_every_layer_kind(tmp_path):
    """Odd widths (7: n-bit rows with a padding code), multi-hot and empty bags, mean pooling too."""
    from lpmon.model.dlrm_import import import_dlrm

    model = import_dlrm(dlrm_checkpoint(tmp_path / "dlrm.pt"))
    batch = random_batch(model.spec, 3000, np.random.default_rng(1))
    ranges = Ranges.calibrate(model, batch.slice(0, 1000), "l2")
    files, expected = [], {}
    for i, (name, (fc, tables, search)) in enumerate(PLANS.items()):
        plan = dlrm_plan(model, ranges, fc, tables, search)
        path = tmp_path / f"plan{i}.pt"
        info = export(model, plan, path, probe=batch.slice(0, 500))
        assert info["checked_on"]["max_ulp"] == 0, (name, info["checked_on"])
        files.append(path)
        expected[path] = (name, Executor(model, plan).forward(batch).probabilities)
    mean = Model(dataclasses.replace(model.spec, pooling="mean"), model.weights)
    plan = dlrm_plan(mean, ranges, "int8", ["int8", "int4", "int2", "fp16"], False)
    export(mean, plan, tmp_path / "mean.pt")
    files.append(tmp_path / "mean.pt")
    expected[tmp_path / "mean.pt"] = ("mean pooling", Executor(mean, plan).forward(batch).probabilities)
    got = run_fresh(tmp_path, files, batch)
    for path, (name, ours) in expected.items():
        gap = ulps(ours, got[path])
        assert gap.max() <= 1, (name, gap.max())
        assert gap.max() == 0, (name, gap.max(), np.count_nonzero(gap))  # measured: bit for bit


def test_fp32_and_bf16_layers_are_close_but_not_bit_exact(tmp_path):
    """fp32/bf16 FC layers go through torch's float32 GEMM, whose blocking over long
    inputs differs from NumPy's BLAS: a few dozen ulps of p at most (measured), stated, not hidden."""
    from lpmon.model.dlrm_import import import_dlrm

    model = import_dlrm(dlrm_checkpoint(tmp_path / "dlrm.pt"))
    batch = random_batch(model.spec, 2000, np.random.default_rng(2))
    module = build_module(model, None)
    info = torchscript.check(module, model, None, batch)
    assert info["max_abs_diff"] < 1e-6, info


def test_readme_serving_example_runs(world, tmp_path):
    """The README's serving example, as written, on an exported module."""
    text = README.read_text()
    section = text.split("## Serving the plan", 1)[1]
    example = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert (
        main(
            [
                "plans",
                "export",
                "--config",
                str(world),
                "--model",
                "stable",
                "--format",
                "torchscript",
                "--out",
                str(tmp_path / "ctr.pt"),
            ]
        )
        == 0
    )
    result = subprocess.run([sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    p = [float(v) for v in re.findall(r"[0-9.]+(?:e-?\d+)?", result.stdout.split("tensor", 1)[1])]
    assert len(p) == 4 and all(0 < v < 1 for v in p), result.stdout


def test_without_torch_the_error_names_the_extra(world, tmp_path, without_torch, capsys):
    with pytest.raises(ImportError, match=r"pip install 'lpmon\[torch\]'"):
        importlib.import_module("lpmon.serving.torchscript")
    assert (
        main(
            [
                "plans",
                "export",
                "--config",
                str(world),
                "--model",
                "stable",
                "--format",
                "torchscript",
                "--out",
                str(tmp_path / "x.pt"),
            ]
        )
        == 1
    )
    assert "pip install 'lpmon[torch]'" in capsys.readouterr().err


def test_int8_float_output_is_fused_even_where_float64_lands_on_a_float32_midpoint():
    """acc * m + b in float64 then float32 rounds twice; where the float64 sum is a
    float32 midpoint (here 2**24 + 1, the exact value just above it) the fused
    result is redone: 2**24 + 2, not the round-to-even 2**24."""
    from lpmon.model.forward import int8_float_output
    from lpmon.quant import QParams
    from lpmon.quant.qparams import fma32

    f32 = np.float32

    class Layer:
        weight_scale = np.array([1 + 2.0**-23, 0.5], f32)
        bias = np.array([2.0**-23 * (1 + 2.0**-17), 0.25], f32)

        def accumulate(self, x_q, zero_point):
            return np.array([[2.0**24 - 1, 3.0], [-5.0, 7.0]], f32)

    out = int8_float_output(Layer(), None, QParams(1.0, 0, 0, 255))
    assert out[0, 0] == f32(2.0**24 + 2)
    acc = Layer().accumulate(None, 0)
    np.testing.assert_array_equal(out, fma32(acc, (f32(1.0) * Layer.weight_scale).astype(f32), Layer.bias))
    naive = (acc.astype(np.float64) * Layer.weight_scale + Layer.bias).astype(f32)
    assert naive[0, 0] == f32(2.0**24)  # what a single float64 pass would have given
