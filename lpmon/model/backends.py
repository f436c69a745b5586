"""Which code scores a model and reads its snapshot: the back ends, by name.

A back end is an executor factory (model, plan -> an object with Executor's
`forward`) and a snapshot loader. lpmon.model registers its own, "numpy" (the
NumPy executor, lpmon.model.forward, and spec.json + weights.npz,
lpmon.model.snapshot). Any other registers itself when its module is imported:
lpmon.torch_backend registers "torch" (PyTorch/FBGEMM, and TorchScript programs
as snapshots). lpmon.model never imports a back end's module: the place that
picks one does (lpmon.pipeline.context.load_model, for the config's `backend`
and the snapshot's format), so importing lpmon.model never imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from lpmon.quant.plan import QuantPlan

from .batch import Batch
from .cache import MAX_EXECUTORS
from .forward import DEFAULT_BATCH_SIZE, Executor, ForwardResult, LayerObserver
from .snapshot import Model

# The snapshot formats, by the file that marks one, and the back end that reads each (the first
# marker present wins: a directory with spec.json is lpmon's own format whatever else it holds).
SNAPSHOT_MARKERS = {"spec.json": "numpy", "model.pt": "torch"}


class ModelExecutor(Protocol):
    """What a back end's executor does (lpmon.model.forward.Executor's interface)."""

    def forward(
        self,
        batch: Batch,
        *,
        taps: bool = ...,
        batch_size: int = ...,
        observe: LayerObserver | None = ...,
        observe_every: int = ...,
    ) -> ForwardResult: ...


@dataclass(frozen=True)
class Backend:
    name: str
    executor: Callable[[Model, QuantPlan | None], ModelExecutor]
    load_snapshot: Callable[[Path], Model]  # a directory in the format SNAPSHOT_MARKERS gives this back end
    executors_kept: int = MAX_EXECUTORS  # executors a model's day cache keeps (by plan), least recently used dropped


_registered: dict[str, Backend] = {}


def register(backend: Backend) -> None:
    """Make `backend` the one named backend.name (a module imported again replaces its own)."""
    _registered[backend.name] = backend


def backend(name: str) -> Backend:
    """The registered back end `name`; a LookupError naming the module that registers it if none is."""
    try:
        return _registered[name]
    except KeyError:
        raise LookupError(
            f'back end "{name}" is not loaded (loaded: {", ".join(sorted(_registered))}): import the module '
            'that registers it first (lpmon.torch_backend registers "torch"; lpmon.pipeline.load_model '
            "imports the ones a model needs)"
        ) from None


def snapshot_backend(directory: str | Path) -> str | None:
    """The back end that reads the snapshot in `directory` (by its files), None if no format matches."""
    for marker, name in SNAPSHOT_MARKERS.items():
        if (Path(directory) / marker).is_file():
            return name
    return None


register(Backend("numpy", Executor, Model.load))


def load_snapshot(directory: str | Path) -> Model:
    """A snapshot directory: spec.json + weights.npz (Model.load), or a TorchScript
    program, model.pt + inputs.json (backend "torch": needs lpmon.torch_backend loaded)."""
    name = snapshot_backend(directory)
    if name is None:
        return Model.load(directory)  # says what is missing
    return backend(name).load_snapshot(Path(directory))


def forward_fp32(
    model: Model,
    batch: Batch,
    *,
    taps: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    observe: LayerObserver | None = None,
    observe_every: int = 1,
) -> ForwardResult:
    """fp32 probabilities; observe / observe_every: see Executor.forward."""
    return executor(model, None).forward(
        batch, taps=taps, batch_size=batch_size, observe=observe, observe_every=observe_every
    )


def forward_quantized(
    model: Model, batch: Batch, plan: QuantPlan, *, taps: bool = False, batch_size: int = DEFAULT_BATCH_SIZE
) -> ForwardResult:
    return executor(model, plan).forward(batch, taps=taps, batch_size=batch_size)


def executor(model: Model, plan: QuantPlan | None) -> ModelExecutor:
    """The executor of the model's back end (model.backend, registered).

    Kept in the model's day cache (lpmon.model.cache) by the plan's layers, so that
    the day's repeated passes under one plan (whatever its version or provenance,
    and however often it is read back from the store) reuse one executor."""
    chosen = backend(model.backend)
    cache = model.cache.current(model.weights)
    return cache.executor(plan_key(plan), lambda: chosen.executor(model, plan), keep=chosen.executors_kept)


def plan_key(plan: QuantPlan | None) -> tuple | None:
    """What an executor depends on in a plan: its layers (None: every layer fp32)."""
    return None if plan is None else tuple(sorted(plan.layers, key=lambda layer: layer.name))
