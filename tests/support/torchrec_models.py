"""Small TorchRec DLRM and DLRM_DCN models (real torchrec, random weights), their
checkpoints, and their own predictions on a batch (KeyedJaggedTensor input).

torchrec is an optional extra (`make install-torchrec`): `require_torchrec()` skips a
test without it, unless LPMON_REQUIRE_TORCHREC=1 (set by `make test`, so CI never skips).
"""

import os

import numpy as np
import pytest

from lpmon.model import Batch, SparseFeature

# Tables: (name, rows, features, pooling). t_user serves two features (a shared table).
TABLES = (
    ("t_user", 40, ("cat_0", "cat_1"), "sum"),
    ("t_item", 30, ("cat_2",), "mean"),
    ("t_site", 25, ("cat_3",), "sum"),
)
DIM = 6
N_DENSE = 5


def require_torchrec():
    """The torchrec module; a skip without it, a failure if LPMON_REQUIRE_TORCHREC=1."""
    if os.environ.get("LPMON_REQUIRE_TORCHREC") == "1":
        import torchrec

        return torchrec
    return pytest.importorskip("torchrec", reason="TorchRec is an extra: make install-torchrec")


def build(kind: str = "dlrm", tables=TABLES, seed: int = 0, dcn_layers: int = 2, dcn_rank: int = 4):
    """A torchrec DLRM ("dlrm") or DLRM_DCN ("dcn") in eval mode, with random weights larger
    than TorchRec's initial ones (so that predictions spread), biases included (TorchRec
    initialises the cross layers' to zero)."""
    import torch
    from torchrec.models.dlrm import DLRM, DLRM_DCN
    from torchrec.modules.embedding_configs import EmbeddingBagConfig, PoolingType
    from torchrec.modules.embedding_modules import EmbeddingBagCollection

    torch.manual_seed(seed)
    configs = [
        EmbeddingBagConfig(
            name=name,
            embedding_dim=DIM,
            num_embeddings=rows,
            feature_names=list(features),
            pooling=PoolingType.MEAN if pooling == "mean" else PoolingType.SUM,
        )
        for name, rows, features, pooling in tables
    ]
    ebc = EmbeddingBagCollection(tables=configs)
    common = dict(
        embedding_bag_collection=ebc,
        dense_in_features=N_DENSE,
        dense_arch_layer_sizes=[10, DIM],
        over_arch_layer_sizes=[12, 7, 1],
    )
    if kind == "dcn":
        model = DLRM_DCN(**common, dcn_num_layers=dcn_layers, dcn_low_rank_dim=dcn_rank)
    else:
        model = DLRM(**common)
    with torch.no_grad():
        for name, value in model.named_parameters():
            if "embedding_bags" in name:
                value.normal_(0, 0.6)
            elif value.ndim == 2:
                value.normal_(0, 1.5 / value.shape[1] ** 0.5)
            else:
                value.normal_(0, 0.2)
    return model.eval()


def save(model, path):
    import torch

    torch.save(model.state_dict(), path)
    return path


def features_file(path, tables=TABLES):
    """The features file of the tables: their features and pooling."""
    import json

    path.write_text(json.dumps({name: {"features": list(f), "pooling": p} for name, _, f, p in tables}))
    return path


def random_batch(tables, n, rng, max_ids=4):
    """A lpmon batch, features in TorchRec's order (table by table): multi-hot and empty bags."""
    features = []
    for _, rows, names, _ in tables:
        for _ in names:
            sizes = rng.integers(0, max_ids + 1, n)
            offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
            features.append(SparseFeature(rng.integers(0, rows, sizes.sum()), offsets))
    return Batch(rng.normal(0, 1, (n, N_DENSE)).astype(np.float32), tuple(features))


def torchrec_predict(model, batch: Batch, tables=TABLES) -> np.ndarray:
    """sigmoid of TorchRec's own logits for the batch, fed as a KeyedJaggedTensor."""
    import torch
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

    keys = [f for _, _, names, _ in tables for f in names]
    lengths = [np.diff(np.append(f.offsets, len(f.indices))) for f in batch.sparse]
    kjt = KeyedJaggedTensor.from_lengths_sync(
        keys=keys,
        values=torch.from_numpy(np.concatenate([f.indices for f in batch.sparse]).astype(np.int64)),
        lengths=torch.from_numpy(np.concatenate(lengths).astype(np.int64)),
    )
    with torch.no_grad():
        logits = model(dense_features=torch.from_numpy(batch.dense), sparse_features=kjt)
    return torch.sigmoid(logits.reshape(-1)).numpy()
