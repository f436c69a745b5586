"""embedding_layout = "tbe" against real TorchRec and fbgemm_gpu: lpmon's predictions under
such a plan are those of TorchRec's quantize_inference_model'ed DLRM (its pooled
embeddings bit for bit), and the export serves the same rows through fbgemm_gpu's
IntNBitTableBatchedEmbeddingBagsCodegen, exact to the ulp against lpmon's executor."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from lpmon.model import Executor, Model
from lpmon.model.spec import ModelSpec, TableSpec
from lpmon.pipeline.assembly import Ranges, assemble
from lpmon.quant import LayerPlan, QuantPlan, tbe
from support.models import random_batch

torch = pytest.importorskip("torch")
pytest.importorskip("fbgemm_gpu")
from lpmon.serving.tbe import TbeBag, served_rows  # noqa: E402
from lpmon.serving.torchscript import build_eager, export, torch_inputs, ulps  # noqa: E402

DIM, ROWS, N_DENSE = 8, (60, 40, 30), 5
#: TorchRec's dtypes for quantize_inference_model's per_table_weight_dtype.
TORCH_DTYPES = {"int8": torch.qint8, "int4": torch.quint4x2, "int2": torch.quint2x4}


def torchrec_dlrm(pooling: str, seed: int = 0):
    """A small torchrec.models.dlrm.DLRM: one table per feature sparse_<t>."""
    torchrec = pytest.importorskip("torchrec")
    from torchrec.models.dlrm import DLRM

    torch.manual_seed(seed)
    configs = [
        torchrec.EmbeddingBagConfig(
            name=f"t{t}",
            embedding_dim=DIM,
            num_embeddings=rows,
            feature_names=[f"sparse_{t}"],
            pooling=torchrec.PoolingType[pooling.upper()],
        )
        for t, rows in enumerate(ROWS)
    ]
    ebc = torchrec.EmbeddingBagCollection(tables=configs, device=torch.device("cpu"))
    return DLRM(
        embedding_bag_collection=ebc,
        dense_in_features=N_DENSE,
        dense_arch_layer_sizes=[16, DIM],
        over_arch_layer_sizes=[12, 1],
    ).eval()


def lpmon_model(dlrm, pooling: str) -> Model:
    """The same network as an lpmon model, built from its weights: TorchRec's interaction
    lists the pairs as the upper triangle, lpmon as the lower, so the first top layer's
    columns are permuted to match."""
    spec = ModelSpec(
        tuple(f"dense_{i}" for i in range(N_DENSE)),
        tuple(TableSpec(f"sparse_{t}", rows, DIM) for t, rows in enumerate(ROWS)),
        (16, DIM),
        (12, 1),
        pooling=pooling,
    )
    weights = {}
    for part, arch in (("bot_l", dlrm.dense_arch), ("top_l", dlrm.over_arch)):
        linears = [m for m in arch.modules() if isinstance(m, torch.nn.Linear)]
        for i, layer in enumerate(linears):
            weights[f"{part}.{2 * i}.weight"] = layer.weight.detach().numpy().copy()
            weights[f"{part}.{2 * i}.bias"] = layer.bias.detach().numpy().copy()
    vectors = len(ROWS) + 1
    upper = {(int(a), int(b)): k for k, (a, b) in enumerate(zip(*np.triu_indices(vectors, 1)))}
    perm = [upper[(int(j), int(i))] for i, j in zip(*np.tril_indices(vectors, -1))]
    first = weights["top_l.0.weight"]
    weights["top_l.0.weight"] = np.concatenate([first[:, :DIM], first[:, DIM:][:, perm]], axis=1)
    for t in range(len(ROWS)):
        weights[f"emb_l.{t}.weight"] = dlrm.sparse_arch.embedding_bag_collection.embedding_bags[f"t{t}"].weight
        weights[f"emb_l.{t}.weight"] = weights[f"emb_l.{t}.weight"].detach().numpy().copy()
    return Model(spec, weights)


def keyed_jagged(batch, names):
    from torchrec import KeyedJaggedTensor

    lengths = [np.diff(np.append(f.offsets, len(f.indices))) for f in batch.sparse]
    return KeyedJaggedTensor.from_lengths_sync(
        keys=list(names),
        values=torch.from_numpy(np.concatenate([f.indices for f in batch.sparse])),
        lengths=torch.from_numpy(np.concatenate(lengths)),
    )


def table_plan(spec, tables, layout="tbe") -> QuantPlan:
    layers = tuple(LayerPlan(name, "linear", "fp32") for name, _, _ in spec.linear_layers())
    layers += tuple(LayerPlan(f"emb_l.{t}", "embedding", p) for t, p in enumerate(tables))
    return QuantPlan("torchrec", 1, layers, embedding_layout=layout)


@pytest.mark.parametrize("pooling", ["sum", "mean"])
@pytest.mark.parametrize("tables", [("int8", "int8", "int8"), ("int8", "int4", "int2")])
def test_predictions_are_torchrecs_quantized_models(pooling, tables):
    from torchrec.inference.modules import quantize_inference_model

    dlrm = torchrec_dlrm(pooling)
    model = lpmon_model(dlrm, pooling)
    batch = random_batch(model.spec, 3000, np.random.default_rng(1))
    features = keyed_jagged(batch, model.spec.sparse)
    dense = torch.from_numpy(batch.dense)
    with torch.no_grad():
        fp32 = torch.sigmoid(dlrm(dense, features)[:, 0].double()).numpy()
    assert np.abs(Executor(model).forward(batch).probabilities - fp32).max() < 1e-6  # the same network
    dtypes = {f"t{t}": TORCH_DTYPES[p] for t, p in enumerate(tables)}
    served = quantize_inference_model(dlrm, per_table_weight_dtype=dtypes)
    with torch.no_grad():
        theirs = torch.sigmoid(served(dense, features)[:, 0].double()).numpy()
        pooled = served.sparse_arch.embedding_bag_collection(features).to_dict()
    ours = Executor(model, table_plan(model.spec, tables)).forward(batch, taps=True)
    assert np.abs(ours.probabilities - theirs).max() < 1e-5  # measured: 2.1e-8 (prepack: 2.6e-5)
    for t, name in enumerate(model.spec.sparse):
        np.testing.assert_array_equal(
            ours.taps[f"emb_l.{t}"].output.view(np.int32), pooled[name].numpy().view(np.int32)
        )
    prepack = Executor(model, table_plan(model.spec, tables, "prepack")).forward(batch, taps=True)
    assert not np.array_equal(prepack.taps["emb_l.0"].output, pooled["sparse_0"].numpy())  # int8: another model


# Runs in a fresh interpreter: torch and fbgemm_gpu (whose ops the TBE modules call) only.
FRESH = """
import sys, torch, fbgemm_gpu
inputs, out = torch.load(sys.argv[2]), {}
for path in sys.argv[1].split(","):
    with torch.inference_mode():
        out[path] = torch.jit.load(path)(inputs["dense_x"], inputs["lS_o"], inputs["lS_i"])
assert not [m for m in sys.modules if m.split(".")[0] in ("lpmon", "torchrec", "pandas")]
torch.save(out, sys.argv[3])
"""


def tbe_plan(model, batch, fc, tables) -> QuantPlan:
    precisions = {name: fc for name, _, _ in model.spec.linear_layers()}
    precisions.update({f"emb_l.{t}": p for t, p in enumerate(tables)})
    ranges = Ranges.calibrate(model, batch, "l2")
    return assemble(model, ranges, precisions, model_id="native", embedding_layout="tbe")


def test_a_tbe_plan_exports_tbe_modules_exact_to_the_ulp(tmp_path):
    """An lpmon-native DLRM (int8 FC layers; int8, int4, int2 and fp16 tables; sum and
    mean pooling), exported: each row-wise table an IntNBitTableBatchedEmbeddingBagsCodegen
    holding lpmon's TBE rows, the module checked against lpmon's executor and run again
    in a fresh process."""
    tables = ("int8", "int4", "int2", "fp16")
    spec = ModelSpec(
        tuple(f"dense_{i}" for i in range(N_DENSE)),
        tuple(TableSpec(f"sparse_{t}", rows, 16) for t, rows in enumerate((80, 50, 40, 30))),
        (24, 16),
        (12, 1),
    )
    batch = random_batch(spec, 2000, np.random.default_rng(4))
    expected = {}
    for pooling in ("sum", "mean"):
        model = Model.initialise(dataclasses.replace(spec, pooling=pooling), seed=3)
        plan = tbe_plan(model, batch.slice(0, 500), "int8", tables)
        path = tmp_path / f"{pooling}.pt"
        info = export(model, plan, path, probe=batch)
        assert info["checked_on"]["max_ulp"] == 0 and info["checked_on"]["examples"] == 2000
        assert info["embedding_layout"] == "tbe" == json.loads(plan.to_json())["embedding_layout"]
        entry = info["layers"]["emb_l.0"]
        assert entry["layout"] == "tbe" and entry["row_bytes"] == 32 and entry["scale_bias"] == "fp16"
        assert entry["op"].startswith("fbgemm::int_nbit_split_embedding_codegen_lookup_function")
        assert info["layers"]["emb_l.1"]["row_bytes"] == 16  # 8 bytes of codes + 4, padded to 16
        assert info["layers"]["emb_l.3"]["op"] == "aten::embedding_bag"
        module = build_eager(model, plan)
        for t, precision in enumerate(tables[:3]):
            bits = int(precision[3:])
            assert isinstance(module.emb_l[t], TbeBag)
            weight = model.weights[f"emb_l.{t}.weight"]
            np.testing.assert_array_equal(
                served_rows(module.emb_l[t]), tbe.tbe_rows(tbe.quantize(weight, bits), bits, 16)
            )
        expected[str(path)] = Executor(model, plan).forward(batch).probabilities
    dense, offsets, indices = torch_inputs(batch)
    torch.save({"dense_x": dense, "lS_o": offsets, "lS_i": indices}, tmp_path / "inputs.pt")
    args = [",".join(expected), str(tmp_path / "inputs.pt"), str(tmp_path / "out.pt")]
    subprocess.run([sys.executable, "-c", FRESH, *args], check=True, capture_output=True)
    got = torch.load(tmp_path / "out.pt")
    for path, ours in expected.items():
        assert ulps(ours, got[path].numpy()).max() == 0, path


def test_the_torch_back_end_scores_a_tbe_plan_as_the_executor():
    from lpmon.model.backends import forward_quantized

    pytest.importorskip("lpmon.torch_backend")
    dlrm = torchrec_dlrm("sum")
    model = lpmon_model(dlrm, "sum")
    batch = random_batch(model.spec, 1000, np.random.default_rng(2))
    plan = tbe_plan(model, batch.slice(0, 300), "int8", ("int8", "int4", "int2"))  # int8 FC layers: exact
    ours = forward_quantized(model, batch, plan)
    theirs = forward_quantized(dataclasses.replace(model, backend="torch"), batch, plan)
    assert ulps(ours.probabilities, theirs.probabilities).max() == 0


def test_without_fbgemm_gpu_the_error_says_what_to_install(monkeypatch):
    dlrm = torchrec_dlrm("sum")
    model = lpmon_model(dlrm, "sum")
    monkeypatch.setitem(sys.modules, "fbgemm_gpu", None)
    with pytest.raises(ImportError, match=r'embedding_layout = "tbe" is served by fbgemm_gpu: pip install'):
        build_eager(model, table_plan(model.spec, ("int8", "fp32", "fp32")))
