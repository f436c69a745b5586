"""A large day's sampling shared by workers (lpmon.pipeline.split_day): planned
only above sample_split_rows and for a complete partition, drawn per group,
collected only when every group is there (else the day is drawn whole)."""

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa

from lpmon.config import load
from lpmon.pipeline import split_day
from lpmon.traffic import TrafficSchema, TrafficStore, sample
from lpmon.traffic.sample import from_candidates

DAY = "2026-11-02"
SCHEMA = TrafficSchema.logged("p_ref", "p_q")


def world(tmp_path: Path, split_rows: int, airflow: str = ""):
    rng = np.random.default_rng(0)
    n = 9_000
    table = pa.table(
        {
            "request_id": rng.permutation(n).astype(np.int64),
            "label": (rng.random(n) < 0.2).astype(np.int8),
            "p_ref": rng.random(n).astype(np.float32),
            "p_q": rng.random(n).astype(np.float32),
        }
    )
    store = TrafficStore(tmp_path / "traffic")
    store.write_day(DAY, table, rows_per_file=2_000, row_group_rows=500)
    path = tmp_path / "lpmon.toml"
    path.write_text(
        f'[defaults]\nsample_size = 1000\nsample_split_rows = {split_rows}\n\n[models.m]\ntraffic = "traffic"\n'
        f'scorer = "logged"\n{airflow}'
    )
    return load(path, environ={}), store


def test_a_day_above_the_size_is_planned_drawn_and_merged_exactly(tmp_path):
    config, store = world(tmp_path, 4_000)
    assert split_day.plan(config, "m", DAY) == 3  # 5 files of 2,000 (the last 1,000): 2 + 2 + 1
    outs = [split_day.draw_group(config, "m", DAY, g) for g in range(3)]
    assert [o["rows"] for o in outs] == [4_000, 4_000, 1_000] and all(o["drawn"] for o in outs)
    parts = split_day.collect(config, "m", DAY)
    merged, whole = from_candidates(store, DAY, parts, 1_000, 0, SCHEMA), sample(store, DAY, 1_000, 0, SCHEMA)
    np.testing.assert_array_equal(merged.request_ids, whole.request_ids)
    np.testing.assert_array_equal(merged.predictions["p_q"], whole.predictions["p_q"])


def test_small_days_and_awaited_partitions_are_not_split(tmp_path):
    config, store = world(tmp_path, 9_000)
    assert split_day.plan(config, "m", DAY) == 0 and split_day.collect(config, "m", DAY) is None
    assert not split_day.folder(config, "m", DAY).exists()
    config, store = world(tmp_path, 0)  # 0: never
    assert split_day.plan(config, "m", DAY) == 0
    config, store = world(tmp_path, 1_000, "\n[airflow]\npartition_wait_s = 600\n")
    assert split_day.plan(config, "m", DAY) == 0  # no _SUCCESS marker yet
    (Path(store.partition(DAY)) / "_SUCCESS").touch()
    assert split_day.plan(config, "m", DAY) == 5
    assert split_day.plan(config, "m", str(dt.date(2026, 11, 3))) == 0  # no partition: the sample step says so


def test_a_missing_or_failed_group_means_the_day_is_drawn_whole(tmp_path):
    config, store = world(tmp_path, 4_000)
    split_day.plan(config, "m", DAY)
    split_day.draw_group(config, "m", DAY, 0)
    split_day.draw_group(config, "m", DAY, 1)
    assert split_day.collect(config, "m", DAY) is None  # group 2 not drawn
    last = Path(store.files(DAY)[-1])
    last.write_bytes(last.read_bytes()[:100])  # a damaged file: the sample step will name it
    assert split_day.draw_group(config, "m", DAY, 2) == {"model": "m", "group": 2, "drawn": False}
    assert split_day.collect(config, "m", DAY) is None
    # A new plan replaces the old one: its groups are never mixed with the old plan's.
    config, store = world(tmp_path, 4_000)
    split_day.plan(config, "m", DAY)
    assert len(list(split_day.folder(config, "m", DAY).iterdir())) == 1  # the plan alone
