"""A small NumPy trainer for DLRM-style models (log loss), for demos and tests without PyTorch.

Backpropagation by hand through the MLPs, the dot (or concatenation)
interaction and the pooled embedding lookups. Dense layers use Adam;
embedding tables use row-wise sparse Adagrad (only the rows a batch touched
are updated), as DLRM trainers usually do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .batch import Batch
from .forward import pooled_fp32
from .snapshot import Model
from .spec import SpecError


@dataclass
class TrainerConfig:
    learning_rate: float = 1e-3
    embedding_learning_rate: float = 0.05
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    batch_size: int = 1024


@dataclass
class Trainer:
    model: Model
    config: TrainerConfig = field(default_factory=TrainerConfig)

    def __post_init__(self):
        spec = self.model.spec
        if spec.cross_layers or spec.pair_order != "lower" or any(t.features or t.pooling for t in spec.tables):
            raise SpecError(
                "the trainer trains facebookresearch/dlrm-shaped models only (one feature per table, "
                "one pooling, lower-triangle pairs, no cross layers)"
            )
        self._m = {k: np.zeros_like(v) for k, v in self.model.weights.items() if not k.startswith("emb_l.")}
        self._v = {k: np.zeros_like(v) for k, v in self._m.items()}
        self._g2 = {
            k: np.zeros(v.shape[0], np.float32) for k, v in self.model.weights.items() if k.startswith("emb_l.")
        }
        self._step = 0

    def loss_and_gradients(self, batch: Batch, labels: np.ndarray):
        """Mean log loss and the gradient of every parameter (embeddings as (rows, row grads))."""
        spec, w = self.model.spec, self.model.weights
        dtype = w["bot_l.0.weight"].dtype  # float32; float64 for gradient checks
        y = labels.astype(np.float64)
        n = len(batch)
        acts, x = [], batch.dense.astype(dtype)
        for i in range(len(spec.bottom_mlp)):
            name = f"bot_l.{2 * i}"
            acts.append((name, x))
            x = np.maximum(x @ w[f"{name}.weight"].T + w[f"{name}.bias"], 0)
        bottom = x
        pooled = [pooled_fp32(w[f"emb_l.{t}.weight"], f, spec.pooling) for t, f in enumerate(batch.sparse)]
        if spec.interaction == "dot":
            vectors = np.stack([bottom] + pooled, axis=1)
            rows, cols = np.tril_indices(vectors.shape[1], k=-1)
            z = vectors @ vectors.transpose(0, 2, 1)
            x = np.concatenate([bottom, z[:, rows, cols]], axis=1)
        else:
            x = np.concatenate([bottom] + pooled, axis=1)
        top_acts = []
        for i in range(len(spec.top_mlp)):
            name = f"top_l.{2 * i}"
            top_acts.append((name, x))
            x = x @ w[f"{name}.weight"].T + w[f"{name}.bias"]
            if i < len(spec.top_mlp) - 1:
                x = np.maximum(x, 0)
        logit = x[:, 0].astype(np.float64)
        p = 1.0 / (1.0 + np.exp(-logit))
        # log loss from the logit, stable for confident predictions
        loss = float(np.mean(np.logaddexp(0.0, logit) - y * logit))

        grads = {}
        d = ((p - y) / n).astype(dtype)[:, None]
        for i in reversed(range(len(spec.top_mlp))):
            name, a = top_acts[i]
            grads[f"{name}.weight"] = d.T @ a
            grads[f"{name}.bias"] = d.sum(axis=0)
            d = d @ w[f"{name}.weight"]
            if i > 0:
                d = d * (a > 0)
        width = bottom.shape[1]
        d_bottom = d[:, :width].copy()
        if spec.interaction == "dot":
            dz = np.zeros((n, vectors.shape[1], vectors.shape[1]), dtype)
            dz[:, rows, cols] = d[:, width:]
            d_vectors = (dz + dz.transpose(0, 2, 1)) @ vectors
            d_bottom += d_vectors[:, 0]
            d_pooled = [d_vectors[:, t + 1] for t in range(len(pooled))]
        else:
            starts = np.cumsum([width] + [p_.shape[1] for p_ in pooled])
            d_pooled = [d[:, starts[t] : starts[t + 1]] for t in range(len(pooled))]
        for t, feature in enumerate(batch.sparse):
            counts = np.diff(np.append(feature.offsets, len(feature.indices)))
            per_bag = d_pooled[t] / np.maximum(counts, 1)[:, None] if spec.pooling == "mean" else d_pooled[t]
            grads[f"emb_l.{t}.weight"] = (feature.indices, np.repeat(per_bag, counts, axis=0))
        d = d_bottom * (bottom > 0)
        for i in reversed(range(len(spec.bottom_mlp))):
            name, a = acts[i]
            grads[f"{name}.weight"] = d.T @ a
            grads[f"{name}.bias"] = d.sum(axis=0)
            if i > 0:
                d = (d @ w[f"{name}.weight"]) * (a > 0)
        return loss, grads

    def step(self, batch: Batch, labels: np.ndarray) -> float:
        loss, grads = self.loss_and_gradients(batch, labels)
        c, w = self.config, self.model.weights
        self._step += 1
        correction1, correction2 = 1 - c.beta1**self._step, 1 - c.beta2**self._step
        for name, grad in grads.items():
            if name.startswith("emb_l."):
                rows, row_grads = grad
                unique, inverse = np.unique(rows, return_inverse=True)
                summed = np.zeros((len(unique), row_grads.shape[1]), row_grads.dtype)
                np.add.at(summed, inverse, row_grads)
                self._g2[name][unique] += (summed * summed).mean(axis=1)
                w[name][unique] -= (
                    c.embedding_learning_rate * summed / (np.sqrt(self._g2[name][unique])[:, None] + 1e-10)
                ).astype(w[name].dtype)
                continue
            self._m[name] = c.beta1 * self._m[name] + (1 - c.beta1) * grad
            self._v[name] = c.beta2 * self._v[name] + (1 - c.beta2) * grad * grad
            w[name] -= (
                c.learning_rate * (self._m[name] / correction1) / (np.sqrt(self._v[name] / correction2) + c.eps)
            ).astype(w[name].dtype)
        self.model.cache.clear()  # the weights changed in place: no prepared row or executor holds
        return loss

    def fit(self, batch: Batch, labels: np.ndarray, epochs: int = 1, seed: int = 0) -> list[float]:
        """Minibatch epochs over (batch, labels) in a seeded shuffled order; the loss per step."""
        rng = np.random.default_rng(seed)
        losses = []
        for _ in range(epochs):
            order = rng.permutation(len(batch))
            for start in range(0, len(batch), self.config.batch_size):
                rows = np.sort(order[start : start + self.config.batch_size])
                losses.append(self.step(batch.take(rows), labels[rows]))
        return losses


def take(batch: Batch, rows: np.ndarray) -> Batch:
    """The examples at `rows` (any order) as a new batch."""
    return batch.take(rows)
