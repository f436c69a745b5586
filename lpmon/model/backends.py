"""Which code scores a model and reads a snapshot: the NumPy executor
(lpmon.model.forward) and snapshot format (lpmon.model.snapshot), or, for a
model with backend "torch" and for a TorchScript program, lpmon.torch_backend.

The one place that knows both, so that neither imports the other.
"""

from __future__ import annotations

from pathlib import Path

from lpmon.quant.plan import QuantPlan

from .batch import Batch
from .cache import MAX_TORCH_EXECUTORS
from .forward import DEFAULT_BATCH_SIZE, Executor, ForwardResult, LayerObserver
from .snapshot import Model


def load_snapshot(directory: str | Path) -> Model:
    """A snapshot directory: spec.json + weights.npz (Model.load), or a TorchScript
    program, model.pt + inputs.json (backend "torch", found by module type)."""
    from lpmon.torch_backend import is_torch_snapshot

    if not (Path(directory) / "spec.json").is_file() and is_torch_snapshot(directory):
        from lpmon.torch_backend import load_snapshot as load_program

        return load_program(directory)
    return Model.load(directory)


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


def executor(model: Model, plan: QuantPlan | None):
    """The NumPy executor, or the torch back end's for a model with backend "torch".

    Kept in the model's day cache (lpmon.model.cache) by the plan's layers, so that
    the day's repeated passes under one plan (whatever its version or provenance,
    and however often it is read back from the store) reuse one executor."""
    cache = model.cache.current(model.weights)
    if model.backend == "torch":
        from lpmon.torch_backend import TorchExecutor

        return cache.executor(plan_key(plan), lambda: TorchExecutor(model, plan), keep=MAX_TORCH_EXECUTORS)
    return cache.executor(plan_key(plan), lambda: Executor(model, plan))


def plan_key(plan: QuantPlan | None) -> tuple | None:
    """What an executor depends on in a plan: its layers (None: every layer fp32)."""
    return None if plan is None else tuple(sorted(plan.layers, key=lambda layer: layer.name))
