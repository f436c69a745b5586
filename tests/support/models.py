"""Small models and batches for the model and serving tests."""

import numpy as np

from lpmon.model import Batch, SparseFeature


def random_batch(spec, n, rng, multi_hot=True):
    features = []
    for table in spec.tables:
        sizes = rng.integers(0, 4, n) if multi_hot else np.ones(n, int)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        features.append(SparseFeature(rng.integers(0, table.rows, sizes.sum()), offsets))
    return Batch(rng.normal(0, 1, (n, len(spec.dense))).astype(np.float32), tuple(features))


def dlrm_checkpoint(path, dims=(7, 7, 7, 7), rows=(50, 40, 30, 20), n_dense=5, bottom=(12,), top=(9, 1)):
    """A facebookresearch/dlrm-style state dict (emb_l.t, bot_l.2i, top_l.2i), saved by torch."""
    import torch

    gen = torch.Generator().manual_seed(0)
    state = {}
    for t, (r, d) in enumerate(zip(rows, dims)):
        state[f"emb_l.{t}.weight"] = torch.randn(r, d, generator=gen) * 0.3
    widths = [n_dense, *bottom, dims[0]]
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        state[f"bot_l.{2 * i}.weight"] = torch.randn(b, a, generator=gen) / a ** 0.5
        state[f"bot_l.{2 * i}.bias"] = torch.randn(b, generator=gen) * 0.1
    vectors = 1 + len(rows)
    widths = [dims[0] + vectors * (vectors - 1) // 2, *top]
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        state[f"top_l.{2 * i}.weight"] = torch.randn(b, a, generator=gen) / a ** 0.5
        state[f"top_l.{2 * i}.bias"] = torch.randn(b, generator=gen) * 0.1
    torch.save({"state_dict": state}, path)
    return path
