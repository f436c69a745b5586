"""A batch of examples in the model's input layout."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SparseFeature:
    """Multi-hot ids of one sparse feature: bag b is indices[offsets[b]:offsets[b+1]]."""

    indices: np.ndarray  # int64 [n_ids]
    offsets: np.ndarray  # int64 [batch], starting at 0

    def bag_slice(self, start: int, stop: int) -> "SparseFeature":
        lo = int(self.offsets[start]) if start < len(self.offsets) else len(self.indices)
        hi = int(self.offsets[stop]) if stop < len(self.offsets) else len(self.indices)
        return SparseFeature(self.indices[lo:hi], self.offsets[start:stop] - lo)

    @classmethod
    def one_hot(cls, ids) -> "SparseFeature":
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        return cls(ids, np.arange(len(ids), dtype=np.int64))


@dataclass(frozen=True)
class Batch:
    dense: np.ndarray  # float32 [batch, dense features]
    sparse: tuple[SparseFeature, ...]  # one per table, in spec order

    def __len__(self) -> int:
        return self.dense.shape[0]

    def slice(self, start: int, stop: int) -> "Batch":
        return Batch(self.dense[start:stop], tuple(f.bag_slice(start, stop) for f in self.sparse))

    def take(self, rows: np.ndarray) -> "Batch":
        """The examples at `rows` (any order) as a new batch."""
        features = []
        for f in self.sparse:
            ends = np.append(f.offsets[1:], len(f.indices))
            starts, counts = f.offsets[rows], ends[rows] - f.offsets[rows]
            offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
            # each id's old position: its bag's old start plus its place within the bag
            within = np.arange(counts.sum()) - np.repeat(offsets, counts)
            features.append(SparseFeature(f.indices[np.repeat(starts, counts) + within], offsets))
        return Batch(self.dense[rows], tuple(features))

    @classmethod
    def concat(cls, batches: list["Batch"]) -> "Batch":
        """The examples of every batch, in order, as one batch (same features)."""
        if len(batches) == 1:
            return batches[0]
        sparse = []
        for t in range(len(batches[0].sparse)):
            parts = [b.sparse[t] for b in batches]
            starts = np.cumsum([0] + [len(p.indices) for p in parts[:-1]])
            sparse.append(
                SparseFeature(
                    np.concatenate([p.indices for p in parts]),
                    np.concatenate([p.offsets + s for p, s in zip(parts, starts)]),
                )
            )
        return cls(np.concatenate([b.dense for b in batches]), tuple(sparse))

    def chunks(self, size: int):
        for start in range(0, len(self), size):
            yield self.slice(start, min(start + size, len(self)))
