"""Traffic store, deterministic sampling, validation on read, Criteo import."""

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lpmon.traffic import EmptyDay, MissingDay, TrafficError, TrafficSchema, TrafficStore, request_hash, sample
from lpmon.traffic.criteo import import_criteo

DAY = dt.date(2026, 11, 2)
SCHEMA = TrafficSchema(("dense_0", "dense_1"), ("sparse_0", "sparse_1"), (100, 30))


def day_table(n=20_000, seed=0, string_ids=False, **overrides):
    rng = np.random.default_rng(seed)
    ids = np.arange(n, dtype=np.int64) * 7 + 11
    columns = {
        "request_id": pa.array([f"r{i}" for i in ids]) if string_ids else ids,
        "ts": pa.array(np.full(n, np.datetime64("2026-11-02T00:00:00"), "datetime64[s]")),
        "label": (rng.random(n) < 0.1).astype(np.int8),
        "dense_0": rng.normal(size=n).astype(np.float32),
        "dense_1": rng.normal(size=n).astype(np.float32),
        "sparse_0": pa.array([list(rng.integers(0, 100, k)) for k in rng.integers(0, 3, n)], type=pa.list_(pa.int64())),
        "sparse_1": rng.integers(0, 30, n),
    }
    columns.update(overrides)
    return pa.table(columns)


@pytest.fixture
def store(tmp_path):
    store = TrafficStore(tmp_path / "traffic")
    store.write_day(DAY, day_table(), rows_per_file=6_000)
    return store


def test_days_files_and_counts(store):
    assert store.days() == [DAY]
    assert len(store.files(DAY)) == 4 and store.row_count(DAY) == 20_000


def test_sample_is_deterministic_and_layout_free(store, tmp_path):
    a = sample(store, DAY, 3_000, seed=5, schema=SCHEMA)
    b = sample(store, "2026-11-02", 3_000, seed=5, schema=SCHEMA)
    assert len(a) == 3_000 and a.day_rows == 20_000
    np.testing.assert_array_equal(a.request_ids, b.request_ids)
    # Another file layout of the same day: the same sample, in the same order.
    other = TrafficStore(tmp_path / "other")
    other.write_day(DAY, day_table().take(np.random.default_rng(1).permutation(20_000)), rows_per_file=2_500)
    np.testing.assert_array_equal(sample(other, DAY, 3_000, 5, SCHEMA).request_ids, a.request_ids)
    # Another seed: another sample.
    assert len(np.intersect1d(sample(store, DAY, 3_000, 6, SCHEMA).request_ids, a.request_ids)) < 1_000
    # The sample is exactly the rows with the smallest hashes.
    everything = day_table()
    hashes = request_hash(everything.column("request_id").to_numpy(), 5)
    expected = everything.column("request_id").to_numpy()[np.argsort(hashes)[:3_000]]
    np.testing.assert_array_equal(a.request_ids, expected)


def test_sample_rows_are_intact(store):
    s = sample(store, DAY, 500, 1, SCHEMA)
    table = day_table()
    position = {rid: i for i, rid in enumerate(table.column("request_id").to_numpy())}
    rows = np.array([position[r] for r in s.request_ids])
    np.testing.assert_array_equal(s.labels, table.column("label").to_numpy()[rows])
    np.testing.assert_array_equal(s.batch.dense[:, 1], table.column("dense_1").to_numpy()[rows])
    sparse0 = table.column("sparse_0").to_pylist()
    f = s.batch.sparse[0]
    for k in (0, 17, 499):
        stop = f.offsets[k + 1] if k + 1 < len(s) else len(f.indices)
        assert list(f.indices[f.offsets[k] : stop]) == sparse0[rows[k]]
    np.testing.assert_array_equal(s.batch.sparse[1].indices, table.column("sparse_1").to_numpy()[rows])


def test_stratified_sample_keeps_the_label_mix(store):
    s = sample(store, DAY, 2_000, 3, SCHEMA, stratify=True)
    day_rate = day_table().column("label").to_numpy().mean()
    assert len(s) == 2_000 and abs(s.labels.mean() - day_rate) < 0.001
    assert len(sample(store, DAY, 10**9, 3, SCHEMA)) == 20_000  # more than the day: all of it


def test_string_request_ids(tmp_path):
    store = TrafficStore(tmp_path)
    store.write_day(DAY, day_table(2_000, string_ids=True))
    a, b = sample(store, DAY, 300, 9, SCHEMA), sample(store, DAY, 300, 9, SCHEMA)
    assert list(a.request_ids) == list(b.request_ids) and len(a) == 300


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: t.drop(["dense_1"]), "missing column dense_1"),
        (
            lambda t: t.set_column(3, "dense_0", pa.array(np.arange(t.num_rows))),
            "column dense_0 has type int64, expected float32",
        ),
        (
            lambda t: t.set_column(
                3, "dense_0", pa.array(np.where(np.arange(t.num_rows) % 1000 == 0, np.nan, 1.0).astype(np.float32))
            ),
            "column dense_0 has 20 rows with NaN or inf",
        ),
        (
            lambda t: t.set_column(2, "label", pa.array(np.where(np.arange(t.num_rows) < 5, 2, 0).astype(np.int8))),
            "column label has 5 rows not 0 or 1",
        ),
        (
            lambda t: t.set_column(6, "sparse_1", pa.array(np.where(np.arange(t.num_rows) < 3, 30, 1))),
            r"column sparse_1 has 3 rows with ids outside \[0, 30\)",
        ),
        (
            lambda t: t.set_column(0, "request_id", pa.array(np.arange(t.num_rows) // 2)),
            "column request_id has 10000 duplicate rows",
        ),
    ],
)
def test_bad_traffic_names_partition_column_and_count(tmp_path, change, message):
    store = TrafficStore(tmp_path)
    store.write_day(DAY, change(day_table()))
    with pytest.raises(TrafficError, match=message) as err:
        sample(store, DAY, 20_000, 1, SCHEMA)  # every row sampled: only sampled rows' features are read
    assert "date=2026-11-02" in str(err.value)


def test_missing_empty_and_corrupt_days(tmp_path):
    store = TrafficStore(tmp_path)
    with pytest.raises(MissingDay, match="no traffic for 2026-11-02"):
        sample(store, DAY, 10, 1, SCHEMA)
    store.write_day(DAY, day_table(0))
    with pytest.raises(EmptyDay, match="the day has no rows"):
        sample(store, DAY, 10, 1, SCHEMA)
    store.write_day(DAY, day_table(100))
    path = Path(store.files(DAY)[0])
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a truncated file
    with pytest.raises(TrafficError, match="unreadable Parquet"):
        sample(store, DAY, 10, 1, SCHEMA)
    # A flipped byte in a column name of the footer: not UTF-8 any more (found by tests/faults/test_fuzz.py).
    store.write_day(DAY, day_table(100))
    path = Path(store.files(DAY)[0])
    path.write_bytes(path.read_bytes().replace(b"dense_0", b"\xf3ense_0"))
    with pytest.raises(TrafficError, match=f"{path}: unreadable Parquet"):
        sample(store, DAY, 10, 1, SCHEMA)


CRITEO_LINES = [
    "1\t5\t\t3\t-2\t0\t1\t2\t3\t4\t5\t6\t7\t8\t" + "\t".join(["68fd1e64"] * 26),
    "0\t\t1\t1\t1\t1\t1\t1\t1\t1\t1\t1\t1\t1\t" + "\t".join([""] * 13 + ["80e26c9b"] * 13),
]


def test_criteo_import(tmp_path):
    tsv = tmp_path / "day.tsv"
    tsv.write_text("\n".join(CRITEO_LINES * 50) + "\n")
    store = TrafficStore(tmp_path / "store")
    assert import_criteo(tsv, store, DAY, table_rows=1000, chunk_rows=30, progress=None).rows == 100
    table = pq.read_table(store.files(DAY)[0])
    assert table.num_rows == 100 and table.column("request_id").to_pylist()[:3] == [0, 1, 2]
    first = table.slice(0, 1).to_pylist()[0]
    assert first["label"] == 1 and first["dense_0"] == pytest.approx(np.log1p(5))
    assert first["dense_1"] == 0.0 and first["dense_3"] == 0.0  # missing, and negative -> 0
    assert first["sparse_0"] == 1 + int("68fd1e64", 16) % 999
    second = table.slice(1, 1).to_pylist()[0]
    assert second["sparse_0"] == 0 and second["sparse_25"] == 1 + int("80e26c9b", 16) % 999
    schema = TrafficSchema(
        tuple(f"dense_{i}" for i in range(13)), tuple(f"sparse_{i}" for i in range(26)), (1000,) * 26
    )
    assert len(sample(store, DAY, 10, 0, schema)) == 10


@pytest.mark.parametrize(
    "line, message",
    [
        ("2\t" + "\t".join(["1"] * 13 + ["aa"] * 26), r"day.tsv:1: column label must be 0 or 1"),
        ("1\tx" + "\t".join([""] * 13 + ["aa"] * 26), r"day.tsv:1: column I1 is not an integer"),
        ("1\t" + "\t".join(["1"] * 13 + ["zz"] * 26), r"day.tsv:1: column C1 is not a hex id"),
        ("1\t2\t3", r"day.tsv:1: 3 tab-separated fields, expected 40"),
    ],
)
def test_criteo_bad_lines(tmp_path, line, message):
    tsv = tmp_path / "day.tsv"
    tsv.write_text(line + "\n")
    with pytest.raises(TrafficError, match=message):
        import_criteo(tsv, TrafficStore(tmp_path / "s"), DAY, progress=None)


def test_store_accepts_filesystem_uris(tmp_path):
    store = TrafficStore(f"file://{tmp_path}/uri-store")
    store.write_day(DAY, day_table(1_000))
    assert store.days() == [DAY] and store.row_count(DAY) == 1_000
    assert len(sample(store, DAY, 100, 2, SCHEMA)) == 100


@pytest.mark.parametrize("string_ids", [False, True])
def test_null_request_ids_are_reported_as_null_not_duplicate(tmp_path, string_ids):
    """Issue 28: null ids were reported as "duplicate rows"."""
    store = TrafficStore(tmp_path)
    table = day_table(2_000, string_ids=string_ids)
    ids = table.column("request_id").to_pylist()
    store.write_day(DAY, table.set_column(0, "request_id", pa.array([None] * 7 + ids[7:], table.schema[0].type)))
    with pytest.raises(TrafficError, match="column request_id has 7 null values of 2000 rows") as err:
        sample(store, DAY, 100, 1, SCHEMA)
    assert "date=2026-11-02" in str(err.value) and "duplicate" not in str(err.value)
