"""The demo's outcome table from a real store, and the README's copy of it (markers, diff, rewrite)."""

import dataclasses
import datetime as dt

import numpy as np
import pytest

from lpmon import cli
from lpmon.demo import summary
from lpmon.metrics import compare
from lpmon.store import StateStore, init_store

DAYS = [dt.date(2026, 11, 1) + dt.timedelta(days=i) for i in range(3)]
SIZES = "3 days, 50,000 examples a day, a 10,000-example sample"
TABLE = """Outcome of `lpmon demo` (3 days, 50,000 examples a day, a 10,000-example sample):

| day | model | examples | dNE % | 95 % interval | status | decision | plan |
|---|---|--:|--:|--:|---|---|---|
| 2026-11-01 | a | 2,000 | 0.500 | [0.250, 0.750] | HEALTHY | ONBOARD | v1 |
| 2026-11-02 | a | 2,000 | 0.500 | [0.250, 0.750] | DEGRADED | FALLBACK | v1 -> v2 |
| 2026-11-02 | b | - | - | - | INSUFFICIENT_DATA | RECORD | fp32 |
| 2026-11-03 | a | 2,000 | 0.500 | [0.250, 0.750] | HEALTHY | RECORD | v2 |
| 2026-11-03 | b | - | - | - | no run | - | - |

The other 1 model-days were HEALTHY and recorded under an unchanged plan.
"""


@pytest.fixture
def store(tmp_path):
    url = f"sqlite:///{tmp_path / 'state.db'}"
    init_store(url)
    store = StateStore(url)
    yield store
    store.db.engine.dispose()


def record(store, model, day, status, action, plan, new_plan=None, measured=True):
    store.record_run(model, str(day), status, plan_version=plan)
    if measured:
        rng = np.random.default_rng(0)
        p = rng.uniform(0.05, 0.5, 2000)
        c = compare(p, p, (rng.random(2000) < p).astype(np.uint8))
        store.record_metrics(model, str(day), dataclasses.replace(c, dne_pct=0.5, dne_pct_lo=0.25, dne_pct_hi=0.75))
    store.record_decision(model, str(day), action, [], new_plan_version=new_plan)


def test_the_table_shows_every_day_that_did_something_and_each_last_day(store):
    for model in ("a", "b"):
        store.register_model(model)
    record(store, "a", DAYS[0], "HEALTHY", "ONBOARD", 1, new_plan=1)
    record(store, "b", DAYS[0], "HEALTHY", "RECORD", 1)  # quiet: counted, not shown
    record(store, "a", DAYS[1], "DEGRADED", "FALLBACK", 1, new_plan=2)
    record(store, "b", DAYS[1], "INSUFFICIENT_DATA", "RECORD", None, measured=False)
    record(store, "a", DAYS[2], "HEALTHY", "RECORD", 2)  # the last day: shown though quiet
    assert summary.outcome_table(store, ("a", "b"), DAYS, SIZES) == TABLE


README = f"""# x

intro

{summary.START_MARK}
old table
{summary.END_MARK}

after
"""


def test_the_readme_table_is_found_compared_and_rewritten(tmp_path):
    assert summary.readme_table(README) == "old table\n"
    diff = summary.table_diff(README, TABLE)
    assert diff.startswith("--- README.md (demo table)\n+++ this run\n") and "-old table\n" in diff
    assert "+| 2026-11-02 | a | 2,000 | 0.500 | [0.250, 0.750] | DEGRADED | FALLBACK | v1 -> v2 |\n" in diff
    path = tmp_path / "README.md"
    path.write_text(README)
    summary.update_readme(path, TABLE)
    text = path.read_text()
    assert summary.check_readme(path, TABLE) == ""
    assert text.startswith("# x\n\nintro\n\n") and text.endswith(f"{summary.END_MARK}\n\nafter\n")
    assert summary.with_table(text, TABLE) == text  # a second rewrite changes nothing


@pytest.mark.parametrize(
    "text, problem",
    [
        ("no markers", "README.md: expected one <!-- demo-table:start --> line, found 0"),
        (README + summary.START_MARK, "README.md: expected one <!-- demo-table:start --> line, found 2"),
        (f"{summary.END_MARK}\n{summary.START_MARK}", "README.md: <!-- demo-table:end --> comes before"),
    ],
)
def test_a_readme_without_one_marked_block_is_named(text, problem):
    with pytest.raises(summary.ReadmeError, match=problem):
        summary.readme_table(text)


def test_the_repository_readme_has_one_demo_table_of_the_generated_shape():
    from pathlib import Path

    table = summary.readme_table((Path(__file__).parents[3] / "README.md").read_text())
    assert table.startswith(
        "Outcome of `lpmon demo` (14 days, 50,000 examples a day, "
        "a first sample of 10,000, up to 50,000 on a close day):"
    )
    assert "| " + " | ".join(summary.COLUMNS) + " |" in table.splitlines()


def test_the_demo_refuses_a_readme_it_cannot_check_before_running(tmp_path, capsys):
    missing, unmarked = tmp_path / "nope.md", tmp_path / "README.md"
    unmarked.write_text("no table here\n")
    assert cli.main(["demo", "--root", str(tmp_path / "d"), "--check-readme", str(missing)]) == 1
    assert f"{missing}: cannot read it (FileNotFoundError" in capsys.readouterr().err
    assert cli.main(["demo", "--root", str(tmp_path / "d"), "--update-readme", str(unmarked)]) == 1
    assert f"{unmarked}: expected one <!-- demo-table:start --> line, found 0" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()  # refused before anything was written


def test_the_demo_fails_with_a_diff_when_the_readme_is_not_the_run(tmp_path, capsys):
    from lpmon import demo

    path = tmp_path / "README.md"
    path.write_text(README)
    assert not demo._readme_agrees(TABLE, path, None)
    err = capsys.readouterr().err
    assert f"lpmon demo: {path}'s demo table is not this run's:\n--- {path} (demo table)" in err and "-old table" in err
    assert demo._readme_agrees(TABLE, path, path)  # --update-readme then --check-readme: rewritten, so it agrees
    assert "demo table rewritten from this run" in capsys.readouterr().out
