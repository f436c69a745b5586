"""The config file and the paths it configures: where the file is, its text
(read without hanging on a FIFO or a device), and names confined to the
configured roots."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from lpmon.config.settings import MAX_CONFIG_BYTES, ConfigError


def confined(root: Path, *parts: str) -> Path:
    """root/parts..., refused unless it stays inside root: model ids and days name
    folders under the configured roots, and a hostile one (../, an absolute
    path) must not write elsewhere, whatever checked it before."""
    base = Path(root).resolve()
    if any(not part or "\0" in part for part in parts):
        raise ConfigError(f"{'/'.join(parts)!r}: not a name under {base}")
    path = base.joinpath(*parts).resolve()
    if not path.is_relative_to(base) or path == base:
        raise ConfigError(f"{'/'.join(parts)!r}: not a name under {base}")
    return path


def default_path() -> Path:
    return Path(os.environ.get("LPMON_CONFIG", "lpmon.toml"))


def read_text(path: Path) -> str:
    """A config file's text: a regular file (not a directory, device or FIFO,
    which could hang or exhaust memory) of at most MAX_CONFIG_BYTES, UTF-8."""
    try:
        with open(path, "rb", opener=_open_nonblocking) as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ConfigError(f"{path}: not a regular file (a config is a TOML file)")
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file (set --config or LPMON_CONFIG)") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: a directory, not a config file (set --config or LPMON_CONFIG)") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot be read ({err.strerror or err})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES:,} bytes: not an lpmon config")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start})") from None


def _open_nonblocking(path, flags):
    """Open without blocking on a FIFO (its check then refuses it)."""
    return os.open(path, flags | os.O_NONBLOCK)
