"""Progress bars for long CLI work, on stderr and only when it is a terminal
(logs and pipes stay clean). rich draws them."""

from __future__ import annotations

import sys
from contextlib import contextmanager


@contextmanager
def progress(total: int, description: str, stream=None):
    """Yields advance(label): call it as each of `total` units of work starts."""
    stream = stream or sys.stderr
    if not stream.isatty():
        yield lambda label="": None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[label]}"), TimeElapsedColumn(),
                   console=Console(file=stream), transient=True)
    with bar:
        task = bar.add_task(description, total=total, label="")
        started = [False]

        def advance(label: str = "") -> None:
            bar.update(task, advance=1 if started[0] else 0, label=label)
            started[0] = True

        yield advance
        bar.update(task, completed=total)
