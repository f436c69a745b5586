"""DLRM's Criteo dictionaries (facebookresearch/dlrm data_utils.getCriteoAdData).

DLRM reads each categorical field as int(hex, 16) (a missing one as 0), takes it modulo
--max-ind-range when that is set, casts it to int32 (wrapping, as numpy 1 does: DLRM's
preprocessing runs under numpy 1 only) and replaces it by its index in the training data's
dictionary, `PREFIX_fea_dict_<j>.npz`'s `unique` array; `PREFIX_fea_count.npz` holds the
dictionaries' sizes, the embedding tables' rows (capped at --max-ind-range).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .schema import TrafficError

N_TABLES = 26


class DlrmVocabulary:
    """The 26 dictionaries of one DLRM preprocessing run, looked up by binary search."""

    def __init__(self, prefix: str | Path, max_ind_range: int = -1):
        self.prefix, self.max_ind_range = str(prefix), max_ind_range
        counts = self._array(f"{prefix}_fea_count.npz", "counts")
        if counts.shape != (N_TABLES,):
            raise TrafficError(f"{prefix}_fea_count.npz: counts holds {counts.size} sizes, expected {N_TABLES}")
        self._sorted, self._order = [], []
        for j in range(N_TABLES):
            unique = self._array(f"{prefix}_fea_dict_{j}.npz", "unique").astype(np.int64)
            if unique.size != counts[j]:
                raise TrafficError(
                    f"{prefix}_fea_dict_{j}.npz: {unique.size} values, but {prefix}_fea_count.npz says {counts[j]}"
                )
            order = np.argsort(unique, kind="stable")
            self._sorted.append(unique[order])
            self._order.append(order)
        rows = counts.astype(np.int64)
        self.rows = tuple(int(r) for r in (np.minimum(rows, max_ind_range) if max_ind_range > 0 else rows))

    @staticmethod
    def _array(path: str, key: str) -> np.ndarray:
        try:
            with np.load(path) as data:
                return np.asarray(data[key])
        except FileNotFoundError:
            raise TrafficError(
                f"{path}: no such file (--dlrm-vocabulary PREFIX names PREFIX_fea_dict_<j>.npz)"
            ) from None
        except KeyError:
            raise TrafficError(f"{path}: no {key!r} array: not written by DLRM's data_utils") from None
        except (OSError, ValueError) as err:
            raise TrafficError(f"{path}: not a readable .npz file ({err})") from None

    def values(self, hashes: np.ndarray) -> np.ndarray:
        """DLRM's value of each field (uint64 hashes, missing ones 0): modulo --max-ind-range
        if set, then cast to int32 with wrap-around."""
        if self.max_ind_range > 0:
            hashes = hashes % np.uint64(self.max_ind_range)
        return hashes.astype(np.uint32).view(np.int32).astype(np.int64)

    def ids(self, table: int, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids, known): each value's index in the table's dictionary, and whether it was
        there at all (ids of unknown values are left 0)."""
        values = self.values(hashes)
        ordered = self._sorted[table]
        at = np.minimum(np.searchsorted(ordered, values), max(ordered.size - 1, 0))
        known = ordered[at] == values if ordered.size else np.zeros(values.size, bool)
        return np.where(known, self._order[table][at], 0), known
