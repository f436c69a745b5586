"""Model snapshots on disk: a directory with spec.json and weights.npz, written
atomically with the umask's permissions (serving and workers may run as
other users)."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lpmon.atomic import write_atomically

from .cache import ModelCache
from .spec import ModelSpec, SpecError

SPEC_FILE, WEIGHTS_FILE = "spec.json", "weights.npz"


@dataclass
class Model:
    """A spec and its float32 weights, keyed by DLRM state-dict name."""

    spec: ModelSpec
    weights: dict[str, np.ndarray]
    backend: str = "numpy"  # "torch": scored by lpmon.torch_backend (config: backend)
    # The day's prepared rows and executors (lpmon.model.cache); not part of the model's value.
    cache: ModelCache = field(default_factory=ModelCache, init=False, repr=False, compare=False)

    def __post_init__(self):
        check_weights(self.spec, self.weights)
        if self.backend not in ("numpy", "torch"):
            raise SpecError(f"backend: must be numpy or torch, got {self.backend!r}")

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

    def save(self, directory: str | Path) -> Path:
        """Write spec.json and weights.npz, each atomically (temp file, then rename)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_atomically(directory / SPEC_FILE, self.spec.to_json().encode())
        buffer = io.BytesIO()
        np.savez(buffer, **self.weights)  # type: ignore[arg-type]  # numpy's stub reads **arrays as allow_pickle
        write_atomically(directory / WEIGHTS_FILE, buffer.getbuffer())
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "Model":
        directory = Path(directory)
        if not (directory / SPEC_FILE).is_file() and (directory / "model.pt").is_file():
            raise SpecError(
                f"{directory}: a TorchScript program (model.pt), not spec.json + weights.npz: "
                "load it with lpmon.model.load_snapshot"
            )
        if not (directory / SPEC_FILE).is_file():
            raise SpecError(f"{directory}: no {SPEC_FILE} (is this a model snapshot?)")
        if not (directory / WEIGHTS_FILE).is_file():
            raise SpecError(f"{directory}: no {WEIGHTS_FILE}")
        spec = ModelSpec.load(directory / SPEC_FILE)
        return cls(spec, load_weights(directory / WEIGHTS_FILE))


def load_weights(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a weights.npz; a file that is not one is a SpecError saying what it is instead."""
    try:
        if not zipfile.is_zipfile(path):
            raise SpecError(f"{path}: not an .npz archive (damaged, or another kind of file)")
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except SpecError:
        raise
    except ValueError as err:
        if "pickle" in str(err):
            raise SpecError(f"{path}: holds an object array (pickled data), which lpmon never loads") from None
        raise SpecError(f"{path}: cannot be read: {err}") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise SpecError(f"{path}: a damaged .npz archive ({err})") from None


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


def snapshot_digest(uri: str) -> str:
    """A short content hash of a snapshot (spec and weights)."""
    import hashlib

    digest = hashlib.sha256()
    names = ("spec.json", "weights.npz") if (Path(uri) / "spec.json").exists() else ("model.pt", "inputs.json")
    for name in names:
        with open(Path(uri) / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]
