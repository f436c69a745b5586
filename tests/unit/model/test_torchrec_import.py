"""`lpmon import-torchrec`: real TorchRec DLRM and DLRM_DCN models (torchrec as the oracle),
saved with torch.save(state_dict), imported, and scored by lpmon's executor within 1e-5
of TorchRec's own sigmoid(logits): several features, a shared table, multi-hot and empty
bags, sum and mean pooling, DCNv2 cross layers; what cannot be read is refused in one line."""

import json

import numpy as np
import pytest

from lpmon.cli import main
from lpmon.model import Executor, Model, ModelSpec, SpecError
from lpmon.model.spec import TableSpec
from lpmon.traffic.schema import TrafficSchema
from support.torchrec_models import (
    TABLES,
    build,
    features_file,
    random_batch,
    require_torchrec,
    save,
    torchrec_predict,
)

require_torchrec()
import torch  # noqa: E402

TOLERANCE = 1e-5


def imported(tmp_path, kind, tables=TABLES, features=True, extra=(), **options):
    torchrec_model = build(kind, tables, **options)
    checkpoint = save(torchrec_model, tmp_path / f"{kind}.pt")
    args = ["import-torchrec", str(checkpoint), "--out", str(tmp_path / kind), *extra]
    if features:
        args += ["--features", str(features_file(tmp_path / "features.json", tables))]
    assert main(args) == 0
    return torchrec_model, Model.load(tmp_path / kind)


@pytest.mark.parametrize("kind", ["dlrm", "dcn"])
def test_predictions_match_torchrec(tmp_path, kind, capsys):
    torchrec_model, model = imported(tmp_path, kind)
    printed = capsys.readouterr().out
    assert "4 features (cat_0, cat_1, cat_2, cat_3)" in printed and "dense_0..dense_4" in printed
    spec = model.spec
    assert spec.sparse == ("cat_0", "cat_1", "cat_2", "cat_3") and spec.feature_tables() == (0, 0, 1, 2)
    assert [spec.table_pooling(t) for t in range(3)] == ["sum", "mean", "sum"]
    assert (spec.interaction, spec.cross_layers, spec.cross_rank) == (("cat", 2, 4) if kind == "dcn" else ("dot", 0, 0))
    batch = random_batch(TABLES, 3000, np.random.default_rng(1))
    sizes = [np.diff(np.append(f.offsets, len(f.indices))) for f in batch.sparse]
    assert all((s == 0).any() and (s > 1).any() for s in sizes)  # empty and multi-hot bags
    theirs = torchrec_predict(torchrec_model, batch)
    ours = Executor(model).forward(batch, batch_size=1000).probabilities
    gap = np.abs(ours.astype(np.float64) - theirs).max()
    assert gap <= TOLERANCE, gap
    assert theirs.std() > 0.01  # the model separates examples: the comparison means something
    # The test can fail: the interaction order and the pooling each change the predictions.
    if kind == "dlrm":
        lower = Model(ModelSpec.from_json(spec.to_json().replace('"upper"', '"lower"')), model.weights)
        assert np.abs(Executor(lower).forward(batch).probabilities - theirs).max() > 100 * TOLERANCE
    summed = json.loads(spec.to_json())
    del summed["tables"][1]["pooling"]
    summed = Model(ModelSpec.from_json(json.dumps(summed)), model.weights)
    assert np.abs(Executor(summed).forward(batch).probabilities - theirs).max() > 100 * TOLERANCE


def test_without_a_features_file_each_table_is_one_feature_named_after_it(tmp_path):
    tables = (("cat_a", 20, ("cat_a",), "mean"), ("cat_b", 15, ("cat_b",), "mean"), ("cat_c", 9, ("cat_c",), "mean"))
    torchrec_model, model = imported(tmp_path, "dcn", tables, features=False, extra=["--pooling", "mean"])
    assert model.spec.sparse == ("cat_a", "cat_b", "cat_c") and model.spec.pooling == "mean"
    assert [t.features for t in model.spec.tables] == [(), (), ()]
    batch = random_batch(tables, 1000, np.random.default_rng(2))
    gap = np.abs(Executor(model).forward(batch).probabilities - torchrec_predict(torchrec_model, batch, tables))
    assert gap.max() <= TOLERANCE
    # The traffic's columns are the features, whatever their names (no sparse_ prefix).
    schema = TrafficSchema.for_model(model.spec)
    assert schema.sparse == ("cat_a", "cat_b", "cat_c") and schema.table_rows == (20, 15, 9)


def test_a_dlrmtrain_wrapper_state_dict_reads_the_same(tmp_path):
    """torchrec's DLRMTrain holds the DLRM as `model`: its keys start with model."""
    from torchrec.models.dlrm import DLRMTrain

    from lpmon.model.torchrec_import import import_torchrec

    dcn = build("dcn")
    wrapped = save(DLRMTrain(dcn), tmp_path / "train.pt")
    model = import_torchrec(wrapped, tmp_path / "snapshot", features_file(tmp_path / "features.json"))
    batch = random_batch(TABLES, 500, np.random.default_rng(4))
    assert np.abs(Executor(model).forward(batch).probabilities - torchrec_predict(dcn, batch)).max() <= TOLERANCE


def test_traffic_schema_has_a_column_per_feature_with_its_tables_rows(tmp_path):
    _, model = imported(tmp_path, "dlrm")
    schema = TrafficSchema.for_model(model.spec)
    assert schema.columns[2:] == [
        "dense_0",
        "dense_1",
        "dense_2",
        "dense_3",
        "dense_4",
        "cat_0",
        "cat_1",
        "cat_2",
        "cat_3",
    ]
    assert schema.table_rows == (40, 40, 30, 25)  # cat_0 and cat_1 share t_user's 40 rows


def test_spec_round_trips_and_old_specs_are_written_as_before():
    shared = ModelSpec(
        dense=("dense_0",),
        tables=(TableSpec("t", 10, 4, ("a", "b"), "mean"), TableSpec("c", 5, 4)),
        bottom_mlp=(4,),
        top_mlp=(1,),
        interaction="cat",
        cross_layers=1,
        cross_rank=2,
    )
    assert ModelSpec.from_json(shared.to_json()) == shared
    assert shared.sparse == ("a", "b", "c") and shared.interaction_width() == 16
    assert [n for n, _, _ in shared.linear_layers()] == ["bot_l.0", "cross_l.0.V", "cross_l.0.W", "top_l.0"]
    assert "cross_l.0.V.bias" not in shared.weight_shapes() and shared.weight_shapes()["cross_l.0.W.bias"] == (16,)
    plain = ModelSpec(("dense_0",), (TableSpec("sparse_0", 10, 4),), (4,), (1,))
    assert set(json.loads(plain.to_json())) == {"dense", "tables", "bottom_mlp", "top_mlp", "interaction", "pooling"}
    assert set(json.loads(plain.to_json())["tables"][0]) == {"name", "rows", "dim"}
    for bad, message in (
        (dict(tables=(TableSpec("t", 10, 4, ("a", "a")),)), "feature 'a' must be a column name of its own"),
        (dict(tables=(TableSpec("t", 10, 4, ("dense_0",)),)), "feature 'dense_0'"),
        (dict(tables=(TableSpec("label", 10, 4),)), "feature 'label'"),
        (dict(cross_layers=1, cross_rank=2), "cross layers take the cat interaction"),
        (dict(pair_order="diagonal"), "pair_order"),
    ):
        fields = dict(dense=("dense_0",), tables=(TableSpec("t", 10, 4),), bottom_mlp=(4,), top_mlp=(1,)) | bad
        with pytest.raises(SpecError, match=message):
            ModelSpec(**fields)


def _refused(tmp_path, capsys, state, *extra):
    path = tmp_path / "model.pt"
    torch.save(state, path)
    out = tmp_path / "out"
    assert main(["import-torchrec", str(path), "--out", str(out), *extra]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and not (out / "spec.json").exists()
    return err


def test_what_cannot_be_read_is_refused_in_one_line(tmp_path, capsys):
    from torchrec.models.dlrm import DLRM_Projection
    from torchrec.modules.embedding_configs import EmbeddingBagConfig
    from torchrec.modules.embedding_modules import EmbeddingBagCollection

    ebc = EmbeddingBagCollection(
        tables=[EmbeddingBagConfig(name="t", embedding_dim=4, num_embeddings=9, feature_names=["f"])]
    )
    projection = DLRM_Projection(
        embedding_bag_collection=ebc,
        dense_in_features=3,
        dense_arch_layer_sizes=[4],
        over_arch_layer_sizes=[5, 1],
        interaction_branch1_layer_sizes=[8],
        interaction_branch2_layer_sizes=[8],
    )
    err = _refused(tmp_path, capsys, projection.state_dict())
    assert "inter_arch.interaction_branch1.model._mlp.0._linear.weight: a TorchRec DLRM_Projection" in err

    state = build("dcn").state_dict()
    err = _refused(tmp_path, capsys, {**state, "inter_arch.crossnet.kernels.0": torch.zeros(3)})
    assert "inter_arch.crossnet.kernels.0: not a tensor of a TorchRec DLRM or DLRM_DCN" in err
    err = _refused(tmp_path, capsys, {"linear.weight": torch.zeros(2, 2)})
    assert "linear.weight: not a tensor of a TorchRec DLRM or DLRM_DCN" in err
    no_bias = {k: v for k, v in state.items() if k != "inter_arch.crossnet.bias.1"}
    assert "inter_arch.crossnet needs V_kernels, W_kernels and bias" in _refused(tmp_path, capsys, no_bias)
    four = features_file(tmp_path / "four.json")
    broken = {**state, "over_arch.model.1.weight": torch.zeros(1, 3)}
    assert "top_l.4.weight has shape (1, 3), the model's other layers need (1, 7)" in _refused(
        tmp_path, capsys, broken, "--features", str(four)
    )
    # without the features file the checkpoint has one feature too many for its three tables
    assert "cross_l.0.V.weight has shape (4, 30), the model's other layers need (4, 24)" in _refused(
        tmp_path, capsys, state
    )
    nan = dict(state)
    nan["inter_arch.crossnet.W_kernels.0"] = torch.full_like(nan["inter_arch.crossnet.W_kernels.0"], float("nan"))
    err = _refused(tmp_path, capsys, nan, "--features", str(four))
    assert "cross_l.0.W.weight has 120 NaN or inf values" in err

    features = tmp_path / "features.json"
    features.write_text(json.dumps({"t_user": ["cat_0"], "t_item": ["cat_2"]}))
    err = _refused(tmp_path, capsys, state, "--features", str(features))
    assert "the features file names tables ['t_item', 't_user']" in err and "no features for t_site" in err
    features.write_text(json.dumps({"t_user": {"features": ["a"], "pooling": "max"}}))
    assert "table t_user: pooling must be 'sum' or 'mean', got 'max'" in _refused(
        tmp_path, capsys, state, "--features", str(features)
    )
    features.write_text("{")
    assert "cannot be read as JSON" in _refused(tmp_path, capsys, state, "--features", str(features))
