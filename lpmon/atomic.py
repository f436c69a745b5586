"""Files written for other processes (serving's plans, model snapshots): whole
or not at all (a temporary file beside the target, then a rename), with the
umask's permissions (0644 under the usual umask 022) or a configured mode,
never the 0600 of a bare temporary file, and no temporary file left behind
when the write fails."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

TEMP_SUFFIX = ".tmp"


def umask() -> int:
    """The process's umask, read without changing it where Linux allows."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


def default_mode() -> int:
    return 0o666 & ~umask()


def write_atomically(path: str | Path, data: bytes | memoryview, mode: int | None = None) -> Path:
    """Replace path with data; readers see the old file or the new one, never a part."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, default_mode() if mode is None else mode)
        os.replace(tmp, path)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(err, OSError) and err.filename is None and err.errno is not None:
            raise OSError(err.errno, err.strerror, str(path)) from None  # a full disk names no file by itself
        raise
    return path


def temp_files(folder: Path, name: str) -> list[Path]:
    """Temporary files write_atomically leaves for `name` when its process is killed mid-write."""
    return sorted(folder.glob(f".{name}.*{TEMP_SUFFIX}"))
