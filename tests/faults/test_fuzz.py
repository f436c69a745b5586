"""Hostile traffic: the traffic reader and the Criteo importer fuzzed with
hypothesis (malformed rows, wrong types, broken and random files). Every input
either reads correctly or raises a TrafficError that names the partition or
file (and line or column); nothing else escapes, nothing hangs (hypothesis'
deadline), and memory stays bounded.
"""

import os
import re
import resource
import string
import tracemalloc

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from lpmon.traffic import TrafficError, TrafficSchema, TrafficStore, sample
from lpmon.traffic.criteo import import_criteo

pytestmark = pytest.mark.faults

SCHEMA = TrafficSchema(dense=("dense_0", "dense_1"), sparse=("sparse_0", "sparse_1"), table_rows=(10, 5))
DAY = "2026-11-01"
FUZZ = settings(
    max_examples=int(os.environ.get("LPMON_FUZZ_EXAMPLES", "150")),
    deadline=5000,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
MEMORY_BOUND = 64 << 20  # bytes of Python and NumPy allocations for inputs of at most a few hundred rows


def valid_table(n: int, rng: np.random.Generator) -> dict:
    return {
        "request_id": pa.array(np.arange(n, dtype=np.int64)),
        "label": pa.array(rng.integers(0, 2, n).astype(np.int8)),
        "dense_0": pa.array(rng.normal(size=n).astype(np.float32)),
        "dense_1": pa.array(rng.normal(size=n).astype(np.float32)),
        "sparse_0": pa.array(
            [list(rng.integers(0, 10, rng.integers(0, 3))) for _ in range(n)], type=pa.list_(pa.int64())
        ),
        "sparse_1": pa.array(rng.integers(0, 5, n).astype(np.int64)),
    }


BAD_VALUES = {
    "request_id": [pa.array([1.5]), pa.array([None], pa.int64())],  # (string ids are valid)
    "label": [
        pa.array([2], pa.int8()),
        pa.array([-1], pa.int8()),
        pa.array([None], pa.int8()),
        pa.array([np.nan]),
        pa.array(["1"]),
    ],
    "dense_0": [
        pa.array([np.nan], pa.float32()),
        pa.array([np.inf], pa.float32()),
        pa.array(["1.0"]),
        pa.array([None], pa.float32()),
        pa.array([1], pa.int64()),
    ],
    "sparse_0": [
        pa.array([[-1]], pa.list_(pa.int64())),
        pa.array([[10]], pa.list_(pa.int64())),
        pa.array([[1 << 62]], pa.list_(pa.int64())),
        pa.array([None], pa.list_(pa.int64())),
        pa.array([["a"]], pa.list_(pa.string())),
        pa.array([[1.5]], pa.list_(pa.float64())),
    ],
    "sparse_1": [pa.array([5]), pa.array([-3]), pa.array([None], pa.int64()), pa.array([0.5])],
}


@st.composite
def broken_days(draw):
    """A day of traffic with zero or more corruptions, as (list of files' bytes, what was done)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(0, 300))
    columns = valid_table(n, rng)
    done = []
    for column in draw(st.lists(st.sampled_from(sorted(BAD_VALUES)), max_size=2, unique=True)):
        if n == 0:
            break
        bad = draw(st.sampled_from(BAD_VALUES[column]))
        row = draw(st.integers(0, n - 1))
        values = columns[column].to_pylist()
        replacement = bad.to_pylist()[0]
        values[row] = replacement
        try:
            columns[column] = pa.array(values, type=bad.type if bad.type != columns[column].type else None)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            columns[column] = pa.array([str(v) for v in values])  # a column of the wrong type altogether
        done.append(f"{column}[{row}] = {replacement!r}")
    if draw(st.booleans()) and n > 1:
        ids = columns["request_id"].to_pylist()
        ids[-1] = ids[0]
        columns["request_id"] = pa.array(ids, type=columns["request_id"].type)
        done.append("duplicate request_id")
    for column in draw(st.lists(st.sampled_from(sorted(columns)), max_size=1)):
        del columns[column]
        done.append(f"no column {column}")
    table = pa.table(columns)
    files = []
    pieces = draw(st.integers(1, 3))
    step = max(1, -(-table.num_rows // pieces))
    for start in range(0, max(table.num_rows, 1), step):
        sink = pa.BufferOutputStream()
        pq.write_table(table.slice(start, step), sink, row_group_size=draw(st.integers(1, 128)))
        files.append(sink.getvalue().to_pybytes())
    damage = draw(st.sampled_from(["none", "none", "truncate", "flip", "garbage", "empty"]))
    if damage != "none":
        target = draw(st.integers(0, len(files) - 1))
        data = bytearray(files[target])
        if damage == "truncate":
            data = data[: draw(st.integers(0, len(data) - 1))]
        elif damage == "flip":
            for _ in range(draw(st.integers(1, 8))):
                position = draw(st.integers(0, len(data) - 1))
                data[position] ^= draw(st.integers(1, 255))
        elif damage == "garbage":
            data = bytearray(draw(st.binary(max_size=2048)))
        else:
            data = bytearray()
        files[target] = bytes(data)
        done.append(f"file {target}: {damage}")
    return files, done


def within_memory(call):
    tracemalloc.start()
    try:
        return call()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < MEMORY_BOUND, f"{peak / 2**20:.0f} MiB allocated"


@FUZZ
@given(day=broken_days(), n=st.integers(1, 400), seed=st.integers(0, 2**63))
def test_the_traffic_reader_reads_or_names_the_problem(tmp_path_factory, day, n, seed):
    files, done = day
    root = tmp_path_factory.mktemp("traffic")
    partition = root / f"date={DAY}"
    partition.mkdir()
    for index, data in enumerate(files):
        (partition / f"part-{index:05d}.parquet").write_bytes(data)
    try:
        drawn = within_memory(lambda: sample(TrafficStore(root), DAY, n, seed, SCHEMA, batch_size=64))
    except TrafficError as err:
        assert str(partition) in str(err), (done, err)
        event("refused")
        return
    event("read")
    # Read: then every kept row is valid, and nothing was corrupted silently.
    assert len(drawn) == min(n, drawn.day_rows)
    assert set(np.unique(drawn.labels)) <= {0, 1}
    assert np.isfinite(drawn.batch.dense).all()
    for feature, rows in zip(drawn.batch.sparse, SCHEMA.table_rows):
        assert ((feature.indices >= 0) & (feature.indices < rows)).all()
    assert len(np.unique(drawn.request_ids)) == len(drawn)
    # A flipped byte may land where it changes nothing (or a value, undetectably without
    # page checksums); a bad feature value in a row outside the sample is never read (only
    # the sampled rows' features are); every other corruption must have been refused.
    sampled = {int(i) for i in drawn.request_ids}

    def unread(what: str) -> bool:
        found = re.fullmatch(r"(?:dense|sparse)_\d\[(\d+)\] = .*", what)  # (row = its request id)
        return bool(found) and int(found.group(1)) not in sampled

    assert all(d.endswith(": flip") or unread(d) for d in done), f"read without an error despite: {done}"


INTEGER = st.one_of(st.just(""), st.integers(-5, 10**6).map(str))
HEX = st.one_of(st.just(""), st.integers(0, 2**64 - 1).map(lambda v: f"{v:08x}"))
JUNK = st.one_of(
    st.text(alphabet=string.printable.replace("\t", "").replace("\n", "").replace("\r", ""), max_size=12),
    st.sampled_from(
        [
            "1e400",
            "-0x1f",
            "1_0",
            '"',
            '"a',
            "nan",
            "0x10",
            "ffffffffffffffffffff",
            " 7 ",
            "٣",
            "-1",
            "2",
            "1.5",
            "+3",
            "99999999999999999999",
        ]
    ),
)


@st.composite
def criteo_lines(draw):
    """Mostly well-formed lines, some with one bad field, a few cut short, sometimes trailing bytes."""
    lines = []
    for _ in range(draw(st.integers(0, 12))):
        fields = (
            [draw(st.sampled_from(["0", "1"]))] + [draw(INTEGER) for _ in range(13)] + [draw(HEX) for _ in range(26)]
        )
        if draw(st.integers(0, 3)) == 0:
            fields[draw(st.integers(0, len(fields) - 1))] = draw(JUNK)
        if draw(st.integers(0, 19)) == 0:
            fields = fields[: draw(st.integers(0, len(fields)))]
        lines.append("\t".join(fields))
    text = "\n".join(lines) + draw(st.sampled_from(["", "\n", "\r\n"]))
    return text.encode() if draw(st.integers(0, 9)) else text.encode() + draw(st.binary(min_size=1, max_size=16))


@FUZZ
@given(data=criteo_lines())
@pytest.mark.slow
def test_the_criteo_importer_imports_or_names_the_line(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("criteo")
    tsv = folder / "day.tsv"
    tsv.write_bytes(data)
    store = TrafficStore(folder / "traffic")
    try:
        rows = within_memory(lambda: import_criteo(tsv, store, DAY, table_rows=50, chunk_rows=4, progress=None).rows)
    except TrafficError as err:
        assert str(tsv) in str(err), err
        assert not (folder / "traffic" / f"date={DAY}").exists()  # nothing half-written
        event("refused")
        return
    event("imported")
    table = pq.read_table(store.files(DAY)[0])
    assert table.num_rows == rows == len(data.decode().splitlines())
    assert set(table.column("label").to_pylist()) <= {0, 1}
    for i in range(13):
        assert np.isfinite(table.column(f"dense_{i}").to_numpy()).all()
    for i in range(26):
        ids = table.column(f"sparse_{i}").to_numpy()
        assert ((ids >= 0) & (ids < 50)).all()


def test_fuzzing_left_memory_flat():
    """Runs after the fuzz tests in this file: the process did not balloon."""
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss < 4 << 20  # KiB: 4 GiB
