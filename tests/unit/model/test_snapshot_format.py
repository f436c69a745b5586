"""The mapped snapshot format: round trip, the manifest's checks, legacy npz, the digest, atomic writes."""

import dataclasses
import hashlib
import json
import os

import numpy as np
import pytest

from lpmon.model import Model, ModelSpec, SpecError, TableSpec
from lpmon.model.convert import convert_snapshot
from lpmon.model.mapped import SnapshotWriter
from lpmon.model.snapshot import snapshot_digest


def spec_of(rows=(50, 51, 52), dim=8):
    return ModelSpec(
        dense=tuple(f"dense_{i}" for i in range(5)),
        tables=tuple(TableSpec(f"sparse_{t}", r, dim) for t, r in enumerate(rows)),
        bottom_mlp=(16, dim),
        top_mlp=(12, 1),
    )


def manifest(folder):
    return json.loads((folder / "weights.json").read_text())


def tensor_file(folder, name):
    return folder / manifest(folder)["folder"] / f"{name}.npy"


def legacy_snapshot(folder, model):
    """A snapshot as lpmon wrote them before: spec.json + weights.npz."""
    folder.mkdir()
    (folder / "spec.json").write_text(model.spec.to_json())
    np.savez(folder / "weights.npz", **model.weights)
    return folder


def test_round_trip_maps_every_tensor_and_records_its_checks(tmp_path):
    model = Model.initialise(spec_of(), seed=4)
    model.save(tmp_path / "snap")
    loaded = Model.load(tmp_path / "snap")
    assert loaded.spec == model.spec and set(loaded.weights) == set(model.weights)
    recorded = manifest(tmp_path / "snap")
    assert recorded["format"] == "lpmon-snapshot/1"
    for name, array in loaded.weights.items():
        assert isinstance(array, np.memmap) and not array.flags.writeable and array.dtype == np.float32
        np.testing.assert_array_equal(array, model.weights[name])
        entry = recorded["tensors"][name]
        assert entry["shape"] == list(model.weights[name].shape) and entry["dtype"] == "float32"
        assert entry["sha256"] == hashlib.sha256(model.weights[name].tobytes()).hexdigest()
        assert entry["finite"] is True and entry["nonfinite"] == 0
        assert tensor_file(tmp_path / "snap", name).is_file()
    assert not (tmp_path / "snap" / "weights.npz").exists()


def test_loading_reads_no_tensor_byte(tmp_path):
    """NaN written into a table's data on disk after the snapshot was written: loading,
    re-building the model with another back end and the digest do not see it (they read
    headers and the manifest only); a model built from the same values in memory does."""
    Model.initialise(spec_of(), seed=1).save(tmp_path / "snap")
    digest = snapshot_digest(str(tmp_path / "snap"))
    path = tensor_file(tmp_path / "snap", "emb_l.1.weight")
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) - 4 * 8)
        f.write(np.full(8, np.nan, np.float32).tobytes())
    model = Model.load(tmp_path / "snap")
    assert np.isnan(model.weights["emb_l.1.weight"][-1]).all()  # (the bytes are there when read)
    dataclasses.replace(model, backend="torch")  # what load_model does: no re-check either
    assert snapshot_digest(str(tmp_path / "snap")) == digest
    with pytest.raises(SpecError, match="emb_l.1.weight has 8 NaN or inf values"):
        Model(model.spec, {name: np.array(array) for name, array in model.weights.items()})


def test_nan_recorded_at_write_time_is_refused_on_load(tmp_path):
    spec = spec_of()
    model = Model.initialise(spec, seed=2)
    with SnapshotWriter(tmp_path / "snap", spec) as writer:
        for name, array in model.weights.items():
            if name == "emb_l.2.weight":
                array = array.copy()
                array[[3, 7], 1] = [np.nan, np.inf]
            writer.write(name, [array])
        writer.commit()
    entry = manifest(tmp_path / "snap")["tensors"]["emb_l.2.weight"]
    assert entry["finite"] is False and entry["nonfinite"] == 2
    with pytest.raises(SpecError, match=r"weights.json: emb_l.2.weight had 2 NaN or inf values when the snapshot"):
        Model.load(tmp_path / "snap")


def test_a_header_that_disagrees_is_refused_naming_file_and_tensor(tmp_path):
    Model.initialise(spec_of(), seed=3).save(tmp_path / "snap")
    path = tensor_file(tmp_path / "snap", "emb_l.0.weight")
    original = path.read_bytes()
    os.unlink(path)  # (tensor files are never rewritten in place: a new inode, as a damaged copy would be)
    np.save(path, np.zeros((49, 8), np.float32))
    with pytest.raises(SpecError, match=r"emb_l.0.weight.npy: emb_l.0.weight's header says float32 C order shape"):
        Model.load(tmp_path / "snap")
    os.unlink(path)
    np.save(path, np.zeros((50, 8), np.float64))
    with pytest.raises(SpecError, match=r"emb_l.0.weight's header says float64"):
        Model.load(tmp_path / "snap")
    os.unlink(path)
    path.write_bytes(original[:-4])
    with pytest.raises(SpecError, match=r"emb_l.0.weight.npy: emb_l.0.weight holds 1596 data bytes, its shape"):
        Model.load(tmp_path / "snap")
    os.unlink(path)
    with pytest.raises(SpecError, match=r"emb_l.0.weight.npy: missing \(emb_l.0.weight, named by weights.json\)"):
        Model.load(tmp_path / "snap")


def test_the_manifest_must_match_the_spec(tmp_path):
    Model.initialise(spec_of(), seed=3).save(tmp_path / "snap")
    spec_file = tmp_path / "snap" / "spec.json"
    spec_file.write_text(spec_of(rows=(50, 51, 60)).to_json())  # edited after the write
    with pytest.raises(SpecError, match="spec.json: not the spec weights.json was written with"):
        Model.load(tmp_path / "snap")
    with pytest.raises(SpecError, match=r"emb_l.2.weight has shape \(52, 8\), the spec says \(60, 8\)"):
        convert_snapshot(tmp_path / "snap")
    # A change that fits the tensors (names) is recorded by convert-snapshot, in place.
    renamed = dataclasses.replace(spec_of(), dense=tuple(f"dense_x{i}" for i in range(5)))
    spec_file.write_text(renamed.to_json())
    assert convert_snapshot(tmp_path / "snap")[1].startswith("written again")
    assert Model.load(tmp_path / "snap").spec == renamed


def test_legacy_npz_still_loads_and_converts_in_bounded_chunks(tmp_path, monkeypatch):
    model = Model.initialise(spec_of(rows=(3000, 51, 52)), seed=5)
    legacy = legacy_snapshot(tmp_path / "old", model)
    digest = snapshot_digest(str(legacy))
    with open(legacy / "weights.npz", "rb") as f:  # the legacy digest: every byte of both files
        assert digest == hashlib.sha256((legacy / "spec.json").read_bytes() + f.read()).hexdigest()[:16]
    loaded = Model.load(legacy)
    assert not isinstance(loaded.weights["emb_l.0.weight"], np.memmap)
    monkeypatch.setattr("lpmon.model.tensors.CHUNK_BYTES", 4096)  # many chunks per table
    out, done = convert_snapshot(legacy, tmp_path / "new")
    assert out == tmp_path / "new" and done == "converted from weights.npz"
    assert (legacy / "weights.npz").is_file()  # --out leaves the source alone
    converted = Model.load(tmp_path / "new")
    for name, array in model.weights.items():
        assert isinstance(converted.weights[name], np.memmap)
        np.testing.assert_array_equal(converted.weights[name], array)
    # in place: the npz is replaced, and the digest is the mapped one (the same as a fresh save)
    assert convert_snapshot(legacy)[1] == "converted from weights.npz"
    assert not (legacy / "weights.npz").exists() and (legacy / "weights.json").is_file()
    model.save(tmp_path / "fresh")
    assert snapshot_digest(str(legacy)) == snapshot_digest(str(tmp_path / "fresh")) != digest
    assert convert_snapshot(legacy)[1] == "already in the mapped format"


def test_converting_refuses_nan_and_a_wrong_tensor_and_keeps_the_npz(tmp_path):
    model = Model.initialise(spec_of(), seed=6)
    weights = dict(model.weights, **{"bot_l.2.bias": np.full(8, np.nan, np.float32)})
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "spec.json").write_text(model.spec.to_json())
    np.savez(folder / "weights.npz", **weights)
    with pytest.raises(SpecError, match="weights: bot_l.2.bias has 8 NaN or inf values"):
        convert_snapshot(folder)
    assert (folder / "weights.npz").is_file() and not (folder / "weights.json").exists()
    assert list((folder / "weights").iterdir()) == [folder / "weights" / ".lock"]  # nothing half-written left
    np.savez(folder / "weights.npz", **dict(model.weights, **{"top_l.0.bias": np.zeros(13, np.float32)}))
    with pytest.raises(SpecError, match=r"weights.npz: top_l.0.bias has shape \(13,\), the spec says \(12,\)"):
        convert_snapshot(folder)


def test_digest_comes_from_the_manifest_and_is_stable(tmp_path):
    model = Model.initialise(spec_of(), seed=7)
    model.save(tmp_path / "a")
    Model.load(tmp_path / "a").save(tmp_path / "b")
    model.save(tmp_path / "a")  # rewritten in place: a new generation, the same content
    digest = snapshot_digest(str(tmp_path / "a"))
    assert len(digest) == 16 and digest == snapshot_digest(str(tmp_path / "b"))
    changed = dict(model.weights, **{"top_l.2.bias": model.weights["top_l.2.bias"] + np.float32(1)})
    Model(model.spec, changed).save(tmp_path / "b")
    assert snapshot_digest(str(tmp_path / "b")) != digest
    renamed = dataclasses.replace(model.spec, dense=tuple(f"dense_y{i}" for i in range(5)))
    Model(renamed, model.weights).save(tmp_path / "c")
    assert snapshot_digest(str(tmp_path / "c")) != digest


def test_a_failed_write_leaves_the_old_snapshot_and_a_reader_keeps_its_maps(tmp_path):
    spec = spec_of()
    old = Model.initialise(spec, seed=8)
    old.save(tmp_path / "snap")
    reader = Model.load(tmp_path / "snap")

    def failing():
        yield np.zeros((10, 8), np.float32)
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        with SnapshotWriter(tmp_path / "snap", spec) as writer:
            writer.write("emb_l.0.weight", failing())
    assert [p.name for p in (tmp_path / "snap" / "weights").iterdir() if p.name.startswith(".2")] == []
    again = Model.load(tmp_path / "snap")
    np.testing.assert_array_equal(again.weights["emb_l.0.weight"], old.weights["emb_l.0.weight"])
    Model.initialise(spec, seed=9).save(tmp_path / "snap")  # replaces the generation the reader maps
    assert len([p for p in (tmp_path / "snap" / "weights").iterdir() if not p.name.startswith(".")]) == 1
    np.testing.assert_array_equal(reader.weights["emb_l.0.weight"], old.weights["emb_l.0.weight"])


def test_a_commit_removes_dead_writers_folders_not_live_ones(tmp_path):
    spec = spec_of()
    Model.initialise(spec, seed=1).save(tmp_path / "snap")
    dead = tmp_path / "snap" / "weights" / ".20260101T000000-deadbeef.tmp"
    dead.mkdir()
    (dead / ".lock").touch()  # its writer was killed: the lock is free
    (dead / "emb_l.0.weight.npy").write_bytes(b"partial")
    with SnapshotWriter(tmp_path / "snap", spec) as live:
        Model.initialise(spec, seed=2).save(tmp_path / "snap")
        assert not dead.exists() and live.staging.is_dir()
    assert not live.staging.exists()  # left without commit: removed


def test_initialise_draws_the_same_numbers_in_chunks_and_straight_to_disk(tmp_path, monkeypatch):
    spec = spec_of(rows=(5000, 51, 52))
    rng = np.random.default_rng(11)  # DLRM's initialisation, drawn whole in float64
    whole = {}
    for name, shape in spec.weight_shapes().items():
        if name.startswith("emb_l."):
            whole[name] = rng.uniform(-np.sqrt(1 / shape[0]), np.sqrt(1 / shape[0]), shape)
        elif name.endswith(".weight"):
            whole[name] = rng.normal(0, np.sqrt(2 / (shape[0] + shape[1])), shape)
        else:
            whole[name] = rng.normal(0, np.sqrt(1 / shape[0]), shape)
    monkeypatch.setattr("lpmon.model.tensors.CHUNK_BYTES", 8192)
    in_memory = Model.initialise(spec, seed=11)
    on_disk = Model.initialise(spec, seed=11, directory=tmp_path / "snap")
    for name, array in whole.items():
        assert in_memory.weights[name].dtype == np.float32 and isinstance(on_disk.weights[name], np.memmap)
        np.testing.assert_array_equal(in_memory.weights[name], array.astype(np.float32))
        np.testing.assert_array_equal(on_disk.weights[name], array.astype(np.float32))


def test_a_manifest_that_points_outside_its_folder_is_refused(tmp_path):
    Model.initialise(spec_of(), seed=3).save(tmp_path / "snap")
    recorded = manifest(tmp_path / "snap")
    for field, value, message in [
        ("folder", "../../elsewhere", "folder must be weights/<generation>"),
        ("format", "numpy", "not an lpmon snapshot manifest"),
    ]:
        (tmp_path / "snap" / "weights.json").write_text(json.dumps(dict(recorded, **{field: value})))
        with pytest.raises(SpecError, match=message):
            Model.load(tmp_path / "snap")
    tensors = dict(recorded["tensors"])
    tensors["emb_l.0.weight"] = dict(tensors["emb_l.0.weight"], file="../../../x.npy")
    (tmp_path / "snap" / "weights.json").write_text(json.dumps(dict(recorded, tensors=tensors)))
    with pytest.raises(SpecError, match="tensor emb_l.0.weight: expected file"):
        Model.load(tmp_path / "snap")


def resident_file_kib() -> int:
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return int(status["RssFile"].split()[0])


def test_copying_a_mapped_snapshot_reads_files_not_the_mapping(tmp_path):
    """Model.save of a loaded model (and convert-snapshot --out) read the source with
    ordinary reads: pages read through the mapping would stay resident, a model's worth."""
    spec = spec_of(rows=(65_536,) * 4, dim=64)  # 64 MiB of tables
    Model.initialise(spec, seed=1, directory=tmp_path / "a")
    loaded = Model.load(tmp_path / "a")
    before = resident_file_kib()
    loaded.save(tmp_path / "b")
    assert resident_file_kib() - before < 16 * 1024
    assert snapshot_digest(str(tmp_path / "a")) == snapshot_digest(str(tmp_path / "b"))


def test_a_table_file_removed_while_its_rows_are_read_is_a_clear_error(tmp_path):
    """Touched rows are read from the tensor's file: a snapshot rewritten in place
    meanwhile (its old generation removed) is a SpecError saying so, not a traceback."""
    from lpmon.model.tensors import read_rows

    Model.initialise(spec_of(), seed=0).save(tmp_path)
    model = Model.load(tmp_path)
    table = model.weights["emb_l.1.weight"]
    assert read_rows(table, np.array([3, 1])).tolist() == np.asarray(table[[3, 1]]).tolist()
    tensor_file(tmp_path, "emb_l.1.weight").unlink()
    with pytest.raises(SpecError, match="emb_l.1.weight.npy: gone .*rerun the day"):
        read_rows(table, np.array([3]))
