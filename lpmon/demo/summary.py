"""The demo's outcome table, read from the store, and the README's copy of it.

One function (`outcome_table`) writes the table the demo prints, saves as
demo-summary.md and the README shows between its demo-table markers; the
README's copy is checked against a run (`lpmon demo --check-readme README.md`,
which CI runs) and rewritten from one (`--update-readme README.md`), so the
README never tells another story than the demo's.
"""

from __future__ import annotations

import datetime as dt
import difflib
from pathlib import Path

from lpmon.atomic import write_atomically

START_MARK = "<!-- demo-table:start -->"
END_MARK = "<!-- demo-table:end -->"
COLUMNS = ("day", "model", "examples", "dNE %", "95 % interval", "status", "decision", "plan")


class ReadmeError(ValueError):
    """The README has no single, well-formed demo-table block."""


def outcome_table(store, models, days: list[dt.date], sizes: str) -> str:
    """The days that did something, as a Markdown table, oldest first.

    A row for every model-day that was not HEALTHY and recorded under an
    unchanged plan (onboardings, WARN, DEGRADED, actions, INSUFFICIENT_DATA,
    failures) and for each model's last day; a closing line counts the rest.
    sizes: the run's sizes, said above the table so a run at other sizes shows
    in the diff.
    """
    lines = [
        f"Outcome of `lpmon demo` ({sizes}):",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|---|---|--:|--:|--:|---|---|---|",
    ]
    quiet = 0
    for day in days:
        for model_id in models:
            summary = store.day_summary(model_id, str(day))
            if summary is None or _eventful(summary) or day == days[-1]:
                lines.append(_row(model_id, str(day), summary))
            else:
                quiet += 1
    lines += ["", f"The other {quiet} model-days were HEALTHY and recorded under an unchanged plan."]
    return "\n".join(lines) + "\n"


def _eventful(summary) -> bool:
    changed = summary.new_plan_version is not None and summary.new_plan_version != summary.plan_version
    return summary.status != "HEALTHY" or (summary.action or "RECORD") != "RECORD" or changed


def _row(model_id: str, day: str, summary) -> str:
    if summary is None:
        cells = [day, model_id, "-", "-", "-", "no run", "-", "-"]
    else:
        measured = summary.dne_pct is not None
        cells = [
            day,
            model_id,
            f"{summary.n:,}" if summary.n is not None else "-",
            f"{summary.dne_pct:.3f}" if measured else "-",
            f"[{summary.dne_pct_lo:.3f}, {summary.dne_pct_hi:.3f}]" if measured else "-",
            summary.status,
            summary.action or "-",
            plan_cell(summary),
        ]
    return "| " + " | ".join(cells) + " |"


def plan_cell(summary) -> str:
    """The plan a day was judged under, and the one it promoted: "v1", "v1 -> v2", "fp32"."""
    plan = f"v{summary.plan_version}" if summary.plan_version else "fp32"
    if summary.new_plan_version and summary.new_plan_version != summary.plan_version:
        plan += f" -> v{summary.new_plan_version}"  # an onboarding day is judged under the plan it made
    return plan


def readme_table(text: str, name: str = "README.md") -> str:
    """The text between the README's demo-table markers (a ReadmeError naming the file if
    the markers are missing, repeated or out of order)."""
    start, end = _block(text, name)
    return text[start:end].strip("\n") + "\n"


def with_table(text: str, table: str, name: str = "README.md") -> str:
    """The README with `table` between its markers (everything else unchanged)."""
    start, end = _block(text, name)
    return text[:start] + "\n" + table.strip("\n") + "\n" + text[end:]


def table_diff(readme: str, table: str, name: str = "README.md") -> str:
    """A unified diff from the README's table to the run's ("" when they agree)."""
    return "".join(
        difflib.unified_diff(
            readme_table(readme, name).splitlines(keepends=True),
            table.splitlines(keepends=True),
            fromfile=f"{name} (demo table)",
            tofile="this run",
        )
    )


def check_readme(path: Path, table: str) -> str:
    """'' when README `path` shows `table`, else the diff (a ReadmeError for a bad README)."""
    return table_diff(path.read_text(), table, str(path))


def update_readme(path: Path, table: str) -> None:
    """Rewrite README `path` with `table` between its markers (whole or not at all)."""
    write_atomically(path, with_table(path.read_text(), table, str(path)).encode())


def readable_readme(path: Path) -> str:
    """ "" when README `path` can be checked or updated, else why not (asked before a run,
    not after its minutes)."""
    try:
        readme_table(path.read_text(), str(path))
    except (OSError, UnicodeDecodeError) as err:
        return f"{path}: cannot read it ({err.__class__.__name__}: {err})"
    except ReadmeError as err:
        return str(err)
    return ""


def _block(text: str, name: str) -> tuple[int, int]:
    for mark in (START_MARK, END_MARK):
        if text.count(mark) != 1:
            raise ReadmeError(f"{name}: expected one {mark} line, found {text.count(mark)}")
    start, end = text.index(START_MARK) + len(START_MARK), text.index(END_MARK)
    if end < start:
        raise ReadmeError(f"{name}: {END_MARK} comes before {START_MARK}")
    return start, end
