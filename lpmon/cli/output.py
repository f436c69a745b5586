"""What every command prints: its result on stdout (--json or text), remarks on stderr, its exit code."""

from __future__ import annotations

import json
import sys

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_DEGRADED = 0, 1, 2, 3


def emit(args, data, text: str | list[str] | None = None) -> None:
    """The command's result: JSON (--json) or its text lines, on stdout."""
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
    elif text is not None:
        print(text if isinstance(text, str) else "\n".join(text))


def note(args, text: str) -> None:
    """A remark on stderr (not with -q)."""
    if not args.quiet:
        print(text, file=sys.stderr)
