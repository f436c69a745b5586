"""Import a PyTorch DLRM checkpoint (facebookresearch/dlrm state-dict naming).

The state dict holds emb_l.<t>.weight, bot_l.<2i>.weight/bias and
top_l.<2i>.weight/bias; the spec is inferred from their shapes (the
interaction from the top MLP's input width). PyTorch is needed to read the
file; without it the import says how to get the CPU build.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .snapshot import Model
from .spec import ModelSpec, SpecError, TableSpec

_KEY = re.compile(r"^(emb_l|bot_l|top_l)\.(\d+)\.(weight|bias)$")


def load_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise ImportError("importing a PyTorch DLRM checkpoint needs PyTorch: "
                          "pip install torch==2.13.0 (the CPU build)") from None
    checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise SpecError(f"{path}: not a DLRM checkpoint (no state dict)")
    return {k.removeprefix("module."): v.detach().float().numpy() for k, v in state.items()
            if hasattr(v, "detach")}


def model_from_state_dict(state: dict[str, np.ndarray], sparse_names=None) -> Model:
    groups: dict[str, dict[int, dict[str, np.ndarray]]] = {"emb_l": {}, "bot_l": {}, "top_l": {}}
    for key, value in state.items():
        match = _KEY.match(key)
        if match is None:
            continue  # optimiser state, step counters and the like
        part, index, kind = match.group(1), int(match.group(2)), match.group(3)
        groups[part].setdefault(index, {})[kind] = np.asarray(value, dtype=np.float32)
    for part in ("emb_l", "bot_l", "top_l"):
        if not groups[part]:
            raise SpecError(f"state dict has no {part}.* tensors: not a DLRM checkpoint")
    tables = [groups["emb_l"][t]["weight"] for t in sorted(groups["emb_l"])]
    names = list(sparse_names or [f"sparse_{t}" for t in range(len(tables))])
    bottom = [groups["bot_l"][i] for i in sorted(groups["bot_l"])]
    top = [groups["top_l"][i] for i in sorted(groups["top_l"])]
    dims = {t.shape[1] for t in tables}
    vectors = 1 + len(tables)
    top_in, bottom_out = top[0]["weight"].shape[1], bottom[-1]["weight"].shape[0]
    if top_in == bottom_out + vectors * (vectors - 1) // 2 and dims == {bottom_out}:
        interaction = "dot"
    elif top_in == bottom_out + sum(t.shape[1] for t in tables):
        interaction = "cat"
    else:
        raise SpecError(f"top_l.0 takes {top_in} inputs: neither a dot nor a cat interaction of "
                        f"{len(tables)} tables over a {bottom_out}-wide bottom MLP")
    spec = ModelSpec(
        dense=tuple(f"dense_{i}" for i in range(bottom[0]["weight"].shape[1])),
        tables=tuple(TableSpec(name, t.shape[0], t.shape[1]) for name, t in zip(names, tables)),
        bottom_mlp=tuple(layer["weight"].shape[0] for layer in bottom),
        top_mlp=tuple(layer["weight"].shape[0] for layer in top),
        interaction=interaction,
    )
    weights = {f"emb_l.{t}.weight": table for t, table in enumerate(tables)}
    for prefix, layers in (("bot_l", bottom), ("top_l", top)):
        for i, layer in enumerate(layers):
            for kind in ("weight", "bias"):
                if kind not in layer:
                    raise SpecError(f"state dict has no {prefix}.{2 * i}.{kind}")
                weights[f"{prefix}.{2 * i}.{kind}"] = layer[kind]
    return Model(spec, weights)


def import_dlrm(path: str | Path, sparse_names=None) -> Model:
    """A Model from a facebookresearch/dlrm checkpoint file."""
    return model_from_state_dict(load_torch_state_dict(path), sparse_names)
