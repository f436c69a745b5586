"""The mapped snapshot format: tensors memory-mapped from disk, never loaded.

    spec.json                          the architecture (lpmon.model.spec)
    weights.json                       the manifest: per tensor its shape, dtype, sha256 digest
                                       and finite check, and the sha256 of the spec it was written with
    weights/<generation>/<tensor>.npy  one float32 .npy per tensor (DLRM state-dict names)

One .npy per tensor because np.load(mmap_mode="r") maps it with no new dependency, any
tool reads it, and it can be written tensor by tensor, chunk by chunk. The checks that
read every byte (finite values, the digest) run once, while a tensor is written, and are
recorded in the manifest; loading reads headers only.

A writer puts its tensors in a fresh generation folder that nothing names yet, then,
under the snapshot's lock, replaces spec.json and the manifest (each atomically: the
manifest is the commit point) and removes the generations no manifest names and the
folders of writers that died. Readers take the lock shared while they read spec.json
and the manifest and map the files, so a reader sees the old snapshot or the new one,
never a mixture; a mapping outlives the removal of its file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from lpmon.atomic import TEMP_SUFFIX, write_atomically

from .spec import ModelSpec, SpecError
from .tensors import TensorRecord, map_tensor, write_tensor

FORMAT = "lpmon-snapshot/1"
SPEC_FILE, MANIFEST, FOLDER, LEGACY = "spec.json", "weights.json", "weights", "weights.npz"
LOCK = ".lock"


@contextlib.contextmanager
def snapshot_lock(directory: Path, exclusive: bool):
    """The snapshot's lock (weights/.lock): exclusive for a commit, shared for a read.
    A reader that cannot create it (a read-only folder, or no commit yet) goes without."""
    path = directory / FOLDER / LOCK
    try:
        handle = open(path, "a+" if exclusive else "r")
    except OSError:
        if exclusive:
            raise
        yield
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        except OSError:  # a filesystem without flock: writers need it, readers go without
            if exclusive:
                raise
        yield


class SnapshotWriter:
    """Writes a snapshot tensor by tensor; commit() publishes it whole.

        with SnapshotWriter(directory, spec) as writer:
            table = writer.write("emb_l.0.weight", chunks)   # read-only map of what was written
            ...
            writer.commit()

    Leaving the block without commit() (an error) removes what was written.
    """

    def __init__(self, directory: str | Path, spec: ModelSpec):
        self.directory, self.spec = Path(directory), spec
        self.shapes = spec.weight_shapes()
        self.records: dict[str, TensorRecord] = {}
        self.maps: dict[str, np.memmap] = {}
        (self.directory / FOLDER).mkdir(parents=True, exist_ok=True)
        self.generation = time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(4)
        self.staging = self.directory / FOLDER / f".{self.generation}{TEMP_SUFFIX}"
        with snapshot_lock(self.directory, exclusive=True):  # so that no commit's clean-up takes it for dead
            self.staging.mkdir()
            self._alive = open(self.staging / LOCK, "w")
            fcntl.flock(self._alive, fcntl.LOCK_EX)  # held while this writer lives
        self.committed = False

    def __enter__(self) -> "SnapshotWriter":
        return self

    def __exit__(self, kind, error, trace) -> None:
        if not self.committed:
            self.abort()

    def path(self, name: str) -> Path:
        return self.staging / f"{name}.npy"

    def write(self, name: str, chunks: Iterable[np.ndarray]) -> np.memmap:
        """Write one tensor from its row chunks, recording its digest and finite check."""
        if name not in self.shapes:
            raise SpecError(f"weights: tensor {name} is not in the spec")
        if name in self.records:
            raise SpecError(f"weights: tensor {name} written twice")
        self.records[name] = write_tensor(self.path(name), self.shapes[name], chunks, name)
        self.maps[name] = map_tensor(self.path(name), name, self.shapes[name])
        return self.maps[name]

    def checked(self) -> dict[str, str]:
        """Model(checked=...) for the maps write() returned: the files found finite."""
        return {name: str(array.filename) for name, array in self.maps.items() if not self.records[name].nonfinite}

    def refuse_nonfinite(self) -> None:
        """For a writer that must not publish NaN or inf (an import, a conversion): a
        SpecError naming the tensor; the block then removes what was written."""
        for name, record in self.records.items():
            if record.nonfinite:
                raise SpecError(f"weights: {name} has {record.nonfinite} NaN or inf values")

    def commit(self) -> Path:
        """Publish spec.json and the manifest; remove what no manifest names any more."""
        missing = [name for name in self.shapes if name not in self.records]
        if missing:
            raise SpecError(f"weights: missing tensor {missing[0]} (expected shape {self.shapes[missing[0]]})")
        spec_text = self.spec.to_json().encode()
        manifest = {
            "format": FORMAT,
            "folder": f"{FOLDER}/{self.generation}",
            "spec_sha256": hashlib.sha256(spec_text).hexdigest(),
            "tensors": {name: self.records[name].to_json(f"{name}.npy") for name in self.shapes},
        }
        with snapshot_lock(self.directory, exclusive=True):
            (self.staging / LOCK).unlink()
            os.rename(self.staging, self.directory / FOLDER / self.generation)
            write_atomically(self.directory / SPEC_FILE, spec_text)
            write_atomically(self.directory / MANIFEST, manifest_text(manifest).encode())
            (self.directory / LEGACY).unlink(missing_ok=True)  # replaced by this snapshot
            remove_unused(self.directory, keep=self.generation)
        self.committed = True
        self._alive.close()
        return self.directory

    def abort(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
        self._alive.close()


def manifest_text(manifest: dict) -> str:
    """The manifest as JSON, one line per tensor (readable, and diffs well)."""
    head = {key: value for key, value in manifest.items() if key != "tensors"}
    lines = [f"  {json.dumps(name)}: {json.dumps(entry)}" for name, entry in manifest["tensors"].items()]
    return (
        json.dumps(head, indent=2)[:-2]
        + ',\n  "tensors": {\n'
        + ",\n".join(f"  {line}" for line in lines)
        + "\n  }\n}\n"
    )


def remove_unused(directory: Path, keep: str) -> None:
    """Generations other than `keep`, and staging folders whose writer died (its lock is free).
    Called under the snapshot's exclusive lock."""
    for entry in (directory / FOLDER).iterdir():
        if not entry.is_dir() or entry.name == keep:
            continue
        if entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX):
            try:
                with open(entry / LOCK) as alive:
                    fcntl.flock(alive, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except FileNotFoundError:
                pass  # a writer that died before it took its lock
            except BlockingIOError:
                continue  # a writer at work
        shutil.rmtree(entry, ignore_errors=True)


def read_manifest(directory: Path) -> dict:
    """weights.json, its structure checked; a SpecError names the file and the field."""
    path = directory / MANIFEST
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SpecError(f"{path}: not valid JSON: {err}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise SpecError(f"{path}: not an lpmon snapshot manifest (format {found!r}, expected {FORMAT!r})")
    for field, kind in (("folder", str), ("spec_sha256", str), ("tensors", dict)):
        if not isinstance(data.get(field), kind):
            raise SpecError(f"{path}: field {field!r} missing or not a {kind.__name__}")
    parts = data["folder"].split("/")
    if len(parts) != 2 or parts[0] != FOLDER or parts[1] in ("", ".", ".."):
        raise SpecError(f"{path}: folder must be {FOLDER}/<generation>, got {data['folder']!r}")
    for name, entry in data["tensors"].items():
        ok = isinstance(entry, dict) and isinstance(entry.get("file"), str) and isinstance(entry.get("shape"), list)
        ok = ok and isinstance(entry.get("sha256"), str) and isinstance(entry.get("nonfinite"), int)
        ok = ok and all(isinstance(n, int) and not isinstance(n, bool) for n in entry["shape"])
        if not ok or "/" in entry["file"] or entry["file"] in (".", "..") or entry.get("dtype") != "float32":
            raise SpecError(f"{path}: tensor {name}: expected file, shape, dtype float32, sha256 and nonfinite")
    return data


def load_mapped(directory: Path) -> tuple[ModelSpec, dict[str, np.memmap]]:
    """The spec and its tensors mapped read-only: headers are read, data bytes are not.
    Refuses a spec.json the manifest was not written with, a tensor the manifest recorded
    with NaN or inf values, and a file whose header disagrees with the manifest or spec."""
    with snapshot_lock(directory, exclusive=False):
        spec_text = (directory / SPEC_FILE).read_bytes()
        manifest = read_manifest(directory)
        if hashlib.sha256(spec_text).hexdigest() != manifest["spec_sha256"]:
            raise SpecError(
                f"{directory / SPEC_FILE}: not the spec {MANIFEST} was written with (edited, or a write was "
                f"interrupted): check it, then record it with `lpmon convert-snapshot {directory}`"
            )
        spec = ModelSpec.from_json(spec_text.decode(), source=str(directory / SPEC_FILE))
        expected, tensors = spec.weight_shapes(), manifest["tensors"]
        where = directory / MANIFEST
        missing = [name for name in expected if name not in tensors]
        if missing:
            raise SpecError(f"{where}: missing tensor {missing[0]} (the spec needs shape {expected[missing[0]]})")
        extra = sorted(set(tensors) - set(expected))
        if extra:
            raise SpecError(f"{where}: tensor {extra[0]} is not in the spec")
        for name, shape in expected.items():
            if tuple(tensors[name]["shape"]) != shape:
                raise SpecError(f"{where}: {name} has shape {tuple(tensors[name]['shape'])}, the spec says {shape}")
        return spec, map_manifest(directory, manifest)


def map_manifest(directory: Path, manifest: dict) -> dict[str, np.memmap]:
    """Every tensor the manifest names, mapped read-only after its header is checked
    against the manifest; one it recorded with NaN or inf values is refused."""
    weights = {}
    for name, entry in manifest["tensors"].items():
        if entry["nonfinite"]:
            bad = entry["nonfinite"]
            raise SpecError(f"{directory / MANIFEST}: {name} had {bad} NaN or inf values when the snapshot was written")
        path = directory / manifest["folder"] / entry["file"]
        try:
            weights[name] = map_tensor(path, name, tuple(entry["shape"]))
        except FileNotFoundError:
            raise SpecError(f"{path}: missing ({name}, named by {MANIFEST})") from None
    return weights


def load_tensors(directory: Path) -> dict[str, np.memmap]:
    """The tensors as the manifest records them, whatever spec.json says now (to record it again)."""
    with snapshot_lock(directory, exclusive=False):
        return map_manifest(directory, read_manifest(directory))


def mapped_digest(directory: Path) -> str:
    """A content hash from spec.json and the manifest's tensor digests: no tensor byte is read."""
    with snapshot_lock(directory, exclusive=False):
        spec_text = (directory / SPEC_FILE).read_bytes()
        manifest = read_manifest(directory)
    digest = hashlib.sha256(FORMAT.encode() + b"\n" + spec_text)
    for name in sorted(manifest["tensors"]):
        entry = manifest["tensors"][name]
        digest.update(f"\n{name} {entry['shape']} {entry['dtype']} {entry['sha256']}".encode())
    return digest.hexdigest()[:16]
