"""import-criteo --dlrm-vocabulary against the real facebookresearch/dlrm (tests/fixtures/criteo,
made by make_fixtures.py there): DLRM's data_utils preprocessed train.txt, and dlrm_s_pytorch.py
trained model.pt on it; lpmon's import gives DLRM's ids and its fp32 predictions DLRM's own."""

import json
import tracemalloc

import numpy as np
import pyarrow.parquet as pq
import pytest

from lpmon.cli import main
from lpmon.traffic import TrafficStore
from lpmon.traffic.criteo import import_criteo
from lpmon.traffic.dlrm_vocabulary import DlrmVocabulary
from lpmon.traffic.schema import TrafficError
from support import REPO

FIXTURES = REPO / "tests" / "fixtures" / "criteo"
DAY = "2026-11-01"


def imported(tmp_path, capsys, *flags, tsv=FIXTURES / "train.txt"):
    store = tmp_path / "traffic"
    assert main(["-q", "--json", "import-criteo", str(tsv), "--store", str(store), "--day", DAY, *flags]) == 0
    report = json.loads(capsys.readouterr().out)
    return pq.read_table(TrafficStore(store).files(DAY)), report


def columns(table, prefix, n):
    return np.stack([table.column(f"{prefix}_{j}").to_numpy() for j in range(n)], axis=1)


def test_dlrm_vocabulary_gives_dlrms_ids_dense_values_and_table_sizes(tmp_path, capsys):
    table, report = imported(tmp_path, capsys, "--dlrm-vocabulary", str(FIXTURES / "train"))
    expected = np.load(FIXTURES / "expected.npz")
    np.testing.assert_array_equal(columns(table, "sparse", 26), expected["ids"])
    np.testing.assert_array_equal(table.column("label").to_numpy(), expected["label"])
    # DLRM's torch.log(float32) is within one float32 ulp of the correctly rounded log(x + 1).
    np.testing.assert_allclose(columns(table, "dense", 13), expected["dense"], rtol=2**-23, atol=0)
    assert report["table_rows"] == np.load(FIXTURES / "train_fea_count.npz")["counts"].tolist()
    assert report["unknown"] == {}


def test_max_ind_range_as_dlrm_applies_it(tmp_path, capsys):
    prefix = FIXTURES / "ranged" / "train"
    table, report = imported(tmp_path, capsys, "--dlrm-vocabulary", str(prefix), "--max-ind-range", "40")
    np.testing.assert_array_equal(columns(table, "sparse", 26), np.load(FIXTURES / "ranged" / "expected.npz")["ids"])
    assert max(report["table_rows"]) <= 40


def test_lpmon_predicts_as_dlrm_on_the_imported_lines(tmp_path, capsys):
    pytest.importorskip("torch")
    from lpmon.model import forward_fp32
    from lpmon.model.batch import Batch, SparseFeature
    from lpmon.model.dlrm_import import import_dlrm

    table, _ = imported(tmp_path, capsys, "--dlrm-vocabulary", str(FIXTURES / "train"))
    model = import_dlrm(FIXTURES / "model.pt", out=tmp_path / "snapshot")
    n = table.num_rows
    features = tuple(
        SparseFeature(table.column(t.name).to_numpy().astype(np.int64), np.arange(n, dtype=np.int64))
        for t in model.spec.tables
    )
    batch = Batch(columns(table, "dense", 13).astype(np.float32), features)
    expected = np.load(FIXTURES / "expected.npz")["probabilities"]
    np.testing.assert_allclose(forward_fp32(model, batch).probabilities, expected, rtol=0, atol=1e-5)


def unseen_lines(tmp_path):
    """Three training lines with C3 replaced by a value DLRM never saw."""
    lines = (FIXTURES / "train.txt").read_text().splitlines()[:3]
    unique = set(np.load(FIXTURES / "train_fea_dict_2.npz")["unique"].tolist())
    value = next(v for v in range(1, 1000) if v not in unique)
    fields = [line.split("\t") for line in lines]
    for f in fields:
        f[1 + 13 + 2] = f"{value:x}"
    tsv = tmp_path / "unseen.txt"
    tsv.write_text("".join("\t".join(f) + "\n" for f in fields))
    return tsv


def test_values_outside_the_vocabulary_are_counted_and_mapped_or_refused(tmp_path, capsys):
    tsv = unseen_lines(tmp_path)
    prefix = str(FIXTURES / "train")
    table, report = imported(tmp_path, capsys, "--dlrm-vocabulary", prefix, "--unknown-row", "1", tsv=tsv)
    assert report["unknown"] == {"sparse_2": 3} and report["unknown_row"] == 1
    assert table.column("sparse_2").to_pylist() == [1, 1, 1]
    store = tmp_path / "refused"
    args = ["import-criteo", str(tsv), "--store", str(store), "--day", DAY, "--dlrm-vocabulary", prefix]
    assert main([*args, "--refuse-unknown"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unseen.txt:1: column C3 value" in err and "train_fea_dict_2.npz" in err
    assert not (store / f"date={DAY}").exists()  # nothing half-written
    assert main([*args, "--unknown-row", "5"]) == 1  # the smallest table has 4 rows
    assert "outside the smallest table (4 rows)" in capsys.readouterr().err


def test_a_missing_vocabulary_file_is_named(tmp_path, capsys):
    assert main(["import-criteo", str(FIXTURES / "train.txt"), "--store", str(tmp_path), "--day", DAY,
                 "--dlrm-vocabulary", str(tmp_path / "nope")]) == 1  # fmt: skip
    assert "nope_fea_count.npz: no such file" in capsys.readouterr().err


def test_table_rows_per_table(tmp_path, capsys):
    rows = [3 + j for j in range(26)]
    table, report = imported(tmp_path, capsys, "--table-rows", *map(str, rows))
    assert report["table_rows"] == rows
    ids = columns(table, "sparse", 26)
    assert (ids < np.array(rows)).all() and (ids[:, -1] >= 3).any()
    store = str(tmp_path / "other")
    assert main(["import-criteo", str(FIXTURES / "train.txt"), "--store", store, "--day", DAY,
                 "--table-rows", "10", "20"]) == 1  # fmt: skip
    assert "2 sizes given, expected 1 or 26" in capsys.readouterr().err


def test_the_import_streams_in_constant_memory(tmp_path):
    """Peak Python allocations do not grow with the file: chunks are written as they
    are converted (before, every chunk was held until one final write)."""
    lines = (FIXTURES / "train.txt").read_text()
    vocabulary = DlrmVocabulary(FIXTURES / "train")
    peaks = []
    for copies in (2, 8):
        tsv = tmp_path / f"day{copies}.txt"
        tsv.write_text(lines * copies)
        store = TrafficStore(tmp_path / f"store{copies}")
        tracemalloc.start()
        try:
            done = import_criteo(tsv, store, DAY, vocabulary=vocabulary, chunk_rows=350, progress=None)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert done.rows == store.row_count(DAY) == 350 * copies
    assert peaks[1] < 1.2 * peaks[0], peaks


def test_a_refused_line_late_in_the_file_publishes_nothing(tmp_path):
    tsv = tmp_path / "day.txt"
    tsv.write_text((FIXTURES / "train.txt").read_text() * 2 + "2" + "\t" * 39 + "\n")
    store = TrafficStore(tmp_path / "store")
    with pytest.raises(TrafficError, match=r"day.txt:701: column label must be 0 or 1"):
        import_criteo(tsv, store, DAY, table_rows=100, chunk_rows=100, progress=None)
    assert store.days() == [] and not list((tmp_path / "store").iterdir())
