"""Reliability II (issue 20), case by case as a user meets it: the `lpmon` CLI in
a subprocess (a message and an exit code, never a traceback), the store and
serving's file looked at afterwards. A damaged store is refused and left as it
is; serving's copy of the plan and the store never disagree silently; a
partition is checked file by file.

"Another user" (a serving folder or a store this process may not write) is a
subprocess without the capabilities that let root ignore file permissions
(setpriv), or the plain process when the tests do not run as root.
"""

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from lpmon.config import load
from lpmon.demo.world import WorldConfig, write_world
from lpmon.pipeline import open_store, run_day
from lpmon.store import StoreError, init_store
from lpmon.traffic.hashing import request_hash
from support import REPO

MODEL, DAY0, DAY1 = "stable", "2026-11-01", "2026-11-02"
UNPRIVILEGED = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"] if os.geteuid() == 0 else []
# A run whose day is judged DEGRADED (so it promotes a new plan), optionally with a
# step wrapped: "deny_export" makes serving's folder unwritable after the promotion.
DRIVER = r"""
import os, sys
from lpmon.pipeline import run as pipeline  # run_day calls the steps by their names there
from lpmon.cli import main
point, folder = sys.argv[1], sys.argv[2]
real_decide, real_report = pipeline.decide_step, pipeline.report_step
def degraded(config, work):
    real_decide(config, work)
    work.status = "DEGRADED"
    return "recalibrate"
def report_after_denial(config, work):
    os.chmod(folder, 0o555)
    return real_report(config, work)
pipeline.decide_step = degraded
if point == "deny_export":
    pipeline.report_step = report_after_denial
sys.exit(main(sys.argv[3:]))
"""


def lpmon(*args, unprivileged=False, env=None, driver=None, cwd=None) -> subprocess.CompletedProcess:
    command = (
        [sys.executable, "-m", "lpmon.cli", *args] if driver is None else [sys.executable, "-c", DRIVER, *driver, *args]
    )
    return subprocess.run(
        (UNPRIVILEGED if unprivileged else []) + command,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, **(env or {})),
        cwd=cwd,
    )


def refused(out: subprocess.CompletedProcess, *words: str) -> str:
    """The command failed with one line on stderr, no traceback, containing every word."""
    err = out.stderr.strip()
    assert out.returncode == 1 and "\n" not in err and "Traceback" not in err, (out.returncode, out.stderr)
    for word in words:
        assert word in err, (word, err)
    return err


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_config(root: Path, world: Path, store: str | None = None, top: str = "", defaults: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "lpmon.toml"
    store = store or f"sqlite:///{root / 'state.db'}"
    path.write_text(
        f'store = "{store}"\nplans_dir = "{root / "plans"}"\n'
        f'work_dir = "{root / "work"}"\n{top}\n'
        f"[defaults]\nsample_size = 5000\nmin_examples = 1000\n{defaults}\n"
        f'[models.{MODEL}]\ntraffic = "{world / "traffic" / MODEL}"\n'
        f'snapshot = "{world / "models" / MODEL / "snapshot"}"\n'
    )
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    write_world(root, WorldConfig(MODEL, days=2, seed=1, examples_per_day=50_000))  # traffic to validate the plan
    return root


@pytest.fixture(scope="module")
def history(world, tmp_path_factory):
    """A SQLite store holding day 0 (plan v1 active and exported), copied by each test."""
    base = tmp_path_factory.mktemp("history")
    path = write_config(base, world)
    init_store(load(path, environ={}).store)
    assert run_day(load(path, environ={}), MODEL, DAY0).plan_version == 1
    return base


@pytest.fixture
def run_dir(history, world, tmp_path):
    """A copy of the history (store and serving's folder) under a config of its own."""
    root = tmp_path / "run"
    root.mkdir()
    with sqlite3.connect(history / "state.db") as source, sqlite3.connect(root / "state.db") as target:
        source.backup(target)
    shutil.copytree(history / "plans", root / "plans")
    write_config(root, world)
    return root


def serving(root: Path) -> Path:
    return root / "plans" / MODEL / "active.json"


# --- a damaged store ------------------------------------------------------------------------

COMMANDS = (["status"], ["plans", "list", "--model", MODEL], ["run", "--model", MODEL, "--date", DAY1], ["init"])


@pytest.mark.slow
def test_a_store_truncated_to_zero_bytes_is_refused_by_every_command_and_left_empty(run_dir):
    db = run_dir / "state.db"
    db.write_bytes(b"")
    for command in COMMANDS:
        refused(
            lpmon(*command, "--config", str(run_dir / "lpmon.toml")),
            "state.db",
            "empty (0 bytes)",
            "restore it from a backup",
        )
        assert db.stat().st_size == 0, command  # never re-created over the lost history


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["half-truncated", "random bytes"])
def test_a_damaged_store_is_refused_in_one_line_and_never_written(run_dir, damage):
    db = run_dir / "state.db"
    if damage == "half-truncated":
        os.truncate(db, db.stat().st_size // 2)
    else:
        db.write_bytes(os.urandom(200_000))
    before = digest(db)
    for command in COMMANDS:
        err = refused(lpmon(*command, "--config", str(run_dir / "lpmon.toml")), "state.db")
        assert "damaged" in err, err
        assert "restore it from a backup" in err
        assert digest(db) == before, command
    assert not (run_dir / "state.db-wal").exists() or damage == "half-truncated"


@pytest.mark.slow
def test_a_missing_store_is_not_created_except_by_init(world, tmp_path):
    path = write_config(tmp_path, world)
    for command in COMMANDS[:3]:
        refused(lpmon(*command, "--config", str(path)), "no state store at", "run `lpmon init`")
    assert not (tmp_path / "state.db").exists()
    out = lpmon("init", "--config", str(path))
    assert out.returncode == 0 and "applied migrations" in out.stdout and "integrity ok" in out.stdout
    out = lpmon("status", "--config", str(path))
    assert out.returncode == 0 and "integrity ok" in out.stdout and "no runs yet" in out.stdout


def test_a_database_without_lpmons_schema_is_refused_and_left_alone(database_url, world, tmp_path):
    import sqlalchemy as sa

    from lpmon.store import Database

    if database_url.startswith("sqlite"):  # someone else's SQLite file
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as other:
            other.execute("CREATE TABLE theirs (x INTEGER)")
    config = load(write_config(tmp_path, world, store=database_url), environ={})
    with pytest.raises(StoreError, match="no lpmon state store here .*run `lpmon init`"):
        open_store(config)
    refused(lpmon("status", "--config", str(config.path)), "no lpmon state store here")
    db = Database(database_url)
    with db.engine.connect() as c:
        assert set(sa.inspect(c).get_table_names()) <= {"theirs"}  # nothing of lpmon's created
    db.engine.dispose()


def test_a_read_only_store_is_a_one_line_error_and_unchanged(run_dir):
    if os.geteuid() == 0 and not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: root ignores file modes")
    db = run_dir / "state.db"
    db.chmod(0o444)
    before = digest(db)
    try:
        for command in COMMANDS[:3]:
            refused(lpmon(*command, "--config", str(run_dir / "lpmon.toml"), unprivileged=True), "read-only")
    finally:
        db.chmod(0o644)
    assert digest(db) == before


# --- serving's copy of the plan ---------------------------------------------------------------


def plan_version(path: Path) -> int:
    return json.loads(path.read_text())["version"]


def active_version(root: Path) -> int:
    store = open_store(load(root / "lpmon.toml", environ={}))
    version = store.active_plan(MODEL).version
    store.db.engine.dispose()
    return version


@pytest.mark.slow
def test_an_unwritable_serving_folder_stops_the_promotion_before_it_commits(run_dir):
    if os.geteuid() == 0 and not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: root ignores file modes")
    folder = serving(run_dir).parent
    folder.chmod(0o555)
    try:
        out = lpmon(
            "run",
            "--config",
            str(run_dir / "lpmon.toml"),
            "--model",
            MODEL,
            "--date",
            DAY1,
            unprivileged=True,
            driver=["promote", str(folder)],
        )
        refused(out, f"{MODEL}: serving's folder", "is not writable by this user", "nothing was promoted")
        assert active_version(run_dir) == 1 and plan_version(serving(run_dir)) == 1  # they agree
    finally:
        folder.chmod(0o755)
    out = lpmon(
        "run",
        "--config",
        str(run_dir / "lpmon.toml"),
        "--model",
        MODEL,
        "--date",
        DAY1,
        unprivileged=True,
        driver=["promote", str(folder)],
    )  # the rerun after the fix
    assert out.returncode == 0, out.stderr
    assert active_version(run_dir) == 2 and plan_version(serving(run_dir)) == 2


@pytest.mark.slow
def test_an_export_failing_after_the_commit_is_recorded_shown_and_retried(run_dir):
    if os.geteuid() == 0 and not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: root ignores file modes")
    config = str(run_dir / "lpmon.toml")
    folder = serving(run_dir).parent
    try:
        out = lpmon(
            "run",
            "--config",
            config,
            "--model",
            MODEL,
            "--date",
            DAY1,
            unprivileged=True,
            driver=["deny_export", str(folder)],
        )
        refused(out, f"{MODEL}: v2 active in the store, serving file still v1:", "not writable")
    finally:
        folder.chmod(0o755)
    assert active_version(run_dir) == 2 and plan_version(serving(run_dir)) == 1
    store = open_store(load(config, environ={}))
    assert store.rows("runs", MODEL)[-1]["status"] == "DEGRADED"  # the day's rows are in
    assert store.export_status(MODEL)["status"] == "failed"
    store.db.engine.dispose()
    status = lpmon("status", "--config", config)
    assert (
        status.returncode == 0 and "! serving: stable: v2 active in the store, serving file still v1" in status.stdout
    )
    entry = json.loads(lpmon("status", "--config", config, "--json").stdout)[MODEL]
    assert entry["serving"]["version"] == 1 and "serving file still v1" in entry["serving"]["problem"]
    assert lpmon("run", "--config", config, "--model", MODEL, "--date", DAY1).returncode == 0  # the retry
    assert plan_version(serving(run_dir)) == 2
    entry = json.loads(lpmon("status", "--config", config, "--json").stdout)[MODEL]
    assert entry["serving"] == {"problem": "", "version": 2, "file": str(serving(run_dir))}


@pytest.mark.slow
def test_active_json_replaced_by_a_directory_is_recorded_and_leaves_no_temporary_file(run_dir, monkeypatch):
    config = load(run_dir / "lpmon.toml", environ={})
    target = serving(run_dir)
    target.unlink()
    target.mkdir()
    out = lpmon("run", "--config", str(config.path), "--model", MODEL, "--date", DAY1)
    refused(out, "v1 active in the store, serving file still missing or unreadable", "not a regular file")
    assert sorted(p.name for p in target.parent.iterdir()) == ["active.json"]  # no tmp*.json left
    store = open_store(config)
    assert store.export_status(MODEL)["status"] == "failed" and store.rows("runs", MODEL)[-1]["status"] != "RUNNING"
    store.db.engine.dispose()
    # A promotion is refused before it commits while the path is a directory.
    out = lpmon(
        "run", "--config", str(config.path), "--model", MODEL, "--date", DAY1, driver=["promote", str(target.parent)]
    )
    refused(out, "is not a regular file", "nothing was promoted")
    assert active_version(run_dir) == 1
    target.rmdir()
    assert lpmon("run", "--config", str(config.path), "--model", MODEL, "--date", DAY1).returncode == 0
    assert plan_version(target) == 1 and target.is_file()


def test_files_for_other_processes_get_the_umasks_mode_or_the_configured_one(run_dir, world):
    assert serving(run_dir).stat().st_mode & 0o777 == 0o644  # written under umask 022
    snapshot = world / "models" / MODEL / "snapshot"
    tensors = list((snapshot / "weights").glob("*/*.npy"))
    assert tensors and (snapshot / "weights.npz").exists() is False
    for path in [snapshot / "spec.json", snapshot / "weights.json", *tensors]:
        assert path.stat().st_mode & 0o777 == 0o644
    write_config(run_dir, world, top="file_mode = 0o640")
    assert lpmon("run", "--config", str(run_dir / "lpmon.toml"), "--model", MODEL, "--date", DAY1).returncode == 0
    assert serving(run_dir).stat().st_mode & 0o777 == 0o640
    write_config(run_dir, world)
    out = subprocess.run(
        [
            "sh",
            "-c",
            f"umask 027 && exec {sys.executable} -m lpmon.cli run --config "
            f"{run_dir / 'lpmon.toml'} --model {MODEL} --date {DAY1}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert serving(run_dir).stat().st_mode & 0o777 == 0o640


def test_temporary_files_of_killed_writers_are_removed_once_stale(run_dir):
    folder = serving(run_dir).parent
    stale, fresh = folder / ".active.json.dead1.tmp", folder / ".active.json.live2.tmp"
    for path in (stale, fresh):
        path.write_text("{")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    assert lpmon("run", "--config", str(run_dir / "lpmon.toml"), "--model", MODEL, "--date", DAY1).returncode == 0
    assert not stale.exists() and fresh.exists()  # a fresh one may be another run's, mid-write


# --- a partition checked file by file -----------------------------------------------------------


def traffic_copy(world: Path, root: Path) -> Path:
    """The model's traffic, copied, and the config pointed at the copy."""
    traffic = root / "traffic"
    shutil.copytree(world / "traffic" / MODEL, traffic)
    text = (root / "lpmon.toml").read_text().replace(str(world / "traffic" / MODEL), str(traffic))
    (root / "lpmon.toml").write_text(text)
    return traffic / f"date={DAY1}"


@pytest.mark.parametrize("change", ["another schema", "no label"])
def test_a_second_file_with_another_schema_fails_the_day_recorded_and_the_retry_succeeds(run_dir, world, change):
    partition = traffic_copy(world, run_dir)
    table = pq.read_table(next(partition.glob("*.parquet"))).slice(0, 10)
    table = table.set_column(
        table.schema.get_field_index("request_id"), "request_id", pc.add(table.column("request_id"), 1 << 40)
    )
    if change == "another schema":
        table = table.rename_columns([("x_0" if n == "dense_0" else n) for n in table.column_names])
    else:
        table = table.drop_columns(["label"])
    bad = partition / "part-99999.parquet"  # sorted after the good file: the one the old check missed
    pq.write_table(table, bad)
    config = load(run_dir / "lpmon.toml", environ={})
    result = run_day(config, MODEL, DAY1)
    missing = "dense_0" if change == "another schema" else "label"
    assert result.status == "failed" and str(bad) in result.message and f"missing column {missing}" in result.message
    store = open_store(config)
    assert store.rows("runs", MODEL)[-1]["status"] == "failed"  # the day shows in history
    out = lpmon("run", "--config", str(config.path), "--model", MODEL, "--date", DAY1)
    assert out.returncode == 1 and "Traceback" not in out.stderr and " failed " in out.stdout
    out = lpmon("status", "--config", str(config.path))
    assert f"! last run failed: {bad}: missing column {missing}" in out.stdout, out.stdout
    bad.unlink()
    assert run_day(config, MODEL, DAY1).status not in ("failed", "RUNNING")  # the retry after the fix
    assert store.rows("runs", MODEL)[-1]["status"] not in ("failed", "RUNNING")
    store.db.engine.dispose()


def rewrite_partition(partition: Path, change) -> None:
    for path in partition.glob("*.parquet"):
        pq.write_table(change(pq.read_table(path)), path)


def test_a_row_with_too_many_ids_fails_the_day_and_the_limit_is_a_setting(run_dir, world):
    partition = traffic_copy(world, run_dir)

    def multi_hot(table: pa.Table) -> pa.Table:
        # The long row is the file's first negative in hash order: sampled (only the sampled
        # rows' features are read and checked; the sample is the smallest hashes per label).
        hashes = request_hash(table.column("request_id").to_numpy(), 0)
        hashes[table.column("label").to_numpy() != 0] = np.iinfo(np.uint64).max
        ids = table.column("sparse_0").to_pylist()
        lists = [[i] for i in ids]
        first = int(np.argmin(hashes))
        lists[first] = [ids[first]] * 10_001
        return table.set_column(
            table.schema.get_field_index("sparse_0"), "sparse_0", pa.array(lists, pa.list_(pa.int64()))
        )

    rewrite_partition(partition, multi_hot)
    result = run_day(load(run_dir / "lpmon.toml", environ={}), MODEL, DAY1)
    assert result.status == "failed" and "column sparse_0 has 1 rows with more than 10,000 ids" in result.message
    write_config(run_dir, world, defaults="max_ids_per_row = 20000")
    traffic_copy_config = (
        (run_dir / "lpmon.toml").read_text().replace(str(world / "traffic" / MODEL), str(run_dir / "traffic"))
    )
    (run_dir / "lpmon.toml").write_text(traffic_copy_config)
    assert run_day(load(run_dir / "lpmon.toml", environ={}), MODEL, DAY1).status != "failed"


@pytest.mark.parametrize("shift_h, accepted", [(8 * 24, False), (-30, False), (6, True)])
def test_ts_is_checked_against_the_partitions_day(run_dir, world, shift_h, accepted):
    partition = traffic_copy(world, run_dir)
    rewrite_partition(
        partition,
        lambda t: t.set_column(
            t.schema.get_field_index("ts"),
            "ts",
            pc.add(t.column("ts").cast(pa.timestamp("us")), pa.scalar(shift_h * 3600 * 10**6, pa.duration("us"))),
        ),
    )
    result = run_day(load(run_dir / "lpmon.toml", environ={}), MODEL, DAY1)
    if accepted:
        assert result.status != "failed", result.message
    else:
        assert result.status == "failed" and "column ts has" in result.message
        assert f"rows outside {DAY1}" in result.message and "mislabelled" in result.message


# --- a model snapshot that is not one -------------------------------------------------------------


def test_weights_that_are_not_an_npz_archive_say_so(world, tmp_path):
    import numpy as np

    from lpmon.model import Model
    from lpmon.model.spec import SpecError

    snapshot = tmp_path / "snapshot"  # a legacy snapshot: spec.json + weights.npz
    snapshot.mkdir()
    shutil.copy(world / "models" / MODEL / "snapshot" / "spec.json", snapshot)
    weights = snapshot / "weights.npz"
    weights.write_bytes(os.urandom(4096))
    with pytest.raises(SpecError, match="weights.npz: not an .npz archive \\(damaged, or another kind of file\\)"):
        Model.load(snapshot)
    np.savez(weights, **{"emb_l.0.weight": np.array([object()], dtype=object)})
    with pytest.raises(SpecError, match="holds an object array \\(pickled data\\), which lpmon never loads"):
        Model.load(snapshot)
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(SpecError, match="weights.npz: "):
        Model.load(snapshot)


def test_tensor_files_and_manifests_that_are_not_one_say_so(world, tmp_path):
    from lpmon.model import Model
    from lpmon.model.spec import SpecError

    snapshot = tmp_path / "snapshot"
    shutil.copytree(world / "models" / MODEL / "snapshot", snapshot)
    manifest = json.loads((snapshot / "weights.json").read_text())
    table = snapshot / manifest["folder"] / "emb_l.3.weight.npy"
    table.write_bytes(os.urandom(4096))
    with pytest.raises(SpecError, match=r"emb_l.3.weight.npy \(emb_l.3.weight\): not a .npy file"):
        Model.load(snapshot)
    (snapshot / "weights.json").write_bytes(os.urandom(64))
    with pytest.raises(SpecError, match="weights.json: not valid JSON"):
        Model.load(snapshot)


# --- Airflow tasks refuse as the CLI does ---------------------------------------------------------


@pytest.mark.slow
def test_airflow_tasks_refuse_a_store_that_was_never_initialised(airflow_db, tmp_path, monkeypatch, capfd):
    import pendulum
    from airflow.dag_processing.dagbag import DagBag

    from support.world import dag_world

    config_path = dag_world(tmp_path, [MODEL], days=1, init=False)
    monkeypatch.setenv("LPMON_CONFIG", str(config_path))
    bag = DagBag(dag_folder=str(REPO / "dags"))
    dr = bag.dags["lpmon_monitor"].test(logical_date=pendulum.datetime(2026, 11, 1, tz="UTC"))
    states = {(ti.task_id, ti.map_index): ti.state for ti in dr.get_task_instances()}
    assert dr.state == "failed" and states[("monitor.sample", 0)] == "failed"
    output = capfd.readouterr()
    assert "no state store at" in output.out + output.err and "run `lpmon init`" in output.out + output.err
    assert not (tmp_path / "state.db").exists()  # the task did not create one
