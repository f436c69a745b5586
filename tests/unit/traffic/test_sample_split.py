"""Sampling in two passes (ids and labels of the day, then only the sampled
rows): the same examples in the same order as the sampler that read every
column of every row (tests/support/sample_reference.py), on every layout; and
per file group, merged exactly."""

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lpmon.traffic import TrafficError, TrafficSchema, TrafficStore, request_hash, sample
from lpmon.traffic.sample import PartitionChanged, from_candidates
from lpmon.traffic.split import count_duplicates, draw_candidates, file_groups, load, save
from support.sample_reference import sample as reference

DAY = dt.date(2026, 11, 2)
SCHEMA = TrafficSchema(("dense_0", "dense_1"), ("sparse_0", "sparse_1"), (100, 30))
SEGMENTED = TrafficSchema(("dense_0", "dense_1"), ("sparse_0", "sparse_1"), (100, 30), extra=("model_id",))


def day_table(n=12_000, seed=0, string_ids=False, positives=0.1):
    rng = np.random.default_rng(seed)
    ids = rng.permutation(n).astype(np.int64) * 13 + 5
    return pa.table(
        {
            "request_id": pa.array([f"q{i}" for i in ids]) if string_ids else ids,
            "ts": pa.array(np.full(n, np.datetime64("2026-11-02T06:00:00"), "datetime64[s]")),
            "label": (rng.random(n) < positives).astype(np.int8),
            "model_id": pa.array(np.where(rng.random(n) < 0.5, "ctr", "cvr")),
            "dense_0": rng.normal(size=n).astype(np.float32),
            "dense_1": rng.normal(size=n).astype(np.float32),
            "sparse_0": pa.array([list(rng.integers(0, 100, k)) for k in rng.integers(0, 4, n)], pa.list_(pa.int64())),
            "sparse_1": rng.integers(0, 30, n),
        }
    )


LAYOUTS = {  # name: (rows per file, rows per row group)
    "one file": (1 << 30, 1 << 30),
    "many files": (1_500, 1 << 30),
    "many row groups": (1 << 30, 700),
    "many files and row groups": (2_500, 333),
}


def write(tmp_path, layout, **table):
    store = TrafficStore(tmp_path / layout.replace(" ", "-"))
    per_file, per_group = LAYOUTS[layout]
    store.write_day(DAY, day_table(**table), rows_per_file=per_file, row_group_rows=per_group)
    return store


def same(a, b):
    assert a.day_rows == b.day_rows and a.day == b.day
    np.testing.assert_array_equal(a.request_ids, b.request_ids)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.batch.dense, b.batch.dense)
    for x, y in zip(a.batch.sparse, b.batch.sparse):
        np.testing.assert_array_equal(x.indices, y.indices)
        np.testing.assert_array_equal(x.offsets, y.offsets)
    assert a.extras.keys() == b.extras.keys()
    for key in a.extras:
        np.testing.assert_array_equal(a.extras[key], b.extras[key])


def groups_of(store, size):
    return file_groups(store, store.files(DAY), size)


def split_sample(store, tmp_path, n, seed, schema, stratify, group_rows, rows=True):
    """Each group's candidates drawn apart (with their rows, or not: then the merge reads
    the day's files), saved and loaded (as on workers), then merged."""
    parts = []
    for i, files in enumerate(groups_of(store, group_rows)):
        part = draw_candidates(
            store,
            files,
            n,
            seed,
            stratify=stratify,
            spill=tmp_path / f"sorted-{i}.npy",
            rows_to=tmp_path / f"rows-{i}.arrow" if rows else "",
        )
        save(part, tmp_path / f"part-{i}.npz")
        parts.append(load(tmp_path / f"part-{i}.npz"))
    return from_candidates(store, DAY, parts, n, seed, schema, stratify=stratify)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize(
    "string_ids, stratify, schema", [(False, False, SCHEMA), (True, False, SCHEMA), (False, True, SEGMENTED)]
)
def test_the_same_sample_as_the_full_reader(tmp_path, layout, string_ids, stratify, schema):
    store = write(tmp_path, layout, string_ids=string_ids)
    for n in (1, 700, 11_999, 12_000, 50_000):
        for seed in (0, 7):
            expected = reference(store, DAY, n, seed, schema, stratify=stratify)
            same(sample(store, DAY, n, seed, schema, stratify=stratify), expected)
            if layout.startswith("many files"):
                same(split_sample(store, tmp_path, n, seed, schema, stratify, 4_000), expected)
                same(split_sample(store, tmp_path, n, seed, schema, stratify, 4_000, rows=False), expected)


def test_rare_labels_and_the_split_of_one_file_per_group(tmp_path):
    store = write(tmp_path, "many files", positives=0.002)
    assert len(groups_of(store, 1)) == len(store.files(DAY)) == 8  # a file above the size is its own group
    for n in (5, 300, 6_000):
        expected = reference(store, DAY, n, 3, SCHEMA, stratify=True)
        same(split_sample(store, tmp_path, n, 3, SCHEMA, True, 1), expected)


def test_file_groups_are_consecutive_and_bounded(tmp_path):
    store = write(tmp_path, "many files")  # 8 files of 1,500 rows
    groups = groups_of(store, 4_000)
    assert [len(g) for g in groups] == [2, 2, 2, 2]
    assert [f for g in groups for f in g] == store.files(DAY)
    assert groups_of(store, 10**9) == [store.files(DAY)]


def test_pass_two_reads_only_the_row_groups_with_sampled_rows(tmp_path, monkeypatch):
    store = write(tmp_path, "many row groups")  # 18 row groups of 700 rows
    read = []
    real = pq.ParquetFile.read_row_group

    def spy(self, i, columns=None, **kwargs):
        read.append((i, tuple(columns)))
        return real(self, i, columns=columns, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", spy)
    drawn = sample(store, DAY, 3, 1, SCHEMA)
    assert 1 <= len(read) <= 3 and len(drawn) == 3
    assert all("dense_0" in columns for _, columns in read)


def test_duplicates_across_groups_are_counted_as_by_one_process(tmp_path):
    table = day_table(6_000)
    ids = table.column("request_id").to_numpy().copy()
    ids[5_000:5_010] = ids[:10]  # 10 ids repeated in another file (and group)
    store = TrafficStore(tmp_path / "dups")
    store.write_day(DAY, table.set_column(0, "request_id", pa.array(ids)), rows_per_file=1_000)
    with pytest.raises(TrafficError, match="column request_id has 10 duplicate rows") as whole:
        sample(store, DAY, 100, 0, SCHEMA)
    with pytest.raises(TrafficError) as split:
        split_sample(store, tmp_path, 100, 0, SCHEMA, False, 1_000)
    assert str(split.value) == str(whole.value)


def test_count_duplicates_in_buckets(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.integers(0, np.iinfo(np.uint64).max, 50_000, dtype=np.uint64)
    values[-7:] = values[:7]
    parts = np.array_split(rng.permutation(values), 3)
    paths = []
    for i, part in enumerate(parts):
        np.save(tmp_path / f"{i}.npy", np.sort(part))
        paths.append(str(tmp_path / f"{i}.npy"))
    assert count_duplicates(paths, bucket_rows=1_000) == count_duplicates(paths) == 7


@pytest.mark.parametrize(
    "column, values, message",
    [
        ("request_id", lambda ids: pa.array([None if i % 997 == 0 else v for i, v in enumerate(ids)], pa.int64()),
         "column request_id has 13 null values of 12000 rows"),
        ("label", lambda labels: pa.array([None if i < 4 else int(v) for i, v in enumerate(labels)], pa.int8()),
         "column label has 4 null values of 12000 rows"),
        ("label", lambda labels: pa.array(np.where(np.arange(len(labels)) % 2_000 == 1, 3, labels).astype(np.int8)),
         "column label has 6 rows not 0 or 1 \\(of 12000\\)"),
    ],
)  # fmt: skip
def test_pass_one_checks_every_row_with_the_days_totals(tmp_path, column, values, message):
    table = day_table()
    index = table.schema.get_field_index(column)
    table = table.set_column(index, column, values(table.column(column).to_numpy(zero_copy_only=False)))
    store = TrafficStore(tmp_path / "bad")
    store.write_day(DAY, table, rows_per_file=5_000)
    for draw in (
        lambda: sample(store, DAY, 10, 0, SCHEMA),
        lambda: split_sample(store, tmp_path, 10, 0, SCHEMA, False, 1),
    ):
        with pytest.raises(TrafficError, match=message) as err:
            draw()
        assert "date=2026-11-02" in str(err.value) and "duplicate" not in str(err.value)


def test_pass_two_checks_only_the_sampled_rows_and_names_file_column_and_count(tmp_path):
    table = day_table()
    dense = table.column("dense_0").to_numpy().copy()
    dense[::100] = np.nan  # 120 bad rows
    store = TrafficStore(tmp_path / "nan")
    store.write_day(DAY, table.set_column(table.schema.get_field_index("dense_0"), "dense_0", pa.array(dense)))
    with pytest.raises(TrafficError, match=r"date=2026-11-02/part-00000.parquet: column dense_0 has 120 rows with NaN"):
        sample(store, DAY, 12_000, 0, SCHEMA)
    with pytest.raises(TrafficError, match=r"date=2026-11-02/part-00000.parquet: column dense_0 has 120 rows with NaN"):
        split_sample(store, tmp_path, 12_000, 0, SCHEMA, False, 1)
    ranks = np.argsort(request_hash(table.column("request_id").to_numpy(), 0))
    bad_in = lambda n: int(np.count_nonzero(ranks[:n] % 100 == 0))  # noqa: E731
    n = next(n for n in range(1, 200) if bad_in(n) == 0 and bad_in(n + 1) == 1)
    assert len(sample(store, DAY, n, 0, SCHEMA)) == n  # bad rows outside the sample are not read
    with pytest.raises(TrafficError, match=rf"column dense_0 has {bad_in(3_000)} rows with NaN or inf \(of 3000\)"):
        sample(store, DAY, 3_000, 0, SCHEMA)


def test_a_partition_changed_after_grouping_is_refused(tmp_path):
    store = write(tmp_path, "many files")
    parts = [
        draw_candidates(store, g, 50, 0, spill=tmp_path / f"{i}.npy") for i, g in enumerate(groups_of(store, 3_000))
    ]
    store.write_day(DAY, day_table(9_000), rows_per_file=1_000)
    with pytest.raises(PartitionChanged, match="files changed"):
        from_candidates(store, DAY, parts, 50, 0, SCHEMA)
