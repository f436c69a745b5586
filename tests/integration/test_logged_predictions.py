"""scorer = "logged": serving logs p_ref and p_q beside the label; lpmon compares,
decides, records, alerts and shows the day without any model. Recalibration and
fallback are not available: a DEGRADED day's alert says so and names its evidence."""

import datetime as dt
import re

import numpy as np
import pyarrow as pa
import pytest

from lpmon.config import ConfigError, load
from lpmon.pipeline import open_store, run_day
from lpmon.store import init_store
from lpmon.traffic import TrafficSchema, TrafficStore, sample
from lpmon.traffic.schema import TrafficError
from support.dags import run_dag

START = dt.date(2026, 11, 1)


def logged_day(day: int, n: int = 20_000, shift: float = 0.0, seed: int = 0, p_ref="p_ref", p_q="p_q") -> pa.Table:
    """Traffic of a model whose serving logs both predictions: p_q is p_ref with its
    logit moved by `shift` (0: the served model agrees)."""
    rng = np.random.default_rng([seed, day])
    logit = rng.normal(-3.0, 1.2, n)
    ref = 1 / (1 + np.exp(-logit))
    country = rng.choice(np.array(["DE", "FR", "US"]), n)
    worse = np.where(country == "DE", 2.0, 1.0)  # the served model is off most in one segment
    served = 1 / (1 + np.exp(-(logit + worse * shift * rng.normal(1.0, 0.5, n))))
    date = START + dt.timedelta(days=day)
    seconds = np.sort(rng.integers(0, 86_400, n))
    return pa.table(
        {
            "request_id": np.arange(n, dtype=np.int64) + day * 10**9,
            "ts": pa.array(np.datetime64(dt.datetime.combine(date, dt.time()), "s") + seconds),
            "label": (rng.random(n) < ref).astype(np.int8),
            p_ref: ref.astype(np.float32),
            p_q: served.astype(np.float32),
            "country": country,
        }
    )


def logged_world(root, days, extra="") -> "Path":  # noqa: F821
    store = TrafficStore(root / "traffic")
    for i, table in enumerate(days):
        store.write_day(START + dt.timedelta(days=i), table)
    path = root / "lpmon.toml"
    path.write_text(
        f'store = "sqlite:///{root / "state.db"}"\n\n'
        "[defaults]\nsample_size = 10000\nmin_examples = 1000\n"
        'recipients = ["oncall@example.com"]\n\n'
        f'[models.served]\ntraffic = "{root / "traffic"}"\nscorer = "logged"\n{extra}\n'
        '[airflow]\nstart_date = "2026-11-01"\ntask_retries = 0\nbase_url = "http://airflow.test"\n'
    )
    init_store(f"sqlite:///{root / 'state.db'}")
    return path


def test_config_needs_no_snapshot_and_checks_the_columns(tmp_path):
    path = logged_world(tmp_path, [], extra='p_ref_column = "fp32_score"\np_q_column = "served_score"\n')
    settings = load(path, environ={}).model("served")
    assert (settings.scorer, settings.snapshot, settings.p_ref_column) == ("logged", "", "fp32_score")
    path.write_text(
        path.read_text()
        .replace('scorer = "logged"', 'scorer = "logged"\np_q_column = "label"')
        .replace('p_q_column = "served_score"\n', "")
    )
    with pytest.raises(ConfigError, match="models.served.p_q_column: must name a prediction column"):
        load(path, environ={})
    path.write_text(path.read_text().replace('scorer = "logged"', 'scorer = "remote"'))
    with pytest.raises(ConfigError, match='scorer: must be "model" or "logged"') as err:
        load(path, environ={})
    assert "snapshot: required" in str(err.value)  # a model scorer needs its snapshot


@pytest.mark.parametrize(
    "bad, message",
    [
        ("nan", "column p_q has 3 rows with NaN (of 20000)"),
        ("above", "column p_q has 3 rows outside [0, 1] (of 20000): not probabilities"),
        ("missing", "missing column p_q"),
        ("text", "column p_q has type string, expected float probabilities"),
    ],
)
def test_bad_logged_predictions_are_named_like_any_bad_traffic(tmp_path, bad, message):
    table = logged_day(0)
    values = table.column("p_q").to_numpy().copy()
    if bad == "nan":
        values[[5, 50, 500]] = np.nan
    if bad == "above":
        values[[5, 50, 500]] = [1.5, -0.1, 2.0]
    column = pa.array(values) if bad != "text" else pa.array(values.astype(str))
    table = (
        table.drop(["p_q"])
        if bad == "missing"
        else table.set_column(table.schema.get_field_index("p_q"), "p_q", column)
    )
    store = TrafficStore(tmp_path)
    store.write_day(START, table)
    with pytest.raises(
        TrafficError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)")
    ):
        sample(store, START, 20_000, 0, TrafficSchema.logged("p_ref", "p_q"))  # all rows: all read and checked


def test_configurable_columns_through_the_library(tmp_path):
    path = logged_world(
        tmp_path,
        [logged_day(0, p_ref="ref_score", p_q="served_score")],
        extra='p_ref_column = "ref_score"\np_q_column = "served_score"\n',
    )
    result = run_day(load(path, environ={}), "served", START)
    assert result.status == "HEALTHY" and result.dne_pct == 0.0 and result.plan_version is None


@pytest.mark.slow
def test_logged_days_through_the_dag_healthy_then_degraded_with_its_evidence(dagbag, smtp_server, tmp_path):
    path = logged_world(tmp_path, [logged_day(0), logged_day(1, shift=0.5)], extra='segments = ["country"]\n')
    bag = dagbag(path)
    dr, states = run_dag(bag, "lpmon_monitor", START)
    assert dr.state == "success", states
    assert states[("monitor.record", 0)] == "success" and states[("monitor.recalibrate", 0)] == "skipped"
    dr, states = run_dag(bag, "lpmon_monitor", START + dt.timedelta(days=1))
    assert dr.state == "success", states
    assert states[("monitor.record", 0)] == "success"
    assert states[("monitor.recalibrate", 0)] == "skipped" and states[("monitor.fallback", 0)] == "skipped"
    config = load(path, environ={})
    store = open_store(config)
    runs = store.rows("runs", "served")
    assert [r["status"] for r in runs] == ["HEALTHY", "DEGRADED"] and runs[1]["plan_version"] is None
    decision = store.rows("decisions", "served")[-1]
    assert decision["action"] == "RECORD" and decision["new_plan_version"] is None
    assert store.rows("plans", "served") == []
    metrics = store.rows("run_metrics", "served")[-1]
    assert metrics["dne_pct_lo"] > 0.05
    # The one email: the degraded day, saying what lpmon cannot do and why it judged so.
    assert [m["X-Lpmon-Event"] for m in smtp_server.messages] == [f"served/{START + dt.timedelta(days=1)}/DEGRADED"]
    text = smtp_server.messages[0].get_body(("plain",)).get_content()
    assert "recalibration and fallback are not available" in text and 'scorer = "logged"' in text
    assert f"dNE {metrics['dne_pct']:.4f} % [{metrics['dne_pct_lo']:.4f}, {metrics['dne_pct_hi']:.4f}]" in text
    assert "mean |p_ref - p_q|" in text and "KL gap" in text and "calibration" in text
    assert "worst segments (of 3): country=DE dNE" in text
    report = config.work_dir / "reports" / "served" / f"{START + dt.timedelta(days=1)}.html"
    assert "recalibration and fallback are not available" in report.read_text()
    assert not (config.plans_dir / "served" / "active.json").exists()  # nothing to serve from lpmon
    # The lpmon page in the Airflow UI shows the model's days like any model's.
    from lpmon.airflow.webapp import model_data
    from lpmon.report.page import model_page

    page = model_page(model_data(config, store, "served"))
    assert "DEGRADED" in page and "HEALTHY" in page and f"{metrics['dne_pct']:.4f}" in page


def test_a_bad_logged_day_fails_naming_the_column(tmp_path):
    table = logged_day(0)
    values = table.column("p_ref").to_numpy().copy()
    values[::2] = np.nan  # (only the sampled rows are read: half of the 10,000 of them, about)
    path = logged_world(tmp_path, [table.set_column(table.schema.get_field_index("p_ref"), "p_ref", pa.array(values))])
    result = run_day(load(path, environ={}), "served", START)
    assert result.status == "failed" and re.search(r"column p_ref has \d{4} rows with NaN \(of 10000\)", result.message)


def test_score_writes_the_logged_predictions(tmp_path):
    import pyarrow.parquet as pq

    from lpmon.cli import main
    from lpmon.serving.scores import read_metadata

    table = logged_day(0)
    path = logged_world(tmp_path, [table])
    out = tmp_path / "scores.parquet"
    assert main(["score", "--config", str(path), "--model", "served", "--date", str(START), "--out", str(out)]) == 0
    scores = pq.read_table(out)
    assert scores.column_names == ["request_id", "label", "p_fp32", "p_q"] and scores.num_rows == 10_000
    assert read_metadata(out)["p_q"] == "logged"
    rows = {r: i for i, r in enumerate(table.column("request_id").to_numpy())}
    at = [rows[r] for r in scores.column("request_id").to_numpy()]
    np.testing.assert_array_equal(scores.column("p_q").to_numpy(), table.column("p_q").to_numpy()[at])
    np.testing.assert_array_equal(scores.column("p_fp32").to_numpy(), table.column("p_ref").to_numpy()[at])
    assert (
        main(["score", "--config", str(path), "--model", "served", "--date", str(START), "--fp32", "--out", str(out)])
        == 1
    )
