"""Progress for long CLI work, on stderr: a bar (rich) on a terminal; off a
terminal (a log, a pipe, cron) one plain line per unit of work, never lines
joined by carriage returns (or nothing, for `run`'s steps: its result line says
it all). Quiet (-q): nothing."""

from __future__ import annotations

import sys
from contextlib import contextmanager


def _is_terminal(stream) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)())


@contextmanager
def progress(total: int, description: str, stream=None, quiet: bool = False, plain: bool = True):
    """Yields advance(label): call it as each of `total` units of work starts.
    plain=False: nothing off a terminal (for steps too small to be worth a line each)."""
    stream = stream or sys.stderr
    if quiet or not (plain or _is_terminal(stream)):
        yield lambda label="": None
        return
    if not _is_terminal(stream):
        count = [0]

        def line(label: str = "") -> None:
            count[0] += 1
            print(f"{description}: {label + ' ' if label else ''}({count[0]}/{total})", file=stream, flush=True)

        yield line
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[label]}"),
        TimeElapsedColumn(),
        console=Console(file=stream),
        transient=True,
    )
    with bar:
        task = bar.add_task(description, total=total, label="")
        started = [False]

        def advance(label: str = "") -> None:
            bar.update(task, advance=1 if started[0] else 0, label=label)
            started[0] = True

        yield advance
        bar.update(task, completed=total)


class PlainLines:
    """A stream for code that redraws one status line with carriage returns
    (lpmon.demo.world): passed through on a terminal; elsewhere each redraw becomes
    its own line, and the closing newline is not doubled."""

    def __init__(self, stream=None, quiet: bool = False):
        self.stream, self.quiet = stream or sys.stderr, quiet
        self.terminal = _is_terminal(self.stream)
        self._open = False  # a line has been written without its newline

    def isatty(self) -> bool:
        return self.terminal

    def write(self, text: str) -> int:
        if self.quiet:
            return len(text)
        if self.terminal:
            return self.stream.write(text)
        for i, piece in enumerate(text.split("\r")):
            if i and self._open:  # a redraw: end the previous line instead
                self.stream.write("\n")
                self._open = False
            if piece == "\n" and not self._open:
                continue
            if piece:
                self.stream.write(piece)
                self._open = not piece.endswith("\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()
