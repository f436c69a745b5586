"""Evidence across days through run_day: small traffic with defaults, segments, bad segment columns."""

import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lpmon.config import load
from lpmon.pipeline import open_store, run_day
from lpmon.policy import VERDICTS
from lpmon.store import init_store
from lpmon.demo.world import COUNTRIES, WorldConfig, write_world

START = dt.date(2026, 11, 1)


def small_world(tmp_path, days, per_day, extra=""):
    write_world(tmp_path, WorldConfig("stable", days=days, seed=3, examples_per_day=per_day))
    text = (tmp_path / "lpmon.toml").read_text()
    store = f"sqlite:///{tmp_path / 'lpmon.db'}"
    (tmp_path / "lpmon.toml").write_text(f'store = "{store}"\n\n[defaults]\n{extra}\n\n' + text.split("\n", 1)[1])
    init_store(store)
    return load(tmp_path / "lpmon.toml", environ={})


@pytest.mark.slow
def test_small_traffic_with_defaults_gets_verdicts_and_no_false_alarm(tmp_path):
    """2,500 labelled examples a day, every setting at its default: a harmless int8 plan."""
    config = small_world(tmp_path, 10, 2_500)
    results = [run_day(config, "stable", START + dt.timedelta(days=i)) for i in range(10)]
    statuses = [r.status for r in results]
    assert "DEGRADED" not in statuses, statuses
    onboarded = next(i for i, r in enumerate(results) if r.plan_version is not None)
    assert onboarded <= 3, [r.message for r in results]
    # From the plan's third day on, the pooled window gives every day a verdict.
    assert all(s in VERDICTS for s in statuses[onboarded + 2:]), [r.message for r in results]
    assert any("3 days (" in r.message for r in results[onboarded:])
    assert {r.plan_version for r in results[onboarded:]} == {results[onboarded].plan_version}


def test_segments_are_computed_stored_and_named(tmp_path):
    config = small_world(tmp_path, 2, 30_000, 'segments = ["country"]\nsample_size = 30000')
    result = run_day(config, "stable", START)
    store = open_store(config)
    segments = store.segment_metrics("stable", str(START))
    assert [s["segment"] for s in segments] == [f"country={c}" for c in COUNTRIES]
    assert sum(s["n"] for s in segments) == 30_000
    overall = [r for r in store.rows("run_metrics", "stable") if r["segment"] == ""]
    assert len(overall) == 1 and overall[0]["n"] == 30_000
    assert result.status in VERDICTS
    # The page's last day shows the verdict's reasons and the segment table.
    from lpmon.airflow.webapp import model_data
    from lpmon.report.page import model_page

    page = model_page(model_data(config, store, "stable"))
    assert 'id="segments"' in page and page.count('class="segment-row"') == len(COUNTRIES)
    assert "country=DE" in page and result.message.split(";")[-1].strip()[:20] in page


def test_a_missing_or_bad_segment_column_is_named(tmp_path):
    config = small_world(tmp_path, 2, 3_000, 'segments = ["surface"]')
    result = run_day(config, "stable", START)
    assert result.status == "failed" and "missing column surface" in result.message
    day = START + dt.timedelta(days=1)
    partition = next((tmp_path / "traffic" / "stable").glob(f"*{day}*"))
    for path in partition.glob("*.parquet"):
        table = pq.read_table(path)
        pq.write_table(table.append_column("surface", pa.array([0.5] * table.num_rows)), path)
    result = run_day(config, "stable", day)
    assert result.status == "failed" and "segment column surface has type double" in result.message


def test_segment_settings_are_checked(tmp_path):
    from lpmon.config import ConfigError

    with pytest.raises(ConfigError, match="segments: traffic column names"):
        small_world(tmp_path, 1, 500, 'segments = ["label"]')


def test_segment_codes_survive_between_airflow_tasks(tmp_path):
    import numpy as np

    from lpmon.pipeline.daywork import DayWork

    work = DayWork("m", "2026-11-01", segment_values={"country": ["DE", "US"]},
                   segment_codes={"country": np.array([0, 1, 1], np.int32)}, labels=np.array([0, 1, 0], np.uint8))
    work.save(tmp_path)
    back = DayWork.load(tmp_path, "m", "2026-11-01")
    assert back.segment_values == {"country": ["DE", "US"]}
    assert back.segment_codes["country"].tolist() == [0, 1, 1]
