"""The torch back end (`backend = "torch"`): a model scored with PyTorch and FBGEMM.

    import lpmon.torch_backend                    # registers "torch" with lpmon.model (imports torch)
    model = lpmon.model.load_snapshot(snapshot)   # spec.json + weights.npz, or model.pt + inputs.json
    model = dataclasses.replace(model, backend="torch")
    forward_fp32(model, batch)            # runs TorchExecutor instead of the NumPy executor

lpmon.model never imports this module: it registers itself (lpmon.model.backends)
when imported, and the pipeline imports it for a model whose config says
`backend = "torch"` or whose snapshot is a TorchScript program
(lpmon.pipeline.context.load_model).

A snapshot may be a TorchScript program of the fp32 model (`model.pt`) with a
declaration of its inputs (`inputs.json`: {"dense": [dense_* columns],
"sparse": [sparse_* columns, one per table]}); the program's forward takes
(dense_x, lS_o, lS_i) as facebookresearch/dlrm's does. lpmon finds its units
by module type (every nn.EmbeddingBag and nn.Linear; their names must follow
DLRM's emb_l.<t>, bot_l.<2i>, top_l.<2i>, the ReLUs between them), builds the
same network as an eager module of those units, and checks on load that it
reproduces the program's own predictions (within 1e-5): only DLRM-shaped
programs are supported, and one that is not is refused, never scored
differently. Under a plan, units are swapped for FBGEMM-quantized modules built
from lpmon's packed rows, per-channel weights and static ranges
(lpmon.serving.torchmodule); FC inputs are observed, tapped and counted for
saturation with forward hooks, feeding lpmon's own observers. The pipeline,
policy, lifecycle, store and DAGs are the same: they call forward_fp32 and
forward_quantized, which hand a torch model to TorchExecutor.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from lpmon.model.backends import Backend, register
from lpmon.model.batch import Batch, SparseFeature
from lpmon.model.cache import MAX_TORCH_EXECUTORS
from lpmon.model.dlrm_import import model_from_state_dict
from lpmon.model.forward import DEFAULT_BATCH_SIZE, ForwardResult, LayerTap, check_batch
from lpmon.model.snapshot import Model
from lpmon.model.spec import SpecError
from lpmon.quant.linear import Saturation, quantize_activation
from lpmon.quant.plan import QuantPlan
from lpmon.serving import require_torch
from lpmon.serving.torchmodule import FloatLinear, Fp16Linear, Int8Linear, build_eager, fc_units, torch_inputs

torch = require_torch()

PROGRAM, INPUTS = "model.pt", "inputs.json"
PROGRAM_TOLERANCE = 1e-5  # the rebuilt network against the program's own forward, on a probe


def is_torch_snapshot(directory) -> bool:
    return (Path(directory) / PROGRAM).is_file()


def load_snapshot(directory) -> Model:
    """A Model (backend "torch") from a TorchScript program and its input declaration."""
    directory = Path(directory)
    try:
        declared = json.loads((directory / INPUTS).read_text())
        dense, sparse = list(declared["dense"]), list(declared["sparse"])
    except FileNotFoundError:
        raise SpecError(f"{directory}: no {INPUTS} (which traffic columns feed dense_x and lS_i)") from None
    except (ValueError, KeyError, TypeError) as err:
        raise SpecError(f'{directory / INPUTS}: expected {{"dense": [...], "sparse": [...]}} ({err})') from None
    try:
        program = torch.jit.load(str(directory / PROGRAM), map_location="cpu")
    except Exception as err:  # noqa: BLE001 - torch raises many kinds for a bad archive
        raise SpecError(f"{directory / PROGRAM}: not a TorchScript program ({type(err).__name__}: {err})") from None
    state, modes = {}, set()
    for name, module in program.named_modules():
        kind = getattr(module, "original_name", type(module).__name__)
        if kind == "EmbeddingBag":
            modes.add(getattr(module, "mode", "sum"))
        if kind in ("Linear", "EmbeddingBag"):
            for key, value in module.state_dict().items():
                state[f"{name}.{key}"] = value.detach().float().numpy()
    if not state:
        raise SpecError(f"{directory / PROGRAM}: no nn.Linear or nn.EmbeddingBag modules found")
    model = model_from_state_dict(state, sparse)
    if len(dense) != len(model.spec.dense):
        raise SpecError(
            f"{directory / INPUTS}: {len(dense)} dense columns, the program's bottom MLP takes {len(model.spec.dense)}"
        )
    if len(modes) > 1 or not modes <= {"sum", "mean"}:
        raise SpecError(f"{directory / PROGRAM}: embedding bags pool by {sorted(modes)}: one of sum or mean")
    model = replace(
        model, spec=replace(model.spec, dense=tuple(dense), pooling=(modes or {"sum"}).pop()), backend="torch"
    )
    _check_program(program, model, directory / PROGRAM)
    return model


def _check_program(program, model, path) -> None:
    rng = np.random.default_rng(0)
    n = 64
    features = []
    for table in model.spec.tables:
        sizes = rng.integers(0, 3, n)
        features.append(
            SparseFeature(
                rng.integers(0, table.rows, sizes.sum()), np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
            )
        )
    batch = Batch(rng.normal(0, 1, (n, len(model.spec.dense))).astype(np.float32), tuple(features))
    with torch.inference_mode():
        theirs = program(*torch_inputs(batch)).reshape(-1).float().numpy()
        ours = build_eager(model, None)(*torch_inputs(batch)).numpy()
    gap = float(np.max(np.abs(theirs - ours)))
    if not gap <= PROGRAM_TOLERANCE:
        raise SpecError(
            f"{path}: its forward is not the DLRM network of its modules (predictions differ by "
            f"up to {gap:.3g} on a probe): the torch back end supports DLRM-shaped programs only"
        )


class TorchExecutor:
    """Executor's interface (lpmon.model.forward) on the torch module of the model under a plan."""

    def __init__(self, model: Model, plan: QuantPlan | None = None):
        self.model, self.plan = model, plan
        self.module = build_eager(model, plan)
        names = [name for name, _, _ in model.spec.linear_layers()]
        layers = fc_units(self.module)
        self.fc = []
        for name, layer in zip(names, layers):  # the quantizable FC units, by module type
            if not isinstance(layer, (FloatLinear, Fp16Linear, Int8Linear)):
                raise TypeError(f"{name}: unexpected module {type(layer).__name__}")
            qp = None
            if isinstance(layer, Int8Linear):
                qp = plan.layer(name).activation.qparams()
            self.fc.append((name, layer, qp))

    def forward(
        self,
        batch: Batch,
        *,
        taps: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
        observe=None,
        observe_every: int = 1,
    ) -> ForwardResult:
        check_batch(self.model, batch)
        if observe_every < 1:
            raise ValueError(f"observe_every must be at least 1, got {observe_every}")
        result = ForwardResult(np.empty(len(batch), np.float32))
        collected = {} if taps else None
        first = [0]

        def hook_for(name, qp):
            def hook(module, inputs, output):
                x = inputs[0].numpy()
                if observe is not None:
                    observe(name, x if observe_every == 1 else x[first[0] :: observe_every])
                if qp is not None:
                    _, s = quantize_activation(x, qp)
                    before = result.saturation.get(name)
                    if before is not None:
                        s = Saturation(before.below + s.below, before.above + s.above, before.total + s.total)
                    result.saturation[name] = s
                if collected is not None:
                    collected.setdefault(name, []).append((x.copy(), output.numpy().copy()))

            return hook

        handles = [layer.register_forward_hook(hook_for(name, qp)) for name, layer, qp in self.fc]
        try:
            with torch.inference_mode():
                done = 0
                for chunk in batch.chunks(batch_size):
                    first[0] = -done % observe_every
                    result.probabilities[done : done + len(chunk)] = self.module(*torch_inputs(chunk)).numpy()
                    done += len(chunk)
        finally:
            for handle in handles:
                handle.remove()
        if taps:
            result.taps = {
                name: LayerTap(np.concatenate([a for a, _ in parts]), np.concatenate([b for _, b in parts]))
                for name, parts in collected.items()
            }
        return result


register(Backend("torch", TorchExecutor, load_snapshot, executors_kept=MAX_TORCH_EXECUTORS))
