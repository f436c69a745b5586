"""Model snapshots on disk: a directory with spec.json and weights.npz."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .spec import ModelSpec, SpecError

SPEC_FILE, WEIGHTS_FILE = "spec.json", "weights.npz"


@dataclass
class Model:
    """A spec and its float32 weights, keyed by DLRM state-dict name."""

    spec: ModelSpec
    weights: dict[str, np.ndarray]

    def __post_init__(self):
        check_weights(self.spec, self.weights)

    @classmethod
    def initialise(cls, spec: ModelSpec, seed: int = 0) -> "Model":
        """DLRM's initialisation: N(0, sqrt(2 / (fan_in + fan_out))) weights,
        N(0, sqrt(1 / fan_out)) biases, U(+-sqrt(1 / rows)) embeddings."""
        rng = np.random.default_rng(seed)
        weights = {}
        for name, shape in spec.weight_shapes().items():
            if name.startswith("emb_l."):
                bound = np.sqrt(1.0 / shape[0])
                weights[name] = rng.uniform(-bound, bound, shape)
            elif name.endswith(".weight"):
                weights[name] = rng.normal(0, np.sqrt(2.0 / (shape[0] + shape[1])), shape)
            else:
                weights[name] = rng.normal(0, np.sqrt(1.0 / shape[0]), shape)
        return cls(spec, {k: v.astype(np.float32) for k, v in weights.items()})

    def forward_fp32(self, batch, **options):
        """Probabilities (and optional taps) in float32; see lpmon.model.forward."""
        from .forward import forward_fp32

        return forward_fp32(self, batch, **options)

    def forward_quantized(self, batch, plan, **options):
        """The same model executed under a QuantPlan; see lpmon.model.forward."""
        from .forward import forward_quantized

        return forward_quantized(self, batch, plan, **options)

    def save(self, directory: str | Path) -> Path:
        """Write spec.json and weights.npz, each atomically (temp file, then rename)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        _atomic_write(directory / SPEC_FILE, self.spec.to_json().encode())
        with tempfile.NamedTemporaryFile(dir=directory, suffix=".npz", delete=False) as tmp:
            np.savez(tmp, **self.weights)
        os.replace(tmp.name, directory / WEIGHTS_FILE)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "Model":
        directory = Path(directory)
        if not (directory / SPEC_FILE).is_file():
            raise SpecError(f"{directory}: no {SPEC_FILE} (is this a model snapshot?)")
        if not (directory / WEIGHTS_FILE).is_file():
            raise SpecError(f"{directory}: no {WEIGHTS_FILE}")
        spec = ModelSpec.load(directory / SPEC_FILE)
        try:
            with np.load(directory / WEIGHTS_FILE, allow_pickle=False) as npz:
                weights = {name: npz[name] for name in npz.files}
        except (OSError, ValueError) as err:
            raise SpecError(f"{directory / WEIGHTS_FILE}: cannot be read: {err}") from None
        return cls(spec, weights)


def check_weights(spec: ModelSpec, weights: dict[str, np.ndarray]) -> None:
    """Every tensor the spec needs, of the right shape, finite; nothing else."""
    expected = spec.weight_shapes()
    missing = sorted(set(expected) - set(weights))
    if missing:
        raise SpecError(f"weights: missing tensor {missing[0]} (expected shape {expected[missing[0]]})")
    extra = sorted(set(weights) - set(expected))
    if extra:
        raise SpecError(f"weights: tensor {extra[0]} is not in the spec")
    for name, shape in expected.items():
        array = weights[name]
        if tuple(array.shape) != shape:
            raise SpecError(f"weights: {name} has shape {tuple(array.shape)}, the spec says {shape}")
        if array.dtype != np.float32:
            weights[name] = array = array.astype(np.float32)
        if not np.isfinite(array).all():
            raise SpecError(f"weights: {name} has {np.count_nonzero(~np.isfinite(array))} NaN or inf values")


def _atomic_write(path: Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, path)
