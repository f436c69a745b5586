"""Import a PyTorch DLRM checkpoint (facebookresearch/dlrm state-dict naming).

The state dict holds emb_l.<t>.weight, bot_l.<2i>.weight/bias and
top_l.<2i>.weight/bias; the spec is inferred from their shapes (the
interaction from the top MLP's input width). PyTorch is needed to read the
file; without it the import says how to get the CPU build. The checkpoint is
memory-mapped where torch can (its zip format), and written to a snapshot tensor by
tensor: an import of any size needs little memory.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .snapshot import Model, write_imported
from .spec import ModelSpec, SpecError, TableSpec

_KEY = re.compile(r"^(emb_l|bot_l|top_l)\.(\d+)\.(weight|bias)$")


def load_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The state dict of a checkpoint file, read by torch's weights-only unpickler with
    only the numpy scalar types DLRM's files hold added to what it allows (under numpy
    1's and numpy 2's names): no other Python object is ever unpickled. The state dict
    is the file itself or its "state_dict" entry (dlrm_s_pytorch.py --save-model); its
    DataParallel "module." prefixes are dropped."""
    try:
        import torch
    except ImportError:
        raise ImportError(
            "importing a PyTorch DLRM checkpoint needs PyTorch: pip install torch==2.13.0 (the CPU build)"
        ) from None
    import pickle

    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such checkpoint file")
    if _is_torchscript(path):
        raise SpecError(f"{path}: a TorchScript model, not a checkpoint: {SAVE_STATE_DICT}")
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            try:  # mapped: the tensors' bytes are read once, as they are written to the snapshot
                checkpoint = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # the legacy (pre-zip) format cannot be mapped
                checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
        what = f"a pickled Python object ({found.group(1)})" if found else "Python objects"
        raise SpecError(f"{path}: holds {what}, which lpmon never unpickles: {SAVE_STATE_DICT}") from None
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise SpecError(f"{path}: not a DLRM checkpoint (no state dict)")
    return {k.removeprefix("module."): v.detach().float().numpy() for k, v in state.items() if hasattr(v, "detach")}


SAVE_STATE_DICT = (
    "save the model's weights with torch.save(model.state_dict(), FILE) "
    "(dlrm_s_pytorch.py --save-model=FILE writes such a file) and import that"
)


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive: a zip whose record holds code/ and constants.pkl."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") or "/code/" in name for name in archive.namelist())


def _numpy_scalar_globals() -> list:
    """numpy's scalar reconstructor under both of its pickled names (DLRM's Criteo
    preprocessing runs under numpy 1, whose files say numpy.core), and the dtypes it takes."""
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy 1
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    dtypes = {type(np.dtype(code)) for code in "?bhilqBHILQefdg"}
    return [
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
        np.dtype,
        *sorted(dtypes, key=str),
    ]


def model_from_state_dict(state: dict[str, np.ndarray], sparse_names=None, dense_names=None) -> Model:
    """A Model in memory from a DLRM state dict (its tensors checked here)."""
    return Model(*spec_from_state_dict(state, sparse_names, dense_names))


def save_state_dict(state: dict[str, np.ndarray], out: str | Path, sparse_names=None, dense_names=None) -> Model:
    """Write a DLRM state dict as a snapshot at `out`, tensor by tensor (each read once,
    checked finite and hashed as it is written: nothing is published if one holds NaN
    or inf), and load it."""
    return write_imported(out, *spec_from_state_dict(state, sparse_names, dense_names))


def spec_from_state_dict(
    state: dict[str, np.ndarray], sparse_names=None, dense_names=None
) -> tuple[ModelSpec, dict[str, np.ndarray]]:
    """The spec a DLRM state dict implies, and its tensors by state-dict name (not checked yet)."""
    _refuse_tricks(state)
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
    if len(names) != len(tables):
        raise SpecError(f"{len(names)} sparse names for the checkpoint's {len(tables)} embedding tables")
    bottom = [groups["bot_l"][i] for i in sorted(groups["bot_l"])]
    top = [groups["top_l"][i] for i in sorted(groups["top_l"])]
    dims = {t.shape[1] for t in tables}
    vectors = 1 + len(tables)
    top_in, bottom_out = top[0]["weight"].shape[1], bottom[-1]["weight"].shape[0]
    if top_in == bottom_out + vectors * (vectors - 1) // 2 and dims == {bottom_out}:
        interaction = "dot"
    elif top_in == bottom_out + sum(t.shape[1] for t in tables):
        interaction = "cat"
    elif top_in == bottom_out + vectors * (vectors + 1) // 2 and dims == {bottom_out}:
        raise SpecError(
            f"top_l.0 takes {top_in} inputs: a dot interaction that includes each vector with itself "
            "(dlrm_s_pytorch.py --arch-interaction-itself), which lpmon does not support"
        )
    else:
        raise SpecError(
            f"top_l.0 takes {top_in} inputs: neither a dot nor a cat interaction of "
            f"{len(tables)} tables over a {bottom_out}-wide bottom MLP"
        )
    spec = ModelSpec(
        dense=_dense_names(dense_names, bottom[0]["weight"].shape[1]),
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
    return spec, weights


_TRICKS = (  # embedding tables DLRM builds for these flags, by their state-dict keys
    (re.compile(r"^emb_l\.(\d+)\.weight_[qr]$"), "quotient-remainder (--qr-flag)"),
    (re.compile(r"^emb_l\.(\d+)\.(embs|proj)\.weight$"), "mixed-dimension (--md-flag)"),
)


def _refuse_tricks(state) -> None:
    """QR and MD embedding tables, named by the flag that made them (lpmon reads plain tables only)."""
    for pattern, what in _TRICKS:
        tables = sorted({int(m.group(1)) for m in map(pattern.match, state) if m})
        if tables:
            raise SpecError(
                f"emb_l.{tables[0]} is a {what} embedding table ({len(tables)} such tables): "
                "lpmon reads plain embedding tables only; train without that flag"
            )


def _dense_names(names, width: int) -> tuple[str, ...]:
    names = tuple(names or (f"dense_{i}" for i in range(width)))
    if len(names) != width:
        raise SpecError(f"{len(names)} dense names for bot_l.0's {width} inputs")
    return names


def import_dlrm(path: str | Path, sparse_names=None, dense_names=None, out: str | Path | None = None) -> Model:
    """A Model from a facebookresearch/dlrm checkpoint file. sparse_names: the
    traffic's column of each table emb_l.0, emb_l.1, ... (default sparse_0, ...);
    dense_names: the bottom MLP's input columns (default dense_0, ...); out: write it
    there as a snapshot (bounded memory) and return it mapped from there."""
    state = load_torch_state_dict(path)
    if out is not None:
        return save_state_dict(state, out, sparse_names, dense_names)
    return model_from_state_dict(state, sparse_names, dense_names)


ID_COLUMNS = ("request_id", "label", "ts", "model_id")


def traffic_columns(schema) -> tuple[list[str], list[str]]:
    """(dense, sparse) feature columns of a traffic schema, in file order: floating
    columns are dense; integer and list-of-integer columns are sparse."""
    import pyarrow as pa

    dense, sparse = [], []
    for f in schema:
        if f.name in ID_COLUMNS:
            continue
        kind = f.type.value_type if pa.types.is_list(f.type) or pa.types.is_large_list(f.type) else f.type
        if pa.types.is_floating(f.type):
            dense.append(f.name)
        elif pa.types.is_integer(kind):
            sparse.append(f.name)
    return dense, sparse


def names_from_traffic(
    state: dict[str, np.ndarray], schema, where: str = "the traffic"
) -> tuple[list[str], list[str], str]:
    """The sparse and dense names that match the traffic's columns, and how they were
    matched: the default names when the traffic has them all, else the traffic's
    columns in order when the counts agree; otherwise a SpecError saying which
    tables (or inputs) have no column and which columns no table."""
    tables = sorted(
        int(m.group(2)) for m in map(_KEY.match, state) if m and m.group(1) == "emb_l" and m.group(3) == "weight"
    )
    width = next((np.shape(v)[1] for k, v in state.items() if k == "bot_l.0.weight"), None)
    if not tables or width is None:
        raise SpecError("state dict has no emb_l.* or bot_l.0.weight tensors: not a DLRM checkpoint")
    dense, sparse = traffic_columns(schema)
    problems, how = [], []
    out = {}
    for kind, count, columns, default in (
        ("sparse", len(tables), sparse, "sparse_"),
        ("dense", width, dense, "dense_"),
    ):
        defaults = [f"{default}{i}" for i in range(count)]
        if set(defaults) <= set(columns):
            out[kind] = defaults
            how.append(f"{count} {kind} columns by name ({defaults[0]}..{defaults[-1]})")
        elif len(columns) == count:  # any names: integer columns are sparse, floating ones dense
            out[kind] = columns
            how.append(f"{count} {kind} columns in the traffic's order ({columns[0]}..{columns[-1]})")
        else:
            missing = [n for n in defaults if n not in columns]
            unused = [c for c in columns if c not in defaults]
            what = "embedding tables" if kind == "sparse" else "bot_l.0 inputs"
            problems.append(
                f"the checkpoint has {count} {what}, {where} has {len(columns)} {kind} columns; "
                f"no column for {_few(missing)}; no table or input for {_few(unused) or 'none'}"
            )
    if problems:
        raise SpecError("; ".join(problems) + " (name them with --sparse-names)")
    return out["sparse"], out["dense"], "; ".join(how)


def _few(names: list[str], most: int = 6) -> str:
    return ", ".join(names[:most]) + (f" (and {len(names) - most} more)" if len(names) > most else "")
