"""Import a TorchRec DLRM or DLRM_DCN checkpoint: torch.save(model.state_dict()).

torchrec.models.dlrm.DLRM (dot interaction) and DLRM_DCN (DCNv2 of MLPerf DLRMv2:
the cat interaction followed by LowRankCrossNet's cross layers) are told apart by
their keys; the spec is inferred from the shapes:

    sparse_arch.embedding_bag_collection.embedding_bags.<table>.weight  -> emb_l.<t>
    dense_arch.model._mlp.<i>._linear.{weight,bias}                     -> bot_l.<2i>
    inter_arch.crossnet.{V_kernels,W_kernels,bias}.<l>                  -> cross_l.<l>.V / .W
    over_arch.model.0._mlp.<i>._linear.{weight,bias}, over_arch.model.1 -> top_l.<2i>

Tables keep the state dict's order, which is TorchRec's (its EmbeddingBagConfigs'),
and so does the interaction: the features table by table, the pairs of the dot
interaction in TorchRec's upper-triangle order. A state dict does not say which
features a table serves nor how it pools: a features file does
({"<table>": ["<feature>", ...]} or {"<table>": {"features": [...], "pooling": "mean"}});
without one each table serves one feature named after it, pooled by `pooling`.
Anything else (another TorchRec model, DLRM_Projection, a sharded or quantized
module) is refused, naming the key lpmon cannot read.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from .dlrm_import import load_torch_state_dict
from .snapshot import Model, write_imported
from .spec import POOLINGS, ModelSpec, SpecError, TableSpec

_TABLE = re.compile(r"^sparse_arch\.embedding_bag_collection\.embedding_bags\.(.+)\.weight$")
_DENSE = re.compile(r"^dense_arch\.model\._mlp\.(\d+)\._linear\.(weight|bias)$")
_OVER = re.compile(r"^over_arch\.model\.0\._mlp\.(\d+)\._linear\.(weight|bias)$")
_LOGIT = re.compile(r"^over_arch\.model\.1\.(weight|bias)$")
_CROSS = re.compile(r"^inter_arch\.crossnet\.(V_kernels|W_kernels|bias)\.(\d+)$")
_PROJECTION = re.compile(r"^inter_arch\.interaction_branch[12]\.")


def import_torchrec(
    path: str | Path, out: str | Path, features: str | Path | None = None, pooling: str = "sum"
) -> Model:
    """Write the checkpoint at `path` as a snapshot at `out` (tensor by tensor, each checked
    finite once) and load it. features: the features file (see the module docstring)."""
    state = load_torch_state_dict(path)
    spec, weights = spec_from_torchrec(state, read_features(features) if features else None, pooling, str(path))
    return write_imported(out, spec, weights)


def read_features(path: str | Path) -> dict[str, tuple[tuple[str, ...], str]]:
    """The features file: per table, (its features, its pooling or "" for the default)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise SpecError(f"{path}: cannot be read as JSON ({err})") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected an object mapping each table name to its feature names")
    out = {}
    for table, entry in data.items():
        pooling = ""
        if isinstance(entry, dict):
            unknown = sorted(set(entry) - {"features", "pooling"})
            if unknown:
                raise SpecError(f"{path}: table {table}: unknown field {unknown[0]!r} (known: features, pooling)")
            pooling = entry.get("pooling", "")
            if pooling not in ("", *POOLINGS):
                raise SpecError(f"{path}: table {table}: pooling must be 'sum' or 'mean', got {pooling!r}")
            entry = entry.get("features")
        if not isinstance(entry, list) or not entry or not all(isinstance(f, str) and f for f in entry):
            raise SpecError(f"{path}: table {table}: expected a non-empty list of feature names, got {entry!r}")
        out[table] = (tuple(entry), pooling)
    return out


def spec_from_torchrec(
    state: dict[str, np.ndarray],
    features: dict[str, tuple[tuple[str, ...], str]] | None = None,
    pooling: str = "sum",
    where: str = "the checkpoint",
) -> tuple[ModelSpec, dict[str, np.ndarray]]:
    """The spec a TorchRec DLRM / DLRM_DCN state dict implies and its tensors by lpmon's names
    (shapes checked against the spec; values not yet)."""
    if state and all(key.startswith("model.") for key in state):  # DLRMTrain's wrapper
        state = {key.removeprefix("model."): value for key, value in state.items()}
    tables: dict[str, np.ndarray] = {}
    dense: dict[int, dict[str, np.ndarray]] = {}
    over: dict[int, dict[str, np.ndarray]] = {}
    logit: dict[str, np.ndarray] = {}
    cross: dict[int, dict[str, np.ndarray]] = {}
    for key, value in state.items():
        if m := _TABLE.match(key):
            tables[m.group(1)] = value
        elif m := _DENSE.match(key):
            dense.setdefault(int(m.group(1)), {})[m.group(2)] = value
        elif m := _OVER.match(key):
            over.setdefault(int(m.group(1)), {})[m.group(2)] = value
        elif m := _LOGIT.match(key):
            logit[m.group(1)] = value
        elif m := _CROSS.match(key):
            cross.setdefault(int(m.group(2)), {})[m.group(1)] = value
        elif _PROJECTION.match(key):
            raise SpecError(f"{where}: {key}: a TorchRec DLRM_Projection, which lpmon does not support")
        else:
            raise SpecError(
                f"{where}: {key}: not a tensor of a TorchRec DLRM or DLRM_DCN (sparse_arch, "
                "dense_arch, inter_arch.crossnet, over_arch): lpmon cannot read this model"
            )
    if not tables or not dense or "weight" not in logit:
        what = "sparse_arch embedding bags" if not tables else "dense_arch" if not dense else "over_arch.model.1"
        raise SpecError(f"{where}: no {what} tensors: not a TorchRec DLRM or DLRM_DCN state dict")
    bottom = _layers(dense, "dense_arch.model._mlp.{}._linear", where)
    top = [*_layers(over, "over_arch.model.0._mlp.{}._linear", where), _layer(logit, "over_arch.model.1", where)]
    specs = _tables(tables, features, pooling, where)
    model_pooling = specs[0].pooling  # a table pooling otherwise says so
    specs = [replace(t, pooling="" if t.pooling == model_pooling else t.pooling) for t in specs]
    cross_layers = [cross[i] for i in range(len(cross))] if sorted(cross) == list(range(len(cross))) else None
    if cross_layers is None or any(set(c) != {"V_kernels", "W_kernels", "bias"} for c in cross_layers):
        raise SpecError(
            f"{where}: inter_arch.crossnet needs V_kernels, W_kernels and bias 0..L-1, found layers {sorted(cross)}"
        )
    rank = cross_layers[0]["V_kernels"].shape[0] if cross_layers else 0
    try:
        spec = ModelSpec(
            dense=tuple(f"dense_{i}" for i in range(bottom[0][0].shape[1])),
            tables=tuple(specs),
            bottom_mlp=tuple(w.shape[0] for w, _ in bottom),
            top_mlp=tuple(w.shape[0] for w, _ in top),
            interaction="cat" if cross_layers else "dot",
            pooling=model_pooling,
            pair_order="lower" if cross_layers else "upper",  # (a cat interaction has no pairs)
            cross_layers=len(cross_layers),
            cross_rank=rank,
        )
    except SpecError as err:
        raise SpecError(f"{where}: {err}") from None
    weights = {f"emb_l.{t}.weight": tables[table.name] for t, table in enumerate(specs)}
    for prefix, layers in (("bot_l", bottom), ("top_l", top)):
        for i, (weight, bias) in enumerate(layers):
            weights[f"{prefix}.{2 * i}.weight"], weights[f"{prefix}.{2 * i}.bias"] = weight, bias
    for (v, w), layer in zip(spec.cross_units(), cross_layers):
        weights[f"{v}.weight"] = layer["V_kernels"]
        weights[f"{w}.weight"], weights[f"{w}.bias"] = layer["W_kernels"], layer["bias"]
    for name, shape in spec.weight_shapes().items():
        if tuple(weights[name].shape) != shape:
            raise SpecError(
                f"{where}: the tensor lpmon reads as {name} has shape {tuple(weights[name].shape)}, "
                f"the model's other layers need {shape} (a {'DCN' if cross_layers else 'DLRM'} "
                "whose layers do not chain)"
            )
    return spec, weights


def _layer(parts: dict[str, np.ndarray], key: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    for kind in ("weight", "bias"):
        if kind not in parts:
            raise SpecError(f"{where}: no {key}.{kind}")
    if parts["weight"].ndim != 2:
        raise SpecError(f"{where}: {key}.weight has shape {parts['weight'].shape}, expected [out, in]")
    return parts["weight"], parts["bias"]


def _layers(parts: dict[int, dict], key: str, where: str) -> list[tuple[np.ndarray, np.ndarray]]:
    if sorted(parts) != list(range(len(parts))):
        raise SpecError(f"{where}: {key.format('*')} layers {sorted(parts)}, expected 0..{len(parts) - 1}")
    return [_layer(parts[i], key.format(i), where) for i in range(len(parts))]


def _tables(tables: dict[str, np.ndarray], features: dict | None, pooling: str, where: str) -> list[TableSpec]:
    """The tables in the state dict's order, with their features and pooling (each its own)."""
    if pooling not in POOLINGS:
        raise SpecError(f"pooling: must be 'sum' or 'mean', got {pooling!r}")
    if features is not None:
        missing = [t for t in tables if t not in features]
        unknown = [t for t in features if t not in tables]
        if missing or unknown:
            raise SpecError(
                f"the features file names tables {sorted(features)}, {where} has {list(tables)}"
                + (f": no features for {missing[0]}" if missing else f": no table {unknown[0]}")
            )
    out = []
    for name, weight in tables.items():
        if weight.ndim != 2:
            raise SpecError(f"{where}: table {name} has shape {weight.shape}, expected [rows, dim]")
        names, own = features[name] if features is not None else ((name,), "")
        out.append(TableSpec(name, weight.shape[0], weight.shape[1], () if names == (name,) else names, own or pooling))
    return out
