"""One tensor as one .npy file: written chunk by chunk (its content digest and finite
check computed on the way, so that nothing reads every byte again), mapped read-only
with its header checked, and streamed out of a legacy weights.npz.

Bounded memory: a chunk is about CHUNK_BYTES whatever the tensor's size.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np

from .spec import SpecError

CHUNK_BYTES = 32 << 20
DTYPE = np.dtype("<f4")  # every tensor of a snapshot: float32, little-endian, C order


@dataclass(frozen=True)
class TensorRecord:
    """What writing a tensor found: its shape, the sha256 of its data bytes (C order,
    little-endian float32: the same digest whatever file holds them) and how many of
    its values were NaN or inf."""

    shape: tuple[int, ...]
    sha256: str
    nonfinite: int

    def to_json(self, file: str) -> dict:
        return {
            "file": file,
            "shape": list(self.shape),
            "dtype": "float32",
            "sha256": self.sha256,
            "finite": self.nonfinite == 0,
            "nonfinite": self.nonfinite,
        }


def chunk_rows(shape: tuple[int, ...], itemsize: int = DTYPE.itemsize) -> int:
    """Rows (along the first axis) per chunk of about CHUNK_BYTES."""
    row = itemsize * int(np.prod(shape[1:], dtype=np.int64))
    return max(1, CHUNK_BYTES // max(row, 1))


def maps_a_file(array: np.ndarray) -> bool:
    """A np.memmap of a whole .npy's data (not a view of one): its rows can be read from the file."""
    return isinstance(array, np.memmap) and isinstance(array.base, mmap.mmap) and array.flags.c_contiguous


def file_of(array: np.ndarray) -> tuple[str, int]:
    """The file a mapped array (maps_a_file) reads, and the offset of its data there."""
    mapped = cast(np.memmap, array)
    return str(mapped.filename), int(mapped.offset)


def array_chunks(array: np.ndarray) -> Iterator[np.ndarray]:
    """The array in row chunks: views of an in-memory array (never copied whole); from a
    mapped file, ordinary reads (pages read through the mapping would stay resident in the
    process, up to the tensor's size)."""
    step = chunk_rows(array.shape, max(array.dtype.itemsize, DTYPE.itemsize))
    if not maps_a_file(array):
        for start in range(0, max(len(array), 1), step):
            yield array[start : start + step]
        return
    filename, offset = file_of(array)
    with open(filename, "rb") as handle:
        handle.seek(offset)
        for start in range(0, len(array), step):
            chunk = np.empty((min(step, len(array) - start), *array.shape[1:]), array.dtype)
            if handle.readinto(chunk.data.cast("B")) != chunk.nbytes:
                raise SpecError(f"{filename}: ends before row {start + len(chunk)}")
            yield chunk


def collect(shape: tuple[int, ...], chunks: Iterable[np.ndarray]) -> np.ndarray:
    """Row chunks gathered into one float32 array in memory (no list of chunks kept)."""
    array, start = np.empty(shape, np.float32), 0
    for chunk in chunks:
        array[start : start + len(chunk)] = chunk
        start += len(chunk)
    return array


def read_rows(array: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """array[ids] (rows of a 2-D tensor), read from the file with pread when the array maps
    one (a np.memmap of a whole .npy): a lookup through the mapping maps the kernel's
    fault-around (64 KB) around every row it touches, so the process's resident pages
    grow by up to 64 KB per row read instead of the row's size."""
    if not maps_a_file(array):
        return np.asarray(array[ids])
    out = np.empty((len(ids), *array.shape[1:]), array.dtype)
    row = array.strides[0]
    buffer = out.data.cast("B")
    filename, offset = file_of(array)
    try:
        handle = open(filename, "rb")
    except FileNotFoundError:
        raise SpecError(f"{filename}: gone (the snapshot was rewritten while it was read): rerun the day") from None
    with handle:
        descriptor = handle.fileno()
        for i, index in enumerate(np.asarray(ids, dtype=np.int64).tolist()):
            if not 0 <= index < len(array):
                raise IndexError(f"row {index} is outside the tensor's {len(array)} rows")
            if os.preadv(descriptor, [buffer[i * row : (i + 1) * row]], offset + index * row) != row:
                raise SpecError(f"{filename}: ends before row {index}")
    return out


def count_nonfinite(array: np.ndarray) -> int:
    """NaN and inf values, counted chunk by chunk (no full-size boolean temporary)."""
    if array.dtype.kind != "f":
        return 0
    return sum(int(np.count_nonzero(~np.isfinite(chunk))) for chunk in array_chunks(array))


def write_tensor(path: Path, shape: tuple[int, ...], chunks: Iterable[np.ndarray], name: str) -> TensorRecord:
    """Write an .npy of `shape` from row chunks (any float dtype: stored as float32);
    fsynced. The file must not exist yet (a snapshot's tensor files are never rewritten)."""
    shape = tuple(int(s) for s in shape)
    digest, nonfinite, rows = hashlib.sha256(), 0, 0
    with open(path, "xb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": DTYPE.str, "fortran_order": False, "shape": shape})
        for chunk in chunks:
            chunk = np.ascontiguousarray(chunk, dtype=DTYPE)
            if chunk.shape[1:] != shape[1:] or rows + len(chunk) > shape[0]:
                raise SpecError(f"{name}: a chunk of shape {chunk.shape} does not fit the tensor's shape {shape}")
            data = chunk.data.cast("B")
            digest.update(data)
            handle.write(data)
            nonfinite += int(np.count_nonzero(~np.isfinite(chunk)))
            rows += len(chunk)
        if rows != shape[0]:
            raise SpecError(f"{name}: {rows} rows written, the tensor has {shape[0]}")
        handle.flush()
        os.fsync(handle.fileno())
    return TensorRecord(shape, digest.hexdigest(), nonfinite)


def read_header(handle, where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of the .npy at the handle's position."""
    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(handle)
        if version == (2, 0):
            return np.lib.format.read_array_header_2_0(handle)
        raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, EOFError, SyntaxError) as err:
        raise SpecError(f"{where}: not a .npy file ({err})") from None


def map_tensor(path: Path, name: str, shape: tuple[int, ...]) -> np.memmap:
    """The .npy at path, mapped read-only (no data byte is read), after checking that its
    header says float32, C order, `shape`, and that the file holds exactly that much data."""
    try:
        with open(path, "rb") as handle:
            header = read_header(handle, f"{path} ({name})")
            offset, size = handle.tell(), os.fstat(handle.fileno()).st_size
    except FileNotFoundError:
        raise
    except OSError as err:
        raise SpecError(f"{path} ({name}): cannot be read: {err}") from None
    found, fortran, dtype = header
    if dtype != DTYPE or fortran or tuple(found) != tuple(shape):
        raise SpecError(
            f"{path}: {name}'s header says {dtype} {'Fortran' if fortran else 'C'} order shape {tuple(found)}, "
            f"the snapshot needs float32 C order shape {tuple(shape)}"
        )
    expected = offset + DTYPE.itemsize * int(np.prod(shape, dtype=np.int64))
    if size != expected:
        raise SpecError(
            f"{path}: {name} holds {size - offset} data bytes, its shape {tuple(shape)} needs {expected - offset}"
        )
    return np.memmap(path, dtype=DTYPE, mode="r", offset=offset, shape=tuple(shape))


class NpzTensors:
    """The tensors of a legacy weights.npz, streamed member by member in row chunks
    (a member is never read whole, but for a Fortran-order one)."""

    def __init__(self, path: Path):
        self.path = path
        if not zipfile.is_zipfile(path):
            raise SpecError(f"{path}: not an .npz archive (damaged, or another kind of file)")
        try:
            self.archive = zipfile.ZipFile(path)
            self.headers = {}
            for member in self.archive.namelist():
                if member.endswith(".npy"):
                    with self.archive.open(member) as handle:
                        self.headers[member.removesuffix(".npy")] = read_header(handle, f"{path}: {member}")
        except (OSError, EOFError, zipfile.BadZipFile, KeyError) as err:
            raise SpecError(f"{path}: a damaged .npz archive ({err})") from None
        for name, (_, _, dtype) in self.headers.items():
            if dtype.hasobject:
                raise SpecError(f"{path}: holds an object array (pickled data), which lpmon never loads")
            if dtype.kind not in "fiu":
                raise SpecError(f"{path}: {name} holds {dtype} values, not numbers")

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.headers[name][0])

    def chunks(self, name: str) -> Iterator[np.ndarray]:
        shape, fortran, dtype = self.headers[name]
        try:
            with self.archive.open(f"{name}.npy") as handle:
                read_header(handle, f"{self.path}: {name}")
                if fortran:
                    yield from array_chunks(np.lib.format.read_array(handle, allow_pickle=False))
                    return
                step, row_bytes = chunk_rows(shape, dtype.itemsize), dtype.itemsize * int(np.prod(shape[1:]))
                for start in range(0, shape[0], step):  # (the caller checked the shape against the spec)
                    count = min(step, shape[0] - start)
                    data = handle.read(count * row_bytes)
                    if len(data) != count * row_bytes:
                        raise SpecError(f"{self.path}: {name} ends early (a damaged .npz archive)")
                    yield np.frombuffer(data, dtype).reshape((count, *shape[1:]))
        except (OSError, EOFError, zipfile.BadZipFile) as err:
            raise SpecError(f"{self.path}: a damaged .npz archive ({err})") from None

    def close(self) -> None:
        self.archive.close()
