"""`lpmon convert-snapshot`: a legacy spec.json + weights.npz snapshot into the mapped format."""

import json

import numpy as np

from lpmon import cli
from lpmon.model import Model, ModelSpec, TableSpec
from lpmon.model.snapshot import snapshot_digest

SPEC = ModelSpec(
    dense=("dense_0", "dense_1"),
    tables=(TableSpec("sparse_0", 40, 4), TableSpec("sparse_1", 30, 4)),
    bottom_mlp=(6, 4),
    top_mlp=(5, 1),
)


def test_convert_snapshot_to_a_folder_then_in_place(tmp_path, capsys):
    model = Model.initialise(SPEC, seed=1)
    legacy = tmp_path / "old"
    legacy.mkdir()
    (legacy / "spec.json").write_text(SPEC.to_json())
    np.savez(legacy / "weights.npz", **model.weights)
    assert cli.main(["convert-snapshot", str(legacy), "--out", str(tmp_path / "new"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "snapshot": str(tmp_path / "new"),
        "done": "converted from weights.npz",
    }
    converted = Model.load(tmp_path / "new")
    assert isinstance(converted.weights["emb_l.0.weight"], np.memmap)
    for name, array in model.weights.items():
        np.testing.assert_array_equal(converted.weights[name], array)
    assert cli.main(["convert-snapshot", str(legacy)]) == 0
    assert capsys.readouterr().out.strip() == f"snapshot {legacy}: converted from weights.npz"
    assert not (legacy / "weights.npz").exists()
    assert snapshot_digest(str(legacy)) == snapshot_digest(str(tmp_path / "new"))
    assert cli.main(["convert-snapshot", str(legacy)]) == 0
    assert "already in the mapped format" in capsys.readouterr().out


def test_convert_snapshot_errors_name_the_folder(tmp_path, capsys):
    assert cli.main(["convert-snapshot", str(tmp_path)]) == 1
    assert f"lpmon convert-snapshot: {tmp_path}: no spec.json" in capsys.readouterr().err
    (tmp_path / "spec.json").write_text(SPEC.to_json())
    assert cli.main(["convert-snapshot", str(tmp_path)]) == 1
    assert "no weights.json or weights.npz to convert" in capsys.readouterr().err
