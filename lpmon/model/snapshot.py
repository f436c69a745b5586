"""Models and their snapshots on disk.

A snapshot is a directory: spec.json, and the weights in the mapped format
(lpmon.model.mapped: weights.json + one .npy per tensor, memory-mapped on load), or in
the legacy format (weights.npz, read whole: `lpmon convert-snapshot` converts it).
Written tensor by tensor in bounded memory, atomically, with the umask's permissions
(serving and workers may run as other users).
"""

from __future__ import annotations

import functools
import hashlib
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .cache import ModelCache
from .mapped import LEGACY, MANIFEST, SPEC_FILE, SnapshotWriter, load_mapped, mapped_digest
from .spec import ModelSpec, SpecError
from .tensors import array_chunks, chunk_rows, collect, count_nonfinite

WEIGHTS_FILE = LEGACY  # the legacy format's weights (its old name here)


@dataclass
class Model:
    """A spec and its float32 weights, keyed by DLRM state-dict name.

    A loaded model's weights are read-only np.memmap arrays: constructing or loading a
    model reads no table byte. `checked` names, per tensor, the file whose every value
    was checked finite when it was written (the snapshot's manifest says so); any other
    tensor is checked here, chunk by chunk.
    """

    spec: ModelSpec
    weights: dict[str, np.ndarray]
    backend: str = "numpy"  # "torch": scored by lpmon.torch_backend (config: backend)
    checked: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    # The day's prepared rows and executors (lpmon.model.cache); not part of the model's value.
    cache: ModelCache = field(default_factory=ModelCache, init=False, repr=False, compare=False)

    def __post_init__(self):
        check_weights(self.spec, self.weights, self.checked)
        if self.backend not in ("numpy", "torch"):
            raise SpecError(f"backend: must be numpy or torch, got {self.backend!r}")

    def linear(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """An FC unit's weight [out, in] and bias [out] (zeros for a unit without one: a cross
        layer's V, whose zero bias adds nothing in fp32 and is an FBGEMM op's bias under int8)."""
        weight = self.weights[f"{name}.weight"]
        if self.spec.has_bias(name):
            return weight, self.weights[f"{name}.bias"]
        return weight, np.zeros(weight.shape[0], np.float32)

    @classmethod
    def initialise(cls, spec: ModelSpec, seed: int = 0, directory: str | Path | None = None) -> "Model":
        """DLRM's initialisation (see initial_tensors), in memory, or written straight
        to a snapshot at `directory` and loaded from it (bounded memory, any size)."""
        if directory is None:
            return cls(spec, {name: collect(shape, chunks) for name, shape, chunks in initial_tensors(spec, seed)})
        with SnapshotWriter(directory, spec) as writer:
            for name, _, chunks in initial_tensors(spec, seed):
                writer.write(name, chunks)
            writer.commit()
        return cls.load(directory)

    def save(self, directory: str | Path) -> Path:
        """Write the snapshot in the mapped format, tensor by tensor, chunk by chunk;
        readers see the old snapshot or the new one (lpmon.model.mapped)."""
        with SnapshotWriter(directory, self.spec) as writer:
            for name in self.spec.weight_shapes():
                writer.write(name, array_chunks(self.weights[name]))
            return writer.commit()

    @classmethod
    def load(cls, directory: str | Path) -> "Model":
        """Map a snapshot (headers and shapes checked, no tensor data read), or read a
        legacy weights.npz whole (and check it)."""
        directory = Path(directory)
        if not (directory / SPEC_FILE).is_file() and (directory / "model.pt").is_file():
            raise SpecError(
                f"{directory}: a TorchScript program (model.pt), not spec.json + weights: "
                "load it with lpmon.model.load_snapshot"
            )
        if not (directory / SPEC_FILE).is_file():
            raise SpecError(f"{directory}: no {SPEC_FILE} (is this a model snapshot?)")
        if (directory / MANIFEST).is_file():
            spec, weights = load_mapped(directory)
            return cls(spec, dict(weights), checked={name: str(array.filename) for name, array in weights.items()})
        if not (directory / LEGACY).is_file():
            raise SpecError(f"{directory}: no {MANIFEST} (nor a legacy {LEGACY})")
        spec = ModelSpec.load(directory / SPEC_FILE)
        return cls(spec, load_weights(directory / LEGACY))


def write_imported(directory: str | Path, spec: ModelSpec, weights: Mapping[str, np.ndarray]) -> Model:
    """An imported model's tensors written as a snapshot, tensor by tensor (each read once,
    checked finite and hashed as it is written: nothing is published if one holds NaN or
    inf), then loaded from it."""
    with SnapshotWriter(directory, spec) as writer:
        for name in spec.weight_shapes():
            writer.write(name, array_chunks(weights[name]))
        writer.refuse_nonfinite()
        writer.commit()
    return Model.load(directory)


def initial_tensors(spec: ModelSpec, seed: int) -> Iterator[tuple[str, tuple[int, ...], Iterator[np.ndarray]]]:
    """(name, shape, float32 row chunks) of every tensor, drawn as DLRM initialises:
    N(0, sqrt(2 / (fan_in + fan_out))) weights, N(0, sqrt(1 / fan_out)) biases,
    U(+-sqrt(1 / rows)) embeddings. Chunks are drawn in float64 and rounded to float32
    one at a time, giving the same numbers as drawing whole tensors; consume them in
    order (they share one generator)."""
    rng = np.random.default_rng(seed)
    for name, shape in spec.weight_shapes().items():
        if name.startswith("emb_l."):
            bound = np.sqrt(1.0 / shape[0])
            draw = functools.partial(rng.uniform, -bound, bound)
        elif name.endswith(".weight"):
            draw = functools.partial(rng.normal, 0, np.sqrt(2.0 / (shape[0] + shape[1])))
        else:
            draw = functools.partial(rng.normal, 0, np.sqrt(1.0 / shape[0]))
        yield name, shape, _drawn(draw, shape)


def _drawn(draw, shape: tuple[int, ...]) -> Iterator[np.ndarray]:
    step = chunk_rows(shape, np.dtype(np.float64).itemsize)
    for start in range(0, shape[0], step):
        yield draw((min(step, shape[0] - start), *shape[1:])).astype(np.float32)


def load_weights(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a legacy weights.npz; a file that is not one is a SpecError saying what it is instead."""
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


def check_weights(spec: ModelSpec, weights: dict[str, np.ndarray], checked: Mapping[str, str] | None = None) -> None:
    """Every tensor the spec needs, of the right shape, float32 (others are converted),
    finite; nothing else. A tensor mapped from a file that `checked` names was checked
    finite when written: its bytes are not read again."""
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
        if isinstance(array, np.memmap) and (checked or {}).get(name) == str(array.filename):
            continue
        bad = count_nonfinite(array)
        if bad:
            raise SpecError(f"weights: {name} has {bad} NaN or inf values")


def snapshot_digest(uri: str) -> str:
    """A short content hash of a snapshot: for the mapped format, from spec.json and the
    tensor digests its manifest recorded (no tensor byte is read); for a legacy
    weights.npz or a TorchScript program, from every byte of the files."""
    if (Path(uri) / MANIFEST).is_file():
        return mapped_digest(Path(uri))
    digest = hashlib.sha256()
    names = (SPEC_FILE, LEGACY) if (Path(uri) / SPEC_FILE).exists() else ("model.pt", "inputs.json")
    for name in names:
        with open(Path(uri) / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]
