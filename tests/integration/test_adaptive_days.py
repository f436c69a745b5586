"""Adaptive sampling through run_day (lpmon.pipeline.adaptive): a close day scores more of
its own traffic in hash order, look by look, and records what it spent; a clear day
stops at sample_size; a rerun and a day sampled per file group score the same examples."""

import datetime as dt
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lpmon.config import load
from lpmon.metrics import compare
from lpmon.pipeline import open_store, run_day, split_day, steps
from lpmon.pipeline.daywork import DayWork
from lpmon.pipeline.run import report_day
from lpmon.policy import CLOSE_Z
from lpmon.store import init_store
from lpmon.traffic import TrafficSchema, TrafficStore, sample
from lpmon.verdict import SequentialGate
from lpmon.verdict.looks import Looks

DAY = dt.date(2026, 11, 1)
ROWS, FIRST = 40_000, 1_000


def write_traffic(root, rows=ROWS, seed=4):
    """One day of a logged-predictions model (p_q: p_ref's logit with noise)."""
    rng = np.random.default_rng(seed)
    logit = rng.normal(-1.5, 1.0, rows)
    ref = 1 / (1 + np.exp(-logit))
    served = 1 / (1 + np.exp(-(logit + rng.normal(0.0, 0.15, rows))))
    table = pa.table(
        {
            "request_id": rng.permutation(rows).astype(np.int64),
            "label": (rng.random(rows) < ref).astype(np.int8),
            "p_ref": ref.astype(np.float32),
            "p_q": served.astype(np.float32),
        }
    )
    TrafficStore(root / "traffic").write_day(DAY, table, rows_per_file=5_000)


def configure(root, gate: float, extra: str = ""):
    """The model's config (a fresh store) at `gate` %."""
    (root / "state.db").unlink(missing_ok=True)
    path = root / "lpmon.toml"
    path.write_text(
        f'store = "sqlite:///{root / "state.db"}"\n\n[defaults]\nsample_size = {FIRST}\nmin_examples = 500\n'
        f"min_positives = 50\ngate_pct = {gate}\n{extra}\n\n"
        f'[models.served]\ntraffic = "{root / "traffic"}"\nscorer = "logged"\n'
    )
    init_store(f"sqlite:///{root / 'state.db'}")
    return load(path, environ={})


def prefix_estimates(root, sizes):
    """(dNE, SE) of the day's hash-ordered sample at each size."""
    s = sample(TrafficStore(root / "traffic"), DAY, max(sizes), 0, TrafficSchema.logged("p_ref", "p_q"))
    out = []
    for n in sizes:
        c = compare(s.predictions["p_ref"][:n], s.predictions["p_q"][:n], s.labels[:n])
        out.append((c.dne_pct, (c.dne_pct_hi - c.dne_pct_lo) / (2 * 1.959964)))
    return out


def close_gate(root, sizes):
    """A gate under every look's estimate by less than DEGRADED needs: every look is close."""
    estimates = prefix_estimates(root, sizes)
    gate = min(dne - 0.6 * se for dne, se in estimates)
    assert all(CLOSE_Z < (dne - gate) / se < SequentialGate().single_look_z for dne, se in estimates), estimates
    return gate


def spent(config):
    store = open_store(config)
    row = store.run("served", str(DAY))
    return row["sample_size"], row["examples_scored"], row["looks"], row["stop_reason"]


def test_a_clear_day_scores_its_sample_and_stops(tmp_path):
    write_traffic(tmp_path)
    config = configure(tmp_path, gate=5.0)
    result = run_day(config, "served", DAY)
    assert result.status == "HEALTHY"
    assert (result.examples_scored, result.looks, result.stop_reason) == (FIRST, 1, "decided")
    assert spent(config) == (FIRST, FIRST, 1, "decided")


@pytest.mark.parametrize(
    "cap, rows, seed, reason", [(0, ROWS, 4, "cap"), (100_000, 6_000, 0, "traffic_exhausted")]
)  # (seeds whose every look is close at one gate)
def test_a_close_day_looks_again_up_to_the_cap_or_the_days_traffic(tmp_path, cap, rows, seed, reason):
    sizes = Looks.of(FIRST, min(cap or 10 * FIRST, rows), 1000).sizes
    write_traffic(tmp_path, rows, seed)
    config = configure(tmp_path, close_gate(tmp_path, sizes), f"max_sample_size = {cap}")
    result = run_day(config, "served", DAY)
    assert (result.examples_scored, result.looks, result.stop_reason) == (sizes[-1], len(sizes), reason)
    assert result.status == "WARN"
    assert spent(config) == (sizes[-1], sizes[-1], len(sizes), reason)
    # The day's verdict rests on every example it scored: the estimate of the whole prefix.
    assert result.dne_pct == pytest.approx(prefix_estimates(tmp_path, [sizes[-1]])[0][0], rel=1e-5)
    # A rerun scores the same examples.
    again = run_day(config, "served", DAY)
    assert (again.examples_scored, again.looks, again.dne_pct) == (result.examples_scored, result.looks, result.dne_pct)


def test_a_day_sampled_per_file_group_looks_again_in_the_same_hash_order(tmp_path):
    sizes = Looks.of(FIRST, 10 * FIRST, 1000).sizes
    write_traffic(tmp_path)
    gate = close_gate(tmp_path, sizes)
    whole = run_day(configure(tmp_path, gate), "served", DAY)
    config = configure(tmp_path, gate, "sample_split_rows = 10000")
    groups = split_day.plan(config, "served", str(DAY))
    assert groups == 4
    for group in range(groups):
        split_day.draw_group(config, "served", str(DAY), group)
    work = split_day.sample_step(config, DayWork("served", str(DAY)))
    for step in (steps.score_step, steps.compare_step):
        step(config, work)
    steps.decide_step(config, work)
    steps.record_step(config, work)
    split = report_day(config, work)
    assert (split.examples_scored, split.looks, split.stop_reason) == (whole.examples_scored, whole.looks, "cap")
    assert split.dne_pct == whole.dne_pct


def test_what_a_day_spent_is_in_the_reports_and_the_page(tmp_path, capsys):
    from lpmon.airflow.webapp import model_data
    from lpmon.cli import main
    from lpmon.report.day import build
    from lpmon.report.page import model_page
    from lpmon.report.render import render_html, render_text

    sizes = Looks.of(FIRST, 10 * FIRST, 1000).sizes
    write_traffic(tmp_path)
    config = configure(tmp_path, close_gate(tmp_path, sizes))
    toml = str(tmp_path / "lpmon.toml")
    assert main(["run", "--config", toml, "--model", "served", "--date", str(DAY), "--json", "--no-alerts"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["examples_scored"], data["looks"], data["stop_reason"]) == (10_000, len(sizes), "cap")
    assert main(["report", "--config", toml, "--model", "served", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["examples_scored"], row["looks"], row["stop_reason"]) == (10_000, len(sizes), "cap")
    store = open_store(config)
    report = build(config, store, "served", str(DAY))
    assert (report.examples_scored, report.looks, report.stop_reason) == (10_000, len(sizes), "cap")
    line = f"scored 10,000 examples in {len(sizes)} looks (stopped: cap)"
    assert f"sample:   {line}" in render_text(report)
    assert line in render_html(report, "")
    assert f"10,000 ({len(sizes)} looks, cap)" in model_page(model_data(config, store, "served"))
    # `lpmon score` gives the examples the day scored, as it scored them.
    out = tmp_path / "scores.parquet"
    assert main(["score", "--config", toml, "--model", "served", "--date", str(DAY), "--out", str(out)]) == 0
    assert pq.read_table(out).num_rows == 10_000


@pytest.mark.parametrize("start", [1_000, 1_001])
def test_the_new_rows_of_the_calibration_half_feed_the_observers(start):
    """The calibration half is the even rows of the whole scored sample: a look's new rows
    feed the observers exactly those, whatever the chunks and the parity of the start."""
    from lpmon.pipeline.adaptive import _CalibrationRows

    class Kept:
        def __init__(self):
            self.rows = []

        def observe(self, x):
            self.rows.append(x)

    fed = {"top_l.0": Kept()}
    feed = _CalibrationRows(fed, start)
    new = np.arange(start, 3 * start, dtype=np.float32)[:, None]
    for chunk in np.array_split(new, 7):
        feed("top_l.0", chunk)
    seen = np.concatenate(fed["top_l.0"].rows)[:, 0]
    np.testing.assert_array_equal(seen, [i for i in range(start, 3 * start) if i % 2 == 0])
