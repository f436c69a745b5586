"""`lpmon convert-snapshot`: a legacy snapshot (spec.json + weights.npz) into the mapped
format, streamed member by member in bounded memory; or a mapped snapshot written again
(to another folder, or in place to record a spec.json that was edited since).

Every byte is read once here, and checked (finite values, the digest) on the way:
a tensor with NaN or inf values is refused and nothing is published.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from .mapped import LEGACY, MANIFEST, SPEC_FILE, SnapshotWriter, load_tensors, read_manifest
from .spec import ModelSpec, SpecError
from .tensors import NpzTensors, array_chunks


def convert_snapshot(source: str | Path, out: str | Path | None = None) -> tuple[Path, str]:
    """Write the snapshot at `source` in the mapped format at `out` (default: in place,
    replacing its weights.npz); (the folder written, what was done)."""
    source = Path(source)
    target = Path(out) if out is not None else source
    spec_path = source / SPEC_FILE
    if not spec_path.is_file():
        raise SpecError(f"{source}: no {SPEC_FILE} (is this a model snapshot?)")
    spec = ModelSpec.load(spec_path)
    if (source / MANIFEST).is_file():
        recorded = read_manifest(source)["spec_sha256"]
        if target.resolve() == source.resolve() and recorded == hashlib.sha256(spec_path.read_bytes()).hexdigest():
            return target, "already in the mapped format"
        tensors = load_tensors(source)
        _check_names(spec, {name: tuple(array.shape) for name, array in tensors.items()}, source / MANIFEST)
        _write(target, spec, lambda name: array_chunks(tensors[name]))
        return target, "written again from the mapped format" + (
            " (spec.json recorded)" if target.resolve() == source.resolve() else ""
        )
    if not (source / LEGACY).is_file():
        raise SpecError(f"{source}: no {MANIFEST} or {LEGACY} to convert")
    npz = NpzTensors(source / LEGACY)
    try:
        _check_names(spec, {name: npz.shape(name) for name in npz.headers}, source / LEGACY)
        _write(target, spec, npz.chunks)
    finally:
        npz.close()
    return target, f"converted from {LEGACY}"


def _check_names(spec: ModelSpec, shapes: dict[str, tuple[int, ...]], where: Path) -> None:
    expected = spec.weight_shapes()
    missing = [name for name in expected if name not in shapes]
    if missing:
        raise SpecError(f"{where}: missing tensor {missing[0]} (the spec needs shape {expected[missing[0]]})")
    extra = sorted(set(shapes) - set(expected))
    if extra:
        raise SpecError(f"{where}: tensor {extra[0]} is not in the spec")
    for name, shape in expected.items():
        if shapes[name] != shape:
            raise SpecError(f"{where}: {name} has shape {shapes[name]}, the spec says {shape}")


def _write(target: Path, spec: ModelSpec, chunks) -> None:
    with SnapshotWriter(target, spec) as writer:
        for name in spec.weight_shapes():
            writer.write(name, chunks(name))
        writer.refuse_nonfinite()
        writer.commit()
